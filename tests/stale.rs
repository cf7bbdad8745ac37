//! `list` and `@latest` are cached for `--list-ttl`; once stale they are
//! refreshed from the upstream, and when the upstream fails the stale copy
//! is served instead of failing a CI build (stale-if-error). A 404 is an
//! answer, not a failure, and a never-seen module cannot be made up.

mod common;

use common::*;

use std::time::Duration;

fn fixture() -> Fixture {
    Fixture::builder().module(Module::new("example.com/stale", "v1.0.0")).module(Module::new("example.com/stale", "v1.1.0")).build()
}

#[test]
fn stale_list_and_latest_are_served_when_the_upstream_is_gone() {
    let fx = fixture();
    let mut upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(ServerOpts { list_ttl: Some(1), ..ServerOpts::new(upstream.url()) });
    let list = format!("/{}", list_path("example.com/stale"));
    let latest = format!("/{}", latest_path("example.com/stale"));

    let fresh_list = http_get(server.addr(), &list);
    let fresh_latest = http_get(server.addr(), &latest);
    assert_eq!(fresh_list.status, 200);
    assert_eq!(fresh_latest.status, 200);
    assert!(fresh_latest.body_str().contains("v1.1.0"), "{}", fresh_latest.body_str());

    // Within the TTL the cache answers: the upstream sees no second request.
    let before = upstream.hits(&list);
    assert_eq!(http_get(server.addr(), &list).body, fresh_list.body);
    assert_eq!(upstream.hits(&list), before, "a fresh list must come from the cache");

    upstream.shutdown();
    // Let the TTL pass (this sleep decides *when* we ask, not what we assert).
    std::thread::sleep(Duration::from_millis(1300));

    let stale_list = http_get(server.addr(), &list);
    let stale_latest = http_get(server.addr(), &latest);
    assert_eq!(stale_list.status, 200, "stale list must be served: {}", stale_list.body_str());
    assert_eq!(stale_list.body, fresh_list.body);
    assert_eq!(stale_latest.status, 200, "stale @latest must be served: {}", stale_latest.body_str());
    assert_eq!(stale_latest.body, fresh_latest.body);
    assert!(metric(server.addr(), "gomodproxy_stale_served") >= 2);

    // Nothing was ever cached for this module: the upstream failure shows.
    let unknown = http_get(server.addr(), &format!("/{}", list_path("example.com/never-seen")));
    assert!(matches!(unknown.status, 502 | 504), "upstream down and nothing cached: {unknown:?}");
}

#[test]
fn an_expired_list_is_refreshed_from_the_upstream() {
    let fx = fixture();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(ServerOpts { list_ttl: Some(1), ..ServerOpts::new(upstream.url()) });
    let list = format!("/{}", list_path("example.com/stale"));
    assert_eq!(http_get(server.addr(), &list).status, 200);
    let before = upstream.hits(&list);
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(http_get(server.addr(), &list).status, 200);
    assert_eq!(upstream.hits(&list), before + 1, "past the TTL the list is fetched again");
}

#[test]
fn stale_list_and_latest_survive_a_restart_with_the_upstream_down() {
    let fx = fixture();
    let mut upstream = CountingUpstream::serve(fx.root());
    let mut server = Server::start_with(ServerOpts { list_ttl: Some(1), ..ServerOpts::new(upstream.url()) });
    let list = format!("/{}", list_path("example.com/stale"));
    let latest = format!("/{}", latest_path("example.com/stale"));
    let (fresh_list, fresh_latest) = (http_get(server.addr(), &list), http_get(server.addr(), &latest));
    assert_eq!((fresh_list.status, fresh_latest.status), (200, 200));

    upstream.shutdown();
    server.restart();
    // Let the TTL pass (this sleep decides *when* we ask, not what we assert).
    std::thread::sleep(Duration::from_millis(1300));
    let (stale_list, stale_latest) = (http_get(server.addr(), &list), http_get(server.addr(), &latest));
    assert_eq!(stale_list.status, 200, "{}", stale_list.body_str());
    assert_eq!(stale_list.body, fresh_list.body);
    assert_eq!(stale_latest.status, 200, "{}", stale_latest.body_str());
    assert_eq!(stale_latest.body, fresh_latest.body);
    assert!(metric(server.addr(), "gomodproxy_stale_served") >= 2);
}

#[test]
fn the_last_answer_to_a_query_survives_a_restart_with_the_upstream_down() {
    let fx = fixture();
    // The upstream resolves the branch to the newest version.
    let query = "/example.com/stale/@v/master.info";
    std::fs::write(fx.root().join(&query[1..]), fx.artifact("example.com/stale", "v1.1.0", "info")).unwrap();
    let mut upstream = CountingUpstream::serve(fx.root());
    let mut server = Server::start(&upstream.url());
    let fresh = http_get(server.addr(), query);
    assert_eq!(fresh.status, 200, "{}", fresh.body_str());
    let again = http_get(server.addr(), query);
    assert_eq!((again.body == fresh.body, upstream.hits(query)), (true, 2), "a query is resolved afresh every time");

    upstream.shutdown();
    server.restart();
    let stale = http_get(server.addr(), query);
    assert_eq!(stale.status, 200, "the last good answer, kept in the store: {}", stale.body_str());
    assert_eq!(stale.body, fresh.body);
    assert!(metric(server.addr(), "gomodproxy_stale_served") >= 1);
    // A query never answered has no reserve.
    let never = http_get(server.addr(), "/example.com/stale/@v/develop.info");
    assert!(never.status >= 500, "{}", never.body_str());
}

/// The segment files in `data/segments` now (not their index snapshots).
fn segment_files(data: &std::path::Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(data.join("segments"))
        .expect("segments dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|name| name.to_string_lossy().ends_with(".seg"))
        .collect()
}

#[test]
fn stale_list_latest_and_query_outlive_the_eviction_of_their_segments_and_a_restart() {
    const FILLS: usize = 40;
    let mut builder =
        Fixture::builder().module(Module::new("example.com/stale", "v1.0.0")).module(Module::new("example.com/stale", "v1.1.0"));
    for i in 0..FILLS {
        builder = builder.module(
            Module::new(&format!("example.com/evict{i}"), "v1.0.0").file("data.bin", pseudo_random_bytes(600_000, i as u64)).stored(),
        );
    }
    let fx = builder.build();
    let query = "/example.com/stale/@v/master.info";
    std::fs::write(fx.root().join(&query[1..]), fx.artifact("example.com/stale", "v1.1.0", "info")).unwrap();
    let mut upstream = CountingUpstream::serve(fx.root());
    let mut server = Server::start_with(ServerOpts {
        list_ttl: Some(1),
        extra_args: vec!["--max-store-size".into(), "16MiB".into(), "--segment-size".into(), "1MiB".into()],
        ..ServerOpts::new(upstream.url())
    });
    let list = format!("/{}", list_path("example.com/stale"));
    let latest = format!("/{}", latest_path("example.com/stale"));
    let fresh: Vec<_> = [&list, &latest, query].iter().map(|p| http_get(server.addr(), p)).collect();
    assert!(fresh.iter().all(|r| r.status == 200), "{:?}", fresh.iter().map(|r| r.body_str()).collect::<Vec<_>>());

    // Distinct fills until every segment that held the answers is evicted
    // (about 24 MiB of zips through a 16 MiB bound); nobody asks for the
    // answers meanwhile, so nothing marks them as served.
    let before = segment_files(server.data_dir());
    for i in 0..FILLS {
        let m = format!("example.com/evict{i}");
        assert_eq!(http_get(server.addr(), &format!("/{}", artifact_path(&m, "v1.0.0", "zip"))).status, 200, "{m}");
    }
    let now = segment_files(server.data_dir());
    assert!(before.iter().all(|s| !now.contains(s)), "every segment of before {before:?} is evicted: {now:?}");
    assert!(metric(server.addr(), "gomodproxy_segments_evicted") >= before.len() as u64);

    upstream.shutdown();
    server.restart();
    // Let the TTL pass (this sleep decides *when* we ask, not what we assert).
    std::thread::sleep(Duration::from_millis(1300));
    for (path, fresh) in [&list, &latest, &query.to_string()].iter().zip(&fresh) {
        let stale = http_get(server.addr(), path);
        assert_eq!(stale.status, 200, "{path}: {}", stale.body_str());
        assert_eq!(stale.body, fresh.body, "{path}");
    }
    assert!(metric(server.addr(), "gomodproxy_stale_served") >= 3);
}
