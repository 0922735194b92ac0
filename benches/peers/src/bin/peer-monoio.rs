//! `peer-monoio`: the echo server on monoio's io_uring driver, one runtime per core, each with
//! its own `SO_REUSEPORT` listener; connections use monoio's owned-buffer I/O.
//!
//! monoio is built without its `legacy` (epoll) feature, so every operation goes through
//! io_uring and no per-operation driver check remains. The ring has monoio's default 1024
//! entries; the timer is enabled only for the accept back-off.

use coreio_bench_peers::{BUF_CAPACITY, Listeners, Server, serve};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

const LABEL: &str = "peer-monoio";

fn main() {
    serve(LABEL, Listeners::PerCore, |server| {
        server.spawn_cores(core_main)
    })
}

fn core_main(server: &Server, _core: usize) -> Result<(), String> {
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .map_err(|err| format!("cannot build the monoio io_uring runtime: {err}"))?;
    rt.block_on(async {
        // Blocking mode is what io_uring wants: the kernel never returns EAGAIN to the ring.
        let listener = TcpListener::from_std(server.bind()?)
            .map_err(|err| format!("cannot register the listener: {err}"))?;
        server.listening();
        accept_loop(server, listener).await;
        Ok(())
    })
}

async fn accept_loop(server: &Server, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                monoio::spawn(echo(stream));
            }
            Err(err) => {
                if let Some(pause) = server.accept_backoff(&err) {
                    monoio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// Echoes everything until the peer closes or an error, reusing one buffer.
async fn echo(mut stream: TcpStream) {
    // Without it a small echo waits for the peer's delayed ACK. A failure only costs latency.
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(BUF_CAPACITY);
    loop {
        // `read` fills the Vec from its start, up to its capacity, and sets its length to the
        // number of bytes read; `write_all` then sends exactly those bytes.
        let (res, b) = stream.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (res, b) = stream.write_all(buf).await;
        buf = b;
        if res.is_err() {
            return;
        }
    }
}
