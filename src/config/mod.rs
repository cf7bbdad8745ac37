//! Configuration: the validated, typed settings the server runs with.
//!
//! Owns turning command-line flags (and their `GOMODPROXY_*` environment
//! twins, `flags`) into a [`Config`], with every cross-flag rule and every
//! default inherited from the go command's own environment. It must never
//! start anything or touch the network: a bad setting is reported here,
//! before any executor exists.

pub mod file;
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
    /// Plain HTTP; `None`: `--listen off` (HTTPS only).
    pub listen: Option<SocketAddr>,
    /// The admin listener (`/metrics`, `/healthz`, `POST /purge`), loopback; `None`: off.
    pub admin_listen: Option<SocketAddr>,
    /// `--log-format json`: log lines as JSON objects.
    pub log_json: bool,
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
    /// `--max-store-size`: the bound on the store's bytes on disk; `None`: none.
    pub max_store_bytes: Option<u64>,
    /// `--rate-limit`: per client address and per client name, every request.
    pub rate_limit: Option<crate::edge::rate::Limit>,
    /// `--miss-rate-limit`: likewise, requests that go past a local hit.
    pub miss_rate_limit: Option<crate::edge::rate::Limit>,
    /// `--audit-log`: where one JSON line per request goes; `None`: nowhere.
    pub audit_log: Option<crate::edge::audit::AuditDest>,
    /// `--tls-listen` with its certificate and key.
    pub tls: Option<TlsListen>,
    /// `--auth`: the clients and what each may read; `None`: no checks.
    pub auth: Option<PathBuf>,
    /// What callers without a token may read (with `--auth`).
    pub anonymous: crate::edge::access::Anonymous,
    /// `--proxy-protocol on`: the peers that must send a PROXY header; `None`: off.
    pub proxy_protocol_from: Option<Vec<crate::edge::Cidr>>,
    /// The memory all fills may hold together (bodies buffered on their way in).
    pub fill_memory: u64,
    /// Pace of the background check of stored blobs, per core; 0: off.
    pub scrub_bytes_per_sec: u64,
    pub hit_routing: HitRouting,
    /// `--spin-before-park`: how long a core polls before it sleeps; zero: not at all.
    pub spin_before_park: std::time::Duration,
    pub fetch_threads: usize,
    /// Upstream fetches one core runs at once, each on a thread of its own.
    pub fetch_concurrency: usize,
    /// Of those, fetches for one module at once.
    pub module_fetch_concurrency: usize,
    /// `--prefetch on`: the `.info`/`.mod` of what a served go.mod requires
    /// are fetched ahead of the client.
    pub prefetch: bool,
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
    /// The `[[git]]` sources of `--config`, which answer `direct`.
    pub git: Vec<crate::upstream::git::GitSource>,
    /// Most one git command may take.
    pub git_timeout: Duration,
    /// Most fetches at a time per Git host.
    pub git_host_concurrency: usize,
    /// How long a DNS answer for an upstream host is reused before it is
    /// refreshed in the background; zero: no cache.
    pub dns_cache_ttl: Duration,
    /// `--shared-store`: the tier every node shares; `None`: this node alone.
    pub shared: Option<crate::shared::SharedSettings>,
}

/// Where HTTPS is served, and the certificate it presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListen {
    pub addr: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Config {
    /// The size of a new segment: `--segment-size`, but at most a quarter of
    /// `--max-store-size` per core, so that every core's open segment
    /// together never take more than a quarter of the bound and the bound
    /// holds within one segment.
    pub fn segment_bytes_under_bound(&self) -> u64 {
        match self.max_store_bytes {
            Some(max) => self.segment_bytes.min(max / (4 * self.cores.max(1) as u64)).max(1 << 20),
            None => self.segment_bytes,
        }
    }
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
    /// The edge's settings (`--proxy-protocol*`) do not fit together or do not parse.
    BadEdge(String),
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
    /// A `file://` entry of an upstream list names no directory.
    UpstreamDir {
        flag: &'static str,
        dir: PathBuf,
    },
    /// `--shared-store` names no store we can use.
    SharedStore(String),
    /// The command line itself no longer parses on a reload (a changed
    /// environment variable, say).
    Reload(String),
    /// `--config` could not be read, or holds what is no setting.
    ConfigFile {
        path: PathBuf,
        reason: String,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Upstream(e) => e.fmt(f),
            ConfigError::Invalid(what) => f.write_str(what),
            ConfigError::BadEdge(why) => f.write_str(why),
            ConfigError::UpstreamAuthUnreadable { path, error } => write!(f, "reading --upstream-auth {}: {error}", path.display()),
            ConfigError::UpstreamAuth { path, error } => write!(f, "--upstream-auth {}: {error}", path.display()),
            ConfigError::UpstreamTls(e) => write!(f, "https upstream set-up: {e}"),
            ConfigError::ConfigFile { path, reason } => write!(f, "--config {}: {reason}", path.display()),
            ConfigError::SharedStore(reason) => write!(f, "--shared-store: {reason}"),
            ConfigError::Reload(reason) => f.write_str(reason),
            ConfigError::UpstreamDir { flag, dir } => {
                write!(f, "{flag}: file://{}: no such directory (a file:// upstream is a GOPROXY tree: MODULE/@v/list, …)", dir.display())
            }
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

/// The checksum databases the go command knows by name alone, with the
/// verifier key it builds in for each (cmd/go's `knownGOSUMDB`). This is
/// the one place such a name is written: a bare name is verified with the
/// key the go command itself would use, never trusted unverified.
const KNOWN_SUMDBS: &[(&str, &str)] = &[("sum.golang.org", "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8")];

/// One `--sumdb` entry, in `GOSUMDB` syntax: `name`, or `name+hash+key`,
/// either optionally followed by a space and the database's URL.
#[derive(Debug, Clone)]
pub struct SumDbSpec {
    pub name: String,
    /// The database's key: every answer relayed, and (for the first
    /// database) every public module stored, is verified with it.
    pub verifier: Verifier,
    /// The database's own URL, asked after the upstreams' `/sumdb/<name>/`:
    /// as given, else (for a database the go command knows by name)
    /// `https://<name>`, as the go command would; else none.
    pub url: Option<UpstreamList>,
}

/// Parses a `--sumdb` list: comma-separated `GOSUMDB`-style entries;
/// `off` (or nothing) serves none. A name given twice counts once. A name
/// without a key must be one the go command knows (it gets that key);
/// any other is refused, with what to write instead.
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
        let known = KNOWN_SUMDBS.iter().find(|(n, _)| *n == name).map(|(_, key)| *key);
        let key = match (db.contains('+'), known) {
            (true, _) => db,
            (false, Some(key)) => key,
            (false, None) => {
                return Err(bad(format!(
                    "no key for checksum database {name}: give it as NAME+HASH+KEY (its verifier key, as in GOSUMDB); \
                     only a database the go command knows by name may be given by name alone"
                )))
            }
        };
        let verifier = Verifier::parse(key).map_err(|e| bad(e.to_string()))?;
        let url = match (url, known) {
            (Some(url), _) => Some(url.to_string()),
            (None, Some(_)) => Some(format!("https://{name}")),
            (None, None) => None,
        };
        let url = match url {
            None => None,
            Some(url) => {
                let (list, _) = UpstreamList::parse(&url, UpstreamSource::Flag).map_err(|e| bad(e.to_string()))?;
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

/// `--sumdb` when not given: `GOSUMDB` from the environment, else as
/// `go env GOSUMDB` reports it (the go command's default database, by
/// name). The default is never spelled out here: it is whatever the
/// installed go command would verify against. `off` (or no go command)
/// serves none.
pub fn inherited_sumdb() -> String {
    match std::env::var("GOSUMDB") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => go_env("GOSUMDB").unwrap_or_default(),
    }
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

/// This machine's host name, if it has a printable one.
pub(crate) fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or fails.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&buf[..end]).ok().map(str::to_string).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_patterns_must_compile() {
        assert!(parse_private("corp.example/[").is_err());
        assert!(parse_private("").unwrap().is_empty());
    }

    /// A key for `sum.example`, as tests/sumdb_gen.go prints it.
    const TEST_KEY: &str = "sum.example+b118b807+AVTghqf+SVc6TgS+vNsFZAo/v3j6AmwPW9ZTT/Nh5C1X";

    #[test]
    fn sumdb_entries_need_a_key_unless_the_go_command_knows_the_name() {
        let names = |list: &str| parse_sumdb(list).map(|s| s.into_iter().map(|s| s.name).collect::<Vec<_>>());
        let two = format!("{TEST_KEY} http://127.0.0.1:1, {TEST_KEY}");
        assert_eq!(names(&two).unwrap(), ["sum.example"]);
        assert!(names("off").unwrap().is_empty());
        assert!(names("").unwrap().is_empty());
        assert!(names("a/b").is_err());
        let bare = parse_sumdb("sum.example").unwrap_err().to_string();
        assert!(bare.contains("NAME+HASH+KEY"), "{bare}");
        assert!(parse_sumdb("sum.example+00000000+AVTghqf+SVc6TgS+vNsFZAo/v3j6AmwPW9ZTT/Nh5C1X").is_err(), "key hash must match");
        let (name, key) = KNOWN_SUMDBS[0];
        let known = parse_sumdb(name).unwrap();
        assert_eq!(known[0].verifier.name(), name);
        let url = known[0].url.as_ref().expect("the go command's own URL rule");
        assert!(matches!(&url.entries[0].spec, UpstreamSpec::Http(u) if u.as_str().contains(name)), "{:?}", url.entries[0].spec);
        assert!(parse_sumdb(key).unwrap()[0].url.is_some());
        let given = parse_sumdb(&format!("{TEST_KEY} http://127.0.0.1:9")).unwrap();
        assert!(given[0].url.is_some());
        assert!(parse_sumdb(TEST_KEY).unwrap()[0].url.is_none(), "no URL: through the upstreams only");
    }
}
