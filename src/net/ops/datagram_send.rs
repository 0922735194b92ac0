//! [`DatagramSend`]: one datagram sent on a datagram socket (UDP, Unix datagrams),
//! to a given address or the connected peer, optionally with ancillary data, by `sendmsg`; a
//! datagram without ancillary data goes by the cheaper `send`/`sendto` (on io_uring, a `SEND`
//! with a destination address, where the kernel has it: Linux 6.0).

use std::io;

use io_uring::{opcode, squeue};
use socket2::SockAddr;

use super::ancillary::Control;
use super::clamp_len;
use crate::buf::IoBuf;
use crate::driver::uring_target;
use crate::driver::{Direction, Operation, SharedFd, Source, uring};
use crate::sys;

/// Sends never raise SIGPIPE (a Unix datagram socket whose peer is gone): an error instead.
const SEND_FLAGS: i32 = libc::MSG_NOSIGNAL;

/// The `sendmsg` header and everything it points to except the buffer, in one allocation the
/// kernel reads.
struct Parts {
    msg: libc::msghdr,
    iov: libc::iovec,
    target: Option<SockAddr>,
    control: Control,
}

/// Sends a buffer's initialised bytes as one datagram.
pub(crate) struct DatagramSend<B> {
    socket: SharedFd,
    buf: B,
    parts: Box<Parts>,
    /// io_uring: `MSG_DONTWAIT`, so that a send the socket cannot take now completes with
    /// `EAGAIN` instead of being retried inside the kernel (see [`DatagramSend::dont_wait`]).
    dont_wait: bool,
}

impl<B: IoBuf> DatagramSend<B> {
    /// A send of `buf` to `target` (`None`: the connected peer), with the control messages in
    /// `control` (none when it is empty).
    pub(crate) fn new(
        socket: SharedFd,
        buf: B,
        target: Option<SockAddr>,
        control: Control,
    ) -> Self {
        let iov = libc::iovec {
            // The kernel only reads through this pointer (sendmsg's iovec is not const in C).
            iov_base: buf.stable_ptr().cast_mut().cast(),
            iov_len: clamp_len(buf.bytes_init()) as usize,
        };
        let mut parts = Box::new(Parts {
            // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
            msg: unsafe { std::mem::zeroed() },
            iov,
            target,
            control,
        });
        let parts_ref = &mut *parts;
        parts_ref.msg.msg_iov = &mut parts_ref.iov;
        parts_ref.msg.msg_iovlen = 1;
        if let Some(target) = &parts_ref.target {
            parts_ref.msg.msg_name = target.as_ptr().cast_mut().cast();
            parts_ref.msg.msg_namelen = target.len();
        }
        if !parts_ref.control.is_empty() {
            parts_ref.msg.msg_controllen = parts_ref.control.len();
            parts_ref.msg.msg_control = parts_ref.control.as_mut_ptr().cast();
        }
        DatagramSend {
            socket,
            buf,
            parts,
            dont_wait: false,
        }
    }

    /// io_uring: completes with `EAGAIN` when the socket cannot take the datagram now, instead
    /// of letting the kernel retry it. For Unix datagram sockets: a send to a peer whose queue
    /// is full consumes the iovec before it fails with `EAGAIN`, and the ring's own retry then
    /// sends an empty datagram (seen on Linux 6.18; `net_unix_datagram` tests it), so their
    /// caller retries with a fresh operation instead. (epoll makes every attempt afresh.)
    pub(crate) fn dont_wait(mut self) -> Self {
        self.dont_wait = true;
        self
    }

    /// Gives the buffer back.
    pub(crate) fn into_buf(self) -> B {
        self.buf
    }
}

// SAFETY: the kernel reads the msghdr, iovec, address and control bytes (or, for a `SEND`, only
// the address), all inside `parts`, a box the struct owns, and at most `iov_len <= bytes_init()` bytes of `buf`'s heap memory, which
// `IoBuf` guarantees does not move with the struct.
unsafe impl<B: IoBuf> Operation for DatagramSend<B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let flags = if self.dont_wait {
            SEND_FLAGS | libc::MSG_DONTWAIT
        } else {
            SEND_FLAGS
        };
        if self.parts.control.is_empty() && uring::send_takes_address() {
            let (ptr, len) = (self.buf.stable_ptr(), clamp_len(self.buf.bytes_init()));
            let send = uring_target!(self.socket, |fd| opcode::Send::new(fd, ptr, len)
                .flags(flags));
            return match &self.parts.target {
                Some(target) => send
                    .dest_addr(target.as_ptr().cast())
                    .dest_addr_len(target.len())
                    .build(),
                None => send.build(),
            };
        }
        uring_target!(self.socket, |fd| opcode::SendMsg::new(fd, &self.parts.msg)
            .flags(flags as u32)
            .build())
    }

    fn source(&self) -> Source<'_> {
        Source::Readiness(&self.socket, Direction::Write)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        if self.parts.control.is_empty() {
            let (ptr, len) = (
                self.buf.stable_ptr(),
                clamp_len(self.buf.bytes_init()) as usize,
            );
            let (name, name_len) = match &self.parts.target {
                Some(target) => (target.as_ptr().cast(), target.len()),
                None => (std::ptr::null(), 0),
            };
            // SAFETY: the buffer holds `len` initialised bytes (`IoBuf`); the address (or a
            // null one) is valid and owned by `self` for the call; the socket is open while
            // `self.socket` lives.
            let n = sys::cvt(unsafe {
                libc::sendto(
                    self.socket.raw(),
                    ptr.cast(),
                    len,
                    SEND_FLAGS,
                    name,
                    name_len,
                )
            })?;
            return Ok(n as u32);
        }
        // SAFETY: the msghdr and all it points to (iovec, address, control, buffer) are valid
        // and owned by `self` for the call; the socket is open while `self.socket` lives.
        let n = sys::cvt(unsafe { libc::sendmsg(self.socket.raw(), &self.parts.msg, SEND_FLAGS) })?;
        Ok(n as u32)
    }
}
