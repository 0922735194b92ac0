//! [`IntoStdError`]: why a coreio socket could not become a std one, with the socket given back.

use std::fmt;

/// A coreio socket could not be turned into its std counterpart (`into_std`); the socket comes
/// back intact, still owned by its core, with [`into_inner`](IntoStdError::into_inner).
///
/// Two things stop it, both left behind by futures that were dropped mid-operation (a live
/// future borrows the socket, so it cannot be converted meanwhile):
///
/// - **Operations still in flight**: on io_uring the kernel finishes cancelling them within a
///   pass of the core loop, so retrying after [`yield_now`](crate::yield_now) normally succeeds.
/// - **Something held that the std socket cannot carry**: bytes a dropped read took from a
///   stream, or a connection a dropped accept took from a listener (or such an operation still
///   finishing). The std socket would lose them, so read (or accept) them first, then retry.
pub struct IntoStdError<S> {
    socket: S,
    reason: Reason,
}

/// What stopped the conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Dropped operations the kernel has not finished still use the descriptor.
    InFlight,
    /// Dropped reads or accepts are still finishing, or left bytes or connections nobody has
    /// taken yet.
    Held,
}

impl<S> IntoStdError<S> {
    pub(crate) fn new(socket: S, reason: Reason) -> IntoStdError<S> {
        IntoStdError { socket, reason }
    }

    /// The socket, still owned by this core and usable.
    pub fn into_inner(self) -> S {
        self.socket
    }
}

impl<S> fmt::Debug for IntoStdError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoStdError")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl<S> fmt::Display for IntoStdError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.reason {
            Reason::InFlight => {
                "the socket cannot become a std socket while operations on it are in flight \
                 (dropped reads or writes the kernel has not finished); retry after yielding"
            }
            Reason::Held => {
                "the socket cannot become a std socket while dropped reads or accepts are still \
                 finishing or have left what they took (received bytes, accepted connections), \
                 which a std socket cannot carry; read or accept it (or yield) first, then retry"
            }
        })
    }
}

impl<S> std::error::Error for IntoStdError<S> {}
