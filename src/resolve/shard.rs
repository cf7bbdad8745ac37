//! One core's share of the modules: everything the owner of a module keeps
//! and decides for it. For the modules it owns a [`Shard`] holds the
//! single-flight table (one fill per missing artifact, however many ask),
//! the answers that change (`list`, `@latest`, checksum-database answers:
//! stored as their latest copy, fresh for their TTL, then the
//! stale-if-error reserve, across restarts too) and when each was last
//! confirmed unchanged, the remembered 404/410s,
//! the zips whose last streamed fill failed (fetched whole next time), and
//! the filler that appends to its segment and publishes into its index
//! shard.
//!
//! A shard lives on exactly one executor and is never shared across
//! threads; requests reach it on its own core (the runtime's mesh carries
//! them there). It never routes, and never touches a socket.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::fill::{FetchTurn, FillSources, Filled, Filler};
use super::flight::{Joined, SingleFlight};
use super::live::{Live, View};
use super::memory::BoundedMap;
use super::policy::{self, CacheSettings, HitRouting, NegativeUpdate};
use super::prefetch::{Prefetch, Prefetched};
use super::route;
use super::{Artifact, ResolveError, Resolved};
use crate::artifact::fill::{FillFailure, Progress};
use crate::artifact::{ArtifactKey, Body, FetchError, Kind};
use crate::metrics::CoreMetrics;
use crate::store::{self, Index, Integrity, SegmentWriter, StoredBlob};

/// Unchecked blobs up to this size are hashed where they are first asked
/// for, on the executor (tens of microseconds at most); larger ones on the
/// owner's blocking pool.
const CHECK_INLINE_BYTES: u64 = 64 << 10;

/// An answer that changes, fetched at `fetched_at`: for a stored answer,
/// when a refresh last found it unchanged (so it was not written again);
/// for one the store could not take, the answer itself, fresh for its TTL
/// and then the stale-if-error reserve.
struct Recent {
    bytes: Bytes,
    fetched_at: Instant,
}

/// An upstream's "no such thing" (404/410), remembered so that a storm of
/// requests for a missing module costs one upstream fetch per negative TTL.
struct Negative {
    error: FetchError,
    fetched_at: Instant,
}

/// What an online purge did: the records withdrawn from this node's
/// store, and (with a shared tier) how many deletes the tier accepted or
/// why it refused them.
pub struct PurgeOutcome {
    pub withdrawn: Vec<(String, String, store::RecordKind)>,
    pub shared: Option<Result<usize, String>>,
}

pub struct Shard {
    id: usize,
    cores: usize,
    /// Every core's index shard: hits read any of them in place.
    indexes: Arc<[Index]>,
    /// The TTLs and streaming bounds, as the last reload left them.
    settings: View<CacheSettings>,
    /// Where hits are answered: fixed for the life of the process.
    hit_routing: HitRouting,
    metrics: &'static CoreMetrics,
    filler: Filler,
    flights: SingleFlight,
    recent: RefCell<BoundedMap<Recent>>,
    negative: RefCell<BoundedMap<Negative>>,
    /// Zips whose last fill was streamed and failed: the next fill is not streamed.
    unstreamable: RefCell<BoundedMap<()>>,
    /// First-use hashes of large stored blobs under way, by record: who
    /// else asks waits for the verdict instead of hashing again.
    checks: RefCell<std::collections::HashMap<(u64, u64), Rc<glommio::sync::Semaphore>>>,
    /// What this core queued to prefetch (keys of any owner).
    prefetch: Prefetch,
}

/// Ends a first-use check: forgets it and wakes whoever waits for its verdict.
struct CheckDone<'a> {
    checks: &'a RefCell<std::collections::HashMap<(u64, u64), Rc<glommio::sync::Semaphore>>>,
    id: (u64, u64),
    done: Rc<glommio::sync::Semaphore>,
}

impl Drop for CheckDone<'_> {
    fn drop(&mut self) {
        self.checks.borrow_mut().remove(&self.id);
        self.done.close();
    }
}

impl Shard {
    pub fn new(
        id: usize,
        cores: usize,
        indexes: Arc<[Index]>,
        sources: &Arc<Live<FillSources>>,
        writer: SegmentWriter,
        settings: &Arc<Live<CacheSettings>>,
        metrics: &'static CoreMetrics,
    ) -> Shard {
        let hit_routing = settings.load().hit_routing;
        Shard {
            id,
            cores,
            filler: {
                let s = settings.load();
                let gate = super::fill::FetchGate::new(s.fetches_per_core, s.fetches_per_module);
                Filler::new(sources.view(), writer, indexes.clone(), id, metrics, gate)
            },
            indexes,
            settings: settings.view(),
            hit_routing,
            metrics,
            flights: SingleFlight::default(),
            recent: RefCell::default(),
            negative: RefCell::default(),
            unstreamable: RefCell::default(),
            checks: RefCell::default(),
            prefetch: Prefetch::new(metrics),
        }
    }

    /// This core's prefetch queue.
    pub fn prefetch(&self) -> &Prefetch {
        &self.prefetch
    }

    /// A client was served the go.mod of `module@version` on this core:
    /// queues what it requires for prefetch, when prefetch is on.
    pub fn after_go_mod_read(&self, module: &str, version: &str, go_mod: &[u8]) {
        if self.settings.with(|s| s.prefetch) {
            self.prefetch.after_go_mod_read(module, version, go_mod, &self.indexes);
        }
    }

    /// How many prefetch workers this core runs.
    pub fn prefetch_workers(&self) -> usize {
        Prefetch::workers(self.settings.with(|s| s.fetches_per_core))
    }

    /// Seals this core's open segment (a clean shutdown, once drained).
    pub async fn close_store(&self) {
        self.filler.close_store().await;
    }

    /// This core's number (its executor's place in the mesh).
    pub fn id(&self) -> usize {
        self.id
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    pub fn metrics(&self) -> &'static CoreMetrics {
        self.metrics
    }

    /// A lock-free read of the owning shard's index, from this core.
    /// `None` when the artifact is not stored, is of a kind that never is,
    /// or hits are configured to hop to the owner.
    pub fn stored(&self, module: &str, version: &str, kind: Kind) -> Option<StoredBlob> {
        // A stored answer that changes is for its owner to judge fresh.
        if !kind.is_immutable() {
            return None;
        }
        let record_kind = kind.record_kind()?;
        let owner = route::owner_of(module, self.cores);
        if self.hit_routing == HitRouting::Owner && owner != self.id {
            return None;
        }
        self.indexes[owner]
            .read(module, version, record_kind, |entry| {
                self.fit_to_serve_here(&entry.blob).then(|| {
                    entry.note_hit();
                    entry.blob.clone()
                })
            })
            .flatten()
    }

    /// Whether a stored blob may be served by whichever core holds it, with
    /// no word from its owner: its bytes hashed since the store was opened
    /// (a small unchecked one is hashed here and now) and its segment file
    /// still holding it. Anything else goes to the owner (see [`Shard::vet_stored`]).
    fn fit_to_serve_here(&self, blob: &StoredBlob) -> bool {
        match blob.integrity() {
            Integrity::Unchecked if blob.len() > CHECK_INLINE_BYTES => false,
            _ => self.checked_now(blob),
        }
    }

    /// Whether `blob` may be served, hashing it here and now if it is
    /// unchecked (callers keep that to small blobs).
    fn checked_now(&self, blob: &StoredBlob) -> bool {
        match blob.integrity() {
            Integrity::Verified => blob.on_disk(),
            Integrity::Corrupt => false,
            Integrity::Unchecked => {
                self.metrics.blobs_checked.bump();
                blob.verify()
            }
        }
    }

    /// On the owner: makes sure the blob stored for `key`, if any, is fit
    /// to serve. An unchecked one is hashed (on the blocking pool when
    /// large); one whose bytes differ from their recorded hash, or whose
    /// segment file has lost them, is quarantined: withdrawn for good, so
    /// the request that found it is answered as a miss and fetched afresh.
    async fn vet_stored(&self, module: &str, version: &str, kind: store::RecordKind) {
        let Some(blob) = self.indexes[self.id].blob(module, version, kind) else { return };
        let good = loop {
            match blob.integrity() {
                Integrity::Unchecked if blob.len() > CHECK_INLINE_BYTES => {
                    // One hash per blob, however many ask at once: later
                    // askers wait for the first one's verdict.
                    let id = blob.record_id();
                    let running = self.checks.borrow().get(&id).cloned();
                    if let Some(done) = running {
                        // Closed when the check ends; the loop then reads its verdict.
                        let _ = done.acquire(1).await;
                        continue;
                    }
                    let done = Rc::new(glommio::sync::Semaphore::new(0));
                    self.checks.borrow_mut().insert(id, done.clone());
                    // Ends the wait of the others even if this request is dropped mid-check.
                    let _release = CheckDone { checks: &self.checks, id, done };
                    self.metrics.blobs_checked.bump();
                    let b = blob.clone();
                    break glommio::executor().spawn_blocking(move || b.verify()).await;
                }
                _ => break self.checked_now(&blob),
            }
        };
        if !good {
            self.quarantine(module, version, kind, &blob).await;
        }
    }

    /// Withdraws a stored blob whose bytes are not what was stored.
    async fn quarantine(&self, module: &str, version: &str, kind: store::RecordKind, blob: &StoredBlob) {
        blob.mark_corrupt();
        // Another request may have quarantined (or refilled) it meanwhile.
        let current = self.indexes[self.id].blob(module, version, kind);
        if !current.is_some_and(|b| b.same_record(blob)) {
            return;
        }
        self.metrics.blobs_quarantined.bump();
        let why =
            if blob.on_disk() { "its bytes differ from their recorded SHA-256" } else { "its segment file was cut short under the server" };
        log::error!(
            module = module, version = version, kind = kind.label();
            "SECURITY: stored {module}@{version} ({}) quarantined: {why}; it is never served again and is fetched afresh",
            kind.label()
        );
        let target = [(module.to_string(), version.to_string(), kind)];
        if let Err(e) = self.filler.withdraw(&target).await {
            // The tombstone could not be written: at least this process never serves it.
            log::error!(module = module; "quarantining {module}@{version}: {e}");
            self.indexes[self.id].remove(module, version, kind);
        }
    }

    /// Hashes, at no more than `bytes_per_sec`, every blob of this core's
    /// index not yet checked since start-up, quarantining what fails, so
    /// damage is found before a client asks for it. Runs until every blob
    /// present when it started was seen.
    pub async fn scrub(self: Rc<Self>, bytes_per_sec: u64) {
        if bytes_per_sec == 0 {
            return;
        }
        // Kept first-download hashes are only read by fills (which refuse
        // bytes that differ), never served: a damaged one is for `verify`.
        let unchecked: Vec<(String, String, store::RecordKind)> = self.indexes[self.id]
            .entries()
            .filter(|e| e.blob.integrity() == Integrity::Unchecked && e.kind() != store::RecordKind::GoSum)
            .map(|e| (e.module().to_string(), e.version().to_string(), e.kind()))
            .collect();
        if unchecked.is_empty() {
            return;
        }
        let (mut blobs, mut bytes) = (0u64, 0u64);
        for (module, version, kind) in unchecked {
            let Some(len) = self.indexes[self.id].read(&module, &version, kind, |e| e.blob.len()) else { continue };
            // Paced before the work, so a burst of large blobs never runs ahead of the rate.
            glommio::timer::sleep(std::time::Duration::from_micros(len.saturating_mul(1_000_000) / bytes_per_sec)).await;
            self.vet_stored(&module, &version, kind).await;
            self.metrics.scrubbed_bytes.add(len);
            blobs += 1;
            bytes += len;
        }
        log::info!("core {}: scrub checked {blobs} stored blob(s), {bytes} bytes", self.id);
    }

    /// Purges what this (owning) core stores of `module`, or of
    /// `module@version` (see [`store::Index::module_records`]), then the
    /// shared tier's copies, whether or not this node stored any: another
    /// may have put them there. The module's remembered `list`/`@latest`
    /// go too.
    pub async fn purge_owned(&self, module: &str, version: Option<&str>) -> Result<PurgeOutcome, ResolveError> {
        let withdrawn = self.indexes[self.id].module_records(module, version);
        self.filler.withdraw(&withdrawn).await?;
        for kind in [Kind::List, Kind::Latest] {
            self.recent.borrow_mut().remove(&ArtifactKey { module: module.into(), version: "".into(), kind });
        }
        for (m, v, k) in &withdrawn {
            log::info!(module = m.as_str(), version = v.as_str(), kind = k.label(); "purged {m}@{v} ({})", k.label());
        }
        // The fleet's copies too, or the next fill reads them back.
        let shared = match self.filler.withdraw_shared(module, version).await {
            Ok(None) => None,
            Ok(Some(n)) => {
                log::info!(module = module; "the shared store accepted {n} delete(s) for {module}");
                Some(Ok(n))
            }
            Err(e) => {
                log::error!(module = module; "purging {module} from the shared store failed (its copies may be read back): {e}");
                Some(Err(e.to_string()))
            }
        };
        Ok(PurgeOutcome { withdrawn, shared })
    }

    /// On the owner: what is known already, or a place in the one fill for `key`.
    pub async fn resolve_owned(self: &Rc<Self>, key: ArtifactKey) -> Resolved {
        if let Some(kind) = key.kind.record_kind() {
            self.vet_stored(&key.module, &key.version, kind).await;
        }
        if let Some(known) = self.cached(&key) {
            return known;
        }
        let rx = match self.flights.join(&key) {
            Joined::Streaming(stream) => {
                self.metrics.coalesced.bump();
                return Ok(Artifact { body: Body::Filling(stream), stale: false, source: None });
            }
            Joined::Waiter(rx) => {
                self.metrics.coalesced.bump();
                rx
            }
            Joined::Leader(rx) => {
                // Detached: the fill must finish even if the client that started it leaves.
                let shard = self.clone();
                glommio::spawn_local(async move {
                    let result = shard.fill(&key, None).await;
                    shard.remember(&key, &result);
                    shard.flights.land(&key, &result);
                })
                .detach();
                rx
            }
        };
        rx.recv().await.unwrap_or(Err(ResolveError::Internal("the fill was abandoned")))
    }

    /// On the owner: fills `key` for a prefetch, unless something is known
    /// of it already, a fill of it is under way, or no fetch turn is to
    /// spare. Clients who ask meanwhile join its fill. Detached: a fill
    /// that started lands even if the asker goes away.
    pub async fn prefetch_owned(self: &Rc<Self>, key: ArtifactKey) -> Prefetched {
        let shard = self.clone();
        let (tx, rx) = glommio::channels::local_channel::new_bounded(1);
        glommio::spawn_local(async move {
            let outcome = shard.prefetch_here(&key).await;
            let _ = tx.try_send(outcome);
        })
        .detach();
        rx.recv().await.unwrap_or(Prefetched::Failed)
    }

    async fn prefetch_here(&self, key: &ArtifactKey) -> Prefetched {
        if !self.settings.with(|s| s.prefetch) {
            return Prefetched::Busy;
        }
        let stored = key.kind.record_kind().is_some_and(|rk| self.indexes[self.id].contains(&key.module, &key.version, rk));
        let known_missing =
            self.negative.borrow().get(key).is_some_and(|n| policy::is_fresh(n.fetched_at, self.settings.with(|s| s.negative_ttl)));
        if stored || known_missing || self.flights.in_flight(key) {
            return Prefetched::Known;
        }
        let Some(turn) = self.filler.gate().try_enter_background(&key.module) else { return Prefetched::Busy };
        // Nothing awaited since `in_flight`: this is the first to ask.
        let Joined::Leader(_own_result) = self.flights.join(key) else { return Prefetched::Known };
        let result = self.fill(key, Some(turn)).await;
        self.remember(key, &result);
        self.flights.land(key, &result);
        match result {
            // Passed through: the store could not keep it (full, read-only).
            Ok(Artifact { body: Body::Memory { .. }, .. }) => Prefetched::Unkept,
            Ok(_) => Prefetched::Fetched,
            Err(ResolveError::Fetch(FetchError::NotFound { .. })) => Prefetched::Missing,
            Err(_) => Prefetched::Failed,
        }
    }

    /// What this owner already knows about `key`: a stored or fresh
    /// answer, or a fresh "not found".
    fn cached(&self, key: &ArtifactKey) -> Option<Resolved> {
        let ttl = policy::ttl(&self.settings.get(), key.kind);
        let hit = match key.kind.record_kind() {
            Some(kind) if key.kind.is_immutable() => self.indexes[self.id].read(&key.module, &key.version, kind, |e| {
                e.note_hit();
                Artifact { body: Body::Stored(e.blob.clone()), stale: false, source: None }
            }),
            // An answer that changes: fresh when this shard confirmed it
            // within its TTL (in memory), or when its stored copy was
            // written within it (after a restart).
            record_kind => self.fresh_recent(key, ttl).or_else(|| {
                let now = store::unix_ms();
                self.indexes[self.id]
                    .read(&key.module, &key.version, record_kind?, |entry| {
                        policy::is_fresh_at(entry.blob.stored_at_ms(), now, ttl).then(|| {
                            entry.note_hit();
                            Artifact { body: Body::Stored(entry.blob.clone()), stale: false, source: None }
                        })
                    })
                    .flatten()
            }),
        };
        if let Some(hit) = hit {
            return Some(Ok(hit));
        }
        let negative = self.negative.borrow();
        let n = negative.get(key)?;
        policy::is_fresh(n.fetched_at, self.settings.with(|s| s.negative_ttl)).then(|| {
            self.metrics.negative_hits.bump();
            Err(ResolveError::Fetch(n.error.clone()))
        })
    }

    /// The answer this shard fetched or confirmed within `ttl`, if any.
    fn fresh_recent(&self, key: &ArtifactKey, ttl: std::time::Duration) -> Option<Artifact> {
        let recent = self.recent.borrow();
        let r = recent.get(key).filter(|r| policy::is_fresh(r.fetched_at, ttl))?;
        Some(Artifact { body: Body::Memory { bytes: r.bytes.clone(), sha256: None }, stale: false, source: None })
    }

    /// Keeps `bytes` as the answer to `key` fetched (or confirmed) now.
    /// Past their TTL, entries are only a reserve for stale-if-error: the first to go.
    fn keep_recent(&self, key: &ArtifactKey, bytes: Bytes) {
        let recent = Recent { bytes, fetched_at: Instant::now() };
        let settings = self.settings.get();
        self.recent.borrow_mut().insert(key.clone(), recent, |k, r| !policy::is_fresh(r.fetched_at, policy::ttl(&settings, k.kind)));
    }

    /// The last copy of an answer that changes, whatever its age: this
    /// shard's memory (the newest it has seen), else the store (which
    /// survives a restart).
    fn stale_copy(&self, key: &ArtifactKey) -> Option<Body> {
        if let Some(r) = self.recent.borrow().get(key) {
            return Some(Body::Memory { bytes: r.bytes.clone(), sha256: None });
        }
        let blob = self.indexes[self.id].blob(&key.module, &key.version, key.kind.record_kind()?)?;
        // Answers that change are small: checked here, on the executor.
        self.checked_now(&blob).then_some(Body::Stored(blob))
    }

    /// Remembers a 404/410 for `--negative-ttl`; any answer forgets it.
    fn remember(&self, key: &ArtifactKey, result: &Resolved) {
        // A query's "not found" can change with the next push.
        if key.kind == Kind::Query {
            return;
        }
        let ttl = self.settings.with(|s| s.negative_ttl);
        match policy::negative_update(result, ttl) {
            NegativeUpdate::Remember(error) => {
                let negative = Negative { error: error.clone(), fetched_at: Instant::now() };
                self.negative.borrow_mut().insert(key.clone(), negative, |_, n| !policy::is_fresh(n.fetched_at, ttl));
            }
            NegativeUpdate::Forget => self.negative.borrow_mut().remove(key),
            NegativeUpdate::Keep => {}
        }
    }

    /// Fills `key` (streamed to its requesters when policy says so), then
    /// keeps what the fill produced where its kind belongs. With a `turn`
    /// taken already (a prefetch's), the fill waits for none.
    async fn fill(&self, key: &ArtifactKey, turn: Option<FetchTurn<'_>>) -> Resolved {
        if key.kind == Kind::Query {
            // The sources' answer of the moment, for everyone in this flight;
            // its stored copy (replaced as answers change) is only the
            // stale-if-error reserve, across restarts too.
            return match self.filler.pass_through(&key.module, &key.version).await {
                Ok(bytes) => {
                    // Best effort: the answer is served whether or not it could be kept.
                    let _ = self.filler.keep(key, Some(store::RecordKind::Query), bytes.clone(), None, None, None).await;
                    Ok(Artifact { body: Body::Memory { bytes, sha256: None }, stale: false, source: None })
                }
                Err(e) if policy::serves_stale_after(&e) => match self.stale_copy(key) {
                    Some(body) => {
                        self.metrics.stale_served.bump();
                        Ok(Artifact { body, stale: true, source: None })
                    }
                    None => Err(e),
                },
                Err(e) => Err(e),
            };
        }
        let last_stream_failed = self.unstreamable.borrow().contains(key);
        let progress =
            policy::stream_from(&self.settings.get(), key.kind, last_stream_failed).map(|min| Arc::new(Progress::new(Some(min))));
        let on_stream = || {
            if let Some(p) = &progress {
                if self.flights.announce(key, p) {
                    self.metrics.streamed_fills.bump();
                }
            }
        };
        let (filled, source) = match self.filler.fill(key, progress.as_ref(), on_stream, turn).await {
            Ok((filled, source)) => (Ok(filled), Some(source)),
            Err(e) => (Err(e), None),
        };
        if let Some(p) = &progress {
            match &filled {
                // A successful fill marked the progress kept where it kept
                // the bytes; this ends anything left open.
                Ok(_) => p.fail_if_unsettled(),
                Err(e) => {
                    p.fail(match e {
                        ResolveError::Fetch(e) => FillFailure::Source(e.clone()),
                        ResolveError::Internal(why) => FillFailure::Internal(why),
                    });
                    if p.was_streamed() {
                        self.unstreamable.borrow_mut().insert(key.clone(), (), |_, _| false);
                    }
                }
            }
        }
        if filled.is_ok() && key.kind == Kind::Zip {
            self.unstreamable.borrow_mut().remove(key);
        }
        match filled {
            Ok(Filled::Stored(blob)) => {
                // An answer that changes: memory holds the newest copy (the
                // stale-if-error reserve prefers it to the store's), as a
                // copy (see `Unchanged`).
                if !key.kind.is_immutable() {
                    self.keep_recent(key, Bytes::copy_from_slice(blob.bytes()));
                }
                Ok(Artifact { body: Body::Stored(blob), stale: false, source: source.clone() })
            }
            Ok(Filled::Unchanged(blob)) => {
                // Confirmed now. Memory keeps a copy: a stored blob held
                // here would keep its whole segment on disk after eviction.
                self.keep_recent(key, Bytes::copy_from_slice(blob.bytes()));
                Ok(Artifact { body: Body::Stored(blob), stale: false, source: source.clone() })
            }
            Ok(Filled::PassedThrough { bytes, sha256 }) => {
                // An answer that changes, which the store could not take: kept in memory instead.
                if !key.kind.is_immutable() {
                    self.keep_recent(key, bytes.clone());
                }
                Ok(Artifact { body: Body::Memory { bytes, sha256: Some(sha256) }, stale: false, source: source.clone() })
            }
            Ok(Filled::Mutable(bytes)) => {
                self.keep_recent(key, bytes.clone());
                Ok(Artifact { body: Body::Memory { bytes, sha256: None }, stale: false, source: source.clone() })
            }
            Err(e) if !key.kind.is_immutable() && policy::serves_stale_after(&e) => match self.stale_copy(key) {
                Some(body) => {
                    self.metrics.stale_served.bump();
                    Ok(Artifact { body, stale: true, source: None })
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }
}
