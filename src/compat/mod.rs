//! Adapters to the I/O traits of other ecosystems, each behind its cargo feature: tokio's
//! `AsyncRead`/`AsyncWrite` (`tokio`) and hyper's `rt::Read`/`rt::Write` (`hyper`), for the
//! same stream types and pipes that implement futures-io's traits.
//!
//! Every impl forwards to the readiness-based poll forms of `crate::net::stream_poll`: a
//! non-blocking syscall straight into the caller's (possibly uninitialized) memory, so nothing
//! is copied twice and a read dropped between polls loses nothing.

// This module owns the trait impls only. It must never add a read or write path of its own:
// every byte goes through `StreamIo`'s poll forms, which keep the held-bytes and wait rules.

#[cfg(feature = "hyper")]
pub mod hyper;
#[cfg(feature = "tokio")]
mod tokio;
