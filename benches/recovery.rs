//! Start-up cost of the store: time to rebuild the index from N records,
//! for sealed segments (headers only) and for segments left open by a crash
//! (every payload re-hashed). Prints one line per case; run with
//! `cargo bench --bench recovery [-- RECORDS]` (default 100000).

use std::time::Instant;

use gomodproxy::resolve::route;
use gomodproxy::store::{record, RecordKind, Store};

fn main() {
    let records: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let payload_len = 400; // a typical .info/.mod is a few hundred bytes
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path(), 1, |_, _, _| 0).expect("store");
        let writer = store.writer(1 << 30);
        let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().expect("executor");
        let started = Instant::now();
        ex.run(async {
            let payload = bytes::Bytes::from(vec![b'x'; payload_len]);
            let sha = record::payload_sha256(&payload);
            for i in 0..records {
                writer
                    .append(RecordKind::Info, &format!("example.com/org{}/mod{i}", i % 1000), "v1.0.0", payload.clone(), sha)
                    .await
                    .expect("append");
            }
        });
        eprintln!("wrote {records} records of {payload_len} B in {:?} (two fdatasyncs each)", started.elapsed());
    }
    for cores in [1usize, 16] {
        // First open: the segment was never sealed (as after kill -9), so every payload is verified.
        let copy = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(copy.path().join("segments")).expect("mkdir");
        for e in std::fs::read_dir(dir.path().join("segments")).expect("readdir") {
            let e = e.expect("entry");
            std::fs::copy(e.path(), copy.path().join("segments").join(e.file_name())).expect("copy");
        }
        let t = Instant::now();
        let store = Store::open(copy.path(), cores, move |m, v, k| route::owner_of_record(m, v, k, cores)).expect("open");
        let unsealed = t.elapsed();
        assert_eq!(store.stats().records, records);
        drop(store);
        let t = Instant::now();
        let store = Store::open(copy.path(), cores, move |m, v, k| route::owner_of_record(m, v, k, cores)).expect("open");
        let sealed = t.elapsed();
        assert_eq!(store.stats().records_verified, 0);
        let per_100k = |d: std::time::Duration| d.as_secs_f64() * 1e3 * 100_000.0 / records as f64;
        println!(
            "recovery {records} records, {cores} shards: unsealed (after a crash) {:.1} ms = {:.1} ms/100k; sealed {:.1} ms = {:.1} ms/100k",
            unsealed.as_secs_f64() * 1e3,
            per_100k(unsealed),
            sealed.as_secs_f64() * 1e3,
            per_100k(sealed)
        );
    }
}
