//! Writes docs/benchmarks.md from the medians: what was run, the per-size tables, the targets,
//! binary sizes and failures.
//!
//! Every figure printed here is a median from the results file (or a ratio of two of them), a
//! binary size the runner measured, or metadata the runner passed in; a missing figure is printed
//! as "n/a", never estimated. The targets are the only constants, and they are printed as targets.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::data::{Cell, Field, Medians, Mode, Run, Summary, distinct};

/// The server the ratios are taken against: "coreio ÷ peer".
pub const SUBJECT: &str = "coreio";

/// The servers that are coreio itself (not peers) for the "≤ every peer's" latency targets.
const OWN: [&str; 3] = ["coreio", "coreio-spin", "coreio-epoll"];

/// The coreio configurations held to the latency targets: the default, and the one that polls
/// before it blocks (`--spin-us`), whose CPU cost shows in its CPU-per-message column.
const LATENCY_SUBJECTS: [&str; 2] = ["coreio", "coreio-spin"];

/// Server CPU per message targets: (server, peer, the largest acceptable server ÷ peer ratio).
const CPU_TARGETS: [(&str, &str, f64); 5] = [
    ("coreio", "tokio-ct", 0.75),
    ("coreio", "monoio", 0.9),
    ("coreio", "glommio", 0.7),
    ("coreio", "uring-raw", 1.0),
    ("coreio-epoll", "tokio-ct", 1.0),
];

/// The CPU targets apply from this many connections up: with one connection the server mostly
/// waits for the client, and its CPU per message measures wake-ups more than the runtime.
const CPU_TARGET_MIN_CONNS: u64 = 16;

/// The connection count at which coreio's p99 must be no worse than every peer's.
const P99_TARGET_CONNS: u64 = 64;

/// The connection count at which coreio's p50 must be no worse than every peer's.
const P50_TARGET_CONNS: u64 = 1;

/// Turns one figure into table text.
type Format = fn(f64) -> String;

/// Fewer repetitions than this and the document calls itself preliminary.
const ROBUST_REPS: usize = 3;

/// What the runner knows about the run that is not in the results lines.
#[derive(Debug, Default)]
pub struct Meta {
    pub date: Option<String>,
    pub machine: Option<String>,
    pub cpu_model: Option<String>,
    /// The coreio revision measured (`git describe`-style, `-dirty` when the tree had changes).
    pub revision: Option<String>,
    pub nproc: Option<String>,
    pub command: Option<String>,
    /// (server CPU, load generator CPU) when both were pinned with taskset.
    pub pinned: Option<(String, String)>,
}

/// A run that produced no results line, as echo_compare.sh recorded it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub rep: String,
    pub server: String,
    pub mode: String,
    pub conns: String,
    pub size: String,
    pub reason: String,
}

/// Everything the document is written from.
pub struct Input<'a> {
    pub meta: &'a Meta,
    pub runs: &'a [Run],
    pub medians: &'a Medians,
    /// Table columns, in order (servers asked for and servers found in the results).
    pub servers: &'a [String],
    /// Connection counts and payload sizes asked for; those found in the results are added.
    pub conns: &'a [u64],
    pub sizes: &'a [u64],
    /// (binary, stripped size in bytes or `None` when it could not be measured).
    pub binary_sizes: &'a [(String, Option<u64>)],
    pub failures: &'a [Failure],
    pub bad_lines: &'a [String],
    /// The chart's file name, relative to the document, when one was drawn.
    pub chart: Option<&'a str>,
}

pub fn render(input: &Input) -> String {
    let mut out = String::new();
    header(&mut out, input);
    let modes: BTreeSet<Mode> = input.medians.keys().map(|(cell, _)| cell.mode).collect();
    if modes.is_empty() {
        out.push_str("\n**No run produced results**; see the failures below.\n");
    }
    for mode in &modes {
        for &size in &sizes_of(input, *mode) {
            size_section(&mut out, input, *mode, size);
        }
    }
    targets(&mut out, input);
    binary_sizes(&mut out, input);
    failures(&mut out, input);
    out
}

fn header(out: &mut String, input: &Input) {
    let meta = input.meta;
    let na = |v: &Option<String>| v.clone().unwrap_or_else(|| "n/a".into());
    let reps = distinct(input.runs, |r| r.rep.map(f64::from)).len();
    let list = |values: Vec<f64>| -> String {
        if values.is_empty() {
            "n/a".into()
        } else {
            values
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let _ = writeln!(out, "# Echo benchmark: coreio and other Rust runtimes\n");
    if reps > 0 && reps < ROBUST_REPS {
        let _ = writeln!(
            out,
            "> **Preliminary:** {reps} repetition(s) only, so a single noisy run can move a \
             median. Regenerate with a full run (`benches/echo_compare.sh`) on a quiet machine \
             before quoting these figures.\n"
        );
    }
    let _ = writeln!(
        out,
        "Generated by `benches/echo_compare.sh` (report writer: `benches/report`). Do not edit \
         by hand: rerun the script.\n"
    );
    out.push_str("## What was run\n\n");
    let _ = writeln!(out, "- Date (UTC): {}", na(&meta.date));
    let _ = writeln!(out, "- Machine: `{}`", na(&meta.machine));
    let _ = writeln!(
        out,
        "- CPU: {} ({} CPUs online)",
        na(&meta.cpu_model),
        na(&meta.nproc)
    );
    let _ = writeln!(out, "- Command: `{}`", na(&meta.command));
    let _ = writeln!(out, "- coreio revision: `{}`", na(&meta.revision));
    let _ = writeln!(
        out,
        "- Each run: {} s measured after {} s of warm-up; {} repetition(s), servers interleaved \
         within each repetition. Every figure below is the median over the repetitions.",
        list(distinct(input.runs, |r| r.duration_s)),
        list(distinct(input.runs, |r| r.warmup_s)),
        if reps == 0 {
            "n/a".to_string()
        } else {
            reps.to_string()
        }
    );
    let _ = writeln!(
        out,
        "- Servers: {}. Each run starts a fresh server process with `--cores 1` on a fresh \
         port; the load generator is `examples/echo_bench` (one thread, coreio on {}).",
        input
            .servers
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", "),
        client_backends(input.runs)
    );
    match &meta.pinned {
        Some((server, client)) => {
            let _ = writeln!(
                out,
                "- Pinning: the server is pinned to CPU {server} and the load generator to CPU \
                 {client} (`taskset -c`), so they never compete for a core."
            );
        }
        None => out.push_str(
            "- Pinning: **none** (fewer than two CPUs or no `taskset`): server and load \
             generator shared the CPUs, so these figures are rougher than usual.\n",
        ),
    }
    out.push_str(
        "- `coreio` is the echo example with its defaults: an idle core blocks at once. \
         `coreio-spin` is the same server with `--spin-us` (`Builder::spin_before_park`): an \
         idle core polls for that long before it blocks, trading CPU burned while idle for a \
         shorter wake-up. The load generator polls the same way (`--spin-us`, \
         `CLIENT_SPIN_US`), so its own wake-ups stay out of every server's latency.\n",
    );
    out.push_str(
        "- The steadiest figure is the **server CPU time per echoed message**, read from \
         `/proc/PID/task/*/schedstat` (time on CPU of all the server's threads over the \
         measured interval, divided by the messages echoed). On a shared VM, throughput and \
         latency move with the neighbours' load and the load generator's own speed; the CPU \
         the server spent per message moves much less, so the targets are set on it.\n",
    );
    out.push_str(
        "\nTo reproduce, on a machine as quiet as you can get (build, then the full grid):\n\n\
         ```sh\nbenches/echo_compare.sh          # full grid, default repetitions\n\
         benches/echo_compare.sh --quick  # a smoke test of the pipeline\n\
         benches/echo_compare.sh --help   # every knob\n```\n\n\
         Ratios are **coreio ÷ that server**. For CPU per message and latency lower is better, \
         so a ratio below 1× favours coreio; for messages per second higher is better, so a \
         ratio above 1× favours coreio.\n",
    );
    if let Some(chart) = input.chart {
        let _ = writeln!(
            out,
            "\n![Closed-loop throughput and p99 latency against connections]({chart})"
        );
    }
}

/// The load generator's backend(s) as its results lines name them.
fn client_backends(runs: &[Run]) -> String {
    let backends: BTreeSet<&str> = runs.iter().filter_map(|r| r.backend.as_deref()).collect();
    if backends.is_empty() {
        "the backend it picked".into()
    } else {
        backends.into_iter().collect::<Vec<_>>().join(" and ")
    }
}

/// The payload sizes that have results in this mode, plus (closed loop) the ones asked for.
fn sizes_of(input: &Input, mode: Mode) -> Vec<u64> {
    let mut sizes: BTreeSet<u64> = input
        .medians
        .keys()
        .filter(|(cell, _)| cell.mode == mode)
        .map(|(cell, _)| cell.size)
        .collect();
    if mode == Mode::Closed {
        sizes.extend(input.sizes);
    }
    sizes.into_iter().collect()
}

fn conns_of(input: &Input, mode: Mode, size: u64) -> Vec<u64> {
    let mut conns: BTreeSet<u64> = input
        .medians
        .keys()
        .filter(|(cell, _)| cell.mode == mode && cell.size == size)
        .map(|(cell, _)| cell.conns)
        .collect();
    conns.extend(input.conns);
    conns.into_iter().collect()
}

fn summary<'a>(input: &'a Input, cell: Cell, server: &str) -> Option<&'a Summary> {
    input.medians.get(&(cell, server.to_string()))
}

fn size_section(out: &mut String, input: &Input, mode: Mode, size: u64) {
    match mode {
        Mode::Closed => {
            let _ = writeln!(out, "\n## {size} B messages, closed loop\n");
        }
        Mode::Open { rate } => {
            let _ = writeln!(
                out,
                "\n## {size} B messages, open loop at {} msgs/s in total\n",
                int(rate as f64)
            );
        }
    }
    let rows = conns_of(input, mode, size);
    let cells: Vec<Cell> = rows
        .iter()
        .map(|&conns| Cell { mode, size, conns })
        .collect();
    let tables: [(&str, Field, Format); 4] = [
        (
            "Server CPU per echoed message (ns; lower is better)",
            |s| s.server_cpu_ns_per_msg,
            int,
        ),
        (
            "Messages per second (higher is better)",
            |s| s.msgs_per_s,
            int,
        ),
        ("p50 latency (µs; lower is better)", |s| s.p50_us, micros),
        ("p99 latency (µs; lower is better)", |s| s.p99_us, micros),
    ];
    for (title, field, format) in tables {
        let _ = writeln!(out, "### {title}\n");
        table(out, input, &cells, field, format);
    }
}

/// One table: a row per connection count, a column per server, each peer's cell followed by the
/// coreio ÷ peer ratio when both are known.
fn table(out: &mut String, input: &Input, cells: &[Cell], field: Field, format: fn(f64) -> String) {
    out.push_str("| conns |");
    for server in input.servers {
        if server == SUBJECT {
            let _ = write!(out, " {server} |");
        } else {
            let _ = write!(out, " {server} (coreio ÷) |");
        }
    }
    out.push_str("\n| ---: |");
    for _ in input.servers {
        out.push_str(" ---: |");
    }
    out.push('\n');
    for cell in cells {
        let subject = summary(input, *cell, SUBJECT).and_then(field);
        let _ = write!(out, "| {} |", cell.conns);
        for server in input.servers {
            let value = summary(input, *cell, server).and_then(field);
            let text = match value {
                None => "n/a".to_string(),
                Some(v) if server == SUBJECT => format(v),
                Some(v) => match ratio(subject, Some(v)) {
                    Some(r) => format!("{} ({:.2}×)", format(v), r),
                    None => format(v),
                },
            };
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
    out.push('\n');
}

/// How one target came out in one cell.
enum Verdict {
    Pass(f64),
    Miss(f64),
    Unknown,
}

impl Verdict {
    /// `subject ÷ peer ≤ limit` on the unrounded medians.
    fn of(subject: Option<f64>, peer: Option<f64>, limit: f64) -> Verdict {
        match ratio(subject, peer) {
            Some(r) if r <= limit => Verdict::Pass(r),
            Some(r) => Verdict::Miss(r),
            None => Verdict::Unknown,
        }
    }

    fn text(&self) -> String {
        match self {
            Verdict::Pass(r) => format!("PASS {r:.3}×"),
            Verdict::Miss(r) => format!("**MISS** {r:.3}×"),
            Verdict::Unknown => "n/a".into(),
        }
    }
}

#[derive(Default)]
struct Tally {
    pass: usize,
    miss: usize,
    unknown: usize,
}

impl Tally {
    fn add(&mut self, verdict: &Verdict) {
        match verdict {
            Verdict::Pass(_) => self.pass += 1,
            Verdict::Miss(_) => self.miss += 1,
            Verdict::Unknown => self.unknown += 1,
        }
    }
}

fn targets(out: &mut String, input: &Input) {
    out.push_str("\n## Targets\n\n");
    out.push_str(
        "Each cell compares medians, closed loop: PASS when coreio ÷ peer is at or under the \
         target, **MISS** otherwise, n/a when either side has no figure. The ratio shown is \
         unrounded to three places.\n\n",
    );
    let mut tally = Tally::default();

    // Server CPU per message, from CPU_TARGET_MIN_CONNS connections up.
    let _ = writeln!(
        out,
        "### Server CPU per message at {CPU_TARGET_MIN_CONNS} connections or more\n"
    );
    out.push_str("| size | conns |");
    for (server, peer, limit) in CPU_TARGETS {
        let _ = write!(out, " {server} ≤ {limit}× {peer} |");
    }
    out.push_str("\n| ---: | ---: |");
    for _ in CPU_TARGETS {
        out.push_str(" :---: |");
    }
    out.push('\n');
    for size in sizes_of(input, Mode::Closed) {
        for conns in conns_of(input, Mode::Closed, size) {
            if conns < CPU_TARGET_MIN_CONNS {
                continue;
            }
            let cell = Cell {
                mode: Mode::Closed,
                size,
                conns,
            };
            let _ = write!(out, "| {size} B | {conns} |");
            for (server, peer, limit) in CPU_TARGETS {
                let cpu =
                    |name: &str| summary(input, cell, name).and_then(|s| s.server_cpu_ns_per_msg);
                let verdict = Verdict::of(cpu(server), cpu(peer), limit);
                tally.add(&verdict);
                let _ = write!(out, " {} |", verdict.text());
            }
            out.push('\n');
        }
    }
    out.push_str(
        "\nWhy these ratios sit near 1×: most of every server's CPU per message is the kernel's \
         TCP work, the same kernel code whatever the runtime. `benches/echo_profile.sh` measures \
         the split (docs/profile-echo.md), including the ratio a runtime would have reached had it \
         spent nothing outside TCP. What each io_uring feature changes (multishot receives, \
         registered files, POLL_FIRST, SQPOLL, zero-copy sends, multishot accepts), measured \
         on and off side by side, is in docs/benchmarks-uring.md.\n",
    );

    let peers: Vec<&String> = input
        .servers
        .iter()
        .filter(|s| !OWN.contains(&s.as_str()))
        .collect();
    let latency: [(&str, u64, Field); 2] = [
        ("p99", P99_TARGET_CONNS, |s| s.p99_us),
        ("p50", P50_TARGET_CONNS, |s| s.p50_us),
    ];
    for (name, conns, field) in latency {
        let _ = writeln!(
            out,
            "\n### {name} latency at {conns} connection(s): coreio ≤ every peer's\n"
        );
        out.push_str("| size | server |");
        for peer in &peers {
            let _ = write!(out, " {peer} |");
        }
        out.push_str("\n| ---: | --- |");
        for _ in &peers {
            out.push_str(" :---: |");
        }
        out.push('\n');
        for size in sizes_of(input, Mode::Closed) {
            let cell = Cell {
                mode: Mode::Closed,
                size,
                conns,
            };
            for subject_name in LATENCY_SUBJECTS {
                if !input.servers.iter().any(|s| s == subject_name) {
                    continue;
                }
                let subject = summary(input, cell, subject_name).and_then(field);
                let _ = write!(out, "| {size} B | {subject_name} |");
                for peer in &peers {
                    let verdict =
                        Verdict::of(subject, summary(input, cell, peer).and_then(field), 1.0);
                    tally.add(&verdict);
                    let _ = write!(out, " {} |", verdict.text());
                }
                out.push('\n');
            }
        }
    }
    let _ = writeln!(
        out,
        "\nIn all: {} PASS, {} MISS, {} n/a.",
        tally.pass, tally.miss, tally.unknown
    );
}

fn binary_sizes(out: &mut String, input: &Input) {
    out.push_str("\n## Binary sizes\n\n");
    if input.binary_sizes.is_empty() {
        out.push_str("Not measured.\n");
        return;
    }
    out.push_str(
        "Release builds, copied and stripped (`strip`); each is a whole echo server.\n\n\
         | binary | stripped bytes | MiB |\n| --- | ---: | ---: |\n",
    );
    for (name, bytes) in input.binary_sizes {
        match bytes {
            Some(b) => {
                let _ = writeln!(
                    out,
                    "| {name} | {} | {:.2} |",
                    int(*b as f64),
                    *b as f64 / (1024.0 * 1024.0)
                );
            }
            None => {
                let _ = writeln!(out, "| {name} | n/a | n/a |");
            }
        }
    }
}

fn failures(out: &mut String, input: &Input) {
    out.push_str("\n## Failures\n\n");
    let with_errors: Vec<(&(Cell, String), &Summary)> =
        input.medians.iter().filter(|(_, s)| s.errors > 0).collect();
    if input.failures.is_empty() && input.bad_lines.is_empty() && with_errors.is_empty() {
        out.push_str("None: every run produced a results line without errors.\n");
        return;
    }
    for f in input.failures {
        let mut what = vec![f.server.clone()];
        if f.rep != "*" && !f.rep.is_empty() {
            what.insert(0, format!("repetition {}", f.rep));
        }
        if f.conns != "*" && !f.conns.is_empty() {
            what.push(format!("{} conns", f.conns));
        }
        if f.size != "*" && !f.size.is_empty() {
            what.push(format!("{} B", f.size));
        }
        if f.mode != "*" && !f.mode.is_empty() {
            what.push(f.mode.clone());
        }
        let _ = writeln!(out, "- {}: {}", what.join(", "), f.reason);
    }
    for line in input.bad_lines {
        let _ = writeln!(out, "- unreadable {line}");
    }
    for ((cell, server), s) in with_errors {
        let _ = writeln!(
            out,
            "- {server}, {} conns, {} B: {} error(s) reported by echo_bench across its runs",
            cell.conns, cell.size, s.errors
        );
    }
}

fn ratio(subject: Option<f64>, peer: Option<f64>) -> Option<f64> {
    match (subject, peer) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

/// A whole number with thousands separators: 1234567.4 → "1,234,567".
pub fn int(value: f64) -> String {
    let rounded = value.round();
    let digits = format!("{}", rounded.abs() as u64);
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if rounded < 0.0 {
        grouped.insert(0, '-');
    }
    grouped
}

/// Microseconds: one decimal under 1000 µs, whole numbers above.
fn micros(value: f64) -> String {
    if value.abs() < 1000.0 {
        format!("{value:.1}")
    } else {
        int(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(int(0.4), "0");
        assert_eq!(int(999.6), "1,000");
        assert_eq!(int(1234567.0), "1,234,567");
        assert_eq!(micros(41.26), "41.3");
        assert_eq!(micros(12345.0), "12,345");
    }

    #[test]
    fn verdicts_use_unrounded_ratios() {
        assert!(matches!(
            Verdict::of(Some(75.0), Some(100.0), 0.75),
            Verdict::Pass(_)
        ));
        assert!(matches!(
            Verdict::of(Some(75.1), Some(100.0), 0.75),
            Verdict::Miss(_)
        ));
        assert!(matches!(
            Verdict::of(None, Some(100.0), 0.75),
            Verdict::Unknown
        ));
        assert!(matches!(
            Verdict::of(Some(1.0), Some(0.0), 0.75),
            Verdict::Unknown
        ));
    }
}
