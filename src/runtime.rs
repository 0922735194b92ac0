//! The runtime: one pinned thread per core, each running its own executor, driver and timers.
//!
//! [`Runtime::run`] starts one thread per selected CPU, pins it, builds that core's
//! [`CoreContext`] and runs the user's root future on it; the core loop below alternates
//! between polling ready tasks and parking in the I/O driver. [`block_on`](crate::block_on)
//! runs the same loop on the calling thread (`block_on_here`), for tests and small tools.

// This module owns the resolved per-core settings (`CoreConfig`), thread start-up, the core loop
// and the orderly teardown of a core (cancel every task, then wait for the kernel to release every
// buffer, then free the driver), and it stops the runtime's blocking pool once every core has
// stopped. It must never share a core's context with another thread, and never depend on the
// builder: the builder makes a `Runtime` from a `CoreConfig`, not the other way round.

use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::blocking::{BlockingConfig, BlockingPool};
use crate::context::{self, CoreContext};
use crate::coop::Budget;
use crate::core::{CoreHandle, CoreId};
use crate::driver::uring::{Publisher, SqPollShare};
use crate::driver::{Backend, Driver, DriverConfig, ResolvedBackend};
use crate::executor::{JoinError, LocalExecutor};
use crate::mesh::Mesh;
use crate::net::ConnectionGauges;
use crate::panic::{self, Payload};
use crate::shutdown::{CoreCounts, Shutdown};
use crate::sys;
use crate::time::Timers;

/// Why a core produced no output.
pub enum CoreError {
    /// The core's root future panicked, or a panic unwound out of the core's loop: a waker the
    /// driver or the timers woke, a buffer's `Drop` run when the driver released it, a mailbox
    /// job's `Drop` run when the stopping core discarded it. The core shut its driver down
    /// first (nothing the kernel still held was freed); the other cores were not affected.
    Panicked {
        /// The core.
        core: CoreId,
        /// What `panic!` was given.
        payload: Payload,
    },
    /// The core could not start (pinning, driver set-up) or its driver failed.
    Io {
        /// The core.
        core: CoreId,
        /// The cause.
        error: io::Error,
    },
}

impl CoreError {
    /// The core that failed.
    pub fn core(&self) -> CoreId {
        match self {
            CoreError::Panicked { core, .. } | CoreError::Io { core, .. } => *core,
        }
    }

    /// The panic message, when the root future panicked with a string.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            CoreError::Panicked { payload, .. } => panic::message(payload),
            CoreError::Io { .. } => None,
        }
    }
}

impl fmt::Debug for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::Panicked { core, .. } => match self.panic_message() {
                Some(msg) => write!(f, "{core}: root future panicked: {msg}"),
                None => write!(f, "{core}: root future panicked"),
            },
            CoreError::Io { core, error } => write!(f, "{core}: {error}"),
        }
    }
}

impl std::error::Error for CoreError {}

/// Per-core settings, resolved and validated by the [`Builder`](crate::Builder): what every
/// core of a runtime runs with.
#[derive(Clone, Debug)]
pub(crate) struct CoreConfig {
    pub(crate) driver: DriverConfig,
    pub(crate) event_interval: u32,
    pub(crate) remote_queue_interval: u32,
    pub(crate) spin_before_park: Duration,
    pub(crate) thread_name: String,
    /// How long a triggered shutdown waits for tasks (`Builder::shutdown_grace`).
    pub(crate) shutdown_grace: Duration,
    /// The runtime's blocking pool (one for all its cores).
    pub(crate) blocking: BlockingConfig,
}

/// A configured set of cores; see [`Builder`](crate::Builder).
#[derive(Debug)]
pub struct Runtime {
    pub(crate) cores: Vec<CoreId>,
    pub(crate) config: CoreConfig,
    pub(crate) shutdown: Shutdown,
}

impl Runtime {
    /// The I/O backend every core uses.
    pub fn backend(&self) -> Backend {
        self.config.driver.backend.into()
    }

    /// The cores `run` starts, in order.
    pub fn cores(&self) -> &[CoreId] {
        &self.cores
    }

    /// The handle that shuts this runtime down gracefully, from any thread or task: see
    /// [`shutdown`](crate::shutdown). Take it before [`run`](Runtime::run) (which blocks) and
    /// hand it to a thread, a signal handler thread ([`Shutdown::trigger_on_ctrl_c`]) or a task.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Runs `root(core)` on every core, each on its own pinned thread, and waits for all.
    ///
    /// Returns each core's output in the order of [`cores`](Runtime::cores). A core whose root
    /// future panics, or that cannot start, gives a [`CoreError`]; the others are unaffected.
    /// When a root future finishes, the tasks it spawned on that core are cancelled, unless a
    /// [shutdown](Runtime::shutdown_handle) was requested: then the core first waits for them,
    /// up to the grace period. To give each core a value of its own, use
    /// [`run_each`](Runtime::run_each).
    ///
    /// ```
    /// let rt = coreio::Builder::new().cores(1).build().unwrap();
    /// let outputs = rt.run(|core| async move { core.0 * 10 });
    /// assert_eq!(outputs.len(), 1);
    /// assert!(outputs[0].is_ok());
    /// ```
    pub fn run<F, Fut, T>(&self, root: F) -> Vec<Result<T, CoreError>>
    where
        F: Fn(CoreId) -> Fut + Sync,
        Fut: Future<Output = T> + 'static,
        T: Send,
    {
        let root = &root;
        self.run_each(self.cores.iter().map(|_| move |core| root(core)))
    }

    /// Runs one root per core: the `i`-th of `roots` on the `i`-th of [`cores`](Runtime::cores)
    /// (a [`CoreId`] is a CPU id, not an index: `enumerate` the roots for one). Each root is a
    /// `FnOnce` moved to its core's thread and called there with the core's id, so it can own
    /// what is that core's alone (a channel's receiver, a shard, a listener's duplicate)
    /// without a `Mutex<Option<_>>`, and the future it makes may be `!Send`. Otherwise as
    /// [`run`](Runtime::run).
    ///
    /// Exactly one root per core: with more or fewer, nothing runs and every output is an
    /// `InvalidInput` error saying so.
    ///
    /// ```
    /// let rt = coreio::Builder::new().cores(1).build().unwrap();
    /// let (tx, rx) = coreio::mesh::channel::<u32>(8);
    /// let mut receivers = vec![rx];
    /// let roots = rt.cores().iter().enumerate().map(|(index, _)| {
    ///     let rx = receivers.pop();
    ///     let tx = tx.clone();
    ///     move |_core: coreio::CoreId| async move {
    ///         tx.send(index as u32 + 1).await.unwrap();
    ///         let mut rx = rx.unwrap();
    ///         rx.recv().await.unwrap()
    ///     }
    /// });
    /// let outputs = rt.run_each(roots);
    /// assert_eq!(outputs[0].as_ref().unwrap(), &1);
    /// ```
    pub fn run_each<I, R, Fut, T>(&self, roots: I) -> Vec<Result<T, CoreError>>
    where
        I: IntoIterator<Item = R>,
        R: FnOnce(CoreId) -> Fut + Send,
        Fut: Future<Output = T> + 'static,
        T: Send,
    {
        let roots: Vec<R> = roots.into_iter().collect();
        if roots.len() != self.cores.len() {
            let (given, cores) = (roots.len(), self.cores.len());
            return self
                .cores
                .iter()
                .map(|&core| {
                    let error = io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("run_each needs one root per core: got {given} for {cores} cores"),
                    );
                    Err(CoreError::Io { core, error })
                })
                .collect();
        }
        let mesh = match Mesh::new(&self.cores) {
            Ok(mesh) => mesh,
            Err(error) => {
                return self
                    .cores
                    .iter()
                    .map(|&core| {
                        let error = io::Error::new(
                            error.kind(),
                            format!("cannot create the cores' wake-up eventfds: {error}"),
                        );
                        Err(CoreError::Io { core, error })
                    })
                    .collect();
            }
        };
        let connections = ConnectionGauges::new(self.cores.len());
        let blocking = StopPoolOnExit(BlockingPool::new(self.config.blocking.clone()));
        let blocking = &blocking.0;
        // Registered before any core starts: a trigger either wakes the cores, or came first
        // and every core sees it in its first pass.
        self.shutdown.register(&mesh);
        let mut sqpoll_roles = SqPollRole::for_cores(&self.config.driver, self.cores.len());
        let (outputs, counts): (Vec<_>, Vec<_>) = std::thread::scope(|scope| {
            let threads: Vec<_> = self
                .cores
                .iter()
                .zip(roots)
                .enumerate()
                .map(|(index, (&core, root))| {
                    let config = &self.config;
                    let sqpoll = std::mem::replace(&mut sqpoll_roles[index], SqPollRole::Alone);
                    let spawned = std::thread::Builder::new()
                        .name(format!("{}-{}", config.thread_name, core.0))
                        .spawn_scoped(scope, {
                            let mesh = Arc::clone(&mesh);
                            let connections = Arc::clone(&connections);
                            let blocking = blocking.clone();
                            let shutdown = self.shutdown.clone();
                            move || {
                                let _closed = CloseOnExit(Arc::clone(mesh.handle(index)));
                                if let Err(error) = sys::pin_current_thread(core.0) {
                                    let error = io::Error::new(
                                        error.kind(),
                                        format!("cannot pin the thread to CPU {}: {error}", core.0),
                                    );
                                    return (Err(CoreError::Io { core, error }), None);
                                }
                                let (output, counts) = run_core(
                                    core,
                                    config,
                                    mesh,
                                    connections,
                                    blocking,
                                    index,
                                    sqpoll,
                                    shutdown,
                                    || root(core),
                                );
                                (output, Some(counts))
                            }
                        });
                    if spawned.is_err() {
                        // No thread will ever drain this core's mailbox.
                        drop(mesh.handle(index).close());
                    }
                    spawned.map_err(|error| CoreError::Io { core, error })
                })
                .collect();
            threads
                .into_iter()
                .zip(&self.cores)
                .map(|(thread, &core)| match thread {
                    Err(error) => (Err(error), None),
                    Ok(thread) => match thread.join() {
                        Ok(result) => result,
                        // `run_core` catches the root future's panics; this is a panic in
                        // coreio itself, still reported per core rather than aborting.
                        Err(payload) => (Err(CoreError::Panicked { core, payload }), None),
                    },
                })
                .unzip()
        });
        let counts: Vec<CoreCounts> = counts.into_iter().flatten().collect();
        self.shutdown.finish_run(&mesh, &counts);
        outputs
    }
}

/// Runs `future` on the calling thread as a one-core runtime with `config` (the core is the
/// CPU the thread runs on now, unpinned): `Builder::block_on`. A panic in `future` propagates.
pub(crate) fn block_on_here<F: Future + 'static>(
    config: &CoreConfig,
    future: F,
) -> io::Result<F::Output>
where
    F::Output: 'static,
{
    let core = CoreId(sys::current_cpu());
    let mesh = Mesh::new(&[core])?;
    let connections = ConnectionGauges::new(1);
    let blocking = StopPoolOnExit(BlockingPool::new(config.blocking.clone()));
    let pool = blocking.0.clone();
    // Its own shutdown, reachable from its tasks (`coreio::shutdown::handle`).
    let shutdown = Shutdown::new(config.shutdown_grace);
    shutdown.register(&mesh);
    let (ran, counts) = run_core(
        core,
        config,
        Arc::clone(&mesh),
        connections,
        pool,
        0,
        SqPollRole::Alone,
        shutdown.clone(),
        || future,
    );
    shutdown.finish_run(&mesh, &[counts]);
    // The pool stops before a panic of the future resumes.
    drop(blocking);
    match ran {
        Ok(output) => Ok(output),
        Err(CoreError::Panicked { payload, .. }) => std::panic::resume_unwind(payload),
        Err(CoreError::Io { error, .. }) => Err(error),
    }
}

/// Closes a core's mailbox when its thread ends, however it ends (a core that failed to start
/// included), so that no sender waits for a core that will never run its posts.
struct CloseOnExit(Arc<CoreHandle>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        // A panic of a discarded job's `Drop` was reported by the core's teardown, which closed
        // the mailbox first; one found only here has no one left to report to.
        drop(self.0.close());
    }
}

/// Stops a runtime's blocking pool when the runtime ends, however it ends: after every core
/// has stopped, so no task awaits a job any more (see `blocking::pool`).
struct StopPoolOnExit(BlockingPool);

impl Drop for StopPoolOnExit {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// A core's part in sharing one submission-queue polling thread (`Builder::sqpoll_shared`).
enum SqPollRole {
    /// Its ring makes its own thread, if it has one.
    Alone,
    /// The first core: its ring starts the thread, then it offers the ring to the others
    /// (whatever happens to it: dropped unused, the publisher tells them there is none).
    First(Publisher),
    /// Another core: its ring attaches to the first core's, once that is built.
    Attach(Arc<SqPollShare>),
}

impl SqPollRole {
    /// One role per core for a run with `config`.
    fn for_cores(config: &DriverConfig, cores: usize) -> Vec<SqPollRole> {
        let shared = config.sqpoll.is_some()
            && config.sqpoll_shared
            && config.backend == ResolvedBackend::IoUring
            && cores > 1;
        if !shared {
            return (0..cores).map(|_| SqPollRole::Alone).collect();
        }
        let (share, publisher) = SqPollShare::new();
        std::iter::once(SqPollRole::First(publisher))
            .chain((1..cores).map(|_| SqPollRole::Attach(Arc::clone(&share))))
            .collect()
    }
}

/// Builds a core on the calling thread and runs `root` on it until it finishes (or, once
/// `shutdown` is requested, until every task of the core has finished or the grace period has
/// passed); `mesh` holds every core's handle and `connections` every core's connection count,
/// this core's at `index`; `blocking` is the runtime's blocking pool; `sqpoll` is the core's
/// part in sharing a polling thread. Returns the root's output and what the core counted for
/// the shutdown report.
#[allow(clippy::too_many_arguments)]
fn run_core<Fut>(
    core: CoreId,
    config: &CoreConfig,
    mesh: Arc<Mesh>,
    connections: Arc<ConnectionGauges>,
    blocking: BlockingPool,
    index: usize,
    sqpoll: SqPollRole,
    shutdown: Shutdown,
    root: impl FnOnce() -> Fut,
) -> (Result<Fut::Output, CoreError>, CoreCounts)
where
    Fut: Future + 'static,
{
    let io_error = |error| CoreError::Io { core, error };
    let handle = Arc::clone(mesh.handle(index));
    let _closed = CloseOnExit(Arc::clone(&handle));
    let executor = LocalExecutor::new(
        Arc::clone(&handle),
        config.remote_queue_interval,
        shutdown.clone(),
    );
    let wake = handle.wake_target();
    let sqpoll_ring = match &sqpoll {
        SqPollRole::Attach(share) => share.wait(),
        SqPollRole::Alone | SqPollRole::First(_) => None,
    };
    let driver = Driver::new(
        &config.driver,
        index,
        sqpoll_ring,
        wake.eventfd(),
        blocking.clone(),
    );
    match sqpoll {
        SqPollRole::First(publisher) => {
            publisher.publish(driver.as_ref().ok().and_then(Driver::sqpoll_ring));
        }
        // Attached (or not): the last core to let go of the share closes its duplicate of the
        // first ring.
        SqPollRole::Attach(share) => drop(share),
        SqPollRole::Alone => {}
    }
    let driver = match driver {
        Ok(driver) => driver,
        Err(error) => return (Err(io_error(error)), CoreCounts::default()),
    };
    if let Some(ring_fd) = driver.ring_fd_for_wakes() {
        match ring_fd {
            Ok(ring_fd) => wake.set_ring_fd(ring_fd),
            // Other cores wake this one by eventfd instead: slower, not wrong.
            Err(error) => log::warn!("{core}: cannot share the ring for MSG_RING wakes: {error}"),
        }
    }
    let ctx = CoreContext {
        core,
        executor,
        driver,
        timers: Timers::new(),
        budget: Budget::new(),
        mesh,
        connections,
        blocking,
    };
    context::enter(&ctx, || {
        let mut drain = Drain::new(&shutdown);
        // A panic can unwind out of the loop (the root's own panics are caught by its task):
        // from a waker the driver or the timers wake, or a buffer's `Drop` when the driver
        // releases it. It is caught here so that the teardown below always runs: without it
        // the ring and the operation slab would be freed with operations live in the kernel.
        let ran = catch_unwind(AssertUnwindSafe(|| {
            let handle = ctx.executor.spawn(root());
            core_loop(&ctx, config, &mut drain, || handle.is_finished())?;
            if !handle.is_finished() {
                // Cut off by the shutdown; the teardown cancels it with the rest.
                return Ok(Err(drain.cut_off()));
            }
            let waker = std::task::Waker::noop();
            match pin!(handle).poll(&mut Context::from_waker(waker)) {
                Poll::Ready(output) => Ok(Ok(output)),
                Poll::Pending => unreachable!("a finished task's handle is ready"),
            }
        }));
        // Cancel every task (their operations become orphans), then wait for the kernel to let
        // go of every buffer. Both report a panic of user code run meanwhile (a future's or a
        // mailbox job's `Drop`, a waker) after finishing their work regardless.
        let executor_panic = ctx.executor.shutdown();
        let driver_panic = ctx.driver.shutdown();
        let teardown_panic = executor_panic.or(driver_panic);
        let counts = drain.counts(&ctx);
        let panicked = |payload| Err(CoreError::Panicked { core, payload });
        let output = match (ran, teardown_panic) {
            (Err(payload), _) | (Ok(Ok(Ok(Err(JoinError::Panicked(payload))))), _) => {
                panicked(payload)
            }
            (Ok(Err(error)), _) | (Ok(Ok(Err(error))), _) => Err(CoreError::Io { core, error }),
            (Ok(Ok(Ok(_))), Some(payload)) => panicked(payload),
            (Ok(Ok(Ok(Ok(value)))), None) => Ok(value),
            (Ok(Ok(Ok(Err(JoinError::Cancelled)))), None) => Err(CoreError::Io {
                core,
                error: io::Error::other("the root future was cancelled"),
            }),
        };
        (output, counts)
    })
}

/// One core's view of its runtime's shutdown, kept by its loop.
struct Drain<'a> {
    shutdown: &'a Shutdown,
    /// When the core saw the request: it waits for its tasks until `deadline`.
    deadline: Option<Instant>,
    /// Whether the root had finished when the core saw the request (it is then not among the
    /// tasks counted as finished during the drain).
    root_done_before: bool,
    /// Why the loop stopped with tasks left: the grace period passed, or the shutdown was forced.
    deadline_passed: bool,
    forced: bool,
    /// Whether the root was still running when the loop stopped (cancelled by the teardown).
    cut: bool,
}

impl<'a> Drain<'a> {
    fn new(shutdown: &'a Shutdown) -> Drain<'a> {
        Drain {
            shutdown,
            deadline: None,
            root_done_before: false,
            deadline_passed: false,
            forced: false,
            cut: false,
        }
    }

    fn draining(&self) -> bool {
        self.deadline.is_some()
    }

    /// Starts draining if the shutdown was requested and this core has not seen it yet;
    /// `root_done`: the root has finished already (so it is not counted as finished below).
    fn observe(&mut self, ctx: &CoreContext, root_done: bool) {
        if self.draining() || !self.shutdown.is_requested() {
            return;
        }
        self.deadline = Some(self.shutdown.deadline().unwrap_or_else(Instant::now));
        self.root_done_before = root_done;
        ctx.executor.begin_drain();
    }

    /// While draining: whether the core should stop now (every task done, or forced).
    fn done(&mut self, ctx: &CoreContext) -> bool {
        if self.shutdown.is_forced() {
            self.forced = ctx.executor.live_tasks() > 0;
            return true;
        }
        ctx.executor.live_tasks() == 0
    }

    /// While draining: whether the grace period has passed at `now`.
    fn expired(&mut self, ctx: &CoreContext, now: Instant) -> bool {
        let expired = self.deadline.is_some_and(|deadline| now >= deadline);
        if expired {
            self.deadline_passed = ctx.executor.live_tasks() > 0;
        }
        expired
    }

    /// How long until the deadline, while draining.
    fn time_left(&self, now: Instant) -> Option<Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_duration_since(now))
    }

    /// The error a root still running when the drain ended is reported with.
    fn cut_off(&mut self) -> io::Error {
        self.cut = true;
        if self.forced {
            io::Error::new(
                io::ErrorKind::Interrupted,
                "the root future was cancelled: the shutdown was forced before it finished",
            )
        } else {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the root future was cancelled: still running when the shutdown's grace \
                     period ({:?}) ran out",
                    self.shutdown.grace()
                ),
            )
        }
    }

    /// The core's counts for the report, after the teardown, roots excluded.
    fn counts(&self, ctx: &CoreContext) -> CoreCounts {
        let (finished, cancelled) = ctx.executor.shutdown_counts();
        // The root is a task too: it finished during the drain, or it was cut off.
        let root_finished_draining = self.draining() && !self.root_done_before && !self.cut;
        CoreCounts {
            finished: finished.saturating_sub(usize::from(root_finished_draining)),
            cancelled: cancelled.saturating_sub(usize::from(self.cut)),
            deadline_passed: self.deadline_passed,
        }
    }
}

/// The per-core loop: run up to `event_interval` ready tasks, fire due timers, then enter the
/// driver — without blocking when tasks are ready, else until the next timer or an event.
///
/// `root_done` is checked after every task poll, so once the root future completes no other
/// task of this core is polled again: they are cancelled by the teardown. Once the runtime's
/// shutdown is requested (checked at the top of every pass, and when the root completes), the
/// loop instead goes on until every task of the core has finished, the grace period has
/// passed or the shutdown is forced, parking no longer than the deadline.
fn core_loop(
    ctx: &CoreContext,
    config: &CoreConfig,
    drain: &mut Drain<'_>,
    mut root_done: impl FnMut() -> bool,
) -> io::Result<()> {
    let mut stop = |drain: &mut Drain<'_>| {
        if !drain.draining() {
            if !root_done() {
                return false;
            }
            // A root that finished because the shutdown was requested: drain rather than stop.
            drain.observe(ctx, true);
            if !drain.draining() {
                return true;
            }
        }
        drain.done(ctx)
    };
    loop {
        ctx.executor.run_mailbox();
        if !drain.draining() {
            drain.observe(ctx, false);
            if drain.draining() && drain.done(ctx) {
                return Ok(());
            }
        }
        for _ in 0..config.event_interval {
            let Some(task) = ctx.executor.next_task() else {
                break;
            };
            ctx.executor.run_task(task, &ctx.budget);
            if stop(drain) {
                return Ok(());
            }
        }
        let mut now = Instant::now();
        ctx.timers.fire_due(now);
        if drain.draining() && (drain.done(ctx) || drain.expired(ctx, now)) {
            return Ok(());
        }
        if !config.spin_before_park.is_zero() && !ctx.executor.has_ready_tasks() {
            now = spin(ctx, config.spin_before_park, now)?;
        }
        let timeout = if ctx.executor.has_ready_tasks() {
            Some(Duration::ZERO)
        } else {
            let until = match (ctx.timers.time_to_next(now), drain.time_left(now)) {
                (Some(timer), Some(left)) => Some(timer.min(left)),
                (timer, left) => timer.or(left),
            };
            match until {
                Some(Duration::ZERO) => Some(Duration::ZERO),
                // About to block: announce it, unless a remote wake slipped in meanwhile.
                until if ctx.executor.prepare_to_sleep() => until,
                _ => Some(Duration::ZERO),
            }
        };
        let parked = ctx.driver.park(timeout);
        ctx.executor.woke_up();
        parked?;
        if timeout != Some(Duration::ZERO) {
            ctx.timers.fire_due(Instant::now());
        }
    }
}

/// Polls the driver without blocking until a task is ready, the next timer is due or `limit`
/// has passed (`Builder::spin_before_park`). Returns the time it stopped.
fn spin(ctx: &CoreContext, limit: Duration, start: Instant) -> io::Result<Instant> {
    let until = match ctx.timers.time_to_next(start) {
        Some(next) => start + next.min(limit),
        None => start + limit,
    };
    loop {
        ctx.driver.park(Some(Duration::ZERO))?;
        let now = Instant::now();
        if ctx.executor.has_ready_tasks() || now >= until {
            return Ok(now);
        }
    }
}

/// The core the calling task runs on, or `None` outside a coreio runtime.
pub fn current_core() -> Option<CoreId> {
    context::with(|ctx| ctx.core)
}

/// The backend of the core the calling task runs on, or `None` outside a coreio runtime.
pub fn backend() -> Option<Backend> {
    context::with(|ctx| ctx.driver.backend())
}
