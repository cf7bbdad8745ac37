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
use crate::resolve::{ResolveError, Resolved, Shard, ToOwner};
use crate::store::RecordKind;

/// What an owner's purge withdrew (module, version, kind), or why it could not.
pub type Purged = Result<Vec<(String, String, RecordKind)>, ResolveError>;

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
            Msg::Resolved { call, result } => {
                if let Some(tx) = self.pending.borrow_mut().remove(&call) {
                    // The asker may have gone away (client closed); that is fine.
                    let _ = tx.try_send(result);
                }
            }
            Msg::Purge { call, from, module, version } => {
                let shard = shard.clone();
                let purge = async move { shard.purge_owned(&module, version.as_deref()).await };
                self.answer(from, purge, move |result| Msg::Purged { call, result });
            }
            Msg::Purged { call, result } => {
                if let Some(tx) = self.pending_purges.borrow_mut().remove(&call) {
                    let _ = tx.try_send(result);
                }
            }
            Msg::Prefetch { call, from, key } => {
                let shard = shard.clone();
                self.answer(from, async move { shard.prefetch_owned(key).await }, move |outcome| Msg::Prefetched { call, outcome });
            }
            Msg::Prefetched { call, outcome } => {
                if let Some(tx) = self.pending_prefetches.borrow_mut().remove(&call) {
                    let _ = tx.try_send(outcome);
                }
            }
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

    fn next_call(&self) -> u64 {
        let call = self.next_call.get();
        self.next_call.set(call.wrapping_add(1));
        call
    }

    /// Purges `module` (or `module@version`) on its owner core `owner`
    /// (this one, or another over the mesh), answering with what went.
    pub async fn purge(&self, shard: &Shard, owner: usize, module: &str, version: Option<&str>) -> Purged {
        if owner == self.id {
            return shard.purge_owned(module, version).await;
        }
        let Some(peers) = &self.peers else { return Err(ResolveError::Internal("a module routed to another core with no mesh")) };
        let call = self.next_call();
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending_purges.borrow_mut().insert(call, tx);
        let msg = Msg::Purge { call, from: self.id, module: module.to_string(), version: version.map(str::to_string) };
        if peers.send_to(owner, msg).await.is_err() {
            self.pending_purges.borrow_mut().remove(&call);
            return Err(ResolveError::Internal("the owner core is not accepting work"));
        }
        rx.recv().await.unwrap_or(Err(ResolveError::Internal("the owner core dropped the purge")))
    }
}

impl ToOwner for Rc<Mesh> {
    async fn ask(&self, owner: usize, key: ArtifactKey) -> Resolved {
        let Some(peers) = &self.peers else { return Err(ResolveError::Internal("a key routed to another core with no mesh")) };
        let call = self.next_call();
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(call, tx);
        if peers.send_to(owner, Msg::Resolve { call, from: self.id, key }).await.is_err() {
            self.pending.borrow_mut().remove(&call);
            return Err(ResolveError::Internal("the owner core is not accepting work"));
        }
        rx.recv().await.unwrap_or(Err(ResolveError::Internal("the owner core dropped the request")))
    }

    async fn prefetch(&self, owner: usize, key: ArtifactKey) -> Prefetched {
        let Some(peers) = &self.peers else { return Prefetched::Failed };
        let call = self.next_call();
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending_prefetches.borrow_mut().insert(call, tx);
        if peers.send_to(owner, Msg::Prefetch { call, from: self.id, key }).await.is_err() {
            self.pending_prefetches.borrow_mut().remove(&call);
            return Prefetched::Failed;
        }
        rx.recv().await.unwrap_or(Prefetched::Failed)
    }
}
