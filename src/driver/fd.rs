//! [`SharedFd`]: a socket descriptor shared by its owner and its in-flight operations.
//!
//! A `TcpStream` and every operation it has in flight each hold a clone; the descriptor is
//! closed when the last clone goes, i.e. after the stream is dropped *and* the kernel has
//! completed every operation on it. On the epoll backend the fd is registered with the core's
//! epoll instance once, when it is wrapped, and deregistered when it is closed. The descriptor
//! also carries its [`Held`] area, where reads and accepts whose futures were dropped leave what
//! they took for the next ones (see `super::held`). This module owns that close-after-last-use
//! rule; it must never close an fd an operation may still use.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::{fmt, io};

use super::held::Held;
use super::{Driver, DriverId};
use crate::context;
use crate::sys;

/// A reference-counted, core-local descriptor.
#[derive(Clone)]
pub(crate) struct SharedFd {
    inner: Rc<Inner>,
}

struct Inner {
    fd: RawFd,
    /// The driver of the core that wrapped the fd: the only one its operations may use, and
    /// the one whose epoll instance holds it.
    owner: DriverId,
    /// The epoll driver's token for this fd, on the epoll backend.
    epoll_token: Option<usize>,
    /// What dropped reads and accepts left for the owner; empty (and unallocated) almost always.
    held: Held,
}

impl SharedFd {
    /// Takes ownership of `fd` on the current core, registering it with the epoll backend if
    /// that is what the core runs.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<SharedFd> {
        let raw = fd.into_raw_fd();
        let registered = context::with(|ctx| {
            let token = match &ctx.driver {
                Driver::Epoll(driver) => driver.register(raw).map(Some),
                Driver::IoUring(_) => Ok(None),
            };
            token.map(|token| (ctx.driver.id(), token))
        });
        let (owner, epoll_token) = match registered {
            Some(Ok(registered)) => registered,
            Some(Err(err)) => {
                sys::close(raw);
                return Err(err);
            }
            None => {
                sys::close(raw);
                return Err(context::no_runtime());
            }
        };
        Ok(SharedFd {
            inner: Rc::new(Inner {
                fd: raw,
                owner,
                epoll_token,
                held: Held::default(),
            }),
        })
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.inner.fd
    }

    /// The driver this descriptor belongs to.
    pub(crate) fn owner(&self) -> DriverId {
        self.inner.owner
    }

    /// Takes the descriptor back out, open, when no operation holds a clone: deregistered from
    /// this core's epoll instance (on that backend) so another core can adopt it, together with
    /// what its [`Held`] area holds, for the new owner. Gives the `SharedFd` back while
    /// operations (dropped ones the kernel has not finished included) still use it.
    pub(crate) fn try_into_owned(self) -> Result<(OwnedFd, Held), SharedFd> {
        let mut inner = Rc::try_unwrap(self.inner).map_err(|inner| SharedFd { inner })?;
        // Taken out before `inner` is forgotten below, so that nothing it holds leaks.
        let held = std::mem::take(&mut inner.held);
        let inner = std::mem::ManuallyDrop::new(inner);
        if let Some(token) = inner.epoll_token {
            context::with(|ctx| {
                if let Driver::Epoll(driver) = &ctx.driver
                    && driver.id() == inner.owner
                {
                    driver.deregister_open(inner.fd, token);
                }
            });
        }
        // SAFETY: `inner` was the last owner of `fd` and is never dropped (ManuallyDrop), so
        // its close does not run: ownership of the open descriptor passes to the `OwnedFd`.
        Ok((unsafe { OwnedFd::from_raw_fd(inner.fd) }, held))
    }

    /// The holding area for what dropped reads and accepts on this fd took.
    pub(crate) fn held(&self) -> &Held {
        &self.inner.held
    }

    /// The epoll token, on the epoll backend.
    pub(crate) fn epoll_token(&self) -> Option<usize> {
        self.inner.epoll_token
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(token) = self.epoll_token {
            // Only in its own driver: the same token in another runtime's epoll driver names
            // another fd. Away from it, closing still removes the fd from its epoll set; only
            // the token's slot stays taken until that driver goes.
            context::with(|ctx| {
                if let Driver::Epoll(driver) = &ctx.driver
                    && driver.id() == self.owner
                {
                    driver.deregister(token);
                }
            });
        }
        // Closing also removes the fd from the epoll interest list: coreio never dups it.
        sys::close(self.fd);
    }
}

impl AsFd for SharedFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor stays open while any clone of this `SharedFd` lives, and the
        // borrow cannot outlive `self`.
        unsafe { BorrowedFd::borrow_raw(self.inner.fd) }
    }
}

impl fmt::Debug for SharedFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedFd").field(&self.inner.fd).finish()
    }
}
