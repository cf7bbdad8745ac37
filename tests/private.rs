//! Private module paths (`--private`, GOPRIVATE syntax) never leak: no
//! request for one, on any endpoint, reaches an `http(s)` entry of
//! `--upstream` (not one byte of a request line or header names it), and
//! none is ever looked up in a checksum database. They come from
//! `--private-upstream` when given, else from the `file://` entries of
//! `--upstream`, else they are not found. Public modules are unaffected.
//!
//! The public upstreams here serve the private modules too, so a leak would
//! not just be seen: it would "work", which is exactly what must not happen.

mod common;

use common::*;

const SECRET: &str = "corp.example/secret";
/// A private module whose path needs `!`-escaping.
const CAMEL: &str = "corp.example/Team/Tool";
const PUBLIC: &str = "example.com/pub";

fn tree() -> (Fixture, SignedDb) {
    let fx = Fixture::builder()
        .module(Module::new(SECRET, "v1.0.0"))
        .module(Module::new(CAMEL, "v1.2.0"))
        .module(Module::new(PUBLIC, "v1.0.0"))
        .build();
    let db = SignedDb::write(fx.root(), &[&format!("{PUBLIC}@v1.0.0")]);
    (fx, db)
}

/// Every endpoint of `module`: the six GOPROXY ones and a checksum-database lookup.
fn endpoints(db: &SignedDb, module: &str, version: &str) -> Vec<String> {
    vec![
        format!("/{}", artifact_path(module, version, "info")),
        format!("/{}", artifact_path(module, version, "mod")),
        format!("/{}", artifact_path(module, version, "zip")),
        format!("/{}", list_path(module)),
        format!("/{}", latest_path(module)),
        format!("/{}/@v/master.info", escape(module)),
        db.lookup_url(module, version),
    ]
}

fn opts(upstream: String, db: &SignedDb, extra: &[&str]) -> ServerOpts {
    let mut o = ServerOpts::new(upstream);
    o.extra_args = ["--sumdb", db.key.as_str()].iter().chain(extra).map(|s| s.to_string()).collect();
    o
}

/// Panics if any request head `upstream` received mentions a private path
/// in any spelling (plain, `!`-escaped, percent-encoded, any case).
fn assert_never_told(upstream: &CountingUpstream, what: &str) {
    let heads = upstream.raw_requests();
    for head in &heads {
        let lower = head.to_ascii_lowercase();
        for needle in ["corp.example", "corp%2eexample", "secret", "!team", "team/tool", "%21team"] {
            assert!(!lower.contains(needle), "{what} was told about a private module ({needle}):\n{head}");
        }
    }
}

#[test]
fn private_paths_never_reach_a_public_upstream() {
    let (fx, db) = tree();
    let public = CountingUpstream::serve(fx.root());
    let server = Server::start_with(opts(public.url(), &db, &["--private", "corp.example"]));
    for (module, version) in [(SECRET, "v1.0.0"), (CAMEL, "v1.2.0"), ("corp.example/Secret", "v1.0.0")] {
        for target in endpoints(&db, module, version) {
            for _ in 0..2 {
                let r = http_get(server.addr(), &target);
                assert_eq!(r.status, 404, "{target}: {r:?}");
                let body = r.body_str();
                assert!(body.contains("private module"), "{target}: {body}");
                if !target.starts_with("/sumdb/") {
                    assert!(body.contains("no private upstream configured"), "{target}: {body}");
                }
            }
        }
    }
    // HEAD too.
    assert_eq!(http_head(server.addr(), &format!("/{}", artifact_path(SECRET, "v1.0.0", "zip"))).status, 404);

    // Public modules still work, through the same upstream.
    for target in endpoints(&db, PUBLIC, "v1.0.0") {
        if target.ends_with("master.info") {
            continue; // the fixture has no branch to resolve
        }
        let r = http_get(server.addr(), &target);
        assert_eq!(r.status, 200, "{target}: {r:?}");
    }
    assert_eq!(http_get(server.addr(), &db.url("tile/8/0/000")).status, 200);
    assert!(public.total_hits() >= 7, "the recorder works: {:?}", public.request_log());
    assert_never_told(&public, "the public upstream");
}

#[test]
fn a_private_upstream_serves_private_modules_and_nothing_else() {
    let (fx, db) = tree();
    let public = CountingUpstream::serve(fx.root());
    let private = CountingUpstream::serve(fx.root());
    let server = Server::start_with(opts(
        public.url(),
        &db,
        &["--private", "*.example/team,corp.example/secret", "--private-upstream", &private.url()],
    ));
    for (module, version) in [(SECRET, "v1.0.0"), (CAMEL, "v1.2.0")] {
        let zip = http_get(server.addr(), &format!("/{}", artifact_path(module, version, "zip")));
        assert_eq!(zip.status, 200, "{module}: {zip:?}");
        assert_eq!(zip.body, fx.artifact(module, version, "zip"));
        let latest = http_get(server.addr(), &format!("/{}", latest_path(module)));
        assert_eq!(latest.status, 200, "{module}: {latest:?}");
        assert!(latest.body_str().contains(version));
        // Even with a trusted upstream, no checksum database hears of it.
        let lookup = http_get(server.addr(), &db.lookup_url(module, version));
        assert_eq!(lookup.status, 404, "{lookup:?}");
        assert!(lookup.body_str().contains("GONOSUMDB"), "{}", lookup.body_str());
    }
    let pubzip = http_get(server.addr(), &format!("/{}", artifact_path(PUBLIC, "v1.0.0", "zip")));
    assert_eq!(pubzip.status, 200);

    assert_never_told(&public, "the public upstream");
    assert!(private.hits(&format!("/{}", artifact_path(SECRET, "v1.0.0", "zip"))) == 1);
    let private_log = private.request_log();
    assert!(
        private_log.iter().all(|l| !l.contains(PUBLIC) && !l.contains("/sumdb/")),
        "the private upstream only hears of private modules: {private_log:?}"
    );
}

#[test]
fn file_upstreams_serve_private_modules_without_a_private_upstream() {
    let (fx, db) = tree();
    let public = CountingUpstream::serve(fx.root());
    // The http entry first: a public module would be asked there first; a private one never.
    let server = Server::start_with(opts(format!("{},{}", public.url(), fx.file_url()), &db, &["--private", "corp.example"]));
    let info = http_get(server.addr(), &format!("/{}", artifact_path(SECRET, "v1.0.0", "info")));
    assert_eq!(info.status, 200, "{info:?}");
    assert_eq!(info.body, fx.artifact(SECRET, "v1.0.0", "info"));
    let list = http_get(server.addr(), &format!("/{}", list_path(CAMEL)));
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(http_get(server.addr(), &format!("/{}", artifact_path(PUBLIC, "v1.0.0", "mod"))).status, 200);
    assert_eq!(public.hits(&format!("/{}", artifact_path(PUBLIC, "v1.0.0", "mod"))), 1);
    assert_never_told(&public, "the public upstream");
}

#[test]
fn the_default_comes_from_gonoproxy_else_goprivate() {
    let (fx, _db) = tree();
    let public = CountingUpstream::serve(fx.root());
    let secret_info = format!("/{}", artifact_path(SECRET, "v1.0.0", "info"));

    let mut o = ServerOpts::new(public.url());
    o.env.push(("GOPRIVATE".into(), "corp.example".into()));
    let goprivate = Server::start_with(o);
    assert_eq!(http_get(goprivate.addr(), &secret_info).status, 404);
    assert_never_told(&public, "the public upstream");

    // GONOPROXY overrides GOPRIVATE for proxying, as in the go command.
    let mut o = ServerOpts::new(public.url());
    o.env.push(("GOPRIVATE".into(), "corp.example".into()));
    o.env.push(("GONOPROXY".into(), "other.example".into()));
    let gonoproxy = Server::start_with(o);
    assert_eq!(http_get(gonoproxy.addr(), &secret_info).status, 200);
}

#[test]
fn a_malformed_pattern_refuses_to_start() {
    let stderr = refused_start(&["serve", "--listen", "127.0.0.1:0", "--upstream", "file:///nonexistent", "--private", "corp.example/["]);
    assert!(stderr.contains("corp.example/["), "{stderr}");
}
