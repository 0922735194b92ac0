//! Counters of the current core, for operators and benchmarks.
//!
//! [`ring`] reads the io_uring ring's completion-queue counters: how often the completion queue
//! overflowed, which means the ring is too small for the core's load (see
//! [`Builder::ring_entries`](crate::Builder::ring_entries)).
//!
//! ```
//! coreio::block_on(async {
//!     if let Some(stats) = coreio::stats::ring() {
//!         assert!(stats.completion_queue_entries > 0);
//!         println!("{} overflows so far", stats.completion_queue_overflows);
//!     }
//! })
//! .unwrap();
//! ```

// This module owns the public shape of the counters; the drivers own the counting. More counters
// (per-core task and I/O figures) belong here too.

use crate::context;

/// The current core's io_uring completion-queue counters, since the core started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingStats {
    /// Entries in the completion queue (twice the submission queue's, `Builder::ring_entries`).
    pub completion_queue_entries: u32,
    /// How many times the core found its completion queue overflowed: more completions were
    /// ready than it holds. The kernel keeps the extra ones in a backlog (nothing is lost) and
    /// the core flushes it, but that is a slow path: a ring that overflows under its usual
    /// load should be made larger.
    pub completion_queue_overflows: u64,
    /// Completions the kernel dropped (its `cq_overflow` counter): zero unless the kernel could
    /// not allocate its backlog. A completion dropped is an operation whose result never came.
    pub completions_dropped: u64,
    /// Stream writes made as zero-copy sends (`Builder::zero_copy_sends`).
    pub zero_copy_sends: u64,
    /// A kernel thread polls the ring's submission queue (`Builder::sqpoll`, when the kernel
    /// allowed it).
    pub sqpoll: bool,
    /// The CPU the kernel bound that thread to (`Builder::sqpoll_cpus`); `None` when it is
    /// not bound (not asked, or refused: the warning in the log says why).
    pub sqpoll_cpu: Option<usize>,
    /// That thread is another core's, shared by this core's ring (`Builder::sqpoll_shared`).
    pub sqpoll_shared: bool,
    /// Slots in the ring's registered file table (`Builder::registered_files`); zero when it
    /// has none (switched off, or refused by the kernel).
    pub file_table_slots: u32,
    /// Sockets registered in that table now: their operations skip the kernel's descriptor
    /// lookup. A slot whose emptying update has not completed still counts.
    pub registered_files: u32,
}

/// The counters of the calling core's io_uring ring; `None` outside a runtime or on epoll.
pub fn ring() -> Option<RingStats> {
    context::with(|ctx| ctx.driver.ring_stats()).flatten()
}
