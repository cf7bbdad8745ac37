//! The store's size bound (`--max-store-size`): the bytes every segment
//! file holds, which sealed segments may be evicted, and which goes next.
//!
//! Owns the accounting and the choice of victim, nothing else: it never
//! reads a record, never touches an index and never does I/O (what a
//! victim's records become is [`super::evict`]'s, and the writer that
//! needs the room does the work). Its mutex is taken only to seal a
//! segment or to choose a victim, never by a hit.
//!
//! Two things keep writers on different cores from passing the bound
//! together: a write claims its room ([`Claim`]) before it starts, against
//! the bytes on disk and every claim under way; and one writer at a time
//! evicts ([`EvictionTurn`]), so only one victim's carried copies are ever
//! on disk beside the victim. That copy is the "within one segment" of the
//! bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::segment::Segment;

/// The segments of a store and their bytes on disk.
pub struct Ledger {
    /// The bound (`u64::MAX`: none, the store only grows); a reload may change it.
    max_bytes: AtomicU64,
    /// Bytes of every segment file this store holds (sealed and active), as
    /// written: what the bound is held against.
    on_disk: AtomicU64,
    /// Bytes claimed by writes under way and not yet in `on_disk`.
    claimed: AtomicU64,
    /// Held by the writer that is evicting (see [`EvictionTurn`]).
    evicting: AtomicBool,
    /// Sealed segments, by id, with their length: the candidates for
    /// eviction. A segment chosen is taken out, so two writers never evict
    /// the same one.
    sealed: Mutex<HashMap<u64, (Arc<Segment>, u64)>>,
    /// What eviction did, for the metrics.
    pub evicted_segments: AtomicU64,
    pub evicted_bytes: AtomicU64,
    /// Blobs an evicted segment held that were dropped (fetched again when asked for).
    pub dropped_blobs: AtomicU64,
    /// Records copied forward out of an evicted segment (hit since stored,
    /// or a tombstone or go.sum hash, which are always kept), and their bytes.
    pub carried_records: AtomicU64,
    pub carried_bytes: AtomicU64,
}

impl Ledger {
    pub fn new(max_bytes: Option<u64>) -> Ledger {
        Ledger {
            max_bytes: AtomicU64::new(max_bytes.unwrap_or(u64::MAX)),
            on_disk: AtomicU64::new(0),
            claimed: AtomicU64::new(0),
            evicting: AtomicBool::new(false),
            sealed: Mutex::default(),
            evicted_segments: AtomicU64::new(0),
            evicted_bytes: AtomicU64::new(0),
            dropped_blobs: AtomicU64::new(0),
            carried_records: AtomicU64::new(0),
            carried_bytes: AtomicU64::new(0),
        }
    }

    pub fn max_bytes(&self) -> Option<u64> {
        Some(self.max_bytes.load(Ordering::Relaxed)).filter(|&m| m != u64::MAX)
    }

    /// Sets the bound (`None`: none). The next write past it evicts.
    pub fn set_max_bytes(&self, max_bytes: Option<u64>) {
        self.max_bytes.store(max_bytes.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Bytes of segment files on disk, as this store wrote or found them.
    pub fn on_disk(&self) -> u64 {
        self.on_disk.load(Ordering::Relaxed)
    }

    /// Claims room for a write of `need` bytes, if it fits under the bound
    /// beside the bytes on disk and every other claim under way (always,
    /// with no bound). `None`: room must be made first.
    pub fn try_claim(self: &Arc<Self>, need: u64) -> Option<Claim> {
        let max = self.max_bytes.load(Ordering::Relaxed);
        // Acquire: a claim seen released has its bytes seen in `on_disk`.
        let mut claimed = self.claimed.load(Ordering::Acquire);
        loop {
            // `on_disk` read apart from `claimed` can only be stale high:
            // a committed claim adds to it before it leaves `claimed`, and
            // eviction only lowers it. A stale read refuses, never overfills.
            if self.on_disk().saturating_add(claimed).saturating_add(need) > max {
                return None;
            }
            match self.claimed.compare_exchange_weak(claimed, claimed + need, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(Claim { ledger: self.clone(), bytes: need }),
                Err(now) => claimed = now,
            }
        }
    }

    /// The eviction turn, unless another writer holds it.
    pub fn try_eviction_turn(self: &Arc<Self>) -> Option<EvictionTurn> {
        self.evicting.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).ok()?;
        Some(EvictionTurn { ledger: self.clone() })
    }

    /// Bytes written outside any claim: the copies an eviction carries (the
    /// turn's slack over the bound), and the seals and snapshots of segments.
    pub fn grew(&self, bytes: u64) {
        self.on_disk.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A sealed segment of `len` bytes (already counted by `grew`) becomes
    /// a candidate for eviction.
    pub fn sealed(&self, segment: Arc<Segment>, len: u64) {
        self.candidates().insert(segment.id(), (segment, len));
    }

    /// Takes the next victim out of the candidates: the segment whose blobs
    /// were served least recently (the oldest first among equals).
    pub fn take_victim(&self) -> Option<(Arc<Segment>, u64)> {
        let mut sealed = self.candidates();
        let id = sealed.iter().min_by_key(|(id, (seg, _))| (seg.last_hit_ms(), **id)).map(|(id, _)| *id)?;
        sealed.remove(&id)
    }

    /// A victim whose eviction failed (its records could not be carried):
    /// a candidate again.
    pub fn give_back(&self, segment: Arc<Segment>, len: u64) {
        self.sealed(segment, len);
    }

    /// A victim's file is gone.
    pub fn evicted(&self, len: u64) {
        self.on_disk.fetch_sub(len.min(self.on_disk()), Ordering::Relaxed);
        self.evicted_segments.fetch_add(1, Ordering::Relaxed);
        self.evicted_bytes.fetch_add(len, Ordering::Relaxed);
    }

    /// Whether `need` more bytes would fit under the bound once every
    /// candidate is evicted (the open segments and the claims under way
    /// stay): if not, evicting anything is in vain.
    pub fn could_fit(&self, need: u64) -> bool {
        let kept = (self.on_disk() + self.claimed.load(Ordering::Acquire)).saturating_sub(self.sealed_bytes());
        kept.saturating_add(need) <= self.max_bytes.load(Ordering::Relaxed)
    }

    /// Bytes of the sealed segments that are candidates now.
    pub fn sealed_bytes(&self) -> u64 {
        self.candidates().values().map(|(_, len)| len).sum()
    }

    /// How many sealed segments are candidates now.
    pub fn sealed_segments(&self) -> usize {
        self.candidates().len()
    }

    fn candidates(&self) -> MutexGuard<'_, HashMap<u64, (Arc<Segment>, u64)>> {
        // Every change is one insert or remove: a panicked holder left the map whole.
        self.sealed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Room for one write under the bound, held from before the write starts
/// until its bytes are counted on disk ([`Claim::commit`]); dropped
/// uncommitted (the write failed), the room is free again.
pub struct Claim {
    ledger: Arc<Ledger>,
    bytes: u64,
}

impl Claim {
    /// The write is on disk and took `written` bytes (at most the claim:
    /// the last record's padding is not written).
    pub fn commit(self, written: u64) {
        // On disk first, then out of the claims: `try_claim` may see both
        // for a moment, never neither.
        self.ledger.grew(written);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.ledger.claimed.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The one writer allowed to evict now: it copies a victim's carried
/// records, then deletes the victim, one victim at a time, so the bytes on
/// disk pass the bound by at most one victim's carried copies. Not a lock
/// a hit ever waits on: only a write that found no room asks for it, and a
/// writer that finds it taken waits on a timer, never blocking its core.
pub struct EvictionTurn {
    ledger: Arc<Ledger>,
}

impl Drop for EvictionTurn {
    fn drop(&mut self) {
        self.ledger.evicting.store(false, Ordering::Release);
    }
}
