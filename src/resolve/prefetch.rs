//! Dependency-graph prefetch: when a client is served a go.mod, the
//! `.info` and `.mod` of the versions it requires that are not stored yet
//! are fetched in the background, so the go command's walk of the module
//! graph finds them waiting.
//!
//! Owns one core's queue of keys to prefetch (bounded, each key once, of
//! any owner), the go.mods whose requirements this core queued already,
//! the workers that drain the queue, and the pause after trouble: a
//! prefetch that fails on the upstream or answers slowly stops this core's
//! prefetching for a while, doubling while the trouble lasts. The fetch
//! itself is an ordinary fill on the key's owner core
//! ([`Shard::prefetch_owned`]): single-flight with the clients' requests,
//! and only with a fetch turn to spare.
//!
//! What it reads ahead follows the go command's graph pruning (the
//! modules reference, "Module graph pruning"; cmd/go's `readModGraph`).
//! Below a go.mod older than go 1.17 the go command loads the go.mod of
//! every version in the closure, eagerly but only GOMAXPROCS at a time: a
//! client served such a go.mod has the `.mod` of each version it requires
//! queued, and the `.info` of the highest version of each module required
//! so far (what minimal version selection will ask for). One level: a
//! go.mod only prefetch fetched is followed once a client reads it, which
//! is soon when the walk really goes there (measured: following it at once
//! saved nothing and fetched three times as much nobody asked for on a real
//! graph). A go 1.17+ go.mod lists what its packages need, and the go
//! command reads those go.mods only on demand, for the versions it
//! selects: nothing is guessed for it.
//!
//! It never fetches for a client and never makes a client wait: its
//! workers run in a task queue of low shares and take no fetch turn a
//! client would wait for.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;

use super::route;
use super::{CoreResolver, ToOwner};
use crate::artifact::{ArtifactKey, Kind};
use crate::gomod::{modfile, module, semver};
use crate::metrics::CoreMetrics;
use crate::store::Index;

/// Keys one core holds at most, queued or being fetched; more are dropped
/// (and counted): a go.mod with thousands of requirements must not make a
/// queue of them.
const QUEUE_CAPACITY: usize = 1024;

/// go.mods one core remembers having queued the requirements of, and
/// module paths it remembers the highest required version of (per
/// generation; two are kept).
const NOTED_GENERATION: usize = 16 * 1024;

/// A prefetch slower than this means the upstream is struggling: prefetch pauses.
const SLOW: Duration = Duration::from_secs(2);

/// The first pause after trouble, and the longest.
const FIRST_PAUSE: Duration = Duration::from_secs(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(300);

/// A map bounded by generations: inserts go to the newer one, lookups see
/// both, and a full newer generation replaces the older (whose entries
/// are forgotten all at once, with no bookkeeping per entry).
struct Generations<K, V> {
    maps: [HashMap<K, V, ahash::RandomState>; 2],
}

impl<K: std::hash::Hash + Eq, V> Default for Generations<K, V> {
    fn default() -> Self {
        Generations { maps: [HashMap::default(), HashMap::default()] }
    }
}

impl<K: std::hash::Hash + Eq, V> Generations<K, V> {
    fn get<Q: std::hash::Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.maps[0].get(key).or_else(|| self.maps[1].get(key))
    }

    fn insert(&mut self, key: K, value: V) {
        if self.maps[0].len() >= NOTED_GENERATION {
            self.maps.swap(0, 1);
            self.maps[0].clear();
        }
        self.maps[0].insert(key, value);
    }
}

/// How one prefetch ended, as the owner tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefetched {
    /// Fetched from the sources and kept.
    Fetched,
    /// Nothing to do: stored already, a fresh "not found", or a fill under way.
    Known,
    /// No fetch turn to spare (clients' fills have them): dropped.
    Busy,
    /// The sources do not have it (404/410).
    Missing,
    /// The sources failed (unreachable, timed out, refused...) or we did.
    Failed,
    /// Fetched, but the store could not keep it (full, read-only): a
    /// prefetch would be fetched for nothing.
    Unkept,
}

/// Whether the go command loads the whole closure below this go.mod: its
/// `go` directive predates 1.17 (cmd/go's `pruningForGoVersion`), or it has
/// none (then 1.16 is assumed).
pub fn is_unpruned(go_mod: &[u8]) -> bool {
    let Some(v) = modfile::go_version(go_mod) else { return true };
    let mut numbers = v.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u64>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) < (1, 17)
}

/// One core's prefetch queue and its state.
pub struct Prefetch {
    /// `.mod` keys: the graph walk waits for these first.
    queue: RefCell<VecDeque<ArtifactKey>>,
    /// `.info` keys: the go command asks for these once the walk is over.
    later: RefCell<VecDeque<ArtifactKey>>,
    /// The keys queued or being fetched from here (each key once).
    pending: RefCell<HashSet<ArtifactKey, ahash::RandomState>>,
    /// Hashes of the go.mods (module, version) whose requirements were
    /// queued from here.
    noted: RefCell<Generations<u64, ()>>,
    noted_hasher: ahash::RandomState,
    /// The highest version of each module path required so far.
    highest: RefCell<Generations<Box<str>, Box<str>>>,
    /// One unit per queued key; the workers wait on it.
    ready: Rc<Semaphore>,
    /// Set while paused after trouble.
    paused_until: Cell<Option<Instant>>,
    /// The next pause's length.
    next_pause: Cell<Duration>,
    metrics: &'static CoreMetrics,
}

impl Prefetch {
    pub fn new(metrics: &'static CoreMetrics) -> Prefetch {
        Prefetch {
            queue: RefCell::default(),
            later: RefCell::default(),
            pending: RefCell::default(),
            noted: RefCell::default(),
            noted_hasher: ahash::RandomState::new(),
            highest: RefCell::default(),
            ready: Rc::new(Semaphore::new(0)),
            paused_until: Cell::new(None),
            next_pause: Cell::new(FIRST_PAUSE),
            metrics,
        }
    }

    /// How many workers drain one core's queue: a quarter of the core's
    /// fetch turns (at least one; half of them are the clients' anyway).
    /// Each waits for its prefetch's answer: a fill waits for the upstream
    /// and then for its segment's sync, so fewer would fall behind the go
    /// command itself.
    pub fn workers(fetches_per_core: usize) -> usize {
        (fetches_per_core / 4).max(1)
    }

    fn paused(&self) -> bool {
        match self.paused_until.get() {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                self.paused_until.set(None);
                false
            }
            None => false,
        }
    }

    /// A client was served the go.mod of `module@version`: if it predates
    /// graph pruning, queues the `.mod` (and, for the highest version
    /// required so far, the `.info`) of each version it requires that no
    /// core stores (each go.mod once per core, each key once).
    pub fn after_go_mod_read(&self, module: &str, version: &str, go_mod: &[u8], indexes: &[Index]) {
        if !is_unpruned(go_mod) || self.paused() {
            return;
        }
        let id = self.noted_hasher.hash_one((module, version));
        {
            let mut noted = self.noted.borrow_mut();
            if noted.get(&id).is_some() {
                return;
            }
            noted.insert(id, ());
        }
        for (path, v) in modfile::requirements(go_mod) {
            // Hostile bytes name what they like: only what a client could ask for.
            if module::check_canonical(&path, &v).is_err() {
                continue;
            }
            let owner = &indexes[route::owner_of(&path, indexes.len())];
            let infos = self.highest_so_far(&path, &v);
            for kind in [Kind::Mod, Kind::Info] {
                if kind == Kind::Info && !infos {
                    continue;
                }
                let stored = kind.record_kind().is_some_and(|rk| owner.contains(&path, &v, rk));
                if !stored {
                    self.push(ArtifactKey { module: path.as_str().into(), version: v.as_str().into(), kind });
                }
            }
        }
    }

    /// Whether `version` is the highest of `path` required so far (and
    /// now remembered as such).
    fn highest_so_far(&self, path: &str, version: &str) -> bool {
        let mut highest = self.highest.borrow_mut();
        if highest.get(path).is_some_and(|h| semver::compare(version, h) == std::cmp::Ordering::Less) {
            return false;
        }
        highest.insert(path.into(), version.into());
        true
    }

    fn push(&self, key: ArtifactKey) {
        let mut pending = self.pending.borrow_mut();
        if pending.contains(&key) {
            return;
        }
        if pending.len() >= QUEUE_CAPACITY {
            self.metrics.prefetch_dropped.bump();
            return;
        }
        pending.insert(key.clone());
        let queue = if key.kind == Kind::Mod { &self.queue } else { &self.later };
        queue.borrow_mut().push_back(key);
        self.metrics.prefetch_queued.bump();
        self.ready.signal(1);
    }

    /// The next key to prefetch, waiting for one; `None` once closed.
    async fn next(&self) -> Option<ArtifactKey> {
        loop {
            self.ready.acquire(1).await.ok()?;
            let next = self.queue.borrow_mut().pop_front().or_else(|| self.later.borrow_mut().pop_front());
            let Some(key) = next else { continue };
            if self.paused() {
                self.pending.borrow_mut().remove(&key);
                self.metrics.prefetch_dropped.bump();
                continue;
            }
            return Some(key);
        }
    }

    /// Takes note of how a prefetch that took `took` ended.
    fn settle(&self, key: &ArtifactKey, outcome: Prefetched, took: Duration) {
        self.pending.borrow_mut().remove(key);
        match outcome {
            Prefetched::Fetched => self.metrics.prefetch_fetched.bump(),
            Prefetched::Busy => self.metrics.prefetch_dropped.bump(),
            Prefetched::Failed | Prefetched::Unkept => self.metrics.prefetch_failed.bump(),
            Prefetched::Known | Prefetched::Missing => {}
        }
        let trouble = matches!(outcome, Prefetched::Failed | Prefetched::Unkept) || took >= SLOW;
        if trouble {
            self.pause(key, outcome, took);
        } else if matches!(outcome, Prefetched::Fetched | Prefetched::Missing) {
            self.next_pause.set(FIRST_PAUSE);
        }
    }

    /// Stops this core's prefetching for the next pause, dropping what is queued.
    fn pause(&self, key: &ArtifactKey, outcome: Prefetched, took: Duration) {
        let pause = self.next_pause.get();
        if !self.paused() {
            log::warn!(
                module = &*key.module, version = &*key.version;
                "prefetch paused for {pause:?}: {}@{} ({}) {} after {took:?}",
                key.module, key.version, key.kind.label(),
                match outcome {
                    Prefetched::Failed => "failed",
                    Prefetched::Unkept => "could not be stored",
                    _ => "answered slowly",
                }
            );
            self.metrics.prefetch_pauses.bump();
        }
        self.paused_until.set(Some(Instant::now() + pause));
        self.next_pause.set((pause * 2).min(LONGEST_PAUSE));
        let mut dropped: Vec<ArtifactKey> = self.queue.borrow_mut().drain(..).collect();
        dropped.extend(self.later.borrow_mut().drain(..));
        let mut pending = self.pending.borrow_mut();
        for k in &dropped {
            pending.remove(k);
            self.metrics.prefetch_dropped.bump();
        }
    }
}

/// One prefetch worker of a core: takes keys from its queue and has their
/// owners fill them, one at a time, until the queue closes. Spawned
/// [`Prefetch::workers`] times per core, in a task queue of low shares.
pub async fn work<T: ToOwner>(resolver: CoreResolver<T>) {
    let prefetch = resolver.prefetch();
    while let Some(key) = prefetch.next().await {
        let started = Instant::now();
        let outcome = resolver.prefetch_one(key.clone()).await;
        prefetch.settle(&key, outcome, started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> &'static CoreMetrics {
        crate::metrics::Metrics::leak(1).core(0)
    }

    fn indexes() -> Vec<Index> {
        vec![Index::new()]
    }

    fn queued(p: &Prefetch) -> Vec<String> {
        p.queue.borrow().iter().chain(p.later.borrow().iter()).map(|k| format!("{}@{}{}", k.module, k.version, k.kind.label())).collect()
    }

    const GO_MOD: &[u8] =
        b"module example.com/a\n\ngo 1.16\n\nrequire (\n\texample.com/b v1.0.0\n\texample.com/c v1.2.0\n\tEXAMPLE.com/bad v1.0.0\n\texample.com/d v1.0\n)\n";

    #[test]
    fn a_go_mod_queues_its_canonical_requirements_once() {
        let p = Prefetch::new(metrics());
        let idx = indexes();
        p.after_go_mod_read("example.com/a", "v1.0.0", GO_MOD, &idx);
        // Not canonical (`v1.0`) or not a module path a client could ask
        // for: skipped. The walk needs the go.mods first.
        assert_eq!(
            queued(&p),
            ["example.com/b@v1.0.0.mod", "example.com/c@v1.2.0.mod", "example.com/b@v1.0.0.info", "example.com/c@v1.2.0.info"]
        );
        p.after_go_mod_read("example.com/a", "v1.0.0", GO_MOD, &idx);
        // Another go.mod naming the same versions queues nothing twice.
        p.after_go_mod_read("example.com/e", "v1.0.0", b"module example.com/e\nrequire example.com/b v1.0.0\n", &idx);
        assert_eq!(queued(&p).len(), 4);
    }

    #[test]
    fn trouble_pauses_and_drops_the_queue_and_the_pause_grows() {
        let p = Prefetch::new(metrics());
        let idx = indexes();
        p.after_go_mod_read("example.com/a", "v1.0.0", GO_MOD, &idx);
        let key = p.queue.borrow_mut().pop_front().unwrap();
        p.settle(&key, Prefetched::Failed, Duration::from_millis(1));
        assert!(p.paused());
        assert!(queued(&p).is_empty() && p.pending.borrow().is_empty(), "what was queued is dropped");
        assert_eq!(p.next_pause.get(), FIRST_PAUSE * 2);
        p.after_go_mod_read("example.com/z", "v1.0.0", b"module example.com/z\nrequire example.com/y v1.0.0\n", &idx);
        assert!(queued(&p).is_empty(), "nothing is queued while paused");
        // A slow answer is trouble too.
        p.paused_until.set(None);
        p.settle(&key, Prefetched::Fetched, SLOW);
        assert!(p.paused());
        // A quick success resets the next pause.
        p.paused_until.set(None);
        p.settle(&key, Prefetched::Fetched, Duration::from_millis(5));
        assert!(!p.paused());
        assert_eq!(p.next_pause.get(), FIRST_PAUSE);
    }

    #[test]
    fn only_an_unpruned_go_mod_has_its_requirements_queued() {
        assert!(is_unpruned(b"module example.com/a\n"), "no go directive: 1.16");
        assert!(is_unpruned(b"module example.com/a\ngo 1.16\n"));
        assert!(!is_unpruned(b"module example.com/a\ngo 1.17\n"));
        assert!(!is_unpruned(b"module example.com/a\ngo 1.21rc1\n"));
        let p = Prefetch::new(metrics());
        let idx = indexes();
        // A go 1.17+ go.mod: the go command reads its requirements on demand.
        p.after_go_mod_read("example.com/top", "v1.0.0", b"module example.com/top\ngo 1.21\nrequire example.com/p v1.0.0\n", &idx);
        assert!(queued(&p).is_empty());
        p.after_go_mod_read("example.com/old", "v1.0.0", b"module example.com/old\ngo 1.16\nrequire example.com/o v1.0.0\n", &idx);
        assert_eq!(queued(&p), ["example.com/o@v1.0.0.mod", "example.com/o@v1.0.0.info"]);
    }

    #[test]
    fn an_info_is_queued_only_for_the_highest_version_required_so_far() {
        let p = Prefetch::new(metrics());
        let idx = indexes();
        let read = |m: &str, needs: &str| {
            p.after_go_mod_read(m, "v1.0.0", format!("module {m}\nrequire example.com/x {needs}\n").as_bytes(), &idx)
        };
        read("example.com/a", "v1.2.0");
        read("example.com/b", "v1.1.0");
        read("example.com/c", "v1.3.0");
        // Every go.mod (the walk loads them all), the .info of v1.2.0 and v1.3.0 only.
        assert_eq!(
            queued(&p),
            [
                "example.com/x@v1.2.0.mod",
                "example.com/x@v1.1.0.mod",
                "example.com/x@v1.3.0.mod",
                "example.com/x@v1.2.0.info",
                "example.com/x@v1.3.0.info"
            ]
        );
    }

    #[test]
    fn generations_forget_the_older_one_when_the_newer_fills() {
        let mut g: Generations<usize, ()> = Generations::default();
        for i in 0..NOTED_GENERATION {
            g.insert(i, ());
        }
        g.insert(NOTED_GENERATION, ());
        assert!(g.get(&0).is_some() && g.get(&NOTED_GENERATION).is_some(), "both generations are read");
        for i in 0..NOTED_GENERATION {
            g.insert(NOTED_GENERATION + 1 + i, ());
        }
        assert!(g.get(&0).is_none(), "the oldest generation is gone");
        assert!(g.maps[0].len() + g.maps[1].len() <= 2 * NOTED_GENERATION);
    }

    #[test]
    fn the_queue_is_bounded() {
        let p = Prefetch::new(metrics());
        let mut go_mod = String::from("module example.com/big\nrequire (\n");
        for i in 0..QUEUE_CAPACITY {
            go_mod.push_str(&format!("\texample.com/r{i} v1.0.0\n"));
        }
        go_mod.push_str(")\n");
        p.after_go_mod_read("example.com/big", "v1.0.0", go_mod.as_bytes(), &indexes());
        assert_eq!(p.pending.borrow().len(), QUEUE_CAPACITY);
        assert_eq!(p.metrics.prefetch_dropped.get(), QUEUE_CAPACITY as u64);
    }
}
