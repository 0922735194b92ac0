//! The driver's side of a runtime's end: the ring's registration is given back, and an
//! operation whose ring gave up waiting for the kernel never hands its buffer back.
//!
//! These drive a real ring, so under `COREIO_BACKEND=epoll` (which overrides the builder) they
//! have nothing to check and return early.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::UringDriver;
use crate::buf::{IoBuf, IoBufMut};
use crate::context;
use crate::driver::Backend;
use crate::net::{TcpListener, TcpStream};

/// Runs `f` with the current core's io_uring driver, or returns `None` on epoll.
fn with_ring<R>(f: impl FnOnce(&UringDriver) -> R) -> Option<R> {
    context::with(|ctx| ctx.driver.uring().map(f)).flatten()
}

fn block_on<F: Future + 'static>(future: F) -> F::Output
where
    F::Output: 'static,
{
    crate::Builder::new()
        .backend(Backend::IoUring)
        .cores(1)
        .block_on(future)
        .expect("the runtime failed to start")
}

#[test]
fn fifty_successive_runtimes_each_register_their_ring() {
    for round in 0..50 {
        let registered = block_on(async { with_ring(UringDriver::ring_fd_registered) });
        match registered {
            None => return, // COREIO_BACKEND=epoll
            // Without unregistering at shutdown, the 17th ring would find the thread's 16
            // registration slots taken by the rings before it.
            Some(registered) => assert!(registered, "runtime {round} could not register its ring"),
        }
    }
}

/// A receive buffer that records whether it was freed.
struct WatchedBuf {
    vec: Vec<u8>,
    freed: Rc<Cell<bool>>,
}

impl Drop for WatchedBuf {
    fn drop(&mut self) {
        self.freed.set(true);
    }
}

// SAFETY: the bytes live in the Vec's heap allocation; `len` of them are initialised.
unsafe impl IoBuf for WatchedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.vec.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.vec.len()
    }
    fn bytes_total(&self) -> usize {
        self.vec.capacity()
    }
}

// SAFETY: the Vec's whole capacity is writable; `set_init` counts what the kernel wrote.
unsafe impl IoBufMut for WatchedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.vec.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: the caller guarantees `pos` bytes were written, within the capacity.
        unsafe { self.vec.set_len(pos) };
    }
}

type Read = Pin<Box<dyn Future<Output = (std::io::Result<usize>, WatchedBuf)>>>;

#[test]
fn a_read_whose_ring_gave_up_waiting_never_hands_its_buffer_back() {
    let freed = Rc::new(Cell::new(false));
    let watched = WatchedBuf {
        vec: Vec::with_capacity(16),
        freed: freed.clone(),
    };
    let read: Option<Read> = block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut read: Read = Box::pin(async move { server.read(watched).await });
        let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
        assert!(first.is_pending());
        // The read is in the kernel after one park; then the ring shuts down without waiting,
        // as if the kernel had not finished within the grace period.
        crate::yield_now().await;
        with_ring(|ring| drop(ring.shutdown_within(Duration::ZERO)))?;
        std::mem::forget(client);
        Some(read)
    });
    let Some(mut read) = read else {
        return; // COREIO_BACKEND=epoll
    };
    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read.as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }));
    let payload = polled.expect_err("the read must not complete: its buffer may be the kernel's");
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(
        message.contains("polled outside the runtime that started it"),
        "unexpected panic: {message}"
    );
    drop(read);
    assert!(!freed.get(), "a buffer the kernel may still own was freed");
}

#[test]
fn a_completion_carries_its_cqe_flags() {
    use std::os::fd::OwnedFd;

    use crate::driver::{Op, SharedFd};
    use crate::net::ops::StreamRecv;

    let flags = block_on(async {
        with_ring(|_| ())?; // None under COREIO_BACKEND=epoll
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        std::io::Write::write_all(&mut &a, b"0123456789").unwrap();
        let socket = SharedFd::new(OwnedFd::from(b)).unwrap();
        // Half of what is queued: the kernel says more is left (IORING_CQE_F_SOCK_NONEMPTY).
        let recv = StreamRecv::new(socket.clone(), Vec::with_capacity(5));
        let completion = Op::new(recv).await;
        assert_eq!(completion.result.unwrap(), 5);
        Some(completion.flags)
    });
    if let Some(flags) = flags {
        assert!(io_uring::cqueue::sock_nonempty(flags), "flags {flags:#x}");
    }
}

/// The streaming lifecycle as a model: random completion sequences (items, then the terminal
/// one), the future taking some and dropping the stream at a random point, and the checks
/// the issue names: every completion is either taken by the future or released exactly once
/// by the orphan, in order, and the data is dropped exactly once, after the terminal
/// completion. The completions are fed to `complete_op` as the reap would, without a kernel.
#[test]
fn the_streaming_lifecycle_holds_against_random_completion_orders() {
    use io_uring::{opcode, squeue};

    /// `IORING_CQE_F_MORE`: more completions follow.
    const F_MORE: u32 = 1 << 1;

    use super::stream::Stream;
    use super::{Lifecycle, complete_op};
    use crate::driver::{Cqe, Direction, Operation, SharedFd, Source, StreamOperation};

    /// What the model observed.
    #[derive(Default)]
    struct Seen {
        released: Vec<i32>,
        dropped: u32,
        dropped_after_terminal: bool,
        terminal_seen: bool,
    }

    struct Model {
        fd: SharedFd,
        seen: Rc<std::cell::RefCell<Seen>>,
    }

    impl Drop for Model {
        fn drop(&mut self) {
            let mut seen = self.seen.borrow_mut();
            seen.dropped += 1;
            seen.dropped_after_terminal = seen.terminal_seen;
        }
    }

    // SAFETY: the model's entry is a NOP, which points to no memory (it is never submitted).
    unsafe impl Operation for Model {
        fn uring_entry(&mut self) -> squeue::Entry {
            opcode::Nop::new().build()
        }
        fn source(&self) -> Source<'_> {
            Source::Readiness(&self.fd, Direction::Read)
        }
        fn epoll_attempt(&mut self) -> std::io::Result<u32> {
            Err(std::io::ErrorKind::Unsupported.into())
        }
    }

    // SAFETY: as above.
    unsafe impl StreamOperation for Model {
        const QUEUE_LIMIT: usize = 3;
        fn orphan_item(&mut self, cqe: Cqe) {
            let mut seen = self.seen.borrow_mut();
            seen.released.push(cqe.result);
            seen.terminal_seen |= !cqe.more();
        }
    }

    /// What a live future does when polled: takes every queued completion, and the end.
    fn take_all(
        driver: &UringDriver,
        key: usize,
        cx: &mut Context<'_>,
        taken: &mut Vec<i32>,
        ended: &mut bool,
    ) {
        loop {
            match driver.poll_stream(key, cx) {
                Poll::Ready(Some(cqe)) => taken.push(cqe.result),
                Poll::Ready(None) => {
                    *ended = true;
                    return;
                }
                Poll::Pending => return,
            }
        }
    }

    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % bound
    };
    // On epoll (COREIO_BACKEND overrides the builder) there is no ring: nothing to run.
    block_on(async move {
        with_ring(|driver| {
            for round in 0..2000 {
                let items = next(12) as i32;
                // Index of the completion before which the stream is dropped; past the end:
                // never (the future takes the terminal one itself).
                let drop_before = next(items as u64 + 3) as i32;
                let seen = Rc::new(std::cell::RefCell::new(Seen::default()));
                let eventfd = crate::sys::eventfd().unwrap();
                let mut data = Some(Model {
                    fd: SharedFd::new(eventfd).unwrap(),
                    seen: Rc::clone(&seen),
                });
                let key = driver
                    .inner
                    .borrow_mut()
                    .ops
                    .insert(Lifecycle::Streaming(Box::new(Stream::new(
                        Model::QUEUE_LIMIT,
                    ))));
                let mut taken = Vec::new();
                // The future saw the end (`poll_stream` gave `None` and freed the slot).
                let mut ended = false;
                let waker = Waker::noop();
                let mut cx = Context::from_waker(waker);
                for index in 0..=items {
                    if index == drop_before
                        && let Some(data) = data.take()
                    {
                        driver.abandon_stream(key, data);
                    }
                    let more = index < items;
                    let cqe = Cqe {
                        result: index,
                        flags: if more { F_MORE } else { 0 },
                    };
                    {
                        let mut inner = driver.inner.borrow_mut();
                        let inner = &mut *inner;
                        complete_op(
                            &mut inner.ops,
                            &mut inner.deferred,
                            &mut inner.to_cancel,
                            inner.files.as_mut(),
                            key,
                            cqe,
                        );
                    }
                    // The future, while alive, takes what is queued now and then.
                    if data.is_some() && next(2) == 0 {
                        take_all(driver, key, &mut cx, &mut taken, &mut ended);
                    }
                }
                if data.is_some() {
                    // Alive to the end: it takes the rest and sees the end.
                    if !ended {
                        take_all(driver, key, &mut cx, &mut taken, &mut ended);
                    }
                    assert!(ended, "round {round}: the end never came");
                    drop(data.take());
                }
                assert!(driver.run_deferred().is_none());
                let seen = seen.borrow();
                let mut all: Vec<i32> = taken.clone();
                all.extend(&seen.released);
                let expected: Vec<i32> = (0..=items).collect();
                assert_eq!(
                    all, expected,
                    "round {round}: taken {taken:?}, released {:?}",
                    seen.released
                );
                assert_eq!(
                    seen.dropped, 1,
                    "round {round}: data dropped {} times",
                    seen.dropped
                );
                if !seen.released.is_empty() {
                    assert!(
                        seen.dropped_after_terminal,
                        "round {round}: data dropped early"
                    );
                }
                assert!(
                    !driver.inner.borrow().ops.contains(key),
                    "round {round}: slot kept"
                );
                // The limit's cancellations are for the kernel, which never saw these.
                driver.inner.borrow_mut().to_cancel.clear();
            }
        })
    });
}
