//! [`Held`]: what an operation whose future was dropped leaves on its socket for the next one.
//!
//! On io_uring a read or an accept keeps running in the kernel after its future is dropped, and
//! it may complete with data before its cancellation does: a receive that took bytes from the
//! socket, an accept that took a connection from the backlog. Those results belong to the
//! socket's owner, who never saw them, so instead of freeing them the orphan hands them to the
//! socket's holding area, and the next read or accept returns them first. On epoll a dropped
//! operation never took anything (its syscall either returned before the future did or was
//! never made), so nothing is ever held there and the same code costs one check.
//!
//! The ordering rule: a receive still in the kernel for a dropped future (an *orphan*) may take
//! bytes that came before the ones a new receive would take. So a read or an accept that finds
//! orphans of its socket in flight waits for their terminal completions before it submits
//! anything, then returns what they left, oldest first. An orphan's terminal completion always
//! comes (the driver cancels it at once), so the wait is short: one pass of the core loop.
//!
//! Counting orphans needs no hook in the driver: each counted operation holds an [`OpShare`]
//! for as long as its data lives (in its future, or in the driver as an orphan), and the future
//! awaiting it is a [`Claim`], counted while it waits. `Claim` is dropped before the operation
//! inside it (its `Drop` runs before its fields'), so `operations - futures` is exactly the
//! number of orphans in flight whenever user code runs. Only one reader (or acceptor) at a time
//! has a defined order; concurrent readers of one stream share its bytes in no defined order,
//! with or without this.

// This module owns the holding area and that count. It must never call into the driver (an orphan
// completes while the driver dispatches completions, and only queues wakers here), never hand out
// bytes out of order or twice, and never keep an orphan's buffer itself: the bytes are copied out,
// so the buffer is released at the terminal completion as always.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::op::Completion;
use super::{Op, Operation, SharedFd};
use crate::buf::IoBufMut;
use crate::{context, coop};

/// A socket's holding area: a few counters inline, everything else boxed and allocated only
/// while something is held or waited for, so a socket that never lost a race pays no memory
/// beyond the counters and an empty pointer.
#[derive(Default)]
pub(crate) struct Held {
    /// Counted operations whose data is alive ([`OpShare`]s).
    ops: Cell<u32>,
    /// Futures waiting for a counted operation ([`Claim`]s).
    futures: Cell<u32>,
    kept: RefCell<Option<Box<Kept>>>,
}

/// What is held, oldest first, and who waits for the orphans to finish.
#[derive(Default)]
struct Kept {
    unread: Unread,
    accepted: VecDeque<Accepted>,
    waiters: Vec<Waker>,
}

impl Kept {
    fn is_empty(&self) -> bool {
        self.unread.is_empty() && self.accepted.is_empty() && self.waiters.is_empty()
    }
}

/// Bytes (and an error) that reads whose futures were dropped took from a stream and nobody
/// has read yet. It travels with the stream when the stream moves to another core.
///
/// `pub` only so that the sealed trait behind `net::Adopt` can name it: it lives in a private
/// module and has no public constructor or field, so nothing outside the crate can reach it.
#[derive(Default)]
pub struct Unread {
    /// `bytes[start..]` are still to be returned, in the order the socket delivered them.
    bytes: Vec<u8>,
    start: usize,
    /// An error a dropped read took (`errno`): a socket reports an error once, so it is
    /// returned after the bytes, as the socket itself would have.
    error: Option<i32>,
}

impl Unread {
    fn is_empty(&self) -> bool {
        self.start == self.bytes.len() && self.error.is_none()
    }

    /// How many bytes are held.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(bytes);
    }

    fn append(&mut self, mut later: Unread) {
        self.push_bytes(&later.bytes[later.start..]);
        self.error = self.error.or(later.error.take());
    }

    /// Copies up to `capacity` held bytes to `dst`, as a receive would, or takes the held error
    /// once the bytes are gone; `None` when nothing is held.
    ///
    /// # Safety
    ///
    /// `dst` must be valid for writes of `capacity` bytes and must not point into this
    /// holding area.
    unsafe fn copy_to(&mut self, dst: *mut u8, capacity: usize) -> Option<io::Result<usize>> {
        let held = &self.bytes[self.start..];
        if held.is_empty() {
            return self
                .error
                .take()
                .map(|errno| Err(io::Error::from_raw_os_error(errno)));
        }
        let n = held.len().min(capacity);
        // SAFETY: the caller guarantees `dst` is writable for `capacity >= n` bytes and does not
        // overlap `held`, which is `n` or more initialised bytes of this area's own Vec.
        unsafe { std::ptr::copy_nonoverlapping(held.as_ptr(), dst, n) };
        self.start += n;
        if self.start == self.bytes.len() {
            // Drained: release the memory rather than keep a buffer-sized block per stream.
            self.bytes = Vec::new();
            self.start = 0;
        }
        Some(Ok(n))
    }
}

impl Unread {
    /// Copies up to `capacity` held bytes to `dst` without taking them, or reports the held
    /// error (still held) once no bytes are; `None` when nothing is held.
    ///
    /// # Safety
    ///
    /// As for [`copy_to`](Unread::copy_to).
    unsafe fn peek_to(&self, dst: *mut u8, capacity: usize) -> Option<io::Result<usize>> {
        let held = &self.bytes[self.start..];
        if held.is_empty() {
            return self
                .error
                .map(|errno| Err(io::Error::from_raw_os_error(errno)));
        }
        let n = held.len().min(capacity);
        // SAFETY: the caller guarantees `dst` is writable for `capacity >= n` bytes and does not
        // overlap `held`, which is `n` or more initialised bytes of this area's own Vec.
        unsafe { std::ptr::copy_nonoverlapping(held.as_ptr(), dst, n) };
        Some(Ok(n))
    }
}

/// A connection an accept whose future was dropped took from the backlog.
pub(crate) struct Accepted {
    pub(crate) fd: OwnedFd,
    pub(crate) peer: socket2::SockAddr,
}

impl Held {
    /// Orphans of this socket still in the kernel (see the module docs for why this is exact).
    fn orphans(&self) -> u32 {
        self.ops.get().wrapping_sub(self.futures.get())
    }

    /// Nothing held and no orphan in flight: the next operation can go straight to the kernel.
    /// This is all a read or an accept costs when it never lost a race.
    pub(crate) fn is_clear(&self) -> bool {
        self.ops.get() == self.futures.get() && self.kept.borrow().is_none()
    }

    /// Waits until no orphan of this socket is in flight any more, so that what they took is
    /// held (or was never taken) before the caller looks.
    pub(crate) fn settled(&self) -> Settled<'_> {
        Settled { held: self }
    }

    /// A dropped read took `bytes`; they come after anything held already.
    pub(crate) fn keep_bytes(&self, bytes: &[u8]) {
        self.with_kept(|kept| kept.unread.push_bytes(bytes));
    }

    /// A dropped read took the socket's pending error `errno`.
    pub(crate) fn keep_error(&self, errno: i32) {
        self.with_kept(|kept| {
            kept.unread.error.get_or_insert(errno);
        });
    }

    /// A dropped accept took a connection.
    pub(crate) fn keep_accepted(&self, accepted: Accepted) {
        self.with_kept(|kept| kept.accepted.push_back(accepted));
    }

    /// Returns held bytes (or, after them, a held error) into `buf` as a read would: from its
    /// start, up to its capacity, setting its initialised length. `None` when nothing is held.
    /// Call after [`settled`](Held::settled).
    pub(crate) fn read_into<B: IoBufMut>(&self, buf: &mut B) -> Option<io::Result<usize>> {
        // The buffer's methods (which a caller may implement) run outside the borrow.
        let capacity = buf.bytes_total();
        let dst = buf.stable_mut_ptr();
        // SAFETY: `dst` is valid for writes of `capacity` bytes (`IoBufMut`'s contract) and
        // lies in the caller's buffer, which cannot be this area's own allocation.
        let result = self.take_from_kept(|kept| unsafe { kept.unread.copy_to(dst, capacity) });
        if let Some(Ok(n)) = result {
            // SAFETY: the first `n <= capacity` bytes of the buffer were just written.
            unsafe { buf.set_init(n) };
        }
        result
    }

    /// [`read_into`](Held::read_into) for a slice the caller lends (the poll forms'): held bytes
    /// (or, after them, a held error) into `dst`.
    pub(crate) fn read_into_slice(
        &self,
        dst: &mut [std::mem::MaybeUninit<u8>],
    ) -> Option<io::Result<usize>> {
        let (ptr, capacity) = (dst.as_mut_ptr().cast::<u8>(), dst.len());
        // SAFETY: `dst` is valid for writes of `capacity` bytes and cannot be this area's own
        // allocation (the caller holds it mutably).
        self.take_from_kept(|kept| unsafe { kept.unread.copy_to(ptr, capacity) })
    }

    /// Like [`read_into`](Held::read_into), but the bytes (or the error) stay held for the
    /// next read: what a peek sees first.
    pub(crate) fn peek_into<B: IoBufMut>(&self, buf: &mut B) -> Option<io::Result<usize>> {
        let capacity = buf.bytes_total();
        let dst = buf.stable_mut_ptr();
        let result = {
            let kept = self.kept.borrow();
            // SAFETY: `dst` is valid for writes of `capacity` bytes (`IoBufMut`'s contract) and
            // lies in the caller's buffer, which cannot be this area's own allocation.
            kept.as_ref()
                .and_then(|kept| unsafe { kept.unread.peek_to(dst, capacity) })
        };
        if let Some(Ok(n)) = result {
            // SAFETY: the first `n <= capacity` bytes of the buffer were just written.
            unsafe { buf.set_init(n) };
        }
        result
    }

    /// The oldest held connection. Call after [`settled`](Held::settled).
    pub(crate) fn take_accepted(&self) -> Option<Accepted> {
        self.take_from_kept(|kept| kept.accepted.pop_front())
    }

    /// Everything held for the stream, for a hand-off to another core.
    pub(crate) fn into_unread(self) -> Option<Unread> {
        let kept = self.kept.into_inner()?;
        (!kept.unread.is_empty()).then_some(kept.unread)
    }

    /// Puts bytes carried by a hand-off back in front of anything held.
    pub(crate) fn restore_unread(&self, unread: Unread) {
        if unread.is_empty() {
            return;
        }
        self.with_kept(|kept| {
            let later = std::mem::replace(&mut kept.unread, unread);
            kept.unread.append(later);
        });
    }

    fn with_kept(&self, f: impl FnOnce(&mut Kept)) {
        let mut kept = self.kept.borrow_mut();
        f(kept.get_or_insert_with(Box::default));
    }

    fn take_from_kept<T>(&self, f: impl FnOnce(&mut Kept) -> Option<T>) -> Option<T> {
        let mut slot = self.kept.borrow_mut();
        let kept = slot.as_mut()?;
        let taken = f(kept);
        if kept.is_empty() {
            *slot = None;
        }
        taken
    }

    /// An operation's data was released; if that was the last orphan, wake whoever waits.
    fn op_released(&self) {
        self.ops.set(self.ops.get().wrapping_sub(1));
        if self.orphans() != 0 {
            return;
        }
        let waiters = {
            let mut slot = self.kept.borrow_mut();
            let Some(kept) = slot.as_mut() else {
                return;
            };
            let waiters = std::mem::take(&mut kept.waiters);
            if kept.is_empty() {
                *slot = None;
            }
            waiters
        };
        // Outside the borrow: waking only queues tasks, but a waker is foreign code.
        for waker in waiters {
            waker.wake();
        }
    }
}

/// Future of [`Held::settled`].
pub(crate) struct Settled<'a> {
    held: &'a Held,
}

impl Future for Settled<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let held = self.held;
        if held.orphans() != 0 {
            if context::with(|_| ()).is_none() {
                // Outside a runtime no orphan can ever finish: go on, and let the caller's
                // operation fail the way it does outside a runtime.
                return Poll::Ready(());
            }
            let registered = held
                .kept
                .borrow()
                .as_ref()
                .is_some_and(|kept| kept.waiters.iter().any(|w| w.will_wake(cx.waker())));
            if !registered {
                // Cloned outside the borrow: a waker is foreign code.
                let waker = cx.waker().clone();
                held.with_kept(|kept| kept.waiters.push(waker));
            }
            return Poll::Pending;
        }
        // Handing out held bytes is I/O too: it spends the task's budget like an operation
        // does, so a task reading them in small pieces still yields now and then.
        coop::poll_proceed(cx)
    }
}

/// An operation's share of its socket: counts the operation in the socket's [`Held`] for as
/// long as the operation's data lives, wherever it is (its future, or the driver as an orphan).
pub(crate) struct OpShare {
    fd: SharedFd,
}

impl OpShare {
    pub(crate) fn new(fd: SharedFd) -> OpShare {
        let held = fd.held();
        held.ops.set(held.ops.get().wrapping_add(1));
        OpShare { fd }
    }
}

impl Deref for OpShare {
    type Target = SharedFd;

    fn deref(&self) -> &SharedFd {
        &self.fd
    }
}

impl Drop for OpShare {
    fn drop(&mut self) {
        self.fd.held().op_released();
    }
}

/// A waiter that stays for many operations' results, counted like a [`Claim`] while it lives:
/// a receive stream (`net::RecvStream`) whose multishot receive stays armed across its items,
/// a listener's armed multishot accept (`net::ops::AcceptMulti`).
/// Dropped before the operation it waits on, as a `Claim` is, so that the operation counts as
/// an orphan from then on.
pub(crate) struct StandingClaim {
    fd: SharedFd,
}

impl StandingClaim {
    /// Counts a waiter on `fd`, whose operation holds an [`OpShare`] of the same socket.
    pub(crate) fn new(fd: SharedFd) -> StandingClaim {
        let held = fd.held();
        held.futures.set(held.futures.get().wrapping_add(1));
        StandingClaim { fd }
    }
}

impl Drop for StandingClaim {
    fn drop(&mut self) {
        let held = self.fd.held();
        held.futures.set(held.futures.get().wrapping_sub(1));
    }
}

/// The future of a counted operation: an [`Op`] whose wait is counted in the socket's [`Held`]
/// until it returns or is dropped. Its `Drop` runs before the `Op`'s, so the operation counts as
/// an orphan from the moment its future is gone.
pub(crate) struct Claim<'a, T: Operation> {
    held: &'a Held,
    op: Op<T>,
    waiting: bool,
}

impl<'a, T: Operation> Claim<'a, T> {
    /// `data` must hold an [`OpShare`] of the socket `held` belongs to.
    pub(crate) fn new(held: &'a Held, data: T) -> Self {
        held.futures.set(held.futures.get().wrapping_add(1));
        Claim {
            held,
            op: Op::new(data),
            waiting: true,
        }
    }

    fn stop_waiting(&mut self) {
        if std::mem::replace(&mut self.waiting, false) {
            self.held
                .futures
                .set(self.held.futures.get().wrapping_sub(1));
        }
    }
}

impl<T: Operation> Future for Claim<'_, T> {
    type Output = Completion<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Completion<T>> {
        // `Claim` is Unpin: `Op` is, and a reference is.
        let this = self.get_mut();
        let completion = std::task::ready!(Pin::new(&mut this.op).poll(cx));
        // Claimed: the data is the caller's now, and releasing it is no orphan's end.
        this.stop_waiting();
        Poll::Ready(completion)
    }
}

impl<T: Operation> Drop for Claim<'_, T> {
    fn drop(&mut self) {
        // Runs before `self.op` drops (and, on io_uring, becomes an orphan): from here until
        // the operation's data is released, it counts as an orphan in flight.
        self.stop_waiting();
    }
}
