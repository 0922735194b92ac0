//! Accepting with `Builder::multishot_accept(true)`: on io_uring one multishot accept per
//! listener serves connection after connection; on epoll the switch changes nothing, and the
//! same tests check the one-shot path. A dropped accept loses no connection, a dropped
//! listener closes what its multishot accept had taken, several tasks accepting on one
//! listener all get served without waking each other in a loop, a shutdown ends a pending
//! accept, and a dropped listener (or `into_std`) lets the multishot accept go before it returns
//! (Linux 6.0+; a pass of the core loop later before).
//!
//! (That one submission serves many connections, and that the switch off submits none, is
//! checked inside the crate: `net::ops::accept_multi::tests`.)

#[macro_use]
mod util;

use std::cell::Cell;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use coreio::net::{TcpListener, UnixListener, UnixSocketAddr, UnixStream};
use coreio::shutdown::is_shutdown_error;
use coreio::time::{sleep, timeout};
use coreio::{Backend, Builder};

const PATIENCE: Duration = Duration::from_secs(10);

/// `util::block_on` with multishot accept asked for (the environment may still override it).
fn block_on<F>(backend: Backend, future: F) -> F::Output
where
    F: Future + 'static,
    F::Output: 'static,
{
    Builder::new()
        .backend(backend)
        .multishot_accept(true)
        .block_on(async move {
            util::assert_backend(backend);
            future.await
        })
        .expect("the runtime failed to start")
}

/// Blocking clients connected to `addr`, with their local addresses.
fn connect_clients(addr: SocketAddr, n: usize) -> (Vec<std::net::TcpStream>, Vec<SocketAddr>) {
    let clients: Vec<_> = (0..n)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let addrs = clients.iter().map(|c| c.local_addr().unwrap()).collect();
    (clients, addrs)
}

/// Counts the polls of the future it wraps.
struct CountPolls<F> {
    inner: Pin<Box<F>>,
    polls: Rc<Cell<usize>>,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.set(self.polls.get() + 1);
        self.inner.as_mut().poll(cx)
    }
}

/// Whether this kernel cancels synchronously (`IORING_REGISTER_SYNC_CANCEL`, Linux 6.0), so a
/// listener lets its multishot accept go before its drop or `into_std` returns.
fn sync_cancel_expected() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    major >= 6
}

/// Lets the core park a few times: what the kernel does for an armed multishot accept, and
/// the cancellation of a dropped one, is seen by then.
async fn settle() {
    for _ in 0..10 {
        sleep(Duration::from_millis(1)).await;
    }
}

both_backends! {
    fn a_listener_not_accepting_holds_a_bounded_number_of_connections(backend: Backend) {
        // One accept arms the multishot accept; then 300 clients connect while nobody
        // accepts. The armed accept may take at most its queue limit (128, plus what one
        // batch of completions brings before the cancellation lands) off the backlog; the rest
        // wait there. Every connection is then accepted, none lost.
        block_on(backend, async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let first = std::thread::spawn(move || std::net::TcpStream::connect(addr).unwrap());
            let (_first, _) = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
            let _first_client = first.join().unwrap();
            let baseline = util::open_fds();
            // From another thread, a few at a time, while the core runs: the completions come
            // in small batches, as they do under real load.
            let connecting = std::thread::spawn(move || {
                (0..300)
                    .map(|_| {
                        std::thread::sleep(Duration::from_micros(200));
                        std::net::TcpStream::connect(addr).unwrap()
                    })
                    .collect::<Vec<_>>()
            });
            while !connecting.is_finished() {
                sleep(Duration::from_millis(5)).await;
            }
            let clients = connecting.join().unwrap();
            sleep(Duration::from_millis(50)).await;
            let taken = util::open_fds() - baseline - clients.len();
            assert!(taken <= 200, "{taken} connections taken off the backlog for nobody");
            for _ in 0..300 {
                let (stream, _) = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
                drop(stream);
            }
            drop(clients);
        });
    }

    fn many_connections_in_order_with_their_peers(backend: Backend) {
        block_on(backend, async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let (_clients, expected) = connect_clients(addr, 50);
            let mut peers = Vec::new();
            for _ in 0..50 {
                let (stream, peer) = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
                assert_eq!(stream.peer_addr().unwrap(), peer);
                peers.push(peer);
            }
            // The backlog's order is the connections' order.
            assert_eq!(peers, expected);
        });
    }

    fn a_dropped_accept_loses_no_connection(backend: Backend) {
        block_on(backend, async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
            for round in 0..5 {
                let client = {
                    let mut accept = pin!(listener.accept());
                    util::poll_once_pending(accept.as_mut());
                    let client = std::net::TcpStream::connect(addr).unwrap();
                    if util::on_uring() {
                        // The kernel takes the connection for the accept that is gone.
                        assert!(util::wait_until(4000, || !util::acceptable(fd)).await);
                    }
                    client
                };
                let (_stream, peer) = timeout(PATIENCE, listener.accept())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(peer, client.local_addr().unwrap(), "round {round}");
            }
        });
    }

    fn a_dropped_listener_closes_the_connections_it_had_taken(backend: Backend) {
        block_on(backend, async {
            let baseline = util::open_fds();
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
            // One accept arms the multishot accept (io_uring); the next clients are taken by
            // the kernel with nobody accepting.
            let (first, _) = connect_clients(addr, 1);
            let (accepted, _) = listener.accept().await.unwrap();
            let (mut clients, _) = connect_clients(addr, 8);
            if util::on_uring() {
                assert!(util::wait_until(4000, || !util::acceptable(fd)).await);
            }
            drop(listener);
            settle().await;
            for (i, client) in clients.iter_mut().enumerate() {
                client.set_read_timeout(Some(PATIENCE)).unwrap();
                let mut buf = [0u8; 8];
                match client.read(&mut buf) {
                    Ok(0) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
                    other => panic!("client {i}: expected EOF or a reset, got {other:?}"),
                }
            }
            drop((first, accepted, clients));
            assert_eq!(util::open_fds(), baseline, "a descriptor leaked");
        });
    }

    fn concurrent_acceptors_are_all_served_without_waking_each_other(backend: Backend) {
        const TASKS: usize = 4;
        const EACH: usize = 10;
        block_on(backend, async {
            let listener = Rc::new(TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap());
            let addr = listener.local_addr().unwrap();
            let polls: Vec<Rc<Cell<usize>>> = (0..TASKS).map(|_| Rc::default()).collect();
            let mut tasks = Vec::new();
            for polls in &polls {
                let listener = listener.clone();
                let polls = polls.clone();
                tasks.push(coreio::spawn(async move {
                    let mut streams = Vec::new();
                    for _ in 0..EACH {
                        let accept = CountPolls {
                            inner: Box::pin(listener.accept()),
                            polls: polls.clone(),
                        };
                        streams.push(accept.await.unwrap().0);
                    }
                    streams
                }));
            }
            // Every acceptor waits; nothing comes: a few polls each, no loop.
            settle().await;
            for (i, polls) in polls.iter().enumerate() {
                assert!(polls.get() <= 3, "acceptor {i} was polled {} times idle", polls.get());
            }
            // Clients arrive from another thread, in bursts and one by one.
            let clients = std::thread::spawn(move || {
                let mut clients = Vec::new();
                for i in 0..TASKS * EACH {
                    clients.push(std::net::TcpStream::connect(addr).unwrap());
                    if i % 7 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                clients
            });
            let mut served = 0;
            for task in tasks {
                served += timeout(PATIENCE, task).await.expect("an acceptor was left asleep").unwrap().len();
            }
            assert_eq!(served, TASKS * EACH);
            let clients = clients.join().unwrap();
            let total: usize = polls.iter().map(|p| p.get()).sum();
            // Each accept is polled once or twice, plus a wake passed on per connection taken:
            // far below what acceptors waking each other in a loop would reach.
            assert!(total <= 6 * TASKS * EACH, "{total} polls for {} accepts", TASKS * EACH);
            drop(clients);
        });
    }

    fn a_pending_accept_ends_with_the_shutdown_while_armed(backend: Backend) {
        let rt = Builder::new()
            .backend(backend)
            .cores(1)
            .multishot_accept(true)
            .shutdown_grace(Duration::from_secs(10))
            .build()
            .unwrap();
        let shutdown = rt.shutdown_handle();
        let outputs = rt.run(move |_| {
            let shutdown = shutdown.clone();
            async move {
                let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let addr = listener.local_addr().unwrap();
                let (_first, _) = connect_clients(addr, 1);
                let _accepted = listener.accept().await.unwrap();
                // Armed now; the shutdown wakes the next accept with its error.
                let trigger = coreio::spawn(async move {
                    sleep(Duration::from_millis(5)).await;
                    shutdown.trigger();
                });
                let err = listener.accept().await.expect_err("accepted after the shutdown");
                assert!(is_shutdown_error(&err), "{err}");
                trigger.await.unwrap();
                let (mut late, _) = connect_clients(addr, 1);
                settle().await;
                drop(listener);
                settle().await;
                late[0].set_read_timeout(Some(PATIENCE)).unwrap();
                let mut buf = [0u8; 8];
                assert!(matches!(late[0].read(&mut buf), Ok(0) | Err(_)), "the late client got data");
            }
        });
        assert!(outputs.iter().all(Result::is_ok), "{outputs:?}");
    }

    fn a_dropped_listener_frees_its_port_before_the_drop_returns(backend: Backend) {
        block_on(backend, async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let (_first, _) = connect_clients(addr, 1);
            let _accepted = listener.accept().await.unwrap();
            drop(listener);
            if !sync_cancel_expected() {
                settle().await;
            }
            // No yield in between on Linux 6.0+: the kernel no longer holds the socket.
            let again = TcpListener::bind(addr).expect("the dropped listener kept its port");
            let (_late, late_addrs) = connect_clients(addr, 1);
            let (_stream, peer) = timeout(PATIENCE, again.accept()).await.unwrap().unwrap();
            assert_eq!(peer, late_addrs[0]);
        });
    }

    fn a_dropped_abstract_unix_listener_frees_its_name_before_the_drop_returns(backend: Backend) {
        // An abstract name has no file to unlink: it is free exactly when the kernel lets go
        // of the socket, so an armed multishot accept that still held it would keep the name.
        let name = format!("coreio-test-{}-accept-multishot-abstract", std::process::id());
        let addr = UnixSocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        block_on(backend, async move {
            let listener = UnixListener::bind_addr(&addr).unwrap();
            let connect = async { UnixStream::connect_addr(&addr).await.unwrap() };
            let (accepted, _client) = futures_join(listener.accept(), connect).await;
            accepted.unwrap();
            drop(listener);
            if !sync_cancel_expected() {
                settle().await;
            }
            // No yield in between on Linux 6.0+.
            let again = UnixListener::bind_addr(&addr).expect("the dropped listener kept its name");
            let connect = async { UnixStream::connect_addr(&addr).await.unwrap() };
            let (accepted, _client) = futures_join(timeout(PATIENCE, again.accept()), connect).await;
            accepted.unwrap().unwrap();
        });
    }

    fn into_std_waits_for_the_multishot_accept_to_be_cancelled(backend: Backend) {
        block_on(backend, async {
            let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let (_first, _) = connect_clients(addr, 1);
            let _accepted = listener.accept().await.unwrap();
            // On Linux 6.0+ the multishot accept is cancelled synchronously: the first try
            // succeeds. Before, a pass of the core loop later.
            let retries_allowed = if sync_cancel_expected() { 1 } else { 1000 };
            let mut failures = 0;
            let std_listener = loop {
                match listener.into_std() {
                    Ok(std_listener) => break std_listener,
                    Err(err) => {
                        assert!(util::on_uring(), "into_std failed on epoll: {err}");
                        failures += 1;
                        assert!(failures < retries_allowed, "into_std failed {failures} times: {err}");
                        listener = err.into_inner();
                        coreio::yield_now().await;
                    }
                }
            };
            // Nothing in coreio takes connections from the std listener's backlog any more.
            let (late, _) = connect_clients(addr, 1);
            settle().await;
            std_listener.set_nonblocking(false).unwrap();
            let (_stream, peer) = std_listener.accept().unwrap();
            assert_eq!(peer, late[0].local_addr().unwrap());
        });
    }

    fn a_unix_listener_accepts_many_with_one_multishot_accept(backend: Backend) {
        let dir = util::TempDir::new("accept-multishot");
        let path = dir.join("sock");
        block_on(backend, async move {
            let listener = UnixListener::bind(&path).unwrap();
            let mut clients = Vec::new();
            for _ in 0..20 {
                clients.push(std::os::unix::net::UnixStream::connect(&path).unwrap());
            }
            for _ in 0..20 {
                let (_stream, peer) = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
                assert!(peer.is_unnamed(), "{peer:?}");
            }
            // And one that arrives while the accept waits.
            let accept = listener.accept();
            let connect = async {
                settle().await;
                UnixStream::connect(&path).await.unwrap()
            };
            let (accepted, _client) = futures_join(accept, connect).await;
            accepted.unwrap();
            drop(clients);
        });
    }
}

/// Runs two futures to completion side by side.
async fn futures_join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (Box::pin(a), Box::pin(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none()
            && let Poll::Ready(out) = a.as_mut().poll(cx)
        {
            ra = Some(out);
        }
        if rb.is_none()
            && let Poll::Ready(out) = b.as_mut().poll(cx)
        {
            rb = Some(out);
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (ra.unwrap(), rb.unwrap())
}

/// Not a test: the connection rate of one accepting core, for `docs/backends.md`. A client
/// thread opens and closes `COREIO_ACCEPT_RATE_N` connections (default 20000), 4 at a time;
/// the server accepts and drops each. Run it in release, A/B with the switch:
///
/// ```text
/// COREIO_MULTISHOT_ACCEPT=1 cargo test --release --test net_accept_multishot accept_rate -- --ignored --nocapture
/// ```
#[test]
#[ignore = "a measurement, not a test"]
fn accept_rate() {
    let n: usize = std::env::var("COREIO_ACCEPT_RATE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        let addr: SocketAddr = addr_rx.recv().unwrap();
        let start = std::time::Instant::now();
        let mut open = std::collections::VecDeque::new();
        for _ in 0..n {
            open.push_back(std::net::TcpStream::connect(addr).unwrap());
            if open.len() > 4 {
                open.pop_front();
            }
        }
        drop(open);
        start.elapsed()
    });
    let overflows = listen_overflows();
    // The kernel may drop a handshake when the backlog overflows (`ListenOverflows`): the
    // server stops after a second without a connection rather than waiting for it.
    let accepted = Builder::new()
        .block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let mut accepted = 0;
            while let Ok(result) = timeout(Duration::from_secs(1), listener.accept()).await {
                drop(result.unwrap());
                accepted += 1;
            }
            accepted
        })
        .unwrap();
    let elapsed = client.join().unwrap();
    let overflows = listen_overflows() - overflows;
    println!(
        "accept_rate: accepted {accepted} of {n} (listen overflows meanwhile, system-wide: {overflows})"
    );
    println!(
        "accept_rate: backend {:?}, multishot {:?}: {n} connections in {elapsed:?}, {:.0}/s",
        std::env::var("COREIO_BACKEND").unwrap_or_else(|_| "auto".into()),
        std::env::var("COREIO_MULTISHOT_ACCEPT").unwrap_or_else(|_| "default".into()),
        n as f64 / elapsed.as_secs_f64()
    );
}

/// `TcpExt: ListenOverflows` of /proc/net/netstat: handshakes dropped for a full backlog.
fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "ListenOverflows")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}
