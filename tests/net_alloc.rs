//! Steady-state I/O allocates nothing: after a warm-up, 1000 `write_all` + `read_exact` round
//! trips that reuse their buffers make no heap allocation on the core thread.
//!
//! This binary installs a counting `#[global_allocator]`, hence its own file. The count is
//! per thread (a thread-local switch), so the harness's other threads do not disturb it.
//! Set `COREIO_ALLOC_TRACE=1` to print a backtrace of each allocation in the window.

#[macro_use]
mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use coreio::{Backend, Builder};

struct CountingAlloc;

thread_local! {
    /// Whether allocations on this thread are being counted.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations counted on this thread.
    static COUNT: Cell<usize> = const { Cell::new(0) };
    /// Set while the allocator itself captures a backtrace (which allocates).
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

static TRACE: AtomicBool = AtomicBool::new(false);

impl CountingAlloc {
    fn record(layout: Layout) {
        let counting = COUNTING.try_with(Cell::get).unwrap_or(false);
        let tracing = TRACING.try_with(Cell::get).unwrap_or(true);
        if !counting || tracing {
            return;
        }
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        if TRACE.load(Ordering::Relaxed) {
            TRACING.with(|t| t.set(true));
            let bt = std::backtrace::Backtrace::force_capture();
            eprintln!("allocation of {} bytes in the window:\n{bt}", layout.size());
            TRACING.with(|t| t.set(false));
        }
    }
}

// SAFETY: every call is forwarded to `System`, which upholds the `GlobalAlloc` contract; the
// bookkeeping touches only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::record(layout);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::record(layout);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::record(layout);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MSG: usize = 64;
const WARM_UP: usize = 100;
const ROUND_TRIPS: usize = 1000;

/// Allocations on the core thread during `ROUND_TRIPS` round trips after a warm-up.
fn steady_state_allocations(backend: Backend) -> usize {
    Builder::new()
        .backend(backend)
        .block_on(async move {
            util::assert_backend(backend);
            let (client, server) = util::pair().await;
            let mut request = util::pattern(0, 0, MSG);
            let mut echo = Vec::with_capacity(MSG);
            let round_trip = async |request: Vec<u8>, echo: Vec<u8>| {
                let (res, request) = client.write_all(request).await;
                res.unwrap();
                let (res, echo) = server.read_exact(echo).await;
                res.unwrap();
                let (res, echo) = server.write_all(echo).await;
                res.unwrap();
                let (res, request) = client.read_exact(request).await;
                res.unwrap();
                (request, echo)
            };
            for _ in 0..WARM_UP {
                (request, echo) = round_trip(request, echo).await;
            }
            COUNT.with(|c| c.set(0));
            COUNTING.with(|c| c.set(true));
            for _ in 0..ROUND_TRIPS {
                (request, echo) = round_trip(request, echo).await;
            }
            COUNTING.with(|c| c.set(false));
            // The data went around intact.
            util::check_pattern(0, 0, 0, &request);
            assert_eq!(echo, request);
            COUNT.with(Cell::get)
        })
        .unwrap()
}

#[test]
fn steady_state_round_trips_do_not_allocate() {
    TRACE.store(
        std::env::var_os("COREIO_ALLOC_TRACE").is_some(),
        Ordering::Relaxed,
    );
    // The counter works: an allocation in the window is seen.
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    let probe = std::hint::black_box(Vec::<u8>::with_capacity(10));
    COUNTING.with(|c| c.set(false));
    drop(probe);
    assert_eq!(
        COUNT.with(Cell::get),
        1,
        "the counting allocator does not count"
    );

    let mut failures = Vec::new();
    for backend in [Backend::IoUring, Backend::Epoll] {
        let allocations = steady_state_allocations(backend);
        println!("{backend}: {allocations} allocations in {ROUND_TRIPS} round trips");
        if allocations != 0 {
            failures.push(format!("{backend}: {allocations}"));
        }
    }
    assert!(
        failures.is_empty(),
        "allocations in {ROUND_TRIPS} steady-state round trips: {failures:?} \
         (rerun with COREIO_ALLOC_TRACE=1 to see where)"
    );
}
