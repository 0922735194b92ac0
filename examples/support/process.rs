//! What the example servers need from the process, written once: a clean stop on SIGINT or
//! SIGTERM, and a free port that every core can bind.
//!
//! Included by `examples/echo.rs` and `examples/sharded_kv/main.rs` with
//! `#[path = ".../support/process.rs"] mod process;` (examples cannot share a library target).
//! This module owns the process-wide signal mask and nothing of the servers themselves.

use std::net::SocketAddr;

use coreio::sync::Event;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Blocks SIGINT and SIGTERM and starts a thread that waits for them and sets `stop`, printing
/// `"{program}: SIGINT received, stopping"`. Call it before any other thread exists (before the
/// runtime starts), so that every thread inherits the mask and the signals wait for `sigwait`
/// instead of killing the process.
pub fn stop_on_signals(program: &'static str, stop: Event) -> Result<(), String> {
    let signals = block_stop_signals()?;
    std::thread::Builder::new()
        .name(format!("{program}-signals"))
        .spawn(move || {
            if let Some(name) = wait_for_signal(&signals) {
                println!("{program}: {name} received, stopping");
                stop.set();
            }
        })
        .map(drop)
        .map_err(|err| format!("cannot start the signal thread: {err}"))
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

/// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread it starts later).
fn block_stop_signals() -> Result<libc::sigset_t, String> {
    // SAFETY: an all-zero `sigset_t` is valid storage; `sigemptyset` initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid, writable storage for a signal set, and SIGINT and SIGTERM are
    // valid signal numbers, so these calls cannot fail.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    // SAFETY: `set` is an initialised signal set; the old mask is not asked for (null).
    let res = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if res != 0 {
        return Err(format!(
            "cannot block SIGINT and SIGTERM: {}",
            std::io::Error::from_raw_os_error(res)
        ));
    }
    Ok(set)
}

/// Waits for one of the signals in `set` (blocked in this thread); `None` if `sigwait` fails.
fn wait_for_signal(set: &libc::sigset_t) -> Option<&'static str> {
    let mut signal: libc::c_int = 0;
    // SAFETY: `set` is an initialised signal set and `signal` is valid, writable storage.
    let res = unsafe { libc::sigwait(set, &mut signal) };
    if res != 0 {
        eprintln!(
            "sigwait failed ({}); Ctrl-C will not stop the server cleanly",
            std::io::Error::from_raw_os_error(res)
        );
        return None;
    }
    Some(match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    })
}
