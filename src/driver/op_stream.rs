//! The streaming lifecycle beside the one-shot [`Op`](super::Op): one operation that yields
//! many results until its last, as multishot accept and receive (and a zero-copy send with its
//! notification) do on io_uring.
//!
//! A [`StreamOperation`] is an [`Operation`] whose io_uring entry may complete many times. On
//! io_uring [`StreamOp`] submits it once and then takes its completions one by one, each with
//! its CQE flags ([`Cqe`]); after the terminal one (no `IORING_CQE_F_MORE`) the stream ends. On
//! epoll every item is one `epoll_attempt`, retried on readiness as a one-shot operation is;
//! the stream ends at its first error. Dropping the future hands the data and whatever further
//! completions bring to the driver (`uring::stream`), which releases each item and drops the
//! data after the terminal completion. Ownership across runtimes follows `Op`'s rules.

// This module owns the `StreamOp` state machine. It must never let the kernel see memory a dropped
// future freed, nor lose an item a completion produced (an fd, a buffer).

// Its first users arrive with multishot accept and receive (issue [10]); until then only its
// tests (a multishot poll) drive it.
#![cfg_attr(not(test), allow(dead_code))]

use std::io;
use std::task::{Context, Poll, ready};

use super::op::{away_from_ring, let_go};
use super::{Cqe, DriverId, Operation, Started};
use crate::context;

/// An operation whose io_uring entry may complete many times before its terminal completion.
///
/// # Safety
///
/// As for [`Operation`], and: the memory the entry points to stays valid until the terminal
/// completion, however many completions come before it.
pub(crate) unsafe trait StreamOperation: Operation {
    /// io_uring: how many completions may wait in the driver for the future to take them
    /// before the driver cancels the operation (the future then sees its remaining items and
    /// the terminal completion, and may start it again). Bounds what one slow consumer takes
    /// from a pool shared with others: a multishot receive would otherwise keep filling the
    /// core's buffers for a connection nobody reads.
    const QUEUE_LIMIT: usize = usize::MAX;

    /// io_uring: a completion that arrived after the future was dropped. Release what it
    /// produced (close an accepted fd, give a selected buffer back to its ring, keep received
    /// bytes for the socket's next read); nobody will see it. Runs on the core, with the
    /// driver unborrowed, before the data is dropped.
    fn orphan_item(&mut self, cqe: Cqe) {
        let _ = cqe;
    }
}

/// One result of a streaming operation: a byte count, an fd, or an error, with the flags the
/// kernel set (none on epoll).
#[derive(Debug)]
pub(crate) struct StreamItem {
    pub(crate) result: io::Result<u32>,
    pub(crate) flags: u32,
}

enum State {
    /// Not submitted yet (io_uring), or between attempts (epoll).
    Idle,
    /// Submitted under `key` to the ring of `driver`.
    InRing { key: usize, driver: DriverId },
    /// The terminal result was handed out.
    Ended,
}

/// A stream of the results of one [`StreamOperation`] on the current core's driver.
pub(crate) struct StreamOp<T: StreamOperation> {
    data: Option<T>,
    state: State,
}

impl<T: StreamOperation> StreamOp<T> {
    pub(crate) fn new(data: T) -> Self {
        StreamOp {
            data: Some(data),
            state: State::Idle,
        }
    }

    /// The operation's data once the stream ended (its last result handed out): the kernel is
    /// done with it. `None` before that, or if taken already.
    pub(crate) fn take_data(&mut self) -> Option<T> {
        match self.state {
            State::Ended => self.data.take(),
            State::Idle | State::InRing { .. } => None,
        }
    }

    /// The next result, `None` after the last.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<StreamItem>> {
        match self.state {
            State::Ended => Poll::Ready(None),
            State::InRing { key, driver } => self.poll_ring(key, driver, cx),
            State::Idle => {
                let Some(data) = self.data.as_mut() else {
                    unreachable!("an idle StreamOp holds its data");
                };
                let started = context::with(|ctx| {
                    ready!(ctx.budget.poll_proceed(cx));
                    ctx.driver.start_stream(data, cx)
                });
                match started {
                    None => self.end_with(Err(context::no_runtime())),
                    Some(Poll::Pending) => Poll::Pending,
                    Some(Poll::Ready(Started::Submitted { key, driver })) => {
                        self.state = State::InRing { key, driver };
                        self.poll_ring(key, driver, cx)
                    }
                    // epoll: one attempt, one item; the next poll attempts again.
                    Some(Poll::Ready(Started::Finished(Ok(n)))) => Poll::Ready(Some(StreamItem {
                        result: Ok(n),
                        flags: 0,
                    })),
                    Some(Poll::Ready(Started::Finished(Err(err)))) => self.end_with(Err(err)),
                    Some(Poll::Ready(Started::Offloaded(_))) => {
                        unreachable!("a streaming operation waits on readiness, never on the pool")
                    }
                }
            }
        }
    }

    fn poll_ring(
        &mut self,
        key: usize,
        owner: DriverId,
        cx: &mut Context<'_>,
    ) -> Poll<Option<StreamItem>> {
        match context::with(|ctx| ctx.driver.poll_stream(key, owner, cx)).flatten() {
            Some(Poll::Pending) => Poll::Pending,
            Some(Poll::Ready(Some(cqe))) => Poll::Ready(Some(StreamItem {
                result: super::op::decode_result(cqe.result),
                flags: cqe.flags,
            })),
            Some(Poll::Ready(None)) => {
                self.state = State::Ended;
                Poll::Ready(None)
            }
            None => {
                self.state = State::Ended;
                let error = away_from_ring(owner, &mut self.data);
                self.end_with(Err(error))
            }
        }
    }

    /// Ends the operation before returning where the kernel allows (`Driver::end_stream_now`),
    /// handing each completion its future had not taken to
    /// [`StreamOperation::orphan_item`], as for a dropped stream; the data stays here, with
    /// nothing of it left in the kernel, and drops with `self`. Returns whether it ended so;
    /// if not, dropping `self` lets it go the usual way (cancelled, ending later).
    pub(crate) fn end_now(&mut self) -> bool {
        let State::InRing { key, driver: owner } = self.state else {
            return matches!(self.state, State::Ended);
        };
        let Some(queue) = context::with(|ctx| ctx.driver.end_stream_now(key, owner)).flatten()
        else {
            return false;
        };
        self.state = State::Ended;
        if let Some(data) = self.data.as_mut() {
            for cqe in queue {
                data.orphan_item(cqe);
            }
        }
        true
    }

    fn end_with(&mut self, result: io::Result<u32>) -> Poll<Option<StreamItem>> {
        self.state = State::Ended;
        Poll::Ready(Some(StreamItem { result, flags: 0 }))
    }
}

// `StreamOp` never pins its data: the kernel only sees heap memory the data owns.
impl<T: StreamOperation> Unpin for StreamOp<T> {}

impl<T: StreamOperation> Drop for StreamOp<T> {
    fn drop(&mut self) {
        let State::InRing { key, driver: owner } = self.state else {
            return;
        };
        let mut data = self.data.take();
        context::with(|ctx| {
            if let Some(taken) = data.take() {
                data = ctx.driver.abandon_stream(key, owner, taken).err();
            }
        });
        if let Some(data) = data {
            let_go(data, owner);
        }
    }
}

#[cfg(test)]
mod tests {
    //! A multishot poll of an eventfd is the streaming operation here: on io_uring one
    //! `POLL_ADD` with `IORING_POLL_ADD_MULTI` posts a completion per wake-up; on epoll each
    //! item is a `poll(2)` that found the fd readable.

    use std::cell::Cell;
    use std::os::fd::AsRawFd;
    use std::rc::Rc;
    use std::time::Duration;

    use io_uring::{opcode, squeue, types};

    use super::*;
    use crate::driver::{Direction, SharedFd, Source};
    use crate::{Backend, sys};

    thread_local! {
        /// Completions released by `MultiPoll::orphan_item` on this thread.
        static ORPHAN_ITEMS: Cell<usize> = const { Cell::new(0) };
        /// `MultiPoll`s dropped on this thread (each test's runtime runs on its own thread).
        static DROPPED: Cell<usize> = const { Cell::new(0) };
    }

    struct MultiPoll {
        fd: SharedFd,
        dropped: Rc<Cell<bool>>,
    }

    impl Drop for MultiPoll {
        fn drop(&mut self) {
            self.dropped.set(true);
            DROPPED.with(|count| count.set(count.get() + 1));
        }
    }

    // SAFETY: a poll gives the kernel no pointer at all.
    unsafe impl Operation for MultiPoll {
        fn uring_entry(&mut self) -> squeue::Entry {
            opcode::PollAdd::new(types::Fd(self.fd.raw()), libc::POLLIN as u32)
                .multi(true)
                .build()
        }

        fn source(&self) -> Source<'_> {
            Source::Readiness(&self.fd, Direction::Read)
        }

        fn epoll_attempt(&mut self) -> io::Result<u32> {
            let mut pollfd = libc::pollfd {
                fd: self.fd.raw(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pollfd` is one valid, writable pollfd for the call.
            sys::cvt(unsafe { libc::poll(&mut pollfd, 1, 0) })?;
            if pollfd.revents & libc::POLLIN == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(pollfd.revents as u32)
        }
    }

    // SAFETY: as above; nothing the kernel touches.
    unsafe impl StreamOperation for MultiPoll {
        fn orphan_item(&mut self, _cqe: Cqe) {
            ORPHAN_ITEMS.with(|count| count.set(count.get() + 1));
        }
    }

    fn block_on<F: std::future::Future + 'static>(future: F) -> F::Output
    where
        F::Output: 'static,
    {
        crate::Builder::new()
            .backend(Backend::IoUring)
            .block_on(future)
            .expect("runtime")
    }

    /// A multishot poll of a fresh eventfd, and the raw eventfd to signal and drain.
    fn multi_poll() -> (StreamOp<MultiPoll>, i32, Rc<Cell<bool>>) {
        let eventfd = sys::eventfd().unwrap();
        let raw = eventfd.as_raw_fd();
        let dropped = Rc::new(Cell::new(false));
        let op = MultiPoll {
            fd: SharedFd::new(eventfd).unwrap(),
            dropped: dropped.clone(),
        };
        (StreamOp::new(op), raw, dropped)
    }

    async fn next(stream: &mut StreamOp<MultiPoll>) -> Option<StreamItem> {
        std::future::poll_fn(|cx| stream.poll_next(cx)).await
    }

    async fn settle() {
        for _ in 0..20 {
            crate::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[test]
    fn a_streaming_operation_yields_an_item_per_wake_with_its_flags() {
        block_on(async {
            let (mut stream, raw, dropped) = multi_poll();
            let uring = crate::backend() == Some(Backend::IoUring);
            for round in 0..3 {
                sys::eventfd_signal(raw);
                let item = next(&mut stream).await.expect("the stream goes on");
                let mask = item.result.expect("a readiness mask");
                assert_ne!(
                    mask & libc::POLLIN as u32,
                    0,
                    "round {round}: not readable?"
                );
                if uring {
                    // One submission, many completions: every one but the last says more come.
                    assert!(
                        io_uring::cqueue::more(item.flags),
                        "round {round}: no MORE flag"
                    );
                }
                sys::eventfd_drain(raw);
            }
            drop(stream);
            // On io_uring the data waits for the cancellation's terminal completion.
            settle().await;
            assert!(dropped.get(), "the stream's data was never released");
        });
    }

    #[test]
    fn items_of_a_dropped_stream_are_released_and_its_data_dropped_after_the_last() {
        block_on(async {
            let (mut stream, raw, dropped) = multi_poll();
            // Armed (io_uring) or waiting for readiness (epoll).
            assert!(
                std::future::poll_fn(|cx| Poll::Ready(stream.poll_next(cx).is_pending())).await
            );
            settle().await;
            let before = ORPHAN_ITEMS.with(Cell::get);
            // A wake-up whose completion arrives, then nobody takes it.
            sys::eventfd_signal(raw);
            settle().await;
            drop(stream);
            settle().await;
            let released = ORPHAN_ITEMS.with(Cell::get) - before;
            if crate::backend() == Some(Backend::IoUring) {
                assert!(released >= 1, "the queued completion was not released");
            } else {
                assert_eq!(released, 0, "epoll holds nothing between attempts");
            }
            assert!(dropped.get(), "the stream's data was never released");
        });
    }

    #[test]
    fn a_stream_that_outlived_its_runtime_ends_with_an_error() {
        let before = DROPPED.with(Cell::get);
        let mut stream = block_on(async {
            let (mut stream, _raw, _dropped) = multi_poll();
            assert!(
                std::future::poll_fn(|cx| Poll::Ready(stream.poll_next(cx).is_pending())).await
            );
            stream
        });
        // The runtime's shutdown cancelled the poll and saw its terminal completion.
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match stream.poll_next(&mut cx) {
            Poll::Ready(Some(StreamItem {
                result: Err(err), ..
            })) => {
                let message = err.to_string();
                assert!(
                    message.contains("has shut down") || message.contains("no coreio runtime"),
                    "{message}"
                );
            }
            other => panic!("expected an error item, got {other:?}"),
        }
        assert!(matches!(stream.poll_next(&mut cx), Poll::Ready(None)));
        drop(stream);
        assert_eq!(DROPPED.with(Cell::get), before + 1);
    }
}
