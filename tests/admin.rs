//! The admin listener (`--admin-listen`): `/metrics` and `/healthz`, and
//! `POST /purge` on a running server: the version (or the whole module) is
//! withdrawn at once, on whichever core owns it, for good (its tombstones
//! survive restarts), and fetched afresh on its next request. Bad requests
//! get a status that says why; nothing else is touched.

mod common;

use common::*;

use std::net::SocketAddr;

const M: &str = "example.com/admin/Withdrawn";
const OTHER: &str = "example.com/admin/kept";

fn admin(addr: SocketAddr, method: &str, target: &str) -> HttpResponse {
    admin_request(addr, method, target)
}

#[test]
fn an_online_purge_is_fetched_afresh_and_stays_purged_across_restarts() {
    let fx =
        Fixture::builder().module(Module::new(M, "v1.0.0")).module(Module::new(M, "v1.1.0")).module(Module::new(OTHER, "v1.0.0")).build();
    // The admin listener runs on core 0; M's owner is core 1, so the purge
    // crosses the mesh.
    assert_eq!(gomodproxy::resolve::route::owner_of(M, 2), 1);
    let upstream = CountingUpstream::serve(fx.root());
    let mut opts = ServerOpts::new(upstream.url());
    opts.cores = 2;
    let mut server = Server::start_with(opts);
    let path = |m: &str, v: &str, ext: &str| format!("/{}", artifact_path(m, v, ext));
    for (m, v) in [(M, "v1.0.0"), (M, "v1.1.0"), (OTHER, "v1.0.0")] {
        for ext in ["info", "mod", "zip"] {
            assert_eq!(http_get(server.addr(), &path(m, v, ext)).status, 200);
        }
    }
    let list = format!("/{}", list_path(M));
    assert_eq!(http_get(server.addr(), &list).status, 200);

    // The module path as stored (decoded), percent-encoded in the query.
    let r = admin(server.admin_addr(), "POST", "/purge?module=example.com%2Fadmin%2FWithdrawn&version=v1.0.0");
    assert_eq!(r.status, 200, "{}", r.body_str());
    let purged: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let kinds: Vec<&str> = purged["purged"].as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 5, "info, mod, zip and two kept hashes: {purged}");
    for kind in [".info", ".mod", ".zip", "go.sum hash"] {
        assert!(kinds.contains(&kind), "{kind} in {purged}");
    }
    // Fetched afresh at once, on any core; the other version and module untouched.
    for ext in ["info", "mod", "zip"] {
        let r = http_get(server.addr(), &path(M, "v1.0.0", ext));
        assert_eq!((r.status, &r.body), (200, &fx.artifact(M, "v1.0.0", ext)));
        assert_eq!(upstream.hits(&path(M, "v1.0.0", ext)), 2, "{ext} fetched afresh");
        assert_eq!(http_get(server.addr(), &path(M, "v1.1.0", ext)).status, 200);
        assert_eq!(upstream.hits(&path(M, "v1.1.0", ext)), 1, "{ext} of the other version untouched");
    }

    // The whole module, then a restart before anything asks again.
    let r = admin(server.admin_addr(), "POST", &format!("/purge?module={M}"));
    assert_eq!(r.status, 200, "{}", r.body_str());
    server.restart();
    for ext in ["info", "mod", "zip"] {
        assert_eq!(http_get(server.addr(), &path(M, "v1.1.0", ext)).status, 200);
        assert_eq!(upstream.hits(&path(M, "v1.1.0", ext)), 2, "{ext}: purged across the restart");
        assert_eq!(http_get(server.addr(), &path(OTHER, "v1.0.0", ext)).status, 200);
        assert_eq!(upstream.hits(&path(OTHER, "v1.0.0", ext)), 1, "{ext} of another module untouched");
    }
    assert_eq!(http_get(server.addr(), &list).status, 200);
    assert_eq!(upstream.hits(&list), 2, "the list fetched afresh too");
    // Nothing left to purge of a version never stored.
    let r = admin(server.admin_addr(), "POST", &format!("/purge?module={M}&version=v9.9.9"));
    assert_eq!(r.status, 404, "{}", r.body_str());
}

#[test]
fn the_admin_listener_serves_metrics_and_health_and_refuses_what_it_does_not_know() {
    let fx = Fixture::builder().module(Module::new(M, "v1.0.0")).build();
    let server = Server::start(&fx.file_url());
    let a = server.admin_addr();
    assert_eq!(admin(a, "GET", "/healthz").status, 200);
    let metrics = admin(a, "GET", "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body_str().contains("gomodproxy_requests "), "{}", metrics.body_str());
    for (method, target, status, says) in [
        ("GET", "/purge?module=example.com/a", 405, "not allowed"),
        ("POST", "/purge", 400, "module is missing"),
        ("POST", "/purge?module=nodot", 400, "nodot"),
        ("POST", "/purge?module=example.com/a&version=1.0", 400, "not a canonical version"),
        ("POST", "/purge?module=example.com/a&color=red", 400, "unknown parameter"),
        ("POST", "/purge?module=%zz", 400, "percent-encoding"),
        ("GET", "/example.com/a/@v/list", 404, "not an admin endpoint"),
    ] {
        let r = admin(a, method, target);
        assert_eq!(r.status, status, "{method} {target}: {}", r.body_str());
        assert!(r.body_str().contains(says), "{method} {target}: {}", r.body_str());
    }
    // What a page in a browser could send: refused.
    let r = RawConn::connect(a).request("POST", "/purge?module=example.com/a");
    assert_eq!(r.status, 403, "a POST without the admin header: {}", r.body_str());
    let mut c = RawConn::connect(a);
    c.send(b"POST /purge?module=example.com/a HTTP/1.1\r\nHost: evil.example:8081\r\nX-Gomodproxy-Admin: 1\r\n\r\n").unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 403, "a request for another host name (DNS rebinding): {}", r.body_str());
    // The proxy's own listener still refuses POST.
    assert_eq!(admin_request(server.addr(), "POST", "/purge?module=example.com/a").status, 405);
}

#[test]
fn the_admin_listener_is_loopback_only_and_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let tree = format!("file://{}", dir.path().display());
    let stderr = refused_start(&["serve", "--listen", "127.0.0.1:0", "--upstream", &tree, "--admin-listen", "0.0.0.0:8081"]);
    assert!(stderr.contains("loopback only"), "{stderr}");
    let mut opts = ServerOpts::new(tree);
    opts.extra_args = vec!["--admin-listen".into(), "off".into()];
    let server = Server::start_with(opts);
    assert_eq!(http_get(server.addr(), "/healthz").status, 200);
}

#[test]
fn a_kill_9_right_after_an_online_purge_answers_keeps_it_purged() {
    let fx = Fixture::builder().module(Module::new(M, "v1.0.0")).module(Module::new(OTHER, "v1.0.0")).build();
    let upstream = CountingUpstream::serve(fx.root());
    let mut opts = ServerOpts::new(upstream.url());
    opts.cores = 2;
    let mut server = Server::start_with(opts);
    let path = |m: &str, ext: &str| format!("/{}", artifact_path(m, "v1.0.0", ext));
    for m in [M, OTHER] {
        assert_eq!(http_get(server.addr(), &path(m, "zip")).status, 200);
    }
    // The tombstones are synced before the purge answers: no clean stop needed.
    let r = admin_request(server.admin_addr(), "POST", &format!("/purge?module={M}&version=v1.0.0"));
    assert_eq!(r.status, 200, "{}", r.body_str());
    server.kill9();
    server.start_again();
    for m in [M, OTHER] {
        let r = http_get(server.addr(), &path(m, "zip"));
        assert_eq!((r.status, &r.body), (200, &fx.artifact(m, "v1.0.0", "zip")), "{m}: whole and correct");
    }
    assert_eq!(upstream.hits(&path(M, "zip")), 2, "purged for good");
    assert_eq!(upstream.hits(&path(OTHER, "zip")), 1, "the other module kept");
}
