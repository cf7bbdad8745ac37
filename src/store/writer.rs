//! The per-core segment writer: appends records to this core's active
//! segment, one write at a time (of every append waiting for it: group
//! commit), and hands back the published blobs.
//!
//! Each core owns one writer, so appends need no lock shared between cores;
//! a core-local semaphore keeps this core's appends in file order (a record
//! is never written behind a later one, so a torn write can only be a tail).
//! Disk I/O runs on the executor's blocking pool, never on the reactor. The
//! writer never publishes a new record: the caller inserts into the index
//! after `append` returns, which is after the record is synced.
//!
//! Under a size bound the writer that needs room makes it before it
//! writes: it evicts whole sealed segments (see [`super::ledger`] for the
//! choice, [`super::evict`] for what outlives a victim), writes the
//! carried records with its own batch (for the same sync), points the
//! index at the copies, and only then deletes the victims' files. A blob
//! being sent from a victim keeps its map (and the file's blocks) until the
//! send is done.

use std::cell::RefCell;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use glommio::channels::local_channel::{self, LocalSender};
use glommio::sync::Semaphore;

use super::evict::{self, Carried, ShardOf, Victim};
use super::index::Index;
use super::ledger::Ledger;
use super::record::{align_up, RecordKind, HEADER_LEN, MAX_KEY_LEN};
use super::segment::{self, NewRecord, Segment, StoredBlob};
use super::{unix_ms, StoreError};

/// One record for [`SegmentWriter::append_all`].
pub struct Append<'a> {
    pub kind: RecordKind,
    pub module: &'a str,
    pub version: &'a str,
    pub payload: bytes::Bytes,
    /// Of `payload`.
    pub sha256: [u8; 32],
}

/// A record waiting for its write, with its key.
#[derive(Clone)]
struct Owned {
    kind: RecordKind,
    key: String,
    payload: bytes::Bytes,
    sha256: [u8; 32],
}

impl Owned {
    /// Bytes it takes in the segment.
    fn len(&self) -> u64 {
        align_up(HEADER_LEN as u64 + self.key.len() as u64 + self.payload.len() as u64)
    }
}

/// One append's records, and where its result goes.
struct Waiting {
    records: Vec<Owned>,
    done: LocalSender<Result<Vec<StoredBlob>, StoreError>>,
}

#[derive(Clone)]
struct Active {
    segment: Arc<Segment>,
    file: Arc<File>,
    next: u64,
    capacity: u64,
}

pub struct SegmentWriter {
    dir: PathBuf,
    ids: Arc<AtomicU64>,
    segment_bytes: u64,
    /// The store's bytes on disk and its bound, shared by every writer.
    ledger: Arc<Ledger>,
    /// Every shard's index and the routing between them: a victim's
    /// records may belong to any core.
    indexes: Arc<[Index]>,
    shard_of: ShardOf,
    active: RefCell<Option<Active>>,
    /// Held by the append whose batch is being written.
    turn: Semaphore,
    /// Appends waiting for the next write (group commit).
    waiting: RefCell<Vec<Waiting>>,
    /// Writes made (each one sync).
    writes: std::cell::Cell<u64>,
    /// After a failed write (a full disk, an I/O error), no write is tried
    /// before this instant: appends fail at once, their blobs are passed
    /// through, and a full disk is not hammered (nor filled with new
    /// segment files) by every fill.
    backoff_until: std::cell::Cell<Option<std::time::Instant>>,
    /// How long the next failure backs off: doubled by each failure in a
    /// row, up to [`MAX_BACKOFF`], reset by a write that succeeds.
    next_backoff: std::cell::Cell<std::time::Duration>,
    /// Set for a read-only data directory: nothing is ever written.
    read_only: std::cell::Cell<bool>,
}

/// The first back-off after a failed write, and the longest.
const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(500);
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(30);

impl SegmentWriter {
    pub fn new(
        dir: PathBuf,
        ids: Arc<AtomicU64>,
        segment_bytes: u64,
        ledger: Arc<Ledger>,
        indexes: Arc<[Index]>,
        shard_of: ShardOf,
    ) -> SegmentWriter {
        SegmentWriter {
            dir,
            ids,
            segment_bytes,
            ledger,
            indexes,
            shard_of,
            active: RefCell::new(None),
            turn: Semaphore::new(1),
            waiting: RefCell::default(),
            writes: Default::default(),
            backoff_until: Default::default(),
            next_backoff: std::cell::Cell::new(FIRST_BACKOFF),
            read_only: Default::default(),
        }
    }

    /// Makes every append fail with [`StoreError::ReadOnly`] (a read-only data directory).
    pub fn refuse_writes(&self) {
        self.read_only.set(true);
    }

    /// Writes made so far: fewer than appends when fills finish together.
    pub fn writes(&self) -> u64 {
        self.writes.get()
    }

    /// Durably appends one record. On an I/O error the failed tail is cut
    /// off the active segment again (if even that fails, the segment is
    /// abandoned: recovery cuts its tail), and writes back off for a while
    /// (see `backoff_until`).
    pub async fn append(
        &self,
        kind: RecordKind,
        module: &str,
        version: &str,
        payload: bytes::Bytes,
        sha256: [u8; 32],
    ) -> Result<StoredBlob, StoreError> {
        let mut blobs = self.append_all(vec![Append { kind, module, version, payload, sha256 }]).await?;
        blobs.pop().ok_or(StoreError::Corrupt("a write of one record stored none"))
    }

    /// Durably appends `records` together, next to each other in one
    /// segment: a module file and its go.sum hash are kept together, or
    /// neither is.
    ///
    /// Group commit: appends that arrive while a write is under way wait
    /// for their turn together, and whichever takes the turn first writes
    /// them all at once, for the sync of one record. Each append still
    /// returns only once its own bytes and headers are durable.
    pub async fn append_all(&self, records: Vec<Append<'_>>) -> Result<Vec<StoredBlob>, StoreError> {
        let mut owned = Vec::with_capacity(records.len());
        for r in records {
            let key = format!("{}@{}", r.module, r.version);
            if key.len() > MAX_KEY_LEN {
                return Err(StoreError::KeyTooLong);
            }
            owned.push(Owned { kind: r.kind, key, payload: r.payload, sha256: r.sha256 });
        }
        let (tx, rx) = local_channel::new_bounded(1);
        self.waiting.borrow_mut().push(Waiting { records: owned, done: tx });
        {
            let _turn = self.turn.acquire_permit(1).await.map_err(|_| StoreError::Closed)?;
            // Everything queued by now, ours included unless an earlier
            // turn took it already.
            let batch = std::mem::take(&mut *self.waiting.borrow_mut());
            if !batch.is_empty() {
                self.write_batch(batch).await;
            }
        }
        rx.recv().await.unwrap_or(Err(StoreError::Closed))
    }

    /// Writes the records of every waiting append in one go and tells each
    /// its blobs (or the error, to all of them).
    async fn write_batch(&self, batch: Vec<Waiting>) {
        let need: u64 = batch.iter().flat_map(|w| &w.records).map(Owned::len).sum();
        let now = std::time::Instant::now();
        let written = match self.backoff_until.get() {
            _ if self.read_only.get() => Err(StoreError::ReadOnly),
            Some(until) if now < until => Err(StoreError::BackingOff(until - now)),
            _ => {
                self.writes.set(self.writes.get() + 1);
                let written = self.write_all(&batch, need).await;
                match &written {
                    Ok(_) => {
                        self.backoff_until.set(None);
                        self.next_backoff.set(FIRST_BACKOFF);
                    }
                    // Nothing was tried: no reason to hold off the next write.
                    Err(StoreError::Full) => {}
                    Err(e) => {
                        let wait = self.next_backoff.get();
                        log::warn!("store writes back off for {wait:?} after: {e}");
                        self.backoff_until.set(Some(std::time::Instant::now() + wait));
                        self.next_backoff.set((wait * 2).min(MAX_BACKOFF));
                    }
                }
                written
            }
        };
        match written {
            Ok(mut blobs) => {
                for w in batch.into_iter().rev() {
                    let mine = blobs.split_off(blobs.len() - w.records.len());
                    let _ = w.done.try_send(Ok(mine));
                }
            }
            Err(e) => {
                for w in batch {
                    let _ = w.done.try_send(Err(e.again()));
                }
            }
        }
    }

    async fn write_all(&self, batch: &[Waiting], need: u64) -> Result<Vec<StoredBlob>, StoreError> {
        let victims = if self.ledger.excess_with(need) > 0 { self.make_room(need).await? } else { Vec::new() };
        let carried: u64 = victims.iter().flat_map(|v| &v.carried).map(Carried::record_len).sum();
        let current = self.active.borrow().clone();
        let active = match current {
            // A segment cut under us is left for a new one.
            Some(a) if a.next + need + carried <= a.capacity && !a.segment.is_cut() => a,
            _ => match self.rotate(need + carried).await {
                Ok(a) => a,
                Err(e) => {
                    self.give_back(victims);
                    return Err(e);
                }
            },
        };
        let offset = active.next;
        let file = active.file.clone();
        let stored_at = unix_ms();
        let records: Vec<Owned> = batch.iter().flat_map(|w| w.records.iter().cloned()).collect();
        let for_disk = records.clone();
        let (ledger, indexes, dir, segment) = (self.ledger.clone(), self.indexes.clone(), self.dir.clone(), active.segment.clone());
        let written = glommio::executor()
            .spawn_blocking(move || {
                let copies = victims.iter().flat_map(|v| &v.carried).map(|c| NewRecord {
                    kind: c.kind,
                    key: &c.key,
                    payload: c.payload(),
                    sha256: c.sha256,
                    stored_at_ms: c.stored_at_ms,
                });
                let new = for_disk.iter().map(|r| NewRecord {
                    kind: r.kind,
                    key: &r.key,
                    payload: &r.payload,
                    sha256: r.sha256,
                    stored_at_ms: stored_at,
                });
                let all: Vec<NewRecord<'_>> = copies.chain(new).collect();
                // A failed write leaves partial bytes after `offset`: cut
                // them, so the segment can take the next write where this
                // one should have gone (no new file per failure).
                let len = match segment::write_records(&file, offset, &all) {
                    Ok(len) => len,
                    Err(e) => return Err((e, file.set_len(offset).is_ok(), victims)),
                };
                drop(all);
                ledger.grew(len);
                finish_eviction(victims, &segment, offset, &indexes, &ledger, &dir);
                Ok(len)
            })
            .await;
        match written {
            Ok(len) => {
                if let Some(a) = self.active.borrow_mut().as_mut() {
                    a.next = offset + len;
                }
                let mut at = offset + carried;
                let mut blobs = Vec::with_capacity(records.len());
                for r in &records {
                    let data_offset = at + HEADER_LEN as u64 + r.key.len() as u64;
                    let blob = StoredBlob::new(active.segment.clone(), data_offset, r.payload.len() as u64, r.sha256, stored_at)
                        .ok_or(StoreError::Corrupt("record outside its segment map"))?;
                    blobs.push(blob);
                    at += r.len();
                }
                Ok(blobs)
            }
            Err((e, cut_back, victims)) => {
                if !cut_back {
                    self.active.borrow_mut().take();
                }
                self.give_back(victims);
                Err(StoreError::Io(e))
            }
        }
    }

    /// Evicts sealed segments until `need` more bytes fit under the bound:
    /// their unseen blobs leave the index now, their carried records are
    /// for the write that follows. [`StoreError::Full`] when evicting every
    /// candidate would not make the room (nothing is stored, the fill
    /// passes through).
    async fn make_room(&self, need: u64) -> Result<Vec<Victim>, StoreError> {
        let (ledger, indexes, shard_of) = (self.ledger.clone(), self.indexes.clone(), self.shard_of.clone());
        glommio::executor()
            .spawn_blocking(move || {
                let excess = ledger.excess_with(need);
                let mut victims: Vec<Victim> = Vec::new();
                while victims.iter().map(Victim::frees).sum::<u64>() < excess {
                    let Some((segment, len)) = ledger.take_victim() else {
                        for v in victims {
                            ledger.give_back(v.segment, v.len);
                        }
                        return Err(StoreError::Full);
                    };
                    victims.push(evict::plan(segment, len, &indexes, &shard_of, &ledger));
                }
                Ok(victims)
            })
            .await
    }

    fn give_back(&self, victims: Vec<Victim>) {
        for v in victims {
            self.ledger.give_back(v.segment, v.len);
        }
    }

    /// Seals the open segment and writes its index snapshot, so the next
    /// start-up neither verifies nor scans it (a clean shutdown). Waits for
    /// the write under way; a later append opens a new segment.
    pub async fn close(&self) {
        let Ok(_turn) = self.turn.acquire_permit(1).await else { return };
        let Some(old) = self.active.borrow_mut().take() else { return };
        if self.read_only.get() {
            return;
        }
        let (dir, ledger) = (self.dir.clone(), self.ledger.clone());
        let _ = glommio::executor()
            .spawn_blocking(move || match segment::write_seal(&old.file, old.next) {
                Ok(seal) => {
                    let snapshot = super::snapshot::write(&dir, &old.segment, old.next + seal);
                    ledger.grew(seal + snapshot);
                    ledger.sealed(old.segment, old.next + seal + snapshot);
                }
                Err(e) => log::warn!("could not seal segment {:016x} at shutdown: {e}", old.segment.id()),
            })
            .await;
    }

    /// Seals the active segment (if any) and opens a new one with room for `need` bytes.
    async fn rotate(&self, need: u64) -> Result<Active, StoreError> {
        let old = self.active.borrow_mut().take();
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        // A blob larger than a segment gets a segment of its own size.
        let capacity = self.segment_bytes.max(need);
        let (dir, ledger) = (self.dir.clone(), self.ledger.clone());
        let active = glommio::executor()
            .spawn_blocking(move || -> std::io::Result<Active> {
                if let Some(old) = old {
                    let len = match segment::write_seal(&old.file, old.next) {
                        Ok(seal) => {
                            ledger.grew(seal);
                            old.next + seal
                        }
                        Err(e) => {
                            // Unsealed segments are fully verified at the next start-up: slower, still safe.
                            log::warn!("could not seal segment {:016x}: {e}", old.segment.id());
                            old.next
                        }
                    };
                    let snapshot = super::snapshot::write(&dir, &old.segment, len);
                    ledger.grew(snapshot);
                    // Its snapshot goes with it, and counts with it.
                    ledger.sealed(old.segment, len + snapshot);
                }
                let file = segment::create(&dir, id)?;
                let segment = Arc::new(Segment::map(id, &file, capacity)?);
                Ok(Active { segment, file: Arc::new(file), next: 0, capacity })
            })
            .await
            .map_err(StoreError::Io)?;
        *self.active.borrow_mut() = Some(active.clone());
        Ok(active)
    }
}

/// After the write that holds their carried records: points the index at
/// the copies (unless a refill or a purge came in between), then deletes
/// the victims' files. A reader still holding a victim keeps its map.
fn finish_eviction(victims: Vec<Victim>, segment: &Arc<Segment>, offset: u64, indexes: &[Index], ledger: &Ledger, dir: &std::path::Path) {
    let mut at = offset;
    for v in victims {
        for c in &v.carried {
            let data_offset = at + HEADER_LEN as u64 + c.key.len() as u64;
            at += c.record_len();
            let (module, version) = c.module_version();
            let was = (v.segment.id(), c.data_offset);
            let copy = StoredBlob::new(segment.clone(), data_offset, c.len, c.sha256, c.stored_at_ms);
            if let (Some(shard), Some(copy)) = (c.shard, copy) {
                if let Some(index) = indexes.get(shard) {
                    index.replace_record(module, version, c.kind, was, copy);
                }
            }
            ledger.carried_records.fetch_add(1, Ordering::Relaxed);
            ledger.carried_bytes.fetch_add(c.len, Ordering::Relaxed);
        }
        let name = segment::segment_file_name(v.segment.id());
        // The snapshot first: one left behind is only deleted at start-up.
        let _ = std::fs::remove_file(super::snapshot::snapshot_path(dir, v.segment.id()));
        match std::fs::remove_file(segment::segment_path(dir, v.segment.id())) {
            Ok(()) => {
                log::info!("evicted segment {name} ({} bytes, {} record(s) carried forward)", v.len, v.carried.len());
                ledger.evicted(v.len);
            }
            // Its blobs have left the index either way; the file is counted until it goes.
            Err(e) => log::error!("evicting segment {name}: could not delete it: {e}"),
        }
    }
}
