//! Request targets → GOPROXY endpoints, with every element decoded and
//! validated (percent-encoding, `!`-case-encoding, module path and version
//! syntax). Borrows from the request when nothing needed decoding.

use std::borrow::Cow;
use std::fmt;

use crate::artifact::Kind;
use crate::gomod::module::{self, EscapeError, ModuleError};
use crate::gomod::tlog::{self, Tile};

#[derive(Debug, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `$module/@v/list` or `$module/@latest`.
    Versions {
        module: Cow<'a, str>,
        kind: Kind,
    },
    /// `$module/@v/$version.{info,mod,zip}` for a canonical version.
    Artifact {
        module: Cow<'a, str>,
        version: Cow<'a, str>,
        kind: Kind,
    },
    /// `$module/@v/$query.info` where the query is not a canonical version
    /// (a branch, a commit prefix, `latest`, `v1.2`).
    Query {
        module: Cow<'a, str>,
        query: Cow<'a, str>,
    },
    /// `/sumdb/<name>/...`: the checksum-database proxy.
    SumDb {
        name: Cow<'a, str>,
        req: SumDbRequest<'a>,
    },
    Health,
    Metrics,
}

/// What is asked of a checksum database, every element validated.
#[derive(Debug, PartialEq, Eq)]
pub enum SumDbRequest<'a> {
    /// `supported`: does this proxy proxy the database?
    Supported,
    /// `latest`: the signed tree head.
    Latest,
    /// `lookup/<escaped module>@<escaped version>`, decoded; the version is canonical.
    Lookup { module: Cow<'a, str>, version: Cow<'a, str> },
    /// `tile/...`, in its one canonical spelling.
    Tile(Tile),
}

impl SumDbRequest<'_> {
    /// The path below `/sumdb/<name>/` to ask an upstream for, rebuilt
    /// from the validated parts (never the client's own bytes).
    pub fn upstream_path(&self) -> Result<String, PathError> {
        Ok(match self {
            SumDbRequest::Supported => "supported".into(),
            SumDbRequest::Latest => "latest".into(),
            SumDbRequest::Lookup { module, version } => {
                let m = module::escape_path(module).map_err(|e| PathError::NoSuchVersion(ModuleError::from(e)))?;
                let v = module::escape_version(version).map_err(|_| PathError::UnknownEndpoint)?;
                format!("lookup/{m}@{v}")
            }
            SumDbRequest::Tile(t) => t.to_string(),
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            SumDbRequest::Supported => Kind::SumSupported,
            SumDbRequest::Latest => Kind::SumLatest,
            SumDbRequest::Lookup { .. } => Kind::SumLookup,
            SumDbRequest::Tile(t) if t.is_complete() => Kind::SumTile,
            SumDbRequest::Tile(_) => Kind::SumPartialTile,
        }
    }
}

/// Why a target is not a GOPROXY request we can answer.
#[derive(Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not decodable at all: bad percent-encoding, an encoded `/`, control bytes, `.`/`..` elements.
    BadTarget(&'static str),
    BadEscape(EscapeError),
    /// Well-formed, but names no module version that can exist (wrong major, not canonical).
    NoSuchVersion(ModuleError),
    UnknownEndpoint,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::BadTarget(why) => write!(f, "bad request: {why}"),
            PathError::BadEscape(e) => write!(f, "bad request: {e}"),
            PathError::NoSuchVersion(e) => write!(f, "not found: {e}"),
            PathError::UnknownEndpoint => f.write_str("not found: not a GOPROXY endpoint"),
        }
    }
}

/// Decodes `%XX` escapes. An encoded `/` would let one path element pose as
/// two (or hide a `..`), so it is refused rather than decoded.
fn percent_decode(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.contains('%') {
        return Ok(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            let (Some(hi), Some(lo)) = (bytes.get(i + 1).and_then(|&b| hex(b)), bytes.get(i + 2).and_then(|&b| hex(b))) else {
                return Err(PathError::BadTarget("invalid percent-encoding"));
            };
            let b = (hi * 16 + lo) as u8;
            if b == b'/' || b == b'\\' {
                return Err(PathError::BadTarget("encoded slash in path"));
            }
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| PathError::BadTarget("path is not UTF-8"))
}

/// Parses an origin-form request target.
pub fn parse(target: &str) -> Result<Endpoint<'_>, PathError> {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let decoded = percent_decode(path)?;
    // Owned only when percent-decoding happened (rare): re-borrow so the
    // rest of the parse works on one `&str` either way.
    match decoded {
        Cow::Borrowed(p) => parse_path(p),
        Cow::Owned(p) => parse_path(&p).map(into_owned),
    }
}

fn into_owned(e: Endpoint<'_>) -> Endpoint<'static> {
    let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
    match e {
        Endpoint::Versions { module, kind } => Endpoint::Versions { module: own(module), kind },
        Endpoint::Artifact { module, version, kind } => Endpoint::Artifact { module: own(module), version: own(version), kind },
        Endpoint::Query { module, query } => Endpoint::Query { module: own(module), query: own(query) },
        Endpoint::SumDb { name, req } => Endpoint::SumDb {
            name: own(name),
            req: match req {
                SumDbRequest::Lookup { module, version } => SumDbRequest::Lookup { module: own(module), version: own(version) },
                SumDbRequest::Supported => SumDbRequest::Supported,
                SumDbRequest::Latest => SumDbRequest::Latest,
                SumDbRequest::Tile(t) => SumDbRequest::Tile(t),
            },
        },
        Endpoint::Health => Endpoint::Health,
        Endpoint::Metrics => Endpoint::Metrics,
    }
}

fn parse_path(path: &str) -> Result<Endpoint<'_>, PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::BadTarget("path must start with /"));
    };
    if rest.bytes().any(|b| b.is_ascii_control() || b == b'\\') {
        return Err(PathError::BadTarget("control character or backslash in path"));
    }
    if rest.split('/').any(|e| e.is_empty() || e == "." || e == "..") && !rest.is_empty() {
        return Err(PathError::BadTarget("empty, '.' or '..' path element"));
    }
    match rest {
        "healthz" => return Ok(Endpoint::Health),
        "metrics" => return Ok(Endpoint::Metrics),
        _ => {}
    }
    if rest == "sumdb" {
        return Err(PathError::UnknownEndpoint);
    }
    if let Some(sumdb) = rest.strip_prefix("sumdb/") {
        return parse_sumdb(sumdb);
    }
    if let Some(escaped) = rest.strip_suffix("/@latest") {
        let module = module::unescape_path(escaped).map_err(PathError::BadEscape)?;
        return Ok(Endpoint::Versions { module, kind: Kind::Latest });
    }
    // '@' cannot occur in a module path, so the first "/@v/" is the split.
    let Some((escaped, file)) = rest.split_once("/@v/") else {
        return Err(PathError::UnknownEndpoint);
    };
    let module = module::unescape_path(escaped).map_err(PathError::BadEscape)?;
    if file == "list" {
        return Ok(Endpoint::Versions { module, kind: Kind::List });
    }
    let Some((escaped_version, kind)) = file.rsplit_once('.').and_then(|(v, ext)| Some((v, Kind::from_extension(ext)?))) else {
        return Err(PathError::UnknownEndpoint);
    };
    if escaped_version.contains('/') {
        return Err(PathError::UnknownEndpoint);
    }
    let version = module::unescape_version(escaped_version).map_err(PathError::BadEscape)?;
    let canonical = module::canonical_version(&version).is_some_and(|c| c == version);
    if canonical {
        // unescape_path already checked the path and canonical implies valid
        // semver: what `module::check` would add is the major-version rule.
        let path_major = module::split_path_version(&module).map_or("", |(_, major)| major);
        if let Err(source) = module::check_path_major(&version, path_major) {
            return Err(PathError::NoSuchVersion(ModuleError::InvalidVersion { path: Some(module.into_owned()), source }));
        }
        return Ok(Endpoint::Artifact { module, version, kind });
    }
    if kind == Kind::Info {
        return Ok(Endpoint::Query { module, query: version });
    }
    // .mod and .zip exist only for canonical versions; say why in x/mod's words.
    Err(PathError::NoSuchVersion(module::check_canonical(&module, &version).err().unwrap_or_else(|| {
        ModuleError::InvalidEscape(EscapeError::Malformed { target: module::EscapeTarget::Version, escaped: escaped_version.to_string() })
    })))
}

/// `<name>/supported`, `<name>/latest`, `<name>/lookup/<module>@<version>`,
/// `<name>/tile/...` (x/mod's sumdb server paths, below `/sumdb/`).
fn parse_sumdb(path: &str) -> Result<Endpoint<'_>, PathError> {
    let (name, what) = path.split_once('/').ok_or(PathError::UnknownEndpoint)?;
    if !tlog::valid_db_name(name) {
        return Err(PathError::BadTarget("invalid checksum database name"));
    }
    let name = Cow::Borrowed(name);
    let req = match what {
        "supported" => SumDbRequest::Supported,
        "latest" => SumDbRequest::Latest,
        _ => {
            if let Some(mv) = what.strip_prefix("lookup/") {
                // '@' cannot occur in an escaped module path or version.
                let (escaped_module, escaped_version) = mv.split_once('@').ok_or(PathError::BadTarget("lookup needs module@version"))?;
                if escaped_version.contains(['@', '/']) {
                    return Err(PathError::BadTarget("lookup needs module@version"));
                }
                let module = module::unescape_path(escaped_module).map_err(PathError::BadEscape)?;
                let version = module::unescape_version(escaped_version).map_err(PathError::BadEscape)?;
                // The database holds canonical versions only (go.sum lines).
                module::check_canonical(&module, &version).map_err(PathError::NoSuchVersion)?;
                SumDbRequest::Lookup { module, version }
            } else if what.starts_with("tile/") {
                SumDbRequest::Tile(Tile::parse(what).ok_or(PathError::BadTarget("malformed tile path"))?)
            } else {
                return Err(PathError::UnknownEndpoint);
            }
        }
    };
    Ok(Endpoint::SumDb { name, req })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(m: &str, v: &str, kind: Kind) -> Endpoint<'static> {
        Endpoint::Artifact { module: Cow::Owned(m.into()), version: Cow::Owned(v.into()), kind }
    }

    #[test]
    fn routes_every_endpoint() {
        assert_eq!(parse("/example.com/a/@v/list"), Ok(Endpoint::Versions { module: "example.com/a".into(), kind: Kind::List }));
        assert_eq!(parse("/example.com/a/@latest"), Ok(Endpoint::Versions { module: "example.com/a".into(), kind: Kind::Latest }));
        assert_eq!(parse("/example.com/a/@v/v1.2.3.info"), Ok(artifact("example.com/a", "v1.2.3", Kind::Info)));
        assert_eq!(parse("/example.com/a/@v/v1.2.3.mod"), Ok(artifact("example.com/a", "v1.2.3", Kind::Mod)));
        assert_eq!(parse("/example.com/a/@v/v1.2.3.zip?x=1"), Ok(artifact("example.com/a", "v1.2.3", Kind::Zip)));
        assert_eq!(parse("/example.com/a/@v/master.info"), Ok(Endpoint::Query { module: "example.com/a".into(), query: "master".into() }));
        assert_eq!(parse("/example.com/a/@v/v1.2.info"), Ok(Endpoint::Query { module: "example.com/a".into(), query: "v1.2".into() }));
        let sumdb = |req| Ok(Endpoint::SumDb { name: "sum.example".into(), req });
        assert_eq!(parse("/sumdb/sum.example/supported"), sumdb(SumDbRequest::Supported));
        assert_eq!(parse("/sumdb/sum.example/latest"), sumdb(SumDbRequest::Latest));
        assert_eq!(
            parse("/sumdb/sum.example/lookup/example.com/!camel@v1.0.0-!r!c"),
            sumdb(SumDbRequest::Lookup { module: "example.com/Camel".into(), version: "v1.0.0-RC".into() })
        );
        assert_eq!(
            parse("/sumdb/sum.example/tile/8/1/x001/002.p/3"),
            sumdb(SumDbRequest::Tile(Tile { h: 8, level: Some(1), n: 1002, w: 3 }))
        );
        assert_eq!(parse("/healthz"), Ok(Endpoint::Health));
    }

    #[test]
    fn decodes_case_and_percent_encoding() {
        assert_eq!(parse("/example.com/!camel!case/@v/v1.0.0.mod"), Ok(artifact("example.com/CamelCase", "v1.0.0", Kind::Mod)));
        assert_eq!(
            parse("/example.com/legacy/@v/v2.0.0+incompatible.zip"),
            Ok(artifact("example.com/legacy", "v2.0.0+incompatible", Kind::Zip))
        );
        assert_eq!(
            parse("/example.com/legacy/@v/v2.0.0%2Bincompatible.zip"),
            Ok(artifact("example.com/legacy", "v2.0.0+incompatible", Kind::Zip))
        );
        assert_eq!(parse("/example.com/%21camel/@v/list"), Ok(Endpoint::Versions { module: "example.com/Camel".into(), kind: Kind::List }));
    }

    #[test]
    fn refuses_hostile_targets() {
        let bad = |t: &str| parse(t).unwrap_err();
        assert!(matches!(bad("/example.com/a/../b/@v/list"), PathError::BadTarget(_)));
        assert!(matches!(bad("/example.com/a%2F..%2Fb/@v/list"), PathError::BadTarget(_)));
        assert!(matches!(bad("/example.com//a/@v/list"), PathError::BadTarget(_)));
        assert!(matches!(bad("/example.com/a%zz/@v/list"), PathError::BadTarget(_)));
        assert!(matches!(bad("/example.com/a%00/@v/list"), PathError::BadTarget(_)));
        assert!(matches!(bad("/example.com/!!x/@v/list"), PathError::BadEscape(_)));
        assert!(matches!(bad("/example.com/Upper/@v/list"), PathError::BadEscape(_)));
        assert!(matches!(bad("/nodot/@v/list"), PathError::BadEscape(_)));
        assert!(matches!(bad("/example.com/a/@v/v1.0.0.tar"), PathError::UnknownEndpoint));
        assert!(matches!(bad("/example.com/a"), PathError::UnknownEndpoint));
        assert!(matches!(bad("/example.com/a/v2/@v/v1.0.0.mod"), PathError::NoSuchVersion(_)));
        assert!(matches!(bad("/example.com/a/@v/v2.0.0.mod"), PathError::NoSuchVersion(_)));
        assert!(matches!(bad("/example.com/a/@v/v1.2.mod"), PathError::NoSuchVersion(_)));
        assert!(matches!(bad("/example.com/a/@v/master.zip"), PathError::NoSuchVersion(_)));
    }

    #[test]
    fn refuses_hostile_sumdb_targets() {
        let bad = |t: &str| parse(t).unwrap_err();
        assert!(matches!(bad("/sumdb"), PathError::UnknownEndpoint));
        assert!(matches!(bad("/sumdb/sum.example"), PathError::UnknownEndpoint));
        assert!(matches!(bad("/sumdb/sum.example/"), PathError::BadTarget(_)));
        assert!(matches!(bad("/sumdb/sum.example/other"), PathError::UnknownEndpoint));
        assert!(matches!(bad("/sumdb/sum.example/supported/x"), PathError::UnknownEndpoint));
        assert!(matches!(bad("/sumdb/sum+key/supported"), PathError::BadTarget(_)));
        assert!(matches!(bad("/sumdb/sum.example/../x/latest"), PathError::BadTarget(_)));
        assert!(matches!(bad("/sumdb/sum.example/lookup/example.com/a"), PathError::BadTarget(_)));
        assert!(matches!(bad("/sumdb/sum.example/lookup/example.com/a@v1.0.0@v2"), PathError::BadTarget(_)));
        assert!(matches!(bad("/sumdb/sum.example/lookup/example.com/a@v1.0.0/go.mod"), PathError::BadTarget(_)));
        assert!(matches!(bad("/sumdb/sum.example/lookup/example.com/a@latest"), PathError::NoSuchVersion(_)));
        assert!(matches!(bad("/sumdb/sum.example/lookup/example.com/a@v1.0"), PathError::NoSuchVersion(_)));
        assert!(matches!(bad("/sumdb/sum.example/lookup/example.com/A@v1.0.0"), PathError::BadEscape(_)));
        assert!(matches!(bad("/sumdb/sum.example/tile/8/0/1"), PathError::BadTarget(_)));
        assert!(matches!(bad("/sumdb/sum.example/tile/31/0/000"), PathError::BadTarget(_)));
        assert!(matches!(bad("/sumdb/sum.example/tile/8/0/000.p/256"), PathError::BadTarget(_)));
        assert!(matches!(bad("/sumdb/sum.example/tile/8/0/000%2F"), PathError::BadTarget(_)));
    }

    proptest::proptest! {
        // Random element strings are often not valid module paths: they are
        // skipped (prop_assume), and 10,000 valid ones still run.
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 10_000, max_global_rejects: 200_000, ..Default::default() })]

        /// Never panics on any target.
        #[test]
        fn never_panics(target in "/[ -~]{0,120}") {
            let _ = parse(&target);
        }

        /// An artifact path escaped as the go command escapes it decodes
        /// back to the same module, version and kind.
        #[test]
        fn escaped_artifact_paths_round_trip(
            first in "[a-z0-9][a-z0-9-]{0,6}\\.[a-z]{2,5}",
            rest in proptest::collection::vec("[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,8}", 0..4),
            (major, minor, patch) in (0u32..3, 0u32..20, 0u32..20),
            ext in proptest::prop_oneof![proptest::strategy::Just("info"), proptest::strategy::Just("mod"), proptest::strategy::Just("zip")],
        ) {
            let mut module_path = first;
            for e in rest {
                module_path.push('/');
                module_path.push_str(&e);
            }
            // A /vN suffix (or gopkg.in's .vN) must match the major version: keep to v0/v1 paths.
            let major_suffix = |e: &str| e.len() > 1 && e.starts_with('v') && e[1..].bytes().all(|b| b.is_ascii_digit());
            proptest::prop_assume!(!module_path.starts_with("gopkg.in") && !module_path.split('/').skip(1).any(major_suffix));
            proptest::prop_assume!(crate::gomod::module::check_path(&module_path).is_ok());
            let major = major.min(1);
            let version = format!("v{major}.{minor}.{patch}");
            let (Ok(ep), Ok(ev)) = (module::escape_path(&module_path), module::escape_version(&version)) else { return Ok(()) };
            let target = format!("/{ep}/@v/{ev}.{ext}");
            match parse(&target) {
                Ok(Endpoint::Artifact { module: m, version: v, kind }) => {
                    proptest::prop_assert_eq!(m.as_ref(), module_path.as_str());
                    proptest::prop_assert_eq!(v.as_ref(), version.as_str());
                    proptest::prop_assert_eq!(Some(kind), Kind::from_extension(ext));
                }
                other => proptest::prop_assert!(false, "{target}: {other:?}"),
            }
        }
    }
}
