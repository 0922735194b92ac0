//! `io::pipe`: round trips, end of stream after the writer closes, `EPIPE` (never a fatal
//! SIGPIPE) after the reader closes, a large `write_all` against a concurrent reader, a read
//! dropped in flight, and wrapping pipes made elsewhere; on both backends.

#[macro_use]
mod util;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::task::{Context, Waker};
use std::time::Duration;

use coreio::io::{PipeReader, PipeWriter, pipe};
use coreio::time::{sleep, timeout};

use util::{block_on, open_fds};

/// Descriptor counts are process-wide: the tests that count run one at a time under libtest.
static SERIAL: Mutex<()> = Mutex::new(());

const PATIENCE: Duration = Duration::from_secs(30);
/// A blocking pipe made with libc: (read end, write end).
fn blocking_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let res = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(res, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: both are fresh descriptors nobody else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

both_backends! {
    fn a_round_trip_and_end_of_stream_after_the_writer_closes(backend: Backend) {
        block_on(backend, async {
            let (reader, writer) = pipe().unwrap();
            for round in 0..10u64 {
                let message = util::pattern(1, round, 100 + round as usize * 37);
                let (res, _) = writer.write_all(message.clone()).await;
                res.unwrap();
                let (res, got) = reader.read_exact(vec![0u8; message.len()]).await;
                res.unwrap();
                assert_eq!(got, message);
            }
            let (res, _) = writer.write_all("tail").await;
            res.unwrap();
            drop(writer);
            let (res, buf) = reader.read(Vec::with_capacity(64)).await;
            assert_eq!(res.unwrap(), 4);
            assert_eq!(buf, b"tail");
            for _ in 0..3 {
                let (res, buf) = reader.read(Vec::with_capacity(64)).await;
                assert_eq!(res.unwrap(), 0, "end of stream, every time");
                assert!(buf.is_empty());
            }
            let (res, _) = reader.read_exact(vec![0u8; 4]).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        });
    }

    fn a_reader_waits_for_the_writer(backend: Backend) {
        block_on(backend, async {
            let (reader, writer) = pipe().unwrap();
            let late = coreio::spawn(async move {
                sleep(Duration::from_millis(3)).await;
                let (res, _) = writer.write_all("late").await;
                res.unwrap();
                writer
            });
            let (res, buf) = reader.read(Vec::with_capacity(16)).await;
            assert_eq!(res.unwrap(), 4);
            assert_eq!(buf, b"late");
            drop(late.await.unwrap());
        });
    }

    fn writing_after_the_reader_closed_is_epipe_not_sigpipe(backend: Backend) {
        // In a child process with SIGPIPE at its default action (Rust ignores it at start-up),
        // so a write that raised a fatal SIGPIPE would kill the child.
        const ROLE: &str = "pipe-sigpipe";
        if util::child_role().as_deref() != Some(ROLE) {
            let name =
                util::backend_test_name("writing_after_the_reader_closed_is_epipe_not_sigpipe", backend);
            let out = util::run_child(&name, ROLE, &[], PATIENCE);
            util::assert_child_ok(&out, "SIGPIPE child");
            return;
        }
        // SAFETY: restoring the default disposition of SIGPIPE has no memory-safety concerns.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        block_on(backend, async {
            let (reader, writer) = pipe().unwrap();
            drop(reader);
            for _ in 0..3 {
                let (res, _) = writer.write(vec![1u8; 100]).await;
                assert_eq!(res.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
            }
            let (res, _) = writer.write_all(vec![1u8; 1 << 20]).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
            // A reader that goes away while a write waits for room.
            let (reader, writer) = pipe().unwrap();
            let closer = coreio::spawn(async move {
                sleep(Duration::from_millis(3)).await;
                drop(reader);
            });
            let (res, _) = writer.write_all(vec![2u8; 1 << 20]).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
            closer.await.unwrap();
            // What made it harmless: the default (fatal) disposition became "ignore".
            // SAFETY: setting SIG_IGN (what it should already be) has no memory-safety concerns.
            let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
            assert_eq!(previous, libc::SIG_IGN);
        });
    }

    fn a_sigpipe_handler_the_program_installed_stays(backend: Backend) {
        const ROLE: &str = "pipe-sigpipe-handler";
        if util::child_role().as_deref() != Some(ROLE) {
            let name =
                util::backend_test_name("a_sigpipe_handler_the_program_installed_stays", backend);
            let out = util::run_child(&name, ROLE, &[], PATIENCE);
            util::assert_child_ok(&out, "SIGPIPE handler child");
            return;
        }
        extern "C" fn on_sigpipe(_: libc::c_int) {}
        let handler = on_sigpipe as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: installing a handler that does nothing has no memory-safety concerns.
        unsafe { libc::signal(libc::SIGPIPE, handler) };
        block_on(backend, async move {
            let (reader, writer) = pipe().unwrap();
            drop(reader);
            let (res, _) = writer.write("x").await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
            // SAFETY: an all-zero sigaction is valid for the kernel to overwrite.
            let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: only reads the current action into `current`.
            let res = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut current) };
            assert_eq!(res, 0);
            assert_eq!(current.sa_sigaction, handler, "the program's handler was replaced");
        });
    }

    fn a_large_write_all_while_another_task_reads(backend: Backend) {
        block_on(backend, async {
            const TOTAL: usize = 4 << 20; // far more than a pipe's 64 KiB buffer
            let (reader, writer) = pipe().unwrap();
            let sender = coreio::spawn(async move {
                let (res, _) = writer.write_all(util::pattern(7, 0, TOTAL)).await;
                res.unwrap();
            });
            let mut received = 0;
            let mut buf = Vec::with_capacity(10_000);
            loop {
                let (res, b) = reader.read(buf).await;
                let n = res.unwrap();
                if n == 0 {
                    break;
                }
                util::check_pattern(7, 0, received as u64, &b);
                received += n;
                buf = b;
            }
            assert_eq!(received, TOTAL);
            sender.await.unwrap();
        });
    }

    fn a_read_dropped_in_flight_loses_nothing_and_leaks_nothing(backend: Backend) {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        block_on(backend, async {
            let before = open_fds();
            let (reader, writer) = pipe().unwrap();
            for _ in 0..20 {
                let res = timeout(Duration::from_micros(300), reader.read(Vec::with_capacity(64))).await;
                assert!(res.is_err(), "nothing was written");
            }
            // And one dropped after data arrived: on io_uring its receive completed in the
            // ring (taking bytes) before the drop; on epoll it was waiting and took nothing.
            let mut cut = Box::pin(reader.read(Vec::with_capacity(2)));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(cut.as_mut().poll(&mut cx).is_pending(), "the pipe is empty");
            let (res, _) = writer.write_all("first").await;
            res.unwrap();
            coreio::yield_now().await;
            drop(cut);
            let mut got = Vec::new();
            let (res, _) = writer.write_all(" second").await;
            res.unwrap();
            let rest = vec![0u8; 12 - got.len()];
            let (res, rest) = timeout(PATIENCE, reader.read_exact(rest)).await.expect("all bytes come");
            res.unwrap();
            got.extend_from_slice(&rest);
            assert_eq!(got, b"first second", "bytes in order, none lost");
            drop((reader, writer));
            assert_eq!(util::fds_settle_to(before).await, before, "both ends closed");
        });
    }

    fn pipes_made_elsewhere_are_wrapped_and_checked(backend: Backend) {
        block_on(backend, async {
            let (rx, tx) = blocking_pipe();
            let (rx2, tx2) = (rx.try_clone().unwrap(), tx.try_clone().unwrap());
            let reader = PipeReader::from_owned_fd(rx).unwrap();
            let writer = PipeWriter::from_owned_fd(tx).unwrap();
            // Switched to non-blocking: a read with nothing there waits instead of blocking
            // the core (the timeout could not fire otherwise).
            assert!(timeout(Duration::from_millis(5), reader.read(Vec::with_capacity(8))).await.is_err());
            let (res, _) = writer.write_all("made elsewhere").await;
            res.unwrap();
            let (res, got) = reader.read_exact(vec![0u8; 14]).await;
            res.unwrap();
            assert_eq!(got, b"made elsewhere");
            // The wrong end, and no pipe at all, are errors naming the problem.
            let err = PipeReader::from_owned_fd(tx2).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("not open for reading"), "{err}");
            let err = PipeWriter::from_owned_fd(rx2).unwrap_err();
            assert!(err.to_string().contains("not open for writing"), "{err}");
            let file = std::fs::File::open("/proc/self/stat").unwrap();
            let err = PipeReader::from_owned_fd(OwnedFd::from(file)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("not a pipe"), "{err}");
            assert!(reader.as_raw_fd() >= 0 && writer.as_raw_fd() >= 0);
        });
    }
}
