//! `TcpListener::incoming` and `UnixListener::incoming`: a listener's connections as a
//! stream, in order and with their peers; an error `accept` does not absorb is an item and the
//! stream goes on; the stream ends when the runtime shuts down; dropping it with an accept
//! pending loses no connection.

#[macro_use]
mod util;

use std::collections::HashSet;
use std::net::Shutdown;
use std::pin::pin;
use std::time::Duration;

use coreio::Builder;
use coreio::net::{TcpListener, UnixListener, UnixStream};
use coreio::time::{sleep, timeout};
use futures_lite::StreamExt;

use util::block_on;

const PATIENCE: Duration = Duration::from_secs(10);

both_backends! {
    fn tcp_connections_arrive_with_their_peers(backend: Backend) {
        block_on(backend, async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let clients: Vec<std::net::TcpStream> =
                (0..5).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
            let expected: HashSet<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
            let mut incoming = listener.incoming();
            let mut peers = HashSet::new();
            for _ in 0..5 {
                let (stream, peer) = timeout(PATIENCE, incoming.next()).await.unwrap().unwrap().unwrap();
                assert_eq!(stream.peer_addr().unwrap(), peer);
                peers.insert(peer);
            }
            assert_eq!(peers, expected);
        });
    }

    fn unix_connections_arrive_on_the_stream(backend: Backend) {
        let dir = util::TempDir::new("incoming");
        let path = dir.join("sock");
        block_on(backend, async move {
            let listener = UnixListener::bind(&path).unwrap();
            let mut incoming = listener.incoming();
            for _ in 0..3 {
                let connect = UnixStream::connect(&path);
                let (client, accepted) =
                    futures_lite::future::zip(connect, timeout(PATIENCE, incoming.next())).await;
                let (stream, peer) = accepted.unwrap().unwrap().unwrap();
                assert!(peer.is_unnamed(), "{peer:?}");
                let client = client.unwrap();
                let (res, _) = client.write_all(b"ping".to_vec()).await;
                res.unwrap();
                let (res, buf) = stream.read_exact(Vec::with_capacity(4)).await;
                res.unwrap();
                assert_eq!(buf, b"ping");
            }
        });
    }

    fn an_error_accept_does_not_absorb_is_an_item_and_the_stream_goes_on(backend: Backend) {
        block_on(backend, async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            // A listening socket shut down for reading fails every accept with EINVAL.
            socket2::SockRef::from(&listener).shutdown(Shutdown::Read).unwrap();
            let mut incoming = listener.incoming();
            for _ in 0..2 {
                let item = timeout(PATIENCE, incoming.next()).await.unwrap();
                let err = item.expect("the stream ended on an accept error").unwrap_err();
                assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
            }
        });
    }

    fn the_stream_ends_when_the_runtime_shuts_down(backend: Backend) {
        let rt = Builder::new()
            .backend(backend)
            .cores(1)
            .shutdown_grace(Duration::from_secs(10))
            .build()
            .unwrap();
        let shutdown = rt.shutdown_handle();
        let outputs = rt.run(move |_| {
            let shutdown = shutdown.clone();
            async move {
                let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let mut incoming = listener.incoming();
                let trigger = coreio::spawn(async move {
                    sleep(Duration::from_millis(5)).await;
                    shutdown.trigger();
                });
                let item = timeout(PATIENCE, incoming.next()).await.unwrap();
                assert!(item.is_none(), "the stream went on after the shutdown: {item:?}");
                assert!(futures_core::stream::FusedStream::is_terminated(&incoming));
                assert!(incoming.next().await.is_none(), "an ended stream yielded again");
                trigger.await.unwrap();
            }
        });
        assert!(outputs.iter().all(Result::is_ok), "{outputs:?}");
    }

    fn a_stream_dropped_with_an_accept_pending_loses_no_connection(backend: Backend) {
        block_on(backend, async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            {
                let mut incoming = pin!(listener.incoming());
                let poll = futures_lite::future::poll_once(incoming.next()).await;
                assert!(poll.is_none(), "a connection before any client");
            }
            let client = std::net::TcpStream::connect(addr).unwrap();
            let (_stream, peer) = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
            assert_eq!(peer, client.local_addr().unwrap());
        });
    }
}
