//! The streaming lifecycle on io_uring: one submission, many completions (multishot accept,
//! multishot receive over a buffer ring, zero-copy send with its notification).
//!
//! A streaming operation's slot holds a [`Stream`] while its future lives: every completion is
//! queued there with its flags, and the future's waker is woken; the one without
//! `IORING_CQE_F_MORE` is the terminal one, after which the kernel holds nothing. When the
//! future is dropped first, the slot becomes a [`StreamOrphan`]: what the queued and later
//! completions produced is released one by one (an accepted fd closed, say), the operation is
//! cancelled, and its data is dropped at the terminal completion, never before.

// This module owns that queue and the hand-over to the orphan. Like the rest of the driver it never
// runs user code while the driver is borrowed: wakes, releases and drops are `Deferred` work.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use io_uring::types::{CancelBuilder, Timespec};
use io_uring::{opcode, squeue};

use super::{CANCEL_TOKEN, Deferred, Inner, Lifecycle, UringDriver};
use crate::driver::{Cqe, StreamOperation};

/// The completions of a live streaming operation that its future has not taken yet.
pub(super) struct Stream {
    queue: VecDeque<Cqe>,
    waker: Option<Waker>,
    /// The terminal completion (no `IORING_CQE_F_MORE`) has arrived: the kernel is done.
    pub(super) ended: bool,
    /// `StreamOperation::QUEUE_LIMIT`: this many untaken completions cancel the operation.
    limit: usize,
    /// The cancellation for the limit was pushed.
    cancelled: bool,
}

impl Stream {
    pub(super) fn new(limit: usize) -> Stream {
        Stream {
            queue: VecDeque::new(),
            waker: None,
            ended: false,
            limit,
            cancelled: false,
        }
    }

    /// Queues a completion; returns the waker to wake.
    pub(super) fn push(&mut self, cqe: Cqe) -> Option<Waker> {
        self.ended |= !cqe.more();
        self.queue.push_back(cqe);
        self.waker.take()
    }

    /// The completions not taken yet, once the operation is over.
    pub(super) fn into_queue(self) -> VecDeque<Cqe> {
        self.queue
    }

    /// Whether the queue reached its limit with the operation still in the kernel and no
    /// cancellation sent yet; marks it sent (the caller pushes it).
    pub(super) fn needs_cancel(&mut self) -> bool {
        if self.ended || self.cancelled || self.queue.len() < self.limit {
            return false;
        }
        self.cancelled = true;
        true
    }
}

/// The data of a streaming operation whose future was dropped before its terminal completion:
/// it releases what each later completion produced (`StreamOperation::orphan_item`), and is
/// dropped after the terminal one. Shared between the slab and the deferred items that release
/// completions, so that those run with the driver unborrowed and the data drops after the last.
pub(super) type StreamOrphan = Rc<RefCell<dyn OrphanedStream>>;

/// A [`StreamOperation`]'s data, with its type erased, once the driver owns it.
pub(super) trait OrphanedStream {
    fn item(&mut self, cqe: Cqe);
}

impl<T: StreamOperation> OrphanedStream for T {
    fn item(&mut self, cqe: Cqe) {
        self.orphan_item(cqe);
    }
}

impl UringDriver {
    /// Queues a streaming operation's entry; returns its key. Like `submit`, nothing enters
    /// the kernel before `park` unless the submission queue is full.
    pub(crate) fn submit_stream<T: StreamOperation>(
        &self,
        entry: squeue::Entry,
    ) -> io::Result<usize> {
        let mut inner = self.inner.borrow_mut();
        let stream = Box::new(Stream::new(T::QUEUE_LIMIT));
        let key = inner.ops.insert(Lifecycle::Streaming(stream));
        let entry = entry.user_data(key as u64);
        if let Err(err) = inner.push(&entry) {
            inner.ops.remove(key);
            return Err(err);
        }
        Ok(key)
    }

    /// The next completion of streaming operation `key`; `None` once the terminal one has
    /// been taken (the slot is then free).
    pub(crate) fn poll_stream(&self, key: usize, cx: &mut Context<'_>) -> Poll<Option<Cqe>> {
        let mut inner = self.inner.borrow_mut();
        let Some(Lifecycle::Streaming(stream)) = inner.ops.get_mut(key) else {
            unreachable!("a live streaming operation keeps its slot until it ends");
        };
        if let Some(cqe) = stream.queue.pop_front() {
            return Poll::Ready(Some(cqe));
        }
        if stream.ended {
            inner.ops.remove(key);
            return Poll::Ready(None);
        }
        match &stream.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => stream.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Ends streaming operation `key` now: submits the batch (its entry may not have reached
    /// the kernel yet), cancels it synchronously (`IORING_REGISTER_SYNC_CANCEL`, Linux 6.0) and
    /// reaps, so that its terminal completion has arrived. Frees its slot and gives the
    /// completions its future had not taken, the terminal one last. `None`, changing nothing
    /// for the operation, when the kernel refuses or the operation did not end in time: the
    /// caller then lets it go asynchronously (`abandon_stream`).
    ///
    /// For a listener whose drop must release its socket at once: the kernel holds a reference
    /// to the file while the operation is armed.
    pub(crate) fn end_stream_now(&self, key: usize) -> Option<VecDeque<Cqe>> {
        /// Longer than any cancellation of a socket operation takes; a kernel that needs more
        /// leaves the operation to the asynchronous path.
        const SYNC_CANCEL_LIMIT: Duration = Duration::from_secs(1);
        let mut inner = self.inner.borrow_mut();
        let ended = |inner: &Inner| match inner.ops.get(key) {
            Some(Lifecycle::Streaming(stream)) => Some(stream.ended),
            _ => None,
        };
        if !ended(&inner)? {
            if let Err(err) = inner.submit_now() {
                log::debug!("submitting before a synchronous cancel failed: {err}");
                return None;
            }
            let limit = Timespec::new()
                .sec(SYNC_CANCEL_LIMIT.as_secs())
                .nsec(SYNC_CANCEL_LIMIT.subsec_nanos());
            let cancelled = inner
                .ring
                .submitter()
                .register_sync_cancel(Some(limit), CancelBuilder::user_data(key as u64));
            match cancelled {
                Ok(()) => {}
                // It completed meanwhile: its terminal completion is in the queue.
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
                Err(err) => {
                    log::debug!("no synchronous cancel ({err}); the operation ends later");
                    return None;
                }
            }
            // The cancelled operation's completion is posted by task work (the ring defers it
            // to the submitter, `DEFER_TASKRUN`), which an enter asking for events runs.
            if let Err(err) = inner.enter(Some(Duration::ZERO)) {
                log::debug!("reaping after a synchronous cancel failed: {err}");
            }
            inner.reap();
            if !ended(&inner)? {
                return None;
            }
        }
        let Some(Lifecycle::Streaming(stream)) = inner.ops.try_remove(key) else {
            unreachable!("checked just above");
        };
        Some((*stream).into_queue())
    }

    /// The future of streaming operation `key` was dropped: release what its queued
    /// completions produced, and either drop its data (it already ended) or keep the data and
    /// cancel it, releasing each completion still to come.
    pub(crate) fn abandon_stream<T: StreamOperation>(&self, key: usize, data: T) {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let Some(Lifecycle::Streaming(stream)) = inner.ops.get_mut(key) else {
            // Only a shutdown that gave up waiting forgets a live slot (`shutdown_within`): the
            // kernel may still use the data, so it is leaked with the rest.
            assert!(
                inner.shut_down,
                "a live streaming operation keeps its slot until it ends"
            );
            std::mem::forget(data);
            return;
        };
        let ended = stream.ended;
        let queued = std::mem::take(&mut stream.queue);
        let orphan: StreamOrphan = Rc::new(RefCell::new(data));
        for cqe in queued {
            inner
                .deferred
                .push(Deferred::StreamItem(Rc::clone(&orphan), cqe));
        }
        if ended {
            // The last deferred item drops the data, after the queued items are released.
            inner.ops.remove(key);
            inner.deferred.push(Deferred::DropData(orphan));
            return;
        }
        inner.ops[key] = Lifecycle::StreamOrphaned(orphan);
        let cancel = opcode::AsyncCancel::new(key as u64)
            .build()
            .user_data(CANCEL_TOKEN);
        // As for one-shot orphans: a failed push only loses the early cancel.
        let _ = inner.push(&cancel);
    }
}
