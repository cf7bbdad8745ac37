//! Eviction of one segment: which of its records outlive it.
//!
//! Tombstones and the index's go.sum hashes are always carried forward
//! (copied into the evicting writer's segment, their stored time kept):
//! they are small, and losing one would bring a purged blob back after a
//! restart, or let a changed upstream file in unnoticed.
//!
//! Beyond those, a victim gives at most three quarters of itself
//! ([`CARRY_SHARE_QUARTERS`]) to copies, so every eviction frees at least
//! a quarter of a segment and a store whose every blob is hot still makes
//! room (the least recently hit segment goes, mostly) rather than refusing
//! writes or rewriting itself. (Half was tried: on the hit-ratio replay it
//! dropped enough hot blobs that their refills cost 0.3 points of hit
//! ratio and more copying than any run without it; three quarters is
//! within the replay's run-to-run spread of no share at all.) Within that share, in this order:
//! - a record the index still serves from the victim and that was served
//!   since it was stored there, as segcache's merge keeps the items still
//!   in use (in file order: one flag per record says no more);
//! - the stale-if-error reserve (the last good `list`, `@latest`, query
//!   and checksum-database answers), served or not, newest first: fresh
//!   copies are answered from memory, so "served since stored" says
//!   nothing about them, and the day an upstream fails is the day they are
//!   wanted.
//!
//! What does not fit leaves the index, as an unserved blob does, and is
//! fetched again when next asked for. Every carried payload is hashed
//! against its header first (only those that fit are hashed): eviction
//! never launders a damaged byte into a record this process trusts. This
//! module plans and edits the index; it never writes a file (the writer
//! that needs the room does the I/O).

use std::sync::Arc;

use super::index::Index;
use super::ledger::Ledger;
use super::record::{self, align_up, RecordKind, HEADER_LEN};
use super::segment::Segment;

/// Records other than tombstones and go.sum hashes are carried only while
/// all that is carried out of a victim stays within this many quarters of it.
const CARRY_SHARE_QUARTERS: u64 = 3;

/// Bytes of victims that free at least `bytes` between them, each freeing
/// what its copies may not take (tombstones and go.sum hashes aside).
pub fn victim_bytes_to_free(bytes: u64) -> u64 {
    bytes.saturating_mul(4).div_ceil(4 - CARRY_SHARE_QUARTERS)
}

/// Which index shard holds a key (the runtime's routing, kept by the store).
pub type ShardOf = Arc<dyn Fn(&str, &str, RecordKind) -> usize + Send + Sync>;

/// A record to copy forward out of a victim.
pub struct Carried {
    /// Holds the victim mapped until the copy is written.
    pub victim: Arc<Segment>,
    pub kind: RecordKind,
    pub key: String,
    pub data_offset: u64,
    pub len: u64,
    pub sha256: [u8; 32],
    pub stored_at_ms: u64,
    /// The index shard that serves it from the victim, to point at the copy
    /// once written (`None` for a tombstone, which no index holds).
    pub shard: Option<usize>,
}

impl Carried {
    pub fn payload(&self) -> &[u8] {
        self.victim.get(self.data_offset, self.len).unwrap_or_default()
    }

    /// Bytes the copy takes in a segment.
    pub fn record_len(&self) -> u64 {
        align_up(HEADER_LEN as u64 + self.key.len() as u64 + self.len)
    }

    /// The key's module and version (a tombstone's key is one too).
    pub fn module_version(&self) -> (&str, &str) {
        record::split_key(&self.key).unwrap_or((&self.key, ""))
    }
}

/// A segment chosen for eviction, and what of it is carried.
pub struct Victim {
    pub segment: Arc<Segment>,
    /// Its file's length and its snapshot's, as counted in the ledger.
    pub len: u64,
    pub carried: Vec<Carried>,
}

/// Walks `segment` (a sealed victim of `len` bytes), drops from the index
/// what it serves from there unseen since, and returns what must be carried.
pub fn plan(segment: Arc<Segment>, len: u64, indexes: &[Index], shard_of: &ShardOf, ledger: &Ledger) -> Victim {
    let mut carried = Vec::new();
    // Go.sum hashes are carried whatever the share; the served and the
    // reserve as far as the share left after the records before them allows.
    let mut go_sums = Vec::new();
    let mut served = Vec::new();
    let mut reserve = Vec::new();
    let mut dropped = 0u64;
    if !segment.is_cut() {
        for r in segment.records(len) {
            let keep = |shard: Option<usize>| Carried {
                victim: segment.clone(),
                kind: r.kind,
                key: r.key.to_string(),
                data_offset: r.data_offset,
                len: r.payload.len() as u64,
                sha256: r.sha256,
                stored_at_ms: r.stored_at_ms,
                shard,
            };
            let whole = || record::payload_sha256(r.payload) == r.sha256;
            if r.kind == RecordKind::Tombstone {
                if whole() {
                    carried.push(keep(None));
                } else {
                    log::error!("evicting segment {:016x}: a damaged tombstone for {} is lost", segment.id(), r.key);
                }
                continue;
            }
            let Some((module, version)) = record::split_key(r.key) else { continue };
            let shard = shard_of(module, version, r.kind) % indexes.len().max(1);
            let Some(index) = indexes.get(shard) else { continue };
            let here = (segment.id(), r.data_offset);
            // Superseded, withdrawn or never published: nothing serves it.
            let Some(was_hit) = index.read(module, version, r.kind, |e| (e.blob.record_id() == here).then(|| e.was_hit())).flatten() else {
                continue;
            };
            if r.kind == RecordKind::GoSum {
                go_sums.push(keep(Some(shard)));
            } else if was_hit {
                served.push(keep(Some(shard)));
            } else if r.kind.is_stale_reserve() {
                reserve.push(keep(Some(shard)));
            } else if index.remove_record(module, version, r.kind, here) {
                dropped += 1;
            }
        }
    }
    // The newest answers first: an answer carried before must not keep a
    // fresher one out for good.
    reserve.sort_unstable_by_key(|c| std::cmp::Reverse(c.stored_at_ms));
    let mut room = (len / 4 * CARRY_SHARE_QUARTERS).saturating_sub(carried.iter().map(Carried::record_len).sum());
    let within_share = served.into_iter().chain(reserve).map(|c| (c, false));
    for (c, always) in go_sums.into_iter().map(|c| (c, true)).chain(within_share) {
        // Only what fits is hashed: the rest is dropped either way.
        let fits = always || c.record_len() <= room;
        let whole = fits && record::payload_sha256(c.payload()) == c.sha256;
        if whole {
            room = room.saturating_sub(c.record_len());
            carried.push(c);
            continue;
        }
        if fits {
            log::error!("evicting segment {:016x}: {} ({}) fails its checksum; dropped", segment.id(), c.key, c.kind.label());
        }
        let (module, version) = c.module_version();
        let index = c.shard.and_then(|shard| indexes.get(shard));
        if index.is_some_and(|index| index.remove_record(module, version, c.kind, (segment.id(), c.data_offset))) {
            dropped += 1;
        }
    }
    ledger.dropped_blobs.fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
    Victim { segment, len, carried }
}
