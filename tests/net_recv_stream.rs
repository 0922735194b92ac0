//! Receive streams (`TcpStream::recv_stream`, `UnixStream::recv_stream`): bytes arrive in
//! buffers lent from the core's pool, in order, on three paths — io_uring with a multishot
//! receive over a provided buffer ring, io_uring reading into buffers taken from the pool
//! (`Builder::multishot_recv(false)`, as on a kernel without the ring), and epoll. A pool too
//! small for the data makes receives wait (never lose or reorder bytes); a dropped stream
//! leaves what it took for the next read, on this core or, handed off, on another; a buffer
//! may outlive its runtime.

#[macro_use]
mod util;

use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::Duration;

use coreio::buf::{IoBuf, PooledBuf};
use coreio::net::{TcpStream, UnixStream};
use coreio::time::timeout;
use coreio::{Backend, Builder, mesh};
use futures_lite::StreamExt;

use util::{check_pattern, pair, pattern};

/// Generous bound for waits that only run out when something is broken.
const PATIENCE: Duration = Duration::from_secs(20);

/// How a test's core receives.
#[derive(Clone, Copy, Debug)]
enum Path {
    /// io_uring, multishot receives over the provided buffer ring.
    RingMultishot,
    /// io_uring, receives into buffers taken from the pool's list.
    RingList,
    Epoll,
}

/// A runtime builder on `path`, with `buffers` receive buffers of `size`.
fn builder(path: Path, buffers: u16, size: u32) -> Builder {
    let (backend, multishot) = path.settings();
    Builder::new()
        .backend(backend)
        .multishot_recv(multishot)
        .recv_buffers(buffers, size)
}

impl Path {
    /// The backend and the multishot switch of this path.
    fn settings(self) -> (Backend, bool) {
        match self {
            Path::RingMultishot => (Backend::IoUring, true),
            Path::RingList => (Backend::IoUring, false),
            Path::Epoll => (Backend::Epoll, false),
        }
    }

    /// Whether the current core receives with multishot receives: this path asks for them,
    /// and neither `COREIO_BACKEND` nor `COREIO_MULTISHOT_RECV` overrides that.
    fn multishot_in_effect(self) -> bool {
        self.settings().1
            && util::on_uring()
            && std::env::var("COREIO_MULTISHOT_RECV").map_or(true, |v| v.trim() != "0")
    }
}

/// Runs `future` on a one-core runtime on `path`, with `buffers` receive buffers of `size`.
fn run<F>(path: Path, buffers: u16, size: u32, future: F) -> F::Output
where
    F: std::future::Future + 'static,
    F::Output: 'static,
{
    let (backend, _) = path.settings();
    builder(path, buffers, size)
        .block_on(async move {
            util::assert_backend(backend);
            future.await
        })
        .expect("the runtime failed to start")
}

/// Each test on every receive path.
macro_rules! all_paths {
    ($($fns:tt)*) => {
        each_path! {
            Path;
            [
                io_uring_multishot => Path::RingMultishot,
                io_uring_list => Path::RingList,
                epoll => Path::Epoll,
            ]
            $($fns)*
        }
    };
}

/// Everything `stream`'s receive stream delivers until the end of the stream, checking that no
/// buffer is empty or larger than `size`.
async fn collect(stream: &TcpStream, size: usize) -> Vec<u8> {
    let mut incoming = stream.recv_stream();
    let mut all = Vec::new();
    loop {
        let item = timeout(PATIENCE, incoming.next())
            .await
            .expect("a receive never finished");
        let Some(buf) = item else {
            return all;
        };
        let buf = buf.expect("a receive failed");
        assert!(!buf.is_empty(), "an empty buffer before the end");
        assert!(
            buf.len() <= size,
            "{} bytes in a {size}-byte buffer",
            buf.len()
        );
        assert_eq!(buf.bytes_init(), buf.len());
        all.extend_from_slice(&buf);
    }
}

all_paths! {
    fn every_byte_arrives_in_order_and_the_end_ends_the_stream(path) {
        run(path, 16, 4096, async {
            let (client, server) = pair().await;
            let writer = coreio::spawn(async move {
                for msg in 0..64 {
                    let (res, _) = server.write_all(pattern(7, msg, 3000)).await;
                    res.unwrap();
                }
                server.shutdown(Shutdown::Write).unwrap();
                server
            });
            let all = collect(&client, 4096).await;
            assert_eq!(all.len(), 64 * 3000);
            for (msg, chunk) in all.chunks(3000).enumerate() {
                check_pattern(7, msg as u64, 0, chunk);
            }
            let _server = writer.await.unwrap();
            // Ended streams stay ended.
            let mut incoming = client.recv_stream();
            assert!(incoming.next().await.is_none());
        });
    }

    fn pooled_buffers_are_written_back_as_they_are(path) {
        run(path, 8, 1024, async {
            let (client, server) = pair().await;
            let echo = coreio::spawn(async move {
                let mut incoming = server.recv_stream();
                let mut echoed = 0;
                while let Some(buf) = incoming.next().await {
                    let buf: PooledBuf = buf.unwrap();
                    echoed += buf.len();
                    // The buffer goes out as it came in, then back to the pool.
                    let (res, _) = server.write_all(buf).await;
                    res.unwrap();
                }
                echoed
            });
            let sent = pattern(3, 0, 100_000);
            let ((wrote, _), (read, back)) = futures_lite::future::zip(
                client.write_all(sent),
                client.read_exact(Vec::with_capacity(100_000)),
            )
            .await;
            wrote.unwrap();
            read.unwrap();
            check_pattern(3, 0, 0, &back);
            client.shutdown(Shutdown::Write).unwrap();
            assert_eq!(echo.await.unwrap(), 100_000);
        });
    }

    fn a_pool_lent_out_makes_receives_wait_and_loses_nothing(path) {
        run(path, 4, 256, async {
            let (client, server) = pair().await;
            let mut incoming = client.recv_stream();
            // Take every buffer of the pool and keep them.
            let mut kept = Vec::new();
            let mut total = 0;
            for msg in 0..4 {
                let (res, _) = server.write_all(pattern(1, msg, 256)).await;
                res.unwrap();
                let buf = timeout(PATIENCE, incoming.next()).await.unwrap().unwrap().unwrap();
                total += buf.len();
                kept.push(buf);
            }
            while total < 4 * 256 {
                // Writes may have been split across receives: take the rest (the pool has
                // buffers again only if the receives above took fewer than four).
                let buf = timeout(PATIENCE, incoming.next()).await.unwrap().unwrap().unwrap();
                total += buf.len();
                kept.push(buf);
            }
            // More data while the pool is lent out: no buffer, so nothing is received.
            let (res, _) = server.write_all(pattern(1, 99, 1000)).await;
            res.unwrap();
            if kept.len() >= 4 {
                let waited = timeout(Duration::from_millis(50), incoming.next()).await;
                assert!(waited.is_err(), "a receive without a free buffer");
            }
            let mut received: Vec<u8> = kept.iter().flat_map(|b| b.iter().copied()).collect();
            drop(kept);
            server.shutdown(Shutdown::Write).unwrap();
            // The buffers came back: the waiting receive goes on, in order.
            while let Some(buf) = timeout(PATIENCE, incoming.next()).await.unwrap() {
                received.extend_from_slice(&buf.unwrap());
            }
            assert_eq!(received.len(), 4 * 256 + 1000);
            for (msg, chunk) in received[..1024].chunks(256).enumerate() {
                check_pattern(1, msg as u64, 0, chunk);
            }
            check_pattern(1, 99, 0, &received[1024..]);
        });
    }

    fn many_idle_connections_share_a_few_buffers(path) {
        // 32 connections, each with its receive waiting, and a pool of 4 buffers: a waiting
        // receive holds no buffer, so every connection is served as its data comes.
        run(path, 4, 512, async {
            let mut pairs = Vec::new();
            for _ in 0..32 {
                pairs.push(pair().await);
            }
            let mut readers = Vec::new();
            let mut writers = Vec::new();
            for (index, (client, server)) in pairs.into_iter().enumerate() {
                readers.push(coreio::spawn(async move {
                    let mut incoming = client.recv_stream();
                    let mut all = Vec::new();
                    while let Some(buf) = timeout(PATIENCE, incoming.next()).await.unwrap() {
                        all.extend_from_slice(&buf.unwrap());
                    }
                    check_pattern(index as u64, 0, 0, &all);
                    all.len()
                }));
                writers.push(server);
            }
            // Let every receive arm before any data comes.
            coreio::time::sleep(Duration::from_millis(10)).await;
            for (index, server) in writers.iter().enumerate() {
                let (res, _) = server.write_all(pattern(index as u64, 0, 2000)).await;
                res.unwrap();
                server.shutdown(Shutdown::Write).unwrap();
            }
            for reader in readers {
                assert_eq!(reader.await.unwrap(), 2000);
            }
        });
    }

    fn a_dropped_receive_stream_leaves_its_bytes_for_the_next_read(path) {
        run(path, 8, 4096, async {
            let (client, server) = pair().await;
            {
                let mut incoming = client.recv_stream();
                // Armed (or waiting for readiness), then data arrives that nobody takes.
                let poll = futures_lite::future::poll_once(incoming.next()).await;
                assert!(poll.is_none(), "data before any was sent");
                let (res, _) = server.write_all(pattern(5, 0, 1500)).await;
                res.unwrap();
                let fd = client.as_raw_fd();
                util::reaped_until("the receive taking the data", || util::queued(fd) == 0)
                    .await;
            }
            let (res, _) = server.write_all(pattern(5, 1, 700)).await;
            res.unwrap();
            server.shutdown(Shutdown::Write).unwrap();
            let mut all = Vec::new();
            loop {
                let (res, buf) = timeout(PATIENCE, client.read(Vec::with_capacity(512)))
                    .await
                    .unwrap();
                if res.unwrap() == 0 {
                    break;
                }
                all.extend_from_slice(&buf);
            }
            assert_eq!(all.len(), 2200);
            check_pattern(5, 0, 0, &all[..1500]);
            check_pattern(5, 1, 0, &all[1500..]);
        });
    }

    fn bytes_a_dropped_receive_stream_took_travel_with_a_handoff_to_another_core(path) {
        // Received into pool buffers on the first core, queued for a stream that is then
        // dropped: the bytes must reach the core that adopts the socket, first and in order,
        // and the first core's buffers must all come back.
        let rt = builder(path, 8, 4096).cores(util::two_or_fewer_cores()).build().unwrap();
        let cores = rt.cores().to_vec();
        let (first, last) = (cores[0], *cores.last().unwrap());
        let done = coreio::sync::Event::new();
        let outputs = rt.run(|core| {
            let done = done.clone();
            async move {
                if core != first {
                    done.wait().await;
                    return;
                }
                // Set however this core's part ends, a panic included, so the other core stops.
                struct SetOnDrop(coreio::sync::Event);
                impl Drop for SetOnDrop {
                    fn drop(&mut self) {
                        self.0.set();
                    }
                }
                let _done = SetOnDrop(done);
                let (client, server) = pair().await;
                let mut sent = pattern(6, 0, 6000);
                {
                    let mut incoming = client.recv_stream();
                    let poll = futures_lite::future::poll_once(incoming.next()).await;
                    assert!(poll.is_none(), "data before any was sent");
                    // The armed receive takes the first part; a multishot receive goes on
                    // taking the others (queued in the driver for the stream), while on the
                    // other paths they wait in the socket.
                    for (i, part) in sent.chunks(1500).enumerate() {
                        let (res, _) = server.write_all(part.to_vec()).await;
                        res.unwrap();
                        if i == 0 || path.multishot_in_effect() {
                            let fd = client.as_raw_fd();
                            util::reaped_until("the receive taking the data", || {
                                util::queued(fd) == 0
                            })
                            .await;
                        }
                    }
                }
                let mut client = client;
                let handoff = loop {
                    match client.into_handoff() {
                        Ok(handoff) => break handoff,
                        Err(err) => {
                            assert!(err.to_string().contains("in flight"), "{err}");
                            client = err.into_inner();
                            coreio::yield_now().await;
                        }
                    }
                };
                // Every pool buffer is back: eight connections of this core can each hold
                // one at once (a buffer kept back would make the last receive wait forever).
                let mut held = Vec::new();
                for conn in 0..8 {
                    let (other_client, other_server) = pair().await;
                    let (res, _) = other_server.write_all(pattern(7, conn, 10)).await;
                    res.unwrap();
                    let mut other = other_client.recv_stream();
                    let buf = timeout(PATIENCE, other.next())
                        .await
                        .expect("a pool buffer never came back")
                        .unwrap()
                        .unwrap();
                    drop(other);
                    held.push((buf, other_client, other_server));
                }
                drop(held);
                let adopted = mesh::submit_to(last, move || async move {
                    let stream = handoff.adopt().expect("adopt");
                    let (res, buf) =
                        timeout(PATIENCE, stream.read_exact(Vec::with_capacity(6000))).await.unwrap();
                    res.unwrap();
                    (coreio::current_core().unwrap(), buf)
                });
                let (served_on, received) = adopted.await.unwrap();
                assert_eq!(served_on, last);
                assert!(received == sent, "the bytes were lost or reordered");
                sent.clear();
            }
        });
        for output in outputs {
            output.unwrap();
        }
    }

    fn a_reset_connection_is_an_error_item(path) {
        run(path, 8, 4096, async {
            let (client, server) = pair().await;
            let mut incoming = client.recv_stream();
            server.set_linger(Some(Duration::ZERO)).unwrap();
            drop(server);
            let item = timeout(PATIENCE, incoming.next()).await.unwrap();
            match item {
                Some(Err(err)) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset),
                other => panic!("expected a reset, got {other:?}"),
            }
        });
    }

    fn the_stream_trait_yields_the_same_items(path) {
        run(path, 8, 4096, async {
            let (client, server) = pair().await;
            let (res, _) = server.write_all(pattern(2, 0, 10_000)).await;
            res.unwrap();
            server.shutdown(Shutdown::Write).unwrap();
            let chunks: Vec<PooledBuf> = client
                .recv_stream()
                .map(|item| item.unwrap())
                .collect()
                .await;
            let all: Vec<u8> = chunks.iter().flat_map(|b| b.iter().copied()).collect();
            check_pattern(2, 0, 0, &all);
        });
    }

    fn unix_streams_receive_the_same_way(path) {
        run(path, 8, 1024, async {
            let (a, b) = UnixStream::pair().unwrap();
            let (res, _) = b.write_all(pattern(9, 0, 5000)).await;
            res.unwrap();
            b.shutdown(Shutdown::Write).unwrap();
            let mut incoming = a.recv_stream();
            let mut all = Vec::new();
            while let Some(buf) = timeout(PATIENCE, incoming.next()).await.unwrap() {
                all.extend_from_slice(&buf.unwrap());
            }
            check_pattern(9, 0, 0, &all);
        });
    }

    fn a_buffer_may_outlive_its_runtime(path) {
        let buf = run(path, 4, 1024, async {
            let (client, server) = pair().await;
            let (res, _) = server.write_all(pattern(4, 0, 300)).await;
            res.unwrap();
            let mut incoming = client.recv_stream();
            timeout(PATIENCE, incoming.next()).await.unwrap().unwrap().unwrap()
        });
        // The runtime is gone; the buffer's memory is not.
        assert!(!buf.is_empty());
        check_pattern(4, 0, 0, &buf);
        drop(buf);
    }
}

all_paths! {
    fn poll_reads_owned_reads_and_receive_streams_take_turns_in_order(path) {
        // The poll forms (futures-io here) read through a multishot receive of their own on
        // io_uring; an owned read or a receive stream that follows stops it, and what it had
        // taken is read first.
        run(path, 8, 1024, async {
            use futures_lite::AsyncReadExt;
            let (mut client, server) = pair().await;
            let sent = pattern(11, 0, 30_000);
            let writer = coreio::spawn(async move {
                for chunk in sent.chunks(1000) {
                    let (res, _) = server.write_all(chunk.to_vec()).await;
                    res.unwrap();
                    coreio::yield_now().await;
                }
                server.shutdown(Shutdown::Write).unwrap();
                server
            });
            let mut received = Vec::new();
            for round in 0.. {
                let before = received.len();
                match round % 3 {
                    0 => {
                        let mut small = [0u8; 700];
                        let n = timeout(PATIENCE, AsyncReadExt::read(&mut client, &mut small))
                            .await
                            .unwrap()
                            .unwrap();
                        received.extend_from_slice(&small[..n]);
                    }
                    1 => {
                        let (res, buf) = timeout(PATIENCE, client.read(Vec::with_capacity(500)))
                            .await
                            .unwrap();
                        res.unwrap();
                        received.extend_from_slice(&buf);
                    }
                    _ => {
                        let mut incoming = client.recv_stream();
                        if let Some(buf) = timeout(PATIENCE, incoming.next()).await.unwrap() {
                            received.extend_from_slice(&buf.unwrap());
                        }
                    }
                }
                if received.len() == before && received.len() == 30_000 {
                    break;
                }
            }
            check_pattern(11, 0, 0, &received);
            drop(writer.await.unwrap());
        });
    }
}

all_paths! {
    fn a_connection_nobody_reads_does_not_take_the_whole_pool(path) {
        run(path, 128, 1024, async {
            let (slow, slow_peer) = pair().await;
            let (fast, fast_peer) = pair().await;
            let mut slow_incoming = slow.recv_stream();
            // Armed, then not polled while its peer sends twice what the pool holds.
            let first = futures_lite::future::poll_once(slow_incoming.next()).await;
            assert!(first.is_none(), "data before any was sent");
            let flood = coreio::spawn(async move {
                let (res, _) = slow_peer.write_all(vec![7u8; 256 * 1024]).await;
                res.unwrap();
                slow_peer
            });
            coreio::time::sleep(Duration::from_millis(50)).await;
            // Another connection of the core still gets a buffer.
            let (res, _) = fast_peer.write_all(pattern(12, 0, 100)).await;
            res.unwrap();
            let mut fast_incoming = fast.recv_stream();
            let buf = timeout(Duration::from_secs(5), fast_incoming.next())
                .await
                .expect("one unread connection took every buffer of the core")
                .unwrap()
                .unwrap();
            check_pattern(12, 0, 0, &buf);
            drop(buf);
            // The slow connection loses nothing once it reads.
            let mut total = 0;
            while total < 256 * 1024 {
                let buf = timeout(PATIENCE, slow_incoming.next())
                    .await
                    .unwrap()
                    .expect("the flood ended early")
                    .unwrap();
                assert!(buf.iter().all(|&b| b == 7));
                total += buf.len();
            }
            assert_eq!(total, 256 * 1024);
            drop(flood.await.unwrap());
        });
    }
}

#[test]
fn on_io_uring_one_multishot_receive_serves_many_arrivals() {
    run(Path::RingMultishot, 8, 1024, async {
        if !util::on_uring() || std::env::var_os("COREIO_MULTISHOT_RECV").is_some() {
            return; // COREIO_BACKEND or COREIO_MULTISHOT_RECV overrides the path.
        }
        let (client, server) = pair().await;
        let mut incoming = client.recv_stream();
        for msg in 0..5 {
            let (res, _) = server.write_all(pattern(6, msg, 100)).await;
            res.unwrap();
            let buf = timeout(PATIENCE, incoming.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            check_pattern(6, msg, 0, &buf);
            // Still armed after an item: no new submission per receive.
            let state = format!("{incoming:?}");
            assert!(state.contains("multishot receive armed"), "{state}");
        }
    });
}

all_paths! {
    fn a_runtime_that_stops_with_receives_armed_and_buffers_lent_is_sound(path) {
        // Tasks that never finish: one with its receive armed and data queued in it, one
        // holding lent buffers. The runtime's end cancels both; the kernel's last completions
        // give their buffers back; nothing is freed while the kernel may write to it.
        let kept = run(path, 8, 512, async {
            let (client, server) = pair().await;
            let (other, other_server) = pair().await;
            let (res, _) = other_server.write_all(pattern(8, 0, 1500)).await;
            res.unwrap();
            let holder = coreio::spawn(async move {
                let mut incoming = other.recv_stream();
                let mut held = Vec::new();
                while let Some(Ok(buf)) = incoming.next().await {
                    held.push(buf);
                    if held.iter().map(|b| b.len()).sum::<usize>() == 1500 {
                        break;
                    }
                }
                std::future::pending::<()>().await;
                drop(held);
            });
            let armed = coreio::spawn(async move {
                let mut incoming = client.recv_stream();
                while incoming.next().await.is_some() {}
            });
            coreio::time::sleep(Duration::from_millis(10)).await;
            // Data for the armed receive, arriving as the runtime stops.
            let (res, _) = server.write_all(pattern(8, 1, 3000)).await;
            res.unwrap();
            drop((holder, armed));
            // A buffer handed out of the runtime, read after it ended.
            let (res, _) = other_server.write_all(pattern(8, 2, 200)).await;
            res.unwrap();
            let (third, third_server) = pair().await;
            let (res, _) = third_server.write_all(pattern(8, 3, 100)).await;
            res.unwrap();
            let mut incoming = third.recv_stream();
            let buf = timeout(PATIENCE, incoming.next()).await.unwrap().unwrap().unwrap();
            (buf, server, other_server, third_server)
        });
        check_pattern(8, 3, 0, &kept.0);
    }
}

#[test]
fn bad_pool_shapes_are_refused() {
    for (buffers, size) in [(0, 1024), (3, 1024), (8, 0), (8, 64 * 1024 * 1024)] {
        let err = Builder::new()
            .recv_buffers(buffers, size)
            .build()
            .expect_err("a bad pool shape was accepted");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::InvalidInput,
            "{buffers} x {size}"
        );
        assert!(err.to_string().contains("recv_buffers"), "{err}");
    }
}

#[test]
fn a_receive_stream_outside_a_runtime_is_an_error() {
    let (client, _server) = run(Path::Epoll, 4, 1024, async { pair().await });
    let mut incoming = client.recv_stream();
    let item = futures_lite::future::block_on(incoming.next());
    assert!(matches!(item, Some(Err(_))), "{item:?}");
}
