//! `peer-http-tokio`: coreio's `examples/http` server on tokio, one `current_thread` runtime per
//! core, for `benches/http_compare.sh` to drive with wrk and h2load beside the coreio one.
//!
//! The routes are the example's own code (`service.rs`, compiled in with `#[path]`, given
//! `tokio::time::sleep`), and so are the flags (`options.rs`), so the comparison measures the
//! runtimes, not two services. Each core is a std thread with its own runtime and its own
//! `SO_REUSEPORT` listener; hyper-util's auto builder serves HTTP/1.1 and h2c (prior knowledge)
//! on the same port, with the settings of the example's `connection_builder`: a header-read
//! timeout, keep-alive, `--max-streams` HTTP/2 streams and HTTP/2 keep-alive pings, on tokio's
//! timer. Connections and HTTP/2 streams are spawned with `tokio::spawn` (hyper-util's
//! `TokioExecutor`) rather than `spawn_local` in a `LocalSet`: the tasks are `Send` anyway, and
//! a `LocalSet` adds a second run queue on every wake-up, so this is tokio at its best.
//!
//! ```text
//! peer-http-tokio --addr 127.0.0.1:8080 --cores 1 [--header-timeout-ms N] [--max-streams N]
//! ```
//!
//! Once every core listens it prints `peer-http-tokio http on ADDR (N cores)`; SIGINT or
//! SIGTERM stops it (exit 0) without the example's drain: the benchmark stops a server only
//! after its load has finished.

#[path = "../../../../examples/support/args.rs"]
#[allow(dead_code)]
mod args;
#[path = "../../../../examples/http/options.rs"]
#[allow(dead_code)]
mod options;
#[path = "../../../../examples/http/service.rs"]
#[allow(dead_code)]
mod service;

use std::cell::Cell;
use std::convert::Infallible;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

use coreio_bench_peers::{ACCEPT_BACKOFF, StopSignals, bind_listener};
use options::Options;
use service::Counts;

const LABEL: &str = "peer-http-tokio";

const USAGE: &str = "\
usage: peer-http-tokio [--addr HOST:PORT] [--cores N] [--header-timeout-ms N] [--max-streams N]

coreio's examples/http service on tokio, one current_thread runtime and one SO_REUSEPORT
listener per core, HTTP/1.1 and h2c on the same port, for benches/http_compare.sh.

options:
  --addr HOST:PORT        address to listen on (default 127.0.0.1:8080); port 0 picks a free
                          port, shared by every core, and the banner names it
  --cores N               number of runtimes (default 1)
  --header-timeout-ms N   as in examples/http (default 10000)
  --max-streams N         concurrent HTTP/2 streams per connection (default 256)
  -h, --help              print this help

Once listening it prints \"peer-http-tokio http on ADDR (N cores)\". Ctrl-C or SIGTERM stops
it (exit 0).
";

thread_local! {
    /// What this core's routes served: counted as the example counts, so both do the same work.
    static COUNTS: Cell<Counts> = Cell::new(Counts::default());
}

fn main() {
    let options = match options::parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) if options.tls.is_some() => fail(2, "--tls is not supported here"),
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            std::process::exit(0);
        }
        Err(message) => fail(2, &format!("{message} (see --help)")),
    };
    let cores = options.cores.unwrap_or(1);

    // Before any thread exists, so that every thread (the runtimes' included) inherits the mask.
    let signals = StopSignals::block().unwrap_or_else(|message| fail(1, &message));

    // The first listener resolves port 0; the others bind the port it got (`SO_REUSEPORT`).
    let first = bind_listener(options.addr)
        .unwrap_or_else(|err| fail(1, &format!("cannot listen on {}: {err}", options.addr)));
    let addr = first
        .local_addr()
        .unwrap_or_else(|err| fail(1, &format!("cannot read the bound address: {err}")));
    let mut listeners = vec![first];
    for _ in 1..cores {
        listeners.push(
            bind_listener(addr)
                .unwrap_or_else(|err| fail(1, &format!("cannot listen on {addr}: {err}"))),
        );
    }

    for (core, listener) in listeners.into_iter().enumerate() {
        let options = options.clone();
        std::thread::Builder::new()
            .name(format!("http-tokio-{core}"))
            .spawn(move || {
                if let Err(message) = core_main(listener, &options) {
                    fail(1, &format!("core {core}: {message}"));
                }
            })
            .unwrap_or_else(|err| fail(1, &format!("cannot start thread for core {core}: {err}")));
    }
    // The listeners are bound and listening: connections queue until their loop accepts them.
    println!("{LABEL} http on {addr} ({cores} cores)");
    signals.wait();
    std::process::exit(0);
}

fn fail(status: i32, message: &str) -> ! {
    eprintln!("{LABEL}: {message}");
    std::process::exit(status);
}

/// One core: a current_thread runtime accepting on its own listener until the process exits.
fn core_main(listener: std::net::TcpListener, options: &Options) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|err| format!("cannot build the tokio runtime: {err}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|err| format!("cannot make the listener non-blocking: {err}"))?;
    let builder = connection_builder(options);
    rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|err| format!("cannot register the listener: {err}"))?;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _peer)) => stream,
                // A failed connection or a full descriptor table: pause rather than spin.
                Err(_) => {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let builder = builder.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request| async move {
                    let (response, route) = service::respond(request, tokio::time::sleep).await;
                    COUNTS.with(|counts| {
                        let mut now = counts.get();
                        route.count(&mut now);
                        counts.set(now);
                    });
                    Ok::<_, Infallible>(response)
                });
                // Resets, timeouts and malformed requests end the connection; the example
                // counts them, the benchmark does not need to.
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// The settings of examples/http/server.rs's `connection_builder`, on tokio's executor and timer.
fn connection_builder(options: &Options) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.max_streams)
        .keep_alive_interval(options.header_timeout)
        .keep_alive_timeout(options.header_timeout);
    builder
}
