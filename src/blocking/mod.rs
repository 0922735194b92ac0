//! Running blocking code off the cores: [`spawn_blocking`], [`BlockingHandle`],
//! [`BlockingError`].
//!
//! A core must never block: while a task sits in a blocking call (a DNS lookup through the C
//! library, a read of a file, a CPU-heavy computation), every other task of that core waits.
//! [`spawn_blocking`] runs such a closure on a thread of the runtime's **blocking pool** and
//! returns a future for its output, which the calling task awaits like any other: the core
//! serves its other tasks meanwhile, and the pool thread wakes the task when the closure
//! returns (through the task's ordinary waker, which hands it back to its own core).
//!
//! ```
//! let sum = coreio::block_on(async {
//!     coreio::spawn_blocking(|| (1..=100u64).sum::<u64>()).await
//! })
//! .unwrap();
//! assert_eq!(sum.unwrap(), 5050);
//! ```
//!
//! # The pool
//!
//! One pool per runtime (per [`Runtime::run`](crate::Runtime::run) or
//! [`block_on`](crate::block_on) call), shared by all its cores. It starts no thread before
//! the first job, starts one per job while every thread is busy, up to
//! [`Builder::blocking_threads`](crate::Builder::blocking_threads), and lets a thread that has
//! had nothing to do for [`Builder::blocking_keep_alive`](crate::Builder::blocking_keep_alive)
//! exit. Threads are named `coreio-blocking-N` (after
//! [`Builder::thread_name_prefix`](crate::Builder::thread_name_prefix)), `N` the lowest number
//! free, below the thread bound.
//!
//! When every thread is busy, jobs wait in a queue of at most
//! [`Builder::blocking_queue`](crate::Builder::blocking_queue) jobs. A job that finds it full is
//! refused, never run, and its handle resolves at once to [`BlockingError::QueueFull`]: a
//! server under a flood of blocking work sheds it with an error it can answer with, rather than
//! grow a queue without bound.
//!
//! When the runtime stops (every core's root future has finished), the pool refuses new jobs
//! and waits up to
//! [`Builder::blocking_shutdown_timeout`](crate::Builder::blocking_shutdown_timeout) for its
//! threads to run the jobs running and queued. Then jobs still queued are discarded without
//! running, and a thread still running a job is detached: it finishes its job, whose output is
//! dropped, and exits; `run`/`block_on` return without it.

mod pool;
mod slot;

use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub(crate) use pool::{BlockingConfig, BlockingPool};
pub(crate) use slot::Waiter;

use crate::context;
use crate::panic::{self, Payload};

/// Default [`Builder::blocking_threads`](crate::Builder::blocking_threads): the most pool
/// threads at once.
///
/// The pool's jobs are mostly waits — a resolver that answers over the network, a disk — not
/// CPU work, so overlapping many of them pays off, while each thread costs a stack (2 MiB of
/// address space, a few pages used) and a burst of threads competes with the cores for CPU
/// time. 64 lets a proxy resolve 64 names at once, and bounds a burst to a modest number of
/// threads next to the cores. (tokio's 512 suits a runtime that sends all file I/O through
/// its pool; coreio does file I/O in its rings wherever io_uring runs.)
pub const DEFAULT_BLOCKING_THREADS: usize = 64;
/// Default [`Builder::blocking_queue`](crate::Builder::blocking_queue): the most jobs waiting
/// for a thread when all are busy. A queued job costs its closure's size plus about 100 bytes,
/// so the bound caps that memory at a few MiB for small closures, while absorbing a burst many
/// times the thread bound.
pub const DEFAULT_BLOCKING_QUEUE: usize = 16_384;
/// Default [`Builder::blocking_keep_alive`](crate::Builder::blocking_keep_alive): how long a
/// pool thread with nothing to do waits for a job before it exits. Long enough that a steady
/// trickle of jobs does not start a thread per job, short enough that a burst's threads are
/// gone soon after it.
pub const DEFAULT_BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(10);
/// Default [`Builder::blocking_shutdown_timeout`](crate::Builder::blocking_shutdown_timeout):
/// how long a stopping runtime waits for blocking jobs still running or queued, the same grace the
/// io_uring driver gives the kernel at shutdown. A C-library DNS lookup that waits for a
/// silent resolver can take longer; it is then detached rather than waited for.
pub const DEFAULT_BLOCKING_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest [`Builder::blocking_threads`](crate::Builder::blocking_threads).
pub const MAX_BLOCKING_THREADS: usize = 32_768;

/// Runs `f` on the runtime's blocking pool and returns a future for its output.
///
/// The future resolves to `Ok(output)`, or to a [`BlockingError`]: `f` panicked
/// ([`BlockingError::Panicked`]), or it was refused or discarded before it ran (the queue was
/// full, no pool thread could be started, the runtime stopped and its shutdown timeout passed
/// first). Dropping the future detaches the job: it still runs, also when the runtime stops
/// meanwhile (within the shutdown timeout), and its output is dropped on the pool thread.
///
/// `f` runs on another thread, so it and its output must be `Send`. Use the pool for code that
/// blocks or computes for long: I/O through libraries that offer no async form, `std::fs`
/// where io_uring does not run, CPU-heavy work. [`net::lookup_host`](crate::net::lookup_host)
/// resolves names on it.
///
/// ```
/// coreio::block_on(async {
///     let handle = coreio::spawn_blocking(|| std::fs::read_to_string("/proc/self/stat"));
///     // The core runs other tasks while the pool thread reads.
///     let stat = handle.await.expect("the job ran").expect("readable");
///     assert!(!stat.is_empty());
///
///     // A panic comes back as an error; the core and the pool are unharmed.
///     let err = coreio::spawn_blocking(|| panic!("bad input")).await.unwrap_err();
///     assert_eq!(err.panic_message(), Some("bad input"));
/// })
/// .unwrap();
/// ```
///
/// # Panics
///
/// When called outside a coreio core, like [`spawn`](crate::spawn): there is no pool to use.
/// A blocking pool thread is not a core either: a job that needs more blocking work done just
/// does it.
#[track_caller]
pub fn spawn_blocking<F, T>(f: F) -> BlockingHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let pool = context::expect("coreio::spawn_blocking", |ctx| ctx.blocking.clone());
    pool.spawn(f)
}

impl BlockingPool {
    /// Queues `f`; a refusal is reported through the handle.
    pub(crate) fn spawn<F, T>(&self, f: F) -> BlockingHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let state = match self.start_call(f) {
            Ok(waiter) => HandleState::Waiting(waiter),
            Err(error) => HandleState::Refused(Some(error)),
        };
        BlockingHandle { state }
    }

    /// Queues `f` and returns the slot its outcome comes back in: `spawn` without the handle,
    /// for the driver's offloaded operations (`driver::offload`).
    pub(crate) fn start_call<F, T>(&self, f: F) -> Result<Waiter<T>, BlockingError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (completer, waiter) = slot::slot();
        let job: pool::Job = Box::new(move || {
            let outcome = catch_unwind(AssertUnwindSafe(f));
            completer.complete(outcome);
        });
        self.submit(job).map(|()| waiter)
    }
}

/// The future of a job on the blocking pool, from [`spawn_blocking`].
///
/// Resolves to the closure's output, or a [`BlockingError`]. Dropping it detaches the job,
/// which still runs. It may be awaited on any thread (it is `Send` when the output is). It
/// resolves once: polled again afterwards, it gives [`BlockingError::Cancelled`].
#[must_use = "a job runs whether or not its handle is awaited; drop the handle to detach it"]
pub struct BlockingHandle<T> {
    state: HandleState<T>,
}

enum HandleState<T> {
    /// Queued or running on the pool.
    Waiting(slot::Waiter<T>),
    /// Never queued; `None` once the error was handed out.
    Refused(Option<BlockingError>),
}

impl<T> BlockingHandle<T> {
    /// Whether the job has finished (returned, panicked, or was refused or discarded), so that
    /// awaiting the handle would not wait.
    pub fn is_finished(&self) -> bool {
        match &self.state {
            HandleState::Waiting(waiter) => waiter.is_completed(),
            HandleState::Refused(_) => true,
        }
    }
}

impl<T> Future for BlockingHandle<T> {
    type Output = Result<T, BlockingError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            HandleState::Waiting(waiter) => match Pin::new(waiter).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(output))) => Poll::Ready(Ok(output)),
                Poll::Ready(Some(Err(payload))) => {
                    Poll::Ready(Err(BlockingError::Panicked(payload)))
                }
                Poll::Ready(None) => Poll::Ready(Err(BlockingError::Cancelled)),
            },
            HandleState::Refused(error) => {
                Poll::Ready(Err(error.take().unwrap_or(BlockingError::Cancelled)))
            }
        }
    }
}

impl<T> fmt::Debug for BlockingHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Why a job on the blocking pool produced no output.
///
/// Converts into an [`io::Error`] (with `?` in a function returning `io::Result`) that keeps
/// the explanation.
#[non_exhaustive]
pub enum BlockingError {
    /// The closure panicked; the payload is what `panic!` was given.
    Panicked(Payload),
    /// The job was refused, never run: every pool thread was busy and the queue held
    /// [`Builder::blocking_queue`](crate::Builder::blocking_queue) jobs already.
    QueueFull {
        /// The pool threads, all busy.
        threads: usize,
        /// The queue bound.
        capacity: usize,
    },
    /// The job was refused, never run: the pool had no thread and could not start one (the
    /// cause is the system's, such as `RLIMIT_NPROC` or memory).
    NoThread(io::Error),
    /// The job never ran: it was submitted to a stopped pool, or still queued when its
    /// runtime's shutdown timeout passed.
    Cancelled,
}

impl BlockingError {
    /// Whether the closure panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, BlockingError::Panicked(_))
    }

    /// Whether the job was refused because the queue was full.
    pub fn is_queue_full(&self) -> bool {
        matches!(self, BlockingError::QueueFull { .. })
    }

    /// The panic payload, if the closure panicked.
    pub fn into_panic(self) -> Option<Payload> {
        match self {
            BlockingError::Panicked(payload) => Some(payload),
            _ => None,
        }
    }

    /// The panic message when the closure panicked with a string, as most panics do.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            BlockingError::Panicked(payload) => panic::message(payload),
            _ => None,
        }
    }
}

impl fmt::Display for BlockingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockingError::Panicked(_) => match self.panic_message() {
                Some(msg) => write!(f, "blocking job panicked: {msg}"),
                None => f.write_str("blocking job panicked"),
            },
            BlockingError::QueueFull { threads, capacity } => write!(
                f,
                "blocking pool is full: {threads} threads busy and {capacity} jobs queued \
                 (raise Builder::blocking_threads or Builder::blocking_queue, or shed load)"
            ),
            BlockingError::NoThread(error) => {
                write!(f, "cannot start a blocking pool thread: {error}")
            }
            BlockingError::Cancelled => {
                f.write_str("blocking job discarded before it ran: the runtime stopped")
            }
        }
    }
}

impl fmt::Debug for BlockingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockingError::Panicked(_) => f
                .debug_tuple("Panicked")
                .field(&self.panic_message().unwrap_or("<non-string payload>"))
                .finish(),
            BlockingError::QueueFull { threads, capacity } => f
                .debug_struct("QueueFull")
                .field("threads", threads)
                .field("capacity", capacity)
                .finish(),
            BlockingError::NoThread(error) => f.debug_tuple("NoThread").field(error).finish(),
            BlockingError::Cancelled => f.write_str("Cancelled"),
        }
    }
}

impl std::error::Error for BlockingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BlockingError::NoThread(error) => Some(error),
            _ => None,
        }
    }
}

/// `QueueFull` becomes [`ResourceBusy`](io::ErrorKind::ResourceBusy), `NoThread` keeps its
/// cause's kind, a panic or a discarded job is [`Other`](io::ErrorKind::Other); the message is
/// the error's `Display`.
impl From<BlockingError> for io::Error {
    fn from(error: BlockingError) -> io::Error {
        let kind = match &error {
            BlockingError::QueueFull { .. } => io::ErrorKind::ResourceBusy,
            BlockingError::NoThread(cause) => cause.kind(),
            BlockingError::Panicked(_) | BlockingError::Cancelled => io::ErrorKind::Other,
        };
        io::Error::new(kind, error.to_string())
    }
}

// Compile-time contract (STYLE.md rule 7): a handle may be awaited on any thread when its
// output may cross threads.
const _: () = {
    fn send<T: Send>() {}
    let _ = send::<BlockingHandle<u8>>;
    let _ = send::<BlockingError>;
};
