//! The shared tier (`--shared-store`) against a real S3-compatible server
//! (versitygw, started here): nodes on 127.0.0.2, .3 and .4 sharing one
//! bucket fetch each cold artifact from the upstream once, survive the
//! death of the node that was fetching, start warm from the bucket with the
//! upstream down (checked by the real go command), keep serving when the
//! object store is down, and never take a damaged object for a good one.

mod common;

use common::*;

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

const BIG: &str = "example.com/shared/big";
const SMALL: &str = "example.com/shared/small";
const BIG_LEN: usize = 6 << 20;

fn fixture() -> Fixture {
    Fixture::builder()
        .module(Module::new(BIG, "v1.0.0").file("data.bin", pseudo_random_bytes(BIG_LEN, 11)).stored())
        .module(Module::new(SMALL, "v1.0.0").stored())
        .module(Module::new(SMALL, "v1.1.0").stored())
        .module(Module::new(SMALL, "v1.2.0").stored())
        .build()
}

/// A node on `ip` sharing `s3`'s bucket under `prefix`.
fn node(ip: &str, upstream: &str, s3: &S3Server, prefix: &str, extra: &[&str]) -> Server {
    let mut opts = ServerOpts::new(upstream);
    opts.listen = format!("{ip}:0");
    opts.extra_args = ["--sumdb", "off", "--shared-store", &s3.store_url(prefix)].iter().chain(extra).map(|s| s.to_string()).collect();
    opts.env = s3.credentials();
    Server::start_with(opts)
}

fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    let mut c = RawConn::connect(addr);
    c.set_read_timeout(Duration::from_secs(60));
    c.request("GET", path)
}

fn path(module: &str, version: &str, ext: &str) -> String {
    format!("/{}", artifact_path(module, version, ext))
}

#[test]
fn three_nodes_fetch_a_cold_zip_from_the_upstream_once() {
    let fx = fixture();
    let s3 = S3Server::start();
    let upstream = CountingUpstream::serve(fx.root());
    // A slow upstream: the fill takes long enough for every client to ask
    // while it runs.
    upstream.set_behavior(UpstreamBehavior { zip_chunk: 256 << 10, zip_chunk_delay: Duration::from_millis(40), ..Default::default() });
    let nodes: Vec<Server> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"].iter().map(|ip| node(ip, &upstream.url(), &s3, "p", &[])).collect();
    let want = fx.artifact(BIG, "v1.0.0", "zip");
    let zip = path(BIG, "v1.0.0", "zip");
    let addrs: Vec<SocketAddr> = nodes.iter().map(Server::addr).collect();
    let bodies: Vec<HttpResponse> = thread::scope(|s| {
        let handles: Vec<_> = (0..30)
            .map(|i| {
                let (addr, zip) = (addrs[i % 3], zip.clone());
                s.spawn(move || get(addr, &zip))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client")).collect()
    });
    for (i, r) in bodies.iter().enumerate() {
        assert_eq!(r.status, 200, "client {i}: {}", r.body_str());
        assert!(r.body == want, "client {i}: {} bytes differing from the fixture's {}", r.body.len(), want.len());
    }
    let asked = upstream.hits(&path(BIG, "v1.0.0", "zip"));
    assert_eq!(asked, 1, "the upstream must see the cold zip once for the whole fleet: {:?}", upstream.request_log());
    // One node filled it; the others waited and read it from the bucket.
    let filled: u64 = addrs.iter().map(|a| metric(*a, "gomodproxy_shared_writes")).sum();
    let read: u64 = addrs.iter().map(|a| metric(*a, "gomodproxy_shared_hits")).sum();
    let waited: u64 = addrs.iter().map(|a| metric(*a, "gomodproxy_shared_lease_waits")).sum();
    assert_eq!((filled, read), (1, 2), "one write, one read by each other node");
    assert!(waited >= 1, "the other nodes waited on the lease");
    // The bucket holds the artifact under its protocol path, and no lease.
    assert!(wait_until(Duration::from_secs(10), || s3.keys("p/_leases").is_empty()), "leases left: {:?}", s3.keys("p"));
    assert!(std::fs::read(s3.object_file(&format!("p/{}", artifact_path(BIG, "v1.0.0", "zip")))).unwrap() == want);
}

#[test]
fn a_node_killed_mid_fill_is_taken_over_after_its_lease_expires() {
    let fx = fixture();
    let s3 = S3Server::start();
    let upstream = CountingUpstream::serve(fx.root());
    // The first zip answer stops after 1 MiB until released.
    upstream.set_behavior(UpstreamBehavior { zip_pause_at: Some(1 << 20), ..Default::default() });
    upstream.hold_zips();
    let lease = ["--shared-lease", "2s"];
    let mut holder = node("127.0.0.2", &upstream.url(), &s3, "p", &lease);
    let other = node("127.0.0.3", &upstream.url(), &s3, "p", &lease);
    let zip = path(BIG, "v1.0.0", "zip");
    let addr = holder.addr();
    let doomed = {
        let zip = zip.clone();
        thread::spawn(move || {
            use std::io::{Read, Write};
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let _ = write!(c, "GET {zip} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            let mut sink = Vec::new();
            let _ = c.read_to_end(&mut sink);
        })
    };
    assert!(upstream.wait_for_zip_bytes(1 << 20, Duration::from_secs(20)), "the holder's fill never started");
    assert_eq!(s3.keys("p/_leases").len(), 1, "the holder took a lease: {:?}", s3.keys("p"));
    holder.kill9();
    let _ = doomed.join();
    upstream.release_zips();
    let started = std::time::Instant::now();
    let r = get(other.addr(), &zip);
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(r.body == fx.artifact(BIG, "v1.0.0", "zip"), "the right bytes after the takeover");
    assert_eq!(metric(other.addr(), "gomodproxy_shared_takeovers"), 1, "the dead node's lease was taken over");
    assert!(started.elapsed() < Duration::from_secs(30), "bounded by the lease, not the wait limit");
    assert_eq!(upstream.hits(&path(BIG, "v1.0.0", "zip")), 2, "the dead node's fetch and the taker's");
    assert!(wait_until(Duration::from_secs(10), || s3.keys("p/_leases").is_empty()), "leases left: {:?}", s3.keys("p"));
}

#[test]
fn a_fresh_node_serves_what_the_fleet_saw_with_the_upstream_down() {
    let fx = Fixture::standard();
    let s3 = S3Server::start();
    let upstream = CountingUpstream::serve(fx.root());
    let first = node("127.0.0.2", &upstream.url(), &s3, "warm", &[]);
    let reference = GoEnv::new(first.url());
    reference.write_main_module(&standard_main());
    reference.build();
    assert_eq!(reference.run_binary(), standard_main_output());
    let sums = reference.go_sum_lines();
    assert!(sums.len() >= 20, "a go.sum line per zip and go.mod: {sums:#?}");
    // Every fill is written to the bucket in the background: wait for them.
    let fills = upstream.total_hits();
    assert!(
        wait_until(Duration::from_secs(30), || metric(first.addr(), "gomodproxy_shared_writes") as usize
            >= fills - upstream.hits_where(|p| p.ends_with("/list") || p.ends_with("@latest"))),
        "the fills reached the bucket"
    );
    drop(first);
    drop(upstream);
    // An empty data directory, an upstream nobody listens on.
    let fresh = node("127.0.0.3", "http://127.0.0.1:9", &s3, "warm", &[]);
    let env = GoEnv::new(fresh.url());
    env.write_main_module(&standard_main());
    env.build();
    assert_eq!(env.run_binary(), standard_main_output());
    assert_eq!(env.go_sum_lines(), sums, "the same hashes through the fresh node");
    assert_eq!(env.read_file("go.mod"), reference.read_file("go.mod"));
    assert!(metric(fresh.addr(), "gomodproxy_shared_hits") >= 20);
}

#[test]
fn the_object_store_down_costs_no_request_and_it_is_used_again_once_back() {
    let fx = fixture();
    let mut s3 = S3Server::start();
    let upstream = CountingUpstream::serve(fx.root());
    let n = node("127.0.0.2", &upstream.url(), &s3, "p", &["--breaker-failures", "2", "--breaker-cooldown", "1s"]);
    let key = |v: &str, ext: &str| format!("p/{}", artifact_path(SMALL, v, ext));
    assert_eq!(get(n.addr(), &path(SMALL, "v1.0.0", "mod")).status, 200);
    assert!(wait_until(Duration::from_secs(10), || s3.object_file(&key("v1.0.0", "mod")).is_file()));
    s3.kill();
    // A local hit: never touches the tier.
    let hit = get(n.addr(), &path(SMALL, "v1.0.0", "mod"));
    assert_eq!((hit.status, hit.body.as_slice()), (200, fx.artifact(SMALL, "v1.0.0", "mod").as_slice()));
    // Misses come from the upstream.
    for (v, ext) in [("v1.1.0", "mod"), ("v1.1.0", "info"), ("v1.1.0", "zip"), ("v1.2.0", "info")] {
        let r = get(n.addr(), &path(SMALL, v, ext));
        assert_eq!(r.status, 200, "{v}.{ext} with the object store down: {}", r.body_str());
        assert!(r.body == fx.artifact(SMALL, v, ext), "{v}.{ext}");
    }
    assert!(metric(n.addr(), "gomodproxy_shared_errors") >= 1);
    assert!(metric(n.addr(), "gomodproxy_shared_skipped") >= 1, "the breaker opened");
    s3.start_again();
    // Once the cool-down is over, the next fill uses the tier again.
    thread::sleep(Duration::from_millis(1200));
    assert_eq!(get(n.addr(), &path(SMALL, "v1.2.0", "mod")).status, 200);
    assert!(wait_until(Duration::from_secs(10), || s3.object_file(&key("v1.2.0", "mod")).is_file()), "{:?}", s3.keys("p"));
    assert!(!s3.object_file(&key("v1.1.0", "zip")).exists(), "nothing was written while it was down");
}

#[test]
fn a_restarted_node_does_not_read_back_what_it_holds() {
    let fx = fixture();
    let s3 = S3Server::start();
    let upstream = CountingUpstream::serve(fx.root());
    let mut n = node("127.0.0.2", &upstream.url(), &s3, "p", &[]);
    let files = [("v1.0.0", "info"), ("v1.0.0", "mod"), ("v1.0.0", "zip")];
    for (v, ext) in files {
        assert_eq!(get(n.addr(), &path(SMALL, v, ext)).status, 200);
    }
    assert!(wait_until(Duration::from_secs(10), || metric(n.addr(), "gomodproxy_shared_writes") == 3));
    n.restart();
    for (v, ext) in files {
        let r = get(n.addr(), &path(SMALL, v, ext));
        assert!(r.status == 200 && r.body == fx.artifact(SMALL, v, ext), "{v}.{ext}");
    }
    assert_eq!(metric(n.addr(), "gomodproxy_shared_hits"), 0, "local hits: the bucket was not read");
    assert_eq!(metric(n.addr(), "gomodproxy_shared_misses"), 0);
    assert_eq!(upstream.total_hits(), 3, "nor the upstream");
}

#[test]
fn a_damaged_object_in_the_bucket_is_never_served_nor_kept() {
    let fx = fixture();
    let s3 = S3Server::start();
    let upstream = CountingUpstream::serve(fx.root());
    let writer = node("127.0.0.2", &upstream.url(), &s3, "p", &[]);
    for ext in ["info", "zip"] {
        assert_eq!(get(writer.addr(), &path(SMALL, "v1.0.0", ext)).status, 200);
    }
    assert!(wait_until(Duration::from_secs(10), || metric(writer.addr(), "gomodproxy_shared_writes") == 2));
    // Someone with write access to the bucket damages both objects.
    let zip = s3.object_file(&format!("p/{}", artifact_path(SMALL, "v1.0.0", "zip")));
    let mut bytes = std::fs::read(&zip).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&zip, &bytes).unwrap();
    std::fs::write(s3.object_file(&format!("p/{}", artifact_path(SMALL, "v1.0.0", "info"))), b"{\"Version\":\"v9.9.9\"}").unwrap();
    let reader = node("127.0.0.3", &upstream.url(), &s3, "p", &[]);
    for ext in ["info", "zip"] {
        let r = get(reader.addr(), &path(SMALL, "v1.0.0", ext));
        assert_eq!(r.status, 200, "{ext}: {}", r.body_str());
        assert!(r.body == fx.artifact(SMALL, "v1.0.0", ext), "{ext}: the upstream's bytes, not the damaged copy");
    }
    assert_eq!(metric(reader.addr(), "gomodproxy_shared_errors"), 2, "both copies refused");
    assert!(reader.wait_for_log(Duration::from_secs(5), |l| l.contains("shared store's copy is refused")));
    // ...and replaced in the bucket by the checked bytes, for every node.
    for ext in ["info", "zip"] {
        let object = s3.object_file(&format!("p/{}", artifact_path(SMALL, "v1.0.0", ext)));
        let want = fx.artifact(SMALL, "v1.0.0", ext);
        assert!(wait_until(Duration::from_secs(10), || std::fs::read(&object).is_ok_and(|b| b == want)), "{ext}: not repaired");
    }
}

#[test]
fn an_online_purge_deletes_the_fleets_copies_too() {
    let fx = fixture();
    let mut s3 = S3Server::start();
    let upstream = CountingUpstream::serve(fx.root());
    let n = node("127.0.0.2", &upstream.url(), &s3, "p", &[]);
    for ext in ["info", "mod", "zip"] {
        assert_eq!(get(n.addr(), &path(SMALL, "v1.0.0", ext)).status, 200);
        assert_eq!(get(n.addr(), &path(SMALL, "v1.1.0", ext)).status, 200);
    }
    assert!(wait_until(Duration::from_secs(10), || metric(n.addr(), "gomodproxy_shared_writes") == 6));
    let r = admin_request(n.admin_addr(), "POST", &format!("/purge?module={SMALL}&version=v1.0.0"));
    assert_eq!(r.status, 200, "{}", r.body_str());
    let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(answer["shared_deletes"], 3, "{answer}");
    for ext in ["info", "mod", "zip"] {
        assert!(!s3.object_file(&format!("p/{}", artifact_path(SMALL, "v1.0.0", ext))).exists(), "{ext} left in the bucket");
        assert!(s3.object_file(&format!("p/{}", artifact_path(SMALL, "v1.1.0", ext))).exists(), "{ext} of the other version kept");
    }
    assert_eq!(get(n.addr(), &path(SMALL, "v1.0.0", "zip")).status, 200);
    assert_eq!(upstream.hits(&path(SMALL, "v1.0.0", "zip")), 2, "fetched afresh from the upstream, not read back");
    // The whole module: every version's objects.
    let r = admin_request(n.admin_addr(), "POST", &format!("/purge?module={SMALL}"));
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(wait_until(Duration::from_secs(10), || s3.keys(&format!("p/{SMALL}")).is_empty()), "{:?}", s3.keys("p"));

    // With the bucket unreachable the purge says so (502, what this node
    // withdrew listed); once it is back, the same purge finishes the job.
    for ext in ["info", "mod", "zip"] {
        assert_eq!(get(n.addr(), &path(SMALL, "v1.0.0", ext)).status, 200);
    }
    let objects: Vec<_> =
        ["info", "mod", "zip"].iter().map(|ext| s3.object_file(&format!("p/{}", artifact_path(SMALL, "v1.0.0", ext)))).collect();
    assert!(wait_until(Duration::from_secs(10), || objects.iter().all(|o| o.exists())));
    s3.kill();
    let r = admin_request(n.admin_addr(), "POST", &format!("/purge?module={SMALL}&version=v1.0.0"));
    assert_eq!(r.status, 502, "{}", r.body_str());
    let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(answer["shared_error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
    assert_eq!(answer["purged"].as_array().map(Vec::len), Some(5), "{answer}");
    s3.start_again();
    let r = admin_request(n.admin_addr(), "POST", &format!("/purge?module={SMALL}&version=v1.0.0"));
    assert_eq!(r.status, 404, "{}", r.body_str());
    assert!(r.body_str().contains("the shared store accepted 3 delete(s)"), "{}", r.body_str());
    assert!(objects.iter().all(|o| !o.exists()), "{objects:?}: left in the bucket");
}

#[test]
fn a_directory_is_a_shared_store_for_nodes_of_one_host() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let upstream = CountingUpstream::serve(fx.root());
    let start = || {
        let mut opts = ServerOpts::new(upstream.url());
        opts.extra_args = ["--sumdb", "off", "--shared-store", &url].iter().map(|s| s.to_string()).collect();
        Server::start_with(opts)
    };
    let (a, b) = (start(), start());
    let want = fx.artifact(SMALL, "v1.0.0", "zip");
    assert!(get(a.addr(), &path(SMALL, "v1.0.0", "zip")).body == want);
    let file = dir.path().join(artifact_path(SMALL, "v1.0.0", "zip"));
    assert!(wait_until(Duration::from_secs(10), || std::fs::read(&file).is_ok_and(|b| b == want)), "the directory is a GOPROXY tree");
    assert!(get(b.addr(), &path(SMALL, "v1.0.0", "zip")).body == want);
    assert_eq!(upstream.hits(&path(SMALL, "v1.0.0", "zip")), 1);
    assert_eq!(metric(b.addr(), "gomodproxy_shared_hits"), 1);
    // A directory that does not exist is refused at start-up, and so is a
    // URL that names no store.
    let upstream_dir = fx.file_url();
    for (store, says) in
        [("file:///does/not/exist", "/does/not/exist: no such directory"), ("ftp://x/y", "unknown scheme"), ("s3:///p", "no bucket")]
    {
        let refused = refused_start(&["serve", "--listen", "127.0.0.1:0", "--upstream", &upstream_dir, "--shared-store", store]);
        assert!(refused.contains("--shared-store") && refused.contains(says), "{store}: {refused}");
    }
}
