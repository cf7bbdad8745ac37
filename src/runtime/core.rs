//! One core's state and the two ways a request reaches a module's owner.
//!
//! A [`Core`] lives on exactly one executor and is never shared across
//! threads. For the modules it owns it holds the single-flight table (one
//! upstream fetch per missing artifact, however many ask), the short-lived
//! `list`/`@latest` (and checksum-database) cache, the negative cache of
//! upstream 404/410 answers, and the segment writer that fills its index.
//! Requests for a module owned elsewhere cross to that core through the
//! channel mesh ([`Core::resolve`]); cache hits normally do not need to,
//! because every core can read every index without a lock.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalSender};

use super::router;
use crate::config::HitRouting;
use crate::metrics::{CoreMetrics, Metrics};
use crate::store::{self, Index, Kind, SegmentWriter, StoredBlob};
use crate::upstream::progress::{FillStream, Progress, Readable};
use crate::upstream::{Fetch, FetchError, Fetcher, What};

/// What every core shares: read-only settings and lock-free structures.
pub struct Shared {
    pub cores: usize,
    pub indexes: Arc<[Index]>,
    pub upstream: Arc<dyn Fetcher>,
    pub list_ttl: Duration,
    pub hit_routing: HitRouting,
    pub metrics: &'static Metrics,
    pub policy: Policy,
}

/// What is proxied and cached beyond the module protocol itself. The
/// default proxies no checksum database.
#[derive(Debug, Default)]
pub struct Policy {
    /// Checksum databases proxied under `/sumdb/<name>/` (`--sumdb`); others get 404.
    pub sumdb_names: Box<[Box<str>]>,
    /// Cache time of checksum-database answers that are not complete tiles.
    pub sumdb_ttl: Duration,
    /// How long an upstream's 404/410 is remembered (`--negative-ttl`); zero: not at all.
    pub negative_ttl: Duration,
    /// Serve a zip to its requesters while it is being fetched, when the
    /// upstream announces at least this many bytes (`--stream-fills`);
    /// `None`: never.
    pub stream_fills: Option<u64>,
}

impl Shared {
    pub fn proxies_sumdb(&self, name: &str) -> bool {
        self.policy.sumdb_names.iter().any(|n| &**n == name)
    }

    /// How long an answer that is not stored forever stays fresh.
    fn ttl(&self, what: What) -> Duration {
        if what.is_sumdb() {
            self.policy.sumdb_ttl
        } else {
            self.list_ttl
        }
    }
}

/// An artifact's identity. `version` is empty for `List` and `Latest`;
/// for checksum-database answers `module` is `sumdb/<name>` and `version`
/// the path below it (see [`crate::upstream::Fetch`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArtifactKey {
    pub module: Box<str>,
    pub version: Box<str>,
    pub what: What,
}

impl ArtifactKey {
    /// The string whose hash names the owner core.
    ///
    /// Anything stored must route by `module`: start-up recovery files each
    /// record into the shard of its module, and the owner fills its own
    /// shard. Checksum-database answers that are never stored (lookups, the
    /// tree head, partial tiles) route by their path instead, so the
    /// lookups of a cold build spread over every core's fetch threads
    /// rather than queueing behind one core's.
    fn route(&self) -> &str {
        if self.what.is_sumdb() && kind_of(self.what).is_none() {
            &self.version
        } else {
            &self.module
        }
    }
}

/// The bytes of an answer, wherever they live.
#[derive(Clone, Debug)]
pub enum Body {
    /// Published in a segment: served straight from the map.
    Stored(StoredBlob),
    /// Held in memory: `list`/`@latest` answers, and blobs the store could
    /// not take (disk full) passed through to the client.
    Memory { bytes: Bytes, sha256: Option<[u8; 32]> },
    /// A zip still arriving from the upstream (`--stream-fills`): send it
    /// as [`Progress::readable`] allows; the connection must be cut if it fails.
    Filling(FillStream),
}

impl Body {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Body::Stored(b) => b.bytes(),
            Body::Memory { bytes, .. } => bytes,
            // Not known yet: the connection reads it from the progress.
            Body::Filling(_) => &[],
        }
    }

    pub fn filling(&self) -> Option<&FillStream> {
        match self {
            Body::Filling(p) => Some(p),
            _ => None,
        }
    }

    /// Where the bytes lie in a file, when they do (sendfile can serve them).
    pub fn file_range(&self) -> Option<(std::os::fd::RawFd, u64)> {
        match self {
            Body::Stored(b) => Some(b.file_range()),
            Body::Memory { .. } | Body::Filling(_) => None,
        }
    }

    pub fn sha256(&self) -> Option<&[u8; 32]> {
        match self {
            Body::Stored(b) => Some(b.sha256()),
            Body::Memory { sha256, .. } => sha256.as_ref(),
            Body::Filling(_) => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Artifact {
    pub body: Body,
    /// Served past its TTL because the upstream failed (stale-if-error).
    pub stale: bool,
}

pub type Resolved = Result<Artifact, FetchError>;

/// Cross-core messages.
pub enum Msg {
    Resolve { call: u64, from: usize, key: ArtifactKey },
    Resolved { call: u64, result: Resolved },
}

struct Volatile {
    bytes: Bytes,
    fetched_at: Instant,
}

/// An upstream's "no such thing" (404/410), remembered so that a storm of
/// requests for a missing module costs one upstream fetch per negative TTL.
struct Negative {
    error: FetchError,
    fetched_at: Instant,
}

/// Most entries one core keeps in each of its in-memory caches. Keys come
/// from clients: without a bound, asking for millions of distinct missing
/// modules would grow the negative cache (and `list`s of distinct modules
/// the volatile one) without limit.
const MEMORY_CACHE_ENTRIES: usize = 100_000;

/// Inserts into a per-core cache, making room first when it is full:
/// entries `expired` says are past use go first, then arbitrary ones down
/// to three quarters of the bound, so the sweep runs once per many inserts.
fn bounded_insert<V>(map: &mut HashMap<ArtifactKey, V>, key: ArtifactKey, value: V, expired: impl Fn(&ArtifactKey, &V) -> bool) {
    if map.len() >= MEMORY_CACHE_ENTRIES && !map.contains_key(&key) {
        map.retain(|k, v| !expired(k, v));
        if map.len() >= MEMORY_CACHE_ENTRIES {
            let excess = map.len() - MEMORY_CACHE_ENTRIES * 3 / 4;
            let victims: Vec<ArtifactKey> = map.keys().take(excess).cloned().collect();
            for k in victims {
                map.remove(&k);
            }
        }
    }
    map.insert(key, value);
}

pub fn kind_of(what: What) -> Option<Kind> {
    match what {
        What::Info => Some(Kind::Info),
        What::Mod => Some(Kind::Mod),
        What::Zip => Some(Kind::Zip),
        What::SumTile => Some(Kind::SumTile),
        What::List | What::Latest | What::SumSupported | What::SumLatest | What::SumLookup | What::SumPartialTile => None,
    }
}

/// One fill under way: who waits for its result, and, once a zip is
/// being streamed, the progress later requesters read from at once.
#[derive(Default)]
struct Inflight {
    waiters: Vec<LocalSender<Resolved>>,
    streaming: Option<Arc<Progress>>,
}

pub struct Core {
    id: usize,
    shared: Arc<Shared>,
    metrics: &'static CoreMetrics,
    writer: SegmentWriter,
    inflight: RefCell<HashMap<ArtifactKey, Inflight>>,
    volatile: RefCell<HashMap<ArtifactKey, Volatile>>,
    negative: RefCell<HashMap<ArtifactKey, Negative>>,
    /// Zips whose last fill was streamed and failed: the next fill is not streamed.
    unstreamable: RefCell<HashMap<ArtifactKey, ()>>,
    peers: Option<Senders<Msg>>,
    pending: RefCell<HashMap<u64, LocalSender<Resolved>>>,
    next_call: Cell<u64>,
}

impl Core {
    pub fn new(id: usize, shared: Arc<Shared>, writer: SegmentWriter, peers: Option<Senders<Msg>>) -> Rc<Core> {
        let metrics = shared.metrics.core(id);
        Rc::new(Core {
            id,
            shared,
            metrics,
            writer,
            inflight: RefCell::new(HashMap::new()),
            volatile: RefCell::new(HashMap::new()),
            negative: RefCell::new(HashMap::new()),
            unstreamable: RefCell::new(HashMap::new()),
            peers,
            pending: RefCell::new(HashMap::new()),
            next_call: Cell::new(0),
        })
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn metrics(&self) -> &'static CoreMetrics {
        self.metrics
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    pub fn owner_of(&self, module: &str) -> usize {
        router::owner_of(module, self.shared.cores)
    }

    /// A lock-free read of the owning shard's index, from this core.
    /// Returns `None` when hits are configured to hop to the owner.
    pub fn local_hit(&self, module: &str, version: &str, kind: Kind) -> Option<StoredBlob> {
        if self.shared.hit_routing == HitRouting::Owner && self.owner_of(module) != self.id {
            return None;
        }
        let index = &self.shared.indexes[self.owner_of(module)];
        index.get(module, version, kind).map(|e| e.blob.clone())
    }

    /// Answers `key` on its owning core: here, or across the mesh.
    ///
    /// A zip still arriving is handed out only once its first bytes are
    /// released, so a fill that fails before then still gets its requesters
    /// a status naming the reason rather than a connection cut short (and
    /// one whose stream a fallback upstream started over waits for that
    /// fallback's fill).
    pub async fn resolve(self: &Rc<Self>, key: ArtifactKey) -> Resolved {
        // A fill that starts over can fail once more, with its reason; a
        // third round only guards against a bug looping here.
        for _ in 0..3 {
            let resolved = self.resolve_once(key.clone()).await;
            let Ok(Artifact { body: Body::Filling(stream), .. }) = &resolved else { return resolved };
            match stream.progress.readable(0).await {
                Readable::UpTo(_) | Readable::End => return resolved,
                Readable::Failed => {
                    if let Some(e) = stream.progress.failure() {
                        return Err(e);
                    }
                }
            }
        }
        Err(internal("fill restarted too often"))
    }

    async fn resolve_once(self: &Rc<Self>, key: ArtifactKey) -> Resolved {
        let owner = self.owner_of(key.route());
        match &self.peers {
            Some(peers) if owner != self.id => {
                self.metrics.hops.bump();
                let call = self.next_call.get();
                self.next_call.set(call.wrapping_add(1));
                let (tx, rx) = local_channel::new_bounded(1);
                self.pending.borrow_mut().insert(call, tx);
                if peers.send_to(owner, Msg::Resolve { call, from: self.id, key }).await.is_err() {
                    self.pending.borrow_mut().remove(&call);
                    return Err(internal("owner core is not accepting work"));
                }
                rx.recv().await.unwrap_or_else(|| Err(internal("owner core dropped the request")))
            }
            _ => self.resolve_owned(key).await,
        }
    }

    /// Passes a query (a branch, a commit prefix) straight to the upstream.
    /// Nothing is cached under the query: it can mean something else tomorrow.
    pub async fn pass_through(&self, module: &str, query: &str) -> Resolved {
        self.metrics.upstream_fetches.bump();
        let upstream = self.shared.upstream.clone();
        let (module, query) = (module.to_string(), query.to_string());
        let fetched = spawn_fetch(move || upstream.fetch(&Fetch { module: &module, version: &query, what: What::Info })).await;
        self.count_upstream_error(&fetched);
        fetched.map(|bytes| Artifact { body: Body::Memory { bytes: bytes.into(), sha256: None }, stale: false })
    }

    /// Routes messages from one peer; runs for the life of the core.
    pub fn listen(self: &Rc<Self>, receivers: &mut Receivers<Msg>) {
        for (_, rx) in receivers.streams() {
            let core = self.clone();
            glommio::spawn_local(async move {
                while let Some(msg) = rx.recv().await {
                    core.on_message(msg);
                }
            })
            .detach();
        }
    }

    fn on_message(self: &Rc<Self>, msg: Msg) {
        match msg {
            Msg::Resolve { call, from, key } => {
                let core = self.clone();
                glommio::spawn_local(async move {
                    let result = core.resolve_owned(key).await;
                    if let Some(peers) = &core.peers {
                        let _ = peers.send_to(from, Msg::Resolved { call, result }).await;
                    }
                })
                .detach();
            }
            Msg::Resolved { call, result } => {
                if let Some(tx) = self.pending.borrow_mut().remove(&call) {
                    // The asker may have gone away (client closed); that is fine.
                    let _ = tx.try_send(result);
                }
            }
        }
    }

    /// What this owner already knows about `key`: a stored or fresh answer,
    /// or a fresh "not found".
    fn cached(&self, key: &ArtifactKey) -> Option<Resolved> {
        let hit = match kind_of(key.what) {
            Some(kind) => self.shared.indexes[self.id]
                .get(&key.module, &key.version, kind)
                .map(|e| Artifact { body: Body::Stored(e.blob.clone()), stale: false }),
            None => self.volatile.borrow().get(key).and_then(|v| {
                (v.fetched_at.elapsed() < self.shared.ttl(key.what))
                    .then(|| Artifact { body: Body::Memory { bytes: v.bytes.clone(), sha256: None }, stale: false })
            }),
        };
        if let Some(hit) = hit {
            return Some(Ok(hit));
        }
        let negative = self.negative.borrow();
        let n = negative.get(key)?;
        (n.fetched_at.elapsed() < self.shared.policy.negative_ttl).then(|| {
            self.metrics.negative_hits.bump();
            Err(n.error.clone())
        })
    }

    /// Remembers a 404/410 for `--negative-ttl`; any answer forgets it.
    /// Failures (5xx, timeouts) are not answers and are never remembered:
    /// the next request tries the upstream again.
    fn remember(&self, key: &ArtifactKey, result: &Resolved) {
        let ttl = self.shared.policy.negative_ttl;
        match result {
            Err(e @ FetchError::NotFound { .. }) if !ttl.is_zero() => {
                let negative = Negative { error: e.clone(), fetched_at: Instant::now() };
                bounded_insert(&mut self.negative.borrow_mut(), key.clone(), negative, |_, n| n.fetched_at.elapsed() >= ttl);
            }
            Ok(_) => {
                self.negative.borrow_mut().remove(key);
            }
            Err(_) => {}
        }
    }

    /// On the owner: a hit, or a wait on the one fill for `key`.
    async fn resolve_owned(self: &Rc<Self>, key: ArtifactKey) -> Resolved {
        if let Some(known) = self.cached(&key) {
            return known;
        }
        let (tx, rx) = local_channel::new_bounded(1);
        let (first, streaming) = match self.inflight.borrow_mut().entry(key.clone()) {
            // A stream that failed while a fallback upstream goes on
            // filling has no stream any more: wait for that fill's result.
            MapEntry::Occupied(mut fill) => match fill.get().streaming.as_ref().and_then(Progress::stream) {
                Some(stream) => (false, Some(stream)),
                None => {
                    fill.get_mut().waiters.push(tx);
                    (false, None)
                }
            },
            MapEntry::Vacant(slot) => {
                slot.insert(Inflight { waiters: vec![tx], streaming: None });
                (true, None)
            }
        };
        if let Some(stream) = streaming {
            self.metrics.coalesced.bump();
            return Ok(Artifact { body: Body::Filling(stream), stale: false });
        }
        if first {
            // Detached: the fill must finish even if the client that started it leaves.
            let core = self.clone();
            glommio::spawn_local(async move {
                let result = core.fetch_and_store(&key).await;
                core.remember(&key, &result);
                let fill = core.inflight.borrow_mut().remove(&key).unwrap_or_default();
                for w in fill.waiters {
                    let _ = w.try_send(result.clone());
                }
            })
            .detach();
        } else {
            self.metrics.coalesced.bump();
        }
        rx.recv().await.unwrap_or_else(|| Err(internal("fill abandoned")))
    }

    /// Hands a zip that started arriving to everyone waiting for it, and
    /// to everyone who asks until the fill ends.
    fn announce(&self, key: &ArtifactKey, progress: &Arc<Progress>) {
        // (A fill that failed meanwhile has no stream to hand out.)
        let Some(stream) = progress.stream() else { return };
        let waiters = match self.inflight.borrow_mut().get_mut(key) {
            Some(fill) => {
                fill.streaming = Some(progress.clone());
                std::mem::take(&mut fill.waiters)
            }
            None => return,
        };
        self.metrics.streamed_fills.bump();
        for w in waiters {
            let _ = w.try_send(Ok(Artifact { body: Body::Filling(stream.clone()), stale: false }));
        }
    }

    async fn fetch_and_store(&self, key: &ArtifactKey) -> Resolved {
        // A zip whose last streamed fill failed is fetched whole this time,
        // so its requesters get the reason (a 502 naming it) instead of
        // another connection cut short.
        let stream_from =
            self.shared.policy.stream_fills.filter(|_| key.what == What::Zip && !self.unstreamable.borrow().contains_key(key));
        let progress = stream_from.map(|min| Arc::new(Progress::new(Some(min))));
        let result = self.fetch_and_store_with(key, progress.as_ref()).await;
        if let Some(p) = &progress {
            match &result {
                // A successful fill completed the progress where it kept
                // the bytes; settling ends anything left open.
                Ok(_) => p.settle(),
                Err(e) => {
                    p.fail_with(e.clone());
                    if p.was_streamed() {
                        bounded_insert(&mut self.unstreamable.borrow_mut(), key.clone(), (), |_, _| false);
                    }
                }
            }
        }
        if result.is_ok() && key.what == What::Zip {
            self.unstreamable.borrow_mut().remove(key);
        }
        result
    }

    async fn fetch_and_store_with(&self, key: &ArtifactKey, progress: Option<&Arc<Progress>>) -> Resolved {
        self.metrics.upstream_fetches.bump();
        let upstream = self.shared.upstream.clone();
        let k = key.clone();
        let immutable = kind_of(key.what).is_some();
        let p = progress.cloned().unwrap_or_default();
        // Hash on the blocking thread too: a 500 MiB zip must not stall the reactor.
        let job = spawn_fetch(move || {
            let body = match k.what {
                What::Latest => Bytes::from(crate::upstream::latest(&*upstream, &k.module)?),
                what => upstream.fetch_streaming(&Fetch { module: &k.module, version: &k.version, what }, &p)?,
            };
            let sha = immutable.then(|| store::record::payload_sha256(&body));
            Ok((body, sha))
        });
        let mut job = std::pin::pin!(job);
        let fetched = match progress {
            None => job.await,
            Some(p) => {
                // The fetching thread wakes this task when the upstream's
                // answer starts (or the fill ends first).
                let started = futures_lite::future::or(async { Some(job.as_mut().await) }, async {
                    p.started().await;
                    None
                })
                .await;
                match started {
                    Some(done) => done,
                    None => {
                        if p.is_streaming() {
                            self.announce(key, p);
                        }
                        job.await
                    }
                }
            }
        };
        self.count_upstream_error(&fetched);
        match (kind_of(key.what), fetched) {
            (None, Ok((bytes, _))) => {
                let fresh = Volatile { bytes: bytes.clone(), fetched_at: Instant::now() };
                // Past their TTL, entries are only a reserve for stale-if-error: the first to go.
                bounded_insert(&mut self.volatile.borrow_mut(), key.clone(), fresh, |k, v| {
                    v.fetched_at.elapsed() >= self.shared.ttl(k.what)
                });
                Ok(Artifact { body: Body::Memory { bytes, sha256: None }, stale: false })
            }
            (None, Err(e)) => {
                // stale-if-error: a CI build should not fail because the
                // upstream blinked. A 404/410 is an answer, not a failure.
                if !matches!(e, FetchError::NotFound { .. }) {
                    if let Some(v) = self.volatile.borrow().get(key) {
                        self.metrics.stale_served.bump();
                        return Ok(Artifact { body: Body::Memory { bytes: v.bytes.clone(), sha256: None }, stale: true });
                    }
                }
                Err(e)
            }
            (Some(kind), Ok((bytes, sha))) => {
                let sha = sha.unwrap_or_else(|| store::record::payload_sha256(&bytes));
                let stored = self.writer.append(kind, &key.module, &key.version, bytes.clone(), sha).await;
                // Readers of the streamed fill may now finish, from the
                // stored blob: the fill buffer goes as soon as the last
                // slow reader lets go of it, not when it finishes.
                match stored {
                    Ok(blob) => {
                        self.shared.indexes[self.id].insert(&key.module, &key.version, kind, blob.clone());
                        if let Some(p) = progress {
                            p.complete(&bytes, Bytes::from_owner(blob.clone()));
                        }
                        Ok(Artifact { body: Body::Stored(blob), stale: false })
                    }
                    Err(e) => {
                        // Pass-through: the client still gets its bytes; nothing half-written is published.
                        self.metrics.store_errors.bump();
                        log::error!("storing {}@{} ({kind:?}) failed, serving from memory: {e}", key.module, key.version);
                        if let Some(p) = progress {
                            p.complete(&bytes, bytes.clone());
                        }
                        Ok(Artifact { body: Body::Memory { bytes, sha256: Some(sha) }, stale: false })
                    }
                }
            }
            (Some(_), Err(e)) => Err(e),
        }
    }

    fn count_upstream_error<T>(&self, r: &Result<T, FetchError>) {
        match r {
            Ok(_) | Err(FetchError::NotFound { .. }) => {}
            Err(FetchError::CircuitOpen { .. }) => self.metrics.upstream_skipped.bump(),
            Err(_) => self.metrics.upstream_errors.bump(),
        }
    }
}

/// Runs an upstream fetch on the executor's blocking pool. A panic in it
/// (a bug in a fetcher) becomes an error: glommio's pool would otherwise
/// lose the job, and its fill would never end for anyone waiting on it.
fn spawn_fetch<T: Send + 'static>(
    fetch: impl FnOnce() -> Result<T, FetchError> + Send + 'static,
) -> impl std::future::Future<Output = Result<T, FetchError>> {
    glommio::executor().spawn_blocking(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(fetch)).unwrap_or_else(|_| Err(internal("the upstream fetch panicked")))
    })
}

fn internal(message: &str) -> FetchError {
    FetchError::Unavailable { upstream: "gomodproxy".into(), message: message.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> ArtifactKey {
        ArtifactKey { module: format!("example.com/m{i}").into(), version: "".into(), what: What::List }
    }

    #[test]
    fn memory_caches_stay_bounded_and_drop_expired_entries_first() {
        let mut map: HashMap<ArtifactKey, bool> = HashMap::new();
        // `true` marks an expired entry.
        for i in 0..MEMORY_CACHE_ENTRIES {
            bounded_insert(&mut map, key(i), i % 2 == 0, |_, expired| *expired);
        }
        assert_eq!(map.len(), MEMORY_CACHE_ENTRIES);
        bounded_insert(&mut map, key(usize::MAX), false, |_, expired| *expired);
        assert_eq!(map.len(), MEMORY_CACHE_ENTRIES / 2 + 1, "only the expired half goes");
        assert!(map.values().all(|expired| !expired));

        // All fresh: arbitrary entries go, down to three quarters.
        for i in 0..MEMORY_CACHE_ENTRIES * 2 {
            bounded_insert(&mut map, key(MEMORY_CACHE_ENTRIES + i), false, |_, expired| *expired);
            assert!(map.len() <= MEMORY_CACHE_ENTRIES);
        }
        assert!(map.contains_key(&key(MEMORY_CACHE_ENTRIES * 3 - 1)), "the new entry is kept");
        // Replacing an existing key never evicts.
        let n = map.len();
        bounded_insert(&mut map, key(MEMORY_CACHE_ENTRIES * 3 - 1), true, |_, expired| *expired);
        assert_eq!(map.len(), n);
    }

    #[test]
    fn stored_answers_route_by_module_and_volatile_sumdb_answers_by_path() {
        let tile = ArtifactKey { module: "sumdb/sum.example".into(), version: "tile/8/0/000".into(), what: What::SumTile };
        assert_eq!(tile.route(), "sumdb/sum.example");
        let lookup =
            ArtifactKey { module: "sumdb/sum.example".into(), version: "lookup/example.com/a@v1.0.0".into(), what: What::SumLookup };
        assert_eq!(lookup.route(), "lookup/example.com/a@v1.0.0");
        assert_eq!(key(1).route(), "example.com/m1");
    }
}
