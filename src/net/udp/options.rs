//! The socket options of a [`UdpSocket`]: packet information, broadcast, TTL, multicast, and
//! buffer sizes. Each is one `setsockopt`/`getsockopt` and takes effect at once.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use super::UdpSocket;

impl UdpSocket {
    /// Asks the kernel to report, with each datagram [`recv_msg`](Self::recv_msg) receives,
    /// the address it was sent to and the interface it arrived on
    /// ([`RecvMeta::packet_info`](super::RecvMeta::packet_info)): `IP_PKTINFO` on an IPv4
    /// socket, `IPV6_RECVPKTINFO` on an IPv6 one (which also covers the IPv4 datagrams of a
    /// dual-stack socket, as IPv4-mapped addresses). Off by default; the other receives ignore
    /// it.
    pub fn set_recv_pktinfo(&self, on: bool) -> io::Result<()> {
        let (level, name) = self.pktinfo_option();
        set_int(self, level, name, on.into())
    }

    /// Whether [`set_recv_pktinfo`](Self::set_recv_pktinfo) is on.
    pub fn recv_pktinfo(&self) -> io::Result<bool> {
        let (level, name) = self.pktinfo_option();
        get_int(self, level, name).map(|v| v != 0)
    }

    fn pktinfo_option(&self) -> (i32, i32) {
        if self.is_ipv6() {
            (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
        } else {
            (libc::IPPROTO_IP, libc::IP_PKTINFO)
        }
    }

    /// Allows sending to broadcast addresses (`SO_BROADCAST`). Off by default.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.sock_ref().set_broadcast(on)
    }

    /// Whether `SO_BROADCAST` is set.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.sock_ref().broadcast()
    }

    /// Sets the time-to-live of outgoing unicast datagrams: `IP_TTL` on an IPv4 socket, the hop
    /// limit (`IPV6_UNICAST_HOPS`) on an IPv6 one.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        if self.is_ipv6() {
            self.sock_ref().set_unicast_hops_v6(ttl)
        } else {
            self.sock_ref().set_ttl_v4(ttl)
        }
    }

    /// The time-to-live (IPv4) or hop limit (IPv6) of outgoing unicast datagrams.
    pub fn ttl(&self) -> io::Result<u32> {
        if self.is_ipv6() {
            self.sock_ref().unicast_hops_v6()
        } else {
            self.sock_ref().ttl_v4()
        }
    }

    /// Whether an IPv6 socket serves IPv6 only (`IPV6_V6ONLY`); set it before binding with
    /// [`UdpBuilder::only_v6`](super::UdpBuilder::only_v6). An IPv4 socket answers
    /// `InvalidInput`.
    pub fn only_v6(&self) -> io::Result<bool> {
        self.require_v6("only_v6")?;
        self.sock_ref().only_v6()
    }

    /// Joins the IPv4 multicast group `group` on the interface whose address is `interface`
    /// (`Ipv4Addr::UNSPECIFIED`: the one the routing table picks for the group).
    pub fn join_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.sock_ref()
            .join_multicast_v4(&group, &interface)
            .map_err(|err| multicast_error("joining", &group, err))
    }

    /// Leaves an IPv4 multicast group joined with
    /// [`join_multicast_v4`](Self::join_multicast_v4).
    pub fn leave_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.sock_ref()
            .leave_multicast_v4(&group, &interface)
            .map_err(|err| multicast_error("leaving", &group, err))
    }

    /// Joins the IPv6 multicast group `group` on the interface of index `interface` (0: the
    /// one the routing table picks). An IPv4 socket answers `InvalidInput`.
    pub fn join_multicast_v6(&self, group: Ipv6Addr, interface: u32) -> io::Result<()> {
        self.require_v6("join_multicast_v6")?;
        self.sock_ref()
            .join_multicast_v6(&group, interface)
            .map_err(|err| multicast_error("joining", &group, err))
    }

    /// Leaves an IPv6 multicast group joined with
    /// [`join_multicast_v6`](Self::join_multicast_v6).
    pub fn leave_multicast_v6(&self, group: Ipv6Addr, interface: u32) -> io::Result<()> {
        self.require_v6("leave_multicast_v6")?;
        self.sock_ref()
            .leave_multicast_v6(&group, interface)
            .map_err(|err| multicast_error("leaving", &group, err))
    }

    /// Sets the interface IPv4 multicast datagrams are sent on, by its address
    /// (`IP_MULTICAST_IF`; `Ipv4Addr::UNSPECIFIED`: the routing table decides).
    pub fn set_multicast_if_v4(&self, interface: Ipv4Addr) -> io::Result<()> {
        self.sock_ref().set_multicast_if_v4(&interface)
    }

    /// The interface IPv4 multicast datagrams are sent on.
    pub fn multicast_if_v4(&self) -> io::Result<Ipv4Addr> {
        self.sock_ref().multicast_if_v4()
    }

    /// Sets the interface IPv6 multicast datagrams are sent on, by its index
    /// (`IPV6_MULTICAST_IF`; 0: the routing table decides).
    pub fn set_multicast_if_v6(&self, interface: u32) -> io::Result<()> {
        self.require_v6("set_multicast_if_v6")?;
        self.sock_ref().set_multicast_if_v6(interface)
    }

    /// The interface IPv6 multicast datagrams are sent on.
    pub fn multicast_if_v6(&self) -> io::Result<u32> {
        self.require_v6("multicast_if_v6")?;
        self.sock_ref().multicast_if_v6()
    }

    /// Whether IPv4 multicast datagrams this socket sends are looped back to the host's own
    /// members of the group (`IP_MULTICAST_LOOP`, on by default).
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.sock_ref().set_multicast_loop_v4(on)
    }

    /// Whether `IP_MULTICAST_LOOP` is set.
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        self.sock_ref().multicast_loop_v4()
    }

    /// Sets the time-to-live of outgoing IPv4 multicast datagrams (`IP_MULTICAST_TTL`, 1 by
    /// default: they stay on the local network).
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.sock_ref().set_multicast_ttl_v4(ttl)
    }

    /// The time-to-live of outgoing IPv4 multicast datagrams.
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        self.sock_ref().multicast_ttl_v4()
    }

    /// Whether IPv6 multicast datagrams this socket sends are looped back to the host's own
    /// members of the group (`IPV6_MULTICAST_LOOP`, on by default).
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.require_v6("set_multicast_loop_v6")?;
        self.sock_ref().set_multicast_loop_v6(on)
    }

    /// Whether `IPV6_MULTICAST_LOOP` is set.
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        self.require_v6("multicast_loop_v6")?;
        self.sock_ref().multicast_loop_v6()
    }

    /// Sets the hop limit of outgoing IPv6 multicast datagrams (`IPV6_MULTICAST_HOPS`, 1 by
    /// default).
    pub fn set_multicast_hops_v6(&self, hops: u32) -> io::Result<()> {
        self.require_v6("set_multicast_hops_v6")?;
        self.sock_ref().set_multicast_hops_v6(hops)
    }

    /// The hop limit of outgoing IPv6 multicast datagrams.
    pub fn multicast_hops_v6(&self) -> io::Result<u32> {
        self.require_v6("multicast_hops_v6")?;
        self.sock_ref().multicast_hops_v6()
    }

    /// Sets the receive buffer size (`SO_RCVBUF`; the kernel doubles it for its bookkeeping
    /// and caps it at `net.core.rmem_max`). Datagrams that arrive while it is full are dropped.
    pub fn set_recv_buffer_size(&self, size: usize) -> io::Result<()> {
        self.sock_ref().set_recv_buffer_size(size)
    }

    /// The receive buffer size, as the kernel reports it.
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        self.sock_ref().recv_buffer_size()
    }

    /// Sets the send buffer size (`SO_SNDBUF`, doubled and capped like the receive buffer).
    pub fn set_send_buffer_size(&self, size: usize) -> io::Result<()> {
        self.sock_ref().set_send_buffer_size(size)
    }

    /// The send buffer size, as the kernel reports it.
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        self.sock_ref().send_buffer_size()
    }

    /// Takes the socket's pending error (`SO_ERROR`), which the next operation would otherwise
    /// report; `None` when there is none.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.sock_ref().take_error()
    }

    fn require_v6(&self, what: &str) -> io::Result<()> {
        if self.is_ipv6() {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} needs an IPv6 UDP socket, and this one is IPv4"),
        ))
    }
}

fn multicast_error(doing: &str, group: &dyn std::fmt::Display, err: io::Error) -> io::Error {
    io::Error::new(
        err.kind(),
        format!("{doing} the multicast group {group}: {err}"),
    )
}

fn set_int(socket: &UdpSocket, level: i32, name: i32, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and its size is passed; the descriptor is open while
    // `socket` lives.
    crate::sys::cvt(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn get_int(socket: &UdpSocket, level: i32, name: i32) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live and writable, `len` holds `value`'s size; the
    // descriptor is open while `socket` lives.
    crate::sys::cvt(unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}
