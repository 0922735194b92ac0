//! Panics that unwind out of a core's loop (a user waker woken by the timer wheel or the driver,
//! a buffer whose `Drop` panics when the driver frees it as orphan data, a mailbox job whose
//! `Drop` panics when a stopping core discards it): the core still shuts its driver down before
//! it reports `CoreError::Panicked`, so the kernel never writes into memory the runtime freed.

#[macro_use]
mod util;

use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener as StdListener, TcpStream as StdStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use coreio::buf::{IoBuf, IoBufMut};
use coreio::net::TcpStream;
use coreio::{Builder, CoreError};

/// Bytes a fresh `MarkedBuf` holds, so a write by the kernel is visible.
const FILL: u8 = 0xAA;
const MARKED_LEN: usize = 64;

/// What a `MarkedBuf` records when it is dropped: the bytes of its memory at that moment. The
/// memory itself is leaked, so reading it afterwards (and a late kernel write into it) is never
/// undefined behaviour; the test compares it with this snapshot.
#[derive(Default)]
struct Marker {
    at_drop: Mutex<Option<Vec<u8>>>,
}

/// A receive buffer over leaked memory whose `Drop` takes a snapshot of it.
struct MarkedBuf {
    memory: &'static mut [u8],
    len: usize,
    marker: Arc<Marker>,
}

impl MarkedBuf {
    fn new(marker: &Arc<Marker>) -> (MarkedBuf, *const u8) {
        let memory: &'static mut [u8] = Box::leak(vec![FILL; MARKED_LEN].into_boxed_slice());
        let ptr = memory.as_ptr();
        (
            MarkedBuf {
                memory,
                len: 0,
                marker: marker.clone(),
            },
            ptr,
        )
    }
}

impl Drop for MarkedBuf {
    fn drop(&mut self) {
        *self.marker.at_drop.lock().unwrap() = Some(self.memory.to_vec());
    }
}

// SAFETY: the memory is leaked, so it never moves or goes away; `len` bytes are initialised.
unsafe impl IoBuf for MarkedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.memory.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.memory.len()
    }
}

// SAFETY: all of the leaked memory is writable; `set_init` only records what the kernel wrote.
unsafe impl IoBufMut for MarkedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.memory.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        self.len = pos;
    }
}

/// A waker that panics when woken, as a buggy user combinator's might.
struct PanickingWaker(&'static str);

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("{}", self.0);
    }
}

/// Polls `future` once with `waker`.
fn poll_once_with<F: Future + ?Sized>(future: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(waker))
}

/// A future that is `Pending` on its first poll only.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    let mut future = Some(future);
    std::future::poll_fn(move |cx| {
        let f = future.take().expect("polled once");
        Poll::Ready(Pin::new(f).poll(cx))
    })
    .await
}

/// A connected loopback pair of std sockets: `(client, server)`.
fn std_pair() -> (StdStream, StdStream) {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let client = StdStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

both_backends! {
    /// A read is in the kernel, its future is dropped (the cancellation is queued but not yet
    /// submitted), and a waker the timer wheel fires panics before the next submission. Today
    /// the ring and the operation slab would be dropped with the read still armed, and data the
    /// peer writes afterwards would land in the freed buffer (when the thread's io_uring
    /// context next runs its work, at the latest when the thread exits).
    fn a_panic_out_of_the_loop_never_leaves_a_dropped_buffer_to_the_kernel(backend: Backend) {
        let (mut client, server) = std_pair();
        let marker = Arc::new(Marker::default());
        let (buf, memory) = MarkedBuf::new(&marker);
        let memory = memory as usize;
        let (panicked_tx, panicked_rx) = mpsc::channel();
        let (written_tx, written_rx) = mpsc::channel::<()>();
        // Its own thread: the thread's io_uring context (which holds the ring's registered fd)
        // goes away when the thread exits, and whatever the kernel still does for the old ring
        // it does by then.
        let core = std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Builder::new().backend(backend).block_on(async move {
                    util::assert_backend(backend);
                    let stream = TcpStream::from_std(server).unwrap();
                    let mut read = Box::pin(stream.read(buf));
                    assert!(poll_once(&mut read).await.is_pending());
                    // Let the core park once, which hands the read to the kernel.
                    coreio::time::sleep(Duration::from_millis(2)).await;
                    // A timer whose waker panics, due by the time this task yields.
                    let waker = Waker::from(Arc::new(PanickingWaker("waker bomb")));
                    let mut bomb = Box::pin(coreio::time::sleep(Duration::from_millis(1)));
                    assert!(poll_once_with(bomb.as_mut(), &waker).is_pending());
                    std::thread::sleep(Duration::from_millis(3));
                    drop(read);
                    std::future::pending::<()>().await;
                })
            }));
            let message = match outcome {
                Ok(_) => "no panic".to_string(),
                Err(payload) => util::panic_message(&*payload).to_string(),
            };
            panicked_tx.send(message).unwrap();
            // Keep the thread (and so its io_uring context) alive until the peer has written.
            written_rx.recv().unwrap();
        });
        let message = panicked_rx.recv().unwrap();
        assert!(message.contains("waker bomb"), "block_on gave: {message}");
        // The runtime is gone and so is its descriptor of the server socket. A receive still
        // armed in the kernel would hold the socket open: the client would see no end of
        // stream (the read below would time out). Once every operation has ended, it sees one.
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut byte = [0u8; 1];
        match client.read(&mut byte) {
            Ok(0) => {}
            other => panic!(
                "expected the server socket to be closed after the panic, got {other:?}: an \
                 operation of the dead runtime still holds it"
            ),
        }
        client.write_all(&[0x55; MARKED_LEN]).unwrap();
        written_tx.send(()).unwrap();
        core.join().unwrap();
        let at_drop = marker
            .at_drop
            .lock()
            .unwrap()
            .clone()
            .expect("the runtime never dropped the buffer of the dropped read");
        // SAFETY: `memory` points to MARKED_LEN bytes that were leaked, so they are still
        // allocated; nothing writes them any more (the runtime and its thread are gone).
        let now = unsafe { std::slice::from_raw_parts(memory as *const u8, MARKED_LEN) };
        assert_eq!(now, &at_drop[..], "the kernel wrote into the buffer after it was dropped");
    }

    /// A waker the driver wakes (a read polled with a user's waker) panics: the core reports
    /// `Panicked` with its message, and the other core of the runtime finishes normally.
    fn a_panicking_waker_woken_by_the_driver_is_reported_as_the_cores_panic(backend: Backend) {
        let cores = util::two_or_fewer_cores();
        let rt = Builder::new().backend(backend).cores(cores).build().unwrap();
        let first = rt.cores()[0];
        let results = rt.run(|core| async move {
            if core != first {
                return "other core done";
            }
            let (client, server) = util::pair().await;
            let mut read = Box::pin(server.read(Vec::with_capacity(8)));
            let waker = Waker::from(Arc::new(PanickingWaker("driver woke a bomb")));
            assert!(poll_once_with(read.as_mut(), &waker).is_pending());
            let (res, _) = client.write_all(b"wake".to_vec()).await;
            res.unwrap();
            // On epoll the readiness event wakes the bomb; on io_uring the completion does.
            loop {
                coreio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        match &results[0] {
            Err(err @ CoreError::Panicked { .. }) => {
                assert_eq!(err.panic_message(), Some("driver woke a bomb"));
            }
            other => panic!("expected the first core to panic, got {other:?}"),
        }
        for result in &results[1..] {
            assert_eq!(result.as_ref().unwrap(), &"other core done");
        }
    }
}

thread_local! {
    /// A stream that `ClosingWaker` drops when it is woken.
    static TO_CLOSE: std::cell::RefCell<Option<TcpStream>> = const { std::cell::RefCell::new(None) };
}

/// A waker that, when woken, drops the stream in `TO_CLOSE`: user code that calls back into
/// the driver (a socket's close deregisters it on epoll) from inside a wake.
struct ClosingWaker(Waker);

impl Wake for ClosingWaker {
    fn wake(self: Arc<Self>) {
        TO_CLOSE.with(|stream| drop(stream.borrow_mut().take()));
        self.0.wake_by_ref();
    }
}

both_backends! {
    /// The driver wakes a waker that closes a socket of the same core: the driver is not
    /// borrowed at that moment, the socket closes, and the core carries on.
    fn a_waker_that_calls_into_the_driver_is_fine(backend: Backend) {
        let closed = util::block_on(backend, async move {
            let (client, server) = util::pair().await;
            let (other_client, other_server) = util::pair().await;
            TO_CLOSE.with(|slot| *slot.borrow_mut() = Some(other_server));
            let mut read = Box::pin(server.read(Vec::with_capacity(8)));
            let task_waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
            let waker = Waker::from(Arc::new(ClosingWaker(task_waker)));
            assert!(poll_once_with(read.as_mut(), &waker).is_pending());
            let (res, _) = client.write_all(b"wake".to_vec()).await;
            res.unwrap();
            // The driver wakes the closing waker (on epoll: the readable event; on io_uring:
            // the completion) the next time the core parks.
            let woken = util::wait_until(1000, || TO_CLOSE.with(|slot| slot.borrow().is_none()));
            assert!(woken.await, "the driver never woke the read's waker");
            let (res, buf) = read.await;
            assert_eq!(res.unwrap(), 4);
            assert_eq!(buf, b"wake");
            // The waker closed the other server socket: its peer reads the end of stream.
            let (res, _) = other_client.read(Vec::with_capacity(8)).await;
            res.unwrap()
        });
        assert_eq!(closed, 0);
        assert!(TO_CLOSE.with(|slot| slot.borrow().is_none()));
    }
}

/// A receive buffer that raises `freed` when it is dropped.
fn flag_buf(capacity: usize, freed: Arc<AtomicBool>) -> util::DropHookBuf {
    util::DropHookBuf::new(capacity, move || freed.store(true, Ordering::SeqCst))
}

both_backends! {
    /// A dropped read's buffer panics in `Drop` when the driver frees it (io_uring: at the
    /// cancellation's completion; epoll: at once, in the dropping task). The core reports the
    /// panic, and a second dropped read's buffer, freed in the same batch, is freed too.
    fn a_buffer_whose_drop_panics_is_reported_and_its_neighbours_are_freed(backend: Backend) {
        let freed = Arc::new(AtomicBool::new(false));
        let freed_in_core = freed.clone();
        let rt = Builder::new().backend(backend).cores(1).build().unwrap();
        let results = rt.run(move |_| {
            let freed = freed_in_core.clone();
            async move {
                let (_client, server) = util::pair().await;
                let bomb = util::DropHookBuf::new(8, || panic!("buffer drop bomb"));
                let mut first = Box::pin(server.read(bomb));
                assert!(poll_once(&mut first).await.is_pending());
                let watched = flag_buf(8, freed);
                let mut second = Box::pin(server.read(watched));
                assert!(poll_once(&mut second).await.is_pending());
                coreio::time::sleep(Duration::from_millis(2)).await;
                drop(first);
                drop(second);
                loop {
                    coreio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        match &results[0] {
            Err(err @ CoreError::Panicked { .. }) => {
                assert_eq!(err.panic_message(), Some("buffer drop bomb"));
            }
            other => panic!("expected the core to panic, got {other:?}"),
        }
        assert!(freed.load(Ordering::SeqCst), "the second buffer was never freed");
    }

    /// A buffer whose `Drop` calls into the driver (it drops another in-flight read) while the
    /// driver frees it as orphan data: no `RefCell` panic, and both buffers are freed.
    fn a_buffer_whose_drop_reenters_the_driver_is_fine(backend: Backend) {
        let freed = Arc::new(AtomicBool::new(false));
        let freed_in_core = freed.clone();
        let output = util::block_on(backend, async move {
            let (_client_a, server_a) = util::pair().await;
            let (_client_b, server_b) = util::pair().await;
            let watched = flag_buf(8, freed_in_core);
            let mut inner: Pin<Box<dyn Future<Output = ()>>> = Box::pin(async move {
                let _ = server_b.read(watched).await;
            });
            assert!(poll_once(&mut inner).await.is_pending());
            // Its `Drop` drops another read still in the driver: the driver takes over that
            // read's buffer, a call into the driver from inside a buffer's `Drop`.
            let reentrant = util::DropHookBuf::new(8, move || drop(inner));
            let mut outer = Box::pin(server_a.read(reentrant));
            assert!(poll_once(&mut outer).await.is_pending());
            coreio::time::sleep(Duration::from_millis(2)).await;
            drop(outer);
            // Both reads' cancellations complete within a few passes of the loop.
            for _ in 0..100 {
                coreio::time::sleep(Duration::from_millis(1)).await;
            }
            "survived"
        });
        assert_eq!(output, "survived");
        assert!(freed.load(Ordering::SeqCst), "the inner read's buffer was never freed");
    }

    /// A `submit_to` closure whose captured value panics in `Drop`, still queued when its target
    /// core stops: the target reports the panic (after shutting its driver down), and the
    /// sender sees `CoreStopped` instead of waiting forever.
    fn a_mailbox_job_whose_drop_panics_at_shutdown_is_reported(backend: Backend) {
        if util::two_or_fewer_cores() < 2 {
            return; // needs a second core to post from
        }
        struct PanicOnDrop;
        impl Drop for PanicOnDrop {
            fn drop(&mut self) {
                panic!("job drop bomb");
            }
        }
        let rt = Builder::new().backend(backend).cores(2).build().unwrap();
        let second = rt.cores()[1];
        let posted = Arc::new(AtomicUsize::new(0));
        // The second core tells the first when it is inside its root's first poll (past its
        // first look at the mailbox), then waits there until the first core has posted.
        let (polling_tx, polling_rx) = mpsc::channel::<()>();
        let (posted_tx, posted_rx) = mpsc::channel::<()>();
        let polling_rx = Arc::new(Mutex::new(polling_rx));
        let posted_rx = Arc::new(Mutex::new(posted_rx));
        let results = rt.run(|core| {
            let posted = posted.clone();
            let polling_tx = polling_tx.clone();
            let posted_tx = posted_tx.clone();
            let polling_rx = polling_rx.clone();
            let posted_rx = posted_rx.clone();
            async move {
                if core == second {
                    polling_tx.send(()).unwrap();
                    // Blocks the core until the job is queued, then finishes without serving
                    // the mailbox again: the job is dropped by the core's shutdown.
                    posted_rx.lock().unwrap().recv().unwrap();
                    return "stopped";
                }
                polling_rx.lock().unwrap().recv().unwrap();
                let bomb = PanicOnDrop;
                let submission = coreio::mesh::submit_to(second, move || {
                    let _bomb = &bomb;
                    async {}
                });
                posted.fetch_add(1, Ordering::SeqCst);
                posted_tx.send(()).unwrap();
                match submission.await {
                    Err(coreio::mesh::MailboxError::CoreStopped(core)) => {
                        assert_eq!(core, second);
                    }
                    other => panic!("expected CoreStopped, got {other:?}"),
                }
                "sender done"
            }
        });
        assert_eq!(posted.load(Ordering::SeqCst), 1);
        assert_eq!(results[0].as_ref().unwrap(), &"sender done");
        match &results[1] {
            Err(err @ CoreError::Panicked { .. }) => {
                assert_eq!(err.panic_message(), Some("job drop bomb"));
            }
            other => panic!("expected the stopped core to report the drop's panic, got {other:?}"),
        }
    }
}
