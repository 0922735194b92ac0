//! [`Control`]: the ancillary-data (`cmsg`) buffer a datagram operation hands the kernel, and
//! the walk over the control messages the kernel wrote into it.
//!
//! The buffer is a fixed array aligned for `cmsghdr`, so it can live inside an operation's boxed
//! message parts without a second allocation.

// This module knows the `cmsg` framing only (the `CMSG_*` layout); what a message means (a packet's
// destination address, descriptors passed over a Unix socket) belongs to the socket types. It must
// never read past the length the kernel reported, nor trust a header's length without checking it
// against the buffer.

use std::io;

/// Room for the ancillary data of one datagram: an `IPV6_PKTINFO` message takes 40 bytes and
/// an `IP_PKTINFO` one 32, so this holds either with room to spare for a few more.
pub(crate) const CONTROL_LEN: usize = 128;

/// A control-message buffer, aligned as the kernel's `cmsghdr` needs.
#[derive(Clone, Debug)]
#[repr(C, align(8))]
pub(crate) struct Control {
    bytes: [u8; CONTROL_LEN],
    /// How many bytes hold messages: those the kernel wrote (receive), or those pushed (send).
    len: usize,
}

impl Control {
    pub(crate) fn new() -> Control {
        Control {
            bytes: [0; CONTROL_LEN],
            len: 0,
        }
    }

    /// Whether no message is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The held bytes' length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Records how many bytes the kernel wrote (`msg_controllen` after a receive).
    pub(super) fn set_len(&mut self, len: usize) {
        self.len = len.min(CONTROL_LEN);
    }

    pub(super) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.bytes.as_mut_ptr()
    }

    /// Appends one control message (`level`, `kind`, `data`) for a send.
    pub(crate) fn push(&mut self, level: i32, kind: i32, data: &[u8]) -> io::Result<()> {
        let data_len = u32::try_from(data.len()).map_err(|_| too_long(data.len()))?;
        // SAFETY: CMSG_SPACE and CMSG_LEN only compute sizes from their argument.
        let (space, header_len, total_len) = unsafe {
            (
                libc::CMSG_SPACE(data_len) as usize,
                libc::CMSG_LEN(0) as usize,
                libc::CMSG_LEN(data_len) as usize,
            )
        };
        if self.len + space > CONTROL_LEN {
            return Err(too_long(data.len()));
        }
        let start = self.len;
        // SAFETY: all-zero bytes are a valid cmsghdr (the glibc struct has no other fields;
        // musl's padding fields are zero too).
        let mut header: libc::cmsghdr = unsafe { std::mem::zeroed() };
        header.cmsg_len = total_len as _;
        header.cmsg_level = level;
        header.cmsg_type = kind;
        // SAFETY: `start` is a multiple of CMSG_SPACE's alignment (every push adds a whole
        // CMSG_SPACE) within `bytes`, which is aligned for cmsghdr, and `start + space` fits
        // in the array (checked above), so the header's bytes are in bounds and aligned.
        unsafe {
            self.bytes
                .as_mut_ptr()
                .add(start)
                .cast::<libc::cmsghdr>()
                .write(header)
        };
        self.bytes[start + header_len..start + header_len + data.len()].copy_from_slice(data);
        // The padding after the data is already zero (the array starts zeroed, and only grows).
        self.len += space;
        Ok(())
    }

    /// The control messages held, in order, as `(level, kind, data)`; a message whose header
    /// is malformed or reaches past the held bytes ends the walk.
    pub(crate) fn messages(&self) -> Messages<'_> {
        Messages {
            control: self,
            offset: 0,
        }
    }
}

fn too_long(len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("a control message of {len} bytes does not fit the {CONTROL_LEN}-byte buffer"),
    )
}

/// The walk over a [`Control`]'s messages.
pub(crate) struct Messages<'a> {
    control: &'a Control,
    offset: usize,
}

impl<'a> Iterator for Messages<'a> {
    type Item = (i32, i32, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let header_size = std::mem::size_of::<libc::cmsghdr>();
        let held = self.control.len;
        if self.offset + header_size > held {
            return None;
        }
        // SAFETY: `offset` is a CMSG_ALIGN multiple (the start, or the sum of aligned message
        // lengths) within the buffer, which is aligned for cmsghdr, and a whole header fits
        // before `held <= CONTROL_LEN` (checked above); every byte of the array is initialised.
        let header = unsafe {
            self.control
                .bytes
                .as_ptr()
                .add(self.offset)
                .cast::<libc::cmsghdr>()
                .read()
        };
        // SAFETY: CMSG_LEN only computes a size.
        let data_start = unsafe { libc::CMSG_LEN(0) } as usize;
        // `cmsg_len` is a size_t with glibc, a u32 with musl.
        #[allow(clippy::unnecessary_cast)]
        let msg_len = header.cmsg_len as usize;
        if msg_len < data_start || self.offset + msg_len > held {
            self.offset = held;
            return None;
        }
        let data = &self.control.bytes[self.offset + data_start..self.offset + msg_len];
        // The next header starts at the next CMSG_ALIGN boundary.
        let align = std::mem::size_of::<usize>();
        self.offset += msg_len.div_ceil(align) * align;
        Some((header.cmsg_level, header.cmsg_type, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_messages_read_back_in_order() {
        let mut control = Control::new();
        control.push(1, 2, &[7; 12]).unwrap();
        control.push(3, 4, &[9; 20]).unwrap();
        let got: Vec<_> = control.messages().collect();
        assert_eq!(got, vec![(1, 2, &[7u8; 12][..]), (3, 4, &[9u8; 20][..])]);
    }

    #[test]
    fn a_message_that_does_not_fit_is_an_error() {
        let mut control = Control::new();
        let err = control.push(1, 2, &[0; CONTROL_LEN]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(control.is_empty());
    }

    #[test]
    fn a_malformed_header_ends_the_walk() {
        let mut control = Control::new();
        control.push(1, 2, &[7; 4]).unwrap();
        // A length larger than what is held.
        control.bytes[0] = 200;
        assert_eq!(control.messages().count(), 0);
        // A length shorter than a header.
        control.bytes[0] = 3;
        assert_eq!(control.messages().count(), 0);
    }
}
