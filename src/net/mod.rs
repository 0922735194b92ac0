//! Networking: TCP and UDP sockets driven by the current core's I/O driver.
//!
//! The per-core accept pattern: [`TcpListener::bind`] sets `SO_REUSEPORT`, so every core binds
//! the same address with its own listener and the kernel spreads incoming connections across
//! them; each connection then lives on the core that accepted it.
//!
//! That sharing is for the listeners of one process: `bind` fails with `AddrInUse` when another
//! process already listens on the address, so a second server started by mistake does not
//! silently take half of the connections. Sharing a port with other processes is an explicit
//! opt-in: [`TcpListener::bind_shared`], or a [`TcpSocket`] with `set_reuseport(true)`.
//!
//! A connection can also move to another core afterwards: [`TcpStream::into_handoff`] detaches
//! it into a `Send` [`Handoff`] that the other core adopts (see [`mesh`](crate::mesh)).
//! [`TcpListener::serve`] with a [`LoadBalance`] does that at accept time, handing new
//! connections from a core above the average to the least loaded one.
//!
//! Unix domain stream sockets ([`UnixListener`], [`UnixStream`]) bind a filesystem path or a
//! name in Linux's abstract namespace ([`UnixSocketAddr`]) and read and write like TCP streams.
//!
//! ```no_run
//! use coreio::net::TcpListener;
//!
//! let rt = coreio::Runtime::new().unwrap();
//! rt.run(|_core| async {
//!     let listener = TcpListener::bind("127.0.0.1:7000".parse().unwrap()).unwrap();
//!     loop {
//!         let (stream, _peer) = listener.accept().await.unwrap();
//!         coreio::spawn(async move {
//!             let mut buf = Vec::with_capacity(4096);
//!             loop {
//!                 let (res, b) = stream.read(buf).await;
//!                 let Ok(n) = res else { break };
//!                 if n == 0 { break }
//!                 let (res, b) = stream.write_all(b).await;
//!                 if res.is_err() { break }
//!                 buf = b;
//!             }
//!         });
//!     }
//! });
//! ```

mod accept_loop;
mod balance;
mod copy;
mod gauge;
mod handoff;
mod incoming;
mod lookup;
pub(crate) mod ops;
mod port_claim;
mod recv_stream;
mod split;
mod stream_io;
pub(crate) mod stream_poll;
mod tcp;
mod udp;
mod unix;

pub use balance::LoadBalance;
pub use copy::{DEFAULT_COPY_CAPACITY, copy_bidirectional, copy_bidirectional_with_capacity};
pub(crate) use gauge::{ConnectionGauges, Counted};
pub use handoff::{Adopt, Handoff, HandoffError};
pub use incoming::Incoming;
pub(crate) use incoming::{AcceptNext, Accepting};
pub use lookup::{ToSocketAddrs, lookup_host};
pub use recv_stream::RecvStream;
pub use split::{ByteStream, ReadHalf, ReuniteError, WriteHalf, reunite};
pub use stream_io::MIN_ZERO_COPY_SEND;
pub(crate) use stream_io::StreamIo;
pub use tcp::{IntoStdError, TcpListener, TcpSocket, TcpStream};
pub use udp::{DatagramTruncated, PacketInfo, RecvMeta, UdpBuilder, UdpSocket};
pub use unix::{UCred, UnixDatagram, UnixListener, UnixSocketAddr, UnixStream};
