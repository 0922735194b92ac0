//! The primitives `coreio::sync`'s docs point to for tasks of one core (`tokio::sync`, with no
//! tokio runtime) between tasks of a coreio core, on both backends: each one's waits are woken
//! by the other tasks, with timers and I/O going on around them.

#[macro_use]
mod util;

use std::rc::Rc;
use std::time::Duration;

use coreio::JoinSet;
use coreio::time::sleep;
use tokio::sync::{Mutex, Notify, RwLock, Semaphore, mpsc, oneshot, watch};
use util::block_on;

both_backends! {
    fn a_lock_held_across_an_await_serialises_the_tasks(backend: Backend) {
        let log = block_on(backend, async {
            let shared = Rc::new(Mutex::new(Vec::new()));
            let mut set = JoinSet::new();
            for task in 0..4u32 {
                let shared = Rc::clone(&shared);
                set.spawn(async move {
                    let mut guard = shared.lock().await;
                    guard.push((task, "in"));
                    sleep(Duration::from_millis(2)).await;
                    guard.push((task, "out"));
                });
            }
            while set.join_next().await.is_some() {}
            Rc::try_unwrap(shared).unwrap().into_inner()
        });
        // Every "in" is followed by the same task's "out": nobody else got in meanwhile.
        assert_eq!(log.len(), 8);
        for pair in log.chunks(2) {
            assert_eq!((pair[0].0, pair[0].1, pair[1].0, pair[1].1), (pair[0].0, "in", pair[0].0, "out"));
        }
    }

    fn a_rwlock_admits_readers_together_and_a_writer_alone(backend: Backend) {
        block_on(backend, async {
            let lock = Rc::new(RwLock::new(0u32));
            let first = lock.read().await;
            let second = lock.read().await;
            let writer = {
                let lock = Rc::clone(&lock);
                coreio::spawn(async move {
                    *lock.write().await += 1;
                })
            };
            coreio::yield_now().await;
            assert!(!writer.is_finished(), "the writer waits for the readers");
            drop((first, second));
            writer.await.unwrap();
            assert_eq!(*lock.read().await, 1);
        });
    }

    fn a_semaphore_bounds_how_many_run_at_once(backend: Backend) {
        let peak = block_on(backend, async {
            let permits = Rc::new(Semaphore::new(3));
            let running = Rc::new(std::cell::Cell::new(0u32));
            let peak = Rc::new(std::cell::Cell::new(0u32));
            let mut set = JoinSet::new();
            for _ in 0..12 {
                let (permits, running, peak) = (Rc::clone(&permits), Rc::clone(&running), Rc::clone(&peak));
                set.spawn(async move {
                    let _permit = permits.acquire().await.unwrap();
                    running.set(running.get() + 1);
                    peak.set(peak.get().max(running.get()));
                    sleep(Duration::from_millis(1)).await;
                    running.set(running.get() - 1);
                });
            }
            while set.join_next().await.is_some() {}
            peak.get()
        });
        assert_eq!(peak, 3);
    }

    fn notify_oneshot_and_watch_wake_the_waiting_task(backend: Backend) {
        block_on(backend, async {
            let notify = Rc::new(Notify::new());
            let waiter = {
                let notify = Rc::clone(&notify);
                coreio::spawn(async move { notify.notified().await })
            };
            coreio::yield_now().await;
            notify.notify_waiters();
            waiter.await.unwrap();

            let (tx, rx) = oneshot::channel();
            coreio::spawn(async move {
                sleep(Duration::from_millis(2)).await;
                let _ = tx.send("answer");
            });
            assert_eq!(rx.await.unwrap(), "answer");

            let (tx, mut rx) = watch::channel(0u32);
            let watcher = coreio::spawn(async move {
                rx.wait_for(|value| *value == 3).await.map(|value| *value)
            });
            for value in 1..=3 {
                sleep(Duration::from_millis(1)).await;
                tx.send(value).unwrap();
            }
            assert_eq!(watcher.await.unwrap().unwrap(), 3);
        });
    }

    fn a_bounded_channel_pushes_back_and_delivers_in_order(backend: Backend) {
        let received = block_on(backend, async {
            let (tx, mut rx) = mpsc::channel(2);
            let producer = coreio::spawn(async move {
                for i in 0..50u32 {
                    tx.send(i).await.unwrap();
                }
            });
            let mut received = Vec::new();
            while let Some(i) = rx.recv().await {
                if i % 10 == 0 {
                    sleep(Duration::from_millis(1)).await;
                }
                received.push(i);
            }
            producer.await.unwrap();
            received
        });
        assert_eq!(received, (0..50).collect::<Vec<_>>());
    }
}
