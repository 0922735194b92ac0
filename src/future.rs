//! Waiting on two things at once: a line from a client or a message for it, whichever comes
//! first; both directions of a proxy, until both are done.
//!
//! These are futures-lite's combinators, re-exported so that the first program written on
//! coreio needs no other crate for them. They poll their futures in place, on the calling
//! task: nothing is spawned, and the future that loses a race is dropped, which cancels it
//! (coreio's operations are cancel-safe: a dropped read keeps what it had received for the
//! next read).
//!
//! - [`or`]: the first of two futures with the same output; polls the first one first.
//! - [`race`]: the same, choosing at random which to poll first, so neither starves.
//! - [`zip`]: both outputs, as a pair; [`try_zip`]: both `Ok` outputs, or the first error.
//! - [`poll_fn`], [`pending`], [`ready`], [`yield_now`](crate::yield_now) for hand-written ones.
//!
//! ```
//! use std::time::Duration;
//!
//! use coreio::future::{or, zip};
//! use coreio::time::sleep;
//!
//! # coreio::block_on(async {
//! // Whichever comes first: here the timer beats a message that never arrives.
//! let message = async {
//!     std::future::pending::<()>().await;
//!     "a message"
//! };
//! let tick = async {
//!     sleep(Duration::from_millis(5)).await;
//!     "a tick"
//! };
//! assert_eq!(or(message, tick).await, "a tick");
//!
//! // Both: two waits side by side take as long as the longer one.
//! let (a, b) = zip(sleep(Duration::from_millis(5)), async { 42 }).await;
//! assert_eq!((a, b), ((), 42));
//! # }).unwrap();
//! ```
//!
//! For more than two futures, or for many tasks, [`JoinSet`](crate::JoinSet) awaits spawned
//! tasks in the order they finish.

pub use futures_lite::future::{or, pending, poll_fn, race, ready, try_zip, zip};
