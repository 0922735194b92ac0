//! The futures-io traits on coreio's streams (`AsyncRead`/`AsyncWrite` for `TcpStream`,
//! `UnixStream`, their halves and the pipes), on both backends: the same protocol through the
//! owned-buffer API and the trait API on one stream, a transfer large enough to wait for
//! readiness many times in both directions at once, bytes a dropped owned read took coming
//! first, and a trait read dropped mid-wait losing nothing.

#[macro_use]
mod util;

use std::pin::pin;
use std::time::Duration;

use coreio::io::pipe;
use coreio::net::UnixStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use util::{pair, pattern, poll_once_pending};

both_backends! {
    fn one_stream_speaks_through_both_apis(backend: Backend) {
        util::block_on(backend, async {
            let (client, mut server) = pair().await;
            let (written, _) = client.write_all(b"ping over owned buffers".to_vec()).await;
            written.unwrap();
            let mut request = [0u8; 23];
            AsyncReadExt::read_exact(&mut server, &mut request).await.unwrap();
            assert_eq!(&request, b"ping over owned buffers");
            AsyncWriteExt::write_all(&mut server, b"pong over the traits").await.unwrap();
            let (read, reply) = client.read_exact(Vec::with_capacity(20)).await;
            read.unwrap();
            assert_eq!(reply, b"pong over the traits");
            // poll_close shuts the write direction down: the peer reads the end of stream.
            AsyncWriteExt::close(&mut server).await.unwrap();
            let (read, _) = client.read(Vec::with_capacity(8)).await;
            assert_eq!(read.unwrap(), 0);
        });
    }

    fn megabytes_cross_both_ways_at_once_through_halves(backend: Backend) {
        util::block_on(backend, async {
            let (left, right) = pair().await;
            let (mut left_read, mut left_write) = left.into_split();
            let (mut right_read, mut right_write) = right.into_split();
            const LEN: usize = 4 << 20;
            let sending = coreio::spawn(async move {
                // Gathering writes of three slices at a time, then the rest one by one.
                let data = pattern(1, 0, LEN);
                let (a, rest) = data.split_at(1000);
                let (b, c) = rest.split_at(70_000);
                let slices = [std::io::IoSlice::new(a), std::io::IoSlice::new(b), std::io::IoSlice::new(c)];
                let sent = AsyncWriteExt::write_vectored(&mut left_write, &slices).await.unwrap();
                assert!(sent > 0);
                AsyncWriteExt::write_all(&mut left_write, &data[sent..]).await.unwrap();
                AsyncWriteExt::close(&mut left_write).await.unwrap();
                LEN
            });
            let echoing = coreio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut total = 0;
                loop {
                    let n = AsyncReadExt::read(&mut right_read, &mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    AsyncWriteExt::write_all(&mut right_write, &buf[..n]).await.unwrap();
                    total += n;
                }
                AsyncWriteExt::close(&mut right_write).await.unwrap();
                total
            });
            let mut back = Vec::new();
            AsyncReadExt::read_to_end(&mut left_read, &mut back).await.unwrap();
            assert_eq!(sending.await.unwrap(), LEN);
            assert_eq!(echoing.await.unwrap(), LEN);
            assert_eq!(back.len(), LEN);
            util::check_pattern(1, 0, 0, &back);
        });
    }

    fn bytes_a_dropped_owned_read_took_come_first(backend: Backend) {
        util::block_on(backend, async {
            let (client, mut server) = pair().await;
            // An owned read in flight, dropped (on io_uring it may take bytes that arrive).
            poll_once_pending(pin!(server.read(Vec::with_capacity(3))).as_mut());
            let (written, _) = client.write_all(b"abcdef".to_vec()).await;
            written.unwrap();
            let mut all = [0u8; 6];
            AsyncReadExt::read_exact(&mut server, &mut all).await.unwrap();
            assert_eq!(&all, b"abcdef", "held bytes first, then the socket's, in order");
        });
    }

    fn a_trait_read_dropped_while_waiting_loses_nothing(backend: Backend) {
        util::block_on(backend, async {
            let (client, mut server) = pair().await;
            let mut buf = [0u8; 5];
            let waited = coreio::time::timeout(Duration::from_millis(20), AsyncReadExt::read(&mut server, &mut buf)).await;
            assert!(waited.is_err(), "nothing was sent yet");
            let (written, _) = client.write_all(b"later".to_vec()).await;
            written.unwrap();
            AsyncReadExt::read_exact(&mut server, &mut buf).await.unwrap();
            assert_eq!(&buf, b"later");
        });
    }

    fn after_a_short_read_later_bytes_and_the_end_still_arrive(backend: Backend) {
        // A short read marks the stream drained, so the next read waits for readiness before
        // any syscall: bytes sent right after, and then the end of the stream, must still
        // reach it, whether they come before or after that read starts waiting.
        util::block_on(backend, async {
            let (client, mut server) = pair().await;
            let mut buf = [0u8; 64];
            let (written, _) = client.write_all(b"abc".to_vec()).await;
            written.unwrap();
            assert_eq!(AsyncReadExt::read(&mut server, &mut buf).await.unwrap(), 3);
            // Sent before the next read waits.
            let (written, _) = client.write_all(b"def".to_vec()).await;
            written.unwrap();
            assert_eq!(AsyncReadExt::read(&mut server, &mut buf).await.unwrap(), 3);
            assert_eq!(&buf[..3], b"def");
            // Sent while it waits.
            let writer = coreio::spawn(async move {
                coreio::time::sleep(Duration::from_millis(5)).await;
                let (written, _) = client.write_all(b"ghij".to_vec()).await;
                written.unwrap();
                client
            });
            assert_eq!(AsyncReadExt::read(&mut server, &mut buf).await.unwrap(), 4);
            assert_eq!(&buf[..4], b"ghij");
            drop(writer.await.unwrap());
            assert_eq!(AsyncReadExt::read(&mut server, &mut buf).await.unwrap(), 0, "the end");
            assert_eq!(AsyncReadExt::read(&mut server, &mut buf).await.unwrap(), 0, "and again");
        });
    }

    fn unix_streams_and_pipes_implement_the_traits(backend: Backend) {
        util::block_on(backend, async {
            let (mut a, mut b) = UnixStream::pair().unwrap();
            AsyncWriteExt::write_all(&mut a, b"over unix").await.unwrap();
            let mut got = [0u8; 9];
            AsyncReadExt::read_exact(&mut b, &mut got).await.unwrap();
            assert_eq!(&got, b"over unix");

            let (mut reader, mut writer) = pipe().unwrap();
            let data = pattern(2, 0, 300_000);
            let expected = data.clone();
            let writing = coreio::spawn(async move {
                AsyncWriteExt::write_all(&mut writer, &data).await.unwrap();
                // Dropping the writer closes the pipe: the reader sees the end.
            });
            let mut back = Vec::new();
            AsyncReadExt::read_to_end(&mut reader, &mut back).await.unwrap();
            writing.await.unwrap();
            assert_eq!(back, expected);
        });
    }
}
