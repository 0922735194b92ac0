//! Connection hand-off: a stream detached on one core and adopted by another keeps working;
//! a hand-off nobody adopts closes the socket; a socket with operations in flight is given back
//! intact; adopting outside a runtime fails and closes it.

#[macro_use]
mod util;

use std::future::Future;
use std::io::Read;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Context;

use coreio::mesh;
use coreio::net::{Handoff, TcpStream};
use coreio::sync::Event;
use coreio::{Backend, Builder};

use util::{block_on, check_pattern, pair, pattern, two_or_fewer_cores};

/// Echoes until end of stream; returns the bytes echoed.
async fn echo(stream: TcpStream) -> usize {
    let mut total = 0;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let (res, b) = stream.read(buf).await;
        let n = res.expect("read");
        if n == 0 {
            return total;
        }
        total += n;
        let (res, b) = stream.write_all(b).await;
        res.expect("write");
        buf = b;
    }
}

both_backends! {
    fn a_connection_accepted_on_one_core_is_served_by_another(backend: Backend) {
        const MESSAGES: u64 = 500;
        const SIZE: usize = 1000;
        let rt = Builder::new().backend(backend).cores(two_or_fewer_cores()).build().unwrap();
        let cores = rt.cores().to_vec();
        let (first, last) = (cores[0], *cores.last().unwrap());
        let done = Event::new();
        let outputs = rt.run(|core| {
            let done = done.clone();
            async move {
                if core != first {
                    done.wait().await;
                    return None;
                }
                let (client, server) = pair().await;
                let handoff = server.into_handoff().expect("no operation in flight");
                let served = mesh::submit_to(last, move || async move {
                    let stream = handoff.adopt().expect("adopt");
                    (coreio::current_core().unwrap(), echo(stream).await)
                });
                for msg in 0..MESSAGES {
                    let (res, _) = client.write_all(pattern(1, msg, SIZE)).await;
                    res.unwrap();
                    let (res, back) = client.read_exact(Vec::with_capacity(SIZE)).await;
                    res.unwrap();
                    check_pattern(1, msg, 0, &back);
                }
                drop(client);
                let served = served.await.unwrap();
                done.set();
                Some(served)
            }
        });
        let (served_on, bytes) = outputs.into_iter().next().unwrap().unwrap().unwrap();
        assert_eq!(served_on, last);
        assert_eq!(bytes, MESSAGES as usize * SIZE);
    }

    fn a_handoff_nobody_adopts_closes_the_socket(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let handoff = server.into_handoff().unwrap();
            drop(handoff);
            let (res, _) = client.read(Vec::with_capacity(8)).await;
            assert_eq!(res.unwrap(), 0, "the peer sees end of stream");
        });
    }

    fn a_socket_with_a_dropped_read_in_flight_is_given_back_intact(backend: Backend) {
        let refused = block_on(backend, async {
            let (client, server) = pair().await;
            {
                // Start a read and drop it: on io_uring the kernel still holds the operation
                // until its cancellation completes.
                let mut read = pin!(server.read(Vec::with_capacity(16)));
                let mut cx = Context::from_waker(std::task::Waker::noop());
                assert!(read.as_mut().poll(&mut cx).is_pending());
            }
            let mut server = server;
            let mut refused = 0;
            let handoff = loop {
                match server.into_handoff() {
                    Ok(handoff) => break handoff,
                    Err(err) => {
                        assert!(err.to_string().contains("in flight"), "{err}");
                        refused += 1;
                        assert!(refused < 1000, "the dropped read never finished");
                        server = err.into_inner();
                        coreio::yield_now().await;
                    }
                }
            };
            // Adopted again (here, on the same core), the socket works and lost nothing.
            let server = handoff.adopt().unwrap();
            let (res, _) = client.write_all(b"after".to_vec()).await;
            res.unwrap();
            let (res, buf) = server.read_exact(Vec::with_capacity(5)).await;
            res.unwrap();
            assert_eq!(buf, b"after");
            refused
        });
        match backend {
            // The cancellation was still queued when the hand-off was first tried.
            Backend::IoUring if !util::backend_overridden() => assert!(refused >= 1),
            // A dropped epoll operation holds nothing: nothing is in flight.
            Backend::Epoll if !util::backend_overridden() => assert_eq!(refused, 0),
            _ => {}
        }
    }

    fn adopting_outside_a_runtime_fails_and_closes_the_socket(backend: Backend) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let handoff: Handoff<TcpStream> = block_on(backend, async move {
            TcpStream::from_std(accepted).unwrap().into_handoff().unwrap()
        });
        let err = handoff.adopt().unwrap_err();
        assert!(err.to_string().contains("no coreio runtime"), "{err}");
        let mut buf = [0u8; 4];
        assert_eq!(peer.read(&mut buf).unwrap(), 0, "the socket was closed");
    }

    fn many_connections_hand_off_both_ways(backend: Backend) {
        const CONNECTIONS: usize = 50;
        let rt = Builder::new().backend(backend).cores(two_or_fewer_cores()).build().unwrap();
        let cores = rt.cores().to_vec();
        let left = Arc::new(AtomicUsize::new(cores.len()));
        let done = Event::new();
        let outputs = rt.run(|core| {
            let at = cores.iter().position(|&c| c == core).unwrap();
            let other = cores[(at + 1) % cores.len()];
            let (left, done) = (left.clone(), done.clone());
            async move {
                let mut checked = 0;
                for conn in 0..CONNECTIONS as u64 {
                    let (client, server) = pair().await;
                    let handoff = server.into_handoff().unwrap();
                    let served = mesh::submit_to(other, move || async move {
                        echo(handoff.adopt().unwrap()).await
                    });
                    let (res, _) = client.write_all(pattern(conn, 0, 100)).await;
                    res.unwrap();
                    let (res, back) = client.read_exact(Vec::with_capacity(100)).await;
                    res.unwrap();
                    check_pattern(conn, 0, 0, &back);
                    drop(client);
                    assert_eq!(served.await.unwrap(), 100);
                    checked += 1;
                }
                if left.fetch_sub(1, Ordering::SeqCst) == 1 {
                    done.set();
                }
                done.wait().await;
                checked
            }
        });
        for output in outputs {
            assert_eq!(output.unwrap(), CONNECTIONS);
        }
    }
}

#[test]
fn handoffs_cross_threads() {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Handoff<TcpStream>>();
}
