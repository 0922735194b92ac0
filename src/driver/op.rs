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
//! An `Op` in a ring remembers which driver it was submitted to. Polled or dropped where that
//! driver is not the current one (a future moved to another runtime on the same thread, or
//! outliving its runtime), it never touches the current driver's slots: if its own ring has
//! settled (shut down with every completion seen) it hands its data back with an error; if the
//! kernel may still own the data, the data is leaked, and a poll panics naming the misuse.
//! Likewise an operation on a descriptor registered by another runtime fails with an error.

// This module owns the `Op` state machine. It must never let the kernel see memory that a dropped
// future freed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use io_uring::squeue;

use super::offload::{self, BlockingCall, CallWaiter};
use super::{DriverId, SharedFd, Started, settled};
use crate::context;

/// Which readiness an epoll-backed operation waits for after `EAGAIN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

/// What an operation acts on, which says how it waits where it cannot be a ring submission.
pub(crate) enum Source<'a> {
    /// A socket or pipe registered with its core's driver (which it must belong to): on epoll
    /// the syscall is tried, and on `EAGAIN` retried at the next readiness edge of `Direction`.
    Readiness(&'a SharedFd, Direction),
    /// A file or a path, which readiness says nothing of: on epoll, and on an io_uring whose
    /// kernel lacks `opcode`, the operation's `blocking_call` runs on the blocking pool
    /// (`offload`).
    Blocking { opcode: u8 },
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

    /// What the operation acts on, and so how it waits off the ring.
    fn source(&self) -> Source<'_>;

    /// epoll, [`Source::Readiness`]: performs the operation now without blocking, returning
    /// what the io_uring completion's result would be (`WouldBlock` means "wait for readiness
    /// and try again"). Never called for a [`Source::Blocking`] operation.
    fn epoll_attempt(&mut self) -> io::Result<u32> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this operation has no readiness form",
        ))
    }

    /// [`Source::Blocking`]: the call that performs the operation on a pool thread, returning
    /// what the io_uring completion's result would be. It may use the pointers `uring_entry`
    /// would give the kernel, under the same rule (see [`BlockingCall::new`]). Never called for
    /// a [`Source::Readiness`] operation.
    fn blocking_call(&mut self) -> BlockingCall {
        BlockingCall::unsupported("this operation")
    }

    /// epoll: whether a successful attempt that gave `result` emptied the source for now (a
    /// read shorter than asked for took everything queued), so that the next operation in the
    /// same direction waits for readiness instead of trying a syscall bound to fail with
    /// `EAGAIN`. Never for a result of 0 (end of stream), which must keep being reported.
    fn epoll_drained(&self, result: u32) -> bool {
        let _ = result;
        false
    }

    /// io_uring: the operation finished after its future was dropped, with `result` (a byte
    /// count, an fd, or `-errno`). Called by the driver outside its own borrow, after the
    /// terminal completion. Operations whose result belongs to the socket's owner hand it to
    /// the socket here (a receive's bytes, an accepted connection: see `driver::held`); what
    /// the data owns is freed when `self` drops at the end.
    fn orphan_completed(self, result: i32)
    where
        Self: Sized,
    {
        let _ = result;
    }
}

/// An operation whose future is gone, kept by its driver until its terminal completion.
pub(super) trait Orphan {
    /// The kernel (or the pool thread) finished it with `result`: hand the result on, release
    /// the data.
    fn complete(self: Box<Self>, result: i32);
}

impl<T: Operation> Orphan for T {
    fn complete(self: Box<Self>, result: i32) {
        (*self).orphan_completed(result);
    }
}

/// One completion as the kernel posted it: the result (a byte count, an fd, or `-errno`) and
/// the CQE flags (`IORING_CQE_F_MORE`, `IORING_CQE_F_BUFFER` with a provided buffer's id,
/// `IORING_CQE_F_NOTIF`, `IORING_CQE_F_SOCK_NONEMPTY`). One-shot operations read the result;
/// streaming ones (`op_stream`) need the flags too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cqe {
    pub(crate) result: i32,
    pub(crate) flags: u32,
}

impl Cqe {
    /// More completions of the same submission follow (`IORING_CQE_F_MORE`): not terminal.
    pub(crate) fn more(&self) -> bool {
        io_uring::cqueue::more(self.flags)
    }
}

/// What a finished operation gives back: its data (buffers included), its result, and the
/// flags of its completion (io_uring's CQE flags, such as `IORING_CQE_F_BUFFER` with a provided
/// buffer's id or `IORING_CQE_F_SOCK_NONEMPTY`; always 0 on epoll and for an operation that
/// never reached the kernel).
pub(crate) struct Completion<T> {
    pub(crate) data: T,
    pub(crate) result: io::Result<u32>,
    #[allow(dead_code)] // Read by the first operation that needs it (buffer selection, [10]).
    pub(crate) flags: u32,
}

enum State {
    /// Not yet submitted (io_uring) or not yet attempted (epoll).
    Idle,
    /// Submitted under `key` to the ring of `driver`, which owns the slot.
    InRing { key: usize, driver: DriverId },
    /// Its call runs on the blocking pool (`offload`).
    InPool(CallWaiter),
    /// The completion was handed out.
    Done,
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
                    ready!(ctx.budget.poll_proceed(cx));
                    ctx.driver.start(data, cx)
                });
                match started {
                    None => this.finish(Err(context::no_runtime())),
                    Some(Poll::Pending) => Poll::Pending,
                    Some(Poll::Ready(Started::Submitted { key, driver })) => {
                        this.state = State::InRing { key, driver };
                        this.poll_ring(key, driver, cx)
                    }
                    Some(Poll::Ready(Started::Finished(result))) => this.finish(result),
                    Some(Poll::Ready(Started::Offloaded(mut waiter))) => {
                        let polled = offload::poll_call(&mut waiter, cx);
                        this.state = State::InPool(waiter);
                        let result = ready!(polled);
                        this.finish(result)
                    }
                }
            }
            State::InRing { key, driver } => this.poll_ring(key, driver, cx),
            State::InPool(ref mut waiter) => {
                let result = ready!(offload::poll_call(waiter, cx));
                this.finish(result)
            }
            State::Done => panic!("coreio: an I/O operation was polled after it completed"),
        }
    }
}

impl<T: Operation> Op<T> {
    fn poll_ring(
        &mut self,
        key: usize,
        owner: DriverId,
        cx: &mut Context<'_>,
    ) -> Poll<Completion<T>> {
        let polled = context::with(|ctx| ctx.driver.poll_submitted(key, owner, cx));
        match polled.flatten() {
            Some(Poll::Ready(cqe)) => self.finish_with(decode_result(cqe.result), cqe.flags),
            Some(Poll::Pending) => Poll::Pending,
            None => self.away_from_its_ring(owner),
        }
    }

    /// Polled where its ring is not the current driver: outside any runtime, or under another
    /// one on this thread.
    #[track_caller]
    fn away_from_its_ring(&mut self, owner: DriverId) -> Poll<Completion<T>> {
        self.state = State::Done;
        let error = away_from_ring(owner, &mut self.data);
        self.finish(Err(error))
    }

    fn finish(&mut self, result: io::Result<u32>) -> Poll<Completion<T>> {
        self.finish_with(result, 0)
    }

    fn finish_with(&mut self, result: io::Result<u32>, flags: u32) -> Poll<Completion<T>> {
        self.state = State::Done;
        let Some(data) = self.data.take() else {
            unreachable!("an Op holds its data until it finishes");
        };
        Poll::Ready(Completion {
            data,
            result,
            flags,
        })
    }
}

impl<T: Operation> Drop for Op<T> {
    fn drop(&mut self) {
        if let State::InPool(_) = self.state {
            return self.drop_in_pool();
        }
        let State::InRing { key, driver: owner } = self.state else {
            return;
        };
        let mut data = self.data.take();
        // Hand the data to its driver: it outlives this future until the kernel is done. (Not
        // moved into the closure, which may not run: outside a runtime the data must stay
        // here, to be let go of below rather than dropped with the closure.)
        context::with(|ctx| {
            if let Some(taken) = data.take() {
                data = ctx.driver.abandon(key, owner, taken).err();
            }
        });
        if let Some(data) = data {
            let_go(data, owner);
        }
    }
}

impl<T: Operation> Op<T> {
    /// Dropped while its call runs on the blocking pool: the data goes to the current core's
    /// driver, which releases it once the call has returned. Outside any runtime nothing can
    /// keep it: released now if the call returned, leaked if it may still use the data.
    fn drop_in_pool(&mut self) {
        let State::InPool(waiter) = std::mem::replace(&mut self.state, State::Done) else {
            return;
        };
        let Some(data) = self.data.take() else {
            return;
        };
        let mut parked = Some((waiter, data));
        context::with(|ctx| {
            if let Some((waiter, data)) = parked.take() {
                ctx.driver.abandon_offloaded(waiter, data);
            }
        });
        if let Some((mut waiter, data)) = parked {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match offload::poll_call(&mut waiter, &mut cx) {
                Poll::Ready(result) => data.orphan_completed(offload::raw_result(result)),
                Poll::Pending => std::mem::forget(data),
            }
        }
    }
}

/// A future in a ring is polled where that ring is not the current driver (outside any
/// runtime, or under another one on this thread). If its ring has settled, the kernel is done
/// with `data`, which stays for the caller, and the error says the runtime is gone. If not,
/// the kernel may still write into the data through a ring this thread cannot reach: it is
/// leaked, and this panics naming the misuse.
#[track_caller]
pub(super) fn away_from_ring<T>(owner: DriverId, data: &mut Option<T>) -> io::Error {
    if settled(owner) {
        return io::Error::other(
            "the coreio runtime this I/O operation was started on has shut down",
        );
    }
    std::mem::forget(data.take());
    panic!(
        "coreio: an I/O operation was polled outside the runtime that started it (the future \
         moved to another runtime on this thread, or outlived its runtime while the kernel still \
         held the operation); its buffer is leaked, since the kernel may still write to it"
    );
}

/// Data of a dropped operation that its own driver could not take (that driver is not the
/// current one): dropped if its ring settled (the kernel saw the terminal completion), leaked
/// otherwise, since nobody can tell when the kernel is done with it.
pub(super) fn let_go<T>(data: T, owner: DriverId) {
    if settled(owner) {
        drop(data);
    } else {
        std::mem::forget(data);
    }
}
