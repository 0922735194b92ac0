//! An echo server with one listener per core: coreio's thread-per-core model in one file. It
//! serves TCP (the default), a Unix stream socket (`--unix PATH`) or UDP (`--udp`).
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:7000 --cores 2
//! cargo run --release --example echo -- --unix /tmp/echo.sock
//! cargo run --release --example echo -- --udp --addr 127.0.0.1:7000
//! ```
//!
//! Every core binds the same address with its own `SO_REUSEPORT` listener, so the kernel spreads
//! incoming connections across the cores and each connection lives on the core that accepted
//! it. With port 0 the server first reserves a free port (a bound, never-listening
//! `SO_REUSEPORT` socket) so that every core binds that same port; the banner says which.
//!
//! `--accept-cores K` makes only the first K cores listen (a skewed set-up: one core accepting
//! for all), and `--balance PERCENT` turns on load-aware accepting
//! ([`coreio::net::LoadBalance`]): a core more than PERCENT above the average of open
//! connections hands new ones to the least loaded core, which serves them from then on.
//!
//! `--unix PATH` binds one Unix stream listener at PATH (Unix sockets have no `SO_REUSEPORT`)
//! and gives every accepting core its own duplicate of that socket, so the kernel hands each
//! connection to one of the cores waiting on it. A path that exists is refused (a live
//! server's socket, a stale one left by a server that was killed, or any other file): nothing
//! is ever removed but the socket file this server created, which it removes when it stops.
//!
//! `--udp` binds one UDP socket per core on `--addr` with `SO_REUSEPORT` (the kernel spreads
//! datagrams by the sender's address and port) and sends each datagram back to its sender.
//! Each receive has a 64 KiB buffer, larger than any UDP datagram, so nothing is truncated.
//! A port that another socket already uses is refused, as TCP's is, rather than shared.
//!
//! The banner names the transport for Unix and UDP (`coreio echo on unix:PATH, ...`,
//! `coreio echo on udp:HOST:PORT, ...`); the TCP banner is `coreio echo on HOST:PORT, ...`.
//!
//! Ctrl-C or SIGTERM stops it cleanly: before the runtime starts, `coreio::signal` streams listen
//! for SIGINT and SIGTERM (so they no longer kill the process), and a plain thread waits on them
//! and sets a [`coreio::sync::Event`]; each core's root future returns when the event is set, which cancels
//! the core's remaining tasks (the accept loop and open connections). The server then prints
//! what each core served and exits 0.

#[path = "support/process.rs"]
mod process;

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coreio::buf::IoBuf;
use coreio::net::{
    DatagramTruncated, LoadBalance, RecvStream, TcpListener, TcpStream, UdpSocket, UnixListener,
    UnixStream,
};
use coreio::sync::Event;
use coreio::{Backend, Builder, CoreId};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const USAGE: &str = "\
usage: echo [--addr HOST:PORT | --unix PATH] [--udp] [--cores N] [--backend auto|uring|epoll]
            [--spin-us N] [--accept-cores K] [--balance PERCENT] [--recv pooled|owned]
            [--sqpoll-ms N [--sqpoll-cpus LIST] [--sqpoll-shared]]

An echo server: TCP with one SO_REUSEPORT listener per core (the default), a Unix stream
socket (--unix) or UDP (--udp).

options:
  --addr HOST:PORT   address to listen on (default 127.0.0.1:7000); port 0 picks a free
                     port, shared by every core, and the banner names it
  --unix PATH        serve a Unix stream socket at PATH instead of TCP: bound once, and every
                     accepting core accepts on its own duplicate of it. PATH must not exist
                     (a stale socket file is refused too: remove it yourself once no server
                     uses it); the server removes the socket file it created when it stops
  --udp              serve UDP on --addr: one SO_REUSEPORT socket per core, each datagram
                     (up to 64 KiB) sent back to its sender
  --cores N          run on the first N CPUs this process may use (default: all of them)
  --backend B        I/O backend: auto (default), uring or epoll; the environment variable
                     COREIO_BACKEND does the same and, when both are given, must agree
  --spin-us N        an idle core polls for N microseconds before it blocks (default 0,
                     at most 10000): lower latency at light load, CPU burned while idle
  --accept-cores K   only the first K cores listen (default: all); the others serve only
                     connections handed to them by --balance (with --udp: only the first K
                     cores have a socket)
  --balance PERCENT  load-aware accepting: a core more than PERCENT above the average of
                     open connections hands new ones to the least loaded core (default off;
                     TCP only)
  --recv MODE        how a stream connection receives: pooled (the default) takes each
                     message in a buffer lent from the core's pool (on io_uring, one
                     multishot receive over a provided buffer ring) and writes that buffer
                     back; owned reads into one 16 KiB buffer per connection
  --sqpoll-ms N      io_uring: a kernel thread polls each core's submission queue and
                     sleeps after N idle milliseconds (1 to 10000; default off): no
                     io_uring_enter to submit while it is awake, at the cost of its CPU
  --sqpoll-cpus LIST with --sqpoll-ms: bind the i-th core's polling thread to the i-th CPU
                     of LIST (comma-separated CPU ids, reused in turn when shorter than
                     the cores); unbound, a thread shares its core's CPUs
  --sqpoll-shared    with --sqpoll-ms: one polling thread for every core's ring (then
                     --sqpoll-cpus takes one CPU)
  -h, --help         print this help

Ctrl-C or SIGTERM stops the server; it prints what each core served and exits 0. Exit status
1 when the server cannot start or fails (an existing --unix PATH, an address in use), 2 for
bad arguments (--unix with --udp or --addr, --balance with --unix or --udp).
";

const DEFAULT_ADDR: &str = "127.0.0.1:7000";

/// Capacity of the one buffer each connection reuses for all its reads and writes.
const BUF_CAPACITY: usize = 16 * 1024;

/// Capacity of each UDP receive: more than the largest UDP datagram (65,507 bytes of payload
/// over IPv4, 65,527 over IPv6), so no datagram is ever truncated.
const DATAGRAM_CAPACITY: usize = 64 * 1024;

/// What the server speaks.
enum Transport {
    Tcp,
    /// A Unix stream socket at this path.
    Unix(PathBuf),
    Udp,
}

struct Options {
    addr: SocketAddr,
    transport: Transport,
    cores: Option<usize>,
    backend: Option<Backend>,
    spin: Duration,
    accept_cores: Option<usize>,
    balance: Option<LoadBalance>,
    pooled_recv: bool,
    sqpoll: Option<Duration>,
    sqpoll_cpus: Option<Vec<usize>>,
    sqpoll_shared: bool,
}

/// `--recv`: whether stream connections receive into the core's pooled buffers (set once,
/// before the runtime starts).
static POOLED_RECV: AtomicBool = AtomicBool::new(true);

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("echo: {message} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("echo: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)` means `--help`.
fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut addr = DEFAULT_ADDR.to_string();
    let mut cores = None;
    let mut backend = None;
    let mut spin = Duration::ZERO;
    let mut accept_cores = None;
    let mut balance = None;
    let mut addr_given = false;
    let mut unix: Option<PathBuf> = None;
    let mut udp = false;
    let mut pooled_recv = true;
    let mut sqpoll = None;
    let mut sqpoll_cpus = None;
    let mut sqpoll_shared = false;
    let mut args = args;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.into())),
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        if flag == "--udp" {
            if inline.is_some() {
                return Err("--udp takes no value".into());
            }
            udp = true;
            continue;
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--addr" => {
                addr = value()?;
                addr_given = true;
            }
            "--unix" => {
                let path = value()?;
                if path.is_empty() {
                    return Err("--unix takes a path, got an empty one".into());
                }
                unix = Some(PathBuf::from(path));
            }
            "--cores" => {
                let text = value()?;
                match text.parse::<usize>() {
                    Ok(n) if n > 0 => cores = Some(n),
                    _ => return Err(format!("--cores takes a positive number, got {text:?}")),
                }
            }
            "--backend" => {
                let text = value()?;
                backend = Some(match text.to_ascii_lowercase().as_str() {
                    "auto" => Backend::Auto,
                    "uring" | "io_uring" | "io-uring" => Backend::IoUring,
                    "epoll" => Backend::Epoll,
                    _ => {
                        return Err(format!(
                            "--backend takes auto, uring or epoll, got {text:?}"
                        ));
                    }
                });
            }
            "--spin-us" => {
                let text = value()?;
                match text.parse::<u64>() {
                    Ok(us) if us <= 10_000 => spin = Duration::from_micros(us),
                    _ => {
                        return Err(format!(
                            "--spin-us takes microseconds from 0 to 10000, got {text:?}"
                        ));
                    }
                }
            }
            "--accept-cores" => {
                let text = value()?;
                match text.parse::<usize>() {
                    Ok(n) if n > 0 => accept_cores = Some(n),
                    _ => {
                        return Err(format!(
                            "--accept-cores takes a positive number, got {text:?}"
                        ));
                    }
                }
            }
            "--balance" => {
                let text = value()?;
                match text.parse::<u32>() {
                    Ok(percent) => balance = Some(LoadBalance::new().margin_percent(percent)),
                    _ => return Err(format!("--balance takes a percentage, got {text:?}")),
                }
            }
            "--sqpoll-ms" => {
                let text = value()?;
                match text.parse::<u64>() {
                    Ok(ms) if (1..=10_000).contains(&ms) => {
                        sqpoll = Some(Duration::from_millis(ms));
                    }
                    _ => {
                        return Err(format!(
                            "--sqpoll-ms takes milliseconds from 1 to 10000, got {text:?}"
                        ));
                    }
                }
            }
            "--sqpoll-shared" => sqpoll_shared = true,
            "--sqpoll-cpus" => {
                let text = value()?;
                let cpus: Result<Vec<usize>, _> = text.split(',').map(str::parse).collect();
                match cpus {
                    Ok(cpus) if !cpus.is_empty() => sqpoll_cpus = Some(cpus),
                    _ => {
                        return Err(format!(
                            "--sqpoll-cpus takes comma-separated CPU ids, got {text:?}"
                        ));
                    }
                }
            }
            "--recv" => {
                let text = value()?;
                pooled_recv = match text.as_str() {
                    "pooled" => true,
                    "owned" => false,
                    _ => return Err(format!("--recv takes pooled or owned, got {text:?}")),
                };
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    let transport = match (unix, udp) {
        (Some(_), true) => return Err("--unix and --udp exclude each other".into()),
        (Some(_), false) if addr_given => {
            return Err(
                "--unix and --addr exclude each other: a Unix socket has no address".into(),
            );
        }
        (Some(path), false) => Transport::Unix(path),
        (None, true) => Transport::Udp,
        (None, false) => Transport::Tcp,
    };
    if balance.is_some() && !matches!(transport, Transport::Tcp) {
        return Err(
            "--balance hands TCP connections between cores; it does not apply to --unix or --udp"
                .into(),
        );
    }
    Ok(Some(Options {
        addr: resolve(&addr)?,
        transport,
        cores,
        backend,
        spin,
        accept_cores,
        balance,
        pooled_recv,
        sqpoll,
        sqpoll_cpus,
        sqpoll_shared,
    }))
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    let mut addrs = addr
        .to_socket_addrs()
        .map_err(|err| format!("--addr {addr:?} is not a usable HOST:PORT: {err}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("--addr {addr:?} resolves to no address"))
}

fn run(options: Options) -> Result<(), String> {
    // Before any thread exists, so that every thread (the runtime's included) inherits the mask.
    let stop = Event::new();
    process::stop_on_signals("echo", stop.clone())?;

    let mut builder = Builder::new()
        .thread_name_prefix("echo")
        .spin_before_park(options.spin);
    POOLED_RECV.store(options.pooled_recv, Ordering::Relaxed);
    if let Some(idle) = options.sqpoll {
        builder = builder.sqpoll(idle);
    }
    if let Some(cpus) = options.sqpoll_cpus {
        builder = builder.sqpoll_cpus(cpus);
    }
    builder = builder.sqpoll_shared(options.sqpoll_shared);
    if let Some(cores) = options.cores {
        builder = builder.cores(cores);
    }
    if let Some(backend) = options.backend {
        builder = builder.backend(backend);
    }
    let rt = builder
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    if let Some(wanted) = options.backend.filter(|b| *b != Backend::Auto)
        && rt.backend() != wanted
    {
        return Err(format!(
            "--backend {wanted} was asked for but COREIO_BACKEND selected {}; unset one",
            rt.backend()
        ));
    }

    let ids: Vec<usize> = rt.cores().iter().map(|core| core.0).collect();
    let accepting = options.accept_cores.unwrap_or(ids.len()).min(ids.len());
    let balance = options.balance;

    // What each listening core serves, made here (before any core runs) so that a path or an
    // address that cannot be used stops the server before it prints a banner.
    let mut _reservation = None;
    let mut _socket_file = None;
    let (shown, endpoints): (String, Vec<Endpoint>) = match &options.transport {
        Transport::Tcp => {
            // Port 0: reserve a free port for all cores. The reservation is bound with
            // SO_REUSEPORT but never listens, so it receives no connection; it is closed when
            // the server stops.
            let addr = if options.addr.port() == 0 {
                let (addr, socket) = process::reserve_port(options.addr)
                    .map_err(|err| format!("cannot find a free port on {}: {err}", options.addr))?;
                _reservation = Some(socket);
                addr
            } else {
                options.addr
            };
            (
                addr.to_string(),
                (0..accepting).map(|_| Endpoint::Tcp(addr)).collect(),
            )
        }
        Transport::Unix(path) => {
            let (file, listener) = SocketFile::bind(path)?;
            _socket_file = Some(file);
            let mut endpoints = Vec::with_capacity(accepting);
            for _ in 1..accepting {
                let duplicate = listener.try_clone().map_err(|err| {
                    format!("cannot duplicate the socket {}: {err}", path.display())
                })?;
                endpoints.push(Endpoint::Unix(duplicate));
            }
            endpoints.push(Endpoint::Unix(listener));
            (format!("unix:{}", path.display()), endpoints)
        }
        Transport::Udp => {
            // The first socket is bound here, with SO_REUSEPORT, and served by the first core;
            // with port 0 it picks the port the other cores then bind. (A reservation that
            // only held the port would receive its share of the datagrams and drop them.)
            let first = bind_first_udp(options.addr)?;
            let addr = first
                .local_addr()
                .map_err(|err| format!("cannot read the address of the UDP socket: {err}"))?;
            let mut endpoints = vec![Endpoint::UdpFirst(first)];
            endpoints.extend((1..accepting).map(|_| Endpoint::Udp(addr)));
            (format!("udp:{addr}"), endpoints)
        }
    };
    let ready = Arc::new(Ready {
        bound: AtomicUsize::new(0),
        cores: accepting,
        banner: format!(
            "coreio echo on {shown}, backend {}, cores {ids:?}{}{}",
            rt.backend(),
            match accepting < ids.len() {
                true => format!(", accepting on the first {accepting}"),
                false => String::new(),
            },
            match balance {
                Some(_) => ", load-aware accepting",
                None => "",
            }
        ),
    });
    let cores: Vec<CoreId> = rt.cores().to_vec();
    // Each listening core takes its endpoint out once, when its root future is made.
    let endpoints: Mutex<Vec<Option<Endpoint>>> =
        Mutex::new(endpoints.into_iter().map(Some).collect());

    let results = rt.run(|core: CoreId| {
        let stop = stop.clone();
        let ready = Arc::clone(&ready);
        let index = cores.iter().position(|c| *c == core);
        let endpoint = index.and_then(|index| {
            let mut endpoints = endpoints
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            endpoints.get_mut(index).and_then(Option::take)
        });
        async move { serve(endpoint, balance, stop, ready).await }
    });

    let udp = matches!(options.transport, Transport::Udp);
    let mut failures = Vec::new();
    for (core, result) in rt.cores().iter().zip(results) {
        match result {
            Ok(Ok(served)) if udp => println!(
                "{core}: {} datagrams echoed, {} bytes echoed{}",
                served.datagrams,
                served.bytes,
                served.ring_note()
            ),
            Ok(Ok(served)) => println!(
                "{core}: {} connections served, {} bytes echoed{}",
                served.connections,
                served.bytes,
                served.ring_note()
            ),
            Ok(Err(message)) => failures.push(format!("{core}: {message}")),
            Err(err) => failures.push(err.to_string()),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\necho: "))
    }
}

/// What one listening core serves.
enum Endpoint {
    /// Bind its own SO_REUSEPORT TCP listener on this address.
    Tcp(SocketAddr),
    /// Accept on this duplicate of the one Unix listener.
    Unix(std::os::unix::net::UnixListener),
    /// Serve the first UDP socket, bound by `run`.
    UdpFirst(std::net::UdpSocket),
    /// Bind another SO_REUSEPORT UDP socket on this address.
    Udp(SocketAddr),
}

/// The first UDP socket, with SO_REUSEPORT so that the other cores can bind its address too.
///
/// A second server on the same port would silently share its datagrams (SO_REUSEPORT lets any
/// process of the same user join), so a given port is first probed with a plain bind, which
/// fails while any socket holds the address.
fn bind_first_udp(addr: SocketAddr) -> Result<std::net::UdpSocket, String> {
    if addr.port() != 0
        && let Err(err) = std::net::UdpSocket::bind(addr)
    {
        return Err(match err.kind() {
            std::io::ErrorKind::AddrInUse => {
                format!("cannot bind a UDP socket to {addr}: another socket already uses it")
            }
            _ => format!("cannot bind a UDP socket to {addr}: {err}"),
        });
    }
    let bind = || -> std::io::Result<std::net::UdpSocket> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::DGRAM.cloexec(),
            Some(Protocol::UDP),
        )?;
        socket.set_reuse_port(true)?;
        socket.bind(&SockAddr::from(addr))?;
        Ok(socket.into())
    };
    bind().map_err(|err| format!("cannot bind a UDP socket to {addr}: {err}"))
}

/// The socket file this server created at `--unix PATH`; removed when the server stops, and
/// only if the path still names that same file (not one that replaced it meanwhile).
struct SocketFile {
    path: PathBuf,
    /// Device and inode of the file `bind` created.
    id: (u64, u64),
}

impl SocketFile {
    /// Binds the Unix listener at `path`, refusing a path that exists: nothing is removed.
    fn bind(path: &Path) -> Result<(SocketFile, std::os::unix::net::UnixListener), String> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            let what = match meta.file_type().is_socket() {
                true => {
                    "a socket file: a running server's, or a stale one left by a server that \
                         was killed; remove it yourself once no server uses it"
                }
                false => "and is not a socket file",
            };
            return Err(format!(
                "--unix {}: the path exists, {what}",
                path.display()
            ));
        }
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(|err| {
            match err.kind() {
                // Created by someone else between the check and the bind.
                std::io::ErrorKind::AddrInUse => {
                    format!(
                        "--unix {}: the path exists (address in use)",
                        path.display()
                    )
                }
                _ => format!("cannot listen on the Unix socket {}: {err}", path.display()),
            }
        })?;
        let file = std::fs::symlink_metadata(path)
            .map(|meta| SocketFile {
                path: path.to_path_buf(),
                id: (meta.dev(), meta.ino()),
            })
            .map_err(|err| format!("cannot stat the new socket file {}: {err}", path.display()))?;
        Ok((file, listener))
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.id);
        if ours && let Err(err) = std::fs::remove_file(&self.path) {
            eprintln!(
                "echo: cannot remove the socket file {}: {err}",
                self.path.display()
            );
        }
    }
}

/// Counts the cores whose listener is bound; the last one prints the banner, so the banner
/// means "accepting on every core".
struct Ready {
    bound: AtomicUsize,
    cores: usize,
    banner: String,
}

impl Ready {
    fn core_bound(&self) {
        if self.bound.fetch_add(1, Ordering::SeqCst) + 1 == self.cores {
            println!("{}", self.banner);
        }
    }
}

/// What one core served.
struct Served {
    connections: u64,
    datagrams: u64,
    bytes: u64,
    /// io_uring: how often the core's completion queue overflowed (a ring too small).
    cq_overflows: Option<u64>,
}

impl Served {
    /// ", N completion-queue overflows" on io_uring, nothing on epoll.
    fn ring_note(&self) -> String {
        self.cq_overflows
            .map(|n| format!(", {n} completion-queue overflows"))
            .unwrap_or_default()
    }
}

/// Counters of one core, shared by all the connections it serves (accepted or handed over).
#[derive(Default)]
struct Counters {
    connections: Cell<u64>,
    datagrams: Cell<u64>,
    bytes: Cell<u64>,
}

thread_local! {
    static COUNTERS: Counters = Counters::default();
}

fn count(counter: impl Fn(&Counters) -> &Cell<u64>, n: u64) {
    COUNTERS.with(|counters| counter(counters).set(counter(counters).get() + n));
}

/// One core's root future: bind or adopt its endpoint (when it has one), serve it in a task,
/// return when `stop` is set. A TCP core without an endpoint serves only connections handed
/// to it.
async fn serve(
    endpoint: Option<Endpoint>,
    balance: Option<LoadBalance>,
    stop: Event,
    ready: Arc<Ready>,
) -> Result<Served, String> {
    let failure = Rc::new(RefCell::new(None));
    let mut _task = None;
    if let Some(endpoint) = endpoint {
        let failure = Rc::clone(&failure);
        let task = match endpoint {
            Endpoint::Tcp(addr) => TcpListener::bind(addr)
                .map_err(|err| format!("cannot listen on {addr}: {err}"))
                .map(|listener| {
                    coreio::spawn(accept_tcp(listener, balance, failure, stop.clone()))
                }),
            Endpoint::Unix(listener) => UnixListener::from_std(listener)
                .map_err(|err| format!("cannot serve the Unix socket: {err}"))
                .map(|listener| coreio::spawn(accept_unix(listener, failure, stop.clone()))),
            Endpoint::UdpFirst(socket) => UdpSocket::from_std(socket)
                .map_err(|err| format!("cannot serve the UDP socket: {err}"))
                .map(|socket| coreio::spawn(echo_datagrams(socket, failure, stop.clone()))),
            Endpoint::Udp(addr) => UdpSocket::builder()
                .reuse_port(true)
                .bind(addr)
                // The error names the address.
                .map_err(|err| format!("cannot serve UDP: {err}"))
                .map(|socket| coreio::spawn(echo_datagrams(socket, failure, stop.clone()))),
        };
        match task {
            Ok(task) => _task = Some(task),
            Err(message) => {
                // Stop the other cores too: a server listening on some cores only is not wanted.
                stop.set();
                return Err(message);
            }
        }
        ready.core_bound();
    }
    stop.wait().await;
    // Returning cancels this core's remaining tasks: the accept loop and every connection.
    match failure.take() {
        Some(message) => Err(message),
        None => Ok(COUNTERS.with(|counters| Served {
            connections: counters.connections.get(),
            datagrams: counters.datagrams.get(),
            bytes: counters.bytes.get(),
            cq_overflows: coreio::stats::ring().map(|ring| ring.completion_queue_overflows),
        })),
    }
}

async fn accept_tcp(
    listener: TcpListener,
    balance: Option<LoadBalance>,
    failure: Rc<RefCell<Option<String>>>,
    stop: Event,
) {
    // Each connection runs as its own task on the core that serves it: this one, or with
    // `balance`, a less loaded one. `serve` absorbs transient accept failures (aborted
    // connections, fd exhaustion); an error that reaches here is fatal for this listener, so
    // stop the whole server.
    let served = listener.serve(balance, |stream, _peer| {
        // Without it a small echo waits for the peer's delayed ACK. A failure only costs latency.
        let _ = stream.set_nodelay(true);
        echo(stream)
    });
    if let Err(err) = served.await {
        *failure.borrow_mut() = Some(format!("accept failed: {err}"));
        stop.set();
    }
}

async fn accept_unix(listener: UnixListener, failure: Rc<RefCell<Option<String>>>, stop: Event) {
    // As for TCP: `accept` absorbs transient failures, so an error here is fatal. Every core
    // waits on its own duplicate of the socket, and the kernel gives each connection to one.
    let err = loop {
        match listener.accept().await {
            Ok((stream, _peer)) => drop(coreio::spawn(echo(stream))),
            Err(err) => break err,
        }
    };
    *failure.borrow_mut() = Some(format!("accept failed: {err}"));
    stop.set();
}

/// The calls `echo` makes, on either stream type.
trait EchoStream {
    async fn read_into(&self, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>);
    async fn write_out<B: IoBuf>(&self, buf: B) -> (std::io::Result<()>, B);
    fn incoming(&self) -> RecvStream<'_>;
}

impl EchoStream for TcpStream {
    async fn read_into(&self, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
        self.read(buf).await
    }
    async fn write_out<B: IoBuf>(&self, buf: B) -> (std::io::Result<()>, B) {
        self.write_all(buf).await
    }
    fn incoming(&self) -> RecvStream<'_> {
        self.recv_stream()
    }
}

impl EchoStream for UnixStream {
    async fn read_into(&self, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
        self.read(buf).await
    }
    async fn write_out<B: IoBuf>(&self, buf: B) -> (std::io::Result<()>, B) {
        self.write_all(buf).await
    }
    fn incoming(&self) -> RecvStream<'_> {
        self.recv_stream()
    }
}

/// Echoes everything until the peer closes.
async fn echo(stream: impl EchoStream) {
    count(|c| &c.connections, 1);
    if POOLED_RECV.load(Ordering::Relaxed) {
        echo_pooled(stream).await
    } else {
        echo_owned(stream).await
    }
}

/// `--recv pooled`: each message arrives in a buffer of the core's pool, which is written
/// back as it is and then returns to the pool; a connection waiting for data holds none.
async fn echo_pooled(stream: impl EchoStream) {
    let mut incoming = stream.incoming();
    while let Some(Ok(buf)) = incoming.next().await {
        count(|c| &c.bytes, buf.len() as u64);
        if stream.write_out(buf).await.0.is_err() {
            return;
        }
    }
}

/// `--recv owned`: one buffer per connection, reused for every read and write.
async fn echo_owned(stream: impl EchoStream) {
    let mut buf = Vec::with_capacity(BUF_CAPACITY);
    loop {
        // `read` fills the Vec from its start, up to its capacity, and sets its length to the
        // number of bytes read; `write_all` then sends exactly those bytes.
        let (res, b) = stream.read_into(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(n) => count(|c| &c.bytes, n as u64),
        }
        let (res, b) = stream.write_out(buf).await;
        buf = b;
        if res.is_err() {
            return;
        }
    }
}

/// Sends every datagram back to its sender, reusing one buffer. A failed send loses that
/// datagram only (UDP may lose any); a failed receive is fatal, as a failed accept is.
async fn echo_datagrams(socket: UdpSocket, failure: Rc<RefCell<Option<String>>>, stop: Event) {
    let mut buf = Vec::with_capacity(DATAGRAM_CAPACITY);
    let err = loop {
        let (res, b) = socket.recv_from(buf).await;
        buf = b;
        let peer = match res {
            Ok((_, peer)) => peer,
            // Cannot happen with a buffer larger than any datagram; skip it rather than echo
            // a part.
            Err(err) if is_truncated(&err) => continue,
            Err(err) => break err,
        };
        let (res, b) = socket.send_to(buf, peer).await;
        buf = b;
        if let Ok(n) = res {
            count(|c| &c.datagrams, 1);
            count(|c| &c.bytes, n as u64);
        }
    };
    *failure.borrow_mut() = Some(format!("UDP receive failed: {err}"));
    stop.set();
}

fn is_truncated(err: &std::io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.is::<DatagramTruncated>())
}
