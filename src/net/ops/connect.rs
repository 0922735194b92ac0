//! [`Connect`]: a socket's connection to a peer.

use std::io;
use std::net::SocketAddr;

use io_uring::{opcode, squeue};
use socket2::SockAddr;

use crate::driver::uring_target;
use crate::driver::{Direction, Operation, SharedFd, Source};
use crate::sys;

/// Connects a socket to a peer.
pub(crate) struct Connect {
    pub(crate) socket: SharedFd,
    addr: Box<SockAddr>,
    /// epoll: `connect` returned `EINPROGRESS` and the outcome is pending.
    in_progress: bool,
}

impl Connect {
    pub(crate) fn new(socket: SharedFd, addr: SocketAddr) -> Self {
        Connect {
            socket,
            addr: Box::new(SockAddr::from(addr)),
            in_progress: false,
        }
    }
}

// SAFETY: the kernel reads only `addr`, a box the struct owns.
unsafe impl Operation for Connect {
    fn uring_entry(&mut self) -> squeue::Entry {
        let (addr, len) = (self.addr.as_ptr().cast(), self.addr.len());
        uring_target!(self.socket, |fd| opcode::Connect::new(fd, addr, len)
            .build())
    }

    fn source(&self) -> Source<'_> {
        Source::Readiness(&self.socket, Direction::Write)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        let fd = self.socket.raw();
        if !self.in_progress {
            // SAFETY: `addr` is a valid sockaddr of `len` bytes owned by `self` for the call.
            let res =
                sys::cvt(unsafe { libc::connect(fd, self.addr.as_ptr().cast(), self.addr.len()) });
            return match res {
                Ok(_) => Ok(0),
                Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {
                    self.in_progress = true;
                    Err(io::ErrorKind::WouldBlock.into())
                }
                Err(err) => Err(err),
            };
        }
        let socket = socket2::SockRef::from(&self.socket);
        if let Some(err) = socket.take_error()? {
            return Err(err);
        }
        match socket.peer_addr() {
            Ok(_) => Ok(0),
            // Woken before the handshake finished: keep waiting.
            Err(err) if err.raw_os_error() == Some(libc::ENOTCONN) => {
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(err) => Err(err),
        }
    }
}
