//! The checksum database's Merkle tree, re-implemented from x/mod's
//! `sumdb/tlog`: record and node hashes (RFC 6962), the dense order hashes
//! are stored in, tree hashes, inclusion proofs (a record is in the tree a
//! signed head names) and consistency proofs (a newer head extends an
//! older one), and reading stored hashes from tiles that are first
//! authenticated against a trusted tree head.
//!
//! Pure functions over hashes; tiles come from a caller's [`TileSource`].
//! Nothing here trusts a tile, a proof or a size it has not checked, and no
//! input makes it panic or loop: bad inputs are [`ProofError`]s.

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};

use super::tlog::Tile;

pub const HASH_SIZE: usize = 32;
pub type Hash = [u8; HASH_SIZE];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofError {
    /// The proof does not lead to the trusted hash.
    Failed,
    /// Arguments outside the tree (an index past its size, sizes out of order).
    OutOfRange,
    /// A tile of the wrong length, or tiles that do not hash to the tree head.
    BadTile(String),
    /// The tile source could not supply a tile.
    Source(String),
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProofError::Failed => f.write_str("proof does not match the signed tree head"),
            ProofError::OutOfRange => f.write_str("index or tree size out of range"),
            ProofError::BadTile(why) => write!(f, "tile refused: {why}"),
            ProofError::Source(why) => write!(f, "tile unavailable: {why}"),
        }
    }
}

impl std::error::Error for ProofError {}

/// The leaf hash of a record's text.
pub fn record_hash(data: &[u8]) -> Hash {
    Sha256::new().chain_update([0u8]).chain_update(data).finalize().into()
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new().chain_update([1u8]).chain_update(left).chain_update(right).finalize().into()
}

/// Where the hash at tree `level`, position `n`, lies in the dense order
/// of stored hashes (x/mod's `StoredHashIndex`).
pub fn stored_hash_index(level: u32, n: u64) -> u64 {
    // Level L's n'th hash is written right after level L+1's 2n+1'th hash.
    let mut n = n;
    for _ in 0..level {
        n = 2 * n + 1;
    }
    // Level 0's n'th hash is written at n + n/2 + n/4 + ...
    let mut i = 0u64;
    while n > 0 {
        i += n;
        n >>= 1;
    }
    i + level as u64
}

/// The inverse of [`stored_hash_index`]: (level, n).
pub fn split_stored_hash_index(index: u64) -> (u32, u64) {
    // stored_hash_index(0, n) < 2n, so n lies in [index/2, index/2 + log2(index)].
    let mut n = index / 2;
    let mut index_n = stored_hash_index(0, n);
    loop {
        // Each record n adds 1 + trailing_zeros(n+1) hashes.
        let x = index_n + 1 + (n + 1).trailing_zeros() as u64;
        if x > index {
            break;
        }
        n += 1;
        index_n = x;
    }
    let level = (index - index_n) as u32;
    (level, n >> level)
}

/// The largest power of two below `n` (n ≥ 2), with its log.
fn maxpow2(n: u64) -> (u64, u32) {
    let mut l = 0;
    while (1u64 << (l + 1)) < n {
        l += 1;
    }
    (1 << l, l)
}

/// The stored hashes needed for the hash of records `[lo, hi)`.
fn sub_tree_index(mut lo: u64, hi: u64, need: &mut Vec<u64>) {
    while lo < hi {
        let (k, level) = maxpow2(hi - lo + 1);
        need.push(stored_hash_index(level, lo >> level));
        lo += k;
    }
}

/// The hash of records `[lo, hi)` from the hashes [`sub_tree_index`] named,
/// taken off the front of `hashes`.
fn sub_tree_hash(mut lo: u64, hi: u64, hashes: &mut &[Hash]) -> Result<Hash, ProofError> {
    let mut parts = 0;
    while lo < hi {
        let (k, _) = maxpow2(hi - lo + 1);
        parts += 1;
        lo += k;
    }
    if parts == 0 || hashes.len() < parts {
        return Err(ProofError::OutOfRange);
    }
    let (mine, rest) = hashes.split_at(parts);
    *hashes = rest;
    let mut h = mine[parts - 1];
    for left in mine[..parts - 1].iter().rev() {
        h = node_hash(left, &h);
    }
    Ok(h)
}

/// Reads stored hashes by index.
pub trait HashReader {
    fn read_hashes(&mut self, indexes: &[u64]) -> Result<Vec<Hash>, ProofError>;
}

/// The hash of the tree of the first `n` records.
pub fn tree_hash(n: u64, reader: &mut impl HashReader) -> Result<Hash, ProofError> {
    if n == 0 {
        return Ok(Hash::default());
    }
    let mut need = Vec::new();
    sub_tree_index(0, n, &mut need);
    let hashes = reader.read_hashes(&need)?;
    let mut rest = hashes.as_slice();
    sub_tree_hash(0, n, &mut rest)
}

fn leaf_proof_index(lo: u64, hi: u64, n: u64, need: &mut Vec<u64>) {
    if lo + 1 == hi {
        return;
    }
    let (k, _) = maxpow2(hi - lo);
    if n < lo + k {
        leaf_proof_index(lo, lo + k, n, need);
        sub_tree_index(lo + k, hi, need);
    } else {
        sub_tree_index(lo, lo + k, need);
        leaf_proof_index(lo + k, hi, n, need);
    }
}

fn leaf_proof(lo: u64, hi: u64, n: u64, hashes: &mut &[Hash], proof: &mut Vec<Hash>) -> Result<(), ProofError> {
    if lo + 1 == hi {
        return Ok(());
    }
    let (k, _) = maxpow2(hi - lo);
    let other = if n < lo + k {
        leaf_proof(lo, lo + k, n, hashes, proof)?;
        sub_tree_hash(lo + k, hi, hashes)?
    } else {
        let other = sub_tree_hash(lo, lo + k, hashes)?;
        leaf_proof(lo + k, hi, n, hashes, proof)?;
        other
    };
    proof.push(other);
    Ok(())
}

/// The proof that record `n` is in the tree of `t` records.
pub fn prove_record(t: u64, n: u64, reader: &mut impl HashReader) -> Result<Vec<Hash>, ProofError> {
    if n >= t {
        return Err(ProofError::OutOfRange);
    }
    let mut need = Vec::new();
    leaf_proof_index(0, t, n, &mut need);
    if need.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader.read_hashes(&need)?;
    let mut rest = hashes.as_slice();
    let mut proof = Vec::new();
    leaf_proof(0, t, n, &mut rest, &mut proof)?;
    Ok(proof)
}

fn run_record_proof(p: &[Hash], lo: u64, hi: u64, n: u64, leaf: Hash) -> Result<Hash, ProofError> {
    if lo + 1 == hi {
        return if p.is_empty() { Ok(leaf) } else { Err(ProofError::Failed) };
    }
    let (last, inner) = p.split_last().ok_or(ProofError::Failed)?;
    let (k, _) = maxpow2(hi - lo);
    if n < lo + k {
        Ok(node_hash(&run_record_proof(inner, lo, lo + k, n, leaf)?, last))
    } else {
        Ok(node_hash(last, &run_record_proof(inner, lo + k, hi, n, leaf)?))
    }
}

/// Checks that `proof` shows record `n`, of hash `leaf`, in the tree of `t`
/// records whose hash is `tree`.
pub fn check_record(proof: &[Hash], t: u64, tree: &Hash, n: u64, leaf: &Hash) -> Result<(), ProofError> {
    if n >= t {
        return Err(ProofError::OutOfRange);
    }
    if run_record_proof(proof, 0, t, n, *leaf)? == *tree {
        Ok(())
    } else {
        Err(ProofError::Failed)
    }
}

fn tree_proof_index(lo: u64, hi: u64, n: u64, need: &mut Vec<u64>) {
    if n == hi {
        if lo != 0 {
            sub_tree_index(lo, hi, need);
        }
        return;
    }
    let (k, _) = maxpow2(hi - lo);
    if n <= lo + k {
        tree_proof_index(lo, lo + k, n, need);
        sub_tree_index(lo + k, hi, need);
    } else {
        sub_tree_index(lo, lo + k, need);
        tree_proof_index(lo + k, hi, n, need);
    }
}

fn tree_proof(lo: u64, hi: u64, n: u64, hashes: &mut &[Hash], proof: &mut Vec<Hash>) -> Result<(), ProofError> {
    if n == hi {
        if lo != 0 {
            proof.push(sub_tree_hash(lo, hi, hashes)?);
        }
        return Ok(());
    }
    let (k, _) = maxpow2(hi - lo);
    let other = if n <= lo + k {
        tree_proof(lo, lo + k, n, hashes, proof)?;
        sub_tree_hash(lo + k, hi, hashes)?
    } else {
        let other = sub_tree_hash(lo, lo + k, hashes)?;
        tree_proof(lo + k, hi, n, hashes, proof)?;
        other
    };
    proof.push(other);
    Ok(())
}

/// The proof that the tree of `t` records extends the tree of its first `n`.
pub fn prove_tree(t: u64, n: u64, reader: &mut impl HashReader) -> Result<Vec<Hash>, ProofError> {
    if n == 0 || n > t {
        return Err(ProofError::OutOfRange);
    }
    let mut need = Vec::new();
    tree_proof_index(0, t, n, &mut need);
    if need.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader.read_hashes(&need)?;
    let mut rest = hashes.as_slice();
    let mut proof = Vec::new();
    tree_proof(0, t, n, &mut rest, &mut proof)?;
    Ok(proof)
}

/// (old tree's hash, new tree's hash) as the proof computes them.
fn run_tree_proof(p: &[Hash], lo: u64, hi: u64, n: u64, old: Hash) -> Result<(Hash, Hash), ProofError> {
    if n == hi {
        return match (lo, p) {
            (0, []) => Ok((old, old)),
            (0, _) => Err(ProofError::Failed),
            (_, [h]) => Ok((*h, *h)),
            _ => Err(ProofError::Failed),
        };
    }
    let (last, inner) = p.split_last().ok_or(ProofError::Failed)?;
    let (k, _) = maxpow2(hi - lo);
    if n <= lo + k {
        let (oh, th) = run_tree_proof(inner, lo, lo + k, n, old)?;
        Ok((oh, node_hash(&th, last)))
    } else {
        let (oh, th) = run_tree_proof(inner, lo + k, hi, n, old)?;
        Ok((node_hash(last, &oh), node_hash(last, &th)))
    }
}

/// Checks that `proof` shows the tree of `t` records, hash `tree`, extends
/// the tree of `n` records, hash `old`.
pub fn check_tree(proof: &[Hash], t: u64, tree: &Hash, n: u64, old: &Hash) -> Result<(), ProofError> {
    if n == 0 || n > t {
        return Err(ProofError::OutOfRange);
    }
    let (oh, th) = run_tree_proof(proof, 0, t, n, *old)?;
    if oh == *old && th == *tree {
        Ok(())
    } else {
        Err(ProofError::Failed)
    }
}

/// Supplies hash tiles (their bytes, exactly `w` hashes each).
pub trait TileSource {
    fn read_tiles(&mut self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, ProofError>;
    /// Tiles that were just authenticated against a signed tree head (a
    /// source may keep them: a complete tile never changes).
    fn authenticated(&mut self, tiles: &[Tile], data: &[Vec<u8>]) {
        let _ = (tiles, data);
    }
}

/// The tile holding stored hash `index`, and where in its data that hash's
/// subtree lies (x/mod's `tileForIndex`).
fn tile_for_index(h: u32, index: u64) -> (Tile, usize, usize) {
    let (level, n) = split_stored_hash_index(index);
    let tile_level = level / h;
    let level = level - tile_level * h; // level within the tile
    let tile_n = (n << level) >> h;
    let n_in = n - ((tile_n << h) >> level); // n within the tile, at `level`
    let w = (n_in + 1) << level;
    let tile = Tile { h, level: Some(tile_level), n: tile_n, w };
    (tile, (n_in << level) as usize * HASH_SIZE, ((n_in + 1) << level) as usize * HASH_SIZE)
}

/// The hash of a subtree that fills `data` (2^k hashes).
fn tile_hash(data: &[u8]) -> Hash {
    if data.len() <= HASH_SIZE {
        let mut h = Hash::default();
        h[..data.len()].copy_from_slice(data);
        return h;
    }
    let half = data.len() / 2;
    node_hash(&tile_hash(&data[..half]), &tile_hash(&data[half..]))
}

/// Stored hash `index` out of `tile`'s data.
fn hash_from_tile(tile: &Tile, data: &[u8], index: u64) -> Result<Hash, ProofError> {
    let (t1, start, end) = tile_for_index(tile.h, index);
    if tile.level != t1.level || tile.n != t1.n || tile.w < t1.w || data.len() < end {
        return Err(ProofError::BadTile(format!("hash {index} is in {t1}, not {tile}")));
    }
    Ok(tile_hash(&data[start..end]))
}

/// `tile`'s `k`-th parent among the tiles of a tree of `n` records; `None`
/// past the top.
fn tile_parent(tile: &Tile, k: u32, n: u64) -> Option<Tile> {
    let level = tile.level? + k;
    let shift = (k * tile.h) as u64;
    let mut t = Tile { h: tile.h, level: Some(level), n: if shift >= 64 { 0 } else { tile.n >> shift }, w: 1 << tile.h };
    let max = n.checked_shr(level * tile.h).unwrap_or(0);
    if (t.n << t.h) + t.w >= max {
        if t.n << t.h >= max {
            return None;
        }
        t.w = max - (t.n << t.h);
    }
    Some(t)
}

/// Reads stored hashes from tiles, authenticating every tile against the
/// trusted tree head first (x/mod's `TileHashReader`).
pub struct TileHashReader<'a, S> {
    /// Records in the trusted tree.
    pub size: u64,
    /// Its hash, from a verified note.
    pub hash: Hash,
    /// Tile height (8 for the Go checksum database).
    pub height: u32,
    pub source: &'a mut S,
}

impl<S: TileSource> HashReader for TileHashReader<'_, S> {
    fn read_hashes(&mut self, indexes: &[u64]) -> Result<Vec<Hash>, ProofError> {
        let (h, n) = (self.height, self.size);
        if !(1..=30).contains(&h) || n == 0 {
            return Err(ProofError::OutOfRange);
        }
        let mut order: HashMap<Tile, usize> = HashMap::new();
        let mut tiles: Vec<Tile> = Vec::new();
        // The tiles that recompute the tree hash: if it matches, they are authentic.
        let mut stx = Vec::new();
        sub_tree_index(0, n, &mut stx);
        let mut stx_tile = Vec::with_capacity(stx.len());
        for &x in &stx {
            let tile = tile_parent(&tile_for_index(h, x).0, 0, n).ok_or(ProofError::OutOfRange)?;
            let j = *order.entry(tile).or_insert_with(|| {
                tiles.push(tile);
                tiles.len() - 1
            });
            stx_tile.push(j);
        }
        let tree_tiles = tiles.len();
        // The tiles holding the wanted hashes, each below a parent already planned.
        let limit = stored_hash_index(0, n);
        let mut index_tile = Vec::with_capacity(indexes.len());
        for &x in indexes {
            if x >= limit {
                return Err(ProofError::OutOfRange);
            }
            let tile = tile_for_index(h, x).0;
            let mut k = 0;
            let found = loop {
                let parent = tile_parent(&tile, k, n).ok_or(ProofError::OutOfRange)?;
                if let Some(&j) = order.get(&parent) {
                    break j;
                }
                k += 1;
            };
            if k == 0 {
                index_tile.push(found);
                continue;
            }
            // Record the children after their parents, down to this tile.
            for k in (0..k).rev() {
                let child = tile_parent(&tile, k, n).ok_or(ProofError::OutOfRange)?;
                if !child.is_complete() {
                    return Err(ProofError::BadTile(format!("{child} has a parent but is not complete")));
                }
                order.insert(child, tiles.len());
                tiles.push(child);
            }
            index_tile.push(tiles.len() - 1);
        }
        let data = self.source.read_tiles(&tiles)?;
        if data.len() != tiles.len() {
            return Err(ProofError::Source("wrong number of tiles".into()));
        }
        for (tile, d) in tiles.iter().zip(&data) {
            if d.len() as u64 != tile.w * HASH_SIZE as u64 {
                return Err(ProofError::BadTile(format!("{tile} holds {} bytes", d.len())));
            }
        }
        // The tree-hash tiles against the tree head.
        let last = stx.len() - 1;
        let mut th = hash_from_tile(&tiles[stx_tile[last]], &data[stx_tile[last]], stx[last])?;
        for i in (0..last).rev() {
            th = node_hash(&hash_from_tile(&tiles[stx_tile[i]], &data[stx_tile[i]], stx[i])?, &th);
        }
        if th != self.hash {
            return Err(ProofError::BadTile("tiles inconsistent with the signed tree head".into()));
        }
        // Every further (complete) tile against its parent, which came
        // before it and so is authenticated already. (x/mod's reader starts
        // this loop at the count of tree-hash indexes rather than of their
        // distinct tiles, which can skip a child; proofs are still checked
        // against the tree head, but a tile is not kept on that alone.)
        for i in tree_tiles..tiles.len() {
            let tile = &tiles[i];
            let parent = tile_parent(tile, 1, n).ok_or(ProofError::OutOfRange)?;
            let j = *order.get(&parent).ok_or_else(|| ProofError::BadTile(format!("no parent for {tile}")))?;
            let level = parent.level.unwrap_or(0) * parent.h;
            if hash_from_tile(&parent, &data[j], stored_hash_index(level, tile.n))? != tile_hash(&data[i]) {
                return Err(ProofError::BadTile(format!("{tile} inconsistent with its parent")));
            }
        }
        self.source.authenticated(&tiles, &data);
        indexes.iter().zip(&index_tile).map(|(&x, &j)| hash_from_tile(&tiles[j], &data[j], x)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stored hash of a tree built record by record (x/mod's
    /// StoredHashesForRecordHash), in stored-hash order.
    struct Memory {
        hashes: Vec<Hash>,
        records: u64,
    }

    impl Memory {
        fn with_records(n: u64) -> Memory {
            let mut m = Memory { hashes: Vec::new(), records: 0 };
            for i in 0..n {
                m.append(&format!("record {i}\n"));
            }
            m
        }

        fn append(&mut self, text: &str) {
            let mut h = record_hash(text.as_bytes());
            assert_eq!(self.hashes.len() as u64, stored_hash_index(0, self.records));
            self.hashes.push(h);
            // Each trailing 1 bit of the record number completes a subtree.
            let (mut r, mut level) = (self.records, 0);
            while r & 1 == 1 {
                let left = self.hashes[stored_hash_index(level, r - 1) as usize];
                h = node_hash(&left, &h);
                self.hashes.push(h);
                r >>= 1;
                level += 1;
            }
            self.records += 1;
        }

        /// The hash tile `tile` of this tree: `w` hashes at tree level L·H.
        fn tile(&self, tile: &Tile) -> Vec<u8> {
            let level = tile.level.unwrap() * tile.h;
            (0..tile.w).flat_map(|i| self.hashes[stored_hash_index(level, (tile.n << tile.h) + i) as usize]).collect()
        }
    }

    impl HashReader for Memory {
        fn read_hashes(&mut self, indexes: &[u64]) -> Result<Vec<Hash>, ProofError> {
            indexes.iter().map(|&i| self.hashes.get(i as usize).copied().ok_or(ProofError::OutOfRange)).collect()
        }
    }

    /// Tiles cut from a `Memory` tree, optionally with one byte flipped.
    struct Tiles<'a> {
        tree: &'a Memory,
        flip: Option<Tile>,
        asked: Vec<Tile>,
    }

    impl TileSource for Tiles<'_> {
        fn read_tiles(&mut self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, ProofError> {
            self.asked.extend_from_slice(tiles);
            Ok(tiles
                .iter()
                .map(|t| {
                    let mut d = self.tree.tile(t);
                    if self.flip == Some(*t) {
                        d[0] ^= 1;
                    }
                    d
                })
                .collect())
        }
    }

    #[test]
    fn tile_reads_match_the_stored_hashes_and_refuse_a_bad_tile() {
        // Height 2 makes many levels of tiles out of a small tree.
        let size = 93;
        let mut tree = Memory::with_records(size);
        let hash = tree_hash(size, &mut tree).unwrap();
        for n in [0, 1, 4, 17, 63, 64, 90, 92] {
            let mut tiles = Tiles { tree: &tree, flip: None, asked: Vec::new() };
            let mut reader = TileHashReader { size, hash, height: 2, source: &mut tiles };
            let proof = prove_record(size, n, &mut reader).unwrap();
            let leaf = record_hash(format!("record {n}\n").as_bytes());
            assert_eq!(check_record(&proof, size, &hash, n, &leaf), Ok(()), "record {n}");
            // Flip a byte in each tile the read used: refused, one way or the other.
            for bad in tiles.asked.clone() {
                let mut flipped = Tiles { tree: &tree, flip: Some(bad), asked: Vec::new() };
                let mut reader = TileHashReader { size, hash, height: 2, source: &mut flipped };
                let refused = match prove_record(size, n, &mut reader) {
                    Err(_) => true,
                    Ok(p) => check_record(&p, size, &hash, n, &leaf).is_err(),
                };
                assert!(refused, "record {n}, flipped {bad}");
            }
        }
        let mut tiles = Tiles { tree: &tree, flip: None, asked: Vec::new() };
        let mut reader = TileHashReader { size, hash: record_hash(b"other head"), height: 2, source: &mut tiles };
        assert!(matches!(prove_record(size, 5, &mut reader), Err(ProofError::BadTile(_))), "tiles that do not hash to the head");
    }

    #[test]
    fn stored_hash_indexes_round_trip() {
        for index in 0..5000 {
            let (level, n) = split_stored_hash_index(index);
            assert_eq!(stored_hash_index(level, n), index, "{index}");
        }
        assert_eq!(stored_hash_index(0, 0), 0);
        assert_eq!(stored_hash_index(0, 1), 1);
        assert_eq!(stored_hash_index(1, 0), 2);
        assert_eq!(stored_hash_index(0, 2), 3);
    }

    #[test]
    fn proofs_hold_for_every_record_and_every_older_tree() {
        let mut m = Memory::with_records(70);
        for t in 1..=70u64 {
            let tree = tree_hash(t, &mut m).unwrap();
            for n in 0..t {
                let leaf = record_hash(format!("record {n}\n").as_bytes());
                let p = prove_record(t, n, &mut m).unwrap();
                assert_eq!(check_record(&p, t, &tree, n, &leaf), Ok(()), "record {n} of {t}");
                let wrong = record_hash(b"forged\n");
                assert_eq!(check_record(&p, t, &tree, n, &wrong), Err(ProofError::Failed));
            }
            for n in 1..=t {
                let old = tree_hash(n, &mut m).unwrap();
                let p = prove_tree(t, n, &mut m).unwrap();
                assert_eq!(check_tree(&p, t, &tree, n, &old), Ok(()), "tree {n} in {t}");
                if n < t {
                    assert_eq!(check_tree(&p, t, &tree, n, &record_hash(b"fork")), Err(ProofError::Failed), "a forked old head");
                }
            }
        }
        assert_eq!(prove_record(3, 3, &mut m), Err(ProofError::OutOfRange));
        assert_eq!(check_tree(&[], 3, &Hash::default(), 4, &Hash::default()), Err(ProofError::OutOfRange));
    }
}
