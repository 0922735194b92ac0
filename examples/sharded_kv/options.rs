//! Command-line options of `sharded_kv`: parsing and validation, nothing else.

use std::net::SocketAddr;

use crate::args::{Args, resolve};

pub const USAGE: &str = "\
usage: sharded_kv [--addr HOST:PORT] [--cores N]

A key-value server speaking the Redis protocol (RESP2): GET, SET, DEL, INCR, MGET, PING, ECHO,
QUIT. Each core owns one shard of the keys; a request for a key another core owns is forwarded
to that core.

options:
  --addr HOST:PORT   address to listen on (default 127.0.0.1:7379, beside a real Redis's
                     6379); port 0 picks a free port, shared by every core, and the banner
                     names it
  --cores N          run on the first N CPUs this process may use (default: all of them)
  -h, --help         print this help

COREIO_BACKEND=uring|epoll picks the I/O backend (default: io_uring where available).
Ctrl-C or SIGTERM stops the server; it prints what each core served and exits 0.
";

const DEFAULT_ADDR: &str = "127.0.0.1:7379";

/// What the user asked for, validated.
#[derive(Debug, Clone)]
pub struct Options {
    pub addr: SocketAddr,
    pub cores: Option<usize>,
}

/// `Ok(None)` means `--help`.
pub fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut addr = DEFAULT_ADDR.to_string();
    let mut cores = None;
    let mut args = Args::new(args);
    while let Some(mut flag) = args.next_flag() {
        match flag.name.as_str() {
            _ if flag.is_help() => return Ok(None),
            "--addr" => addr = args.value(&mut flag)?,
            "--cores" => cores = Some(args.positive(&mut flag)?),
            name => return Err(format!("unknown argument {name:?}")),
        }
    }
    Ok(Some(Options {
        addr: resolve("--addr", &addr)?,
        cores,
    }))
}
