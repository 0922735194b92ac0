//! [`StreamIo`]: the read and write loops every stream socket shares (TCP today; Unix streams
//! next) and pipes too (`read(2)`/`write(2)` instead of `recv`/`send`: [`Calls`]), so that each
//! stream type is a thin layer of options over one tested core.

// This module owns the cancel-safe read (held bytes first, see `crate::driver::held`),
// `read_exact`, `peek`, `write`, `write_all` and their vectored forms over a `SharedFd`. It must
// never know which kind of stream it serves: address types, options and hand-off belong to the
// socket types.

use std::io;

use crate::buf::{IoBuf, IoBufMut, Slice, no_capacity_error};
use crate::context;
use crate::driver::{Claim, Op, SharedFd, StreamOp};
use crate::net::ops::{
    Calls, StreamPeek, StreamRecv, StreamSend, StreamSendVectored, StreamSendZc,
};

/// The smallest send `Builder::zero_copy_sends` may make zero-copy: below a page, pinning the
/// pages and waiting for the notification costs more than the copy it saves.
pub const MIN_ZERO_COPY_SEND: usize = 4096;

/// Whether a zero-copy send failed because the socket or kernel cannot do one (then a plain
/// send is made instead).
fn refuses_zero_copy(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL))
}

/// A connected stream socket's I/O. The socket types document these methods for their users.
pub struct StreamIo {
    pub(crate) fd: SharedFd,
    /// epoll: whether a short read means the socket is drained (`StreamRecv::short_read_drains`):
    /// true from `new` (TCP), set false by socket types whose reads stop early (Unix streams).
    pub(crate) short_read_drains: bool,
    calls: Calls,
    /// io_uring: whether large writes may be zero-copy sends (`Builder::zero_copy_sends`):
    /// true for TCP, false for pipes and Unix streams (whose kernel side has no zero-copy
    /// send), and turned off for good if the kernel refuses one on this socket.
    pub(crate) zero_copy_sends: std::cell::Cell<bool>,
    /// The readiness waits of the poll forms (`stream_poll`), kept between polls; allocated
    /// by the first poll, so a stream used only through owned buffers pays one word for it.
    pub(crate) waits: std::cell::OnceCell<Box<super::stream_poll::PollWaits>>,
}

impl StreamIo {
    pub(crate) fn new(fd: SharedFd) -> StreamIo {
        StreamIo::with_calls(fd, Calls::Socket)
    }

    /// A stream whose reads and writes use `calls` (`Calls::Pipe` for a pipe).
    pub(crate) fn with_calls(fd: SharedFd, calls: Calls) -> StreamIo {
        StreamIo {
            fd,
            short_read_drains: true,
            zero_copy_sends: std::cell::Cell::new(calls == Calls::Socket),
            calls,
            waits: Default::default(),
        }
    }

    /// Which system calls the stream's reads and writes use.
    pub(crate) fn calls(&self) -> Calls {
        self.calls
    }

    /// One receive into `buf`, held bytes first; cancel-safe. A buffer without capacity is
    /// refused (`InvalidInput`) before anything is submitted: its `Ok(0)` would look like end
    /// of stream.
    pub(crate) async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        let mut buf = buf;
        if buf.bytes_total() == 0 {
            return (Err(no_capacity_error()), buf);
        }
        self.release_pooled_reads();
        let held = self.fd.held();
        if !held.is_clear() {
            // A dropped read left something, or is still finishing: its bytes come first, so
            // wait until it has, then hand out what it took (see `driver::held`).
            held.settled().await;
            if let Some(result) = held.read_into(&mut buf) {
                return (result, buf);
            }
        }
        let recv = StreamRecv::new(self.fd.clone(), buf)
            .short_read_drains(self.short_read_drains)
            .with_calls(self.calls);
        let completion = Claim::new(held, recv).await;
        let buf = completion.data.finish(&completion.result);
        (completion.result.map(|n| n as usize), buf)
    }

    /// The stream's incoming bytes in buffers of the core's receive pool.
    pub(crate) fn recv_stream(&self) -> super::RecvStream<'_> {
        super::RecvStream::new(self)
    }

    /// Receives until `buf` is full (`UnexpectedEof` on an early end of stream).
    pub(crate) async fn read_exact<B: IoBufMut>(&self, buf: B) -> (io::Result<()>, B) {
        let total = buf.bytes_total();
        let mut filled = 0;
        let mut buf = buf;
        while filled < total {
            let (res, slice) = self.read(buf.slice(filled..)).await;
            buf = slice.into_inner();
            match res {
                Ok(0) => return (Err(io::ErrorKind::UnexpectedEof.into()), buf),
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return (Err(err), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Copies queued bytes into `buf` without taking them: held bytes first (they come before
    /// anything still in the socket), then the socket's queue (`MSG_PEEK`).
    pub(crate) async fn peek<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        let mut buf = buf;
        if buf.bytes_total() == 0 {
            // As for `read`: an `Ok(0)` would look like end of stream.
            return (Err(no_capacity_error()), buf);
        }
        self.release_pooled_reads();
        let held = self.fd.held();
        if !held.is_clear() {
            held.settled().await;
            if let Some(result) = held.peek_into(&mut buf) {
                return (result, buf);
            }
        }
        let completion = Op::new(StreamPeek::new(self.fd.clone(), buf)).await;
        let buf = completion.data.finish(&completion.result);
        (completion.result.map(|n| n as usize), buf)
    }

    /// One send of `buf`'s initialised bytes: a zero-copy send on io_uring when the runtime
    /// enables them for a buffer this large (`Builder::zero_copy_sends`).
    pub(crate) async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        let mut buf = buf;
        if buf.bytes_init() >= MIN_ZERO_COPY_SEND && self.zero_copy_for(buf.bytes_init()) {
            let (result, back) = self.write_zero_copy(buf).await;
            match result {
                Err(err) if refuses_zero_copy(&err) => {
                    // This socket's kernel side cannot: plain sends from now on.
                    self.zero_copy_sends.set(false);
                    buf = back;
                }
                result => return (result, back),
            }
        }
        let completion = Op::new(StreamSend {
            socket: self.fd.clone(),
            buf,
            calls: self.calls,
        })
        .await;
        (completion.result.map(|n| n as usize), completion.data.buf)
    }

    /// Whether a send of `len` bytes should be a zero-copy one.
    fn zero_copy_for(&self, len: usize) -> bool {
        self.zero_copy_sends.get()
            && context::with(|ctx| ctx.driver.zero_copy_send_threshold())
                .flatten()
                .is_some_and(|min| len >= min)
    }

    /// One zero-copy send (`IORING_OP_SEND_ZC`): returns once the kernel is done with the
    /// buffer (its notification), so the buffer comes back free to reuse. Dropped before
    /// that, the driver keeps the buffer until the notification.
    async fn write_zero_copy<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        context::with(|ctx| ctx.driver.count_zero_copy_send());
        let mut op = StreamOp::new(StreamSendZc {
            socket: self.fd.clone(),
            buf,
        });
        // The first completion is the send's result; the notification, if any, follows.
        let mut result = None;
        while let Some(item) = std::future::poll_fn(|cx| op.poll_next(cx)).await {
            result.get_or_insert(item.result);
        }
        let Some(data) = op.take_data() else {
            unreachable!("an ended stream still holds its data");
        };
        let result = result.unwrap_or(Ok(0)).map(|n| n as usize);
        (result, data.buf)
    }

    /// Sends until every initialised byte of `buf` is written.
    pub(crate) async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        let total = buf.bytes_init();
        let mut written = 0;
        let mut buf = buf;
        while written < total {
            let (res, slice): (_, Slice<B>) = self.write(buf.slice(written..total)).await;
            buf = slice.into_inner();
            match res {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return (Err(err), buf),
            }
        }
        (Ok(()), buf)
    }

    /// One `sendmsg` of the buffers' initialised bytes, in order; returns how many were sent.
    pub(crate) async fn write_vectored<B: IoBuf>(
        &self,
        bufs: Vec<B>,
    ) -> (io::Result<usize>, Vec<B>) {
        self.send_vectored(bufs, 0).await
    }

    /// Sends every initialised byte of every buffer, in order.
    pub(crate) async fn write_all_vectored<B: IoBuf>(
        &self,
        bufs: Vec<B>,
    ) -> (io::Result<()>, Vec<B>) {
        let total: usize = bufs.iter().map(IoBuf::bytes_init).sum();
        let mut written = 0;
        let mut bufs = bufs;
        while written < total {
            let (res, back) = self.send_vectored(bufs, written).await;
            bufs = back;
            match res {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), bufs),
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return (Err(err), bufs),
            }
        }
        (Ok(()), bufs)
    }

    /// One send of the buffers' bytes after the first `skip`.
    async fn send_vectored<B: IoBuf>(
        &self,
        bufs: Vec<B>,
        skip: usize,
    ) -> (io::Result<usize>, Vec<B>) {
        let op = StreamSendVectored::new(self.fd.clone(), bufs, skip);
        if op.len() == 0 {
            // Nothing to send: the kernel would report 0 anyway.
            return (Ok(0), op.into_bufs());
        }
        let completion = Op::new(op).await;
        (
            completion.result.map(|n| n as usize),
            completion.data.into_bufs(),
        )
    }
}
