//! Cancel safety: a read or an accept whose future is dropped after the kernel completed it
//! loses nothing. The bytes a dropped read took come back, in order, from the next reads; the
//! connection a dropped accept took comes back from the next accept; a hand-off carries the
//! bytes to the other core. On epoll a dropped operation never took anything; on io_uring the
//! runtime keeps what it took. Both backends must behave alike.
//!
//! Most tests make the losing side of the race certain on io_uring: they wait until the kernel
//! has moved the data out of the socket (its receive queue is empty, or the listener is no
//! longer readable) before dropping the future. The `..._right_after_a_dropped_one_...` tests
//! drop it while its completion and its cancellation race in the kernel, and start the next
//! operation at once; the stress test repeats that race many times. Whichever side wins, the
//! verdict is the same, so none depends on timing.

#[macro_use]
mod util;

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use coreio::net::{TcpListener, TcpStream};
use coreio::sync::Event;
use coreio::time::{sleep, timeout};
use coreio::{Builder, mesh};

use util::{XorShift, block_on, check_pattern, pair, pattern, two_or_fewer_cores};

/// Generous bound for waits that only run out when something is broken.
const PATIENCE: Duration = Duration::from_secs(20);

/// Starts a read of `capacity` bytes on `stream`, lets `peer` write `data`, waits until the
/// read's receive has taken it out of the socket (io_uring), then drops the read unclaimed.
async fn drop_a_read_that_took(stream: &TcpStream, peer: &TcpStream, capacity: usize, data: &[u8]) {
    // A fresh task poll: the budget cannot make the first poll yield before submitting.
    coreio::yield_now().await;
    let mut read = pin!(stream.read(Vec::with_capacity(capacity)));
    util::poll_once_pending(read.as_mut());
    let (res, _) = peer.write_all(data.to_vec()).await;
    res.unwrap();
    let fd = stream.as_raw_fd();
    util::reaped_until("the receive taking the data", || util::queued(fd) == 0).await;
    if !util::on_uring() {
        // On epoll the dropped read's only syscall found nothing: the bytes are still queued.
        assert_eq!(util::queued(fd), data.len());
    }
}

/// Reads until end of stream with buffers of `capacity`; returns everything read.
async fn read_to_end(stream: &TcpStream, capacity: usize) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let (res, buf) = timeout(PATIENCE, stream.read(Vec::with_capacity(capacity)))
            .await
            .expect("a read never finished");
        let n = res.unwrap();
        assert_eq!(buf.len(), n);
        if n == 0 {
            return all;
        }
        assert!(n <= capacity);
        all.extend_from_slice(&buf);
    }
}

both_backends! {
    fn a_dropped_read_keeps_its_bytes_for_the_next_read(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let head = pattern(1, 0, 1000);
            drop_a_read_that_took(&client, &server, 4096, &head).await;
            // More data after the dropped read's: it must come after, never before.
            let tail = pattern(1, 1, 500);
            let (res, _) = server.write_all(tail.clone()).await;
            res.unwrap();
            server.shutdown(Shutdown::Write).unwrap();
            let mut expected = head;
            expected.extend_from_slice(&tail);
            let got = read_to_end(&client, 4096).await;
            assert_eq!(got.len(), expected.len(), "bytes were lost");
            assert!(got == expected, "the bytes came back out of order");
        });
    }

    fn kept_bytes_are_split_over_smaller_reads_in_order(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let head = pattern(2, 0, 1000);
            drop_a_read_that_took(&client, &server, 4096, &head).await;
            let tail = pattern(2, 1, 300);
            let (res, _) = server.write_all(tail.clone()).await;
            res.unwrap();
            drop(server);
            // Reads of 7 bytes: the kept 1000 take 143 of them, then the tail follows.
            let got = read_to_end(&client, 7).await;
            let mut expected = head;
            expected.extend_from_slice(&tail);
            assert_eq!(got.len(), expected.len(), "bytes were lost");
            assert!(got == expected, "the bytes came back out of order");
        });
    }

    fn kept_bytes_fill_a_slice_like_a_read(backend: Backend) {
        use coreio::buf::IoBuf;
        block_on(backend, async {
            let (client, server) = pair().await;
            drop_a_read_that_took(&client, &server, 4096, b"0123456789").await;
            let (res, _) = server.write_all(b"abc".to_vec()).await;
            res.unwrap();
            drop(server);
            // A read into a slice that starts at the Vec's length appends, as any read does.
            let mut buf = Vec::with_capacity(8);
            buf.extend_from_slice(b"ab");
            let (res, slice) = timeout(PATIENCE, client.read(buf.slice(2..6)))
                .await
                .expect("the read into a slice never finished");
            assert_eq!(res.unwrap(), 4);
            assert_eq!(slice.into_inner(), b"ab0123");
            let (res, buf) = timeout(PATIENCE, client.read_exact(Vec::with_capacity(6)))
                .await
                .expect("read_exact never finished");
            res.unwrap();
            assert_eq!(buf, b"456789");
            assert_eq!(read_to_end(&client, 64).await, b"abc");
        });
    }

    fn a_read_right_after_a_dropped_one_waits_for_it(backend: Backend) {
        // The dropped read is armed in the kernel when the data arrives, and dropped before
        // the core enters the kernel again: its cancellation and the completion with the data
        // race there, and the next read, started at once, must wait for the outcome. Whoever
        // wins, the data comes back first, then what follows it.
        block_on(backend, async {
            let (client, server) = pair().await;
            coreio::yield_now().await;
            let head = pattern(3, 0, 1000);
            let tail = pattern(3, 1, 500);
            {
                let mut read = pin!(client.read(Vec::with_capacity(4096)));
                util::poll_once_pending(read.as_mut());
                // A park: the receive reaches the kernel and waits there.
                sleep(Duration::from_millis(1)).await;
                // The peer writes synchronously, while this core is not in the kernel.
                send_now(&server, &head);
            }
            send_now(&server, &tail);
            server.shutdown(Shutdown::Write).unwrap();
            let mut expected = head;
            expected.extend_from_slice(&tail);
            assert_eq!(read_to_end(&client, 4096).await, expected);
        });
    }

    fn a_dropped_accept_keeps_its_connection_for_the_next_accept(backend: Backend) {
        block_on(backend, async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let fd = listener.as_raw_fd();
            coreio::yield_now().await;
            let first = {
                let mut accept = pin!(listener.accept());
                util::poll_once_pending(accept.as_mut());
                // A blocking connect completes against the backlog without an accept.
                let first = std::net::TcpStream::connect(addr).unwrap();
                util::reaped_until("the accept taking the connection", || !util::acceptable(fd)).await;
                if !util::on_uring() {
                    assert!(util::acceptable(fd), "epoll: the dropped accept took the connection");
                }
                first
            };
            // A second client: the next accept must still give the first one.
            let second = std::net::TcpStream::connect(addr).unwrap();
            let (stream, peer) = timeout(PATIENCE, listener.accept())
                .await
                .expect("the accept after the dropped one never finished")
                .unwrap();
            assert_eq!(
                peer,
                first.local_addr().unwrap(),
                "the next accept did not return the connection the dropped accept took"
            );
            exchange(&stream, first).await;
            let (stream, peer) = timeout(PATIENCE, listener.accept())
                .await
                .expect("the second accept never finished")
                .unwrap();
            assert_eq!(peer, second.local_addr().unwrap());
            exchange(&stream, second).await;
        });
    }

    fn an_accept_right_after_a_dropped_one_waits_for_it(backend: Backend) {
        // As for reads: the connection arrives while the dropped accept is armed in the
        // kernel, and the next accept, started at once, returns it whatever the race's outcome.
        block_on(backend, async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            coreio::yield_now().await;
            let first = {
                let mut accept = pin!(listener.accept());
                util::poll_once_pending(accept.as_mut());
                sleep(Duration::from_millis(1)).await;
                std::net::TcpStream::connect(addr).unwrap()
            };
            let (stream, peer) = {
                let mut accept = pin!(timeout(PATIENCE, listener.accept()));
                let mut cx = Context::from_waker(Waker::noop());
                // Polled once before the second client connects, so that it cannot take it.
                let polled = accept.as_mut().poll(&mut cx);
                let second = std::net::TcpStream::connect(addr).unwrap();
                let accepted = match polled {
                    Poll::Ready(accepted) => accepted,
                    Poll::Pending => accept.await,
                };
                drop(second);
                accepted
                    .expect("the accept after the dropped one never finished")
                    .unwrap()
            };
            assert_eq!(
                peer,
                first.local_addr().unwrap(),
                "the next accept did not return the connection that arrived first"
            );
            exchange(&stream, first).await;
        });
    }

    fn a_stream_handed_off_carries_its_kept_bytes(backend: Backend) {
        let rt = Builder::new().backend(backend).cores(two_or_fewer_cores()).build().unwrap();
        let first = rt.cores()[0];
        let last = *rt.cores().last().unwrap();
        let done = Event::new();
        let outputs = rt.run(|core| {
            let done = done.clone();
            async move {
                if core != first {
                    done.wait().await;
                    return None;
                }
                let (client, server) = pair().await;
                let head = pattern(4, 0, 2000);
                drop_a_read_that_took(&server, &client, 4096, &head).await;
                // The dropped read may still be finishing its cancellation: retry until done.
                let mut server = server;
                let mut refused = 0;
                let handoff = loop {
                    match server.into_handoff() {
                        Ok(handoff) => break handoff,
                        Err(err) => {
                            refused += 1;
                            assert!(refused < 10_000, "the dropped read never finished");
                            server = err.into_inner();
                            coreio::yield_now().await;
                        }
                    }
                };
                let served = mesh::submit_to(last, move || async move {
                    let stream = handoff.adopt().expect("adopt");
                    (coreio::current_core().unwrap(), read_to_end(&stream, 512).await)
                });
                let tail = pattern(4, 1, 700);
                let (res, _) = client.write_all(tail.clone()).await;
                res.unwrap();
                client.shutdown(Shutdown::Write).unwrap();
                let (served_on, got) = timeout(PATIENCE, served)
                    .await
                    .expect("the adopting core never finished reading")
                    .unwrap();
                done.set();
                let mut expected = head;
                expected.extend_from_slice(&tail);
                Some((served_on, got, expected))
            }
        });
        let (served_on, got, expected) = outputs.into_iter().next().unwrap().unwrap().unwrap();
        assert_eq!(served_on, last);
        assert_eq!(got.len(), expected.len(), "bytes were lost in the hand-off");
        assert!(got == expected, "the adopted stream returned the bytes out of order");
    }

    fn reads_cut_by_short_timeouts_lose_and_reorder_nothing(backend: Backend) {
        // The race itself, many times over: the peer writes a known pattern in pieces while
        // the reader wraps every read in a timeout of at most a millisecond and a half and
        // keeps the connection after each. Every byte must arrive exactly once, in order.
        const TOTAL: usize = 512 * 1024;
        block_on(backend, async {
            let (client, server) = pair().await;
            let writer = coreio::spawn(async move {
                let data = pattern(5, 0, TOTAL);
                let mut rng = XorShift::new(5);
                let mut at = 0;
                while at < TOTAL {
                    let len = (1 + rng.below(3000) as usize).min(TOTAL - at);
                    let (res, _) = server.write_all(data[at..at + len].to_vec()).await;
                    res.unwrap();
                    at += len;
                    match rng.below(4) {
                        0 => sleep(Duration::from_millis(1)).await,
                        1 => coreio::yield_now().await,
                        _ => {}
                    }
                }
                // End of stream tells the reader it has everything.
            });
            let mut rng = XorShift::new(6);
            let mut got = Vec::with_capacity(TOTAL);
            let mut timeouts = 0u64;
            loop {
                let capacity = 1 + rng.below(8192) as usize;
                // A third of the timeouts have elapsed when first polled: the read is dropped
                // right after its receive was queued, and the kernel runs that receive (taking
                // whatever is queued) before it sees the cancellation. The others end while
                // the receive waits in the kernel, racing with the data.
                let wait = match rng.below(3) {
                    0 => Duration::ZERO,
                    _ => Duration::from_micros(rng.below(1500)),
                };
                match timeout(wait, client.read(Vec::with_capacity(capacity))).await {
                    Ok((res, buf)) => {
                        let n = res.unwrap();
                        assert_eq!(n, buf.len());
                        if n == 0 {
                            break;
                        }
                        check_pattern(5, 0, got.len() as u64, &buf);
                        got.extend_from_slice(&buf);
                    }
                    Err(_) => {
                        timeouts += 1;
                        // An elapsed timeout never suspends: let the writer and the driver run.
                        coreio::yield_now().await;
                    }
                }
                assert!(got.len() <= TOTAL, "more bytes arrived than were sent");
                assert!(timeouts < 2_000_000, "the reader made no progress");
            }
            writer.await.unwrap();
            assert_eq!(got.len(), TOTAL, "bytes were lost ({timeouts} reads timed out)");
            check_pattern(5, 0, 0, &got);
        });
    }

    fn an_error_taken_by_a_dropped_read_is_reported_by_the_next(backend: Backend) {
        // The peer resets the connection while a read is in flight: on io_uring that read
        // takes the error, and a socket reports an error only once, so the kept error must
        // come back from the next read, as it does on epoll.
        block_on(backend, async {
            let (client, server) = pair().await;
            coreio::yield_now().await;
            {
                let mut read = pin!(client.read(Vec::with_capacity(64)));
                util::poll_once_pending(read.as_mut());
                sleep(Duration::from_millis(1)).await;
                // SO_LINGER 0: closing sends a reset instead of a FIN.
                with_sock(&server, |sock| sock.set_linger(Some(Duration::ZERO))).unwrap();
                drop(server);
                let fd = client.as_raw_fd();
                util::reaped_until("the reset reaching the socket", || tcp_closed(fd)).await;
            }
            let (res, _) = timeout(PATIENCE, client.read(Vec::with_capacity(64)))
                .await
                .expect("the read after the reset never finished");
            let err = res.expect_err("the reset was lost: the next read saw none");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
        });
    }
}

both_backends! {
    fn a_peek_after_a_dropped_read_sees_its_bytes_first_and_leaves_them(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let head = pattern(9, 0, 600);
            drop_a_read_that_took(&client, &server, 4096, &head).await;
            let tail = pattern(9, 1, 200);
            let (res, _) = server.write_all(tail.clone()).await;
            res.unwrap();
            drop(server);
            // The peek sees the held bytes (io_uring) or the queued ones (epoll): the same.
            let (res, peeked) = timeout(PATIENCE, client.peek(Vec::with_capacity(100)))
                .await
                .expect("the peek never finished");
            assert_eq!(res.unwrap(), 100);
            assert_eq!(peeked, head[..100]);
            // Nothing was taken: the reads return all of it, in order.
            let mut expected = head;
            expected.extend_from_slice(&tail);
            assert_eq!(read_to_end(&client, 4096).await, expected);
        });
    }
}

/// The peer sends a byte, this side echoes it back: `stream` and `peer` are the two ends of
/// one connection.
async fn exchange(stream: &TcpStream, mut peer: std::net::TcpStream) {
    use std::io::{Read, Write};
    peer.write_all(b"x").unwrap();
    let (res, buf) = timeout(PATIENCE, stream.read(Vec::with_capacity(1)))
        .await
        .expect("the byte never arrived");
    res.unwrap();
    assert_eq!(buf, b"x");
    let (res, _) = stream.write_all(b"y".to_vec()).await;
    res.unwrap();
    let mut back = [0u8; 1];
    peer.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"y");
}

/// Runs `f` on a `socket2` view of a coreio stream (options, synchronous sends).
fn with_sock<R>(stream: &TcpStream, f: impl FnOnce(&socket2::SockRef<'_>) -> R) -> R {
    // SAFETY: the stream keeps its descriptor open for as long as `stream` is borrowed, which
    // covers the call; `SockRef` never closes the descriptor it views.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    f(&socket2::SockRef::from(&fd))
}

/// Sends `data` on `stream` with one synchronous `send`, bypassing the runtime: the bytes are
/// in the peer's receive queue when this returns (loopback), whatever the core does next.
fn send_now(stream: &TcpStream, data: &[u8]) {
    let sent = with_sock(stream, |sock| sock.send(data)).unwrap();
    assert_eq!(sent, data.len(), "the socket took only part of the data");
}

/// `TCP_CLOSE` of the kernel's `enum tcp_state` (include/net/tcp_states.h).
const TCP_CLOSE: u8 = 7;

/// Whether the TCP connection on `fd` has reached the CLOSE state (a reset arrived).
fn tcp_closed(fd: RawFd) -> bool {
    // SAFETY: an all-zero tcp_info is valid; the kernel fills what it knows.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes and `len` is a valid socklen_t.
    let res = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(res, 0, "TCP_INFO: {}", io::Error::last_os_error());
    info.tcpi_state == TCP_CLOSE
}
