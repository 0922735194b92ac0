//! The socket operations, one file each, every one in its io_uring form and its epoll form
//! side by side.
//!
//! Every struct here owns what the kernel touches while the operation runs: the socket
//! ([`SharedFd`](crate::driver::SharedFd) clone, so the fd outlives a dropped stream until the
//! operation completes), the buffer, and any address storage (boxed, so its address survives
//! the struct being moved into the driver as an orphan).
//!
//! [`AcceptMulti`] is the one streaming operation ([`StreamOperation`](crate::driver::StreamOperation)):
//! a multishot accept that a listener keeps armed across accepts (`crate::net::accept_loop`).
//!
//! [`StreamRecv`] and [`Accept`] are cancel-safe: their socket is an
//! [`OpShare`](crate::driver::OpShare), which counts them in the socket's holding area (see
//! `crate::driver::held`), and an orphan that completed with a result (bytes, an error, a
//! connection) leaves it there for the next read or accept instead of dropping it.
//!
//! Where a new operation goes: a file of its own here, implementing
//! [`Operation`](crate::driver::Operation); a datagram receive is a different operation from
//! [`StreamRecv`] (a short datagram does not mean the socket is drained).

// This module owns that parity; it must never hand the kernel a pointer into the struct itself.

mod accept;
mod accept_multi;
mod addr;
mod ancillary;
mod connect;
mod datagram_recv;
mod datagram_send;
mod recv_fds;
mod send_fds;
mod stream_peek;
mod stream_recv;
mod stream_recv_select;
mod stream_send;
mod stream_send_vectored;
mod stream_send_zc;

pub(crate) use accept::Accept;
pub(crate) use accept_multi::{AcceptMulti, peer_of, unspecified_peer};
pub(crate) use ancillary::Control;
pub(crate) use connect::Connect;
pub(crate) use datagram_recv::{Datagram, DatagramRecv, RecvFlags};
pub(crate) use datagram_send::DatagramSend;
pub(crate) use recv_fds::RecvFds;
pub(crate) use send_fds::{MAX_FDS, SendFds};
pub(crate) use stream_peek::StreamPeek;
pub(crate) use stream_recv::StreamRecv;
pub(crate) use stream_recv_select::StreamRecvSelect;
pub(crate) use stream_send::StreamSend;
pub(crate) use stream_send_vectored::StreamSendVectored;
pub(crate) use stream_send_zc::StreamSendZc;

/// Which system calls a stream's reads and writes use: `recv`/`send` (`IORING_OP_RECV`/`SEND`)
/// on a socket, `read`/`write` (`IORING_OP_READ`/`WRITE`) on a pipe, which is no socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Calls {
    Socket,
    Pipe,
}

use crate::sys::clamp_len;
