//! `peer-uring-raw`: the echo server written straight against io_uring, with no runtime: the
//! ceiling a runtime built on io_uring can hope to reach.
//!
//! Each core is a thread with one ring and its own `SO_REUSEPORT` listener. The loop is the
//! simplest correct one:
//!
//! - one multishot accept stays armed on the listener (re-armed whenever a completion says it
//!   ended; plain one-shot accepts if the kernel refuses multishot);
//! - every connection has a slot in a slab with its fd and a 16 KiB buffer, and exactly one
//!   operation in flight: recv into the buffer, then send what was received (resubmitting the
//!   rest after a short send), then recv again;
//! - a completion's `user_data` is the slot index shifted left by two bits, with the kind of
//!   operation in the low bits;
//! - `submit_and_wait(1)` submits what the last round queued and waits for a completion.
//!
//! Since a connection has one operation in flight at most, its slot (and so its buffer) is
//! removed only when no operation uses it: on the completion that ends it (EOF or an error),
//! after which the fd is closed. The buffer is a separate heap allocation, so it does not move
//! when the slab grows.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use coreio_bench_peers::{ACCEPT_BACKOFF, BUF_CAPACITY, Listeners, Server, serve};
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use slab::Slab;
use socket2::SockRef;

const LABEL: &str = "peer-uring-raw";

/// Submission queue entries per ring; the completion queue gets twice as many.
const RING_ENTRIES: u32 = 4096;

/// The accept back-off as a kernel timespec. A `static`, so it outlives any submission.
static BACKOFF: types::Timespec = types::Timespec::new()
    .sec(ACCEPT_BACKOFF.as_secs())
    .nsec(ACCEPT_BACKOFF.subsec_nanos());

fn main() {
    serve(LABEL, Listeners::PerCore, |server| {
        server.spawn_cores(core_main)
    })
}

fn core_main(server: &Server, _core: usize) -> Result<(), String> {
    let ring = new_ring().map_err(|err| format!("io_uring_setup failed: {err}"))?;
    let listener = server.bind()?;
    let mut worker = Worker {
        ring,
        server: server.clone(),
        listener,
        conns: Slab::new(),
        multishot: true,
        completions: Vec::new(),
    };
    worker.arm_accept()?;
    server.listening();
    worker.run()
}

/// A ring with the flags that suit one thread submitting and reaping everything (the kernel runs
/// completion work only when we wait, without interrupting us); a plain ring on kernels that
/// lack them (before 6.1).
fn new_ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .build(RING_ENTRIES)
        .or_else(|_| IoUring::new(RING_ENTRIES))
}

/// The kind of operation a completion belongs to, in the low bits of its `user_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Accept = 0,
    /// The pause after an accept failure; accept is re-armed when it completes.
    Backoff = 1,
    Recv = 2,
    Send = 3,
}

const OP_BITS: u32 = 2;
const OP_MASK: u64 = (1 << OP_BITS) - 1;

fn user_data(slot: usize, op: Op) -> u64 {
    ((slot as u64) << OP_BITS) | op as u64
}

fn decode(user_data: u64) -> (usize, Op) {
    let op = match user_data & OP_MASK {
        0 => Op::Accept,
        1 => Op::Backoff,
        2 => Op::Recv,
        _ => Op::Send,
    };
    ((user_data >> OP_BITS) as usize, op)
}

/// One connection. Exactly one recv or send is in flight for it while it is in the slab.
struct Conn {
    fd: OwnedFd,
    buf: Box<[u8]>,
    /// Bytes the last recv put at the start of `buf`.
    len: usize,
    /// Of those, bytes already sent.
    sent: usize,
}

struct Worker {
    ring: IoUring,
    server: Server,
    listener: TcpListener,
    conns: Slab<Conn>,
    /// Whether accepts are multishot; cleared if the kernel rejects them.
    multishot: bool,
    /// This round's completions, copied out so that handling them can queue submissions.
    completions: Vec<(u64, i32, u32)>,
}

impl Worker {
    fn run(mut self) -> Result<(), String> {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                // Interrupted, or completions must be reaped before more can be submitted.
                Err(err) if matches!(err.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(err) => return Err(format!("io_uring_enter failed: {err}")),
            }
            let mut completions = std::mem::take(&mut self.completions);
            completions.extend(
                self.ring
                    .completion()
                    .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
            );
            for &(user_data, result, flags) in &completions {
                self.complete(user_data, result, flags)?;
            }
            completions.clear();
            self.completions = completions;
        }
    }

    fn complete(&mut self, user_data: u64, result: i32, flags: u32) -> Result<(), String> {
        let (slot, op) = decode(user_data);
        match op {
            Op::Accept => self.accepted(result, flags),
            Op::Backoff => self.arm_accept(),
            Op::Recv => self.received(slot, result),
            Op::Send => self.sent(slot, result),
        }
    }

    fn accepted(&mut self, result: i32, flags: u32) -> Result<(), String> {
        let pause = if result >= 0 {
            // SAFETY: a successful accept completion carries a new fd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(result) };
            self.open(fd)?;
            false
        } else if self.multishot && result == -libc::EINVAL {
            // A kernel before 5.19: no multishot accept; fall back to one accept at a time.
            self.multishot = false;
            false
        } else {
            let err = io::Error::from_raw_os_error(-result);
            self.server.accept_backoff(&err).is_some()
        };
        if self.multishot && cqueue::more(flags) {
            // The multishot accept is still armed.
            Ok(())
        } else if pause {
            self.arm_backoff()
        } else {
            self.arm_accept()
        }
    }

    fn open(&mut self, fd: OwnedFd) -> Result<(), String> {
        // Without it a small echo waits for the peer's delayed ACK. A failure only costs latency.
        let _ = SockRef::from(&fd).set_tcp_nodelay(true);
        let slot = self.conns.insert(Conn {
            fd,
            buf: vec![0; BUF_CAPACITY].into_boxed_slice(),
            len: 0,
            sent: 0,
        });
        self.arm_recv(slot)
    }

    fn received(&mut self, slot: usize, result: i32) -> Result<(), String> {
        if result <= 0 {
            // EOF or an error: no operation uses the slot any more; dropping it closes the fd.
            self.conns.remove(slot);
            return Ok(());
        }
        let conn = &mut self.conns[slot];
        conn.len = result as usize;
        conn.sent = 0;
        self.arm_send(slot)
    }

    fn sent(&mut self, slot: usize, result: i32) -> Result<(), String> {
        if result <= 0 {
            self.conns.remove(slot);
            return Ok(());
        }
        let conn = &mut self.conns[slot];
        conn.sent += result as usize;
        if conn.sent < conn.len {
            self.arm_send(slot)
        } else {
            self.arm_recv(slot)
        }
    }

    fn arm_accept(&mut self) -> Result<(), String> {
        let fd = types::Fd(self.listener.as_raw_fd());
        let entry = if self.multishot {
            opcode::AcceptMulti::new(fd)
                .flags(libc::SOCK_CLOEXEC)
                .build()
        } else {
            opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
        };
        let entry = entry.user_data(user_data(0, Op::Accept));
        // SAFETY: the entry points at no memory (the peer address is not asked for) and the
        // listener's fd stays open as long as the worker, which outlives the ring's use.
        unsafe { self.push(entry) }
    }

    fn arm_backoff(&mut self) -> Result<(), String> {
        let entry = opcode::Timeout::new(&BACKOFF)
            .build()
            .user_data(user_data(0, Op::Backoff));
        // SAFETY: the timespec is a `static`, valid for as long as the kernel may read it.
        unsafe { self.push(entry) }
    }

    fn arm_recv(&mut self, slot: usize) -> Result<(), String> {
        let conn = &mut self.conns[slot];
        let entry = opcode::Recv::new(
            types::Fd(conn.fd.as_raw_fd()),
            conn.buf.as_mut_ptr(),
            conn.buf.len() as u32,
        )
        .build()
        .user_data(user_data(slot, Op::Recv));
        // SAFETY: the buffer is a heap allocation owned by the slot, and the slot (with its fd)
        // is removed only on this operation's completion, so both stay valid while the kernel
        // may write into the buffer; no other operation uses the buffer meanwhile.
        unsafe { self.push(entry) }
    }

    fn arm_send(&mut self, slot: usize) -> Result<(), String> {
        let conn = &self.conns[slot];
        let rest = &conn.buf[conn.sent..conn.len];
        let entry = opcode::Send::new(
            types::Fd(conn.fd.as_raw_fd()),
            rest.as_ptr(),
            rest.len() as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(user_data(slot, Op::Send));
        // SAFETY: as for recv: the slot owns the buffer and fd and is removed only on this
        // operation's completion; nothing writes the buffer while the kernel reads it.
        unsafe { self.push(entry) }
    }

    /// Queues `entry`, first submitting what is queued if the submission queue is full.
    ///
    /// # Safety
    ///
    /// Every buffer and fd the entry refers to must stay valid until its completion is reaped.
    unsafe fn push(&mut self, entry: squeue::Entry) -> Result<(), String> {
        loop {
            // SAFETY: the caller keeps what the entry refers to valid until it completes.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            self.ring
                .submit()
                .map_err(|err| format!("io_uring_enter failed: {err}"))?;
        }
    }
}
