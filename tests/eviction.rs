//! `--max-store-size`: the store's bytes on disk stay within one segment of
//! the bound while distinct fills run, evicted artifacts are fetched again
//! byte for byte (the go command's hashes agree), and a zip being sent
//! while its segment is evicted arrives whole.

mod common;

use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

const V: &str = "v1.0.0";
const MIB: u64 = 1 << 20;

/// The files of `data/segments` and their lengths, by name.
fn segment_files(data: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(data.join("segments"))
        .expect("segments dir")
        .map(|e| {
            let e = e.expect("entry");
            (e.file_name().to_string_lossy().into_owned(), e.metadata().expect("metadata").len())
        })
        .collect();
    files.sort();
    files
}

/// Bytes of the segment files in `data/segments`, and the largest one's name.
fn segments_on_disk(data: &Path) -> (u64, Option<(String, u64)>) {
    let files = segment_files(data);
    let largest = files.iter().max_by_key(|(_, len)| *len).cloned();
    (files.iter().map(|(_, len)| len).sum(), largest)
}

/// [`segment_files`], a line each (for a failure's message).
fn listing(data: &Path) -> String {
    segment_files(data).iter().map(|(name, len)| format!("  {name} {len}\n")).collect()
}

fn filler(i: usize, len: usize) -> Module {
    Module::new(&format!("example.com/fill{i}"), V).file("data.bin", pseudo_random_bytes(len, i as u64)).stored()
}

fn bounded(fx: &Fixture, max: &str) -> Server {
    Server::start_with(ServerOpts {
        extra_args: vec!["--max-store-size".into(), max.into(), "--segment-size".into(), "1MiB".into()],
        ..ServerOpts::new(fx.file_url())
    })
}

#[test]
fn distinct_fills_keep_the_store_within_one_segment_of_its_bound_and_evicted_modules_come_back_byte_identical() {
    const FILLS: usize = 48;
    let mut builder = Fixture::builder();
    for i in 0..FILLS {
        builder = builder.module(filler(i, 600_000));
    }
    let fx = builder.build();
    let mut server = bounded(&fx, "16MiB");
    for i in 0..FILLS {
        let m = format!("example.com/fill{i}");
        for ext in ["info", "mod", "zip"] {
            let r = http_get(server.addr(), &format!("/{}", artifact_path(&m, V, ext)));
            assert_eq!(r.status, 200, "{m} {ext}");
            assert_eq!(r.body, fx.artifact(&m, V, ext), "{m} {ext}");
        }
        let (on_disk, _) = segments_on_disk(server.data_dir());
        assert!(on_disk <= 17 * MIB, "after {m}: {on_disk} bytes on disk, bound 16MiB + one 1MiB segment");
    }
    assert!(metric(server.addr(), "gomodproxy_segments_evicted") >= 10, "about 29 MiB of fills under a 16 MiB bound evict");
    assert!(metric(server.addr(), "gomodproxy_store_bytes") <= 17 * MIB);
    assert_eq!(metric(server.addr(), "gomodproxy_store_max_bytes"), 16 * MIB);
    // The first modules were evicted; asked for again they are fetched afresh, whole.
    for i in 0..4 {
        let m = format!("example.com/fill{i}");
        let r = http_get(server.addr(), &format!("/{}", artifact_path(&m, V, "zip")));
        assert_eq!(r.body, fx.artifact(&m, V, "zip"), "{m} after eviction");
    }
    assert!(metric(server.addr(), "gomodproxy_evicted_blobs") > 0);

    // The go command, through the bounded store and straight from the
    // fixture tree, computes the same hashes for evicted and kept modules.
    let targets: Vec<String> = [5, 6, 7, 40, 46, 47].iter().map(|i| format!("example.com/fill{i}@{V}")).collect();
    let args: Vec<&str> = targets.iter().map(String::as_str).collect();
    let direct = GoEnv::new(fx.file_url()).mod_download_json(&args);
    let proxied = GoEnv::new(server.url()).mod_download_json(&args);
    assert_eq!(direct.len(), targets.len());
    for (d, p) in direct.iter().zip(&proxied) {
        assert_eq!((&p["Path"], &p["Sum"], &p["GoModSum"]), (&d["Path"], &d["Sum"], &d["GoModSum"]));
    }
    let (on_disk, _) = segments_on_disk(server.data_dir());
    assert!(on_disk <= 17 * MIB, "{on_disk}");

    // After a restart the store holds only whole blobs and keeps its bound.
    server.restart();
    for i in [0, 20, 47] {
        let m = format!("example.com/fill{i}");
        assert_eq!(http_get(server.addr(), &format!("/{}", artifact_path(&m, V, "zip"))).body, fx.artifact(&m, V, "zip"));
    }
    assert!(segments_on_disk(server.data_dir()).0 <= 17 * MIB);
}

#[test]
fn a_zip_being_sent_while_its_segment_is_evicted_arrives_whole() {
    const BIG: usize = 24 << 20;
    let mut builder = Fixture::builder().module(Module::new("example.com/big", V).file("data.bin", pseudo_random_bytes(BIG, 99)).stored());
    for i in 0..40 {
        builder = builder.module(filler(i, 1_000_000));
    }
    let fx = builder.build();
    let server = bounded(&fx, "48MiB");
    let path = artifact_path("example.com/big", V, "zip");
    let want = fx.artifact("example.com/big", V, "zip");
    assert_eq!(http_get(server.addr(), &format!("/{path}")).body, want, "stored");
    let (_, largest) = segments_on_disk(server.data_dir());
    let (big_segment, len) = largest.expect("a segment");
    assert!(len >= BIG as u64, "the big zip has a segment of its own");

    // Mid-response: the client reads a little, then stops.
    let mut slow = TcpStream::connect(server.addr()).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(slow, "GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = vec![0u8; 64 * 1024];
    let n = slow.read(&mut got).expect("first bytes");
    got.truncate(n);

    // Fills push the store past its bound: the big zip's segment, hit least
    // recently, is evicted (its blob, all of its segment, is more than a
    // victim may carry: it is fetched again when next asked for).
    for i in 0..40 {
        let m = format!("example.com/fill{i}");
        assert_eq!(http_get(server.addr(), &format!("/{}", artifact_path(&m, V, "zip"))).status, 200, "{m}");
        if !server.data_dir().join("segments").join(&big_segment).exists() {
            break;
        }
    }
    assert!(!server.data_dir().join("segments").join(&big_segment).exists(), "the segment being sent from was evicted");
    assert!(metric(server.addr(), "gomodproxy_segments_evicted") >= 1);

    let mut rest = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let body_len = want.len();
    let head_end = loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = slow.read(&mut buf).expect("head");
        assert!(n > 0, "closed before the head");
        got.extend_from_slice(&buf[..n]);
    };
    rest.extend_from_slice(&got[head_end..]);
    while rest.len() < body_len {
        let n = slow.read(&mut buf).expect("the rest of the zip");
        assert!(n > 0, "cut after {} of {body_len} bytes", rest.len());
        rest.extend_from_slice(&buf[..n]);
    }
    assert!(rest == want, "the zip sent across its segment's eviction differs");
    // And it is still served, fetched again.
    assert_eq!(http_get(server.addr(), &format!("/{path}")).body, want);
}

#[test]
fn kill9_during_eviction_and_during_a_purge_leaves_only_whole_blobs_and_the_purge_stands() {
    const FILLS: usize = 50;
    let mut builder = Fixture::builder();
    for i in 0..FILLS {
        builder = builder.module(filler(i, 500_000));
    }
    let fx = std::sync::Arc::new(builder.build());
    let upstream = CountingUpstream::serve(fx.root());
    let mut server = Server::start_with(ServerOpts {
        extra_args: vec!["--max-store-size".into(), "16MiB".into(), "--segment-size".into(), "1MiB".into()],
        ..ServerOpts::new(upstream.url())
    });
    let zip = |i: usize| format!("/{}", artifact_path(&format!("example.com/fill{i}"), V, "zip"));
    // fill0 is purged below; the background fills never ask for it.
    assert_eq!(http_get(server.addr(), &zip(0)).status, 200);
    for round in 0..6u64 {
        let before = metric(server.addr(), "gomodproxy_segments_evicted");
        let addr = server.addr();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fills = {
            let (stop, fx) = (stop.clone(), fx.clone());
            std::thread::spawn(move || {
                let mut i = 1;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let m = format!("example.com/fill{i}");
                    // Any answer, or none once the server is killed: what
                    // is served after the restart is checked below.
                    let _ = get_check(addr, &format!("/{}", artifact_path(&m, V, "zip")), &fx.artifact(&m, V, "zip"));
                    i = i % (FILLS - 1) + 1;
                }
            })
        };
        assert!(
            wait_until(Duration::from_secs(60), || metric(addr, "gomodproxy_segments_evicted") > before),
            "round {round}: no eviction under way"
        );
        if round == 3 {
            // A purge acknowledged just before the kill stands.
            let r = admin_request(server.admin_addr(), "POST", "/purge?module=example.com%2Ffill0");
            assert_eq!(r.status, 200, "{r:?}");
        } else {
            std::thread::sleep(Duration::from_millis(round * 7));
        }
        server.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        fills.join().expect("fills");
        server.start_again();
        let (on_disk, _) = segments_on_disk(server.data_dir());
        assert!(on_disk <= 17 * MIB, "round {round}: {on_disk} bytes on disk after the crash:\n{}", listing(server.data_dir()));
        if round == 3 {
            let fetched = upstream.hits(&zip(0));
            assert_eq!(http_get(server.addr(), &zip(0)).body, fx.artifact("example.com/fill0", V, "zip"));
            assert_eq!(upstream.hits(&zip(0)), fetched + 1, "the purged zip is fetched afresh after the crash");
        }
        // Whatever the store kept is whole and exact.
        for i in 0..FILLS {
            let m = format!("example.com/fill{i}");
            get_check(server.addr(), &zip(i), &fx.artifact(&m, V, "zip")).unwrap_or_else(|e| panic!("round {round}, {m}: {e}"));
        }
    }
}

#[test]
fn sighup_with_a_smaller_bound_evicts_down_to_it_on_the_next_fill() {
    const FILLS: usize = 40;
    let mut builder = Fixture::builder();
    for i in 0..FILLS {
        builder = builder.module(filler(i, 600_000));
    }
    let fx = builder.build();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gomodproxy.toml");
    let write = |max: &str| {
        std::fs::write(&config, format!("upstream = \"{}\"\nsumdb = \"off\"\nsegment_size = \"1MiB\"\n{max}", fx.file_url())).unwrap()
    };
    write("");
    let server =
        Server::start_with(ServerOpts { extra_args: vec!["--config".into(), config.display().to_string()], ..ServerOpts::new("") });
    let get = |i: usize| http_get(server.addr(), &format!("/{}", artifact_path(&format!("example.com/fill{i}"), V, "zip")));
    for i in 0..FILLS - 1 {
        assert_eq!(get(i).status, 200);
    }
    let unbounded = segments_on_disk(server.data_dir()).0;
    assert!(unbounded > 20 * MIB, "{unbounded}");
    assert_eq!(metric(server.addr(), "gomodproxy_store_max_bytes"), 0);

    write("max_store_size = \"16MiB\"\n");
    let pid = server.pid().expect("running") as libc::pid_t;
    // SAFETY: a signal to the child process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    assert!(server.wait_for_log(Duration::from_secs(10), |l| l.contains("configuration reloaded")));
    assert_eq!(metric(server.addr(), "gomodproxy_store_max_bytes"), 16 * MIB);
    // The next write makes its room: down to the new bound at once.
    assert_eq!(get(FILLS - 1).body, fx.artifact(&format!("example.com/fill{}", FILLS - 1), V, "zip"));
    let (on_disk, _) = segments_on_disk(server.data_dir());
    assert!(on_disk <= 17 * MIB, "{on_disk} bytes on disk after the reload's first fill");
    assert_eq!(get(0).body, fx.artifact("example.com/fill0", V, "zip"), "an evicted zip comes back");
}
