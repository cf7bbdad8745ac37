//! Why an artifact could not be had from its sources.
//!
//! Produced by the upstream sources, cached (404/410 only) by the resolve
//! layer, carried as a fill's final reason, and turned into a status by
//! the protocol's reply module, the one place that maps errors to statuses.
//! Every variant blames a source: our own failures are never a `FetchError`
//! (see `resolve::ResolveError::Internal`).

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// 404 or 410: the upstream does not have it. The message is the
    /// upstream's own (the go command shows it to its user).
    NotFound {
        gone: bool,
        message: String,
    },
    /// The upstream could not be reached or failed (5xx, 429, reset, refused).
    Unavailable {
        upstream: String,
        message: String,
    },
    /// The upstream answered with a status we cannot use (401, 403, 400...):
    /// an answer, so it never trips a circuit breaker, but no fallback either.
    /// `message`: its short, printable reason (may be empty).
    Rejected {
        upstream: String,
        status: u16,
        message: String,
    },
    /// No answer in time; `waiting` says for what, naming the limit that struck.
    Timeout {
        upstream: String,
        waiting: &'static str,
    },
    TooLarge {
        upstream: String,
        limit: u64,
    },
    /// Not asked: the upstream failed too often in a row and its circuit
    /// breaker is open (see `breaker`).
    CircuitOpen {
        upstream: String,
        retry_in: Duration,
    },
    /// The upstream answered something that is not a valid answer.
    Invalid(String),
    /// The fills under way hold all the memory they may (`--fill-memory`)
    /// and none was given back in time: ours to answer (503), no verdict
    /// on the upstream.
    FillMemoryFull {
        limit: u64,
    },
    /// The bytes differ from what the checksum database records for them:
    /// tampered, or a version that was published twice.
    ChecksumMismatch {
        /// `module@version` and which file (`.zip`, `.mod`).
        what: String,
        /// Who recorded the expected hash: a checksum database, or this
        /// proxy at the version's first download.
        recorded_by: String,
        expected: String,
        got: String,
    },
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::NotFound { message, .. } => f.write_str(message),
            FetchError::Unavailable { upstream, message } => write!(f, "upstream {upstream} failed: {message}"),
            FetchError::Timeout { upstream, waiting } => write!(f, "upstream {upstream} timed out {waiting}"),
            FetchError::TooLarge { upstream, limit } => write!(f, "upstream {upstream} sent more than {limit} bytes"),
            FetchError::Rejected { upstream, status, message } if message.is_empty() => {
                write!(f, "upstream {upstream} answered HTTP status {status}")
            }
            FetchError::Rejected { upstream, status, message } => write!(f, "upstream {upstream} answered HTTP status {status}: {message}"),
            FetchError::CircuitOpen { upstream, retry_in } => {
                write!(f, "upstream {upstream} is failing and is not being asked (circuit open; next try in {}s)", retry_in.as_secs())
            }
            FetchError::Invalid(why) => write!(f, "invalid upstream response: {why}"),
            FetchError::FillMemoryFull { limit } => write!(
                f,
                "gomodproxy is busy: the fills under way hold all the memory they may (--fill-memory, {limit} bytes); try again shortly"
            ),
            FetchError::ChecksumMismatch { what, recorded_by, expected, got } => write!(
                f,
                "verifying {what}: checksum mismatch\n\tdownloaded: {got}\n\t{recorded_by}: {expected}\n\n\
                 SECURITY ERROR\nThe upstream served bytes that differ from what {recorded_by} recorded; \
                 gomodproxy refused them and stored nothing."
            ),
        }
    }
}

impl std::error::Error for FetchError {}
