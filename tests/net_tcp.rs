//! TCP: echo under load across cores, connection errors, half-close, what a dropped stream
//! sends (FIN or RST), options, addresses, `read_exact`/`write_all`, and buffer handling (`Vec`
//! lengths, slices).

#[macro_use]
mod util;

use std::cell::Cell;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coreio::Builder;
use coreio::buf::IoBuf;
use coreio::net::{TcpListener, TcpStream};
use coreio::sync::Event;
use coreio::time::{sleep, timeout};

use util::{block_on, check_pattern, pair, pattern};

/// Generous bound for waits that only time out when something is broken.
const PATIENCE: Duration = Duration::from_secs(20);

/// Message sizes of connection `conn`: 1 byte, odd sizes, and 64 KiB on every tenth.
fn message_sizes(conn: u64) -> [usize; 4] {
    let big = if conn.is_multiple_of(10) {
        64 * 1024
    } else {
        4096
    };
    [1, 1 + (conn as usize * 7) % 1000, big, 3]
}

/// Echoes everything back until the peer closes.
async fn echo(stream: TcpStream) -> io::Result<u64> {
    let mut buf = Vec::with_capacity(8192);
    let mut total = 0;
    loop {
        let (res, b) = stream.read(buf).await;
        let n = res?;
        if n == 0 {
            return Ok(total);
        }
        assert_eq!(b.len(), n);
        total += n as u64;
        let (res, b) = stream.write_all(b).await;
        res?;
        buf = b;
    }
}

/// Client `conn`: several messages, each echoed and verified byte for byte.
async fn echo_client(addr: SocketAddr, conn: u64) -> io::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    for (msg, size) in message_sizes(conn).into_iter().enumerate() {
        let (res, _) = stream.write_all(pattern(conn, msg as u64, size)).await;
        res?;
        let (res, back) = stream.read_exact(Vec::with_capacity(size)).await;
        res?;
        assert_eq!(back.len(), size);
        check_pattern(conn, msg as u64, 0, &back);
    }
    stream.shutdown(Shutdown::Write)?;
    let (res, rest) = stream.read(Vec::with_capacity(16)).await;
    assert_eq!(res?, 0, "unexpected data after the last echo: {rest:?}");
    Ok(())
}

/// Bytes waiting in `stream`'s receive queue, not yet read (`FIONREAD`).
fn queued_input(stream: &TcpStream) -> usize {
    let mut queued: libc::c_int = 0;
    // SAFETY: `stream` owns an open socket for the whole call, and FIONREAD writes one `c_int`
    // through the pointer, which points to a live, writable `c_int`.
    let res = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut queued) };
    assert_eq!(res, 0, "FIONREAD: {}", io::Error::last_os_error());
    usize::try_from(queued).unwrap()
}

/// Waits (bounded, about `PATIENCE`) until at least `len` bytes are queued unread on `stream`;
/// returns whether they were.
async fn wait_for_queued_input(stream: &TcpStream, len: usize) -> bool {
    for _ in 0..PATIENCE.as_millis() {
        if queued_input(stream) >= len {
            return true;
        }
        sleep(Duration::from_millis(1)).await;
    }
    queued_input(stream) >= len
}

both_backends! {
    fn a_short_read_then_end_of_stream_reads_zero(backend: Backend) {
        // The data and the FIN both arrive before the first read, and a park in between lets
        // epoll report them (the hang-up included) before the read takes the data. That read
        // is short, which on epoll marks the socket drained: the next read must still try and
        // see the end of stream rather than wait for an edge that already came.
        block_on(backend, async {
            let (client, server) = pair().await;
            let (res, _) = client.write_all(pattern(3, 0, 10)).await;
            res.unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            sleep(Duration::from_millis(5)).await;
            let (res, buf) = server.read(Vec::with_capacity(64)).await;
            assert_eq!(res.unwrap(), 10);
            assert_eq!(buf, pattern(3, 0, 10));
            let read = timeout(Duration::from_secs(5), server.read(Vec::with_capacity(64))).await;
            let (res, _) = read.expect("a read after a short read missed the end of stream");
            assert_eq!(res.unwrap(), 0);
        });
    }

    fn data_after_a_short_read_is_read(backend: Backend) {
        // After a short read marks the socket drained, data that arrives later raises a new
        // edge and wakes the next read.
        block_on(backend, async {
            let (client, server) = pair().await;
            for msg in 0..20u64 {
                let (res, _) = client.write_all(pattern(4, msg, 10)).await;
                res.unwrap();
                // Each read is short (10 of 64 bytes), so each one marks the socket drained.
                let read = server.read(Vec::with_capacity(64));
                let (res, buf) = timeout(Duration::from_secs(5), read)
                    .await
                    .expect("a read after a short read never saw the new data");
                assert_eq!(res.unwrap(), 10);
                assert_eq!(buf, pattern(4, msg, 10));
            }
        });
    }

    fn echo_500_connections_across_cores(backend: Backend) {
        const CONNS: usize = 500;
        let (_reservation, addr) = util::reserve_port();
        let n = util::two_or_fewer_cores();
        let rt = Builder::new().backend(backend).cores(n).build().unwrap();
        let finished = Arc::new(AtomicUsize::new(0));
        let all_done = Event::new();
        let outputs = rt.run(|core| {
            let (finished, all_done) = (finished.clone(), all_done.clone());
            let index = rt.cores().iter().position(|&c| c == core).unwrap();
            async move {
                util::assert_backend(backend);
                let listener = TcpListener::bind(addr).unwrap();
                assert_eq!(listener.local_addr().unwrap(), addr);
                let served = Rc::new(Cell::new(0usize));
                let bytes = Rc::new(Cell::new(0u64));
                let (s, b) = (served.clone(), bytes.clone());
                let _acceptor = coreio::spawn(async move {
                    loop {
                        let (stream, _) = listener.accept().await.unwrap();
                        let (s, b) = (s.clone(), b.clone());
                        coreio::spawn(async move {
                            let total = echo(stream).await.unwrap();
                            b.set(b.get() + total);
                            s.set(s.get() + 1);
                        });
                    }
                });
                // This core's share of the clients.
                let clients: Vec<_> = (0..CONNS)
                    .filter(|conn| conn % n == index)
                    .map(|conn| coreio::spawn(echo_client(addr, conn as u64)))
                    .collect();
                for client in clients {
                    client.await.unwrap().unwrap();
                    if finished.fetch_add(1, Ordering::SeqCst) + 1 == CONNS {
                        all_done.set();
                    }
                }
                // Keep serving until every client, on every core, is done.
                timeout(PATIENCE, all_done.wait()).await.expect("clients did not finish");
                (served.get(), bytes.get())
            }
        });
        // Every connection was served to the end by exactly one core, with every byte echoed.
        let expected_bytes: u64 = (0..CONNS as u64)
            .map(|c| message_sizes(c).iter().sum::<usize>() as u64)
            .sum();
        let mut served = 0;
        let mut bytes = 0;
        for output in outputs {
            let (s, b) = output.unwrap();
            served += s;
            bytes += b;
        }
        assert_eq!(finished.load(Ordering::SeqCst), CONNS);
        assert!(served <= CONNS);
        assert!(bytes <= expected_bytes);
        // An echo task closes its stream and counts itself in the same poll, and a client only
        // finishes once it has read that close, so every echo task has counted itself.
        assert_eq!(served, CONNS, "not every connection was served to its end");
        assert_eq!(bytes, expected_bytes);
    }

    fn connect_to_a_closed_port_is_refused(backend: Backend) {
        let (_reservation, addr) = util::reserve_port();
        block_on(backend, async move {
            let err = TcpStream::connect(addr).await.expect_err("connected to a closed port");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        });
    }

    fn read_after_peer_close_is_zero(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let (res, _) = server.write_all(b"last words".to_vec()).await;
            res.unwrap();
            drop(server);
            let (res, buf) = client.read(Vec::with_capacity(64)).await;
            assert_eq!(res.unwrap(), 10);
            assert_eq!(buf, b"last words");
            for _ in 0..3 {
                let (res, buf) = client.read(buf.clone()).await;
                assert_eq!(res.unwrap(), 0);
                assert!(buf.is_empty(), "a 0-byte read leaves the Vec empty");
            }
        });
    }

    fn write_to_closed_peer_is_an_error_not_sigpipe(backend: Backend) {
        // In a child process with SIGPIPE restored to its default action (Rust ignores it at
        // start-up), so a write that raised SIGPIPE would kill the child.
        const ROLE: &str = "sigpipe";
        if util::child_role().as_deref() != Some(ROLE) {
            let name = util::backend_test_name("write_to_closed_peer_is_an_error_not_sigpipe", backend);
            let out = util::run_child(&name, ROLE, &[], PATIENCE);
            util::assert_child_ok(&out, "SIGPIPE child");
            return;
        }
        // SAFETY: restoring the default disposition of SIGPIPE has no memory-safety concerns.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        block_on(backend, async {
            for linger_zero in [false, true] {
                let (client, server) = pair().await;
                if linger_zero {
                    // Close with a RST.
                    // SAFETY: `server` owns the descriptor and outlives the borrow.
                    let fd = unsafe { BorrowedFd::borrow_raw(server.as_raw_fd()) };
                    socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO)).unwrap();
                }
                drop(server);
                let mut error = None;
                for _ in 0..1000 {
                    let (res, _) = client.write(vec![7u8; 1024]).await;
                    match res {
                        Ok(_) => sleep(Duration::from_millis(1)).await,
                        Err(err) => {
                            error = Some(err);
                            break;
                        }
                    }
                }
                let err = error.expect("writing to a closed peer never failed");
                assert!(
                    matches!(err.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset),
                    "linger_zero={linger_zero}: unexpected error {err}"
                );
                // write_all reports it too.
                let (res, _) = client.write_all(vec![1u8; 100_000]).await;
                assert!(res.is_err());
            }
        });
    }

    fn dropping_a_stream_with_unread_input_resets_the_peer(backend: Backend) {
        // Linux's close(2) answers unread input with an RST, not a FIN (RFC 2525, 2.17), and
        // coreio closes with a plain close(2) on both backends. With and without a first part
        // read: what counts is what is still in the receive queue at the drop.
        block_on(backend, async {
            for read_first in [false, true] {
                let (client, server) = pair().await;
                let (res, _) = server.write_all(&b"reply"[..]).await;
                res.unwrap();
                let (res, _) = client.write_all(&b"hello world"[..]).await;
                res.unwrap();
                let mut unread = 11;
                if read_first {
                    let (res, buf) = server.read_exact(Vec::with_capacity(5)).await;
                    res.unwrap();
                    assert_eq!(buf, b"hello");
                    unread -= 5;
                }
                // Drop only once every byte has arrived, so that the reset is certain.
                assert!(
                    wait_for_queued_input(&server, unread).await,
                    "read_first={read_first}: the client's bytes never arrived"
                );
                drop(server);
                // What had already reached the client is still readable; then the reset.
                let (res, buf) = client.read_exact(Vec::with_capacity(5)).await;
                res.unwrap();
                assert_eq!(buf, b"reply");
                let (res, _) = timeout(PATIENCE, client.read(Vec::with_capacity(64)))
                    .await
                    .expect("the reset never reached the client");
                let err = res.expect_err("the client read data or a FIN, not the reset");
                assert_eq!(
                    err.kind(),
                    io::ErrorKind::ConnectionReset,
                    "read_first={read_first}: {err}"
                );
            }
        });
    }

    fn dropping_a_stream_with_nothing_unread_sends_a_fin(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let (res, _) = client.write_all(&b"hello world"[..]).await;
            res.unwrap();
            let (res, buf) = server.read_exact(Vec::with_capacity(11)).await;
            res.unwrap();
            assert_eq!(buf, b"hello world");
            assert_eq!(queued_input(&server), 0);
            drop(server);
            for _ in 0..2 {
                let (res, _) = timeout(PATIENCE, client.read(Vec::with_capacity(64)))
                    .await
                    .expect("the FIN never reached the client");
                assert_eq!(res.expect("a clean close, not a reset"), 0);
            }
        });
    }

    fn shutdown_write_half_closes(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let (res, _) = client.write_all(&b"request"[..]).await;
            res.unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            let (res, buf) = server.read_exact(Vec::with_capacity(7)).await;
            res.unwrap();
            assert_eq!(buf, b"request");
            let (res, _) = server.read(Vec::with_capacity(16)).await;
            assert_eq!(res.unwrap(), 0, "the peer did not see the FIN");
            // The other direction still works.
            let (res, _) = server.write_all(&b"response"[..]).await;
            res.unwrap();
            let (res, buf) = client.read_exact(Vec::with_capacity(8)).await;
            res.unwrap();
            assert_eq!(buf, b"response");
            // Writing on the shut side fails.
            let (res, _) = client.write(&b"more"[..]).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        });
    }

    fn nodelay_round_trips(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            for stream in [&client, &server] {
                stream.set_nodelay(true).unwrap();
                assert!(stream.nodelay().unwrap());
                stream.set_nodelay(false).unwrap();
                assert!(!stream.nodelay().unwrap());
            }
        });
    }

    fn addresses_match(backend: Backend) {
        block_on(backend, async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            assert_ne!(addr.port(), 0);
            let connect = coreio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
            let (server, peer) = listener.accept().await.unwrap();
            let client = connect.await.unwrap();
            assert_eq!(client.peer_addr().unwrap(), addr);
            assert_eq!(server.local_addr().unwrap(), addr);
            assert_eq!(server.peer_addr().unwrap(), client.local_addr().unwrap());
            assert_eq!(peer, client.local_addr().unwrap());
        });
    }

    fn read_exact_fills_or_reports_eof(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            // Arrives in pieces.
            let writer = coreio::spawn(async move {
                for i in 0..10u8 {
                    let (res, _) = server.write_all(vec![i; 1]).await;
                    res.unwrap();
                    coreio::yield_now().await;
                    sleep(Duration::from_micros(200)).await;
                }
                let (res, _) = server.write_all(vec![0xAA; 5]).await;
                res.unwrap();
                server
            });
            let (res, buf) = client.read_exact(Vec::with_capacity(10)).await;
            res.unwrap();
            assert_eq!(buf, (0..10).collect::<Vec<u8>>());
            let server = writer.await.unwrap();
            drop(server);
            // Only 5 bytes come before the close.
            let (res, buf) = client.read_exact(Vec::with_capacity(10)).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
            assert_eq!(&buf[..], &[0xAA; 5], "the bytes read before EOF are kept");
        });
    }

    fn write_all_4mib_to_a_slow_reader(backend: Backend) {
        const LEN: usize = 4 * 1024 * 1024;
        block_on(backend, async {
            let (client, server) = pair().await;
            let writer = coreio::spawn(async move {
                let (res, buf) = client.write_all(pattern(4, 4, LEN)).await;
                res.unwrap();
                assert_eq!(buf.len(), LEN);
                client
            });
            let mut received = 0usize;
            let mut buf = Vec::with_capacity(4096);
            let mut reads = 0u64;
            while received < LEN {
                let (res, b) = server.read(buf).await;
                let n = res.unwrap();
                assert!(n > 0, "EOF after {received} bytes");
                check_pattern(4, 4, received as u64, &b);
                received += n;
                buf = b;
                reads += 1;
                // Slow: yield after every read, pause now and then.
                coreio::yield_now().await;
                if reads.is_multiple_of(128) {
                    sleep(Duration::from_millis(1)).await;
                }
            }
            let client = writer.await.unwrap();
            drop(client);
            let (res, _) = server.read(buf).await;
            assert_eq!(res.unwrap(), 0);
            assert_eq!(received, LEN);
        });
    }

    fn read_into_vec_sets_len(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let (res, _) = server.write_all(&b"hello"[..]).await;
            res.unwrap();
            let (res, buf) = client.read(Vec::with_capacity(64)).await;
            assert_eq!(res.unwrap(), 5);
            assert_eq!(buf.len(), 5);
            assert_eq!(buf.capacity(), 64);
            assert_eq!(buf, b"hello");
            // A Vec that already holds data is read into from its start.
            let (res, _) = server.write_all(&b"abc"[..]).await;
            res.unwrap();
            let mut old = Vec::with_capacity(16);
            old.extend_from_slice(b"0123456789");
            let (res, buf) = client.read(old).await;
            assert_eq!(res.unwrap(), 3);
            assert_eq!(buf, b"abc");
            // Boxed slices work both ways.
            let (res, _) = server.write_all(Box::<[u8]>::from(&b"boxed"[..])).await;
            res.unwrap();
            let (res, buf) = client.read_exact(vec![0u8; 5].into_boxed_slice()).await;
            res.unwrap();
            assert_eq!(&buf[..], b"boxed");
        });
    }

    fn read_into_zero_capacity_is_invalid_input_not_eof(backend: Backend) {
        // Documented: a buffer with no capacity is refused with InvalidInput, since Ok(0) would
        // look like end of stream. The peer stays open and silent, so only the refusal can make
        // the read return; the bytes sent afterwards are all still there.
        block_on(backend, async {
            let (client, server) = pair().await;
            let res = timeout(Duration::from_secs(5), client.read(Vec::new())).await;
            let (res, buf) = res.expect("a read into a zero-capacity Vec waits for data");
            let err = res.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
            assert!(err.to_string().contains("no capacity"), "{err}");
            assert!(buf.is_empty());
            let mut full = Vec::with_capacity(4);
            full.extend_from_slice(b"full");
            let res = timeout(Duration::from_secs(5), client.read(full.slice(4..))).await;
            let (res, slice) = res.expect("a read into an empty slice waits for data");
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidInput);
            assert_eq!(slice.into_inner(), b"full", "the refused buffer comes back untouched");
            let (res, _) = client.peek(Vec::new()).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidInput);
            let (res, _) = server.write_all(b"after".to_vec()).await;
            res.unwrap();
            let (res, buf) = client.read_exact(vec![0u8; 5]).await;
            res.unwrap();
            assert_eq!(buf, b"after");
        });
    }

    fn slices_read_and_write_their_range(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            // Write a middle range of a buffer.
            let (res, slice) = server.write(b"hello world".to_vec().slice(6..11)).await;
            assert_eq!(res.unwrap(), 5);
            assert_eq!(slice.begin(), 6);
            assert_eq!(slice.into_inner(), b"hello world");
            let (res, _) = server.write_all(b"xyz!".to_vec().slice(..3)).await;
            res.unwrap();
            let (res, buf) = client.read_exact(Vec::with_capacity(8)).await;
            res.unwrap();
            assert_eq!(buf, b"worldxyz");

            // Read after a prefix that is kept: the length grows past it.
            let (res, _) = server.write_all(&b"tail"[..]).await;
            res.unwrap();
            let mut buf = Vec::with_capacity(16);
            buf.extend_from_slice(b"head");
            let (res, slice) = client.read(buf.slice(4..)).await;
            assert_eq!(res.unwrap(), 4);
            let buf = slice.into_inner();
            assert_eq!(buf, b"headtail");

            // A slice that starts beyond the initialised part fills the bytes but leaves the
            // length alone (no gap is ever counted as initialised).
            let (res, _) = server.write_all(&b"zz"[..]).await;
            res.unwrap();
            let mut buf = Vec::with_capacity(16);
            buf.extend_from_slice(b"ab");
            let (res, slice) = client.read(buf.slice(8..10)).await;
            assert_eq!(res.unwrap(), 2);
            assert_eq!(slice.into_inner(), b"ab");

            // Static data.
            let (res, _) = server.write_all("static str").await;
            res.unwrap();
            let (res, buf) = client.read_exact(Vec::with_capacity(10)).await;
            res.unwrap();
            assert_eq!(buf, b"static str");
        });
    }

    fn one_stream_read_and_written_by_two_tasks(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let client = Rc::new(client);
            // The server echoes.
            let echo_task = coreio::spawn(async move { echo(server).await.unwrap() });
            const LEN: usize = 256 * 1024;
            let reader = coreio::spawn({
                let client = client.clone();
                async move {
                    let (res, buf) = client.read_exact(Vec::with_capacity(LEN)).await;
                    res.unwrap();
                    check_pattern(9, 9, 0, &buf);
                }
            });
            let (res, _) = client.write_all(pattern(9, 9, LEN)).await;
            res.unwrap();
            reader.await.unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            assert_eq!(echo_task.await.unwrap(), LEN as u64);
        });
    }

    fn std_sockets_can_be_adopted(backend: Backend) {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            s.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"pong");
            // Also a std stream that coreio adopts on the client side.
            std::net::TcpStream::connect(addr).unwrap()
        });
        block_on(backend, async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            assert_eq!(listener.local_addr().unwrap(), addr);
            let (server, _) = listener.accept().await.unwrap();
            let (res, buf) = server.read_exact(Vec::with_capacity(4)).await;
            res.unwrap();
            assert_eq!(buf, b"ping");
            let (res, _) = server.write_all(&b"pong"[..]).await;
            res.unwrap();
            let (second, _) = listener.accept().await.unwrap();
            let std_client = peer.join().unwrap();
            let client = TcpStream::from_std(std_client).unwrap();
            let (res, _) = client.write_all(&b"adopted"[..]).await;
            res.unwrap();
            let (res, buf) = second.read_exact(Vec::with_capacity(7)).await;
            res.unwrap();
            assert_eq!(buf, b"adopted");
        });
    }
}

#[test]
fn binding_outside_a_runtime_is_an_error() {
    let err = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap_err();
    assert!(err.to_string().contains("runtime"), "{err}");
}

both_backends! {
    /// Keep-alive, linger and TTL round-trip through the kernel, and the descriptor is there
    /// for options coreio does not wrap (`socket2::SockRef` over `AsFd`).
    fn socket_options_round_trip(backend: Backend) {
        block_on(backend, async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (_server, _) = listener.accept().await.unwrap();
            assert!(!client.keepalive().unwrap());
            client.set_keepalive(true).unwrap();
            assert!(client.keepalive().unwrap());
            assert_eq!(client.linger().unwrap(), None);
            client.set_linger(Some(Duration::from_secs(1))).unwrap();
            assert_eq!(client.linger().unwrap(), Some(Duration::from_secs(1)));
            client.set_ttl(42).unwrap();
            assert_eq!(client.ttl().unwrap(), 42);
            let sock = socket2::SockRef::from(&client);
            sock.set_recv_buffer_size(64 * 1024).unwrap();
            assert!(sock.recv_buffer_size().unwrap() >= 64 * 1024);
            assert!(socket2::SockRef::from(&listener).reuse_port().unwrap());
        });
    }

    /// `set_linger(Some(0))`: dropping the stream resets the connection even with nothing
    /// unread, so the peer's read fails with `ECONNRESET` instead of seeing a FIN.
    fn a_zero_linger_resets_the_peer_on_drop(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let (res, _) = server.write_all(b"bye".to_vec()).await;
            res.unwrap();
            let (res, buf) = client.read(Vec::with_capacity(8)).await;
            assert_eq!(res.unwrap(), 3);
            assert_eq!(buf, b"bye");
            server.set_linger(Some(Duration::ZERO)).unwrap();
            drop(server);
            let (res, _) = client.read(Vec::with_capacity(8)).await;
            let err = res.expect_err("a zero linger resets instead of closing");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        });
    }
}

both_backends! {
    // io_uring: a read after one that emptied the socket (a short read) asks the kernel to wait
    // for data before it tries (`IORING_RECVSEND_POLL_FIRST`); whether the data comes later or
    // is already there when it starts, the read returns it.
    fn a_read_after_one_that_emptied_the_socket_gets_the_next_bytes(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let client = Rc::new(client);
            for msg in 0..4u64 {
                let (res, _) = client.write_all(pattern(1, msg, 10)).await;
                res.unwrap();
                let (res, buf) = server.read(Vec::with_capacity(100)).await;
                assert_eq!(res.unwrap(), 10, "a short read: the socket is empty now");
                check_pattern(1, msg, 0, &buf);
                if msg % 2 == 0 {
                    // The next bytes come while the read waits.
                    let late = coreio::spawn({
                        let client = Rc::clone(&client);
                        async move {
                            sleep(Duration::from_millis(20)).await;
                            client.write_all(pattern(2, msg, 10)).await.0.unwrap();
                        }
                    });
                    let (res, buf) = timeout(Duration::from_secs(20), server.read(Vec::with_capacity(100)))
                        .await
                        .expect("the read never saw the late bytes");
                    assert_eq!(res.unwrap(), 10);
                    check_pattern(2, msg, 0, &buf);
                    late.await.unwrap();
                } else {
                    // The next bytes are there before the read starts.
                    client.write_all(pattern(2, msg, 10)).await.0.unwrap();
                    sleep(Duration::from_millis(5)).await;
                    let (res, buf) = timeout(Duration::from_secs(20), server.read(Vec::with_capacity(100)))
                        .await
                        .expect("the read never saw the queued bytes");
                    assert_eq!(res.unwrap(), 10);
                    check_pattern(2, msg, 0, &buf);
                }
            }
        });
    }
}
