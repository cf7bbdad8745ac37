//! Segment files: append-only files of records, mapped read-only for serving.
//!
//! A segment is written by exactly one core (its [`super::writer`]) and read
//! by any core through its shared read-only map. Readers only ever touch
//! ranges that were published after being synced, so a map larger than the
//! file (the active segment) is never read past its end.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use memmap2::{Mmap, MmapOptions};

use super::fault;
use super::record::{self, RecordKind, HEADER_LEN};

/// One segment file, mapped read-only.
pub struct Segment {
    id: u64,
    /// Tells the SIGBUS handler this map is ours; dropped before `map`.
    _fault_guard: fault::Registration,
    map: Mmap,
    /// Kept open for sendfile(2): the kernel can then move page-cache pages
    /// to the socket without a copy through the map.
    file: File,
    /// For a segment this process found sealed on disk, one [`Integrity`]
    /// per record (by its place in the file): its payload is only trusted
    /// once hashed since the segment was opened. Unset for segments this
    /// process wrote or verified whole.
    checks: OnceLock<Box<[AtomicU8]>>,
    /// The keys of the records start-up found in it, end to end: their
    /// index entries name their keys by place in here, so a start-up
    /// allocates one key buffer per segment, not one per record. Unset
    /// for a segment this process created (its entries own their keys).
    found_keys: OnceLock<Box<str>>,
    /// Set once its file was found shorter than a blob in it: something
    /// outside cut it. No blob of it is served again (bytes written there
    /// later could fill the hole and make a lost range look whole), and
    /// its writer moves on to a new segment.
    cut: Arc<AtomicBool>,
    /// The file length last seen (by `fstat`), and when (Unix ms): a blob
    /// within it is not checked again for [`LENGTH_RECHECK_MS`], so a hit
    /// costs no syscall. A cut in between is still never served as a
    /// whole answer: `sendfile` meets the file's end and the connection is
    /// cut short, a send from the map fails on the lost pages (EFAULT), and
    /// a read of them here faults into zeros and sets `cut`.
    seen_len: AtomicU64,
    seen_at_ms: AtomicU64,
    /// When one of its blobs was last served (see [`coarse_now_ms`]; its
    /// opening until then): the store's size bound evicts the segment hit
    /// least recently first.
    last_hit_ms: AtomicU64,
}

/// A cheap, coarse clock (milliseconds of `CLOCK_MONOTONIC_COARSE`, a few
/// ms of resolution, no syscall): read on every hit.
pub fn coarse_now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// How long a file length seen holds before it is looked at again.
const LENGTH_RECHECK_MS: u64 = 1000;

/// Whether a stored blob's bytes were found to match their recorded hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Integrity {
    /// Not hashed since this process opened its segment: hash before serving it.
    Unchecked = 0,
    /// Written by this process, or hashed since the segment was opened.
    Verified = 1,
    /// Hashed and found different (or its file no longer holds it): never serve.
    Corrupt = 2,
}

/// The place of a blob that needs no check (written or verified whole by this process).
const TRUSTED: u32 = u32::MAX;

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Segment({:016x}, {} bytes mapped)", self.id, self.map.len())
    }
}

impl Segment {
    /// Maps `len` bytes of `file` (which may be shorter: the active segment
    /// grows into its map).
    pub fn map(id: u64, file: &File, len: u64) -> io::Result<Segment> {
        if len == 0 {
            // A zero-length map is an error for mmap(2); keep one page so
            // empty segments behave like any other.
            return Self::map(id, file, 4096);
        }
        let len = usize::try_from(len).map_err(|_| io::Error::other("segment larger than the address space"))?;
        // SAFETY: the map is read-only and we only read ranges that this
        // process wrote and synced (or verified at start-up). The store's
        // directory is locked against other gomodproxy processes.
        let map = unsafe { MmapOptions::new().len(len).map(file)? };
        let cut = Arc::new(AtomicBool::new(false));
        let guard = fault::register(map.as_ptr(), map.len(), cut.clone());
        Ok(Segment {
            id,
            _fault_guard: guard,
            map,
            file: file.try_clone()?,
            checks: OnceLock::new(),
            found_keys: OnceLock::new(),
            cut,
            seen_len: AtomicU64::new(0),
            seen_at_ms: AtomicU64::new(0),
            last_hit_ms: AtomicU64::new(coarse_now_ms()),
        })
    }

    /// Marks this (sealed, found on disk) segment's `records` as unchecked:
    /// blobs made with [`StoredBlob::unchecked`] are hashed on first use.
    pub fn expect_checks(&self, records: usize) {
        let _ = self.checks.set((0..records).map(|_| AtomicU8::new(Integrity::Unchecked as u8)).collect());
    }

    /// Keeps the keys start-up found in it (see `found_keys`); once.
    pub fn keep_found_keys(&self, keys: Box<str>) {
        let _ = self.found_keys.set(keys);
    }

    fn check_slot(&self, place: u32) -> Option<&AtomicU8> {
        self.checks.get()?.get(place as usize)
    }

    /// Whether the file still holds `..end` (as last seen, unless `fresh`);
    /// once it did not, never again (see `cut`).
    fn holds(&self, end: u64, fresh: bool) -> bool {
        if self.cut.load(Ordering::Acquire) {
            return false;
        }
        let now = super::unix_ms();
        if !fresh
            && end <= self.seen_len.load(Ordering::Acquire)
            && now.saturating_sub(self.seen_at_ms.load(Ordering::Acquire)) < LENGTH_RECHECK_MS
        {
            return true;
        }
        let len = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        self.seen_len.store(len, Ordering::Release);
        self.seen_at_ms.store(now, Ordering::Release);
        if len < end {
            self.cut.store(true, Ordering::Release);
            log::error!("segment file {} is shorter than the blobs it holds: it was cut under the server", segment_file_name(self.id));
            return false;
        }
        true
    }

    /// Whether its file was found cut short (no blob of it is served).
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Records that one of its blobs was served now. A load, and a store
    /// at most once per clock tick: hot segments are not written to by
    /// every hit on every core.
    pub fn note_hit(&self) {
        let now = coarse_now_ms();
        if self.last_hit_ms.load(Ordering::Relaxed) < now {
            self.last_hit_ms.store(now, Ordering::Relaxed);
        }
    }

    pub fn last_hit_ms(&self) -> u64 {
        self.last_hit_ms.load(Ordering::Relaxed)
    }

    /// The records from the start of the map to `end` (or to its seal, or
    /// to the first bytes that are no record), in file order. For a
    /// segment whose records are known good (sealed, or written by this
    /// process): nothing here re-hashes a payload.
    pub fn records(&self, end: u64) -> Records<'_> {
        Records { segment: self, at: 0, end: end.min(self.mapped_len()) }
    }

    /// The bytes in `offset..offset+len`, if the map covers them.
    pub fn get(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.map.get(start..end)
    }

    pub fn mapped_len(&self) -> u64 {
        self.map.len() as u64
    }
}

/// One record of a segment, as [`Segment::records`] walks them.
pub struct RecordAt<'a> {
    /// Where its header starts.
    pub offset: u64,
    pub kind: RecordKind,
    pub key: &'a str,
    pub data_offset: u64,
    pub payload: &'a [u8],
    pub sha256: [u8; 32],
    pub stored_at_ms: u64,
}

pub struct Records<'a> {
    segment: &'a Segment,
    at: u64,
    end: u64,
}

impl<'a> Iterator for Records<'a> {
    type Item = RecordAt<'a>;

    fn next(&mut self) -> Option<RecordAt<'a>> {
        let rest = self.segment.get(self.at, self.end.checked_sub(self.at)?)?;
        let h = record::decode_header(rest).ok()?;
        if h.kind == RecordKind::Seal {
            return None;
        }
        let key_at = self.at + HEADER_LEN as u64;
        let data_offset = key_at + h.key_len as u64;
        if data_offset.checked_add(h.payload_len)? > self.end {
            return None;
        }
        let key = std::str::from_utf8(self.segment.get(key_at, h.key_len as u64)?).ok()?;
        let payload = self.segment.get(data_offset, h.payload_len)?;
        let offset = self.at;
        self.at += h.record_len();
        Some(RecordAt { offset, kind: h.kind, key, data_offset, payload, sha256: h.sha256, stored_at_ms: h.stored_at_ms })
    }
}

/// A published blob: a checked range of a segment.
#[derive(Clone, Debug)]
pub struct StoredBlob {
    segment: Arc<Segment>,
    offset: u64,
    len: u64,
    sha256: [u8; 32],
    /// When the record was written (Unix ms): how old an answer that
    /// changes is, and which of two records of one key is the newer.
    stored_at_ms: u64,
    /// Its record's place in the segment, for the segment's first-use
    /// checks; [`TRUSTED`] when it needs none.
    place: u32,
}

/// Where a blob found at start-up lies in its segment, before it is a
/// [`StoredBlob`] (which holds a count on the segment: start-up takes it
/// where it publishes the blob, not per record read, since a locked
/// increment there waits for every store before it).
#[derive(Debug, Clone, Copy)]
pub struct BlobAt {
    pub offset: u64,
    pub len: u64,
    pub sha256: [u8; 32],
    pub stored_at_ms: u64,
    /// Its record's place in a sealed segment (hashed on first use, see
    /// [`StoredBlob::unchecked`]); `None`: verified whole already.
    pub place: Option<u32>,
}

/// The payload's bytes, for holders that keep the blob as plain bytes
/// (`bytes::Bytes::from_owner`): they keep its segment mapped.
impl AsRef<[u8]> for StoredBlob {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

impl StoredBlob {
    /// A blob whose bytes this process wrote or hashed already. Checks the
    /// range once here so that [`StoredBlob::bytes`] cannot fail.
    pub fn new(segment: Arc<Segment>, offset: u64, len: u64, sha256: [u8; 32], stored_at_ms: u64) -> Option<StoredBlob> {
        segment.get(offset, len)?;
        Some(StoredBlob { segment, offset, len, sha256, stored_at_ms, place: TRUSTED })
    }

    /// A blob of a sealed segment found on disk, the `place`-th record of
    /// it (see [`Segment::expect_checks`]): [`Integrity::Unchecked`] until
    /// [`StoredBlob::verify`] hashes it.
    pub fn unchecked(segment: Arc<Segment>, place: u32, offset: u64, len: u64, sha256: [u8; 32], stored_at_ms: u64) -> Option<StoredBlob> {
        let mut blob = StoredBlob::new(segment, offset, len, sha256, stored_at_ms)?;
        if blob.segment.check_slot(place).is_some() {
            blob.place = place;
        }
        Some(blob)
    }

    /// The blob `at` describes in `segment`, if the segment holds its range.
    pub fn at(segment: &Arc<Segment>, at: &BlobAt) -> Option<StoredBlob> {
        match at.place {
            Some(place) => StoredBlob::unchecked(segment.clone(), place, at.offset, at.len, at.sha256, at.stored_at_ms),
            None => StoredBlob::new(segment.clone(), at.offset, at.len, at.sha256, at.stored_at_ms),
        }
    }

    /// Whether `other` is this very record (not another record of its key).
    pub fn same_record(&self, other: &StoredBlob) -> bool {
        self.record_id() == other.record_id()
    }

    /// Names this record (its segment and offset), whatever key holds it.
    pub fn record_id(&self) -> (u64, u64) {
        (self.segment.id, self.offset)
    }

    /// Records that it was served now (for the eviction order of its segment).
    pub fn note_hit(&self) {
        self.segment.note_hit();
    }

    /// What is known of its bytes. One atomic load.
    pub fn integrity(&self) -> Integrity {
        match self.segment.check_slot(self.place).map(|s| s.load(Ordering::Acquire)) {
            None => Integrity::Verified,
            Some(0) => Integrity::Unchecked,
            Some(1) => Integrity::Verified,
            Some(_) => Integrity::Corrupt,
        }
    }

    /// Hashes the payload as it is now and remembers the answer (for every
    /// copy of this blob, on every core). A page the file has lost reads as
    /// zeros (see [`fault`]), so a cut file fails here rather than crashing.
    /// Costs a pass over the bytes: call it where a blob is unchecked, or
    /// to audit.
    pub fn verify(&self) -> bool {
        let end = self.offset + self.len;
        let good = self.segment.holds(end, true) && record::payload_sha256(self.bytes()) == self.sha256 && self.segment.holds(end, true);
        self.mark(if good { Integrity::Verified } else { Integrity::Corrupt });
        good
    }

    /// Records that the blob must never be served (its file lost it).
    pub fn mark_corrupt(&self) {
        self.mark(Integrity::Corrupt);
    }

    fn mark(&self, state: Integrity) {
        if let Some(slot) = self.segment.check_slot(self.place) {
            // Corrupt is final: a later "verified" (a racing check that read
            // before the damage) never undoes it.
            let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| (old != Integrity::Corrupt as u8).then_some(state as u8));
        }
    }

    /// Whether its segment file still holds all of it (an `fstat` at most
    /// once a second per segment, else an atomic load): a file cut under
    /// the server must never be served from.
    pub fn on_disk(&self) -> bool {
        self.segment.holds(self.offset + self.len, false)
    }

    pub fn stored_at_ms(&self) -> u64 {
        self.stored_at_ms
    }

    pub fn bytes(&self) -> &[u8] {
        // The range was checked in `new` and maps never shrink.
        self.segment.get(self.offset, self.len).unwrap_or_default()
    }

    /// The segment's descriptor and the blob's offset in it, for sendfile(2).
    pub fn file_range(&self) -> (RawFd, u64) {
        (self.segment.file.as_raw_fd(), self.offset)
    }

    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// `len` bytes at `at` of the keys start-up found in its segment (see
    /// [`Segment::keep_found_keys`]); empty where there are none such.
    pub fn found_key(&self, at: u32, len: u16) -> &str {
        let keys = self.segment.found_keys.get().map_or("", |k| k);
        keys.get(at as usize..at as usize + len as usize).unwrap_or_default()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

pub fn segment_file_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    parse_id_file_name(name, ".seg")
}

/// The id in a store file's name: 16 lowercase hex digits, then `suffix`.
pub fn parse_id_file_name(name: &str, suffix: &str) -> Option<u64> {
    let hex = name.strip_suffix(suffix)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(segment_file_name(id))
}

/// Creates a new, empty segment file and makes its directory entry durable.
pub fn create(dir: &Path, id: u64) -> io::Result<File> {
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(segment_path(dir, id))?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// One record to write: its kind, key, payload, the payload's digest and
/// when it was stored (now, or the original time of a record carried
/// forward by eviction: a tombstone must still find it older).
pub struct NewRecord<'a> {
    pub kind: RecordKind,
    pub key: &'a str,
    pub payload: &'a [u8],
    pub sha256: [u8; 32],
    pub stored_at_ms: u64,
}

/// Writes one record at `offset` (see [`write_records`]); returns the
/// bytes it takes.
pub fn write_record(
    file: &File,
    offset: u64,
    kind: RecordKind,
    key: &str,
    payload: &[u8],
    sha256: &[u8; 32],
    stored_at_ms: u64,
) -> io::Result<u64> {
    write_records(file, offset, &[NewRecord { kind, key, payload, sha256: *sha256, stored_at_ms }])
}

/// Writes consecutive records from `offset`, each header with its key and
/// payload, in as few `pwritev`s as the kernel allows, then syncs them
/// once: durable together, for the price of one sync. Returns the bytes
/// they take.
///
/// A crash before the sync ends may leave any of the batch's pages on disk
/// and not others: a header whose payload did not make it. That is safe
/// because a segment is only ever trusted on its headers once sealed, and
/// a seal is written after every record before it was synced: recovery
/// hashes every payload of a segment left open, keeps the records that
/// hash right (none of this batch was published, so keeping one is
/// harmless) and cuts the rest as a torn tail. (It used to sync payloads,
/// then write and sync headers: twice the syncs for a guarantee the
/// recovery of open segments already gives.)
pub fn write_records(file: &File, offset: u64, records: &[NewRecord<'_>]) -> io::Result<u64> {
    const PADDING: [u8; record::ALIGN as usize] = [0; record::ALIGN as usize];
    let headers: Vec<[u8; HEADER_LEN]> =
        records.iter().map(|r| record::encode_header(r.kind, r.key, r.payload.len() as u64, &r.sha256, r.stored_at_ms)).collect();
    let mut parts: Vec<&[u8]> = Vec::with_capacity(records.len() * 4);
    let mut len = 0u64;
    for (i, (r, header)) in records.iter().zip(&headers).enumerate() {
        let unpadded = HEADER_LEN as u64 + r.key.len() as u64 + r.payload.len() as u64;
        let padding = (record::align_up(unpadded) - unpadded) as usize;
        parts.extend([&header[..], r.key.as_bytes(), r.payload]);
        // The last record's padding is not written: the next write starts aligned anyway.
        if i + 1 < records.len() {
            parts.push(&PADDING[..padding]);
        }
        len += unpadded + padding as u64;
    }
    write_all_vectored_at(file, &parts, offset)?;
    file.sync_data()?;
    Ok(len)
}

/// `pwritev(2)` until every byte of `parts` is written from `offset`.
fn write_all_vectored_at(file: &File, parts: &[&[u8]], offset: u64) -> io::Result<()> {
    // The kernel takes at most IOV_MAX (1024) slices per call.
    const MAX_SLICES: usize = 1024;
    let mut at = offset;
    let mut rest: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    let mut first = 0;
    while first < rest.len() {
        let batch = &rest[first..rest.len().min(first + MAX_SLICES)];
        let iov: Vec<libc::iovec> =
            batch.iter().map(|p| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() }).collect();
        let offset = libc::off_t::try_from(at).map_err(|_| io::Error::other("segment offset out of range"))?;
        // SAFETY: every iovec points into a slice borrowed for this call; the
        // kernel only reads them.
        let n = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int, offset) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut written = n as usize;
        at += written as u64;
        // Skip what was written: whole slices, then part of one.
        while written > 0 && first < rest.len() {
            if written >= rest[first].len() {
                written -= rest[first].len();
                first += 1;
            } else {
                rest[first] = &rest[first][written..];
                written = 0;
            }
        }
    }
    Ok(())
}

/// Appends the seal record that says "closed, every record before me verified".
pub fn write_seal(file: &File, offset: u64) -> io::Result<u64> {
    let empty = record::payload_sha256(&[]);
    write_record(file, offset, RecordKind::Seal, "", &[], &empty, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_reject_lookalikes() {
        assert_eq!(parse_segment_file_name(&segment_file_name(0xabc)), Some(0xabc));
        for bad in ["0000000000000abc", "0000000000000ABC.seg", "abc.seg", "000000000000000g.seg", "../0000000000000abc.seg"] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }
}
