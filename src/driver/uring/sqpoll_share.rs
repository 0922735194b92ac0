//! [`SqPollShare`]: one submission-queue polling thread for every core's ring of a run
//! (`Builder::sqpoll_shared`). The first core's ring starts the thread; the others, built on
//! their own threads at the same time, wait for that ring and attach to it
//! (`IORING_SETUP_ATTACH_WQ`), so the kernel polls all their submission queues from one thread.

// This module owns the hand-over of the first ring between the cores' threads at start-up. It
// must never leave a core waiting: whatever becomes of the first core (its ring without a
// polling thread, its driver failing, its thread never starting), the others are told, and
// build a ring of their own. It holds a duplicate of the first ring's descriptor, closed with
// the share once every core has built its ring, so the ring the others attach to stays open
// until then whatever the first core does meanwhile.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// What the other cores' rings attach to.
#[derive(Debug)]
pub(crate) struct SqPollShare {
    state: Mutex<State>,
    settled: Condvar,
}

#[derive(Debug)]
enum State {
    /// The first core has not built its ring yet.
    Waiting,
    /// The first core's ring, which has a polling thread.
    Ring(OwnedFd),
    /// There is nothing to attach to: each ring makes its own thread, if any.
    Nothing,
}

impl SqPollShare {
    /// A share for one run, with the [`Publisher`] the first core settles it with.
    pub(crate) fn new() -> (Arc<SqPollShare>, Publisher) {
        let share = Arc::new(SqPollShare {
            state: Mutex::new(State::Waiting),
            settled: Condvar::new(),
        });
        (Arc::clone(&share), Publisher(share))
    }

    /// Waits until the first core has built its ring; returns the descriptor to attach to,
    /// valid while `self` lives, or `None` when there is none.
    pub(crate) fn wait(&self) -> Option<RawFd> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = self
            .settled
            .wait_while(state, |state| matches!(state, State::Waiting))
            .unwrap_or_else(PoisonError::into_inner);
        match &*state {
            State::Ring(fd) => Some(fd.as_raw_fd()),
            State::Waiting | State::Nothing => None,
        }
    }

    fn settle(&self, ring: Option<BorrowedFd<'_>>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(*state, State::Waiting) {
            return;
        }
        *state = match ring.map(|fd| fd.try_clone_to_owned()) {
            Some(Ok(fd)) => State::Ring(fd),
            Some(Err(err)) => {
                log::warn!(
                    "coreio: cannot share the submission-queue polling thread ({err}); each \
                     core gets its own"
                );
                State::Nothing
            }
            None => State::Nothing,
        };
        self.settled.notify_all();
    }
}

/// The first core's side: settles the share with its ring, or, dropped unused (the core never
/// built a ring), with nothing.
#[derive(Debug)]
pub(crate) struct Publisher(Arc<SqPollShare>);

impl Publisher {
    /// Offers `ring`, the first core's ring when it has a polling thread, to the other cores.
    pub(crate) fn publish(self, ring: Option<BorrowedFd<'_>>) {
        self.0.settle(ring);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.0.settle(None);
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn a_publisher_dropped_unused_releases_the_waiters() {
        let (share, publisher) = SqPollShare::new();
        let waiter = std::thread::spawn(move || share.wait());
        drop(publisher);
        assert_eq!(waiter.join().unwrap(), None);
    }

    #[test]
    fn a_published_ring_outlives_its_first_descriptor() {
        let (share, publisher) = SqPollShare::new();
        let (reader, _writer) = std::io::pipe().unwrap();
        let original = OwnedFd::from(reader);
        publisher.publish(Some(original.as_fd()));
        drop(original);
        let shared = share.wait().expect("a ring was published");
        // SAFETY: `shared` is open while `share` lives.
        let fd = unsafe { BorrowedFd::borrow_raw(shared) };
        assert!(fd.try_clone_to_owned().is_ok(), "the duplicate was closed");
        // Settled once: a later settle changes nothing.
        share.settle(None);
        assert_eq!(share.wait(), Some(shared));
    }
}
