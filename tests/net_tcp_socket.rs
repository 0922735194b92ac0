//! The TCP socket builder (`TcpSocket`), the port-sharing rule of `TcpListener::bind` (the cores
//! of one process share an address, another process gets `AddrInUse` unless it opts in), errors
//! that name the address, and conversions to and from std sockets and raw descriptors.

#[macro_use]
mod util;

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use coreio::Backend;
use coreio::net::{TcpListener, TcpSocket, TcpStream};
use coreio::time::timeout;

use util::{block_on, pair, pair_on};

/// How long a child process may take.
const CHILD_LIMIT: Duration = Duration::from_secs(60);
/// Bounds every wait for the peer in these tests (a hang fails, nothing asserts on timing).
const PATIENCE: Duration = Duration::from_secs(10);
/// The address a child process is asked to bind.
const ADDR_ENV: &str = "COREIO_TEST_BIND_ADDR";

/// Polls `future` once: its output if it finished then, `None` if it is still pending (the
/// caller then drops it mid-operation).
async fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Whether this machine can bind IPv6 loopback (some containers have no IPv6).
fn ipv6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// Whether `err` is `AddrInUse` with a message naming `addr`.
fn assert_addr_in_use(err: &io::Error, addr: SocketAddr) {
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("binding {addr}: ")),
        "the error does not name {addr}: {message}"
    );
}

/// Whether a socket on local port `port` is in `TIME_WAIT` (`/proc/net/tcp`, state 06).
fn in_time_wait(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local_port = fields[1].rsplit(':').next().unwrap();
        u16::from_str_radix(local_port, 16) == Ok(port) && fields[3] == "06"
    })
}

/// Runs the child role `role` of test `module` with `ADDR_ENV=addr`; returns its stdout.
fn child(module: &str, backend: Backend, role: &str, addr: SocketAddr) -> String {
    let name = util::backend_test_name(module, backend);
    let env = [
        ("COREIO_BACKEND", util::child_backend_env(backend)),
        (ADDR_ENV, addr.to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = util::run_child(&name, role, &env, CHILD_LIMIT);
    util::assert_child_ok(&out, role);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The address a child was asked to bind.
fn child_addr() -> SocketAddr {
    std::env::var(ADDR_ENV).unwrap().parse().unwrap()
}

/// Whether a Unix socket bound to the abstract name `name` exists (`/proc/net/unix` shows it
/// as `@name`).
fn abstract_name_bound(name: &str) -> bool {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    let wanted = format!("@{name}");
    table
        .lines()
        .any(|line| line.split_whitespace().last() == Some(wanted.as_str()))
}

/// Polls `future` once with a waker that does nothing; it must still be pending.
fn poll_pending<F: Future>(future: std::pin::Pin<&mut F>) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        future.poll(&mut cx).is_pending(),
        "the operation completed on its first poll"
    );
}

both_backends! {
    fn bind_then_connect_uses_the_source_address(backend: Backend) {
        block_on(backend, async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            // All of 127.0.0.0/8 is local on Linux: 127.0.0.2 is a source the kernel would
            // never pick on its own for a connection to 127.0.0.1.
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            let source = socket.local_addr().unwrap();
            assert_eq!(source.ip().to_string(), "127.0.0.2");
            assert_ne!(source.port(), 0, "bind picked no port");
            let connect = coreio::spawn(socket.connect(addr));
            let (server, peer) = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
            let client = connect.await.unwrap().unwrap();
            assert_eq!(client.local_addr().unwrap(), source);
            assert_eq!(peer, source);
            assert_eq!(server.peer_addr().unwrap(), source);
            let (res, _) = client.write_all(b"from .2".to_vec()).await;
            res.unwrap();
            let (res, buf) = server.read_exact(Vec::with_capacity(7)).await;
            res.unwrap();
            assert_eq!(buf, b"from .2");
        });
    }

    fn listen_with_a_backlog(backend: Backend) {
        block_on(backend, async {
            // The kernel caps the backlog; 0 and u32::MAX are valid requests, not errors.
            for backlog in [0, 1, 16, u32::MAX] {
                let socket = TcpSocket::new_v4().unwrap();
                socket.set_reuseaddr(true).unwrap();
                assert!(socket.reuseaddr().unwrap());
                assert!(!socket.reuseport().unwrap(), "a TcpSocket sets nothing on its own");
                socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let bound = socket.local_addr().unwrap();
                let listener = socket.listen(backlog).unwrap();
                assert_eq!(listener.local_addr().unwrap(), bound);
                // One connection waits in the backlog before it is accepted.
                let client = TcpStream::connect(bound).await.unwrap();
                let (server, peer) = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
                assert_eq!(peer, client.local_addr().unwrap());
                drop((client, server));
            }
            // An unbound socket listens on a port the kernel picks.
            let listener = TcpSocket::new_v4().unwrap().listen(8).unwrap();
            assert_ne!(listener.local_addr().unwrap().port(), 0);
        });
    }

    fn options_round_trip(backend: Backend) {
        block_on(backend, async {
            let socket = TcpSocket::new_v4().unwrap();
            for on in [true, false] {
                socket.set_reuseaddr(on).unwrap();
                assert_eq!(socket.reuseaddr().unwrap(), on);
                socket.set_reuseport(on).unwrap();
                assert_eq!(socket.reuseport().unwrap(), on);
                socket.set_nodelay(on).unwrap();
                assert_eq!(socket.nodelay().unwrap(), on);
            }
            socket.set_send_buffer_size(64 * 1024).unwrap();
            socket.set_recv_buffer_size(64 * 1024).unwrap();
            // Linux doubles the request for its bookkeeping (capped by the sysctls).
            assert!(socket.send_buffer_size().unwrap() >= 4096);
            assert!(socket.recv_buffer_size().unwrap() >= 4096);
            // Options coreio does not wrap are reachable through the descriptor.
            socket2::SockRef::from(&socket).set_keepalive(true).unwrap();
            assert!(socket2::SockRef::from(&socket).keepalive().unwrap());
            // A connected stream inherits TCP_NODELAY from the socket.
            socket.set_nodelay(true).unwrap();
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let connect = coreio::spawn(socket.connect(addr));
            let _server = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
            let client = connect.await.unwrap().unwrap();
            assert!(client.nodelay().unwrap());
            // IPV6_V6ONLY is for IPv6 sockets: asking an IPv4 one is an error, not a panic.
            assert!(TcpSocket::new_v4().unwrap().set_only_v6(true).is_err());
        });
    }

    fn only_v6_round_trip(backend: Backend) {
        if !ipv6_available() {
            eprintln!("skipped: no IPv6 loopback here");
            return;
        }
        block_on(backend, async {
            for only_v6 in [true, false] {
                let socket = TcpSocket::new_v6().unwrap();
                socket.set_only_v6(only_v6).unwrap();
                assert_eq!(socket.only_v6().unwrap(), only_v6);
                socket.bind("[::]:0".parse().unwrap()).unwrap();
                let listener = socket.listen(16).unwrap();
                let port = listener.local_addr().unwrap().port();
                // IPv6 always connects.
                let v6 = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port));
                let client = TcpStream::connect(v6).await.unwrap();
                let (_server, peer) = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
                assert_eq!(peer, client.local_addr().unwrap());
                // IPv4 reaches the socket only when it is not IPv6-only (as a mapped address).
                let v4 = SocketAddr::from(([127, 0, 0, 1], port));
                let res = TcpStream::connect(v4).await;
                if only_v6 {
                    let err = res.expect_err("an IPv6-only socket accepted IPv4");
                    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
                } else {
                    let _client = res.unwrap();
                    let (_server, peer) =
                        timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
                    assert_eq!(peer.ip().to_string(), "::ffff:127.0.0.1");
                }
            }
        });
    }

    fn listeners_of_one_process_share_a_port(backend: Backend) {
        block_on(backend, async move {
            // Port 0: the first bind picks the port, the others bind the resulting address.
            let first = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = first.local_addr().unwrap();
            let second = TcpListener::bind(addr).unwrap();
            assert_eq!(second.local_addr().unwrap(), addr);
            // Another runtime of the same process (on its own thread) shares it too.
            let other = std::thread::spawn(move || {
                coreio::Builder::new()
                    .backend(backend)
                    .block_on(async move { TcpListener::bind(addr).map(drop) })
                    .unwrap()
            });
            other.join().unwrap().unwrap();
            // Dropping one listener releases only its own claim: were the address unclaimed
            // now, the check for other listeners would see `second` and refuse.
            drop(first);
            let third = TcpListener::bind(addr).unwrap();
            // (Alone, so that the kernel cannot hand the connection to `second`.)
            drop(second);
            let (client, _server) = pair_on(&third).await;
            drop((client, third));
            // With every listener gone the address is free again, for anyone.
            let std_listener = std::net::TcpListener::bind(addr).unwrap();
            drop(std_listener);
        });
    }

    fn a_second_process_cannot_bind_the_same_address(backend: Backend) {
        const MODULE: &str = "a_second_process_cannot_bind_the_same_address";
        match util::child_role().as_deref() {
            Some("plain") => {
                // Another coreio server started on the address by mistake.
                let addr = child_addr();
                block_on(backend, async move {
                    let err = TcpListener::bind(addr).expect_err("a second process shared the port");
                    assert_addr_in_use(&err, addr);
                    println!("refused: {err}");
                    // An overlapping wildcard address is refused as well.
                    let wildcard = SocketAddr::from(([0, 0, 0, 0], addr.port()));
                    let err = TcpListener::bind(wildcard).expect_err("the wildcard shared the port");
                    assert_addr_in_use(&err, wildcard);
                    println!("refused: {err}");
                });
                return;
            }
            Some("shared") => {
                // The explicit opt-in shares the port with the other process.
                let addr = child_addr();
                block_on(backend, async move {
                    let listener = TcpListener::bind_shared(addr).unwrap();
                    assert_eq!(listener.local_addr().unwrap(), addr);
                    let socket = TcpSocket::new_v4().unwrap();
                    socket.set_reuseport(true).unwrap();
                    socket.bind(addr).unwrap();
                    let _listener2 = socket.listen(16).unwrap();
                    println!("shared");
                });
                return;
            }
            Some("free") => {
                let addr = child_addr();
                block_on(backend, async move {
                    let _listener = TcpListener::bind(addr).unwrap();
                    println!("bound");
                });
                return;
            }
            Some(role) => panic!("unknown child role {role}"),
            None => {}
        }
        block_on(backend, async move {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let out = child(MODULE, backend, "plain", addr);
            assert!(out.contains("another coreio process"), "{out}");
            assert!(out.contains(&format!("binding {addr}: ")), "{out}");
            let out = child(MODULE, backend, "shared", addr);
            assert!(out.contains("shared"), "{out}");
            // The listener still serves after all that.
            let (client, server) = pair_on(&listener).await;
            drop((client, server));

            // A listener that opted in to sharing does not make other processes' plain binds
            // share: they are refused too (here by the probe, as for any other program).
            drop(listener);
            let shared = TcpListener::bind_shared(addr).unwrap();
            let out = child(MODULE, backend, "plain", addr);
            assert!(out.contains("another socket already listens"), "{out}");
            drop(shared);

            // Once this process listens there no more, another one may.
            let out = child(MODULE, backend, "free", addr);
            assert!(out.contains("bound"), "{out}");
        });
    }

    fn a_second_process_cannot_bind_over_a_dual_stack_wildcard(backend: Backend) {
        const MODULE: &str = "a_second_process_cannot_bind_over_a_dual_stack_wildcard";
        if util::child_role().as_deref() == Some("v4") {
            let addr = child_addr();
            block_on(backend, async move {
                let err = TcpListener::bind(addr).expect_err("IPv4 shared a dual-stack port");
                assert_addr_in_use(&err, addr);
            });
            return;
        }
        if !ipv6_available() {
            eprintln!("skipped: no IPv6 loopback here");
            return;
        }
        block_on(backend, async move {
            let socket = TcpSocket::new_v6().unwrap();
            socket.set_only_v6(false).unwrap();
            socket.set_reuseport(true).unwrap();
            socket.bind("[::]:0".parse().unwrap()).unwrap();
            let _listener = socket.listen(16).unwrap();
            let port = _listener.local_addr().unwrap().port();
            child(MODULE, backend, "v4", SocketAddr::from(([0, 0, 0, 0], port)));
        });
    }

    fn another_programs_listener_is_not_shared(backend: Backend) {
        block_on(backend, async {
            // A listener without SO_REUSEPORT: the kernel itself refuses the bind.
            let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = std_listener.local_addr().unwrap();
            let err = TcpListener::bind(addr).expect_err("shared a std listener's port");
            assert_addr_in_use(&err, addr);
            drop(std_listener);
            // A listener of another library that sets SO_REUSEPORT: refused by the probe.
            let (reserved, addr) = util::reserve_port();
            reserved.listen(16).unwrap();
            let err = TcpListener::bind(addr).expect_err("shared a SO_REUSEPORT listener's port");
            assert_addr_in_use(&err, addr);
            // ...unless sharing is asked for.
            let _shared = TcpListener::bind_shared(addr).unwrap();
            // A port that is only bound (no one listens) can be taken: that is how tests and
            // servers reserve a port for their cores.
            let (_reservation, addr) = util::reserve_port();
            let _listener = TcpListener::bind(addr).unwrap();
        });
    }

    fn rebinding_after_time_wait_works(backend: Backend) {
        block_on(backend, async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let (client, server) = pair_on(&listener).await;
            // The server closes first, so the TIME_WAIT is on the server's side (its port).
            drop(server);
            let (res, _) = timeout(PATIENCE, client.read(Vec::with_capacity(8))).await.unwrap();
            assert_eq!(res.unwrap(), 0);
            drop(client);
            assert!(
                util::wait_until(20_000, || in_time_wait(addr.port())).await,
                "the server's side never reached TIME_WAIT"
            );
            drop(listener);
            let again = TcpListener::bind(addr).expect("a restart after TIME_WAIT was refused");
            let (client, _server) = pair_on(&again).await;
            drop(client);
        });
    }

    fn errors_name_the_address(backend: Backend) {
        block_on(backend, async {
            // Not an address of this machine (TEST-NET-1).
            let foreign: SocketAddr = "192.0.2.1:4000".parse().unwrap();
            let err = TcpListener::bind(foreign).expect_err("bound a foreign address");
            assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable, "{err}");
            assert!(err.to_string().starts_with("binding 192.0.2.1:4000: "), "{err}");
            let socket = TcpSocket::new_v4().unwrap();
            let err = socket.bind(foreign).expect_err("bound a foreign address");
            assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable, "{err}");
            assert!(err.to_string().starts_with("binding 192.0.2.1:4000: "), "{err}");
            // The OS error stays reachable beneath the message.
            let source = std::error::Error::source(err.get_ref().unwrap()).unwrap();
            let source = source.downcast_ref::<io::Error>().unwrap();
            assert_eq!(source.raw_os_error(), Some(libc::EADDRNOTAVAIL));
            // A family mismatch.
            let err = TcpSocket::new_v4().unwrap().bind("[::1]:0".parse().unwrap()).unwrap_err();
            assert!(err.to_string().starts_with("binding [::1]:0: "), "{err}");
            // A refused connection names where it went.
            let (_reservation, closed) = util::reserve_port();
            let err = TcpSocket::new_v4().unwrap().connect(closed).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
            assert!(err.to_string().starts_with(&format!("connecting to {closed}: ")), "{err}");
        });
    }

    fn stream_into_std_and_back(backend: Backend) {
        block_on(backend, async {
            let baseline = util::open_fds();
            let (client, server) = pair().await;
            let mut std_client = client.into_std().unwrap();
            // Still non-blocking, as coreio left it; the caller picks.
            std_client.set_nonblocking(false).unwrap();
            std_client.write_all(b"std says hi").unwrap();
            let (res, buf) = server.read_exact(Vec::with_capacity(11)).await;
            res.unwrap();
            assert_eq!(buf, b"std says hi");
            let (res, _) = server.write_all(b"coreio answers".to_vec()).await;
            res.unwrap();
            let mut answer = [0u8; 14];
            std_client.read_exact(&mut answer).unwrap();
            assert_eq!(&answer, b"coreio answers");
            // Back to coreio (from_std makes it non-blocking again), then through a raw fd.
            let client = TcpStream::from_std(std_client).unwrap();
            let raw = client.into_raw_fd();
            // SAFETY: `raw` is the connected socket `into_raw_fd` just gave up.
            let client = unsafe { TcpStream::from_raw_fd(raw) };
            assert_eq!(client.as_raw_fd(), raw);
            let (res, _) = client.write_all(b"raw".to_vec()).await;
            res.unwrap();
            let (res, buf) = server.read_exact(Vec::with_capacity(3)).await;
            res.unwrap();
            assert_eq!(buf, b"raw");
            drop((client, server));
            assert_eq!(util::open_fds(), baseline, "a descriptor leaked");
        });
    }

    fn listener_into_std_and_back(backend: Backend) {
        block_on(backend, async {
            let baseline = util::open_fds();
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            // A connection waiting in the backlog stays there for the std listener.
            let client = TcpStream::connect(addr).await.unwrap();
            let std_listener = listener.into_std().unwrap();
            std_listener.set_nonblocking(false).unwrap();
            let (accepted, peer) = std_listener.accept().unwrap();
            assert_eq!(peer, client.local_addr().unwrap());
            drop(accepted);
            let listener = TcpListener::from_std(std_listener).unwrap();
            let raw = listener.into_raw_fd();
            // SAFETY: `raw` is the listening socket `into_raw_fd` just gave up.
            let listener = unsafe { TcpListener::from_raw_fd(raw) };
            assert_eq!(listener.local_addr().unwrap(), addr);
            let (client2, _server) = pair_on(&listener).await;
            drop((client, client2, _server, listener));
            assert_eq!(util::open_fds(), baseline, "a descriptor leaked");
        });
    }

    fn socket_raw_fd_round_trip(backend: Backend) {
        block_on(backend, async {
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let bound = socket.local_addr().unwrap();
            let raw = socket.into_raw_fd();
            // SAFETY: `raw` is the unconnected socket `into_raw_fd` just gave up.
            let socket = unsafe { TcpSocket::from_raw_fd(raw) };
            assert_eq!(socket.local_addr().unwrap(), bound);
            let listener = socket.listen(16).unwrap();
            let (client, _server) = pair_on(&listener).await;
            drop(client);
        });
    }

    fn into_std_never_loses_what_a_dropped_read_took(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let mut server = server;
            let mut got = Vec::new();
            // A read dropped while it waits (on io_uring, still in the kernel)...
            if let Some((res, buf)) = poll_once(server.read(Vec::with_capacity(64))).await {
                got.extend_from_slice(&buf[..res.unwrap()]);
            }
            // ...then data arrives, which that orphan may take.
            let (res, _) = client.write_all(b"not lost".to_vec()).await;
            res.unwrap();
            let mut std_server = None;
            for _ in 0..1000 {
                match server.into_std() {
                    Ok(std) => {
                        std_server = Some(std);
                        break;
                    }
                    Err(err) => {
                        let message = err.to_string();
                        server = err.into_inner();
                        if message.contains("have left what they took") {
                            // Whatever the orphan took comes back through coreio first.
                            let read = server.read(Vec::with_capacity(64));
                            let (res, buf) = timeout(PATIENCE, read).await.unwrap();
                            got.extend_from_slice(&buf[..res.unwrap()]);
                        } else {
                            coreio::yield_now().await;
                        }
                    }
                }
            }
            let mut std_server = std_server.expect("into_std kept failing");
            std_server.set_nonblocking(false).unwrap();
            drop(client);
            std_server.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"not lost");
        });
    }

    fn into_std_is_refused_while_a_dropped_read_is_in_flight(backend: Backend) {
        block_on(backend, async {
            let (_client, server) = pair().await;
            assert!(poll_once(server.read(Vec::with_capacity(64))).await.is_none());
            // On io_uring the cancelled receive is still in the kernel: refused, stream given
            // back. On epoll a dropped read leaves nothing behind.
            let server = match server.into_std() {
                Ok(std) => {
                    assert_eq!(coreio::backend(), Some(Backend::Epoll), "io_uring let go early");
                    TcpStream::from_std(std).unwrap()
                }
                Err(err) => {
                    assert!(err.to_string().contains("cannot become a std socket"), "{err}");
                    err.into_inner()
                }
            };
            // The orphan's cancellation finishes within a pass of the core loop or so.
            let mut server = server;
            for _ in 0..1000 {
                match server.into_std() {
                    Ok(_) => return,
                    Err(err) => server = err.into_inner(),
                }
                coreio::yield_now().await;
                coreio::time::sleep(Duration::from_millis(1)).await;
            }
            panic!("into_std never succeeded once the dropped read finished");
        });
    }
}

both_backends! {
    fn the_claim_name_lives_as_long_as_the_listeners(backend: Backend) {
        block_on(backend, async {
            let first = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = first.local_addr().unwrap();
            let name = format!("coreio/tcp-listen/{addr}");
            assert!(abstract_name_bound(&name), "no claim name for {addr}");
            let second = TcpListener::bind(addr).unwrap();
            drop(first);
            assert!(abstract_name_bound(&name), "the claim went with the first of two listeners");
            drop(second);
            assert!(!abstract_name_bound(&name), "the claim outlived the last listener");
            // Listeners that share on purpose, or come from std, claim nothing.
            let shared = TcpListener::bind_shared(addr).unwrap();
            let from_std =
                TcpListener::from_std(std::net::TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
            assert!(!abstract_name_bound(&name));
            let std_name = format!("coreio/tcp-listen/{}", from_std.local_addr().unwrap());
            assert!(!abstract_name_bound(&std_name));
            // into_std ends the claim too.
            drop(shared);
            let listener = TcpListener::bind(addr).unwrap();
            assert!(abstract_name_bound(&name));
            let std_listener = listener.into_std().unwrap();
            assert!(!abstract_name_bound(&name));
            drop(std_listener);
        });
    }

    fn dropping_a_connect_in_flight_closes_the_socket(backend: Backend) {
        block_on(backend, async {
            // A listener whose accept queue is full drops new SYNs, so a connect to it stays in
            // flight (the kernel retries for a while) until the future is dropped.
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let listener = socket.listen(0).unwrap();
            let addr = listener.local_addr().unwrap();
            let mut queued = Vec::new();
            let baseline = util::open_fds();
            let mut dropped = false;
            for _ in 0..16 {
                // A connect that the queue takes finishes at once; the first one it cannot take
                // is dropped by the timeout while in flight. (Which one that is does not matter:
                // a slow machine may drop an earlier one, and the test checks the same thing.)
                let connect = TcpSocket::new_v4().unwrap().connect(addr);
                match timeout(Duration::from_millis(300), connect).await {
                    Ok(res) => queued.push(res.unwrap()),
                    Err(_elapsed) => {
                        dropped = true;
                        break;
                    }
                }
            }
            assert!(dropped, "every connect finished: the accept queue never filled");
            // The dropped connect's socket is closed once the kernel is done with it.
            let base = baseline + queued.len();
            assert!(
                util::wait_until(4000, || util::open_fds() == base).await,
                "the socket of a dropped connect was not closed ({} fds open, {base} expected)",
                util::open_fds()
            );
            drop(listener);
        });
    }
}

#[test]
fn bind_outside_a_runtime_fails_and_claims_nothing() {
    let (_reservation, addr) = util::reserve_port();
    let err = TcpListener::bind(addr).expect_err("bound a listener outside a runtime");
    assert!(err.to_string().contains("runtime"), "{err}");
    assert!(!abstract_name_bound(&format!("coreio/tcp-listen/{addr}")));
    // A TcpSocket needs no runtime until it listens or connects.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    assert!(socket.listen(16).is_err());
}

both_backends! {
    fn overlapping_addresses_in_one_process_are_refused(backend: Backend) {
        block_on(backend, async {
            let specific = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let port = specific.local_addr().unwrap().port();
            let wildcard = SocketAddr::from(([0, 0, 0, 0], port));
            let err = TcpListener::bind(wildcard).expect_err("the wildcard joined a specific address");
            assert_addr_in_use(&err, wildcard);
            assert!(err.to_string().contains("overlapping"), "{err}");
            // The specific address itself is still shared.
            let _again = TcpListener::bind(specific.local_addr().unwrap()).unwrap();
        });
    }
}

both_backends! {
    fn into_std_waits_until_the_bytes_a_dropped_read_took_are_read(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            let fd = server.as_raw_fd();
            // A fresh task poll, so the budget cannot make the first poll yield unsubmitted.
            coreio::yield_now().await;
            {
                let mut read = pin!(server.read(Vec::with_capacity(64)));
                poll_pending(read.as_mut());
                let (res, _) = client.write_all(b"held".to_vec()).await;
                res.unwrap();
                if util::on_uring() {
                    // The receive takes the bytes out of the socket before the read is dropped.
                    assert!(util::wait_until(4000, || util::queued(fd) == 0).await);
                    for _ in 0..3 {
                        coreio::yield_now().await;
                    }
                }
            }
            let server = if util::on_uring() {
                let err = server.into_std().expect_err("into_std would have lost held bytes");
                assert!(err.to_string().contains("have left what they took"), "{err}");
                err.into_inner()
            } else {
                server
            };
            // The bytes come back through coreio (on epoll they were never taken).
            let (res, buf) = timeout(PATIENCE, server.read(Vec::with_capacity(64))).await.unwrap();
            assert_eq!(res.unwrap(), 4);
            assert_eq!(buf, b"held");
            let std_server = server.into_std().expect("into_std once the held bytes were read");
            drop((client, std_server));
        });
    }

    fn listener_into_std_waits_until_a_dropped_accepts_connection_is_taken(backend: Backend) {
        block_on(backend, async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let fd = listener.as_raw_fd();
            coreio::yield_now().await;
            let client = {
                let mut accept = pin!(listener.accept());
                poll_pending(accept.as_mut());
                // A blocking connect completes against the backlog without an accept.
                let client = std::net::TcpStream::connect(addr).unwrap();
                if util::on_uring() {
                    assert!(util::wait_until(4000, || !util::acceptable(fd)).await);
                    for _ in 0..3 {
                        coreio::yield_now().await;
                    }
                }
                client
            };
            let listener = if util::on_uring() {
                let err = listener.into_std().expect_err("into_std would have lost a connection");
                assert!(err.to_string().contains("have left what they took"), "{err}");
                err.into_inner()
            } else {
                listener
            };
            let (_stream, peer) = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
            assert_eq!(peer, client.local_addr().unwrap());
            let std_listener = listener.into_std().expect("into_std once the connection was taken");
            drop((client, std_listener));
        });
    }
}

#[test]
fn a_tcp_socket_can_be_set_up_on_any_thread() {
    // Not bound to a core until it listens or connects: Send and Sync, like a std socket.
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<TcpSocket>();
    let socket = std::thread::spawn(|| {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket
    })
    .join()
    .unwrap();
    assert!(socket.reuseaddr().unwrap());
}
