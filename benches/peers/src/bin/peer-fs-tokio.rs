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

const USAGE: &str = "usage: peer-fs-tokio --file PATH --mode randread|randwrite|seqread \
                     [--qd N] [--bs BYTES] [--duration S] [--warmup S] [--direct]";

/// Block size unless `--bs` says otherwise.
const DEFAULT_BS: usize = 4096;
/// Counted seconds unless `--duration` says otherwise.
const DEFAULT_DURATION: f64 = 10.0;
/// Uncounted seconds before them unless `--warmup` says otherwise.
const DEFAULT_WARMUP: f64 = 1.0;
/// Buffer address alignment: a page, a multiple of any block device's `O_DIRECT` memory
/// alignment (offsets and lengths are multiples of `--bs`, which must suit the file).
const ALIGN: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    RandRead,
    RandWrite,
    SeqRead,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::RandRead => "randread",
            Mode::RandWrite => "randwrite",
            Mode::SeqRead => "seqread",
        }
    }
}

struct Options {
    file: String,
    mode: Mode,
    qd: usize,
    bs: usize,
    duration: f64,
    warmup: f64,
    direct: bool,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut file = None;
    let mut mode = None;
    let mut options = Options {
        file: String::new(),
        mode: Mode::RandRead,
        qd: 1,
        bs: DEFAULT_BS,
        duration: DEFAULT_DURATION,
        warmup: DEFAULT_WARMUP,
        direct: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--direct" {
            options.direct = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{arg} wants a value"))?;
        match arg.as_str() {
            "--file" => file = Some(value.clone()),
            "--mode" => {
                mode = Some(match value.as_str() {
                    "randread" => Mode::RandRead,
                    "randwrite" => Mode::RandWrite,
                    "seqread" => Mode::SeqRead,
                    other => return Err(format!("unknown mode {other:?}")),
                })
            }
            "--qd" => options.qd = positive(arg, value)?,
            "--bs" => options.bs = positive(arg, value)?,
            "--duration" => options.duration = seconds(arg, value, false)?,
            "--warmup" => options.warmup = seconds(arg, value, true)?,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    options.file = file.ok_or("--file is required")?;
    options.mode = mode.ok_or("--mode is required")?;
    if options.mode == Mode::SeqRead && options.qd != 1 {
        return Err("seqread reads one tokio::fs::File through its cursor: --qd must be 1".into());
    }
    Ok(options)
}

fn positive(option: &str, value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{option} wants a positive whole number, got {value:?}"
        )),
    }
}

fn seconds(option: &str, value: &str, zero_ok: bool) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(s) if s.is_finite() && (s > 0.0 || (zero_ok && s == 0.0)) => Ok(s),
        _ => Err(format!("{option} wants a number of seconds, got {value:?}")),
    }
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

/// One step of splitmix64, as in `fs_load`.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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

/// User + system CPU time of the whole process so far.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is writable memory of the type getrusage fills in.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_SELF) failed");
    // SAFETY: zeroed (a valid rusage) and filled in by the kernel.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

async fn run(options: Options) -> io::Result<String> {
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
    Ok(format!(
        "fs_load runtime=tokio backend=blocking-pool mode={} qd={} bs={} ops={ops} bytes={} \
         seconds={:.3} cpu_seconds={:.3}",
        options.mode.name(),
        options.qd,
        options.bs,
        ops * options.bs as u64,
        (t1 - t0).as_secs_f64(),
        (cpu1 - cpu0).as_secs_f64(),
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
