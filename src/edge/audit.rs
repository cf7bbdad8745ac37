//! The audit log (`--audit-log FILE`, `-` for stderr): one JSON object per
//! line per request, saying who asked for what and what they got.
//!
//! Owns the line's format and its writer: a thread of its own behind a
//! bounded queue, so a slow or full disk never blocks serving (a line that
//! finds the queue full, or that cannot be written, is dropped and counted
//! in `gomodproxy_audit_dropped`). Reopened on SIGHUP for log rotation.
//! Never writes a credential.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::metrics::Counter;

/// Lines waiting for the writer; beyond this they are dropped.
const QUEUE: usize = 64 * 1024;

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditDest {
    Stderr,
    File(PathBuf),
}

impl AuditDest {
    pub fn parse(s: &str) -> AuditDest {
        if s == "-" {
            AuditDest::Stderr
        } else {
            AuditDest::File(PathBuf::from(s))
        }
    }
}

enum Msg {
    Line(String),
    Reopen,
}

/// The running audit log.
pub struct AuditLog {
    queue: crossbeam_channel::Sender<Msg>,
    dropped: &'static Counter,
}

/// One request, as the audit log records it.
pub struct Entry<'a> {
    pub client: SocketAddr,
    pub client_name: Option<&'a str>,
    pub method: &'static str,
    pub path: &'a str,
    pub module: Option<&'a str>,
    pub version: Option<&'a str>,
    pub kind: Option<&'static str>,
    pub status: u16,
    pub bytes: u64,
    pub duration: Duration,
    pub cache: &'static str,
    pub upstream: Option<&'a str>,
}

/// `2026-12-01T17:42:10.123Z`.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (y, mo, d, h, mi, s) = crate::gomod::pseudo::civil(since.as_secs() as i64);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z", since.subsec_millis())
}

impl Entry<'_> {
    /// The JSON line (without its newline).
    pub fn line(&self, at: SystemTime) -> String {
        serde_json::json!({
            "time": rfc3339_utc(at),
            "client": self.client.ip().to_string(),
            "client_name": self.client_name,
            "method": self.method,
            "path": self.path,
            "module": self.module,
            "version": self.version,
            "kind": self.kind,
            "status": self.status,
            "bytes": self.bytes,
            "duration_ms": (self.duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            "cache": self.cache,
            "upstream": self.upstream,
        })
        .to_string()
    }
}

fn open(dest: &AuditDest) -> io::Result<Box<dyn Write + Send>> {
    Ok(match dest {
        AuditDest::Stderr => Box::new(io::stderr()),
        AuditDest::File(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?) as Box<dyn Write + Send>,
    })
}

impl AuditLog {
    /// Opens `dest` (an error stops start-up) and starts the writer.
    pub fn start(dest: AuditDest, dropped: &'static Counter) -> io::Result<Arc<AuditLog>> {
        let first = open(&dest)?;
        let (queue, lines) = crossbeam_channel::bounded::<Msg>(QUEUE);
        std::thread::Builder::new().name("gomodproxy-audit".into()).spawn(move || {
            let mut out = BufWriter::new(first);
            while let Ok(msg) = lines.recv() {
                match msg {
                    Msg::Line(line) => {
                        if writeln!(out, "{line}").is_err() {
                            dropped.bump();
                        }
                    }
                    Msg::Reopen => {
                        let _ = out.flush();
                        match open(&dest) {
                            Ok(w) => out = BufWriter::new(w),
                            Err(e) => log::error!("audit log: reopening failed, still writing to the old file: {e}"),
                        }
                    }
                }
                // Flushed whenever the queue runs dry: lines are on disk (or
                // in the kernel) within a moment, without a write per line.
                if lines.is_empty() && out.flush().is_err() {
                    dropped.bump();
                }
            }
        })?;
        Ok(Arc::new(AuditLog { queue, dropped }))
    }

    /// Queues one line; never waits.
    pub fn record(&self, entry: &Entry<'_>) {
        if self.queue.try_send(Msg::Line(entry.line(SystemTime::now()))).is_err() {
            self.dropped.bump();
        }
    }

    /// Reopens the file (after it was moved away by log rotation).
    pub fn reopen(&self) {
        let _ = self.queue.try_send(Msg::Reopen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_with_every_field() {
        let e = Entry {
            client: "192.0.2.7:4000".parse().unwrap(),
            client_name: Some("ci"),
            method: "GET",
            path: "/example.com/a/@v/v1.0.0.zip",
            module: Some("example.com/a"),
            version: Some("v1.0.0"),
            kind: Some(".zip"),
            status: 200,
            bytes: 1234,
            duration: Duration::from_micros(1500),
            cache: "hit",
            upstream: None,
        };
        let v: serde_json::Value = serde_json::from_str(&e.line(UNIX_EPOCH + Duration::from_millis(1_764_610_930_123))).unwrap();
        assert_eq!(v["time"], "2025-12-01T17:42:10.123Z");
        assert_eq!(v["client"], "192.0.2.7");
        assert_eq!(v["client_name"], "ci");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1.5);
        assert!(v["upstream"].is_null());
        for key in ["method", "path", "module", "version", "kind", "bytes", "cache"] {
            assert!(!v[key].is_null(), "{key}");
        }
    }
}
