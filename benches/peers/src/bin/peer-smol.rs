//! `peer-smol`: the echo server on smol's building blocks, one `async_executor::LocalExecutor`
//! per core driven by `async_io::block_on`, each with its own `SO_REUSEPORT` listener.
//!
//! async-io has one reactor per process; the thread in `block_on` that finds it free polls it
//! for everyone, the others wait on their own parker until woken.

use std::net::TcpStream;

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use coreio_bench_peers::{BUF_CAPACITY, Listeners, Server, serve};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

const LABEL: &str = "peer-smol";

fn main() {
    serve(LABEL, Listeners::PerCore, |server| {
        server.spawn_cores(core_main)
    })
}

fn core_main(server: &Server, _core: usize) -> Result<(), String> {
    // `Async::new` makes the listener non-blocking and registers it with the reactor.
    let listener =
        Async::new(server.bind()?).map_err(|err| format!("cannot register the listener: {err}"))?;
    let ex = LocalExecutor::new();
    server.listening();
    async_io::block_on(ex.run(accept_loop(server, &ex, listener)));
    Ok(())
}

async fn accept_loop(
    server: &Server,
    ex: &LocalExecutor<'_>,
    listener: Async<std::net::TcpListener>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => ex.spawn(echo(stream)).detach(),
            Err(err) => {
                if let Some(pause) = server.accept_backoff(&err) {
                    Timer::after(pause).await;
                }
            }
        }
    }
}

/// Echoes everything until the peer closes or an error, reusing one buffer.
async fn echo(mut stream: Async<TcpStream>) {
    // Without it a small echo waits for the peer's delayed ACK. A failure only costs latency.
    let _ = stream.get_ref().set_nodelay(true);
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
