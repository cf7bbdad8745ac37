//! The checksum-database relay: `/sumdb/<name>/{supported,latest,lookup/...,tile/...}`
//! for the databases `--sumdb` gives, answered from what gomodproxy
//! fetched (through the upstream's `/sumdb/<name>/`) and verified: notes
//! signed with the database's key, lookups proved, tiles authenticated.
//! Complete tiles are stored for good; the tree head, lookups and partial
//! tiles are stored as their latest copy, fresh for `--sumdb-ttl` and then
//! the stale-if-error reserve, across restarts too. Every other name and
//! every malformed path is refused before anything reaches the upstream.
//!
//! The database is a real signed log (`SignedDb`). Records: `A` is 0, 290
//! fillers follow, then `CAMEL` (291): 292 records, so level 0 has the
//! complete tile 000 and the partial 001.p/36, level 1 the partial 000.p/1.

mod common;

use common::*;

use std::time::Duration;

const A: (&str, &str) = ("example.com/a", "v1.0.0");
const CAMEL: (&str, &str) = ("example.com/CamelCase", "v1.2.3-RC");
const LATER: (&str, &str) = ("example.com/later", "v1.0.0");

const TILES: [&str; 5] = ["tile/8/0/000", "tile/8/0/001.p/36", "tile/8/1/000.p/1", "tile/8/data/000", "tile/8/data/001.p/36"];

fn opts(upstream: String, db: &SignedDb, extra: &[&str]) -> ServerOpts {
    let mut o = ServerOpts::new(upstream);
    o.extra_args = ["--sumdb", db.key.as_str()].iter().chain(extra).map(|s| s.to_string()).collect();
    o
}

fn tree() -> (Fixture, SignedDb) {
    let fx = Fixture::builder()
        .module(Module::new(A.0, A.1))
        .module(Module::new(CAMEL.0, CAMEL.1))
        .module(Module::new(LATER.0, LATER.1))
        .build();
    let [a, camel] = [A, CAMEL].map(|(m, v)| format!("{m}@{v}"));
    let db = SignedDb::write(fx.root(), &[&a, &camel]);
    (fx, db)
}

fn upstream_bytes(fx: &Fixture, rel: &str) -> Vec<u8> {
    fx.read(&format!("sumdb/{SUMDB_NAME}/{rel}"))
}

#[test]
fn verified_answers_are_relayed_and_kept() {
    let (fx, db) = tree();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(opts(upstream.url(), &db, &[]));
    let addr = server.addr();

    let supported = http_get(addr, &db.url("supported"));
    assert_eq!(supported.status, 200, "{supported:?}");
    assert!(supported.body.is_empty());
    assert_eq!(upstream.total_hits(), 0, "supported is ours to answer: {:?}", upstream.request_log());

    let latest = http_get(addr, &db.url("latest"));
    assert_eq!(latest.status, 200, "{latest:?}");
    assert_eq!(latest.body, upstream_bytes(&fx, "latest"));
    assert!(latest.header("cache-control").unwrap().contains("max-age=60"), "{latest:?}");

    // Lookups are asked in canonical escaped form, whatever the client sent.
    let lookup = http_get(addr, &db.lookup_url(CAMEL.0, CAMEL.1));
    assert_eq!(lookup.status, 200, "{lookup:?}");
    assert_eq!(lookup.body, upstream_bytes(&fx, "lookup/example.com/!camel!case@v1.2.3-!r!c"));
    assert_eq!(lookup.header("content-type"), Some("text/plain; charset=utf-8"));
    let encoded = http_get(addr, &db.url("lookup/example.com/%21camel%21case%40v1.2.3-%21r%21c"));
    assert_eq!(encoded.status, 200, "{encoded:?}");
    assert_eq!(encoded.body, lookup.body);

    for t in TILES {
        let r = http_get(addr, &db.url(t));
        assert_eq!(r.status, 200, "{t}: {}", r.body_str());
        assert_eq!(r.body, upstream_bytes(&fx, t), "{t}");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"), "{t}");
        let cc = r.header("cache-control").unwrap();
        if t.contains(".p/") {
            assert!(cc.contains("max-age=60") && !cc.contains("immutable"), "{t}: {cc}");
        } else {
            assert!(cc.contains("immutable"), "{t}: {cc}");
            assert!(r.header("etag").is_some(), "{t}");
        }
    }
    // A client that saw a smaller tree asks for a narrower tile: a prefix of an authenticated one.
    let narrow = http_get(addr, &db.url("tile/8/0/001.p/5"));
    assert_eq!(narrow.status, 200, "{}", narrow.body_str());
    assert_eq!(narrow.body, upstream_bytes(&fx, "tile/8/0/001.p/36")[..5 * 32]);

    // Within the TTL nothing is asked twice.
    let before = upstream.counts();
    for rel in ["supported", "latest", "lookup/example.com/!camel!case@v1.2.3-!r!c"].into_iter().chain(TILES) {
        assert_eq!(http_get(addr, &db.url(rel)).status, 200, "{rel}");
    }
    assert_eq!(upstream.counts(), before, "kept answers must not reach the upstream again");

    // A record the database does not have: its 404, passed on.
    let missing = http_get(addr, &db.lookup_url("example.com/nope", "v1.0.0"));
    assert_eq!(missing.status, 404, "{missing:?}");
    // A tile past every head the database signed.
    let past = http_get(addr, &db.url("tile/8/0/002"));
    assert_eq!(past.status, 404, "{past:?}");
}

#[test]
fn other_databases_get_404_and_never_reach_the_upstream() {
    let (fx, db) = tree();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(opts(upstream.url(), &db, &[]));
    for rel in ["supported", "latest", "lookup/example.com/a@v1.0.0", "tile/8/0/000", "tile/8/0/001.p/44"] {
        let r = http_get(server.addr(), &format!("/sumdb/other.example/{rel}"));
        assert_eq!(r.status, 404, "{rel}: {r:?}");
        assert!(r.body_str().contains("does not proxy checksum database other.example"), "{}", r.body_str());
    }
    assert_eq!(upstream.total_hits(), 0, "{:?}", upstream.request_log());

    // `--sumdb off` serves none at all.
    let off = Server::start_with(ServerOpts { extra_args: vec!["--sumdb".into(), "off".into()], ..ServerOpts::new(upstream.url()) });
    assert_eq!(http_get(off.addr(), &db.url("supported")).status, 404);
    assert_eq!(upstream.total_hits(), 0, "{:?}", upstream.request_log());
}

#[test]
fn the_default_comes_from_gosumdb_and_a_bare_unknown_name_refuses_to_start() {
    let (fx, db) = tree();
    let upstream = CountingUpstream::serve(fx.root());
    let mut o = ServerOpts::new(upstream.url());
    o.env.push(("GOSUMDB".into(), format!("{} http://127.0.0.1:1/db", db.key)));
    let server = Server::start_with(o);
    assert_eq!(http_get(server.addr(), &db.url("supported")).status, 200);
    assert_eq!(http_get(server.addr(), &db.url("latest")).body, upstream_bytes(&fx, "latest"));

    let mut o = ServerOpts::new(upstream.url());
    o.env.push(("GOSUMDB".into(), "off".into()));
    let off = Server::start_with(o);
    assert_eq!(http_get(off.addr(), &db.url("supported")).status, 404);

    // A name with no key that the go command does not know either.
    let stderr = refused_start(&["serve", "--listen", "127.0.0.1:0", "--upstream", &upstream.url(), "--sumdb", SUMDB_NAME]);
    assert!(stderr.contains(SUMDB_NAME) && stderr.contains("NAME+HASH+KEY"), "{stderr}");
}

#[test]
fn every_answer_survives_a_restart_without_the_upstream() {
    let (fx, db) = tree();
    let mut upstream = CountingUpstream::serve(fx.root());
    let mut server = Server::start_with(opts(upstream.url(), &db, &[]));
    let answers: Vec<String> =
        ["latest".to_string(), format!("lookup/{}@{}", escape(A.0), escape(A.1))].into_iter().chain(TILES.map(String::from)).collect();
    for _ in 0..3 {
        for rel in &answers {
            assert_eq!(http_get(server.addr(), &db.url(rel)).status, 200, "{rel}");
        }
    }
    for rel in &answers {
        assert_eq!(upstream.hits(&db.url(rel)), 1, "{rel} must be fetched once");
    }
    // Conditional requests work for complete tiles as for module zips.
    let first = http_get(server.addr(), &db.url(TILES[0]));
    let etag = first.header("etag").unwrap().to_string();
    let mut c = RawConn::connect(server.addr());
    c.send(format!("GET {} HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n", db.url(TILES[0])).as_bytes()).unwrap();
    assert_eq!(c.read_response(false).unwrap().status, 304);

    upstream.shutdown();
    server.restart_with(|o| o.extra_args.extend(["--sumdb-ttl".to_string(), "0".to_string()]));
    for rel in &answers {
        let r = http_get(server.addr(), &db.url(rel));
        assert_eq!(r.status, 200, "{rel} must come from the store: {}", r.body_str());
        assert_eq!(r.body, upstream_bytes(&fx, rel), "{rel}");
    }
    assert!(metric(server.addr(), "gomodproxy_stale_served") >= 4, "past their TTL, served stale");
}

#[test]
fn an_expired_tree_head_is_refreshed_and_must_extend_the_accepted_one() {
    let (fx, db) = tree();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(opts(upstream.url(), &db, &["--sumdb-ttl", "1s"]));
    let first = http_get(server.addr(), &db.url("latest"));
    assert_eq!(first.status, 200);

    // The log grows by one record: consistent, so the new head is relayed.
    let [a, camel, later] = [A, CAMEL, LATER].map(|(m, v)| format!("{m}@{v}"));
    let grown = SignedDb::write(fx.root(), &[&a, &camel, &later]);
    assert_eq!(grown.key, db.key);
    std::thread::sleep(Duration::from_millis(1300));
    let r = http_get(server.addr(), &db.url("latest"));
    assert_eq!(r.body, upstream_bytes(&fx, "latest"));
    assert_ne!(r.body, first.body);
    assert_eq!(upstream.hits(&db.url("latest")), 2);
    let head = std::fs::read_to_string(server.data_dir().join("sumdb").join(format!("{SUMDB_NAME}.head"))).unwrap();
    assert!(head.contains("\n293\n"), "the newer head is the one kept: {head}");

    // A log that rewrote history (same key, another record 291) is
    // refused, loudly; clients keep the last verified head.
    let forked = SignedDb::write(fx.root(), &[&a, &later, &camel]);
    assert_eq!(forked.key, db.key);
    let verified = upstream_bytes(&fx, "latest");
    std::thread::sleep(Duration::from_millis(1300));
    let r = http_get(server.addr(), &db.url("latest"));
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_ne!(r.body, verified, "the forked head is not relayed");
    assert!(server.wait_for_log(Duration::from_secs(5), |l| l.contains("SECURITY") && l.contains("forked")), "{:?}", server.log_lines());
    assert!(metric(server.addr(), "gomodproxy_stale_served") >= 1);
}

#[test]
fn hostile_or_malformed_sumdb_paths_never_reach_the_upstream() {
    let (fx, db) = tree();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(opts(upstream.url(), &db, &[]));
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
    // A tile of another height is not this database's: nothing is asked for it.
    assert_eq!(http_get(server.addr(), &db.url("tile/4/0/000")).status, 404);
}

#[test]
fn an_altered_tile_or_note_is_refused_and_not_kept() {
    let (fx, db) = tree();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(opts(upstream.url(), &db, &["--negative-ttl", "0"]));
    let file = |rel: &str| fx.root().join(format!("sumdb/{SUMDB_NAME}/{rel}"));
    let good_tile = std::fs::read(file("tile/8/0/000")).unwrap();
    let mut bad = good_tile.clone();
    bad[100] ^= 1;
    std::fs::write(file("tile/8/0/000"), &bad).unwrap();
    for _ in 0..2 {
        let r = http_get(server.addr(), &db.url("tile/8/0/000"));
        assert_eq!(r.status, 502, "{}", r.body_str());
    }
    assert_eq!(upstream.hits(&db.url("tile/8/0/000")), 2, "a refused tile must not be kept");
    std::fs::write(file("tile/8/0/000"), &good_tile).unwrap();
    assert_eq!(http_get(server.addr(), &db.url("tile/8/0/000")).body, good_tile, "once fixed, served");

    // A lookup whose note is not signed by the key.
    let lookup = format!("lookup/{}@{}", escape(CAMEL.0), escape(CAMEL.1));
    let text = std::fs::read_to_string(file(&lookup)).unwrap();
    std::fs::write(file(&lookup), text.replacen("\n292\n", "\n293\n", 1)).unwrap();
    let r = http_get(server.addr(), &db.url(&lookup));
    assert_eq!(r.status, 502, "{}", r.body_str());
    // An HTML page sent with 200 is no tree head either.
    std::fs::write(file("latest"), "<html>oops</html>").unwrap();
    assert_eq!(http_get(server.addr(), &db.url("latest")).status, 502);
}

#[test]
fn a_file_tree_in_the_module_cache_layout_serves_the_database() {
    let (fx, db) = tree();
    // The go command's cache has lookups and tiles but no `supported` or `latest` file.
    for f in ["supported", "latest"] {
        std::fs::remove_file(fx.root().join(format!("sumdb/{SUMDB_NAME}/{f}"))).unwrap();
    }
    let server = Server::start_with(opts(fx.file_url(), &db, &[]));
    assert_eq!(http_get(server.addr(), &db.url("supported")).status, 200);
    let lookup = http_get(server.addr(), &db.lookup_url(A.0, A.1));
    assert_eq!(lookup.status, 200, "{lookup:?}");
    assert_eq!(lookup.body, upstream_bytes(&fx, "lookup/example.com/a@v1.0.0"));
    // The lookup's own signed head is the one its tiles are authenticated against.
    let tile = http_get(server.addr(), &db.url("tile/8/0/000"));
    assert_eq!(tile.status, 200, "{}", tile.body_str());
    assert_eq!(tile.body, upstream_bytes(&fx, "tile/8/0/000"));
}

/// Records in the store's segment files (each starts with the magic
/// `GMPR`; the files grow by writes, so their sizes would say the same).
fn store_records(data: &std::path::Path) -> usize {
    std::fs::read_dir(data.join("segments"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap().windows(4).filter(|w| w == b"GMPR").count())
        .sum()
}

#[test]
fn an_answer_refreshed_to_the_same_bytes_is_not_stored_again() {
    let (fx, db) = tree();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(opts(upstream.url(), &db, &["--sumdb-ttl", "1s"]));
    assert_eq!(http_get(server.addr(), &db.url("latest")).status, 200);
    let before = store_records(server.data_dir());
    for round in 2..=3 {
        // Let the TTL pass (decides when we ask, not what we assert).
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(http_get(server.addr(), &db.url("latest")).body, upstream_bytes(&fx, "latest"));
        assert_eq!(upstream.hits(&db.url("latest")), round, "refreshed past its TTL");
        // Within the TTL again: answered without asking.
        assert_eq!(http_get(server.addr(), &db.url("latest")).status, 200);
        assert_eq!(upstream.hits(&db.url("latest")), round);
    }
    assert_eq!(store_records(server.data_dir()), before, "the same tree head is not appended again");
}
