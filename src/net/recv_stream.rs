//! [`RecvStream`]: a stream socket's incoming bytes as a sequence of buffers lent from the
//! core's receive pool ([`PooledBuf`]).
//!
//! On io_uring, where the kernel has them, one multishot receive over the pool's provided
//! buffer ring stays armed for as long as the `RecvStream` lives: each arrival becomes a
//! completion with the buffer the kernel picked, with no submission, no readiness poll and no
//! buffer of the connection's own in between. Elsewhere (epoll, an older kernel,
//! `Builder::multishot_recv(false)`) each item is one receive into a buffer taken from the
//! pool first. Both ways, a connection waiting for data holds no receive buffer.
//!
//! Backpressure: a buffer is the pool's again when its `PooledBuf` drops. When every buffer of
//! the core is lent out, receives wait (the kernel's multishot receive ends with `ENOBUFS` and
//! is armed again once a buffer comes back); the bytes stay in the socket meanwhile.
//!
//! Nothing is lost when a `RecvStream` is dropped: the receive is cancelled, and whatever it
//! still delivers (bytes that arrived before the cancellation) is kept on the socket and
//! returned first by the next read or receive stream, in order.

// This module owns the receive stream's states (idle, a selecting receive armed, a receive into
// a taken buffer, ended) and the order of what it hands out: bytes kept on the socket by dropped
// reads first, then the socket's. It must never hold a pooled buffer it is not handing out, and
// never re-arm a receive after the end of the stream.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use io_uring::cqueue;

use crate::buf::{DEFAULT_RECV_BUFFER_SIZE, PooledBuf};
use crate::driver::{Claim, RecvPool, SharedFd, StandingClaim, StreamOp, WaitPlace};
use crate::net::ops::{StreamRecv, StreamRecvSelect};
use crate::net::stream_io::StreamIo;
use crate::{context, coop};

/// The bytes arriving on a stream socket, one [`PooledBuf`] per receive; made by
/// [`TcpStream::recv_stream`](crate::net::TcpStream::recv_stream) and
/// [`UnixStream::recv_stream`](crate::net::UnixStream::recv_stream).
///
/// [`next`](RecvStream::next) gives `Some(Ok(buf))` for each receive, `Some(Err(_))` for a
/// failed one (the stream may be polled again), and `None` once the peer closed its side.
/// It is also a [`futures_core::Stream`] of `io::Result<PooledBuf>`.
///
/// While a `RecvStream` lives, read the socket only through it: a plain `read` beside it
/// would take bytes in no defined order relative to it. Writing is unaffected.
///
/// ```no_run
/// # async fn echo(stream: coreio::net::TcpStream) -> std::io::Result<()> {
/// let mut incoming = stream.recv_stream();
/// while let Some(buf) = incoming.next().await {
///     // The pooled buffer goes straight back out, then back to the pool.
///     stream.write_all(buf?).await.0?;
/// }
/// # Ok(())
/// # }
/// ```
pub struct RecvStream<'a> {
    io: &'a StreamIo,
    pool: Option<Rc<RecvPool>>,
    /// Its place in the pool's queue of receives waiting for a buffer (list mode).
    waiting: Option<WaitPlace>,
    state: State<'a>,
}

enum State<'a> {
    /// Nothing in flight: the next poll hands out kept bytes or starts a receive.
    Idle,
    /// Receives selecting buffers from the pool's ring (io_uring).
    Ring(RingReceiver),
    /// A receive into a buffer taken from the pool's list.
    Reading(Claim<'a, StreamRecv<PooledBuf>>),
    /// The peer closed its side.
    Ended,
}

impl<'a> RecvStream<'a> {
    pub(crate) fn new(io: &'a StreamIo) -> RecvStream<'a> {
        // The poll forms may have a receive of their own armed: it goes first (what it took
        // is kept on the socket, and handed out first below).
        io.release_pooled_reads();
        RecvStream {
            io,
            pool: None,
            waiting: None,
            state: State::Idle,
        }
    }

    /// The next buffer of received bytes; `None` at the end of the stream. Cancel-safe:
    /// dropping the future loses nothing (an item not handed out stays queued for the next
    /// call).
    pub async fn next(&mut self) -> Option<io::Result<PooledBuf>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// The poll form of [`next`](RecvStream::next).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<PooledBuf>>> {
        loop {
            match &mut self.state {
                State::Ended => return Poll::Ready(None),
                State::Idle => {
                    if let Err(item) = ready!(self.poll_start(cx)) {
                        return Poll::Ready(item);
                    }
                }
                State::Ring(receiver) => {
                    let item = ready!(receiver.poll_next(&self.io.fd, cx));
                    if item.is_none() {
                        self.state = State::Ended;
                    }
                    return Poll::Ready(item);
                }
                State::Reading(claim) => {
                    let completion = ready!(Pin::new(claim).poll(cx));
                    let buf = completion.data.finish(&completion.result);
                    self.state = State::Idle;
                    return Poll::Ready(match completion.result {
                        Ok(0) => {
                            self.state = State::Ended;
                            None
                        }
                        Ok(_) => Some(Ok(buf)),
                        Err(err) => Some(Err(err)),
                    });
                }
            }
        }
    }

    /// From `Idle`: hands out bytes kept on the socket, or starts receiving once the pool has
    /// a free buffer. `Ready(Ok(()))` means "poll the new state"; `Ready(Err(item))` is an item
    /// to return.
    fn poll_start(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Option<io::Result<PooledBuf>>>> {
        let fd = &self.io.fd;
        let held = fd.held();
        if !held.is_clear() {
            // A dropped read (or receive stream) left bytes, or is still finishing: they come
            // first, as for a plain read.
            ready!(Pin::new(&mut held.settled()).poll(cx));
            let capacity = self
                .pool
                .as_ref()
                .map_or(DEFAULT_RECV_BUFFER_SIZE, |p| p.buffer_size());
            let mut kept = Vec::with_capacity(capacity as usize);
            if let Some(result) = held.read_into(&mut kept) {
                return Poll::Ready(Err(Some(result.map(|_| PooledBuf::owned(kept)))));
            }
        }
        let pool = match &self.pool {
            Some(pool) => Rc::clone(pool),
            None => match context::with(|ctx| ctx.driver.recv_pool()) {
                Some(Ok(pool)) => {
                    self.pool = Some(Rc::clone(&pool));
                    pool
                }
                Some(Err(err)) => return Poll::Ready(Err(Some(Err(err)))),
                None => return Poll::Ready(Err(Some(Err(context::no_runtime())))),
            },
        };
        if pool.in_kernel() {
            self.state = State::Ring(RingReceiver::new(pool));
            return Poll::Ready(Ok(()));
        }
        if pool.available() == 0 {
            pool.grow();
        }
        ready!(pool.poll_available(&mut self.waiting, cx));
        let Some(buf) = pool.take() else {
            unreachable!("a free buffer was just reported");
        };
        let recv = StreamRecv::new(fd.clone(), buf)
            .short_read_drains(self.io.short_read_drains)
            .with_calls(self.io.calls());
        self.state = State::Reading(Claim::new(held, recv));
        Poll::Ready(Ok(()))
    }
}

/// Receives into buffers of a pool's provided ring (io_uring), armed once and re-armed when
/// the kernel ends the receive: after `ENOBUFS` once a buffer is back, after a refused
/// multishot receive as one buffer per receive. Shared by [`RecvStream`] and the poll forms
/// (`net::stream_poll`), which copy out of its buffers.
pub(crate) struct RingReceiver {
    pool: Rc<RecvPool>,
    armed: Option<Armed>,
    /// Its place in the pool's queue of receives waiting for a buffer.
    waiting: Option<WaitPlace>,
}

impl Drop for RingReceiver {
    fn drop(&mut self) {
        self.pool.stop_waiting(&mut self.waiting);
    }
}

/// An armed selecting receive. `_claim` is declared first so that it drops first: from the
/// moment the receiver is gone, the receive counts as an orphan of the socket (`driver::held`),
/// and the next read waits for what it still delivers.
struct Armed {
    _claim: StandingClaim,
    op: StreamOp<StreamRecvSelect>,
    /// Items it delivered so far: a refusal before the first means the kernel lacks it.
    items: u32,
    multishot: bool,
}

impl RingReceiver {
    /// A receiver over `pool`, whose free buffers must be in a kernel ring.
    pub(crate) fn new(pool: Rc<RecvPool>) -> RingReceiver {
        debug_assert!(pool.in_kernel());
        RingReceiver {
            pool,
            armed: None,
            waiting: None,
        }
    }

    /// Drops the armed receive, if any (it becomes an orphan of the socket, whose items are
    /// kept for the next read); the next poll arms a new one.
    pub(crate) fn disarm(&mut self) {
        self.armed = None;
    }

    /// Whether a multishot receive is armed now.
    fn multishot_armed(&self) -> bool {
        self.armed.as_ref().is_some_and(|armed| armed.multishot)
    }

    /// The next buffer the kernel filled on `fd`; `None` at the end of the stream.
    pub(crate) fn poll_next(
        &mut self,
        fd: &SharedFd,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<PooledBuf>>> {
        loop {
            let Some(armed) = &mut self.armed else {
                // Wait for a free buffer before arming: an empty ring only ends the receive.
                ready!(self.pool.poll_available(&mut self.waiting, cx));
                let op = StreamRecvSelect::new(fd.clone(), Rc::clone(&self.pool));
                let multishot = op.is_multishot();
                self.armed = Some(Armed {
                    _claim: StandingClaim::new(fd.clone()),
                    op: StreamOp::new(op),
                    items: 0,
                    multishot,
                });
                continue;
            };
            // Handing out a queued buffer is I/O too: it spends the task's budget.
            ready!(coop::poll_proceed(cx));
            let Some(item) = ready!(armed.op.poll_next(cx)) else {
                // The kernel ended the receive (after its last item): arm it again.
                self.armed = None;
                continue;
            };
            armed.items += 1;
            let (first, multishot) = (armed.items == 1, armed.multishot);
            if let Some(id) = cqueue::buffer_select(item.flags) {
                let len = *item.result.as_ref().unwrap_or(&0);
                let Some(buf) = self.pool.from_kernel(id, len) else {
                    return Poll::Ready(Some(Err(io::Error::other(format!(
                        "the kernel lent buffer {id}, which the receive pool never had"
                    )))));
                };
                if len == 0 {
                    // End of stream with a buffer attached: it goes back with `buf`.
                    self.armed = None;
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Ok(buf)));
            }
            match item.result {
                Ok(0) => {
                    self.armed = None;
                    return Poll::Ready(None);
                }
                Ok(n) => {
                    self.armed = None;
                    return Poll::Ready(Some(Err(io::Error::other(format!(
                        "a receive reported {n} bytes without the buffer it used"
                    )))));
                }
                // The ring ran empty: the core's receives want more buffers than circulate, so
                // the pool grows if it may (else this waits for a buffer to come back); then
                // the receive is armed again.
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.armed = None;
                    self.pool.grow();
                }
                // The driver cancelled it, this stream having as many buffers waiting as it
                // may (`StreamOperation::QUEUE_LIMIT`): the consumer caught up, re-arm.
                Err(err) if err.raw_os_error() == Some(libc::ECANCELED) => self.armed = None,
                // A kernel without multishot receive refuses it at once.
                Err(err) if first && multishot && err.raw_os_error() == Some(libc::EINVAL) => {
                    self.pool.multishot_refused();
                    self.armed = None;
                }
                Err(err) => {
                    self.armed = None;
                    return Poll::Ready(Some(Err(err)));
                }
            }
        }
    }
}

impl Drop for RecvStream<'_> {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.stop_waiting(&mut self.waiting);
        }
    }
}

impl futures_core::Stream for RecvStream<'_> {
    type Item = io::Result<PooledBuf>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        RecvStream::poll_next(self.get_mut(), cx)
    }
}

impl std::fmt::Debug for RecvStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Idle => "idle",
            State::Ring(receiver) if receiver.multishot_armed() => "multishot receive armed",
            State::Ring(_) => "buffer-selecting receive",
            State::Reading(_) => "reading",
            State::Ended => "ended",
        };
        f.debug_struct("RecvStream").field("state", &state).finish()
    }
}
