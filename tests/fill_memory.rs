//! `--fill-memory`: what all fills hold together is bounded. Four
//! upstream answers that announce 400 MiB each and never end arrive at
//! once; the server's memory stays within the bound (plus slack), the
//! fills that find no room fail with a clear answer (503, or a streamed
//! body cut short), nothing is stored, and the server stays healthy.

mod common;

use common::*;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const ANNOUNCED: u64 = 400 << 20;
const LIMIT_MIB: u64 = 64;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

#[test]
fn endless_bodies_at_once_stay_within_the_fill_memory() {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let up = ScriptedServer::start(move |mut conn| {
        if read_request_head(&mut conn).is_none() {
            return;
        }
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {ANNOUNCED}\r\n\r\n");
        if conn.write_all(head.as_bytes()).is_err() {
            return;
        }
        let zeros = vec![0u8; 256 << 10];
        let until = Instant::now() + Duration::from_secs(60);
        // Until the proxy gives up on it (the write fails) or the test ends.
        while !s.load(Ordering::SeqCst) && Instant::now() < until {
            if conn.write_all(&zeros).is_err() {
                return;
            }
        }
    });
    let mut opts = ServerOpts::new(up.url());
    opts.cores = 1;
    opts.extra_args = ["--fill-memory", &format!("{LIMIT_MIB}MiB"), "--upstream-read-timeout", "2s", "--breaker-failures", "0"]
        .map(String::from)
        .to_vec();
    let server = Server::start_with(opts);
    let (addr, pid) = (server.addr(), server.pid().unwrap());
    let before = rss_kib(pid);

    let clients: Vec<_> = (0..4)
        .map(|i| {
            let p = format!("/{}", artifact_path(&format!("example.com/endless/m{i}"), "v1.0.0", "zip"));
            thread::spawn(move || {
                let mut c = RawConn::connect(addr);
                c.set_read_timeout(Duration::from_secs(30));
                c.send(&c.request_bytes("GET", &p)).unwrap();
                // Complete or not, the answer is read to its end.
                c.read_response(false)
            })
        })
        .collect();
    let mut peak = before;
    while !clients.iter().all(|c| c.is_finished()) {
        peak = peak.max(rss_kib(pid));
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        if let Ok(r) = c.join().unwrap() {
            let complete = r.status == 200 && r.body.len() as u64 == ANNOUNCED;
            assert!(!complete, "an endless body must never arrive complete");
            assert!(r.status == 200 || r.status == 503 || r.status == 504, "{}: {}", r.status, r.body_str());
        }
    }
    let extra_mib = peak.saturating_sub(before) / 1024;
    eprintln!("RSS before {} MiB, peak {} MiB (+{extra_mib} MiB) with --fill-memory {LIMIT_MIB}MiB", before / 1024, peak / 1024);
    assert!(extra_mib < LIMIT_MIB + 96, "fills took {extra_mib} MiB of memory beyond the {LIMIT_MIB} MiB bound");
    let h = http_get(addr, "/healthz");
    assert_eq!(h.status, 200);
}
