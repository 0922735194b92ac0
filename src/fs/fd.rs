//! [`FileFd`]: a file's descriptor, shared by its [`File`](super::File) and the operations it
//! has in flight, and closed without blocking the core once the last of them lets go.
//!
//! Closing a file can block (a network file system flushes on close, and the last close of a
//! file with dirty pages may wait), so the close is handed to the driver (`close_later`): an
//! `IORING_OP_CLOSE` on io_uring, a blocking-pool job on epoll. An operation whose future was
//! dropped keeps its clone until the kernel (or the pool thread) has finished with the
//! descriptor, so the number is never closed, and never reused by another open, under it.

// This module owns that close-after-last-use rule for files; it must never close a descriptor an
// operation may still use, nor block the core to close one.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;

use crate::context;

/// A reference-counted, core-local file descriptor.
#[derive(Clone, Debug)]
pub(crate) struct FileFd {
    inner: Rc<Closer>,
}

/// Owns the descriptor; closes it in the background when dropped.
#[derive(Debug)]
struct Closer(Option<OwnedFd>);

impl Drop for Closer {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            close_in_background(fd);
        }
    }
}

/// Closes `fd` through the current core's driver without blocking it; outside a runtime, here.
pub(crate) fn close_in_background(fd: OwnedFd) {
    let mut fd = Some(fd);
    context::with(|ctx| {
        if let Some(fd) = fd.take() {
            ctx.driver.close_later(fd);
        }
    });
    // Outside any runtime there is no core to keep from blocking: close now.
    drop(fd);
}

impl FileFd {
    pub(crate) fn new(fd: OwnedFd) -> FileFd {
        FileFd {
            inner: Rc::new(Closer(Some(fd))),
        }
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.borrowed().as_raw_fd()
    }

    fn borrowed(&self) -> BorrowedFd<'_> {
        match &self.inner.0 {
            Some(fd) => fd.as_fd(),
            None => unreachable!("a FileFd holds its descriptor until its last clone drops"),
        }
    }

    /// The descriptor itself, when no operation holds a clone any more; else `self` back.
    pub(crate) fn try_take(self) -> Result<OwnedFd, FileFd> {
        match Rc::try_unwrap(self.inner) {
            Ok(mut closer) => match closer.0.take() {
                Some(fd) => Ok(fd),
                None => unreachable!("a FileFd holds its descriptor until its last clone drops"),
            },
            Err(inner) => Err(FileFd { inner }),
        }
    }
}

impl AsFd for FileFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.borrowed()
    }
}
