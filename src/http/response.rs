//! Response heads: the status line and headers of a [`Reply`], written
//! into a reused buffer. Bodies are never copied here; the sender writes
//! them from where they live.

use std::io::Write as _;

use crate::goproxy::reply::write_etag;
use crate::goproxy::Reply;

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        413 => "Content Too Large",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// What the `Connection` header of a response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1's default: open after the response, no header needed.
    KeepAlive,
    /// An HTTP/1.0 client asked to keep the connection: it must be told
    /// (`Connection: keep-alive`), or it reads to EOF and waits out the idle timeout.
    KeepAliveAnnounced,
    /// Closed after the response (`Connection: close`).
    Close,
}

impl Connection {
    /// For a request that may keep its connection (`keep_alive`) over HTTP/1.0 or 1.1.
    pub fn of(keep_alive: bool, http10: bool) -> Connection {
        match (keep_alive, http10) {
            (false, _) => Connection::Close,
            (true, false) => Connection::KeepAlive,
            (true, true) => Connection::KeepAliveAnnounced,
        }
    }

    pub fn stays_open(self) -> bool {
        self != Connection::Close
    }
}

/// Clears `out` and writes the status line and headers for `resp`, whose
/// body is `body_len` bytes (sent or not: HEAD carries the length too).
pub fn write_head(out: &mut Vec<u8>, resp: &Reply, body_len: usize, connection: Connection) {
    out.clear();
    // Once per connection (or after it idled): no growth step by step.
    out.reserve(256);
    let _ = write!(out, "HTTP/1.1 {} {}\r\nServer: gomodproxy\r\n", resp.status, reason(resp.status));
    if resp.status != 304 {
        let _ = write!(out, "Content-Type: {}\r\nContent-Length: {}\r\n", resp.content_type, body_len);
    }
    out.extend_from_slice(b"Cache-Control: ");
    resp.cache_control.write_value(out, resp.private);
    out.extend_from_slice(b"\r\n");
    if let Some(sha) = &resp.etag {
        out.extend_from_slice(b"ETag: ");
        write_etag(out, sha);
        out.extend_from_slice(b"\r\n");
    }
    if resp.status == 405 {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    if let Some(secs) = resp.retry_after {
        let _ = write!(out, "Retry-After: {secs}\r\n");
    }
    if resp.challenge {
        out.extend_from_slice(b"WWW-Authenticate: Basic realm=\"gomodproxy\"\r\n");
    }
    match connection {
        Connection::KeepAlive => {}
        Connection::KeepAliveAnnounced => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Connection::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::Body;
    use crate::goproxy::CacheControl;

    #[test]
    fn head_has_length_type_cache_and_etag() {
        let resp = Reply::new(200, "application/zip", CacheControl::Immutable, Some([0xab; 32]), Body::empty());
        let mut out = Vec::new();
        write_head(&mut out, &resp, 1234, Connection::KeepAlive);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 1234\r\n"));
        assert!(text.contains("Content-Type: application/zip\r\n"));
        assert!(text.contains("Cache-Control: public, max-age=31536000, immutable\r\n"));
        assert!(text.contains(&format!("ETag: \"{}\"\r\n", "ab".repeat(16))));
        assert!(!text.contains("Connection:"));
        assert!(text.ends_with("\r\n\r\n"));
        write_head(&mut out, &resp, 1, Connection::KeepAliveAnnounced);
        assert!(String::from_utf8_lossy(&out).contains("\r\nConnection: keep-alive\r\n"), "a 1.0 client is told");
        write_head(&mut out, &resp, 1, Connection::Close);
        assert!(String::from_utf8_lossy(&out).contains("\r\nConnection: close\r\n"));
    }
}
