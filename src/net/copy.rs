//! [`copy_bidirectional`]: moves bytes both ways between two streams until both have ended,
//! the heart of a TCP or Unix-socket proxy.
//!
//! Each direction is a loop of one read into its own buffer and one `write_all` of what it
//! read, so each side holds one buffer and at most one operation of each kind in flight. When a
//! side reaches end of stream the other side's write direction is shut down (a half-close: the
//! peer reads end of stream and may still answer), and the other direction goes on until its
//! own end.

// This module owns that loop; it must never buffer more than one read per direction.

use std::future::{Future, poll_fn};
use std::io;
use std::net::Shutdown;
use std::pin::pin;
use std::task::Poll;

use crate::net::ByteStream;

/// Buffer capacity of each direction of [`copy_bidirectional`]: 16 KiB, a few TCP segments
/// and as much as a loopback read usually returns at once.
pub const DEFAULT_COPY_CAPACITY: usize = 16 * 1024;

/// Copies bytes from `a` to `b` and from `b` to `a` at the same time, until both directions
/// have reached end of stream; returns how many bytes went each way, `(a to b, b to a)`.
///
/// When `a` ends, `b`'s write direction is shut down, and likewise the other way round, so a
/// request-then-response exchange through a proxy ends as it would without one. The first
/// error of either direction ends the copy and is returned (the other direction stops where it
/// is; reads are cancel-safe, so nothing it read is lost from the stream, but a write cut short
/// may have sent part of its buffer). Uses one buffer of [`DEFAULT_COPY_CAPACITY`] bytes per
/// direction.
///
/// ```no_run
/// use coreio::net::{TcpListener, TcpStream, copy_bidirectional};
///
/// coreio::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:8080".parse().unwrap())?;
///     loop {
///         let (client, _) = listener.accept().await?;
///         coreio::spawn(async move {
///             let upstream = TcpStream::connect("127.0.0.1:7000").await?;
///             let (up, down) = copy_bidirectional(&client, &upstream).await?;
///             println!("{up} bytes up, {down} bytes down");
///             Ok::<(), std::io::Error>(())
///         });
///     }
///     #[allow(unreachable_code)]
///     Ok::<(), std::io::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
pub async fn copy_bidirectional<A, B>(a: &A, b: &B) -> io::Result<(u64, u64)>
where
    A: ByteStream,
    B: ByteStream,
{
    copy_bidirectional_with_capacity(a, b, DEFAULT_COPY_CAPACITY).await
}

/// [`copy_bidirectional`] with `capacity` bytes of buffer per direction (an `InvalidInput`
/// error for 0).
pub async fn copy_bidirectional_with_capacity<A, B>(
    a: &A,
    b: &B,
    capacity: usize,
) -> io::Result<(u64, u64)>
where
    A: ByteStream,
    B: ByteStream,
{
    if capacity == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "copy_bidirectional needs a buffer capacity above 0",
        ));
    }
    let mut a_to_b = pin!(copy_one_way(a, b, capacity));
    let mut b_to_a = pin!(copy_one_way(b, a, capacity));
    let (mut up, mut down) = (None, None);
    poll_fn(|cx| {
        if up.is_none()
            && let Poll::Ready(result) = a_to_b.as_mut().poll(cx)
        {
            up = Some(result?);
        }
        if down.is_none()
            && let Poll::Ready(result) = b_to_a.as_mut().poll(cx)
        {
            down = Some(result?);
        }
        match (up, down) {
            (Some(up), Some(down)) => Poll::Ready(Ok((up, down))),
            _ => Poll::Pending,
        }
    })
    .await
}

/// Copies `from` to `to` until `from` ends, then shuts `to`'s write direction down.
async fn copy_one_way<F, T>(from: &F, to: &T, capacity: usize) -> io::Result<u64>
where
    F: ByteStream,
    T: ByteStream,
{
    let mut buf = Vec::with_capacity(capacity);
    let mut total = 0u64;
    loop {
        let (res, back) = from.stream_io().read(buf).await;
        buf = back;
        match res {
            Ok(0) => break,
            Ok(n) => {
                let (res, back) = to.stream_io().write_all(buf).await;
                buf = back;
                res?;
                total += n as u64;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    match to.shutdown_stream(Shutdown::Write) {
        // The peer is gone already (reset): there is nothing left to shut.
        Err(err) if err.raw_os_error() == Some(libc::ENOTCONN) => {}
        other => other?,
    }
    Ok(total)
}
