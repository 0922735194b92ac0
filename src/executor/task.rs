//! The wrapper every spawned future runs inside.
//!
//! [`TaskFuture`] catches a panic of the future it wraps (so the core survives and the
//! [`JoinHandle`](super::JoinHandle) can report it) and removes the task from its executor's
//! registry when the future completes or is dropped. The task joins the registry the first time
//! its future returns `Pending` (a task that completes in its first poll costs the registry
//! nothing). It must never hold anything across polls beyond the wrapped future and its
//! registry key.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::context;
use crate::panic::Payload;

pub(crate) struct TaskFuture<F> {
    future: F,
    /// The task's key in its executor's registry, once it has waited.
    registry_key: Option<usize>,
}

impl<F> TaskFuture<F> {
    pub(crate) fn new(future: F) -> Self {
        TaskFuture {
            future,
            registry_key: None,
        }
    }
}

impl<F: Future> Future for TaskFuture<F> {
    type Output = Result<F::Output, Payload>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned: it is never moved out of `self` (only
        // `registry_key`, which is not pinned, is written below), and `TaskFuture` has no
        // `Unpin` impl of its own beyond the auto trait.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above; `this.future` stays where it is.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        // The future is not used again after a panic (the task completes with the payload), so
        // observing it in a broken state is impossible.
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => {
                if this.registry_key.is_none() {
                    this.registry_key = context::with(|ctx| ctx.executor.register(cx.waker()));
                }
                Poll::Pending
            }
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

impl<F> Drop for TaskFuture<F> {
    fn drop(&mut self) {
        if let Some(key) = self.registry_key {
            context::with(|ctx| ctx.executor.unregister(key));
        }
    }
}
