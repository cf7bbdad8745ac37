//! Limits that keep one client from holding more than its share, and
//! graceful degradation when the disk fills up:
//! * a request head that never completes is cut after `--header-timeout`,
//!   an idle keep-alive connection after `--idle-timeout`, while other
//!   clients are served;
//! * `--max-connections` holds further connections in the backlog (not
//!   answered) until one of the open ones closes;
//! * a client reading a 40 MiB zip very slowly does not delay small
//!   requests on the same core;
//! * clients that stall or vanish mid-zip leave the server healthy and
//!   their connections closed;
//! * a blob that does not fit on the disk is passed through, counted in
//!   `gomodproxy_store_errors`, and never served half-written after a
//!   restart.
//!
//! Every wait is bounded; the only negative check ("no answer") waits 1 s.

mod common;

use common::*;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const V: &str = "v1.0.0";
const SMALL: &str = "example.com/limits/small";
const BIG: &str = "example.com/limits/big";
/// The longest any "must happen" wait may take before the test fails.
const BOUND: Duration = Duration::from_secs(10);

fn server(fx: &Fixture, cores: usize, extra: &[&str]) -> Server {
    let mut opts = ServerOpts::new(fx.file_url());
    opts.cores = cores;
    opts.extra_args = extra.iter().map(|s| s.to_string()).collect();
    Server::start_with(opts)
}

fn small_fixture() -> Fixture {
    Fixture::builder().module(Module::new(SMALL, V)).build()
}

fn big_fixture() -> Fixture {
    Fixture::builder()
        .module(Module::new(SMALL, V))
        .module(Module::new(BIG, V).file("data.bin", pseudo_random_bytes(BIG_DATA_LEN, 0x5EED)).stored())
        .build()
}

fn path(module: &str, ext: &str) -> String {
    format!("/{}", artifact_path(module, V, ext))
}

fn raw_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_nodelay(true).unwrap();
    s
}

/// A connection whose receive buffer is tiny, so the server's sends fill it
/// quickly and then depend on how fast we read.
fn slow_connect(addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(16 << 10).unwrap();
    s.connect(&addr.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_nodelay(true).unwrap();
    s
}

fn get_bytes(addr: SocketAddr, p: &str) -> Vec<u8> {
    format!("GET {p} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
}

/// Reads until the peer closes the connection (EOF or reset), discarding
/// data, for at most `bound`. Returns how long that took, or None if the
/// connection was still open at the end.
fn wait_closed(s: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 64 << 10];
    loop {
        let left = bound.checked_sub(start.elapsed())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                if start.elapsed() >= bound {
                    return None;
                }
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
}

/// Open client connections the server reports, less the `/metrics`
/// connection asking.
fn open_connections(addr: SocketAddr) -> u64 {
    metric(addr, "gomodproxy_connections_open").saturating_sub(1)
}

fn assert_healthy(addr: SocketAddr) {
    let r = http_get(addr, "/healthz");
    assert_eq!(r.status, 200, "/healthz: {r:?}");
}

#[test]
fn slowloris_heads_are_cut_after_the_header_timeout_while_others_are_served() {
    let fx = small_fixture();
    let server = server(&fx, 1, &["--header-timeout", "1s"]);
    let addr = server.addr();

    // A head that stops mid-way, and one that trickles a byte every 300 ms
    // (each read is quick; only the deadline from the first byte stops it).
    let mut stuck = raw_connect(addr);
    stuck.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    let trickle_stop = Arc::new(AtomicBool::new(false));
    let mut trickle = raw_connect(addr);
    let mut writer = trickle.try_clone().unwrap();
    let stop = trickle_stop.clone();
    let trickler = thread::spawn(move || {
        for b in b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter().cycle() {
            if stop.load(Ordering::SeqCst) || writer.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(300));
        }
    });

    // Meanwhile (same core) a normal client is served at once, and so is a
    // slow but legitimate one whose head completes within the timeout.
    let r = http_get(addr, &path(SMALL, "mod"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), fx.module(SMALL, V).mod_file());
    let mut legit = RawConn::connect(addr);
    let req = legit.request_bytes("GET", "/healthz");
    let (a, b) = req.split_at(req.len() / 2);
    legit.send(a).unwrap();
    thread::sleep(Duration::from_millis(100));
    legit.send(b).unwrap();
    assert_eq!(legit.read_response(false).unwrap().status, 200);

    let took = wait_closed(&mut stuck, BOUND);
    assert!(took.is_some(), "a request head stuck mid-way was not cut within {BOUND:?} (--header-timeout 1s)");
    let took = wait_closed(&mut trickle, BOUND);
    trickle_stop.store(true, Ordering::SeqCst);
    trickler.join().unwrap();
    assert!(took.is_some(), "a head trickling one byte every 300 ms was not cut within {BOUND:?} (--header-timeout 1s)");
    assert_healthy(addr);
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let fx = small_fixture();
    let server = server(&fx, 1, &["--idle-timeout", "1s"]);
    let addr = server.addr();

    // Kept alive between requests that come quicker than the timeout...
    let mut c = RawConn::connect(addr);
    assert_eq!(c.request("GET", "/healthz").status, 200);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(c.request("GET", &path(SMALL, "info")).status, 200);
    // ...and closed once idle for longer.
    c.set_read_timeout(BOUND);
    assert!(c.peer_closed(), "an idle keep-alive connection was not closed within {BOUND:?} (--idle-timeout 1s)");

    // A connection that never sends a byte is idle too.
    let mut silent = raw_connect(addr);
    assert!(wait_closed(&mut silent, BOUND).is_some(), "a silent connection was not closed within {BOUND:?} (--idle-timeout 1s)");
    assert_healthy(addr);
}

#[test]
fn a_connection_idle_past_the_buffer_grace_serves_pipelined_requests_and_cuts_a_stuck_head() {
    // Idle for longer than the 500 ms grace, a keep-alive connection has
    // given its buffers back and waits on one byte: what arrives then must
    // be read whole, and the header timeout must still run from that byte.
    let fx = small_fixture();
    let server = server(&fx, 1, &["--idle-timeout", "10s", "--header-timeout", "1s"]);
    let addr = server.addr();
    let mut c = RawConn::connect(addr);
    assert_eq!(c.request("GET", "/healthz").status, 200);
    thread::sleep(Duration::from_millis(800));
    let mut two = c.request_bytes("GET", &path(SMALL, "mod"));
    two.extend(c.request_bytes("GET", &path(SMALL, "info")));
    c.send(&two).unwrap();
    let (a, b) = (c.read_response(false).unwrap(), c.read_response(false).unwrap());
    assert_eq!((a.status, a.body_str()), (200, fx.module(SMALL, V).mod_file()));
    assert_eq!((b.status, b.body_str()), (200, fx.module(SMALL, V).info_json()));
    thread::sleep(Duration::from_millis(800));
    c.send(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    c.set_read_timeout(BOUND);
    assert!(c.peer_closed(), "a head stuck after an idle spell was not cut within {BOUND:?} (--header-timeout 1s)");
    assert_healthy(addr);
}

#[test]
fn max_connections_holds_the_next_connection_until_one_closes() {
    let fx = small_fixture();
    let server = server(&fx, 1, &["--max-connections", "4"]);
    let addr = server.addr();

    // Four connections, each answered once (so surely accepted), kept open.
    let mut open: Vec<RawConn> = (0..4)
        .map(|_| {
            let mut c = RawConn::connect(addr);
            assert_eq!(c.request("GET", "/healthz").status, 200);
            c
        })
        .collect();

    // The fifth: the kernel completes the handshake (backlog), but the
    // server must not take it while four are open.
    let mut fifth = raw_connect(addr);
    fifth.write_all(&get_bytes(addr, "/healthz")).unwrap();
    fifth.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 4096];
    match fifth.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(n) => {
            panic!("the 5th connection was answered while 4 were open (--max-connections 4): {:?}", String::from_utf8_lossy(&buf[..n]))
        }
        Err(e) => panic!("the 5th connection failed instead of waiting: {e}"),
    }

    // One of the four goes away: the fifth is answered.
    drop(open.pop());
    fifth.set_read_timeout(Some(BOUND)).unwrap();
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match fifth.read(&mut buf) {
            Ok(0) => panic!("the 5th connection was closed unanswered"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("the 5th connection was not answered within {BOUND:?} after a slot freed up: {e}"),
        }
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&got));
    // The remaining three still work.
    for c in &mut open {
        assert_eq!(c.request("GET", "/healthz").status, 200);
    }
}

#[test]
fn a_slow_reader_of_a_big_zip_does_not_delay_small_requests_on_its_core() {
    // By sendfile, and from the segment's map (the default to loopback).
    for sendfile in ["on", "off"] {
        a_slow_reader_does_not_delay_others(sendfile);
    }
}

fn a_slow_reader_does_not_delay_others(sendfile: &str) {
    let fx = big_fixture();
    let server = server(&fx, 1, &["--sendfile", sendfile]);
    let addr = server.addr();
    let zip = path(BIG, "zip");
    let want = fx.artifact(BIG, V, "zip");
    assert!(want.len() >= 40 << 20);
    // Cache everything first: the test is about sending, not filling.
    get_check(addr, &zip, &want).unwrap();
    get_check(addr, &path(SMALL, "info"), &fx.artifact(SMALL, V, "info")).unwrap();

    // 64 KiB every 100 ms: the whole zip would take over a minute. It gives
    // up after 20 s (then `slow_done` is set; small requests finishing
    // after that prove nothing).
    let received = Arc::new(AtomicUsize::new(0));
    let slow_done = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let slow = {
        let (received, slow_done, stop) = (received.clone(), slow_done.clone(), stop.clone());
        let total = want.len();
        let mut s = slow_connect(addr);
        s.write_all(&get_bytes(addr, &zip)).unwrap();
        s.set_read_timeout(Some(BOUND)).unwrap();
        thread::spawn(move || {
            let started = Instant::now();
            let mut buf = vec![0u8; 64 << 10];
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(20) {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if received.fetch_add(n, Ordering::SeqCst) + n >= total {
                            break;
                        }
                    }
                }
                thread::sleep(Duration::from_millis(100));
            }
            slow_done.store(true, Ordering::SeqCst);
        })
    };
    assert!(wait_until(BOUND, || received.load(Ordering::SeqCst) > 0), "the slow client got no zip bytes");

    let info = fx.artifact(SMALL, V, "info");
    let mut c = RawConn::connect(addr);
    for i in 0..20 {
        let r = if i % 2 == 0 { c.request("GET", "/healthz") } else { c.request("GET", &path(SMALL, "info")) };
        assert_eq!(r.status, 200);
        if i % 2 == 1 {
            assert_eq!(r.body, info);
        }
        assert!(
            !slow_done.load(Ordering::SeqCst),
            "small request {i} finished only after the slow reader had finished or given up ({} of {} bytes read)",
            received.load(Ordering::SeqCst),
            want.len()
        );
    }
    let got = received.load(Ordering::SeqCst);
    assert!(got < want.len(), "the slow reader was not slow: it read all {got} bytes");
    stop.store(true, Ordering::SeqCst);
    slow.join().unwrap();
    assert_healthy(addr);
}

#[test]
fn clients_that_stall_or_vanish_mid_zip_leave_the_server_healthy() {
    let fx = big_fixture();
    let server = server(&fx, 1, &["--write-timeout", "2s"]);
    let addr = server.addr();
    let zip = path(BIG, "zip");
    let want = fx.artifact(BIG, V, "zip");
    get_check(addr, &zip, &want).unwrap();
    assert!(wait_until(BOUND, || open_connections(addr) == 0), "connections still open before the test: {}", open_connections(addr));

    // Three clients read 64 KiB and then stop reading (socket kept open);
    // three read 1 MiB and then disconnect.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut s = slow_connect(addr);
        s.write_all(&get_bytes(addr, &zip)).unwrap();
        s.set_read_timeout(Some(BOUND)).unwrap();
        let mut buf = vec![0u8; 64 << 10];
        s.read_exact(&mut buf).unwrap();
        stalled.push(s);
    }
    for _ in 0..3 {
        let mut s = raw_connect(addr);
        s.write_all(&get_bytes(addr, &zip)).unwrap();
        s.set_read_timeout(Some(BOUND)).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        s.read_exact(&mut buf).unwrap();
        drop(s);
    }
    // Served at once while six responses are stuck or broken.
    assert_healthy(addr);
    get_check(addr, &path(SMALL, "mod"), &fx.artifact(SMALL, V, "mod")).unwrap();

    // The stalled writes hit --write-timeout (2 s) and the vanished clients'
    // sends fail: every one of those connections gets closed, while the
    // stalled clients still hold theirs open.
    let bound = Duration::from_secs(15);
    assert!(
        wait_until(bound, || open_connections(addr) == 0),
        "{} connections still open {bound:?} after clients stalled (--write-timeout 2s) or disconnected mid-zip",
        open_connections(addr)
    );
    for s in &mut stalled {
        assert!(wait_closed(s, BOUND).is_some(), "a stalled client's connection was not closed by the server");
    }
    assert_healthy(addr);
    get_check(addr, &zip, &want).unwrap();
}

/// A small tmpfs, unmounted (lazily if busy) on drop.
struct Tmpfs {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::Builder::new().prefix("gomodproxy-tmpfs-").tempdir().map_err(|e| e.to_string())?;
        let mount = dir.path().join("data");
        std::fs::create_dir(&mount).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Tmpfs { _dir: dir, mount })
    }

    fn path(&self) -> &Path {
        &self.mount
    }

    /// Remounts it read-only (or back to read-write).
    fn remount(&self, read_only: bool) {
        let how = if read_only { "remount,ro" } else { "remount,rw" };
        let ok = Command::new("mount").args(["-o", how]).arg(&self.mount).status().is_ok_and(|s| s.success());
        assert!(ok, "mount -o {how} failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.mount).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
    }
}

#[test]
fn a_blob_larger_than_the_free_disk_is_passed_through_and_never_served_half_written() {
    let tmpfs = match Tmpfs::mount("2m") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIPPED a_blob_larger_than_the_free_disk_is_passed_through_and_never_served_half_written: cannot mount a 2 MiB tmpfs ({why}); needs root with CAP_SYS_ADMIN");
            return;
        }
    };
    let later = "example.com/lim/later";
    let fx = Fixture::builder()
        .module(Module::new(SMALL, V))
        .module(Module::new(later, V))
        .module(Module::new(BIG, V).file("data.bin", pseudo_random_bytes(8 << 20, 0xF011)).stored())
        .build();
    let up = CountingUpstream::serve(fx.root());
    let mut opts = ServerOpts::new(up.url());
    opts.cores = 1;
    opts.data_dir = Some(tmpfs.path().to_path_buf());
    // Declared after `tmpfs`, so dropped (killed) before it is unmounted.
    let mut server = Server::start_with(opts);
    let addr = server.addr();

    // Small blobs fit and are stored.
    let small: Vec<(String, Vec<u8>)> = ["info", "mod"].iter().map(|e| (path(SMALL, e), fx.artifact(SMALL, V, e))).collect();
    for (p, want) in &small {
        get_check(addr, p, want).unwrap();
    }
    // 8 MiB into 2 MiB: the store fails, the client still gets every byte.
    let zip = path(BIG, "zip");
    let want = fx.artifact(BIG, V, "zip");
    get_check(addr, &zip, &want).unwrap_or_else(|e| panic!("a zip that does not fit on the disk was not passed through: {e}"));
    assert_eq!(up.hits(&zip), 1);
    assert!(metric(addr, "gomodproxy_store_errors") >= 1, "gomodproxy_store_errors did not count the failed store");
    assert!(
        server.wait_for_log(BOUND, |l| l.contains(BIG) && l.to_ascii_lowercase().contains("fail")),
        "the server logged nothing about failing to store {BIG}"
    );
    assert_healthy(addr);

    // More failures neither multiply segment files nor stop pass-through.
    let segment_files = || std::fs::read_dir(tmpfs.path().join("segments")).unwrap().count();
    let files = segment_files();
    for _ in 0..5 {
        get_check(addr, &zip, &want).unwrap();
    }
    assert_eq!(segment_files(), files, "failed stores must not open new segment files");
    // Writes resume after the back-off: a small blob that fits is stored.
    thread::sleep(Duration::from_secs(2));
    let later_mod = path(later, "mod");
    get_check(addr, &later_mod, &fx.artifact(later, V, "mod")).unwrap();

    // Crash and restart on the same (full, half-written) data dir: the
    // store opens, keeps what it had, and serves nothing half-written: the
    // zip comes from the upstream again, complete.
    server.kill9();
    server.start_again();
    let addr = server.addr();
    for (p, want) in &small {
        get_check(addr, p, want).unwrap();
        assert_eq!(up.hits(p), 1, "{p} was stored before the disk filled up, yet fetched again");
    }
    get_check(addr, &later_mod, &fx.artifact(later, V, "mod")).unwrap();
    assert_eq!(up.hits(&later_mod), 1, "the blob stored after the back-off must survive the restart");
    get_check(addr, &zip, &want).unwrap_or_else(|e| panic!("after a restart on a full disk: {e}"));
    assert_eq!(up.hits(&zip), 7, "the zip that did not fit must be fetched from the upstream again");
    assert_healthy(addr);
}

/// A read-only data directory (a mounted snapshot of a store, a cold
/// standby): the server starts, serves what the store holds, passes every
/// miss through without storing it, and says so loudly (log and metric).
#[test]
fn a_read_only_data_directory_is_served_read_only_and_misses_pass_through() {
    let tmpfs = match Tmpfs::mount("16m") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIPPED a_read_only_data_directory_is_served_read_only_and_misses_pass_through: cannot mount a tmpfs ({why}); needs root with CAP_SYS_ADMIN");
            return;
        }
    };
    let later = "example.com/limits/ro-later";
    let fx = Fixture::builder().module(Module::new(SMALL, V)).module(Module::new(later, V)).build();
    let up = CountingUpstream::serve(fx.root());
    let mut opts = ServerOpts::new(up.url());
    opts.cores = 1;
    opts.data_dir = Some(tmpfs.path().to_path_buf());
    let mut server = Server::start_with(opts);
    let stored: Vec<(String, Vec<u8>)> = ["info", "mod", "zip"].iter().map(|e| (path(SMALL, e), fx.artifact(SMALL, V, e))).collect();
    for (p, want) in &stored {
        get_check(server.addr(), p, want).unwrap();
    }
    server.stop();
    tmpfs.remount(true);
    server.start_again();
    let addr = server.addr();
    assert!(server.wait_for_log(BOUND, |l| l.contains("READ-ONLY")), "no loud warning about the read-only directory");
    assert_eq!(metric(addr, "gomodproxy_store_read_only"), 1);
    for (p, want) in &stored {
        get_check(addr, p, want).unwrap();
        assert_eq!(up.hits(p), 1, "{p}: what the store holds is served from it");
    }
    let miss = path(later, "mod");
    for n in 1..=2 {
        get_check(addr, &miss, &fx.artifact(later, V, "mod")).unwrap();
        assert_eq!(up.hits(&miss), n, "a miss is passed through, not stored");
    }
    assert_healthy(addr);
    server.stop();
    tmpfs.remount(false);
}
