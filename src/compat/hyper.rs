//! hyper 1.x on a coreio core (feature `hyper`): `hyper::rt::Read` and `Write` for the stream
//! types and pipes, and the executor and timer hyper's connection builders take.
//!
//! The I/O impls read straight into hyper's (uninitialized) read buffer with the same
//! readiness-based poll forms as the futures-io and tokio impls. [`CoreExecutor`] spawns on
//! the current core, so the futures hyper spawns (HTTP/2 streams, a client connection's
//! driver) may be `!Send` and never leave the core; [`CoreTimer`] sleeps on the core's timer
//! wheel, for header-read and keep-alive timeouts.
//!
//! ```no_run
//! use std::convert::Infallible;
//!
//! use coreio::hyper::CoreTimer;
//! use coreio::net::TcpListener;
//! use http_body_util::Full;
//! use hyper::body::Bytes;
//! use hyper::{Request, Response};
//!
//! async fn hello(_: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     Ok(Response::new(Full::new(Bytes::from_static(b"hello\n"))))
//! }
//!
//! async fn serve() -> std::io::Result<()> {
//!     let listener = TcpListener::bind("127.0.0.1:8080".parse().unwrap())?;
//!     loop {
//!         let (stream, _peer) = listener.accept().await?;
//!         // One task per connection, on this core; the stream is hyper's I/O as it is.
//!         coreio::spawn(async move {
//!             let served = hyper::server::conn::http1::Builder::new()
//!                 .timer(CoreTimer)
//!                 .header_read_timeout(std::time::Duration::from_secs(10))
//!                 .serve_connection(stream, hyper::service::service_fn(hello))
//!                 .await;
//!             if let Err(err) = served {
//!                 eprintln!("connection ended: {err}");
//!             }
//!         });
//!     }
//! }
//!
//! coreio::block_on(serve()).unwrap().unwrap();
//! ```
//!
//! `examples/http` adds HTTP/2, TLS, limits and a graceful drain.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use ::hyper::rt::{self, ReadBufCursor};

use crate::net::stream_poll::{PollRead, PollWrite, for_each_poll_reader, for_each_poll_writer};
use crate::time::Sleep;

/// hyper's executor over [`spawn`](crate::spawn): each future hyper hands it becomes a task on
/// the current core, detached.
///
/// The futures may be `!Send` (hyper's "local executor" pattern): a connection, its HTTP/2
/// streams and the service they call all stay on the core that accepted the connection.
///
/// # Panics
///
/// hyper calls it from inside the connection it drives; used outside a coreio runtime, the
/// spawn panics, as [`spawn`](crate::spawn) does.
#[derive(Clone, Copy, Debug, Default)]
pub struct CoreExecutor;

impl<F> rt::Executor<F> for CoreExecutor
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, future: F) {
        drop(crate::spawn(future));
    }
}

/// hyper's timer over the current core's timer wheel ([`coreio::time`](crate::time)): what
/// `header_read_timeout`, keep-alive pings and idle timeouts need.
///
/// # Panics
///
/// A sleep it makes is polled by the connection that asked for it, on its core; polled outside
/// a coreio runtime it panics, as [`Sleep`] does.
#[derive(Clone, Copy, Debug, Default)]
pub struct CoreTimer;

impl rt::Timer for CoreTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn rt::Sleep>> {
        Box::pin(crate::time::sleep(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn rt::Sleep>> {
        Box::pin(crate::time::sleep_until(deadline))
    }

    /// Moves the deadline of a sleep this timer made in place (no new allocation); one made by
    /// another timer is replaced.
    fn reset(&self, sleep: &mut Pin<Box<dyn rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Sleep>() {
            Some(ours) => ours.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

impl rt::Sleep for Sleep {}

macro_rules! hyper_read {
    ([$($generics:tt)*] $ty:ty) => {
        impl<$($generics)*> rt::Read for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                mut buf: ReadBufCursor<'_>,
            ) -> Poll<io::Result<()>> {
                let io = PollRead::read_io(&*self);
                // SAFETY: `poll_read_uninit` writes only initialized bytes (the kernel's, or
                // held ones), and no more than it reports.
                let n = ready!(io.poll_read_uninit(cx, unsafe { buf.as_mut() }))?;
                // SAFETY: the first `n` bytes of the cursor's memory were just written.
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
        }
    };
}

macro_rules! hyper_write {
    ([$($generics:tt)*] $ty:ty) => {
        impl<$($generics)*> rt::Write for $ty {
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

for_each_poll_reader!(hyper_read);
for_each_poll_writer!(hyper_write);
