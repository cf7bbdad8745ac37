//! Checksum-database names and tile coordinates, re-implemented from the Go
//! team's x/mod (`sumdb/note` names, `sumdb/tlog` tile paths).
//!
//! Owns the syntax only: which `/sumdb/<name>/tile/...` targets name a tile
//! that can exist, and in exactly one spelling. It never hashes, verifies
//! signatures or decides what is cached; the go command verifies everything
//! it gets from a checksum database itself.

use std::fmt::{self, Write as _};

/// Hash size of the log's tree (SHA-256).
pub const HASH_SIZE: u64 = 32;

/// Greatest tile height accepted. x/mod allows up to 30, but a complete tile
/// of height H holds 2^H hashes, and every checksum database the go command
/// talks to uses height 8: capping the height keeps a tile answer small
/// enough to hold in memory (a height-16 hash tile is 2 MiB).
pub const MAX_HEIGHT: u32 = 16;

/// Greatest level: x/mod's bound (`-1 ≤ L ≤ 63`).
const MAX_LEVEL: u32 = 63;

/// A checksum database name as it appears in `GOSUMDB` and in proxy URLs.
///
/// x/mod's note package accepts any name without spaces or `+`; a name we
/// put into URLs and file paths must also be a single, harmless path
/// element, so only the characters of host names (and `_`) are accepted.
/// Real names are host names.
pub fn valid_db_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A tile: `tile/H/L/NNN[.p/W]`, or `tile/H/data/NNN[.p/W]` for record data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tile {
    /// Height: a complete tile holds 2^H entries.
    pub h: u32,
    /// Level; `None` for a data tile (x/mod's `L = -1`).
    pub level: Option<u32>,
    /// Number within the level.
    pub n: u64,
    /// Width: entries held; 2^H for a complete tile.
    pub w: u64,
}

impl Tile {
    /// A complete tile never changes; a partial one is superseded as the log grows.
    pub fn is_complete(&self) -> bool {
        self.w == 1 << self.h
    }

    pub fn is_data(&self) -> bool {
        self.level.is_none()
    }

    /// Exact byte length of a hash tile; `None` for a data tile (records vary).
    pub fn hash_tile_len(&self) -> Option<u64> {
        (!self.is_data()).then(|| self.w * HASH_SIZE)
    }

    /// Parses a tile path, accepting only the one spelling x/mod's
    /// `Tile.Path` produces (so `tile/8/0/1`, `tile/8/0/000.p/256` and
    /// leading zeros are refused): the parsed tile re-formats to exactly
    /// `path`, which is what makes it safe to forward verbatim and to use as
    /// a storage key.
    pub fn parse(path: &str) -> Option<Tile> {
        let mut f: Vec<&str> = path.split('/').collect();
        if f.len() < 4 || f[0] != "tile" || f.len() > 32 {
            return None;
        }
        let h = small_decimal(f[1])?;
        if !(1..=MAX_HEIGHT).contains(&h) {
            return None;
        }
        let level = match f[2] {
            "data" => None,
            l => Some(small_decimal(l).filter(|&l| l <= MAX_LEVEL)?),
        };
        let full = 1u64 << h;
        let mut w = full;
        let last = f.len() - 1;
        if let Some(stem) = f[last - 1].strip_suffix(".p") {
            let ww = u64::from(small_decimal(f[last])?);
            if ww == 0 || ww >= full {
                return None;
            }
            w = ww;
            f[last - 1] = stem;
            f.truncate(last);
        }
        let mut n: u64 = 0;
        for group in &f[3..] {
            let digits = group.strip_prefix('x').unwrap_or(group);
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let g = u64::from(small_decimal_any(digits)?);
            n = n.checked_mul(1000)?.checked_add(g)?;
        }
        let tile = Tile { h, level, n, w };
        (tile.to_string() == path).then_some(tile)
    }
}

/// A decimal without sign or leading zeros (except "0"), below 2^31.
fn small_decimal(s: &str) -> Option<u32> {
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    small_decimal_any(s)
}

fn small_decimal_any(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for Tile {
    /// x/mod's `Tile.Path`: N in groups of three digits, all but the last prefixed `x`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tile/{}/", self.h)?;
        match self.level {
            Some(l) => write!(f, "{l}/")?,
            None => f.write_str("data/")?,
        }
        let mut groups = Vec::new();
        let mut n = self.n;
        groups.push(n % 1000);
        while n >= 1000 {
            n /= 1000;
            groups.push(n % 1000);
        }
        let mut s = String::new();
        for (i, g) in groups.iter().rev().enumerate() {
            if i + 1 < groups.len() {
                let _ = write!(s, "x{g:03}/");
            } else {
                let _ = write!(s, "{g:03}");
            }
        }
        f.write_str(&s)?;
        if !self.is_complete() {
            write!(f, ".p/{}", self.w)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_x_mod() {
        // The examples of x/mod's Tile documentation.
        assert_eq!(Tile { h: 3, level: Some(4), n: 1234067, w: 1 }.to_string(), "tile/3/4/x001/x234/067.p/1");
        assert_eq!(Tile { h: 3, level: Some(4), n: 1234067, w: 8 }.to_string(), "tile/3/4/x001/x234/067");
        assert_eq!(Tile { h: 8, level: None, n: 0, w: 256 }.to_string(), "tile/8/data/000");
        assert_eq!(Tile { h: 8, level: Some(0), n: 1000, w: 5 }.to_string(), "tile/8/0/x001/000.p/5");
    }

    #[test]
    fn parses_only_canonical_paths() {
        for good in [
            "tile/8/0/000",
            "tile/8/1/x001/x234/067.p/13",
            "tile/8/data/123",
            "tile/8/data/005.p/1",
            "tile/1/63/999",
            "tile/16/2/000.p/65535",
        ] {
            let t = Tile::parse(good).unwrap_or_else(|| panic!("{good}"));
            assert_eq!(t.to_string(), good);
        }
        let t = Tile::parse("tile/8/2/x001/002.p/7").unwrap();
        assert_eq!(t, Tile { h: 8, level: Some(2), n: 1002, w: 7 });
        assert!(!t.is_complete());
        assert_eq!(t.hash_tile_len(), Some(7 * 32));
        assert_eq!(Tile::parse("tile/8/data/000").unwrap().hash_tile_len(), None);
        for bad in [
            "tile/8/0/1",
            "tile/8/0/0000",
            "tile/8/0/000.p/256",
            "tile/8/0/000.p/0",
            "tile/8/0/000.p/07",
            "tile/8/0/x000/001",
            "tile/8/0/001/002",
            "tile/08/0/000",
            "tile/0/0/000",
            "tile/17/0/000",
            "tile/8/64/000",
            "tile/8/-1/000",
            "tile/8/0/+12",
            "tile/8/0/x001",
            "tile/8/0",
            "tile/8/0/000/",
            "tile/8/0/000.p",
            "tile/8/0/000.p/",
            "tiles/8/0/000",
            "tile/8/0/x999/x999/x999/x999/x999/x999/x999/999",
        ] {
            assert_eq!(Tile::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn db_names() {
        assert!(valid_db_name("sum.example"));
        assert!(valid_db_name("sum-db_2.example"));
        for bad in ["", ".hidden", "a/b", "a+b", "a b", "a%2Fb", "ü.example", ".."] {
            assert!(!valid_db_name(bad), "{bad}");
        }
    }
}
