//! gomodproxy: a thread-per-core Go module proxy.
//!
//! Data flows one way: socket → [`http`] (wire) → [`goproxy`] (protocol) →
//! [`runtime`] (routing to the owning core) → [`store`] / [`upstream`] →
//! back out through [`http`]. See README.md for the picture.

pub mod config;
pub mod gomod;
pub mod goproxy;
pub mod http;
pub mod metrics;
pub mod runtime;
pub mod store;
pub mod upstream;
