//! Module-path routing: which core owns a module.
//!
//! Every core computes the same answer with no shared state: a fixed-seed
//! hash of the decoded module path, reduced to a core number. All versions
//! and kinds of one module live on one core, so `list`, `@latest` and every
//! fill for that module meet in one place.

use std::hash::{BuildHasher, Hasher};

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

#[cfg(test)]
mod tests {
    use super::*;

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
