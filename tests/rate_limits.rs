//! `--rate-limit` and `--miss-rate-limit`: a client over its limit gets
//! 429 with Retry-After, other clients are unaffected, the bucket refills;
//! the miss limit leaves hits alone. Clients are told apart by their
//! loopback address (127.0.0.2, 127.0.0.3: no set-up needed).

mod common;

use common::*;

use socket2::{Domain, Socket, Type};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const M: &str = "example.com/limited";

/// A keep-alive connection from `source` (a loopback address).
fn connect_from(source: &str, to: SocketAddr) -> RawConn {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&format!("{source}:0").parse::<SocketAddr>().unwrap().into()).unwrap();
    s.connect(&to.into()).unwrap();
    RawConn::from_stream(TcpStream::from(s))
}

fn server(fx: &Fixture, flag: &str, limit: &str) -> Server {
    let mut opts = ServerOpts::new(fx.file_url());
    opts.extra_args = vec![flag.into(), limit.into()];
    Server::start_with(opts)
}

#[test]
fn a_burst_past_the_limit_gets_429_others_are_unaffected_and_the_bucket_refills() {
    let fx = Fixture::builder().module(Module::new(M, "v1.0.0")).build();
    let server = server(&fx, "--rate-limit", "1/s,burst=5");
    let info = format!("/{}", artifact_path(M, "v1.0.0", "info"));
    let mut a = connect_from("127.0.0.2", server.addr());
    let statuses: Vec<u16> = (0..8).map(|_| a.request("GET", &info).status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429], "the burst, then refusals");
    let r = a.request("GET", &info);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
    // Another client has its own bucket.
    let mut b = connect_from("127.0.0.3", server.addr());
    assert_eq!(b.request("GET", &info).status, 200, "another client must be unaffected");
    // The health check is never limited.
    assert_eq!(a.request("GET", "/healthz").status, 200);
    // A second later the bucket holds one more.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(a.request("GET", &info).status, 200, "the bucket refills");
}

#[test]
fn the_miss_limit_counts_only_requests_that_go_past_a_hit() {
    let mut b = Fixture::builder();
    for i in 0..4 {
        b = b.module(Module::new(&format!("{M}/m{i}"), "v1.0.0"));
    }
    let fx = b.build();
    let server = server(&fx, "--miss-rate-limit", "1/h,burst=2");
    let info = |i: usize| format!("/{}", artifact_path(&format!("{M}/m{i}"), "v1.0.0", "info"));
    let mut a = connect_from("127.0.0.2", server.addr());
    assert_eq!(a.request("GET", &info(0)).status, 200, "a miss");
    for _ in 0..20 {
        assert_eq!(a.request("GET", &info(0)).status, 200, "hits are not misses");
    }
    assert_eq!(a.request("GET", &info(1)).status, 200, "the second miss");
    let r = a.request("GET", &info(2));
    assert_eq!(r.status, 429, "the third miss: {}", r.body_str());
    assert!(r.header("retry-after").is_some());
    assert_eq!(connect_from("127.0.0.3", server.addr()).request("GET", &info(2)).status, 200, "another client's misses are its own");
}
