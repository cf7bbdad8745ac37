//! A slow upstream answer for one module never holds up another module's
//! miss: fetches run on threads of their own, at most
//! `--module-fetch-concurrency` for any one module, within
//! `--fetch-concurrency` per core. (Before, four answers dripping for one
//! module took every fetch thread of a core, and every other miss waited.)

mod common;

use common::*;

use std::io::Write as _;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const SLOW: &str = "example.com/iso/slow";
const FAST: &str = "example.com/iso/fast";
const BOUND: Duration = Duration::from_secs(20);

/// Answers from the fixture; requests for SLOW are held (bounded) until released.
fn answer(mut conn: TcpStream, root: &std::path::Path, held: &AtomicUsize, release: &AtomicBool) {
    let Some(head) = read_request_head(&mut conn) else { return };
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    if path.contains(SLOW) {
        held.fetch_add(1, Ordering::SeqCst);
        let until = Instant::now() + BOUND;
        while !release.load(Ordering::SeqCst) && Instant::now() < until {
            thread::sleep(Duration::from_millis(10));
        }
    }
    let resp = match percent_decode_path(&path).and_then(|p| fixture_file(root, &p)) {
        Some(body) => {
            let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
            r.extend_from_slice(&body);
            r
        }
        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = conn.write_all(&resp);
}

#[test]
fn slow_fetches_for_one_module_never_hold_up_another_modules_miss() {
    let versions: Vec<String> = (0..6).map(|i| format!("v1.0.{i}")).collect();
    let mut b = Fixture::builder().module(Module::new(FAST, "v1.0.0"));
    for v in &versions {
        b = b.module(Module::new(SLOW, v));
    }
    let fx = b.build();
    let (held, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let (root, h, r) = (fx.root().to_path_buf(), held.clone(), release.clone());
    let up = ScriptedServer::start(move |conn| answer(conn, &root, &h, &r));
    let mut opts = ServerOpts::new(up.url());
    // One core and the default four blocking threads: the setting where
    // four slow answers used to stop every miss.
    opts.cores = 1;
    opts.extra_args = ["--module-fetch-concurrency", "4", "--fetch-threads", "4"].map(String::from).to_vec();
    let server = Server::start_with(opts);
    let addr = server.addr();

    let slow: Vec<_> = versions
        .iter()
        .map(|v| {
            let (p, want) = (format!("/{}", artifact_path(SLOW, v, "info")), fx.artifact(SLOW, v, "info"));
            thread::spawn(move || get_check(addr, &p, &want))
        })
        .collect();
    assert!(wait_until(BOUND, || held.load(Ordering::SeqCst) >= 4), "the slow fetches never reached the upstream");
    // Give the two beyond the module's limit every chance to (wrongly) go out too.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(held.load(Ordering::SeqCst), 4, "more fetches for one module than --module-fetch-concurrency at once");

    // Another module's miss is answered while all of those are held.
    let fast = format!("/{}", artifact_path(FAST, "v1.0.0", "info"));
    let (want, f) = (fx.artifact(FAST, "v1.0.0", "info"), fast.clone());
    let done = thread::spawn(move || get_check(addr, &f, &want));
    assert!(wait_until(BOUND, || done.is_finished()), "a miss for another module waited behind the slow module's fetches");
    done.join().unwrap().unwrap();
    assert!(!release.load(Ordering::SeqCst));

    release.store(true, Ordering::SeqCst);
    for (i, h) in slow.into_iter().enumerate() {
        h.join().unwrap().unwrap_or_else(|e| panic!("slow request {i}: {e}"));
    }
    assert_eq!(held.load(Ordering::SeqCst), 6);
}
