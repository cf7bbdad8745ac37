//! The per-core segment writer: appends records to this core's active
//! segment, one write (of one record or a few kept together) at a time,
//! and hands back the published blobs.
//!
//! Each core owns one writer, so appends need no lock shared between cores;
//! a core-local semaphore keeps this core's appends in file order (a record
//! is never written behind a later one, so a torn write can only be a tail).
//! Disk I/O runs on the executor's blocking pool, never on the reactor. The
//! writer never publishes: the caller inserts into the index after `append`
//! returns, which is after the record is synced.

use std::cell::RefCell;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use glommio::sync::Semaphore;

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
    active: RefCell<Option<Active>>,
    turn: Semaphore,
}

impl SegmentWriter {
    pub fn new(dir: PathBuf, ids: Arc<AtomicU64>, segment_bytes: u64) -> SegmentWriter {
        SegmentWriter { dir, ids, segment_bytes, active: RefCell::new(None), turn: Semaphore::new(1) }
    }

    /// Durably appends one record. On any I/O error the active segment is
    /// abandoned (its tail may now be garbage; recovery will cut it) and the
    /// next append starts a fresh segment.
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
    /// segment, for the syncs of one record: a module file and its go.sum
    /// hash are kept together, or neither is.
    pub async fn append_all(&self, records: Vec<Append<'_>>) -> Result<Vec<StoredBlob>, StoreError> {
        let _turn = self.turn.acquire_permit(1).await.map_err(|_| StoreError::Closed)?;
        let mut keys = Vec::with_capacity(records.len());
        let mut need = 0;
        for r in &records {
            let key = format!("{}@{}", r.module, r.version);
            if key.len() > MAX_KEY_LEN {
                return Err(StoreError::KeyTooLong);
            }
            need += align_up(HEADER_LEN as u64 + key.len() as u64 + r.payload.len() as u64);
            keys.push(key);
        }
        let current = self.active.borrow().clone();
        let active = match current {
            Some(a) if a.next + need <= a.capacity => a,
            _ => self.rotate(need).await?,
        };
        let offset = active.next;
        let file = active.file.clone();
        let stored_at = unix_ms();
        let payloads: Vec<(RecordKind, bytes::Bytes, [u8; 32])> = records.iter().map(|r| (r.kind, r.payload.clone(), r.sha256)).collect();
        let written_keys = keys.clone();
        let written = glommio::executor()
            .spawn_blocking(move || {
                let new: Vec<NewRecord<'_>> = payloads
                    .iter()
                    .zip(&written_keys)
                    .map(|((kind, payload, sha256), key)| NewRecord { kind: *kind, key, payload, sha256: *sha256 })
                    .collect();
                segment::write_records(&file, offset, &new, stored_at)
            })
            .await;
        match written {
            Ok(len) => {
                if let Some(a) = self.active.borrow_mut().as_mut() {
                    a.next = offset + len;
                }
                let mut at = offset;
                let mut blobs = Vec::with_capacity(records.len());
                for (r, key) in records.iter().zip(&keys) {
                    let data_offset = at + HEADER_LEN as u64 + key.len() as u64;
                    let blob = StoredBlob::new(active.segment.clone(), data_offset, r.payload.len() as u64, r.sha256, stored_at)
                        .ok_or(StoreError::Corrupt("record outside its segment map"))?;
                    blobs.push(blob);
                    at += align_up(HEADER_LEN as u64 + key.len() as u64 + r.payload.len() as u64);
                }
                Ok(blobs)
            }
            Err(e) => {
                self.active.borrow_mut().take();
                Err(StoreError::Io(e))
            }
        }
    }

    /// Seals the active segment (if any) and opens a new one with room for `need` bytes.
    async fn rotate(&self, need: u64) -> Result<Active, StoreError> {
        let old = self.active.borrow_mut().take();
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        // A blob larger than a segment gets a segment of its own size.
        let capacity = self.segment_bytes.max(need);
        let dir = self.dir.clone();
        let active = glommio::executor()
            .spawn_blocking(move || -> std::io::Result<Active> {
                if let Some(old) = old {
                    if let Err(e) = segment::write_seal(&old.file, old.next) {
                        // Unsealed segments are fully verified at the next start-up: slower, still safe.
                        log::warn!("could not seal segment {:016x}: {e}", old.segment.id());
                    }
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
