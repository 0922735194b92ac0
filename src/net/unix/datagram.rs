//! [`UnixDatagram`]: a Unix datagram socket owned by one core, over the same datagram
//! operations as [`UdpSocket`](crate::net::UdpSocket) (`DatagramRecv`, `DatagramSend`) with
//! Unix addresses.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use super::{UCred, UnixSocketAddr, cred, naming};
use crate::buf::{IoBuf, IoBufMut};
use crate::driver::{Op, SharedFd};
use crate::net::DatagramTruncated;
use crate::net::ops::{Control, Datagram, DatagramRecv, DatagramSend, RecvFlags};

/// First pause of a send retried while the peer's queue is full (io_uring); doubled on each
/// retry up to [`MAX_SEND_BACKOFF`].
const MIN_SEND_BACKOFF: Duration = Duration::from_millis(1);
const MAX_SEND_BACKOFF: Duration = Duration::from_millis(100);

/// A Unix datagram socket: bound to a path, to a name in Linux's abstract namespace, or
/// unbound; connected to one peer or sending to any.
///
/// I/O takes buffers by value and gives them back with the result, as for
/// [`UdpSocket`](crate::net::UdpSocket), and follows its rules: each receive gets one whole
/// datagram, one longer than the buffer is a [`DatagramTruncated`] error (its
/// [`peer`](DatagramTruncated::peer) is `None` here) with the first bytes in the buffer, and a
/// receive dropped in flight on io_uring may lose the datagram it took. Unlike UDP, Unix
/// datagrams are never dropped by the kernel: a send to a peer whose receive queue is full
/// waits until the peer reads (on epoll for the socket's writability, which for
/// [`send_to`](Self::send_to) comes when a datagram this socket sent is read; on io_uring on a
/// timer, 1 ms doubling to 100 ms, because the kernel's own retry of such a send loses its
/// bytes), and a send to an address nobody is bound to fails at once (`ConnectionRefused`, or
/// `NotFound` for a missing path).
///
/// **The socket file stays**, as for [`UnixListener`](crate::net::UnixListener): binding a
/// path creates a file that outlives the socket, and binding it again fails with `AddrInUse`.
///
/// A socket belongs to the core that made it, so it is neither `Send` nor `Sync`:
///
/// ```compile_fail
/// fn must_be_send<T: Send>() {}
/// must_be_send::<coreio::net::UnixDatagram>();
/// ```
pub struct UnixDatagram {
    fd: SharedFd,
}

impl UnixDatagram {
    /// A socket bound to the socket file `path` (created; `AddrInUse` naming the path if it
    /// exists).
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        UnixDatagram::bind_addr(&UnixSocketAddr::from_pathname(path)?)
    }

    /// A socket bound to `addr`: a path, or a name in the abstract namespace. An unnamed
    /// address is `InvalidInput`.
    pub fn bind_addr(addr: &UnixSocketAddr) -> io::Result<UnixDatagram> {
        if addr.is_unnamed() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot bind a Unix datagram socket to an unnamed address",
            ));
        }
        let socket = new_socket()?;
        socket
            .bind(addr.as_sock_addr())
            .map_err(|err| super::bind_error(err, addr))?;
        UnixDatagram::from_fd(OwnedFd::from(socket))
    }

    /// A socket bound to no address: it can send, and receive what is sent to it once it is
    /// connected (replies to an unbound sender have nowhere to go).
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::from_fd(OwnedFd::from(new_socket()?))
    }

    /// A pair of connected, unnamed sockets on the current core (`socketpair(2)`).
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::DGRAM.nonblocking().cloexec(), None)?;
        Ok((
            UnixDatagram::from_fd(OwnedFd::from(a))?,
            UnixDatagram::from_fd(OwnedFd::from(b))?,
        ))
    }

    /// Wraps a socket made elsewhere (it is switched to non-blocking mode).
    pub fn from_std(socket: std::os::unix::net::UnixDatagram) -> io::Result<UnixDatagram> {
        socket.set_nonblocking(true)?;
        UnixDatagram::from_fd(OwnedFd::from(socket))
    }

    fn from_fd(fd: OwnedFd) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            fd: SharedFd::new(fd)?,
        })
    }

    /// Sets the socket's default peer, the socket file `path`: [`send`](Self::send) goes
    /// there and only its datagrams are received. Immediate.
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.connect_addr(&UnixSocketAddr::from_pathname(path)?)
    }

    /// [`connect`](Self::connect) to `addr`, a path or an abstract name.
    pub fn connect_addr(&self, addr: &UnixSocketAddr) -> io::Result<()> {
        SockRef::from(&self.fd)
            .connect(addr.as_sock_addr())
            .map_err(|err| naming(err, "connecting to", addr))
    }

    /// Sends `buf`'s initialised bytes as one datagram to the socket file `path`.
    pub async fn send_to<B: IoBuf>(
        &self,
        buf: B,
        path: impl AsRef<Path>,
    ) -> (io::Result<usize>, B) {
        match UnixSocketAddr::from_pathname(path) {
            Ok(addr) => self.send_to_addr(buf, &addr).await,
            Err(err) => (Err(err), buf),
        }
    }

    /// Sends one datagram to `addr`, a path or an abstract name.
    pub async fn send_to_addr<B: IoBuf>(
        &self,
        buf: B,
        addr: &UnixSocketAddr,
    ) -> (io::Result<usize>, B) {
        let (res, buf) = self
            .send_datagram(buf, Some(addr.as_sock_addr().clone()))
            .await;
        (res.map_err(|err| naming(err, "sending to", addr)), buf)
    }

    /// Sends one datagram to the connected peer.
    pub async fn send<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        self.send_datagram(buf, None).await
    }

    /// Receives one datagram into `buf` (from its start, up to its capacity); returns its
    /// length and its sender (unnamed for an unbound sender). A datagram longer than the
    /// buffer is a [`DatagramTruncated`] error, with its first bytes in the buffer.
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> (io::Result<(usize, UnixSocketAddr)>, B) {
        self.recv_with_peer(buf, false).await
    }

    /// Like [`recv_from`](Self::recv_from), but leaves the datagram queued.
    pub async fn peek_from<B: IoBufMut>(&self, buf: B) -> (io::Result<(usize, UnixSocketAddr)>, B) {
        self.recv_with_peer(buf, true).await
    }

    /// Receives one datagram (from the connected peer, on a connected socket); returns its
    /// length, or [`DatagramTruncated`] as for [`recv_from`](Self::recv_from).
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        let capacity = buf.bytes_total();
        let (res, buf) = self.receive(buf, RecvFlags::default()).await;
        let res = res.and_then(|datagram| {
            if datagram.truncated() {
                return Err(DatagramTruncated::error(datagram.full_len, capacity, None));
            }
            Ok(datagram.len)
        });
        (res, buf)
    }

    /// Shuts down receiving, sending (the peer's receives still get what was queued), or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        SockRef::from(&self.fd).shutdown(how)
    }

    /// The peer's credentials (`SO_PEERCRED`): set for a socket from [`pair`](Self::pair) or
    /// one connected to a bound peer.
    pub fn peer_cred(&self) -> io::Result<UCred> {
        cred::peer_cred(self.fd.as_fd())
    }

    /// The address this socket is bound to (unnamed when unbound).
    pub fn local_addr(&self) -> io::Result<UnixSocketAddr> {
        UnixSocketAddr::from_sock_addr(SockRef::from(&self.fd).local_addr()?)
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<UnixSocketAddr> {
        UnixSocketAddr::from_sock_addr(SockRef::from(&self.fd).peer_addr()?)
    }

    /// A pending socket error, taken (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        SockRef::from(&self.fd).take_error()
    }
}

impl UnixDatagram {
    /// One datagram to `target` (the connected peer for `None`). On io_uring the send does
    /// not wait in the kernel (see `DatagramSend::dont_wait`): while the peer's queue is full it
    /// is retried on a timer, 1 ms doubling to 100 ms, each time as a fresh operation.
    async fn send_datagram<B: IoBuf>(
        &self,
        buf: B,
        target: Option<SockAddr>,
    ) -> (io::Result<usize>, B) {
        let mut buf = buf;
        let mut backoff = MIN_SEND_BACKOFF;
        loop {
            let op = DatagramSend::new(self.fd.clone(), buf, target.clone(), Control::new());
            let completion = Op::new(op.dont_wait()).await;
            buf = completion.data.into_buf();
            match completion.result {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    crate::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_SEND_BACKOFF);
                }
                result => return (result.map(|n| n as usize), buf),
            }
        }
    }

    async fn receive<B: IoBufMut>(&self, buf: B, flags: RecvFlags) -> (io::Result<Datagram>, B) {
        let completion = Op::new(DatagramRecv::new(self.fd.clone(), buf, flags)).await;
        completion.data.finish(completion.result)
    }

    async fn recv_with_peer<B: IoBufMut>(
        &self,
        buf: B,
        peek: bool,
    ) -> (io::Result<(usize, UnixSocketAddr)>, B) {
        let capacity = buf.bytes_total();
        let flags = RecvFlags {
            peek,
            name: true,
            ..RecvFlags::default()
        };
        let (res, buf) = self.receive(buf, flags).await;
        let res = res.and_then(|datagram| {
            if datagram.truncated() {
                return Err(DatagramTruncated::error(datagram.full_len, capacity, None));
            }
            // An unbound sender has no address: the kernel writes the family alone, or nothing.
            let peer = match datagram.peer() {
                Some(addr) => UnixSocketAddr::from_sock_addr(addr)?,
                None => UnixSocketAddr::unnamed(),
            };
            Ok((datagram.len, peer))
        });
        (res, buf)
    }
}

fn new_socket() -> io::Result<Socket> {
    Socket::new(Domain::UNIX, Type::DGRAM.nonblocking().cloexec(), None)
}

/// The descriptor, for socket options coreio does not wrap. Reading or writing it directly
/// bypasses the core's driver: use the socket's methods.
impl AsFd for UnixDatagram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for UnixDatagram {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("UnixDatagram");
        if let Ok(addr) = self.local_addr() {
            debug.field("addr", &addr);
        }
        debug.field("fd", &self.fd.raw()).finish()
    }
}
