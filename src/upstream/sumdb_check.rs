//! Checking a fetched `.zip` or `.mod` against the checksum database before
//! anything stores or serves it: its `h1:` hash must be the one the
//! database's log records for that module version, proved by
//! [`SumDbClient`].
//!
//! Owns the database's sources (the upstreams' own `/sumdb/<name>/` first,
//! then the database's URL when one is configured), the last tree head
//! accepted (kept in memory and in `DATA/sumdb/<name>.head`, so a log that
//! forks is caught across restarts), and the verdict. It never looks up a
//! private module (its path must not reach the database) and never passes
//! bytes it could not verify: a database it cannot reach is a failure, not
//! a pass.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;

use super::sumdb_client::{parse_tree, Record, SumDbClient, SumDbError, SumDbSource, TreeHead};
use super::{Fetch, Fetcher};
use crate::artifact::{FetchError, Kind};
use crate::gomod::dirhash;
use crate::gomod::note::Verifier;
use crate::gomod::pattern::PrefixPatterns;

/// Most authenticated tiles kept in memory (8 KiB each at height 8).
const KEPT_TILES: usize = 4096;
/// Most proved records kept in memory.
const KEPT_RECORDS: usize = 100_000;

/// The database's answers: from each source in turn until one answers,
/// tiles from memory once authenticated (a tile path names its width, so
/// a partial tile's bytes are as fixed as a complete one's).
struct Sources {
    /// `sumdb/<name>`: the path prefix below an upstream proxy.
    prefix: String,
    /// The upstream chain (with its privacy guard, breakers and validation).
    upstream: Arc<dyn Fetcher>,
    /// The database's own URL (`--sumdb "name+hash+key URL"`), as a chain
    /// of its own (timeouts, retries, breaker, validation).
    direct: Option<Box<dyn Fetcher>>,
    tiles: Mutex<HashMap<String, Arc<[u8]>>>,
}

impl SumDbSource for Sources {
    fn get(&self, path: &str, kind: Kind) -> Result<Vec<u8>, FetchError> {
        if matches!(kind, Kind::SumTile | Kind::SumPartialTile) {
            if let Some(kept) = lock(&self.tiles).get(path) {
                return Ok(kept.to_vec());
            }
        }
        let via_proxy = self.upstream.fetch(&Fetch { module: &self.prefix, version: path, kind });
        match (via_proxy, &self.direct) {
            (Ok(body), _) => Ok(body),
            (Err(e), None) => Err(e),
            (Err(_), Some(db)) => db.fetch(&Fetch { module: "", version: path, kind }),
        }
    }

    fn keep_tile(&self, path: &str, data: &[u8]) {
        let mut tiles = lock(&self.tiles);
        if tiles.len() >= KEPT_TILES {
            tiles.clear();
        }
        tiles.insert(path.to_string(), data.into());
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct ChecksumCheck {
    name: String,
    client: SumDbClient<Sources>,
    private: PrefixPatterns,
    /// Where the accepted head is kept between runs.
    head_file: PathBuf,
    /// The last head accepted. Held while a newer one is reconciled with
    /// it, so two fills never accept two different histories.
    known: Mutex<Option<TreeHead>>,
    /// Records already proved, by `module@version`: a record in the log
    /// never changes, so a version's `.mod` and `.zip` need one lookup.
    proved: Mutex<HashMap<String, Record>>,
}

impl ChecksumCheck {
    /// A check against database `name`, whose key is `verifier`. The head
    /// accepted in an earlier run, if any, is read from `state_dir`.
    pub fn new(
        verifier: Verifier,
        upstream: Arc<dyn Fetcher>,
        direct: Option<Box<dyn Fetcher>>,
        private: PrefixPatterns,
        state_dir: PathBuf,
    ) -> ChecksumCheck {
        let name = verifier.name().to_string();
        let head_file = state_dir.join(format!("{name}.head"));
        let known = match std::fs::read_to_string(&head_file) {
            Ok(text) => match parse_tree(&text) {
                Ok(head) => Some(head),
                Err(e) => {
                    log::error!("{}: {e}; starting without an accepted tree head", head_file.display());
                    None
                }
            },
            Err(_) => None,
        };
        let sources = Sources { prefix: format!("sumdb/{name}"), upstream, direct, tiles: Mutex::default() };
        ChecksumCheck {
            name,
            client: SumDbClient::new(verifier, sources),
            private,
            head_file,
            known: Mutex::new(known),
            proved: Mutex::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn known(&self) -> MutexGuard<'_, Option<TreeHead>> {
        lock(&self.known)
    }

    /// Whether the `kind` of `module` is checked: `.zip` and `.mod` of
    /// public modules (private ones are never looked up).
    pub fn applies(&self, module: &str, kind: Kind) -> bool {
        matches!(kind, Kind::Zip | Kind::Mod) && !self.private.matches(module)
    }

    /// The proved record of `module@version`: from memory, or looked up in
    /// the database and proved. Blocking; callers ask for it while the
    /// module itself downloads.
    pub fn record(&self, module: &str, version: &str) -> Result<Record, FetchError> {
        let id = format!("{module}@{version}");
        if let Some(record) = lock(&self.proved).get(&id) {
            return Ok(record.clone());
        }
        let start = *self.known();
        let (record, head) = self.client.lookup(module, version, start.as_ref()).map_err(|e| self.failure(e))?;
        self.accept(start, head)?;
        let mut proved = lock(&self.proved);
        if proved.len() >= KEPT_RECORDS {
            proved.clear();
        }
        proved.insert(id, record.clone());
        Ok(record)
    }

    /// Checks `body`, the `kind` (`.zip` or `.mod`) of `module@version`,
    /// against its proved `record`.
    pub fn verdict(&self, module: &str, version: &str, kind: Kind, body: &[u8], record: &Record) -> Result<(), FetchError> {
        let got = match kind {
            Kind::Zip => dirhash::hash_zip(body).map_err(|e| FetchError::Invalid(format!("module zip: {e}")))?,
            _ => dirhash::hash_go_mod(body),
        };
        let expected = if kind == Kind::Zip { &record.zip } else { &record.go_mod };
        if got == *expected {
            return Ok(());
        }
        let expected = expected.clone();
        let what = format!("{module}@{version} ({})", kind.label());
        log::error!("SECURITY: {what}: the upstream's bytes hash to {got}, checksum database {} records {expected}; refused", self.name);
        Err(FetchError::ChecksumMismatch { what, database: self.name.clone(), expected, got })
    }

    /// Keeps `head` as the accepted one if it is newer; a head accepted
    /// meanwhile by another fill is reconciled with it first.
    fn accept(&self, start: Option<TreeHead>, head: TreeHead) -> Result<(), FetchError> {
        let mut known = self.known();
        let keep = if *known == start { head } else { self.client.reconcile(known.as_ref(), head).map_err(|e| self.failure(e))? };
        if known.as_ref() != Some(&keep) {
            *known = Some(keep);
            self.persist(&keep);
        }
        Ok(())
    }

    fn persist(&self, head: &TreeHead) {
        let text = format!("go.sum database tree\n{}\n{}\n", head.size, base64::engine::general_purpose::STANDARD.encode(head.hash));
        let tmp = self.head_file.with_extension("head.tmp");
        let written = std::fs::create_dir_all(self.head_file.parent().unwrap_or(&self.head_file))
            .and_then(|()| std::fs::write(&tmp, text))
            .and_then(|()| std::fs::rename(&tmp, &self.head_file));
        if let Err(e) = written {
            log::error!("keeping the accepted tree head of {} in {}: {e}", self.name, self.head_file.display());
        }
    }

    /// A database failure: the module cannot be verified, so it is not served.
    fn failure(&self, e: SumDbError) -> FetchError {
        match e {
            SumDbError::Fetch(FetchError::NotFound { message, .. }) => FetchError::Unavailable {
                upstream: format!("checksum database {}", self.name),
                message: format!("no record to verify against: {message}"),
            },
            SumDbError::Fetch(e) => e,
            e @ SumDbError::Fork { .. } => {
                log::error!("SECURITY: {e}");
                FetchError::Unavailable { upstream: format!("checksum database {}", self.name), message: e.to_string() }
            }
            e => FetchError::Unavailable { upstream: format!("checksum database {}", self.name), message: e.to_string() },
        }
    }
}
