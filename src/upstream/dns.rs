//! A DNS cache for the `http(s)` upstreams: an answer is reused for
//! `--dns-cache-ttl`, and past it served while a refresh runs in the
//! background (and kept when the refresh fails), so a lost or slow DNS
//! query (the system resolver retries only after 5 s) never stalls a fetch
//! of a host that was resolved before.
//!
//! Owns the cache and its refresh rule, and the process's counts of
//! upstream connections and of the lookups they waited for. The system resolver
//! (`getaddrinfo`) does the lookups and tells no TTL, so the cache time is
//! ours to set. It never connects anywhere and never decides which
//! address a connection uses (ureq tries them in order).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What connecting to the `http(s)` upstreams has cost, process-wide (a
/// reload builds new caches; the figures go on). ureq asks its resolver
/// once for every connection it opens, and never for one it reuses, so
/// [`DnsCache::resolve`] is where new connections are counted; the TLS
/// handshakes are timed in [`super::tls::TimedTls`].
pub struct ConnectStats {
    /// Connections opened to upstream hosts (each asked the resolver once).
    pub connections: AtomicU64,
    /// Lookups a fetch waited for (a name not cached yet).
    pub lookups_waited: AtomicU64,
    pub lookup_wait_micros: AtomicU64,
    /// Lookups that failed, waited for or in the background.
    pub lookup_failures: AtomicU64,
    /// TLS handshakes with upstream hosts, and the time they took.
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_micros: AtomicU64,
}

pub static CONNECT_STATS: ConnectStats = ConnectStats {
    connections: AtomicU64::new(0),
    lookups_waited: AtomicU64::new(0),
    lookup_wait_micros: AtomicU64::new(0),
    lookup_failures: AtomicU64::new(0),
    tls_handshakes: AtomicU64::new(0),
    tls_handshake_micros: AtomicU64::new(0),
};

pub fn micros_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// How a name is looked up: the system resolver, or a test's.
type Lookup = dyn Fn(&str) -> io::Result<Vec<SocketAddr>> + Send + Sync;

struct Entry {
    addrs: Vec<SocketAddr>,
    resolved_at: Instant,
    /// A background refresh is under way.
    refreshing: bool,
}

struct Inner {
    ttl: Duration,
    /// Turns the answer's order per use: ureq connects to the first address
    /// that answers, so new connections spread over a host's addresses as
    /// with the round-robin order of fresh lookups.
    turn: std::sync::atomic::AtomicUsize,
    lookup: Box<Lookup>,
    entries: Mutex<HashMap<String, Entry>>,
}

/// Shared by every upstream agent (one cache per process), cheap to clone.
#[derive(Clone)]
pub struct DnsCache(Arc<Inner>);

impl std::fmt::Debug for DnsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DnsCache(ttl {:?})", self.0.ttl)
    }
}

/// Most names kept: upstreams are a handful of hosts; a bound all the same.
const MAX_ENTRIES: usize = 1024;

impl DnsCache {
    /// A cache over the system resolver.
    pub fn new(ttl: Duration) -> DnsCache {
        DnsCache::with_lookup(ttl, |netloc| netloc.to_socket_addrs().map(Iterator::collect))
    }

    pub fn with_lookup(ttl: Duration, lookup: impl Fn(&str) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static) -> DnsCache {
        DnsCache(Arc::new(Inner {
            ttl,
            turn: std::sync::atomic::AtomicUsize::new(0),
            lookup: Box::new(lookup),
            entries: Mutex::new(HashMap::new()),
        }))
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.0.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The addresses of `netloc` (`host:port`). Fresh: from the cache.
    /// Stale: from the cache, with one refresh started in the background.
    /// Unknown: looked up now (the only lookup a fetch ever waits for).
    pub fn resolve(&self, netloc: &str) -> io::Result<Vec<SocketAddr>> {
        CONNECT_STATS.connections.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let cached = {
            let mut entries = self.entries();
            entries.get_mut(netloc).map(|e| {
                let refresh = now.duration_since(e.resolved_at) >= self.0.ttl && !e.refreshing;
                e.refreshing |= refresh;
                (e.addrs.clone(), refresh)
            })
        };
        if let Some((mut addrs, refresh)) = cached {
            if refresh {
                self.refresh_in_background(netloc);
            }
            if addrs.len() > 1 {
                let by = self.0.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % addrs.len();
                addrs.rotate_left(by);
            }
            return Ok(addrs);
        }
        let looked_up = (self.0.lookup)(netloc);
        CONNECT_STATS.lookups_waited.fetch_add(1, Ordering::Relaxed);
        CONNECT_STATS.lookup_wait_micros.fetch_add(micros_since(now), Ordering::Relaxed);
        let addrs = looked_up.inspect_err(|_| {
            CONNECT_STATS.lookup_failures.fetch_add(1, Ordering::Relaxed);
        })?;
        self.store(netloc, &addrs);
        Ok(addrs)
    }

    fn store(&self, netloc: &str, addrs: &[SocketAddr]) {
        if addrs.is_empty() {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(netloc) {
            // The oldest answer makes room.
            if let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.resolved_at).map(|(k, _)| k.clone()) {
                entries.remove(&oldest);
            }
        }
        entries.insert(netloc.to_string(), Entry { addrs: addrs.to_vec(), resolved_at: Instant::now(), refreshing: false });
    }

    fn refresh_in_background(&self, netloc: &str) {
        let (cache, name) = (self.clone(), netloc.to_string());
        let spawned = std::thread::Builder::new().name("gomodproxy-dns".into()).spawn(move || cache.refresh(&name));
        if spawned.is_err() {
            // No thread to be had: the stale answer stays; the next use tries again.
            if let Some(e) = self.entries().get_mut(netloc) {
                e.refreshing = false;
            }
        }
    }

    fn refresh(&self, netloc: &str) {
        match (self.0.lookup)(netloc) {
            Ok(addrs) if !addrs.is_empty() => self.store(netloc, &addrs),
            // A failed refresh keeps the last answer (stale-if-error) and
            // is tried again on the next use.
            outcome => {
                if let Err(e) = outcome {
                    CONNECT_STATS.lookup_failures.fetch_add(1, Ordering::Relaxed);
                    log::warn!("resolving {netloc} failed: {e}; using its last known addresses");
                }
                if let Some(e) = self.entries().get_mut(netloc) {
                    e.refreshing = false;
                }
            }
        }
    }
}

impl ureq::Resolver for DnsCache {
    fn resolve(&self, netloc: &str) -> io::Result<Vec<SocketAddr>> {
        DnsCache::resolve(self, netloc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 443))
    }

    #[test]
    fn answers_are_reused_refreshed_in_the_background_and_kept_when_a_refresh_fails() {
        let calls = Arc::new(AtomicUsize::new(0));
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, f) = (calls.clone(), fail.clone());
        let cache = DnsCache::with_lookup(Duration::from_millis(50), move |_| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            if f.load(Ordering::SeqCst) {
                return Err(io::Error::other("lost"));
            }
            Ok(vec![addr(n as u8 + 1)])
        });
        assert_eq!(cache.resolve("mirror.test:443").unwrap(), vec![addr(1)]);
        assert_eq!(cache.resolve("mirror.test:443").unwrap(), vec![addr(1)], "fresh: from the cache");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        std::thread::sleep(Duration::from_millis(60));
        // Stale: the old answer at once, a refresh behind it.
        assert_eq!(cache.resolve("mirror.test:443").unwrap(), vec![addr(1)]);
        let refreshed = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            cache.resolve("mirror.test:443").unwrap() == vec![addr(2)]
        });
        assert!(refreshed, "the background refresh replaced the answer");
        fail.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(60));
        for _ in 0..20 {
            assert_eq!(cache.resolve("mirror.test:443").unwrap(), vec![addr(2)], "a failed refresh keeps the last answer");
            std::thread::sleep(Duration::from_millis(10));
        }
        // An unknown name fails as the resolver does.
        assert!(cache.resolve("other.test:443").is_err());
    }
}
