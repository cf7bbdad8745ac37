//! The segment store: blobs (`.info`, `.mod`, `.zip`, checksum-database
//! tiles and answers, recorded go.sum hashes) kept in append-only,
//! checksummed segment files under `--data`, indexed in memory by
//! (module, version, kind), and served straight from read-only maps.
//!
//! This module owns the bytes on disk and the rules that make them safe:
//! batches of whole records synced once, start-up recovery that cuts torn tails, verification
//! of segments that were open during a crash, the later of two records of
//! a key winning, tombstones that withdraw a blob for good. It never talks to the network
//! and never decides what deserves caching: that is the caller's business.

pub mod evict;
pub mod fault;
pub mod index;
pub mod ledger;
pub mod record;
pub mod segment;
pub mod snapshot;
pub mod writer;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use evict::ShardOf;
pub use index::Index;
pub use ledger::Ledger;
pub use record::RecordKind;
use segment::BlobAt;
pub use segment::{Integrity, StoredBlob};
pub use writer::{Append, SegmentWriter};

use record::{align_up, decode_header, payload_sha256, HEADER_LEN};
use segment::Segment;

#[derive(Debug)]
pub enum StoreError {
    Io(io::Error),
    /// Another process holds the data directory.
    Locked(PathBuf),
    KeyTooLong,
    Corrupt(&'static str),
    Closed,
    /// A recent write failed; none is tried for this long yet.
    BackingOff(Duration),
    /// The data directory is read-only: the store serves what it holds.
    ReadOnly,
    /// Storing this would pass `--max-store-size`, and evicting every
    /// segment that may be evicted would not make the room.
    Full,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io(e) => write!(f, "store I/O error: {e}"),
            StoreError::Locked(p) => write!(f, "data directory {} is in use by another process", p.display()),
            StoreError::KeyTooLong => write!(f, "module path and version too long to store"),
            StoreError::Corrupt(what) => write!(f, "store corrupt: {what}"),
            StoreError::Closed => write!(f, "store is shutting down"),
            StoreError::BackingOff(left) => write!(f, "a recent store write failed; writes resume in {}ms", left.as_millis()),
            StoreError::ReadOnly => write!(f, "the data directory is read-only"),
            StoreError::Full => write!(f, "the store is at its size bound and nothing more can be evicted"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// The same failure, for another of the appends a write served.
    fn again(&self) -> StoreError {
        match self {
            StoreError::Io(e) => StoreError::Io(io::Error::new(e.kind(), e.to_string())),
            StoreError::Locked(p) => StoreError::Locked(p.clone()),
            StoreError::KeyTooLong => StoreError::KeyTooLong,
            StoreError::Corrupt(what) => StoreError::Corrupt(what),
            StoreError::Closed => StoreError::Closed,
            StoreError::BackingOff(left) => StoreError::BackingOff(*left),
            StoreError::ReadOnly => StoreError::ReadOnly,
            StoreError::Full => StoreError::Full,
        }
    }
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e)
    }
}

/// What start-up recovery found and did.
#[derive(Debug, Default, Clone)]
pub struct RecoveryStats {
    pub segments: usize,
    pub records: usize,
    /// Records whose payload checksum was re-verified (segments left open by a crash).
    pub records_verified: usize,
    /// Bytes cut off torn or corrupt tails.
    pub bytes_cut: u64,
    /// Records skipped because their header or payload is damaged, with
    /// good records after them (which were kept).
    pub records_skipped: usize,
    pub segments_skipped: usize,
    /// Blobs hidden by a tombstone (quarantined or purged).
    pub withdrawn: usize,
    /// Segments whose index snapshot was used (the others were scanned).
    pub snapshots_used: usize,
    pub elapsed: Duration,
}

impl RecoveryStats {
    /// Adds what another start-up thread counted.
    fn add(&mut self, other: &RecoveryStats) {
        self.segments += other.segments;
        self.records += other.records;
        self.records_verified += other.records_verified;
        self.bytes_cut += other.bytes_cut;
        self.records_skipped += other.records_skipped;
        self.segments_skipped += other.segments_skipped;
        self.withdrawn += other.withdrawn;
        self.snapshots_used += other.snapshots_used;
    }
}

/// An opened store: the recovered indexes (one per shard) and what the
/// per-core writers need.
pub struct Store {
    segments_dir: PathBuf,
    next_segment_id: Arc<AtomicU64>,
    indexes: Arc<[Index]>,
    /// Which index holds a key: eviction edits any core's.
    shard_of: ShardOf,
    /// Bytes on disk, the bound, the candidates for eviction.
    ledger: Arc<Ledger>,
    stats: RecoveryStats,
    /// The directory could not be written (a read-only mount, a snapshot
    /// of a store): what it holds is served, nothing is written, not even
    /// a torn tail's cut or a seal.
    read_only: bool,
    // Held for the life of the store: the flock on `LOCK` (`None` in a
    // read-only directory that has none).
    _lock: Option<File>,
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir`, recovering
    /// every segment and distributing entries to `shards` indexes by
    /// `shard_of(module, version, kind)`.
    pub fn open(
        data_dir: &Path,
        shards: usize,
        shard_of: impl Fn(&str, &str, RecordKind) -> usize + Send + Sync + 'static,
    ) -> Result<Store, StoreError> {
        let started = Instant::now();
        fs::create_dir_all(data_dir)?;
        let (lock, read_only) = match lock_dir(data_dir) {
            Ok(lock) => (Some(lock), false),
            Err(StoreError::Io(e)) if is_read_only(&e) => (lock_read_only(data_dir)?, true),
            Err(e) => return Err(e),
        };
        let segments_dir = data_dir.join("segments");
        if !read_only || !segments_dir.is_dir() {
            fs::create_dir_all(&segments_dir)?;
        }

        let (mut ids, mut snapshots) = (Vec::new(), Vec::new());
        // What the snapshots take on disk: about how many records there are.
        let mut snapshot_bytes = 0;
        for entry in fs::read_dir(&segments_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_str();
            match (name.and_then(segment::parse_segment_file_name), name.and_then(snapshot::parse_snapshot_file_name)) {
                (Some(id), _) => ids.push(id),
                (None, Some(id)) => {
                    snapshot_bytes += entry.metadata().map_or(0, |m| m.len());
                    snapshots.push(id);
                }
                (None, None) => log::warn!("ignoring unexpected file {:?} in {}", entry.file_name(), segments_dir.display()),
            }
        }
        ids.sort_unstable();

        let indexes: Vec<Index> = (0..shards.max(1)).map(|_| Index::new()).collect();
        let shard_of: ShardOf = Arc::new(shard_of);
        let ledger = Arc::new(Ledger::new(None));
        // Segments are read on every CPU this process may use, each thread
        // taking the next segment not yet taken and publishing what it finds
        // straight into the indexes (which take concurrent inserts).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(ids.len()).max(1);
        let per_index = snapshot::records_in(snapshot_bytes) / indexes.len();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let read = || {
            let loading: Vec<_> = indexes.iter().map(Index::loading).collect();
            let mut found = Found::new();
            while let Some(&id) = ids.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                found.segment(&segments_dir, id, read_only, &shard_of, &loading);
            }
            found
        };
        // Room for the records the snapshots list, made before any thread publishes.
        for index in &indexes {
            index.reserve(per_index);
        }
        let parts: Vec<Found> = std::thread::scope(|scope| {
            let readers: Vec<_> = (0..threads).map(|_| scope.spawn(read)).collect();
            readers.into_iter().map(|r| r.join()).collect::<Result<_, _>>()
        })
        // A reader that panicked read segments nobody else will: no index without them.
        .map_err(|_| StoreError::Corrupt("a start-up thread reading segments failed"))?;
        let mut stats = RecoveryStats::default();
        // (module, version, withdrawn kind) → when the latest tombstone was written.
        let mut tombstones: HashMap<(String, String, RecordKind), u64> = HashMap::new();
        for part in parts {
            stats.add(&part.stats);
            for (key, at) in part.tombstones {
                let latest = tombstones.entry(key).or_insert(0);
                *latest = (*latest).max(at);
            }
            for (segment, len) in part.opened {
                ledger.grew(len);
                ledger.sealed(segment, len);
            }
        }
        if !read_only {
            // Snapshots whose segment is gone (evicted by a process that
            // stopped before it deleted the snapshot too).
            for id in snapshots.into_iter().filter(|id| ids.binary_search(id).is_err()) {
                let _ = fs::remove_file(snapshot::snapshot_path(&segments_dir, id));
            }
        }
        for ((module, version, kind), at) in &tombstones {
            let shard = shard_of(module, version, *kind) % indexes.len();
            stats.withdrawn += indexes[shard].withdraw_stored_by(module, version, *kind, *at) as usize;
        }
        stats.elapsed = started.elapsed();
        let next = ids.last().map_or(1, |last| last + 1);
        Ok(Store {
            segments_dir,
            next_segment_id: Arc::new(AtomicU64::new(next)),
            indexes: indexes.into(),
            shard_of,
            ledger,
            stats,
            read_only,
            _lock: lock,
        })
    }

    /// Whether the data directory could not be written at open (see `read_only`).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn indexes(&self) -> Arc<[Index]> {
        self.indexes.clone()
    }

    pub fn stats(&self) -> &RecoveryStats {
        &self.stats
    }

    /// The store's bytes on disk and its bound (`--max-store-size`).
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Withdraws stored blobs for good, from a store no server is running
    /// on (`gomodproxy verify`): tombstones in a segment of their own,
    /// synced, then gone from the index. A later fill stores them afresh.
    pub fn withdraw(
        &self,
        blobs: &[(&str, &str, RecordKind)],
        shard_of: impl Fn(&str, &str, RecordKind) -> usize,
    ) -> Result<(), StoreError> {
        if blobs.is_empty() {
            return Ok(());
        }
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let id = self.next_segment_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = segment::create(&self.segments_dir, id)?;
        let keys: Vec<String> = blobs.iter().map(|(m, v, _)| format!("{m}@{v}")).collect();
        let payloads: Vec<[u8; 1]> = blobs.iter().map(|(_, _, kind)| [*kind as u8]).collect();
        let records: Vec<segment::NewRecord<'_>> = keys
            .iter()
            .zip(&payloads)
            .map(|(key, payload)| segment::NewRecord {
                kind: RecordKind::Tombstone,
                key,
                payload,
                sha256: payload_sha256(payload),
                stored_at_ms: unix_ms(),
            })
            .collect();
        if keys.iter().any(|k| k.len() > record::MAX_KEY_LEN) {
            return Err(StoreError::KeyTooLong);
        }
        let len = segment::write_records(&file, 0, &records)?;
        let len = len + segment::write_seal(&file, len)?;
        self.ledger.grew(len);
        for (module, version, kind) in blobs {
            self.indexes[shard_of(module, version, *kind) % self.indexes.len()].remove(module, version, *kind);
        }
        Ok(())
    }

    /// A writer for one core. Every writer draws segment ids from the same
    /// counter, so segment files never collide.
    pub fn writer(&self, segment_bytes: u64) -> SegmentWriter {
        let writer = SegmentWriter::new(
            self.segments_dir.clone(),
            self.next_segment_id.clone(),
            segment_bytes,
            self.ledger.clone(),
            self.indexes.clone(),
            self.shard_of.clone(),
        );
        if self.read_only {
            writer.refuse_writes();
        }
        writer
    }
}

/// Now, in the records' clock (Unix milliseconds).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Whether an error opening a file for writing says the directory is read-only.
fn is_read_only(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EROFS) || e.kind() == io::ErrorKind::PermissionDenied
}

/// The lock of a read-only directory: a shared flock on its `LOCK` if it
/// has one (a writer elsewhere on the same files still excludes us).
fn lock_read_only(data_dir: &Path) -> Result<Option<File>, StoreError> {
    let Ok(file) = File::open(data_dir.join("LOCK")) else { return Ok(None) };
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(if err.kind() == io::ErrorKind::WouldBlock { StoreError::Locked(data_dir.to_path_buf()) } else { StoreError::Io(err) });
    }
    Ok(Some(file))
}

fn lock_dir(data_dir: &Path) -> Result<File, StoreError> {
    let path = data_dir.join("LOCK");
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(if err.kind() == io::ErrorKind::WouldBlock { StoreError::Locked(data_dir.to_path_buf()) } else { StoreError::Io(err) });
    }
    Ok(file)
}

/// What one start-up thread found in the segments it read.
struct Found {
    /// (module, version, withdrawn kind) → when its latest tombstone was written.
    tombstones: HashMap<(String, String, RecordKind), u64>,
    /// Each segment opened, with the bytes it and its snapshot take.
    opened: Vec<(Arc<Segment>, u64)>,
    stats: RecoveryStats,
    /// The last snapshot read (its buffer reused for the next).
    snapshot: Vec<u8>,
    /// The records of the segment being read, with their shards (the
    /// buffers reused for the next).
    records: index::Batch,
}

/// Takes the records of one segment as it is read, to publish once all of
/// it was read and found usable (a snapshot refused half-way, or a scan
/// that fails, publishes nothing); their keys go into one buffer the
/// segment will keep.
struct Publish<'a> {
    shard_of: &'a ShardOf,
    shards: usize,
    records: &'a mut index::Batch,
    /// (module, version, withdrawn kind) and when: the segment's tombstones.
    tombstones: Vec<((String, String, RecordKind), u64)>,
    keys: String,
    /// Records taken (of every kind).
    taken: usize,
}

impl Publish<'_> {
    /// Room for `records` records whose keys take `key_bytes`.
    fn expect(&mut self, records: usize, key_bytes: usize) {
        self.keys.reserve_exact(key_bytes);
        self.records.reserve(records);
    }

    /// One record whose key ("module@version") was read from disk: records
    /// of a malformed key are left out.
    fn record(&mut self, segment: &Arc<Segment>, key: &str, kind: RecordKind, blob: BlobAt) {
        let Some((module, version)) = record::split_key(key) else { return };
        self.taken += 1;
        if kind == RecordKind::UnverifiedSumTile {
            return;
        }
        if kind == RecordKind::Tombstone {
            let withdrawn = StoredBlob::at(segment, &blob).and_then(|b| b.bytes().first().copied()).and_then(RecordKind::from_byte);
            if let Some(withdrawn) = withdrawn {
                self.tombstones.push(((module.to_string(), version.to_string(), withdrawn), blob.stored_at_ms));
            }
            return;
        }
        let shard = (self.shard_of)(module, version, kind) % self.shards;
        let loaded = match u32::try_from(self.keys.len()) {
            Ok(at) => {
                self.keys.push_str(key);
                index::Pending::found(module, version, at, kind, blob)
            }
            // Past 4 GiB of keys in one segment (never, at MAX_KEY_LEN and
            // any sane segment size): the key is its own allocation.
            Err(_) => index::Pending::owned(module, version, kind, blob),
        };
        self.records.push(shard, loaded);
    }

    /// Forgets what it took (the segment is read again another way).
    fn clear(&mut self) {
        self.records.clear();
        self.tombstones.clear();
        self.keys.clear();
        self.taken = 0;
    }
}

impl Found {
    fn new() -> Found {
        Found {
            tombstones: HashMap::new(),
            opened: Vec::new(),
            stats: RecoveryStats::default(),
            snapshot: Vec::new(),
            records: index::Batch::new(),
        }
    }

    /// Reads segment `id`, from its snapshot if that holds, else by a scan,
    /// and publishes its records into `indexes` (one per shard).
    fn segment(&mut self, dir: &Path, id: u64, read_only: bool, shard_of: &ShardOf, indexes: &[index::Loading<'_>]) {
        let mut publish =
            Publish { shard_of, shards: indexes.len(), records: &mut self.records, tombstones: Vec::new(), keys: String::new(), taken: 0 };
        let opened = match open_from_snapshot(dir, id, read_only, &mut self.snapshot, &mut self.stats, &mut publish) {
            Some(opened) => opened,
            None => {
                publish.clear();
                recover_segment(dir, id, read_only, &mut self.stats, &mut publish)
            }
        };
        let (keys, tombstones) = (std::mem::take(&mut publish.keys), std::mem::take(&mut publish.tombstones));
        match opened {
            Ok(opened) => {
                // Before any entry of it is published: their keys are in here.
                opened.0.keep_found_keys(keys.into_boxed_str());
                self.stats.records += publish.taken;
                self.records.publish(indexes, &opened.0);
                for (key, at) in tombstones {
                    let latest = self.tombstones.entry(key).or_insert(0);
                    *latest = (*latest).max(at);
                }
                self.stats.segments += 1;
                self.opened.push(opened);
            }
            Err(e) => {
                // A segment we cannot read is skipped, not fatal: its blobs
                // will be fetched again.
                self.records.clear();
                log::error!("skipping segment {}: {e}", segment::segment_file_name(id));
                self.stats.segments_skipped += 1;
            }
        }
    }
}

/// Opens segment `id` from its index snapshot, if it has one that holds
/// for the file as it is (see [`snapshot`]); `None`: scan it (what it gave
/// `publish` is to be forgotten). Returns the segment and the bytes it and
/// its snapshot take on disk.
fn open_from_snapshot(
    dir: &Path,
    id: u64,
    read_only: bool,
    bytes: &mut Vec<u8>,
    stats: &mut RecoveryStats,
    publish: &mut Publish<'_>,
) -> Option<io::Result<(Arc<Segment>, u64)>> {
    let name = segment::segment_file_name(id);
    let refused = |why: snapshot::Refused| log::warn!("segment {name}: index snapshot not used ({why:?}); scanning the segment");
    let opened = (|| {
        let file = OpenOptions::new().read(true).write(!read_only).open(segment::segment_path(dir, id))?;
        let len = file.metadata()?.len();
        Ok((file, len))
    })();
    let (file, len) = match opened {
        Ok(x) => x,
        Err(e) => return Some(Err(e)),
    };
    let mut listed = match snapshot::Stream::open(dir, id, len, bytes) {
        Ok(Some(listed)) => listed,
        Ok(None) => return None,
        Err(why) => {
            refused(why);
            return None;
        }
    };
    let seg = match Segment::map(id, &file, len) {
        Ok(seg) => Arc::new(seg),
        Err(e) => return Some(Err(e)),
    };
    // The count is the head's, proven only at the end of the walk, but
    // bounded by the file's length (each record takes 64 bytes of it).
    seg.expect_checks(listed.len());
    publish.expect(listed.len(), listed.key_bytes());
    let mut place = 0u32;
    while let Some(r) = listed.next() {
        let r = match r {
            Ok(r) => r,
            Err(why) => {
                refused(why);
                return None;
            }
        };
        let blob = BlobAt { offset: r.data_offset, len: r.len, sha256: r.sha256, stored_at_ms: r.stored_at_ms, place: Some(place) };
        publish.record(&seg, r.key, r.kind, blob);
        place += 1;
    }
    stats.snapshots_used += 1;
    Some(Ok((seg, len + listed.file_len() as u64)))
}

struct FoundRecord {
    record_start: u64,
    stored_at_ms: u64,
    data_offset: u64,
    len: u64,
    sha256: [u8; 32],
    kind: RecordKind,
    key_start: u64,
    key_len: u64,
}

/// Scans one segment's headers. A segment without a seal record was open when
/// the process last stopped: its payloads are verified, its torn tail cut,
/// and it is sealed so the next start-up can trust its headers. A sealed
/// segment's payloads are checked on first use instead (see
/// [`StoredBlob::integrity`]).
///
/// A damaged record is skipped, not taken for the end: the scan looks for
/// the next record at record alignment whose header and payload both check
/// (see [`resync`]), and only where none follows is the rest a torn tail.
///
/// Writes the segment's index snapshot from what it found; returns the
/// segment and the bytes it and its snapshot take on disk.
fn recover_segment(
    dir: &Path,
    id: u64,
    read_only: bool,
    stats: &mut RecoveryStats,
    publish: &mut Publish<'_>,
) -> io::Result<(Arc<Segment>, u64)> {
    let path = segment::segment_path(dir, id);
    let file = OpenOptions::new().read(true).write(!read_only).open(&path)?;
    let file_len = file.metadata()?.len();
    let mut seg = Arc::new(Segment::map(id, &file, file_len)?);
    let name = segment::segment_file_name(id);

    let mut found: Vec<FoundRecord> = Vec::new();
    let mut offset = 0u64;
    let mut sealed = false;
    while offset + HEADER_LEN as u64 <= file_len {
        let Some(rest) = seg.get(offset, file_len - offset) else { break };
        let record = decode_header(rest).ok().and_then(|h| FoundRecord::at(offset, h, file_len));
        let Some(f) = record else {
            // Damaged here: carry on from the next provably whole record, if any.
            match resync(&seg, offset, file_len) {
                Some(next) => {
                    log::warn!("segment {name}: damaged record at {offset}; skipped {} bytes to the next good record", next - offset);
                    stats.records_skipped += 1;
                    offset = next;
                    continue;
                }
                None => break,
            }
        };
        offset += align_up(f.data_offset + f.len - f.record_start);
        if f.kind == RecordKind::Seal {
            sealed = true;
            break;
        }
        found.push(f);
    }
    let mut valid_end = offset.min(file_len);

    if !sealed {
        let before = found.len();
        found.retain(|f| {
            stats.records_verified += 1;
            let ok = seg.get(f.data_offset, f.len).is_some_and(|p| payload_sha256(p) == f.sha256);
            if !ok {
                log::warn!("segment {name}: record at {} fails its checksum; skipped", f.record_start);
            }
            ok
        });
        stats.records_skipped += before - found.len();
        // A last record that failed is a torn write: cut it with the tail.
        let last_good_end = found.last().map_or(0, |f| align_up(f.data_offset + f.len));
        if before > found.len() && valid_end > last_good_end && resync(&seg, last_good_end, valid_end).is_none() {
            valid_end = last_good_end;
        }
        if read_only {
            // Nothing can be cut or sealed: the tail is only left unread.
        } else if valid_end < file_len {
            stats.bytes_cut += file_len - valid_end;
            log::warn!("segment {name}: cut {} bytes of torn tail", file_len - valid_end);
            file.set_len(valid_end)?;
            seg = Arc::new(Segment::map(id, &file, valid_end)?);
        }
        // Sealing is an optimisation; a failure only means verifying again next time.
        if read_only {
        } else if let Err(e) = segment::write_seal(&file, align_up(valid_end)) {
            log::warn!("could not seal recovered segment {name}: {e}");
        }
    } else {
        seg.expect_checks(found.len());
    }

    let mut listed = Vec::with_capacity(found.len());
    publish.expect(found.len(), found.iter().map(|f| f.key_len as usize).sum());
    for (place, f) in found.into_iter().enumerate() {
        let key = seg.get(f.key_start, f.key_len).and_then(|k| std::str::from_utf8(k).ok());
        let Some(key) = key.filter(|k| k.contains('@')) else {
            log::warn!("segment {name}: record at {} has a malformed key; skipped", f.record_start);
            continue;
        };
        listed.push(snapshot::Listed {
            kind: f.kind,
            key,
            data_offset: f.data_offset,
            len: f.len,
            sha256: f.sha256,
            stored_at_ms: f.stored_at_ms,
        });
        // A sealed segment's blobs are hashed on first use; the others were just now.
        let place = sealed.then_some(place as u32);
        let blob = BlobAt { offset: f.data_offset, len: f.len, sha256: f.sha256, stored_at_ms: f.stored_at_ms, place };
        publish.record(&seg, key, f.kind, blob);
    }
    let len = file.metadata()?.len();
    // The next start-up reads this instead of the segment's headers: the
    // records found good here, not a second walk (which would stop at a
    // damaged header and lose what follows it).
    let snapshot =
        if read_only { snapshot::len_on_disk(dir, id) } else { snapshot::save(dir, id, snapshot::encode(len, listed.into_iter())) };
    Ok((seg, len + snapshot))
}

impl FoundRecord {
    /// The record a decoded header at `offset` describes, if the file holds all of it.
    fn at(offset: u64, h: record::Header, file_len: u64) -> Option<FoundRecord> {
        let key_start = offset + HEADER_LEN as u64;
        let data_offset = key_start + h.key_len as u64;
        let end = data_offset.checked_add(h.payload_len)?;
        (end <= file_len).then_some(FoundRecord {
            record_start: offset,
            stored_at_ms: h.stored_at_ms,
            data_offset,
            len: h.payload_len,
            sha256: h.sha256,
            kind: h.kind,
            key_start,
            key_len: h.key_len as u64,
        })
    }
}

/// The offset of the first record after `from` (at record alignment,
/// before `end`) whose header checks, whose bytes the file holds and whose
/// payload hashes as its header says: where a scan can go on after a
/// damaged record. `None`: nothing good follows (a torn tail).
fn resync(seg: &Segment, from: u64, end: u64) -> Option<u64> {
    let magic = record::MAGIC.to_le_bytes();
    let mut at = align_up(from + 1);
    while at + HEADER_LEN as u64 <= end {
        let rest = seg.get(at, end - at)?;
        if rest[..4] == magic {
            if let Some(f) = decode_header(rest).ok().and_then(|h| FoundRecord::at(at, h, end)) {
                if f.kind == RecordKind::Seal || seg.get(f.data_offset, f.len).is_some_and(|p| payload_sha256(p) == f.sha256) {
                    return Some(at);
                }
            }
        }
        at += record::ALIGN;
    }
    None
}

#[cfg(test)]
mod tests;
