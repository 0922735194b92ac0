//! `http`: a hyper 1.x server on coreio, one listener per core, HTTP/1.1 and HTTP/2 on one
//! port.
//!
//! ```text
//! cargo run --release --example http --features hyper,tokio -- --addr 127.0.0.1:8080
//! curl http://127.0.0.1:8080/
//! curl --http2-prior-knowledge http://127.0.0.1:8080/bytes/100
//! wrk -c 100 -d 10 http://127.0.0.1:8080/
//! h2load -c 100 -n 100000 http://127.0.0.1:8080/
//! ```
//!
//! Every core binds the same address (`SO_REUSEPORT`), accepts its own connections and serves
//! each on that core: hyper's connection state machine, its HTTP/2 streams and the service
//! all run as `!Send` tasks there ([`coreio::hyper::CoreExecutor`]), their timeouts on the
//! core's timer wheel ([`coreio::hyper::CoreTimer`]), the bytes moved by coreio's
//! readiness-based `hyper::rt` impls of `TcpStream`. hyper-util's auto builder reads the first
//! bytes of a connection and speaks HTTP/2 to a client that opens with the HTTP/2 preface
//! (h2c, prior knowledge), HTTP/1.1 otherwise; with `--tls`, ALPN decides ([`tls`]).
//!
//! Abuse is shed, not served: an HTTP/1 client has `--header-timeout-ms` to send each request
//! head (slowloris, and idle keep-alive connections, are closed after that), HTTP/2
//! connections are pinged and dropped when the peer stops answering, and hyper answers a
//! malformed request with 400 and closes that connection.
//!
//! Ctrl-C or SIGTERM: every core stops accepting, asks each open connection to finish
//! gracefully (HTTP/1 closes after the response in flight, HTTP/2 sends GOAWAY and lets open
//! streams end), waits up to `--drain-timeout-ms` for them, then drops the rest, prints what it
//! served and exits 0.
//!
//! The modules: [`server`] a core's listener and connections, [`service`] the routes (no I/O: `benches/peers`' tokio server runs the same
//! code), [`tls`] the rustls acceptor, [`options`] the flags.

#[path = "../support/args.rs"]
mod args;
mod options;
#[path = "../support/process.rs"]
mod process;
#[path = "../support/ready.rs"]
mod ready;
mod server;
mod service;
mod tls;

use std::process::ExitCode;
use std::sync::Arc;

use coreio::Builder;
use coreio::sync::Event;

use options::{Options, USAGE};

fn main() -> ExitCode {
    args::main_with("http", USAGE, options::parse_args, run)
}

fn run(options: Options) -> Result<(), String> {
    let acceptor = match &options.tls {
        Some(certificate) => Some(tls::acceptor(certificate)?),
        None => None,
    };

    // Before any thread exists, so that every thread (the runtime's included) inherits the mask.
    let stop = Event::new();
    process::stop_on_signals("http", stop.clone())?;

    let mut builder = Builder::new().thread_name_prefix("http");
    if let Some(cores) = options.cores {
        builder = builder.cores(cores);
    }
    let rt = builder
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;

    // Port 0: reserve a free port for all cores. The reservation is bound with SO_REUSEPORT but
    // never listens, so it receives no connection; it is closed when the server stops.
    let (addr, _reservation) = if options.addr.port() == 0 {
        let (addr, socket) = process::reserve_port(options.addr)
            .map_err(|err| format!("cannot find a free port on {}: {err}", options.addr))?;
        (addr, Some(socket))
    } else {
        (options.addr, None)
    };

    let banner = format!(
        "coreio http on {}://{addr}, {} cores, backend {}",
        if acceptor.is_some() { "https" } else { "http" },
        rt.cores().len(),
        rt.backend()
    );
    let ready = ready::Ready::new(rt.cores().len(), move || println!("{banner}"));
    let options = Arc::new(options);
    let results = rt.run(|_core| {
        server::serve_core(
            addr,
            options.clone(),
            acceptor.clone(),
            stop.clone(),
            ready.clone(),
        )
    });

    let mut failures = Vec::new();
    for (core, result) in rt.cores().iter().zip(results) {
        match result {
            Ok(Ok(served)) => println!("{core}: {served}"),
            Ok(Err(message)) => failures.push(format!("{core}: {message}")),
            Err(err) => failures.push(err.to_string()),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\nhttp: "))
    }
}
