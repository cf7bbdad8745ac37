//! Micro-benchmarks of the request hot path, and the one number the routing
//! design rests on: what a hop to another core costs compared with reading
//! the owner's index in place.
//!
//! `cargo bench --bench hot_path` (pin with `taskset -c 0,1`; the hop needs two CPUs).

use std::hint::black_box;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use gomodproxy::artifact::{ArtifactKey, Body, Kind};
use gomodproxy::goproxy::{path, CacheControl, Reply};
use gomodproxy::http::{request, response, HttpLimits};
use gomodproxy::metrics::Metrics;
use gomodproxy::resolve::fill::FillSources;
use gomodproxy::resolve::live::Live;
use gomodproxy::resolve::{route, CacheSettings, CoreResolver, Resolve, Shard};
use gomodproxy::runtime::mesh::{Mesh, Msg};
use gomodproxy::store::{record, RecordKind, Store};
use gomodproxy::upstream::list::Fallback;
use gomodproxy::upstream::{file::FileFetcher, Fetcher, UpstreamChain};

const REQUEST: &[u8] = b"GET /example.com/!camel!case/lib/@v/v1.4.2.zip HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n";

fn wire(c: &mut Criterion) {
    let limits = HttpLimits::default();
    c.bench_function("http/parse_request", |b| {
        b.iter(|| match request::parse(black_box(REQUEST), &limits) {
            Ok(request::Parsed::Complete(r, n)) => black_box((r.target.len(), n)),
            _ => unreachable!(),
        })
    });
    c.bench_function("goproxy/decode_and_validate_path", |b| {
        b.iter(|| black_box(path::parse(black_box("/example.com/!camel!case/lib/@v/v1.4.2.zip")).is_ok()))
    });
    c.bench_function("goproxy/decode_and_validate_path_no_escapes", |b| {
        b.iter(|| black_box(path::parse(black_box("/example.com/org/lib/v2/@v/v2.4.2.info")).is_ok()))
    });
    c.bench_function("runtime/owner_of", |b| b.iter(|| black_box(route::owner_of(black_box("example.com/org/lib/v2"), 64))));
    let resp = Reply::new(200, Kind::Zip.content_type(), CacheControl::Immutable, Some([0x5a; 32]), Body::empty());
    let mut out = Vec::with_capacity(256);
    c.bench_function("http/write_response_head", |b| {
        b.iter(|| {
            response::write_head(&mut out, black_box(&resp), black_box(41_943_040), response::Connection::KeepAlive);
            black_box(out.len())
        })
    });
}

/// A store with `n` published artifacts, one shard per core.
fn filled_store(dir: &std::path::Path, cores: usize, n: usize) -> Store {
    let store = Store::open(dir, cores, move |m, v, k| route::owner_of_record(m, v, k, cores)).expect("store");
    let writer = store.writer(1 << 30);
    let indexes = store.indexes();
    let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().expect("executor");
    ex.run(async {
        let payload = bytes::Bytes::from(vec![0u8; 64]);
        let sha = record::payload_sha256(&payload);
        for i in 0..n {
            let module = format!("example.com/org{}/mod{i}", i % 100);
            let blob = writer.append(RecordKind::Info, &module, "v1.0.0", payload.clone(), sha).await.expect("append");
            indexes[route::owner_of(&module, cores)].insert(&module, "v1.0.0", RecordKind::Info, blob);
        }
    });
    store
}

fn index_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = filled_store(dir.path(), 1, 100_000);
    let index = &store.indexes()[0];
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("index_lookup_hit_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % 100_000;
            let module = format!("example.com/org{}/mod{i}", i % 100);
            black_box(index.blob(&module, "v1.0.0", RecordKind::Info).is_some())
        })
    });
    group.bench_function("index_lookup_miss_100k", |b| {
        b.iter(|| black_box(index.blob(black_box("example.com/none/x"), "v1.0.0", RecordKind::Info).is_none()))
    });
    group.finish();
}

/// Round trips from core 0 to the owner (core 1) through `Resolve::resolve`,
/// answered from the owner's index: the cost a hit would pay if it always
/// hopped (`--hit-routing owner`), against the in-place read it pays now.
fn cross_core_hop(c: &mut Criterion) {
    if glommio::CpuSet::online().map(|s| s.len()).unwrap_or(0) < 2 {
        eprintln!("cross-core hop bench needs two CPUs; skipped");
        return;
    }
    wake_round_trip(c);
    // Parked when idle (the default), then spinning for a while before it
    // parks (`--spin-before-park`): the owner and the asker stay awake
    // between round trips, so no wake-up is paid.
    cross_core_hop_with(c, None, "");
    cross_core_hop_with(c, Some(Duration::from_micros(100)), "_spin_100us");
}

/// The floor under a hop to a parked core: one thread on CPU 0 wakes one
/// blocked on CPU 1 through an eventfd (as glommio wakes a parked executor)
/// and blocks until it is woken back the same way.
fn wake_round_trip(c: &mut Criterion) {
    fn pin(cpus: &[usize]) {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &cpu in cpus {
                libc::CPU_SET(cpu, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
    fn wait(fd: i32) {
        let mut n = 0u64;
        // SAFETY: reads 8 bytes into a u64 from an eventfd we own.
        let got = unsafe { libc::read(fd, (&mut n as *mut u64).cast(), 8) };
        assert_eq!(got, 8, "eventfd read");
    }
    fn wake(fd: i32) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a u64 to an eventfd we own.
        let put = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        assert_eq!(put, 8, "eventfd write");
    }
    // SAFETY: eventfd has no preconditions; the descriptors live to the end.
    let (ping, pong) = unsafe { (libc::eventfd(0, 0), libc::eventfd(0, 0)) };
    assert!(ping >= 0 && pong >= 0, "eventfd");
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            pin(&[1]);
            loop {
                wait(ping);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                wake(pong);
            }
        })
    };
    pin(&[0]);
    c.bench_function("runtime/eventfd_wake_round_trip", |b| {
        b.iter(|| {
            wake(ping);
            wait(pong);
        })
    });
    stop.store(true, Ordering::Relaxed);
    wake(ping);
    echo.join().expect("echo thread");
    // SAFETY: both descriptors are ours and no longer used.
    unsafe {
        libc::close(ping);
        libc::close(pong);
    }
    // Let the criterion thread run on both CPUs again.
    pin(&[0, 1]);
}

fn cross_core_hop_with(c: &mut Criterion, spin: Option<Duration>, suffix: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(filled_store(dir.path(), 2, 1_000));
    let module: String = (0..1_000)
        .map(|i| format!("example.com/org{}/mod{i}", i % 100))
        .find(|m| route::owner_of(m, 2) == 1)
        .expect("a module owned by core 1");
    let empty = tempfile::tempdir().expect("tempdir");
    let fetcher: Box<dyn Fetcher> = Box::new(FileFetcher::new(empty.path().to_path_buf()));
    let upstream: Arc<dyn Fetcher> = Arc::new(UpstreamChain::new(vec![(fetcher, Fallback::OnNotFound)]));
    let metrics = Metrics::leak(2);
    let settings = Arc::new(CacheSettings::default());
    let (work_tx, work_rx) = crossbeam_channel::unbounded::<(u64, bool)>();
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Duration>();
    let stop = Arc::new(AtomicBool::new(false));
    let mesh = MeshBuilder::<Msg, _>::full(2, 1024);
    let handles = {
        let stop = stop.clone();
        let pool = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(2, None)).io_memory(1 << 20);
        match spin {
            Some(spin) => pool.spin_before_park(spin),
            None => pool,
        }
        .on_all_shards(move || async move {
            let (senders, mut receivers) = mesh.join().await.expect("mesh");
            let id = senders.peer_id();
            let shard = Rc::new(Shard::new(
                id,
                2,
                store.indexes(),
                &Live::new(FillSources {
                    upstream: upstream.clone(),
                    checksums: None,
                    databases: Arc::from(Vec::new()),
                    shared: None,
                    git: None,
                }),
                store.writer(1 << 20),
                &Live::new((*settings).clone()),
                metrics.core(id),
            ));
            let mesh = Mesh::new(id, Some(senders));
            mesh.listen(&mut receivers, shard.clone());
            let core = CoreResolver::new(shard, mesh);
            while !stop.load(Ordering::Relaxed) {
                // Only core 0 takes work; core 1 must stay free to answer.
                let work = if id == 0 { work_rx.try_recv().ok() } else { None };
                let Some((iters, hop)) = work else {
                    glommio::timer::sleep(Duration::from_micros(200)).await;
                    continue;
                };
                let key = ArtifactKey { module: module.clone().into(), version: "v1.0.0".into(), kind: Kind::Info };
                let started = Instant::now();
                for _ in 0..iters {
                    if hop {
                        black_box(core.resolve(key.clone()).await.is_ok());
                    } else {
                        black_box(core.stored(&key.module, &key.version, Kind::Info).is_some());
                    }
                }
                let _ = done_tx.send(started.elapsed());
            }
        })
        .expect("executors")
    };
    let mut group = c.benchmark_group("runtime");
    group.bench_function(format!("hit_via_cross_core_hop{suffix}"), |b| {
        b.iter_custom(|iters| {
            work_tx.send((iters, true)).expect("send");
            done_rx.recv().expect("elapsed")
        })
    });
    group.bench_function(format!("hit_via_local_index_read{suffix}"), |b| {
        b.iter_custom(|iters| {
            work_tx.send((iters, false)).expect("send");
            done_rx.recv().expect("elapsed")
        })
    });
    group.finish();
    stop.store(true, Ordering::Relaxed);
    handles.join_all();
}

criterion_group!(benches, wire, index_lookup, cross_core_hop);
criterion_main!(benches);
