//! [`StreamSendZc`]: a zero-copy send (`IORING_OP_SEND_ZC`, Linux 6.0) of a buffer's
//! initialised bytes on a stream socket: the kernel sends from the buffer's pages instead of
//! copying them into socket memory first.
//!
//! Its lifecycle has two completions. The first carries the result (bytes sent, or an error)
//! and, when the kernel used the buffer, `IORING_CQE_F_MORE`: a second one, the notification
//! (`IORING_CQE_F_NOTIF`), follows once the kernel no longer reads the buffer, which can be
//! long after the bytes left (on a real network, when the peer acknowledged them). Only then
//! may the buffer be reused or freed, so the operation runs as a streaming one: its data (the
//! buffer) stays with the future, or with the driver if the future is dropped, until that
//! terminal completion. A send that failed posts only the first completion, without `MORE`.

// This module owns the entry and the rule above; the two-completion wait is the caller's
// (`StreamIo::write`), the keeping of the buffer until the terminal completion the driver's.

use std::io;

use io_uring::{opcode, squeue};

use super::clamp_len;
use crate::buf::IoBuf;
use crate::driver::uring_target;
use crate::driver::{Direction, Operation, SharedFd, Source, StreamOperation};

/// A zero-copy send of a buffer's initialised bytes.
pub(crate) struct StreamSendZc<B> {
    pub(crate) socket: SharedFd,
    pub(crate) buf: B,
}

// SAFETY: the kernel reads only `buf`'s heap memory, at most `bytes_init()` bytes, until the
// notification, the terminal completion, before which the buffer is never released.
unsafe impl<B: IoBuf> Operation for StreamSendZc<B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let len = clamp_len(self.buf.bytes_init());
        let ptr = self.buf.stable_ptr();
        uring_target!(self.socket, |fd| opcode::SendZc::new(fd, ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build())
    }

    fn source(&self) -> Source<'_> {
        Source::Readiness(&self.socket, Direction::Write)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        // Zero-copy sends exist only on the ring: elsewhere writes are plain sends.
        Err(io::Error::other("a zero-copy send runs only on io_uring"))
    }
}

// SAFETY: as above, for both completions.
unsafe impl<B: IoBuf> StreamOperation for StreamSendZc<B> {}
