//! [`Handoff`]: moving a socket from the core that owns it to another core.
//!
//! A socket belongs to one core: its operations go through that core's driver, and on the
//! epoll backend it is registered with that core's epoll instance. To serve a connection on a
//! different core (to balance load, or because that core owns the state the connection needs),
//! the owning core turns the socket into a [`Handoff`] — a plain, `Send` descriptor no driver
//! knows about — and the other core adopts it, typically inside
//! [`mesh::submit_to`](crate::mesh::submit_to).

// This module owns that detach/adopt protocol. It must never detach a socket that an operation
// still uses (the kernel may still be reading into a buffer of this core), never lose the bytes
// dropped reads took and nobody read yet (they travel in the `Handoff` and come back on adoption),
// and never leak the descriptor: a `Handoff` nobody adopts closes the socket when dropped.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::TcpStream;
use crate::driver::Unread;

/// A socket detached from its core, on its way to another one. `Send`, unlike the socket.
///
/// Dropping it closes the socket. Adopting it outside a coreio runtime fails (and closes it).
/// Bytes that reads dropped on the old core had taken from the socket travel with it, and the
/// first reads on the new core return them.
///
/// ```
/// use coreio::net::{Handoff, TcpListener, TcpStream};
///
/// coreio::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
///     let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
///     let (accepted, _) = listener.accept().await.unwrap();
///     let handoff: Handoff<TcpStream> = accepted.into_handoff().unwrap();
///     // ... send `handoff` to another core (it is Send); there:
///     let adopted = handoff.adopt().unwrap();
///     let (res, _) = client.write_all(b"hi".to_vec()).await;
///     res.unwrap();
///     let (res, buf) = adopted.read(Vec::with_capacity(2)).await;
///     assert_eq!(res.unwrap(), 2);
///     assert_eq!(buf, b"hi");
/// }).unwrap();
/// ```
pub struct Handoff<S> {
    fd: OwnedFd,
    /// Bytes dropped reads took from the socket and nobody has read yet.
    unread: Option<Unread>,
    /// The socket type it turns back into; `fn() -> S` keeps `Handoff` Send and Sync whatever
    /// `S` is, since no `S` is held.
    socket: PhantomData<fn() -> S>,
}

/// Socket types that can be handed to another core.
pub trait Adopt: Sized + sealed::Sealed {
    /// Wraps a detached descriptor on the current core.
    #[doc(hidden)]
    fn adopt_fd(fd: OwnedFd) -> io::Result<Self>;
}

mod sealed {
    use std::io;
    use std::os::fd::OwnedFd;

    use crate::driver::Unread;

    pub trait Sealed: Sized {
        /// Wraps a detached descriptor on the current core, with the bytes it carried.
        fn adopt_with(fd: OwnedFd, unread: Option<Unread>) -> io::Result<Self>;
    }

    impl Sealed for super::TcpStream {
        fn adopt_with(fd: OwnedFd, unread: Option<Unread>) -> io::Result<Self> {
            super::TcpStream::from_handoff(fd, unread)
        }
    }
}

impl Adopt for TcpStream {
    fn adopt_fd(fd: OwnedFd) -> io::Result<TcpStream> {
        TcpStream::from_fd(fd)
    }
}

impl<S: Adopt> Handoff<S> {
    pub(crate) fn new(fd: OwnedFd, unread: Option<Unread>) -> Handoff<S> {
        Handoff {
            fd,
            unread,
            socket: PhantomData,
        }
    }

    /// Makes the socket the current core's: its operations go through this core's driver from
    /// now on. Fails outside a coreio runtime, or when the epoll backend cannot register it.
    pub fn adopt(self) -> io::Result<S> {
        S::adopt_with(self.fd, self.unread)
    }
}

impl<S> AsRawFd for Handoff<S> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl<S> fmt::Debug for Handoff<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handoff")
            .field("fd", &self.fd)
            .field("unread", &self.unread.as_ref().map_or(0, Unread::len))
            .finish()
    }
}

/// A socket could not be detached because operations on it are still in flight; the socket
/// comes back intact with [`into_inner`](HandoffError::into_inner).
///
/// Only operations whose futures were dropped can be in flight here (a live future borrows the
/// socket, so it cannot be handed off meanwhile): on io_uring the kernel finishes cancelling
/// them within a pass of the core loop, so retrying after [`yield_now`](crate::yield_now)
/// normally succeeds.
pub struct HandoffError<S> {
    socket: S,
}

impl<S> HandoffError<S> {
    pub(crate) fn new(socket: S) -> HandoffError<S> {
        HandoffError { socket }
    }

    /// The socket, still owned by this core and usable.
    pub fn into_inner(self) -> S {
        self.socket
    }
}

impl<S> fmt::Debug for HandoffError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandoffError").finish_non_exhaustive()
    }
}

impl<S> fmt::Display for HandoffError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the socket cannot move to another core while operations on it are in flight \
             (dropped reads or writes the kernel has not finished); retry after yielding",
        )
    }
}

impl<S> std::error::Error for HandoffError<S> {}
