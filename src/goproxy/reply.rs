//! What the protocol answers, and the one place where protocol, resolve
//! and source outcomes become HTTP statuses, content types and cache
//! policy. (Wire-level refusals — a malformed request line, an oversized
//! head — are answered by `http` before a request reaches the protocol.)
//!
//! Status choices follow what the go command does with them: 404 and 410
//! mean "not here, try the next GOPROXY entry"; 400 is a malformed request
//! it would never send; 502/504 mean the upstream failed and the client
//! should not fall back as if the module did not exist; 500 is our own
//! failure, never blamed on an upstream. Nothing here waits or does I/O:
//! every function turns an outcome into a [`Reply`] and returns.

use std::time::Duration;

use super::path::PathError;
use crate::artifact::{Body, FetchError, Kind};
use crate::resolve::ResolveError;

/// Content type of messages: the go command prints such bodies to its user.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// The answer to one request, for the wire to send.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub cache_control: CacheControl,
    /// Strong validator for immutable blobs: the payload's SHA-256.
    pub etag: Option<[u8; 32]>,
    pub body: Body,
    /// The answer depends on who asked (a private module): shared caches
    /// must not keep it (`Cache-Control: private, …`). Set by the edge.
    pub private: bool,
    /// A 401 that asks for credentials (`WWW-Authenticate: Basic`). Set by the edge.
    pub challenge: bool,
    /// How the answer was come by, for the audit log.
    pub cache: CacheOutcome,
    /// Which source answered, when it was just fetched (for the audit log).
    pub source: Option<std::sync::Arc<str>>,
    /// Seconds to send as `Retry-After` (a 429).
    pub retry_after: Option<u64>,
    /// The client the request's token names (for the audit log). Set by the edge.
    pub client_name: Option<Box<str>>,
}

/// How an answer was come by (the audit log's `cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Read from the store where the request landed, no hop.
    Hit,
    /// Resolved on the module's owner: filled, refreshed, or answered from what it keeps.
    Miss,
    /// A stale copy served because the upstream failed (stale-if-error).
    Stale,
    /// No cached answer involved (an error, a health check, a query).
    None,
}

impl CacheOutcome {
    pub fn label(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Stale => "stale",
            CacheOutcome::None => "none",
        }
    }
}

/// The `Cache-Control` an answer is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheControl {
    /// Never changes: `public, max-age=31536000, immutable`.
    Immutable,
    /// Fresh for this long: `public, max-age=N`.
    MaxAge(Duration),
    /// Messages and query answers: `no-cache`.
    NoCache,
}

impl CacheControl {
    /// Writes the header's value; `private`: for the asking client only.
    pub fn write_value(self, out: &mut Vec<u8>, private: bool) {
        use std::io::Write as _;
        let scope: &[u8] = if private { b"private" } else { b"public" };
        match self {
            CacheControl::Immutable => {
                out.extend_from_slice(scope);
                out.extend_from_slice(b", max-age=31536000, immutable");
            }
            CacheControl::MaxAge(d) => {
                out.extend_from_slice(scope);
                let _ = write!(out, ", max-age={}", d.as_secs());
            }
            CacheControl::NoCache if private => out.extend_from_slice(b"private, no-cache"),
            CacheControl::NoCache => out.extend_from_slice(b"no-cache"),
        }
    }
}

impl Reply {
    /// An answer; what the edge and the audit log add starts empty.
    pub fn new(status: u16, content_type: &'static str, cache_control: CacheControl, etag: Option<[u8; 32]>, body: Body) -> Reply {
        Reply {
            status,
            content_type,
            cache_control,
            etag,
            body,
            private: false,
            challenge: false,
            cache: CacheOutcome::None,
            source: None,
            retry_after: None,
            client_name: None,
        }
    }

    /// A plain-text answer, never cached.
    pub fn text(status: u16, body: Body) -> Reply {
        Reply::new(status, TEXT, CacheControl::NoCache, None, body)
    }
}

/// `r`, read from the store where the request landed.
pub fn hit(mut r: Reply) -> Reply {
    r.cache = CacheOutcome::Hit;
    r
}

/// `r`, resolved on the owner (`stale`: a stale copy), fetched just now from `source` if it says so.
pub fn resolved(mut r: Reply, stale: bool, source: Option<std::sync::Arc<str>>) -> Reply {
    r.cache = if stale { CacheOutcome::Stale } else { CacheOutcome::Miss };
    r.source = source;
    r
}

/// 429: over a rate limit; may try again in `wait` (rounded up to seconds).
pub fn too_many(wait: Duration) -> Reply {
    let mut r =
        Reply::text(429, Body::from_static("too many requests: over this proxy's rate limit; retry after the time Retry-After gives\n"));
    r.retry_after = Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
    r
}

pub fn path_error(e: &PathError) -> Reply {
    let status = match e {
        PathError::BadTarget(_) | PathError::BadEscape(_) => 400,
        PathError::NoSuchVersion(_) | PathError::UnknownEndpoint => 404,
    };
    Reply::text(status, Body::text(format!("{e}\n")))
}

pub fn resolve_error(e: &ResolveError) -> Reply {
    match e {
        ResolveError::Fetch(e) => fetch_error(e),
        ResolveError::Internal(_) => Reply::text(500, Body::text(format!("{e}\n"))),
    }
}

pub fn fetch_error(e: &FetchError) -> Reply {
    let status = match e {
        FetchError::NotFound { gone: false, .. } => 404,
        FetchError::NotFound { gone: true, .. } => 410,
        // Gone for good from this proxy, so a `,`-style fallback still applies.
        FetchError::ChecksumMismatch { .. } => 410,
        // The upstream's own refusal (403 "not available", 400, 451…) is
        // its answer, relayed as it gave it; refused credentials (401, 407)
        // are this proxy's configuration failing, and a 3xx it would not
        // follow is no answer to relay.
        FetchError::Rejected { status, .. } if (400..500).contains(status) && !matches!(status, 401 | 407) => *status,
        FetchError::Unavailable { .. }
        | FetchError::Rejected { .. }
        | FetchError::TooLarge { .. }
        | FetchError::Invalid(_)
        | FetchError::CircuitOpen { .. } => 502,
        FetchError::Timeout { .. } => 504,
        // Ours, and passing: the fills under way hold all the memory they may.
        FetchError::FillMemoryFull { .. } => 503,
    };
    Reply::text(status, Body::text(format!("{e}\n")))
}

/// A checksum database this proxy does not proxy. The go command reads 404
/// on `/sumdb/<name>/supported` as "ask the database itself" (or the next
/// GOPROXY entry), which is exactly what it should do.
pub fn sumdb_not_proxied(name: &str) -> Reply {
    Reply::text(404, Body::text(format!("not found: this proxy does not proxy checksum database {name}\n")))
}

/// `/sumdb/<name>/supported` for a database `--sumdb` gives: 200 with an
/// empty body, whatever the upstreams do. This proxy verifies every answer
/// it relays and keeps them, so the go command may (and, cut off from the
/// database, must) ask it for every lookup.
pub fn sumdb_supported(cache_control: CacheControl) -> Reply {
    Reply::new(200, TEXT, cache_control, None, Body::empty())
}

/// An immutable blob (`.info`, `.mod`, `.zip` of a canonical version, a complete tile).
pub fn immutable(kind: Kind, body: Body, if_none_match: Option<&[u8]>) -> Reply {
    let etag = body.sha256().copied();
    let not_modified = matches!((if_none_match, &etag), (Some(inm), Some(sha)) if etag_matches(inm, sha));
    let (status, body) = if not_modified { (304, Body::empty()) } else { (200, body) };
    Reply::new(status, kind.content_type(), CacheControl::Immutable, etag, body)
}

/// A mutable answer (`list`, `@latest`, a query's `.info`), cacheable briefly.
pub fn mutable(kind: Kind, body: Body, cache_control: CacheControl) -> Reply {
    Reply::new(200, kind.content_type(), cache_control, None, body)
}

/// Writes the ETag value (with quotes) for a payload digest.
pub fn write_etag(out: &mut Vec<u8>, sha256: &[u8; 32]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for b in &sha256[..16] {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
    out.push(b'"');
}

/// Whether an `If-None-Match` value matches the blob's ETag.
pub fn etag_matches(if_none_match: &[u8], sha256: &[u8; 32]) -> bool {
    let mut ours = Vec::with_capacity(34);
    write_etag(&mut ours, sha256);
    if_none_match.split(|&b| b == b',').any(|tag| {
        let tag = tag.trim_ascii();
        let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
        tag == b"*" || tag == ours.as_slice()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_matching_handles_lists_weak_and_star() {
        let sha = [0x01; 32];
        let tag = format!("\"{}\"", "01".repeat(16));
        assert!(etag_matches(tag.as_bytes(), &sha));
        assert!(etag_matches(format!("\"x\", W/{tag}").as_bytes(), &sha));
        assert!(etag_matches(b"*", &sha));
        assert!(!etag_matches(b"\"0101\"", &sha));
    }

    #[test]
    fn our_own_failures_are_500s_and_upstream_ones_502_or_504() {
        assert_eq!(resolve_error(&ResolveError::Internal("the fill was abandoned")).status, 500);
        let down = FetchError::Unavailable { upstream: "u".into(), message: "refused".into() };
        assert_eq!(resolve_error(&ResolveError::Fetch(down)).status, 502);
        let slow = FetchError::Timeout { upstream: "u".into(), waiting: "connecting" };
        assert_eq!(resolve_error(&ResolveError::Fetch(slow)).status, 504);
        let gone = FetchError::NotFound { gone: true, message: "gone".into() };
        assert_eq!(resolve_error(&ResolveError::Fetch(gone)).status, 410);
    }

    #[test]
    fn cache_control_values() {
        let value = |c: CacheControl| {
            let mut out = Vec::new();
            c.write_value(&mut out, false);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(value(CacheControl::Immutable), "public, max-age=31536000, immutable");
        assert_eq!(value(CacheControl::MaxAge(Duration::from_secs(60))), "public, max-age=60");
        assert_eq!(value(CacheControl::NoCache), "no-cache");
        let private = |c: CacheControl| {
            let mut out = Vec::new();
            c.write_value(&mut out, true);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(private(CacheControl::Immutable), "private, max-age=31536000, immutable");
        assert_eq!(private(CacheControl::NoCache), "private, no-cache");
    }
}
