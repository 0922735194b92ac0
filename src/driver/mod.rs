//! The per-core I/O driver: one backend, chosen once when the core starts.
//!
//! [`Driver`] is a plain enum over the two backends, [`uring::UringDriver`] (one io_uring ring)
//! and [`epoll::EpollDriver`] (one epoll instance); everything above it (ops, sockets, the core
//! loop) calls through the enum, so the public API never changes with the backend. This module
//! owns backend selection ([`Backend`]), parking the core thread until I/O, a timer deadline or a
//! remote wake, and the [`Completion`] type every operation resolves to. It must never run user
//! code: wakers are the only thing it calls, and they only queue tasks.
//!
//! Each operation is one struct implementing [`Operation`], with its io_uring form and its epoll
//! form side by side (see `crate::net::ops`); [`Op`] is the future that drives it on whichever
//! backend runs. What a read or an accept whose future was dropped took (io_uring only) is kept
//! on its socket for the next one: see `held`.

pub(crate) mod epoll;
mod fd;
mod held;
mod op;
pub(crate) mod uring;
mod wake;

use std::fmt;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(crate) use fd::SharedFd;
pub(crate) use held::{Accepted, Claim, OpShare, Unread};
pub(crate) use op::{Direction, Op, Operation};
pub(crate) use uring::settled;
pub use uring::{RingSetupCause, RingSetupError};
pub(crate) use wake::WakeTarget;

/// Which I/O backend a core uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// io_uring where the kernel offers everything coreio needs, epoll otherwise.
    #[default]
    Auto,
    /// io_uring, or a build error saying why it cannot be used.
    IoUring,
    /// epoll, always available on Linux.
    Epoll,
}

impl Backend {
    /// Reads `COREIO_BACKEND` (`auto`, `uring`/`io_uring`, or `epoll`), which overrides the
    /// builder's choice. An unknown value is an error naming the accepted ones.
    pub(crate) fn from_env() -> io::Result<Option<Backend>> {
        match std::env::var("COREIO_BACKEND") {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "COREIO_BACKEND is not valid UTF-8; use auto, uring or epoll",
            )),
            Ok(value) => match value.trim().to_ascii_lowercase().as_str() {
                "" | "auto" => Ok(Some(Backend::Auto)),
                "uring" | "io_uring" | "io-uring" => Ok(Some(Backend::IoUring)),
                "epoll" => Ok(Some(Backend::Epoll)),
                other => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("COREIO_BACKEND={other:?} is not a backend; use auto, uring or epoll"),
                )),
            },
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::IoUring => "io_uring",
            Backend::Epoll => "epoll",
        })
    }
}

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

/// Wakes a sleeping core through its eventfd: what a core falls back to when a `MSG_RING` it
/// sent to wake that core fails.
pub(crate) trait EventfdWake: Send + Sync {
    fn wake_by_eventfd(&self);
}

/// Settings a core needs to build its driver.
#[derive(Clone, Debug)]
pub(crate) struct DriverConfig {
    /// The resolved backend: never `Auto` here.
    pub(crate) backend: Backend,
    pub(crate) ring_entries: u32,
}

/// One core's driver.
// One per core, built once and never moved afterwards: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Driver {
    IoUring(uring::UringDriver),
    Epoll(epoll::EpollDriver),
}

impl Driver {
    /// Builds the driver on the calling (core) thread; `wake_fd` is the executor's eventfd that
    /// remote wakers write to.
    pub(crate) fn new(config: &DriverConfig, wake_fd: RawFd) -> io::Result<Driver> {
        let id = DriverId::next();
        match config.backend {
            Backend::Epoll => Ok(Driver::Epoll(epoll::EpollDriver::new(id, wake_fd)?)),
            Backend::IoUring | Backend::Auto => Ok(Driver::IoUring(uring::UringDriver::new(
                id,
                config.ring_entries,
                wake_fd,
            )?)),
        }
    }

    pub(crate) fn id(&self) -> DriverId {
        match self {
            Driver::IoUring(driver) => driver.id(),
            Driver::Epoll(driver) => driver.id(),
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Driver::IoUring(_) => Backend::IoUring,
            Driver::Epoll(_) => Backend::Epoll,
        }
    }

    /// Submits queued work and waits for events: not at all with `Some(Duration::ZERO)`, at
    /// most `timeout` otherwise, indefinitely with `None`. Wakes the tasks whose I/O finished.
    ///
    /// Wakers and the release of orphaned buffers are user code: they run after the driver's
    /// own state is consistent and unborrowed. If one panics, the others still run, and the
    /// first panic is then resumed from here, for the core to shut down and report.
    pub(crate) fn park(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Driver::IoUring(driver) => driver.park(timeout),
            Driver::Epoll(driver) => driver.park(timeout),
        }
    }

    /// A duplicate of this core's ring fd, for other cores to wake it with `MSG_RING`; `None`
    /// on epoll or when the kernel lacks `MSG_RING` (Linux 5.18).
    pub(crate) fn ring_fd_for_wakes(&self) -> Option<io::Result<OwnedFd>> {
        match self {
            Driver::IoUring(driver) => driver.ring_fd_for_wakes(),
            Driver::Epoll(_) => None,
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
        match self {
            Driver::IoUring(driver) => driver.post_ring_wake(target_ring, fallback),
            Driver::Epoll(_) => false,
        }
    }

    /// Called once every task is gone, also after a panic unwound out of the core loop: waits
    /// for the kernel to finish with every buffer it was given, so none is freed while the
    /// kernel may still write to it. Returns the first panic of a waker or a buffer's `Drop`
    /// run meanwhile (the rest still ran).
    pub(crate) fn shutdown(&self) -> Option<crate::panic::Payload> {
        match self {
            Driver::IoUring(driver) => driver.shutdown(),
            Driver::Epoll(_) => None,
        }
    }
}
