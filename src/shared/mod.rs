//! The shared tier: one object store (S3 or an S3-compatible server, GCS,
//! Azure Blob, or a directory) that every node's fills read from and write
//! to, below each node's own segment store, so a fleet fetches each
//! artifact from the upstream once and a new node starts warm.
//!
//! Owns the bucket's layout (`PREFIX/MODULE/@v/VERSION.KIND`, escaped as
//! the GOPROXY protocol escapes them: the bucket is itself a GOPROXY file
//! tree an operator can list, copy or serve), the cross-node lease that
//! makes an upstream fill single-flight over the fleet ([`lease`]), the
//! tier's breaker, and the small tokio runtime the object-store client
//! needs. Everything here is blocking from the caller's side and runs on
//! the executors' blocking pools, never on an executor. It never decides
//! whether something may be stored (the fill validates and verifies first),
//! never touches the local store, and never fails a request on its own
//! account: every failure of the tier is reported as "not available" and
//! the fill goes on to the upstream.

pub mod lease;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};

use crate::artifact::fill::Progress;
use crate::artifact::Kind;
use crate::metrics::CoreMetrics;
use crate::upstream::breaker::{Admission, Breaker};

/// `--shared-store` and the settings that go with it, checked by `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSettings {
    /// `s3://BUCKET/PREFIX`, `gs://…`, `az://…` or `file:///DIR`, with
    /// builder settings (`endpoint`, `region`, …) as query parameters.
    pub url: String,
    /// How long a fill's lease holds without renewal (`--shared-lease`).
    pub lease: Duration,
    /// Longest a node waits for another node's fill before filling itself.
    pub wait_limit: Duration,
    /// This node's name in lease objects (logs and takeovers name it).
    pub node: String,
    /// Longest wait for a connection to the object store.
    pub connect_timeout: Duration,
    /// Longest pause in any one answer of the store (its first byte included).
    pub read_timeout: Duration,
    /// Most one object-store request may take (a large zip's upload included).
    pub request_timeout: Duration,
    /// Consecutive failures that open the tier's breaker (at least 1) and
    /// how long it then stays open.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

#[derive(Debug)]
pub enum SharedError {
    /// The URL names no store we can build, or a setting it cannot take.
    Config(String),
    /// The store could not be asked or did not answer usably (down, slow,
    /// 5xx, credentials refused): the fill goes on without it.
    Unavailable(String),
    /// An object that cannot be what it claims (larger than its kind may
    /// be, shorter than its announced size).
    Invalid(String),
}

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SharedError::Config(m) => write!(f, "--shared-store: {m}"),
            SharedError::Unavailable(m) => write!(f, "shared store unavailable: {m}"),
            SharedError::Invalid(m) => write!(f, "shared store object refused: {m}"),
        }
    }
}

impl std::error::Error for SharedError {}

/// What the tier says about an artifact a fill needs.
pub enum Obtained {
    /// Another node stored it: its bytes (streamed to `progress` as they
    /// came, for a zip), for the fill to validate and keep, and which copy
    /// it was (for [`SharedTier::replace`], should it be refused).
    Read(Bytes, SharedCopy),
    /// Nobody has it and this node holds the fleet's lease to fetch it:
    /// fill from the upstream, then [`lease::Lease::publish`].
    Leased(lease::Lease),
    /// The tier cannot help now (down, breaker open, a wait too long):
    /// fill from the upstream alone.
    Bypass,
}

/// One version of one object of the tier, as it was read.
pub struct SharedCopy {
    key: ObjectPath,
    version: object_store::UpdateVersion,
}

/// The shared tier of one process: the client, its runtime and its breaker.
pub struct SharedTier {
    store: Arc<dyn ObjectStore>,
    /// Every key lives under this (the URL's path).
    prefix: String,
    /// object_store's clients are tokio's: a runtime of their own, with two
    /// workers, so no executor ever runs (or waits on) tokio. It lives as
    /// long as the process: a background upload may hold the last handle
    /// on the tier, and a runtime must not be dropped on its own worker.
    runtime: &'static tokio::runtime::Runtime,
    settings: SharedSettings,
    breaker: Breaker,
    /// Names this process's leases: node name, pid and a random part, so a
    /// restarted node never mistakes its predecessor's lease for its own.
    token: String,
    /// Where the store is, for logs (the URL without its query).
    name: String,
}

impl SharedTier {
    /// Builds the client; it touches the network only on the first request.
    pub fn open(settings: SharedSettings) -> Result<Arc<SharedTier>, SharedError> {
        let (store, prefix, name) = build_store(&settings)?;
        let runtime = client_runtime()?;
        let token = format!("{}/{}/{:016x}", settings.node, std::process::id(), random_u64());
        let breaker = Breaker::new(settings.breaker_failures, settings.breaker_cooldown);
        Ok(Arc::new(SharedTier { store, prefix, runtime, settings, breaker, token, name }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kinds the tier holds: a version's files, which never change.
    /// (`list`, `@latest` and checksum-database answers change or are
    /// verified otherwise; each node asks for them itself.)
    pub fn keeps(kind: Kind) -> bool {
        matches!(kind, Kind::Info | Kind::Mod | Kind::Zip)
    }

    /// Where `module@version`'s `kind` file lives below the prefix, as the
    /// GOPROXY protocol names it: `MODULE/@v/VERSION.KIND`, escaped.
    pub fn key(module: &str, version: &str, kind: Kind) -> Result<String, SharedError> {
        if !SharedTier::keeps(kind) {
            return Err(SharedError::Invalid(format!("the shared tier keeps no {}", kind.label())));
        }
        crate::upstream::Fetch { module, version, kind }.protocol_path().map_err(|e| SharedError::Invalid(e.to_string()))
    }

    fn path(&self, below: &str) -> ObjectPath {
        // `from` (not `parse`): escaped module paths hold only characters
        // object_store keeps as they are, and a prefix is split on `/`.
        ObjectPath::from_iter(self.prefix.split('/').chain(below.split('/')).filter(|p| !p.is_empty()))
    }

    /// The object of `module@version`'s `kind` file if another node stored
    /// it; else this node's lease to fetch it (waiting, boundedly, while
    /// another node holds one); else [`Obtained::Bypass`]. Zips are
    /// streamed to `progress` as they are read.
    pub fn obtain(
        self: &Arc<Self>,
        module: &str,
        version: &str,
        kind: Kind,
        progress: &Progress,
        metrics: &'static CoreMetrics,
    ) -> Obtained {
        if let Admission::Skip { .. } = self.breaker.admit(Instant::now()) {
            metrics.shared_skipped.bump();
            return Obtained::Bypass;
        }
        let key = match SharedTier::key(module, version, kind) {
            Ok(k) => k,
            Err(e) => {
                // Not the store's failure, but this may be the breaker's probe: settle it.
                self.note(false);
                log::warn!(module = module, version = version, kind = kind.label(); "{module}@{version} ({}): {e}", kind.label());
                return Obtained::Bypass;
            }
        };
        let subject = lease::Subject { module: module.to_string(), version: version.to_string(), kind };
        let outcome = lease::obtain(self, &self.path(&key), self.path(&format!("_leases/{key}")), &subject, progress, metrics);
        match &outcome {
            Err(SharedError::Unavailable(_)) => self.note(true),
            Err(_) | Ok(_) => self.note(false),
        }
        match outcome {
            Ok(obtained) => obtained,
            Err(e) => {
                metrics.shared_errors.bump();
                log::warn!(
                    module = module, version = version, kind = kind.label();
                    "{module}@{version} ({}): {e}; filling from the upstream alone", kind.label()
                );
                if progress.is_streaming() {
                    progress.void_stream();
                }
                Obtained::Bypass
            }
        }
    }

    /// Records an outcome with the breaker, logging when it opens.
    fn note(&self, failed: bool) {
        // The store is ours, not a path a client chose: every failure counts
        // (each is told apart from the last).
        static FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let failed = failed.then(|| FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        if self.breaker.record(Instant::now(), failed) {
            log::warn!(
                "shared store {}: {} failures in a row; skipping it for {:?}",
                self.name,
                self.settings.breaker_failures,
                self.settings.breaker_cooldown
            );
        }
    }

    /// Reads `key` whole, or `None` if it does not exist. A zip (of an
    /// announced size within the streaming bounds) is published to
    /// `progress` as it arrives.
    async fn read(
        &self,
        key: &ObjectPath,
        kind: Kind,
        progress: &Progress,
        metrics: &CoreMetrics,
    ) -> Result<Option<(Bytes, SharedCopy)>, SharedError> {
        let started = Instant::now();
        let got = match self.store.get(key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        let size = got.meta.size;
        let copy = SharedCopy {
            key: key.clone(),
            version: object_store::UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() },
        };
        let cap = kind.size_cap();
        if size > cap {
            return Err(SharedError::Invalid(format!("{key}: {size} bytes, more than a {} may have ({cap})", kind.label())));
        }
        let mut streaming = if kind == Kind::Zip { progress.start(size) } else { None };
        let mut body = Vec::new();
        if streaming.is_none() {
            body.reserve(usize::try_from(size).unwrap_or(0));
        }
        let mut received = 0u64;
        let mut chunks = got.into_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(unavailable)?;
            received += chunk.len() as u64;
            if received > size {
                return Err(SharedError::Invalid(format!("{key}: longer than its announced {size} bytes")));
            }
            match &mut streaming {
                Some(writer) => {
                    if !writer.append(&chunk) {
                        return Err(SharedError::Invalid(format!("{key}: longer than its announced {size} bytes")));
                    }
                    progress.note_published();
                }
                None => body.extend_from_slice(&chunk),
            }
        }
        let body = match streaming {
            Some(writer) => progress.finish_writing(writer),
            None => Some(Bytes::from(body)),
        };
        let body = body
            .filter(|b| b.len() as u64 == size)
            .ok_or_else(|| SharedError::Invalid(format!("{key}: shorter than its announced {size} bytes")))?;
        metrics.shared_hits.bump();
        metrics.shared_read_bytes.add(size);
        metrics.shared_read_micros.add(started.elapsed().as_micros() as u64);
        Ok(Some((body, copy)))
    }

    /// Deletes the tier's copies of `module@version` (`.info`, `.mod`,
    /// `.zip`), or of every version of `module`, so that a purge is not
    /// undone by the next fill reading them back. Blocking. Returns how
    /// many deletes the store accepted: S3 accepts one for a key that is
    /// not there, the others answer "not found", which is not counted.
    pub fn purge(&self, module: &str, version: Option<&str>) -> Result<usize, SharedError> {
        let keys: Vec<ObjectPath> = match version {
            Some(v) => [Kind::Info, Kind::Mod, Kind::Zip]
                .into_iter()
                .map(|kind| SharedTier::key(module, v, kind).map(|k| self.path(&k)))
                .collect::<Result<_, _>>()?,
            None => {
                let m = crate::gomod::module::escape_path(module).map_err(|e| SharedError::Invalid(e.to_string()))?;
                let prefix = self.path(&format!("{m}/@v"));
                self.runtime.block_on(async {
                    let mut listed = self.store.list(Some(&prefix));
                    let mut keys = Vec::new();
                    while let Some(meta) = listed.next().await {
                        keys.push(meta.map_err(unavailable)?.location);
                    }
                    Ok::<_, SharedError>(keys)
                })?
            }
        };
        self.runtime.block_on(async {
            let mut deleted = 0;
            for key in &keys {
                match self.store.delete(key).await {
                    Ok(()) => deleted += 1,
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(unavailable(e)),
                }
            }
            Ok(deleted)
        })
    }

    /// Replaces a copy the fill refused (damaged, or not what the checksum
    /// database or a first download says) with the bytes it checked
    /// instead, in the background, and only if the object is still that
    /// copy (`If-Match`): a copy another node replaced meanwhile stands.
    pub fn replace(self: &Arc<Self>, refused: SharedCopy, body: Bytes, metrics: &'static CoreMetrics) {
        let tier = self.clone();
        self.runtime.spawn(async move {
            match tier.put_if_unchanged(&refused.key, refused.version, PutPayload::from_bytes(body)).await {
                Ok(Some(_)) => {
                    metrics.shared_writes.bump();
                    log::warn!("{}: the refused copy in the shared store is replaced by the checked one", refused.key);
                }
                Ok(None) => {}
                Err(e) => {
                    metrics.shared_errors.bump();
                    log::warn!("{}: could not replace the refused copy in the shared store: {e}", refused.key);
                }
            }
        });
    }

    /// Replaces `key` if it is still at `version` (`If-Match`). `None`: it
    /// is not (another node changed or removed it). Stores without
    /// conditional updates (a directory) are overwritten: they are one
    /// host's, where the tier only spares the upstream.
    async fn put_if_unchanged(
        &self,
        key: &ObjectPath,
        version: object_store::UpdateVersion,
        payload: PutPayload,
    ) -> Result<Option<object_store::PutResult>, SharedError> {
        let opts = PutOptions { mode: PutMode::Update(version), ..Default::default() };
        match self.store.put_opts(key, payload.clone(), opts).await {
            Ok(put) => Ok(Some(put)),
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. } | object_store::Error::NotFound { .. },
            ) => Ok(None),
            Err(object_store::Error::NotImplemented { .. }) => {
                self.store.put_opts(key, payload, PutOptions::default()).await.map(Some).map_err(unavailable)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Writes `body` under `key` unless an object is there already (two
    /// writers can never leave different bytes). True when this wrote it.
    async fn put_new(&self, key: &ObjectPath, body: Bytes) -> Result<bool, SharedError> {
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(key, PutPayload::from_bytes(body), opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// The one runtime of the process's object-store clients (a reload that
/// builds a new client reuses it), started on first use.
fn client_runtime() -> Result<&'static tokio::runtime::Runtime, SharedError> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gomodproxy-shared")
        .enable_all()
        .build()
        .map_err(|e| SharedError::Config(format!("starting its client runtime: {e}")))?;
    // Two threads racing here: one runtime wins, the other is dropped
    // (outside any runtime, where that is allowed).
    Ok(RUNTIME.get_or_init(|| built))
}

/// Any object-store failure other than the answers we act on.
fn unavailable(e: object_store::Error) -> SharedError {
    // object_store's messages carry the cause chain on one line; keep it
    // short enough for a log line.
    let mut text = e.to_string();
    if text.len() > 400 {
        let mut end = 400;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    SharedError::Unavailable(text)
}

/// A random 64-bit value for lease tokens (no generator dependency: the
/// standard library's randomly seeded hasher is random enough here).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish()
}

/// The client for `settings.url`, the key prefix below it, and a name for logs.
fn build_store(settings: &SharedSettings) -> Result<(Arc<dyn ObjectStore>, String, String), SharedError> {
    let url = url::Url::parse(&settings.url).map_err(|e| SharedError::Config(format!("{}: {e}", settings.url)))?;
    let mut base = url.clone();
    base.set_query(None);
    base.set_fragment(None);
    let name = base.to_string();
    let options: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let prefix = url.path().trim_matches('/').to_string();
    let client = object_store::ClientOptions::new()
        .with_connect_timeout(settings.connect_timeout)
        .with_read_timeout(settings.read_timeout)
        .with_timeout(settings.request_timeout)
        // An endpoint given as http:// (an on-premises server on a trusted
        // network, or a test's) is meant to be used as given.
        .with_allow_http(options.iter().any(|(k, v)| k.contains("endpoint") && v.starts_with("http://")));
    // A failing store must cost a fill little: one quick retry, never the
    // client's default of minutes.
    let retry = object_store::RetryConfig {
        max_retries: 1,
        retry_timeout: Duration::from_secs(5),
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            base: 2.0,
        },
    };
    let bad = |key: &str, e: &dyn std::fmt::Display| SharedError::Config(format!("{key}: {e}"));
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => {
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(name.clone()).with_client_options(client).with_retry(retry);
            for (k, v) in &options {
                b = b.with_config(k.parse().map_err(|e| bad(k, &e))?, v);
            }
            Arc::new(b.build().map_err(|e| bad(&name, &e))?)
        }
        "gs" => {
            let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(name.clone())
                .with_client_options(client)
                .with_retry(retry);
            for (k, v) in &options {
                b = b.with_config(k.parse().map_err(|e| bad(k, &e))?, v);
            }
            Arc::new(b.build().map_err(|e| bad(&name, &e))?)
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut b =
                object_store::azure::MicrosoftAzureBuilder::from_env().with_url(name.clone()).with_client_options(client).with_retry(retry);
            for (k, v) in &options {
                b = b.with_config(k.parse().map_err(|e| bad(k, &e))?, v);
            }
            Arc::new(b.build().map_err(|e| bad(&name, &e))?)
        }
        "file" => {
            if !options.is_empty() {
                return Err(SharedError::Config(format!("{name}: a file:// store takes no settings")));
            }
            let dir = url.to_file_path().map_err(|()| SharedError::Config(format!("{name}: not a local directory")))?;
            if !dir.is_dir() {
                return Err(SharedError::Config(format!("{}: no such directory", dir.display())));
            }
            let local = object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(&name, &e))?;
            // The directory is the root: no prefix below it.
            return Ok((Arc::new(local), String::new(), name));
        }
        other => return Err(SharedError::Config(format!("{name}: unknown scheme {other}:// (want s3://, gs://, az:// or file://)"))),
    };
    // The bucket (or container) is the URL's host, its path the prefix.
    let prefix = if url.host_str().is_some() { prefix } else { String::new() };
    Ok((store, prefix, name))
}
