//! [`TcpSocket`]: a TCP socket being set up, before it listens or connects.

// This module owns the options that must be set before `bind`, `listen` or `connect` (address
// reuse, `IPV6_V6ONLY`, buffer sizes), binding a chosen local address, and the errors of those
// steps, which name the address they were about.
//
// This module must never touch a driver before `listen` or `connect`: a `TcpSocket` is a plain
// socket that can be made and configured anywhere, even outside a runtime.

use std::error::Error;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use super::{TcpListener, TcpStream};
use crate::net::port_claim::PortClaim;

/// A TCP socket not yet listening or connected, to set options that must come first.
///
/// Make one with [`new_v4`](TcpSocket::new_v4) or [`new_v6`](TcpSocket::new_v6), set options,
/// optionally [`bind`](TcpSocket::bind) it, then turn it into a [`TcpListener`] with
/// [`listen`](TcpSocket::listen) or into a [`TcpStream`] with [`connect`](TcpSocket::connect).
/// Only those two need a coreio runtime.
///
/// Unlike [`TcpListener::bind`], a `TcpSocket` sets nothing on its own: a listener made from
/// one shares its port with other sockets only if [`set_reuseport`](TcpSocket::set_reuseport)
/// was turned on, and then with *any* process of the same user that does the same. Turn it on
/// to run several processes behind one port on purpose; to share a port between the cores of
/// one process only, use [`TcpListener::bind`].
///
/// ```no_run
/// use coreio::net::TcpSocket;
///
/// coreio::block_on(async {
///     // A client connection from a chosen source address.
///     let socket = TcpSocket::new_v4()?;
///     socket.bind("127.0.0.2:0".parse().unwrap())?;
///     let stream = socket.connect("127.0.0.1:7000".parse().unwrap()).await?;
///     assert_eq!(stream.local_addr()?.ip().to_string(), "127.0.0.2");
///
///     // A listener with a short backlog.
///     let socket = TcpSocket::new_v4()?;
///     socket.set_reuseaddr(true)?;
///     socket.bind("127.0.0.1:7001".parse().unwrap())?;
///     let listener = socket.listen(64)?;
///     # drop(listener);
///     Ok::<_, std::io::Error>(())
/// }).unwrap().unwrap();
/// ```
pub struct TcpSocket {
    inner: Socket,
}

impl TcpSocket {
    /// A new IPv4 TCP socket (non-blocking, close-on-exec).
    pub fn new_v4() -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::IPV4)
    }

    /// A new IPv6 TCP socket (non-blocking, close-on-exec). Whether it also serves IPv4 (as
    /// `::ffff:a.b.c.d`) is [`set_only_v6`](TcpSocket::set_only_v6)'s to say; Linux's default
    /// (`net.ipv6.bindv6only`) is usually "both".
    pub fn new_v6() -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::IPV6)
    }

    /// A new socket of the family of `addr`.
    pub(crate) fn for_addr(addr: SocketAddr) -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::for_address(addr))
    }

    fn new(domain: Domain) -> io::Result<TcpSocket> {
        let inner = Socket::new(
            domain,
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        Ok(TcpSocket { inner })
    }

    /// Sets `SO_REUSEADDR`: a listener can bind an address that connections of an earlier one
    /// still hold in `TIME_WAIT` (a server restarting right after it stopped). It never lets two
    /// sockets listen on one address.
    pub fn set_reuseaddr(&self, reuseaddr: bool) -> io::Result<()> {
        self.inner.set_reuse_address(reuseaddr)
    }

    /// Whether `SO_REUSEADDR` is set.
    pub fn reuseaddr(&self) -> io::Result<bool> {
        self.inner.reuse_address()
    }

    /// Sets `SO_REUSEPORT`: several sockets (of the same user) that all set it may bind and
    /// listen on the same address, and the kernel spreads new connections across them. This is
    /// the explicit opt-in to share a port *with other processes*: coreio checks nothing for a
    /// listener made this way.
    pub fn set_reuseport(&self, reuseport: bool) -> io::Result<()> {
        self.inner.set_reuse_port(reuseport)
    }

    /// Whether `SO_REUSEPORT` is set.
    pub fn reuseport(&self) -> io::Result<bool> {
        self.inner.reuse_port()
    }

    /// Sets `IPV6_V6ONLY` (IPv6 sockets only): `true` serves IPv6 alone, `false` serves IPv4 too,
    /// through IPv4-mapped addresses. Set it before [`bind`](TcpSocket::bind).
    pub fn set_only_v6(&self, only_v6: bool) -> io::Result<()> {
        self.inner.set_only_v6(only_v6)
    }

    /// Whether `IPV6_V6ONLY` is set (IPv6 sockets only).
    pub fn only_v6(&self) -> io::Result<bool> {
        self.inner.only_v6()
    }

    /// Enables or disables Nagle's algorithm (`TCP_NODELAY`); a connected stream (and a
    /// listener's accepted streams, on Linux) inherits the setting.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_tcp_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.tcp_nodelay()
    }

    /// Sets the send buffer size (`SO_SNDBUF`). Linux doubles the value for its bookkeeping and
    /// caps it at `net.core.wmem_max`, so [`send_buffer_size`](TcpSocket::send_buffer_size)
    /// reads back something else.
    pub fn set_send_buffer_size(&self, size: usize) -> io::Result<()> {
        self.inner.set_send_buffer_size(size)
    }

    /// The send buffer size (`SO_SNDBUF`) as the kernel reports it.
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        self.inner.send_buffer_size()
    }

    /// Sets the receive buffer size (`SO_RCVBUF`); as with the send buffer, Linux doubles it and
    /// caps it (at `net.core.rmem_max`). On a listener, set it before
    /// [`listen`](TcpSocket::listen): it bounds the TCP window that accepted streams offer.
    pub fn set_recv_buffer_size(&self, size: usize) -> io::Result<()> {
        self.inner.set_recv_buffer_size(size)
    }

    /// The receive buffer size (`SO_RCVBUF`) as the kernel reports it.
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        self.inner.recv_buffer_size()
    }

    /// Binds the socket to `addr`: the address a listener serves, or the source address of a
    /// connection (port 0 lets the kernel pick the port). The error names `addr`.
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        self.inner
            .bind(&SockAddr::from(addr))
            .map_err(|err| with_addr(err, "binding", addr))
    }

    /// The local address: after [`bind`](TcpSocket::bind), the one bound (with the port the
    /// kernel picked for port 0); before, an unspecified address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket_addr(self.inner.local_addr()?)
    }

    /// Starts listening, with room for `backlog` connections waiting to be accepted (the kernel
    /// caps it at `net.core.somaxconn`), and makes the socket a [`TcpListener`] of the current
    /// core. An unbound socket listens on a port the kernel picks. Fails outside a runtime.
    pub fn listen(self, backlog: u32) -> io::Result<TcpListener> {
        self.listen_claimed(backlog, None)
    }

    /// Connects to `addr` and makes the socket a [`TcpStream`] of the current core. An unbound
    /// socket gets its source address from the kernel. The error names `addr`.
    pub async fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        // A socket made with `from_raw_fd` may still block.
        self.inner.set_nonblocking(true)?;
        TcpStream::connect_socket(OwnedFd::from(self.inner), addr)
            .await
            .map_err(|err| with_addr(err, "connecting to", addr))
    }

    /// The listening step of [`listen`](TcpSocket::listen), holding `claim` (if any) for the
    /// listener's life.
    pub(crate) fn listen_claimed(
        self,
        backlog: u32,
        claim: Option<PortClaim>,
    ) -> io::Result<TcpListener> {
        self.inner.set_nonblocking(true)?;
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        let bound = self.local_addr()?;
        self.inner
            .listen(backlog)
            .map_err(|err| with_addr(err, "listening on", bound))?;
        // An unbound socket got its port from `listen`.
        let local_addr = self.local_addr()?;
        TcpListener::from_listening(OwnedFd::from(self.inner), local_addr, claim)
    }

    /// The socket's options, for the bind steps of `TcpListener` that read them.
    pub(crate) fn sock_ref(&self) -> SockRef<'_> {
        SockRef::from(&self.inner)
    }
}

/// The descriptor, for options coreio does not wrap (`socket2::SockRef::from(&socket)`).
impl AsFd for TcpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsRawFd for TcpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl IntoRawFd for TcpSocket {
    fn into_raw_fd(self) -> RawFd {
        self.inner.into_raw_fd()
    }
}

impl FromRawFd for TcpSocket {
    /// Wraps a TCP socket made elsewhere; [`listen`](TcpSocket::listen) and
    /// [`connect`](TcpSocket::connect) switch it to non-blocking mode.
    ///
    /// # Safety
    ///
    /// `fd` must be an open TCP socket (`AF_INET` or `AF_INET6`, `SOCK_STREAM`) that is neither
    /// listening nor connected, and the caller gives up its ownership: nothing else may use or
    /// close it afterwards.
    unsafe fn from_raw_fd(fd: RawFd) -> TcpSocket {
        TcpSocket {
            // SAFETY: the caller guarantees `fd` is an open socket whose ownership moves here.
            inner: unsafe { Socket::from_raw_fd(fd) },
        }
    }
}

impl fmt::Debug for TcpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpSocket")
            .field("fd", &self.inner.as_raw_fd())
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// An IP address out of a socket2 address.
pub(crate) fn socket_addr(addr: SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket()
        .ok_or_else(|| io::Error::other("socket has a non-IP address"))
}

/// `err`, of the same kind, with a message that names what was done to which address
/// (`binding 127.0.0.1:7000: Address already in use (os error 98)`); the original error stays
/// reachable as the [`source`](Error::source).
pub(crate) fn with_addr(err: io::Error, action: &'static str, addr: SocketAddr) -> io::Error {
    io::Error::new(
        err.kind(),
        AddrError {
            action,
            addr,
            cause: err,
        },
    )
}

/// An error of a step on one address.
#[derive(Debug)]
struct AddrError {
    action: &'static str,
    addr: SocketAddr,
    cause: io::Error,
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.action, self.addr, self.cause)
    }
}

impl Error for AddrError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.cause)
    }
}
