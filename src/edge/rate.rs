//! Rate limits per client address and per client name (`--rate-limit`
//! for every request, `--miss-rate-limit` for those that go past a local
//! hit to the module's owner: fills, refreshes, queries).
//!
//! Each client's bucket is one atomic (GCRA: the theoretical arrival time
//! of its next request), in a lock-free map every core shares, so a
//! client whose connections land on many cores gets exactly its limit,
//! with no lock and no hop. Owns the limit's syntax and the buckets; it
//! never decides who a client is (the caller names it).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_skiplist::SkipMap;

/// `RATE[,burst=N]`: requests per second (`200/s`, `12000/m`) and how many
/// may come at once (default: one second's worth).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Time each request costs, in nanoseconds.
    interval_ns: u64,
    /// Requests that may come back to back.
    burst: u64,
}

impl Limit {
    pub fn parse(s: &str) -> Result<Limit, String> {
        let mut parts = s.split(',').map(str::trim);
        let rate = parts.next().unwrap_or("");
        let (count, per) = rate.split_once('/').ok_or_else(|| format!("{rate:?}: a rate is N/s, N/m or N/h"))?;
        let count: f64 = count
            .trim()
            .parse()
            .ok()
            .filter(|c: &f64| c.is_finite() && *c > 0.0)
            .ok_or_else(|| format!("{rate:?}: N must be a positive number"))?;
        let secs = match per.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("{other:?}: per s, m or h")),
        };
        let per_sec = count / secs;
        let mut burst = per_sec.ceil().max(1.0) as u64;
        for p in parts {
            let n = p.strip_prefix("burst=").ok_or_else(|| format!("{p:?}: only burst=N may follow the rate"))?;
            burst = n.parse().ok().filter(|&b| b > 0).ok_or_else(|| format!("{p:?}: burst must be a positive integer"))?;
        }
        Ok(Limit { interval_ns: (1e9 / per_sec).max(1.0) as u64, burst })
    }
}

/// Who a bucket is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Who {
    Address(IpAddr),
    Name(Box<str>),
}

/// One limit's buckets, one per client.
pub struct Buckets {
    limit: Limit,
    /// Each client's theoretical arrival time, ns since [`epoch`].
    tats: SkipMap<Who, Arc<AtomicU64>>,
    /// Buckets added since the last sweep of idle ones.
    added: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Buckets added between sweeps of the idle ones (bounds memory under a
/// flood of distinct addresses).
const SWEEP_EVERY: u64 = 4096;

impl Buckets {
    pub fn new(limit: Limit) -> Buckets {
        Buckets { limit, tats: SkipMap::new(), added: AtomicU64::new(0) }
    }

    /// Takes one request's worth from `who`'s bucket: `Ok`, or how long
    /// until one would be allowed.
    pub fn take(&self, who: &Who) -> Result<(), Duration> {
        self.take_at(who, now_ns())
    }

    fn take_at(&self, who: &Who, now: u64) -> Result<(), Duration> {
        let tat = match self.tats.get(who) {
            Some(e) => e.value().clone(),
            None => {
                if self.added.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
                    self.sweep(now);
                }
                self.tats.get_or_insert(who.clone(), Arc::new(AtomicU64::new(0))).value().clone()
            }
        };
        let Limit { interval_ns, burst } = self.limit;
        let tolerance = interval_ns.saturating_mul(burst.saturating_sub(1));
        let mut old = tat.load(Ordering::Acquire);
        loop {
            let start = old.max(now);
            if start - now > tolerance {
                return Err(Duration::from_nanos(start - now - tolerance));
            }
            match tat.compare_exchange_weak(old, start + interval_ns, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(seen) => old = seen,
            }
        }
    }

    /// Drops buckets that are full again (their client has been quiet).
    fn sweep(&self, now: u64) {
        for e in self.tats.iter() {
            if e.value().load(Ordering::Acquire) < now {
                e.remove();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.tats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tats.is_empty()
    }
}

/// `--rate-limit` and `--miss-rate-limit`, as configured.
#[derive(Default)]
pub struct RateLimits {
    pub all: Option<Buckets>,
    pub misses: Option<Buckets>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("all", &self.all.as_ref().map(|b| b.limit))
            .field("misses", &self.misses.as_ref().map(|b| b.limit))
            .finish()
    }
}

/// Takes from the address's bucket and, for a named client, the name's
/// too: the first refusal wins.
pub fn take_both(buckets: &Buckets, address: IpAddr, name: Option<&str>) -> Result<(), Duration> {
    buckets.take(&Who::Address(address))?;
    match name {
        Some(n) => buckets.take(&Who::Name(n.into())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_refuse_nonsense() {
        assert_eq!(Limit::parse("200/s,burst=400").unwrap(), Limit { interval_ns: 5_000_000, burst: 400 });
        assert_eq!(Limit::parse("60/m").unwrap(), Limit { interval_ns: 1_000_000_000, burst: 1 });
        for bad in ["200", "0/s", "-1/s", "10/d", "10/s,burst=0", "10/s,bust=3", "x/s"] {
            assert!(Limit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds_and_the_bucket_refills() {
        let b = Buckets::new(Limit::parse("10/s,burst=5").unwrap());
        let who = Who::Address("192.0.2.1".parse().unwrap());
        let t0 = 1_000_000_000;
        for i in 0..5 {
            assert!(b.take_at(&who, t0).is_ok(), "burst request {i}");
        }
        let wait = b.take_at(&who, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100), "one interval until the next");
        // Another client is unaffected.
        assert!(b.take_at(&Who::Address("192.0.2.2".parse().unwrap()), t0).is_ok());
        // 100 ms later one more; a second later the whole burst again.
        assert!(b.take_at(&who, t0 + 100_000_000).is_ok());
        assert!(b.take_at(&who, t0 + 100_000_000).is_err());
        for _ in 0..5 {
            assert!(b.take_at(&who, t0 + 2_000_000_000).is_ok());
        }
    }

    #[test]
    fn threads_sharing_a_bucket_get_exactly_the_limit() {
        let b = Arc::new(Buckets::new(Limit::parse("1/h,burst=1000").unwrap()));
        let who = Who::Name("ci".into());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (b, who) = (b.clone(), who.clone());
                std::thread::spawn(move || (0..1000).filter(|_| b.take_at(&who, 5).is_ok()).count())
            })
            .collect();
        let allowed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(allowed, 1000, "the burst, shared exactly, across threads");
    }

    #[test]
    fn quiet_clients_buckets_are_swept() {
        let b = Buckets::new(Limit::parse("1000/s").unwrap());
        // The sweep runs as every SWEEP_EVERY-th new bucket is added: this late one.
        for i in 0..SWEEP_EVERY - 1 {
            let ip = IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
            assert!(b.take_at(&Who::Address(ip), 0).is_ok());
        }
        assert!(b.take_at(&Who::Address("192.0.2.9".parse().unwrap()), 10_000_000_000).is_ok());
        assert!(b.len() < 10, "idle buckets dropped, {} left", b.len());
    }
}
