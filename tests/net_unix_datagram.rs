//! `UnixDatagram` on both backends: paths, abstract names, pairs, connected and unconnected
//! sends, truncation reported, peeking, senders' addresses, errors naming the address, a full
//! peer queue that waits instead of dropping, and receives dropped in flight.

#[macro_use]
mod util;

use std::io;
use std::pin::pin;
use std::time::Duration;

use coreio::net::{DatagramTruncated, UnixDatagram, UnixSocketAddr};
use coreio::time::timeout;

use util::{TempPath, block_on, open_fds};

const PATIENCE: Duration = Duration::from_secs(20);

both_backends! {
    fn path_sockets_exchange_datagrams_and_name_their_senders(backend: Backend) {
        block_on(backend, async {
            let (server_path, client_path) = (TempPath::new("dgram"), TempPath::new("dgram"));
            let server = UnixDatagram::bind(server_path.path()).unwrap();
            let client = UnixDatagram::bind(client_path.path()).unwrap();
            assert_eq!(server.local_addr().unwrap().as_pathname(), Some(server_path.path()));
            let (res, _) = client.send_to(b"ping".to_vec(), server_path.path()).await;
            assert_eq!(res.unwrap(), 4);
            let (res, buf) = timeout(PATIENCE, server.recv_from(Vec::with_capacity(64))).await.unwrap();
            let (n, from) = res.unwrap();
            assert_eq!((n, &buf[..]), (4, &b"ping"[..]));
            assert_eq!(from.as_pathname(), Some(client_path.path()));
            // The reply goes back to the sender's address.
            let (res, _) = server.send_to_addr(b"pong".to_vec(), &from).await;
            res.unwrap();
            let (res, buf) = timeout(PATIENCE, client.recv(Vec::with_capacity(64))).await.unwrap();
            assert_eq!(res.unwrap(), 4);
            assert_eq!(buf, b"pong");
        });
    }

    fn an_unbound_sender_is_unnamed_and_a_pair_is_connected(backend: Backend) {
        block_on(backend, async {
            let name = format!("coreio-dgram-{}-{}", std::process::id(), util::on_uring());
            let addr = UnixSocketAddr::from_abstract_name(&name).unwrap();
            let server = UnixDatagram::bind_addr(&addr).unwrap();
            let client = UnixDatagram::unbound().unwrap();
            let (res, _) = client.send_to_addr(b"x".to_vec(), &addr).await;
            res.unwrap();
            let (res, _) = server.recv_from(Vec::with_capacity(8)).await;
            assert!(res.unwrap().1.is_unnamed());

            let (a, b) = UnixDatagram::pair().unwrap();
            let (res, _) = a.send(b"one".to_vec()).await;
            res.unwrap();
            let (res, _) = a.send(Vec::new()).await;
            assert_eq!(res.unwrap(), 0, "an empty datagram is a datagram");
            let (res, buf) = b.recv(Vec::with_capacity(8)).await;
            assert_eq!((res.unwrap(), &buf[..]), (3, &b"one"[..]));
            let (res, _) = b.recv(Vec::with_capacity(8)).await;
            assert_eq!(res.unwrap(), 0);
            assert_eq!(b.peer_cred().unwrap().pid(), Some(std::process::id() as i32));
        });
    }

    fn truncation_is_reported_and_a_peek_leaves_the_datagram(backend: Backend) {
        block_on(backend, async {
            let (a, b) = UnixDatagram::pair().unwrap();
            let (res, _) = a.send(vec![7u8; 100]).await;
            res.unwrap();
            let (res, buf) = b.peek_from(Vec::with_capacity(10)).await;
            let err = res.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            let truncated = err.get_ref().unwrap().downcast_ref::<DatagramTruncated>().unwrap();
            assert_eq!((truncated.datagram_len(), truncated.capacity()), (100, 10));
            assert_eq!(buf, vec![7u8; 10]);
            // Still queued after the peek: a large enough buffer gets it whole.
            let (res, buf) = b.recv_from(Vec::with_capacity(200)).await;
            assert_eq!(res.unwrap().0, 100);
            assert_eq!(buf.len(), 100);
            let (res, _) = a.send(vec![1u8; 50]).await;
            res.unwrap();
            let (res, buf) = b.recv(Vec::with_capacity(20)).await;
            assert!(res.is_err_and(|err| err.kind() == io::ErrorKind::InvalidData));
            assert_eq!(buf.len(), 20);
        });
    }

    fn errors_name_the_address(backend: Backend) {
        block_on(backend, async {
            let missing = TempPath::new("dgram");
            let socket = UnixDatagram::unbound().unwrap();
            let (res, _) = socket.send_to(b"x".to_vec(), missing.path()).await;
            let err = res.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
            assert!(err.to_string().contains(&missing.path().display().to_string()), "{err}");
            let err = socket.connect(missing.path()).unwrap_err();
            assert!(err.to_string().contains("connecting to"), "{err}");
            let taken = TempPath::new("dgram");
            let _first = UnixDatagram::bind(taken.path()).unwrap();
            let err = UnixDatagram::bind(taken.path()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
            assert!(err.to_string().contains(&taken.path().display().to_string()), "{err}");
            let unnamed = UnixDatagram::unbound().unwrap().local_addr().unwrap();
            assert_eq!(
                UnixDatagram::bind_addr(&unnamed).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        });
    }

    fn a_send_to_a_full_peer_waits_and_nothing_is_dropped(backend: Backend) {
        block_on(backend, async {
            let (a, b) = UnixDatagram::pair().unwrap();
            // Fill b's queue with synchronous sends until the kernel refuses one (EAGAIN).
            let mut sent = 0u32;
            loop {
                match socket2::SockRef::from(&a).send(&sent.to_le_bytes()) {
                    Ok(_) => sent += 1,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) => panic!("filling the queue: {err}"),
                }
                assert!(sent < 1_000_000, "the peer's queue never filled");
            }
            // This send must wait for room, not fail and not drop the datagram.
            let blocked = coreio::spawn(async move {
                let (res, _) = a.send(sent.to_le_bytes().to_vec()).await;
                res.unwrap();
                a
            });
            for _ in 0..3 {
                coreio::yield_now().await;
            }
            assert!(!blocked.is_finished(), "a send to a full peer did not wait");
            // Reading makes room: the waiting send completes, and every datagram arrives in order.
            for expected in 0..=sent {
                let (res, buf) = timeout(PATIENCE, b.recv(Vec::with_capacity(4))).await.unwrap();
                assert_eq!(res.unwrap(), 4);
                assert_eq!(u32::from_le_bytes(buf[..4].try_into().unwrap()), expected);
            }
            timeout(PATIENCE, blocked).await.unwrap().unwrap();
        });
    }

    fn an_unconnected_send_to_a_full_peer_waits_for_room(backend: Backend) {
        block_on(backend, async {
            let server_path = TempPath::new("dgram");
            let server = UnixDatagram::bind(server_path.path()).unwrap();
            let client = UnixDatagram::unbound().unwrap();
            let target = socket2::SockAddr::unix(server_path.path()).unwrap();
            let mut sent = 0u32;
            loop {
                match socket2::SockRef::from(&client).send_to(&sent.to_le_bytes(), &target) {
                    Ok(_) => sent += 1,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) => panic!("filling the queue: {err}"),
                }
                assert!(sent < 1_000_000, "the peer's queue never filled");
            }
            let path = server_path.path().to_path_buf();
            let blocked = coreio::spawn(async move {
                let (res, _) = client.send_to(sent.to_le_bytes().to_vec(), &path).await;
                res.unwrap();
            });
            for _ in 0..3 {
                coreio::yield_now().await;
            }
            assert!(!blocked.is_finished(), "a send to a full peer did not wait");
            for expected in 0..=sent {
                let (res, buf) = timeout(PATIENCE, server.recv(Vec::with_capacity(4))).await.unwrap();
                assert_eq!(res.unwrap(), 4, "datagram {expected} of {sent}");
                assert_eq!(u32::from_le_bytes(buf[..4].try_into().unwrap()), expected);
            }
            timeout(PATIENCE, blocked).await.unwrap().unwrap();
        });
    }

    fn dropping_a_receive_in_flight_leaves_the_socket_usable(backend: Backend) {
        block_on(backend, async {
            let baseline = open_fds();
            let (a, b) = UnixDatagram::pair().unwrap();
            coreio::yield_now().await;
            {
                let mut recv = pin!(b.recv(Vec::with_capacity(64)));
                util::poll_once_pending(recv.as_mut());
            }
            let (res, _) = a.send(b"after".to_vec()).await;
            res.unwrap();
            // io_uring: the dropped receive may have taken "after" (UDP's rule); send again.
            let (res, _) = a.send(b"again".to_vec()).await;
            res.unwrap();
            let (res, buf) = timeout(PATIENCE, b.recv(Vec::with_capacity(64))).await.unwrap();
            res.unwrap();
            assert!(buf == b"after" || buf == b"again", "{buf:?}");
            drop((a, b));
            assert_eq!(util::fds_settle_to(baseline).await, baseline);
        });
    }
}
