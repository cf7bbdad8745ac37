//! Shared harness for the end-to-end tests (`mod common;` in each test file).
//!
//! Pieces:
//! * [`Fixture`] / [`Module`]: a declarative list of Go modules rendered into a
//!   GOPROXY file-layout tree (the layout of `$GOMODCACHE/cache/download`),
//!   usable as `--upstream file://...` or directly as `GOPROXY=file://...`.
//! * [`Server`]: the `gomodproxy` binary under test, spawned on `127.0.0.1:0`.
//! * [`GoEnv`]: the real `go` command, run hermetically against a proxy URL.
//! * [`RawConn`] / [`HttpResponse`]: a tiny HTTP/1.1 client over a bare
//!   `TcpStream`, so protocol tests control every byte (pipelining, HEAD,
//!   malformed requests).
//! * [`CountingUpstream`]: an HTTP server (std threads) that serves a fixture
//!   tree in GOPROXY layout, counts requests per path and can slow down or
//!   hold back `.zip` bodies.
//! * [`SignedDb`]: a real, signed checksum database (golang.org/x/mod/sumdb) of fixture modules.
//! * [`S3Server`]: a real S3-compatible server (versitygw) over a temp directory.
//!
//! One submodule per concern: `fixture` (fixture trees, path helpers),
//! `sumdb`, `s3`, `server` (the process under test, `run_with_timeout`,
//! `wait_until`, metrics), `go`, `http_client` and `upstream`. Everything is
//! re-exported here, so tests just `use common::*`.
//!
//! Everything binds to loopback only and nothing reaches the network.
//!
//! Not every test file uses every helper; the allow keeps per-file dead-code
//! warnings from drowning real ones.
#![allow(dead_code)]

pub mod ca;
pub mod fixture;
pub mod go;
pub mod http_client;
pub mod s3;
pub mod server;
pub mod sumdb;
pub mod upstream;

// A test file that uses nothing from one of the modules must not warn
// about its re-export either (the same reason as the dead-code allow).
#[allow(unused_imports)]
pub use self::{ca::*, fixture::*, go::*, http_client::*, s3::*, server::*, sumdb::*, upstream::*};
