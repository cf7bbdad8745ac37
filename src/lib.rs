//! gomodproxy: a thread-per-core Go module proxy.
//!
//! The layers, top to bottom; each module uses only modules below it
//! (`tests/layering.rs` keeps it so, from [`LAYERS`]):
//!
//! - [`runtime`]: executors, placement, listeners, accept loops, the
//!   cross-core mesh, the drain; where the layers are put together.
//! - [`config`]: flags and settings, validated.
//! - [`http`]: the wire (parsing, limits, keep-alive, zero-copy sending).
//! - [`goproxy`]: the protocol: endpoints, replies and their statuses.
//! - [`resolve`]: routing to the owner core, single-flight, cache policy, the fill.
//! - [`shared`]: the tier many nodes share (an object store), its
//!   cross-node lease; a source and a sink of the fill.
//! - [`upstream`]: the sources a miss is filled from, and their validation.
//! - [`artifact`]: the shared vocabulary: keys, kinds, bodies, fill primitives.
//! - [`store`]: segment files and the lock-free index.
//! - [`gomod`]: Go's module rules, pure functions.
//! - [`metrics`]: per-core counters.
//!
//! README.md draws the path of a hit and of a miss through them.

pub mod artifact;
pub mod config;
pub mod edge;
pub mod gomod;
pub mod goproxy;
pub mod http;
pub mod metrics;
pub mod resolve;
pub mod runtime;
pub mod shared;
pub mod store;
pub mod upstream;

/// The top-level modules from the top layer down. A module may use
/// (`crate::…`) only modules listed after it.
pub const LAYERS: &[&str] =
    &["runtime", "config", "http", "edge", "goproxy", "resolve", "shared", "upstream", "artifact", "store", "gomod", "metrics"];
