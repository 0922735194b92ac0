//! The `echo` example and its load generator `echo_bench` on all three transports: TCP, a Unix
//! stream socket (`--unix PATH`) and UDP (`--udp`), on both backends.
//!
//! These tests run the two example binaries as a user would, because what they check is the
//! command line itself: the banner and `--json` line that the benchmark scripts parse, the exit
//! status of bad flag combinations, the refusal of an existing `--unix` path and the removal of
//! the server's own socket file when it stops. The binaries are built (or found up to date)
//! once per test process by `cargo build --example echo --example echo_bench` with the profile
//! this test was built with, so a test never runs a stale example.
//!
//! The backend reaches both children through `COREIO_BACKEND` (the parent's own override when
//! it has one). Every wait has a generous limit that only a hang reaches; no assertion depends
//! on how fast anything ran. Each test works in its own temporary directory, removed at the
//! end, and stops its server with SIGTERM, as Ctrl-C would.

#[macro_use]
mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coreio::Backend;

/// The most any child process, banner or socket read may take; only a hang gets there.
const LIMIT: Duration = Duration::from_secs(60);

/// The JSON keys of `echo_bench --json`, in order: the scripts in benches/ rely on the first
/// ones; `transport` and `lost` were appended for the Unix and UDP transports.
const JSON_KEYS: &[&str] = &[
    "label",
    "addr",
    "mode",
    "backend",
    "conns",
    "size",
    "rate",
    "duration_s",
    "warmup_s",
    "client_cores",
    "client_spin_us",
    "messages",
    "msgs_per_s",
    "mib_per_s",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "mean_us",
    "errors",
    "mismatches",
    "server_cpu_ns_per_msg",
    "server_cpu_util",
    "client_cpu_ns_per_msg",
    "transport",
    "lost",
];

/// Paths of the two example binaries.
struct Examples {
    echo: PathBuf,
    bench: PathBuf,
}

/// Builds the examples once per process, with this test's cargo and profile.
fn examples() -> &'static Examples {
    static EXAMPLES: OnceLock<Examples> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        let [echo, bench] = util::build_examples(["echo", "echo_bench"]);
        Examples { echo, bench }
    })
}

/// An `echo` server child, killed on drop if the test did not stop it.
struct Server {
    child: Option<Child>,
    banner: String,
    /// Collects the rest of stdout (the per-core summary) until the server exits.
    stdout: Option<JoinHandle<Vec<String>>>,
}

impl Server {
    /// Starts `echo ARGS` on up to two cores with `backend` and waits for its banner.
    fn start(backend: Backend, args: &[&str]) -> Server {
        let cores = util::two_or_fewer_cores().to_string();
        let mut child = Command::new(&examples().echo)
            .args(args)
            .args(["--cores", &cores])
            .env("COREIO_BACKEND", util::child_backend_env(backend))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the echo example starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (line_tx, line_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            if let Some(first) = lines.next() {
                let _ = line_tx.send(first);
            }
            lines.collect()
        });
        let mut server = Server {
            child: Some(child),
            banner: String::new(),
            stdout: Some(reader),
        };
        match line_rx.recv_timeout(LIMIT) {
            Ok(banner) => server.banner = banner,
            Err(_) => {
                let output = server.kill();
                panic!("echo {args:?} printed no banner:\n{}", stderr_of(&output));
            }
        }
        if !util::backend_overridden() {
            let name = match backend {
                Backend::Epoll => "epoll",
                _ => "io_uring",
            };
            assert!(
                server.banner.contains(&format!(", backend {name}, ")),
                "the banner names another backend than {name}: {}",
                server.banner
            );
        }
        server
    }

    /// The `HOST:PORT` the banner names after `prefix` (`""` for TCP, `"udp:"` for UDP).
    fn addr(&self, prefix: &str) -> SocketAddr {
        let rest = self
            .banner
            .strip_prefix(&format!("coreio echo on {prefix}"))
            .unwrap_or_else(|| panic!("unexpected banner: {}", self.banner));
        let addr = rest.split(',').next().unwrap_or_default();
        addr.parse()
            .unwrap_or_else(|_| panic!("the banner names no address: {}", self.banner))
    }

    /// Stops the server with SIGTERM, as Ctrl-C would, and returns its exit status and the
    /// rest of its stdout.
    fn stop(mut self) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("the server runs");
        let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
        // SAFETY: `pid` is our own child, not yet waited for, so it names no other process.
        let res = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(
            res,
            0,
            "SIGTERM to the server: {}",
            std::io::Error::last_os_error()
        );
        let status = wait_with_limit(&mut child, "the server after SIGTERM");
        let rest = self
            .stdout
            .take()
            .expect("the stdout reader")
            .join()
            .expect("the stdout reader does not panic");
        (status, rest)
    }

    fn kill(&mut self) -> Output {
        let mut child = self.child.take().expect("the server runs");
        let _ = child.kill();
        child
            .wait_with_output()
            .expect("wait for the killed server")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `child` for at most [`LIMIT`]; kills it and fails the test after that.
fn wait_with_limit(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `program ARGS` to completion (bounded by [`LIMIT`]) with `backend`.
fn run(program: &Path, backend: Backend, args: &[&str]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env("COREIO_BACKEND", util::child_backend_env(backend))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");
    // The outputs are small; read them on threads so a full pipe cannot block the child.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let status = wait_with_limit(&mut child, &format!("{} {args:?}", program.display()));
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `echo_bench ARGS --json` for a short window and returns its one JSON line, failing the
/// test unless the run was clean (exit 0: no error, no wrong byte, something echoed).
fn bench_json(backend: Backend, args: &[&str]) -> String {
    let mut all = vec![
        "--conns",
        "4",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--json",
    ];
    all.extend_from_slice(args);
    let output = run(&examples().bench, backend, &all);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "echo_bench {all:?} failed ({}):\n{}",
        output.status,
        stderr_of(&output)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "--json prints exactly one line: {stdout}");
    let line = lines[0].to_string();
    assert_eq!(
        json_keys(&line),
        JSON_KEYS,
        "the JSON keys, in order: {line}"
    );
    assert_eq!(field(&line, "errors"), "0", "{line}");
    assert_eq!(field(&line, "mismatches"), "0", "{line}");
    let messages: u64 = field(&line, "messages")
        .parse()
        .expect("messages is a number");
    assert!(messages > 0, "nothing was echoed: {line}");
    line
}

/// The keys of a flat JSON object as `echo_bench` writes it (no nested objects, and no comma
/// inside its string values in these tests).
fn json_keys(line: &str) -> Vec<String> {
    let inner = line
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or_else(|| panic!("not a JSON object: {line}"));
    inner
        .split(',')
        .map(|pair| {
            let (key, _value) = pair
                .split_once("\":")
                .unwrap_or_else(|| panic!("not a key and value: {pair}"));
            key.trim_start_matches('"').to_string()
        })
        .collect()
}

/// The raw value of `key` in a flat JSON line (a string keeps its quotes).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no key {key} in {line}"))
        + key.len()
        + 3;
    let rest = &line[start..];
    let end = match rest.strip_prefix('"') {
        Some(string) => 1 + string.find('"').expect("a closed string") + 1,
        None => rest.find([',', '}']).expect("a value ends"),
    };
    &rest[..end]
}

/// A message whose every byte depends on its position, so a shifted or mixed echo shows.
fn message(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

both_backends! {
    /// TCP keeps its banner and its JSON line exactly (the keys the scripts read come first),
    /// with `transport` and `lost` appended.
    fn tcp_banner_and_json_unchanged(backend: Backend) {
        let server = Server::start(backend, &["--addr", "127.0.0.1:0"]);
        assert!(
            server.banner.starts_with("coreio echo on 127.0.0.1:"),
            "the TCP banner is unchanged: {}",
            server.banner
        );
        let addr = server.addr("").to_string();
        let line = bench_json(backend, &["--addr", &addr]);
        assert_eq!(field(&line, "addr"), format!("\"{addr}\""));
        assert_eq!(field(&line, "label"), format!("\"{addr}\""));
        assert_eq!(field(&line, "transport"), "\"tcp\"");
        assert_eq!(field(&line, "lost"), "0");
        let (status, rest) = server.stop();
        assert!(status.success(), "the server exits 0 on SIGTERM: {status}");
        assert!(
            rest.iter().any(|line| line.contains("connections served")),
            "the per-core summary: {rest:?}"
        );
    }

    /// `--unix PATH`: the load generator's closed and open loops and a small client get every
    /// byte back; a second server on the same path is refused while the first serves on; the
    /// server removes its socket file when it stops.
    fn unix_transport_echoes(backend: Backend) {
        let dir = util::TempDir::new("unix");
        let path = dir.join("echo.sock");
        let path_text = path.to_str().expect("a UTF-8 temporary path");
        let server = Server::start(backend, &["--unix", path_text]);
        assert!(
            server.banner.starts_with(&format!("coreio echo on unix:{path_text}, backend ")),
            "the banner names the socket: {}",
            server.banner
        );

        let line = bench_json(backend, &["--unix", path_text, "--size", "100"]);
        assert_eq!(field(&line, "transport"), "\"unix\"");
        assert_eq!(field(&line, "addr"), format!("\"unix:{path_text}\""));
        assert_eq!(field(&line, "mode"), "\"closed\"");
        bench_json(backend, &["--unix", path_text, "--rate", "400"]);

        // Larger than the server's 16 KiB buffer, so it comes back in several reads.
        let mut client = UnixStream::connect(&path).expect("connect to the echo socket");
        client.set_read_timeout(Some(LIMIT)).unwrap();
        for (len, seed) in [(1, 1), (1000, 2), (100_000, 3)] {
            let sent = message(len, seed);
            client.write_all(&sent).expect("write");
            let mut back = vec![0; len];
            client.read_exact(&mut back).expect("read the echo");
            assert!(back == sent, "{len} bytes came back changed");
        }
        drop(client);

        let second = run(&examples().echo, backend, &["--unix", path_text]);
        assert_eq!(second.status.code(), Some(1), "a second server on the path is refused");
        assert!(
            stderr_of(&second).contains("the path exists"),
            "the refusal says why: {}",
            stderr_of(&second)
        );
        bench_json(backend, &["--unix", path_text]);

        let (status, rest) = server.stop();
        assert!(status.success(), "the server exits 0 on SIGTERM: {status}");
        assert!(
            rest.iter().any(|line| line.contains("connections served")),
            "the per-core summary: {rest:?}"
        );
        assert!(!path.exists(), "the server removes the socket file it created");
    }

    /// `--udp`: the load generator's datagrams all come back checked, and a small client's
    /// largest and empty datagrams come back whole.
    fn udp_transport_echoes(backend: Backend) {
        let server = Server::start(backend, &["--udp", "--addr", "127.0.0.1:0"]);
        let addr = server.addr("udp:");
        let line = bench_json(
            backend,
            &["--udp", "--addr", &addr.to_string(), "--size", "512", "--udp-timeout-ms", "1000"],
        );
        assert_eq!(field(&line, "transport"), "\"udp\"");
        assert_eq!(field(&line, "addr"), format!("\"udp:{addr}\""));
        // Lost datagrams are counted, not errors (on a loaded machine an echo may be later
        // than the timeout), so only their field is checked, not their number.
        field(&line, "lost").parse::<u64>().expect("lost is a number");

        // A second server on the same port is refused rather than sharing its datagrams.
        let second = run(&examples().echo, backend, &["--udp", "--addr", &addr.to_string()]);
        assert_eq!(second.status.code(), Some(1), "{}", stderr_of(&second));
        assert!(
            stderr_of(&second).contains("another socket already uses it"),
            "the refusal says why: {}",
            stderr_of(&second)
        );

        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(addr).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The largest IPv4 datagram, then an empty one. UDP may drop a datagram even on
        // loopback, so each is tried a few times; a reply is recognised by its content.
        for sent in [message(65_507, 7), Vec::new()] {
            let mut back = vec![0; 70_000];
            let echoed = (0..5).any(|_| {
                client.send(&sent).expect("send");
                matches!(client.recv(&mut back), Ok(n) if back[..n] == sent[..])
            });
            assert!(echoed, "a {}-byte datagram came back whole", sent.len());
        }

        let (status, rest) = server.stop();
        assert!(status.success(), "the server exits 0 on SIGTERM: {status}");
        assert!(
            rest.iter().any(|line| line.contains("datagrams echoed")),
            "the per-core summary: {rest:?}"
        );
    }

    /// An existing `--unix` path is refused with a clear message and left as it was: a
    /// regular file, and a stale socket file no server listens on.
    fn unix_existing_path_refused(backend: Backend) {
        let dir = util::TempDir::new("exists");
        let file = dir.join("not-a-socket");
        std::fs::write(&file, b"keep me").unwrap();
        let output = run(&examples().echo, backend, &["--unix", file.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains(file.to_str().unwrap()) && stderr.contains("is not a socket file"),
            "the message names the path and what it is: {stderr}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me", "the file is untouched");

        // A listener that is gone leaves its socket file behind: a stale socket.
        let stale = dir.join("stale.sock");
        drop(UnixListener::bind(&stale).unwrap());
        let output = run(&examples().echo, backend, &["--unix", stale.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains("the path exists, a socket file") && stderr.contains("remove it"),
            "the message says it is a socket file and what to do: {stderr}"
        );
        assert!(stale.exists(), "a stale socket file is never removed by the server");
        assert!(output.stdout.is_empty(), "no banner: {:?}", output.stdout);
    }

    /// The load generator reports a server that is not there as a failure (exit 1), on each
    /// transport, and does not hang.
    fn bench_without_server_fails(backend: Backend) {
        let dir = util::TempDir::new("noserver");
        let missing = dir.join("missing.sock");
        // A free UDP port with nothing bound: the connected sockets get ECONNREFUSED.
        let free = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let (_reservation, tcp) = util::reserve_port();
        let tcp = tcp.to_string();
        for (args, says) in [
            (vec!["--unix", missing.to_str().unwrap()], "cannot connect"),
            (vec!["--udp", "--addr", &free], "refused"),
            (vec!["--addr", &tcp], "cannot connect"),
        ] {
            let mut all = vec!["--conns", "2", "--duration", "0.3", "--warmup", "0"];
            all.extend(args.iter().copied());
            let output = run(&examples().bench, backend, &all);
            assert_eq!(
                output.status.code(),
                Some(1),
                "echo_bench {all:?} without a server: {}",
                stderr_of(&output)
            );
            assert!(
                stderr_of(&output).contains(says),
                "echo_bench {all:?} says why: {}",
                stderr_of(&output)
            );
        }
    }
}

/// Bad flag combinations are refused with exit status 2 and a message naming the flags, before
/// anything is bound or connected.
#[test]
fn bad_flag_combinations_exit_2() {
    let dir = util::TempDir::new("flags");
    let sock = dir.join("never.sock");
    let sock = sock.to_str().unwrap();
    let server_cases: &[(&[&str], &str)] = &[
        (&["--unix", sock, "--udp"], "--unix and --udp"),
        (&["--udp", "--unix", sock], "--unix and --udp"),
        (
            &["--unix", sock, "--addr", "127.0.0.1:0"],
            "--unix and --addr",
        ),
        (&["--udp", "--balance", "20"], "--balance"),
        (&["--unix", sock, "--balance", "20"], "--balance"),
        (&["--unix", ""], "--unix"),
        (&["--unix"], "--unix needs a value"),
        (&["--udp=yes"], "--udp takes no value"),
    ];
    for (args, says) in server_cases {
        let output = run(&examples().echo, Backend::Epoll, args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "echo {args:?}: {}",
            stderr_of(&output)
        );
        assert!(
            stderr_of(&output).contains(says),
            "echo {args:?}: {}",
            stderr_of(&output)
        );
    }
    let bench_cases: &[(&[&str], &str)] = &[
        (&["--unix", sock, "--udp"], "--unix and --udp"),
        (
            &["--unix", sock, "--addr", "127.0.0.1:1"],
            "--unix and --addr",
        ),
        (&["--udp", "--rate", "100"], "--rate"),
        (&["--udp", "--size", "4"], "--size"),
        (&["--udp", "--size", "70000"], "--size"),
        (
            &["--udp-timeout-ms", "50"],
            "--udp-timeout-ms applies to --udp only",
        ),
        (&["--udp", "--udp-timeout-ms", "0"], "--udp-timeout-ms"),
    ];
    for (args, says) in bench_cases {
        let output = run(&examples().bench, Backend::Epoll, args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "echo_bench {args:?}: {}",
            stderr_of(&output)
        );
        assert!(
            stderr_of(&output).contains(says),
            "echo_bench {args:?}: {}",
            stderr_of(&output)
        );
    }
    assert!(!Path::new(sock).exists(), "no socket file was created");
}
