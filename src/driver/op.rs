//! The lifecycle of one I/O operation, on either backend.
//!
//! An [`Operation`] is a struct that owns everything the kernel touches (fd, buffer, address)
//! and knows how to run itself both ways: as an io_uring submission entry, and as a non-blocking
//! syscall retried on epoll readiness. [`Op`] is the future around it.
//!
//! On io_uring the operation's data lives in the `Op` while the future is alive; if the future
//! is dropped before the kernel's completion arrives, the data moves into the driver, which
//! cancels the operation and keeps the data (the buffer the kernel may still write into) until
//! the terminal completion — see `uring::Lifecycle`. On epoll the syscall has finished by the
//! time the future returns, so dropping the future frees the data at once.
//!
//! This module owns the [`Op`] state machine. It must never let the kernel see memory that a
//! dropped future freed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use io_uring::squeue;

use super::Driver;
use crate::context;

/// Which readiness an epoll-backed operation waits for after `EAGAIN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

/// One kind of I/O operation, in its io_uring form and its epoll form.
///
/// # Safety
///
/// - [`uring_entry`](Operation::uring_entry) may only give the kernel pointers to memory that is
///   owned by `self`, does not move when `self` moves (heap memory, not fields of `self`), and
///   stays valid until `self` is dropped; the driver keeps `self` alive until the operation's
///   terminal completion.
/// - The entry's `user_data` is set by the driver; implementors leave it alone.
pub(crate) unsafe trait Operation: 'static {
    /// The submission queue entry for io_uring.
    fn uring_entry(&mut self) -> squeue::Entry;

    /// epoll: the registered fd to wait on, and for which readiness, when the syscall would
    /// block.
    fn epoll_source(&self) -> (&super::SharedFd, Direction);

    /// epoll: performs the operation now without blocking, returning what the io_uring
    /// completion's result would be (`WouldBlock` means "wait for readiness and try again").
    fn epoll_attempt(&mut self) -> io::Result<u32>;

    /// epoll: whether a successful attempt that gave `result` emptied the source for now (a
    /// read shorter than asked for took everything queued), so that the next operation in the
    /// same direction waits for readiness instead of trying a syscall bound to fail with
    /// `EAGAIN`. Never for a result of 0 (end of stream), which must keep being reported.
    fn epoll_drained(&self, result: u32) -> bool {
        let _ = result;
        false
    }

    /// io_uring: the operation finished after its future was dropped, with `result` (a byte
    /// count, an fd, or `-errno`). Operations that produce a resource release it here: an
    /// accepted socket nobody will ever see is closed.
    fn orphan_completed(self, result: i32)
    where
        Self: Sized,
    {
        let _ = result;
    }
}

/// What a finished operation gives back: its data (buffers included) and its result.
pub(crate) struct Completion<T> {
    pub(crate) data: T,
    pub(crate) result: io::Result<u32>,
}

enum State {
    /// Not yet submitted (io_uring) or not yet attempted (epoll).
    Idle,
    /// Submitted to the ring under this driver key.
    InRing(usize),
    /// The completion was handed out.
    Done,
}

/// How the first poll of an `Op` went on each backend.
enum Start {
    /// io_uring: queued under this key, or the ring refused it.
    Submitted(io::Result<usize>),
    /// epoll: the syscall's outcome, `Pending` while waiting for readiness.
    Attempted(Poll<io::Result<u32>>),
}

/// A future that runs an [`Operation`] on the current core's driver.
pub(crate) struct Op<T: Operation> {
    data: Option<T>,
    state: State,
}

impl<T: Operation> Op<T> {
    pub(crate) fn new(data: T) -> Self {
        Op {
            data: Some(data),
            state: State::Idle,
        }
    }
}

// `Op` never pins its data: the kernel only sees heap memory the data owns (see `Operation`).
impl<T: Operation> Unpin for Op<T> {}

/// Decodes a raw completion result: non-negative values pass, `-errno` becomes an error.
pub(crate) fn decode_result(result: i32) -> io::Result<u32> {
    if result >= 0 {
        Ok(result as u32)
    } else {
        Err(io::Error::from_raw_os_error(-result))
    }
}

impl<T: Operation> Future for Op<T> {
    type Output = Completion<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Completion<T>> {
        let this = self.get_mut();
        match this.state {
            State::Idle => {
                let Some(data) = this.data.as_mut() else {
                    unreachable!("an idle Op always holds its data");
                };
                let started = context::with(|ctx| {
                    // A task that spent its budget yields before starting more I/O.
                    ready!(ctx.executor.poll_budget(cx));
                    Poll::Ready(match &ctx.driver {
                        Driver::IoUring(driver) => {
                            Start::Submitted(driver.submit(data.uring_entry()))
                        }
                        Driver::Epoll(driver) => Start::Attempted(driver.attempt(data, cx)),
                    })
                });
                match started {
                    None => this.finish(Err(context::no_runtime())),
                    Some(Poll::Pending) | Some(Poll::Ready(Start::Attempted(Poll::Pending))) => {
                        Poll::Pending
                    }
                    Some(Poll::Ready(Start::Submitted(Ok(key)))) => {
                        this.state = State::InRing(key);
                        this.poll_ring(key, cx)
                    }
                    Some(Poll::Ready(Start::Submitted(Err(err)))) => this.finish(Err(err)),
                    Some(Poll::Ready(Start::Attempted(Poll::Ready(result)))) => this.finish(result),
                }
            }
            State::InRing(key) => this.poll_ring(key, cx),
            State::Done => panic!("coreio: an I/O operation was polled after it completed"),
        }
    }
}

impl<T: Operation> Op<T> {
    fn poll_ring(&mut self, key: usize, cx: &mut Context<'_>) -> Poll<Completion<T>> {
        let polled = context::with(|ctx| match &ctx.driver {
            Driver::IoUring(driver) => driver.poll_op(key, cx),
            Driver::Epoll(_) => unreachable!("an Op in a ring runs on an io_uring core"),
        });
        match polled {
            Some(Poll::Ready(result)) => self.finish(decode_result(result)),
            Some(Poll::Pending) => Poll::Pending,
            // The core is gone while the op was in flight: the driver already reclaimed it.
            None => self.finish(Err(context::no_runtime())),
        }
    }

    fn finish(&mut self, result: io::Result<u32>) -> Poll<Completion<T>> {
        self.state = State::Done;
        let Some(data) = self.data.take() else {
            unreachable!("an Op holds its data until it finishes");
        };
        Poll::Ready(Completion { data, result })
    }
}

impl<T: Operation> Drop for Op<T> {
    fn drop(&mut self) {
        if let State::InRing(key) = self.state {
            let mut data = self.data.take();
            // Hand the data to the driver: it outlives this future until the kernel is done.
            context::with(|ctx| {
                if let (Driver::IoUring(driver), Some(data)) = (&ctx.driver, data.take()) {
                    driver.abandon(key, data);
                }
            });
            if let Some(data) = data {
                // No io_uring driver on this thread any more, so nobody can tell when the kernel
                // is done with the buffer: leaking it is the only safe choice. The runtime never
                // drops a driver while operations are in flight, so this is a last resort.
                std::mem::forget(data);
            }
        }
    }
}
