//! `gomodproxy verify`: an audit of a stopped store. Every stored blob is
//! re-read and checked against what was recorded when it was stored: its
//! record's SHA-256 (the disk returned what was written) and, for a
//! module's `.zip` and `.mod`, the `h1:` hash kept at its first download;
//! with a `--sumdb` database that answers, public modules are checked
//! against its proved records too. Whatever fails is reported and
//! quarantined with a tombstone, so it is never served again and is fetched
//! afresh on its next request (where it must hash as recorded).
//!
//! Owns the order of those checks and the report. It runs with the store's
//! lock held (never beside a running server) and never repairs a blob in
//! place: a bad one is withdrawn, never rewritten.

use std::io::Write;
use std::sync::Arc;

use crate::artifact::{FetchError, Kind};
use crate::config::Config;
use crate::gomod::dirhash;
use crate::resolve::fill::go_sum_key;
use crate::store::{record, Index, RecordKind, Store, StoreError};
use crate::upstream::sumdb_check::ChecksumCheck;

/// Lookups that may fail in a row before the database counts as unreachable.
const DATABASE_TRIES: usize = 3;

/// One blob that failed the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub module: String,
    pub version: String,
    pub kind: RecordKind,
    pub problem: String,
}

/// What the audit did.
#[derive(Debug, Default)]
pub struct Report {
    /// Blobs re-read and checked against their record's SHA-256.
    pub blobs: usize,
    /// Module files whose `h1:` was checked against the one kept at first download.
    pub by_first_hash: usize,
    /// Module files checked against the checksum database.
    pub by_database: usize,
    /// Why the database was not asked (about the rest), if it was not.
    pub database_skipped: Option<String>,
    /// Everything that failed, each now quarantined.
    pub findings: Vec<Finding>,
}

/// Audits the store under `config.data_dir`, writing one line per finding
/// and a summary to `out`, and quarantines every finding.
pub fn verify(config: &Config, out: &mut impl Write) -> Result<Report, StoreError> {
    let store = Store::open(&config.data_dir, 1, |_, _, _| 0)?;
    let index = &store.indexes()[0];
    let database = super::fill_sources(config).checksums;
    let mut report = Report::default();
    let mut database_failures = 0;
    // Kept first-download hashes the database contradicts: (module, go.sum version).
    let mut also_withdrawn: Vec<(String, String)> = Vec::new();
    let recovery = store.stats();
    if recovery.bytes_cut > 0 || recovery.segments_skipped > 0 {
        // Start-up recovery's findings: lost, not served, fetched again when asked for.
        let _ = writeln!(
            out,
            "recovery cut {} byte(s) of torn tail from segments left open and skipped {} unreadable segment(s) (see the log)",
            recovery.bytes_cut, recovery.segments_skipped
        );
    }

    let mut entries: Vec<_> = index.entries().collect();
    entries.sort_by(|a, b| (a.module(), a.version(), a.kind() as u8).cmp(&(b.module(), b.version(), b.kind() as u8)));
    for entry in &entries {
        report.blobs += 1;
        let bytes = entry.blob.bytes();
        let problem = if record::payload_sha256(bytes) != *entry.blob.sha256() {
            Some("the stored bytes fail their record's SHA-256 (the disk returned other bytes than were written)".to_string())
        } else {
            let kind = match entry.kind() {
                RecordKind::Zip => Some(Kind::Zip),
                RecordKind::Mod => Some(Kind::Mod),
                _ => None,
            };
            kind.and_then(|kind| {
                let found = check_module_file(
                    index,
                    database.as_ref(),
                    entry.module(),
                    entry.version(),
                    kind,
                    bytes,
                    &mut report,
                    &mut database_failures,
                )?;
                // The database outranks a first download nobody checked:
                // its kept hash goes with the file, so a refill can pass.
                if found.against_database {
                    if let Some(v) = go_sum_key(entry.version(), kind) {
                        also_withdrawn.push((entry.module().to_string(), v));
                    }
                }
                Some(found.why)
            })
        };
        if let Some(problem) = problem {
            let f = Finding { module: entry.module().to_string(), version: entry.version().to_string(), kind: entry.kind(), problem };
            let _ = writeln!(out, "BAD {}@{} ({}): {}", f.module, f.version, label(f.kind), f.problem);
            report.findings.push(f);
        }
    }
    let mut withdrawn: Vec<(&str, &str, RecordKind)> =
        report.findings.iter().map(|f| (f.module.as_str(), f.version.as_str(), f.kind)).collect();
    withdrawn.extend(also_withdrawn.iter().map(|(m, v)| (m.as_str(), v.as_str(), RecordKind::GoSum)));
    store.withdraw(&withdrawn, |_, _, _| 0)?;
    if !report.findings.is_empty() {
        let _ = writeln!(
            out,
            "quarantined {} blob(s): never served again, fetched afresh (and checked) on their next request",
            report.findings.len()
        );
    }
    if let Some(why) = &report.database_skipped {
        let _ = writeln!(out, "not checked against the checksum database: {why}");
    }
    let _ = writeln!(
        out,
        "verified {} blob(s): {} module file(s) against their first download's hash, {} against the checksum database; {} bad",
        report.blobs,
        report.by_first_hash,
        report.by_database,
        report.findings.len()
    );
    Ok(report)
}

/// What is wrong with a stored module file.
struct Problem {
    why: String,
    /// The checksum database disagrees (rather than the kept first hash).
    against_database: bool,
}

/// The problem with a stored `.zip`/`.mod`, if any: not hashable, not
/// hashing as its first download did, or not as the database records.
#[allow(clippy::too_many_arguments)]
fn check_module_file(
    index: &Index,
    database: Option<&Arc<ChecksumCheck>>,
    module: &str,
    version: &str,
    kind: Kind,
    bytes: &[u8],
    report: &mut Report,
    database_failures: &mut usize,
) -> Option<Problem> {
    let plain = |why: String| Some(Problem { why, against_database: false });
    let got = match kind {
        Kind::Zip => match dirhash::hash_zip(bytes) {
            Ok(h) => h,
            Err(e) => return plain(format!("not a valid module zip: {e}")),
        },
        _ => dirhash::hash_go_mod(bytes),
    };
    // A kept hash whose own bytes are damaged is reported as itself, not held against the file.
    let first = go_sum_key(version, kind)
        .and_then(|v| index.blob(module, &v, RecordKind::GoSum))
        .filter(|b| record::payload_sha256(b.bytes()) == *b.sha256());
    if let Some(first) = first {
        report.by_first_hash += 1;
        let expected = String::from_utf8_lossy(first.bytes());
        if got != expected {
            return plain(format!("the stored bytes hash to {got}; its first download hashed to {expected}"));
        }
    }
    let db = database.filter(|db| db.applies(module, kind))?;
    if report.database_skipped.is_some() {
        return None;
    }
    match db.record(module, version) {
        Ok(record) => {
            *database_failures = 0;
            report.by_database += 1;
            match db.verdict(module, version, kind, &got, &record) {
                Err(FetchError::ChecksumMismatch { recorded_by, expected, got, .. }) => Some(Problem {
                    why: format!("the stored bytes hash to {got}; {recorded_by} records {expected}"),
                    against_database: true,
                }),
                Err(e) => plain(e.to_string()),
                Ok(()) => None,
            }
        }
        Err(e) => {
            *database_failures += 1;
            if *database_failures >= DATABASE_TRIES {
                report.database_skipped = Some(format!("{DATABASE_TRIES} lookups in a row failed, the last: {e}"));
            }
            None
        }
    }
}

fn label(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Info => ".info",
        RecordKind::Mod => ".mod",
        RecordKind::Zip => ".zip",
        RecordKind::SumTile | RecordKind::UnverifiedSumTile => "checksum-database tile",
        RecordKind::List => "version list",
        RecordKind::Latest => "@latest",
        RecordKind::Query => "query answer",
        RecordKind::SumAnswer => "checksum-database answer",
        RecordKind::GoSum => "recorded go.sum hash",
        RecordKind::Tombstone | RecordKind::Seal => "marker",
    }
}
