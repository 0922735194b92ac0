//! `io::AsyncFd`: readiness of descriptors coreio has no type for (a pipe, a timerfd, a Unix
//! stream made by std, a regular file), the cached readiness and its clearing, waits dropped in
//! flight, several waiters, the poll forms, and giving the descriptor back; on both backends.

#[macro_use]
mod util;

use std::cell::Cell;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::pin::pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use coreio::Backend;
use coreio::io::AsyncFd;
use coreio::time::{sleep, timeout};

use util::{block_on, open_fds};

/// Descriptor counts are process-wide: tests of this binary that count run one at a time even
/// when libtest runs them on threads (nextest runs each in its own process anyway).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A long enough wait to say "this is not ready" (a ready wait returns at once; a slow machine
/// only makes this wait longer, never the test wrong).
const NOT_READY: Duration = Duration::from_millis(20);

/// A non-blocking pipe made with libc: (read end, write end).
fn raw_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let res = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    assert_eq!(res, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: both are fresh descriptors nobody else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn write_fd(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is valid for reads of its length; the caller keeps `fd` open.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length; the caller keeps `fd` open.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Reads what `fd` has with the readiness loop: wait, try, clear on `WouldBlock`.
async fn read_ready(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|inner| read_fd(inner.as_raw_fd(), buf)) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

/// A waker whose clones can be counted (`Arc::strong_count`).
struct NoopWake;

impl std::task::Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}
both_backends! {
    fn a_pipe_is_readable_once_written_and_not_before(backend: Backend) {
        block_on(backend, async {
            let (rx, tx) = raw_pipe();
            let rx = AsyncFd::new(rx).unwrap();
            assert!(timeout(NOT_READY, rx.readable()).await.is_err(), "empty pipe was readable");
            write_fd(tx.as_raw_fd(), b"abc").unwrap();
            let mut buf = [0u8; 16];
            assert_eq!(read_ready(&rx, &mut buf).await.unwrap(), 3);
            assert_eq!(&buf[..3], b"abc");
            // The pipe is empty again: the next read sees WouldBlock, clears, and waits.
            let writer = coreio::spawn(async move {
                sleep(Duration::from_millis(2)).await;
                write_fd(tx.as_raw_fd(), b"de").unwrap();
                tx
            });
            assert_eq!(read_ready(&rx, &mut buf).await.unwrap(), 2);
            assert_eq!(&buf[..2], b"de");
            drop(writer.await.unwrap());
            // Writer closed: a hang-up, readable with end of stream.
            assert_eq!(read_ready(&rx, &mut buf).await.unwrap(), 0);
        });
    }

    fn readiness_is_cached_until_cleared(backend: Backend) {
        block_on(backend, async {
            let (rx, tx) = raw_pipe();
            let rx = AsyncFd::new(rx).unwrap();
            write_fd(tx.as_raw_fd(), b"x").unwrap();
            let mut buf = [0u8; 8];
            {
                let guard = rx.readable().await.unwrap();
                assert_eq!(read_fd(guard.get_inner().as_raw_fd(), &mut buf).unwrap(), 1);
                // Not cleared: still reported ready, though the pipe is empty.
            }
            let mut guard = timeout(NOT_READY, rx.readable()).await.expect("cached").unwrap();
            let err = read_fd(guard.get_inner().as_raw_fd(), &mut buf).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
            guard.clear_ready();
            // Cleared: the next wait asks the kernel, which says not ready...
            assert!(timeout(NOT_READY, rx.readable()).await.is_err());
            // ...until there is data again: a second wait after the clear is woken.
            write_fd(tx.as_raw_fd(), b"y").unwrap();
            let mut guard = rx.readable().await.unwrap();
            assert_eq!(guard.try_io(|fd| read_fd(fd.as_raw_fd(), &mut buf)).unwrap().unwrap(), 1);
            assert!(guard.try_io(|fd| read_fd(fd.as_raw_fd(), &mut buf)).is_err(), "WouldBlock");
        });
    }

    fn a_timerfd_is_readable_after_it_fires(backend: Backend) {
        block_on(backend, async {
            // SAFETY: plain flags, no pointers.
            let raw = unsafe {
                libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
            };
            assert!(raw >= 0, "timerfd_create: {}", io::Error::last_os_error());
            // SAFETY: a fresh descriptor nobody else owns.
            let timer = AsyncFd::new(unsafe { OwnedFd::from_raw_fd(raw) }).unwrap();
            let mut spec: libc::itimerspec = unsafe { std::mem::zeroed() };
            spec.it_value.tv_nsec = 3_000_000;
            // SAFETY: `spec` is a valid itimerspec; the old value is not asked for.
            let res = unsafe { libc::timerfd_settime(raw, 0, &spec, std::ptr::null_mut()) };
            assert_eq!(res, 0);
            let mut buf = [0u8; 8];
            assert_eq!(read_ready(&timer, &mut buf).await.unwrap(), 8);
            assert!(u64::from_ne_bytes(buf) >= 1, "the timer expired at least once");
        });
    }

    fn a_std_unix_stream_is_writable_at_once_and_readable_after_the_peer_writes(backend: Backend) {
        block_on(backend, async {
            let (a, mut b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            let a = AsyncFd::new(a).unwrap();
            let mut guard = a.writable().await.unwrap();
            assert_eq!(guard.try_io(|mut s| s.write(b"ping")).unwrap().unwrap(), 4);
            assert!(timeout(NOT_READY, a.readable()).await.is_err(), "readable before data");
            let mut got = [0u8; 4];
            b.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ping");
            b.write_all(b"pong").unwrap();
            let mut buf = [0u8; 8];
            let n = loop {
                let mut guard = a.readable().await.unwrap();
                if let Ok(result) = guard.try_io(|mut s| s.read(&mut buf)) {
                    break result.unwrap();
                }
            };
            assert_eq!(&buf[..n], b"pong");
            // The peer gone: readable (end of stream) and writable (the write's error).
            drop(b);
            let mut guard = a.readable().await.unwrap();
            assert_eq!(guard.try_io(|mut s| s.read(&mut buf)).unwrap().unwrap(), 0);
            let mut guard = a.writable().await.unwrap();
            let err = guard.try_io(|mut s| s.write(b"x")).unwrap().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        });
    }

    fn a_dropped_wait_in_flight_leaks_nothing_and_the_fd_stays_usable(backend: Backend) {
        let _serial = serial();
        block_on(backend, async {
            let (rx, tx) = raw_pipe();
            let before = open_fds();
            let rx = AsyncFd::new(rx).unwrap();
            // The duplicate the registration holds.
            assert_eq!(open_fds(), before + 1);
            for _ in 0..50 {
                // Polled once (a POLL_ADD in the ring, or a waker left on epoll), then dropped.
                let mut wait = pin!(rx.readable());
                let mut cx = Context::from_waker(Waker::noop());
                assert!(wait.as_mut().poll(&mut cx).is_pending());
                coreio::yield_now().await;
            }
            for _ in 0..10 {
                // Dropped while the core sleeps on it.
                assert!(timeout(Duration::from_millis(1), rx.readable()).await.is_err());
            }
            assert_eq!(util::fds_settle_to(before + 1).await, before + 1);
            write_fd(tx.as_raw_fd(), b"ok").unwrap();
            let mut buf = [0u8; 4];
            assert_eq!(read_ready(&rx, &mut buf).await.unwrap(), 2);
            drop(rx);
            assert_eq!(util::fds_settle_to(before - 1).await, before - 1, "the read end and its duplicate closed");
        });
    }

    fn a_dropped_wait_lets_go_of_its_waker(backend: Backend) {
        block_on(backend, async {
            let (rx, _tx) = raw_pipe();
            let rx = AsyncFd::new(rx).unwrap();
            let counted = Arc::new(NoopWake);
            let waker = Waker::from(counted.clone());
            for _ in 0..100 {
                let mut wait = Box::pin(rx.readable());
                assert!(wait.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
                coreio::yield_now().await;
                assert!(Arc::strong_count(&counted) > 2, "the driver holds the waker");
                drop(wait);
                // Nothing of the wait stays behind (a task's waker keeps its task alive).
                assert_eq!(Arc::strong_count(&counted), 2, "the driver let go of the waker");
            }
        });
    }

    fn into_inner_gives_back_a_working_fd_that_can_be_wrapped_again(backend: Backend) {
        let _serial = serial();
        block_on(backend, async {
            let (rx, tx) = raw_pipe();
            let before = open_fds();
            let rx = AsyncFd::new(rx).unwrap();
            // A wait of the poll form left in flight is cancelled by into_inner.
            let mut cx = Context::from_waker(Waker::noop());
            assert!(rx.poll_read_ready(&mut cx).is_pending());
            let raw = rx.as_raw_fd();
            let rx = rx.into_inner();
            assert_eq!(rx.as_raw_fd(), raw);
            assert_eq!(util::fds_settle_to(before).await, before, "the duplicate closed");
            write_fd(tx.as_raw_fd(), b"1").unwrap();
            let mut buf = [0u8; 4];
            assert_eq!(read_fd(rx.as_raw_fd(), &mut buf).unwrap(), 1);
            // Wrapped again, and again: the old registration was removed, not left behind.
            for round in 0..3u8 {
                let again = AsyncFd::new(rx.try_clone().unwrap()).unwrap();
                write_fd(tx.as_raw_fd(), &[round]).unwrap();
                assert_eq!(read_ready(&again, &mut buf).await.unwrap(), 1);
                assert_eq!(buf[0], round);
                drop(again.into_inner());
            }
            assert_eq!(util::fds_settle_to(before).await, before);
        });
    }

    fn a_regular_file_is_an_error_on_epoll_and_always_ready_on_io_uring(backend: Backend) {
        block_on(backend, async move {
            let path = std::env::temp_dir()
                .join(format!("coreio-asyncfd-{}-{}", std::process::id(), util::gettid()));
            let file = std::fs::File::create(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            let running = coreio::backend().unwrap();
            match AsyncFd::new(file) {
                Ok(fd) => {
                    assert_eq!(running, Backend::IoUring, "epoll accepted a regular file");
                    // poll(2) semantics: a regular file is always ready.
                    let _ = fd.readable().await.unwrap();
                    let mut guard = fd.writable().await.unwrap();
                    assert_eq!(guard.try_io(|mut f| f.write(b"z")).unwrap().unwrap(), 1);
                }
                Err(err) => {
                    assert_eq!(running, Backend::Epoll, "io_uring refused a regular file: {err}");
                    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
                    let text = err.to_string();
                    assert!(text.contains("regular file") && text.contains("EPERM"), "{text}");
                }
            }
            // try_new gives the value back with the error.
            let file = std::fs::File::open("/proc/self/stat").unwrap();
            if let Err((file, _err)) = AsyncFd::try_new(file) {
                assert!(file.metadata().is_ok(), "the file came back open");
            }
        });
    }

    fn two_tasks_waiting_for_one_fd_are_both_woken(backend: Backend) {
        block_on(backend, async {
            let (rx, tx) = raw_pipe();
            let rx = Rc::new(AsyncFd::new(rx).unwrap());
            let woken = Rc::new(Cell::new(0));
            let polls = Rc::new(Cell::new(0u32));
            let tasks: Vec<_> = (0..2)
                .map(|_| {
                    let (rx, woken, polls) = (rx.clone(), woken.clone(), polls.clone());
                    coreio::spawn(async move {
                        let mut wait = pin!(rx.readable());
                        let _guard = poll_fn(|cx| {
                            polls.set(polls.get() + 1);
                            wait.as_mut().poll(cx)
                        })
                        .await
                        .unwrap();
                        woken.set(woken.get() + 1);
                    })
                })
                .collect();
            // Both are waiting, neither woken, and neither makes the other retry (each was
            // polled once: no spurious wake-ups while nothing happens).
            sleep(Duration::from_millis(5)).await;
            assert_eq!(woken.get(), 0);
            assert_eq!(polls.get(), 2, "waiters woke each other");
            write_fd(tx.as_raw_fd(), b"!").unwrap();
            for task in tasks {
                timeout(Duration::from_secs(10), task).await.expect("woken").unwrap();
            }
            assert_eq!(woken.get(), 2);
        });
    }

    fn the_poll_forms_wake_the_last_poller(backend: Backend) {
        block_on(backend, async {
            let (rx, tx) = raw_pipe();
            let rx = AsyncFd::new(rx).unwrap();
            let tx = AsyncFd::new(tx).unwrap();
            // Writable at once, through the poll form too.
            poll_fn(|cx| tx.poll_write_ready(cx).map_ok(drop)).await.unwrap();
            let mut polls = 0;
            let writer = coreio::spawn(async move {
                sleep(Duration::from_millis(2)).await;
                write_fd(tx.as_raw_fd(), b"p").unwrap();
                tx
            });
            let mut buf = [0u8; 4];
            let n = poll_fn(|cx| loop {
                polls += 1;
                let mut guard = match rx.poll_read_ready(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(guard) => guard.unwrap(),
                };
                match guard.try_io(|fd| read_fd(fd.as_raw_fd(), &mut buf)) {
                    Ok(result) => return Poll::Ready(result),
                    Err(_would_block) => continue,
                }
            })
            .await
            .unwrap();
            assert_eq!(n, 1);
            assert!(polls >= 2, "the first poll found nothing and waited");
            drop(writer.await.unwrap());
        });
    }

    fn the_mut_guards_give_the_value_mutably(backend: Backend) {
        block_on(backend, async {
            let (a, mut b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            let mut a = AsyncFd::new(a).unwrap();
            let mut guard = a.writable_mut().await.unwrap();
            assert_eq!(guard.try_io(|s| s.write(b"mut")).unwrap().unwrap(), 3);
            let mut got = [0u8; 3];
            b.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"mut");
            let mut buf = [0u8; 8];
            // Nothing to read yet: WouldBlock clears; the peer writes; the next wait is woken.
            let writer = coreio::spawn(async move {
                sleep(Duration::from_millis(2)).await;
                b.write_all(b"back").unwrap();
                b
            });
            let n = loop {
                let mut guard = a.readable_mut().await.unwrap();
                if let Ok(result) = guard.try_io(|s| s.read(&mut buf)) {
                    break result.unwrap();
                }
            };
            drop(writer.await.unwrap());
            assert_eq!(&buf[..n], b"back");
        });
    }

    fn outside_a_runtime_new_is_an_error(_backend: Backend) {
        let (rx, _tx) = raw_pipe();
        assert!(AsyncFd::new(rx).is_err());
    }
}
