//! [`SleepFlag`]: the handshake by which a core announces that it may sleep, and by which a
//! thread that just queued work for it learns whether it must wake it.
//!
//! # The protocol
//!
//! * The core, about to park, raises the flag and then looks at its queues once more
//!   ([`prepare_to_sleep`](SleepFlag::prepare_to_sleep)). If work arrived meanwhile it lowers
//!   the flag again and does not block.
//! * A remote thread first pushes its work into a queue, then lowers the flag with a swap
//!   ([`notify`](SleepFlag::notify)); only the thread whose swap found it raised delivers a wake.
//! * The core, back from parking for whatever reason, lowers the flag
//!   ([`woke_up`](SleepFlag::woke_up)) and drains its queues before it may sleep again.
//!
//! No wakeup is lost: the raise and the swap are `SeqCst`, and so are the queue operations the
//! handle uses (`concurrent_queue`'s tail update in a push, and its `is_empty` loads). In the
//! single total order of those operations either the swap comes after the raise, and reads it
//! (the remote thread wakes the core), or it comes before, and so does the push before it, and
//! the core's re-check after its raise sees the push (the core does not block). A sleeping core
//! is woken at most once per sleep, however many threads push, and an awake core not at all.
//!
//! The `loom_tests` module below checks this with loom (`--cfg loom`), for every interleaving of
//! a core and two remote threads.

// This module owns the `sleeping` word and the protocol around it, nothing else: the queues the
// work goes into belong to the core's handle (`handle.rs`), and the way a wake is delivered (a
// `MSG_RING` or an eventfd write) to the driver. It must never block, and never decide on its own
// that a wake is needed.

use crate::loom::{AtomicBool, Ordering};

/// Whether a core has announced that it may sleep, and the one-wake-per-sleep rule around it.
pub(crate) struct SleepFlag {
    sleeping: AtomicBool,
}

impl SleepFlag {
    /// A flag for a core that is awake.
    pub(crate) fn new() -> SleepFlag {
        SleepFlag {
            sleeping: AtomicBool::new(false),
        }
    }

    /// Announces that the core is about to park, then asks `has_work` whether work arrived
    /// meanwhile. Returns true when the core may block; false (with the flag lowered again)
    /// when it must not.
    pub(crate) fn prepare_to_sleep(&self, has_work: impl FnOnce() -> bool) -> bool {
        self.set(true, Ordering::SeqCst);
        if has_work() {
            self.set(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Marks the core awake after parking (whether it blocked or not).
    pub(crate) fn woke_up(&self) {
        self.set(false, Ordering::Relaxed);
    }

    /// Called by a thread after it queued work for the core: whether the caller must deliver a
    /// wake. True for the first caller after the core announced its sleep, false for every
    /// other (the core is awake, or someone else is waking it).
    pub(crate) fn notify(&self) -> bool {
        self.sleeping.swap(false, Ordering::SeqCst)
    }

    /// Stores `value` in the flag: a plain store.
    ///
    /// Under loom it is a swap whose result is ignored, because loom 0.7 lets a plain store slip
    /// in between the read and the write of a concurrent swap (tokio-rs/loom#254), and so
    /// reports lost wakeups here that the memory model rules out. A swap is kept in line. Its
    /// read synchronises with nothing (loom models a `SeqCst` store as a release store, and so
    /// does the swap's `Release`), so the model gains no ordering the real store lacks.
    #[inline(always)]
    fn set(&self, value: bool, order: Ordering) {
        #[cfg(not(loom))]
        self.sleeping.store(value, order);
        #[cfg(loom)]
        {
            let order = match order {
                Ordering::SeqCst => Ordering::Release,
                order => order,
            };
            let _ = self.sleeping.swap(value, order);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The core's loop against remote threads that queue messages and wake it.
    //!
    //! The queue is a loom `Mutex<VecDeque>`, not the handle's `ConcurrentQueue`: the proof
    //! above rests on the queue's `SeqCst` atomics, and loom models `SeqCst` loads and stores as
    //! `AcqRel` (only `SeqCst` fences are modelled exactly), so with the real queue it reports
    //! lost wakeups that the memory model rules out. A lock gives the same guarantee the
    //! `SeqCst` queue operations give (a push and the core's re-check are ordered one way or the
    //! other) in a form loom checks. The eventfd or `MSG_RING` is a loom `Notify`: a wake
    //! delivered while the core is awake is kept until its next park, which consumes it, and a
    //! park may also return with no wake at all (a timer, I/O), which loom explores too.

    use std::collections::VecDeque;

    use loom::sync::{Arc, Mutex, Notify};
    use loom::thread;

    use super::SleepFlag;

    struct Core {
        flag: SleepFlag,
        queue: Mutex<VecDeque<usize>>,
        /// The eventfd: readable from the first wake delivered until the park that reads it.
        wake: Notify,
    }

    impl Core {
        fn new() -> Core {
            Core {
                flag: SleepFlag::new(),
                queue: Mutex::new(VecDeque::new()),
                wake: Notify::new(),
            }
        }

        /// A remote thread's `post`: push, then wake the core if `notify` says so.
        fn post(&self, message: usize) {
            self.queue.lock().unwrap().push_back(message);
            if self.flag.notify() {
                self.wake.notify();
            }
        }

        /// The core loop, until `expected` messages were received; returns them in order.
        fn run(&self, expected: usize) -> Vec<usize> {
            let mut received = Vec::new();
            loop {
                while let Some(message) = self.queue.lock().unwrap().pop_front() {
                    received.push(message);
                }
                if received.len() >= expected {
                    return received;
                }
                let has_work = || !self.queue.lock().unwrap().is_empty();
                if self.flag.prepare_to_sleep(has_work) {
                    // A core that never gets its wake blocks here forever: loom reports the
                    // deadlock.
                    self.wake.wait();
                }
                self.flag.woke_up();
            }
        }
    }

    /// Two remote threads post one message each to a core that sleeps whenever it can.
    #[test]
    fn loom_sleep_no_lost_wakeup_two_posters() {
        crate::loom::model(Some(3), || {
            let core = Arc::new(Core::new());
            let posters: Vec<_> = (0..2)
                .map(|id| {
                    let core = core.clone();
                    thread::spawn(move || core.post(id))
                })
                .collect();
            let mut received = core.run(2);
            for poster in posters {
                poster.join().unwrap();
            }
            received.sort_unstable();
            assert_eq!(received, [0, 1], "a message was lost or duplicated");
        });
    }

    /// One remote thread posts two messages in a row: the second must not be stranded by a
    /// wake already spent on the first.
    #[test]
    fn loom_sleep_no_lost_wakeup_one_poster_twice() {
        crate::loom::model(None, || {
            let core = Arc::new(Core::new());
            let poster = {
                let core = core.clone();
                thread::spawn(move || {
                    core.post(0);
                    core.post(1);
                })
            };
            let received = core.run(2);
            poster.join().unwrap();
            assert_eq!(
                received,
                [0, 1],
                "a message was lost, duplicated or reordered"
            );
        });
    }
}
