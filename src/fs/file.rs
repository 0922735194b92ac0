//! [`File`]: an open file, read and written at offsets through owned buffers.
//!
//! Every method is one operation (`fs::ops`) or a loop of them; where it runs (the ring, or
//! the blocking pool) is the driver's choice, per operation. The file remembers two things
//! beyond its descriptor: the direct-I/O alignment when it was opened with `O_DIRECT`, against
//! which every read and write is checked before it is submitted; and the first error a sync
//! reported, which every later sync reports again (after a failed writeback the kernel may
//! have dropped the dirty pages and marked them clean, so a later sync that "succeeds" would
//! lie about data that is gone).

// This module owns the `File` API. It must never report a short write as a complete one, nor let a
// sync succeed after one failed.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use super::aligned::{self, DioAlignment};
use super::fd::FileFd;
use super::metadata::{self, Metadata};
use super::ops::{
    Close, Fallocate, Fsync, Ftruncate, MAX_IOVECS, OpenAt, ReadAt, Statx, VectoredAt, WriteAt,
};
use super::{OpenOptions, c_path, with_path};
use crate::buf::{IoBuf, IoBufMut, Slice};
use crate::driver::Op;

/// An open file on the current core.
///
/// Reads and writes name their offset (`pread`/`pwrite`): the file has no cursor, so several
/// tasks of the core may use one `File` at once without seeking under each other. Buffers are
/// owned, as for sockets (see [`buf`](crate::buf)): each method takes one and gives it back
/// with the result.
///
/// ```
/// use coreio::fs::File;
///
/// coreio::block_on(async {
///     let path = std::env::temp_dir().join(format!("coreio-doc-file-{}", std::process::id()));
///     let file = File::options()
///         .read(true)
///         .write(true)
///         .create(true)
///         .truncate(true)
///         .open(&path)
///         .await?;
///     let (result, _) = file.write_all_at(b"hello, file".to_vec(), 0).await;
///     result?;
///     file.sync_all().await?;
///
///     let (result, buf) = file.read_at(Vec::with_capacity(5), 7).await;
///     assert_eq!(result?, 4);
///     assert_eq!(buf, b"file");
///     assert_eq!(file.metadata().await?.len(), 11);
///     file.close().await?;
///     coreio::fs::remove_file(&path).await
/// })
/// .unwrap()
/// .unwrap();
/// ```
///
/// Dropping a `File` closes it without blocking the core (an `IORING_OP_CLOSE`, or a pool job
/// on epoll), after any operation a dropped future left in flight has finished; an error that
/// close reports is then lost. [`close`](File::close) returns it.
///
/// A `File` belongs to its core (it is `!Send`); [`into_std`](File::into_std) gives a
/// `std::fs::File` to move elsewhere.
pub struct File {
    fd: FileFd,
    /// Set when the file was opened with `O_DIRECT`: the alignment its I/O must have.
    direct: Option<DioAlignment>,
    /// The errno of the first failed sync, reported by every later one.
    sync_failed: Cell<Option<i32>>,
}

/// Modes of [`File::fallocate`] (`fallocate(2)`'s `mode`), combined with `|`.
///
/// The empty mode allocates the range, growing the file if it ends past the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FallocateMode(i32);

impl FallocateMode {
    /// Allocate (and grow the file), the default.
    pub const ALLOCATE: FallocateMode = FallocateMode(0);
    /// `FALLOC_FL_KEEP_SIZE`: allocate without changing the file's size.
    pub const KEEP_SIZE: FallocateMode = FallocateMode(libc::FALLOC_FL_KEEP_SIZE);
    /// `FALLOC_FL_PUNCH_HOLE`: deallocate the range (must be combined with `KEEP_SIZE`).
    pub const PUNCH_HOLE: FallocateMode = FallocateMode(libc::FALLOC_FL_PUNCH_HOLE);
    /// `FALLOC_FL_ZERO_RANGE`: zero the range, allocating it.
    pub const ZERO_RANGE: FallocateMode = FallocateMode(libc::FALLOC_FL_ZERO_RANGE);
    /// `FALLOC_FL_COLLAPSE_RANGE`: remove the range, shifting what follows down.
    pub const COLLAPSE_RANGE: FallocateMode = FallocateMode(libc::FALLOC_FL_COLLAPSE_RANGE);
    /// `FALLOC_FL_INSERT_RANGE`: insert a hole, shifting what follows up.
    pub const INSERT_RANGE: FallocateMode = FallocateMode(libc::FALLOC_FL_INSERT_RANGE);

    /// The raw `mode` bits.
    pub fn bits(self) -> i32 {
        self.0
    }
}

impl std::ops::BitOr for FallocateMode {
    type Output = FallocateMode;
    fn bitor(self, other: FallocateMode) -> FallocateMode {
        FallocateMode(self.0 | other.0)
    }
}

/// The largest offset `pread`/`pwrite` take; io_uring would read `u64::MAX` as "the file
/// position" instead.
const MAX_OFFSET: u64 = i64::MAX as u64;

/// How long `close` and `into_std` wait between looks at operations still in flight.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(1);

impl File {
    /// Opens `path` for reading.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Opens `path` for writing only, creating it or truncating it (`File::options()` opens for
    /// reading and writing).
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    /// Creates `path` for reading and writing, failing with `AlreadyExists` if it exists.
    pub async fn create_new(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .await
    }

    /// Options to open a file with.
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    pub(super) async fn open_with(path: &Path, flags: i32, mode: libc::mode_t) -> io::Result<File> {
        let name = c_path(path)?;
        let completion = Op::new(OpenAt {
            path: name,
            flags,
            mode,
        })
        .await;
        let fd = completion
            .result
            .map_err(|err| with_path(err, "opening", path))?;
        // SAFETY: the open just returned this descriptor, and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let mut file = File::adopt(fd, None);
        if flags & libc::O_DIRECT != 0 {
            let alignment = match file.metadata().await {
                Ok(meta) => direct_alignment(&meta),
                Err(err) => Err(err),
            };
            file.direct = Some(
                alignment
                    .map_err(|err| with_path(err, "reading the O_DIRECT alignment of", path))?,
            );
        }
        Ok(file)
    }

    fn adopt(fd: OwnedFd, direct: Option<DioAlignment>) -> File {
        File {
            fd: FileFd::new(fd),
            direct,
            sync_failed: Cell::new(None),
        }
    }

    /// Adopts a std file on the current core. If it was opened with `O_DIRECT`, its alignment
    /// is read here, with a `statx` that blocks briefly.
    pub fn from_std(file: std::fs::File) -> io::Result<File> {
        let fd = OwnedFd::from(file);
        // SAFETY: `fd` is open; F_GETFL takes no pointer.
        let flags = crate::sys::cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
        let direct = if flags & libc::O_DIRECT != 0 {
            let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
            // SAFETY: the empty path is NUL-terminated and `stx` is writable memory of the
            // right type; `fd` is open.
            crate::sys::cvt(unsafe {
                libc::statx(
                    fd.as_raw_fd(),
                    c"".as_ptr(),
                    libc::AT_EMPTY_PATH,
                    metadata::STATX_MASK,
                    stx.as_mut_ptr(),
                )
            })?;
            // SAFETY: zeroed (a valid statx) and filled in by the kernel.
            let meta = metadata::from_statx(&unsafe { stx.assume_init() });
            Some(direct_alignment(&meta)?)
        } else {
            None
        };
        Ok(File::adopt(fd, direct))
    }

    /// The std file, to use on another thread; `Err(self)` while operations that dropped
    /// futures left in flight still use the descriptor (they finish within a pass or two of
    /// the core loop: yield and retry).
    pub fn into_std(self) -> Result<std::fs::File, File> {
        let File {
            fd,
            direct,
            sync_failed,
        } = self;
        match fd.try_take() {
            Ok(fd) => Ok(std::fs::File::from(fd)),
            Err(fd) => Err(File {
                fd,
                direct,
                sync_failed,
            }),
        }
    }

    /// The alignment direct I/O on this file needs, when it was opened with `O_DIRECT`: buffer
    /// addresses to [`mem`](DioAlignment::mem), offsets and lengths to
    /// [`offset`](DioAlignment::offset). [`AlignedBuf::for_file`](super::AlignedBuf::for_file)
    /// allocates to it.
    pub fn dio_alignment(&self) -> Option<DioAlignment> {
        self.direct
    }

    /// Reads into `buf`'s capacity from `offset`; returns how many bytes were read (0 at the end
    /// of the file). A `buf` with no capacity (`bytes_total() == 0`) is refused with
    /// `InvalidInput` before anything is submitted, since its `Ok(0)` would look like the end of
    /// the file.
    pub async fn read_at<B: IoBufMut>(&self, buf: B, offset: u64) -> (io::Result<usize>, B) {
        let mut buf = buf;
        if buf.bytes_total() == 0 {
            return (Err(crate::buf::no_capacity_error()), buf);
        }
        if let Err(err) = self.check(buf.stable_mut_ptr(), buf.bytes_total(), offset) {
            return (Err(err), buf);
        }
        let completion = Op::new(ReadAt {
            fd: self.fd.clone(),
            buf,
            offset,
        })
        .await;
        let buf = completion.data.finish(&completion.result);
        (completion.result.map(|n| n as usize), buf)
    }

    /// Reads until `buf`'s capacity is full, from `offset` (`UnexpectedEof` if the file ends
    /// first; the bytes read so far are in the buffer).
    pub async fn read_exact_at<B: IoBufMut>(&self, buf: B, offset: u64) -> (io::Result<()>, B) {
        let total = buf.bytes_total();
        let (mut filled, mut buf) = (0, buf);
        while filled < total {
            let (result, slice) = self
                .read_at(buf.slice(filled..), offset + filled as u64)
                .await;
            buf = slice.into_inner();
            match result {
                Ok(0) => return (Err(io::ErrorKind::UnexpectedEof.into()), buf),
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return (Err(err), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Writes `buf`'s initialised bytes at `offset`; returns how many were written, which may
    /// be fewer (a full disk reports the rest as `ENOSPC` on the next write).
    pub async fn write_at<B: IoBuf>(&self, buf: B, offset: u64) -> (io::Result<usize>, B) {
        if let Err(err) = self.check(buf.stable_ptr(), buf.bytes_init(), offset) {
            return (Err(err), buf);
        }
        let completion = Op::new(WriteAt {
            fd: self.fd.clone(),
            buf,
            offset,
        })
        .await;
        (completion.result.map(|n| n as usize), completion.data.buf)
    }

    /// Writes every initialised byte of `buf` from `offset`, or fails: a disk that fills up
    /// mid-way is `ENOSPC` (kind `StorageFull`), never a short write reported as done.
    pub async fn write_all_at<B: IoBuf>(&self, buf: B, offset: u64) -> (io::Result<()>, B) {
        let total = buf.bytes_init();
        let (mut written, mut buf) = (0, buf);
        while written < total {
            let (result, slice): (_, Slice<B>) = self
                .write_at(buf.slice(written..total), offset + written as u64)
                .await;
            buf = slice.into_inner();
            match result {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return (Err(err), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Reads from `offset` into each buffer's capacity in turn (`preadv`, at most 1024
    /// buffers); returns the total read.
    pub async fn read_vectored_at<B: IoBufMut>(
        &self,
        bufs: Vec<B>,
        offset: u64,
    ) -> (io::Result<usize>, Vec<B>) {
        let mut bufs = bufs;
        let count = bufs.len();
        let spans = bufs
            .iter_mut()
            .map(|buf| (buf.stable_mut_ptr().cast_const(), buf.bytes_total()));
        if let Err(err) = self.check_vectored(spans, count, offset) {
            return (Err(err), bufs);
        }
        let completion = Op::new(VectoredAt::read(self.fd.clone(), bufs, offset)).await;
        let bufs = completion.data.finish_read(&completion.result);
        (completion.result.map(|n| n as usize), bufs)
    }

    /// Writes every buffer's initialised bytes, in order, from `offset` (`pwritev`, at most 1024
    /// buffers); returns the total written, which may be fewer.
    pub async fn write_vectored_at<B: IoBuf>(
        &self,
        bufs: Vec<B>,
        offset: u64,
    ) -> (io::Result<usize>, Vec<B>) {
        let spans = bufs.iter().map(|buf| (buf.stable_ptr(), buf.bytes_init()));
        if let Err(err) = self.check_vectored(spans, bufs.len(), offset) {
            return (Err(err), bufs);
        }
        self.write_vectored_from(bufs, offset, 0).await
    }

    /// Writes every initialised byte of every buffer, in order, from `offset`, or fails (at
    /// most 1024 buffers): a disk that fills up mid-way is an error, never a short write.
    pub async fn write_all_vectored_at<B: IoBuf>(
        &self,
        bufs: Vec<B>,
        offset: u64,
    ) -> (io::Result<()>, Vec<B>) {
        let spans = bufs.iter().map(|buf| (buf.stable_ptr(), buf.bytes_init()));
        if let Err(err) = self.check_vectored(spans, bufs.len(), offset) {
            return (Err(err), bufs);
        }
        let total: usize = bufs.iter().map(IoBuf::bytes_init).sum();
        let (mut written, mut bufs) = (0, bufs);
        while written < total {
            let (result, back) = self
                .write_vectored_from(bufs, offset + written as u64, written)
                .await;
            bufs = back;
            match result {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), bufs),
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return (Err(err), bufs),
            }
        }
        (Ok(()), bufs)
    }

    /// One `pwritev` of the buffers' bytes after the first `skip`, at `offset`.
    async fn write_vectored_from<B: IoBuf>(
        &self,
        bufs: Vec<B>,
        offset: u64,
        skip: usize,
    ) -> (io::Result<usize>, Vec<B>) {
        let op = VectoredAt::write(self.fd.clone(), bufs, offset, skip);
        if op.len() == 0 {
            return (Ok(0), op.into_bufs());
        }
        let completion = Op::new(op).await;
        (
            completion.result.map(|n| n as usize),
            completion.data.into_bufs(),
        )
    }

    /// Flushes the file's data and metadata to the device (`fsync`).
    ///
    /// Once a sync has failed, every later one fails too, with the first error: the kernel may
    /// have dropped the pages it could not write, so the data is not on disk even if a retry
    /// reports success. Rewrite the data through a new `File` (or restore it) instead.
    pub async fn sync_all(&self) -> io::Result<()> {
        self.sync(false).await
    }

    /// Flushes the file's data, and the metadata needed to read it back (`fdatasync`): what a
    /// log or an append-only file needs after a write. Fails for good after a failure, as
    /// [`sync_all`](File::sync_all).
    pub async fn sync_data(&self) -> io::Result<()> {
        self.sync(true).await
    }

    async fn sync(&self, data_only: bool) -> io::Result<()> {
        if let Some(errno) = self.sync_failed.get() {
            return Err(sync_poisoned(errno));
        }
        let completion = Op::new(Fsync {
            fd: self.fd.clone(),
            data_only,
        })
        .await;
        match completion.result {
            Ok(_) => Ok(()),
            Err(err) => {
                // Only the kernel's verdict poisons the file; a refusal to run the call (a full
                // blocking pool) says nothing of the data.
                if let Some(errno) = err.raw_os_error()
                    && errno != libc::EINTR
                {
                    self.sync_failed.set(Some(errno));
                }
                Err(err)
            }
        }
    }

    /// Truncates or extends the file to `len` bytes (extended with zeros).
    pub async fn set_len(&self, len: u64) -> io::Result<()> {
        check_offset(len)?;
        Op::new(Ftruncate {
            fd: self.fd.clone(),
            len,
        })
        .await
        .result
        .map(|_| ())
    }

    /// `fallocate(2)` on `offset..offset + len` with `mode`: preallocate space so later writes
    /// cannot fail for lack of it, punch a hole, zero a range.
    pub async fn fallocate(&self, offset: u64, len: u64, mode: FallocateMode) -> io::Result<()> {
        check_offset(offset)?;
        check_offset(len)?;
        Op::new(Fallocate {
            fd: self.fd.clone(),
            mode: mode.bits(),
            offset,
            len,
        })
        .await
        .result
        .map(|_| ())
    }

    /// The file's metadata (`statx`): size, times, block size and, where the kernel reports
    /// it, the direct-I/O alignment.
    pub async fn metadata(&self) -> io::Result<Metadata> {
        let completion = Op::new(Statx::of_file(self.fd.clone(), metadata::STATX_MASK)).await;
        completion.result?;
        Ok(metadata::from_statx(&completion.data.into_statx()))
    }

    /// Closes the file and returns what `close(2)` reported (some file systems report a
    /// deferred write error only there). Waits first for operations that dropped futures left
    /// in flight.
    pub async fn close(self) -> io::Result<()> {
        let mut fd = self.fd;
        let owned = loop {
            match fd.try_take() {
                Ok(owned) => break owned,
                Err(shared) => {
                    fd = shared;
                    crate::time::sleep(IN_FLIGHT_POLL).await;
                }
            }
        };
        // From here the descriptor is the close operation's (closed whatever it reports).
        let completion = Op::new(Close {
            fd: owned.into_raw_fd(),
        })
        .await;
        completion.result.map(|_| ())
    }

    /// Refuses an I/O the kernel would refuse: an offset it would misread, or, on an
    /// `O_DIRECT` file, a misaligned buffer, length or offset.
    fn check(&self, ptr: *const u8, len: usize, offset: u64) -> io::Result<()> {
        check_offset(offset)?;
        match self.direct {
            Some(alignment) => aligned::check(alignment, ptr, len, offset),
            None => Ok(()),
        }
    }

    fn check_vectored(
        &self,
        bufs: impl Iterator<Item = (*const u8, usize)>,
        count: usize,
        offset: u64,
    ) -> io::Result<()> {
        if count > MAX_IOVECS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{count} buffers in one vectored file operation; at most {MAX_IOVECS}"),
            ));
        }
        check_offset(offset)?;
        if let Some(alignment) = self.direct {
            for (ptr, len) in bufs {
                aligned::check(alignment, ptr, len, offset)?;
            }
        }
        Ok(())
    }
}

fn check_offset(offset: u64) -> io::Result<()> {
    if offset > MAX_OFFSET {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("file offset or length {offset} is beyond the largest, {MAX_OFFSET}"),
        ));
    }
    Ok(())
}

fn sync_poisoned(errno: i32) -> io::Error {
    let cause = io::Error::from_raw_os_error(errno);
    io::Error::new(
        cause.kind(),
        format!(
            "an earlier sync of this file failed ({cause}); the kernel may have dropped the data \
             it could not write, so no later sync can vouch for it: rewrite the data through a \
             newly opened file"
        ),
    )
}

/// The alignment an `O_DIRECT` file needs: what `statx` reports, else the device's logical
/// block size, else 4096 (a multiple of every logical block size in use).
fn direct_alignment(meta: &Metadata) -> io::Result<DioAlignment> {
    if let Some(alignment) = meta.dio_alignment() {
        return Ok(alignment);
    }
    let block = logical_block_size(meta.dev()).unwrap_or(4096);
    DioAlignment::new(block, block)
}

/// The logical block size of device `dev` from sysfs (a partition reports its disk's).
fn logical_block_size(dev: u64) -> Option<usize> {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let base = format!("/sys/dev/block/{major}:{minor}");
    [
        format!("{base}/queue/logical_block_size"),
        format!("{base}/../queue/logical_block_size"),
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok())
    .and_then(|text| text.trim().parse().ok())
    .filter(|size: &usize| size.is_power_of_two())
}

impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("fd", &self.fd.raw())
            .field("direct", &self.direct)
            .field("sync_failed", &self.sync_failed.get().is_some())
            .finish()
    }
}
