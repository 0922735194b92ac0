//! `coreio::fs::File` and the path functions, on three paths each: the ring (io_uring), the
//! blocking pool under epoll, and the blocking pool under io_uring with the file opcodes
//! denied (what a kernel without them runs).

#[macro_use]
mod util;

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::rc::Rc;

use coreio::Backend;
use coreio::fs::{self, FallocateMode, File, OpenOptions};
use util::{DropHookBuf, TempDir, fds_settle_to, open_fds};

/// Every optional opcode a file operation uses.
const FILE_OPCODES: &[&str] = &[
    "OPENAT",
    "CLOSE",
    "FSYNC",
    "STATX",
    "FALLOCATE",
    "FTRUNCATE",
    "READV",
    "WRITEV",
    "UNLINKAT",
    "RENAMEAT",
    "MKDIRAT",
    "LINKAT",
    "SYMLINKAT",
];

#[derive(Clone, Copy, Debug)]
enum Path {
    Ring,
    Epoll,
    RingWithoutFileOpcodes,
}

fn run<F>(path: Path, future: F) -> F::Output
where
    F: Future + 'static,
    F::Output: 'static,
{
    let builder = coreio::Builder::new().cores(1);
    let builder = match path {
        Path::Ring => builder.backend(Backend::IoUring),
        Path::Epoll => builder.backend(Backend::Epoll),
        Path::RingWithoutFileOpcodes => builder
            .backend(Backend::IoUring)
            .deny_uring_opcodes(FILE_OPCODES.iter().copied()),
    };
    builder
        .block_on(future)
        .expect("the runtime failed to start")
}

/// Each test on every path: io_uring, epoll, and io_uring with the file opcodes denied (the
/// blocking pool's fallback).
macro_rules! all_paths {
    ($($fns:tt)*) => {
        each_path! {
            Path;
            [
                io_uring => Path::Ring,
                epoll => Path::Epoll,
                io_uring_pool_fallback => Path::RingWithoutFileOpcodes,
            ]
            $($fns)*
        }
    };
}

all_paths! {
    fn bytes_written_at_offsets_read_back(path) {
        let dir = TempDir::new("fs-rw");
        let file_path = dir.join("data");
        run(path, async move {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .open(&file_path)
                .await
                .unwrap();
            let (written, _) = file.write_at(b"0123456789".to_vec(), 0).await;
            assert_eq!(written.unwrap(), 10);
            let (result, _) = file.write_all_at(b"abc".to_vec(), 20).await;
            result.unwrap();

            let (read, buf) = file.read_at(Vec::with_capacity(4), 3).await;
            assert_eq!(read.unwrap(), 4);
            assert_eq!(buf, b"3456");
            // The gap reads as zeros, the end as 0 bytes.
            let (result, buf) = file.read_exact_at(Vec::with_capacity(13), 10).await;
            result.unwrap();
            assert_eq!(&buf[..10], &[0; 10]);
            assert_eq!(&buf[10..], b"abc");
            let (read, buf) = file.read_at(Vec::with_capacity(8), 23).await;
            assert_eq!((read.unwrap(), buf.len()), (0, 0));
            let (result, buf) = file.read_exact_at(Vec::with_capacity(8), 20).await;
            assert_eq!(result.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
            assert_eq!(buf, b"abc", "what was read before the end stays in the buffer");
            file.sync_all().await.unwrap();
            file.sync_data().await.unwrap();
            file.close().await.unwrap();
        });
        assert_eq!(std::fs::read(dir.join("data")).unwrap().len(), 23);
    }

    fn vectored_reads_and_writes_fill_buffers_in_order(path) {
        let dir = TempDir::new("fs-vectored");
        let file_path = dir.join("v");
        run(path, async move {
            let file = File::create_new(&file_path).await.unwrap();
            let parts = vec![b"head:".to_vec(), Vec::new(), b"body".to_vec()];
            let (written, parts) = file.write_vectored_at(parts, 2).await;
            assert_eq!(written.unwrap(), 9);
            assert_eq!(parts.len(), 3, "the buffers come back");
            let bufs = vec![Vec::with_capacity(3), Vec::with_capacity(4), Vec::with_capacity(8)];
            let (read, bufs) = file.read_vectored_at(bufs, 0).await;
            assert_eq!(read.unwrap(), 11);
            assert_eq!(bufs[0], b"\0\0h");
            assert_eq!(bufs[1], b"ead:");
            assert_eq!(bufs[2], b"body");
            let parts = vec![vec![b'x'; 100_000], vec![b'y'; 3], Vec::new(), vec![b'z'; 70_000]];
            let (result, parts) = file.write_all_vectored_at(parts, 100).await;
            result.unwrap();
            assert_eq!(parts[3].len(), 70_000);
            let (result, back) = file.read_exact_at(Vec::with_capacity(170_003), 100).await;
            result.unwrap();
            assert!(back[..100_000].iter().all(|&b| b == b'x'));
            assert_eq!(&back[100_000..100_003], b"yyy");
            assert!(back[100_003..].iter().all(|&b| b == b'z'));
            let too_many: Vec<Vec<u8>> = (0..1025).map(|_| vec![1]).collect();
            let (result, back) = file.write_vectored_at(too_many, 0).await;
            let err = result.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("at most 1024"), "{err}");
            assert_eq!(back.len(), 1025);
        });
    }

    fn open_errors_name_the_path_and_keep_the_kind(path) {
        let dir = TempDir::new("fs-errors");
        let missing = dir.join("missing");
        let existing = dir.join("existing");
        std::fs::write(&existing, b"x").unwrap();
        run(path, async move {
            let err = File::open(&missing).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
            assert!(err.to_string().contains(&*missing.to_string_lossy()), "{err}");
            let os = err.get_ref().and_then(|e| e.source()).and_then(|e| e.downcast_ref::<io::Error>());
            assert_eq!(os.and_then(io::Error::raw_os_error), Some(libc::ENOENT));

            let err = File::create_new(&existing).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);

            let err = File::open("bad\0path").await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("NUL"), "{err}");

            let err = OpenOptions::new().open(&existing).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

            // Writing to a file opened read-only is the kernel's EBADF.
            let file = File::open(&existing).await.unwrap();
            let (result, _) = file.write_at(b"y".to_vec(), 0).await;
            assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EBADF));

            let err = File::open(&existing).await.unwrap().read_at(Vec::with_capacity(1), u64::MAX).await.0.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "an offset io_uring would misread");
        });
    }

    fn metadata_length_and_allocation_follow_set_len_and_fallocate(path) {
        let dir = TempDir::new("fs-meta");
        let file_path = dir.join("m");
        run(path, async move {
            let file = OpenOptions::new().read(true).write(true).create(true).mode(0o640).open(&file_path).await.unwrap();
            let meta = file.metadata().await.unwrap();
            assert!(meta.is_file() && !meta.is_dir());
            assert_eq!(meta.len(), 0);
            assert_eq!(meta.permissions_mode() & 0o777, 0o640 & !umask());
            assert!(meta.blksize() > 0);

            file.set_len(10_000).await.unwrap();
            assert_eq!(file.metadata().await.unwrap().len(), 10_000);
            file.set_len(100).await.unwrap();
            assert_eq!(file.metadata().await.unwrap().len(), 100);

            file.fallocate(0, 1 << 20, FallocateMode::KEEP_SIZE).await.unwrap();
            let meta = file.metadata().await.unwrap();
            assert_eq!(meta.len(), 100, "KEEP_SIZE allocates without growing");
            assert!(meta.blocks() * 512 >= 1 << 20, "{} blocks", meta.blocks());
            file.fallocate(0, 1 << 20, FallocateMode::PUNCH_HOLE | FallocateMode::KEEP_SIZE).await.unwrap();
            assert!(file.metadata().await.unwrap().blocks() * 512 < 1 << 20);
            file.fallocate(0, 4096, FallocateMode::ALLOCATE).await.unwrap();
            assert_eq!(file.metadata().await.unwrap().len(), 4096);

            let err = file.fallocate(0, 10, FallocateMode::PUNCH_HOLE).await.unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP), "a hole must keep the size");

            let by_path = fs::metadata(&file_path).await.unwrap();
            assert_eq!((by_path.len(), by_path.ino()), (4096, file.metadata().await.unwrap().ino()));
        });
    }

    fn path_functions_create_rename_link_list_and_remove(path) {
        let dir = TempDir::new("fs-paths");
        let root = dir.path().to_path_buf();
        run(path, async move {
            fs::create_dir_all(root.join("a/b/c")).await.unwrap();
            fs::create_dir_all(root.join("a/b/c")).await.unwrap();
            assert!(fs::metadata(root.join("a/b/c")).await.unwrap().is_dir());
            let err = fs::create_dir(root.join("a")).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);

            fs::write(root.join("a/one"), b"first".to_vec()).await.unwrap();
            assert_eq!(fs::read(root.join("a/one")).await.unwrap(), b"first");
            assert_eq!(fs::read_to_string(root.join("a/one")).await.unwrap(), "first");
            fs::rename(root.join("a/one"), root.join("a/two")).await.unwrap();
            let err = fs::metadata(root.join("a/one")).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
            fs::hard_link(root.join("a/two"), root.join("a/hard")).await.unwrap();
            assert_eq!(fs::metadata(root.join("a/two")).await.unwrap().nlink(), 2);
            fs::symlink("two", root.join("a/soft")).await.unwrap();
            assert!(fs::symlink_metadata(root.join("a/soft")).await.unwrap().is_symlink());
            assert!(fs::metadata(root.join("a/soft")).await.unwrap().is_file());

            let mut names = Vec::new();
            let mut entries = fs::read_dir(root.join("a")).await.unwrap();
            while let Some(entry) = entries.next_entry().await.unwrap() {
                let kind = entry.file_type().unwrap();
                names.push((entry.file_name().into_string().unwrap(), kind.is_dir(), kind.is_symlink()));
            }
            names.sort();
            assert_eq!(names, [
                ("b".to_string(), true, false),
                ("hard".to_string(), false, false),
                ("soft".to_string(), false, true),
                ("two".to_string(), false, false),
            ]);

            let err = fs::rename(root.join("nope"), root.join("x")).await.unwrap_err();
            assert!(err.to_string().contains("nope") && err.to_string().contains(" to "), "{err}");
            let err = fs::remove_dir(root.join("a")).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::DirectoryNotEmpty);
            for name in ["a/two", "a/hard", "a/soft"] {
                fs::remove_file(root.join(name)).await.unwrap();
            }
            for name in ["a/b/c", "a/b", "a"] {
                fs::remove_dir(root.join(name)).await.unwrap();
            }
            let err = fs::read_dir(root.join("a")).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
        });
    }

    fn a_directory_of_many_entries_lists_each_once(path) {
        let dir = TempDir::new("fs-many");
        for i in 0..300 {
            std::fs::write(dir.join(&format!("f{i}")), b"").unwrap();
        }
        let root = dir.path().to_path_buf();
        run(path, async move {
            let mut entries = fs::read_dir(&root).await.unwrap();
            let mut seen = std::collections::BTreeSet::new();
            while let Some(entry) = entries.next_entry().await.unwrap() {
                assert!(seen.insert(entry.file_name()), "listed twice");
            }
            assert_eq!(seen.len(), 300);
        });
    }

    fn dropped_files_and_reads_in_flight_close_and_free_everything(path) {
        let dir = TempDir::new("fs-drop");
        let file_path = dir.join("big");
        std::fs::write(&file_path, vec![7u8; 1 << 20]).unwrap();
        run(path, async move {
            let baseline = open_fds();
            for _ in 0..20 {
                let file = File::open(&file_path).await.unwrap();
                let freed = Rc::new(Cell::new(false));
                let flag = freed.clone();
                let mut read = Box::pin(file.read_at(DropHookBuf::new(1 << 20, move || flag.set(true)), 0));
                // In flight (on the ring, or on a pool thread), then dropped with its file.
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let _ = read.as_mut().poll(&mut cx);
                drop(read);
                drop(file);
                assert!(util::wait_until(4000, || freed.get()).await, "the buffer was never freed");
            }
            assert_eq!(settle(baseline).await, baseline, "a dropped file stayed open");

            // A dropped open that completes closes the descriptor nobody collects.
            for _ in 0..20 {
                let mut open = Box::pin(File::open(&file_path));
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let _ = open.as_mut().poll(&mut cx);
                drop(open);
            }
            assert_eq!(settle(baseline).await, baseline, "a dropped open leaked its fd");
        });
    }

    fn std_files_convert_both_ways(path) {
        let dir = TempDir::new("fs-std");
        let file_path = dir.join("s");
        run(path, async move {
            let std_file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&file_path)
                .unwrap();
            let file = File::from_std(std_file).unwrap();
            assert!(file.dio_alignment().is_none());
            let (result, _) = file.write_all_at(b"std".to_vec(), 0).await;
            result.unwrap();
            let std_file = file.into_std().unwrap();
            assert_eq!(std_file.metadata().unwrap().len(), 3);
            assert_eq!(std_file.metadata().unwrap().permissions().mode() & 0o170000, 0o100000);
        });
    }
}

/// The process's umask, as /proc reports it (reading it with umask(2) would change it).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line.trim_start_matches("Umask:").trim(), 8).unwrap()
}

#[test]
fn an_unknown_denied_opcode_is_refused_by_the_builder() {
    let err = coreio::Builder::new()
        .deny_uring_opcodes(["STATX", "NOT_AN_OPCODE"])
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(
        err.to_string().contains("NOT_AN_OPCODE") && err.to_string().contains("FTRUNCATE"),
        "{err}"
    );
}

/// Waits (up to a few seconds: on the pool a close is two thread hops, which a loaded machine
/// can delay) for the descriptor count to come back to `baseline`; returns the last count.
async fn settle(baseline: usize) -> usize {
    let mut count = fds_settle_to(baseline).await;
    for _ in 0..10 {
        if count == baseline {
            break;
        }
        count = fds_settle_to(baseline).await;
    }
    count
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

all_paths! {
    fn file_operations_run_in_the_ring_where_the_kernel_has_them(path) {
        let dir = TempDir::new("fs-where");
        let file_path = dir.join("w");
        let pool_threads = run(path, async move {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&file_path)
                .await
                .unwrap();
            let (result, _) = file.write_all_at(vec![5u8; 4096], 0).await;
            result.unwrap();
            let (result, _) = file.read_at(Vec::with_capacity(10), 0).await;
            result.unwrap();
            file.sync_data().await.unwrap();
            file.set_len(10).await.unwrap();
            file.metadata().await.unwrap();
            file.close().await.unwrap();
            fs::rename(&file_path, file_path.with_extension("x")).await.unwrap();
            fs::remove_file(file_path.with_extension("x")).await.unwrap();
            (threads_named("coreio-blocking"), util::on_uring())
        });
        // (`COREIO_BACKEND=epoll` overrides the builder: then every path is epoll's.)
        match (pool_threads, path) {
            ((threads, true), Path::Ring) => {
                assert_eq!(threads, 0, "a file operation left the ring")
            }
            ((threads, _), _) => {
                assert!(threads > 0, "the operations never reached the blocking pool")
            }
        }
    }
}

all_paths! {
    fn direct_io_takes_aligned_buffers_and_refuses_the_rest_by_name(path) {
        let dir = TempDir::new("fs-direct");
        let file_path = dir.join("d");
        run(path, async move {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_DIRECT)
                .open(&file_path)
                .await;
            let file = match file {
                Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                    // The temporary directory's file system has no direct I/O.
                    eprintln!("O_DIRECT is not supported here: {err}");
                    return;
                }
                other => other.unwrap(),
            };
            let alignment = file.dio_alignment().expect("an O_DIRECT file knows its alignment");
            let block = alignment.offset();
            let mut buf = fs::AlignedBuf::for_file(2 * block, alignment).unwrap();
            buf.resize(2 * block, 0xab).unwrap();
            let (result, _) = file.write_all_at(buf, block as u64).await;
            result.unwrap();
            let (result, back) = file
                .read_exact_at(fs::AlignedBuf::for_file(block, alignment).unwrap(), block as u64)
                .await;
            result.unwrap();
            assert!(back.iter().all(|&b| b == 0xab));

            // Misaligned offsets and lengths never reach the kernel's bare EINVAL.
            let (result, _) = file.write_at(fs::AlignedBuf::zeroed(block, block).unwrap(), 1).await;
            let err = result.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("file offset 1"), "{err}");
            let mut short = fs::AlignedBuf::for_file(block, alignment).unwrap();
            short.extend_from_slice(b"short").unwrap();
            let (result, _) = file.write_at(short, 0).await;
            assert!(result.unwrap_err().to_string().contains("length 5"));
        });
    }
}

/// A buffer (a `Vec`) whose drop is counted where other threads can read it.
struct CountedBuf(Vec<u8>, #[allow(dead_code)] util::DropCount);

// SAFETY: the bytes live in the Vec's heap allocation, which does not move with the value.
unsafe impl coreio::buf::IoBuf for CountedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.0.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.0.len()
    }
    fn bytes_total(&self) -> usize {
        self.0.capacity()
    }
}

// SAFETY: the whole capacity is writable; `set_init` counts what was written.
unsafe impl coreio::buf::IoBufMut for CountedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.0.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: the caller guarantees `pos <= capacity` bytes were written.
        unsafe { self.0.set_len(pos) };
    }
}

all_paths! {
    fn a_runtime_that_stops_with_reads_in_flight_frees_every_buffer_once(path) {
        let dir = TempDir::new("fs-shutdown");
        let file_path = dir.join("big");
        std::fs::write(&file_path, vec![1u8; 4 << 20]).unwrap();
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = dropped.clone();
        run(path, async move {
            let file = Rc::new(File::open(&file_path).await.unwrap());
            for _ in 0..16 {
                let file = Rc::clone(&file);
                let buf = CountedBuf(Vec::with_capacity(4 << 20), util::DropCount(counter.clone()));
                drop(coreio::spawn(async move {
                    let _ = file.read_at(buf, 0).await;
                }));
            }
            // Let the reads start, then stop the runtime with them in flight.
            coreio::yield_now().await;
        });
        assert_eq!(
            dropped.load(std::sync::atomic::Ordering::SeqCst),
            16,
            "every buffer is freed exactly once by the time the runtime returns"
        );
    }
}
