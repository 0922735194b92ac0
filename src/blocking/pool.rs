//! [`BlockingPool`]: the threads that run one runtime's blocking jobs, their queue and their
//! lifecycle.
//!
//! # The algorithm
//!
//! Everything lives under one mutex (from [`crate::loom`]): the queue of jobs no thread has
//! taken yet, and three counters — `live` threads, how many of them are `busy` running a job,
//! and the `shutdown` flag. A thread that is live but not busy is *free*: it is about to look at
//! the queue, or waits on the `work` condition variable for a job.
//!
//! - **Submitting** pushes the job, then: if the free threads are at least as many as the
//!   queued jobs, one of them is notified (a free thread that is not waiting looks at the
//!   queue before it waits, under the same lock, so no notification is needed for it and none
//!   is lost); else, below the thread bound, a new thread is started (it starts free); else
//!   the job waits for a thread, and if more than the queue bound would wait it is refused,
//!   [`BlockingError::QueueFull`]. No thread exists before the first job (the pool is lazy).
//! - **A thread** pops a job, marks itself busy, runs it outside the lock (under
//!   `catch_unwind`, so nothing a job does can kill the thread or leave `busy` wrong), and
//!   comes back for the next. With nothing queued it waits up to the keep-alive; a wait that
//!   times out with the queue still empty retires the thread (so an idle pool shrinks back to
//!   no thread at all), a wake or a spurious return goes round again.
//! - **CPUs**: a thread starts with its creator's CPU mask, and a core is pinned to one CPU, so
//!   a pool thread first widens its mask to the CPUs of the thread that made the pool (the
//!   one that started the runtime, before any core was pinned).
//! - **Names**: a thread takes the lowest number no live thread holds, so names stay within
//!   `<prefix>-blocking-0` to `<prefix>-blocking-{max - 1}`. The kernel keeps 15 bytes of a
//!   thread's name: `/proc` and `top -H` show `coreio-blocking`, the number cut off.
//! - **Shutdown** (the runtime's, after every core has stopped): set `shutdown`, so new jobs
//!   are refused ([`BlockingError::Cancelled`]), wake every waiting thread, and wait up to the
//!   shutdown timeout for every thread to leave. Threads run what is queued before they leave
//!   (a job whose handle was dropped was promised to run), and leave once the queue is empty.
//!   At the deadline, jobs still queued are discarded without running (their waiters, if any,
//!   resolve to [`BlockingError::Cancelled`]); threads that left are joined; a thread still
//!   running a job is detached: it finishes that job (its output is dropped, nobody awaits it
//!   any more) and exits.

// This module owns the queue, the threads and that protocol. It must never run a job on the
// submitting thread, never run user code (a job, a job's `Drop`) while holding its lock, and never
// block a core: submitting takes the lock for a push and, at most, a thread start.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::BlockingError;
use crate::loom::{Arc, Condvar, Mutex, MutexGuard, thread};
use crate::sys;

/// A job as the pool sees it: the user's closure wrapped with the delivery of its outcome.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// The pool's settings, validated by the builder.
#[derive(Clone, Debug)]
pub(crate) struct BlockingConfig {
    /// Most threads at once (at least 1).
    pub(crate) max_threads: usize,
    /// Most jobs waiting for a thread when every thread is busy (0: none waits).
    pub(crate) queue_capacity: usize,
    /// How long a thread with nothing to do waits for a job before it exits.
    pub(crate) keep_alive: Duration,
    /// How long the runtime's shutdown waits for threads still running a job.
    pub(crate) shutdown_timeout: Duration,
    /// Threads are named `<thread_name>-blocking-N`.
    pub(crate) thread_name: String,
}

/// One runtime's blocking pool; clones share it. `Send + Sync`: every core of the runtime
/// holds one.
#[derive(Clone)]
pub(crate) struct BlockingPool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Free threads wait here for a job, the shutdown or their keep-alive to pass.
    work: Condvar,
    /// The shutdown waits here for the last thread to leave.
    exited: Condvar,
    config: BlockingConfig,
    /// The CPUs the thread that made the pool may use (`None` if the kernel would not say):
    /// pool threads run on all of them. A thread inherits its creator's mask, and the core
    /// that starts a pool thread is pinned to its one CPU, where the job would compete with it.
    cpus: Option<Vec<usize>>,
}

struct State {
    /// Jobs no thread has taken yet.
    queue: VecDeque<Job>,
    /// Threads started and not yet gone.
    live: usize,
    /// Of the live threads, those running a job now.
    busy: usize,
    /// Indexed by a thread's number: the thread that holds that number, or that last held it
    /// and has exited (to be joined).
    workers: Vec<Worker>,
    shutdown: bool,
}

struct Worker {
    thread: thread::JoinHandle<()>,
    /// The thread has left its loop: its number is free, and joining it does not wait long.
    exited: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across user code, so poisoning cannot carry a broken state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BlockingPool {
    /// A pool with no thread yet. Made on the thread that starts the runtime, before its cores
    /// are pinned: the pool's threads will run on the CPUs this thread may use.
    pub(crate) fn new(config: BlockingConfig) -> BlockingPool {
        BlockingPool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    live: 0,
                    busy: 0,
                    workers: Vec::new(),
                    shutdown: false,
                }),
                work: Condvar::new(),
                exited: Condvar::new(),
                config,
                // A loom model's threads are loom's, on the test's own thread: left alone.
                cpus: if cfg!(loom) {
                    None
                } else {
                    sys::allowed_cpus().ok()
                },
            }),
        }
    }

    /// Queues `job` for a pool thread, starting one if needed and allowed. On failure the job
    /// is dropped (here, outside the lock) and the error says why.
    pub(crate) fn submit(&self, job: Job) -> Result<(), BlockingError> {
        let refused = {
            let mut state = self.shared.lock();
            match self.enqueue(&mut state, job) {
                Ok(()) => return Ok(()),
                Err(refused) => refused,
            }
        };
        let (job, error) = refused;
        drop(job);
        Err(error)
    }

    fn enqueue(&self, state: &mut State, job: Job) -> Result<(), (Job, BlockingError)> {
        let config = &self.shared.config;
        if state.shutdown {
            return Err((job, BlockingError::Cancelled));
        }
        state.queue.push_back(job);
        let free = state.live - state.busy;
        if state.queue.len() <= free {
            self.shared.work.notify_one();
            return Ok(());
        }
        if state.live < config.max_threads {
            match self.start_thread(state) {
                Ok(()) => return Ok(()),
                Err(error) if state.live == 0 => {
                    let job = state.queue.pop_back().expect("the job just pushed");
                    return Err((job, BlockingError::NoThread(error)));
                }
                // The live threads will get to the job: slower, not wrong.
                Err(error) => log::warn!("cannot start another blocking pool thread: {error}"),
            }
        }
        if state.queue.len() - free > config.queue_capacity {
            let job = state.queue.pop_back().expect("the job just pushed");
            return Err((
                job,
                BlockingError::QueueFull {
                    threads: state.live,
                    capacity: config.queue_capacity,
                },
            ));
        }
        Ok(())
    }

    /// Starts a thread under the lowest free number. Called with the lock held, so the new
    /// thread's first look at the state waits until its handle is stored.
    fn start_thread(&self, state: &mut State) -> io::Result<()> {
        let number = state
            .workers
            .iter()
            .position(|worker| worker.exited)
            .unwrap_or(state.workers.len());
        let shared = Arc::clone(&self.shared);
        let thread = thread::Builder::new()
            .name(format!(
                "{}-blocking-{number}",
                self.shared.config.thread_name
            ))
            .spawn(move || shared.run_thread(number))?;
        let worker = Worker {
            thread,
            exited: false,
        };
        if number == state.workers.len() {
            state.workers.push(worker);
        } else {
            // The previous holder has left its loop; only its last instructions can remain.
            // Joining it under the lock would make the other threads wait for that, so it is
            // let go instead.
            let previous = std::mem::replace(&mut state.workers[number], worker);
            drop(previous.thread);
        }
        state.live += 1;
        Ok(())
    }

    /// Stops the pool (the runtime's shutdown): refuses new jobs and waits up to the shutdown
    /// timeout for the threads to run what is queued and leave; then discards what is still
    /// queued and detaches the threads still running a job (see the module docs).
    pub(crate) fn shutdown(&self) {
        // A timeout too long to add to now (`Duration::MAX`) waits for as long as it takes.
        let deadline = Instant::now().checked_add(self.shared.config.shutdown_timeout);
        let mut state = self.shared.lock();
        state.shutdown = true;
        self.shared.work.notify_all();
        while state.live > 0 {
            let wait = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => break,
                },
                None => Duration::MAX,
            };
            state = match self.shared.exited.wait_timeout(state, wait) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        let running = state.live;
        let discarded = std::mem::take(&mut state.queue);
        let workers = std::mem::take(&mut state.workers);
        drop(state);
        let never_ran = discarded.len();
        for job in discarded {
            // The job's `Drop` is user code (what the closure captured).
            if catch_unwind(AssertUnwindSafe(move || drop(job))).is_err() {
                log::error!("a discarded blocking job panicked while being dropped");
            }
        }
        for worker in workers {
            if worker.exited {
                // Its loop is done; a panic would be coreio's own bug, already reported.
                let _ = worker.thread.join();
            } // else dropping the handle detaches the thread.
        }
        if running > 0 {
            log::warn!(
                "{running} blocking job(s) still running {:?} after the runtime stopped: \
                 their threads are detached and their outputs will be dropped; \
                 {never_ran} queued job(s) discarded without running",
                self.shared.config.shutdown_timeout
            );
        }
    }

    /// Live threads (started and not retired), for the unit tests.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn live_threads(&self) -> usize {
        self.shared.lock().live
    }
}

impl Shared {
    /// A pool thread's loop: run jobs until the queue stays empty for the keep-alive, or the
    /// pool shuts down.
    fn run_thread(&self, number: usize) {
        if let Some(cpus) = &self.cpus
            && let Err(error) = sys::set_allowed_cpus(cpus)
        {
            // The job then shares its starting core's CPU: slower, not wrong.
            log::warn!("a blocking pool thread stays on its core's CPU: {error}");
        }
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                state.busy += 1;
                drop(state);
                // The job delivers the closure's outcome itself (its panic included); what can
                // still unwind here is the `Drop` of an output nobody awaited, or a waker.
                if catch_unwind(AssertUnwindSafe(job)).is_err() {
                    log::error!("a blocking job panicked after its closure returned");
                }
                state = self.lock();
                state.busy -= 1;
                continue;
            }
            if state.shutdown {
                break;
            }
            let timed_out;
            (state, timed_out) = match self.work.wait_timeout(state, self.config.keep_alive) {
                Ok((state, result)) => (state, result.timed_out()),
                Err(poisoned) => {
                    let (state, result) = poisoned.into_inner();
                    (state, result.timed_out())
                }
            };
            if timed_out && state.queue.is_empty() && !state.shutdown {
                break; // Idle for the whole keep-alive: retire.
            }
        }
        state.live -= 1;
        if let Some(worker) = state.workers.get_mut(number) {
            worker.exited = true;
        }
        if state.live == 0 {
            self.exited.notify_all();
        }
    }
}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("BlockingPool")
            .field("live", &state.live)
            .field("busy", &state.busy)
            .field("queued", &state.queue.len())
            .finish()
    }
}

// Compile-time contract (STYLE.md rule 7): every core of a runtime submits to its one pool.
const _: () = {
    fn send_and_sync<T: Send + Sync>() {}
    let _ = send_and_sync::<BlockingPool>;
};

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn config(max_threads: usize, queue_capacity: usize) -> BlockingConfig {
        BlockingConfig {
            max_threads,
            queue_capacity,
            keep_alive: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            thread_name: "unit".into(),
        }
    }

    #[test]
    fn no_thread_starts_before_the_first_job() {
        let pool = BlockingPool::new(config(4, 4));
        assert_eq!(pool.live_threads(), 0);
        pool.shutdown();
    }

    /// With every thread busy, exactly `queue_capacity` jobs wait and the next is refused.
    #[test]
    fn the_queue_bound_counts_jobs_waiting_for_a_thread() {
        let pool = BlockingPool::new(config(2, 3));
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let (started_tx, started) = mpsc::channel();
        for _ in 0..2 {
            let gate = Arc::clone(&gate);
            let started_tx = started_tx.clone();
            let job: Job = Box::new(move || {
                started_tx.send(()).unwrap();
                let _ = gate.lock().unwrap().recv();
            });
            pool.submit(job).unwrap();
        }
        // Both threads hold a job (one waits on the gate's lock, one on the gate itself).
        started.recv().unwrap();
        started.recv().unwrap();
        for _ in 0..3 {
            pool.submit(Box::new(|| {})).unwrap();
        }
        let refused = pool.submit(Box::new(|| {})).unwrap_err();
        assert!(
            matches!(
                refused,
                BlockingError::QueueFull {
                    threads: 2,
                    capacity: 3
                }
            ),
            "{refused}"
        );
        assert_eq!(pool.live_threads(), 2);
        drop(release);
        pool.shutdown();
        assert_eq!(pool.live_threads(), 0);
    }

    #[test]
    fn a_stopped_pool_refuses_jobs() {
        let pool = BlockingPool::new(config(1, 1));
        pool.shutdown();
        assert!(matches!(
            pool.submit(Box::new(|| {})),
            Err(BlockingError::Cancelled)
        ));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The pool's own hand-over, on loom threads (its threads are started through the shim):
    //! a job pushed while its thread is starting, running another job, or waiting on the
    //! condition variable must be run, and its waiter woken. A job lost in the queue, or a
    //! notification lost, leaves `block_on` parked forever: a loom deadlock. (Loom's
    //! `wait_timeout` never times out, so threads never retire here; shutdown still wakes
    //! them.)

    use loom::future::block_on;

    use super::*;

    fn config(max_threads: usize) -> BlockingConfig {
        BlockingConfig {
            max_threads,
            queue_capacity: 2,
            keep_alive: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(60),
            thread_name: "loom".into(),
        }
    }

    /// Two jobs submitted back to back to a pool of one thread.
    #[test]
    fn loom_blocking_pool_runs_queued_jobs_and_wakes_their_waiters() {
        crate::loom::model(Some(3), || {
            let pool = BlockingPool::new(config(1));
            let first = pool.spawn(|| 1);
            let second = pool.spawn(|| 2);
            assert_eq!(block_on(first).unwrap(), 1);
            assert_eq!(block_on(second).unwrap(), 2);
            pool.shutdown();
        });
    }

    /// The second job arrives while the only thread finishes the first and goes to wait.
    #[test]
    fn loom_blocking_pool_notifies_a_waiting_thread() {
        crate::loom::model(Some(3), || {
            let pool = BlockingPool::new(config(1));
            assert_eq!(block_on(pool.spawn(|| 1)).unwrap(), 1);
            assert_eq!(block_on(pool.spawn(|| 2)).unwrap(), 2);
            pool.shutdown();
        });
    }

    /// Shutdown racing threads that are still starting: every job submitted before it runs.
    /// (Three threads: a preemption bound of 2.)
    #[test]
    fn loom_blocking_pool_shutdown_runs_what_was_queued() {
        crate::loom::model(Some(2), || {
            let pool = BlockingPool::new(config(2));
            let ran = Arc::new(crate::loom::AtomicUsize::new(0));
            for _ in 0..2 {
                let ran = Arc::clone(&ran);
                drop(pool.spawn(move || ran.fetch_add(1, crate::loom::Ordering::SeqCst)));
            }
            pool.shutdown();
            assert_eq!(ran.load(crate::loom::Ordering::SeqCst), 2);
        });
    }
}
