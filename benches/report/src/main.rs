//! `echo_report`: turns the results of `benches/echo_compare.sh` into docs/benchmarks.md and
//! docs/benchmarks-echo.svg.
//!
//! ```text
//! echo_report --results DIR/results.jsonl [--failures DIR/failures.tsv]
//!             [--binary-sizes DIR/binary-sizes.tsv] --md OUT.md [--svg OUT.svg]
//!             [--servers "coreio tokio-ct .."] [--conns "1 16 .."] [--sizes "64 .."]
//!             [--date D] [--machine M] [--cpu-model C] [--nproc N] [--command CMD] [--revision R]
//!             [--pinned "SERVER_CPU CLIENT_CPU"]
//! ```
//!
//! The inputs, all written by the runner:
//! - results: JSON lines, one `echo_bench --json` object per successful run, with a `rep` field;
//! - failures: tab-separated `rep server mode conns size reason` per failed run (`*` = all);
//! - binary sizes: tab-separated `binary bytes` (bytes empty when it could not be measured).
//!
//! The modules: [`data`] reads and reduces the results (medians per server and cell),
//! [`markdown`] writes the document, [`chart`] draws the SVG.

mod chart;
mod data;
mod markdown;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use markdown::{Failure, Meta};

const USAGE: &str = "\
usage: echo_report --results FILE --md OUT.md [--svg OUT.svg] [--failures FILE]
                   [--binary-sizes FILE] [--servers LIST] [--conns LIST] [--sizes LIST]
                   [--date D] [--machine M] [--cpu-model C] [--nproc N] [--command CMD] [--revision R]
                   [--pinned \"SERVER_CPU CLIENT_CPU\"]

Writes the echo benchmark report from echo_compare.sh's results (see benches/echo_compare.sh).
";

/// The order servers are shown in when the runner does not say; others follow, sorted.
const DEFAULT_ORDER: [&str; 8] = [
    "coreio",
    "coreio-epoll",
    "tokio-ct",
    "tokio-mt",
    "smol",
    "monoio",
    "glommio",
    "uring-raw",
];

#[derive(Default)]
struct Options {
    results: Option<PathBuf>,
    failures: Option<PathBuf>,
    binary_sizes: Option<PathBuf>,
    md: Option<PathBuf>,
    svg: Option<PathBuf>,
    servers: Vec<String>,
    conns: Vec<u64>,
    sizes: Vec<u64>,
    meta: Meta,
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("echo_report: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("echo_report: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)` means `--help`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options::default();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let numbers = |text: &str| -> Result<Vec<u64>, String> {
            text.split_whitespace()
                .map(|n| {
                    n.parse()
                        .map_err(|_| format!("{flag} takes whole numbers, got {n:?}"))
                })
                .collect()
        };
        match flag.as_str() {
            "--results" => o.results = Some(value.into()),
            "--failures" => o.failures = Some(value.into()),
            "--binary-sizes" => o.binary_sizes = Some(value.into()),
            "--md" => o.md = Some(value.into()),
            "--svg" => o.svg = Some(value.into()),
            "--servers" => o.servers = value.split_whitespace().map(String::from).collect(),
            "--conns" => o.conns = numbers(&value)?,
            "--sizes" => o.sizes = numbers(&value)?,
            "--date" => o.meta.date = Some(value),
            "--machine" => o.meta.machine = Some(value),
            "--cpu-model" => o.meta.cpu_model = Some(value),
            "--nproc" => o.meta.nproc = Some(value),
            "--command" => o.meta.command = Some(value),
            "--revision" => o.meta.revision = Some(value),
            "--pinned" => {
                let cpus: Vec<&str> = value.split_whitespace().collect();
                match cpus[..] {
                    [server, client] => o.meta.pinned = Some((server.into(), client.into())),
                    _ => return Err(format!("--pinned takes two CPUs, got {value:?}")),
                }
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if o.results.is_none() || o.md.is_none() {
        return Err("--results and --md are required".into());
    }
    Ok(Some(o))
}

fn run(o: &Options) -> Result<(), String> {
    let results_path = o.results.as_deref().expect("checked by parse_args");
    let results = data::parse_results(&read(results_path)?);
    let medians = data::summarize(&results.runs);

    // Columns: the servers asked for, in that order, then any others found in the results.
    let mut servers = if o.servers.is_empty() {
        DEFAULT_ORDER.iter().map(|s| s.to_string()).collect()
    } else {
        o.servers.clone()
    };
    let mut extra: Vec<String> = results
        .runs
        .iter()
        .map(|run| run.label.clone())
        .filter(|label| !servers.contains(label))
        .collect();
    extra.sort();
    extra.dedup();
    servers.extend(extra);

    let failures = match &o.failures {
        Some(path) if path.exists() => parse_failures(&read(path)?),
        _ => Vec::new(),
    };
    let binary_sizes = match &o.binary_sizes {
        Some(path) if path.exists() => parse_binary_sizes(&read(path)?),
        _ => Vec::new(),
    };

    let mut chart_name = None;
    if let Some(svg) = &o.svg {
        match chart::draw(svg, &medians, &servers) {
            Ok(()) => chart_name = svg.file_name().and_then(|n| n.to_str()).map(String::from),
            // A report without its chart is still worth writing.
            Err(message) => eprintln!("echo_report: no chart: {message}"),
        }
    }

    let text = markdown::render(&markdown::Input {
        meta: &o.meta,
        runs: &results.runs,
        medians: &medians,
        servers: &servers,
        conns: &o.conns,
        sizes: &o.sizes,
        binary_sizes: &binary_sizes,
        failures: &failures,
        bad_lines: &results.bad_lines,
        chart: chart_name.as_deref(),
    });
    let md = o.md.as_deref().expect("checked by parse_args");
    std::fs::write(md, text).map_err(|e| format!("cannot write {}: {e}", md.display()))?;
    eprintln!(
        "echo_report: {} runs in {} cells, {} failure(s) -> {}",
        results.runs.len(),
        medians.len(),
        failures.len() + results.bad_lines.len(),
        md.display()
    );
    Ok(())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// `rep server mode conns size reason`, tab-separated; a short line leaves the rest empty.
fn parse_failures(text: &str) -> Vec<Failure> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut fields = line.splitn(6, '\t').map(str::to_string);
            let mut next = || fields.next().unwrap_or_default();
            Failure {
                rep: next(),
                server: next(),
                mode: next(),
                conns: next(),
                size: next(),
                reason: next(),
            }
        })
        .collect()
}

/// `binary bytes`, tab-separated; bytes empty or not a number means "not measured".
fn parse_binary_sizes(text: &str) -> Vec<(String, Option<u64>)> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (name, bytes) = line.split_once('\t').unwrap_or((line, ""));
            (name.to_string(), bytes.trim().parse().ok())
        })
        .collect()
}
