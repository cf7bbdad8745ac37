//! `gomodproxy purge --data DIR MODULE[@VERSION]` on a stopped store: the
//! version (or the whole module) is withdrawn for good, across restarts,
//! and fetched afresh on its next request; nothing else is touched.

mod common;

use common::*;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const M: &str = "example.com/purged";

fn purge(data: &Path, target: &str) -> Output {
    let mut cmd = Command::new(server_bin());
    cmd.arg("purge").arg("--data").arg(data).arg(target).env("GOENV", "off");
    run_with_timeout(&mut cmd, Duration::from_secs(30))
}

#[test]
fn a_purged_version_is_fetched_afresh_and_stays_purged_across_restarts() {
    let fx = Fixture::builder().module(Module::new(M, "v1.0.0")).module(Module::new(M, "v1.1.0")).build();
    let upstream = CountingUpstream::serve(fx.root());
    let mut server = Server::start(&upstream.url());
    let path = |v: &str, ext: &str| format!("/{}", artifact_path(M, v, ext));
    let list = format!("/{}", list_path(M));
    for v in ["v1.0.0", "v1.1.0"] {
        for ext in ["info", "mod", "zip"] {
            assert_eq!(http_get(server.addr(), &path(v, ext)).status, 200);
        }
    }
    assert_eq!(http_get(server.addr(), &list).status, 200);
    server.stop();

    let out = purge(server.data_dir(), &format!("{M}@v1.0.0"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("purged 5 record(s)"), "info, mod, zip and two kept hashes: {text}");
    // Restarted twice: the tombstones outlive a restart.
    server.start_again();
    server.restart();
    for ext in ["info", "mod", "zip"] {
        let r = http_get(server.addr(), &path("v1.0.0", ext));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, fx.artifact(M, "v1.0.0", ext));
        assert_eq!(upstream.hits(&path("v1.0.0", ext)), 2, "{ext} fetched afresh");
        assert_eq!(upstream.hits(&path("v1.1.0", ext)), 1, "{ext} of the other version untouched");
    }

    // The whole module: its list too.
    server.stop();
    let out = purge(server.data_dir(), M);
    assert!(out.status.success());
    server.start_again();
    assert_eq!(http_get(server.addr(), &path("v1.1.0", "zip")).status, 200);
    assert_eq!(upstream.hits(&path("v1.1.0", "zip")), 2);
    assert_eq!(http_get(server.addr(), &list).status, 200);
    assert_eq!(upstream.hits(&list), 2, "the list fetched afresh too");

    // Beside a running server, or for something that is no module path, it refuses.
    assert!(!purge(server.data_dir(), M).status.success(), "the store is locked");
    server.stop();
    let bad = purge(server.data_dir(), "../etc@v1");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("../etc"), "{}", String::from_utf8_lossy(&bad.stderr));
}
