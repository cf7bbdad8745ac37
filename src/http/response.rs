//! Response heads: status lines and headers written into a reused buffer.
//! Bodies are never copied here; the sender writes them from where they live.

use std::io::Write as _;

use crate::runtime::core::Body as ArtifactBody;

pub enum Body {
    Empty,
    Static(&'static str),
    Text(String),
    Artifact(ArtifactBody),
}

impl Body {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Body::Empty => &[],
            Body::Static(s) => s.as_bytes(),
            Body::Text(s) => s.as_bytes(),
            Body::Artifact(a) => a.bytes(),
        }
    }

    /// A zip still arriving, sent as it comes (see `upstream::progress`):
    /// taken out of the response (which keeps an empty body), so the sender
    /// owns it.
    pub fn take_filling(&mut self) -> Option<crate::upstream::progress::FillStream> {
        match self {
            Body::Artifact(a) if a.filling().is_some() => match std::mem::replace(self, Body::Empty) {
                Body::Artifact(crate::runtime::core::Body::Filling(fill)) => Some(fill),
                _ => None,
            },
            _ => None,
        }
    }

    /// The descriptor and offset holding [`Body::bytes`], if they lie in a file.
    pub fn file_range(&self) -> Option<(std::os::fd::RawFd, u64)> {
        match self {
            Body::Artifact(a) => a.file_range(),
            _ => None,
        }
    }
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub cache_control: &'static str,
    /// Strong validator for immutable blobs: the payload's SHA-256.
    pub etag: Option<[u8; 32]>,
    pub body: Body,
}

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json";
pub const ZIP: &str = "application/zip";
pub const OCTETS: &str = "application/octet-stream";
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const NO_CACHE: &str = "no-cache";

impl Response {
    /// A plain-text response; the go command prints such bodies to its user.
    pub fn text(status: u16, body: Body) -> Response {
        Response { status, content_type: TEXT, cache_control: NO_CACHE, etag: None, body }
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Writes the ETag value (with quotes) for a payload digest.
fn write_etag(out: &mut Vec<u8>, sha256: &[u8; 32]) {
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

/// Clears `out` and writes the status line and headers for `resp`, whose
/// body is `body_len` bytes (sent or not: HEAD carries the length too).
pub fn write_head(out: &mut Vec<u8>, resp: &Response, body_len: usize, keep_alive: bool) {
    out.clear();
    let _ = write!(out, "HTTP/1.1 {} {}\r\nServer: gomodproxy\r\n", resp.status, reason(resp.status));
    if resp.status != 304 {
        let _ = write!(out, "Content-Type: {}\r\nContent-Length: {}\r\n", resp.content_type, body_len);
    }
    let _ = write!(out, "Cache-Control: {}\r\n", resp.cache_control);
    if let Some(sha) = &resp.etag {
        out.extend_from_slice(b"ETag: ");
        write_etag(out, sha);
        out.extend_from_slice(b"\r\n");
    }
    if resp.status == 405 {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_has_length_type_cache_and_etag() {
        let resp = Response { status: 200, content_type: ZIP, cache_control: IMMUTABLE, etag: Some([0xab; 32]), body: Body::Empty };
        let mut out = Vec::new();
        write_head(&mut out, &resp, 1234, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 1234\r\n"));
        assert!(text.contains("Content-Type: application/zip\r\n"));
        assert!(text.contains("Cache-Control: public, max-age=31536000, immutable\r\n"));
        assert!(text.contains(&format!("ETag: \"{}\"\r\n", "ab".repeat(16))));
        assert!(!text.contains("Connection: close"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn etag_matching_handles_lists_weak_and_star() {
        let sha = [0x01; 32];
        let tag = format!("\"{}\"", "01".repeat(16));
        assert!(etag_matches(tag.as_bytes(), &sha));
        assert!(etag_matches(format!("\"x\", W/{tag}").as_bytes(), &sha));
        assert!(etag_matches(b"*", &sha));
        assert!(!etag_matches(b"\"0101\"", &sha));
    }
}
