//! Unix domain stream sockets on both backends: echo over a path and over an abstract name,
//! `pair`, addresses (pathname, abstract, unnamed), peer credentials, the errors of bind and
//! connect (a path in use, a missing path, a stale socket file, invalid input), end of stream
//! and writes to a closed peer, a connect that waits for a full backlog, and cancel safety of
//! accept and read with the descriptor count back to its baseline.
//!
//! Paths are unique per process and test (`TempPath`) and removed when the test ends; abstract
//! names carry the pid too. Tests that count descriptors run alone in a process (nextest's
//! one process per test, or a child of their own under `cargo test`).

#[macro_use]
mod util;

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use coreio::Backend;
use coreio::net::{UnixListener, UnixSocketAddr, UnixStream};
use coreio::time::{sleep, timeout};

use util::{TempPath, block_on, open_fds, pattern};

/// Generous bound for waits that only run out when something is broken.
const PATIENCE: Duration = Duration::from_secs(20);

/// An abstract name unique in this process.
fn abstract_name(what: &str) -> Vec<u8> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("coreio-test-{}-{what}-{n}", std::process::id()).into_bytes()
}
/// Connects a client to `listener` and accepts it; returns `(client, server)`.
async fn pair_on(listener: &UnixListener) -> (UnixStream, UnixStream) {
    let addr = listener.local_addr().unwrap();
    let connect = coreio::spawn(async move { UnixStream::connect_addr(&addr).await });
    let (server, peer) = timeout(PATIENCE, listener.accept())
        .await
        .expect("accept never finished")
        .expect("accept");
    assert!(
        peer.is_unnamed(),
        "an unbound client has an unnamed address, got {peer:?}"
    );
    let client = connect.await.expect("connect task").expect("connect");
    (client, server)
}

/// Sends `data` one way and back, checking every byte.
async fn echo_once(client: &UnixStream, server: &UnixStream, data: Vec<u8>) {
    let len = data.len();
    let expected = data.clone();
    let (res, _) = client.write_all(data).await;
    res.unwrap();
    let (res, got) = timeout(PATIENCE, server.read_exact(Vec::with_capacity(len)))
        .await
        .expect("the bytes never arrived");
    res.unwrap();
    assert!(got == expected, "the server got other bytes than were sent");
    let (res, _) = server.write_all(got).await;
    res.unwrap();
    let (res, back) = timeout(PATIENCE, client.read_exact(Vec::with_capacity(len)))
        .await
        .expect("the echo never arrived");
    res.unwrap();
    assert!(back == expected, "the echo differs from what was sent");
}

/// A client socket bound to an abstract name before it connects (blocking, std-style), so
/// that the accepted connection's peer address tells which client it is.
fn bound_client(name: &[u8], to: &Path) -> (std::os::unix::net::UnixStream, UnixSocketAddr) {
    use socket2::{Domain, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    let addr = UnixSocketAddr::from_abstract_name(name).unwrap();
    let mut raw = vec![0u8];
    raw.extend_from_slice(name);
    let sock_addr =
        SockAddr::unix(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&raw))
            .unwrap();
    socket.bind(&sock_addr).unwrap();
    socket.connect(&SockAddr::unix(to).unwrap()).unwrap();
    (socket.into(), addr)
}

/// Writes a byte from the std side, reads it on `stream`, and back.
async fn exchange(stream: &UnixStream, mut peer: std::os::unix::net::UnixStream) {
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

both_backends! {
    fn echo_round_trip_over_a_path_listener(backend: Backend) {
        let path = TempPath::new("unix");
        let p = path.path().to_owned();
        block_on(backend, async move {
            let listener = UnixListener::bind(&p).unwrap();
            assert_eq!(listener.local_addr().unwrap().as_pathname(), Some(p.as_path()));
            let server = coreio::spawn(async move {
                let (stream, _) = listener.accept().await.unwrap();
                let mut buf = Vec::with_capacity(4096);
                loop {
                    let (res, b) = stream.read(buf).await;
                    if res.unwrap() == 0 {
                        return;
                    }
                    let (res, b) = stream.write_all(b).await;
                    res.unwrap();
                    buf = b;
                }
            });
            let client = UnixStream::connect(&p).await.unwrap();
            assert_eq!(client.peer_addr().unwrap().as_pathname(), Some(p.as_path()));
            assert!(client.local_addr().unwrap().is_unnamed());
            for (msg, len) in [1usize, 100, 4096, 100_000].into_iter().enumerate() {
                let data = pattern(1, msg as u64, len);
                let (res, _) = client.write_all(data.clone()).await;
                res.unwrap();
                let (res, back) = timeout(PATIENCE, client.read_exact(Vec::with_capacity(len)))
                    .await
                    .expect("the echo never came back");
                res.unwrap();
                assert!(back == data, "message {msg}: the echo differs");
            }
            client.shutdown(Shutdown::Write).unwrap();
            timeout(PATIENCE, server).await.expect("the server never saw end of stream").unwrap();
        });
        assert!(path.path().exists(), "the socket file stays after the listener is gone");
    }

    fn abstract_namespace_listener(backend: Backend) {
        block_on(backend, async {
            let name = abstract_name("listener");
            let addr = UnixSocketAddr::from_abstract_name(&name).unwrap();
            let listener = UnixListener::bind_addr(&addr).unwrap();
            let local = listener.local_addr().unwrap();
            assert_eq!(local.as_abstract_name(), Some(&name[..]));
            assert_eq!(local.as_pathname(), None);
            assert_eq!(local.to_string(), format!("@{}", String::from_utf8(name.clone()).unwrap()));
            let (client, server) = pair_on(&listener).await;
            assert_eq!(client.peer_addr().unwrap(), addr);
            assert_eq!(server.local_addr().unwrap(), addr);
            echo_once(&client, &server, pattern(2, 0, 10_000)).await;
            // The name is taken while the listener lives.
            let err = UnixListener::bind_addr(&addr).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
            assert!(err.to_string().contains(&local.to_string()), "{err}");
            // And free again once it is gone: nothing is left behind in the abstract namespace.
            drop((listener, client, server));
            drop(UnixListener::bind_addr(&addr).unwrap());
        });
    }

    fn pair_round_trip(backend: Backend) {
        block_on(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            assert!(a.local_addr().unwrap().is_unnamed());
            assert!(a.peer_addr().unwrap().is_unnamed());
            echo_once(&a, &b, pattern(3, 0, 64)).await;
            echo_once(&b, &a, pattern(3, 1, 200_000)).await;
            let debug = format!("{a:?}");
            assert!(debug.starts_with("UnixStream"), "{debug}");
        });
    }

    fn binding_an_existing_path_is_addr_in_use_naming_it(backend: Backend) {
        let live = TempPath::new("unix");
        let file = TempPath::new("unix");
        std::fs::write(file.path(), b"not a socket").unwrap();
        let (l, f) = (live.path().to_owned(), file.path().to_owned());
        block_on(backend, async move {
            let _listener = UnixListener::bind(&l).unwrap();
            for path in [&l, &f] {
                let err = UnixListener::bind(path).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
                assert!(err.to_string().contains(&path.display().to_string()), "{err}");
            }
        });
        // Nothing was removed or overwritten.
        assert_eq!(std::fs::read(file.path()).unwrap(), b"not a socket");
        assert!(live.path().exists());
    }

    fn a_stale_socket_file_is_addr_in_use_then_refuses_connections(backend: Backend) {
        let path = TempPath::new("unix");
        // A server that exited: its socket file stays behind.
        drop(std::os::unix::net::UnixListener::bind(path.path()).unwrap());
        let p = path.path().to_owned();
        block_on(backend, async move {
            let err = UnixStream::connect(&p).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
            assert!(err.to_string().contains(&p.display().to_string()), "{err}");
            let err = UnixListener::bind(&p).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
            assert!(err.to_string().contains("stale"), "the error says what to do: {err}");
            // Once the user removes it, the path binds.
            std::fs::remove_file(&p).unwrap();
            drop(UnixListener::bind(&p).unwrap());
        });
    }

    fn connect_to_a_missing_path_is_not_found_naming_it(backend: Backend) {
        let path = TempPath::new("unix");
        let p = path.path().to_owned();
        block_on(backend, async move {
            let err = UnixStream::connect(&p).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
            assert!(err.to_string().contains(&p.display().to_string()), "{err}");
            let missing = UnixSocketAddr::from_abstract_name(abstract_name("nobody")).unwrap();
            let err = UnixStream::connect_addr(&missing).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
            assert!(err.to_string().contains(&missing.to_string()), "{err}");
        });
    }

    fn invalid_addresses_are_invalid_input(backend: Backend) {
        block_on(backend, async {
            let long = "x".repeat(200);
            for bad in ["", "a\0b", long.as_str()] {
                let err = UnixSocketAddr::from_pathname(bad).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {err}");
                let err = UnixListener::bind(bad).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {err}");
                let err = UnixStream::connect(bad).await.unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {err}");
            }
            assert!(UnixSocketAddr::from_pathname("x".repeat(107)).is_ok());
            let err = UnixSocketAddr::from_abstract_name([b'n'; 108]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
            assert!(UnixSocketAddr::from_abstract_name([0u8, 1, b'n']).is_ok());
            // An unnamed address cannot be bound or connected to.
            let (a, _b) = UnixStream::pair().unwrap();
            let unnamed = a.local_addr().unwrap();
            assert_eq!(unnamed.to_string(), "(unnamed)");
            let err = UnixListener::bind_addr(&unnamed).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
            let err = UnixStream::connect_addr(&unnamed).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        });
    }

    fn peer_cred_is_our_process(backend: Backend) {
        block_on(backend, async {
            let name = abstract_name("cred");
            let listener =
                UnixListener::bind_addr(&UnixSocketAddr::from_abstract_name(&name).unwrap()).unwrap();
            let (client, server) = pair_on(&listener).await;
            let (a, b) = UnixStream::pair().unwrap();
            // SAFETY: getpid, getuid and getgid have no preconditions.
            let (pid, uid, gid) = unsafe { (libc::getpid(), libc::getuid(), libc::getgid()) };
            for stream in [&client, &server, &a, &b] {
                let cred = stream.peer_cred().unwrap();
                assert_eq!(cred.pid(), Some(pid));
                assert_eq!(cred.uid(), uid);
                assert_eq!(cred.gid(), gid);
            }
        });
    }

    fn peer_addr_of_an_accepted_connection(backend: Backend) {
        let path = TempPath::new("unix");
        let p = path.path().to_owned();
        block_on(backend, async move {
            let listener = UnixListener::bind(&p).unwrap();
            // A client that did not bind: unnamed.
            let (_client, server) = pair_on(&listener).await;
            assert!(server.peer_addr().unwrap().is_unnamed());
            assert_eq!(server.local_addr().unwrap().as_pathname(), Some(p.as_path()));
            // A client bound to an abstract name: the accept reports it.
            let name = abstract_name("client");
            let (std_client, client_addr) = bound_client(&name, &p);
            let (server, peer) = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
            assert_eq!(peer, client_addr);
            assert_eq!(server.peer_addr().unwrap(), client_addr);
            exchange(&server, std_client).await;
        });
    }

    fn read_after_peer_close_is_end_of_stream(backend: Backend) {
        block_on(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            let (res, _) = b.write_all(b"last words".to_vec()).await;
            res.unwrap();
            drop(b);
            let (res, buf) = a.read(Vec::with_capacity(64)).await;
            assert_eq!(res.unwrap(), 10);
            assert_eq!(buf, b"last words");
            for _ in 0..3 {
                let (res, _) = a.read(Vec::with_capacity(64)).await;
                assert_eq!(res.unwrap(), 0, "end of stream is reported every time");
            }
            // A read waiting when the peer closes wakes with end of stream too.
            let (c, d) = UnixStream::pair().unwrap();
            let reader = coreio::spawn(async move { c.read(Vec::with_capacity(8)).await.0 });
            coreio::yield_now().await;
            drop(d);
            assert_eq!(timeout(PATIENCE, reader).await.unwrap().unwrap().unwrap(), 0);
            // read_exact that the peer cuts short is UnexpectedEof.
            let (e, f) = UnixStream::pair().unwrap();
            let (res, _) = f.write_all(vec![1u8; 3]).await;
            res.unwrap();
            f.shutdown(Shutdown::Write).unwrap();
            let (res, _) = e.read_exact(Vec::with_capacity(8)).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        });
    }

    fn write_after_peer_close_is_an_error_not_sigpipe(backend: Backend) {
        // In a child process with SIGPIPE restored to its default action (Rust ignores it at
        // start-up), so a write that raised SIGPIPE would kill the child.
        const ROLE: &str = "unix-sigpipe";
        if util::child_role().as_deref() != Some(ROLE) {
            let name = util::backend_test_name("write_after_peer_close_is_an_error_not_sigpipe", backend);
            let out = util::run_child(&name, ROLE, &[], PATIENCE);
            util::assert_child_ok(&out, "SIGPIPE child");
            return;
        }
        // SAFETY: restoring the default disposition of SIGPIPE has no memory-safety concerns.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        block_on(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            drop(b);
            let (res, _) = a.write(vec![7u8; 1024]).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
            let (res, _) = a.write_all(vec![1u8; 100_000]).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
            // After a shutdown of our own write side, too.
            let (c, _d) = UnixStream::pair().unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            let (res, _) = c.write(vec![7u8; 16]).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        });
    }

    fn closing_with_unread_input_resets_the_peer(backend: Backend) {
        block_on(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            let (res, _) = a.write_all(b"never read".to_vec()).await;
            res.unwrap();
            let (res, _) = b.write_all(b"sent".to_vec()).await;
            res.unwrap();
            drop(b); // with "never read" unread
            let (res, buf) = a.read(Vec::with_capacity(64)).await;
            assert_eq!(res.unwrap(), 4);
            assert_eq!(buf, b"sent");
            let (res, _) = a.read(Vec::with_capacity(64)).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        });
    }

    fn connect_waits_while_the_backlog_is_full(backend: Backend) {
        use socket2::{Domain, SockAddr, Socket, Type};
        let path = TempPath::new("unix");
        let p = path.path().to_owned();
        block_on(backend, async move {
            // A listener with the smallest backlog, filled by blocking clients.
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
            socket.bind(&SockAddr::unix(&p).unwrap()).unwrap();
            socket.listen(0).unwrap();
            let listener = UnixListener::from_std(socket.into()).unwrap();
            let mut waiting = Vec::new();
            let mut connect = loop {
                let mut connect = Box::pin(UnixStream::connect(&p));
                let mut cx = Context::from_waker(Waker::noop());
                match connect.as_mut().poll(&mut cx) {
                    Poll::Ready(stream) => waiting.push(stream.unwrap()),
                    Poll::Pending => break connect,
                }
                assert!(waiting.len() < 16, "a backlog of 0 took 16 connections");
            };
            // Each accept frees room; the waiting connect then gets in.
            let accepted = coreio::spawn(async move {
                let mut streams = Vec::new();
                for _ in 0..waiting.len() + 1 {
                    streams.push(listener.accept().await.unwrap().0);
                }
                (waiting, streams)
            });
            let client = timeout(PATIENCE, connect.as_mut()).await
                .expect("the connect never got in after the backlog drained")
                .unwrap();
            let (_waiting, streams) = timeout(PATIENCE, accepted).await.unwrap().unwrap();
            let (res, _) = client.write_all(b"in".to_vec()).await;
            res.unwrap();
            let (res, buf) = streams.last().unwrap().read(Vec::with_capacity(2)).await;
            assert_eq!(res.unwrap(), 2);
            assert_eq!(buf, b"in");
        });
    }

    fn from_std_listener_and_stream(backend: Backend) {
        let path = TempPath::new("unix");
        let p = path.path().to_owned();
        block_on(backend, async move {
            let std_listener = std::os::unix::net::UnixListener::bind(&p).unwrap();
            let listener = UnixListener::from_std(std_listener).unwrap();
            assert_eq!(listener.local_addr().unwrap().as_pathname(), Some(p.as_path()));
            let std_client = std::os::unix::net::UnixStream::connect(&p).unwrap();
            let client = UnixStream::from_std(std_client).unwrap();
            let (server, _) = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
            echo_once(&client, &server, pattern(4, 0, 5000)).await;
            assert!(format!("{listener:?}").contains(&p.display().to_string()));
            assert_eq!(listener.as_raw_fd(), std::os::fd::AsFd::as_fd(&listener).as_raw_fd());
        });
    }

    fn a_dropped_accept_keeps_its_connection_and_closes_nothing_early(backend: Backend) {
        if !alone_in_process("a_dropped_accept_keeps_its_connection_and_closes_nothing_early", backend) {
            return;
        }
        let path = TempPath::new("unix");
        let p = path.path().to_owned();
        let outside = open_fds();
        block_on(backend, async move {
            let listener = UnixListener::bind(&p).unwrap();
            let fd = listener.as_raw_fd();
            coreio::yield_now().await;
            let before = open_fds();
            let (first, first_addr) = {
                let mut accept = pin!(listener.accept());
                util::poll_once_pending(accept.as_mut());
                // A blocking connect completes against the backlog without an accept.
                let first = bound_client(&abstract_name("first"), &p);
                util::reaped_until("the accept taking the connection", || !util::acceptable(fd)).await;
                if !util::on_uring() {
                    assert!(util::acceptable(fd), "epoll: the dropped accept took the connection");
                }
                first
            };
            let (second, second_addr) = bound_client(&abstract_name("second"), &p);
            let (stream, peer) = timeout(PATIENCE, listener.accept())
                .await
                .expect("the accept after the dropped one never finished")
                .unwrap();
            assert_eq!(
                peer, first_addr,
                "the next accept did not return the connection the dropped accept took"
            );
            exchange(&stream, first).await;
            drop(stream);
            let (stream, peer) = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
            assert_eq!(peer, second_addr);
            exchange(&stream, second).await;
            drop(stream);
            // Everything opened since `before` is closed again.
            assert!(
                util::wait_until(400, || open_fds() == before).await,
                "descriptors left open: {} before, {} now",
                before,
                open_fds()
            );
            // A listener dropped while it holds a connection a dropped accept took closes it.
            {
                let mut accept = pin!(listener.accept());
                util::poll_once_pending(accept.as_mut());
                let _third = bound_client(&abstract_name("third"), &p);
                util::reaped_until("the accept taking the connection", || !util::acceptable(fd)).await;
            }
            drop(listener);
            for _ in 0..5 {
                coreio::yield_now().await;
            }
            sleep(Duration::from_millis(2)).await;
        });
        assert_eq!(open_fds(), outside, "descriptors were left open");
    }

    fn a_dropped_read_keeps_its_bytes_for_the_next_read(backend: Backend) {
        block_on(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            coreio::yield_now().await;
            let head = pattern(5, 0, 1000);
            {
                let mut read = pin!(a.read(Vec::with_capacity(4096)));
                util::poll_once_pending(read.as_mut());
                let (res, _) = b.write_all(head.clone()).await;
                res.unwrap();
                let fd = a.as_raw_fd();
                util::reaped_until("the receive taking the data", || util::queued(fd) == 0).await;
            }
            let tail = pattern(5, 1, 500);
            let (res, _) = b.write_all(tail.clone()).await;
            res.unwrap();
            b.shutdown(Shutdown::Write).unwrap();
            let mut expected = head;
            expected.extend_from_slice(&tail);
            let mut got = Vec::new();
            loop {
                let (res, buf) = timeout(PATIENCE, a.read(Vec::with_capacity(300))).await.unwrap();
                if res.unwrap() == 0 {
                    break;
                }
                got.extend_from_slice(&buf);
            }
            assert!(got == expected, "bytes were lost or reordered");
        });
    }

    fn sockets_work_through_socket2_views(backend: Backend) {
        block_on(backend, async {
            let (a, _b) = UnixStream::pair().unwrap();
            // SAFETY: `a` keeps its descriptor open while the borrow lives.
            let fd = unsafe { BorrowedFd::borrow_raw(a.as_raw_fd()) };
            let sock = socket2::SockRef::from(&fd);
            sock.set_send_buffer_size(64 * 1024).unwrap();
            assert!(sock.send_buffer_size().unwrap() > 0);
            assert_eq!(sock.domain().unwrap(), socket2::Domain::UNIX);
        });
    }

    fn passed_descriptors_arrive_owned_and_close_on_exec(backend: Backend) {
        if !alone_in_process("passed_descriptors_arrive_owned_and_close_on_exec", backend) {
            return;
        }
        block_on(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            let (pipe_read, pipe_write) = pipe();
            let file = tempfile_with(b"in a file");
            let before = open_fds();
            let (res, _) = a.send_fds(b"two fds".to_vec(), &[pipe_write.as_fd(), file.as_fd()]).await;
            assert_eq!(res.unwrap(), 7);
            let (res, buf) = timeout(PATIENCE, b.recv_fds(Vec::with_capacity(64), 8)).await.unwrap();
            let (n, fds) = res.unwrap();
            assert_eq!((n, &buf[..]), (7, &b"two fds"[..]));
            assert_eq!(fds.len(), 2);
            for fd in &fds {
                assert!(cloexec(fd.as_fd()), "a received descriptor is not close-on-exec");
            }
            // They are the same open files: the pipe's write end and the file.
            let mut writer = std::fs::File::from(fds[0].try_clone().unwrap());
            std::io::Write::write_all(&mut writer, b"through").unwrap();
            let mut got = [0u8; 7];
            std::io::Read::read_exact(&mut std::fs::File::from(pipe_read), &mut got).unwrap();
            assert_eq!(&got, b"through");
            let mut contents = String::new();
            let mut received = std::fs::File::from(fds.into_iter().nth(1).unwrap());
            std::io::Seek::rewind(&mut received).unwrap();
            std::io::Read::read_to_string(&mut received, &mut contents).unwrap();
            assert_eq!(contents, "in a file");
            drop((writer, received));
            // Plain bytes still flow around descriptor messages, in order.
            let (res, _) = a.write_all(b"plain".to_vec()).await;
            res.unwrap();
            let (res, buf) = b.recv_fds(Vec::with_capacity(64), 8).await;
            let (n, fds) = res.unwrap();
            assert_eq!((n, fds.len(), &buf[..]), (5, 0, &b"plain"[..]));
            assert!(
                util::wait_until(400, || open_fds() == before - 1).await,
                "descriptors left open: {before} before (with the pipe's read end), {} now",
                open_fds()
            );
            drop((pipe_write, file));
            // End of stream.
            drop(a);
            let (res, _) = b.recv_fds(Vec::with_capacity(8), 1).await;
            assert_eq!(res.unwrap().0, 0);
        });
    }

    fn the_callers_descriptors_may_close_while_a_dropped_send_is_in_flight(backend: Backend) {
        // The send passes its own duplicates: closing the original after dropping the send
        // future (on io_uring its entry may not even have reached the kernel yet) never makes
        // the peer receive whatever file reuses the number.
        block_on(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            let file = tempfile_with(b"still open");
            coreio::yield_now().await;
            let sent = {
                let fds = [file.as_fd()];
                let mut send = pin!(a.send_fds(b"f".to_vec(), &fds));
                let mut cx = Context::from_waker(Waker::noop());
                send.as_mut().poll(&mut cx).is_ready()
            };
            drop(file);
            // Open files at once, one of which takes the number if it is the lowest free.
            let others: Vec<_> = (0..4).map(|_| tempfile_with(b"another file")).collect();
            let fd = b.as_raw_fd();
            if !sent {
                // io_uring: the orphan is sent when the core next enters the kernel (its
                // cancellation queued behind it finds nothing left to cancel).
                util::wait_until(400, || util::queued(fd) > 0).await;
            }
            if util::queued(fd) == 0 {
                return; // the cancellation won the race: nothing was sent
            }
            let (res, _) = b.recv_fds(Vec::with_capacity(8), 1).await;
            let (_, fds) = res.unwrap();
            let mut received = std::fs::File::from(fds.into_iter().next().unwrap());
            let mut contents = String::new();
            std::io::Seek::rewind(&mut received).unwrap();
            std::io::Read::read_to_string(&mut received, &mut contents).unwrap();
            assert_eq!(contents, "still open", "the peer got the file that reused the number");
            drop(others);
        });
    }

    fn too_many_descriptors_for_the_receive_are_an_error_and_closed(backend: Backend) {
        if !alone_in_process("too_many_descriptors_for_the_receive_are_an_error_and_closed", backend) {
            return;
        }
        block_on(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            let file = tempfile_with(b"x");
            let before = open_fds();
            for max in [0usize, 1, 2] {
                let fds = [file.as_fd(), file.as_fd(), file.as_fd()];
                let (res, _) = a.send_fds(vec![max as u8; 4], &fds).await;
                assert_eq!(res.unwrap(), 4);
                let (res, buf) = b.recv_fds(Vec::with_capacity(64), max).await;
                let err = res.unwrap_err();
                assert!(err.to_string().contains("descriptors"), "{err}");
                assert_eq!(buf, vec![max as u8; 4], "the bytes are in the buffer");
            }
            assert!(
                util::wait_until(400, || open_fds() == before).await,
                "descriptors leaked: {before} before, {} now",
                open_fds()
            );
        });
    }

    fn bad_descriptor_passing_input_is_invalid_input(backend: Backend) {
        block_on(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            let file = tempfile_with(b"x");
            let (res, _) = a.send_fds(Vec::new(), &[file.as_fd()]).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidInput);
            let many = vec![file.as_fd(); 254];
            let (res, _) = a.send_fds(b"x".to_vec(), &many).await;
            let err = res.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("253"), "{err}");
            let (res, _) = b.recv_fds(Vec::new(), 1).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidInput);
            // 253 is fine, and an empty list is a plain send.
            let most = vec![file.as_fd(); 253];
            let (res, _) = a.send_fds(b"m".to_vec(), &most).await;
            assert_eq!(res.unwrap(), 1);
            let (res, _) = b.recv_fds(Vec::with_capacity(4), 300).await;
            assert_eq!(res.unwrap().1.len(), 253);
            let (res, _) = a.send_fds(b"n".to_vec(), &[]).await;
            assert_eq!(res.unwrap(), 1);
            let (res, _) = b.recv_fds(Vec::with_capacity(4), 1).await;
            assert_eq!(res.unwrap().1.len(), 0);
            // To a closed peer: an error, as for write.
            drop(b);
            let (res, _) = a.send_fds(b"x".to_vec(), &[file.as_fd()]).await;
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        });
    }

    fn a_dropped_recv_fds_closes_what_it_took_and_keeps_the_bytes(backend: Backend) {
        if !alone_in_process("a_dropped_recv_fds_closes_what_it_took_and_keeps_the_bytes", backend) {
            return;
        }
        block_on(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            let file = tempfile_with(b"x");
            coreio::yield_now().await;
            let before = open_fds();
            {
                let mut recv = pin!(b.recv_fds(Vec::with_capacity(64), 4));
                util::poll_once_pending(recv.as_mut());
                let (res, _) = a.send_fds(b"with fds".to_vec(), &[file.as_fd(), file.as_fd()]).await;
                res.unwrap();
                let fd = b.as_raw_fd();
                util::reaped_until("the receive taking the message", || util::queued(fd) == 0).await;
            }
            let (res, buf) = timeout(PATIENCE, b.recv_fds(Vec::with_capacity(64), 4)).await.unwrap();
            let (n, fds) = res.unwrap();
            assert_eq!(&buf[..n], b"with fds", "the bytes a dropped receive took come back");
            if util::on_uring() {
                assert!(fds.is_empty(), "descriptors of a dropped receive are closed");
            } else {
                assert_eq!(fds.len(), 2, "epoll: the dropped receive took nothing");
            }
            drop(fds);
            assert!(
                util::wait_until(400, || open_fds() == before).await,
                "descriptors leaked: {before} before, {} now",
                open_fds()
            );
        });
    }


    fn a_plain_read_after_bytes_with_descriptors_sees_what_follows(backend: Backend) {
        if !alone_in_process("a_plain_read_after_bytes_with_descriptors_sees_what_follows", backend) {
            return;
        }
        // A Unix receive stops at bytes that carry descriptors, with more queued behind them:
        // the short read must not make the epoll backend wait for a readable edge that already
        // came (the core parks in between, so that edge is consumed before the first read).
        block_on(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            let file = tempfile_with(b"x");
            let before = open_fds();
            for round in 0..3u8 {
                let (res, _) = a.send_fds(vec![b'A' + round], &[file.as_fd()]).await;
                res.unwrap();
                let (res, _) = a.write_all(b"after".to_vec()).await;
                res.unwrap();
                sleep(Duration::from_millis(2)).await;
                let mut got = Vec::new();
                while got.len() < 6 {
                    let (res, buf) = timeout(PATIENCE, b.read(Vec::with_capacity(4096)))
                        .await
                        .expect("the bytes behind a descriptor message were never read");
                    assert!(res.unwrap() > 0);
                    got.extend_from_slice(&buf);
                }
                assert_eq!(got, [&[b'A' + round][..], b"after"].concat());
            }
            // A plain read closes the descriptors it meets (the kernel does).
            drop(file);
            assert!(
                util::wait_until(400, || open_fds() == before - 1).await,
                "descriptors leaked: {before} before (with the file), {} now",
                open_fds()
            );
        });
    }

    fn accept_backs_off_while_out_of_descriptors_and_resumes(backend: Backend) {
        // In a child process: lowering RLIMIT_NOFILE affects the whole process.
        const ROLE: &str = "unix-emfile";
        if util::child_role().as_deref() != Some(ROLE) {
            let name = util::backend_test_name(
                "accept_backs_off_while_out_of_descriptors_and_resumes",
                backend,
            );
            let out = util::run_child(&name, ROLE, &[], PATIENCE);
            util::assert_child_ok(&out, "EMFILE child");
            return;
        }
        block_on(backend, async {
            use socket2::{Domain, Socket, Type};
            let name = abstract_name("emfile");
            let addr = UnixSocketAddr::from_abstract_name(&name).unwrap();
            let listener = UnixListener::bind_addr(&addr).unwrap();
            // Everything needing a descriptor is made before the limit drops.
            let client = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
            let spare = std::fs::File::open("/dev/null").unwrap();
            let saved = no_descriptors_left();
            client
                .connect(&socket2::SockAddr::unix(std::ffi::OsStr::from_bytes(&[&[0u8][..], &name].concat())).unwrap())
                .unwrap();
            let err = std::fs::File::open("/dev/null").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "the limit did not bite: {err}");
            // The accept fails with EMFILE over and over, backing off: it neither returns an
            // error nor gives up while the process has no descriptor to give it.
            let starved = timeout(Duration::from_millis(50), listener.accept()).await;
            assert!(starved.is_err(), "accept returned while out of descriptors: {starved:?}");
            // One descriptor frees up: the next accept gets the connection.
            drop(spare);
            let (stream, _) = timeout(PATIENCE, listener.accept())
                .await
                .expect("accept never resumed after a descriptor freed up")
                .unwrap();
            restore_limit(saved);
            exchange(&stream, client.into()).await;
        });
    }
}

/// Whether this test runs alone in its process, as counting the process's descriptors needs:
/// under nextest (one process per test) or as a child. Otherwise (`cargo test` runs tests on
/// threads of one process) it re-runs the test alone in a child, checks that it passed, and
/// returns false.
fn alone_in_process(module: &str, backend: Backend) -> bool {
    if util::child_role().is_some()
        || std::env::var("NEXTEST_EXECUTION_MODE").as_deref() == Ok("process-per-test")
    {
        return true;
    }
    let out = util::run_child(
        &util::backend_test_name(module, backend),
        "alone",
        &[],
        PATIENCE,
    );
    util::assert_child_ok(&out, "the test alone in a process");
    false
}

/// A pipe: (read end, write end), close-on-exec.
fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two c_ints, as pipe2 needs.
    let res = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(res, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

/// An unlinked temporary file holding `contents`.
fn tempfile_with(contents: &[u8]) -> std::fs::File {
    let path = TempPath::new("unix");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path.path())
        .unwrap();
    std::io::Write::write_all(&mut file, contents).unwrap();
    file
}

/// Whether `fd` has FD_CLOEXEC set.
fn cloexec(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    // SAFETY: F_GETFD on a borrowed, open descriptor reads its flags and takes no pointer.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    assert!(flags >= 0, "fcntl: {}", io::Error::last_os_error());
    flags & libc::FD_CLOEXEC != 0
}

/// Lowers the soft `RLIMIT_NOFILE` to the lowest unused descriptor number, so that the process
/// cannot open another descriptor until one below it closes; returns the old limit.
fn no_descriptors_left() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    // SAFETY: F_GETFD on any number is harmless; it fails with EBADF for a closed one.
    let lowest_free = (0..)
        .find(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1)
        .unwrap();
    let lowered = libc::rlimit {
        rlim_cur: lowest_free as libc::rlim_t,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: `lowered` is a valid rlimit; lowering the soft limit needs no privilege.
    let res = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) };
    assert_eq!(res, 0, "setrlimit: {}", io::Error::last_os_error());
    limit
}

fn restore_limit(limit: libc::rlimit) {
    // SAFETY: `limit` is the valid rlimit `getrlimit` returned.
    let res = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(res, 0, "setrlimit: {}", io::Error::last_os_error());
}
