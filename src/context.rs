//! The per-core context: what "the current core" means to code running on it.
//!
//! Every core thread builds one [`CoreContext`] — its executor, its I/O driver, its timers, the
//! running task's budget, its view of the other cores' mailboxes and its runtime's blocking pool —
//! and installs it in a thread-local for as long as the core runs. Free functions such as
//! [`spawn`](crate::spawn) or [`sleep`](crate::time::sleep) and every I/O operation find their
//! core through [`with`].

// This module owns that thread-local and nothing else; it must never hand a context to another
// thread.

use std::cell::Cell;
use std::ptr;
use std::sync::Arc;

use crate::blocking::BlockingPool;
use crate::coop::Budget;
use crate::core::CoreId;
use crate::driver::Driver;
use crate::executor::LocalExecutor;
use crate::mesh::Mesh;
use crate::net::ConnectionGauges;
use crate::time::Timers;

/// Everything one core owns. Lives on the core's thread, never shared with another.
pub(crate) struct CoreContext {
    pub(crate) core: CoreId,
    pub(crate) executor: LocalExecutor,
    pub(crate) driver: Driver,
    pub(crate) timers: Timers,
    /// The running task's budget (see `coop`).
    pub(crate) budget: Budget,
    /// The handles of every core of this runtime, this one included.
    pub(crate) mesh: Arc<Mesh>,
    /// Every core's count of open connections (for load-aware accepting), this one's included.
    pub(crate) connections: Arc<ConnectionGauges>,
    /// The runtime's blocking pool, shared by its cores.
    pub(crate) blocking: BlockingPool,
}

thread_local! {
    static CURRENT: Cell<*const CoreContext> = const { Cell::new(ptr::null()) };
}

/// Installs `ctx` as this thread's current core while `f` runs; the previous value (normally
/// none) is restored afterwards, also when `f` unwinds.
pub(crate) fn enter<R>(ctx: &CoreContext, f: impl FnOnce() -> R) -> R {
    struct Restore(*const CoreContext);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|current| current.set(self.0));
        }
    }
    let previous = CURRENT.with(|current| current.replace(ctx));
    let _restore = Restore(previous);
    f()
}

/// Runs `f` with the current core's context, or returns `None` outside a coreio core.
#[inline]
pub(crate) fn with<R>(f: impl FnOnce(&CoreContext) -> R) -> Option<R> {
    let ptr = CURRENT.try_with(|current| current.get()).ok()?;
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `enter` stores a pointer to a context that outlives the `enter` call, and clears
    // it (restores the previous value) before returning, so a non-null pointer read on this
    // thread always points to a live context. The context is only ever accessed through shared
    // references; its mutable parts use `Cell`/`RefCell`.
    Some(f(unsafe { &*ptr }))
}

/// Like [`with`], for callers that cannot work without a runtime.
///
/// # Panics
///
/// Outside a coreio core, with a message naming `what` was attempted.
#[inline]
#[track_caller]
pub(crate) fn expect<R>(what: &str, f: impl FnOnce(&CoreContext) -> R) -> R {
    match with(f) {
        Some(r) => r,
        None => panic!(
            "{what} must be called from inside a coreio runtime (Runtime::run or coreio::block_on)"
        ),
    }
}

/// An error for I/O attempted outside a runtime.
pub(crate) fn no_runtime() -> std::io::Error {
    std::io::Error::other("no coreio runtime on this thread: use Runtime::run or coreio::block_on")
}

// Compile-time contract (STYLE.md rule 7): what one core owns never leaves its thread. The
// driver holds `!Send` orphans, the executor the runnables of `!Send` futures. Should one of
// these types become `Send`, both impls below would apply to it, `some_item` would be
// ambiguous, and the build fails here. (The parts other cores share are checked `Send + Sync` beside their types:
// `CoreHandle`, `WakeTarget`, `Mesh`, `ConnectionGauges`.)
const _: () = {
    trait AmbiguousIfSend<A> {
        fn some_item() {}
    }
    impl<T: ?Sized> AmbiguousIfSend<()> for T {}
    impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}
    let _ = <CoreContext as AmbiguousIfSend<_>>::some_item;
    let _ = <Driver as AmbiguousIfSend<_>>::some_item;
    let _ = <LocalExecutor as AmbiguousIfSend<_>>::some_item;
};
