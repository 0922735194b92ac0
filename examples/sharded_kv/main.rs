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
//! Ctrl-C or SIGTERM stops the server cleanly, as in `examples/echo.rs`: the signals are blocked
//! before the runtime starts, a plain thread `sigwait`s for them and sets a
//! [`coreio::sync::Event`] that every core's root future awaits. The server then prints what
//! each core served and exits 0.

mod commands;
mod options;
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
    let options = match options::parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("sharded_kv: {message} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sharded_kv: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: Options) -> Result<(), String> {
    // Before any thread exists, so that every thread (the runtime's included) inherits the mask
    // and the signals wait for `sigwait` instead of killing the process.
    let signals = block_stop_signals()?;
    let stop = Event::new();
    {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("kv-signals".into())
            .spawn(move || {
                if let Some(name) = wait_for_signal(&signals) {
                    println!("sharded_kv: {name} received, stopping");
                    stop.set();
                }
            })
            .map_err(|err| format!("cannot start the signal thread: {err}"))?;
    }

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
        let (addr, socket) = reserve_port(options.addr)
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
    let ready = server::Ready::new(rt.cores().len(), move || println!("{banner}"));
    let results = rt.run(|_core| server::serve(addr, stop.clone(), ready.clone()));

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

/// Binds a socket with `SO_REUSEPORT` on port 0 and returns the address the kernel picked.
fn reserve_port(addr: SocketAddr) -> std::io::Result<(SocketAddr, Socket)> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SockAddr::from(addr))?;
    let bound = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("bound to a non-IP address"))?;
    Ok((bound, socket))
}

/// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread it starts later).
fn block_stop_signals() -> Result<libc::sigset_t, String> {
    // SAFETY: an all-zero `sigset_t` is valid storage; `sigemptyset` initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid, writable storage for a signal set, and SIGINT and SIGTERM are
    // valid signal numbers, so these calls cannot fail.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    // SAFETY: `set` is an initialised signal set; the old mask is not asked for (null).
    let res = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if res != 0 {
        return Err(format!(
            "cannot block SIGINT and SIGTERM: {}",
            std::io::Error::from_raw_os_error(res)
        ));
    }
    Ok(set)
}

/// Waits for one of the signals in `set` (blocked in this thread); `None` if `sigwait` fails.
fn wait_for_signal(set: &libc::sigset_t) -> Option<&'static str> {
    let mut signal: libc::c_int = 0;
    // SAFETY: `set` is an initialised signal set and `signal` is valid, writable storage.
    let res = unsafe { libc::sigwait(set, &mut signal) };
    if res != 0 {
        eprintln!(
            "sharded_kv: sigwait failed ({}); Ctrl-C will not stop the server cleanly",
            std::io::Error::from_raw_os_error(res)
        );
        return None;
    }
    Some(match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    })
}
