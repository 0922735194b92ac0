//! The one door through which cross-thread code reaches atomics, locks and `Arc`.
//!
//! Every atomic, `Mutex` and `Arc` that more than one thread touches is imported from here, never
//! from `std::sync` directly, so that a `--cfg loom` build swaps them all for loom's models and a
//! loom test can explore every interleaving of the code that uses them. In a normal build these
//! are plain re-exports of `std::sync`, at no cost. This module owns the list of re-exports and
//! nothing else; it must never wrap or change the types' behaviour.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
