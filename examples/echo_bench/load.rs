//! The load itself: what one client core does with its connections.
//!
//! Closed loop: each connection sends a message, reads the whole echo back, checks it and
//! repeats; one message in flight per connection, latency from send to last byte back.
//!
//! Open loop: a pacer task per core releases messages on a fixed schedule (the core's share of
//! `--rate`, spread evenly over its connections) and each connection has a writer, which sends
//! what has been released, and a reader, which reads the echoes back in order. Latency runs from
//! a message's *intended* send time, so a server that stalls is charged for every message that
//! should have gone out meanwhile (coordinated omission corrected, as in wrk2). Timers tick in
//! milliseconds, so the pacer sleeps until shortly before a send and then spins with
//! `yield_now`: the open loop keeps the client's cores busy on purpose.
//!
//! UDP (closed loop only): each socket sends a datagram, waits up to the datagram timeout for
//! its echo and repeats; a datagram whose echo does not come in time is counted as lost and the
//! next one is sent. The stamp carries the sequence number, so the late echo of a datagram
//! already counted as lost is recognised and skipped, never taken for the current one's.
//!
//! Messages are checked against the pattern they were sent with: a per-connection pattern that
//! varies with the offset, stamped with the message number, so bytes from another connection,
//! an older message or another offset all show.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use coreio::buf::{IoBuf, IoBufMut};
use coreio::net::{DatagramTruncated, TcpStream, UdpSocket, UnixStream};
use hdrhistogram::Histogram;

use crate::options::Target;

/// How long past the end of the window a connection may take before it counts as hung.
const GRACE: Duration = Duration::from_secs(10);
/// How many error messages each core keeps; the rest are only counted.
const MAX_REPORTED_ERRORS: usize = 5;
/// The pacer spins rather than sleeps when the next send is nearer than this (timers tick in
/// milliseconds and round up, so a shorter sleep would make it late).
const SPIN_WINDOW: Duration = Duration::from_millis(2);
/// The longest latency the histograms hold; longer ones are recorded as this.
const MAX_LATENCY_NS: u64 = 100_000_000_000;

/// The timeline and shape of the load, shared by every core.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub target: Target,
    pub size: usize,
    /// How long a UDP datagram's echo may take before it counts as lost.
    pub udp_timeout: Duration,
    /// When the connections start (warm-up begins).
    pub start: Instant,
    /// Start of the measured window.
    pub measure_from: Instant,
    /// End of the measured window; no message is sent after it.
    pub end: Instant,
    /// Messages per second in total, for the open loop.
    pub rate: Option<f64>,
    /// Connections in total, over all cores.
    pub conns: usize,
}

impl Plan {
    fn in_window(&self, at: Instant) -> bool {
        at >= self.measure_from && at < self.end
    }
}

/// Live counters of one core, read by the progress thread; padded so cores do not share a line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Progress {
    /// Messages echoed and checked, warm-up included.
    pub messages: AtomicU64,
    /// Connections that failed.
    pub errors: AtomicU64,
}

/// What one core measured.
pub struct CoreStats {
    /// Latency of the messages in the window, in nanoseconds.
    pub histogram: Histogram<u64>,
    /// Messages in the window (completed in it for the closed loop, intended in it for the open).
    pub messages: u64,
    /// Connections that failed (connect, I/O, a wrong byte, no echo in time).
    pub errors: u64,
    /// Messages that came back with a wrong byte (each also counts as an error).
    pub mismatches: u64,
    /// UDP datagrams given up in the window: no echo within the datagram timeout.
    pub lost: u64,
    /// Echoes of datagrams already counted as lost that came later, skipped.
    pub late: u64,
    /// The first few error messages.
    pub reported: Vec<String>,
}

impl CoreStats {
    pub fn new() -> CoreStats {
        CoreStats {
            histogram: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("constant histogram bounds are valid"),
            messages: 0,
            errors: 0,
            mismatches: 0,
            lost: 0,
            late: 0,
            reported: Vec::new(),
        }
    }

    pub fn fail(&mut self, message: String) {
        self.errors += 1;
        if self.reported.len() < MAX_REPORTED_ERRORS {
            self.reported.push(message);
        }
    }

    pub fn merge(&mut self, other: CoreStats) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.messages += other.messages;
        self.errors += other.errors;
        self.mismatches += other.mismatches;
        self.lost += other.lost;
        self.late += other.late;
        for message in other.reported {
            if self.reported.len() < MAX_REPORTED_ERRORS {
                self.reported.push(message);
            }
        }
    }

    fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.histogram
            .saturating_record(ns.clamp(1, MAX_LATENCY_NS));
        self.messages += 1;
    }
}

/// Runs connections `ids` (numbered over all cores) on the current core until the plan ends.
pub async fn run_core(plan: Plan, ids: Vec<usize>, progress: Arc<Progress>) -> CoreStats {
    let stats = Rc::new(RefCell::new(CoreStats::new()));
    let mut tasks = Vec::with_capacity(ids.len() + 1);
    match plan.rate {
        None if matches!(plan.target, Target::Udp(_)) => {
            for &id in &ids {
                let (stats, progress) = (stats.clone(), progress.clone());
                tasks.push(coreio::spawn(async move {
                    let work = datagram_loop(id, plan, &stats, &progress);
                    guard(id, plan, &stats, &progress, work).await
                }));
            }
        }
        None => {
            for &id in &ids {
                let (stats, progress) = (stats.clone(), progress.clone());
                tasks.push(coreio::spawn(async move {
                    let work = closed_loop(id, plan, &stats, &progress);
                    guard(id, plan, &stats, &progress, work).await
                }));
            }
        }
        Some(rate) => {
            // This core's share of the rate, in proportion to its share of the connections.
            let share = rate * ids.len() as f64 / plan.conns as f64;
            let gap = Duration::from_secs_f64(1.0 / share);
            let lanes: Vec<Rc<Lane>> = ids.iter().map(|_| Rc::new(Lane::default())).collect();
            for (index, &id) in ids.iter().enumerate() {
                let (stats, progress) = (stats.clone(), progress.clone());
                let lane = lanes[index].clone();
                let schedule = Schedule {
                    start: plan.start,
                    gap,
                    lanes: ids.len() as u64,
                    lane: index as u64,
                };
                tasks.push(coreio::spawn(async move {
                    let work = open_loop(id, plan, schedule, &lane, &stats, &progress);
                    guard(id, plan, &stats, &progress, work).await
                }));
            }
            tasks.push(coreio::spawn(pace(plan, gap, lanes)));
        }
    }
    for task in tasks {
        if let Err(err) = task.await {
            stats
                .borrow_mut()
                .fail(format!("a connection task failed: {err}"));
        }
    }
    Rc::try_unwrap(stats)
        .map(RefCell::into_inner)
        .unwrap_or_else(|_| unreachable!("every task holding the stats has finished"))
}

/// Runs one connection's work with a deadline, so a server that stops answering is an error
/// rather than a hang, and counts its failure.
async fn guard(
    id: usize,
    plan: Plan,
    stats: &RefCell<CoreStats>,
    progress: &Progress,
    work: impl Future<Output = Result<(), String>>,
) {
    let failure = match coreio::time::timeout_at(plan.end + GRACE, work).await {
        Ok(Ok(())) => return,
        Ok(Err(message)) => format!("conn {id}: {message}"),
        Err(_) => format!("conn {id}: no echo within {GRACE:?} after the end of the run"),
    };
    progress.errors.fetch_add(1, Ordering::Relaxed);
    stats.borrow_mut().fail(failure);
}

/// A connected stream of either kind; the match per call costs nothing next to the I/O.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        match self {
            Stream::Tcp(stream) => stream.write_all(buf).await,
            Stream::Unix(stream) => stream.write_all(buf).await,
        }
    }

    async fn read_exact<B: IoBufMut>(&self, buf: B) -> (io::Result<()>, B) {
        match self {
            Stream::Tcp(stream) => stream.read_exact(buf).await,
            Stream::Unix(stream) => stream.read_exact(buf).await,
        }
    }
}

async fn connect(target: Target) -> Result<Stream, String> {
    match target {
        Target::Tcp(addr) => {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|err| format!("cannot connect to {addr}: {err}"))?;
            stream
                .set_nodelay(true)
                .map_err(|err| format!("cannot set TCP_NODELAY: {err}"))?;
            Ok(Stream::Tcp(stream))
        }
        Target::Unix(path) => UnixStream::connect(path)
            .await
            .map(Stream::Unix)
            // The error names the path.
            .map_err(|err| format!("cannot connect: {err}")),
        Target::Udp(addr) => Err(format!("udp:{addr} is not a stream")),
    }
}

/// Reads message `seq`'s echo into `incoming`, checks it and counts it; returns the buffer and
/// the time its last byte arrived.
async fn receive(
    stream: &Stream,
    incoming: Box<[u8]>,
    pattern: &Pattern,
    seq: u64,
    stats: &RefCell<CoreStats>,
    progress: &Progress,
) -> Result<(Box<[u8]>, Instant), String> {
    let (res, incoming) = stream.read_exact(incoming).await;
    res.map_err(|err| format!("read of message {seq} failed: {err}"))?;
    let done = Instant::now();
    pattern.check(&incoming, seq, stats)?;
    progress.messages.fetch_add(1, Ordering::Relaxed);
    Ok((incoming, done))
}

/// One message in flight: send, read the whole echo, check, repeat until the window ends.
async fn closed_loop(
    id: usize,
    plan: Plan,
    stats: &RefCell<CoreStats>,
    progress: &Progress,
) -> Result<(), String> {
    let stream = connect(plan.target).await?;
    let pattern = Pattern::new(id, plan.size);
    let mut outgoing = pattern.base.clone();
    // Boxed slices: `read_exact` fills exactly their length, whatever a Vec's capacity would be.
    let mut incoming: Box<[u8]> = vec![0; plan.size].into_boxed_slice();
    let mut seq = 0u64;
    loop {
        let sent_at = Instant::now();
        if sent_at >= plan.end {
            return Ok(());
        }
        pattern.stamp(&mut outgoing, seq);
        let (res, buf) = stream.write_all(outgoing).await;
        outgoing = buf;
        res.map_err(|err| format!("write of message {seq} failed: {err}"))?;
        let done;
        (incoming, done) = receive(&stream, incoming, &pattern, seq, stats, progress).await?;
        if plan.in_window(done) {
            stats.borrow_mut().record(done - sent_at);
        }
        seq += 1;
    }
}

/// One UDP socket, one datagram in flight: send, wait up to the timeout for its echo (skipping
/// late echoes of datagrams already given up), check, repeat until the window ends.
async fn datagram_loop(
    id: usize,
    plan: Plan,
    stats: &RefCell<CoreStats>,
    progress: &Progress,
) -> Result<(), String> {
    let Target::Udp(addr) = plan.target else {
        return Err(format!("{} is not a UDP target", plan.target));
    };
    let local = match addr {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let socket =
        UdpSocket::bind(local).map_err(|err| format!("cannot bind a UDP socket: {err}"))?;
    // Connected: only the server's datagrams are received, and a closed port is an error.
    socket
        .connect(addr)
        .map_err(|err| format!("cannot connect a UDP socket to {addr}: {err}"))?;
    let pattern = Pattern::new(id, plan.size);
    let mut outgoing = pattern.base.clone();
    // A receive that times out is dropped with its buffer; the next one gets a new buffer.
    let mut spare: Option<Vec<u8>> = None;
    let mut seq = 0u64;
    loop {
        let sent_at = Instant::now();
        if sent_at >= plan.end {
            return Ok(());
        }
        pattern.stamp(&mut outgoing, seq);
        let (res, buf) = socket.send(outgoing).await;
        outgoing = buf;
        res.map_err(|err| format!("send of datagram {seq} failed: {err}"))?;
        // An echo after the window's end would not count, so the wait stops there too.
        let give_up = (sent_at + plan.udp_timeout).min(plan.end);
        loop {
            let buf = spare
                .take()
                .unwrap_or_else(|| Vec::with_capacity(plan.size));
            let Ok((res, buf)) = coreio::time::timeout_at(give_up, socket.recv(buf)).await else {
                if plan.in_window(give_up) {
                    stats.borrow_mut().lost += 1;
                }
                break;
            };
            let done = Instant::now();
            match res {
                Ok(_) => {}
                Err(err) if is_truncated(&err) => {
                    stats.borrow_mut().mismatches += 1;
                    return Err(format!(
                        "datagram {seq} came back longer than the {} bytes sent",
                        plan.size
                    ));
                }
                Err(err) => return Err(format!("receive of datagram {seq} failed: {err}")),
            }
            match pattern.sequence(&buf) {
                Some(earlier) if earlier < seq => {
                    stats.borrow_mut().late += 1;
                    spare = Some(buf);
                    continue;
                }
                _ => {}
            }
            if buf.len() != plan.size {
                stats.borrow_mut().mismatches += 1;
                return Err(format!(
                    "datagram {seq} came back with {} bytes instead of {}",
                    buf.len(),
                    plan.size
                ));
            }
            pattern.check(&buf, seq, stats)?;
            progress.messages.fetch_add(1, Ordering::Relaxed);
            if plan.in_window(done) {
                stats.borrow_mut().record(done - sent_at);
            }
            spare = Some(buf);
            break;
        }
        seq += 1;
    }
}

fn is_truncated(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.is::<DatagramTruncated>())
}

/// When each message of one open-loop connection is meant to leave.
///
/// A core's sends are evenly spaced `gap` apart and dealt to its connections in turn, so send
/// `k` goes to lane `k % lanes`, and message `seq` of lane `lane` is send `seq * lanes + lane`.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    gap: Duration,
    lanes: u64,
    lane: u64,
}

impl Schedule {
    fn intended(&self, seq: u64) -> Instant {
        send_time(self.start, self.gap, seq * self.lanes + self.lane)
    }
}

/// The time of a core's `k`-th send.
fn send_time(start: Instant, gap: Duration, k: u64) -> Instant {
    start + Duration::from_secs_f64(gap.as_secs_f64() * k as f64)
}

/// What the pacer, the writer and the reader of one open-loop connection share.
#[derive(Default)]
struct Lane {
    /// Messages the pacer has released.
    released: Cell<u64>,
    /// The pacer will release no more.
    closed: Cell<bool>,
    /// Messages the writer has started to send; the reader may wait for this many echoes.
    written: Cell<u64>,
    /// The writer has stopped (closed and everything sent, or failed).
    writer_done: Cell<bool>,
    writer: Cell<Option<Waker>>,
    reader: Cell<Option<Waker>>,
}

impl Lane {
    fn wake(slot: &Cell<Option<Waker>>) {
        if let Some(waker) = slot.take() {
            waker.wake();
        }
    }

    /// Waits until `decided` gives an answer, leaving this task's waker in `slot` meanwhile.
    async fn wait(slot: &Cell<Option<Waker>>, decided: impl Fn() -> Option<bool>) -> bool {
        poll_fn(|cx| match decided() {
            Some(answer) => Poll::Ready(answer),
            None => {
                slot.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// Releases this core's sends on schedule until the window ends, then closes every lane.
async fn pace(plan: Plan, gap: Duration, lanes: Vec<Rc<Lane>>) {
    let mut k = 0u64;
    loop {
        let next = send_time(plan.start, gap, k);
        if next >= plan.end {
            break;
        }
        wait_until(next).await;
        // Release everything due by now: after a stall, the missed sends go out at once.
        let now = Instant::now();
        loop {
            let at = send_time(plan.start, gap, k);
            if at > now || at >= plan.end {
                break;
            }
            let lane = &lanes[(k % lanes.len() as u64) as usize];
            lane.released.set(lane.released.get() + 1);
            Lane::wake(&lane.writer);
            k += 1;
        }
        // Let the writers run even when every send is already late.
        coreio::yield_now().await;
    }
    for lane in &lanes {
        lane.closed.set(true);
        Lane::wake(&lane.writer);
    }
}

/// Sleeps until shortly before `at`, then spins (yielding to other tasks) until it passes.
async fn wait_until(at: Instant) {
    loop {
        let now = Instant::now();
        if now >= at {
            return;
        }
        if at - now > SPIN_WINDOW {
            coreio::time::sleep_until(at - SPIN_WINDOW).await;
        } else {
            coreio::yield_now().await;
        }
    }
}

/// One open-loop connection: a writer that sends what the pacer releases and a reader that
/// takes the echoes back in order, over one stream.
async fn open_loop(
    id: usize,
    plan: Plan,
    schedule: Schedule,
    lane: &Lane,
    stats: &RefCell<CoreStats>,
    progress: &Progress,
) -> Result<(), String> {
    let stream = match connect(plan.target).await {
        Ok(stream) => stream,
        Err(message) => {
            lane.writer_done.set(true);
            return Err(message);
        }
    };
    let pattern = Pattern::new(id, plan.size);
    let writer = write_released(&stream, &pattern, lane);
    let reader = read_echoes(&stream, &pattern, plan, schedule, lane, stats, progress);
    let (written, read) = join(writer, reader).await;
    written.and(read)
}

async fn write_released(stream: &Stream, pattern: &Pattern, lane: &Lane) -> Result<(), String> {
    let mut outgoing = pattern.base.clone();
    let result = loop {
        let seq = lane.written.get();
        let more = Lane::wait(&lane.writer, || {
            (seq < lane.released.get())
                .then_some(true)
                .or(lane.closed.get().then_some(false))
        })
        .await;
        if !more {
            break Ok(());
        }
        pattern.stamp(&mut outgoing, seq);
        lane.written.set(seq + 1);
        Lane::wake(&lane.reader);
        let (res, buf) = stream.write_all(outgoing).await;
        outgoing = buf;
        if let Err(err) = res {
            break Err(format!("write of message {seq} failed: {err}"));
        }
    };
    lane.writer_done.set(true);
    Lane::wake(&lane.reader);
    result
}

async fn read_echoes(
    stream: &Stream,
    pattern: &Pattern,
    plan: Plan,
    schedule: Schedule,
    lane: &Lane,
    stats: &RefCell<CoreStats>,
    progress: &Progress,
) -> Result<(), String> {
    let mut incoming: Box<[u8]> = vec![0; plan.size].into_boxed_slice();
    let mut seq = 0u64;
    loop {
        let more = Lane::wait(&lane.reader, || {
            (seq < lane.written.get())
                .then_some(true)
                .or(lane.writer_done.get().then_some(false))
        })
        .await;
        if !more {
            return Ok(());
        }
        let done;
        (incoming, done) = receive(stream, incoming, pattern, seq, stats, progress).await?;
        let intended = schedule.intended(seq);
        if plan.in_window(intended) {
            stats
                .borrow_mut()
                .record(done.saturating_duration_since(intended));
        }
        seq += 1;
    }
}

/// Polls two futures on the same task until both finish.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut out_a, mut out_b) = (None, None);
    poll_fn(|cx| {
        if out_a.is_none()
            && let Poll::Ready(out) = a.as_mut().poll(cx)
        {
            out_a = Some(out);
        }
        if out_b.is_none()
            && let Poll::Ready(out) = b.as_mut().poll(cx)
        {
            out_b = Some(out);
        }
        match (out_a.take(), out_b.take()) {
            (Some(a), Some(b)) => Poll::Ready((a, b)),
            (a, b) => {
                (out_a, out_b) = (a, b);
                Poll::Pending
            }
        }
    })
    .await
}

/// Multiplies the message number in a stamp; odd, so invertible modulo 2^64.
const STAMP_FACTOR: u64 = 0xD1B5_4A32_D192_ED03;
/// `STAMP_FACTOR`'s inverse modulo 2^64: `STAMP_FACTOR * STAMP_INVERSE == 1`.
const STAMP_INVERSE: u64 = inverse(STAMP_FACTOR);

/// The inverse of odd `a` modulo 2^64, by Newton's iteration: each step doubles the number of
/// correct low bits, from the 3 that `a` itself gets right (`a * a == 1` modulo 8).
const fn inverse(a: u64) -> u64 {
    let mut x = a;
    let mut step = 0;
    while step < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        step += 1;
    }
    x
}

const _: () = assert!(STAMP_FACTOR.wrapping_mul(STAMP_INVERSE) == 1);

/// The bytes one connection sends: a fixed pattern that depends on the connection and the
/// offset, with the message number stamped over its first bytes.
struct Pattern {
    base: Box<[u8]>,
    seed: u64,
}

impl Pattern {
    fn new(id: usize, size: usize) -> Pattern {
        let seed = (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let base = (0..size)
            .map(|i| (seed >> (8 * (i % 8))) as u8 ^ (i as u8).wrapping_mul(31))
            .collect();
        Pattern { base, seed }
    }

    fn stamp_bytes(&self, seq: u64) -> [u8; 8] {
        (seq.wrapping_mul(STAMP_FACTOR) ^ self.seed).to_le_bytes()
    }

    /// The message number a whole-length `received` message carries, if it is one of this
    /// connection's (its bytes after the stamp are the pattern's); stamps are invertible, as
    /// `STAMP_FACTOR` is odd. Needs a message of at least 8 bytes, as UDP's are.
    fn sequence(&self, received: &[u8]) -> Option<u64> {
        let stamp: [u8; 8] = received.get(..8)?.try_into().ok()?;
        if received.len() != self.base.len() || received[8..] != self.base[8..] {
            return None;
        }
        Some((u64::from_le_bytes(stamp) ^ self.seed).wrapping_mul(STAMP_INVERSE))
    }

    /// Writes message `seq`'s stamp over the first bytes of `buf` (a copy of the base).
    fn stamp(&self, buf: &mut [u8], seq: u64) {
        let n = buf.len().min(8);
        buf[..n].copy_from_slice(&self.stamp_bytes(seq)[..n]);
    }

    /// Checks that `received` is message `seq`, counting a mismatch in `stats`.
    fn check(&self, received: &[u8], seq: u64, stats: &RefCell<CoreStats>) -> Result<(), String> {
        let n = received.len().min(8);
        let stamp = self.stamp_bytes(seq);
        if received[..n] == stamp[..n] && received[n..] == self.base[n..] {
            return Ok(());
        }
        stats.borrow_mut().mismatches += 1;
        let at = (0..received.len())
            .find(|&i| {
                let expected = if i < n { stamp[i] } else { self.base[i] };
                received[i] != expected
            })
            .unwrap_or(0);
        Err(format!(
            "byte {at} of message {seq} came back wrong ({:#04x})",
            received[at]
        ))
    }
}
