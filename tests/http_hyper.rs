//! The `http` example (hyper 1.x on coreio) against the real `curl` and `openssl s_client`, raw
//! sockets that misbehave, and hyper's own client running on coreio. A missing `curl` or
//! `openssl` fails the test with the command that installs it; nothing is skipped.
//!
//! The server runs in this process, as in tests/dns_dig.rs: the example's modules are compiled
//! in with `#[path]`, and each test runs `server::serve_core` on a runtime of up to two cores,
//! on the backend the test asks for. Setting the stop event is what the example's SIGINT and
//! SIGTERM handler does. Every wait has a generous limit that only a hang reaches.

#[macro_use]
mod util;

#[path = "../examples/support/args.rs"]
mod args;
// `USAGE` and the flags `main.rs` reads serve only the example's `main.rs`.
#[path = "../examples/http/options.rs"]
#[allow(dead_code)]
mod options;
#[path = "../examples/support/ready.rs"]
mod ready;
#[path = "../examples/http/server.rs"]
mod server;
#[path = "../examples/http/service.rs"]
mod service;
#[path = "../examples/http/tls.rs"]
mod tls;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coreio::hyper::{CoreExecutor, CoreTimer};
use coreio::net::TcpStream;
use coreio::sync::Event;
use coreio::{Backend, CoreError};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;

use server::Report;

/// The most a child process or a wait may take; only a hang gets there.
const LIMIT: Duration = Duration::from_secs(60);

type CoreResults = Vec<Result<Result<Report, String>, CoreError>>;

/// An `http` server on its own runtime, stopped (and checked) by `stop`.
struct Server {
    addr: SocketAddr,
    stop: Event,
    thread: Option<JoinHandle<CoreResults>>,
    _reservation: socket2::Socket,
}

impl Server {
    /// Starts the server with the example's `flags` on a reserved port, and waits until every
    /// core listens.
    fn start(backend: Backend, flags: &[&str]) -> Server {
        let (reservation, addr) = util::reserve_port();
        let mut args = vec!["--addr".to_string(), addr.to_string()];
        args.extend(flags.iter().map(|flag| flag.to_string()));
        let options = options::parse_args(args.into_iter())
            .expect("valid flags")
            .expect("not --help");
        let acceptor = options
            .tls
            .as_ref()
            .map(|certificate| tls::acceptor(certificate).expect("a TLS acceptor"));
        let rt = coreio::Builder::new()
            .backend(backend)
            .cores(util::two_or_fewer_cores())
            .thread_name_prefix("http-test")
            .build()
            .expect("the runtime starts");
        if !util::backend_overridden() {
            assert_eq!(rt.backend(), backend);
        }
        let stop = Event::new();
        let (ready_tx, ready_rx) = mpsc::channel();
        let ready = ready::Ready::new(rt.cores().len(), move || {
            let _ = ready_tx.send(());
        });
        let options = Arc::new(options);
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let stop_on_exit = stop.clone();
                let results = rt.run(|_core| {
                    server::serve_core(
                        addr,
                        options.clone(),
                        acceptor.clone(),
                        stop.clone(),
                        ready.clone(),
                    )
                });
                stop_on_exit.set();
                results
            })
        };
        let mut server = Server {
            addr,
            stop,
            thread: Some(thread),
            _reservation: reservation,
        };
        if ready_rx.recv_timeout(LIMIT).is_err() {
            let results = server.finish();
            panic!("the server did not start: {results:?}");
        }
        server
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }

    fn finish(&mut self) -> CoreResults {
        self.stop.set();
        match self.thread.take() {
            Some(thread) => thread.join().expect("the server thread panicked"),
            None => Vec::new(),
        }
    }

    /// Stops the server (as SIGTERM does), asserts every core ended cleanly, and sums what
    /// they served.
    fn stop(mut self) -> Report {
        let mut total = Report::default();
        for result in self.finish() {
            let report = match result {
                Ok(Ok(report)) => report,
                Ok(Err(message)) => panic!("a core failed: {message}"),
                Err(err) => panic!("a core failed: {err}"),
            };
            total.connections += report.connections;
            total.requests.ok += report.requests.ok;
            total.requests.not_found += report.requests.not_found;
            total.requests.bad += report.requests.bad;
            total.malformed += report.malformed;
            total.timed_out += report.timed_out;
            total.handshakes_failed += report.handshakes_failed;
            total.peer_gone += report.peer_gone;
            total.errors += report.errors;
            total.cut += report.cut;
        }
        total
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let results = self.finish();
            if !std::thread::panicking() {
                panic!("Server dropped without stop(): {results:?}");
            }
        }
    }
}

/// `program` if it runs, else a panic that says how to install it.
fn tool(program: &str, version_arg: &str, package: &str) -> Command {
    match Command::new(program).arg(version_arg).output() {
        Ok(_) => Command::new(program),
        Err(err) => panic!(
            "{program} is needed by this test and could not be run ({err}); install it with \
             `apt-get install {package}` (Debian/Ubuntu)"
        ),
    }
}

/// What curl printed for one request: the status, the HTTP version and the body.
struct Fetched {
    status: u16,
    version: String,
    body: Vec<u8>,
}

/// Runs `curl` with `args` and `url`; the body goes to stdout, then a last line
/// `STATUS VERSION` from `--write-out`.
fn curl(args: &[&str], url: &str) -> Result<Fetched, Output> {
    let output = tool("curl", "--version", "curl")
        .args(["--silent", "--show-error", "--max-time", "30"])
        .args(["--write-out", "\n%{http_code} %{http_version}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs");
    if !output.status.success() {
        return Err(output);
    }
    let stdout = output.stdout;
    let split = stdout
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("curl's last line");
    let last = String::from_utf8_lossy(&stdout[split + 1..]).into_owned();
    let (status, version) = last.split_once(' ').expect("STATUS VERSION");
    Ok(Fetched {
        status: status.parse().expect("a status code"),
        version: version.to_string(),
        body: stdout[..split].to_vec(),
    })
}

fn fetch(args: &[&str], url: &str) -> Fetched {
    curl(args, url).unwrap_or_else(|output| {
        panic!(
            "curl {args:?} {url} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Waits until the service is answering at least `n` requests (nextest runs each test in its
/// own process, so the count is this test's).
fn wait_for_requests_in_flight(n: usize) {
    let deadline = Instant::now() + LIMIT;
    while server::REQUESTS_IN_FLIGHT.load(std::sync::atomic::Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "the requests never reached the server"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes `request` on a plain socket and reads until the server closes it; returns what came
/// back and how long the server took to close.
fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (String, Duration) {
    let mut socket = std::net::TcpStream::connect(addr).expect("connect");
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    let started = Instant::now();
    socket.write_all(request).expect("write");
    let mut answer = Vec::new();
    match socket.read_to_end(&mut answer) {
        Ok(_) => {}
        // A close with unread data resets the connection: what was read before stands.
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(err) => panic!("reading the answer: {err}"),
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

both_backends! {
    fn curl_gets_every_route_over_http1_and_h2c(backend: Backend) {
        let server = Server::start(backend, &[]);
        let hello = fetch(&[], &server.url("http", "/"));
        assert_eq!((hello.status, hello.version.as_str()), (200, "1.1"));
        assert_eq!(hello.body, b"Hello from coreio\n");

        let h2 = fetch(&["--http2-prior-knowledge"], &server.url("http", "/bytes/100000"));
        assert_eq!((h2.status, h2.version.as_str()), (200, "2"));
        assert_eq!(h2.body.len(), 100_000);
        assert!(h2.body.iter().all(|&b| b == b'x'));

        let empty = fetch(&[], &server.url("http", "/bytes/0"));
        assert_eq!((empty.status, empty.body.len()), (200, 0));
        let missing = fetch(&["--http2-prior-knowledge"], &server.url("http", "/nope"));
        assert_eq!(missing.status, 404);
        let too_many = fetch(&[], &server.url("http", "/bytes/99999999999"));
        assert_eq!(too_many.status, 400);
        let posted = fetch(&["-X", "POST", "--data", "x"], &server.url("http", "/"));
        assert_eq!(posted.status, 405);

        let report = server.stop();
        assert_eq!(report.requests.ok, 3, "{report:?}");
        assert_eq!(report.requests.not_found, 1, "{report:?}");
        assert_eq!(report.requests.bad, 2, "{report:?}");
        assert_eq!((report.malformed, report.errors, report.cut), (0, 0, 0), "{report:?}");
    }

    fn a_malformed_request_gets_400_and_the_server_goes_on(backend: Backend) {
        let server = Server::start(backend, &[]);
        for garbage in [&b"GARBAGE\r\n\r\n"[..], b"GET / HTTP/1.1\r\nHost x\r\n\r\n", b"\x00\xff\r\n\r\n"] {
            let (answer, _) = raw_exchange(server.addr, garbage);
            assert!(answer.starts_with("HTTP/1.1 400"), "{garbage:?} got {answer:?}");
        }
        assert_eq!(fetch(&[], &server.url("http", "/")).status, 200);
        let report = server.stop();
        assert_eq!(report.malformed, 3, "{report:?}");
    }

    fn slowloris_and_idle_keep_alive_connections_are_shed(backend: Backend) {
        let server = Server::start(backend, &["--header-timeout-ms", "300"]);
        // Half a request head, never finished.
        let (answer, took) = raw_exchange(server.addr, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        assert!(!answer.contains("200 OK"), "{answer:?}");
        assert!(took < LIMIT / 2, "the slow client was kept {took:?}");
        // A whole request, then silence on the kept-alive connection.
        let (answer, took) = raw_exchange(server.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:?}");
        assert!(took < LIMIT / 2, "the idle client was kept {took:?}");
        let report = server.stop();
        assert_eq!(report.timed_out, 2, "{report:?}");
        assert_eq!(report.requests.ok, 1, "{report:?}");
    }

    fn a_stop_lets_requests_in_flight_finish_over_http1_and_http2(backend: Backend) {
        let server = Server::start(backend, &[]);
        let slow = |args: &'static [&'static str]| {
            let url = server.url("http", "/delay/700");
            std::thread::spawn(move || curl(args, &url))
        };
        let h1 = slow(&[]);
        let h2 = slow(&["--http2-prior-knowledge"]);
        // Both requests are in the server before it is told to stop.
        wait_for_requests_in_flight(2);
        let report = server.stop();
        for (name, request) in [("HTTP/1.1", h1), ("HTTP/2", h2)] {
            let fetched = request.join().unwrap().unwrap_or_else(|output| {
                panic!("{name}: {}", String::from_utf8_lossy(&output.stderr))
            });
            assert_eq!(fetched.status, 200, "{name}");
            assert_eq!(fetched.body, b"waited 700 ms\n", "{name}");
        }
        assert_eq!(report.requests.ok, 2, "{report:?}");
        assert_eq!(report.cut, 0, "{report:?}");
    }

    fn a_request_longer_than_the_drain_deadline_is_cut(backend: Backend) {
        let server = Server::start(backend, &["--drain-timeout-ms", "200"]);
        let url = server.url("http", "/delay/20000");
        let request = std::thread::spawn(move || curl(&[], &url));
        wait_for_requests_in_flight(1);
        let started = Instant::now();
        let report = server.stop();
        assert!(started.elapsed() < Duration::from_secs(10), "the drain waited {:?}", started.elapsed());
        assert!(request.join().unwrap().is_err(), "the cut request got an answer");
        assert_eq!(report.cut, 1, "{report:?}");
        assert_eq!(report.requests.ok, 0, "{report:?}");
    }

    fn tls_with_alpn_serves_h2_and_http1_and_counts_failed_handshakes(backend: Backend) {
        let server = Server::start(backend, &["--tls"]);
        let h2 = fetch(&["--insecure"], &server.url("https", "/"));
        assert_eq!((h2.status, h2.version.as_str()), (200, "2"));
        assert_eq!(h2.body, b"Hello from coreio\n");
        let h1 = fetch(&["--insecure", "--http1.1"], &server.url("https", "/bytes/70000"));
        assert_eq!((h1.status, h1.version.as_str(), h1.body.len()), (200, "1.1", 70_000));
        // A client that verifies the self-signed certificate refuses it.
        assert!(curl(&[], &server.url("https", "/")).is_err());
        // openssl s_client negotiates h2 by ALPN.
        let output = tool("openssl", "version", "openssl")
            .args(["s_client", "-connect", &server.addr.to_string(), "-alpn", "h2"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("ALPN protocol: h2"), "{stdout}");
        // Plain HTTP on the TLS port is a failed handshake, nothing more.
        let (answer, _) = raw_exchange(server.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(!answer.contains("200 OK"), "{answer:?}");
        assert_eq!(fetch(&["--insecure"], &server.url("https", "/")).status, 200);
        let report = server.stop();
        assert_eq!(report.requests.ok, 3, "{report:?}");
        assert!(report.handshakes_failed >= 2, "{report:?}");
    }

    fn hyper_clients_on_coreio_talk_to_the_server(backend: Backend) {
        let server = Server::start(backend, &[]);
        let addr = server.addr;
        let bodies = util::block_on(backend, async move {
            // HTTP/1.1: the connection's driver is a task of this core.
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut sender, connection) = hyper::client::conn::http1::handshake(stream)
                .await
                .expect("an HTTP/1 handshake");
            let driver = coreio::spawn(connection);
            let mut bodies = Vec::new();
            for path in ["/", "/bytes/3000"] {
                let request = hyper::Request::get(path)
                    .header("host", "localhost")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let response = sender.send_request(request).await.expect("a response");
                assert_eq!(response.status(), 200);
                bodies.push(response.into_body().collect().await.unwrap().to_bytes());
            }
            drop(sender);
            driver.await.unwrap().expect("the connection ends cleanly");

            // HTTP/2 with prior knowledge, streams spawned through CoreExecutor.
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut sender, connection) = hyper::client::conn::http2::Builder::new(CoreExecutor)
                .timer(CoreTimer)
                .handshake(stream)
                .await
                .expect("an HTTP/2 handshake");
            let driver = coreio::spawn(connection);
            let mut streams = Vec::new();
            for _ in 0..8 {
                let request = hyper::Request::get("http://localhost/delay/50")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                streams.push(sender.send_request(request));
            }
            for stream in streams {
                let response = stream.await.expect("a response");
                assert_eq!(response.version(), hyper::Version::HTTP_2);
                bodies.push(response.into_body().collect().await.unwrap().to_bytes());
            }
            drop(sender);
            driver.await.unwrap().expect("the connection ends cleanly");
            bodies
        });
        assert_eq!(&bodies[0][..], b"Hello from coreio\n");
        assert_eq!(bodies[1].len(), 3000);
        assert!(bodies[2..].iter().all(|body| &body[..] == b"waited 50 ms\n"));
        let report = server.stop();
        assert_eq!(report.requests.ok, 10, "{report:?}");
        assert_eq!(report.errors, 0, "{report:?}");
    }
}
