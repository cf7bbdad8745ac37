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

#[test]
fn an_offline_purge_with_the_shared_store_deletes_the_fleets_copies_too() {
    let fx = Fixture::builder().module(Module::new(M, "v1.0.0")).module(Module::new(M, "v1.1.0")).build();
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let upstream = CountingUpstream::serve(fx.root());
    let mut opts = ServerOpts::new(upstream.url());
    opts.extra_args = ["--sumdb", "off", "--shared-store", &url].iter().map(|s| s.to_string()).collect();
    let mut server = Server::start_with(opts);
    let path = |v: &str, ext: &str| format!("/{}", artifact_path(M, v, ext));
    let object = |v: &str, ext: &str| bucket.path().join(artifact_path(M, v, ext));
    for v in ["v1.0.0", "v1.1.0"] {
        for ext in ["info", "mod", "zip"] {
            assert_eq!(http_get(server.addr(), &path(v, ext)).status, 200);
        }
    }
    assert!(wait_until(Duration::from_secs(10), || metric(server.addr(), "gomodproxy_shared_writes") == 6));
    server.stop();

    // A shared store that cannot be is refused before anything is purged.
    let mut cmd = Command::new(server_bin());
    cmd.args(["purge", "--shared-store", "ftp://x/y", "--data"]).arg(server.data_dir()).arg(format!("{M}@v1.0.0")).env("GOENV", "off");
    let refused = run_with_timeout(&mut cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("unknown scheme"), "{stderr}");

    let mut cmd = Command::new(server_bin());
    cmd.args(["purge", "--shared-store", &url, "--data"]).arg(server.data_dir()).arg(format!("{M}@v1.0.0")).env("GOENV", "off");
    let out = run_with_timeout(&mut cmd, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("purged 5 record(s)") && text.contains("the shared store accepted 3 delete(s)"), "{text}");
    for ext in ["info", "mod", "zip"] {
        assert!(!object("v1.0.0", ext).exists(), "{ext} left in the shared store");
        assert!(object("v1.1.0", ext).exists(), "{ext} of the other version kept");
    }
    // Fetched afresh from the upstream, not read back from the shared store.
    server.start_again();
    for ext in ["info", "mod", "zip"] {
        let r = http_get(server.addr(), &path("v1.0.0", ext));
        assert_eq!((r.status, r.body == fx.artifact(M, "v1.0.0", ext)), (200, true), "{ext}");
        assert_eq!(upstream.hits(&path("v1.0.0", ext)), 2, "{ext} fetched afresh");
        assert_eq!(upstream.hits(&path("v1.1.0", ext)), 1, "{ext} of the other version untouched");
    }
    assert_eq!(metric(server.addr(), "gomodproxy_shared_hits"), 0);
}
