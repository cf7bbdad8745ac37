//! Resolve: what happens after a request is parsed and before its bytes go
//! out. Given an [`ArtifactKey`], find the answer: stored already (read in
//! place from the owner's index), fresh in the owner's memory, remembered
//! as "not found", or filled once from the sources however many ask.
//!
//! Owns routing to the owner core ([`route`]), single-flight ([`flight`]),
//! every cache decision as a named function ([`policy`]), the bounded
//! memory maps ([`memory`]), the fill itself ([`fill`]: fetch through the
//! validating sources, store, publish) and the threads its fetches run on
//! ([`fetch_threads`]), the dependency-graph prefetch that
//! fills ahead of the go command ([`prefetch`]) and the per-core state
//! that ties them together ([`shard`]). The protocol reaches it through the small [`Resolve`]
//! trait, so protocol tests need no executors; the runtime's mesh reaches
//! other cores' shards through [`ToOwner`]. It never parses a request,
//! never knows HTTP statuses, and never touches a socket.

pub mod fetch_threads;
pub mod fill;
pub mod flight;
pub mod live;
pub mod memory;
pub mod policy;
pub mod prefetch;
pub mod route;
pub mod shard;

use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

pub use policy::{CacheSettings, HitRouting};
pub use shard::Shard;

use crate::artifact::fill::{FillFailure, Readable};
use crate::artifact::{ArtifactKey, Body, FetchError, Kind};
use crate::store::StoredBlob;

/// A resolved answer.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub body: Body,
    /// Served past its TTL because the upstream failed (stale-if-error).
    pub stale: bool,
    /// Which source answered, when this answer was just fetched (for the
    /// audit log): the upstream entry, or the shared tier.
    pub source: Option<Arc<str>>,
}

pub type Resolved = Result<Artifact, ResolveError>;

/// Why no answer could be given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// The sources' own answer or failure (not found, unreachable, invalid...).
    Fetch(FetchError),
    /// Our own failure (a lost job, a closed channel between cores, a
    /// panic): never blamed on an upstream.
    Internal(&'static str),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Fetch(e) => e.fmt(f),
            ResolveError::Internal(why) => write!(f, "internal error in gomodproxy: {why}"),
        }
    }
}

impl std::error::Error for ResolveError {}

impl From<FetchError> for ResolveError {
    fn from(e: FetchError) -> Self {
        ResolveError::Fetch(e)
    }
}

/// What the protocol asks of the resolve layer.
pub trait Resolve {
    /// An immutable artifact that is stored already, read in place where
    /// the request landed (no hop, no allocation). `None`: ask [`Resolve::resolve`].
    fn stored(&self, module: &str, version: &str, kind: Kind) -> Option<StoredBlob>;
    /// Anything else, answered on the key's owner core (a query too:
    /// [`Kind::Query`] is fetched once for all who ask at once, never cached).
    fn resolve(&self, key: ArtifactKey) -> impl Future<Output = Resolved>;
}

/// How a request reaches the shard of the core that owns its key (the
/// runtime's channel mesh; that core answers with [`Shard::resolve_owned`]).
pub trait ToOwner {
    fn ask(&self, owner: usize, key: ArtifactKey) -> impl Future<Output = Resolved>;
    /// Has `owner` prefetch `key` ([`Shard::prefetch_owned`]).
    fn prefetch(&self, owner: usize, key: ArtifactKey) -> impl Future<Output = prefetch::Prefetched>;
}

/// One core's [`Resolve`]: keys this core owns are answered by its own
/// shard, the rest cross to their owner through `to_owner`.
#[derive(Clone)]
pub struct CoreResolver<T> {
    shard: Rc<Shard>,
    to_owner: T,
}

impl<T: ToOwner> CoreResolver<T> {
    pub fn new(shard: Rc<Shard>, to_owner: T) -> CoreResolver<T> {
        CoreResolver { shard, to_owner }
    }

    /// This core's prefetch queue.
    pub fn prefetch(&self) -> &prefetch::Prefetch {
        self.shard.prefetch()
    }

    /// Has the owner of `key` prefetch it (see [`prefetch`]).
    pub async fn prefetch_one(&self, key: ArtifactKey) -> prefetch::Prefetched {
        let owner = route::owner_of_key(&key, self.shard.cores());
        if owner == self.shard.id() {
            self.shard.prefetch_owned(key).await
        } else {
            self.to_owner.prefetch(owner, key).await
        }
    }

    /// Spawns this core's prefetch workers in `queue` (a task queue of low shares).
    pub fn spawn_prefetch(&self, queue: glommio::TaskQueueHandle) -> Result<(), glommio::GlommioError<()>>
    where
        T: Clone + 'static,
    {
        for _ in 0..self.shard.prefetch_workers() {
            glommio::spawn_local_into(prefetch::work(self.clone()), queue)?.detach();
        }
        Ok(())
    }

    /// A go.mod was served: what it requires may be prefetched.
    fn served(&self, module: &str, version: &str, kind: Kind, bytes: &[u8]) {
        if kind == Kind::Mod {
            self.shard.after_go_mod_read(module, version, bytes);
        }
    }

    async fn resolve_once(&self, key: ArtifactKey) -> Resolved {
        let owner = route::owner_of_key(&key, self.shard.cores());
        if owner == self.shard.id() {
            self.shard.resolve_owned(key).await
        } else {
            self.shard.metrics().hops.bump();
            self.to_owner.ask(owner, key).await
        }
    }
}

impl<T: ToOwner> Resolve for CoreResolver<T> {
    fn stored(&self, module: &str, version: &str, kind: Kind) -> Option<StoredBlob> {
        let blob = self.shard.stored(module, version, kind)?;
        self.served(module, version, kind, blob.bytes());
        Some(blob)
    }

    /// A zip still arriving is handed out only once its first bytes are
    /// released, so a fill that fails before then still gets its
    /// requesters a status naming the reason rather than a connection cut
    /// short (and one whose stream a fallback upstream started over waits
    /// for that fallback's fill).
    async fn resolve(&self, key: ArtifactKey) -> Resolved {
        // A fill that starts over can fail once more, with its reason; a
        // third round only guards against a bug looping here.
        for _ in 0..3 {
            let resolved = self.resolve_once(key.clone()).await;
            match &resolved {
                Ok(Artifact { body: Body::Stored(blob), .. }) => self.served(&key.module, &key.version, key.kind, blob.bytes()),
                Ok(Artifact { body: Body::Memory { bytes, .. }, .. }) => self.served(&key.module, &key.version, key.kind, bytes),
                _ => {}
            }
            let Ok(Artifact { body: Body::Filling(stream), .. }) = &resolved else { return resolved };
            match stream.progress.readable(0).await {
                Readable::UpTo(_) | Readable::End => return resolved,
                Readable::Failed => match stream.progress.failure() {
                    Some(FillFailure::Source(e)) => return Err(ResolveError::Fetch(e)),
                    Some(FillFailure::Internal(why)) => return Err(ResolveError::Internal(why)),
                    // Not final: a fallback upstream starts over; join its fill.
                    None => {}
                },
            }
        }
        Err(ResolveError::Internal("the fill restarted too often"))
    }
}
