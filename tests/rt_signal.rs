//! `coreio::signal`: deliveries reach every stream that asked, on every core and on both
//! backends; Ctrl-C is caught instead of killing the process; kinds that must not be caught
//! are refused. Each test sends signals to its own process (nextest runs every test in a
//! process of its own; under `cargo test` the kinds are kept apart per test).

#[macro_use]
mod util;

use std::io;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use coreio::signal::{self, SignalKind};

/// The most a delivery may take to arrive; only a lost one gets there.
const LIMIT: Duration = Duration::from_secs(30);

fn raise(kind: SignalKind) {
    // SAFETY: kill(2) with this process's own pid; the kind has a handler by now.
    let sent = unsafe { libc::kill(libc::getpid(), kind.as_raw()) };
    assert_eq!(sent, 0, "kill failed: {}", io::Error::last_os_error());
}

both_backends! {
    fn a_delivery_reaches_every_stream_on_every_core(backend: Backend) {
        let cores = util::two_or_fewer_cores();
        let kind = SignalKind::user_defined1();
        // Made before the runtime starts, handed to one task per core.
        let streams: Mutex<Vec<_>> =
            Mutex::new((0..cores).map(|_| signal::signal(kind).unwrap()).collect());
        let rt = coreio::Builder::new().backend(backend).cores(cores).build().unwrap();
        let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let results = rt.run(|_core| {
            let mut stream = streams.lock().unwrap().pop().unwrap();
            let started = started.clone();
            async move {
                // The last core to start sends the signal; every core must see it.
                if started.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == cores {
                    raise(kind);
                }
                coreio::time::timeout(LIMIT, stream.recv()).await
            }
        });
        for result in results {
            assert_eq!(result.unwrap(), Ok(Some(())), "a core missed the signal");
        }
    }

    fn a_stream_sees_deliveries_after_it_was_made_and_each_recv_waits_for_the_next(backend: Backend) {
        let kind = SignalKind::user_defined2();
        util::block_on(backend, async move {
            let mut first = signal::signal(kind).unwrap();
            raise(kind);
            coreio::time::timeout(LIMIT, first.recv()).await.unwrap();

            // Made after that delivery was dispatched: nothing yet.
            let mut second = signal::signal(kind).unwrap();
            let mut cx = Context::from_waker(Waker::noop());
            assert_eq!(second.poll_recv(&mut cx), Poll::Pending);
            assert_eq!(first.poll_recv(&mut cx), Poll::Pending, "one item per delivery seen");

            raise(kind);
            coreio::time::timeout(LIMIT, second.recv()).await.unwrap();
            coreio::time::timeout(LIMIT, first.recv()).await.unwrap();
        });
    }

    fn ctrl_c_is_caught_instead_of_killing_the_process(backend: Backend) {
        util::block_on(backend, async move {
            let waiting = coreio::spawn(signal::ctrl_c());
            // Let the task start listening before the signal is sent.
            for _ in 0..1000 {
                if signal_installed(SignalKind::interrupt()) {
                    break;
                }
                coreio::yield_now().await;
            }
            assert!(signal_installed(SignalKind::interrupt()), "ctrl_c never started listening");
            raise(SignalKind::interrupt());
            let caught = coreio::time::timeout(LIMIT, waiting).await;
            assert!(matches!(caught, Ok(Ok(Ok(())))), "{caught:?}");
        });
    }
}

/// Whether `kind` has a handler that is not the default one.
fn signal_installed(kind: SignalKind) -> bool {
    // SAFETY: an all-zero sigaction is valid storage for the old action.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one into `old`.
    unsafe { libc::sigaction(kind.as_raw(), std::ptr::null(), &mut old) };
    old.sa_sigaction != libc::SIG_DFL
}

#[test]
fn kinds_that_must_not_be_caught_are_refused() {
    for signum in [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        0,
        -1,
        65,
    ] {
        let err = SignalKind::from_raw(signum).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{signum}");
    }
    assert_eq!(
        SignalKind::from_raw(libc::SIGUSR1).unwrap(),
        SignalKind::user_defined1()
    );
    assert!(
        SignalKind::from_raw(libc::SIGRTMIN()).is_ok(),
        "real-time signals are allowed"
    );
    assert_eq!(format!("{:?}", SignalKind::terminate()), "SIGTERM");
}
