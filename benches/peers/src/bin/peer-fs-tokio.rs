//! `peer-fs-tokio`: the file load of coreio's `benches/micro` `fs_load` on a tokio
//! `current_thread` runtime, with the same command line and the same result line, for
//! `benches/fs_compare.sh`.
//!
//! ```text
//! peer-fs-tokio --file PATH --mode randread|randwrite|seqread [--qd N] [--bs BYTES]
//!               [--duration S] [--warmup S] [--direct]
//! ```
//!
//! tokio's file I/O is the blocking pool: every `tokio::fs` call is a `spawn_blocking` of the
//! std call. Which pattern each mode uses, the idiomatic one that works:
//!
//! * `randread`/`randwrite`: queue depth N is N tasks (`tokio::spawn`), each owning an aligned
//!   buffer that it moves into `spawn_blocking(|| file.read_at(..))` (or `write_at`, through
//!   `std::os::unix::fs::FileExt`) on a shared `Arc<std::fs::File>` and gets back. This is
//!   what `tokio::fs::File` does inside, minus its cursor and its own buffer: a
//!   `tokio::fs::File` has one operation in flight at a time, needs a seek before each read,
//!   and reads into an internal `Vec` that is not aligned, so `O_DIRECT` reads through it fail
//!   with `EINVAL`. The file is opened with `tokio::fs::OpenOptions` and its `custom_flags`.
//! * `seqread`: `tokio::fs::File` itself with `AsyncReadExt::read` into a `--bs` buffer (each
//!   read is one `spawn_blocking` of at most `--bs` bytes, copied out of tokio's buffer), seeking
//!   back to the start at the end of the file. Queue depth must be 1: one file, one cursor.
//!
//! The result line and the measurement window are those of `fs_load` (warm-up uncounted, then
//! `--duration` seconds; `cpu_seconds` from `getrusage(RUSAGE_SELF)`, the blocking threads
//! included), with `runtime=tokio backend=blocking-pool`.

use std::alloc::{self, Layout};
use std::io::{self, SeekFrom, Write as _};
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

#[path = "../../../shared/fs_load.rs"]
mod load;
use load::{Load, Mode, cpu_time, splitmix64};

const USAGE: &str = "usage: peer-fs-tokio --file PATH --mode randread|randwrite|seqread \
                     [--qd N] [--bs BYTES] [--duration S] [--warmup S] [--direct]";

/// Buffer address alignment: a page, a multiple of any block device's `O_DIRECT` memory
/// alignment (offsets and lengths are multiples of `--bs`, which must suit the file).
const ALIGN: usize = 4096;

fn parse_options(args: &[String]) -> Result<Load, String> {
    let load = load::parse(args, |_, _| Ok(false))?;
    if load.mode == Mode::SeqRead && load.qd != 1 {
        return Err("seqread reads one tokio::fs::File through its cursor: --qd must be 1".into());
    }
    Ok(load)
}

/// A page-aligned heap block of fixed length, for `O_DIRECT` (a `Vec<u8>` gives no alignment).
struct Block {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the block owns its allocation uniquely, like a `Box<[u8]>`.
unsafe impl Send for Block {}

impl Block {
    fn new(len: usize, fill: u8) -> Block {
        let layout = Layout::from_size_align(len, ALIGN).expect("block size overflows");
        // SAFETY: the layout has a non-zero size (`--bs` is positive).
        let ptr = NonNull::new(unsafe { alloc::alloc(layout) })
            .unwrap_or_else(|| alloc::handle_alloc_error(layout));
        // SAFETY: `ptr` is valid for `len` bytes of writes.
        unsafe { ptr.as_ptr().write_bytes(fill, len) };
        Block { ptr, layout }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `len` bytes, initialised in `new`, owned by `self` and borrowed mutably once.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

struct Counters {
    stop: AtomicBool,
    ops: AtomicU64,
}

fn short(mode: Mode, bs: usize, offset: u64, n: usize) -> io::Error {
    io::Error::other(format!(
        "a {} of {bs} bytes at offset {offset} moved {n}",
        mode.name()
    ))
}

/// One queue slot of the random modes.
async fn random_worker(
    file: Arc<std::fs::File>,
    counters: Arc<Counters>,
    mode: Mode,
    bs: usize,
    blocks: u64,
    seed: u64,
) -> io::Result<()> {
    let mut rng = seed;
    let mut block = Block::new(bs, 0xa5 ^ seed as u8);
    while !counters.stop.load(Ordering::Relaxed) {
        let offset = (splitmix64(&mut rng) % blocks) * bs as u64;
        let file = Arc::clone(&file);
        let (result, back) = tokio::task::spawn_blocking(move || {
            let result = match mode {
                Mode::RandWrite => file.write_at(block.as_mut_slice(), offset),
                Mode::RandRead | Mode::SeqRead => file.read_at(block.as_mut_slice(), offset),
            };
            (result, block)
        })
        .await
        .map_err(io::Error::other)?;
        block = back;
        let n = result?;
        if n != bs {
            return Err(short(mode, bs, offset, n));
        }
        counters.ops.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// The one reader of `seqread`, through `tokio::fs::File`'s cursor.
async fn sequential_reader(
    mut file: tokio::fs::File,
    counters: Arc<Counters>,
    bs: usize,
    blocks: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; bs];
    let mut block = 0;
    while !counters.stop.load(Ordering::Relaxed) {
        if block == blocks {
            file.seek(SeekFrom::Start(0)).await?;
            block = 0;
        }
        let n = file.read(&mut buf).await?;
        if n != bs {
            return Err(short(Mode::SeqRead, bs, block * bs as u64, n));
        }
        block += 1;
        counters.ops.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

async fn run(options: Load) -> io::Result<String> {
    let mut open = tokio::fs::OpenOptions::new();
    open.read(true).write(options.mode == Mode::RandWrite);
    if options.direct {
        open.custom_flags(libc::O_DIRECT);
    }
    let file = open.open(&options.file).await?;
    let len = file.metadata().await?.len();
    let blocks = len / options.bs as u64;
    if blocks == 0 {
        return Err(io::Error::other(format!(
            "{} holds {len} bytes, less than one block of {}",
            options.file, options.bs
        )));
    }
    let counters = Arc::new(Counters {
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
    });

    let mut workers = Vec::with_capacity(options.qd);
    if options.mode == Mode::SeqRead {
        workers.push(tokio::spawn(sequential_reader(
            file,
            Arc::clone(&counters),
            options.bs,
            blocks,
        )));
    } else {
        let file = Arc::new(file.into_std().await);
        let seed = std::process::id() as u64 ^ 0x5eed_f11e;
        for slot in 0..options.qd {
            let seed = seed
                .wrapping_add(slot as u64)
                .wrapping_mul(0x2545_f491_4f6c_dd1d);
            workers.push(tokio::spawn(random_worker(
                Arc::clone(&file),
                Arc::clone(&counters),
                options.mode,
                options.bs,
                blocks,
                seed,
            )));
        }
    }

    tokio::time::sleep(Duration::from_secs_f64(options.warmup)).await;
    let (ops0, cpu0, t0) = (
        counters.ops.load(Ordering::Relaxed),
        cpu_time(),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs_f64(options.duration)).await;
    let (ops1, cpu1, t1) = (
        counters.ops.load(Ordering::Relaxed),
        cpu_time(),
        Instant::now(),
    );
    counters.stop.store(true, Ordering::Relaxed);
    for handle in workers {
        handle.await.map_err(io::Error::other)??;
    }

    let ops = ops1 - ops0;
    Ok(load::result_line(
        "tokio",
        "blocking-pool",
        &options,
        ops,
        t1 - t0,
        cpu1 - cpu0,
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse_options(&args) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("peer-fs-tokio: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("peer-fs-tokio: cannot build the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(options)) {
        Ok(line) => {
            let _ = writeln!(io::stdout().lock(), "{line}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("peer-fs-tokio: {err}");
            ExitCode::FAILURE
        }
    }
}
