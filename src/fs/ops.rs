//! The file and path operations, each in its io_uring form and its blocking form side by side.
//!
//! Every operation here is a [`Source::Blocking`] one: on io_uring it is one submission
//! (`IORING_OP_READ`, `WRITE`, `READV`, `WRITEV`, `FSYNC`, `STATX`, `FALLOCATE`, `FTRUNCATE`,
//! `OPENAT`, `CLOSE`, `UNLINKAT`, `RENAMEAT`, `MKDIRAT`, `LINKAT`, `SYMLINKAT`); on epoll, and
//! on a kernel that lacks its opcode, its [`BlockingCall`] makes the same system call on a
//! blocking-pool thread (`driver::offload`). Both forms read and write only memory the struct
//! owns on the heap (buffers, boxed iovecs and `statx` results, C strings), so it stays put
//! when the struct moves into the driver as an orphan; both return what a completion would
//! carry (a count, a descriptor, 0).

// This module owns that parity and the FFI of file operations. It must never hand the kernel or a
// pool thread a pointer into a struct itself, and never lose a descriptor an orphaned open
// returned.

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::types::{Fd, FsyncFlags};
use io_uring::{opcode, squeue};

use super::fd::{FileFd, close_in_background};
use crate::buf::{IoBuf, IoBufMut};
use crate::driver::{BlockingCall, Operation, Source};
use crate::sys::{clamp_len, cvt};

pub(crate) use crate::buf::MAX_IOVECS;

/// A pointer's address, for a blocking call to carry to the pool thread (raw pointers are not
/// `Send`); `at` turns it back into a pointer with the same provenance.
fn addr<T>(ptr: *const T) -> usize {
    ptr.expose_provenance()
}

fn at<T>(addr: usize) -> *mut T {
    std::ptr::with_exposed_provenance_mut(addr)
}

/// A count a completion's `i32` result can carry.
fn count(n: isize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX).min(i32::MAX as u32)
}

/// A file offset for `pread`/`pwrite` (the File API refuses offsets above `i64::MAX`).
fn off(offset: u64) -> libc::off_t {
    libc::off_t::try_from(offset).unwrap_or(libc::off_t::MAX)
}

/// Reads into a buffer's capacity at an offset.
pub(crate) struct ReadAt<B> {
    pub(crate) fd: FileFd,
    pub(crate) buf: B,
    pub(crate) offset: u64,
}

// SAFETY: the kernel (or the pool thread) writes only into `buf`'s heap memory, at most
// `bytes_total()` bytes; `IoBufMut` guarantees it does not move with the struct.
unsafe impl<B: IoBufMut> Operation for ReadAt<B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let len = clamp_len(self.buf.bytes_total());
        opcode::Read::new(Fd(self.fd.raw()), self.buf.stable_mut_ptr(), len)
            .offset(self.offset)
            .build()
    }

    fn source(&self) -> Source<'_> {
        Source::Blocking {
            opcode: opcode::Read::CODE,
        }
    }

    fn blocking_call(&mut self) -> BlockingCall {
        let (fd, offset) = (self.fd.raw(), off(self.offset));
        let len = clamp_len(self.buf.bytes_total()) as usize;
        let buf = addr(self.buf.stable_mut_ptr());
        let call = move || {
            // SAFETY: under the rule of the `BlockingCall::new` below; `fd` stays open while the
            // operation's `FileFd` lives.
            let n = cvt(unsafe { libc::pread(fd, at(buf), len, offset) })?;
            Ok(count(n))
        };
        // SAFETY: `buf` is the buffer's heap memory, valid for `len` bytes of writes until the
        // operation drops, which the driver delays until the call has returned.
        unsafe { BlockingCall::new(call) }
    }
}

impl<B: IoBufMut> ReadAt<B> {
    /// Records the bytes a successful read wrote and gives the buffer back.
    pub(crate) fn finish(self, result: &io::Result<u32>) -> B {
        let mut buf = self.buf;
        if let Ok(n) = result {
            // SAFETY: the kernel reported writing `n` bytes from the buffer's start.
            unsafe { buf.set_init(*n as usize) };
        }
        buf
    }
}

/// Writes a buffer's initialised bytes at an offset.
pub(crate) struct WriteAt<B> {
    pub(crate) fd: FileFd,
    pub(crate) buf: B,
    pub(crate) offset: u64,
}

// SAFETY: the kernel (or the pool thread) only reads `buf`'s initialised heap bytes.
unsafe impl<B: IoBuf> Operation for WriteAt<B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let len = clamp_len(self.buf.bytes_init());
        opcode::Write::new(Fd(self.fd.raw()), self.buf.stable_ptr(), len)
            .offset(self.offset)
            .build()
    }

    fn source(&self) -> Source<'_> {
        Source::Blocking {
            opcode: opcode::Write::CODE,
        }
    }

    fn blocking_call(&mut self) -> BlockingCall {
        let (fd, offset) = (self.fd.raw(), off(self.offset));
        let len = clamp_len(self.buf.bytes_init()) as usize;
        let buf = addr(self.buf.stable_ptr());
        let call = move || {
            // SAFETY: under the rule of the `BlockingCall::new` below; `fd` stays open while the
            // operation's `FileFd` lives.
            let n = cvt(unsafe { libc::pwrite(fd, at(buf), len, offset) })?;
            Ok(count(n))
        };
        // SAFETY: `buf` is the buffer's heap memory with `len` initialised bytes, valid until
        // the operation drops, which the driver delays until the call has returned.
        unsafe { BlockingCall::new(call) }
    }
}

/// A vectored read or write at an offset: the iovecs point into the buffers' heap memory and
/// are boxed themselves, so none of it moves with the struct.
pub(crate) struct VectoredAt<B> {
    fd: FileFd,
    bufs: Vec<B>,
    iovecs: Box<[libc::iovec]>,
    offset: u64,
    write: bool,
}

impl<B: IoBuf> VectoredAt<B> {
    /// A write of the buffers' initialised bytes after the first `skip` of them (those an
    /// earlier partial write wrote), in order, at most [`MAX_IOVECS`] buffers' worth.
    pub(crate) fn write(fd: FileFd, bufs: Vec<B>, offset: u64, skip: usize) -> Self {
        let iovecs = crate::buf::write_iovecs(&bufs, skip, MAX_IOVECS).into_boxed_slice();
        VectoredAt {
            fd,
            bufs,
            iovecs,
            offset,
            write: true,
        }
    }

    /// Bytes the operation offers the kernel.
    pub(crate) fn len(&self) -> usize {
        self.iovecs.iter().map(|iovec| iovec.iov_len).sum()
    }

    pub(crate) fn into_bufs(self) -> Vec<B> {
        self.bufs
    }
}

impl<B: IoBufMut> VectoredAt<B> {
    /// A read filling each buffer's capacity in turn (at most [`MAX_IOVECS`]).
    pub(crate) fn read(fd: FileFd, mut bufs: Vec<B>, offset: u64) -> Self {
        let iovecs = bufs
            .iter_mut()
            .map(|buf| libc::iovec {
                iov_base: buf.stable_mut_ptr().cast(),
                iov_len: buf.bytes_total(),
            })
            .collect();
        VectoredAt {
            fd,
            bufs,
            iovecs,
            offset,
            write: false,
        }
    }

    /// Records how far a read of `n` bytes filled each buffer and gives them back.
    pub(crate) fn finish_read(self, result: &io::Result<u32>) -> Vec<B> {
        let mut bufs = self.bufs;
        if let Ok(n) = result {
            let mut left = *n as usize;
            for buf in &mut bufs {
                let filled = left.min(buf.bytes_total());
                // SAFETY: the kernel filled the iovecs in order, `filled` bytes of this one.
                unsafe { buf.set_init(filled) };
                left -= filled;
            }
        }
        bufs
    }
}

// SAFETY: the iovecs are boxed and point into the buffers' heap memory (`IoBuf` guarantees it
// stays put), reading initialised bytes for a write and writing within capacity for a read
// (`read` is only built from `IoBufMut` buffers).
unsafe impl<B: IoBuf> Operation for VectoredAt<B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let (fd, iovecs, n) = (Fd(self.fd.raw()), self.iovecs.as_ptr(), self.iovecs.len());
        let n = n.min(MAX_IOVECS) as u32;
        if self.write {
            opcode::Writev::new(fd, iovecs, n)
                .offset(self.offset)
                .build()
        } else {
            opcode::Readv::new(fd, iovecs, n)
                .offset(self.offset)
                .build()
        }
    }

    fn source(&self) -> Source<'_> {
        let opcode = if self.write {
            opcode::Writev::CODE
        } else {
            opcode::Readv::CODE
        };
        Source::Blocking { opcode }
    }

    fn blocking_call(&mut self) -> BlockingCall {
        let (fd, offset, write) = (self.fd.raw(), off(self.offset), self.write);
        let (iovecs, n) = (
            addr(self.iovecs.as_ptr()),
            self.iovecs.len().min(MAX_IOVECS),
        );
        let call = move || {
            let iovecs = at::<libc::iovec>(iovecs).cast_const();
            let done = if write {
                // SAFETY: under the rule of the `BlockingCall::new` below; `fd` stays open while
                // the operation's `FileFd` lives.
                unsafe { libc::pwritev(fd, iovecs, n as libc::c_int, offset) }
            } else {
                // SAFETY: under the rule of the `BlockingCall::new` below, for a read into the
                // buffers' capacity.
                unsafe { libc::preadv(fd, iovecs, n as libc::c_int, offset) }
            };
            Ok(count(cvt(done)?))
        };
        // SAFETY: the boxed iovecs and the buffers they point into stay valid until the
        // operation drops, which the driver delays until the call has returned.
        unsafe { BlockingCall::new(call) }
    }
}

/// `fsync` or `fdatasync`.
pub(crate) struct Fsync {
    pub(crate) fd: FileFd,
    pub(crate) data_only: bool,
}

// SAFETY: no memory is shared with the kernel.
unsafe impl Operation for Fsync {
    fn uring_entry(&mut self) -> squeue::Entry {
        let flags = if self.data_only {
            FsyncFlags::DATASYNC
        } else {
            FsyncFlags::empty()
        };
        opcode::Fsync::new(Fd(self.fd.raw())).flags(flags).build()
    }

    fn source(&self) -> Source<'_> {
        Source::Blocking {
            opcode: opcode::Fsync::CODE,
        }
    }

    fn blocking_call(&mut self) -> BlockingCall {
        let (fd, data_only) = (self.fd.raw(), self.data_only);
        let call = move || {
            // SAFETY: `fd` stays open while the operation's `FileFd` lives.
            let done = unsafe {
                if data_only {
                    libc::fdatasync(fd)
                } else {
                    libc::fsync(fd)
                }
            };
            cvt(done).map(|_| 0)
        };
        // SAFETY: the call touches no memory.
        unsafe { BlockingCall::new(call) }
    }
}

/// `fallocate(2)`.
pub(crate) struct Fallocate {
    pub(crate) fd: FileFd,
    pub(crate) mode: i32,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

// SAFETY: no memory is shared with the kernel.
unsafe impl Operation for Fallocate {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Fallocate::new(Fd(self.fd.raw()), self.len)
            .offset(self.offset)
            .mode(self.mode)
            .build()
    }

    fn source(&self) -> Source<'_> {
        Source::Blocking {
            opcode: opcode::Fallocate::CODE,
        }
    }

    fn blocking_call(&mut self) -> BlockingCall {
        let (fd, mode, offset, len) = (self.fd.raw(), self.mode, off(self.offset), off(self.len));
        let call = move || {
            // SAFETY: `fd` stays open while the operation's `FileFd` lives.
            cvt(unsafe { libc::fallocate(fd, mode, offset, len) }).map(|_| 0)
        };
        // SAFETY: the call touches no memory.
        unsafe { BlockingCall::new(call) }
    }
}

/// `ftruncate(2)` (`IORING_OP_FTRUNCATE` is Linux 6.9).
pub(crate) struct Ftruncate {
    pub(crate) fd: FileFd,
    pub(crate) len: u64,
}

// SAFETY: no memory is shared with the kernel.
unsafe impl Operation for Ftruncate {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Ftruncate::new(Fd(self.fd.raw()), self.len).build()
    }

    fn source(&self) -> Source<'_> {
        Source::Blocking {
            opcode: opcode::Ftruncate::CODE,
        }
    }

    fn blocking_call(&mut self) -> BlockingCall {
        let (fd, len) = (self.fd.raw(), off(self.len));
        let call = move || {
            // SAFETY: `fd` stays open while the operation's `FileFd` lives.
            cvt(unsafe { libc::ftruncate(fd, len) }).map(|_| 0)
        };
        // SAFETY: the call touches no memory.
        unsafe { BlockingCall::new(call) }
    }
}

/// `statx(2)` of an open file (`AT_EMPTY_PATH`) or of a path.
pub(crate) struct Statx {
    /// The file itself, or `None` for a path relative to the working directory.
    fd: Option<FileFd>,
    path: CString,
    flags: i32,
    mask: u32,
    buf: Box<MaybeUninit<libc::statx>>,
}

impl Statx {
    /// The metadata of the open file `fd`.
    pub(crate) fn of_file(fd: FileFd, mask: u32) -> Statx {
        Statx {
            fd: Some(fd),
            path: CString::default(),
            flags: libc::AT_EMPTY_PATH,
            mask,
            buf: Box::new(MaybeUninit::zeroed()),
        }
    }

    /// The metadata of `path`, following a final symlink unless `follow` is false.
    pub(crate) fn of_path(path: CString, follow: bool, mask: u32) -> Statx {
        Statx {
            fd: None,
            path,
            flags: if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW },
            mask,
            buf: Box::new(MaybeUninit::zeroed()),
        }
    }

    fn dirfd(&self) -> RawFd {
        self.fd.as_ref().map_or(libc::AT_FDCWD, FileFd::raw)
    }

    /// The result, after a successful completion.
    pub(crate) fn into_statx(self) -> libc::statx {
        // SAFETY: zeroed at construction (all-zero is a valid `statx`), and filled in by the
        // kernel on success.
        unsafe { self.buf.assume_init_read() }
    }
}

// SAFETY: the kernel reads the boxed C string and writes the boxed `statx`; both are heap
// memory owned by the struct.
unsafe impl Operation for Statx {
    fn uring_entry(&mut self) -> squeue::Entry {
        let buf: *mut libc::statx = self.buf.as_mut_ptr();
        opcode::Statx::new(Fd(self.dirfd()), self.path.as_ptr(), buf.cast())
            .flags(self.flags)
            .mask(self.mask)
            .build()
    }

    fn source(&self) -> Source<'_> {
        Source::Blocking {
            opcode: opcode::Statx::CODE,
        }
    }

    fn blocking_call(&mut self) -> BlockingCall {
        let (dirfd, flags, mask) = (self.dirfd(), self.flags, self.mask);
        let path = addr(self.path.as_ptr());
        let buf = addr(self.buf.as_mut_ptr());
        let call = move || {
            // SAFETY: under the rule of the `BlockingCall::new` below; `dirfd` stays open while the
            // operation's `FileFd` lives.
            cvt(unsafe { libc::statx(dirfd, at(path), flags, mask, at(buf)) }).map(|_| 0)
        };
        // SAFETY: the C string and the `statx` box live until the operation drops, which the
        // driver delays until the call has returned.
        unsafe { BlockingCall::new(call) }
    }
}

/// `openat(2)` relative to the working directory; the result is the new descriptor.
pub(crate) struct OpenAt {
    pub(crate) path: CString,
    pub(crate) flags: i32,
    pub(crate) mode: libc::mode_t,
}

// SAFETY: the kernel reads only the boxed C string.
unsafe impl Operation for OpenAt {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::OpenAt::new(Fd(libc::AT_FDCWD), self.path.as_ptr())
            .flags(self.flags | libc::O_CLOEXEC)
            .mode(self.mode)
            .build()
    }

    fn source(&self) -> Source<'_> {
        Source::Blocking {
            opcode: opcode::OpenAt::CODE,
        }
    }

    fn blocking_call(&mut self) -> BlockingCall {
        let (path, flags, mode) = (addr(self.path.as_ptr()), self.flags, self.mode);
        let call = move || {
            let path = at::<libc::c_char>(path).cast_const();
            // SAFETY: under the rule of the `BlockingCall::new` below.
            let fd =
                cvt(unsafe { libc::openat(libc::AT_FDCWD, path, flags | libc::O_CLOEXEC, mode) })?;
            Ok(fd as u32)
        };
        // SAFETY: the C string lives until the operation drops, which the driver delays until
        // the call has returned.
        unsafe { BlockingCall::new(call) }
    }

    fn orphan_completed(self, result: i32) {
        if result >= 0 {
            // Nobody awaits this file any more: close what the open returned.
            // SAFETY: the open just returned this descriptor, and nothing else owns it.
            close_in_background(unsafe { OwnedFd::from_raw_fd(result) });
        }
    }
}

/// An explicit `close(2)`, whose error the caller wants (a deferred write error, on some file
/// systems). The descriptor is the kernel's from submission on: closed whatever the result.
pub(crate) struct Close {
    pub(crate) fd: RawFd,
}

// SAFETY: no memory is shared with the kernel.
unsafe impl Operation for Close {
    fn uring_entry(&mut self) -> squeue::Entry {
        opcode::Close::new(Fd(self.fd)).build()
    }

    fn source(&self) -> Source<'_> {
        Source::Blocking {
            opcode: opcode::Close::CODE,
        }
    }

    fn blocking_call(&mut self) -> BlockingCall {
        let fd = self.fd;
        let call = move || {
            // SAFETY: the caller gave up the descriptor to this call.
            cvt(unsafe { libc::close(fd) }).map(|_| 0)
        };
        // SAFETY: the call touches no memory.
        unsafe { BlockingCall::new(call) }
    }
}

/// What a [`PathOp`] does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PathCall {
    /// `unlinkat(path, 0)`.
    RemoveFile,
    /// `unlinkat(path, AT_REMOVEDIR)`.
    RemoveDir,
    /// `mkdirat(path, mode)`.
    CreateDir { mode: libc::mode_t },
    /// `renameat(path, to)`.
    Rename,
    /// `linkat(path, to)`: `to` becomes a new name of `path`.
    HardLink,
    /// `symlinkat(path, to)`: `to` becomes a symlink whose target is `path`.
    Symlink,
}

/// An operation on one or two paths, relative to the working directory.
pub(crate) struct PathOp {
    pub(crate) call: PathCall,
    pub(crate) path: CString,
    /// The second path of a rename or link; empty otherwise.
    pub(crate) to: CString,
}

// SAFETY: the kernel reads only the two boxed C strings.
unsafe impl Operation for PathOp {
    fn uring_entry(&mut self) -> squeue::Entry {
        let (cwd, path, to) = (Fd(libc::AT_FDCWD), self.path.as_ptr(), self.to.as_ptr());
        match self.call {
            PathCall::RemoveFile => opcode::UnlinkAt::new(cwd, path).build(),
            PathCall::RemoveDir => opcode::UnlinkAt::new(cwd, path)
                .flags(libc::AT_REMOVEDIR)
                .build(),
            PathCall::CreateDir { mode } => opcode::MkDirAt::new(cwd, path).mode(mode).build(),
            PathCall::Rename => opcode::RenameAt::new(cwd, path, cwd, to).build(),
            PathCall::HardLink => opcode::LinkAt::new(cwd, path, cwd, to).build(),
            PathCall::Symlink => opcode::SymlinkAt::new(cwd, path, to).build(),
        }
    }

    fn source(&self) -> Source<'_> {
        let opcode = match self.call {
            PathCall::RemoveFile | PathCall::RemoveDir => opcode::UnlinkAt::CODE,
            PathCall::CreateDir { .. } => opcode::MkDirAt::CODE,
            PathCall::Rename => opcode::RenameAt::CODE,
            PathCall::HardLink => opcode::LinkAt::CODE,
            PathCall::Symlink => opcode::SymlinkAt::CODE,
        };
        Source::Blocking { opcode }
    }

    fn blocking_call(&mut self) -> BlockingCall {
        let (call, path, to) = (self.call, addr(self.path.as_ptr()), addr(self.to.as_ptr()));
        let call = move || {
            let cwd = libc::AT_FDCWD;
            let (path, to) = (at::<libc::c_char>(path), at::<libc::c_char>(to));
            // SAFETY: under the rule of the `BlockingCall::new` below; each call reads only the
            // NUL-terminated strings.
            let done = unsafe {
                match call {
                    PathCall::RemoveFile => libc::unlinkat(cwd, path, 0),
                    PathCall::RemoveDir => libc::unlinkat(cwd, path, libc::AT_REMOVEDIR),
                    PathCall::CreateDir { mode } => libc::mkdirat(cwd, path, mode),
                    PathCall::Rename => libc::renameat(cwd, path, cwd, to),
                    PathCall::HardLink => libc::linkat(cwd, path, cwd, to, 0),
                    PathCall::Symlink => libc::symlinkat(path, cwd, to),
                }
            };
            cvt(done).map(|_| 0)
        };
        // SAFETY: both C strings live until the operation drops, which the driver delays until
        // the call has returned.
        unsafe { BlockingCall::new(call) }
    }
}
