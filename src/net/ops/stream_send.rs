//! [`StreamSend`]: a send of a buffer's initialised bytes on a stream socket.

use std::io;

use io_uring::{opcode, squeue, types};

use super::clamp_len;
use crate::buf::IoBuf;
use crate::driver::{Direction, Operation, SharedFd};
use crate::sys;

/// Writes never raise SIGPIPE: a closed peer is an `EPIPE` error instead.
const SEND_FLAGS: i32 = libc::MSG_NOSIGNAL;

/// Sends a buffer's initialised bytes.
pub(crate) struct StreamSend<B> {
    pub(crate) socket: SharedFd,
    pub(crate) buf: B,
}

// SAFETY: the kernel reads only `buf`'s heap memory, at most `bytes_init()` bytes.
unsafe impl<B: IoBuf> Operation for StreamSend<B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let len = clamp_len(self.buf.bytes_init());
        opcode::Send::new(types::Fd(self.socket.raw()), self.buf.stable_ptr(), len)
            .flags(SEND_FLAGS)
            .build()
    }

    fn source(&self) -> (&SharedFd, Direction) {
        (&self.socket, Direction::Write)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        let len = clamp_len(self.buf.bytes_init()) as usize;
        // SAFETY: the buffer's memory holds `bytes_init() >= len` initialised bytes (`IoBuf`),
        // and the socket is open while `self.socket` lives.
        let n = sys::cvt(unsafe {
            libc::send(
                self.socket.raw(),
                self.buf.stable_ptr().cast(),
                len,
                SEND_FLAGS,
            )
        })?;
        Ok(n as u32)
    }
}
