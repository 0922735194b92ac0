//! [`AsyncFd`]: readiness of any descriptor, for I/O that coreio does not wrap.
//!
//! An `AsyncFd` owns the user's `T` and a duplicate of its descriptor, which is what the
//! core's driver knows: registered (edge-triggered) with the core's epoll instance on that
//! backend, nothing on io_uring. A wait is one [`ReadyWait`] (`IORING_OP_POLL_ADD`, or
//! `poll(2)` then the registration's next edge on epoll).
//!
//! Readiness is cached per direction: a finished wait sets it, and it stays set, so that
//! `readable()` answers at once, until the user's syscall has failed with `WouldBlock` and the
//! user clears it ([`ReadyGuard::clear_ready`], or [`ReadyGuard::try_io`]). Only the user knows
//! when the descriptor ran dry, so that is the only place it is forgotten; the next wait then
//! asks the kernel again (the truth about the level, not an edge that may have been consumed),
//! so no readiness is ever lost whatever happened in between.

// This module owns that cache and the duplicate's registration. It must never read or write the
// descriptor itself, and must deregister the duplicate (explicitly, with `EPOLL_CTL_DEL`) before
// giving `T` back or dropping it: the user's descriptor keeps the open file description alive, so
// closing the duplicate alone would leave it in the epoll set.

use std::cell::Cell;
use std::error::Error;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::task::{Context, Poll, ready};

use super::poll_ready::ReadyWait;
use crate::coop;
use crate::driver::{Direction, SharedFd};

const READABLE: u8 = 1;
const WRITABLE: u8 = 2;

fn bit(direction: Direction) -> u8 {
    match direction {
        Direction::Read => READABLE,
        Direction::Write => WRITABLE,
    }
}

/// A descriptor `T` of any kind (a pipe, an eventfd, a timerfd, a socket coreio does not wrap,
/// a device) whose readiness tasks can wait for, on the current core.
///
/// `AsyncFd` does no I/O itself: it tells when the descriptor may be readable or writable, and
/// the caller then makes the syscall on [`get_ref`](Self::get_ref) (or, for I/O that needs
/// `&mut T`, through [`readable_mut`](Self::readable_mut)'s guard). The descriptor must be in
/// **non-blocking** mode (`O_NONBLOCK`), or that syscall blocks the whole core; `AsyncFd` does
/// not change it. The usual loop:
///
/// ```no_run
/// use std::io::Read;
/// use coreio::io::AsyncFd;
///
/// # async fn example(fd: AsyncFd<std::fs::File>) -> std::io::Result<()> {
/// let mut buf = [0u8; 4096];
/// let n = loop {
///     let mut guard = fd.readable().await?;
///     // `try_io` clears the cached readiness when the closure reports `WouldBlock`.
///     match guard.try_io(|mut file| file.read(&mut buf)) {
///         Ok(result) => break result?,
///         Err(_would_block) => continue,
///     }
/// };
/// # let _ = n;
/// # Ok(())
/// # }
/// ```
///
/// **Readiness is cached** until you clear it: a guard says "try your syscall"; only after it
/// failed with `WouldBlock` may you call [`clear_ready`](ReadyGuard::clear_ready), and you
/// must, or the next `readable()` answers at once again. (Clearing it without having seen
/// `WouldBlock` costs a wasted wait at worst: the next wait asks the kernel, which answers at
/// once if the descriptor is still ready.) An error or a hang-up (`POLLERR`, `POLLHUP`) makes
/// the descriptor both readable and writable, so that the next syscall, in either direction,
/// reports it.
///
/// **Several tasks** may wait at once with [`readable`](Self::readable) and
/// [`writable`](Self::writable): each wait is its own operation on io_uring, and on epoll every
/// waiting task is kept and woken by the same edge. Each of them then tries its syscall; those
/// that see `WouldBlock` clear the readiness and wait again.
///
/// **The descriptor's registration** is a duplicate (`F_DUPFD_CLOEXEC`) of `T`'s descriptor,
/// held for as long as the `AsyncFd` lives: one more descriptor against `RLIMIT_NOFILE`. The
/// duplicate shares `T`'s open file description (its readiness, its `O_NONBLOCK` flag, its file
/// position), which is what epoll watches: an epoll registration belongs to an open file
/// description, not to a descriptor number, and stays while any descriptor of it is open. So
/// `AsyncFd` removes its registration explicitly (`EPOLL_CTL_DEL`) before it gives `T` back or
/// drops it, and descriptors you `dup()` yourself never keep it alive; two `AsyncFd`s over
/// duplicates of one description are two registrations, each woken by the same events.
/// Closing the duplicate releases the POSIX record locks (`fcntl(F_SETLK)`) the process holds
/// on the file, as closing any of its descriptors does; use `flock` or open file description
/// locks (`F_OFD_SETLK`) with an `AsyncFd`.
///
/// **Regular files and directories** cannot be watched by epoll: on that backend
/// [`new`](Self::new) fails with an error naming the cause (`EPERM` from `epoll_ctl`). On
/// io_uring they are accepted, and always reported ready (as `poll(2)` does for them): the
/// syscall then blocks the core for as long as the disk takes.
///
/// An `AsyncFd` belongs to the core that made it, so it is neither `Send` nor `Sync`:
///
/// ```compile_fail
/// fn must_be_send<T: Send>() {}
/// must_be_send::<coreio::io::AsyncFd<std::os::fd::OwnedFd>>();
/// ```
pub struct AsyncFd<T: AsFd> {
    /// `None` only once `into_inner` took it.
    inner: Option<T>,
    /// The registered duplicate of `inner`'s descriptor; `None` once released.
    fd: Option<SharedFd>,
    /// `READABLE | WRITABLE` bits a wait saw and nobody cleared yet.
    ready: Cell<u8>,
    /// The waits of [`poll_read_ready`](Self::poll_read_ready) and
    /// [`poll_write_ready`](Self::poll_write_ready), kept between polls.
    read_wait: Cell<Option<ReadyWait>>,
    write_wait: Cell<Option<ReadyWait>>,
}

impl<T: AsFd> AsyncFd<T> {
    /// Registers `inner`'s descriptor with the current core's driver (edge-triggered, both
    /// directions, on epoll; nothing on io_uring).
    ///
    /// Fails outside a runtime, when the descriptor cannot be duplicated (`EMFILE`), and on
    /// epoll for a descriptor that epoll refuses: a regular file or a directory (`EPERM`, with
    /// a message saying so). `inner` is dropped with the error; [`try_new`](Self::try_new)
    /// gives it back.
    pub fn new(inner: T) -> io::Result<AsyncFd<T>> {
        AsyncFd::try_new(inner).map_err(|(_inner, err)| err)
    }

    /// [`new`](Self::new), giving `inner` back with the error.
    pub fn try_new(inner: T) -> Result<AsyncFd<T>, (T, io::Error)> {
        let registered = inner
            .as_fd()
            .try_clone_to_owned()
            .and_then(SharedFd::new)
            .map_err(explain);
        match registered {
            Ok(fd) => Ok(AsyncFd {
                inner: Some(inner),
                fd: Some(fd),
                ready: Cell::new(0),
                read_wait: Cell::new(None),
                write_wait: Cell::new(None),
            }),
            Err(err) => Err((inner, err)),
        }
    }

    /// The wrapped value.
    pub fn get_ref(&self) -> &T {
        let Some(inner) = self.inner.as_ref() else {
            unreachable!("an AsyncFd holds its value until into_inner");
        };
        inner
    }

    /// The wrapped value, mutably. Replacing its descriptor (e.g. with `dup2`) is not noticed:
    /// readiness stays that of the descriptor it had when it was wrapped.
    pub fn get_mut(&mut self) -> &mut T {
        let Some(inner) = self.inner.as_mut() else {
            unreachable!("an AsyncFd holds its value until into_inner");
        };
        inner
    }

    /// Deregisters the descriptor from the core's driver and gives the value back, still open.
    /// A wait of the poll forms still in flight is cancelled.
    pub fn into_inner(mut self) -> T {
        self.release();
        let Some(inner) = self.inner.take() else {
            unreachable!("an AsyncFd holds its value until into_inner");
        };
        inner
    }

    /// Waits until the descriptor may be readable (or has an error or a hang-up).
    ///
    /// Answers at once while a readiness seen before is not cleared. Cancel-safe: dropping the
    /// future cancels its wait and loses nothing (readiness is the kernel's state, asked again
    /// by the next wait).
    pub async fn readable(&self) -> io::Result<ReadyGuard<'_, T>> {
        self.ready_guard(Direction::Read).await
    }

    /// Waits until the descriptor may be writable (or has an error or a hang-up); as
    /// [`readable`](Self::readable).
    pub async fn writable(&self) -> io::Result<ReadyGuard<'_, T>> {
        self.ready_guard(Direction::Write).await
    }

    /// [`readable`](Self::readable) for I/O that needs `&mut T`: the guard gives the value
    /// mutably ([`ReadyMutGuard::try_io`]).
    pub async fn readable_mut(&mut self) -> io::Result<ReadyMutGuard<'_, T>> {
        self.ready_guard(Direction::Read).await?;
        Ok(ReadyMutGuard {
            async_fd: self,
            direction: Direction::Read,
        })
    }

    /// [`writable`](Self::writable) for I/O that needs `&mut T`; see
    /// [`readable_mut`](Self::readable_mut).
    pub async fn writable_mut(&mut self) -> io::Result<ReadyMutGuard<'_, T>> {
        self.ready_guard(Direction::Write).await?;
        Ok(ReadyMutGuard {
            async_fd: self,
            direction: Direction::Write,
        })
    }

    /// The poll form of [`readable`](Self::readable), for `poll_read`-style code (the
    /// poll-based `AsyncRead` compatibility builds on it).
    ///
    /// The contract: `Ready(Ok(guard))` says "try the syscall now"; if it fails with
    /// `WouldBlock`, call [`clear_ready`](ReadyGuard::clear_ready) and poll again, which either
    /// finds new readiness or returns `Pending`. `Pending` means the waker of `cx` will be woken
    /// when the readiness may have changed. One wait per direction is kept inside the
    /// `AsyncFd` between polls, so only the waker of the most recent poll is woken: the poll
    /// forms serve one reader and one writer (an `AsyncRead` and an `AsyncWrite` over the same
    /// descriptor); other tasks should use `readable()`. The wait stays in flight until it
    /// finishes, the readiness is found cached, or the `AsyncFd` is dropped.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<ReadyGuard<'_, T>>> {
        self.poll_kept(Direction::Read, &self.read_wait, cx)
    }

    /// The poll form of [`writable`](Self::writable); see
    /// [`poll_read_ready`](Self::poll_read_ready) for the contract.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<ReadyGuard<'_, T>>> {
        self.poll_kept(Direction::Write, &self.write_wait, cx)
    }

    async fn ready_guard(&self, direction: Direction) -> io::Result<ReadyGuard<'_, T>> {
        let mut wait = None;
        poll_fn(|cx| self.poll_ready(direction, &mut wait, cx)).await?;
        Ok(ReadyGuard {
            async_fd: self,
            direction,
        })
    }

    fn poll_kept(
        &self,
        direction: Direction,
        kept: &Cell<Option<ReadyWait>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<ReadyGuard<'_, T>>> {
        let mut wait = kept.take();
        let polled = self.poll_ready(direction, &mut wait, cx);
        kept.set(wait);
        polled.map_ok(|()| ReadyGuard {
            async_fd: self,
            direction,
        })
    }

    /// Ready when `direction` is cached as ready, or once the wait in `wait` (started here if
    /// there is none) finishes; the wait is dropped (cancelled, if in flight) once ready.
    fn poll_ready(
        &self,
        direction: Direction,
        wait: &mut Option<ReadyWait>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if self.ready.get() & bit(direction) != 0 {
            // A task looping on cached readiness still yields when its budget is spent.
            ready!(coop::poll_proceed(cx));
            *wait = None;
            return Poll::Ready(Ok(()));
        }
        let Some(fd) = self.fd.as_ref() else {
            unreachable!("an AsyncFd keeps its registration until it is released");
        };
        let pending = wait.get_or_insert_with(|| ReadyWait::new(fd.clone(), direction));
        let polled = ready!(pending.poll(cx));
        *wait = None;
        let revents = polled?;
        let mut seen = bit(direction);
        if revents & (libc::POLLERR | libc::POLLHUP) as u16 as u32 != 0 {
            seen |= READABLE | WRITABLE;
        }
        self.ready.set(self.ready.get() | seen);
        Poll::Ready(Ok(()))
    }

    /// Cancels the poll forms' waits, then removes the duplicate from the driver and closes it.
    fn release(&mut self) {
        drop(self.read_wait.take());
        drop(self.write_wait.take());
        if let Some(fd) = self.fd.take() {
            // No clone is left on epoll (the poll forms' waits were dropped just above, every
            // `readable()` future borrows `self`, and a dropped wait frees its data at once
            // on that backend), so this removes the registration
            // (`EPOLL_CTL_DEL`) and closes the duplicate. On io_uring a cancelled wait may still
            // hold a clone until its cancellation completes: the duplicate closes then, and
            // there is no registration to remove.
            if let Ok((duplicate, _held)) = fd.try_into_owned() {
                drop(duplicate);
            }
        }
    }
}

/// Names the cause of `epoll_ctl`'s `EPERM`: the descriptor is of a kind epoll cannot watch.
fn explain(err: io::Error) -> io::Error {
    if err.raw_os_error() == Some(libc::EPERM) {
        return io::Error::new(
            io::ErrorKind::PermissionDenied,
            "AsyncFd: epoll refuses this descriptor (EPERM from epoll_ctl): it is a regular file \
             or a directory, which epoll cannot watch since they are always ready; read it with \
             blocking I/O off the core, or run the io_uring backend",
        );
    }
    err
}

impl<T: AsFd> Drop for AsyncFd<T> {
    fn drop(&mut self) {
        // Before `inner` drops (fields drop after this): its descriptor keeps the open file
        // description, and with it an epoll registration, alive.
        self.release();
    }
}

impl<T: AsFd> AsFd for AsyncFd<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

impl<T: AsFd> AsRawFd for AsyncFd<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.get_ref().as_fd().as_raw_fd()
    }
}

impl<T: AsFd + fmt::Debug> fmt::Debug for AsyncFd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFd")
            .field("inner", &self.inner)
            .field("ready", &self.ready.get())
            .finish()
    }
}

/// Proof that an [`AsyncFd`] may be ready in one direction: try the syscall, and if it fails
/// with `WouldBlock`, [`clear_ready`](Self::clear_ready) (or let [`try_io`](Self::try_io) do it)
/// before waiting again.
pub struct ReadyGuard<'a, T: AsFd> {
    async_fd: &'a AsyncFd<T>,
    direction: Direction,
}

impl<'a, T: AsFd> ReadyGuard<'a, T> {
    /// Forgets the readiness of this guard's direction: the next wait asks the kernel again.
    /// Call it only after the syscall failed with `WouldBlock`.
    pub fn clear_ready(&mut self) {
        let fd = self.async_fd;
        fd.ready.set(fd.ready.get() & !bit(self.direction));
    }

    /// Runs `f` on the wrapped value. If it fails with `WouldBlock`, clears the readiness and
    /// returns `Err(TryIoError)`; anything else (success or another error) is `Ok(result)`.
    pub fn try_io<R>(
        &mut self,
        f: impl FnOnce(&'a T) -> io::Result<R>,
    ) -> Result<io::Result<R>, TryIoError> {
        match f(self.async_fd.get_ref()) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.clear_ready();
                Err(TryIoError(()))
            }
            result => Ok(result),
        }
    }

    /// The `AsyncFd` this guard is for.
    pub fn get_ref(&self) -> &'a AsyncFd<T> {
        self.async_fd
    }

    /// The wrapped value.
    pub fn get_inner(&self) -> &'a T {
        self.async_fd.get_ref()
    }
}

/// [`ReadyGuard`] for I/O that needs `&mut T`, from [`AsyncFd::readable_mut`] and
/// [`AsyncFd::writable_mut`].
pub struct ReadyMutGuard<'a, T: AsFd> {
    async_fd: &'a mut AsyncFd<T>,
    direction: Direction,
}

impl<T: AsFd> ReadyMutGuard<'_, T> {
    /// Forgets the readiness of this guard's direction: the next wait asks the kernel again.
    /// Call it only after the syscall failed with `WouldBlock`.
    pub fn clear_ready(&mut self) {
        let fd = &*self.async_fd;
        fd.ready.set(fd.ready.get() & !bit(self.direction));
    }

    /// Runs `f` on the wrapped value, mutably. If it fails with `WouldBlock`, clears the
    /// readiness and returns `Err(TryIoError)`; anything else is `Ok(result)`.
    pub fn try_io<R>(
        &mut self,
        f: impl FnOnce(&mut T) -> io::Result<R>,
    ) -> Result<io::Result<R>, TryIoError> {
        match f(self.async_fd.get_mut()) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.clear_ready();
                Err(TryIoError(()))
            }
            result => Ok(result),
        }
    }

    /// The `AsyncFd` this guard is for.
    pub fn get_ref(&self) -> &AsyncFd<T> {
        self.async_fd
    }

    /// The `AsyncFd` this guard is for, mutably.
    pub fn get_mut(&mut self) -> &mut AsyncFd<T> {
        self.async_fd
    }

    /// The wrapped value.
    pub fn get_inner(&self) -> &T {
        self.async_fd.get_ref()
    }

    /// The wrapped value, mutably.
    pub fn get_inner_mut(&mut self) -> &mut T {
        self.async_fd.get_mut()
    }
}

impl<T: AsFd> fmt::Debug for ReadyMutGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadyMutGuard")
            .field("direction", &self.direction)
            .finish()
    }
}

impl<T: AsFd> fmt::Debug for ReadyGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadyGuard")
            .field("direction", &self.direction)
            .finish()
    }
}

/// [`ReadyGuard::try_io`]'s (or [`ReadyMutGuard::try_io`]'s) closure would have blocked: the readiness was cleared, wait again.
#[derive(Debug)]
pub struct TryIoError(());

impl fmt::Display for TryIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the operation would block; wait for readiness again")
    }
}

impl Error for TryIoError {}
