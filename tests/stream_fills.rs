//! `--stream-fills`: the requesters of an uncached zip get its bytes while
//! the upstream is still sending them, all of them from the one fetch; and
//! a fill that turns out truncated or invalid never gives anyone a complete
//! body (the last byte waits for validation), is not stored, and does not
//! stand in the way of the next good fetch.

mod common;

use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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

    /// Reads until the server closes the connection (or fails it).
    fn rest(mut self) -> Partial {
        let mut buf = [0u8; 64 << 10];
        loop {
            match self.conn.read(&mut buf) {
                Ok(0) | Err(_) => return self,
                Ok(n) => self.body.extend_from_slice(&buf[..n]),
            }
        }
    }
}

fn server(upstream: &CountingUpstream, data: &std::path::Path) -> Server {
    Server::start_with(ServerOpts {
        data_dir: Some(data.to_path_buf()),
        extra_args: ["--stream-fills", "--breaker-failures", "0", "--negative-ttl", "0"].map(String::from).to_vec(),
        ..ServerOpts::new(upstream.url())
    })
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
    // Stored: the next request is a hit with the same bytes.
    let again = http_get(server.addr(), &zip_path());
    assert_eq!(again.status, 200);
    assert!(again.body == want);
    assert_eq!(upstream.hits(&zip_path()), 1);
}

#[test]
fn a_truncated_fill_never_completes_a_body_and_is_not_kept() {
    let fx = fixture();
    let want = fx.artifact(MODULE, "v1.0.0", "zip");
    let upstream = CountingUpstream::serve(fx.root());
    upstream.set_behavior(UpstreamBehavior { zip_truncate_at: Some(want.len() - 10), ..Default::default() });
    let data = tempfile::tempdir().unwrap();
    let mut server = server(&upstream, data.path());

    let cut = Partial::get(server.addr(), &zip_path(), 0).rest();
    assert_eq!((cut.status, cut.length), (200, want.len()));
    assert!(cut.body.len() < want.len(), "a failed fill must be cut short");
    assert!(cut.body[..] == want[..cut.body.len()]);
    assert_eq!(http_get(server.addr(), "/healthz").status, 200);

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

    let cut = Partial::get(server.addr(), &rel, 0).rest();
    assert_eq!((cut.status, cut.length), (200, n));
    assert!(cut.body.len() < n, "an invalid zip must never be delivered complete");

    server.restart();
    std::fs::write(fx.root().join(rel.trim_start_matches('/')), &want).unwrap();
    let good = http_get(server.addr(), &rel);
    assert_eq!(good.status, 200);
    assert!(good.body == want, "nothing of the invalid fill was kept");
}

#[test]
fn a_stream_cut_by_a_failing_upstream_is_refilled_by_the_next_one_behind_a_pipe() {
    let fx = fixture();
    let want = fx.artifact(MODULE, "v1.0.0", "zip");
    let bad = CountingUpstream::serve(fx.root());
    bad.set_behavior(UpstreamBehavior { zip_truncate_at: Some(want.len() / 2), ..Default::default() });
    let good = CountingUpstream::serve(fx.root());
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(ServerOpts {
        data_dir: Some(data.path().to_path_buf()),
        extra_args: ["--stream-fills", "--breaker-failures", "0"].map(String::from).to_vec(),
        ..ServerOpts::new(format!("{}|{}", bad.url(), good.url()))
    });
    let first = Partial::get(server.addr(), &zip_path(), 0).rest();
    // Either cut short (it streamed from the failing upstream) or whole
    // (it came in after the failure and waited for the fallback's fill).
    assert!(first.body.len() < want.len() || first.body == want, "never a complete body that is not the zip");
    assert!(good.wait_for_hits(&zip_path(), 1, Duration::from_secs(30)), "the fallback upstream is asked");
    let r = http_get(server.addr(), &zip_path());
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(r.body == want);
    assert_eq!(good.hits(&zip_path()), 1, "filled once, from the fallback");
}
