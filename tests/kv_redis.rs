//! The `sharded_kv` example against the real Redis tools: `redis-cli` and `redis-benchmark`
//! (Debian/Ubuntu package `redis-tools`). A missing tool fails the test with the command that
//! installs it; nothing is skipped.
//!
//! The server runs in this process: the example's modules are compiled into this test binary
//! with `#[path]` (`resp`, `shard`, `commands`, `server`; `main.rs` adds only flags, signals
//! and the banner), and each test starts the per-core root future `server::serve` on a
//! runtime of two cores where the machine has two, so that requests for the other core's keys
//! go through the mesh. This tests exactly the code the example runs, on the backend the
//! test asks for, with no binary to build or find; the codec's and the store's unit tests
//! come along and run here too.
//!
//! Every test waits for the server's "every core listens" signal rather than for time to
//! pass, and every child process and socket read has a generous limit that only a hang
//! reaches.

#[macro_use]
mod util;

// The in-process server runs without persistence (tests/kv_aof.rs runs the binary with it):
// the parts only the example's flags reach are unused here.
#[allow(dead_code)]
#[path = "../examples/sharded_kv/aof/mod.rs"]
mod aof;
#[path = "../examples/sharded_kv/commands/mod.rs"]
mod commands;
#[path = "../examples/support/ready.rs"]
mod ready;
#[path = "../examples/sharded_kv/resp/mod.rs"]
mod resp;
#[path = "../examples/sharded_kv/server.rs"]
mod server;
#[path = "../examples/sharded_kv/shard.rs"]
mod shard;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coreio::sync::Event;
use coreio::{Backend, CoreError};

use server::Served;

/// The most any child process or socket read may take; only a hang gets there.
const LIMIT: Duration = Duration::from_secs(60);

type CoreResults = Vec<Result<Result<Served, String>, CoreError>>;

/// A `sharded_kv` server running on its own runtime, stopped (and checked) on drop.
struct Server {
    addr: SocketAddr,
    cores: usize,
    stop: Event,
    thread: Option<JoinHandle<CoreResults>>,
    /// Holds the port for the server's lifetime.
    _reservation: socket2::Socket,
}

impl Server {
    /// Starts the server with `backend` on up to two cores and waits until every core listens.
    fn start(backend: Backend) -> Server {
        let (reservation, addr) = util::reserve_port();
        let rt = coreio::Builder::new()
            .backend(backend)
            .cores(util::two_or_fewer_cores())
            .thread_name_prefix("kv-test")
            .build()
            .expect("the runtime starts");
        if !util::backend_overridden() {
            assert_eq!(rt.backend(), backend);
        }
        let cores = rt.cores().len();
        let stop = Event::new();
        let (ready_tx, ready_rx) = mpsc::channel();
        let ready = ready::Ready::new(cores, move || {
            let _ = ready_tx.send(());
        });
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // Whatever happens, let `start` stop waiting.
                let stop_on_exit = stop.clone();
                let results =
                    rt.run(|_core| server::serve(addr, None, stop.clone(), ready.clone()));
                stop_on_exit.set();
                results
            })
        };
        let mut server = Server {
            addr,
            cores,
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

    /// `-h 127.0.0.1 -p PORT`, for the Redis tools.
    fn tool_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.addr.ip().to_string(),
            "-p".into(),
            self.addr.port().to_string(),
        ]
    }

    /// Stops the server and returns what each core reports.
    fn finish(&mut self) -> CoreResults {
        self.stop.set();
        match self.thread.take() {
            Some(thread) => thread.join().expect("the server thread panicked"),
            None => Vec::new(),
        }
    }

    /// Stops the server, asserts that every core ended cleanly (no panic, no error), and
    /// returns their reports.
    fn stop(mut self) -> Vec<Served> {
        self.finish()
            .into_iter()
            .map(|result| match result {
                Ok(Ok(served)) => served,
                Ok(Err(message)) => panic!("a core failed: {message}"),
                Err(err) => panic!("a core failed: {err}"),
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let results = self.finish();
            if !std::thread::panicking() {
                // `stop` takes the thread; dropping a running server is a test bug.
                panic!("Server dropped without stop(): {results:?}");
            }
        }
    }
}

/// A command for `tool` (`redis-cli`, `redis-benchmark`); panics with how to install it if it
/// is not there.
fn tool(name: &str) -> Command {
    match Command::new(name).arg("--version").output() {
        Ok(output) if output.status.success() => Command::new(name),
        Ok(output) => panic!("`{name} --version` failed: {output:?}"),
        Err(err) => panic!(
            "{name} is needed by this test and could not be run ({err}); install it with \
             `apt-get install redis-tools` (Debian/Ubuntu) or your system's redis package"
        ),
    }
}

/// Runs `cmd` with `stdin` as its input; waits at most `LIMIT`.
fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|err| panic!("{what}: {err}"));
    // Feed and drain on threads, so that no pipe can fill up and block either side.
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} ran past {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    feeder.join().unwrap();
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// `redis-cli` against `server` with `args`, formatted output (`--no-raw`: `(nil)`,
/// `(integer) 3`, `"quoted"`), `stdin` as input; returns stdout and asserts exit status 0.
fn redis_cli(server: &Server, args: &[&str], stdin: &[u8]) -> String {
    let mut cmd = tool("redis-cli");
    cmd.args(server.tool_args()).arg("--no-raw").args(args);
    let output = run(cmd, stdin);
    assert!(
        output.status.success(),
        "redis-cli {args:?} failed: {output:?}"
    );
    String::from_utf8(output.stdout).expect("redis-cli --no-raw prints text")
}

/// A raw connection to the server, for exact bytes.
fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads exactly `len` bytes.
fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).expect("the whole reply");
    buf
}

/// Reads until the server closes the connection.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    match stream.read_to_end(&mut buf) {
        Ok(_) => buf,
        // A reset after the last reply still counts as a close (the server may close with
        // unread bytes of ours left, which makes the kernel send RST).
        Err(err) if err.kind() == io::ErrorKind::ConnectionReset => buf,
        Err(err) => panic!("reading until close: {err} (got {buf:?})"),
    }
}

/// One request in RESP, binary-safe.
fn resp_request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The expected RESP bulk reply for `value`.
fn bulk(value: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", value.len()).into_bytes();
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    out
}

/// Keys `prefix0..prefixN` and which shard owns each, asserting that every shard owns some
/// (so that forwarding is exercised whenever there are several cores).
fn keys_on_every_shard(prefix: &str, n: usize, shards: usize) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    for shard in 0..shards {
        assert!(
            keys.iter()
                .any(|key| shard::owner(key.as_bytes(), shards) == shard),
            "no key of {keys:?} is on shard {shard}"
        );
    }
    keys
}

/// Asserts that, with several cores, some requests were forwarded.
fn assert_forwarded(server_cores: usize, served: &[Served]) {
    let forwarded: u64 = served.iter().map(|s| s.forwarded).sum();
    if server_cores > 1 {
        assert!(forwarded > 0, "nothing was forwarded: {served:?}");
    }
}

both_backends! {
    fn ping_set_get_many_keys_with_redis_cli(backend: Backend) {
        let server = Server::start(backend);
        assert_eq!(redis_cli(&server, &["PING"], b""), "PONG\n");
        assert_eq!(redis_cli(&server, &["ping", "hello there"], b""), "\"hello there\"\n");
        assert_eq!(redis_cli(&server, &["ECHO", "x"], b""), "\"x\"\n");

        // redis-cli reads one command per line from a non-terminal stdin.
        let keys = keys_on_every_shard("key:", 200, server.cores);
        let sets: String = keys.iter().map(|k| format!("SET {k} value-of-{k}\n")).collect();
        assert_eq!(redis_cli(&server, &[], sets.as_bytes()), "OK\n".repeat(keys.len()));
        let gets: String = keys.iter().map(|k| format!("GET {k}\n")).collect();
        let expected: String = keys.iter().map(|k| format!("\"value-of-{k}\"\n")).collect();
        assert_eq!(redis_cli(&server, &[], gets.as_bytes()), expected);
        assert_eq!(redis_cli(&server, &["GET", "no-such-key"], b""), "(nil)\n");

        // Overwrites, then the keys counted per shard at the end.
        assert_eq!(redis_cli(&server, &["SET", "key:0", "again"], b""), "OK\n");
        assert_eq!(redis_cli(&server, &["GET", "key:0"], b""), "\"again\"\n");
        let served = server.stop();
        // One connection per redis-cli run above.
        assert_eq!(served.iter().map(|s| s.connections).sum::<u64>(), 8);
        assert_eq!(served.iter().map(|s| s.keys).sum::<usize>(), keys.len());
        assert_forwarded(served.len(), &served);
    }

    fn del_incr_and_errors_with_redis_cli(backend: Backend) {
        let server = Server::start(backend);
        let keys = keys_on_every_shard("del:", 6, server.cores);
        for key in &keys {
            assert_eq!(redis_cli(&server, &["SET", key, "v"], b""), "OK\n");
        }
        // Every key once, one twice, one missing: Redis counts each existing key once.
        let mut del = vec!["DEL"];
        del.extend(keys.iter().map(String::as_str));
        del.extend([keys[0].as_str(), "del:missing"]);
        assert_eq!(redis_cli(&server, &del, b""), "(integer) 6\n");
        assert_eq!(redis_cli(&server, &del, b""), "(integer) 0\n");
        assert_eq!(redis_cli(&server, &["DEL", "nothing"], b""), "(integer) 0\n");

        // INCR: a missing key counts as 0; a negative value; then Redis's errors.
        let counters = keys_on_every_shard("counter:", 8, server.cores);
        for key in &counters {
            assert_eq!(redis_cli(&server, &["INCR", key], b""), "(integer) 1\n");
            assert_eq!(redis_cli(&server, &["incr", key], b""), "(integer) 2\n");
            assert_eq!(redis_cli(&server, &["GET", key], b""), "\"2\"\n");
        }
        assert_eq!(redis_cli(&server, &["SET", "n", "-2"], b""), "OK\n");
        assert_eq!(redis_cli(&server, &["INCR", "n"], b""), "(integer) -1\n");
        let not_integer = "(error) ERR value is not an integer or out of range\n";
        for bad in ["abc", "1.5", "01", " 1", "99999999999999999999"] {
            assert_eq!(redis_cli(&server, &["SET", "n", bad], b""), "OK\n");
            assert_eq!(redis_cli(&server, &["INCR", "n"], b""), not_integer, "{bad:?}");
        }
        assert_eq!(
            redis_cli(&server, &["SET", "n", &i64::MAX.to_string()], b""),
            "OK\n"
        );
        assert_eq!(
            redis_cli(&server, &["INCR", "n"], b""),
            "(error) ERR increment or decrement would overflow\n"
        );

        // The errors Redis gives.
        assert_eq!(
            redis_cli(&server, &["FOO", "bar", "baz"], b""),
            "(error) ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' \n"
        );
        assert_eq!(
            redis_cli(&server, &["GET"], b""),
            "(error) ERR wrong number of arguments for 'get' command\n"
        );
        assert_eq!(
            redis_cli(&server, &["SET", "k", "v", "EX", "10"], b""),
            "(error) ERR syntax error\n"
        );
        assert_eq!(
            redis_cli(&server, &["CONFIG", "GET", "save"], b""),
            "1) \"save\"\n2) \"\"\n"
        );
        let served = server.stop();
        assert_forwarded(served.len(), &served);
    }

    fn mget_across_shards_with_missing_keys(backend: Backend) {
        let server = Server::start(backend);
        let keys = keys_on_every_shard("m:", 10, server.cores);
        // Set every other key; ask for all of them and two missing ones, interleaved.
        let mut expected = String::new();
        let mut mget = vec!["MGET"];
        for (i, key) in keys.iter().enumerate() {
            if i % 2 == 0 {
                assert_eq!(redis_cli(&server, &["SET", key, &format!("v{i}")], b""), "OK\n");
            }
            mget.push(key);
        }
        mget.insert(3, "m:missing");
        mget.push("m:missing-too");
        // redis-cli right-aligns the indices to the widest one.
        let width = (mget.len() - 1).to_string().len();
        for (position, key) in mget[1..].iter().enumerate() {
            let value = keys
                .iter()
                .position(|k| k == key)
                .filter(|i| i % 2 == 0)
                .map_or("(nil)".to_string(), |i| format!("\"v{i}\""));
            expected.push_str(&format!("{:>width$}) {value}\n", position + 1));
        }
        assert_eq!(redis_cli(&server, &mget, b""), expected);
        assert_eq!(
            redis_cli(&server, &["MGET", "none"], b""),
            "1) (nil)\n"
        );
        let served = server.stop();
        assert_forwarded(served.len(), &served);
    }

    fn binary_keys_and_values_round_trip(backend: Backend) {
        let server = Server::start(backend);
        // Every byte value, CR LF and NUL included, through `redis-cli -x` (the value is stdin).
        let value: Vec<u8> = (0..=255u8).chain(b"\r\n\0end".iter().copied()).collect();
        assert_eq!(redis_cli(&server, &["-x", "SET", "bin"], &value), "OK\n");
        let mut stream = connect(&server);
        stream.write_all(&resp_request(&[b"GET", b"bin"])).unwrap();
        assert_eq!(read_exactly(&mut stream, bulk(&value).len()), bulk(&value));

        // Binary keys on every shard, over one raw connection.
        let keys: Vec<Vec<u8>> = (0..16u8)
            .map(|i| vec![0, b'\r', b'\n', i, 0xff, b' '])
            .collect();
        for key in &keys {
            stream
                .write_all(&resp_request(&[b"SET", key, &[key.as_slice(), b"!"].concat()]))
                .unwrap();
            assert_eq!(read_exactly(&mut stream, 5), b"+OK\r\n");
        }
        for key in &keys {
            stream.write_all(&resp_request(&[b"GET", key])).unwrap();
            let expected = bulk(&[key.as_slice(), b"!"].concat());
            assert_eq!(read_exactly(&mut stream, expected.len()), expected);
        }
        drop(stream);
        server.stop();
    }

    fn redis_cli_pipe_and_one_write_pipelines(backend: Backend) {
        let server = Server::start(backend);
        // `redis-cli --pipe` sends everything at once, then an ECHO it waits for.
        let count = 10_000;
        let mut input = Vec::new();
        for i in 0..count {
            let key = format!("p:{i}");
            input.extend(resp_request(&[b"SET", key.as_bytes(), i.to_string().as_bytes()]));
        }
        let mut cmd = tool("redis-cli");
        cmd.args(server.tool_args()).arg("--pipe");
        let output = run(cmd, &input);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "redis-cli --pipe: {output:?}");
        assert!(
            stdout.contains(&format!("errors: 0, replies: {count}")),
            "redis-cli --pipe: {stdout}"
        );

        // Thousands of requests, multibulk and inline mixed, in one write; replies in order.
        let mut requests = Vec::new();
        let mut expected = Vec::new();
        for i in 0..count {
            let key = format!("p:{i}");
            requests.extend(resp_request(&[b"GET", key.as_bytes()]));
            expected.extend(bulk(i.to_string().as_bytes()));
            if i % 100 == 0 {
                requests.extend_from_slice(format!("INCR p:{i}\r\nPING\n").as_bytes());
                expected.extend_from_slice(format!(":{}\r\n+PONG\r\n", i + 1).as_bytes());
            }
        }
        let mut stream = connect(&server);
        let mut writer = stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || writer.write_all(&requests));
        assert_eq!(read_exactly(&mut stream, expected.len()), expected);
        sender.join().unwrap().unwrap();

        // A request in many small writes, with a value bigger than the read buffer.
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let request = resp_request(&[b"SET", b"big", &big]);
        for piece in request.chunks(7_777) {
            stream.write_all(piece).unwrap();
        }
        assert_eq!(read_exactly(&mut stream, 5), b"+OK\r\n");
        stream.write_all(b"GET big\r\n").unwrap();
        assert_eq!(read_exactly(&mut stream, bulk(&big).len()), bulk(&big));
        drop(stream);
        let served = server.stop();
        assert_forwarded(served.len(), &served);
    }

    fn protocol_garbage_gets_an_error_and_the_server_lives_on(backend: Backend) {
        let server = Server::start(backend);
        let cases: &[(&[u8], &[u8])] = &[
            (b"*2\r\n$3\r\nGET\r\n:1\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
            (b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
            (b"*9999999\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
            (b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
            // A 1 GB value is refused from its header: nothing is allocated for it.
            (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000000\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
            (b"*1\r\n$4\r\nPINGxx", b"-ERR Protocol error: expected CRLF after a bulk string\r\n"),
            (b"GET \"unterminated\r\n", b"-ERR Protocol error: unbalanced quotes in request\r\n"),
            // A valid request first: its reply comes before the error.
            (b"PING\r\n\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\"\r\n", b"+PONG\r\n-ERR Protocol error: unbalanced quotes in request\r\n"),
        ];
        for (garbage, reply) in cases {
            let mut stream = connect(&server);
            stream.write_all(garbage).unwrap();
            assert_eq!(
                read_to_close(&mut stream),
                reply.to_vec(),
                "after {:?}",
                String::from_utf8_lossy(garbage)
            );
        }
        // An inline request that never ends is refused past 64 KiB, not buffered forever.
        let mut stream = connect(&server);
        let endless = vec![b'a'; 64 * 1024 + 1];
        stream.write_all(&endless).unwrap();
        assert_eq!(read_to_close(&mut stream), b"-ERR Protocol error: too big inline request\r\n");

        // An unknown command is an error reply, not a reason to close.
        let mut stream = connect(&server);
        stream.write_all(b"HELLO 3\r\nPING\r\n").unwrap();
        let expected: &[u8] = b"-ERR unknown command 'HELLO', with args beginning with: '3' \r\n+PONG\r\n";
        assert_eq!(read_exactly(&mut stream, expected.len()), expected);
        // QUIT: +OK, then the server closes; what follows it is not executed.
        stream.write_all(b"QUIT\r\nPING\r\n").unwrap();
        assert_eq!(read_to_close(&mut stream), b"+OK\r\n");

        // The server still answers, on every core.
        for _ in 0..8 {
            assert_eq!(redis_cli(&server, &["PING"], b""), "PONG\n");
        }
        server.stop();
    }

    fn redis_benchmark_get_set(backend: Backend) {
        let server = Server::start(backend);
        let mut cmd = tool("redis-benchmark");
        cmd.args(server.tool_args())
            .args(["-t", "get,set", "-n", "20000", "-q"]);
        let output = run(cmd, b"");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "redis-benchmark: {output:?}");
        // `-q` prints, per test, `SET: 12345.67 requests per second, p50=...` after progress
        // lines ended by CR.
        for test in ["SET", "GET"] {
            let rate = stdout
                .split(['\r', '\n'])
                .filter_map(|line| line.strip_prefix(&format!("{test}: ")))
                .filter_map(|rest| rest.split_once(" requests per second"))
                .find_map(|(rate, _)| rate.trim().parse::<f64>().ok());
            match rate {
                Some(rate) => assert!(rate > 0.0, "{test}: {rate} in {stdout}"),
                None => panic!("no {test} rate in redis-benchmark's output: {stdout}"),
            }
        }
        let served = server.stop();
        assert!(served.iter().map(|s| s.commands).sum::<u64>() >= 40_000, "{served:?}");
    }
}
