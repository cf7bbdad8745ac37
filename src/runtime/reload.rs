//! SIGHUP: the configuration read again (the command line, `--config` and
//! the files its flags name) and, if it is valid, put in place while the
//! server runs: upstream lists, private patterns, TTLs, Git sources,
//! checksum databases, the shared tier. Connections and fills in flight
//! keep what they started with; the next request sees the new settings.
//!
//! Owns building those settings from a [`Config`] (the same code at start-up
//! and on reload, so both validate alike) and the hand-over through the
//! resolve layer's [`Live`] cells. An invalid configuration is refused with
//! a log line naming the error and changes nothing. Settings that shape
//! the process itself (addresses, data directory, cores, segment size, fetch
//! threads, connection limits) need a restart: a change to them is named in
//! the log and left alone.

use std::sync::{Arc, Mutex};

use super::{fill_sources, fill_sources_with, RuntimeError};
use crate::config::Config;
use crate::edge::access::{Access, Anonymous};
use crate::edge::EdgeSettings;
use crate::goproxy::ProxySettings;
use crate::resolve::fill::FillSources;
use crate::resolve::live::Live;
use crate::resolve::CacheSettings;
use crate::shared::SharedTier;

/// Everything a reload may replace, built from one configuration.
pub struct Settings {
    pub sources: FillSources,
    pub cache: Arc<CacheSettings>,
    pub proxy: ProxySettings,
    pub edge: EdgeSettings,
}

/// The edge's settings of `config`: the `--auth` file read (again, on a reload).
fn edge_settings(config: &Config) -> Result<EdgeSettings, RuntimeError> {
    let access = match &config.auth {
        Some(path) => {
            let access = Access::load(path, &config.private, config.anonymous).map_err(|e| RuntimeError::Auth(path.clone(), e))?;
            log::info!(
                "--auth {}: {} client(s); anonymous callers read {}",
                path.display(),
                access.clients(),
                match config.anonymous {
                    Anonymous::Public => "public modules",
                    Anonymous::None => "nothing",
                }
            );
            Some(Arc::new(access))
        }
        None => None,
    };
    Ok(EdgeSettings { proxy_from: config.proxy_protocol_from.clone(), access })
}

/// Builds the settings of `config`. `running`: the settings now in use, whose
/// shared-tier client and Git sources (their mirrors, their one fetch at a
/// time per repository) are kept when their configuration did not change.
pub fn settings(config: &Config, running: Option<(&Config, &FillSources)>) -> Result<Settings, RuntimeError> {
    let git_unchanged = |old: &Config| {
        (&old.git, old.data_dir.as_path(), old.list_ttl, old.git_timeout, old.git_host_concurrency)
            == (&config.git, config.data_dir.as_path(), config.list_ttl, config.git_timeout, config.git_host_concurrency)
    };
    let mut sources = match running {
        Some((old, old_sources)) if git_unchanged(old) => match &old_sources.git {
            Some(git) => fill_sources_with(config, git.clone()),
            None => fill_sources(config),
        },
        _ => fill_sources(config),
    };
    sources.shared = match (&config.shared, running) {
        (Some(wanted), Some((old, old_sources))) if old.shared.as_ref() == Some(wanted) => old_sources.shared.clone(),
        (Some(wanted), _) => {
            let tier = SharedTier::open(wanted.clone()).map_err(RuntimeError::Shared)?;
            log::info!("sharing fills with every node of {} (node {}, lease {:?})", tier.name(), wanted.node, wanted.lease);
            Some(tier)
        }
        (None, _) => None,
    };
    if let Some(check) = &sources.checksums {
        log::info!("verifying every public module's .zip and .mod against checksum database {}", check.name());
    }
    let cache = Arc::new(CacheSettings {
        list_ttl: config.list_ttl,
        sumdb_ttl: config.sumdb_ttl,
        negative_ttl: config.negative_ttl,
        stream_fills: config.stream_fills,
        hit_routing: config.hit_routing,
        fetches_per_core: config.fetch_concurrency,
        fetches_per_module: config.module_fetch_concurrency,
        prefetch: config.prefetch,
    });
    let proxy = ProxySettings { sumdb_names: config.sumdbs.iter().map(|db| db.name.as_str().into()).collect(), cache: cache.clone() };
    let edge = edge_settings(config)?;
    Ok(Settings { sources, cache, proxy, edge })
}

/// What SIGHUP replaces, and the configuration it replaced last.
pub struct Reloader {
    pub sources: Arc<Live<FillSources>>,
    pub cache: Arc<Live<CacheSettings>>,
    pub proxy: Arc<Live<ProxySettings>>,
    pub edge: Arc<Live<EdgeSettings>>,
    /// The certificate of `--tls-listen`, re-read on every reload.
    pub certificates: Option<Arc<crate::edge::tls::Certificates>>,
    /// `--audit-log`, reopened on every reload (log rotation).
    pub audit: Option<Arc<crate::edge::audit::AuditLog>>,
    /// The store's bound is changed in place (`--max-store-size`).
    pub ledger: Arc<crate::store::Ledger>,
    pub running: Mutex<Config>,
}

impl Reloader {
    /// Reads the configuration again and puts it in place, or logs why not.
    pub fn reload(&self) {
        let config = match crate::config::flags::reread_serve_config() {
            Ok(c) => c,
            Err(e) => {
                log::error!("SIGHUP: the new configuration is refused, the running one stays: {e}");
                return;
            }
        };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let fixed = restart_only_changes(&running, &config);
        let current = self.sources.load();
        let built = match settings(&config, Some((&running, &current))) {
            Ok(s) => s,
            Err(e) => {
                log::error!("SIGHUP: the new configuration is refused, the running one stays: {e}");
                return;
            }
        };
        self.sources.replace(built.sources);
        crate::upstream::memory::fill_memory().set_limit(config.fill_memory);
        self.ledger.set_max_bytes(config.max_store_bytes);
        if config.segment_bytes_under_bound() < running.segment_bytes_under_bound() {
            log::warn!(
                "SIGHUP: --max-store-size shrank below what this process's segments were sized for; the bound holds within a segment per core until a restart"
            );
        }
        self.cache.replace((*built.cache).clone());
        self.proxy.replace(built.proxy);
        self.edge.replace(built.edge);
        if let Some(certs) = &self.certificates {
            certs.reload(true);
        }
        if let Some(audit) = &self.audit {
            audit.reopen();
        }
        if !fixed.is_empty() {
            log::warn!("SIGHUP: {} changed but take effect only after a restart", fixed.join(", "));
        }
        log::info!(
            "SIGHUP: configuration reloaded: upstream {}",
            config.upstream.entries.iter().map(|e| format!("{:?}", e.spec)).collect::<Vec<_>>().join(" ")
        );
        *running = config;
    }
}

/// The settings that differ between `old` and `new` but need a restart.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("--listen", old.listen != new.listen);
    check("--audit-log", old.audit_log != new.audit_log);
    check("--rate-limit", old.rate_limit != new.rate_limit);
    check("--miss-rate-limit", old.miss_rate_limit != new.miss_rate_limit);
    check("--tls-listen", old.tls.as_ref().map(|t| t.addr) != new.tls.as_ref().map(|t| t.addr));
    check("--admin-listen", old.admin_listen != new.admin_listen);
    check("--data", old.data_dir != new.data_dir);
    check("--cores", old.cores != new.cores);
    check("--segment-size", old.segment_bytes != new.segment_bytes);
    check("--scrub-rate", old.scrub_bytes_per_sec != new.scrub_bytes_per_sec);
    check("--spin-before-park", old.spin_before_park != new.spin_before_park);
    check("--fetch-threads", old.fetch_threads != new.fetch_threads);
    check("--fetch-concurrency", old.fetch_concurrency != new.fetch_concurrency);
    check("--module-fetch-concurrency", old.module_fetch_concurrency != new.module_fetch_concurrency);
    check("--hit-routing", old.hit_routing != new.hit_routing);
    check("--max-connections", old.max_connections != new.max_connections);
    check("--backlog", old.backlog != new.backlog);
    check("the HTTP limits", old.limits != new.limits);
    check("--drain-timeout", old.drain_timeout != new.drain_timeout);
    changed
}
