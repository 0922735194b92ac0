//! A caught panic: [`Payload`], what `catch_unwind` returns, and [`message`], its text.
//!
//! Panics are caught in many places (a task's poll, a submitted closure, a waker the driver
//! wakes, a job's `Drop` at shutdown) and reported through several error types (`JoinError`,
//! `MailboxError`, `CoreError`). They all carry this one type, and read its message the same
//! way.

// This module sits below every other so that any of them can name a payload without importing the
// executor; it owns the type and nothing else, and must never catch, resume or drop a panic itself.

use std::any::Any;

/// A caught panic's payload, as `std::panic::catch_unwind` returns it.
pub(crate) type Payload = Box<dyn Any + Send + 'static>;

/// The panic message, when the payload is a string, as most panics' payloads are (a `&str`
/// for a literal message, a `String` for a formatted one).
pub(crate) fn message(payload: &Payload) -> Option<&str> {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}
