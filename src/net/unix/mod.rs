//! Unix domain sockets: [`UnixListener`], [`UnixStream`], [`UnixDatagram`], their address
//! [`UnixSocketAddr`] (a path, a name in Linux's abstract namespace, or unnamed) and the peer
//! credentials [`UCred`].
//!
//! A stream reads and writes through the same `StreamIo` as a TCP stream, a datagram socket
//! through the same datagram operations as a UDP socket, and a listener accepts through the
//! shared accept loop (`net::accept_loop`), so cancel safety and the
//! back-off on descriptor exhaustion are the same as TCP's, on both backends.

// This module owns what is particular to Unix sockets: addresses, binding (it must never remove a
// socket file: a path in use is the caller's to clean up), credentials, and `connect`, which is a
// plain non-blocking syscall here because a Unix connect never waits in the kernel.

mod addr;
mod cred;
mod datagram;
mod listener;
mod stream;

pub use addr::UnixSocketAddr;
pub use cred::UCred;
pub use datagram::UnixDatagram;
pub use listener::UnixListener;
pub use stream::UnixStream;

use std::io;

/// `err`, with its kind kept and a message naming what was done to which address.
fn naming(err: io::Error, action: &str, addr: &UnixSocketAddr) -> io::Error {
    io::Error::new(err.kind(), format!("{action} Unix socket {addr}: {err}"))
}

/// A failed `bind`, naming the address; for a path in use, what to do about it.
pub(super) fn bind_error(err: io::Error, addr: &UnixSocketAddr) -> io::Error {
    if err.kind() == io::ErrorKind::AddrInUse && addr.as_pathname().is_some() {
        return io::Error::new(
            err.kind(),
            format!(
                "binding Unix socket {addr}: {err}; the path exists (a running server's socket, \
                 or a stale one left by a server that exited: remove it if nothing serves it)"
            ),
        );
    }
    naming(err, "binding", addr)
}
