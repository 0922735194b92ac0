//! [`Acceptor`] and [`accept_with_backoff`]: the accept loop a listener of any address family
//! can share: connections that dropped accepts took come first, transient failures are
//! skipped, and running out of descriptors or memory backs off instead of failing.
//!
//! Once the runtime is shutting down it stops: a pending or later accept returns the error of
//! `shutdown::shutting_down` (the kernel's queued connections are left to the listener's close).
//!
//! It returns the accepted descriptor and the peer's raw `socket2::SockAddr`, so it knows
//! nothing of IP or Unix addresses; wrapping the descriptor in a stream is the caller's
//! (`TcpListener::accept`, `UnixListener::accept`).
//!
//! # Two paths
//!
//! - **One-shot** (epoll, or `Builder::multishot_accept(false)`, or a kernel that refused the
//!   multishot form): each accept is one [`Accept`] operation, a [`Claim`] on the socket's
//!   holding area so that a dropped one loses no connection (`crate::driver::held`).
//! - **Multishot** (io_uring): the listener's [`Acceptor`] keeps one [`AcceptMulti`] armed,
//!   a [`StreamOp`] whose completions are connections, from the first accept until the
//!   listener is dropped. Connections the kernel accepts while no accept waits stay queued in
//!   the driver, in order, for the next one; a dropped accept future therefore takes nothing
//!   with it. A completion without `IORING_CQE_F_MORE` ends the stream (the kernel reports an
//!   error that way, `EMFILE` say, and stops): the next accept arms a new one, after the
//!   back-off for the resource errors. An `EINVAL` on the first completion of an arming, on a
//!   socket that does listen, means the kernel predates multishot accept (Linux 5.19): the
//!   core goes back to one-shot accepts for good (`Driver::refuse_multishot_accept`). When the
//!   listener lets the stream go (dropped, `into_std`, runtime shutdown), the stream's
//!   [`StandingClaim`] goes first, so the stream counts as an orphan in the holding area: the driver
//!   cancels it, and what it still accepts until its terminal completion is kept there, for a
//!   next accept if the listener lives on, closed with the socket if not.
//!
//! **Several acceptors.** A stream stores one waker: the last task to poll it. Every accept
//! waiting on the stream is also listed in [`Acceptor`]'s waiters; one that leaves the list
//! (it took a connection, or was dropped) wakes the oldest remaining one, which polls the
//! stream again and so stores its own waker there. So a connection never waits while an
//! acceptor sleeps, and a wake-up is passed on only when a connection was taken or an acceptor
//! left: two acceptors never keep waking each other.

use std::cell::{Cell, OnceCell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use socket2::{SockAddr, SockRef};

use crate::driver::{Claim, SharedFd, StandingClaim, StreamOp};
use crate::net::ops::{Accept, AcceptMulti, peer_of, unspecified_peer};
use crate::shutdown::or_shutdown;
use crate::{context, coop};

/// First pause after `accept` fails for lack of descriptors or memory; doubled on each
/// consecutive failure up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(1);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A connection the kernel accepted, with the peer's address as `accept` reported it (for one
/// a dropped accept took, as the holding area kept it; on the multishot path, as
/// `getpeername` reports it).
pub(crate) struct AcceptedFd {
    pub(crate) fd: OwnedFd,
    pub(crate) peer: SockAddr,
}

/// A listener's accepting state: the logging of resource failures and, on the multishot path,
/// the armed multishot accept and the accepts waiting on it.
#[derive(Default)]
pub(crate) struct Acceptor {
    /// Whether the current run of resource failures has been logged already (one warning per
    /// run, one note when it ends).
    starved: Cell<bool>,
    /// The multishot path's state, allocated by the first accept that takes that path: a
    /// listener on the one-shot path pays one pointer.
    multi: OnceCell<Box<Multi>>,
}

/// The multishot path's state.
#[derive(Default)]
struct Multi {
    /// The multishot accept, from the first accept until the listener lets it go or the
    /// kernel ends it. Borrowed only inside a poll, never across an await.
    armed: RefCell<Option<Armed>>,
    waiters: RefCell<Waiters>,
}

/// An armed multishot accept.
struct Armed {
    /// Declared first, so dropped first: see [`StandingClaim`].
    _owner: StandingClaim,
    stream: StreamOp<AcceptMulti>,
    /// Nothing came from this arming yet: an `EINVAL` now is the kernel refusing the form.
    fresh: bool,
}

impl Armed {
    fn new(listener: &SharedFd) -> Armed {
        Armed {
            _owner: StandingClaim::new(listener.clone()),
            stream: StreamOp::new(AcceptMulti::new(listener.clone())),
            fresh: true,
        }
    }
}

/// The accepts waiting on the multishot accept, oldest first, each under an id of its own.
#[derive(Default)]
struct Waiters {
    next_id: u64,
    list: Vec<(u64, Waker)>,
}

/// What one poll of the multishot accept brought.
enum MultiItem {
    Accepted(OwnedFd),
    Failed(io::Error),
    /// The kernel refused the multishot form: use one-shot accepts.
    Refused,
}

impl Acceptor {
    /// Lets the armed multishot accept go, if any. It is ended before this returns where the
    /// kernel cancels synchronously (Linux 6.0), so that the kernel no longer holds the
    /// listening socket (its port is free once the listener closes) and `into_std` can hand the
    /// socket on at once; otherwise the driver cancels it and it ends a pass of the core loop
    /// later. Either way what it accepted and nobody took is kept in the socket's holding area.
    /// Returns whether one was armed.
    pub(crate) fn disarm(&self) -> bool {
        let armed = self
            .multi
            .get()
            .and_then(|multi| multi.armed.borrow_mut().take());
        let Some(mut armed) = armed else {
            return false;
        };
        armed.stream.end_now();
        true
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.disarm();
    }
}

impl Multi {
    fn poll_multi(&self, listener: &SharedFd, cx: &mut Context<'_>) -> Poll<MultiItem> {
        let mut slot = self.armed.borrow_mut();
        loop {
            let armed = slot.get_or_insert_with(|| Armed::new(listener));
            let Some(item) = ready!(armed.stream.poll_next(cx)) else {
                // Ended (its terminal completion was taken by an earlier poll): re-arm.
                *slot = None;
                continue;
            };
            let fresh = std::mem::replace(&mut armed.fresh, false);
            if !io_uring::cqueue::more(item.flags) {
                // The terminal completion: collect the end, which frees the driver's slot, so
                // the data (and its count in the holding area) goes now; re-arm next time.
                let end = armed.stream.poll_next(cx);
                debug_assert!(
                    matches!(end, Poll::Ready(None)),
                    "a stream goes on after its end"
                );
                *slot = None;
            }
            return Poll::Ready(match item.result {
                Ok(fd) => MultiItem::Accepted(Accept::accepted(fd)),
                Err(err)
                    if fresh
                        && err.raw_os_error() == Some(libc::EINVAL)
                        && SockRef::from(listener).is_listener().unwrap_or(false) =>
                {
                    MultiItem::Refused
                }
                Err(err) => MultiItem::Failed(err),
            });
        }
    }

    /// Lists (or updates) waiter `id` with `waker`.
    fn wait(&self, id: &mut Option<u64>, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        let waiters = &mut *waiters;
        if let Some(id) = *id
            && let Some((_, listed)) = waiters.list.iter_mut().find(|(w, _)| *w == id)
        {
            if !listed.will_wake(waker) {
                *listed = waker.clone();
            }
            return;
        }
        let new = waiters.next_id;
        waiters.next_id += 1;
        waiters.list.push((new, waker.clone()));
        *id = Some(new);
    }

    /// Takes waiter `id` off the list, and wakes the oldest remaining one: it may be left
    /// with a connection queued and the stream holding nobody's waker.
    fn leave(&self, id: &mut Option<u64>) {
        let Some(id) = id.take() else {
            return;
        };
        let next = {
            let mut waiters = self.waiters.borrow_mut();
            waiters.list.retain(|(w, _)| *w != id);
            // It stays listed (with a waker that does nothing) until it polls again.
            waiters
                .list
                .first_mut()
                .map(|(_, waker)| std::mem::replace(waker, Waker::noop().clone()))
        };
        // Outside the borrow: a waker is foreign code.
        if let Some(next) = next {
            next.wake();
        }
    }
}

/// Future of one accept's wait on the multishot accept.
struct NextMulti<'a> {
    acceptor: &'a Multi,
    listener: &'a SharedFd,
    /// Listed among the acceptor's waiters under this id.
    id: Option<u64>,
}

impl Future for NextMulti<'_> {
    type Output = MultiItem;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<MultiItem> {
        let this = self.get_mut();
        // Connections queued in the driver come without a system call: spend the budget as
        // an operation would, so a flood of them still lets other tasks run.
        ready!(coop::poll_proceed(cx));
        match this.acceptor.poll_multi(this.listener, cx) {
            Poll::Pending => {
                this.acceptor.wait(&mut this.id, cx.waker());
                Poll::Pending
            }
            Poll::Ready(item) => {
                this.acceptor.leave(&mut this.id);
                Poll::Ready(item)
            }
        }
    }
}

impl Drop for NextMulti<'_> {
    fn drop(&mut self) {
        self.acceptor.leave(&mut self.id);
    }
}

/// Waits for the next connection on the listening socket `listener`.
///
/// `acceptor` is the listener's accepting state; `name` names the listener in log lines.
/// Cancel-safe: a connection a dropped accept took is queued on the socket (`driver::held`) or
/// in the multishot accept and returned by the next call. Once the runtime is shutting down,
/// fails with `shutdown::shutting_down` (at once, or as soon as a pending call sees the
/// request).
pub(crate) async fn accept_with_backoff(
    listener: &SharedFd,
    acceptor: &Acceptor,
    name: &dyn fmt::Display,
) -> io::Result<AcceptedFd> {
    // The inner loop is cancel-safe, so dropping it for the shutdown loses no connection.
    or_shutdown(accept_until_done(listener, acceptor, name)).await?
}

async fn accept_until_done(
    listener: &SharedFd,
    acceptor: &Acceptor,
    name: &dyn fmt::Display,
) -> io::Result<AcceptedFd> {
    let starved = &acceptor.starved;
    let mut backoff = MIN_ACCEPT_BACKOFF;
    let held = listener.held();
    loop {
        if !held.is_clear() {
            // A dropped accept (or a multishot accept the listener let go) left a
            // connection, or is still finishing: wait until it has, then serve what it took
            // before accepting anew.
            held.settled().await;
            if let Some(accepted) = held.take_accepted() {
                recovered(starved, name);
                return Ok(AcceptedFd {
                    fd: accepted.fd,
                    peer: accepted.peer,
                });
            }
        }
        let result = if context::with(|ctx| ctx.driver.multishot_accept()).unwrap_or(false) {
            let next = NextMulti {
                acceptor: acceptor.multi.get_or_init(Box::default),
                listener,
                id: None,
            };
            match next.await {
                MultiItem::Accepted(fd) => match peer_of(&fd) {
                    Ok(peer) => Ok(AcceptedFd { fd, peer }),
                    Err(_) => match unspecified_peer(&fd) {
                        // The peer reset the connection before `getpeername` (ENOTCONN): it
                        // is still served (what the peer sent before is readable), with an
                        // unspecified address of its family, since the kernel no longer
                        // tells the real one.
                        Some(peer) => Ok(AcceptedFd { fd, peer }),
                        // Not an IP socket: skipped, as an aborted connection is.
                        None => continue,
                    },
                },
                MultiItem::Failed(err) => Err(err),
                MultiItem::Refused => {
                    context::with(|ctx| ctx.driver.refuse_multishot_accept());
                    continue;
                }
            }
        } else {
            let completion = Claim::new(held, Accept::new(listener.clone())).await;
            completion.result.map(|fd| AcceptedFd {
                fd: Accept::accepted(fd),
                peer: completion.data.peer.to_sock_addr(),
            })
        };
        match result {
            Ok(accepted) => {
                recovered(starved, name);
                return Ok(accepted);
            }
            Err(err) => match err.raw_os_error() {
                // ECANCELED: the driver cancelled a multishot accept that held as many
                // connections as it may (`AcceptMulti::QUEUE_LIMIT`); the next one re-arms.
                Some(libc::ECONNABORTED | libc::EPROTO | libc::EINTR | libc::ECANCELED) => continue,
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
