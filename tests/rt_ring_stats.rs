//! `coreio::stats::ring`: a ring too small for its load overflows its completion queue, the
//! overflow is counted, and no completion is lost (the kernel keeps the extra ones, and the
//! core flushes them). On epoll there is no ring and no counter.

#[macro_use]
mod util;

use std::time::Duration;

use coreio::Builder;
use coreio::time::timeout;

use util::{check_pattern, pair, pattern};

both_backends! {
    fn a_small_ring_overflows_and_loses_no_completion(backend: Backend) {
        Builder::new()
            .backend(backend)
            // 4 submission entries, 8 completion entries, for 64 connections at once.
            .ring_entries(4)
            .block_on(async move {
                util::assert_backend(backend);
                let mut clients = Vec::new();
                let mut servers = Vec::new();
                for _ in 0..64 {
                    let (client, server) = pair().await;
                    clients.push(client);
                    servers.push(server);
                }
                let before = coreio::stats::ring();
                let readers: Vec<_> = clients
                    .into_iter()
                    .enumerate()
                    .map(|(index, client)| {
                        coreio::spawn(async move {
                            let (res, buf) = client.read_exact(Vec::with_capacity(100)).await;
                            res.unwrap();
                            check_pattern(index as u64, 0, 0, &buf);
                        })
                    })
                    .collect();
                coreio::time::sleep(Duration::from_millis(5)).await;
                // The peers write from a plain thread while the core thread is blocked (on
                // purpose, here): the 64 receives complete together, for 8 completion entries.
                let peers: Vec<std::net::TcpStream> = servers
                    .into_iter()
                    .map(|server| server.into_std().expect("into_std"))
                    .collect();
                let (written, all_written) = std::sync::mpsc::channel();
                let writer = std::thread::spawn(move || {
                    use std::io::Write;
                    for (index, mut peer) in peers.iter().enumerate() {
                        peer.write_all(&pattern(index as u64, 0, 100)).unwrap();
                    }
                    written.send(()).unwrap();
                    peers
                });
                all_written.recv().unwrap();
                for reader in readers {
                    timeout(Duration::from_secs(20), reader)
                        .await
                        .expect("a completion was lost")
                        .unwrap();
                }
                drop(writer.join().unwrap());
                let after = coreio::stats::ring();
                if util::on_uring() {
                    let (before, after) = (before.unwrap(), after.unwrap());
                    assert_eq!(after.completion_queue_entries, 8);
                    assert!(
                        after.completion_queue_overflows > before.completion_queue_overflows,
                        "no overflow counted: {after:?}"
                    );
                    assert_eq!(after.completions_dropped, 0);
                } else {
                    assert_eq!((before, after), (None, None));
                }
            })
            .unwrap();
    }
}

#[test]
fn no_counters_outside_a_runtime() {
    assert_eq!(coreio::stats::ring(), None);
}
