//! [`StreamPeek`]: a receive from a stream socket that leaves the bytes queued (`MSG_PEEK`).
//!
//! Unlike [`StreamRecv`](super::StreamRecv) it takes nothing from the socket, so a peek whose
//! future is dropped has nothing to hand back (no holding-area share), and a short peek says
//! nothing about the epoll readiness of the socket: the bytes it saw are still there for the
//! next read, which must not wait for an edge that already came.

use std::io;

use io_uring::{opcode, squeue};

use super::clamp_len;
use crate::buf::IoBufMut;
use crate::driver::uring_target;
use crate::driver::{Direction, Operation, SharedFd, Source};
use crate::sys;

/// Copies queued bytes into a buffer's capacity without consuming them.
pub(crate) struct StreamPeek<B> {
    socket: SharedFd,
    buf: B,
}

impl<B> StreamPeek<B> {
    pub(crate) fn new(socket: SharedFd, buf: B) -> Self {
        StreamPeek { socket, buf }
    }
}

// SAFETY: the kernel writes only into `buf`'s heap memory (`IoBufMut` guarantees it does not
// move with the struct), at most `bytes_total()` bytes.
unsafe impl<B: IoBufMut> Operation for StreamPeek<B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let len = clamp_len(self.buf.bytes_total());
        let ptr = self.buf.stable_mut_ptr();
        uring_target!(self.socket, |fd| opcode::Recv::new(fd, ptr, len)
            .flags(libc::MSG_PEEK)
            .build())
    }

    fn source(&self) -> Source<'_> {
        Source::Readiness(&self.socket, Direction::Read)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        let len = clamp_len(self.buf.bytes_total()) as usize;
        // SAFETY: the buffer's memory is valid for writes of `bytes_total() >= len` bytes
        // (`IoBufMut`), and the socket is open while `self.socket` lives.
        let n = sys::cvt(unsafe {
            libc::recv(
                self.socket.raw(),
                self.buf.stable_mut_ptr().cast(),
                len,
                libc::MSG_PEEK,
            )
        })?;
        Ok(n as u32)
    }
}

impl<B: IoBufMut> StreamPeek<B> {
    /// Records the bytes a successful peek copied and gives the buffer back.
    pub(crate) fn finish(self, result: &io::Result<u32>) -> B {
        let StreamPeek { socket, mut buf } = self;
        if let Ok(n) = result {
            // SAFETY: the kernel reported writing `n` bytes from the buffer's start.
            unsafe { buf.set_init(*n as usize) };
        }
        drop(socket);
        buf
    }
}
