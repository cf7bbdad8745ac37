//! Dependency-graph prefetch (`--prefetch`, on by default): an unpruned
//! (pre-1.17) go.mod a client is served has the `.mod` and `.info` of what
//! it requires fetched ahead of the client, one level deep, each once (the
//! client's own request for one joins or finds it); a pruned go.mod, or
//! prefetch off, fetches nothing more; a failing upstream pauses it; the go
//! command's `go mod download all` through it computes the same go.sum as
//! straight from the fixture.

mod common;

use common::*;

use std::collections::HashMap;
use std::time::Duration;

const V: &str = "v1.0.0";

/// A graph whose go.mods all say `go {go}` (1.16: unpruned, the go
/// command loads every go.mod in it; 1.21: pruned, it reads a
/// dependency's requirements' go.mods only on demand): r -> a0..a3;
/// ai -> bi and s (a0 asks s v1.0.0, the others v1.1.0); bi -> ci.
fn graph(go: &str) -> Fixture {
    let unpruned = |m: Module| Module { go_directive: Some(go.into()), ..m };
    let mut b = Fixture::builder();
    let mut r = Module::new("example.com/g/r", V);
    for i in 0..4 {
        r = r.require(&format!("example.com/g/a{i}"), V);
        let s = if i == 0 { "v1.0.0" } else { "v1.1.0" };
        b = b
            .module(unpruned(
                Module::new(&format!("example.com/g/a{i}"), V).require(&format!("example.com/g/b{i}"), V).require("example.com/g/s", s),
            ))
            .module(unpruned(Module::new(&format!("example.com/g/b{i}"), V).require(&format!("example.com/g/c{i}"), V)))
            .module(unpruned(Module::new(&format!("example.com/g/c{i}"), V)));
    }
    b.module(unpruned(r))
        .module(unpruned(Module::new("example.com/g/s", "v1.0.0")))
        .module(unpruned(Module::new("example.com/g/s", "v1.1.0")))
        .build()
}

fn path(m: &str, ext: &str) -> String {
    format!("/{}", artifact_path(m, V, ext))
}

fn main_module() -> MainModule {
    MainModule {
        path: "corp.example/prefetch/app".into(),
        requires: vec![("example.com/g/r".into(), V.into())],
        imports: vec!["example.com/g/r".into()],
    }
}

#[test]
fn go_mod_download_all_through_prefetch_fetches_every_file_once_and_hashes_as_direct() {
    let fx = graph("1.16");
    let direct = GoEnv::new(fx.file_url());
    direct.write_main_module(&main_module());
    direct.run(&["mod", "download", "all"]);

    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start(&upstream.url());
    let env = GoEnv::new(server.url());
    env.write_main_module(&main_module());
    env.run(&["mod", "download", "all"]);
    assert_eq!(env.go_sum_lines(), direct.go_sum_lines(), "go.sum through the prefetching proxy differs from the fixture's");
    assert_eq!(env.read_file("go.mod"), direct.read_file("go.mod"));

    // Prefetch and the go command asked for the same files at once: the
    // single flight (and the store) gave the upstream each of them once.
    assert!(metric(server.addr(), "gomodproxy_prefetch_queued") > 0, "the graph's go.mods queued their requirements");
    quiet(&upstream);
    let twice: HashMap<String, usize> = upstream.counts().into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "fetched more than once: {twice:?}");
}

/// Waits (bounded) until the upstream has been asked nothing new for a
/// while: prefetches still under way after the go command finished land.
fn quiet(upstream: &CountingUpstream) {
    let mut last = upstream.total_hits();
    wait_until(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(300));
        let now = upstream.total_hits();
        std::mem::replace(&mut last, now) == now
    });
}

#[test]
fn an_unpruned_go_mod_prefetches_one_level_and_a_prefetched_one_the_next_once_a_client_reads_it() {
    let fx = graph("1.16");
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start(&upstream.url());
    assert_eq!(http_get(server.addr(), &path("example.com/g/r", "mod")).status, 200);

    // r's requirements, both files, fetched with no client asking.
    let level1: Vec<String> = (0..4).flat_map(|i| ["mod", "info"].map(|ext| path(&format!("example.com/g/a{i}"), ext))).collect();
    assert!(
        wait_until(Duration::from_secs(10), || level1.iter().all(|p| upstream.hits(p) == 1)),
        "not prefetched: {:?}",
        upstream.counts()
    );
    assert!(wait_until(Duration::from_secs(10), || metric(server.addr(), "gomodproxy_prefetch_fetched") >= 8));
    assert_eq!(upstream.hits_where(|p| p.ends_with(".zip")), 0, "never a zip");
    // One level: nobody read a0's go.mod yet.
    assert_eq!(upstream.hits(&path("example.com/g/b0", "mod")), 0, "prefetch followed a go.mod only it fetched");

    // A client reads a prefetched go.mod: served from the store, and what
    // it requires is prefetched now.
    let hits = metric(server.addr(), "gomodproxy_hits");
    let a0 = http_get(server.addr(), &path("example.com/g/a0", "mod"));
    assert_eq!(a0.status, 200);
    assert!(a0.body == fx.artifact("example.com/g/a0", V, "mod"), "the prefetched bytes are the upstream's");
    assert_eq!(upstream.hits(&path("example.com/g/a0", "mod")), 1, "the prefetched copy was served");
    assert!(metric(server.addr(), "gomodproxy_hits") > hits);
    let level2 = [path("example.com/g/b0", "mod"), path("example.com/g/b0", "info"), "/example.com/g/s/@v/v1.0.0.mod".to_string()];
    assert!(
        wait_until(Duration::from_secs(10), || level2.iter().all(|p| upstream.hits(p) == 1)),
        "a0's requirements not prefetched: {:?}",
        upstream.counts()
    );
    // What prefetch stored is never asked of the upstream again.
    for p in level1.iter().chain(&level2) {
        assert_eq!(http_get(server.addr(), p).status, 200, "{p}");
    }
    quiet(&upstream);
    for p in level1.iter().chain(&level2) {
        assert_eq!(upstream.hits(p), 1, "{p}: {:?}", upstream.counts());
    }
}

#[test]
fn a_pruned_go_mod_is_left_to_the_client() {
    // go 1.17+: the go command reads what it requires on demand, for the
    // versions it selects, so nothing is guessed for it.
    let fx = graph("1.21");
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start(&upstream.url());
    assert_eq!(http_get(server.addr(), &path("example.com/g/r", "mod")).status, 200);
    // Queueing happens before the answer is sent: nothing was.
    assert_eq!(metric(server.addr(), "gomodproxy_prefetch_queued"), 0);
    assert_eq!(upstream.request_log(), [format!("GET {}", path("example.com/g/r", "mod"))]);
}

#[test]
fn with_prefetch_off_only_what_clients_ask_is_fetched() {
    let fx = graph("1.16");
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(ServerOpts { extra_args: vec!["--prefetch".into(), "off".into()], ..ServerOpts::new(upstream.url()) });
    let r = http_get(server.addr(), &path("example.com/g/r", "mod"));
    assert_eq!(r.status, 200);
    // Queueing happens before the answer is sent: nothing was.
    assert_eq!(metric(server.addr(), "gomodproxy_prefetch_queued"), 0);
    assert_eq!(upstream.request_log(), [format!("GET {}", path("example.com/g/r", "mod"))]);
}

#[test]
fn a_failing_upstream_pauses_prefetch_and_clients_still_get_answers() {
    // r requires 40 modules whose files the upstream fails (503).
    let mut b = Fixture::builder();
    let mut r = Module::new("example.com/f/r", V);
    for i in 0..40 {
        let m = format!("example.com/f/d{i}");
        r = r.require(&m, V);
        b = b.module(Module::new(&m, V));
    }
    // Unpruned (go 1.16): what it requires is prefetched.
    let fx = b.module(Module { go_directive: Some("1.16".into()), ..r }).build();
    let upstream = CountingUpstream::serve(fx.root());
    let failing: HashMap<String, u16> =
        (0..40).flat_map(|i| ["mod", "info"].map(|ext| (path(&format!("example.com/f/d{i}"), ext), 503))).collect();
    upstream.set_behavior(UpstreamBehavior { status_override: failing, ..Default::default() });
    // No breaker: the pause alone must stop it.
    let server = Server::start_with(ServerOpts {
        extra_args: vec!["--breaker-failures".into(), "0".into(), "--upstream-retries".into(), "0".into()],
        ..ServerOpts::new(upstream.url())
    });
    assert_eq!(http_get(server.addr(), &path("example.com/f/r", "mod")).status, 200);
    assert!(wait_until(Duration::from_secs(10), || metric(server.addr(), "gomodproxy_prefetch_pauses") >= 1), "prefetch never paused");
    assert!(server.wait_for_log(Duration::from_secs(5), |l| l.contains("prefetch paused")));
    // Each of one core's workers (--fetch-concurrency 64: 16) had at most
    // one prefetch under way when the first failure paused it, of 80.
    let asked = || upstream.hits_where(|p| p.starts_with("/example.com/f/d"));
    wait_until(Duration::from_secs(2), || metric(server.addr(), "gomodproxy_prefetch_dropped") > 0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(asked() <= 16, "prefetch went on against a failing upstream: {} requests", asked());
    // A client's own request is not paused: it gets the upstream's failure.
    let d = http_get(server.addr(), &path("example.com/f/d7", "info"));
    assert_eq!(d.status, 502, "{}", d.body_str());
}
