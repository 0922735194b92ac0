//! `peer-dns-tokio`: coreio's `examples/dns` responder on tokio, one `current_thread` runtime
//! per core, for `benches/dns_compare.sh` to drive with dnsperf beside the coreio one.
//!
//! The protocol is the example's own code (`answer.rs` and `zone.rs`, compiled in with
//! `#[path]`), so the comparison measures the runtimes, not two DNS implementations. Each core
//! binds its own `SO_REUSEPORT` UDP socket on `--addr`, and `--tasks` tasks (default 4, as in
//! the coreio example) share it, each looping `recv_from`, answer, `send_to`, as the coreio
//! example does on a socket bound to one address.
//!
//! ```text
//! peer-dns-tokio --addr 127.0.0.1:5300 --cores 1 [--tasks N] [--zone FILE]
//! ```

#[path = "../../../../examples/dns/answer.rs"]
#[allow(dead_code)]
mod answer;
#[path = "../../../../examples/dns/zone.rs"]
#[allow(dead_code)]
mod zone;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use zone::{BUILT_IN_ZONE, Zone, Zones};

const LABEL: &str = "peer-dns-tokio";

/// Room for any UDP datagram, so none is ever cut.
const DATAGRAM_CAPACITY: usize = 65_535;

fn main() {
    let (addr, cores, tasks, zone) = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{LABEL}: {message}");
            std::process::exit(2);
        }
    };
    let zone = match &zone {
        Some(path) => Zone::load(path),
        None => Zone::parse(BUILT_IN_ZONE, None),
    }
    .unwrap_or_else(|message| {
        eprintln!("{LABEL}: {message}");
        std::process::exit(1);
    });
    let zones = Arc::new(Zones::new(vec![zone]));
    let sockets: Vec<std::net::UdpSocket> = (0..cores)
        .map(|_| bind(addr))
        .collect::<std::io::Result<_>>()
        .unwrap_or_else(|err| {
            eprintln!("{LABEL}: binding {addr}: {err}");
            std::process::exit(1);
        });
    let bound = sockets[0].local_addr().map_or(addr, |a| a);
    let threads: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(core, socket)| {
            let zones = Arc::clone(&zones);
            std::thread::Builder::new()
                .name(format!("dns-tokio-{core}"))
                .spawn(move || core_main(socket, tasks, zones))
                .expect("cannot start a core thread")
        })
        .collect();
    println!("{LABEL} dns on {bound} ({cores} cores)");
    for thread in threads {
        if let Ok(Err(message)) = thread.join() {
            eprintln!("{LABEL}: {message}");
            std::process::exit(1);
        }
    }
}

fn core_main(socket: std::net::UdpSocket, tasks: usize, zones: Arc<Zones>) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|err| format!("cannot build the tokio runtime: {err}"))?;
    rt.block_on(async {
        let socket = Arc::new(
            tokio::net::UdpSocket::from_std(socket)
                .map_err(|err| format!("cannot register the socket: {err}"))?,
        );
        let loops: Vec<_> = (0..tasks)
            .map(|_| tokio::spawn(answer_loop(Arc::clone(&socket), Arc::clone(&zones))))
            .collect();
        for task in loops {
            let _ = task.await;
        }
        Ok(())
    })
}

async fn answer_loop(socket: Arc<tokio::net::UdpSocket>, zones: Arc<Zones>) {
    let mut buf = vec![0u8; DATAGRAM_CAPACITY];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // ICMP errors from earlier replies, and the like: keep serving.
            Err(_) => continue,
        };
        if let (_, Some(reply)) = answer::respond(&zones, &buf[..n]) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket.into())
}

type Options = (SocketAddr, usize, usize, Option<PathBuf>);

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut addr: SocketAddr = "127.0.0.1:5300".parse().map_err(|_| "bad default")?;
    let mut cores = 1usize;
    let mut tasks = 4usize;
    let mut zone = None;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--addr" => {
                let text = value("--addr")?;
                addr = text.parse().map_err(|_| format!("bad --addr {text}"))?;
            }
            "--cores" => {
                let text = value("--cores")?;
                cores = text
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("bad --cores {text}"))?;
            }
            "--tasks" => {
                let text = value("--tasks")?;
                tasks = text
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("bad --tasks {text}"))?;
            }
            "--zone" => zone = Some(PathBuf::from(value("--zone")?)),
            "--help" | "-h" => {
                println!("usage: {LABEL} [--addr HOST:PORT] [--cores N] [--tasks N] [--zone FILE]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((addr, cores, tasks, zone))
}
