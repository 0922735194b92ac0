//! Graceful shutdown of a whole runtime: [`Shutdown`], [`requested`], [`ShutdownReport`].
//!
//! A [`Shutdown`] is a `Send + Sync + Clone` handle to one runtime's shutdown, taken from the
//! runtime before it runs ([`Runtime::shutdown_handle`](crate::Runtime::shutdown_handle)) or
//! from inside a task ([`handle`]). [`trigger`](Shutdown::trigger) it from any thread or task:
//!
//! 1. every listener of the runtime stops accepting: a pending or later `accept` (and so
//!    [`TcpListener::serve`](crate::net::TcpListener::serve)) returns an error for which
//!    [`is_shutdown_error`] is true (kind [`Other`](std::io::ErrorKind::Other), "the runtime is
//!    shutting down"); connections the kernel queued are never accepted and are reset when
//!    their listener is dropped;
//! 2. every task awaiting [`requested`] (or [`Shutdown::requested`]) is woken;
//! 3. each core keeps running until every task on it (its root included) has finished, or the
//!    grace period ([`Builder::shutdown_grace`](crate::Builder::shutdown_grace), default
//!    [`DEFAULT_SHUTDOWN_GRACE`]) has passed since the trigger;
//! 4. then the core cancels the tasks still running, waits for the kernel to release every
//!    in-flight operation's buffer, and stops; `run` returns once every core has.
//!
//! A second `trigger` (the second Ctrl-C) skips what is left of the wait: every core cancels
//! its remaining tasks at once. [`Shutdown::report`] then tells how many tasks finished during
//! the drain and how many were cancelled.
//!
//! **Roots.** Without a shutdown, a root future that returns ends its core at once and cancels
//! the core's other tasks. Once a shutdown is requested, a root that returns no longer does:
//! its core waits for its other tasks as above, so a root typically awaits [`requested`] (or
//! sees its accept loop end) and returns. A root still running when the wait ends is cancelled
//! like any task; its core's output is then a [`CoreError::Io`](crate::CoreError::Io) of kind
//! [`TimedOut`](std::io::ErrorKind::TimedOut) (or [`Interrupted`](std::io::ErrorKind::Interrupted)
//! for a forced shutdown). Roots are not counted in the report: their outputs are `run`'s.
//!
//! ```
//! use std::time::Duration;
//!
//! let rt = coreio::Builder::new()
//!     .cores(1)
//!     .shutdown_grace(Duration::from_secs(5))
//!     .build()
//!     .unwrap();
//! let shutdown = rt.shutdown_handle();
//! let trigger = shutdown.clone();
//! std::thread::spawn(move || trigger.trigger());
//! let outputs = rt.run(|_core| async {
//!     // A connection handler that finishes its request, then leaves.
//!     coreio::spawn(async {
//!         coreio::shutdown::requested().await;
//!         coreio::time::sleep(Duration::from_millis(10)).await;
//!     });
//!     coreio::shutdown::requested().await;
//! });
//! assert!(outputs[0].is_ok());
//! let report = shutdown.report().unwrap();
//! assert_eq!((report.finished, report.cancelled), (1, 0));
//! ```
//!
//! Once requested, a shutdown stays requested: a later `run` of the same runtime starts
//! shutting down at once. A handle used after its runtime ended does nothing harmful.

// Maintainer notes. This module owns the shutdown state shared by a runtime's cores (the
// phase, the deadline, the registered meshes to wake, the report) and each core's list of
// local waiters. It must never run or cancel a task itself: the trigger only flips the phase
// and posts an empty job to every core so that a parked core wakes up; each core's loop
// (runtime.rs) sees the phase, wakes its local waiters, waits for its tasks and tears itself
// down. It must never block a core and never hold its lock while waking or posting.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
// Only a unique id: no protocol rests on it, and loom cannot model a `static`.
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::context;
use crate::loom::{AtomicUsize, Mutex, MutexGuard, Ordering};
use crate::mesh::Mesh;
use crate::sync::{Event, EventWait};

/// Default grace period: how long a triggered shutdown waits for tasks before it cancels them.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// No shutdown requested.
const RUNNING: usize = 0;
/// Requested: cores wait for their tasks until the deadline.
const DRAINING: usize = 1;
/// Forced (a second trigger): cores cancel their tasks now.
const FORCED: usize = 2;

/// A handle to one runtime's shutdown; see the [module docs](self).
///
/// `Send + Sync + Clone`: clones share the same shutdown.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    /// `RUNNING`, `DRAINING` or `FORCED`; it only ever grows.
    phase: AtomicUsize,
    grace: Duration,
    /// Set with the first trigger: wakes waiters that are not tasks of this runtime.
    requested: Event,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When the first trigger came, and the deadline it set.
    triggered_at: Option<Instant>,
    deadline: Option<Instant>,
    /// The meshes of the runs in progress: the cores a trigger must wake.
    meshes: Vec<Arc<Mesh>>,
    report: Option<ShutdownReport>,
}

/// What a shutdown did, from [`Shutdown::report`]: counts of the tasks spawned on the
/// runtime's cores (roots excluded), summed over every core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Tasks that finished (returned or panicked) after their core saw the request.
    pub finished: usize,
    /// Tasks still unfinished when their core stopped, cancelled by it.
    pub cancelled: usize,
    /// Whether a core's grace period ran out with tasks still running.
    pub deadline_passed: bool,
    /// Whether the wait was cut short by a second trigger or [`Shutdown::trigger_now`].
    pub forced: bool,
    /// From the first trigger to the last core's stop.
    pub elapsed: Duration,
}

/// One core's counts, summed by the runtime into a [`ShutdownReport`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CoreCounts {
    pub(crate) finished: usize,
    pub(crate) cancelled: usize,
    pub(crate) deadline_passed: bool,
}

impl Shutdown {
    /// A fresh, untriggered shutdown whose trigger waits `grace` for tasks.
    pub(crate) fn new(grace: Duration) -> Shutdown {
        Shutdown {
            inner: Arc::new(Inner {
                phase: AtomicUsize::new(RUNNING),
                grace,
                requested: Event::new(),
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Requests the shutdown: the first call starts the graceful drain (listeners stop, tasks
    /// are told, cores wait up to the grace period); a second call skips what is left of the
    /// wait, as [`trigger_now`](Shutdown::trigger_now) does. Later calls do nothing. Callable
    /// from any thread or task, before, during or after the run.
    pub fn trigger(&self) {
        // One compare-exchange, so that of two triggers racing exactly one is the first.
        let phase = &self.inner.phase;
        match phase.compare_exchange(RUNNING, DRAINING, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => self.announce(RUNNING),
            Err(_) => self.advance(FORCED),
        }
    }

    /// Requests the shutdown without the wait: every core cancels its tasks at once.
    pub fn trigger_now(&self) {
        self.advance(FORCED);
    }

    fn advance(&self, to: usize) {
        let phase = &self.inner.phase;
        let mut from = phase.load(Ordering::SeqCst);
        loop {
            if from >= to {
                return;
            }
            match phase.compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => from = now,
            }
        }
        self.announce(from);
    }

    /// The phase has just grown from `from`: set the deadline on the first step, tell the
    /// waiters outside the runtime, and wake every core.
    fn announce(&self, from: usize) {
        let meshes = {
            let mut state = self.lock();
            if from == RUNNING {
                let now = Instant::now();
                state.triggered_at = Some(now);
                state.deadline = Some(now + self.inner.grace);
            }
            state.meshes.clone()
        };
        self.inner.requested.set();
        // Wake every core, parked or not: each sees the phase at the top of its next pass. A
        // core that stopped refuses the post, which is fine.
        for mesh in meshes {
            for index in 0..mesh.len() {
                drop(mesh.handle(index).post(Box::new(|| {})));
            }
        }
    }

    /// Whether the shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        self.inner.phase.load(Ordering::SeqCst) != RUNNING
    }

    /// Whether the wait was skipped (a second trigger, or [`trigger_now`](Shutdown::trigger_now)).
    pub fn is_forced(&self) -> bool {
        self.inner.phase.load(Ordering::SeqCst) == FORCED
    }

    /// The grace period a trigger gives the tasks.
    pub fn grace(&self) -> Duration {
        self.inner.grace
    }

    /// Waits until the shutdown is requested (at once if it is). Any number of tasks, on any
    /// core, and threads outside the runtime may wait; a task of this runtime waits on its
    /// core's own list, without a lock.
    pub fn requested(&self) -> ShutdownRequested {
        let local =
            context::with(|ctx| Arc::ptr_eq(&ctx.executor.shutdown.handle.inner, &self.inner))
                .unwrap_or(false);
        ShutdownRequested {
            state: if local {
                Waiting::Local(LocalRequested::default())
            } else {
                Waiting::Remote(self.inner.requested.wait())
            },
            shutdown: self.clone(),
        }
    }

    /// What the last run that ended after a trigger did; `None` before one has.
    pub fn report(&self) -> Option<ShutdownReport> {
        self.lock().report
    }

    /// Triggers this shutdown on every Ctrl-C (`SIGINT`): the first starts the graceful
    /// drain, the second skips the wait. Installs the handler now (an error if it cannot be:
    /// see [`signal`](crate::signal)) and starts a thread, `coreio-ctrl-c`, that ends after
    /// the second Ctrl-C. From the first call on, Ctrl-C no longer terminates the process.
    ///
    /// A thread rather than a task: a task waiting for the next Ctrl-C would never finish, so
    /// every drain would last the whole grace period.
    pub fn trigger_on_ctrl_c(&self) -> io::Result<()> {
        let mut interrupts = crate::signal::signal(crate::signal::SignalKind::interrupt())?;
        let shutdown = self.clone();
        std::thread::Builder::new()
            .name("coreio-ctrl-c".into())
            .spawn(move || {
                while !shutdown.is_forced() {
                    block_on_thread(interrupts.recv());
                    shutdown.trigger();
                }
            })?;
        Ok(())
    }

    /// The deadline the first trigger set.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.lock().deadline
    }

    /// A run starts: its cores are woken by later triggers.
    pub(crate) fn register(&self, mesh: &Arc<Mesh>) {
        self.lock().meshes.push(Arc::clone(mesh));
    }

    /// A run ended, every core joined: forget its mesh and, when the shutdown was requested,
    /// record what the cores did.
    pub(crate) fn finish_run(&self, mesh: &Arc<Mesh>, counts: &[CoreCounts]) {
        let forced = self.is_forced();
        let requested = self.is_requested();
        let mut state = self.lock();
        state.meshes.retain(|m| !Arc::ptr_eq(m, mesh));
        if requested {
            state.report = Some(ShutdownReport {
                finished: counts.iter().map(|c| c.finished).sum(),
                cancelled: counts.iter().map(|c| c.cancelled).sum(),
                deadline_passed: counts.iter().any(|c| c.deadline_passed),
                forced,
                elapsed: state.triggered_at.map_or(Duration::ZERO, |at| at.elapsed()),
            });
        }
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("requested", &self.is_requested())
            .field("forced", &self.is_forced())
            .field("grace", &self.inner.grace)
            .finish()
    }
}

// Compile-time contract (STYLE.md rule 7): the handle goes to any thread.
const _: () = {
    fn send_sync<T: Send + Sync>() {}
    let _ = send_sync::<Shutdown>;
};

/// Runs `future` on the calling (non-runtime) thread, parking between polls.
fn block_on_thread<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
            return output;
        }
        std::thread::park();
    }
}

/// The shutdown of the runtime the calling task runs on, or `None` outside a runtime.
pub fn handle() -> Option<Shutdown> {
    context::with(|ctx| ctx.executor.shutdown.handle.clone())
}

/// Waits until the shutdown of the runtime the calling task runs on is requested.
///
/// Cheap: a task waits in its core's own list (no lock; one reference-count increment for
/// the handle it holds), and any number of tasks may wait.
///
/// # Panics
///
/// Outside a coreio runtime.
#[track_caller]
pub fn requested() -> ShutdownRequested {
    context::expect("coreio::shutdown::requested", |ctx| {
        ctx.executor.shutdown.handle.clone()
    })
    .requested()
}

/// Whether the shutdown of the runtime the calling task runs on has been requested (false
/// outside a runtime).
pub fn is_requested() -> bool {
    context::with(|ctx| ctx.executor.shutdown.handle.is_requested()).unwrap_or(false)
}

/// Whether `error` is the one a listener returns once the runtime is shutting down.
pub fn is_shutdown_error(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<ShuttingDown>())
}

/// The inner error of [`shutting_down`].
#[derive(Debug)]
struct ShuttingDown;

impl fmt::Display for ShuttingDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the runtime is shutting down: listeners no longer accept connections")
    }
}

impl std::error::Error for ShuttingDown {}

/// The error an accept returns once the runtime is shutting down.
pub(crate) fn shutting_down() -> io::Error {
    io::Error::other(ShuttingDown)
}

/// Future returned by [`requested`] and [`Shutdown::requested`].
#[must_use = "futures do nothing unless awaited"]
pub struct ShutdownRequested {
    shutdown: Shutdown,
    state: Waiting,
}

enum Waiting {
    /// A task of the runtime: its core's local list.
    Local(LocalRequested),
    /// Anyone else: the shared event.
    Remote(EventWait),
}

impl Future for ShutdownRequested {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.shutdown.is_requested() {
            return Poll::Ready(());
        }
        match &mut this.state {
            Waiting::Remote(wait) => Pin::new(wait).poll(cx),
            Waiting::Local(local) => match local.poll_here(cx) {
                Some(polled) => polled,
                // Outside the runtime, or moved to another core or thread: wait on the event
                // (a waker left in the first core's list only costs a spurious wake).
                None => {
                    let mut wait = this.shutdown.inner.requested.wait();
                    let polled = Pin::new(&mut wait).poll(cx);
                    this.state = Waiting::Remote(wait);
                    polled
                }
            },
        }
    }
}

impl fmt::Debug for ShutdownRequested {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownRequested")
            .field("requested", &self.shutdown.is_requested())
            .finish()
    }
}

/// Waits, on the current core, for its runtime's shutdown, through the core's local list: no
/// lock and no reference count touched, for the accept path. Pending forever outside a runtime.
///
/// Its key is only meaningful in the slab of the core it registered on (`core`, a
/// [`CoreShutdown::id`]): polled or dropped anywhere else (a `ShutdownRequested` sent to another
/// core or thread), it never touches that core's slab.
#[derive(Default)]
pub(crate) struct LocalRequested {
    /// The slab key and the id of the core whose slab holds it.
    key: Option<(usize, u64)>,
}

impl LocalRequested {
    /// Polls on the current core; `None` outside a runtime, or on a core other than the one
    /// it registered on.
    fn poll_here(&mut self, cx: &mut Context<'_>) -> Option<Poll<()>> {
        context::with(|ctx| {
            let local = &ctx.executor.shutdown;
            if self.key.is_some_and(|(_, core)| core != local.id) {
                return None;
            }
            if local.observed.get() || local.handle.is_requested() {
                return Some(Poll::Ready(()));
            }
            let mut waiters = local.waiters.borrow_mut();
            let registered = self
                .key
                .and_then(|(key, _)| waiters.get_mut(key).map(|w| (key, w)));
            let key = match registered {
                Some((key, waker)) => {
                    waker.clone_from(cx.waker());
                    key
                }
                None => waiters.insert(cx.waker().clone()),
            };
            self.key = Some((key, local.id));
            Some(Poll::Pending)
        })
        .flatten()
    }
}

impl Future for LocalRequested {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_here(cx).unwrap_or(Poll::Pending)
    }
}

impl Drop for LocalRequested {
    fn drop(&mut self) {
        if let Some((key, core)) = self.key {
            // Once the core observed the request its list was emptied and stays empty, so a
            // stale key removes nothing.
            context::with(|ctx| {
                let local = &ctx.executor.shutdown;
                if local.id == core {
                    let removed = local.waiters.borrow_mut().try_remove(key);
                    drop(removed);
                }
            });
        }
    }
}

/// Runs `future` until it completes or the current core's runtime is shutting down, whichever
/// comes first (the shutdown wins a tie): the error is then [`shutting_down`].
pub(crate) async fn or_shutdown<F: Future>(future: F) -> io::Result<F::Output> {
    let mut requested = std::pin::pin!(LocalRequested::default());
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        if requested.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(shutting_down()));
        }
        future.as_mut().poll(cx).map(Ok)
    })
    .await
}

/// One core's side of its runtime's shutdown: the handle and the tasks waiting on this core.
/// Held by the core's executor; `!Send` like it.
pub(crate) struct CoreShutdown {
    pub(crate) handle: Shutdown,
    /// Unique among every core of every runtime of the process, so a waiter's key is only
    /// ever used in the slab it came from.
    id: u64,
    /// Whether this core has seen the request (and woken its waiters).
    observed: Cell<bool>,
    waiters: RefCell<Slab<Waker>>,
}

impl CoreShutdown {
    pub(crate) fn new(handle: Shutdown) -> CoreShutdown {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        use std::sync::atomic::Ordering;
        CoreShutdown {
            handle,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            observed: Cell::new(false),
            waiters: RefCell::new(Slab::new()),
        }
    }

    /// The core has seen the request: wakes every task of this core waiting for it.
    pub(crate) fn observe(&self) {
        if self.observed.replace(true) {
            return;
        }
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, waker) in waiters {
            waker.wake();
        }
    }
}
