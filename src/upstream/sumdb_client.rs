//! A verifying checksum-database client (the checks of x/mod's
//! `sumdb.Client`): a tree head counts only once its note opens with the
//! database's key and it is shown consistent with the last head accepted
//! (one extends the other: a database that forks its log is caught); a
//! lookup counts only once its record is proved, from authenticated tiles,
//! to be in the tree its own signed head names.
//!
//! Owns those checks and the parsing of tree heads and records. It reads
//! through a [`SumDbSource`] (the `/sumdb/<name>/` paths of whatever serves
//! the database) and keeps nothing: the caller persists the head it is
//! handed back, so a fork is caught across restarts too. It never accepts
//! a byte it did not verify, and never sends a private module's path
//! (callers keep those away, as the privacy guard does for fetches).

use std::fmt;

use base64::Engine as _;

use crate::artifact::{FetchError, Kind};
use crate::gomod::merkle::{self, Hash, ProofError, TileHashReader, TileSource};
use crate::gomod::module;
use crate::gomod::note::{NoteError, Verifier};
use crate::gomod::tlog::Tile;

/// Tile height of the Go checksum database (and of x/mod's server).
pub const TILE_HEIGHT: u32 = 8;

/// A signed tree head, verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// Records in the tree.
    pub size: u64,
    pub hash: Hash,
}

/// A module version's go.sum hashes, proved in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `h1:` of the module zip.
    pub zip: String,
    /// `h1:` of its go.mod.
    pub go_mod: String,
}

#[derive(Debug)]
pub enum SumDbError {
    /// The database (or the proxy in front of it) could not be asked.
    Fetch(FetchError),
    /// A note that does not open with the database's key.
    Note(NoteError),
    /// A tree head or record that is not one.
    Malformed(&'static str),
    /// A proof or tile that does not hold.
    Proof(ProofError),
    /// Two signed heads, neither of which extends the other: the log forked.
    Fork { known: TreeHead, offered: TreeHead },
    /// The record does not list the module version asked for.
    NotListed,
    /// A tile past the end of the tree head it is checked against.
    NotInTree,
}

impl fmt::Display for SumDbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SumDbError::Fetch(e) => write!(f, "checksum database unavailable: {e}"),
            SumDbError::Note(e) => write!(f, "checksum database answer refused: {e}"),
            SumDbError::Malformed(why) => write!(f, "checksum database answer refused: {why}"),
            SumDbError::Proof(e) => write!(f, "checksum database answer refused: {e}"),
            SumDbError::Fork { known, offered } => write!(
                f,
                "checksum database log forked: the signed tree of {} records does not extend the accepted one of {} records, nor the reverse",
                offered.size, known.size
            ),
            SumDbError::NotListed => f.write_str("checksum database record does not list the module version"),
            SumDbError::NotInTree => f.write_str("tile beyond the checksum database's accepted tree head"),
        }
    }
}

impl std::error::Error for SumDbError {}

impl From<ProofError> for SumDbError {
    fn from(e: ProofError) -> Self {
        SumDbError::Proof(e)
    }
}

/// Where the database's answers come from: bytes of a path below
/// `/sumdb/<name>/` (`latest`, `lookup/…`, `tile/…`), with the kind of
/// answer it is.
pub trait SumDbSource {
    fn get(&self, path: &str, kind: Kind) -> Result<Vec<u8>, FetchError>;
    /// A tile, at `path`, authenticated against a signed head. A tile path
    /// names its width, so its bytes never change: a source may answer it
    /// from memory from now on.
    fn keep_tile(&self, path: &str, data: &[u8]) {
        let _ = (path, data);
    }
}

/// Tiles through a source: the exact tile, else (a partial tile the log
/// has since completed) the full one, cut to the width asked for.
struct Tiles<'a, S>(&'a S);

impl<S: SumDbSource> TileSource for Tiles<'_, S> {
    fn read_tiles(&mut self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, ProofError> {
        tiles
            .iter()
            .map(|t| {
                let kind = if t.is_complete() { Kind::SumTile } else { Kind::SumPartialTile };
                let exact = self.0.get(&t.to_string(), kind);
                match exact {
                    Ok(data) => Ok(data),
                    Err(e) if t.is_complete() => Err(ProofError::Source(e.to_string())),
                    Err(e) => {
                        let full = Tile { w: 1 << t.h, ..*t };
                        let mut data = self.0.get(&full.to_string(), Kind::SumTile).map_err(|_| ProofError::Source(e.to_string()))?;
                        data.truncate((t.w as usize) * merkle::HASH_SIZE);
                        Ok(data)
                    }
                }
            })
            .collect()
    }

    fn authenticated(&mut self, tiles: &[Tile], data: &[Vec<u8>]) {
        for (t, d) in tiles.iter().zip(data) {
            self.0.keep_tile(&t.to_string(), d);
        }
    }
}

/// The body of a tree note: `go.sum database tree`, the size, the hash
/// (later lines are ignored, as x/mod's `ParseTree` ignores them).
pub fn parse_tree(text: &str) -> Result<TreeHead, SumDbError> {
    let mut f = text.splitn(4, '\n');
    let (Some("go.sum database tree"), Some(size), Some(hash), Some(_)) = (f.next(), f.next(), f.next(), f.next()) else {
        return Err(SumDbError::Malformed("not a tree head"));
    };
    let size: u64 = size.parse().ok().filter(|&n: &u64| n < 1 << 63).ok_or(SumDbError::Malformed("bad tree size"))?;
    let hash = base64::engine::general_purpose::STANDARD.decode(hash).ok().and_then(|h| <Hash>::try_from(h).ok());
    Ok(TreeHead { size, hash: hash.ok_or(SumDbError::Malformed("bad tree hash"))? })
}

/// A lookup answer: `<id>\n<record text>\n` then the signed tree head
/// (x/mod's `ParseRecord`). A data tile is such records back to back.
fn parse_lookup_record(msg: &[u8]) -> Result<(u64, &str, &[u8]), SumDbError> {
    let digits = msg.iter().take(19).take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || msg.get(digits) != Some(&b'\n') || (msg[0] == b'0' && digits > 1) {
        return Err(SumDbError::Malformed("lookup answer without a record id"));
    }
    let id: u64 = std::str::from_utf8(&msg[..digits]).ok().and_then(|s| s.parse().ok()).ok_or(SumDbError::Malformed("bad record id"))?;
    let body = &msg[digits + 1..];
    let end = body.windows(2).position(|w| w == b"\n\n").ok_or(SumDbError::Malformed("record without its tree head"))?;
    let text = std::str::from_utf8(&body[..end + 1]).map_err(|_| SumDbError::Malformed("record is not UTF-8"))?;
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(SumDbError::Malformed("control character in record"));
    }
    Ok((id, text, &body[end + 2..]))
}

/// A lookup, proved.
#[derive(Debug, Clone)]
pub struct Proved {
    pub record: Record,
    /// The head to keep from now on (the lookup's, reconciled with the known one).
    pub keep: TreeHead,
    /// The database's answer as it came (record and signed head), for clients.
    pub answer: Vec<u8>,
}

/// A tile that captures the bytes of one wanted tile as the reader
/// authenticates it (and keeps every authenticated tile, as [`Tiles`]).
struct Capture<'a, S> {
    tiles: Tiles<'a, S>,
    want: Tile,
    got: Option<Vec<u8>>,
}

impl<S: SumDbSource> TileSource for Capture<'_, S> {
    fn read_tiles(&mut self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, ProofError> {
        self.tiles.read_tiles(tiles)
    }

    fn authenticated(&mut self, tiles: &[Tile], data: &[Vec<u8>]) {
        if let Some(i) = tiles.iter().position(|t| *t == self.want) {
            self.got = Some(data[i].clone());
        }
        self.tiles.authenticated(tiles, data);
    }
}

pub struct SumDbClient<S> {
    verifier: Verifier,
    source: S,
}

impl<S: SumDbSource> SumDbClient<S> {
    pub fn new(verifier: Verifier, source: S) -> Self {
        SumDbClient { verifier, source }
    }

    /// A signed tree head, opened with the database's key.
    pub fn open_head(&self, msg: &[u8]) -> Result<TreeHead, SumDbError> {
        parse_tree(self.verifier.open(msg).map_err(SumDbError::Note)?)
    }

    /// Of `known` (the last head accepted, if any) and `offered`, the one
    /// to keep: the larger, once it is proved to extend the smaller.
    pub fn reconcile(&self, known: Option<&TreeHead>, offered: TreeHead) -> Result<TreeHead, SumDbError> {
        let Some(known) = known.copied() else { return Ok(offered) };
        let (older, newer) = if offered.size >= known.size { (known, offered) } else { (offered, known) };
        if older.size == newer.size {
            return if older.hash == newer.hash { Ok(newer) } else { Err(SumDbError::Fork { known, offered }) };
        }
        if older.size == 0 {
            return Ok(newer);
        }
        let mut tiles = Tiles(&self.source);
        let mut reader = TileHashReader { size: newer.size, hash: newer.hash, height: TILE_HEIGHT, source: &mut tiles };
        let proof = merkle::prove_tree(newer.size, older.size, &mut reader);
        match proof.and_then(|p| merkle::check_tree(&p, newer.size, &newer.hash, older.size, &older.hash)) {
            Ok(()) => Ok(newer),
            // Tiles that hash to the newer head but not to a tree the older
            // one is the start of: the database signed two histories.
            Err(ProofError::Failed) => Err(SumDbError::Fork { known, offered }),
            Err(e) => Err(e.into()),
        }
    }

    /// The database's latest head, reconciled with `known`.
    pub fn latest(&self, known: Option<&TreeHead>) -> Result<TreeHead, SumDbError> {
        let msg = self.source.get("latest", Kind::SumLatest).map_err(SumDbError::Fetch)?;
        let offered = self.open_head(&msg)?;
        self.reconcile(known, offered)
    }

    /// What the client reads through.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The go.sum hashes of `module@version` (decoded, canonical), proved in
    /// the log, and the head to keep from now on.
    pub fn lookup(&self, module_path: &str, version: &str, known: Option<&TreeHead>) -> Result<Proved, SumDbError> {
        let escaped = module::escape_path(module_path).map_err(|_| SumDbError::Malformed("module path cannot be escaped"))?;
        let escaped_version = module::escape_version(version).map_err(|_| SumDbError::Malformed("version cannot be escaped"))?;
        let msg = self.source.get(&format!("lookup/{escaped}@{escaped_version}"), Kind::SumLookup).map_err(SumDbError::Fetch)?;
        let (id, text, head_msg) = parse_lookup_record(&msg)?;
        let head = self.open_head(head_msg)?;
        let keep = self.reconcile(known, head)?;
        if id >= head.size {
            return Err(SumDbError::Malformed("record id beyond its tree"));
        }
        let mut tiles = Tiles(&self.source);
        let mut reader = TileHashReader { size: head.size, hash: head.hash, height: TILE_HEIGHT, source: &mut tiles };
        let proof = merkle::prove_record(head.size, id, &mut reader)?;
        merkle::check_record(&proof, head.size, &head.hash, id, &merkle::record_hash(text.as_bytes()))?;
        let hash_of = |suffix: &str| {
            let prefix = format!("{module_path} {version}{suffix} ");
            text.lines().find_map(|l| l.strip_prefix(&prefix)).filter(|h| h.starts_with("h1:") && !h.contains(' ')).map(str::to_string)
        };
        let (Some(zip), Some(go_mod)) = (hash_of(""), hash_of("/go.mod")) else { return Err(SumDbError::NotListed) };
        Ok(Proved { record: Record { zip, go_mod }, keep, answer: msg })
    }

    /// The bytes of `tile`, authenticated against `known` (a verified head
    /// at least as large as the tree the tile is from): a hash tile through
    /// the tiles that hash to that head (a partial tile is the prefix of the
    /// tile at the head's width), a data tile by the hash of each record in
    /// it against its level-0 hash tile.
    pub fn tile(&self, tile: &Tile, known: &TreeHead) -> Result<Vec<u8>, SumDbError> {
        if tile.h != TILE_HEIGHT {
            return Err(SumDbError::Malformed("tile height is not the database's"));
        }
        let Some(level) = tile.level else { return self.data_tile(tile, known) };
        let h = TILE_HEIGHT;
        let stored_level = level * h;
        let count = known.size.checked_shr(stored_level).unwrap_or(0);
        let first = tile.n.checked_mul(1 << h).ok_or(SumDbError::NotInTree)?;
        let end = first.checked_add(tile.w).ok_or(SumDbError::NotInTree)?;
        if end > count {
            return Err(SumDbError::NotInTree);
        }
        let want = Tile { w: (count - first).min(1 << h), ..*tile };
        let mut capture = Capture { tiles: Tiles(&self.source), want, got: None };
        let mut reader = TileHashReader { size: known.size, hash: known.hash, height: h, source: &mut capture };
        merkle::HashReader::read_hashes(&mut reader, &[merkle::stored_hash_index(stored_level, end - 1)])?;
        let mut data = capture.got.ok_or(SumDbError::Malformed("tile not among those authenticated"))?;
        data.truncate(tile.w as usize * merkle::HASH_SIZE);
        Ok(data)
    }

    /// A data tile: `w` records as a lookup formats them (`<id>\n<text>\n`),
    /// ids in order from the tile's first, each hashing to its leaf.
    /// (A partial data tile the log has since completed is cut from the
    /// complete one, as partial hash tiles are.)
    fn data_tile(&self, tile: &Tile, known: &TreeHead) -> Result<Vec<u8>, SumDbError> {
        let leaves = self.tile(&Tile { level: Some(0), ..*tile }, known)?;
        let kind = if tile.is_complete() { Kind::SumTile } else { Kind::SumPartialTile };
        let data = match self.source.get(&tile.to_string(), kind) {
            Ok(data) => data,
            Err(e) if tile.is_complete() => return Err(SumDbError::Fetch(e)),
            Err(e) => {
                let full =
                    self.source.get(&Tile { w: 1 << tile.h, ..*tile }.to_string(), Kind::SumTile).map_err(|_| SumDbError::Fetch(e))?;
                first_records(&full, tile.w as usize).to_vec()
            }
        };
        let mut rest = &data[..];
        for (i, leaf) in leaves.chunks_exact(merkle::HASH_SIZE).enumerate() {
            let (id, text, after) = parse_lookup_record(rest)?;
            if id != (tile.n << tile.h) + i as u64 || merkle::record_hash(text.as_bytes())[..] != *leaf {
                return Err(SumDbError::Proof(ProofError::BadTile(format!("{tile}: record {i} does not hash to its leaf"))));
            }
            rest = after;
        }
        if !rest.is_empty() {
            return Err(SumDbError::Malformed("data tile holds more than its records"));
        }
        Ok(data)
    }
}

/// The bytes of the first `n` records of a data tile (all of it when it
/// holds fewer; the caller's checks then fail).
fn first_records(data: &[u8], n: usize) -> &[u8] {
    let mut rest = data;
    for _ in 0..n {
        match parse_lookup_record(rest) {
            Ok((_, _, after)) => rest = after,
            Err(_) => return data,
        }
    }
    &data[..data.len() - rest.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_heads_parse_strictly() {
        let hash = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let head = parse_tree(&format!("go.sum database tree\n42\n{hash}\n")).unwrap();
        assert_eq!(head, TreeHead { size: 42, hash: [7; 32] });
        assert!(parse_tree(&format!("go.sum database tree\n42\n{hash}\nextra line\n")).is_ok(), "later lines are ignored");
        for bad in [
            format!("go.sum database tree\n-1\n{hash}\n"),
            format!("go.sum database tree\n42\n{hash}"),
            "go.sum database tree\n42\nAAAA\n".to_string(),
            format!("other tree\n42\n{hash}\n"),
        ] {
            assert!(parse_tree(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lookup_answers_parse_strictly() {
        let (id, text, rest) = parse_lookup_record(b"12\nexample.com/a v1.0.0 h1:x=\n\nnote").unwrap();
        assert_eq!((id, text, rest), (12, "example.com/a v1.0.0 h1:x=\n", &b"note"[..]));
        for bad in
            [&b"\nrecord\n\nnote"[..], b"012\nrecord\n\nnote", b"12 record\n\nnote", b"12\nno blank line\nnote", b"12\nbell\x07\n\nnote"]
        {
            assert!(parse_lookup_record(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
