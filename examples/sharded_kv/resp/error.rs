//! [`ProtocolError`]: why a request cannot be parsed, in Redis's words.
//!
//! The texts are those redis-server sends for the same faults, byte for byte (the kv tests
//! compare them); a fault Redis does not have gets a text in the same style.

use std::fmt;

use super::MAX_REQUEST_BYTES;

/// Why a request cannot be parsed. The connection replies with it and closes: after a framing
/// error there is no telling where the next request starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// `*N` with N not a number or above [`MAX_ARGS`].
    InvalidMultibulkLength,
    /// `$N` with N not a number, negative, or above [`MAX_REQUEST_BYTES`].
    InvalidBulkLength,
    /// A multibulk argument that does not start with `$`: the byte found instead.
    ExpectedBulk(u8),
    /// A bulk string not followed by `\r\n`. (Redis skips those two bytes unchecked; a
    /// mismatch here means the client's framing is wrong, so it is refused.)
    MissingCrlf,
    /// The declared lengths add up to more than [`MAX_REQUEST_BYTES`].
    RequestTooLarge,
    /// An inline request longer than [`MAX_INLINE_BYTES`].
    InlineTooLarge,
    /// An inline request with an unterminated quote, or a closing quote followed by more text.
    UnbalancedQuotes,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protocol error: ")?;
        match *self {
            ProtocolError::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            ProtocolError::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolError::ExpectedBulk(byte) => {
                // Redis prints the byte as `%c`, with CR and LF replaced by spaces.
                let shown = match byte {
                    b'\r' | b'\n' => ' ',
                    b if b.is_ascii_graphic() || b == b' ' => b as char,
                    _ => '?',
                };
                write!(f, "expected '$', got '{shown}'")
            }
            ProtocolError::MissingCrlf => f.write_str("expected CRLF after a bulk string"),
            ProtocolError::RequestTooLarge => {
                write!(f, "request larger than {} MiB", MAX_REQUEST_BYTES >> 20)
            }
            ProtocolError::InlineTooLarge => f.write_str("too big inline request"),
            ProtocolError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_redis_s() {
        let text = |err: ProtocolError| err.to_string();
        assert_eq!(
            text(ProtocolError::InvalidMultibulkLength),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(
            text(ProtocolError::InvalidBulkLength),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            text(ProtocolError::ExpectedBulk(b':')),
            "Protocol error: expected '$', got ':'"
        );
        assert_eq!(
            text(ProtocolError::ExpectedBulk(b'\n')),
            "Protocol error: expected '$', got ' '"
        );
        assert_eq!(
            text(ProtocolError::UnbalancedQuotes),
            "Protocol error: unbalanced quotes in request"
        );
        assert_eq!(
            text(ProtocolError::InlineTooLarge),
            "Protocol error: too big inline request"
        );
    }
}
