//! TCP stream I/O beyond read and write: `peek`, gathering writes (`write_vectored`,
//! `write_all_vectored`), owned halves (`into_split`, `reunite`) and `copy_bidirectional`, the
//! proxy's loop. Every test runs on both backends.

#[macro_use]
mod util;

use std::cell::Cell;
use std::io;
use std::net::Shutdown;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Waker};
use std::time::Duration;

use coreio::net::{
    TcpListener, TcpStream, copy_bidirectional, copy_bidirectional_with_capacity, reunite,
};
use coreio::time::timeout;

use util::{DropHookBuf, block_on, check_pattern, pair, pattern};

/// Generous bound for waits that only run out when something is broken.
const PATIENCE: Duration = Duration::from_secs(20);

/// Reads until end of stream; returns everything read.
async fn read_to_end(stream: &TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let (res, buf) = timeout(PATIENCE, stream.read(Vec::with_capacity(8192)))
            .await
            .expect("a read never finished");
        if res.unwrap() == 0 {
            return all;
        }
        all.extend_from_slice(&buf);
    }
}

/// Listens on a loopback port and echoes every connection until its end of stream, then
/// closes it; returns the address.
fn spawn_echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    coreio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            coreio::spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                loop {
                    let (res, back) = stream.read(buf).await;
                    match res {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let (res, back) = stream.write_all(back).await;
                    if res.is_err() {
                        return;
                    }
                    buf = back;
                }
            });
        }
    });
    addr
}

both_backends! {
    fn peek_leaves_the_bytes_for_the_next_read(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let (res, _) = server.write_all(b"hello world".to_vec()).await;
            res.unwrap();
            let (res, peeked) = client.peek(Vec::with_capacity(5)).await;
            assert_eq!(res.unwrap(), 5);
            assert_eq!(peeked, b"hello");
            // Peeking again sees the same bytes; a larger peek sees more of them.
            let (res, peeked) = client.peek(Vec::with_capacity(64)).await;
            assert_eq!(res.unwrap(), 11);
            assert_eq!(peeked, b"hello world");
            let (res, read) = client.read_exact(Vec::with_capacity(11)).await;
            res.unwrap();
            assert_eq!(read, b"hello world");
            // At end of stream a peek reports 0, as often as asked.
            drop(server);
            for _ in 0..2 {
                let (res, _) = timeout(PATIENCE, client.peek(Vec::with_capacity(8))).await.unwrap();
                assert_eq!(res.unwrap(), 0);
            }
        });
    }

    fn peek_waits_for_data_and_a_zero_capacity_peek_returns_at_once(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            // A zero-capacity peek is refused at once (its Ok(0) would look like end of stream).
            let (res, _) = client.peek(Vec::new()).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidInput);
            let peek = coreio::spawn(async move {
                let (res, buf) = client.peek(Vec::with_capacity(16)).await;
                (res.unwrap(), buf, client)
            });
            for _ in 0..3 {
                coreio::yield_now().await;
            }
            assert!(!peek.is_finished(), "a peek on an empty socket did not wait");
            let (res, _) = server.write_all(b"late".to_vec()).await;
            res.unwrap();
            let (n, buf, client) = timeout(PATIENCE, peek).await.unwrap().unwrap();
            assert_eq!((n, &buf[..]), (4, &b"late"[..]));
            // The peeked bytes are still there (epoll: the read must not wait for a new edge).
            let (res, buf) = timeout(PATIENCE, client.read(Vec::with_capacity(16))).await.unwrap();
            assert_eq!(res.unwrap(), 4);
            assert_eq!(buf, b"late");
        });
    }

    fn a_dropped_peek_takes_nothing(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            coreio::yield_now().await;
            {
                let mut peek = pin!(client.peek(Vec::with_capacity(64)));
                let mut cx = Context::from_waker(Waker::noop());
                assert!(peek.as_mut().poll(&mut cx).is_pending());
                let (res, _) = server.write_all(b"kept".to_vec()).await;
                res.unwrap();
                coreio::time::sleep(Duration::from_millis(2)).await;
            }
            let (res, buf) = timeout(PATIENCE, client.read(Vec::with_capacity(64))).await.unwrap();
            assert_eq!(res.unwrap(), 4);
            assert_eq!(buf, b"kept");
        });
    }

    fn write_vectored_sends_a_header_and_a_body_in_order(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let header = b"HEADER:".to_vec();
            let body = pattern(1, 0, 3000);
            let (res, bufs) = client.write_all_vectored(vec![header.clone(), body.clone()]).await;
            res.unwrap();
            // The buffers come back untouched, in order.
            assert_eq!(bufs, vec![header.clone(), body.clone()]);
            client.shutdown(Shutdown::Write).unwrap();
            let got = read_to_end(&server).await;
            assert_eq!(&got[..header.len()], &header[..]);
            check_pattern(1, 0, 0, &got[header.len()..]);
            assert_eq!(got.len(), header.len() + body.len());
        });
    }

    fn write_all_vectored_sends_more_buffers_than_one_sendmsg_takes(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            // 3000 buffers of 1..=7 bytes (some empty) and a large one: several sends, partial
            // ones among them, each resuming mid-buffer.
            let mut bufs: Vec<Vec<u8>> = (0..3000u32)
                .map(|i| vec![(i % 251) as u8; (i % 8) as usize])
                .collect();
            bufs.push(pattern(2, 0, 1 << 20));
            let expected: Vec<u8> = bufs.concat();
            let reader = coreio::spawn(async move { read_to_end(&server).await });
            let (res, _) = client.write_all_vectored(bufs).await;
            res.unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            let got = timeout(PATIENCE, reader).await.unwrap().unwrap();
            assert_eq!(got.len(), expected.len(), "bytes were lost");
            assert!(got == expected, "the bytes arrived out of order");
        });
    }

    fn write_vectored_of_nothing_is_zero_and_to_a_closed_peer_an_error(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let (res, bufs) = client.write_vectored(vec![Vec::new(), Vec::new()]).await;
            assert_eq!(res.unwrap(), 0);
            assert_eq!(bufs.len(), 2);
            let (res, _) = client.write_vectored(Vec::<Vec<u8>>::new()).await;
            assert_eq!(res.unwrap(), 0);
            // The peer goes away with unread data pending (an RST): writes fail, no SIGPIPE.
            let (res, _) = client.write_all(b"unread".to_vec()).await;
            res.unwrap();
            let _ = server.read(Vec::with_capacity(1)).await;
            drop(server);
            let mut failed = None;
            for _ in 0..100 {
                let (res, _) = client.write_all_vectored(vec![vec![1u8; 4096], vec![2u8; 4096]]).await;
                if let Err(err) = res {
                    failed = Some(err);
                    break;
                }
                coreio::time::sleep(Duration::from_millis(1)).await;
            }
            let err = failed.expect("writes to a closed peer kept succeeding");
            assert!(
                matches!(err.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset),
                "{err}"
            );
        });
    }

    fn a_dropped_vectored_write_frees_each_buffer_once(backend: Backend) {
        block_on(backend, async {
            let (client, _server) = pair().await;
            // Fill the socket so the next send waits in the kernel (io_uring) or for
            // writability (epoll).
            let sock = socket2::SockRef::from(&client);
            sock.set_send_buffer_size(4096).unwrap();
            let mut filler = vec![0u8; 1 << 16];
            while sock.send(&filler).is_ok() {}
            filler.clear();
            let drops = Rc::new(Cell::new(0));
            coreio::yield_now().await;
            {
                let bufs: Vec<DropHookBuf> = (0..4)
                    .map(|_| {
                        let drops = drops.clone();
                        DropHookBuf::with_bytes(vec![7u8; 1 << 16], move || drops.set(drops.get() + 1))
                    })
                    .collect();
                let mut write = pin!(client.write_all_vectored(bufs));
                let mut cx = Context::from_waker(Waker::noop());
                assert!(write.as_mut().poll(&mut cx).is_pending());
            }
            // io_uring: freed once the cancellation's completion is reaped; epoll: at once.
            assert!(util::wait_until(4000, || drops.get() == 4).await, "buffers never freed");
            for _ in 0..5 {
                coreio::yield_now().await;
            }
            assert_eq!(drops.get(), 4, "a buffer was freed twice");
        });
    }

    fn halves_read_and_write_in_two_tasks(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let (reader, writer) = server.into_split();
            assert_eq!(reader.get_ref().peer_addr().unwrap(), client.local_addr().unwrap());
            // The server echoes through its halves: one task reads, another writes.
            let (tx, rx) = coreio::mesh::channel::<Vec<u8>>(4);
            let read_task = coreio::spawn(async move {
                loop {
                    let (res, buf) = reader.read(Vec::with_capacity(1024)).await;
                    if res.unwrap() == 0 {
                        return reader;
                    }
                    tx.send(buf).await.unwrap();
                }
            });
            let write_task = coreio::spawn(async move {
                let mut rx = rx;
                while let Ok(buf) = rx.recv().await {
                    let (res, _) = writer.write_all(buf).await;
                    res.unwrap();
                }
                // Dropping the write half shuts the write direction down.
            });
            let data = pattern(3, 0, 50_000);
            let (res, _) = client.write_all(data.clone()).await;
            res.unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            let echoed = read_to_end(&client).await;
            assert!(echoed == data, "the echo through the halves differs");
            timeout(PATIENCE, read_task).await.unwrap().unwrap();
            timeout(PATIENCE, write_task).await.unwrap().unwrap();
        });
    }

    fn dropping_the_write_half_sends_end_of_stream(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let (reader, writer) = server.into_split();
            let (res, _) = writer.write_all(b"bye".to_vec()).await;
            res.unwrap();
            drop(writer);
            assert_eq!(read_to_end(&client).await, b"bye");
            // The read half still works.
            let (res, _) = client.write_all(b"still here".to_vec()).await;
            res.unwrap();
            let (res, buf) = reader.read_exact(Vec::with_capacity(10)).await;
            res.unwrap();
            assert_eq!(buf, b"still here");
        });
    }

    fn reunite_gives_the_stream_back_only_for_its_own_halves(backend: Backend) {
        block_on(backend, async {
            let (a, a_peer) = pair().await;
            let (b, _b_peer) = pair().await;
            let (a_read, a_write) = a.into_split();
            let (b_read, b_write) = b.into_split();
            let err = reunite(a_read, b_write).expect_err("halves of two streams reunited");
            let a = reunite(err.read, a_write).expect("a stream's own halves did not reunite");
            drop(reunite(b_read, err.write).unwrap());
            // Reuniting did not shut the write direction down.
            let (res, _) = a.write_all(b"open".to_vec()).await;
            res.unwrap();
            let (res, buf) = a_peer.read_exact(Vec::with_capacity(4)).await;
            res.unwrap();
            assert_eq!(buf, b"open");
        });
    }

    fn copy_bidirectional_proxies_both_ways_and_half_closes(backend: Backend) {
        block_on(backend, async {
            let upstream_addr = spawn_echo_server();
            let proxy = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let proxy_addr = proxy.local_addr().unwrap();
            let proxied = coreio::spawn(async move {
                let (client, _) = proxy.accept().await.unwrap();
                let upstream = TcpStream::connect(upstream_addr).await.unwrap();
                copy_bidirectional(&client, &upstream).await
            });
            let client = TcpStream::connect(proxy_addr).await.unwrap();
            let data = pattern(4, 0, 200_000);
            let writer = {
                let data = data.clone();
                let (reader, writer) = client.into_split();
                let write = coreio::spawn(async move {
                    let (res, _) = writer.write_all(data).await;
                    res.unwrap();
                    // The write half's drop shuts down: the proxy passes the half-close on.
                });
                (reader, write)
            };
            let (reader, write) = writer;
            let mut echoed = Vec::new();
            loop {
                let (res, buf) = timeout(PATIENCE, reader.read(Vec::with_capacity(8192)))
                    .await
                    .expect("the proxied echo stalled");
                if res.unwrap() == 0 {
                    break;
                }
                echoed.extend_from_slice(&buf);
            }
            timeout(PATIENCE, write).await.unwrap().unwrap();
            assert!(echoed == data, "the proxied echo differs");
            let (up, down) = timeout(PATIENCE, proxied).await.unwrap().unwrap().unwrap();
            assert_eq!((up, down), (data.len() as u64, data.len() as u64));
        });
    }

    fn copy_bidirectional_reports_a_reset_and_refuses_a_zero_capacity(backend: Backend) {
        block_on(backend, async {
            let (a, _a_peer) = pair().await;
            let (b, b_peer) = pair().await;
            let err = copy_bidirectional_with_capacity(&a, &b, 0).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            // b's peer resets the connection (unread data at close): the copy fails with it.
            let copy = coreio::spawn(async move { copy_bidirectional(&a, &b).await });
            let (res, _) = b_peer.write_all(b"x".to_vec()).await;
            res.unwrap();
            socket2::SockRef::from(&b_peer).set_linger(Some(Duration::ZERO)).unwrap();
            drop(b_peer);
            let err = timeout(PATIENCE, copy).await.unwrap().unwrap().unwrap_err();
            assert!(
                matches!(err.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe),
                "{err}"
            );
        });
    }
}
