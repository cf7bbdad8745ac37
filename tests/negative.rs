//! Negative caching: an upstream's 404/410 for `.info`/`.mod`/`.zip`,
//! `list`, `@latest` (and checksum-database requests) is remembered on the
//! owner core for `--negative-ttl`, so a storm of requests for a missing
//! module costs one upstream fetch per TTL. Failures (5xx) are never
//! remembered, and `--negative-ttl 0` turns the cache off.

mod common;

use common::*;

use std::time::Duration;

const MISSING: &str = "example.com/missing";
const STORM: usize = 20;

fn opts(upstream: String, ttl: &str) -> ServerOpts {
    let mut o = ServerOpts::new(upstream);
    o.extra_args = vec!["--negative-ttl".into(), ttl.into()];
    o
}

fn fixture() -> Fixture {
    Fixture::builder().module(Module::new("example.com/present", "v1.0.0")).build()
}

/// Every endpoint of the missing module: (what the client asks, what the upstream is asked).
fn missing_endpoints() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = ["info", "mod", "zip"]
        .iter()
        .map(|ext| {
            let p = format!("/{}", artifact_path(MISSING, "v1.0.0", ext));
            (p.clone(), p)
        })
        .collect();
    v.push((format!("/{}", list_path(MISSING)), format!("/{}", list_path(MISSING))));
    v.push((format!("/{}", latest_path(MISSING)), format!("/{}", latest_path(MISSING))));
    v
}

#[test]
fn a_storm_for_a_missing_module_costs_one_upstream_fetch_per_ttl() {
    let fx = fixture();
    let upstream = CountingUpstream::serve(fx.root());
    // Long enough that the storm (100 sequential requests) fits well inside it.
    let server = Server::start_with(opts(upstream.url(), "3s"));
    let endpoints = missing_endpoints();
    let storm = || {
        for _ in 0..STORM {
            for (asked, _) in &endpoints {
                let r = http_get(server.addr(), asked);
                assert_eq!(r.status, 404, "{asked}: {r:?}");
                assert!(r.body_str().contains("not found"), "the upstream's reason is kept: {}", r.body_str());
            }
        }
    };
    storm();
    // One fetch per endpoint; `@latest` also asks for `list` (the fallback
    // for upstreams without `@latest`), hence two of those.
    let once = upstream.counts();
    for (asked, sent) in &endpoints {
        let want = if sent.ends_with("/@v/list") { 2 } else { 1 };
        assert_eq!(once.get(sent).copied(), Some(want), "{asked}: {:?}", upstream.request_log());
    }
    assert_eq!(upstream.total_hits(), endpoints.len() + 1, "{:?}", upstream.request_log());
    assert!(metric(server.addr(), "gomodproxy_negative_hits") >= (STORM as u64 - 1) * endpoints.len() as u64);

    // Past the TTL the upstream is asked again, as often as the first time.
    std::thread::sleep(Duration::from_millis(3300));
    storm();
    let twice = upstream.counts();
    for (path, n) in &once {
        assert_eq!(twice.get(path), Some(&(2 * n)), "{path}: {:?}", upstream.request_log());
    }
}

#[test]
fn gone_stays_gone_and_failures_are_not_remembered() {
    let fx = fixture();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(opts(upstream.url(), "30s"));
    let gone = format!("/{}", artifact_path("example.com/gone", "v1.0.0", "mod"));
    let failing = format!("/{}", artifact_path("example.com/failing", "v1.0.0", "mod"));
    let mut b = UpstreamBehavior::default();
    b.status_override.insert(gone.clone(), 410);
    b.status_override.insert(failing.clone(), 500);
    upstream.set_behavior(b);
    for i in 1..=3 {
        assert_eq!(http_get(server.addr(), &gone).status, 410);
        assert_eq!(upstream.hits(&gone), 1);
        assert_eq!(http_get(server.addr(), &failing).status, 502);
        assert_eq!(upstream.hits(&failing), i, "a 5xx is a failure, not an answer: ask again");
    }
    // A module that exists is unaffected.
    let present = format!("/{}", artifact_path("example.com/present", "v1.0.0", "info"));
    assert_eq!(http_get(server.addr(), &present).status, 200);
}

#[test]
fn a_version_published_meanwhile_shows_up_after_the_ttl() {
    let fx = fixture();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(opts(upstream.url(), "1s"));
    let info = format!("/{}", artifact_path("example.com/present", "v1.1.0", "info"));
    assert_eq!(http_get(server.addr(), &info).status, 404);
    let later = Fixture::builder().module(Module::new("example.com/present", "v1.1.0")).build();
    let rel = artifact_path("example.com/present", "v1.1.0", "info");
    std::fs::write(fx.root().join(&rel), later.read(&rel)).unwrap();
    assert_eq!(http_get(server.addr(), &info).status, 404, "still remembered within the TTL");
    std::thread::sleep(Duration::from_millis(1300));
    let r = http_get(server.addr(), &info);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(upstream.hits(&info), 2);
}

#[test]
fn a_zero_ttl_disables_the_negative_cache() {
    let fx = fixture();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(opts(upstream.url(), "0"));
    let (asked, sent) = &missing_endpoints()[1];
    for i in 1..=3 {
        assert_eq!(http_get(server.addr(), asked).status, 404);
        assert_eq!(upstream.hits(sent), i);
    }
    assert_eq!(metric(server.addr(), "gomodproxy_negative_hits"), 0);
}
