//! [`UCred`]: the credentials of the process at the other end of a Unix stream
//! (`SO_PEERCRED`).
//!
//! The kernel records them when the connection is made (`connect`, or `socketpair`), so they
//! name whoever made the peer socket, not whoever holds it now; reading them is one
//! `getsockopt` and never blocks.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::sys;

/// The peer's process id, user id and group id, as the kernel recorded them when the
/// connection was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UCred {
    pid: libc::pid_t,
    uid: libc::uid_t,
    gid: libc::gid_t,
}

impl UCred {
    /// The peer's process id, if the kernel knows it (it does not when the peer is in another
    /// pid namespace that this one cannot see).
    pub fn pid(&self) -> Option<libc::pid_t> {
        (self.pid != 0).then_some(self.pid)
    }

    /// The peer's effective user id.
    pub fn uid(&self) -> libc::uid_t {
        self.uid
    }

    /// The peer's effective group id.
    pub fn gid(&self) -> libc::gid_t {
        self.gid
    }
}

/// Reads `SO_PEERCRED` of the connected Unix socket `fd`.
pub(crate) fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<UCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a writable `ucred` of `len` bytes for the call, and `fd` is open (it is
    // borrowed).
    sys::cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(UCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}
