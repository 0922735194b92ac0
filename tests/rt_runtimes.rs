//! Several runtimes on one thread, in turn or nested (`block_on` in a loop, `block_on` inside a
//! task): each keeps to its own driver. A socket or an operation carried from one runtime into
//! another gets a clear error or panic naming the misuse, never another runtime's slot; an
//! operation that outlived its runtime gives its buffer back only once the kernel is done with
//! it; and runtime after runtime leaves nothing behind.

#[macro_use]
mod util;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use coreio::Backend;
use coreio::net::TcpStream;

type Read = Pin<Box<dyn Future<Output = (io::Result<usize>, Vec<u8>)>>>;

/// A read of `stream` into a fresh 16-byte buffer, boxed so it can outlive the runtime.
fn boxed_read(stream: TcpStream) -> Read {
    Box::pin(async move { stream.read(Vec::with_capacity(16)).await })
}

/// Polls `future` once, with a waker that does nothing.
fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// Polls `future` once from inside a task, with the task's waker.
async fn poll_once_here<F: Future + ?Sized>(mut future: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(move |cx| Poll::Ready(future.as_mut().poll(cx))).await
}

both_backends! {
    /// Sockets made under one `block_on` and used under the next: every operation on them is
    /// an error naming the misuse, and dropping them there leaves the second runtime's own
    /// sockets working (on epoll their registration tokens would otherwise name the second
    /// runtime's sockets).
    fn a_socket_from_an_earlier_runtime_is_refused_and_harmless(backend: Backend) {
        let (old_client, old_server) = util::block_on(backend, util::pair());
        util::block_on(backend, async move {
            let (client, server) = util::pair().await;
            let (res, buf) = old_server.read(Vec::with_capacity(8)).await;
            let err = res.expect_err("a read on another runtime's socket must fail");
            assert!(
                err.to_string().contains("another coreio runtime"),
                "unexpected error: {err}"
            );
            assert_eq!(buf.capacity(), 8, "the buffer comes back");
            let (res, _) = old_client.write_all(b"x".to_vec()).await;
            assert!(res.is_err(), "a write on another runtime's socket must fail");
            drop(old_client);
            drop(old_server);
            // This runtime's own sockets are unaffected by the drops.
            let (res, _) = client.write_all(b"ping".to_vec()).await;
            res.unwrap();
            let (res, buf) = server.read(Vec::with_capacity(8)).await;
            assert_eq!(res.unwrap(), 4);
            assert_eq!(buf, b"ping");
        });
    }

    /// A read started under one runtime and polled under a runtime nested inside it: the
    /// first runtime's kernel may still write into the buffer, so it is never handed out. On
    /// io_uring (the read is in the outer ring) the poll panics with a message naming the
    /// misuse; on epoll (nothing is in flight between polls) the read fails with an error.
    fn a_read_polled_under_a_nested_runtime_names_the_misuse(backend: Backend) {
        util::block_on(backend, async move {
            let (_client, server) = util::pair().await;
            let mut read = boxed_read(server);
            assert!(poll_once_here(read.as_mut()).await.is_pending());
            let inner = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                coreio::Builder::new()
                    .backend(backend)
                    .block_on(read)
            }));
            match (coreio::backend().unwrap(), inner) {
                (Backend::IoUring, Err(payload)) => {
                    let message = util::panic_message(&*payload);
                    assert!(
                        message.contains("polled outside the runtime that started it"),
                        "unexpected panic: {message}"
                    );
                }
                (Backend::Epoll, Ok(Ok((res, buf)))) => {
                    let err = res.expect_err("the read must fail under the nested runtime");
                    assert!(err.to_string().contains("another coreio runtime"), "{err}");
                    assert_eq!(buf.capacity(), 16);
                }
                (backend, Ok(_)) => panic!("{backend}: expected the misuse to be reported"),
                (backend, Err(payload)) => {
                    panic!("{backend}: unexpected panic {}", util::panic_message(&*payload))
                }
            }
        });
    }

    /// A read in flight when its runtime ends, polled afterwards: the runtime's shutdown
    /// cancelled it and saw its last completion, so the buffer comes back, with an error
    /// saying the runtime is gone (polled outside any runtime, and under a later one).
    fn a_read_that_outlived_its_runtime_gives_its_buffer_back(backend: Backend) {
        let mut reads = util::block_on(backend, async {
            let mut reads = Vec::new();
            for _ in 0..2 {
                let (client, server) = util::pair().await;
                std::mem::forget(client); // keep the connection open, and silent
                let mut read = boxed_read(server);
                assert!(poll_once_here(read.as_mut()).await.is_pending());
                reads.push(read);
            }
            // Let the core park once, so the reads are in the kernel on io_uring.
            coreio::yield_now().await;
            reads
        });
        let later = reads.pop().unwrap();
        let outside = reads.pop().unwrap();
        let check = |polled: Poll<(io::Result<usize>, Vec<u8>)>| {
            let Poll::Ready((res, buf)) = polled else {
                panic!("a read whose runtime is gone must not stay pending");
            };
            let err = res.expect_err("a read whose runtime is gone must fail");
            let message = err.to_string();
            assert!(
                message.contains("has shut down")
                    || message.contains("no coreio runtime")
                    || message.contains("another coreio runtime"),
                "unexpected error: {message}"
            );
            assert_eq!(buf.capacity(), 16, "the buffer comes back");
        };
        let mut outside = outside;
        check(poll_once(outside.as_mut()));
        let polled = util::block_on(backend, async move {
            let mut later = later;
            poll_once_here(later.as_mut()).await
        });
        check(polled);
    }

    /// Fifty runtimes, one after another on one thread, each doing I/O: every one works, and
    /// none leaves a descriptor behind (each ring, eventfd and socket is closed, and on
    /// io_uring each ring's registration is given back, which the crate's unit tests check).
    fn fifty_successive_runtimes_on_one_thread_leave_nothing_behind(backend: Backend) {
        let before = util::open_fds();
        for round in 0..50u8 {
            let echoed = util::block_on(backend, async move {
                let (client, server) = util::pair().await;
                let (res, _) = client.write_all(vec![round; 4]).await;
                res.unwrap();
                let (res, buf) = server.read(Vec::with_capacity(4)).await;
                assert_eq!(res.unwrap(), 4);
                buf
            });
            assert_eq!(echoed, vec![round; 4]);
        }
        assert_eq!(util::open_fds(), before, "descriptors were left open");
    }
}
