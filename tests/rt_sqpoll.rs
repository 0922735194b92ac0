//! `Builder::sqpoll`: a ring whose submission queue a kernel thread polls behaves as any
//! other: sockets, timers, files, a wake from another core, and I/O after the thread went to
//! sleep (its idle time passed), which the next submission must wake. On epoll the setting
//! does nothing; under `COREIO_BACKEND=epoll` these run there and check the same behaviour.

#[macro_use]
mod util;

use std::time::{Duration, Instant};

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
