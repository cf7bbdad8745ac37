//! The fill: fetch an artifact from the sources on the blocking pool (an
//! `@latest` the sources lack is derived from `list`, as the go command
//! would; a checksum-database answer comes from the database's verifying
//! client), have it validated (every source chain validates what it returns)
//! and, with a keyed `--sumdb`, verified against the checksum database, store
//! what the store keeps in this core's segment and publish it in its
//! index, and settle the stream readers of a zip follow meanwhile.
//!
//! Owns the order of those steps and the rule that nothing is published
//! before it is stored and synced. It never decides whether to fill (the
//! shard asks only on a miss) nor what is cached in memory afterwards, and
//! never blocks the executor: fetching and hashing run on blocking threads.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::{Semaphore, StaticPermit};

use bytes::Bytes;

use super::fetch_threads::FetchThreads;
use super::live::View;
use super::ResolveError;
use crate::artifact::fill::Progress;
use crate::artifact::{ArtifactKey, FetchError, Kind};
use crate::gomod::dirhash;
use crate::metrics::CoreMetrics;
use crate::shared::{Obtained, SharedTier};
use crate::store::{self, Append, Index, RecordKind, SegmentWriter, StoredBlob};
use crate::upstream::sumdb_check::ChecksumCheck;
use crate::upstream::sumdb_client::Record;
use crate::upstream::{validate, Fetch, Fetcher};

/// Where fills come from, and what vouches for them.
#[derive(Clone)]
pub struct FillSources {
    pub upstream: Arc<dyn Fetcher>,
    /// Checks every public module's `.zip` and `.mod` against a checksum
    /// database before they are kept (the first `--sumdb`); `None`:
    /// stored as the upstream sent them (after validation).
    pub checksums: Option<Arc<ChecksumCheck>>,
    /// Every `--sumdb` database, which answer `/sumdb/<name>/` requests
    /// with what they verified.
    pub databases: Arc<[Arc<ChecksumCheck>]>,
    /// The tier the fleet shares (`--shared-store`): read before the
    /// upstream, written after it; `None`: this node alone.
    pub shared: Option<Arc<SharedTier>>,
    /// The `[[git]]` sources the upstream chain's `direct` entries use
    /// (kept here so a reload that leaves them alone keeps their mirrors).
    pub git: Option<Arc<crate::upstream::git::GitSources>>,
}

/// What a fill produced.
pub enum Filled {
    /// An artifact of a kind the store keeps, stored and published.
    Stored(StoredBlob),
    /// One the store could not take (disk full, a write error): the client
    /// still gets it, nothing half-written is published.
    PassedThrough { bytes: Bytes, sha256: [u8; 32] },
    /// An answer that changes and is not stored (`list`, `@latest`): for
    /// the shard's memory only.
    Mutable(Bytes),
    /// A stored answer that changes, fetched again with the same bytes: the
    /// stored copy, now fresh again (the shard keeps when, in memory).
    Unchanged(StoredBlob),
}

/// One core's means of filling: its sources, its segment writer and the
/// index shard it publishes into.
pub struct Filler {
    /// The sources as the last reload left them (a fill keeps those it started with).
    sources: View<FillSources>,
    writer: SegmentWriter,
    /// Every core's index shard (hits read any of them in place)...
    indexes: Arc<[Index]>,
    /// ...and the one this core owns and publishes into.
    own: usize,
    metrics: &'static CoreMetrics,
    /// Turns for upstream fetches: per core, and per module within it.
    gate: FetchGate,
}

/// How many upstream fetches run at once on this (owner) core, and how
/// many of them for any one module. Fetches run on threads of their own,
/// so a slow upstream answer costs a waiting thread and a turn here, never
/// a thread of a small shared pool that every other module's miss needs.
pub struct FetchGate {
    core: Rc<Semaphore>,
    /// Turns a background fill (prefetch) must leave free for clients.
    reserve: u64,
    per_module: u64,
    /// The modules with fetches under way or waiting; dropped when idle.
    modules: RefCell<HashMap<Box<str>, Rc<Semaphore>>>,
}

/// A fetch's turn: held until the fetch is over.
pub struct FetchTurn<'g> {
    gate: &'g FetchGate,
    module: Box<str>,
    _module_turn: StaticPermit,
    _core_turn: StaticPermit,
}

impl FetchGate {
    pub fn new(per_core: usize, per_module: usize) -> FetchGate {
        let per_core = per_core.max(1) as u64;
        FetchGate {
            core: Rc::new(Semaphore::new(per_core)),
            reserve: per_core / 2,
            per_module: (per_module.max(1) as u64).min(per_core),
            modules: RefCell::default(),
        }
    }

    /// Waits for a turn for `module`: first its module's, then the core's
    /// (so fetches queued behind a slow module hold none of the core's turns).
    pub async fn enter(&self, module: &str) -> Result<FetchTurn<'_>, ResolveError> {
        let module_gate =
            self.modules.borrow_mut().entry(module.into()).or_insert_with(|| Rc::new(Semaphore::new(self.per_module))).clone();
        let closed = |_| ResolveError::Internal("the fetch gate closed");
        let module_turn = module_gate.acquire_static_permit(1).await.map_err(closed)?;
        let core_turn = self.core.acquire_static_permit(1).await.map_err(closed)?;
        Ok(FetchTurn { gate: self, module: module.into(), _module_turn: module_turn, _core_turn: core_turn })
    }

    /// A turn for a background fill (a prefetch), now or not at all: only
    /// while more than half of the core's turns are free and the module
    /// has one free, so a prefetch never takes a turn a client's fill
    /// would wait for.
    pub fn try_enter_background(&self, module: &str) -> Option<FetchTurn<'_>> {
        if self.core.available() <= self.reserve {
            return None;
        }
        let module_gate =
            self.modules.borrow_mut().entry(module.into()).or_insert_with(|| Rc::new(Semaphore::new(self.per_module))).clone();
        let turns = module_gate.try_acquire_static_permit(1).ok().zip(self.core.try_acquire_static_permit(1).ok());
        match turns {
            Some((module_turn, core_turn)) => {
                Some(FetchTurn { gate: self, module: module.into(), _module_turn: module_turn, _core_turn: core_turn })
            }
            None => {
                // Not left behind in the map when nobody else holds or waits for it.
                let mut modules = self.modules.borrow_mut();
                if Rc::strong_count(&module_gate) <= 2 {
                    modules.remove(module);
                }
                None
            }
        }
    }
}

impl Drop for FetchTurn<'_> {
    fn drop(&mut self) {
        let mut modules = self.gate.modules.borrow_mut();
        // The map's and our permit's are the only references: nobody else
        // holds or waits for a turn of this module.
        if modules.get(&self.module).is_some_and(|g| Rc::strong_count(g) <= 2) {
            modules.remove(&self.module);
        }
    }
}

impl Filler {
    /// The gate every fill of this core passes (a prefetch takes its turn
    /// before it joins the single flight).
    pub fn gate(&self) -> &FetchGate {
        &self.gate
    }

    pub fn new(
        sources: View<FillSources>,
        writer: SegmentWriter,
        indexes: Arc<[Index]>,
        own: usize,
        metrics: &'static CoreMetrics,
        gate: FetchGate,
    ) -> Filler {
        Filler { sources, writer, indexes, own, metrics, gate }
    }

    /// Fills `key`. With a `progress`, a zip is streamed through it and
    /// `on_stream` is called once its first bytes may be handed out
    /// (readers follow the progress; this returns when the fill is over).
    /// The caller settles the progress with the result. Also returns which
    /// source answered (an upstream entry's name, or the shared store).
    pub async fn fill(
        &self,
        key: &ArtifactKey,
        progress: Option<&Arc<Progress>>,
        on_stream: impl FnOnce(),
        turn: Option<FetchTurn<'_>>,
    ) -> Result<(Filled, Arc<str>), ResolveError> {
        self.metrics.upstream_fetches.bump();
        let sources = self.sources.get();
        let FillSources { upstream, checksums, databases, .. } = (*sources).clone();
        let k = key.clone();
        let record_kind = key.kind.record_kind();
        let p = progress.cloned().unwrap_or_default();
        // The hash this version's file had when it was first stored, if it
        // was (and is fetched again now: evicted, purged or quarantined).
        // (A record whose bytes fail their own checksum counts as none.)
        let first_hash = go_sum_key(&key.version, key.kind).and_then(|v| {
            let blob = self.indexes[self.own].blob(&key.module, &v, RecordKind::GoSum)?;
            blob.verify().then(|| String::from_utf8_lossy(blob.bytes()).into_owned())
        });
        // Hash (and verify) on the blocking thread too: a 500 MiB zip must
        // not stall the reactor. A streamed zip's readers wait for the last
        // byte until this is done.
        let shared = sources.shared.clone().filter(|_| SharedTier::keeps(key.kind));
        // With a shared tier, the log says which tier answered each fill.
        let shared_applies = shared.is_some();
        let metrics = self.metrics;
        let queued_at = std::time::Instant::now();
        let turn = match turn {
            Some(turn) => turn,
            None => self.gate.enter(&key.module).await?,
        };
        let job = spawn_fetch(move || {
            metrics.fetch_queue_micros.add(queued_at.elapsed().as_micros() as u64);
            // Ask the checksum database while the module downloads: the
            // lookup and the download are each a round trip or more. If the
            // download fails, the lookup is left to finish on its own (its
            // proved record is kept for the next try).
            let mut lookup = checksums.filter(|c| c.applies(&k.module, k.kind)).map(|check| {
                let (module, version) = (k.module.clone(), k.version.clone());
                let asked = check.clone();
                // No thread to be had: look it up after the download instead.
                let thread = std::thread::Builder::new().name("gomodproxy-sumdb".into()).spawn(move || asked.record(&module, &version));
                Lookup { check, thread: thread.ok(), record: None }
            });
            let fetch = Fetch { module: &k.module, version: &k.version, kind: k.kind };
            let from_upstream = |p: &Progress| -> Result<Bytes, FetchError> {
                match k.kind {
                    Kind::Latest => Ok(Bytes::from(fetch_latest(&*upstream, &k.module)?)),
                    kind if kind.is_sumdb() => Ok(Bytes::from(database_answer(&databases, &k.module, &k.version, kind)?)),
                    _ => upstream.fetch_streaming(&fetch, p),
                }
            };
            let upstream_checked = |lookup: Option<&mut Lookup>| -> Result<(Bytes, Option<String>, Arc<str>), FetchError> {
                crate::upstream::take_answered_by();
                let body = from_upstream(&p)?;
                let by = crate::upstream::take_answered_by().unwrap_or_else(|| "the upstream".into());
                let checked = check_body(&k, &body, lookup, first_hash.as_deref())?;
                Ok((body, checked, by))
            };
            // Another node's copy first; else this node may hold the
            // fleet's lease to fetch it.
            let mut lease = None;
            let mut shared_copy = None;
            // A copy refused as damaged or not what its checks say: replaced
            // by the upstream's once that passes them.
            let mut refused = None;
            if let Some(tier) = &shared {
                match tier.obtain(&k.module, &k.version, k.kind, &p, metrics) {
                    Obtained::Read(body, copy) => match validate::validate(&fetch, &body) {
                        Ok(()) => shared_copy = Some((body, copy)),
                        Err(e) => {
                            shared_refused(&k, &p, metrics, &e);
                            refused = Some(copy);
                        }
                    },
                    Obtained::Leased(l) => lease = Some(l),
                    Obtained::Bypass => {}
                }
            }
            let (body, checked, answered_by) = match shared_copy {
                Some((body, copy)) => match check_body(&k, &body, lookup.as_mut(), first_hash.as_deref()) {
                    Ok(checked) => (body, checked, Arc::from("the shared store")),
                    // Not what the database or our own first download say:
                    // never kept; the upstream's is.
                    Err(e @ (FetchError::ChecksumMismatch { .. } | FetchError::Invalid(_))) => {
                        shared_refused(&k, &p, metrics, &e);
                        refused = Some(copy);
                        upstream_checked(lookup.as_mut())?
                    }
                    // The check itself could not be made (the database is
                    // down): no verdict on the copy; the fill fails as any would.
                    Err(e) => {
                        if p.is_streaming() {
                            p.void_stream();
                        }
                        return Err(e);
                    }
                },
                None => upstream_checked(lookup.as_mut())?,
            };
            // Only what passed every check reaches the fleet.
            if let Some(lease) = lease {
                lease.publish(body.clone());
            }
            if let (Some(tier), Some(copy)) = (&shared, refused) {
                tier.replace(copy, body.clone(), metrics);
            }
            let sha = record_kind.map(|_| store::record::payload_sha256(&body));
            Ok((body, sha, checked, answered_by))
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
                            on_stream();
                        }
                        job.await
                    }
                }
            }
        };
        // The turn is the fetch's: storing what it got is the writer's business.
        drop(turn);
        self.metrics.fetch_micros.add(queued_at.elapsed().as_micros() as u64);
        self.count_upstream_error(&fetched);
        // `h1`: the go.sum hash to keep beside the file (new, or replacing one).
        let (bytes, sha, h1, answered_by) = fetched?;
        if shared_applies {
            log::info!(
                module = &*key.module, version = &*key.version, kind = key.kind.label(), tier = answered_by;
                "{}@{} ({}): {} bytes from {answered_by}", key.module, key.version, key.kind.label(), bytes.len()
            );
        }
        let filled = self.keep(key, record_kind, bytes, sha, h1, progress).await?;
        Ok((filled, answered_by))
    }

    /// Keeps what a fill fetched where its kind belongs: stored (with its
    /// go.sum hash the first time), unchanged, or passed through.
    pub(super) async fn keep(
        &self,
        key: &ArtifactKey,
        record_kind: Option<RecordKind>,
        bytes: Bytes,
        sha: Option<[u8; 32]>,
        h1: Option<String>,
        progress: Option<&Arc<Progress>>,
    ) -> Result<Filled, ResolveError> {
        let Some(kind) = record_kind else { return Ok(Filled::Mutable(bytes)) };
        let sha = sha.unwrap_or_else(|| store::record::payload_sha256(&bytes));
        // An answer that changes, refreshed to the same bytes, is not
        // written again: the store would only grow. The caller marks it fresh.
        if !key.kind.is_immutable() {
            if let Some(same) = self.indexes[self.own].blob(&key.module, &key.version, kind).filter(|b| *b.sha256() == sha) {
                return Ok(Filled::Unchanged(same));
            }
        }
        // The first time a version's file is stored, its go.sum hash is
        // kept with it (one write, so neither is kept without the other).
        let sum_version = go_sum_key(&key.version, key.kind);
        let mut records = Vec::with_capacity(2);
        if let (Some(h1), Some(v)) = (&h1, &sum_version) {
            let payload = Bytes::from(h1.clone().into_bytes());
            let sha256 = store::record::payload_sha256(&payload);
            records.push(Append { kind: RecordKind::GoSum, module: &key.module, version: v, payload, sha256 });
        }
        records.push(Append { kind, module: &key.module, version: &key.version, payload: bytes.clone(), sha256: sha });
        // Readers of the streamed fill may then finish, from the stored
        // blob: the fill buffer goes as soon as the last slow reader lets
        // go of it, not when it finishes.
        match self.writer.append_all(records).await.map(|mut blobs| (blobs.pop(), blobs.pop())) {
            Ok((Some(blob), sum)) => {
                if let (Some(sum), Some(v)) = (sum, &sum_version) {
                    self.indexes[self.own].insert(&key.module, v, RecordKind::GoSum, sum);
                }
                self.indexes[self.own].insert(&key.module, &key.version, kind, blob.clone());
                if let Some(p) = progress {
                    p.mark_kept(&bytes, Bytes::from_owner(blob.clone()));
                }
                Ok(Filled::Stored(blob))
            }
            Ok((None, _)) => Err(ResolveError::Internal("the store wrote no record")),
            Err(e) => {
                self.metrics.store_errors.bump();
                log::error!(
                    module = &*key.module, version = &*key.version, kind = key.kind.label();
                    "storing {}@{} ({kind:?}) failed, serving from memory: {e}", key.module, key.version
                );
                if let Some(p) = progress {
                    p.mark_kept(&bytes, bytes.clone());
                }
                Ok(Filled::PassedThrough { bytes, sha256: sha })
            }
        }
    }

    /// Seals the writer's open segment (see [`SegmentWriter::close`]).
    pub async fn close_store(&self) {
        self.writer.close().await;
    }

    /// Withdraws this core's records of `targets` for good: tombstones
    /// written and synced (they survive restarts and hide the records),
    /// then gone from the index, so the next request fills them afresh.
    pub async fn withdraw(&self, targets: &[(String, String, RecordKind)]) -> Result<(), ResolveError> {
        if targets.is_empty() {
            return Ok(());
        }
        let payloads: Vec<(Bytes, [u8; 32])> = targets
            .iter()
            .map(|(_, _, kind)| {
                let payload = Bytes::from(vec![*kind as u8]);
                let sha = store::record::payload_sha256(&payload);
                (payload, sha)
            })
            .collect();
        let records = targets
            .iter()
            .zip(&payloads)
            .map(|((module, version, _), (payload, sha256))| Append {
                kind: RecordKind::Tombstone,
                module,
                version,
                payload: payload.clone(),
                sha256: *sha256,
            })
            .collect();
        self.writer.append_all(records).await.map_err(|e| {
            self.metrics.store_errors.bump();
            log::error!("writing {} tombstone(s) failed: {e}", targets.len());
            ResolveError::Internal("the store could not write the purge's tombstones")
        })?;
        for (module, version, kind) in targets {
            self.indexes[self.own].remove(module, version, *kind);
        }
        Ok(())
    }

    /// Deletes the shared tier's copies of what a purge withdrew, so no
    /// node reads them back. Returns how many deletes the tier accepted
    /// (`None`: there is no tier).
    pub async fn withdraw_shared(&self, module: &str, version: Option<&str>) -> Result<Option<usize>, ResolveError> {
        let Some(tier) = self.sources.get().shared.clone() else { return Ok(None) };
        let (module, version) = (module.to_string(), version.map(str::to_string));
        spawn_fetch(move || {
            tier.purge(&module, version.as_deref())
                .map(Some)
                .map_err(|e| FetchError::Unavailable { upstream: tier.name().to_string(), message: e.to_string() })
        })
        .await
    }

    /// Passes a query (a branch, a commit prefix) straight to the sources.
    /// Nothing is cached under the query: it can mean something else tomorrow.
    pub async fn pass_through(&self, module: &str, query: &str) -> Result<Bytes, ResolveError> {
        self.metrics.upstream_fetches.bump();
        let _turn = self.gate.enter(module).await?;
        let upstream = self.sources.get().upstream.clone();
        let (module, query) = (module.to_string(), query.to_string());
        let fetched = spawn_fetch(move || upstream.fetch(&Fetch { module: &module, version: &query, kind: Kind::Info })).await;
        self.count_upstream_error(&fetched);
        fetched.map(Bytes::from)
    }

    fn count_upstream_error<T>(&self, r: &Result<T, ResolveError>) {
        match r {
            Ok(_) | Err(ResolveError::Fetch(FetchError::NotFound { .. })) | Err(ResolveError::Internal(_)) => {}
            Err(ResolveError::Fetch(FetchError::CircuitOpen { .. })) => self.metrics.upstream_skipped.bump(),
            Err(ResolveError::Fetch(FetchError::ChecksumMismatch { .. })) => {
                self.metrics.checksum_mismatches.bump();
                self.metrics.upstream_errors.bump();
            }
            Err(ResolveError::Fetch(_)) => self.metrics.upstream_errors.bump(),
        }
    }
}

/// Runs a fetch on a thread of [`FetchThreads`] (it mostly waits on the
/// network: a small fixed pool would let a few slow answers hold up every
/// other miss; [`FetchGate`] bounds how many run). A panic in it (a bug in
/// a source) becomes our own failure, so its fill always ends.
async fn spawn_fetch<T: Send + 'static>(fetch: impl FnOnce() -> Result<T, FetchError> + Send + 'static) -> Result<T, ResolveError> {
    let (tx, rx) = futures_channel::oneshot::channel();
    let job = Box::new(move || {
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(fetch)) {
            Ok(fetched) => fetched.map_err(ResolveError::Fetch),
            Err(_) => Err(ResolveError::Internal("the upstream fetch panicked")),
        };
        let _ = tx.send(result);
    });
    if !FetchThreads::get().run(job) {
        return Err(ResolveError::Internal("no thread could be started for the upstream fetch"));
    }
    rx.await.unwrap_or(Err(ResolveError::Internal("the upstream fetch thread vanished")))
}

/// The checksum-database lookup a fill started beside its download.
struct Lookup {
    check: Arc<ChecksumCheck>,
    /// `None`: no thread could be had; it is looked up when needed.
    thread: Option<std::thread::JoinHandle<Result<Record, FetchError>>>,
    /// The lookup's result once joined (a body refused and fetched again
    /// is checked against the same record).
    record: Option<Result<Record, FetchError>>,
}

impl Lookup {
    fn record(&mut self, module: &str, version: &str) -> Result<&Record, FetchError> {
        if self.record.is_none() {
            let record = match self.thread.take() {
                // A panic in the lookup is our own failure: re-raised
                // here, where spawn_fetch turns it into one.
                Some(t) => t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                None => self.check.record(module, version),
            };
            self.record = Some(record);
        }
        match self.record.as_ref() {
            Some(Ok(record)) => Ok(record),
            Some(Err(e)) => Err(e.clone()),
            None => Err(FetchError::Invalid("no checksum record".into())),
        }
    }
}

/// The go.sum hash of a fetched `.zip`/`.mod` and whether to keep it:
/// `Some(h1)` when it is the first kept for that file or replaces one the
/// database outranks; `None` for other kinds and for a hash already kept.
/// Fails when the database or the version's first download says otherwise.
fn check_body(k: &ArtifactKey, body: &Bytes, lookup: Option<&mut Lookup>, first_hash: Option<&str>) -> Result<Option<String>, FetchError> {
    let h1 = match k.kind {
        Kind::Zip => Some(dirhash::hash_zip(body).map_err(|e| FetchError::Invalid(format!("module zip: {e}")))?),
        Kind::Mod => Some(dirhash::hash_go_mod(body)),
        _ => None,
    };
    let mut vouched = false;
    if let (Some(lookup), Some(got)) = (lookup, &h1) {
        let check = lookup.check.clone();
        check.verdict(&k.module, &k.version, k.kind, got, lookup.record(&k.module, &k.version)?)?;
        vouched = true;
    }
    // A version's files never change: later bytes must hash as the first
    // did, unless the checksum database vouched for them (it outranks a
    // first download nobody checked: the kept hash is replaced).
    let keep = match (&h1, first_hash) {
        (Some(got), Some(first)) if got != first && vouched => {
            log::warn!(
                module = &*k.module, version = &*k.version, kind = k.kind.label(); "{}@{} ({}): the checksum database vouches for {got}; replacing the kept first-download hash {first}",
                k.module,
                k.version,
                k.kind.label()
            );
            true
        }
        (Some(got), Some(expected)) if got != expected => {
            let what = format!("{}@{} ({})", k.module, k.version, k.kind.label());
            log::error!(module = &*k.module, version = &*k.version, kind = k.kind.label(); "SECURITY: {what}: the fetched bytes hash to {got}, its first download to {expected}; refused");
            return Err(FetchError::ChecksumMismatch {
                what,
                recorded_by: "gomodproxy's first download of it".into(),
                expected: expected.to_string(),
                got: got.clone(),
            });
        }
        (Some(_), None) => true,
        _ => false,
    };
    Ok(h1.filter(|_| keep))
}

/// A shared-tier copy that failed validation or verification: logged,
/// counted, its stream voided; the fill goes on to the upstream.
fn shared_refused(k: &ArtifactKey, progress: &Progress, metrics: &CoreMetrics, e: &FetchError) {
    log::error!(
        module = &*k.module, version = &*k.version, kind = k.kind.label(); "SECURITY: {}@{} ({}): the shared store's copy is refused: {e}; fetching it from the upstream",
        k.module,
        k.version,
        k.kind.label()
    );
    metrics.shared_errors.bump();
    if progress.is_streaming() {
        progress.void_stream();
    }
}

/// The version under which the go.sum hash of a `kind` file of `version`
/// is kept, as go.sum spells it: `v1.2.3` for the zip, `v1.2.3/go.mod`
/// for the go.mod; `None` for the kinds go.sum does not hash.
pub fn go_sum_key(version: &str, kind: Kind) -> Option<String> {
    match kind {
        Kind::Zip => Some(version.to_string()),
        Kind::Mod => Some(format!("{version}/go.mod")),
        _ => None,
    }
}

/// A `/sumdb/<name>/<path>` answer (`module` is `sumdb/<name>`), from the
/// database of that name as it verified it.
fn database_answer(databases: &[Arc<ChecksumCheck>], module: &str, path: &str, kind: Kind) -> Result<Vec<u8>, FetchError> {
    let name = module.strip_prefix("sumdb/").unwrap_or(module);
    match databases.iter().find(|db| db.name() == name) {
        Some(db) => db.answer(path, kind),
        None => Err(FetchError::NotFound { gone: false, message: format!("checksum database {name} is not served here (--sumdb)") }),
    }
}

/// `@latest` for sources that do not answer it (the file layout has no
/// `@latest`): the highest release in `list`, else the highest pre-release,
/// answered with that version's `.info`, as the go command itself would pick.
pub fn fetch_latest(upstream: &dyn Fetcher, module: &str) -> Result<Vec<u8>, FetchError> {
    let direct = upstream.fetch(&Fetch { module, version: "", kind: Kind::Latest });
    let Err(FetchError::NotFound { .. }) = direct else { return direct };
    let list = upstream.fetch(&Fetch { module, version: "", kind: Kind::List })?;
    let text = String::from_utf8_lossy(&list);
    let versions = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| crate::gomod::module::canonical_version(v).is_some_and(|c| c == *v));
    let best = versions.fold(None::<&str>, |best, v| match best {
        None => Some(v),
        // A release beats any pre-release; otherwise semver order decides.
        Some(b) => {
            let (vp, bp) = (crate::gomod::semver::is_prerelease(v), crate::gomod::semver::is_prerelease(b));
            if (bp && !vp) || (vp == bp && crate::gomod::semver::compare(v, b).is_gt()) {
                Some(v)
            } else {
                Some(b)
            }
        }
    });
    match best {
        Some(version) => upstream.fetch(&Fetch { module, version, kind: Kind::Info }),
        None => direct,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing() -> FetchError {
        FetchError::NotFound { gone: false, message: "not found".into() }
    }

    struct Tree(&'static [u8]);
    impl Fetcher for Tree {
        fn fetch(&self, req: &Fetch<'_>) -> Result<Vec<u8>, FetchError> {
            match req.kind {
                Kind::List => Ok(self.0.to_vec()),
                Kind::Info => Ok(format!("{{\"Version\":\"{}\"}}", req.version).into_bytes()),
                _ => Err(missing()),
            }
        }
        fn name(&self) -> &str {
            "tree"
        }
    }

    #[test]
    fn latest_falls_back_to_the_highest_release_in_the_list() {
        let info = |list| String::from_utf8(fetch_latest(&Tree(list), "example.com/a").unwrap()).unwrap();
        assert_eq!(info(b"v1.0.0\nv1.10.0\nv1.2.0-rc.1\nv1.9.0\n"), "{\"Version\":\"v1.10.0\"}");
        assert_eq!(info(b"v1.2.0-rc.1\nv1.2.0-rc.2 extra\n"), "{\"Version\":\"v1.2.0-rc.2\"}");
        assert_eq!(info(b"v2.0.0+incompatible\nv1.0.0\nbogus\n"), "{\"Version\":\"v2.0.0+incompatible\"}");
        assert!(matches!(fetch_latest(&Tree(b""), "example.com/a"), Err(FetchError::NotFound { .. })));
    }

    #[test]
    fn a_background_turn_leaves_half_the_core_and_the_module_gate_to_clients() {
        let gate = FetchGate::new(4, 1);
        let a = gate.try_enter_background("example.com/a").expect("all four turns free");
        assert!(gate.try_enter_background("example.com/a").is_none(), "the module's one turn is taken");
        let b = gate.try_enter_background("example.com/b").expect("three free");
        assert!(gate.try_enter_background("example.com/c").is_none(), "two free: they are the clients'");
        assert!(!gate.modules.borrow().contains_key("example.com/c"), "a refused module leaves nothing behind");
        drop(a);
        assert!(gate.try_enter_background("example.com/c").is_some());
        drop(b);
        assert!(gate.modules.borrow().is_empty());
    }
}
