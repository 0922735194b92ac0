//! `JoinSet`: outputs in the order tasks finish, panics and cancellations reported, aborting
//! all (and dropping the set) drops every task's future, and no lost wake-up when a task
//! finishes while the set waits. On both backends (the tasks sleep on the core's timers).

#[macro_use]
mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coreio::JoinSet;
use coreio::time::sleep;
use util::{DropCount, block_on};

both_backends! {
    fn outputs_come_in_the_order_tasks_finish(backend: Backend) {
        let order = block_on(backend, async {
            let mut set = JoinSet::new();
            for ms in [40u64, 0, 20, 10, 30] {
                set.spawn(async move {
                    sleep(Duration::from_millis(ms)).await;
                    ms
                });
            }
            assert_eq!(set.len(), 5);
            let mut order = Vec::new();
            while let Some(output) = set.join_next().await {
                order.push(output.unwrap());
            }
            assert!(set.is_empty());
            assert!(set.join_next().await.is_none(), "an empty set gives None at once");
            order
        });
        assert_eq!(order, [0, 10, 20, 30, 40]);
    }

    fn a_panic_and_an_abort_are_reported_and_the_rest_goes_on(backend: Backend) {
        block_on(backend, async {
            let mut set = JoinSet::new();
            set.spawn(async { panic!("boom in a member") });
            set.spawn(async {
                sleep(Duration::from_millis(5)).await;
                7
            });
            let first = set.join_next().await.unwrap().unwrap_err();
            assert_eq!(first.panic_message(), Some("boom in a member"));
            assert_eq!(set.join_next().await.unwrap().unwrap(), 7);
            set.spawn(async {
                sleep(Duration::from_secs(3600)).await;
                0
            });
            set.abort_all();
            assert!(set.join_next().await.unwrap().unwrap_err().is_cancelled());
            assert!(set.is_empty());
        });
    }

    fn shutdown_and_drop_drop_every_future(backend: Backend) {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        block_on(backend, async move {
            let mut set = JoinSet::new();
            for _ in 0..10 {
                let guard = DropCount(d.clone());
                set.spawn(async move {
                    let _guard = guard;
                    sleep(Duration::from_secs(3600)).await;
                });
            }
            coreio::yield_now().await;
            set.shutdown().await;
            assert_eq!(d.load(Ordering::SeqCst), 10, "shutdown waits until each is dropped");
            assert!(set.is_empty());

            let mut dropped_set = JoinSet::new();
            for _ in 0..10 {
                let guard = DropCount(d.clone());
                dropped_set.spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                });
            }
            drop(dropped_set);
            // The aborted tasks' futures are dropped when the core next runs them.
            assert!(util::wait_until(100, || d.load(Ordering::SeqCst) == 20).await);
        });
        assert_eq!(drops.load(Ordering::SeqCst), 20);
    }

    fn try_join_next_does_not_wait_and_members_may_spawn_more(backend: Backend) {
        block_on(backend, async {
            let mut set = JoinSet::new();
            assert!(set.try_join_next().is_none());
            set.spawn(async {
                // A member spawning its own (detached) task, which outlives it.
                let inner = coreio::spawn(async { 1 });
                inner.await.unwrap() + 1
            });
            assert!(set.try_join_next().is_none(), "not run yet");
            let mut output = None;
            for _ in 0..10 {
                coreio::yield_now().await;
                if let Some(done) = set.try_join_next() {
                    output = Some(done.unwrap());
                    break;
                }
            }
            assert_eq!(output, Some(2));
        });
    }

    fn many_members_join_without_polling_each(backend: Backend) {
        let total = block_on(backend, async {
            let mut set = JoinSet::new();
            for i in 0..10_000u64 {
                set.spawn(async move {
                    coreio::yield_now().await;
                    i
                });
            }
            let outputs = set.join_all().await;
            assert_eq!(outputs.len(), 10_000);
            outputs.into_iter().map(Result::unwrap).sum::<u64>()
        });
        assert_eq!(total, (0..10_000).sum::<u64>());
    }

    fn a_dropped_join_next_loses_no_output(backend: Backend) {
        block_on(backend, async {
            // The member finishes only when told to, so the first wait must time out.
            let go = coreio::sync::Event::new();
            let mut set = JoinSet::new();
            let told = go.clone();
            set.spawn(async move {
                told.wait().await;
                "late"
            });
            let waited = coreio::time::timeout(Duration::from_millis(1), set.join_next()).await;
            assert!(waited.is_err(), "nothing finished yet");
            go.set();
            assert_eq!(set.join_next().await.unwrap().unwrap(), "late");
        });
    }
}
