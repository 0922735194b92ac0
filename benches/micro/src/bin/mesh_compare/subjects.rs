//! The subjects and the two scenarios, each written once and run by every subject.
//!
//! * **Round trip** (ping-pong): side A sends a `u64` to side B over one channel, B answers
//!   with the value plus one over another, A checks it and sends the next. One channel each
//!   way, capacity 1 (only one message is ever in flight). The figure is the time of
//!   `round_trips` round trips, after `warmup_round_trips` unmeasured ones.
//! * **Throughput** (one way): A sends `0..messages` through one channel of `capacity`, B sums
//!   what it receives and, after the last message, sends the sum back over a second channel; A
//!   checks it. The figure is the time from A's first send to A's receipt of the sum, after an
//!   unmeasured warm-up pass of `warmup_messages`.
//!
//! Side A always runs on the first CPU of the pair, side B on the second. The coreio subjects
//! build a fresh two-core runtime per measurement (`Builder::core_ids`, the backend forced by
//! `Builder::backend`), with A's code as one core's root future and B's as the other's; the
//! thread subjects run A and B on two `std` threads pinned with `sched_setaffinity`. Either
//! way the clock is read by A, inside the measured code, so start-up is never measured.
//!
//! Beside the time, A counts how often the two sides blocked during the measured section: the
//! growth of both threads' `voluntary_ctxt_switches` (from `/proc/self/task/TID/status`, read
//! just before the clock starts and just after it stops). A side that parks its thread while
//! it waits adds one per wait; a side that spins adds none. This explains most differences
//! between the subjects, so it goes into the report beside the figures.
//!
//! The async scenarios are generic over [`AsyncChannel`] and the blocking ones over
//! [`BlockingChannel`], so every channel runs the very same loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coreio::sync::Event;
use coreio::{Backend, Builder, CoreId};

/// Capacity of the two ping-pong channels: one message is ever in flight each way.
const PING_PONG_CAPACITY: usize = 1;

/// How long an idle core of the `-spin` subjects polls before it parks: the 50 µs that
/// `benches/echo_compare.sh` gives its coreio-spin server.
pub const SPIN_BEFORE_PARK: Duration = Duration::from_micros(50);

/// The value that tells side B of the round trip to stop (never a real message: those are
/// below `round_trips + warmup_round_trips`).
const STOP: u64 = u64::MAX;

/// What one measurement does.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Measured round trips.
    pub round_trips: u64,
    /// Round trips before the clock starts.
    pub warmup_round_trips: u64,
    /// Measured one-way messages.
    pub messages: u64,
    /// One-way messages of the warm-up pass.
    pub warmup_messages: u64,
    /// Capacity of the throughput channel.
    pub capacity: usize,
    /// The CPUs of side A and side B.
    pub cpus: [usize; 2],
}

/// The two scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    RoundTrip,
    Throughput,
}

impl Scenario {
    pub const ALL: [Scenario; 2] = [Scenario::RoundTrip, Scenario::Throughput];

    /// The name in result lines and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::RoundTrip => "roundtrip",
            Scenario::Throughput => "throughput",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Everything that is measured, in table order; the first is the reference of the ratios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// `coreio::mesh::channel` between two io_uring cores (wakes by `IORING_OP_MSG_RING`).
    CoreioUring,
    /// The same, each core polling for [`SPIN_BEFORE_PARK`] before it parks.
    CoreioUringSpin,
    /// `coreio::mesh::channel` between two epoll cores (wakes by eventfd).
    CoreioEpoll,
    /// `coreio::mesh::submit_to` from the io_uring core A to core B, awaited each time.
    SubmitUring,
    /// The same between epoll cores.
    SubmitEpoll,
    /// flume's async API (`send_async`/`recv_async`) on two io_uring coreio cores.
    FlumeAsyncCoreio,
    /// flume's blocking API between two pinned threads.
    Flume,
    /// crossbeam-channel between two pinned threads.
    Crossbeam,
}

impl Subject {
    pub const ALL: [Subject; 8] = [
        Subject::CoreioUring,
        Subject::CoreioUringSpin,
        Subject::CoreioEpoll,
        Subject::SubmitUring,
        Subject::SubmitEpoll,
        Subject::FlumeAsyncCoreio,
        Subject::Flume,
        Subject::Crossbeam,
    ];

    /// The name in result lines, tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Subject::CoreioUring => "coreio-uring",
            Subject::CoreioUringSpin => "coreio-uring-spin",
            Subject::CoreioEpoll => "coreio-epoll",
            Subject::SubmitUring => "submit_to-uring",
            Subject::SubmitEpoll => "submit_to-epoll",
            Subject::FlumeAsyncCoreio => "flume-async-on-coreio",
            Subject::Flume => "flume-threads",
            Subject::Crossbeam => "crossbeam-threads",
        }
    }

    pub fn from_name(name: &str) -> Option<Subject> {
        Subject::ALL.into_iter().find(|s| s.name() == name)
    }

    /// One line on what the subject is, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Subject::CoreioUring => {
                "`coreio::mesh::channel` between two io_uring cores; a sleeping core is woken by `IORING_OP_MSG_RING`"
            }
            Subject::CoreioUringSpin => {
                "the same with `Builder::spin_before_park(50 µs)`: an idle core polls its ring for 50 µs before it blocks"
            }
            Subject::CoreioEpoll => {
                "`coreio::mesh::channel` between two epoll cores; a sleeping core is woken by an eventfd write"
            }
            Subject::SubmitUring => {
                "`coreio::mesh::submit_to(B, || async move { v + 1 })` awaited by core A, io_uring cores (round trip only)"
            }
            Subject::SubmitEpoll => "the same between epoll cores (round trip only)",
            Subject::FlumeAsyncCoreio => {
                "flume's `send_async`/`recv_async` on the same two io_uring coreio cores: flume's queue, coreio's wake-ups"
            }
            Subject::Flume => {
                "flume's blocking `send`/`recv` between two `std` threads pinned to the same CPUs"
            }
            Subject::Crossbeam => {
                "crossbeam-channel's blocking `send`/`recv` between two `std` threads pinned to the same CPUs"
            }
        }
    }

    /// Whether the subject runs `scenario` (`submit_to` is a request and its answer, so it has
    /// no one-way stream to measure).
    pub fn runs(self, scenario: Scenario) -> bool {
        !matches!(
            (self, scenario),
            (
                Subject::SubmitUring | Subject::SubmitEpoll,
                Scenario::Throughput
            )
        )
    }

    /// Runs one measurement; the time it took for `ops` operations.
    pub fn measure(self, scenario: Scenario, plan: &Plan) -> Result<Measured, String> {
        let uring = || coreio_builder(Backend::IoUring);
        let epoll = || coreio_builder(Backend::Epoll);
        let spin = || uring().spin_before_park(SPIN_BEFORE_PARK);
        let (elapsed, sleeps) = match (self, scenario) {
            (Subject::CoreioUring, s) => async_scenario::<Mesh>(uring(), s, plan)?,
            (Subject::CoreioUringSpin, s) => async_scenario::<Mesh>(spin(), s, plan)?,
            (Subject::CoreioEpoll, s) => async_scenario::<Mesh>(epoll(), s, plan)?,
            (Subject::FlumeAsyncCoreio, s) => async_scenario::<FlumeAsync>(uring(), s, plan)?,
            (Subject::SubmitUring, Scenario::RoundTrip) => submit_round_trips(uring(), plan)?,
            (Subject::SubmitEpoll, Scenario::RoundTrip) => submit_round_trips(epoll(), plan)?,
            (Subject::SubmitUring | Subject::SubmitEpoll, Scenario::Throughput) => {
                return Err("submit_to has no one-way throughput scenario".into());
            }
            (Subject::Flume, s) => blocking_scenario::<FlumeBlocking>(s, plan)?,
            (Subject::Crossbeam, s) => blocking_scenario::<Crossbeam>(s, plan)?,
        };
        let ops = match scenario {
            Scenario::RoundTrip => plan.round_trips,
            Scenario::Throughput => plan.messages,
        };
        Ok(Measured {
            ops,
            elapsed,
            sleeps,
        })
    }
}

/// One measurement's result.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// Round trips or messages.
    pub ops: u64,
    pub elapsed: Duration,
    /// Times either side blocked (voluntary context switches of both threads) meanwhile.
    pub sleeps: u64,
}

/// What side A reports: the measured time and how often both sides blocked meanwhile.
type SideA = (Duration, u64);

/// The threads of side A and side B, for counting how often they block.
#[derive(Clone, Default)]
struct Sleeps(Arc<[AtomicI32; 2]>);

impl Sleeps {
    /// Records the calling thread as side `side` (0 for A, 1 for B).
    fn register(&self, side: usize) {
        // SAFETY: `gettid` has no preconditions.
        let tid = unsafe { libc::gettid() };
        self.0[side].store(tid, Ordering::Release);
    }

    /// Voluntary context switches of both threads so far (a thread not registered yet counts
    /// zero; both are registered before side A reads this, since the warm-up needs both).
    fn total(&self) -> u64 {
        self.0
            .iter()
            .map(|tid| tid.load(Ordering::Acquire))
            .filter(|&tid| tid > 0)
            .map(|tid| {
                let path = format!("/proc/self/task/{tid}/status");
                std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|status| {
                        status.lines().find_map(|line| {
                            line.strip_prefix("voluntary_ctxt_switches:")?
                                .trim()
                                .parse::<u64>()
                                .ok()
                        })
                    })
                    .unwrap_or_else(|| panic!("no voluntary_ctxt_switches in {path}"))
            })
            .sum()
    }

    /// Runs `section` and returns its time and the blocking it caused.
    async fn measure(&self, section: impl Future<Output = ()>) -> SideA {
        let before = self.total();
        let start = Instant::now();
        section.await;
        let elapsed = start.elapsed();
        (elapsed, self.total() - before)
    }

    /// The blocking form of [`Sleeps::measure`].
    fn measure_blocking(&self, section: impl FnOnce()) -> SideA {
        let before = self.total();
        let start = Instant::now();
        section();
        let elapsed = start.elapsed();
        (elapsed, self.total() - before)
    }
}

fn coreio_builder(backend: Backend) -> Builder {
    Builder::new()
        .backend(backend)
        .thread_name_prefix("mesh-bench")
}

/// The sum of `0..n`, which B reports back in the throughput scenario.
fn sum_below(n: u64) -> u64 {
    n.wrapping_mul(n.wrapping_sub(1)) / 2
}

// ---- async channels on coreio cores ----------------------------------------------------------

/// A bounded channel used from coreio tasks: the two calls the async scenarios make.
trait AsyncChannel: 'static {
    type Tx: Send + 'static;
    type Rx: Send + 'static;
    fn bounded(capacity: usize) -> (Self::Tx, Self::Rx);
    /// Sends, waiting for room; panics if the other side is gone (a failed run).
    fn send(tx: &Self::Tx, value: u64) -> impl Future<Output = ()>;
    /// Receives, waiting for a message; panics if the other side is gone.
    fn recv(rx: &mut Self::Rx) -> impl Future<Output = u64>;
}

/// `coreio::mesh::channel`.
struct Mesh;

impl AsyncChannel for Mesh {
    type Tx = coreio::mesh::Sender<u64>;
    type Rx = coreio::mesh::Receiver<u64>;

    fn bounded(capacity: usize) -> (Self::Tx, Self::Rx) {
        coreio::mesh::channel(capacity)
    }

    async fn send(tx: &Self::Tx, value: u64) {
        tx.send(value).await.expect("the receiving side is gone");
    }

    async fn recv(rx: &mut Self::Rx) -> u64 {
        rx.recv().await.expect("the sending side is gone")
    }
}

/// flume's async API.
struct FlumeAsync;

impl AsyncChannel for FlumeAsync {
    type Tx = flume::Sender<u64>;
    type Rx = flume::Receiver<u64>;

    fn bounded(capacity: usize) -> (Self::Tx, Self::Rx) {
        flume::bounded(capacity)
    }

    async fn send(tx: &Self::Tx, value: u64) {
        tx.send_async(value)
            .await
            .expect("the receiving side is gone");
    }

    async fn recv(rx: &mut Self::Rx) -> u64 {
        rx.recv_async().await.expect("the sending side is gone")
    }
}

fn async_scenario<C: AsyncChannel>(
    builder: Builder,
    scenario: Scenario,
    plan: &Plan,
) -> Result<SideA, String> {
    let p = *plan;
    let sleeps = Sleeps::default();
    let counter = sleeps.clone();
    match scenario {
        Scenario::RoundTrip => {
            let (to_b, at_b) = C::bounded(PING_PONG_CAPACITY);
            let (to_a, at_a) = C::bounded(PING_PONG_CAPACITY);
            on_two_cores(
                builder,
                p.cpus,
                &sleeps,
                move || async move {
                    let mut at_a = at_a;
                    let mut round = async |first: u64, count: u64| {
                        for value in first..first + count {
                            C::send(&to_b, value).await;
                            let answer = C::recv(&mut at_a).await;
                            assert_eq!(answer, value + 1, "B answered out of turn");
                        }
                    };
                    round(0, p.warmup_round_trips).await;
                    let measured = counter
                        .measure(round(p.warmup_round_trips, p.round_trips))
                        .await;
                    C::send(&to_b, STOP).await;
                    measured
                },
                move || async move {
                    let mut at_b = at_b;
                    loop {
                        let value = C::recv(&mut at_b).await;
                        if value == STOP {
                            return;
                        }
                        C::send(&to_a, value + 1).await;
                    }
                },
            )
        }
        Scenario::Throughput => {
            let (to_b, at_b) = C::bounded(p.capacity);
            let (to_a, at_a) = C::bounded(PING_PONG_CAPACITY);
            let passes = [p.warmup_messages, p.messages];
            on_two_cores(
                builder,
                p.cpus,
                &sleeps,
                move || async move {
                    let mut at_a = at_a;
                    let mut pass = async |count: u64| {
                        for value in 0..count {
                            C::send(&to_b, value).await;
                        }
                        let sum = C::recv(&mut at_a).await;
                        assert_eq!(sum, sum_below(count), "B's sum is wrong");
                    };
                    pass(passes[0]).await;
                    counter.measure(pass(passes[1])).await
                },
                move || async move {
                    let mut at_b = at_b;
                    for count in passes {
                        let mut sum = 0u64;
                        for _ in 0..count {
                            sum = sum.wrapping_add(C::recv(&mut at_b).await);
                        }
                        C::send(&to_a, sum).await;
                    }
                },
            )
        }
    }
}

/// `submit_to` round trips: core A awaits `submit_to(B, ..)` for each value.
fn submit_round_trips(builder: Builder, plan: &Plan) -> Result<SideA, String> {
    let p = *plan;
    let sleeps = Sleeps::default();
    let counter = sleeps.clone();
    let b_core = CoreId(p.cpus[1]);
    on_two_cores(
        builder,
        p.cpus,
        &sleeps,
        move || async move {
            let round = async |first: u64, count: u64| {
                for value in first..first + count {
                    let answer = coreio::mesh::submit_to(b_core, move || async move { value + 1 })
                        .await
                        .expect("submit_to failed");
                    assert_eq!(answer, value + 1, "the submitted work answered wrongly");
                }
            };
            round(0, p.warmup_round_trips).await;
            counter
                .measure(round(p.warmup_round_trips, p.round_trips))
                .await
        },
        // B has no code of its own: its core serves its mailbox until A is done.
        || async {},
    )
}

/// Sets the event when dropped.
struct SetOnDrop(Event);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// The root future of either core.
type Root = Pin<Box<dyn Future<Output = Option<SideA>>>>;

/// Runs `a()` as the root future of the core on `cpus[0]` and `b()` as that of `cpus[1]`, in a
/// runtime built from `builder`, each core's thread registered in `sleeps`; returns what `a`
/// measured. B's root returns only once A's has.
fn on_two_cores<A, FA, B, FB>(
    builder: Builder,
    cpus: [usize; 2],
    sleeps: &Sleeps,
    a: A,
    b: B,
) -> Result<SideA, String>
where
    A: FnOnce() -> FA + Send,
    FA: Future<Output = SideA> + 'static,
    B: FnOnce() -> FB + Send,
    FB: Future<Output = ()> + 'static,
{
    let rt = builder
        .core_ids(cpus)
        .build()
        .map_err(|e| format!("cannot build the runtime: {e}"))?;
    let backend = rt.backend();
    let a = Mutex::new(Some(a));
    let b = Mutex::new(Some(b));
    // B's core outlives A's measurement, so that A can read B's thread's counters, and keeps
    // serving its mailbox until then (what `submit_to` needs).
    let a_done = Event::new();
    let outputs = rt.run(|core| -> Root {
        // One root per core, so each closure is taken exactly once.
        if core.0 == cpus[0] {
            sleeps.register(0);
            let a = a.lock().unwrap().take().expect("core A started twice");
            let future = a();
            // Set however A ends, a panic included.
            let a_done = SetOnDrop(a_done.clone());
            Box::pin(async move {
                let measured = future.await;
                drop(a_done);
                Some(measured)
            })
        } else {
            sleeps.register(1);
            let b = b.lock().unwrap().take().expect("core B started twice");
            let future = b();
            let a_done = a_done.clone();
            Box::pin(async move {
                future.await;
                a_done.wait().await;
                None
            })
        }
    });
    let mut measured = None;
    for output in outputs {
        match output {
            Ok(Some(side_a)) => measured = Some(side_a),
            Ok(None) => {}
            Err(error) => return Err(format!("{backend} runtime: {error}")),
        }
    }
    measured.ok_or_else(|| "core A produced no measurement".into())
}

// ---- blocking channels on plain threads ------------------------------------------------------

/// A bounded channel used from plain threads with its blocking calls.
trait BlockingChannel {
    type Tx: Send;
    type Rx: Send;
    fn bounded(capacity: usize) -> (Self::Tx, Self::Rx);
    fn send(tx: &Self::Tx, value: u64);
    fn recv(rx: &Self::Rx) -> u64;
}

struct FlumeBlocking;

impl BlockingChannel for FlumeBlocking {
    type Tx = flume::Sender<u64>;
    type Rx = flume::Receiver<u64>;

    fn bounded(capacity: usize) -> (Self::Tx, Self::Rx) {
        flume::bounded(capacity)
    }

    fn send(tx: &Self::Tx, value: u64) {
        tx.send(value).expect("the receiving side is gone");
    }

    fn recv(rx: &Self::Rx) -> u64 {
        rx.recv().expect("the sending side is gone")
    }
}

struct Crossbeam;

impl BlockingChannel for Crossbeam {
    type Tx = crossbeam_channel::Sender<u64>;
    type Rx = crossbeam_channel::Receiver<u64>;

    fn bounded(capacity: usize) -> (Self::Tx, Self::Rx) {
        crossbeam_channel::bounded(capacity)
    }

    fn send(tx: &Self::Tx, value: u64) {
        tx.send(value).expect("the receiving side is gone");
    }

    fn recv(rx: &Self::Rx) -> u64 {
        rx.recv().expect("the sending side is gone")
    }
}

fn blocking_scenario<C: BlockingChannel>(scenario: Scenario, plan: &Plan) -> Result<SideA, String> {
    let p = *plan;
    let sleeps = Sleeps::default();
    let counter = sleeps.clone();
    match scenario {
        Scenario::RoundTrip => {
            let (to_b, at_b) = C::bounded(PING_PONG_CAPACITY);
            let (to_a, at_a) = C::bounded(PING_PONG_CAPACITY);
            on_two_threads(
                p.cpus,
                &sleeps,
                move || {
                    let round = |first: u64, count: u64| {
                        for value in first..first + count {
                            C::send(&to_b, value);
                            let answer = C::recv(&at_a);
                            assert_eq!(answer, value + 1, "B answered out of turn");
                        }
                    };
                    round(0, p.warmup_round_trips);
                    let measured =
                        counter.measure_blocking(|| round(p.warmup_round_trips, p.round_trips));
                    C::send(&to_b, STOP);
                    measured
                },
                move || {
                    loop {
                        let value = C::recv(&at_b);
                        if value == STOP {
                            return;
                        }
                        C::send(&to_a, value + 1);
                    }
                },
            )
        }
        Scenario::Throughput => {
            let (to_b, at_b) = C::bounded(p.capacity);
            let (to_a, at_a) = C::bounded(PING_PONG_CAPACITY);
            let passes = [p.warmup_messages, p.messages];
            on_two_threads(
                p.cpus,
                &sleeps,
                move || {
                    let pass = |count: u64| {
                        for value in 0..count {
                            C::send(&to_b, value);
                        }
                        let sum = C::recv(&at_a);
                        assert_eq!(sum, sum_below(count), "B's sum is wrong");
                    };
                    pass(passes[0]);
                    counter.measure_blocking(|| pass(passes[1]))
                },
                move || {
                    for count in passes {
                        let mut sum = 0u64;
                        for _ in 0..count {
                            sum = sum.wrapping_add(C::recv(&at_b));
                        }
                        C::send(&to_a, sum);
                    }
                },
            )
        }
    }
}

/// Runs `a` on a thread pinned to `cpus[0]` and `b` on one pinned to `cpus[1]`, both
/// registered in `sleeps`; returns what `a` measured. Thread B ends only once A has, so that A
/// can read B's counters. A side that panics drops its channel ends, so the other fails too
/// and both threads end.
fn on_two_threads<A, B>(cpus: [usize; 2], sleeps: &Sleeps, a: A, b: B) -> Result<SideA, String>
where
    A: FnOnce() -> SideA + Send,
    B: FnOnce() + Send,
{
    // Dropped by thread A when it ends (by unwinding too), which ends B's wait.
    let (a_alive, a_gone) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let side_b = std::thread::Builder::new()
            .name("mesh-bench-b".into())
            .spawn_scoped(scope, move || {
                pin_current_thread(cpus[1]).expect("cannot pin thread B");
                sleeps.register(1);
                b();
                let _ = a_gone.recv();
            })
            .map_err(|e| format!("cannot start thread B: {e}"))?;
        let side_a = std::thread::Builder::new()
            .name("mesh-bench-a".into())
            .spawn_scoped(scope, move || {
                let _alive = a_alive;
                pin_current_thread(cpus[0]).expect("cannot pin thread A");
                sleeps.register(0);
                a()
            })
            .map_err(|e| format!("cannot start thread A: {e}"))?;
        let elapsed = side_a.join().map_err(|_| "thread A panicked".to_string());
        let b_ended = side_b.join().map_err(|_| "thread B panicked".to_string());
        b_ended.and(elapsed)
    })
}

/// Pins the calling thread to `cpu`.
fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    // SAFETY: `cpu_set_t` is a plain bit array, and all-zero bits is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let bits = 8 * std::mem::size_of::<libc::cpu_set_t>();
    if cpu >= bits {
        return Err(std::io::Error::other(format!(
            "CPU {cpu} is beyond cpu_set_t"
        )));
    }
    // SAFETY: `cpu` is below the set's size in bits (checked above), so the bit is in `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid `cpu_set_t` of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The CPUs this process may run on, in increasing order.
pub fn allowed_cpus() -> std::io::Result<Vec<usize>> {
    // SAFETY: as in `pin_current_thread`, all-zero is a valid (empty) `cpu_set_t`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the kernel writes at most `size_of_val(&set)` bytes
    // into `set`.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let bits = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: every `cpu` is below the set's size in bits, so each read is inside `set`.
    Ok((0..bits)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}
