//! The blocking pool: `spawn_blocking`'s output, its bounds (threads, queue), panics, thread
//! names, idle retirement, shutdown with jobs still running or queued, and the wake from a pool
//! thread reaching a parked core, on both backends.
//!
//! Pool threads are counted by name in `/proc/self/task/*/comm`: each test that counts gives
//! its runtime a prefix of its own, so tests in one process never count each other's threads.

#[macro_use]
mod util;

use std::collections::HashSet;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use coreio::{Backend, BlockingError, Builder};

/// The thread name prefix of a test named `base` on `backend`: one per backend, so that the
/// two runs of a test never count each other's threads when they share a process (`cargo
/// test`; nextest runs each test in a process of its own).
fn prefix(base: &str, backend: Backend) -> String {
    let tag = if backend == Backend::Epoll { "e" } else { "u" };
    format!("{base}{tag}")
}

/// A builder for `backend` whose threads are named after `base`.
fn builder(backend: Backend, base: &str) -> Builder {
    Builder::new()
        .backend(backend)
        .thread_name_prefix(prefix(base, backend))
}

/// Runs `future` on a one-core runtime built by `builder`, checking its backend.
fn block_on<F>(backend: Backend, builder: Builder, future: F) -> F::Output
where
    F: Future + 'static,
    F::Output: 'static,
{
    builder
        .block_on(async move {
            util::assert_backend(backend);
            future.await
        })
        .expect("the runtime failed to start")
}

/// Threads of this process whose kernel name (cut to 15 bytes) is that of a pool thread of
/// the runtime `builder(backend, base)` made.
fn pool_threads(base: &str, backend: Backend) -> usize {
    let name = format!("{}-blocking", prefix(base, backend));
    let name = &name[..name.len().min(15)];
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end().starts_with(name))
        .count()
}

/// Waits (bounded: 20 s) on a plain thread until `cond` holds; returns whether it did.
fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// The same from inside a core, sleeping on the core's timers between looks.
async fn wait_until_async(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..2000 {
        if cond() {
            return true;
        }
        coreio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// A gate that jobs wait at until the test opens it (or drops it).
struct Gate {
    open: Mutex<mpsc::Sender<()>>,
    wait: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl Gate {
    fn new() -> Gate {
        let (open, wait) = mpsc::channel();
        Gate {
            open: Mutex::new(open),
            wait: Arc::new(Mutex::new(wait)),
        }
    }

    /// A closure that blocks until the gate opens for it.
    fn waiter(&self) -> impl FnOnce() + Send + 'static {
        let wait = Arc::clone(&self.wait);
        move || {
            let _ = wait.lock().unwrap().recv();
        }
    }

    /// Lets `n` waiters through.
    fn open(&self, n: usize) {
        for _ in 0..n {
            let _ = self.open.lock().unwrap().send(());
        }
    }
}

both_backends! {
    fn returns_the_closure_output_from_another_thread(backend: Backend) {
        block_on(backend, builder(backend, "output"), async {
            let core = std::thread::current().id();
            let (value, thread) = coreio::spawn_blocking(|| (6 * 7, std::thread::current().id()))
                .await
                .expect("the job ran");
            assert_eq!(value, 42);
            assert_ne!(thread, core, "the job ran on the core's own thread");
        });
    }

    fn many_jobs_beyond_the_thread_bound_all_complete(backend: Backend) {
        const JOBS: usize = 200;
        const THREADS: usize = 3;
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let b = builder(backend, "many")
            .blocking_threads(THREADS)
            .blocking_queue(JOBS);
        let (sum, threads) = block_on(backend, b, {
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            async move {
                let handles: Vec<_> = (0..JOBS)
                    .map(|i| {
                        let (running, most) = (Arc::clone(&running), Arc::clone(&most));
                        coreio::spawn_blocking(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::yield_now();
                            running.fetch_sub(1, Ordering::SeqCst);
                            (i, std::thread::current().name().map(str::to_owned))
                        })
                    })
                    .collect();
                let mut sum = 0;
                let mut threads = HashSet::new();
                for handle in handles {
                    let (i, name) = handle.await.expect("every job runs");
                    sum += i;
                    threads.insert(name.expect("pool threads are named"));
                }
                (sum, threads)
            }
        });
        assert_eq!(sum, JOBS * (JOBS - 1) / 2);
        assert!(
            most.load(Ordering::SeqCst) <= THREADS,
            "more jobs ran at once than threads"
        );
        assert!(threads.len() <= THREADS, "{threads:?}");
        for name in &threads {
            let number = name.strip_prefix(&format!("{}-blocking-", prefix("many", backend)));
            let n: usize = number.expect(name).parse().expect(name);
            assert!(n < THREADS, "{name}: numbers stay below the thread bound");
        }
    }

    fn a_full_queue_refuses_the_job_with_a_clear_error(backend: Backend) {
        let gate = Arc::new(Gate::new());
        let b = builder(backend, "full")
            .blocking_threads(1)
            .blocking_queue(1);
        block_on(backend, b, {
            let gate = Arc::clone(&gate);
            async move {
                let (started_tx, started) = mpsc::channel();
                let wait = gate.waiter();
                let busy = coreio::spawn_blocking(move || {
                    started_tx.send(()).unwrap();
                    wait();
                    "first"
                });
                // The only thread holds the first job: the second waits in the queue.
                assert!(wait_until_async(|| started.try_recv().is_ok()).await);
                let queued = coreio::spawn_blocking(|| "second");
                let refused = coreio::spawn_blocking(|| "third");
                assert!(refused.is_finished(), "a refused job resolves at once");
                let err = refused.await.unwrap_err();
                assert!(err.is_queue_full(), "{err:?}");
                assert!(
                    matches!(
                        err,
                        BlockingError::QueueFull {
                            threads: 1,
                            capacity: 1
                        }
                    ),
                    "{err:?}"
                );
                let message = err.to_string();
                assert!(message.contains("blocking pool is full"), "{message}");
                let io_err = std::io::Error::from(err);
                assert_eq!(io_err.kind(), std::io::ErrorKind::ResourceBusy);
                assert!(
                    io_err.to_string().contains("Builder::blocking_queue"),
                    "{io_err}"
                );
                gate.open(1);
                assert_eq!(busy.await.unwrap(), "first");
                assert_eq!(queued.await.unwrap(), "second");
                // Room again: the pool takes jobs once more.
                assert_eq!(coreio::spawn_blocking(|| "fourth").await.unwrap(), "fourth");
            }
        });
    }

    fn a_zero_queue_runs_at_once_or_refuses(backend: Backend) {
        let gate = Arc::new(Gate::new());
        let b = builder(backend, "zeroq")
            .blocking_threads(1)
            .blocking_queue(0);
        block_on(backend, b, {
            let gate = Arc::clone(&gate);
            async move {
                let busy = coreio::spawn_blocking(gate.waiter());
                let refused = coreio::spawn_blocking(|| ());
                assert!(refused.await.unwrap_err().is_queue_full());
                gate.open(1);
                busy.await.unwrap();
            }
        });
    }

    fn a_panic_comes_back_as_an_error(backend: Backend) {
        block_on(backend, builder(backend, "panic"), async {
            let err = coreio::spawn_blocking(|| -> u32 { panic!("blocking boom") })
                .await
                .unwrap_err();
            assert!(err.is_panic());
            assert_eq!(err.panic_message(), Some("blocking boom"));
            assert_eq!(err.to_string(), "blocking job panicked: blocking boom");
            let payload = err.into_panic().expect("a payload");
            assert_eq!(util::panic_message(&*payload), "blocking boom");
            // The pool thread survived: the next job runs (on the one thread there is).
            assert_eq!(coreio::spawn_blocking(|| 5).await.unwrap(), 5);
        });
    }

    fn pool_threads_are_named_after_the_prefix(backend: Backend) {
        let default_name = Builder::new()
            .backend(backend)
            .block_on(async {
                coreio::spawn_blocking(|| std::thread::current().name().map(str::to_owned)).await
            })
            .unwrap()
            .unwrap();
        assert_eq!(default_name.as_deref(), Some("coreio-blocking-0"));
        let named = block_on(backend, builder(backend, "named"), async {
            coreio::spawn_blocking(|| std::thread::current().name().map(str::to_owned)).await
        })
        .unwrap();
        assert_eq!(
            named,
            Some(format!("{}-blocking-0", prefix("named", backend)))
        );
    }

    fn no_thread_starts_before_the_first_job_and_idle_threads_retire(backend: Backend) {
        let b = builder(backend, "retire").blocking_keep_alive(Duration::from_millis(20));
        block_on(backend, b, async move {
            assert_eq!(pool_threads("retire", backend), 0, "the pool is lazy");
            let seen = coreio::spawn_blocking(move || pool_threads("retire", backend))
                .await
                .unwrap();
            assert_eq!(seen, 1, "one job, one thread");
            assert!(
                wait_until_async(|| pool_threads("retire", backend) == 0).await,
                "the idle thread did not retire"
            );
            // The pool starts a thread again for the next job, under the number now free.
            let (seen, name) = coreio::spawn_blocking(move || {
                let name = std::thread::current().name().map(str::to_owned);
                (pool_threads("retire", backend), name)
            })
            .await
            .unwrap();
            assert_eq!(seen, 1);
            assert_eq!(
                name,
                Some(format!("{}-blocking-0", prefix("retire", backend)))
            );
        });
    }

    fn shutdown_leaves_a_running_job_detached_and_discards_queued_ones(backend: Backend) {
        let gate = Arc::new(Gate::new());
        let ran_queued = Arc::new(AtomicBool::new(false));
        let finished = Arc::new(AtomicBool::new(false));
        let b = builder(backend, "detach")
            .blocking_threads(1)
            .blocking_shutdown_timeout(Duration::from_millis(50));
        let queued = block_on(backend, b, {
            let (gate, ran_queued, finished) = (
                Arc::clone(&gate),
                Arc::clone(&ran_queued),
                Arc::clone(&finished),
            );
            async move {
                let (started_tx, started) = mpsc::channel();
                let wait = gate.waiter();
                // Detached at once: the runtime must not wait for it past its deadline.
                drop(coreio::spawn_blocking(move || {
                    started_tx.send(()).unwrap();
                    wait();
                    finished.store(true, Ordering::SeqCst);
                }));
                assert!(wait_until_async(|| started.try_recv().is_ok()).await);
                // Queued behind it; the handle leaves the runtime with the root's output.
                // (In an `Option`: a root that returns a future looks like a forgotten await.)
                Some(coreio::spawn_blocking(move || {
                    ran_queued.store(true, Ordering::SeqCst)
                }))
            }
        });
        // `block_on` returned though the job still blocks: its thread was detached.
        assert!(!finished.load(Ordering::SeqCst));
        assert_eq!(pool_threads("detach", backend), 1);
        // The queued job was discarded without running.
        let mut queued = pin!(queued.unwrap());
        match queued
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(Err(BlockingError::Cancelled)) => {}
            other => panic!("expected a discarded job, got {other:?}"),
        }
        assert!(!ran_queued.load(Ordering::SeqCst));
        // Released, the detached job finishes and its thread exits.
        gate.open(1);
        assert!(wait_until(|| finished.load(Ordering::SeqCst)));
        assert!(wait_until(|| pool_threads("detach", backend) == 0));
        assert!(!ran_queued.load(Ordering::SeqCst));
    }

    fn extreme_durations_are_accepted(backend: Backend) {
        // A keep-alive and a shutdown timeout too long to add to a clock reading.
        let b = builder(backend, "forever")
            .blocking_keep_alive(Duration::MAX)
            .blocking_shutdown_timeout(Duration::MAX);
        assert_eq!(
            block_on(backend, b, async { coreio::spawn_blocking(|| 1).await }).unwrap(),
            1
        );
        // No keep-alive: a thread leaves as soon as it finds nothing to do.
        let b = builder(backend, "nokeep").blocking_keep_alive(Duration::ZERO);
        block_on(backend, b, async move {
            for i in 0..10 {
                assert_eq!(coreio::spawn_blocking(move || i).await.unwrap(), i);
            }
            assert!(wait_until_async(|| pool_threads("nokeep", backend) == 0).await);
        });
    }

    fn shutdown_runs_detached_jobs_within_the_deadline(backend: Backend) {
        // Default deadline (5 s); the job, detached and perhaps not yet started when the root
        // returns, still runs, and ends well before it.
        let b = builder(backend, "joined").blocking_keep_alive(Duration::from_secs(60));
        let finished = Arc::new(AtomicBool::new(false));
        block_on(backend, b, {
            let finished = Arc::clone(&finished);
            async move {
                drop(coreio::spawn_blocking(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    finished.store(true, Ordering::SeqCst);
                }));
            }
        });
        // The idle thread's keep-alive is a minute, yet the shutdown woke and joined it.
        assert!(
            finished.load(Ordering::SeqCst),
            "the running job was not waited for"
        );
        // Joined: gone at once, but `/proc` may list a thread a moment after its exit.
        assert!(
            wait_until(|| pool_threads("joined", backend) == 0),
            "a pool thread outlived its runtime"
        );
    }

    fn a_dropped_handle_detaches_the_job(backend: Backend) {
        block_on(backend, builder(backend, "dropped"), async {
            let ran = Arc::new(AtomicBool::new(false));
            let handle = coreio::spawn_blocking({
                let ran = Arc::clone(&ran);
                move || ran.store(true, Ordering::SeqCst)
            });
            drop(handle);
            assert!(
                wait_until_async(|| ran.load(Ordering::SeqCst)).await,
                "the job did not run"
            );
        });
    }

    fn the_wake_from_a_pool_thread_reaches_a_parked_core(backend: Backend) {
        block_on(backend, builder(backend, "wake"), async {
            let core_tid = util::gettid();
            // The job returns only once the core sleeps in its driver (no timer, no other
            // task): only the pool thread's wake can bring it back.
            let saw_sleeping =
                coreio::spawn_blocking(move || util::wait_for_thread_to_sleep(core_tid))
                    .await
                    .unwrap();
            assert!(saw_sleeping, "the core never parked");
        });
    }

    fn pool_threads_are_not_pinned_to_a_core(backend: Backend) {
        let process_cpus = util::allowed_cpus();
        let rt = builder(backend, "unpinned")
            .cores(util::two_or_fewer_cores())
            .build()
            .unwrap();
        let outputs = rt.run(|_core| async move {
            let core_cpus = util::allowed_cpus();
            let job_cpus = coreio::spawn_blocking(util::allowed_cpus).await.unwrap();
            (core_cpus, job_cpus)
        });
        for output in outputs {
            let (core_cpus, job_cpus) = output.unwrap();
            assert_eq!(core_cpus.len(), 1, "a core is pinned to one CPU");
            assert_eq!(
                job_cpus, process_cpus,
                "a pool thread kept its core's CPU mask"
            );
        }
    }

    fn one_pool_serves_every_core(backend: Backend) {
        let rt = builder(backend, "shared")
            .cores(util::two_or_fewer_cores())
            .blocking_threads(1)
            .build()
            .unwrap();
        let outputs = rt.run(|_core| async move {
            util::assert_backend(backend);
            coreio::spawn_blocking(|| std::thread::current().id())
                .await
                .unwrap()
        });
        let threads: HashSet<_> = outputs.into_iter().map(Result::unwrap).collect();
        assert_eq!(threads.len(), 1, "the cores did not share one pool thread");
        assert!(wait_until(|| pool_threads("shared", backend) == 0));
    }
}

#[test]
fn spawn_blocking_outside_a_runtime_panics_with_a_clear_message() {
    let payload = catch_unwind(AssertUnwindSafe(|| coreio::spawn_blocking(|| 1))).unwrap_err();
    let message = util::panic_message(&*payload);
    assert!(
        message.contains("coreio::spawn_blocking must be called from inside a coreio runtime"),
        "{message}"
    );
}

#[test]
fn bad_pool_settings_are_errors() {
    for threads in [0, coreio::MAX_BLOCKING_THREADS + 1] {
        let err = Builder::new()
            .cores(1)
            .blocking_threads(threads)
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("blocking_threads"), "{err}");
    }
}
