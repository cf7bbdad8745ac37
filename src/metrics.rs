//! Counters, kept per core and summed only when someone asks.
//!
//! Each core writes only its own cache-line-padded block (relaxed atomics,
//! no contention); `/metrics` reads every block and prints Prometheus text.
//! Nothing here may allocate or synchronise on the request path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn bump(&self) {
        self.add(1);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

macro_rules! core_metrics {
    ($($name:ident: $kind:literal, $help:literal;)*) => {
        /// One core's counters.
        #[derive(Default)]
        pub struct CoreMetrics {
            $(pub $name: Counter,)*
        }

        impl Metrics {
            /// Prometheus text exposition of every counter, summed over cores.
            pub fn render(&self) -> String {
                let mut out = String::new();
                $(
                    let total: u64 = self.cores.iter().map(|c| c.$name.get()).sum();
                    let _ = writeln!(out, "# HELP gomodproxy_{} {}", stringify!($name), $help);
                    let _ = writeln!(out, "# TYPE gomodproxy_{} {}", stringify!($name), $kind);
                    let _ = writeln!(out, "gomodproxy_{} {}", stringify!($name), total);
                )*
                if let Some(more) = self.more.get() {
                    more(&mut out);
                }
                out
            }
        }
    };
}

core_metrics! {
    requests: "counter", "HTTP requests parsed.";
    hits: "counter", "Immutable blobs served from the store without a fill.";
    misses: "counter", "Requests that needed the owner core to fill or refresh.";
    hops: "counter", "Requests forwarded to another core.";
    coalesced: "counter", "Requests that waited on a fill already in flight.";
    streamed_fills: "counter", "Zip fills served to their requesters while still arriving from the upstream.";
    streams_cut: "counter", "Responses cut short because the fill they were streaming from failed.";
    upstream_fetches: "counter", "Fetches sent to the upstream list.";
    fetch_queue_micros: "counter", "Time fills waited for a blocking fetch thread, in microseconds (divide by upstream_fetches for the mean).";
    fetch_micros: "counter", "Time from a fill's start to the end of its fetch (waiting for a thread, then the shared tier, upstream, hashing and verification), in microseconds.";
    upstream_errors: "counter", "Upstream fetches that failed (not counting 404/410).";
    checksum_mismatches: "counter", "Fetched .zip/.mod files refused because their h1: hash differs from the checksum database's record.";
    upstream_skipped: "counter", "Upstream fetches answered at once because the upstream's circuit breaker was open.";
    sumdb_requests: "counter", "Requests for a proxied checksum database (/sumdb/NAME/...).";
    stale_served: "counter", "list/@latest answers served stale because the upstream failed.";
    negative_hits: "counter", "404/410 answers served from the negative cache without asking the upstream.";
    shared_hits: "counter", "Fills answered from the shared tier (another node stored them).";
    shared_misses: "counter", "Fills this node took the fleet's lease for and fetched from the upstream.";
    shared_read_bytes: "counter", "Bytes read from the shared tier.";
    shared_read_micros: "counter", "Time spent reading from the shared tier, in microseconds (divide by shared_hits for the mean).";
    shared_writes: "counter", "Artifacts this node wrote to the shared tier.";
    shared_write_bytes: "counter", "Bytes written to the shared tier.";
    shared_lease_waits: "counter", "Fills that waited for another node's lease instead of fetching.";
    shared_takeovers: "counter", "Expired leases of another node taken over.";
    shared_errors: "counter", "Shared-tier requests that failed (the fill went on to the upstream).";
    shared_skipped: "counter", "Fills that skipped the shared tier because its breaker was open.";
    blobs_checked: "counter", "Stored blobs hashed on their first use (or by the scrub) since start-up.";
    blobs_quarantined: "counter", "Stored blobs withdrawn because their bytes differ from their recorded SHA-256 or their file lost them.";
    scrubbed_bytes: "counter", "Bytes of stored blobs the background scrub has hashed.";
    prefetch_queued: "counter", "Dependency .info/.mod keys queued for prefetch (required by a go.mod a client was served, stored nowhere).";
    prefetch_fetched: "counter", "Prefetched .info/.mod files fetched from the sources and stored.";
    prefetch_failed: "counter", "Prefetches the sources failed (each pauses that core's prefetching).";
    prefetch_dropped: "counter", "Prefetch keys dropped: queue full, no fetch turn to spare, or prefetching paused.";
    prefetch_pauses: "counter", "Times a core paused prefetching because the sources failed or answered slowly.";
    audit_dropped: "counter", "Audit log lines dropped (the writer fell behind or could not write).";
    store_read_only: "gauge", "1 when the data directory is read-only (what it holds is served, nothing is stored).";
    store_errors: "counter", "Blobs that could not be stored and were passed through.";
    client_errors: "counter", "Responses with a 4xx status.";
    server_errors: "counter", "Responses with a 5xx status.";
    body_bytes: "counter", "Response body bytes sent.";
    connections_accepted: "counter", "Connections accepted.";
    connections_open: "gauge", "Connections open now.";
}

pub struct Metrics {
    cores: Box<[CachePadded<CoreMetrics>]>,
    /// Figures kept elsewhere (the store's bytes on disk, its evictions),
    /// printed after the counters: set once by whoever owns them.
    more: std::sync::OnceLock<Box<PrintMore>>,
}

/// Writes figures kept outside the counters (see [`Metrics::print_also`]).
type PrintMore = dyn Fn(&mut String) + Send + Sync;

/// Appends one metric in Prometheus text (for [`Metrics::print_also`]).
pub fn write_metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP gomodproxy_{name} {help}");
    let _ = writeln!(out, "# TYPE gomodproxy_{name} {kind}");
    let _ = writeln!(out, "gomodproxy_{name} {value}");
}

impl Metrics {
    /// Lives as long as the process: cores hold `&'static` references so the
    /// request path never touches a reference count.
    pub fn leak(cores: usize) -> &'static Metrics {
        let cores = (0..cores.max(1)).map(|_| CachePadded::new(CoreMetrics::default())).collect();
        Box::leak(Box::new(Metrics { cores, more: std::sync::OnceLock::new() }))
    }

    /// Has `/metrics` print what `more` writes (see [`write_metric`]) after the counters.
    pub fn print_also(&self, more: impl Fn(&mut String) + Send + Sync + 'static) {
        let _ = self.more.set(Box::new(more));
    }

    pub fn connections_open(&self) -> u64 {
        self.cores.iter().map(|c| c.connections_open.get()).sum()
    }

    pub fn core(&'static self, id: usize) -> &'static CoreMetrics {
        &self.cores[id % self.cores.len()]
    }
}
