//! The one place where protocol, upstream and store outcomes become HTTP
//! statuses, content types and cache policy. (Wire-level refusals — a
//! malformed request line, an oversized head — are answered by `http`
//! before a request reaches the protocol.)
//!
//! Status choices follow what the go command does with them: 404 and 410
//! mean "not here, try the next GOPROXY entry"; 400 is a malformed request
//! it would never send; 502/504 mean the upstream failed and the client
//! should not fall back as if the module did not exist.

use super::path::PathError;
use crate::http::response::{self, Body, Response};
use crate::runtime::core::Body as ArtifactBody;
use crate::upstream::{FetchError, What};

pub fn path_error(e: &PathError) -> Response {
    let status = match e {
        PathError::BadTarget(_) | PathError::BadEscape(_) => 400,
        PathError::NoSuchVersion(_) | PathError::UnknownEndpoint => 404,
    };
    Response::text(status, Body::Text(format!("{e}\n")))
}

pub fn fetch_error(e: &FetchError) -> Response {
    let status = match e {
        FetchError::NotFound { gone: false, .. } => 404,
        FetchError::NotFound { gone: true, .. } => 410,
        FetchError::Unavailable { .. }
        | FetchError::Rejected { .. }
        | FetchError::TooLarge { .. }
        | FetchError::Invalid(_)
        | FetchError::CircuitOpen { .. } => 502,
        FetchError::Timeout { .. } => 504,
    };
    Response::text(status, Body::Text(format!("{e}\n")))
}

pub fn content_type(what: What) -> &'static str {
    match what {
        What::Info | What::Latest => response::JSON,
        What::List | What::Mod => response::TEXT,
        What::Zip => response::ZIP,
        What::SumSupported | What::SumLatest | What::SumLookup => response::TEXT,
        What::SumTile | What::SumPartialTile => response::OCTETS,
    }
}

/// A checksum database this proxy does not proxy. The go command reads 404
/// on `/sumdb/<name>/supported` as "ask the database itself" (or the next
/// GOPROXY entry), which is exactly what it should do.
pub fn sumdb_not_proxied(name: &str) -> Response {
    Response::text(404, Body::Text(format!("not found: this proxy does not proxy checksum database {name}\n")))
}

/// `/sumdb/<name>/supported`: 200 with an empty body when an upstream
/// proxies the database. When none does (or none can be asked), 404: the
/// go command then contacts the database itself, whereas a 200 would bind
/// it to this proxy for every lookup, with no fallback.
pub fn sumdb_supported(name: &str, upstream: Result<(), &FetchError>, cache_control: &'static str) -> Response {
    match upstream {
        Ok(()) => Response { status: 200, content_type: response::TEXT, cache_control, etag: None, body: Body::Empty },
        Err(e) => Response::text(404, Body::Text(format!("not found: no upstream proxies checksum database {name} ({e})\n"))),
    }
}

/// An immutable blob (`.info`, `.mod`, `.zip` of a canonical version).
pub fn immutable(what: What, body: ArtifactBody, if_none_match: Option<&[u8]>) -> Response {
    let etag = body.sha256().copied();
    let not_modified = matches!((if_none_match, &etag), (Some(inm), Some(sha)) if response::etag_matches(inm, sha));
    Response {
        status: if not_modified { 304 } else { 200 },
        content_type: content_type(what),
        cache_control: response::IMMUTABLE,
        etag,
        body: if not_modified { Body::Empty } else { Body::Artifact(body) },
    }
}

/// A mutable answer (`list`, `@latest`, a query's `.info`), cacheable briefly.
pub fn mutable(what: What, body: ArtifactBody, cache_control: &'static str) -> Response {
    Response { status: 200, content_type: content_type(what), cache_control, etag: None, body: Body::Artifact(body) }
}
