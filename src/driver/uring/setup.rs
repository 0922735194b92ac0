//! Creating a ring: modern flags where the kernel has them, and errors that say what to do.
//!
//! [`build_ring`] asks for the fastest setup first (a single issuer with deferred task work, so
//! completions are processed only when this core enters the kernel) and drops one flag at a time
//! when an older kernel rejects it with `EINVAL`. It then checks the features and opcodes coreio
//! relies on. Failures become a [`RingSetupError`] that names the cause and the remedy.

// This module owns ring creation and nothing after it.

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{IoUring, Probe, opcode};

/// Why io_uring could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingSetupCause {
    /// The kernel has no io_uring (`ENOSYS`).
    NotInKernel,
    /// io_uring is blocked: a seccomp profile (Docker's and containerd's default ones) or
    /// `kernel.io_uring_disabled` (`EPERM`).
    Blocked,
    /// Not enough lockable memory for the ring (`ENOMEM`, RLIMIT_MEMLOCK on kernels < 5.12).
    MemoryLimit,
    /// The kernel has io_uring but lacks a feature or opcode coreio needs.
    Unsupported,
    /// Any other failure, e.g. too many open files.
    Other,
}

/// io_uring could not be set up; the message names the cause and the remedy.
#[derive(Debug)]
pub struct RingSetupError {
    cause: RingSetupCause,
    detail: String,
    source: Option<io::Error>,
}

impl RingSetupError {
    /// The class of failure.
    pub fn cause(&self) -> RingSetupCause {
        self.cause
    }

    /// Whether io_uring is unavailable on this system (as opposed to a resource failure): the
    /// cases in which [`Backend::Auto`](crate::Backend::Auto) falls back to epoll.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self.cause,
            RingSetupCause::NotInKernel | RingSetupCause::Blocked | RingSetupCause::Unsupported
        )
    }

    fn new(cause: RingSetupCause, detail: String, source: Option<io::Error>) -> Self {
        RingSetupError {
            cause,
            detail,
            source,
        }
    }

    fn from_setup_errno(err: io::Error, entries: u32) -> Self {
        match err.raw_os_error() {
            Some(libc::ENOSYS) => Self::new(
                RingSetupCause::NotInKernel,
                "io_uring_setup failed with ENOSYS: this kernel was built without io_uring \
                 (it needs Linux 5.11 or newer); use the epoll backend"
                    .into(),
                Some(err),
            ),
            Some(libc::EPERM) => Self::new(
                RingSetupCause::Blocked,
                "io_uring_setup failed with EPERM: blocked by a seccomp profile (e.g. Docker's \
                 default) or by kernel.io_uring_disabled; allow io_uring or use the epoll backend"
                    .into(),
                Some(err),
            ),
            Some(libc::ENOMEM) => {
                let needed = ring_bytes(entries);
                let limit = memlock_limit()
                    .map(|l| format!("{l} bytes"))
                    .unwrap_or_else(|| "unknown".into());
                Self::new(
                    RingSetupCause::MemoryLimit,
                    format!(
                        "io_uring_setup failed with ENOMEM: a ring of {entries} entries needs about \
                         {needed} bytes of locked memory and RLIMIT_MEMLOCK is {limit}; raise it \
                         (ulimit -l), use fewer ring entries, or use the epoll backend"
                    ),
                    Some(err),
                )
            }
            Some(libc::EOPNOTSUPP) => Self::new(
                RingSetupCause::Unsupported,
                "io_uring_setup failed with EOPNOTSUPP: this sandbox does not support io_uring; \
                 use the epoll backend"
                    .into(),
                Some(err),
            ),
            _ => Self::new(
                RingSetupCause::Other,
                format!("io_uring_setup failed: {err}"),
                Some(err),
            ),
        }
    }
}

impl fmt::Display for RingSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for RingSetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<RingSetupError> for io::Error {
    fn from(err: RingSetupError) -> io::Error {
        let kind = match err.cause {
            RingSetupCause::Blocked => io::ErrorKind::PermissionDenied,
            RingSetupCause::NotInKernel | RingSetupCause::Unsupported => io::ErrorKind::Unsupported,
            RingSetupCause::MemoryLimit => io::ErrorKind::OutOfMemory,
            RingSetupCause::Other => err
                .source
                .as_ref()
                .map(io::Error::kind)
                .unwrap_or(io::ErrorKind::Other),
        };
        io::Error::new(kind, err)
    }
}

/// Approximate locked memory for a ring: SQEs, the SQ index array and CQEs (twice as many),
/// each rounded up to pages.
fn ring_bytes(entries: u32) -> u64 {
    let page = 4096u64;
    let round = |n: u64| n.div_ceil(page) * page;
    let entries = u64::from(entries.next_power_of_two());
    round(entries * 64) + round(entries * 4 + 64) + round(entries * 2 * 16 + 64)
}

fn memlock_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    let res = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    (res == 0).then_some(limit.rlim_cur)
}

/// The setup flags a ring ended up with, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RingFlags {
    /// A kernel thread polls the submission queue (`IORING_SETUP_SQPOLL`).
    pub(crate) sqpoll: bool,
    /// That thread is bound to this CPU (`IORING_SETUP_SQ_AFF`).
    pub(crate) sqpoll_cpu: Option<u32>,
    /// That thread is another ring's, this ring attached to it (`IORING_SETUP_ATTACH_WQ`).
    pub(crate) sqpoll_attached: Option<RawFd>,
    pub(crate) single_issuer: bool,
    pub(crate) defer_taskrun: bool,
    pub(crate) coop_taskrun: bool,
    pub(crate) submit_all: bool,
}

/// No flag set: what each rung of [`SETUP_LADDER`] adds to.
const PLAIN: RingFlags = RingFlags {
    sqpoll: false,
    sqpoll_cpu: None,
    sqpoll_attached: None,
    single_issuer: false,
    defer_taskrun: false,
    coop_taskrun: false,
    submit_all: false,
};

/// Setups to try, fastest first; each drops one flag an older kernel may reject with EINVAL.
const SETUP_LADDER: [RingFlags; 5] = [
    // 6.1+: completions run only when this core enters the kernel; no IPIs.
    RingFlags {
        single_issuer: true,
        defer_taskrun: true,
        submit_all: true,
        ..PLAIN
    },
    // 6.0: single issuer without deferred task work.
    RingFlags {
        single_issuer: true,
        coop_taskrun: true,
        submit_all: true,
        ..PLAIN
    },
    // 5.19.
    RingFlags {
        coop_taskrun: true,
        submit_all: true,
        ..PLAIN
    },
    // 5.18.
    RingFlags {
        submit_all: true,
        ..PLAIN
    },
    PLAIN,
];

/// The opcodes coreio submits; a kernel missing one is "unsupported".
const REQUIRED_OPCODES: &[(u8, &str)] = &[
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::Recv::CODE, "RECV"),
    (opcode::Send::CODE, "SEND"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::Accept::CODE, "ACCEPT"),
    (opcode::Connect::CODE, "CONNECT"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::RecvMsg::CODE, "RECVMSG"),
    (opcode::Read::CODE, "READ"),
    (opcode::Write::CODE, "WRITE"),
];

/// Creates a ring of `entries` submission entries (completion queue twice that).
pub(crate) fn build_ring(entries: u32) -> Result<(IoUring, RingFlags), RingSetupError> {
    build_ring_with(entries, None)
}

/// A submission-queue polling thread for one ring (`Builder::sqpoll`, `Builder::sqpoll_cpus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SqPoll {
    /// How long the thread polls without work before it sleeps.
    pub(crate) idle: Duration,
    /// The CPU to bind it to; `None` lets it run wherever the ring's thread may.
    pub(crate) cpu: Option<u32>,
    /// Another ring whose polling thread to share instead of starting one
    /// (`Builder::sqpoll_shared`; `idle` and `cpu` are then that ring's).
    pub(crate) attach_to: Option<RawFd>,
}

/// [`build_ring`], with a submission-queue polling thread when asked (`sqpoll`). A kernel that
/// refuses to share another ring's thread gets a thread of this ring's own, one that refuses
/// the CPU (one outside the process's cpuset, say) gets a thread that is not bound, and one
/// that refuses the thread gets the ring without one, each with a warning: the mode is an
/// optimisation, never a requirement.
pub(crate) fn build_ring_with(
    entries: u32,
    sqpoll: Option<SqPoll>,
) -> Result<(IoUring, RingFlags), RingSetupError> {
    let Some(sqpoll) = sqpoll else {
        return build_ring_from(entries, SETUP_LADDER.iter().copied(), None);
    };
    // Deferred task work needs the submitting task to run it, which a polling thread is not.
    let polled = |cpu, attached| {
        SETUP_LADDER
            .iter()
            .filter(|flags| !flags.defer_taskrun)
            .map(move |flags| RingFlags {
                sqpoll: true,
                sqpoll_cpu: cpu,
                sqpoll_attached: attached,
                ..*flags
            })
    };
    let idle_ms = u32::try_from(sqpoll.idle.as_millis())
        .unwrap_or(u32::MAX)
        .max(1);
    if let Some(ring) = sqpoll.attach_to {
        match build_ring_from(entries, polled(None, Some(ring)), Some(idle_ms)) {
            Ok(built) => return Ok(built),
            Err(err) => log::warn!(
                "coreio: the kernel refused to share another core's submission-queue polling \
                 thread ({err}); this core starts its own"
            ),
        }
    }
    let unbound = || {
        build_ring_from(entries, polled(None, None), Some(idle_ms)).or_else(|err| {
            log::warn!(
                "coreio: the kernel refused a submission-queue polling thread ({err}); running \
                 without one"
            );
            build_ring_from(entries, SETUP_LADDER.iter().copied(), None)
        })
    };
    let Some(cpu) = sqpoll.cpu else {
        return unbound();
    };
    build_ring_from(entries, polled(Some(cpu), None), Some(idle_ms)).or_else(|err| {
        log::warn!(
            "coreio: the kernel refused to bind the submission-queue polling thread to CPU \
             {cpu} ({err}; is the CPU in this process's cpuset?); running it unbound"
        );
        unbound()
    })
}

/// The first setup of `ladder` the kernel takes (with a polling thread idling `sqpoll_idle_ms`
/// when given).
fn build_ring_from(
    entries: u32,
    ladder: impl Iterator<Item = RingFlags>,
    sqpoll_idle_ms: Option<u32>,
) -> Result<(IoUring, RingFlags), RingSetupError> {
    let mut last_err = None;
    for flags in ladder {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(entries.saturating_mul(2));
        if let Some(idle_ms) = sqpoll_idle_ms {
            builder.setup_sqpoll(idle_ms);
        }
        if let Some(cpu) = flags.sqpoll_cpu {
            builder.setup_sqpoll_cpu(cpu);
        }
        if let Some(ring) = flags.sqpoll_attached {
            builder.setup_attach_wq(ring);
        }
        if flags.single_issuer {
            builder.setup_single_issuer();
        }
        if flags.defer_taskrun {
            builder.setup_defer_taskrun();
        }
        if flags.coop_taskrun {
            builder.setup_coop_taskrun();
        }
        if flags.submit_all {
            builder.setup_submit_all();
        }
        match builder.build(entries) {
            Ok(ring) => {
                check_capabilities(&ring)?;
                return Ok((ring, flags));
            }
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => last_err = Some(err),
            Err(err) => return Err(RingSetupError::from_setup_errno(err, entries)),
        }
    }
    let err = last_err.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL));
    Err(RingSetupError::new(
        RingSetupCause::Unsupported,
        format!("io_uring_setup rejected every flag combination ({err}): the kernel is too old"),
        Some(err),
    ))
}

/// The opcodes a ring's kernel supports, probed once when the ring is built, less those the
/// builder was told to treat as missing (`Builder::deny_uring_opcodes`), so that the
/// blocking-pool path an older kernel takes can be run (by tests) and compared (by benchmarks)
/// on a new one.
#[derive(Clone, Debug)]
pub(crate) struct Opcodes {
    supported: [u64; 4],
}

/// Opcodes coreio uses where the kernel has them, and works without (the operation runs on
/// the blocking pool, or another mechanism stands in) where not.
const OPTIONAL_OPCODES: &[(u8, &str)] = &[
    (opcode::MsgRingData::CODE, "MSG_RING"),
    (opcode::OpenAt::CODE, "OPENAT"),
    (opcode::Close::CODE, "CLOSE"),
    (opcode::Fsync::CODE, "FSYNC"),
    (opcode::Statx::CODE, "STATX"),
    (opcode::Fallocate::CODE, "FALLOCATE"),
    (opcode::Ftruncate::CODE, "FTRUNCATE"),
    (opcode::Readv::CODE, "READV"),
    (opcode::Writev::CODE, "WRITEV"),
    (opcode::UnlinkAt::CODE, "UNLINKAT"),
    (opcode::RenameAt::CODE, "RENAMEAT"),
    (opcode::MkDirAt::CODE, "MKDIRAT"),
    (opcode::LinkAt::CODE, "LINKAT"),
    (opcode::SymlinkAt::CODE, "SYMLINKAT"),
];

/// The codes of optional opcodes named (case-insensitively) in `names`; an error naming the
/// first that is not one, with the list of those that are.
pub(crate) fn optional_opcodes<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<u8>, String> {
    names
        .into_iter()
        .map(|name| {
            OPTIONAL_OPCODES
                .iter()
                .find(|(_, known)| known.eq_ignore_ascii_case(name))
                .map(|(code, _)| *code)
                .ok_or_else(|| {
                    let known: Vec<&str> = OPTIONAL_OPCODES.iter().map(|(_, n)| *n).collect();
                    format!(
                        "{name:?} is not an optional io_uring opcode coreio uses (those are: {})",
                        known.join(", ")
                    )
                })
        })
        .collect()
}

impl Opcodes {
    pub(crate) fn probe(ring: &IoUring, denied: &[u8]) -> Opcodes {
        let mut opcodes = Opcodes { supported: [0; 4] };
        let mut probe = Probe::new();
        if ring.submitter().register_probe(&mut probe).is_ok() {
            for code in 0..=u8::MAX {
                if probe.is_supported(code) && !denied.contains(&code) {
                    opcodes.supported[usize::from(code / 64)] |= 1 << (code % 64);
                }
            }
        }
        opcodes
    }

    pub(crate) fn has(&self, code: u8) -> bool {
        self.supported[usize::from(code / 64)] & (1 << (code % 64)) != 0
    }
}

fn check_capabilities(ring: &IoUring) -> Result<(), RingSetupError> {
    let params = ring.params();
    if !params.is_feature_nodrop() {
        return Err(RingSetupError::new(
            RingSetupCause::Unsupported,
            "the kernel's io_uring lacks IORING_FEAT_NODROP (Linux 5.5+), without which \
             completions can be lost; use the epoll backend"
                .into(),
            None,
        ));
    }
    if !params.is_feature_ext_arg() {
        return Err(RingSetupError::new(
            RingSetupCause::Unsupported,
            "the kernel's io_uring lacks IORING_FEAT_EXT_ARG (Linux 5.11+), needed to sleep with \
             a timeout; use the epoll backend"
                .into(),
            None,
        ));
    }
    let mut probe = Probe::new();
    if let Err(err) = ring.submitter().register_probe(&mut probe) {
        return Err(RingSetupError::new(
            RingSetupCause::Unsupported,
            format!("IORING_REGISTER_PROBE failed ({err}): the kernel is older than 5.6"),
            Some(err),
        ));
    }
    let missing: Vec<&str> = REQUIRED_OPCODES
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(RingSetupError::new(
            RingSetupCause::Unsupported,
            format!(
                "the kernel's io_uring lacks opcodes coreio needs: {}; use the epoll backend",
                missing.join(", ")
            ),
            None,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_polling_thread_the_kernel_will_not_bind_runs_unbound() {
        let unbound = SqPoll {
            idle: Duration::from_millis(5),
            cpu: None,
            attach_to: None,
        };
        let Ok((_ring, expected)) = build_ring_with(8, Some(unbound)) else {
            return; // No io_uring on this machine: nothing to fall back from.
        };
        // No CPU has this id: the kernel refuses the binding (EINVAL), not the thread.
        let nowhere = SqPoll {
            cpu: Some(100_000),
            ..unbound
        };
        let (_ring, flags) = build_ring_with(8, Some(nowhere)).expect("the unbound fallback");
        assert_eq!(flags, expected);
        assert_eq!(flags.sqpoll_cpu, None);
    }
}
