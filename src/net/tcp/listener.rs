//! [`TcpListener`]: a per-core listening socket that keeps accepting through fd exhaustion.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use super::into_std::{IntoStdError, Reason};
use super::socket::with_addr;
use super::{TcpSocket, TcpStream};
use crate::driver::SharedFd;
use crate::net::accept_loop::{Acceptor, accept_with_backoff};
use crate::net::port_claim::PortClaim;
use crate::net::{AcceptNext, Accepting, Incoming};

/// Backlog passed to `listen(2)`; the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// A TCP listening socket owned by one core.
///
/// [`bind`](TcpListener::bind) sets `SO_REUSEADDR` and `SO_REUSEPORT`: bind the same address on
/// every core and the kernel balances new connections across the cores' listeners. That
/// sharing stays within the process: `bind` fails with
/// [`AddrInUse`](std::io::ErrorKind::AddrInUse) when another process (a second coreio server
/// started by mistake, say) already listens on the address. To share a port with other
/// processes on purpose, use [`bind_shared`](TcpListener::bind_shared) or a [`TcpSocket`] with
/// [`set_reuseport`](TcpSocket::set_reuseport). A listener belongs to its core and is not
/// `Send`:
///
/// ```compile_fail
/// fn must_be_send<T: Send>() {}
/// must_be_send::<coreio::net::TcpListener>();
/// ```
pub struct TcpListener {
    fd: SharedFd,
    local_addr: SocketAddr,
    /// The accepting state: logged resource failures, the armed multishot accept.
    acceptor: Acceptor,
    /// This process's claim on the address, for listeners made by `bind`.
    claim: Option<PortClaim>,
}

impl TcpListener {
    /// Binds a listener to `addr` on the current core.
    ///
    /// Port 0 picks a free port; [`local_addr`](TcpListener::local_addr) tells which. To share
    /// it across cores, bind port 0 on one core and the resulting address on the others.
    ///
    /// The listeners of one process (on any of its cores and runtimes) share an address; a
    /// listener of another process does not: if one already listens on `addr`, or on an address
    /// that overlaps it (`0.0.0.0:P` covers `127.0.0.1:P`, and `[::]:P` covers both unless
    /// `IPV6_V6ONLY` is set), `bind` fails with `AddrInUse`. Connections in `TIME_WAIT` from an
    /// earlier server do not stop it. Against another coreio process binding the same address
    /// the check is exact even when both start at once (they meet on an abstract Unix socket
    /// name, `@coreio/tcp-listen/ADDR`, held while this process listens there); against other
    /// programs that set `SO_REUSEPORT`, one that starts listening in the instant between the
    /// check and this listener's `listen` is not seen. Within the process, listeners share the
    /// exact address they bind: binding `0.0.0.0:P` while this process listens on
    /// `127.0.0.1:P` is refused like any other overlap.
    ///
    /// Errors name the address: `binding 127.0.0.1:7000: ...`.
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        let socket = TcpSocket::for_addr(addr)?;
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        let local_addr = socket.local_addr()?;
        let claim = PortClaim::acquire(local_addr, socket.sock_ref())
            .map_err(|err| with_addr(err, "binding", local_addr))?;
        socket.listen_claimed(LISTEN_BACKLOG, Some(claim))
    }

    /// Binds a listener to `addr` that shares the address with any socket of the same user that
    /// sets `SO_REUSEPORT`, in this process or another: the explicit opt-in to run several
    /// processes behind one port (the kernel spreads connections across all of them). No check
    /// is made for other listeners. Errors name the address.
    pub fn bind_shared(addr: SocketAddr) -> io::Result<TcpListener> {
        let socket = TcpSocket::for_addr(addr)?;
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    }

    /// Wraps a listening socket made elsewhere (it is switched to non-blocking mode).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        TcpListener::from_listening(OwnedFd::from(listener), local_addr, None)
    }

    /// Wraps a non-blocking listening socket on the current core.
    pub(crate) fn from_listening(
        fd: OwnedFd,
        local_addr: SocketAddr,
        claim: Option<PortClaim>,
    ) -> io::Result<TcpListener> {
        Ok(TcpListener {
            fd: SharedFd::new(fd)?,
            local_addr,
            acceptor: Acceptor::default(),
            claim,
        })
    }

    /// Turns the listener into a std one, which keeps the socket (and its options, so
    /// `SO_REUSEPORT` if `bind` set it) and stays in non-blocking mode: call
    /// `set_nonblocking(false)` for blocking accepts. Connections waiting in the backlog stay
    /// there for the std listener. The port claim of [`bind`](TcpListener::bind) ends here:
    /// coreio stops counting the listener among this process's.
    ///
    /// Fails, giving the listener back, while accepts whose futures were dropped are still
    /// finishing or have left connections nobody has accepted yet (accept them first); see
    /// [`IntoStdError`].
    ///
    /// On io_uring with [multishot accept](crate::Builder::multishot_accept), a listener that
    /// has accepted keeps a multishot accept armed in the kernel, and the std listener must
    /// not share the backlog with it: `into_std` cancels it first. On Linux 6.0 and later
    /// the cancellation finishes before `into_std` goes on (`IORING_REGISTER_SYNC_CANCEL`), so
    /// it succeeds unless the multishot accept holds connections nobody accepted (accept them
    /// first). On older kernels the first `into_std` fails, and a retry after
    /// [`yield_now`](crate::yield_now) succeeds once the cancellation has finished, within a
    /// pass of the core loop.
    pub fn into_std(self) -> Result<std::net::TcpListener, IntoStdError<TcpListener>> {
        self.acceptor.disarm();
        if !self.fd.held().is_clear() {
            return Err(IntoStdError::new(self, Reason::Held));
        }
        let TcpListener {
            fd,
            local_addr,
            acceptor,
            claim,
        } = self;
        match fd.try_into_owned() {
            Ok((fd, _nothing_held)) => Ok(std::net::TcpListener::from(fd)),
            Err(fd) => Err(IntoStdError::new(
                TcpListener {
                    fd,
                    local_addr,
                    acceptor,
                    claim,
                },
                Reason::InFlight,
            )),
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    /// Waits for the next connection.
    ///
    /// Transient failures are absorbed: a connection aborted before it was accepted
    /// (`ECONNABORTED`) is skipped, and when the process or system runs out of descriptors or
    /// memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) the listener logs one warning, backs off
    /// (1 ms doubling to 100 ms) and tries again, so the server keeps serving the connections it
    /// has and resumes accepting as soon as descriptors free up. Other errors are returned.
    ///
    /// Cancel-safe: dropping the future before it completes never loses a connection. One the
    /// kernel had already accepted for it (on io_uring the accept may complete after the future
    /// is gone) is queued on the listener and returned by the next accept.
    ///
    /// Once the runtime is [shutting down](crate::shutdown), a pending or later accept fails
    /// with an error for which [`is_shutdown_error`](crate::shutdown::is_shutdown_error) is
    /// true (kind `Other`, "the runtime is shutting down"): end the accept loop on it.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let accepted = accept_with_backoff(&self.fd, &self.acceptor, &self.local_addr).await?;
        let peer = accepted
            .peer
            .as_socket()
            .ok_or_else(|| io::Error::other("accepted a non-IP peer"))?;
        Ok((TcpStream::from_fd(accepted.fd)?, peer))
    }

    /// The listener's connections as a stream of [`accept`](TcpListener::accept) results,
    /// which ends once the runtime shuts down: see [`Incoming`].
    pub fn incoming(&self) -> Incoming<'_, (TcpStream, SocketAddr)> {
        Incoming::new(self)
    }
}

impl AcceptNext<(TcpStream, SocketAddr)> for TcpListener {
    fn accept_next(&self) -> Accepting<'_, (TcpStream, SocketAddr)> {
        Box::pin(self.accept())
    }
}

/// The descriptor, for socket options coreio does not wrap (`socket2::SockRef::from(&listener)`).
impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

/// Gives up the descriptor, as [`into_std`](TcpListener::into_std) does.
///
/// # Panics
///
/// Where `into_std` would fail (dropped accepts still finishing, or connections they took that
/// nobody has accepted yet, or a multishot accept being cancelled): a descriptor given away
/// then would lose those connections. Use `into_std` to get the listener back instead.
impl IntoRawFd for TcpListener {
    fn into_raw_fd(self) -> RawFd {
        match self.into_std() {
            Ok(listener) => listener.into_raw_fd(),
            Err(err) => panic!("TcpListener::into_raw_fd: {err}"),
        }
    }
}

/// Wraps a listening socket made elsewhere, as [`from_std`](TcpListener::from_std) does.
///
/// # Safety
///
/// `fd` must be an open TCP socket that is listening, and the caller gives up its ownership:
/// nothing else may use or close it afterwards.
///
/// # Panics
///
/// Outside a coreio runtime, or where `from_std` would fail (the epoll backend cannot register
/// the descriptor): use `from_std(std::net::TcpListener::from_raw_fd(fd))` to get an error.
impl FromRawFd for TcpListener {
    unsafe fn from_raw_fd(fd: RawFd) -> TcpListener {
        // SAFETY: the caller guarantees `fd` is an open listening socket owned by no one else.
        let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        TcpListener::from_std(listener)
            .unwrap_or_else(|err| panic!("TcpListener::from_raw_fd: {err}"))
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("addr", &self.local_addr)
            .field("fd", &self.fd.raw())
            .field("claimed", &self.claim.is_some())
            .finish()
    }
}
