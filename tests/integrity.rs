//! The store's integrity promise when the disk lies: bytes changed on
//! disk inside a sealed segment, a damaged header in the middle of one,
//! and a segment file cut while the server runs. In every case no client
//! gets a 200 with bytes other than the upstream's; the damaged blob is
//! quarantined and fetched afresh, and nothing undamaged is lost.

mod common;

use common::*;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn segments(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(data.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// The segment file and offset where `needle` (a stored payload) starts.
fn find_payload(data: &Path, needle: &[u8]) -> (PathBuf, u64) {
    for seg in segments(data) {
        let bytes = fs::read(&seg).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            return (seg, at as u64);
        }
    }
    panic!("payload of {} bytes not found in any segment", needle.len());
}

fn flip_byte(file: &Path, at: u64) {
    let f = fs::OpenOptions::new().read(true).write(true).open(file).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], at).unwrap();
    f.sync_all().unwrap();
}

fn opts(up: &CountingUpstream, scrub: &str) -> ServerOpts {
    let mut o = ServerOpts::new(up.url());
    o.cores = 1;
    o.extra_args = vec!["--scrub-rate".into(), scrub.into()];
    o
}

fn path(m: &str, v: &str, ext: &str) -> String {
    format!("/{}", artifact_path(m, v, ext))
}

/// Stops and starts once more, so every segment written so far is sealed
/// (start-up recovery seals what it verified) and trusted on open.
fn seal_everything(server: &mut Server) {
    server.stop();
    server.start_again();
    server.stop();
}

#[test]
fn a_byte_flipped_in_a_sealed_segment_is_never_served_and_is_fetched_afresh() {
    const M: &str = "example.com/integrity/flip";
    // Stored (not deflated) data so the zip's bytes are found on disk, and
    // large enough to be checked off the executor.
    let fx = Fixture::builder().module(Module::new(M, "v1.0.0").file("data.bin", pseudo_random_bytes(300 << 10, 3)).stored()).build();
    let up = CountingUpstream::serve(fx.root());
    let mut server = Server::start_with(opts(&up, "off"));
    for ext in ["info", "mod", "zip"] {
        get_check(server.addr(), &path(M, "v1.0.0", ext), &fx.artifact(M, "v1.0.0", ext)).unwrap();
    }
    seal_everything(&mut server);

    let (seg, at) = find_payload(server.data_dir(), &fx.artifact(M, "v1.0.0", "mod"));
    flip_byte(&seg, at + 3);
    let zip = fx.artifact(M, "v1.0.0", "zip");
    let (seg, at) = find_payload(server.data_dir(), &zip);
    flip_byte(&seg, at + zip.len() as u64 / 2);

    server.start_again();
    for ext in ["mod", "zip", "info"] {
        let p = path(M, "v1.0.0", ext);
        let r = http_get(server.addr(), &p);
        assert_eq!(r.status, 200, "{ext}: {}", r.body_str());
        assert!(r.body == fx.artifact(M, "v1.0.0", ext), "{ext}: the changed bytes were served");
        let want_hits = if ext == "info" { 1 } else { 2 };
        assert_eq!(up.hits(&p), want_hits, "{ext}: only the damaged blobs are fetched again");
    }
    assert_eq!(metric(server.addr(), "gomodproxy_blobs_quarantined"), 2);
    assert!(
        server.wait_for_log(Duration::from_secs(5), |l| l.contains("SECURITY") && l.contains("quarantined")),
        "the quarantine is logged"
    );

    // The fresh copies are durable and the old ones stay withdrawn.
    server.restart();
    for ext in ["mod", "zip"] {
        get_check(server.addr(), &path(M, "v1.0.0", ext), &fx.artifact(M, "v1.0.0", ext)).unwrap();
        assert_eq!(up.hits(&path(M, "v1.0.0", ext)), 2, "{ext} served from the store after the restart");
    }
}

#[test]
fn the_background_scrub_finds_a_flipped_byte_before_anyone_asks() {
    const M: &str = "example.com/integrity/scrub";
    // Their go.mod files differ (a require each), so each is found on disk.
    let fx = Fixture::builder()
        .module(Module::new(M, "v1.0.0").require("example.com/dep", "v1.0.0"))
        .module(Module::new(M, "v1.1.0").require("example.com/dep", "v1.1.0"))
        .build();
    let up = CountingUpstream::serve(fx.root());
    let mut server = Server::start_with(opts(&up, "64MiB"));
    for v in ["v1.0.0", "v1.1.0"] {
        get_check(server.addr(), &path(M, v, "mod"), &fx.artifact(M, v, "mod")).unwrap();
    }
    seal_everything(&mut server);
    let (seg, at) = find_payload(server.data_dir(), &fx.artifact(M, "v1.1.0", "mod"));
    flip_byte(&seg, at + 1);
    server.start_again();
    assert!(
        wait_until(Duration::from_secs(15), || metric(server.addr(), "gomodproxy_blobs_quarantined") == 1),
        "the scrub did not quarantine the damaged blob"
    );
    assert!(wait_until(Duration::from_secs(5), || metric(server.addr(), "gomodproxy_scrubbed_bytes") > 0));
    get_check(server.addr(), &path(M, "v1.1.0", "mod"), &fx.artifact(M, "v1.1.0", "mod")).unwrap();
    get_check(server.addr(), &path(M, "v1.0.0", "mod"), &fx.artifact(M, "v1.0.0", "mod")).unwrap();
    assert_eq!(up.hits(&path(M, "v1.1.0", "mod")), 2);
    assert_eq!(up.hits(&path(M, "v1.0.0", "mod")), 1, "the good blob is kept");
}

#[test]
fn a_damaged_header_mid_segment_loses_only_its_own_record() {
    const M: &str = "example.com/integrity/header";
    let versions: Vec<String> = (0..8).map(|i| format!("v1.{i}.0")).collect();
    let mut b = Fixture::builder();
    for v in &versions {
        // Distinct go.mod files, so each is found on disk.
        b = b.module(Module::new(M, v).require("example.com/dep", v));
    }
    let fx = b.build();
    let up = CountingUpstream::serve(fx.root());
    let mut server = Server::start_with(opts(&up, "off"));
    for v in &versions {
        get_check(server.addr(), &path(M, v, "mod"), &fx.artifact(M, v, "mod")).unwrap();
    }
    seal_everything(&mut server);
    // The header of v1.3.0's .mod record: 64 bytes and the key before its payload.
    let damaged = &versions[3];
    let key_len = format!("{M}@{damaged}").len() as u64;
    let (seg, at) = find_payload(server.data_dir(), &fx.artifact(M, damaged, "mod"));
    flip_byte(&seg, at - key_len - 64 + 9);
    // The index snapshots would spare start-up the headers (and the
    // record's payload still hashes right): without them, headers are read.
    let snapshots = remove_snapshots(server.data_dir());
    assert!(snapshots > 0);
    server.start_again();
    for v in &versions {
        get_check(server.addr(), &path(M, v, "mod"), &fx.artifact(M, v, "mod")).unwrap();
        let want = if v == damaged { 2 } else { 1 };
        assert_eq!(up.hits(&path(M, v, "mod")), want, "{v}: only the damaged record is fetched again");
    }
}

/// Deletes the index snapshots beside the segments; how many there were.
fn remove_snapshots(data: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(data.join("segments")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "snap") {
            std::fs::remove_file(p).unwrap();
            n += 1;
        }
    }
    n
}

#[test]
fn a_segment_file_cut_under_a_running_server_is_never_served_short_or_as_zeros() {
    // Large bodies go out by sendfile, or from the segment's map (the
    // default towards a loopback client): both must hold.
    for sendfile in ["on", "off"] {
        a_cut_segment_file_is_never_served(sendfile);
    }
}

fn a_cut_segment_file_is_never_served(sendfile: &str) {
    const M: &str = "example.com/integrity/cut";
    let fx = Fixture::builder()
        .module(Module::new(M, "v1.0.0").file("data.bin", pseudo_random_bytes(2 << 20, 9)).stored())
        .module(Module::new(M, "v1.1.0"))
        .build();
    let up = CountingUpstream::serve(fx.root());
    let mut o = opts(&up, "off");
    o.extra_args.extend(["--sendfile".into(), sendfile.into()]);
    let server = Server::start_with(o);
    // In file order: v1.0.0's zip, then v1.1.0's .info after it.
    get_check(server.addr(), &path(M, "v1.0.0", "zip"), &fx.artifact(M, "v1.0.0", "zip")).unwrap();
    get_check(server.addr(), &path(M, "v1.1.0", "info"), &fx.artifact(M, "v1.1.0", "info")).unwrap();
    let (seg, at) = find_payload(server.data_dir(), &fx.artifact(M, "v1.0.0", "zip"));
    let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(at + 4096).unwrap();
    drop(f);

    for (v, ext) in [("v1.0.0", "zip"), ("v1.1.0", "info")] {
        let p = path(M, v, ext);
        let r = http_get(server.addr(), &p);
        assert_eq!(r.status, 200, "{p}: {}", r.body_str());
        assert!(r.body == fx.artifact(M, v, ext), "{p} (--sendfile {sendfile}): wrong or short bytes served from a cut file");
        assert_eq!(up.hits(&p), 2, "{p} fetched afresh");
    }
    // The refill went to a new segment: the cut one is never written to
    // again (its hole could make a lost range look whole).
    for (v, ext) in [("v1.0.0", "zip"), ("v1.1.0", "info")] {
        get_check(server.addr(), &path(M, v, ext), &fx.artifact(M, v, ext)).unwrap();
    }
    assert!(metric(server.addr(), "gomodproxy_blobs_quarantined") >= 2);
}

#[test]
fn many_first_requests_for_one_large_unchecked_blob_hash_it_once() {
    const M: &str = "example.com/integrity/once";
    let fx = Fixture::builder().module(Module::new(M, "v1.0.0").file("data.bin", pseudo_random_bytes(24 << 20, 5)).stored()).build();
    let up = CountingUpstream::serve(fx.root());
    let mut server = Server::start_with(opts(&up, "off"));
    let zip = path(M, "v1.0.0", "zip");
    let want = fx.artifact(M, "v1.0.0", "zip");
    get_check(server.addr(), &zip, &want).unwrap();
    seal_everything(&mut server);
    server.start_again();
    let addr = server.addr();
    let want = std::sync::Arc::new(want);
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (z, w) = (zip.clone(), want.clone());
            std::thread::spawn(move || get_check(addr, &z, &w))
        })
        .collect();
    for c in clients {
        c.join().unwrap().unwrap();
    }
    assert_eq!(up.hits(&zip), 1, "served from the store");
    assert_eq!(metric(addr, "gomodproxy_blobs_checked"), 1, "eight first requests hashed the blob once");
}
