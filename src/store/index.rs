//! The per-shard index: (module, version, kind) → published blob.
//!
//! One index per core. Only the owning core inserts (fills are single-flight
//! on the owner), but every core may read it: lookups are lock-free
//! (papaya's hash table, memory reclaimed by epochs), so a cache hit costs
//! neither a lock nor a hop to another core: one probe, where a skip list
//! of a million entries cost about 20 dependent cache misses (3 µs against
//! 0.06 µs per cold lookup, measured here). The index never decides what to
//! store and never holds an entry whose bytes are not durable.
//!
//! Changes are serialised by a mutex of the index's own, taken only by
//! writers (the owning core's fills and purges, and eviction, which may run
//! on any core's writer): a hit never takes it. Before any of that, at
//! start-up, every thread that reads segments publishes into it at once
//! ([`Loading`], [`Batch`]).
//!
//! The table holds the entries themselves, so an entry costs one
//! allocation; a reader sees one in place ([`Index::read`]) for as long as
//! its epoch guard lives, and takes away only what it keeps (a blob).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::record::RecordKind;
use super::segment::{BlobAt, Segment, StoredBlob};

/// The in-memory key hash: seeded at random once per process (every core
/// computes the same value; module paths are chosen by clients, so the
/// table's buckets must not be predictable). It never reaches the disk.
fn key_hasher() -> &'static ahash::RandomState {
    static HASHER: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
    HASHER.get_or_init(ahash::RandomState::new)
}

pub fn key_hash(module: &str, version: &str, kind: RecordKind) -> u64 {
    let mut h = key_hasher().build_hasher();
    h.write(module.as_bytes());
    h.write_u8(0);
    h.write(version.as_bytes());
    h.write_u8(kind as u8);
    h.finish()
}

/// Where an entry's "module@version" is.
#[derive(Debug, Clone)]
enum Key {
    /// Its own allocation: a blob stored or carried by this process.
    Owned(Box<str>),
    /// In its segment's found keys (see [`StoredBlob::found_key`]): a
    /// record start-up found, which then costs no allocation of its own.
    Found { at: u32, len: u16 },
}

/// One published blob and, on a 64-bit hash collision, the next one.
#[derive(Debug)]
pub struct Entry {
    key: Key,
    /// Splits the key into module and version.
    module_len: u16,
    kind: RecordKind,
    /// Served since it was published in its segment: eviction carries it
    /// forward into a new segment instead of dropping it (a second
    /// chance, as CLOCK gives a page). A carried copy starts unset.
    hit: AtomicBool,
    pub blob: StoredBlob,
    next: Option<Box<Entry>>,
}

impl Entry {
    fn new(key: Key, module_len: usize, kind: RecordKind, blob: StoredBlob, next: Option<Box<Entry>>) -> Entry {
        // Keys are at most MAX_KEY_LEN (1 KiB) bytes, checked before they are stored or read.
        Entry { key, module_len: module_len.min(u16::MAX as usize) as u16, kind, hit: AtomicBool::new(false), blob, next }
    }

    /// "module@version".
    fn key(&self) -> &str {
        match &self.key {
            Key::Owned(key) => key,
            Key::Found { at, len } => self.blob.found_key(*at, *len),
        }
    }

    fn is(&self, module: &str, version: &str, kind: RecordKind) -> bool {
        let key = self.key();
        let split = self.module_len as usize;
        self.kind == kind
            && key.len() == module.len() + 1 + version.len()
            && key.get(..split) == Some(module)
            && key.get(split + 1..) == Some(version)
    }

    pub fn module(&self) -> &str {
        self.key().get(..self.module_len as usize).unwrap_or_default()
    }

    pub fn version(&self) -> &str {
        self.key().get(self.module_len as usize + 1..).unwrap_or_default()
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

    /// A copy of it in front of `next` (entries in the table are shared
    /// and immutable: a chain is changed by rebuilding it).
    fn relinked(&self, next: Option<Box<Entry>>) -> Entry {
        let copy = Entry::new(self.key.clone(), self.module_len as usize, self.kind, self.blob.clone(), next);
        copy.hit.store(self.was_hit(), Ordering::Relaxed);
        copy
    }

    /// The entries of its chain, itself first.
    fn chain(&self) -> impl Iterator<Item = &Entry> {
        std::iter::successors(Some(self), |e| e.next.as_deref())
    }
}

fn owned_key(module: &str, version: &str) -> Key {
    let mut key = String::with_capacity(module.len() + 1 + version.len());
    key.push_str(module);
    key.push('@');
    key.push_str(version);
    Key::Owned(key.into_boxed_str())
}

/// The chain at a hash with `new` in it: in place of the record of its key
/// if `new` is the later one (`None`: it is not, nothing changes), else
/// beside the others (a 64-bit collision). Rare: rebuilds the chain.
fn with_record(head: &Entry, new: &Entry) -> Option<Entry> {
    let order = |e: &Entry| (e.blob.stored_at_ms(), e.blob.record_id());
    let mut chain: Vec<&Entry> = head.chain().collect();
    match chain.iter().position(|e| e.key() == new.key() && e.kind == new.kind) {
        Some(i) if order(new) > order(chain[i]) => chain[i] = new,
        Some(_) => return None,
        None => chain.push(new),
    }
    relinked(chain.into_iter())
}

/// Copies of `entries`, chained in their order.
fn relinked<'a>(entries: impl DoubleEndedIterator<Item = &'a Entry>) -> Option<Entry> {
    let mut next: Option<Entry> = None;
    for e in entries.rev() {
        next = Some(e.relinked(next.take().map(Box::new)));
    }
    next
}

/// A record found at start-up, for [`Loading::publish`]: its entry and
/// its hash.
pub struct Loaded {
    hash: u64,
    entry: Entry,
}

impl Loaded {
    /// The record of `module@version`, with a key of its own.
    pub fn owned(module: &str, version: &str, kind: RecordKind, blob: StoredBlob) -> Loaded {
        let hash = key_hash(module, version, kind);
        Loaded { hash, entry: Entry::new(owned_key(module, version), module.len(), kind, blob, None) }
    }
}

/// A record found at start-up as its segment is read, for a [`Batch`].
pub struct Pending {
    hash: u64,
    key: Key,
    module_len: u16,
    kind: RecordKind,
    blob: BlobAt,
}

impl Pending {
    /// The record of `module@version`, whose key lies at `at` in the found
    /// keys its segment keeps (see [`StoredBlob::found_key`]).
    pub fn found(module: &str, version: &str, at: u32, kind: RecordKind, blob: BlobAt) -> Pending {
        let hash = key_hash(module, version, kind);
        let key = Key::Found { at, len: (module.len() + 1 + version.len()).min(u16::MAX as usize) as u16 };
        Pending { hash, key, module_len: module.len().min(u16::MAX as usize) as u16, kind, blob }
    }

    /// The record of `module@version`, with a key of its own.
    pub fn owned(module: &str, version: &str, kind: RecordKind, blob: BlobAt) -> Pending {
        let hash = key_hash(module, version, kind);
        Pending { hash, key: owned_key(module, version), module_len: module.len().min(u16::MAX as usize) as u16, kind, blob }
    }

    /// Its entry, for a blob of `segment`.
    fn loaded(self, segment: &Arc<Segment>) -> Option<Loaded> {
        let blob = StoredBlob::at(segment, &self.blob)?;
        Some(Loaded { hash: self.hash, entry: Entry::new(self.key, self.module_len as usize, self.kind, blob, None) })
    }
}

/// Start-up's way into an index: records found on disk, published from
/// every thread that reads segments at once, before anything else uses
/// the index. The later of two records of a key wins (as
/// [`Index::insert_if_newer`]; of two stored the same millisecond, the one
/// later on disk), whatever order they are found in.
pub struct Loading<'a> {
    map: Pinned<'a>,
}

impl Loading<'_> {
    pub fn publish(&self, found: Loaded) {
        let Loaded { hash, entry } = found;
        // One probe for the usual case, a key seen once.
        if let Err(taken) = self.map.try_insert(hash, entry) {
            let new = taken.not_inserted;
            self.map.compute(hash, |current| match current {
                None => papaya::Operation::Insert(new.relinked(None)),
                Some((_, head)) => match with_record(head, &new) {
                    Some(chain) => papaya::Operation::Insert(chain),
                    None => papaya::Operation::Abort(()),
                },
            });
        }
    }
}

/// Records waiting to be published into a set of indexes (one per shard,
/// all sized alike with [`Index::reserve`]), grouped by the part of the
/// table each lands in: the top bits of its slot. Published one group
/// after another, they touch one small part of every table at a time,
/// which stays in cache, where publishing them in the order found touched
/// a random slot of a table of millions per record: two cache misses each
/// (the slot's metadata byte and the slot), most of start-up's time.
pub struct Batch {
    groups: Vec<Vec<(usize, Pending)>>,
    /// log2 of the slots of each table.
    slot_bits: u32,
}

/// 256 groups: of a 2M-slot table (a million entries), each covers 8,192
/// slots, 64 KiB of pointers and 8 KiB of metadata.
const GROUP_BITS: u32 = 8;

impl Batch {
    /// For indexes made room in for `records_per_index` entries each.
    pub fn new(records_per_index: usize) -> Batch {
        // As papaya sizes a table for a reservation: a power of two at
        // least 4/3 of it. Guessed wrong, publishing is only slower.
        let slots = (records_per_index.saturating_mul(8) / 6).max(1).next_power_of_two();
        Batch { groups: (0..1 << GROUP_BITS).map(|_| Vec::new()).collect(), slot_bits: slots.trailing_zeros() }
    }

    /// Room for `records` more.
    pub fn reserve(&mut self, records: usize) {
        let each = records / self.groups.len();
        for group in &mut self.groups {
            group.reserve(each + each / 4 + 4);
        }
    }

    pub fn push(&mut self, shard: usize, record: Pending) {
        let slot = record.hash & ((1u64 << self.slot_bits) - 1);
        let group = ((slot << GROUP_BITS) >> self.slot_bits) as usize;
        self.groups[group].push((shard, record));
    }

    pub fn len(&self) -> usize {
        self.groups.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(Vec::is_empty)
    }

    pub fn clear(&mut self) {
        self.groups.iter_mut().for_each(Vec::clear);
    }

    /// Publishes every record into `indexes[shard]`, group by group. The
    /// `thread`-th of `threads` publishing at once starts at its own share
    /// of the groups, so they do not write one part of a table together.
    pub fn publish(&mut self, indexes: &[Loading<'_>], segment: &Arc<Segment>, thread: usize, threads: usize) {
        let n = self.groups.len();
        let first = thread % threads.max(1) * n / threads.max(1);
        for i in 0..n {
            for (shard, record) in self.groups[(first + i) % n].drain(..) {
                if let Some(loaded) = record.loaded(segment) {
                    indexes[shard].publish(loaded);
                }
            }
        }
    }
}

type Pinned<'a> = papaya::HashMapRef<'a, u64, Entry, KeyIsHash, papaya::LocalGuard<'a>>;

/// The table's hasher: the key is a [`key_hash`] already.
#[derive(Clone, Default)]
pub struct KeyIsHash;

impl BuildHasher for KeyIsHash {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys reach it; anything else is folded in, never dropped.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Default)]
pub struct Index {
    /// The entries themselves, not pointers to them: one allocation per
    /// entry (the table's own), and a hit reads it in place.
    map: papaya::HashMap<u64, Entry, KeyIsHash>,
    /// Held by every change (see the module's comment).
    changes: Mutex<()>,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    /// What `read` makes of the entry of a key, if there is one. Lock-free,
    /// callable from any core, and nothing is copied or counted: a hit
    /// takes what it serves (a [`StoredBlob`]) in `read`. Keep `read`
    /// short: the entry's memory is held while it runs.
    pub fn read<R>(&self, module: &str, version: &str, kind: RecordKind, read: impl FnOnce(&Entry) -> R) -> Option<R> {
        let map = self.map.pin();
        Self::found(&map, key_hash(module, version, kind), module, version, kind).map(read)
    }

    /// The blob stored for a key, if any.
    pub fn blob(&self, module: &str, version: &str, kind: RecordKind) -> Option<StoredBlob> {
        self.read(module, version, kind, |e| e.blob.clone())
    }

    /// Whether a blob is stored for a key.
    pub fn contains(&self, module: &str, version: &str, kind: RecordKind) -> bool {
        self.read(module, version, kind, |_| ()).is_some()
    }

    fn found<'m>(map: &'m Pinned<'_>, hash: u64, module: &str, version: &str, kind: RecordKind) -> Option<&'m Entry> {
        map.get(&hash)?.chain().find(|e| e.is(module, version, kind))
    }

    /// The record id of the entry of a key (see [`StoredBlob::record_id`]).
    fn record_of(&self, hash: u64, module: &str, version: &str, kind: RecordKind) -> Option<(u64, u64)> {
        Self::found(&self.map.pin(), hash, module, version, kind).map(|e| e.blob.record_id())
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
        if self.record_of(hash, module, version, kind) != Some(was) {
            return false;
        }
        self.insert_hashed(hash, module, version, kind, blob);
        true
    }

    /// Withdraws the entry of a key if it still holds the record `was`.
    pub fn remove_record(&self, module: &str, version: &str, kind: RecordKind, was: (u64, u64)) -> bool {
        let _changing = self.changing();
        let hash = key_hash(module, version, kind);
        if self.record_of(hash, module, version, kind) != Some(was) {
            return false;
        }
        self.remove_hashed(hash, module, version, kind)
    }

    /// The collision chain at `hash` rebuilt without the key, if any
    /// entry is left. Collisions are astronomically rare, so this stays
    /// O(1) in practice.
    fn chain_without(&self, hash: u64, module: &str, version: &str, kind: RecordKind) -> Option<Entry> {
        let map = self.map.pin();
        let rest: Vec<&Entry> = map.get(&hash)?.chain().filter(|e| !e.is(module, version, kind)).collect();
        relinked(rest.into_iter())
    }

    fn insert_hashed(&self, hash: u64, module: &str, version: &str, kind: RecordKind, blob: StoredBlob) {
        let next = self.chain_without(hash, module, version, kind).map(Box::new);
        self.map.pin().insert(hash, Entry::new(owned_key(module, version), module.len(), kind, blob, next));
    }

    /// Publishes `blob` unless an entry of the same key was stored later
    /// (start-up recovery: segments of different cores interleave in time,
    /// so a file's order is not the records' order).
    pub fn insert_if_newer(&self, module: &str, version: &str, kind: RecordKind, blob: StoredBlob) {
        let _changing = self.changing();
        let hash = key_hash(module, version, kind);
        let stored_at = Self::found(&self.map.pin(), hash, module, version, kind).map(|e| e.blob.stored_at_ms());
        if stored_at.is_some_and(|at| at > blob.stored_at_ms()) {
            return;
        }
        self.insert_hashed(hash, module, version, kind, blob)
    }

    /// Start-up's way in (see [`Loading`]).
    pub fn loading(&self) -> Loading<'_> {
        Loading { map: self.map.pin() }
    }

    /// Makes room for `records` more entries.
    pub fn reserve(&self, records: usize) {
        self.map.pin().reserve(records);
    }

    /// Start-up, once every record is in: withdraws the entry of a key if
    /// it was stored at or before `at` (a tombstone's time: it hides what
    /// was stored before it, not a later refill). Since the later of two
    /// records wins, an entry hidden so had no later record to show instead.
    pub fn withdraw_stored_by(&self, module: &str, version: &str, kind: RecordKind, at: u64) -> bool {
        let _changing = self.changing();
        let hash = key_hash(module, version, kind);
        let stored_at = Self::found(&self.map.pin(), hash, module, version, kind).map(|e| e.blob.stored_at_ms());
        if stored_at.is_none_or(|stored| stored > at) {
            return false;
        }
        self.remove_hashed(hash, module, version, kind)
    }

    /// Withdraws the entry of a key, if any.
    pub fn remove(&self, module: &str, version: &str, kind: RecordKind) -> bool {
        let _changing = self.changing();
        self.remove_hashed(key_hash(module, version, kind), module, version, kind)
    }

    fn remove_hashed(&self, hash: u64, module: &str, version: &str, kind: RecordKind) -> bool {
        if Self::found(&self.map.pin(), hash, module, version, kind).is_none() {
            return false;
        }
        match self.chain_without(hash, module, version, kind) {
            Some(chain) => {
                self.map.pin().insert(hash, chain);
            }
            None => {
                self.map.pin().remove(&hash);
            }
        }
        true
    }

    /// A copy of every entry, in no particular order (as the table is
    /// walked): for walks that take their time (a scrub, `verify`).
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        let map = self.map.pin();
        let mut all = Vec::with_capacity(map.len());
        for (_, head) in map.iter() {
            all.extend(head.chain().map(|e| e.relinked(None)));
        }
        all.into_iter()
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
    use std::sync::Arc;

    impl Index {
        /// The blob at `hash` of a key (a hash chosen to collide).
        fn hashed(&self, hash: u64, module: &str, version: &str, kind: RecordKind) -> Option<StoredBlob> {
            Self::found(&self.map.pin(), hash, module, version, kind).map(|e| e.blob.clone())
        }
    }

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
        assert!(idx.blob("example.com/a@v1", ".0.0", RecordKind::Zip).is_none());
        assert_eq!(idx.blob("example.com/a", "v1.0.0", RecordKind::Zip).unwrap().bytes()[0], 1);
        assert_eq!(idx.blob("example.com/a", "v1.0.0", RecordKind::Mod).unwrap().bytes()[0], 2);
        assert!(idx.blob("example.com/a", "v1.0.1", RecordKind::Zip).is_none());
    }

    #[test]
    fn insert_replaces_and_keeps_collision_neighbours() {
        let idx = Index::new();
        idx.insert("example.com/a", "v1.0.0", RecordKind::Info, blob(1));
        idx.insert("example.com/a", "v1.0.0", RecordKind::Info, blob(3));
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.blob("example.com/a", "v1.0.0", RecordKind::Info).unwrap().bytes()[0], 3);
    }

    #[test]
    fn recovery_keeps_the_later_record_and_remove_withdraws_one_key() {
        let idx = Index::new();
        idx.insert_if_newer("example.com/a", "v1.0.0", RecordKind::SumAnswer, blob(5));
        idx.insert_if_newer("example.com/a", "v1.0.0", RecordKind::SumAnswer, blob(3));
        assert_eq!(idx.blob("example.com/a", "v1.0.0", RecordKind::SumAnswer).unwrap().bytes()[0], 5, "older record kept out");
        idx.insert_hashed(42, "example.com/b", "v1.0.0", RecordKind::Zip, blob(1));
        idx.insert_hashed(42, "example.com/c", "v1.0.0", RecordKind::Zip, blob(2));
        assert_eq!(idx.entries().count(), 3);
        assert!(idx.remove("example.com/a", "v1.0.0", RecordKind::SumAnswer));
        assert!(idx.blob("example.com/a", "v1.0.0", RecordKind::SumAnswer).is_none());
        assert!(!idx.remove("example.com/a", "v1.0.0", RecordKind::SumAnswer));
        // A collision neighbour survives its chain-mate's removal.
        assert!(idx.remove_hashed(42, "example.com/b", "v1.0.0", RecordKind::Zip));
        assert!(idx.hashed(42, "example.com/b", "v1.0.0", RecordKind::Zip).is_none());
        assert_eq!(idx.hashed(42, "example.com/c", "v1.0.0", RecordKind::Zip).unwrap().bytes()[0], 2);
        assert!(idx.remove_hashed(42, "example.com/c", "v1.0.0", RecordKind::Zip));
        assert!(idx.map.pin().get(&42).is_none(), "an emptied chain leaves no head");
    }

    #[test]
    fn a_load_from_many_threads_keeps_the_later_record_of_each_key_and_chains_collisions() {
        let idx = Index::new();
        let at = |m: &str, v: &str, k, tag: u8| Loaded::owned(m, v, k, blob(tag));
        let found = || {
            let mut collided = at("example.com/c", "v1.0.0", RecordKind::Zip, 7);
            collided.hash = key_hash("example.com/a", "v1.0.0", RecordKind::Zip);
            vec![
                at("example.com/a", "v1.0.0", RecordKind::Zip, 5),
                at("example.com/a", "v1.0.0", RecordKind::Zip, 3),
                at("example.com/a", "v1.0.0", RecordKind::Mod, 2),
                collided,
                at("example.com/b", "v1.0.0", RecordKind::Zip, 9),
                at("example.com/a", "v1.0.0", RecordKind::Zip, 4),
                at("example.com/gone", "v1.0.0", RecordKind::Zip, 4),
            ]
        };
        // Every thread publishes every record, each in its own order.
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (idx, mut found) = (&idx, found());
                found.rotate_left(t);
                if t % 2 == 1 {
                    found.reverse();
                }
                scope.spawn(move || {
                    let loading = idx.loading();
                    for l in found {
                        loading.publish(l);
                    }
                });
            }
        });
        let get = |m, k| idx.blob(m, "v1.0.0", k).map(|b| b.bytes()[0]);
        assert_eq!(get("example.com/a", RecordKind::Zip), Some(5), "stored later (tag = stored time) wins, whatever the order found");
        assert_eq!(get("example.com/a", RecordKind::Mod), Some(2));
        assert_eq!(get("example.com/b", RecordKind::Zip), Some(9));
        let chained = idx.hashed(key_hash("example.com/a", "v1.0.0", RecordKind::Zip), "example.com/c", "v1.0.0", RecordKind::Zip);
        assert_eq!(chained.map(|b| b.bytes()[0]), Some(7), "a colliding key is chained, not lost");
        assert_eq!(idx.entries().count(), 5);
        // A tombstone hides what was stored at or before it, not a later record.
        assert!(!idx.withdraw_stored_by("example.com/b", "v1.0.0", RecordKind::Zip, 8));
        assert!(idx.withdraw_stored_by("example.com/gone", "v1.0.0", RecordKind::Zip, 4));
        assert_eq!(get("example.com/gone", RecordKind::Zip), None);
        assert_eq!(get("example.com/b", RecordKind::Zip), Some(9));
    }

    #[test]
    fn a_batch_groups_records_by_the_part_of_the_table_they_land_in() {
        // 1,000 entries: a table of 2,048 slots (11 bits), 8 slots a group.
        let mut batch = Batch::new(1000);
        assert_eq!(batch.slot_bits, 11);
        let at = BlobAt { offset: 0, len: 16, sha256: [1; 32], stored_at_ms: 1, place: None };
        let with_hash = |hash| Pending { hash, ..Pending::owned("example.com/a", "v1.0.0", RecordKind::Zip, at) };
        for hash in [0u64, 7, 8, 2047, 2048 + 9, u64::MAX] {
            batch.push(0, with_hash(hash));
        }
        let group_of = |hash: u64| batch.groups.iter().position(|g| g.iter().any(|(_, p)| p.hash == hash)).unwrap();
        assert_eq!((group_of(0), group_of(7), group_of(8), group_of(2047)), (0, 0, 1, 255));
        assert_eq!((group_of(2048 + 9), group_of(u64::MAX)), (1, 255), "only the slot's bits count");
        assert_eq!(batch.len(), 6);
        // Published into the index, each once, whatever group it sat in.
        let idx = Index::new();
        idx.reserve(1000);
        let seg = {
            let f = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut &f, &[7; 16]).unwrap();
            Arc::new(Segment::map(1, &f, 16).unwrap())
        };
        let mut batch = Batch::new(1000);
        for (i, m) in ["example.com/a", "example.com/b", "example.com/c"].into_iter().enumerate() {
            batch.push(0, Pending::owned(m, "v1.0.0", RecordKind::Zip, BlobAt { stored_at_ms: i as u64, ..at }));
        }
        batch.publish(&[idx.loading()], &seg, 1, 2);
        assert!(batch.is_empty());
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.blob("example.com/c", "v1.0.0", RecordKind::Zip).map(|b| b.stored_at_ms()), Some(2));
    }

    #[test]
    fn colliding_hashes_chain_instead_of_overwriting() {
        let idx = Index::new();
        idx.insert_hashed(42, "example.com/a", "v1.0.0", RecordKind::Zip, blob(1));
        idx.insert_hashed(42, "example.com/b", "v2.0.0", RecordKind::Zip, blob(2));
        idx.insert_hashed(42, "example.com/c", "v3.0.0", RecordKind::Mod, blob(3));
        idx.insert_hashed(42, "example.com/b", "v2.0.0", RecordKind::Zip, blob(4));
        let get = |m, v, k| idx.hashed(42, m, v, k).map(|b| b.bytes()[0]);
        assert_eq!(get("example.com/a", "v1.0.0", RecordKind::Zip), Some(1));
        assert_eq!(get("example.com/b", "v2.0.0", RecordKind::Zip), Some(4));
        assert_eq!(get("example.com/c", "v3.0.0", RecordKind::Mod), Some(3));
        assert_eq!(get("example.com/c", "v3.0.0", RecordKind::Zip), None);
    }
}
