//! Which backend a core runs: the user's choice ([`Backend`], `COREIO_BACKEND`), and resolving
//! `Auto` into a [`ResolvedBackend`] by probing io_uring once per process. The on/off switches
//! of the environment (`COREIO_MULTISHOT_ACCEPT`, `COREIO_MULTISHOT_RECV`) are read here too
//! ([`switch_from_env`]).

// This module owns that decision and nothing after it: it builds no driver and keeps no ring (the
// probe's ring is dropped at once). A resolved backend has no `Auto`, so nothing past this point
// can meet an undecided choice.

use std::fmt;
use std::io;
use std::sync::OnceLock;

use super::uring::{RingSetupError, build_ring};

/// Which I/O backend a core uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// io_uring where the kernel offers everything coreio needs, epoll otherwise.
    #[default]
    Auto,
    /// io_uring, or a build error saying why it cannot be used.
    IoUring,
    /// epoll, always available on Linux.
    Epoll,
}

impl Backend {
    /// Reads `COREIO_BACKEND` (`auto`, `uring`/`io_uring`, or `epoll`), which overrides the
    /// builder's choice. An unknown value is an error naming the accepted ones.
    pub(crate) fn from_env() -> io::Result<Option<Backend>> {
        match std::env::var("COREIO_BACKEND") {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "COREIO_BACKEND is not valid UTF-8; use auto, uring or epoll",
            )),
            Ok(value) => match value.trim().to_ascii_lowercase().as_str() {
                "" | "auto" => Ok(Some(Backend::Auto)),
                "uring" | "io_uring" | "io-uring" => Ok(Some(Backend::IoUring)),
                "epoll" => Ok(Some(Backend::Epoll)),
                other => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("COREIO_BACKEND={other:?} is not a backend; use auto, uring or epoll"),
                )),
            },
        }
    }
}

/// Reads an on/off switch from the environment variable `var` (`1`/`on`/`true`/`yes` or
/// `0`/`off`/`false`/`no`), which overrides the builder's setting: `COREIO_MULTISHOT_ACCEPT`,
/// `COREIO_MULTISHOT_RECV`, for A/B runs without a rebuild. An unknown value is an error naming the accepted ones.
pub(crate) fn switch_from_env(var: &str) -> io::Result<Option<bool>> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    match std::env::var(var) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(invalid(format!("{var} is not valid UTF-8; use 1 or 0")))
        }
        Ok(value) => match value.trim().to_ascii_lowercase().as_str() {
            "1" | "on" | "true" | "yes" => Ok(Some(true)),
            "0" | "off" | "false" | "no" => Ok(Some(false)),
            other => Err(invalid(format!(
                "{var}={other:?} is not a switch; use 1 or 0"
            ))),
        },
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::IoUring => "io_uring",
            Backend::Epoll => "epoll",
        })
    }
}

/// A backend with the choice made: what a core's driver is built as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ResolvedBackend {
    IoUring,
    Epoll,
}

impl From<ResolvedBackend> for Backend {
    fn from(resolved: ResolvedBackend) -> Backend {
        match resolved {
            ResolvedBackend::IoUring => Backend::IoUring,
            ResolvedBackend::Epoll => Backend::Epoll,
        }
    }
}

/// Turns `Auto` into a concrete backend, probing io_uring once per process.
pub(crate) fn resolve(requested: Backend, ring_entries: u32) -> io::Result<ResolvedBackend> {
    match requested {
        Backend::Epoll => Ok(ResolvedBackend::Epoll),
        Backend::IoUring => match probe_uring(ring_entries) {
            Ok(()) => Ok(ResolvedBackend::IoUring),
            Err(err) => Err(err.into()),
        },
        Backend::Auto => {
            // Only a definite answer is remembered: a resource failure (EMFILE, say) may pass.
            static AUTO: OnceLock<ResolvedBackend> = OnceLock::new();
            if let Some(backend) = AUTO.get() {
                return Ok(*backend);
            }
            let backend = match probe_uring(ring_entries) {
                Ok(()) => ResolvedBackend::IoUring,
                Err(err) if err.is_unavailable() => {
                    log::warn!("coreio: io_uring unavailable, using epoll: {err}");
                    ResolvedBackend::Epoll
                }
                Err(err) => return Err(err.into()),
            };
            Ok(*AUTO.get_or_init(|| backend))
        }
    }
}

fn probe_uring(ring_entries: u32) -> Result<(), RingSetupError> {
    build_ring(ring_entries).map(drop)
}
