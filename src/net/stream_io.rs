//! [`StreamIo`]: the read and write loops every stream socket shares (TCP today; Unix streams
//! next) and pipes too (`read(2)`/`write(2)` instead of `recv`/`send`: [`Calls`]), so that each
//! stream type is a thin layer of options over one tested core.
//!
//! It owns the cancel-safe read (held bytes first, see `crate::driver::held`), `read_exact`,
//! `write` and `write_all` over a [`SharedFd`]. It must never know which kind of stream it
//! serves: address types, options and hand-off belong to the socket types.

use std::io;

use crate::buf::{IoBuf, IoBufMut, Slice};
use crate::driver::{Claim, Op, SharedFd};
use crate::net::ops::{Calls, StreamRecv, StreamSend};

/// A connected stream socket's I/O. The socket types document these methods for their users.
pub(crate) struct StreamIo {
    pub(crate) fd: SharedFd,
    calls: Calls,
}

impl StreamIo {
    pub(crate) fn new(fd: SharedFd) -> StreamIo {
        StreamIo::with_calls(fd, Calls::Socket)
    }

    /// A stream whose reads and writes use `calls` (`Calls::Pipe` for a pipe).
    pub(crate) fn with_calls(fd: SharedFd, calls: Calls) -> StreamIo {
        StreamIo { fd, calls }
    }

    /// One receive into `buf`, held bytes first; cancel-safe.
    pub(crate) async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        let mut buf = buf;
        if buf.bytes_total() == 0 {
            // The kernel would wait for a byte it has nowhere to put.
            return (Ok(0), buf);
        }
        let held = self.fd.held();
        if !held.is_clear() {
            // A dropped read left something, or is still finishing: its bytes come first, so
            // wait until it has, then hand out what it took (see `driver::held`).
            held.settled().await;
            if let Some(result) = held.read_into(&mut buf) {
                return (result, buf);
            }
        }
        let recv = StreamRecv::new(self.fd.clone(), buf).with_calls(self.calls);
        let completion = Claim::new(held, recv).await;
        let buf = completion.data.finish(&completion.result);
        (completion.result.map(|n| n as usize), buf)
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

    /// One send of `buf`'s initialised bytes.
    pub(crate) async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        let completion = Op::new(StreamSend {
            socket: self.fd.clone(),
            buf,
            calls: self.calls,
        })
        .await;
        (completion.result.map(|n| n as usize), completion.data.buf)
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
}
