//! [`Metadata`] and [`FileType`]: what `statx(2)` reports of a file.
//!
//! One `statx` gives what `std::fs::Metadata` offers and what it does not: the birth time where
//! the file system keeps one, and the direct-I/O alignment (`STATX_DIOALIGN`, Linux 6.1) that
//! an `O_DIRECT` file's buffers and offsets need. The mask records which fields the kernel
//! filled, so a field it did not report is `None` or an error, never a zero taken for a value.

// This module owns the decoding of `statx`; it never makes the call itself (`fs::ops` does).

use std::fmt;
use std::io;
use std::time::{Duration, SystemTime};

use super::DioAlignment;

/// `STATX_DIOALIGN` (Linux 6.1): the direct-I/O alignment fields.
const STATX_DIOALIGN: u32 = 0x2000;

/// What coreio asks `statx` for: the basic fields, the birth time and the direct-I/O alignment.
pub(crate) const STATX_MASK: u32 = libc::STATX_BASIC_STATS | libc::STATX_BTIME | STATX_DIOALIGN;

/// A file's metadata, from `statx`: see [`File::metadata`](super::File::metadata) and
/// [`fs::metadata`](super::metadata()).
#[derive(Clone)]
pub struct Metadata {
    stx: libc::statx,
}

/// Decodes what the kernel wrote.
pub(crate) fn from_statx(stx: &libc::statx) -> Metadata {
    Metadata { stx: *stx }
}

impl Metadata {
    /// The size in bytes.
    pub fn len(&self) -> u64 {
        self.stx.stx_size
    }

    /// Whether the size is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The type of file.
    pub fn file_type(&self) -> FileType {
        FileType(u32::from(self.stx.stx_mode) & libc::S_IFMT)
    }

    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.file_type().is_file()
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.file_type().is_dir()
    }

    /// A symbolic link (only from [`symlink_metadata`](super::symlink_metadata)).
    pub fn is_symlink(&self) -> bool {
        self.file_type().is_symlink()
    }

    /// The full `st_mode`: type and permission bits.
    pub fn mode(&self) -> u32 {
        u32::from(self.stx.stx_mode)
    }

    /// The permission bits (`mode & 0o7777`: rwx for user, group, other, and
    /// setuid/setgid/sticky).
    pub fn permissions_mode(&self) -> u32 {
        self.mode() & 0o7777
    }

    /// The last modification of the contents.
    pub fn modified(&self) -> io::Result<SystemTime> {
        self.time(libc::STATX_MTIME, self.stx.stx_mtime, "modification")
    }

    /// The last access (as the mount's `atime` policy records it).
    pub fn accessed(&self) -> io::Result<SystemTime> {
        self.time(libc::STATX_ATIME, self.stx.stx_atime, "access")
    }

    /// The last change of the inode (contents, permissions, links).
    pub fn changed(&self) -> io::Result<SystemTime> {
        self.time(libc::STATX_CTIME, self.stx.stx_ctime, "status change")
    }

    /// The creation (birth) time, where the file system records one.
    pub fn created(&self) -> io::Result<SystemTime> {
        self.time(libc::STATX_BTIME, self.stx.stx_btime, "birth")
    }

    fn time(&self, bit: u32, at: libc::statx_timestamp, what: &str) -> io::Result<SystemTime> {
        if self.stx.stx_mask & bit == 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the file system does not report a {what} time"),
            ));
        }
        let secs = Duration::from_secs(at.tv_sec.unsigned_abs());
        let time = if at.tv_sec >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(secs)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(secs)
        };
        // A time set far outside what `SystemTime` holds (`touch -d` takes extreme values).
        time.and_then(|t| t.checked_add(Duration::from_nanos(u64::from(at.tv_nsec))))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the {what} time {}s is out of range", at.tv_sec),
                )
            })
    }

    /// The inode number.
    pub fn ino(&self) -> u64 {
        self.stx.stx_ino
    }

    /// The device the file lives on (`makedev(major, minor)`).
    pub fn dev(&self) -> u64 {
        libc::makedev(self.stx.stx_dev_major, self.stx.stx_dev_minor)
    }

    /// The number of hard links.
    pub fn nlink(&self) -> u64 {
        u64::from(self.stx.stx_nlink)
    }

    /// The owner's user id.
    pub fn uid(&self) -> u32 {
        self.stx.stx_uid
    }

    /// The owner's group id.
    pub fn gid(&self) -> u32 {
        self.stx.stx_gid
    }

    /// The preferred size of an I/O for efficiency.
    pub fn blksize(&self) -> u64 {
        u64::from(self.stx.stx_blksize)
    }

    /// The 512-byte blocks allocated to the file (less than `len / 512` for a sparse file).
    pub fn blocks(&self) -> u64 {
        self.stx.stx_blocks
    }

    /// The alignment direct I/O (`O_DIRECT`) on this file needs, where the kernel reports it
    /// (Linux 6.1 and file systems that support direct I/O); `None` otherwise, also where the
    /// file does not support direct I/O at all.
    pub fn dio_alignment(&self) -> Option<DioAlignment> {
        if self.stx.stx_mask & STATX_DIOALIGN == 0 || self.stx.stx_dio_mem_align == 0 {
            return None;
        }
        DioAlignment::new(
            self.stx.stx_dio_mem_align as usize,
            self.stx.stx_dio_offset_align as usize,
        )
        .ok()
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metadata")
            .field("len", &self.len())
            .field("file_type", &self.file_type())
            .field("mode", &format_args!("{:o}", self.permissions_mode()))
            .field("blksize", &self.blksize())
            .field("dio_alignment", &self.dio_alignment())
            .finish_non_exhaustive()
    }
}

/// The type of a file: the `S_IFMT` bits of its mode.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileType(u32);

impl FileType {
    /// The type std reported (a directory entry's, read on a pool thread).
    pub(crate) fn from_std(file_type: std::fs::FileType) -> FileType {
        use std::os::unix::fs::FileTypeExt;
        let bits = if file_type.is_dir() {
            libc::S_IFDIR
        } else if file_type.is_symlink() {
            libc::S_IFLNK
        } else if file_type.is_block_device() {
            libc::S_IFBLK
        } else if file_type.is_char_device() {
            libc::S_IFCHR
        } else if file_type.is_fifo() {
            libc::S_IFIFO
        } else if file_type.is_socket() {
            libc::S_IFSOCK
        } else {
            libc::S_IFREG
        };
        FileType(bits)
    }

    /// A regular file.
    pub fn is_file(self) -> bool {
        self.0 == libc::S_IFREG
    }

    /// A directory.
    pub fn is_dir(self) -> bool {
        self.0 == libc::S_IFDIR
    }

    /// A symbolic link.
    pub fn is_symlink(self) -> bool {
        self.0 == libc::S_IFLNK
    }

    /// A named pipe.
    pub fn is_fifo(self) -> bool {
        self.0 == libc::S_IFIFO
    }

    /// A Unix socket.
    pub fn is_socket(self) -> bool {
        self.0 == libc::S_IFSOCK
    }

    /// A block device.
    pub fn is_block_device(self) -> bool {
        self.0 == libc::S_IFBLK
    }

    /// A character device.
    pub fn is_char_device(self) -> bool {
        self.0 == libc::S_IFCHR
    }
}

impl fmt::Debug for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            libc::S_IFREG => "file",
            libc::S_IFDIR => "dir",
            libc::S_IFLNK => "symlink",
            libc::S_IFIFO => "fifo",
            libc::S_IFSOCK => "socket",
            libc::S_IFBLK => "block device",
            libc::S_IFCHR => "char device",
            _ => "unknown",
        };
        f.write_str(name)
    }
}
