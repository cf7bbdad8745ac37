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
// A snapshot is never larger than the records it lists (see `Stream::open`).
const _: () = assert!(ENTRY_LEN <= super::record::HEADER_LEN);

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

/// About how many records snapshots of `bytes` list (keys of 32 bytes
/// assumed: module paths and versions are seldom shorter), to make room
/// for them before they are read.
pub fn records_in(bytes: u64) -> usize {
    usize::try_from(bytes / (ENTRY_LEN as u64 + 32)).unwrap_or(usize::MAX)
}

/// Why a snapshot was not used (the segment is scanned instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Unreadable,
    Damaged,
    /// It describes a segment of another length.
    LengthChanged,
}

/// What a snapshot's head says, checked against the length of its body
/// (all before its checksum): its record count and the bytes of its keys.
fn head(body_len: usize, head: &[u8], segment_len: u64) -> Result<(usize, usize), Refused> {
    if body_len < HEAD_LEN || head.len() < HEAD_LEN || head[0..4] != MAGIC.to_le_bytes() || head[4] != FORMAT {
        return Err(Refused::Damaged);
    }
    if u64_at(head, 8) != segment_len {
        return Err(Refused::LengthChanged);
    }
    let count = u64_at(head, 16);
    // Each entry takes at least ENTRY_LEN bytes: a count past that is a lie.
    let key_bytes = (body_len - HEAD_LEN).checked_sub(count.saturating_mul(ENTRY_LEN as u64) as usize).ok_or(Refused::Damaged)?;
    Ok((count as usize, key_bytes))
}

/// The entry at `at` of a snapshot's body (of which `body` holds at least
/// the entry: more is not needed), and where the next begins.
fn entry_at(body: &[u8], at: usize, segment_len: u64) -> Result<(Listed<'_>, usize), Refused> {
    let e = body.get(at..at + ENTRY_LEN).ok_or(Refused::Damaged)?;
    let kind = RecordKind::from_byte(e[0]).ok_or(Refused::Damaged)?;
    let key_len = u16::from_le_bytes([e[2], e[3]]) as usize;
    if key_len > MAX_KEY_LEN {
        return Err(Refused::Damaged);
    }
    let key_at = at + ENTRY_LEN;
    let key = body.get(key_at..key_at + key_len).ok_or(Refused::Damaged)?;
    let key = std::str::from_utf8(key).map_err(|_| Refused::Damaged)?;
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(&e[32..64]);
    let r = Listed { kind, key, data_offset: u64_at(e, 8), len: u64_at(e, 16), stored_at_ms: u64_at(e, 24), sha256 };
    if r.data_offset.checked_add(r.len).is_none_or(|end| end > segment_len) {
        return Err(Refused::Damaged);
    }
    Ok((r, key_at + key_len))
}

/// The records a snapshot lists, checked against itself (its checksum,
/// here) and against a segment file of `segment_len` bytes (every entry's
/// bytes lie inside it, as they are walked: a walk that meets an error
/// refuses the whole snapshot). Start-up reads snapshots as a [`Stream`].
pub fn decode(bytes: &[u8], segment_len: u64) -> Result<Listing<'_>, Refused> {
    let body_len = bytes.len().checked_sub(4).ok_or(Refused::Damaged)?;
    let (body, crc) = bytes.split_at(body_len);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(Refused::Damaged);
    }
    let (count, key_bytes) = head(body.len(), body, segment_len)?;
    Ok(Listing { body, at: HEAD_LEN, left: count, key_bytes, segment_len })
}

/// Bytes read from a snapshot at a time: a piece is checksummed and walked
/// while the read's copy of it is still in cache (reading the whole file,
/// then checksumming it, then walking it, went to memory three times).
const PIECE: usize = 256 << 10;

/// A snapshot read from its file a piece at a time as it is walked, for
/// start-up. Its checksum covers what was walked only once the walk ends:
/// [`Stream::next`] gives records before they are proven, and ends with
/// an error if the checksum fails, so a caller keeps what it is given
/// apart until then (start-up publishes a segment's records only once all
/// of it was read).
pub struct Stream<'b> {
    file: fs::File,
    /// The whole file once read: a buffer a start-up thread reuses from
    /// segment to segment, so a million records cost no fresh pages per
    /// segment. `bytes[..filled]` is read so far.
    bytes: &'b mut Vec<u8>,
    filled: usize,
    /// Everything before the checksum.
    body_len: usize,
    crc: crc32fast::Hasher,
    /// `bytes[..crc_to]` is in `crc`.
    crc_to: usize,
    at: usize,
    left: usize,
    key_bytes: usize,
    segment_len: u64,
    ended: bool,
}

impl<'b> Stream<'b> {
    /// The snapshot of segment `id`, if it has one, for a segment file of
    /// `segment_len` bytes; its head is read and checked here.
    pub fn open(dir: &Path, id: u64, segment_len: u64, bytes: &'b mut Vec<u8>) -> Result<Option<Stream<'b>>, Refused> {
        let file = match fs::File::open(snapshot_path(dir, id)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(_) => return Err(Refused::Unreadable),
        };
        let len = file.metadata().map_err(|_| Refused::Unreadable)?.len();
        // An entry takes no more bytes than its record's header and key do
        // in the segment: a larger file is not this segment's snapshot, and
        // is not read into memory.
        if len > segment_len.saturating_add(HEAD_LEN as u64 + 4) {
            return Err(Refused::Damaged);
        }
        let len = usize::try_from(len).map_err(|_| Refused::Damaged)?;
        let body_len = len.checked_sub(4).ok_or(Refused::Damaged)?;
        // Shorter: only cut. Longer: zeroes only what the buffer never had.
        bytes.resize(len, 0);
        let mut stream = Stream {
            file,
            bytes,
            filled: 0,
            body_len,
            crc: crc32fast::Hasher::new(),
            crc_to: 0,
            at: HEAD_LEN,
            left: 0,
            key_bytes: 0,
            segment_len,
            ended: false,
        };
        stream.fill_to(HEAD_LEN.min(body_len))?;
        (stream.left, stream.key_bytes) = head(body_len, &stream.bytes[..stream.filled], segment_len)?;
        Ok(Some(stream))
    }

    /// How many records it lists (its head says: proven at the end).
    pub fn len(&self) -> usize {
        self.left
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// The bytes of all its keys together.
    pub fn key_bytes(&self) -> usize {
        self.key_bytes
    }

    /// What it takes on disk.
    pub fn file_len(&self) -> usize {
        self.bytes.len()
    }

    /// Reads until `bytes[..want]` is in (a piece more at a time), and
    /// checksums what came.
    fn fill_to(&mut self, want: usize) -> Result<(), Refused> {
        use std::io::Read;
        let want = want.min(self.bytes.len());
        while self.filled < want {
            let end = (self.filled + PIECE).max(want).min(self.bytes.len());
            match self.file.read(&mut self.bytes[self.filled..end]) {
                // The file is shorter than it was at open: cut under us.
                Ok(0) => return Err(Refused::Damaged),
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Refused::Unreadable),
            }
        }
        let to = self.filled.min(self.body_len);
        if self.crc_to < to {
            self.crc.update(&self.bytes[self.crc_to..to]);
            self.crc_to = to;
        }
        Ok(())
    }

    /// The next record, or at the end the checksum's verdict (an error),
    /// or `None`: every record was given and the snapshot holds.
    #[allow(clippy::should_implement_trait)] // it lends from itself: not an Iterator
    pub fn next(&mut self) -> Option<Result<Listed<'_>, Refused>> {
        if self.ended {
            return None;
        }
        match self.step() {
            // Fields apart, not through `self`: the record borrows the bytes.
            Ok(Some(at)) => match entry_at(&self.bytes[..self.filled], at, self.segment_len) {
                Ok((r, next)) => {
                    self.at = next;
                    Some(Ok(r))
                }
                Err(why) => {
                    self.ended = true;
                    Some(Err(why))
                }
            },
            Ok(None) => {
                self.ended = true;
                None
            }
            Err(why) => {
                self.ended = true;
                Some(Err(why))
            }
        }
    }

    /// Where the next record starts, read in whole; `None`: the walk is
    /// over and the checksum holds.
    fn step(&mut self) -> Result<Option<usize>, Refused> {
        if self.left == 0 {
            // The last entry ends where the body does, and the body is what
            // the checksum after it covers.
            if self.at != self.body_len {
                return Err(Refused::Damaged);
            }
            self.fill_to(self.bytes.len())?;
            let crc = std::mem::take(&mut self.crc).finalize().to_le_bytes();
            return if self.bytes[self.body_len..] == crc { Ok(None) } else { Err(Refused::Damaged) };
        }
        let at = self.at;
        self.fill_to(at + ENTRY_LEN)?;
        let key_len = self.bytes.get(at + 2..at + 4).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize);
        self.fill_to(at + ENTRY_LEN + key_len.min(MAX_KEY_LEN))?;
        if at + ENTRY_LEN + key_len > self.body_len {
            return Err(Refused::Damaged);
        }
        self.left -= 1;
        Ok(Some(at))
    }
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b.get(i..i + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]))
}

/// A snapshot's records as they are walked ([`decode`]).
pub struct Listing<'a> {
    body: &'a [u8],
    at: usize,
    left: usize,
    key_bytes: usize,
    segment_len: u64,
}

impl<'a> Listing<'a> {
    /// The bytes of all its keys together.
    pub fn key_bytes(&self) -> usize {
        self.key_bytes
    }

    fn entry(&mut self) -> Result<Listed<'a>, Refused> {
        let (r, next) = entry_at(self.body, self.at, self.segment_len)?;
        self.at = next;
        self.left -= 1;
        // The last entry ends where the body does.
        if self.left == 0 && self.at != self.body.len() {
            return Err(Refused::Damaged);
        }
        Ok(r)
    }
}

impl<'a> Iterator for Listing<'a> {
    type Item = Result<Listed<'a>, Refused>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            // An empty listing must be an empty body.
            return (self.at != self.body.len()).then(|| {
                self.at = self.body.len();
                Err(Refused::Damaged)
            });
        }
        let entry = self.entry();
        if entry.is_err() {
            self.left = 0;
            self.at = self.body.len();
        }
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8], segment_len: u64) -> Result<Vec<Listed<'_>>, Refused> {
        decode(bytes, segment_len)?.collect()
    }

    fn sample() -> Vec<Listed<'static>> {
        vec![
            Listed { kind: RecordKind::Zip, key: "example.com/a@v1.0.0", data_offset: 84, len: 10, sha256: [1; 32], stored_at_ms: 5 },
            Listed { kind: RecordKind::Tombstone, key: "example.com/b@v1.0.0", data_offset: 200, len: 1, sha256: [2; 32], stored_at_ms: 6 },
        ]
    }

    #[test]
    fn round_trips_and_refuses_another_length_or_any_damage() {
        let bytes = encode(4096, sample().into_iter());
        assert_eq!(decode_all(&bytes, 4096).unwrap(), sample());
        assert_eq!(decode(&bytes, 4096).unwrap().key_bytes(), 40);
        assert_eq!(decode_all(&bytes, 4104), Err(Refused::LengthChanged));
        for cut in 0..bytes.len() {
            assert!(decode_all(&bytes[..cut], 4096).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode_all(&bad, 4096).is_err(), "flip at {i}");
        }
        // A snapshot whose checksum holds but whose count lies (more
        // records, or fewer, than its body holds) is refused as it is walked.
        for count in [0u64, 1, 3, 1000] {
            let mut lying = bytes[..bytes.len() - 4].to_vec();
            lying[16..24].copy_from_slice(&count.to_le_bytes());
            let crc = crc32fast::hash(&lying);
            lying.extend_from_slice(&crc.to_le_bytes());
            assert!(decode_all(&lying, 4096).is_err(), "count {count}");
        }
        // A whole, well-formed snapshot that points outside its segment is refused too.
        let outside = encode(100, sample().into_iter());
        assert_eq!(decode_all(&outside, 100), Err(Refused::Damaged));
    }

    /// A record as owned values: kind, key, offset, length, digest, stored at.
    type Owned = (RecordKind, String, u64, u64, [u8; 32], u64);

    /// Start-up's walk of a snapshot file, as owned records; an error
    /// wherever it refuses (at open, or at any record, or at the end).
    fn stream_all(dir: &Path, bytes: &[u8], segment_len: u64) -> Result<Vec<Owned>, Refused> {
        fs::write(snapshot_path(dir, 1), bytes).unwrap();
        let mut buf = vec![7; 3]; // a reused buffer holds an older file's bytes
        let mut stream = Stream::open(dir, 1, segment_len, &mut buf)?.expect("the file is there");
        let mut all = Vec::new();
        while let Some(r) = stream.next() {
            let r = r?;
            all.push((r.kind, r.key.to_string(), r.data_offset, r.len, r.sha256, r.stored_at_ms));
        }
        assert_eq!(stream.next(), None, "over once over");
        Ok(all)
    }

    fn owned(listed: &[Listed<'_>]) -> Vec<Owned> {
        listed.iter().map(|r| (r.kind, r.key.to_string(), r.data_offset, r.len, r.sha256, r.stored_at_ms)).collect()
    }

    #[test]
    fn a_stream_gives_what_decode_does_and_ends_in_an_error_on_any_damage() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = encode(4096, sample().into_iter());
        assert_eq!(stream_all(dir.path(), &bytes, 4096).unwrap(), owned(&sample()));
        assert_eq!(stream_all(dir.path(), &bytes, 4104), Err(Refused::LengthChanged));
        for cut in 0..bytes.len() {
            assert!(stream_all(dir.path(), &bytes[..cut], 4096).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(stream_all(dir.path(), &bad, 4096).is_err(), "flip at {i}");
        }
        for count in [0u64, 1, 3, 1000] {
            let mut lying = bytes[..bytes.len() - 4].to_vec();
            lying[16..24].copy_from_slice(&count.to_le_bytes());
            let crc = crc32fast::hash(&lying);
            lying.extend_from_slice(&crc.to_le_bytes());
            assert!(stream_all(dir.path(), &lying, 4096).is_err(), "count {count}");
        }
        assert_eq!(stream_all(dir.path(), &bytes, 50), Err(Refused::Damaged), "larger than its segment's records could list");
        let mut missing = Vec::new();
        assert!(matches!(Stream::open(dir.path(), 2, 4096, &mut missing), Ok(None)), "no snapshot: none, not an error");
    }

    #[test]
    fn a_stream_reads_a_snapshot_of_many_pieces_and_catches_a_flip_in_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<String> = (0..6000).map(|i| format!("example.com/module-{i}@v1.0.{i}")).collect();
        let listed: Vec<Listed<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| Listed {
                kind: RecordKind::Info,
                key,
                data_offset: i as u64 * 64,
                len: 64,
                sha256: [i as u8; 32],
                stored_at_ms: i as u64,
            })
            .collect();
        let bytes = encode(1 << 20, listed.clone().into_iter());
        assert!(bytes.len() > 2 * PIECE, "{} bytes: more than two pieces", bytes.len());
        assert_eq!(stream_all(dir.path(), &bytes, 1 << 20).unwrap(), owned(&listed));
        // A flipped byte in a key near the end: only the checksum can tell.
        let mut bad = bytes.clone();
        let at = bytes.len() - 10;
        bad[at] = if bad[at] == b'1' { b'2' } else { b'1' };
        assert_eq!(stream_all(dir.path(), &bad, 1 << 20), Err(Refused::Damaged));
    }
}
