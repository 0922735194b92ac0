//! `#[coreio::main]` and `#[coreio::test]`: the tests below are themselves written with
//! `#[coreio::test]` (each runs on both backends, or on the one it names), and functions
//! written with `#[coreio::main]` are called as a program's `main` would be.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coreio::Backend;

/// Whether `COREIO_BACKEND` overrides the backend the attribute asked for.
fn overridden() -> bool {
    std::env::var_os("COREIO_BACKEND").is_some()
}

fn runs_on(expected: Backend) {
    let actual = coreio::backend().expect("inside a runtime");
    if !overridden() {
        assert_eq!(actual, expected);
    }
}

#[coreio::test]
async fn a_test_runs_once_on_each_backend() {
    coreio::time::sleep(Duration::from_millis(1)).await;
    assert!(coreio::current_core().is_some());
    let backend = coreio::backend().unwrap();
    assert!(matches!(backend, Backend::IoUring | Backend::Epoll));
}

/// The module the attribute made holds both tests; each runs its own backend.
mod which_backend {
    use super::*;

    #[coreio::test(backend = "epoll")]
    async fn a_named_backend_makes_one_test() {
        runs_on(Backend::Epoll);
    }

    #[coreio::test(backend = "io_uring")]
    async fn io_uring_by_name() {
        runs_on(Backend::IoUring);
    }
}

#[coreio::test]
async fn a_test_may_return_a_result() -> std::io::Result<()> {
    let (a, b) = coreio::net::UnixStream::pair()?;
    let (written, _) = a.write_all(b"ping".to_vec()).await;
    written?;
    let (read, buf) = b.read_exact(Vec::with_capacity(4)).await;
    read?;
    assert_eq!(buf, b"ping");
    Ok(())
}

#[coreio::test]
#[should_panic(expected = "failing on purpose")]
async fn attributes_apply_to_both_tests() {
    coreio::yield_now().await;
    panic!("failing on purpose");
}

/// Items of the enclosing module are in scope in the body.
const ANSWER: u32 = 42;

#[coreio::test]
async fn the_body_sees_the_enclosing_module() {
    assert_eq!(coreio::spawn(async { ANSWER }).await.unwrap(), 42);
}

#[coreio::main]
async fn main_with_an_output() -> u32 {
    coreio::spawn(async { 6 * 7 }).await.unwrap()
}

#[coreio::main(backend = "epoll")]
async fn main_on_epoll() -> Backend {
    coreio::backend().unwrap()
}

static CORES_RUN: AtomicUsize = AtomicUsize::new(0);

#[coreio::main(cores = 2)]
async fn main_on_every_core() {
    coreio::yield_now().await;
    CORES_RUN.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn main_gives_the_body_output() {
    assert_eq!(main_with_an_output(), 42);
    let backend = main_on_epoll();
    if !overridden() {
        assert_eq!(backend, Backend::Epoll);
    }
}

#[test]
fn main_with_cores_runs_the_body_on_each_core() {
    // Where this process may use a single CPU, a two-core runtime cannot start; the macro
    // then exits the process, which this test must not do.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus < 2 {
        eprintln!("one CPU: main_on_every_core is not run");
        return;
    }
    main_on_every_core();
    assert_eq!(CORES_RUN.load(Ordering::SeqCst), 2);
}
