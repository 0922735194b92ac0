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
//! core's wake eventfd (a poll rather than a read, so it needs no buffer and works whatever the
//! fd's O_NONBLOCK flag and the kernel version). Another io_uring core wakes this one with a
//! `MSG_RING` instead, which posts a completion straight into this ring: no eventfd write, no
//! read, no re-arm. This ring sends such messages too, as entries of its own batch.
//!
//! Completions never run user code while the driver's state is borrowed: waking a waker and
//! releasing an orphan's data (a user buffer's `Drop`) are queued as [`Deferred`] work while
//! the completion queue is reaped, and run once the borrow is released, each under
//! `catch_unwind`, so a panicking waker or buffer neither leaves the slab half-updated nor
//! stops the rest of the batch; the first panic is resumed afterwards. Shutdown (after the last
//! task, also when a panic unwound out of the core loop) cancels everything in flight and waits
//! for the terminal completions; what the kernel does not finish within [`SHUTDOWN_GRACE`] is
//! leaked, never freed, and the ring is then marked unsettled for good (see [`settled`]).

// This module owns the ring, the slab of operations and their lifecycle. It must never block
// anywhere but in `park` and `shutdown`, never run user code while `inner` is borrowed, and never
// free an orphan's data before its completion.

mod fixed_files;
mod setup;
mod sqpoll_share;
mod stream;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use io_uring::types::{SubmitArgs, Timespec};
use io_uring::{EnterFlags, IoUring, opcode, squeue, types};
use slab::Slab;

pub use fixed_files::{DEFAULT_REGISTER_AFTER, DEFAULT_REGISTERED_FILES};
pub(crate) use fixed_files::{FileTableConfig, FixedUse, uring_target};
pub use setup::{RingSetupCause, RingSetupError};
pub(crate) use setup::{SqPoll, build_ring, optional_opcodes};
pub(crate) use sqpoll_share::{Publisher, SqPollShare};

use super::op::Orphan;
use super::recv_pool::{BUFFER_GROUP, RecvPool, RecvPoolConfig};
use super::{Cqe, DriverId, EventfdWake, Operation};
use crate::panic::Payload;
use crate::sys;
use fixed_files::{EMPTY_SLOT, FileSlot, FileTable};

/// Whether this kernel's `IORING_OP_SEND` takes a destination address (Linux 6.0, the release
/// that added `IORING_OP_SEND_ZC`, which the opcode probe sees; there is no probe for the
/// address itself). Set by each ring as it starts; every ring of a process has the same kernel.
static SEND_TAKES_ADDRESS: AtomicBool = AtomicBool::new(false);

/// Whether a datagram send may be a `SEND` with a destination address instead of a `SENDMSG`.
pub(crate) fn send_takes_address() -> bool {
    SEND_TAKES_ADDRESS.load(Ordering::Relaxed)
}

/// Whether a stream receive known to find the socket empty asks the kernel to wait for data
/// before it tries (`IORING_RECVSEND_POLL_FIRST`, Linux 5.19; as for [`SEND_TAKES_ADDRESS`],
/// the `SEND_ZC` probe of 6.0 stands for it), saving the receive attempt bound to fail. Set by
/// each ring as it starts, from `COREIO_RECV_POLL_FIRST` (a process-wide switch).
static RECV_POLL_FIRST: AtomicBool = AtomicBool::new(false);

/// The `ioprio` flag of [`RECV_POLL_FIRST`] (`IORING_RECVSEND_POLL_FIRST` in the kernel's uapi).
const RECVSEND_POLL_FIRST: u16 = 1;

/// The `ioprio` of a stream receive: [`RECVSEND_POLL_FIRST`] when the socket's last receive
/// emptied it and the kernel takes the flag, nothing otherwise.
pub(crate) fn recv_ioprio(socket_drained: bool) -> u16 {
    if socket_drained && RECV_POLL_FIRST.load(Ordering::Relaxed) {
        RECVSEND_POLL_FIRST
    } else {
        0
    }
}

/// `user_data` of the poll kept armed on the core's wake eventfd.
const WAKE_TOKEN: u64 = u64::MAX;
/// `user_data` of cancellation requests, whose own completions carry no information we need.
const CANCEL_TOKEN: u64 = u64::MAX - 1;
/// `user_data` of the completion another core's `MSG_RING` posts here to wake this core.
const RING_WAKE_TOKEN: u64 = u64::MAX - 2;

/// How long shutdown waits for the kernel to finish cancelled operations before it gives up
/// and leaks their buffers (never frees memory the kernel may still write).
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    Completed(Cqe),
    /// A `MSG_RING` this core sent to wake another one; if it fails, the other core is woken
    /// through its eventfd instead. It has no future.
    RingWake(Arc<dyn EventfdWake>),
    /// A streaming (multishot) operation whose future is alive: its completions queue here,
    /// flags and all, until the future takes them (see `stream.rs`).
    Streaming(Box<stream::Stream>),
    /// A streaming operation whose future was dropped: each further completion is handed to
    /// its `item` function (which releases what it produced), and the terminal one releases
    /// the data.
    StreamOrphaned(stream::StreamOrphan),
    /// An update registering a socket in the ring's file table (`fixed_files`). It has no
    /// future; the slot holds the descriptor array the kernel reads.
    FileRegister(Rc<FileSlot>),
    /// An update emptying this slot of the file table. It has no future.
    FileEmpty(u32),
}

impl Lifecycle {
    /// Whether the kernel may still post a completion for this slot (shutdown cancels these
    /// and waits for them).
    fn in_kernel(&self) -> bool {
        match self {
            Lifecycle::Completed(_) => false,
            Lifecycle::Streaming(stream) => !stream.ended,
            Lifecycle::Submitted
            | Lifecycle::Waiting(_)
            | Lifecycle::Orphaned(_)
            | Lifecycle::RingWake(_)
            | Lifecycle::StreamOrphaned(_)
            | Lifecycle::FileRegister(_)
            | Lifecycle::FileEmpty(_) => true,
        }
    }
}

/// User code a completion calls for, run by [`UringDriver::run_deferred`] once the driver's
/// state is no longer borrowed.
enum Deferred {
    /// The operation's future waits with this waker.
    Wake(Waker),
    /// An orphan's terminal completion: release what it owns (close an accepted fd, drop the
    /// buffer — a user type whose `Drop` may do anything, panic or call into the driver).
    Release(Box<dyn Orphan>, i32),
    /// A `MSG_RING` wake failed: wake the target core by eventfd instead.
    WakeByEventfd(Arc<dyn EventfdWake>),
    /// A completion of a dropped streaming operation: release what it produced. The last of
    /// these (or a `DropData`) drops the operation's data.
    StreamItem(stream::StreamOrphan, Cqe),
    /// The data of a dropped streaming operation that had ended already.
    DropData(stream::StreamOrphan),
}

impl Deferred {
    fn run(self) {
        match self {
            Deferred::Wake(waker) => waker.wake(),
            Deferred::Release(orphan, result) => orphan.complete(result),
            Deferred::WakeByEventfd(fallback) => fallback.wake_by_eventfd(),
            Deferred::StreamItem(orphan, cqe) => orphan.borrow_mut().item(cqe),
            Deferred::DropData(data) => drop(data),
        }
    }
}

/// Rings whose kernel side may still own operation data: every ring not yet shut down, and
/// every ring whose shutdown gave up waiting and leaked what the kernel still held. Consulted
/// only off the hot path, when an operation is polled or dropped away from its own driver.
static UNSETTLED: Mutex<Vec<DriverId>> = Mutex::new(Vec::new());

fn unsettled() -> MutexGuard<'static, Vec<DriverId>> {
    // The list stays valid whatever panicked while it was locked (a push or a retain).
    UNSETTLED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether the kernel is done with every operation ever submitted through driver `id`: true for
/// a ring that shut down and saw all its terminal completions, and for any epoll driver. An
/// operation of a settled driver can hand its buffer back; one of an unsettled driver must not.
pub(crate) fn settled(id: DriverId) -> bool {
    !unsettled().contains(&id)
}

/// The orphan of a close submitted by `close_later`: nothing to release.
struct ClosedByKernel;

impl Orphan for ClosedByKernel {
    fn complete(self: Box<Self>, result: i32) {
        if result < 0 && result != -libc::EINTR {
            // A deferred write error surfaces here, with nobody left to report it to.
            log::debug!(
                "closing a file in the background failed: {}",
                std::io::Error::from_raw_os_error(-result)
            );
        }
    }
}

/// One core's ring and its in-flight operations.
pub(crate) struct UringDriver {
    id: DriverId,
    /// The ring has a registered file table (`Inner::files`), known without a borrow.
    file_table: bool,
    inner: RefCell<Inner>,
}

struct Inner {
    ring: IoUring,
    /// Index of the ring fd registered with `IORING_REGISTER_RING_FDS`, when the kernel allows.
    registered_index: Option<u32>,
    /// Whether the kernel has `IORING_OP_MSG_RING` (5.18).
    msg_ring: bool,
    /// A kernel thread polls the submission queue (`Builder::sqpoll`): entering the kernel is
    /// only needed to wait, to wake that thread once it slept, or to flush overflows.
    sqpoll: bool,
    /// The CPU that thread is bound to (`Builder::sqpoll_cpus`), when the kernel bound it.
    sqpoll_cpu: Option<u32>,
    /// That thread is another core's ring's (`Builder::sqpoll_shared`).
    sqpoll_attached: bool,
    /// The optional opcodes this kernel has (file and path operations; the others are
    /// required): one without its opcode runs on the blocking pool instead.
    opcodes: setup::Opcodes,
    ops: Slab<Lifecycle>,
    wake_fd: RawFd,
    wake_armed: bool,
    /// Completions dispatched so far (wrapping); tells `park` whether a flush woke anyone.
    completions_reaped: u64,
    /// Reaps that found the completion queue overflowed (`IORING_SQ_CQ_OVERFLOW`): the kernel
    /// kept the completions that did not fit in its backlog (`IORING_FEAT_NODROP`, which
    /// coreio requires), a slow path worth sizing the ring against.
    cq_overflows: u64,
    /// User code the reaped completions call for, not run yet.
    deferred: Vec<Deferred>,
    /// Streaming operations whose queue reached its limit: cancelled after the reap.
    to_cancel: Vec<usize>,
    /// An empty vector with capacity, swapped with `deferred` so steady state never allocates.
    spare: Vec<Deferred>,
    /// `shutdown` has run: nothing is in flight any more (or it was leaked).
    shut_down: bool,
    /// The core's receive pool once registered as a provided buffer ring: held until the ring
    /// is unregistered at shutdown (leaked if the shutdown gave up), because the kernel may
    /// write into its buffers until then.
    recv_pool: Option<Rc<RecvPool>>,
    /// The registered file table's bookkeeping, when the ring has one (`fixed_files`).
    files: Option<FileTable>,
}

impl UringDriver {
    /// A ring of `entries` entries for driver `id`, watching `wake_fd`, treating the optional
    /// opcodes in `denied` as missing.
    pub(crate) fn new(
        id: DriverId,
        entries: u32,
        wake_fd: RawFd,
        denied: &[u8],
        sqpoll: Option<SqPoll>,
        files: Option<FileTableConfig>,
        recv_poll_first: bool,
    ) -> io::Result<UringDriver> {
        let (ring, flags) = setup::build_ring_with(entries, sqpoll)?;
        // With a polling thread the kernel runs updates on its own time, so an emptying
        // update could not have run by the time the socket closes (`let_go_of_slot`).
        let files = files
            .filter(|_| !flags.sqpoll)
            .and_then(|config| register_file_table(&ring, config));
        log::debug!("io_uring ring with {entries} entries, flags {flags:?}");
        let registered_index = register_ring_fd(ring.as_raw_fd());
        let opcodes = setup::Opcodes::probe(&ring, denied);
        let msg_ring = opcodes.has(opcode::MsgRingData::CODE);
        SEND_TAKES_ADDRESS.store(opcodes.has(opcode::SendZc::CODE), Ordering::Relaxed);
        RECV_POLL_FIRST.store(
            recv_poll_first && opcodes.has(opcode::SendZc::CODE),
            Ordering::Relaxed,
        );
        let capacity = ring.params().cq_entries() as usize;
        unsettled().push(id);
        Ok(UringDriver {
            id,
            file_table: files.is_some(),
            inner: RefCell::new(Inner {
                ring,
                registered_index,
                msg_ring,
                sqpoll: flags.sqpoll,
                sqpoll_cpu: flags.sqpoll_cpu,
                sqpoll_attached: flags.sqpoll_attached.is_some(),
                opcodes,
                ops: Slab::with_capacity(capacity),
                wake_fd,
                wake_armed: false,
                completions_reaped: 0,
                cq_overflows: 0,
                deferred: Vec::with_capacity(capacity),
                spare: Vec::with_capacity(capacity),
                to_cancel: Vec::new(),
                shut_down: false,
                recv_pool: None,
                files,
            }),
        })
    }

    pub(crate) fn id(&self) -> DriverId {
        self.id
    }

    /// Whether the ring's fd is registered (`IORING_REGISTER_RING_FDS`), so enters skip the
    /// kernel's fd lookup.
    #[cfg(test)]
    pub(crate) fn ring_fd_registered(&self) -> bool {
        self.inner.borrow().registered_index.is_some()
    }

    /// The ring, when it has a polling thread of its own (not one it attached to).
    pub(crate) fn sqpoll_ring(&self) -> Option<BorrowedFd<'_>> {
        let inner = self.inner.borrow();
        let fd = inner.ring.as_raw_fd();
        // SAFETY: the ring's descriptor is open as long as `self` (which owns the ring) lives,
        // and the returned borrow lives no longer than `self`.
        (inner.sqpoll && !inner.sqpoll_attached).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
    }

    /// The ring's completion-queue counters (`coreio::stats::ring`).
    pub(crate) fn stats(&self) -> crate::stats::RingStats {
        let mut inner = self.inner.borrow_mut();
        let (entries, dropped) = {
            let cq = inner.ring.completion();
            (cq.capacity() as u32, u64::from(cq.overflow()))
        };
        crate::stats::RingStats {
            completion_queue_entries: entries,
            completion_queue_overflows: inner.cq_overflows,
            completions_dropped: dropped,
            zero_copy_sends: 0,
            sqpoll: inner.sqpoll,
            sqpoll_cpu: inner.sqpoll_cpu.map(|cpu| cpu as usize),
            sqpoll_shared: inner.sqpoll_attached,
            file_table_slots: inner.files.as_ref().map_or(0, FileTable::slots),
            registered_files: inner.files.as_ref().map_or(0, FileTable::taken),
        }
    }

    /// Counts an operation about to start on descriptor `fd`, whose registration is `fixed`;
    /// the one that reaches the table's threshold queues the update registering it
    /// (`fixed_files`). Operations keep naming the descriptor until that update succeeded.
    pub(crate) fn note_operation(&self, fixed: &FixedUse, fd: RawFd) {
        if !self.file_table || fixed.has_slot() {
            return;
        }
        let mut inner = self.inner.borrow_mut();
        if inner.shut_down {
            return;
        }
        let Some(slot) = inner
            .files
            .as_mut()
            .and_then(|files| files.note_operation(fixed, fd))
        else {
            return;
        };
        let key = inner.ops.insert(Lifecycle::Submitted);
        let entry = opcode::FilesUpdate::new(slot.fds(), 1)
            .offset(slot.index() as i32)
            .build()
            .user_data(key as u64);
        inner.ops[key] = Lifecycle::FileRegister(Rc::clone(&slot));
        if inner.push(&entry).is_err() {
            // The ring takes no entries: the socket keeps its descriptor.
            inner.ops.remove(key);
            if let Some(files) = inner.files.as_mut() {
                files.registered(&slot, -libc::EBUSY);
            }
        }
    }

    /// The socket whose registration is `fixed` closes or leaves the core: empties its slot, if
    /// it has one, before returning. The update is queued behind the rest of the batch (which
    /// may hold this socket's registration) and submitted at once, so the kernel has run it by
    /// the time the caller closes the descriptor or hands it on: the table no longer holds the
    /// file, and a closed listener's port is free at once.
    pub(crate) fn let_go_of_slot(&self, fixed: &FixedUse) {
        let mut inner = self.inner.borrow_mut();
        if inner.shut_down {
            // The table goes with the ring.
            return;
        }
        let Some(index) = FileTable::let_go(fixed) else {
            return;
        };
        let key = inner.ops.insert(Lifecycle::FileEmpty(index));
        let entry = opcode::FilesUpdate::new(&EMPTY_SLOT, 1)
            .offset(index as i32)
            .build()
            .user_data(key as u64);
        if inner.push(&entry).is_err() {
            inner.ops.remove(key);
            // The ring refuses entries even after flushing its batch (it is broken): a
            // system call empties the slot.
            let result = inner
                .ring
                .submitter()
                .register_files_update(index, &[EMPTY_SLOT])
                .map_or_else(|err| -err.raw_os_error().unwrap_or(libc::EIO), |n| n as i32);
            if let Some(files) = inner.files.as_mut() {
                files.emptied(index, result);
            }
        } else if let Err(err) = inner.submit_now() {
            log::warn!(
                "submitting a file table update failed ({err}); the socket's file stays open \
                 until the core's next batch"
            );
        }
    }

    /// Whether this kernel has `opcode`.
    pub(crate) fn supports(&self, opcode: u8) -> bool {
        self.inner.borrow().opcodes.has(opcode)
    }

    /// The core's receive pool as a provided buffer ring (`IORING_REGISTER_PBUF_RING`, Linux
    /// 5.19), registered now; an error when the kernel refuses it or the ring is shut down.
    pub(crate) fn register_recv_pool(&self, config: RecvPoolConfig) -> io::Result<Rc<RecvPool>> {
        let mut inner = self.inner.borrow_mut();
        if inner.shut_down {
            return Err(io::Error::other("the ring has shut down"));
        }
        let submitter = inner.ring.submitter();
        let pool = RecvPool::with_kernel_ring(config, |addr, entries| {
            // SAFETY: `addr` is the pool's page-aligned ring of `entries` entries, which stays
            // allocated while the driver holds the pool: until it unregisters the group at
            // shutdown, or for ever when the shutdown gave up (`shutdown_within`).
            unsafe { submitter.register_buf_ring_with_flags(addr, entries, BUFFER_GROUP, 0) }
        })?;
        let pool = Rc::new(pool);
        inner.recv_pool = Some(Rc::clone(&pool));
        Ok(pool)
    }

    /// Closes `fd` with an `IORING_OP_CLOSE` nobody waits for; gives `fd` back when the kernel
    /// lacks the opcode or the ring cannot take the entry.
    pub(crate) fn close_later(&self, fd: OwnedFd) -> Result<(), OwnedFd> {
        let mut inner = self.inner.borrow_mut();
        if inner.shut_down || !inner.opcodes.has(opcode::Close::CODE) {
            return Err(fd);
        }
        let raw = fd.as_raw_fd();
        let key = inner.ops.insert(Lifecycle::Submitted);
        let entry = opcode::Close::new(types::Fd(raw))
            .build()
            .user_data(key as u64);
        if inner.push(&entry).is_err() {
            inner.ops.remove(key);
            return Err(fd);
        }
        // The kernel owns the descriptor now: it is closed even when the close reports an error.
        let _ = fd.into_raw_fd();
        inner.ops[key] = Lifecycle::Orphaned(Box::new(ClosedByKernel));
        Ok(())
    }

    /// Queues an operation's entry; returns its key. Entering the kernel happens in `park`,
    /// unless the submission queue is full, when the batch is flushed first (what that flush
    /// reaps is dispatched by the next `park`).
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
    pub(crate) fn poll_op(&self, key: usize, cx: &mut Context<'_>) -> Poll<Cqe> {
        let mut inner = self.inner.borrow_mut();
        let Some(lifecycle) = inner.ops.get_mut(key) else {
            unreachable!("an in-flight Op's key stays in the slab until it collects its result");
        };
        match lifecycle {
            Lifecycle::Completed(cqe) => {
                let cqe = *cqe;
                inner.ops.remove(key);
                Poll::Ready(cqe)
            }
            Lifecycle::Waiting(waker) if waker.will_wake(cx.waker()) => Poll::Pending,
            Lifecycle::Submitted | Lifecycle::Waiting(_) => {
                *lifecycle = Lifecycle::Waiting(cx.waker().clone());
                Poll::Pending
            }
            Lifecycle::Orphaned(_)
            | Lifecycle::RingWake(_)
            | Lifecycle::StreamOrphaned(_)
            | Lifecycle::FileRegister(_)
            | Lifecycle::FileEmpty(_) => {
                unreachable!("an orphan, a ring wake or a file table update has no future")
            }
            Lifecycle::Streaming(_) => unreachable!("a streaming operation is polled as a stream"),
        }
    }

    /// The future of operation `key` was dropped: take over its data and cancel it.
    ///
    /// Runs no user code: an operation that already completed is released by the next `park`
    /// like any orphan, not here, because this runs inside the `Drop` of a future, where a
    /// panicking buffer `Drop` would abort the process (async-task aborts on a panic in a
    /// task's future drop).
    pub(crate) fn abandon<T: Operation>(&self, key: usize, data: T) {
        let mut inner = self.inner.borrow_mut();
        match inner.ops.get_mut(key) {
            Some(Lifecycle::Completed(cqe)) => {
                let result = cqe.result;
                inner.ops.remove(key);
                inner
                    .deferred
                    .push(Deferred::Release(Box::new(data), result));
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
        let parked = {
            let mut inner = self.inner.borrow_mut();
            // Arming the wake poll may find the submission queue full and flush it, which reaps
            // completions; so may an earlier submission. Their wakes are still to run, and the
            // core must not block before they have.
            let woke_before = inner.completions_reaped;
            let armed = inner.arm_wake_poll();
            let timeout = if inner.completions_reaped != woke_before || !inner.deferred.is_empty() {
                Some(Duration::ZERO)
            } else {
                timeout
            };
            armed
                .and_then(|()| inner.enter(timeout))
                .map(|()| inner.reap())
        };
        if let Some(payload) = self.run_deferred() {
            resume_unwind(payload);
        }
        parked
    }

    /// Runs the user code the reaped completions call for, with `inner` unborrowed (a buffer's
    /// `Drop` may call into the driver). Every item runs even if an earlier one panics; the
    /// first panic is returned for the caller to resume or report.
    fn run_deferred(&self) -> Option<Payload> {
        let mut first_panic = None;
        loop {
            let mut batch = {
                let mut inner = self.inner.borrow_mut();
                if inner.deferred.is_empty() {
                    return first_panic;
                }
                let spare = std::mem::take(&mut inner.spare);
                std::mem::replace(&mut inner.deferred, spare)
            };
            for item in batch.drain(..) {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(move || item.run())) {
                    // Later payloads are dropped: one panic is reported per core.
                    first_panic.get_or_insert(payload);
                }
            }
            // Items run meanwhile may have queued more; the next round takes those.
            self.inner.borrow_mut().spare = batch;
        }
    }

    /// Cancels everything still in flight and waits (bounded) for the terminal completions,
    /// releasing orphans as they complete; then gives up the ring's registration. Runs once,
    /// after the core's tasks are gone — also when a panic unwound out of the core loop, since
    /// without it the kernel could write into buffers freed with the slab. Returns the first
    /// panic of a waker or a buffer's `Drop` run meanwhile; the rest of the shutdown still ran.
    pub(crate) fn shutdown(&self) -> Option<Payload> {
        self.shutdown_within(SHUTDOWN_GRACE)
    }

    /// [`shutdown`](UringDriver::shutdown), waiting at most `grace` for the kernel.
    fn shutdown_within(&self, grace: Duration) -> Option<Payload> {
        let mut first_panic = self.run_deferred();
        {
            let mut inner = self.inner.borrow_mut();
            if inner.shut_down {
                return first_panic;
            }
            inner.shut_down = true;
            let keys: Vec<u64> = inner
                .ops
                .iter()
                .filter(|(_, lc)| lc.in_kernel())
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
        }
        let deadline = Instant::now() + grace;
        loop {
            {
                let mut inner = self.inner.borrow_mut();
                if !inner.has_pending() || Instant::now() >= deadline {
                    break;
                }
                if let Err(err) = inner.enter(Some(Duration::from_millis(10))) {
                    log::error!("io_uring_enter failed during shutdown: {err}");
                    break;
                }
                inner.reap();
            }
            if let Some(payload) = self.run_deferred() {
                first_panic.get_or_insert(payload);
            }
        }
        let mut inner = self.inner.borrow_mut();
        if inner.has_pending() {
            log::error!(
                "coreio: {} io_uring operations did not finish within {grace:?} of shutdown; \
                 leaking their buffers rather than freeing memory the kernel may write",
                inner.ops.len()
            );
            for (_, lifecycle) in std::mem::take(&mut inner.ops) {
                std::mem::forget(lifecycle);
            }
            // The kernel may still pick and fill its buffers.
            std::mem::forget(inner.recv_pool.take());
        } else {
            if let Some(pool) = inner.recv_pool.take() {
                if let Err(err) = inner.ring.submitter().unregister_buf_ring(BUFFER_GROUP) {
                    log::debug!("unregistering the receive buffer ring failed: {err}");
                }
                // Lent buffers keep the memory alive; the kernel no longer uses it.
                drop(pool);
            }
            unsettled().retain(|&id| id != self.id);
        }
        inner.unregister_ring_fd();
        first_panic
    }
}

impl Drop for UringDriver {
    fn drop(&mut self) {
        // The runtime always shuts its driver down first; this covers any path that does not,
        // so the ring and the slab are never freed with operations live in the kernel.
        if !self.inner.get_mut().shut_down {
            drop(self.shutdown());
        }
    }
}

impl Inner {
    fn has_pending(&self) -> bool {
        self.wake_armed || self.ops.iter().any(|(_, lc)| lc.in_kernel())
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
            // Full: hand the batch to the kernel without waiting (with a polling thread: wait
            // until it has taken entries), then retry.
            if self.sqpoll {
                self.enter_raw(0, EnterFlags::SQ_WAIT, None)?;
            } else {
                self.enter(Some(Duration::ZERO))?;
            }
            self.reap();
        }
    }

    /// Cancels the streaming operations whose queue of untaken completions reached its limit
    /// (`StreamOperation::QUEUE_LIMIT`); they go with the next batch. Never flushes: a cancel
    /// that finds the submission queue full waits for the next reap.
    fn cancel_full_streams(&mut self) {
        while let Some(&key) = self.to_cancel.last() {
            // The stream may have ended (and its slot gone) since it was marked.
            let live =
                matches!(self.ops.get(key), Some(Lifecycle::Streaming(stream)) if !stream.ended);
            if live {
                let cancel = opcode::AsyncCancel::new(key as u64)
                    .build()
                    .user_data(CANCEL_TOKEN);
                // SAFETY: a cancellation points to no memory.
                if unsafe { self.ring.submission().push(&cancel) }.is_err() {
                    return;
                }
            }
            self.to_cancel.pop();
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
        if self.sqpoll {
            let sq = self.ring.submission();
            if sq.need_wakeup() {
                // The polling thread slept after its idle time: this enter wakes it.
                flags |= EnterFlags::SQ_WAKEUP;
            } else if min_complete == 0 && !flags.contains(EnterFlags::SQ_WAIT) && !sq.cq_overflow()
            {
                // The thread takes the entries by itself and the completions are in shared
                // memory: nothing to enter the kernel for.
                return Ok(());
            }
        }
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

    /// Gives up the ring fd's registration. The registration lives in the thread's io_uring
    /// context, not in the ring: left in place it would keep the ring alive until the thread
    /// exits, and a thread that runs many runtimes in turn would run out of slots (16).
    fn unregister_ring_fd(&mut self) {
        if let Some(index) = self.registered_index.take() {
            unregister_ring_fd(self.ring.as_raw_fd(), index);
        }
    }

    /// Dispatches every completion in the queue: updates the slab, and queues the wakes and
    /// orphan releases that follow as [`Deferred`] work, for `run_deferred` to run once the
    /// driver is no longer borrowed.
    fn reap(&mut self) {
        loop {
            let mut drained = 0usize;
            let capacity;
            {
                let mut cq = self.ring.completion();
                capacity = cq.capacity();
                for cqe in &mut cq {
                    drained += 1;
                    let user_data = cqe.user_data();
                    let completion = Cqe {
                        result: cqe.result(),
                        flags: cqe.flags(),
                    };
                    match user_data {
                        WAKE_TOKEN => {
                            self.wake_armed = false;
                            sys::eventfd_drain(self.wake_fd);
                        }
                        CANCEL_TOKEN | RING_WAKE_TOKEN => {}
                        key => complete_op(
                            &mut self.ops,
                            &mut self.deferred,
                            &mut self.to_cancel,
                            self.files.as_mut(),
                            key as usize,
                            completion,
                        ),
                    }
                }
            }
            self.completions_reaped = self.completions_reaped.wrapping_add(drained as u64);
            self.cancel_full_streams();
            // A full queue may mean the kernel holds overflowed completions (FEAT_NODROP): a
            // GETEVENTS enter flushes them, then reap again.
            let overflowed = self.ring.submission().cq_overflow();
            if drained < capacity && !overflowed {
                return;
            }
            if overflowed {
                self.cq_overflows += 1;
            }
            if self.enter(Some(Duration::ZERO)).is_err() {
                return;
            }
        }
    }
}

fn complete_op(
    ops: &mut Slab<Lifecycle>,
    deferred: &mut Vec<Deferred>,
    to_cancel: &mut Vec<usize>,
    files: Option<&mut FileTable>,
    key: usize,
    cqe: Cqe,
) {
    let Some(lifecycle) = ops.get_mut(key) else {
        debug_assert!(false, "completion for unknown operation {key}");
        return;
    };
    match lifecycle {
        Lifecycle::Streaming(stream) => {
            if let Some(waker) = stream.push(cqe) {
                deferred.push(Deferred::Wake(waker));
            }
            if stream.needs_cancel() {
                to_cancel.push(key);
            }
            return;
        }
        Lifecycle::StreamOrphaned(orphan) => {
            if cqe.more() {
                deferred.push(Deferred::StreamItem(Rc::clone(orphan), cqe));
            } else {
                // The terminal completion: its release holds the last reference to the data.
                let Some(Lifecycle::StreamOrphaned(orphan)) = ops.try_remove(key) else {
                    unreachable!("matched just above");
                };
                deferred.push(Deferred::StreamItem(orphan, cqe));
            }
            return;
        }
        _ => {}
    }
    match std::mem::replace(lifecycle, Lifecycle::Completed(cqe)) {
        Lifecycle::Submitted => {}
        Lifecycle::Waiting(waker) => deferred.push(Deferred::Wake(waker)),
        Lifecycle::Orphaned(orphan) => {
            ops.remove(key);
            deferred.push(Deferred::Release(orphan, cqe.result));
        }
        Lifecycle::RingWake(fallback) => {
            ops.remove(key);
            if cqe.result < 0 {
                log::debug!(
                    "MSG_RING wake failed ({}); waking by eventfd",
                    io::Error::from_raw_os_error(-cqe.result)
                );
                deferred.push(Deferred::WakeByEventfd(fallback));
            }
        }
        Lifecycle::FileRegister(slot) => {
            ops.remove(key);
            if let Some(files) = files {
                files.registered(&slot, cqe.result);
            }
        }
        Lifecycle::FileEmpty(index) => {
            ops.remove(key);
            if let Some(files) = files {
                files.emptied(index, cqe.result);
            }
        }
        Lifecycle::Completed(_) => debug_assert!(false, "operation {key} completed twice"),
        Lifecycle::Streaming(_) | Lifecycle::StreamOrphaned(_) => unreachable!("handled above"),
    }
}

/// Registers a sparse file table of `config.slots` slots, capped by `RLIMIT_NOFILE` (the kernel
/// refuses a larger one); `None`, with a debug line, when the kernel refuses it (before 5.19),
/// which only costs each operation its descriptor lookup.
fn register_file_table(ring: &IoUring, config: FileTableConfig) -> Option<FileTable> {
    let limit = sys::open_files_limit().unwrap_or(u64::from(config.slots));
    let slots = config.slots.min(u32::try_from(limit).unwrap_or(u32::MAX));
    if slots == 0 {
        return None;
    }
    match ring.submitter().register_files_sparse(slots) {
        Ok(()) => Some(FileTable::new(FileTableConfig { slots, ..config })),
        Err(err) => {
            log::debug!("no registered file table ({err}); operations name descriptors");
            None
        }
    }
}

/// Registers the ring fd so each enter skips the kernel's fd lookup (Linux 5.18+); `None` when
/// the kernel does not support it, which only costs that lookup.
fn register_ring_fd(ring_fd: RawFd) -> Option<u32> {
    const IORING_REGISTER_RING_FDS: libc::c_long = 20;
    // Offset `u32::MAX`: the kernel picks a free slot and writes its index back.
    update_ring_fds(ring_fd, IORING_REGISTER_RING_FDS, u32::MAX, ring_fd as u64)
}

/// Undoes [`register_ring_fd`] for the slot `index`.
fn unregister_ring_fd(ring_fd: RawFd, index: u32) {
    const IORING_UNREGISTER_RING_FDS: libc::c_long = 21;
    if update_ring_fds(ring_fd, IORING_UNREGISTER_RING_FDS, index, 0).is_none() {
        log::debug!(
            "unregistering the ring fd failed: {}",
            io::Error::last_os_error()
        );
    }
}

/// One `io_uring_register` call over a single `io_uring_rsrc_update` (`offset`, `data`);
/// returns the offset the kernel left in it when the call updated one entry.
///
/// Hand-written: the io-uring crate's `Submitter::register_ring_fd` keeps the registered index
/// inside a `Submitter` that borrows the ring (and `IoUring::submitter` makes a fresh one, with
/// no registration, on every call), which the driver would have to hold beside the ring it
/// borrows; the enter that uses the index is hand-written for the same reason (`enter_raw`).
fn update_ring_fds(ring_fd: RawFd, opcode: libc::c_long, offset: u32, data: u64) -> Option<u32> {
    /// `struct io_uring_rsrc_update` from the kernel's uapi.
    #[repr(C)]
    struct RsrcUpdate {
        offset: u32,
        resv: u32,
        data: u64,
    }
    let mut update = RsrcUpdate {
        offset,
        resv: 0,
        data,
    };
    // SAFETY: `update` is a valid `io_uring_rsrc_update` array of length 1 for the call, and
    // `ring_fd` is this ring's open descriptor.
    let res = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring_fd as libc::c_long,
            opcode,
            &mut update as *mut RsrcUpdate,
            1 as libc::c_long,
        )
    };
    (res == 1).then_some(update.offset)
}
