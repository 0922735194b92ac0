//! [`BufReader`]: lines and delimited records over any stream that reads into owned buffers
//! ([`OwnedRead`]: `TcpStream`, `UnixStream`, their read halves, pipes, and `&` any of them).

use std::fmt;
use std::future::Future;
use std::io;

use crate::buf::IoBufMut;
use crate::io::PipeReader;
use crate::net::{ByteStream, ReadHalf, TcpStream, UnixStream};

/// The default size of one read of a [`BufReader`].
pub const DEFAULT_BUF_CAPACITY: usize = 8 * 1024;

/// The default longest line (delimiter included) a [`BufReader`] accepts.
pub const DEFAULT_MAX_LINE_LEN: usize = 64 * 1024;

/// A stream that reads into owned buffers, as coreio's stream types do: what a [`BufReader`]
/// reads from.
///
/// `read` fills `buf` from its start, up to its capacity, sets its initialised length and gives
/// it back; `Ok(0)` is end of stream. Implement it for a wrapper of your own (a TLS session,
/// a test double) to put a `BufReader` over it.
pub trait OwnedRead {
    /// One read into `buf`, as [`TcpStream::read`] does.
    fn read<B: IoBufMut>(&self, buf: B) -> impl Future<Output = (io::Result<usize>, B)>;
}

impl OwnedRead for TcpStream {
    fn read<B: IoBufMut>(&self, buf: B) -> impl Future<Output = (io::Result<usize>, B)> {
        TcpStream::read(self, buf)
    }
}

impl OwnedRead for UnixStream {
    fn read<B: IoBufMut>(&self, buf: B) -> impl Future<Output = (io::Result<usize>, B)> {
        UnixStream::read(self, buf)
    }
}

impl<S: ByteStream> OwnedRead for ReadHalf<S> {
    fn read<B: IoBufMut>(&self, buf: B) -> impl Future<Output = (io::Result<usize>, B)> {
        ReadHalf::read(self, buf)
    }
}

impl OwnedRead for PipeReader {
    fn read<B: IoBufMut>(&self, buf: B) -> impl Future<Output = (io::Result<usize>, B)> {
        PipeReader::read(self, buf)
    }
}

impl<T: OwnedRead + ?Sized> OwnedRead for &T {
    fn read<B: IoBufMut>(&self, buf: B) -> impl Future<Output = (io::Result<usize>, B)> {
        (**self).read(buf)
    }
}

/// The inner error of the `InvalidData` error a [`BufReader`] returns for a line longer than
/// its limit (`err.get_ref()`, then `downcast_ref::<LineTooLong>()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong {
    limit: usize,
}

impl LineTooLong {
    /// The limit the line went past ([`BufReader::max_line_len`]).
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line longer than {} bytes without its delimiter (raise BufReader::max_line_len, \
             or drop the connection)",
            self.limit
        )
    }
}

impl std::error::Error for LineTooLong {}

/// Buffers the reads of a stream for line- and delimiter-oriented protocols. The stream stays
/// reachable through [`get_ref`](BufReader::get_ref) (to write replies), or build the reader
/// over `&stream`.
///
/// ```
/// use coreio::io::BufReader;
/// use coreio::net::UnixStream;
///
/// coreio::block_on(async {
///     let (client, server) = UnixStream::pair()?;
///     let (res, _) = client.write_all(&b"hello\nworld\npartial"[..]).await;
///     res?;
///     drop(client);
///     let mut reader = BufReader::new(server).max_line_len(1024);
///     let mut line = String::new();
///     assert_eq!(reader.read_line(&mut line).await?, 6);
///     assert_eq!(line, "hello\n");
///     line.clear();
///     reader.read_line(&mut line).await?;
///     assert_eq!(line, "world\n");
///     line.clear();
///     // End of stream in the middle of a line gives the partial line, then 0.
///     assert_eq!(reader.read_line(&mut line).await?, 7);
///     assert_eq!(line, "partial");
///     assert_eq!(reader.read_line(&mut String::new()).await?, 0);
///     Ok::<(), std::io::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
///
/// # Bounded memory
///
/// A line (delimiter included) longer than [`max_line_len`](BufReader::max_line_len) (64 KiB
/// by default) is an error of kind `InvalidData` whose inner error is [`LineTooLong`], never
/// unbounded growth: the reader holds at most `max_line_len` bytes plus one read's worth.
///
/// # Cancel safety
///
/// [`read_until`](BufReader::read_until), [`read_line`](BufReader::read_line) and
/// [`fill_buf`](BufReader::fill_buf) are cancel-safe: dropping the future loses no byte. A line
/// is copied out only once it is complete, so the bytes of an unfinished one stay in the
/// reader; the read in flight never holds them (it reads into a buffer of its own when
/// anything is buffered), and what it had taken from the socket when it was dropped is
/// returned by the stream's next read (the runtime holds it, see [`TcpStream::read`]).
///
/// [`TcpStream::read`]: crate::net::TcpStream::read
pub struct BufReader<S> {
    inner: S,
    /// Bytes read and not yet consumed are `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    /// What a read asks for; at least 1.
    capacity: usize,
    max_line: usize,
    /// The buffer a read uses while `buf` holds unconsumed bytes, so that a dropped read
    /// never takes them with it.
    spare: Vec<u8>,
}

impl<S: OwnedRead> BufReader<S> {
    /// A reader over `inner` with reads of [`DEFAULT_BUF_CAPACITY`] bytes.
    pub fn new(inner: S) -> BufReader<S> {
        BufReader::with_capacity(DEFAULT_BUF_CAPACITY, inner)
    }

    /// A reader over `inner` whose reads ask for `capacity` bytes (1 if 0 is given). The
    /// buffer is allocated by the first read.
    pub fn with_capacity(capacity: usize, inner: S) -> BufReader<S> {
        BufReader {
            inner,
            buf: Vec::new(),
            pos: 0,
            capacity: capacity.max(1),
            max_line: DEFAULT_MAX_LINE_LEN,
            spare: Vec::new(),
        }
    }

    /// Sets the longest line (delimiter included) [`read_until`](BufReader::read_until) and
    /// [`read_line`](BufReader::read_line) accept (at least 1; the default is
    /// [`DEFAULT_MAX_LINE_LEN`]).
    pub fn max_line_len(mut self, max: usize) -> BufReader<S> {
        self.max_line = max.max(1);
        self
    }

    /// The buffered bytes, not yet consumed.
    pub fn buffer(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The buffered bytes, reading once first if there are none; empty only at end of
    /// stream. Cancel-safe. [`consume`](BufReader::consume) what you used.
    pub async fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.buf.len() {
            self.fill_more().await?;
        }
        Ok(self.buffer())
    }

    /// Marks `n` buffered bytes as used (at most as many as are buffered).
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }

    /// Appends the bytes up to and including the next `byte` to `out`; returns how many. At end
    /// of stream it appends what is left (a partial record, without `byte`), and returns 0 once
    /// nothing is. A record longer than [`max_line_len`](BufReader::max_line_len) is an
    /// `InvalidData` error ([`LineTooLong`]) that leaves its bytes buffered (see
    /// [`skip_until`](BufReader::skip_until)). Cancel-safe: `out` changes only on success.
    pub async fn read_until(&mut self, byte: u8, out: &mut Vec<u8>) -> io::Result<usize> {
        let n = self.record_len(byte).await?;
        out.extend_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    /// Appends the next line, `\n` included, to `out`; returns its length in bytes. End of
    /// stream and the limit as [`read_until`](BufReader::read_until). A line that is not UTF-8
    /// is an `InvalidData` error: it is consumed and `out` is left as it was, so the next call
    /// reads the next line. Cancel-safe.
    pub async fn read_line(&mut self, out: &mut String) -> io::Result<usize> {
        let n = self.record_len(b'\n').await?;
        let line = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        match std::str::from_utf8(line) {
            Ok(line) => {
                out.push_str(line);
                Ok(n)
            }
            Err(err) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line is not valid UTF-8: {err}"),
            )),
        }
    }

    /// Discards the bytes up to and including the next `byte`, however many (they are not kept:
    /// memory stays bounded); returns how many. The way past a [`LineTooLong`].
    pub async fn skip_until(&mut self, byte: u8) -> io::Result<usize> {
        let mut skipped = 0;
        loop {
            let available = self.fill_buf().await?;
            if available.is_empty() {
                return Ok(skipped);
            }
            match available.iter().position(|&b| b == byte) {
                Some(at) => {
                    self.consume(at + 1);
                    return Ok(skipped + at + 1);
                }
                None => {
                    let n = available.len();
                    skipped += n;
                    self.consume(n);
                }
            }
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The stream, mutably; reading from it directly skips the buffered bytes.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The stream and the bytes buffered but not consumed, which it will not return again.
    pub fn into_parts(mut self) -> (S, Vec<u8>) {
        self.buf.drain(..self.pos);
        (self.inner, self.buf)
    }

    /// The length of the next record ending in `byte` (or the rest at end of stream), reading
    /// until it is buffered whole.
    async fn record_len(&mut self, byte: u8) -> io::Result<usize> {
        let mut scanned = 0;
        loop {
            let pending = &self.buf[self.pos..];
            let window = &pending[..pending.len().min(self.max_line)];
            if let Some(at) = window[scanned..].iter().position(|&b| b == byte) {
                return Ok(scanned + at + 1);
            }
            scanned = window.len();
            if pending.len() > self.max_line {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    LineTooLong {
                        limit: self.max_line,
                    },
                ));
            }
            if self.fill_more().await? == 0 {
                // End of stream: the rest is the last, partial record.
                return Ok(self.buf.len() - self.pos);
            }
        }
    }

    /// One read, appended to the buffered bytes; 0 at end of stream.
    async fn fill_more(&mut self) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            // Nothing unconsumed: read straight into the buffer. A dropped read takes only the
            // allocation with it (its bytes are held by the runtime).
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            self.pos = 0;
            if buf.capacity() < self.capacity {
                buf.reserve_exact(self.capacity);
            }
            let (res, buf) = self.inner.read(buf).await;
            self.buf = buf;
            if res.is_err() {
                self.buf.clear();
            }
            return res;
        }
        // Unconsumed bytes stay in `buf`; the read goes into `spare` and is copied after them.
        let mut spare = std::mem::take(&mut self.spare);
        spare.clear();
        if spare.capacity() < self.capacity {
            spare.reserve_exact(self.capacity);
        }
        let (res, spare) = self.inner.read(spare).await;
        if let Ok(n) = res {
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            self.buf.extend_from_slice(&spare[..n.min(spare.len())]);
        }
        self.spare = spare;
        res
    }
}

impl<S> fmt::Debug for BufReader<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufReader")
            .field("buffered", &(self.buf.len() - self.pos))
            .field("capacity", &self.capacity)
            .field("max_line_len", &self.max_line)
            .finish()
    }
}
