//! Serve-while-filling (on by default for zips of 1 MiB and more;
//! `--stream-fills`): the requesters of an uncached zip get its bytes while
//! the upstream is still sending them, all of them from the one fetch; and
//! a fill that turns out truncated or invalid never gives anyone a complete
//! body (the last byte waits for validation), is not stored, makes the
//! next request for it a whole fetch that gets the 502 with the reason,
//! and does not stand in the way of the next good fetch.

mod common;

use common::*;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

const MODULE: &str = "example.com/streamed";
const DATA: usize = 3 << 20;

fn fixture() -> Fixture {
    Fixture::builder().module(Module::new(MODULE, "v1.0.0").file("data.bin", pseudo_random_bytes(DATA, 7)).stored()).build()
}

fn zip_path() -> String {
    format!("/{}", artifact_path(MODULE, "v1.0.0", "zip"))
}

/// A GET whose response is read piecemeal: the status, the announced
/// length, and the body bytes so far.
struct Partial {
    conn: TcpStream,
    status: u16,
    length: usize,
    body: Vec<u8>,
}

impl Partial {
    /// Sends the request and reads until the head and at least `min_body`
    /// body bytes arrived (bounded: 30 s without progress fails).
    fn get(addr: SocketAddr, path: &str, min_body: usize) -> Partial {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(conn, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 64 << 10];
        let head_end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = conn.read(&mut buf).expect("response head");
            assert!(n > 0, "closed before the head");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let length = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
            .unwrap_or(0);
        let mut p = Partial { conn, status, length, body: raw[head_end..].to_vec() };
        while p.body.len() < min_body.min(p.length) {
            let n = p.conn.read(&mut buf).expect("body bytes");
            assert!(n > 0, "closed after {} body bytes", p.body.len());
            p.body.extend_from_slice(&buf[..n]);
        }
        p
    }

    /// Reads until the server closes the connection (or resets it); a
    /// server that stops sending without closing fails the test.
    fn rest(mut self) -> Partial {
        let mut buf = [0u8; 64 << 10];
        loop {
            match self.conn.read(&mut buf) {
                Ok(0) => return self,
                Ok(n) => self.body.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("the server neither finished nor cut the body ({} bytes so far)", self.body.len())
                }
                Err(_) => return self,
            }
        }
    }
}

fn server_with(upstream: &CountingUpstream, data: &std::path::Path, extra: &[&str]) -> Server {
    let mut args: Vec<String> = ["--breaker-failures", "0", "--negative-ttl", "0"].map(String::from).to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    Server::start_with(ServerOpts { data_dir: Some(data.to_path_buf()), extra_args: args, ..ServerOpts::new(upstream.url()) })
}

/// Default settings: the 3 MiB zip is above the 1 MiB streaming threshold.
fn server(upstream: &CountingUpstream, data: &std::path::Path) -> Server {
    server_with(upstream, data, &[])
}

#[test]
fn requesters_get_a_zip_while_it_arrives_from_one_fetch() {
    let fx = fixture();
    let want = fx.artifact(MODULE, "v1.0.0", "zip");
    let upstream = CountingUpstream::serve(fx.root());
    // The upstream sends the head and 1 MiB, then stops until released.
    upstream.set_behavior(UpstreamBehavior { zip_pause_at: Some(1 << 20), ..Default::default() });
    upstream.hold_zips();
    let data = tempfile::tempdir().unwrap();
    let server = server(&upstream, data.path());

    let first = Partial::get(server.addr(), &zip_path(), 512 << 10);
    let second = Partial::get(server.addr(), &zip_path(), 512 << 10);
    for p in [&first, &second] {
        assert_eq!((p.status, p.length), (200, want.len()), "the announced length is the zip's");
        assert!(p.body.len() <= 1 << 20, "no more than the upstream sent");
        assert!(p.body[..] == want[..p.body.len()], "the first bytes are the zip's");
    }
    assert!(upstream.zip_bytes_sent() < want.len(), "the bytes came while the upstream was still sending");
    assert_eq!(upstream.hits(&zip_path()), 1, "one fetch for both");

    upstream.release_zips();
    for p in [first.rest(), second.rest()] {
        assert!(p.body == want, "complete and correct ({} of {} bytes)", p.body.len(), want.len());
    }
    assert_eq!(metric(server.addr(), "gomodproxy_streamed_fills"), 1);
    // Stored: the next request is a hit with the same bytes.
    let again = http_get(server.addr(), &zip_path());
    assert_eq!(again.status, 200);
    assert!(again.body == want);
    assert_eq!(upstream.hits(&zip_path()), 1);
}

#[test]
fn zips_below_the_threshold_or_with_streaming_off_arrive_whole() {
    let fx = fixture();
    let want = fx.artifact(MODULE, "v1.0.0", "zip");
    for setting in ["8MiB", "off"] {
        let upstream = CountingUpstream::serve(fx.root());
        upstream.set_behavior(UpstreamBehavior { zip_chunk: 256 << 10, zip_chunk_delay: Duration::from_millis(5), ..Default::default() });
        let data = tempfile::tempdir().unwrap();
        let server = server_with(&upstream, data.path(), &["--stream-fills", setting]);
        let r = http_get(server.addr(), &zip_path());
        assert_eq!(r.status, 200, "{setting}: {}", r.body_str());
        assert!(r.body == want, "{setting}");
        assert_eq!(metric(server.addr(), "gomodproxy_streamed_fills"), 0, "{setting}: not streamed");
    }
}

/// Opens a deterministic window: the upstream has sent 1 MiB of the zip
/// and the client has received some of it (so streaming began); on
/// release the upstream goes on as `behavior` says.
fn streaming_then(upstream: &CountingUpstream, server: &Server, behavior: UpstreamBehavior) -> Partial {
    upstream.set_behavior(UpstreamBehavior { zip_pause_at: Some(1 << 20), ..behavior });
    upstream.hold_zips();
    let p = Partial::get(server.addr(), &zip_path(), 256 << 10);
    upstream.release_zips();
    p.rest()
}

#[test]
fn a_truncated_fill_never_completes_a_body_and_is_not_kept() {
    let fx = fixture();
    let want = fx.artifact(MODULE, "v1.0.0", "zip");
    let upstream = CountingUpstream::serve(fx.root());
    let data = tempfile::tempdir().unwrap();
    let mut server = server(&upstream, data.path());

    let truncated = UpstreamBehavior { zip_truncate_at: Some(want.len() - 10), ..Default::default() };
    let cut = streaming_then(&upstream, &server, truncated.clone());
    assert_eq!((cut.status, cut.length), (200, want.len()));
    assert!(cut.body.len() < want.len(), "a failed fill must be cut short");
    assert!(cut.body[..] == want[..cut.body.len()]);
    assert_eq!(http_get(server.addr(), "/healthz").status, 200);
    assert!(wait_until(Duration::from_secs(10), || metric(server.addr(), "gomodproxy_streams_cut") == 1));

    // Still broken: fetched whole this time, so the client learns why.
    upstream.set_behavior(truncated);
    let r = http_get(server.addr(), &zip_path());
    assert_eq!(r.status, 502, "{}", r.body_str());
    assert!(r.body_str().contains("upstream"), "{}", r.body_str());

    upstream.set_behavior(UpstreamBehavior::default());
    server.restart();
    let good = http_get(server.addr(), &zip_path());
    assert_eq!(good.status, 200);
    assert!(good.body == want, "the next fetch succeeds with the right bytes");
}

#[test]
fn an_invalid_zip_is_held_back_by_its_last_byte() {
    let fx = fixture();
    let want = fx.artifact(MODULE, "v1.0.0", "zip");
    // Same length, but not a valid zip: validation fails only at the end.
    let mut bad = want.clone();
    let n = bad.len();
    bad[n - 22..].fill(0);
    let rel = zip_path();
    std::fs::write(fx.root().join(rel.trim_start_matches('/')), &bad).unwrap();
    let upstream = CountingUpstream::serve(fx.root());
    let data = tempfile::tempdir().unwrap();
    let mut server = server(&upstream, data.path());

    let cut = streaming_then(&upstream, &server, UpstreamBehavior::default());
    assert_eq!((cut.status, cut.length), (200, n));
    assert!(cut.body.len() < n, "an invalid zip must never be delivered complete");
    assert!(cut.body[..] == bad[..cut.body.len()]);

    let r = http_get(server.addr(), &rel);
    assert_eq!(r.status, 502, "the next request gets the reason: {}", r.body_str());
    assert!(r.body_str().contains("zip"), "{}", r.body_str());

    server.restart();
    std::fs::write(fx.root().join(rel.trim_start_matches('/')), &want).unwrap();
    let good = http_get(server.addr(), &rel);
    assert_eq!(good.status, 200);
    assert!(good.body == want, "nothing of the invalid fill was kept");
}

/// A fill that fails before its first bytes reach anyone still gives its
/// requesters a status with the reason, not a cut connection.
#[test]
fn a_fill_failing_before_its_first_bytes_is_a_clear_error() {
    let fx = fixture();
    let want = fx.artifact(MODULE, "v1.0.0", "zip");
    let upstream = CountingUpstream::serve(fx.root());
    // The head announces 3 MiB; then the connection closes.
    upstream.set_behavior(UpstreamBehavior { zip_truncate_at: Some(0), ..Default::default() });
    let data = tempfile::tempdir().unwrap();
    let server = server(&upstream, data.path());
    let r = http_get(server.addr(), &zip_path());
    assert_eq!(r.status, 502, "{}", r.body_str());
    assert!(r.body_str().contains("upstream"), "{}", r.body_str());
    upstream.set_behavior(UpstreamBehavior::default());
    let good = http_get(server.addr(), &zip_path());
    assert!(good.status == 200 && good.body == want);
}

#[test]
fn a_stream_cut_by_a_failing_upstream_is_refilled_by_the_next_one_behind_a_pipe() {
    let fx = fixture();
    let want = fx.artifact(MODULE, "v1.0.0", "zip");
    let bad = CountingUpstream::serve(fx.root());
    let good = CountingUpstream::serve(fx.root());
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(ServerOpts {
        data_dir: Some(data.path().to_path_buf()),
        extra_args: ["--breaker-failures", "0"].map(String::from).to_vec(),
        ..ServerOpts::new(format!("{}|{}", bad.url(), good.url()))
    });
    // The first requester is streaming from the failing upstream; a second
    // one joins that stream.
    let truncated = UpstreamBehavior { zip_truncate_at: Some(want.len() / 2), zip_pause_at: Some(1 << 20), ..Default::default() };
    bad.set_behavior(truncated);
    bad.hold_zips();
    let first = Partial::get(server.addr(), &zip_path(), 256 << 10);
    let second = Partial::get(server.addr(), &zip_path(), 256 << 10);
    good.hold_zips();
    bad.release_zips();
    assert!(good.wait_for_hits(&zip_path(), 1, Duration::from_secs(30)), "the fallback upstream is asked");
    // A third requester arrives while the fallback fills: it waits for that
    // fill instead of joining the void stream.
    let third = thread::spawn({
        let addr = server.addr();
        move || http_get(addr, &zip_path())
    });
    // (The second requester joined the stream; the third is the first to
    // wait on a fill.)
    assert!(wait_until(Duration::from_secs(30), || metric(server.addr(), "gomodproxy_coalesced") >= 2), "the third requester waits");
    good.release_zips();
    for p in [first.rest(), second.rest()] {
        assert_eq!(p.status, 200);
        assert!(p.body.len() < want.len(), "the void stream is cut short");
    }
    let r = third.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(r.body == want);
    let r = http_get(server.addr(), &zip_path());
    assert!(r.status == 200 && r.body == want);
    assert_eq!(good.hits(&zip_path()), 1, "filled once, from the fallback");
    assert_eq!(bad.hits(&zip_path()), 1);
}

/// The go command itself: a download cut short while streaming is an
/// error (never a module in its cache), the next run names the reason
/// (the fill is then fetched whole), and once the upstream is fixed the
/// module downloads with the hash a direct download gives.
#[test]
fn the_go_command_sees_a_cut_download_fail_and_then_the_reason() {
    let fx = fixture();
    let upstream = CountingUpstream::serve(fx.root());
    // Slow enough that the stream has begun long before the body ends short.
    upstream.set_behavior(UpstreamBehavior {
        zip_chunk: 256 << 10,
        zip_chunk_delay: Duration::from_millis(20),
        zip_truncate_at: Some(fx.artifact(MODULE, "v1.0.0", "zip").len() - 10),
        ..Default::default()
    });
    let data = tempfile::tempdir().unwrap();
    let server = server(&upstream, data.path());
    let go = GoEnv::new(server.url());
    let target = format!("{MODULE}@v1.0.0");
    let download = ["mod", "download", "-json", target.as_str()];

    // A cut stream first, or (had the fill failed before its first bytes
    // went out) the reason at once; either way a streamed failure makes the
    // next fill a whole one, so the reason comes by the second run.
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let out = go.try_run(&download);
        assert!(!out.status.success(), "a failed fill must fail the download");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        // (The status with its text: a port number may hold "502" too.)
        if text.contains("502 Bad Gateway") {
            reasons.push(text);
            break;
        }
        assert!(text.contains("unexpected EOF"), "a cut stream reads as a truncated download: {text}");
    }
    assert!(!reasons.is_empty(), "no run named the upstream failure");
    assert!(reasons[0].contains("upstream"), "{}", reasons[0]);
    assert!(!go.gomodcache().join(format!("{MODULE}@v1.0.0")).exists(), "nothing of the bad fill was extracted");

    upstream.set_behavior(UpstreamBehavior::default());
    let got: serde_json::Value = serde_json::from_str(&go.run(&download)).unwrap();
    let direct = GoEnv::new(fx.file_url());
    let want: serde_json::Value = serde_json::from_str(&direct.run(&download)).unwrap();
    assert_eq!(got["Sum"], want["Sum"], "the h1: hash of a direct download");
    assert!(got["Sum"].as_str().is_some_and(|s| s.starts_with("h1:")));
}
