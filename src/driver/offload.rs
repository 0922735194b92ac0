//! Operations run on the blocking pool instead of in a ring or on readiness: every file and
//! path operation on epoll (a regular file is always "ready", and epoll refuses to watch one),
//! and on io_uring each one whose opcode the running kernel lacks.
//!
//! The pool thread plays the kernel's part. It runs the operation's [`BlockingCall`] (the
//! syscall, through pointers into memory the operation owns) and posts the result through a
//! one-shot slot, whose waker is the awaiting task's. As with a ring, the operation's data
//! stays on its core for as long as the call may use it: in the `Op` while the future lives,
//! and once the future is dropped, here, among the [`Offloaded`] orphans, until the call has
//! returned. The data is then released on the core (never on the pool thread: it may be
//! `!Send`, such as a caller's buffer type or a descriptor share), with the operation's
//! `orphan_completed`, which for an open closes the descriptor nobody will collect.
//!
//! A call that finishes for an orphan wakes the core (through its eventfd), whose next `park`
//! releases the orphan. At shutdown the driver waits for the calls still running, as long as
//! the ring's grace, and leaks what they may still use after that.

// This module owns the orphans of offloaded operations. It must never drop an orphan's data while
// its call may still run, nor run user code (a buffer's `Drop`) while borrowed.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::op::Orphan;
use crate::blocking::{BlockingPool, Waiter};
use crate::panic::Payload;
use crate::sys;

/// A syscall an offloaded operation makes on a pool thread: the result an io_uring completion
/// would carry (a count, a descriptor), or the error.
pub(crate) struct BlockingCall(Box<dyn FnOnce() -> io::Result<u32> + Send>);

impl BlockingCall {
    /// Wraps `call`.
    ///
    /// # Safety
    ///
    /// `call` may dereference pointers into the operation's data only where they point to
    /// memory that the data owns, that does not move when the data moves (heap memory), and
    /// that stays valid until the data is dropped: the driver keeps the data alive and
    /// untouched until `call` has returned (or was dropped without running). Pointers travel
    /// as addresses (`expose_provenance`), which is what makes the closure `Send`.
    pub(crate) unsafe fn new(call: impl FnOnce() -> io::Result<u32> + Send + 'static) -> Self {
        BlockingCall(Box::new(call))
    }

    /// A call for an operation that has no blocking form.
    pub(crate) fn unsupported(what: &'static str) -> Self {
        BlockingCall(Box::new(move || {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{what} has no blocking form"),
            ))
        }))
    }
}

/// The awaiting side of a call on the pool: its outcome, or `None` if the pool discarded it.
pub(crate) type CallWaiter = Waiter<io::Result<u32>>;

/// Queues `call` on `pool`; a refusal (full queue, no thread, stopped pool) is the error.
pub(crate) fn start(pool: &BlockingPool, call: BlockingCall) -> io::Result<CallWaiter> {
    pool.start_call(call.0).map_err(io::Error::from)
}

/// What a finished call's waiter gives: its result, or why there is none.
pub(crate) fn poll_call(waiter: &mut CallWaiter, cx: &mut Context<'_>) -> Poll<io::Result<u32>> {
    Pin::new(waiter).poll(cx).map(outcome_result)
}

fn outcome_result(outcome: Option<Result<io::Result<u32>, Payload>>) -> io::Result<u32> {
    match outcome {
        Some(Ok(result)) => result,
        Some(Err(_panic)) => Err(io::Error::other(
            "an offloaded I/O call panicked on the blocking pool",
        )),
        None => Err(io::Error::other(
            "an offloaded I/O call was discarded before it ran: the runtime stopped",
        )),
    }
}

/// A call's result as a completion would carry it, for `orphan_completed`: the count, or
/// `-errno` (`-ECANCELED` for a call that panicked or never ran).
pub(crate) fn raw_result(result: io::Result<u32>) -> i32 {
    match result {
        Ok(n) => n.min(i32::MAX as u32) as i32,
        Err(err) => -err.raw_os_error().unwrap_or(libc::ECANCELED),
    }
}

/// An operation whose future was dropped while its call was on the pool.
struct Pending {
    call: Call,
    data: Box<dyn Orphan>,
}

/// Where an orphan's call stands.
enum Call {
    /// On the pool; the waiter's waker is the core's.
    Running(CallWaiter),
    /// It had finished when its future was dropped.
    Finished(io::Result<u32>),
}

impl Call {
    fn is_finished(&self) -> bool {
        match self {
            Call::Running(waiter) => waiter.is_completed(),
            Call::Finished(_) => true,
        }
    }

    /// The result of a finished call.
    fn result(self) -> io::Result<u32> {
        match self {
            Call::Finished(result) => result,
            Call::Running(mut waiter) => {
                let mut cx = Context::from_waker(Waker::noop());
                match Pin::new(&mut waiter).poll(&mut cx) {
                    Poll::Ready(outcome) => outcome_result(outcome),
                    Poll::Pending => unreachable!("only finished calls are released"),
                }
            }
        }
    }
}

/// The orphans of one core's offloaded operations.
pub(crate) struct Offloaded {
    orphans: RefCell<Vec<Pending>>,
    /// Wakes this core (by eventfd) when an orphan's call finishes, so that the next `park`
    /// releases it.
    core_waker: Waker,
}

/// Wakes a core through a duplicate of its eventfd, which the waker owns: a pool thread may
/// finish an orphan's call after the core is gone, and must then write to a live eventfd, not
/// to a closed (or reused) descriptor number.
struct CoreWake(OwnedFd);

impl Wake for CoreWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        sys::eventfd_signal(self.0.as_raw_fd());
    }
}

impl Offloaded {
    /// The orphan list of the core whose wake eventfd is `wake_fd`.
    pub(crate) fn new(wake_fd: RawFd) -> io::Result<Offloaded> {
        // SAFETY: the core's eventfd is open while its driver is built.
        let wake_fd = unsafe { BorrowedFd::borrow_raw(wake_fd) }.try_clone_to_owned()?;
        Ok(Offloaded {
            orphans: RefCell::new(Vec::new()),
            core_waker: Waker::from(Arc::new(CoreWake(wake_fd))),
        })
    }

    /// The future of an offloaded operation was dropped before its call finished: keep `data`
    /// until it has. Runs no user code (the caller is a future's `Drop`).
    pub(crate) fn abandon<T: Orphan + 'static>(&self, mut waiter: CallWaiter, data: T) {
        // From now on the call's completion wakes the core rather than the task.
        let mut cx = Context::from_waker(&self.core_waker);
        // A call that had finished is released by the next `park` like any other orphan:
        // `orphan_completed` is user code, not for a `Drop`.
        let call = match Pin::new(&mut waiter).poll(&mut cx) {
            Poll::Ready(outcome) => Call::Finished(outcome_result(outcome)),
            Poll::Pending => Call::Running(waiter),
        };
        if let Call::Finished(_) = call {
            // No call will wake the core to release it: wake it now.
            self.core_waker.wake_by_ref();
        }
        self.orphans.borrow_mut().push(Pending {
            call,
            data: Box::new(data),
        });
    }

    /// Releases the orphans whose calls have finished; returns the first panic of their
    /// releases (the rest still ran).
    pub(crate) fn release_finished(&self) -> Option<Payload> {
        let finished: Vec<Pending> = {
            let mut orphans = self.orphans.borrow_mut();
            if orphans.is_empty() {
                return None;
            }
            let (done, running) = std::mem::take(&mut *orphans)
                .into_iter()
                .partition(|pending| pending.call.is_finished());
            *orphans = running;
            done
        };
        let mut first_panic = None;
        for Pending { call, data } in finished {
            let raw = raw_result(call.result());
            if let Err(payload) = catch_unwind(AssertUnwindSafe(move || data.complete(raw))) {
                first_panic.get_or_insert(payload);
            }
        }
        first_panic
    }

    /// At shutdown: waits at most `grace` for the calls of orphans still on the pool, releasing
    /// each as it finishes; leaks the data of those still running after that. Returns the first
    /// panic of a release.
    pub(crate) fn shutdown(&self, grace: Duration) -> Option<Payload> {
        let deadline = Instant::now() + grace;
        let mut first_panic = None;
        loop {
            if let Some(payload) = self.release_finished() {
                first_panic.get_or_insert(payload);
            }
            if self.orphans.borrow().is_empty() {
                return first_panic;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let stuck = std::mem::take(&mut *self.orphans.borrow_mut());
        log::error!(
            "coreio: {} blocking-pool I/O calls did not finish within {grace:?} of shutdown; \
             leaking their buffers rather than freeing memory a pool thread may still write",
            stuck.len()
        );
        for pending in stuck {
            std::mem::forget(pending.data);
        }
        first_panic
    }
}
