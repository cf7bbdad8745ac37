//! An upstream's redirects are followed only within its own scheme, host
//! and port: one that points elsewhere (here another loopback port, as a
//! server-side request forgery would) is refused and never fetched.

mod common;

use common::*;
use std::time::Duration;

use std::io::Write;

const M: &str = "example.com/redirected";

/// An upstream that answers every request with a redirect to `to(path)`.
fn redirecting(to: impl Fn(&str) -> String + Send + Sync + 'static) -> ScriptedServer {
    ScriptedServer::start(move |mut conn| {
        let Some(head) = read_request_head(&mut conn) else { return };
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let _ = write!(conn, "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", to(&path));
    })
}

#[test]
fn redirects_to_another_origin_are_refused_and_within_it_followed() {
    let fx = Fixture::builder().module(Module::new(M, "v1.0.0")).build();
    let elsewhere = CountingUpstream::serve(fx.root());
    let target = elsewhere.url();
    let away = redirecting(move |path| format!("{target}{path}"));
    let server = Server::start(&away.url());
    let info = format!("/{}", artifact_path(M, "v1.0.0", "info"));
    let r = http_get(server.addr(), &info);
    assert_eq!(r.status, 502, "{}", r.body_str());
    assert_eq!(elsewhere.total_hits(), 0, "the redirect target was never asked");
    assert!(server.wait_for_log(Duration::from_secs(5), |l| l.contains("not followed")), "the refusal is logged");

    // Within the upstream's own origin: followed. The tree sits below a
    // prefix; the upstream's root redirects into it.
    let tree = CountingUpstream::serve(fx.root());
    let base = tree.url();
    let front = ScriptedServer::start(move |mut conn| {
        let Some(head) = read_request_head(&mut conn) else { return };
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        // Answer as the tree does, but reach it by a same-origin redirect:
        // this front proxies its own /real/... paths to the tree.
        if let Some(rest) = path.strip_prefix("/real") {
            let body = std::net::TcpStream::connect(base.trim_start_matches("http://")).ok().and_then(|mut t| {
                let _ = write!(t, "GET {rest} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut t, &mut out).ok().map(|_| out)
            });
            let _ = conn.write_all(&body.unwrap_or_default());
        } else {
            let _ =
                write!(conn, "HTTP/1.1 301 Moved Permanently\r\nLocation: /real{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let server = Server::start(&front.url());
    let r = http_get(server.addr(), &info);
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.body, fx.artifact(M, "v1.0.0", "info"));
    assert_eq!(tree.hits(&info), 1);
}
