//! [`reply`]: the one-shot slot through which a core sends a submitted closure's output back.
//!
//! One value goes from the core that ran the work to the task that submitted it, each side on
//! its own thread.

// This module owns that hand-over and the two ways it can end early: the sending side dropped
// without a value (the target core shut down, or the work was cancelled), reported as `None`; or
// the receiving side dropped, in which case the value is dropped on the sending core. It must never
// block beyond a short uncontended lock, and never run user code while holding it (values and
// wakers are dropped or woken after the lock is released).

use std::future::Future;
use std::pin::Pin;
use std::sync::PoisonError;
use std::task::{Context, Poll, Waker};

use crate::loom::{Arc, Mutex, MutexGuard};

struct Slot<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    value: Option<T>,
    waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock, so poisoning cannot carry a broken state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connected pair: the sending half goes to the core that runs the work.
pub(crate) fn reply<T>() -> (ReplySender<T>, ReplyReceiver<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State {
            value: None,
            waker: None,
            sender_gone: false,
            receiver_gone: false,
        }),
    });
    (
        ReplySender {
            slot: Some(slot.clone()),
        },
        ReplyReceiver { slot },
    )
}

pub(crate) struct ReplySender<T> {
    /// `None` once the value was sent.
    slot: Option<Arc<Slot<T>>>,
}

impl<T> ReplySender<T> {
    /// Delivers `value`; it is dropped here if the receiver is gone.
    pub(crate) fn send(mut self, value: T) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let mut state = slot.lock();
        if state.receiver_gone {
            drop(state);
            drop(value);
            return;
        }
        state.value = Some(value);
        state.sender_gone = true;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for ReplySender<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let mut state = slot.lock();
            state.sender_gone = true;
            let waker = state.waker.take();
            drop(state);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// Resolves to the value, or `None` if the sender was dropped without one.
pub(crate) struct ReplyReceiver<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Future for ReplyReceiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.slot.lock();
        if let Some(value) = state.value.take() {
            return Poll::Ready(Some(value));
        }
        if state.sender_gone {
            return Poll::Ready(None);
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => {
                let previous = state.waker.replace(cx.waker().clone());
                drop(state);
                drop(previous);
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for ReplyReceiver<T> {
    fn drop(&mut self) {
        let mut state = self.slot.lock();
        state.receiver_gone = true;
        let value = state.value.take();
        let waker = state.waker.take();
        drop(state);
        drop((value, waker));
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

    fn poll<T>(rx: &mut ReplyReceiver<T>, wakes: &Arc<CountWakes>) -> Poll<Option<T>> {
        let waker = Waker::from(wakes.clone());
        Pin::new(rx).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_sent_value_wakes_the_waiting_receiver_once() {
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let (tx, mut rx) = reply();
        assert!(poll(&mut rx, &wakes).is_pending());
        tx.send(7);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll(&mut rx, &wakes), Poll::Ready(Some(7)));
    }

    #[test]
    fn a_dropped_sender_resolves_to_none() {
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let (tx, mut rx) = reply::<u32>();
        assert!(poll(&mut rx, &wakes).is_pending());
        drop(tx);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll(&mut rx, &wakes), Poll::Ready(None));
    }

    #[test]
    fn a_value_sent_to_a_dropped_receiver_is_dropped_by_the_sender() {
        let value = Arc::new(());
        let (tx, rx) = reply();
        drop(rx);
        tx.send(value.clone());
        assert_eq!(Arc::strong_count(&value), 1);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The sending core and the waiting task on two loom threads: every interleaving of the
    //! send (or the sender's drop) with the receiver's polls and drop. The receiver is driven by
    //! `loom::future::block_on`, so a lost wakeup is a thread parked forever (a loom deadlock);
    //! the value is a loom `Arc`, so a value dropped twice fails, and one leaked fails loom's
    //! leak check.

    use std::pin::pin;

    use loom::future::block_on;
    use loom::thread;

    use super::*;

    #[test]
    fn loom_reply_send_wakes_the_waiting_receiver() {
        crate::loom::model(None, || {
            let (tx, rx) = reply();
            let value = Arc::new(7);
            let sender = {
                let value = value.clone();
                thread::spawn(move || tx.send(value))
            };
            let received = block_on(rx).expect("the value was sent");
            assert!(Arc::ptr_eq(&received, &value));
            sender.join().unwrap();
        });
    }

    #[test]
    fn loom_reply_dropped_sender_wakes_the_receiver_with_none() {
        crate::loom::model(None, || {
            let (tx, rx) = reply::<u32>();
            let sender = thread::spawn(move || drop(tx));
            assert_eq!(block_on(rx), None);
            sender.join().unwrap();
        });
    }

    /// The receiver polls once (registering its waker) and drops while the value is sent: the
    /// value is dropped exactly once, by whichever side holds it last.
    #[test]
    fn loom_reply_send_races_the_receiver_drop() {
        crate::loom::model(None, || {
            let (tx, rx) = reply();
            let value = Arc::new(());
            let sender = {
                let value = value.clone();
                thread::spawn(move || tx.send(value))
            };
            {
                let mut rx = pin!(rx);
                let polled = rx.as_mut().poll(&mut Context::from_waker(Waker::noop()));
                drop(polled);
            } // The receiver drops here, perhaps before the send, perhaps after.
            sender.join().unwrap();
            assert_eq!(
                Arc::strong_count(&value),
                1,
                "the sent value must be dropped once"
            );
        });
    }
}
