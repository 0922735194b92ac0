//! [`PortClaim`]: the rule that lets the cores of one process share a listening address while
//! keeping every other process off it.
//!
//! [`TcpListener::bind`](crate::net::TcpListener::bind) sets `SO_REUSEPORT` so that each core can
//! bind the same address with its own listener. The kernel grants that sharing to any socket of
//! the same user that also sets the option, so without a further check a second coreio server
//! started by mistake on the same port would bind it without a word and receive half of the
//! connections. A `PortClaim` is what a listener holds to say "this process serves this
//! address"; taking the first claim on an address checks that no other process serves it:
//!
//! 1. **In this process**: a process-wide table counts the claims on each address. When the
//!    address is already claimed (another core, or another runtime, of this process listens on
//!    it) the claim is granted at once: that is the sharing `SO_REUSEPORT` is for.
//! 2. **Another coreio process**: the first claim on an address also binds a Unix datagram
//!    socket to the abstract name `coreio/tcp-listen/<addr>` (Linux's abstract namespace, per
//!    network namespace like TCP ports, no file on disk). Binding an abstract name is exclusive,
//!    and the kernel frees it when the process ends however it ends, so of two coreio processes
//!    claiming the same address, even at the same instant, exactly one gets it. No race.
//! 3. **Anything else listening there** (another program, a coreio listener on an overlapping
//!    address such as `0.0.0.0` while this one asks for `127.0.0.1`, or `[::]` without
//!    `IPV6_V6ONLY` covering IPv4): a probe socket with `SO_REUSEADDR` but *not* `SO_REUSEPORT`
//!    is bound to the address. Linux refuses that bind (`EADDRINUSE`) when a socket is listening
//!    on an overlapping address, and allows it otherwise: next to sockets that are merely bound
//!    (the caller's own listener-to-be, which binds before it claims and listens after), and
//!    next to `TIME_WAIT` connections, so a server restarted right after it stopped binds again.
//!
//! The probe's race, stated honestly: a program that is not coreio (or a coreio process binding
//! a different but overlapping address) that sets `SO_REUSEPORT` and starts listening between
//! the probe and this process's `listen` shares the port without either side being told.
//! Between two coreio processes on the same address the abstract name closes that window; a
//! program that does not set `SO_REUSEPORT` cannot share the port at all.
//!
//! Sharing with other processes on purpose (`TcpSocket::set_reuseport`,
//! `TcpListener::bind_shared`) takes no claim.
//!
//! The claim is released when its listener is dropped (or turned into a std listener); the
//! abstract name goes with the address's last claim.

// This module owns the claim table and the probe. It must never hold the table's lock across
// anything but the two bind calls (no await, no user code), and never make a claim fail for a
// reason other than another listener: an abstract namespace that cannot be used (a sandbox that
// forbids Unix sockets) only loses the race-free step, the probe still runs.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
// A plain process-wide table under a lock: no cross-thread protocol for loom to model, and a
// `static` needs std's const constructor.
use std::sync::{Mutex, PoisonError};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// The addresses this process's listeners have claimed.
static CLAIMS: Mutex<BTreeMap<SocketAddr, Entry>> = Mutex::new(BTreeMap::new());

/// One claimed address.
struct Entry {
    /// Live claims on the address (one per listener).
    claims: usize,
    /// The abstract-name socket that keeps other coreio processes off the address; `None` where
    /// the abstract namespace could not be used.
    _name: Option<UnixDatagram>,
}

/// A listener's claim on its address; released when dropped.
pub(crate) struct PortClaim {
    addr: SocketAddr,
}

impl PortClaim {
    /// Claims `addr`, the address `socket` (set up with `SO_REUSEPORT`, bound, not yet listening)
    /// is bound to. Fails with `AddrInUse` when another process serves the address, or a socket
    /// listens on an overlapping one.
    pub(crate) fn acquire(addr: SocketAddr, socket: SockRef<'_>) -> io::Result<PortClaim> {
        let mut claims = CLAIMS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = claims.get_mut(&addr) {
            entry.claims += 1;
            return Ok(PortClaim { addr });
        }
        let name = claim_name(addr)?;
        probe(addr, &socket)?;
        claims.insert(
            addr,
            Entry {
                claims: 1,
                _name: name,
            },
        );
        Ok(PortClaim { addr })
    }
}

impl Drop for PortClaim {
    fn drop(&mut self) {
        let mut claims = CLAIMS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = claims.get_mut(&self.addr) {
            entry.claims -= 1;
            if entry.claims == 0 {
                // Closes the abstract-name socket: the address is free for other processes.
                claims.remove(&self.addr);
            }
        }
    }
}

impl fmt::Debug for PortClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PortClaim").field(&self.addr).finish()
    }
}

/// Binds the abstract name of `addr`: `Ok(None)` when the abstract namespace is unusable here.
fn claim_name(addr: SocketAddr) -> io::Result<Option<UnixDatagram>> {
    let name = format!("coreio/tcp-listen/{addr}");
    let unix_addr = UnixAddr::from_abstract_name(name.as_bytes())?;
    match UnixDatagram::bind_addr(&unix_addr) {
        Ok(socket) => {
            // Only the name matters: a datagram sent to it is refused (EPIPE) rather than
            // queued, so nobody can make it hold memory. Best effort, the name holds anyway.
            let _ = socket.shutdown(std::net::Shutdown::Read);
            Ok(Some(socket))
        }
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another coreio process already listens on this address \
             (to share it on purpose, set SO_REUSEPORT with TcpSocket::set_reuseport \
             or use TcpListener::bind_shared)",
        )),
        Err(err) => {
            log::debug!(
                "coreio: cannot bind the abstract name {name:?} ({err}); \
                 checking {addr} for other listeners with a probe only"
            );
            Ok(None)
        }
    }
}

/// Binds a socket without `SO_REUSEPORT` to `addr`, with the same `IPV6_V6ONLY` as `listener`
/// so that it covers the same addresses: the kernel refuses it if anything listens there.
fn probe(addr: SocketAddr, listener: &SockRef<'_>) -> io::Result<()> {
    let probe = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    probe.set_reuse_address(true)?;
    if addr.is_ipv6() {
        probe.set_only_v6(listener.only_v6()?)?;
    }
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another socket already listens on this address or an overlapping one \
             (another process, or a listener on a wildcard address such as 0.0.0.0 or [::]); \
             to share a port with another process on purpose, set SO_REUSEPORT with \
             TcpSocket::set_reuseport or use TcpListener::bind_shared",
        )),
        Err(err) => Err(err),
    }
}
