//! [`JoinHandle`]: awaiting, detaching and aborting a spawned task.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_task::FallibleTask;

use crate::panic::{self, Payload};

/// Why a task produced no output.
pub enum JoinError {
    /// The task panicked; the payload is what `panic!` was given.
    Panicked(Payload),
    /// The task was cancelled by [`JoinHandle::abort`] or by its core shutting down.
    Cancelled,
}

impl JoinError {
    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
    }

    /// Whether the task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled)
    }

    /// The panic payload, if the task panicked.
    pub fn into_panic(self) -> Option<Payload> {
        match self {
            JoinError::Panicked(payload) => Some(payload),
            JoinError::Cancelled => None,
        }
    }

    /// The panic message when the payload is a string, as most panics' payloads are.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            JoinError::Panicked(payload) => panic::message(payload),
            JoinError::Cancelled => None,
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(_) => f
                .debug_tuple("Panicked")
                .field(&self.panic_message().unwrap_or("<non-string payload>"))
                .finish(),
            JoinError::Cancelled => f.write_str("Cancelled"),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.panic_message() {
            Some(msg) => write!(f, "task panicked: {msg}"),
            None if self.is_panic() => f.write_str("task panicked"),
            None => f.write_str("task was cancelled"),
        }
    }
}

impl std::error::Error for JoinError {}

/// An owned permission to await a spawned task's output.
///
/// Awaiting it gives `Ok(output)`, or a [`JoinError`] when the task panicked or was cancelled.
/// Dropping it detaches the task, which keeps running.
pub struct JoinHandle<T> {
    /// `None` once the handle has aborted the task.
    task: Cell<Option<FallibleTask<Result<T, Payload>>>>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(task: async_task::Task<Result<T, Payload>>) -> Self {
        JoinHandle {
            task: Cell::new(Some(task.fallible())),
        }
    }

    /// Cancels the task: its future is dropped before it is polled again, and awaiting this
    /// handle gives [`JoinError::Cancelled`]. A task that already finished keeps its output.
    pub fn abort(&self) {
        if let Some(task) = self.task.take() {
            if task.is_finished() {
                self.task.set(Some(task));
            } else {
                // Dropping an unfinished task cancels it.
                drop(task);
            }
        }
    }

    /// Whether the task has finished (completed, panicked or been cancelled).
    pub fn is_finished(&self) -> bool {
        match self.task.take() {
            Some(task) => {
                let finished = task.is_finished();
                self.task.set(Some(task));
                finished
            }
            None => true,
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.detach();
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(task) = self.get_mut().task.get_mut() else {
            return Poll::Ready(Err(JoinError::Cancelled));
        };
        match Pin::new(task).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(output))) => Poll::Ready(Ok(output)),
            Poll::Ready(Some(Err(payload))) => Poll::Ready(Err(JoinError::Panicked(payload))),
            Poll::Ready(None) => Poll::Ready(Err(JoinError::Cancelled)),
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
