//! The socket operations, each in its io_uring form and its epoll form side by side.
//!
//! Every struct here owns what the kernel touches while the operation runs: the socket
//! ([`SharedFd`] clone, so the fd outlives a dropped stream until the operation completes), the
//! buffer, and any address storage (boxed, so its address survives the struct being moved into
//! the driver as an orphan). This module owns that parity; it must never hand the kernel a
//! pointer into the struct itself.
//!
//! [`Recv`] and [`Accept`] are cancel-safe: their socket is an [`OpShare`], which counts them in
//! the socket's holding area (see `crate::driver::held`), and an orphan that completed with a
//! result (bytes, an error, a connection) leaves it there for the next read or accept instead
//! of dropping it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};

use io_uring::{opcode, squeue, types};
use socket2::SockAddr;

use crate::buf::{IoBuf, IoBufMut};
use crate::driver::{Accepted, Direction, OpShare, Operation, SharedFd};
use crate::sys::syscall;

/// Flags for every accepted socket: coreio sockets are non-blocking and close-on-exec.
const ACCEPT_FLAGS: i32 = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;

/// Writes never raise SIGPIPE: a closed peer is an `EPIPE` error instead.
const SEND_FLAGS: i32 = libc::MSG_NOSIGNAL;

const STORAGE_LEN: libc::socklen_t =
    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// Storage the kernel fills with a peer's address.
pub(crate) struct AddrBuf {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl AddrBuf {
    fn boxed() -> Box<AddrBuf> {
        Box::new(AddrBuf {
            // SAFETY: all-zero bytes are a valid (unspecified-family) sockaddr_storage.
            storage: unsafe { std::mem::zeroed() },
            len: STORAGE_LEN,
        })
    }

    /// The address the kernel wrote, if it is an IP address.
    pub(crate) fn to_socket_addr(&self) -> Option<SocketAddr> {
        let mut storage = socket2::SockAddrStorage::zeroed();
        // SAFETY: `SockAddrStorage` wraps a `sockaddr_storage`, so viewing it as one is valid.
        unsafe { *storage.view_as::<libc::sockaddr_storage>() = self.storage };
        // SAFETY: the kernel wrote a sockaddr of `len` bytes (at most the storage's size).
        let addr = unsafe { SockAddr::new(storage, self.len.min(STORAGE_LEN)) };
        addr.as_socket()
    }
}

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
        opcode::Accept::new(
            types::Fd(self.listener.raw()),
            (&mut self.peer.storage as *mut libc::sockaddr_storage).cast(),
            &mut self.peer.len,
        )
        .flags(ACCEPT_FLAGS)
        .build()
    }

    fn epoll_source(&self) -> (&SharedFd, Direction) {
        (&self.listener, Direction::Read)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        self.peer.len = STORAGE_LEN;
        let fd = syscall!(accept4(
            self.listener.raw(),
            (&mut self.peer.storage as *mut libc::sockaddr_storage).cast(),
            &mut self.peer.len,
            ACCEPT_FLAGS
        ))?;
        Ok(fd as u32)
    }

    fn orphan_completed(self, result: i32) {
        // The connection is the listener's: queue it for the next accept. If the listener is
        // gone too, this share is its last owner, and dropping it closes the queued connection
        // with the listener. Errors are not kept: a failed accept took nothing, and the causes
        // (a full fd table, an aborted connection) are met again by the next accept.
        if result >= 0 {
            let fd = Accept::accepted(result as u32);
            let peer = self.peer.to_socket_addr();
            self.listener.held().keep_accepted(Accepted { fd, peer });
        }
    }
}

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
        opcode::Connect::new(
            types::Fd(self.socket.raw()),
            self.addr.as_ptr().cast(),
            self.addr.len(),
        )
        .build()
    }

    fn epoll_source(&self) -> (&SharedFd, Direction) {
        (&self.socket, Direction::Write)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        let fd = self.socket.raw();
        if !self.in_progress {
            return match syscall!(connect(fd, self.addr.as_ptr().cast(), self.addr.len())) {
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

/// Receives into a buffer's capacity.
pub(crate) struct Recv<B> {
    socket: OpShare,
    buf: B,
}

impl<B> Recv<B> {
    /// A receive on `socket` into `buf`; await it with a [`Claim`](crate::driver::Claim) on the
    /// same socket's holding area.
    pub(crate) fn new(socket: SharedFd, buf: B) -> Self {
        Recv {
            socket: OpShare::new(socket),
            buf,
        }
    }
}

// SAFETY: the kernel writes only into `buf`'s heap memory (`IoBufMut` guarantees it does not
// move with the struct), at most `bytes_total()` bytes.
unsafe impl<B: IoBufMut> Operation for Recv<B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let len = clamp_len(self.buf.bytes_total());
        opcode::Recv::new(types::Fd(self.socket.raw()), self.buf.stable_mut_ptr(), len).build()
    }

    fn epoll_source(&self) -> (&SharedFd, Direction) {
        (&self.socket, Direction::Read)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        let len = clamp_len(self.buf.bytes_total()) as usize;
        let n = syscall!(recv(
            self.socket.raw(),
            self.buf.stable_mut_ptr().cast(),
            len,
            0
        ))?;
        Ok(n as u32)
    }

    fn epoll_drained(&self, result: u32) -> bool {
        // A stream socket's recv returns less than asked only when its queue ran dry; data
        // arriving after that raises a new edge-triggered event.
        result > 0 && result < clamp_len(self.buf.bytes_total())
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

impl<B: IoBufMut> Recv<B> {
    /// Records the bytes a successful receive wrote and gives the buffer back.
    pub(crate) fn finish(self, result: &io::Result<u32>) -> B {
        let Recv { socket, mut buf } = self;
        if let Ok(n) = result {
            // SAFETY: the kernel reported writing `n` bytes from the buffer's start.
            unsafe { buf.set_init(*n as usize) };
        }
        drop(socket);
        buf
    }
}

/// Sends a buffer's initialised bytes.
pub(crate) struct Send<B> {
    pub(crate) socket: SharedFd,
    pub(crate) buf: B,
}

// SAFETY: the kernel reads only `buf`'s heap memory, at most `bytes_init()` bytes.
unsafe impl<B: IoBuf> Operation for Send<B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let len = clamp_len(self.buf.bytes_init());
        opcode::Send::new(types::Fd(self.socket.raw()), self.buf.stable_ptr(), len)
            .flags(SEND_FLAGS)
            .build()
    }

    fn epoll_source(&self) -> (&SharedFd, Direction) {
        (&self.socket, Direction::Write)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        let len = clamp_len(self.buf.bytes_init()) as usize;
        let n = syscall!(send(
            self.socket.raw(),
            self.buf.stable_ptr().cast(),
            len,
            SEND_FLAGS
        ))?;
        Ok(n as u32)
    }
}

/// A length the kernel's 32-bit fields can carry; a larger buffer is served in parts.
fn clamp_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX).min(i32::MAX as u32)
}
