//! What an upstream's refusal becomes: its own 4xx and reason are relayed
//! (a 403 "not available" is an answer, not a failure), refused
//! credentials (401) are this proxy's configuration failing (502), and a
//! 5xx stays a 502.

mod common;

use common::*;
use std::time::Duration;

use std::collections::HashMap;

#[test]
fn an_upstreams_4xx_is_relayed_with_its_reason_and_its_failures_stay_502() {
    let fx = Fixture::builder().module(Module::new("example.com/status", "v1.0.0")).build();
    let upstream = CountingUpstream::serve(fx.root());
    let path = |v: &str| format!("/{}", artifact_path("example.com/status", v, "info"));
    let overrides = HashMap::from([(path("v1.0.1"), 403), (path("v1.0.2"), 451), (path("v1.0.3"), 401), (path("v1.0.4"), 500)]);
    upstream.set_behavior(UpstreamBehavior { status_override: overrides, ..Default::default() });
    let mut opts = ServerOpts::new(upstream.url());
    opts.extra_args = vec!["--upstream-retries".into(), "0".into(), "--breaker-failures".into(), "0".into()];
    let server = Server::start_with(opts);
    for (v, status) in [("v1.0.1", 403), ("v1.0.2", 451), ("v1.0.3", 502), ("v1.0.4", 502)] {
        let r = http_get(server.addr(), &path(v));
        assert_eq!(r.status, status, "{v}: {}", r.body_str());
        if status < 500 {
            assert!(r.body_str().contains("injected failure"), "{v}: the upstream's reason relayed: {}", r.body_str());
        }
    }
    assert_eq!(http_get(server.addr(), &path("v1.0.0")).status, 200);
}

#[test]
fn a_file_upstreams_errors_never_show_clients_its_directory() {
    let fx = Fixture::builder().module(Module::new("example.com/local", "v1.0.0")).build();
    // A .mod larger than any go.mod may be (sparse: no bytes written).
    let huge = fx.root().join("example.com/local/@v/v1.0.1.mod");
    std::fs::File::create(&huge).unwrap().set_len(64 << 20).unwrap();
    let server = Server::start(&fx.file_url());
    let dir = fx.root().display().to_string();
    for (target, status) in [
        (format!("/{}", artifact_path("example.com/local", "v1.0.1", "mod")), 502),
        (format!("/{}", artifact_path("example.com/absent", "v1.0.0", "mod")), 404),
    ] {
        let r = http_get(server.addr(), &target);
        assert_eq!(r.status, status, "{target}: {}", r.body_str());
        assert!(!r.body_str().contains(&dir), "{target}: the body names the directory: {}", r.body_str());
    }
    assert!(server.wait_for_log(Duration::from_secs(5), |l| l.contains(&dir)), "the log names it");
}
