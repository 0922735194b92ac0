//! `sharded_kv`: a key-value server speaking the Redis protocol, one shard of the keys per core.
//!
//! ```text
//! cargo run --release --example sharded_kv -- --addr 127.0.0.1:7379 --cores 2
//! redis-cli -p 7379 set greeting hello
//! redis-benchmark -p 7379 -t get,set -n 100000 -q
//! ```
//!
//! Every core listens on the same address (`SO_REUSEPORT`), so the kernel spreads connections
//! across cores, and every core owns one shard of the key space: a key belongs to shard
//! `FNV-1a(key) % cores`, the shard of the core at that position in `coreio::mesh::cores()`.
//! A connection's core executes a request on its own shard directly and sends a request for
//! another shard's key to that core through the mesh (`coreio::mesh::submit_to`), so each map
//! is only ever touched by its own core and needs no lock. Replies go back in request order,
//! pipelined requests included.
//!
//! The modules: [`resp`] is the wire format, [`shard`] the per-core store and the key hash,
//! [`commands`] what each command does and where it runs, [`server`] the per-core accept and
//! connection loops, [`options`] the flags. See `commands` for the list of commands and how
//! they differ from Redis, `resp` for the request size limits.
//!
//! Ctrl-C or SIGTERM stops the server cleanly, as in `examples/echo.rs`: `coreio::signal` streams
//! listen for them from before the runtime starts, and a plain thread waits on them and sets a
//! [`coreio::sync::Event`] that every core's root future awaits (with `--dir`, after writing and
//! syncing what is pending). The server then prints what
//! each core served and exits 0.

mod aof;
#[path = "../support/args.rs"]
mod args;
mod commands;
mod options;
#[path = "../support/process.rs"]
mod process;
#[path = "../support/ready.rs"]
mod ready;
mod resp;
mod server;
mod shard;

use std::net::SocketAddr;
use std::process::ExitCode;

use coreio::Builder;
use coreio::sync::Event;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use options::{Options, USAGE};

fn main() -> ExitCode {
    args::main_with("sharded_kv", USAGE, options::parse_args, run)
}

fn run(options: Options) -> Result<(), String> {
    // Before any thread exists, so that every thread (the runtime's included) inherits the mask.
    let stop = Event::new();
    process::stop_on_signals("sharded_kv", stop.clone())?;

    let mut builder = Builder::new().thread_name_prefix("kv");
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
        check_port_free(options.addr)?;
        (options.addr, None)
    };

    let banner = format!(
        "sharded_kv on {addr}: {} cores, backend {}",
        rt.cores().len(),
        rt.backend()
    );
    let ready = ready::Ready::new(rt.cores().len(), move || println!("{banner}"));
    let persist = options.aof.clone();
    let results = rt.run(|_core| server::serve(addr, persist.clone(), stop.clone(), ready.clone()));

    let mut failures = Vec::new();
    for (core, result) in rt.cores().iter().zip(results) {
        match result {
            Ok(Ok(served)) => println!(
                "{core}: {} connections, {} commands, {} forwarded, {} keys",
                served.connections, served.commands, served.forwarded, served.keys
            ),
            Ok(Err(message)) => failures.push(format!("{core}: {message}")),
            Err(err) => failures.push(err.to_string()),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\nsharded_kv: "))
    }
}

/// Fails if something already listens on `addr`. The cores bind with `SO_REUSEPORT`, which
/// would let a second `sharded_kv` of the same user share the port with the first, each with its
/// own keys, the kernel dealing connections between them; a plain bind first refuses that.
fn check_port_free(addr: SocketAddr) -> Result<(), String> {
    let probe = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )
    .map_err(|err| format!("cannot create a socket: {err}"))?;
    // Connections of an earlier run still in TIME_WAIT do not count as in use.
    probe
        .set_reuse_address(true)
        .map_err(|err| format!("cannot set SO_REUSEADDR: {err}"))?;
    probe
        .bind(&SockAddr::from(addr))
        .map_err(|err| format!("cannot listen on {addr}: {err}"))
}
