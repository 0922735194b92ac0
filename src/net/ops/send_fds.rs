//! [`SendFds`]: a send on a Unix stream socket with descriptors attached (`SCM_RIGHTS`), and
//! [`Msg`], the boxed `msghdr` with its iovec and control buffer that it and
//! [`RecvFds`](super::RecvFds) hand the kernel.
//!
//! The descriptors travel as numbers in the control message, which the kernel reads when the
//! send runs: on io_uring after the call that submitted it returned, maybe after its future
//! was dropped. So the operation sends duplicates it owns, never the caller's numbers, which
//! the caller may close (and the process reuse for another file) in the meantime.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use io_uring::{opcode, squeue};

use super::clamp_len;
use crate::buf::IoBuf;
use crate::driver::uring_target;
use crate::driver::{Direction, Operation, SharedFd, Source};
use crate::sys;

/// Writes never raise SIGPIPE: a closed peer is an `EPIPE` error instead.
const SEND_FLAGS: i32 = libc::MSG_NOSIGNAL;

/// The most descriptors Linux passes in one message (`SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// A `msghdr` for one buffer and a control buffer, boxed by its operation so that the pointers
/// the kernel follows (to the header, to the iovec inside it, to the control bytes) survive
/// moves of the operation. The pointers are set again before every use, by [`Msg::header`].
pub(crate) struct Msg {
    hdr: libc::msghdr,
    iov: libc::iovec,
    /// `u64`s, so that the buffer is aligned for `cmsghdr`.
    control: Vec<u64>,
    /// The bytes of `control` a control message fills (0: no control message).
    control_len: usize,
}

impl Msg {
    /// A message header with room for a control message carrying `fds` descriptors (none for 0).
    pub(super) fn boxed(fds: usize) -> Box<Msg> {
        let control_len = if fds == 0 {
            0
        } else {
            // SAFETY: CMSG_SPACE only computes a size.
            unsafe { libc::CMSG_SPACE((fds * size_of::<libc::c_int>()) as libc::c_uint) as usize }
        };
        Box::new(Msg {
            // SAFETY: all-zero bytes are a valid msghdr (null pointers, zero lengths).
            hdr: unsafe { std::mem::zeroed() },
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            control: vec![0; control_len.div_ceil(size_of::<u64>())],
            control_len,
        })
    }

    /// The header, pointing at `len` bytes at `data` and at the whole control buffer, with its
    /// flags cleared: ready for one `sendmsg` or `recvmsg`.
    pub(super) fn header(&mut self, data: *mut u8, len: usize) -> *mut libc::msghdr {
        self.iov = libc::iovec {
            iov_base: data.cast(),
            iov_len: len,
        };
        self.hdr.msg_iov = &mut self.iov;
        self.hdr.msg_iovlen = 1;
        if self.control_len == 0 {
            self.hdr.msg_control = std::ptr::null_mut();
        } else {
            self.hdr.msg_control = self.control.as_mut_ptr().cast();
        }
        self.hdr.msg_controllen = self.control_len as _;
        self.hdr.msg_flags = 0;
        &mut self.hdr
    }

    /// Fills the control buffer with one `SCM_RIGHTS` message carrying `fds`, which must be as
    /// many as the buffer was sized for.
    fn encode_fds(&mut self, fds: &[OwnedFd]) {
        debug_assert!(!fds.is_empty() && self.control_len > 0);
        self.header(std::ptr::null_mut(), 0);
        // SAFETY: `hdr` points at the control buffer, sized by CMSG_SPACE for `fds.len()`
        // descriptors, so the first header exists and its data has room for all of them; the
        // buffer is u64-aligned, as cmsghdr needs. Unaligned writes for the data, which
        // CMSG_DATA does not promise to align for c_int.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&self.hdr);
            debug_assert!(!cmsg.is_null());
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len =
                libc::CMSG_LEN((fds.len() * size_of::<libc::c_int>()) as libc::c_uint) as _;
            let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }

    /// What the kernel set in the header's flags (`MSG_CTRUNC`, ...).
    pub(super) fn flags(&self) -> i32 {
        self.hdr.msg_flags
    }

    /// Takes ownership of every descriptor a successful `recvmsg` put in the control buffer, at
    /// once, so that none can leak; clears the buffer so they are never taken twice. Call only
    /// after a `recvmsg` that succeeded: on failure the kernel wrote nothing, and the header's
    /// control length is still the buffer's.
    // `msg_controllen` and `cmsg_len` are `size_t` on glibc but `socklen_t` on musl.
    #[allow(clippy::unnecessary_cast)]
    pub(super) fn take_received_fds(&mut self) -> Vec<OwnedFd> {
        let mut fds = Vec::new();
        if self.control_len == 0 {
            return fds;
        }
        // The kernel set msg_controllen to what it wrote; never trust more than the buffer.
        let written = (self.hdr.msg_controllen as usize).min(self.control_len);
        self.hdr.msg_control = self.control.as_mut_ptr().cast();
        self.hdr.msg_controllen = written as _;
        // SAFETY: the header points at the control buffer with the length the kernel filled
        // (clamped to the buffer), so CMSG_FIRSTHDR/CMSG_NXTHDR only return headers inside
        // it, or null. Every SCM_RIGHTS descriptor in it was installed in this process by the
        // kernel for this call and belongs to nobody else: each is wrapped in an OwnedFd once,
        // and the buffer is zeroed below so it cannot be read again.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&self.hdr);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                    let header = libc::CMSG_LEN(0) as usize;
                    let bytes = ((*cmsg).cmsg_len as usize).saturating_sub(header);
                    // A message claiming more than was written is cut at what was written.
                    let offset = data as usize - self.control.as_ptr() as usize;
                    let bytes = bytes.min(written.saturating_sub(offset));
                    for i in 0..bytes / size_of::<libc::c_int>() {
                        let raw = data.add(i).read_unaligned();
                        fds.push(std::os::fd::FromRawFd::from_raw_fd(raw));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&self.hdr, cmsg);
            }
        }
        self.control.fill(0);
        self.hdr.msg_controllen = 0;
        fds
    }
}

/// Sends a buffer's initialised bytes with descriptors attached to the first of them.
pub(crate) struct SendFds<B> {
    socket: SharedFd,
    pub(crate) buf: B,
    /// Duplicates of the caller's descriptors (see the module docs); closed when the operation
    /// is dropped, after the kernel has taken its own references.
    fds: Vec<OwnedFd>,
    msg: Box<Msg>,
}

impl<B: IoBuf> SendFds<B> {
    /// A send of `buf` with `fds` (at most [`MAX_FDS`]) on `socket`.
    pub(crate) fn new(socket: SharedFd, buf: B, fds: Vec<OwnedFd>) -> SendFds<B> {
        debug_assert!(fds.len() <= MAX_FDS);
        let mut msg = Msg::boxed(fds.len());
        if !fds.is_empty() {
            msg.encode_fds(&fds);
        }
        SendFds {
            socket,
            buf,
            fds,
            msg,
        }
    }

    fn header(&mut self) -> *mut libc::msghdr {
        let len = clamp_len(self.buf.bytes_init()) as usize;
        // sendmsg only reads through the pointer; the iovec's field is `*mut` for both calls.
        self.msg.header(self.buf.stable_ptr().cast_mut(), len)
    }
}

// SAFETY: the kernel reads the boxed header, the iovec and control buffer inside the same box,
// and `buf`'s heap memory (at most `bytes_init()` bytes); all are owned by the struct and do
// not move with it. The descriptors named in the control message are owned by `fds`, so they
// stay open until the struct drops.
unsafe impl<B: IoBuf> Operation for SendFds<B> {
    fn uring_entry(&mut self) -> squeue::Entry {
        let hdr = self.header();
        uring_target!(self.socket, |fd| opcode::SendMsg::new(fd, hdr)
            .flags(SEND_FLAGS as u32)
            .build())
    }

    fn source(&self) -> Source<'_> {
        Source::Readiness(&self.socket, Direction::Write)
    }

    fn epoll_attempt(&mut self) -> io::Result<u32> {
        let hdr = self.header();
        // SAFETY: `hdr` is a valid msghdr owned by `self` whose pointers lead to memory owned by
        // `self` (see the impl's SAFETY note); the socket is open while `self.socket` lives.
        let n = sys::cvt(unsafe { libc::sendmsg(self.socket.raw(), hdr, SEND_FLAGS) })?;
        Ok(n as u32)
    }
}

impl<B> SendFds<B> {
    /// Gives the buffer back; the duplicated descriptors close here.
    pub(crate) fn into_buf(self) -> B {
        drop(self.fds);
        self.buf
    }
}
