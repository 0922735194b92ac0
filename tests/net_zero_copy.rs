//! `Builder::zero_copy_sends`: large stream writes go out as zero-copy sends on io_uring
//! (`IORING_OP_SEND_ZC`, with its second completion, the notification) and as plain sends
//! elsewhere, with the same bytes, order and errors; a dropped zero-copy write keeps its
//! buffer until the kernel's notification; a Unix stream, whose kernel side has none, makes
//! plain sends.

#[macro_use]
mod util;

use std::cell::Cell;
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Duration;

use coreio::net::UnixStream;
use coreio::time::timeout;
use coreio::{Backend, Builder};

use util::{DropHookBuf, check_pattern, pair, pattern};

const PATIENCE: Duration = Duration::from_secs(20);

fn run<F>(backend: Backend, future: F) -> F::Output
where
    F: std::future::Future + 'static,
    F::Output: 'static,
{
    Builder::new()
        .backend(backend)
        .zero_copy_sends(16 * 1024)
        .block_on(async move {
            util::assert_backend(backend);
            future.await
        })
        .expect("the runtime failed to start")
}

fn zero_copy_sends() -> u64 {
    coreio::stats::ring().map_or(0, |ring| ring.zero_copy_sends)
}

both_backends! {
    fn large_writes_arrive_whole_and_in_order(backend: Backend) {
        run(backend, async {
            let (client, server) = pair().await;
            let reader = coreio::spawn(async move {
                let mut all = Vec::new();
                loop {
                    let (res, buf) = client.read(Vec::with_capacity(64 * 1024)).await;
                    if res.unwrap() == 0 {
                        return all;
                    }
                    all.extend_from_slice(&buf);
                }
            });
            let before = zero_copy_sends();
            for msg in 0..32 {
                // Above the threshold, then below it: both kinds of send on one stream.
                let len = if msg % 2 == 0 { 64 * 1024 } else { 1000 };
                let (res, _) = server.write_all(pattern(3, msg, len)).await;
                res.unwrap();
            }
            server.shutdown(Shutdown::Write).unwrap();
            let all = timeout(PATIENCE, reader).await.unwrap().unwrap();
            let mut offset = 0;
            for msg in 0..32 {
                let len = if msg % 2 == 0 { 64 * 1024 } else { 1000 };
                check_pattern(3, msg, 0, &all[offset..offset + len]);
                offset += len;
            }
            assert_eq!(offset, all.len());
            if util::on_uring() {
                assert!(zero_copy_sends() >= before + 16, "the large writes were not zero-copy");
            } else {
                assert_eq!(zero_copy_sends(), 0);
            }
        });
    }

    fn a_dropped_zero_copy_write_keeps_its_buffer_until_the_kernel_is_done(backend: Backend) {
        run(backend, async {
            let (client, server) = pair().await;
            let freed = Rc::new(Cell::new(0));
            let counted = Rc::clone(&freed);
            // More than the socket buffers hold while nobody reads: the send waits in the
            // kernel, then its future is dropped.
            let big = DropHookBuf::with_bytes(pattern(4, 0, 8 << 20), move || {
                counted.set(counted.get() + 1)
            });
            let write = server.write_all(big);
            let cut = timeout(Duration::from_millis(50), write).await;
            assert!(cut.is_err(), "8 MiB fitted in the socket buffers");
            // On io_uring what was sent still points into the buffer (on loopback, from the
            // peer's receive queue): the buffer stays until the peer has read it and the
            // kernel's notification came. Then it is released, once.
            drop(server);
            let mut all = Vec::new();
            loop {
                let (res, buf) = timeout(PATIENCE, client.read(Vec::with_capacity(1 << 16)))
                    .await
                    .unwrap();
                match res {
                    Ok(0) | Err(_) => break,
                    Ok(_) => all.extend_from_slice(&buf),
                }
            }
            check_pattern(4, 0, 0, &all);
            assert!(!all.is_empty());
            assert!(
                util::wait_until(4000, || freed.get() == 1).await,
                "the buffer was never released"
            );
            assert_eq!(freed.get(), 1);
        });
    }

    fn a_unix_stream_makes_plain_sends(backend: Backend) {
        run(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            let before = zero_copy_sends();
            let writer = coreio::spawn(async move {
                let (res, _) = a.write_all(pattern(5, 0, 100_000)).await;
                res.unwrap();
                a
            });
            let (res, buf) = timeout(PATIENCE, b.read_exact(Vec::with_capacity(100_000)))
                .await
                .unwrap();
            res.unwrap();
            check_pattern(5, 0, 0, &buf);
            drop(writer.await.unwrap());
            assert_eq!(zero_copy_sends(), before);
        });
    }
}

#[test]
fn a_threshold_below_a_page_is_refused() {
    let err = Builder::new().zero_copy_sends(100).build().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("zero_copy_sends"), "{err}");
}
