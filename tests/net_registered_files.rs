//! Registered files (`Builder::registered_files`): on io_uring a socket that has started enough
//! operations takes a slot in its ring's file table and its operations name the slot; the slot
//! is emptied before the socket closes or leaves the core, so a closed connection ends at once
//! and a closed listener's port is free at once; a full table leaves the other sockets on their
//! descriptors. On epoll there is no table and the same programs behave the same.
//!
//! `COREIO_REGISTERED_FILES` overrides the builder's table; these tests then check only what
//! holds for any table.

#[macro_use]
mod util;

use std::io::Read;
use std::time::Duration;

use coreio::Builder;
use coreio::net::{TcpListener, TcpStream};
use coreio::time::timeout;

use util::{check_pattern, pair, pattern};

/// Whether the environment set the table's shape instead of the test.
fn table_from_env() -> bool {
    std::env::var_os("COREIO_REGISTERED_FILES").is_some()
}

/// Sockets registered in the current core's table now; `None` on epoll.
fn registered() -> Option<u32> {
    coreio::stats::ring().map(|stats| stats.registered_files)
}

/// `rounds` messages from `client` echoed back by `server`, each checked.
async fn echo_rounds(client: &TcpStream, server: &TcpStream, conn: u64, rounds: u64) {
    for msg in 0..rounds {
        let (res, _) = client.write_all(pattern(conn, msg, 300)).await;
        res.unwrap();
        let (res, buf) = server.read_exact(Vec::with_capacity(300)).await;
        res.unwrap();
        check_pattern(conn, msg, 0, &buf);
        let (res, _) = server.write_all(buf).await;
        res.unwrap();
        let (res, buf) = client.read_exact(Vec::with_capacity(300)).await;
        res.unwrap();
        check_pattern(conn, msg, 0, &buf);
    }
}

both_backends! {
    fn a_busy_connection_is_registered_and_its_bytes_arrive_intact(backend: Backend) {
        Builder::new()
            .backend(backend)
            .registered_files(64, 4)
            .block_on(async move {
                util::assert_backend(backend);
                let (client, server) = pair().await;
                echo_rounds(&client, &server, 1, 50).await;
                match coreio::stats::ring() {
                    Some(stats) if !table_from_env() => {
                        assert_eq!(stats.file_table_slots, 64);
                        assert_eq!(stats.registered_files, 2, "both ends registered: {stats:?}");
                    }
                    Some(_) => {}
                    None => assert!(!util::on_uring()),
                }
                // Dropping a registered stream ends the connection: the peer reads the end.
                drop(client);
                let (res, _) = timeout(Duration::from_secs(10), server.read(vec![0; 16]))
                    .await
                    .expect("the peer never saw the connection end");
                assert_eq!(res.unwrap(), 0);
                drop(server);
                util::reaped_until("the slots were emptied", || registered() == Some(0)).await;
            })
            .unwrap();
    }

    fn a_full_table_leaves_the_other_sockets_on_their_descriptors(backend: Backend) {
        Builder::new()
            .backend(backend)
            .registered_files(1, 1)
            .block_on(async move {
                util::assert_backend(backend);
                let mut pairs = Vec::new();
                for _ in 0..3 {
                    pairs.push(pair().await);
                }
                for (conn, (client, server)) in pairs.iter().enumerate() {
                    echo_rounds(client, server, conn as u64, 10).await;
                }
                if util::on_uring() && !table_from_env() {
                    assert_eq!(registered(), Some(1), "one slot, taken by the first socket");
                }
                // Once every socket closed, the slot serves a new one.
                drop(pairs);
                util::reaped_until("the slot was emptied", || registered() == Some(0)).await;
                let (client, server) = pair().await;
                echo_rounds(&client, &server, 9, 5).await;
                if util::on_uring() && !table_from_env() {
                    assert_eq!(registered(), Some(1), "the freed slot was taken again");
                }
            })
            .unwrap();
    }

    fn a_registered_listener_frees_its_port_when_dropped(backend: Backend) {
        Builder::new()
            .backend(backend)
            .registered_files(64, 1)
            .block_on(async move {
                util::assert_backend(backend);
                let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let addr = listener.local_addr().unwrap();
                let mut accepted = Vec::new();
                for _ in 0..3 {
                    let (client, server) = util::pair_on(&listener).await;
                    accepted.push((client, server));
                }
                drop(listener);
                // No yield in between: the port must be free when the drop returns.
                let again = TcpListener::bind(addr).expect("the dropped listener kept its port");
                let (client, server) = util::pair_on(&again).await;
                echo_rounds(&client, &server, 1, 3).await;
            })
            .unwrap();
    }

    fn a_registered_stream_leaving_the_core_is_closed_by_its_new_owner(backend: Backend) {
        Builder::new()
            .backend(backend)
            .registered_files(64, 1)
            .block_on(async move {
                util::assert_backend(backend);
                let (client, server) = pair().await;
                echo_rounds(&client, &server, 1, 5).await;
                let client = client.into_std().expect("no operation in flight");
                let mut peer = server.into_std().expect("no operation in flight");
                // The ring no longer holds either file: closing the std socket ends the
                // connection at once, and the core does not run meanwhile.
                drop(client);
                peer.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut rest = Vec::new();
                peer.read_to_end(&mut rest).expect("the connection did not end");
                assert!(rest.is_empty());
                util::reaped_until("the slots were emptied", || registered() == Some(0)).await;
            })
            .unwrap();
    }

    fn no_table_changes_nothing(backend: Backend) {
        Builder::new()
            .backend(backend)
            .registered_files(0, 1)
            .block_on(async move {
                util::assert_backend(backend);
                let (client, server) = pair().await;
                echo_rounds(&client, &server, 1, 10).await;
                if let Some(stats) = coreio::stats::ring()
                    && !table_from_env()
                {
                    assert_eq!((stats.file_table_slots, stats.registered_files), (0, 0));
                }
            })
            .unwrap();
    }
}

#[test]
fn registering_before_the_first_operation_is_refused() {
    if table_from_env() {
        return; // The environment's table replaces the builder's.
    }
    let err = Builder::new()
        .registered_files(16, 0)
        .block_on(async {})
        .expect_err("register_after 0 is invalid");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("registered_files"), "{err}");
}
