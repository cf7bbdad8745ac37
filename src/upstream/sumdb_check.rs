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

use super::sumdb_client::{parse_tree, Proved, Record, SumDbClient, SumDbError, SumDbSource, TreeHead, TILE_HEIGHT};
use super::{Fetch, Fetcher};
use crate::artifact::{FetchError, Kind};
use crate::gomod::module;
use crate::gomod::note::Verifier;
use crate::gomod::pattern::PrefixPatterns;
use crate::gomod::tlog::Tile;

/// Most authenticated tiles kept in memory (8 KiB each at height 8).
const KEPT_TILES: usize = 4096;
/// The least time between two fetches of `latest` that a tile past the
/// accepted head causes.
const CATCH_UP_FLOOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Most proved lookups kept in memory (a record and a signed note each,
/// well under 1 KiB).
const KEPT_LOOKUPS: usize = 20_000;

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

/// A request this check will not pass on (the protocol layer validates
/// paths first, so reaching this is a bug of ours or a hostile caller).
fn refused(why: &str) -> FetchError {
    FetchError::NotFound { gone: false, message: format!("checksum database request refused: {why}") }
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
    /// Lookups already proved, by `module@version`: a record in the log
    /// never changes, so a version's `.mod`, `.zip` and the client's own
    /// lookup need one between them.
    proved: Mutex<HashMap<String, Proved>>,
    /// When a tile past the accepted head last made us fetch `latest`.
    caught_up_at: Mutex<Option<std::time::Instant>>,
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
            caught_up_at: Mutex::default(),
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
        Ok(self.look_up(module, version).map_err(|e| self.failure(e))?.record)
    }

    /// The proved lookup of `module@version`: from memory, or looked up in
    /// the database and proved, keeping it and the head.
    fn look_up(&self, module: &str, version: &str) -> Result<Proved, SumDbError> {
        let id = format!("{module}@{version}");
        if let Some(proved) = lock(&self.proved).get(&id) {
            return Ok(proved.clone());
        }
        let start = *self.known();
        let proved = self.client.lookup(module, version, start.as_ref())?;
        self.accept(start, proved.keep).map_err(SumDbError::Fetch)?;
        let mut kept = lock(&self.proved);
        if kept.len() >= KEPT_LOOKUPS {
            kept.clear();
        }
        kept.insert(id, proved.clone());
        Ok(proved)
    }

    /// The answer to a client's `/sumdb/<name>/<path>` (`path` as the
    /// protocol layer rebuilt it), verified as this check verifies its own
    /// lookups: `supported` from us (we verify what we relay), `latest` once
    /// its note opens and it extends the head accepted, a lookup once
    /// proved, a tile once authenticated against the head accepted (brought
    /// up to date first when the tile is past it). A private module's
    /// lookup is refused: its path never reaches the database.
    pub fn answer(&self, path: &str, kind: Kind) -> Result<Vec<u8>, FetchError> {
        match kind {
            Kind::SumSupported => Ok(Vec::new()),
            Kind::SumLatest => {
                let msg = self.client.source().get("latest", Kind::SumLatest)?;
                let offered = self.client.open_head(&msg).map_err(|e| self.failure(e))?;
                let start = *self.known();
                let keep = self.client.reconcile(start.as_ref(), offered).map_err(|e| self.failure(e))?;
                self.accept(start, keep)?;
                Ok(msg)
            }
            Kind::SumLookup => {
                let id = path.strip_prefix("lookup/").ok_or_else(|| refused("not a lookup"))?;
                let (m, v) = id.rsplit_once('@').ok_or_else(|| refused("lookup without a version"))?;
                let (module, version) = match (module::unescape_path(m), module::unescape_version(v)) {
                    (Ok(m), Ok(v)) => (m, v),
                    _ => return Err(refused("lookup path does not decode")),
                };
                if self.private.matches(&module) {
                    return Err(FetchError::NotFound {
                        gone: false,
                        message: format!(
                            "{module} is a private module (--private): never looked up in checksum database {}; \
                             list it in GONOSUMDB (or GOPRIVATE) for the go command",
                            self.name
                        ),
                    });
                }
                match self.look_up(&module, &version) {
                    Ok(proved) => Ok(proved.answer),
                    // The database has no such record: its answer, passed on.
                    Err(SumDbError::Fetch(e @ FetchError::NotFound { .. })) => Err(e),
                    Err(e) => Err(self.failure(e)),
                }
            }
            Kind::SumTile | Kind::SumPartialTile => {
                let tile = Tile::parse(path).ok_or_else(|| refused("not a tile path"))?;
                if tile.h != TILE_HEIGHT {
                    return Err(refused("tiles of this database are of height 8"));
                }
                let known = *self.known();
                let tried = match known {
                    Some(head) => self.client.tile(&tile, &head),
                    None => Err(SumDbError::NotInTree),
                };
                match tried {
                    Err(SumDbError::NotInTree) => {
                        // The client has seen a newer tree (from another
                        // replica): catch up, at most once per few seconds
                        // however many such tiles are asked for.
                        let due = {
                            let mut last = lock(&self.caught_up_at);
                            let due = last.is_none_or(|at| at.elapsed() >= CATCH_UP_FLOOR);
                            if due {
                                *last = Some(std::time::Instant::now());
                            }
                            due
                        };
                        if due {
                            self.answer("latest", Kind::SumLatest)?;
                        }
                        let head = (*self.known()).ok_or_else(|| refused("no tree head accepted"))?;
                        self.client.tile(&tile, &head).map_err(|e| self.failure(e))
                    }
                    tried => tried.map_err(|e| self.failure(e)),
                }
            }
            _ => Err(refused("not a checksum-database request")),
        }
    }

    /// Checks `got`, the `h1:` hash of the `kind` (`.zip` or `.mod`) of
    /// `module@version`, against its proved `record`.
    pub fn verdict(&self, module: &str, version: &str, kind: Kind, got: &str, record: &Record) -> Result<(), FetchError> {
        let expected = if kind == Kind::Zip { &record.zip } else { &record.go_mod };
        if got == expected {
            return Ok(());
        }
        let what = format!("{module}@{version} ({})", kind.label());
        log::error!(
            module = module, version = version, kind = kind.label();
            "SECURITY: {what}: the upstream's bytes hash to {got}, checksum database {} records {expected}; refused", self.name
        );
        Err(FetchError::ChecksumMismatch {
            what,
            recorded_by: format!("checksum database {}", self.name),
            expected: expected.clone(),
            got: got.to_string(),
        })
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
        // A name of its own: after a reload two checkers of one database may
        // write at once, and a shared temporary file could be torn.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.head_file.with_extension(format!("head.{}.{n}.tmp", std::process::id()));
        let written = std::fs::create_dir_all(self.head_file.parent().unwrap_or(&self.head_file))
            .and_then(|()| std::fs::write(&tmp, text))
            .and_then(|()| std::fs::rename(&tmp, &self.head_file));
        if let Err(e) = written {
            log::error!("keeping the accepted tree head of {} in {}: {e}", self.name, self.head_file.display());
        }
    }

    /// A database failure: the module cannot be verified, so it is not served.
    /// A tile past every head the database signs is not there at all.
    fn failure(&self, e: SumDbError) -> FetchError {
        match e {
            SumDbError::Fetch(FetchError::NotFound { message, .. }) => FetchError::Unavailable {
                upstream: format!("checksum database {}", self.name),
                message: format!("no record to verify against: {message}"),
            },
            SumDbError::Fetch(e) => e,
            SumDbError::NotInTree => FetchError::NotFound {
                gone: false,
                message: format!("tile beyond the latest tree head of checksum database {}", self.name),
            },
            e @ SumDbError::Fork { .. } => {
                log::error!("SECURITY: {e}");
                FetchError::Unavailable { upstream: format!("checksum database {}", self.name), message: e.to_string() }
            }
            e => FetchError::Unavailable { upstream: format!("checksum database {}", self.name), message: e.to_string() },
        }
    }
}
