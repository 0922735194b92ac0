//! The cross-core mesh: running work on another core, and typed channels between cores.
//!
//! coreio's cores share nothing; they cooperate by sending each other messages. Every core has
//! a mailbox that any thread can post to. [`submit_to`] posts a closure to one core: that core
//! calls it between two task polls, runs the future it returns as a task, and sends the output
//! back to the caller's future. [`submit_to_all`] does the same on every core and collects the
//! outputs in core order. For a stream of values rather than one-off work, [`channel()`] makes a
//! bounded channel whose [`Sender`]s and [`Receiver`] can be moved to any core: `send` waits for
//! room (backpressure), each sender's messages arrive in order, and either side learns when the
//! other has gone.
//!
//! ```
//! use coreio::mesh;
//!
//! let rt = coreio::Builder::new().cores(2).build().unwrap();
//! let first = rt.cores()[0];
//! let done = coreio::sync::Event::new();
//! let outputs = rt.run(|core| {
//!     let done = done.clone();
//!     async move {
//!         if core == first {
//!             // Ask every core (this one included) which core it is.
//!             let answers = mesh::submit_to_all(|| async { coreio::current_core() }).await;
//!             let cores: Vec<_> = answers.into_iter().map(|a| a.unwrap().unwrap()).collect();
//!             assert_eq!(cores, mesh::cores());
//!             done.set();
//!         }
//!         // A core serves its mailbox only while its root future runs.
//!         done.wait().await;
//!     }
//! });
//! assert!(outputs.iter().all(Result::is_ok));
//! ```
//!
//! A core serves its mailbox for as long as its root future runs: once the root finishes, the
//! core stops, and work submitted to it fails with [`MailboxError::CoreStopped`] (so does work
//! it had received but not yet run: no caller is left waiting for a stopped core). A server's
//! roots run until shutdown, so this matters mostly in tests and tools, where a core that only
//! serves others should wait (on an [`Event`](crate::sync::Event), say) until they are done.
//! After a graceful [`shutdown`](crate::shutdown) is requested, a finished root no longer stops
//! its core at once: the core keeps serving its tasks and mailbox until they are done or the
//! grace period ends.
//!
//! # Costs and wake-ups
//!
//! A post is a push onto a lock-free queue. The receiving core is woken only if it sleeps, and
//! then once for the whole batch of posts and cross-core task wakes that reach it before it
//! runs again; an awake core is not woken at all. Between two io_uring cores the wake is an
//! `IORING_OP_MSG_RING` submitted from the sending core's own ring, which posts a completion
//! straight into the sleeping core's ring (no eventfd read or poll re-arm there); otherwise it
//! is one eventfd write.

// What this module owns: the table of every core's handle (`crate::core::CoreHandle`: its
// mailbox and the way to wake it; built before the cores start, so a core can be addressed
// before it runs), the submit protocol and its errors, and the channels. It must never run a
// closure on a core other than the one it was posted to, never block a core, and never leave a
// caller waiting for a core that has stopped: a stopped core's mailbox refuses posts, and the
// posts it held are dropped, which resolves their callers with `MailboxError::CoreStopped`.

mod channel;
mod reply;

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::context;
use crate::core::{CoreHandle, CoreId};
use crate::panic::{self, Payload};
use reply::{ReplyReceiver, ReplySender, reply};

pub use channel::{Receiver, RecvError, SendError, Sender, TryRecvError, TrySendError, channel};

/// Every core's handle (its mailbox, above all), shared by the cores of one runtime.
pub(crate) struct Mesh {
    cores: Vec<CoreId>,
    handles: Vec<Arc<CoreHandle>>,
    /// `index_by_cpu[cpu]` is the position of CPU `cpu` in `cores`, or `usize::MAX`.
    index_by_cpu: Vec<usize>,
}

// Compile-time contract (STYLE.md rule 7): every core's context shares the one table.
const _: () = {
    fn send_and_sync<T: Send + Sync>() {}
    let _ = send_and_sync::<Mesh>;
};

impl Mesh {
    /// One handle per core, in the order of `cores`.
    pub(crate) fn new(cores: &[CoreId]) -> io::Result<Arc<Mesh>> {
        let handles = cores
            .iter()
            .map(|_| CoreHandle::new().map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let len = cores.iter().map(|core| core.0 + 1).max().unwrap_or(0);
        let mut index_by_cpu = vec![usize::MAX; len];
        for (index, core) in cores.iter().enumerate() {
            index_by_cpu[core.0] = index;
        }
        Ok(Arc::new(Mesh {
            cores: cores.to_vec(),
            handles,
            index_by_cpu,
        }))
    }

    pub(crate) fn len(&self) -> usize {
        self.cores.len()
    }

    pub(crate) fn core(&self, index: usize) -> CoreId {
        self.cores[index]
    }

    /// Whether the core at `index` has stopped (or never started).
    pub(crate) fn is_stopped(&self, index: usize) -> bool {
        self.handles[index].is_closed()
    }

    /// The handle of the core at `index` (its position in the runtime's cores).
    pub(crate) fn handle(&self, index: usize) -> &Arc<CoreHandle> {
        &self.handles[index]
    }

    pub(crate) fn index_of(&self, core: CoreId) -> Option<usize> {
        self.index_by_cpu
            .get(core.0)
            .copied()
            .filter(|&index| index != usize::MAX)
    }
}

/// Why submitted work produced no output.
#[non_exhaustive]
pub enum MailboxError {
    /// `submit_to` was called outside a coreio runtime: there is no mesh to post to.
    NoRuntime,
    /// The core is not one of this runtime's cores.
    NoSuchCore(CoreId),
    /// The core stopped (its root future finished, or it failed to start) before the work
    /// finished; the work was dropped there.
    CoreStopped(CoreId),
    /// The closure, or the future it returned, panicked on `core`; that core keeps running.
    Panicked {
        /// The core the work ran on.
        core: CoreId,
        /// What `panic!` was given.
        payload: Payload,
    },
}

impl MailboxError {
    /// The panic message, when the work panicked with a string.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            MailboxError::Panicked { payload, .. } => panic::message(payload),
            _ => None,
        }
    }
}

impl fmt::Debug for MailboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for MailboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailboxError::NoRuntime => f.write_str(
                "no coreio runtime on this thread: submit work from inside Runtime::run or \
                 coreio::block_on",
            ),
            MailboxError::NoSuchCore(core) => write!(f, "{core} is not a core of this runtime"),
            MailboxError::CoreStopped(core) => {
                write!(f, "{core} stopped before the submitted work finished")
            }
            MailboxError::Panicked { core, .. } => match self.panic_message() {
                Some(msg) => write!(f, "the work submitted to {core} panicked: {msg}"),
                None => write!(f, "the work submitted to {core} panicked"),
            },
        }
    }
}

impl std::error::Error for MailboxError {}

/// The cores of the current runtime, in the order of [`Runtime::cores`](crate::Runtime::cores);
/// empty outside a runtime. [`coreio::block_on`](crate::block_on) is a runtime of one core.
pub fn cores() -> Vec<CoreId> {
    context::with(|ctx| ctx.mesh.cores.clone()).unwrap_or_default()
}

/// Runs `work` on `core` and resolves to the output of the future it returns.
///
/// The closure is posted at once, whether or not the returned future is polled. On `core` it
/// is called between two task polls, and its future runs there as a task, so that future may
/// be `!Send` (it may use `Rc`, the core's sockets, thread-locals); only the closure and the
/// output cross cores. Work submitted to the calling core runs there the same way, after the
/// caller yields.
///
/// Dropping the returned future does not cancel the work: it still runs, and its output is
/// dropped on `core`. Errors: [`MailboxError::NoSuchCore`] for a core this runtime does not
/// run, [`MailboxError::CoreStopped`] if `core` has stopped or stops before the work finishes,
/// [`MailboxError::Panicked`] if the work panics, [`MailboxError::NoRuntime`] outside a runtime.
///
/// ```
/// use std::cell::Cell;
///
/// thread_local!(static HITS: Cell<u32> = const { Cell::new(0) });
///
/// let rt = coreio::Builder::new().cores(2).build().unwrap();
/// let (first, last) = (rt.cores()[0], *rt.cores().last().unwrap());
/// let done = coreio::sync::Event::new();
/// let outputs = rt.run(|core| {
///     let done = done.clone();
///     async move {
///         if core == first {
///             // Count a hit in the last core's thread-local, from the first core.
///             let total = coreio::mesh::submit_to(last, || async {
///                 HITS.with(|hits| {
///                     hits.set(hits.get() + 1);
///                     hits.get()
///                 })
///             });
///             assert_eq!(total.await.unwrap(), 1);
///             done.set();
///         }
///         done.wait().await;
///     }
/// });
/// assert!(outputs.iter().all(Result::is_ok));
/// ```
pub fn submit_to<F, Fut, T>(core: CoreId, work: F) -> Submission<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let posted = context::with(|ctx| {
        let index = ctx
            .mesh
            .index_of(core)
            .ok_or(MailboxError::NoSuchCore(core))?;
        let (sender, receiver) = reply();
        let job = Box::new(move || run_submitted(work, sender));
        match ctx.mesh.handle(index).post(job) {
            Ok(()) => Ok(receiver),
            // Dropping the refused job drops its reply sender, which is all it holds of ours.
            Err(_refused) => Err(MailboxError::CoreStopped(core)),
        }
    })
    .unwrap_or(Err(MailboxError::NoRuntime));
    Submission {
        core,
        state: match posted {
            Ok(receiver) => SubmissionState::Waiting(receiver),
            Err(error) => SubmissionState::Failed(Some(error)),
        },
    }
}

/// Runs `work` on every core of the runtime and resolves to the outputs, in core order.
///
/// Every closure is posted at once, so the cores work in parallel; the calling core's own copy
/// runs after the caller yields. Each output is a `Result` as from [`submit_to`]. Outside a
/// runtime there are no cores, and the result is empty.
pub fn submit_to_all<F, Fut, T>(work: F) -> impl Future<Output = Vec<Result<T, MailboxError>>>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let work = Arc::new(work);
    let submissions: Vec<Submission<T>> = cores()
        .into_iter()
        .map(|core| {
            let work = Arc::clone(&work);
            submit_to(core, move || work())
        })
        .collect();
    async move {
        let mut outputs = Vec::with_capacity(submissions.len());
        for submission in submissions {
            outputs.push(submission.await);
        }
        outputs
    }
}

/// On the target core: calls the closure and spawns its future, sending the outcome back.
fn run_submitted<F, Fut, T>(work: F, reply: ReplySender<Result<T, Payload>>)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T> + 'static,
    T: 'static,
{
    let future = match catch_unwind(AssertUnwindSafe(work)) {
        Ok(future) => future,
        Err(payload) => return reply.send(Err(payload)),
    };
    // A panic of the future is caught here rather than by the task wrapper, so that the caller
    // learns it was a panic (the reply carries it) and not a stopped core.
    let task = async move {
        let mut future = pin!(future);
        let outcome =
            poll_fn(
                |cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                    Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
                    Ok(Poll::Pending) => Poll::Pending,
                    Err(payload) => Poll::Ready(Err(payload)),
                },
            )
            .await;
        reply.send(outcome);
    };
    // Detached: the task's own reply is how its outcome travels.
    drop(crate::spawn(task));
}

/// The output of work posted with [`submit_to`]; resolves when the target core has run it.
#[must_use = "the work runs anyway; await this to get its output or its error"]
pub struct Submission<T> {
    core: CoreId,
    state: SubmissionState<T>,
}

enum SubmissionState<T> {
    /// The post was refused; the error is taken by the first poll.
    Failed(Option<MailboxError>),
    Waiting(ReplyReceiver<Result<T, Payload>>),
}

impl<T> Submission<T> {
    /// The core the work was submitted to.
    pub fn core(&self) -> CoreId {
        self.core
    }
}

impl<T> Future for Submission<T> {
    type Output = Result<T, MailboxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let core = this.core;
        match &mut this.state {
            SubmissionState::Failed(error) => Poll::Ready(Err(error
                .take()
                .expect("a Submission is not polled after it resolved"))),
            SubmissionState::Waiting(receiver) => match Pin::new(receiver).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(output))) => Poll::Ready(Ok(output)),
                Poll::Ready(Some(Err(payload))) => {
                    Poll::Ready(Err(MailboxError::Panicked { core, payload }))
                }
                Poll::Ready(None) => Poll::Ready(Err(MailboxError::CoreStopped(core))),
            },
        }
    }
}

impl<T> fmt::Debug for Submission<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Submission")
            .field("core", &self.core)
            .finish()
    }
}
