//! Direct I/O: [`DioAlignment`], the alignment an `O_DIRECT` file needs, and [`AlignedBuf`], a
//! buffer allocated at it.
//!
//! `O_DIRECT` bypasses the page cache, and the kernel then refuses (`EINVAL`, nothing more) a
//! buffer whose address, or a length or file offset, is not a multiple of what the device
//! needs. A [`File`](super::File) opened with `O_DIRECT` learns its alignment at open (from
//! `statx`'s `dio_mem_align`/`dio_offset_align`, else the device's logical block size) and
//! checks each I/O against it before submitting ([`check`]), with an error that says what is
//! misaligned and what it must be.

// This module owns the aligned allocation and those checks. It must never let an `AlignedBuf`
// reallocate (the alignment would be lost) nor expose uninitialised bytes.

use std::alloc::{self, Layout};
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use crate::buf::{IoBuf, IoBufMut};

/// The alignment direct I/O on a file needs: buffer addresses to [`mem`](Self::mem) bytes,
/// file offsets and lengths to [`offset`](Self::offset) bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DioAlignment {
    mem: usize,
    offset: usize,
}

impl DioAlignment {
    /// An alignment of `mem` bytes for buffer addresses and `offset` bytes for offsets and
    /// lengths; both must be powers of two (`InvalidInput` otherwise).
    pub fn new(mem: usize, offset: usize) -> io::Result<DioAlignment> {
        for (what, value) in [("memory", mem), ("offset", offset)] {
            if !value.is_power_of_two() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("a direct-I/O {what} alignment must be a power of two, got {value}"),
                ));
            }
        }
        Ok(DioAlignment { mem, offset })
    }

    /// The alignment of buffer addresses.
    pub fn mem(&self) -> usize {
        self.mem
    }

    /// The alignment of file offsets and lengths.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for DioAlignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memory aligned to {} bytes, offsets and lengths to {}",
            self.mem, self.offset
        )
    }
}

/// Refuses what the kernel would refuse with a bare `EINVAL` on an `O_DIRECT` file: a buffer
/// at `ptr` not aligned to `alignment.mem()`, or a `len` or `offset` not a multiple of
/// `alignment.offset()`.
pub(crate) fn check(
    alignment: DioAlignment,
    ptr: *const u8,
    len: usize,
    offset: u64,
) -> io::Result<()> {
    let misaligned = |what: String, need: usize, field: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "O_DIRECT: {what} is not a multiple of {need} (the file's {field}); use \
                 coreio::fs::AlignedBuf::for_file and aligned offsets"
            ),
        )
    };
    let address = ptr.addr();
    if !address.is_multiple_of(alignment.mem) {
        return Err(misaligned(
            format!("the buffer address {address:#x}"),
            alignment.mem,
            "dio_mem_align",
        ));
    }
    if !len.is_multiple_of(alignment.offset) {
        return Err(misaligned(
            format!("the length {len}"),
            alignment.offset,
            "dio_offset_align",
        ));
    }
    if !offset.is_multiple_of(alignment.offset as u64) {
        return Err(misaligned(
            format!("the file offset {offset}"),
            alignment.offset,
            "dio_offset_align",
        ));
    }
    Ok(())
}

/// A fixed-capacity heap buffer whose address is aligned, for direct I/O.
///
/// Its capacity is set at allocation and never grows (growing would reallocate, and the
/// address could lose its alignment): writes beyond it are errors. It is a buffer of the
/// [`buf`](crate::buf) traits, so reads fill its capacity and writes send its initialised
/// bytes.
///
/// ```
/// use coreio::fs::{AlignedBuf, DioAlignment};
///
/// let alignment = DioAlignment::new(512, 4096).unwrap();
/// let mut buf = AlignedBuf::for_file(5000, alignment).unwrap();
/// assert_eq!(buf.capacity(), 8192); // rounded up to whole 4096-byte blocks
/// assert_eq!(buf.as_ptr() as usize % 512, 0);
/// buf.extend_from_slice(b"record").unwrap();
/// buf.resize(4096, 0).unwrap(); // pad to a block before an O_DIRECT write
/// assert_eq!(&buf[..6], b"record");
/// ```
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    capacity: usize,
    align: usize,
}

// SAFETY: the buffer owns its allocation uniquely, like a `Vec<u8>`; nothing is shared.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads the initialised bytes, like `&Vec<u8>`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// An empty buffer of `capacity` bytes at an address aligned to `align` (a power of two;
    /// `InvalidInput` otherwise). `OutOfMemory` if the allocation fails.
    pub fn new(capacity: usize, align: usize) -> io::Result<AlignedBuf> {
        Self::allocate(capacity, align, false)
    }

    /// A buffer of `capacity` zero bytes, all initialised, aligned to `align`.
    pub fn zeroed(capacity: usize, align: usize) -> io::Result<AlignedBuf> {
        Self::allocate(capacity, align, true)
    }

    /// An empty buffer for direct I/O on a file with `alignment`: aligned to its memory
    /// alignment, its capacity rounded up to a whole number of its offset alignment.
    pub fn for_file(capacity: usize, alignment: DioAlignment) -> io::Result<AlignedBuf> {
        let rounded = capacity
            .checked_next_multiple_of(alignment.offset())
            .ok_or_else(|| too_large(capacity))?;
        Self::new(rounded, alignment.mem())
    }

    fn allocate(capacity: usize, align: usize, zeroed: bool) -> io::Result<AlignedBuf> {
        if !align.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("an AlignedBuf alignment must be a power of two, got {align}"),
            ));
        }
        let layout = Layout::from_size_align(capacity, align).map_err(|_| too_large(capacity))?;
        let ptr = if capacity == 0 {
            // No allocation; a dangling pointer with the alignment stands in.
            NonNull::new(std::ptr::without_provenance_mut::<u8>(align))
        } else if zeroed {
            // SAFETY: the layout has a non-zero size.
            NonNull::new(unsafe { alloc::alloc_zeroed(layout) })
        } else {
            // SAFETY: the layout has a non-zero size.
            NonNull::new(unsafe { alloc::alloc(layout) })
        };
        let ptr = ptr.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("cannot allocate an aligned buffer of {capacity} bytes"),
            )
        })?;
        Ok(AlignedBuf {
            ptr,
            len: if zeroed { capacity } else { 0 },
            capacity,
            align,
        })
    }

    /// The initialised bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is initialised.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The fixed capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The alignment of the address.
    pub fn align(&self) -> usize {
        self.align
    }

    /// The start of the buffer.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Forgets every byte (the capacity stays).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps the first `len` bytes (no effect if there are fewer).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Grows (filling with `value`) or shrinks to `len` bytes; `InvalidInput` beyond the
    /// capacity.
    pub fn resize(&mut self, len: usize, value: u8) -> io::Result<()> {
        if len > self.capacity {
            return Err(self.beyond_capacity(len));
        }
        if len > self.len {
            // SAFETY: `len <= capacity`, so the range lies in the allocation.
            unsafe {
                self.ptr
                    .as_ptr()
                    .add(self.len)
                    .write_bytes(value, len - self.len)
            };
        }
        self.len = len;
        Ok(())
    }

    /// Appends `bytes`; `InvalidInput` (and nothing appended) if they do not fit.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> io::Result<()> {
        let len = self
            .len
            .checked_add(bytes.len())
            .filter(|&len| len <= self.capacity)
            .ok_or_else(|| self.beyond_capacity(self.len.saturating_add(bytes.len())))?;
        // SAFETY: `len <= capacity`, so the destination lies in the allocation; `bytes` is
        // another object, so the ranges do not overlap.
        unsafe {
            self.ptr
                .as_ptr()
                .add(self.len)
                .copy_from_nonoverlapping(bytes.as_ptr(), bytes.len())
        };
        self.len = len;
        Ok(())
    }

    fn beyond_capacity(&self, len: usize) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{len} bytes do not fit in an AlignedBuf of {} bytes (it never grows)",
                self.capacity
            ),
        )
    }
}

fn too_large(capacity: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("an aligned buffer of {capacity} bytes is too large"),
    )
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.capacity == 0 {
            return;
        }
        // SAFETY: allocated in `allocate` with exactly this size and alignment.
        unsafe {
            alloc::dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.capacity, self.align),
            )
        };
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialised and owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("align", &self.align)
            .finish()
    }
}

// SAFETY: the allocation does not move when the `AlignedBuf` value moves, lives until it is
// dropped, and its first `len` bytes are initialised.
unsafe impl IoBuf for AlignedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.capacity
    }
}

// SAFETY: the whole capacity is writable memory of the allocation.
unsafe impl IoBufMut for AlignedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // The caller guarantees that `pos` bytes are initialised and `pos <= capacity`.
        self.len = pos.min(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_never_grow() {
        for align in [512, 4096, 65536] {
            let buf = AlignedBuf::new(align * 2, align).unwrap();
            assert_eq!(buf.as_ptr().addr() % align, 0);
            assert_eq!((buf.len(), buf.capacity()), (0, align * 2));
        }
        let alignment = DioAlignment::new(512, 4096).unwrap();
        let mut buf = AlignedBuf::for_file(1, alignment).unwrap();
        assert_eq!((buf.capacity(), buf.align()), (4096, 512));
        buf.extend_from_slice(&[1; 4000]).unwrap();
        let err = buf.extend_from_slice(&[2; 97]).unwrap_err();
        assert!(err.to_string().contains("never grows"), "{err}");
        assert_eq!(buf.len(), 4000, "a refused append appends nothing");
        assert!(buf.resize(4097, 0).is_err());
        buf.resize(4096, 9).unwrap();
        assert_eq!((buf[3999], buf[4000], buf[4095]), (1, 9, 9));
        buf.truncate(10);
        assert_eq!(&buf[..], &[1; 10]);
        buf.clear();
        assert!(buf.is_empty());
    }

    #[test]
    fn zeroed_and_empty_buffers() {
        let buf = AlignedBuf::zeroed(8192, 4096).unwrap();
        assert_eq!(buf.len(), 8192);
        assert!(buf.iter().all(|&b| b == 0));
        let empty = AlignedBuf::new(0, 4096).unwrap();
        assert_eq!(empty.as_ptr().addr() % 4096, 0);
        assert!(empty.is_empty());
        for _ in 0..1000 {
            drop(AlignedBuf::zeroed(4096, 4096).unwrap());
        }
    }

    #[test]
    fn bad_alignments_are_refused() {
        assert!(AlignedBuf::new(16, 3).is_err());
        assert!(AlignedBuf::new(16, 0).is_err());
        let err = DioAlignment::new(0, 512).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(DioAlignment::new(512, 3).is_err());
        assert!(AlignedBuf::new(usize::MAX - 10, 4096).is_err());
    }

    #[test]
    fn misaligned_direct_io_is_refused_naming_what_and_how() {
        let alignment = DioAlignment::new(512, 4096).unwrap();
        let buf = AlignedBuf::zeroed(8192, 512).unwrap();
        let ptr = buf.as_ptr();
        check(alignment, ptr, 4096, 8192).unwrap();
        // SAFETY: one byte into the allocation.
        let off_by_one = unsafe { ptr.add(1) };
        let err = check(alignment, off_by_one, 4096, 0).unwrap_err();
        assert!(err.to_string().contains("dio_mem_align"), "{err}");
        let err = check(alignment, ptr, 100, 0).unwrap_err();
        assert!(
            err.to_string()
                .contains("length 100 is not a multiple of 4096"),
            "{err}"
        );
        let err = check(alignment, ptr, 4096, 1000).unwrap_err();
        assert!(err.to_string().contains("file offset 1000"), "{err}");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
