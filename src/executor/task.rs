//! The wrapper every spawned future runs inside.
//!
//! [`TaskFuture`] catches a panic of the future it wraps (so the core survives and the
//! [`JoinHandle`](super::JoinHandle) can report it) and removes the task from its executor's
//! registry when the future completes or is dropped. The task joins the registry the first time
//! its future returns `Pending` (a task that completes in its first poll costs the registry
//! nothing). When the future is dropped it tells the executor whether it had finished, for the
//! shutdown report's counts.

// A `TaskFuture` must never hold anything across polls beyond the wrapped future and its registry
// key.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::context;
use crate::panic::Payload;

/// The low bits of `TaskFuture::state` for a task not in the registry (it has not waited yet).
const UNREGISTERED: usize = usize::MAX >> 1;
/// The bit of `TaskFuture::state` set once the future completed (returned or panicked).
const FINISHED: usize = !UNREGISTERED;

pub(crate) struct TaskFuture<F> {
    future: F,
    /// The task's key in its executor's registry once it has waited ([`UNREGISTERED`] before),
    /// with the [`FINISHED`] bit once the future completed: one word, and no thread-local
    /// access on completion (slab keys never come near the top bit).
    state: usize,
}

impl<F> TaskFuture<F> {
    pub(crate) fn new(future: F) -> Self {
        TaskFuture {
            future,
            state: UNREGISTERED,
        }
    }
}

impl<F: Future> Future for TaskFuture<F> {
    type Output = Result<F::Output, Payload>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned: it is never moved out of `self` (only
        // `state`, which is not pinned, is written below), and `TaskFuture` has no
        // `Unpin` impl of its own beyond the auto trait.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above; `this.future` stays where it is.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        // The future is not used again after a panic (the task completes with the payload), so
        // observing it in a broken state is impossible.
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => {
                if this.state == UNREGISTERED
                    && let Some(key) = context::with(|ctx| ctx.executor.register(cx.waker()))
                {
                    this.state = key;
                }
                Poll::Pending
            }
            Ok(Poll::Ready(output)) => {
                this.state |= FINISHED;
                Poll::Ready(Ok(output))
            }
            Err(payload) => {
                this.state |= FINISHED;
                Poll::Ready(Err(payload))
            }
        }
    }
}

impl<F> Drop for TaskFuture<F> {
    fn drop(&mut self) {
        // async-task drops the future right after it completes, or when the task is cancelled.
        let key = self.state & UNREGISTERED;
        let finished = self.state & FINISHED != 0;
        context::with(|ctx| {
            if key != UNREGISTERED {
                ctx.executor.unregister(key);
            }
            ctx.executor.task_dropped(finished);
        });
    }
}
