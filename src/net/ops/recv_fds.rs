//! [`RecvFds`]: a receive on a Unix stream socket that also takes the descriptors passed with
//! the bytes (`SCM_RIGHTS`), close-on-exec.
//!
//! Every descriptor the kernel installs is wrapped in an `OwnedFd` as soon as the receive
//! completes, whoever completes it: the caller's future, or the driver for a dropped one, which
//! closes them (the bytes go to the socket's holding area as a dropped read's do). So none is
//! ever leaked. Unlike [`StreamRecv`](super::StreamRecv) a short receive says nothing of the
//! queue: a Unix stream receive stops early at bytes that carry descriptors.

use std::io;
use std::os::fd::OwnedFd;

use io_uring::{opcode, squeue};

use super::clamp_len;
use super::send_fds::{MAX_FDS, Msg};
use crate::buf::IoBufMut;
use crate::driver::uring_target;
use crate::driver::{Direction, OpShare, Operation, SharedFd, Source};
use crate::sys;

/// Received descriptors are close-on-exec, as every coreio descriptor.
const RECV_FLAGS: i32 = libc::MSG_CMSG_CLOEXEC;

/// Receives into a buffer's capacity, with room for up to `max` passed descriptors.
pub(crate) struct RecvFds<B> {
    socket: OpShare,
    buf: B,
    msg: Box<Msg>,
}

impl<B: IoBufMut> RecvFds<B> {
    /// A receive on `socket` into `buf` taking up to `max_fds` descriptors (at most
    /// [`MAX_FDS`]); await it with a [`Claim`](crate::driver::Claim) on the socket's holding
    /// area.
    pub(crate) fn new(socket: SharedFd, buf: B, max_fds: usize) -> RecvFds<B> {
        RecvFds {
            socket: OpShare::new(socket),
            buf,
            msg: Msg::boxed(max_fds.min(MAX_FDS)),
        }
    }

    fn header(&mut self) -> *mut libc::msghdr {
        let len = clamp_len(self.buf.bytes_total()) as usize;
        self.msg.header(self.buf.stable_mut_ptr(), len)
    }

    /// The bytes and descriptors a finished receive gave, and the buffer. More descriptors
    /// than there was room for (`MSG_CTRUNC`: the kernel closed the rest) is an error, and the
    /// ones that did arrive are closed; the bytes are in the buffer either way.
    pub(crate) fn finish(
        mut self,
        result: io::Result<u32>,
    ) -> (io::Result<(usize, Vec<OwnedFd>)>, B) {
        let result = result.and_then(|n| {
            // SAFETY: the kernel reported writing `n` bytes from the buffer's start.
            unsafe { self.buf.set_init(n as usize) };
            let fds = self.msg.take_received_fds();
            if self.msg.flags() & libc::MSG_CTRUNC != 0 {
                let arrived = fds.len();
                drop(fds);
                return Err(io::Error::other(format!(
                    "more descriptors were passed than the receive had room for; the kernel \
                     discarded the rest, and the {arrived} that fit were closed (ask for more)"
                )));
            }
            Ok((n as usize, fds))
        });
        let RecvFds { socket, buf, msg } = self;
        drop((socket, msg));
        (result, buf)
    }
}

// SAFETY: the kernel writes only into `buf`'s heap memory (at most `bytes_total()` bytes) and
// into the boxed header and control buffer, all owned by the struct and unmoved by its moves.
unsafe impl<B: IoBufMut> Operation for RecvFds<B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let hdr = self.header();
        uring_target!(self.socket, |fd| opcode::RecvMsg::new(fd, hdr)
            .flags(RECV_FLAGS as u32)
            .build())
    }

    fn source(&self) -> Source<'_> {
        Source::Readiness(&self.socket, Direction::Read)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        let hdr = self.header();
        // SAFETY: `hdr` is a valid msghdr owned by `self` whose pointers lead to memory owned by
        // `self`; the socket is open while `self.socket` lives.
        let n = sys::cvt(unsafe { libc::recvmsg(self.socket.raw(), hdr, RECV_FLAGS) })?;
        Ok(n as u32)
    }

    // No `epoll_drained`: a receive that stopped at bytes carrying descriptors returns less
    // than asked with more queued behind it.

    fn orphan_completed(mut self, result: i32) {
        let held = self.socket.held();
        match result {
            0 => {} // End of stream stays visible to the next receive.
            n if n > 0 => {
                // Nobody will see these descriptors: close them now. The bytes are the
                // stream's, kept for the next read as a dropped read's are.
                drop(self.msg.take_received_fds());
                let n = (n as usize).min(self.buf.bytes_total());
                // SAFETY: the kernel reported writing `n` bytes at the buffer's start, and
                // nothing else touches the buffer while this borrow lives.
                let bytes = unsafe { std::slice::from_raw_parts(self.buf.stable_mut_ptr(), n) };
                held.keep_bytes(bytes);
            }
            _ if matches!(-result, libc::ECANCELED | libc::EINTR | libc::EAGAIN) => {}
            _ => held.keep_error(-result),
        }
    }
}
