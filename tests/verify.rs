//! `gomodproxy verify --data DIR` audits a stopped store: a flipped byte in
//! a stored zip is found, named and quarantined (never served again,
//! fetched afresh on its next request); a module file whose bytes no longer
//! match what the checksum database records is found too. And the hash a
//! version's files had at their first download is kept: bytes fetched
//! again later (here after a quarantine; a moved tag or a replaced private
//! upstream in life) must hash the same, or they are refused.

mod common;

use common::*;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const PUBLIC: (&str, &str) = ("example.com/pub", "v1.0.0");
const PRIVATE: (&str, &str) = ("corp.example/lib", "v0.3.0");

fn verify(data: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(server_bin());
    cmd.arg("verify").arg("--data").arg(data).args(extra).env("GOENV", "off").env("GOSUMDB", "off");
    run_with_timeout(&mut cmd, Duration::from_secs(60))
}

/// Flips one byte in the middle of the first copy of `needle` in the store's segments.
fn flip_stored_byte(data: &Path, needle: &[u8]) {
    for entry in std::fs::read_dir(data.join("segments")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at + needle.len() / 2] ^= 0x20;
            std::fs::write(&path, bytes).unwrap();
            return;
        }
    }
    panic!("the blob is in no segment");
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn verify_finds_a_flipped_byte_quarantines_it_and_the_next_request_fetches_it_afresh() {
    let fx = Fixture::builder().module(Module::new(PUBLIC.0, PUBLIC.1)).build();
    let upstream = CountingUpstream::serve(fx.root());
    let mut server = Server::start(&upstream.url());
    let zip_path = format!("/{}", artifact_path(PUBLIC.0, PUBLIC.1, "zip"));
    let zip = fx.artifact(PUBLIC.0, PUBLIC.1, "zip");
    for ext in ["info", "mod", "zip"] {
        assert_eq!(http_get(server.addr(), &format!("/{}", artifact_path(PUBLIC.0, PUBLIC.1, ext))).status, 200, "{ext}");
    }

    // Beside a running server, verify refuses to touch the store.
    let busy = verify(server.data_dir(), &["--upstream", &upstream.url()]);
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use"), "{}", String::from_utf8_lossy(&busy.stderr));

    server.stop();
    let clean = verify(server.data_dir(), &["--upstream", &upstream.url()]);
    assert!(clean.status.success(), "{}", stdout(&clean));
    assert!(stdout(&clean).contains("verified 5 blob(s): 2 module file(s) against their first download's hash"), "{}", stdout(&clean));

    flip_stored_byte(server.data_dir(), &zip);
    let found = verify(server.data_dir(), &["--upstream", &upstream.url()]);
    assert_eq!(found.status.code(), Some(1), "{}", stdout(&found));
    let report = stdout(&found);
    assert!(report.contains(&format!("BAD {}@{} (.zip)", PUBLIC.0, PUBLIC.1)) && report.contains("SHA-256"), "{report}");
    assert!(report.contains("quarantined 1 blob(s)"), "{report}");
    let again = verify(server.data_dir(), &["--upstream", &upstream.url()]);
    assert!(again.status.success(), "quarantined, so gone: {}", stdout(&again));

    // Never served again: the next request fetches the zip afresh, and it
    // hashes as its first download did.
    server.start_again();
    let r = http_get(server.addr(), &zip_path);
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(r.body == zip, "the upstream's bytes, not the flipped ones");
    assert_eq!(upstream.hits(&zip_path), 2);
    assert!(
        server.own_log_line(Duration::from_secs(5), |l| l.contains("store recovered")).is_some_and(|l| l.contains("1 withdrawn")),
        "{:?}",
        server.log_lines()
    );
}

#[test]
fn a_private_version_whose_bytes_change_after_its_first_download_is_refused() {
    let fx = Fixture::builder().module(Module::new(PRIVATE.0, PRIVATE.1)).build();
    let moved = Fixture::builder().module(Module::new(PRIVATE.0, PRIVATE.1).file("moved.go", "package lib\n\n// The tag moved.\n")).build();
    let zip_path = format!("/{}", artifact_path(PRIVATE.0, PRIVATE.1, "zip"));
    let original = fx.artifact(PRIVATE.0, PRIVATE.1, "zip");
    let public = CountingUpstream::serve(fx.root());
    let mut o = ServerOpts::new(public.url());
    o.extra_args = ["--private", "corp.example", "--private-upstream", &fx.file_url(), "--negative-ttl", "0"].map(String::from).to_vec();
    let mut server = Server::start_with(o);
    assert_eq!(http_get(server.addr(), &zip_path).status, 200);

    // The zip goes (quarantined), and the private upstream's tag moves.
    // (A first audit seals the segment the server left open: a bad record
    // in an open segment is a torn tail, cut at start-up.)
    server.stop();
    assert!(verify(server.data_dir(), &["--upstream", &public.url()]).status.success());
    flip_stored_byte(server.data_dir(), &original);
    let audit = verify(server.data_dir(), &["--upstream", &public.url()]);
    assert_eq!(audit.status.code(), Some(1), "{}\n{}", stdout(&audit), String::from_utf8_lossy(&audit.stderr));
    let on_disk = fx.root().join(artifact_path(PRIVATE.0, PRIVATE.1, "zip"));
    std::fs::write(&on_disk, moved.artifact(PRIVATE.0, PRIVATE.1, "zip")).unwrap();

    server.start_again();
    let r = http_get(server.addr(), &zip_path);
    assert_eq!(r.status, 410, "{}", r.body_str());
    let body = r.body_str();
    let first = gomodproxy::gomod::dirhash::hash_zip(&original).unwrap();
    let now = gomodproxy::gomod::dirhash::hash_zip(&moved.artifact(PRIVATE.0, PRIVATE.1, "zip")).unwrap();
    assert!(body.contains(&first) && body.contains(&now) && body.contains("first download"), "{body}");
    assert!(metric(server.addr(), "gomodproxy_checksum_mismatches") >= 1);
    assert!(public.total_hits() == 0, "a private module never reaches the public upstream: {:?}", public.request_log());

    // The tag moved back: served again.
    std::fs::write(&on_disk, &original).unwrap();
    let r = http_get(server.addr(), &zip_path);
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(r.body == original);
}

#[test]
fn verify_checks_public_modules_against_the_checksum_database() {
    let fx = Fixture::builder().module(Module::new(PUBLIC.0, PUBLIC.1)).build();
    // The database records another zip hash than the module has: stored
    // while no database was checked, caught by the audit.
    let db = SignedDb::write(fx.root(), &[&format!("{}@{}=tamper", PUBLIC.0, PUBLIC.1)]);
    let upstream = CountingUpstream::serve(fx.root());
    let mut server = Server::start(&upstream.url());
    for ext in ["mod", "zip"] {
        assert_eq!(http_get(server.addr(), &format!("/{}", artifact_path(PUBLIC.0, PUBLIC.1, ext))).status, 200, "{ext}");
    }
    server.stop();
    let out = verify(server.data_dir(), &["--upstream", &upstream.url(), "--sumdb", &db.key]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = stdout(&out);
    assert!(report.contains(&format!("BAD {}@{} (.zip)", PUBLIC.0, PUBLIC.1)), "{report}");
    assert!(report.contains(&format!("checksum database {SUMDB_NAME} records")), "{report}");
    assert!(!report.contains("(.mod)"), "the go.mod matches its record: {report}");
    assert!(report.contains("2 against the checksum database"), "{report}");
}

/// A zip stored while no database was checked, from a poisoned upstream:
/// the audit against the database quarantines it together with the hash
/// its bad first download left, so that once the upstream is fixed the
/// database-verified bytes are stored.
#[test]
fn a_quarantine_by_the_database_lets_the_verified_bytes_in_afterwards() {
    let fx = Fixture::builder().module(Module::new(PUBLIC.0, PUBLIC.1)).build();
    let db = SignedDb::write(fx.root(), &[&format!("{}@{}", PUBLIC.0, PUBLIC.1)]);
    let zip_file = fx.root().join(artifact_path(PUBLIC.0, PUBLIC.1, "zip"));
    let good = std::fs::read(&zip_file).unwrap();
    let poisoned = Fixture::builder().module(Module::new(PUBLIC.0, PUBLIC.1).file("evil.go", "package pub\n")).build();
    std::fs::write(&zip_file, poisoned.artifact(PUBLIC.0, PUBLIC.1, "zip")).unwrap();

    let upstream = CountingUpstream::serve(fx.root());
    let mut server = Server::start(&upstream.url());
    let zip_path = format!("/{}", artifact_path(PUBLIC.0, PUBLIC.1, "zip"));
    assert_eq!(http_get(server.addr(), &zip_path).status, 200, "stored unchecked: no database");
    server.stop();
    std::fs::write(&zip_file, &good).unwrap();

    let out = verify(server.data_dir(), &["--upstream", &upstream.url(), "--sumdb", &db.key]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains(&format!("checksum database {SUMDB_NAME} records")), "{}", stdout(&out));

    server.restart_with(|o| o.extra_args.extend(["--sumdb".to_string(), db.key.clone()]));
    let r = http_get(server.addr(), &zip_path);
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(r.body == good, "the verified bytes");
}
