//! `dns`: an authoritative DNS responder over UDP, one socket per core.
//!
//! ```text
//! cargo run --release --example dns -- --addr 127.0.0.1:5300 --cores 2
//! dig @127.0.0.1 -p 5300 www.example.com
//! dnsperf -s 127.0.0.1 -p 5300 -d queries.txt -l 10
//! ```
//!
//! Every core binds the same address (`SO_REUSEPORT`) and the kernel spreads queries across
//! the cores' sockets; each core answers what it receives from the zones, which every core
//! shares read-only. The zones are RFC 1035 master files (`--zone FILE`, repeatable), parsed by
//! hickory-proto, as is every query: no hand-written wire format.
//!
//! The modules: [`zone`] loads and looks up the zones, [`answer`] turns one query into one
//! response (no I/O, so `benches/peers`' tokio responder runs the same code), [`server`] is a
//! core's socket and loop, [`options`] the flags. Ctrl-C or SIGTERM stops the server cleanly,
//! as in `examples/echo.rs`; it then prints what each core answered and exits 0.

mod answer;
#[path = "../support/args.rs"]
mod args;
mod options;
#[path = "../support/process.rs"]
#[allow(dead_code)] // reserve_port is for TCP listeners; this server claims its UDP port itself
mod process;
#[path = "../support/ready.rs"]
mod ready;
mod server;
mod zone;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use coreio::Builder;
use coreio::sync::Event;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use options::{Options, USAGE};
use zone::{BUILT_IN_ZONE, Zone, Zones};

fn main() -> ExitCode {
    args::main_with("dns", USAGE, options::parse_args, run)
}

fn run(options: Options) -> Result<(), String> {
    let zones = if options.zones.is_empty() {
        vec![Zone::parse(BUILT_IN_ZONE, None)?]
    } else {
        options
            .zones
            .iter()
            .map(|path| Zone::load(path))
            .collect::<Result<_, _>>()?
    };
    let zone_names: Vec<String> = zones.iter().map(|z| z.origin().to_string()).collect();
    let zones = Arc::new(Zones::new(zones));

    // Before any thread exists, so that every thread (the runtime's included) inherits the mask.
    let stop = Event::new();
    process::stop_on_signals("dns", stop.clone())?;

    let mut builder = Builder::new().thread_name_prefix("dns");
    if let Some(cores) = options.cores {
        builder = builder.cores(cores);
    }
    let rt = builder
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;

    let addr = claim_address(options.addr)?;
    let banner = format!(
        "coreio dns on {addr}, {} cores, backend {}, zones {}",
        rt.cores().len(),
        rt.backend(),
        zone_names.join(" ")
    );
    let ready = ready::Ready::new(rt.cores().len(), move || println!("{banner}"));
    let results = rt.run(|_core| {
        server::serve(
            addr,
            options.tasks,
            zones.clone(),
            stop.clone(),
            ready.clone(),
        )
    });

    let mut failures = Vec::new();
    for (core, result) in rt.cores().iter().zip(results) {
        match result {
            Ok(Ok(served)) => println!(
                "{core}: {} datagrams: {} answered, {} no data, {} nxdomain, {} formerr, {} \
                 rejected, {} dropped, {} I/O errors",
                served.received(),
                served.answered,
                served.no_data,
                served.nx_domain,
                served.form_err,
                served.rejected,
                served.dropped,
                served.io_errors
            ),
            Ok(Err(message)) => failures.push(format!("{core}: {message}")),
            Err(err) => failures.push(err.to_string()),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\ndns: "))
    }
}

/// The address every core binds: `addr`, or with port 0 a port that is free now. Fails if
/// another process already has `addr`: the cores bind with `SO_REUSEPORT`, which would let a
/// second responder of the same user share the port with the first, the kernel dealing queries
/// between them; a plain bind first refuses that.
fn claim_address(addr: SocketAddr) -> Result<SocketAddr, String> {
    let probe = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.cloexec(),
        Some(Protocol::UDP),
    )
    .map_err(|err| format!("cannot create a socket: {err}"))?;
    probe
        .bind(&SockAddr::from(addr))
        .map_err(|err| format!("cannot bind {addr}: {err}"))?;
    probe
        .local_addr()
        .ok()
        .and_then(|bound| bound.as_socket())
        .ok_or_else(|| format!("cannot tell which port {addr} got"))
}
