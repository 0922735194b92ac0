//! Command-line options of `echo_bench`: parsing and validation, nothing else.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub const USAGE: &str = "\
usage: echo_bench [--addr HOST:PORT] [--conns N] [--size BYTES] [--duration SECS]
                  [--warmup SECS] [--cores N] [--rate MSGS_PER_SEC] [--json]
                  [--server-pid PID] [--label NAME] [--spin-us N]

A load generator for any TCP echo server. Every echoed byte is checked.

options:
  --addr HOST:PORT   server address (default 127.0.0.1:7000)
  --conns N          connections, spread across the client's cores (default 64)
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

/// What the user asked for, validated.
#[derive(Debug, Clone)]
pub struct Options {
    pub addr: SocketAddr,
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
            _ => {}
        }
        let value: String = inline
            .or_else(|| args.next())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => addr = value,
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
    let resolved = addr
        .to_socket_addrs()
        .map_err(|err| format!("--addr {addr:?} is not a usable HOST:PORT: {err}"))?
        .next()
        .ok_or_else(|| format!("--addr {addr:?} resolves to no address"))?;
    Ok(Some(Options {
        addr: resolved,
        conns,
        size,
        duration,
        warmup,
        cores,
        rate,
        json,
        server_pid,
        label: label.unwrap_or(addr),
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
