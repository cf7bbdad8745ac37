//! `gomodproxy purge --data DIR MODULE[@VERSION]`: withdraws what a stopped
//! store holds of a module version (its `.info`, `.mod`, `.zip` and the
//! go.sum hashes kept with them), or of a whole module (every version, its
//! `list` and `@latest`), with tombstones that survive restarts. What was
//! purged is fetched afresh on its next request, and its hashes recorded
//! anew: a purge is how an operator accepts a version's new bytes. With
//! `--shared-store` the fleet's copies in the object store are deleted too,
//! after the local store's; whatever can be refused without the network is
//! refused before either is touched.
//!
//! Owns choosing the records. It withdraws them with the store's lock held
//! (never beside a running server) and never touches checksum-database answers.

use crate::gomod::module;
use crate::shared::{SharedError, SharedSettings, SharedTier};
use crate::store::{RecordKind, Store, StoreError};

#[derive(Debug)]
pub enum PurgeError {
    /// The target is not `MODULE` or `MODULE@VERSION`.
    BadTarget(String),
    Store(StoreError),
    /// The shared store's client could not be built from its URL.
    Shared(SharedError),
}

impl std::fmt::Display for PurgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PurgeError::BadTarget(why) => f.write_str(why),
            PurgeError::Store(e) => write!(f, "{e}"),
            PurgeError::Shared(e) => write!(f, "--shared-store: {e}"),
        }
    }
}

impl std::error::Error for PurgeError {}

/// A purge's target must name a module (decoded path) and, if a version, a
/// canonical one: the keys records are stored under.
pub fn check_target(path: &str, version: Option<&str>) -> Result<(), PurgeError> {
    module::check_path(path).map_err(|e| PurgeError::BadTarget(format!("{path:?}: {e}")))?;
    match version {
        Some(v) if module::canonical_version(v).is_none_or(|c| c != v) => {
            Err(PurgeError::BadTarget(format!("{path}@{v}: {v:?} is not a canonical version")))
        }
        _ => Ok(()),
    }
}

/// What a purge withdrew: the local store's records, and (with a shared
/// store) how many deletes it accepted, or why it refused them.
pub struct PurgeReport {
    pub records: Vec<(String, String, RecordKind)>,
    pub shared: Option<Result<usize, SharedError>>,
}

/// Purges `target` from the store under `data_dir`, then from `shared` if
/// given. Everything that can be refused without the network (the target,
/// the shared store's settings, the store's lock) is, before anything is
/// withdrawn.
pub fn purge(data_dir: &std::path::Path, target: &str, shared: Option<SharedSettings>) -> Result<PurgeReport, PurgeError> {
    let (path, version) = match target.split_once('@') {
        Some((p, v)) => (p, Some(v)),
        None => (target, None),
    };
    check_target(path, version)?;
    let tier = shared.map(SharedTier::open).transpose().map_err(PurgeError::Shared)?;
    let store = Store::open(data_dir, 1, |_, _, _| 0).map_err(PurgeError::Store)?;
    let records = store.indexes()[0].module_records(path, version);
    let refs: Vec<(&str, &str, RecordKind)> = records.iter().map(|(m, v, k)| (m.as_str(), v.as_str(), *k)).collect();
    store.withdraw(&refs, |_, _, _| 0).map_err(PurgeError::Store)?;
    // The lock is not held through the object store's round trips.
    drop(store);
    // Whether or not this node stored any of it: another may have put it there.
    let shared = tier.map(|tier| tier.purge(path, version));
    Ok(PurgeReport { records, shared })
}
