//! [`DatagramRecv`]: one datagram from a datagram socket (UDP today, Unix datagrams later),
//! with its sender's address and its ancillary data, by `recvmsg` (`recvfrom` on epoll when no
//! ancillary data is asked for).
//!
//! Unlike [`StreamRecv`](super::StreamRecv), a receive shorter than its buffer says nothing of
//! the socket's queue (the next datagram may be waiting), so it never marks the socket drained
//! on epoll. Every receive passes `MSG_TRUNC`, so the result is the datagram's full length even
//! when the buffer was smaller, and the caller can tell a truncated datagram from a whole one.
//!
//! What a receive whose future was dropped took is not kept (io_uring only: the kernel may
//! complete it before the cancellation): a datagram is a message of its own, which datagram
//! sockets may lose anyway, so the orphan's buffer is freed with the datagram in it.

use std::io;

use io_uring::{opcode, squeue};
use socket2::SockAddr;

use super::ancillary::{CONTROL_LEN, Control};
use super::clamp_len;
use crate::buf::IoBufMut;
use crate::driver::uring_target;
use crate::driver::{Direction, Operation, SharedFd, Source};
use crate::sys;

const STORAGE_LEN: libc::socklen_t =
    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// What a receive asks the kernel for besides the bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RecvFlags {
    /// Leave the datagram queued (`MSG_PEEK`).
    pub(crate) peek: bool,
    /// Room for the sender's address.
    pub(crate) name: bool,
    /// Room for ancillary data.
    pub(crate) control: bool,
}

/// The `recvmsg` header and everything it points to except the buffer, in one allocation that
/// the kernel reads (the header) and writes (address, control, lengths, flags).
struct Parts {
    msg: libc::msghdr,
    iov: libc::iovec,
    name: libc::sockaddr_storage,
    control: Control,
}

/// Receives one datagram into a buffer's capacity.
pub(crate) struct DatagramRecv<B> {
    socket: SharedFd,
    buf: B,
    parts: Box<Parts>,
    flags: RecvFlags,
}

impl<B: IoBufMut> DatagramRecv<B> {
    pub(crate) fn new(socket: SharedFd, mut buf: B, flags: RecvFlags) -> Self {
        let iov = libc::iovec {
            iov_base: buf.stable_mut_ptr().cast(),
            iov_len: clamp_len(buf.bytes_total()) as usize,
        };
        let mut parts = Box::new(Parts {
            // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
            msg: unsafe { std::mem::zeroed() },
            iov,
            // SAFETY: all-zero bytes are a valid (unspecified-family) sockaddr_storage.
            name: unsafe { std::mem::zeroed() },
            control: Control::new(),
        });
        let parts_ref = &mut *parts;
        parts_ref.msg.msg_iov = &mut parts_ref.iov;
        parts_ref.msg.msg_iovlen = 1;
        if flags.name {
            parts_ref.msg.msg_name = (&mut parts_ref.name as *mut libc::sockaddr_storage).cast();
        }
        if flags.control {
            parts_ref.msg.msg_control = parts_ref.control.as_mut_ptr().cast();
        }
        let mut recv = DatagramRecv {
            socket,
            buf,
            parts,
            flags,
        };
        recv.reset();
        recv
    }

    /// Resets what the kernel writes back: the lengths it shortens, and the flags.
    fn reset(&mut self) {
        let msg = &mut self.parts.msg;
        msg.msg_namelen = if self.flags.name { STORAGE_LEN } else { 0 };
        msg.msg_controllen = if self.flags.control { CONTROL_LEN } else { 0 };
        msg.msg_flags = 0;
    }

    fn syscall_flags(&self) -> i32 {
        let peek = if self.flags.peek { libc::MSG_PEEK } else { 0 };
        libc::MSG_TRUNC | peek
    }
}

// SAFETY: the kernel reads the msghdr and iovec and writes the address, the control buffer and
// the header's lengths and flags, all inside `parts`, a box the struct owns; and it writes at
// most `iov_len <= bytes_total()` bytes into `buf`'s heap memory, which `IoBufMut` guarantees
// does not move with the struct. `iov_base` was taken from the buffer when it moved in here.
unsafe impl<B: IoBufMut> Operation for DatagramRecv<B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        self.reset();
        let flags = self.syscall_flags() as u32;
        let msg: *mut libc::msghdr = &mut self.parts.msg;
        uring_target!(self.socket, |fd| opcode::RecvMsg::new(fd, msg)
            .flags(flags)
            .build())
    }

    fn source(&self) -> Source<'_> {
        Source::Readiness(&self.socket, Direction::Read)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        self.reset();
        let flags = self.syscall_flags();
        if !self.flags.control {
            // No ancillary data asked for: `recvfrom`, which spares the kernel importing a
            // msghdr and an iovec. With `MSG_TRUNC` it still returns the full length.
            let parts = &mut *self.parts;
            let (name, name_len) = if self.flags.name {
                (
                    (&mut parts.name as *mut libc::sockaddr_storage).cast(),
                    &mut parts.msg.msg_namelen as *mut libc::socklen_t,
                )
            } else {
                (std::ptr::null_mut(), std::ptr::null_mut())
            };
            // SAFETY: the iovec's base and length describe the buffer's writable memory; the
            // address storage and its length (or two nulls) are valid for writes and owned by
            // `self` for the call; the socket is open while `self.socket` lives.
            let n = sys::cvt(unsafe {
                libc::recvfrom(
                    self.socket.raw(),
                    parts.iov.iov_base,
                    parts.iov.iov_len,
                    flags,
                    name,
                    name_len,
                )
            })?;
            return Ok(n as u32);
        }
        // SAFETY: the msghdr and all it points to (iovec, address, control, buffer) are valid
        // and owned by `self` for the call; the socket is open while `self.socket` lives.
        let n = sys::cvt(unsafe { libc::recvmsg(self.socket.raw(), &mut self.parts.msg, flags) })?;
        Ok(n as u32)
    }
    // `epoll_drained` stays false: a short datagram does not mean the queue is empty.
    // `orphan_completed` keeps nothing: see the module's docs.
}

/// A finished receive: the datagram's length, its sender and its ancillary data.
pub(crate) struct Datagram {
    parts: Box<Parts>,
    /// Bytes written into the buffer.
    pub(crate) len: usize,
    /// The datagram's full length (more than `len` when it was truncated).
    pub(crate) full_len: usize,
}

impl Datagram {
    /// Whether the datagram was longer than the buffer.
    pub(crate) fn truncated(&self) -> bool {
        self.full_len > self.len || self.parts.msg.msg_flags & libc::MSG_TRUNC != 0
    }

    /// The sender's address, if it was asked for and the sender has one.
    pub(crate) fn peer(&self) -> Option<SockAddr> {
        let len = self.parts.msg.msg_namelen.min(STORAGE_LEN);
        if self.parts.msg.msg_name.is_null() || len == 0 {
            return None;
        }
        let mut storage = socket2::SockAddrStorage::zeroed();
        // SAFETY: `SockAddrStorage` wraps a `sockaddr_storage`, so viewing it as one is valid.
        unsafe { *storage.view_as::<libc::sockaddr_storage>() = self.parts.name };
        // SAFETY: the kernel wrote a sockaddr of `len` bytes (at most the storage's size).
        Some(unsafe { SockAddr::new(storage, len) })
    }

    /// The ancillary data the kernel wrote.
    pub(crate) fn control(&self) -> &Control {
        &self.parts.control
    }
}

impl<B: IoBufMut> DatagramRecv<B> {
    /// Gives the buffer back, its initialised length set to the bytes received, with what the
    /// kernel reported of the datagram.
    pub(crate) fn finish(self, result: io::Result<u32>) -> (io::Result<Datagram>, B) {
        let DatagramRecv {
            socket,
            mut buf,
            mut parts,
            ..
        } = self;
        drop(socket);
        let result = result.map(|n| {
            let full_len = n as usize;
            let len = full_len.min(parts.iov.iov_len);
            // SAFETY: the kernel wrote the datagram's first `len` bytes (its length, capped at
            // the iovec's, itself at most `bytes_total()`) from the buffer's start.
            unsafe { buf.set_init(len) };
            let control_len = parts.msg.msg_controllen;
            parts.control.set_len(control_len);
            Datagram {
                parts,
                len,
                full_len,
            }
        });
        (result, buf)
    }
}
