//! Upstream fetchers: where a miss is answered from.
//!
//! Owns the [`Fetcher`] trait (the seam a Git fetcher and a checksum-database
//! client plug into), the GOPROXY list syntax (`list`) and the semantics that chain fetchers, the
//! concrete `file://` and `http(s)://` fetchers, the guard that keeps
//! private module paths away from upstreams not trusted with them
//! (`private`), and the validation every upstream answer passes before
//! anyone may store or serve it. Fetchers are
//! blocking and run on the executors' blocking pools; they never touch the
//! store or the index, and never see a request that failed validation.

pub mod auth;
pub mod breaker;
pub mod dns;
pub mod file;
pub mod git;
pub mod http;
pub mod list;
pub mod memory;
pub mod private;
pub mod sumdb_check;
pub mod sumdb_client;
pub mod tls;
pub mod validate;

use std::time::Duration;

use crate::artifact::fill::Progress;
use crate::artifact::{FetchError, Kind};
use list::{Fallback, UpstreamList, UpstreamSpec};

/// One upstream request.
///
/// For module requests `module` and `version` are decoded (not
/// `!`-escaped) and already validated; `version` is empty for `List` and
/// `Latest`. For checksum-database requests ([`Kind::is_sumdb`]) `module`
/// is `sumdb/<name>` and `version` the already validated, canonical path
/// below it (`latest`, `lookup/<escaped module>@<escaped version>`,
/// `tile/8/0/x001/234`), forwarded as it is.
#[derive(Debug, Clone, Copy)]
pub struct Fetch<'a> {
    pub module: &'a str,
    pub version: &'a str,
    pub kind: Kind,
}

impl Fetch<'_> {
    /// The GOPROXY-protocol path below the base, with `!`-escaping applied.
    /// A checksum-database request with an empty `module` addresses the
    /// database itself (its own URL: `latest`, `lookup/…`), not a proxy's
    /// `/sumdb/<name>/`.
    pub fn protocol_path(&self) -> Result<String, FetchError> {
        if self.kind.is_sumdb() {
            return Ok(if self.module.is_empty() { self.version.to_string() } else { format!("{}/{}", self.module, self.version) });
        }
        let module = crate::gomod::module::escape_path(self.module).map_err(|e| FetchError::Invalid(e.to_string()))?;
        Ok(match self.kind {
            Kind::List => format!("{module}/@v/list"),
            Kind::Latest => format!("{module}/@latest"),
            kind => {
                let ext = kind.extension().ok_or_else(|| FetchError::Invalid(format!("no protocol path for {}", kind.label())))?;
                let version = crate::gomod::module::escape_version(self.version).map_err(|e| FetchError::Invalid(e.to_string()))?;
                format!("{module}/@v/{version}.{ext}")
            }
        })
    }
}

/// A source of GOPROXY answers. Blocking: call it from a blocking pool.
pub trait Fetcher: Send + Sync {
    fn fetch(&self, req: &Fetch<'_>) -> Result<Vec<u8>, FetchError>;
    /// Like `fetch`, publishing the body to `progress` as it arrives when
    /// the fetcher can and `progress` wants it (see `artifact::fill`). A
    /// fetcher that streamed returns the body it handed over with
    /// [`Progress::finish_writing`]; on failure the caller fails it.
    fn fetch_streaming(&self, req: &Fetch<'_>, progress: &Progress) -> Result<bytes::Bytes, FetchError> {
        let _ = progress;
        self.fetch(req).map(bytes::Bytes::from)
    }
    /// A name for logs and error messages (never includes credentials).
    fn name(&self) -> &str;
}

/// A shared fetcher (the one set of `[[git]]` sources every `direct` entry uses).
impl<F: Fetcher + ?Sized> Fetcher for std::sync::Arc<F> {
    fn fetch(&self, req: &Fetch<'_>) -> Result<Vec<u8>, FetchError> {
        (**self).fetch(req)
    }
    fn fetch_streaming(&self, req: &Fetch<'_>, progress: &Progress) -> Result<bytes::Bytes, FetchError> {
        (**self).fetch_streaming(req, progress)
    }
    fn name(&self) -> &str {
        (**self).name()
    }
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
    /// Longest wait for the answer's head beyond `connect_timeout` (the
    /// head arrives whole within their sum), then for each pause in its body.
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
    /// What answers `direct` entries: the `[[git]]` sources.
    pub git: Option<std::sync::Arc<git::GitSources>>,
    /// Most fetches that can run at once (every core's fetch threads): the
    /// idle connections kept per upstream host, so a wave of concurrent
    /// misses reuses warm connections instead of opening (and resolving)
    /// new ones.
    pub concurrency: usize,
    /// The DNS cache every `http(s)` upstream resolves through; `None`:
    /// the system resolver on every new connection.
    pub dns: Option<dns::DnsCache>,
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
            git: None,
            concurrency: 4,
            dns: None,
        }
    }
}

/// A GOPROXY list: fetchers tried in order, falling through as `,` and `|` say.
pub struct UpstreamChain {
    entries: Vec<(Box<dyn Fetcher>, Fallback)>,
    name: String,
}

impl UpstreamChain {
    pub fn from_config(list: &UpstreamList, opts: FetchOptions) -> UpstreamChain {
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
                    UpstreamSpec::Direct => match &opts.git {
                        Some(git) => Box::new(git.clone()),
                        None => Box::new(std::sync::Arc::new(git::GitSources::none())),
                    },
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

thread_local! {
    /// The name of the entry that answered this thread's last successful
    /// chain fetch (the fetch runs on one thread from start to end).
    static ANSWERED_BY: std::cell::RefCell<Option<std::sync::Arc<str>>> = const { std::cell::RefCell::new(None) };
}

/// The entry (by its name: an `http(s)` base, `file://`, `direct`) that
/// answered this thread's last successful fetch through an
/// [`UpstreamChain`], if any since the last call: for the audit log.
pub fn take_answered_by() -> Option<std::sync::Arc<str>> {
    ANSWERED_BY.with(|a| a.borrow_mut().take())
}

impl Fetcher for UpstreamChain {
    fn fetch(&self, req: &Fetch<'_>) -> Result<Vec<u8>, FetchError> {
        self.fetch_streaming(req, &Progress::default()).map(Vec::from)
    }

    fn fetch_streaming(&self, req: &Fetch<'_>, progress: &Progress) -> Result<bytes::Bytes, FetchError> {
        let mut last = FetchError::NotFound { gone: false, message: "not found: no upstream configured".into() };
        for (fetcher, fallback) in &self.entries {
            match fetcher.fetch_streaming(req, progress).and_then(|body| validate::validate(req, &body).map(|()| body)) {
                Ok(body) => {
                    ANSWERED_BY.with(|a| *a.borrow_mut() = Some(fetcher.name().into()));
                    return Ok(body);
                }
                Err(e) => {
                    // Readers of what this entry streamed must never finish
                    // it; a fallback's bytes may differ.
                    if progress.is_streaming() {
                        progress.void_stream();
                    }
                    let fall_through = matches!(e, FetchError::NotFound { .. }) || *fallback == Fallback::OnAnyError;
                    // Not found is an answer; an open circuit was logged when it opened.
                    if !matches!(e, FetchError::NotFound { .. } | FetchError::CircuitOpen { .. }) {
                        log::warn!(
                            module = req.module, version = req.version, kind = req.kind.label();
                            "{} {}: {e}", fetcher.name(), req.protocol_path().unwrap_or_default()
                        );
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
    const REQ: Fetch<'static> = Fetch { module: "example.com/a", version: "", kind: Kind::List };
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

    #[test]
    fn invalid_answers_count_as_errors() {
        let info = Fetch { module: "example.com/a", version: "v1.0.0", kind: Kind::Info };
        let chain = UpstreamChain::new(vec![
            (canned(Ok(b"{\"Version\":\"v9.9.9\"}")), Fallback::OnAnyError),
            (canned(Ok(b"{\"Version\":\"v1.0.0\"}")), Fallback::OnNotFound),
        ]);
        assert_eq!(chain.fetch(&info).unwrap(), b"{\"Version\":\"v1.0.0\"}");
        let chain = UpstreamChain::new(vec![(canned(Ok(b"{\"Version\":\"v9.9.9\"}")), Fallback::OnNotFound)]);
        assert!(matches!(chain.fetch(&info), Err(FetchError::Invalid(_))));
    }
}
