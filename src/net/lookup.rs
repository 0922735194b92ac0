//! Turning what a caller names — an address, a host name and port — into socket addresses:
//! [`ToSocketAddrs`] and [`lookup_host`].
//!
//! Literal addresses (`SocketAddr`, `"127.0.0.1:80"`, `("::1", 80)`) are parsed on the spot.
//! A host name is resolved by the C library (`getaddrinfo`, through std's
//! `std::net::ToSocketAddrs`), which blocks, so it runs on the runtime's blocking pool
//! ([`spawn_blocking`](crate::spawn_blocking)) while the core serves its other tasks.

// This module owns that split, and the errors that name the address they are about (a failed lookup
// names the host, a failed connection the address tried); it must never call the resolver on a
// core's thread, nor send a literal address to the pool.

use std::future::Future;
use std::io;
// std's `ToSocketAddrs` is the resolver's door, called on the blocking pool only.
use std::net::ToSocketAddrs as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::context;

/// What names one or more socket addresses, for [`lookup_host`] and
/// [`TcpStream::connect`](crate::net::TcpStream::connect); coreio's form of
/// [`std::net::ToSocketAddrs`], resolving host names without blocking the core.
///
/// Implemented for [`SocketAddr`] (and its V4/V6 forms), `(IpAddr, u16)` (and the
/// `Ipv4Addr`/`Ipv6Addr` forms), `&str` and `String` (`"host:port"`, `"[::1]:80"`),
/// `(&str, u16)` and `(String, u16)` (host and port apart), `&[SocketAddr]`, and references to
/// all of these. Literal addresses never leave the calling core; host names are resolved on
/// the blocking pool. The trait is sealed: it cannot be implemented outside coreio.
pub trait ToSocketAddrs: sealed::Sealed {}

mod sealed {
    use std::net::SocketAddr;

    /// What a [`ToSocketAddrs`](super::ToSocketAddrs) value asks for.
    pub enum Target {
        /// Known addresses, or the parse error of a malformed one.
        Ready(std::io::Result<Vec<SocketAddr>>),
        /// `"host:port"`, to resolve.
        HostAndPort(String),
        /// A host and a port given apart, to resolve.
        Host(String, u16),
    }

    /// The method behind [`ToSocketAddrs`](super::ToSocketAddrs), out of users' reach.
    pub trait Sealed {
        /// What `self` names.
        fn target(&self) -> Target;
    }
}

use sealed::{Sealed, Target};

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: ToSocketAddrs + ?Sized> Sealed for &T {
    fn target(&self) -> Target {
        (**self).target()
    }
}

macro_rules! literal {
    ($($ty:ty => |$value:ident| $addr:expr;)*) => {
        $(
            impl ToSocketAddrs for $ty {}
            impl Sealed for $ty {
                fn target(&self) -> Target {
                    let $value = self;
                    Target::Ready(Ok(vec![$addr]))
                }
            }
        )*
    };
}

literal! {
    SocketAddr => |addr| *addr;
    SocketAddrV4 => |addr| SocketAddr::V4(*addr);
    SocketAddrV6 => |addr| SocketAddr::V6(*addr);
    (IpAddr, u16) => |pair| SocketAddr::new(pair.0, pair.1);
    (Ipv4Addr, u16) => |pair| SocketAddr::new(IpAddr::V4(pair.0), pair.1);
    (Ipv6Addr, u16) => |pair| SocketAddr::new(IpAddr::V6(pair.0), pair.1);
}

impl ToSocketAddrs for [SocketAddr] {}
impl Sealed for [SocketAddr] {
    fn target(&self) -> Target {
        Target::Ready(Ok(self.to_vec()))
    }
}

impl ToSocketAddrs for str {}
impl Sealed for str {
    fn target(&self) -> Target {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return Target::Ready(Ok(vec![addr]));
        }
        // What the resolver would refuse anyway, refused here without a trip to the pool.
        match self.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Target::HostAndPort(self.to_owned())
            }
            _ => Target::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid socket address {self:?}: expected HOST:PORT"),
            ))),
        }
    }
}

impl ToSocketAddrs for String {}
impl Sealed for String {
    fn target(&self) -> Target {
        self.as_str().target()
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl Sealed for (&str, u16) {
    fn target(&self) -> Target {
        let (host, port) = *self;
        match host.parse::<IpAddr>() {
            Ok(ip) => Target::Ready(Ok(vec![SocketAddr::new(ip, port)])),
            Err(_) if host.is_empty() => Target::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid socket address: empty host name",
            ))),
            Err(_) => Target::Host(host.to_owned(), port),
        }
    }
}

impl ToSocketAddrs for (String, u16) {}
impl Sealed for (String, u16) {
    fn target(&self) -> Target {
        (self.0.as_str(), self.1).target()
    }
}

/// Resolves `host` to its socket addresses, in the resolver's order.
///
/// A literal address is returned as it is, at once. A host name (`"localhost:80"`,
/// `("example.com", 443)`) is resolved by the system's resolver (`getaddrinfo`: `/etc/hosts`,
/// DNS, as `/etc/nsswitch.conf` says) on the runtime's blocking pool, so the core keeps
/// serving its other tasks meanwhile. Errors name the host and keep the resolver's
/// [`io::ErrorKind`]; a full blocking pool is
/// [`ResourceBusy`](io::ErrorKind::ResourceBusy) (see [`spawn_blocking`](crate::spawn_blocking)).
///
/// ```no_run
/// # coreio::block_on(async {
/// for addr in coreio::net::lookup_host("localhost:80").await? {
///     println!("{addr}");
/// }
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap().unwrap();
/// ```
pub async fn lookup_host(host: impl ToSocketAddrs) -> io::Result<impl Iterator<Item = SocketAddr>> {
    Ok(resolve(&host).await?.into_iter())
}

/// The addresses `addr` names, resolving a host name on the blocking pool. The future holds
/// nothing borrowed from `addr`.
pub(crate) fn resolve<A: ToSocketAddrs + ?Sized>(
    addr: &A,
) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + use<A> {
    let target = addr.target();
    async move {
        let (host, port) = match target {
            Target::Ready(addrs) => return addrs,
            Target::HostAndPort(name) => (name, None),
            Target::Host(host, port) => (host, Some(port)),
        };
        let Some(pool) = context::with(|ctx| ctx.blocking.clone()) else {
            return Err(context::no_runtime());
        };
        let lookup = pool.spawn(move || {
            let (resolved, name) = match port {
                None => (host.to_socket_addrs(), host),
                Some(port) => (
                    (host.as_str(), port).to_socket_addrs(),
                    format!("{host}:{port}"),
                ),
            };
            resolved
                .map(Iterator::collect::<Vec<_>>)
                .map_err(|error| io::Error::new(error.kind(), format!("resolving {name}: {error}")))
        });
        lookup.await?
    }
}
