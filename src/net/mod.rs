//! Networking: TCP sockets driven by the current core's I/O driver.
//!
//! The per-core accept pattern: [`TcpListener::bind`] sets `SO_REUSEPORT`, so every core binds
//! the same address with its own listener and the kernel spreads incoming connections across
//! them; each connection then lives on the core that accepted it.
//!
//! A connection can also move to another core afterwards: [`TcpStream::into_handoff`] detaches
//! it into a `Send` [`Handoff`] that the other core adopts (see [`mesh`](crate::mesh)).
//! [`TcpListener::serve`] with a [`LoadBalance`] does that at accept time, handing new
//! connections from a core above the average to the least loaded one.
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

mod balance;
mod gauge;
mod handoff;
mod lookup;
pub(crate) mod ops;
mod stream_io;
mod tcp;

pub use balance::LoadBalance;
pub(crate) use gauge::{ConnectionGauges, Counted};
pub use handoff::{Adopt, Handoff, HandoffError};
pub use lookup::{ToSocketAddrs, lookup_host};
pub use tcp::{TcpListener, TcpStream};
