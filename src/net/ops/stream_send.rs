//! [`StreamSend`]: a send of a buffer's initialised bytes on a stream socket.

use std::io;

use io_uring::{opcode, squeue};

use super::{Calls, clamp_len};
use crate::buf::IoBuf;
use crate::driver::uring_target;
use crate::driver::{Direction, Operation, SharedFd, Source};
use crate::sys;

/// Socket writes never raise SIGPIPE: a closed peer is an `EPIPE` error instead. (A pipe's
/// `write(2)` has no such flag: `io::pipe` makes sure SIGPIPE is not fatal instead.)
const SEND_FLAGS: i32 = libc::MSG_NOSIGNAL;

/// Sends a buffer's initialised bytes.
pub(crate) struct StreamSend<B> {
    pub(crate) socket: SharedFd,
    pub(crate) buf: B,
    /// `send(2)` on a socket, `write(2)` on a pipe.
    pub(crate) calls: Calls,
}

// SAFETY: the kernel reads only `buf`'s heap memory, at most `bytes_init()` bytes.
unsafe impl<B: IoBuf> Operation for StreamSend<B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let len = clamp_len(self.buf.bytes_init());
        let ptr = self.buf.stable_ptr();
        uring_target!(self.socket, |fd| match self.calls {
            Calls::Socket => opcode::Send::new(fd, ptr, len).flags(SEND_FLAGS).build(),
            // Offset -1: the file's current position, as write(2); a pipe has none.
            Calls::Pipe => opcode::Write::new(fd, ptr, len).offset(u64::MAX).build(),
        })
    }

    fn source(&self) -> Source<'_> {
        Source::Readiness(&self.socket, Direction::Write)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        let len = clamp_len(self.buf.bytes_init()) as usize;
        let (fd, ptr) = (self.socket.raw(), self.buf.stable_ptr().cast());
        let n = sys::cvt(match self.calls {
            // SAFETY: the buffer's memory holds `bytes_init() >= len` initialised bytes
            // (`IoBuf`), and the socket is open while `self.socket` lives.
            Calls::Socket => unsafe { libc::send(fd, ptr, len, SEND_FLAGS) },
            // SAFETY: the same buffer and descriptor guarantees, for the pipe.
            Calls::Pipe => unsafe { libc::write(fd, ptr, len) },
        })?;
        Ok(n as u32)
    }
}
