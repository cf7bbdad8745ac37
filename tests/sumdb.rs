//! The checksum-database proxy: `/sumdb/<name>/{supported,latest,lookup/...,tile/...}`
//! forwarded to the upstream's `/sumdb/<name>/...` for the names `--sumdb`
//! allows. Complete tiles are immutable and land in the segment store (one
//! upstream fetch ever, even across restarts); lookups, the tree head and
//! partial tiles are cached for `--sumdb-ttl` and served stale when the
//! upstream fails. Every other name and every malformed path is refused
//! before anything reaches the upstream.
//!
//! The database here is a fake (see [`FakeSumDb`]): the proxy does not
//! verify signatures, the go command does.

mod common;

use common::*;

use std::time::Duration;

fn sumdb_opts(upstream: String, extra: &[&str]) -> ServerOpts {
    let mut o = ServerOpts::new(upstream);
    o.extra_args = ["--sumdb", SUMDB_NAME].iter().chain(extra).map(|s| s.to_string()).collect();
    o
}

fn tree() -> (Fixture, FakeSumDb) {
    let fx = Fixture::builder().module(Module::new("example.com/a", "v1.0.0")).build();
    let db = FakeSumDb::write(fx.root(), SUMDB_NAME, &[("example.com/a", "v1.0.0"), ("example.com/CamelCase", "v1.2.3-RC")]);
    (fx, db)
}

fn upstream_bytes(fx: &Fixture, db: &FakeSumDb, rel: &str) -> Vec<u8> {
    fx.read(&format!("sumdb/{}/{rel}", db.name))
}

#[test]
fn supported_lookup_latest_and_tiles_are_proxied() {
    let (fx, db) = tree();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(sumdb_opts(upstream.url(), &[]));
    let addr = server.addr();

    let supported = http_get(addr, &db.url("supported"));
    assert_eq!(supported.status, 200, "{supported:?}");
    assert!(supported.body.is_empty());

    let latest = http_get(addr, &db.url("latest"));
    assert_eq!(latest.status, 200, "{latest:?}");
    assert_eq!(latest.body, upstream_bytes(&fx, &db, "latest"));
    assert!(latest.header("cache-control").unwrap().contains("max-age=60"), "{latest:?}");

    // Lookups are forwarded in canonical escaped form, whatever the client sent.
    let lookup = http_get(addr, &db.lookup_url("example.com/CamelCase", "v1.2.3-RC"));
    assert_eq!(lookup.status, 200, "{lookup:?}");
    assert_eq!(lookup.body, upstream_bytes(&fx, &db, "lookup/example.com/!camel!case@v1.2.3-!r!c"));
    assert_eq!(lookup.header("content-type"), Some("text/plain; charset=utf-8"));
    let encoded = http_get(addr, &db.url("lookup/example.com/%21camel%21case%40v1.2.3-%21r%21c"));
    assert_eq!(encoded.status, 200, "{encoded:?}");
    assert_eq!(encoded.body, lookup.body);

    for t in ["tile/8/0/000", "tile/8/0/x001/002", "tile/8/0/001.p/44", "tile/8/1/000.p/1", "tile/8/data/000"] {
        let r = http_get(addr, &db.url(t));
        assert_eq!(r.status, 200, "{t}: {r:?}");
        assert_eq!(r.body, upstream_bytes(&fx, &db, t), "{t}");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"), "{t}");
        let cc = r.header("cache-control").unwrap();
        if t.contains(".p/") {
            assert!(cc.contains("max-age=60") && !cc.contains("immutable"), "{t}: {cc}");
        } else {
            assert!(cc.contains("immutable"), "{t}: {cc}");
            assert!(r.header("etag").is_some(), "{t}");
        }
    }

    // Within the TTL nothing is asked twice.
    let before = upstream.counts();
    for rel in ["supported", "latest", "lookup/example.com/!camel!case@v1.2.3-!r!c", "tile/8/0/000", "tile/8/0/001.p/44"] {
        assert_eq!(http_get(addr, &db.url(rel)).status, 200, "{rel}");
    }
    assert_eq!(upstream.counts(), before, "cached answers must not reach the upstream again");

    // A record the database does not have: its 404, passed on.
    let missing = http_get(addr, &db.lookup_url("example.com/nope", "v1.0.0"));
    assert_eq!(missing.status, 404, "{missing:?}");
}

#[test]
fn other_databases_get_404_and_never_reach_the_upstream() {
    let (fx, _db) = tree();
    let other = FakeSumDb::write(fx.root(), "other.example", &[("example.com/a", "v1.0.0")]);
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(sumdb_opts(upstream.url(), &[]));
    for rel in ["supported", "latest", "lookup/example.com/a@v1.0.0", "tile/8/0/000", "tile/8/0/001.p/44"] {
        let r = http_get(server.addr(), &other.url(rel));
        assert_eq!(r.status, 404, "{rel}: {r:?}");
        assert!(r.body_str().contains("does not proxy checksum database other.example"), "{}", r.body_str());
    }
    assert_eq!(upstream.total_hits(), 0, "{:?}", upstream.request_log());

    // `--sumdb off` proxies none at all.
    let off = Server::start_with(ServerOpts { extra_args: vec!["--sumdb".into(), "off".into()], ..ServerOpts::new(upstream.url()) });
    assert_eq!(http_get(off.addr(), &format!("/sumdb/{SUMDB_NAME}/supported")).status, 404);
    assert_eq!(upstream.total_hits(), 0, "{:?}", upstream.request_log());
}

#[test]
fn the_default_name_comes_from_gosumdb() {
    let (fx, db) = tree();
    let upstream = CountingUpstream::serve(fx.root());
    let mut opts = ServerOpts::new(upstream.url());
    opts.env.push(("GOSUMDB".into(), format!("{SUMDB_NAME}+0123abcd+AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA= http://127.0.0.1:1/db")));
    let server = Server::start_with(opts);
    assert_eq!(http_get(server.addr(), &db.url("supported")).status, 200);

    let mut opts = ServerOpts::new(upstream.url());
    opts.env.push(("GOSUMDB".into(), "off".into()));
    let off = Server::start_with(opts);
    assert_eq!(http_get(off.addr(), &db.url("supported")).status, 404);
}

#[test]
fn supported_is_404_when_no_upstream_proxies_the_database() {
    // A plain module tree: no sumdb/ directory, so its server answers 404.
    let fx = Fixture::builder().module(Module::new("example.com/a", "v1.0.0")).build();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(sumdb_opts(upstream.url(), &[]));
    let r = http_get(server.addr(), &format!("/sumdb/{SUMDB_NAME}/supported"));
    assert_eq!(r.status, 404, "the go command must be sent to the database itself: {r:?}");
    assert!(r.body_str().contains("no upstream proxies checksum database"), "{}", r.body_str());
    // The same for a file:// tree without the database's directory.
    let file = Server::start_with(sumdb_opts(fx.file_url(), &[]));
    assert_eq!(http_get(file.addr(), &format!("/sumdb/{SUMDB_NAME}/supported")).status, 404);
}

#[test]
fn complete_tiles_are_stored_and_survive_a_restart_without_the_upstream() {
    let (fx, db) = tree();
    let mut upstream = CountingUpstream::serve(fx.root());
    let mut server = Server::start_with(sumdb_opts(upstream.url(), &[]));
    let full = "tile/8/0/x001/002";
    let data = "tile/8/data/000";
    let partial = "tile/8/0/001.p/44";
    for _ in 0..5 {
        for t in [full, data, partial] {
            assert_eq!(http_get(server.addr(), &db.url(t)).status, 200, "{t}");
        }
    }
    for t in [full, data, partial] {
        assert_eq!(upstream.hits(&db.url(t)), 1, "{t} must be fetched once");
    }
    // Conditional requests work as for module zips.
    let first = http_get(server.addr(), &db.url(full));
    let etag = first.header("etag").unwrap().to_string();
    let mut c = RawConn::connect(server.addr());
    c.send(format!("GET {} HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n", db.url(full)).as_bytes()).unwrap();
    assert_eq!(c.read_response(false).unwrap().status, 304);

    upstream.shutdown();
    server.restart();
    for t in [full, data] {
        let r = http_get(server.addr(), &db.url(t));
        assert_eq!(r.status, 200, "{t} must come from the store: {r:?}");
        assert_eq!(r.body, upstream_bytes(&fx, &db, t), "{t}");
        assert!(r.header("cache-control").unwrap().contains("immutable"));
    }
    // A partial tile is only ever cached in memory: gone with the process.
    let r = http_get(server.addr(), &db.url(partial));
    assert!(matches!(r.status, 502 | 504), "{r:?}");
}

#[test]
fn stale_answers_are_served_when_the_upstream_fails() {
    let (fx, db) = tree();
    let mut upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(sumdb_opts(upstream.url(), &["--sumdb-ttl", "1s"]));
    let lookup = db.lookup_url("example.com/a", "v1.0.0");
    let fresh_latest = http_get(server.addr(), &db.url("latest"));
    let fresh_lookup = http_get(server.addr(), &lookup);
    assert_eq!(fresh_latest.status, 200);
    assert_eq!(fresh_lookup.status, 200);
    assert!(fresh_latest.header("cache-control").unwrap().contains("max-age=1"));

    upstream.shutdown();
    // Let the TTL pass (decides when we ask, not what we assert).
    std::thread::sleep(Duration::from_millis(1300));
    let stale_latest = http_get(server.addr(), &db.url("latest"));
    assert_eq!(stale_latest.status, 200, "{stale_latest:?}");
    assert_eq!(stale_latest.body, fresh_latest.body);
    let stale_lookup = http_get(server.addr(), &lookup);
    assert_eq!(stale_lookup.status, 200, "{stale_lookup:?}");
    assert_eq!(stale_lookup.body, fresh_lookup.body);
    assert!(metric(server.addr(), "gomodproxy_stale_served") >= 2);
}

#[test]
fn an_expired_tree_head_is_refreshed() {
    let (fx, db) = tree();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(sumdb_opts(upstream.url(), &["--sumdb-ttl", "1s"]));
    assert_eq!(http_get(server.addr(), &db.url("latest")).status, 200);
    std::fs::write(fx.root().join(format!("sumdb/{}/latest", db.name)), db.note(301)).unwrap();
    std::thread::sleep(Duration::from_millis(1300));
    let r = http_get(server.addr(), &db.url("latest"));
    assert_eq!(r.body_str(), db.note(301));
    assert_eq!(upstream.hits(&db.url("latest")), 2);
}

#[test]
fn hostile_or_malformed_sumdb_paths_never_reach_the_upstream() {
    let (fx, db) = tree();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(sumdb_opts(upstream.url(), &[]));
    let p = &db.prefix;
    let cases: Vec<(String, u16)> = vec![
        ("/sumdb".into(), 404),
        (p.clone(), 404),
        (format!("{p}/"), 400),
        (format!("{p}/unknown"), 404),
        (format!("{p}/latest/x"), 404),
        (format!("{p}/../../etc/passwd"), 400),
        (format!("{p}/tile/../../../etc/passwd"), 400),
        (format!("{p}/tile/8/0/1"), 400),
        (format!("{p}/tile/8/0/0001"), 400),
        (format!("{p}/tile/8/0/000.p/256"), 400),
        (format!("{p}/tile/8/0/000.p/0"), 400),
        (format!("{p}/tile/31/0/000"), 400),
        (format!("{p}/tile/8/0/000%2F..%2Fx"), 400),
        (format!("{p}/tile/8/0/x999/x999/x999/x999/x999/x999/x999/999"), 400),
        (format!("{p}/lookup/example.com/a"), 400),
        (format!("{p}/lookup/example.com/a@v1.0.0/go.mod"), 400),
        (format!("{p}/lookup/example.com/a@latest"), 404),
        (format!("{p}/lookup/example.com/a@master"), 404),
        (format!("{p}/lookup/example.com/A@v1.0.0"), 400),
        (format!("{p}/lookup/nodot/x@v1.0.0"), 400),
        ("/sumdb/sum+key/supported".into(), 400),
        ("/sumdb/.hidden/supported".into(), 400),
        ("/sumdb/a%20b/supported".into(), 400),
    ];
    for (target, want) in &cases {
        let r = http_get(server.addr(), target);
        assert_eq!(r.status, *want, "{target}: {}", r.body_str());
    }
    assert_eq!(upstream.total_hits(), 0, "{:?}", upstream.request_log());
}

#[test]
fn a_tile_of_the_wrong_length_is_refused_and_not_kept() {
    let (fx, db) = tree();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(sumdb_opts(upstream.url(), &[]));
    let bad = db.url("tile/8/0/002");
    for i in 1..=2 {
        let r = http_get(server.addr(), &bad);
        assert_eq!(r.status, 502, "{r:?}");
        assert!(r.body_str().contains("hash tile"), "{}", r.body_str());
        assert_eq!(upstream.hits(&bad), i, "an invalid tile must not be cached");
    }
    // An HTML page sent with 200 is no tree head either.
    std::fs::write(fx.root().join(format!("sumdb/{}/latest", db.name)), "<html>oops</html>").unwrap();
    assert_eq!(http_get(server.addr(), &db.url("latest")).status, 502);
}

#[test]
fn a_file_tree_in_the_module_cache_layout_serves_the_database() {
    let (fx, db) = tree();
    // The go command's cache has lookups and tiles but no `supported` or `latest` file.
    std::fs::remove_file(fx.root().join(format!("sumdb/{}/supported", db.name))).unwrap();
    let server = Server::start_with(sumdb_opts(fx.file_url(), &[]));
    assert_eq!(http_get(server.addr(), &db.url("supported")).status, 200);
    let lookup = http_get(server.addr(), &db.lookup_url("example.com/a", "v1.0.0"));
    assert_eq!(lookup.status, 200, "{lookup:?}");
    assert_eq!(lookup.body, upstream_bytes(&fx, &db, "lookup/example.com/a@v1.0.0"));
    let tile = http_get(server.addr(), &db.url("tile/8/0/000"));
    assert_eq!(tile.status, 200);
    assert_eq!(tile.body, upstream_bytes(&fx, &db, "tile/8/0/000"));
    assert_eq!(http_get(server.addr(), &db.url("tile/8/0/003")).status, 404);
}
