//! Graceful shutdown: SIGTERM stops the listeners at once (so a balancer's
//! health checks fail over), lets a download already under way finish with
//! every byte, and exits 0; a second signal exits immediately.

mod common;

use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const V: &str = "v1.0.0";
const DATA: usize = 12 * 1024 * 1024 + 77;

fn fixture() -> Fixture {
    Fixture::builder().module(Module::new("example.com/drain", V).file("data.bin", pseudo_random_bytes(DATA, 7)).stored()).build()
}

fn sigterm(server: &Server) {
    let pid = server.pid().expect("server running") as libc::pid_t;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
}

/// Starts a GET for the zip and reads only its first bytes, so the server is
/// mid-response when the signal arrives.
fn start_slow_download(server: &Server, path: &str) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(server.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = vec![0u8; 64 * 1024];
    let n = s.read(&mut first).expect("first bytes");
    first.truncate(n);
    (s, first)
}

#[test]
fn sigterm_refuses_new_connections_finishes_downloads_and_exits_zero() {
    let fx = fixture();
    // A long grace period: exiting well within it proves the drain ended
    // because the connection closed, not because time ran out.
    let mut server =
        Server::start_with(ServerOpts { extra_args: vec!["--drain-timeout".into(), "120s".into()], ..ServerOpts::new(fx.file_url()) });
    let path = artifact_path("example.com/drain", V, "zip");
    let want = fx.artifact("example.com/drain", V, "zip");
    assert_eq!(http_get(server.addr(), &format!("/{path}")).body, want, "warm the store");

    let (mut slow, mut got) = start_slow_download(&server, &path);
    sigterm(&server);

    // New connections are refused soon (bounded wait; the listener shuts at the signal).
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(server.addr()).is_ok() {
        assert!(Instant::now() < deadline, "still accepting connections after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The download under way completes, byte for byte, and the server then
    // closes the keep-alive connection (read_to_end returns only on close).
    slow.read_to_end(&mut got).expect("rest of the response, then the server's close");
    let body_at = got.windows(4).position(|w| w == b"\r\n\r\n").expect("end of head") + 4;
    assert!(got[body_at..] == want[..], "download interrupted by shutdown ({} of {} bytes)", got.len() - body_at, want.len());

    let status = server.wait_exit(Duration::from_secs(20)).expect("server exits once its connections are done");
    assert!(status.success(), "clean drain exits 0, got {status:?}");
}

#[test]
fn a_second_signal_exits_without_waiting() {
    let fx = fixture();
    let mut server =
        Server::start_with(ServerOpts { extra_args: vec!["--drain-timeout".into(), "60s".into()], ..ServerOpts::new(fx.file_url()) });
    let path = artifact_path("example.com/drain", V, "zip");
    http_get(server.addr(), &format!("/{path}"));
    // Hold a download open so the drain would wait its full minute.
    let (_slow, _) = start_slow_download(&server, &path);
    sigterm(&server);
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.is_running(), "draining, not gone");
    sigterm(&server);
    let status = server.wait_exit(Duration::from_secs(10)).expect("second signal exits at once");
    assert!(!status.success(), "an interrupted drain does not claim success");
}
