//! `HTTP_PROXY`: requests for an `http://` upstream go through the proxy
//! the environment names (in absolute form, as HTTP proxies expect), so an
//! upstream host this machine cannot even resolve is reached; `NO_PROXY`
//! matching is unit-tested in `src/upstream/auth.rs`, and `HTTPS_PROXY`
//! (a CONNECT tunnel) is tested with the TLS upstream in `tls.rs`.

mod common;

use common::*;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A forward proxy that answers every request itself from the fixture (as
/// if it had forwarded it), recording the request targets it was sent.
fn fake_proxy(root: &std::path::Path) -> (ScriptedServer, Arc<Mutex<Vec<String>>>) {
    let targets: Arc<Mutex<Vec<String>>> = Arc::default();
    let (t, root) = (targets.clone(), root.to_path_buf());
    let proxy = ScriptedServer::start(move |mut conn| {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
        let Some(head) = read_request_head(&mut conn) else { return };
        let target = head.split(' ').nth(1).unwrap_or("").to_string();
        t.lock().unwrap().push(target.clone());
        // Absolute form: http://host[:port]/path.
        let path = target.strip_prefix("http://").and_then(|r| r.find('/').map(|i| r[i..].to_string())).unwrap_or_default();
        let path = percent_decode_path(&path).unwrap_or_default();
        let body = fixture_file(&root, &path);
        let (status, body) = match body {
            Some(b) => ("200 OK", b),
            None => ("404 Not Found", b"not found\n".to_vec()),
        };
        let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        let _ = conn.write_all(&body);
    });
    (proxy, targets)
}

#[test]
fn an_http_upstream_is_reached_through_http_proxy() {
    let fx = Fixture::builder().module(Module::new("example.com/viaproxy", "v1.0.0")).build();
    let (proxy, targets) = fake_proxy(fx.root());
    // A reserved name that resolves nowhere: only the proxy can reach it.
    let upstream = "http://mirror.invalid";
    let server = Server::start_with(ServerOpts {
        env: vec![("HTTP_PROXY".into(), proxy.url()), ("NO_PROXY".into(), "other.invalid".into())],
        extra_args: ["--breaker-failures", "0", "--upstream-retries", "0"].map(String::from).to_vec(),
        ..ServerOpts::new(upstream)
    });
    let path = format!("/{}", artifact_path("example.com/viaproxy", "v1.0.0", "zip"));
    let r = http_get(server.addr(), &path);
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(r.body == fx.artifact("example.com/viaproxy", "v1.0.0", "zip"));
    let seen = targets.lock().unwrap().clone();
    assert_eq!(seen, vec![format!("{upstream}{path}")], "one request, in absolute form, through the proxy");
}
