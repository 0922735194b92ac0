//! Synchronisation that crosses cores.
//!
//! This module owns the primitives that may be shared between cores (and with plain threads);
//! per-core code needs none, since a core's tasks never run in parallel. It must never block a
//! core thread: waiting is always a future.

mod event;

pub use event::{Event, EventWait};
