//! [`CoreHandle`]: the part of a core that other threads reach.
//!
//! Two lock-free queues ([`concurrent_queue`]) lead into the core: the injector, through which
//! a waker fired on another thread hands its task back, and the mailbox, through which another
//! core (or any thread) posts a closure for the core to run. A push into either is followed by
//! [`SleepFlag::notify`]; only the thread whose notify finds the core asleep delivers a wake,
//! through the core's [`WakeTarget`]. The core's side — popping, announcing a sleep, closing —
//! runs on the core's thread and is called by its executor and its runtime.
//!
//! Closing is the other half of the protocol: a core that stops closes both queues and drops
//! the jobs still queued, each under `catch_unwind`. From then on a post is refused and the
//! job handed back to its sender, so no sender waits on a core that will never run its job:
//! a job queued before the close is dropped by it (which resolves its reply), one posted after
//! it is refused. The `loom_tests` module below checks that race.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use async_task::Runnable;
use concurrent_queue::ConcurrentQueue;

use super::sleep::SleepFlag;
use crate::driver::WakeTarget;
use crate::panic::Payload;

/// A closure posted to a core's mailbox, run there by the core loop.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// What other threads may touch of one core: its injector, its mailbox, its sleep flag and
/// its wake target. `Send + Sync`, shared through an `Arc` by the mesh, the core's executor
/// and every waker of the core's tasks.
pub(crate) struct CoreHandle {
    injector: ConcurrentQueue<Runnable>,
    mailbox: ConcurrentQueue<Job>,
    sleeping: SleepFlag,
    /// In an `Arc` of its own: a `MSG_RING` in flight keeps it (to fall back to the eventfd).
    wake: Arc<WakeTarget>,
}

impl CoreHandle {
    /// The handle of a core that has not started: open queues, awake, no ring yet.
    pub(crate) fn new() -> io::Result<CoreHandle> {
        Ok(CoreHandle {
            injector: ConcurrentQueue::unbounded(),
            mailbox: ConcurrentQueue::unbounded(),
            sleeping: SleepFlag::new(),
            wake: Arc::new(WakeTarget::new()?),
        })
    }

    /// How other threads wake the core; its driver watches the eventfd and publishes its ring.
    pub(crate) fn wake_target(&self) -> &WakeTarget {
        &self.wake
    }

    /// Queues a task woken on a thread that is not this core's.
    pub(crate) fn schedule_remote(&self, runnable: Runnable) {
        match self.injector.push(runnable) {
            Ok(()) => self.notify(),
            // The core has shut down. Every task was cancelled before the injector closed, and
            // a cancelled task is never scheduled again, so this cannot happen; if it did,
            // leaking the task is the only safe choice, because its `!Send` future must not be
            // dropped on this thread.
            Err(err) => std::mem::forget(err.into_inner()),
        }
    }

    /// Posts `job` to the core's mailbox; gives it back when the core has shut down.
    pub(crate) fn post(&self, job: Job) -> Result<(), Job> {
        match self.mailbox.push(job) {
            Ok(()) => {
                self.notify();
                Ok(())
            }
            Err(err) => Err(err.into_inner()),
        }
    }

    /// Wakes the core if it sleeps, and only the first caller after it went to sleep.
    fn notify(&self) {
        if self.sleeping.notify() {
            self.wake.wake();
        }
    }

    /// The core's side: the oldest task woken from another thread.
    #[inline]
    pub(crate) fn pop_remote(&self) -> Option<Runnable> {
        self.injector.pop().ok()
    }

    /// The core's side: the oldest job posted to the mailbox.
    #[inline]
    pub(crate) fn pop_job(&self) -> Option<Job> {
        self.mailbox.pop().ok()
    }

    /// Whether a task or a job waits in the injector or the mailbox.
    #[inline]
    pub(crate) fn has_work(&self) -> bool {
        !self.injector.is_empty() || !self.mailbox.is_empty()
    }

    /// The core's side: announces that the core is about to park, then asks `has_work` (the
    /// core's local queue, and [`has_work`](CoreHandle::has_work)) whether work arrived
    /// meanwhile. True when the core may block; false when it must not.
    #[inline]
    pub(crate) fn prepare_to_sleep(&self, has_work: impl FnOnce() -> bool) -> bool {
        self.sleeping.prepare_to_sleep(has_work)
    }

    /// The core's side: marks the core awake after parking.
    #[inline]
    pub(crate) fn woke_up(&self) {
        self.sleeping.woke_up();
    }

    /// Whether the core has stopped (or never started): posts to it fail.
    pub(crate) fn is_closed(&self) -> bool {
        self.mailbox.is_closed()
    }

    /// Refuses further tasks and jobs, and drops the jobs still queued (their senders see the
    /// core gone). Called on the core's thread when it stops, or by the runtime for a core that
    /// never started. A job whose `Drop` panics does not keep the others: they are all dropped,
    /// and the first panic is returned.
    pub(crate) fn close(&self) -> Option<Payload> {
        self.injector.close();
        self.mailbox.close();
        let mut first_panic = None;
        while let Ok(job) = self.mailbox.pop() {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(job))) {
                first_panic.get_or_insert(payload);
            }
        }
        first_panic
    }
}

// Compile-time contract (STYLE.md rule 7): the handle is reached from every thread that wakes the
// core or posts to it.
const _: () = {
    fn send_and_sync<T: Send + Sync>() {}
    let _ = send_and_sync::<CoreHandle>;
};

#[cfg(all(test, loom))]
mod loom_tests {
    //! Posts racing the core's close, on the real handle: its queues are `concurrent_queue`'s
    //! under that crate's `loom` feature, so loom explores their atomics too. Every job holds a
    //! clone of one loom `Arc` and counts its run; once all threads are done, a job that was
    //! neither run, nor dropped by the close, nor handed back to its poster still holds its
    //! clone. The core is never asleep here, so a post delivers no wake: that half of the
    //! protocol is `sleep.rs`'s model.

    use std::sync::Arc;

    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::thread;

    use super::{CoreHandle, Job};

    /// `posters` threads post a job each while the core, as a stopping core does, serves its
    /// mailbox once and then closes it. Each job must be run, or dropped by the close, or handed
    /// back to its poster: exactly one of them.
    fn posts_race_close(posters: usize) {
        let core = Arc::new(CoreHandle::new().unwrap());
        let token = loom::sync::Arc::new(());
        let ran = loom::sync::Arc::new(AtomicUsize::new(0));
        let posters: Vec<_> = (0..posters)
            .map(|_| {
                let core = Arc::clone(&core);
                let (token, ran) = (token.clone(), ran.clone());
                let job: Job = Box::new(move || {
                    ran.fetch_add(1, Ordering::Relaxed);
                    drop(token);
                });
                thread::spawn(move || core.post(job).is_ok())
            })
            .collect();
        while let Some(job) = core.pop_job() {
            job();
        }
        assert!(core.close().is_none());
        assert!(core.is_closed());
        let accepted: usize = posters
            .into_iter()
            .map(|poster| usize::from(poster.join().unwrap()))
            .sum();
        assert!(
            ran.load(Ordering::Relaxed) <= accepted,
            "a refused job ran, or a job ran twice"
        );
        assert_eq!(
            loom::sync::Arc::strong_count(&token),
            1,
            "a job was neither run, dropped by the close, nor handed back"
        );
        assert!(
            core.post(Box::new(|| {})).is_err(),
            "a closed core took a post"
        );
    }

    /// One poster against the core: every interleaving.
    #[test]
    fn loom_handle_post_races_close() {
        crate::loom::model(None, || posts_race_close(1));
    }

    /// Two posters against the core (three threads: a preemption bound of 2).
    #[test]
    fn loom_handle_two_posts_race_close() {
        crate::loom::model(Some(2), || posts_race_close(2));
    }
}
