//! [`Ready`]: "every core is serving", for the example servers' banners and their tests.
//!
//! Included by `examples/sharded_kv` and `examples/dns` (and their tests) with `#[path]`, as
//! `process.rs` is. It owns the count of bound cores and nothing of the servers themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the cores whose socket is bound; the last one calls `on_ready`, so that call means
/// "serving on every core".
pub struct Ready {
    bound: AtomicUsize,
    cores: usize,
    on_ready: Box<dyn Fn() + Send + Sync>,
}

impl Ready {
    /// Calls `on_ready` once `cores` cores are bound.
    pub fn new(cores: usize, on_ready: impl Fn() + Send + Sync + 'static) -> Arc<Ready> {
        Arc::new(Ready {
            bound: AtomicUsize::new(0),
            cores,
            on_ready: Box::new(on_ready),
        })
    }

    /// One more core is bound.
    pub fn core_bound(&self) {
        if self.bound.fetch_add(1, Ordering::SeqCst) + 1 == self.cores {
            (self.on_ready)();
        }
    }
}
