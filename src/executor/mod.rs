//! The per-core task executor.
//!
//! Each core runs one [`LocalExecutor`]: a FIFO run queue of [`async_task::Runnable`]s that only
//! its own thread touches, and the two queues of its core's [`CoreHandle`]: the injector
//! (lock-free, [`concurrent_queue`]) through which wakers fired on *other* threads hand tasks
//! back, and the mailbox of closures other cores post with
//! [`mesh::submit_to`](crate::mesh::submit_to), run by the core loop between task polls. Tasks
//! never leave their core, so their futures may be `!Send`. The local queue is served first,
//! but every `remote_queue_interval`-th task
//! ([`Builder::remote_queue_interval`](crate::Builder::remote_queue_interval)) comes from the
//! injector when it holds one, so local tasks that keep yielding cannot starve remote wakes.
//!
//! Sleeping and waking: before the core parks in its I/O driver the executor announces it
//! through the handle, which checks the injector and the mailbox once more (with the local
//! queue); a remote thread pushes into one of them and then, only if it is the one that lowers
//! the sleep flag, wakes the core. So a sleeping core is woken once per sleep, however many
//! remote wakes and messages arrive, and an awake core is not woken at all. That handshake is
//! `core/sleep.rs` (with its loom model); the wake itself is the driver's (`driver/wake.rs`): a
//! `MSG_RING` submitted at once from the sender's own ring when both cores run io_uring (one
//! `io_uring_enter` for the sender, and no eventfd read or poll re-arm for the sleeper), else
//! an eventfd write.

// This module owns the local queue, the order in which it and the handle's queues are served, the
// task registry used to cancel every task at shutdown, and `spawn`/`yield_now`; the budget each
// task poll starts with is `coop`'s. It must never poll a task on another thread, and never block:
// parking is the driver's job.

mod join;
mod task;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_task::Runnable;
use slab::Slab;

pub use join::{JoinError, JoinHandle};

use crate::context;
use crate::coop::Budget;
use crate::core::CoreHandle;
use crate::panic::Payload;
use crate::shutdown::{CoreShutdown, Shutdown};

/// Slots the local run queue starts with and keeps once empty; more are allocated for a burst
/// and released when it has drained.
const LOCAL_QUEUE_RETAINED: usize = 1024;

/// How many mailbox jobs the core loop runs before it polls tasks again, so a flood of posts
/// cannot starve the tasks already queued.
pub(crate) const JOBS_PER_TICK: usize = 64;

/// How long shutdown waits for a task that another thread is in the middle of waking: a few
/// instructions, unless that thread is preempted there.
const REMOTE_WAKE_GRACE: Duration = Duration::from_secs(1);

/// One core's executor. `!Send`: it lives and dies on its core's thread.
pub(crate) struct LocalExecutor {
    local: RefCell<VecDeque<Runnable>>,
    handle: Arc<CoreHandle>,
    /// Every this many calls, [`next_task`](LocalExecutor::next_task) looks at the injector
    /// before the local queue (`Builder::remote_queue_interval`, at least 1).
    remote_queue_interval: u32,
    /// Calls to `next_task` since it last looked at the injector first.
    remote_tick: Cell<u32>,
    /// Wakers of every live task, so shutdown can reach tasks that sit idle in a driver.
    registry: RefCell<Slab<Waker>>,
    shutting_down: Cell<bool>,
    /// Tasks spawned and not yet dropped (the root included).
    live: Cell<usize>,
    /// Whether the core is draining for a shutdown: tasks that finish from now on are counted.
    draining: Cell<bool>,
    /// Tasks that finished while draining.
    finished_draining: Cell<usize>,
    /// Tasks dropped unfinished by `shutdown` (the core's teardown).
    cancelled_at_teardown: Cell<usize>,
    /// This core's side of the runtime's shutdown (its handle, the local waiters).
    pub(crate) shutdown: CoreShutdown,
    /// Keeps the executor `!Send`: its queues hold the runnables of `!Send` futures, which
    /// must only be run or dropped on this thread (see `spawn`'s SAFETY comment). Without it
    /// the auto traits would make it `Send`, since a `Runnable` is.
    _not_send: PhantomData<*const ()>,
}

impl LocalExecutor {
    /// An executor for the core whose cross-thread handle is `handle` (made beforehand, so the
    /// other cores can address this one before it starts), serving the injector first every
    /// `remote_queue_interval` tasks (validated by the builder; 0 is taken as 1), in the
    /// runtime whose shutdown is `shutdown`.
    pub(crate) fn new(
        handle: Arc<CoreHandle>,
        remote_queue_interval: u32,
        shutdown: Shutdown,
    ) -> Self {
        LocalExecutor {
            local: RefCell::new(VecDeque::with_capacity(LOCAL_QUEUE_RETAINED)),
            handle,
            remote_queue_interval: remote_queue_interval.max(1),
            remote_tick: Cell::new(0),
            registry: RefCell::new(Slab::with_capacity(1024)),
            shutting_down: Cell::new(false),
            live: Cell::new(0),
            draining: Cell::new(false),
            finished_draining: Cell::new(0),
            cancelled_at_teardown: Cell::new(0),
            shutdown: CoreShutdown::new(shutdown),
            _not_send: PhantomData,
        }
    }

    fn schedule_local(&self, runnable: Runnable) {
        self.local.borrow_mut().push_back(runnable);
    }

    /// Spawns `future` on this executor and queues its first poll.
    pub(crate) fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let core = Arc::clone(&self.handle);
        let schedule = move |runnable: Runnable| {
            let mut runnable = Some(runnable);
            context::with(|ctx| {
                if Arc::ptr_eq(&ctx.executor.handle, &core)
                    && let Some(runnable) = runnable.take()
                {
                    ctx.executor.schedule_local(runnable);
                }
            });
            if let Some(runnable) = runnable {
                core.schedule_remote(runnable);
            }
        };
        // SAFETY: `spawn_unchecked`'s contract, point by point:
        // - The future may be `!Send`, so its `Runnable` must only be run or dropped on this
        //   thread. The schedule function queues a runnable woken here locally, and one woken on
        //   another thread in this core's injector, which only this thread pops;
        //   `CoreHandle::schedule_remote` forgets (leaks) a runnable the closed injector refuses
        //   rather than drop it there; `shutdown` cancels every task and drains both queues on
        //   this thread before closing the injector (waiting for a runnable another thread is
        //   still pushing), and a cancelled task is never scheduled again.
        //   `JoinHandle` may move to another thread, but dropping an unfinished task from there
        //   only schedules it, so its future is still dropped here.
        // - The future is `'static`, so nothing it borrows can expire first.
        // - The schedule function is `Send + Sync + 'static` (it holds an `Arc<CoreHandle>`), so
        //   the task's wakers may be used and dropped on any thread.
        // This replaces `spawn_local`, whose per-poll thread-id check cost about a tenth of a
        // spawn and 8 bytes a task (benches/micro).
        let (runnable, task) =
            unsafe { async_task::spawn_unchecked(task::TaskFuture::new(future), schedule) };
        self.live.set(self.live.get() + 1);
        if self.shutting_down.get() {
            // Nothing runs any more: cancel the task at once; its handle reports Cancelled.
            drop(runnable);
        } else {
            runnable.schedule();
        }
        JoinHandle::new(task)
    }

    /// Records the waker of a task that has just gone idle for the first time, so shutdown can
    /// reach it; returns its registry key. A task is registered only once it waits: one that
    /// finishes in its first poll never touches the registry, and one not yet polled sits in a
    /// run queue, which shutdown drains.
    pub(crate) fn register(&self, waker: &Waker) -> usize {
        self.registry.borrow_mut().insert(waker.clone())
    }

    /// Forgets a finished or dropped task (called by the task's own wrapper).
    pub(crate) fn unregister(&self, key: usize) {
        if let Ok(mut registry) = self.registry.try_borrow_mut() {
            registry.try_remove(key);
        }
    }

    /// Counts a task whose future was dropped, after finishing or not (called by the task's
    /// own wrapper): `Cell` arithmetic only.
    pub(crate) fn task_dropped(&self, finished: bool) {
        self.live.set(self.live.get().saturating_sub(1));
        if finished {
            if self.draining.get() {
                self.finished_draining.set(self.finished_draining.get() + 1);
            }
        } else if self.shutting_down.get() {
            self.cancelled_at_teardown
                .set(self.cancelled_at_teardown.get() + 1);
        }
    }

    /// Tasks spawned on this core and not yet finished or cancelled, the root included.
    pub(crate) fn live_tasks(&self) -> usize {
        self.live.get()
    }

    /// The core starts draining for a shutdown: tasks that finish from now on are counted,
    /// and the tasks of this core waiting for the request are woken.
    pub(crate) fn begin_drain(&self) {
        self.draining.set(true);
        self.shutdown.observe();
    }

    /// Tasks that finished while draining, and tasks cancelled by `shutdown`.
    pub(crate) fn shutdown_counts(&self) -> (usize, usize) {
        (
            self.finished_draining.get(),
            self.cancelled_at_teardown.get(),
        )
    }

    /// Takes the next task to poll: local tasks first, then tasks woken from other threads —
    /// except that every `remote_queue_interval`-th call looks at the injector first.
    ///
    /// Without that exception a local queue that never empties (two tasks that `yield_now` to
    /// each other: each requeues itself locally) would leave every task woken from another
    /// thread or core in the injector forever. With it, the injector's oldest task is taken at
    /// least once every `remote_queue_interval` calls, however full the local queue. The cost on
    /// the hot path is a `Cell` counter; the injector (atomics) is touched only on those calls
    /// and when the local queue is empty, as before.
    pub(crate) fn next_task(&self) -> Option<Runnable> {
        let tick = self.remote_tick.get() + 1;
        if tick >= self.remote_queue_interval {
            self.remote_tick.set(0);
            if let Some(runnable) = self.handle.pop_remote() {
                return Some(runnable);
            }
        } else {
            self.remote_tick.set(tick);
        }
        let mut local = self.local.borrow_mut();
        let next = local.pop_front();
        // A burst (a million tasks spawned at once) leaves the queue with a million slots;
        // give them back once it has drained, rather than keep them for the core's life.
        if local.is_empty() && local.capacity() > LOCAL_QUEUE_RETAINED {
            local.shrink_to(LOCAL_QUEUE_RETAINED);
        }
        drop(local);
        if next.is_some() {
            return next;
        }
        self.handle.pop_remote()
    }

    /// Runs up to [`JOBS_PER_TICK`] closures from the mailbox (each typically spawns a task).
    ///
    /// Busy tasks cannot starve the mailbox the way they could the injector: the core loop calls
    /// this at the top of every pass, and a pass polls at most `event_interval` tasks, however
    /// full the run queues are.
    pub(crate) fn run_mailbox(&self) {
        for _ in 0..JOBS_PER_TICK {
            match self.handle.pop_job() {
                Some(job) => job(),
                None => return,
            }
        }
    }

    /// Polls one task with a fresh `budget` (the core's, from its context).
    pub(crate) fn run_task(&self, runnable: Runnable, budget: &Budget) {
        budget.reset();
        runnable.run();
    }

    /// Whether a task is ready to poll now.
    pub(crate) fn has_ready_tasks(&self) -> bool {
        !self.local.borrow().is_empty() || self.handle.has_work()
    }

    /// Announces that the core is about to park. Returns false (and stays awake) when a task
    /// arrived meanwhile, in which case the core must not block.
    pub(crate) fn prepare_to_sleep(&self) -> bool {
        self.handle.prepare_to_sleep(|| self.has_ready_tasks())
    }

    /// Marks the core awake after parking.
    pub(crate) fn woke_up(&self) {
        self.handle.woke_up();
    }

    /// Cancels every task: each future is dropped on this thread, so the operations it had in
    /// flight become orphans the driver finishes. Afterwards remote wakes are no-ops and posts
    /// to the mailbox fail. Runs to the end whatever panics meanwhile (the `Drop` of a queued
    /// mailbox job); returns the first panic.
    ///
    /// A future whose own `Drop` panics aborts the process: async-task does that, since its
    /// task could not be torn down consistently otherwise.
    pub(crate) fn shutdown(&self) -> Option<Payload> {
        self.shutting_down.set(true);
        let mut deadline = None;
        loop {
            // Waking an idle task queues its runnable; dropping a runnable cancels its task,
            // whose future then leaves the registry. Clones, so that no borrow is held while
            // the futures drop.
            let wakers: Vec<Waker> = self
                .registry
                .borrow()
                .iter()
                .map(|(_, waker)| waker.clone())
                .collect();
            for waker in wakers {
                waker.wake();
            }
            let mut cancelled = false;
            while let Some(runnable) = self.next_task() {
                drop(runnable);
                cancelled = true;
            }
            let left = self.registry.borrow().len();
            if left == 0 {
                break;
            }
            if cancelled {
                continue;
            }
            // A task still registered that no queue holds is being woken by another thread
            // right now: async-task has marked it scheduled (so the wake above did nothing)
            // and its runnable is on its way into the injector. Closing the injector under
            // it would leak the task and all it holds, so wait for it, within reason.
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + REMOTE_WAKE_GRACE);
            if Instant::now() >= deadline {
                log::error!(
                    "coreio: {left} tasks were still being woken from other threads \
                     {REMOTE_WAKE_GRACE:?} into shutdown; leaking them"
                );
                break;
            }
            std::thread::yield_now();
        }
        self.handle.close()
    }
}

/// Spawns a task on the current core and returns a handle to await its output.
///
/// The future may be `!Send`: it runs on this core and never moves. Dropping the
/// [`JoinHandle`] detaches the task; [`JoinHandle::abort`] cancels it. A panic inside the task is
/// caught and reported through the handle, and the core keeps running.
///
/// ```
/// let n = coreio::block_on(async {
///     let handle = coreio::spawn(async { 40 + 2 });
///     handle.await.unwrap()
/// }).unwrap();
/// assert_eq!(n, 42);
/// ```
///
/// # Panics
///
/// When called outside a coreio runtime (there is no core to run the task on).
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    context::expect("coreio::spawn", |ctx| ctx.executor.spawn(future))
}

/// Yields once to the other tasks of this core, and to the I/O driver if the task was the only
/// one ready.
///
/// ```
/// coreio::block_on(async {
///     coreio::yield_now().await;
/// }).unwrap();
/// ```
pub async fn yield_now() {
    YieldNow { yielded: false }.await
}

struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
