//! [`UnixStream`]: a connected Unix stream socket owned by one core.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, Type};

use super::{UCred, UnixSocketAddr, cred, naming};
use crate::buf::{IoBuf, IoBufMut};
use crate::driver::{Claim, Op, SharedFd};
use crate::net::RecvStream;
use crate::net::ops::{MAX_FDS, RecvFds, SendFds};
use crate::net::split::{self, sealed};
use crate::net::stream_io::StreamIo;
use crate::net::{ByteStream, ReadHalf, WriteHalf};

/// First pause when a listener's backlog is full, doubled on each retry up to
/// [`MAX_CONNECT_BACKOFF`].
const MIN_CONNECT_BACKOFF: Duration = Duration::from_millis(1);
const MAX_CONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// A connected Unix stream socket.
///
/// The same I/O as [`TcpStream`](crate::net::TcpStream): buffers go in by value and come back
/// with the result, `(io::Result<usize>, B)`, methods take `&self`, and reads are cancel-safe
/// (a dropped [`read`](UnixStream::read) future never loses bytes: the next read returns what
/// it took). Writes to a closed peer are an error (`EPIPE`), never a SIGPIPE.
///
/// Dropping the stream closes the socket once every operation on it has finished (operations
/// whose futures were dropped are cancelled first). The peer reads what had been sent to it,
/// then end of stream (`Ok(0)`), and a write of its fails with `EPIPE`. As with TCP, a close
/// with unread input (bytes the peer sent that were never read) is a reset: Linux makes the
/// peer's next read after the data it has fail with `ConnectionReset`.
///
/// A stream belongs to the core that made it, so it is neither `Send` nor `Sync`:
///
/// ```compile_fail
/// fn must_be_send<T: Send>() {}
/// must_be_send::<coreio::net::UnixStream>();
/// ```
pub struct UnixStream {
    io: StreamIo,
}

impl UnixStream {
    /// Connects to the socket file at `path`.
    ///
    /// Fails with `NotFound` if nothing is at `path`, with `ConnectionRefused` if the path is a
    /// socket file that no listener serves (a stale file left by a server that exited), and
    /// `PermissionDenied` without write permission on it; each error names the path. While the
    /// listener's backlog is full it waits, retrying (1 ms doubling to 100 ms): wrap it in a
    /// [`timeout`](crate::time::timeout) to bound that.
    ///
    /// ```no_run
    /// # coreio::Builder::new().block_on(async {
    /// let stream = coreio::net::UnixStream::connect("/tmp/app.sock").await?;
    /// let (res, _) = stream.write_all(&b"hello"[..]).await;
    /// res?;
    /// # std::io::Result::Ok(()) }).unwrap().unwrap();
    /// ```
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        UnixStream::connect_addr(&UnixSocketAddr::from_pathname(path)?).await
    }

    /// Connects to `addr`: a path, or a name in the abstract namespace (see
    /// [`connect`](UnixStream::connect) for the errors). An unnamed address is `InvalidInput`.
    pub async fn connect_addr(addr: &UnixSocketAddr) -> io::Result<UnixStream> {
        if addr.is_unnamed() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot connect to an unnamed Unix socket address",
            ));
        }
        let socket = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
        let stream = UnixStream::from_fd(OwnedFd::from(socket))?;
        // A Unix connect never waits in the kernel on a non-blocking socket: it completes or
        // fails at once, except when the listener's backlog is full (EAGAIN). No readiness event
        // of this socket says when room frees up (the kernel's wait queue is the listener's),
        // so an operation waiting for writability would never wake: the call is made here, and
        // retried on a timer while the backlog stays full.
        let mut backoff = MIN_CONNECT_BACKOFF;
        loop {
            match SockRef::from(&stream.io.fd).connect(addr.as_sock_addr()) {
                Ok(()) => return Ok(stream),
                Err(err) if err.raw_os_error() == Some(libc::EAGAIN) => {
                    crate::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_CONNECT_BACKOFF);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(naming(err, "connecting to", addr)),
            }
        }
    }

    /// A pair of connected, unnamed streams on the current core (`socketpair(2)`).
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
        Ok((
            UnixStream::from_fd(OwnedFd::from(a))?,
            UnixStream::from_fd(OwnedFd::from(b))?,
        ))
    }

    /// Wraps a connected socket made elsewhere (it is switched to non-blocking mode).
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        stream.set_nonblocking(true)?;
        UnixStream::from_fd(OwnedFd::from(stream))
    }

    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<UnixStream> {
        let mut io = StreamIo::new(SharedFd::new(fd)?);
        // A Unix receive stops early at bytes carrying descriptors, with more queued.
        io.short_read_drains = false;
        io.zero_copy_sends.set(false);
        Ok(UnixStream { io })
    }

    /// Reads into `buf` from its start, up to its capacity; `Ok(0)` means the peer closed its
    /// side. A `Vec`'s length becomes the number of bytes read. A `buf` with no capacity
    /// (`bytes_total() == 0`, such as a full `Vec`'s `slice(len..)`) is refused with
    /// `InvalidInput` before anything is submitted, since its `Ok(0)` would look like end of
    /// stream.
    ///
    /// Cancel-safe: dropping the future before it completes never loses bytes. Whatever it
    /// had already taken from the socket (on io_uring the kernel may complete the receive
    /// after the future is gone) is returned by the next read, before anything newer.
    pub async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.io.read(buf).await
    }

    /// The bytes arriving on this stream as buffers lent from the core's receive pool, one per
    /// receive, until the peer closes its side: see [`RecvStream`]. On io_uring one multishot
    /// receive serves them all, and a connection waiting for data holds no buffer.
    pub fn recv_stream(&self) -> RecvStream<'_> {
        self.io.recv_stream()
    }

    /// Fills `buf` completely (all of its capacity), or fails with `UnexpectedEof` if the peer
    /// closes first.
    ///
    /// Not cancel-safe as a whole: the bytes it has read so far are in `buf`, which a dropped
    /// future drops with it. Each read inside it is, so nothing else is lost.
    pub async fn read_exact<B: IoBufMut>(&self, buf: B) -> (io::Result<()>, B) {
        self.io.read_exact(buf).await
    }

    /// Writes some of `buf`'s initialised bytes; returns how many.
    pub async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        self.io.write(buf).await
    }

    /// Writes all of `buf`'s initialised bytes. A closed peer is an error (`EPIPE`), never a
    /// SIGPIPE.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        self.io.write_all(buf).await
    }

    /// Copies the bytes waiting to be read into `buf` without taking them, as
    /// [`TcpStream::peek`](crate::net::TcpStream::peek) does.
    pub async fn peek<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.io.peek(buf).await
    }

    /// One gathering write of several buffers, as
    /// [`TcpStream::write_vectored`](crate::net::TcpStream::write_vectored) does.
    pub async fn write_vectored<B: IoBuf>(&self, bufs: Vec<B>) -> (io::Result<usize>, Vec<B>) {
        self.io.write_vectored(bufs).await
    }

    /// Writes every initialised byte of every buffer, in order.
    pub async fn write_all_vectored<B: IoBuf>(&self, bufs: Vec<B>) -> (io::Result<()>, Vec<B>) {
        self.io.write_all_vectored(bufs).await
    }

    /// Splits the stream into a read half and a write half that two tasks can own, as
    /// [`TcpStream::into_split`](crate::net::TcpStream::into_split) does.
    pub fn into_split(self) -> (ReadHalf<UnixStream>, WriteHalf<UnixStream>) {
        split::split(self)
    }

    /// Sends some of `buf`'s initialised bytes with the descriptors `fds` attached
    /// (`SCM_RIGHTS`): the peer receives duplicates of them with the first of these bytes,
    /// through [`recv_fds`](UnixStream::recv_fds). Returns how many bytes were sent; the
    /// descriptors went with them, so send any rest with [`write_all`](UnixStream::write_all).
    ///
    /// The descriptors are duplicated first, and the copies close once the kernel has taken
    /// its own references: a send whose future was dropped in flight (on io_uring it may still
    /// go out) never passes a number that you have closed, or the process reused, since. Fails
    /// with
    /// `InvalidInput` if `buf` is empty (descriptors travel with bytes) or `fds` holds more
    /// than 253 (Linux's limit per message), and as [`write`](UnixStream::write) does
    /// otherwise.
    ///
    /// ```no_run
    /// # coreio::Builder::new().block_on(async {
    /// use std::os::fd::AsFd;
    /// let (a, b) = coreio::net::UnixStream::pair()?;
    /// let file = std::fs::File::open("/etc/hostname")?;
    /// let (res, _) = a.send_fds(&b"f"[..], &[file.as_fd()]).await;
    /// res?;
    /// let (res, _) = b.recv_fds(Vec::with_capacity(16), 4).await;
    /// let (_n, fds) = res?;
    /// assert_eq!(fds.len(), 1);
    /// # std::io::Result::Ok(()) }).unwrap().unwrap();
    /// ```
    pub async fn send_fds<B: IoBuf>(
        &self,
        buf: B,
        fds: &[BorrowedFd<'_>],
    ) -> (io::Result<usize>, B) {
        if buf.bytes_init() == 0 {
            return (
                Err(invalid(
                    "send_fds needs at least one byte to carry the descriptors",
                )),
                buf,
            );
        }
        if fds.len() > MAX_FDS {
            let message = format!(
                "send_fds got {} descriptors; at most {MAX_FDS} fit in one message",
                fds.len()
            );
            return (Err(invalid(&message)), buf);
        }
        let owned: io::Result<Vec<OwnedFd>> =
            fds.iter().map(|fd| fd.try_clone_to_owned()).collect();
        let owned = match owned {
            Ok(owned) => owned,
            Err(err) => return (Err(err), buf),
        };
        let completion = Op::new(SendFds::new(self.io.fd.clone(), buf, owned)).await;
        (
            completion.result.map(|n| n as usize),
            completion.data.into_buf(),
        )
    }

    /// Reads into `buf` as [`read`](UnixStream::read) does, and takes the descriptors passed
    /// with those bytes (up to `max_fds`, at most 253), each an `OwnedFd`, close-on-exec.
    /// `Ok((0, _))` means end of stream.
    ///
    /// A read stops at bytes that carry descriptors, so each call returns the descriptors of at
    /// most one [`send_fds`](UnixStream::send_fds). If more were passed than `max_fds`, the
    /// kernel discards the rest: that is an error, the ones that fit are closed, and the bytes
    /// are in `buf`. A `buf` without capacity is `InvalidInput`.
    ///
    /// Cancel-safe for the bytes, as `read` is: what a dropped call had taken is returned by
    /// the next read. The descriptors a dropped call took (on io_uring its receive may complete
    /// after the future is gone) are closed, never leaked. Bytes that a plain `read` receives
    /// lose their descriptors the same way (the kernel closes them): receive with `recv_fds`
    /// wherever descriptors may arrive.
    pub async fn recv_fds<B: IoBufMut>(
        &self,
        buf: B,
        max_fds: usize,
    ) -> (io::Result<(usize, Vec<OwnedFd>)>, B) {
        let mut buf = buf;
        if buf.bytes_total() == 0 {
            return (
                Err(invalid(
                    "recv_fds needs a buffer with room for at least one byte",
                )),
                buf,
            );
        }
        let held = self.io.fd.held();
        if !held.is_clear() {
            // Bytes a dropped read took come first (they carry no descriptors any more).
            held.settled().await;
            if let Some(result) = held.read_into(&mut buf) {
                return (result.map(|n| (n, Vec::new())), buf);
            }
        }
        let completion = Claim::new(held, RecvFds::new(self.io.fd.clone(), buf, max_fds)).await;
        completion.data.finish(completion.result)
    }

    /// Shuts down the read side, the write side (the peer reads end of stream), or both.
    /// Immediate.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        SockRef::from(&self.io.fd).shutdown(how)
    }

    /// The credentials (process, user and group id) of the peer, as the kernel recorded them
    /// when the connection was made (`SO_PEERCRED`).
    pub fn peer_cred(&self) -> io::Result<UCred> {
        cred::peer_cred(self.io.fd.as_fd())
    }

    /// The address of the peer: the listener's for a client, and for an accepted connection
    /// the client's, which is unnamed unless the client bound its socket.
    pub fn peer_addr(&self) -> io::Result<UnixSocketAddr> {
        UnixSocketAddr::from_sock_addr(SockRef::from(&self.io.fd).peer_addr()?)
    }

    /// The local address: unnamed for a client that did not bind, the listener's for an
    /// accepted connection.
    pub fn local_addr(&self) -> io::Result<UnixSocketAddr> {
        UnixSocketAddr::from_sock_addr(SockRef::from(&self.io.fd).local_addr()?)
    }
}

/// The descriptor, for socket options coreio does not wrap (`socket2::SockRef::from(&stream)`).
/// Reading or writing it directly bypasses the core's driver: use the stream's methods.
impl ByteStream for UnixStream {}

impl sealed::Sealed for UnixStream {
    fn stream_io(&self) -> &StreamIo {
        &self.io
    }

    fn shutdown_stream(&self, how: Shutdown) -> io::Result<()> {
        self.shutdown(how)
    }
}

impl AsFd for UnixStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.fd.as_fd()
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.fd.raw()
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("fd", &self.io.fd.raw())
            .finish()
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.to_owned())
}
