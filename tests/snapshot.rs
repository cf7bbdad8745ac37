//! Index snapshots: a clean shutdown seals every core's open segment with
//! its snapshot, so the next start-up reads no record header and verifies
//! no payload; `kill -9` while snapshots are being written (segments
//! rotating under fills, a shutdown sealing) leaves a store that serves
//! only whole, exact blobs.

mod common;

use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const V: &str = "v1.0.0";

fn filler(i: usize, len: usize) -> Module {
    Module::new(&format!("example.com/snap{i}"), V).file("data.bin", pseudo_random_bytes(len, i as u64)).stored()
}

fn zip(i: usize) -> String {
    format!("/{}", artifact_path(&format!("example.com/snap{i}"), V, "zip"))
}

/// The numbers of the running process's `store recovered` line: (records,
/// segments, from snapshots, re-verified).
fn last_recovery(server: &Server) -> (u64, u64, u64, u64) {
    let line = server.own_log_line(Duration::from_secs(10), |l| l.contains("store recovered:")).expect("a recovery line");
    // "store recovered: R records in S segments (N from index snapshots) in T (V re-verified, ..."
    let rest = &line[line.find("store recovered:").unwrap()..];
    let numbers: Vec<u64> = rest.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    let before_verified = &rest[..rest.find(" re-verified").expect("re-verified count")];
    let verified = before_verified.rsplit(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
    (numbers[0], numbers[1], numbers[2], verified)
}

#[test]
fn a_clean_restart_opens_every_segment_from_its_snapshot() {
    let mut builder = Fixture::builder();
    for i in 0..12 {
        builder = builder.module(filler(i, 300_000));
    }
    let fx = builder.build();
    let mut server =
        Server::start_with(ServerOpts { extra_args: vec!["--segment-size".into(), "1MiB".into()], ..ServerOpts::new(fx.file_url()) });
    for i in 0..12 {
        get_check(server.addr(), &zip(i), &fx.artifact(&format!("example.com/snap{i}"), V, "zip")).unwrap();
    }
    server.restart();
    let (records, segments, from_snapshots, verified) = last_recovery(&server);
    assert!(records >= 24, "every zip and its go.sum hash: {records}");
    assert!(segments >= 2);
    assert_eq!(from_snapshots, segments, "every segment, the open ones sealed at shutdown, from its snapshot");
    assert_eq!(verified, 0, "no open segment left to verify");
    for i in 0..12 {
        get_check(server.addr(), &zip(i), &fx.artifact(&format!("example.com/snap{i}"), V, "zip")).unwrap();
    }
}

#[test]
fn kill9_while_snapshots_are_written_leaves_only_whole_blobs() {
    const FILLS: usize = 40;
    let mut builder = Fixture::builder();
    for i in 0..FILLS {
        builder = builder.module(filler(i, 200_000));
    }
    let fx = Arc::new(builder.build());
    let upstream = CountingUpstream::serve(fx.root());
    // Segments of 1 MiB rotate (and write a snapshot) every few fills.
    let mut server =
        Server::start_with(ServerOpts { extra_args: vec!["--segment-size".into(), "1MiB".into()], ..ServerOpts::new(upstream.url()) });
    for round in 0..6u64 {
        let addr = server.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let fills = {
            let (stop, fx) = (stop.clone(), fx.clone());
            std::thread::spawn(move || {
                let mut i = (round as usize * 7) % FILLS;
                while !stop.load(Ordering::Relaxed) {
                    let _ = get_check(addr, &zip(i), &fx.artifact(&format!("example.com/snap{i}"), V, "zip"));
                    i = (i + 1) % FILLS;
                }
            })
        };
        std::thread::sleep(Duration::from_millis(150 + round * 40));
        if round % 2 == 1 {
            // During the shutdown's sealing: SIGTERM, then kill -9 a moment later.
            let pid = server.pid().expect("running") as libc::pid_t;
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            std::thread::sleep(Duration::from_millis(round * 3));
        }
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        fills.join().expect("fills");
        server.start_again();
        for i in 0..FILLS {
            let m = format!("example.com/snap{i}");
            get_check(server.addr(), &zip(i), &fx.artifact(&m, V, "zip")).unwrap_or_else(|e| panic!("round {round}, {m}: {e}"));
        }
    }
    // Whatever the crashes left, a clean restart now reads only snapshots.
    server.restart();
    let (_, segments, from_snapshots, _) = last_recovery(&server);
    assert_eq!(from_snapshots, segments);
}
