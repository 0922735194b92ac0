//! A read into a buffer with no capacity is `InvalidInput`, never an `Ok(0)` that looks like
//! end of stream: Unix streams, pipes and files (TCP is in tests/net_tcp.rs), on both backends.

#[macro_use]
mod util;

use std::io;
use std::time::Duration;

use coreio::buf::IoBuf;
use coreio::net::UnixStream;
use coreio::time::timeout;
use util::block_on;

const PATIENCE: Duration = Duration::from_secs(5);

fn assert_refused(res: io::Result<usize>) {
    let err = res.expect_err("a read into no capacity returned Ok");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("no capacity"), "{err}");
}

both_backends! {
    fn unix_stream_and_pipe_refuse_a_zero_capacity_read(backend: Backend) {
        block_on(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            // The peer is open and silent: only the refusal can make these return.
            let (res, _) = timeout(PATIENCE, a.read(Vec::new())).await.unwrap();
            assert_refused(res);
            let full = b"full".to_vec();
            let (res, slice) = timeout(PATIENCE, a.read(full.slice(4..))).await.unwrap();
            assert_refused(res);
            assert_eq!(slice.into_inner(), b"full");
            let (res, _) = a.peek(Vec::new()).await;
            assert_refused(res);
            let (read_half, _write_half) = a.into_split();
            let (res, _) = read_half.read(Vec::new()).await;
            assert_refused(res);
            // Nothing was lost or consumed: the next bytes arrive as sent.
            let (res, _) = b.write_all(b"next".to_vec()).await;
            res.unwrap();
            let (res, buf) = read_half.read_exact(vec![0u8; 4]).await;
            res.unwrap();
            assert_eq!(buf, b"next");

            let (reader, writer) = coreio::io::pipe().unwrap();
            let (res, _) = timeout(PATIENCE, reader.read(Vec::new())).await.unwrap();
            assert_refused(res);
            drop(writer);
            // And end of stream is still Ok(0) with room to read into.
            let (res, _) = reader.read(Vec::with_capacity(8)).await;
            assert_eq!(res.unwrap(), 0);
        });
    }

    fn a_file_read_at_into_no_capacity_is_refused(backend: Backend) {
        let dir = util::TempDir::new("zero-capacity");
        let path = dir.join("data");
        std::fs::write(&path, b"contents").unwrap();
        block_on(backend, async move {
            let file = coreio::fs::File::open(&path).await.unwrap();
            let (res, _) = file.read_at(Vec::new(), 0).await;
            assert_refused(res);
            let (res, buf) = file.read_at(Vec::with_capacity(16), 0).await;
            assert_eq!((res.unwrap(), &buf[..]), (8, &b"contents"[..]));
            // The end of the file is still Ok(0).
            let (res, _) = file.read_at(Vec::with_capacity(16), 8).await;
            assert_eq!(res.unwrap(), 0);
        });
    }
}
