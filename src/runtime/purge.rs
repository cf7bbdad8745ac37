//! `gomodproxy purge --data DIR MODULE[@VERSION]`: withdraws what a stopped
//! store holds of a module version (its `.info`, `.mod`, `.zip` and the
//! go.sum hashes kept with them), or of a whole module (every version, its
//! `list` and `@latest`), with tombstones that survive restarts. What was
//! purged is fetched afresh on its next request, and its hashes recorded
//! anew: a purge is how an operator accepts a version's new bytes.
//!
//! Owns choosing the records. It runs with the store's lock held (never
//! beside a running server) and never touches checksum-database answers.

use crate::gomod::module;
use crate::store::{RecordKind, Store, StoreError};

#[derive(Debug)]
pub enum PurgeError {
    /// The target is not `MODULE` or `MODULE@VERSION`.
    BadTarget(String),
    Store(StoreError),
}

impl std::fmt::Display for PurgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PurgeError::BadTarget(why) => f.write_str(why),
            PurgeError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PurgeError {}

/// The kinds a module's own records are stored as.
fn module_kind(kind: RecordKind) -> bool {
    matches!(kind, RecordKind::Info | RecordKind::Mod | RecordKind::Zip | RecordKind::GoSum | RecordKind::List | RecordKind::Latest)
}

/// Purges `target` from the store under `data_dir`; returns the records withdrawn.
pub fn purge(data_dir: &std::path::Path, target: &str) -> Result<Vec<(String, String, RecordKind)>, PurgeError> {
    let (path, version) = match target.split_once('@') {
        Some((p, v)) => (p, Some(v)),
        None => (target, None),
    };
    module::check_path(path).map_err(|e| PurgeError::BadTarget(format!("{target:?}: {e}")))?;
    if let Some(v) = version {
        if module::canonical_version(v).is_none_or(|c| c != v) {
            return Err(PurgeError::BadTarget(format!("{target:?}: {v:?} is not a canonical version")));
        }
    }
    let store = Store::open(data_dir, 1, |_, _, _| 0).map_err(PurgeError::Store)?;
    let index = &store.indexes()[0];
    let mut chosen: Vec<(String, String, RecordKind)> = index
        .entries()
        .filter(|e| e.module() == path && module_kind(e.kind()))
        .filter(|e| match version {
            // The version's files and the hashes kept as `v` and `v/go.mod`.
            Some(v) => e.version() == v || e.version().strip_suffix("/go.mod") == Some(v),
            None => true,
        })
        .map(|e| (e.module().to_string(), e.version().to_string(), e.kind()))
        .collect();
    chosen.sort_by(|a, b| (&a.1, a.2 as u8).cmp(&(&b.1, b.2 as u8)));
    let refs: Vec<(&str, &str, RecordKind)> = chosen.iter().map(|(m, v, k)| (m.as_str(), v.as_str(), *k)).collect();
    store.withdraw(&refs, |_, _, _| 0).map_err(PurgeError::Store)?;
    Ok(chosen)
}
