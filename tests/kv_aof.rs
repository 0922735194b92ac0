//! `sharded_kv --dir`: the append-only files survive `kill -9`, a torn tail loads, a corrupt
//! middle refuses to start (or is repaired on request), and a rewrite keeps the data and
//! shrinks the file. The example binary runs as a child process, as a user would run it (only
//! a separate process can be killed with SIGKILL), on two cores where the machine has two, so
//! half the keys are forwarded to the other core's shard and log; `redis-benchmark` (package
//! `redis-tools`) adds load while the test's own client counts what was acknowledged.

#[macro_use]
mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use coreio::Backend;
use util::TempDir;

/// The most a start, a reply or a child may take; only a hang gets there.
const LIMIT: Duration = Duration::from_secs(60);

fn sharded_kv() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let [binary] = util::build_examples(["sharded_kv"]);
        binary
    })
}

/// A `sharded_kv` child; killed (SIGKILL) on drop if still running.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// The child's stderr, collected until it exits.
    stderr: mpsc::Receiver<String>,
}

/// Starts `sharded_kv --addr 127.0.0.1:0 --dir DIR` with `args`; `Err(stderr)` if it exits
/// before listening.
fn start(backend: Backend, dir: &Path, args: &[&str]) -> Result<Server, String> {
    let cores = util::two_or_fewer_cores().to_string();
    let mut child = Command::new(sharded_kv())
        .args(["--addr", "127.0.0.1:0", "--cores", &cores, "--dir"])
        .arg(dir)
        .args(args)
        .env("COREIO_BACKEND", util::child_backend_env(backend))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sharded_kv starts");
    let (err_tx, err_rx) = mpsc::channel();
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = err_tx.send(text);
    });
    let (banner_tx, banner_rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = banner_tx.send(line);
        }
    });
    let deadline = Instant::now() + LIMIT;
    loop {
        match banner_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) if line.starts_with("sharded_kv on ") => {
                let addr = line["sharded_kv on ".len()..]
                    .split(':')
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(":");
                let addr = addr.parse().unwrap_or_else(|_| panic!("banner {line:?}"));
                return Ok(Server {
                    child,
                    addr,
                    stderr: err_rx,
                });
            }
            Ok(_) => {}
            Err(_) => {
                if let Some(status) = child.try_wait().unwrap() {
                    let stderr = err_rx.recv_timeout(LIMIT).unwrap_or_default();
                    return Err(format!("exited with {status}: {stderr}"));
                }
                assert!(Instant::now() < deadline, "sharded_kv did not start");
            }
        }
    }
}

impl Server {
    /// SIGKILL, as a crash would.
    fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.stderr.recv_timeout(LIMIT).unwrap_or_default()
    }

    /// SIGTERM, a clean stop; returns stderr.
    fn stop(mut self) -> String {
        // SAFETY: kill(2) with the pid of our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        let stderr = self.stderr.recv_timeout(LIMIT).unwrap_or_default();
        assert!(status.success(), "sharded_kv failed: {status}\n{stderr}");
        stderr
    }

    fn client(&self) -> Client {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking RESP client.
struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn command(&mut self, args: &[&[u8]]) -> Option<Vec<u8>> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&request).ok()?;
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line).ok()?;
        if line.is_empty() {
            return None;
        }
        if line[0] == b'$' {
            let len: i64 = std::str::from_utf8(&line[1..line.len() - 2])
                .unwrap()
                .parse()
                .unwrap();
            if len < 0 {
                return Some(b"(nil)".to_vec());
            }
            let mut value = vec![0; len as usize + 2];
            self.reader.read_exact(&mut value).ok()?;
            value.truncate(len as usize);
            return Some(value);
        }
        Some(line)
    }

    fn set(&mut self, key: &str, value: &str) -> bool {
        self.command(&[b"SET", key.as_bytes(), value.as_bytes()])
            .is_some_and(|reply| reply == b"+OK\r\n")
    }

    fn get(&mut self, key: &str) -> Vec<u8> {
        self.command(&[b"GET", key.as_bytes()])
            .expect("the server answers")
    }
}

fn redis_benchmark(addr: SocketAddr, args: &[&str]) -> Child {
    Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string(), "-q"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-benchmark runs (apt-get install redis-tools)")
}

/// A log of `keys` SETs written by a server that then stopped cleanly.
fn written_log(backend: Backend, dir: &Path, keys: usize) {
    let server = start(backend, dir, &[]).unwrap();
    let mut client = server.client();
    for i in 0..keys {
        assert!(client.set(&format!("key:{i}"), &format!("value:{i}")));
    }
    server.stop();
}

/// The shard file holding the most bytes.
fn biggest_log(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "aof"))
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .expect("a shard file")
}

/// SETs acknowledged under `policy` before a SIGKILL are all there after a restart.
fn acknowledged_sets_survive_kill_9(backend: Backend, policy: &str) {
    let dir = TempDir::new("aof-kill");
    let server = start(backend, dir.path(), &["--appendfsync", policy]).unwrap();
    let mut load = redis_benchmark(
        server.addr,
        &["-t", "set", "-n", "10000000", "-r", "100000", "-c", "8"],
    );
    let mut client = server.client();
    let mut acknowledged = Vec::new();
    let started = Instant::now();
    while acknowledged.len() < 3000 && started.elapsed() < Duration::from_secs(20) {
        let i = acknowledged.len();
        if !client.set(&format!("acked:{i}"), &format!("value:{i}")) {
            break;
        }
        acknowledged.push(i);
    }
    // Mid-load, with requests of both clients in flight.
    let _ = server.kill();
    let _ = load.kill();
    let _ = load.wait();
    assert!(
        acknowledged.len() >= 100,
        "only {} SETs were acknowledged",
        acknowledged.len()
    );

    let server = start(backend, dir.path(), &[]).unwrap();
    let mut client = server.client();
    for i in acknowledged {
        assert_eq!(
            client.get(&format!("acked:{i}")),
            format!("value:{i}").into_bytes(),
            "acknowledged SET acked:{i} was lost"
        );
    }
    server.stop();
}

both_backends! {
    fn every_set_acknowledged_under_always_survives_kill_9(backend: Backend) {
        acknowledged_sets_survive_kill_9(backend, "always");
    }

    fn every_set_acknowledged_under_everysec_survives_kill_9(backend: Backend) {
        acknowledged_sets_survive_kill_9(backend, "everysec");
    }

    fn a_torn_last_record_is_cut_and_the_rest_loads(backend: Backend) {
        let dir = TempDir::new("aof-torn");
        written_log(backend, dir.path(), 200);
        let log = biggest_log(dir.path());
        let good = std::fs::metadata(&log).unwrap().len();
        // Half a record: a length that runs past the end, as a write cut short leaves.
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        file.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 1, 3, 0]).unwrap();
        drop(file);

        let server = start(backend, dir.path(), &[]).unwrap();
        let mut client = server.client();
        for i in 0..200 {
            assert_eq!(client.get(&format!("key:{i}")), format!("value:{i}").into_bytes());
        }
        let stderr = server.stop();
        assert!(stderr.contains("torn last record") && stderr.contains(&format!("byte offset {good}")), "{stderr}");
        assert_eq!(std::fs::metadata(&log).unwrap().len(), good, "the torn bytes are cut");
    }

    fn a_corrupt_record_in_the_middle_refuses_to_start_unless_repaired(backend: Backend) {
        let dir = TempDir::new("aof-corrupt");
        written_log(backend, dir.path(), 200);
        let log = biggest_log(dir.path());
        let mut bytes = std::fs::read(&log).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&log, &bytes).unwrap();

        let refused = start(backend, dir.path(), &[]).err().expect("a corrupt log must not load");
        assert!(refused.contains(&log.display().to_string()), "{refused}");
        assert!(refused.contains("corrupt record at byte offset"), "{refused}");
        assert!(refused.contains("--aof-repair"), "{refused}");
        assert_eq!(std::fs::read(&log).unwrap(), bytes, "a refused start changes nothing");

        let server = start(backend, dir.path(), &["--aof-repair"]).unwrap();
        let mut client = server.client();
        // The keys before the bad record are there; the log was cut at it.
        assert_eq!(client.get("key:0"), b"value:0");
        let stderr = server.stop();
        assert!(stderr.contains("--aof-repair given"), "{stderr}");
        assert!(std::fs::metadata(&log).unwrap().len() <= middle as u64);
    }

    fn a_rewrite_keeps_the_data_and_shrinks_the_file(backend: Backend) {
        let dir = TempDir::new("aof-rewrite");
        let server = start(backend, dir.path(), &["--aof-rewrite-min-size", "65536"]).unwrap();
        // 100 keys overwritten over and over: the log grows, the live data does not.
        let mut load = redis_benchmark(server.addr, &["-t", "set", "-n", "100000", "-r", "100", "-d", "64", "-c", "4"]);
        assert!(load.wait().unwrap().success());
        let mut client = server.client();
        for i in 0..100 {
            assert!(client.set(&format!("last:{i}"), &format!("final:{i}")));
        }
        server.stop();
        let total: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().metadata().unwrap().len())
            .sum();
        // 100,000 SETs of 64-byte values are over 8 MB of records.
        assert!(total < 1 << 20, "the logs were not rewritten: {total} bytes");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .filter(|name| name.to_string_lossy().ends_with(".rewrite"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let server = start(backend, dir.path(), &[]).unwrap();
        let mut client = server.client();
        for i in 0..100 {
            assert_eq!(client.get(&format!("last:{i}")), format!("final:{i}").into_bytes());
        }
        // redis-benchmark's keys (`-r 100`: key:000000000000 to key:000000000099, each hit
        // about a thousand times) hold its last 64-byte value.
        for i in 0..100 {
            assert_eq!(client.get(&format!("key:{i:012}")).len(), 64, "key:{i:012}");
        }
        server.stop();
    }
}

#[test]
fn a_different_core_count_is_refused() {
    if util::two_or_fewer_cores() < 2 {
        eprintln!("one CPU: a run with fewer cores cannot be made");
        return;
    }
    let dir = TempDir::new("aof-cores");
    written_log(Backend::Auto, dir.path(), 10);
    let err = Command::new(sharded_kv())
        .args(["--addr", "127.0.0.1:0", "--cores", "1", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(!err.status.success());
    assert!(stderr.contains("start with the same --cores"), "{stderr}");
}
