//! [`SharedFd`]: a socket descriptor shared by its owner and its in-flight operations.
//!
//! A `TcpStream` and every operation it has in flight each hold a clone; the descriptor is
//! closed when the last clone goes, i.e. after the stream is dropped *and* the kernel has
//! completed every operation on it. On the epoll backend the fd is registered with the core's
//! epoll instance once, when it is wrapped, and deregistered when it is closed. The descriptor
//! also carries its [`Held`] area, where reads and accepts whose futures were dropped leave what
//! they took for the next ones (see `super::held`).

// This module owns that close-after-last-use rule; it must never close an fd an operation may still
// use.

use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::{fmt, io};

use super::held::Held;
use super::{DriverId, Registration};
use crate::context;

/// A reference-counted, core-local descriptor.
#[derive(Clone)]
pub(crate) struct SharedFd {
    inner: Rc<Inner>,
}

/// The fields drop in order: the registration is forgotten by its driver before the descriptor
/// closes.
struct Inner {
    /// The driver of the core that wrapped the fd (the only one its operations may use, and
    /// the one whose epoll instance holds it), and its epoll token on that backend.
    registration: Registered,
    fd: OwnedFd,
    /// What dropped reads and accepts left for the owner; empty (and unallocated) almost always.
    held: Held,
}

impl SharedFd {
    /// Takes ownership of `fd` on the current core, registering it with the epoll backend if
    /// that is what the core runs.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<SharedFd> {
        // On failure `fd` drops here, which closes it.
        let registration = context::with(|ctx| ctx.driver.register_fd(fd.as_raw_fd()))
            .unwrap_or_else(|| Err(context::no_runtime()))?;
        Ok(SharedFd {
            inner: Rc::new(Inner {
                registration: Registered(registration),
                fd,
                held: Held::default(),
            }),
        })
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.inner.fd.as_raw_fd()
    }

    /// The driver this descriptor belongs to.
    pub(crate) fn owner(&self) -> DriverId {
        self.inner.registration.0.owner
    }

    /// Takes the descriptor back out, open, when no operation holds a clone: deregistered from
    /// this core's epoll instance (on that backend) so another core can adopt it, together with
    /// what its [`Held`] area holds, for the new owner. Gives the `SharedFd` back while
    /// operations (dropped ones the kernel has not finished included) still use it.
    pub(crate) fn try_into_owned(self) -> Result<(OwnedFd, Held), SharedFd> {
        let Inner {
            registration,
            fd,
            held,
        } = Rc::try_unwrap(self.inner).map_err(|inner| SharedFd { inner })?;
        registration.release(&fd);
        Ok((fd, held))
    }

    /// The holding area for what dropped reads and accepts on this fd took.
    pub(crate) fn held(&self) -> &Held {
        &self.inner.held
    }

    /// What its driver knows of the descriptor.
    pub(crate) fn registration(&self) -> &Registration {
        &self.inner.registration.0
    }

    /// io_uring: the descriptor's slot in its ring's registered file table, once registered
    /// there; operations name it instead of the descriptor (`uring_target!`).
    pub(crate) fn fixed_slot(&self) -> Option<u32> {
        self.inner.registration.0.fixed.index()
    }

    /// io_uring: whether the last stream receive emptied the socket (see
    /// `Registration::read_drained`).
    pub(crate) fn read_drained(&self) -> bool {
        self.inner.registration.0.read_drained.get()
    }

    pub(crate) fn set_read_drained(&self, drained: bool) {
        self.inner.registration.0.read_drained.set(drained);
    }

    /// The epoll token, on the epoll backend.
    pub(crate) fn epoll_token(&self) -> Option<usize> {
        self.inner.registration.0.epoll_token
    }
}

/// A descriptor's registration with its driver, forgotten by that driver when dropped.
struct Registered(Registration);

impl Registered {
    /// Forgets the registration of `fd`, which stays open (it moves to another core): removed
    /// from this driver's epoll set (on that backend), and not deregistered again on drop.
    fn release(self, fd: &OwnedFd) {
        let this = ManuallyDrop::new(self);
        context::with(|ctx| ctx.driver.release_fd(&this.0, fd.as_raw_fd()));
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // Runs just before the descriptor closes (which removes it from the epoll interest
        // list: coreio never dups a socket's fd; `io::AsyncFd`, whose fd is a duplicate, takes
        // its registration out explicitly first, through `try_into_owned`). Away from its own driver only the token's slot stays
        // taken until that driver goes.
        context::with(|ctx| ctx.driver.deregister_fd(&self.0));
    }
}

impl AsFd for SharedFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }
}

impl fmt::Debug for SharedFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedFd").field(&self.raw()).finish()
    }
}
