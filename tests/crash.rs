//! Crash safety of the segment store: `kill -9` at different moments of a
//! big fill, and segment tails damaged by hand between runs, must never
//! make the server refuse to start or serve a byte that differs from the
//! upstream's. Whatever was published before a crash stays served from the
//! store (no second upstream fetch) unless the test itself destroyed it.
//!
//! Timing only decides *when* the server is killed (always on an observable
//! event: the upstream saw the request, sent N body bytes, finished; a
//! segment file grew; the client got its answer). The assertions are about
//! bytes and upstream request counts only.

mod common;

use common::*;

use std::collections::HashSet;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The big zip: 40 MiB of incompressible data, stored.
const BIG_DATA: usize = 40 * 1024 * 1024 + 777;
const WAIT: Duration = Duration::from_secs(30);

/// An artifact the test has asked for at least once, with the exact bytes
/// the upstream has for it.
struct Known {
    path: String,
    want: Arc<Vec<u8>>,
}

/// One server on one data dir, restarted again and again, and everything
/// it was asked for so far.
struct Scenario {
    fx: Fixture,
    up: CountingUpstream,
    server: Server,
    known: Vec<Known>,
    /// Paths served after a completed fill: published, so they must survive
    /// a crash.
    durable: HashSet<String>,
}

fn big(path: &str, version: &str, data: &[u8]) -> Module {
    Module::new(path, version).file("data.bin", data.to_vec()).stored()
}

impl Scenario {
    fn new(fx: Fixture) -> Scenario {
        let up = CountingUpstream::serve(fx.root());
        let mut opts = ServerOpts::new(up.url());
        opts.cores = 2;
        let server = Server::start_with(opts);
        Scenario { fx, up, server, known: Vec::new(), durable: HashSet::new() }
    }

    fn path_of(module: &str, version: &str, ext: &str) -> String {
        format!("/{}", artifact_path(module, version, ext))
    }

    fn want(&self, module: &str, version: &str, ext: &str) -> Arc<Vec<u8>> {
        Arc::new(self.fx.artifact(module, version, ext))
    }

    fn remember(&mut self, module: &str, version: &str, ext: &str) -> String {
        let path = Self::path_of(module, version, ext);
        if !self.known.iter().any(|k| k.path == path) {
            let want = self.want(module, version, ext);
            self.known.push(Known { path: path.clone(), want });
        }
        path
    }

    /// Fetches `.info`, `.mod` and `.zip` of `module@version` (a completed
    /// fill each, so all three are published).
    fn fetch_all_kinds(&mut self, module: &str, version: &str) {
        for ext in ["info", "mod", "zip"] {
            let path = self.remember(module, version, ext);
            let want = self.want(module, version, ext);
            get_check(self.server.addr(), &path, &want).unwrap();
            self.durable.insert(path);
        }
    }

    fn segments_dir(&self) -> PathBuf {
        self.server.data_dir().join("segments")
    }

    /// Segment files, oldest first (names are fixed-width hex ids).
    fn segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.segments_dir())
            .expect("read segments dir")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        v.sort();
        v
    }

    /// The segment file written to last (where the newest record is).
    fn last_written_segment(&self) -> PathBuf {
        self.segments()
            .into_iter()
            .max_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).expect("segment mtime"))
            .expect("no segment files")
    }

    fn segment_bytes(&self) -> u64 {
        self.segments().iter().map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum()
    }

    fn kill(&mut self) {
        self.server.kill9();
    }

    /// Starts the server again on the same data dir; it must open the store
    /// and print its `listening on` line (the harness panics otherwise).
    fn start_again(&mut self) {
        self.up.set_behavior(UpstreamBehavior::default());
        self.up.release_zips();
        let recovered = |s: &Server| s.log_lines().into_iter().filter(|l| l.contains("store recovered")).collect::<Vec<_>>();
        let before = recovered(&self.server).len();
        self.server.start_again();
        // Informational only (stderr is forwarded asynchronously).
        wait_until(Duration::from_secs(2), || recovered(&self.server).len() > before);
        let line = recovered(&self.server).pop().filter(|_| recovered(&self.server).len() > before);
        eprintln!("restarted: {}", line.unwrap_or_else(|| "(no recovery line yet)".into()));
    }

    /// Fetches every known artifact and checks its bytes. With
    /// `no_refetch`, every durable artifact must come from the store: the
    /// upstream must not be asked for it again. Returns the paths that were
    /// fetched from the upstream again; afterwards all are durable.
    fn verify(&mut self, no_refetch: bool) -> Vec<String> {
        let addr = self.server.addr();
        let mut refetched = Vec::new();
        for k in &self.known {
            let before = self.up.hits(&k.path);
            if let Err(e) = get_check(addr, &k.path, &k.want) {
                panic!("after a crash the server serves wrong bytes: {e}");
            }
            if self.up.hits(&k.path) != before {
                refetched.push(k.path.clone());
            }
        }
        if no_refetch {
            let lost: Vec<&String> = refetched.iter().filter(|p| self.durable.contains(*p)).collect();
            assert!(lost.is_empty(), "published artifacts were lost by the crash and fetched again: {lost:?}");
        }
        for k in &self.known {
            self.durable.insert(k.path.clone());
        }
        refetched
    }
}

/// Polls tightly (1 ms) so a kill lands close to the event it waits for.
fn spin_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(1));
    }
    f()
}

/// A client fetching `path` in the background; the server may die under it.
fn background_get(s: &Scenario, path: &str, want: &Arc<Vec<u8>>) -> JoinHandle<Result<(), String>> {
    let (addr, path, want) = (s.server.addr(), path.to_string(), want.clone());
    thread::spawn(move || get_check(addr, &path, &want))
}

/// A client cut off by the kill may see an error or a short body, but a
/// body it did receive in full must be right.
fn check_cut_client(h: JoinHandle<Result<(), String>>) -> bool {
    match h.join().expect("client thread panicked") {
        Ok(()) => true,
        Err(e) => {
            assert!(!e.contains("differs") && !e.contains("status"), "a client got wrong bytes or a bad answer during the crash: {e}");
            false
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Moment {
    /// The upstream has the request and holds its answer.
    RequestSeen,
    /// The upstream has sent this share of the body and is stuck there.
    MidBody(f64),
    /// The upstream has just written the last body byte: the server is
    /// reading, validating, hashing or starting to store it.
    UpstreamDone,
    /// A segment file has grown by at least 1 MiB: the blob is being
    /// written or synced.
    SegmentWrite,
    /// The client got the whole answer: the blob is published.
    Answered,
}

#[test]
fn kill9_at_every_stage_of_a_big_fill_serves_only_exact_bytes() {
    let moments =
        [Moment::RequestSeen, Moment::MidBody(0.25), Moment::MidBody(0.75), Moment::UpstreamDone, Moment::SegmentWrite, Moment::Answered];
    let data = pseudo_random_bytes(BIG_DATA, 0xC0FFEE);
    let mut b = Fixture::builder();
    for (i, _) in moments.iter().enumerate() {
        b = b.module(big("example.com/crash/big", &format!("v1.0.{i}"), &data));
        for j in 0..3 {
            b = b.module(Module::new(&format!("example.com/crash/r{i}/m{j}"), "v1.0.0"));
        }
    }
    let fx = b
        .module(Module::new("example.com/crash/fresh", "v1.0.0"))
        .module(big("example.com/crash/freshbig", "v1.0.0", &data[..8 << 20]))
        .build();
    let mut s = Scenario::new(fx);

    for (i, &moment) in moments.iter().enumerate() {
        // Small artifacts of other modules, published before the crash (some
        // share a core, and so a segment, with the big fill).
        for j in 0..3 {
            s.fetch_all_kinds(&format!("example.com/crash/r{i}/m{j}"), "v1.0.0");
        }
        let version = format!("v1.0.{i}");
        let zip = s.remember("example.com/crash/big", &version, "zip");
        let want = s.want("example.com/crash/big", &version, "zip");
        assert!(want.len() >= 40 * 1024 * 1024);
        let sent_before = s.up.zip_bytes_sent();
        let seg_before = s.segment_bytes();
        match moment {
            Moment::RequestSeen => s.up.hold_zips(),
            Moment::MidBody(frac) => {
                s.up.set_behavior(UpstreamBehavior { zip_pause_at: Some((want.len() as f64 * frac) as usize), ..Default::default() });
                s.up.hold_zips();
            }
            // Slow enough (~0.4 s) that the kill can follow the last byte.
            Moment::UpstreamDone => {
                s.up.set_behavior(UpstreamBehavior { zip_chunk: 1 << 20, zip_chunk_delay: Duration::from_millis(10), ..Default::default() })
            }
            Moment::SegmentWrite | Moment::Answered => {}
        }
        let client = background_get(&s, &zip, &want);
        let reached = match moment {
            Moment::RequestSeen => s.up.wait_for_hits(&zip, 1, WAIT),
            Moment::MidBody(frac) => s.up.wait_for_zip_bytes(sent_before + (want.len() as f64 * frac) as usize, WAIT),
            Moment::UpstreamDone => spin_until(WAIT, || s.up.zip_bytes_sent() >= sent_before + want.len()),
            Moment::SegmentWrite => spin_until(WAIT, || s.segment_bytes() >= seg_before + (1 << 20)),
            Moment::Answered => {
                while !client.is_finished() {
                    thread::sleep(Duration::from_millis(5));
                }
                true
            }
        };
        assert!(reached, "round {i}: {moment:?} was not reached within {WAIT:?}");
        s.kill();
        let completed = check_cut_client(client);
        if matches!(moment, Moment::Answered) {
            assert!(completed, "round {i}: the client did not get the zip before the kill");
            s.durable.insert(zip.clone());
        }
        eprintln!("round {i}: killed at {moment:?}");
        s.start_again();
        let refetched = s.verify(true);
        eprintln!("round {i}: fetched again after restart: {refetched:?}");
    }
    assert_eq!(s.up.hits("/example.com/crash/big/@v/v1.0.5.zip"), 1, "a zip published before the kill was fetched again");

    // After all that, the store still takes new blobs and keeps them.
    s.fetch_all_kinds("example.com/crash/fresh", "v1.0.0");
    s.fetch_all_kinds("example.com/crash/freshbig", "v1.0.0");
    s.kill();
    s.start_again();
    let refetched = s.verify(true);
    assert!(refetched.is_empty(), "{refetched:?}");
}

/// Appends `bytes` to a file.
fn append(path: &Path, bytes: &[u8]) {
    let mut f = fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

fn truncate_by(path: &Path, cut: u64) -> u64 {
    let len = fs::metadata(path).unwrap().len();
    assert!(len > cut, "{} has only {len} bytes", path.display());
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len - cut).unwrap();
    f.sync_all().unwrap();
    len - cut
}

#[test]
fn hand_damaged_segment_tails_are_cut_and_refetched_never_served() {
    let data = pseudo_random_bytes(BIG_DATA, 0xBAD5EED);
    let mut b = Fixture::builder().module(big("example.com/tail/big", "v1.2.0", &data)).module(big(
        "example.com/tail/big",
        "v1.2.1",
        &data[..BIG_DATA / 2],
    ));
    for j in 0..6 {
        b = b.module(Module::new(&format!("example.com/tail/m{j}"), "v1.0.0"));
    }
    let one_record = ["example.com/tail/one/a", "example.com/tail/one/b", "example.com/tail/fresh"];
    for m in one_record {
        // Padding makes the zip a few KiB, so a damaged tail lands inside
        // its payload.
        b = b.module(Module::new(m, "v1.0.0").file("pad.bin", pseudo_random_bytes(8 << 10, 5)).stored());
    }
    let mut s = Scenario::new(b.build());
    for j in 0..6 {
        s.fetch_all_kinds(&format!("example.com/tail/m{j}"), "v1.0.0");
    }
    s.fetch_all_kinds("example.com/tail/big", "v1.2.0");
    s.fetch_all_kinds("example.com/tail/big", "v1.2.1");
    s.kill();

    // 1. Garbage appended to the newest segment: nothing published is lost.
    let newest = s.last_written_segment();
    append(&newest, &pseudo_random_bytes(4096 + 3, 99));
    s.start_again();
    let refetched = s.verify(true);
    assert!(refetched.is_empty(), "garbage after the last record lost records: {refetched:?}");

    // 2. The segment written last loses its last few bytes, which cuts into
    //    the payload of its last record (a torn write): that record, and
    //    only it, is fetched again.
    let (module, lost) = (one_record[0], Scenario::path_of(one_record[0], "v1.0.0", "zip"));
    s.remember(module, "v1.0.0", "zip");
    get_check(s.server.addr(), &lost, &s.want(module, "v1.0.0", "zip")).unwrap();
    s.kill();
    truncate_by(&s.last_written_segment(), 5);
    s.start_again();
    assert_eq!(s.verify(true), vec![lost.clone()], "exactly the torn record must be fetched again");

    // 3. Same, but the record keeps its length and loses the end of its
    //    payload to zeros (header written, payload not): the checksum
    //    catches it.
    let (module, lost) = (one_record[1], Scenario::path_of(one_record[1], "v1.0.0", "zip"));
    s.remember(module, "v1.0.0", "zip");
    get_check(s.server.addr(), &lost, &s.want(module, "v1.0.0", "zip")).unwrap();
    s.kill();
    let seg = s.last_written_segment();
    let len = truncate_by(&seg, 4096);
    append(&seg, &[0u8; 4096]);
    assert_eq!(fs::metadata(&seg).unwrap().len(), len + 4096);
    s.start_again();
    assert_eq!(s.verify(true), vec![lost.clone()], "exactly the zeroed record must be fetched again");

    // 4. The largest segment (big zips in it) cut in half: whatever was in
    //    the lost half is fetched again, correctly.
    s.kill();
    let largest = s.segments().into_iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    let len = fs::metadata(&largest).unwrap().len();
    assert!(len >= 40 << 20, "largest segment has only {len} bytes");
    truncate_by(&largest, len / 2);
    s.start_again();
    let refetched = s.verify(false);
    assert!(!refetched.is_empty(), "half a segment of records was cut but nothing had to be fetched again");
    eprintln!("after cutting {} in half, fetched again: {refetched:?}", largest.display());

    // Finally: a fresh fill works, is published, and survives a crash.
    s.fetch_all_kinds(one_record[2], "v1.0.0");
    s.kill();
    s.start_again();
    let refetched = s.verify(true);
    assert!(refetched.is_empty(), "{refetched:?}");
}
