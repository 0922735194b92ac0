//! The `dns` example against the real `dig` (Debian/Ubuntu package `bind9-dnsutils`), and a
//! flood of garbage datagrams. A missing `dig` fails the test with the command that installs
//! it; nothing is skipped.
//!
//! The server runs in this process: the example's modules are compiled into this test binary
//! with `#[path]`, and each test starts the per-core root future `server::serve` on a runtime
//! of up to two cores, on the backend the test asks for (`main.rs` adds only flags, signals
//! and the banner). Every wait has a generous limit that only a hang reaches.

#[macro_use]
mod util;

// Some of their items serve only the example's `main.rs`.
#[path = "../examples/dns/answer.rs"]
#[allow(dead_code)]
mod answer;
#[path = "../examples/support/ready.rs"]
mod ready;
#[path = "../examples/dns/server.rs"]
#[allow(dead_code)]
mod server;
#[path = "../examples/dns/zone.rs"]
#[allow(dead_code)]
mod zone;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coreio::sync::Event;
use coreio::{Backend, CoreError};

use server::Served;
use zone::{BUILT_IN_ZONE, Zone, Zones};

/// The most a child process or a wait may take; only a hang gets there.
const LIMIT: Duration = Duration::from_secs(60);

type CoreResults = Vec<Result<Result<Served, String>, CoreError>>;

/// A `dns` server running on its own runtime, stopped (and checked) by `stop`.
struct Server {
    addr: SocketAddr,
    stop: Event,
    thread: Option<JoinHandle<CoreResults>>,
}

impl Server {
    /// Starts the server on `ip` (a free port) with `zones`, waits until every core is bound.
    fn start(backend: Backend, ip: &str, zones: Zones) -> Server {
        let addr = free_udp_port(ip);
        let rt = coreio::Builder::new()
            .backend(backend)
            .cores(util::two_or_fewer_cores())
            .thread_name_prefix("dns-test")
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
        let zones = Arc::new(zones);
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let stop_on_exit = stop.clone();
                let results = rt.run(|_core| {
                    server::serve(addr, 2, zones.clone(), stop.clone(), ready.clone())
                });
                stop_on_exit.set();
                results
            })
        };
        let mut server = Server {
            addr,
            stop,
            thread: Some(thread),
        };
        if ready_rx.recv_timeout(LIMIT).is_err() {
            let results = server.finish();
            panic!("the server did not start: {results:?}");
        }
        server
    }

    fn finish(&mut self) -> CoreResults {
        self.stop.set();
        match self.thread.take() {
            Some(thread) => thread.join().expect("the server thread panicked"),
            None => Vec::new(),
        }
    }

    /// Stops the server, asserts every core ended cleanly, and sums what they served.
    fn stop(mut self) -> Served {
        let mut total = Served::default();
        for result in self.finish() {
            let served = match result {
                Ok(Ok(served)) => served,
                Ok(Err(message)) => panic!("a core failed: {message}"),
                Err(err) => panic!("a core failed: {err}"),
            };
            total.answered += served.answered;
            total.no_data += served.no_data;
            total.nx_domain += served.nx_domain;
            total.form_err += served.form_err;
            total.rejected += served.rejected;
            total.dropped += served.dropped;
            total.io_errors += served.io_errors;
        }
        total
    }

    /// `dig @server -p PORT` with `args`; returns stdout, asserting exit status 0.
    fn dig(&self, server_ip: &str, args: &[&str]) -> String {
        let mut cmd = dig();
        cmd.arg(format!("@{server_ip}"))
            .arg("-p")
            .arg(self.addr.port().to_string())
            // One try, a few seconds: a lost or misdirected reply fails the test, not hangs it.
            .args(["+tries=1", "+time=5"])
            .args(args);
        let what = format!("{cmd:?}");
        let output = cmd.output().unwrap_or_else(|err| panic!("{what}: {err}"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{what} failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
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

/// A `dig` command; panics with how to install it if it is not there.
fn dig() -> Command {
    match Command::new("dig").arg("-v").output() {
        Ok(output) if output.status.success() => Command::new("dig"),
        Ok(output) => panic!("`dig -v` failed: {output:?}"),
        Err(err) => panic!(
            "dig is needed by this test and could not be run ({err}); install it with \
             `apt-get install bind9-dnsutils` (Debian/Ubuntu)"
        ),
    }
}

/// An address on `ip` with a UDP port that is free now.
fn free_udp_port(ip: &str) -> SocketAddr {
    let probe = UdpSocket::bind((ip, 0)).expect("binding a probe socket");
    probe.local_addr().unwrap()
}

fn built_in() -> Zones {
    Zones::new(vec![Zone::parse(BUILT_IN_ZONE, None).unwrap()])
}

/// The `status:` of a full dig answer.
fn status(output: &str) -> &str {
    output
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig's output: {output}"))
}

both_backends! {
    fn dig_gets_the_built_in_records(backend: Backend) {
        let server = Server::start(backend, "127.0.0.1", built_in());
        assert_eq!(server.dig("127.0.0.1", &["+short", "www.example.com", "A"]).trim(), "192.0.2.80");
        assert_eq!(
            server.dig("127.0.0.1", &["+short", "www.example.com", "AAAA"]).trim(),
            "2001:db8::80"
        );
        assert_eq!(
            server.dig("127.0.0.1", &["+short", "www.example.com", "TXT"]).trim(),
            "\"served by coreio\""
        );
        // Names are case-insensitive; the full answer is authoritative.
        let full = server.dig("127.0.0.1", &["WWW.EXAMPLE.COM", "A"]);
        assert_eq!(status(&full), "NOERROR");
        assert!(full.contains(" aa"), "no AA flag: {full}");
        let served = server.stop();
        assert_eq!(served.answered, 4, "{served:?}");
    }

    fn missing_names_are_nxdomain_and_missing_types_no_data(backend: Backend) {
        let server = Server::start(backend, "127.0.0.1", built_in());
        let missing = server.dig("127.0.0.1", &["missing.example.com", "A"]);
        assert_eq!(status(&missing), "NXDOMAIN");
        assert!(missing.contains("SOA"), "no SOA in the authority section: {missing}");
        assert_eq!(status(&server.dig("127.0.0.1", &["www.example.org", "A"])), "NXDOMAIN");
        let no_data = server.dig("127.0.0.1", &["www.example.com", "MX"]);
        assert_eq!(status(&no_data), "NOERROR");
        assert!(no_data.contains("ANSWER: 0"), "{no_data}");
        let served = server.stop();
        assert_eq!((served.nx_domain, served.no_data), (2, 1), "{served:?}");
    }

    fn a_zone_file_is_served(backend: Backend) {
        let dir = std::env::temp_dir().join(format!("coreio-dns-{}-{backend}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("test.zone");
        std::fs::write(
            &path,
            "$ORIGIN coreio.test.\n$TTL 60\n@ IN SOA ns.coreio.test. admin.coreio.test. 1 60 60 60 60\n\
             api IN A 198.51.100.7\napi IN TXT \"from a file\"\n",
        )
        .unwrap();
        let zones = Zones::new(vec![Zone::load(&path).unwrap()]);
        let server = Server::start(backend, "127.0.0.1", zones);
        assert_eq!(server.dig("127.0.0.1", &["+short", "api.coreio.test", "A"]).trim(), "198.51.100.7");
        assert_eq!(status(&server.dig("127.0.0.1", &["www.example.com", "A"])), "NXDOMAIN");
        server.stop();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn a_wildcard_server_answers_from_the_address_it_was_asked_on(backend: Backend) {
        // Bound to 0.0.0.0, asked on 127.0.0.2: the reply must come from 127.0.0.2, or dig
        // rejects it ("reply from unexpected source") and times out.
        let server = Server::start(backend, "0.0.0.0", built_in());
        for ip in ["127.0.0.1", "127.0.0.2"] {
            assert_eq!(server.dig(ip, &["+short", "www.example.com", "A"]).trim(), "192.0.2.80");
        }
        server.stop();
    }

    fn a_garbage_flood_gets_formerr_or_nothing_and_the_server_keeps_answering(backend: Backend) {
        let server = Server::start(backend, "127.0.0.1", built_in());
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut rng = util::XorShift::new(0xd15ea5e);
        let deadline = Instant::now() + LIMIT;
        let mut formerr_seen = 0;
        for i in 0..3000u32 {
            assert!(Instant::now() < deadline, "the flood ran past {LIMIT:?}");
            let len = rng.below(600) as usize;
            let mut datagram: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if i % 3 == 0 && datagram.len() >= 12 {
                // A query header (QR clear, one question) before garbage: FORMERR territory.
                datagram[2] &= 0x7f;
                datagram[4..6].copy_from_slice(&[0, 1]);
            }
            client.send_to(&datagram, server.addr).unwrap();
            if i % 100 == 0 {
                // Now and then, read what came back: only FORMERR-shaped headers.
                let mut buf = [0u8; 2048];
                while let Ok((n, _)) = client.recv_from(&mut buf) {
                    assert!(n >= 12 && buf[2] & 0x80 != 0, "a reply that is not a response");
                    formerr_seen += usize::from(buf[3] & 0x0f == 1);
                    client.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
                }
            }
        }
        // Still serving.
        assert_eq!(server.dig("127.0.0.1", &["+short", "www.example.com", "A"]).trim(), "192.0.2.80");
        let served = server.stop();
        assert!(served.form_err > 0 && served.dropped > 0, "{served:?}");
        assert!(formerr_seen > 0, "no FORMERR reply was read back");
        assert!(served.answered >= 1, "{served:?}");
    }
}
