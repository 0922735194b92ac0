//! [`TcpListener`]: a per-core listening socket that keeps accepting through fd exhaustion.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::TcpStream;
use crate::driver::{Claim, SharedFd};
use crate::net::ops::Accept;

/// Backlog passed to `listen(2)`; the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

/// First pause after `accept` fails for lack of descriptors or memory; doubled on each
/// consecutive failure up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(1);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A TCP listening socket owned by one core.
///
/// [`bind`](TcpListener::bind) sets `SO_REUSEADDR` and `SO_REUSEPORT`: bind the same address on
/// every core and the kernel balances new connections across the cores' listeners. A listener
/// belongs to its core and is not `Send`:
///
/// ```compile_fail
/// fn must_be_send<T: Send>() {}
/// must_be_send::<coreio::net::TcpListener>();
/// ```
pub struct TcpListener {
    fd: SharedFd,
    local_addr: SocketAddr,
    /// Whether the current run of resource failures has been logged already.
    starved: Cell<bool>,
}

impl TcpListener {
    /// Binds a listener to `addr` on the current core.
    ///
    /// Port 0 picks a free port; [`local_addr`](TcpListener::local_addr) tells which. To share
    /// it across cores, bind port 0 on one core and the resulting address on the others.
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&SockAddr::from(addr))?;
        socket.listen(LISTEN_BACKLOG)?;
        let local_addr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("listener bound to a non-IP address"))?;
        Ok(TcpListener {
            fd: SharedFd::new(OwnedFd::from(socket))?,
            local_addr,
            starved: Cell::new(false),
        })
    }

    /// Wraps a listening socket made elsewhere (it is switched to non-blocking mode).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        Ok(TcpListener {
            fd: SharedFd::new(OwnedFd::from(listener))?,
            local_addr,
            starved: Cell::new(false),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    /// Waits for the next connection.
    ///
    /// Transient failures are absorbed: a connection aborted before it was accepted
    /// (`ECONNABORTED`) is skipped, and when the process or system runs out of descriptors or
    /// memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) the listener logs one warning, backs off
    /// (1 ms doubling to 100 ms) and tries again, so the server keeps serving the connections it
    /// has and resumes accepting as soon as descriptors free up. Other errors are returned.
    ///
    /// Cancel-safe: dropping the future before it completes never loses a connection. One the
    /// kernel had already accepted for it (on io_uring the accept may complete after the future
    /// is gone) is queued on the listener and returned by the next accept.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let mut backoff = MIN_ACCEPT_BACKOFF;
        let held = self.fd.held();
        loop {
            if !held.is_clear() {
                // A dropped accept left a connection, or is still finishing: wait until it
                // has, then serve what it took before accepting anew (see `driver::held`).
                held.settled().await;
                if let Some(accepted) = held.take_accepted() {
                    return self.stream_for(accepted.fd, accepted.peer);
                }
            }
            let completion = Claim::new(held, Accept::new(self.fd.clone())).await;
            match completion.result {
                Ok(fd) => {
                    let socket = Accept::accepted(fd);
                    return self.stream_for(socket, completion.data.peer.to_socket_addr());
                }
                Err(err) => match err.raw_os_error() {
                    Some(libc::ECONNABORTED | libc::EPROTO | libc::EINTR) => continue,
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        if !self.starved.replace(true) {
                            log::warn!(
                                "coreio: accept on {} failed ({err}); backing off until resources free up",
                                self.local_addr
                            );
                        }
                        crate::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                    }
                    _ => return Err(err),
                },
            }
        }
    }
}

impl TcpListener {
    /// Wraps a connection the kernel accepted (just now, or for a dropped accept).
    fn stream_for(
        &self,
        socket: OwnedFd,
        peer: Option<SocketAddr>,
    ) -> io::Result<(TcpStream, SocketAddr)> {
        if self.starved.replace(false) {
            log::info!("coreio: accept on {} recovered", self.local_addr);
        }
        let peer = peer.ok_or_else(|| io::Error::other("accepted a non-IP peer"))?;
        Ok((TcpStream::from_fd(socket)?, peer))
    }
}

/// The descriptor, for socket options coreio does not wrap (`socket2::SockRef::from(&listener)`).
impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("addr", &self.local_addr)
            .field("fd", &self.fd.raw())
            .finish()
    }
}
