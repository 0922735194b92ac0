//! The channel's errors: a send that found the receiving side gone or the channel full, a
//! receive that found it empty and closed. Those of a send carry the message back.

use std::fmt;

const CLOSED_FOR_SENDERS: &str = "the receiving side of the channel is gone (dropped or closed)";
const CLOSED_FOR_RECEIVER: &str =
    "the channel is empty and closed (every sender is gone, or the receiver closed it)";

/// The error of [`Sender::send`](super::Sender::send): the receiving side of the channel is gone
/// or closed it. The message comes back inside.
///
/// ```
/// let (tx, rx) = coreio::mesh::channel(1);
/// drop(rx);
/// let err = coreio::block_on(async move { tx.send(5).await }).unwrap().unwrap_err();
/// assert_eq!(err.to_string(), "the receiving side of the channel is gone (dropped or closed)");
/// assert_eq!(err.into_inner(), 5);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> SendError<T> {
    /// The message that could not be sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError").finish_non_exhaustive()
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(CLOSED_FOR_SENDERS)
    }
}

impl<T> std::error::Error for SendError<T> {}

/// The error of [`Sender::try_send`](super::Sender::try_send); the message comes back inside.
///
/// ```
/// let (tx, _rx) = coreio::mesh::channel(1);
/// tx.try_send(1).unwrap();
/// let err = tx.try_send(2).unwrap_err();
/// assert_eq!(err.to_string(), "the channel is full");
/// assert_eq!(err.into_inner(), 2);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The channel holds `capacity` messages: try again after the receiver takes one, or use
    /// [`Sender::send`](super::Sender::send) to wait.
    Full(T),
    /// The receiving side is gone or closed the channel; no send will succeed again.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The message that could not be sent, whatever the reason.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(value) | TrySendError::Closed(value) => value,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("the channel is full"),
            TrySendError::Closed(_) => f.write_str(CLOSED_FOR_SENDERS),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

/// The error of [`Receiver::recv`](super::Receiver::recv): the channel is empty and closed, so no
/// message will come.
///
/// ```
/// assert_eq!(
///     coreio::mesh::RecvError.to_string(),
///     "the channel is empty and closed (every sender is gone, or the receiver closed it)"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvError;

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(CLOSED_FOR_RECEIVER)
    }
}

impl std::error::Error for RecvError {}

/// The error of [`Receiver::try_recv`](super::Receiver::try_recv).
///
/// ```
/// use coreio::mesh::TryRecvError;
///
/// assert_eq!(TryRecvError::Empty.to_string(), "the channel is empty");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// No message is queued now, but senders remain: try again later, or use
    /// [`Receiver::recv`](super::Receiver::recv) to wait.
    Empty,
    /// The channel is empty and closed: no message will come.
    Closed,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("the channel is empty"),
            TryRecvError::Closed => f.write_str(CLOSED_FOR_RECEIVER),
        }
    }
}

impl std::error::Error for TryRecvError {}
