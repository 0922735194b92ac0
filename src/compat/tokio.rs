//! `tokio::io::AsyncRead` and `AsyncWrite` for the stream types and pipes (feature `tokio`), so
//! that libraries written against tokio's traits (tokio-rustls, tokio-util's codecs,
//! hyper-util's `TokioIo`) run on a coreio core. Only the traits come from tokio, not its
//! runtime.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ::tokio::io::ReadBuf;

use crate::net::StreamIo;
use crate::net::stream_poll::{PollRead, PollWrite, for_each_poll_reader, for_each_poll_writer};

/// Reads into the unfilled part of `buf`, which need not be initialized.
fn poll_read_buf(
    io: &StreamIo,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    // SAFETY: `poll_read_uninit` writes only initialized bytes (the kernel's, or held ones),
    // and no more than it reports.
    let unfilled = unsafe { buf.unfilled_mut() };
    let n = ready!(io.poll_read_uninit(cx, unfilled))?;
    // SAFETY: the first `n` bytes of the unfilled part were just written.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Poll::Ready(Ok(()))
}

macro_rules! tokio_read {
    ([$($generics:tt)*] $ty:ty) => {
        impl<$($generics)*> ::tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                poll_read_buf(PollRead::read_io(&*self), cx, buf)
            }
        }
    };
}

macro_rules! tokio_write {
    ([$($generics:tt)*] $ty:ty) => {
        impl<$($generics)*> ::tokio::io::AsyncWrite for $ty {
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

            fn is_write_vectored(&self) -> bool {
                true
            }

            /// Writes go straight to the descriptor: nothing to flush.
            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            /// Shuts the write direction down (a pipe's closes when it is dropped).
            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(PollWrite::shutdown_write(&*self))
            }
        }
    };
}

for_each_poll_reader!(tokio_read);
for_each_poll_writer!(tokio_write);
