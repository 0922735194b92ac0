//! The append-only file's byte format: a header, then records, each with its own checksum.
//!
//! ```text
//! header:  "CIOKVAOF" | version u32 | shard u32 | shards u32        (20 bytes, little-endian)
//! record:  len u32 | crc32 u32 | payload (len bytes)
//! payload: 1 (SET) | key_len u32 | key | value        or        2 (DEL) | key
//! ```
//!
//! The checksum (CRC-32, IEEE) covers the payload and its length, so a record cut short by a
//! crash, or overwritten by garbage, is told apart from a good one. Every record is a blind
//! write (an `INCR` is logged as the `SET` of its result), so replaying a suffix of the log a
//! second time on top of a snapshot gives the same map: what lets a rewrite copy the records
//! that arrive while it runs without coordinating with them exactly.
//!
//! This module owns encoding and decoding; it must never accept a record whose checksum fails.

/// The file's first bytes.
const MAGIC: &[u8; 8] = b"CIOKVAOF";
const VERSION: u32 = 1;
/// The header's size.
pub const HEADER_LEN: usize = 20;
/// A record's length and checksum.
const FRAME_LEN: usize = 8;
/// The largest payload a record may have: a key and a value within the protocol's limits
/// (512 MiB bulk strings) and then some. A length above it is corruption, not a big record.
const MAX_PAYLOAD: usize = 1 << 30;

const SET: u8 = 1;
const DEL: u8 = 2;

/// One logged write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    Set { key: &'a [u8], value: &'a [u8] },
    Del { key: &'a [u8] },
}

/// Which shard a file belongs to, and out of how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub shard: u32,
    pub shards: u32,
}

impl Header {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.shard.to_le_bytes());
        out.extend_from_slice(&self.shards.to_le_bytes());
    }

    /// The header at the start of `bytes`, or why there is none.
    pub fn decode(bytes: &[u8]) -> Result<Header, String> {
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return Err("not a sharded_kv append-only file (bad header)".into());
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(format!(
                "format version {version}, this server reads {VERSION}"
            ));
        }
        Ok(Header {
            shard: u32_at(bytes, 12),
            shards: u32_at(bytes, 16),
        })
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn len_u32(len: usize) -> [u8; 4] {
    // Keys and values are bounded by the protocol's limits, far below 4 GiB.
    u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes()
}

/// Appends `record`, framed, to `out`.
pub fn encode(record: &Record<'_>, out: &mut Vec<u8>) {
    let frame_at = out.len();
    out.extend_from_slice(&[0; FRAME_LEN]);
    let payload_at = out.len();
    match record {
        Record::Set { key, value } => {
            out.push(SET);
            out.extend_from_slice(&len_u32(key.len()));
            out.extend_from_slice(key);
            out.extend_from_slice(value);
        }
        Record::Del { key } => {
            out.push(DEL);
            out.extend_from_slice(key);
        }
    }
    let payload_len = out.len() - payload_at;
    let len = len_u32(payload_len);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(&out[payload_at..]);
    out[frame_at..frame_at + 4].copy_from_slice(&len);
    out[frame_at + 4..frame_at + 8].copy_from_slice(&crc.finalize().to_le_bytes());
}

/// What is at the start of some bytes of the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A good record, and the bytes it took.
    Record(Record<'a>, usize),
    /// The bytes end inside a record: a write cut short, if nothing follows.
    Incomplete,
    /// A record that cannot be one (bad checksum, impossible length or type).
    Corrupt(&'static str),
}

/// Decodes the record at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Decoded<'_> {
    if bytes.len() < FRAME_LEN {
        return Decoded::Incomplete;
    }
    let len = u32_at(bytes, 0) as usize;
    let crc = u32_at(bytes, 4);
    if len == 0 || len > MAX_PAYLOAD {
        return Decoded::Corrupt("impossible record length");
    }
    let Some(payload) = bytes.get(FRAME_LEN..FRAME_LEN + len) else {
        return Decoded::Incomplete;
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[..4]);
    hasher.update(payload);
    if hasher.finalize() != crc {
        return Decoded::Corrupt("checksum mismatch");
    }
    let record = match payload[0] {
        SET if payload.len() >= 5 => {
            let key_len = u32_at(payload, 1) as usize;
            let Some(key) = payload.get(5..5 + key_len) else {
                return Decoded::Corrupt("key longer than its record");
            };
            Record::Set {
                key,
                value: &payload[5 + key_len..],
            }
        }
        DEL => Record::Del { key: &payload[1..] },
        _ => return Decoded::Corrupt("unknown record type"),
    };
    Decoded::Record(record, FRAME_LEN + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let records = [
            Record::Set {
                key: b"k",
                value: b"v",
            },
            Record::Set {
                key: b"",
                value: b"",
            },
            Record::Del { key: b"gone" },
            Record::Set {
                key: &[0, 255],
                value: &[7; 1000],
            },
        ];
        let mut log = Vec::new();
        for record in &records {
            encode(record, &mut log);
        }
        let mut at = 0;
        for record in &records {
            match decode(&log[at..]) {
                Decoded::Record(decoded, used) => {
                    assert_eq!(&decoded, record);
                    at += used;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(at, log.len());
        assert_eq!(decode(&log[at..]), Decoded::Incomplete);
    }

    #[test]
    fn a_cut_record_is_incomplete_and_a_flipped_bit_corrupt() {
        let mut log = Vec::new();
        encode(
            &Record::Set {
                key: b"key",
                value: b"value",
            },
            &mut log,
        );
        for cut in 0..log.len() {
            assert_eq!(decode(&log[..cut]), Decoded::Incomplete, "cut at {cut}");
        }
        for byte in 4..log.len() {
            let mut bad = log.clone();
            bad[byte] ^= 0x10;
            assert!(
                matches!(decode(&bad), Decoded::Corrupt(_)),
                "flipped byte {byte}"
            );
        }
        let mut zero = log.clone();
        zero[..4].copy_from_slice(&[0; 4]);
        assert_eq!(decode(&zero), Decoded::Corrupt("impossible record length"));
    }

    #[test]
    fn headers_name_their_shard() {
        let mut out = Vec::new();
        Header {
            shard: 1,
            shards: 2,
        }
        .encode(&mut out);
        assert_eq!(out.len(), HEADER_LEN);
        assert_eq!(
            Header::decode(&out),
            Ok(Header {
                shard: 1,
                shards: 2
            })
        );
        assert!(Header::decode(b"garbage garbage garbage").is_err());
    }
}
