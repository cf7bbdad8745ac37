//! Cache policy: every decision about reusing an answer, as a named
//! function of plain values, so each rule is read (and unit-tested) in one
//! place without executors, stores or upstreams.
//!
//! Owns: how long an answer stays fresh, when a failing upstream gets the
//! stale copy instead (stale-if-error), which answers are remembered as
//! "not found" and which forget it, and which fills are streamed. It never
//! holds state: the shard keeps the maps and asks here.

use std::time::{Duration, Instant};

use super::{ResolveError, Resolved};
use crate::artifact::{CacheClass, FetchError, Kind};

/// What the resolve layer is told by configuration.
///
/// `Default` is for tests and benches: nothing remembered as not found,
/// nothing streamed, nothing prefetched, 60 s TTLs. The command line's defaults are its own
/// (`config::flags`).
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// How long `list` and `@latest` answers stay fresh (`--list-ttl`).
    pub list_ttl: Duration,
    /// How long checksum-database answers other than complete tiles stay fresh (`--sumdb-ttl`).
    pub sumdb_ttl: Duration,
    /// How long an upstream's 404/410 is remembered (`--negative-ttl`); zero: not at all.
    pub negative_ttl: Duration,
    /// Serve a zip to its requesters while it is being fetched, when the
    /// upstream announces at least this many bytes (`--stream-fills`);
    /// `None`: never.
    pub stream_fills: Option<u64>,
    /// Where cache hits are answered (`--hit-routing`).
    pub hit_routing: HitRouting,
    /// Upstream fetches one core runs at once (`--fetch-concurrency`); read at start-up.
    pub fetches_per_core: usize,
    /// Of those, fetches for any one module (`--module-fetch-concurrency`):
    /// slow answers for one module never hold every slot.
    pub fetches_per_module: usize,
    /// Prefetch what the go.mods clients are served require (`--prefetch`).
    pub prefetch: bool,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            list_ttl: Duration::from_secs(60),
            sumdb_ttl: Duration::from_secs(60),
            negative_ttl: Duration::ZERO,
            stream_fills: None,
            hit_routing: HitRouting::Local,
            fetches_per_core: 64,
            fetches_per_module: 4,
            prefetch: false,
        }
    }
}

/// Where a cache hit is answered.
///
/// `Local` reads the owner shard's lock-free index from whichever core
/// accepted the connection; `Owner` always hops to the owning core first.
/// Misses always go to the owner (that is what makes fills single-flight).
/// Both exist so the cost of the hop can be measured on a real server
/// (see BENCHMARKS.md); `Local` is the default because it is cheaper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitRouting {
    Local,
    Owner,
}

/// How long an answer of `kind` stays fresh: for good (`Duration::MAX`)
/// for the immutable kinds, which the store keeps; the configured TTL for
/// the rest, which live in memory. Clients are told the same
/// (`Cache-Control`).
pub fn ttl(settings: &CacheSettings, kind: Kind) -> Duration {
    match kind.cache_class() {
        CacheClass::Immutable => Duration::MAX,
        CacheClass::ListTtl => settings.list_ttl,
        CacheClass::SumDbTtl => settings.sumdb_ttl,
        CacheClass::Uncached => Duration::ZERO,
    }
}

/// Whether something fetched at `fetched_at` is still within `ttl`.
pub fn is_fresh(fetched_at: Instant, ttl: Duration) -> bool {
    fetched_at.elapsed() < ttl
}

/// Whether a stored answer written at `stored_at_ms` (Unix ms) is still
/// within `ttl` at `now_ms`. One written in the future (the clock went
/// back) is not: it is fetched again rather than trusted for ever.
pub fn is_fresh_at(stored_at_ms: u64, now_ms: u64, ttl: Duration) -> bool {
    now_ms.checked_sub(stored_at_ms).is_some_and(|age| u128::from(age) < ttl.as_millis())
}

/// stale-if-error: whether a failed refresh is answered with the copy past
/// its TTL, so that a CI build does not fail because the upstream blinked.
/// A 404/410 is an answer, not a failure: it is passed on.
pub fn serves_stale_after(error: &ResolveError) -> bool {
    !is_not_found(error)
}

fn is_not_found(error: &ResolveError) -> bool {
    matches!(error, ResolveError::Fetch(FetchError::NotFound { .. }))
}

/// What a fill's outcome does to the negative cache.
#[derive(Debug, PartialEq, Eq)]
pub enum NegativeUpdate<'a> {
    /// A 404/410, with remembering on: answer the next requests with it.
    Remember(&'a FetchError),
    /// Any answer: forget an earlier "not found".
    Forget,
    /// A failure (5xx, timeout, our own): not an answer, never remembered;
    /// the next request tries the upstream again.
    Keep,
}

pub fn negative_update(result: &Resolved, negative_ttl: Duration) -> NegativeUpdate<'_> {
    match result {
        Ok(_) => NegativeUpdate::Forget,
        Err(ResolveError::Fetch(e @ FetchError::NotFound { .. })) if !negative_ttl.is_zero() => NegativeUpdate::Remember(e),
        Err(_) => NegativeUpdate::Keep,
    }
}

/// The smallest announced length at which a fill of `kind` is streamed to
/// its requesters; `None`: fetched whole. A zip whose last streamed fill
/// failed is fetched whole this time, so its requesters get the reason (a
/// 502 naming it) instead of another connection cut short.
pub fn stream_from(settings: &CacheSettings, kind: Kind, last_stream_failed: bool) -> Option<u64> {
    settings.stream_fills.filter(|_| kind == Kind::Zip && !last_stream_failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_answers_age_by_the_wall_clock_and_a_future_one_is_stale() {
        let ttl = Duration::from_secs(10);
        assert!(is_fresh_at(1_000, 1_000, ttl));
        assert!(is_fresh_at(1_000, 10_999, ttl));
        assert!(!is_fresh_at(1_000, 11_000, ttl));
        assert!(!is_fresh_at(5_000, 1_000, ttl), "written after now");
        assert!(is_fresh_at(1_000, u64::MAX, Duration::MAX), "an immutable ttl never ends");
    }

    fn not_found() -> ResolveError {
        ResolveError::Fetch(FetchError::NotFound { gone: false, message: "not found".into() })
    }

    #[test]
    fn freshness_follows_the_cache_class() {
        let s = CacheSettings { list_ttl: Duration::from_secs(5), sumdb_ttl: Duration::from_secs(7), ..CacheSettings::default() };
        assert_eq!(ttl(&s, Kind::List), Duration::from_secs(5));
        assert_eq!(ttl(&s, Kind::Latest), Duration::from_secs(5));
        assert_eq!(ttl(&s, Kind::SumLookup), Duration::from_secs(7));
        assert_eq!(ttl(&s, Kind::SumPartialTile), Duration::from_secs(7));
        assert_eq!(ttl(&s, Kind::Zip), Duration::MAX);
        assert_eq!(ttl(&s, Kind::SumTile), Duration::MAX);
        assert!(is_fresh(Instant::now(), Duration::from_secs(1)));
        assert!(!is_fresh(Instant::now() - Duration::from_secs(2), Duration::from_secs(1)));
    }

    #[test]
    fn only_failures_get_the_stale_copy() {
        assert!(!serves_stale_after(&not_found()));
        assert!(serves_stale_after(&ResolveError::Fetch(FetchError::Unavailable { upstream: "u".into(), message: "refused".into() })));
        assert!(serves_stale_after(&ResolveError::Fetch(FetchError::Timeout { upstream: "u".into(), waiting: "connecting" })));
        assert!(serves_stale_after(&ResolveError::Internal("the upstream fetch panicked")));
    }

    #[test]
    fn not_found_is_remembered_only_when_asked_and_answers_forget_it() {
        let ttl = Duration::from_secs(30);
        let failed = ResolveError::Fetch(FetchError::Unavailable { upstream: "u".into(), message: "502".into() });
        let answer = super::super::Artifact { body: crate::artifact::Body::empty(), stale: false, source: None };
        let nf = not_found();
        let ResolveError::Fetch(nf_error) = &nf else { unreachable!() };
        assert_eq!(negative_update(&Err(nf.clone()), ttl), NegativeUpdate::Remember(nf_error));
        assert_eq!(negative_update(&Err(not_found()), Duration::ZERO), NegativeUpdate::Keep);
        assert_eq!(negative_update(&Err(failed), ttl), NegativeUpdate::Keep);
        assert_eq!(negative_update(&Err(ResolveError::Internal("lost")), ttl), NegativeUpdate::Keep);
        assert_eq!(negative_update(&Ok(answer), ttl), NegativeUpdate::Forget);
    }

    #[test]
    fn only_zips_stream_and_not_right_after_a_failed_stream() {
        let s = CacheSettings { stream_fills: Some(1 << 20), ..CacheSettings::default() };
        assert_eq!(stream_from(&s, Kind::Zip, false), Some(1 << 20));
        assert_eq!(stream_from(&s, Kind::Zip, true), None);
        assert_eq!(stream_from(&s, Kind::Mod, false), None);
        assert_eq!(stream_from(&CacheSettings::default(), Kind::Zip, false), None);
    }
}
