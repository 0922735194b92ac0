//! Owned read and write halves of a byte stream, for a proxy or a protocol that reads in one
//! task and writes in another.
//!
//! Every stream method already takes `&self`, so two tasks can share a stream through an
//! `Rc`; [`ReadHalf`] and [`WriteHalf`] are that `Rc` with the right half of the API each, and
//! a [`WriteHalf`] that shuts the write direction down when it is dropped, so the peer reads
//! end of stream as soon as the writer is done, whatever the reader still does.

// This module owns the halves and the sealed `ByteStream` trait that names what can be split (and
// copied: see `copy_bidirectional`). It must never add I/O of its own: the halves forward to the
// stream's.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::rc::Rc;

use crate::buf::{IoBuf, IoBufMut};
use crate::net::stream_io::StreamIo;

/// A connected byte stream coreio drives ([`TcpStream`](super::TcpStream),
/// [`UnixStream`](super::UnixStream)): what
/// [`ReadHalf`], [`WriteHalf`] and [`copy_bidirectional`](super::copy_bidirectional) work on.
///
/// Sealed: only coreio's stream types implement it.
pub trait ByteStream: sealed::Sealed {}

pub(crate) mod sealed {
    use super::*;

    /// The stream's I/O core and its write shutdown; not nameable outside the crate.
    pub trait Sealed {
        fn stream_io(&self) -> &StreamIo;
        fn shutdown_stream(&self, how: Shutdown) -> io::Result<()>;
    }
}

/// Splits `stream` into halves that two tasks can own; [`reunite`] puts them back together.
pub(crate) fn split<S: ByteStream>(stream: S) -> (ReadHalf<S>, WriteHalf<S>) {
    let stream = Rc::new(stream);
    (
        ReadHalf {
            stream: Rc::clone(&stream),
        },
        WriteHalf {
            stream: Some(stream),
        },
    )
}

/// The reading half of a split stream: reads, and the stream's other methods through
/// [`get_ref`](ReadHalf::get_ref).
pub struct ReadHalf<S> {
    pub(super) stream: Rc<S>,
}

/// The writing half of a split stream. Dropping it shuts the stream's write direction down
/// (the peer reads end of stream), unless it was [`reunite`]d with its read half.
pub struct WriteHalf<S: ByteStream> {
    /// `None` only after `reunite` took it.
    stream: Option<Rc<S>>,
}

impl<S: ByteStream> ReadHalf<S> {
    /// Reads into `buf`, as the stream's `read` does (cancel-safe).
    pub async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.stream.stream_io().read(buf).await
    }

    /// Fills `buf` completely, as the stream's `read_exact` does.
    pub async fn read_exact<B: IoBufMut>(&self, buf: B) -> (io::Result<()>, B) {
        self.stream.stream_io().read_exact(buf).await
    }

    /// Copies what is queued into `buf` without taking it, as the stream's `peek` does.
    pub async fn peek<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.stream.stream_io().peek(buf).await
    }

    /// The stream, for its addresses and options.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }
}

impl<S: ByteStream> WriteHalf<S> {
    pub(super) fn stream(&self) -> &S {
        match &self.stream {
            Some(stream) => stream,
            None => unreachable!("a WriteHalf holds its stream until reunite takes it"),
        }
    }

    /// Writes some of `buf`, as the stream's `write` does.
    pub async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        self.stream().stream_io().write(buf).await
    }

    /// Writes all of `buf`, as the stream's `write_all` does.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        self.stream().stream_io().write_all(buf).await
    }

    /// One gathering write of several buffers, as the stream's `write_vectored` does.
    pub async fn write_vectored<B: IoBuf>(&self, bufs: Vec<B>) -> (io::Result<usize>, Vec<B>) {
        self.stream().stream_io().write_vectored(bufs).await
    }

    /// Writes every byte of every buffer, as the stream's `write_all_vectored` does.
    pub async fn write_all_vectored<B: IoBuf>(&self, bufs: Vec<B>) -> (io::Result<()>, Vec<B>) {
        self.stream().stream_io().write_all_vectored(bufs).await
    }

    /// Shuts the write direction down now (the peer reads end of stream).
    pub fn shutdown(&self) -> io::Result<()> {
        self.stream().shutdown_stream(Shutdown::Write)
    }

    /// The stream, for its addresses and options.
    pub fn get_ref(&self) -> &S {
        self.stream()
    }
}

impl<S: ByteStream> Drop for WriteHalf<S> {
    fn drop(&mut self) {
        if let Some(stream) = &self.stream {
            // The peer may have reset the connection already (`ENOTCONN`): nothing to shut.
            let _ = stream.shutdown_stream(Shutdown::Write);
        }
    }
}

/// Puts the halves of one stream back together; fails, giving both back, for halves of two
/// different streams.
pub fn reunite<S: ByteStream>(
    read: ReadHalf<S>,
    mut write: WriteHalf<S>,
) -> Result<S, ReuniteError<S>> {
    let same = write
        .stream
        .as_ref()
        .is_some_and(|stream| Rc::ptr_eq(stream, &read.stream));
    if !same {
        return Err(ReuniteError { read, write });
    }
    // The write half lets go of its share without shutting the stream down.
    drop(write.stream.take());
    drop(write);
    match Rc::try_unwrap(read.stream) {
        Ok(stream) => Ok(stream),
        Err(_) => unreachable!("a stream's two halves are the only owners of its Rc"),
    }
}

/// The halves passed to [`reunite`] came from different streams; both are given back.
pub struct ReuniteError<S: ByteStream> {
    /// The read half passed in.
    pub read: ReadHalf<S>,
    /// The write half passed in.
    pub write: WriteHalf<S>,
}

impl<S: ByteStream> fmt::Debug for ReuniteError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReuniteError(..)")
    }
}

impl<S: ByteStream> fmt::Display for ReuniteError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tried to reunite halves of two different streams")
    }
}

impl<S: ByteStream> std::error::Error for ReuniteError<S> {}

impl<S: ByteStream + fmt::Debug> fmt::Debug for ReadHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadHalf").field(&*self.stream).finish()
    }
}

impl<S: ByteStream + fmt::Debug> fmt::Debug for WriteHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WriteHalf").field(self.stream()).finish()
    }
}
