//! coreio: a thread-per-core async runtime for Linux servers.
//!
//! One pinned, single-threaded executor per CPU core. Each core owns its own io_uring ring (or,
//! where io_uring is unavailable, its own epoll instance) and its own timer wheel. Tasks never
//! migrate between cores, so they may be `!Send`; nothing is shared between cores unless you
//! share it.
//!
//! # A first server
//!
//! [`Runtime::run`] runs one copy of your root future on every core. Each core binds the same
//! address (listeners set `SO_REUSEPORT`) and the kernel spreads connections across cores:
//!
//! ```no_run
//! use coreio::net::TcpListener;
//!
//! let rt = coreio::Builder::new().build()?;
//! println!("{} cores on {}", rt.cores().len(), rt.backend());
//! rt.run(|core| async move {
//!     let listener = TcpListener::bind("127.0.0.1:7000".parse().unwrap())?;
//!     loop {
//!         let (stream, _peer) = listener.accept().await?;
//!         coreio::spawn(async move {
//!             let mut buf = Vec::with_capacity(4096);
//!             loop {
//!                 let (res, b) = stream.read(buf).await;
//!                 match res {
//!                     Ok(0) | Err(_) => return,
//!                     Ok(_) => {}
//!                 }
//!                 let (res, b) = stream.write_all(b).await;
//!                 if res.is_err() {
//!                     return;
//!                 }
//!                 buf = b;
//!             }
//!         });
//!     }
//!     #[allow(unreachable_code)]
//!     Ok::<(), std::io::Error>(())
//! });
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Owned buffers
//!
//! I/O methods take their buffer by value and return it with the result, as
//! `(io::Result<usize>, buf)`: with io_uring the kernel fills the buffer *after* the call that
//! submitted the read returns, so it cannot be borrowed from the caller. If the future is
//! dropped mid-operation, the runtime keeps the buffer alive until the kernel is done with it.
//! See [`buf`] and `docs/architecture.md`.
//!
//! # Tasks and timers
//!
//! [`spawn`] starts a task on the current core; [`JoinHandle`] awaits, detaches or aborts it.
//! Code that would block the core (a C library's DNS lookup, `std::fs`, heavy computation) goes
//! to the runtime's blocking pool with [`spawn_blocking`].
//! [`time`] has [`sleep`](time::sleep), [`timeout`](time::timeout) and
//! [`interval`](time::interval), with 1 ms resolution, never firing early.
//!
//! ```
//! use std::time::Duration;
//!
//! let out = coreio::block_on(async {
//!     let task = coreio::spawn(async {
//!         coreio::time::sleep(Duration::from_millis(2)).await;
//!         "done"
//!     });
//!     task.await.unwrap()
//! }).unwrap();
//! assert_eq!(out, "done");
//! ```
//!
//! # Cores talking to each other
//!
//! Cores share nothing by default; they cooperate through the [`mesh`]: [`mesh::submit_to`]
//! runs a closure on another core and brings its output back, [`mesh::channel`] carries a
//! stream of values between cores with backpressure, and a connection can move to another core
//! ([`net::TcpStream::into_handoff`], or [`net::TcpListener::serve`] with a
//! [`net::LoadBalance`], which does it at accept time for a core above the average load).
//!
//! ```
//! let rt = coreio::Builder::new().cores(2).build().unwrap();
//! let last = *rt.cores().last().unwrap();
//! let senders = rt.cores().len() as u64 - 1;
//! let (tx, rx) = coreio::mesh::channel::<u64>(64);
//! let rx = std::sync::Mutex::new(Some(rx));
//! let outputs = rt.run(|core| {
//!     let tx = tx.clone();
//!     let rx = if core == last { rx.lock().unwrap().take() } else { None };
//!     async move {
//!         match rx {
//!             // The last core sums what every other core sends it: 1 to 10 each.
//!             Some(mut rx) => {
//!                 let mut sum = 0;
//!                 for _ in 0..10 * senders {
//!                     sum += rx.recv().await.unwrap();
//!                 }
//!                 sum
//!             }
//!             None => {
//!                 for n in 1..=10 {
//!                     tx.send(n).await.unwrap();
//!                 }
//!                 0
//!             }
//!         }
//!     }
//! });
//! assert_eq!(*outputs.last().unwrap().as_ref().unwrap(), 55 * senders);
//! ```
//!
//! # Backends
//!
//! [`Backend::Auto`] (the default) uses io_uring when the kernel offers what coreio needs and
//! epoll otherwise; `COREIO_BACKEND=epoll` (or `uring`) forces one. [`Runtime::backend`] and
//! [`backend()`] say which one runs.
//!
//! # Errors and panics
//!
//! Conditions a caller can cause at run time — a bad builder setting, a ring that cannot be set
//! up, a closed peer, descriptor exhaustion, a full blocking pool — are errors. Calling
//! [`spawn`] or [`spawn_blocking`] or polling a timer outside a runtime is a programming error
//! and panics with a message saying so.

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod blocking;
pub mod buf;
mod builder;
mod compat;
mod context;
mod coop;
mod core;
mod driver;
mod executor;
pub mod fs;
pub mod future;
#[cfg(feature = "hyper")]
pub use compat::hyper;
pub mod io;
mod join_set;
mod loom;
pub mod mesh;
pub mod net;
mod panic;
pub mod patterns;
mod runtime;
pub mod shutdown;
pub mod signal;
pub mod stats;
pub mod sync;
mod sys;
pub mod time;

pub use crate::core::CoreId;
pub use blocking::{
    BlockingError, BlockingHandle, DEFAULT_BLOCKING_KEEP_ALIVE, DEFAULT_BLOCKING_QUEUE,
    DEFAULT_BLOCKING_SHUTDOWN_TIMEOUT, DEFAULT_BLOCKING_THREADS, MAX_BLOCKING_THREADS,
    spawn_blocking,
};
pub use builder::{
    Builder, DEFAULT_EVENT_INTERVAL, DEFAULT_REMOTE_QUEUE_INTERVAL, DEFAULT_RING_ENTRIES,
    MAX_RING_ENTRIES, MAX_SPIN_BEFORE_PARK, block_on,
};
pub use driver::{
    Backend, DEFAULT_REGISTER_AFTER, DEFAULT_REGISTERED_FILES, RingSetupCause, RingSetupError,
};
pub use executor::{JoinError, JoinHandle, spawn, yield_now};
pub use join_set::JoinSet;

/// Runs an `async fn main` on a coreio runtime (feature `macros`, on by default).
///
/// Without arguments the body runs as a one-core runtime on the main thread
/// ([`Builder::block_on`]), and its output is `main`'s: `()`, or a `Result` to exit with an
/// error. `backend = "auto" | "io_uring" | "epoll"` picks the backend (`COREIO_BACKEND` still
/// overrides it). `cores = N` runs the body on each of N pinned cores, as [`Runtime::run`]
/// does: it is then every core's root, so `main` returns nothing, and a core that fails
/// (panics, or cannot start) makes the process exit with status 1 after the others end. A
/// runtime that cannot start is reported on stderr, with exit status 1.
///
/// ```no_run
/// #[coreio::main]
/// async fn main() -> std::io::Result<()> {
///     let listener = coreio::net::TcpListener::bind("127.0.0.1:7000".parse().unwrap())?;
///     let (stream, peer) = listener.accept().await?;
///     println!("{peer} connected");
///     let (written, _) = stream.write_all(b"hello\n".to_vec()).await;
///     written
/// }
/// ```
///
/// ```no_run
/// #[coreio::main(cores = 2, backend = "epoll")]
/// async fn main() {
///     println!("core {:?} is up", coreio::current_core());
/// }
/// ```
///
/// Mistakes are compile errors that say what to write instead: a `main` that is not `async`,
/// an unknown backend, or an output with `cores = N`.
///
/// ```compile_fail
/// #[coreio::main]
/// fn main() {}
/// ```
///
/// ```compile_fail
/// #[coreio::main(backend = "kqueue")]
/// async fn main() {}
/// ```
///
/// ```compile_fail
/// #[coreio::main(cores = 2)]
/// async fn main() -> u32 { 7 }
/// ```
#[cfg(feature = "macros")]
pub use coreio_macros::main;

/// Runs an `async fn` test on coreio, once on io_uring and once on epoll (feature `macros`).
///
/// `#[coreio::test] async fn name()` becomes a module `name` with two tests, `name::io_uring`
/// and `name::epoll`, each running the body as a one-core runtime of that backend; the
/// function's attributes (`#[should_panic]`, `#[ignore]`) and return type (`Result` for `?`)
/// apply to both. `#[coreio::test(backend = "epoll")]` makes one test of that backend, under
/// the function's own name. `COREIO_BACKEND`, when set, overrides the backend of both.
///
/// ```no_run
/// #[coreio::test]
/// async fn a_pair_round_trips() -> std::io::Result<()> {
///     let (a, b) = coreio::net::UnixStream::pair()?;
///     let (written, _) = a.write_all(b"ping".to_vec()).await;
///     written?;
///     let (read, buf) = b.read_exact(Vec::with_capacity(4)).await;
///     read?;
///     assert_eq!(buf, b"ping");
///     Ok(())
/// }
/// ```
#[cfg(feature = "macros")]
pub use coreio_macros::test;
pub use runtime::{CoreError, Runtime, backend, current_core};
pub use shutdown::requested as shutdown_requested;
