//! The result lines `mesh_compare` prints, and the Markdown tables it makes of them.
//!
//! A run prints one `mesh-plan` line, then one `mesh` line per measurement (or a `mesh-failed`
//! line), each `key=value` separated by single spaces:
//!
//! ```text
//! mesh-plan reps=5 round_trips=100000 warmup_round_trips=10000 messages=5000000 warmup_messages=500000 capacity=1024 cpus=0,1
//! mesh rep=1 subject=coreio-uring scenario=roundtrip ops=100000 nanos=1234567890 sleeps=200012
//! mesh-failed rep=1 subject=coreio-epoll scenario=throughput reason=...
//! ```
//!
//! `mesh_compare --report FILE` reads such lines (others are ignored) and prints the tables of
//! `docs/benchmarks-mesh.md`: medians over the repetitions, with min and max, and each median
//! as a multiple of the first subject's (coreio-uring); and how often the two sides blocked
//! (`sleeps`, voluntary context switches of both threads) per round trip or per 1000 messages.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::subjects::{Measured, Scenario, Subject};

/// One measurement, as read back from its line.
#[derive(Clone, Debug)]
struct Row {
    rep: u32,
    subject: String,
    scenario: String,
    ops: u64,
    nanos: u64,
    sleeps: u64,
}

/// The `key=value` fields of a line that starts with `tag ` (the last field, `reason=`, may
/// hold spaces).
fn fields<'a>(line: &'a str, tag: &str) -> Option<HashMap<&'a str, &'a str>> {
    let rest = line.trim_end().strip_prefix(tag)?.strip_prefix(' ')?;
    let (head, reason) = match rest.split_once(" reason=") {
        Some((head, reason)) => (head, Some(reason)),
        None => (rest, None),
    };
    let mut map: HashMap<&str, &str> = head
        .split(' ')
        .filter_map(|field| field.split_once('='))
        .collect();
    if let Some(reason) = reason {
        map.insert("reason", reason);
    }
    Some(map)
}

fn parse_row(line: &str) -> Option<Row> {
    let f = fields(line, "mesh")?;
    Some(Row {
        rep: f.get("rep")?.parse().ok()?,
        subject: f.get("subject")?.to_string(),
        scenario: f.get("scenario")?.to_string(),
        ops: f.get("ops")?.parse().ok()?,
        nanos: f.get("nanos")?.parse().ok()?,
        sleeps: f.get("sleeps")?.parse().ok()?,
    })
}

/// The line of one measurement.
pub fn line(rep: u32, subject: Subject, scenario: Scenario, measured: &Measured) -> String {
    format!(
        "mesh rep={rep} subject={} scenario={} ops={} nanos={} sleeps={}",
        subject.name(),
        scenario.name(),
        measured.ops,
        measured.elapsed.as_nanos(),
        measured.sleeps
    )
}

/// The line of a failed measurement.
pub fn failed_line(rep: u32, subject: Subject, scenario: Scenario, reason: &str) -> String {
    let reason = reason.replace(['\n', '\r'], " ");
    format!(
        "mesh-failed rep={rep} subject={} scenario={} reason={reason}",
        subject.name(),
        scenario.name()
    )
}

/// The figure a row gives: nanoseconds per round trip, or millions of messages per second.
fn figure(scenario: &str, row: &Row) -> f64 {
    if scenario == Scenario::Throughput.name() {
        row.ops as f64 * 1e3 / row.nanos as f64
    } else {
        row.nanos as f64 / row.ops as f64
    }
}

/// Times the two sides blocked per round trip, or per 1000 messages.
fn sleeps_per_unit(scenario: &str, row: &Row) -> f64 {
    let per = if scenario == Scenario::Throughput.name() {
        1000.0
    } else {
        1.0
    };
    row.sleeps as f64 * per / row.ops as f64
}

/// Median, min and max of a non-empty list.
fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    (median, sorted[0], sorted[n - 1])
}

/// `12345.6` as `12,346`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn format_figure(scenario: &str, value: f64) -> String {
    if scenario == Scenario::Throughput.name() {
        format!("{value:.2}")
    } else {
        thousands(value)
    }
}

/// The Markdown tables of the result lines in `text`.
pub fn markdown(text: &str) -> Result<String, String> {
    let rows: Vec<Row> = text.lines().filter_map(parse_row).collect();
    if rows.is_empty() {
        return Err("no `mesh` result lines".into());
    }
    let failures: Vec<HashMap<&str, &str>> = text
        .lines()
        .filter_map(|l| fields(l, "mesh-failed"))
        .collect();
    let reps = rows.iter().map(|r| r.rep).max().unwrap_or(0);
    let subjects: Vec<Subject> = Subject::ALL
        .into_iter()
        .filter(|s| rows.iter().any(|r| r.subject == s.name()))
        .collect();
    // (subject, scenario) -> figures, in repetition order.
    let figures = |subject: Subject, scenario: Scenario| -> Vec<(u32, f64)> {
        let mut list: Vec<(u32, f64)> = rows
            .iter()
            .filter(|r| r.subject == subject.name() && r.scenario == scenario.name())
            .map(|r| (r.rep, figure(scenario.name(), r)))
            .collect();
        list.sort_by_key(|&(rep, _)| rep);
        list
    };
    let median = |subject: Subject, scenario: Scenario| -> Option<(f64, f64, f64)> {
        let values: Vec<f64> = figures(subject, scenario).iter().map(|&(_, v)| v).collect();
        (!values.is_empty()).then(|| summary(&values))
    };
    let sleeps = |subject: Subject, scenario: Scenario| -> Option<f64> {
        let values: Vec<f64> = rows
            .iter()
            .filter(|r| r.subject == subject.name() && r.scenario == scenario.name())
            .map(|r| sleeps_per_unit(scenario.name(), r))
            .collect();
        (!values.is_empty()).then(|| summary(&values).0)
    };
    let reference = Subject::ALL[0];

    let mut out = String::new();
    let w = &mut out;
    writeln!(
        w,
        "| subject | round trip, ns: median (min–max) | round trip vs {r} | blocked per round trip | throughput, Mmsg/s: median (min–max) | throughput vs {r} | blocked per 1000 messages |",
        r = reference.name()
    )
    .unwrap();
    writeln!(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |").unwrap();
    for &subject in &subjects {
        write!(w, "| {} |", subject.name()).unwrap();
        for scenario in Scenario::ALL {
            let cells = match median(subject, scenario) {
                None => ["n/a".to_string(), "n/a".to_string(), "n/a".to_string()],
                Some((med, min, max)) => {
                    let name = scenario.name();
                    let spread = format!(
                        "**{}** ({}–{})",
                        format_figure(name, med),
                        format_figure(name, min),
                        format_figure(name, max)
                    );
                    let ratio = match median(reference, scenario) {
                        Some((base, _, _)) if base > 0.0 => format!("{:.2}×", med / base),
                        _ => "n/a".to_string(),
                    };
                    let blocked = sleeps(subject, scenario)
                        .map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}"));
                    [spread, ratio, blocked]
                }
            };
            write!(w, " {} | {} | {} |", cells[0], cells[1], cells[2]).unwrap();
        }
        writeln!(w).unwrap();
    }
    writeln!(w).unwrap();
    writeln!(
        w,
        "Ratios are median over median. Round trip: the subject's time as a multiple of {r}'s \
         (above 1.00× is slower than {r}). Throughput: the subject's rate as a multiple of {r}'s \
         (above 1.00× moves more messages per second than {r}). *Blocked*: how many times \
         the two sides' threads blocked (voluntary context switches of both, counted over the \
         measured section; median over the repetitions), per round trip or per 1000 messages: \
         about 2 per round trip means both sides sleep and are woken every time, 0 that \
         neither ever sleeps.",
        r = reference.name()
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(w, "| subject | what it is |").unwrap();
    writeln!(w, "| --- | --- |").unwrap();
    for &subject in &subjects {
        writeln!(w, "| {} | {} |", subject.name(), subject.describe()).unwrap();
    }

    for scenario in Scenario::ALL {
        let unit = match scenario {
            Scenario::RoundTrip => "ns per round trip",
            Scenario::Throughput => "Mmsg/s",
        };
        writeln!(w).unwrap();
        writeln!(w, "### Every repetition: {} ({unit})", scenario.name()).unwrap();
        writeln!(w).unwrap();
        write!(w, "| subject |").unwrap();
        for rep in 1..=reps {
            write!(w, " rep {rep} |").unwrap();
        }
        writeln!(w).unwrap();
        write!(w, "| --- |").unwrap();
        for _ in 1..=reps {
            write!(w, " ---: |").unwrap();
        }
        writeln!(w).unwrap();
        for &subject in &subjects {
            if !subject.runs(scenario) {
                continue;
            }
            let list = figures(subject, scenario);
            write!(w, "| {} |", subject.name()).unwrap();
            for rep in 1..=reps {
                match list.iter().find(|&&(r, _)| r == rep) {
                    Some(&(_, v)) => write!(w, " {} |", format_figure(scenario.name(), v)),
                    None => write!(w, " – |"),
                }
                .unwrap();
            }
            writeln!(w).unwrap();
        }
    }

    if !failures.is_empty() {
        writeln!(w).unwrap();
        writeln!(w, "### Failed measurements").unwrap();
        writeln!(w).unwrap();
        writeln!(w, "| rep | subject | scenario | reason |").unwrap();
        writeln!(w, "| ---: | --- | --- | --- |").unwrap();
        for f in &failures {
            let get = |key| f.get(key).copied().unwrap_or("?");
            writeln!(
                w,
                "| {} | {} | {} | {} |",
                get("rep"),
                get("subject"),
                get("scenario"),
                get("reason").replace('|', "\\|")
            )
            .unwrap();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(ops: u64, nanos: u64, sleeps: u64) -> Measured {
        Measured {
            ops,
            elapsed: std::time::Duration::from_nanos(nanos),
            sleeps,
        }
    }

    #[test]
    fn lines_round_trip_and_median_is_the_middle() {
        let rt = Scenario::RoundTrip;
        let text = [
            "mesh-plan reps=3".to_string(),
            line(1, Subject::CoreioUring, rt, &measured(10, 100_000, 20)),
            line(2, Subject::CoreioUring, rt, &measured(10, 300_000, 10)),
            line(3, Subject::CoreioUring, rt, &measured(10, 200_000, 0)),
            line(1, Subject::Flume, rt, &measured(10, 100_000, 5)),
            failed_line(2, Subject::Flume, Scenario::Throughput, "it broke\nbadly"),
        ]
        .join("\n");
        let md = markdown(&text).unwrap();
        assert!(md.contains(
            "| coreio-uring | **20,000** (10,000–30,000) | 1.00× | 1.00 | n/a | n/a | n/a |"
        ));
        assert!(md.contains("| flume-threads | **10,000** (10,000–10,000) | 0.50× | 0.50 |"));
        assert!(md.contains("| 2 | flume-threads | throughput | it broke badly |"));
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234.0), "1,234");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }
}
