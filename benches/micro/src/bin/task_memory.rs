//! Memory per parked task: spawns 1,000,000 tasks that each wait forever, in coreio, tokio and
//! smol, and reports what they cost.
//!
//! `task_memory` (no arguments) runs each runtime in a fresh child process of itself, so the
//! runtimes never share a heap, and prints one machine-readable line per run and a table. It
//! runs each runtime twice: *burst*, all tasks spawned at once (the headline figure), and
//! *batched*, [`BATCH`] at a time, each batch parked before the next is spawned, so the run
//! queue never holds more than one batch. The difference between the two is mostly run-queue
//! capacity that a runtime keeps after a burst.
//! `task_memory --runtime coreio|tokio|smol [--tasks N] [--batch N]` is one such child.
//!
//! In the child, inside the runtime (after a first yield, so lazy start-up is done): read the
//! baseline; spawn the tasks detached (each one's handle dropped, or detached for smol, so no
//! handle is counted); yield until every task has been polled once and parked on
//! `std::future::pending()`; read again. The figures are deltas from that baseline:
//!
//! * `heap_bytes`: bytes allocated minus bytes freed, counted by a global allocator that wraps
//!   the system one. This includes what the runtime keeps for the tasks (task headers, futures,
//!   wakers, registries) and queue capacity grown while they were scheduled.
//! * `rss_bytes`: growth of `VmRSS` (resident memory) from `/proc/self/status`.
//! * `peak_rss_bytes`: `VmHWM` (the peak resident memory) at the end minus the `VmRSS` baseline.
//!
//! The child exits right after printing, without tearing the tasks down.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};

use coreio_bench_micro::{Coreio, Runtime, Smol, TaskMemory, Tokio};

/// Tasks spawned per runtime unless `--tasks` says otherwise.
const DEFAULT_TASKS: usize = 1_000_000;
/// Tasks per batch in the parent's batched runs.
const BATCH: usize = 1000;
/// The runtimes, in the order the parent runs them.
const RUNTIMES: [&str; 3] = [Coreio::NAME, Tokio::NAME, Smol::NAME];

/// The system allocator, counting the bytes it hands out and takes back.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static FREED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System`, which upholds the `GlobalAlloc` contract, with the
// caller's arguments unchanged; the counters are only bookkeeping on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size), passed on unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` came from this allocator (so from `System`) with
        // this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        FREED.fetch_add(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `ptr` came from this allocator (so from `System`) with
        // `layout`, and that `new_size` is valid for it.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            FREED.fetch_add(layout.size(), Ordering::Relaxed);
            ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes currently allocated on the heap.
fn live_heap() -> usize {
    ALLOCATED
        .load(Ordering::Relaxed)
        .wrapping_sub(FREED.load(Ordering::Relaxed))
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn proc_status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("cannot read /proc");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB")?.trim().parse::<usize>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Tasks that have been polled (and so parked) at least once.
static POLLED: AtomicUsize = AtomicUsize::new(0);

/// The task body: note the first poll, then wait forever.
async fn parked() {
    POLLED.fetch_add(1, Ordering::Relaxed);
    std::future::pending::<()>().await;
}

/// The child: measures `tasks` parked tasks in runtime `R`, spawned `batch` at a time, prints
/// the line and exits.
fn child<R: Runtime>(tasks: usize, batch: usize) {
    R::block_on(async move {
        R::yield_now().await;
        let heap_before = live_heap();
        let rss_before = proc_status_bytes("VmRSS");
        let mut spawned = 0;
        while spawned < tasks {
            let end = tasks.min(spawned + batch);
            for _ in spawned..end {
                R::spawn_detached(parked());
            }
            spawned = end;
            while POLLED.load(Ordering::Relaxed) < spawned {
                R::yield_now().await;
            }
        }
        let memory = TaskMemory {
            runtime: R::NAME.to_owned(),
            tasks,
            batch: batch.min(tasks),
            heap_bytes: live_heap().saturating_sub(heap_before),
            rss_bytes: proc_status_bytes("VmRSS").saturating_sub(rss_before),
            peak_rss_bytes: proc_status_bytes("VmHWM").saturating_sub(rss_before),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", memory.line()).expect("cannot write to stdout");
        out.flush().expect("cannot write to stdout");
        // Tearing down a million tasks is not what is measured.
        std::process::exit(0);
    });
}

/// The parent: runs one child per runtime and prints their lines and a table.
fn parent(tasks: usize) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut results = Vec::new();
    let runs = [tasks, BATCH.min(tasks)]
        .into_iter()
        .flat_map(|batch| RUNTIMES.map(|runtime| (runtime, batch)));
    for (runtime, batch) in runs {
        let output = Command::new(&exe)
            .args(["--runtime", runtime])
            .args(["--tasks", &tasks.to_string()])
            .args(["--batch", &batch.to_string()])
            .output()
            .map_err(|e| format!("cannot start the {runtime} child: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let memory = stdout.lines().find_map(TaskMemory::parse).ok_or_else(|| {
            format!(
                "the {runtime} child ({}) printed no result:\n{stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        println!("{}", memory.line());
        results.push(memory);
    }
    println!();
    println!(
        "{:<8} {:>10} {:>10} {:>12} {:>12} {:>12} {:>14} {:>14}",
        "runtime",
        "tasks",
        "batch",
        "heap MB",
        "heap B/task",
        "RSS B/task",
        "peak RSS MB",
        "peak B/task"
    );
    for m in &results {
        println!(
            "{:<8} {:>10} {:>10} {:>12.1} {:>12.1} {:>12.1} {:>14.1} {:>14.1}",
            m.runtime,
            m.tasks,
            m.batch,
            m.heap_bytes as f64 / 1e6,
            m.heap_per_task(),
            m.rss_per_task(),
            m.peak_rss_bytes as f64 / 1e6,
            m.peak_rss_per_task(),
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut runtime = None;
    let mut tasks = DEFAULT_TASKS;
    let mut batch = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--runtime", Some(name)) => runtime = Some(name),
            (option @ ("--tasks" | "--batch"), Some(n)) => match n.parse() {
                Ok(n) if n > 0 && option == "--tasks" => tasks = n,
                Ok(n) if n > 0 => batch = Some(n),
                _ => {
                    eprintln!("{option} wants a positive number, got {n:?}");
                    return ExitCode::FAILURE;
                }
            },
            _ => {
                eprintln!(
                    "usage: task_memory [--runtime coreio|tokio|smol] [--tasks N] [--batch N]"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    match runtime.as_deref() {
        None => match parent(tasks) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("task_memory: {message}");
                return ExitCode::FAILURE;
            }
        },
        Some("coreio") => child::<Coreio>(tasks, batch.unwrap_or(tasks)),
        Some("tokio") => child::<Tokio>(tasks, batch.unwrap_or(tasks)),
        Some("smol") => child::<Smol>(tasks, batch.unwrap_or(tasks)),
        Some(other) => {
            eprintln!("unknown runtime {other:?}: expected one of {RUNTIMES:?}");
            return ExitCode::FAILURE;
        }
    }
    // `child` exits the process itself once it has printed its figures.
    eprintln!("task_memory: the runtime returned without measuring");
    ExitCode::FAILURE
}
