//! Waking a sleeping core from another thread: [`WakeTarget`], and the choice between a
//! `MSG_RING` and an eventfd write ([`Driver::wake_core`], [`WakeTarget::wake`]).
//!
//! Every core has an eventfd that its own driver watches (a poll kept armed on io_uring, an
//! edge-triggered registration on epoll), so writing it wakes the core whatever backend it runs
//! and whoever writes. Between two io_uring cores a cheaper wake exists: the waker's own ring
//! submits an `IORING_OP_MSG_RING`, which posts a completion straight into the sleeper's ring
//! (no eventfd read, no poll re-arm there), in one `io_uring_enter` that neither waits nor
//! reaps. So a wake is decided here, by the driver of the thread that wakes: a `MSG_RING` when
//! that thread is an io_uring core able to send one now and the target published its ring,
//! the eventfd otherwise (a plain thread, an epoll core, a kernel without `MSG_RING`, a ring
//! busy dispatching completions, or a message that failed).

// This module owns a core's wake target (its eventfd, and the duplicate of its ring fd that other
// cores aim their messages at) and that decision. It must never decide *whether* a wake is needed
// (the sleep handshake does, in `crate::core`), and never wake a core twice for one call.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, OnceLock};

use super::{Driver, EventfdWake};
use crate::{context, sys};

/// How other threads wake one core: its eventfd, and its ring once its driver is up and can
/// receive `MSG_RING`. `Send + Sync`: it is reached from every thread that wakes the core.
pub(crate) struct WakeTarget {
    eventfd: OwnedFd,
    /// A duplicate of the core's io_uring fd, set once its driver is up, when that driver runs
    /// io_uring and the kernel has `MSG_RING`. Holding a duplicate keeps the ring alive for as
    /// long as a sender can reach it, so a ring message never lands on a closed or reused fd.
    ring_fd: OnceLock<OwnedFd>,
}

impl WakeTarget {
    /// A target with a fresh eventfd and no ring yet.
    pub(crate) fn new() -> io::Result<WakeTarget> {
        Ok(WakeTarget {
            eventfd: sys::eventfd()?,
            ring_fd: OnceLock::new(),
        })
    }

    /// The eventfd the core's driver must watch (passed to [`Driver::new`]).
    pub(crate) fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Records the core's ring, so that other io_uring cores wake it with `MSG_RING`. Only the
    /// first call counts.
    pub(crate) fn set_ring_fd(&self, ring_fd: OwnedFd) {
        let _ = self.ring_fd.set(ring_fd);
    }

    /// Wakes the core from the calling thread, through the current core's driver when there
    /// is one ([`Driver::wake_core`]), else by eventfd.
    pub(crate) fn wake(self: &Arc<Self>) {
        // Only a target with a ring can take a `MSG_RING`: without one, skip the context lookup.
        if self.ring_fd.get().is_some() && context::with(|ctx| ctx.driver.wake_core(self)).is_some()
        {
            return;
        }
        self.wake_by_eventfd();
    }
}

impl EventfdWake for WakeTarget {
    fn wake_by_eventfd(&self) {
        sys::eventfd_signal(self.eventfd.as_raw_fd());
    }
}

impl Driver {
    /// Wakes the core `target` belongs to, from this driver's thread: with a `MSG_RING` from
    /// this core's ring when `target` has a ring and this driver can send one now (it keeps
    /// `target` until the message completes, and falls back to the eventfd if it failed),
    /// else with an eventfd write. Exactly one wake is delivered.
    pub(crate) fn wake_core(&self, target: &Arc<WakeTarget>) {
        if let Some(ring_fd) = target.ring_fd.get()
            && self.post_ring_wake(
                ring_fd.as_raw_fd(),
                Arc::clone(target) as Arc<dyn EventfdWake>,
            )
        {
            return;
        }
        target.wake_by_eventfd();
    }
}

// Compile-time contract (STYLE.md rule 7): a wake target is reached from every thread that wakes its
// core.
const _: () = {
    fn send_and_sync<T: Send + Sync>() {}
    let _ = send_and_sync::<WakeTarget>;
};
