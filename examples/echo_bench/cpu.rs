//! CPU time of a whole process, read from the scheduler's own accounting.
//!
//! `/proc/PID/task/TID/schedstat` starts with the nanoseconds the thread has spent on a CPU,
//! counted by the scheduler at context switches and ticks: finer than `/proc/PID/stat`'s clock
//! ticks, and covering kernel time spent on the thread's behalf (syscalls, io_uring task work,
//! io-wq workers, which are threads of the process too). Summing it over every thread before and
//! after a window gives the CPU the process spent in that window, a figure far steadier on a
//! shared VM than throughput.

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
    fn task_dir(self) -> String {
        match self {
            Process::Current => "/proc/self/task".to_string(),
            Process::Pid(pid) => format!("/proc/{pid}/task"),
        }
    }

    /// Total nanoseconds on a CPU over all the process's live threads.
    ///
    /// A thread that exits between two readings takes its time with it; the servers measured
    /// here keep their threads for their whole life.
    pub fn cpu_ns(self) -> io::Result<u64> {
        let dir = self.task_dir();
        let mut total = 0u64;
        for entry in fs::read_dir(&dir)? {
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
}
