//! Unix signals as streams: [`signal`], [`ctrl_c`], [`SignalKind`], [`Signal`].
//!
//! A task on any core (or any thread polling a future) asks for a signal with
//! [`signal(kind)`](signal) and receives each delivery as an item of the returned [`Signal`]
//! stream; every stream of a kind sees every delivery. Deliveries that arrive while a stream is
//! not being polled are coalesced into one item, as with tokio: a stream says "the signal came
//! (at least once) since you last looked", not how many times.
//!
//! ```
//! use coreio::signal::{SignalKind, signal};
//!
//! coreio::block_on(async {
//!     let mut hangups = signal(SignalKind::hangup())?;
//!     // SAFETY: kill(2) with this process's own pid and a signal that now has a handler.
//!     unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
//!     hangups.recv().await; // reload the configuration here
//!     Ok::<(), std::io::Error>(())
//! })
//! .unwrap()
//! .unwrap();
//! ```
//!
//! # How
//!
//! The first `signal(kind)` of a kind installs a handler for it (`sigaction`, `SA_RESTART`),
//! which is all a signal handler may safely do: it counts the delivery in an atomic and writes
//! to an eventfd. One thread per process, `coreio-signal`, started with the first handler,
//! waits on that eventfd and wakes every stream waiting for a kind that was delivered; the
//! wakers are the tasks' own, so each task is woken on its own core, on either backend. No
//! signal mask is changed, so nothing has to be blocked before the runtime's threads start.
//!
//! Once a kind has a handler, it keeps it for the life of the process: its default action
//! (terminating, for `SIGINT` and `SIGTERM`) no longer happens, also after every stream is
//! dropped. A program that asks for `SIGINT` decides what Ctrl-C does.

// This module owns the process's signal handlers and the dispatch thread. Its handler must
// never do more than an atomic add and a `write(2)`; nothing else is async-signal-safe. (Its
// shared state is a static, which the loom shim cannot model: a generation counter read after
// the waker is stored, the usual order.)

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;

use crate::sys::{self, cvt};

/// The signals a stream may be asked for: every standard one but those that cannot be caught
/// (`SIGKILL`, `SIGSTOP`) or that mean a fault in the program itself (`SIGSEGV`, `SIGBUS`,
/// `SIGILL`, `SIGFPE`, `SIGTRAP`, `SIGSYS`), which a handler must not swallow.
const HIGHEST: usize = 64;

/// A kind of signal.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignalKind(libc::c_int);

impl SignalKind {
    /// `SIGINT`: Ctrl-C at a terminal.
    pub const fn interrupt() -> SignalKind {
        SignalKind(libc::SIGINT)
    }

    /// `SIGTERM`: a polite request to stop (what `kill` and service managers send).
    pub const fn terminate() -> SignalKind {
        SignalKind(libc::SIGTERM)
    }

    /// `SIGHUP`: the terminal went away; by convention, "reload your configuration".
    pub const fn hangup() -> SignalKind {
        SignalKind(libc::SIGHUP)
    }

    /// `SIGQUIT`: Ctrl-\ at a terminal.
    pub const fn quit() -> SignalKind {
        SignalKind(libc::SIGQUIT)
    }

    /// `SIGUSR1`.
    pub const fn user_defined1() -> SignalKind {
        SignalKind(libc::SIGUSR1)
    }

    /// `SIGUSR2`.
    pub const fn user_defined2() -> SignalKind {
        SignalKind(libc::SIGUSR2)
    }

    /// `SIGWINCH`: the terminal changed size.
    pub const fn window_change() -> SignalKind {
        SignalKind(libc::SIGWINCH)
    }

    /// `SIGCHLD`: a child process stopped or exited.
    pub const fn child() -> SignalKind {
        SignalKind(libc::SIGCHLD)
    }

    /// `SIGALRM`.
    pub const fn alarm() -> SignalKind {
        SignalKind(libc::SIGALRM)
    }

    /// `SIGPIPE`: a write to a pipe or socket whose reader is gone (coreio ignores it where it
    /// is at its default, so writes fail with `EPIPE` instead; a stream turns it back on).
    pub const fn pipe() -> SignalKind {
        SignalKind(libc::SIGPIPE)
    }

    /// Any signal by number (a real-time one included); `InvalidInput` for one that cannot be
    /// caught or that reports a fault of the program (`SIGKILL`, `SIGSTOP`, `SIGSEGV`, `SIGBUS`,
    /// `SIGILL`, `SIGFPE`, `SIGTRAP`, `SIGSYS`), and for numbers that are no signal.
    pub fn from_raw(signum: i32) -> io::Result<SignalKind> {
        let forbidden = [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGTRAP,
            libc::SIGSYS,
        ];
        if signum < 1 || signum as usize > HIGHEST || signum > libc::SIGRTMAX() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{signum} is not a signal number"),
            ));
        }
        if forbidden.contains(&signum) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "signal {signum} cannot be caught, or reports a fault of the program \
                     itself, which a handler must not swallow"
                ),
            ));
        }
        Ok(SignalKind(signum))
    }

    /// The signal number.
    pub fn as_raw(self) -> i32 {
        self.0
    }
}

impl fmt::Debug for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            libc::SIGHUP => "SIGHUP",
            libc::SIGQUIT => "SIGQUIT",
            libc::SIGUSR1 => "SIGUSR1",
            libc::SIGUSR2 => "SIGUSR2",
            libc::SIGWINCH => "SIGWINCH",
            libc::SIGCHLD => "SIGCHLD",
            libc::SIGALRM => "SIGALRM",
            libc::SIGPIPE => "SIGPIPE",
            other => return write!(f, "signal {other}"),
        };
        f.write_str(name)
    }
}

/// One kind's state, shared by its handler, the dispatch thread and its streams.
struct Slot {
    /// Deliveries counted by the handler, not yet dispatched.
    delivered: AtomicU64,
    /// Dispatched deliveries: a stream that saw a smaller value has an item.
    generation: AtomicU64,
    /// The handler is installed.
    installed: OnceLock<()>,
    /// Streams waiting for the next delivery: (stream id, waker).
    waiting: Mutex<Vec<(u64, Waker)>>,
}

/// The process's signal state.
struct Registry {
    slots: Vec<Slot>,
    /// The eventfd the handler writes and the dispatch thread waits on.
    wake: OwnedFd,
    /// Ids of streams, never reused.
    next_id: AtomicU64,
}

/// The eventfd, for the handler (which must not touch anything that could be half-built).
static HANDLER_FD: AtomicI32 = AtomicI32::new(-1);

static REGISTRY: OnceLock<io::Result<Registry>> = OnceLock::new();

fn registry() -> io::Result<&'static Registry> {
    REGISTRY
        .get_or_init(|| {
            let wake = sys::eventfd()?;
            let registry = Registry {
                slots: (0..=HIGHEST)
                    .map(|_| Slot {
                        delivered: AtomicU64::new(0),
                        generation: AtomicU64::new(0),
                        installed: OnceLock::new(),
                        waiting: Mutex::new(Vec::new()),
                    })
                    .collect(),
                wake,
                next_id: AtomicU64::new(1),
            };
            HANDLER_FD.store(registry.wake.as_raw_fd(), Ordering::Release);
            std::thread::Builder::new()
                .name("coreio-signal".into())
                .spawn(dispatch)?;
            Ok(registry)
        })
        .as_ref()
        .map_err(|err| io::Error::new(err.kind(), format!("cannot set up signal handling: {err}")))
}

/// The signal handler: counts the delivery and wakes the dispatch thread. Async-signal-safe:
/// an atomic add, an atomic load and `write(2)`, nothing else.
extern "C" fn on_signal(signum: libc::c_int) {
    if let Some(Ok(registry)) = REGISTRY.get()
        && let Some(slot) = registry.slots.get(signum as usize)
    {
        slot.delivered.fetch_add(1, Ordering::AcqRel);
    }
    let fd = HANDLER_FD.load(Ordering::Acquire);
    if fd >= 0 {
        // errno is the interrupted code's: save and restore it around the write.
        // SAFETY: `__errno_location` returns this thread's errno, always valid.
        let errno = unsafe { *libc::__errno_location() };
        sys::eventfd_signal(fd);
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
    }
}

/// The dispatch thread: waits for the handler's wake-ups and wakes the waiting streams.
fn dispatch() {
    let Ok(registry) = registry() else {
        return;
    };
    let fd = registry.wake.as_raw_fd();
    loop {
        let mut pollfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pollfd` is a valid array of one entry for the call.
        let polled = unsafe { libc::poll(&mut pollfd, 1, -1) };
        if polled < 0 {
            // EINTR: a signal landed on this thread; its wake-up is in the eventfd.
            continue;
        }
        sys::eventfd_drain(fd);
        for slot in &registry.slots {
            if slot.delivered.swap(0, Ordering::AcqRel) == 0 {
                continue;
            }
            slot.generation.fetch_add(1, Ordering::AcqRel);
            let waiting = std::mem::take(&mut *lock(&slot.waiting));
            for (_, waker) in waiting {
                waker.wake();
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Installs the handler of `kind` once.
fn install(kind: SignalKind) -> io::Result<()> {
    let registry = registry()?;
    let slot = &registry.slots[kind.0 as usize];
    if slot.installed.get().is_some() {
        return Ok(());
    }
    // Two threads may race to here; installing the same handler twice is harmless.
    // SAFETY: an all-zero sigaction is valid storage; the fields used are set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action.sa_mask` is valid storage for a signal set.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is initialised; the old action is not asked for (null); the handler
    // only does async-signal-safe work.
    cvt(unsafe { libc::sigaction(kind.0, &action, std::ptr::null_mut()) }).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot install a handler for {kind:?}: {err}"),
        )
    })?;
    let _ = slot.installed.set(());
    Ok(())
}

/// A stream of the deliveries of one kind of signal; see [`signal`].
///
/// `Send + Sync`: it may be made before the runtime starts and handed to a task.
pub struct Signal {
    kind: SignalKind,
    /// The generation this stream has seen.
    seen: u64,
    id: u64,
}

/// Starts listening for `kind`: every delivery from now on is an item of the returned stream
/// (coalesced while it is not polled). The first call for a kind installs its handler, which
/// stays for the life of the process (see the module docs). Works inside and outside a
/// runtime; an error if the kind cannot be listened for or the handler cannot be installed.
pub fn signal(kind: SignalKind) -> io::Result<Signal> {
    SignalKind::from_raw(kind.0)?;
    install(kind)?;
    let registry = registry()?;
    let slot = &registry.slots[kind.0 as usize];
    Ok(Signal {
        kind,
        seen: slot.generation.load(Ordering::Acquire),
        id: registry.next_id.fetch_add(1, Ordering::Relaxed),
    })
}

/// Waits for the next `SIGINT` (Ctrl-C). Listening starts when this is first polled; Ctrl-C
/// stops terminating the process from the first call on (see the module docs).
pub async fn ctrl_c() -> io::Result<()> {
    let mut interrupts = signal(SignalKind::interrupt())?;
    interrupts.recv().await;
    Ok(())
}

impl Signal {
    /// Waits for the next delivery (one since the last `recv` counts); `None` never comes,
    /// since a handler is never removed: the `Option` is the `Stream` item's.
    pub async fn recv(&mut self) -> Option<()> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The poll form of [`recv`](Signal::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<()>> {
        let Ok(registry) = registry() else {
            return Poll::Ready(None);
        };
        let slot = &registry.slots[self.kind.0 as usize];
        if self.take_delivery(slot) {
            return Poll::Ready(Some(()));
        }
        let replaced = {
            let mut waiting = lock(&slot.waiting);
            match waiting.iter_mut().find(|(id, _)| *id == self.id) {
                Some((_, waker)) if waker.will_wake(cx.waker()) => None,
                Some((_, waker)) => Some(std::mem::replace(waker, cx.waker().clone())),
                None => {
                    waiting.push((self.id, cx.waker().clone()));
                    None
                }
            }
        };
        // A waker's drop is foreign code: outside the lock.
        drop(replaced);
        // A delivery dispatched between the first look and the waker's registration.
        if self.take_delivery(slot) {
            return Poll::Ready(Some(()));
        }
        Poll::Pending
    }

    fn take_delivery(&mut self, slot: &Slot) -> bool {
        let generation = slot.generation.load(Ordering::Acquire);
        if generation != self.seen {
            self.seen = generation;
            return true;
        }
        false
    }

    /// The kind this stream receives.
    pub fn kind(&self) -> SignalKind {
        self.kind
    }
}

impl Stream for Signal {
    type Item = ();

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        self.get_mut().poll_recv(cx)
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        if let Ok(registry) = registry() {
            let slot = &registry.slots[self.kind.0 as usize];
            let removed = {
                let mut waiting = lock(&slot.waiting);
                waiting
                    .iter()
                    .position(|(id, _)| *id == self.id)
                    .map(|at| waiting.swap_remove(at))
            };
            // A waker's drop is foreign code: outside the lock.
            drop(removed);
        }
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal").field("kind", &self.kind).finish()
    }
}

// Compile-time contract (STYLE.md rule 7): a stream may be made anywhere and handed to a task.
const _: () = {
    fn send_sync<T: Send + Sync>() {}
    let _ = send_sync::<Signal>;
};
