//! The cross-core mailbox: `mesh::submit_to` and `submit_to_all` — where the work runs, what it
//! returns, and each way it can fail (no such core, a stopped core, a panic, no runtime).

#[macro_use]
mod util;

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use coreio::mesh::{self, MailboxError};
use coreio::sync::Event;
use coreio::{Backend, Builder, CoreId, Runtime};

use util::{block_on, two_or_fewer_cores};

fn runtime(backend: Backend) -> Runtime {
    Builder::new()
        .backend(backend)
        .cores(two_or_fewer_cores())
        .build()
        .expect("the runtime builds")
}

/// The core after `core` in `cores`, wrapping around (itself on a one-core runtime).
fn next_core(cores: &[CoreId], core: CoreId) -> CoreId {
    let at = cores.iter().position(|&c| c == core).unwrap();
    cores[(at + 1) % cores.len()]
}

thread_local! {
    static VISITS: Cell<u64> = const { Cell::new(0) };
}

both_backends! {
    fn work_runs_on_the_target_core_and_its_output_comes_back(backend: Backend) {
        let rt = runtime(backend);
        let cores = rt.cores().to_vec();
        let finish = Finish::new(cores.len());
        let outputs = rt.run(|core| {
            let target = next_core(&cores, core);
            let finish = finish.clone();
            let cores = cores.clone();
            async move {
                util::assert_backend(backend);
                assert_eq!(mesh::cores(), cores);
                // The future is !Send (it holds an Rc across an await): only the closure and
                // the output cross cores.
                let answer = mesh::submit_to(target, || async {
                    let local = Rc::new(21);
                    coreio::yield_now().await;
                    (coreio::current_core().unwrap(), *local * 2)
                })
                .await
                .unwrap();
                assert_eq!(answer, (target, 42));
                finish.done_and_wait().await;
            }
        });
        for output in outputs {
            output.unwrap();
        }
    }

    fn work_submitted_to_the_calling_core_runs_there(backend: Backend) {
        let out = block_on(backend, async {
            let me = coreio::current_core().unwrap();
            assert_eq!(mesh::cores(), vec![me]);
            mesh::submit_to(me, move || async move { coreio::current_core() == Some(me) }).await
        });
        assert!(out.unwrap());
    }

    fn submit_to_all_runs_once_on_every_core_in_order(backend: Backend) {
        let rt = runtime(backend);
        let cores = rt.cores().to_vec();
        let first = cores[0];
        let finish = Finish::new(cores.len());
        let outputs = rt.run(|core| {
            let finish = finish.clone();
            async move {
                let mut answers = Vec::new();
                if core == first {
                    answers = mesh::submit_to_all(|| async {
                        VISITS.with(|v| v.set(v.get() + 1));
                        (coreio::current_core().unwrap(), VISITS.with(Cell::get))
                    })
                    .await
                    .into_iter()
                    .map(Result::unwrap)
                    .collect();
                }
                finish.done_and_wait().await;
                answers
            }
        });
        let answers = outputs.into_iter().next().unwrap().unwrap();
        let expected: Vec<(CoreId, u64)> = cores.iter().map(|&core| (core, 1)).collect();
        assert_eq!(answers, expected);
    }

    fn a_core_outside_the_runtime_is_refused(backend: Backend) {
        let err = block_on(backend, async {
            mesh::submit_to(CoreId(100_000), || async {}).await.unwrap_err()
        });
        assert!(matches!(err, MailboxError::NoSuchCore(CoreId(100_000))), "{err}");
        assert!(err.to_string().contains("not a core of this runtime"), "{err}");
    }

    fn a_panic_in_the_work_is_reported_and_the_core_goes_on(backend: Backend) {
        let rt = runtime(backend);
        let cores = rt.cores().to_vec();
        let finish = Finish::new(cores.len());
        let outputs = rt.run(|core| {
            let target = next_core(&cores, core);
            let finish = finish.clone();
            async move {
                let in_closure = mesh::submit_to(target, || -> std::future::Ready<()> {
                    panic!("closure boom")
                })
                .await
                .unwrap_err();
                assert_eq!(in_closure.panic_message(), Some("closure boom"));
                let in_future = mesh::submit_to(target, || async {
                    coreio::yield_now().await;
                    panic!("future boom")
                })
                .await
                .unwrap_err();
                assert!(matches!(in_future, MailboxError::Panicked { core, .. } if core == target));
                assert!(in_future.to_string().contains("future boom"), "{in_future}");
                // The target keeps serving.
                let five = mesh::submit_to(target, || async { 5 }).await.unwrap();
                finish.done_and_wait().await;
                five
            }
        });
        for output in outputs {
            assert_eq!(output.unwrap(), 5);
        }
    }

    fn work_pending_on_a_core_that_stops_fails_with_core_stopped(backend: Backend) {
        if two_or_fewer_cores() < 2 {
            return;
        }
        let rt = runtime(backend);
        let (first, second) = (rt.cores()[0], rt.cores()[1]);
        let started = Event::new();
        let stop_second = Event::new();
        let dropped = Arc::new(AtomicUsize::new(0));
        let outputs = rt.run(|core| {
            let (started, stop_second, dropped) =
                (started.clone(), stop_second.clone(), dropped.clone());
            async move {
                if core == second {
                    // Park until told to stop; the submitted work runs meanwhile.
                    stop_second.wait().await;
                    return None;
                }
                assert_eq!(core, first);
                let signal = started.clone();
                let never = mesh::submit_to(second, move || async move {
                    let _guard = CountDrop(dropped);
                    signal.set();
                    std::future::pending::<()>().await
                });
                started.wait().await;
                stop_second.set();
                let stopped = never.await.unwrap_err();
                // Once the core is gone, new posts are refused at once.
                let refused = mesh::submit_to(second, || async {}).await.unwrap_err();
                Some((stopped, refused))
            }
        });
        let mut outputs = outputs.into_iter();
        let (stopped, refused) = outputs.next().unwrap().unwrap().unwrap();
        assert!(matches!(stopped, MailboxError::CoreStopped(c) if c == second), "{stopped}");
        assert!(matches!(refused, MailboxError::CoreStopped(c) if c == second), "{refused}");
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "the pending work was dropped once");
        assert!(outputs.next().unwrap().unwrap().is_none());
    }

    fn many_submissions_each_way_all_arrive(backend: Backend) {
        const PER_CORE: u64 = 20_000;
        let rt = runtime(backend);
        let cores = rt.cores().to_vec();
        let finish = Finish::new(cores.len());
        let outputs = rt.run(|core| {
            let target = next_core(&cores, core);
            let finish = finish.clone();
            async move {
                // Keep a window of submissions in flight, as a proxy would.
                let mut window = std::collections::VecDeque::new();
                let mut sum = 0;
                for i in 0..PER_CORE {
                    window.push_back(mesh::submit_to(target, move || async move { i }));
                    if window.len() == 64 {
                        sum += window.pop_front().unwrap().await.unwrap();
                    }
                }
                for submission in window {
                    sum += submission.await.unwrap();
                }
                // Stay up until the other core has had all its answers from this one.
                finish.done_and_wait().await;
                sum
            }
        });
        for output in outputs {
            assert_eq!(output.unwrap(), PER_CORE * (PER_CORE - 1) / 2);
        }
    }
}

/// A barrier for root futures: a core that stops refuses further work, so cores that serve
/// each other stay up until all are done.
#[derive(Clone)]
struct Finish {
    left: Arc<AtomicUsize>,
    all_done: Event,
}

impl Finish {
    fn new(cores: usize) -> Finish {
        Finish {
            left: Arc::new(AtomicUsize::new(cores)),
            all_done: Event::new(),
        }
    }

    async fn done_and_wait(&self) {
        if self.left.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.all_done.set();
        }
        self.all_done.wait().await;
    }
}

struct CountDrop(Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn outside_a_runtime_there_is_no_mesh() {
    assert!(mesh::cores().is_empty());
    let submission = pin!(mesh::submit_to(CoreId(0), || async { 1 }));
    let mut cx = Context::from_waker(Waker::noop());
    match submission.poll(&mut cx) {
        Poll::Ready(Err(MailboxError::NoRuntime)) => {}
        other => panic!("expected NoRuntime, got {:?}", other.map(|r| r.map(|_| ()))),
    }
    let all = pin!(mesh::submit_to_all(|| async { 1 }));
    assert!(matches!(all.poll(&mut cx), Poll::Ready(v) if v.is_empty()));
}

#[test]
fn handles_have_the_right_auto_traits() {
    fn is_send<T: Send>() {}
    is_send::<MailboxError>();
    is_send::<mesh::Submission<u32>>();
}
