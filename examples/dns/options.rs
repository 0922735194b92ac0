//! Command-line options of `dns`: parsing and validation, nothing else.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::args::{Args, resolve};

pub const USAGE: &str = "\
usage: dns [--addr HOST:PORT] [--cores N] [--tasks N] [--zone FILE]...

An authoritative DNS responder over UDP, one socket per core (SO_REUSEPORT): A, AAAA, TXT and
every other record type its zones hold; NXDOMAIN for names that do not exist, FORMERR for
malformed queries.

options:
  --addr HOST:PORT   address to answer on (default 127.0.0.1:5300); 0.0.0.0 or [::] answers
                     on every address, each reply sent from the address the query was sent to;
                     port 0 picks a free port and the banner names it
  --cores N          run on the first N CPUs this process may use (default: all of them)
  --tasks N          answer loops per core sharing its socket (default 4): on io_uring each keeps
                     a receive in flight, so one entry into the kernel serves several queries
  --zone FILE        serve the zone in this RFC 1035 master file (repeatable); without it, a
                     built-in example.com. zone in which www.example.com. has A, AAAA and TXT
                     records
  -h, --help         print this help

Try: dig @127.0.0.1 -p 5300 www.example.com
COREIO_BACKEND=uring|epoll picks the I/O backend (default: io_uring where available).
Ctrl-C or SIGTERM stops the server; it prints what each core answered and exits 0.
";

const DEFAULT_ADDR: &str = "127.0.0.1:5300";

/// Answer loops per core: enough receives in flight to batch a busy socket's queries.
const DEFAULT_TASKS: usize = 4;

/// What the user asked for, validated.
#[derive(Debug, Clone)]
pub struct Options {
    pub addr: SocketAddr,
    pub cores: Option<usize>,
    pub tasks: usize,
    pub zones: Vec<PathBuf>,
}

/// `Ok(None)` means `--help`.
pub fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut addr = DEFAULT_ADDR.to_string();
    let mut cores = None;
    let mut zones = Vec::new();
    let mut tasks = DEFAULT_TASKS;
    let mut args = Args::new(args);
    while let Some(mut flag) = args.next_flag() {
        match flag.name.as_str() {
            _ if flag.is_help() => return Ok(None),
            "--addr" => addr = args.value(&mut flag)?,
            "--cores" => cores = Some(args.positive(&mut flag)?),
            "--tasks" => tasks = args.positive(&mut flag)?,
            "--zone" => zones.push(PathBuf::from(args.value(&mut flag)?)),
            name => return Err(format!("unknown argument {name:?}")),
        }
    }
    Ok(Some(Options {
        addr: resolve("--addr", &addr)?,
        cores,
        tasks,
        zones,
    }))
}
