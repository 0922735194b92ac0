//! Helpers shared by the integration tests: the `both_backends!` and `each_path!` macros, runtime shortcuts,
//! connected socket pairs, data patterns, drop guards and child-process plumbing.
//!
//! Every test binary includes this module with `#[macro_use] mod util;` and uses a different
//! subset of it, hence the `dead_code` allowance.
#![allow(dead_code, unused_macros)]

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coreio::Backend;
use coreio::net::{TcpListener, TcpStream};

/// Generates, for each `fn name(backend: Backend) { body }`, a module `name` with two tests,
/// `name::io_uring` and `name::epoll`, that run the body with `Backend::IoUring` and
/// `Backend::Epoll`. Attributes written before `fn` go on both tests.
macro_rules! both_backends {
    ($( $(#[$meta:meta])* fn $name:ident($backend:ident : Backend) $body:block )*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn body($backend: coreio::Backend) $body

                $(#[$meta])*
                #[test]
                fn io_uring() {
                    body(coreio::Backend::IoUring)
                }

                $(#[$meta])*
                #[test]
                fn epoll() {
                    body(coreio::Backend::Epoll)
                }
            }
        )*
    };
}

/// `both_backends!` for tests that run on more paths than the two backends (a backend with a
/// setting switched, say). Given first the paths' type and a list `[test => value, ...]`,
/// generates for each `fn name(path) { body }` a module `name` with one test per entry, named
/// `test`, that runs the body with `path = value`. A file writes its list once, in a macro of
/// its own that calls this one.
macro_rules! each_path {
    ($ty:ty; $paths:tt $( fn $name:ident($path:ident) $body:block )*) => {
        $( each_path!(@one $ty; $paths $name $path $body); )*
    };
    (@one $ty:ty; [$( $test:ident => $value:expr ),+ $(,)?] $name:ident $path:ident $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($path: $ty) $body

            $(
                #[test]
                fn $test() {
                    body($value)
                }
            )+
        }
    };
}

/// Whether `COREIO_BACKEND` overrides the builder's backend in this process.
pub fn backend_overridden() -> bool {
    std::env::var_os("COREIO_BACKEND").is_some()
}

/// Asserts, from inside a core, that it runs `backend` (skipped when `COREIO_BACKEND` is set,
/// since that overrides the builder).
pub fn assert_backend(backend: Backend) {
    let actual = coreio::backend().expect("assert_backend called outside a runtime");
    if !backend_overridden() {
        assert_eq!(
            actual, backend,
            "the core does not run the requested backend"
        );
    }
}

/// Runs `future` on a one-core runtime with `backend` on the calling thread, checking that the
/// core really runs that backend.
pub fn block_on<F>(backend: Backend, future: F) -> F::Output
where
    F: Future + 'static,
    F::Output: 'static,
{
    coreio::Builder::new()
        .backend(backend)
        .block_on(async move {
            assert_backend(backend);
            future.await
        })
        .expect("the runtime failed to start")
}

/// How many cores a multi-core test uses: two where the process may run on two CPUs.
pub fn two_or_fewer_cores() -> usize {
    allowed_cpus().len().clamp(1, 2)
}

/// The CPUs the calling thread may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero `cpu_set_t` is a valid, empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let res =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(res, 0, "sched_getaffinity: {}", io::Error::last_os_error());
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `set` was filled by the kernel and `cpu` is below CPU_SETSIZE.
    (0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// A loopback address whose port is reserved for the caller: the returned socket is bound to
/// it with `SO_REUSEPORT` but never listens, so it receives no connections, yet no other process
/// can take the port while it lives. coreio listeners (which also set `SO_REUSEPORT`) can bind
/// the same address on every core.
pub fn reserve_port() -> (socket2::Socket, SocketAddr) {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, addr)
}

/// A connected pair of coreio streams on the current core: `(client, server)`.
pub async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    pair_on(&listener).await
}

/// Connects a client to `listener` and accepts it; returns `(client, server)`.
pub async fn pair_on(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let addr = listener.local_addr().unwrap();
    let connect = coreio::spawn(async move { TcpStream::connect(addr).await });
    let (server, peer) = listener.accept().await.expect("accept");
    let client = connect.await.expect("connect task").expect("connect");
    assert_eq!(peer, client.local_addr().unwrap());
    (client, server)
}

/// A byte that depends on the connection, the message and the position, so that data routed to
/// the wrong connection, reordered or shifted is detected.
pub fn pattern_byte(conn: u64, msg: u64, pos: u64) -> u8 {
    let mut x = conn
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(msg.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
        .wrapping_add(pos / 8);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    (x >> ((pos % 8) * 8)) as u8
}

/// `len` bytes of the pattern of `(conn, msg)`.
pub fn pattern(conn: u64, msg: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| pattern_byte(conn, msg, i))
        .collect()
}

/// Panics at the first byte of `data` that does not match the pattern starting at `offset`.
pub fn check_pattern(conn: u64, msg: u64, offset: u64, data: &[u8]) {
    if let Some(i) =
        (0..data.len()).find(|&i| data[i] != pattern_byte(conn, msg, offset + i as u64))
    {
        panic!(
            "conn {conn} msg {msg}: byte {} is {:#04x}, expected {:#04x}",
            offset + i as u64,
            data[i],
            pattern_byte(conn, msg, offset + i as u64)
        );
    }
}

/// A deterministic xorshift64* generator.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// Sets a shared flag when dropped: proves that a future (which owns the guard) was dropped.
pub struct DropFlag(Rc<Cell<bool>>);

impl DropFlag {
    /// A guard and the flag it sets.
    pub fn new() -> (DropFlag, Rc<Cell<bool>>) {
        let flag = Rc::new(Cell::new(false));
        (DropFlag(flag.clone()), flag)
    }
}

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Counts drops in a shared counter (usable across threads and after a runtime ends).
pub struct DropCount(pub Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A buffer (a `Vec`) that runs `on_drop` when it is dropped: tests watch
/// when the runtime frees a buffer, or make its `Drop` misbehave (panic, call into the driver).
pub struct DropHookBuf {
    vec: Vec<u8>,
    on_drop: Option<Box<dyn FnOnce()>>,
}

impl DropHookBuf {
    pub fn new(capacity: usize, on_drop: impl FnOnce() + 'static) -> DropHookBuf {
        DropHookBuf {
            vec: Vec::with_capacity(capacity),
            on_drop: Some(Box::new(on_drop)),
        }
    }

    /// A send buffer: `bytes` are its initialised contents.
    pub fn with_bytes(bytes: Vec<u8>, on_drop: impl FnOnce() + 'static) -> DropHookBuf {
        DropHookBuf {
            vec: bytes,
            on_drop: Some(Box::new(on_drop)),
        }
    }
}

impl Drop for DropHookBuf {
    fn drop(&mut self) {
        if let Some(on_drop) = self.on_drop.take() {
            on_drop();
        }
    }
}

// SAFETY: the bytes live in the Vec's heap allocation, which does not move with the buffer and
// lives until it is dropped; `len` bytes of it are initialised.
unsafe impl coreio::buf::IoBuf for DropHookBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.vec.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.vec.len()
    }
    fn bytes_total(&self) -> usize {
        self.vec.capacity()
    }
}

// SAFETY: the Vec's whole capacity is writable; `set_init` counts only what the kernel wrote.
unsafe impl coreio::buf::IoBufMut for DropHookBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.vec.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: the caller guarantees `pos <= capacity` and that `pos` bytes were written.
        unsafe { self.vec.set_len(pos) };
    }
}

/// Yields (and, every few rounds, sleeps a millisecond so the driver runs) until `done()` holds,
/// at most `rounds` times; returns whether it held.
pub async fn wait_until(rounds: usize, mut done: impl FnMut() -> bool) -> bool {
    for round in 0..rounds {
        if done() {
            return true;
        }
        if round % 4 == 3 {
            coreio::time::sleep(Duration::from_millis(1)).await;
        } else {
            coreio::yield_now().await;
        }
    }
    done()
}

/// Number of open descriptors of this process.
pub fn open_fds() -> usize {
    // The directory's own descriptor is listed too; it is there in every count alike.
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Bytes waiting in a connected socket's receive queue (`FIONREAD`, alias `SIOCINQ`).
pub fn queued(fd: std::os::fd::RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: `fd` is an open socket of the caller and `n` a writable c_int for the result.
    let res = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    assert_eq!(res, 0, "FIONREAD: {}", io::Error::last_os_error());
    n as usize
}

/// Whether a listening socket has a connection waiting to be accepted.
pub fn acceptable(fd: std::os::fd::RawFd) -> bool {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pollfd` is one valid, writable pollfd; a zero timeout never blocks.
    let res = unsafe { libc::poll(&mut pollfd, 1, 0) };
    assert!(res >= 0, "poll: {}", io::Error::last_os_error());
    pollfd.revents & libc::POLLIN != 0
}

/// The scheduler state letter (`R`, `S`, ...) of thread `tid` of this process.
pub fn thread_state(tid: libc::pid_t) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; the state follows it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Waits (bounded, about 2 s) until thread `tid` sleeps in the kernel; returns whether it was
/// seen sleeping. Used to set an event only after a core has parked.
pub fn wait_for_thread_to_sleep(tid: libc::pid_t) -> bool {
    for _ in 0..2000 {
        if thread_state(tid) == Some('S') {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// The calling thread's kernel id.
pub fn gettid() -> libc::pid_t {
    // SAFETY: `gettid` has no preconditions.
    unsafe { libc::gettid() }
}

/// Environment variable that tells a re-executed test binary which child role to play.
pub const CHILD_ENV: &str = "COREIO_TEST_CHILD";

/// The child role this process was started for, if it is a child.
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Re-runs this test binary for the single test `test_name` (its full libtest name) with
/// `CHILD_ENV=role` and the extra environment `env`; waits at most `limit` and returns the
/// output. Panics (killing the child) if the limit passes.
pub fn run_child(test_name: &str, role: &str, env: &[(&str, &str)], limit: Duration) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd.spawn().expect("cannot re-run the test binary");
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        io::Read::read_to_end(&mut stdout, &mut buf).ok();
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        io::Read::read_to_end(&mut stderr, &mut buf).ok();
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill().ok();
            child.wait().ok();
            let out = out_thread.join().unwrap();
            let err = err_thread.join().unwrap();
            panic!(
                "child {test_name} ({role}) ran past {limit:?}\n--- stdout\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out_thread.join().unwrap(),
        stderr: err_thread.join().unwrap(),
    }
}

/// Asserts that a child exited successfully, showing its output otherwise; also checks that
/// the child really ran the test (libtest prints `1 passed`), so a typo in the test name, which
/// makes libtest run nothing and exit 0, cannot pass.
pub fn assert_child_ok(output: &Output, what: &str) {
    use std::os::unix::process::ExitStatusExt;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what}: child failed with {:?} (signal {:?})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status,
        output.status.signal()
    );
    assert!(
        stdout.contains("1 passed"),
        "{what}: the child did not run exactly one test\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

/// The `COREIO_BACKEND` value that forces `backend`.
pub fn backend_env(backend: Backend) -> &'static str {
    match backend {
        Backend::IoUring => "uring",
        Backend::Epoll => "epoll",
        Backend::Auto => "auto",
    }
}

/// The `COREIO_BACKEND` value for a child process that should run `backend`: the parent's own
/// override when it has one (CI runs everything with `COREIO_BACKEND=epoll`), else the value
/// that forces `backend`.
pub fn child_backend_env(backend: Backend) -> String {
    std::env::var("COREIO_BACKEND").unwrap_or_else(|_| backend_env(backend).to_string())
}

/// The libtest name of the test `module::io_uring` / `module::epoll` that `both_backends!`
/// generates for `backend`.
pub fn backend_test_name(module: &str, backend: Backend) -> String {
    match backend {
        Backend::IoUring => format!("{module}::io_uring"),
        Backend::Epoll => format!("{module}::epoll"),
        Backend::Auto => panic!("no test is generated for Backend::Auto"),
    }
}

/// The message of a caught panic (`panic!` with a literal or a formatted string).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .expect("the panic payload is a string")
}

/// Polls `future` exactly once, with a waker that does nothing; it must not be ready yet (an
/// operation now in flight, for a test that then drops it).
pub fn poll_once_pending<F: Future>(future: std::pin::Pin<&mut F>) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        future.poll(&mut cx).is_pending(),
        "the operation completed on its first poll"
    );
}

/// Whether the current core runs io_uring (whatever the test asked for: `COREIO_BACKEND`
/// overrides it).
pub fn on_uring() -> bool {
    coreio::backend() == Some(Backend::IoUring)
}

/// io_uring: lets the core park and reap (bounded) until `done()`, which must come true, then
/// a few more passes of the core loop so that the completion is reaped. epoll: a dropped
/// operation never takes anything, so there is nothing to wait for.
pub async fn reaped_until(what: &str, done: impl FnMut() -> bool) {
    if !on_uring() {
        return;
    }
    assert!(
        wait_until(4000, done).await,
        "io_uring: {what} never happened"
    );
    for _ in 0..3 {
        coreio::yield_now().await;
    }
    coreio::time::sleep(Duration::from_millis(1)).await;
}

/// Waits (bounded) for the process's descriptor count to come back to `baseline`; returns the
/// count it ended with.
pub async fn fds_settle_to(baseline: usize) -> usize {
    for _ in 0..200 {
        if open_fds() == baseline {
            break;
        }
        coreio::yield_now().await;
        coreio::time::sleep(Duration::from_millis(1)).await;
    }
    open_fds()
}

/// A path under the system's temporary directory, unique per process and call (a socket file
/// `coreio-{label}-{pid}-{n}.sock`), removed when dropped if something was made there.
pub struct TempPath(std::path::PathBuf);

impl TempPath {
    pub fn new(label: &str) -> TempPath {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        TempPath(
            std::env::temp_dir().join(format!("coreio-{label}-{}-{n}.sock", std::process::id())),
        )
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A fresh directory under the system's temporary directory, removed with everything in it
/// when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("coreio-test-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds the examples `names` with this test's cargo and profile, and returns their paths as
/// cargo reports them (in the order asked).
pub fn build_examples<const N: usize>(names: [&str; N]) -> [std::path::PathBuf; N] {
    use std::path::{Path, PathBuf};
    // This binary is target/<profile dir>/deps/<test>-<hash>.
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .expect("the test binary lives in target/<profile>/deps");
    let profile = match profile_dir {
        "debug" => "dev",
        other => other,
    };
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--quiet",
        "--message-format=json",
        "--profile",
        profile,
    ]);
    for name in names {
        cmd.args(["--example", name]);
    }
    let output = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo build of the examples {names:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    names.map(|name| {
        let wanted = format!("\"name\":\"{name}\"");
        stdout
            .lines()
            .filter(|line| line.contains("\"kind\":[\"example\"]") && line.contains(&wanted))
            .find_map(|line| {
                let start = line.find("\"executable\":\"")? + "\"executable\":\"".len();
                let end = start + line[start..].find('"')?;
                Some(PathBuf::from(&line[start..end]))
            })
            .unwrap_or_else(|| panic!("cargo reported no executable for the example {name}"))
    })
}
