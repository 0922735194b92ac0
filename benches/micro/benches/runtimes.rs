//! coreio, tokio and smol side by side, one criterion group per scenario and one entry per
//! runtime (`coreio`, `tokio`, `smol`), all single-threaded (see the crate docs for the exact
//! runtime calls).
//!
//! Each entry uses `iter_custom`: the runtime is built once on a [`Host`] thread and every
//! criterion call runs `iters` iterations *inside* it, reading the clock there. What one
//! iteration is:
//!
//! * `spawn_join_1000`: spawn 1000 empty tasks, then await their 1000 handles in order.
//! * `context_switch`: one switch from one task to another. Two tasks take turns through the
//!   runtime's own `yield_now` until `iters` yields are done between them, so the median *is*
//!   the time per switch (no division needed).
//! * `context_switch_wake`: the same, but the two tasks hand a baton through a shared cell and
//!   wake each other with their `Waker`: one wake + one schedule + one poll per switch. This
//!   path is identical code in all three runtimes, whereas `yield_now` differs (tokio defers
//!   a yielded task until its driver has been polled; smol requeues it at once).
//! * `timers_cancel_100k`: create 100,000 timers due 1 s ahead (spread over 100 ms, 1 µs
//!   apart), poll each once with the task's waker so it registers, then drop them all.
//! * `timers_fire_100k`: create 100,000 timers with one deadline and register them as above;
//!   then, *unmeasured*, block the thread until 2 ms after the deadline; then hand control to
//!   the runtime, which finds the timers due, fires them and wakes the task, which polls them to
//!   completion and drops them. The measured time is the busy time: registration + expiry,
//!   wakes and completion. Leaving out the idle wait leaves out each runtime's timer resolution
//!   (coreio and tokio tick every 1 ms and round deadlines up; smol is exact), which would
//!   otherwise dominate. The deadline is 25 ms ahead, within the first level of coreio's and
//!   tokio's wheels; where registering 100,000 timers takes longer than a third of that (smol),
//!   it moves to three times the registration time, so no timer is due before all are
//!   registered (checked; an iteration where one was is repeated, unmeasured).

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};

use coreio_bench_micro::{Coreio, Host, PinnedSlots, Runtime, Smol, Tokio};

/// Tasks per iteration of `spawn_join_1000`.
const SPAWN_TASKS: usize = 1000;
/// Timers per iteration of the timer scenarios.
const TIMERS: usize = 100_000;
/// How far ahead `timers_cancel_100k` sets its deadlines.
const CANCEL_AFTER: Duration = Duration::from_secs(1);
/// How far ahead `timers_fire_100k` sets its deadline at least; it must lie past the
/// registration of every timer, so it grows to [`FIRE_AFTER_REGISTRATIONS`] times the last
/// registration time where that is longer (smol: registering 100,000 timers takes tens of ms).
const FIRE_AFTER: Duration = Duration::from_millis(25);
/// See [`FIRE_AFTER`].
const FIRE_AFTER_REGISTRATIONS: u32 = 3;
/// How long after the deadline `timers_fire_100k` returns to the runtime: more than one 1 ms
/// tick, so the timers are due in every runtime whatever its rounding.
const FIRE_GRACE: Duration = Duration::from_millis(2);

thread_local! {
    /// The deadline distance `timers_fire_100k` uses on this host thread (one per runtime).
    static FIRE_AFTER_NOW: Cell<Duration> = const { Cell::new(FIRE_AFTER) };
}

/// One benchmark scenario, generic over the runtime it runs in.
trait Scenario: Copy + Send + 'static {
    /// Runs `iters` iterations in the current runtime and returns the time they took.
    fn run<R: Runtime>(self, iters: u64) -> impl Future<Output = Duration>;
}

#[derive(Clone, Copy)]
struct SpawnJoin;

impl Scenario for SpawnJoin {
    async fn run<R: Runtime>(self, iters: u64) -> Duration {
        let mut handles = Vec::with_capacity(SPAWN_TASKS);
        let start = Instant::now();
        for _ in 0..iters {
            handles.extend((0..SPAWN_TASKS).map(|_| R::spawn(async {})));
            for handle in handles.drain(..) {
                handle.await;
            }
        }
        start.elapsed()
    }
}

#[derive(Clone, Copy)]
struct YieldSwitch;

impl Scenario for YieldSwitch {
    async fn run<R: Runtime>(self, iters: u64) -> Duration {
        async fn yield_times<R: Runtime>(times: u64) {
            for _ in 0..times {
                R::yield_now().await;
            }
        }
        let start = Instant::now();
        let first = R::spawn(yield_times::<R>(iters.div_ceil(2)));
        let second = R::spawn(yield_times::<R>(iters / 2));
        first.await;
        second.await;
        start.elapsed()
    }
}

/// Whose turn it is, and the wakers of the two tasks waiting for theirs.
struct Baton {
    turn: Cell<usize>,
    waiting: [RefCell<Option<Waker>>; 2],
}

impl Baton {
    /// Takes `rounds` turns as player `me`, handing the baton over after each.
    async fn play(&self, me: usize, rounds: u64) {
        let other = 1 - me;
        for _ in 0..rounds {
            poll_fn(|cx| {
                if self.turn.get() == me {
                    return Poll::Ready(());
                }
                let mut slot = self.waiting[me].borrow_mut();
                match &*slot {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            })
            .await;
            self.turn.set(other);
            if let Some(waker) = &*self.waiting[other].borrow() {
                waker.wake_by_ref();
            }
        }
    }
}

#[derive(Clone, Copy)]
struct WakeSwitch;

impl Scenario for WakeSwitch {
    async fn run<R: Runtime>(self, iters: u64) -> Duration {
        let baton = Rc::new(Baton {
            turn: Cell::new(0),
            waiting: [RefCell::new(None), RefCell::new(None)],
        });
        let start = Instant::now();
        let (a, b) = (Rc::clone(&baton), Rc::clone(&baton));
        let first = R::spawn(async move { a.play(0, iters.div_ceil(2)).await });
        let second = R::spawn(async move { b.play(1, iters / 2).await });
        first.await;
        second.await;
        start.elapsed()
    }
}

/// Polls every timer once with the running task's waker; returns how many completed.
async fn register_all<R: Runtime>(timers: &mut PinnedSlots<R::Sleep>) -> usize {
    poll_fn(|cx| {
        let done = (0..timers.len())
            .filter(|&i| timers.get_pin(i).poll(cx).is_ready())
            .count();
        Poll::Ready(done)
    })
    .await
}

#[derive(Clone, Copy)]
struct TimersCancel;

impl Scenario for TimersCancel {
    async fn run<R: Runtime>(self, iters: u64) -> Duration {
        let mut timers = PinnedSlots::with_capacity(TIMERS);
        let start = Instant::now();
        for _ in 0..iters {
            let base = Instant::now() + CANCEL_AFTER;
            for i in 0..TIMERS as u64 {
                timers.push(R::sleep_until(base + Duration::from_micros(i)));
            }
            let done = register_all::<R>(&mut timers).await;
            assert_eq!(done, 0, "a timer 1 s ahead completed at once");
            timers.clear();
        }
        start.elapsed()
    }
}

#[derive(Clone, Copy)]
struct TimersFire;

impl Scenario for TimersFire {
    async fn run<R: Runtime>(self, iters: u64) -> Duration {
        let mut timers = PinnedSlots::with_capacity(TIMERS);
        let mut pending: Vec<usize> = Vec::with_capacity(TIMERS);
        let mut busy = Duration::ZERO;
        let mut fire_after = FIRE_AFTER_NOW.get();
        let mut done_iters = 0;
        while done_iters < iters {
            let start = Instant::now();
            let deadline = start + fire_after;
            for _ in 0..TIMERS {
                timers.push(R::sleep_until(deadline));
            }
            let completed_early = register_all::<R>(&mut timers).await;
            let registered = Instant::now();
            fire_after = fire_after.max((registered - start) * FIRE_AFTER_REGISTRATIONS);
            FIRE_AFTER_NOW.set(fire_after);
            if completed_early > 0 {
                // Registration outlasted the deadline (first iteration only): retry, unmeasured,
                // with the later deadline.
                timers.clear();
                continue;
            }
            done_iters += 1;

            // Idle, not measured: wait until every runtime would consider the timers due.
            thread::sleep((deadline + FIRE_GRACE).saturating_duration_since(registered));

            let due = Instant::now();
            pending.extend(0..TIMERS);
            let mut returned_to_runtime = false;
            poll_fn(|cx| {
                // The first poll only hands control to the runtime: the timers hold this task's
                // waker, so the next poll comes from the runtime firing them, not from a clock
                // check in `poll` (which coreio and smol would otherwise take).
                if !returned_to_runtime {
                    returned_to_runtime = true;
                    return Poll::Pending;
                }
                pending.retain(|&i| timers.get_pin(i).poll(cx).is_pending());
                if pending.is_empty() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            timers.clear();
            busy += (registered - start) + due.elapsed();
        }
        busy
    }
}

/// Adds one entry for runtime `R` to `group`, hosted on its own thread while it runs.
fn entry<R: Runtime, S: Scenario>(group: &mut BenchmarkGroup<'_, WallTime>, scenario: S) {
    let host = Host::start::<R, _, _>(move |iters| scenario.run::<R>(iters));
    group.bench_function(R::NAME, |b| b.iter_custom(|iters| host.measure(iters)));
}

/// One group: the same scenario in coreio, tokio and smol.
fn compare<S: Scenario>(
    c: &mut Criterion,
    name: &str,
    scenario: S,
    configure: impl FnOnce(&mut BenchmarkGroup<'_, WallTime>),
) {
    let mut group = c.benchmark_group(name);
    configure(&mut group);
    entry::<Coreio, S>(&mut group, scenario);
    entry::<Tokio, S>(&mut group, scenario);
    entry::<Smol, S>(&mut group, scenario);
    group.finish();
}

fn runtimes(c: &mut Criterion) {
    compare(c, "spawn_join_1000", SpawnJoin, |g| {
        g.throughput(Throughput::Elements(SPAWN_TASKS as u64));
    });
    compare(c, "context_switch", YieldSwitch, |g| {
        g.throughput(Throughput::Elements(1));
    });
    compare(c, "context_switch_wake", WakeSwitch, |g| {
        g.throughput(Throughput::Elements(1));
    });
    compare(c, "timers_cancel_100k", TimersCancel, |g| {
        g.throughput(Throughput::Elements(TIMERS as u64));
        g.sample_size(10);
    });
    compare(c, "timers_fire_100k", TimersFire, |g| {
        g.throughput(Throughput::Elements(TIMERS as u64));
        g.sample_size(10);
    });
}

criterion_group!(benches, runtimes);
criterion_main!(benches);
