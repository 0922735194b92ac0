//! A TCP echo server with one listener per core: coreio's thread-per-core model in one file.
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:7000 --cores 2
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
//! Ctrl-C or SIGTERM stops it cleanly: SIGINT and SIGTERM are blocked before the runtime starts
//! (its threads inherit the mask), a plain thread `sigwait`s for them and sets a
//! [`coreio::sync::Event`]; each core's root future returns when the event is set, which cancels
//! the core's remaining tasks (the accept loop and open connections). The server then prints
//! what each core served and exits 0.

#[path = "support/process.rs"]
mod process;

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coreio::net::{LoadBalance, TcpListener, TcpStream};
use coreio::sync::Event;
use coreio::{Backend, Builder, CoreId};

const USAGE: &str = "\
usage: echo [--addr HOST:PORT] [--cores N] [--backend auto|uring|epoll] [--spin-us N]
            [--accept-cores K] [--balance PERCENT]

A TCP echo server with one SO_REUSEPORT listener per core.

options:
  --addr HOST:PORT   address to listen on (default 127.0.0.1:7000); port 0 picks a free
                     port, shared by every core, and the banner names it
  --cores N          run on the first N CPUs this process may use (default: all of them)
  --backend B        I/O backend: auto (default), uring or epoll; the environment variable
                     COREIO_BACKEND does the same and, when both are given, must agree
  --spin-us N        an idle core polls for N microseconds before it blocks (default 0,
                     at most 10000): lower latency at light load, CPU burned while idle
  --accept-cores K   only the first K cores listen (default: all); the others serve only
                     connections handed to them by --balance
  --balance PERCENT  load-aware accepting: a core more than PERCENT above the average of
                     open connections hands new ones to the least loaded core (default off)
  -h, --help         print this help

Ctrl-C or SIGTERM stops the server; it prints the connections each core served and exits 0.
";

const DEFAULT_ADDR: &str = "127.0.0.1:7000";

/// Capacity of the one buffer each connection reuses for all its reads and writes.
const BUF_CAPACITY: usize = 16 * 1024;

struct Options {
    addr: SocketAddr,
    cores: Option<usize>,
    backend: Option<Backend>,
    spin: Duration,
    accept_cores: Option<usize>,
    balance: Option<LoadBalance>,
}

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
    let mut args = args;
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
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Some(Options {
        addr: resolve(&addr)?,
        cores,
        backend,
        spin,
        accept_cores,
        balance,
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

    // Port 0: reserve a free port for all cores. The reservation is bound with SO_REUSEPORT but
    // never listens, so it receives no connection; it is closed when the server stops.
    let (addr, _reservation) = if options.addr.port() == 0 {
        let (addr, socket) = process::reserve_port(options.addr)
            .map_err(|err| format!("cannot find a free port on {}: {err}", options.addr))?;
        (addr, Some(socket))
    } else {
        (options.addr, None)
    };

    let ids: Vec<usize> = rt.cores().iter().map(|core| core.0).collect();
    let accepting = options.accept_cores.unwrap_or(ids.len()).min(ids.len());
    let balance = options.balance;
    let ready = Arc::new(Ready {
        bound: AtomicUsize::new(0),
        cores: accepting,
        banner: format!(
            "coreio echo on {addr}, backend {}, cores {ids:?}{}{}",
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
    let listening: Vec<CoreId> = rt.cores()[..accepting].to_vec();

    let results = rt.run(|core: CoreId| {
        let stop = stop.clone();
        let ready = Arc::clone(&ready);
        let listen = listening.contains(&core).then_some(addr);
        async move { serve(listen, balance, stop, ready).await }
    });

    let mut failures = Vec::new();
    for (core, result) in rt.cores().iter().zip(results) {
        match result {
            Ok(Ok(served)) => println!(
                "{core}: {} connections served, {} bytes echoed",
                served.connections, served.bytes
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
    bytes: u64,
}

/// Counters of one core, shared by all the connections it serves (accepted or handed over).
#[derive(Default)]
struct Counters {
    connections: Cell<u64>,
    bytes: Cell<u64>,
}

thread_local! {
    static COUNTERS: Counters = Counters::default();
}

/// One core's root future: bind (when `listen` is given), accept in a task, return when `stop`
/// is set. A core that does not listen serves only connections handed to it.
async fn serve(
    listen: Option<SocketAddr>,
    balance: Option<LoadBalance>,
    stop: Event,
    ready: Arc<Ready>,
) -> Result<Served, String> {
    let failure = Rc::new(RefCell::new(None));
    let mut _accept = None;
    if let Some(addr) = listen {
        let listener = match TcpListener::bind(addr) {
            Ok(listener) => listener,
            Err(err) => {
                // Stop the other cores too: a server listening on some cores only is not wanted.
                stop.set();
                return Err(format!("cannot listen on {addr}: {err}"));
            }
        };
        ready.core_bound();
        _accept = Some(coreio::spawn(accept_loop(
            listener,
            balance,
            Rc::clone(&failure),
            stop.clone(),
        )));
    }
    stop.wait().await;
    // Returning cancels this core's remaining tasks: the accept loop and every connection.
    match failure.take() {
        Some(message) => Err(message),
        None => Ok(COUNTERS.with(|counters| Served {
            connections: counters.connections.get(),
            bytes: counters.bytes.get(),
        })),
    }
}

async fn accept_loop(
    listener: TcpListener,
    balance: Option<LoadBalance>,
    failure: Rc<RefCell<Option<String>>>,
    stop: Event,
) {
    // Each connection runs as its own task on the core that serves it: this one, or with
    // `balance`, a less loaded one. `serve` absorbs transient accept failures (aborted
    // connections, fd exhaustion); an error that reaches here is fatal for this listener, so
    // stop the whole server.
    if let Err(err) = listener.serve(balance, |stream, _peer| echo(stream)).await {
        *failure.borrow_mut() = Some(format!("accept failed: {err}"));
        stop.set();
    }
}

/// Echoes everything until the peer closes, reusing one buffer.
async fn echo(stream: TcpStream) {
    COUNTERS.with(|counters| counters.connections.set(counters.connections.get() + 1));
    // Without it a small echo waits for the peer's delayed ACK. A failure only costs latency.
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(BUF_CAPACITY);
    loop {
        // `read` fills the Vec from its start, up to its capacity, and sets its length to the
        // number of bytes read; `write_all` then sends exactly those bytes.
        let (res, b) = stream.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(n) => COUNTERS.with(|counters| counters.bytes.set(counters.bytes.get() + n as u64)),
        }
        let (res, b) = stream.write_all(buf).await;
        buf = b;
        if res.is_err() {
            return;
        }
    }
}
