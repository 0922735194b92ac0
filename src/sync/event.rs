//! [`Event`]: a one-shot, cross-thread flag that tasks can await.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use slab::Slab;

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

    fn lock(&self) -> std::sync::MutexGuard<'_, Slab<Waker>> {
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
