//! Real fallback: a child process whose seccomp filter makes `io_uring_setup` fail, as Docker's
//! default profile (EPERM) or a kernel without io_uring (ENOSYS) would. `Backend::Auto` must
//! pick epoll, say why, and serve traffic; forcing io_uring must fail with the documented error.
//!
//! The test re-executes its own binary with `COREIO_FALLBACK_CHILD` set; the child installs the
//! filter on itself before touching coreio.

use std::io::{Read, Write};
use std::process::Command;

use coreio::{Backend, Builder, RingSetupError};

const CHILD_ENV: &str = "COREIO_FALLBACK_CHILD";

/// Installs a seccomp filter that fails `io_uring_setup` with `errno` and allows the rest.
fn deny_io_uring_setup(errno: u32) {
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
    let arch = if cfg!(target_arch = "x86_64") {
        AUDIT_ARCH_X86_64
    } else {
        AUDIT_ARCH_AARCH64
    };
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u16, k: u32, jt: u8, jf: u8| libc::sock_filter { code, jt, jf, k };
    let ld_w_abs = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let jeq_k = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    let ret_k = (libc::BPF_RET | libc::BPF_K) as u16;
    let mut filter = [
        // seccomp_data.arch is at offset 4, .nr at offset 0.
        stmt(ld_w_abs, 4),
        jump(jeq_k, arch, 1, 0),
        stmt(ret_k, SECCOMP_RET_ALLOW),
        stmt(ld_w_abs, 0),
        jump(jeq_k, libc::SYS_io_uring_setup as u32, 0, 1),
        stmt(ret_k, SECCOMP_RET_ERRNO | errno),
        stmt(ret_k, SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls; `prog` points to a valid filter that outlives the call (the
    // kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog
            ),
            0,
            "installing the seccomp filter failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Prints every log record to stderr, so the parent can check what coreio said.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        eprintln!("[{}] {}", record.level(), record.args());
    }
    fn flush(&self) {}
}

/// The child's work, selected by `COREIO_FALLBACK_CHILD=<errno>:<mode>`.
fn child(spec: &str) -> i32 {
    let (errno, mode) = spec.split_once(':').expect("spec is errno:mode");
    let errno: u32 = errno.parse().expect("numeric errno");
    log::set_logger(&StderrLogger).expect("logger installs once");
    log::set_max_level(log::LevelFilter::Warn);
    deny_io_uring_setup(errno);
    match mode {
        "auto" => {
            let rt = match Builder::new().cores(1).backend(Backend::Auto).build() {
                Ok(rt) => rt,
                Err(err) => {
                    eprintln!("build failed: {err}");
                    return 2;
                }
            };
            println!("backend={}", rt.backend());
            let served = rt.run(|_| async {
                let listener =
                    coreio::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let addr = listener.local_addr().unwrap();
                let client = std::thread::spawn(move || {
                    let mut stream = std::net::TcpStream::connect(addr).unwrap();
                    stream.write_all(b"fallback").unwrap();
                    let mut back = [0u8; 8];
                    stream.read_exact(&mut back).unwrap();
                    back
                });
                let (stream, _) = listener.accept().await.unwrap();
                let (res, buf) = stream.read_exact(Vec::with_capacity(8)).await;
                res.unwrap();
                let (res, _) = stream.write_all(buf).await;
                res.unwrap();
                (coreio::backend(), client.join().unwrap())
            });
            match served.into_iter().next() {
                Some(Ok((Some(Backend::Epoll), echoed))) if &echoed == b"fallback" => {
                    println!("served on epoll");
                    0
                }
                other => {
                    eprintln!("unexpected outcome: {other:?}");
                    3
                }
            }
        }
        "forced" => match Builder::new().cores(1).backend(Backend::IoUring).build() {
            Ok(_) => {
                eprintln!("forcing io_uring unexpectedly succeeded");
                0
            }
            Err(err) => {
                let cause = err
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<RingSetupError>())
                    .map(RingSetupError::cause);
                eprintln!("error: {err}");
                println!("cause={cause:?}");
                4
            }
        },
        other => panic!("unknown child mode {other}"),
    }
}

struct ChildOutput {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_child(errno: i32, mode: &str) -> ChildOutput {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{errno}:{mode}"))
        .env_remove("COREIO_BACKEND")
        .output()
        .expect("child process starts");
    ChildOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The child's entry point; a no-op in the parent.
#[test]
fn child_entry() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        std::process::exit(child(&spec));
    }
}

#[test]
fn auto_falls_back_to_epoll_when_seccomp_denies_io_uring_with_eperm() {
    let out = run_child(libc::EPERM, "auto");
    assert_eq!(
        out.code,
        Some(0),
        "child failed: {}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("backend=epoll"), "{}", out.stdout);
    assert!(out.stdout.contains("served on epoll"), "{}", out.stdout);
    assert!(
        out.stderr.contains("io_uring unavailable") && out.stderr.contains("EPERM"),
        "the fallback must say why: {}",
        out.stderr
    );
}

#[test]
fn auto_falls_back_to_epoll_when_the_kernel_lacks_io_uring() {
    let out = run_child(libc::ENOSYS, "auto");
    assert_eq!(
        out.code,
        Some(0),
        "child failed: {}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("backend=epoll"), "{}", out.stdout);
    assert!(
        out.stderr.contains("io_uring unavailable") && out.stderr.contains("ENOSYS"),
        "the fallback must say why: {}",
        out.stderr
    );
}

#[test]
fn forcing_io_uring_under_seccomp_is_a_clear_error() {
    let out = run_child(libc::EPERM, "forced");
    assert_eq!(out.code, Some(4), "child: {}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("cause=Some(Blocked)"), "{}", out.stdout);
    assert!(out.stderr.contains("seccomp"), "{}", out.stderr);
}

#[test]
fn forcing_io_uring_without_kernel_support_is_a_clear_error() {
    let out = run_child(libc::ENOSYS, "forced");
    assert_eq!(out.code, Some(4), "child: {}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("cause=Some(NotInKernel)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("ENOSYS") && out.stderr.contains("epoll"),
        "{}",
        out.stderr
    );
}
