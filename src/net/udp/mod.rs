//! UDP: [`UdpSocket`], its bind-time options ([`UdpBuilder`]), and what a receive reports
//! ([`RecvMeta`], [`PacketInfo`], [`DatagramTruncated`]).
//!
//! A socket's datagram I/O runs on the datagram operations of `net::ops` (`DatagramRecv`,
//! `DatagramSend`), which know nothing of IP: this module adds the address family, the
//! packet-information control messages and the socket options.

// This module must never cut a datagram silently: every receive reports a datagram longer than its
// buffer.
//
// Maintainer note: the ops take the peer as a `socket2::SockAddr` and the control data as raw
// `cmsg` bytes, so a Unix datagram socket can reuse them unchanged.

mod builder;
mod meta;
mod options;
mod socket;

pub use builder::UdpBuilder;
pub use meta::{DatagramTruncated, PacketInfo, RecvMeta};
pub use socket::UdpSocket;
