//! Name resolution and connecting by name: `net::lookup_host`, the `ToSocketAddrs` forms, and
//! `TcpStream::connect` to host names, address lists and closed ports, on both backends.
//!
//! Only `localhost` (from `/etc/hosts`) and names under `.invalid` (RFC 6761: never resolvable)
//! are looked up, so no test needs a network.

#[macro_use]
mod util;

use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::{PoisonError, RwLock};
use std::task::{Context, Poll, Waker};

use coreio::Backend;
use coreio::net::{TcpListener, TcpStream, lookup_host};

/// The thread name prefix of a test named `base` on `backend`: one per backend, so that the
/// two runs of a test never see each other's threads when they share a process (`cargo test`).
fn prefix(base: &str, backend: Backend) -> String {
    let tag = if backend == Backend::Epoll { "e" } else { "u" };
    format!("{base}{tag}")
}

/// Whether this process has a thread of the blocking pool of the runtime `block_on(backend,
/// base, ..)` made.
fn has_pool_thread(base: &str, backend: Backend) -> bool {
    let name = format!("{}-blocking", prefix(base, backend));
    let name = &name[..name.len().min(15)];
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .any(|comm| comm.trim_end().starts_with(name))
}

/// Held for reading by every test's runtime, and for writing by the one that counts this
/// process's descriptors, so that under `cargo test` (one process, tests on parallel threads)
/// no other test opens sockets while it counts. (nextest runs each test in its own process.)
static DESCRIPTORS: RwLock<()> = RwLock::new(());

/// The test that counts descriptors.
const COUNTS_FDS: &str = "dropfd";

/// Runs `future` on a one-core runtime with `backend`, its threads named after `base`.
fn block_on<F>(backend: Backend, base: &str, future: F) -> F::Output
where
    F: Future + 'static,
    F::Output: 'static,
{
    let (_shared, _exclusive) = if base == COUNTS_FDS {
        (
            None,
            Some(DESCRIPTORS.write().unwrap_or_else(PoisonError::into_inner)),
        )
    } else {
        (
            Some(DESCRIPTORS.read().unwrap_or_else(PoisonError::into_inner)),
            None,
        )
    };
    coreio::Builder::new()
        .backend(backend)
        .thread_name_prefix(prefix(base, backend))
        .block_on(async move {
            util::assert_backend(backend);
            future.await
        })
        .expect("the runtime failed to start")
}

/// The operating system's error behind a coreio error that names an address.
fn os_error(err: &io::Error) -> Option<i32> {
    err.get_ref()?
        .source()?
        .downcast_ref::<io::Error>()?
        .raw_os_error()
}

both_backends! {
    fn localhost_resolves_to_loopback(backend: Backend) {
        block_on(backend, "lookup", async {
            let addrs: Vec<SocketAddr> = lookup_host("localhost:80").await.unwrap().collect();
            assert!(!addrs.is_empty());
            for addr in &addrs {
                assert!(addr.ip().is_loopback(), "{addr}");
                assert_eq!(addr.port(), 80);
            }
            // The other forms of a name agree.
            let pair: Vec<_> = lookup_host(("localhost", 80)).await.unwrap().collect();
            let owned: Vec<_> = lookup_host(String::from("localhost:80"))
                .await
                .unwrap()
                .collect();
            let owned_pair: Vec<_> = lookup_host((String::from("localhost"), 80))
                .await
                .unwrap()
                .collect();
            assert_eq!(pair, addrs);
            assert_eq!(owned, addrs);
            assert_eq!(owned_pair, addrs);
        });
    }

    fn literal_addresses_never_touch_the_pool(backend: Backend) {
        block_on(backend, "literal", async move {
            let v4: SocketAddr = "127.0.0.1:7".parse().unwrap();
            let v6: SocketAddr = "[::1]:7".parse().unwrap();
            let one = |addrs: Vec<SocketAddr>| {
                assert_eq!(addrs.len(), 1, "{addrs:?}");
                addrs[0]
            };
            assert_eq!(one(lookup_host(v4).await.unwrap().collect()), v4);
            assert_eq!(one(lookup_host("127.0.0.1:7").await.unwrap().collect()), v4);
            assert_eq!(one(lookup_host("[::1]:7").await.unwrap().collect()), v6);
            assert_eq!(one(lookup_host(("::1", 7)).await.unwrap().collect()), v6);
            assert_eq!(
                one(lookup_host(("127.0.0.1", 7)).await.unwrap().collect()),
                v4
            );
            assert_eq!(
                one(lookup_host((Ipv4Addr::LOCALHOST, 7))
                    .await
                    .unwrap()
                    .collect()),
                v4
            );
            assert_eq!(
                one(lookup_host((IpAddr::from(Ipv4Addr::LOCALHOST), 7))
                    .await
                    .unwrap()
                    .collect()),
                v4
            );
            let list = [v4, v6];
            assert_eq!(
                lookup_host(&list[..]).await.unwrap().collect::<Vec<_>>(),
                list
            );
            assert_eq!(lookup_host(&"127.0.0.1:7").await.unwrap().count(), 1);
            assert!(
                !has_pool_thread("literal", backend),
                "a literal address went to the blocking pool"
            );
            // A name does go there.
            assert!(lookup_host("localhost:7").await.unwrap().count() > 0);
            assert!(has_pool_thread("literal", backend));
        });
    }

    fn malformed_addresses_are_invalid_input(backend: Backend) {
        block_on(backend, "malformed", async move {
            for bad in [
                "localhost",
                "localhost:",
                "localhost:port",
                ":80",
                "",
                "localhost:70000",
            ] {
                let err = lookup_host(bad)
                    .await
                    .err()
                    .unwrap_or_else(|| panic!("{bad:?} resolved"));
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {err}");
                assert!(err.to_string().contains("invalid socket address"), "{err}");
            }
            let err = lookup_host(("", 80))
                .await
                .err()
                .expect("an empty host resolved");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
            assert!(
                !has_pool_thread("malformed", backend),
                "a malformed address went to the pool"
            );
        });
    }

    fn an_unresolvable_name_is_an_error_naming_it(backend: Backend) {
        block_on(backend, "nxdomain", async {
            let err = lookup_host("no-such-host.invalid:80")
                .await
                .err()
                .expect("resolved .invalid");
            assert!(
                err.to_string()
                    .contains("resolving no-such-host.invalid:80"),
                "{err}"
            );
            let err = lookup_host(("no-such-host.invalid", 80))
                .await
                .err()
                .expect("resolved");
            assert!(err.to_string().contains("no-such-host.invalid:80"), "{err}");
            let err = TcpStream::connect("no-such-host.invalid:80")
                .await
                .expect_err("connected");
            assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
        });
    }

    fn connect_by_name_reaches_a_local_listener(backend: Backend) {
        block_on(backend, "byname", async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let port = listener.local_addr().unwrap().port();
            // `localhost` may resolve to ::1 first, where nothing listens: connect goes on to
            // the next address.
            let connect =
                coreio::spawn(async move { TcpStream::connect(format!("localhost:{port}")).await });
            let (server, peer) = listener.accept().await.unwrap();
            let client = connect.await.unwrap().expect("connect by name");
            assert_eq!(client.local_addr().unwrap(), peer);
            let (res, _) = client.write_all(b"hello".to_vec()).await;
            res.unwrap();
            let (res, buf) = server.read_exact(Vec::with_capacity(5)).await;
            res.unwrap();
            assert_eq!(buf, b"hello");
            // The other forms connect too.
            for stream in [
                TcpStream::connect(("localhost", port)).await,
                TcpStream::connect(("127.0.0.1", port)).await,
                TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await,
                TcpStream::connect(format!("127.0.0.1:{port}")).await,
            ] {
                stream.unwrap();
                listener.accept().await.unwrap();
            }
        });
    }

    fn connect_tries_every_address_in_order(backend: Backend) {
        block_on(backend, "inorder", async {
            let (_reservation, closed) = util::reserve_port();
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let open = listener.local_addr().unwrap();
            let client = TcpStream::connect(&[closed, open][..])
                .await
                .expect("the second address");
            assert_eq!(client.peer_addr().unwrap(), open);
            // All refused: the error is the last address's.
            let (_other_reservation, also_closed) = util::reserve_port();
            let err = TcpStream::connect(&[closed, also_closed][..])
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("connecting to {also_closed}: ")),
                "{err}"
            );
            // No address at all.
            let err = TcpStream::connect(&[] as &[SocketAddr]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        });
    }

    fn connect_to_a_closed_port_names_the_address(backend: Backend) {
        block_on(backend, "closed", async {
            let (_reservation, addr) = util::reserve_port();
            let err = TcpStream::connect(addr).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("connecting to {addr}: ")),
                "{err}"
            );
            assert_eq!(os_error(&err), Some(libc::ECONNREFUSED), "{err:?}");
            // By name, the address tried is named (the last of those `localhost` gave).
            let err = TcpStream::connect(format!("localhost:{}", addr.port()))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
            assert!(err.to_string().starts_with("connecting to "), "{err}");
            assert!(
                err.to_string().contains(&format!(":{}: ", addr.port())),
                "{err}"
            );
        });
    }

    fn connects_dropped_mid_lookup_or_mid_connect_leave_no_descriptor(backend: Backend) {
        block_on(backend, COUNTS_FDS, async {
            // Warm up (the pool's thread, the driver's slabs) on a first listener, then take
            // the baseline without any.
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let target = format!("localhost:{}", listener.local_addr().unwrap().port());
            drop(TcpStream::connect(target.as_str()).await.unwrap());
            drop(listener.accept().await.unwrap());
            drop(listener);
            let before = util::open_fds();
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let target = format!("localhost:{}", listener.local_addr().unwrap().port());
            for i in 0..30 {
                let mut connect = pin!(TcpStream::connect(target.as_str()));
                // Dropped after 0, 1, 2 or 3 polls: before the lookup, while the pool resolves,
                // or with the connection under way.
                for _ in 0..i % 4 {
                    let polled = poll_fn(|cx| Poll::Ready(connect.as_mut().poll(cx))).await;
                    if polled.is_ready() {
                        break;
                    }
                    coreio::yield_now().await;
                }
            }
            // Connections that completed wait in the backlog, or, with multishot accept, in the
            // listener, which closes them with itself: no descriptor of ours once it is gone.
            drop(listener);
            assert!(
                util::wait_until(4000, || util::open_fds() == before).await,
                "descriptors: {} before, {} after",
                before,
                util::open_fds()
            );
        });
    }

    fn a_lookup_dropped_in_flight_leaves_the_pool_working(backend: Backend) {
        block_on(backend, "droplook", async {
            {
                let mut lookup = pin!(lookup_host("localhost:80"));
                let polled = lookup
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()));
                // Pending (the job is on the pool) or, rarely, done already: both are fine.
                drop(polled);
            }
            assert!(lookup_host("localhost:80").await.unwrap().next().is_some());
        });
    }
}

#[test]
fn lookup_outside_a_runtime() {
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    // A literal needs nothing from a runtime.
    let mut literal = pin!(lookup_host("127.0.0.1:80"));
    match literal.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(mut addrs)) => {
            assert_eq!(addrs.next(), Some("127.0.0.1:80".parse().unwrap()))
        }
        other => panic!(
            "expected the literal address, got {:?}",
            other.map(|r| r.map(|_| ()))
        ),
    }
    // A name needs the blocking pool: an error, not a panic or a hang.
    let mut name = pin!(lookup_host("localhost:80"));
    match name.as_mut().poll(&mut cx) {
        Poll::Ready(Err(err)) => assert!(err.to_string().contains("no coreio runtime"), "{err}"),
        other => panic!("expected an error, got {:?}", other.map(|r| r.map(|_| ()))),
    }
}
