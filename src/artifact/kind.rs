//! The kinds of artifact, and every rule that depends on the kind alone:
//! its content type, how long it may be cached, the most bytes a source
//! may send for it, whether the store keeps it, and whether it belongs to a
//! checksum database. One table per rule, all of them here, so a new kind
//! is one variant and the compiler names every rule it needs. It never
//! holds a setting: durations and thresholds are configuration's.

use crate::store::RecordKind;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `$module/@v/list`.
    List,
    /// `$module/@latest`.
    Latest,
    /// `$module/@v/$version.info`.
    Info,
    /// `$module/@v/$version.mod`.
    Mod,
    /// `$module/@v/$version.zip`.
    Zip,
    /// `$module/@v/$query.info` for a query that is no canonical version (a
    /// branch, a commit prefix): asked of the sources every time, never
    /// stored or cached (it can mean another commit tomorrow), but fetched
    /// once for everyone who asks at the same moment.
    Query,
    /// `/sumdb/<name>/supported`: whether the upstream proxies that checksum database.
    SumSupported,
    /// `/sumdb/<name>/latest`: the database's signed tree head.
    SumLatest,
    /// `/sumdb/<name>/lookup/<module>@<version>`: one record and a signed tree head.
    SumLookup,
    /// A complete tile (`tile/H/L/NNN`, hashes or record data): never changes.
    SumTile,
    /// A partial tile (`tile/H/L/NNN.p/W`): superseded as the log grows.
    SumPartialTile,
}

/// How long an answer of a kind may be reused, and so which
/// `Cache-Control` it is served with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheClass {
    /// Never changes once published: stored for good, served `immutable`.
    Immutable,
    /// A module's version list or `@latest`: fresh for `--list-ttl`.
    ListTtl,
    /// A checksum-database answer that the log's growth supersedes: fresh for `--sumdb-ttl`.
    SumDbTtl,
    /// Means something else tomorrow: never reused.
    Uncached,
}

impl Kind {
    /// The kinds of a module version's own files, by their extension in
    /// `$module/@v/$version.<ext>`.
    pub fn from_extension(ext: &str) -> Option<Kind> {
        match ext {
            "info" => Some(Kind::Info),
            "mod" => Some(Kind::Mod),
            "zip" => Some(Kind::Zip),
            _ => None,
        }
    }

    /// The extension of a version file (`.info`, `.mod`, `.zip`); `None` for the rest.
    pub fn extension(self) -> Option<&'static str> {
        match self {
            Kind::Info => Some("info"),
            Kind::Mod => Some("mod"),
            Kind::Zip => Some("zip"),
            _ => None,
        }
    }

    /// A checksum-database request (`/sumdb/...`) rather than a module one.
    pub fn is_sumdb(self) -> bool {
        matches!(self, Kind::SumSupported | Kind::SumLatest | Kind::SumLookup | Kind::SumTile | Kind::SumPartialTile)
    }

    /// The record kind the store keeps this kind under: immutable blobs for
    /// good; answers that change (`list`, `@latest`, verified
    /// checksum-database answers) as their latest copy, so their
    /// stale-if-error reserve survives a restart. `None`: never stored
    /// (`supported`, answered by this proxy itself).
    pub fn record_kind(self) -> Option<RecordKind> {
        match self {
            Kind::Info => Some(RecordKind::Info),
            Kind::Mod => Some(RecordKind::Mod),
            Kind::Zip => Some(RecordKind::Zip),
            Kind::SumTile => Some(RecordKind::SumTile),
            Kind::SumLatest | Kind::SumLookup | Kind::SumPartialTile => Some(RecordKind::SumAnswer),
            Kind::List => Some(RecordKind::List),
            Kind::Latest => Some(RecordKind::Latest),
            // Never fresh (resolved every time): the stale-if-error reserve only.
            Kind::Query => Some(RecordKind::Query),
            Kind::SumSupported => None,
        }
    }

    /// Never changes once published.
    pub fn is_immutable(self) -> bool {
        self.cache_class() == CacheClass::Immutable
    }

    pub fn cache_class(self) -> CacheClass {
        match self {
            Kind::Info | Kind::Mod | Kind::Zip | Kind::SumTile => CacheClass::Immutable,
            Kind::List | Kind::Latest => CacheClass::ListTtl,
            Kind::SumSupported | Kind::SumLatest | Kind::SumLookup | Kind::SumPartialTile => CacheClass::SumDbTtl,
            Kind::Query => CacheClass::Uncached,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Kind::Info | Kind::Latest | Kind::Query => "application/json",
            Kind::List | Kind::Mod | Kind::SumSupported | Kind::SumLatest | Kind::SumLookup => "text/plain; charset=utf-8",
            Kind::Zip => "application/zip",
            Kind::SumTile | Kind::SumPartialTile => "application/octet-stream",
        }
    }

    /// The most bytes a source may send for this kind of answer.
    pub fn size_cap(self) -> u64 {
        match self {
            Kind::Info | Kind::Latest | Kind::Query => 64 << 10,
            Kind::List => 16 << 20,
            Kind::Mod => 16 << 20,
            Kind::Zip => 500 << 20,
            // The body is ignored; anything long is not a proxy saying yes.
            Kind::SumSupported => 4 << 10,
            // A signed note: a few lines and a handful of signatures.
            Kind::SumLatest => 16 << 10,
            // A record (a module's two go.sum lines) and a signed note.
            Kind::SumLookup => 64 << 10,
            // A hash tile is at most 2^MAX_HEIGHT hashes (2 MiB); a data tile
            // holds up to 2^H records, a few hundred bytes each at height 8.
            Kind::SumTile | Kind::SumPartialTile => 8 << 20,
        }
    }

    /// How messages name an answer of this kind.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Info => ".info",
            Kind::Latest => "@latest",
            Kind::Mod => ".mod",
            Kind::Zip => ".zip",
            Kind::List => "list",
            Kind::Query => "query",
            Kind::SumSupported | Kind::SumLatest | Kind::SumLookup | Kind::SumTile | Kind::SumPartialTile => "checksum database answer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Kind; 11] = [
        Kind::Query,
        Kind::List,
        Kind::Latest,
        Kind::Info,
        Kind::Mod,
        Kind::Zip,
        Kind::SumSupported,
        Kind::SumLatest,
        Kind::SumLookup,
        Kind::SumTile,
        Kind::SumPartialTile,
    ];

    #[test]
    fn everything_but_supported_is_stored() {
        for kind in ALL {
            assert_eq!(kind.record_kind().is_some(), kind != Kind::SumSupported, "{kind:?}");
            assert_eq!(
                kind.record_kind() == Some(RecordKind::SumAnswer),
                kind.is_sumdb() && !kind.is_immutable() && kind != Kind::SumSupported,
                "{kind:?}"
            );
            assert_eq!(kind.cache_class() == CacheClass::SumDbTtl, kind.is_sumdb() && kind != Kind::SumTile, "{kind:?}");
        }
    }

    #[test]
    fn extensions_round_trip() {
        for kind in ALL {
            if let Some(ext) = kind.extension() {
                assert_eq!(Kind::from_extension(ext), Some(kind));
            }
        }
        assert_eq!(Kind::from_extension("list"), None);
    }
}
