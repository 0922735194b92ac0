//! The io_uring backend: one ring per core, batched submissions, owned buffers.
//!
//! Operations push submission entries as they are first polled; nothing enters the kernel until
//! the core loop calls [`UringDriver::park`], which submits the whole batch and reaps completions
//! in one `io_uring_enter` (and sleeps in that same call, with the timer wheel's deadline as an
//! `EXT_ARG` timeout, when the core has nothing else to do).
//!
//! Every submitted operation has a slab slot whose [`Lifecycle`] says who owns its data: the
//! future while it is alive, the driver once the future is dropped (an orphan). An orphan's data
//! — its buffer above all — is only released when the kernel posts the terminal completion, so
//! the kernel never writes into freed memory. A cross-thread wake is a poll kept armed on the
//! executor's eventfd (a poll rather than a read, so it needs no buffer and works whatever the
//! fd's O_NONBLOCK flag and the kernel version). Another io_uring core wakes this one with a
//! `MSG_RING` instead, which posts a completion straight into this ring: no eventfd write, no
//! read, no re-arm. This ring sends such messages too, as entries of its own batch.
//!
//! This module owns the ring, the slab of operations and their lifecycle. It must never block
//! anywhere but in `park`, never run user code beyond waking wakers, and never free an orphan's
//! data before its completion.

mod setup;

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use io_uring::types::{SubmitArgs, Timespec};
use io_uring::{EnterFlags, IoUring, opcode, squeue, types};
use slab::Slab;

pub(crate) use setup::build_ring;
pub use setup::{RingSetupCause, RingSetupError};

use super::{EventfdWake, Operation};
use crate::sys;

/// `user_data` of the poll kept armed on the executor's wake eventfd.
const WAKE_TOKEN: u64 = u64::MAX;
/// `user_data` of cancellation requests, whose own completions carry no information we need.
const CANCEL_TOKEN: u64 = u64::MAX - 1;
/// `user_data` of the completion another core's `MSG_RING` posts here to wake this core.
const RING_WAKE_TOKEN: u64 = u64::MAX - 2;

/// How long shutdown waits for the kernel to finish cancelled operations before it gives up
/// and leaks their buffers (never frees memory the kernel may still write).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Who owns an operation's data, and what the driver knows of its completion.
enum Lifecycle {
    /// Submitted; the future has not been polled since.
    Submitted,
    /// Submitted; the future waits with this waker.
    Waiting(Waker),
    /// The future was dropped. The driver owns the data until the terminal completion, when
    /// `Orphan::complete` releases it.
    Orphaned(Box<dyn Orphan>),
    /// The kernel finished; the future has not collected the result yet.
    Completed(i32),
    /// A `MSG_RING` this core sent to wake another one; if it fails, the other core is woken
    /// through its eventfd instead. It has no future.
    RingWake(Arc<dyn EventfdWake>),
}

/// An operation whose future is gone.
trait Orphan {
    fn complete(self: Box<Self>, result: i32);
}

impl<T: Operation> Orphan for T {
    fn complete(self: Box<Self>, result: i32) {
        (*self).orphan_completed(result);
    }
}

/// One core's ring and its in-flight operations.
pub(crate) struct UringDriver {
    inner: RefCell<Inner>,
}

struct Inner {
    ring: IoUring,
    /// Index of the ring fd registered with `IORING_REGISTER_RING_FDS`, when the kernel allows.
    registered_index: Option<u32>,
    /// Whether the kernel has `IORING_OP_MSG_RING` (5.18).
    msg_ring: bool,
    ops: Slab<Lifecycle>,
    wake_fd: RawFd,
    wake_armed: bool,
    /// Completions dispatched so far (wrapping); tells `park` whether a flush woke anyone.
    completions_reaped: u64,
}

impl UringDriver {
    pub(crate) fn new(entries: u32, wake_fd: RawFd) -> io::Result<UringDriver> {
        let (ring, flags) = build_ring(entries)?;
        log::debug!("io_uring ring with {entries} entries, flags {flags:?}");
        let registered_index = register_ring_fd(ring.as_raw_fd());
        let msg_ring = setup::supports(&ring, opcode::MsgRingData::CODE);
        let capacity = ring.params().cq_entries() as usize;
        Ok(UringDriver {
            inner: RefCell::new(Inner {
                ring,
                registered_index,
                msg_ring,
                ops: Slab::with_capacity(capacity),
                wake_fd,
                wake_armed: false,
                completions_reaped: 0,
            }),
        })
    }

    /// Queues an operation's entry; returns its key. Entering the kernel happens in `park`,
    /// unless the submission queue is full, when the batch is flushed first.
    pub(crate) fn submit(&self, entry: squeue::Entry) -> io::Result<usize> {
        let mut inner = self.inner.borrow_mut();
        let key = inner.ops.insert(Lifecycle::Submitted);
        let entry = entry.user_data(key as u64);
        if let Err(err) = inner.push(&entry) {
            inner.ops.remove(key);
            return Err(err);
        }
        Ok(key)
    }

    pub(crate) fn ring_fd_for_wakes(&self) -> Option<io::Result<OwnedFd>> {
        let inner = self.inner.borrow();
        if !inner.msg_ring {
            return None;
        }
        // SAFETY: the ring's fd stays open while `inner.ring` lives, and the borrow ends with
        // this statement, once the duplicate is made.
        let ring_fd = unsafe { BorrowedFd::borrow_raw(inner.ring.as_raw_fd()) };
        Some(ring_fd.try_clone_to_owned())
    }

    pub(crate) fn post_ring_wake(
        &self,
        target_ring: RawFd,
        fallback: Arc<dyn EventfdWake>,
    ) -> bool {
        let Ok(mut inner) = self.inner.try_borrow_mut() else {
            return false;
        };
        if !inner.msg_ring {
            return false;
        }
        let key = inner.ops.insert(Lifecycle::RingWake(fallback));
        let entry = opcode::MsgRingData::new(types::Fd(target_ring), 0, RING_WAKE_TOKEN, None)
            .build()
            .user_data(key as u64);
        if inner.push(&entry).is_err() {
            inner.ops.remove(key);
            return false;
        }
        // Send it now rather than with this core's next batch: the sleeping core should start
        // on its queue while this one goes on producing. (Deferring it to the next park saved
        // the syscall but made a busy sender fill a whole channel before the receiver woke;
        // docs/benchmarks-mesh.md.) If this submit fails, the entry goes with the next batch.
        let _ = inner.submit_now();
        true
    }

    /// Collects an operation's result, or registers the waker to be woken with it.
    pub(crate) fn poll_op(&self, key: usize, cx: &mut Context<'_>) -> Poll<i32> {
        let mut inner = self.inner.borrow_mut();
        let Some(lifecycle) = inner.ops.get_mut(key) else {
            unreachable!("an in-flight Op's key stays in the slab until it collects its result");
        };
        match lifecycle {
            Lifecycle::Completed(result) => {
                let result = *result;
                inner.ops.remove(key);
                Poll::Ready(result)
            }
            Lifecycle::Waiting(waker) if waker.will_wake(cx.waker()) => Poll::Pending,
            Lifecycle::Submitted | Lifecycle::Waiting(_) => {
                *lifecycle = Lifecycle::Waiting(cx.waker().clone());
                Poll::Pending
            }
            Lifecycle::Orphaned(_) | Lifecycle::RingWake(_) => {
                unreachable!("an orphan or a ring wake has no future to poll it")
            }
        }
    }

    /// The future of operation `key` was dropped: take over its data and cancel it.
    pub(crate) fn abandon<T: Operation>(&self, key: usize, data: T) {
        let mut inner = self.inner.borrow_mut();
        match inner.ops.get_mut(key) {
            Some(Lifecycle::Completed(result)) => {
                let result = *result;
                inner.ops.remove(key);
                drop(inner);
                data.orphan_completed(result);
            }
            Some(lifecycle) => {
                *lifecycle = Lifecycle::Orphaned(Box::new(data));
                let cancel = opcode::AsyncCancel::new(key as u64)
                    .build()
                    .user_data(CANCEL_TOKEN);
                // A failed push (the ring cannot take entries at all) only loses the early
                // cancel: the data stays owned by the slab until the operation completes.
                let _ = inner.push(&cancel);
            }
            None => unreachable!("an in-flight Op's key stays in the slab"),
        }
    }

    pub(crate) fn park(&self, timeout: Option<Duration>) -> io::Result<()> {
        let mut inner = self.inner.borrow_mut();
        // Arming the wake poll may find the submission queue full and flush it, which reaps
        // completions and wakes tasks: the core must then not block.
        let woke_before = inner.completions_reaped;
        inner.arm_wake_poll()?;
        let timeout = if inner.completions_reaped != woke_before {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        inner.enter(timeout)?;
        inner.reap();
        Ok(())
    }

    /// Cancels everything still in flight and waits (bounded) for the terminal completions.
    pub(crate) fn shutdown(&self) {
        let mut inner = self.inner.borrow_mut();
        let keys: Vec<u64> = inner
            .ops
            .iter()
            .filter(|(_, lc)| !matches!(lc, Lifecycle::Completed(_)))
            .map(|(key, _)| key as u64)
            .collect();
        for key in keys
            .into_iter()
            .chain(inner.wake_armed.then_some(WAKE_TOKEN))
        {
            let cancel = opcode::AsyncCancel::new(key)
                .build()
                .user_data(CANCEL_TOKEN);
            let _ = inner.push(&cancel);
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while inner.has_pending() && Instant::now() < deadline {
            if let Err(err) = inner.enter(Some(Duration::from_millis(10))) {
                log::error!("io_uring_enter failed during shutdown: {err}");
                break;
            }
            inner.reap();
        }
        if inner.has_pending() {
            log::error!(
                "coreio: {} io_uring operations did not finish within {SHUTDOWN_GRACE:?} of \
                 shutdown; leaking their buffers rather than freeing memory the kernel may write",
                inner.ops.len()
            );
            for (_, lifecycle) in std::mem::take(&mut inner.ops) {
                std::mem::forget(lifecycle);
            }
        }
    }
}

impl Inner {
    fn has_pending(&self) -> bool {
        self.wake_armed
            || self
                .ops
                .iter()
                .any(|(_, lc)| !matches!(lc, Lifecycle::Completed(_)))
    }

    /// Pushes one entry, flushing the submission queue to the kernel while it is full.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the entries coreio pushes point only to memory that outlives the
            // operation: operation data kept alive by the slab (see `Operation`'s contract), or
            // nothing at all (the wake poll, cancels).
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            // Full: hand the batch to the kernel without waiting, then retry.
            self.enter(Some(Duration::ZERO))?;
            self.reap();
        }
    }

    fn arm_wake_poll(&mut self) -> io::Result<()> {
        if self.wake_armed {
            return Ok(());
        }
        let entry = opcode::PollAdd::new(types::Fd(self.wake_fd), libc::POLLIN as u32)
            .build()
            .user_data(WAKE_TOKEN);
        self.push(&entry)?;
        self.wake_armed = true;
        Ok(())
    }

    /// One `io_uring_enter`: submits the queued batch and waits for at least one completion
    /// unless `timeout` is zero. Interruptions and a busy completion queue are not errors: the
    /// caller reaps what is there and the core loop comes back.
    fn enter(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let (min_complete, timespec) = match timeout {
            Some(Duration::ZERO) => (0, None),
            Some(timeout) => (1, Some(Timespec::from(timeout))),
            None => (1, None),
        };
        let args = timespec.as_ref().map(|ts| SubmitArgs::new().timespec(ts));
        self.enter_raw(min_complete, EnterFlags::GETEVENTS, args.as_ref())
    }

    /// Hands the queued entries to the kernel now, without waiting and without processing
    /// completions (they stay queued for the next `park` to reap).
    fn submit_now(&mut self) -> io::Result<()> {
        self.enter_raw(0, EnterFlags::empty(), None)
    }

    fn enter_raw(
        &mut self,
        min_complete: u32,
        mut flags: EnterFlags,
        args: Option<&SubmitArgs<'_, '_>>,
    ) -> io::Result<()> {
        let to_submit = self.ring.submission().len() as u32;
        let (arg_ptr, arg_size) = match args {
            Some(args) => {
                flags |= EnterFlags::EXT_ARG;
                (
                    (args as *const SubmitArgs).cast::<libc::c_void>(),
                    std::mem::size_of::<SubmitArgs>(),
                )
            }
            None => (std::ptr::null(), 0),
        };
        let fd = match self.registered_index {
            Some(index) => {
                flags |= EnterFlags::REGISTERED_RING;
                index as libc::c_long
            }
            None => self.ring.as_raw_fd() as libc::c_long,
        };
        // SAFETY: `fd` is this ring (or its registered index, flagged as such); `arg_ptr` is
        // null or points to `args`, a live `io_uring_getevents_arg` of `arg_size` bytes, flagged
        // with EXT_ARG. The submitted entries' memory is covered by `push`'s contract.
        let res = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                fd,
                to_submit as libc::c_long,
                min_complete as libc::c_long,
                flags.bits() as libc::c_long,
                arg_ptr,
                arg_size,
            )
        };
        if res >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // Timeout reached, interrupted by a signal, or the kernel needs the CQ drained
            // before it takes more submissions: all mean "reap and come back".
            Some(libc::ETIME | libc::EINTR | libc::EAGAIN | libc::EBUSY) => Ok(()),
            _ => Err(err),
        }
    }

    /// Dispatches every completion in the queue.
    fn reap(&mut self) {
        loop {
            let mut drained = 0usize;
            let capacity;
            {
                let mut cq = self.ring.completion();
                capacity = cq.capacity();
                // Waking only queues tasks, and an orphan's completion only closes or frees what
                // it owned, so nothing here re-enters the driver.
                for cqe in &mut cq {
                    drained += 1;
                    let user_data = cqe.user_data();
                    let result = cqe.result();
                    match user_data {
                        WAKE_TOKEN => {
                            self.wake_armed = false;
                            sys::eventfd_drain(self.wake_fd);
                        }
                        CANCEL_TOKEN | RING_WAKE_TOKEN => {}
                        key => complete_op(&mut self.ops, key as usize, result),
                    }
                }
            }
            self.completions_reaped = self.completions_reaped.wrapping_add(drained as u64);
            // A full queue may mean the kernel holds overflowed completions (FEAT_NODROP): a
            // GETEVENTS enter flushes them, then reap again.
            if drained < capacity && !self.ring.submission().cq_overflow() {
                return;
            }
            if self.enter(Some(Duration::ZERO)).is_err() {
                return;
            }
        }
    }
}

fn complete_op(ops: &mut Slab<Lifecycle>, key: usize, result: i32) {
    let Some(lifecycle) = ops.get_mut(key) else {
        debug_assert!(false, "completion for unknown operation {key}");
        return;
    };
    match std::mem::replace(lifecycle, Lifecycle::Completed(result)) {
        Lifecycle::Submitted => {}
        Lifecycle::Waiting(waker) => waker.wake(),
        Lifecycle::Orphaned(orphan) => {
            ops.remove(key);
            orphan.complete(result);
        }
        Lifecycle::RingWake(fallback) => {
            ops.remove(key);
            if result < 0 {
                log::debug!(
                    "MSG_RING wake failed ({}); waking by eventfd",
                    io::Error::from_raw_os_error(-result)
                );
                fallback.wake_by_eventfd();
            }
        }
        Lifecycle::Completed(_) => debug_assert!(false, "operation {key} completed twice"),
    }
}

/// Registers the ring fd so each enter skips the kernel's fd lookup (Linux 5.18+); `None` when
/// the kernel does not support it, which only costs that lookup.
fn register_ring_fd(ring_fd: RawFd) -> Option<u32> {
    /// `struct io_uring_rsrc_update` from the kernel's uapi.
    #[repr(C)]
    struct RsrcUpdate {
        offset: u32,
        resv: u32,
        data: u64,
    }
    const IORING_REGISTER_RING_FDS: libc::c_long = 20;
    let mut update = RsrcUpdate {
        offset: u32::MAX,
        resv: 0,
        data: ring_fd as u64,
    };
    // SAFETY: `update` is a valid `io_uring_rsrc_update` array of length 1 for the call.
    let res = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring_fd as libc::c_long,
            IORING_REGISTER_RING_FDS,
            &mut update as *mut RsrcUpdate,
            1 as libc::c_long,
        )
    };
    (res == 1).then_some(update.offset)
}
