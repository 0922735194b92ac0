//! Cross-core messaging: coreio's mesh (`mesh::channel`, `mesh::submit_to`) side by side with
//! flume and crossbeam-channel, between two pinned CPUs, in one process.
//!
//! ```text
//! mesh_compare [--reps N] [--round-trips N] [--messages N] [--capacity N]
//!              [--subjects a,b,..] [--scenarios roundtrip,throughput]
//! mesh_compare --report FILE
//! ```
//!
//! The first form measures and prints one result line per measurement on stdout (progress goes
//! to stderr), and at the end a `mesh-cpu` line with the CPU time the process used; the second reads such lines and prints the Markdown tables that
//! `benches/mesh_compare.sh` puts into `docs/benchmarks-mesh.md`. The subjects and scenarios
//! are described in `subjects.rs`, the lines in `report.rs`.
//!
//! Each repetition runs every scenario for every subject, the subjects interleaved and their
//! order rotated by one from one repetition to the next, so that a slow phase of a shared
//! machine spreads over all subjects rather than landing on one. Side A runs on the first CPU
//! this process may use and side B on the second; with fewer than two, nothing is measured.
//! `COREIO_BACKEND` must be unset: it would override the backend each coreio subject picks.

mod report;
mod subjects;

use std::io::Write as _;
use std::process::ExitCode;

use subjects::{Plan, Scenario, Subject};

const USAGE: &str = "usage: mesh_compare [--reps N] [--round-trips N] [--messages N] \
                     [--capacity N] [--subjects a,b,..] [--scenarios roundtrip,throughput]\n       \
                     mesh_compare --report FILE";

/// Repetitions unless `--reps` says otherwise.
const DEFAULT_REPS: u32 = 5;
/// Measured round trips per measurement.
const DEFAULT_ROUND_TRIPS: u64 = 100_000;
/// Measured one-way messages per measurement.
const DEFAULT_MESSAGES: u64 = 5_000_000;
/// Capacity of the one-way channel.
const DEFAULT_CAPACITY: usize = 1024;
/// Warm-up work, as a fraction of the measured work: one tenth.
const WARMUP_DIVISOR: u64 = 10;

struct Options {
    reps: u32,
    round_trips: u64,
    messages: u64,
    capacity: usize,
    subjects: Vec<Subject>,
    scenarios: Vec<Scenario>,
}

fn parse_list<T>(
    list: &str,
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
) -> Result<Vec<T>, String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|name| parse(name).ok_or_else(|| format!("unknown {what} {name:?}")))
        .collect()
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(
    option: &str,
    value: &str,
) -> Result<T, String> {
    match value.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err(format!(
            "{option} wants a positive whole number, got {value:?}"
        )),
    }
}

/// Parses the options of the measuring form (`--report FILE` is handled by `main`).
fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        reps: DEFAULT_REPS,
        round_trips: DEFAULT_ROUND_TRIPS,
        messages: DEFAULT_MESSAGES,
        capacity: DEFAULT_CAPACITY,
        subjects: Subject::ALL.to_vec(),
        scenarios: Scenario::ALL.to_vec(),
    };
    let mut args = args.iter();
    while let Some(option) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{option} needs a value\n{USAGE}"))?;
        match option.as_str() {
            "--reps" => options.reps = positive(option, value)?,
            "--round-trips" => options.round_trips = positive(option, value)?,
            "--messages" => options.messages = positive(option, value)?,
            "--capacity" => options.capacity = positive(option, value)?,
            "--subjects" => options.subjects = parse_list(value, Subject::from_name, "subject")?,
            "--scenarios" => {
                options.scenarios = parse_list(value, Scenario::from_name, "scenario")?;
            }
            _ => return Err(format!("unknown option {option:?}\n{USAGE}")),
        }
    }
    if options.subjects.is_empty() || options.scenarios.is_empty() {
        return Err("--subjects and --scenarios need at least one name each".into());
    }
    Ok(options)
}

fn run(options: &Options) -> Result<(), String> {
    if std::env::var_os("COREIO_BACKEND").is_some() {
        return Err(
            "unset COREIO_BACKEND: it would override the backend each coreio subject \
                    asks for (coreio-uring, coreio-epoll, ...)"
                .into(),
        );
    }
    let cpus =
        subjects::allowed_cpus().map_err(|e| format!("cannot read the CPU affinity: {e}"))?;
    if cpus.len() < 2 {
        eprintln!(
            "mesh_compare: skipped: two CPUs are needed, one per side, and this process may only \
             run on {cpus:?}"
        );
        return Ok(());
    }
    let plan = Plan {
        round_trips: options.round_trips,
        warmup_round_trips: (options.round_trips / WARMUP_DIVISOR).max(1),
        messages: options.messages,
        warmup_messages: (options.messages / WARMUP_DIVISOR).max(1),
        capacity: options.capacity,
        cpus: [cpus[0], cpus[1]],
    };
    let mut out = std::io::stdout().lock();
    let mut emit = |line: String| {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .expect("cannot write to stdout");
    };
    emit(format!(
        "mesh-plan reps={} round_trips={} warmup_round_trips={} messages={} warmup_messages={} \
         capacity={} cpus={},{}",
        options.reps,
        plan.round_trips,
        plan.warmup_round_trips,
        plan.messages,
        plan.warmup_messages,
        plan.capacity,
        plan.cpus[0],
        plan.cpus[1]
    ));
    let n = options.subjects.len();
    for rep in 1..=options.reps {
        let first = (rep as usize - 1) % n;
        let order: Vec<Subject> = (0..n).map(|i| options.subjects[(first + i) % n]).collect();
        for &scenario in &options.scenarios {
            for &subject in order.iter().filter(|s| s.runs(scenario)) {
                let label = format!(
                    "rep {rep}/{} {:<10} {:<22}",
                    options.reps,
                    scenario.name(),
                    subject.name()
                );
                match subject.measure(scenario, &plan) {
                    Ok(m) => {
                        let nanos = m.elapsed.as_nanos();
                        let shown = match scenario {
                            Scenario::RoundTrip => {
                                format!("{:>10.0} ns per round trip", nanos as f64 / m.ops as f64)
                            }
                            Scenario::Throughput => {
                                format!("{:>10.2} Mmsg/s", m.ops as f64 * 1e3 / nanos as f64)
                            }
                        };
                        eprintln!("mesh_compare: {label} {shown}, blocked {} times", m.sleeps);
                        emit(report::line(rep, subject, scenario, &m));
                    }
                    Err(reason) => {
                        eprintln!("mesh_compare: {label} FAILED: {reason}");
                        emit(report::failed_line(rep, subject, scenario, &reason));
                    }
                }
            }
        }
    }
    // For the report: whatever else the CPUs did during the run is the rest of their time.
    emit(format!("mesh-cpu seconds={:.3}", own_cpu_seconds()));
    Ok(())
}

/// User and system CPU time of this process so far, every thread included (those that ended
/// too).
fn own_cpu_seconds() -> f64 {
    // SAFETY: `rusage` is plain data, for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`; RUSAGE_SELF is a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return f64::NAN;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [flag, file] if flag == "--report" => std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {file}: {e}"))
            .and_then(|text| report::markdown(&text))
            .map(|md| print!("{md}")),
        [flag, ..] if flag == "-h" || flag == "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        _ => parse_options(&args).and_then(|options| run(&options)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mesh_compare: {message}");
            ExitCode::FAILURE
        }
    }
}
