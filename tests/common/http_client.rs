//! A tiny HTTP/1.1 client over a bare `TcpStream`, so protocol tests
//! control every byte (pipelining, HEAD, malformed requests): [`RawConn`]
//! and [`HttpResponse`], the one-shot [`http_get`] / [`http_head`], and
//! [`CheckConn`] / [`get_check`], which compare big bodies as they stream in.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// A parsed HTTP response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Header names as sent; look them up with [`HttpResponse::header`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of a header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length").map(|v| v.trim().parse().expect("numeric Content-Length"))
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// True when the server said it will close the connection.
    pub fn closes(&self) -> bool {
        self.header("connection").map(|v| v.eq_ignore_ascii_case("close")).unwrap_or(false)
    }
}

/// Largest response head we accept before calling the response broken.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// One client connection; reads are bounded by a timeout so a server that
/// stops answering fails the test instead of hanging it.
pub struct RawConn {
    stream: TcpStream,
    /// Bytes read but not consumed yet (the next pipelined response).
    buf: Vec<u8>,
    host: String,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        RawConn::from_stream(TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}")))
    }

    /// A connection the caller made (bound to a chosen source address, say).
    pub fn from_stream(stream: TcpStream) -> RawConn {
        let addr = stream.peer_addr().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        stream.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
        stream.set_nodelay(true).unwrap();
        RawConn { stream, buf: Vec::new(), host: addr.to_string() }
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }

    /// Sends raw bytes in one write call.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// A well-formed request (with Host) for `method path`, as bytes.
    pub fn request_bytes(&self, method: &str, path: &str) -> Vec<u8> {
        format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: gomodproxy-e2e\r\n\r\n", self.host).into_bytes()
    }

    /// Like [`RawConn::request`], with extra header lines (`Name: value`).
    pub fn request_with(&mut self, method: &str, path: &str, headers: &[&str]) -> HttpResponse {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: gomodproxy-e2e\r\n", self.host);
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.send(req.as_bytes()).expect("send request");
        self.read_response(method == "HEAD").unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Sends one request and reads its response.
    pub fn request(&mut self, method: &str, path: &str) -> HttpResponse {
        let req = self.request_bytes(method, path);
        self.send(&req).expect("send request");
        self.read_response(method == "HEAD").unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Sends a GET for `path` and returns the raw read result (for tests
    /// that expect a broken response).
    pub fn read_response_after(&mut self, path: &str) -> io::Result<HttpResponse> {
        let req = self.request_bytes("GET", path);
        self.send(&req)?;
        self.read_response(false)
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 64 * 1024];
        let n = read_retrying(&mut self.stream, &mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Reads one response. `head`: it answers a HEAD request (no body
    /// whatever Content-Length says). Handles Content-Length, chunked, and
    /// read-to-close bodies.
    pub fn read_response(&mut self, head: bool) -> io::Result<HttpResponse> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_RESPONSE_HEAD {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "response head too large"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed before a full response head ({} bytes buffered)", self.buf.len()),
                ));
            }
        };
        let head_bytes: Vec<u8> = self.buf.drain(..end + 4).collect();
        let head_str = String::from_utf8(head_bytes[..end].to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "non-UTF-8 response head"))?;
        let mut lines = head_str.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad status line {status_line:?}")))?;
        let reason = parts.next().unwrap_or("").to_string();
        if !version.starts_with("HTTP/1.") {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad status line {status_line:?}")));
        }
        let mut headers = Vec::new();
        for l in lines {
            let (k, v) = l.split_once(':').ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad header line {l:?}")))?;
            headers.push((k.to_string(), v.trim().to_string()));
        }
        let mut resp = HttpResponse { version, status, reason, headers, body: Vec::new() };
        if head || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(resp);
        }
        let chunked = resp.header("transfer-encoding").map(|v| v.to_ascii_lowercase().contains("chunked")).unwrap_or(false);
        if chunked {
            resp.body = self.read_chunked()?;
        } else if let Some(n) = resp.content_length() {
            while self.buf.len() < n {
                if self.fill()? == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("body truncated: {} of {n} bytes", self.buf.len())));
                }
            }
            resp.body = self.buf.drain(..n).collect();
        } else {
            while self.fill()? != 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let l: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Ok(String::from_utf8_lossy(&l[..i]).into_owned());
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in chunked body"));
            }
        }
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let size_line = self.read_line()?;
            let size_hex = size_line.split(';').next().unwrap().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in chunk"));
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// True if the peer closes the connection (EOF or reset) within the
    /// read timeout without sending anything more.
    pub fn peer_closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        match self.fill() {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe),
        }
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One-shot GET on a fresh connection.
pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    RawConn::connect(addr).request("GET", path)
}

/// One-shot HEAD on a fresh connection.
pub fn http_head(addr: SocketAddr, path: &str) -> HttpResponse {
    RawConn::connect(addr).request("HEAD", path)
}

// ---------------------------------------------------------------------------
// Streaming body checks
// ---------------------------------------------------------------------------

/// A client connection that compares response bodies with expected bytes as
/// they stream in instead of buffering them, so dozens of concurrent
/// 40 MiB downloads stay cheap. Requests may be pipelined.
pub struct CheckConn {
    stream: TcpStream,
    buf: Vec<u8>,
    host: String,
}

impl CheckConn {
    /// Connects with a 30 s read timeout (a stuck server fails the check).
    pub fn connect(addr: SocketAddr) -> io::Result<CheckConn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(CheckConn { stream, buf: Vec::new(), host: addr.to_string() })
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends GETs for all `paths` in one write (pipelined).
    pub fn send_gets(&mut self, paths: &[&str]) -> io::Result<()> {
        let mut req = Vec::new();
        for p in paths {
            req.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: {}\r\nUser-Agent: gomodproxy-e2e\r\n\r\n", self.host).as_bytes());
        }
        self.stream.write_all(&req)
    }

    fn fill(&mut self) -> Result<usize, String> {
        let mut tmp = [0u8; 64 * 1024];
        let n = read_retrying(&mut self.stream, &mut tmp).map_err(|e| format!("read: {e}"))?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Reads the next response and checks it is a 200 with a
    /// Content-Length body equal to `want`. Err says what differed.
    pub fn expect_body(&mut self, want: &[u8]) -> Result<(), String> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_RESPONSE_HEAD {
                return Err("response head too large".into());
            }
            if self.fill()? == 0 {
                return Err(format!("connection closed before a response head ({} bytes)", self.buf.len()));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let status = head.split(' ').nth(1).unwrap_or("");
        let len: Option<usize> = head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        });
        if status != "200" {
            return Err(format!("status {status}: {head}"));
        }
        match len {
            Some(n) if n == want.len() => {}
            other => return Err(format!("Content-Length {other:?}, want {}", want.len())),
        }
        let mut pos = 0;
        while pos < want.len() {
            if self.buf.is_empty() && self.fill()? == 0 {
                return Err(format!("body truncated at {pos} of {} bytes", want.len()));
            }
            let take = self.buf.len().min(want.len() - pos);
            if self.buf[..take] != want[pos..pos + take] {
                let off = (0..take).find(|&i| self.buf[i] != want[pos + i]).unwrap_or(0);
                return Err(format!("body differs at byte {} of {}", pos + off, want.len()));
            }
            self.buf.drain(..take);
            pos += take;
        }
        Ok(())
    }
}

/// GET `path` on a fresh connection and check the body is exactly `want`.
pub fn get_check(addr: SocketAddr, path: &str, want: &[u8]) -> Result<(), String> {
    let mut c = CheckConn::connect(addr).map_err(|e| format!("connect: {e}"))?;
    c.send_gets(&[path]).map_err(|e| format!("send: {e}"))?;
    c.expect_body(want).map_err(|e| format!("GET {path}: {e}"))
}

/// A read that a signal interrupted is tried again (a plain `read` gives
/// back EINTR; a test process with child processes sees signals, and a
/// CI run once failed on one while waiting out a hanging upstream).
fn read_retrying(stream: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
