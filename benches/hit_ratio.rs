//! Hit ratio of the store under `--max-store-size` against an exact LRU
//! cache of the same byte size, on the same trace: a Zipf(1.1) replay of
//! REQUESTS requests over ARTIFACTS artifacts (sizes log-uniform between
//! 256 B and 16 KiB, shuffled against popularity), the bound at 20% of the
//! working set. The store side is the real one: the segment writer, its
//! eviction and the index, with a hit noted as a served one is. Every miss
//! is a store write (two fdatasyncs): put TMPDIR on a tmpfs.
//!
//! `cargo bench --bench hit_ratio [-- REQUESTS ARTIFACTS SEGMENTS]`
//! (defaults 1000000 50000 40: segments of a 40th of the bound).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use gomodproxy::store::{record, RecordKind, Store};

/// xorshift64*: a fixed, seeded generator (the trace is the same every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Exact LRU by bytes: the least recently requested artifact goes first.
struct Lru<'a> {
    capacity: u64,
    used: u64,
    tick: u64,
    sizes: &'a [u64],
    last: HashMap<u32, u64>,
    order: BTreeMap<u64, u32>,
}

impl Lru<'_> {
    /// Requests `id`; whether it was held.
    fn request(&mut self, id: u32) -> bool {
        self.tick += 1;
        let held = match self.last.insert(id, self.tick) {
            Some(t) => {
                self.order.remove(&t);
                true
            }
            None => {
                self.used += self.sizes[id as usize];
                false
            }
        };
        self.order.insert(self.tick, id);
        while self.used > self.capacity {
            let Some((_, victim)) = self.order.pop_first() else { break };
            self.last.remove(&victim);
            self.used -= self.sizes[victim as usize];
        }
        held
    }
}

fn main() {
    let mut args = std::env::args().skip(1).filter_map(|a| a.parse::<usize>().ok());
    let requests = args.next().unwrap_or(1_000_000);
    let artifacts = args.next().unwrap_or(50_000);
    let segments = args.next().unwrap_or(40) as u64;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    let sizes: Vec<u64> = (0..artifacts).map(|_| (256.0 * 64f64.powf(rng.unit())) as u64).collect();
    let working_set: u64 = sizes.iter().sum();
    let bound = working_set / 5;
    // Popularity rank r is artifact rank_to_id[r], so size and rank are unrelated.
    let mut rank_to_id: Vec<u32> = (0..artifacts as u32).collect();
    for i in (1..artifacts).rev() {
        rank_to_id.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let weights: Vec<f64> = (1..=artifacts).map(|r| 1.0 / (r as f64).powf(1.1)).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(artifacts);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let trace: Vec<u32> = (0..requests)
        .map(|_| {
            let u = rng.unit();
            rank_to_id[cdf.partition_point(|&c| c < u).min(artifacts - 1)]
        })
        .collect();

    let mut lru = Lru { capacity: bound, used: 0, tick: 0, sizes: &sizes, last: HashMap::new(), order: BTreeMap::new() };
    let lru_hits = trace.iter().filter(|&&id| lru.request(id)).count();

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), 1, |_, _, _| 0).expect("store");
    store.ledger().set_max_bytes(Some(bound));
    let writer = store.writer(bound / segments);
    let index = &store.indexes()[0];
    let source = bytes::Bytes::from((0..(16 << 10) + 4096).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
    let names: Vec<String> = (0..artifacts).map(|i| format!("example.com/org{}/mod{i}", i % 500)).collect();
    let mut shas: Vec<Option<[u8; 32]>> = vec![None; artifacts];
    let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().expect("executor");
    let started = Instant::now();
    let (store_hits, max_on_disk, failed) = ex.run(async {
        let (mut hits, mut max_on_disk, mut failed) = (0usize, 0u64, 0usize);
        for &id in &trace {
            let id = id as usize;
            if index.read(&names[id], "v1.0.0", RecordKind::Zip, |e| e.note_hit()).is_some() {
                hits += 1;
                continue;
            }
            let payload = source.slice(id % 4096..id % 4096 + sizes[id] as usize);
            let sha = *shas[id].get_or_insert_with(|| record::payload_sha256(&payload));
            match writer.append(RecordKind::Zip, &names[id], "v1.0.0", payload, sha).await {
                Ok(blob) => index.insert(&names[id], "v1.0.0", RecordKind::Zip, blob),
                Err(_) => failed += 1,
            }
            max_on_disk = max_on_disk.max(store.ledger().on_disk());
        }
        (hits, max_on_disk, failed)
    });
    let elapsed = started.elapsed();
    let ledger = store.ledger();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let pct = |hits: usize| 100.0 * hits as f64 / requests as f64;
    println!(
        "zipf(1.1) {requests} requests over {artifacts} artifacts, working set {:.1} MiB, bound {:.1} MiB (20%), segments of {:.2} MiB",
        working_set as f64 / 1048576.0,
        bound as f64 / 1048576.0,
        (bound / segments) as f64 / 1048576.0
    );
    println!("exact LRU of {bound} bytes: hit ratio {:.2}%", pct(lru_hits));
    println!(
        "store, segment eviction: hit ratio {:.2}% ({:+.2} points), most on disk {:.1} MiB, {} segments evicted, {} records carried ({:.1} MiB), {} writes refused, {:.1} s",
        pct(store_hits),
        pct(store_hits) - pct(lru_hits),
        max_on_disk as f64 / 1048576.0,
        load(&ledger.evicted_segments),
        load(&ledger.carried_records),
        load(&ledger.carried_bytes) as f64 / 1048576.0,
        failed,
        elapsed.as_secs_f64()
    );
}
