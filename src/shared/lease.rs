//! The fleet's single flight: before a node fills an artifact from the
//! upstream it takes a lease, a lock object created only if none exists
//! (`If-None-Match: *`), naming its holder and an expiry. Other nodes poll
//! for the artifact (and the lease) instead of fetching; an expired lease
//! is taken over with `If-Match` on its ETag, so of several nodes that saw
//! it expire one wins. The holder renews it while the fill runs, writes the
//! artifact create-only, then removes the lease.
//!
//! Owns the lock objects (`PREFIX/_leases/…`: `_leases` has no dot, so it
//! can never be a module path's first element) and their protocol. Expiry
//! is wall-clock time, so nodes' clocks must agree to well within a lease
//! (NTP does). It never fetches from the upstream nor judges bytes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore as _, ObjectStoreExt as _, PutMode, PutOptions, PutPayload, PutResult, UpdateVersion};

use super::{unavailable, Obtained, SharedError, SharedTier};
use crate::artifact::fill::Progress;
use crate::artifact::Kind;
use crate::metrics::CoreMetrics;
use crate::store::unix_ms;

/// A lock object's content. Anything else found there (a foreign or
/// damaged object) counts as an expired lease.
#[derive(serde::Serialize, serde::Deserialize)]
struct Claim {
    /// Who holds it: node name, pid, a random part.
    holder: String,
    /// Milliseconds since the Unix epoch after which anyone may take it over.
    expires_unix_ms: u64,
}

/// Which artifact a lease is for: its log lines name it.
#[derive(Clone)]
pub(super) struct Subject {
    pub module: String,
    pub version: String,
    pub kind: Kind,
}

/// Larger than any claim we write; a larger lock object is not read.
const MAX_CLAIM_BYTES: u64 = 4096;

impl Claim {
    fn fresh(tier: &SharedTier) -> Claim {
        Claim { holder: tier.token.clone(), expires_unix_ms: unix_ms() + tier.settings.lease.as_millis() as u64 }
    }

    fn payload(&self) -> PutPayload {
        PutPayload::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// The lock object as this node last wrote it.
#[derive(Clone)]
struct Held {
    version: UpdateVersion,
    /// The expiry written with it: until then nobody may take it over.
    expires_unix_ms: u64,
}

impl Held {
    fn new(put: &PutResult, claim: &Claim) -> Held {
        Held { version: UpdateVersion { e_tag: put.e_tag.clone(), version: put.version.clone() }, expires_unix_ms: claim.expires_unix_ms }
    }
}

/// This node's right to fill one artifact for the fleet, renewed until it
/// is published or dropped (a failed fill: the lease is removed at once,
/// so waiting nodes try themselves instead of waiting out its expiry).
pub struct Lease {
    tier: Arc<SharedTier>,
    key: ObjectPath,
    lock: ObjectPath,
    /// The lock object as last written: renewals replace it.
    held: Arc<Mutex<Held>>,
    renewal: Option<tokio::task::JoinHandle<()>>,
    metrics: &'static CoreMetrics,
    subject: Subject,
}

impl Lease {
    fn start(
        tier: &Arc<SharedTier>,
        key: &ObjectPath,
        lock: ObjectPath,
        held: Held,
        metrics: &'static CoreMetrics,
        subject: &Subject,
    ) -> Lease {
        let held = Arc::new(Mutex::new(held));
        let renewal = tier.runtime.spawn(renew(tier.clone(), lock.clone(), held.clone(), subject.clone()));
        Lease { tier: tier.clone(), key: key.clone(), lock, held, renewal: Some(renewal), metrics, subject: subject.clone() }
    }

    /// Writes the fill's (validated, verified) bytes for the fleet, in the
    /// background: the fill goes on to the local store meanwhile. The lease
    /// is renewed until the upload is over, then removed.
    pub fn publish(mut self, body: Bytes) {
        let renewal = self.renewal.take();
        let (tier, key, lock, held, metrics) = (self.tier.clone(), self.key.clone(), self.lock.clone(), self.held.clone(), self.metrics);
        let s = self.subject.clone();
        let len = body.len() as u64;
        self.tier.runtime.spawn(async move {
            match tier.put_new(&key, body).await {
                Ok(true) => {
                    metrics.shared_writes.bump();
                    metrics.shared_write_bytes.add(len);
                }
                // Another node wrote it (it took the lease over from us): its
                // bytes stand; they passed the same checks.
                Ok(false) => log::info!(module = &*s.module, version = &*s.version, kind = s.kind.label(); "{key}: already in the shared store"),
                Err(e) => {
                    metrics.shared_errors.bump();
                    log::warn!(module = &*s.module, version = &*s.version, kind = s.kind.label(); "{key}: not written to the shared store: {e}");
                }
            }
            if let Some(r) = renewal {
                // Abort, and wait for it: a renewal already in flight must
                // land before the release reads what it wrote.
                r.abort();
                let _ = r.await;
            }
            release(&tier, &lock, &held, &s).await;
        });
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Published: the upload task releases it.
        let Some(renewal) = self.renewal.take() else { return };
        renewal.abort();
        let (tier, lock, held, s) = (self.tier.clone(), self.lock.clone(), self.held.clone(), self.subject.clone());
        self.tier.runtime.spawn(async move {
            let _ = renewal.await;
            release(&tier, &lock, &held, &s).await
        });
    }
}

/// Renews the lease every third of its time until aborted or lost.
async fn renew(tier: Arc<SharedTier>, lock: ObjectPath, held: Arc<Mutex<Held>>, s: Subject) {
    let every = (tier.settings.lease / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let version = held.lock().unwrap_or_else(|e| e.into_inner()).version.clone();
        let claim = Claim::fresh(&tier);
        match put_conditionally(&tier, &lock, version, &claim).await {
            Ok(Some(put)) => *held.lock().unwrap_or_else(|e| e.into_inner()) = Held::new(&put, &claim),
            Ok(None) => {
                log::warn!(
                    module = &*s.module, version = &*s.version, kind = s.kind.label();
                    "{lock}: lease lost to another node (it expired while this fill ran); its fill stands, ours too"
                );
                return;
            }
            // The next round tries again; meanwhile the lease may expire.
            Err(e) => {
                log::warn!(module = &*s.module, version = &*s.version, kind = s.kind.label(); "{lock}: renewing the lease failed: {e}")
            }
        }
    }
}

/// Removes the lease if this node still holds it.
async fn release(tier: &SharedTier, lock: &ObjectPath, held: &Mutex<Held>, s: &Subject) {
    let ours = held.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // Only our own version of it: a lease taken over meanwhile is another
    // node's. Before its expiry (less a margin for clocks and the request
    // itself) nobody can have taken it; after, it is checked first. (Object
    // stores have no conditional delete; the window between that check and
    // the delete is one round trip.)
    let margin = (tier.settings.lease / 4).as_millis() as u64;
    let still_ours = unix_ms() + margin < ours.expires_unix_ms
        || match tier.store.head(lock).await {
            Ok(meta) => ours.version.e_tag.is_none() || meta.e_tag == ours.version.e_tag,
            Err(_) => false,
        };
    if still_ours {
        if let Err(e) = tier.store.delete(lock).await {
            log::warn!(
                module = &*s.module, version = &*s.version, kind = s.kind.label();
                "{lock}: removing the lease failed (it expires on its own): {e}"
            );
        }
    }
}

/// Replaces the lock object if it is still at `version` (see
/// [`SharedTier::put_if_unchanged`]).
async fn put_conditionally(
    tier: &SharedTier,
    lock: &ObjectPath,
    version: UpdateVersion,
    claim: &Claim,
) -> Result<Option<PutResult>, SharedError> {
    tier.put_if_unchanged(lock, version, claim.payload()).await
}

/// [`SharedTier::obtain`]'s protocol: the artifact if it exists, else the
/// lease, else wait for whoever holds it (at most the tier's wait limit).
pub(super) fn obtain(
    tier: &Arc<SharedTier>,
    key: &ObjectPath,
    lock: ObjectPath,
    s: &Subject,
    progress: &Progress,
    metrics: &'static CoreMetrics,
) -> Result<Obtained, SharedError> {
    let kind = s.kind;
    tier.runtime.block_on(async {
        let deadline = Instant::now() + tier.settings.wait_limit;
        let mut pause = Duration::from_millis(25);
        let mut waited = false;
        loop {
            if Instant::now() >= deadline {
                log::warn!(
                    module = &*s.module, version = &*s.version, kind = kind.label();
                    "{key}: another node's fill took longer than {:?}; fetching it here too", tier.settings.wait_limit
                );
                return Ok(Obtained::Bypass);
            }
            if let Some((body, copy)) = tier.read(key, kind, progress, metrics).await? {
                return Ok(Obtained::Read(body, copy));
            }
            let create = PutOptions { mode: PutMode::Create, ..Default::default() };
            let claim = Claim::fresh(tier);
            match tier.store.put_opts(&lock, claim.payload(), create).await {
                Ok(put) => {
                    metrics.shared_misses.bump();
                    return Ok(Obtained::Leased(Lease::start(tier, key, lock, Held::new(&put, &claim), metrics, s)));
                }
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {}
                Err(e) => return Err(unavailable(e)),
            }
            // Someone holds it, or held it: expired, it is ours to take.
            match tier.store.get(&lock).await {
                // Released meanwhile: its artifact may be there now.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(unavailable(e)),
                Ok(got) => {
                    let version = UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
                    // A lease that cannot be read is the store failing, not an
                    // expired lease (taking it over would make two fills);
                    // one that reads as no claim is foreign or damaged: expired.
                    let claim = if got.meta.size <= MAX_CLAIM_BYTES {
                        serde_json::from_slice::<Claim>(&got.bytes().await.map_err(unavailable)?).ok()
                    } else {
                        None
                    };
                    if claim.as_ref().is_none_or(|c| c.expires_unix_ms <= unix_ms()) {
                        let holder = claim.map_or_else(|| "an unreadable lease".to_string(), |c| c.holder);
                        let claim = Claim::fresh(tier);
                        if let Some(put) = put_conditionally(tier, &lock, version, &claim).await? {
                            log::warn!(module = &*s.module, version = &*s.version, kind = kind.label(); "{key}: taking over the expired lease of {holder}");
                            metrics.shared_takeovers.bump();
                            metrics.shared_misses.bump();
                            return Ok(Obtained::Leased(Lease::start(tier, key, lock, Held::new(&put, &claim), metrics, s)));
                        }
                        continue;
                    }
                }
            }
            if !waited {
                metrics.shared_lease_waits.bump();
                waited = true;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    })
}
