//! [`UdpBuilder`]: the options a UDP socket needs before it is bound.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::UdpSocket;

/// Options for a UDP socket that only take effect when set before `bind`: whether several
/// sockets may share the address, and whether an IPv6 socket also serves IPv4.
///
/// [`UdpSocket::bind`] is `UdpBuilder::new().bind(addr)`: no option set, so a second bind of the
/// same address fails with [`AddrInUse`](io::ErrorKind::AddrInUse). A server with one socket
/// per core opts in to sharing with [`reuse_port`](Self::reuse_port), and the kernel spreads
/// incoming datagrams across the sockets (by a hash of the sender's address and port, so one
/// client's datagrams keep reaching the same core):
///
/// ```no_run
/// use coreio::net::UdpSocket;
///
/// let rt = coreio::Runtime::new()?;
/// let addr = "0.0.0.0:5353".parse().unwrap();
/// rt.run(|_core| async move {
///     let socket = UdpSocket::builder().reuse_port(true).bind(addr)?;
///     loop {
///         let (res, buf) = socket.recv_from(Vec::with_capacity(1500)).await;
///         let Ok((_, peer)) = res else { continue }; // e.g. a truncated datagram
///         let (res, _) = socket.send_to(buf, peer).await;
///         res?;
///     }
///     #[allow(unreachable_code)]
///     Ok::<(), std::io::Error>(())
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct UdpBuilder {
    reuse_port: bool,
    reuse_address: bool,
    only_v6: Option<bool>,
}

impl UdpBuilder {
    /// No option set: the address is this socket's alone, and an IPv6 socket follows the
    /// system's `net.ipv6.bindv6only` (off by default: it also serves IPv4).
    pub fn new() -> UdpBuilder {
        UdpBuilder::default()
    }

    /// Sets `SO_REUSEPORT`: every socket that sets it (in processes of the same user) may bind
    /// the same address, and the kernel balances datagrams across them. Off by default.
    pub fn reuse_port(mut self, on: bool) -> UdpBuilder {
        self.reuse_port = on;
        self
    }

    /// Sets `SO_REUSEADDR`, which for UDP lets sockets that all set it bind the same address
    /// (each multicast or broadcast datagram reaches all of them, a unicast one only one of
    /// them, not balanced). Off by default; for one socket per core use
    /// [`reuse_port`](Self::reuse_port).
    pub fn reuse_address(mut self, on: bool) -> UdpBuilder {
        self.reuse_address = on;
        self
    }

    /// Sets `IPV6_V6ONLY` on an IPv6 socket: `true` serves IPv6 only, `false` IPv4 too (as
    /// IPv4-mapped addresses). Unset: the system default. Binding an IPv4 address with this
    /// set is an `InvalidInput` error.
    pub fn only_v6(mut self, only_v6: bool) -> UdpBuilder {
        self.only_v6 = Some(only_v6);
        self
    }

    /// Creates the socket and binds it to `addr` on the current core (port 0 picks a free
    /// port; [`UdpSocket::local_addr`] tells which). Errors name the address.
    pub fn bind(&self, addr: SocketAddr) -> io::Result<UdpSocket> {
        let context = |err: io::Error| {
            io::Error::new(err.kind(), format!("binding a UDP socket to {addr}: {err}"))
        };
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::DGRAM.nonblocking().cloexec(),
            Some(Protocol::UDP),
        )
        .map_err(context)?;
        if let Some(only_v6) = self.only_v6 {
            if addr.is_ipv4() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("binding a UDP socket to {addr}: only_v6 applies to IPv6 addresses"),
                ));
            }
            socket.set_only_v6(only_v6).map_err(context)?;
        }
        if self.reuse_port {
            socket.set_reuse_port(true).map_err(context)?;
        }
        if self.reuse_address {
            socket.set_reuse_address(true).map_err(context)?;
        }
        socket.bind(&SockAddr::from(addr)).map_err(context)?;
        UdpSocket::from_fd(OwnedFd::from(socket), addr.is_ipv6())
    }
}
