//! The on-disk record: one blob (`.info`, `.mod`, `.zip`, a complete
//! checksum-database tile, the latest copy of a checksum-database answer),
//! a module file's recorded `h1:` hash, or a tombstone, with its key.
//!
//! Layout, little-endian, every record starting on an 8-byte boundary:
//!
//! ```text
//!  0  magic  u32 "GMPR"        4  format u8      5  kind u8     6  key_len u16
//!  8  payload_len u64         16  stored_at_ms u64
//! 24  sha256(payload) [32]    56  header_check u32 (sha256 of bytes 0..56 ++ key, first 4 bytes)
//! 60  reserved u32            64  key ("module@version", UTF-8)   64+key_len  payload
//! ```
//!
//! A record is written whole and synced with the rest of its batch (see
//! `segment::write_records`): in a sealed segment a valid header means a
//! complete record, in one left open by a crash every payload is hashed
//! against its header before it counts. This module only encodes and
//! decodes; it never does I/O and never trusts a byte it decodes.

use sha2::{Digest, Sha256};

pub const MAGIC: u32 = u32::from_le_bytes(*b"GMPR");
pub const FORMAT: u8 = 1;
pub const HEADER_LEN: usize = 64;
pub const ALIGN: u64 = 8;
/// Longest "module@version" key we will store (module paths are far shorter in practice).
pub const MAX_KEY_LEN: usize = 1024;

/// What a record holds. The discriminants are on disk: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    Info = 1,
    Mod = 2,
    Zip = 3,
    /// A complete checksum-database tile stored by a build that relayed
    /// tiles unverified: never read (recovery leaves it out of the index),
    /// so only authenticated tiles are ever served.
    UnverifiedSumTile = 4,
    /// The latest verified copy of a checksum-database answer that the log's
    /// growth supersedes (`latest`, a lookup, a partial tile); key
    /// `sumdb/<name>@<path>`. A newer record of the same key replaces it;
    /// its `stored_at_ms` says how old the answer is.
    SumAnswer = 5,
    /// The `h1:` hash a module file had when it was first stored, as a
    /// go.sum line names it: key `module@version` for the zip,
    /// `module@version/go.mod` for the go.mod; payload `h1:…`. Later bytes
    /// for the same version must hash the same; only a purge (an operator
    /// accepting new bytes) tombstones it, never a quarantine.
    GoSum = 6,
    /// Withdraws a stored blob for good (quarantine, purge): key
    /// `module@version`, payload one byte, the [`RecordKind`] withdrawn.
    /// It hides every record of that key stored before it.
    Tombstone = 7,
    /// A complete checksum-database tile, authenticated against a signed
    /// tree head before it was stored; key `sumdb/<name>@tile/H/L/NNN`.
    SumTile = 8,
    /// The latest good `list` of a module (key `module@`), replaced as it
    /// refreshes: the stale-if-error reserve, across restarts too.
    List = 9,
    /// The latest good `@latest` of a module (key `module@`), likewise.
    Latest = 10,
    /// The latest good answer to a query (`@v/QUERY.info`: a branch, a
    /// commit prefix; key `module@QUERY`), likewise: resolved afresh every
    /// time, this copy only answers while the sources fail.
    Query = 11,
    /// Marks a segment as closed and fully verified; carries no key or payload.
    Seal = 0xFF,
}

impl RecordKind {
    /// A name for logs and answers, in the words `Kind::label` uses.
    pub fn label(self) -> &'static str {
        match self {
            RecordKind::Info => ".info",
            RecordKind::Mod => ".mod",
            RecordKind::Zip => ".zip",
            RecordKind::GoSum => "go.sum hash",
            RecordKind::List => "list",
            RecordKind::Latest => "@latest",
            RecordKind::Query => "query",
            RecordKind::SumAnswer | RecordKind::SumTile | RecordKind::UnverifiedSumTile => "checksum database answer",
            RecordKind::Tombstone => "tombstone",
            RecordKind::Seal => "seal",
        }
    }

    /// The records a module's purge withdraws: its versions' files and
    /// kept hashes, its `list` and `@latest` (not checksum-database answers).
    pub fn is_module_file(self) -> bool {
        matches!(
            self,
            RecordKind::Info
                | RecordKind::Mod
                | RecordKind::Zip
                | RecordKind::GoSum
                | RecordKind::List
                | RecordKind::Latest
                | RecordKind::Query
        )
    }

    /// The stale-if-error reserve: the last good copy of an answer that
    /// changes, kept for the day its sources fail.
    pub fn is_stale_reserve(self) -> bool {
        matches!(self, RecordKind::List | RecordKind::Latest | RecordKind::Query | RecordKind::SumAnswer)
    }

    pub fn from_byte(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Info),
            2 => Some(RecordKind::Mod),
            3 => Some(RecordKind::Zip),
            4 => Some(RecordKind::UnverifiedSumTile),
            5 => Some(RecordKind::SumAnswer),
            6 => Some(RecordKind::GoSum),
            7 => Some(RecordKind::Tombstone),
            8 => Some(RecordKind::SumTile),
            9 => Some(RecordKind::List),
            10 => Some(RecordKind::Latest),
            11 => Some(RecordKind::Query),
            0xFF => Some(RecordKind::Seal),
            _ => None,
        }
    }
}

/// A decoded, self-consistent header. Lengths are checked against nothing
/// but themselves: the caller checks them against the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: RecordKind,
    pub key_len: u16,
    pub payload_len: u64,
    pub stored_at_ms: u64,
    pub sha256: [u8; 32],
}

impl Header {
    /// Bytes from the start of the record to the start of the next one.
    pub fn record_len(&self) -> u64 {
        align_up(HEADER_LEN as u64 + self.key_len as u64 + self.payload_len)
    }
}

/// A record's key, `module@version`, split at its first `@` (neither a
/// module path nor a version holds one): the one place that knows how a
/// key splits, for start-up and eviction.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    let at = key.bytes().position(|b| b == b'@')?;
    Some((&key[..at], &key[at + 1..]))
}

pub fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

pub fn payload_sha256(payload: &[u8]) -> [u8; 32] {
    Sha256::digest(payload).into()
}

fn header_check(first56: &[u8], key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(first56);
    h.update(key);
    let d = h.finalize();
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// Encodes a header for `key` and a payload whose digest is already known.
pub fn encode_header(kind: RecordKind, key: &str, payload_len: u64, sha256: &[u8; 32], stored_at_ms: u64) -> [u8; HEADER_LEN] {
    debug_assert!(key.len() <= MAX_KEY_LEN);
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4] = FORMAT;
    h[5] = kind as u8;
    h[6..8].copy_from_slice(&(key.len() as u16).to_le_bytes());
    h[8..16].copy_from_slice(&payload_len.to_le_bytes());
    h[16..24].copy_from_slice(&stored_at_ms.to_le_bytes());
    h[24..56].copy_from_slice(sha256);
    let check = header_check(&h[0..56], key.as_bytes());
    h[56..60].copy_from_slice(&check.to_le_bytes());
    h
}

/// Why bytes at some offset are not a record. Any of these at a segment's
/// tail is a torn write; anywhere else it is corruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    Short,
    BadMagic,
    BadFormat,
    BadKind,
    KeyTooLong,
    BadCheck,
}

/// Decodes the header at the start of `bytes`; `bytes` must extend at least
/// over the key (the key is covered by the header check).
pub fn decode_header(bytes: &[u8]) -> Result<Header, DecodeError> {
    let fixed = bytes.get(..HEADER_LEN).ok_or(DecodeError::Short)?;
    let u16_at = |i: usize| u16::from_le_bytes([fixed[i], fixed[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&fixed[i..i + 8]);
        u64::from_le_bytes(b)
    };
    if u32_at(0) != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if fixed[4] != FORMAT {
        return Err(DecodeError::BadFormat);
    }
    let kind = RecordKind::from_byte(fixed[5]).ok_or(DecodeError::BadKind)?;
    let key_len = u16_at(6);
    if key_len as usize > MAX_KEY_LEN {
        return Err(DecodeError::KeyTooLong);
    }
    let key = bytes.get(HEADER_LEN..HEADER_LEN + key_len as usize).ok_or(DecodeError::Short)?;
    if header_check(&fixed[0..56], key) != u32_at(56) {
        return Err(DecodeError::BadCheck);
    }
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(&fixed[24..56]);
    Ok(Header { kind, key_len, payload_len: u64_at(8), stored_at_ms: u64_at(16), sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: RecordKind, key: &str, payload: &[u8]) -> Vec<u8> {
        let mut v = encode_header(kind, key, payload.len() as u64, &payload_sha256(payload), 7).to_vec();
        v.extend_from_slice(key.as_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn round_trips() {
        let r = record(RecordKind::Zip, "example.com/a@v1.0.0", b"PK");
        let h = decode_header(&r).unwrap();
        assert_eq!(h.kind, RecordKind::Zip);
        assert_eq!(h.key_len as usize, "example.com/a@v1.0.0".len());
        assert_eq!(h.payload_len, 2);
        assert_eq!(h.stored_at_ms, 7);
        assert_eq!(h.sha256, payload_sha256(b"PK"));
        assert_eq!(h.record_len() % ALIGN, 0);
    }

    #[test]
    fn every_single_bit_flip_in_header_or_key_is_caught() {
        let r = record(RecordKind::Mod, "example.com/a@v1.0.0", b"module example.com/a\n");
        let covered = HEADER_LEN + "example.com/a@v1.0.0".len();
        for byte in 0..covered {
            if (60..64).contains(&byte) {
                continue; // reserved
            }
            for bit in 0..8 {
                let mut bad = r.clone();
                bad[byte] ^= 1 << bit;
                assert!(decode_header(&bad).is_err(), "flip at byte {byte} bit {bit} not caught");
            }
        }
    }

    #[test]
    fn zeros_and_truncations_are_not_records() {
        assert_eq!(decode_header(&[0u8; 100]), Err(DecodeError::BadMagic));
        let r = record(RecordKind::Info, "example.com/a@v1.0.0", b"{}");
        for cut in 0..HEADER_LEN + 5 {
            assert!(decode_header(&r[..cut]).is_err());
        }
    }
}
