//! Timers: [`sleep`], [`sleep_until`], [`timeout`] and [`interval`].
//!
//! Each core owns one hierarchical timer wheel with a resolution of **1 ms**: a deadline is
//! rounded *up* to the next millisecond tick, so a timer never fires before its deadline, and
//! may fire up to about 1 ms after it (plus whatever the core is busy with). The core loop
//! sleeps in its I/O driver until the wheel's next expiration. Cancelling a timer (dropping its
//! future) is O(1). Deadlines far in the future (days, years) are fine.
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! coreio::block_on(async {
//!     let start = Instant::now();
//!     coreio::time::sleep(Duration::from_millis(5)).await;
//!     assert!(start.elapsed() >= Duration::from_millis(5));
//!
//!     let slow = coreio::time::sleep(Duration::from_secs(60));
//!     let res = coreio::time::timeout(Duration::from_millis(1), slow).await;
//!     assert!(res.is_err());
//! }).unwrap();
//! ```
//!
//! # Timers that move
//!
//! [`Sleep`], [`Timeout`] and [`Interval`] are `Send`: one may be polled on one core and then
//! awaited on another (a session's `Interval` handed off with its connection, a future sent
//! through a [`mesh::channel`](crate::mesh::channel)), or be polled under one runtime and
//! awaited under a later one on the same thread. A timer's entry is in the wheel of the core
//! that polled it, and its key names that wheel: every wheel has an id unique in the process,
//! and a key only ever resolves in the wheel that issued it. So a timer polled where its entry
//! is not inserts a fresh entry in the current core's wheel, at its own deadline, and forgets
//! the old key; dropping or resetting it cancels its entry only where the entry is, and touches
//! nothing elsewhere. On its own core a timer pays one integer comparison for this per poll.
//!
//! The forgotten entry is not cancelled: the wheel holding it belongs to another thread (or to
//! a runtime that has ended), and this module never reaches into it. It expires *lazily*: until
//! the timer's deadline it keeps a slot and a clone of the waker of the task that last polled
//! the timer there, and the old core wakes for it, then wakes that task once, spuriously (which
//! futures allow). So each move leaves at most one stale entry behind, alive no longer than
//! the timer's deadline or that core (a moved `sleep(Duration::MAX)` stays until its old core
//! stops), holding a waker, which keeps a task's allocation but not its future. Cancelling it
//! through the old core's mailbox instead would cost every move and every drop of a moved
//! timer an allocation and perhaps a wake-up of that core, and could not reach a runtime that
//! has ended; the lazy way costs nothing until a timer actually moves.

// The wheel itself is in `wheel`. This module owns the per-core `Timers` and the timer futures.
// It must never read the clock more than once per poll, never let a timer refresh or cancel an
// entry of a wheel other than the one it registered in, and never keep a waker registered for a
// dropped future — save the stale entry that a timer which moved leaves behind in its old wheel
// (see "Timers that move" above).

mod wheel;

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::context;
use wheel::{TimerKey, TimerWheel};

/// Length of one wheel tick.
const TICK: Duration = Duration::from_millis(1);

/// The furthest a deadline is taken to be (about 30 years); later ones are clamped to it, so
/// `sleep(Duration::MAX)` sleeps "forever", and an `Interval` whose next tick would be later
/// waits that long, instead of overflowing `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// One core's timers: the wheel and the instant its tick 0 stands for.
pub(crate) struct Timers {
    wheel: RefCell<TimerWheel<Waker>>,
    origin: Instant,
    /// The wakers of the timers `fire_due` found due, woken once the wheel is released; kept
    /// for its capacity.
    due: RefCell<Vec<Waker>>,
}

impl Timers {
    pub(crate) fn new() -> Self {
        Timers {
            wheel: RefCell::new(TimerWheel::with_capacity(1024)),
            origin: Instant::now(),
            due: RefCell::new(Vec::new()),
        }
    }

    /// The first tick at or after `deadline` (rounded up: never early).
    fn tick_at_or_after(&self, deadline: Instant) -> u64 {
        let since = deadline.saturating_duration_since(self.origin);
        let nanos = since.as_nanos().div_ceil(TICK.as_nanos());
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }

    /// The last tick at or before `now`.
    fn tick_at_or_before(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        u64::try_from(since.as_nanos() / TICK.as_nanos()).unwrap_or(u64::MAX)
    }

    /// How long the core may sleep before the next timer is due; `None` when no timer is set.
    pub(crate) fn time_to_next(&self, now: Instant) -> Option<Duration> {
        let tick = self.wheel.borrow().next_expiration()?;
        // One tick is one millisecond.
        let at = self
            .origin
            .checked_add(Duration::from_millis(tick))
            .unwrap_or(now + FAR_FUTURE);
        Some(at.saturating_duration_since(now))
    }

    /// Wakes every timer whose deadline is at or before `now`.
    ///
    /// A waker is user code (a combinator may poll a `Sleep` with a waker of its own): the due
    /// ones are collected first and woken after the wheel is released, so one that panics
    /// leaves the wheel consistent and the others still woken (the first panic is resumed
    /// afterwards, for the core to report), and one that touches timers finds them free.
    pub(crate) fn fire_due(&self, now: Instant) {
        let tick = self.tick_at_or_before(now);
        let mut due = {
            let mut wheel = self.wheel.borrow_mut();
            // The common case on every pass of the core loop: nothing is due.
            if wheel.next_expiration().is_none_or(|next| next > tick) {
                return;
            }
            let mut due = std::mem::take(&mut *self.due.borrow_mut());
            wheel.advance(tick, |_, waker| due.push(waker));
            due
        };
        let mut first_panic = None;
        for waker in due.drain(..) {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(move || waker.wake())) {
                first_panic.get_or_insert(payload);
            }
        }
        *self.due.borrow_mut() = due;
        if let Some(payload) = first_panic {
            resume_unwind(payload);
        }
    }

    /// Registers (or refreshes) the waker of a timer due at `deadline` whose entry, if any, is
    /// `key`, and returns the key of its entry in this wheel.
    ///
    /// A `key` of another wheel (the timer moved here from another core, or from a runtime that
    /// has ended) finds nothing here, since keys only resolve in the wheel that issued them, so
    /// the timer gets a fresh entry at its own deadline; its old entry expires lazily where it
    /// is (see the module docs). So does a key of this wheel whose entry has fired.
    fn register(&self, key: Option<TimerKey>, deadline: Instant, waker: &Waker) -> TimerKey {
        let mut wheel = self.wheel.borrow_mut();
        if let Some(key) = key
            && let Some(current) = wheel.get_mut(key)
        {
            if !current.will_wake(waker) {
                current.clone_from(waker);
            }
            return key;
        }
        wheel.insert(self.tick_at_or_after(deadline), waker.clone())
    }

    /// Cancels the entry `key` if it is one of this wheel's; a key of another wheel is ignored
    /// (its entry expires lazily there).
    fn cancel(&self, key: TimerKey) {
        if let Ok(mut wheel) = self.wheel.try_borrow_mut() {
            wheel.cancel(key);
        }
    }
}

/// `from + by`, clamped to `now + FAR_FUTURE` (also where the sum would overflow `Instant`).
///
/// `now` must be a reading of the clock: `now + FAR_FUTURE` is then centuries away from
/// overflowing, unlike `from + FAR_FUTURE` for an arbitrary `from`.
fn deadline_from(from: Instant, by: Duration, now: Instant) -> Instant {
    let far = now + FAR_FUTURE;
    match from.checked_add(by) {
        Some(at) if at <= far => at,
        _ => far,
    }
}

fn deadline_after(duration: Duration) -> Instant {
    let now = Instant::now();
    deadline_from(now, duration, now)
}

/// Waits until `duration` has elapsed.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(deadline_after(duration))
}

/// Waits until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        key: None,
    }
}

/// Future returned by [`sleep`] and [`sleep_until`].
///
/// It may be moved to another core, or outlive its runtime, after it was polled: it then ends at
/// its own deadline wherever it is awaited (see the [module docs](self#timers-that-move)).
///
/// # Panics
///
/// Polling it outside a coreio runtime panics: there is no timer wheel to wake it.
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    /// The entry in the wheel of the core that last polled this sleep; that wheel's id is part
    /// of the key, so on any other core it resolves to nothing.
    key: Option<TimerKey>,
}

impl Sleep {
    /// The instant this sleep ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Moves the deadline; the sleep can be awaited again afterwards.
    ///
    /// The old entry is cancelled if it is in the current core's wheel; one left in another
    /// core's wheel (the sleep moved) expires there lazily.
    pub fn reset(&mut self, deadline: Instant) {
        self.cancel();
        self.deadline = deadline;
    }

    /// Forgets the entry; cancels it when it is in the current core's wheel (outside a runtime,
    /// or on another core, there is nothing this thread may touch).
    fn cancel(&mut self) {
        if let Some(key) = self.key.take() {
            context::with(|ctx| ctx.timers.cancel(key));
        }
    }

    /// [`poll`](Future::poll), with the time the caller read from the clock.
    #[track_caller]
    fn poll_at(&mut self, now: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if now >= self.deadline {
            self.cancel();
            return Poll::Ready(());
        }
        let (key, deadline) = (self.key, self.deadline);
        let key = context::expect("coreio::time::Sleep::poll", |ctx| {
            ctx.timers.register(key, deadline, cx.waker())
        });
        self.key = Some(key);
        Poll::Pending
    }
}

impl Future for Sleep {
    type Output = ();

    #[track_caller]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_at(Instant::now(), cx)
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.cancel();
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// The error of a [`timeout`] whose deadline came first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::ErrorKind::TimedOut.into()
    }
}

/// Runs `future` with a time limit: `Ok(output)` if it finishes first, `Err(Elapsed)` otherwise,
/// in which case the future is dropped (cancelling whatever it had in flight).
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    timeout_at(deadline_after(duration), future)
}

/// Like [`timeout`], with an absolute deadline.
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep_until(deadline),
    }
}

/// Future returned by [`timeout`].
///
/// Like [`Sleep`], it may be moved to another core after it was polled, and keeps its deadline.
#[must_use = "futures do nothing unless awaited"]
pub struct Timeout<F> {
    future: F,
    sleep: Sleep,
}

impl<F> Timeout<F> {
    /// Gives the inner future back.
    pub fn into_inner(self) -> F {
        self.future
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned (never moved out of a pinned `Timeout`);
        // `sleep` is `Unpin` and not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above; `this.future` is not moved.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        if let Poll::Ready(output) = future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match Pin::new(&mut this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What an [`Interval`] does when ticks were missed because the task ran late.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissedTickBehavior {
    /// Fire the missed ticks back to back until caught up (keeps the average rate).
    #[default]
    Burst,
    /// Restart the schedule from now: the next tick is one period after this one.
    Delay,
    /// Skip the missed ticks and keep to the original schedule's phase.
    Skip,
}

/// Ticks every `period`, the first tick at once.
///
/// A zero period is raised to one timer tick (1 ms) rather than spinning. A tick later than
/// about 30 years ahead is taken to be due then, like every deadline: a period too long for
/// `Instant` (`Duration::MAX`, say) gives one tick at once and then waits "forever".
///
/// ```
/// use std::time::Duration;
///
/// coreio::block_on(async {
///     let mut ticks = coreio::time::interval(Duration::from_millis(2));
///     let first = ticks.tick().await;
///     let second = ticks.tick().await;
///     assert!(second - first >= Duration::from_millis(2));
/// }).unwrap();
/// ```
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

/// Ticks every `period`, the first tick at `start`; see [`interval`].
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    Interval {
        next: start,
        period: period.max(TICK),
        missed: MissedTickBehavior::default(),
        sleep: sleep_until(start),
    }
}

/// A periodic timer; see [`interval`]. Also a never-ending `Stream` of tick instants.
///
/// Like [`Sleep`], it may be moved to another core after it was polled (handed off with a
/// connection, say), and keeps its schedule.
#[derive(Debug)]
pub struct Interval {
    next: Instant,
    period: Duration,
    missed: MissedTickBehavior,
    sleep: Sleep,
}

impl Interval {
    /// Waits for the next tick and returns the instant it was scheduled for.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick: the building block of [`tick`](Interval::tick) and of the
    /// `Stream` implementation.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        let now = Instant::now();
        if self.sleep.poll_at(now, cx).is_pending() {
            return Poll::Pending;
        }
        let scheduled = self.next;
        self.next = next_tick(scheduled, now, self.period, self.missed);
        self.sleep.reset(self.next);
        Poll::Ready(scheduled)
    }

    /// Sets what happens to ticks missed while the task was busy.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed = behavior;
    }

    /// The interval's period.
    pub fn period(&self) -> Duration {
        self.period
    }
}

/// The tick after the one scheduled for `scheduled` and taken at `now` (`>= scheduled`), every
/// `period` (non-zero), under `missed`. Clamped to `now + FAR_FUTURE` like every deadline, so
/// no period, however long, overflows `Instant`.
fn next_tick(
    scheduled: Instant,
    now: Instant,
    period: Duration,
    missed: MissedTickBehavior,
) -> Instant {
    let following = deadline_from(scheduled, period, now);
    if following > now {
        return following;
    }
    match missed {
        MissedTickBehavior::Burst => following,
        MissedTickBehavior::Delay => deadline_from(now, period, now),
        MissedTickBehavior::Skip => {
            // The first tick of the original schedule after `now`, counted in nanoseconds (a
            // `u128` holds any number of periods a real delay can span).
            let period = period.as_nanos();
            let behind = now.duration_since(scheduled).as_nanos();
            let ahead = (behind / period + 1).saturating_mul(period);
            let ahead = u64::try_from(ahead).map_or(Duration::MAX, Duration::from_nanos);
            deadline_from(scheduled, ahead, now)
        }
    }
}

impl futures_core::Stream for Interval {
    type Item = Instant;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Instant>> {
        self.get_mut().poll_tick(cx).map(Some)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// A waker that counts its wakes.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    fn wakes(count: &Count) -> usize {
        count.0.load(Ordering::SeqCst)
    }

    /// A waker that panics when woken.
    struct Bomb;

    impl Wake for Bomb {
        fn wake(self: Arc<Self>) {
            panic!("timer waker bomb");
        }
    }

    #[test]
    fn a_panicking_waker_leaves_the_wheel_sound_and_the_others_woken() {
        let timers = Timers::new();
        let now = Instant::now();
        let due = now + Duration::from_millis(1);
        let (before, before_waker) = counting();
        let (after, after_waker) = counting();
        timers.register(None, due, &before_waker);
        timers.register(None, due, &Waker::from(Arc::new(Bomb)));
        timers.register(None, due, &after_waker);
        let later = timers.register(None, now + Duration::from_secs(60), &before_waker);
        let fired = catch_unwind(AssertUnwindSafe(|| {
            timers.fire_due(now + Duration::from_millis(2))
        }));
        let payload = fired.expect_err("the bomb's panic is resumed");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"timer waker bomb"));
        // The timers due with the bomb were woken all the same, and the wheel is usable: the
        // later timer is still there, and can be cancelled.
        assert_eq!((wakes(&before), wakes(&after)), (1, 1));
        assert!(timers.wheel.borrow().contains(later));
        timers.cancel(later);
        assert!(timers.wheel.borrow().is_empty());
    }

    #[test]
    fn a_timer_from_another_wheel_gets_its_own_entry_and_cancels_nothing() {
        let (old_core, new_core) = (Timers::new(), Timers::new());
        let now = Instant::now();
        let (old_task, old_waker) = counting();
        let (own_task, own_waker) = counting();
        let (new_task, new_waker) = counting();
        // Each is its wheel's first entry: same slab index, same generation.
        let moved = old_core.register(None, now + Duration::from_millis(5), &old_waker);
        let own = new_core.register(None, now + Duration::from_millis(10), &own_waker);
        // Polled on the new core, the moved timer must not take over `own`'s entry.
        let moved_here = new_core.register(Some(moved), now + Duration::from_millis(5), &new_waker);
        assert_ne!(moved_here, own);
        assert_ne!(moved_here, moved);
        // Its old key, used to cancel on the new core (a drop or reset there), cancels nothing.
        new_core.cancel(moved);
        // Refreshing on its own wheel still keeps the key (the hot path).
        assert_eq!(
            new_core.register(Some(moved_here), now + Duration::from_millis(5), &new_waker),
            moved_here
        );
        new_core.fire_due(now + Duration::from_secs(1));
        assert_eq!(wakes(&own_task), 1, "the new core's own timer was lost");
        assert_eq!(
            wakes(&new_task),
            1,
            "the moved timer did not fire on its new core"
        );
        // The stale entry expires lazily in the old wheel: one spurious wake, then nothing.
        assert_eq!(wakes(&old_task), 0);
        old_core.fire_due(now + Duration::from_secs(1));
        assert_eq!(wakes(&old_task), 1);
        assert!(old_core.time_to_next(now).is_none() && new_core.time_to_next(now).is_none());
    }

    const BEHAVIORS: [MissedTickBehavior; 3] = [
        MissedTickBehavior::Burst,
        MissedTickBehavior::Delay,
        MissedTickBehavior::Skip,
    ];

    #[test]
    fn a_tick_beyond_instant_is_clamped_to_the_far_future() {
        let now = Instant::now();
        for missed in BEHAVIORS {
            for period in [
                Duration::MAX,
                Duration::from_secs(u64::MAX / 4),
                FAR_FUTURE * 2,
            ] {
                assert_eq!(next_tick(now, now, period, missed), now + FAR_FUTURE);
            }
            assert_eq!(
                next_tick(now, now, Duration::from_millis(3), missed),
                now + Duration::from_millis(3)
            );
        }
    }

    #[test]
    fn missed_ticks_with_long_periods_do_not_overflow() {
        let now = Instant::now();
        // Linux's `Instant` reaches before boot; elsewhere there is nothing to check.
        let Some(scheduled) = now.checked_sub(FAR_FUTURE + FAR_FUTURE / 3) else {
            return;
        };
        // The following tick is due already: each behaviour takes its own branch.
        let period = FAR_FUTURE + FAR_FUTURE / 6;
        let following = scheduled + period;
        assert!(following <= now);
        let far = now + FAR_FUTURE;
        assert_eq!(
            next_tick(scheduled, now, period, MissedTickBehavior::Burst),
            following
        );
        assert_eq!(
            next_tick(scheduled, now, period, MissedTickBehavior::Delay),
            far
        );
        assert_eq!(
            next_tick(scheduled, now, period, MissedTickBehavior::Skip),
            far
        );
        for missed in BEHAVIORS {
            assert!(next_tick(scheduled, now, Duration::MAX, missed) <= far);
        }
    }

    #[test]
    fn skip_keeps_the_phase_however_far_behind() {
        let now = Instant::now();
        let period = Duration::from_millis(1);
        // More than u32::MAX periods behind (about 50 days).
        let Some(scheduled) = now.checked_sub(Duration::from_secs(60 * 24 * 3600) + period / 3)
        else {
            return;
        };
        let next = next_tick(scheduled, now, period, MissedTickBehavior::Skip);
        assert!(next > now && next <= now + period, "{:?}", next - now);
        assert_eq!((next - scheduled).as_nanos() % period.as_nanos(), 0);
    }

    #[test]
    fn cancel_of_a_wheels_own_key_still_cancels() {
        let timers = Timers::new();
        let now = Instant::now();
        let (task, waker) = counting();
        let key = timers.register(None, now + Duration::from_millis(1), &waker);
        timers.cancel(key);
        assert!(timers.time_to_next(now).is_none());
        timers.fire_due(now + Duration::from_secs(1));
        assert_eq!(wakes(&task), 0);
    }
}
