//! Configuration: the validated, typed settings the server runs with.
//!
//! Owns turning command-line flags (and their `GOMODPROXY_*` environment
//! twins, `flags`) into a [`Config`], with every cross-flag rule and every
//! default inherited from the go command's own environment. It must never
//! start anything or touch the network: a bad setting is reported here,
//! before any executor exists.

pub mod flags;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::gomod::note::Verifier;
use crate::gomod::pattern::{BadPattern, PrefixPatterns};
use crate::http::HttpLimits;
use crate::resolve::HitRouting;
use crate::upstream::list::{ListError, UpstreamList, UpstreamSource, UpstreamSpec};

/// Everything `gomodproxy serve` needs, already validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub upstream: UpstreamList,
    /// Module paths never sent to an `http(s)` entry of `upstream` (GOPRIVATE syntax).
    pub private: PrefixPatterns,
    /// The only upstreams private modules are fetched from; `None`: the
    /// `file://` entries of `upstream`.
    pub private_upstream: Option<UpstreamList>,
    pub cores: usize,
    pub backlog: u32,
    /// `None`: the open-file limit less what segments, cores and upstreams need.
    pub max_connections: Option<usize>,
    pub limits: HttpLimits,
    pub list_ttl: Duration,
    /// Checksum databases proxied under `/sumdb/<name>/` (empty: none);
    /// the first given with a key also verifies every public module.
    pub sumdbs: Vec<SumDbSpec>,
    /// Cache time of checksum-database lookups, tree heads and partial tiles.
    pub sumdb_ttl: Duration,
    /// How long an upstream's 404/410 is remembered; zero disables it.
    pub negative_ttl: Duration,
    /// Serve zips of at least this many bytes to their requesters while
    /// they are being fetched; `None`: never.
    pub stream_fills: Option<u64>,
    pub segment_bytes: u64,
    pub hit_routing: HitRouting,
    pub fetch_threads: usize,
    /// Total time for one upstream fetch, body included.
    pub upstream_timeout: Duration,
    /// Longest wait for a TCP (and TLS) connection to an upstream.
    pub upstream_connect_timeout: Duration,
    /// Longest wait for any read from an upstream: the first byte of its
    /// answer, and every pause inside the body.
    pub upstream_read_timeout: Duration,
    /// TLS set-up and credentials shared by the http(s) upstreams.
    pub upstream_http: Option<crate::upstream::HttpSetup>,
    /// Extra attempts of a request that could not connect.
    pub upstream_retries: u32,
    /// Wait before the first of them; doubled for each further one.
    pub upstream_retry_backoff: Duration,
    /// Consecutive failures that open an upstream's circuit; 0 disables the breaker.
    pub breaker_failures: u32,
    /// How long an open circuit skips its upstream.
    pub breaker_cooldown: Duration,
    /// How long SIGTERM waits for open connections before exiting.
    pub drain_timeout: Duration,
}

#[derive(Debug)]
pub enum ConfigError {
    Upstream(ListError),
    NoUpstream,
    BadSumDbName(String),
    /// A `--sumdb` entry that is not `name`, `name+hash+key`, or either and a URL.
    BadSumDb {
        entry: String,
        reason: String,
    },
    BadPrivatePattern(BadPattern),
    /// A setting out of its range, with what the flag needs.
    Invalid(&'static str),
    /// `--upstream-auth` could not be read.
    UpstreamAuthUnreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    /// `--upstream-auth` is not a valid credentials file.
    UpstreamAuth {
        path: PathBuf,
        error: crate::upstream::auth::AuthError,
    },
    /// The TLS client (trusted roots, client certificate) could not be set up.
    UpstreamTls(crate::upstream::tls::TlsError),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Upstream(e) => e.fmt(f),
            ConfigError::Invalid(what) => f.write_str(what),
            ConfigError::UpstreamAuthUnreadable { path, error } => write!(f, "reading --upstream-auth {}: {error}", path.display()),
            ConfigError::UpstreamAuth { path, error } => write!(f, "--upstream-auth {}: {error}", path.display()),
            ConfigError::UpstreamTls(e) => write!(f, "https upstream set-up: {e}"),
            ConfigError::NoUpstream => write!(
                f,
                "no upstream configured: pass --upstream, or set GOPROXY, or install the go \
                 command so that `go env GOPROXY` answers"
            ),
            ConfigError::BadPrivatePattern(e) => write!(f, "private module patterns: {e}"),
            ConfigError::BadSumDb { entry, reason } => write!(f, "--sumdb {entry:?}: {reason}"),
            ConfigError::BadSumDbName(name) => {
                write!(f, "checksum database name {name:?} is invalid: expected a host name (letters, digits, '.', '-', '_')")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ListError> for ConfigError {
    fn from(e: ListError) -> Self {
        ConfigError::Upstream(e)
    }
}

/// One `--sumdb` entry, in `GOSUMDB` syntax: `name`, or `name+hash+key`,
/// either optionally followed by a space and the database's URL.
#[derive(Debug, Clone)]
pub struct SumDbSpec {
    pub name: String,
    /// With a key, fetched modules are verified against the database before
    /// they are stored; without, it is only proxied.
    pub verifier: Option<Verifier>,
    /// The database's own URL, asked after the upstreams' `/sumdb/<name>/`.
    pub url: Option<UpstreamList>,
}

/// Parses a `--sumdb` list: comma-separated `GOSUMDB`-style entries;
/// `off` (or nothing) proxies none. A name given twice counts once.
pub fn parse_sumdb(list: &str) -> Result<Vec<SumDbSpec>, ConfigError> {
    let mut specs: Vec<SumDbSpec> = Vec::new();
    for raw in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if raw == "off" {
            continue;
        }
        let (db, url) = match raw.split_once(char::is_whitespace) {
            Some((db, url)) => (db, Some(url.trim())),
            None => (raw, None),
        };
        let name = db.split('+').next().unwrap_or(db);
        if !crate::gomod::tlog::valid_db_name(name) {
            return Err(ConfigError::BadSumDbName(name.to_string()));
        }
        let bad = |reason: String| ConfigError::BadSumDb { entry: raw.to_string(), reason };
        let verifier = if db.contains('+') { Some(Verifier::parse(db).map_err(|e| bad(e.to_string()))?) } else { None };
        let url = match url {
            None => None,
            Some(url) => {
                let (list, _) = UpstreamList::parse(url, UpstreamSource::Flag).map_err(|e| bad(e.to_string()))?;
                if list.entries.len() != 1 || !matches!(list.entries[0].spec, UpstreamSpec::Http(_)) {
                    return Err(bad("the database's URL must be one http:// or https:// URL".into()));
                }
                Some(list)
            }
        };
        if !specs.iter().any(|s| s.name == name) {
            specs.push(SumDbSpec { name: name.to_string(), verifier, url });
        }
    }
    Ok(specs)
}

/// Compiles `--private` (GOPRIVATE syntax). A malformed glob is an error:
/// silently never matching would send private paths upstream.
pub fn parse_private(list: &str) -> Result<PrefixPatterns, ConfigError> {
    PrefixPatterns::parse(list).map_err(ConfigError::BadPrivatePattern)
}

/// `--private` when not given: `GONOPROXY`, else `GOPRIVATE` (the go
/// command's own default for GONOPROXY), from the environment, else as
/// `go env` reports them (which includes `go env -w` settings).
pub fn inherited_private() -> String {
    for var in ["GONOPROXY", "GOPRIVATE"] {
        if let Ok(v) = std::env::var(var) {
            if !v.trim().is_empty() {
                return v;
            }
        }
    }
    go_env("GONOPROXY").unwrap_or_default()
}

/// The checksum database name to proxy when `--sumdb` was not given: the
/// first field of `GOSUMDB` (`name+key url` → `name`), else that of
/// `go env GOSUMDB`, which names the go command's default database. The
/// default is never spelled out here: it is whatever the installed go
/// command would contact. `off` (or no go command) proxies none.
pub fn inherited_sumdb() -> String {
    let value = match std::env::var("GOSUMDB") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => go_env("GOSUMDB").unwrap_or_default(),
    };
    sumdb_name_of(&value).unwrap_or_default().to_string()
}

/// The database name in a `GOSUMDB` value; `None` for `off` and for a
/// value whose name is not one we could put in a URL.
fn sumdb_name_of(gosumdb: &str) -> Option<&str> {
    let first = gosumdb.split_whitespace().next()?;
    let name = first.split('+').next()?;
    (name != "off" && crate::gomod::tlog::valid_db_name(name)).then_some(name)
}

fn go_env(var: &str) -> Option<String> {
    let out = std::process::Command::new("go").args(["env", var]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v = String::from_utf8(out.stdout).ok()?;
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// The upstream list to use when `--upstream` was not given: the `GOPROXY`
/// environment variable, else what `go env GOPROXY` prints.
pub fn inherited_upstream() -> Option<String> {
    if let Ok(v) = std::env::var("GOPROXY") {
        if !v.trim().is_empty() {
            return Some(v);
        }
    }
    go_env("GOPROXY")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_patterns_must_compile() {
        assert!(parse_private("corp.example/[").is_err());
        assert!(parse_private("").unwrap().is_empty());
    }

    #[test]
    fn sumdb_names() {
        let names = |list: &str| parse_sumdb(list).map(|s| s.into_iter().map(|s| s.name).collect::<Vec<_>>());
        assert_eq!(names("sum.example, other.example,sum.example").unwrap(), ["sum.example", "other.example"]);
        assert!(names("off").unwrap().is_empty());
        assert!(names("").unwrap().is_empty());
        assert!(names("a/b").is_err());
        assert_eq!(sumdb_name_of("sum.example+abcd1234+AQIDBA== https://sum.example/db"), Some("sum.example"));
        assert_eq!(sumdb_name_of("sum.example"), Some("sum.example"));
        assert_eq!(sumdb_name_of("off"), None);
        assert_eq!(sumdb_name_of("  "), None);
    }
}
