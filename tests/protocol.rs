//! HTTP-level tests of the GOPROXY protocol as gomodproxy serves it, over a
//! raw TCP client so every byte (pipelining, HEAD, malformed input) is under
//! the test's control.

mod common;

use common::*;

use std::net::SocketAddr;

const PROTO: &str = "example.com/proto";
const UPPER: &str = "example.com/Upper/Case";
const PSEUDO_V: &str = "v0.0.0-20240102030405-abcdefabcdef";

/// Longest path the tests expect to be served; paths this long are valid.
const LONG_OK_PATH_LEN: usize = 1024;
/// A request line this long must be answered 414 URI Too Long.
const TOO_LONG_PATH_LEN: usize = 16 * 1024;
/// A request head this large (in many headers) must be answered 431.
const TOO_LARGE_HEADERS: usize = 96 * 1024;

fn fixture() -> Fixture {
    Fixture::builder()
        .module(Module::new(PROTO, "v1.0.0").time("2024-01-01T00:00:00Z"))
        .module(Module::new(PROTO, "v1.1.0").time("2024-02-01T00:00:00Z"))
        // A pre-release newer than the newest release: @latest must still
        // be the release, as the go command's own "latest" query picks.
        .module(Module::new(PROTO, "v1.2.0-rc.1").time("2024-03-01T00:00:00Z"))
        .module(Module::new(PROTO, PSEUDO_V))
        .module(Module::new(UPPER, "v1.0.0"))
        .build()
}

fn start() -> (Fixture, Server) {
    let fx = fixture();
    let server = Server::start(&fx.file_url());
    (fx, server)
}

/// `max-age` of a Cache-Control value.
fn max_age(cc: &str) -> Option<u64> {
    cc.split(',').map(str::trim).find_map(|d| d.strip_prefix("max-age=")).map(|v| v.parse().expect("numeric max-age"))
}

/// Checks the headers every successful response must carry.
fn check_common(r: &HttpResponse, what: &str, ctype: &str) {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    assert_eq!(r.header("content-type"), Some(ctype), "{what}: Content-Type");
    assert!(r.content_length().is_some(), "{what}: no Content-Length");
}

/// Immutable artifact (`.info`, `.mod`, `.zip` of an exact version).
fn check_immutable(r: &HttpResponse, what: &str) {
    let cc = r.header("cache-control").unwrap_or_else(|| panic!("{what}: no Cache-Control"));
    assert!(cc.contains("immutable"), "{what}: Cache-Control {cc:?} lacks immutable");
    let etag = r.header("etag").unwrap_or_else(|| panic!("{what}: no ETag"));
    assert!(etag.len() > 2 && etag.ends_with('"'), "{what}: ETag {etag:?} is not a quoted entity tag");
}

/// Mutable answer (`@v/list`, `@latest`): may change, so short-lived.
fn check_short_lived(r: &HttpResponse, what: &str) {
    let cc = r.header("cache-control").unwrap_or_else(|| panic!("{what}: no Cache-Control"));
    assert!(!cc.contains("immutable"), "{what}: Cache-Control {cc:?} must not be immutable");
    let age = max_age(cc).unwrap_or_else(|| panic!("{what}: Cache-Control {cc:?} has no max-age"));
    assert!(age <= 3600, "{what}: max-age {age} is not short");
}

/// The server still answers a plain request correctly (after abuse).
fn assert_healthy(addr: SocketAddr) {
    let r = http_get(addr, &format!("/{}", artifact_path(PROTO, "v1.0.0", "mod")));
    assert_eq!(r.status, 200, "server stopped serving: {r:?}");
    assert_eq!(r.body_str(), Module::new(PROTO, "v1.0.0").mod_file());
}

fn sorted_lines(b: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8(b.to_vec()).unwrap().lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn get_and_head_of_every_endpoint() {
    let (fx, server) = start();
    let addr = server.addr();

    // @v/list: every listed version, no pseudo-versions.
    let r = http_get(addr, &format!("/{}", list_path(PROTO)));
    check_common(&r, "list", "text/plain; charset=utf-8");
    check_short_lived(&r, "list");
    assert_eq!(sorted_lines(&r.body), ["v1.0.0", "v1.1.0", "v1.2.0-rc.1"]);
    assert_eq!(r.content_length(), Some(r.body.len()));

    // @latest: the newest release's info.
    let r = http_get(addr, &format!("/{}", latest_path(PROTO)));
    check_common(&r, "@latest", "application/json");
    check_short_lived(&r, "@latest");
    let j: serde_json::Value = serde_json::from_slice(&r.body).expect("@latest is JSON");
    assert_eq!(j["Version"], "v1.1.0", "@latest: {j}");
    assert_eq!(j["Time"], "2024-02-01T00:00:00Z", "@latest: {j}");

    for (module, version) in [(PROTO, "v1.0.0"), (PROTO, "v1.2.0-rc.1"), (PROTO, PSEUDO_V), (UPPER, "v1.0.0")] {
        let m = fx.module(module, version);

        let path = format!("/{}", artifact_path(module, version, "info"));
        let r = http_get(addr, &path);
        check_common(&r, &path, "application/json");
        check_immutable(&r, &path);
        let j: serde_json::Value = serde_json::from_slice(&r.body).expect(".info is JSON");
        assert_eq!(j["Version"], version.to_string(), "{path}: {j}");
        assert_eq!(j["Time"], m.time.clone(), "{path}: {j}");

        let path = format!("/{}", artifact_path(module, version, "mod"));
        let r = http_get(addr, &path);
        check_common(&r, &path, "text/plain; charset=utf-8");
        check_immutable(&r, &path);
        assert_eq!(r.body_str(), m.mod_file(), "{path}");

        let path = format!("/{}", artifact_path(module, version, "zip"));
        let r = http_get(addr, &path);
        check_common(&r, &path, "application/zip");
        check_immutable(&r, &path);
        assert!(r.body == fx.artifact(module, version, "zip"), "{path}: zip bytes differ");
        // ETags identify content: stable across requests, distinct across
        // artifacts.
        let again = http_get(addr, &path);
        assert_eq!(again.header("etag"), r.header("etag"), "{path}: ETag changed between requests");
    }
    let e1 = http_get(addr, &format!("/{}", artifact_path(PROTO, "v1.0.0", "zip")));
    let e2 = http_get(addr, &format!("/{}", artifact_path(PROTO, "v1.1.0", "zip")));
    assert_ne!(e1.header("etag"), e2.header("etag"), "different zips share an ETag");

    // HEAD: same status and headers as GET, no body. Each HEAD is followed
    // by a GET on the same connection, so a stray body after a HEAD would
    // garble the next response.
    let mut conn = RawConn::connect(addr);
    let paths = [
        format!("/{}", list_path(PROTO)),
        format!("/{}", latest_path(PROTO)),
        format!("/{}", artifact_path(PROTO, "v1.0.0", "info")),
        format!("/{}", artifact_path(PROTO, "v1.0.0", "mod")),
        format!("/{}", artifact_path(PROTO, "v1.0.0", "zip")),
        format!("/{}", artifact_path(UPPER, "v1.0.0", "zip")),
    ];
    for p in &paths {
        let h = conn.request("HEAD", p);
        let g = conn.request("GET", p);
        assert_eq!(h.status, 200, "HEAD {p}: {h:?}");
        assert!(h.body.is_empty());
        for name in ["content-type", "content-length", "cache-control", "etag"] {
            assert_eq!(h.header(name), g.header(name), "HEAD {p}: {name} differs from GET");
        }
        assert_eq!(h.content_length(), Some(g.body.len()), "HEAD {p}: Content-Length");
    }
}

#[test]
fn escaped_paths_as_the_go_command_sends_them() {
    // The go command writes `!` as `%21` in request paths; both spellings
    // (and any other percent-encoded byte) name the same file.
    let (fx, server) = start();
    let addr = server.addr();
    let want = fx.artifact(UPPER, "v1.0.0", "mod");
    for p in [
        "/example.com/!upper/!case/@v/v1.0.0.mod",
        "/example.com/%21upper/%21case/@v/v1.0.0.mod",
        "/example.com/%21upper/!case/@v/v1%2e0.0.mod",
    ] {
        let r = http_get(addr, p);
        assert_eq!(r.status, 200, "{p}: {r:?}");
        assert_eq!(r.body, want, "{p}");
    }
    let r = http_get(addr, "/example.com/%21upper/%21case/@v/list");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str().trim(), "v1.0.0");
    // The module path inside the zip is the unescaped one.
    let r = http_get(addr, "/example.com/%21upper/%21case/@v/v1.0.0.zip");
    assert_eq!(r.status, 200);
    assert!(r.body == fx.artifact(UPPER, "v1.0.0", "zip"));
    assert!(find_bytes(&r.body, b"example.com/Upper/Case@v1.0.0/"), "zip entries lack the unescaped prefix");
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn keep_alive_and_pipelining() {
    let (fx, server) = start();
    let mut conn = RawConn::connect(server.addr());
    let paths = [
        format!("/{}", list_path(PROTO)),
        format!("/{}", artifact_path(PROTO, "v1.1.0", "zip")),
        format!("/{}", artifact_path(PROTO, "v1.0.0", "mod")),
    ];
    // Three requests in ONE write; three responses, in request order.
    let mut batch = Vec::new();
    for p in &paths {
        batch.extend(conn.request_bytes("GET", p));
    }
    conn.send(&batch).unwrap();
    let r1 = conn.read_response(false).unwrap();
    let r2 = conn.read_response(false).unwrap();
    let r3 = conn.read_response(false).unwrap();
    assert_eq!(sorted_lines(&r1.body), ["v1.0.0", "v1.1.0", "v1.2.0-rc.1"]);
    assert!(r2.body == fx.artifact(PROTO, "v1.1.0", "zip"), "pipelined zip differs");
    assert_eq!(r3.body, fx.artifact(PROTO, "v1.0.0", "mod"));
    for r in [&r1, &r2, &r3] {
        assert_eq!(r.status, 200);
        assert!(!r.closes(), "server closed a keep-alive connection: {r:?}");
    }

    // Pipelined HEAD in the middle: no body may be sent for it.
    let mut batch = Vec::new();
    batch.extend(conn.request_bytes("GET", &paths[2]));
    batch.extend(conn.request_bytes("HEAD", &paths[1]));
    batch.extend(conn.request_bytes("GET", &paths[0]));
    conn.send(&batch).unwrap();
    assert_eq!(conn.read_response(false).unwrap().body, fx.artifact(PROTO, "v1.0.0", "mod"));
    let h = conn.read_response(true).unwrap();
    assert_eq!((h.status, h.content_length()), (200, Some(fx.artifact(PROTO, "v1.1.0", "zip").len())));
    assert_eq!(sorted_lines(&conn.read_response(false).unwrap().body), ["v1.0.0", "v1.1.0", "v1.2.0-rc.1"]);

    // A 404 does not end the connection either.
    let r = conn.request("GET", "/example.com/nope/@v/list");
    assert!(r.status == 404 || r.status == 410, "{r:?}");
    let r = conn.request("GET", &paths[2]);
    assert_eq!(r.status, 200);

    // Requests split across writes at awkward places are reassembled.
    let req = conn.request_bytes("GET", &paths[2]);
    let (a, b) = req.split_at(7);
    conn.send(a).unwrap();
    conn.send(b).unwrap();
    assert_eq!(conn.read_response(false).unwrap().body, fx.artifact(PROTO, "v1.0.0", "mod"));

    // Connection: close is honoured: the response, then EOF.
    conn.send(format!("GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", paths[2]).as_bytes()).unwrap();
    assert_eq!(conn.read_response(false).unwrap().status, 200);
    assert!(conn.peer_closed(), "server kept the connection after Connection: close");
}

/// Sends raw bytes on a fresh connection and returns the response. Write
/// errors are ignored: a server may answer and close before reading all of
/// an oversized request.
fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> HttpResponse {
    let mut conn = RawConn::connect(addr);
    let _ = conn.send(bytes);
    conn.read_response(false)
        .unwrap_or_else(|e| panic!("no response to {:?}: {e}", String::from_utf8_lossy(&bytes[..bytes.len().min(120)])))
}

fn get_bytes(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

#[test]
fn bad_requests_are_rejected_and_the_server_keeps_serving() {
    let (_fx, server) = start();
    let addr = server.addr();
    assert_healthy(addr);

    // Paths that must never reach the file system as given: traversal,
    // encoded separators and invalid `!` escapes (a `!` must be followed by
    // a lower-case letter; upper case never appears in an escaped path).
    // 400 or a plain 404/410 are both acceptable answers; 200 is not.
    let bad_paths = [
        "/../../../../etc/passwd",
        "/example.com/proto/@v/../../../../../etc/passwd",
        "/example.com/%2e%2e/%2e%2e/%2e%2e/etc/passwd/@v/list",
        "/example.com/proto/@v/..%2f..%2f..%2fetc%2fpasswd",
        "/example.com%2Fproto/@v/list",
        "/example.com/proto%2F@v/list",
        "/example.com/!!x/@v/list",
        "/example.com/!/@v/list",
        "/example.com/x!/@v/list",
        "/example.com/!1x/@v/list",
        "/example.com/Proto/@v/list",
        "/example.com/!upper/Case/@v/v1.0.0.mod",
        "/example.com/proto/@v/v1.0.0.mod%00",
        "/example.com/proto/@v/%zz.info",
    ];
    // No leading slash: not an origin-form target.
    let r = raw_exchange(addr, b"GET example.com/proto/@v/list HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(matches!(r.status, 400 | 404), "target without slash: {r:?}");
    for p in bad_paths {
        let r = raw_exchange(addr, &get_bytes(p));
        assert!(matches!(r.status, 400 | 404 | 410), "{p}: expected 400/404/410, got {r:?}");
        assert!(!r.body_str().contains("root:"), "{p}: served a system file");
        assert_healthy(addr);
    }

    // A path at a sane length is simply not found; an absurd one is 414.
    let long_ok = format!("/example.com/{}/@v/list", "a".repeat(LONG_OK_PATH_LEN));
    let r = raw_exchange(addr, &get_bytes(&long_ok));
    assert!(matches!(r.status, 400 | 404 | 410), "long path: {r:?}");
    assert_healthy(addr);
    let too_long = format!("/example.com/{}/@v/list", "a".repeat(TOO_LONG_PATH_LEN));
    let r = raw_exchange(addr, &get_bytes(&too_long));
    assert_eq!(r.status, 414, "over-long path: {r:?}");
    assert_healthy(addr);

    // Over-large request headers: 431.
    let mut req = format!("GET /{} HTTP/1.1\r\nHost: x\r\n", list_path(PROTO));
    let mut i = 0;
    while req.len() < TOO_LARGE_HEADERS {
        req.push_str(&format!("X-Filler-{i}: {}\r\n", "v".repeat(200)));
        i += 1;
    }
    req.push_str("\r\n");
    let r = raw_exchange(addr, req.as_bytes());
    assert_eq!(r.status, 431, "over-large headers: {r:?}");
    assert_healthy(addr);

    // Malformed request lines: 400.
    let malformed: &[&[u8]] = &[
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /example.com/proto/@v/list\r\nHost: x\r\n\r\n",
        b"GET  /example.com/proto/@v/list HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /example.com/proto/@v/list HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET /example.com/proto/@v/list FTP/1.0\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GET /example.com/proto/@v/list HTTP/1.1\r\nNo colon here\r\n\r\n",
    ];
    for m in malformed {
        let r = raw_exchange(addr, m);
        assert_eq!(r.status, 400, "{:?}: {r:?}", String::from_utf8_lossy(m));
        assert_healthy(addr);
    }

    // Methods other than GET/HEAD are refused, not served.
    let r = raw_exchange(addr, format!("POST /{} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", list_path(PROTO)).as_bytes());
    assert!(matches!(r.status, 405 | 501), "POST: {r:?}");
    assert_healthy(addr);

    // A client that disconnects mid-request does not hurt anyone.
    for partial in [&b"GET /example.com/pro"[..], b"GET /example.com/proto/@v/list HTTP/1.1\r\nHo"] {
        let mut c = RawConn::connect(addr);
        c.send(partial).unwrap();
        drop(c);
        assert_healthy(addr);
    }
    assert!(server_is_alive(&server));
}

fn server_is_alive(server: &Server) -> bool {
    // A fresh connection and a full answer prove the process is alive.
    http_get(server.addr(), &format!("/{}", list_path(PROTO))).status == 200
}

#[test]
fn unknown_modules_and_versions_are_not_found_with_a_text_body() {
    let (_fx, server) = start();
    let addr = server.addr();
    let paths = [
        "/example.com/nope/@v/list".to_string(),
        "/example.com/nope/@latest".to_string(),
        "/example.com/nope/@v/v1.0.0.info".to_string(),
        format!("/{}", artifact_path(PROTO, "v9.9.9", "info")),
        format!("/{}", artifact_path(PROTO, "v9.9.9", "mod")),
        format!("/{}", artifact_path(PROTO, "v9.9.9", "zip")),
        // A path prefix of a real module, as `go get` probes them.
        "/example.com/@v/list".to_string(),
        // Longer than a real module: `go get example.com/proto/sub` asks.
        "/example.com/proto/sub/@v/list".to_string(),
    ];
    for p in &paths {
        let r = http_get(addr, p);
        assert!(matches!(r.status, 404 | 410), "{p}: expected 404/410, got {r:?}");
        let ct = r.header("content-type").unwrap_or("");
        assert!(ct.starts_with("text/plain"), "{p}: Content-Type {ct:?}");
        assert!(!r.body.is_empty(), "{p}: empty error body");
        assert_eq!(r.content_length(), Some(r.body.len()));
        let h = http_head(addr, p);
        assert_eq!(h.status, r.status, "HEAD {p}");
    }
    assert_healthy(addr);
}

/// The wire findings of an adversarial pass: each was answered wrongly before.
#[test]
fn wire_edge_cases_get_the_answers_the_rfc_asks_for() {
    let (_fx, server) = start();
    let addr = server.addr();
    let list = format!("/{}", list_path(PROTO));

    // Two Host headers: 400 (RFC 9112 §3.2), not served.
    let r = raw_exchange(addr, format!("GET {list} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").as_bytes());
    assert_eq!(r.status, 400, "two Host headers: {r:?}");
    // A space inside the target: 400, not 505 (which would count as the server's failure).
    let r = raw_exchange(addr, format!("GET {list} x HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    assert_eq!(r.status, 400, "a space in the target: {r:?}");
    // 100 small header fields (about 1.1 KB of head): served, as nginx would.
    let mut req = format!("GET {list} HTTP/1.1\r\nHost: a\r\n");
    for i in 0..100 {
        req.push_str(&format!("X-{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let r = raw_exchange(addr, req.as_bytes());
    assert_eq!(r.status, 200, "100 header fields: {r:?}");

    // HTTP/1.0 asking for keep-alive: told so, and the connection serves a second request.
    let mut c = RawConn::connect(addr);
    c.set_read_timeout(std::time::Duration::from_secs(10));
    let ask = format!("GET {list} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    c.send(ask.as_bytes()).unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")), "a 1.0 keep-alive must be acknowledged: {r:?}");
    c.send(ask.as_bytes()).unwrap();
    assert_eq!(c.read_response(false).unwrap().status, 200, "the acknowledged connection stays open");
    // HTTP/1.0 without it: closed after the answer.
    let mut c = RawConn::connect(addr);
    c.set_read_timeout(std::time::Duration::from_secs(10));
    c.send(format!("GET {list} HTTP/1.0\r\n\r\n").as_bytes()).unwrap();
    let r = c.read_response(false).unwrap();
    assert!(r.closes(), "{r:?}");
    assert_healthy(addr);
}
