//! The upstream connection pool: a wave of concurrent cold misses reuses
//! warm keep-alive connections to the upstream, never opening more than
//! the fetches that can run at once (every core's --fetch-concurrency), instead
//! of a new TCP (and TLS, and DNS) setup per fetch.

mod common;

use common::*;

use std::time::Duration;

const MODULES: usize = 150;

#[test]
fn a_wave_of_cold_misses_opens_no_more_upstream_connections_than_fetches_run_at_once() {
    let mut fx = Fixture::builder();
    for i in 0..MODULES {
        fx = fx.module(Module::new(&format!("example.com/pool/m{i}"), "v1.0.0").stored());
    }
    let fx = fx.build();
    let upstream = CountingUpstream::serve(fx.root());
    let (cores, threads) = (2, 3);
    let mut opts = ServerOpts::new(upstream.url());
    opts.cores = cores;
    opts.extra_args = vec!["--fetch-concurrency".into(), threads.to_string()];
    let server = Server::start_with(opts);
    let paths: Vec<String> = (0..MODULES)
        .flat_map(|i| ["info", "mod"].map(|ext| format!("/{}", artifact_path(&format!("example.com/pool/m{i}"), "v1.0.0", ext))))
        .collect();
    // Two rounds with a pause between: connections kept idle in between
    // are reused, not dropped and opened again.
    for round in paths.chunks(paths.len() / 2) {
        std::thread::scope(|s| {
            for client in round.chunks(round.len().div_ceil(16)) {
                let addr = server.addr();
                s.spawn(move || {
                    let mut c = RawConn::connect(addr);
                    c.set_read_timeout(Duration::from_secs(30));
                    for p in client {
                        let r = c.request("GET", p);
                        assert_eq!(r.status, 200, "{p}: {}", r.body_str());
                    }
                });
            }
        });
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(upstream.total_hits(), 2 * MODULES, "every miss fetched once");
    let opened = upstream.connections();
    assert!(
        opened <= cores * threads,
        "{opened} upstream connections for {} fetches, at most {} of which could run at once",
        2 * MODULES,
        cores * threads
    );
    // The server counts the connections it opened as the upstream does,
    // and the lookups its fetches waited for: the first ones only (the
    // DNS cache answers the rest). A plain http upstream takes no TLS.
    assert_eq!(metric(server.addr(), "gomodproxy_upstream_connections") as usize, opened, "connections counted");
    let waits = metric(server.addr(), "gomodproxy_upstream_dns_waits") as usize;
    assert!((1..=opened).contains(&waits), "{waits} DNS waits for {opened} connections");
    assert_eq!(metric(server.addr(), "gomodproxy_upstream_tls_handshakes"), 0);
}
