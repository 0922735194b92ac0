//! Writes `docs/benchmarks-micro.md` from a finished run of `benches/micro_compare.sh`: the
//! medians criterion stored under `<criterion dir>/<group>/<runtime>/new/estimates.json`, the
//! `task_memory` result lines, and what the script says about the machine and the command.
//!
//! ```text
//! micro_report --criterion DIR --memory FILE --out FILE --date D --machine M --cpu C
//!              --nproc N --pinning P --rustc V --command CMD [--load-before L]
//!              [--load-after L] [--elapsed SECONDS] [--revision R]
//! ```
//!
//! Every ratio is coreio / peer (median over median): below 1 means coreio is faster (or
//! smaller). The reference figures of the project seed (another machine) and coreio's targets
//! are written into the document as constants of this file.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use coreio_bench_micro::TaskMemory;

/// The runtimes, in table order; the first is the one under test.
const RUNTIMES: [&str; 3] = ["coreio", "tokio", "smol"];

/// One criterion group of `benches/runtimes.rs`.
struct Group {
    id: &'static str,
    title: &'static str,
    /// What one iteration (the median's unit) is.
    iteration: &'static str,
    /// Operations per iteration, for the per-operation column (1: no such column).
    per: u32,
    /// Name of one operation.
    unit: &'static str,
}

const GROUPS: [Group; 5] = [
    Group {
        id: "spawn_join_1000",
        title: "Spawn and join 1000 tasks",
        iteration: "spawn 1000 empty tasks, then await their 1000 handles",
        per: 1000,
        unit: "task",
    },
    Group {
        id: "context_switch",
        title: "Context switch (yield ping-pong)",
        iteration: "one switch between two tasks that take turns through the runtime's own `yield_now`",
        per: 1,
        unit: "switch",
    },
    Group {
        id: "context_switch_wake",
        title: "Context switch (wake ping-pong)",
        iteration: "one switch between two tasks that hand a baton over and wake each other (wake + schedule + poll)",
        per: 1,
        unit: "switch",
    },
    Group {
        id: "timers_cancel_100k",
        title: "Register and cancel 100,000 timers",
        iteration: "create 100,000 timers due in 1 s, poll each once (registers it), drop them all",
        per: 100_000,
        unit: "timer",
    },
    Group {
        id: "timers_fire_100k",
        title: "Register and fire 100,000 timers",
        iteration: "create and register 100,000 timers with one deadline, let the runtime fire them, \
                    poll them to completion; busy time only (the idle wait until the deadline is not counted)",
        per: 100_000,
        unit: "timer",
    },
];

/// A criterion median and its 95% confidence interval, in ns.
#[derive(Clone, Copy)]
struct Median {
    point: f64,
    lower: f64,
    upper: f64,
}

fn read_median(criterion: &Path, group: &str, runtime: &str) -> Result<Median, String> {
    let path = criterion
        .join(group)
        .join(runtime)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let median = &json["median"];
    let number = |value: &serde_json::Value| {
        value
            .as_f64()
            .ok_or_else(|| format!("{} has no median estimate", path.display()))
    };
    Ok(Median {
        point: number(&median["point_estimate"])?,
        lower: number(&median["confidence_interval"]["lower_bound"])?,
        upper: number(&median["confidence_interval"]["upper_bound"])?,
    })
}

/// A duration in ns, written with a unit that keeps 3 or 4 significant digits.
fn time(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// `n` with a comma between groups of three digits.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn ratio(coreio: f64, peer: f64) -> String {
    format!("{:.2}×", coreio / peer)
}

/// The command-line options, `--key value` each.
struct Options(HashMap<String, String>);

impl Options {
    fn parse() -> Result<Options, String> {
        let mut map = HashMap::new();
        let mut args = std::env::args().skip(1);
        while let Some(key) = args.next() {
            let key = key
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --option, got {key:?}"))?
                .to_owned();
            let value = args
                .next()
                .ok_or_else(|| format!("--{key} needs a value"))?;
            map.insert(key, value);
        }
        Ok(Options(map))
    }

    fn get(&self, key: &str) -> Result<&str, String> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("missing --{key}"))
    }

    fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.0.get(key).map_or(default, String::as_str)
    }
}

/// The backend a coreio core picks in this environment (`COREIO_BACKEND` included).
fn coreio_backend() -> String {
    match coreio::block_on(async { coreio::backend() }) {
        Ok(Some(backend)) => backend.to_string(),
        Ok(None) => "unknown".into(),
        Err(e) => format!("unavailable ({e})"),
    }
}

fn report(opts: &Options) -> Result<String, String> {
    let criterion = PathBuf::from(opts.get("criterion")?);
    let memory_text = std::fs::read_to_string(opts.get("memory")?)
        .map_err(|e| format!("cannot read the task_memory output: {e}"))?;
    let memory: Vec<TaskMemory> = memory_text.lines().filter_map(TaskMemory::parse).collect();
    // `burst`: all tasks spawned at once (the headline); otherwise the batched run.
    let find_memory = |runtime: &str, burst: bool| {
        memory
            .iter()
            .find(|m| m.runtime == runtime && m.is_burst() == burst)
            .ok_or_else(|| format!("no task_memory line for {runtime} (burst: {burst})"))
    };

    let mut medians = HashMap::new();
    for group in &GROUPS {
        for runtime in RUNTIMES {
            medians.insert(
                (group.id, runtime),
                read_median(&criterion, group.id, runtime)?,
            );
        }
    }
    let median = |group: &str, runtime: &str| medians[&(group, runtime)].point;

    let mut md = String::new();
    let w = &mut md;
    // Writing to a String cannot fail.
    let _ = writeln!(w, "# Micro-benchmarks: coreio, tokio and smol\n");
    let _ = writeln!(
        w,
        "Generated by `benches/micro_compare.sh` (which runs `micro_report`); rerun it rather \
         than editing this file. Every ratio is **coreio / peer**, median over median: below \
         1.00× coreio is faster or smaller.\n"
    );

    let _ = writeln!(w, "## Run\n");
    let _ = writeln!(w, "| | |\n| --- | --- |");
    let _ = writeln!(w, "| date (UTC) | {} |", opts.get("date")?);
    let _ = writeln!(w, "| machine | `{}` |", opts.get("machine")?);
    let _ = writeln!(w, "| CPU | {} |", opts.get("cpu")?);
    let _ = writeln!(
        w,
        "| CPUs online (`nproc --all`) | {} |",
        opts.get("nproc")?
    );
    let _ = writeln!(w, "| coreio revision | {} |", opts.get_or("revision", "?"));
    let _ = writeln!(w, "| toolchain | {} |", opts.get("rustc")?);
    let _ = writeln!(w, "| pinning | {} |", opts.get("pinning")?);
    let _ = writeln!(w, "| coreio backend | {} |", coreio_backend());
    let _ = writeln!(
        w,
        "| load average (1, 5, 15 min) before / after | {} / {} |",
        opts.get_or("load-before", "?"),
        opts.get_or("load-after", "?")
    );
    let _ = writeln!(
        w,
        "| script wall time (build, benchmarks, memory, report) | {} s |",
        opts.get_or("elapsed", "?")
    );
    let _ = writeln!(w, "\nCommands, from the repository root:\n");
    let _ = writeln!(w, "```sh\n{}\n```\n", opts.get("command")?);
    let _ = writeln!(
        w,
        "The machine may have been shared with other jobs during the run (see the load \
         average); treat differences of a few percent as noise.\n"
    );

    let _ = writeln!(w, "## Targets\n");
    let _ = writeln!(w, "| target | measured | met |\n| --- | --- | --- |");
    let targets = [
        (
            "spawn + join 1000 tasks ≤ 0.7× smol",
            median("spawn_join_1000", "coreio") / median("spawn_join_1000", "smol"),
            0.7,
        ),
        (
            "context switch (yield ping-pong) ≤ smol",
            median("context_switch", "coreio") / median("context_switch", "smol"),
            1.0,
        ),
        (
            "memory per parked task (heap, all tasks spawned at once) ≤ smol",
            find_memory("coreio", true)?.heap_per_task()
                / find_memory("smol", true)?.heap_per_task(),
            1.0,
        ),
    ];
    for (name, measured, limit) in targets {
        let met = if measured <= limit { "yes" } else { "**no**" };
        let _ = writeln!(w, "| {name} | {measured:.2}× smol | {met} |");
    }
    let batched = find_memory("coreio", false)?;
    let _ = writeln!(
        w,
        "\nFor information: the wake ping-pong (the same code path in all three runtimes) gives \
         coreio {} smol; memory per parked task with the tasks spawned {} at a time gives \
         coreio {} smol.\n",
        ratio(
            median("context_switch_wake", "coreio"),
            median("context_switch_wake", "smol")
        ),
        batched.batch,
        ratio(
            batched.heap_per_task(),
            find_memory("smol", false)?.heap_per_task()
        )
    );

    let _ = writeln!(w, "## Results\n");
    for group in &GROUPS {
        let _ = writeln!(w, "### {} (`{}`)\n", group.title, group.id);
        let _ = writeln!(w, "One iteration: {}.\n", group.iteration);
        let per_column = group.per > 1;
        let _ = write!(w, "| runtime | median | 95% CI of the median |");
        if per_column {
            let _ = write!(w, " per {} |", group.unit);
        }
        let _ = writeln!(w, " coreio / runtime |");
        let _ = writeln!(
            w,
            "| --- | ---: | ---: |{} ---: |",
            if per_column { " ---: |" } else { "" }
        );
        let coreio = median(group.id, "coreio");
        for runtime in RUNTIMES {
            let m = medians[&(group.id, runtime)];
            let _ = write!(
                w,
                "| {runtime} | {} | {} – {} |",
                time(m.point),
                time(m.lower),
                time(m.upper)
            );
            if per_column {
                let _ = write!(w, " {} |", time(m.point / f64::from(group.per)));
            }
            let _ = writeln!(w, " {} |", ratio(coreio, m.point));
        }
        let _ = writeln!(w);
    }

    let _ = writeln!(w, "### Memory per parked task (`task_memory`)\n");
    let _ = writeln!(
        w,
        "{} tasks, each parked on `std::future::pending()` after its first poll, spawned \
         detached; deltas from a baseline taken inside the runtime just before spawning. Heap: \
         bytes allocated minus freed (a counting global allocator). RSS: growth of `VmRSS`; \
         peak: `VmHWM` at the end minus the `VmRSS` baseline. One fresh process per run. \
         *All at once* spawns every task before any runs (the headline figure); *{} at a time* \
         parks each batch before spawning the next, so a run queue never holds more than one \
         batch: the difference is mostly run-queue capacity a runtime keeps after a burst.\n",
        thousands(find_memory("coreio", true)?.tasks),
        batched.batch
    );
    let _ = writeln!(
        w,
        "| runtime | spawned | heap | heap per task | RSS per task | peak RSS per task | coreio / runtime (heap) |"
    );
    let _ = writeln!(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for burst in [true, false] {
        let coreio_heap = find_memory("coreio", burst)?.heap_per_task();
        for runtime in RUNTIMES {
            let m = find_memory(runtime, burst)?;
            let spawned = if burst {
                "all at once".to_owned()
            } else {
                format!("{} at a time", m.batch)
            };
            let _ = writeln!(
                w,
                "| {runtime} | {spawned} | {:.1} MB | {:.1} B | {:.1} B | {:.1} B | {} |",
                m.heap_bytes as f64 / 1e6,
                m.heap_per_task(),
                m.rss_per_task(),
                m.peak_rss_per_task(),
                ratio(coreio_heap, m.heap_per_task())
            );
        }
    }
    let _ = writeln!(w, "\nRaw lines:\n\n```text");
    for m in &memory {
        let _ = writeln!(w, "{}", m.line());
    }
    let _ = writeln!(w, "```\n");

    let _ = writeln!(
        w,
        "## Reference figures from the project seed (another machine)\n"
    );
    let _ = writeln!(
        w,
        "Measured on an **AMD Ryzen 9 5950X, not on the machine above**, with unknown versions \
         and method; for orientation only, not comparable to the tables above.\n"
    );
    let _ = writeln!(
        w,
        "| figure | tokio | smol |\n| --- | ---: | ---: |\n\
         | spawn 1000 tasks | 245 µs | 189 µs |\n\
         | context switch | 0.31 µs | 0.22 µs |\n\
         | memory, 1,000,000 tasks | 156 MB | 98 MB |\n"
    );
    let _ = writeln!(
        w,
        "coreio's targets (see above): spawn + join 1000 ≤ 0.7× smol; context switch ≤ smol; \
         memory per parked task ≤ smol.\n"
    );

    let _ = writeln!(w, "## Method\n");
    let _ = writeln!(
        w,
        "{}",
        [
            "- Everything runs on one thread per runtime: coreio `Builder::new().cores(1).block_on`; \
             tokio current-thread runtime with `enable_all` (epoll I/O driver and timers) and a \
             `LocalSet` (`spawn_local`); smol `async_executor::LocalExecutor` run by \
             `async_io::block_on`, which drives smol's reactor on the same thread. The scenario code \
             is shared, generic over the runtime (`benches/micro/src/lib.rs`).",
            "- criterion `iter_custom`: each runtime is built once on its own thread and kept for the \
             whole entry; each sample runs `iters` iterations inside it and reads the clock there, so \
             runtime start-up and the thread hand-over are not measured. Entries run one after the \
             other, never concurrently.",
            "- Context switch: one iteration is one switch, so the median is the time per switch \
             directly (two tasks share the `iters` turns; `Throughput::Elements(1)`). `context_switch` \
             uses each runtime's own `yield_now`: coreio and smol requeue the task at once, tokio \
             defers it until its driver has been polled, so tokio's figure includes a driver poll \
             per round. `context_switch_wake` hands a baton between the two tasks through a shared \
             cell and their `Waker`s: the same code in each runtime, one wake + schedule + poll per \
             switch.",
            "- Timers: the timers live in one pre-allocated array and are polled in place (no `Box` \
             per timer), all with the waker of the measuring task. Cancel: deadlines 1 s ahead, 1 µs \
             apart. Fire: one deadline, 25 ms ahead, or 3× the registration time where that is \
             longer (smol), so every timer is registered before it is due (checked); the thread then \
             sleeps, unmeasured, until 2 ms past the deadline and hands control to the runtime, which \
             fires the timers and wakes the task. The measured time is registration + firing + \
             completion; the idle wait and so each runtime's timer resolution (coreio and tokio: 1 ms \
             ticks, rounded up; smol: exact) are left out.",
            "- tokio's root future runs inside `tokio::task::unconstrained`: otherwise tokio's \
             cooperative budget would make the measuring task yield after every 128 completed join \
             handles or timers, which coreio and smol do not do. This favours tokio slightly.",
            "- Memory: one fresh child process per runtime (`task_memory --runtime NAME`); the child \
             exits without tearing its tasks down. Heap figures count requested bytes, not the \
             allocator's own overhead; RSS figures include it (e.g. tokio's 128-byte-aligned task \
             cells).",
        ]
        .join("\n")
    );
    Ok(md)
}

fn main() -> ExitCode {
    let result = Options::parse().and_then(|opts| {
        let md = report(&opts)?;
        let out = opts.get("out")?;
        std::fs::write(out, md).map_err(|e| format!("cannot write {out}: {e}"))?;
        println!("wrote {out}");
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("micro_report: {message}");
            ExitCode::FAILURE
        }
    }
}
