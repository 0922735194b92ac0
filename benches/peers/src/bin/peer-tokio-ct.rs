//! `peer-tokio-ct`: the echo server on tokio, one `current_thread` runtime per core.
//!
//! Each core is a std thread with its own runtime and its own `SO_REUSEPORT` listener, the
//! shape closest to coreio's. Connections are spawned with `tokio::spawn` on that runtime rather
//! than `spawn_local` in a `LocalSet`: the tasks are `Send` anyway, and a `LocalSet` adds a second
//! run queue polled from inside the runtime's, which costs a little on every wake-up.

use coreio_bench_peers::{Listeners, Server, serve, tokio_echo};

const LABEL: &str = "peer-tokio-ct";

fn main() {
    serve(LABEL, Listeners::PerCore, |server| {
        server.spawn_cores(core_main)
    })
}

fn core_main(server: &Server, _core: usize) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|err| format!("cannot build the tokio runtime: {err}"))?;
    let listener = server.bind()?;
    listener
        .set_nonblocking(true)
        .map_err(|err| format!("cannot make the listener non-blocking: {err}"))?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|err| format!("cannot register the listener: {err}"))?;
        server.listening();
        tokio_echo::accept_loop(server.clone(), listener).await;
        Ok(())
    })
}
