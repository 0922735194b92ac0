//! [`UnixListener`]: a listening Unix stream socket owned by one core.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use socket2::{Domain, SockRef, Socket, Type};

use super::{UnixSocketAddr, UnixStream, naming};
use crate::driver::SharedFd;
use crate::net::accept_loop::{Acceptor, accept_with_backoff};
use crate::net::{AcceptNext, Accepting, Incoming};

/// Backlog passed to `listen(2)`; the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

/// A listening Unix stream socket owned by one core.
///
/// Bind a path ([`bind`](UnixListener::bind)) or a name in Linux's abstract namespace
/// ([`bind_addr`](UnixListener::bind_addr) with
/// [`UnixSocketAddr::from_abstract_name`]). Unix sockets have no `SO_REUSEPORT`: one listener
/// owns an address. To accept on several cores, bind once and give each core its own duplicate
/// of the socket (`std::os::unix::net::UnixListener::try_clone`, then
/// [`from_std`](UnixListener::from_std) on each core); the kernel hands each connection to one
/// of them.
///
/// **The socket file stays.** Binding a path creates a socket file that outlives the listener
/// (and the process); binding it again fails with `AddrInUse` until someone removes it. coreio
/// never removes a file it did not create in this call: remove a stale one yourself
/// (`std::fs::remove_file`) once you know no server uses it, and remove yours when you are done.
///
/// A listener belongs to its core and is not `Send`:
///
/// ```compile_fail
/// fn must_be_send<T: Send>() {}
/// must_be_send::<coreio::net::UnixListener>();
/// ```
pub struct UnixListener {
    fd: SharedFd,
    local_addr: UnixSocketAddr,
    /// The accepting state: logged resource failures, the armed multishot accept.
    acceptor: Acceptor,
}

impl UnixListener {
    /// Binds a listener to the socket file `path` on the current core, creating the file.
    ///
    /// Fails with `AddrInUse`, naming the path, if the path exists (a live server's socket, a
    /// stale socket file left by one that exited, or any other file); nothing is removed. An
    /// invalid path (empty, with a NUL byte, or too long for a socket address) is
    /// `InvalidInput`.
    ///
    /// ```no_run
    /// # coreio::Builder::new().block_on(async {
    /// let listener = coreio::net::UnixListener::bind("/tmp/app.sock")?;
    /// let (stream, _peer) = listener.accept().await?;
    /// # drop(stream);
    /// # std::io::Result::Ok(()) }).unwrap().unwrap();
    /// ```
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        UnixListener::bind_addr(&UnixSocketAddr::from_pathname(path)?)
    }

    /// Binds a listener to `addr`: a path, or a name in the abstract namespace. An unnamed
    /// address is `InvalidInput` (binding one would pick a random abstract name).
    pub fn bind_addr(addr: &UnixSocketAddr) -> io::Result<UnixListener> {
        if addr.is_unnamed() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot bind a Unix listener to an unnamed address",
            ));
        }
        let socket = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
        socket
            .bind(addr.as_sock_addr())
            .map_err(|err| super::bind_error(err, addr))?;
        socket
            .listen(LISTEN_BACKLOG)
            .map_err(|err| naming(err, "listening on", addr))?;
        UnixListener::from_socket(OwnedFd::from(socket), addr.clone())
    }

    /// Wraps a listening socket made elsewhere (it is switched to non-blocking mode).
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        listener.set_nonblocking(true)?;
        let local_addr = UnixSocketAddr::from_sock_addr(SockRef::from(&listener).local_addr()?)?;
        UnixListener::from_socket(OwnedFd::from(listener), local_addr)
    }

    fn from_socket(fd: OwnedFd, local_addr: UnixSocketAddr) -> io::Result<UnixListener> {
        Ok(UnixListener {
            fd: SharedFd::new(fd)?,
            local_addr,
            acceptor: Acceptor::default(),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<UnixSocketAddr> {
        Ok(self.local_addr.clone())
    }

    /// Waits for the next connection; returns it with the peer's address, which is unnamed
    /// unless the client bound its socket before connecting.
    ///
    /// Transient failures are absorbed as by [`TcpListener::accept`](crate::net::TcpListener::accept):
    /// an aborted connection is skipped, and when the process or system runs out of
    /// descriptors or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) the listener logs one
    /// warning, backs off (1 ms doubling to 100 ms) and tries again. Other errors are returned.
    ///
    /// Cancel-safe: dropping the future before it completes never loses a connection. One the
    /// kernel had already accepted for it (on io_uring the accept may complete after the future
    /// is gone) is queued on the listener and returned by the next accept.
    ///
    /// Once the runtime is [shutting down](crate::shutdown), a pending or later accept fails
    /// with an error for which [`is_shutdown_error`](crate::shutdown::is_shutdown_error) is
    /// true (kind `Other`, "the runtime is shutting down"): end the accept loop on it.
    pub async fn accept(&self) -> io::Result<(UnixStream, UnixSocketAddr)> {
        let accepted = accept_with_backoff(&self.fd, &self.acceptor, &self.local_addr).await?;
        let stream = UnixStream::from_fd(accepted.fd)?;
        let peer = UnixSocketAddr::from_sock_addr(accepted.peer)?;
        Ok((stream, peer))
    }

    /// The listener's connections as a stream of [`accept`](UnixListener::accept) results,
    /// which ends once the runtime shuts down: see [`Incoming`].
    pub fn incoming(&self) -> Incoming<'_, (UnixStream, UnixSocketAddr)> {
        Incoming::new(self)
    }
}

impl AcceptNext<(UnixStream, UnixSocketAddr)> for UnixListener {
    fn accept_next(&self) -> Accepting<'_, (UnixStream, UnixSocketAddr)> {
        Box::pin(self.accept())
    }
}

/// The descriptor, for socket options coreio does not wrap (`socket2::SockRef::from(&listener)`).
impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("addr", &self.local_addr)
            .field("fd", &self.fd.raw())
            .finish()
    }
}
