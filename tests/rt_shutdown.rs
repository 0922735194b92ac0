//! Graceful shutdown of a whole runtime (`coreio::shutdown`): triggers from a thread and from a
//! task, listeners that stop accepting, tasks that finish on the request and tasks cancelled at
//! the deadline (and counted), a second trigger that skips the wait, connections mid-request,
//! several cores, a handle used after its runtime ended; and the per-core `Runtime::run_each`.

#[macro_use]
mod util;

use std::io::{Read, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use coreio::net::TcpListener;
use coreio::shutdown::{self, Shutdown, is_shutdown_error};
use coreio::time::sleep;
use coreio::{Backend, Builder, CoreId, Runtime};

use util::{DropCount, two_or_fewer_cores};

/// A grace period no test should ever wait out.
const LONG: Duration = Duration::from_secs(60);

fn runtime(backend: Backend, cores: usize, grace: Duration) -> Runtime {
    Builder::new()
        .backend(backend)
        .cores(cores)
        .shutdown_grace(grace)
        .build()
        .expect("build")
}

/// Triggers `shutdown` from a new thread after `delay`.
fn trigger_later(shutdown: &Shutdown, delay: Duration) -> std::thread::JoinHandle<()> {
    let shutdown = shutdown.clone();
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        shutdown.trigger();
    })
}

/// Spawns `n` tasks that wait for the request, then work a little and finish.
fn spawn_polite_tasks(n: usize, done: &Arc<AtomicUsize>) {
    for i in 0..n {
        let done = Arc::clone(done);
        coreio::spawn(async move {
            coreio::shutdown_requested().await;
            sleep(Duration::from_millis(1 + i as u64 % 5)).await;
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
}

both_backends! {
    fn a_trigger_from_another_thread_lets_tasks_finish(backend: Backend) {
        let rt = runtime(backend, 1, LONG);
        let shutdown = rt.shutdown_handle();
        assert!(!shutdown.is_requested());
        assert_eq!(shutdown.report(), None);
        let done = Arc::new(AtomicUsize::new(0));
        let trigger = trigger_later(&shutdown, Duration::from_millis(20));
        let started = Instant::now();
        let outputs = rt.run(|_| {
            let done = Arc::clone(&done);
            async move {
                util::assert_backend(backend);
                spawn_polite_tasks(10, &done);
                coreio::shutdown_requested().await;
                assert!(shutdown::is_requested());
                "root done"
            }
        });
        trigger.join().unwrap();
        assert_eq!(*outputs[0].as_ref().unwrap(), "root done");
        assert!(started.elapsed() < LONG / 2, "the run waited out the grace period");
        assert_eq!(done.load(Ordering::SeqCst), 10);
        let report = shutdown.report().expect("a report");
        assert_eq!((report.finished, report.cancelled), (10, 0), "{report:?}");
        assert!(!report.deadline_passed && !report.forced, "{report:?}");
    }

    fn a_trigger_from_a_task_reaches_every_core(backend: Backend) {
        let cores = two_or_fewer_cores();
        let rt = runtime(backend, cores, LONG);
        let first = rt.cores()[0];
        let done = Arc::new(AtomicUsize::new(0));
        let outputs = rt.run(|core| {
            let done = Arc::clone(&done);
            async move {
                spawn_polite_tasks(4, &done);
                if core == first {
                    coreio::spawn(async {
                        sleep(Duration::from_millis(10)).await;
                        shutdown::handle().expect("inside a runtime").trigger();
                    });
                }
                coreio::shutdown_requested().await;
            }
        });
        assert!(outputs.iter().all(Result::is_ok), "{outputs:?}");
        assert_eq!(done.load(Ordering::SeqCst), 4 * cores);
        let report = rt.shutdown_handle().report().expect("a report");
        // The triggering task finished in the poll that triggered, before its core saw the
        // request: it is not counted.
        assert_eq!(report.finished, 4 * cores, "{report:?}");
        assert_eq!(report.cancelled, 0, "{report:?}");
    }

    fn a_pending_accept_wakes_with_the_shutdown_error_and_serve_ends(backend: Backend) {
        let rt = runtime(backend, 1, LONG);
        let shutdown = rt.shutdown_handle();
        let (addr_tx, addr_rx) = mpsc::channel();
        let client = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || {
                let addr: std::net::SocketAddr = addr_rx.recv().unwrap();
                shutdown.trigger();
                // Wait until the listener has stopped, then connect: never accepted.
                let _: std::net::SocketAddr = addr_rx.recv().unwrap();
                let mut late = std::net::TcpStream::connect(addr).ok()?;
                late.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut buf = [0u8; 8];
                // Reset (or EOF) once the runtime ended and the listener closed.
                Some(late.read(&mut buf).map_or(0, |n| n))
            })
        };
        let outputs = rt.run(|_| {
            let addr_tx = addr_tx.clone();
            async move {
                let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let addr = listener.local_addr().unwrap();
                addr_tx.send(addr).unwrap();
                let err = match listener.accept().await {
                    Ok(_) => panic!("accepted after the shutdown"),
                    Err(err) => err,
                };
                assert!(is_shutdown_error(&err), "unexpected error: {err}");
                assert_eq!(err.kind(), std::io::ErrorKind::Other);
                assert!(err.to_string().contains("shutting down"), "{err}");
                // Every later accept fails at once, and so does `serve`.
                assert!(listener.accept().await.is_err_and(|e| is_shutdown_error(&e)));
                let served = listener.serve(None, |_, _| async {}).await;
                assert!(served.is_err_and(|e| is_shutdown_error(&e)));
                addr_tx.send(addr).unwrap();
                // Give the late client time to land in the backlog.
                sleep(Duration::from_millis(20)).await;
                drop(listener);
            }
        });
        assert!(outputs[0].is_ok(), "{outputs:?}");
        assert_eq!(client.join().unwrap().unwrap_or(0), 0, "the late client got data");
    }

    fn a_pending_unix_accept_wakes_with_the_shutdown_error(backend: Backend) {
        let path = util::TempPath::new("shutdown-accept");
        let path = path.path().to_owned();
        let rt = runtime(backend, 1, LONG);
        let trigger = trigger_later(&rt.shutdown_handle(), Duration::from_millis(10));
        let outputs = rt.run(|_| {
            let path = path.clone();
            async move {
                let listener = coreio::net::UnixListener::bind(&path).unwrap();
                let err = listener.accept().await.expect_err("accepted after the shutdown");
                assert!(is_shutdown_error(&err), "unexpected error: {err}");
            }
        });
        trigger.join().unwrap();
        assert!(outputs[0].is_ok(), "{outputs:?}");
    }

    /// `block_on` has a shutdown of its own, reachable from its tasks: its root returning
    /// after the request lets the other tasks finish.
    fn block_on_drains_after_a_trigger_from_a_task(backend: Backend) {
        let done = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&done);
        let handle = util::block_on(backend, async move {
            spawn_polite_tasks(5, &counted);
            let handle = shutdown::handle().expect("inside a runtime");
            handle.trigger();
            coreio::shutdown_requested().await;
            handle
        });
        assert_eq!(done.load(Ordering::SeqCst), 5, "the root's return cancelled the drain");
        let report = handle.report().unwrap();
        assert_eq!((report.finished, report.cancelled), (5, 0), "{report:?}");
    }

    fn a_task_that_ignores_the_request_is_cancelled_at_the_deadline(backend: Backend) {
        let grace = Duration::from_millis(150);
        let rt = runtime(backend, 1, grace);
        let shutdown = rt.shutdown_handle();
        let drops = Arc::new(AtomicUsize::new(0));
        let trigger = trigger_later(&shutdown, Duration::from_millis(10));
        let started = Instant::now();
        let outputs = rt.run(|_| {
            let drops = Arc::clone(&drops);
            async move {
                let guard = DropCount(Arc::clone(&drops));
                coreio::spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await
                });
                let polite = Arc::new(AtomicUsize::new(0));
                spawn_polite_tasks(3, &polite);
                coreio::shutdown_requested().await;
            }
        });
        trigger.join().unwrap();
        assert!(outputs[0].is_ok(), "{outputs:?}");
        assert!(started.elapsed() >= grace, "cancelled before the deadline");
        assert_eq!(drops.load(Ordering::SeqCst), 1, "the cancelled task's state was not dropped");
        let report = shutdown.report().unwrap();
        assert_eq!((report.finished, report.cancelled), (3, 1), "{report:?}");
        assert!(report.deadline_passed && !report.forced, "{report:?}");
        assert!(report.elapsed >= grace, "{report:?}");
    }

    fn a_root_that_ignores_the_request_is_cancelled_with_timed_out(backend: Backend) {
        let rt = runtime(backend, 1, Duration::from_millis(50));
        let shutdown = rt.shutdown_handle();
        let trigger = trigger_later(&shutdown, Duration::from_millis(10));
        let outputs = rt.run(|_| std::future::pending::<()>());
        trigger.join().unwrap();
        match &outputs[0] {
            Err(coreio::CoreError::Io { error, .. }) => {
                assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
            }
            other => panic!("unexpected output: {other:?}"),
        }
        let report = shutdown.report().unwrap();
        assert_eq!((report.finished, report.cancelled), (0, 0), "roots are not counted");
    }

    fn a_second_trigger_skips_the_wait(backend: Backend) {
        let rt = runtime(backend, two_or_fewer_cores(), LONG);
        let shutdown = rt.shutdown_handle();
        let drops = Arc::new(AtomicUsize::new(0));
        let trigger = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                shutdown.trigger();
                assert!(shutdown.is_requested() && !shutdown.is_forced());
                std::thread::sleep(Duration::from_millis(50));
                shutdown.trigger();
                assert!(shutdown.is_forced());
            })
        };
        let started = Instant::now();
        let outputs = rt.run(|_| {
            let drops = Arc::clone(&drops);
            async move {
                let guard = DropCount(drops);
                coreio::spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await
                });
                coreio::shutdown_requested().await;
            }
        });
        trigger.join().unwrap();
        assert!(started.elapsed() < LONG / 2, "the second trigger did not cut the wait");
        assert!(outputs.iter().all(Result::is_ok), "{outputs:?}");
        assert_eq!(drops.load(Ordering::SeqCst), rt.cores().len());
        let report = shutdown.report().unwrap();
        assert!(report.forced && !report.deadline_passed, "{report:?}");
        assert_eq!(report.cancelled, rt.cores().len(), "{report:?}");
    }

    fn trigger_now_cancels_a_root_with_interrupted(backend: Backend) {
        let rt = runtime(backend, 1, LONG);
        let shutdown = rt.shutdown_handle();
        let trigger = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                shutdown.trigger_now();
            })
        };
        let outputs = rt.run(|_| std::future::pending::<()>());
        trigger.join().unwrap();
        match &outputs[0] {
            Err(coreio::CoreError::Io { error, .. }) => {
                assert_eq!(error.kind(), std::io::ErrorKind::Interrupted, "{error}");
            }
            other => panic!("unexpected output: {other:?}"),
        }
        assert!(shutdown.report().unwrap().forced);
    }

    /// The client has sent its request and the server is in the middle of it when the
    /// shutdown comes: the handler finishes, answers, and the runtime then ends.
    fn a_connection_mid_request_is_answered_before_the_runtime_ends(backend: Backend) {
        let rt = runtime(backend, two_or_fewer_cores(), LONG);
        let shutdown = rt.shutdown_handle();
        let (addr_tx, addr_rx) = mpsc::channel::<std::net::SocketAddr>();
        let (busy_tx, busy_rx) = mpsc::channel::<()>();
        let client = std::thread::spawn(move || {
            let addr = addr_rx.recv().unwrap();
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            stream.write_all(b"GET /slow\n").unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).unwrap();
            answer
        });
        let trigger = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || {
                busy_rx.recv().unwrap();
                shutdown.trigger();
            })
        };
        let first = rt.cores()[0];
        let outputs = rt.run(|core| {
            let (addr_tx, busy_tx) = (addr_tx.clone(), busy_tx.clone());
            async move {
                if core != first {
                    return coreio::shutdown_requested().await;
                }
                let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let stream = match listener.accept().await {
                        Ok((stream, _)) => stream,
                        Err(err) if is_shutdown_error(&err) => return,
                        Err(err) => panic!("accept: {err}"),
                    };
                    let busy_tx = busy_tx.clone();
                    coreio::spawn(async move {
                        let (res, request) = stream.read(Vec::with_capacity(64)).await;
                        assert_eq!(res.unwrap(), 10);
                        assert_eq!(request, b"GET /slow\n");
                        // Mid-request: the shutdown comes now.
                        busy_tx.send(()).unwrap();
                        coreio::shutdown_requested().await;
                        sleep(Duration::from_millis(30)).await;
                        let (res, _) = stream.write_all(b"200 OK\n".to_vec()).await;
                        res.unwrap();
                    });
                }
            }
        });
        trigger.join().unwrap();
        assert!(outputs.iter().all(Result::is_ok), "{outputs:?}");
        assert_eq!(client.join().unwrap(), b"200 OK\n");
        let report = shutdown.report().unwrap();
        assert_eq!((report.finished, report.cancelled), (1, 0), "{report:?}");
    }

    /// Ctrl-C through `trigger_on_ctrl_c`: the first starts the drain, the second forces it.
    fn ctrl_c_twice_triggers_then_forces(backend: Backend) {
        let rt = runtime(backend, 1, LONG);
        let shutdown = rt.shutdown_handle();
        shutdown.trigger_on_ctrl_c().expect("install the SIGINT handler");
        let interrupter = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || {
                // Deliveries the helper thread has not looked at yet coalesce: send until the
                // second one has been seen.
                for _ in 0..2000 {
                    if shutdown.is_forced() {
                        return true;
                    }
                    // SAFETY: kill(2) with this process's own pid and a signal that now has a
                    // handler.
                    unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
                    std::thread::sleep(Duration::from_millis(10));
                }
                false
            })
        };
        let outputs = rt.run(|_| async {
            coreio::spawn(std::future::pending::<()>());
            coreio::shutdown_requested().await;
        });
        assert!(interrupter.join().unwrap(), "two Ctrl-Cs did not force the shutdown");
        assert!(outputs[0].is_ok(), "{outputs:?}");
        let report = shutdown.report().unwrap();
        assert!(report.forced, "{report:?}");
        assert_eq!(report.cancelled, 1, "{report:?}");
    }

    /// A wait registered on one core, then sent to another (or to a thread) and awaited
    /// there, still completes, and leaves the first core's other waiters alone.
    fn a_wait_moved_to_another_core_still_completes(backend: Backend) {
        let rt = runtime(backend, two_or_fewer_cores(), LONG);
        let shutdown = rt.shutdown_handle();
        let first = rt.cores()[0];
        let last = *rt.cores().last().unwrap();
        let (tx, rx) = coreio::mesh::channel::<shutdown::ShutdownRequested>(1);
        let rx = std::sync::Mutex::new(Some(rx));
        let trigger = trigger_later(&shutdown, Duration::from_millis(30));
        let outputs = rt.run(|core| {
            let tx = tx.clone();
            let rx = if core == last { rx.lock().unwrap().take() } else { None };
            async move {
                if core == first {
                    let mut moved = coreio::shutdown_requested();
                    util::poll_once_pending(Pin::new(&mut moved));
                    let stays = coreio::spawn(coreio::shutdown_requested());
                    tx.send(moved).await.unwrap();
                    stays.await.unwrap();
                }
                if let Some(mut rx) = rx {
                    rx.recv().await.unwrap().await;
                }
                coreio::shutdown_requested().await;
            }
        });
        trigger.join().unwrap();
        assert!(outputs.iter().all(Result::is_ok), "{outputs:?}");
    }

    fn a_handle_used_after_the_runtime_ended_is_harmless(backend: Backend) {
        let rt = runtime(backend, 1, LONG);
        let shutdown = rt.shutdown_handle();
        let outputs = rt.run(|_| async { 7 });
        assert_eq!(*outputs[0].as_ref().unwrap(), 7);
        // No trigger during that run: no report.
        assert_eq!(shutdown.report(), None);
        shutdown.trigger();
        assert!(shutdown.is_requested() && !shutdown.is_forced());
        assert_eq!(shutdown.report(), None, "no run was shut down");
        // The request stays: a later run starts shutting down, and its roots see it at once.
        let outputs = rt.run(|_| async {
            coreio::shutdown_requested().await;
            shutdown::is_requested()
        });
        assert!(*outputs[0].as_ref().unwrap());
        assert!(shutdown.report().is_some());
        drop(rt);
        shutdown.trigger();
        shutdown.trigger_now();
        assert!(shutdown.is_forced());
        // And a handle awaited outside any runtime is ready.
        futures_ready(shutdown.requested());
    }

    fn run_each_gives_every_core_its_own_value(backend: Backend) {
        let rt = runtime(backend, two_or_fewer_cores(), LONG);
        let roots = rt.cores().iter().enumerate().map(|(index, _)| {
            // Not `Sync`, not `Clone`: moved to its core only.
            let own = std::cell::Cell::new(index * 100);
            move |core: CoreId| async move {
                assert_eq!(coreio::current_core(), Some(core));
                own.get() + 1
            }
        });
        let outputs = rt.run_each(roots);
        let values: Vec<usize> = outputs.into_iter().map(Result::unwrap).collect();
        let expected: Vec<usize> = (0..rt.cores().len()).map(|i| i * 100 + 1).collect();
        assert_eq!(values, expected);
    }

    fn run_each_with_the_wrong_number_of_roots_runs_nothing(backend: Backend) {
        let rt = runtime(backend, 1, LONG);
        let ran = Arc::new(AtomicUsize::new(0));
        let root = |ran: Arc<AtomicUsize>| move |_core: CoreId| async move {
            ran.fetch_add(1, Ordering::SeqCst);
        };
        let outputs = rt.run_each([root(Arc::clone(&ran)), root(Arc::clone(&ran))]);
        assert_eq!(outputs.len(), 1);
        match &outputs[0] {
            Err(coreio::CoreError::Io { error, .. }) => {
                assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
                assert!(error.to_string().contains("one root per core"), "{error}");
            }
            other => panic!("unexpected output: {other:?}"),
        }
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    fn without_a_shutdown_a_returning_root_still_ends_its_core(backend: Backend) {
        let rt = runtime(backend, 1, LONG);
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let outputs = rt.run(|_| {
            let guard = DropCount(Arc::clone(&drops));
            async move {
                coreio::spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await
                });
            }
        });
        assert!(outputs[0].is_ok());
        assert!(started.elapsed() < LONG / 2);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(rt.shutdown_handle().report(), None);
    }
}

/// Polls `future` once outside any runtime and checks that it is ready.
fn futures_ready<F: std::future::Future>(future: F) {
    let future = std::pin::pin!(future);
    let polled = future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
    assert!(polled.is_ready());
}
