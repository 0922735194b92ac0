//! [`read_dir`]: a directory's entries, listed on the blocking pool in batches.
//!
//! io_uring has no `getdents`, so listing a directory is `std::fs::read_dir` on a pool thread,
//! [`BATCH`] entries per job: a directory of a million entries neither blocks the core nor
//! costs a job per entry. The std iterator travels to the pool thread and back with each
//! batch; it is never shared.

// This module owns the batching; it must never call into the directory on the core.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::future::{Future, poll_fn};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::{FileType, Metadata, symlink_metadata, with_path};
use crate::blocking::{BlockingHandle, spawn_blocking};

/// Entries listed per pool job.
const BATCH: usize = 64;

/// An entry as a pool thread read it: with its type, which std reads with an `lstat` where the
/// listing does not carry it (a syscall that must not run on the core).
type Listed = io::Result<(std::fs::DirEntry, Option<std::fs::FileType>)>;

/// What one job hands back: the iterator (`None` once it ended) and the entries it read.
type Batch = (Option<std::fs::ReadDir>, VecDeque<Listed>);

/// The entries of a directory, from [`read_dir`]; `.` and `..` are not among them.
///
/// Use [`next_entry`](ReadDir::next_entry), or the [`Stream`] impl.
pub struct ReadDir {
    path: PathBuf,
    ready: VecDeque<Listed>,
    state: State,
}

enum State {
    /// Between batches, with the iterator (`None` once it ended).
    Idle(Option<std::fs::ReadDir>),
    /// A batch is being read on the pool.
    Listing(BlockingHandle<Batch>),
}

/// Lists the directory at `path`.
pub async fn read_dir(path: impl AsRef<Path>) -> io::Result<ReadDir> {
    let path = path.as_ref().to_path_buf();
    let opened = {
        let path = path.clone();
        spawn_blocking(move || std::fs::read_dir(path)).await
    };
    let dir = opened?.map_err(|err| with_path(err, "listing", &path))?;
    Ok(ReadDir {
        path,
        ready: VecDeque::new(),
        state: State::Idle(Some(dir)),
    })
}

impl ReadDir {
    /// The next entry, or `None` once every entry was listed.
    pub async fn next_entry(&mut self) -> io::Result<Option<DirEntry>> {
        poll_fn(|cx| self.poll_next_entry(cx)).await.transpose()
    }

    fn poll_next_entry(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<DirEntry>>> {
        loop {
            if let Some(entry) = self.ready.pop_front() {
                return Poll::Ready(Some(
                    entry
                        .map(|(inner, file_type)| DirEntry { inner, file_type })
                        .map_err(|err| with_path(err, "listing", &self.path)),
                ));
            }
            match &mut self.state {
                State::Idle(None) => return Poll::Ready(None),
                State::Idle(dir) => {
                    let Some(mut dir) = dir.take() else {
                        unreachable!("matched Some above");
                    };
                    self.state = State::Listing(spawn_blocking(move || {
                        let batch: VecDeque<Listed> = dir
                            .by_ref()
                            .take(BATCH)
                            .map(|entry| {
                                entry.map(|entry| {
                                    let file_type = entry.file_type().ok();
                                    (entry, file_type)
                                })
                            })
                            .collect();
                        let more = batch.len() == BATCH;
                        (more.then_some(dir), batch)
                    }));
                }
                State::Listing(handle) => match Pin::new(handle).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok((dir, batch))) => {
                        self.ready = batch;
                        self.state = State::Idle(dir);
                    }
                    Poll::Ready(Err(err)) => {
                        self.state = State::Idle(None);
                        return Poll::Ready(Some(Err(with_path(
                            err.into(),
                            "listing",
                            &self.path,
                        ))));
                    }
                },
            }
        }
    }
}

impl Stream for ReadDir {
    type Item = io::Result<DirEntry>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_entry(cx)
    }
}

impl std::fmt::Debug for ReadDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadDir").field("path", &self.path).finish()
    }
}

/// One entry of a directory.
#[derive(Debug)]
pub struct DirEntry {
    inner: std::fs::DirEntry,
    file_type: Option<std::fs::FileType>,
}

impl DirEntry {
    /// The entry's full path (the directory's path joined with the name).
    pub fn path(&self) -> PathBuf {
        self.inner.path()
    }

    /// The entry's name.
    pub fn file_name(&self) -> OsString {
        self.inner.file_name()
    }

    /// The entry's type (a symlink is a symlink: not followed), read when it was listed;
    /// `None` if that failed (the entry was removed meanwhile).
    pub fn file_type(&self) -> Option<FileType> {
        self.file_type.map(FileType::from_std)
    }

    /// The entry's metadata, not following a symlink (`statx` through the ring).
    pub async fn metadata(&self) -> io::Result<Metadata> {
        symlink_metadata(self.path()).await
    }
}
