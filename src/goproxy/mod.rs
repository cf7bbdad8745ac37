//! The GOPROXY protocol: what each request target means and how it is
//! answered.
//!
//! Owns endpoint parsing (`path`), the status and cache policy of every
//! answer (`reply`), and the decision for each request: serve a hit from
//! the index on this core, send a miss (or a `list`/`@latest`) to the
//! module's owner core, or pass a query through. It never touches sockets,
//! files or the upstream directly.

pub mod path;
pub mod reply;

use std::rc::Rc;

use crate::http::response::{self, Body, Response};
use crate::http::{Handler, Request};
use crate::runtime::core::{kind_of, ArtifactKey, Body as ArtifactBody, Core};
use path::Endpoint;

pub struct ProxyHandler {
    core: Rc<Core>,
    /// `Cache-Control` for `list` and `@latest` (built once from `--list-ttl`).
    short_cache: &'static str,
}

impl ProxyHandler {
    pub fn new(core: Rc<Core>, short_cache: &'static str) -> ProxyHandler {
        ProxyHandler { core, short_cache }
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
                Ok(a) => reply::mutable(crate::upstream::What::Info, a.body, response::NO_CACHE),
                Err(e) => reply::fetch_error(&e),
            },
            // The go command treats 404 here as "this proxy does not proxy the
            // checksum database" and contacts the database itself.
            Endpoint::SumDb => Response::text(404, Body::Static("not found: this proxy does not serve the checksum database\n")),
            Endpoint::Health => Response::text(200, Body::Static("ok\n")),
            Endpoint::Metrics => {
                let mut r = Response::text(200, Body::Text(core.shared().metrics.render()));
                r.content_type = "text/plain; version=0.0.4; charset=utf-8";
                r
            }
        }
    }
}
