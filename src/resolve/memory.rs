//! The bounded in-memory maps a core keeps for the modules it owns: recent
//! `list`/`@latest` (and checksum-database) answers, remembered 404/410s,
//! and zips whose last streamed fill failed.
//!
//! Keys come from clients: without a bound, asking for millions of distinct
//! missing modules would grow the negative map (and `list`s of distinct
//! modules the recent one) without limit. Owns that bound; what an entry
//! means and when it is past use is the caller's (see `policy`).

use std::collections::HashMap;

use crate::artifact::ArtifactKey;

/// Most entries one core keeps in each of its in-memory maps.
pub const MEMORY_CACHE_ENTRIES: usize = 100_000;

pub struct BoundedMap<V> {
    entries: HashMap<ArtifactKey, V>,
}

impl<V> Default for BoundedMap<V> {
    fn default() -> Self {
        BoundedMap { entries: HashMap::new() }
    }
}

impl<V> BoundedMap<V> {
    pub fn get(&self, key: &ArtifactKey) -> Option<&V> {
        self.entries.get(key)
    }

    pub fn contains(&self, key: &ArtifactKey) -> bool {
        self.entries.contains_key(key)
    }

    pub fn remove(&mut self, key: &ArtifactKey) {
        self.entries.remove(key);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Inserts, making room first when the map is full: entries `expired`
    /// says are past use go first, then arbitrary ones down to three
    /// quarters of the bound, so the sweep runs once per many inserts.
    pub fn insert(&mut self, key: ArtifactKey, value: V, expired: impl Fn(&ArtifactKey, &V) -> bool) {
        let map = &mut self.entries;
        if map.len() >= MEMORY_CACHE_ENTRIES && !map.contains_key(&key) {
            map.retain(|k, v| !expired(k, v));
            if map.len() >= MEMORY_CACHE_ENTRIES {
                let excess = map.len() - MEMORY_CACHE_ENTRIES * 3 / 4;
                let victims: Vec<ArtifactKey> = map.keys().take(excess).cloned().collect();
                for k in victims {
                    map.remove(&k);
                }
            }
        }
        map.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::Kind;

    fn key(i: usize) -> ArtifactKey {
        ArtifactKey { module: format!("example.com/m{i}").into(), version: "".into(), kind: Kind::List }
    }

    #[test]
    fn memory_caches_stay_bounded_and_drop_expired_entries_first() {
        let mut map: BoundedMap<bool> = BoundedMap::default();
        // `true` marks an expired entry.
        for i in 0..MEMORY_CACHE_ENTRIES {
            map.insert(key(i), i % 2 == 0, |_, expired| *expired);
        }
        assert_eq!(map.len(), MEMORY_CACHE_ENTRIES);
        map.insert(key(usize::MAX), false, |_, expired| *expired);
        assert_eq!(map.len(), MEMORY_CACHE_ENTRIES / 2 + 1, "only the expired half goes");
        assert!(map.entries.values().all(|expired| !expired));

        // All fresh: arbitrary entries go, down to three quarters.
        for i in 0..MEMORY_CACHE_ENTRIES * 2 {
            map.insert(key(MEMORY_CACHE_ENTRIES + i), false, |_, expired| *expired);
            assert!(map.len() <= MEMORY_CACHE_ENTRIES);
        }
        assert!(map.contains(&key(MEMORY_CACHE_ENTRIES * 3 - 1)), "the new entry is kept");
        // Replacing an existing key never evicts.
        let n = map.len();
        map.insert(key(MEMORY_CACHE_ENTRIES * 3 - 1), true, |_, expired| *expired);
        assert_eq!(map.len(), n);
    }
}
