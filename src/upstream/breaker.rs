//! A circuit breaker per `http(s)` upstream: after failures (connect
//! errors, timeouts, 5xx and 429 — never a 404/410 or another 4xx, which
//! are answers) for `threshold` different modules in a row, with no
//! success between them, the upstream is skipped for `cooldown`, answering at once as if
//! it had failed, so a dead upstream costs one timeout instead of one per
//! request. After the cool-down one request goes through as a probe (half
//! open): its success closes the circuit, its failure opens it again.
//!
//! Failures count once per module: an upstream that answers 500 for the
//! paths one client chooses to ask for (a module it cannot build, a
//! crafted path) is failing for that module, not for everyone, so
//! repeating one bad path never takes the upstream away from the others.
//!
//! Owns that state machine and nothing else: it never retries, never
//! decides what a request means, and never holds its lock across a fetch.
//! The lock is only taken on the upstream path (misses), never by a cache
//! hit, and for a few instructions. The clock is a parameter, so the state
//! machine is tested without sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Fetch, FetchError, Fetcher};

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Closed {
        /// The modules (by hash) that failed since the last success.
        failing: Vec<u64>,
    },
    Open {
        until: Instant,
    },
    /// Cool-down over; one probe is in flight and everyone else is turned away.
    HalfOpen,
}

/// Whether a request may go to the upstream now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Go,
    /// The circuit is open: skip the upstream; it may be tried again after this long.
    Skip {
        retry_in: Duration,
    },
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

impl Breaker {
    /// `threshold` consecutive failures open the circuit (at least 1).
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker { threshold: threshold.max(1), cooldown, state: Mutex::new(State::Closed { failing: Vec::new() }) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding this lock cannot leave the state
        // half-updated (every write is one assignment): keep using it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn admit(&self, now: Instant) -> Admission {
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Admission::Go,
            State::Open { until } if now >= until => {
                *state = State::HalfOpen;
                Admission::Go
            }
            State::Open { until } => Admission::Skip { retry_in: until - now },
            // The probe decides; until it has, nobody else waits on a dead upstream.
            State::HalfOpen => Admission::Skip { retry_in: Duration::ZERO },
        }
    }

    /// Records the outcome of an admitted request: `failed_module` is the
    /// hash of the module it failed for (see [`module_hash`]), `None` for
    /// an answer. Returns true when this outcome opened the circuit (for
    /// the caller to log).
    pub fn record(&self, now: Instant, failed_module: Option<u64>) -> bool {
        let mut state = self.state();
        match (&mut *state, failed_module) {
            // Any answer shows the upstream alive, even one admitted before the circuit opened.
            (_, None) => {
                *state = State::Closed { failing: Vec::new() };
                false
            }
            (State::Closed { failing }, Some(module)) => {
                if !failing.contains(&module) {
                    failing.push(module);
                }
                if failing.len() >= self.threshold as usize {
                    *state = State::Open { until: now + self.cooldown };
                    return true;
                }
                false
            }
            (State::HalfOpen, Some(_)) => {
                *state = State::Open { until: now + self.cooldown };
                true
            }
            // A late failure of a request admitted before the circuit opened: no news.
            (State::Open { .. }, Some(_)) => false,
        }
    }
}

/// What [`Breaker::record`] counts failures by.
pub fn module_hash(module: &str) -> u64 {
    ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(module)
}

/// Whether an error says the upstream is unwell (as opposed to answering).
pub fn is_failure(e: &FetchError) -> bool {
    matches!(e, FetchError::Unavailable { .. } | FetchError::Timeout { .. })
}

/// A fetcher behind a breaker.
pub struct Guarded<F> {
    inner: F,
    breaker: Breaker,
}

impl<F: Fetcher> Guarded<F> {
    pub fn new(inner: F, threshold: u32, cooldown: Duration) -> Guarded<F> {
        Guarded { inner, breaker: Breaker::new(threshold, cooldown) }
    }
}

impl<F: Fetcher> Fetcher for Guarded<F> {
    fn fetch(&self, req: &Fetch<'_>) -> Result<Vec<u8>, FetchError> {
        self.fetch_streaming(req, &crate::artifact::fill::Progress::default()).map(Vec::from)
    }

    fn fetch_streaming(&self, req: &Fetch<'_>, progress: &crate::artifact::fill::Progress) -> Result<bytes::Bytes, FetchError> {
        if let Admission::Skip { retry_in } = self.breaker.admit(Instant::now()) {
            return Err(FetchError::CircuitOpen { upstream: self.inner.name().to_string(), retry_in });
        }
        let result = self.inner.fetch_streaming(req, progress);
        let failed = matches!(&result, Err(e) if is_failure(e)).then(|| module_hash(req.module));
        if self.breaker.record(Instant::now(), failed) {
            log::warn!(
                "upstream {} failed for {} different modules in a row; skipping it for {:?}",
                self.inner.name(),
                self.breaker.threshold,
                self.breaker.cooldown
            );
        }
        result
    }

    fn name(&self) -> &str {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(30);

    /// A module not seen before, so each failure counts.
    fn next() -> u64 {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn one_module_failing_again_and_again_never_opens_it() {
        let t0 = Instant::now();
        let b = Breaker::new(3, COOL);
        for _ in 0..20 {
            assert!(!b.record(t0, Some(module_hash("example.com/bad"))));
        }
        assert_eq!(b.admit(t0), Admission::Go);
        assert!(!b.record(t0, Some(module_hash("example.com/other"))));
        assert!(b.record(t0, Some(module_hash("example.com/third"))), "three different modules failing in a row open it");
    }

    #[test]
    fn opens_after_k_consecutive_failures_only() {
        let t0 = Instant::now();
        let b = Breaker::new(3, COOL);
        assert_eq!(b.admit(t0), Admission::Go);
        b.record(t0, Some(next()));
        b.record(t0, Some(next()));
        b.record(t0, None); // an answer resets the count
        assert!(!b.record(t0, Some(next())));
        assert!(!b.record(t0, Some(next())));
        assert_eq!(b.admit(t0), Admission::Go);
        assert!(b.record(t0, Some(next())), "the third failure in a row opens the circuit");
        assert_eq!(b.admit(t0 + Duration::from_secs(10)), Admission::Skip { retry_in: Duration::from_secs(20) });
    }

    #[test]
    fn after_the_cooldown_one_probe_decides() {
        let t0 = Instant::now();
        let b = Breaker::new(1, COOL);
        assert!(b.record(t0, Some(next())));
        let later = t0 + COOL;
        assert_eq!(b.admit(later), Admission::Go, "the probe");
        assert!(matches!(b.admit(later), Admission::Skip { .. }), "only one probe at a time");
        // The probe fails: open for another cool-down.
        assert!(b.record(later, Some(next())));
        assert!(matches!(b.admit(later + COOL / 2), Admission::Skip { .. }));
        let again = later + COOL;
        assert_eq!(b.admit(again), Admission::Go);
        // The probe succeeds: closed, everyone goes.
        assert!(!b.record(again, None));
        assert_eq!(b.admit(again), Admission::Go);
        assert_eq!(b.admit(again), Admission::Go);
    }

    #[test]
    fn late_outcomes_of_earlier_requests() {
        let t0 = Instant::now();
        let b = Breaker::new(2, COOL);
        // Two requests admitted while closed; both fail: the second opens it.
        b.record(t0, Some(next()));
        assert!(b.record(t0, Some(next())));
        // A third, admitted before, fails late: still open, cool-down not extended.
        assert!(!b.record(t0 + Duration::from_secs(5), Some(next())));
        assert_eq!(b.admit(t0 + COOL), Admission::Go);
        // ... and one that succeeds late closes it: the upstream is answering.
        let b = Breaker::new(1, COOL);
        b.record(t0, Some(next()));
        b.record(t0, None);
        assert_eq!(b.admit(t0), Admission::Go);
    }

    struct Flaky(std::sync::atomic::AtomicUsize, fn(usize) -> Result<Vec<u8>, FetchError>);
    impl Fetcher for Flaky {
        fn fetch(&self, _: &Fetch<'_>) -> Result<Vec<u8>, FetchError> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (self.1)(n)
        }
        fn name(&self) -> &str {
            "flaky"
        }
    }

    #[test]
    fn a_guarded_fetcher_stops_asking_a_dead_upstream() {
        let req = Fetch { module: "example.com/a", version: "", kind: super::super::Kind::List };
        let dead = Guarded::new(
            Flaky(Default::default(), |_| Err(FetchError::Timeout { upstream: "flaky".into(), waiting: "connecting" })),
            2,
            COOL,
        );
        // The same module failing again does not count twice...
        for _ in 0..3 {
            let _ = dead.fetch(&req);
        }
        assert_eq!(dead.inner.0.load(std::sync::atomic::Ordering::Relaxed), 3);
        // ...a second module failing opens it.
        for i in 0..10 {
            let module = format!("example.com/m{i}");
            let _ = dead.fetch(&Fetch { module: &module, version: "", kind: super::super::Kind::List });
        }
        assert_eq!(dead.inner.0.load(std::sync::atomic::Ordering::Relaxed), 4);
        assert!(matches!(dead.fetch(&req), Err(FetchError::CircuitOpen { .. })));
        // 404s (and other answers, such as a 403) never open it.
        let missing = Guarded::new(Flaky(Default::default(), |_| Err(FetchError::NotFound { gone: false, message: "no".into() })), 1, COOL);
        for _ in 0..5 {
            assert!(matches!(missing.fetch(&req), Err(FetchError::NotFound { .. })));
        }
        assert_eq!(missing.inner.0.load(std::sync::atomic::Ordering::Relaxed), 5);
        let forbidden = Guarded::new(
            Flaky(Default::default(), |_| Err(FetchError::Rejected { upstream: "flaky".into(), status: 403, message: String::new() })),
            1,
            COOL,
        );
        for _ in 0..3 {
            assert!(matches!(forbidden.fetch(&req), Err(FetchError::Rejected { .. })));
        }
        assert_eq!(forbidden.inner.0.load(std::sync::atomic::Ordering::Relaxed), 3);
    }
}
