//! A small closed-loop load client for the `echo` example, running on coreio itself.
//!
//! ```text
//! cargo run --release --example echo_client -- --addr 127.0.0.1:7000 --conns 64 --size 64
//! ```
//!
//! Each connection sends a message of `--size` bytes (a pattern unique to the connection and
//! the message), reads the echo back with `read_exact`, checks every byte, and repeats until
//! `--duration` is over: one message in flight per connection. Connections are spread across
//! the client's cores. At the end it prints the messages exchanged, the rates, the errors and
//! the p50/p99/max round-trip time of a sample of the messages (one in 16).
//!
//! The exit status is non-zero when any connection failed or any byte came back wrong. This is
//! a smoke and demo tool: a closed loop measures the server and the client together, and
//! coordinated omission makes its latency figures optimistic under overload.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use coreio::net::TcpStream;
use coreio::{Builder, CoreId};

const USAGE: &str = "\
usage: echo_client [--addr HOST:PORT] [--conns N] [--size BYTES] [--duration SECS] [--cores N]

A closed-loop load client for the echo example; every echoed byte is checked.

options:
  --addr HOST:PORT   server address (default 127.0.0.1:7000)
  --conns N          connections, spread across the client's cores (default 64)
  --size BYTES       bytes per message (default 64)
  --duration SECS    how long to send, fractions allowed (default 5)
  --cores N          client cores: the first N CPUs this process may use (default 1)
  -h, --help         print this help

The backend is the one COREIO_BACKEND selects (default: io_uring where available).
Exits non-zero if any connection failed or any byte came back wrong.
";

/// One message in this many has its round-trip time recorded.
const SAMPLE_EVERY: u64 = 16;
/// At most this many samples per connection, so memory stays bounded however long the run.
const MAX_SAMPLES_PER_CONN: usize = 1 << 16;
/// How long past the end of the run a connection may take before it counts as hung.
const GRACE: Duration = Duration::from_secs(10);
/// How many error messages are printed; the rest are only counted.
const MAX_REPORTED_ERRORS: usize = 5;

struct Options {
    addr: SocketAddr,
    conns: usize,
    size: usize,
    duration: Duration,
    cores: usize,
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("echo_client: {message} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("echo_client: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)` means `--help`.
fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut addr = "127.0.0.1:7000".to_string();
    let mut conns = 64;
    let mut size = 64;
    let mut duration = Duration::from_secs(5);
    let mut cores = 1;
    let mut args = args;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.into())),
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = inline
            .or_else(|| args.next())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let positive = |value: &str| match value.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{flag} takes a positive number, got {value:?}")),
        };
        match flag.as_str() {
            "--addr" => addr = value,
            "--conns" => conns = positive(&value)?,
            "--size" => size = positive(&value)?,
            "--cores" => cores = positive(&value)?,
            "--duration" => {
                duration = match value.parse::<f64>() {
                    Ok(secs) if secs > 0.0 && secs <= 86_400.0 => Duration::from_secs_f64(secs),
                    _ => {
                        return Err(format!(
                            "--duration takes seconds, more than 0 and at most 86400, got {value:?}"
                        ));
                    }
                }
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    let addr = addr
        .to_socket_addrs()
        .map_err(|err| format!("--addr {addr:?} is not a usable HOST:PORT: {err}"))?
        .next()
        .ok_or_else(|| format!("--addr {addr:?} resolves to no address"))?;
    Ok(Some(Options {
        addr,
        conns,
        size,
        duration,
        cores,
    }))
}

/// What some connections did.
#[derive(Default)]
struct Stats {
    messages: u64,
    /// Connections that failed (connect, I/O, wrong bytes, hang), and panicked tasks.
    errors: u64,
    /// Messages that came back with a wrong byte (each also counts as an error).
    mismatches: u64,
    /// Sampled round-trip times, in microseconds.
    samples: Vec<u32>,
    /// The first few error messages.
    reported: Vec<String>,
}

impl Stats {
    fn fail(&mut self, message: String) {
        self.errors += 1;
        if self.reported.len() < MAX_REPORTED_ERRORS {
            self.reported.push(message);
        }
    }

    fn merge(&mut self, other: Stats) {
        self.messages += other.messages;
        self.errors += other.errors;
        self.mismatches += other.mismatches;
        self.samples.extend(other.samples);
        for message in other.reported {
            if self.reported.len() < MAX_REPORTED_ERRORS {
                self.reported.push(message);
            }
        }
    }
}

/// Returns whether the run was clean.
fn run(options: &Options) -> Result<bool, String> {
    let rt = Builder::new()
        .cores(options.cores)
        .thread_name_prefix("echo-client")
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    let cores: Vec<CoreId> = rt.cores().to_vec();
    let ids: Vec<usize> = cores.iter().map(|core| core.0).collect();
    println!(
        "echo_client: {} connections to {} from cores {ids:?} (backend {}), {}-byte messages, {:.1} s",
        options.conns,
        options.addr,
        rt.backend(),
        options.size,
        options.duration.as_secs_f64()
    );

    let start = Instant::now();
    let end = start + options.duration;
    let results = rt.run(|core| {
        // Connections `index`, `index + cores`, ... run on the core at `index`.
        let index = cores.iter().position(|c| *c == core).unwrap_or(0);
        let ids: Vec<usize> = (index..options.conns).step_by(cores.len()).collect();
        let (addr, size) = (options.addr, options.size);
        async move {
            let tasks: Vec<_> = ids
                .into_iter()
                .map(|id| (id, coreio::spawn(connection(id, addr, size, end))))
                .collect();
            let mut stats = Stats::default();
            for (id, task) in tasks {
                match task.await {
                    Ok(conn) => stats.merge(conn),
                    Err(err) => stats.fail(format!("conn {id}: {err}")),
                }
            }
            stats
        }
    });
    let elapsed = start.elapsed();

    let mut total = Stats::default();
    for (core, result) in cores.iter().zip(results) {
        match result {
            Ok(stats) => total.merge(stats),
            Err(err) => total.fail(format!("{core}: {err}")),
        }
    }
    report(options, &mut total, elapsed);
    Ok(total.errors == 0)
}

fn report(options: &Options, total: &mut Stats, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    let rate = total.messages as f64 / secs;
    let mib = rate * options.size as f64 / (1024.0 * 1024.0);
    println!(
        "messages: {} in {secs:.2} s: {rate:.0} msg/s, {mib:.2} MiB/s each way",
        total.messages
    );
    println!(
        "errors: {} ({} messages with wrong bytes)",
        total.errors, total.mismatches
    );
    total.samples.sort_unstable();
    match (
        percentile(&total.samples, 50.0),
        percentile(&total.samples, 99.0),
        total.samples.last(),
    ) {
        (Some(p50), Some(p99), Some(max)) => println!(
            "latency: p50 {p50} µs, p99 {p99} µs, max {max} µs ({} samples, 1 in {SAMPLE_EVERY} messages)",
            total.samples.len()
        ),
        _ => println!("latency: no samples"),
    }
    for message in &total.reported {
        eprintln!("echo_client: {message}");
    }
    if total.errors as usize > total.reported.len() {
        eprintln!(
            "echo_client: ... and {} more errors",
            total.errors as usize - total.reported.len()
        );
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// One connection's whole life, with a limit so a server that stops answering is an error
/// rather than a hang.
async fn connection(id: usize, addr: SocketAddr, size: usize, end: Instant) -> Stats {
    let mut stats = Stats::default();
    let limit = end.saturating_duration_since(Instant::now()) + GRACE;
    let outcome = coreio::time::timeout(limit, exchange(id, addr, size, end, &mut stats)).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(message)) => stats.fail(format!("conn {id}: {message}")),
        Err(_) => stats.fail(format!(
            "conn {id}: no echo within {GRACE:?} after the end of the run"
        )),
    }
    stats
}

/// Sends, receives and checks messages until `end`.
async fn exchange(
    id: usize,
    addr: SocketAddr,
    size: usize,
    end: Instant,
    stats: &mut Stats,
) -> Result<(), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|err| format!("cannot connect to {addr}: {err}"))?;
    stream
        .set_nodelay(true)
        .map_err(|err| format!("cannot set TCP_NODELAY: {err}"))?;
    // Boxed slices: `read_exact` fills exactly `size` bytes, whatever a Vec's capacity would be.
    let mut sent: Box<[u8]> = vec![0; size].into_boxed_slice();
    let mut received: Box<[u8]> = vec![0; size].into_boxed_slice();
    let mut seq: u64 = 0;
    while Instant::now() < end {
        fill(&mut sent, id, seq);
        let sampled =
            seq.is_multiple_of(SAMPLE_EVERY) && stats.samples.len() < MAX_SAMPLES_PER_CONN;
        let started = Instant::now();
        let (res, buf) = stream.write_all(sent).await;
        sent = buf;
        res.map_err(|err| format!("write of message {seq} failed: {err}"))?;
        let (res, buf) = stream.read_exact(received).await;
        received = buf;
        res.map_err(|err| format!("read of message {seq} failed: {err}"))?;
        if sampled {
            let micros = started.elapsed().as_micros();
            stats
                .samples
                .push(u32::try_from(micros).unwrap_or(u32::MAX));
        }
        if let Some(at) = sent.iter().zip(received.iter()).position(|(a, b)| a != b) {
            stats.mismatches += 1;
            return Err(format!(
                "byte {at} of message {seq} came back as {:#04x}, sent {:#04x}",
                received[at], sent[at]
            ));
        }
        stats.messages += 1;
        seq += 1;
    }
    Ok(())
}

/// Fills a message with bytes that depend on the connection, the message number and the
/// position, so a byte from another connection, an older message or another offset shows.
fn fill(buf: &mut [u8], id: usize, seq: u64) {
    let seed =
        (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seq.wrapping_mul(0xD1B5_4A32_D192_ED03);
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = (seed >> (8 * (i % 8))) as u8 ^ (i as u8).wrapping_mul(31);
    }
}
