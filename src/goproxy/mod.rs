//! The GOPROXY protocol: what each request target means and how it is
//! answered.
//!
//! Owns endpoint parsing (`path`), the status and cache policy of every
//! answer (`reply`), and the decision for each request: serve a hit from
//! the index on this core, send a miss (or a `list`/`@latest`) to the
//! module's owner core, pass a query through, or proxy a checksum
//! database (`/sumdb/<name>/...`, for the names `--sumdb` allows). It never touches sockets,
//! files or the upstream directly.

pub mod path;
pub mod reply;

use std::rc::Rc;

use crate::http::response::{self, Body, Response};
use crate::http::{Handler, Request};
use crate::runtime::core::{kind_of, ArtifactKey, Body as ArtifactBody, Core};
use crate::upstream::What;
use path::{Endpoint, SumDbRequest};

pub struct ProxyHandler {
    core: Rc<Core>,
    /// `Cache-Control` for `list` and `@latest` (built once from `--list-ttl`).
    short_cache: &'static str,
    /// `Cache-Control` for checksum-database answers other than complete tiles (`--sumdb-ttl`).
    sumdb_cache: &'static str,
}

impl ProxyHandler {
    pub fn new(core: Rc<Core>, short_cache: &'static str, sumdb_cache: &'static str) -> ProxyHandler {
        ProxyHandler { core, short_cache, sumdb_cache }
    }

    /// The checksum-database proxy: names not in `--sumdb` get 404; complete
    /// tiles are immutable and served from the store like a module zip;
    /// everything else is fetched on the owner core and cached briefly.
    async fn sumdb(&self, name: &str, sreq: SumDbRequest<'_>, if_none_match: Option<&[u8]>) -> Response {
        let core = &self.core;
        if !core.shared().proxies_sumdb(name) {
            return reply::sumdb_not_proxied(name);
        }
        core.metrics().sumdb_requests.bump();
        let what = sreq.what();
        let rest = match sreq.upstream_path() {
            Ok(p) => p,
            Err(e) => return reply::path_error(&e),
        };
        let module = format!("sumdb/{name}");
        if let Some(kind) = kind_of(what) {
            if let Some(blob) = core.local_hit(&module, &rest, kind) {
                core.metrics().hits.bump();
                return reply::immutable(what, ArtifactBody::Stored(blob), if_none_match);
            }
        }
        core.metrics().misses.bump();
        let result = core.resolve(ArtifactKey { module: module.into(), version: rest.into(), what }).await;
        match (what, result) {
            (What::SumSupported, r) => reply::sumdb_supported(name, r.as_ref().map(|_| ()), self.sumdb_cache),
            (What::SumTile, Ok(a)) => reply::immutable(what, a.body, if_none_match),
            (_, Ok(a)) => reply::mutable(what, a.body, self.sumdb_cache),
            (_, Err(e)) => reply::fetch_error(&e),
        }
    }
}

impl Handler for ProxyHandler {
    async fn handle(&self, req: &Request<'_>) -> Response {
        let core = &self.core;
        let endpoint = match path::parse(req.target) {
            Ok(e) => e,
            Err(e) => return reply::path_error(&e),
        };
        match endpoint {
            Endpoint::Artifact { module, version, what } => {
                let Some(kind) = kind_of(what) else { return reply::path_error(&path::PathError::UnknownEndpoint) };
                if let Some(blob) = core.local_hit(&module, &version, kind) {
                    core.metrics().hits.bump();
                    return reply::immutable(what, ArtifactBody::Stored(blob), req.if_none_match);
                }
                core.metrics().misses.bump();
                let key = ArtifactKey { module: module.into(), version: version.into(), what };
                match core.resolve(key).await {
                    Ok(a) => reply::immutable(what, a.body, req.if_none_match),
                    Err(e) => reply::fetch_error(&e),
                }
            }
            Endpoint::Versions { module, what } => {
                core.metrics().misses.bump();
                let key = ArtifactKey { module: module.into(), version: "".into(), what };
                match core.resolve(key).await {
                    Ok(a) => reply::mutable(what, a.body, self.short_cache),
                    Err(e) => reply::fetch_error(&e),
                }
            }
            Endpoint::Query { module, query } => match core.pass_through(&module, &query).await {
                Ok(a) => reply::mutable(What::Info, a.body, response::NO_CACHE),
                Err(e) => reply::fetch_error(&e),
            },
            Endpoint::SumDb { name, req: sreq } => self.sumdb(&name, sreq, req.if_none_match).await,
            Endpoint::Health => Response::text(200, Body::Static("ok\n")),
            Endpoint::Metrics => {
                let mut r = Response::text(200, Body::Text(core.shared().metrics.render()));
                r.content_type = "text/plain; version=0.0.4; charset=utf-8";
                r
            }
        }
    }
}
