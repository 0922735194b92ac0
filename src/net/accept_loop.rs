//! [`accept_with_backoff`]: the accept loop a listener of any address family can share:
//! connections that dropped accepts took come first, transient failures are skipped, and
//! running out of descriptors or memory backs off instead of failing.
//!
//! Once the runtime is shutting down it stops: a pending or later accept returns the error of
//! `shutdown::shutting_down` (the kernel's queued connections are left to the listener's close).
//!
//! It returns the accepted descriptor and the peer's raw `socket2::SockAddr`, so it knows
//! nothing of IP or Unix addresses; wrapping the descriptor in a stream is the caller's
//! (`TcpListener::accept`, `UnixListener::accept`).

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use socket2::SockAddr;

use crate::driver::{Claim, SharedFd};
use crate::net::ops::Accept;
use crate::shutdown::or_shutdown;

/// First pause after `accept` fails for lack of descriptors or memory; doubled on each
/// consecutive failure up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(1);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A connection the kernel accepted, with the peer's address as `accept` reported it (for one
/// a dropped accept took, as the holding area kept it).
pub(crate) struct AcceptedFd {
    pub(crate) fd: OwnedFd,
    pub(crate) peer: SockAddr,
}

/// Waits for the next connection on the listening socket `listener`.
///
/// `starved` remembers whether the current run of resource failures was logged already (one
/// warning per run, one note when it ends); `name` names the listener in those lines.
/// Cancel-safe: a connection a dropped accept took is queued on the socket (`driver::held`)
/// and returned by the next call. Once the runtime is shutting down, fails with
/// `shutdown::shutting_down` (at once, or as soon as a pending call sees the request).
pub(crate) async fn accept_with_backoff(
    listener: &SharedFd,
    starved: &Cell<bool>,
    name: &dyn fmt::Display,
) -> io::Result<AcceptedFd> {
    // The inner loop is cancel-safe, so dropping it for the shutdown loses no connection.
    or_shutdown(accept_until_done(listener, starved, name)).await?
}

async fn accept_until_done(
    listener: &SharedFd,
    starved: &Cell<bool>,
    name: &dyn fmt::Display,
) -> io::Result<AcceptedFd> {
    let mut backoff = MIN_ACCEPT_BACKOFF;
    let held = listener.held();
    loop {
        if !held.is_clear() {
            // A dropped accept left a connection, or is still finishing: wait until it has,
            // then serve what it took before accepting anew.
            held.settled().await;
            if let Some(accepted) = held.take_accepted() {
                recovered(starved, name);
                return Ok(AcceptedFd {
                    fd: accepted.fd,
                    peer: accepted.peer,
                });
            }
        }
        let completion = Claim::new(held, Accept::new(listener.clone())).await;
        match completion.result {
            Ok(fd) => {
                recovered(starved, name);
                return Ok(AcceptedFd {
                    fd: Accept::accepted(fd),
                    peer: completion.data.peer.to_sock_addr(),
                });
            }
            Err(err) => match err.raw_os_error() {
                Some(libc::ECONNABORTED | libc::EPROTO | libc::EINTR) => continue,
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    if !starved.replace(true) {
                        log::warn!(
                            "coreio: accept on {name} failed ({err}); backing off until resources free up"
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

/// An accept succeeded: ends a logged run of resource failures.
fn recovered(starved: &Cell<bool>, name: &dyn fmt::Display) {
    if starved.replace(false) {
        log::info!("coreio: accept on {name} recovered");
    }
}
