//! The cross-core channel `coreio::mesh::channel`: order and values on one core, full and closed
//! errors both ways, backpressure, dropped `send` futures that must not strand other senders,
//! many senders on other cores and threads, the `Stream` impl, drops of queued messages, and
//! the `Send`/`Sync` contracts.

#[macro_use]
mod util;

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use coreio::Builder;
use coreio::mesh::{Receiver, RecvError, SendError, Sender, TryRecvError, TrySendError, channel};
use futures_core::Stream;

use util::{DropCount, XorShift, block_on, two_or_fewer_cores, wait_until};

/// Messages each sender sends in the many-sender tests.
const PER_SENDER: u64 = 100_000;

/// Polls `future` once with a waker that does nothing.
fn poll_noop<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// Polls `future` once with the calling task's waker; `None` (and the future dropped) if it
/// was not ready.
async fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// The receiver's next stream item.
async fn next<T>(rx: &mut Receiver<T>) -> Option<T> {
    poll_fn(|cx| Pin::new(&mut *rx).poll_next(cx)).await
}

/// Receives `(sender, sequence)` messages until every sender is gone, checking that each
/// sender's messages arrive complete, once each and in order; returns how many arrived.
async fn receive_in_order(rx: &mut Receiver<(usize, u64)>, senders: usize) -> u64 {
    let mut expected = vec![0u64; senders];
    let mut count = 0;
    while let Ok((sender, seq)) = rx.recv().await {
        assert_eq!(
            seq, expected[sender],
            "sender {sender}: lost, repeated or reordered"
        );
        expected[sender] += 1;
        count += 1;
    }
    assert!(
        expected.iter().all(|&n| n == PER_SENDER),
        "missing messages: {expected:?}"
    );
    count
}

both_backends! {
    fn fifo_on_one_core(backend: Backend) {
        block_on(backend, async {
            let (tx, mut rx) = channel(8);
            assert_eq!((tx.capacity(), tx.len(), tx.is_empty()), (8, 0, true));
            for i in 0..8 {
                tx.send(format!("m{i}")).await.unwrap();
            }
            assert_eq!(tx.len(), 8);
            assert_eq!(tx.try_send("extra".into()), Err(TrySendError::Full("extra".into())));
            for i in 0..8 {
                assert_eq!(rx.recv().await.unwrap(), format!("m{i}"));
            }
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            // Interleaved sends and receives keep their order too.
            for i in 0..100u32 {
                tx.try_send(i.to_string()).unwrap();
                if i % 3 == 2 {
                    for j in i - 2..=i {
                        assert_eq!(rx.try_recv().unwrap(), j.to_string());
                    }
                }
            }
            assert_eq!(rx.recv().await.unwrap(), "99");
        });
    }

    fn capacity_zero_means_one(backend: Backend) {
        block_on(backend, async {
            let (tx, mut rx) = channel(0);
            assert_eq!(tx.capacity(), 1);
            tx.send(1u8).await.unwrap();
            assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
            assert_eq!(rx.recv().await, Ok(1));
            tx.try_send(3).unwrap();
            assert_eq!(rx.try_recv(), Ok(3));
        });
    }

    fn receiver_dropped_hands_values_back(backend: Backend) {
        block_on(backend, async {
            let (tx, rx) = channel::<String>(2);
            tx.send("queued".into()).await.unwrap();
            drop(rx);
            assert!(tx.is_closed());
            let err = tx.send("late".into()).await.unwrap_err();
            assert_eq!(err.into_inner(), "late");
            assert_eq!(tx.try_send("later".into()), Err(TrySendError::Closed("later".into())));
            // The clone of a sender of a closed channel is closed too.
            assert!(tx.clone().is_closed());
        });
    }

    fn senders_dropped_drains_then_fails(backend: Backend) {
        block_on(backend, async {
            let (tx, mut rx) = channel(4);
            let tx2 = tx.clone();
            tx.send(1).await.unwrap();
            tx2.send(2).await.unwrap();
            drop(tx);
            assert_eq!(rx.try_recv(), Ok(1));
            tx2.send(3).await.unwrap();
            drop(tx2);
            assert_eq!(rx.recv().await, Ok(2));
            assert_eq!(rx.recv().await, Ok(3));
            assert_eq!(rx.recv().await, Err(RecvError));
            assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
            assert_eq!(rx.recv().await, Err(RecvError));
        });
    }

    fn last_sender_dropped_wakes_waiting_receiver(backend: Backend) {
        block_on(backend, async {
            let (tx, mut rx) = channel::<u8>(4);
            let dropper = coreio::spawn(async move {
                coreio::yield_now().await;
                drop(tx);
            });
            assert_eq!(rx.recv().await, Err(RecvError));
            dropper.await.unwrap();
        });
    }

    fn close_fails_waiting_senders_and_keeps_messages(backend: Backend) {
        block_on(backend, async {
            let (tx, mut rx) = channel(1);
            tx.send(1).await.unwrap();
            let blocked = coreio::spawn({
                let tx = tx.clone();
                async move { tx.send(2).await }
            });
            coreio::yield_now().await;
            assert!(!blocked.is_finished());
            rx.close();
            rx.close();
            assert_eq!(blocked.await.unwrap(), Err(SendError(2)));
            assert!(tx.is_closed());
            assert_eq!(tx.try_send(3), Err(TrySendError::Closed(3)));
            assert_eq!(rx.recv().await, Ok(1));
            assert_eq!(rx.recv().await, Err(RecvError));
        });
    }

    fn backpressure_resumes_blocked_sender(backend: Backend) {
        block_on(backend, async {
            let (tx, mut rx) = channel(2);
            let sent = Rc::new(Cell::new(0));
            let producer = coreio::spawn({
                let sent = sent.clone();
                async move {
                    for i in 0..10u32 {
                        tx.send(i).await.unwrap();
                        sent.set(sent.get() + 1);
                    }
                }
            });
            assert!(wait_until(1000, || sent.get() == 2).await);
            for _ in 0..10 {
                coreio::yield_now().await;
            }
            assert_eq!(sent.get(), 2, "a send went past a full channel");
            assert_eq!(rx.recv().await, Ok(0));
            assert!(wait_until(1000, || sent.get() == 3).await, "the blocked sender never resumed");
            for i in 1..10 {
                assert_eq!(rx.recv().await, Ok(i));
            }
            producer.await.unwrap();
            assert_eq!(rx.recv().await, Err(RecvError));
        });
    }

    fn dropped_woken_send_passes_the_wake_on(backend: Backend) {
        block_on(backend, async {
            let (tx, mut rx) = channel(1);
            tx.send(0).await.unwrap();
            // The first waiter: polled once, so it waits at the head of the line.
            let mut first = Box::pin(tx.send(1));
            assert!(poll_noop(first.as_mut()).is_pending());
            let done = Rc::new(Cell::new(false));
            let second = coreio::spawn({
                let (tx, done) = (tx.clone(), done.clone());
                async move {
                    tx.send(2).await.unwrap();
                    done.set(true);
                }
            });
            coreio::yield_now().await;
            assert!(!done.get());
            // Taking a message wakes `first` only; dropping it unused must wake `second`.
            assert_eq!(rx.recv().await, Ok(0));
            drop(first);
            assert!(wait_until(1000, || done.get()).await, "the second sender was stranded");
            assert_eq!(rx.recv().await, Ok(2));
            second.await.unwrap();
        });
    }

    fn dropped_waiting_send_leaves_the_line(backend: Backend) {
        block_on(backend, async {
            let counter = Arc::new(AtomicUsize::new(0));
            let (tx, mut rx) = channel(1);
            tx.send(DropCount(counter.clone())).await.unwrap();
            let mut first = Box::pin(tx.send(DropCount(counter.clone())));
            assert!(poll_noop(first.as_mut()).is_pending());
            let done = Rc::new(Cell::new(false));
            let second = coreio::spawn({
                let (tx, done, counter) = (tx.clone(), done.clone(), counter.clone());
                async move {
                    tx.send(DropCount(counter)).await.unwrap();
                    done.set(true);
                }
            });
            coreio::yield_now().await;
            // Dropped before it was woken: its message goes with it, and the next waiter is
            // the one the receiver wakes.
            drop(first);
            assert_eq!(counter.load(Ordering::SeqCst), 1);
            drop(rx.recv().await.unwrap());
            assert!(wait_until(1000, || done.get()).await, "the second sender was stranded");
            second.await.unwrap();
            drop(rx.recv().await.unwrap());
            assert_eq!(counter.load(Ordering::SeqCst), 3);
        });
    }

    fn many_waiting_senders_on_one_core(backend: Backend) {
        const SENDERS: usize = 8;
        block_on(backend, async {
            let (tx, mut rx) = channel(2);
            for sender in 0..SENDERS {
                let tx = tx.clone();
                coreio::spawn(async move {
                    for seq in 0..PER_SENDER / 10 {
                        tx.send((sender, seq)).await.unwrap();
                    }
                });
            }
            drop(tx);
            let mut expected = [0u64; SENDERS];
            while let Ok((sender, seq)) = rx.recv().await {
                assert_eq!(seq, expected[sender]);
                expected[sender] += 1;
            }
            assert_eq!(expected, [PER_SENDER / 10; SENDERS]);
        });
    }

    fn senders_on_another_core(backend: Backend) {
        const SENDERS: usize = 3;
        let rt = Builder::new().backend(backend).cores(two_or_fewer_cores()).build().unwrap();
        let (tx, rx) = channel::<(usize, u64)>(16);
        // The receiver runs on the first core, the senders on the last (the same one on a
        // one-CPU machine).
        let rx = Mutex::new(Some(rx));
        let tx = Mutex::new(Some(tx));
        let last = *rt.cores().last().unwrap();
        let outputs = rt.run(|core| {
            let rx = rx.lock().unwrap().take();
            let tx = if core == last { tx.lock().unwrap().take() } else { None };
            async move {
                // The root waits for its senders: a core cancels its tasks when its root ends.
                let mut tasks = Vec::new();
                if let Some(tx) = tx {
                    for sender in 0..SENDERS {
                        let tx = tx.clone();
                        tasks.push(coreio::spawn(async move {
                            for seq in 0..PER_SENDER {
                                tx.send((sender, seq)).await.unwrap();
                            }
                        }));
                    }
                }
                let received = match rx {
                    Some(mut rx) => receive_in_order(&mut rx, SENDERS).await,
                    None => 0,
                };
                for task in tasks {
                    task.await.unwrap();
                }
                received
            }
        });
        let received: u64 = outputs.into_iter().map(Result::unwrap).sum();
        assert_eq!(received, SENDERS as u64 * PER_SENDER);
    }

    fn senders_on_other_threads(backend: Backend) {
        const SENDERS: usize = 3;
        let (tx, mut rx) = channel::<(usize, u64)>(16);
        let threads: Vec<_> = (0..SENDERS)
            .map(|sender| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    block_on(backend, async move {
                        for seq in 0..PER_SENDER {
                            tx.send((sender, seq)).await.unwrap();
                        }
                    })
                })
            })
            .collect();
        drop(tx);
        let received = block_on(backend, async move { receive_in_order(&mut rx, SENDERS).await });
        assert_eq!(received, SENDERS as u64 * PER_SENDER);
        for thread in threads {
            thread.join().unwrap();
        }
    }

    fn impatient_senders_on_another_core(backend: Backend) {
        // Senders that give up on a waiting `send` (dropping it, perhaps just after it was
        // woken) and try again later, beside patient ones: nobody may be stranded.
        const SENDERS: usize = 4;
        let rt = Builder::new().backend(backend).cores(two_or_fewer_cores()).build().unwrap();
        let (tx, rx) = channel::<(usize, u64)>(4);
        let rx = Mutex::new(Some(rx));
        let tx = Mutex::new(Some(tx));
        let last = *rt.cores().last().unwrap();
        let outputs = rt.run(|core| {
            let rx = rx.lock().unwrap().take();
            let tx = if core == last { tx.lock().unwrap().take() } else { None };
            async move {
                // The root waits for its senders: a core cancels its tasks when its root ends.
                let mut tasks = Vec::new();
                if let Some(tx) = tx {
                    for sender in 0..SENDERS {
                        let tx = tx.clone();
                        tasks.push(coreio::spawn(async move {
                            let mut rng = XorShift::new(sender as u64 + 1);
                            for seq in 0..PER_SENDER {
                                let mut sent = false;
                                while !sent && sender % 2 == 0 && rng.below(4) != 0 {
                                    match poll_once(tx.send((sender, seq))).await {
                                        Some(result) => sent = result.is_ok(),
                                        None => coreio::yield_now().await,
                                    }
                                }
                                if !sent {
                                    tx.send((sender, seq)).await.unwrap();
                                }
                            }
                        }));
                    }
                }
                let received = match rx {
                    Some(mut rx) => receive_in_order(&mut rx, SENDERS).await,
                    None => 0,
                };
                for task in tasks {
                    task.await.unwrap();
                }
                received
            }
        });
        let received: u64 = outputs.into_iter().map(Result::unwrap).sum();
        assert_eq!(received, SENDERS as u64 * PER_SENDER);
    }

    fn plain_thread_wakes_receiver(backend: Backend) {
        let (tx, mut rx) = channel::<u32>(1);
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let receiver = std::thread::spawn(move || {
            block_on(backend, async move {
                tid_tx.send(util::gettid()).unwrap();
                rx.recv().await
            })
        });
        // Best effort: send once the receiver sleeps, so the wake crosses threads; if it is
        // never seen asleep the test still checks delivery.
        util::wait_for_thread_to_sleep(tid_rx.recv().unwrap());
        tx.try_send(42).unwrap();
        assert_eq!(receiver.join().unwrap(), Ok(42));
    }

    fn stream_yields_all_then_none(backend: Backend) {
        block_on(backend, async {
            let (tx, mut rx) = channel(4);
            let producer = coreio::spawn(async move {
                for i in 0..20u32 {
                    tx.send(i).await.unwrap();
                }
            });
            let mut got = Vec::new();
            while let Some(i) = next(&mut rx).await {
                got.push(i);
            }
            assert_eq!(got, (0..20).collect::<Vec<_>>());
            assert_eq!(next(&mut rx).await, None);
            producer.await.unwrap();
        });
    }

    fn receiver_drop_drops_queued_messages(backend: Backend) {
        let counter = Arc::new(AtomicUsize::new(0));
        block_on(backend, {
            let counter = counter.clone();
            async move {
                let (tx, rx) = channel(8);
                for _ in 0..5 {
                    tx.send(DropCount(counter.clone())).await.unwrap();
                }
                assert_eq!(counter.load(Ordering::SeqCst), 0);
                drop(rx);
                // The senders are still alive, but the messages are gone with the receiver.
                assert_eq!(counter.load(Ordering::SeqCst), 5);
                let back = tx.try_send(DropCount(counter.clone())).unwrap_err();
                assert_eq!(counter.load(Ordering::SeqCst), 5);
                drop(back);
                assert_eq!(counter.load(Ordering::SeqCst), 6);
            }
        });
        assert_eq!(counter.load(Ordering::SeqCst), 6);
    }
}

fn send_and_sync<T: Send + Sync>() {}
fn send<T: Send>() {}
fn error<E: std::error::Error + Send + Sync + 'static>() {}

#[test]
fn handles_cross_threads() {
    send_and_sync::<Sender<u64>>();
    // `T: Send` is enough: only one thread at a time touches a message.
    send_and_sync::<Sender<Cell<u64>>>();
    send::<Receiver<Cell<u64>>>();
    let (tx, mut rx) = channel::<u64>(1);
    fn send_future<F: Future + Send>(_: &F) {}
    send_future(&tx.send(1));
    send_future(&rx.recv());
}

#[test]
fn errors_are_errors_without_debug_values() {
    struct Opaque;
    error::<SendError<u64>>();
    error::<TrySendError<u64>>();
    error::<RecvError>();
    error::<TryRecvError>();
    assert_eq!(format!("{:?}", SendError(Opaque)), "SendError { .. }");
    assert_eq!(format!("{:?}", TrySendError::Full(Opaque)), "Full(..)");
    assert_eq!(format!("{:?}", TrySendError::Closed(Opaque)), "Closed(..)");
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(SendError(Opaque));
    assert_eq!(
        boxed.to_string(),
        "the receiving side of the channel is gone (dropped or closed)"
    );
    assert_eq!(
        TrySendError::Full(Opaque).to_string(),
        "the channel is full"
    );
    assert_eq!(TryRecvError::Closed.to_string(), RecvError.to_string());
}
