//! The per-core I/O driver: one backend, chosen once when the core starts.
//!
//! [`Driver`] is a plain enum over the two backends, [`uring::UringDriver`] (one io_uring ring)
//! and [`epoll::EpollDriver`] (one epoll instance), and this module is the only code that
//! matches on it: operations ([`Op`], [`StreamOp`]) and descriptors ([`SharedFd`]) call its
//! methods to start, poll and abandon an operation or register a descriptor, so the public API
//! never changes with the backend and a third backend would touch this module, the ops and
//! the test macro. The driver also parks the core thread until I/O, a timer deadline or a
//! remote wake, and wakes other cores (`wake`). Which backend runs is decided in `select`.
//!
//! Wakers and the release of orphaned data are user code: the backends run them only after
//! their own state is consistent and unborrowed (see `Driver::park`).
//!
//! Each operation is one struct implementing [`Operation`], with its io_uring form and its epoll
//! form side by side (see `crate::net::ops`); [`Op`] is the future that drives it on whichever
//! backend runs. What a read or an accept whose future was dropped took (io_uring only) is kept
//! on its socket for the next one: see `held`.

pub(crate) mod epoll;
mod fd;
mod held;
mod offload;
mod op;
mod op_stream;
mod recv_pool;
mod select;
pub(crate) mod uring;
mod wake;

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::blocking::BlockingPool;

pub(crate) use fd::SharedFd;
pub(crate) use held::{Accepted, Claim, Held, OpShare, StandingClaim, Unread};
pub(crate) use offload::BlockingCall;
pub(crate) use op::{Cqe, Direction, Op, Operation, Source};
pub(crate) use op_stream::{StreamOp, StreamOperation};
pub(crate) use recv_pool::{BUFFER_GROUP, MAX_RECV_BUFFERS, RecvPool, RecvPoolConfig, WaitPlace};
pub use recv_pool::{DEFAULT_RECV_BUFFER_SIZE, DEFAULT_RECV_BUFFERS, PooledBuf};
pub use select::Backend;
pub(crate) use select::{ResolvedBackend, resolve, switch_from_env};
pub use uring::{DEFAULT_REGISTER_AFTER, DEFAULT_REGISTERED_FILES, RingSetupCause, RingSetupError};
pub(crate) use uring::{optional_opcodes, settled, uring_target};
pub(crate) use wake::WakeTarget;

/// Identifies one driver for the life of the process: ids are never reused, unlike addresses.
///
/// An operation in flight and a registered descriptor remember the driver they belong to, so
/// that one polled or dropped under another runtime on the same thread (a nested or a later
/// `block_on`) is caught instead of reaching that runtime's slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DriverId(u64);

impl DriverId {
    fn next() -> DriverId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        DriverId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for DriverId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "driver #{}", self.0)
    }
}

/// How starting an operation went.
pub(crate) enum Started {
    /// io_uring: queued in the ring of `driver` under `key`.
    Submitted { key: usize, driver: DriverId },
    /// It finished at once: the epoll syscall's outcome, or a refusal (the ring could not take
    /// the entry, the descriptor belongs to another driver, the pool refused the call).
    Finished(io::Result<u32>),
    /// Its call was queued on the blocking pool (`offload`).
    Offloaded(offload::CallWaiter),
}

/// What a driver knows of a descriptor it was given: which driver it belongs to, and its epoll
/// token on that backend.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) owner: DriverId,
    pub(crate) epoll_token: Option<usize>,
    /// io_uring: the descriptor's slot in the ring's registered file table, once it has one.
    pub(crate) fixed: uring::FixedUse,
    /// io_uring: the last stream receive on the descriptor returned less than it asked for,
    /// so the socket was empty; the next one waits for data before it tries
    /// (`IORING_RECVSEND_POLL_FIRST`).
    pub(crate) read_drained: Cell<bool>,
}

/// The error of an operation on a descriptor that another runtime registered.
fn foreign_fd() -> io::Error {
    io::Error::other(
        "this socket belongs to another coreio runtime: a socket serves only the runtime (and \
         the core) that created it; move it between cores with a Handoff",
    )
}

/// Wakes a sleeping core through its eventfd: what a core falls back to when a `MSG_RING` it
/// sent to wake that core fails.
pub(crate) trait EventfdWake: Send + Sync {
    fn wake_by_eventfd(&self);
}

/// Settings a core needs to build its driver.
#[derive(Clone, Debug)]
pub(crate) struct DriverConfig {
    pub(crate) backend: ResolvedBackend,
    pub(crate) ring_entries: u32,
    /// Optional io_uring opcodes to treat as missing (`Builder::deny_uring_opcodes`).
    pub(crate) denied_opcodes: Vec<u8>,
    /// The receive pool's shape (`Builder::recv_buffers`, `Builder::multishot_recv`).
    pub(crate) recv_pool: RecvPoolConfig,
    /// io_uring: a submission-queue polling thread idling this long before it sleeps
    /// (`Builder::sqpoll`).
    pub(crate) sqpoll: Option<Duration>,
    /// The CPUs to bind those threads to, the `i`-th core's to the `i`-th CPU, cycling
    /// (`Builder::sqpoll_cpus`); empty leaves them unbound.
    pub(crate) sqpoll_cpus: Vec<usize>,
    /// The cores' rings share the first core's polling thread (`Builder::sqpoll_shared`).
    pub(crate) sqpoll_shared: bool,
    /// io_uring: stream writes of at least this many bytes are zero-copy sends
    /// (`Builder::zero_copy_sends`).
    pub(crate) zero_copy_sends: Option<usize>,
    /// Accept with one multishot accept per listener (`Builder::multishot_accept`); io_uring
    /// only.
    pub(crate) multishot_accept: bool,
    /// io_uring: a stream receive after one that emptied the socket waits for data before it
    /// tries (`COREIO_RECV_POLL_FIRST`).
    pub(crate) recv_poll_first: bool,
    /// io_uring: the registered file table's shape (`Builder::registered_files`); `None` for
    /// no table.
    pub(crate) registered_files: Option<uring::FileTableConfig>,
}

/// One core's driver: its backend, and the operations it runs on the blocking pool.
pub(crate) struct Driver {
    io: Io,
    /// Operations whose future was dropped while their call ran on the pool.
    offloaded: offload::Offloaded,
    /// The runtime's blocking pool, where operations without a ring or readiness form run.
    pool: BlockingPool,
    /// The receive buffers of this core's receive streams, made by the first that asks.
    recv_pool: std::cell::OnceCell<std::rc::Rc<RecvPool>>,
    recv_config: RecvPoolConfig,
    /// `DriverConfig::zero_copy_sends`, kept only where the ring has `IORING_OP_SEND_ZC`.
    zero_copy_sends: Option<usize>,
    /// Zero-copy sends started so far (`stats::RingStats::zero_copy_sends`).
    zero_copy_sent: std::cell::Cell<u64>,
    /// Listeners accept through a multishot accept: asked for, on io_uring, and not refused
    /// by the kernel yet (`refuse_multishot_accept`).
    multishot_accept: Cell<bool>,
}

/// The backend.
// One per core, built once and never moved afterwards: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Io {
    IoUring(uring::UringDriver),
    Epoll(epoll::EpollDriver),
}

impl Driver {
    /// Builds the driver of the `index`-th core on the calling (core) thread; `sqpoll_ring` is
    /// the ring whose polling thread it shares (`Builder::sqpoll_shared`), `wake_fd` the core's
    /// wake eventfd, which remote wakers write to; `pool` runs the operations offloaded to it.
    pub(crate) fn new(
        config: &DriverConfig,
        index: usize,
        sqpoll_ring: Option<RawFd>,
        wake_fd: RawFd,
        pool: BlockingPool,
    ) -> io::Result<Driver> {
        let id = DriverId::next();
        let io = match config.backend {
            ResolvedBackend::Epoll => Io::Epoll(epoll::EpollDriver::new(id, wake_fd)?),
            ResolvedBackend::IoUring => Io::IoUring(uring::UringDriver::new(
                id,
                config.ring_entries,
                wake_fd,
                &config.denied_opcodes,
                config.sqpoll.map(|idle| uring::SqPoll {
                    idle,
                    cpu: (!config.sqpoll_cpus.is_empty())
                        .then(|| config.sqpoll_cpus[index % config.sqpoll_cpus.len()] as u32),
                    attach_to: sqpoll_ring,
                }),
                config.registered_files,
                config.recv_poll_first,
            )?),
        };
        let multishot_accept = config.multishot_accept && matches!(io, Io::IoUring(_));
        Ok(Driver {
            offloaded: offload::Offloaded::new(wake_fd)?,
            pool,
            recv_pool: std::cell::OnceCell::new(),
            recv_config: config.recv_pool,
            zero_copy_sends: config.zero_copy_sends.filter(|_| match &io {
                Io::IoUring(driver) => driver.supports(io_uring::opcode::SendZc::CODE),
                Io::Epoll(_) => false,
            }),
            zero_copy_sent: std::cell::Cell::new(0),
            multishot_accept: Cell::new(multishot_accept),
            io,
        })
    }

    /// Counts a zero-copy send for `stats::ring`.
    pub(crate) fn count_zero_copy_send(&self) {
        self.zero_copy_sent.set(self.zero_copy_sent.get() + 1);
    }

    /// The smallest stream write made as a zero-copy send; `None` when none is (epoll, a
    /// kernel without `IORING_OP_SEND_ZC`, or not enabled).
    pub(crate) fn zero_copy_send_threshold(&self) -> Option<usize> {
        self.zero_copy_sends
    }

    /// The core's receive pool when it is a provided buffer ring with multishot receives
    /// (io_uring, the switch on, the kernel willing); made on first use. `None` otherwise, and
    /// when the pool cannot be made: callers then receive the plain way.
    pub(crate) fn multishot_recv_pool(&self) -> Option<std::rc::Rc<RecvPool>> {
        if !matches!(self.io, Io::IoUring(_)) || !self.recv_config.multishot {
            return None;
        }
        let pool = self.recv_pool().ok()?;
        pool.multishot().then_some(pool)
    }

    /// The core's receive pool, made on first use: a provided buffer ring on io_uring (unless
    /// switched off or refused by the kernel), a list of free buffers otherwise.
    pub(crate) fn recv_pool(&self) -> io::Result<std::rc::Rc<RecvPool>> {
        if let Some(pool) = self.recv_pool.get() {
            return Ok(std::rc::Rc::clone(pool));
        }
        let config = self.recv_config;
        let pool = match &self.io {
            Io::IoUring(driver) if config.multishot => match driver.register_recv_pool(config) {
                Ok(pool) => pool,
                Err(err) => {
                    log::debug!("no provided buffer ring ({err}); receive buffers in a list");
                    std::rc::Rc::new(RecvPool::with_list(config)?)
                }
            },
            Io::IoUring(_) | Io::Epoll(_) => std::rc::Rc::new(RecvPool::with_list(config)?),
        };
        Ok(std::rc::Rc::clone(self.recv_pool.get_or_init(|| pool)))
    }

    /// The io_uring driver, when that is the backend.
    #[cfg(test)]
    pub(crate) fn uring(&self) -> Option<&uring::UringDriver> {
        match &self.io {
            Io::IoUring(driver) => Some(driver),
            Io::Epoll(_) => None,
        }
    }

    pub(crate) fn id(&self) -> DriverId {
        match &self.io {
            Io::IoUring(driver) => driver.id(),
            Io::Epoll(driver) => driver.id(),
        }
    }

    /// Starts `op`: on io_uring, queues its entry; on epoll, tries its syscall, leaving the
    /// waker for the readiness it needs when that would block. An operation on a descriptor
    /// another driver registered (a socket carried into another runtime on this thread)
    /// finishes at once with an error naming the misuse.
    pub(crate) fn start<T: Operation>(&self, op: &mut T, cx: &mut Context<'_>) -> Poll<Started> {
        self.start_with(op, cx, uring::UringDriver::submit)
    }

    /// `start`, with `submit` queueing the io_uring entry (as one-shot or as streaming).
    fn start_with<T: Operation>(
        &self,
        op: &mut T,
        cx: &mut Context<'_>,
        submit: fn(&uring::UringDriver, io_uring::squeue::Entry) -> io::Result<usize>,
    ) -> Poll<Started> {
        let (readiness, opcode) = match op.source() {
            Source::Readiness(fd, _) if fd.owner() != self.id() => {
                return Poll::Ready(Started::Finished(Err(foreign_fd())));
            }
            Source::Readiness(fd, direction) => (fd.epoll_token().map(|t| (t, direction)), None),
            Source::Blocking { opcode } => (None, Some(opcode)),
        };
        match &self.io {
            Io::IoUring(driver) if opcode.is_none_or(|code| driver.supports(code)) => {
                if let Source::Readiness(fd, _) = op.source() {
                    driver.note_operation(&fd.registration().fixed, fd.raw());
                }
                Poll::Ready(match submit(driver, op.uring_entry()) {
                    Ok(key) => Started::Submitted {
                        key,
                        driver: driver.id(),
                    },
                    Err(err) => Started::Finished(Err(err)),
                })
            }
            Io::Epoll(driver) if opcode.is_none() => {
                let Some((token, direction)) = readiness else {
                    unreachable!("on the epoll backend every SharedFd is registered");
                };
                driver
                    .attempt(op, token, direction, cx)
                    .map(Started::Finished)
            }
            // A file or path operation on epoll, or one whose opcode this kernel lacks.
            Io::IoUring(_) | Io::Epoll(_) => {
                Poll::Ready(match offload::start(&self.pool, op.blocking_call()) {
                    Ok(waiter) => Started::Offloaded(waiter),
                    Err(err) => Started::Finished(Err(err)),
                })
            }
        }
    }

    /// The future of an operation whose call runs on the blocking pool was dropped: the data
    /// stays here until the call returns, and is released by a later `park`.
    pub(crate) fn abandon_offloaded<T: Operation>(&self, waiter: offload::CallWaiter, data: T) {
        self.offloaded.abandon(waiter, data);
    }

    /// Closes `fd` without blocking the core: an `IORING_OP_CLOSE` on io_uring, a pool job on
    /// epoll (or where the kernel lacks the opcode, or the ring cannot take the entry). If the
    /// pool refuses the job too, it closes here, which may block.
    pub(crate) fn close_later(&self, fd: OwnedFd) {
        let fd = match &self.io {
            Io::IoUring(driver) => match driver.close_later(fd) {
                Ok(()) => return,
                Err(fd) => fd,
            },
            Io::Epoll(_) => fd,
        };
        // A refused job drops its closure, and the fd with it, here.
        let _ = self.pool.start_call(move || drop(fd));
    }

    /// The raw result of operation `key`, submitted to driver `owner`, or its waker stored
    /// until it comes. `None` when this is not that driver (the `Op` decides what that means).
    pub(crate) fn poll_submitted(
        &self,
        key: usize,
        owner: DriverId,
        cx: &mut Context<'_>,
    ) -> Option<Poll<Cqe>> {
        match &self.io {
            Io::IoUring(driver) if driver.id() == owner => Some(driver.poll_op(key, cx)),
            _ => None,
        }
    }

    /// Starts a streaming operation: on io_uring, queues its entry once; on epoll, makes one
    /// attempt (each item of an epoll stream is one attempt). Refused like `start` for a
    /// descriptor of another driver.
    pub(crate) fn start_stream<T: StreamOperation>(
        &self,
        op: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<Started> {
        self.start_with(op, cx, uring::UringDriver::submit_stream::<T>)
    }

    /// The next completion of streaming operation `key` of driver `owner` (`None` inside once
    /// it ended); `None` when this is not that driver.
    pub(crate) fn poll_stream(
        &self,
        key: usize,
        owner: DriverId,
        cx: &mut Context<'_>,
    ) -> Option<Poll<Option<Cqe>>> {
        match &self.io {
            Io::IoUring(driver) if driver.id() == owner => Some(driver.poll_stream(key, cx)),
            _ => None,
        }
    }

    /// Ends streaming operation `key` of driver `owner` before returning, when the kernel can
    /// cancel synchronously (see `UringDriver::end_stream_now`): the completions its future has
    /// not taken, the terminal one last. `None` when it could not (another driver, a kernel
    /// before 6.0): the caller lets the operation go the usual way.
    pub(crate) fn end_stream_now(
        &self,
        key: usize,
        owner: DriverId,
    ) -> Option<std::collections::VecDeque<Cqe>> {
        match &self.io {
            Io::IoUring(driver) if driver.id() == owner => driver.end_stream_now(key),
            _ => None,
        }
    }

    /// The future of streaming operation `key` of driver `owner` was dropped; gives the data
    /// back when this is not that driver.
    pub(crate) fn abandon_stream<T: StreamOperation>(
        &self,
        key: usize,
        owner: DriverId,
        data: T,
    ) -> Result<(), T> {
        match &self.io {
            Io::IoUring(driver) if driver.id() == owner => {
                driver.abandon_stream(key, data);
                Ok(())
            }
            _ => Err(data),
        }
    }

    /// The future of operation `key`, submitted to driver `owner`, was dropped: its data moves
    /// into that driver until the kernel is done with it. Gives the data back when this is not
    /// that driver.
    pub(crate) fn abandon<T: Operation>(
        &self,
        key: usize,
        owner: DriverId,
        data: T,
    ) -> Result<(), T> {
        match &self.io {
            Io::IoUring(driver) if driver.id() == owner => {
                driver.abandon(key, data);
                Ok(())
            }
            _ => Err(data),
        }
    }

    /// Takes note of a descriptor its sockets' operations will use; on epoll, registers it
    /// for both directions, edge-triggered.
    pub(crate) fn register_fd(&self, fd: RawFd) -> io::Result<Registration> {
        let epoll_token = match &self.io {
            Io::Epoll(driver) => Some(driver.register(fd)?),
            Io::IoUring(_) => None,
        };
        Ok(Registration {
            owner: self.id(),
            epoll_token,
            fixed: uring::FixedUse::default(),
            read_drained: Cell::new(false),
        })
    }

    /// A readiness wait (`io::AsyncFd`) in its epoll form: `check` asks whether `fd` is ready
    /// for `direction` now (`WouldBlock` if not); if not, the waker of `cx` is left as the
    /// entry of wait `waiter` for the next edge. `None` on io_uring, where a readiness wait is
    /// a `POLL_ADD` operation instead. A descriptor of another driver is refused at once.
    pub(crate) fn poll_ready_epoll(
        &self,
        fd: &SharedFd,
        direction: Direction,
        waiter: &mut Option<u64>,
        check: impl FnOnce() -> io::Result<u32>,
        cx: &mut Context<'_>,
    ) -> Option<Poll<io::Result<u32>>> {
        let Io::Epoll(driver) = &self.io else {
            return None;
        };
        if fd.owner() != self.id() {
            return Some(Poll::Ready(Err(foreign_fd())));
        }
        let Some(token) = fd.epoll_token() else {
            unreachable!("on the epoll backend every SharedFd is registered");
        };
        // A read that drained the fd, with no readable edge since: nothing to ask the kernel.
        let known_drained = direction == Direction::Read && !driver.maybe_readable(token);
        let checked = if known_drained {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            check()
        };
        match checked {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                driver.wait_ready(token, direction, waiter, cx.waker());
                Some(Poll::Pending)
            }
            result => {
                if let Some(id) = waiter.take() {
                    driver.forget_ready(token, id);
                }
                Some(Poll::Ready(result))
            }
        }
    }

    /// A poll-form read emptied `fd` (it returned less than it asked for): on epoll, the next
    /// read-readiness wait goes straight to the next readable edge instead of asking `poll(2)`.
    /// Nothing on io_uring, whose `POLL_ADD` sees the level itself.
    pub(crate) fn mark_read_drained(&self, fd: &SharedFd) {
        if let (Io::Epoll(driver), Some(token)) = (&self.io, fd.epoll_token())
            && driver.id() == fd.owner()
        {
            driver.mark_read_drained(token);
        }
    }

    /// Whether epoll has reported `fd` readable (or closed) since a read drained it: then a
    /// poll-form read tries its syscall at once rather than asking `poll(2)` first. Always
    /// false on io_uring, where the `POLL_ADD` in flight is what says so.
    pub(crate) fn readable_edge_since_drained(&self, fd: &SharedFd) -> bool {
        match (&self.io, fd.epoll_token()) {
            (Io::Epoll(driver), Some(token)) if driver.id() == fd.owner() => {
                driver.maybe_readable(token)
            }
            _ => false,
        }
    }

    /// A readiness wait `waiter` on `fd` is dropped before an edge woke it: its entry goes.
    /// Only in `fd`'s own driver.
    pub(crate) fn forget_ready(&self, fd: &SharedFd, waiter: u64) {
        if let (Io::Epoll(driver), Some(token)) = (&self.io, fd.epoll_token())
            && driver.id() == fd.owner()
        {
            driver.forget_ready(token, waiter);
        }
    }

    /// Forgets a registered descriptor that is being closed (closing removes it from the epoll
    /// interest list). Only in its own driver: elsewhere the same token names another fd.
    /// On io_uring, empties its slot of the ring's file table first, if it has one.
    pub(crate) fn deregister_fd(&self, registration: &Registration) {
        match (&self.io, registration.epoll_token) {
            (Io::Epoll(driver), Some(token)) if driver.id() == registration.owner => {
                driver.deregister(token);
            }
            (Io::IoUring(driver), _) if driver.id() == registration.owner => {
                driver.let_go_of_slot(&registration.fixed);
            }
            _ => {}
        }
    }

    /// Forgets a registered descriptor `fd` that stays open (it moves to another core),
    /// removing it from this driver's epoll set first. Only in its own driver.
    /// On io_uring, empties its slot of the ring's file table first, so that the ring no
    /// longer holds the file when its new owner closes it.
    pub(crate) fn release_fd(&self, registration: &Registration, fd: RawFd) {
        match (&self.io, registration.epoll_token) {
            (Io::Epoll(driver), Some(token)) if driver.id() == registration.owner => {
                driver.deregister_open(fd, token);
            }
            (Io::IoUring(driver), _) if driver.id() == registration.owner => {
                driver.let_go_of_slot(&registration.fixed);
            }
            _ => {}
        }
    }

    /// The io_uring ring's counters; `None` on epoll.
    pub(crate) fn ring_stats(&self) -> Option<crate::stats::RingStats> {
        match &self.io {
            Io::IoUring(driver) => Some(crate::stats::RingStats {
                zero_copy_sends: self.zero_copy_sent.get(),
                ..driver.stats()
            }),
            Io::Epoll(_) => None,
        }
    }

    /// Whether listeners on this core accept through a multishot accept
    /// (`crate::net::ops::AcceptMulti`).
    pub(crate) fn multishot_accept(&self) -> bool {
        self.multishot_accept.get()
    }

    /// The kernel refused a multishot accept (it predates Linux 5.19): this core's listeners
    /// use one-shot accepts from now on.
    pub(crate) fn refuse_multishot_accept(&self) {
        if self.multishot_accept.replace(false) {
            log::info!("coreio: the kernel refused a multishot accept; using one-shot accepts");
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        match &self.io {
            Io::IoUring(_) => Backend::IoUring,
            Io::Epoll(_) => Backend::Epoll,
        }
    }

    /// Submits queued work and waits for events: not at all with `Some(Duration::ZERO)`, at
    /// most `timeout` otherwise, indefinitely with `None`. Wakes the tasks whose I/O finished.
    ///
    /// Wakers and the release of orphaned buffers are user code: they run after the driver's
    /// own state is consistent and unborrowed. If one panics, the others still run, and the
    /// first panic is then resumed from here, for the core to shut down and report.
    pub(crate) fn park(&self, timeout: Option<Duration>) -> io::Result<()> {
        let parked = match &self.io {
            Io::IoUring(driver) => driver.park(timeout),
            Io::Epoll(driver) => driver.park(timeout),
        };
        // An orphan whose pool call returned woke this core (by eventfd) to be released here.
        if let Some(payload) = self.offloaded.release_finished() {
            std::panic::resume_unwind(payload);
        }
        parked
    }

    /// A duplicate of this core's ring fd, for other cores to wake it with `MSG_RING`; `None`
    /// on epoll or when the kernel lacks `MSG_RING` (Linux 5.18).
    /// The ring, when a kernel thread of its own polls it: what the other cores' rings attach
    /// to (`Builder::sqpoll_shared`).
    pub(crate) fn sqpoll_ring(&self) -> Option<BorrowedFd<'_>> {
        match &self.io {
            Io::IoUring(driver) => driver.sqpoll_ring(),
            Io::Epoll(_) => None,
        }
    }

    pub(crate) fn ring_fd_for_wakes(&self) -> Option<io::Result<OwnedFd>> {
        match &self.io {
            Io::IoUring(driver) => driver.ring_fd_for_wakes(),
            Io::Epoll(_) => None,
        }
    }

    /// Sends a `MSG_RING` from this core's ring that wakes the core owning `target_ring`;
    /// `fallback` wakes it by eventfd if the message fails. Returns false (and sends nothing)
    /// when this core cannot send one: it runs epoll, its kernel lacks `MSG_RING`, or the
    /// driver is busy dispatching, as when a completion's waker wakes a task of another core.
    pub(crate) fn post_ring_wake(
        &self,
        target_ring: RawFd,
        fallback: Arc<dyn EventfdWake>,
    ) -> bool {
        match &self.io {
            Io::IoUring(driver) => driver.post_ring_wake(target_ring, fallback),
            Io::Epoll(_) => false,
        }
    }

    /// Called once every task is gone, also after a panic unwound out of the core loop: waits
    /// for the kernel to finish with every buffer it was given, so none is freed while the
    /// kernel may still write to it. Returns the first panic of a waker or a buffer's `Drop`
    /// run meanwhile (the rest still ran).
    pub(crate) fn shutdown(&self) -> Option<crate::panic::Payload> {
        // The pool's orphans first: releasing one may close a file through the ring.
        let offloaded = self.offloaded.shutdown(uring::SHUTDOWN_GRACE);
        let io = match &self.io {
            Io::IoUring(driver) => driver.shutdown(),
            Io::Epoll(_) => None,
        };
        offloaded.or(io)
    }
}
