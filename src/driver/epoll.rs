//! The epoll backend: readiness, for systems where io_uring cannot be used.
//!
//! Each socket is registered once, edge-triggered, for both directions, when it is wrapped in
//! a [`SharedFd`](super::SharedFd); it is never re-armed per operation. An operation first tries
//! its syscall; only on `EAGAIN` does it leave its waker on the socket's [`Source`] for the
//! direction it needs, and the next edge wakes it to try again. Because the core is one thread,
//! no edge can slip between the failed attempt and the waker being stored: the kernel queues it
//! and `epoll_wait` reports it on the next park.
//!
//! Reads skip even that attempt when it is bound to fail: a read that returns less than it asked
//! for has emptied the socket, so the source is marked not readable and the next read waits for
//! the next readable edge directly (tokio does the same). Any readable edge marks it readable
//! again; once epoll has reported a hang-up, peer shutdown or error, reads always try, since
//! the end of stream may sit right behind the data a short read took.
//!
//! The tasks waiting for one direction of a socket are kept until its next edge, which wakes
//! them all: almost always none or one, inline; several when tasks share a socket (answer loops
//! of one UDP socket, a reader task and a `peek`). An earlier version kept one waker and woke
//! the one it replaced, so two waiting readers woke each other on every loop turn, a busy loop
//! of `EAGAIN`s (measured: `benches/dns_compare.sh --tasks 4` on epoll).
//!
//! Readiness waits (`io::AsyncFd`) are not operations: each one keeps its own entry, under an
//! id of its own, in its source's list of waiters (`wait_ready`), every entry of a direction is
//! woken by that direction's next edge, and a wait dropped before that takes its entry out
//! (`forget_ready`). Several tasks may wait for one fd's readiness without making each other
//! retry, and a wait that gave up leaves nothing behind.
//!
//! Wakers are user code (a combinator may poll an operation with a waker of its own): `park`
//! collects the ones its events call for and wakes them after releasing its borrow, each under
//! `catch_unwind`, so one that panics or calls back into the driver neither finds it borrowed
//! nor costs the others their wake-up; the first panic is resumed afterwards.

// This module owns the epoll instance and the per-fd wakers. It must never block outside `park`,
// never wake a waker while `inner` is borrowed, and never retry a syscall itself: operations do
// that.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use slab::Slab;

use super::{Direction, DriverId, Operation};
use crate::sys::{self, cvt};

/// epoll `data` of the core's wake eventfd; socket tokens are slab keys, far below it.
const WAKE_TOKEN: u64 = u64::MAX;

/// How many events one `epoll_wait` returns at most; more are reported on the next call.
const EVENTS_PER_WAIT: usize = 1024;

/// The wakers waiting on one registered fd, and what is known of its read readiness.
struct Source {
    readers: Waiting,
    writers: Waiting,
    /// False after a read drained the fd (`Operation::epoll_drained`) and until epoll reports
    /// it readable again: a read then waits for that event without trying the syscall first.
    maybe_readable: bool,
    /// epoll has reported a hang-up, a peer shutdown or an error. Never cleared: a short read
    /// may have come just before an end of stream whose edge was already consumed, and the
    /// next read must still try, to see the 0 or the error.
    read_closed: bool,
    /// Readiness waits (`wait_ready`), in no order; empty (and unallocated) for descriptors
    /// that only serve operations.
    waiters: Vec<ReadyWaiter>,
}

/// The operations waiting for one direction of a source, until its next edge wakes them all.
#[derive(Default)]
enum Waiting {
    #[default]
    None,
    One(Waker),
    /// Tasks sharing the socket; each waker once.
    Many(Vec<Waker>),
}

impl Waiting {
    /// Adds `waker`, unless one that wakes the same task waits already: then `waker` comes
    /// back, for the caller to drop outside its borrow (dropping a waker is foreign code).
    #[must_use]
    fn add(&mut self, waker: Waker) -> Option<Waker> {
        match self {
            Waiting::None => *self = Waiting::One(waker),
            Waiting::One(current) if current.will_wake(&waker) => return Some(waker),
            Waiting::One(_) => {
                let Waiting::One(first) = std::mem::take(self) else {
                    unreachable!("matched One above");
                };
                *self = Waiting::Many(vec![first, waker]);
            }
            Waiting::Many(wakers) => {
                if wakers.iter().any(|current| current.will_wake(&waker)) {
                    return Some(waker);
                }
                wakers.push(waker);
            }
        }
        None
    }

    /// Moves every waiting waker into `to_wake`.
    fn take_into(&mut self, to_wake: &mut Vec<Waker>) {
        match std::mem::take(self) {
            Waiting::None => {}
            Waiting::One(waker) => to_wake.push(waker),
            Waiting::Many(wakers) => to_wake.extend(wakers),
        }
    }
}

/// One readiness wait's entry: its id, the direction it waits for, and its task's waker.
struct ReadyWaiter {
    id: u64,
    direction: Direction,
    waker: Waker,
}

impl Source {
    fn new() -> Source {
        Source {
            readers: Waiting::None,
            writers: Waiting::None,
            maybe_readable: true,
            read_closed: false,
            waiters: Vec::new(),
        }
    }

    /// Moves the wakers of the readiness waits for `direction` into `to_wake`.
    fn take_waiters(&mut self, direction: Direction, to_wake: &mut Vec<Waker>) {
        if self.waiters.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].direction == direction {
                to_wake.push(self.waiters.swap_remove(i).waker);
            } else {
                i += 1;
            }
        }
    }
}

pub(crate) struct EpollDriver {
    id: DriverId,
    epoll: OwnedFd,
    wake_fd: RawFd,
    inner: RefCell<Inner>,
}

struct Inner {
    sources: Slab<Source>,
    events: Vec<libc::epoll_event>,
    /// The wakers the last `epoll_wait` calls for, woken once `inner` is released; kept for
    /// its capacity.
    to_wake: Vec<Waker>,
    /// The id the next readiness wait gets (`wait_ready`); never reused.
    next_waiter: u64,
}

impl EpollDriver {
    pub(crate) fn new(id: DriverId, wake_fd: RawFd) -> io::Result<EpollDriver> {
        // SAFETY: `epoll_create1` takes no pointers.
        let epfd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `epoll_create1` just returned this descriptor and nothing else owns it.
        let epoll = unsafe { OwnedFd::from_raw_fd(epfd) };
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: WAKE_TOKEN,
        };
        // SAFETY: `event` is a valid epoll_event for the call; both fds are open.
        cvt(unsafe {
            libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, wake_fd, &mut event)
        })?;
        Ok(EpollDriver {
            id,
            epoll,
            wake_fd,
            inner: RefCell::new(Inner {
                sources: Slab::with_capacity(1024),
                events: Vec::with_capacity(EVENTS_PER_WAIT),
                to_wake: Vec::with_capacity(EVENTS_PER_WAIT),
                next_waiter: 0,
            }),
        })
    }

    pub(crate) fn id(&self) -> DriverId {
        self.id
    }

    /// Registers `fd` for both directions, edge-triggered; returns its token.
    pub(crate) fn register(&self, fd: RawFd) -> io::Result<usize> {
        let token = self.inner.borrow_mut().sources.insert(Source::new());
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token as u64,
        };
        // SAFETY: `event` is a valid epoll_event for the call; `fd` is open (the caller owns it).
        let added = cvt(unsafe {
            libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event)
        });
        if let Err(err) = added {
            self.inner.borrow_mut().sources.remove(token);
            return Err(err);
        }
        Ok(token)
    }

    /// Forgets a token whose fd is being closed (closing removes it from the interest list).
    pub(crate) fn deregister(&self, token: usize) {
        // Sockets are only dropped by tasks and orphans, never while the driver dispatches
        // events, so the borrow is free; were it not, the slot would merely stay allocated.
        let inner = self.inner.try_borrow_mut();
        debug_assert!(
            inner.is_ok(),
            "fd dropped while the epoll driver was borrowed"
        );
        if let Ok(mut inner) = inner {
            inner.sources.try_remove(token);
        }
    }

    /// Removes a descriptor that stays open (it moves to another core) from the interest list,
    /// and forgets its token. A waker still stored there belongs to no live operation.
    pub(crate) fn deregister_open(&self, fd: RawFd, token: usize) {
        // EPOLL_CTL_DEL ignores the event argument since Linux 2.6.9; an error (ENOENT, EBADF)
        // would mean the fd is not registered, which leaves nothing to undo.
        // SAFETY: no event pointer is read for EPOLL_CTL_DEL; `fd` is open (the caller owns it).
        let _ = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
        self.deregister(token);
    }

    /// Runs `op`'s syscall on the fd of `token`; on `EAGAIN` leaves the waker for `direction`
    /// and returns Pending.
    pub(crate) fn attempt<T: Operation>(
        &self,
        op: &mut T,
        token: usize,
        direction: Direction,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<u32>> {
        if direction == Direction::Read && !self.maybe_readable(token) {
            self.wait_for(token, direction, cx.waker());
            return Poll::Pending;
        }
        match op.epoll_attempt() {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.wait_for(token, direction, cx.waker());
                Poll::Pending
            }
            Ok(n) if direction == Direction::Read && op.epoll_drained(n) => {
                if let Some(source) = self.inner.borrow_mut().sources.get_mut(token) {
                    source.maybe_readable = false;
                }
                Poll::Ready(Ok(n))
            }
            result => Poll::Ready(result),
        }
    }

    /// A read outside the operations (the poll forms) drained the fd of `token`: until epoll
    /// reports it readable again, reads and read-readiness waits need not ask the kernel.
    pub(crate) fn mark_read_drained(&self, token: usize) {
        if let Some(source) = self.inner.borrow_mut().sources.get_mut(token) {
            source.maybe_readable = false;
        }
    }

    /// Whether a read of the fd of `token` may find something (or the end of the stream);
    /// false only between a read that drained it and its next readable edge.
    pub(crate) fn maybe_readable(&self, token: usize) -> bool {
        self.inner
            .borrow()
            .sources
            .get(token)
            .is_none_or(|source| source.maybe_readable || source.read_closed)
    }

    fn wait_for(&self, token: usize, direction: Direction, waker: &Waker) {
        // Cloned before the borrow, and a duplicate dropped after it: a waker's clone and drop
        // are foreign code.
        let waker = waker.clone();
        let mut inner = self.inner.borrow_mut();
        let Some(source) = inner.sources.get_mut(token) else {
            unreachable!("a live SharedFd keeps its token registered");
        };
        let duplicate = match direction {
            Direction::Read => source.readers.add(waker),
            Direction::Write => source.writers.add(waker),
        };
        drop(inner);
        drop(duplicate);
    }

    /// Leaves `waker` for the next `direction` edge of the fd of `token`, as the entry of the
    /// readiness wait `waiter` (given an id on its first call; an entry an edge already took
    /// is added again).
    pub(crate) fn wait_ready(
        &self,
        token: usize,
        direction: Direction,
        waiter: &mut Option<u64>,
        waker: &Waker,
    ) {
        let mut inner = self.inner.borrow_mut();
        let id = *waiter.get_or_insert_with(|| {
            inner.next_waiter += 1;
            inner.next_waiter
        });
        let Some(source) = inner.sources.get_mut(token) else {
            unreachable!("a live SharedFd keeps its token registered");
        };
        match source.waiters.iter_mut().find(|entry| entry.id == id) {
            Some(entry) if entry.waker.will_wake(waker) => {}
            Some(entry) => entry.waker = waker.clone(),
            None => source.waiters.push(ReadyWaiter {
                id,
                direction,
                waker: waker.clone(),
            }),
        }
    }

    /// Takes out the entry of readiness wait `waiter` (its future is dropped, or done).
    pub(crate) fn forget_ready(&self, token: usize, waiter: u64) {
        // Waits are dropped by tasks, never while the driver dispatches events, so the borrow
        // is free; were it not, the entry would merely be woken once, spuriously.
        let Ok(mut inner) = self.inner.try_borrow_mut() else {
            return;
        };
        if let Some(source) = inner.sources.get_mut(token)
            && let Some(at) = source.waiters.iter().position(|entry| entry.id == waiter)
        {
            // The entry holds a waker, user code: drop it once the borrow is released.
            let entry = source.waiters.swap_remove(at);
            drop(inner);
            drop(entry);
        }
    }

    pub(crate) fn park(&self, timeout: Option<Duration>) -> io::Result<()> {
        let mut to_wake = self.wait(timeout)?;
        let mut first_panic = None;
        for waker in to_wake.drain(..) {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(move || waker.wake())) {
                first_panic.get_or_insert(payload);
            }
        }
        self.inner.borrow_mut().to_wake = to_wake;
        match first_panic {
            Some(payload) => resume_unwind(payload),
            None => Ok(()),
        }
    }

    /// One `epoll_wait`; returns the wakers its events call for, in order.
    fn wait(&self, timeout: Option<Duration>) -> io::Result<Vec<Waker>> {
        let mut inner = self.inner.borrow_mut();
        let timeout_ms = match timeout {
            None => -1,
            // Round up, so a sub-millisecond deadline sleeps 1 ms instead of spinning at 0.
            Some(timeout) => timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
        };
        let capacity = inner.events.capacity() as i32;
        // SAFETY: `events` has room for `capacity` entries, which the kernel may write.
        let waited = cvt(unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                inner.events.as_mut_ptr(),
                capacity,
                timeout_ms,
            )
        });
        let ready = match waited {
            Ok(n) => n as usize,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => 0,
            Err(err) => return Err(err),
        };
        // SAFETY: `epoll_wait` initialised the first `ready` entries, `ready <= capacity`.
        unsafe { inner.events.set_len(ready) };
        let Inner {
            sources,
            events,
            to_wake,
            ..
        } = &mut *inner;
        let mut to_wake = std::mem::take(to_wake);
        for event in events.drain(..) {
            let token = event.u64;
            if token == WAKE_TOKEN {
                sys::eventfd_drain(self.wake_fd);
                continue;
            }
            let Some(source) = sources.get_mut(token as usize) else {
                continue;
            };
            let flags = event.events as i32;
            let failed = flags & (libc::EPOLLERR | libc::EPOLLHUP) != 0;
            let readable = flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLPRI) != 0;
            if flags & libc::EPOLLRDHUP != 0 || failed {
                source.read_closed = true;
            }
            if failed || readable {
                source.maybe_readable = true;
                source.readers.take_into(&mut to_wake);
                source.take_waiters(Direction::Read, &mut to_wake);
            }
            let writable = flags & libc::EPOLLOUT != 0;
            if failed || writable {
                source.writers.take_into(&mut to_wake);
                source.take_waiters(Direction::Write, &mut to_wake);
            }
        }
        Ok(to_wake)
    }
}
