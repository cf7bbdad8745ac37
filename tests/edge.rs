//! The edge: tokens and per-module access rules (`--auth`, `--anonymous`),
//! and the PROXY protocol from the balancer (`--proxy-protocol`,
//! `--proxy-protocol-from`). The go command reads private modules with
//! `.netrc` credentials; tokens never reach a log.

mod common;

use common::*;

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const PRIVATE: &str = "corp.example.com/priv";
const PUBLIC: &str = "example.com/pub";
const CI_TOKEN: &str = "ci-token-3f9a";
const OTHER_TOKEN: &str = "other-token-77c1";

fn hex_sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn fixture() -> Fixture {
    Fixture::builder().module(Module::new(PRIVATE, "v1.0.0")).module(Module::new(PUBLIC, "v1.0.0")).build()
}

/// A server with an auth file: `ci` may read corp.example.com/*, `other` nothing private.
fn server(fx: &Fixture, anonymous: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        format!(
            "[[client]]\nname = \"ci\"\ntoken_sha256 = \"{}\"   # hex SHA-256 of the token\nallow = [\"corp.example.com/*\"]\n\n\
             [[client]]\nname = \"other\"\ntoken_sha256 = \"{}\"\n",
            hex_sha256(CI_TOKEN),
            hex_sha256(OTHER_TOKEN)
        ),
    )
    .unwrap();
    let mut opts = ServerOpts::new(fx.file_url());
    opts.extra_args = vec!["--auth".into(), auth.display().to_string(), "--anonymous".into(), anonymous.into()];
    (Server::start_with(opts), dir)
}

fn get(server: &Server, path: &str, auth: Option<&str>) -> HttpResponse {
    let mut c = RawConn::connect(server.addr());
    let headers: Vec<String> = auth.map(|a| format!("Authorization: {a}")).into_iter().collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    c.request_with("GET", path, &headers)
}

fn basic(user: &str, token: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}")))
}

#[test]
fn private_modules_need_a_token_that_covers_them_and_public_ones_do_not() {
    let fx = fixture();
    let (server, _auth) = server(&fx, "public");
    let private_info = format!("/{}", artifact_path(PRIVATE, "v1.0.0", "info"));
    let public_info = format!("/{}", artifact_path(PUBLIC, "v1.0.0", "info"));

    let r = get(&server, &private_info, None);
    assert_eq!(r.status, 401, "{}", r.body_str());
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"gomodproxy\""));
    let r = get(&server, &private_info, Some(&format!("Bearer {OTHER_TOKEN}")));
    assert_eq!(r.status, 403, "a valid token without the pattern: {}", r.body_str());
    let r = get(&server, &private_info, Some("Bearer not-a-token"));
    assert_eq!(r.status, 401, "a wrong token: {}", r.body_str());
    for auth in [format!("Bearer {CI_TOKEN}"), basic("anyone", CI_TOKEN)] {
        let r = get(&server, &private_info, Some(&auth));
        assert_eq!(r.status, 200, "{auth}: {}", r.body_str());
        assert_eq!(r.body, fx.artifact(PRIVATE, "v1.0.0", "info"));
        let cc = r.header("cache-control").unwrap_or("");
        assert!(cc.starts_with("private"), "an answer that depends on credentials must not be kept by shared caches: {cc}");
    }
    // Every endpoint of a private module obeys the same rule, its checksum-database lookup included.
    for p in [
        format!("/{}", list_path(PRIVATE)),
        format!("/{}", latest_path(PRIVATE)),
        format!("/{}/@v/main.info", PRIVATE),
        format!("/sumdb/sum.example/lookup/{PRIVATE}@v1.0.0"),
    ] {
        assert_eq!(get(&server, &p, None).status, 401, "{p}");
    }
    // Public modules: no token needed, publicly cacheable.
    let r = get(&server, &public_info, None);
    assert_eq!(r.status, 200);
    assert!(r.header("cache-control").unwrap_or("").starts_with("public"));
    assert_eq!(get(&server, "/healthz", None).status, 200, "the health check needs no token");

    let logs = server.log_lines().join("\n");
    for token in [CI_TOKEN, OTHER_TOKEN] {
        assert!(!logs.contains(token), "a token appeared in the log");
    }
}

#[test]
fn with_anonymous_none_even_public_modules_need_a_token() {
    let fx = fixture();
    let (server, _auth) = server(&fx, "none");
    let public_info = format!("/{}", artifact_path(PUBLIC, "v1.0.0", "info"));
    assert_eq!(get(&server, &public_info, None).status, 401);
    let r = get(&server, &public_info, Some(&format!("Bearer {OTHER_TOKEN}")));
    assert_eq!(r.status, 200, "{}", r.body_str());
}

fn proxy_server(fx: &Fixture, from: &str) -> Server {
    let mut opts = ServerOpts::new(fx.file_url());
    opts.extra_args = ["--proxy-protocol", "on", "--proxy-protocol-from", from].map(String::from).to_vec();
    Server::start_with(opts)
}

/// Sends `bytes` and reads until the server closes or 5 s pass; the bytes read.
fn exchange(server: &Server, bytes: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = c.write_all(bytes);
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    got
}

#[test]
fn a_proxy_header_is_required_from_the_balancer_and_refused_from_anyone_else() {
    let fx = fixture();
    let info = format!("/{}", artifact_path(PUBLIC, "v1.0.0", "info"));
    let request = format!("GET {info} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    // The tests connect from 127.0.0.1: the balancer.
    let server = proxy_server(&fx, "127.0.0.0/8");
    for header in [b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 443\r\n".to_vec(), v2_header([198, 51, 100, 9], 5555)] {
        let mut bytes = header;
        bytes.extend_from_slice(request.as_bytes());
        let got = exchange(&server, &bytes);
        assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    }
    // From the balancer without the header: closed without an answer.
    assert!(exchange(&server, request.as_bytes()).is_empty(), "a connection without its PROXY header was answered");
    let mut bad = b"PROXY TCP4 999.0.0.1 10.0.0.1 1 2\r\n".to_vec();
    bad.extend_from_slice(request.as_bytes());
    assert!(exchange(&server, &bad).is_empty(), "a malformed PROXY header was answered");

    // A server whose balancer is elsewhere: a header from this peer is refused, plain requests served.
    let server = proxy_server(&fx, "10.9.9.9/32");
    let mut spoof = b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 443\r\n".to_vec();
    spoof.extend_from_slice(request.as_bytes());
    assert!(exchange(&server, &spoof).is_empty(), "a PROXY header from a peer that may not send one was answered");
    assert!(exchange(&server, &v2_header([1, 2, 3, 4], 1)).is_empty());
    let got = exchange(&server, request.as_bytes());
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
}

/// A PROXY v2 header for TCP over IPv4 from `ip:port`.
fn v2_header(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&ip);
    h.extend_from_slice(&[10, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

#[test]
fn proxy_protocol_settings_that_do_not_fit_are_refused_at_start() {
    let fx = fixture();
    let tree = fx.file_url();
    let on_alone = refused_start(&["serve", "--listen", "127.0.0.1:0", "--upstream", &tree, "--proxy-protocol", "on"]);
    assert!(on_alone.contains("--proxy-protocol-from"), "{on_alone}");
    let bad = refused_start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &tree,
        "--proxy-protocol",
        "on",
        "--proxy-protocol-from",
        "10.0.0.0/99",
    ]);
    assert!(bad.contains("prefix"), "{bad}");
}

#[test]
fn admin_posts_need_an_admin_token_once_there_are_tokens() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        format!(
            "[[client]]\nname = \"ci\"\ntoken_sha256 = \"{}\"\n\n[[client]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\nadmin = true\n",
            hex_sha256(CI_TOKEN),
            hex_sha256(OTHER_TOKEN)
        ),
    )
    .unwrap();
    let mut opts = ServerOpts::new(fx.file_url());
    opts.extra_args = vec!["--auth".into(), auth.display().to_string()];
    let server = Server::start_with(opts);
    let purge = format!("/purge?module={PUBLIC}");
    let post = |token: Option<&str>| {
        let mut c = RawConn::connect(server.admin_addr());
        let mut headers = vec!["X-Gomodproxy-Admin: 1".to_string()];
        if let Some(t) = token {
            headers.push(format!("Authorization: Bearer {t}"));
        }
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        c.request_with("POST", &purge, &headers)
    };
    let r = post(None);
    assert_eq!(r.status, 401, "{}", r.body_str());
    assert_eq!(post(Some(CI_TOKEN)).status, 403, "a token that is not an admin's");
    // The admin's call reaches the purge itself (nothing is stored yet: 404).
    let r = post(Some(OTHER_TOKEN));
    assert_eq!(r.status, 404, "{}", r.body_str());
    assert!(r.body_str().contains("nothing stored"), "{}", r.body_str());
}
