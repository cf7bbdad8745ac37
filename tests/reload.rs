//! SIGHUP reloads the configuration while the server runs: the next miss
//! goes to the new upstream list while a zip streamed from the old one
//! completes; a broken configuration is refused with a log line and
//! changes nothing.

mod common;

use common::*;

use std::time::Duration;

const BIG: &str = "example.com/reload/big";
const SMALL: &str = "example.com/reload/small";

fn hup(server: &Server) {
    let pid = server.pid().expect("running") as libc::pid_t;
    // SAFETY: a signal to the child process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
}

fn write_config(path: &std::path::Path, upstream: &str) {
    std::fs::write(path, format!("upstream = \"{upstream}\"\nsumdb = \"off\"\n")).unwrap();
}

#[test]
fn sighup_switches_upstreams_for_the_next_miss_and_a_broken_config_changes_nothing() {
    let fx = Fixture::builder()
        .module(Module::new(BIG, "v1.0.0").file("data.bin", pseudo_random_bytes(4 << 20, 5)).stored())
        .module(Module::new(SMALL, "v1.0.0"))
        .module(Module::new(SMALL, "v1.1.0"))
        .module(Module::new(SMALL, "v1.2.0"))
        .build();
    let (old, new) = (CountingUpstream::serve(fx.root()), CountingUpstream::serve(fx.root()));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gomodproxy.toml");
    write_config(&config, &old.url());
    let mut opts = ServerOpts::new("");
    opts.extra_args = vec!["--config".into(), config.display().to_string()];
    let server = Server::start_with(opts);
    let path = |m: &str, v: &str, ext: &str| format!("/{}", artifact_path(m, v, ext));
    assert_eq!(http_get(server.addr(), &path(SMALL, "v1.0.0", "info")).status, 200);
    assert_eq!(old.hits(&path(SMALL, "v1.0.0", "info")), 1);

    // A zip streamed from the old upstream, held half-way.
    old.set_behavior(UpstreamBehavior { zip_pause_at: Some(1 << 20), ..Default::default() });
    old.hold_zips();
    let addr = server.addr();
    let zip = path(BIG, "v1.0.0", "zip");
    let streamed = std::thread::spawn(move || http_get(addr, &zip));
    assert!(old.wait_for_zip_bytes(1 << 20, Duration::from_secs(20)), "the zip's fill started");

    write_config(&config, &new.url());
    hup(&server);
    assert!(server.wait_for_log(Duration::from_secs(10), |l| l.contains("configuration reloaded")), "no reload logged");
    assert_eq!(http_get(server.addr(), &path(SMALL, "v1.1.0", "info")).status, 200);
    assert_eq!(new.hits(&path(SMALL, "v1.1.0", "info")), 1, "the next miss goes to the new upstream");
    assert_eq!(old.hits(&path(SMALL, "v1.1.0", "info")), 0);

    // The fill in flight is the old upstream's to finish.
    old.release_zips();
    let r = streamed.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == fx.artifact(BIG, "v1.0.0", "zip"), "the streamed zip arrived whole");
    assert_eq!(new.hits(&path(BIG, "v1.0.0", "zip")), 0);

    // Broken: refused, named in the log; the running configuration stays.
    for broken in ["upstream = \"file:///does/not/exist\"\n", "upstream = [\n", "list_tll = \"5s\"\n"] {
        std::fs::write(&config, broken).unwrap();
        let before = server.log_lines().len();
        hup(&server);
        assert!(
            wait_until(Duration::from_secs(10), || server.log_lines()[before..].iter().any(|l| l.contains("new configuration is refused"))),
            "{broken:?}: no refusal logged"
        );
        assert!(server.log_lines()[before..].iter().all(|l| !l.contains("configuration reloaded")), "{broken:?} was taken");
    }
    assert!(server.log_lines().iter().any(|l| l.contains("refused") && l.contains("/does/not/exist")), "the error is named");
    assert_eq!(http_get(server.addr(), &path(SMALL, "v1.2.0", "info")).status, 200);
    assert_eq!(new.hits(&path(SMALL, "v1.2.0", "info")), 1, "still the new upstream");
    assert_eq!(old.hits(&path(SMALL, "v1.2.0", "info")), 0);
}

#[test]
fn sighup_reloads_a_node_with_a_shared_store_and_its_threads_never_take_the_signal() {
    // The shared tier's client threads start before the executors: the
    // signal must still reach only the signal thread (a HUP delivered to one
    // of them would end the process).
    let fx = Fixture::builder().module(Module::new(SMALL, "v1.0.0")).build();
    let bucket = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gomodproxy.toml");
    std::fs::write(
        &config,
        format!("upstream = \"{}\"\nsumdb = \"off\"\nshared_store = \"file://{}\"\n", fx.file_url(), bucket.path().display()),
    )
    .unwrap();
    let mut opts = ServerOpts::new("");
    opts.extra_args = vec!["--config".into(), config.display().to_string()];
    let mut server = Server::start_with(opts);
    for round in 1..=3 {
        hup(&server);
        assert!(
            wait_until(Duration::from_secs(10), || server.log_lines().iter().filter(|l| l.contains("configuration reloaded")).count()
                == round),
            "reload {round} not logged"
        );
        assert!(server.is_running(), "the HUP ended the process");
    }
    assert_eq!(http_get(server.addr(), &format!("/{}", artifact_path(SMALL, "v1.0.0", "mod"))).status, 200);
}
