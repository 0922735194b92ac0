//! `echo_bench`: a load generator for any TCP, Unix-socket or UDP echo server, running on
//! coreio.
//!
//! ```text
//! cargo run --release --example echo_bench -- --addr 127.0.0.1:7000 --conns 64 --size 64 \
//!     --duration 10 --server-pid "$(pidof echo)"
//! cargo run --release --example echo_bench -- --unix /tmp/echo.sock --duration 5
//! cargo run --release --example echo_bench -- --udp --addr 127.0.0.1:7000 --duration 5
//! ```
//!
//! Two modes:
//! - **closed loop** (default): each connection sends `--size` bytes, waits for all of them
//!   back, checks them and repeats. It measures the server and the client together, and under
//!   overload its latency hides queueing (coordinated omission).
//! - **open loop** (`--rate R`): R messages per second in total leave on a fixed schedule
//!   whatever the server does, and latency runs from each message's intended send time, so a
//!   stalled server is charged for every message that should have gone out (as wrk2 does).
//!
//! `--unix PATH` runs either mode over Unix stream sockets. `--udp` runs the closed loop over
//! UDP: each of the `--conns` sockets has one datagram of `--size` bytes in flight, and one
//! whose echo does not come within `--udp-timeout-ms` (default 200) is counted as *lost* and
//! the next one is sent; a late echo is recognised by its sequence number and skipped. Lost
//! datagrams are not errors (UDP may drop any): the report counts them.
//!
//! Connections are dealt round-robin to the client's `--cores`. Load runs for `--warmup`
//! seconds unrecorded, then for the `--duration` window; a message counts in the window when it
//! completes in it (closed loop) or was meant to be sent in it (open loop). Every echoed byte
//! is checked. The report gives messages/s, MiB/s each way, latency percentiles from an
//! HdrHistogram (3 significant digits), errors, and with `--server-pid` the server's CPU time
//! per echoed message, summed over its threads from `/proc/PID/task/*/schedstat` at the edges
//! of the window: on a shared VM that figure is far steadier than messages/s. A progress line
//! goes to stderr each second.
//!
//! With `--json`, stdout gets exactly one line, an object with the keys `label`, `addr`, `mode`
//! (`closed` or `open`), `backend` (the client's), `conns`, `size`, `rate` (null for the
//! closed loop), `duration_s`, `warmup_s`, `client_cores`, `client_spin_us`, `messages`, `msgs_per_s`,
//! `mib_per_s`, `p50_us`, `p90_us`, `p99_us`, `p999_us`, `max_us`, `mean_us`, `errors`,
//! `mismatches`, `server_cpu_ns_per_msg`, `server_cpu_util` (fraction of one CPU),
//! `client_cpu_ns_per_msg`, `transport` (`tcp`, `unix` or `udp`) and `lost` (UDP datagrams
//! given up in the window, 0 for the stream transports); figures that could not be measured are
//! `null`. `addr` is `HOST:PORT` for TCP, `unix:PATH` or `udp:HOST:PORT` for the others.
//!
//! Exit status: 0 for a clean run; 1 when a connection failed, a byte came back wrong or
//! nothing was echoed; 2 for bad arguments or an unreadable `--server-pid`.

mod cpu;
mod load;
mod options;
mod report;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use coreio::Builder;

use cpu::Process;
use load::{CoreStats, Plan, Progress};
use options::Options;
use report::Summary;

/// Time between creating the plan and the start of the load, so every core is up first.
const START_DELAY: Duration = Duration::from_millis(50);

fn main() -> ExitCode {
    let options = match options::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{}", options::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("echo_bench: {message} (see --help)");
            return ExitCode::from(2);
        }
    };
    if let Some(pid) = options.server_pid
        && let Err(err) = Process::Pid(pid).cpu_ns()
    {
        eprintln!("echo_bench: --server-pid {pid}: cannot read /proc/{pid}/task: {err}");
        return ExitCode::from(2);
    }
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("echo_bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the load and prints the report; returns whether the run was clean.
fn run(options: &Options) -> Result<bool, String> {
    let rt = Builder::new()
        .cores(options.cores)
        .thread_name_prefix("echo-bench")
        .spin_before_park(options.spin)
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    let cores = rt.cores().to_vec();
    let start = Instant::now() + START_DELAY;
    let plan = Plan {
        target: options.target,
        size: options.size,
        udp_timeout: options.udp_timeout,
        start,
        measure_from: start + options.warmup,
        end: start + options.warmup + options.duration,
        rate: options.rate,
        conns: options.conns,
    };
    let progress: Vec<Arc<Progress>> = cores.iter().map(|_| Arc::default()).collect();

    let (stop, stopped) = mpsc::channel::<()>();
    let monitor = {
        let progress = progress.clone();
        let server = options.server_pid.map(Process::Pid);
        thread::Builder::new()
            .name("echo-bench-monitor".into())
            .spawn(move || monitor(plan, &progress, server, &stopped))
            .map_err(|err| format!("cannot start the progress thread: {err}"))?
    };

    let results = rt.run(|core| {
        // Connections `index`, `index + cores`, ... run on the core at `index`.
        let index = cores.iter().position(|c| *c == core).unwrap_or(0);
        let ids: Vec<usize> = (index..options.conns).step_by(cores.len()).collect();
        load::run_core(plan, ids, progress[index].clone())
    });
    let _ = stop.send(());
    let window = monitor
        .join()
        .map_err(|_| "the progress thread panicked".to_string())?;

    let mut stats = CoreStats::new();
    for (core, result) in cores.iter().zip(results) {
        match result {
            Ok(core_stats) => stats.merge(core_stats),
            Err(err) => stats.fail(format!("{core}: {err}")),
        }
    }
    let clean = stats.errors == 0 && stats.messages > 0;
    for message in &stats.reported {
        eprintln!("echo_bench: {message}");
    }
    if stats.errors as usize > stats.reported.len() {
        eprintln!(
            "echo_bench: ... and {} more errors",
            stats.errors as usize - stats.reported.len()
        );
    }
    if stats.messages == 0 {
        eprintln!("echo_bench: no message was echoed in the measured window");
    }
    let summary = Summary {
        options,
        backend: rt.backend().to_string(),
        stats,
        server_cpu_ns: window.server_cpu_ns,
        client_cpu_ns: window.client_cpu_ns,
    };
    if options.json {
        println!("{}", summary.json());
    } else {
        summary.print_human();
    }
    Ok(clean)
}

/// CPU time spent by each side over the measured window.
#[derive(Default)]
struct Window {
    server_cpu_ns: Option<u64>,
    client_cpu_ns: Option<u64>,
}

/// Prints a progress line each second and reads the CPU counters at the window's edges, until
/// `stopped` says the load is over.
fn monitor(
    plan: Plan,
    progress: &[Arc<Progress>],
    server: Option<Process>,
    stopped: &mpsc::Receiver<()>,
) -> Window {
    let read = |process: Option<Process>| process.and_then(|p| p.cpu_ns().ok());
    let client = Some(Process::Current);
    let mut at_start: Option<(Option<u64>, Option<u64>)> = None;
    let mut window = Window::default();
    let mut last = (plan.start, 0u64, read(server));
    let mut next_line = plan.start + Duration::from_secs(1);
    loop {
        let now = Instant::now();
        let mut wake = next_line;
        if at_start.is_none() {
            wake = wake.min(plan.measure_from);
        } else if window.client_cpu_ns.is_none() {
            wake = wake.min(plan.end);
        }
        // Stopped, or main has gone: the load is over either way.
        let over = !matches!(
            stopped.recv_timeout(wake.saturating_duration_since(now)),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        let now = Instant::now();
        if at_start.is_none() && now >= plan.measure_from && !over {
            at_start = Some((read(server), read(client)));
        } else if let Some((server_start, client_start)) = at_start
            && window.client_cpu_ns.is_none()
            && (now >= plan.end || over)
        {
            let delta = |start: Option<u64>, end: Option<u64>| Some(end?.saturating_sub(start?));
            window.server_cpu_ns = delta(server_start, read(server));
            window.client_cpu_ns = delta(client_start, read(client));
        }
        if over {
            return window;
        }
        if now >= next_line {
            let messages: u64 = progress
                .iter()
                .map(|p| p.messages.load(Ordering::Relaxed))
                .sum();
            let errors: u64 = progress
                .iter()
                .map(|p| p.errors.load(Ordering::Relaxed))
                .sum();
            let server_cpu = read(server);
            let secs = now.duration_since(last.0).as_secs_f64();
            // The phase of the second this line reports, judged at its middle.
            let middle = last.0 + now.duration_since(last.0) / 2;
            let phase = if middle < plan.measure_from {
                "warm-up"
            } else if middle < plan.end {
                "measuring"
            } else {
                "draining"
            };
            let mut line = format!(
                "[{:5.1} s] {phase}: {:.0} msg/s, {errors} errors",
                now.duration_since(plan.start).as_secs_f64(),
                (messages - last.1) as f64 / secs
            );
            if let (Some(before), Some(after)) = (last.2, server_cpu) {
                let util = after.saturating_sub(before) as f64 / 1e9 / secs;
                line.push_str(&format!(", server CPU {:.0}%", util * 100.0));
            }
            eprintln!("{line}");
            last = (now, messages, server_cpu);
            next_line += Duration::from_secs(1);
        }
    }
}
