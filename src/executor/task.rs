//! The wrapper every spawned future runs inside.
//!
//! [`TaskFuture`] catches a panic of the future it wraps (so the core survives and the
//! [`JoinHandle`](super::JoinHandle) can report it) and removes the task from its executor's
//! registry when the future completes or is dropped. It must never hold anything across polls
//! beyond the wrapped future and its registry key.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::context;

/// A caught panic's payload, as `std::panic::catch_unwind` returns it.
pub(crate) type Payload = Box<dyn Any + Send + 'static>;

pub(crate) struct TaskFuture<F> {
    future: F,
    registry_key: usize,
}

impl<F> TaskFuture<F> {
    pub(crate) fn new(future: F, registry_key: usize) -> Self {
        TaskFuture {
            future,
            registry_key,
        }
    }
}

impl<F: Future> Future for TaskFuture<F> {
    type Output = Result<F::Output, Payload>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned: it is never moved out of `self`, and
        // `TaskFuture` has no `Unpin` impl of its own beyond the auto trait.
        let future = unsafe { self.map_unchecked_mut(|this| &mut this.future) };
        // The future is not used again after a panic (the task completes with the payload), so
        // observing it in a broken state is impossible.
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

impl<F> Drop for TaskFuture<F> {
    fn drop(&mut self) {
        let key = self.registry_key;
        context::with(|ctx| ctx.executor.unregister(key));
    }
}
