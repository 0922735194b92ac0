//! Command-line options of `sharded_kv`: parsing and validation, nothing else.

use std::net::SocketAddr;

use std::path::PathBuf;

use crate::aof::{self, Policy};
use crate::args::{Args, resolve};

pub const USAGE: &str = "\
usage: sharded_kv [--addr HOST:PORT] [--cores N] [--dir DIR [--appendfsync always|everysec|no]
                  [--aof-repair] [--aof-rewrite-min-size BYTES]]

A key-value server speaking the Redis protocol (RESP2): GET, SET, DEL, INCR, MGET, PING, ECHO,
QUIT. Each core owns one shard of the keys; a request for a key another core owns is forwarded
to that core.

options:
  --addr HOST:PORT   address to listen on (default 127.0.0.1:7379, beside a real Redis's
                     6379); port 0 picks a free port, shared by every core, and the banner
                     names it
  --cores N          run on the first N CPUs this process may use (default: all of them)
  --dir DIR          persist: each core keeps an append-only file DIR/shard-N.aof of its
                     shard and replays it at start (without --dir: in memory only); restart
                     with the same --cores
  --appendfsync P    with --dir: always (a write is acknowledged once synced; one sync covers
                     every write since the last), everysec (default: synced once a second) or
                     no (the kernel syncs)
  --aof-repair       truncate a file at a corrupt record instead of refusing to start (a torn
                     last record is always truncated)
  --aof-rewrite-min-size BYTES
                     rewrite a file from the live keys once it is this large and twice its
                     size after the last rewrite (default 67108864)
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
    /// Persistence, with `--dir`.
    pub aof: Option<aof::Config>,
}

/// `Ok(None)` means `--help`.
pub fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut addr = DEFAULT_ADDR.to_string();
    let mut cores = None;
    let mut dir: Option<PathBuf> = None;
    let mut policy = None;
    let mut repair = false;
    let mut rewrite_min_size = None;
    let mut args = Args::new(args);
    while let Some(mut flag) = args.next_flag() {
        match flag.name.as_str() {
            _ if flag.is_help() => return Ok(None),
            "--addr" => addr = args.value(&mut flag)?,
            "--cores" => cores = Some(args.positive(&mut flag)?),
            "--dir" => dir = Some(PathBuf::from(args.value(&mut flag)?)),
            "--appendfsync" => policy = Some(Policy::parse(&args.value(&mut flag)?)?),
            "--aof-repair" => repair = true,
            "--aof-rewrite-min-size" => rewrite_min_size = Some(args.positive(&mut flag)? as u64),
            name => return Err(format!("unknown argument {name:?}")),
        }
    }
    let aof = match dir {
        Some(dir) => Some(aof::Config {
            dir,
            policy: policy.unwrap_or(Policy::EverySec),
            repair,
            rewrite_min_size: rewrite_min_size.unwrap_or(aof::DEFAULT_REWRITE_MIN_SIZE),
        }),
        None if policy.is_some() || repair || rewrite_min_size.is_some() => {
            return Err("--appendfsync, --aof-repair and --aof-rewrite-min-size need --dir".into());
        }
        None => None,
    };
    Ok(Some(Options {
        addr: resolve("--addr", &addr)?,
        cores,
        aof,
    }))
}
