//! [`UdpSocket`]: a UDP socket owned by one core, its datagram I/O and its addresses. The
//! socket options are in `options.rs`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use socket2::{Domain, SockAddr, SockRef};

use super::{DatagramTruncated, PacketInfo, RecvMeta, UdpBuilder};
use crate::buf::{IoBuf, IoBufMut};
use crate::driver::{Op, SharedFd};
use crate::net::ops::{Control, Datagram, DatagramRecv, DatagramSend, RecvFlags};

/// A UDP socket.
///
/// I/O takes buffers by value and gives them back with the result, `(io::Result<_>, B)`, as
/// for [`TcpStream`](crate::net::TcpStream): with io_uring the kernel works on the buffer after
/// the call returns. Methods take `&self`, so one task can receive while another sends.
///
/// **Datagrams are never cut silently.** Each receive gets one whole datagram, written from
/// the buffer's start (a `Vec`'s length becomes the datagram's). One longer than the buffer's
/// capacity is *truncated*: [`recv_from`](Self::recv_from), [`recv`](Self::recv) and
/// [`peek_from`](Self::peek_from) then fail with a [`DatagramTruncated`] error (kind
/// `InvalidData`, naming the datagram's length and the buffer's) and give the buffer back
/// holding its first bytes; [`recv_msg`](Self::recv_msg) succeeds and says so in its
/// [`RecvMeta`]. An empty datagram is `Ok(0)`.
///
/// **Errors of a connected socket** (an ICMP "port unreachable" after a send to a closed port)
/// come back, as with `std`, from the next receive or send on it: `ConnectionRefused`.
///
/// **Dropping a future** before it completes is safe on both backends: the kernel never writes
/// into freed memory, and the socket stays usable. A receive dropped while in flight on
/// io_uring may have taken a datagram before its cancellation won; that datagram is dropped
/// (UDP may lose datagrams anyway), and so is an error it took. On epoll a dropped receive
/// never took anything.
///
/// Dropping the socket closes it once every operation on it has finished. A socket belongs to
/// the core that made it, so it is neither `Send` nor `Sync`:
///
/// ```compile_fail
/// fn must_be_send<T: Send>() {}
/// must_be_send::<coreio::net::UdpSocket>();
/// ```
pub struct UdpSocket {
    fd: SharedFd,
    /// Whether the socket is IPv6 (`AF_INET6`), fixed at creation.
    ipv6: bool,
}

impl UdpSocket {
    /// Binds a socket to `addr` on the current core; port 0 picks a free port. The address is
    /// the socket's alone (no `SO_REUSEPORT`): binding it twice fails with
    /// [`AddrInUse`](io::ErrorKind::AddrInUse). For one socket per core on the same port, use
    /// [`UdpSocket::builder`] with [`reuse_port`](UdpBuilder::reuse_port).
    pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
        UdpBuilder::new().bind(addr)
    }

    /// Options to set before binding: [`UdpBuilder`].
    pub fn builder() -> UdpBuilder {
        UdpBuilder::new()
    }

    /// Wraps a socket made elsewhere (it is switched to non-blocking mode).
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        let ipv6 = SockRef::from(&socket).domain()? == Domain::IPV6;
        UdpSocket::from_fd(OwnedFd::from(socket), ipv6)
    }

    pub(super) fn from_fd(fd: OwnedFd, ipv6: bool) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            fd: SharedFd::new(fd)?,
            ipv6,
        })
    }

    pub(super) fn is_ipv6(&self) -> bool {
        self.ipv6
    }

    pub(super) fn sock_ref(&self) -> SockRef<'_> {
        SockRef::from(&self.fd)
    }

    /// Sets the socket's default peer: [`send`](Self::send) goes there, only its datagrams are
    /// received, and errors it causes (`ConnectionRefused`) are reported. Immediate: UDP has no
    /// handshake. Connecting again changes the peer.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        let context = |err: io::Error| {
            io::Error::new(
                err.kind(),
                format!("connecting a UDP socket to {addr}: {err}"),
            )
        };
        self.check_family(addr).map_err(context)?;
        self.sock_ref()
            .connect(&SockAddr::from(addr))
            .map_err(context)
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(self.sock_ref().local_addr()?)
    }

    /// The connected peer's address (`NotConnected` if the socket is not connected).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(self.sock_ref().peer_addr()?)
    }

    /// Sends `buf`'s initialised bytes as one datagram to `target`; returns how many were sent
    /// (all of them: a datagram too large for UDP is an error, `EMSGSIZE`). An IPv6 target on
    /// an IPv4 socket is an `InvalidInput` error.
    pub async fn send_to<B: IoBuf>(&self, buf: B, target: SocketAddr) -> (io::Result<usize>, B) {
        if let Err(err) = self.check_family(target) {
            return (Err(err), buf);
        }
        self.send_datagram(buf, Some(SockAddr::from(target)), Control::new())
            .await
    }

    /// Sends `buf`'s initialised bytes as one datagram to the connected peer.
    pub async fn send<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        self.send_datagram(buf, None, Control::new()).await
    }

    /// Sends one datagram to `target`, from the local address and interface of `source` when
    /// given: pass the [`PacketInfo`] of a received datagram ([`RecvMeta::packet_info`]) to
    /// answer from the address it was sent to. A source that is not one of the host's
    /// addresses is an error from the kernel.
    pub async fn send_msg<B: IoBuf>(
        &self,
        buf: B,
        target: SocketAddr,
        source: Option<PacketInfo>,
    ) -> (io::Result<usize>, B) {
        if let Err(err) = self.check_family(target) {
            return (Err(err), buf);
        }
        let control = match source.map(|info| info.to_control(self.ipv6)).transpose() {
            Ok(control) => control.unwrap_or_else(Control::new),
            Err(err) => return (Err(err), buf),
        };
        self.send_datagram(buf, Some(SockAddr::from(target)), control)
            .await
    }

    /// Receives one datagram into `buf` (from its start, up to its capacity); returns its
    /// length and its sender. A datagram longer than the buffer is a [`DatagramTruncated`]
    /// error, with its first bytes in the buffer given back.
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> (io::Result<(usize, SocketAddr)>, B) {
        self.recv_with_peer(buf, false).await
    }

    /// Like [`recv_from`](Self::recv_from), but leaves the datagram queued: the next receive
    /// gets it again. A truncated peek is the same [`DatagramTruncated`] error, which tells
    /// the datagram's length, and the datagram stays queued for a larger buffer.
    pub async fn peek_from<B: IoBufMut>(&self, buf: B) -> (io::Result<(usize, SocketAddr)>, B) {
        self.recv_with_peer(buf, true).await
    }

    /// Receives one datagram from the connected peer into `buf`; returns its length. A datagram
    /// longer than the buffer is a [`DatagramTruncated`] error, as for
    /// [`recv_from`](Self::recv_from).
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

    /// Receives one datagram into `buf` with what the kernel reports of it: its sender, its
    /// full length and whether it was truncated (not an error here: [`RecvMeta::truncated`]),
    /// and, after [`set_recv_pktinfo(true)`](Self::set_recv_pktinfo), the address it was sent
    /// to ([`RecvMeta::packet_info`]).
    ///
    /// ```no_run
    /// use coreio::net::UdpSocket;
    ///
    /// # async fn f() -> std::io::Result<()> {
    /// // Bound to every address: answer each query from the address it was sent to.
    /// let socket = UdpSocket::bind("0.0.0.0:5353".parse().unwrap())?;
    /// socket.set_recv_pktinfo(true)?;
    /// loop {
    ///     let (res, buf) = socket.recv_msg(Vec::with_capacity(1500)).await;
    ///     let meta = res?;
    ///     if meta.truncated() {
    ///         continue; // too large for this service
    ///     }
    ///     let (res, _) = socket.send_msg(buf, meta.peer(), meta.packet_info()).await;
    ///     res?;
    /// }
    /// # }
    /// ```
    pub async fn recv_msg<B: IoBufMut>(&self, buf: B) -> (io::Result<RecvMeta>, B) {
        let flags = RecvFlags {
            name: true,
            control: true,
            ..RecvFlags::default()
        };
        let (res, buf) = self.receive(buf, flags).await;
        let res = res.and_then(|datagram| {
            Ok(RecvMeta {
                len: datagram.len,
                datagram_len: datagram.full_len,
                peer: sender(&datagram)?,
                packet_info: PacketInfo::from_control(datagram.control()),
                truncated: datagram.truncated(),
            })
        });
        (res, buf)
    }
}

impl UdpSocket {
    async fn send_datagram<B: IoBuf>(
        &self,
        buf: B,
        target: Option<SockAddr>,
        control: Control,
    ) -> (io::Result<usize>, B) {
        let op = DatagramSend::new(self.fd.clone(), buf, target, control);
        let completion = Op::new(op).await;
        (
            completion.result.map(|n| n as usize),
            completion.data.into_buf(),
        )
    }

    async fn receive<B: IoBufMut>(&self, buf: B, flags: RecvFlags) -> (io::Result<Datagram>, B) {
        let completion = Op::new(DatagramRecv::new(self.fd.clone(), buf, flags)).await;
        completion.data.finish(completion.result)
    }

    async fn recv_with_peer<B: IoBufMut>(
        &self,
        buf: B,
        peek: bool,
    ) -> (io::Result<(usize, SocketAddr)>, B) {
        let capacity = buf.bytes_total();
        let flags = RecvFlags {
            peek,
            name: true,
            ..RecvFlags::default()
        };
        let (res, buf) = self.receive(buf, flags).await;
        let res = res.and_then(|datagram| {
            let peer = sender(&datagram)?;
            if datagram.truncated() {
                return Err(DatagramTruncated::error(
                    datagram.full_len,
                    capacity,
                    Some(peer),
                ));
            }
            Ok((datagram.len, peer))
        });
        (res, buf)
    }

    /// Refuses an IPv6 peer for an IPv4 socket, which the kernel would answer with a bare
    /// `EAFNOSUPPORT`. (An IPv4 peer of an IPv6 socket is the kernel's to judge: a dual-stack
    /// socket reaches it.)
    fn check_family(&self, addr: SocketAddr) -> io::Result<()> {
        if addr.is_ipv6() && !self.ipv6 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{addr} is an IPv6 address, and this UDP socket is IPv4 (bind an IPv6 \
                     address such as [::]:0 to reach IPv6 peers)"
                ),
            ));
        }
        Ok(())
    }
}

/// The sender of a received datagram (every UDP datagram has one).
fn sender(datagram: &Datagram) -> io::Result<SocketAddr> {
    datagram
        .peer()
        .and_then(|addr| addr.as_socket())
        .ok_or_else(|| io::Error::other("a UDP datagram arrived without an IP sender address"))
}

fn ip_addr(addr: SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket()
        .ok_or_else(|| io::Error::other("UDP socket has a non-IP address"))
}

/// The descriptor, for socket options coreio does not wrap (`socket2::SockRef::from(&socket)`).
/// Reading or writing it directly bypasses the core's driver: use the socket's methods.
impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("UdpSocket");
        if let Ok(addr) = self.local_addr() {
            debug.field("addr", &addr);
        }
        if let Ok(peer) = self.peer_addr() {
            debug.field("peer", &peer);
        }
        debug.field("fd", &self.fd.raw()).finish()
    }
}
