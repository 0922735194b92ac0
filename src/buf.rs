//! Owned buffers that can be handed to the kernel.
//!
//! With io_uring the kernel reads and writes a buffer *after* the call that submitted it has
//! returned, so an I/O future cannot borrow its buffer: it takes the buffer by value, the driver
//! keeps it alive until the operation's terminal completion (even if the future is dropped), and
//! the future hands it back with the result. This module has the traits that describe such
//! buffers ([`IoBuf`] for buffers the kernel reads, [`IoBufMut`] for buffers it writes) and
//! [`Slice`], a view of a sub-range of one. The traits are `unsafe` to implement: a buffer must
//! never expose a pointer whose target can move while the buffer value itself moves.
//!
//! ```
//! use coreio::buf::{IoBuf, IoBufMut};
//!
//! let mut buf = Vec::with_capacity(16);
//! assert_eq!(buf.bytes_total(), 16);
//! // Only the last 8 bytes of capacity are offered to the kernel.
//! let tail = buf.slice(8..);
//! assert_eq!(tail.bytes_total(), 8);
//! ```

// This module owns the traits that describe such buffers (`IoBuf`, `IoBufMut`) and `Slice`. It
// must never expose a pointer whose target can move while the buffer value itself moves: that
// is what makes the traits `unsafe` to implement.

use std::ops::{Bound, RangeBounds};

pub use crate::driver::{DEFAULT_RECV_BUFFER_SIZE, DEFAULT_RECV_BUFFERS, PooledBuf};

/// A buffer the kernel may read from while an operation is in flight.
///
/// # Safety
///
/// Implementors promise that:
/// - [`stable_ptr`](IoBuf::stable_ptr) points to [`bytes_init`](IoBuf::bytes_init) initialised
///   bytes;
/// - the pointed-to memory does not move or get freed when the buffer value itself is moved
///   (it lives on the heap, or is `'static`), and stays valid until the value is dropped.
pub unsafe trait IoBuf: 'static {
    /// Pointer to the first byte; valid for as long as `self` lives, wherever `self` moves.
    fn stable_ptr(&self) -> *const u8;
    /// Number of initialised bytes, the ones a write sends.
    fn bytes_init(&self) -> usize;
    /// Total capacity in bytes.
    fn bytes_total(&self) -> usize;

    /// A view of `range` of this buffer's capacity, which an operation can use in place of the
    /// whole buffer. [`Slice::into_inner`] gives the buffer back.
    ///
    /// # Panics
    ///
    /// If the range ends beyond [`bytes_total`](IoBuf::bytes_total) or starts after it ends,
    /// like indexing a slice out of bounds.
    fn slice(self, range: impl RangeBounds<usize>) -> Slice<Self>
    where
        Self: Sized,
    {
        let begin = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n + 1,
            Bound::Excluded(&n) => n,
            Bound::Unbounded => self.bytes_total(),
        };
        assert!(
            begin <= end && end <= self.bytes_total(),
            "slice {begin}..{end} out of bounds of a buffer of {} bytes",
            self.bytes_total()
        );
        Slice {
            buf: self,
            begin,
            end,
        }
    }
}

/// A buffer the kernel may write into while an operation is in flight.
///
/// # Safety
///
/// On top of [`IoBuf`]'s promises: [`stable_mut_ptr`](IoBufMut::stable_mut_ptr) is valid for
/// writes of [`bytes_total`](IoBuf::bytes_total) bytes, and after
/// [`set_init(pos)`](IoBufMut::set_init) `bytes_init()` counts no byte that was never written.
pub unsafe trait IoBufMut: IoBuf {
    /// Pointer to the first byte, writable up to `bytes_total()`.
    fn stable_mut_ptr(&mut self) -> *mut u8;

    /// Records that the first `pos` bytes hold what was just read into the buffer: they
    /// become its contents (a `Vec`'s length becomes `pos`).
    ///
    /// # Safety
    ///
    /// The first `pos` bytes must really be initialised, and `pos <= bytes_total()`.
    unsafe fn set_init(&mut self, pos: usize);
}

// SAFETY: a Vec's heap allocation does not move when the Vec value moves, and `len` bytes of it
// are initialised.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: the capacity is writable heap memory that stays put while the Vec moves.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: the caller guarantees the first `pos` bytes are initialised and that `pos`
        // does not exceed the capacity.
        unsafe { self.set_len(pos) };
    }
}

// SAFETY: a boxed slice is a fixed heap allocation, fully initialised.
unsafe impl IoBuf for Box<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: the whole boxed slice is writable heap memory and always initialised.
unsafe impl IoBufMut for Box<[u8]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, _pos: usize) {}
}

// SAFETY: 'static data never moves nor gets freed.
unsafe impl IoBuf for &'static [u8] {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: as for `&'static [u8]`.
unsafe impl IoBuf for &'static str {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

/// `IoBuf` for a type that derefs to a fully initialised, immutable `[u8]` whose memory stays
/// put and alive while the value lives: all of it is offered, for the kernel to read only.
macro_rules! read_only_buf {
    ($ty:ty) => {
        // SAFETY: the comment at each use says why `$ty`'s bytes stay where they are, alive
        // and unchanged, while this owner lives; only their length is offered, read-only.
        unsafe impl IoBuf for $ty {
            fn stable_ptr(&self) -> *const u8 {
                self.as_ptr()
            }
            fn bytes_init(&self) -> usize {
                self.len()
            }
            fn bytes_total(&self) -> usize {
                self.len()
            }
        }
    };
}

// Shared, read-only buffers: one allocation written to many sockets (a broadcast) without a
// copy per recipient. Only `IoBuf`: other owners may read the bytes at any time, so the kernel
// must never write into them, and there is no `IoBufMut` for these.

// SAFETY: the slice lives in the `Arc`'s heap allocation, which does not move when the `Arc`
// value moves and is not freed while this owner (one of its strong counts) lives; an
// `Arc<[u8]>` is fully initialised and immutable.
read_only_buf!(std::sync::Arc<[u8]>);

// SAFETY: as for `Arc<[u8]>`: the `Rc`'s allocation stays put and alive while this owner lives.
read_only_buf!(std::rc::Rc<[u8]>);

// SAFETY: the `Vec`'s heap buffer does not move with the `Arc`, and nobody can reach the `Vec`
// mutably while it is shared (no `get_mut` while this owner lives), so its pointer and length
// stay as they were. Only the initialised bytes are offered (`bytes_total` is the length, not
// the capacity: the spare capacity is not ours to describe).
read_only_buf!(std::sync::Arc<Vec<u8>>);

// SAFETY: as for `Arc<Vec<u8>>`.
read_only_buf!(std::rc::Rc<Vec<u8>>);

// `bytes` (the `bytes` feature): `Bytes` is a shared, read-only view, so only `IoBuf`;
// `BytesMut` is uniquely owned, so both.

// SAFETY: a `Bytes` points into a heap allocation (or `'static` memory) that does not move when
// the `Bytes` value moves and is kept alive by it; its `len` bytes are initialised and shared
// read-only, so the kernel only reads them.
#[cfg(feature = "bytes")]
read_only_buf!(bytes::Bytes);

// SAFETY: a `BytesMut` owns its view of a heap allocation uniquely; the allocation does not move
// when the value moves (only `reserve` and friends move it, which need `&mut self` and are not
// called while an operation owns the buffer), and its `len` bytes are initialised.
#[cfg(feature = "bytes")]
unsafe impl IoBuf for bytes::BytesMut {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: the whole capacity of a `BytesMut` is writable memory it owns uniquely, as a `Vec`'s.
#[cfg(feature = "bytes")]
unsafe impl IoBufMut for bytes::BytesMut {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: the caller guarantees the first `pos <= capacity()` bytes are initialised.
        unsafe { self.set_len(pos) };
    }
}

/// A sub-range `begin..end` of a buffer's capacity, owned together with the buffer.
///
/// Reads into a `Slice` fill the buffer from `begin`; writes from a `Slice` send the initialised
/// bytes between `begin` and `end`. A read sets the underlying buffer's initialised length (a
/// `Vec`'s `len` becomes `begin + n`) only when `begin` lies within the already initialised
/// part, so no gap of unwritten bytes is ever counted as initialised.
#[derive(Debug)]
pub struct Slice<T> {
    buf: T,
    begin: usize,
    end: usize,
}

impl<T> Slice<T> {
    /// Offset of the view's first byte in the underlying buffer.
    pub fn begin(&self) -> usize {
        self.begin
    }
    /// Offset one past the view's last byte in the underlying buffer.
    pub fn end(&self) -> usize {
        self.end
    }
    /// The underlying buffer.
    pub fn get_ref(&self) -> &T {
        &self.buf
    }
    /// Gives the underlying buffer back.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

// SAFETY: derived from the inner buffer's guarantees; the offsets were bounds-checked against
// `bytes_total` when the slice was made.
unsafe impl<T: IoBuf> IoBuf for Slice<T> {
    fn stable_ptr(&self) -> *const u8 {
        // SAFETY: `begin <= bytes_total()` of the allocation, checked in `IoBuf::slice`.
        unsafe { self.buf.stable_ptr().add(self.begin) }
    }
    fn bytes_init(&self) -> usize {
        self.buf
            .bytes_init()
            .clamp(self.begin, self.end)
            .saturating_sub(self.begin)
    }
    fn bytes_total(&self) -> usize {
        self.end - self.begin
    }
}

// SAFETY: as for `IoBuf`; `set_init` translates the view's offset back to the buffer's.
unsafe impl<T: IoBufMut> IoBufMut for Slice<T> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: `begin <= bytes_total()` of the allocation, checked in `IoBuf::slice`.
        unsafe { self.buf.stable_mut_ptr().add(self.begin) }
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // Counting a gap of never-written bytes as initialised would be unsound, so the length
        // only changes when the view starts inside the initialised part.
        if self.buf.bytes_init() >= self.begin {
            // SAFETY: the caller guarantees `pos` bytes from `begin` are initialised, and every
            // byte before `begin` already was.
            unsafe { self.buf.set_init(self.begin + pos) }
        }
    }
}

/// The error of a read into a buffer with no capacity (`bytes_total() == 0`, such as a full
/// `Vec`'s `slice(len..)`): the read is refused before anything is submitted, on both backends,
/// because its `Ok(0)` would read as end of stream.
pub(crate) fn no_capacity_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "read into a buffer with no capacity (bytes_total() == 0): Ok(0) would look like \
         end of stream",
    )
}

/// The most buffers one vectored operation takes (`IOV_MAX` on Linux).
pub(crate) const MAX_IOVECS: usize = 1024;

/// The iovecs of a gathering write of `bufs`' initialised bytes after the first `skip` of them
/// (those a previous partial write already wrote), at most `max` of them; empty buffers get
/// none. They point into the buffers' heap memory, which stays put when the `Vec` of buffers
/// moves, and are valid for as long as the buffers are.
pub(crate) fn write_iovecs<B: IoBuf>(bufs: &[B], skip: usize, max: usize) -> Vec<libc::iovec> {
    let mut skip = skip;
    let mut iovecs = Vec::new();
    for buf in bufs {
        let len = buf.bytes_init();
        if skip >= len {
            skip -= len;
            continue;
        }
        if iovecs.len() == max {
            break;
        }
        iovecs.push(libc::iovec {
            // SAFETY: `skip < len`, so the offset stays inside the buffer's initialised bytes;
            // the kernel only reads through the pointer.
            iov_base: unsafe { buf.stable_ptr().add(skip) }.cast_mut().cast(),
            iov_len: len - skip,
        });
        skip = 0;
    }
    iovecs
}
