//! Upstream fetchers: where a miss is answered from.
//!
//! Owns the [`Fetcher`] trait (the seam a Git fetcher and a checksum-database
//! client plug into), the GOPROXY list semantics that chain fetchers, the
//! concrete `file://` and `http(s)://` fetchers, the guard that keeps
//! private module paths away from upstreams not trusted with them
//! (`private`), and the validation every upstream answer passes before
//! anyone may store or serve it. Fetchers are
//! blocking and run on the executors' blocking pools; they never touch the
//! store or the index, and never see a request that failed validation.

pub mod auth;
pub mod breaker;
pub mod file;
pub mod http;
pub mod private;
pub mod progress;
pub mod tls;
pub mod validate;

use std::fmt;
use std::time::Duration;

use crate::config::{Fallback, UpstreamList as ListConfig, UpstreamSpec};

/// What is being asked of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum What {
    List,
    Latest,
    Info,
    Mod,
    Zip,
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

impl What {
    /// The most bytes an upstream may send for this kind of answer.
    pub fn size_cap(self) -> u64 {
        match self {
            What::Info | What::Latest => 64 << 10,
            What::List => 16 << 20,
            What::Mod => 16 << 20,
            What::Zip => 500 << 20,
            // The body is ignored; anything long is not a proxy saying yes.
            What::SumSupported => 4 << 10,
            // A signed note: a few lines and a handful of signatures.
            What::SumLatest => 16 << 10,
            // A record (a module's two go.sum lines) and a signed note.
            What::SumLookup => 64 << 10,
            // A hash tile is at most 2^MAX_HEIGHT hashes (2 MiB); a data tile
            // holds up to 2^H records, a few hundred bytes each at height 8.
            What::SumTile | What::SumPartialTile => 8 << 20,
        }
    }

    /// A checksum-database request (`/sumdb/...`) rather than a module one.
    pub fn is_sumdb(self) -> bool {
        matches!(self, What::SumSupported | What::SumLatest | What::SumLookup | What::SumTile | What::SumPartialTile)
    }
}

/// One upstream request.
///
/// For module requests `module` and `version` are decoded (not
/// `!`-escaped) and already validated; `version` is empty for `List` and
/// `Latest`. For checksum-database requests ([`What::is_sumdb`]) `module`
/// is `sumdb/<name>` and `version` the already validated, canonical path
/// below it (`latest`, `lookup/<escaped module>@<escaped version>`,
/// `tile/8/0/x001/234`), forwarded as it is.
#[derive(Debug, Clone, Copy)]
pub struct Fetch<'a> {
    pub module: &'a str,
    pub version: &'a str,
    pub what: What,
}

impl Fetch<'_> {
    /// The GOPROXY-protocol path below the base, with `!`-escaping applied.
    pub fn protocol_path(&self) -> Result<String, FetchError> {
        if self.what.is_sumdb() {
            return Ok(format!("{}/{}", self.module, self.version));
        }
        let module = crate::gomod::module::escape_path(self.module).map_err(|e| FetchError::Invalid(e.to_string()))?;
        Ok(match self.what {
            What::List => format!("{module}/@v/list"),
            What::Latest => format!("{module}/@latest"),
            _ => {
                let version = crate::gomod::module::escape_version(self.version).map_err(|e| FetchError::Invalid(e.to_string()))?;
                let ext = match self.what {
                    What::Info => "info",
                    What::Mod => "mod",
                    _ => "zip",
                };
                format!("{module}/@v/{version}.{ext}")
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// 404 or 410: the upstream does not have it. The message is the
    /// upstream's own (the go command shows it to its user).
    NotFound {
        gone: bool,
        message: String,
    },
    /// The upstream could not be reached or failed (5xx, 429, reset, refused).
    Unavailable {
        upstream: String,
        message: String,
    },
    /// The upstream answered with a status we cannot use (401, 403, 400...):
    /// an answer, so it never trips a circuit breaker, but no fallback either.
    Rejected {
        upstream: String,
        status: u16,
    },
    /// No answer in time; `waiting` says for what, naming the limit that struck.
    Timeout {
        upstream: String,
        waiting: &'static str,
    },
    TooLarge {
        upstream: String,
        limit: u64,
    },
    /// Not asked: the upstream failed too often in a row and its circuit
    /// breaker is open (see `breaker`).
    CircuitOpen {
        upstream: String,
        retry_in: Duration,
    },
    /// The upstream answered something that is not a valid answer.
    Invalid(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::NotFound { message, .. } => f.write_str(message),
            FetchError::Unavailable { upstream, message } => write!(f, "upstream {upstream} failed: {message}"),
            FetchError::Timeout { upstream, waiting } => write!(f, "upstream {upstream} timed out {waiting}"),
            FetchError::TooLarge { upstream, limit } => write!(f, "upstream {upstream} sent more than {limit} bytes"),
            FetchError::Rejected { upstream, status } => write!(f, "upstream {upstream} answered HTTP status {status}"),
            FetchError::CircuitOpen { upstream, retry_in } => {
                write!(f, "upstream {upstream} is failing and is not being asked (circuit open; next try in {}s)", retry_in.as_secs())
            }
            FetchError::Invalid(why) => write!(f, "invalid upstream response: {why}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// A source of GOPROXY answers. Blocking: call it from a blocking pool.
pub trait Fetcher: Send + Sync {
    fn fetch(&self, req: &Fetch<'_>) -> Result<Vec<u8>, FetchError>;
    /// Like `fetch`, publishing the body to `progress` as it arrives when
    /// the fetcher can and `progress` wants it (see `progress`). A fetcher
    /// that streamed returns the body it handed over with
    /// [`progress::Progress::finish`]; on failure the caller fails it.
    fn fetch_streaming(&self, req: &Fetch<'_>, progress: &progress::Progress) -> Result<bytes::Bytes, FetchError> {
        let _ = progress;
        self.fetch(req).map(bytes::Bytes::from)
    }
    /// A name for logs and error messages (never includes credentials).
    fn name(&self) -> &str;
}

/// What every `http(s)` upstream shares: the TLS client set-up and the
/// `--upstream-auth` rules. `None` in `FetchOptions` means ureq's defaults
/// and no credentials.
#[derive(Debug, Clone)]
pub struct HttpSetup {
    pub tls: std::sync::Arc<rustls::ClientConfig>,
    pub auth: auth::AuthTable,
}

/// Upstream settings that are not part of the list itself.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Total time for one upstream request, body included.
    pub timeout: Duration,
    /// Longest wait for a connection (TCP and TLS handshake).
    pub connect_timeout: Duration,
    /// Longest wait for any one read: the answer's first byte, then each
    /// pause in its body. ureq 2 has no separate first-byte timeout; its
    /// per-read timeout is one, and also catches a body that stalls.
    pub read_timeout: Duration,
    /// Extra attempts after a connection failure (never after an answer, a 4xx included, nor after a timeout).
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
    /// Consecutive failures that open an `http(s)` upstream's circuit; 0: no breaker.
    pub breaker_failures: u32,
    /// How long an open circuit skips its upstream before one probe may try it.
    pub breaker_cooldown: Duration,
    pub http: Option<HttpSetup>,
}

impl FetchOptions {
    /// Only a timeout (total, connect and read alike); no retries, no breaker.
    pub fn with_timeout(timeout: Duration) -> FetchOptions {
        FetchOptions {
            timeout,
            connect_timeout: timeout,
            read_timeout: timeout,
            retries: 0,
            retry_backoff: Duration::ZERO,
            breaker_failures: 0,
            breaker_cooldown: Duration::ZERO,
            http: None,
        }
    }
}

/// `@latest` for upstreams that do not answer it (the file layout has no
/// `@latest`): the highest release in `list`, else the highest pre-release,
/// answered with that version's `.info`, as the go command itself would pick.
pub fn latest(upstream: &dyn Fetcher, module: &str) -> Result<Vec<u8>, FetchError> {
    let direct = upstream.fetch(&Fetch { module, version: "", what: What::Latest });
    let Err(FetchError::NotFound { .. }) = direct else { return direct };
    let list = upstream.fetch(&Fetch { module, version: "", what: What::List })?;
    let text = String::from_utf8_lossy(&list);
    let versions = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| crate::gomod::module::canonical_version(v).is_some_and(|c| c == *v));
    let best = versions.fold(None::<&str>, |best, v| match best {
        None => Some(v),
        // A release beats any pre-release; otherwise semver order decides.
        Some(b) => {
            let (vp, bp) = (crate::gomod::semver::is_prerelease(v), crate::gomod::semver::is_prerelease(b));
            if (bp && !vp) || (vp == bp && crate::gomod::semver::compare(v, b).is_gt()) {
                Some(v)
            } else {
                Some(b)
            }
        }
    });
    match best {
        Some(version) => upstream.fetch(&Fetch { module, version, what: What::Info }),
        None => direct,
    }
}

/// A GOPROXY list: fetchers tried in order, falling through as `,` and `|` say.
pub struct UpstreamChain {
    entries: Vec<(Box<dyn Fetcher>, Fallback)>,
    name: String,
}

impl UpstreamChain {
    pub fn from_config(list: &ListConfig, opts: FetchOptions) -> UpstreamChain {
        let entries = list
            .entries
            .iter()
            .map(|e| {
                let f: Box<dyn Fetcher> = match &e.spec {
                    UpstreamSpec::File(dir) => Box::new(file::FileFetcher::new(dir.clone())),
                    UpstreamSpec::Http(base) if opts.breaker_failures > 0 => Box::new(breaker::Guarded::new(
                        http::HttpFetcher::new(base.clone(), &opts),
                        opts.breaker_failures,
                        opts.breaker_cooldown,
                    )),
                    UpstreamSpec::Http(base) => Box::new(http::HttpFetcher::new(base.clone(), &opts)),
                };
                (f, e.fallback)
            })
            .collect();
        Self::new(entries)
    }

    pub fn new(entries: Vec<(Box<dyn Fetcher>, Fallback)>) -> UpstreamChain {
        let name = entries.iter().map(|(f, _)| f.name()).collect::<Vec<_>>().join(",");
        UpstreamChain { entries, name }
    }
}

impl Fetcher for UpstreamChain {
    fn fetch(&self, req: &Fetch<'_>) -> Result<Vec<u8>, FetchError> {
        self.fetch_streaming(req, &progress::Progress::default()).map(Vec::from)
    }

    fn fetch_streaming(&self, req: &Fetch<'_>, progress: &progress::Progress) -> Result<bytes::Bytes, FetchError> {
        let mut last = FetchError::NotFound { gone: false, message: "not found: no upstream configured".into() };
        for (fetcher, fallback) in &self.entries {
            match fetcher.fetch_streaming(req, progress).and_then(|body| validate::validate(req, &body).map(|()| body)) {
                Ok(body) => return Ok(body),
                Err(e) => {
                    // Readers of what this entry streamed must never finish
                    // it; a fallback's bytes may differ.
                    if progress.is_streaming() {
                        progress.fail();
                    }
                    let fall_through = matches!(e, FetchError::NotFound { .. }) || *fallback == Fallback::OnAnyError;
                    // Not found is an answer; an open circuit was logged when it opened.
                    if !matches!(e, FetchError::NotFound { .. } | FetchError::CircuitOpen { .. }) {
                        log::warn!("{} {}: {e}", fetcher.name(), req.protocol_path().unwrap_or_default());
                    }
                    last = e;
                    if !fall_through {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Canned(Result<&'static [u8], FetchError>, AtomicUsize);
    impl Fetcher for Canned {
        fn fetch(&self, _: &Fetch<'_>) -> Result<Vec<u8>, FetchError> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.clone().map(|b| b.to_vec())
        }
        fn name(&self) -> &str {
            "canned"
        }
    }
    fn canned(r: Result<&'static [u8], FetchError>) -> Box<dyn Fetcher> {
        Box::new(Canned(r, AtomicUsize::new(0)))
    }
    const REQ: Fetch<'static> = Fetch { module: "example.com/a", version: "", what: What::List };
    fn down() -> FetchError {
        FetchError::Unavailable { upstream: "x".into(), message: "refused".into() }
    }
    fn missing() -> FetchError {
        FetchError::NotFound { gone: false, message: "not found".into() }
    }

    #[test]
    fn comma_falls_through_only_on_not_found() {
        let chain =
            UpstreamChain::new(vec![(canned(Err(missing())), Fallback::OnNotFound), (canned(Ok(b"v1.0.0\n")), Fallback::OnNotFound)]);
        assert_eq!(chain.fetch(&REQ).unwrap(), b"v1.0.0\n");
        let chain = UpstreamChain::new(vec![(canned(Err(down())), Fallback::OnNotFound), (canned(Ok(b"v1.0.0\n")), Fallback::OnNotFound)]);
        assert_eq!(chain.fetch(&REQ), Err(down()));
    }

    #[test]
    fn pipe_falls_through_on_any_error() {
        let chain = UpstreamChain::new(vec![(canned(Err(down())), Fallback::OnAnyError), (canned(Ok(b"v1.0.0\n")), Fallback::OnNotFound)]);
        assert_eq!(chain.fetch(&REQ).unwrap(), b"v1.0.0\n");
    }

    struct Tree(&'static [u8]);
    impl Fetcher for Tree {
        fn fetch(&self, req: &Fetch<'_>) -> Result<Vec<u8>, FetchError> {
            match req.what {
                What::List => Ok(self.0.to_vec()),
                What::Info => Ok(format!("{{\"Version\":\"{}\"}}", req.version).into_bytes()),
                _ => Err(missing()),
            }
        }
        fn name(&self) -> &str {
            "tree"
        }
    }

    #[test]
    fn latest_falls_back_to_the_highest_release_in_the_list() {
        let info = |list| String::from_utf8(latest(&Tree(list), "example.com/a").unwrap()).unwrap();
        assert_eq!(info(b"v1.0.0\nv1.10.0\nv1.2.0-rc.1\nv1.9.0\n"), "{\"Version\":\"v1.10.0\"}");
        assert_eq!(info(b"v1.2.0-rc.1\nv1.2.0-rc.2 extra\n"), "{\"Version\":\"v1.2.0-rc.2\"}");
        assert_eq!(info(b"v2.0.0+incompatible\nv1.0.0\nbogus\n"), "{\"Version\":\"v2.0.0+incompatible\"}");
        assert!(matches!(latest(&Tree(b""), "example.com/a"), Err(FetchError::NotFound { .. })));
    }

    #[test]
    fn invalid_answers_count_as_errors() {
        let info = Fetch { module: "example.com/a", version: "v1.0.0", what: What::Info };
        let chain = UpstreamChain::new(vec![
            (canned(Ok(b"{\"Version\":\"v9.9.9\"}")), Fallback::OnAnyError),
            (canned(Ok(b"{\"Version\":\"v1.0.0\"}")), Fallback::OnNotFound),
        ]);
        assert_eq!(chain.fetch(&info).unwrap(), b"{\"Version\":\"v1.0.0\"}");
        let chain = UpstreamChain::new(vec![(canned(Ok(b"{\"Version\":\"v9.9.9\"}")), Fallback::OnNotFound)]);
        assert!(matches!(chain.fetch(&info), Err(FetchError::Invalid(_))));
    }
}
