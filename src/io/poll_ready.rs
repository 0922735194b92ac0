//! [`PollReady`]: waits once for a descriptor to become readable or writable.
//!
//! The readiness operation behind [`AsyncFd`](super::AsyncFd), in its two forms side by side:
//!
//! - **io_uring**: a one-shot `IORING_OP_POLL_ADD` for `POLLIN` or `POLLOUT`. The kernel writes
//!   nothing but the completion's result (the `revents` mask, or `-errno`), so the operation
//!   owns no memory the kernel touches: only its descriptor. A dropped wait is an orphan like
//!   any other, cancelled by the driver (see `crate::driver::op`); its result is discarded.
//! - **epoll**: a zero-timeout `poll(2)` of the same events, which tells the truth about the
//!   descriptor's level whatever edges came and went before; `WouldBlock` when nothing is
//!   ready, and the edge-triggered registration wakes the task when that changes. The
//!   descriptor is registered for readiness waits (`SharedFd::new_for_readiness`), so several
//!   tasks may wait on it at once and the next edge wakes them all.
//!
//! `POLLERR` and `POLLHUP` are reported whatever was asked for (by `poll(2)` and by `POLL_ADD`),
//! so an error or a hang-up ends a wait in either direction.
//!
//! This module owns the readiness operation only; what a readiness *means* for the user's next
//! syscall (and when it is forgotten) belongs to `AsyncFd`. It must never read or write the
//! descriptor.

use std::io;

use io_uring::{opcode, squeue, types};

use crate::driver::{Direction, Operation, SharedFd};
use crate::sys;

/// One wait for `POLLIN` (`Direction::Read`) or `POLLOUT` (`Direction::Write`) on `fd`.
pub(crate) struct PollReady {
    fd: SharedFd,
    direction: Direction,
}

impl PollReady {
    pub(crate) fn new(fd: SharedFd, direction: Direction) -> PollReady {
        PollReady { fd, direction }
    }

    fn events(&self) -> i16 {
        match self.direction {
            Direction::Read => libc::POLLIN,
            Direction::Write => libc::POLLOUT,
        }
    }
}

// SAFETY: `POLL_ADD` gives the kernel no pointer at all: it reads the descriptor's readiness
// and reports it in the completion's result.
unsafe impl Operation for PollReady {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::PollAdd::new(types::Fd(self.fd.raw()), self.events() as u16 as u32).build()
    }

    fn source(&self) -> (&SharedFd, Direction) {
        (&self.fd, self.direction)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        let mut pollfd = libc::pollfd {
            fd: self.fd.raw(),
            events: self.events(),
            revents: 0,
        };
        loop {
            // SAFETY: `pollfd` is one valid, writable entry for the duration of the call, and
            // the descriptor stays open while `self.fd` lives; a zero timeout never blocks.
            match sys::cvt(unsafe { libc::poll(&mut pollfd, 1, 0) }) {
                Ok(0) => return Err(io::ErrorKind::WouldBlock.into()),
                Ok(_) => return Ok(pollfd.revents as u16 as u32),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
    }
}
