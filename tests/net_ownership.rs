//! Buffer and socket ownership when I/O futures are dropped mid-flight: the runtime keeps a
//! buffer alive while the kernel may use it and releases it afterwards, a dropped stream still
//! closes, and a runtime that ends with operations in flight shuts down cleanly.

#[macro_use]
mod util;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use coreio::buf::IoBuf;
use coreio::net::TcpStream;
use coreio::time::{sleep, timeout};
use coreio::{Backend, Builder};

use util::{block_on, pair};

/// A buffer whose liveness the test can watch: every clone of `token` is one owner, and the
/// buffer holds one, so `Arc::strong_count(&token) == 1` means the buffer was dropped.
fn tracked_buf(capacity: usize, token: &Arc<()>) -> util::DropHookBuf {
    let token = token.clone();
    util::DropHookBuf::new(capacity, move || drop(token))
}

/// Keeps `peer` writing while waiting (bounded) for `token` to have no other owner.
async fn released_while_peer_writes(token: &Arc<()>, peer: &TcpStream) -> bool {
    for _ in 0..2000 {
        if Arc::strong_count(token) == 1 {
            return true;
        }
        let (res, _) = peer.write(vec![0x5A; 512]).await;
        res.unwrap();
        sleep(Duration::from_millis(1)).await;
    }
    Arc::strong_count(token) == 1
}

/// A round trip over a fresh pair: the core still does I/O.
async fn core_still_works() {
    let (a, b) = pair().await;
    let (res, _) = a.write_all(&b"still alive"[..]).await;
    res.unwrap();
    let (res, buf) = b.read_exact(Vec::with_capacity(11)).await;
    res.unwrap();
    assert_eq!(buf, b"still alive");
}

both_backends! {
    fn timed_out_read_releases_its_buffer(backend: Backend) {
        block_on(backend, async move {
            let (client, server) = pair().await;
            let token = Arc::new(());
            let buf = tracked_buf(4096, &token);
            assert_eq!(Arc::strong_count(&token), 2);
            // The peer is silent: the read is in flight when the timeout drops it.
            let res = timeout(Duration::from_millis(2), client.read(buf)).await;
            assert!(res.is_err(), "the read completed without data");
            if coreio::backend() == Some(Backend::IoUring) {
                // The kernel may still write into the buffer until the cancellation completes,
                // so the runtime must still hold it.
                assert_eq!(
                    Arc::strong_count(&token),
                    2,
                    "io_uring: the buffer was freed before the kernel released it"
                );
            } else {
                assert_eq!(Arc::strong_count(&token), 1, "epoll: the buffer is dropped at once");
            }
            assert!(
                released_while_peer_writes(&token, &server).await,
                "the buffer of a dropped read was never released"
            );
            // The stream is still usable: what the peer writes arrives.
            let (res, _) = server.write_all(vec![0x5A; 100]).await;
            res.unwrap();
            let (res, buf) = client.read(Vec::with_capacity(64 * 1024)).await;
            assert!(res.unwrap() > 0);
            assert!(buf.iter().all(|&b| b == 0x5A));
            core_still_works().await;
        });
    }

    fn aborted_read_releases_its_buffer(backend: Backend) {
        block_on(backend, async move {
            let (client, server) = pair().await;
            let client = Rc::new(client);
            let token = Arc::new(());
            let buf = tracked_buf(4096, &token);
            let reader = coreio::spawn({
                let client = client.clone();
                async move { client.read(buf).await.0.map(drop) }
            });
            // Let the read reach the kernel.
            for _ in 0..5 {
                coreio::yield_now().await;
            }
            sleep(Duration::from_millis(1)).await;
            assert!(!reader.is_finished());
            reader.abort();
            assert!(reader.await.unwrap_err().is_cancelled());
            assert!(
                released_while_peer_writes(&token, &server).await,
                "the buffer of an aborted read was never released"
            );
            assert_eq!(Rc::strong_count(&client), 1, "the aborted task still holds the stream");
            core_still_works().await;
        });
    }

    fn read_dropped_while_data_arrives(backend: Backend) {
        // Many reads dropped at arbitrary points while the peer writes: every buffer is
        // released and the stream keeps working. (That no byte is lost or reordered is
        // checked in tests/net_cancel.rs.)
        block_on(backend, async move {
            let (client, server) = pair().await;
            let token = Arc::new(());
            let writer = coreio::spawn(async move {
                for i in 0..200u64 {
                    let (res, _) = server.write_all(util::pattern(3, i, 700)).await;
                    res.unwrap();
                    if i % 7 == 0 {
                        sleep(Duration::from_micros(300)).await;
                    } else {
                        coreio::yield_now().await;
                    }
                }
                server
            });
            for round in 0..100u64 {
                let buf = tracked_buf(512, &token);
                let wait = Duration::from_micros(100 + (round % 5) * 400);
                if let Ok((res, buf)) = timeout(wait, client.read(buf)).await {
                    assert_eq!(res.unwrap(), buf.bytes_init());
                }
            }
            let server = writer.await.unwrap();
            drop(server);
            // Drain to EOF: the stream still works after all those cancellations.
            loop {
                let (res, _) = client.read(Vec::with_capacity(8192)).await;
                if res.unwrap() == 0 {
                    break;
                }
            }
            assert!(
                util::wait_until(1000, || Arc::strong_count(&token) == 1).await,
                "{} buffers of dropped reads were never released",
                Arc::strong_count(&token) - 1
            );
        });
    }

    fn dropping_a_stream_with_a_read_in_flight_sends_fin(backend: Backend) {
        block_on(backend, async move {
            // Dropped by abort: the task owns the stream and its in-flight read.
            let (client, server) = pair().await;
            let reader = coreio::spawn(async move {
                let (res, _) = client.read(Vec::with_capacity(64)).await;
                res.map(drop)
            });
            coreio::yield_now().await;
            sleep(Duration::from_millis(1)).await;
            reader.abort();
            let res = timeout(Duration::from_secs(20), server.read(Vec::with_capacity(64))).await;
            let (res, _) = res.expect("the peer never saw the dropped stream close");
            assert_eq!(res.unwrap(), 0, "the peer did not see a FIN");

            // Dropped by a timeout around a future that owns the stream.
            let (client, server) = pair().await;
            let res = timeout(Duration::from_millis(2), async move {
                let (res, _) = client.read(Vec::with_capacity(64)).await;
                res
            })
            .await;
            assert!(res.is_err());
            let res = timeout(Duration::from_secs(20), server.read(Vec::with_capacity(64))).await;
            let (res, _) = res.expect("the peer never saw the dropped stream close");
            assert_eq!(res.unwrap(), 0, "the peer did not see a FIN");
        });
    }

    fn shutdown_with_operations_in_flight(backend: Backend) {
        let token = Arc::new(());
        let t = token.clone();
        let out = block_on(backend, async move {
            let listener = coreio::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let mut peers = Vec::new();
            for _ in 0..20 {
                let (client, server) = util::pair_on(&listener).await;
                let buf = tracked_buf(1024, &t);
                coreio::spawn(async move {
                    let _ = client.read(buf).await;
                });
                peers.push(server);
            }
            // An accept in flight too.
            let listener = Rc::new(listener);
            let l = listener.clone();
            coreio::spawn(async move {
                let _ = l.accept().await;
            });
            // Let every operation reach the kernel, then return with them in flight.
            for _ in 0..5 {
                coreio::yield_now().await;
            }
            sleep(Duration::from_millis(1)).await;
            // 20 buffers, `t` and `token`.
            assert_eq!(Arc::strong_count(&t), 22);
            // The peers stay open (moved into a detached task) so no read completes by EOF.
            coreio::spawn(async move {
                let _peers = peers;
                std::future::pending::<()>().await;
            });
            "returned"
        });
        assert_eq!(out, "returned");
        assert_eq!(
            Arc::strong_count(&token),
            1,
            "buffers of operations in flight at shutdown were leaked"
        );
    }

    fn run_shutdown_with_operations_in_flight(backend: Backend) {
        let n = util::two_or_fewer_cores();
        let token = Arc::new(());
        let rt = Builder::new().backend(backend).cores(n).build().unwrap();
        let outputs = rt.run(|core| {
            let token = token.clone();
            async move {
                let mut peers = Vec::new();
                for _ in 0..10 {
                    let (client, server) = pair().await;
                    let buf = tracked_buf(1024, &token);
                    coreio::spawn(async move {
                        let _ = client.read(buf).await;
                    });
                    peers.push(server);
                }
                sleep(Duration::from_millis(1)).await;
                // Returns with ten reads in flight; the peers stay open until the core ends.
                coreio::spawn(async move {
                    let _peers = peers;
                    std::future::pending::<()>().await;
                });
                core
            }
        });
        assert!(outputs.iter().all(Result::is_ok), "{outputs:?}");
        assert_eq!(Arc::strong_count(&token), 1);
    }
}
