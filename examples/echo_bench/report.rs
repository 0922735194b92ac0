//! The results of a run, printed for a person or as one JSON line for scripts.

use std::fmt::Write as _;

use crate::load::CoreStats;
use crate::options::{Options, Target};

/// Everything measured in the window.
pub struct Summary<'a> {
    pub options: &'a Options,
    /// The client's backend, as coreio names it.
    pub backend: String,
    pub stats: CoreStats,
    /// The server's CPU time over the window, when its pid was given and readable.
    pub server_cpu_ns: Option<u64>,
    /// This process's CPU time over the window.
    pub client_cpu_ns: Option<u64>,
}

impl Summary<'_> {
    fn window_secs(&self) -> f64 {
        self.options.duration.as_secs_f64()
    }

    fn msgs_per_sec(&self) -> f64 {
        self.stats.messages as f64 / self.window_secs()
    }

    fn mib_per_sec(&self) -> f64 {
        self.msgs_per_sec() * self.options.size as f64 / (1024.0 * 1024.0)
    }

    /// A latency percentile in microseconds; `None` when nothing was recorded.
    fn percentile_us(&self, quantile: f64) -> Option<f64> {
        let histogram = &self.stats.histogram;
        (!histogram.is_empty()).then(|| histogram.value_at_quantile(quantile) as f64 / 1000.0)
    }

    fn max_us(&self) -> Option<f64> {
        let histogram = &self.stats.histogram;
        (!histogram.is_empty()).then(|| histogram.max() as f64 / 1000.0)
    }

    fn mean_us(&self) -> Option<f64> {
        let histogram = &self.stats.histogram;
        (!histogram.is_empty()).then(|| histogram.mean() / 1000.0)
    }

    fn per_message(&self, cpu_ns: Option<u64>) -> Option<f64> {
        cpu_ns
            .filter(|_| self.stats.messages > 0)
            .map(|ns| ns as f64 / self.stats.messages as f64)
    }

    /// The server's CPU time as a fraction of one CPU over the window.
    fn server_util(&self) -> Option<f64> {
        self.server_cpu_ns
            .map(|ns| ns as f64 / 1e9 / self.window_secs())
    }

    pub fn print_human(&self) {
        let o = self.options;
        let load = match o.rate {
            Some(rate) => format!("open loop at {rate:.0} msg/s"),
            None => "closed loop".to_string(),
        };
        println!(
            "echo_bench: {} at {}, {load}, {} conns x {} B, {} client core(s) on {}, {:.1} s after {:.1} s of warm-up",
            o.label,
            o.target,
            o.conns,
            o.size,
            o.cores,
            self.backend,
            o.duration.as_secs_f64(),
            o.warmup.as_secs_f64()
        );
        println!(
            "throughput: {:.0} msg/s, {:.2} MiB/s each way ({} messages)",
            self.msgs_per_sec(),
            self.mib_per_sec(),
            self.stats.messages
        );
        let us = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1}"));
        println!(
            "latency (us): p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}",
            us(self.percentile_us(0.5)),
            us(self.percentile_us(0.9)),
            us(self.percentile_us(0.99)),
            us(self.percentile_us(0.999)),
            us(self.max_us()),
            us(self.mean_us())
        );
        if let (Some(per), Some(util)) = (self.per_message(self.server_cpu_ns), self.server_util())
        {
            println!(
                "server CPU: {per:.0} ns per message ({:.0}% of one CPU)",
                util * 100.0
            );
        }
        if let Some(per) = self.per_message(self.client_cpu_ns) {
            println!("client CPU: {per:.0} ns per message");
        }
        if let Target::Udp(_) = o.target {
            println!(
                "lost: {} datagrams (no echo within {} ms), {} late echoes skipped",
                self.stats.lost,
                o.udp_timeout.as_millis(),
                self.stats.late
            );
        }
        println!(
            "errors: {} ({} messages with wrong bytes)",
            self.stats.errors, self.stats.mismatches
        );
    }

    /// One line of JSON with the keys documented in the crate docs of `echo_bench`.
    pub fn json(&self) -> String {
        let o = self.options;
        let number = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.3}"));
        let mut line = String::from("{");
        let mut field = |key: &str, value: String| {
            if line.len() > 1 {
                line.push(',');
            }
            let _ = write!(line, "{}:{value}", json_string(key));
        };
        field("label", json_string(&o.label));
        field("addr", json_string(&o.target.to_string()));
        field("mode", json_string(o.mode()));
        field("backend", json_string(&self.backend));
        field("conns", o.conns.to_string());
        field("size", o.size.to_string());
        field("rate", number(o.rate));
        field("duration_s", format!("{:.3}", o.duration.as_secs_f64()));
        field("warmup_s", format!("{:.3}", o.warmup.as_secs_f64()));
        field("client_cores", o.cores.to_string());
        field("client_spin_us", o.spin.as_micros().to_string());
        field("messages", self.stats.messages.to_string());
        field("msgs_per_s", format!("{:.1}", self.msgs_per_sec()));
        field("mib_per_s", format!("{:.3}", self.mib_per_sec()));
        field("p50_us", number(self.percentile_us(0.5)));
        field("p90_us", number(self.percentile_us(0.9)));
        field("p99_us", number(self.percentile_us(0.99)));
        field("p999_us", number(self.percentile_us(0.999)));
        field("max_us", number(self.max_us()));
        field("mean_us", number(self.mean_us()));
        field("errors", self.stats.errors.to_string());
        field("mismatches", self.stats.mismatches.to_string());
        field(
            "server_cpu_ns_per_msg",
            number(self.per_message(self.server_cpu_ns)),
        );
        field("server_cpu_util", number(self.server_util()));
        field(
            "client_cpu_ns_per_msg",
            number(self.per_message(self.client_cpu_ns)),
        );
        // Appended after the original keys, so that scripts reading by position still work.
        field("transport", json_string(o.target.transport()));
        field("lost", self.stats.lost.to_string());
        line.push('}');
        line
    }
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
