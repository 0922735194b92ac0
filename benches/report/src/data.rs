//! The measurements: one `echo_bench --json` line per run, grouped into cells and reduced to
//! medians.
//!
//! This module owns reading the results file and the arithmetic on it, nothing else: it never
//! formats a number for people and never invents one. A cell is one (mode, payload size,
//! connections) point; every server measured at that point has a [`Summary`] whose fields are the
//! median over the repetitions of the same field in the results lines. A field that a run did not
//! report (JSON `null` or absent) is left out of its median; a field no run reported stays `None`
//! and is printed as "n/a".

use std::collections::BTreeMap;

use serde::Deserialize;

/// One results line: the object `echo_bench --json` prints, plus the `rep` that
/// echo_compare.sh adds. Only the fields the report uses are read; unknown ones are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    /// Repetition number (1-based), added by the runner; absent in a bare echo_bench line.
    #[serde(default)]
    pub rep: Option<u32>,
    /// The server's name as given to `--label` (coreio, tokio-ct, ...).
    pub label: String,
    /// The load generator's own coreio backend (io_uring or epoll), when it says.
    #[serde(default)]
    pub backend: Option<String>,
    /// "closed" (each connection waits for its echo) or "open" (fixed send rate).
    #[serde(default)]
    pub mode: Option<String>,
    pub conns: u64,
    /// Payload bytes per message.
    pub size: u64,
    /// Target messages per second in open-loop mode; 0 or absent in closed-loop mode.
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub duration_s: Option<f64>,
    #[serde(default)]
    pub warmup_s: Option<f64>,
    #[serde(default)]
    pub msgs_per_s: Option<f64>,
    #[serde(default)]
    pub mib_per_s: Option<f64>,
    #[serde(default)]
    pub p50_us: Option<f64>,
    #[serde(default)]
    pub p90_us: Option<f64>,
    #[serde(default)]
    pub p99_us: Option<f64>,
    #[serde(default)]
    pub p999_us: Option<f64>,
    #[serde(default)]
    pub max_us: Option<f64>,
    #[serde(default)]
    pub errors: Option<u64>,
    #[serde(default)]
    pub server_cpu_ns_per_msg: Option<f64>,
    #[serde(default)]
    pub server_cpu_util: Option<f64>,
    #[serde(default)]
    pub client_cpu_ns_per_msg: Option<f64>,
}

impl Run {
    pub fn mode(&self) -> Mode {
        let rate = self.rate.unwrap_or(0.0);
        match self.mode.as_deref() {
            Some("open") => Mode::Open {
                rate: rate.round() as u64,
            },
            Some("closed") | None if rate <= 0.0 => Mode::Closed,
            // A rate with no mode, or a mode this report does not know: keep it apart.
            _ => Mode::Open {
                rate: rate.round() as u64,
            },
        }
    }

    pub fn cell(&self) -> Cell {
        Cell {
            mode: self.mode(),
            size: self.size,
            conns: self.conns,
        }
    }
}

/// How the load generator paced its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Each connection sends its next message when the previous echo arrives.
    Closed,
    /// Messages are sent at a fixed total rate (messages per second) whatever the replies do.
    Open { rate: u64 },
}

/// One point of the benchmark grid. Ordered by mode, then payload size, then connections, which is
/// the order the report prints them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cell {
    pub mode: Mode,
    pub size: u64,
    pub conns: u64,
}

/// The medians of one server's runs in one cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// How many runs the medians are taken over.
    pub runs: usize,
    pub msgs_per_s: Option<f64>,
    pub mib_per_s: Option<f64>,
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    pub server_cpu_ns_per_msg: Option<f64>,
    pub server_cpu_util: Option<f64>,
    pub client_cpu_ns_per_msg: Option<f64>,
    /// The sum (not the median) of the errors the runs reported: any error is worth a look.
    pub errors: u64,
}

impl Summary {
    pub fn of(runs: &[&Run]) -> Summary {
        let m = |field: fn(&Run) -> Option<f64>| median(runs.iter().map(|run| field(run)));
        Summary {
            runs: runs.len(),
            msgs_per_s: m(|r| r.msgs_per_s),
            mib_per_s: m(|r| r.mib_per_s),
            p50_us: m(|r| r.p50_us),
            p90_us: m(|r| r.p90_us),
            p99_us: m(|r| r.p99_us),
            p999_us: m(|r| r.p999_us),
            max_us: m(|r| r.max_us),
            server_cpu_ns_per_msg: m(|r| r.server_cpu_ns_per_msg),
            server_cpu_util: m(|r| r.server_cpu_util),
            client_cpu_ns_per_msg: m(|r| r.client_cpu_ns_per_msg),
            errors: runs.iter().filter_map(|run| run.errors).sum(),
        }
    }
}

/// Picks one metric out of a summary (a table's or a chart's figure).
pub type Field = fn(&Summary) -> Option<f64>;

/// The median of the values that are present and finite; `None` when there are none.
///
/// With an even count it is the mean of the two middle values (the usual definition), so with
/// two repetitions it is their mean. NaN and infinities are treated as missing rather than
/// sorted, so one broken run cannot move the result.
pub fn median(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut values: Vec<f64> = values
        .into_iter()
        .flatten()
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Every server's summary in every cell, keyed by (cell, server label).
pub type Medians = BTreeMap<(Cell, String), Summary>;

/// Groups runs by (cell, server) and reduces each group to its medians.
pub fn summarize(runs: &[Run]) -> Medians {
    let mut groups: BTreeMap<(Cell, String), Vec<&Run>> = BTreeMap::new();
    for run in runs {
        groups
            .entry((run.cell(), run.label.clone()))
            .or_default()
            .push(run);
    }
    groups
        .into_iter()
        .map(|(key, runs)| (key, Summary::of(&runs)))
        .collect()
}

/// A results file, read: the runs, and one message for each line that is not a run.
pub struct Results {
    pub runs: Vec<Run>,
    pub bad_lines: Vec<String>,
}

/// Reads JSON lines; blank lines are skipped, unparsable ones reported (with their line number)
/// rather than fatal, so one truncated line does not lose a whole night's measurements.
pub fn parse_results(text: &str) -> Results {
    let mut runs = Vec::new();
    let mut bad_lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<Run>(line) {
            Ok(run) => runs.push(run),
            Err(err) => bad_lines.push(format!("results line {}: {err}", index + 1)),
        }
    }
    Results { runs, bad_lines }
}

/// The distinct values of a field across runs, in increasing order (for "duration 3 s").
pub fn distinct(runs: &[Run], field: fn(&Run) -> Option<f64>) -> Vec<f64> {
    let mut values: Vec<f64> = runs
        .iter()
        .filter_map(field)
        .filter(|v| v.is_finite())
        .collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(rep: u32, label: &str, conns: u64, size: u64, msgs: f64, cpu: Option<f64>) -> String {
        let cpu = cpu.map_or("null".to_string(), |v| v.to_string());
        format!(
            r#"{{"rep":{rep},"label":"{label}","addr":"127.0.0.1:1","mode":"closed","conns":{conns},"size":{size},"rate":0,"duration_s":3,"warmup_s":1,"client_cores":1,"messages":1,"msgs_per_s":{msgs},"mib_per_s":1.5,"p50_us":10,"p90_us":11,"p99_us":12.5,"p999_us":13,"max_us":14,"mean_us":10.2,"errors":0,"server_cpu_ns_per_msg":{cpu},"server_cpu_util":0.9,"client_cpu_ns_per_msg":500}}"#
        )
    }

    #[test]
    fn median_odd_even_and_missing() {
        assert_eq!(median([Some(3.0), Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(
            median([Some(4.0), Some(1.0), Some(3.0), Some(2.0)]),
            Some(2.5)
        );
        assert_eq!(median([None, Some(7.0), None]), Some(7.0));
        assert_eq!(median([Some(f64::NAN), Some(5.0), Some(1.0)]), Some(3.0));
        assert_eq!(median([None, None]), None);
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn groups_by_server_and_cell_and_takes_medians() {
        let text = [
            line(1, "coreio", 16, 64, 100.0, Some(900.0)),
            line(2, "coreio", 16, 64, 300.0, Some(700.0)),
            line(3, "coreio", 16, 64, 200.0, None),
            line(1, "coreio", 64, 64, 50.0, Some(1.0)),
            line(1, "tokio-ct", 16, 64, 80.0, Some(1200.0)),
            String::new(),
            "{not json".to_string(),
        ]
        .join("\n");
        let results = parse_results(&text);
        assert_eq!(results.runs.len(), 5);
        assert_eq!(results.bad_lines.len(), 1);
        assert!(results.bad_lines[0].starts_with("results line 7:"));

        let medians = summarize(&results.runs);
        assert_eq!(medians.len(), 3);
        let cell = Cell {
            mode: Mode::Closed,
            size: 64,
            conns: 16,
        };
        let coreio = &medians[&(cell, "coreio".to_string())];
        assert_eq!(coreio.runs, 3);
        assert_eq!(coreio.msgs_per_s, Some(200.0));
        // The null CPU figure is left out: the median of 900 and 700.
        assert_eq!(coreio.server_cpu_ns_per_msg, Some(800.0));
        assert_eq!(coreio.p99_us, Some(12.5));
        let tokio = &medians[&(cell, "tokio-ct".to_string())];
        assert_eq!(tokio.runs, 1);
        assert_eq!(tokio.server_cpu_ns_per_msg, Some(1200.0));
    }

    #[test]
    fn open_loop_runs_are_their_own_cells() {
        let closed = line(1, "smol", 1, 64, 10.0, None);
        let open = closed
            .replace(r#""mode":"closed""#, r#""mode":"open""#)
            .replace(r#""rate":0"#, r#""rate":5000"#);
        let results = parse_results(&format!("{closed}\n{open}\n"));
        let medians = summarize(&results.runs);
        let modes: Vec<Mode> = medians.keys().map(|(cell, _)| cell.mode).collect();
        assert_eq!(modes, vec![Mode::Closed, Mode::Open { rate: 5000 }]);
    }
}
