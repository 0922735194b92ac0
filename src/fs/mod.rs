//! Files and directories: [`File`], [`OpenOptions`], [`Metadata`], direct I/O with
//! [`AlignedBuf`], and the path functions of `std::fs` as futures.
//!
//! On io_uring every operation is one submission to the core's ring (`OPENAT`, `READ`,
//! `WRITE`, `READV`/`WRITEV`, `FSYNC`, `STATX`, `FALLOCATE`, `FTRUNCATE`, `UNLINKAT`,
//! `RENAMEAT`, `MKDIRAT`, `LINKAT`, `SYMLINKAT`, `CLOSE`), so a core reading a file keeps
//! serving its sockets without a thread hop. Each opcode is probed when the ring is built; an
//! operation whose opcode the kernel lacks (`FTRUNCATE` before Linux 6.9, the path operations
//! before 5.15) runs on the runtime's blocking pool instead, with the same result. On epoll,
//! which cannot wait for a regular file, every file operation runs on the blocking pool.
//! [`read_dir()`] always does (there is no io_uring `getdents`). docs/backends.md lists which
//! path each operation takes.
//!
//! ```
//! coreio::block_on(async {
//!     let dir = std::env::temp_dir().join(format!("coreio-doc-fs-{}", std::process::id()));
//!     coreio::fs::create_dir_all(dir.join("a/b")).await?;
//!     coreio::fs::write(dir.join("a/b/note"), b"kept".to_vec()).await?;
//!     assert_eq!(coreio::fs::read(dir.join("a/b/note")).await?, b"kept");
//!     coreio::fs::rename(dir.join("a/b/note"), dir.join("a/note")).await?;
//!     assert!(coreio::fs::metadata(dir.join("a/note")).await?.is_file());
//!     coreio::fs::remove_file(dir.join("a/note")).await?;
//!     coreio::fs::remove_dir(dir.join("a/b")).await?;
//!     coreio::fs::remove_dir(dir.join("a")).await?;
//!     coreio::fs::remove_dir(&dir).await
//! })
//! .unwrap()
//! .unwrap();
//! ```
//!
//! Errors of operations on a path name the path (`opening /data/log: No such file or
//! directory`); the OS error stays reachable as the error's source, and its kind is kept.

// This module owns the file-system API and its path functions; it must never block its core
// (every call goes through the ring or the blocking pool).

mod aligned;
mod fd;
mod file;
mod metadata;
mod open_options;
mod ops;
mod read_dir;

use std::error::Error;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use aligned::{AlignedBuf, DioAlignment};
pub use file::{FallocateMode, File};
pub use metadata::{FileType, Metadata};
pub use open_options::OpenOptions;
pub use read_dir::{DirEntry, ReadDir, read_dir};

use crate::buf::IoBuf;
use crate::driver::Op;
use ops::{PathCall, PathOp, Statx};

/// Reads the whole file at `path`.
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let path = path.as_ref();
    let file = File::open(path).await?;
    // The size is a hint: the file may grow or shrink while it is read.
    let hint = file.metadata().await.map_or(0, |meta| meta.len());
    let mut buf = Vec::with_capacity(usize::try_from(hint).unwrap_or(0).saturating_add(1));
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity().clamp(8 * 1024, 4 << 20));
        }
        let filled = buf.len();
        let (result, slice) = file.read_at(buf.slice(filled..), filled as u64).await;
        buf = slice.into_inner();
        match result {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(with_path(err, "reading", path)),
        }
    }
    file.close()
        .await
        .map_err(|err| with_path(err, "closing", path))?;
    Ok(buf)
}

/// Reads the whole file at `path` as UTF-8 (`InvalidData` if it is not).
pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref();
    String::from_utf8(read(path).await?).map_err(|err| {
        with_path(
            io::Error::new(io::ErrorKind::InvalidData, err.utf8_error()),
            "reading",
            path,
        )
    })
}

/// Writes `contents`' initialised bytes to `path`, creating or truncating it. Not durable by
/// itself: open a [`File`] and [`sync_all`](File::sync_all) for that.
pub async fn write<B: IoBuf>(path: impl AsRef<Path>, contents: B) -> io::Result<()> {
    let path = path.as_ref();
    let file = File::create(path).await?;
    let (result, _) = file.write_all_at(contents, 0).await;
    result.map_err(|err| with_path(err, "writing", path))?;
    file.close()
        .await
        .map_err(|err| with_path(err, "closing", path))
}

/// The metadata of `path`, following symlinks.
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    stat(path.as_ref(), true).await
}

/// The metadata of `path` itself, not following a final symlink.
pub async fn symlink_metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    stat(path.as_ref(), false).await
}

async fn stat(path: &Path, follow: bool) -> io::Result<Metadata> {
    let completion = Op::new(Statx::of_path(c_path(path)?, follow, metadata::STATX_MASK)).await;
    completion
        .result
        .map_err(|err| with_path(err, "reading the metadata of", path))?;
    Ok(metadata::from_statx(&completion.data.into_statx()))
}

/// Removes the file (or symlink) at `path`.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    path_op(PathCall::RemoveFile, "removing", path.as_ref(), None).await
}

/// Removes the empty directory at `path`.
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    path_op(
        PathCall::RemoveDir,
        "removing the directory",
        path.as_ref(),
        None,
    )
    .await
}

/// Creates the directory `path` (mode `0o777` less the umask); its parent must exist.
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let call = PathCall::CreateDir { mode: 0o777 };
    path_op(call, "creating the directory", path.as_ref(), None).await
}

/// Creates the directory `path` and every missing parent; a directory that exists already
/// (also one another task or process creates meanwhile) is fine.
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    // The ancestors that do not exist, deepest first; then create them outermost first.
    let mut missing = Vec::new();
    for ancestor in path.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        match metadata(ancestor).await {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(with_path(
                    io::Error::new(
                        io::ErrorKind::NotADirectory,
                        "exists and is not a directory",
                    ),
                    "creating the directory",
                    ancestor,
                ));
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => missing.push(ancestor),
            Err(err) => return Err(err),
        }
    }
    for dir in missing.into_iter().rev() {
        match create_dir(dir).await {
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                if !metadata(dir).await?.is_dir() {
                    return Err(err);
                }
            }
            other => other?,
        }
    }
    Ok(())
}

/// Renames `from` to `to`, replacing `to` if it exists (atomically, within one file system).
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    path_op(
        PathCall::Rename,
        "renaming",
        from.as_ref(),
        Some(to.as_ref()),
    )
    .await
}

/// Makes `link` a new name (hard link) of the file `original`.
pub async fn hard_link(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    let (original, link) = (original.as_ref(), link.as_ref());
    path_op(PathCall::HardLink, "linking", original, Some(link)).await
}

/// Makes `link` a symbolic link whose target is `original`.
pub async fn symlink(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    let (original, link) = (original.as_ref(), link.as_ref());
    path_op(PathCall::Symlink, "symlinking", original, Some(link)).await
}

async fn path_op(
    call: PathCall,
    action: &'static str,
    path: &Path,
    to: Option<&Path>,
) -> io::Result<()> {
    let op = PathOp {
        call,
        path: c_path(path)?,
        to: to.map(c_path).transpose()?.unwrap_or_default(),
    };
    Op::new(op)
        .await
        .result
        .map(|_| ())
        .map_err(|err| match to {
            Some(to) => with_paths(err, action, path, to),
            None => with_path(err, action, path),
        })
}

/// A path as the kernel takes it; `InvalidInput` naming the path if it holds a NUL byte.
fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        with_path(
            io::Error::new(io::ErrorKind::InvalidInput, "the path contains a NUL byte"),
            "using",
            path,
        )
    })
}

/// `cause`, named after what was done to which path; same kind, `cause` as its source.
pub(crate) fn with_path(cause: io::Error, action: &'static str, path: &Path) -> io::Error {
    let kind = cause.kind();
    io::Error::new(
        kind,
        PathError {
            action,
            path: path.to_path_buf(),
            to: None,
            cause,
        },
    )
}

fn with_paths(cause: io::Error, action: &'static str, from: &Path, to: &Path) -> io::Error {
    let kind = cause.kind();
    io::Error::new(
        kind,
        PathError {
            action,
            path: from.to_path_buf(),
            to: Some(to.to_path_buf()),
            cause,
        },
    )
}

/// An error of an operation on a path.
#[derive(Debug)]
struct PathError {
    action: &'static str,
    path: PathBuf,
    to: Option<PathBuf>,
    cause: io::Error,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.to {
            Some(to) => write!(
                f,
                "{} {} to {}: {}",
                self.action,
                self.path.display(),
                to.display(),
                self.cause
            ),
            None => write!(f, "{} {}: {}", self.action, self.path.display(), self.cause),
        }
    }
}

impl Error for PathError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.cause)
    }
}
