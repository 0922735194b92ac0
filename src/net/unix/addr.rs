//! [`UnixSocketAddr`]: the address of a Unix domain socket — a filesystem path, a name in
//! Linux's abstract namespace, or unnamed.
//!
//! It wraps a `socket2::SockAddr` of family `AF_UNIX` and checks what it is given, so the
//! kernel never sees a silently truncated name.

// A `UnixSocketAddr` must never hold another family's address: the constructors and
// `from_sock_addr` make sure of that.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use socket2::SockAddr;

/// Room for a name in `sockaddr_un.sun_path` (108 bytes on Linux).
const SUN_PATH_LEN: usize = 108;

/// The address of a Unix domain socket.
///
/// One of three kinds:
///
/// - a **pathname**: a socket file in the filesystem (`/run/app.sock`), made by binding and
///   left behind when the socket closes (remove it yourself);
/// - an **abstract name** (Linux only): a name in a namespace of its own, not in the
///   filesystem, gone when the last socket bound to it closes; shown as `@name`;
/// - **unnamed**: a socket that was never bound, such as a client that connected without
///   binding, or either end of [`UnixStream::pair`](super::UnixStream::pair).
///
/// ```
/// use coreio::net::UnixSocketAddr;
///
/// let path = UnixSocketAddr::from_pathname("/run/app.sock").unwrap();
/// assert_eq!(path.as_pathname(), Some(std::path::Path::new("/run/app.sock")));
/// let name = UnixSocketAddr::from_abstract_name(b"app").unwrap();
/// assert_eq!(name.as_abstract_name(), Some(&b"app"[..]));
/// assert_eq!(name.to_string(), "@app");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UnixSocketAddr {
    addr: SockAddr,
}

impl UnixSocketAddr {
    /// The address of the socket file at `path`.
    ///
    /// Fails with `InvalidInput` if `path` is empty, contains a NUL byte, or is longer than a
    /// Unix address can hold (107 bytes; use a shorter or a relative path).
    pub fn from_pathname(path: impl AsRef<Path>) -> io::Result<UnixSocketAddr> {
        let path = path.as_ref();
        let bytes = path.as_os_str().as_bytes();
        if bytes.is_empty() {
            return Err(invalid(
                "an empty path is not a Unix socket address".to_owned(),
            ));
        }
        if bytes.contains(&0) {
            return Err(invalid(format!(
                "Unix socket path {} contains a NUL byte",
                path.display()
            )));
        }
        if bytes.len() >= SUN_PATH_LEN {
            return Err(invalid(format!(
                "Unix socket path {} is {} bytes long; at most {} fit in a socket address",
                path.display(),
                bytes.len(),
                SUN_PATH_LEN - 1
            )));
        }
        Ok(UnixSocketAddr {
            addr: SockAddr::unix(path)?,
        })
    }

    /// The address `name` in Linux's abstract namespace (written `@name`; no leading NUL byte:
    /// it is added). Any bytes may appear in the name, NUL included.
    ///
    /// Fails with `InvalidInput` if `name` is longer than 107 bytes.
    pub fn from_abstract_name(name: impl AsRef<[u8]>) -> io::Result<UnixSocketAddr> {
        let name = name.as_ref();
        if name.len() >= SUN_PATH_LEN {
            return Err(invalid(format!(
                "abstract Unix socket name {} is {} bytes long; at most {} fit in a socket address",
                Escaped(name),
                name.len(),
                SUN_PATH_LEN - 1
            )));
        }
        let mut bytes = Vec::with_capacity(name.len() + 1);
        bytes.push(0);
        bytes.extend_from_slice(name);
        // socket2 reads a leading NUL byte as the abstract namespace's marker.
        Ok(UnixSocketAddr {
            addr: SockAddr::unix(OsStr::from_bytes(&bytes))?,
        })
    }

    /// The socket file's path, for a pathname address.
    pub fn as_pathname(&self) -> Option<&Path> {
        self.addr.as_pathname()
    }

    /// The name (without the leading NUL byte), for an address in the abstract namespace.
    pub fn as_abstract_name(&self) -> Option<&[u8]> {
        self.addr.as_abstract_namespace()
    }

    /// Whether the address is unnamed (the socket was never bound).
    pub fn is_unnamed(&self) -> bool {
        self.addr.is_unnamed()
    }

    /// Wraps an address the kernel returned for a Unix socket; an error if it is of another
    /// family.
    pub(crate) fn from_sock_addr(addr: SockAddr) -> io::Result<UnixSocketAddr> {
        if !addr.is_unix() {
            return Err(io::Error::other(format!(
                "expected a Unix socket address, got one of family {}",
                addr.family()
            )));
        }
        Ok(UnixSocketAddr { addr })
    }

    /// The unnamed address.
    pub(crate) fn unnamed() -> UnixSocketAddr {
        // An empty path makes a Unix address of no name (just the family).
        let addr = SockAddr::unix("").unwrap_or_else(|_| unreachable!("an empty path always fits"));
        UnixSocketAddr { addr }
    }

    pub(crate) fn as_sock_addr(&self) -> &SockAddr {
        &self.addr
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// An abstract name shown as `@name`, non-printable bytes escaped.
struct Escaped<'a>(&'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0.escape_ascii())
    }
}

/// A path as is, an abstract name as `@name` (non-printable bytes escaped), an unnamed
/// address as `(unnamed)`.
impl fmt::Display for UnixSocketAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = self.as_pathname() {
            write!(f, "{}", path.display())
        } else if let Some(name) = self.as_abstract_name() {
            write!(f, "{}", Escaped(name))
        } else {
            f.write_str("(unnamed)")
        }
    }
}

impl fmt::Debug for UnixSocketAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = self.as_pathname() {
            f.debug_tuple("Pathname").field(&path).finish()
        } else if let Some(name) = self.as_abstract_name() {
            write!(f, "Abstract(\"{}\")", name.escape_ascii())
        } else {
            f.write_str("Unnamed")
        }
    }
}

impl TryFrom<&Path> for UnixSocketAddr {
    type Error = io::Error;

    /// [`from_pathname`](UnixSocketAddr::from_pathname).
    fn try_from(path: &Path) -> io::Result<UnixSocketAddr> {
        UnixSocketAddr::from_pathname(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_kinds_show_what_they_are() {
        let unnamed = UnixSocketAddr::unnamed();
        assert!(unnamed.is_unnamed());
        assert_eq!(
            (unnamed.as_pathname(), unnamed.as_abstract_name()),
            (None, None)
        );
        assert_eq!(unnamed.to_string(), "(unnamed)");
        assert_eq!(format!("{unnamed:?}"), "Unnamed");

        let path = UnixSocketAddr::from_pathname("/run/x.sock").unwrap();
        assert!(!path.is_unnamed());
        assert_eq!(path.to_string(), "/run/x.sock");
        assert_eq!(format!("{path:?}"), "Pathname(\"/run/x.sock\")");

        let name = UnixSocketAddr::from_abstract_name(b"\0a\n").unwrap();
        assert!(!name.is_unnamed());
        assert_eq!(name.as_abstract_name(), Some(&b"\0a\n"[..]));
        assert_eq!(name.to_string(), "@\\x00a\\n");
        assert_eq!(format!("{name:?}"), "Abstract(\"\\x00a\\n\")");
        // An empty abstract name is a name too, not the unnamed address.
        let empty = UnixSocketAddr::from_abstract_name(b"").unwrap();
        assert!(!empty.is_unnamed());
        assert_eq!(empty.as_abstract_name(), Some(&b""[..]));
    }

    #[test]
    fn lengths_at_the_limit() {
        assert!(UnixSocketAddr::from_pathname("p".repeat(SUN_PATH_LEN - 1)).is_ok());
        assert!(UnixSocketAddr::from_pathname("p".repeat(SUN_PATH_LEN)).is_err());
        assert!(UnixSocketAddr::from_abstract_name(vec![b'a'; SUN_PATH_LEN - 1]).is_ok());
        let err = UnixSocketAddr::from_abstract_name(vec![b'a'; SUN_PATH_LEN]).unwrap_err();
        assert!(err.to_string().contains("108 bytes"), "{err}");
    }

    #[test]
    fn other_families_are_refused() {
        let ip = SockAddr::from("127.0.0.1:1".parse::<std::net::SocketAddr>().unwrap());
        assert!(UnixSocketAddr::from_sock_addr(ip).is_err());
    }
}
