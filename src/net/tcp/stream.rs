//! [`TcpStream`]: a connected TCP socket owned by one core.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::buf::{IoBuf, IoBufMut};
use crate::driver::{Op, SharedFd, Unread};
use crate::net::RecvStream;
use crate::net::lookup::{self, ToSocketAddrs};
use crate::net::ops::Connect;
use crate::net::split::{self, sealed};
use crate::net::stream_io::StreamIo;
use crate::net::tcp::socket::with_addr;
use crate::net::{ByteStream, Counted, Handoff, HandoffError, ReadHalf, WriteHalf};

/// A connected TCP socket.
///
/// I/O takes buffers by value and gives them back with the result — `(io::Result<usize>, B)` —
/// because with io_uring the kernel works on the buffer after the call returns. Methods take
/// `&self`, so one task can read while another writes.
///
/// Dropping the stream closes the socket once every operation on it has finished: operations
/// whose futures were dropped are cancelled first. The close is a plain `close(2)` on both
/// backends, so what the peer sees is Linux's doing, not coreio's:
///
/// - **Nothing left unread** (the socket's receive queue is empty): a FIN, sent after whatever
///   was written and is still queued. The peer reads that data, then end of stream (`Ok(0)`).
/// - **Unread input** (bytes the peer sent that were never read): the kernel discards them and
///   resets the connection with an RST instead of a FIN (RFC 2525, section 2.17), dropping
///   any written data not yet sent. The peer can still read what had already reached it, then
///   its next read or write fails with [`ConnectionReset`](std::io::ErrorKind::ConnectionReset)
///   (`ECONNRESET`). On io_uring a read future dropped mid-operation may already have taken
///   bytes off the queue (see `docs/backends.md`), so only what the kernel still holds counts.
///
/// To close gracefully when the peer may still be sending, [`shutdown`](Self::shutdown) the
/// write half (the peer reads end of stream), read until `Ok(0)` (the peer has closed its side
/// too; discard or handle what arrives), then drop the stream.
///
/// Reads are cancel-safe, on both backends: dropping a [`read`](TcpStream::read) future (in a
/// `timeout`, a `select`-style loop, an aborted task) never loses bytes, and the next read
/// returns whatever the dropped one had taken from the socket, in order. (A *write* future
/// dropped midway may have sent part of its buffer, as with any runtime.)
///
/// A stream belongs to the core that made it, so it is neither `Send` nor `Sync`:
///
/// ```compile_fail
/// fn must_be_send<T: Send>() {}
/// must_be_send::<coreio::net::TcpStream>();
/// ```
pub struct TcpStream {
    io: StreamIo,
    /// Counts the stream in its core's open connections (read by load-aware accepting).
    counted: Option<Counted>,
}

impl TcpStream {
    /// Opens a connection to `addr`: a [`SocketAddr`], a literal address such as
    /// `"127.0.0.1:7000"`, or a host name and port such as `"localhost:7000"` or
    /// `("example.com", 443)`, resolved off the core ([`lookup_host`](crate::net::lookup_host)).
    ///
    /// Each address `addr` resolves to is tried in turn, until one connects. When none does,
    /// the error is the last address's; it names that address (`connecting to
    /// 127.0.0.1:7000: Connection refused (os error 111)`) and keeps the system's
    /// [`io::ErrorKind`]. The system's error itself, with its `raw_os_error`, is the
    /// error's [`source`](std::error::Error::source):
    ///
    /// ```no_run
    /// use std::error::Error;
    ///
    /// # coreio::block_on(async {
    /// let err = coreio::net::TcpStream::connect("127.0.0.1:9").await.unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    /// let os_error = err.get_ref().and_then(|e| e.source()).and_then(|e| e.downcast_ref::<std::io::Error>());
    /// assert_eq!(os_error.and_then(|e| e.raw_os_error()), Some(libc::ECONNREFUSED));
    /// # }).unwrap();
    /// ```
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let mut last_error = None;
        for addr in lookup::resolve(&addr).await? {
            match TcpStream::connect_to(addr).await {
                Ok(stream) => return Ok(stream),
                Err(error) => last_error = Some(with_addr(error, "connecting to", addr)),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "connecting: the address resolved to no socket address",
            )
        }))
    }

    /// Opens a connection to one address.
    async fn connect_to(addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        TcpStream::connect_socket(OwnedFd::from(socket), addr).await
    }

    /// Wraps a connected socket made elsewhere (it is switched to non-blocking mode).
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        TcpStream::from_fd(OwnedFd::from(stream))
    }

    /// Detaches the stream from this core so that another core can
    /// [`adopt`](Handoff::adopt) it; see [`Handoff`].
    ///
    /// Fails, giving the stream back, while operations on it are still in flight: only those
    /// whose futures were dropped can be, and they finish within a pass of the core loop.
    /// Bytes that dropped reads took and nobody has read yet travel with the stream: the first
    /// reads on the adopting core return them.
    pub fn into_handoff(self) -> Result<Handoff<TcpStream>, HandoffError<TcpStream>> {
        self.io.release_pooled_reads();
        let TcpStream { io, counted } = self;
        match io.fd.try_into_owned() {
            Ok((fd, held)) => Ok(Handoff::new(fd, held.into_unread())),
            Err(fd) => Err(HandoffError::new(TcpStream {
                io: StreamIo::new(fd),
                counted,
            })),
        }
    }

    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<TcpStream> {
        Ok(TcpStream {
            io: StreamIo::new(SharedFd::new(fd)?),
            counted: Counted::here(),
        })
    }

    /// Adopts a handed-off socket with the bytes it carried.
    pub(crate) fn from_handoff(fd: OwnedFd, unread: Option<Unread>) -> io::Result<TcpStream> {
        let stream = TcpStream::from_fd(fd)?;
        if let Some(unread) = unread {
            stream.io.fd.held().restore_unread(unread);
        }
        Ok(stream)
    }

    /// Reads into `buf` from its start, up to its capacity; `Ok(0)` means the peer closed its
    /// side. A `Vec`'s length becomes the number of bytes read. A `buf` with no capacity
    /// (`bytes_total() == 0`, such as a full `Vec`'s `slice(len..)`) is refused with
    /// `InvalidInput` before anything is submitted, since its `Ok(0)` would look like end of
    /// stream; so is a [`peek`](TcpStream::peek) into one.
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

    /// Writes all of `buf`'s initialised bytes. A closed peer is an error (`EPIPE` or
    /// `ECONNRESET`), never a SIGPIPE.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        self.io.write_all(buf).await
    }

    /// Copies the bytes waiting to be read into `buf` (from its start, up to its capacity)
    /// without taking them: the next read returns them again. Waits for at least one byte or
    /// end of stream (`Ok(0)`), like a read.
    pub async fn peek<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.io.peek(buf).await
    }

    /// Writes some of the buffers' initialised bytes, in order, with one gathering send (a
    /// header and a body without copying them together); returns how many bytes were sent.
    /// Up to 1024 buffers go in one send; the rest wait for the next call.
    pub async fn write_vectored<B: IoBuf>(&self, bufs: Vec<B>) -> (io::Result<usize>, Vec<B>) {
        self.io.write_vectored(bufs).await
    }

    /// Writes every initialised byte of every buffer, in order, in as few gathering sends as
    /// the socket allows.
    pub async fn write_all_vectored<B: IoBuf>(&self, bufs: Vec<B>) -> (io::Result<()>, Vec<B>) {
        self.io.write_all_vectored(bufs).await
    }

    /// Splits the stream into a read half and a write half that two tasks can own (a proxy
    /// reading one socket while writing another). Dropping the write half shuts the write
    /// direction down; [`reunite`](crate::net::reunite) puts the halves back together.
    ///
    /// ```no_run
    /// # coreio::block_on(async {
    /// let stream = coreio::net::TcpStream::connect("127.0.0.1:7000").await?;
    /// let (reader, writer) = stream.into_split();
    /// let echo = coreio::spawn(async move {
    ///     let (res, buf) = reader.read(Vec::with_capacity(64)).await;
    ///     res.map(|_| buf)
    /// });
    /// writer.write_all(b"ping".to_vec()).await.0?;
    /// let _reply = echo.await.unwrap()?;
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap().unwrap();
    /// ```
    pub fn into_split(self) -> (ReadHalf<TcpStream>, WriteHalf<TcpStream>) {
        split::split(self)
    }

    /// Shuts down the read side, the write side (the peer sees a FIN), or both. Immediate.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        SockRef::from(&self.io.fd).shutdown(how)
    }

    /// Enables or disables Nagle's algorithm (`TCP_NODELAY`).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        SockRef::from(&self.io.fd).set_tcp_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        SockRef::from(&self.io.fd).tcp_nodelay()
    }

    /// Turns TCP keep-alive probes (`SO_KEEPALIVE`) on or off; the kernel's
    /// `net.ipv4.tcp_keepalive_*` settings decide when they are sent. For finer control, use
    /// `socket2::SockRef::from(&stream)`.
    pub fn set_keepalive(&self, keepalive: bool) -> io::Result<()> {
        SockRef::from(&self.io.fd).set_keepalive(keepalive)
    }

    /// Whether `SO_KEEPALIVE` is set.
    pub fn keepalive(&self) -> io::Result<bool> {
        SockRef::from(&self.io.fd).keepalive()
    }

    /// Sets `SO_LINGER`: `None` (the default) closes in the background; `Some(d)` makes a close
    /// wait up to `d` for unsent data, and `Some(Duration::ZERO)` resets the connection (an RST)
    /// at close. The close happens when the last operation on the stream has finished, on the
    /// core's thread: a lingering `close(2)` blocks that core for up to `d` on either backend,
    /// so keep `d` short.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        SockRef::from(&self.io.fd).set_linger(linger)
    }

    /// The `SO_LINGER` setting.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        SockRef::from(&self.io.fd).linger()
    }

    /// Sets the IP time-to-live (`IP_TTL`) of outgoing packets (IPv4 streams).
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        SockRef::from(&self.io.fd).set_ttl_v4(ttl)
    }

    /// The IP time-to-live of outgoing packets (IPv4 streams).
    pub fn ttl(&self) -> io::Result<u32> {
        SockRef::from(&self.io.fd).ttl_v4()
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        socket_addr(SockRef::from(&self.io.fd).peer_addr()?)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket_addr(SockRef::from(&self.io.fd).local_addr()?)
    }
}

fn socket_addr(addr: socket2::SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket()
        .ok_or_else(|| io::Error::other("socket has a non-IP address"))
}

impl ByteStream for TcpStream {}

impl sealed::Sealed for TcpStream {
    fn stream_io(&self) -> &StreamIo {
        &self.io
    }

    fn shutdown_stream(&self, how: Shutdown) -> io::Result<()> {
        self.shutdown(how)
    }
}

/// The descriptor, for socket options coreio does not wrap (`socket2::SockRef::from(&stream)`).
/// Reading or writing it directly bypasses the core's driver: use the stream's methods.
impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.fd.as_fd()
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.fd.raw()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("fd", &self.io.fd.raw())
            .finish()
    }
}

// Conversions to and from std sockets and raw descriptors.
use super::into_std::{IntoStdError, Reason};

impl TcpStream {
    /// Turns the stream into a std one, which keeps the connection and its options and stays in
    /// non-blocking mode: call `set_nonblocking(false)` for blocking I/O.
    ///
    /// Fails, giving the stream back, while reads whose futures were dropped are still
    /// finishing or have left bytes nobody has read yet (read them first: the next reads return
    /// them), or while dropped writes the kernel has not finished still use the socket; see
    /// [`IntoStdError`]. Nothing the connection received is lost either way.
    pub fn into_std(self) -> Result<std::net::TcpStream, IntoStdError<TcpStream>> {
        self.io.release_pooled_reads();
        if !self.io.fd.held().is_clear() {
            return Err(IntoStdError::new(self, Reason::Held));
        }
        let TcpStream { io, counted } = self;
        match io.fd.try_into_owned() {
            // Held was clear and nothing can have added to it since: no byte is left behind.
            Ok((fd, _nothing_held)) => Ok(std::net::TcpStream::from(fd)),
            Err(fd) => Err(IntoStdError::new(
                TcpStream {
                    io: StreamIo::new(fd),
                    counted,
                },
                Reason::InFlight,
            )),
        }
    }

    /// Wraps `socket` (non-blocking, not connected) on the current core and connects it to
    /// `addr`.
    pub(crate) async fn connect_socket(socket: OwnedFd, addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::from_fd(socket)?;
        Op::new(Connect::new(stream.io.fd.clone(), addr))
            .await
            .result?;
        Ok(stream)
    }
}

/// Gives up the descriptor, as [`into_std`](TcpStream::into_std) does.
///
/// # Panics
///
/// Where `into_std` would fail (dropped operations still finishing, or bytes dropped reads took
/// that nobody has read yet): a descriptor given away then would lose those bytes. Use
/// `into_std` to get the stream back instead.
impl std::os::fd::IntoRawFd for TcpStream {
    fn into_raw_fd(self) -> RawFd {
        match self.into_std() {
            Ok(stream) => std::os::fd::IntoRawFd::into_raw_fd(stream),
            Err(err) => panic!("TcpStream::into_raw_fd: {err}"),
        }
    }
}

/// Wraps a connected socket made elsewhere, as [`from_std`](TcpStream::from_std) does (it is
/// switched to non-blocking mode).
///
/// # Safety
///
/// `fd` must be an open, connected TCP socket (`AF_INET` or `AF_INET6`, `SOCK_STREAM`), and the
/// caller gives up its ownership: nothing else may use or close it afterwards.
///
/// # Panics
///
/// Outside a coreio runtime, or where `from_std` would fail (the descriptor cannot be switched
/// to non-blocking mode, or the epoll backend cannot register it): use
/// `from_std(std::net::TcpStream::from_raw_fd(fd))` to get an error.
impl std::os::fd::FromRawFd for TcpStream {
    unsafe fn from_raw_fd(fd: RawFd) -> TcpStream {
        // SAFETY: the caller guarantees `fd` is an open connected socket owned by no one else.
        let stream = unsafe { <std::net::TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        TcpStream::from_std(stream).unwrap_or_else(|err| panic!("TcpStream::from_raw_fd: {err}"))
    }
}
