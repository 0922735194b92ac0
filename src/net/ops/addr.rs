//! [`AddrBuf`]: storage the kernel fills with a peer's address (accept).

use socket2::SockAddr;

pub(super) const STORAGE_LEN: libc::socklen_t =
    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// Storage the kernel fills with a peer's address.
pub(crate) struct AddrBuf {
    pub(super) storage: libc::sockaddr_storage,
    pub(super) len: libc::socklen_t,
}

impl AddrBuf {
    pub(super) fn boxed() -> Box<AddrBuf> {
        Box::new(AddrBuf {
            // SAFETY: all-zero bytes are a valid (unspecified-family) sockaddr_storage.
            storage: unsafe { std::mem::zeroed() },
            len: STORAGE_LEN,
        })
    }

    /// The address the kernel wrote, of any family (a Unix peer's, for instance).
    pub(crate) fn to_sock_addr(&self) -> SockAddr {
        let mut storage = socket2::SockAddrStorage::zeroed();
        // SAFETY: `SockAddrStorage` wraps a `sockaddr_storage`, so viewing it as one is valid.
        unsafe { *storage.view_as::<libc::sockaddr_storage>() = self.storage };
        // SAFETY: the kernel wrote a sockaddr of `len` bytes (at most the storage's size).
        unsafe { SockAddr::new(storage, self.len.min(STORAGE_LEN)) }
    }
}
