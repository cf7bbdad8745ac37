//! Single-flight fills: however many clients ask for the same missing
//! artifact at once, the upstream is asked exactly once, and every client
//! gets the complete, identical bytes.
//!
//! The fill window is opened deterministically: the [`CountingUpstream`]
//! holds its answer (`hold_zips`/`hold_all`) while every client connects and
//! sends its request, and is released only once all of them have signalled
//! that their request is on the wire (and, bounded, once the server's
//! `gomodproxy_coalesced` counter says it has parked them). A server that
//! fetched per request would send the upstream more than one request for
//! the path, which is what the tests assert on, never timings.

mod common;

use common::*;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

const CLIENTS: usize = 30;
/// A bit over 8 MiB of incompressible data, stored: the zip is larger.
const BIG_DATA: usize = 8 * 1024 * 1024 + 4321;
const V: &str = "v1.0.0";

/// Generous bound for anything that should take well under a second.
const WAIT: Duration = Duration::from_secs(20);

fn big_module(path: &str, seed: u64) -> Module {
    Module::new(path, V).file("data.bin", pseudo_random_bytes(BIG_DATA, seed)).stored()
}

/// One expected response: request path and the exact body.
type Expect = (String, Arc<Vec<u8>>);

/// Starts one thread per entry of `jobs`. Each connects on its own
/// connection, sends all its requests pipelined in one write, signals on the
/// returned channel, then checks every response in order.
fn start_clients(addr: SocketAddr, jobs: Vec<Vec<Expect>>) -> (mpsc::Receiver<usize>, Vec<JoinHandle<Result<(), String>>>) {
    let (tx, rx) = mpsc::channel();
    let handles = jobs
        .into_iter()
        .enumerate()
        .map(|(i, job)| {
            let tx = tx.clone();
            thread::spawn(move || -> Result<(), String> {
                let mut c = CheckConn::connect(addr).map_err(|e| format!("client {i}: connect: {e}"))?;
                let paths: Vec<&str> = job.iter().map(|(p, _)| p.as_str()).collect();
                c.send_gets(&paths).map_err(|e| format!("client {i}: send: {e}"))?;
                let _ = tx.send(i);
                for (p, want) in &job {
                    c.expect_body(want).map_err(|e| format!("client {i}: GET {p}: {e}"))?;
                }
                Ok(())
            })
        })
        .collect();
    (rx, handles)
}

/// Waits (bounded) for `n` "request sent" signals.
fn wait_all_sent(rx: &mpsc::Receiver<usize>, n: usize) {
    for got in 0..n {
        if rx.recv_timeout(WAIT).is_err() {
            panic!("only {got} of {n} clients managed to send their request within {WAIT:?}");
        }
    }
}

fn join_all(handles: Vec<JoinHandle<Result<(), String>>>) {
    let errors: Vec<String> = handles.into_iter().filter_map(|h| h.join().expect("client thread panicked").err()).collect();
    assert!(errors.is_empty(), "{} clients got wrong or incomplete answers:\n{}", errors.len(), errors.join("\n"));
}

/// Gives the server a bounded chance to park `n` requests on fills already
/// in flight. Not an assertion: a server that does not coalesce never gets
/// there, and then the upstream hit count (asserted afterwards) catches it.
fn wait_coalesced(addr: SocketAddr, n: u64) {
    if !wait_until(Duration::from_secs(10), || metric(addr, "gomodproxy_coalesced") >= n) {
        eprintln!("note: gomodproxy_coalesced stayed below {n}; releasing the upstream anyway");
    }
}

/// 30 clients, each on its own connection, ask for the same uncached big
/// zip while the upstream holds its answer: one upstream request, 30
/// identical complete bodies. `extra_args` varies the server (hit routing).
fn crowd_on_one_zip(module: &str, seed: u64, extra_args: &[&str]) {
    let fx = Fixture::builder().module(big_module(module, seed)).build();
    let want = Arc::new(fx.artifact(module, V, "zip"));
    assert!(want.len() >= 8 * 1024 * 1024, "zip is only {} bytes", want.len());
    let up = CountingUpstream::serve(fx.root());
    let mut opts = ServerOpts::new(up.url());
    opts.cores = 2;
    opts.extra_args = extra_args.iter().map(|s| s.to_string()).collect();
    let server = Server::start_with(opts);
    let addr = server.addr();
    let zip = format!("/{}", artifact_path(module, V, "zip"));

    up.hold_zips();
    let jobs = (0..CLIENTS).map(|_| vec![(zip.clone(), want.clone())]).collect();
    let (sent, clients) = start_clients(addr, jobs);
    wait_all_sent(&sent, CLIENTS);
    assert!(up.wait_for_hits(&zip, 1, WAIT), "the upstream never saw a request for {zip}");
    wait_coalesced(addr, CLIENTS as u64 - 1);
    up.release_zips();
    join_all(clients);
    // Informational: requests that landed on the non-owner core and hopped.
    eprintln!("{module}: gomodproxy_hops = {}", metric(addr, "gomodproxy_hops"));

    assert_eq!(up.hits(&zip), 1, "{CLIENTS} concurrent clients caused {} upstream requests for {zip}", up.hits(&zip));
    // Filled once, now a hit: still no second upstream request.
    get_check(addr, &zip, &want).unwrap();
    assert_eq!(up.hits(&zip), 1, "a request after the fill went upstream again");
    assert_eq!(up.total_hits(), 1, "unexpected upstream traffic: {:?}", up.counts());
}

#[test]
fn thirty_clients_share_one_upstream_fetch_of_a_big_zip() {
    crowd_on_one_zip("example.com/sf/big", 11, &[]);
}

/// Same crowd with `--hit-routing owner`: every request, whichever of the
/// two cores SO_REUSEPORT handed its connection to, hops to the module's
/// owner. (With 30 connections both cores get some; the assertions are on
/// the result only, never on the distribution.)
#[test]
fn thirty_clients_across_cores_with_owner_hit_routing_share_one_fetch() {
    crowd_on_one_zip("example.com/sf/owner", 12, &["--hit-routing", "owner"]);
}

/// Each of 30 clients pipelines `.info`, `.mod` and `.zip` of one module,
/// in an order rotated per client, while the upstream holds every answer:
/// one upstream request per artifact, every body exact.
#[test]
fn thirty_clients_mixing_info_mod_zip_share_one_fetch_each() {
    let module = "example.com/sf/mixed";
    let fx = Fixture::builder().module(big_module(module, 13)).build();
    let up = CountingUpstream::serve(fx.root());
    let mut opts = ServerOpts::new(up.url());
    opts.cores = 2;
    let server = Server::start_with(opts);
    let addr = server.addr();

    let kinds: Vec<Expect> = ["info", "mod", "zip"]
        .iter()
        .map(|ext| (format!("/{}", artifact_path(module, V, ext)), Arc::new(fx.artifact(module, V, ext))))
        .collect();
    up.hold_all();
    let jobs = (0..CLIENTS)
        .map(|i| {
            let mut job = kinds.clone();
            job.rotate_left(i % 3);
            job
        })
        .collect();
    let (sent, clients) = start_clients(addr, jobs);
    wait_all_sent(&sent, CLIENTS);
    // Every kind is some client's first request, so all three reach the
    // upstream (and stay held there) while the other clients pile up.
    for (p, _) in &kinds {
        assert!(up.wait_for_hits(p, 1, WAIT), "the upstream never saw a request for {p}");
    }
    wait_coalesced(addr, CLIENTS as u64 - 3);
    up.release_zips();
    join_all(clients);

    for (p, _) in &kinds {
        assert_eq!(up.hits(p), 1, "{p} was requested {} times upstream; all: {:?}", up.hits(p), up.counts());
    }
    assert_eq!(up.total_hits(), 3, "unexpected upstream traffic: {:?}", up.counts());
}

/// Clients that arrive while a fill is already downloading (the upstream
/// has sent part of the body and is stuck mid-way) join that fill instead
/// of starting another.
#[test]
fn late_joiners_share_a_fill_stuck_mid_download() {
    let module = "example.com/sf/late";
    let fx = Fixture::builder().module(big_module(module, 14)).build();
    let want = Arc::new(fx.artifact(module, V, "zip"));
    let up = CountingUpstream::serve(fx.root());
    let mut opts = ServerOpts::new(up.url());
    opts.cores = 2;
    let server = Server::start_with(opts);
    let addr = server.addr();
    let zip = format!("/{}", artifact_path(module, V, "zip"));

    let pause = 1 << 20;
    up.set_behavior(UpstreamBehavior { zip_pause_at: Some(pause), ..Default::default() });
    up.hold_zips();
    let (sent, first) = start_clients(addr, vec![vec![(zip.clone(), want.clone())]]);
    wait_all_sent(&sent, 1);
    assert!(up.wait_for_zip_bytes(pause, WAIT), "the upstream did not get to send {pause} body bytes");

    let jobs = (1..CLIENTS).map(|_| vec![(zip.clone(), want.clone())]).collect();
    let (sent, late) = start_clients(addr, jobs);
    wait_all_sent(&sent, CLIENTS - 1);
    wait_coalesced(addr, CLIENTS as u64 - 1);
    up.release_zips();
    join_all(first);
    join_all(late);

    assert_eq!(up.hits(&zip), 1, "late joiners caused {} upstream requests for {zip}", up.hits(&zip));
}

/// 50 clients ask for the same branch query (`@v/master.info`) at once:
/// one upstream request, every client the same answer. Queries are not
/// cached beyond the flight: the next request asks the upstream again.
#[test]
fn fifty_concurrent_branch_queries_share_one_upstream_fetch() {
    const CLIENTS: usize = 50;
    let module = "example.com/sf/branch";
    let fx = Fixture::builder().module(Module::new(module, V)).build();
    // The upstream resolves the branch to the module's one version.
    let query = format!("/{module}/@v/master.info");
    let answer = fx.artifact(module, V, "info");
    let file = fx.root().join(format!("{module}/@v/master.info"));
    std::fs::write(&file, &answer).unwrap();
    let want = Arc::new(answer);
    let up = CountingUpstream::serve(fx.root());
    let mut opts = ServerOpts::new(up.url());
    opts.cores = 2;
    let server = Server::start_with(opts);
    let addr = server.addr();

    up.hold_all();
    let jobs = (0..CLIENTS).map(|_| vec![(query.clone(), want.clone())]).collect();
    let (sent, clients) = start_clients(addr, jobs);
    wait_all_sent(&sent, CLIENTS);
    assert!(up.wait_for_hits(&query, 1, WAIT), "the upstream never saw the query");
    wait_coalesced(addr, CLIENTS as u64 - 1);
    up.release_zips();
    join_all(clients);
    assert_eq!(up.hits(&query), 1, "{CLIENTS} concurrent queries caused {} upstream requests", up.hits(&query));
    get_check(addr, &query, &want).unwrap();
    assert_eq!(up.hits(&query), 2, "a query is not cached beyond its flight");
}
