//! Each core's count of open connections, for load-aware accepting (`balance.rs`).
//!
//! Every [`TcpStream`](super::TcpStream) holds a [`Counted`] for its core from the moment it
//! exists to its drop, and a connection on its way to another core is counted there by a
//! reservation ([`Counted::on`]) until the target adopts it. The table ([`ConnectionGauges`],
//! one gauge per core, in the runtime's core order) is built by the runtime beside the mesh and
//! shared by every core's context; the accepting core reads the others' gauges to pick where a
//! new connection goes.

// This module owns the gauges and nothing else. The counts are relaxed atomics, exact only when
// nothing moves: a reader may see a count a few connections stale, which balancing tolerates. They
// must never be used to synchronise anything else.

use std::sync::Arc;

use crate::context;
use crate::loom::{AtomicUsize, Ordering};

/// One core's count of open connections, which other cores read. Aligned to its own cache
/// lines, so that a core counting its connections does not slow down a neighbour counting its
/// own.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct ConnectionGauge(AtomicUsize);

impl ConnectionGauge {
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn sub(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The gauges of every core of one runtime, indexed like the mesh's cores.
pub(crate) struct ConnectionGauges(Box<[ConnectionGauge]>);

impl ConnectionGauges {
    /// Gauges at zero for `cores` cores.
    pub(crate) fn new(cores: usize) -> Arc<ConnectionGauges> {
        Arc::new(ConnectionGauges(
            (0..cores).map(|_| ConnectionGauge::default()).collect(),
        ))
    }

    /// The gauge of the core at `index`.
    pub(crate) fn get(&self, index: usize) -> &ConnectionGauge {
        &self.0[index]
    }
}

/// Counts one open connection on a core for as long as it lives.
pub(crate) struct Counted {
    gauges: Arc<ConnectionGauges>,
    index: usize,
}

impl Counted {
    /// Counts a connection on the current core; `None` outside a runtime.
    pub(crate) fn here() -> Option<Counted> {
        context::with(|ctx| {
            let index = ctx.mesh.index_of(ctx.core)?;
            Some(Counted::on(Arc::clone(&ctx.connections), index))
        })
        .flatten()
    }

    /// Counts a connection on the core at `index` (a reservation for one on its way there).
    pub(crate) fn on(gauges: Arc<ConnectionGauges>, index: usize) -> Counted {
        gauges.get(index).add();
        Counted { gauges, index }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.gauges.get(self.index).sub();
    }
}

// Compile-time contract (STYLE.md rule 7): every core reads every core's gauge.
const _: () = {
    fn send_and_sync<T: Send + Sync>() {}
    let _ = send_and_sync::<ConnectionGauges>;
};
