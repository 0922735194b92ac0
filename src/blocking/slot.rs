//! The one-shot slot a blocking job's outcome travels back in, from a pool thread to the task
//! awaiting it.
//!
//! The pool thread holds the [`Completer`], the awaiting task the [`Waiter`]. The outcome is
//! the closure's output or its panic. Three endings: the completer stores the outcome and wakes
//! the waiter's last waker; the completer is dropped without an outcome (its job was discarded
//! before it ran, at the pool's shutdown), which the waiter reads as `None`; or the waiter is
//! dropped first, and the outcome is then dropped on the pool thread.
//!
//! The state is one small mutex from [`crate::loom`] (uncontended but for the one moment both
//! sides meet), and the `loom_tests` module below checks the hand-over. Nothing here runs user
//! code while holding the lock: wakers are woken and outcomes dropped after it is released.

use std::future::Future;
use std::pin::Pin;
use std::sync::PoisonError;
use std::task::{Context, Poll, Waker};

use crate::loom::{Arc, Mutex, MutexGuard};
use crate::panic::Payload;

/// What a job ended with: its closure's output, or the payload of its panic.
pub(crate) type Outcome<T> = Result<T, Payload>;

struct Slot<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    outcome: Option<Outcome<T>>,
    waker: Option<Waker>,
    /// The completer is gone, with or without storing an outcome.
    completed: bool,
    /// The waiter is gone: an outcome delivered now is dropped by the completer.
    abandoned: bool,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock, so poisoning cannot carry a broken state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connected pair: the completer goes with the job to a pool thread.
pub(crate) fn slot<T>() -> (Completer<T>, Waiter<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State {
            outcome: None,
            waker: None,
            completed: false,
            abandoned: false,
        }),
    });
    (
        Completer {
            slot: Some(slot.clone()),
        },
        Waiter { slot },
    )
}

/// The pool thread's half.
pub(crate) struct Completer<T> {
    /// `None` once the outcome was delivered.
    slot: Option<Arc<Slot<T>>>,
}

impl<T> Completer<T> {
    /// Delivers `outcome` and wakes the waiter; the outcome is dropped here if the waiter is
    /// gone.
    pub(crate) fn complete(mut self, outcome: Outcome<T>) {
        if let Some(slot) = self.slot.take() {
            finish(&slot, Some(outcome));
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            finish(&slot, None);
        }
    }
}

/// Marks the slot completed (with `outcome`, if any) and wakes the waiter, outside the lock.
fn finish<T>(slot: &Slot<T>, outcome: Option<Outcome<T>>) {
    let mut state = slot.lock();
    state.completed = true;
    let unwanted = if state.abandoned {
        outcome
    } else {
        state.outcome = outcome;
        None
    };
    let waker = state.waker.take();
    drop(state);
    // The outcome's `Drop` is user code (the closure's output): never under the lock.
    drop(unwanted);
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The awaiting task's half: resolves to the outcome, or `None` when the job was discarded
/// without running.
pub(crate) struct Waiter<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Waiter<T> {
    /// Whether the completer is done (an outcome waits, or none ever will).
    pub(crate) fn is_completed(&self) -> bool {
        self.slot.lock().completed
    }
}

impl<T> Future for Waiter<T> {
    type Output = Option<Outcome<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.lock();
        if state.completed {
            return Poll::Ready(state.outcome.take());
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => {
                let previous = state.waker.replace(cx.waker().clone());
                drop(state);
                // A waker's `Drop` may be user code too.
                drop(previous);
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for Waiter<T> {
    fn drop(&mut self) {
        let mut state = self.slot.lock();
        state.abandoned = true;
        let outcome = state.outcome.take();
        let waker = state.waker.take();
        drop(state);
        drop((outcome, waker));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // std's, not the shim's: these tests run outside loom, and `Waker::from` needs std's `Arc`.
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountWakes(AtomicUsize);
    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll<T>(waiter: &mut Waiter<T>, wakes: &Arc<CountWakes>) -> Poll<Option<Outcome<T>>> {
        let waker = Waker::from(wakes.clone());
        Pin::new(waiter).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn an_outcome_wakes_the_waiting_task_once() {
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let (completer, mut waiter) = slot();
        assert!(poll(&mut waiter, &wakes).is_pending());
        assert!(!waiter.is_completed());
        completer.complete(Ok(7));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(waiter.is_completed());
        assert!(matches!(
            poll(&mut waiter, &wakes),
            Poll::Ready(Some(Ok(7)))
        ));
    }

    #[test]
    fn a_discarded_job_resolves_to_none() {
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let (completer, mut waiter) = slot::<u32>();
        assert!(poll(&mut waiter, &wakes).is_pending());
        drop(completer);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(matches!(poll(&mut waiter, &wakes), Poll::Ready(None)));
    }

    #[test]
    fn an_outcome_for_a_dropped_waiter_is_dropped_by_the_completer() {
        let value = Arc::new(());
        let (completer, waiter) = slot();
        drop(waiter);
        completer.complete(Ok(value.clone()));
        assert_eq!(Arc::strong_count(&value), 1);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The pool thread and the awaiting task on two loom threads: every interleaving of the
    //! job's completion (or its discarding) with the waiter's polls and drop. The waiter is
    //! driven by `loom::future::block_on`, so a lost wakeup is a thread parked forever (a loom
    //! deadlock); the outcome is a loom `Arc`, so one dropped twice fails, and one leaked fails
    //! loom's leak check.

    use std::pin::pin;

    use loom::future::block_on;
    use loom::thread;

    use super::*;

    #[test]
    fn loom_blocking_completion_wakes_the_waiting_task() {
        crate::loom::model(None, || {
            let (completer, waiter) = slot();
            let value = Arc::new(7);
            let pool_thread = {
                let value = value.clone();
                thread::spawn(move || completer.complete(Ok(value)))
            };
            let received = block_on(waiter).expect("completed").expect("no panic");
            assert!(Arc::ptr_eq(&received, &value));
            pool_thread.join().unwrap();
        });
    }

    #[test]
    fn loom_blocking_discarded_job_wakes_the_waiting_task() {
        crate::loom::model(None, || {
            let (completer, waiter) = slot::<u32>();
            let pool_thread = thread::spawn(move || drop(completer));
            assert!(block_on(waiter).is_none());
            pool_thread.join().unwrap();
        });
    }

    /// The waiter polls once (registering its waker) and is dropped while the job completes:
    /// the outcome is dropped exactly once, by whichever side holds it last.
    #[test]
    fn loom_blocking_completion_races_the_waiter_drop() {
        crate::loom::model(None, || {
            let (completer, waiter) = slot();
            let value = Arc::new(());
            let pool_thread = {
                let value = value.clone();
                thread::spawn(move || completer.complete(Ok(value)))
            };
            {
                let mut waiter = pin!(waiter);
                let polled = waiter
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()));
                drop(polled);
            } // The waiter drops here, perhaps before the completion, perhaps after.
            pool_thread.join().unwrap();
            assert_eq!(
                Arc::strong_count(&value),
                1,
                "the outcome must be dropped once"
            );
        });
    }
}
