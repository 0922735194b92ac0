//! [`Builder`]: choosing cores, ring size, scheduling intervals and backend, with every bad
//! input reported by [`Builder::build`] as a clear error, never a panic.

// This module owns configuration and its validation: it turns a `Builder` into a `Runtime` holding
// the resolved per-core settings (`runtime::CoreConfig`; the backend is resolved by
// `driver::resolve`), and writes the shortcuts that use the defaults (`Runtime::new`, `block_on`).
// It must never start a thread or run a core: `Runtime::run` and `runtime::block_on_here` do that.

use std::future::Future;
use std::io;
use std::time::Duration;

use crate::blocking::{
    BlockingConfig, DEFAULT_BLOCKING_KEEP_ALIVE, DEFAULT_BLOCKING_QUEUE,
    DEFAULT_BLOCKING_SHUTDOWN_TIMEOUT, DEFAULT_BLOCKING_THREADS, MAX_BLOCKING_THREADS,
};
use crate::core::CoreId;
use crate::driver::uring::FileTableConfig;
use crate::driver::{
    self, Backend, DEFAULT_REGISTER_AFTER, DriverConfig, MAX_RECV_BUFFERS, RecvPoolConfig,
};
use crate::net::MIN_ZERO_COPY_SEND;
use crate::runtime::{self, CoreConfig, Runtime};
use crate::shutdown::{DEFAULT_SHUTDOWN_GRACE, Shutdown};
use crate::sys;

/// Default submission queue size of each core's ring.
pub const DEFAULT_RING_ENTRIES: u32 = 1024;
/// Largest ring the kernel accepts (`IORING_MAX_ENTRIES`).
pub const MAX_RING_ENTRIES: u32 = 32768;
/// Default number of task polls between two non-blocking checks of the driver: a prime, so
/// the check does not fall into step with periodic task patterns (tokio's figure).
pub const DEFAULT_EVENT_INTERVAL: u32 = 61;
/// Default number of tasks a core takes from its queues between two looks at its remote queue
/// (the injector of tasks woken from other threads and cores) *before* its local queue.
///
/// A core otherwise serves its local queue first and the remote queue only when the local one
/// is empty, and tasks that keep yielding keep the local queue full: without this periodic look
/// a task woken from another thread would never run. 31 is tokio's figure for its
/// current-thread scheduler: a remote wake waits behind at most 30 local polls, while the
/// extra look at the remote queue (a few atomic loads when it is empty) is made on one poll in
/// 31. It is a prime, like [`DEFAULT_EVENT_INTERVAL`], so neither check falls into step with
/// periodic task patterns or with the other.
pub const DEFAULT_REMOTE_QUEUE_INTERVAL: u32 = 31;
/// Whether [`Builder::multishot_accept`] is on unless set: decided by measurement
/// (docs/benchmarks-uring.md, "Multishot accept").
const DEFAULT_MULTISHOT_ACCEPT: bool = false;
/// Longest [`Builder::spin_before_park`]: beyond this, spinning is a busy loop, not a wait.
pub const MAX_SPIN_BEFORE_PARK: Duration = Duration::from_millis(10);
/// The largest receive buffer `Builder::recv_buffers` accepts (the kernel's limit on one
/// receive's length is far above it; a larger buffer only wastes memory per message).
const MAX_RECV_BUFFER_SIZE: u32 = 16 * 1024 * 1024;
/// `Builder::sqpoll`'s bounds: the kernel counts the idle time in milliseconds.
const MIN_SQPOLL_IDLE: Duration = Duration::from_millis(1);
const MAX_SQPOLL_IDLE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
enum CoreSelection {
    All,
    Count(usize),
    Ids(Vec<usize>),
}

/// Configures and builds a [`Runtime`].
///
/// ```
/// let rt = coreio::Builder::new()
///     .cores(1)
///     .ring_entries(256)
///     .thread_name_prefix("echo")
///     .build()
///     .unwrap();
/// assert_eq!(rt.cores().len(), 1);
///
/// // Bad input is an error, not a panic.
/// assert!(coreio::Builder::new().cores(0).build().is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    cores: CoreSelection,
    ring_entries: u32,
    event_interval: u32,
    remote_queue_interval: u32,
    spin_before_park: Duration,
    thread_name: String,
    backend: Backend,
    blocking_threads: usize,
    blocking_queue: usize,
    blocking_keep_alive: Duration,
    blocking_shutdown_timeout: Duration,
    shutdown_grace: Duration,
    deny_uring_opcodes: Vec<String>,
    recv_pool: RecvPoolConfig,
    sqpoll: Option<Duration>,
    sqpoll_cpus: Option<Vec<usize>>,
    sqpoll_shared: bool,
    zero_copy_sends: Option<usize>,
    multishot_accept: bool,
    registered_files: FileTableConfig,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Every core the process may run on, default ring size, event interval and remote queue
    /// interval, backend [`Backend::Auto`].
    pub fn new() -> Builder {
        Builder {
            cores: CoreSelection::All,
            ring_entries: DEFAULT_RING_ENTRIES,
            event_interval: DEFAULT_EVENT_INTERVAL,
            remote_queue_interval: DEFAULT_REMOTE_QUEUE_INTERVAL,
            spin_before_park: Duration::ZERO,
            thread_name: "coreio".into(),
            backend: Backend::Auto,
            blocking_threads: DEFAULT_BLOCKING_THREADS,
            blocking_queue: DEFAULT_BLOCKING_QUEUE,
            blocking_keep_alive: DEFAULT_BLOCKING_KEEP_ALIVE,
            blocking_shutdown_timeout: DEFAULT_BLOCKING_SHUTDOWN_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            deny_uring_opcodes: Vec::new(),
            recv_pool: RecvPoolConfig::default(),
            sqpoll: None,
            sqpoll_cpus: None,
            sqpoll_shared: false,
            zero_copy_sends: None,
            multishot_accept: DEFAULT_MULTISHOT_ACCEPT,
            registered_files: FileTableConfig::default(),
        }
    }

    /// Runs on the first `count` CPUs of the process's affinity mask.
    pub fn cores(mut self, count: usize) -> Builder {
        self.cores = CoreSelection::Count(count);
        self
    }

    /// Runs on exactly these CPU ids (as `taskset -c` numbers them).
    pub fn core_ids(mut self, ids: impl IntoIterator<Item = usize>) -> Builder {
        self.cores = CoreSelection::Ids(ids.into_iter().collect());
        self
    }

    /// Submission queue entries of each core's ring (1 to 32768; the completion queue gets
    /// twice as many).
    pub fn ring_entries(mut self, entries: u32) -> Builder {
        self.ring_entries = entries;
        self
    }

    /// The receive buffers of each core: at most `buffers` buffers (a power of two, at most
    /// 32768) of `buffer_size` bytes each, lent to the core's receive streams
    /// ([`TcpStream::recv_stream`](crate::net::TcpStream::recv_stream)) as data arrives and
    /// given back when the [`PooledBuf`](crate::buf::PooledBuf) holding it is dropped. The
    /// memory (`buffers * buffer_size` bytes per core) is reserved by the first receive stream
    /// of a core, which puts 256 buffers in circulation; each time receives find them all lent
    /// out, 256 more join, up to `buffers`. Only buffers in circulation are touched, so the
    /// resident memory follows the core's peak demand. Defaults:
    /// [`DEFAULT_RECV_BUFFERS`](crate::buf::DEFAULT_RECV_BUFFERS) of
    /// [`DEFAULT_RECV_BUFFER_SIZE`](crate::buf::DEFAULT_RECV_BUFFER_SIZE) bytes. The
    /// `COREIO_RECV_BUFFERS` environment variable overrides the count.
    pub fn recv_buffers(mut self, buffers: u16, buffer_size: u32) -> Builder {
        self.recv_pool.buffers = buffers;
        self.recv_pool.buffer_size = buffer_size;
        self
    }

    /// io_uring: whether receive streams use a multishot receive over a provided buffer ring
    /// (one submission for many receives, the kernel picking the buffer; Linux 6.0), where the
    /// kernel has them (default `true`). `false` makes them read into a buffer taken from the
    /// pool before each receive, as on epoll. The `COREIO_MULTISHOT_RECV` environment variable
    /// (`0` or `1`) overrides this.
    pub fn multishot_recv(mut self, enabled: bool) -> Builder {
        self.recv_pool.multishot = enabled;
        self
    }

    /// io_uring: gives each core's ring a kernel thread that polls its submission queue
    /// (`IORING_SETUP_SQPOLL`), so that submitting needs no `io_uring_enter` while the thread is
    /// awake; it sleeps after `idle` without work (1 ms to 10 s), and the next submission wakes
    /// it. Off by default: the thread spins on a CPU while awake, which buys latency with CPU
    /// time (docs/benchmarks-uring.md measures both). A kernel that refuses it (before 5.11 it
    /// needs privileges) runs the ring without one, with a warning;
    /// [`stats::ring`](crate::stats::ring) says which.
    pub fn sqpoll(mut self, idle: Duration) -> Builder {
        self.sqpoll = Some(idle);
        self
    }

    /// io_uring: binds the polling threads of [`sqpoll`](Builder::sqpoll) to CPUs
    /// (`IORING_SETUP_SQ_AFF`): the `i`-th core's thread to the `i`-th of `cpus`, starting over
    /// when there are fewer CPUs than cores ([`block_on`](Builder::block_on) takes the first).
    /// Unbound, a polling thread runs where its core's thread may, which on a core pinned to
    /// one CPU means sharing that CPU with the core it serves; bound to a CPU of its own (a
    /// hyperthread sibling, a housekeeping CPU) it takes nothing from it. A CPU may be listed
    /// for several cores, and need not be in the process's affinity mask (only in its cpuset).
    ///
    /// [`build`](Builder::build) refuses an empty list, a CPU this machine does not have, and
    /// the setting without `sqpoll`; a kernel that refuses the CPU runs the thread unbound,
    /// with a warning, and [`stats::ring`](crate::stats::ring) says where each thread runs.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let polled = coreio::Builder::new().cores(1).sqpoll(Duration::from_millis(10));
    /// assert!(polled.clone().sqpoll_cpus([0]).build().is_ok());
    /// assert!(polled.sqpoll_cpus([usize::MAX]).build().is_err());
    /// assert!(coreio::Builder::new().sqpoll_cpus([0]).build().is_err());
    /// ```
    pub fn sqpoll_cpus(mut self, cpus: impl IntoIterator<Item = usize>) -> Builder {
        self.sqpoll_cpus = Some(cpus.into_iter().collect());
        self
    }

    /// io_uring: one polling thread for every core's ring instead of one per core
    /// (`IORING_SETUP_ATTACH_WQ`): the first core's ring starts it, with
    /// [`sqpoll`](Builder::sqpoll)'s idle time and, given, the one CPU of
    /// [`sqpoll_cpus`](Builder::sqpoll_cpus), and the other cores' rings attach to it as they
    /// start. One CPU then polls for all the cores, which suits a light load spread over many
    /// cores; under a heavy one the thread becomes the bottleneck, as every submission of every
    /// core waits for it. A ring the kernel will not attach starts a thread of its own, with a
    /// warning; [`stats::ring`](crate::stats::ring)'s `sqpoll_shared` tells which did.
    ///
    /// [`build`](Builder::build) refuses it without `sqpoll`, or with more than one CPU in
    /// `sqpoll_cpus`.
    pub fn sqpoll_shared(mut self, shared: bool) -> Builder {
        self.sqpoll_shared = shared;
        self
    }

    /// io_uring: stream writes of at least `min_len` bytes (4096 or more) are zero-copy sends
    /// (`IORING_OP_SEND_ZC`, Linux 6.0): the kernel sends from the buffer's pages instead of
    /// copying them, and the write returns once the kernel no longer reads the buffer (its
    /// notification, which for TCP comes when the peer acknowledged the bytes). Off by
    /// default: a write then lasts a round trip (and a delayed ACK) instead of a copy, which
    /// loses on every size measured here (docs/benchmarks-uring.md); it pays for large
    /// buffers on a real NIC when many writes are in flight. Unix streams, pipes, epoll and kernels
    /// without the opcode make plain sends. The `COREIO_ZERO_COPY_MIN` environment variable
    /// (bytes; `0` turns it off) overrides this.
    pub fn zero_copy_sends(mut self, min_len: usize) -> Builder {
        self.zero_copy_sends = Some(min_len);
        self
    }

    /// Whether listeners accept through one multishot accept (`IORING_ACCEPT_MULTISHOT`, Linux
    /// 5.19+) that serves connection after connection, rather than one accept per connection
    /// (io_uring only; epoll accepts as always). A kernel that refuses it is detected at the
    /// first accept and the core goes back to one-shot accepts. The `COREIO_MULTISHOT_ACCEPT`
    /// environment variable (`1` or `0`) overrides this. See `docs/backends.md` for what it
    /// changes: with it, the kernel takes connections off the backlog as they arrive, whether
    /// or not an accept is waiting, and the listener keeps them until one is.
    pub fn multishot_accept(mut self, enabled: bool) -> Builder {
        self.multishot_accept = enabled;
        self
    }

    /// io_uring: each core's registered file table has `slots` slots (default
    /// [`DEFAULT_REGISTERED_FILES`](crate::DEFAULT_REGISTERED_FILES), capped by `RLIMIT_NOFILE`; `0` means no table), and a
    /// socket takes one once it has started `register_after` operations (default
    /// [`DEFAULT_REGISTER_AFTER`], at least 1). The operations of a registered socket name its
    /// slot instead of its descriptor, which saves the kernel a descriptor lookup and a file
    /// reference count on each. A socket that finds the table full, or a kernel without sparse
    /// tables (before 5.19), or a ring with [`sqpoll`](Builder::sqpoll), uses its descriptor as
    /// always. Closing a registered socket costs one `io_uring_enter`, which empties its slot
    /// before the descriptor closes (`docs/architecture.md`). The `COREIO_REGISTERED_FILES`
    /// environment variable (`slots` or `slots:register_after`; `0` for none) overrides this.
    pub fn registered_files(mut self, slots: u32, register_after: u32) -> Builder {
        self.registered_files = FileTableConfig {
            slots,
            register_after,
        };
        self
    }

    /// Treats these optional io_uring opcodes as missing from the kernel, by name (`"STATX"`,
    /// `"FTRUNCATE"`, `"OPENAT"`, ...: the file and path opcodes, `CLOSE`, `MSG_RING`): the
    /// operations that use them run on the blocking pool instead, as on a kernel without
    /// them. For testing that path, comparing the two, or keeping file I/O off the ring of a
    /// kernel whose implementation misbehaves. The `COREIO_URING_DENY` environment variable
    /// (comma-separated names) adds to the list. An unknown name fails `build`.
    pub fn deny_uring_opcodes<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Builder {
        self.deny_uring_opcodes
            .extend(names.into_iter().map(str::to_owned));
        self
    }

    /// Task polls between two non-blocking checks of the I/O driver (default 61).
    pub fn event_interval(mut self, polls: u32) -> Builder {
        self.event_interval = polls;
        self
    }

    /// Every `polls`-th task a core polls is taken from its remote queue (tasks woken from other
    /// threads and cores) when that holds one, even though the local queue is not empty
    /// (default [`DEFAULT_REMOTE_QUEUE_INTERVAL`], 31; at least 1).
    ///
    /// This bounds how long a remote wake can wait behind local tasks that keep yielding. A
    /// smaller value serves remote wakes sooner, at the price of looking at the remote queue
    /// more often; 1 takes remote tasks before local ones on every poll.
    ///
    /// ```
    /// let rt = coreio::Builder::new().cores(1).remote_queue_interval(7).build();
    /// assert!(rt.is_ok());
    /// assert!(coreio::Builder::new().remote_queue_interval(0).build().is_err());
    /// ```
    pub fn remote_queue_interval(mut self, polls: u32) -> Builder {
        self.remote_queue_interval = polls;
        self
    }

    /// How long an idle core keeps polling the driver before it blocks (default zero: block at
    /// once; at most 10 ms).
    ///
    /// A core that blocks must be woken by the kernel when the next completion or readiness
    /// event arrives, which costs a context switch and several microseconds of latency. Spinning
    /// for a few tens of microseconds first lets a request that follows closely behind the last
    /// one be served without that wake-up, at the price of CPU time burned while idle: every
    /// idle period shorter than the spin is spent fully on the CPU. Worth it for
    /// latency-sensitive servers on dedicated cores; wasteful on shared ones.
    pub fn spin_before_park(mut self, spin: Duration) -> Builder {
        self.spin_before_park = spin;
        self
    }

    /// Prefix of the core threads' names; the CPU id is appended (`coreio-3`). Blocking pool
    /// threads are named `<prefix>-blocking-N`.
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Builder {
        self.thread_name = prefix.into();
        self
    }

    /// The I/O backend; the environment variable `COREIO_BACKEND` (`auto`, `uring`, `epoll`)
    /// overrides it.
    pub fn backend(mut self, backend: Backend) -> Builder {
        self.backend = backend;
        self
    }

    /// The most threads the blocking pool runs at once (default [`DEFAULT_BLOCKING_THREADS`],
    /// 64; 1 to [`MAX_BLOCKING_THREADS`]); see [`spawn_blocking`](crate::spawn_blocking).
    ///
    /// ```
    /// let rt = coreio::Builder::new().cores(1).blocking_threads(4).build();
    /// assert!(rt.is_ok());
    /// assert!(coreio::Builder::new().blocking_threads(0).build().is_err());
    /// ```
    pub fn blocking_threads(mut self, threads: usize) -> Builder {
        self.blocking_threads = threads;
        self
    }

    /// The most jobs that wait for a blocking pool thread while every thread is busy (default
    /// [`DEFAULT_BLOCKING_QUEUE`], 16384). A job beyond that is refused: its handle resolves to
    /// [`BlockingError::QueueFull`](crate::BlockingError::QueueFull). 0 queues nothing: a job
    /// runs at once or is refused.
    pub fn blocking_queue(mut self, jobs: usize) -> Builder {
        self.blocking_queue = jobs;
        self
    }

    /// How long a blocking pool thread with nothing to do waits for a job before it exits
    /// (default [`DEFAULT_BLOCKING_KEEP_ALIVE`], 10 s). An idle pool shrinks to no thread.
    pub fn blocking_keep_alive(mut self, keep_alive: Duration) -> Builder {
        self.blocking_keep_alive = keep_alive;
        self
    }

    /// How long a stopping runtime waits for blocking jobs still running or queued (default
    /// [`DEFAULT_BLOCKING_SHUTDOWN_TIMEOUT`], 5 s). After that, jobs still queued are
    /// discarded without running, and a job still running is left to finish on its own,
    /// detached thread, its output dropped.
    pub fn blocking_shutdown_timeout(mut self, timeout: Duration) -> Builder {
        self.blocking_shutdown_timeout = timeout;
        self
    }

    /// How long a triggered [shutdown](crate::shutdown) waits for the runtime's tasks to
    /// finish before it cancels those still running (default
    /// [`DEFAULT_SHUTDOWN_GRACE`], 10 s). Zero cancels
    /// at once, as a second trigger does.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = coreio::Builder::new().cores(1).shutdown_grace(Duration::from_secs(30)).build();
    /// assert_eq!(rt.unwrap().shutdown_handle().grace(), Duration::from_secs(30));
    /// ```
    pub fn shutdown_grace(mut self, grace: Duration) -> Builder {
        self.shutdown_grace = grace;
        self
    }

    /// Validates the settings and picks the backend.
    ///
    /// Errors (`InvalidInput` unless said otherwise): zero cores; more cores than the process
    /// may use; an unknown or repeated core id, or one outside the process's affinity mask; ring
    /// entries, event interval, remote queue interval or blocking threads out of range; a
    /// `sqpoll` idle time out of range, or `sqpoll_cpus` empty, naming a CPU this machine does
    /// not have, or set without `sqpoll`; `sqpoll_shared` without `sqpoll` or with several
    /// `sqpoll_cpus`; an unknown `COREIO_BACKEND`; io_uring forced but unavailable (the
    /// [`RingSetupError`](crate::RingSetupError) names the cause and the remedy).
    pub fn build(self) -> io::Result<Runtime> {
        let cores = self.select_cores()?;
        let config = self.core_config()?;
        let shutdown = Shutdown::new(config.shutdown_grace);
        Ok(Runtime {
            cores,
            config,
            shutdown,
        })
    }

    /// Runs `future` on the calling thread as a one-core runtime with these settings (the
    /// core selection is ignored and the thread is not pinned). A panic in `future` propagates.
    pub fn block_on<F: Future + 'static>(self, future: F) -> io::Result<F::Output>
    where
        F::Output: 'static,
    {
        runtime::block_on_here(&self.core_config()?, future)
    }

    fn core_config(&self) -> io::Result<CoreConfig> {
        if self.ring_entries == 0 || self.ring_entries > MAX_RING_ENTRIES {
            return Err(invalid(format!(
                "ring_entries must be between 1 and {MAX_RING_ENTRIES}, got {}",
                self.ring_entries
            )));
        }
        if self.event_interval == 0 {
            return Err(invalid("event_interval must be at least 1".into()));
        }
        if self.remote_queue_interval == 0 {
            return Err(invalid(
                "remote_queue_interval must be at least 1, got 0 (1 takes remote tasks first \
                 on every poll)"
                    .into(),
            ));
        }
        if self.spin_before_park > MAX_SPIN_BEFORE_PARK {
            return Err(invalid(format!(
                "spin_before_park must be at most {MAX_SPIN_BEFORE_PARK:?}, got {:?}",
                self.spin_before_park
            )));
        }
        if self.blocking_threads == 0 || self.blocking_threads > MAX_BLOCKING_THREADS {
            return Err(invalid(format!(
                "blocking_threads must be between 1 and {MAX_BLOCKING_THREADS}, got {}",
                self.blocking_threads
            )));
        }
        let mut recv = self.recv_pool;
        if let Ok(text) = std::env::var("COREIO_RECV_BUFFERS") {
            recv.buffers = text.trim().parse().map_err(|_| {
                invalid(format!(
                    "COREIO_RECV_BUFFERS={text:?} is not a buffer count"
                ))
            })?;
        }
        if !recv.buffers.is_power_of_two() || recv.buffers > MAX_RECV_BUFFERS {
            return Err(invalid(format!(
                "recv_buffers: the buffer count must be a power of two between 1 and \
                 {MAX_RECV_BUFFERS}, got {}",
                recv.buffers
            )));
        }
        if recv.buffer_size == 0 || recv.buffer_size > MAX_RECV_BUFFER_SIZE {
            return Err(invalid(format!(
                "recv_buffers: the buffer size must be between 1 and {MAX_RECV_BUFFER_SIZE} \
                 bytes, got {}",
                recv.buffer_size
            )));
        }
        let recv_pool = RecvPoolConfig {
            multishot: driver::switch_from_env("COREIO_MULTISHOT_RECV")?.unwrap_or(recv.multishot),
            ..recv
        };
        if let Some(idle) = self.sqpoll
            && !(MIN_SQPOLL_IDLE..=MAX_SQPOLL_IDLE).contains(&idle)
        {
            return Err(invalid(format!(
                "sqpoll idle time must be between {MIN_SQPOLL_IDLE:?} and {MAX_SQPOLL_IDLE:?}, \
                 got {idle:?}"
            )));
        }
        let sqpoll_cpus = self.checked_sqpoll_cpus()?;
        let zero_copy_sends = match std::env::var("COREIO_ZERO_COPY_MIN") {
            Ok(text) => match text.trim().parse::<usize>() {
                Ok(0) => None,
                Ok(min) => Some(min),
                Err(_) => {
                    return Err(invalid(format!(
                        "COREIO_ZERO_COPY_MIN={text:?} is not a byte count (0 turns it off)"
                    )));
                }
            },
            Err(_) => self.zero_copy_sends,
        };
        if let Some(min) = zero_copy_sends
            && min < MIN_ZERO_COPY_SEND
        {
            return Err(invalid(format!(
                "zero_copy_sends: the smallest zero-copy send is {MIN_ZERO_COPY_SEND} bytes, \
                 got {min}"
            )));
        }
        let registered_files = registered_files_from_env()?.unwrap_or(self.registered_files);
        if registered_files.register_after == 0 {
            return Err(invalid(
                "registered_files: a socket registers after at least 1 operation, got 0".into(),
            ));
        }
        let requested = Backend::from_env()?.unwrap_or(self.backend);
        let backend = driver::resolve(requested, self.ring_entries)?;
        let from_env = std::env::var("COREIO_URING_DENY").unwrap_or_default();
        let denied_opcodes = driver::optional_opcodes(
            self.deny_uring_opcodes
                .iter()
                .map(String::as_str)
                .chain(from_env.split(',').map(str::trim).filter(|n| !n.is_empty())),
        )
        .map_err(invalid)?;
        Ok(CoreConfig {
            driver: DriverConfig {
                backend,
                ring_entries: self.ring_entries,
                denied_opcodes,
                recv_pool,
                sqpoll: self.sqpoll,
                sqpoll_cpus,
                sqpoll_shared: self.sqpoll_shared,
                zero_copy_sends,
                multishot_accept: driver::switch_from_env("COREIO_MULTISHOT_ACCEPT")?
                    .unwrap_or(self.multishot_accept),
                registered_files: (registered_files.slots > 0).then_some(registered_files),
                recv_poll_first: driver::switch_from_env("COREIO_RECV_POLL_FIRST")?.unwrap_or(true),
            },
            event_interval: self.event_interval,
            remote_queue_interval: self.remote_queue_interval,
            spin_before_park: self.spin_before_park,
            thread_name: self.thread_name.clone(),
            shutdown_grace: self.shutdown_grace,
            blocking: BlockingConfig {
                max_threads: self.blocking_threads,
                queue_capacity: self.blocking_queue,
                keep_alive: self.blocking_keep_alive,
                shutdown_timeout: self.blocking_shutdown_timeout,
                thread_name: self.thread_name.clone(),
            },
        })
    }

    /// [`sqpoll_cpus`](Builder::sqpoll_cpus), checked with
    /// [`sqpoll_shared`](Builder::sqpoll_shared): empty when not set.
    fn checked_sqpoll_cpus(&self) -> io::Result<Vec<usize>> {
        if self.sqpoll_shared && self.sqpoll.is_none() {
            return Err(invalid(
                "sqpoll_shared shares the polling thread of Builder::sqpoll, which is not set"
                    .into(),
            ));
        }
        let Some(cpus) = &self.sqpoll_cpus else {
            return Ok(Vec::new());
        };
        if self.sqpoll_shared && cpus.len() > 1 {
            return Err(invalid(format!(
                "sqpoll_shared runs one polling thread, on one CPU: sqpoll_cpus lists {} \
                 ({cpus:?})",
                cpus.len()
            )));
        }
        if self.sqpoll.is_none() {
            return Err(invalid(
                "sqpoll_cpus binds the polling threads of Builder::sqpoll, which is not set".into(),
            ));
        }
        if cpus.is_empty() {
            return Err(invalid(
                "sqpoll_cpus needs at least one CPU, got none".into(),
            ));
        }
        let online = online_cpus();
        if let Some(cpu) = cpus.iter().find(|cpu| !online.contains(cpu)) {
            return Err(invalid(format!(
                "sqpoll_cpus: CPU {cpu} does not exist on this machine (CPUs: {online:?})"
            )));
        }
        Ok(cpus.clone())
    }

    fn select_cores(&self) -> io::Result<Vec<CoreId>> {
        let allowed = sys::allowed_cpus()?;
        let ids = match &self.cores {
            CoreSelection::All => allowed,
            CoreSelection::Count(0) => {
                return Err(invalid("a runtime needs at least one core, got 0".into()));
            }
            CoreSelection::Count(count) => {
                if *count > allowed.len() {
                    return Err(invalid(format!(
                        "asked for {count} cores but this process may only run on {} ({allowed:?})",
                        allowed.len()
                    )));
                }
                allowed[..*count].to_vec()
            }
            CoreSelection::Ids(ids) => {
                if ids.is_empty() {
                    return Err(invalid(
                        "a runtime needs at least one core id, got none".into(),
                    ));
                }
                let online = online_cpus();
                for (i, id) in ids.iter().enumerate() {
                    if ids[..i].contains(id) {
                        return Err(invalid(format!("core id {id} is listed twice")));
                    }
                    if !online.contains(id) {
                        return Err(invalid(format!(
                            "core id {id} does not exist on this machine (CPUs: {online:?})"
                        )));
                    }
                    if !allowed.contains(id) {
                        return Err(invalid(format!(
                            "core id {id} is outside this process's CPU affinity mask \
                             ({allowed:?}); check taskset or the container's cpuset"
                        )));
                    }
                }
                ids.clone()
            }
        };
        Ok(ids.into_iter().map(CoreId).collect())
    }
}

// `Runtime::new` and `block_on` are the builder's defaults, so they are written here: the
// builder makes a `Runtime` from a resolved `CoreConfig`, and `runtime.rs` never looks back at
// a `Builder`.
impl Runtime {
    /// A runtime on every core this process may run on, with default settings.
    pub fn new() -> io::Result<Runtime> {
        Builder::new().build()
    }
}

/// Runs `future` to completion on the calling thread, as a one-core runtime with default
/// settings (the backend from `COREIO_BACKEND`, else the best available). The thread is not
/// pinned. A panic in `future` propagates to the caller, as if the future were a function call.
///
/// ```
/// let answer = coreio::block_on(async { 6 * 7 }).unwrap();
/// assert_eq!(answer, 42);
/// ```
pub fn block_on<F: Future + 'static>(future: F) -> io::Result<F::Output>
where
    F::Output: 'static,
{
    Builder::new().cores(1).block_on(future)
}

/// `COREIO_REGISTERED_FILES`: `slots` or `slots:register_after` (`0` for no table); `None`
/// when unset.
fn registered_files_from_env() -> io::Result<Option<FileTableConfig>> {
    const VAR: &str = "COREIO_REGISTERED_FILES";
    let Ok(text) = std::env::var(VAR) else {
        return Ok(None);
    };
    let (slots, after) = match text.trim().split_once(':') {
        Some((slots, after)) => (slots, Some(after)),
        None => (text.trim(), None),
    };
    let parse = |field: &str| field.trim().parse::<u32>().ok();
    let slots = parse(slots);
    let after = after.map_or(Some(DEFAULT_REGISTER_AFTER), parse);
    match (slots, after) {
        (Some(slots), Some(register_after)) => Ok(Some(FileTableConfig {
            slots,
            register_after,
        })),
        _ => Err(invalid(format!(
            "{VAR}={text:?} is not `slots` or `slots:register_after` (`0` for no table)"
        ))),
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// CPU ids the machine has online, from sysfs; falls back to `0..nprocs`.
fn online_cpus() -> Vec<usize> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|list| parse_cpu_list(list.trim()))
        .unwrap_or_else(|| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            (0..n).collect()
        })
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((lo, hi)) => cpus.extend(lo.parse::<usize>().ok()?..=hi.parse::<usize>().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::parse_cpu_list;

    #[test]
    fn parses_kernel_cpu_lists() {
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("x"), None);
    }
}
