//! `Builder::sqpoll`: a ring whose submission queue a kernel thread polls behaves as any
//! other: sockets, timers, files, a wake from another core, and I/O after the thread went to
//! sleep (its idle time passed), which the next submission must wake. On epoll the setting
//! does nothing; under `COREIO_BACKEND=epoll` these run there and check the same behaviour.
//! `Builder::sqpoll_cpus` binds each core's polling thread to the CPU asked for,
//! `Builder::sqpoll_shared` makes one thread poll every core's ring, and bad input is refused
//! at build.

#[macro_use]
mod util;

use std::time::{Duration, Instant};

use coreio::stats::RingStats;
use coreio::time::{sleep, timeout};
use coreio::{Backend, Builder, mesh};

use util::{check_pattern, pair, pattern};

const PATIENCE: Duration = Duration::from_secs(20);

fn builder(backend: Backend) -> Builder {
    Builder::new()
        .backend(backend)
        .sqpoll(Duration::from_millis(5))
}

/// Whether the current core's ring has a polling thread (false on epoll, or where the kernel
/// refused one).
fn sqpoll_on() -> bool {
    coreio::stats::ring().is_some_and(|ring| ring.sqpoll)
}

/// This process's submission-queue polling threads: for each, the thread id in its name
/// (`iou-sqp-TID`: the thread that made the ring, a core's thread here) and the CPUs it may run
/// on, as `/proc` lists them (`Cpus_allowed_list`); sorted.
fn polling_threads() -> Vec<(String, String)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else {
            continue; // The thread ended meanwhile.
        };
        let Some(maker) = comm.trim().strip_prefix("iou-sqp-") else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(task.join("status")) else {
            continue;
        };
        let allowed = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .expect("a task's status lists its CPUs");
        threads.push((maker.to_owned(), allowed.trim().to_owned()));
    }
    threads.sort();
    threads
}

/// The CPUs of [`polling_threads`], sorted.
fn polling_threads_cpus() -> Vec<String> {
    let mut cpus: Vec<String> = polling_threads()
        .into_iter()
        .map(|(_, cpus)| cpus)
        .collect();
    cpus.sort();
    cpus
}

both_backends! {
    fn a_polling_thread_runs_on_the_cpu_asked_for(backend: Backend) {
        // The last CPU the process may use: on a machine of several, not the CPU a
        // one-core runtime's thread would pick first.
        let cpu = *util::allowed_cpus().last().unwrap();
        builder(backend)
            .sqpoll_cpus([cpu])
            .block_on(async move {
                util::assert_backend(backend);
                if !util::on_uring() {
                    assert!(polling_threads_cpus().is_empty(), "a polling thread on epoll");
                    return;
                }
                if !sqpoll_on() {
                    eprintln!("note: this kernel refused SQPOLL; nothing to bind");
                    return;
                }
                assert_eq!(coreio::stats::ring().unwrap().sqpoll_cpu, Some(cpu));
                // It serves the ring as an unbound one does. That it ran at all also means it
                // named and bound itself: the kernel's thread does both as it starts.
                let (client, server) = pair().await;
                let (res, _) = server.write_all(pattern(3, 0, 5000)).await;
                res.unwrap();
                let (res, buf) =
                    timeout(PATIENCE, client.read_exact(Vec::with_capacity(5000))).await.unwrap();
                res.unwrap();
                check_pattern(3, 0, 0, &buf);
                assert_eq!(polling_threads_cpus(), vec![cpu.to_string()]);
            })
            .unwrap();
    }
}

/// One socket round trip on the current core: the ring's polling thread picks the
/// submissions up, so it has started (and named itself) once this returns.
async fn round_trip(conn: u64) {
    let (client, server) = pair().await;
    let (res, _) = server.write_all(pattern(conn, 0, 2000)).await;
    res.unwrap();
    let (res, buf) = timeout(PATIENCE, client.read_exact(Vec::with_capacity(2000)))
        .await
        .unwrap();
    res.unwrap();
    check_pattern(conn, 0, 0, &buf);
}

/// What a run of [`polling_threads_of_a_run`] saw.
struct RunSeen {
    /// Each core's ring counters (`None` on epoll) and its thread's id.
    cores: Vec<(Option<RingStats>, libc::pid_t)>,
    /// The process's polling threads while every core was running ([`polling_threads`]).
    threads: Vec<(String, String)>,
}

/// Runs a two-core (or one-core) runtime from `builder`, a round trip on each core, and
/// reports what each core's ring says and which polling threads the process had meanwhile.
fn polling_threads_of_a_run(builder: Builder) -> RunSeen {
    let rt = builder.cores(util::two_or_fewer_cores()).build().unwrap();
    let cores = rt.cores().to_vec();
    let (first, last) = (cores[0], *cores.last().unwrap());
    let finish = coreio::sync::Event::new();
    let results = rt.run(move |core| {
        let finish = finish.clone();
        async move {
            if core != first {
                finish.wait().await;
                return None;
            }
            round_trip(4).await;
            let mut cores = vec![(coreio::stats::ring(), util::gettid())];
            if last != first {
                let other = mesh::submit_to(last, move || async move {
                    round_trip(5).await;
                    (coreio::stats::ring(), util::gettid())
                });
                cores.push(other.await.unwrap());
            }
            // Every core is still running: every ring's thread, if any, is alive.
            let threads = polling_threads();
            finish.set();
            Some(RunSeen { cores, threads })
        }
    });
    results.into_iter().next().unwrap().unwrap().unwrap()
}

/// Runs two cores (or one) with their polling threads bound to `cpus` and checks the i-th
/// core's thread runs on the i-th of them, in turn: in what the rings report and in the
/// affinity the kernel gave the thread that core's ring made. One run per test: the threads of
/// a ring that is gone end a little later, in the kernel's time.
fn check_bound_threads(backend: Backend, cpus: Vec<usize>) {
    let seen = polling_threads_of_a_run(builder(backend).sqpoll_cpus(cpus.clone()));
    if seen.cores[0].0.is_none() {
        assert!(seen.threads.is_empty(), "a polling thread on epoll");
        return;
    }
    if !seen.cores.iter().all(|(ring, _)| ring.unwrap().sqpoll) {
        eprintln!("note: this kernel refused SQPOLL; nothing to bind");
        return;
    }
    let mut expected = Vec::new();
    for (i, (ring, tid)) in seen.cores.iter().enumerate() {
        let cpu = cpus[i % cpus.len()];
        assert_eq!(ring.unwrap().sqpoll_cpu, Some(cpu), "core {i}");
        expected.push((tid.to_string(), cpu.to_string()));
    }
    expected.sort();
    assert_eq!(seen.threads, expected, "sqpoll_cpus {cpus:?}");
}

/// Each core's `(sqpoll, sqpoll_shared)`, `None` on epoll, and how many polling threads there
/// were.
fn sqpoll_flags(seen: &RunSeen) -> (Vec<Option<(bool, bool)>>, usize) {
    let flags = seen
        .cores
        .iter()
        .map(|(ring, _)| ring.map(|ring| (ring.sqpoll, ring.sqpoll_shared)))
        .collect();
    (flags, seen.threads.len())
}

both_backends! {
    fn each_core_s_polling_thread_takes_its_own_cpu_in_turn(backend: Backend) {
        // Two cores (or one), their threads bound in the reverse order of the cores' CPUs.
        let cores = util::allowed_cpus()[..util::two_or_fewer_cores()].to_vec();
        check_bound_threads(backend, cores.iter().rev().copied().collect());
    }

    fn a_list_shorter_than_the_cores_starts_over(backend: Backend) {
        check_bound_threads(backend, vec![util::allowed_cpus()[0]]);
    }

    fn one_polling_thread_serves_every_core_when_shared(backend: Backend) {
        let (flags, threads) =
            sqpoll_flags(&polling_threads_of_a_run(builder(backend).sqpoll_shared(true)));
        if flags[0].is_none() {
            assert_eq!(threads, 0, "a polling thread on epoll");
            return;
        }
        if !flags[0].unwrap().0 {
            eprintln!("note: this kernel refused SQPOLL; nothing to share");
            return;
        }
        // The first core's ring owns the thread; every other core's ring shares it.
        let expected: Vec<_> =
            (0..flags.len()).map(|i| Some((true, i > 0))).collect();
        assert_eq!(flags, expected);
        assert_eq!(threads, 1, "cores {}, flags {flags:?}", flags.len());
    }

    fn without_sharing_each_core_has_its_own_polling_thread(backend: Backend) {
        let (flags, threads) = sqpoll_flags(&polling_threads_of_a_run(builder(backend)));
        if flags[0].is_none() {
            assert_eq!(threads, 0, "a polling thread on epoll");
            return;
        }
        if !flags[0].unwrap().0 {
            return; // This kernel refused SQPOLL.
        }
        assert!(flags.iter().all(|f| *f == Some((true, false))), "{flags:?}");
        assert_eq!(threads, flags.len());
    }
}

#[test]
fn bad_polling_thread_cpus_are_refused() {
    let polled = || Builder::new().cores(1).sqpoll(Duration::from_millis(5));
    let cases = [
        (polled().sqpoll_cpus([]), "at least one CPU"),
        (
            polled().sqpoll_cpus([0, 100_000]),
            "CPU 100000 does not exist",
        ),
        (
            Builder::new().cores(1).sqpoll_cpus([0]),
            "Builder::sqpoll, which is not set",
        ),
        (
            Builder::new().cores(1).sqpoll_shared(true),
            "Builder::sqpoll, which is not set",
        ),
        (
            polled().sqpoll_shared(true).sqpoll_cpus([0, 0]),
            "one polling thread, on one CPU",
        ),
    ];
    for (builder, expected) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains(expected), "{err}");
    }
    // block_on checks the same settings.
    let err = polled()
        .sqpoll_cpus([100_000])
        .block_on(async {})
        .unwrap_err();
    assert!(err.to_string().contains("sqpoll_cpus"), "{err}");
}

both_backends! {
    fn sockets_timers_and_files_work_with_a_polling_thread(backend: Backend) {
        builder(backend)
            .block_on(async move {
                util::assert_backend(backend);
                if util::on_uring() && !sqpoll_on() {
                    // Still worth running: the fallback ring must behave the same.
                    eprintln!("note: this kernel refused SQPOLL; testing the ring without it");
                }
                let (client, server) = pair().await;
                for round in 0..50 {
                    let (res, _) = server.write_all(pattern(1, round, 3000)).await;
                    res.unwrap();
                    let (res, buf) = timeout(PATIENCE, client.read_exact(Vec::with_capacity(3000)))
                        .await
                        .unwrap();
                    res.unwrap();
                    check_pattern(1, round, 0, &buf);
                }
                let started = Instant::now();
                sleep(Duration::from_millis(20)).await;
                assert!(started.elapsed() >= Duration::from_millis(20));
                let dir = util::TempDir::new("sqpoll");
                let path = dir.join("file");
                coreio::fs::write(&path, b"polled".to_vec()).await.unwrap();
                assert_eq!(coreio::fs::read(&path).await.unwrap(), b"polled");
            })
            .unwrap();
    }

    fn io_after_the_polling_thread_slept_wakes_it(backend: Backend) {
        builder(backend)
            .block_on(async move {
                let (client, server) = pair().await;
                for round in 0..5 {
                    // Well past the 5 ms idle time: the thread sleeps, and the write below
                    // must wake it or never be submitted.
                    std::thread::sleep(Duration::from_millis(30));
                    let (res, _) = server.write_all(pattern(2, round, 100)).await;
                    res.unwrap();
                    let (res, buf) = timeout(PATIENCE, client.read_exact(Vec::with_capacity(100)))
                        .await
                        .expect("a submission after the thread slept was never made");
                    res.unwrap();
                    check_pattern(2, round, 0, &buf);
                }
            })
            .unwrap();
    }

    fn another_core_wakes_a_core_with_a_polling_thread(backend: Backend) {
        let rt = builder(backend).cores(util::two_or_fewer_cores()).build().unwrap();
        let cores = rt.cores().to_vec();
        let (first, last) = (cores[0], *cores.last().unwrap());
        let finish = coreio::sync::Event::new();
        let results = rt.run(move |core| {
            let finish = finish.clone();
            async move {
                let mut sum = 0;
                if core == first {
                    for round in 0..20u64 {
                        // The other core sleeps between rounds: each message must wake it.
                        sleep(Duration::from_millis(2)).await;
                        sum += mesh::submit_to(last, move || async move { round * 2 })
                            .await
                            .unwrap();
                    }
                    finish.set();
                }
                finish.wait().await;
                sum
            }
        });
        let sums: Vec<u64> = results.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(sums[0], (0..20).map(|r| r * 2).sum::<u64>());
    }
}

#[test]
fn a_bad_idle_time_is_refused() {
    for idle in [Duration::ZERO, Duration::from_secs(11)] {
        let err = Builder::new().sqpoll(idle).build().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("sqpoll"), "{err}");
    }
}
