//! The command line: `gomodproxy serve` and its flags, each with a
//! `GOMODPROXY_*` environment twin, and their translation into a [`Config`].
//!
//! Owns flag syntax (durations, sizes, `off`), defaults, help texts and the
//! rules that tie flags together. It never starts anything: the binary
//! hands the [`Config`] to the runtime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, CommandFactory as _, Parser, Subcommand};

use super::{Config, ConfigError};
use crate::http::HttpLimits;
use crate::resolve::HitRouting;
use crate::upstream::auth::AuthTable;
use crate::upstream::list::{UpstreamList, UpstreamSource, UpstreamSpec};
use crate::upstream::HttpSetup;

#[derive(Parser)]
#[command(name = "gomodproxy", version, about = "A thread-per-core Go module proxy (the server a GOPROXY= setting points at).")]
#[command(long_about = "A thread-per-core Go module proxy (the server a GOPROXY= setting points at).\n\n\
Every flag can also be set through an environment variable: GOMODPROXY_ followed by the flag's \
name in upper case with dashes as underscores (--list-ttl is GOMODPROXY_LIST_TTL).\n\n\
Example:\n  gomodproxy serve --listen 0.0.0.0:8080 --data /var/lib/gomodproxy\n  \
GOPROXY=http://HOST:8080 GOFLAGS=-mod=mod go build ./...")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the GOPROXY protocol.
    Serve(ServeArgs),
    /// Audit a stopped store: re-hash every blob against what was recorded when it was
    /// stored (and, for public modules, against the first --sumdb database where it
    /// answers); report and quarantine every mismatch; exit 1 if there was any. Takes
    /// serve's flags (--data, --sumdb, --upstream, --private...); `--sumdb off` checks
    /// only what the store itself recorded.
    Verify(ServeArgs),
    /// Withdraw a module version (or a whole module) from a stopped store, for good:
    /// `MODULE@VERSION` its .info, .mod, .zip and kept go.sum hashes, `MODULE` every
    /// version and its list and @latest. It is fetched afresh on its next request.
    Purge(PurgeArgs),
}

#[derive(Args)]
pub struct PurgeArgs {
    /// Directory of the segment store (the server must be stopped).
    #[arg(long, env = "GOMODPROXY_DATA", default_value = "./data")]
    pub data: PathBuf,

    /// The shared store the fleet's nodes serve from (serve's --shared-store): its copies of
    /// what is purged are deleted too, so that no node reads them back. Other nodes' own
    /// stores keep theirs: purge each of them as well (online: POST /purge).
    #[arg(long, env = "GOMODPROXY_SHARED_STORE")]
    shared_store: Option<String>,

    /// `MODULE` or `MODULE@VERSION` (decoded module path, canonical version).
    pub target: String,
}

impl PurgeArgs {
    /// The shared store to purge too, checked as serve checks it. The
    /// client waits as long as serve's defaults let it (10s to connect, 60s
    /// for an answer) and gives the whole of each request two minutes; no
    /// lease is ever taken.
    pub fn shared_settings(&self) -> Result<Option<crate::shared::SharedSettings>, ConfigError> {
        let Some(url) = self.shared_store.as_deref().map(str::trim) else { return Ok(None) };
        check_shared_url(url)?;
        Ok(Some(crate::shared::SharedSettings {
            url: url.to_string(),
            lease: Duration::from_secs(60),
            wait_limit: Duration::ZERO,
            node: "gomodproxy-purge".to_string(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(120),
            breaker_failures: 1,
            breaker_cooldown: Duration::from_secs(1),
        }))
    }
}

/// The form of a `--shared-store` URL (the client itself is built, without
/// touching the network, when the server starts or the purge begins).
fn check_shared_url(url: &str) -> Result<(), ConfigError> {
    let bad = |why: String| ConfigError::SharedStore(why);
    let parsed = url::Url::parse(url).map_err(|e| bad(format!("{url}: {e}")))?;
    match parsed.scheme() {
        "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" => {
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(bad(format!("{url}: no bucket (want {}://BUCKET/PREFIX)", parsed.scheme())));
            }
            Ok(())
        }
        "file" => {
            let dir = parsed.to_file_path().map_err(|()| bad(format!("{url}: not a local directory")))?;
            if !dir.is_dir() {
                return Err(bad(format!("{}: no such directory", dir.display())));
            }
            Ok(())
        }
        other => Err(bad(format!("{url}: unknown scheme {other}:// (want s3://, gs://, az:// or file://)"))),
    }
}

#[derive(Args)]
pub struct ServeArgs {
    /// A TOML file of settings: each key a flag's long name (`list_ttl = "30s"`,
    /// `private = ["*.corp.example"]`). A flag or GOMODPROXY_* variable overrides it.
    #[arg(long, env = "GOMODPROXY_CONFIG")]
    config: Option<PathBuf>,

    /// The `[[git]]` sources of `--config` (no flag of their own).
    #[arg(skip)]
    git: Vec<crate::upstream::git::GitSource>,

    /// Address to listen on for plain HTTP (every core accepts on it, with
    /// SO_REUSEPORT), or `off` (HTTPS only, with --tls-listen).
    #[arg(long, env = "GOMODPROXY_LISTEN", value_name = "ADDR|off", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    listen: Listen,

    /// Address to serve HTTPS on as well (every core accepts on it), with
    /// --tls-cert and --tls-key.
    #[arg(long, env = "GOMODPROXY_TLS_LISTEN", value_name = "ADDR", requires_all = ["tls_cert", "tls_key"])]
    tls_listen: Option<SocketAddr>,

    /// PEM certificate chain presented on --tls-listen (re-read on SIGHUP
    /// and when the file changes; a bad new pair is refused and the old one stays).
    #[arg(long, env = "GOMODPROXY_TLS_CERT", value_name = "FILE", requires = "tls_listen")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "GOMODPROXY_TLS_KEY", value_name = "FILE", requires = "tls_listen")]
    tls_key: Option<PathBuf>,

    /// Directory of the segment store (created if missing; locked while running).
    #[arg(long, env = "GOMODPROXY_DATA", default_value = "./data")]
    data: PathBuf,

    /// Log lines as `text` (human-readable) or `json` (one object a line: ts, level,
    /// target, msg, and module, version and kind for lines about a request).
    #[arg(long, env = "GOMODPROXY_LOG_FORMAT", value_name = "text|json", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,

    /// The admin listener, loopback only: GET /metrics, GET /healthz, and
    /// POST /purge?module=M[&version=V] (withdraws what the store holds of it,
    /// for good; fetched afresh on its next request). `off`: none.
    #[arg(long, env = "GOMODPROXY_ADMIN_LISTEN", value_name = "ADDR|off", default_value = "127.0.0.1:8081", value_parser = parse_admin_listen)]
    admin_listen: AdminListen,

    /// Upstream list in GOPROXY syntax: file:///dir, http://host, https://host;
    /// entries separated by ',' (next on 404/410) or '|' (next on any error); 'off' ends the list.
    /// Default: the GOPROXY environment variable, else `go env GOPROXY`
    /// (an inherited 'direct' entry is skipped with a warning until Git fetching exists).
    #[arg(long, env = "GOMODPROXY_UPSTREAM")]
    upstream: Option<String>,

    /// Module path patterns that are private (GOPRIVATE syntax: comma-separated
    /// globs matched against leading path elements, e.g. `*.corp.example,example.com/team`).
    /// Private modules are never sent to an http(s) entry of --upstream and never
    /// looked up in a checksum database; they come from --private-upstream, else from
    /// the file:// entries of --upstream, else they are not found (404).
    /// Default: GONOPROXY, else GOPRIVATE (environment, then `go env`).
    #[arg(long, env = "GOMODPROXY_PRIVATE")]
    private: Option<String>,

    /// Upstream list (GOPROXY syntax) trusted with private modules and consulted
    /// for nothing else. Default: none (only the file:// entries of --upstream).
    #[arg(long, env = "GOMODPROXY_PRIVATE_UPSTREAM")]
    private_upstream: Option<String>,

    /// Number of executors, one pinned per CPU (at most the CPUs this process may use). Default: all of them.
    #[arg(long, env = "GOMODPROXY_CORES")]
    cores: Option<usize>,

    /// Listen backlog of each core's socket.
    #[arg(long, env = "GOMODPROXY_BACKLOG", default_value_t = 4096)]
    backlog: u32,

    /// Most open client connections, split evenly across cores.
    /// Default: the open-file limit less a reserve for segment files, cores and upstreams.
    #[arg(long, env = "GOMODPROXY_MAX_CONNECTIONS")]
    max_connections: Option<usize>,

    /// How long `list` and `@latest` answers are cached (e.g. 60s, 5m).
    /// Past it a failing upstream still gets the stale copy served.
    #[arg(long, env = "GOMODPROXY_LIST_TTL", default_value = "60s", value_parser = parse_duration)]
    list_ttl: Duration,

    /// Checksum databases, in GOSUMDB syntax, comma-separated (`off` for none):
    /// `NAME+HASH+KEY`, or a bare NAME for the go command's default database (verified
    /// with the key the go command builds in; any other bare name is refused), each
    /// optionally followed by a space and the database's own URL (asked when no upstream
    /// answers for it). The first verifies every public module's .zip and .mod before it
    /// is stored (a mismatch is refused with 410); each is served under /sumdb/NAME/ from
    /// what was verified and kept in the store. Default: GOSUMDB, else `go env GOSUMDB`.
    #[arg(long, env = "GOMODPROXY_SUMDB")]
    sumdb: Option<String>,

    /// How long checksum-database lookups, tree heads (`latest`) and partial
    /// tiles are cached; past it a failing upstream still gets the stale copy
    /// served. Complete tiles never change and are stored for good.
    #[arg(long, env = "GOMODPROXY_SUMDB_TTL", default_value = "60s", value_parser = parse_duration)]
    sumdb_ttl: Duration,

    /// How long an upstream's 404/410 (for .info/.mod/.zip, list, @latest and
    /// checksum-database requests) is remembered, so a storm of requests for
    /// a missing module costs one upstream fetch per period. 0 disables it.
    /// A module version published meanwhile becomes visible at most this late.
    #[arg(long, env = "GOMODPROXY_NEGATIVE_TTL", default_value = "30s", value_parser = parse_duration)]
    negative_ttl: Duration,

    /// Time allowed from a request's first byte to the end of its headers.
    #[arg(long, env = "GOMODPROXY_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,

    /// How long an idle keep-alive connection is kept.
    #[arg(long, env = "GOMODPROXY_IDLE_TIMEOUT", default_value = "75s", value_parser = parse_duration)]
    idle_timeout: Duration,

    /// How long one write may stall on a client that stopped reading.
    #[arg(long, env = "GOMODPROXY_WRITE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    write_timeout: Duration,

    /// Longest request target accepted (414 beyond).
    #[arg(long, env = "GOMODPROXY_MAX_URI_BYTES", default_value_t = 4096)]
    max_uri_bytes: usize,

    /// Largest request head (request line and headers) accepted (431 beyond).
    #[arg(long, env = "GOMODPROXY_MAX_HEADER_BYTES", default_value_t = 16384)]
    max_header_bytes: usize,

    /// Size at which a segment file is sealed and a new one started (e.g. 1GiB, 64MiB).
    #[arg(long, env = "GOMODPROXY_SEGMENT_SIZE", default_value = "1GiB", value_parser = parse_segment_size)]
    segment_size: u64,

    /// The most the store may hold on disk (e.g. 200GiB; default: no bound,
    /// the store only grows). Past it whole segments are evicted, the one
    /// served least recently first; its blobs served since they were stored
    /// are copied forward, the rest fetched again when next asked for.
    /// Segments are made at most a quarter of it per core. SIGHUP applies a
    /// new value.
    #[arg(long, env = "GOMODPROXY_MAX_STORE_SIZE", value_name = "SIZE", value_parser = parse_max_store_size)]
    max_store_size: Option<u64>,

    /// Clients and what each may read: a TOML file of `[[client]]` tables
    /// (`name`, `token_sha256`: the hex SHA-256 of its token, `allow`:
    /// module-path patterns in GOPRIVATE syntax it may read beyond public
    /// modules, `admin`). Modules matching --private or any `allow` need a
    /// token: HTTP Basic (any user, the token as password, from .netrc) or
    /// Bearer. Re-read on SIGHUP.
    #[arg(long, env = "GOMODPROXY_AUTH", value_name = "FILE")]
    auth: Option<PathBuf>,

    /// Requests per client address, and per client name (a token's), e.g.
    /// `200/s,burst=400` (N/s, N/m or N/h; burst defaults to one second's
    /// worth). Over it: 429 with Retry-After. Health checks are exempt.
    #[arg(long, env = "GOMODPROXY_RATE_LIMIT", value_name = "RATE[,burst=N]", value_parser = crate::edge::rate::Limit::parse)]
    rate_limit: Option<crate::edge::rate::Limit>,

    /// Likewise for the expensive requests: those that go past a hit read
    /// in place to the module's owner (fills, refreshes of list/@latest,
    /// queries, checksum-database answers).
    #[arg(long, env = "GOMODPROXY_MISS_RATE_LIMIT", value_name = "RATE[,burst=N]", value_parser = crate::edge::rate::Limit::parse)]
    miss_rate_limit: Option<crate::edge::rate::Limit>,

    /// Write one JSON line per request (time, client, client_name, method,
    /// path, module, version, kind, status, bytes, duration_ms, cache,
    /// upstream) to FILE, or `-` for stderr. Never a token. Reopened on
    /// SIGHUP (log rotation); a slow or full disk drops lines
    /// (gomodproxy_audit_dropped), never stalls serving.
    #[arg(long, env = "GOMODPROXY_AUDIT_LOG", value_name = "FILE|-")]
    audit_log: Option<String>,

    /// What callers without a token may read when --auth is given: `public`
    /// modules, or `none` (every request needs a token).
    #[arg(long, env = "GOMODPROXY_ANONYMOUS", value_name = "public|none", default_value = "public", value_parser = ["public", "none"])]
    anonymous: String,

    /// Whether connections from the balancer start with a PROXY protocol
    /// header (v1 or v2) naming the client: `off` or `on` (with
    /// --proxy-protocol-from). The header's address is the one logs and
    /// access rules see.
    #[arg(long, env = "GOMODPROXY_PROXY_PROTOCOL", value_name = "off|on", default_value = "off", value_parser = ["off", "on"])]
    proxy_protocol: String,

    /// The peers (CIDRs, comma-separated) that must send a PROXY header
    /// when --proxy-protocol is on; a header from any other peer, or none
    /// from these, closes the connection unanswered.
    #[arg(long, env = "GOMODPROXY_PROXY_PROTOCOL_FROM", value_name = "CIDR,...")]
    proxy_protocol_from: Option<String>,

    /// The memory all fills may hold together (e.g. 512MiB): bodies arriving
    /// from upstreams are buffered whole (validated and hashed before they
    /// are stored). A fill that finds no room waits for it as long as for
    /// the upstream's next bytes, then answers 503. Keep it above the largest
    /// artifact expected (zips may have 500 MiB): a larger one never fits.
    #[arg(long, env = "GOMODPROXY_FILL_MEMORY", default_value = "512MiB", value_parser = parse_fill_memory)]
    fill_memory: u64,

    /// Bytes per second, per core, at which the stored blobs not yet hashed
    /// since start-up are checked in the background (e.g. 64MiB; `off`:
    /// only on first use). A blob whose bytes differ from their recorded
    /// SHA-256 is quarantined and fetched afresh when next asked for.
    #[arg(long, env = "GOMODPROXY_SCRUB_RATE", value_name = "SIZE|off", default_value = "64MiB", value_parser = parse_scrub_rate)]
    scrub_rate: u64,

    /// Where cache hits are answered: `local` reads the owner's lock-free index
    /// on the accepting core; `owner` hops to the owning core first.
    #[arg(long, env = "GOMODPROXY_HIT_ROUTING", default_value = "local", value_parser = parse_hit_routing())]
    hit_routing: HitRouting,

    /// How large stored bodies (zips) go out on plain TCP: `on`, with
    /// sendfile (page-cache pages handed to the socket: no copy to a
    /// network card); `off`, by sendmsg from the segment's map (the kernel
    /// copies them into the socket); `auto`, sendfile except to loopback
    /// peers, where the receiver copies anyway and the copy costs the
    /// server less than sendfile does (BENCHMARKS.md).
    #[arg(long, env = "GOMODPROXY_SENDFILE", value_name = "auto|on|off", default_value = "auto", value_parser = parse_sendfile)]
    sendfile: crate::http::send::Sendfile,

    /// How long a core polls for work before it sleeps when it runs out
    /// (e.g. 100us; 0s: sleep at once). A core asleep is woken through an
    /// eventfd, which costs a hop to it (a miss landing on a core that does
    /// not own the module) tens of microseconds on a VM; a polling core
    /// notices at once, at the cost of the CPU time it polls for after
    /// every burst of work. An idle server sleeps either way. At most 10ms.
    #[arg(long, env = "GOMODPROXY_SPIN_BEFORE_PARK", value_name = "DURATION", default_value = "0s", value_parser = parse_spin_before_park)]
    spin_before_park: Duration,

    /// Blocking threads per core for disk writes and hashing stored blobs
    /// (upstream fetches run on threads of their own, see --fetch-concurrency).
    #[arg(long, env = "GOMODPROXY_FETCH_THREADS", default_value_t = 4)]
    fetch_threads: usize,

    /// Upstream fetches one core runs at once (each on a thread of its own,
    /// which mostly waits on the network); more wait their turn.
    #[arg(long, env = "GOMODPROXY_FETCH_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    fetch_concurrency: u32,

    /// Of those, fetches for any one module at once: a module whose
    /// upstream answers slowly (or a client asking for many of its
    /// versions) never takes every slot from the others.
    #[arg(long, env = "GOMODPROXY_MODULE_FETCH_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    module_fetch_concurrency: u32,

    /// Dependency-graph prefetch: when a client is served a pre-1.17
    /// (unpruned) go.mod, fetch the `.mod` and `.info` files of the
    /// versions it requires that are not stored, in the background (bounded,
    /// deduplicated, with fetch turns clients leave free; paused while the
    /// upstream fails or is slow), so the go command's walk of the module
    /// graph finds them waiting.
    #[arg(long, env = "GOMODPROXY_PREFETCH", value_name = "on|off", default_value = "on", value_parser = ["on", "off"])]
    prefetch: String,

    /// Total time allowed for one upstream fetch.
    #[arg(long, env = "GOMODPROXY_UPSTREAM_TIMEOUT", default_value = "300s", value_parser = parse_duration)]
    upstream_timeout: Duration,

    /// Credentials for http(s) upstreams: a file of `URL-PREFIX bearer TOKEN`
    /// and `URL-PREFIX basic USER PASSWORD` lines (the longest prefix of an
    /// upstream's URL wins; `#` comments). Sent as the Authorization header,
    /// never on a redirect, never logged.
    #[arg(long, env = "GOMODPROXY_UPSTREAM_AUTH", value_name = "FILE")]
    upstream_auth: Option<PathBuf>,

    /// PEM certificate chain presented to https:// upstreams that ask for a
    /// client certificate (with --upstream-client-key).
    #[arg(long, env = "GOMODPROXY_UPSTREAM_CLIENT_CERT", value_name = "FILE", requires = "upstream_client_key")]
    upstream_client_cert: Option<PathBuf>,

    /// PEM private key of --upstream-client-cert.
    #[arg(long, env = "GOMODPROXY_UPSTREAM_CLIENT_KEY", value_name = "FILE", requires = "upstream_client_cert")]
    upstream_client_key: Option<PathBuf>,

    /// Serve a zip that is not cached yet while it arrives from the upstream,
    /// when the upstream announces at least this many bytes (e.g. 1MiB, 0 for
    /// every zip; `off`: never). All its requesters share the one fetch. The
    /// last byte waits until the whole zip is validated and stored: if the
    /// fill fails, the connections are cut short, so no client ever receives
    /// a complete, bad zip; the next request for it is fetched whole and gets
    /// the 502/504 with the reason.
    #[arg(long, env = "GOMODPROXY_STREAM_FILLS", value_name = "SIZE|off", default_value = "1MiB", value_parser = parse_stream_fills)]
    stream_fills: StreamFills,

    /// Longest wait for a connection (TCP and TLS handshake) to an upstream.
    #[arg(long, env = "GOMODPROXY_UPSTREAM_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    upstream_connect_timeout: Duration,

    /// Longest wait for an upstream's answer once connected (its whole head
    /// must arrive within --upstream-connect-timeout plus this), and for each
    /// further read of its body (a stalled upstream fails this fast, a slow
    /// but steady one gets --upstream-timeout, which bounds every phase).
    #[arg(long, env = "GOMODPROXY_UPSTREAM_READ_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    upstream_read_timeout: Duration,

    /// Extra attempts of an upstream request that could not connect (refused,
    /// DNS failure); answers (4xx included) and timeouts are never retried.
    #[arg(long, env = "GOMODPROXY_UPSTREAM_RETRIES", default_value_t = 2)]
    upstream_retries: u32,

    /// Wait before the first retry; doubled for each further one.
    #[arg(long, env = "GOMODPROXY_UPSTREAM_RETRY_BACKOFF", default_value = "100ms", value_parser = parse_duration)]
    upstream_retry_backoff: Duration,

    /// Failures (connect errors, timeouts, 5xx, 429; never 404/410 or other 4xx) for this many
    /// different modules in a row, no success between, after which an http(s) upstream is
    /// skipped, as if it had failed, for --breaker-cooldown; then one probe request decides.
    /// One module failing again and again (a path a client chose) counts once. 0 disables it.
    #[arg(long, env = "GOMODPROXY_BREAKER_FAILURES", default_value_t = 5)]
    breaker_failures: u32,

    /// How long an upstream whose circuit opened is skipped.
    #[arg(long, env = "GOMODPROXY_BREAKER_COOLDOWN", default_value = "30s", value_parser = parse_duration)]
    breaker_cooldown: Duration,

    /// On SIGTERM/SIGINT: stop accepting, then wait this long for open connections to finish.
    #[arg(long, env = "GOMODPROXY_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    drain_timeout: Duration,

    /// Most one git command of a `direct` fetch may take (a clone, a fetch, an archive);
    /// past it git is killed and the request fails with 504.
    #[arg(long, env = "GOMODPROXY_GIT_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    git_timeout: Duration,

    /// How long a DNS answer for an http(s) upstream's host is reused; past it the answer is
    /// still used while a refresh runs in the background (and kept if the refresh fails), so a
    /// lost DNS query never stalls a fetch. 0: resolve on every new connection.
    #[arg(long, env = "GOMODPROXY_DNS_CACHE_TTL", default_value = "30s", value_parser = parse_duration)]
    dns_cache_ttl: Duration,

    /// Most git fetches at a time against one Git host (each repository fetches one at a time anyway).
    #[arg(long, env = "GOMODPROXY_GIT_HOST_CONCURRENCY", default_value_t = 4)]
    git_host_concurrency: usize,

    /// An object store every node shares, below each node's own store: `s3://BUCKET/PREFIX`,
    /// `gs://BUCKET/PREFIX`, `az://CONTAINER/PREFIX` or `file:///DIR`. Settings of the
    /// store's client go in the query (`?endpoint=http://10.0.0.5:7070&region=us-east-1`);
    /// credentials come from each cloud's usual environment variables or the instance's role.
    /// Misses are read from it before the upstream; fills are written to it, one node per
    /// artifact at a time (see --shared-lease).
    #[arg(long, env = "GOMODPROXY_SHARED_STORE")]
    shared_store: Option<String>,

    /// How long a node's claim to fill an artifact for the whole fleet holds unless renewed
    /// (it is renewed while the fill runs): how long others wait if that node dies mid-fill.
    #[arg(long, env = "GOMODPROXY_SHARED_LEASE", default_value = "60s", value_parser = parse_duration)]
    shared_lease: Duration,

    /// This node's name in the shared store's leases (default: the host name).
    #[arg(long, env = "GOMODPROXY_NODE_NAME")]
    node_name: Option<String>,
}

/// `--hit-routing local|owner` (the resolve layer's type knows no command line).
fn parse_hit_routing() -> impl clap::builder::TypedValueParser<Value = HitRouting> {
    clap::builder::PossibleValuesParser::new(["local", "owner"]).map(|s| if s == "owner" { HitRouting::Owner } else { HitRouting::Local })
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 500ms, 60s or 5m"))?;
    match unit {
        "us" => Ok(Duration::from_micros(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (use us, ms, s, m or h)")),
    }
}

fn parse_sendfile(s: &str) -> Result<crate::http::send::Sendfile, String> {
    use crate::http::send::Sendfile;
    match s {
        "auto" => Ok(Sendfile::Auto),
        "on" => Ok(Sendfile::On),
        "off" => Ok(Sendfile::Off),
        _ => Err(format!("{s:?}: use auto, on or off")),
    }
}

/// A polling window: past a few milliseconds it only burns CPU.
fn parse_spin_before_park(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > Duration::from_millis(10) {
        return Err(format!("{s:?} is longer than 10ms"));
    }
    Ok(d)
}

/// A byte count: digits, then B, KiB, MiB or GiB (or nothing, for bytes).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size like 64MiB or 1GiB"))?;
    let mult = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_segment_size(s: &str) -> Result<u64, String> {
    Some(parse_bytes(s)?).filter(|&b| b >= 1 << 20).ok_or_else(|| format!("{s:?}: segments must be at least 1MiB"))
}

/// `--admin-listen`: a loopback address, or `off`. Its GETs need no token,
/// and without `--auth` neither does a purge: it must not be reachable from
/// another host.
#[derive(Debug, Clone, Copy)]
struct AdminListen(Option<SocketAddr>);

fn parse_admin_listen(s: &str) -> Result<AdminListen, String> {
    match s.trim() {
        "off" => Ok(AdminListen(None)),
        addr => {
            let addr: SocketAddr = addr.parse().map_err(|e| format!("{addr:?}: {e}; or `off`"))?;
            if !addr.ip().is_loopback() {
                return Err(format!("{addr}: the admin listener serves loopback only (127.0.0.0/8, ::1): it can purge the store"));
            }
            Ok(AdminListen(Some(addr)))
        }
    }
}

/// `--stream-fills`: the smallest zip streamed, or `off`.
#[derive(Debug, Clone, Copy)]
struct StreamFills(Option<u64>);

/// `--listen`: an address, or `off`.
#[derive(Debug, Clone, Copy)]
struct Listen(Option<SocketAddr>);

fn parse_listen(s: &str) -> Result<Listen, String> {
    match s.trim() {
        "off" => Ok(Listen(None)),
        addr => addr.parse().map(|a| Listen(Some(a))).map_err(|e| format!("{addr:?}: {e}; or `off`")),
    }
}

fn parse_max_store_size(s: &str) -> Result<u64, String> {
    Some(parse_bytes(s)?).filter(|&b| b >= 16 << 20).ok_or_else(|| format!("{s:?}: the store bound must be at least 16MiB"))
}

fn parse_fill_memory(s: &str) -> Result<u64, String> {
    Some(parse_bytes(s)?).filter(|&b| b >= 1 << 20).ok_or_else(|| format!("{s:?}: the fill memory must be at least 1MiB"))
}

fn parse_scrub_rate(s: &str) -> Result<u64, String> {
    match s.trim() {
        "off" | "0" => Ok(0),
        size => parse_bytes(size).map_err(|e| format!("{e}; or `off`")),
    }
}

fn parse_stream_fills(s: &str) -> Result<StreamFills, String> {
    match s.trim() {
        "off" => Ok(StreamFills(None)),
        size => parse_bytes(size).map(|n| StreamFills(Some(n))).map_err(|e| format!("{e}; or `off`")),
    }
}

/// The command line, with the settings of `--config FILE` (if given)
/// read as if typed after the flags actually given, for each flag that is
/// neither on the command line nor in its `GOMODPROXY_*` variable. A
/// malformed command line ends the process with clap's usage message, as
/// [`Cli::parse`] does; a bad file is an error naming it.
pub fn parse_cli() -> Result<Cli, ConfigError> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // At start-up a bad command line prints clap's usage and exits.
    let cli = Cli::parse_from(&argv);
    with_config_file(argv, cli)
}

/// `gomodproxy serve`'s configuration read again, as at start-up (the same
/// command line, `--config` and the files flags name, read afresh), for a
/// reload: every error is returned, nothing exits.
pub fn reread_serve_config() -> Result<Config, ConfigError> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = Cli::try_parse_from(&argv).map_err(|e| ConfigError::Reload(e.to_string().lines().next().unwrap_or_default().to_string()))?;
    match with_config_file(argv, cli)?.command {
        Command::Serve(args) => args.into_config(),
        _ => Err(ConfigError::Reload("not a `gomodproxy serve` command line".into())),
    }
}

/// Adds the settings of `--config FILE` (if given) to `cli`.
fn with_config_file(argv: Vec<std::ffi::OsString>, cli: Cli) -> Result<Cli, ConfigError> {
    let (sub, args) = match &cli.command {
        Command::Serve(args) => ("serve", args),
        Command::Verify(args) => ("verify", args),
        Command::Purge(_) => return Ok(cli),
    };
    let Some(path) = args.config.clone() else { return Ok(cli) };
    let command = Cli::command();
    let flags = command.find_subcommand(sub).map(|c| c.get_arguments().cloned().collect::<Vec<_>>()).unwrap_or_default();
    let bad = |reason: String| ConfigError::ConfigFile { path: path.clone(), reason };
    let mut extended = argv.clone();
    let contents = super::file::read(&path)?;
    for setting in contents.settings {
        let arg = flags.iter().find(|a| a.get_long() == Some(setting.flag.as_str()) && setting.flag != "config").ok_or_else(|| {
            bad(format!("unknown setting {:?} (a key is a flag's long name, as in `gomodproxy {sub} --help`)", setting.flag))
        })?;
        let long = format!("--{}", setting.flag);
        let typed = argv.iter().any(|a| a.to_str().is_some_and(|a| a == long || a.starts_with(&format!("{long}="))));
        let in_env = arg.get_env().is_some_and(|var| std::env::var_os(var).is_some());
        if !typed && !in_env {
            extended.push(format!("{long}={}", setting.value).into());
        }
    }
    let mut cli = Cli::try_parse_from(&extended).map_err(|e| bad(e.to_string().lines().next().unwrap_or_default().to_string()))?;
    if let Command::Serve(args) | Command::Verify(args) = &mut cli.command {
        args.git = contents.git;
    }
    Ok(cli)
}

impl ServeArgs {
    /// `--shared-store URL` and the settings the tier takes from other
    /// flags: the URL's form is checked here (see [`check_shared_url`]).
    fn shared_settings(&self) -> Result<Option<crate::shared::SharedSettings>, ConfigError> {
        let Some(url) = self.shared_store.as_deref().map(str::trim) else { return Ok(None) };
        check_shared_url(url)?;
        if self.shared_lease < Duration::from_millis(300) {
            return Err(ConfigError::Invalid("--shared-lease must be at least 300ms"));
        }
        let node = match self.node_name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => super::host_name().unwrap_or_else(|| "gomodproxy".to_string()),
        };
        if node.len() > 200 || node.chars().any(char::is_control) {
            return Err(ConfigError::Invalid("--node-name must be at most 200 printable characters"));
        }
        Ok(Some(crate::shared::SharedSettings {
            url: url.to_string(),
            lease: self.shared_lease,
            // A node waits for another's fill as long as a fill may take.
            wait_limit: self.upstream_timeout + self.shared_lease,
            node,
            connect_timeout: self.upstream_connect_timeout,
            read_timeout: self.upstream_read_timeout,
            request_timeout: self.upstream_timeout,
            breaker_failures: self.breaker_failures.max(1),
            breaker_cooldown: self.breaker_cooldown,
        }))
    }

    /// The validated settings, with every default filled in and every
    /// cross-flag rule checked.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let shared = self.shared_settings()?;
        let args = self;
        let (list, source) = match args.upstream {
            Some(list) => (list, UpstreamSource::Flag),
            None => (super::inherited_upstream().ok_or(ConfigError::NoUpstream)?, UpstreamSource::Inherited),
        };
        let (upstream, warnings) = UpstreamList::parse(&list, source)?;
        for w in warnings {
            log::warn!("{w}");
        }
        // A Git source's modules are private unless it says `public = true`.
        let mut private_list = args.private.unwrap_or_else(super::inherited_private);
        for source in args.git.iter().filter(|s| !s.public) {
            for p in source.pattern.sources() {
                private_list = if private_list.trim().is_empty() { p.to_string() } else { format!("{private_list},{p}") };
            }
        }
        let private = super::parse_private(&private_list)?;
        let private_upstream = match args.private_upstream.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(list) => Some(UpstreamList::parse(list, UpstreamSource::Flag)?.0),
        };
        if !private.is_empty() {
            let from = match (&private_upstream, upstream.local_only()) {
                (Some(l), _) => {
                    format!("--private-upstream {}", l.entries.iter().map(|e| format!("{:?}", e.spec)).collect::<Vec<_>>().join(" "))
                }
                (None, Some(l)) => {
                    format!(
                        "the file:// and direct upstreams {}",
                        l.entries.iter().map(|e| format!("{:?}", e.spec)).collect::<Vec<_>>().join(" ")
                    )
                }
                (None, None) => "nowhere (no private upstream configured: they are not found)".to_string(),
            };
            log::info!("private modules ({}) are fetched from {from}", private.sources().collect::<Vec<_>>().join(","));
        }
        let cores = match args.cores {
            Some(0) => return Err(ConfigError::Invalid("--cores must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        };
        if args.max_store_size.is_some_and(|max| max / (4 * cores as u64) < 1 << 20) {
            return Err(ConfigError::Invalid(
                "--max-store-size must be at least 4MiB per core (segments are a quarter of it per core, at least 1MiB)",
            ));
        }
        if args.max_header_bytes < 1024 || args.max_uri_bytes < 256 || args.max_uri_bytes >= args.max_header_bytes {
            return Err(ConfigError::Invalid("need --max-uri-bytes >= 256 and --max-header-bytes >= 1024 and larger than --max-uri-bytes"));
        }
        let any_http = [Some(&upstream), private_upstream.as_ref()]
            .into_iter()
            .flatten()
            .any(|l| l.entries.iter().any(|e| matches!(e.spec, UpstreamSpec::Http(_))));
        let upstream_http = if any_http || args.upstream_auth.is_some() || args.upstream_client_cert.is_some() {
            let auth = match &args.upstream_auth {
                Some(path) => {
                    let text =
                        std::fs::read_to_string(path).map_err(|error| ConfigError::UpstreamAuthUnreadable { path: path.clone(), error })?;
                    AuthTable::parse(&text).map_err(|error| ConfigError::UpstreamAuth { path: path.clone(), error })?
                }
                None => Default::default(),
            };
            let client = args.upstream_client_cert.as_deref().zip(args.upstream_client_key.as_deref());
            let tls = crate::upstream::tls::client_config(client).map_err(ConfigError::UpstreamTls)?;
            Some(HttpSetup { tls, auth })
        } else {
            None
        };
        // A typo in a file:// path would otherwise answer 404 to everything.
        for (flag, list) in [("--upstream", Some(&upstream)), ("--private-upstream", private_upstream.as_ref())] {
            for entry in list.iter().flat_map(|l| l.entries.iter()) {
                if let UpstreamSpec::File(dir) = &entry.spec {
                    if !dir.is_dir() {
                        return Err(ConfigError::UpstreamDir { flag, dir: dir.clone() });
                    }
                }
            }
        }
        Ok(Config {
            listen: match (args.listen.0, &args.tls_listen) {
                (None, None) => return Err(ConfigError::BadEdge("--listen off needs --tls-listen: nothing would be served".into())),
                (listen, _) => listen,
            },
            admin_listen: args.admin_listen.0,
            log_json: args.log_format == "json",
            data_dir: args.data,
            upstream,
            private,
            private_upstream,
            cores,
            backlog: args.backlog,
            max_connections: args.max_connections,
            limits: HttpLimits {
                max_uri_bytes: args.max_uri_bytes,
                max_head_bytes: args.max_header_bytes,
                header_timeout: args.header_timeout,
                idle_timeout: args.idle_timeout,
                write_timeout: args.write_timeout,
                sendfile: args.sendfile,
                ..HttpLimits::default()
            },
            list_ttl: args.list_ttl,
            sumdbs: super::parse_sumdb(&args.sumdb.unwrap_or_else(super::inherited_sumdb))?,
            sumdb_ttl: args.sumdb_ttl,
            negative_ttl: args.negative_ttl,
            stream_fills: args.stream_fills.0,
            segment_bytes: args.segment_size,
            max_store_bytes: args.max_store_size,
            scrub_bytes_per_sec: args.scrub_rate,
            fill_memory: args.fill_memory,
            auth: args.auth,
            audit_log: args.audit_log.as_deref().map(crate::edge::audit::AuditDest::parse),
            rate_limit: args.rate_limit,
            miss_rate_limit: args.miss_rate_limit,
            tls: match (args.tls_listen, args.tls_cert, args.tls_key) {
                (Some(addr), Some(cert), Some(key)) => Some(super::TlsListen { addr, cert, key }),
                _ => None,
            },
            anonymous: if args.anonymous == "none" { crate::edge::access::Anonymous::None } else { crate::edge::access::Anonymous::Public },
            proxy_protocol_from: match (args.proxy_protocol.as_str(), &args.proxy_protocol_from) {
                ("off", None) => None,
                ("off", Some(_)) => return Err(ConfigError::BadEdge("--proxy-protocol-from needs --proxy-protocol on".into())),
                (_, None) => {
                    return Err(ConfigError::BadEdge("--proxy-protocol on needs --proxy-protocol-from: the balancer's addresses".into()))
                }
                (_, Some(list)) => Some(
                    list.split(',')
                        .filter(|s| !s.trim().is_empty())
                        .map(crate::edge::Cidr::parse)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| ConfigError::BadEdge(format!("--proxy-protocol-from: {e}")))?,
                ),
            },
            hit_routing: args.hit_routing,
            spin_before_park: args.spin_before_park,
            fetch_threads: args.fetch_threads,
            fetch_concurrency: args.fetch_concurrency as usize,
            module_fetch_concurrency: args.module_fetch_concurrency as usize,
            prefetch: args.prefetch == "on",
            upstream_timeout: args.upstream_timeout,
            upstream_http,
            upstream_connect_timeout: args.upstream_connect_timeout,
            upstream_read_timeout: args.upstream_read_timeout,
            upstream_retries: args.upstream_retries,
            upstream_retry_backoff: args.upstream_retry_backoff,
            breaker_failures: args.breaker_failures,
            breaker_cooldown: args.breaker_cooldown,
            drain_timeout: args.drain_timeout,
            git: args.git,
            git_timeout: args.git_timeout,
            git_host_concurrency: args.git_host_concurrency.max(1),
            dns_cache_ttl: args.dns_cache_ttl,
            shared,
        })
    }
}
