//! loadgen: the load generator behind gomodproxy's capacity numbers.
//!
//! Layout: `cli` (flags, help) → `plan` (validated targets, request source,
//! how connections are spread) → `run`/`search`/`compare`/`hold` (the modes)
//! → `procs` (worker processes) → `engine` (epoll worker threads) over `sys`
//! (syscalls) and `http` (wire format), with `workload` deciding what to ask
//! for, `stats`/`hist` counting, `limits` naming what capped connections,
//! and `report`/`plot` writing the results.

pub mod cli;
pub mod compare;
pub mod engine;
pub mod hist;
pub mod hold;
pub mod http;
pub mod limits;
pub mod plan;
pub mod plot;
pub mod procs;
pub mod report;
pub mod run;
pub mod search;
pub mod stats;
pub mod sys;
pub mod target;
pub mod util;
pub mod workload;
