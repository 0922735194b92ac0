//! Command-line options of `http`: parsing and validation, nothing else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::args::{Args, resolve};

pub const USAGE: &str = "\
usage: http [--addr HOST:PORT] [--cores N] [--header-timeout-ms N] [--max-streams N]
            [--drain-timeout-ms N] [--tls [--cert FILE --key FILE]]

A hyper 1.x server, one listener per core (SO_REUSEPORT), HTTP/1.1 and HTTP/2 on the same
port (h2c with prior knowledge; with --tls, ALPN picks h2 or http/1.1).

routes:
  GET /             a short text body
  GET /bytes/N      N bytes (at most 16 MiB)
  GET /delay/MS     a short body after MS milliseconds (at most 60000)
  anything else     404; methods other than GET and HEAD get 405

options:
  --addr HOST:PORT        address to listen on (default 127.0.0.1:8080); port 0 picks a free
                          port, shared by every core, and the banner names it
  --cores N               run on the first N CPUs this process may use (default: all of them)
  --header-timeout-ms N   an HTTP/1 client must send a request's whole head within N ms of
                          the server starting to wait for it (default 10000): slowloris and
                          idle keep-alive connections are closed after that
  --max-streams N         concurrent HTTP/2 streams per connection (default 256)
  --drain-timeout-ms N    on SIGINT/SIGTERM, how long in-flight requests may take to finish
                          before their connections are dropped (default 10000)
  --tls                   serve HTTPS: rustls, ALPN h2 and http/1.1, with a self-signed
                          certificate for localhost made at start unless --cert/--key are given
  --cert FILE, --key FILE a PEM certificate chain and its PEM private key (with --tls)
  -h, --help              print this help

Try: curl http://127.0.0.1:8080/ ; curl --http2-prior-knowledge http://127.0.0.1:8080/bytes/10
COREIO_BACKEND=uring|epoll picks the I/O backend (default: io_uring where available).
Ctrl-C or SIGTERM stops accepting, lets in-flight requests finish (up to --drain-timeout-ms),
prints what each core served and exits 0.
";

const DEFAULT_ADDR: &str = "127.0.0.1:8080";
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 streams a connection may have open at once: hyper's default is 200; a round 256.
const DEFAULT_MAX_STREAMS: u32 = 256;

/// Where the TLS certificate comes from.
#[derive(Debug, Clone)]
pub enum Certificate {
    /// Made at start: self-signed, for `localhost` and 127.0.0.1.
    SelfSigned,
    /// PEM files.
    Files { cert: PathBuf, key: PathBuf },
}

/// What the user asked for, validated.
#[derive(Debug, Clone)]
pub struct Options {
    pub addr: SocketAddr,
    pub cores: Option<usize>,
    pub header_timeout: Duration,
    pub max_streams: u32,
    pub drain_timeout: Duration,
    /// `Some` with `--tls`.
    pub tls: Option<Certificate>,
}

/// `Ok(None)` means `--help`.
pub fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut addr = DEFAULT_ADDR.to_string();
    let mut cores = None;
    let mut header_timeout = DEFAULT_HEADER_TIMEOUT;
    let mut drain_timeout = DEFAULT_DRAIN_TIMEOUT;
    let mut max_streams = DEFAULT_MAX_STREAMS;
    let (mut tls, mut cert, mut key) = (false, None, None);
    let mut args = Args::new(args);
    while let Some(mut flag) = args.next_flag() {
        match flag.name.as_str() {
            _ if flag.is_help() => return Ok(None),
            "--addr" => addr = args.value(&mut flag)?,
            "--cores" => cores = Some(args.positive(&mut flag)?),
            "--header-timeout-ms" => {
                header_timeout = Duration::from_millis(args.positive(&mut flag)? as u64)
            }
            "--drain-timeout-ms" => {
                drain_timeout = Duration::from_millis(args.positive(&mut flag)? as u64)
            }
            "--max-streams" => {
                max_streams = u32::try_from(args.positive(&mut flag)?)
                    .map_err(|_| "--max-streams is too large".to_string())?
            }
            "--tls" => tls = true,
            "--cert" => cert = Some(PathBuf::from(args.value(&mut flag)?)),
            "--key" => key = Some(PathBuf::from(args.value(&mut flag)?)),
            name => return Err(format!("unknown argument {name:?}")),
        }
    }
    let tls = match (tls, cert, key) {
        (false, None, None) => None,
        (false, _, _) => return Err("--cert and --key need --tls".into()),
        (true, None, None) => Some(Certificate::SelfSigned),
        (true, Some(cert), Some(key)) => Some(Certificate::Files { cert, key }),
        (true, _, _) => return Err("--cert and --key go together".into()),
    };
    Ok(Some(Options {
        addr: resolve("--addr", &addr)?,
        cores,
        header_timeout,
        max_streams,
        drain_timeout,
        tls,
    }))
}
