//! What every peer echo server shares: the command line, the listener, the banner, the accept
//! back-off and the way the process stops.
//!
//! Each binary in `src/bin/` is the same TCP echo server written against one runtime, so that
//! coreio's `examples/echo.rs` can be compared with them fairly. This crate owns everything that
//! is not the runtime: a binary only says how its runtime runs one event loop (or, for tokio's
//! multi-threaded scheduler, one pool) and how a connection is echoed.
//!
//! The life of a server, driven by [`serve`]:
//!
//! 1. parse `--addr HOST:PORT` and `--cores N` (bad arguments exit 2, `--help` exits 0);
//! 2. block SIGINT and SIGTERM, before any thread exists, so that every thread inherits the mask
//!    and a plain thread can `sigwait` for them;
//! 3. with port 0, reserve a free port (a bound, never-listening `SO_REUSEPORT` socket) so that
//!    every loop's listener binds that same port;
//! 4. let the binary start its loops; each binds its own listener ([`Server::bind`]) and reports
//!    it ([`Server::listening`]); the last one prints `<label> echo on <ADDR>`;
//! 5. wait for a stop signal (exit 0) or a failed loop (exit 1).

pub mod tokio_echo;

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Capacity of the one buffer each connection reuses for all its reads and writes.
pub const BUF_CAPACITY: usize = 16 * 1024;

/// Listen backlog of every listener (Linux caps it at `net.core.somaxconn`).
pub const BACKLOG: i32 = 4096;

/// How long an accept loop pauses after a failure that retrying at once would repeat (EMFILE).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

const DEFAULT_ADDR: &str = "127.0.0.1:7000";

/// How many listeners the server opens, and so how many must be bound before the banner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listeners {
    /// One `SO_REUSEPORT` listener per event loop, one loop per `--cores`.
    PerCore,
    /// One listener shared by a pool of `--cores` worker threads.
    One,
}

/// Parses the command line, starts the server with `start` and waits for it to stop; never
/// returns.
///
/// `start` starts the event loops (on threads of its own, see [`Server::spawn_cores`]) and
/// returns; whatever it returns is kept alive until the process exits. If it fails, or a loop
/// reports a failure through [`Server::fail`], the process exits 1; on SIGINT or SIGTERM it
/// exits 0.
pub fn serve<T>(
    label: &'static str,
    listeners: Listeners,
    start: impl FnOnce(&Server) -> Result<T, String>,
) -> ! {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{}", usage(label));
            let _ = io::stdout().flush();
            std::process::exit(0);
        }
        Err(message) => {
            eprintln!("{label}: {message} (see --help)");
            std::process::exit(2);
        }
    };
    let fail = |message: String| -> ! {
        eprintln!("{label}: {message}");
        std::process::exit(1);
    };

    // Before any thread exists, so that every thread (the runtimes' included) inherits the mask.
    let signals = block_stop_signals().unwrap_or_else(|message| fail(message));

    // Port 0: reserve a free port for all listeners. The reservation is bound with SO_REUSEPORT
    // but never listens, so it receives no connection; it lives until the process exits.
    let (addr, _reservation) = if options.addr.port() == 0 {
        let (addr, socket) = reserve_port(options.addr).unwrap_or_else(|err| {
            fail(format!(
                "cannot find a free port on {}: {err}",
                options.addr
            ))
        });
        (addr, Some(socket))
    } else {
        (options.addr, None)
    };

    let (events, stops) = mpsc::channel();
    {
        let events = events.clone();
        std::thread::Builder::new()
            .name(format!("{}-sig", short_name(label)))
            .spawn(move || {
                if let Some(stop) = wait_for_signal(&signals) {
                    let _ = events.send(stop);
                }
            })
            .unwrap_or_else(|err| fail(format!("cannot start the signal thread: {err}")));
    }

    let server = Server {
        inner: Arc::new(Inner {
            label,
            addr,
            cores: options.cores,
            expected: match listeners {
                Listeners::PerCore => options.cores,
                Listeners::One => 1,
            },
            bound: AtomicUsize::new(0),
            events,
        }),
    };
    let _running = start(&server).unwrap_or_else(|message| fail(message));

    match stops.recv() {
        Ok(Stop::Signal) => {
            let _ = io::stdout().flush();
            std::process::exit(0);
        }
        Ok(Stop::Failed(message)) => fail(message),
        // Unreachable while `server` holds a sender; exit rather than hang if it ever happens.
        Err(_) => fail("lost track of the event loops".into()),
    }
}

/// Why the process stops.
enum Stop {
    Signal,
    Failed(String),
}

/// A handle on the running server, shared by its event loops: cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    label: &'static str,
    /// The address every listener binds, port resolved.
    addr: SocketAddr,
    cores: usize,
    /// Listeners to bind before the banner means "accepting everywhere".
    expected: usize,
    bound: AtomicUsize,
    events: mpsc::Sender<Stop>,
}

impl Server {
    /// The binary's name, used in the banner, in messages and in thread names.
    pub fn label(&self) -> &'static str {
        self.inner.label
    }

    /// The `--cores` value: how many event loops (or worker threads) to run.
    pub fn cores(&self) -> usize {
        self.inner.cores
    }

    /// The address to listen on, with a real port even if `--addr` said 0.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Binds a listener on [`Server::addr`] with `SO_REUSEADDR`, `SO_REUSEPORT` and a backlog of
    /// [`BACKLOG`]. It is left in blocking mode, as io_uring runtimes want it; a readiness-based
    /// runtime must make it non-blocking.
    pub fn bind(&self) -> Result<std::net::TcpListener, String> {
        bind_listener(self.inner.addr)
            .map_err(|err| format!("cannot listen on {}: {err}", self.inner.addr))
    }

    /// Says that one listener is accepting; the last of them prints the banner.
    pub fn listening(&self) {
        if self.inner.bound.fetch_add(1, Ordering::SeqCst) + 1 == self.inner.expected {
            let mut stdout = io::stdout().lock();
            let _ = writeln!(stdout, "{} echo on {}", self.inner.label, self.inner.addr);
            let _ = stdout.flush();
        }
    }

    /// Stops the whole server with exit status 1 and `message` on stderr.
    pub fn fail(&self, message: String) {
        let _ = self.inner.events.send(Stop::Failed(message));
    }

    /// Starts [`Server::cores`] threads, named `<label>-<core>` without the `peer-` (Linux keeps
    /// 15 bytes of a thread name), each running `core_main(server,
    /// core)`: one event loop each, which should run until the process exits. A loop that returns
    /// (an error, or `Ok` because it ended) or panics stops the server.
    pub fn spawn_cores<F>(&self, core_main: F) -> Result<(), String>
    where
        F: Fn(&Server, usize) -> Result<(), String> + Send + Sync + 'static,
    {
        let core_main = Arc::new(core_main);
        for core in 0..self.cores() {
            let server = self.clone();
            let core_main = Arc::clone(&core_main);
            std::thread::Builder::new()
                .name(format!("{}-{core}", short_name(self.label())))
                .spawn(move || {
                    // The panic itself is already on stderr, from the default hook.
                    let message =
                        match panic::catch_unwind(AssertUnwindSafe(|| core_main(&server, core))) {
                            Ok(Ok(())) => format!("core {core}: event loop ended"),
                            Ok(Err(message)) => format!("core {core}: {message}"),
                            Err(_) => format!("core {core}: event loop panicked"),
                        };
                    server.fail(message);
                })
                .map_err(|err| format!("cannot start thread for core {core}: {err}"))?;
        }
        Ok(())
    }

    /// What an accept loop does after `accept` failed with `err`: `None` to accept again at once
    /// (the failure belonged to one connection), `Some(pause)` to wait first (the process is out
    /// of file descriptors or memory; retrying at once would spin). The first failure of the
    /// second kind is logged to stderr, later ones are not.
    pub fn accept_backoff(&self, err: &io::Error) -> Option<Duration> {
        static LOGGED: AtomicBool = AtomicBool::new(false);
        if is_connection_error(err) {
            return None;
        }
        if !LOGGED.swap(true, Ordering::Relaxed) {
            eprintln!(
                "{}: accept failed: {err}; pausing {ACCEPT_BACKOFF:?} and retrying \
                 (further accept failures are not logged)",
                self.inner.label
            );
        }
        Some(ACCEPT_BACKOFF)
    }
}

/// The label without its `peer-` prefix, for thread names: `uring-raw-0` fits in the 15 bytes
/// Linux keeps, `peer-uring-raw-0` does not.
pub fn short_name(label: &str) -> &str {
    label.strip_prefix("peer-").unwrap_or(label)
}

/// Accept failures that concern only the connection being accepted (Linux `accept(2)` passes a
/// new connection's pending network errors to the caller): the listener is fine.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || matches!(
        err.raw_os_error(),
        Some(
            libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::ENETDOWN
                | libc::EPERM
        )
    )
}

struct Options {
    addr: SocketAddr,
    cores: usize,
}

fn usage(label: &str) -> String {
    format!(
        "\
usage: {label} [--addr HOST:PORT] [--cores N]

A TCP echo server for comparing runtimes with coreio's examples/echo.rs.

options:
  --addr HOST:PORT   address to listen on (default {DEFAULT_ADDR}); port 0 picks a free
                     port and the banner names it
  --cores N          number of event loops, or worker threads (default 1)
  -h, --help         print this help

Once listening it prints \"{label} echo on ADDR\". Ctrl-C or SIGTERM stops it (exit 0).
"
    )
}

/// `Ok(None)` means `--help`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut addr = DEFAULT_ADDR.to_string();
    let mut cores = 1;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.into())),
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--cores" => {
                let text = value()?;
                cores = match text.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--cores takes a positive number, got {text:?}")),
                };
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Some(Options {
        addr: resolve(&addr)?,
        cores,
    }))
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|err| format!("--addr {addr:?} is not a usable HOST:PORT: {err}"))?
        .next()
        .ok_or_else(|| format!("--addr {addr:?} resolves to no address"))
}

fn reuse_port_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket)
}

/// Binds a listener on `addr` with `SO_REUSEADDR`, `SO_REUSEPORT` and a backlog of
/// [`BACKLOG`], in blocking mode: what [`Server::bind`] does, for a peer that does not go
/// through [`serve`] (peer-http-tokio).
pub fn bind_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = reuse_port_socket(addr)?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Binds a socket with `SO_REUSEPORT` on port 0 and returns the address the kernel picked.
fn reserve_port(addr: SocketAddr) -> io::Result<(SocketAddr, Socket)> {
    let socket = reuse_port_socket(addr)?;
    let bound = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound to a non-IP address"))?;
    Ok((bound, socket))
}

/// SIGINT and SIGTERM, blocked, for a peer that does not go through [`serve`] (peer-http-tokio)
/// to wait on: [`StopSignals::block`] before any thread starts, [`StopSignals::wait`] on one.
pub struct StopSignals(libc::sigset_t);

impl StopSignals {
    /// Blocks SIGINT and SIGTERM in the calling thread and in every thread it starts later.
    pub fn block() -> Result<StopSignals, String> {
        block_stop_signals().map(StopSignals)
    }

    /// Returns once SIGINT or SIGTERM comes. If `sigwait` fails (said on stderr) it never
    /// returns: the process can then still be killed, just not stopped cleanly.
    pub fn wait(&self) {
        if wait_for_signal(&self.0).is_none() {
            loop {
                std::thread::park();
            }
        }
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread it starts later).
fn block_stop_signals() -> Result<libc::sigset_t, String> {
    // SAFETY: an all-zero `sigset_t` is valid storage; `sigemptyset` initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid, writable storage for a signal set, and SIGINT and SIGTERM are
    // valid signal numbers, so these calls cannot fail.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    // SAFETY: `set` is an initialised signal set; the old mask is not asked for (null).
    let res = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if res != 0 {
        return Err(format!(
            "cannot block SIGINT and SIGTERM: {}",
            io::Error::from_raw_os_error(res)
        ));
    }
    Ok(set)
}

/// Waits for one of the signals in `set` (blocked in this thread); `None` if `sigwait` fails,
/// in which case the server can still be killed, just not stopped cleanly.
fn wait_for_signal(set: &libc::sigset_t) -> Option<Stop> {
    let mut signal: libc::c_int = 0;
    // SAFETY: `set` is an initialised signal set and `signal` is valid, writable storage.
    let res = unsafe { libc::sigwait(set, &mut signal) };
    if res != 0 {
        eprintln!(
            "sigwait failed ({}); SIGINT and SIGTERM will not stop the server",
            io::Error::from_raw_os_error(res)
        );
        return None;
    }
    Some(Stop::Signal)
}
