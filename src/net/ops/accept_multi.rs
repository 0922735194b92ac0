//! [`AcceptMulti`]: one multishot accept (`IORING_ACCEPT_MULTISHOT`, Linux 5.19+), a
//! [`StreamOperation`] whose every completion is a connection, until a completion without
//! `IORING_CQE_F_MORE` ends it (an error, or the kernel giving up).
//!
//! A listener keeps one armed while it lives (`crate::net::accept_loop::Acceptor`), so one
//! submission serves many accepts. The kernel does not report the peer's address of a
//! multishot accept's connection: [`peer_of`] asks `getpeername` for it, one system call per
//! connection. A completion that arrives after the listener let the operation go (dropped,
//! `into_std`, shutdown) is no one's yet: [`StreamOperation::orphan_item`] queues it in the
//! socket's holding area (`crate::driver::held`) for a next accept, and the area closes it
//! with the socket's last descriptor if the listener is gone.

// This module owns that operation and the fate of the connections its orphaned completions carry;
// it must never drop one silently while the listener may still accept it. The epoll backend never
// runs it (`Driver::multishot_accept` is false there): its `epoll_attempt` is a plain `accept4`,
// kept only so that the operation is complete.

use std::io;
use std::os::fd::OwnedFd;

use io_uring::{opcode, squeue};
use socket2::{SockAddr, SockRef};

use super::Accept;
use crate::driver::uring_target;
use crate::driver::{
    Accepted, Cqe, Direction, OpShare, Operation, SharedFd, Source, StreamOperation,
};
use crate::sys;

/// Flags for every accepted socket, as for [`Accept`]: non-blocking and close-on-exec.
const ACCEPT_FLAGS: i32 = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;

/// A multishot accept on a listening socket. It holds an [`OpShare`] of the socket, so that
/// once the listener lets it go (dropping its `StandingClaim`) it counts as an orphan in the socket's
/// holding area until its terminal completion.
pub(crate) struct AcceptMulti {
    listener: OpShare,
}

impl AcceptMulti {
    pub(crate) fn new(listener: SharedFd) -> Self {
        #[cfg(test)]
        tests::ARMED.with(|armed| armed.set(armed.get() + 1));
        AcceptMulti {
            listener: OpShare::new(listener),
        }
    }
}

/// The peer address of an accepted connection, which a multishot accept does not report:
/// `getpeername` (one system call per connection). `ENOTCONN` means the peer already reset
/// the connection (a one-shot accept would have reported the address it had).
pub(crate) fn peer_of(fd: &OwnedFd) -> io::Result<SockAddr> {
    SockRef::from(fd).peer_addr()
}

/// The unspecified address (`0.0.0.0:0`, `[::]:0`) of an accepted IP socket's family.
pub(crate) fn unspecified_peer(fd: &OwnedFd) -> Option<SockAddr> {
    let local = SockRef::from(fd).local_addr().ok()?.as_socket()?;
    let ip: std::net::IpAddr = match local {
        std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    Some(std::net::SocketAddr::new(ip, 0).into())
}

// SAFETY: the entry gives the kernel no pointer at all: no address storage, the listener's fd
// only, which `listener` keeps open until the operation's data is dropped, after its terminal
// completion.
unsafe impl Operation for AcceptMulti {
    fn uring_entry(&mut self) -> squeue::Entry {
        uring_target!(self.listener, |fd| opcode::AcceptMulti::new(fd)
            .flags(ACCEPT_FLAGS)
            .build())
    }

    fn source(&self) -> Source<'_> {
        Source::Readiness(&self.listener, Direction::Read)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        // SAFETY: null address pointers ask for no address; the listener fd is open while
        // `self.listener` lives.
        let fd = sys::cvt(unsafe {
            libc::accept4(
                self.listener.raw(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                ACCEPT_FLAGS,
            )
        })?;
        Ok(fd as u32)
    }
}

/// Connections a multishot accept may hold for a listener that is not accepting them: past
/// this the driver cancels it (the next accept arms it again), and the rest wait in the
/// kernel's backlog, so a server that stops accepting to shed load still pushes back on
/// clients instead of holding every connection as an open descriptor.
const ACCEPT_QUEUE_LIMIT: usize = 128;

// SAFETY: as above: nothing the kernel writes to, through any number of completions.
unsafe impl StreamOperation for AcceptMulti {
    const QUEUE_LIMIT: usize = ACCEPT_QUEUE_LIMIT;

    fn orphan_item(&mut self, cqe: Cqe) {
        // A connection nobody took: queue it for the listener's next accept. If the listener
        // is gone, this share is the socket's last owner and closes it with the socket.
        // Errors took nothing. A connection whose peer has reset it already is kept with an
        // unspecified address, as the accept loop serves it (a non-IP one is closed here).
        if cqe.result < 0 {
            return;
        }
        let fd = Accept::accepted(cqe.result as u32);
        if let Some(peer) = peer_of(&fd).ok().or_else(|| unspecified_peer(&fd)) {
            self.listener.held().keep_accepted(Accepted { fd, peer });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;
    use std::future::Future;
    use std::net::SocketAddr;

    use crate::net::TcpListener;
    use crate::{Backend, Builder, context};

    thread_local! {
        /// Multishot accepts created on this thread (each test's runtime runs on its own).
        pub(crate) static ARMED: Cell<usize> = const { Cell::new(0) };
    }

    /// Whether the environment overrides what these tests ask of the builder.
    fn overridden() -> bool {
        std::env::var_os("COREIO_MULTISHOT_ACCEPT").is_some()
            || std::env::var_os("COREIO_BACKEND").is_some()
    }

    /// Accepts 32 connections that wait in the backlog, then 8 that arrive one by one while
    /// an accept waits, on an io_uring core with multishot accept `on`; returns how many
    /// multishot accepts were submitted and whether the core uses them.
    fn accept_many(on: bool) -> (usize, bool) {
        Builder::new()
            .backend(Backend::IoUring)
            .multishot_accept(on)
            .block_on(async {
                let before = ARMED.with(Cell::get);
                let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let addr = listener.local_addr().unwrap();
                let clients: Vec<_> = (0..32)
                    .map(|_| std::net::TcpStream::connect(addr).unwrap())
                    .collect();
                let mut expected: Vec<SocketAddr> =
                    clients.iter().map(|c| c.local_addr().unwrap()).collect();
                let mut peers = Vec::new();
                for _ in &clients {
                    peers.push(listener.accept().await.unwrap().1);
                }
                for _ in 0..8 {
                    // The accept waits on the armed stream before the client connects.
                    let mut accept = std::pin::pin!(listener.accept());
                    std::future::poll_fn(|cx| {
                        assert!(
                            accept.as_mut().poll(cx).is_pending(),
                            "nothing to accept yet"
                        );
                        std::task::Poll::Ready(())
                    })
                    .await;
                    let client = std::net::TcpStream::connect(addr).unwrap();
                    expected.push(client.local_addr().unwrap());
                    peers.push(accept.await.unwrap().1);
                }
                expected.sort();
                peers.sort();
                assert_eq!(peers, expected, "the peer addresses are not the clients'");
                let on = context::with(|ctx| ctx.driver.multishot_accept()).unwrap();
                (ARMED.with(Cell::get) - before, on)
            })
            .expect("runtime")
    }

    #[test]
    fn one_multishot_accept_serves_every_connection() {
        let (armed, on) = accept_many(true);
        assert!(on || overridden(), "multishot accept is off");
        assert_eq!(
            armed,
            usize::from(on),
            "one submission for all 40 connections"
        );
    }

    #[test]
    fn the_switch_off_accepts_one_shot() {
        let (armed, on) = accept_many(false);
        assert!(!on || overridden(), "multishot accept is on");
        assert_eq!(armed, usize::from(on));
    }

    #[test]
    fn einval_on_a_socket_that_does_not_listen_is_an_error_not_a_refusal() {
        Builder::new()
            .backend(Backend::IoUring)
            .multishot_accept(true)
            .block_on(async {
                let socket =
                    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                        .unwrap();
                socket
                    .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
                    .unwrap();
                let listener = TcpListener::from_std(socket.into()).unwrap();
                let on = context::with(|ctx| ctx.driver.multishot_accept()).unwrap();
                let err = listener
                    .accept()
                    .await
                    .expect_err("accepted on a socket that does not listen");
                assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
                let still = context::with(|ctx| ctx.driver.multishot_accept()).unwrap();
                assert_eq!(
                    still, on,
                    "an accept on a socket that does not listen turned multishot off"
                );
            })
            .expect("runtime");
    }
}
