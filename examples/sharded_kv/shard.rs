//! One core's shard of the key space, and which shard owns a key.
//!
//! This module owns the data: a [`Store`] per core, kept in a thread-local so that the code that
//! reaches it — a connection served by this core, or a closure another core forwarded here
//! through the mesh — is always code running on this core's thread. It also owns [`owner`], the
//! fixed hash that every core uses to agree on which shard a key lives in. It must never hand a
//! reference to its map to another thread (the thread-local makes that impossible), never hold
//! the map borrowed across an `.await` (every access is a synchronous closure), and never panic
//! on client data.
//!
//! The map itself uses std's `RandomState` (SipHash with per-map random keys), so a client cannot
//! pick keys that collide in one bucket; the owner hash is a different, fixed function (FNV-1a),
//! so that keys of one shard are not all alike in the bits the map uses.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::resp;

/// The shard (index into the runtime's list of cores) that owns `key` among `shards` shards:
/// 64-bit FNV-1a of the key's bytes, modulo the count. Every core computes the same answer.
pub fn owner(key: &[u8], shards: usize) -> usize {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = key.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    // `shards` is at most the number of CPUs, so the remainder fits a usize.
    (hash % shards.max(1) as u64) as usize
}

/// Why `INCR` failed; the messages are Redis's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncrError {
    /// The value is not a decimal `i64` as Redis writes them.
    NotAnInteger,
    /// The value is `i64::MAX`.
    Overflow,
}

impl IncrError {
    /// The error reply's text.
    pub fn message(self) -> &'static [u8] {
        match self {
            IncrError::NotAnInteger => b"ERR value is not an integer or out of range",
            IncrError::Overflow => b"ERR increment or decrement would overflow",
        }
    }
}

/// One shard: binary keys to binary values.
#[derive(Debug, Default)]
pub struct Store {
    map: HashMap<Vec<u8>, Vec<u8>>,
}

impl Store {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Sets `key` to a copy of `value`. Overwriting reuses the old value's allocation when it
    /// fits (and is not far too big), so a steady stream of `SET`s on the same keys allocates
    /// nothing.
    pub fn set(&mut self, key: &[u8], value: &[u8]) {
        match self.map.get_mut(key) {
            Some(old) => {
                if old.capacity() >= value.len() && old.capacity() <= 2 * value.len() + 64 {
                    old.clear();
                    old.extend_from_slice(value);
                } else {
                    *old = value.to_vec();
                }
            }
            None => {
                self.map.insert(key.to_vec(), value.to_vec());
            }
        }
    }

    /// Sets `key` to `value`, taking both (for requests forwarded from another core, which
    /// arrive as owned copies already).
    pub fn set_owned(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.map.insert(key, value);
    }

    /// Removes `key`; whether it was there.
    pub fn del(&mut self, key: &[u8]) -> bool {
        self.map.remove(key).is_some()
    }

    /// Adds 1 to the integer in `key` (a missing key counts as 0) and returns the new value.
    pub fn incr(&mut self, key: &[u8]) -> Result<i64, IncrError> {
        let Some(value) = self.map.get_mut(key) else {
            self.map.insert(key.to_vec(), b"1".to_vec());
            return Ok(1);
        };
        let current = resp::parse_i64(value).ok_or(IncrError::NotAnInteger)?;
        let next = current.checked_add(1).ok_or(IncrError::Overflow)?;
        value.clear();
        resp::push_decimal(value, next);
        Ok(next)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// A copy of every key and value (for rewriting the append-only file).
    pub fn snapshot(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.map
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

thread_local! {
    /// This core's shard. Created on first use (by a local connection or a forwarded request,
    /// whichever comes first), dropped with the core's thread when the runtime stops.
    static LOCAL: RefCell<Store> = RefCell::new(Store::default());
}

/// Runs `f` on the calling core's shard. `f` is synchronous, so the shard is never borrowed
/// across an `.await`, and it cannot reach the shard again, so the borrow cannot conflict.
pub fn with_local<R>(f: impl FnOnce(&mut Store) -> R) -> R {
    LOCAL.with_borrow_mut(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_hash_is_fnv1a_and_never_changes() {
        // FNV-1a 64 of "" is the offset basis, of "a" 0xaf63dc4c8601ec8c (published vectors):
        // every core, and every build, must agree on them.
        assert_eq!(
            owner(b"", 1 << 20),
            (0xcbf2_9ce4_8422_2325u64 % (1 << 20)) as usize
        );
        assert_eq!(
            owner(b"a", 1 << 20),
            (0xaf63_dc4c_8601_ec8cu64 % (1 << 20)) as usize
        );
        assert_eq!(owner(b"anything", 1), 0);
    }

    #[test]
    fn keys_spread_over_the_shards() {
        for shards in [2, 3, 8] {
            let mut counts = vec![0usize; shards];
            for i in 0..10_000 {
                counts[owner(format!("key:{i}").as_bytes(), shards)] += 1;
            }
            let fair = 10_000 / shards;
            for &count in &counts {
                assert!(
                    count > fair * 8 / 10 && count < fair * 12 / 10,
                    "{shards} shards: {counts:?}"
                );
            }
        }
    }

    #[test]
    fn set_get_del() {
        let mut store = Store::default();
        assert_eq!(store.get(b"k"), None);
        store.set(b"k", b"v1");
        store.set(b"k", b"longer value");
        assert_eq!(store.get(b"k"), Some(&b"longer value"[..]));
        store.set_owned(b"k\0".to_vec(), vec![0, 255]);
        assert_eq!(store.get(b"k\0"), Some(&[0u8, 255][..]));
        assert_eq!(store.len(), 2);
        assert!(store.del(b"k"));
        assert!(!store.del(b"k"));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn overwriting_a_value_of_similar_size_reuses_its_allocation() {
        let mut store = Store::default();
        store.set(b"k", &[1; 100]);
        let before = store.get(b"k").unwrap().as_ptr();
        store.set(b"k", &[2; 90]);
        assert_eq!(store.get(b"k").unwrap().as_ptr(), before);
        assert_eq!(store.get(b"k").unwrap(), &[2; 90][..]);
        // A much smaller value gets an allocation of its own size.
        store.set(b"k", b"x");
        assert_eq!(store.get(b"k"), Some(&b"x"[..]));
    }

    #[test]
    fn incr_follows_redis() {
        let mut store = Store::default();
        assert_eq!(store.incr(b"n"), Ok(1));
        assert_eq!(store.incr(b"n"), Ok(2));
        assert_eq!(store.get(b"n"), Some(&b"2"[..]));
        store.set(b"n", b"-2");
        assert_eq!(store.incr(b"n"), Ok(-1));
        assert_eq!(store.incr(b"n"), Ok(0));
        assert_eq!(store.get(b"n"), Some(&b"0"[..]));
        for bad in [
            &b"x"[..],
            b"",
            b"01",
            b" 1",
            b"1.0",
            b"99999999999999999999",
        ] {
            store.set(b"n", bad);
            assert_eq!(store.incr(b"n"), Err(IncrError::NotAnInteger), "{bad:?}");
            assert_eq!(store.get(b"n"), Some(bad), "a failed INCR changes nothing");
        }
        store.set(b"n", b"9223372036854775807");
        assert_eq!(store.incr(b"n"), Err(IncrError::Overflow));
        assert_eq!(
            IncrError::NotAnInteger.message(),
            b"ERR value is not an integer or out of range"
        );
    }
}
