//! The GOPROXY protocol: what each request target means and how it is
//! answered.
//!
//! Owns endpoint parsing (`path`), the reply of every outcome with its
//! status and cache policy (`reply`), and the decision for each request:
//! serve a stored artifact where the request landed, ask the resolve layer
//! for the rest (a miss, a `list`/`@latest`), pass a query through, or
//! relay a checksum database's verified answers (`/sumdb/<name>/...`, for
//! the names `--sumdb` gives). It reaches the cache and the sources only through
//! [`Resolve`]; it never touches sockets, files or an upstream, never
//! routes between cores, and knows nothing of the wire.

pub mod path;
pub mod reply;

use std::future::Future;
use std::sync::Arc;

use crate::artifact::{ArtifactKey, Body, CacheClass, Kind};
use crate::metrics::{CoreMetrics, Metrics};
use crate::resolve::live::View;
use crate::resolve::{policy, CacheSettings, Resolve};
use path::{Endpoint, SumDbRequest};
pub use reply::{CacheControl, Reply};

/// What the wire asks of the protocol: the reply to one request, given
/// its target (origin form) and its `If-None-Match`.
pub trait Handler {
    fn handle(&self, target: &str, if_none_match: Option<&[u8]>) -> impl Future<Output = Reply> {
        self.handle_admitted(target, if_none_match, &AdmitAll)
    }
    /// Like `handle`, asking `misses` before anything that goes past a
    /// local hit to the module's owner (the edge's `--miss-rate-limit`).
    fn handle_admitted(&self, target: &str, if_none_match: Option<&[u8]>, misses: &impl Admission) -> impl Future<Output = Reply>;
}

/// Whether a request may go past a local hit (to fill, refresh, or query):
/// `Err` says how long until it may.
pub trait Admission {
    fn admit_miss(&self) -> Result<(), std::time::Duration>;
}

/// Admits every miss.
pub struct AdmitAll;

impl Admission for AdmitAll {
    fn admit_miss(&self) -> Result<(), std::time::Duration> {
        Ok(())
    }
}

/// What the protocol is told by configuration.
#[derive(Debug, Clone, Default)]
pub struct ProxySettings {
    /// Checksum databases proxied under `/sumdb/<name>/` (`--sumdb`); others get 404.
    pub sumdb_names: Box<[Box<str>]>,
    /// The TTLs the resolve layer keeps answers for: clients are told the same.
    pub cache: Arc<CacheSettings>,
}

impl ProxySettings {
    fn proxies_sumdb(&self, name: &str) -> bool {
        self.sumdb_names.iter().any(|n| &**n == name)
    }

    /// The `Cache-Control` of an answer of `kind`.
    fn cache_control(&self, kind: Kind) -> CacheControl {
        match kind.cache_class() {
            CacheClass::Immutable => CacheControl::Immutable,
            CacheClass::ListTtl | CacheClass::SumDbTtl => CacheControl::MaxAge(policy::ttl(&self.cache, kind)),
            CacheClass::Uncached => CacheControl::NoCache,
        }
    }
}

/// One core's protocol handler.
pub struct ProxyHandler<R> {
    resolver: R,
    /// As the last reload left them.
    settings: View<ProxySettings>,
    /// This core's counters.
    metrics: &'static CoreMetrics,
    /// Every core's, for `/metrics`.
    all_metrics: &'static Metrics,
}

impl<R: Resolve> ProxyHandler<R> {
    pub fn new(resolver: R, settings: View<ProxySettings>, metrics: &'static CoreMetrics, all_metrics: &'static Metrics) -> Self {
        ProxyHandler { resolver, settings, metrics, all_metrics }
    }

    /// The checksum-database proxy: names not in `--sumdb` get 404;
    /// `supported` is ours to answer (every answer relayed is verified
    /// first); complete tiles are immutable and served from the store like a
    /// module zip; everything else is resolved on its owner, fresh for
    /// `--sumdb-ttl`.
    async fn sumdb(&self, name: &str, sreq: SumDbRequest<'_>, if_none_match: Option<&[u8]>, misses: &impl Admission) -> Reply {
        if !self.settings.with(|s| s.proxies_sumdb(name)) {
            return reply::sumdb_not_proxied(name);
        }
        self.metrics.sumdb_requests.bump();
        let kind = sreq.kind();
        if kind == Kind::SumSupported {
            return reply::sumdb_supported(self.settings.with(|s| s.cache_control(kind)));
        }
        let rest = match sreq.upstream_path() {
            Ok(p) => p,
            Err(e) => return reply::path_error(&e),
        };
        let module = format!("sumdb/{name}");
        if let Some(blob) = self.resolver.stored(&module, &rest, kind) {
            self.metrics.hits.bump();
            return reply::hit(reply::immutable(kind, Body::Stored(blob), if_none_match));
        }
        if let Err(wait) = misses.admit_miss() {
            return reply::too_many(wait);
        }
        self.metrics.misses.bump();
        let result = self.resolver.resolve(ArtifactKey { module: module.into(), version: rest.into(), kind }).await;
        match (kind, result) {
            (Kind::SumTile, Ok(a)) => reply::resolved(reply::immutable(kind, a.body, if_none_match), a.stale, a.source),
            (_, Ok(a)) => reply::resolved(reply::mutable(kind, a.body, self.settings.with(|s| s.cache_control(kind))), a.stale, a.source),
            (_, Err(e)) => reply::resolve_error(&e),
        }
    }
}

impl<R: Resolve> Handler for ProxyHandler<R> {
    async fn handle_admitted(&self, target: &str, if_none_match: Option<&[u8]>, misses: &impl Admission) -> Reply {
        let endpoint = match path::parse(target) {
            Ok(e) => e,
            Err(e) => return reply::path_error(&e),
        };
        // Every connection's task holds this future while it waits for its
        // next request, sized for its largest state: the wait for a fill.
        // Misses keep that state in a box of their own (one allocation next
        // to the fill's), so idle connections stay small and module hits
        // allocate nothing.
        match endpoint {
            Endpoint::Artifact { module, version, kind } => {
                if let Some(blob) = self.resolver.stored(&module, &version, kind) {
                    self.metrics.hits.bump();
                    return reply::hit(reply::immutable(kind, Body::Stored(blob), if_none_match));
                }
                if let Err(wait) = misses.admit_miss() {
                    return reply::too_many(wait);
                }
                self.metrics.misses.bump();
                let key = ArtifactKey { module: module.into(), version: version.into(), kind };
                match Box::pin(self.resolver.resolve(key)).await {
                    Ok(a) => reply::resolved(reply::immutable(kind, a.body, if_none_match), a.stale, a.source),
                    Err(e) => reply::resolve_error(&e),
                }
            }
            Endpoint::Versions { module, kind } => {
                if let Err(wait) = misses.admit_miss() {
                    return reply::too_many(wait);
                }
                self.metrics.misses.bump();
                let key = ArtifactKey { module: module.into(), version: "".into(), kind };
                match Box::pin(self.resolver.resolve(key)).await {
                    Ok(a) => {
                        reply::resolved(reply::mutable(kind, a.body, self.settings.with(|s| s.cache_control(kind))), a.stale, a.source)
                    }
                    Err(e) => reply::resolve_error(&e),
                }
            }
            // Resolved on the module's owner like any miss, so everyone
            // asking at once shares one fetch; never cached beyond that.
            Endpoint::Query { module, query } => {
                if let Err(wait) = misses.admit_miss() {
                    return reply::too_many(wait);
                }
                match Box::pin(self.resolver.resolve(ArtifactKey { module: module.into(), version: query.into(), kind: Kind::Query })).await
                {
                    Ok(a) => reply::resolved(reply::mutable(Kind::Query, a.body, CacheControl::NoCache), a.stale, a.source),
                    Err(e) => reply::resolve_error(&e),
                }
            }
            // Checksum-database requests build their key's strings even
            // for a stored tile, so the box costs them little.
            Endpoint::SumDb { name, req: sreq } => Box::pin(self.sumdb(&name, sreq, if_none_match, misses)).await,
            Endpoint::Health => Reply::text(200, Body::from_static("ok\n")),
            Endpoint::Metrics => {
                let mut r = Reply::text(200, Body::text(self.all_metrics.render()));
                r.content_type = "text/plain; version=0.0.4; charset=utf-8";
                r
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The protocol against a scripted resolver: no executors, no store, no upstream.

    use std::cell::RefCell;
    use std::time::Duration;

    use futures_lite::future::block_on;

    use super::*;
    use crate::artifact::FetchError;
    use crate::resolve::{Artifact, ResolveError, Resolved};
    use crate::store::StoredBlob;

    /// Answers every key with `answer` and records what it was asked.
    struct Scripted {
        answer: fn(&ArtifactKey) -> Resolved,
        asked: RefCell<Vec<ArtifactKey>>,
    }

    impl Resolve for Scripted {
        fn stored(&self, _: &str, _: &str, _: Kind) -> Option<StoredBlob> {
            None
        }
        async fn resolve(&self, key: ArtifactKey) -> Resolved {
            let answer = (self.answer)(&key);
            self.asked.borrow_mut().push(key);
            answer
        }
    }

    fn memory(bytes: &'static [u8]) -> Artifact {
        Artifact { body: Body::Memory { bytes: bytes::Bytes::from_static(bytes), sha256: None }, stale: false, source: None }
    }

    fn handler(answer: fn(&ArtifactKey) -> Resolved) -> ProxyHandler<Scripted> {
        let cache = CacheSettings { list_ttl: Duration::from_secs(60), sumdb_ttl: Duration::from_secs(7), ..CacheSettings::default() };
        let settings = ProxySettings { sumdb_names: vec!["sum.example".into()].into(), cache: Arc::new(cache) };
        let metrics = Metrics::leak(1);
        let resolver = Scripted { answer, asked: RefCell::default() };
        ProxyHandler::new(resolver, crate::resolve::live::Live::new(settings).view(), metrics.core(0), metrics)
    }

    #[test]
    fn artifacts_and_lists_are_asked_by_decoded_key_with_their_cache_policy() {
        let h = handler(|_| Ok(memory(b"bytes")));
        let zip = block_on(h.handle("/example.com/!a/@v/v1.0.0.zip", None));
        assert_eq!((zip.status, zip.content_type, zip.cache_control), (200, "application/zip", CacheControl::Immutable));
        let list = block_on(h.handle("/example.com/!a/@v/list", None));
        assert_eq!((list.status, list.cache_control), (200, CacheControl::MaxAge(Duration::from_secs(60))));
        let asked = h.resolver.asked.borrow();
        assert_eq!(asked[0], ArtifactKey { module: "example.com/A".into(), version: "v1.0.0".into(), kind: Kind::Zip });
        assert_eq!(asked[1], ArtifactKey { module: "example.com/A".into(), version: "".into(), kind: Kind::List });
    }

    #[test]
    fn queries_are_resolved_as_queries_and_served_uncached() {
        let h = handler(|_| Ok(memory(b"{}")));
        let r = block_on(h.handle("/example.com/a/@v/main.info", None));
        assert_eq!((r.status, r.cache_control, r.content_type), (200, CacheControl::NoCache, "application/json"));
        assert_eq!(*h.resolver.asked.borrow(), [ArtifactKey { module: "example.com/a".into(), version: "main".into(), kind: Kind::Query }]);
    }

    #[test]
    fn our_own_failure_is_a_500_that_blames_no_upstream() {
        let h = handler(|_| Err(ResolveError::Internal("the fill was abandoned")));
        let r = block_on(h.handle("/example.com/a/@v/v1.0.0.mod", None));
        assert_eq!(r.status, 500);
        let text = String::from_utf8_lossy(r.body.bytes()).into_owned();
        assert!(text.contains("the fill was abandoned") && !text.contains("upstream"), "{text}");
        let h = handler(|_| Err(ResolveError::Fetch(FetchError::Timeout { upstream: "u".into(), waiting: "connecting" })));
        assert_eq!(block_on(h.handle("/example.com/a/@v/v1.0.0.mod", None)).status, 504);
    }

    #[test]
    fn only_configured_checksum_databases_are_served() {
        let h = handler(|_| Err(ResolveError::Fetch(FetchError::NotFound { gone: false, message: "no".into() })));
        assert_eq!(block_on(h.handle("/sumdb/other.example/supported", None)).status, 404);
        assert_eq!(block_on(h.handle("/sumdb/other.example/latest", None)).status, 404);
        assert!(h.resolver.asked.borrow().is_empty(), "a database not in --sumdb is never asked for");
        let r = block_on(h.handle("/sumdb/sum.example/supported", None));
        assert_eq!((r.status, r.cache_control), (200, CacheControl::MaxAge(Duration::from_secs(7))), "ours to answer");
        assert!(h.resolver.asked.borrow().is_empty());
        assert_eq!(block_on(h.handle("/sumdb/sum.example/latest", None)).status, 404);
        let h = handler(|_| Ok(memory(b"")));
        let r = block_on(h.handle("/sumdb/sum.example/tile/8/0/000", None));
        assert_eq!((r.status, r.cache_control), (200, CacheControl::Immutable));
        let r = block_on(h.handle("/sumdb/sum.example/tile/8/0/000.p/5", None));
        assert_eq!((r.status, r.cache_control), (200, CacheControl::MaxAge(Duration::from_secs(7))));
        let asked: Vec<Kind> = h.resolver.asked.borrow().iter().map(|k| k.kind).collect();
        assert_eq!(asked, [Kind::SumTile, Kind::SumPartialTile]);
    }
}
