//! One core's responder: its UDP socket and the loop that turns queries into responses.
//!
//! Every core binds the same address with `SO_REUSEPORT`, so the kernel spreads queries across
//! the cores' sockets by the sender's address and port. On each core `--tasks` answer loops share
//! the socket; each receives into its own reusable 64 KiB buffer (room for any UDP datagram, so none is ever cut), answers with
//! [`answer::respond`], and sends the response it built, owned, with no copy. On a socket bound
//! to a wildcard address it asks for each datagram's destination (`IP_PKTINFO`) and answers
//! from it, so a client that asked 127.0.0.2 hears back from 127.0.0.2.
//!
//! This module owns the per-core root future ([`serve`]) and its counters; it must never block
//! the core or let one bad datagram stop the loop.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use coreio::net::UdpSocket;
use coreio::sync::Event;

use crate::answer::{self, Outcome};
use crate::ready::Ready;
use crate::zone::Zones;

/// Receive buffer capacity: the largest UDP payload there is, so no query is truncated.
const DATAGRAM_CAPACITY: usize = 65_535;

/// What one core answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// Queries answered with records.
    pub answered: u64,
    /// Queries for a name that exists, of a type it does not have.
    pub no_data: u64,
    /// Queries for names that do not exist (NXDOMAIN).
    pub nx_domain: u64,
    /// Malformed queries (FORMERR).
    pub form_err: u64,
    /// Other opcodes or classes (NOTIMP, REFUSED).
    pub rejected: u64,
    /// Datagrams with no reply: too short, or responses.
    pub dropped: u64,
    /// Receives or sends that failed (the loop goes on).
    pub io_errors: u64,
}

impl Served {
    fn count(&mut self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Answered => &mut self.answered,
            Outcome::NoData => &mut self.no_data,
            Outcome::NxDomain => &mut self.nx_domain,
            Outcome::FormErr => &mut self.form_err,
            Outcome::Rejected => &mut self.rejected,
            Outcome::Dropped => &mut self.dropped,
        };
        *counter += 1;
    }

    /// Datagrams received.
    pub fn received(&self) -> u64 {
        self.answered + self.no_data + self.nx_domain + self.form_err + self.rejected + self.dropped
    }
}

/// One core's root future: bind `addr`, answer until `stop` is set, return what was served.
/// Returning cancels the core's answer loop.
pub async fn serve(
    addr: SocketAddr,
    tasks: usize,
    zones: Arc<Zones>,
    stop: Event,
    ready: Arc<Ready>,
) -> Result<Served, String> {
    let socket = match bind(addr) {
        Ok(socket) => socket,
        Err(err) => {
            // A responder on some cores only is not wanted: stop the others too.
            stop.set();
            return Err(format!("cannot bind {addr}: {err}"));
        }
    };
    ready.core_bound();
    let served = Rc::new(Cell::new(Served::default()));
    let failure = Rc::new(Cell::new(None));
    let socket = Rc::new(socket);
    // Several answer loops share the socket: on io_uring each keeps a receive in flight, so
    // one entry into the kernel submits several replies and reaps several queries.
    let _answering: Vec<_> = (0..tasks.max(1))
        .map(|_| {
            coreio::spawn(answer_loop(
                Rc::clone(&socket),
                Arc::clone(&zones),
                Rc::clone(&served),
                Rc::clone(&failure),
                stop.clone(),
            ))
        })
        .collect();
    stop.wait().await;
    match failure.take() {
        Some(message) => Err(message),
        None => Ok(served.get()),
    }
}

fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::builder().reuse_port(true).bind(addr)?;
    if addr.ip().is_unspecified() {
        socket.set_recv_pktinfo(true)?;
    }
    Ok(socket)
}

async fn answer_loop(
    socket: Rc<UdpSocket>,
    zones: Arc<Zones>,
    served: Rc<Cell<Served>>,
    failure: Rc<Cell<Option<String>>>,
    stop: Event,
) {
    let wildcard = socket
        .local_addr()
        .is_ok_and(|addr| addr.ip().is_unspecified());
    let mut buf = Vec::with_capacity(DATAGRAM_CAPACITY);
    loop {
        let received = if wildcard {
            let (res, back) = socket.recv_msg(buf).await;
            buf = back;
            res.map(|meta| (meta.len(), meta.peer(), meta.packet_info()))
        } else {
            let (res, back) = socket.recv_from(buf).await;
            buf = back;
            res.map(|(len, peer)| (len, peer, None))
        };
        let (len, peer, source) = match received {
            Ok(received) => received,
            Err(err) if transient(&err) => {
                count(&served, |stats| stats.io_errors += 1);
                continue;
            }
            Err(err) => {
                failure.set(Some(format!("receiving: {err}")));
                stop.set();
                return;
            }
        };
        let (outcome, reply) = answer::respond(&zones, &buf[..len]);
        count(&served, |stats| stats.count(outcome));
        if let Some(reply) = reply {
            let (res, _) = if wildcard {
                socket.send_msg(reply, peer, source).await
            } else {
                socket.send_to(reply, peer).await
            };
            if res.is_err() {
                // A client that went away, a full send buffer: its loss, not the server's.
                count(&served, |stats| stats.io_errors += 1);
            }
        }
    }
}

/// Updates the core's counters, which all its answer loops share.
fn count(served: &Cell<Served>, update: impl FnOnce(&mut Served)) {
    let mut stats = served.get();
    update(&mut stats);
    served.set(stats);
}

/// Errors a receive can report for one datagram or one moment, after which the socket works.
fn transient(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ECONNREFUSED | libc::EINTR | libc::ENOBUFS | libc::ENOMEM | libc::EHOSTUNREACH)
    ) || err.kind() == io::ErrorKind::InvalidData
}
