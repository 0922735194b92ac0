//! [`StreamRecvSelect`]: receives from a stream socket into buffers the kernel selects from the
//! core's provided buffer ring (io_uring only), as a multishot receive (one submission, a
//! completion per arrival, Linux 6.0) or one completion at a time where the kernel refused
//! multishot.
//!
//! Each completion with data carries `IORING_CQE_F_BUFFER` and the id of the buffer the kernel
//! filled; the buffer is out of the ring from then on, lent to whoever takes the completion.
//! A completion of 0 bytes is the end of the stream; `ENOBUFS` means the ring was empty (the
//! receive ended; nothing was taken from the socket).

// This module owns the entry and what happens to a completion nobody takes: its bytes are kept
// on the socket for the next read, in order, and its buffer goes back to the ring (exactly once).
// It must never give a buffer id back that a completion did not lend.

use std::io;
use std::rc::Rc;

use io_uring::{cqueue, opcode, squeue};

use crate::driver::uring_target;
use crate::driver::{BUFFER_GROUP, Cqe, Direction, OpShare, Operation, RecvPool, SharedFd};
use crate::driver::{Source, StreamOperation};

/// A receive into buffers of the pool's ring.
pub(crate) struct StreamRecvSelect {
    socket: OpShare,
    pool: Rc<RecvPool>,
    multishot: bool,
}

impl StreamRecvSelect {
    /// A receive on `socket` over `pool`'s ring, multishot when `pool.multishot()`.
    pub(crate) fn new(socket: SharedFd, pool: Rc<RecvPool>) -> StreamRecvSelect {
        StreamRecvSelect {
            socket: OpShare::new(socket),
            multishot: pool.multishot(),
            pool,
        }
    }

    pub(crate) fn is_multishot(&self) -> bool {
        self.multishot
    }
}

// SAFETY: the entry points to no memory of its own: the kernel writes only into buffers of the
// pool's provided ring, which the io_uring driver keeps registered and allocated (it holds the
// pool) until no operation of the ring is left in the kernel.
unsafe impl Operation for StreamRecvSelect {
    fn uring_entry(&mut self) -> squeue::Entry {
        let size = self.pool.buffer_size();
        uring_target!(self.socket, |fd| if self.multishot {
            opcode::RecvMulti::new(fd, BUFFER_GROUP).build()
        } else {
            opcode::Recv::new(fd, std::ptr::null_mut(), size)
                .buf_group(BUFFER_GROUP)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT)
        })
    }

    fn source(&self) -> Source<'_> {
        Source::Readiness(&self.socket, Direction::Read)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        // The pool is a ring only on io_uring: on epoll a receive stream reads into a buffer
        // taken from the pool's list instead (`net::recv_stream`).
        Err(io::Error::other(
            "a buffer-selecting receive runs only on io_uring",
        ))
    }
}

/// Buffers one receive stream may fill before its consumer takes them: beyond this the
/// multishot receive is cancelled (and armed again as the consumer catches up), so that one
/// connection nobody reads cannot take the core's whole pool; the rest waits in the socket,
/// under TCP's flow control. 8 buffers of the default 16 KiB are 128 KiB, about a socket's
/// default receive buffer.
const RECV_QUEUE_LIMIT: usize = 8;

// SAFETY: as above, for every completion until the terminal one.
unsafe impl StreamOperation for StreamRecvSelect {
    const QUEUE_LIMIT: usize = RECV_QUEUE_LIMIT;

    fn orphan_item(&mut self, cqe: Cqe) {
        // What the receive took is the stream's: keep the bytes for the next read (as a
        // dropped one-shot receive does), and give the buffer back to the ring.
        let held = self.socket.held();
        if let Some(id) = cqueue::buffer_select(cqe.flags) {
            let len = cqe.result.max(0) as u32;
            // Lent with this completion; dropping it below gives it back to the ring.
            if let Some(buf) = self.pool.from_kernel(id, len)
                && !buf.is_empty()
            {
                held.keep_bytes(&buf);
            }
            return;
        }
        match -cqe.result {
            // End of stream, the cancellation, an empty ring: nothing was taken.
            0 | libc::ECANCELED | libc::ENOBUFS | libc::EINTR | libc::EAGAIN => {}
            // A socket reports its pending error once; the dropped receive took it.
            errno if errno > 0 => held.keep_error(errno),
            _ => {}
        }
    }
}
