//! What a UDP receive reports besides the bytes ([`RecvMeta`], [`PacketInfo`]), the error of a
//! datagram that did not fit ([`DatagramTruncated`]), and the packet-information control
//! messages (`IP_PKTINFO`, `IPV6_PKTINFO`) in both directions.

use std::error::Error;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::net::ops::Control;

/// Where a datagram arrived (from a receive), or where to send one from (for a send): the
/// `IP_PKTINFO` / `IPV6_PKTINFO` control message.
///
/// A server bound to `0.0.0.0` or `[::]` learns from it which of the host's addresses each
/// query was sent to, and answers from that address by passing the same `PacketInfo` to
/// [`UdpSocket::send_msg`](super::UdpSocket::send_msg), so that the client sees the reply come
/// from the address it asked. See [`UdpSocket::set_recv_pktinfo`](super::UdpSocket::set_recv_pktinfo).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    destination: IpAddr,
    local: IpAddr,
    interface: u32,
}

impl PacketInfo {
    /// Packet information for a send from `source` (a local address), on the interface the
    /// routing table picks.
    pub fn new(source: IpAddr) -> PacketInfo {
        PacketInfo {
            destination: source,
            local: source,
            interface: 0,
        }
    }

    /// The same, sent on the interface of index `interface` (0: the routing table decides).
    pub fn with_interface(self, interface: u32) -> PacketInfo {
        PacketInfo { interface, ..self }
    }

    /// The destination address in the datagram's header: the address the sender sent to
    /// (a multicast or broadcast address for such datagrams).
    pub fn destination(&self) -> IpAddr {
        self.destination
    }

    /// The local address a send with this information goes out from; for a received datagram,
    /// the address to answer from. It is the destination for unicast datagrams; for IPv4
    /// multicast and broadcast ones, the kernel names the receiving interface's address here.
    /// (For IPv6 it is always the destination: answer a multicast query with [`PacketInfo::new`]
    /// and a unicast address of your own.)
    pub fn local(&self) -> IpAddr {
        self.local
    }

    /// The index of the interface the datagram arrived on (for a send: the one to send on,
    /// 0 when the routing table decides).
    pub fn interface(&self) -> u32 {
        self.interface
    }

    /// Reads the first packet-information message of a receive's control data.
    pub(super) fn from_control(control: &Control) -> Option<PacketInfo> {
        control
            .messages()
            .find_map(|(level, kind, data)| match (level, kind) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info: libc::in_pktinfo = read_struct(data)?;
                    Some(PacketInfo {
                        destination: IpAddr::V4(ipv4(info.ipi_addr)),
                        local: IpAddr::V4(ipv4(info.ipi_spec_dst)),
                        interface: info.ipi_ifindex as u32,
                    })
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info: libc::in6_pktinfo = read_struct(data)?;
                    let addr = IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                    Some(PacketInfo {
                        destination: addr,
                        local: addr,
                        interface: info.ipi6_ifindex,
                    })
                }
                _ => None,
            })
    }

    /// Writes this as the control message of a send on a socket of the given family: an IPv4
    /// source on an IPv6 socket (a dual-stack one, answering an IPv4 peer) travels as its
    /// IPv4-mapped address.
    pub(super) fn to_control(self, socket_is_v6: bool) -> io::Result<Control> {
        let mut control = Control::new();
        match (self.local, socket_is_v6) {
            (IpAddr::V4(local), false) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: self.interface as i32,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(local).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                control.push(libc::IPPROTO_IP, libc::IP_PKTINFO, struct_bytes(&info))?;
            }
            (local, true) => {
                let local = match local {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: local.octets(),
                    },
                    ipi6_ifindex: self.interface,
                };
                control.push(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, struct_bytes(&info))?;
            }
            (IpAddr::V6(local), false) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot send from the IPv6 address {local} on an IPv4 socket"),
                ));
            }
        }
        Ok(control)
    }
}

fn ipv4(addr: libc::in_addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(addr.s_addr))
}

/// A plain C struct read from the start of a control message's data, if it is long enough.
fn read_struct<T: Copy>(data: &[u8]) -> Option<T> {
    if data.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: `data` holds at least `size_of::<T>()` bytes; the read is unaligned-safe, and
    // the callers' `T`s (in_pktinfo, in6_pktinfo) are plain integers, valid for any bytes.
    Some(unsafe { data.as_ptr().cast::<T>().read_unaligned() })
}

/// The bytes of a plain C struct without padding (in_pktinfo, in6_pktinfo).
fn struct_bytes<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: `value` is a live `T` of `size_of::<T>()` bytes; the callers' structs have no
    // padding, so every byte is initialised.
    unsafe {
        std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>())
    }
}

/// What [`UdpSocket::recv_msg`](super::UdpSocket::recv_msg) reports of a datagram besides its
/// bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
    pub(super) len: usize,
    pub(super) datagram_len: usize,
    pub(super) peer: SocketAddr,
    pub(super) packet_info: Option<PacketInfo>,
    pub(super) truncated: bool,
}

impl RecvMeta {
    /// How many bytes are in the buffer: the datagram's, or its first ones when it was
    /// truncated.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the datagram was empty (UDP allows empty datagrams).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The datagram's full length, larger than [`len`](Self::len) when it was truncated.
    pub fn datagram_len(&self) -> usize {
        self.datagram_len
    }

    /// Whether the datagram was longer than the buffer: only its first [`len`](Self::len)
    /// bytes are in the buffer, and the rest is gone.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The sender's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Where the datagram arrived, when the socket has
    /// [`set_recv_pktinfo(true)`](super::UdpSocket::set_recv_pktinfo); pass it to
    /// [`send_msg`](super::UdpSocket::send_msg) to answer from that address.
    pub fn packet_info(&self) -> Option<PacketInfo> {
        self.packet_info
    }
}

/// The error of a datagram longer than the buffer it was received into, from
/// [`UdpSocket::recv_from`](super::UdpSocket::recv_from), [`recv`](super::UdpSocket::recv) and
/// [`peek_from`](super::UdpSocket::peek_from), and from the same calls of
/// [`UnixDatagram`](crate::net::UnixDatagram) (whose sender is not an IP address: `peer` is
/// `None` there).
///
/// It comes as an [`io::Error`] of kind [`InvalidData`](io::ErrorKind::InvalidData) whose
/// [`get_ref`](io::Error::get_ref) downcasts to this type; the buffer given back holds the
/// datagram's first bytes (all of its capacity). A received datagram is gone; a peeked one is
/// still queued, so a larger buffer can receive it whole.
///
/// ```no_run
/// # async fn f(socket: coreio::net::UdpSocket) {
/// use coreio::net::DatagramTruncated;
///
/// let (res, buf) = socket.recv_from(Vec::with_capacity(512)).await;
/// if let Err(err) = &res {
///     if let Some(t) = err.get_ref().and_then(|e| e.downcast_ref::<DatagramTruncated>()) {
///         println!("{} bytes from {:?}, kept {}", t.datagram_len(), t.peer(), buf.len());
///     }
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatagramTruncated {
    datagram_len: usize,
    capacity: usize,
    peer: Option<SocketAddr>,
}

impl DatagramTruncated {
    pub(crate) fn error(
        datagram_len: usize,
        capacity: usize,
        peer: Option<SocketAddr>,
    ) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            DatagramTruncated {
                datagram_len,
                capacity,
                peer,
            },
        )
    }

    /// The datagram's full length.
    pub fn datagram_len(&self) -> usize {
        self.datagram_len
    }

    /// The buffer's capacity: how many of the datagram's bytes it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The sender, where the call reports one (`recv_from`, `peek_from`).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }
}

impl fmt::Display for DatagramTruncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a datagram of {} bytes", self.datagram_len)?;
        if let Some(peer) = self.peer {
            write!(f, " from {peer}")?;
        }
        write!(
            f,
            " was truncated to the buffer's {} bytes; receive into a larger buffer",
            self.capacity
        )
    }
}

impl Error for DatagramTruncated {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_info_round_trips_through_control_messages() {
        let v4 = PacketInfo::new("127.0.0.2".parse().unwrap()).with_interface(1);
        let control = v4.to_control(false).unwrap();
        let back = PacketInfo::from_control(&control).unwrap();
        // A send carries no header destination: the kernel leaves ipi_addr zero.
        assert_eq!(back.local(), v4.local());
        assert_eq!(back.interface(), 1);

        let v6 = PacketInfo::new("::1".parse().unwrap());
        let back = PacketInfo::from_control(&v6.to_control(true).unwrap()).unwrap();
        assert_eq!(back, v6);

        let mapped = PacketInfo::from_control(&v4.to_control(true).unwrap()).unwrap();
        assert_eq!(
            mapped.local(),
            "::ffff:127.0.0.2".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn an_ipv6_source_on_an_ipv4_socket_is_refused() {
        let err = PacketInfo::new("::1".parse().unwrap())
            .to_control(false)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("::1"), "{err}");
    }

    #[test]
    fn the_truncation_error_names_both_lengths() {
        let err = DatagramTruncated::error(900, 512, Some("127.0.0.1:53".parse().unwrap()));
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let text = err.to_string();
        assert!(text.contains("900") && text.contains("512") && text.contains("127.0.0.1:53"));
        let inner = err.get_ref().unwrap().downcast_ref::<DatagramTruncated>();
        assert_eq!(inner.unwrap().datagram_len(), 900);
    }
}
