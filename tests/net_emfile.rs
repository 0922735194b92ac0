//! Descriptor exhaustion: a listener whose `accept` hits EMFILE backs off instead of failing,
//! keeps the connections it has, and resumes accepting once descriptors free up.
//!
//! Lowering `RLIMIT_NOFILE` affects the whole process, so the scenario runs in a child process
//! (this test binary re-run for one test, with `COREIO_TEST_CHILD` set), once per backend
//! (`COREIO_BACKEND` passed to the child). The parent only checks the child's exit status.

#[macro_use]
mod util;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use coreio::net::{TcpListener, TcpStream};
use coreio::time::sleep;
use coreio::{Backend, Builder};

const ROLE: &str = "emfile";
/// Connections the client opens while the server is starved.
const CLIENTS: usize = 10;
/// Descriptors left free under the lowered limit: the server can accept this many.
const FREE: usize = 4;
/// Client-side timeout on every blocking operation.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Captures coreio's log records, to see the listener's starvation warning and recovery note.
struct Capture;

static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            eprintln!("log: {line}");
            LOGS.lock().unwrap().push(line);
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

fn logged(level: log::Level, needle: &str) -> bool {
    let prefix = level.to_string();
    LOGS.lock()
        .unwrap()
        .iter()
        .any(|line| line.starts_with(&prefix) && line.contains(needle))
}

/// Commands from the server root to the client thread.
enum Cmd {
    /// Open `CLIENTS` connections (they complete in the listen backlog).
    Connect,
    /// Close them all.
    CloseAll,
    /// Open a fresh connection and check that it echoes.
    Fresh,
}

/// Whether descriptor `fd` is open.
fn is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD on any integer is harmless; it fails with EBADF for a closed one.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Lowers the soft `RLIMIT_NOFILE` so that exactly `free` descriptor numbers stay available.
fn leave_only_free_descriptors(free: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let mut found = 0;
    let mut new_limit = None;
    for fd in 0..limit.rlim_cur.min(1 << 20) as i32 {
        if !is_open(fd) {
            found += 1;
            if found == free {
                new_limit = Some(fd as libc::rlim_t + 1);
                break;
            }
        }
    }
    let new_limit = new_limit.expect("not enough free descriptors under the current limit");
    limit.rlim_cur = new_limit;
    // SAFETY: `limit` is a valid rlimit; lowering the soft limit needs no privilege.
    let res = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(res, 0, "setrlimit: {}", std::io::Error::last_os_error());
    eprintln!("RLIMIT_NOFILE lowered to {new_limit}");
}

/// Whether the process is out of descriptors (a `dup` fails with EMFILE).
fn out_of_descriptors() -> bool {
    // SAFETY: duplicating stderr has no preconditions; a new descriptor is closed at once.
    let fd = unsafe { libc::dup(2) };
    if fd >= 0 {
        // SAFETY: `fd` was just returned by `dup` and is owned here.
        unsafe { libc::close(fd) };
        return false;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EMFILE)
}

/// The client side, on a plain thread with blocking sockets and timeouts.
fn client(addr: SocketAddr, commands: mpsc::Receiver<Cmd>, done: mpsc::Sender<Result<(), String>>) {
    let mut conns = Vec::new();
    for cmd in commands {
        let result = match cmd {
            Cmd::Connect => (0..CLIENTS)
                .map(|_| std::net::TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT))
                .collect::<Result<Vec<_>, _>>()
                .map(|c| conns = c)
                .map_err(|e| format!("connect: {e}")),
            Cmd::CloseAll => {
                conns.clear();
                Ok(())
            }
            Cmd::Fresh => (|| -> std::io::Result<()> {
                let mut s = std::net::TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)?;
                s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
                s.set_write_timeout(Some(CLIENT_TIMEOUT))?;
                s.write_all(b"hello again")?;
                let mut buf = [0u8; 11];
                s.read_exact(&mut buf)?;
                assert_eq!(&buf, b"hello again");
                Ok(())
            })()
            .map_err(|e| format!("fresh connection: {e}")),
        };
        if done.send(result).is_err() {
            return;
        }
    }
}

/// Waits (bounded, about 20 s) for the client thread's answer, without blocking the core.
async fn client_answer(answers: &mpsc::Receiver<Result<(), String>>) {
    for _ in 0..20_000 {
        match answers.try_recv() {
            Ok(result) => return result.unwrap(),
            Err(mpsc::TryRecvError::Empty) => sleep(Duration::from_millis(1)).await,
            Err(mpsc::TryRecvError::Disconnected) => panic!("the client thread died"),
        }
    }
    panic!("the client thread did not answer");
}

/// Waits (bounded, about 20 s) until `done()` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..20_000 {
        if done() {
            return;
        }
        sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn echo(stream: TcpStream) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let (res, b) = stream.read(buf).await;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (res, b) = stream.write_all(b).await;
        if res.is_err() {
            return;
        }
        buf = b;
    }
}

/// Set for the child when it must run a given backend (the parent had no override).
const EXPECT_ENV: &str = "COREIO_TEST_EXPECT_BACKEND";

fn child(expected: Backend) {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    let (cmd_tx, cmd_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let (addr_tx, addr_rx) = mpsc::channel();
    let client_thread = std::thread::spawn(move || {
        let addr = addr_rx.recv().unwrap();
        client(addr, cmd_rx, done_tx);
    });
    Builder::new()
        .block_on(async move {
            if std::env::var_os(EXPECT_ENV).is_some() {
                assert_eq!(coreio::backend(), Some(expected));
            }
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            addr_tx.send(addr).unwrap();

            // The clients connect; nobody accepts yet, so they wait in the backlog.
            cmd_tx.send(Cmd::Connect).unwrap();
            client_answer(&done_rx).await;

            leave_only_free_descriptors(FREE);
            let accepted = Rc::new(Cell::new(0usize));
            let hold = Rc::new(Cell::new(true));
            let held = Rc::new(RefCell::new(Vec::new()));
            let acceptor = coreio::spawn({
                let (accepted, hold, held) = (accepted.clone(), hold.clone(), held.clone());
                async move {
                    loop {
                        let (stream, _) = listener.accept().await.expect("accept failed");
                        accepted.set(accepted.get() + 1);
                        if hold.get() {
                            held.borrow_mut().push(stream);
                        } else {
                            coreio::spawn(echo(stream));
                        }
                    }
                }
            });

            // The server takes what the limit allows, then starves.
            eventually("the server accepted what the limit allows", || {
                accepted.get() == FREE
            })
            .await;
            eventually("the listener reported the exhaustion", || {
                logged(log::Level::Warn, &addr.to_string())
            })
            .await;
            assert!(
                out_of_descriptors(),
                "the process is not at its descriptor limit"
            );
            sleep(Duration::from_millis(20)).await;
            assert_eq!(
                accepted.get(),
                FREE,
                "accepted beyond the descriptor limit?"
            );
            assert!(!acceptor.is_finished(), "the accept loop gave up on EMFILE");

            // Free descriptors: the server drops what it held, the clients close theirs.
            hold.set(false);
            held.borrow_mut().clear();
            cmd_tx.send(Cmd::CloseAll).unwrap();
            client_answer(&done_rx).await;

            // The listener recovers: it drains the backlog (closed connections) ...
            eventually("the backlog was drained", || accepted.get() == CLIENTS).await;
            // ... and serves a fresh connection.
            cmd_tx.send(Cmd::Fresh).unwrap();
            client_answer(&done_rx).await;
            assert_eq!(accepted.get(), CLIENTS + 1);
            assert!(
                logged(log::Level::Info, "recovered"),
                "no recovery was logged"
            );
            drop(cmd_tx);
        })
        .unwrap();
    client_thread.join().unwrap();
}

both_backends! {
    fn accept_recovers_from_emfile(backend: Backend) {
        if util::child_role().as_deref() == Some(ROLE) {
            child(backend);
            return;
        }
        let name = util::backend_test_name("accept_recovers_from_emfile", backend);
        let backend_env = util::child_backend_env(backend);
        let mut env = vec![("COREIO_BACKEND", backend_env.as_str())];
        if !util::backend_overridden() {
            env.push((EXPECT_ENV, "1"));
        }
        let out = util::run_child(&name, ROLE, &env, Duration::from_secs(60));
        util::assert_child_ok(&out, &format!("EMFILE child ({backend})"));
    }
}

/// The same scenario on io_uring's multishot accept (`COREIO_MULTISHOT_ACCEPT=1`): the kernel
/// ends the multishot accept with EMFILE, the listener backs off and arms a new one.
#[test]
fn accept_recovers_from_emfile_multishot() {
    if util::child_role().as_deref() == Some(ROLE) {
        child(Backend::IoUring);
        return;
    }
    let backend_env = util::child_backend_env(Backend::IoUring);
    let mut env = vec![
        ("COREIO_BACKEND", backend_env.as_str()),
        ("COREIO_MULTISHOT_ACCEPT", "1"),
    ];
    if !util::backend_overridden() {
        env.push((EXPECT_ENV, "1"));
    }
    let out = util::run_child(
        "accept_recovers_from_emfile_multishot",
        ROLE,
        &env,
        Duration::from_secs(60),
    );
    util::assert_child_ok(&out, "EMFILE child (io_uring, multishot accept)");
}
