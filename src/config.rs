//! Configuration: the validated, typed settings the server runs with.
//!
//! Owns turning command-line flags (and their `GOMODPROXY_*` environment
//! twins) into a [`Config`], including the GOPROXY-style upstream list and
//! its defaults. It must never start anything or touch the network: a bad
//! setting is reported here, before any executor exists.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::gomod::pattern::{BadPattern, PrefixPatterns};

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
    /// Checksum databases proxied under `/sumdb/<name>/` (empty: none).
    pub sumdb_names: Vec<String>,
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

/// Where a cache hit is answered.
///
/// `Local` reads the owner shard's lock-free index from whichever core
/// accepted the connection; `Owner` always hops to the owning core first.
/// Misses always go to the owner (that is what makes fills single-flight).
/// Both exist so the cost of the hop can be measured on a real server
/// (see BENCHMARKS.md); `Local` is the default because it is cheaper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HitRouting {
    Local,
    Owner,
}

/// Limits on what one client may make the server hold or wait for.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Longest request target accepted (414 beyond).
    pub max_uri_bytes: usize,
    /// Request line plus all headers (431 beyond).
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// From the first byte of a request to the end of its headers.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in flight.
    pub idle_timeout: Duration,
    /// One stalled write to a client that stopped reading.
    pub write_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_uri_bytes: 4096,
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// How to fall through from one upstream to the next, as GOPROXY defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// `,`: try the next entry only when this one answered 404 or 410.
    OnNotFound,
    /// `|`: try the next entry after any error.
    OnAnyError,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamSpec {
    /// A directory in the GOPROXY file layout.
    File(PathBuf),
    /// `http://` or `https://` base URL, without a trailing slash.
    Http(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamEntry {
    pub spec: UpstreamSpec,
    /// How to continue after this entry fails.
    pub fallback: Fallback,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamList {
    pub entries: Vec<UpstreamEntry>,
}

/// Where an upstream list came from decides how strict we are with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamSource {
    /// Given explicitly (`--upstream`, `GOMODPROXY_UPSTREAM`): every entry must work.
    Flag,
    /// Inherited from `GOPROXY` or `go env GOPROXY`: entries we cannot serve
    /// yet (`direct`) are skipped with a warning rather than refusing to start.
    Inherited,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    EmptyUpstream(String),
    UnsupportedUpstream { entry: String, reason: &'static str },
    BadUpstream { entry: String, reason: &'static str },
    NoUpstream,
    BadSumDbName(String),
    BadPrivatePattern(BadPattern),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::EmptyUpstream(list) => {
                write!(f, "upstream list {list:?} has no usable entry")
            }
            ConfigError::UnsupportedUpstream { entry, reason } => {
                write!(f, "upstream {entry:?} is not supported: {reason}")
            }
            ConfigError::BadUpstream { entry, reason } => {
                write!(f, "upstream {entry:?} is invalid: {reason}")
            }
            ConfigError::NoUpstream => write!(
                f,
                "no upstream configured: pass --upstream, or set GOPROXY, or install the go \
                 command so that `go env GOPROXY` answers"
            ),
            ConfigError::BadPrivatePattern(e) => write!(f, "private module patterns: {e}"),
            ConfigError::BadSumDbName(name) => {
                write!(f, "checksum database name {name:?} is invalid: expected a host name (letters, digits, '.', '-', '_')")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Warnings produced while parsing, for the caller to log.
pub type Warnings = Vec<String>;

impl UpstreamList {
    /// Parses a GOPROXY-style list: entries separated by `,` or `|`.
    pub fn parse(list: &str, source: UpstreamSource) -> Result<(UpstreamList, Warnings), ConfigError> {
        let mut entries = Vec::new();
        let mut warnings = Vec::new();
        let mut rest = list.trim();
        while !rest.is_empty() {
            let (raw, fallback, tail) = match rest.find([',', '|']) {
                Some(i) => {
                    let fb = if rest.as_bytes()[i] == b'|' { Fallback::OnAnyError } else { Fallback::OnNotFound };
                    (&rest[..i], fb, &rest[i + 1..])
                }
                None => (rest, Fallback::OnNotFound, ""),
            };
            rest = tail;
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            match parse_entry(raw) {
                Ok(Some(spec)) => entries.push(UpstreamEntry { spec, fallback }),
                // `off` ends the list: the go command stops there too.
                Ok(None) => break,
                Err(e) => match (source, raw) {
                    (UpstreamSource::Inherited, "direct") => warnings.push(
                        "skipping upstream entry \"direct\" inherited from GOPROXY: fetching \
                         from version control is not implemented yet"
                            .to_string(),
                    ),
                    _ => return Err(e),
                },
            }
        }
        if entries.is_empty() {
            return Err(ConfigError::EmptyUpstream(list.to_string()));
        }
        Ok((UpstreamList { entries }, warnings))
    }
}

impl UpstreamList {
    /// The `file://` entries alone (with their fallbacks): the upstreams
    /// private modules may use when no `--private-upstream` is given.
    /// `None` when there are none.
    pub fn local_only(&self) -> Option<UpstreamList> {
        let entries: Vec<UpstreamEntry> = self.entries.iter().filter(|e| matches!(e.spec, UpstreamSpec::File(_))).cloned().collect();
        (!entries.is_empty()).then_some(UpstreamList { entries })
    }
}

fn parse_entry(raw: &str) -> Result<Option<UpstreamSpec>, ConfigError> {
    let bad = |reason| ConfigError::BadUpstream { entry: raw.to_string(), reason };
    match raw {
        "off" => return Ok(None),
        "direct" => {
            return Err(ConfigError::UnsupportedUpstream {
                entry: raw.to_string(),
                reason: "fetching straight from version control (\"direct\") is not implemented yet",
            })
        }
        _ => {}
    }
    if let Some(path) = raw.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(bad("a file:// upstream needs an absolute path (file:///dir)"));
        }
        return Ok(Some(UpstreamSpec::File(PathBuf::from(path))));
    }
    for scheme in ["http://", "https://"] {
        if let Some(after) = raw.strip_prefix(scheme) {
            let host_end = after.find('/').unwrap_or(after.len());
            if host_end == 0 {
                return Err(bad("missing host"));
            }
            if raw.contains(['?', '#']) {
                return Err(bad("an upstream URL cannot carry a query or fragment"));
            }
            // Credentials in the URL would be in every log line and error
            // message naming the upstream; the error itself must not echo them.
            if let Some(at) = after[..host_end].rfind('@') {
                return Err(ConfigError::BadUpstream {
                    entry: format!("{scheme}…@{}", &after[at + 1..]),
                    reason: "credentials in the URL are not accepted: put them in an --upstream-auth file",
                });
            }
            return Ok(Some(UpstreamSpec::Http(raw.trim_end_matches('/').to_string())));
        }
    }
    Err(bad("expected file://, http://, https://, direct or off"))
}

/// Parses a `--sumdb` list: comma-separated checksum database names;
/// `off` (or nothing) proxies none.
pub fn parse_sumdb_names(list: &str) -> Result<Vec<String>, ConfigError> {
    let mut names: Vec<String> = Vec::new();
    for raw in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if raw == "off" {
            continue;
        }
        if !crate::gomod::tlog::valid_db_name(raw) {
            return Err(ConfigError::BadSumDbName(raw.to_string()));
        }
        if !names.iter().any(|n| n == raw) {
            names.push(raw.to_string());
        }
    }
    Ok(names)
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
    fn parses_separators_and_fallbacks() {
        let (l, w) = UpstreamList::parse("http://a.test|file:///srv/mods,http://b.test/x/", UpstreamSource::Flag).unwrap();
        assert!(w.is_empty());
        assert_eq!(l.entries.len(), 3);
        assert_eq!(l.entries[0].fallback, Fallback::OnAnyError);
        assert_eq!(l.entries[1].spec, UpstreamSpec::File("/srv/mods".into()));
        assert_eq!(l.entries[1].fallback, Fallback::OnNotFound);
        assert_eq!(l.entries[2].spec, UpstreamSpec::Http("http://b.test/x".into()));
    }

    #[test]
    fn credentials_in_an_upstream_url_are_refused_without_being_echoed() {
        let err = UpstreamList::parse("https://alice:s3cr3t@mirror.test/go", UpstreamSource::Flag).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--upstream-auth") && text.contains("mirror.test"), "{text}");
        assert!(!text.contains("s3cr3t") && !text.contains("alice"), "{text}");
    }

    #[test]
    fn off_ends_the_list() {
        let (l, _) = UpstreamList::parse("http://a.test,off,http://b.test", UpstreamSource::Flag).unwrap();
        assert_eq!(l.entries.len(), 1);
        assert!(UpstreamList::parse("off", UpstreamSource::Flag).is_err());
    }

    #[test]
    fn direct_is_an_error_when_asked_for_and_a_warning_when_inherited() {
        let err = UpstreamList::parse("direct", UpstreamSource::Flag).unwrap_err();
        assert!(matches!(err, ConfigError::UnsupportedUpstream { .. }));
        let (l, w) = UpstreamList::parse("https://mirror.test,direct", UpstreamSource::Inherited).unwrap();
        assert_eq!(l.entries.len(), 1);
        assert_eq!(w.len(), 1);
        assert!(UpstreamList::parse("direct", UpstreamSource::Inherited).is_err());
    }

    #[test]
    fn private_modules_fall_back_to_local_trees_only() {
        let (l, _) = UpstreamList::parse("http://a.test|file:///srv/mods,https://b.test,file:///srv/more", UpstreamSource::Flag).unwrap();
        let local = l.local_only().unwrap();
        assert_eq!(local.entries.len(), 2);
        assert!(local.entries.iter().all(|e| matches!(e.spec, UpstreamSpec::File(_))));
        let (l, _) = UpstreamList::parse("http://a.test", UpstreamSource::Flag).unwrap();
        assert!(l.local_only().is_none());
        assert!(parse_private("corp.example/[").is_err());
        assert!(parse_private("").unwrap().is_empty());
    }

    #[test]
    fn sumdb_names() {
        assert_eq!(parse_sumdb_names("sum.example, other.example,sum.example").unwrap(), ["sum.example", "other.example"]);
        assert!(parse_sumdb_names("off").unwrap().is_empty());
        assert!(parse_sumdb_names("").unwrap().is_empty());
        assert!(parse_sumdb_names("a/b").is_err());
        assert_eq!(sumdb_name_of("sum.example+abcd1234+AQIDBA== https://sum.example/db"), Some("sum.example"));
        assert_eq!(sumdb_name_of("sum.example"), Some("sum.example"));
        assert_eq!(sumdb_name_of("off"), None);
        assert_eq!(sumdb_name_of("  "), None);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["ftp://x", "file://relative", "http://", "http://h/?q", "nonsense"] {
            assert!(UpstreamList::parse(bad, UpstreamSource::Flag).is_err(), "{bad}");
        }
    }
}
