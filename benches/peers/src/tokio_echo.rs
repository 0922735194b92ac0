//! The accept loop and the per-connection echo shared by the two tokio peers (`peer-tokio-ct`
//! and `peer-tokio-mt`), which differ only in how their runtimes are built.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{BUF_CAPACITY, Server};

/// Accepts forever, spawning one task per connection with `tokio::spawn` on the current
/// runtime (a `current_thread` runtime runs it on this thread; a `multi_thread` one on any
/// worker).
pub async fn accept_loop(server: Server, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                tokio::spawn(echo(stream));
            }
            Err(err) => {
                if let Some(pause) = server.accept_backoff(&err) {
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// Echoes everything until the peer closes or an error, reusing one buffer.
async fn echo(mut stream: TcpStream) {
    // Without it a small echo waits for the peer's delayed ACK. A failure only costs latency.
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0; BUF_CAPACITY];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
