//! A core as everything outside it sees it: its name ([`CoreId`]) and its cross-thread handle
//! ([`CoreHandle`]).
//!
//! A core's executor, driver and timers are `!Send` and live in its thread's context; what
//! other threads may touch is gathered in one `Send + Sync` [`CoreHandle`]: the injector that
//! wakers on other threads hand tasks back through, the mailbox that other cores post closures
//! to, the sleep handshake (`sleep.rs`, with its loom model) that decides whether a push must
//! wake the core, and the core's wake target (whose delivery, a `MSG_RING` or an eventfd
//! write, is the driver's call). The runtime builds every core's handle before any core
//! starts, and the mesh keeps them in one table, so a core can be addressed before its thread
//! runs; the executor is given its own core's handle and pops what arrives there.

// This module owns those queues, the handshake and the closing of a core's doors. It must never run
// a task or a job (the executor does, on the core's thread), never hold anything `!Send`, and never
// block.

mod handle;
mod id;
mod sleep;

pub(crate) use handle::CoreHandle;
pub use id::CoreId;
