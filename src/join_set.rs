//! [`JoinSet`]: a group of tasks on the current core, awaited in the order they finish and
//! aborted together when the set is dropped.

// Each task is spawned wrapped in a future that owns a `Finished` guard. The guard's `Drop`
// (the task completed, panicked or was cancelled: its future is dropped in every case) queues
// the task's key in the set's shared `done` list and wakes the task awaiting `join_next`, so
// finding the next finished task costs O(1), not a poll of every handle. The list is `Rc`
// shared with a `Weak` in each guard: a set dropped first is simply not told. Nothing here is
// `Send`: the tasks, the set and the list all live on one core.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use slab::Slab;

use crate::{JoinError, JoinHandle};

/// Tasks spawned on the current core as a group: [`join_next`](JoinSet::join_next) gives the
/// output of whichever finishes first, and dropping the set aborts those still running.
///
/// Like [`spawn`](crate::spawn), the futures may be `!Send`; the set itself stays on its core.
///
/// ```
/// use std::time::Duration;
///
/// let order = coreio::block_on(async {
///     let mut set = coreio::JoinSet::new();
///     for ms in [30u64, 10, 20] {
///         set.spawn(async move {
///             coreio::time::sleep(Duration::from_millis(ms)).await;
///             ms
///         });
///     }
///     let mut order = Vec::new();
///     while let Some(done) = set.join_next().await {
///         order.push(done.unwrap());
///     }
///     order
/// })
/// .unwrap();
/// assert_eq!(order, [10, 20, 30]);
/// ```
pub struct JoinSet<T> {
    tasks: Slab<JoinHandle<T>>,
    done: Rc<Done>,
}

/// The keys of finished tasks, in the order they finished, and who waits for them.
#[derive(Default)]
struct Done {
    keys: RefCell<VecDeque<usize>>,
    waiter: Cell<Option<Waker>>,
}

/// Lives in a task's future; reports the task's end to its set when dropped.
struct Finished {
    key: usize,
    done: Weak<Done>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        if let Some(done) = self.done.upgrade() {
            done.keys.borrow_mut().push_back(self.key);
            if let Some(waker) = done.waiter.take() {
                waker.wake();
            }
        }
    }
}

impl<T: 'static> JoinSet<T> {
    /// An empty set.
    pub fn new() -> JoinSet<T> {
        JoinSet {
            tasks: Slab::new(),
            done: Rc::default(),
        }
    }

    /// Spawns `future` on the current core as a member of this set.
    ///
    /// # Panics
    ///
    /// Outside a coreio runtime, as [`spawn`](crate::spawn) does.
    #[track_caller]
    pub fn spawn<F>(&mut self, future: F)
    where
        F: Future<Output = T> + 'static,
    {
        let entry = self.tasks.vacant_entry();
        let finished = Finished {
            key: entry.key(),
            done: Rc::downgrade(&self.done),
        };
        entry.insert(crate::spawn(async move {
            let _finished = finished;
            future.await
        }));
    }

    /// The number of tasks in the set: running, or finished and not yet joined.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether the set holds no task.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Waits for the next task to finish and gives its output (or why there is none); `None`
    /// when the set is empty. Cancel-safe: dropping the future loses no output.
    pub async fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        poll_fn(|cx| self.poll_join_next(cx)).await
    }

    /// The output of a task that has finished already, without waiting; `None` if none has
    /// (or the set is empty).
    pub fn try_join_next(&mut self) -> Option<Result<T, JoinError>> {
        match self.poll_join_next(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => output,
            Poll::Pending => None,
        }
    }

    /// [`join_next`](JoinSet::join_next) as a poll function.
    pub fn poll_join_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, JoinError>>> {
        if self.tasks.is_empty() {
            return Poll::Ready(None);
        }
        loop {
            let Some(key) = self.done.keys.borrow_mut().pop_front() else {
                self.done.waiter.set(Some(cx.waker().clone()));
                return Poll::Pending;
            };
            let Some(handle) = self.tasks.get_mut(key) else {
                // Not ours: cannot happen (a key is reused only after it was joined), but a
                // stale key must not take another task's output.
                continue;
            };
            // The guard is dropped inside the task's last poll, so by the time this runs the
            // task has stored its output (or its panic, or its cancellation).
            match Pin::new(handle).poll(cx) {
                Poll::Ready(output) => {
                    self.tasks.remove(key);
                    return Poll::Ready(Some(output));
                }
                Poll::Pending => {
                    // Not stored yet after all: keep it first; the handle wakes us.
                    self.done.keys.borrow_mut().push_front(key);
                    return Poll::Pending;
                }
            }
        }
    }

    /// Waits for every task and gives their outputs in the order they finished.
    pub async fn join_all(mut self) -> Vec<Result<T, JoinError>> {
        let mut outputs = Vec::with_capacity(self.len());
        while let Some(output) = self.join_next().await {
            outputs.push(output);
        }
        outputs
    }

    /// Aborts every task in the set. They stay in it until joined, each giving
    /// [`JoinError::Cancelled`] (or its output, if it had finished).
    pub fn abort_all(&mut self) {
        for (_, handle) in &self.tasks {
            handle.abort();
        }
    }

    /// Aborts every task and waits until each has been dropped; the set is empty afterwards.
    pub async fn shutdown(&mut self) {
        self.abort_all();
        while self.join_next().await.is_some() {}
    }
}

impl<T: 'static> Default for JoinSet<T> {
    fn default() -> JoinSet<T> {
        JoinSet::new()
    }
}

impl<T> Drop for JoinSet<T> {
    /// Aborts the tasks still running.
    fn drop(&mut self) {
        for (_, handle) in &self.tasks {
            handle.abort();
        }
    }
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet")
            .field("len", &self.tasks.len())
            .finish_non_exhaustive()
    }
}
