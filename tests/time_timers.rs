//! Timers: `sleep`, `sleep_until`, `timeout`, `interval`. Timers have 1 ms resolution and never
//! fire early; the only timing assertions here are "not before the deadline".

#[macro_use]
mod util;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use coreio::time::{
    Elapsed, Interval, MissedTickBehavior, interval, interval_at, sleep, sleep_until, timeout,
    timeout_at,
};

use util::{DropFlag, XorShift, block_on};

/// Polls `fut` exactly once with the current task's waker.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

/// Polls the next tick of `ticks` exactly once with the current task's waker.
async fn poll_tick_once(ticks: &mut Interval) -> Poll<Instant> {
    std::future::poll_fn(|cx| Poll::Ready(ticks.poll_tick(cx))).await
}

/// Spawns a task on the current core whose own sleep of `after` is in the core's wheel by the
/// time this returns; the task ends when the sleep does, checking it did not end early.
///
/// Called before a core's first other timer, this is the wheel's first entry: slab index 0,
/// generation 0, the same index and generation as the first timer of any other fresh wheel. A
/// moved timer whose key were taken for one of this wheel would refresh or cancel this entry
/// instead, and this task would never be woken (the test hangs, and nextest fails it).
async fn own_timer(after: Duration) -> coreio::JoinHandle<()> {
    let registered = Rc::new(Cell::new(false));
    let handle = coreio::spawn({
        let registered = registered.clone();
        async move {
            let mut own = sleep(after);
            assert!(poll_once(&mut own).await.is_pending());
            registered.set(true);
            (&mut own).await;
            assert!(
                Instant::now() >= own.deadline(),
                "the core's own timer ended early"
            );
        }
    });
    while !registered.get() {
        coreio::yield_now().await;
    }
    handle
}

/// Runs `a()` on one core and `b()` on another, each core with its own timer wheel: the two
/// cores of a 2-core runtime or, where this process may use a single CPU only, two one-core
/// runtimes on two threads (two wheels just the same, which is all the timer tests need).
/// Panics, after both finished, if either panicked.
fn on_two_cores<A, FA, B, FB>(backend: coreio::Backend, a: A, b: B)
where
    A: FnOnce() -> FA + Send,
    FA: Future<Output = ()> + 'static,
    B: FnOnce() -> FB + Send,
    FB: Future<Output = ()> + 'static,
{
    if util::two_or_fewer_cores() < 2 {
        std::thread::scope(|scope| {
            let a = scope.spawn(move || block_on(backend, a()));
            let b = scope.spawn(move || block_on(backend, b()));
            let (a, b) = (a.join(), b.join());
            a.expect("the first core's work panicked");
            b.expect("the second core's work panicked");
        });
        return;
    }
    let rt = coreio::Builder::new()
        .backend(backend)
        .cores(2)
        .build()
        .expect("a 2-core runtime");
    let first = rt.cores()[0];
    let jobs = Mutex::new((Some(a), Some(b)));
    let outputs = rt.run(|core| {
        let job: Pin<Box<dyn Future<Output = ()>>> = {
            let mut jobs = jobs.lock().unwrap();
            if core == first {
                Box::pin(jobs.0.take().expect("one first core")())
            } else {
                Box::pin(jobs.1.take().expect("one second core")())
            }
        };
        async move {
            util::assert_backend(backend);
            job.await
        }
    });
    for output in outputs {
        output.expect("a core failed");
    }
}

/// How long after its creation the timer that moves is due.
const MOVED_AFTER: Duration = Duration::from_millis(50);
/// How long after its registration the target core's own timer is due: later than the moved
/// timer is polled there, so the two are pending in the same wheel at the same time.
const OWN_AFTER: Duration = Duration::from_millis(100);

/// Records whether the wrapped future ever returned `Pending`.
struct WentPending<F> {
    inner: F,
    pending: bool,
}

impl<F: Future + Unpin> Future for WentPending<F> {
    type Output = (F::Output, bool);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.inner).poll(cx) {
            Poll::Ready(out) => Poll::Ready((out, self.pending)),
            Poll::Pending => {
                self.pending = true;
                Poll::Pending
            }
        }
    }
}

both_backends! {
    fn sleep_never_fires_early(backend: Backend) {
        block_on(backend, async {
            let durations_us = [0, 1, 10, 500, 999, 1000, 1001, 1500, 2000, 3333, 5000, 10_000, 17_000];
            for &us in &durations_us {
                let d = Duration::from_micros(us);
                let start = Instant::now();
                let s = sleep(d);
                assert!(s.deadline() >= start + d);
                s.await;
                let elapsed = start.elapsed();
                assert!(elapsed >= d, "sleep({d:?}) returned after {elapsed:?}");
            }
            // Many at once, from different tasks.
            let start = Instant::now();
            let handles: Vec<_> = durations_us
                .iter()
                .map(|&us| {
                    coreio::spawn(async move {
                        let d = Duration::from_micros(us);
                        sleep_until(start + d).await;
                        (d, start.elapsed())
                    })
                })
                .collect();
            for handle in handles {
                let (d, elapsed) = handle.await.unwrap();
                assert!(elapsed >= d, "sleep_until(start + {d:?}) returned after {elapsed:?}");
            }
        });
    }

    fn hundred_thousand_timers_fire_in_deadline_order(backend: Backend) {
        const TIMERS: usize = 100_000;
        const MAX_MS: u64 = 200;
        // Deadlines are whole milliseconds after a common base, so that two different offsets
        // always land in different 1 ms ticks (in the same order), whatever the wheel's origin.
        let (order, registered) = block_on(backend, async {
            let mut rng = XorShift::new(0x5EED_1234_ABCD);
            let base: Rc<Cell<Option<Instant>>> = Rc::default();
            let order: Rc<RefCell<Vec<(u64, bool)>>> =
                Rc::new(RefCell::new(Vec::with_capacity(TIMERS)));
            let early = Rc::new(Cell::new(0usize));
            let handles: Vec<_> = (0..TIMERS)
                .map(|_| {
                    let ms = rng.below(MAX_MS);
                    let (base, order, early) = (base.clone(), order.clone(), early.clone());
                    coreio::spawn(async move {
                        let deadline = base.get().unwrap() + Duration::from_millis(ms);
                        let ((), pending) = WentPending {
                            inner: sleep_until(deadline),
                            pending: false,
                        }
                        .await;
                        if Instant::now() < deadline {
                            early.set(early.get() + 1);
                        }
                        order.borrow_mut().push((ms, pending));
                    })
                })
                .collect();
            // The tasks are first polled after this; a margin lets most of them reach the
            // wheel before their deadline (those that do not are left out of the order check).
            base.set(Some(Instant::now() + Duration::from_millis(50)));
            for handle in handles {
                handle.await.unwrap();
            }
            assert_eq!(early.get(), 0, "timers fired before their deadline");
            let order = Rc::try_unwrap(order).unwrap().into_inner();
            let registered = order.iter().filter(|(_, pending)| *pending).count();
            (order, registered)
        });
        assert_eq!(order.len(), TIMERS, "every timer fired exactly once");
        println!("{registered} of {TIMERS} timers went through the wheel");
        assert!(registered > 0, "no timer went through the wheel: the test checked nothing");
        // Among the timers that waited in the wheel, completion order follows the deadline tick.
        let mut last = 0;
        for (i, &(ms, _)) in order.iter().filter(|(_, pending)| *pending).enumerate() {
            assert!(
                ms >= last,
                "timer #{i} to complete has deadline +{ms} ms, after one of +{last} ms"
            );
            last = ms;
        }
    }

    fn timeout_elapses_and_drops_the_future(backend: Backend) {
        block_on(backend, async {
            let (guard, dropped) = DropFlag::new();
            let start = Instant::now();
            let res = timeout(Duration::from_millis(3), async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            })
            .await;
            let _: Elapsed = res.expect_err("the pending future won");
            assert!(start.elapsed() >= Duration::from_millis(3));
            assert!(dropped.get(), "the timed-out future was not dropped");

            // The inner future's own timers are cancelled with it.
            let res = timeout(Duration::from_millis(1), sleep(Duration::from_secs(3600))).await;
            assert!(res.is_err());

            // Elapsed converts to io::ErrorKind::TimedOut.
            let err: std::io::Error = res.unwrap_err().into();
            assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        });
    }

    fn timeout_returns_ok_when_the_future_wins(backend: Backend) {
        block_on(backend, async {
            let res = timeout(Duration::from_secs(3600), async {
                sleep(Duration::from_millis(1)).await;
                5
            })
            .await;
            assert_eq!(res, Ok(5));
            // A ready future wins even against a zero or past deadline: it is polled first.
            assert_eq!(timeout(Duration::ZERO, async { 6 }).await, Ok(6));
            let past = Instant::now().checked_sub(Duration::from_secs(1)).unwrap_or_else(Instant::now);
            assert_eq!(timeout_at(past, async { 7 }).await, Ok(7));
            // into_inner gives the future back.
            let t = timeout(Duration::from_secs(1), async { 8 });
            assert_eq!(t.into_inner().await, 8);
        });
    }

    fn interval_ticks_are_never_early_and_spaced(backend: Backend) {
        block_on(backend, async {
            let period = Duration::from_millis(3);
            let start = Instant::now();
            let mut ticks = interval(period);
            assert_eq!(ticks.period(), period);
            let mut scheduled = Vec::new();
            for _ in 0..6 {
                let at = ticks.tick().await;
                let now = Instant::now();
                assert!(now >= at, "tick for {at:?} returned early, at {now:?}");
                scheduled.push(at);
            }
            assert!(scheduled[0] >= start && scheduled[0] <= Instant::now());
            for pair in scheduled.windows(2) {
                // Burst (the default) keeps the schedule: exactly one period apart.
                assert_eq!(pair[1] - pair[0], period);
            }
            // A zero period is raised to one tick.
            assert_eq!(interval(Duration::ZERO).period(), Duration::from_millis(1));
        });
    }

    fn interval_missed_tick_behaviours(backend: Backend) {
        block_on(backend, async {
            let period = Duration::from_millis(3);
            for behavior in [MissedTickBehavior::Burst, MissedTickBehavior::Delay, MissedTickBehavior::Skip] {
                let start = Instant::now();
                let mut ticks = interval_at(start, period);
                ticks.set_missed_tick_behavior(behavior);
                assert_eq!(ticks.tick().await, start);
                // Block the core thread: several ticks are missed.
                std::thread::sleep(Duration::from_millis(10));
                let before_late = Instant::now();
                let late = ticks.tick().await;
                assert_eq!(late, start + period, "{behavior:?}: the first missed tick is due at once");
                let next = ticks.tick().await;
                assert!(Instant::now() >= next, "{behavior:?}: early tick");
                match behavior {
                    MissedTickBehavior::Burst => assert_eq!(next, start + 2 * period),
                    MissedTickBehavior::Delay => assert!(
                        next >= before_late + period,
                        "Delay: next tick less than a period after the late one"
                    ),
                    MissedTickBehavior::Skip => {
                        assert!(next > before_late, "Skip: a missed tick was not skipped");
                        let offset = (next - start).as_nanos();
                        assert_eq!(offset % period.as_nanos(), 0, "Skip: the phase changed");
                    }
                }
            }
        });
    }

    fn far_deadline_can_be_polled_and_dropped(backend: Backend) {
        let out = block_on(backend, async {
            let year = Duration::from_secs(3600 * 24 * 365);
            let mut far = sleep(year);
            assert!(poll_once(&mut far).await.is_pending());
            assert!(!far.is_elapsed());
            drop(far);
            // Even "forever" does not overflow.
            let mut forever = sleep(Duration::MAX);
            assert!(poll_once(&mut forever).await.is_pending());
            drop(forever);
            // A far timer in another task, cancelled by abort.
            let task = coreio::spawn(sleep(year));
            coreio::yield_now().await;
            task.abort();
            assert!(task.await.unwrap_err().is_cancelled());
            // The core does not wait for the dropped timers.
            sleep(Duration::from_millis(1)).await;
            "done"
        });
        assert_eq!(out, "done");
    }

    fn sleep_until_the_past_completes_at_once(backend: Backend) {
        block_on(backend, async {
            let now = Instant::now();
            let past = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
            let mut s = sleep_until(past);
            assert!(s.is_elapsed());
            assert!(poll_once(&mut s).await.is_ready(), "a past deadline must not wait");
            let mut s = sleep(Duration::ZERO);
            assert!(poll_once(&mut s).await.is_ready(), "sleep(0) must not wait");
        });
    }

    fn sleep_reset_moves_the_deadline(backend: Backend) {
        block_on(backend, async {
            let mut s = sleep(Duration::from_secs(3600));
            assert!(poll_once(&mut s).await.is_pending());
            let start = Instant::now();
            let deadline = start + Duration::from_millis(2);
            s.reset(deadline);
            assert_eq!(s.deadline(), deadline);
            (&mut s).await;
            assert!(Instant::now() >= deadline);
            // Reset after completion: it can be awaited again.
            let again = Instant::now() + Duration::from_millis(1);
            s.reset(again);
            s.await;
            assert!(Instant::now() >= again);
        });
    }
}

// Timers that move: a timer future is `Send`, so it may be polled on one core (its entry is
// then in that core's wheel) and awaited on another, or outside the runtime that first polled
// it. It must then fire at its own deadline, wake the task that now awaits it, and leave the
// timers of the wheel it arrives in alone.
both_backends! {
    fn a_polled_sleep_moved_to_another_core_fires_there(backend: Backend) {
        let (tx, rx) = coreio::mesh::channel(1);
        on_two_cores(
            backend,
            move || async move {
                let mut moved = sleep(MOVED_AFTER);
                assert!(poll_once(&mut moved).await.is_pending());
                tx.send(moved).await.unwrap();
            },
            move || async move {
                let mut rx = rx;
                let own = own_timer(OWN_AFTER).await;
                let mut moved = rx.recv().await.unwrap();
                (&mut moved).await;
                assert!(Instant::now() >= moved.deadline(), "the moved sleep ended early");
                own.await.unwrap();
            },
        );
    }

    fn a_polled_interval_moved_to_another_core_keeps_its_period(backend: Backend) {
        const PERIOD: Duration = Duration::from_millis(20);
        let (tx, rx) = coreio::mesh::channel(1);
        on_two_cores(
            backend,
            move || async move {
                let mut ticks = interval(PERIOD);
                let first = ticks.tick().await;
                assert!(poll_tick_once(&mut ticks).await.is_pending());
                tx.send((ticks, first)).await.unwrap();
            },
            move || async move {
                let mut rx = rx;
                let own = own_timer(OWN_AFTER).await;
                let (mut ticks, first) = rx.recv().await.unwrap();
                // Six ticks (120 ms) outlast the core's own timer (100 ms): both fire meanwhile.
                for n in 1..=6 {
                    let at = ticks.tick().await;
                    assert_eq!(at, first + PERIOD * n, "tick {n} after the move is off schedule");
                    assert!(Instant::now() >= at, "tick {n} after the move came early");
                }
                own.await.unwrap();
            },
        );
    }

    fn a_polled_timeout_moved_to_another_core_elapses_there(backend: Backend) {
        let (tx, rx) = coreio::mesh::channel(1);
        on_two_cores(
            backend,
            move || async move {
                let deadline = Instant::now() + MOVED_AFTER;
                let mut limited = timeout(MOVED_AFTER, std::future::pending::<()>());
                assert!(poll_once(&mut limited).await.is_pending());
                tx.send((limited, deadline)).await.unwrap();
            },
            move || async move {
                let mut rx = rx;
                let own = own_timer(OWN_AFTER).await;
                let (limited, deadline) = rx.recv().await.unwrap();
                let _: Elapsed = limited.await.expect_err("a pending future cannot win");
                assert!(Instant::now() >= deadline, "the moved timeout elapsed early");
                own.await.unwrap();
            },
        );
    }

    fn dropping_or_resetting_a_moved_sleep_spares_the_cores_own_timers(backend: Backend) {
        let (tx, rx) = coreio::mesh::channel(1);
        on_two_cores(
            backend,
            move || async move {
                let mut dropped = sleep(MOVED_AFTER);
                let mut reset = sleep(MOVED_AFTER);
                assert!(poll_once(&mut dropped).await.is_pending());
                assert!(poll_once(&mut reset).await.is_pending());
                tx.send((dropped, reset)).await.unwrap();
            },
            move || async move {
                let mut rx = rx;
                // Two own timers, with the keys of the two moved sleeps on a shared key space.
                let own = [own_timer(OWN_AFTER).await, own_timer(OWN_AFTER).await];
                let (dropped, mut reset) = rx.recv().await.unwrap();
                drop(dropped);
                let again = Instant::now() + Duration::from_millis(10);
                reset.reset(again);
                (&mut reset).await;
                assert!(Instant::now() >= again, "the reset sleep ended early");
                for own in own {
                    own.await.unwrap();
                }
            },
        );
    }

    fn a_sleep_polled_in_one_runtime_completes_in_the_next(backend: Backend) {
        // The first runtime hands the polled sleep out, to be awaited under the second.
        #[allow(clippy::async_yields_async)]
        let mut moved = block_on(backend, async {
            let mut moved = sleep(MOVED_AFTER);
            assert!(poll_once(&mut moved).await.is_pending());
            moved
        });
        block_on(backend, async move {
            let own = own_timer(OWN_AFTER).await;
            (&mut moved).await;
            assert!(Instant::now() >= moved.deadline(), "the moved sleep ended early");
            own.await.unwrap();
        });
    }

    fn dropping_a_sleep_of_an_ended_runtime_spares_the_next_runtimes_timers(backend: Backend) {
        let (dropped, mut reset) = block_on(backend, async {
            let mut dropped = sleep(MOVED_AFTER);
            let mut reset = sleep(MOVED_AFTER);
            assert!(poll_once(&mut dropped).await.is_pending());
            assert!(poll_once(&mut reset).await.is_pending());
            (dropped, reset)
        });
        block_on(backend, async move {
            let own = [own_timer(OWN_AFTER).await, own_timer(OWN_AFTER).await];
            drop(dropped);
            let again = Instant::now() + Duration::from_millis(10);
            reset.reset(again);
            (&mut reset).await;
            assert!(Instant::now() >= again, "the reset sleep ended early");
            for own in own {
                own.await.unwrap();
            }
        });
    }
}

// Periods so long that the next tick is beyond any `Instant` arithmetic: the schedule is
// clamped to the module's far future, so the first tick comes at once and the next one never.
both_backends! {
    fn interval_with_a_huge_period_ticks_once_then_waits(backend: Backend) {
        block_on(backend, async {
            let behaviors =
                [MissedTickBehavior::Burst, MissedTickBehavior::Delay, MissedTickBehavior::Skip];
            let periods = [Duration::MAX, Duration::from_secs(u64::MAX / 4)];
            for behavior in behaviors {
                for period in periods {
                    let start = Instant::now();
                    let mut ticks = interval(period);
                    ticks.set_missed_tick_behavior(behavior);
                    assert_eq!(ticks.period(), period);
                    let first = ticks.tick().await;
                    assert!(first >= start && first <= Instant::now(), "{behavior:?}: first tick");
                    let second = timeout(Duration::from_millis(5), ticks.tick()).await;
                    assert!(second.is_err(), "{behavior:?}, {period:?}: a second tick came");
                    // Still usable, and still not due, after the timed-out wait.
                    assert!(poll_tick_once(&mut ticks).await.is_pending());
                }
            }
        });
    }

    fn interval_at_with_a_huge_period_ticks_at_start_then_waits(backend: Backend) {
        block_on(backend, async {
            let behaviors =
                [MissedTickBehavior::Burst, MissedTickBehavior::Delay, MissedTickBehavior::Skip];
            for behavior in behaviors {
                let start = Instant::now() + Duration::from_millis(2);
                let mut ticks = interval_at(start, Duration::MAX);
                ticks.set_missed_tick_behavior(behavior);
                assert_eq!(ticks.tick().await, start);
                assert!(Instant::now() >= start, "{behavior:?}: the first tick came early");
                let second = timeout(Duration::from_millis(5), ticks.tick()).await;
                assert!(second.is_err(), "{behavior:?}: a second tick came");
            }
        });
    }
}

#[test]
fn polling_a_sleep_outside_a_runtime_panics() {
    let err = std::panic::catch_unwind(|| {
        let mut s = sleep(Duration::from_secs(1));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = Pin::new(&mut s).poll(&mut cx);
    })
    .unwrap_err();
    let msg = util::panic_message(&*err);
    assert!(msg.contains("inside a coreio runtime"), "{msg}");
}
