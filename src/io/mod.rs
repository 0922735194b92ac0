//! I/O beyond sockets: readiness of any descriptor ([`AsyncFd`]), pipes ([`pipe()`]), and
//! [`BufReader`], lines and records over any stream that reads into owned buffers.
//!
//! [`AsyncFd`] wraps a descriptor coreio has no type for (an eventfd, a timerfd, a device, a
//! socket made by another library) and says when it may be readable or writable, for the
//! caller's own non-blocking syscalls. [`pipe()`] makes a pipe whose ends read and write with
//! owned buffers, as [`TcpStream`](crate::net::TcpStream) does.
//!
//! ```
//! use std::os::fd::AsFd;
//! use coreio::io::AsyncFd;
//!
//! coreio::block_on(async {
//!     // Readiness of a pipe's write end: writable at once.
//!     let (reader, writer) = coreio::io::pipe()?;
//!     let fd = AsyncFd::new(writer.as_fd().try_clone_to_owned()?)?;
//!     let _guard = fd.writable().await?;
//!     drop(reader);
//!     Ok::<(), std::io::Error>(())
//! })
//! .unwrap()
//! .unwrap();
//! ```

// Module map (maintainers): `async_fd` owns the readiness cache and the descriptor's
// registration; `poll_ready` is the readiness operation (POLL_ADD, or poll(2) then an epoll
// edge); `pipe` is a pair of `StreamIo`s with read(2)/write(2); `buf_reader` buffers any
// `OwnedRead` and reads only through it. None of them may read or write
// a descriptor it does not own.

mod async_fd;
mod buf_reader;
mod pipe;
mod poll_ready;

pub use async_fd::{AsyncFd, ReadyGuard, ReadyMutGuard, TryIoError};
pub use buf_reader::{
    BufReader, DEFAULT_BUF_CAPACITY, DEFAULT_MAX_LINE_LEN, LineTooLong, OwnedRead,
};
pub use pipe::{PipeReader, PipeWriter, pipe};
pub(crate) use poll_ready::ReadyWait;
