//! [`pipe()`], [`PipeReader`] and [`PipeWriter`]: the two ends of a Unix pipe, driven by the
//! current core's I/O driver.
//!
//! Both ends are a [`StreamIo`] with `read(2)`/`write(2)` (`IORING_OP_READ`/`WRITE`) in place of
//! `recv`/`send`, so they share TCP's tested loops: the cancel-safe read (a dropped read loses
//! no bytes, see `crate::driver::held`), `read_exact`, `write` and `write_all`.
//!
//! A pipe's `write(2)` has no `MSG_NOSIGNAL`: writing to a pipe whose reader is gone raises
//! `SIGPIPE`, whose default action kills the process, on either backend (io_uring runs the write
//! in the submitting thread's name). So making a [`PipeWriter`] makes sure, once per process,
//! that `SIGPIPE` is not fatal: if its disposition is the default, it is set to ignore (which
//! Rust's own `main` does already, unless the program asked otherwise); a handler the program
//! installed is left alone. The write then fails with `EPIPE`.

// This module owns that rule; it must never change a disposition the program chose.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Once;

use crate::buf::{IoBuf, IoBufMut};
use crate::driver::SharedFd;
use crate::net::StreamIo;
use crate::net::ops::Calls;
use crate::net::stream_poll::{PollRead, PollWrite};
use crate::sys::cvt;

/// Creates a pipe (`pipe2` with `O_NONBLOCK | O_CLOEXEC`) on the current core: what is written
/// to the [`PipeWriter`] is read from the [`PipeReader`].
///
/// ```
/// coreio::block_on(async {
///     let (reader, writer) = coreio::io::pipe()?;
///     let (res, _) = writer.write_all("hello").await;
///     res?;
///     drop(writer); // the reader sees end of stream after the data
///     let (res, buf) = reader.read(Vec::with_capacity(16)).await;
///     assert_eq!(res?, 5);
///     assert_eq!(buf, b"hello");
///     let (res, _) = reader.read(Vec::with_capacity(16)).await;
///     assert_eq!(res?, 0);
///     Ok::<(), std::io::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
pub fn pipe() -> io::Result<(PipeReader, PipeWriter)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe2` writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: `pipe2` succeeded, so both are open descriptors that nothing else owns.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((PipeReader::wrap(read_end)?, PipeWriter::wrap(write_end)?))
}

/// Checks that `fd` is a pipe (or FIFO) open for `access` (`O_RDONLY`, `O_WRONLY`), and puts it
/// in non-blocking mode.
fn adopt(fd: &OwnedFd, access: libc::c_int, what: &str) -> io::Result<()> {
    // SAFETY: an all-zero `stat` is a valid value for `fstat` to overwrite.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is valid for writes; `fd` is open (the caller owns it).
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) })?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}::from_owned_fd: the descriptor is not a pipe or FIFO"),
        ));
    }
    // SAFETY: F_GETFL takes no pointer; `fd` is open.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let mode = flags & libc::O_ACCMODE;
    if mode != access && mode != libc::O_RDWR {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{what}::from_owned_fd: the pipe is not open for {}",
                match access {
                    libc::O_RDONLY => "reading",
                    _ => "writing",
                }
            ),
        ));
    }
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: F_SETFL takes an int; `fd` is open.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}

/// Sets `SIGPIPE` to be ignored if its disposition is the default (which kills), once per
/// process; a handler or an ignore the program set stays.
fn make_sigpipe_harmless() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: an all-zero `sigaction` is a valid value for the kernel to overwrite.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only reads the current one into `current`, valid for writes.
        let read = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut current) };
        if read == 0 && current.sa_sigaction == libc::SIG_DFL {
            // SAFETY: as above; the new action is a valid `sigaction` (ignore, empty mask).
            let mut ignore: libc::sigaction = unsafe { std::mem::zeroed() };
            ignore.sa_sigaction = libc::SIG_IGN;
            // SAFETY: `ignore` is a valid action; the old one is not asked for.
            let set = unsafe { libc::sigaction(libc::SIGPIPE, &ignore, std::ptr::null_mut()) };
            if set != 0 {
                log::warn!(
                    "coreio: could not ignore SIGPIPE ({}); a write to a pipe whose reader is \
                     gone may kill the process",
                    io::Error::last_os_error()
                );
            }
        }
    });
}

/// The reading end of a pipe.
///
/// Reads take buffers by value and give them back with the result, as
/// [`TcpStream::read`](crate::net::TcpStream::read) does, and are cancel-safe the same way:
/// dropping a read future never loses bytes. `Ok(0)` is end of stream: every writer is closed.
///
/// ```compile_fail
/// fn must_be_send<T: Send>() {}
/// must_be_send::<coreio::io::PipeReader>();
/// ```
pub struct PipeReader {
    io: StreamIo,
}

impl PipeReader {
    /// Wraps the reading end of a pipe (or a FIFO) made elsewhere, switching it to
    /// non-blocking mode. Fails with `InvalidInput` if `fd` is not a pipe open for reading.
    pub fn from_owned_fd(fd: OwnedFd) -> io::Result<PipeReader> {
        adopt(&fd, libc::O_RDONLY, "PipeReader")?;
        PipeReader::wrap(fd)
    }

    fn wrap(fd: OwnedFd) -> io::Result<PipeReader> {
        Ok(PipeReader {
            io: StreamIo::with_calls(SharedFd::new(fd)?, Calls::Pipe),
        })
    }

    /// Reads into `buf` from its start, up to its capacity; `Ok(0)` means every writer is
    /// closed. A `Vec`'s length becomes the number of bytes read. A `buf` with no capacity
    /// (`bytes_total() == 0`) is refused with `InvalidInput` before anything is submitted,
    /// since its `Ok(0)` would look like end of stream.
    ///
    /// Cancel-safe: whatever a dropped read had already taken (on io_uring the kernel may
    /// complete it after the future is gone) is returned by the next read, before anything
    /// newer.
    pub async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.io.read(buf).await
    }

    /// Fills `buf` completely (all of its capacity), or fails with `UnexpectedEof` if every
    /// writer closes first.
    pub async fn read_exact<B: IoBufMut>(&self, buf: B) -> (io::Result<()>, B) {
        self.io.read_exact(buf).await
    }
}

/// The writing end of a pipe.
///
/// Dropping it (once every operation on it has finished) closes it: when no writer is left,
/// the reader reads end of stream. Writing when the reader is gone fails with `EPIPE`
/// ([`BrokenPipe`](io::ErrorKind::BrokenPipe)); it never kills the process with `SIGPIPE` (see
/// the module's rule: a default `SIGPIPE` disposition is set to ignore when a writer is made).
///
/// ```compile_fail
/// fn must_be_send<T: Send>() {}
/// must_be_send::<coreio::io::PipeWriter>();
/// ```
pub struct PipeWriter {
    io: StreamIo,
}

impl PipeWriter {
    /// Wraps the writing end of a pipe (or a FIFO) made elsewhere, switching it to
    /// non-blocking mode. Fails with `InvalidInput` if `fd` is not a pipe open for writing.
    pub fn from_owned_fd(fd: OwnedFd) -> io::Result<PipeWriter> {
        adopt(&fd, libc::O_WRONLY, "PipeWriter")?;
        PipeWriter::wrap(fd)
    }

    fn wrap(fd: OwnedFd) -> io::Result<PipeWriter> {
        make_sigpipe_harmless();
        Ok(PipeWriter {
            io: StreamIo::with_calls(SharedFd::new(fd)?, Calls::Pipe),
        })
    }

    /// Writes some of `buf`'s initialised bytes; returns how many. Writes of up to
    /// `PIPE_BUF` (4096) bytes are atomic.
    pub async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        self.io.write(buf).await
    }

    /// Writes all of `buf`'s initialised bytes. A reader that is gone is an `EPIPE` error.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        self.io.write_all(buf).await
    }
}

impl AsFd for PipeReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.fd.as_fd()
    }
}

impl AsRawFd for PipeReader {
    fn as_raw_fd(&self) -> RawFd {
        self.io.fd.raw()
    }
}

impl AsFd for PipeWriter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.fd.as_fd()
    }
}

impl AsRawFd for PipeWriter {
    fn as_raw_fd(&self) -> RawFd {
        self.io.fd.raw()
    }
}

impl fmt::Debug for PipeReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeReader")
            .field("fd", &self.io.fd.raw())
            .finish()
    }
}

impl fmt::Debug for PipeWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeWriter")
            .field("fd", &self.io.fd.raw())
            .finish()
    }
}

impl PollRead for PipeReader {
    fn read_io(&self) -> &StreamIo {
        &self.io
    }
}

impl PollWrite for PipeWriter {
    fn write_io(&self) -> &StreamIo {
        &self.io
    }
    /// A pipe's writing end closes when it is dropped; until then this does nothing.
    fn shutdown_write(&self) -> io::Result<()> {
        Ok(())
    }
}
