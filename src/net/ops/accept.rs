//! [`Accept`]: one connection from a listening socket.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use io_uring::{opcode, squeue};

use super::addr::{AddrBuf, STORAGE_LEN};
use crate::driver::uring_target;
use crate::driver::{Accepted, Direction, OpShare, Operation, SharedFd, Source};
use crate::sys;

/// Flags for every accepted socket: coreio sockets are non-blocking and close-on-exec.
const ACCEPT_FLAGS: i32 = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;

/// Accepts one connection on a listening socket.
pub(crate) struct Accept {
    pub(crate) listener: OpShare,
    pub(crate) peer: Box<AddrBuf>,
}

impl Accept {
    /// An accept on `listener`; await it with a [`Claim`](crate::driver::Claim) on the same
    /// socket's holding area.
    pub(crate) fn new(listener: SharedFd) -> Self {
        Accept {
            listener: OpShare::new(listener),
            peer: AddrBuf::boxed(),
        }
    }

    /// Takes ownership of the fd a successful accept returned.
    pub(crate) fn accepted(fd: u32) -> OwnedFd {
        // SAFETY: a successful accept returns a new descriptor nobody else owns.
        unsafe { OwnedFd::from_raw_fd(fd as i32) }
    }
}

// SAFETY: the kernel writes only into `peer`, a box the struct owns, whose address survives
// moves of the struct.
unsafe impl Operation for Accept {
    fn uring_entry(&mut self) -> squeue::Entry {
        let storage = (&mut self.peer.storage as *mut libc::sockaddr_storage).cast();
        let len: *mut libc::socklen_t = &mut self.peer.len;
        uring_target!(self.listener, |fd| opcode::Accept::new(fd, storage, len)
            .flags(ACCEPT_FLAGS)
            .build())
    }

    fn source(&self) -> Source<'_> {
        Source::Readiness(&self.listener, Direction::Read)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        self.peer.len = STORAGE_LEN;
        // SAFETY: the address storage and its length are valid, writable and owned by `self`
        // for the call; the listener fd is open while `self.listener` lives.
        let fd = sys::cvt(unsafe {
            libc::accept4(
                self.listener.raw(),
                (&mut self.peer.storage as *mut libc::sockaddr_storage).cast(),
                &mut self.peer.len,
                ACCEPT_FLAGS,
            )
        })?;
        Ok(fd as u32)
    }

    fn orphan_completed(self, result: i32) {
        // The connection is the listener's: queue it for the next accept. If the listener is
        // gone too, this share is its last owner, and dropping it closes the queued connection
        // with the listener. Errors are not kept: a failed accept took nothing, and the causes
        // (a full fd table, an aborted connection) are met again by the next accept.
        if result >= 0 {
            let fd = Accept::accepted(result as u32);
            let peer = self.peer.to_sock_addr();
            self.listener.held().keep_accepted(Accepted { fd, peer });
        }
    }
}
