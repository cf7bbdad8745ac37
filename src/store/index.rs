//! The per-shard index: (module, version, kind) → published blob.
//!
//! One index per core. Only the owning core inserts (fills are single-flight
//! on the owner), but every core may read it: lookups are lock-free, so a
//! cache hit costs neither a lock nor a hop to another core, and one probe
//! (a skip list of a million entries cost about 20 dependent cache misses:
//! 3 µs against 0.06 µs per cold lookup, measured here). The index never
//! decides what to store and never holds an entry whose bytes are not
//! durable.
//!
//! The table is our own: open addressing with linear probing over slots
//! that each hold a pointer to an immutable [`Entry`] (null: free; a
//! tombstone: withdrawn). A reader probes under an epoch guard (`seize`,
//! the reclamation papaya, this index's earlier table, is built on), so an
//! entry withdrawn or replaced, and a table outgrown, are freed only once
//! no reader can hold them. Papaya allocated every entry on its own and
//! published each with a compare-and-swap that waited for that fresh
//! memory; loading a million entries from two threads took it 5× the
//! time this table takes (a standalone test), and start-up as a whole
//! about 1.5× (see BENCHMARKS.md). A slot keeps a few bits of its entry's
//! hash in the pointer's spare low bits, so a probe rarely reads an entry
//! of another key.
//!
//! Changes are serialised by a mutex of the index's own, taken only by
//! writers (the owning core's fills and purges, and eviction, which may run
//! on any core's writer): a hit never takes it. Before any of that, at
//! start-up, every thread that reads segments publishes into it at once
//! ([`Loading`], [`Batch`]), each with a compare-and-swap per slot, and
//! the entries a segment's records make live in one allocation (a
//! [`Block`]) instead of one each.
//!
//! A reader sees an entry in place ([`Index::read`]) for as long as its
//! guard lives, and takes away only what it keeps (a blob).

use std::hash::{BuildHasher, Hasher};
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use seize::{Collector, Guard, LocalGuard};

use super::record::RecordKind;
use super::segment::{BlobAt, Segment, StoredBlob};

/// The in-memory key hash: seeded at random once per process (every core
/// computes the same value; module paths are chosen by clients, so the
/// table's slots must not be predictable). It never reaches the disk.
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

/// One published blob. Aligned to 16 so that a slot's pointer to it has
/// four spare low bits, for a [`tag_of`] its hash.
#[derive(Debug)]
#[repr(align(16))]
pub struct Entry {
    /// Its [`key_hash`]: a probe compares it before the key.
    hash: u64,
    key: Key,
    /// Splits the key into module and version.
    module_len: u16,
    kind: RecordKind,
    /// Served since it was published in its segment: eviction carries it
    /// forward into a new segment instead of dropping it (a second
    /// chance, as CLOCK gives a page). A carried copy starts unset.
    hit: AtomicBool,
    pub blob: StoredBlob,
    /// The block start-up made it in; `None`: its own allocation (or a
    /// copy held by value, outside any table).
    block: Option<BlockRef>,
}

impl Entry {
    fn new(hash: u64, key: Key, module_len: usize, kind: RecordKind, blob: StoredBlob) -> Entry {
        // Keys are at most MAX_KEY_LEN (1 KiB) bytes, checked before they are stored or read.
        let module_len = module_len.min(u16::MAX as usize) as u16;
        Entry { hash, key, module_len, kind, hit: AtomicBool::new(false), blob, block: None }
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

    /// Whether `other` is of the same key (start-up compares records so).
    fn same_key(&self, other: &Entry) -> bool {
        self.hash == other.hash && self.kind == other.kind && self.key() == other.key()
    }

    /// Which of two records of a key is the later: stored later, or of two
    /// stored the same millisecond, later on disk.
    fn order(&self) -> (u64, (u64, u64)) {
        (self.blob.stored_at_ms(), self.blob.record_id())
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

    /// A copy of it held by value, outside any table.
    fn copy(&self) -> Entry {
        let copy = Entry::new(self.hash, self.key.clone(), self.module_len as usize, self.kind, self.blob.clone());
        copy.hit.store(self.was_hit(), Ordering::Relaxed);
        copy
    }

    /// Frees an entry a table held (or one never published).
    ///
    /// # Safety
    /// `entry` came from [`Entry::boxed`] or from a [`Block`], and no
    /// thread can reach it any more.
    unsafe fn free(entry: *mut Entry) {
        // SAFETY: `entry` is valid until it is dropped below (the caller's promise).
        match unsafe { (*entry).block } {
            // SAFETY: allocated by `Entry::boxed`.
            None => drop(unsafe { Box::from_raw(entry) }),
            Some(block) => {
                // SAFETY: it lives in `block`, initialised, and is dropped once.
                unsafe { ptr::drop_in_place(entry) };
                // SAFETY: the block outlives every entry it counts.
                unsafe { block.release(1) };
            }
        }
    }

    /// `seize`'s way to [`Entry::free`].
    unsafe fn reclaim(entry: *mut Entry, _: &Collector) {
        // SAFETY: retired once it was unreachable (see `Index::retire`).
        unsafe { Entry::free(entry) }
    }

    fn boxed(self) -> *mut Entry {
        Box::into_raw(Box::new(self))
    }
}

fn owned_key(module: &str, version: &str) -> Key {
    let mut key = String::with_capacity(module.len() + 1 + version.len());
    key.push_str(module);
    key.push('@');
    key.push_str(version);
    Key::Owned(key.into_boxed_str())
}

/// The entries one [`Batch::publish`] made (a segment's records), in one
/// allocation: freed when the last of them is (a segment's entries mostly
/// go together, when it is evicted).
struct Block {
    /// Entries not yet freed (made and not yet freed, while it is filled).
    live: AtomicUsize,
    entries: Box<[MaybeUninit<Entry>]>,
}

/// A block's address, as its entries keep it.
#[derive(Debug, Clone, Copy)]
struct BlockRef(NonNull<Block>);

// SAFETY: a block is shared only through its atomic count, and freed by
// whichever thread frees its last entry.
unsafe impl Send for BlockRef {}
// SAFETY: as above.
unsafe impl Sync for BlockRef {}

impl BlockRef {
    /// Forgets `n` of its entries, freeing the block with the last.
    ///
    /// # Safety
    /// Those `n` entries were counted in it and are gone (or never made).
    unsafe fn release(self, n: usize) {
        if n == 0 {
            return; // it may be gone already: its last entry freed it
        }
        // SAFETY: the block lives while it counts entries, these among them.
        let block = unsafe { self.0.as_ref() };
        if block.live.fetch_sub(n, Ordering::AcqRel) == n {
            // SAFETY: nothing refers to it any more; allocated as a Box in `Batch::publish`.
            drop(unsafe { Box::from_raw(self.0.as_ptr()) });
        }
    }
}

/// A withdrawn entry's slot: probes go past it; it is reused by an insert
/// or dropped when the table is rebuilt. Never dereferenced.
fn tombstone() -> *mut Entry {
    NonNull::<Entry>::dangling().as_ptr()
}

/// Bits of an entry's hash a slot keeps in its pointer's low bits (free,
/// as entries are aligned to 16): a probe passes all but one in sixteen
/// entries of other keys without reading them, where reading each was a
/// cache miss (a quarter of start-up's publishing, measured).
const TAG_BITS: u32 = 4;
const TAG_MASK: usize = (1 << TAG_BITS) - 1;
const _: () = assert!(std::mem::align_of::<Entry>() > TAG_MASK);

/// The tag of a hash: its top bits (its low bits choose its home slot).
fn tag_of(hash: u64) -> usize {
    (hash >> (64 - TAG_BITS)) as usize
}

/// What a slot holds for entry `p` of `hash`.
fn tagged(p: *mut Entry, hash: u64) -> *mut Entry {
    p.map_addr(|a| a | tag_of(hash))
}

/// The entry a slot's value points at, if it holds one.
fn entry_in(slot_value: *mut Entry) -> Option<*mut Entry> {
    (!slot_value.is_null() && slot_value != tombstone()).then(|| slot_value.map_addr(|a| a & !TAG_MASK))
}

/// Faults in, writable, the whole pages of `len` values at `at`, in one
/// call (`MADV_POPULATE_WRITE`, Linux 5.14) instead of a fault per page as
/// they are first written: start-up writes a few hundred megabytes of
/// fresh memory per million records. False where the kernel cannot; the
/// pages then fault in as they are written.
fn populate<T>(at: *const T, len: usize) -> bool {
    const PAGE: usize = 4096;
    let (start, end) = (at.addr(), at.addr() + len * std::mem::size_of::<T>());
    let (first, last) = (start.div_ceil(PAGE) * PAGE, end / PAGE * PAGE);
    if last <= first {
        return true;
    }
    // SAFETY: the range lies inside one allocation of ours; populating
    // changes no byte of it.
    unsafe { libc::madvise(at.with_addr(first) as *mut libc::c_void, last - first, libc::MADV_POPULATE_WRITE) == 0 }
}

/// The slots: a power of two of them, at most three quarters taken
/// (entries and tombstones), so that every probe ends at a free slot.
struct Table {
    slots: Box<[AtomicPtr<Entry>]>,
    mask: usize,
}

impl Table {
    fn with_slots(slots: usize) -> Table {
        let slots = slots.max(16).next_power_of_two();
        let made: Box<[AtomicPtr<Entry>]> = (0..slots).map(|_| AtomicPtr::new(ptr::null_mut())).collect();
        // A large table comes zeroed from the allocator as untouched pages
        // (the nulls above are compiled to that). A probe's read would map
        // one to the shared zero page, and its compare-and-swap then fault
        // again, flushing the TLB of every CPU the process runs on (an
        // eighth of start-up's time, measured). A write to every page now
        // faults each in once, and cheaply.
        if !populate(made.as_ptr(), made.len()) {
            for page in made.iter().step_by(4096 / std::mem::size_of::<AtomicPtr<Entry>>()) {
                // SAFETY: a valid slot; a volatile write is never left out.
                unsafe { ptr::write_volatile(page.as_ptr(), ptr::null_mut()) };
            }
        }
        Table { mask: slots - 1, slots: made }
    }

    /// Slots a table for `records` entries takes.
    fn slots_for(records: usize) -> usize {
        (records.saturating_mul(8) / 6).max(16).next_power_of_two()
    }

    /// How many slots may be taken.
    fn limit(&self) -> usize {
        self.slots.len() / 4 * 3
    }

    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// The slot and entry of the first entry from `hash`'s home on that
    /// `matches`, reading slots with `load`.
    fn find(
        &self,
        hash: u64,
        load: impl Fn(&AtomicPtr<Entry>) -> *mut Entry,
        matches: impl Fn(&Entry) -> bool,
    ) -> Option<(usize, *mut Entry)> {
        let (mut at, tag) = (self.home(hash), tag_of(hash));
        loop {
            let value = load(&self.slots[at]);
            if value.is_null() {
                return None;
            }
            match entry_in(value) {
                Some(p) if value.addr() & TAG_MASK == tag => {
                    // SAFETY: a slot's entry is live, kept so for the
                    // caller (a guard, or the writer).
                    let e = unsafe { &*p };
                    if e.hash == hash && matches(e) {
                        return Some((at, p));
                    }
                }
                _ => {}
            }
            at = (at + 1) & self.mask;
        }
    }

    /// Puts a slot's value into the first free slot from its home (a
    /// rebuild's move: the key is not there yet and no reader sees this
    /// table yet).
    fn place(&self, p: *mut Entry, hash: u64) {
        let mut at = self.home(hash);
        while !self.slots[at].load(Ordering::Relaxed).is_null() {
            at = (at + 1) & self.mask;
        }
        self.slots[at].store(p, Ordering::Relaxed);
    }
}

/// Start-up's way into an index: records found on disk, published from
/// every thread that reads segments at once, before anything else uses
/// the index. The later of two records of a key wins (as
/// [`Index::insert_if_newer`]; of two stored the same millisecond, the one
/// later on disk), whatever order they are found in.
pub struct Loading<'a> {
    index: &'a Index,
    /// Keeps what another loader replaces readable while this one compares.
    guard: LocalGuard<'a>,
}

/// Slots taken for one batch's records in one index: the table stays as
/// it is while it lives.
struct Room<'a> {
    _table_kept: RwLockReadGuard<'a, ()>,
    table: &'a Table,
    claimed: usize,
    /// Slots it filled (new keys).
    filled: usize,
}

impl<'a> Loading<'a> {
    /// Room for `records` more in the table, or `None` if it must grow
    /// first, or is growing (see [`Loading::grow_for`]). Never waits: a
    /// loader holding rooms in other tables must not wait for a grower
    /// who waits for another loader.
    fn room(&self, records: usize) -> Option<Room<'a>> {
        let kept = match self.index.resizing.try_read() {
            Ok(kept) => kept,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        // SAFETY: the table is replaced only under the write lock.
        let table = unsafe { &*self.index.table.load(Ordering::Acquire) };
        let used = self.index.used.fetch_add(records, Ordering::Relaxed) + records;
        if used > table.limit() {
            self.index.used.fetch_sub(records, Ordering::Relaxed);
            return None;
        }
        Some(Room { _table_kept: kept, table, claimed: records, filled: 0 })
    }

    /// Grows the table for `records` more, or waits for the loader growing
    /// it (with no room held by this thread).
    fn grow_for(&self, records: usize) {
        self.index.grow_for(records);
    }

    /// Publishes an entry into the table `room` holds: into a free slot
    /// (a new key), or in place of an older record of its key; else (an as
    /// late or later record is there) it is freed.
    ///
    /// # Safety
    /// `new` came from [`Entry::boxed`] or a [`Block`], fully made, and
    /// no thread has seen it.
    unsafe fn publish(&self, room: &mut Room<'_>, new: *mut Entry) {
        // SAFETY: not yet shared; this thread owns it.
        let new_ref = unsafe { &*new };
        let (slots, tag) = (&room.table.slots, tag_of(new_ref.hash));
        let new_value = tagged(new, new_ref.hash);
        let mut at = room.table.home(new_ref.hash);
        let mut current = self.guard.protect(&slots[at], Ordering::Acquire);
        loop {
            if current.is_null() {
                match slots[at].compare_exchange(ptr::null_mut(), new_value, Ordering::Release, Ordering::Acquire) {
                    Ok(_) => {
                        room.filled += 1;
                        return;
                    }
                    // Another loader took it: look at what it put there.
                    Err(now) => current = now,
                }
                continue;
            }
            // Loading leaves no tombstones: a non-null slot holds an entry.
            let there = match entry_in(current) {
                // SAFETY: protected by the guard.
                Some(p) if current.addr() & TAG_MASK == tag => unsafe { &*p },
                _ => {
                    at = (at + 1) & room.table.mask;
                    current = self.guard.protect(&slots[at], Ordering::Acquire);
                    continue;
                }
            };
            if !there.same_key(new_ref) {
                at = (at + 1) & room.table.mask;
                current = self.guard.protect(&slots[at], Ordering::Acquire);
                continue;
            }
            if there.order() >= new_ref.order() {
                // SAFETY: never published.
                unsafe { Entry::free(new) };
                return;
            }
            match slots[at].compare_exchange(current, new_value, Ordering::Release, Ordering::Acquire) {
                Ok(_) => {
                    // SAFETY: unreachable from the table now.
                    unsafe { self.index.retire(there as *const Entry as *mut Entry) };
                    return;
                }
                Err(now) => current = now,
            }
        }
    }

    /// Returns the slots `room` claimed and did not fill.
    fn done(&self, room: Room<'_>) {
        self.index.used.fetch_sub(room.claimed - room.filled, Ordering::Relaxed);
        self.index.live.fetch_add(room.filled, Ordering::Relaxed);
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
    fn entry(self, segment: &Arc<Segment>) -> Option<Entry> {
        let blob = StoredBlob::at(segment, &self.blob)?;
        Some(Entry::new(self.hash, self.key, self.module_len as usize, self.kind, blob))
    }
}

/// Records waiting to be published into a set of indexes (one per shard),
/// in the order found: a segment's records, published once all of it was
/// read and found usable. Each lands in a random slot of a table of
/// millions, a cache miss, which publishing asks for some records ahead.
/// (Grouping them by the part of the table they land in, to publish one
/// part at a time, cost more in scattered writes than it saved once the
/// slots were prefetched: 10–20% of start-up, measured.)
#[derive(Default)]
pub struct Batch {
    /// The records and the shard of each.
    records: Vec<(usize, Pending)>,
    /// Records per shard.
    per_shard: Vec<usize>,
}

/// How many records ahead [`Batch::publish`] asks for a home slot: about
/// a miss's latency in publishes (8 and 16 measured alike).
const PREFETCH_AHEAD: usize = 16;

/// Asks the CPU to bring `slot`'s cache line in, to be written.
#[inline(always)]
fn prefetch_for_write<T>(slot: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(slot as *const T as *const i8)
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above; `prfm` only hints.
    unsafe {
        std::arch::asm!("prfm pstl1keep, [{0}]", in(reg) slot as *const T, options(nostack, readonly, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = slot;
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Room for `records` more.
    pub fn reserve(&mut self, records: usize) {
        self.records.reserve(records);
    }

    pub fn push(&mut self, shard: usize, record: Pending) {
        self.records.push((shard, record));
        if self.per_shard.len() <= shard {
            self.per_shard.resize(shard + 1, 0);
        }
        self.per_shard[shard] += 1;
    }

    pub fn len(&self) -> usize {
        self.per_shard.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.per_shard.clear();
    }

    /// Room in every index for its records, all held at once, or none
    /// (tables grown in between, with no room held, so that two loaders
    /// never wait for each other).
    fn rooms<'l>(&self, indexes: &'l [Loading<'_>]) -> Vec<Option<Room<'l>>> {
        'again: loop {
            let mut rooms = Vec::with_capacity(indexes.len());
            for (shard, loading) in indexes.iter().enumerate() {
                let records = self.per_shard.get(shard).copied().unwrap_or(0);
                if records == 0 {
                    rooms.push(None);
                    continue;
                }
                match loading.room(records) {
                    Some(room) => rooms.push(Some(room)),
                    None => {
                        for (held, room) in rooms.into_iter().enumerate() {
                            if let Some(room) = room {
                                indexes[held].done(room);
                            }
                        }
                        loading.grow_for(records);
                        continue 'again;
                    }
                }
            }
            return rooms;
        }
    }

    /// Publishes every record into `indexes[shard]`, their entries made in
    /// one [`Block`].
    pub fn publish(&mut self, indexes: &[Loading<'_>], segment: &Arc<Segment>) {
        let total = self.len();
        if total == 0 {
            return self.clear();
        }
        let mut rooms = self.rooms(indexes);
        let block = Box::new(Block { live: AtomicUsize::new(total), entries: Box::new_uninit_slice(total) });
        populate(block.entries.as_ptr(), total);
        let block = BlockRef(NonNull::from(Box::leak(block)));
        // SAFETY: alive until its count drops to zero, which needs `total` releases.
        let slots: *mut MaybeUninit<Entry> = unsafe { (*block.0.as_ptr()).entries.as_mut_ptr() };
        let mut made = 0;
        let mut records = self.records.drain(..);
        loop {
            // The home slot of a record a few ahead, asked for now: by the
            // time that one is published, its slot is in cache.
            if let Some((Some(Some(room)), ahead)) = records.as_slice().get(PREFETCH_AHEAD).map(|(shard, r)| (rooms.get(*shard), r)) {
                prefetch_for_write(&room.table.slots[room.table.home(ahead.hash)]);
            }
            let Some((shard, record)) = records.next() else { break };
            let (Some(mut entry), Some(Some(room))) = (record.entry(segment), rooms.get_mut(shard)) else { continue };
            entry.block = Some(block);
            // SAFETY: `made` < `total`: one slot per record pushed.
            let at = unsafe { slots.add(made) };
            made += 1;
            // SAFETY: a slot of the block never written before.
            let new = unsafe { (*at).write(entry) } as *mut Entry;
            // SAFETY: fully made and not yet shared.
            unsafe { indexes[shard].publish(room, new) };
        }
        drop(records);
        for (shard, room) in rooms.into_iter().enumerate() {
            if let Some(room) = room {
                indexes[shard].done(room);
            }
        }
        self.per_shard.clear();
        // SAFETY: the slots never made hold no entry to wait for.
        unsafe { block.release(total - made) };
    }
}

pub struct Index {
    /// The current table; one outgrown is retired to `collector`.
    table: AtomicPtr<Table>,
    /// Frees what readers may still hold: entries withdrawn or replaced,
    /// and outgrown tables.
    collector: Collector,
    /// Entries in the table.
    live: AtomicUsize,
    /// Slots taken: entries, tombstones, and slots loaders claimed.
    used: AtomicUsize,
    /// Held by every change (see the module's comment).
    changes: Mutex<()>,
    /// Held shared by loaders while they publish, and alone to replace the
    /// table.
    resizing: RwLock<()>,
}

impl Default for Index {
    fn default() -> Index {
        Index {
            table: AtomicPtr::new(Box::into_raw(Box::new(Table::with_slots(16)))),
            collector: Collector::new(),
            live: AtomicUsize::new(0),
            used: AtomicUsize::new(0),
            changes: Mutex::new(()),
            resizing: RwLock::new(()),
        }
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let table = *self.table.get_mut();
        // SAFETY: no reader or writer is left (`&mut self`); every entry in
        // the table is freed once, then the table. What was retired the
        // collector frees as it drops.
        unsafe {
            for slot in (*table).slots.iter() {
                if let Some(p) = entry_in(slot.load(Ordering::Relaxed)) {
                    Entry::free(p);
                }
            }
            drop(Box::from_raw(table));
        }
    }
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
        self.read_hashed(key_hash(module, version, kind), |e| e.is(module, version, kind), read)
    }

    fn read_hashed<R>(&self, hash: u64, matches: impl Fn(&Entry) -> bool, read: impl FnOnce(&Entry) -> R) -> Option<R> {
        let guard = self.collector.enter();
        // SAFETY: a table is freed only after every guard that could load it.
        let table = unsafe { &*guard.protect(&self.table, Ordering::Acquire) };
        let (_, found) = table.find(hash, |slot| guard.protect(slot, Ordering::Acquire), matches)?;
        // SAFETY: protected by `guard`, which outlives `read`.
        Some(read(unsafe { &*found }))
    }

    /// The blob stored for a key, if any.
    pub fn blob(&self, module: &str, version: &str, kind: RecordKind) -> Option<StoredBlob> {
        self.read(module, version, kind, |e| e.blob.clone())
    }

    /// Whether a blob is stored for a key.
    pub fn contains(&self, module: &str, version: &str, kind: RecordKind) -> bool {
        self.read(module, version, kind, |_| ()).is_some()
    }

    fn changing(&self) -> MutexGuard<'_, ()> {
        // The guarded data is the table, which a panicked holder left whole
        // (every change is one store into a slot, or one table swapped in).
        self.changes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The writer's view of the table (with `changes` held: nobody else
    /// replaces it or frees what it points at).
    fn writer_table(&self) -> &Table {
        // SAFETY: replaced only by `grow_for`, which a writer calls itself.
        unsafe { &*self.table.load(Ordering::Acquire) }
    }

    /// The slot and entry of a key (with `changes` held).
    fn find_for_writer(&self, hash: u64, module: &str, version: &str, kind: RecordKind) -> Option<(usize, &Entry)> {
        let (at, p) = self.writer_table().find(hash, |slot| slot.load(Ordering::Acquire), |e| e.is(module, version, kind))?;
        // SAFETY: only writers retire entries, and the caller is the writer.
        Some((at, unsafe { &*p }))
    }

    /// Hands an entry no longer in the table to the collector.
    ///
    /// # Safety
    /// `p` is an entry unreachable from the table, retired once.
    unsafe fn retire(&self, p: *mut Entry) {
        // SAFETY: the caller's promise; `Entry::reclaim` frees it either way.
        unsafe { self.collector.retire(p, Entry::reclaim) };
    }

    /// Rebuilds the table with room for `records` more entries than it
    /// holds (dropping its tombstones), if it has not that room already.
    fn grow_for(&self, records: usize) {
        let _alone = self.resizing.write().unwrap_or_else(|p| p.into_inner());
        let old = self.table.load(Ordering::Acquire);
        // SAFETY: only replaced here, under `resizing`.
        let old_table = unsafe { &*old };
        if self.used.load(Ordering::Relaxed) + records <= old_table.limit() {
            return; // another loader grew it
        }
        let live = self.live.load(Ordering::Relaxed);
        // Twice what is needed now, so that a table growing one entry at a
        // time is rebuilt a logarithmic number of times.
        let new = Table::with_slots(Table::slots_for((live + records).max(live * 2)));
        for slot in old_table.slots.iter() {
            let value = slot.load(Ordering::Acquire);
            if let Some(p) = entry_in(value) {
                // SAFETY: entries in the table are live; nobody retires them meanwhile.
                new.place(value, unsafe { (*p).hash });
            }
        }
        self.used.store(live, Ordering::Relaxed);
        self.table.store(Box::into_raw(Box::new(new)), Ordering::Release);
        // SAFETY: no new reader finds it; those reading it hold guards.
        unsafe { self.collector.retire(old, seize::reclaim::boxed) };
    }

    /// Puts `new` in place of the entry of its key, or into a free slot.
    fn insert_entry(&self, new: Entry) {
        if self.used.load(Ordering::Relaxed) + 1 > self.writer_table().limit() {
            self.grow_for(1);
        }
        let table = self.writer_table();
        let hash = new.hash;
        if let Some((at, old)) = table.find(hash, |slot| slot.load(Ordering::Acquire), |e| e.same_key(&new)) {
            table.slots[at].store(tagged(new.boxed(), hash), Ordering::Release);
            // SAFETY: replaced in the table just now.
            unsafe { self.retire(old) };
            return;
        }
        // The key is not there: the first tombstone or free slot on its probe.
        let mut at = table.home(hash);
        loop {
            let p = table.slots[at].load(Ordering::Acquire);
            if p.is_null() {
                self.used.fetch_add(1, Ordering::Relaxed);
                break;
            }
            if p == tombstone() {
                break;
            }
            at = (at + 1) & table.mask;
        }
        table.slots[at].store(tagged(new.boxed(), hash), Ordering::Release);
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    /// Withdraws the entry in slot `at` (with `changes` held).
    fn withdraw_at(&self, at: usize) {
        let table = self.writer_table();
        // A slot before a free one ends every probe that reaches it, so it
        // can be free itself; else probes must still go past it.
        let next_free = table.slots[(at + 1) & table.mask].load(Ordering::Acquire).is_null();
        let old = table.slots[at].swap(if next_free { ptr::null_mut() } else { tombstone() }, Ordering::AcqRel);
        if next_free {
            self.used.fetch_sub(1, Ordering::Relaxed);
        }
        self.live.fetch_sub(1, Ordering::Relaxed);
        if let Some(old) = entry_in(old) {
            // SAFETY: swapped out of the table just now.
            unsafe { self.retire(old) };
        }
    }

    /// Publishes `blob`, replacing any older entry for the same key.
    pub fn insert(&self, module: &str, version: &str, kind: RecordKind, blob: StoredBlob) {
        let _changing = self.changing();
        self.insert_hashed(key_hash(module, version, kind), module, version, kind, blob)
    }

    fn insert_hashed(&self, hash: u64, module: &str, version: &str, kind: RecordKind, blob: StoredBlob) {
        self.insert_entry(Entry::new(hash, owned_key(module, version), module.len(), kind, blob));
    }

    /// Replaces the entry of a key with `blob` if it still holds the record
    /// `was` (a [`StoredBlob::record_id`]): eviction's carried copy, which
    /// must not undo a refill or a purge that came in between.
    pub fn replace_record(&self, module: &str, version: &str, kind: RecordKind, was: (u64, u64), blob: StoredBlob) -> bool {
        let _changing = self.changing();
        let hash = key_hash(module, version, kind);
        if self.find_for_writer(hash, module, version, kind).map(|(_, e)| e.blob.record_id()) != Some(was) {
            return false;
        }
        self.insert_hashed(hash, module, version, kind, blob);
        true
    }

    /// Withdraws the entry of a key if it still holds the record `was`.
    pub fn remove_record(&self, module: &str, version: &str, kind: RecordKind, was: (u64, u64)) -> bool {
        let _changing = self.changing();
        match self.find_for_writer(key_hash(module, version, kind), module, version, kind) {
            Some((at, e)) if e.blob.record_id() == was => {
                self.withdraw_at(at);
                true
            }
            _ => false,
        }
    }

    /// Publishes `blob` unless an entry of the same key was stored later
    /// (start-up recovery: segments of different cores interleave in time,
    /// so a file's order is not the records' order).
    pub fn insert_if_newer(&self, module: &str, version: &str, kind: RecordKind, blob: StoredBlob) {
        let _changing = self.changing();
        let hash = key_hash(module, version, kind);
        let stored_at = self.find_for_writer(hash, module, version, kind).map(|(_, e)| e.blob.stored_at_ms());
        if stored_at.is_some_and(|at| at > blob.stored_at_ms()) {
            return;
        }
        self.insert_hashed(hash, module, version, kind, blob)
    }

    /// Start-up's way in (see [`Loading`]), for one thread.
    pub fn loading(&self) -> Loading<'_> {
        Loading { index: self, guard: self.collector.enter() }
    }

    /// Makes room for `records` more entries.
    pub fn reserve(&self, records: usize) {
        let _changing = self.changing();
        if self.used.load(Ordering::Relaxed) + records > self.writer_table().limit() {
            self.grow_for(records);
        }
    }

    /// Start-up, once every record is in: withdraws the entry of a key if
    /// it was stored at or before `at` (a tombstone's time: it hides what
    /// was stored before it, not a later refill). Since the later of two
    /// records wins, an entry hidden so had no later record to show instead.
    pub fn withdraw_stored_by(&self, module: &str, version: &str, kind: RecordKind, at: u64) -> bool {
        let _changing = self.changing();
        match self.find_for_writer(key_hash(module, version, kind), module, version, kind) {
            Some((slot, e)) if e.blob.stored_at_ms() <= at => {
                self.withdraw_at(slot);
                true
            }
            _ => false,
        }
    }

    /// Withdraws the entry of a key, if any.
    pub fn remove(&self, module: &str, version: &str, kind: RecordKind) -> bool {
        let _changing = self.changing();
        self.remove_hashed(key_hash(module, version, kind), module, version, kind)
    }

    fn remove_hashed(&self, hash: u64, module: &str, version: &str, kind: RecordKind) -> bool {
        match self.find_for_writer(hash, module, version, kind) {
            Some((at, _)) => {
                self.withdraw_at(at);
                true
            }
            None => false,
        }
    }

    /// A copy of every entry, in no particular order (as the table is
    /// walked): for walks that take their time (a scrub, `verify`).
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        let guard = self.collector.enter();
        // SAFETY: as in `read_hashed`.
        let table = unsafe { &*guard.protect(&self.table, Ordering::Acquire) };
        let mut all = Vec::with_capacity(self.len());
        for slot in table.slots.iter() {
            if let Some(p) = entry_in(guard.protect(slot, Ordering::Acquire)) {
                // SAFETY: protected by `guard`.
                all.push(unsafe { &*p }.copy());
            }
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
        self.live.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::segment::Segment;
    use std::collections::HashMap;
    use std::sync::Arc;

    impl Index {
        /// The blob at `hash` of a key (a hash chosen to collide).
        fn hashed(&self, hash: u64, module: &str, version: &str, kind: RecordKind) -> Option<StoredBlob> {
            self.read_hashed(hash, |e| e.is(module, version, kind), |e| e.blob.clone())
        }

        /// Slots holding an entry of `hash`.
        fn slots_of(&self, hash: u64) -> usize {
            self.entries().filter(|e| e.hash == hash).count()
        }
    }

    impl Loading<'_> {
        /// Publishes one entry of its own allocation, as a batch does.
        fn publish_one(&self, entry: Entry) {
            let mut room = loop {
                match self.room(1) {
                    Some(room) => break room,
                    None => self.grow_for(1),
                }
            };
            // SAFETY: made just now, not shared.
            unsafe { self.publish(&mut room, entry.boxed()) };
            self.done(room);
        }
    }

    fn segment(tag: u8) -> Arc<Segment> {
        let f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut &f, &[tag; 16]).unwrap();
        Arc::new(Segment::map(1, &f, 16).unwrap())
    }

    fn blob(tag: u8) -> StoredBlob {
        StoredBlob::new(segment(tag), 0, 16, [tag; 32], tag as u64).unwrap()
    }

    fn owned(module: &str, version: &str, kind: RecordKind, blob: StoredBlob) -> Entry {
        Entry::new(key_hash(module, version, kind), owned_key(module, version), module.len(), kind, blob)
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
        // A collision neighbour survives its neighbour's removal.
        assert!(idx.remove_hashed(42, "example.com/b", "v1.0.0", RecordKind::Zip));
        assert!(idx.hashed(42, "example.com/b", "v1.0.0", RecordKind::Zip).is_none());
        assert_eq!(idx.hashed(42, "example.com/c", "v1.0.0", RecordKind::Zip).unwrap().bytes()[0], 2);
        assert!(idx.remove_hashed(42, "example.com/c", "v1.0.0", RecordKind::Zip));
        assert_eq!(idx.slots_of(42), 0, "nothing of the hash is left");
        assert_eq!(idx.len(), 0);
    }

    #[test]
    fn a_load_from_many_threads_keeps_the_later_record_of_each_key() {
        let idx = Index::new();
        let at = |m: &str, v: &str, k, tag: u8| owned(m, v, k, blob(tag));
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
                    for e in found {
                        loading.publish_one(e);
                    }
                });
            }
        });
        let get = |m, k| idx.blob(m, "v1.0.0", k).map(|b| b.bytes()[0]);
        assert_eq!(get("example.com/a", RecordKind::Zip), Some(5), "stored later (tag = stored time) wins, whatever the order found");
        assert_eq!(get("example.com/a", RecordKind::Mod), Some(2));
        assert_eq!(get("example.com/b", RecordKind::Zip), Some(9));
        let collided = idx.hashed(key_hash("example.com/a", "v1.0.0", RecordKind::Zip), "example.com/c", "v1.0.0", RecordKind::Zip);
        assert_eq!(collided.map(|b| b.bytes()[0]), Some(7), "a colliding key takes a slot of its own, not another's");
        assert_eq!(idx.entries().count(), 5);
        assert_eq!(idx.len(), 5);
        // A tombstone hides what was stored at or before it, not a later record.
        assert!(!idx.withdraw_stored_by("example.com/b", "v1.0.0", RecordKind::Zip, 8));
        assert!(idx.withdraw_stored_by("example.com/gone", "v1.0.0", RecordKind::Zip, 4));
        assert_eq!(get("example.com/gone", RecordKind::Zip), None);
        assert_eq!(get("example.com/b", RecordKind::Zip), Some(9));
    }

    /// Records of 3 shards, each key found by every thread, each thread
    /// publishing batches into tables that start small and must grow while
    /// the others publish.
    #[test]
    fn batches_from_many_threads_grow_the_tables_and_lose_nothing() {
        let seg = segment(1);
        let indexes: Vec<Index> = (0..3).map(|_| Index::new()).collect();
        let keys = 3_000u64;
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let (indexes, seg) = (&indexes, &seg);
                scope.spawn(move || {
                    let loading: Vec<_> = indexes.iter().map(Index::loading).collect();
                    let mut batch = Batch::new();
                    for chunk in 0..10u64 {
                        for i in (chunk * keys / 10)..((chunk + 1) * keys / 10) {
                            // The thread's own stored time: thread 2's copy is the latest.
                            let stored_at_ms = if t == 2 { 100 } else { t };
                            let at = BlobAt { offset: 0, len: 16, sha256: [1; 32], stored_at_ms, place: None };
                            batch.push((i % 3) as usize, Pending::owned(&format!("example.com/m{i}"), "v1.0.0", RecordKind::Zip, at));
                        }
                        batch.publish(&loading, seg);
                        assert!(batch.is_empty());
                    }
                });
            }
        });
        for i in 0..keys {
            let index = &indexes[(i % 3) as usize];
            let stored = index.blob(&format!("example.com/m{i}"), "v1.0.0", RecordKind::Zip).map(|b| b.stored_at_ms());
            assert_eq!(stored, Some(100), "key {i}");
        }
        assert_eq!(indexes.iter().map(Index::len).sum::<usize>(), keys as usize);
        assert_eq!(indexes.iter().map(|i| i.entries().count()).sum::<usize>(), keys as usize);
        drop(indexes);
        assert_eq!(Arc::strong_count(&seg), 1, "every entry, published, replaced or dropped, was freed with its blocks");
    }

    /// Inserts, replacements and removals, many of one hash, against a
    /// plain map: probes go past tombstones, reuse them, and rebuilds
    /// (growing or not) keep every entry.
    #[test]
    fn follows_a_plain_map_through_inserts_and_removals() {
        let seg = segment(1);
        let idx = Index::new();
        let mut model: HashMap<u64, u64> = HashMap::new();
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        // A third of the keys share one hash.
        let hash_of = |k: u64| if k % 3 == 0 { 7 } else { key_hash(&format!("example.com/k{k}"), "v1.0.0", RecordKind::Info) };
        for step in 0..20_000u64 {
            let k = next() % 400;
            let module = format!("example.com/k{k}");
            if next() % 3 == 0 {
                assert_eq!(idx.remove_hashed(hash_of(k), &module, "v1.0.0", RecordKind::Info), model.remove(&k).is_some(), "remove {k}");
            } else {
                let b = StoredBlob::new(seg.clone(), 0, 16, [1; 32], step).unwrap();
                idx.insert_entry(Entry::new(hash_of(k), owned_key(&module, "v1.0.0"), module.len(), RecordKind::Info, b));
                model.insert(k, step);
            }
            if step % 997 == 0 {
                for k in 0..400 {
                    let got = idx.hashed(hash_of(k), &format!("example.com/k{k}"), "v1.0.0", RecordKind::Info).map(|b| b.stored_at_ms());
                    assert_eq!(got, model.get(&k).copied(), "key {k} at step {step}");
                }
            }
        }
        assert_eq!(idx.len(), model.len());
        assert_eq!(idx.entries().count(), model.len());
        drop(idx);
        assert_eq!(Arc::strong_count(&seg), 1, "every entry freed");
    }

    /// Readers on other threads while the writer inserts, replaces,
    /// removes and grows the table: every answer is one the writer
    /// published for that key.
    #[test]
    fn readers_see_whole_entries_while_the_writer_changes_the_table() {
        let seg = segment(1);
        let idx = Index::new();
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                let (idx, done) = (&idx, &done);
                scope.spawn(move || {
                    let mut seen = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        for k in 0..64u64 {
                            let module = format!("example.com/k{k}");
                            if let Some(at) = idx.read(&module, "v1.0.0", RecordKind::Mod, |e| {
                                assert_eq!(e.module(), module);
                                e.blob.stored_at_ms()
                            }) {
                                // The writer stores key k with times ≡ k (mod 64).
                                assert_eq!(at % 64, k);
                                seen += 1;
                            }
                        }
                    }
                    assert!(seen > 0);
                });
            }
            for round in 0..300u64 {
                for k in 0..64u64 {
                    let module = format!("example.com/k{k}");
                    if (round + k) % 5 == 0 {
                        idx.remove(&module, "v1.0.0", RecordKind::Mod);
                    } else {
                        let b = StoredBlob::new(seg.clone(), 0, 16, [1; 32], round * 64 + k).unwrap();
                        idx.insert(&module, "v1.0.0", RecordKind::Mod, b);
                    }
                }
            }
            done.store(true, Ordering::Relaxed);
        });
    }

    #[test]
    fn a_batch_publishes_each_record_once_into_its_shard_and_frees_what_loses() {
        let at = BlobAt { offset: 0, len: 16, sha256: [1; 32], stored_at_ms: 1, place: None };
        let indexes: Vec<Index> = (0..2).map(|_| Index::new()).collect();
        indexes[0].reserve(1000);
        let seg = segment(7);
        let mut batch = Batch::new();
        for (i, m) in ["example.com/a", "example.com/b", "example.com/c"].into_iter().enumerate() {
            batch.push(i % 2, Pending::owned(m, "v1.0.0", RecordKind::Zip, BlobAt { stored_at_ms: i as u64 + 1, ..at }));
        }
        // An older record of a key, found later: freed, not published.
        batch.push(0, Pending::owned("example.com/a", "v1.0.0", RecordKind::Zip, BlobAt { stored_at_ms: 0, ..at }));
        assert_eq!(batch.len(), 4);
        let loading: Vec<_> = indexes.iter().map(Index::loading).collect();
        batch.publish(&loading, &seg);
        drop(loading);
        assert!(batch.is_empty());
        assert_eq!((indexes[0].len(), indexes[1].len()), (2, 1));
        let stored = |i: usize, m| indexes[i].blob(m, "v1.0.0", RecordKind::Zip).map(|b| b.stored_at_ms());
        assert_eq!((stored(0, "example.com/a"), stored(1, "example.com/b"), stored(0, "example.com/c")), (Some(1), Some(2), Some(3)));
        drop(indexes);
        assert_eq!(Arc::strong_count(&seg), 1, "the block and every entry in it freed");
    }

    #[test]
    fn colliding_hashes_take_slots_of_their_own() {
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
        assert_eq!(idx.slots_of(42), 3);
    }
}
