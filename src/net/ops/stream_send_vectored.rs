//! [`StreamSendVectored`]: one `sendmsg` of several buffers on a stream socket (a header and a
//! body sent together without copying them into one).
//!
//! The kernel reads an iovec array and a `msghdr` that points at it; both live in one boxed
//! [`Gather`] the operation owns, so their addresses survive the struct moving into the driver
//! as an orphan. The iovecs point into the buffers' own heap memory.

use std::io;

use io_uring::{opcode, squeue};

use crate::buf::IoBuf;
use crate::driver::uring_target;
use crate::driver::{Direction, Operation, SharedFd, Source};
use crate::sys;

/// Writes never raise SIGPIPE: a closed peer is an `EPIPE` error instead.
const SEND_FLAGS: i32 = libc::MSG_NOSIGNAL;

use crate::buf::MAX_IOVECS;

/// Sends the initialised bytes of several buffers, in order, as one stream write.
pub(crate) struct StreamSendVectored<B> {
    socket: SharedFd,
    bufs: Vec<B>,
    gather: Box<Gather>,
}

/// What the kernel reads besides the buffers: the message header and the iovecs it names.
struct Gather {
    header: libc::msghdr,
    iovecs: Vec<libc::iovec>,
}

impl<B: IoBuf> StreamSendVectored<B> {
    /// A send of `bufs`' initialised bytes after the first `skip` of them (those a previous
    /// partial write already sent), at most [`MAX_IOVECS`] buffers' worth.
    pub(crate) fn new(socket: SharedFd, bufs: Vec<B>, skip: usize) -> Self {
        let iovecs = crate::buf::write_iovecs(&bufs, skip, MAX_IOVECS);
        let mut gather = Box::new(Gather {
            // SAFETY: all-zero bytes are a valid, empty msghdr (no name, no control data).
            header: unsafe { std::mem::zeroed() },
            iovecs,
        });
        // The iovecs are a Vec's heap memory: its address stays put when `gather` moves.
        gather.header.msg_iov = gather.iovecs.as_mut_ptr();
        gather.header.msg_iovlen = gather.iovecs.len();
        StreamSendVectored {
            socket,
            bufs,
            gather,
        }
    }

    /// Bytes this send offers the kernel.
    pub(crate) fn len(&self) -> usize {
        self.gather.iovecs.iter().map(|iovec| iovec.iov_len).sum()
    }

    /// Gives the buffers back.
    pub(crate) fn into_bufs(self) -> Vec<B> {
        self.bufs
    }
}

// SAFETY: the kernel reads `gather` (a box the struct owns, whose iovec array is a Vec's heap
// memory) and, through the iovecs, the buffers' initialised bytes: heap memory `IoBuf`
// guarantees stays put while the buffers, owned by `self`, live.
unsafe impl<B: IoBuf> Operation for StreamSendVectored<B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        uring_target!(self.socket, |fd| opcode::SendMsg::new(
            fd,
            &self.gather.header
        )
        .flags(SEND_FLAGS as u32)
        .build())
    }

    fn source(&self) -> Source<'_> {
        Source::Readiness(&self.socket, Direction::Write)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        // SAFETY: the header names `iovecs`, which point at initialised bytes the buffers own;
        // the socket is open while `self.socket` lives.
        let n =
            sys::cvt(unsafe { libc::sendmsg(self.socket.raw(), &self.gather.header, SEND_FLAGS) })?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}
