//! Poll-based reads and writes of a [`StreamIo`] into the caller's slices, and the ecosystem's
//! I/O traits over them: `futures_io::AsyncRead` and `AsyncWrite` for [`TcpStream`],
//! [`UnixStream`] and their halves (the pipes' are in `crate::io::pipe`).
//!
//! Writes, and reads on epoll and from pipes, are readiness-based: a non-blocking syscall
//! (`recv`/`send` with `MSG_DONTWAIT`, or `read`/`write` on a pipe, which is `O_NONBLOCK`)
//! straight into the caller's slice, and on `EAGAIN` a readiness wait
//! (`io::poll_ready::ReadyWait`: a one-shot `POLL_ADD` on io_uring, the epoll edge on epoll) kept
//! in the stream between polls. Socket reads on io_uring, where the core's receive pool is a
//! provided buffer ring, go through a multishot receive of their own instead (`PooledReads`):
//! arrivals land in the pool's buffers with no syscall and no poll armed per read, and a read
//! copies out of them (one copy, as the syscall's). Either way nothing is lost when the caller
//! stops polling, and an owned-buffer read, a receive stream or a hand-over of the descriptor
//! first stops that receive, keeping what it took on the socket for the next read. What dropped
//! owned-buffer reads left on the socket (`driver::held`) comes first, as for the owned API.
//!
//! One wait per direction is kept, so the poll forms serve one reader and one writer at a time
//! (an `AsyncRead` half and an `AsyncWrite` half in two tasks); a second poller of the same
//! direction takes the wait over, and the first is then woken no more.

// This module owns those poll loops. It must never let the kernel keep a pointer into the caller's
// slice after the call returns (so no ring submission touches a slice: the multishot receive
// writes into the pool's buffers only).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::ops::Calls;
use super::recv_stream::RingReceiver;
use super::split::sealed::Sealed;
use super::stream_io::StreamIo;
use super::{ByteStream, ReadHalf, TcpStream, UnixStream, WriteHalf};
use crate::buf::{MAX_IOVECS, PooledBuf};
use crate::driver::Direction;
use crate::io::ReadyWait;
use crate::sys::{clamp_len, cvt};
use crate::{context, coop};

/// The readiness waits a stream's poll forms keep between polls.
#[derive(Default)]
pub(crate) struct PollWaits {
    /// io_uring with the core's provided buffer ring: the reads' own multishot receive, and
    /// the buffer being copied out (`None` until the first read, or when the core has no ring).
    pooled: RefCell<Option<PooledReads>>,
    /// Whether reads go through `pooled` (`None`: not asked yet).
    pooled_mode: Cell<Option<bool>>,
    read: Cell<Option<ReadyWait>>,
    write: Cell<Option<ReadyWait>>,
    /// The last read returned less than it asked for: the stream is empty for now, so the next
    /// read waits for readiness first instead of making a syscall bound to fail with `EAGAIN`
    /// (what hyper's read-after-parse would otherwise cost on every request).
    read_drained: Cell<bool>,
}

/// Poll-form reads over a multishot receive (io_uring): every arrival lands in a buffer of the
/// core's ring with no syscall and no readiness poll, and reads copy out of it.
struct PooledReads {
    receiver: RingReceiver,
    current: Option<PooledBuf>,
    /// Bytes of `current` already read.
    offset: usize,
    /// The peer closed its side: reads return 0 from now on.
    ended: bool,
}

impl PooledReads {
    /// Copies the next bytes into `dst`; `Pending` while nothing has arrived.
    fn poll_read(
        &mut self,
        fd: &super::super::driver::SharedFd,
        cx: &mut Context<'_>,
        dst: &mut [MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        loop {
            if let Some(buf) = &self.current {
                let rest = &buf[self.offset..];
                let n = rest.len().min(dst.len());
                // SAFETY: `rest` holds at least `n` initialised bytes, `dst` has room for `n`,
                // and the two cannot overlap (the pool's memory is not the caller's slice).
                unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), dst.as_mut_ptr().cast(), n) };
                self.offset += n;
                if self.offset == buf.len() {
                    // Copied out whole: the buffer goes back to the ring.
                    self.current = None;
                    self.offset = 0;
                }
                return Poll::Ready(Ok(n));
            }
            if self.ended {
                return Poll::Ready(Ok(0));
            }
            match ready!(self.receiver.poll_next(fd, cx)) {
                Some(Ok(buf)) => self.current = Some(buf),
                Some(Err(err)) => return Poll::Ready(Err(err)),
                None => self.ended = true,
            }
        }
    }

    /// Stops receiving: the bytes not read yet are kept on the socket, then the receive is
    /// dropped (what it still delivers is kept after them), so a read of another kind sees
    /// everything in order.
    fn release(&mut self, held: &crate::driver::Held) {
        if let Some(buf) = self.current.take() {
            held.keep_bytes(&buf[self.offset..]);
            self.offset = 0;
        }
        self.receiver.disarm();
    }
}

impl StreamIo {
    /// The poll forms' multishot receive, if one is armed, stops: what it took is kept on the
    /// socket for the next read. Every read of another kind (owned buffers, a receive stream)
    /// and every hand-over of the descriptor calls this first, so bytes are never taken in two
    /// places at once.
    pub(crate) fn release_pooled_reads(&self) {
        if let Some(waits) = self.waits.get()
            && let Some(reads) = waits.pooled.borrow_mut().as_mut()
        {
            reads.release(self.fd.held());
        }
    }

    /// io_uring with the core's buffer ring: reads `dst` from the poll forms' multishot
    /// receive. `None` when this stream's reads do not go that way (epoll, a pipe, no ring).
    fn poll_read_pooled(
        &self,
        cx: &mut Context<'_>,
        dst: &mut [MaybeUninit<u8>],
    ) -> Option<Poll<io::Result<usize>>> {
        let waits = self.waits();
        match waits.pooled_mode.get() {
            Some(false) => return None,
            Some(true) => {}
            None => {
                let pool = (self.calls() == Calls::Socket)
                    .then(|| context::with(|ctx| ctx.driver.multishot_recv_pool()).flatten())
                    .flatten();
                waits.pooled_mode.set(Some(pool.is_some()));
                *waits.pooled.borrow_mut() = Some(PooledReads {
                    receiver: RingReceiver::new(pool?),
                    current: None,
                    offset: 0,
                    ended: false,
                });
            }
        }
        let mut pooled = waits.pooled.borrow_mut();
        let reads = pooled.as_mut()?;
        Some(reads.poll_read(&self.fd, cx, dst))
    }

    /// Reads what is queued into `dst` (held bytes first); `Ok(0)` at the end of the stream or
    /// for an empty `dst`.
    pub(crate) fn poll_read_slice(
        &self,
        cx: &mut Context<'_>,
        dst: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // SAFETY: the same memory seen as possibly uninitialized; `poll_read_uninit` only
        // ever writes initialized bytes into it (the kernel's, or held ones).
        let dst = unsafe { &mut *(std::ptr::from_mut(dst) as *mut [MaybeUninit<u8>]) };
        self.poll_read_uninit(cx, dst)
    }

    /// [`poll_read_slice`](Self::poll_read_slice) into memory that need not be initialized
    /// (tokio's `ReadBuf`, hyper's `ReadBufCursor`): the first `n` bytes of `dst` are
    /// initialized when it returns `Ok(n)`, and nothing else is written.
    pub(crate) fn poll_read_uninit(
        &self,
        cx: &mut Context<'_>,
        dst: &mut [MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        if dst.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let held = self.fd.held();
        if !held.is_clear() {
            // A dropped owned read is finishing, or left bytes: they come first.
            ready!(Pin::new(&mut held.settled()).poll(cx));
            if let Some(result) = held.read_into_slice(dst) {
                return Poll::Ready(result);
            }
        }
        ready!(coop::poll_proceed(cx));
        if let Some(read) = self.poll_read_pooled(cx, dst) {
            return read;
        }
        let (fd, calls) = (self.fd.raw(), self.calls());
        let waits = self.waits();
        let len = clamp_len(dst.len()) as usize;
        // Drained: wait for readiness first, unless epoll already reported it. (Only an fd
        // registered with epoll has that to ask: on io_uring the core is not looked up.)
        let epoll = self.fd.epoll_token().is_some();
        let try_first = !waits.read_drained.get()
            || epoll
                && context::with(|ctx| ctx.driver.readable_edge_since_drained(&self.fd))
                    .unwrap_or(true);
        let read = self.poll_io(Direction::Read, &waits.read, cx, try_first, || {
            let ptr = dst.as_mut_ptr().cast();
            let n = cvt(match calls {
                // SAFETY: `dst` is valid for writes of `len` bytes during the call; the
                // socket is open while `self.fd` lives.
                Calls::Socket => unsafe { libc::recv(fd, ptr, len, libc::MSG_DONTWAIT) },
                // SAFETY: the same slice and descriptor guarantees; the pipe is O_NONBLOCK.
                Calls::Pipe => unsafe { libc::read(fd, ptr, len) },
            })?;
            Ok(n as usize)
        });
        if let Poll::Ready(result) = &read {
            // A short read emptied the stream; a full one may have left more; the end of the
            // stream (0) or an error must be seen again by the next read, so it tries.
            let drained = matches!(result, Ok(n) if *n > 0 && *n < len);
            waits.read_drained.set(drained);
            if drained && epoll {
                context::with(|ctx| ctx.driver.mark_read_drained(&self.fd));
            }
        }
        read
    }

    /// Writes what it can of `src`; `Ok(0)` only for an empty `src`.
    pub(crate) fn poll_write_slice(
        &self,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        if src.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(coop::poll_proceed(cx));
        let (fd, calls) = (self.fd.raw(), self.calls());
        self.poll_io(Direction::Write, &self.waits().write, cx, true, || {
            let len = clamp_len(src.len()) as usize;
            let ptr = src.as_ptr().cast();
            let n = cvt(match calls {
                // SAFETY: `src` is valid for reads of `len` bytes during the call; the socket is
                // open while `self.fd` lives. MSG_NOSIGNAL: a closed peer is EPIPE, no signal.
                Calls::Socket => unsafe {
                    libc::send(fd, ptr, len, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                },
                // SAFETY: the same slice and descriptor guarantees; the pipe is O_NONBLOCK (and
                // SIGPIPE is ignored by `io::pipe`).
                Calls::Pipe => unsafe { libc::write(fd, ptr, len) },
            })?;
            Ok(n as usize)
        })
    }

    /// Writes what it can of `bufs`, in order, with one `sendmsg` (`writev` on a pipe).
    pub(crate) fn poll_write_vectored_slices(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let count = bufs.len().min(MAX_IOVECS);
        if bufs[..count].iter().all(|buf| buf.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        ready!(coop::poll_proceed(cx));
        let (fd, calls) = (self.fd.raw(), self.calls());
        self.poll_io(Direction::Write, &self.waits().write, cx, true, || {
            // `IoSlice` is ABI-compatible with `iovec` (std guarantees it on Unix).
            let iov = bufs.as_ptr().cast::<libc::iovec>().cast_mut();
            let n = cvt(match calls {
                Calls::Socket => {
                    // SAFETY: all-zero is a valid, empty msghdr; the iovecs are set below.
                    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                    msg.msg_iov = iov;
                    msg.msg_iovlen = count;
                    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
                    // SAFETY: `msg` points at `count` valid iovecs over the caller's slices,
                    // read during the call only; the socket is open while `self.fd` lives.
                    unsafe { libc::sendmsg(fd, &msg, flags) }
                }
                // SAFETY: the same iovecs and descriptor guarantees; the pipe is O_NONBLOCK.
                Calls::Pipe => unsafe { libc::writev(fd, iov, count as libc::c_int) },
            })?;
            Ok(n as usize)
        })
    }

    fn waits(&self) -> &PollWaits {
        self.waits.get_or_init(Box::default)
    }

    /// Tries `attempt` (first waiting, unless `try_first`); while it would block, waits for
    /// `direction`'s readiness (the wait kept in `kept` between polls) and tries again.
    fn poll_io(
        &self,
        direction: Direction,
        kept: &Cell<Option<ReadyWait>>,
        cx: &mut Context<'_>,
        try_first: bool,
        mut attempt: impl FnMut() -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let mut try_now = try_first;
        loop {
            if try_now {
                match attempt() {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    result => {
                        // Done: a wait still in flight (from an earlier poll) is not needed.
                        drop(kept.take());
                        return Poll::Ready(result);
                    }
                }
            }
            try_now = true;
            let mut wait = kept
                .take()
                .unwrap_or_else(|| ReadyWait::new(self.fd.clone(), direction));
            match wait.poll(cx) {
                Poll::Pending => {
                    kept.set(Some(wait));
                    return Poll::Pending;
                }
                // Ready (or an error or hang-up, which the next attempt reports): try again.
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            }
        }
    }
}

/// A type whose poll-form reads go through a [`StreamIo`]: what the ecosystem's read traits
/// are implemented over (futures-io below, tokio's and hyper's in `crate::compat`).
pub(crate) trait PollRead {
    fn read_io(&self) -> &StreamIo;
}

/// A type whose poll-form writes go through a [`StreamIo`].
pub(crate) trait PollWrite {
    fn write_io(&self) -> &StreamIo;

    /// Ends the write direction, for the traits' `close`/`shutdown`: the peer then reads end
    /// of stream, and reading (of a socket) goes on.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl PollRead for TcpStream {
    fn read_io(&self) -> &StreamIo {
        self.stream_io()
    }
}

impl PollWrite for TcpStream {
    fn write_io(&self) -> &StreamIo {
        self.stream_io()
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown_stream(Shutdown::Write)
    }
}

impl PollRead for UnixStream {
    fn read_io(&self) -> &StreamIo {
        self.stream_io()
    }
}

impl PollWrite for UnixStream {
    fn write_io(&self) -> &StreamIo {
        self.stream_io()
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown_stream(Shutdown::Write)
    }
}

impl<S: ByteStream> PollRead for ReadHalf<S> {
    fn read_io(&self) -> &StreamIo {
        self.stream.stream_io()
    }
}

impl<S: ByteStream> PollWrite for WriteHalf<S> {
    fn write_io(&self) -> &StreamIo {
        self.stream().stream_io()
    }
    /// As dropping the half does.
    fn shutdown_write(&self) -> io::Result<()> {
        self.stream().shutdown_stream(Shutdown::Write)
    }
}

/// Implements an I/O trait for each listed type, generics in brackets:
/// `poll_impls!(macro_name: [] TcpStream, [S: ByteStream] ReadHalf<S>)` expands to
/// `macro_name!([] TcpStream); macro_name!([S: ByteStream] ReadHalf<S>);`.
macro_rules! poll_impls {
    ($imp:ident: $([$($generics:tt)*] $ty:ty),* $(,)?) => {
        $( $imp!([$($generics)*] $ty); )*
    };
}
pub(crate) use poll_impls;

/// Every type with poll-form reads, for `poll_impls!`.
macro_rules! for_each_poll_reader {
    ($imp:ident) => {
        $crate::net::stream_poll::poll_impls!($imp:
            [] $crate::net::TcpStream,
            [] $crate::net::UnixStream,
            [S: $crate::net::ByteStream] $crate::net::ReadHalf<S>,
            [] $crate::io::PipeReader,
        );
    };
}
#[cfg_attr(not(any(feature = "tokio", feature = "hyper")), allow(unused_imports))]
pub(crate) use for_each_poll_reader;

/// Every type with poll-form writes, for `poll_impls!`.
macro_rules! for_each_poll_writer {
    ($imp:ident) => {
        $crate::net::stream_poll::poll_impls!($imp:
            [] $crate::net::TcpStream,
            [] $crate::net::UnixStream,
            [S: $crate::net::ByteStream] $crate::net::WriteHalf<S>,
            [] $crate::io::PipeWriter,
        );
    };
}
#[cfg_attr(not(any(feature = "tokio", feature = "hyper")), allow(unused_imports))]
pub(crate) use for_each_poll_writer;

macro_rules! futures_io_read {
    ([$($generics:tt)*] $ty:ty) => {
        impl<$($generics)*> futures_io::AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                PollRead::read_io(&*self).poll_read_slice(cx, buf)
            }
        }
    };
}

macro_rules! futures_io_write {
    ([$($generics:tt)*] $ty:ty) => {
        impl<$($generics)*> futures_io::AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                PollWrite::write_io(&*self).poll_write_slice(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                PollWrite::write_io(&*self).poll_write_vectored_slices(cx, bufs)
            }

            /// Writes go straight to the descriptor: nothing to flush.
            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            /// Shuts the write direction down (the peer reads end of stream); reading goes on.
            /// A pipe's writing end closes when it is dropped; until then this does nothing.
            fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(PollWrite::shutdown_write(&*self))
            }
        }
    };
}

for_each_poll_reader!(futures_io_read);
for_each_poll_writer!(futures_io_write);
