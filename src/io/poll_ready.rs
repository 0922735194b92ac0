//! [`ReadyWait`]: one wait for a descriptor to become readable or writable, and
//! [`PollReady`], the operation it is on io_uring.
//!
//! The readiness wait behind [`AsyncFd`](super::AsyncFd), in its two forms side by side:
//!
//! - **io_uring**: a one-shot `IORING_OP_POLL_ADD` for `POLLIN` or `POLLOUT` ([`PollReady`]).
//!   The kernel writes nothing but the completion's result (the `revents` mask, or `-errno`),
//!   so the operation owns no memory the kernel touches: only its descriptor. A dropped wait is
//!   an orphan like any other, cancelled by the driver (see `crate::driver::op`); its result is
//!   discarded.
//! - **epoll**: a zero-timeout `poll(2)` of the same events ([`poll_now`]), which tells the
//!   truth about the descriptor's level whatever edges came and went before; when nothing is
//!   ready, the wait leaves its own entry (an id and the task's waker) on the descriptor's
//!   epoll source, and the next edge wakes every entry (`Driver::poll_ready_epoll`). A wait
//!   dropped before that takes its entry out, so nothing of it stays behind. Several tasks may
//!   wait on one descriptor at once.
//!
//! `POLLERR` and `POLLHUP` are reported whatever was asked for (by `poll(2)` and by `POLL_ADD`),
//! so an error or a hang-up ends a wait in either direction.

// This module owns the readiness operation only; what a readiness *means* for the user's next
// syscall (and when it is forgotten) belongs to `AsyncFd`. It must never read or write the
// descriptor.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use io_uring::{opcode, squeue};

use crate::driver::{Direction, Op, Operation, SharedFd, Source, uring_target};
use crate::{context, coop, sys};

fn events(direction: Direction) -> i16 {
    match direction {
        Direction::Read => libc::POLLIN,
        Direction::Write => libc::POLLOUT,
    }
}

/// Whether `fd` is ready for `direction` now: the `revents` mask, or `WouldBlock`.
fn poll_now(fd: &SharedFd, direction: Direction) -> io::Result<u32> {
    let mut pollfd = libc::pollfd {
        fd: fd.raw(),
        events: events(direction),
        revents: 0,
    };
    loop {
        // SAFETY: `pollfd` is one valid, writable entry for the duration of the call, and the
        // descriptor stays open while `fd` lives; a zero timeout never blocks.
        match sys::cvt(unsafe { libc::poll(&mut pollfd, 1, 0) }) {
            Ok(0) => return Err(io::ErrorKind::WouldBlock.into()),
            Ok(_) => return Ok(pollfd.revents as u16 as u32),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
}

/// One readiness wait on `fd` for `direction`, on whichever backend runs; polled by its owner
/// (a future of `AsyncFd`, or the `AsyncFd` itself for the poll forms) until it gives the
/// `revents` mask.
pub(crate) struct ReadyWait {
    fd: SharedFd,
    direction: Direction,
    /// epoll: this wait's entry id on the fd's source, once it has one.
    waiter: Option<u64>,
    /// io_uring: the `POLL_ADD` in flight.
    op: Option<Op<PollReady>>,
}

impl ReadyWait {
    pub(crate) fn new(fd: SharedFd, direction: Direction) -> ReadyWait {
        ReadyWait {
            fd,
            direction,
            waiter: None,
            op: None,
        }
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<u32>> {
        if self.op.is_none() {
            let (fd, direction) = (&self.fd, self.direction);
            let polled = context::with(|ctx| {
                ctx.driver.poll_ready_epoll(
                    fd,
                    direction,
                    &mut self.waiter,
                    || poll_now(fd, direction),
                    cx,
                )
            });
            match polled {
                None => return Poll::Ready(Err(context::no_runtime())),
                Some(Some(Poll::Pending)) => return Poll::Pending,
                Some(Some(Poll::Ready(result))) => {
                    // A task that keeps finding readiness still yields when its budget is spent
                    // (the readiness is asked again then: nothing is lost).
                    ready!(coop::poll_proceed(cx));
                    return Poll::Ready(result);
                }
                // io_uring: the wait is an operation.
                Some(None) => {
                    self.op = Some(Op::new(PollReady {
                        fd: self.fd.clone(),
                        direction,
                    }))
                }
            }
        }
        let Some(op) = self.op.as_mut() else {
            unreachable!("an io_uring wait holds its operation");
        };
        let completion = ready!(Pin::new(op).poll(cx));
        self.op = None;
        Poll::Ready(completion.result)
    }
}

impl Drop for ReadyWait {
    fn drop(&mut self) {
        // epoll: a wait that gave up takes its entry (and its task's waker) out at once. (The
        // `POLL_ADD` of an io_uring wait is cancelled by its `Op`'s drop.)
        if let Some(waiter) = self.waiter.take() {
            context::with(|ctx| ctx.driver.forget_ready(&self.fd, waiter));
        }
    }
}

/// One `POLL_ADD` for `POLLIN` (`Direction::Read`) or `POLLOUT` (`Direction::Write`) on `fd`.
pub(crate) struct PollReady {
    fd: SharedFd,
    direction: Direction,
}

// SAFETY: `POLL_ADD` gives the kernel no pointer at all: it reads the descriptor's readiness
// and reports it in the completion's result.
unsafe impl Operation for PollReady {
    fn uring_entry(&mut self) -> squeue::Entry {
        let events = events(self.direction) as u16 as u32;
        uring_target!(self.fd, |fd| opcode::PollAdd::new(fd, events).build())
    }

    fn source(&self) -> Source<'_> {
        Source::Readiness(&self.fd, self.direction)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        // Not used by `ReadyWait`, which asks `poll_now` itself on epoll; the same answer.
        poll_now(&self.fd, self.direction)
    }
}
