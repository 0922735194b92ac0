//! CPU time of a whole process, read from the scheduler's own accounting.
//!
//! `/proc/PID/task/TID/schedstat` starts with the nanoseconds the thread has spent on a CPU,
//! counted by the scheduler at context switches and ticks: finer than `/proc/PID/stat`'s clock
//! ticks, and covering kernel time spent on the thread's behalf (syscalls, io_uring task work,
//! io-wq workers, which are threads of the process too). Summing it over every thread before and
//! after a window gives the CPU the process spent in that window, a figure far steadier on a
//! shared VM than throughput.
//!
//! This process is measured with `getrusage(RUSAGE_SELF)` instead, which keeps the time of
//! threads that have exited: the client's cores may finish before the last reading.

use std::fs;
use std::io;

/// Which process to account for.
#[derive(Debug, Clone, Copy)]
pub enum Process {
    /// This process.
    Current,
    /// Another process, by pid.
    Pid(u32),
}

impl Process {
    /// Total nanoseconds on a CPU over the process's threads.
    ///
    /// For another process, a thread that exits between two readings takes its time with it;
    /// the servers measured here keep their threads for their whole life.
    pub fn cpu_ns(self) -> io::Result<u64> {
        match self {
            Process::Current => own_cpu_ns(),
            Process::Pid(pid) => threads_cpu_ns(pid),
        }
    }
}

/// User plus system time of this process, exited threads included.
fn own_cpu_ns() -> io::Result<u64> {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage` for the duration of the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    Ok(ns(usage.ru_utime) + ns(usage.ru_stime))
}

/// The sum of the schedstat run times of another process's live threads.
fn threads_cpu_ns(pid: u32) -> io::Result<u64> {
    let mut total = 0u64;
    for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = entry?.path().join("schedstat");
        // A thread may exit between the listing and the read.
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let on_cpu = text
            .split_whitespace()
            .next()
            .and_then(|field| field.parse::<u64>().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected contents in {}: {text:?}", path.display()),
                )
            })?;
        total = total.saturating_add(on_cpu);
    }
    Ok(total)
}
