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
//! Under a size bound the writer that needs room claims it before it
//! writes, and makes it first if it must: holding the store's eviction
//! turn, it evicts whole sealed segments one at a time (see
//! [`super::ledger`] for the choice and the claims, [`super::evict`] for
//! what outlives a victim). For each victim it writes the carried records
//! into its active segment, syncs them, points the index at the copies,
//! and only then deletes the victim's file: a crash at any point leaves
//! every record in the victim or its copy, and the store past its bound by
//! one victim's copies at most. A blob being sent from a victim keeps its
//! map (and the file's blocks) until the send is done.

use std::cell::RefCell;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use glommio::channels::local_channel::{self, LocalSender};
use glommio::sync::Semaphore;

use super::evict::{self, Carried, ShardOf, Victim};
use super::index::Index;
use super::ledger::{Claim, Ledger};
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

/// How long a writer that needs room waits before asking again for the
/// eviction turn another writer holds.
const EVICTION_TURN_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

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
        let claim = self.claim_room(need).await?;
        let active = self.active_with_room(need).await?;
        let offset = active.next;
        let file = active.file.clone();
        let stored_at = unix_ms();
        let records: Vec<Owned> = batch.iter().flat_map(|w| w.records.iter().cloned()).collect();
        let for_disk = records.clone();
        let written = glommio::executor()
            .spawn_blocking(move || {
                let new: Vec<NewRecord<'_>> = for_disk
                    .iter()
                    .map(|r| NewRecord { kind: r.kind, key: &r.key, payload: &r.payload, sha256: r.sha256, stored_at_ms: stored_at })
                    .collect();
                let len = write_or_cut_back(&file, offset, &new)?;
                // Here, not after the await: bytes written are counted even
                // if the append waiting for them is dropped meanwhile.
                claim.commit(len);
                Ok(len)
            })
            .await;
        self.wrote(offset, written)?;
        let mut at = offset;
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

    /// The active segment, if `need` more bytes fit in it; else a new one.
    async fn active_with_room(&self, need: u64) -> Result<Active, StoreError> {
        let current = self.active.borrow().clone();
        match current {
            // A segment cut under us is left for a new one.
            Some(a) if a.next + need <= a.capacity && !a.segment.is_cut() => Ok(a),
            _ => self.rotate(need).await,
        }
    }

    /// Claims room for `need` bytes under the bound, evicting sealed
    /// segments (least recently hit first) until it fits. Evicting takes
    /// the store's eviction turn; a writer that finds it taken waits a
    /// moment and tries again (the other writer's eviction may have made
    /// its room too). [`StoreError::Full`] when evicting every candidate
    /// would not make the room, or when evicting did not (copies of
    /// tombstones and go.sum hashes took it): nothing is stored, the fill
    /// passes through.
    async fn claim_room(&self, need: u64) -> Result<Claim, StoreError> {
        loop {
            if let Some(claim) = self.ledger.try_claim(need) {
                return Ok(claim);
            }
            let Some(_turn) = self.ledger.try_eviction_turn() else {
                glommio::timer::sleep(EVICTION_TURN_WAIT).await;
                continue;
            };
            // Evicting would not make the room (the bound smaller than the
            // write, or the open segments and the writes under way taking
            // the rest): refused before a single victim is lost for nothing.
            // Asked with the turn held, when no victim is half evicted.
            if !self.ledger.could_fit(need) {
                return Err(StoreError::Full);
            }
            // Segments this turn seals (filled with carried copies) become
            // candidates too; past the victims that free the whole store at
            // the least each must free, evicting more would only move
            // tombstones and go.sum hashes around.
            let mut evict_at_most = evict::victim_bytes_to_free(self.ledger.on_disk());
            loop {
                if let Some(claim) = self.ledger.try_claim(need) {
                    return Ok(claim);
                }
                if evict_at_most == 0 {
                    return Err(StoreError::Full);
                }
                evict_at_most = evict_at_most.saturating_sub(self.evict_one().await?);
            }
        }
    }

    /// Evicts the next victim: its unseen blobs leave the index, its
    /// carried records are written (and synced) into this writer's active
    /// segment, the index is pointed at the copies, and only then is the
    /// victim's file deleted; returns the victim's length.
    /// [`StoreError::Full`] when there is no candidate left.
    async fn evict_one(&self) -> Result<u64, StoreError> {
        let (ledger, indexes, shard_of) = (self.ledger.clone(), self.indexes.clone(), self.shard_of.clone());
        let victim = glommio::executor()
            .spawn_blocking(move || {
                let (segment, len) = ledger.take_victim()?;
                Some(evict::plan(segment, len, &indexes, &shard_of, &ledger))
            })
            .await
            .ok_or(StoreError::Full)?;
        let carried: u64 = victim.carried.iter().map(Carried::record_len).sum();
        let (ledger, indexes, dir) = (self.ledger.clone(), self.indexes.clone(), self.dir.clone());
        let evicted = victim.len;
        if carried == 0 {
            glommio::executor().spawn_blocking(move || delete_victim(victim, &ledger, &dir)).await;
            return Ok(evicted);
        }
        let active = match self.active_with_room(carried).await {
            Ok(a) => a,
            Err(e) => {
                self.ledger.give_back(victim.segment, victim.len);
                return Err(e);
            }
        };
        let (offset, file, segment) = (active.next, active.file.clone(), active.segment.clone());
        let written = glommio::executor()
            .spawn_blocking(move || {
                let copies: Vec<NewRecord<'_>> = victim
                    .carried
                    .iter()
                    .map(|c| NewRecord { kind: c.kind, key: &c.key, payload: c.payload(), sha256: c.sha256, stored_at_ms: c.stored_at_ms })
                    .collect();
                let written = write_or_cut_back(&file, offset, &copies);
                drop(copies);
                let len = match written {
                    Ok(len) => len,
                    Err(e) => {
                        ledger.give_back(victim.segment, victim.len);
                        return Err(e);
                    }
                };
                ledger.grew(len);
                point_index_at_copies(&victim, &segment, offset, &indexes, &ledger);
                delete_victim(victim, &ledger, &dir);
                Ok(len)
            })
            .await;
        self.wrote(offset, written)?;
        Ok(evicted)
    }

    /// After a write into the active segment from `offset` (see
    /// [`write_or_cut_back`]): the segment's end moves past the bytes
    /// written, or, when a failed write could not be cut off it, the
    /// segment is left for a new one.
    fn wrote(&self, offset: u64, written: Result<u64, (std::io::Error, bool)>) -> Result<(), StoreError> {
        match written {
            Ok(len) => {
                if let Some(a) = self.active.borrow_mut().as_mut() {
                    a.next = offset + len;
                }
                Ok(())
            }
            Err((e, cut_back)) => {
                if !cut_back {
                    self.active.borrow_mut().take();
                }
                Err(StoreError::Io(e))
            }
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

/// Writes `records` from `offset` of an active segment's file. A failed
/// write leaves partial bytes after `offset`: they are cut off again, so
/// the segment can take the next write where this one should have gone (no
/// new file per failure); the error says whether that cut worked.
fn write_or_cut_back(file: &File, offset: u64, records: &[NewRecord<'_>]) -> Result<u64, (std::io::Error, bool)> {
    segment::write_records(file, offset, records).map_err(|e| (e, file.set_len(offset).is_ok()))
}

/// After the write that holds a victim's carried records, from `offset`
/// of `segment`: points the index at the copies (unless a refill or a
/// purge came in between).
fn point_index_at_copies(victim: &Victim, segment: &Arc<Segment>, offset: u64, indexes: &[Index], ledger: &Ledger) {
    let mut at = offset;
    for c in &victim.carried {
        let data_offset = at + HEADER_LEN as u64 + c.key.len() as u64;
        at += c.record_len();
        let (module, version) = c.module_version();
        let was = (victim.segment.id(), c.data_offset);
        let copy = StoredBlob::new(segment.clone(), data_offset, c.len, c.sha256, c.stored_at_ms);
        if let (Some(shard), Some(copy)) = (c.shard, copy) {
            if let Some(index) = indexes.get(shard) {
                index.replace_record(module, version, c.kind, was, copy);
            }
        }
        ledger.carried_records.fetch_add(1, Ordering::Relaxed);
        ledger.carried_bytes.fetch_add(c.len, Ordering::Relaxed);
    }
}

/// Deletes a victim's files, once nothing of it is left to carry. A reader
/// still holding the victim keeps its map.
fn delete_victim(victim: Victim, ledger: &Ledger, dir: &std::path::Path) {
    let name = segment::segment_file_name(victim.segment.id());
    // The snapshot first: one left behind is only deleted at start-up.
    let _ = std::fs::remove_file(super::snapshot::snapshot_path(dir, victim.segment.id()));
    match std::fs::remove_file(segment::segment_path(dir, victim.segment.id())) {
        Ok(()) => {
            log::info!("evicted segment {name} ({} bytes, {} record(s) carried forward)", victim.len, victim.carried.len());
            ledger.evicted(victim.len);
        }
        // Its blobs have left the index either way; the file is counted until it goes.
        Err(e) => log::error!("evicting segment {name}: could not delete it: {e}"),
    }
}
