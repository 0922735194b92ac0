//! `peer-tokio-mt`: the echo server on tokio's work-stealing `multi_thread` runtime, one
//! listener and `--cores` worker threads: tokio as most servers use it.
//!
//! The accept loop is itself a spawned task, so that it runs on a worker like everything else
//! and the process has exactly `--cores` threads doing work.

use coreio_bench_peers::{Listeners, Server, serve, short_name, tokio_echo};

const LABEL: &str = "peer-tokio-mt";

fn main() {
    serve(LABEL, Listeners::One, start)
}

/// Builds the runtime and spawns the accept loop; the runtime is returned so that it lives
/// until the process exits.
fn start(server: &Server) -> Result<tokio::runtime::Runtime, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server.cores())
        .thread_name(short_name(LABEL))
        .enable_io()
        .enable_time()
        .build()
        .map_err(|err| format!("cannot build the tokio runtime: {err}"))?;
    let listener = server.bind()?;
    listener
        .set_nonblocking(true)
        .map_err(|err| format!("cannot make the listener non-blocking: {err}"))?;
    let listener = {
        let _guard = rt.enter();
        tokio::net::TcpListener::from_std(listener)
            .map_err(|err| format!("cannot register the listener: {err}"))?
    };
    server.listening();
    rt.spawn(tokio_echo::accept_loop(server.clone(), listener));
    Ok(rt)
}
