//! `UdpSocket` on both backends: datagram round trips (IPv4, IPv6, connected), peeking,
//! truncation, packet information (answering from the address asked), connection-refused
//! errors, address sharing, the socket options, multicast, bad addresses, dropped receives and
//! many datagrams.
//!
//! Every test runs on loopback and waits for datagrams with a bounded timeout, so a lost one
//! fails the test instead of hanging it. nextest runs each test in a process of its own, so the
//! descriptor count of `dropping_a_receive_in_flight` sees no other test's sockets.

#[macro_use]
mod util;

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::{Context, Waker};
use std::time::Duration;

use coreio::net::{DatagramTruncated, PacketInfo, UdpSocket};
use coreio::time::{sleep, timeout};

use util::{DropHookBuf, block_on, open_fds, wait_until};

/// How long a test waits for a datagram that must arrive: far longer than loopback needs, only
/// there so that a lost datagram fails instead of hanging.
const ARRIVAL: Duration = Duration::from_secs(10);

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn bind(text: &str) -> UdpSocket {
    UdpSocket::bind(addr(text)).unwrap()
}

/// `recv_from` that must deliver within [`ARRIVAL`].
async fn recv_from(socket: &UdpSocket, capacity: usize) -> (Vec<u8>, SocketAddr) {
    let (res, buf) = timeout(ARRIVAL, socket.recv_from(Vec::with_capacity(capacity)))
        .await
        .expect("no datagram arrived");
    let (n, peer) = res.expect("recv_from");
    assert_eq!(n, buf.len());
    (buf, peer)
}

async fn send_to(socket: &UdpSocket, data: &[u8], target: SocketAddr) {
    let (res, _) = socket.send_to(data.to_vec(), target).await;
    assert_eq!(res.expect("send_to"), data.len());
}

/// The `DatagramTruncated` inside an error, if that is what it is.
fn truncation(err: &io::Error) -> Option<DatagramTruncated> {
    err.get_ref()?.downcast_ref::<DatagramTruncated>().copied()
}

/// An address nobody listens on: a socket's port, freed again.
fn closed_port(text: &str) -> SocketAddr {
    let socket = std::net::UdpSocket::bind(text).unwrap();
    socket.local_addr().unwrap()
}

/// A future that counts how often it is polled.
struct CountPolls<F> {
    inner: std::pin::Pin<Box<F>>,
    polls: Rc<Cell<u32>>,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.polls.set(self.polls.get() + 1);
        self.inner.as_mut().poll(cx)
    }
}

both_backends! {
    fn readers_sharing_a_socket_wait_without_waking_each_other(backend: Backend) {
        // Several tasks receiving on one socket (a server's answer loops) all wait for the next
        // datagram: none may wake another to retry (a busy loop of EAGAINs on epoll before).
        block_on(backend, async {
            let server = Rc::new(UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap());
            let addr = server.local_addr().unwrap();
            let readers: Vec<_> = (0..3)
                .map(|_| {
                    let polls = Rc::new(Cell::new(0));
                    let server = Rc::clone(&server);
                    let counted = CountPolls {
                        inner: Box::pin(async move {
                            let (res, _) = server.recv_from(Vec::with_capacity(64)).await;
                            res.unwrap().0
                        }),
                        polls: Rc::clone(&polls),
                    };
                    (coreio::spawn(counted), polls)
                })
                .collect();
            // Many passes of the core loop with every reader waiting.
            for _ in 0..20 {
                sleep(Duration::from_millis(1)).await;
            }
            for (_, polls) in &readers {
                assert!(polls.get() <= 2, "a waiting reader was polled {} times", polls.get());
            }
            let client = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            for _ in 0..3 {
                let (res, _) = client.send_to(b"x".to_vec(), addr).await;
                res.unwrap();
            }
            for (task, _) in readers {
                assert_eq!(timeout(Duration::from_secs(20), task).await.unwrap().unwrap(), 1);
            }
        });
    }

    fn round_trip_v4(backend: Backend) {
        block_on(backend, async {
            let a = bind("127.0.0.1:0");
            let b = bind("127.0.0.1:0");
            let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            send_to(&a, b"hello", b_addr).await;
            let (data, from) = recv_from(&b, 64).await;
            assert_eq!((&data[..], from), (&b"hello"[..], a_addr));
            send_to(&b, b"world", from).await;
            assert_eq!(recv_from(&a, 64).await, (b"world".to_vec(), b_addr));
        });
    }

    fn round_trip_v6(backend: Backend) {
        block_on(backend, async {
            let a = bind("[::1]:0");
            let b = bind("[::1]:0");
            let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            assert!(a_addr.is_ipv6());
            send_to(&a, b"hello6", b_addr).await;
            assert_eq!(recv_from(&b, 64).await, (b"hello6".to_vec(), a_addr));
            send_to(&b, b"world6", a_addr).await;
            assert_eq!(recv_from(&a, 64).await, (b"world6".to_vec(), b_addr));
        });
    }

    fn connected_send_and_recv(backend: Backend) {
        block_on(backend, async {
            let a = bind("127.0.0.1:0");
            let b = bind("127.0.0.1:0");
            let other = bind("127.0.0.1:0");
            let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            assert_eq!(
                a.peer_addr().unwrap_err().kind(),
                io::ErrorKind::NotConnected
            );
            a.connect(b_addr).unwrap();
            b.connect(a_addr).unwrap();
            assert_eq!(a.peer_addr().unwrap(), b_addr);
            // A connected socket only receives from its peer: this one is dropped by the kernel.
            send_to(&other, b"stranger", b_addr).await;
            let (res, _) = a.send(b"ping".to_vec()).await;
            assert_eq!(res.unwrap(), 4);
            let (res, buf) = timeout(ARRIVAL, b.recv(Vec::with_capacity(16)))
                .await
                .expect("no datagram arrived");
            assert_eq!((res.unwrap(), &buf[..]), (4, &b"ping"[..]));
            let (res, _) = b.send(b"pong".to_vec()).await;
            assert_eq!(res.unwrap(), 4);
            let (res, buf) = timeout(ARRIVAL, a.recv(Vec::with_capacity(16)))
                .await
                .expect("no datagram arrived");
            assert_eq!((res.unwrap(), &buf[..]), (4, &b"pong"[..]));
        });
    }

    fn peek_from_leaves_the_datagram(backend: Backend) {
        block_on(backend, async {
            let a = bind("127.0.0.1:0");
            let b = bind("127.0.0.1:0");
            let a_addr = a.local_addr().unwrap();
            send_to(&a, b"first", b.local_addr().unwrap()).await;
            send_to(&a, b"second", b.local_addr().unwrap()).await;
            let (res, buf) = timeout(ARRIVAL, b.peek_from(Vec::with_capacity(64)))
                .await
                .expect("no datagram arrived");
            assert_eq!((res.unwrap(), &buf[..]), ((5, a_addr), &b"first"[..]));
            // Peeking again sees the same datagram.
            let (res, buf) = b.peek_from(Vec::with_capacity(64)).await;
            assert_eq!((res.unwrap(), &buf[..]), ((5, a_addr), &b"first"[..]));
            assert_eq!(recv_from(&b, 64).await, (b"first".to_vec(), a_addr));
            assert_eq!(recv_from(&b, 64).await, (b"second".to_vec(), a_addr));
        });
    }

    fn a_datagram_longer_than_the_buffer_is_reported_truncated(backend: Backend) {
        block_on(backend, async {
            let a = bind("127.0.0.1:0");
            let b = bind("127.0.0.1:0");
            let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            let long = util::pattern(1, 1, 100);

            // recv_from: an error naming both lengths, the first bytes in the buffer, and the
            // datagram gone (the next receive gets the next one).
            send_to(&a, &long, b_addr).await;
            send_to(&a, b"next", b_addr).await;
            let (res, buf) = timeout(ARRIVAL, b.recv_from(Vec::with_capacity(10)))
                .await
                .expect("no datagram arrived");
            let err = res.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            let t = truncation(&err).expect("a DatagramTruncated error");
            assert_eq!((t.datagram_len(), t.capacity(), t.peer()), (100, 10, Some(a_addr)));
            assert!(err.to_string().contains("100"), "{err}");
            assert_eq!(&buf[..], &long[..10]);
            assert_eq!(recv_from(&b, 64).await, (b"next".to_vec(), a_addr));

            // peek_from: the same error, and the datagram stays for a larger buffer.
            send_to(&a, &long, b_addr).await;
            let (res, buf) = timeout(ARRIVAL, b.peek_from(Vec::with_capacity(10)))
                .await
                .expect("no datagram arrived");
            assert_eq!(truncation(&res.unwrap_err()).unwrap().datagram_len(), 100);
            assert_eq!(&buf[..], &long[..10]);
            assert_eq!(recv_from(&b, 128).await, (long.clone(), a_addr));

            // recv_msg: no error, the metadata says so.
            send_to(&a, &long, b_addr).await;
            let (res, buf) = timeout(ARRIVAL, b.recv_msg(Vec::with_capacity(10)))
                .await
                .expect("no datagram arrived");
            let meta = res.unwrap();
            assert!(meta.truncated());
            assert_eq!((meta.len(), meta.datagram_len(), meta.peer()), (10, 100, a_addr));
            assert_eq!(&buf[..], &long[..10]);

            // recv on a connected socket.
            b.connect(a_addr).unwrap();
            send_to(&a, &long, b_addr).await;
            let (res, buf) = timeout(ARRIVAL, b.recv(Vec::with_capacity(10)))
                .await
                .expect("no datagram arrived");
            let t = truncation(&res.unwrap_err()).unwrap();
            assert_eq!((t.datagram_len(), t.capacity(), t.peer()), (100, 10, None));
            assert_eq!(&buf[..], &long[..10]);

            // A buffer with no room at all still learns the length.
            send_to(&a, &long, b_addr).await;
            let (res, buf) = timeout(ARRIVAL, b.recv(Vec::new())).await.unwrap();
            let t = truncation(&res.unwrap_err()).unwrap();
            assert_eq!((t.datagram_len(), t.capacity(), buf.len()), (100, 0, 0));

            // An exact fit is not truncated, and an empty datagram is Ok(0).
            send_to(&a, &long[..10], b_addr).await;
            let (res, buf) = timeout(ARRIVAL, b.recv(Vec::with_capacity(10))).await.unwrap();
            assert_eq!((res.unwrap(), &buf[..]), (10, &long[..10]));
            send_to(&a, b"", b_addr).await;
            let (res, buf) = timeout(ARRIVAL, b.recv(Vec::with_capacity(10))).await.unwrap();
            assert_eq!((res.unwrap(), buf.len()), (0, 0));
        });
    }

    fn pktinfo_answers_from_the_address_asked_v4(backend: Backend) {
        block_on(backend, async {
            let server = bind("0.0.0.0:0");
            let port = server.local_addr().unwrap().port();
            assert!(!server.recv_pktinfo().unwrap());
            server.set_recv_pktinfo(true).unwrap();
            assert!(server.recv_pktinfo().unwrap());
            let client = bind("127.0.0.1:0");
            // 127.0.0.2 is a loopback address too: the reply must come from it, not from the
            // address the routing table would pick (127.0.0.1).
            for dst in [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)] {
                let target = SocketAddr::new(IpAddr::V4(dst), port);
                send_to(&client, b"query", target).await;
                let (res, buf) = timeout(ARRIVAL, server.recv_msg(Vec::with_capacity(64)))
                    .await
                    .expect("no query arrived");
                let meta = res.unwrap();
                assert!(!meta.truncated());
                assert_eq!(meta.peer(), client.local_addr().unwrap());
                let info = meta.packet_info().expect("packet info");
                assert_eq!(info.destination(), IpAddr::V4(dst));
                assert_eq!(info.local(), IpAddr::V4(dst));
                assert_ne!(info.interface(), 0);
                assert_eq!(&buf[..], b"query");
                let (res, _) = server.send_msg(b"answer".to_vec(), meta.peer(), Some(info)).await;
                assert_eq!(res.unwrap(), 6);
                assert_eq!(recv_from(&client, 64).await, (b"answer".to_vec(), target));
            }
            // A source chosen by hand, without a query.
            let source = PacketInfo::new("127.0.0.3".parse().unwrap());
            let (res, _) = server
                .send_msg(b"hand".to_vec(), client.local_addr().unwrap(), Some(source))
                .await;
            res.unwrap();
            assert_eq!(recv_from(&client, 64).await, (b"hand".to_vec(), addr(&format!("127.0.0.3:{port}"))));
            // Without the option, recv_msg reports no packet info.
            server.set_recv_pktinfo(false).unwrap();
            send_to(&client, b"plain", addr(&format!("127.0.0.1:{port}"))).await;
            let (res, _) = timeout(ARRIVAL, server.recv_msg(Vec::with_capacity(64))).await.unwrap();
            assert_eq!(res.unwrap().packet_info(), None);
        });
    }

    fn pktinfo_answers_from_the_address_asked_v6(backend: Backend) {
        block_on(backend, async {
            let server = UdpSocket::builder().only_v6(true).bind(addr("[::]:0")).unwrap();
            assert!(server.only_v6().unwrap());
            let port = server.local_addr().unwrap().port();
            server.set_recv_pktinfo(true).unwrap();
            assert!(server.recv_pktinfo().unwrap());
            let client = bind("[::1]:0");
            let target = addr(&format!("[::1]:{port}"));
            send_to(&client, b"query6", target).await;
            let (res, _) = timeout(ARRIVAL, server.recv_msg(Vec::with_capacity(64))).await.unwrap();
            let meta = res.unwrap();
            let info = meta.packet_info().expect("packet info");
            assert_eq!(info.destination(), IpAddr::V6(Ipv6Addr::LOCALHOST));
            let (res, _) = server.send_msg(b"answer6".to_vec(), meta.peer(), Some(info)).await;
            res.unwrap();
            assert_eq!(recv_from(&client, 64).await, (b"answer6".to_vec(), target));
        });
    }

    fn pktinfo_on_a_dual_stack_socket_covers_ipv4(backend: Backend) {
        block_on(backend, async {
            let server = UdpSocket::builder().only_v6(false).bind(addr("[::]:0")).unwrap();
            assert!(!server.only_v6().unwrap());
            let port = server.local_addr().unwrap().port();
            server.set_recv_pktinfo(true).unwrap();
            let client = bind("127.0.0.1:0");
            let target = addr(&format!("127.0.0.2:{port}"));
            send_to(&client, b"query", target).await;
            let (res, _) = timeout(ARRIVAL, server.recv_msg(Vec::with_capacity(64))).await.unwrap();
            let meta = res.unwrap();
            let mapped: Ipv6Addr = "::ffff:127.0.0.2".parse().unwrap();
            let info = meta.packet_info().expect("packet info");
            assert_eq!(info.destination(), IpAddr::V6(mapped));
            let (res, _) = server.send_msg(b"answer".to_vec(), meta.peer(), Some(info)).await;
            res.unwrap();
            assert_eq!(recv_from(&client, 64).await, (b"answer".to_vec(), target));
            // An IPv4 source given by hand travels as its mapped address.
            let source = PacketInfo::new("127.0.0.3".parse().unwrap());
            let (res, _) = server.send_msg(b"hand".to_vec(), meta.peer(), Some(source)).await;
            res.unwrap();
            assert_eq!(recv_from(&client, 64).await, (b"hand".to_vec(), addr(&format!("127.0.0.3:{port}"))));
        });
    }

    fn connection_refused_comes_back_on_a_connected_socket(backend: Backend) {
        block_on(backend, async {
            let closed = closed_port("127.0.0.1:0");
            let socket = bind("127.0.0.1:0");
            socket.connect(closed).unwrap();
            // The ICMP port-unreachable comes back after the send; the next operation reports
            // it. Resent a bounded number of times in case one reply is rate-limited away.
            let mut refused = None;
            for _ in 0..50 {
                let (res, _) = socket.send(b"anyone?".to_vec()).await;
                if let Err(err) = res {
                    refused = Some(err);
                    break;
                }
                match timeout(Duration::from_millis(200), socket.recv(Vec::with_capacity(16))).await {
                    Ok((res, _)) => {
                        refused = Some(res.expect_err("nobody should answer"));
                        break;
                    }
                    Err(_) => continue,
                }
            }
            let err = refused.expect("no ECONNREFUSED after 50 sends");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
            // The error is reported once; the socket then works with a live peer.
            let peer = bind("127.0.0.1:0");
            socket.connect(peer.local_addr().unwrap()).unwrap();
            let (res, _) = socket.send(b"hello".to_vec()).await;
            res.unwrap();
            assert_eq!(recv_from(&peer, 16).await.0, b"hello");
        });
    }

    fn an_address_is_not_shared_unless_asked(backend: Backend) {
        block_on(backend, async {
            let first = bind("127.0.0.1:0");
            let taken = first.local_addr().unwrap();
            let err = UdpSocket::bind(taken).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
            assert!(err.to_string().contains(&taken.to_string()), "{err}");
            // Asking for sharing does not let a socket join one that did not ask.
            let err = UdpSocket::builder().reuse_port(true).bind(taken).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse);

            // Sockets that all ask share the address.
            let a = UdpSocket::builder().reuse_port(true).bind(addr("127.0.0.1:0")).unwrap();
            let shared = a.local_addr().unwrap();
            let b = UdpSocket::builder().reuse_port(true).bind(shared).unwrap();
            assert_eq!(b.local_addr().unwrap(), shared);
            let err = UdpSocket::bind(shared).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
            // Both receive: each datagram goes to one of them.
            let client = bind("127.0.0.1:0");
            send_to(&client, b"x", shared).await;
            let got = timeout(ARRIVAL, async {
                let (ra, rb) = (a.recv_from(Vec::with_capacity(8)), b.recv_from(Vec::with_capacity(8)));
                let (mut ra, mut rb) = (std::pin::pin!(ra), std::pin::pin!(rb));
                std::future::poll_fn(|cx| {
                    use std::task::Poll;
                    if let Poll::Ready((res, buf)) = std::future::Future::poll(ra.as_mut(), cx) {
                        return Poll::Ready((res, buf));
                    }
                    std::future::Future::poll(rb.as_mut(), cx)
                })
                .await
            })
            .await
            .expect("neither shared socket got the datagram");
            assert_eq!(&got.1[..], b"x");
        });
    }

    fn every_core_binds_the_same_port_with_reuse_port(backend: Backend) {
        // A socket outside the runtime holds the port (with SO_REUSEPORT) for the whole test, and
        // every core binds it while the others hold it too (the barrier), so each bind is a
        // real share.
        let holder = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        holder.set_reuse_port(true).unwrap();
        holder.bind(&addr("127.0.0.1:0").into()).unwrap();
        let shared = holder.local_addr().unwrap().as_socket().unwrap();
        let rt = coreio::Builder::new()
            .backend(backend)
            .cores(util::two_or_fewer_cores())
            .build()
            .unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(rt.cores().len()));
        let results = rt.run(move |_core| {
            let barrier = barrier.clone();
            async move {
                util::assert_backend(backend);
                let socket = UdpSocket::builder().reuse_port(true).bind(shared)?;
                // Blocking a core here is fine: nothing else runs on it.
                barrier.wait();
                let plain = UdpSocket::bind(shared).map(drop).unwrap_err();
                socket.local_addr().map(|local| (local, plain.kind()))
            }
        });
        for result in results {
            let (local, plain) = result.expect("core failed").expect("bind with reuse_port");
            assert_eq!(local, shared);
            assert_eq!(plain, io::ErrorKind::AddrInUse);
        }
        drop(holder);
    }

    fn options_round_trip(backend: Backend) {
        block_on(backend, async {
            let v4 = bind("127.0.0.1:0");
            assert!(!v4.broadcast().unwrap());
            v4.set_broadcast(true).unwrap();
            assert!(v4.broadcast().unwrap());
            v4.set_ttl(7).unwrap();
            assert_eq!(v4.ttl().unwrap(), 7);
            v4.set_multicast_loop_v4(false).unwrap();
            assert!(!v4.multicast_loop_v4().unwrap());
            v4.set_multicast_ttl_v4(3).unwrap();
            assert_eq!(v4.multicast_ttl_v4().unwrap(), 3);
            v4.set_multicast_if_v4(Ipv4Addr::LOCALHOST).unwrap();
            assert_eq!(v4.multicast_if_v4().unwrap(), Ipv4Addr::LOCALHOST);
            v4.set_recv_buffer_size(64 * 1024).unwrap();
            assert!(v4.recv_buffer_size().unwrap() >= 64 * 1024);
            v4.set_send_buffer_size(64 * 1024).unwrap();
            assert!(v4.send_buffer_size().unwrap() >= 64 * 1024);
            assert!(v4.take_error().unwrap().is_none());
            // IPv6 options on an IPv4 socket say what is wrong.
            for err in [
                v4.only_v6().unwrap_err(),
                v4.set_multicast_loop_v6(true).unwrap_err(),
                v4.set_multicast_hops_v6(2).unwrap_err(),
                v4.join_multicast_v6("ff02::1:3".parse().unwrap(), 0).unwrap_err(),
            ] {
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
                assert!(err.to_string().contains("IPv6"), "{err}");
            }

            let v6 = bind("[::1]:0");
            v6.set_ttl(9).unwrap();
            assert_eq!(v6.ttl().unwrap(), 9);
            v6.set_multicast_loop_v6(false).unwrap();
            assert!(!v6.multicast_loop_v6().unwrap());
            v6.set_multicast_hops_v6(4).unwrap();
            assert_eq!(v6.multicast_hops_v6().unwrap(), 4);
            v6.set_multicast_if_v6(lo_index()).unwrap();
            assert_eq!(v6.multicast_if_v6().unwrap(), lo_index());
            let debug = format!("{v6:?}");
            assert!(debug.contains("UdpSocket") && debug.contains("::1"), "{debug}");
        });
    }

    fn multicast_v4_is_delivered_on_loopback(backend: Backend) {
        block_on(backend, async {
            let group = Ipv4Addr::new(239, 255, 42, 17);
            let receiver = bind("0.0.0.0:0");
            let port = receiver.local_addr().unwrap().port();
            receiver.join_multicast_v4(group, Ipv4Addr::LOCALHOST).unwrap();
            let sender = bind("127.0.0.1:0");
            sender.set_multicast_if_v4(Ipv4Addr::LOCALHOST).unwrap();
            sender.set_multicast_loop_v4(true).unwrap();
            let target = SocketAddr::new(IpAddr::V4(group), port);
            send_to(&sender, b"to the group", target).await;
            let (data, from) = recv_from(&receiver, 64).await;
            assert_eq!((&data[..], from), (&b"to the group"[..], sender.local_addr().unwrap()));
            receiver.leave_multicast_v4(group, Ipv4Addr::LOCALHOST).unwrap();
            // Leaving twice, or joining an address that is no group, fails naming the group.
            let err = receiver.leave_multicast_v4(group, Ipv4Addr::LOCALHOST).unwrap_err();
            assert!(err.to_string().contains("239.255.42.17"), "{err}");
            let err = receiver
                .join_multicast_v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::LOCALHOST)
                .unwrap_err();
            assert!(err.to_string().contains("10.0.0.1"), "{err}");
        });
    }

    fn multicast_v6_join_and_leave(backend: Backend) {
        block_on(backend, async {
            // Delivery over IPv6 multicast needs a route that containers often lack, so only
            // membership is checked here.
            let group: Ipv6Addr = "ff02::1:3".parse().unwrap();
            let socket = bind("[::]:0");
            socket.join_multicast_v6(group, lo_index()).unwrap();
            socket.leave_multicast_v6(group, lo_index()).unwrap();
            let err = socket.join_multicast_v6(group, 999_999).unwrap_err();
            assert!(err.to_string().contains("ff02::1:3"), "{err}");
        });
    }

    fn bad_addresses_are_errors(backend: Backend) {
        block_on(backend, async {
            let v4 = bind("127.0.0.1:0");
            // An IPv6 target on an IPv4 socket: refused before the kernel, buffer given back.
            let (res, buf) = v4.send_to(b"data".to_vec(), addr("[::1]:9")).await;
            let err = res.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("[::1]:9"), "{err}");
            assert_eq!(buf, b"data");
            let err = v4.connect(addr("[::1]:9")).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            // Port 0 is no destination.
            let (res, _) = v4.send_to(b"data".to_vec(), addr("127.0.0.1:0")).await;
            assert!(res.is_err());
            // No peer to send to.
            let (res, _) = v4.send(b"data".to_vec()).await;
            assert!(res.is_err());
            // An address that is not the host's.
            let err = UdpSocket::bind(addr("192.0.2.1:0")).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
            assert!(err.to_string().contains("192.0.2.1:0"), "{err}");
            let err = UdpSocket::builder().only_v6(true).bind(addr("127.0.0.1:0")).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            // Sources a send cannot use.
            let target = v4.local_addr().unwrap();
            let any = bind("0.0.0.0:0");
            let (res, buf) = any
                .send_msg(b"x".to_vec(), target, Some(PacketInfo::new("::1".parse().unwrap())))
                .await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidInput);
            assert_eq!(buf, b"x");
            let (res, _) = any
                .send_msg(b"x".to_vec(), target, Some(PacketInfo::new("192.0.2.1".parse().unwrap())))
                .await;
            assert!(res.is_err(), "a source the host does not have was accepted");
            // The sockets still work.
            send_to(&any, b"fine", target).await;
            assert_eq!(recv_from(&v4, 8).await.0, b"fine");
        });
    }

    fn dropping_a_receive_in_flight(backend: Backend) {
        let outside = open_fds();
        block_on(backend, async {
            let sender = bind("127.0.0.1:0");
            // Warm up whatever grows on first use, then take the baseline.
            drop(bind("127.0.0.1:0"));
            sleep(Duration::from_millis(2)).await;
            let before = open_fds();
            for round in 0..30u64 {
                let socket = Rc::new(bind("127.0.0.1:0"));
                let target = socket.local_addr().unwrap();
                let freed = Rc::new(Cell::new(0));
                let buf = {
                    let freed = freed.clone();
                    DropHookBuf::new(64, move || freed.set(freed.get() + 1))
                };
                match round % 3 {
                    // Cut off by a timeout.
                    0 => {
                        let res = timeout(Duration::from_millis(1), socket.recv_from(buf)).await;
                        assert!(res.is_err());
                    }
                    // In a task that is aborted.
                    1 => {
                        let s = socket.clone();
                        let task = coreio::spawn(async move {
                            let _ = s.recv_msg(buf).await;
                        });
                        coreio::yield_now().await;
                        task.abort();
                    }
                    // The socket dropped too, while the receive is still in the ring.
                    _ => {
                        let s = socket.clone();
                        let task = coreio::spawn(async move {
                            let _ = s.recv(buf).await;
                        });
                        coreio::yield_now().await;
                        task.abort();
                        drop(socket);
                        assert!(wait_until(400, || freed.get() == 1).await, "buffer not freed");
                        continue;
                    }
                }
                // Freed once, after the kernel let go of it.
                assert!(wait_until(400, || freed.get() == 1).await, "buffer not freed");
                // The socket still receives.
                send_to(&sender, b"after", target).await;
                assert_eq!(recv_from(&socket, 16).await.0, b"after");
                drop(socket);
                assert_eq!(freed.get(), 1, "buffer freed twice");
            }
            let mut after = open_fds();
            for _ in 0..400 {
                if after == before {
                    break;
                }
                sleep(Duration::from_millis(1)).await;
                after = open_fds();
            }
            assert_eq!(after, before, "dropped receives left descriptors open");
        });
        assert_eq!(open_fds(), outside, "the runtime left descriptors open");
    }

    fn a_datagram_a_dropped_receive_took_is_dropped(backend: Backend) {
        block_on(backend, async {
            let socket = bind("127.0.0.1:0");
            let sender = bind("127.0.0.1:0");
            let target = socket.local_addr().unwrap();
            let fd = socket.as_raw_fd();
            let freed = Rc::new(Cell::new(0));
            let buf = {
                let freed = freed.clone();
                DropHookBuf::new(64, move || freed.set(freed.get() + 1))
            };
            // A fresh task poll: the budget cannot make the first poll yield before submitting.
            coreio::yield_now().await;
            let mut recv = Box::pin(socket.recv_from(buf));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(recv.as_mut().poll(&mut cx).is_pending());
            send_to(&sender, b"first", target).await;
            let on_uring = coreio::backend() == Some(coreio::Backend::IoUring);
            if on_uring {
                // The receive in the ring takes the datagram off the socket.
                assert!(wait_until(4000, || util::queued(fd) == 0).await, "never received");
            }
            drop(recv);
            assert!(wait_until(400, || freed.get() == 1).await, "buffer not freed");
            send_to(&sender, b"second", target).await;
            let (data, _) = recv_from(&socket, 16).await;
            // io_uring: the dropped receive's datagram went with its buffer (documented). epoll:
            // the dropped receive never ran its syscall after the datagram came.
            let expected: &[u8] = if on_uring { b"second" } else { b"first" };
            assert_eq!(data, expected);
            assert_eq!(freed.get(), 1, "buffer freed twice");
        });
    }

    fn a_full_receive_buffer_drops_datagrams_and_recovers(backend: Backend) {
        block_on(backend, async {
            let a = bind("127.0.0.1:0");
            let b = bind("127.0.0.1:0");
            let b_addr = b.local_addr().unwrap();
            // The kernel's minimum: a few datagrams of 1000 bytes fill it.
            b.set_recv_buffer_size(1).unwrap();
            const SENT: usize = 100;
            for i in 0..SENT {
                // A full receiver never blocks or fails the sender: its datagrams are dropped.
                send_to(&a, &util::pattern(i as u64, 0, 1000), b_addr).await;
            }
            // Receive what was kept, then until a datagram sent afterwards arrives: the socket
            // recovers. (Resent while it may itself meet a full buffer, in a bounded loop.)
            let mut received = 0;
            let mut recovered = false;
            'rounds: for _ in 0..50 {
                send_to(&a, b"again", b_addr).await;
                for _ in 0..=SENT {
                    match timeout(Duration::from_millis(200), b.recv_from(Vec::with_capacity(1000)))
                        .await
                    {
                        Ok((res, data)) => {
                            res.unwrap();
                            if data == b"again" {
                                recovered = true;
                                break 'rounds;
                            }
                            assert_eq!(data.len(), 1000);
                            received += 1;
                        }
                        Err(_) => continue 'rounds,
                    }
                }
            }
            assert!(recovered, "the socket did not receive again after its buffer was full");
            assert!(received < SENT, "all {SENT} datagrams fit a minimal buffer");
        });
    }

    fn many_datagrams_arrive_whole(backend: Backend) {
        block_on(backend, async {
            const ROUNDS: u64 = 32;
            const PER_ROUND: u64 = 32;
            let a = bind("127.0.0.1:0");
            let b = bind("127.0.0.1:0");
            let b_addr = b.local_addr().unwrap();
            let len_of = |seq: u64| 8 + (seq * 37 % 900) as usize;
            for round in 0..ROUNDS {
                for i in 0..PER_ROUND {
                    let seq = round * PER_ROUND + i;
                    let mut data = seq.to_le_bytes().to_vec();
                    data.extend(util::pattern(seq, 0, len_of(seq) - 8));
                    send_to(&a, &data, b_addr).await;
                }
                // Loopback keeps every datagram, but not necessarily their order when the
                // thread moves between CPUs: compare the round as a set.
                let mut seen = Vec::new();
                for _ in 0..PER_ROUND {
                    let (data, _) = recv_from(&b, 1024).await;
                    let seq = u64::from_le_bytes(data[..8].try_into().unwrap());
                    assert_eq!(data.len(), len_of(seq), "datagram {seq} has the wrong length");
                    util::check_pattern(seq, 0, 0, &data[8..]);
                    seen.push(seq);
                }
                seen.sort_unstable();
                let expected: Vec<u64> = (round * PER_ROUND..(round + 1) * PER_ROUND).collect();
                assert_eq!(seen, expected);
            }
        });
    }

    fn from_std_wraps_a_bound_socket(backend: Backend) {
        block_on(backend, async {
            let std_socket = std::net::UdpSocket::bind("[::1]:0").unwrap();
            let socket = UdpSocket::from_std(std_socket).unwrap();
            let target = socket.local_addr().unwrap();
            let peer = std::net::UdpSocket::bind("[::1]:0").unwrap();
            peer.send_to(b"from std", target).unwrap();
            assert_eq!(recv_from(&socket, 16).await, (b"from std".to_vec(), peer.local_addr().unwrap()));
            // IPv6 options work: the family came from the descriptor.
            socket.set_multicast_hops_v6(2).unwrap();
            send_to(&socket, b"to std", peer.local_addr().unwrap()).await;
            let mut buf = [0; 16];
            peer.set_read_timeout(Some(ARRIVAL)).unwrap();
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"to std"[..], target));
        });
    }
}

/// The index of the loopback interface.
fn lo_index() -> u32 {
    // SAFETY: the argument is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    assert_ne!(
        index,
        0,
        "no loopback interface: {}",
        io::Error::last_os_error()
    );
    index
}
