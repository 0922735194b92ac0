//! Shared pieces of the micro-benchmarks: one [`Runtime`] trait with an implementation per
//! runtime under comparison, a [`Host`] thread that keeps a runtime alive across criterion
//! samples, [`PinnedSlots`] for polling many `!Unpin` timers in place, and [`TaskMemory`], the
//! result line `task_memory` prints and `micro_report` reads.
//!
//! Every scenario (in `benches/runtimes.rs` and `src/bin/task_memory.rs`) is written once,
//! generic over [`Runtime`], so the three runtimes run the very same code and differ only in
//! the five calls the trait forwards:
//!
//! | call | [`Coreio`] | [`Tokio`] | [`Smol`] |
//! | --- | --- | --- | --- |
//! | `block_on` | `Builder::new().cores(1).block_on` | current-thread runtime (`enable_all`) + `LocalSet::block_on` | `async_io::block_on(LocalExecutor::run)` |
//! | `spawn` | `coreio::spawn` | `tokio::task::spawn_local` | `LocalExecutor::spawn` |
//! | `yield_now` | `coreio::yield_now` | `tokio::task::yield_now` | `futures_lite::future::yield_now` |
//! | `sleep_until` | `coreio::time::sleep_until` | `tokio::time::sleep_until` | `async_io::Timer::at` |
//!
//! This module owns that mapping. It must never add work to one runtime's path that the others
//! do not have (the spawn wrappers are the same `async move` block for all three).

use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;

/// The few runtime calls the scenarios use.
pub trait Runtime: 'static {
    /// Name used for criterion entries and report rows.
    const NAME: &'static str;

    /// The timer future of [`Runtime::sleep_until`].
    type Sleep: Future;

    /// Runs `future` to completion on the calling thread, with spawning and timers available.
    fn block_on<F: Future<Output = ()> + 'static>(future: F);

    /// Spawns `future` on the current thread's executor at once; the returned future yields
    /// its output (and panics if the task panicked).
    fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) -> impl Future<Output = T>;

    /// Spawns `future` and lets it run on its own (its handle is dropped or detached).
    fn spawn_detached(future: impl Future<Output = ()> + 'static);

    /// The runtime's own `yield_now`.
    fn yield_now() -> impl Future<Output = ()>;

    /// A timer due at `deadline`; it registers in the runtime's timer structure on first poll.
    fn sleep_until(deadline: Instant) -> Self::Sleep;
}

/// coreio: one core on the calling thread (io_uring or epoll, per `COREIO_BACKEND`).
pub struct Coreio;

impl Runtime for Coreio {
    const NAME: &'static str = "coreio";
    type Sleep = coreio::time::Sleep;

    fn block_on<F: Future<Output = ()> + 'static>(future: F) {
        coreio::Builder::new()
            .cores(1)
            .block_on(future)
            .expect("coreio runtime failed to start");
    }

    fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) -> impl Future<Output = T> {
        let handle = coreio::spawn(future);
        async move { handle.await.expect("coreio task failed") }
    }

    fn spawn_detached(future: impl Future<Output = ()> + 'static) {
        drop(coreio::spawn(future));
    }

    fn yield_now() -> impl Future<Output = ()> {
        coreio::yield_now()
    }

    fn sleep_until(deadline: Instant) -> Self::Sleep {
        coreio::time::sleep_until(deadline)
    }
}

/// tokio: a current-thread runtime with its I/O and time drivers, tasks in a `LocalSet`.
pub struct Tokio;

impl Runtime for Tokio {
    const NAME: &'static str = "tokio";
    type Sleep = tokio::time::Sleep;

    fn block_on<F: Future<Output = ()> + 'static>(future: F) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime failed to start");
        // Unconstrained: the scenarios poll up to 100,000 timers or 1000 join handles from one
        // task, and tokio's cooperative budget would make that task yield every 128 completions
        // (coreio and smol have no such budget on timers and handles). This favours tokio.
        tokio::task::LocalSet::new().block_on(&rt, tokio::task::unconstrained(future));
    }

    fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) -> impl Future<Output = T> {
        let handle = tokio::task::spawn_local(future);
        async move { handle.await.expect("tokio task failed") }
    }

    fn spawn_detached(future: impl Future<Output = ()> + 'static) {
        drop(tokio::task::spawn_local(future));
    }

    fn yield_now() -> impl Future<Output = ()> {
        tokio::task::yield_now()
    }

    fn sleep_until(deadline: Instant) -> Self::Sleep {
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline))
    }
}

thread_local! {
    /// The smol executor of this thread: tasks spawned by [`Smol::spawn`] land here.
    static SMOL: LocalExecutor<'static> = const { LocalExecutor::new() };
}

/// smol: `async_executor::LocalExecutor` driven by `async_io::block_on`, which runs the
/// reactor (epoll and timers) on this thread whenever the executor is idle.
pub struct Smol;

impl Runtime for Smol {
    const NAME: &'static str = "smol";
    type Sleep = async_io::Timer;

    fn block_on<F: Future<Output = ()> + 'static>(future: F) {
        SMOL.with(|ex| async_io::block_on(ex.run(future)));
    }

    #[allow(
        clippy::redundant_async_block,
        reason = "the same `async move` wrapper as the other runtimes, so the spawn paths match"
    )]
    fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) -> impl Future<Output = T> {
        let task = SMOL.with(|ex| ex.spawn(future));
        async move { task.await }
    }

    fn spawn_detached(future: impl Future<Output = ()> + 'static) {
        SMOL.with(|ex| ex.spawn(future).detach());
    }

    fn yield_now() -> impl Future<Output = ()> {
        futures_lite::future::yield_now()
    }

    fn sleep_until(deadline: Instant) -> Self::Sleep {
        async_io::Timer::at(deadline)
    }
}

/// A thread that runs one runtime for as long as it lives and measures on request.
///
/// criterion calls its `iter_custom` routine many times (warm-up, then each sample). Building a
/// runtime per call would measure cold queues and, for coreio, a new ring each time; so the
/// runtime is built once on this thread, and each call sends an iteration count over a channel
/// and waits for the measured [`Duration`]. The hand-over is outside the measured span: the
/// scenario reads the clock itself, inside the runtime.
pub struct Host {
    jobs: Option<mpsc::Sender<u64>>,
    results: mpsc::Receiver<Duration>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Host {
    /// Starts runtime `R` on a new thread; each [`Host::measure`] runs `scenario(iters)` in it.
    pub fn start<R, S, Fut>(scenario: S) -> Host
    where
        R: Runtime,
        S: Fn(u64) -> Fut + Send + 'static,
        Fut: Future<Output = Duration>,
    {
        let (jobs, job_rx) = mpsc::channel::<u64>();
        let (result_tx, results) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(format!("bench-{}", R::NAME))
            .spawn(move || {
                R::block_on(async move {
                    // Blocking here is fine: between samples nothing else runs on this thread.
                    while let Ok(iters) = job_rx.recv() {
                        let elapsed = scenario(iters).await;
                        if result_tx.send(elapsed).is_err() {
                            break;
                        }
                    }
                });
            })
            .expect("failed to start a benchmark thread");
        Host {
            jobs: Some(jobs),
            results,
            thread: Some(thread),
        }
    }

    /// Runs the scenario for `iters` iterations and returns the time it measured.
    pub fn measure(&self, iters: u64) -> Duration {
        let jobs = self.jobs.as_ref().expect("host is running");
        jobs.send(iters).expect("benchmark thread stopped");
        self.results.recv().expect("benchmark thread panicked")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Closing the channel ends the loop; the runtime then shuts down on its own thread.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let joined = thread.join();
            if joined.is_err() && !thread::panicking() {
                panic!("benchmark thread panicked");
            }
        }
    }
}

/// A fixed number of slots whose values never move once stored: each can be polled as a
/// pinned future in place, without a `Box` per value (tokio's `Sleep` is `!Unpin`).
///
/// Boxing every timer would add one allocation and one free per timer to every runtime and
/// blur the comparison, so the timer benchmarks keep their timers here instead.
pub struct PinnedSlots<T> {
    slots: Box<[MaybeUninit<T>]>,
    len: usize,
}

impl<T> PinnedSlots<T> {
    /// Room for `capacity` values; the storage is allocated once and never grows.
    pub fn with_capacity(capacity: usize) -> Self {
        PinnedSlots {
            slots: Box::new_uninit_slice(capacity),
            len: 0,
        }
    }

    /// Stores `value` in the next free slot.
    ///
    /// # Panics
    ///
    /// When every slot is taken.
    pub fn push(&mut self, value: T) {
        assert!(self.len < self.slots.len(), "PinnedSlots is full");
        self.slots[self.len].write(value);
        self.len += 1;
    }

    /// Number of values stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value in slot `index`, pinned.
    ///
    /// # Panics
    ///
    /// When `index` is not below [`PinnedSlots::len`].
    pub fn get_pin(&mut self, index: usize) -> Pin<&mut T> {
        assert!(index < self.len, "slot {index} is empty");
        // SAFETY: slots `..len` were initialised by `push`. The boxed slice is never
        // reallocated, `PinnedSlots` gives no way to move a value out or overwrite it, and
        // `drop` drops each value in place; so a value pinned here stays at this address until
        // it is dropped, which is the `Pin` contract.
        unsafe { Pin::new_unchecked(self.slots[index].assume_init_mut()) }
    }

    /// Drops every value, in slot order; the storage is kept for reuse.
    pub fn clear(&mut self) {
        let len = std::mem::replace(&mut self.len, 0);
        for slot in &mut self.slots[..len] {
            // SAFETY: slots `..len` are initialised; `len` is already 0, so none of them is
            // dropped again (not even if a destructor panics: they then leak, which is safe).
            unsafe { slot.assume_init_drop() };
        }
    }
}

impl<T> Drop for PinnedSlots<T> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One `task_memory` result: what `tasks` parked tasks cost in `runtime`, as deltas from a
/// baseline taken inside the runtime before spawning them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskMemory {
    /// The runtime's [`Runtime::NAME`].
    pub runtime: String,
    /// Tasks spawned.
    pub tasks: usize,
    /// Tasks spawned per batch: each batch is polled (parked) before the next is spawned.
    /// Equal to `tasks` when all were spawned at once.
    pub batch: usize,
    /// Heap bytes allocated minus freed.
    pub heap_bytes: usize,
    /// Growth of `VmRSS`.
    pub rss_bytes: usize,
    /// `VmHWM` at the end minus `VmRSS` at the baseline.
    pub peak_rss_bytes: usize,
}

impl TaskMemory {
    /// The machine-readable line: `task_memory runtime=coreio tasks=1000000 batch=1000000
    /// heap_bytes=… rss_bytes=… peak_rss_bytes=…` (fields in this order, single spaces).
    pub fn line(&self) -> String {
        format!(
            "task_memory runtime={} tasks={} batch={} heap_bytes={} rss_bytes={} peak_rss_bytes={}",
            self.runtime,
            self.tasks,
            self.batch,
            self.heap_bytes,
            self.rss_bytes,
            self.peak_rss_bytes
        )
    }

    /// Reads a line written by [`TaskMemory::line`]; `None` for any other line.
    pub fn parse(line: &str) -> Option<TaskMemory> {
        let mut fields = line.trim_end().strip_prefix("task_memory ")?.split(' ');
        let mut next = |key: &str| fields.next()?.strip_prefix(key)?.strip_prefix('=');
        let runtime = next("runtime")?.to_owned();
        let mut number = |key: &str| next(key)?.parse().ok();
        Some(TaskMemory {
            runtime,
            tasks: number("tasks")?,
            batch: number("batch")?,
            heap_bytes: number("heap_bytes")?,
            rss_bytes: number("rss_bytes")?,
            peak_rss_bytes: number("peak_rss_bytes")?,
        })
    }

    /// Whether all tasks were spawned at once.
    pub fn is_burst(&self) -> bool {
        self.batch >= self.tasks
    }

    /// Heap bytes per task.
    pub fn heap_per_task(&self) -> f64 {
        self.heap_bytes as f64 / self.tasks as f64
    }

    /// Resident bytes per task.
    pub fn rss_per_task(&self) -> f64 {
        self.rss_bytes as f64 / self.tasks as f64
    }

    /// Peak resident bytes per task.
    pub fn peak_rss_per_task(&self) -> f64 {
        self.peak_rss_bytes as f64 / self.tasks as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_memory_line_round_trips() {
        let m = TaskMemory {
            runtime: "smol".into(),
            tasks: 10,
            batch: 5,
            heap_bytes: 1000,
            rss_bytes: 4096,
            peak_rss_bytes: 8192,
        };
        assert_eq!(TaskMemory::parse(&m.line()), Some(m));
        assert_eq!(TaskMemory::parse("something else"), None);
    }

    #[test]
    fn pinned_slots_drop_every_value_once() {
        let counter = std::rc::Rc::new(());
        let mut slots = PinnedSlots::with_capacity(3);
        for _ in 0..3 {
            slots.push(std::rc::Rc::clone(&counter));
        }
        assert_eq!(std::rc::Rc::strong_count(&counter), 4);
        slots.clear();
        assert_eq!(std::rc::Rc::strong_count(&counter), 1);
        slots.push(std::rc::Rc::clone(&counter));
        drop(slots);
        assert_eq!(std::rc::Rc::strong_count(&counter), 1);
    }
}
