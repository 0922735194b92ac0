//! Synchronisation that crosses cores, and what to use between the tasks of one core.
//!
//! [`Event`] is set once, from any thread, and wakes every task (on any core) waiting for it.
//! Values travel between cores through [`mesh::channel`](crate::mesh::channel) and
//! [`mesh::submit_to`](crate::mesh::submit_to).
//!
//! # Between the tasks of one core
//!
//! A core's tasks never run in parallel, so plain `Rc<RefCell<_>>` state needs no lock as long
//! as no borrow is held across an `.await`. Where a task must hold something across an await,
//! or wait for another task, the runtime-agnostic primitives of the ecosystem work on coreio
//! unchanged (they only need wakers), and coreio does not copy them:
//!
//! | need | use |
//! | --- | --- |
//! | a lock held across `.await`, shared or exclusive | `tokio::sync::{Mutex, RwLock}` or `async-lock` |
//! | at most N at once (connections to a backend) | `tokio::sync::Semaphore` or `async-lock::Semaphore` |
//! | wake one or all waiting tasks | `tokio::sync::Notify` or `event-listener` |
//! | one value, once | `tokio::sync::oneshot` or `futures-channel::oneshot` |
//! | a queue with backpressure | `tokio::sync::mpsc` or `async-channel` |
//! | the latest value, watched | `tokio::sync::watch` |
//! | spawn many, await the next, abort on drop | [`JoinSet`](crate::JoinSet) |
//! | either of two, or both | [`future::or`](crate::future::or), [`future::zip`](crate::future::zip) |
//!
//! tokio's need only its `sync` feature, not its runtime (`tokio = { version = "1",
//! default-features = false, features = ["sync"] }`); tests/sync_local.rs runs each of them
//! between tasks of a coreio core, on both backends. They use atomics even where one thread
//! touches them: an uncontended atomic costs a few nanoseconds, and coreio will ship `!Send`
//! versions only where a benchmark shows that matters for a real workload.

// This module owns the primitives that may be shared between cores (and with plain threads).
// It must never block a core thread: waiting is always a future.

mod event;

pub use event::{Event, EventWait};
