//! [`Incoming`]: a listener's connections as a [`futures_core::Stream`], for accept loops
//! written with stream combinators or `while let Some(..)`.
//!
//! It owns no accepting state of its own: each item is one `accept` of the listener it borrows
//! (`TcpListener::accept`, `UnixListener::accept`), so it keeps their behaviour (transient
//! failures absorbed, the back-off on `EMFILE`, the multishot accept where it is on) and their
//! cancel-safety. What it adds is the end: the stream ends when the runtime shuts down.

// This module owns the stream adapter over a listener's accepts. It must never hold a connection
// of its own: a connection is either returned as an item or left to the listener (an accept
// dropped with the stream queues what it took there).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::shutdown::is_shutdown_error;

/// One accept in flight, boxed: `accept` is an `async fn`, whose future has no name to store.
pub(crate) type Accepting<'a, C> = Pin<Box<dyn Future<Output = io::Result<C>> + 'a>>;

/// A listener that can start its next accept.
pub(crate) trait AcceptNext<C> {
    fn accept_next(&self) -> Accepting<'_, C>;
}

/// The connections of a listener, as a stream: from
/// [`TcpListener::incoming`](crate::net::TcpListener::incoming) (items
/// `io::Result<(TcpStream, SocketAddr)>`) and
/// [`UnixListener::incoming`](crate::net::UnixListener::incoming).
///
/// Each item is what one `accept` returns: a connection, or an error `accept` does not absorb
/// (after which the stream goes on accepting). Once the runtime is
/// [shutting down](crate::shutdown) the stream ends, instead of yielding the shutdown error.
/// Dropping it with an accept pending loses no connection: the next accept of the listener
/// returns the one that accept took.
///
/// ```
/// use coreio::net::{TcpListener, TcpStream};
/// use futures_lite::StreamExt;
///
/// coreio::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
///     let addr = listener.local_addr().unwrap();
///     let client = coreio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
///     let mut incoming = listener.incoming();
///     let (stream, peer) = incoming.next().await.unwrap().unwrap();
///     let client = client.await.unwrap();
///     assert_eq!(peer, client.local_addr().unwrap());
///     # drop(stream);
/// })
/// .unwrap();
/// ```
#[must_use = "a stream does nothing unless polled"]
pub struct Incoming<'a, C> {
    listener: &'a dyn AcceptNext<C>,
    pending: Option<Accepting<'a, C>>,
    ended: bool,
}

impl<'a, C> Incoming<'a, C> {
    pub(crate) fn new(listener: &'a dyn AcceptNext<C>) -> Incoming<'a, C> {
        Incoming {
            listener,
            pending: None,
            ended: false,
        }
    }
}

impl<C> futures_core::Stream for Incoming<'_, C> {
    type Item = io::Result<C>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        let listener = this.listener;
        let accepting = this.pending.get_or_insert_with(|| listener.accept_next());
        let result = std::task::ready!(accepting.as_mut().poll(cx));
        this.pending = None;
        match result {
            Err(err) if is_shutdown_error(&err) => {
                this.ended = true;
                Poll::Ready(None)
            }
            result => Poll::Ready(Some(result)),
        }
    }
}

impl<C> futures_core::FusedStream for Incoming<'_, C> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl<C> fmt::Debug for Incoming<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("accepting", &self.pending.is_some())
            .field("ended", &self.ended)
            .finish()
    }
}
