//! Descriptor accounting: connections dropped in every state (idle, with a read in flight,
//! with a read aborted, left running at shutdown) close their sockets, on both backends; so do
//! streams and listeners dropped while they hold what dropped reads and accepts took.
//!
//! The count of `/proc/self/fd` is process-wide, so this binary holds a single test (no other
//! test can open descriptors concurrently), which runs both backends one after the other.

#[macro_use]
mod util;

use std::future::Future;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Waker};
use std::time::Duration;

use coreio::net::TcpListener;
use coreio::time::{sleep, timeout};
use coreio::{Backend, Builder};

use util::open_fds;

fn connections_dropped_in_every_state(backend: Backend) {
    let outside = open_fds();
    let (inside_before, inside_after) = Builder::new()
        .backend(backend)
        .block_on(async move {
            util::assert_backend(backend);
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            // Warm up whatever grows on first use, then take the baseline.
            drop(util::pair_on(&listener).await);
            for _ in 0..5 {
                coreio::yield_now().await;
            }
            sleep(Duration::from_millis(2)).await;
            let before = open_fds();
            for i in 0..100 {
                let (client, server) = util::pair_on(&listener).await;
                match i % 4 {
                    // Idle.
                    0 => drop((client, server)),
                    // A read in flight, cut off by a timeout that owns the stream.
                    1 => {
                        let res = timeout(Duration::from_micros(500), async move {
                            let _ = client.read(Vec::with_capacity(128)).await;
                        })
                        .await;
                        assert!(res.is_err());
                        drop(server);
                    }
                    // A read in flight in a task that is aborted.
                    2 => {
                        let task = coreio::spawn(async move {
                            let _ = client.read(Vec::with_capacity(128)).await;
                        });
                        coreio::yield_now().await;
                        task.abort();
                        drop(server);
                    }
                    // Both sides reading when the stream is dropped from under the read
                    // (the read holds the socket until it is cancelled).
                    _ => {
                        let client = Rc::new(client);
                        let c = client.clone();
                        let task = coreio::spawn(async move {
                            let _ = c.read(Vec::with_capacity(128)).await;
                        });
                        coreio::yield_now().await;
                        drop(client);
                        drop(server);
                        // The peer's close ends the read: the task finishes on its own.
                        timeout(Duration::from_secs(20), task)
                            .await
                            .expect("a read on a closed connection never finished")
                            .unwrap();
                    }
                }
            }
            let after = util::fds_settle_to(before).await;
            // Leave operations in flight for the shutdown to clean up.
            for _ in 0..10 {
                let (client, server) = util::pair_on(&listener).await;
                coreio::spawn(async move {
                    let _server = server;
                    let _ = client.read(Vec::with_capacity(128)).await;
                });
            }
            let listener = Rc::new(listener);
            coreio::spawn(async move {
                let _ = listener.accept().await;
            });
            sleep(Duration::from_millis(1)).await;
            (before, after)
        })
        .unwrap();
    assert_eq!(
        inside_after, inside_before,
        "{backend}: dropped connections left descriptors open"
    );
    assert_eq!(
        open_fds(),
        outside,
        "{backend}: the runtime left descriptors open after it ended"
    );
}

/// Lets the core reap (bounded) until `done()`, which must come true on io_uring; on epoll a
/// dropped operation takes nothing, so there is nothing to wait for.
async fn taken(what: &str, done: impl FnMut() -> bool) {
    if coreio::backend() != Some(Backend::IoUring) {
        return;
    }
    assert!(
        util::wait_until(4000, done).await,
        "io_uring: {what} never happened"
    );
    sleep(Duration::from_millis(1)).await;
}

/// A listener dropped while it holds a connection a dropped accept took, and a stream dropped
/// while it holds bytes a dropped read took: the held connection is closed with the listener,
/// and nothing else stays open either.
fn holders_dropped_with_what_they_hold(backend: Backend) {
    let outside = open_fds();
    let (inside_before, inside_after) = Builder::new()
        .backend(backend)
        .block_on(async move {
            util::assert_backend(backend);
            drop(util::pair().await);
            sleep(Duration::from_millis(2)).await;
            let before = open_fds();
            for _ in 0..20 {
                let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let fd = listener.as_raw_fd();
                coreio::yield_now().await;
                let client = {
                    let mut accept = pin!(listener.accept());
                    let mut cx = Context::from_waker(Waker::noop());
                    assert!(accept.as_mut().poll(&mut cx).is_pending());
                    let client = std::net::TcpStream::connect(listener.local_addr().unwrap());
                    taken("the accept taking the connection", || !util::acceptable(fd)).await;
                    client.unwrap()
                };
                let (reader, writer) = util::pair().await;
                coreio::yield_now().await;
                {
                    let mut read = pin!(reader.read(Vec::with_capacity(4096)));
                    let mut cx = Context::from_waker(Waker::noop());
                    assert!(read.as_mut().poll(&mut cx).is_pending());
                    let (res, _) = writer.write_all(vec![7; 100]).await;
                    res.unwrap();
                    let fd = reader.as_raw_fd();
                    taken("the read taking the bytes", || util::queued(fd) == 0).await;
                }
                drop((listener, client, reader, writer));
            }
            (before, util::fds_settle_to(before).await)
        })
        .unwrap();
    assert_eq!(
        inside_after, inside_before,
        "{backend}: dropped holders left descriptors open"
    );
    assert_eq!(
        open_fds(),
        outside,
        "{backend}: the runtime left descriptors open after it ended"
    );
}

#[test]
fn fd_count_returns_to_baseline() {
    for backend in [Backend::IoUring, Backend::Epoll] {
        connections_dropped_in_every_state(backend);
        holders_dropped_with_what_they_hold(backend);
    }
}
