//! What `fs_load` (coreio, benches/micro) and `peer-fs-tokio` (tokio, benches/peers) share, so
//! that both run the same load from the same flags and count it the same way: the options, the
//! offsets' random stream and the process's CPU time. Included by both with `#[path]` (two
//! crates of the benches workspace, whose only common dependency is libc).

use std::time::Duration;

/// Block size unless `--bs` says otherwise.
pub const DEFAULT_BS: usize = 4096;
/// Counted seconds unless `--duration` says otherwise.
pub const DEFAULT_DURATION: f64 = 10.0;
/// Uncounted seconds before them unless `--warmup` says otherwise.
pub const DEFAULT_WARMUP: f64 = 1.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    RandRead,
    RandWrite,
    SeqRead,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::RandRead => "randread",
            Mode::RandWrite => "randwrite",
            Mode::SeqRead => "seqread",
        }
    }
}

/// The load both programs run.
#[derive(Clone, Debug)]
pub struct Load {
    pub file: String,
    pub mode: Mode,
    pub qd: usize,
    pub bs: usize,
    pub duration: f64,
    pub warmup: f64,
    pub direct: bool,
}

/// Parses the common flags; `extra(flag, value)` takes a program's own flag with a value
/// (returning whether it knew it).
pub fn parse(
    args: &[String],
    mut extra: impl FnMut(&str, &str) -> Result<bool, String>,
) -> Result<Load, String> {
    let mut file = None;
    let mut mode = None;
    let mut load = Load {
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
            load.direct = true;
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
            "--qd" => load.qd = positive(arg, value)?,
            "--bs" => load.bs = positive(arg, value)?,
            "--duration" => load.duration = seconds(arg, value, false)?,
            "--warmup" => load.warmup = seconds(arg, value, true)?,
            other => {
                if !extra(other, value)? {
                    return Err(format!("unknown option {other:?}"));
                }
            }
        }
    }
    load.file = file.ok_or("--file is required")?;
    load.mode = mode.ok_or("--mode is required")?;
    Ok(load)
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

/// The one line both programs print: what ran, and what it did in the counted window.
pub fn result_line(
    runtime: &str,
    backend: &str,
    load: &Load,
    ops: u64,
    seconds: Duration,
    cpu: Duration,
) -> String {
    format!(
        "fs_load runtime={runtime} backend={backend} mode={} qd={} bs={} ops={ops} bytes={} \
         seconds={:.3} cpu_seconds={:.3}",
        load.mode.name(),
        load.qd,
        load.bs,
        ops * load.bs as u64,
        seconds.as_secs_f64(),
        cpu.as_secs_f64(),
    )
}

/// One step of splitmix64: a fast, well-mixed 64-bit stream; the modulo bias over a file's
/// blocks (at most 2^18 of them for 1 GiB in 4 KiB) is below one part in 10^13.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// User + system CPU time of the whole process so far (every thread).
pub fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is writable memory of the type getrusage fills in.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_SELF) failed");
    // SAFETY: zeroed (a valid rusage) and filled in by the kernel.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
