//! [`RecvPool`]: a core's pool of receive buffers, and [`PooledBuf`], one buffer lent from it.
//!
//! A receive stream (`net::RecvStream`) reads into buffers of its core's pool instead of a
//! buffer of its own, so an idle connection holds no receive memory at all. On io_uring, when
//! the kernel allows, the pool is a *provided buffer ring* (`IORING_REGISTER_PBUF_RING`): its
//! free buffers sit in a ring the kernel picks from when data arrives, and a multishot receive
//! names the ring's group instead of a buffer. Everywhere else (epoll, an older kernel, the
//! ring switched off) the free buffers are a plain list the receive takes one from before
//! each read. Either way a buffer goes back to the pool when its [`PooledBuf`] is dropped, and
//! a receive that finds the pool empty waits for one to come back (backpressure: data stays
//! in the socket, never lost).
//!
//! Memory: one allocation of `buffers * buffer_size` bytes per core, made when the first
//! receive stream of the core asks for the pool, and touched only as buffers are used. It is
//! freed when the last reference goes: the driver's and every lent buffer's (a `PooledBuf`
//! may outlive its runtime; its memory stays valid, and giving it back writes only into the
//! pool's own memory).

// This module owns the pool's memory, the kernel ring's entries and tail, and the count of
// free buffers. It must never hand out a buffer twice, never put a buffer id into the kernel
// ring that the kernel did not give out (so the ring can never overflow), and never free the
// memory while the kernel may still write to it: the io_uring driver holds a reference until
// the ring is unregistered, and leaks it when its shutdown gave up (`uring::shutdown_within`).

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context, Poll, Waker};

use io_uring::types::BufRingEntry;

use crate::buf::{IoBuf, IoBufMut};

/// The most buffers a core's pool grows to when `Builder::recv_buffers` is not called.
pub const DEFAULT_RECV_BUFFERS: u16 = 4096;
/// Buffers a pool starts with, and adds each time receives find it empty, up to its size:
/// the pool's memory is reserved whole, but only the buffers in circulation are ever touched,
/// so a quiet core keeps a small resident set and a busy one grows to its demand.
pub(crate) const RECV_BUFFERS_STEP: u16 = 256;
/// Bytes per buffer when `Builder::recv_buffers` is not called.
pub const DEFAULT_RECV_BUFFER_SIZE: u32 = 16 * 1024;
/// The kernel's limit on a provided buffer ring's entries.
pub(crate) const MAX_RECV_BUFFERS: u16 = 32768;
/// The buffer group id of every core's ring (one ring per core, one group per ring).
pub(crate) const BUFFER_GROUP: u16 = 0;

/// What the pool is made of (`Builder::recv_buffers`, `Builder::multishot_recv`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecvPoolConfig {
    /// A power of two, at most [`MAX_RECV_BUFFERS`].
    pub(crate) buffers: u16,
    pub(crate) buffer_size: u32,
    /// io_uring: use a provided buffer ring and multishot receives when the kernel has them.
    pub(crate) multishot: bool,
}

impl Default for RecvPoolConfig {
    fn default() -> Self {
        RecvPoolConfig {
            buffers: DEFAULT_RECV_BUFFERS,
            buffer_size: DEFAULT_RECV_BUFFER_SIZE,
            multishot: true,
        }
    }
}

/// One core's receive buffers.
pub(crate) struct RecvPool {
    memory: NonNull<u8>,
    layout: Layout,
    buffer_size: u32,
    buffers: u16,
    /// Buffers put in circulation so far (ids `0..active`); grows by `RECV_BUFFERS_STEP`.
    active: Cell<u16>,
    free: Free,
    /// Free buffers: in the kernel ring, or in the list.
    available: Cell<u32>,
    /// Receives waiting for a buffer to come back, woken one per buffer, oldest first.
    waiters: RefCell<Waiters>,
    /// io_uring: the kernel runs multishot receives over the ring (false once it refused one:
    /// receives then select a buffer one completion at a time).
    multishot: Cell<bool>,
}

/// Where the free buffers are.
enum Free {
    /// In a provided buffer ring registered with the core's io_uring: the kernel takes them.
    Kernel(KernelRing),
    /// In a list: a receive takes one before each read.
    List(RefCell<Vec<u16>>),
}

/// A provided buffer ring's entries (`struct io_uring_buf_ring`): the kernel reads entries from
/// its head, this side writes returned buffers at the tail.
struct KernelRing {
    entries: NonNull<BufRingEntry>,
    layout: Layout,
    mask: u16,
    /// The tail as this side last published it.
    tail: Cell<u16>,
}

impl RecvPool {
    /// A pool of `config.buffers` buffers of `config.buffer_size` bytes, all free, in a list.
    fn allocate(config: RecvPoolConfig) -> io::Result<(NonNull<u8>, Layout)> {
        let total = usize::from(config.buffers)
            .checked_mul(config.buffer_size as usize)
            .filter(|&total| total > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "receive pool size"))?;
        let layout = Layout::from_size_align(total, page_size())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "receive pool size"))?;
        // SAFETY: `layout` has a non-zero size (checked above).
        let memory = NonNull::new(unsafe { alloc(layout) }).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("cannot allocate a receive pool of {total} bytes"),
            )
        })?;
        Ok((memory, layout))
    }

    /// A pool whose free buffers are a list (epoll, or io_uring without a buffer ring).
    pub(crate) fn with_list(config: RecvPoolConfig) -> io::Result<RecvPool> {
        let (memory, layout) = RecvPool::allocate(config)?;
        let pool = RecvPool::assemble(config, memory, layout, Free::List(RefCell::default()));
        pool.grow();
        Ok(pool)
    }

    /// A pool over `memory` (of `layout`) with nothing in circulation yet, whose free buffers
    /// go to `free`; multishot receives when the kernel picks the buffers.
    fn assemble(
        config: RecvPoolConfig,
        memory: NonNull<u8>,
        layout: Layout,
        free: Free,
    ) -> RecvPool {
        let multishot = matches!(free, Free::Kernel(_));
        RecvPool {
            memory,
            layout,
            buffer_size: config.buffer_size,
            buffers: config.buffers,
            active: Cell::new(0),
            free,
            available: Cell::new(0),
            waiters: RefCell::new(Waiters::default()),
            multishot: Cell::new(multishot),
        }
    }

    /// A pool whose free buffers sit in a provided buffer ring, every buffer in it; `register`
    /// hands the ring's address and entry count to the kernel (`IORING_REGISTER_PBUF_RING`).
    /// Fails when the memory cannot be had or the kernel refuses the ring (the caller then
    /// falls back to a list).
    pub(crate) fn with_kernel_ring(
        config: RecvPoolConfig,
        register: impl FnOnce(u64, u16) -> io::Result<()>,
    ) -> io::Result<RecvPool> {
        debug_assert!(config.buffers.is_power_of_two());
        let (memory, layout) = RecvPool::allocate(config)?;
        let ring_layout = Layout::array::<BufRingEntry>(usize::from(config.buffers))
            .and_then(|layout| layout.align_to(page_size()))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer ring size"));
        let ring_layout = match ring_layout {
            Ok(ring_layout) => ring_layout,
            Err(err) => {
                // SAFETY: allocated just above with this layout, and never lent.
                unsafe { dealloc(memory.as_ptr(), layout) };
                return Err(err);
            }
        };
        // Zeroed: the tail shares its place with entry 0's reserved field, and a registered
        // ring starts empty, with head and tail 0.
        // SAFETY: the layout's size is non-zero (`buffers >= 1`).
        let entries = NonNull::new(unsafe { alloc_zeroed(ring_layout) }.cast::<BufRingEntry>());
        let Some(entries) = entries else {
            // SAFETY: as above.
            unsafe { dealloc(memory.as_ptr(), layout) };
            return Err(io::ErrorKind::OutOfMemory.into());
        };
        let free = Free::Kernel(KernelRing {
            entries,
            layout: ring_layout,
            mask: config.buffers - 1,
            tail: Cell::new(0),
        });
        let pool = RecvPool::assemble(config, memory, layout, free);
        register(entries.as_ptr() as u64, config.buffers)?;
        pool.grow();
        Ok(pool)
    }

    /// Puts the next `RECV_BUFFERS_STEP` buffers in circulation (fewer at the end); false
    /// once every buffer is. Called when a receive finds the pool empty, before it waits.
    pub(crate) fn grow(&self) -> bool {
        let active = self.active.get();
        let added = RECV_BUFFERS_STEP.min(self.buffers - active);
        if added == 0 {
            return false;
        }
        self.active.set(active + added);
        let ids = active..active + added;
        match &self.free {
            // The kernel takes from the ring's head: the lowest id first.
            Free::Kernel(_) => ids.for_each(|id| self.give_back(id)),
            // Popped from the end: the lowest id first.
            Free::List(_) => ids.rev().for_each(|id| self.give_back(id)),
        }
        true
    }

    /// Whether the kernel picks this pool's buffers (a provided buffer ring).
    pub(crate) fn in_kernel(&self) -> bool {
        matches!(self.free, Free::Kernel(_))
    }

    /// Whether receives over the ring may be multishot (io_uring, until the kernel refuses).
    pub(crate) fn multishot(&self) -> bool {
        self.in_kernel() && self.multishot.get()
    }

    /// The kernel refused a multishot receive: select one buffer per receive from now on.
    pub(crate) fn multishot_refused(&self) {
        if self.multishot.replace(false) {
            log::debug!("the kernel refused a multishot receive; receiving one buffer at a time");
        }
    }

    pub(crate) fn buffer_size(&self) -> u32 {
        self.buffer_size
    }

    /// Free buffers right now.
    pub(crate) fn available(&self) -> u32 {
        self.available.get()
    }

    /// Ready once a buffer is free; otherwise `cx`'s waker is queued (in `place`, which the
    /// caller keeps between polls and hands to [`stop_waiting`](Self::stop_waiting) when it
    /// goes) and woken when a buffer comes back. One waiter is woken per buffer, oldest first,
    /// so a thousand receives waiting on a drained pool cost one wake per returned buffer, not
    /// a thousand.
    pub(crate) fn poll_available(
        &self,
        place: &mut Option<WaitPlace>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if self.available.get() > 0 {
            self.stop_waiting(place);
            return Poll::Ready(());
        }
        self.waiters.borrow_mut().wait(place, cx.waker());
        Poll::Pending
    }

    /// Leaves the queue of receives waiting for a buffer (a dropped receive, or one that found
    /// a buffer), so that no wake is spent on it.
    pub(crate) fn stop_waiting(&self, place: &mut Option<WaitPlace>) {
        if let Some(place) = place.take() {
            self.waiters.borrow_mut().cancel(place);
        }
    }

    /// Takes a free buffer from the list; `None` when none is free or the kernel picks them.
    pub(crate) fn take(self: &Rc<Self>) -> Option<PooledBuf> {
        let Free::List(list) = &self.free else {
            return None;
        };
        let id = list.borrow_mut().pop()?;
        self.available.set(self.available.get() - 1);
        Some(PooledBuf::lent(Rc::clone(self), id, 0))
    }

    /// The kernel filled buffer `id` with `len` bytes (a completion with `IORING_CQE_F_BUFFER`):
    /// it is lent out now. `None` for an id this pool never had (a kernel bug; nothing is lent).
    pub(crate) fn from_kernel(self: &Rc<Self>, id: u16, len: u32) -> Option<PooledBuf> {
        if id >= self.buffers || !self.in_kernel() {
            return None;
        }
        self.available.set(self.available.get().saturating_sub(1));
        Some(PooledBuf::lent(
            Rc::clone(self),
            id,
            len.min(self.buffer_size) as usize,
        ))
    }

    fn buffer_ptr(&self, id: u16) -> *mut u8 {
        debug_assert!(id < self.buffers);
        // SAFETY: `id < buffers`, so the offset stays inside the allocation of
        // `buffers * buffer_size` bytes.
        unsafe {
            self.memory
                .as_ptr()
                .add(usize::from(id) * self.buffer_size as usize)
        }
    }

    /// Buffer `id` is free again: back into the kernel ring or the list, and the receives
    /// waiting for a buffer are woken.
    pub(crate) fn give_back(&self, id: u16) {
        match &self.free {
            Free::Kernel(ring) => {
                let tail = ring.tail.get();
                let slot = usize::from(tail & ring.mask);
                // SAFETY: `slot <= mask < buffers`, inside the entries' allocation; the kernel
                // only reads entries between its head and the published tail, and this one is
                // past the tail until `publish_tail` below. At most `buffers` ids are ever out
                // of the ring, so the slot was consumed before it is rewritten.
                let entry = unsafe { &mut *ring.entries.as_ptr().add(slot) };
                entry.set_addr(self.buffer_ptr(id) as u64);
                entry.set_len(self.buffer_size);
                entry.set_bid(id);
                self.publish_tail(tail.wrapping_add(1));
            }
            Free::List(list) => list.borrow_mut().push(id),
        }
        self.available.set(self.available.get() + 1);
        let next = self.waiters.borrow_mut().pop_oldest();
        // Outside the borrow: a waker is foreign code.
        if let Some(waker) = next {
            waker.wake();
        }
    }

    /// Makes entries written up to `tail` visible to the kernel.
    fn publish_tail(&self, tail: u16) {
        let Free::Kernel(ring) = &self.free else {
            return;
        };
        ring.tail.set(tail);
        // SAFETY: the tail is the reserved field of entry 0, inside the entries' allocation and
        // suitably aligned for a u16; the kernel reads it concurrently, so it is written through
        // an atomic with release ordering (the entries written before it become visible first).
        let tail_ptr = unsafe { BufRingEntry::tail(ring.entries.as_ptr()) };
        // SAFETY: as above; `AtomicU16` has the layout of `u16`.
        let atomic = unsafe { &*tail_ptr.cast::<AtomicU16>() };
        atomic.store(tail, Ordering::Release);
    }
}

impl Drop for RecvPool {
    fn drop(&mut self) {
        // SAFETY: allocated in `allocate` with this layout. The last reference is gone: no lent
        // buffer is left, and the io_uring driver dropped its reference only after unregistering
        // the ring (or leaked it), so the kernel no longer writes here.
        unsafe { dealloc(self.memory.as_ptr(), self.layout) };
        if let Free::Kernel(ring) = &self.free {
            // SAFETY: allocated in `with_kernel_ring` with this layout; unregistered as above.
            unsafe { dealloc(ring.entries.as_ptr().cast(), ring.layout) };
        }
    }
}

/// Where a receive waits in a pool's queue: a slot and the ticket it was given, so that a slot
/// reused by a later waiter is told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WaitPlace {
    key: usize,
    ticket: u64,
}

/// The receives waiting for a buffer: their wakers, and the order they came in.
#[derive(Default)]
struct Waiters {
    wakers: slab::Slab<(u64, Waker)>,
    /// Slots, oldest first; a slot whose waiter left (or was woken) is skipped when popped.
    order: std::collections::VecDeque<usize>,
    next_ticket: u64,
}

impl Waiters {
    /// Queues `waker`, or refreshes it in place when `place` is still queued.
    fn wait(&mut self, place: &mut Option<WaitPlace>, waker: &Waker) {
        if let Some(at) = place
            && let Some((ticket, queued)) = self.wakers.get_mut(at.key)
            && *ticket == at.ticket
        {
            if !queued.will_wake(waker) {
                *queued = waker.clone();
            }
            return;
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let key = self.wakers.insert((ticket, waker.clone()));
        self.order.push_back(key);
        *place = Some(WaitPlace { key, ticket });
    }

    fn cancel(&mut self, place: WaitPlace) {
        if self
            .wakers
            .get(place.key)
            .is_some_and(|(ticket, _)| *ticket == place.ticket)
        {
            self.wakers.remove(place.key);
        }
    }

    /// The oldest waiter still queued, taken out of the queue.
    fn pop_oldest(&mut self) -> Option<Waker> {
        while let Some(key) = self.order.pop_front() {
            // A slot left and taken again appears twice in `order`; either pop wakes a waiter
            // that is queued, so no wake is lost.
            if let Some((_, waker)) = self.wakers.try_remove(key) {
                return Some(waker);
            }
        }
        None
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as usize } else { 4096 }
}

/// A receive buffer lent from the core's pool, holding what one receive took.
///
/// It derefs to the bytes received, and goes back to the pool when dropped. It is an
/// [`IoBuf`], so it can be written to a socket as it is (an echo or a proxy copies nothing),
/// and an [`IoBufMut`] of the pool's buffer size, so it can be read into again.
///
/// A `PooledBuf` belongs to its core: it is neither `Send` nor `Sync`. Keeping many of them
/// alive keeps them from the core's other connections, whose receives then wait for one to
/// come back.
pub struct PooledBuf {
    storage: Storage,
    len: usize,
}

enum Storage {
    /// Buffer `id` of `pool`.
    Lent { pool: Rc<RecvPool>, id: u16 },
    /// Bytes a dropped read left on the socket, handed out before the pool's buffers.
    Owned(Box<[u8]>),
}

impl PooledBuf {
    fn lent(pool: Rc<RecvPool>, id: u16, len: usize) -> PooledBuf {
        PooledBuf {
            storage: Storage::Lent { pool, id },
            len,
        }
    }

    /// Bytes that are not in the pool (what a dropped read kept on the socket).
    pub(crate) fn owned(bytes: Vec<u8>) -> PooledBuf {
        let len = bytes.len();
        PooledBuf {
            storage: Storage::Owned(bytes.into_boxed_slice()),
            len,
        }
    }

    /// The received bytes.
    pub fn as_slice(&self) -> &[u8] {
        self
    }

    /// The buffer's size in bytes (the received bytes are `len()`, through `Deref`).
    pub fn capacity(&self) -> usize {
        self.bytes_total()
    }
}

impl Deref for PooledBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `stable_ptr` points to `len` initialised bytes (the receive wrote them, or
        // they were copied in), which only this value can reach.
        unsafe { std::slice::from_raw_parts(self.stable_ptr(), self.len) }
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.stable_mut_ptr(), self.len) }
    }
}

impl fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBuf")
            .field("len", &self.len)
            .field("capacity", &self.bytes_total())
            .finish()
    }
}

// SAFETY: the bytes live in the pool's allocation (kept alive by the `Rc`, never moved) or in
// a boxed slice this value owns; the first `len` of them are initialised.
unsafe impl IoBuf for PooledBuf {
    fn stable_ptr(&self) -> *const u8 {
        match &self.storage {
            Storage::Lent { pool, id } => pool.buffer_ptr(*id),
            Storage::Owned(bytes) => bytes.as_ptr(),
        }
    }

    fn bytes_init(&self) -> usize {
        self.len
    }

    fn bytes_total(&self) -> usize {
        match &self.storage {
            Storage::Lent { pool, .. } => pool.buffer_size as usize,
            Storage::Owned(bytes) => bytes.len(),
        }
    }
}

// SAFETY: as for `IoBuf`; the memory is writable for `bytes_total()` bytes, and only this
// value reaches it while it is lent.
unsafe impl IoBufMut for PooledBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        match &mut self.storage {
            Storage::Lent { pool, id } => pool.buffer_ptr(*id),
            Storage::Owned(bytes) => bytes.as_mut_ptr(),
        }
    }

    unsafe fn set_init(&mut self, pos: usize) {
        self.len = pos.min(self.bytes_total());
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Storage::Lent { pool, id } = &self.storage {
            pool.give_back(*id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(buffers: u16, buffer_size: u32) -> RecvPoolConfig {
        RecvPoolConfig {
            buffers,
            buffer_size,
            multishot: false,
        }
    }

    #[test]
    fn a_list_pool_lends_each_buffer_once_and_takes_it_back() {
        let pool = Rc::new(RecvPool::with_list(config(4, 64)).unwrap());
        let bufs: Vec<_> = (0..4)
            .map(|_| pool.take().expect("a free buffer"))
            .collect();
        assert!(pool.take().is_none(), "a fifth buffer out of four");
        assert_eq!(pool.available(), 0);
        let ptrs: std::collections::HashSet<_> = bufs.iter().map(|b| b.stable_ptr()).collect();
        assert_eq!(ptrs.len(), 4, "two lent buffers share memory");
        drop(bufs);
        assert_eq!(pool.available(), 4);
        assert!(pool.take().is_some());
    }

    #[test]
    fn a_waiting_receive_is_woken_when_a_buffer_comes_back() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        struct Flag(AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let pool = Rc::new(RecvPool::with_list(config(1, 64)).unwrap());
        let buf = pool.take().unwrap();
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&flag));
        let mut cx = Context::from_waker(&waker);
        let mut place = None;
        assert!(pool.poll_available(&mut place, &mut cx).is_pending());
        // Polled again while waiting: still one place in the queue.
        assert!(pool.poll_available(&mut place, &mut cx).is_pending());
        drop(buf);
        assert!(flag.0.load(Ordering::SeqCst), "not woken");
        assert!(pool.poll_available(&mut place, &mut cx).is_ready());
        assert_eq!(place, None);
    }

    #[test]
    fn one_waiter_is_woken_per_returned_buffer_oldest_first_and_none_lost() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicUsize;
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let pool = Rc::new(RecvPool::with_list(config(2, 64)).unwrap());
        let lent = [pool.take().unwrap(), pool.take().unwrap()];
        let counts: Vec<_> = (0..5)
            .map(|_| Arc::new(Count(AtomicUsize::new(0))))
            .collect();
        let mut places = vec![None; 5];
        for (count, place) in counts.iter().zip(&mut places) {
            let waker = Waker::from(Arc::clone(count));
            let mut cx = Context::from_waker(&waker);
            assert!(pool.poll_available(place, &mut cx).is_pending());
        }
        // The second waiter leaves; its slot is taken again by a sixth.
        pool.stop_waiting(&mut places[1]);
        let late = Arc::new(Count(AtomicUsize::new(0)));
        let mut late_place = None;
        let waker = Waker::from(Arc::clone(&late));
        assert!(
            pool.poll_available(&mut late_place, &mut Context::from_waker(&waker))
                .is_pending()
        );
        let [a, b] = lent;
        drop(a);
        let woken: Vec<usize> = counts.iter().map(|c| c.0.load(Ordering::SeqCst)).collect();
        assert_eq!(
            woken.iter().sum::<usize>() + late.0.load(Ordering::SeqCst),
            1,
            "{woken:?}"
        );
        drop(b);
        let woken: Vec<usize> = counts.iter().map(|c| c.0.load(Ordering::SeqCst)).collect();
        let total = woken.iter().sum::<usize>() + late.0.load(Ordering::SeqCst);
        assert_eq!(total, 2, "one wake per buffer: {woken:?}");
        assert_eq!(woken[1], 0, "a waiter that left was woken");
        // Three more buffers' worth of returns wake the rest (3 queued), none lost.
        for _ in 0..3 {
            drop(pool.take().unwrap());
        }
        let total = counts
            .iter()
            .map(|c| c.0.load(Ordering::SeqCst))
            .sum::<usize>()
            + late.0.load(Ordering::SeqCst);
        assert_eq!(total, 5);
    }

    #[test]
    fn a_buffer_outlives_its_pool_handle() {
        let pool = Rc::new(RecvPool::with_list(config(2, 32)).unwrap());
        let mut buf = pool.take().unwrap();
        drop(pool);
        // SAFETY: 3 bytes of the buffer's 32 are written just below.
        unsafe {
            buf.stable_mut_ptr().copy_from(b"abc".as_ptr(), 3);
            buf.set_init(3);
        }
        assert_eq!(&*buf, b"abc");
    }

    #[test]
    fn a_pool_puts_its_buffers_in_circulation_a_step_at_a_time() {
        let max = RECV_BUFFERS_STEP * 2 + 3;
        let pool = Rc::new(RecvPool::with_list(config(max, 64)).unwrap());
        assert_eq!(pool.available(), u32::from(RECV_BUFFERS_STEP));
        let mut lent: Vec<_> = std::iter::from_fn(|| pool.take()).collect();
        assert_eq!(lent.len(), usize::from(RECV_BUFFERS_STEP));
        assert!(pool.grow());
        assert!(pool.grow());
        lent.extend(std::iter::from_fn(|| pool.take()));
        assert_eq!(lent.len(), usize::from(max));
        assert!(!pool.grow(), "grew past its size");
        let ids: std::collections::HashSet<_> = lent.iter().map(|b| b.stable_ptr()).collect();
        assert_eq!(ids.len(), usize::from(max), "a buffer lent twice");
    }

    #[test]
    fn owned_bytes_read_like_a_lent_buffer() {
        let buf = PooledBuf::owned(b"kept".to_vec());
        assert_eq!(&*buf, b"kept");
        assert_eq!(buf.bytes_init(), 4);
    }

    #[test]
    fn a_kernel_ring_pool_publishes_every_buffer() {
        let mut registered = None;
        let pool = RecvPool::with_kernel_ring(config(8, 64), |addr, entries| {
            registered = Some((addr, entries));
            Ok(())
        })
        .unwrap();
        let (addr, entries) = registered.unwrap();
        assert_eq!(entries, 8);
        assert_eq!(
            addr % page_size() as u64,
            0,
            "the ring must be page aligned"
        );
        assert_eq!(pool.available(), 8);
        let Free::Kernel(ring) = &pool.free else {
            panic!("not a kernel ring");
        };
        assert_eq!(ring.tail.get(), 8);
        // SAFETY: the ring has 8 initialised entries.
        let bids: Vec<u16> = (0..8)
            .map(|i| unsafe { (*ring.entries.as_ptr().add(i)).bid() })
            .collect();
        assert_eq!(bids, (0..8).collect::<Vec<_>>());
    }
}
