//! [`channel`]: a bounded multi-producer, single-consumer queue whose handles move between cores.
//!
//! # Costs
//!
//! A `send` that finds room, or a `recv` that finds a message, is the queue operation, one
//! `SeqCst` fence and one relaxed load of the other side's "someone waits" word, plus a check of
//! the task's cooperative budget (`coop`: a thread-local lookup and a `Cell`). The locks are
//! taken only by a receiver that found the queue empty, a sender that found it full, and
//! whoever wakes them.
//!
//! # The wake protocol: register, fence, re-check
//!
//! * The receiver, finding the queue empty, stores its waker in `rx_waker` (under its lock),
//!   raises `rx_waiting`, fences and pops again. A sender pushes, fences and reads `rx_waiting`;
//!   only when it is raised does the sender swap it down and wake the stored waker.
//! * A sender finding the queue full adds its waker to `send_waiters` (under its lock),
//!   publishes the list's length in `send_waiting`, fences and pushes again. The receiver pops,
//!   fences and reads `send_waiting`; only when it is non-zero does it lock the list, take the
//!   oldest waiter off it and wake it.
//!
//! No wakeup is lost: the two `SeqCst` fences of a waiter and of the other side are ordered one
//! way or the other. If the waiter's comes first, the other side's read after its fence sees
//! the announcement (or a later value, written only by someone who takes over the wake); if the
//! other side's comes first, the waiter's re-check after its own fence sees the completed push
//! or pop. The fences are explicit so the argument does not depend on how the queue orders its
//! own atomics.
//!
//! A woken sender may find the room taken again by a sender that did not wait (senders that find
//! room never queue behind waiters); it then waits again, keeping its place (waiters carry a
//! ticket and the list stays sorted by it). A sender that leaves the list — its push succeeded,
//! or its future was dropped, perhaps after being woken but before using the wake — wakes the
//! next waiter if the queue has room, so a free slot never sits beside a sleeping waiter.
//!
//! Closing — the receiver closes or drops, or the last sender drops — closes the queue first and
//! then, under the lock the other side registers under, wakes that side's waiters: a waiter
//! either registered before and is woken, or re-checks after and finds the queue closed.

// This module owns the channel's shared state — a lock-free bounded queue (`ConcurrentQueue`), the
// count of senders, the receiver's waker slot and the list of senders waiting for room — and the
// protocol by which each side wakes the other. It must never block a thread (waiting is always a
// future), never lock or allocate per message on the fast path, and never poll a task: it only
// calls wakers, and the runtime carries a wake to the waker's core (at most one wake-up per sleep
// of that core, however many wakes arrive).

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::PoisonError;
use std::task::{Context, Poll, Waker, ready};

use concurrent_queue::{ConcurrentQueue, PopError, PushError};
use futures_core::Stream;

use crate::coop;
use crate::loom::{Arc, AtomicBool, AtomicUsize, Mutex, MutexGuard, Ordering, fence};

mod error;
#[cfg(all(test, loom))]
mod loom_tests;

pub use error::{RecvError, SendError, TryRecvError, TrySendError};

/// Creates a bounded channel holding up to `capacity` messages; a capacity of 0 is treated as 1
/// (there is no rendezvous channel).
///
/// The [`Sender`] may be cloned and sent to any core or thread; the [`Receiver`] may be sent
/// to one. Messages of one sender arrive in the order it sent them.
///
/// ```
/// let (tx, mut rx) = coreio::mesh::channel::<u64>(16);
/// let producers: Vec<_> = (0..2)
///     .map(|id| {
///         let tx = tx.clone();
///         std::thread::spawn(move || {
///             coreio::block_on(async move {
///                 for i in 0..100 {
///                     tx.send(id * 1000 + i).await.unwrap();
///                 }
///             })
///             .unwrap()
///         })
///     })
///     .collect();
/// drop(tx); // `recv` fails once every sender is gone and the queue is drained.
/// let count = coreio::block_on(async move {
///     let mut count = 0;
///     while let Ok(_message) = rx.recv().await {
///         count += 1;
///     }
///     count
/// })
/// .unwrap();
/// assert_eq!(count, 200);
/// for producer in producers {
///     producer.join().unwrap();
/// }
/// ```
pub fn channel<T: Send>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let inner = Arc::new(Inner {
        queue: ConcurrentQueue::bounded(capacity),
        capacity,
        senders: AtomicUsize::new(1),
        rx_waiting: AtomicBool::new(false),
        rx_waker: Mutex::new(None),
        send_waiting: AtomicUsize::new(0),
        send_waiters: Mutex::new(SendWaiters::default()),
    });
    let sender = Sender {
        inner: Arc::clone(&inner),
    };
    (sender, Receiver { inner })
}

/// The state both sides share.
struct Inner<T> {
    /// The messages. Closed when the receiver closes or drops, or when the last sender drops.
    queue: ConcurrentQueue<T>,
    /// The queue's capacity (at least 1).
    capacity: usize,
    /// Live `Sender` handles; the one that takes it to zero closes the queue.
    senders: AtomicUsize,
    /// Raised by a receiver that registered its waker and may sleep; lowered by the sender that
    /// takes the wake (or by the receiver when its re-check found a message).
    rx_waiting: AtomicBool,
    /// The waker of the receiver's last `Pending` poll.
    rx_waker: Mutex<Option<Waker>>,
    /// `send_waiters.list.len()`, published under its lock so the receiver reads it without one.
    send_waiting: AtomicUsize,
    /// Senders waiting for room.
    send_waiters: Mutex<SendWaiters>,
}

/// Senders waiting for room, oldest first.
#[derive(Default)]
struct SendWaiters {
    /// The ticket the next new waiter gets.
    next_ticket: u64,
    /// `(ticket, waker)`, sorted by ticket. A waiter is removed when it is woken by the
    /// receiver, when it leaves (pushed, saw the queue closed, or was dropped), or at close.
    list: VecDeque<(u64, Waker)>,
}

impl SendWaiters {
    /// Adds or refreshes the waiter holding `ticket`, handing out a ticket if it has none.
    fn register(&mut self, ticket: &mut Option<u64>, waker: &Waker) {
        let ticket = *ticket.get_or_insert_with(|| {
            self.next_ticket += 1;
            self.next_ticket
        });
        match self.list.binary_search_by_key(&ticket, |&(t, _)| t) {
            Ok(i) => self.list[i].1.clone_from(waker),
            Err(i) => self.list.insert(i, (ticket, waker.clone())),
        }
    }

    fn remove(&mut self, ticket: u64) {
        if let Ok(i) = self.list.binary_search_by_key(&ticket, |&(t, _)| t) {
            self.list.remove(i);
        }
    }
}

/// Locks `mutex`, ignoring poison: every critical section here leaves its data consistent.
fn lock<U>(mutex: &Mutex<U>) -> MutexGuard<'_, U> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Inner<T> {
    /// Pushes `value`, then wakes the receiver if it announced that it may sleep.
    fn push(&self, value: T) -> Result<(), PushError<T>> {
        self.queue.push(value)?;
        fence(Ordering::SeqCst);
        if self.rx_waiting.load(Ordering::Relaxed) {
            self.wake_receiver();
        }
        Ok(())
    }

    /// Pops a message, then wakes the oldest waiting sender if there is one.
    fn pop(&self) -> Result<T, PopError> {
        let value = self.queue.pop()?;
        fence(Ordering::SeqCst);
        if self.send_waiting.load(Ordering::Relaxed) != 0 {
            self.wake_one_sender();
        }
        Ok(value)
    }

    #[cold]
    fn wake_receiver(&self) {
        // Of the senders that saw the flag raised, only the one that lowers it wakes.
        if self.rx_waiting.swap(false, Ordering::AcqRel) {
            let waker = lock(&self.rx_waker).take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// Wakes the receiver whatever the flag says; called by the last sender after closing.
    fn wake_receiver_closed(&self) {
        self.rx_waiting.store(false, Ordering::Relaxed);
        let waker = lock(&self.rx_waker).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    #[cold]
    fn wake_one_sender(&self) {
        let mut waiters = lock(&self.send_waiters);
        let next = waiters.list.pop_front();
        self.publish(&waiters);
        drop(waiters);
        if let Some((_, waker)) = next {
            waker.wake();
        }
    }

    /// Wakes every waiting sender; called after the queue was closed.
    fn wake_all_senders(&self) {
        let mut waiters = lock(&self.send_waiters);
        let all = std::mem::take(&mut waiters.list);
        self.publish(&waiters);
        drop(waiters);
        for (_, waker) in all {
            waker.wake();
        }
    }

    /// Publishes the waiter count; called with the list's lock held.
    fn publish(&self, waiters: &SendWaiters) {
        self.send_waiting
            .store(waiters.list.len(), Ordering::Relaxed);
    }
}

/// The sending half of a [`channel`]: `Clone`, `Send` and `Sync`, so it can be shared with or
/// copied to every core and plain thread. The channel closes when the last clone is dropped.
pub struct Sender<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the channel is full.
    ///
    /// Fails, handing `value` back, once the receiver is gone or has closed the channel. If the
    /// future is dropped while it waits, `value` is dropped with it and its place in line is
    /// given to the next waiting sender. Senders that find room do not queue behind waiting
    /// ones; waiting senders are woken oldest first.
    ///
    /// ```
    /// coreio::block_on(async {
    ///     let (tx, mut rx) = coreio::mesh::channel(1);
    ///     tx.send("hello").await.unwrap();
    ///     assert_eq!(rx.recv().await, Ok("hello"));
    ///     drop(rx);
    ///     assert_eq!(tx.send("lost").await.unwrap_err().into_inner(), "lost");
    /// })
    /// .unwrap();
    /// ```
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        SendFuture {
            sender: self,
            value: Some(value),
            ticket: None,
        }
        .await
    }

    /// Sends `value` if the channel has room now, without waiting.
    ///
    /// Usable from any thread, also outside a runtime.
    ///
    /// ```
    /// use coreio::mesh::TrySendError;
    ///
    /// let (tx, rx) = coreio::mesh::channel(1);
    /// assert_eq!(tx.try_send(1), Ok(()));
    /// assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
    /// drop(rx);
    /// assert_eq!(tx.try_send(3), Err(TrySendError::Closed(3)));
    /// ```
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.inner.push(value).map_err(|err| match err {
            PushError::Full(value) => TrySendError::Full(value),
            PushError::Closed(value) => TrySendError::Closed(value),
        })
    }

    /// Whether the receiver is gone or has closed the channel; every send fails from then on.
    ///
    /// ```
    /// let (tx, mut rx) = coreio::mesh::channel::<u8>(4);
    /// assert!(!tx.is_closed());
    /// rx.close();
    /// assert!(tx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.queue.is_closed()
    }

    /// How many messages wait in the channel now (a snapshot; other threads may change it).
    pub fn len(&self) -> usize {
        self.inner.queue.len()
    }

    /// Whether no message waits in the channel now (a snapshot, like [`len`](Sender::len)).
    pub fn is_empty(&self) -> bool {
        self.inner.queue.is_empty()
    }

    /// How many messages the channel holds at most (1 for a channel created with capacity 0).
    ///
    /// ```
    /// let (tx, _rx) = coreio::mesh::channel(0);
    /// assert_eq!(tx.capacity(), 1);
    /// tx.try_send('a').unwrap();
    /// assert_eq!((tx.len(), tx.is_empty()), (1, false));
    /// ```
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.inner.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.inner.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // No sender is left to wait for room, so only the receiver needs telling.
            self.inner.queue.close();
            self.inner.wake_receiver_closed();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The future of [`Sender::send`].
struct SendFuture<'a, T> {
    sender: &'a Sender<T>,
    /// The message, until it is in the queue or handed back.
    value: Option<T>,
    /// Set once the future has waited: its place in `send_waiters`.
    ticket: Option<u64>,
}

// The message is never pinned: it is moved in and out of the queue by value.
impl<T> Unpin for SendFuture<'_, T> {}

impl<T> SendFuture<'_, T> {
    /// Ends the wait of a future that has waited: leaves the list, and hands the wake on when
    /// the queue has room, in case this future was woken for room it will not use.
    fn leave(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let inner = &*self.sender.inner;
        let mut waiters = lock(&inner.send_waiters);
        waiters.remove(ticket);
        let next = if inner.queue.is_full() {
            None
        } else {
            waiters.list.pop_front()
        };
        inner.publish(&waiters);
        drop(waiters);
        if let Some((_, waker)) = next {
            waker.wake();
        }
    }

    fn finish(&mut self, result: Result<(), PushError<T>>) -> Poll<Result<(), SendError<T>>> {
        self.leave();
        Poll::Ready(result.map_err(|err| SendError(err.into_inner())))
    }
}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // A sender that always finds room still lets its core's other tasks and I/O run.
        ready!(coop::poll_proceed(cx));
        let inner = &*this.sender.inner;
        let value = this.value.take().expect("`send` polled after it completed");
        let value = match inner.push(value) {
            Err(PushError::Full(value)) => value,
            result => return this.finish(result),
        };
        let mut waiters = lock(&inner.send_waiters);
        waiters.register(&mut this.ticket, cx.waker());
        inner.publish(&waiters);
        drop(waiters);
        fence(Ordering::SeqCst);
        match inner.push(value) {
            Err(PushError::Full(value)) => {
                this.value = Some(value);
                Poll::Pending
            }
            result => this.finish(result),
        }
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        self.leave();
    }
}

/// The receiving half of a [`channel`]: there is exactly one. `Send`, so it can be moved to the
/// core that consumes the messages; it is not `Clone`, as this `compile_fail` check shows:
///
/// ```compile_fail
/// let (_tx, rx) = coreio::mesh::channel::<u32>(1);
/// let _second = rx.clone();
/// ```
///
/// A sender of a type that is not `Send` does not cross cores either:
///
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<coreio::mesh::Sender<std::rc::Rc<u32>>>();
/// ```
///
/// Dropping the receiver closes the channel and drops the messages still queued.
pub struct Receiver<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Receiver<T> {
    /// Receives the next message, waiting while the channel is empty.
    ///
    /// Fails with [`RecvError`] once the channel is empty and closed: every sender is gone (the
    /// messages they sent first are all delivered before that), or [`close`](Receiver::close)
    /// was called.
    ///
    /// ```
    /// use coreio::mesh::RecvError;
    ///
    /// coreio::block_on(async {
    ///     let (tx, mut rx) = coreio::mesh::channel(4);
    ///     tx.send(1).await.unwrap();
    ///     drop(tx);
    ///     assert_eq!(rx.recv().await, Ok(1));
    ///     assert_eq!(rx.recv().await, Err(RecvError));
    /// })
    /// .unwrap();
    /// ```
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Receives a message if one is queued now, without waiting. Usable outside a runtime.
    ///
    /// ```
    /// use coreio::mesh::TryRecvError;
    ///
    /// let (tx, mut rx) = coreio::mesh::channel(4);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.try_send(7).unwrap();
    /// assert_eq!(rx.try_recv(), Ok(7));
    /// drop(tx);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    /// ```
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.inner.pop().map_err(|err| match err {
            PopError::Empty => TryRecvError::Empty,
            PopError::Closed => TryRecvError::Closed,
        })
    }

    /// Closes the channel: senders, waiting ones included, fail from now on, while the messages
    /// already queued can still be received. Closing twice does nothing more.
    ///
    /// ```
    /// coreio::block_on(async {
    ///     let (tx, mut rx) = coreio::mesh::channel(4);
    ///     tx.send(1).await.unwrap();
    ///     rx.close();
    ///     assert!(tx.send(2).await.is_err());
    ///     assert_eq!(rx.recv().await, Ok(1));
    ///     assert!(rx.recv().await.is_err());
    /// })
    /// .unwrap();
    /// ```
    pub fn close(&mut self) {
        if self.inner.queue.close() {
            self.inner.wake_all_senders();
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, RecvError>> {
        // A receiver that always finds messages still lets its core's other tasks and I/O run.
        ready!(coop::poll_proceed(cx));
        let inner = &*self.inner;
        match inner.pop() {
            Err(PopError::Empty) => {}
            result => return Poll::Ready(result.map_err(|_| RecvError)),
        }
        let mut slot = lock(&inner.rx_waker);
        match &mut *slot {
            Some(waker) => waker.clone_from(cx.waker()),
            None => *slot = Some(cx.waker().clone()),
        }
        drop(slot);
        inner.rx_waiting.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        match inner.pop() {
            Err(PopError::Empty) => Poll::Pending,
            result => {
                // Not sleeping after all: spare the next sender the wake.
                inner.rx_waiting.store(false, Ordering::Relaxed);
                Poll::Ready(result.map_err(|_| RecvError))
            }
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
        // Every push either finished before the close or failed, so this drains them all.
        while self.inner.queue.pop().is_ok() {}
        // The waker may keep this receiver's task alive; senders have no use for it now.
        let waker = lock(&self.inner.rx_waker).take();
        drop(waker);
    }
}

/// Yields every message, then `None` once [`recv`](Receiver::recv) would fail.
///
/// ```
/// use std::pin::Pin;
/// use futures_core::Stream;
///
/// coreio::block_on(async {
///     let (tx, mut rx) = coreio::mesh::channel(4);
///     tx.send(1).await.unwrap();
///     drop(tx);
///     let mut items = Vec::new();
///     while let Some(item) = std::future::poll_fn(|cx| Pin::new(&mut rx).poll_next(cx)).await {
///         items.push(item);
///     }
///     assert_eq!(items, [1]);
/// })
/// .unwrap();
/// ```
impl<T> Stream for Receiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().poll_recv(cx).map(Result::ok)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.inner.queue.len(), None)
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.inner.queue.len())
            .field("capacity", &self.inner.capacity)
            .field("closed", &self.inner.queue.is_closed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published waiter count and the real list length.
    fn waiting<T>(tx: &Sender<T>) -> (usize, usize) {
        let count = tx.inner.send_waiting.load(Ordering::Relaxed);
        (count, lock(&tx.inner.send_waiters).list.len())
    }

    #[test]
    fn waiters_keep_their_place_and_leave_the_list() {
        let (tx, mut rx) = channel(1);
        let mut cx = Context::from_waker(Waker::noop());
        tx.try_send(0).unwrap();
        let mut a = Box::pin(tx.send(1));
        let mut b = Box::pin(tx.send(2));
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            waiting(&tx),
            (2, 2),
            "a waiter polled again must not be listed twice"
        );
        // The pop wakes `a`, the oldest; `b` takes the room first and leaves the list.
        assert_eq!(rx.try_recv(), Ok(0));
        assert_eq!(waiting(&tx), (1, 1));
        assert!(b.as_mut().poll(&mut cx).is_ready());
        assert_eq!(waiting(&tx), (0, 0));
        // `a` finds the queue full again and waits under its old ticket, ahead of newcomers.
        assert!(a.as_mut().poll(&mut cx).is_pending());
        let mut c = Box::pin(tx.send(3));
        assert!(c.as_mut().poll(&mut cx).is_pending());
        let front = lock(&tx.inner.send_waiters).list.front().map(|&(t, _)| t);
        assert_eq!(front, Some(1));
        drop(a);
        assert_eq!(waiting(&tx), (1, 1));
        rx.close();
        assert_eq!(waiting(&tx), (0, 0));
        assert!(matches!(
            c.as_mut().poll(&mut cx),
            Poll::Ready(Err(SendError(3)))
        ));
    }
}
