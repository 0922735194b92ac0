//! [`JoinHandle`]: awaiting, detaching and aborting a spawned task.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use async_task::FallibleTask;

use crate::panic::{self, Payload};

/// Why a task produced no output.
///
/// Not `Sync` (a panic payload is `Box<dyn Any + Send>`), so `io::Error::other(err)` does not
/// take it: convert with `io::Error::from(err)` or `?` in a function returning `io::Result`
/// (kind `Other`, message the `Display`), and get it back, payload included, with
/// [`JoinError::from_io_error`].
///
/// ```
/// use std::io;
/// let err = coreio::block_on(async {
///     coreio::spawn(async { panic!("boom") }).await.unwrap_err()
/// })
/// .unwrap();
/// let io_err = io::Error::from(err);
/// assert_eq!(io_err.to_string(), "task panicked: boom");
/// let back = coreio::JoinError::from_io_error(io_err).unwrap();
/// assert_eq!(back.panic_message(), Some("boom"));
/// assert!(back.into_panic().is_some());
/// ```
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

    /// The `JoinError` inside an `io::Error` made from one (`From<JoinError>`), payload and
    /// all; any other `io::Error` is given back unchanged.
    pub fn from_io_error(error: io::Error) -> Result<JoinError, io::Error> {
        if !error
            .get_ref()
            .is_some_and(|inner| inner.is::<SyncJoinError>())
        {
            return Err(error);
        }
        match error
            .into_inner()
            .map(|inner| inner.downcast::<SyncJoinError>())
        {
            Some(Ok(sync)) => Ok(sync.into_join_error()),
            // Checked just above; rebuild rather than panic should that ever change.
            Some(Err(inner)) => Err(io::Error::other(inner)),
            None => Err(io::Error::other("JoinError::from_io_error: no inner error")),
        }
    }

    /// The same error as a `Send + Sync` value, which an `io::Error` can hold.
    fn into_sync(self) -> SyncJoinError {
        match self {
            JoinError::Panicked(payload) => SyncJoinError {
                message: panic::message(&payload).map(str::to_owned),
                payload: Some(Mutex::new(payload)),
            },
            JoinError::Cancelled => SyncJoinError {
                message: None,
                payload: None,
            },
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

/// A [`JoinError`] that is `Send + Sync`: what the [`io::Error`] made from a `JoinError`
/// holds ([`JoinError::from_io_error`] gives the `JoinError` back).
///
/// The panic message is copied out of the payload when it is made, so the `&self` methods never
/// touch the payload; the payload itself sits in a `Mutex` that nothing locks (it is only ever
/// taken by value, [`into_panic`](SyncJoinError::into_panic)), which is what makes the type
/// `Sync` without `unsafe`: no shared reference to a payload that may not be `Sync` is ever
/// handed out.
pub(crate) struct SyncJoinError {
    /// The panic message, when the payload was a string.
    message: Option<String>,
    /// `Some` when the task panicked, `None` when it was cancelled.
    payload: Option<Mutex<Payload>>,
}

impl SyncJoinError {
    fn is_panic(&self) -> bool {
        self.payload.is_some()
    }

    fn panic_message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    fn into_panic(self) -> Option<Payload> {
        // Nothing ever locks the mutex, so it cannot be poisoned; take the value either way.
        self.payload
            .map(|payload| payload.into_inner().unwrap_or_else(PoisonError::into_inner))
    }

    fn into_join_error(self) -> JoinError {
        match self.into_panic() {
            Some(payload) => JoinError::Panicked(payload),
            None => JoinError::Cancelled,
        }
    }
}

impl fmt::Debug for SyncJoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_panic() {
            f.debug_tuple("Panicked")
                .field(&self.panic_message().unwrap_or("<non-string payload>"))
                .finish()
        } else {
            f.write_str("Cancelled")
        }
    }
}

impl fmt::Display for SyncJoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.panic_message() {
            Some(msg) => write!(f, "task panicked: {msg}"),
            None if self.is_panic() => f.write_str("task panicked"),
            None => f.write_str("task was cancelled"),
        }
    }
}

impl std::error::Error for SyncJoinError {}

/// A panic or a cancellation is [`Other`](io::ErrorKind::Other) (never `Interrupted`, which
/// callers retry); the message is the error's `Display`, and the inner error a
/// `Send + Sync` wrapper that still holds the payload ([`JoinError::from_io_error`]).
impl From<JoinError> for io::Error {
    fn from(error: JoinError) -> io::Error {
        io::Error::other(error.into_sync())
    }
}

// Compile-time contract (STYLE.md rule 7): the converted error crosses threads freely.
const _: () = {
    fn send_sync<T: Send + Sync>() {}
    let _ = send_sync::<SyncJoinError>;
};

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
