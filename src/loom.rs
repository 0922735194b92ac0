//! The one door through which cross-thread code reaches atomics, locks, `Arc` and the threads
//! it starts.
//!
//! Every atomic, `Mutex` and `Arc` that more than one thread touches is imported from here, never
//! from `std::sync` directly, so that a `--cfg loom` build swaps them all for loom's models and a
//! loom test can explore every interleaving of the code that uses them. In a normal build these
//! are plain re-exports of `std::sync`, at no cost.
//!
//! The models live beside the code they check, in `loom_tests` modules (`core/sleep.rs`,
//! `core/handle.rs`, `mesh/channel/loom_tests.rs`, `mesh/reply.rs`, `sync/event.rs`,
//! `blocking/slot.rs`). Run them with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom_`.

// This module owns the list of re-exports and, for the loom tests, the way they run a model; it
// must never wrap or change the types' behaviour.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread;

/// Runs a loom model that explores every interleaving with at most `preemption_bound`
/// preemptions (`None`: all of them), unless `LOOM_MAX_PREEMPTIONS` is set, which wins (set it
/// to search deeper than the bound a model picked to stay fast).
///
/// Lost wakeups in these protocols need two or three untimely thread switches. A model with two
/// threads is checked exhaustively or with a bound of 3; one with three threads, whose full
/// search takes minutes, with a bound of 2 (tokio's CI bound for its loom models).
#[cfg(all(test, loom))]
pub(crate) fn model(preemption_bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        builder.preemption_bound = preemption_bound;
    }
    builder.check(f);
}
