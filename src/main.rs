//! The `gomodproxy` binary: command line → [`Config`](gomodproxy::config::Config) → runtime.
//! `anyhow` lives here and nowhere else.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use gomodproxy::config::flags::Command;

/// `--log-format json`, set once the configuration is read (lines before
/// that are text).
static LOG_JSON: AtomicBool = AtomicBool::new(false);

/// Collects a log record's key-value fields (module, version, kind…).
struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: log::kv::Key<'kvs>, value: log::kv::Value<'kvs>) -> Result<(), log::kv::Error> {
        self.0.insert(key.to_string(), serde_json::Value::String(value.to_string()));
        Ok(())
    }
}

fn format_log(buf: &mut env_logger::fmt::Formatter, record: &log::Record<'_>) -> std::io::Result<()> {
    if !LOG_JSON.load(Ordering::Relaxed) {
        let ts = buf.timestamp_millis();
        return writeln!(buf, "[{ts} {:<5} {}] {}", record.level(), record.target(), record.args());
    }
    let mut line = serde_json::Map::new();
    line.insert("ts".into(), buf.timestamp_millis().to_string().into());
    line.insert("level".into(), record.level().as_str().into());
    line.insert("target".into(), record.target().into());
    line.insert("msg".into(), record.args().to_string().into());
    let _ = record.key_values().visit(&mut Fields(&mut line));
    writeln!(buf, "{}", serde_json::Value::Object(line))
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        // ureq logs whole request heads at debug level, Authorization
        // included: credentials must never reach a log, whatever RUST_LOG says.
        .filter_module("ureq::unit", log::LevelFilter::Info)
        .target(env_logger::Target::Stderr)
        .format(format_log)
        .init();
    let cli = gomodproxy::config::flags::parse_cli()?;
    match cli.command {
        Command::Serve(args) => {
            let config = args.into_config()?;
            LOG_JSON.store(config.log_json, Ordering::Relaxed);
            log::info!(
                "starting: {} cores, data {}, upstream {}, checksum databases: {}",
                config.cores,
                config.data_dir.display(),
                config.upstream.entries.iter().map(|e| format!("{:?}", e.spec)).collect::<Vec<_>>().join(" "),
                if config.sumdbs.is_empty() {
                    "none".to_string()
                } else {
                    config.sumdbs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(",")
                }
            );
            gomodproxy::runtime::serve(config, |started| {
                let r = &started.recovery;
                log::info!(
                    "store recovered: {} records in {} segments ({} from index snapshots) in {:?} ({} re-verified, {} bytes of torn tail cut, {} segments skipped, {} withdrawn)",
                    r.records,
                    r.segments,
                    r.snapshots_used,
                    r.elapsed,
                    r.records_verified,
                    r.bytes_cut,
                    r.segments_skipped,
                    r.withdrawn
                );
                // The lines on stdout, `listening on` last: scripts and tests wait for it.
                let mut out = std::io::stdout().lock();
                if let Some(admin) = started.admin {
                    let _ = writeln!(out, "admin listening on http://{admin}");
                }
                if let Some(tls) = started.tls {
                    let _ = writeln!(out, "tls listening on https://{tls}");
                }
                match (started.addr, started.tls) {
                    (Some(addr), _) => {
                        let _ = writeln!(out, "listening on http://{addr}");
                    }
                    // --listen off: HTTPS is what there is.
                    (None, Some(tls)) => {
                        let _ = writeln!(out, "listening on https://{tls}");
                    }
                    (None, None) => {}
                }
                let _ = out.flush();
            })
            .context("gomodproxy serve")?;
        }
        Command::Purge(args) => {
            let shared = args.shared_settings().context("gomodproxy purge")?;
            let purged = gomodproxy::runtime::purge::purge(&args.data, &args.target, shared).context("gomodproxy purge")?;
            let mut out = std::io::stdout().lock();
            for (module, version, kind) in &purged.records {
                let _ = writeln!(out, "purged {module}@{version} ({})", kind.label());
            }
            let _ = writeln!(out, "purged {} record(s) of {}; fetched afresh on their next request", purged.records.len(), args.target);
            match purged.shared {
                None => {}
                Some(Ok(n)) => {
                    let _ = writeln!(out, "the shared store accepted {n} delete(s) for {}", args.target);
                }
                Some(Err(e)) => {
                    let _ = out.flush();
                    anyhow::bail!("gomodproxy purge: the local store is purged, but the shared store's copies are not (run it again): {e}");
                }
            }
        }
        Command::Verify(args) => {
            let config = args.into_config()?;
            let report = gomodproxy::runtime::verify::verify(&config, &mut std::io::stdout().lock()).context("gomodproxy verify")?;
            if !report.findings.is_empty() {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
