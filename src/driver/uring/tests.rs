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
