//! tokio's I/O traits on coreio's streams (feature `tokio`): `AsyncRead`/`AsyncWrite` for
//! `TcpStream`, `UnixStream`, their halves and the pipes, on both backends. The same protocol
//! through the owned-buffer API and tokio's on one stream, a read into uninitialized spare
//! capacity (`read_buf`), gathering writes, held bytes first, and a transfer through halves
//! large enough to wait for readiness many times in both directions.

#[macro_use]
mod util;

use std::io::IoSlice;
use std::pin::pin;

use coreio::io::pipe;
use coreio::net::UnixStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use util::{pair, pattern, poll_once_pending};

/// Compile-time: what the feature promises.
#[allow(dead_code)]
fn the_stream_types_implement_the_traits() {
    fn both<T: AsyncRead + AsyncWrite>() {}
    fn read<T: AsyncRead>() {}
    fn write<T: AsyncWrite>() {}
    both::<coreio::net::TcpStream>();
    both::<UnixStream>();
    read::<coreio::net::ReadHalf<coreio::net::TcpStream>>();
    write::<coreio::net::WriteHalf<UnixStream>>();
    read::<coreio::io::PipeReader>();
    write::<coreio::io::PipeWriter>();
}

both_backends! {
    fn one_stream_speaks_through_the_owned_api_and_tokios(backend: Backend) {
        util::block_on(backend, async {
            let (client, mut server) = pair().await;
            let (written, _) = client.write_all(b"ping over owned buffers".to_vec()).await;
            written.unwrap();
            let mut request = [0u8; 23];
            AsyncReadExt::read_exact(&mut server, &mut request).await.unwrap();
            assert_eq!(&request, b"ping over owned buffers");
            assert!(server.is_write_vectored());
            let slices = [IoSlice::new(b"pong "), IoSlice::new(b"over "), IoSlice::new(b"tokio")];
            let sent = AsyncWriteExt::write_vectored(&mut server, &slices).await.unwrap();
            assert_eq!(sent, 15, "a small gathering write goes whole");
            let (read, reply) = client.read_exact(Vec::with_capacity(15)).await;
            read.unwrap();
            assert_eq!(reply, b"pong over tokio");
            // poll_shutdown shuts the write direction down: the peer reads the end of stream.
            AsyncWriteExt::shutdown(&mut server).await.unwrap();
            let (read, _) = client.read(Vec::with_capacity(8)).await;
            assert_eq!(read.unwrap(), 0);
        });
    }

    fn read_buf_fills_uninitialized_spare_capacity(backend: Backend) {
        util::block_on(backend, async {
            let (client, mut server) = pair().await;
            let (written, _) = client.write_all(pattern(3, 0, 1000)).await;
            written.unwrap();
            let mut got = Vec::with_capacity(4096);
            while got.len() < 1000 {
                let n = AsyncReadExt::read_buf(&mut server, &mut got).await.unwrap();
                assert!(n > 0);
            }
            util::check_pattern(3, 0, 0, &got);
        });
    }

    fn bytes_a_dropped_owned_read_took_come_first_for_tokio_too(backend: Backend) {
        util::block_on(backend, async {
            let (client, mut server) = pair().await;
            poll_once_pending(pin!(server.read(Vec::with_capacity(3))).as_mut());
            let (written, _) = client.write_all(b"abcdef".to_vec()).await;
            written.unwrap();
            let mut all = [0u8; 6];
            AsyncReadExt::read_exact(&mut server, &mut all).await.unwrap();
            assert_eq!(&all, b"abcdef", "held bytes first, then the socket's, in order");
        });
    }

    fn megabytes_cross_both_ways_through_halves_unix_and_pipes(backend: Backend) {
        util::block_on(backend, async {
            const LEN: usize = 2 << 20;
            let (left, right) = UnixStream::pair().unwrap();
            let (mut left_read, mut left_write) = left.into_split();
            let (mut right_read, mut right_write) = right.into_split();
            let sending = coreio::spawn(async move {
                AsyncWriteExt::write_all(&mut left_write, &pattern(4, 0, LEN)).await.unwrap();
                AsyncWriteExt::shutdown(&mut left_write).await.unwrap();
            });
            // The echo side goes through a pipe and back, all with tokio's copy.
            let echoing = coreio::spawn(async move {
                let (mut pipe_read, mut pipe_write) = pipe().unwrap();
                let into_pipe = coreio::spawn(async move {
                    let n = tokio::io::copy(&mut right_read, &mut pipe_write).await.unwrap();
                    drop(pipe_write);
                    n
                });
                let out = tokio::io::copy(&mut pipe_read, &mut right_write).await.unwrap();
                AsyncWriteExt::shutdown(&mut right_write).await.unwrap();
                (into_pipe.await.unwrap(), out)
            });
            let mut back = Vec::new();
            AsyncReadExt::read_to_end(&mut left_read, &mut back).await.unwrap();
            sending.await.unwrap();
            assert_eq!(echoing.await.unwrap(), (LEN as u64, LEN as u64));
            assert_eq!(back.len(), LEN);
            util::check_pattern(4, 0, 0, &back);
        });
    }
}
