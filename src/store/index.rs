//! The per-shard index: (module, version, kind) → published blob.
//!
//! One index per core. Only the owning core inserts (fills are single-flight
//! on the owner), but every core may read it: lookups are lock-free
//! (crossbeam's epoch-based skip list), so a cache hit costs neither a lock
//! nor a hop to another core. The index never decides what to store and never
//! holds an entry whose bytes are not durable.
//!
//! Changes are serialised by a mutex of the index's own, taken only by
//! writers (the owning core's fills and purges, and eviction, which may run
//! on any core's writer): a hit never takes it.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_skiplist::SkipMap;

use super::record::RecordKind;
use super::segment::StoredBlob;

/// The in-memory key hash. Seeds are fixed so every core computes the same
/// value; it never reaches the disk, so the hash function may change freely.
fn key_hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344, 0xa409_3822_299f_31d0, 0x082e_fa98_ec4e_6c89)
}

pub fn key_hash(module: &str, version: &str, kind: RecordKind) -> u64 {
    let mut h = key_hasher().build_hasher();
    h.write(module.as_bytes());
    h.write_u8(0);
    h.write(version.as_bytes());
    h.write_u8(kind as u8);
    h.finish()
}

/// One published blob and, on a 64-bit hash collision, the next one.
#[derive(Debug)]
pub struct Entry {
    /// "module@version"; `module_len` splits it.
    key: Box<str>,
    module_len: usize,
    kind: RecordKind,
    pub blob: StoredBlob,
    /// Served since it was published in its segment: eviction carries it
    /// forward into a new segment instead of dropping it (a second
    /// chance, as CLOCK gives a page). A carried copy starts unset.
    hit: AtomicBool,
    next: Option<Arc<Entry>>,
}

impl Entry {
    fn is(&self, module: &str, version: &str, kind: RecordKind) -> bool {
        self.kind == kind
            && self.key.len() == module.len() + 1 + version.len()
            && &self.key[..self.module_len] == module
            && &self.key[self.module_len + 1..] == version
    }

    pub fn module(&self) -> &str {
        &self.key[..self.module_len]
    }

    pub fn version(&self) -> &str {
        &self.key[self.module_len + 1..]
    }

    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    /// Records that this entry's blob was served. Hot entries cost a load:
    /// the flag is written once, the segment's hit time once per tick.
    pub fn note_hit(&self) {
        if !self.hit.load(Ordering::Relaxed) {
            self.hit.store(true, Ordering::Relaxed);
        }
        self.blob.note_hit();
    }

    /// Whether it was served since it was published in its segment.
    pub fn was_hit(&self) -> bool {
        self.hit.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Index {
    map: SkipMap<u64, Arc<Entry>>,
    /// Held by every change (see the module's comment).
    changes: Mutex<()>,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    /// Lock-free; callable from any core.
    pub fn get(&self, module: &str, version: &str, kind: RecordKind) -> Option<Arc<Entry>> {
        self.get_hashed(key_hash(module, version, kind), module, version, kind)
    }

    fn get_hashed(&self, hash: u64, module: &str, version: &str, kind: RecordKind) -> Option<Arc<Entry>> {
        let head = self.map.get(&hash)?;
        let mut cur = Some(head.value());
        while let Some(e) = cur {
            if e.is(module, version, kind) {
                return Some(e.clone());
            }
            cur = e.next.as_ref();
        }
        None
    }

    /// Publishes `blob`, replacing any older entry for the same key.
    pub fn insert(&self, module: &str, version: &str, kind: RecordKind, blob: StoredBlob) {
        let _changing = self.changing();
        self.insert_hashed(key_hash(module, version, kind), module, version, kind, blob)
    }

    fn changing(&self) -> MutexGuard<'_, ()> {
        // The guarded data is the map, which a panicked holder left whole
        // (every change is one insert or remove of a rebuilt chain).
        self.changes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the entry of a key with `blob` if it still holds the record
    /// `was` (a [`StoredBlob::record_id`]): eviction's carried copy, which
    /// must not undo a refill or a purge that came in between.
    pub fn replace_record(&self, module: &str, version: &str, kind: RecordKind, was: (u64, u64), blob: StoredBlob) -> bool {
        let _changing = self.changing();
        let hash = key_hash(module, version, kind);
        if self.get_hashed(hash, module, version, kind).is_none_or(|e| e.blob.record_id() != was) {
            return false;
        }
        self.insert_hashed(hash, module, version, kind, blob);
        true
    }

    /// Withdraws the entry of a key if it still holds the record `was`.
    pub fn remove_record(&self, module: &str, version: &str, kind: RecordKind, was: (u64, u64)) -> bool {
        let _changing = self.changing();
        let hash = key_hash(module, version, kind);
        if self.get_hashed(hash, module, version, kind).is_none_or(|e| e.blob.record_id() != was) {
            return false;
        }
        self.remove_hashed(hash, module, version, kind).is_some()
    }

    /// The collision chain at `hash` rebuilt without the key, if any
    /// entry is left. Collisions are astronomically rare, so this stays
    /// O(1) in practice.
    fn chain_without(&self, hash: u64, module: &str, version: &str, kind: RecordKind) -> Option<Arc<Entry>> {
        let head = self.map.get(&hash)?;
        let mut rest = None;
        let mut cur = Some(head.value());
        while let Some(e) = cur {
            if !e.is(module, version, kind) {
                rest = Some(Arc::new(Entry {
                    key: e.key.clone(),
                    module_len: e.module_len,
                    kind: e.kind,
                    blob: e.blob.clone(),
                    hit: AtomicBool::new(e.was_hit()),
                    next: rest.take(),
                }));
            }
            cur = e.next.as_ref();
        }
        rest
    }

    fn insert_hashed(&self, hash: u64, module: &str, version: &str, kind: RecordKind, blob: StoredBlob) {
        let next = self.chain_without(hash, module, version, kind);
        let mut key = String::with_capacity(module.len() + 1 + version.len());
        key.push_str(module);
        key.push('@');
        key.push_str(version);
        let entry = Arc::new(Entry { key: key.into_boxed_str(), module_len: module.len(), kind, blob, hit: AtomicBool::new(false), next });
        self.map.insert(hash, entry);
    }

    /// Publishes `blob` unless an entry of the same key was stored later
    /// (start-up recovery: segments of different cores interleave in time,
    /// so a file's order is not the records' order).
    pub fn insert_if_newer(&self, module: &str, version: &str, kind: RecordKind, blob: StoredBlob) {
        let _changing = self.changing();
        let hash = key_hash(module, version, kind);
        if let Some(old) = self.get_hashed(hash, module, version, kind) {
            if old.blob.stored_at_ms() > blob.stored_at_ms() {
                return;
            }
        }
        self.insert_hashed(hash, module, version, kind, blob)
    }

    /// Withdraws the entry of a key, if any.
    pub fn remove(&self, module: &str, version: &str, kind: RecordKind) -> Option<Arc<Entry>> {
        let _changing = self.changing();
        self.remove_hashed(key_hash(module, version, kind), module, version, kind)
    }

    fn remove_hashed(&self, hash: u64, module: &str, version: &str, kind: RecordKind) -> Option<Arc<Entry>> {
        let removed = self.get_hashed(hash, module, version, kind)?;
        match self.chain_without(hash, module, version, kind) {
            Some(chain) => {
                self.map.insert(hash, chain);
            }
            None => {
                self.map.remove(&hash);
            }
        }
        Some(removed)
    }

    /// Every entry, in no particular order (a snapshot as it is walked).
    pub fn entries(&self) -> impl Iterator<Item = Arc<Entry>> + '_ {
        self.map.iter().flat_map(|head| {
            let mut chain = Vec::new();
            let mut cur = Some(head.value().clone());
            while let Some(e) = cur {
                cur = e.next.clone();
                chain.push(e);
            }
            chain
        })
    }

    /// What a purge of `module` (or of `module@version`) withdraws: a
    /// version's `.info`, `.mod`, `.zip` and the go.sum hashes kept as
    /// `version` and `version/go.mod`; for a whole module every version's,
    /// and its `list` and `@latest`. Sorted by version and kind.
    pub fn module_records(&self, module: &str, version: Option<&str>) -> Vec<(String, String, RecordKind)> {
        let mut chosen: Vec<(String, String, RecordKind)> = self
            .entries()
            .filter(|e| e.module() == module && e.kind().is_module_file())
            .filter(|e| match version {
                Some(v) => e.version() == v || e.version().strip_suffix("/go.mod") == Some(v),
                None => true,
            })
            .map(|e| (e.module().to_string(), e.version().to_string(), e.kind()))
            .collect();
        chosen.sort_by(|a, b| (&a.1, a.2 as u8).cmp(&(&b.1, b.2 as u8)));
        chosen
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::segment::Segment;

    fn blob(tag: u8) -> StoredBlob {
        let f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut &f, &[tag; 16]).unwrap();
        let seg = Arc::new(Segment::map(1, &f, 16).unwrap());
        StoredBlob::new(seg, 0, 16, [tag; 32], tag as u64).unwrap()
    }

    #[test]
    fn distinguishes_module_version_and_kind() {
        let idx = Index::new();
        idx.insert("example.com/a", "v1.0.0", RecordKind::Zip, blob(1));
        idx.insert("example.com/a", "v1.0.0", RecordKind::Mod, blob(2));
        // Same concatenation, different split: must not alias.
        assert!(idx.get("example.com/a@v1", ".0.0", RecordKind::Zip).is_none());
        assert_eq!(idx.get("example.com/a", "v1.0.0", RecordKind::Zip).unwrap().blob.bytes()[0], 1);
        assert_eq!(idx.get("example.com/a", "v1.0.0", RecordKind::Mod).unwrap().blob.bytes()[0], 2);
        assert!(idx.get("example.com/a", "v1.0.1", RecordKind::Zip).is_none());
    }

    #[test]
    fn insert_replaces_and_keeps_collision_neighbours() {
        let idx = Index::new();
        idx.insert("example.com/a", "v1.0.0", RecordKind::Info, blob(1));
        idx.insert("example.com/a", "v1.0.0", RecordKind::Info, blob(3));
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.get("example.com/a", "v1.0.0", RecordKind::Info).unwrap().blob.bytes()[0], 3);
    }

    #[test]
    fn recovery_keeps_the_later_record_and_remove_withdraws_one_key() {
        let idx = Index::new();
        idx.insert_if_newer("example.com/a", "v1.0.0", RecordKind::SumAnswer, blob(5));
        idx.insert_if_newer("example.com/a", "v1.0.0", RecordKind::SumAnswer, blob(3));
        assert_eq!(idx.get("example.com/a", "v1.0.0", RecordKind::SumAnswer).unwrap().blob.bytes()[0], 5, "older record kept out");
        idx.insert_hashed(42, "example.com/b", "v1.0.0", RecordKind::Zip, blob(1));
        idx.insert_hashed(42, "example.com/c", "v1.0.0", RecordKind::Zip, blob(2));
        assert_eq!(idx.entries().count(), 3);
        assert!(idx.remove("example.com/a", "v1.0.0", RecordKind::SumAnswer).is_some());
        assert!(idx.get("example.com/a", "v1.0.0", RecordKind::SumAnswer).is_none());
        assert!(idx.remove("example.com/a", "v1.0.0", RecordKind::SumAnswer).is_none());
        // A collision neighbour survives its chain-mate's removal.
        assert!(idx.remove_hashed(42, "example.com/b", "v1.0.0", RecordKind::Zip).is_some());
        assert!(idx.get_hashed(42, "example.com/b", "v1.0.0", RecordKind::Zip).is_none());
        assert_eq!(idx.get_hashed(42, "example.com/c", "v1.0.0", RecordKind::Zip).unwrap().blob.bytes()[0], 2);
        assert!(idx.remove_hashed(42, "example.com/c", "v1.0.0", RecordKind::Zip).is_some());
        assert!(idx.map.get(&42).is_none(), "an emptied chain leaves no head");
    }

    #[test]
    fn colliding_hashes_chain_instead_of_overwriting() {
        let idx = Index::new();
        idx.insert_hashed(42, "example.com/a", "v1.0.0", RecordKind::Zip, blob(1));
        idx.insert_hashed(42, "example.com/b", "v2.0.0", RecordKind::Zip, blob(2));
        idx.insert_hashed(42, "example.com/c", "v3.0.0", RecordKind::Mod, blob(3));
        idx.insert_hashed(42, "example.com/b", "v2.0.0", RecordKind::Zip, blob(4));
        let get = |m, v, k| idx.get_hashed(42, m, v, k).map(|e| e.blob.bytes()[0]);
        assert_eq!(get("example.com/a", "v1.0.0", RecordKind::Zip), Some(1));
        assert_eq!(get("example.com/b", "v2.0.0", RecordKind::Zip), Some(4));
        assert_eq!(get("example.com/c", "v3.0.0", RecordKind::Mod), Some(3));
        assert_eq!(get("example.com/c", "v3.0.0", RecordKind::Zip), None);
    }
}
