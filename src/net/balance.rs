//! Load-aware accepting: [`LoadBalance`] and [`TcpListener::serve`].
//!
//! `SO_REUSEPORT` spreads connections over the cores' listeners by a hash of the connection's
//! addresses, which is even only on average; a single listener (one core accepting for all) is
//! not even at all. [`TcpListener::serve`] accepts connections and runs a handler for each;
//! given a [`LoadBalance`], it checks every core's count of open connections at each accept,
//! and when its own core is above the average by more than the margin, it hands the new
//! connection to the core with the fewest (Seastar balances the same way).

// This module owns that decision and the hand-over. The counts are each core's live `TcpStream`s,
// read without synchronisation beyond relaxed atomics: a decision may act on a count a few
// connections stale, which balancing tolerates. A connection on its way to another core is counted
// there from the decision on, so a burst of accepts does not pile onto one core. This module must
// never block the accepting core on another one: the hand-over is a post to the target's mailbox,
// and the accept loop goes on at once.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use super::gauge::{ConnectionGauges, Counted};
use super::{TcpListener, TcpStream};
use crate::context;
use crate::mesh::{self, Mesh};

/// When a listener hands new connections to less loaded cores; see [`TcpListener::serve`].
///
/// A new connection moves when the accepting core's open connections exceed the average over
/// the running cores by more than `margin_percent` percent *and* by at least `min_excess`
/// connections (so that 3 against 2 does not shuffle connections around). It then goes to the
/// core with the fewest open connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadBalance {
    margin_percent: u32,
    min_excess: usize,
}

impl Default for LoadBalance {
    fn default() -> Self {
        LoadBalance::new()
    }
}

impl LoadBalance {
    /// A margin of 20% over the average and at least 2 connections.
    pub fn new() -> LoadBalance {
        LoadBalance {
            margin_percent: 20,
            min_excess: 2,
        }
    }

    /// How far above the average, in percent, a core may be before it hands connections away.
    pub fn margin_percent(mut self, percent: u32) -> LoadBalance {
        self.margin_percent = percent;
        self
    }

    /// How many connections above the average a core must be, at least, before it hands
    /// connections away.
    pub fn min_excess(mut self, connections: usize) -> LoadBalance {
        self.min_excess = connections;
        self
    }

    /// The core (index into `loads`) a new connection accepted on core `own` should move to,
    /// or `None` to keep it. `loads[i]` is `None` for a core that has stopped.
    pub(crate) fn choose(&self, own: usize, loads: &[Option<usize>]) -> Option<usize> {
        let own_load = loads.get(own).copied().flatten()?;
        let (count, total) = loads
            .iter()
            .flatten()
            .fold((0usize, 0usize), |(n, sum), &load| (n + 1, sum + load));
        // Compare own × 100 × count against total × (100 + margin): no division, no floats.
        let own_scaled = (own_load as u128) * 100 * count as u128;
        let limit = (total as u128) * (100 + u128::from(self.margin_percent));
        let average_floor = total / count;
        if own_scaled <= limit || own_load < average_floor + self.min_excess {
            return None;
        }
        let (target, &target_load) = loads
            .iter()
            .enumerate()
            .filter_map(|(index, load)| load.as_ref().map(|load| (index, load)))
            .min_by_key(|&(_, load)| *load)?;
        (target != own && target_load < own_load).then_some(target)
    }
}

impl TcpListener {
    /// Accepts connections until an accept fails for good, running `handler` for each as a
    /// task of its own: on this core, or, with a [`LoadBalance`], on a less loaded core when
    /// this one is above the average (the connection is handed over as in
    /// [`TcpStream::into_handoff`]).
    ///
    /// The handler is shared by every core, hence `Send + Sync`; the future it returns runs on
    /// the core that serves the connection and may be `!Send`. A panicking handler ends its own
    /// connection only. Transient accept failures are absorbed as in
    /// [`accept`](TcpListener::accept); any other accept error is returned, and so is the
    /// error of a graceful shutdown ([`shutdown::is_shutdown_error`](crate::shutdown::is_shutdown_error)):
    /// the connections being served go on until they finish or the runtime's grace ends.
    ///
    /// ```no_run
    /// use coreio::net::{LoadBalance, TcpListener};
    ///
    /// let rt = coreio::Runtime::new().unwrap();
    /// let first = rt.cores()[0];
    /// rt.run(|core| async move {
    ///     if core != first {
    ///         // The other cores serve what the first one hands them.
    ///         return std::future::pending::<std::io::Result<()>>().await;
    ///     }
    ///     let listener = TcpListener::bind("127.0.0.1:7000".parse().unwrap())?;
    ///     listener
    ///         .serve(Some(LoadBalance::new()), |stream, _peer| async move {
    ///             let (_res, _buf) = stream.write_all(b"hello\n".to_vec()).await;
    ///         })
    ///         .await
    /// });
    /// ```
    pub async fn serve<H, Fut>(&self, balance: Option<LoadBalance>, handler: H) -> io::Result<()>
    where
        H: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let handler = Arc::new(handler);
        let mut loads = Vec::new();
        loop {
            let (stream, peer) = self.accept().await?;
            let target = balance.and_then(|balance| {
                context::with(|ctx| {
                    let own = ctx.mesh.index_of(ctx.core)?;
                    loads.clear();
                    loads.extend((0..ctx.mesh.len()).map(|index| {
                        (!ctx.mesh.is_stopped(index)).then(|| ctx.connections.get(index).get())
                    }));
                    let target = balance.choose(own, &loads)?;
                    Some((Arc::clone(&ctx.mesh), Arc::clone(&ctx.connections), target))
                })
                .flatten()
            });
            match target {
                Some((mesh, gauges, target)) => {
                    hand_over(stream, peer, &mesh, gauges, target, &handler)
                }
                None => drop(crate::spawn(handler(stream, peer))),
            }
        }
    }
}

/// Moves a just-accepted connection to the core at `target` and runs `handler` for it there.
fn hand_over<H, Fut>(
    stream: TcpStream,
    peer: SocketAddr,
    mesh: &Mesh,
    gauges: Arc<ConnectionGauges>,
    target: usize,
    handler: &Arc<H>,
) where
    H: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let handoff = match stream.into_handoff() {
        Ok(handoff) => handoff,
        // A stream fresh from accept has no operation in flight; were it otherwise, serving
        // it here is always correct.
        Err(err) => return drop(crate::spawn(handler(err.into_inner(), peer))),
    };
    // Count it on the target from now on; the reservation ends once the target adopted it
    // (and counts it itself), or with the post if the target stopped meanwhile.
    let reservation = Counted::on(gauges, target);
    let handler = Arc::clone(handler);
    let core = mesh.core(target);
    // The outcome is not awaited: the accept loop must not wait for another core. If the
    // target stopped in the meantime the post is dropped, which closes the connection.
    drop(mesh::submit_to(core, move || {
        let adopted = handoff.adopt();
        drop(reservation);
        async move {
            match adopted {
                Ok(stream) => handler(stream, peer).await,
                Err(err) => log::warn!("coreio: could not adopt a connection from {peer}: {err}"),
            }
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::LoadBalance;

    #[test]
    fn an_even_spread_stays_put() {
        let balance = LoadBalance::new();
        assert_eq!(balance.choose(0, &[Some(10), Some(10)]), None);
        assert_eq!(balance.choose(0, &[Some(0), Some(0)]), None);
    }

    #[test]
    fn a_core_above_the_margin_hands_to_the_least_loaded() {
        let balance = LoadBalance::new();
        assert_eq!(balance.choose(0, &[Some(20), Some(5), Some(3)]), Some(2));
    }

    #[test]
    fn small_excesses_are_tolerated() {
        // 3 against 1: 50% above the average of 2, but only 1 connection above it.
        let balance = LoadBalance::new();
        assert_eq!(balance.choose(0, &[Some(3), Some(1)]), None);
        assert_eq!(
            balance.min_excess(1).choose(0, &[Some(3), Some(1)]),
            Some(1)
        );
    }

    #[test]
    fn the_margin_is_respected() {
        // Average 11: 12 is 9% above it.
        let strict = LoadBalance::new().margin_percent(5).min_excess(0);
        let lenient = LoadBalance::new().margin_percent(20).min_excess(0);
        assert_eq!(strict.choose(0, &[Some(12), Some(10)]), Some(1));
        assert_eq!(lenient.choose(0, &[Some(12), Some(10)]), None);
    }

    #[test]
    fn stopped_cores_are_never_chosen() {
        let balance = LoadBalance::new();
        assert_eq!(balance.choose(0, &[Some(10), None]), None);
        assert_eq!(balance.choose(0, &[Some(10), None, Some(0)]), Some(2));
        assert_eq!(balance.choose(1, &[Some(10), None]), None);
    }
}
