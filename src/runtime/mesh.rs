//! The cross-core request/reply: how a request that landed on one core
//! reaches the shard of the core that owns its key, and how the answer
//! comes back.
//!
//! Each pair of cores is joined by a bounded glommio channel (a full one
//! makes the sender wait: that is the back-pressure we want). A request
//! carries a call number; the owner resolves it on its own shard and sends
//! the result back under that number. Owns the messages and the table of
//! calls waiting for their answer; it never decides anything about the
//! request itself (the owner's shard does).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;

use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalSender};

use crate::artifact::ArtifactKey;
use crate::resolve::prefetch::Prefetched;
use crate::resolve::shard::PurgeOutcome;
use crate::resolve::{ResolveError, Resolved, Shard, ToOwner};

/// What an owner's purge did ([`PurgeOutcome`]), or why it could not.
pub type Purged = Result<PurgeOutcome, ResolveError>;

/// What crosses between cores.
pub enum Msg {
    /// Resolve `key` on your shard and answer `from` under `call`.
    Resolve { call: u64, from: usize, key: ArtifactKey },
    /// The answer to call `call`.
    Resolved { call: u64, result: Resolved },
    /// Purge `module` (or `module@version`) from your shard (the admin
    /// listener's `POST /purge`) and answer `from` under `call`.
    Purge { call: u64, from: usize, module: String, version: Option<String> },
    /// The answer to purge call `call`.
    Purged { call: u64, result: Purged },
    /// Prefetch `key` on your shard and tell `from` under `call` how it went.
    Prefetch { call: u64, from: usize, key: ArtifactKey },
    /// How prefetch call `call` went.
    Prefetched { call: u64, outcome: Prefetched },
}

/// Why a call to another core got no answer.
enum CallFailed {
    /// A single core: there is no other to ask (a routing bug).
    NoMesh,
    NotAccepting,
    /// The owner's end went away without answering.
    Dropped,
}

/// Hands the answer to call `call` to whoever waits for it in `pending`.
fn deliver<T>(pending: &RefCell<HashMap<u64, LocalSender<T>>>, call: u64, answer: T) {
    if let Some(tx) = pending.borrow_mut().remove(&call) {
        // The asker may have gone away (client closed); that is fine.
        let _ = tx.try_send(answer);
    }
}

/// One core's end of the mesh.
pub struct Mesh {
    id: usize,
    /// `None` with a single core: every key is owned here, nothing crosses.
    peers: Option<Senders<Msg>>,
    /// Calls this core sent that still wait for their answer.
    pending: RefCell<HashMap<u64, LocalSender<Resolved>>>,
    /// Purges this core asked another for, waiting for their answer.
    pending_purges: RefCell<HashMap<u64, LocalSender<Purged>>>,
    /// Prefetches this core's workers asked another core for.
    pending_prefetches: RefCell<HashMap<u64, LocalSender<Prefetched>>>,
    next_call: Cell<u64>,
}

impl Mesh {
    pub fn new(id: usize, peers: Option<Senders<Msg>>) -> Rc<Mesh> {
        Rc::new(Mesh {
            id,
            peers,
            pending: RefCell::default(),
            pending_purges: RefCell::default(),
            pending_prefetches: RefCell::default(),
            next_call: Cell::new(0),
        })
    }

    /// Serves messages from every peer for the life of the core: requests
    /// are resolved on `shard`, answers go to the call that waits for them.
    pub fn listen(self: &Rc<Self>, receivers: &mut Receivers<Msg>, shard: Rc<Shard>) {
        for (_, rx) in receivers.streams() {
            let mesh = self.clone();
            let shard = shard.clone();
            glommio::spawn_local(async move {
                while let Some(msg) = rx.recv().await {
                    mesh.on_message(msg, &shard);
                }
            })
            .detach();
        }
    }

    fn on_message(self: &Rc<Self>, msg: Msg, shard: &Rc<Shard>) {
        match msg {
            Msg::Resolve { call, from, key } => {
                let shard = shard.clone();
                self.answer(from, async move { shard.resolve_owned(key).await }, move |result| Msg::Resolved { call, result });
            }
            Msg::Resolved { call, result } => deliver(&self.pending, call, result),
            Msg::Purge { call, from, module, version } => {
                let shard = shard.clone();
                let purge = async move { shard.purge_owned(&module, version.as_deref()).await };
                self.answer(from, purge, move |result| Msg::Purged { call, result });
            }
            Msg::Purged { call, result } => deliver(&self.pending_purges, call, result),
            Msg::Prefetch { call, from, key } => {
                let shard = shard.clone();
                self.answer(from, async move { shard.prefetch_owned(key).await }, move |outcome| Msg::Prefetched { call, outcome });
            }
            Msg::Prefetched { call, outcome } => deliver(&self.pending_prefetches, call, outcome),
        }
    }

    /// Runs `work` (a request from core `from`) on this core, detached, and
    /// sends `from` its answer as `reply` makes it.
    fn answer<T: 'static>(self: &Rc<Self>, from: usize, work: impl Future<Output = T> + 'static, reply: impl FnOnce(T) -> Msg + 'static) {
        let mesh = self.clone();
        glommio::spawn_local(async move {
            let answer = reply(work.await);
            if let Some(peers) = &mesh.peers {
                let _ = peers.send_to(from, answer).await;
            }
        })
        .detach();
    }

    /// Sends `make(call, from)` to core `owner` and waits for the answer
    /// [`Mesh::on_message`] hands over through `pending` under that call.
    async fn call<T>(
        &self,
        pending: &RefCell<HashMap<u64, LocalSender<T>>>,
        owner: usize,
        make: impl FnOnce(u64, usize) -> Msg,
    ) -> Result<T, CallFailed> {
        let Some(peers) = &self.peers else { return Err(CallFailed::NoMesh) };
        let call = self.next_call.get();
        self.next_call.set(call.wrapping_add(1));
        let (tx, rx) = local_channel::new_bounded(1);
        pending.borrow_mut().insert(call, tx);
        if peers.send_to(owner, make(call, self.id)).await.is_err() {
            pending.borrow_mut().remove(&call);
            return Err(CallFailed::NotAccepting);
        }
        rx.recv().await.ok_or(CallFailed::Dropped)
    }

    /// Purges `module` (or `module@version`) on its owner core `owner`
    /// (this one, or another over the mesh), answering with what went.
    pub async fn purge(&self, shard: &Shard, owner: usize, module: &str, version: Option<&str>) -> Purged {
        if owner == self.id {
            return shard.purge_owned(module, version).await;
        }
        let (module, version) = (module.to_string(), version.map(str::to_string));
        match self.call(&self.pending_purges, owner, |call, from| Msg::Purge { call, from, module, version }).await {
            Ok(purged) => purged,
            Err(CallFailed::NoMesh) => Err(ResolveError::Internal("a module routed to another core with no mesh")),
            Err(CallFailed::NotAccepting) => Err(ResolveError::Internal("the owner core is not accepting work")),
            Err(CallFailed::Dropped) => Err(ResolveError::Internal("the owner core dropped the purge")),
        }
    }
}

impl ToOwner for Rc<Mesh> {
    async fn ask(&self, owner: usize, key: ArtifactKey) -> Resolved {
        match self.call(&self.pending, owner, |call, from| Msg::Resolve { call, from, key }).await {
            Ok(resolved) => resolved,
            Err(CallFailed::NoMesh) => Err(ResolveError::Internal("a key routed to another core with no mesh")),
            Err(CallFailed::NotAccepting) => Err(ResolveError::Internal("the owner core is not accepting work")),
            Err(CallFailed::Dropped) => Err(ResolveError::Internal("the owner core dropped the request")),
        }
    }

    async fn prefetch(&self, owner: usize, key: ArtifactKey) -> Prefetched {
        self.call(&self.pending_prefetches, owner, |call, from| Msg::Prefetch { call, from, key }).await.unwrap_or(Prefetched::Failed)
    }
}
