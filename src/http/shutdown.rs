//! A connection's view of a drain, handed to it explicitly (as mini-redis
//! hands each connection its `Shutdown`) rather than read from a global.
//!
//! The runtime begins the drain on SIGTERM/SIGINT; from then on each
//! connection finishes the response it is sending and closes instead of
//! waiting for another request. Owns that one flag; it never closes a
//! socket itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Cloned into every core and connection; all clones see one drain.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    draining: Arc<AtomicBool>,
}

impl Shutdown {
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
