//! File I/O load on one coreio core: random reads or writes at a fixed queue depth, or
//! sequential reads, for a fixed time; `benches/fs_compare.sh` runs it beside fio and tokio.
//!
//! ```text
//! fs_load --file PATH --mode randread|randwrite|seqread [--qd N] [--bs BYTES]
//!         [--duration S] [--warmup S] [--backend uring|epoll] [--direct]
//! ```
//!
//! Queue depth N is N tasks on the one core, each with its own buffer, each looping: pick an
//! offset, one `read_at` or `write_at`, count it. Random offsets are uniform over the file's
//! whole `--bs` blocks (a splitmix64 stream per task); sequential reads share one cursor that
//! wraps at the end of the file, so N tasks read the next N blocks. `--direct` opens the file
//! with `O_DIRECT` and allocates each buffer with `AlignedBuf::for_file` to the file's
//! alignment; without it the reads go through the page cache (into an `AlignedBuf` all the
//! same, so both cases use one buffer type). The file must exist and hold at least one block;
//! writes go over its existing blocks and never extend it.
//!
//! The tasks run for `--warmup` seconds uncounted, then `--duration` seconds counted, then
//! stop. At the end one line goes to stdout:
//!
//! ```text
//! fs_load runtime=coreio backend=io_uring mode=randread qd=32 bs=4096 ops=812345 bytes=3327365120 seconds=5.000 cpu_seconds=4.1
//! ```
//!
//! `ops` and `bytes` are the operations completed in the counted window, `seconds` its length
//! measured, `cpu_seconds` the process's user + system time over it (`getrusage(RUSAGE_SELF)`:
//! every thread, so the blocking pool on epoll and any io_uring worker threads too). A failed
//! operation or a short one (which a file of whole blocks never gives) exits 1.

use std::cell::Cell;
use std::io::{self, Write as _};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use coreio::fs::{AlignedBuf, DioAlignment, File, OpenOptions};

#[path = "../../../shared/fs_load.rs"]
mod load;
use load::{Load, Mode, cpu_time, splitmix64};

const USAGE: &str = "usage: fs_load --file PATH --mode randread|randwrite|seqread [--qd N] \
                     [--bs BYTES] [--duration S] [--warmup S] [--backend uring|epoll] [--direct]";

/// Buffer alignment without `O_DIRECT`: a page, which any buffered read is happy with.
const BUFFERED_ALIGN: usize = 4096;

struct Options {
    load: Load,
    backend: coreio::Backend,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut backend = coreio::Backend::IoUring;
    let load = load::parse(args, |flag, value| match flag {
        "--backend" => {
            backend = match value {
                "uring" | "io_uring" => coreio::Backend::IoUring,
                "epoll" => coreio::Backend::Epoll,
                other => return Err(format!("unknown backend {other:?}")),
            };
            Ok(true)
        }
        _ => Ok(false),
    })?;
    Ok(Options { load, backend })
}

/// What the tasks share: the file, the stop flag, the count and the sequential cursor.
struct Shared {
    file: File,
    mode: Mode,
    bs: usize,
    blocks: u64,
    stop: Cell<bool>,
    ops: Cell<u64>,
    cursor: Cell<u64>,
}

impl Shared {
    /// The next offset for a task whose random state is `rng`.
    fn offset(&self, rng: &mut u64) -> u64 {
        let block = match self.mode {
            Mode::SeqRead => {
                let block = self.cursor.get();
                self.cursor.set((block + 1) % self.blocks);
                block
            }
            Mode::RandRead | Mode::RandWrite => splitmix64(rng) % self.blocks,
        };
        block * self.bs as u64
    }
}

/// One queue slot: loops over operations until told to stop.
async fn worker(shared: Rc<Shared>, mut buf: AlignedBuf, seed: u64) -> io::Result<()> {
    let mut rng = seed;
    while !shared.stop.get() {
        let offset = shared.offset(&mut rng);
        let (result, back) = match shared.mode {
            Mode::RandWrite => shared.file.write_at(buf, offset).await,
            Mode::RandRead | Mode::SeqRead => shared.file.read_at(buf, offset).await,
        };
        buf = back;
        let n = result?;
        if n != shared.bs {
            return Err(io::Error::other(format!(
                "a {} of {} bytes at offset {offset} moved {n}",
                shared.mode.name(),
                shared.bs
            )));
        }
        shared.ops.set(shared.ops.get() + 1);
    }
    Ok(())
}

async fn run(options: Load) -> io::Result<String> {
    let mut open = OpenOptions::new();
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
    let alignment = match file.dio_alignment() {
        Some(alignment) => alignment,
        None => DioAlignment::new(BUFFERED_ALIGN, 1)?,
    };
    let backend = coreio::backend().map_or("none".to_string(), |b| b.to_string());
    let shared = Rc::new(Shared {
        file,
        mode: options.mode,
        bs: options.bs,
        blocks,
        stop: Cell::new(false),
        ops: Cell::new(0),
        cursor: Cell::new(0),
    });

    let seed = std::process::id() as u64 ^ 0x5eed_f11e;
    let mut workers = Vec::with_capacity(options.qd);
    for slot in 0..options.qd {
        let mut buf = AlignedBuf::for_file(options.bs, alignment)?;
        if buf.capacity() != options.bs {
            return Err(io::Error::other(format!(
                "--bs {} is not a multiple of the file's offset alignment ({alignment})",
                options.bs
            )));
        }
        // Writes send the initialised bytes: fill the block once with a non-zero pattern.
        buf.resize(options.bs, 0xa5 ^ slot as u8)?;
        let seed = seed
            .wrapping_add(slot as u64)
            .wrapping_mul(0x2545_f491_4f6c_dd1d);
        workers.push(coreio::spawn(worker(Rc::clone(&shared), buf, seed)));
    }

    coreio::time::sleep(Duration::from_secs_f64(options.warmup)).await;
    let (ops0, cpu0, t0) = (shared.ops.get(), cpu_time(), Instant::now());
    coreio::time::sleep(Duration::from_secs_f64(options.duration)).await;
    let (ops1, cpu1, t1) = (shared.ops.get(), cpu_time(), Instant::now());
    shared.stop.set(true);
    for handle in workers {
        handle
            .await
            .map_err(|err| io::Error::other(format!("a worker task failed: {err}")))??;
    }

    let ops = ops1 - ops0;
    Ok(load::result_line(
        "coreio",
        &backend,
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
            eprintln!("fs_load: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let backend = options.backend;
    match coreio::Builder::new()
        .backend(backend)
        .block_on(run(options.load))
    {
        Ok(Ok(line)) => {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{line}");
            ExitCode::SUCCESS
        }
        Ok(Err(err)) | Err(err) => {
            eprintln!("fs_load: {err}");
            ExitCode::FAILURE
        }
    }
}
