//! Routing: which core owns an artifact.
//!
//! Every core computes the same answer with no shared state: a fixed-seed
//! hash of the decoded module path, reduced to a core number. All versions
//! and kinds of one module live on one core, so `list`, `@latest` and every
//! fill for that module meet in one place; the store's recovery files each
//! record into the shard this names. Owns that rule and the one exception
//! to it ([`route_key`]); it never moves a request itself (the runtime's
//! mesh does).

use std::hash::{BuildHasher, Hasher};

use crate::artifact::ArtifactKey;
use crate::store::RecordKind;

fn module_hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(0x9e37_79b9_7f4a_7c15, 0xbf58_476d_1ce4_e5b9, 0x94d0_49bb_1331_11eb, 0x2545_f491_4f6c_dd1d)
}

pub fn module_hash(module: &str) -> u64 {
    let mut h = module_hasher().build_hasher();
    h.write(module.as_bytes());
    h.finish()
}

/// The owning core of `module` among `cores` (Lemire's multiply-shift: no division).
pub fn owner_of(module: &str, cores: usize) -> usize {
    ((module_hash(module) as u128 * cores as u128) >> 64) as usize
}

/// The string whose hash names the owner core of `key`.
///
/// Immutable blobs route by `module` (every core reads a hit in place from
/// the owner's shard of the module). Checksum-database answers that change
/// (lookups, the tree head, partial tiles) route by their path instead, so
/// the lookups of a cold build spread over every core's fetch threads
/// rather than queueing behind one core's. Start-up recovery files each
/// stored record by the same rule ([`owner_of_record`]).
pub fn route_key(key: &ArtifactKey) -> &str {
    if key.kind.is_sumdb() && !key.kind.is_immutable() {
        &key.version
    } else {
        &key.module
    }
}

/// The owning core of a stored record, by [`route_key`]'s rule.
pub fn owner_of_record(module: &str, version: &str, kind: RecordKind, cores: usize) -> usize {
    owner_of(if kind == RecordKind::SumAnswer { version } else { module }, cores)
}

/// The owning core of `key` among `cores`.
pub fn owner_of_key(key: &ArtifactKey, cores: usize) -> usize {
    owner_of(route_key(key), cores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::Kind;

    #[test]
    fn stored_answers_route_by_module_and_volatile_sumdb_answers_by_path() {
        let tile = ArtifactKey { module: "sumdb/sum.example".into(), version: "tile/8/0/000".into(), kind: Kind::SumTile };
        assert_eq!(route_key(&tile), "sumdb/sum.example");
        let lookup =
            ArtifactKey { module: "sumdb/sum.example".into(), version: "lookup/example.com/a@v1.0.0".into(), kind: Kind::SumLookup };
        assert_eq!(route_key(&lookup), "lookup/example.com/a@v1.0.0");
        let list = ArtifactKey { module: "example.com/m1".into(), version: "".into(), kind: Kind::List };
        assert_eq!(route_key(&list), "example.com/m1");
    }

    #[test]
    fn owner_is_stable_and_in_range() {
        for cores in 1..=64 {
            for m in ["example.com/a", "example.com/b/v2", "corp.example/X"] {
                let o = owner_of(m, cores);
                assert!(o < cores);
                assert_eq!(o, owner_of(m, cores));
            }
        }
    }

    #[test]
    fn spreads_modules_roughly_evenly() {
        let cores = 8;
        let mut counts = [0usize; 8];
        for i in 0..80_000 {
            counts[owner_of(&format!("example.com/org{}/repo{}", i % 97, i), cores)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
