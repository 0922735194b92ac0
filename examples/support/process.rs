//! What the example servers need from the process, written once: a clean stop on SIGINT or
//! SIGTERM, and a free port that every core can bind.
//!
//! Included by `examples/echo.rs` and `examples/sharded_kv/main.rs` with
//! `#[path = ".../support/process.rs"] mod process;` (examples cannot share a library target).
//! This module owns the servers' reaction to SIGINT and SIGTERM and nothing of the servers
//! themselves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use coreio::signal::{SignalKind, signal};
use coreio::sync::Event;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Listens for SIGINT and SIGTERM (`coreio::signal`: from here on they no longer kill the
/// process) and starts a thread that waits for the first of them and sets `stop`, printing
/// `"{program}: SIGINT received, stopping"`. Call it before the runtime starts, so that a
/// signal that comes while it starts is not lost.
pub fn stop_on_signals(program: &'static str, stop: Event) -> Result<(), String> {
    let listen = |kind| signal(kind).map_err(|err| format!("cannot listen for signals: {err}"));
    let mut interrupt = listen(SignalKind::interrupt())?;
    let mut terminate = listen(SignalKind::terminate())?;
    std::thread::Builder::new()
        .name(format!("{program}-signals"))
        .spawn(move || {
            let name = wait_on_this_thread(|cx| {
                if interrupt.poll_recv(cx).is_ready() {
                    Poll::Ready("SIGINT")
                } else if terminate.poll_recv(cx).is_ready() {
                    Poll::Ready("SIGTERM")
                } else {
                    Poll::Pending
                }
            });
            println!("{program}: {name} received, stopping");
            stop.set();
        })
        .map(drop)
        .map_err(|err| format!("cannot start the signal thread: {err}"))
}

/// Polls `poll` on the calling thread until it is ready, parking in between: the signal
/// streams' wakers unpark it. (The streams would do as well in a task; this thread keeps the
/// servers' root futures free of signal handling.)
fn wait_on_this_thread<T>(mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> T {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = poll(&mut cx) {
            return value;
        }
        std::thread::park();
    }
}

/// Binds a socket with `SO_REUSEPORT` on port 0 and returns the address the kernel picked.
pub fn reserve_port(addr: SocketAddr) -> std::io::Result<(SocketAddr, Socket)> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SockAddr::from(addr))?;
    let bound = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("bound to a non-IP address"))?;
    Ok((bound, socket))
}
