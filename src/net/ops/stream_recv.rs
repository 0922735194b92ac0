//! [`StreamRecv`]: a receive from a stream socket (TCP; later Unix streams and pipes).
//!
//! A stream receive that returns less than it asked for has emptied the socket, which the epoll
//! backend uses to skip a syscall bound to fail (`epoll_drained`); a datagram receive must not
//! (a short datagram says nothing of the queue), so it is a different operation.

use std::io;

use io_uring::{opcode, squeue};

use super::{Calls, clamp_len};
use crate::buf::IoBufMut;
use crate::driver::uring_target;
use crate::driver::{Direction, OpShare, Operation, SharedFd, Source, uring};
use crate::sys;

/// Receives into a buffer's capacity.
pub(crate) struct StreamRecv<B> {
    socket: OpShare,
    buf: B,
    /// epoll: whether a short receive means the queue ran dry (see `short_read_drains`).
    short_read_drains: bool,
    calls: Calls,
}

impl<B> StreamRecv<B> {
    /// A receive on `socket` into `buf`; await it with a [`Claim`](crate::driver::Claim) on the
    /// same socket's holding area.
    pub(crate) fn new(socket: SharedFd, buf: B) -> Self {
        StreamRecv {
            socket: OpShare::new(socket),
            buf,
            short_read_drains: true,
            calls: Calls::Socket,
        }
    }

    /// Whether a receive shorter than asked for means the socket's queue ran dry (the default,
    /// true of TCP). Not of a Unix stream: its receive stops early at bytes that carry
    /// descriptors (or, with `SO_PASSCRED`, at another writer's bytes) with more queued behind.
    pub(crate) fn short_read_drains(mut self, drains: bool) -> Self {
        self.short_read_drains = drains;
        self
    }

    /// The same receive with `calls` (`read(2)` on a pipe).
    pub(crate) fn with_calls(self, calls: Calls) -> Self {
        StreamRecv { calls, ..self }
    }
}

// SAFETY: the kernel writes only into `buf`'s heap memory (`IoBufMut` guarantees it does not
// move with the struct), at most `bytes_total()` bytes.
unsafe impl<B: IoBufMut> Operation for StreamRecv<B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let len = clamp_len(self.buf.bytes_total());
        let ptr = self.buf.stable_mut_ptr();
        let ioprio = uring::recv_ioprio(self.short_read_drains && self.socket.read_drained());
        uring_target!(self.socket, |fd| match self.calls {
            Calls::Socket => opcode::Recv::new(fd, ptr, len).ioprio(ioprio).build(),
            // Offset -1: the file's current position, as read(2); a pipe has none.
            Calls::Pipe => opcode::Read::new(fd, ptr, len).offset(u64::MAX).build(),
        })
    }

    fn source(&self) -> Source<'_> {
        Source::Readiness(&self.socket, Direction::Read)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        let len = clamp_len(self.buf.bytes_total()) as usize;
        let (fd, ptr) = (self.socket.raw(), self.buf.stable_mut_ptr().cast());
        let n = sys::cvt(match self.calls {
            // SAFETY: the buffer's memory is valid for writes of `bytes_total() >= len` bytes
            // (`IoBufMut`), and the socket is open while `self.socket` lives.
            Calls::Socket => unsafe { libc::recv(fd, ptr, len, 0) },
            // SAFETY: the same buffer and descriptor guarantees, for the pipe.
            Calls::Pipe => unsafe { libc::read(fd, ptr, len) },
        })?;
        Ok(n as u32)
    }

    fn epoll_drained(&self, result: u32) -> bool {
        // A TCP socket's recv returns less than asked only when its queue ran dry; data
        // arriving after that raises a new edge-triggered event. (Not so a Unix stream's.)
        self.short_read_drains && result > 0 && result < clamp_len(self.buf.bytes_total())
    }

    fn orphan_completed(mut self, result: i32) {
        // What the receive took is the stream's: keep it for the next read. The buffer itself
        // is freed when `self` drops below, as for any orphan; only the bytes are copied out.
        // (If the stream is gone too, the share is the socket's last owner and what is kept
        // goes with it.)
        let held = self.socket.held();
        match result {
            0 => {} // End of stream stays visible to the next receive.
            n if n > 0 => {
                let n = (n as usize).min(self.buf.bytes_total());
                // SAFETY: the kernel reported writing `n` bytes at the buffer's start (never
                // more than `bytes_total()`, clamped again above), so they are initialised, and
                // nothing else touches the buffer while this borrow lives.
                let bytes = unsafe { std::slice::from_raw_parts(self.buf.stable_mut_ptr(), n) };
                held.keep_bytes(bytes);
            }
            // The cancellation won, or nothing was taken: nothing to keep.
            _ if matches!(-result, libc::ECANCELED | libc::EINTR | libc::EAGAIN) => {}
            // A socket reports its pending error once; the dropped read took it.
            _ => held.keep_error(-result),
        }
    }
}

impl<B: IoBufMut> StreamRecv<B> {
    /// Records the bytes a successful receive wrote and gives the buffer back.
    pub(crate) fn finish(self, result: &io::Result<u32>) -> B {
        let StreamRecv {
            socket,
            mut buf,
            short_read_drains,
            calls,
        } = self;
        if let Ok(n) = result {
            // Whether the socket is empty now, for the next receive's `uring_entry` (on epoll,
            // `epoll_drained` says it).
            let short = *n > 0 && (*n as usize) < buf.bytes_total();
            socket.set_read_drained(short_read_drains && calls == Calls::Socket && short);
            // SAFETY: the kernel reported writing `n` bytes from the buffer's start.
            unsafe { buf.set_init(*n as usize) };
        }
        drop(socket);
        buf
    }
}
