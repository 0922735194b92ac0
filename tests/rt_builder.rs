//! `Builder` validation (every bad input is an `InvalidInput` error with a message, never a
//! panic), the `COREIO_BACKEND` override, and `block_on`.

#[macro_use]
mod util;

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use coreio::{Backend, Builder, MAX_RING_ENTRIES};

/// Asserts that `result` is an `InvalidInput` error whose message contains every one of
/// `words`.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: io::Result<T>, words: &[&str]) {
    let err = result.expect_err("bad input was accepted");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    let msg = err.to_string();
    for word in words {
        assert!(
            msg.contains(word),
            "message {msg:?} does not mention {word:?}"
        );
    }
}

/// `build()` must return the error rather than panic.
fn build(builder: Builder) -> io::Result<coreio::Runtime> {
    catch_unwind(AssertUnwindSafe(|| builder.build())).expect("Builder::build panicked")
}

/// `block_on()` with a bad setting must return the error rather than panic or run the future.
fn block_on_err(builder: Builder) -> io::Result<()> {
    catch_unwind(AssertUnwindSafe(|| {
        builder.block_on(async { panic!("the future ran despite a bad setting") })
    }))
    .expect("Builder::block_on panicked")
}

#[test]
fn zero_cores_is_invalid() {
    assert_invalid(build(Builder::new().cores(0)), &["0"]);
}

#[test]
fn more_cores_than_allowed_is_invalid() {
    let allowed = util::allowed_cpus().len();
    assert_invalid(
        build(Builder::new().cores(allowed + 1)),
        &[&(allowed + 1).to_string()],
    );
    assert_invalid(build(Builder::new().cores(100_000)), &["100000"]);
    assert_invalid(build(Builder::new().cores(usize::MAX)), &[]);
}

#[test]
fn empty_core_ids_is_invalid() {
    assert_invalid(build(Builder::new().core_ids([])), &["core"]);
}

#[test]
fn unknown_core_id_is_invalid() {
    assert_invalid(build(Builder::new().core_ids([9999])), &["9999"]);
    assert_invalid(build(Builder::new().core_ids([usize::MAX])), &[]);
}

#[test]
fn duplicate_core_ids_are_invalid() {
    let first = util::allowed_cpus()[0];
    assert_invalid(
        build(Builder::new().core_ids([first, first])),
        &[&first.to_string(), "twice"],
    );
}

#[test]
fn valid_core_ids_are_accepted_in_order() {
    let allowed = util::allowed_cpus();
    let ids: Vec<usize> = allowed.iter().rev().take(2).copied().collect();
    let rt = build(Builder::new().backend(Backend::Epoll).core_ids(ids.clone())).unwrap();
    assert_eq!(rt.cores().iter().map(|c| c.0).collect::<Vec<_>>(), ids);
}

#[test]
fn core_outside_the_affinity_mask_is_invalid() {
    const ROLE: &str = "affinity";
    if util::child_role().as_deref() == Some(ROLE) {
        let allowed = util::allowed_cpus();
        if allowed.len() < 2 {
            println!("note: this process may use one CPU only; nothing to check");
            return;
        }
        // Restrict this thread (the one that builds) to the first allowed CPU.
        // SAFETY: an all-zero `cpu_set_t` is a valid, empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `allowed[0]` is below CPU_SETSIZE (it came from a cpu_set_t).
        unsafe { libc::CPU_SET(allowed[0], &mut set) };
        // SAFETY: `set` is a valid cpu_set_t of the size passed.
        let res =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        assert_eq!(res, 0, "sched_setaffinity: {}", io::Error::last_os_error());
        assert_eq!(util::allowed_cpus(), [allowed[0]]);
        assert_invalid(
            build(Builder::new().core_ids([allowed[1]])),
            &[&allowed[1].to_string(), "affinity"],
        );
        // Asking for more cores than the mask has is an error too.
        assert_invalid(build(Builder::new().cores(2)), &["2"]);
        // The allowed CPU still works.
        let rt = build(
            Builder::new()
                .backend(Backend::Epoll)
                .core_ids([allowed[0]]),
        )
        .unwrap();
        assert_eq!(rt.cores()[0].0, allowed[0]);
        return;
    }
    let out = util::run_child(
        "core_outside_the_affinity_mask_is_invalid",
        ROLE,
        &[],
        Duration::from_secs(60),
    );
    util::assert_child_ok(&out, "affinity child");
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn ring_entries_out_of_range_are_invalid() {
    for entries in [0, MAX_RING_ENTRIES + 1, 40_000, u32::MAX] {
        for backend in [Backend::Auto, Backend::Epoll, Backend::IoUring] {
            let builder = Builder::new()
                .cores(1)
                .backend(backend)
                .ring_entries(entries);
            assert_invalid(
                build(builder.clone()),
                &["ring_entries", &entries.to_string()],
            );
            assert_invalid(block_on_err(builder), &["ring_entries"]);
        }
    }
}

#[test]
fn event_interval_zero_is_invalid() {
    for backend in [Backend::Auto, Backend::Epoll, Backend::IoUring] {
        let builder = Builder::new().cores(1).backend(backend).event_interval(0);
        assert_invalid(build(builder.clone()), &["event_interval"]);
        assert_invalid(block_on_err(builder), &["event_interval"]);
    }
}

#[test]
fn remote_queue_interval_zero_is_invalid() {
    for backend in [Backend::Auto, Backend::Epoll, Backend::IoUring] {
        let builder = Builder::new()
            .cores(1)
            .backend(backend)
            .remote_queue_interval(0);
        assert_invalid(build(builder.clone()), &["remote_queue_interval", "0"]);
        assert_invalid(block_on_err(builder), &["remote_queue_interval"]);
    }
    let default = coreio::DEFAULT_REMOTE_QUEUE_INTERVAL;
    build(Builder::new().cores(1).remote_queue_interval(default)).unwrap();
}

#[test]
fn spin_before_park_over_the_limit_is_invalid() {
    let too_long = coreio::MAX_SPIN_BEFORE_PARK + Duration::from_nanos(1);
    let builder = Builder::new().cores(1).spin_before_park(too_long);
    assert_invalid(build(builder.clone()), &["spin_before_park"]);
    assert_invalid(block_on_err(builder), &["spin_before_park"]);
    build(
        Builder::new()
            .cores(1)
            .spin_before_park(coreio::MAX_SPIN_BEFORE_PARK),
    )
    .unwrap();
}

#[test]
fn extreme_valid_settings_are_accepted() {
    let rt = build(
        Builder::new()
            .cores(1)
            .backend(Backend::Epoll)
            .ring_entries(MAX_RING_ENTRIES)
            .event_interval(u32::MAX)
            .remote_queue_interval(u32::MAX),
    )
    .unwrap();
    assert_eq!(rt.cores().len(), 1);
    let rt = build(
        Builder::new()
            .cores(1)
            .ring_entries(1)
            .event_interval(1)
            .remote_queue_interval(1),
    )
    .unwrap();
    assert_ne!(
        rt.backend(),
        Backend::Auto,
        "build resolves Auto to a concrete backend"
    );
}

#[test]
fn unknown_coreio_backend_env_is_invalid() {
    const ROLE: &str = "bogus-backend";
    if util::child_role().as_deref() == Some(ROLE) {
        assert_eq!(std::env::var("COREIO_BACKEND").unwrap(), "bogus");
        for backend in [Backend::Auto, Backend::Epoll, Backend::IoUring] {
            let builder = Builder::new().cores(1).backend(backend);
            assert_invalid(build(builder.clone()), &["COREIO_BACKEND", "bogus"]);
            assert_invalid(block_on_err(builder), &["COREIO_BACKEND", "bogus"]);
        }
        let err = catch_unwind(|| coreio::block_on(async {}))
            .expect("coreio::block_on panicked")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        return;
    }
    let out = util::run_child(
        "unknown_coreio_backend_env_is_invalid",
        ROLE,
        &[("COREIO_BACKEND", "bogus")],
        Duration::from_secs(60),
    );
    util::assert_child_ok(&out, "COREIO_BACKEND=bogus child");
}

#[test]
fn coreio_backend_env_overrides_the_builder() {
    const ROLE: &str = "env-override";
    if util::child_role().as_deref() == Some(ROLE) {
        let forced = match std::env::var("COREIO_BACKEND").unwrap().as_str() {
            "epoll" => Backend::Epoll,
            "uring" => Backend::IoUring,
            other => panic!("unexpected COREIO_BACKEND={other}"),
        };
        if forced == Backend::IoUring
            && let Err(err) = build(Builder::new().cores(1))
        {
            // Only acceptable where io_uring really is unavailable (e.g. blocked by seccomp).
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
                ),
                "{err}"
            );
            println!("note: io_uring unavailable here ({err}); the uring override is untested");
            return;
        }
        for asked in [Backend::Auto, Backend::Epoll, Backend::IoUring] {
            let rt = build(Builder::new().cores(1).backend(asked)).unwrap();
            assert_eq!(rt.backend(), forced, "asked for {asked}");
            let outputs = rt.run(|_| async { coreio::backend() });
            assert_eq!(*outputs[0].as_ref().unwrap(), Some(forced));
            let seen = Builder::new()
                .backend(asked)
                .block_on(async { coreio::backend() })
                .unwrap();
            assert_eq!(seen, Some(forced), "asked for {asked}");
        }
        return;
    }
    for backend in [Backend::Epoll, Backend::IoUring] {
        let out = util::run_child(
            "coreio_backend_env_overrides_the_builder",
            ROLE,
            &[("COREIO_BACKEND", util::backend_env(backend))],
            Duration::from_secs(60),
        );
        util::assert_child_ok(&out, &format!("COREIO_BACKEND={backend} child"));
    }
}

both_backends! {
    fn a_spinning_core_serves_io_timers_and_remote_wakes(backend: Backend) {
        // With the longest spin, every idle period starts with polling; the core must still
        // see I/O, fire timers (also ones due before the spin would end), take wakes from
        // another thread while spinning or blocked, and block once the spin is over.
        let stop = coreio::sync::Event::new();
        let setter = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                stop.set();
            })
        };
        let echoed = Builder::new()
            .backend(backend)
            .spin_before_park(coreio::MAX_SPIN_BEFORE_PARK)
            .block_on(async move {
                util::assert_backend(backend);
                let (client, server) = util::pair().await;
                let echo = coreio::spawn(async move {
                    let (res, buf) = server.read(Vec::with_capacity(64)).await;
                    res.unwrap();
                    let (res, _) = server.write_all(buf).await;
                    res.unwrap();
                });
                coreio::time::sleep(Duration::from_micros(100)).await;
                let (res, _) = client.write_all(util::pattern(7, 0, 64)).await;
                res.unwrap();
                let (res, buf) = client.read_exact(vec![0u8; 64]).await;
                res.unwrap();
                echo.await.unwrap();
                coreio::time::sleep(Duration::from_millis(15)).await;
                stop.wait().await;
                buf
            })
            .unwrap();
        setter.join().unwrap();
        assert_eq!(echoed, util::pattern(7, 0, 64));
    }

    fn block_on_returns_the_value(backend: Backend) {
        let value = Builder::new()
            .backend(backend)
            .block_on(async move {
                util::assert_backend(backend);
                let task = coreio::spawn(async { vec![1, 2, 3] });
                coreio::time::sleep(Duration::from_millis(1)).await;
                task.await.unwrap()
            })
            .unwrap();
        assert_eq!(value, [1, 2, 3]);
        // Outside the runtime there is no current core any more.
        assert_eq!(coreio::current_core(), None);
        assert_eq!(coreio::backend(), None);
        // A second runtime on the same thread works.
        let again = Builder::new().backend(backend).block_on(async { "again" }).unwrap();
        assert_eq!(again, "again");
    }

    fn block_on_propagates_a_panic(backend: Backend) {
        let payload = catch_unwind(|| {
            Builder::new()
                .backend(backend)
                .block_on(async {
                    coreio::yield_now().await;
                    panic!("kaboom in block_on");
                })
        })
        .expect_err("the panic did not propagate");
        let msg = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
        assert_eq!(msg, Some("kaboom in block_on"));
        // The thread is usable afterwards: the context was restored.
        assert_eq!(coreio::current_core(), None);
        let value = Builder::new().backend(backend).block_on(async { 5 }).unwrap();
        assert_eq!(value, 5);
    }

    fn tiny_ring_still_works(backend: Backend) {
        // One submission entry: nearly every operation finds the queue full and must flush it,
        // also when the core parks. Run in a child process so that a core that sleeps forever
        // is reported as a failure instead of hanging the whole test binary.
        const ROLE: &str = "tiny-ring";
        if util::child_role().as_deref() != Some(ROLE) {
            let name = util::backend_test_name("tiny_ring_still_works", backend);
            let out = util::run_child(&name, ROLE, &[], Duration::from_secs(20));
            util::assert_child_ok(&out, "ring_entries(1) child");
            return;
        }
        let total = Builder::new()
            .backend(backend)
            .ring_entries(1)
            .block_on(async move {
                util::assert_backend(backend);
                let (client, server) = util::pair().await;
                let reader = coreio::spawn(async move {
                    let mut total = 0;
                    loop {
                        let (res, _) = server.read(Vec::with_capacity(256)).await;
                        match res.unwrap() {
                            0 => return total,
                            n => total += n,
                        }
                    }
                });
                let timers: Vec<_> = (0..20u64)
                    .map(|i| coreio::spawn(coreio::time::sleep(Duration::from_micros(i * 100))))
                    .collect();
                for i in 0..100 {
                    let (res, _) = client.write_all(util::pattern(1, i, 100)).await;
                    res.unwrap();
                }
                for t in timers {
                    t.await.unwrap();
                }
                drop(client);
                reader.await.unwrap()
            })
            .unwrap();
        assert_eq!(total, 100 * 100);
    }
}

#[test]
fn coreio_block_on_returns_the_value() {
    assert_eq!(coreio::block_on(async { 6 * 7 }).unwrap(), 42);
}
