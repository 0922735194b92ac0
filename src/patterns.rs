//! Connection patterns: the shapes most servers need, each as a small program that compiles.
//!
//! # A two-way copy (a proxy)
//!
//! [`net::copy_bidirectional`](crate::net::copy_bidirectional) moves bytes both ways between
//! two streams with one buffer per direction, half-closes each side when the other ends, and
//! reports what it moved. Both streams are borrowed: a stream's reads and writes may run in
//! two tasks at once, since the owned-buffer methods take `&self`.
//!
//! ```no_run
//! use coreio::net::{TcpListener, TcpStream, copy_bidirectional};
//!
//! async fn proxy(listen: &str, upstream: &'static str) -> std::io::Result<()> {
//!     let listener = TcpListener::bind(listen.parse().unwrap())?;
//!     loop {
//!         let (client, _peer) = listener.accept().await?;
//!         coreio::spawn(async move {
//!             let server = TcpStream::connect(upstream).await?;
//!             let (up, down) = copy_bidirectional(&client, &server).await?;
//!             eprintln!("{up} bytes up, {down} bytes down");
//!             std::io::Result::Ok(())
//!         });
//!     }
//! }
//! # coreio::block_on(proxy("127.0.0.1:8000", "127.0.0.1:9000")).unwrap().unwrap();
//! ```
//!
//! To read in one task and write in another by hand, split the stream: `into_split` gives a
//! `ReadHalf` and a `WriteHalf` that move into separate tasks (on the same core), and
//! `net::reunite` puts them back together.
//!
//! ```
//! use coreio::net::UnixStream;
//!
//! # coreio::block_on(async {
//! let (ours, theirs) = UnixStream::pair()?;
//! let (reader, writer) = theirs.into_split();
//! // The other side echoes: one task reads, another writes what it read.
//! let (tx, mut rx) = coreio::mesh::channel::<Vec<u8>>(4);
//! let reading = coreio::spawn(async move {
//!     let (read, buf) = reader.read(Vec::with_capacity(64)).await;
//!     read?;
//!     tx.send(buf).await.ok();
//!     std::io::Result::Ok(())
//! });
//! let writing = coreio::spawn(async move {
//!     if let Ok(buf) = rx.recv().await {
//!         let (written, _) = writer.write_all(buf).await;
//!         written?;
//!     }
//!     std::io::Result::Ok(())
//! });
//! let (written, _) = ours.write_all(b"ping".to_vec()).await;
//! written?;
//! let (read, echoed) = ours.read_exact(Vec::with_capacity(4)).await;
//! read?;
//! assert_eq!(echoed, b"ping");
//! // `?` turns a task's panic or cancellation into an `io::Error` too.
//! reading.await??;
//! writing.await??;
//! # std::io::Result::Ok(())
//! # }).unwrap().unwrap();
//! ```
//!
//! # A timeout that keeps the connection usable
//!
//! Wrapping a read in [`time::timeout`](crate::time::timeout) and giving up drops the read.
//! The connection stays usable: bytes the dropped read had already received are kept and come
//! first on the next read, so nothing is lost or reordered. The buffer went with the dropped
//! future (the runtime frees it once the kernel is done with it): the next read takes a new
//! one.
//!
//! ```
//! use std::time::Duration;
//!
//! use coreio::net::UnixStream;
//! use coreio::time::timeout;
//!
//! # coreio::block_on(async {
//! let (client, server) = UnixStream::pair()?;
//! // Nothing comes within 10 ms: the read is given up...
//! let idle = timeout(Duration::from_millis(10), server.read(Vec::with_capacity(16))).await;
//! assert!(idle.is_err());
//! // ...and the connection still works.
//! let (written, _) = client.write_all(b"late".to_vec()).await;
//! written?;
//! let (read, buf) = server.read_exact(Vec::with_capacity(4)).await;
//! read?;
//! assert_eq!(buf, b"late");
//! # std::io::Result::Ok(())
//! # }).unwrap().unwrap();
//! ```
//!
//! # Waiting for a request or for shutdown
//!
//! [`future::or`](crate::future::or) waits for whichever comes first. With a graceful
//! shutdown ([`shutdown`](crate::shutdown)), listeners stop by themselves (`accept` fails with
//! an error that [`shutdown::is_shutdown_error`](crate::shutdown::is_shutdown_error)
//! recognises), and a connection finishes the request it is serving, then stops waiting for
//! the next one:
//!
//! ```no_run
//! use coreio::future::or;
//! use coreio::net::{TcpListener, TcpStream};
//! use coreio::shutdown;
//!
//! async fn serve(listener: TcpListener) -> std::io::Result<()> {
//!     loop {
//!         let stream = match listener.accept().await {
//!             Ok((stream, _peer)) => stream,
//!             Err(err) if shutdown::is_shutdown_error(&err) => return Ok(()),
//!             Err(err) => return Err(err),
//!         };
//!         coreio::spawn(connection(stream));
//!     }
//! }
//!
//! async fn connection(stream: TcpStream) -> std::io::Result<()> {
//!     loop {
//!         // The next request, unless shutdown comes first.
//!         let request = or(
//!             async { Some(stream.read(Vec::with_capacity(4096)).await) },
//!             async {
//!                 coreio::shutdown_requested().await;
//!                 None
//!             },
//!         );
//!         let Some((read, request)) = request.await else {
//!             return Ok(()); // Shutting down between requests.
//!         };
//!         if read? == 0 {
//!             return Ok(()); // The client left.
//!         }
//!         // Serving a request is not interrupted by shutdown: it ends, then the loop stops.
//!         let (written, _) = stream.write_all(request).await;
//!         written?;
//!     }
//! }
//!
//! let runtime = coreio::Builder::new()
//!     .shutdown_grace(std::time::Duration::from_secs(10))
//!     .build()?;
//! runtime.shutdown_handle().trigger_on_ctrl_c()?;
//! runtime.run(|_core| async {
//!     serve(TcpListener::bind("127.0.0.1:7000".parse().unwrap())?).await
//! });
//! # std::io::Result::Ok(())
//! ```
