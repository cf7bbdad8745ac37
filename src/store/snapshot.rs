//! Index snapshots: for each sealed segment, a file beside it
//! (`<id>.snap`) listing its records (kind, key, place, length, digest,
//! stored time, tombstones included), so start-up builds the index from
//! one sequential read per segment instead of touching every record
//! header in the segment's map and hashing it.
//!
//! A segment is immutable once sealed, so its snapshot, written when it is
//! sealed (by its writer, by start-up recovery, or at clean shutdown, which
//! seals the open segments), stays true for as long as the segment exists:
//! there is no moment at which a snapshot of the whole store must be taken
//! consistently. At start-up a snapshot is used only if its checksum holds
//! and the segment file has exactly the length it names; anything else
//! (no snapshot, a torn one, a segment whose length changed, the open
//! segments after a crash) is scanned as before.
//!
//! A snapshot is never fsynced: a torn or lost one costs only a scan. Its
//! entries say where records are; the payloads are still hashed on first
//! use, as any sealed segment's. This module reads and writes these files
//! and nothing else.
//!
//! Layout (little-endian): `"GMPS"` u32, format u8, 3 reserved, segment
//! length u64, record count u64; then per record: kind u8, 1 reserved,
//! key length u16, 4 reserved, data offset u64, payload length u64, stored
//! at (Unix ms) u64, SHA-256 [32], the key; then CRC-32 of everything
//! before it, u32.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::record::{RecordKind, MAX_KEY_LEN};
use super::segment::{RecordAt, Segment};

const MAGIC: u32 = u32::from_le_bytes(*b"GMPS");
const FORMAT: u8 = 1;
const HEAD_LEN: usize = 24;
const ENTRY_LEN: usize = 64;

pub fn snapshot_file_name(id: u64) -> String {
    format!("{id:016x}.snap")
}

pub fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    super::segment::parse_id_file_name(name, ".snap")
}

pub fn snapshot_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(snapshot_file_name(id))
}

/// One record, as a snapshot lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed<'a> {
    pub kind: RecordKind,
    pub key: &'a str,
    pub data_offset: u64,
    pub len: u64,
    pub sha256: [u8; 32],
    pub stored_at_ms: u64,
}

/// Writes the snapshot of a sealed segment of `len` bytes that this process
/// wrote (so every record in it is whole), from its records; returns the
/// bytes it takes on disk. Best effort: a failure is logged and costs the
/// next start-up a scan.
pub fn write(dir: &Path, segment: &Segment, len: u64) -> u64 {
    let records: Vec<RecordAt<'_>> = segment.records(len).collect();
    let listed = records.iter().map(|r| Listed {
        kind: r.kind,
        key: r.key,
        data_offset: r.data_offset,
        len: r.payload.len() as u64,
        sha256: r.sha256,
        stored_at_ms: r.stored_at_ms,
    });
    save(dir, segment.id(), encode(len, listed))
}

/// Writes an encoded snapshot of segment `id` (best effort, as [`write`]).
pub fn save(dir: &Path, id: u64, bytes: Vec<u8>) -> u64 {
    match fs::write(snapshot_path(dir, id), &bytes) {
        Ok(()) => bytes.len() as u64,
        Err(e) => {
            log::warn!("could not write the index snapshot of segment {id:016x} (the next start-up scans it): {e}");
            // A partial file may be left: it is refused at start-up.
            fs::metadata(snapshot_path(dir, id)).map_or(0, |m| m.len())
        }
    }
}

/// Bytes of the snapshot of segment `id` on disk (0: none).
pub fn len_on_disk(dir: &Path, id: u64) -> u64 {
    fs::metadata(snapshot_path(dir, id)).map_or(0, |m| m.len())
}

pub fn encode<'a>(segment_len: u64, records: impl ExactSizeIterator<Item = Listed<'a>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD_LEN + records.len() * (ENTRY_LEN + 48) + 4);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[FORMAT, 0, 0, 0]);
    out.extend_from_slice(&segment_len.to_le_bytes());
    out.extend_from_slice(&(records.len() as u64).to_le_bytes());
    for r in records {
        out.push(r.kind as u8);
        out.push(0);
        out.extend_from_slice(&(r.key.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&r.data_offset.to_le_bytes());
        out.extend_from_slice(&r.len.to_le_bytes());
        out.extend_from_slice(&r.stored_at_ms.to_le_bytes());
        out.extend_from_slice(&r.sha256);
        out.extend_from_slice(r.key.as_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Why a snapshot was not used (the segment is scanned instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Unreadable,
    Damaged,
    /// It describes a segment of another length.
    LengthChanged,
}

/// Reads the snapshot of segment `id`, for a segment file of `segment_len`
/// bytes: `Ok(None)` where there is none.
pub fn read(dir: &Path, id: u64) -> Result<Option<Vec<u8>>, Refused> {
    match fs::read(snapshot_path(dir, id)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(_) => Err(Refused::Unreadable),
    }
}

/// The records a snapshot lists, checked against itself and against a
/// segment file of `segment_len` bytes: every entry's bytes lie inside it.
pub fn decode(bytes: &[u8], segment_len: u64) -> Result<Vec<Listed<'_>>, Refused> {
    let body_len = bytes.len().checked_sub(4).ok_or(Refused::Damaged)?;
    let (body, crc) = bytes.split_at(body_len);
    if crc32fast::hash(body).to_le_bytes() != crc || body.len() < HEAD_LEN {
        return Err(Refused::Damaged);
    }
    let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    if body[0..4] != MAGIC.to_le_bytes() || body[4] != FORMAT {
        return Err(Refused::Damaged);
    }
    if u64_at(body, 8) != segment_len {
        return Err(Refused::LengthChanged);
    }
    let count = u64_at(body, 16);
    // Each entry takes at least ENTRY_LEN bytes: a count past that is a lie.
    if count > (body.len() / ENTRY_LEN) as u64 {
        return Err(Refused::Damaged);
    }
    let mut records = Vec::with_capacity(count as usize);
    let mut at = HEAD_LEN;
    for _ in 0..count {
        let e = body.get(at..at + ENTRY_LEN).ok_or(Refused::Damaged)?;
        let kind = RecordKind::from_byte(e[0]).ok_or(Refused::Damaged)?;
        let key_len = u16::from_le_bytes([e[2], e[3]]) as usize;
        if key_len > MAX_KEY_LEN {
            return Err(Refused::Damaged);
        }
        let key = body.get(at + ENTRY_LEN..at + ENTRY_LEN + key_len).ok_or(Refused::Damaged)?;
        let key = std::str::from_utf8(key).map_err(|_| Refused::Damaged)?;
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&e[32..64]);
        let r = Listed { kind, key, data_offset: u64_at(e, 8), len: u64_at(e, 16), stored_at_ms: u64_at(e, 24), sha256 };
        if r.data_offset.checked_add(r.len).is_none_or(|end| end > segment_len) {
            return Err(Refused::Damaged);
        }
        records.push(r);
        at += ENTRY_LEN + key_len;
    }
    if at != body.len() {
        return Err(Refused::Damaged);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Listed<'static>> {
        vec![
            Listed { kind: RecordKind::Zip, key: "example.com/a@v1.0.0", data_offset: 84, len: 10, sha256: [1; 32], stored_at_ms: 5 },
            Listed { kind: RecordKind::Tombstone, key: "example.com/b@v1.0.0", data_offset: 200, len: 1, sha256: [2; 32], stored_at_ms: 6 },
        ]
    }

    #[test]
    fn round_trips_and_refuses_another_length_or_any_damage() {
        let bytes = encode(4096, sample().into_iter());
        assert_eq!(decode(&bytes, 4096).unwrap(), sample());
        assert_eq!(decode(&bytes, 4104), Err(Refused::LengthChanged));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], 4096).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad, 4096).is_err(), "flip at {i}");
        }
        // A whole, well-formed snapshot that points outside its segment is refused too.
        let outside = encode(100, sample().into_iter());
        assert_eq!(decode(&outside, 100), Err(Refused::Damaged));
    }
}
