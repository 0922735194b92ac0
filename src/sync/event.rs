//! [`Event`]: a one-shot, cross-thread flag that tasks can await.
//!
//! # The wake protocol: flag first, then the lock
//!
//! `set` raises the flag, then takes the waiter list under its lock and wakes every waker in
//! it. A waiter that finds the flag down takes the lock, looks at the flag again and only then
//! registers its waker. So no wakeup is lost: a waiter that registered before `set` took the
//! lock is in the list `set` takes, and one that took the lock after `set` sees the raised
//! flag. A waiter dropped while registered removes its waker (if `set` has not taken it
//! already), so the list never keeps a dead task's waker.
//!
//! The flag and the lock come from [`crate::loom`], and the `loom_tests` module below checks
//! the protocol with loom (`--cfg loom`).

// This module owns the flag, the list of waiting tasks' wakers and the protocol between them. It
// must never block a thread (waiting is a future) and never poll a task: it only calls wakers.

use std::future::Future;
use std::pin::Pin;
use std::sync::PoisonError;
use std::task::{Context, Poll, Waker};

use slab::Slab;

use crate::loom::{Arc, AtomicBool, Mutex, MutexGuard, Ordering};

/// A flag that is set once and wakes every task waiting for it, on any core or thread.
///
/// Typical use: a signal-handling thread sets it, and each core's root future awaits it to
/// stop. `Event` is a cheap handle; clones share the same flag.
///
/// ```
/// let stop = coreio::sync::Event::new();
/// let setter = stop.clone();
/// std::thread::spawn(move || setter.set());
/// coreio::block_on(async move { stop.wait().await }).unwrap();
/// ```
#[derive(Clone, Default, Debug)]
pub struct Event {
    inner: Arc<Inner>,
}

#[derive(Default, Debug)]
struct Inner {
    set: AtomicBool,
    waiters: Mutex<Slab<Waker>>,
}

impl Event {
    /// A new, unset event.
    pub fn new() -> Event {
        Event::default()
    }

    /// Sets the event and wakes every waiter. Setting it again does nothing.
    pub fn set(&self) {
        if self.inner.set.swap(true, Ordering::SeqCst) {
            return;
        }
        let waiters = std::mem::take(&mut *self.lock());
        for (_, waker) in waiters {
            waker.wake();
        }
    }

    /// Whether the event has been set.
    pub fn is_set(&self) -> bool {
        self.inner.set.load(Ordering::SeqCst)
    }

    /// Waits until the event is set (at once if it already is).
    pub fn wait(&self) -> EventWait {
        EventWait {
            event: self.clone(),
            key: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slab<Waker>> {
        // A panic while holding the lock cannot leave the slab inconsistent: keep going.
        self.inner
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Future returned by [`Event::wait`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct EventWait {
    event: Event,
    key: Option<usize>,
}

impl Future for EventWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.is_set() {
            return Poll::Ready(());
        }
        let mut waiters = self.event.lock();
        // Checked again under the lock: `set` flips the flag before taking the lock, so a
        // waiter registered here is either seen by `set` or sees the flag.
        if self.event.is_set() {
            return Poll::Ready(());
        }
        let key = match self
            .key
            .and_then(|key| waiters.get_mut(key).map(|w| (key, w)))
        {
            Some((key, waker)) => {
                waker.clone_from(cx.waker());
                key
            }
            None => waiters.insert(cx.waker().clone()),
        };
        drop(waiters);
        self.key = Some(key);
        Poll::Pending
    }
}

impl Drop for EventWait {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.event.lock().try_remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many wakers the event holds.
    fn registered(event: &Event) -> usize {
        event.lock().len()
    }

    fn poll(wait: &mut EventWait) -> Poll<()> {
        Pin::new(wait).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_waiter_is_listed_once_and_set_takes_every_waker() {
        let event = Event::new();
        let (mut first, mut second) = (event.wait(), event.wait());
        assert!(poll(&mut first).is_pending());
        assert!(poll(&mut second).is_pending());
        // Polled again, a waiter refreshes its waker instead of registering twice.
        assert!(poll(&mut first).is_pending());
        assert_eq!(registered(&event), 2);
        event.set();
        assert_eq!(registered(&event), 0);
        assert!(poll(&mut first).is_ready() && poll(&mut second).is_ready());
        event.set();
        assert!(event.is_set());
    }

    #[test]
    fn a_dropped_waiter_leaves_no_waker_behind() {
        let event = Event::new();
        let (mut kept, mut dropped) = (event.wait(), event.wait());
        assert!(poll(&mut kept).is_pending());
        assert!(poll(&mut dropped).is_pending());
        drop(dropped);
        assert_eq!(registered(&event), 1);
        // A new waiter may take the dropped one's slot; the kept one's stays its own.
        let mut newcomer = event.wait();
        assert!(poll(&mut newcomer).is_pending());
        drop(kept);
        assert_eq!(registered(&event), 1);
        event.set();
        assert!(poll(&mut newcomer).is_ready());
    }

    #[test]
    fn a_set_event_is_ready_at_once_and_lists_nothing() {
        let event = Event::new();
        event.set();
        assert!(poll(&mut event.wait()).is_ready());
        assert_eq!(registered(&event), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! `set` on one loom thread against waiters on others, every waiter driven by
    //! `loom::future::block_on`, which parks its thread until its waker fires: a lost wakeup is
    //! a thread parked forever, which loom reports as a deadlock.

    use std::pin::pin;

    use loom::future::block_on;
    use loom::thread;

    use super::*;

    /// Sets `event` on a new loom thread.
    fn spawn_setter(event: &Event) -> thread::JoinHandle<()> {
        let event = event.clone();
        thread::spawn(move || event.set())
    }

    /// A waiter registers while another thread sets the event: it is woken, or sees the flag.
    #[test]
    fn loom_event_set_wakes_a_registering_waiter() {
        crate::loom::model(None, || {
            let event = Event::new();
            let setter = spawn_setter(&event);
            block_on(event.wait());
            setter.join().unwrap();
        });
    }

    /// A waiter polled once is dropped while the event is set, perhaps after `set` took its
    /// waker, perhaps before: it leaves nothing behind, and a new waiter, perhaps given the
    /// dropped one's slot, is still woken.
    #[test]
    fn loom_event_waiter_dropped_while_set() {
        crate::loom::model(None, || {
            let event = Event::new();
            let setter = spawn_setter(&event);
            {
                let mut wait = pin!(event.wait());
                // Ready if the set came first, Pending with its waker registered if not.
                let _ = wait.as_mut().poll(&mut Context::from_waker(Waker::noop()));
            } // The waiter drops here, perhaps before the set, perhaps after.
            // Its waker is gone: removed by its drop, or taken by `set`.
            assert!(event.lock().is_empty(), "a dropped waiter left its waker");
            block_on(event.wait());
            setter.join().unwrap();
        });
    }

    /// Two waiters on two threads register while a third sets the event: both are woken. Three
    /// threads, but so little state that a bound of 3 takes under a second.
    #[test]
    fn loom_event_two_waiters() {
        crate::loom::model(Some(3), || {
            let event = Event::new();
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let event = event.clone();
                    thread::spawn(move || block_on(event.wait()))
                })
                .collect();
            event.set();
            for waiter in waiters {
                waiter.join().unwrap();
            }
        });
    }
}
