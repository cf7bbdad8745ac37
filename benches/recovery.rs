//! Start-up cost of the store: time to rebuild the index from N records,
//! for segments left open by a crash (every payload re-hashed), for sealed
//! segments without index snapshots (every header read and checked), and
//! for sealed segments with their snapshots (a clean restart, five times:
//! the median and the fastest). Each open runs in a process of its own, as
//! a start-up does: one open after another in one process would pay for
//! the last one's freed memory (glibc consolidates a million freed chunks
//! on the next large allocation). Prints one line per case; run with
//! `cargo bench --bench recovery [-- RECORDS]` (default 100000; with
//! TMPDIR on a tmpfs, writing them is quick).

use std::time::Instant;

use gomodproxy::resolve::route;
use gomodproxy::store::{record, RecordKind, Store};

/// Set in the child process that opens the store once: "DIR CORES RECORDS".
const OPEN_ONLY: &str = "GOMODPROXY_RECOVERY_BENCH_OPEN";
/// When set, a directory that keeps a copy of each sealed store, to open
/// again under a profiler.
const KEEP: &str = "GOMODPROXY_RECOVERY_BENCH_KEEP";

fn main() {
    if let Ok(job) = std::env::var(OPEN_ONLY) {
        return open_once(&job);
    }
    let records: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let payload_len = 400; // a typical .info/.mod is a few hundred bytes
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path(), 1, |_, _, _| 0).expect("store");
        let writer = store.writer(64 << 20);
        let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().expect("executor");
        let started = Instant::now();
        let writer = std::rc::Rc::new(writer);
        ex.run(async {
            let payload = bytes::Bytes::from(vec![b'x'; payload_len]);
            let sha = record::payload_sha256(&payload);
            // 256 appends at a time: they share their syncs (group commit).
            for chunk in (0..records).collect::<Vec<_>>().chunks(256) {
                let tasks: Vec<_> = chunk
                    .iter()
                    .map(|&i| {
                        let (writer, payload) = (writer.clone(), payload.clone());
                        glommio::spawn_local(async move {
                            let module = format!("example.com/org{}/mod{i}", i % 1000);
                            writer.append(RecordKind::Info, &module, "v1.0.0", payload, sha).await.expect("append")
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await;
                }
            }
        });
        eprintln!("wrote {records} records of {payload_len} B in {:?}", started.elapsed());
    }
    for cores in [1usize, 16] {
        // First open: the segment was never sealed (as after kill -9), so every payload is verified.
        let copy = tempfile::tempdir().expect("tempdir");
        copy_segments(dir.path(), copy.path());
        let cpu = std::cell::Cell::new(std::time::Duration::ZERO);
        let open = || {
            let child = std::process::Command::new(std::env::current_exe().expect("own path"))
                .env(OPEN_ONLY, format!("{} {cores} {records}", copy.path().display()))
                .output()
                .expect("run the open");
            let out = String::from_utf8_lossy(&child.stdout);
            assert!(child.status.success(), "open failed: {out}{}", String::from_utf8_lossy(&child.stderr));
            // "WALL_NS CPU_NS VERIFIED SNAPSHOTS SEGMENTS"
            let n: Vec<u128> = out.split_whitespace().map(|w| w.parse().expect("a number")).collect();
            cpu.set(std::time::Duration::from_nanos(n[1] as u64));
            (std::time::Duration::from_nanos(n[0] as u64), (n[2], n[3], n[4]))
        };
        let (unsealed, _) = open();
        // Sealed now, with snapshots: first without them (the scan), then with.
        for e in std::fs::read_dir(copy.path().join("segments")).expect("readdir") {
            let path = e.expect("entry").path();
            if path.extension().is_some_and(|x| x == "snap") {
                std::fs::remove_file(path).expect("remove snapshot");
            }
        }
        let (scanned, (verified, snapshots, _)) = open();
        assert_eq!((verified, snapshots), (0, 0));
        // The clean restart, five times: this VM's spread is wide, so the
        // median and the fastest are printed.
        let mut from_snapshots: Vec<_> = (0..5)
            .map(|_| {
                let (took, (_, snapshots, segments)) = open();
                assert_eq!(snapshots, segments);
                (took, cpu.get())
            })
            .collect();
        from_snapshots.sort();
        if let Ok(keep) = std::env::var(KEEP) {
            // For `perf record` of one open: the sealed store with its snapshots.
            let to = std::path::Path::new(&keep).join(format!("{cores}-shards"));
            copy_segments(copy.path(), &to);
            eprintln!("kept: {OPEN_ONLY}=\"{} {cores} {records}\"", to.display());
        }
        let per_million = |d: std::time::Duration| d.as_secs_f64() * 1e3 * 1_000_000.0 / records as f64;
        println!(
            "recovery {records} records, {cores} shards: unsealed (after a crash) {:.0} ms/1M; sealed, headers scanned {:.0} ms/1M; sealed, from index snapshots {:.0} ms/1M (median of 5; fastest {:.0}; CPU time of the median {:.0})",
            per_million(unsealed),
            per_million(scanned),
            per_million(from_snapshots[2].0),
            per_million(from_snapshots[0].0),
            per_million(from_snapshots[2].1)
        );
    }
}

/// Copies a store's segment files (and their snapshots) from `from` to `to`.
fn copy_segments(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to.join("segments")).expect("mkdir");
    for e in std::fs::read_dir(from.join("segments")).expect("readdir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join("segments").join(e.file_name())).expect("copy");
    }
}

/// The child's part: opens the store once and prints what it took.
fn open_once(job: &str) {
    let mut words = job.rsplitn(3, ' ');
    let (records, cores, dir) = (words.next(), words.next(), words.next());
    let records: usize = records.and_then(|r| r.parse().ok()).expect("records");
    let cores: usize = cores.and_then(|c| c.parse().ok()).expect("cores");
    let dir = std::path::Path::new(dir.expect("dir"));
    let (t, cpu_before) = (Instant::now(), cpu_time());
    let store = Store::open(dir, cores, move |m, v, k| route::owner_of_record(m, v, k, cores)).expect("open");
    let (took, cpu) = (t.elapsed(), cpu_time() - cpu_before);
    let stats = store.stats();
    assert_eq!(stats.records, records);
    println!("{} {} {} {} {}", took.as_nanos(), cpu.as_nanos(), stats.records_verified, stats.snapshots_used, stats.segments);
    // The process ends here: its memory goes back whole, unfreed.
    std::process::exit(0);
}

/// This process's CPU time so far, user and system, on every thread.
fn cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
