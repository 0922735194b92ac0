//! The RESP2 codec: requests in, replies out.
//!
//! This module owns the Redis wire format and nothing else: [`Parser`] finds one request at a
//! time in a connection's read buffer — a multibulk request (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`,
//! what every client library and `redis-cli` send) or an inline one (`GET k\n`, what a person
//! types into telnet) — and the `push_*` functions encode replies into an output buffer. It knows
//! nothing of commands, keys or cores.
//!
//! It must never panic, and never allocate more than a client has actually sent, whatever the
//! input: every length a client declares is checked against [`MAX_REQUEST_BYTES`] and
//! [`MAX_ARGS`] before it is trusted, the argument list grows only as arguments arrive, and a
//! malformed request is a [`ProtocolError`] (the connection then replies with it and closes, as
//! Redis does).
//!
//! Multibulk arguments are never copied: a [`Request`] holds ranges into the caller's buffer.
//! A partial request is parsed once: the parser remembers how far it got, and the next call,
//! given the same request start with more bytes after it, resumes there. So a request that
//! arrives in many reads costs one pass, not one pass per read.
//!
//! The files: `parser.rs` frames requests, `inline.rs` splits an inline request's line into
//! arguments, `integer.rs` reads and writes Redis's decimal integers, `reply.rs` encodes
//! replies, `error.rs` holds the protocol errors with Redis's texts, and `tests.rs` the
//! parser's tests.

mod error;
mod inline;
mod integer;
mod parser;
mod reply;
#[cfg(test)]
mod tests;

pub use error::ProtocolError;
pub use integer::{parse_i64, push_decimal};
pub use parser::{Parser, Request};
pub use reply::{
    push_array_header, push_bulk, push_bulk_or_nil, push_error, push_integer, push_ok, push_simple,
};

/// The largest request accepted, counted in bytes on the wire (all arguments with their
/// framing). A larger one is refused as soon as its declared lengths say so, before its bytes
/// arrive. Redis allows 512 MiB per argument; this example keeps a connection's buffer smaller.
pub const MAX_REQUEST_BYTES: usize = 64 << 20;

/// The most arguments a multibulk request may declare (Redis's limit for the same header).
pub const MAX_ARGS: usize = 1024 * 1024;

/// The longest inline request (Redis's `PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE_BYTES: usize = 64 * 1024;
