//! Single-flight: one fill per missing artifact on its owner core, however
//! many ask, and the hand-out of a zip that started streaming to everyone
//! who asks while it is still arriving.
//!
//! A type of its own (as pingora-cache keeps its cache lock apart from the
//! cache): it owns who waits for which fill and nothing else. It never
//! fetches, stores or decides what is cached. Lives on one executor
//! (`RefCell`, local channels): the owner core is the only one to touch it.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use super::{Artifact, Resolved};
use crate::artifact::fill::{FillStream, Progress};
use crate::artifact::{ArtifactKey, Body};

/// One fill under way: who waits for its result, and, once a zip is
/// being streamed, the progress later requesters read from at once.
#[derive(Default)]
struct Flight {
    waiters: Vec<LocalSender<Resolved>>,
    streaming: Option<Arc<Progress>>,
}

/// How a requester joined the fill of its key.
pub enum Joined {
    /// First to ask: the caller starts the fill (and must [`SingleFlight::land`]
    /// it), then waits like everyone else.
    Leader(LocalReceiver<Resolved>),
    /// A fill is under way: wait for its result.
    Waiter(LocalReceiver<Resolved>),
    /// The fill is streaming a zip: read it as it arrives.
    Streaming(FillStream),
}

#[derive(Default)]
pub struct SingleFlight {
    flights: RefCell<HashMap<ArtifactKey, Flight>>,
}

impl SingleFlight {
    /// Whether a fill of `key` is under way.
    pub fn in_flight(&self, key: &ArtifactKey) -> bool {
        self.flights.borrow().contains_key(key)
    }

    pub fn join(&self, key: &ArtifactKey) -> Joined {
        let (tx, rx) = local_channel::new_bounded(1);
        match self.flights.borrow_mut().entry(key.clone()) {
            // A stream that failed while a fallback upstream goes on
            // filling has no stream any more: wait for that fill's result.
            Entry::Occupied(mut flight) => match flight.get().streaming.as_ref().and_then(Progress::stream) {
                Some(stream) => Joined::Streaming(stream),
                None => {
                    flight.get_mut().waiters.push(tx);
                    Joined::Waiter(rx)
                }
            },
            Entry::Vacant(slot) => {
                slot.insert(Flight { waiters: vec![tx], streaming: None });
                Joined::Leader(rx)
            }
        }
    }

    /// Hands a zip that started arriving to everyone waiting for it, and
    /// to everyone who joins until the fill lands. False when there is
    /// nothing to hand out (the fill failed meanwhile, or is not in flight).
    pub fn announce(&self, key: &ArtifactKey, progress: &Arc<Progress>) -> bool {
        let Some(stream) = progress.stream() else { return false };
        let waiters = match self.flights.borrow_mut().get_mut(key) {
            Some(flight) => {
                flight.streaming = Some(progress.clone());
                std::mem::take(&mut flight.waiters)
            }
            None => return false,
        };
        for w in waiters {
            let _ = w.try_send(Ok(Artifact { body: Body::Filling(stream.clone()), stale: false, source: None }));
        }
        true
    }

    /// The fill of `key` is over: everyone still waiting gets `result`,
    /// and the next requester starts afresh.
    pub fn land(&self, key: &ArtifactKey, result: &Resolved) {
        let flight = self.flights.borrow_mut().remove(key).unwrap_or_default();
        for w in flight.waiters {
            // A waiter may have gone away (its client closed); that is fine.
            let _ = w.try_send(result.clone());
        }
    }
}
