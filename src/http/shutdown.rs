//! A connection's view of a drain, handed to it explicitly (as mini-redis
//! hands each connection its `Shutdown`) rather than read from a global.
//!
//! The runtime begins the drain on SIGTERM/SIGINT; from then on each
//! connection finishes the response it is sending and closes instead of
//! waiting for another request. Owns that one flag; it never closes a
//! socket itself.

use std::sync::atomic::{AtomicBool, Ordering};

/// Copied into every core and connection; all copies see one drain. The
/// flag is leaked once at start-up, so handing it to a connection touches
/// no reference count shared between cores.
#[derive(Clone, Copy, Debug)]
pub struct Shutdown {
    draining: &'static AtomicBool,
}

impl Shutdown {
    /// One drain flag for the life of the process.
    pub fn leak() -> Shutdown {
        Shutdown { draining: Box::leak(Box::new(AtomicBool::new(false))) }
    }

    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
