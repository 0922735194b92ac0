//! One core's share of `http`: its listener, its connections (hyper over coreio, TLS first
//! with `--tls`), the drain when the server stops, and the counts it reports.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coreio::hyper::{CoreExecutor, CoreTimer};
use coreio::net::{TcpListener, TcpStream};
use coreio::sync::Event;
use hyper::rt::{Read, Write};
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;

use crate::options::Options;
use crate::ready::Ready;
use crate::service::{self, Counts};

/// Requests the service is answering now, on every core (tests/http_hyper.rs waits on it to
/// stop the server with requests in flight).
pub static REQUESTS_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// What one core did, printed when the server stops.
#[derive(Debug, Default)]
struct Served {
    connections: Cell<u64>,
    /// Requests answered, by outcome.
    requests: RefCell<Counts>,
    /// Connections hyper closed on a malformed request (after answering 400 on HTTP/1).
    malformed: Cell<u64>,
    /// Connections closed because a request head did not arrive in time (or an HTTP/2 ping).
    timed_out: Cell<u64>,
    /// TLS handshakes that failed or timed out.
    handshakes_failed: Cell<u64>,
    /// Connections the peer reset or closed in the middle of an exchange.
    peer_gone: Cell<u64>,
    /// Connections that ended on another error (a protocol error, a failed write).
    errors: Cell<u64>,
    /// Connections still open when the drain deadline passed, and dropped.
    cut: Cell<u64>,
}

/// One core's share of the server: its listener, its connections, its count.
struct Core {
    builder: auto::Builder<CoreExecutor>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    handshake_timeout: Duration,
    served: Served,
    /// Connections open now.
    open: Cell<usize>,
    /// Set when the server stops: open connections finish gracefully.
    stop: Event,
    /// Set once stopping and the last connection has ended.
    drained: Event,
}

/// Serves `addr` on this core until `stop` is set, then drains.
pub async fn serve_core(
    addr: SocketAddr,
    options: Arc<Options>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    stop: Event,
    ready: Arc<Ready>,
) -> Result<Report, String> {
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(err) => {
            // A server listening on some cores only is not wanted: stop the others too.
            stop.set();
            return Err(format!("cannot listen on {addr}: {err}"));
        }
    };
    ready.core_bound();
    let core = Rc::new(Core {
        builder: connection_builder(&options),
        acceptor,
        handshake_timeout: options.header_timeout,
        served: Served::default(),
        open: Cell::new(0),
        stop: stop.clone(),
        drained: Event::new(),
    });
    let accepting = coreio::spawn(accept_loop(listener, Rc::clone(&core)));
    stop.wait().await;
    // Stop accepting (the listener closes with the task), then give open connections the
    // drain time to finish what they are doing.
    accepting.abort();
    if core.open.get() > 0
        && coreio::time::timeout(options.drain_timeout, core.drained.wait())
            .await
            .is_err()
    {
        core.served.cut.set(core.open.get() as u64);
    }
    // The connections left are cancelled with the core once this returns.
    Ok(core.served.report())
}

impl Served {
    /// The counts as they stand.
    fn report(&self) -> Report {
        Report {
            connections: self.connections.get(),
            requests: *self.requests.borrow(),
            malformed: self.malformed.get(),
            timed_out: self.timed_out.get(),
            handshakes_failed: self.handshakes_failed.get(),
            peer_gone: self.peer_gone.get(),
            errors: self.errors.get(),
            cut: self.cut.get(),
        }
    }
}

/// Accepts until aborted; each connection becomes a task of this core.
async fn accept_loop(listener: TcpListener, core: Rc<Core>) {
    loop {
        // `accept` backs off by itself when descriptors run out; what it returns is fatal.
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                eprintln!("http: accept failed, this core stops accepting: {err}");
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        core.served
            .connections
            .set(core.served.connections.get() + 1);
        core.open.set(core.open.get() + 1);
        drop(coreio::spawn(connection(stream, Rc::clone(&core))));
    }
}

/// Serves one connection to its end (TLS first with `--tls`), then counts how it ended.
async fn connection(stream: TcpStream, core: Rc<Core>) {
    let ended = match &core.acceptor {
        None => Some(serve_http(stream, &core).await),
        Some(acceptor) => {
            match coreio::time::timeout(core.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some(serve_http(TokioIo::new(tls), &core).await),
                // Counted, not logged: a port scanner or a client that distrusts the
                // certificate is not worth a line per connection.
                Ok(Err(_)) | Err(_) => {
                    core.served
                        .handshakes_failed
                        .set(core.served.handshakes_failed.get() + 1);
                    None
                }
            }
        }
    };
    if let Some(Err(err)) = ended {
        let counter = match err.downcast_ref::<hyper::Error>() {
            Some(err) if err.is_parse() || err.is_parse_too_large() => &core.served.malformed,
            Some(err) if err.is_timeout() => &core.served.timed_out,
            _ if is_timeout(&*err) => &core.served.timed_out,
            _ if is_peer_gone(&*err) => &core.served.peer_gone,
            _ => &core.served.errors,
        };
        counter.set(counter.get() + 1);
    }
    core.open.set(core.open.get() - 1);
    if core.open.get() == 0 && core.stop.is_set() {
        core.drained.set();
    }
}

type ConnectionError = Box<dyn std::error::Error + Send + Sync>;

/// Whether `err` or one of its sources is a hyper timeout.
fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = err.source();
    while let Some(err) = source {
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Whether `err` says the peer went away mid-exchange: it reset the connection, or closed it
/// while a message was still being read or written (hyper's "incomplete message").
fn is_peer_gone(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(err) = err.downcast_ref::<hyper::Error>()
            && (err.is_incomplete_message() || err.is_closed())
        {
            return true;
        }
        if let Some(err) = err.downcast_ref::<std::io::Error>()
            && matches!(
                err.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionAborted
                    // The final shutdown of a connection the peer had reset already.
                    | std::io::ErrorKind::NotConnected
            )
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// Runs hyper on `io` until the connection ends; when the server stops meanwhile, asks it to
/// finish gracefully and waits for that.
async fn serve_http<I>(io: I, core: &Rc<Core>) -> Result<(), ConnectionError>
where
    I: Read + Write + Unpin + 'static,
{
    let counting = Rc::clone(core);
    let service = hyper::service::service_fn(move |request| {
        let core = Rc::clone(&counting);
        async move {
            REQUESTS_IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
            let (response, route) = service::respond(request, coreio::time::sleep).await;
            REQUESTS_IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
            route.count(&mut core.served.requests.borrow_mut());
            Ok::<_, Infallible>(response)
        }
    });
    let mut connection = pin!(core.builder.serve_connection(io, service));
    let finished = coreio::future::or(async { Some(connection.as_mut().await) }, async {
        core.stop.wait().await;
        None
    })
    .await;
    match finished {
        Some(result) => result,
        None => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// hyper's settings, shared by every connection of a core.
fn connection_builder(options: &Options) -> auto::Builder<CoreExecutor> {
    let mut builder = auto::Builder::new(CoreExecutor);
    builder
        .http1()
        .timer(CoreTimer)
        .header_read_timeout(options.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(CoreTimer)
        .max_concurrent_streams(options.max_streams)
        // A peer that stops answering pings is dropped: HTTP/2's idle shedding.
        .keep_alive_interval(options.header_timeout)
        .keep_alive_timeout(options.header_timeout);
    builder
}

/// What one core served, as `main` prints it.
#[derive(Debug, Default)]
pub struct Report {
    pub connections: u64,
    pub requests: Counts,
    pub malformed: u64,
    pub timed_out: u64,
    pub handshakes_failed: u64,
    pub peer_gone: u64,
    pub errors: u64,
    pub cut: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let requests = &self.requests;
        write!(
            f,
            "{} connections, {} requests ({} ok, {} not found, {} bad), {} malformed, {} timed \
             out, {} failed handshakes, {} closed by the peer mid-exchange, {} errors, {} cut at \
             the drain deadline",
            self.connections,
            requests.ok + requests.not_found + requests.bad,
            requests.ok,
            requests.not_found,
            requests.bad,
            self.malformed,
            self.timed_out,
            self.handshakes_failed,
            self.peer_gone,
            self.errors,
            self.cut
        )
    }
}
