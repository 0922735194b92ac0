//! Command-line options of `echo_bench`: parsing and validation, nothing else.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const USAGE: &str = "\
usage: echo_bench [--addr HOST:PORT | --unix PATH] [--udp [--udp-timeout-ms MS]] [--conns N]
                  [--size BYTES] [--duration SECS] [--warmup SECS] [--cores N]
                  [--rate MSGS_PER_SEC] [--json] [--server-pid PID] [--label NAME] [--spin-us N]

A load generator for any TCP, Unix-socket or UDP echo server. Every echoed byte is checked.

options:
  --addr HOST:PORT   server address (default 127.0.0.1:7000)
  --unix PATH        connect Unix stream sockets to PATH instead of TCP
  --udp              send UDP datagrams of --size bytes (8 to 65507) to --addr, from --conns
                     sockets, each with one datagram in flight (closed loop only); one not
                     echoed within --udp-timeout-ms is counted as lost and the next is sent
  --udp-timeout-ms MS  how long a datagram's echo may take before it counts as lost
                     (default 200, at most 60000)
  --conns N          connections (UDP: sockets), spread across the client's cores (default 64)
  --size BYTES       bytes per message (default 64)
  --duration SECS    length of the measured window, fractions allowed (default 10)
  --warmup SECS      load before the measured window, not recorded (default 1)
  --cores N          client cores: the first N CPUs this process may use (default 1)
  --rate R           open loop: R messages/s in total on a fixed schedule, latency measured
                     from each message's intended send time; 0 means closed loop (default 0)
  --json             print one JSON line on stdout instead of the human report
  --server-pid PID   report the server's CPU time per echoed message, summed over its threads
                     from /proc/PID/task/*/schedstat
  --label NAME       the server's name in the report (default: the address)
  --spin-us N        an idle client core polls for N microseconds before it blocks, so its
                     own wake-up latency stays out of the figures (default 0, at most 10000;
                     leave it at 0 when the client shares a CPU with the server)
  -h, --help         print this help

The client runs on coreio; COREIO_BACKEND=uring|epoll picks its backend. A progress line
goes to stderr each second. Exits 1 if any connection failed or any byte came back wrong,
2 on bad arguments.
";

/// Where the load goes and over what.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    Tcp(SocketAddr),
    /// A Unix stream socket's path. Leaked on purpose: it is parsed once per process and every
    /// connection task's copy of the plan borrows it for the whole run.
    Unix(&'static Path),
    Udp(SocketAddr),
}

impl Target {
    pub fn transport(&self) -> &'static str {
        match self {
            Target::Tcp(_) => "tcp",
            Target::Unix(_) => "unix",
            Target::Udp(_) => "udp",
        }
    }
}

/// TCP as `HOST:PORT` (as it always was), the others prefixed: `unix:PATH`, `udp:HOST:PORT`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(addr) => write!(f, "{addr}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
            Target::Udp(addr) => write!(f, "udp:{addr}"),
        }
    }
}

/// What the user asked for, validated.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    /// How long a UDP datagram's echo may take before it counts as lost.
    pub udp_timeout: Duration,
    pub conns: usize,
    pub size: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub cores: usize,
    /// Messages per second in total; `None` is the closed loop.
    pub rate: Option<f64>,
    pub json: bool,
    pub server_pid: Option<u32>,
    pub label: String,
    /// How long an idle client core polls before blocking.
    pub spin: Duration,
}

impl Options {
    pub fn mode(&self) -> &'static str {
        if self.rate.is_some() {
            "open"
        } else {
            "closed"
        }
    }
}

/// The largest message: bigger ones would only measure the client's memory bandwidth.
const MAX_SIZE: usize = 64 << 20;
/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;
/// The smallest UDP message: room for the sequence number, so a late echo is recognised.
const MIN_DATAGRAM: usize = 8;
/// The longest window or warm-up, in seconds.
const MAX_SECS: f64 = 86_400.0;

/// Parses the arguments after the program name; `Ok(None)` means `--help`.
pub fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut addr = "127.0.0.1:7000".to_string();
    let mut conns = 64;
    let mut size = 64;
    let mut duration = Duration::from_secs(10);
    let mut warmup = Duration::from_secs(1);
    let mut cores = 1;
    let mut rate = None;
    let mut json = false;
    let mut server_pid = None;
    let mut label = None;
    let mut spin = Duration::ZERO;
    let mut addr_given = false;
    let mut unix: Option<PathBuf> = None;
    let mut udp = false;
    let mut udp_timeout = None;
    let mut args = args;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.into())),
            _ => (arg, None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => {
                json = true;
                continue;
            }
            "--udp" => {
                udp = true;
                continue;
            }
            _ => {}
        }
        let value: String = inline
            .or_else(|| args.next())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => {
                addr = value;
                addr_given = true;
            }
            "--unix" => {
                if value.is_empty() {
                    return Err("--unix takes a path, got an empty one".into());
                }
                unix = Some(PathBuf::from(value));
            }
            "--udp-timeout-ms" => {
                let ms = positive(&flag, &value, 60_000)?;
                udp_timeout = Some(Duration::from_millis(ms as u64));
            }
            "--conns" => conns = positive(&flag, &value, usize::MAX)?,
            "--size" => size = positive(&flag, &value, MAX_SIZE)?,
            "--cores" => cores = positive(&flag, &value, usize::MAX)?,
            "--duration" => duration = seconds(&flag, &value, false)?,
            "--warmup" => warmup = seconds(&flag, &value, true)?,
            "--rate" => {
                rate = match value.parse::<f64>() {
                    Ok(0.0) => None,
                    Ok(r) if r.is_finite() && r > 0.0 => Some(r),
                    _ => {
                        return Err(format!(
                            "--rate takes messages per second (0 for the closed loop), got {value:?}"
                        ));
                    }
                }
            }
            "--server-pid" => {
                let pid = positive(&flag, &value, i32::MAX as usize)?;
                server_pid = Some(u32::try_from(pid).map_err(|_| "--server-pid is too large")?);
            }
            "--label" => label = Some(value),
            "--spin-us" => {
                spin = match value.parse::<u64>() {
                    Ok(us) if us <= 10_000 => Duration::from_micros(us),
                    _ => {
                        return Err(format!(
                            "--spin-us takes microseconds from 0 to 10000, got {value:?}"
                        ));
                    }
                }
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if udp_timeout.is_some() && !udp {
        return Err("--udp-timeout-ms applies to --udp only".into());
    }
    let target = match (unix, udp) {
        (Some(_), true) => return Err("--unix and --udp exclude each other".into()),
        (Some(_), false) if addr_given => {
            return Err(
                "--unix and --addr exclude each other: a Unix socket has no address".into(),
            );
        }
        (Some(path), false) => Target::Unix(Box::leak(path.into_boxed_path())),
        (None, udp) => {
            let resolved = addr
                .to_socket_addrs()
                .map_err(|err| format!("--addr {addr:?} is not a usable HOST:PORT: {err}"))?
                .next()
                .ok_or_else(|| format!("--addr {addr:?} resolves to no address"))?;
            match udp {
                true => Target::Udp(resolved),
                false => Target::Tcp(resolved),
            }
        }
    };
    if let Target::Udp(_) = target {
        if rate.is_some() {
            return Err("--udp runs the closed loop only; --rate does not apply".into());
        }
        if !(MIN_DATAGRAM..=MAX_DATAGRAM).contains(&size) {
            return Err(format!(
                "--size with --udp takes {MIN_DATAGRAM} to {MAX_DATAGRAM} bytes (a sequence number, at most one datagram), got {size}"
            ));
        }
    }
    // TCP keeps the address as it was given; the other transports name themselves.
    let label = match target {
        Target::Tcp(_) => label.unwrap_or(addr),
        _ => label.unwrap_or_else(|| target.to_string()),
    };
    Ok(Some(Options {
        target,
        udp_timeout: udp_timeout.unwrap_or(Duration::from_millis(200)),
        conns,
        size,
        duration,
        warmup,
        cores,
        rate,
        json,
        server_pid,
        label,
        spin,
    }))
}

fn positive(flag: &str, value: &str, max: usize) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 && n <= max => Ok(n),
        _ => Err(format!(
            "{flag} takes a number from 1 to {max}, got {value:?}"
        )),
    }
}

fn seconds(flag: &str, value: &str, zero_allowed: bool) -> Result<Duration, String> {
    match value.parse::<f64>() {
        Ok(secs)
            if secs.is_finite()
                && secs <= MAX_SECS
                && (secs > 0.0 || zero_allowed && secs == 0.0) =>
        {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(format!(
            "{flag} takes seconds, {} and at most {MAX_SECS}, got {value:?}",
            if zero_allowed {
                "0 or more"
            } else {
                "more than 0"
            }
        )),
    }
}
