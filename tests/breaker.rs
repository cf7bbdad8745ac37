//! Upstream resilience: a per-upstream circuit breaker (after
//! failures for `--breaker-failures` different modules in a row the upstream is skipped for
//! `--breaker-cooldown`, then one probe decides), and bounded retries of
//! requests that could not connect (`--upstream-retries`).
//!
//! The dead upstream here accepts connections and never answers, the
//! costliest way to fail: every request to it waits out the whole
//! `--upstream-timeout`. With the breaker, the first failures pay that; the
//! requests after them do not.

mod common;

use common::*;

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// An upstream that accepts connections and, while `hang` is set, never
/// answers them; otherwise it answers every request with 404.
struct Blackhole {
    server: ScriptedServer,
    hang: Arc<AtomicBool>,
    /// Lets the connections still held go when the test is over.
    stop: Arc<AtomicBool>,
}

impl Blackhole {
    fn start() -> Blackhole {
        let (hang, stop) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(false)));
        let (h, st) = (hang.clone(), stop.clone());
        let server = ScriptedServer::start(move |conn| serve(conn, &h, &st));
        Blackhole { server, hang, stop }
    }

    fn url(&self) -> String {
        self.server.url()
    }

    fn accepted(&self) -> usize {
        self.server.connections()
    }
}

fn serve(mut conn: TcpStream, hang: &AtomicBool, stop: &AtomicBool) {
    use std::io::Write as _;
    let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if hang.load(Ordering::SeqCst) {
                // Hold the request unanswered (bounded by the deadline).
                thread::sleep(Duration::from_millis(50));
                break;
            }
            got.drain(..end + 4);
            let msg = "not found: blackhole\n";
            let resp = format!("HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{msg}", msg.len());
            if conn.write_all(resp.as_bytes()).is_err() {
                return;
            }
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        // The server stops accepting as it is dropped, after this.
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn info(i: usize) -> String {
    format!("/{}", artifact_path(&format!("example.com/m{i}"), "v1.0.0", "info"))
}

fn opts(upstream: String, extra: &[&str]) -> ServerOpts {
    let mut o = ServerOpts::new(upstream);
    o.extra_args = extra.iter().map(|s| s.to_string()).collect();
    o
}

#[test]
fn a_dead_upstream_costs_one_timeout_not_one_per_request() {
    let dead = Blackhole::start();
    let server =
        Server::start_with(opts(dead.url(), &["--upstream-timeout", "1s", "--breaker-failures", "2", "--breaker-cooldown", "60s"]));
    for i in 0..2 {
        let r = http_get(server.addr(), &info(i));
        assert_eq!(r.status, 504, "{r:?}");
    }
    assert_eq!(dead.accepted(), 2);
    let started = Instant::now();
    for i in 2..12 {
        let r = http_get(server.addr(), &info(i));
        assert_eq!(r.status, 502, "{r:?}");
        assert!(r.body_str().contains("circuit open"), "{}", r.body_str());
    }
    // Ten requests that each would have waited a second.
    assert!(started.elapsed() < Duration::from_secs(5), "skipped requests must not wait: {:?}", started.elapsed());
    assert_eq!(dead.accepted(), 2, "an open circuit sends nothing upstream");
    assert!(metric(server.addr(), "gomodproxy_upstream_skipped") >= 10);
}

#[test]
fn an_open_circuit_falls_through_a_pipe_at_once() {
    let dead = Blackhole::start();
    let fx = Fixture::builder().module(Module::new("example.com/m0", "v1.0.0")).module(Module::new("example.com/m5", "v1.0.0")).build();
    let list = format!("{}|{}", dead.url(), fx.file_url());
    let server = Server::start_with(opts(list, &["--upstream-timeout", "1s", "--breaker-failures", "1", "--breaker-cooldown", "60s"]));
    // The first request waits for the dead upstream, then falls through.
    assert_eq!(http_get(server.addr(), &info(0)).status, 200);
    let started = Instant::now();
    let r = http_get(server.addr(), &info(5));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
    assert_eq!(dead.accepted(), 1);
}

#[test]
fn after_the_cooldown_one_probe_closes_the_circuit() {
    let dead = Blackhole::start();
    let server = Server::start_with(opts(
        dead.url(),
        &["--upstream-timeout", "1s", "--breaker-failures", "1", "--breaker-cooldown", "2s", "--negative-ttl", "0"],
    ));
    assert_eq!(http_get(server.addr(), &info(0)).status, 504);
    assert_eq!(http_get(server.addr(), &info(1)).status, 502, "open");
    // The upstream recovers; within the cool-down it is still skipped.
    dead.hang.store(false, Ordering::SeqCst);
    assert_eq!(http_get(server.addr(), &info(2)).status, 502, "still open");
    let accepted = dead.accepted();
    thread::sleep(Duration::from_millis(2200));
    let probe = http_get(server.addr(), &info(3));
    assert_eq!(probe.status, 404, "the probe reaches the upstream: {probe:?}");
    for i in 4..8 {
        assert_eq!(http_get(server.addr(), &info(i)).status, 404, "closed again");
    }
    assert!(dead.accepted() > accepted);
}

#[test]
fn a_refused_connection_is_retried_until_the_upstream_comes_up() {
    let fx = Fixture::builder().module(Module::new("example.com/late", "v1.0.0")).build();
    // A port with nobody listening on it yet: bound (so that no other
    // server of this parallel suite is given it) but not listening, so
    // connections to it are refused until the upstream comes up there.
    let reserved = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    reserved.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let addr = reserved.local_addr().unwrap().as_socket().unwrap();
    let target = format!("/{}", artifact_path("example.com/late", "v1.0.0", "mod"));

    let impatient = Server::start_with(opts(format!("http://{addr}"), &["--upstream-retries", "0", "--breaker-failures", "0"]));
    let r = http_get(impatient.addr(), &target);
    assert_eq!(r.status, 502, "no retries: the refusal is the answer: {r:?}");

    let patient = Server::start_with(opts(
        format!("http://{addr}"),
        &["--upstream-retries", "5", "--upstream-retry-backoff", "200ms", "--breaker-failures", "0"],
    ));
    let paddr = patient.addr();
    let t = target.clone();
    let client = thread::spawn(move || http_get(paddr, &t));
    // Retries span 200+400+800+1600+3200 ms; come up during them.
    thread::sleep(Duration::from_millis(500));
    drop(reserved);
    let upstream = CountingUpstream::serve_on(fx.root(), addr);
    let r = client.join().unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, fx.artifact("example.com/late", "v1.0.0", "mod"));
    assert_eq!(upstream.hits(&target), 1);
}

#[test]
fn answers_are_never_retried() {
    let fx = Fixture::builder().build();
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(opts(upstream.url(), &["--upstream-retries", "3", "--negative-ttl", "0"]));
    let mut b = UpstreamBehavior::default();
    let failing = info(1);
    b.status_override.insert(failing.clone(), 503);
    upstream.set_behavior(b);
    assert_eq!(http_get(server.addr(), &info(0)).status, 404);
    assert_eq!(upstream.hits(&info(0)), 1);
    assert_eq!(http_get(server.addr(), &failing).status, 502);
    assert_eq!(upstream.hits(&failing), 1);
}

#[test]
fn one_modules_5xx_never_open_the_circuit_for_other_modules() {
    // The upstream answers 500 for whatever versions of one module a client
    // chooses to ask for (a crafted path, a module it cannot build).
    const BAD: &str = "example.com/bad";
    let fx = Fixture::builder().module(Module::new("example.com/good", "v1.0.0")).build();
    let up = CountingUpstream::serve(fx.root());
    let bad_path = |i: usize| format!("/{}", artifact_path(BAD, &format!("v1.0.{i}"), "info"));
    let mut behavior = UpstreamBehavior::default();
    for i in 0..10 {
        behavior.status_override.insert(bad_path(i), 500);
    }
    up.set_behavior(behavior);
    let server = Server::start_with(opts(up.url(), &["--breaker-failures", "3", "--breaker-cooldown", "60s"]));
    for round in 0..2 {
        for i in 0..10 {
            let r = http_get(server.addr(), &bad_path(i));
            assert_eq!(r.status, 502, "round {round}, {i}: {r:?}");
            assert!(!r.body_str().contains("circuit open"), "one module's failures opened the circuit: {}", r.body_str());
        }
    }
    let good = format!("/{}", artifact_path("example.com/good", "v1.0.0", "info"));
    let r = http_get(server.addr(), &good);
    assert_eq!(r.status, 200, "another module's miss must reach the upstream: {r:?}");
    assert_eq!(metric(server.addr(), "gomodproxy_upstream_skipped"), 0);
}
