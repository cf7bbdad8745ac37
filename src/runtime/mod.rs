//! The thread-per-core runtime: one glommio executor pinned per CPU, each
//! with its own listening socket (SO_REUSEPORT), its own connections and
//! the shard of modules it owns.
//!
//! Routing: a request may land on any core (the kernel and the L4 balancer
//! know nothing of module paths). `resolve::route` names the core that
//! owns a module. A cache hit is answered where it landed by a lock-free
//! read of the owner's index; anything that may change state — a fill, a
//! `list`/`@latest` refresh — crosses to the owner over the channel
//! [`mesh`], so fills are single-flight without any lock shared between
//! cores.
//!
//! This module is where the layers are put together: it owns start-up,
//! placement, the listeners, the accept loop, the mesh and the drain. It
//! never parses HTTP or Go paths and decides nothing about caching.

mod accept;
mod admin;
pub mod listener;
pub mod mesh;
pub mod purge;
pub mod reload;
pub mod verify;

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use socket2::Socket;

use self::mesh::{Mesh, Msg};
use crate::config::Config;
use crate::goproxy::ProxyHandler;
use crate::http::Shutdown;
use crate::metrics::Metrics;
use crate::resolve::fill::FillSources;
use crate::resolve::live::Live;
use crate::resolve::{route, CoreResolver, Shard};
use crate::shared::SharedError;
use crate::store::{RecoveryStats, Store, StoreError};
use crate::upstream::dns::DnsCache;
use crate::upstream::git::GitSources;
use crate::upstream::private::PrivacyGuard;
use crate::upstream::sumdb_check::ChecksumCheck;
use crate::upstream::{FetchOptions, Fetcher, UpstreamChain};

#[derive(Debug)]
pub enum RuntimeError {
    Store(StoreError),
    Bind(SocketAddr, std::io::Error),
    Executors(String),
    Placement(String),
    Shared(SharedError),
    /// The `--auth` file.
    Auth(std::path::PathBuf, crate::edge::access::AccessError),
    /// `--tls-cert`/`--tls-key`.
    Tls(crate::upstream::tls::TlsError),
    /// `--audit-log` could not be opened.
    Audit(std::io::Error),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::Store(e) => write!(f, "opening the store: {e}"),
            RuntimeError::Bind(addr, e) => write!(f, "listening on {addr}: {e}"),
            RuntimeError::Executors(e) => write!(f, "starting executors: {e}"),
            RuntimeError::Placement(e) => f.write_str(e),
            RuntimeError::Shared(e) => write!(f, "{e}"),
            RuntimeError::Auth(path, e) => write!(f, "--auth {}: {e}", path.display()),
            RuntimeError::Tls(e) => write!(f, "--tls-cert/--tls-key: {e}"),
            RuntimeError::Audit(e) => write!(f, "--audit-log: {e}"),
        }
    }
}

impl std::error::Error for RuntimeError {}

/// What the caller learns once every core is accepting.
pub struct Started {
    /// Where plain HTTP is served; `None`: `--listen off`.
    pub addr: Option<SocketAddr>,
    /// Where HTTPS is served (`--tls-listen`).
    pub tls: Option<SocketAddr>,
    /// Where the admin listener listens, if it does.
    pub admin: Option<SocketAddr>,
    pub recovery: RecoveryStats,
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread spawned
/// after it) so that only the drain thread receives them.
fn block_shutdown_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask on this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// On SIGHUP: reload the configuration (see [`reload`]). On SIGTERM/SIGINT:
/// stop accepting (the balancer's health checks fail over and the backlog
/// drains to other hosts), let open connections finish what they are
/// sending for up to `grace`, then exit. A second signal exits at once.
/// Nothing needs flushing (every published record is already durable), but
/// each core, once drained, seals its open segment with its index snapshot
/// (`stores_closed` counts them): the exit waits a little for that, so the
/// next start-up scans nothing.
fn spawn_signal_thread(
    signals: libc::sigset_t,
    listeners: Vec<RawFd>,
    shutdown: Shutdown,
    metrics: &'static Metrics,
    grace: Duration,
    reloader: Arc<reload::Reloader>,
    stores_closed: (&'static AtomicUsize, usize),
) {
    std::thread::Builder::new()
        .name("gomodproxy-signals".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            loop {
                // SAFETY: sigwait on a set of blocked signals, writing into a local.
                if unsafe { libc::sigwait(&signals, &mut sig) } != 0 {
                    return;
                }
                if sig != libc::SIGHUP {
                    break;
                }
                log::info!("SIGHUP: reading the configuration again");
                reloader.reload();
            }
            log::info!("signal {sig}: no longer accepting; draining connections for up to {grace:?}");
            shutdown.begin_drain();
            for fd in listeners {
                // SAFETY: shutdown on a listening socket we own wakes its accept with an error.
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            }
            std::thread::spawn(move || loop {
                let mut again: libc::c_int = 0;
                // SAFETY: as above.
                if unsafe { libc::sigwait(&signals, &mut again) } != 0 {
                    return;
                }
                // A reload (a log rotation's HUP) means nothing while draining.
                if again != libc::SIGHUP {
                    log::warn!("second signal {again}: exiting now");
                    std::process::exit(1);
                }
            });
            let deadline = std::time::Instant::now() + grace;
            while metrics.connections_open() > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let sealing = std::time::Instant::now() + STORE_CLOSE_WAIT;
            while stores_closed.0.load(Ordering::Acquire) < stores_closed.1 && std::time::Instant::now() < sealing {
                std::thread::sleep(Duration::from_millis(10));
            }
            log::info!(
                "drained ({} connections still open, {} of {} cores' segments sealed); exiting",
                metrics.connections_open(),
                stores_closed.0.load(Ordering::Acquire),
                stores_closed.1
            );
            std::process::exit(0);
        })
        .ok();
}

/// How long an exit waits, once drained, for the cores to seal their segments.
const STORE_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Channel capacity between each pair of cores. A full channel makes the
/// sender wait, which is the back-pressure we want.
const MESH_CAPACITY: usize = 1024;

/// The prefetch workers' share of a busy core (the default queue, which
/// serves clients, has glommio's 1000).
const PREFETCH_SHARES: usize = 50;

/// Runs the server until every executor stops. `on_started` is called once,
/// when all cores are accepting connections.
pub fn serve(config: Config, on_started: impl FnOnce(Started)) -> Result<(), RuntimeError> {
    // First, before any thread exists (the shared tier's runtime, the
    // executors, their pools): every thread inherits the mask, so only the
    // signal thread ever receives SIGTERM, SIGINT and SIGHUP.
    let signals = block_shutdown_signals();
    let cores = config.cores.max(1);
    // Thread-per-core: more executors than CPUs would share CPUs, defeat
    // the pinning, and (glommio joins its channel mesh pair by pair) start
    // slowly. Refuse before touching the store.
    let placement = match allowed_cpus() {
        Some(cpus) if cores <= cpus.len() => PoolPlacement::MaxSpread(cores, Some(cpus)),
        Some(cpus) => {
            return Err(RuntimeError::Placement(format!(
                "--cores {cores} exceeds the {} CPUs this process may run on (one executor per CPU)",
                cpus.len()
            )))
        }
        None => {
            log::warn!("could not read the CPU topology; executors will not be pinned");
            PoolPlacement::Unbound(cores)
        }
    };
    let store = Store::open(&config.data_dir, cores, move |m, v, k| route::owner_of_record(m, v, k, cores)).map_err(RuntimeError::Store)?;
    let recovery = store.stats().clone();
    let segment_bytes = config.segment_bytes_under_bound();
    store.ledger().set_max_bytes(config.max_store_bytes);
    if let Some(max) = config.max_store_bytes {
        let on_disk = store.ledger().on_disk();
        log::info!(
            "store bound {max} bytes (--max-store-size): {on_disk} on disk now, segments of {segment_bytes} bytes{}",
            if on_disk > max { "; the next writes evict down to it" } else { "" }
        );
    }
    if store.is_read_only() {
        log::warn!(
            "READ-ONLY: data directory {} cannot be written; serving the {} records it holds, passing every miss through, storing nothing",
            config.data_dir.display(),
            recovery.records
        );
    }
    let (addr, sockets) = match config.listen {
        Some(at) => {
            let (addr, sockets) = listener::bind_all(at, config.backlog, cores).map_err(|e| RuntimeError::Bind(at, e))?;
            (Some(addr), sockets)
        }
        None => (None, Vec::new()),
    };
    // HTTPS beside it: the certificate first, so a bad one stops start-up.
    let tls = match &config.tls {
        Some(t) => {
            let certs = crate::edge::tls::Certificates::load(&t.cert, &t.key).map_err(RuntimeError::Tls)?;
            let (tls_addr, tls_sockets) = listener::bind_all(t.addr, config.backlog, cores).map_err(|e| RuntimeError::Bind(t.addr, e))?;
            certs.watch(Duration::from_secs(2));
            Some((certs, tls_addr, tls_sockets))
        }
        None => None,
    };
    let tls_addr = tls.as_ref().map(|(_, a, _)| *a);
    let certs = tls.as_ref().map(|(c, _, _)| c.clone());
    let tls_sockets: Arc<Mutex<Vec<Option<Socket>>>> =
        Arc::new(Mutex::new(tls.map(|(_, _, s)| s.into_iter().map(Some).collect()).unwrap_or_default()));
    // The admin listener, on core 0: bound now, so a taken port stops start-up.
    let admin_socket = match config.admin_listen {
        Some(at) => Some(std::net::TcpListener::bind(at).map_err(|e| RuntimeError::Bind(at, e))?),
        None => None,
    };
    let admin_addr = admin_socket.as_ref().and_then(|l| l.local_addr().ok());

    let reload::Settings { sources, cache, proxy, edge } = reload::settings(&config, None)?;
    let metrics = Metrics::leak(cores);
    crate::upstream::memory::fill_memory().set_limit(config.fill_memory);
    let audit = match &config.audit_log {
        Some(dest) => Some(crate::edge::audit::AuditLog::start(dest.clone(), &metrics.core(0).audit_dropped).map_err(RuntimeError::Audit)?),
        None => None,
    };
    let rates = Arc::new(crate::edge::rate::RateLimits {
        all: config.rate_limit.map(crate::edge::rate::Buckets::new),
        misses: config.miss_rate_limit.map(crate::edge::rate::Buckets::new),
    });
    if store.is_read_only() {
        metrics.core(0).store_read_only.add(1);
    }
    let ledger = store.ledger().clone();
    metrics.print_also(move |out| {
        print_ledger(out, &ledger);
        print_connect_stats(out);
    });
    let reloader = Arc::new(reload::Reloader {
        sources: Live::new(sources),
        cache: Live::new((*cache).clone()),
        proxy: Live::new(proxy),
        edge: Live::new(edge),
        certificates: certs.clone(),
        audit: audit.clone(),
        ledger: store.ledger().clone(),
        running: Mutex::new(config.clone()),
    });
    let live = reloader.clone();
    let indexes = store.indexes();
    let shutdown = Shutdown::leak();
    let stores_closed: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let drain_timeout = config.drain_timeout;
    let store = Arc::new(store);
    // Start-up only: each core takes its own listener out by its mesh id.
    let listener_fds: Vec<RawFd> = sockets
        .iter()
        .map(|s| s.as_raw_fd())
        .chain(tls_sockets.lock().map(|t| t.iter().flatten().map(|s| s.as_raw_fd()).collect::<Vec<_>>()).unwrap_or_default())
        .chain(admin_socket.as_ref().map(|l| l.as_raw_fd()))
        .collect();
    let admin_socket = Arc::new(Mutex::new(admin_socket));
    let sockets: Arc<Mutex<Vec<Option<Socket>>>> = Arc::new(Mutex::new(sockets.into_iter().map(Some).collect()));
    let mesh = MeshBuilder::<Msg, _>::full(cores, MESH_CAPACITY);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, String>>();
    let max_connections = config.max_connections.unwrap_or_else(|| default_max_connections(cores, recovery.segments));
    log::info!("accepting up to {max_connections} connections");
    let per_core_connections = max_connections.div_ceil(cores).max(1) as u64;
    let connections = accept::Connections { limits: Box::leak(Box::new(config.limits)), max: per_core_connections, shutdown };

    let pool = LocalExecutorPoolBuilder::new(placement)
        .name("gomodproxy")
        // We do no DMA file I/O; a small registered region keeps the memlock need low.
        .io_memory(1 << 20)
        .blocking_thread_pool_placement(PoolPlacement::Unbound(config.fetch_threads.max(1)));
    // glommio polls only on executors bound to a CPU (as ours are, unless
    // the allowed CPUs could not be read).
    let pool = if config.spin_before_park.is_zero() { pool } else { pool.spin_before_park(config.spin_before_park) };
    let handles = pool
        .on_all_shards(move || async move {
            let started = async {
                let (peers, mut receivers, id) = if cores > 1 {
                    let (s, r) = mesh.join().await.map_err(|e| format!("joining the core mesh: {e}"))?;
                    let id = s.peer_id();
                    (Some(s), Some(r), id)
                } else {
                    (None, None, 0)
                };
                // None with `--listen off`.
                let listener = sockets.lock().ok().and_then(|mut s| s.get_mut(id).and_then(Option::take)).map(|socket| {
                    // SAFETY: the descriptor is a bound, listening TCP socket whose ownership moves here.
                    unsafe { <glommio::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(socket.into_raw_fd()) }
                });
                let writer = store.writer(segment_bytes);
                let core_metrics = metrics.core(id);
                let shard = Rc::new(Shard::new(id, cores, indexes.clone(), &live.sources, writer, &live.cache, core_metrics));
                let shard_for_close = shard.clone();
                glommio::spawn_local(shard.clone().scrub(config.scrub_bytes_per_sec)).detach();
                let mesh = Mesh::new(id, peers);
                if let Some(r) = receivers.as_mut() {
                    mesh.listen(r, shard.clone());
                }
                if let Some(admin) = admin_socket.lock().ok().filter(|_| id == 0).and_then(|mut a| a.take()) {
                    // SAFETY: the descriptor is a bound, listening TCP socket whose ownership moves here.
                    let listener = unsafe { <glommio::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(admin.into_raw_fd()) };
                    let admin =
                        Rc::new(admin::Admin { shard: shard.clone(), mesh: mesh.clone(), metrics, shutdown, edge: live.edge.view() });
                    glommio::spawn_local(admin.serve(listener)).detach();
                }
                let resolver = CoreResolver::new(shard, mesh);
                // Prefetch yields to everything else this core does.
                let background = glommio::executor().create_task_queue(
                    glommio::Shares::Static(PREFETCH_SHARES),
                    glommio::Latency::NotImportant,
                    "prefetch",
                );
                resolver.spawn_prefetch(background).map_err(|e| format!("starting the prefetch workers: {e}"))?;
                let handler = ProxyHandler::new(resolver, live.proxy.view(), core_metrics, metrics);
                let handler = crate::edge::Edge::new(handler, live.edge.view(), audit.clone(), rates.clone());
                let tls = tls_sockets.lock().ok().and_then(|mut s| s.get_mut(id).and_then(Option::take)).map(|socket| {
                    // SAFETY: the descriptor is a bound, listening TCP socket whose ownership moves here.
                    unsafe { <glommio::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(socket.into_raw_fd()) }
                });
                Ok::<_, String>((id, handler, listener, tls, shard_for_close))
            }
            .await;
            let (id, handler, listener, tls_listener, shard) = match started {
                Ok(x) => x,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(id));
            let handler = Rc::new(handler);
            let tls = tls_listener.zip(certs.as_ref()).map(|(l, c)| (l, c.view()));
            let plain = async {
                if let Some(l) = listener {
                    connections.accept(l, accept::Transport::Plain, handler.clone(), metrics.core(id)).await;
                }
            };
            let secure = async {
                if let Some((l, view)) = tls {
                    connections.accept(l, accept::Transport::Tls(view), handler.clone(), metrics.core(id)).await;
                }
            };
            futures_lite::future::zip(plain, secure).await;
            // Drained: the open segment is sealed with its snapshot, so the
            // next start-up reads no header of it.
            shard.close_store().await;
            stores_closed.fetch_add(1, Ordering::Release);
        })
        .map_err(|e| RuntimeError::Executors(e.to_string()))?;

    for _ in 0..cores {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(RuntimeError::Executors(e)),
            Err(_) => return Err(RuntimeError::Executors("an executor exited during start-up".into())),
        }
    }
    spawn_signal_thread(signals, listener_fds, shutdown, metrics, drain_timeout, reloader, (stores_closed, cores));
    on_started(Started { addr, tls: tls_addr, admin: admin_addr, recovery });
    for r in handles.join_all() {
        if let Err(e) = r {
            return Err(RuntimeError::Executors(format!("{e:?}")));
        }
    }
    Ok(())
}

/// The fill's sources as `config` gives them: the upstream chain behind
/// its privacy guard, and every `--sumdb` database's verifying client
/// (the first vouches for every public module).
pub fn fill_sources(config: &Config) -> FillSources {
    fill_sources_with(config, Arc::new(git_sources(config)))
}

/// The `[[git]]` sources of `config`, over the mirrors in `DATA/git`.
fn git_sources(config: &Config) -> GitSources {
    GitSources::new(config.git.clone(), config.data_dir.join("git"), config.list_ttl, config.git_timeout, config.git_host_concurrency)
}

/// [`fill_sources`] around given Git sources (a reload keeps the running
/// ones when their settings did not change: one set of mirrors, one fetch
/// at a time per repository).
pub fn fill_sources_with(config: &Config, git: Arc<GitSources>) -> FillSources {
    let opts = FetchOptions {
        timeout: config.upstream_timeout,
        connect_timeout: config.upstream_connect_timeout,
        read_timeout: config.upstream_read_timeout,
        retries: config.upstream_retries,
        retry_backoff: config.upstream_retry_backoff,
        breaker_failures: config.breaker_failures,
        breaker_cooldown: config.breaker_cooldown,
        http: config.upstream_http.clone(),
        concurrency: config.cores * config.fetch_concurrency.max(1),
        dns: (!config.dns_cache_ttl.is_zero()).then(|| DnsCache::new(config.dns_cache_ttl)),
        git: Some(git.clone()),
    };
    // Private modules get their own chain, and only the guard decides who hears of them.
    let private_list = config.private_upstream.clone().or_else(|| config.upstream.local_only());
    let upstream: Arc<dyn Fetcher> = Arc::new(PrivacyGuard::new(
        config.private.clone(),
        UpstreamChain::from_config(&config.upstream, opts.clone()),
        private_list.map(|l| UpstreamChain::from_config(&l, opts.clone())),
    ));
    // Every database relays only what it verified; the first vouches for every public module.
    let databases: Arc<[Arc<ChecksumCheck>]> = config
        .sumdbs
        .iter()
        .map(|db| {
            let direct = db.url.as_ref().map(|url| Box::new(UpstreamChain::from_config(url, opts.clone())) as Box<dyn Fetcher>);
            let state = config.data_dir.join("sumdb");
            Arc::new(ChecksumCheck::new(db.verifier.clone(), upstream.clone(), direct, config.private.clone(), state))
        })
        .collect();
    let checksums = databases.first().cloned();
    FillSources { upstream, checksums, databases, shared: None, git: Some(git) }
}

/// What connecting to the upstreams cost (see [`crate::upstream::dns::ConnectStats`]).
fn print_connect_stats(out: &mut String) {
    use crate::metrics::write_metric;
    use std::sync::atomic::Ordering::Relaxed;
    let s = &crate::upstream::dns::CONNECT_STATS;
    let figures = [
        (
            "upstream_connections",
            "Connections opened to http(s) upstream hosts (reused ones are not counted; counted with the DNS cache on).",
            &s.connections,
        ),
        ("upstream_dns_waits", "DNS lookups a fetch waited for (a host not cached yet).", &s.lookups_waited),
        ("upstream_dns_wait_micros", "Time fetches waited for DNS lookups, in microseconds.", &s.lookup_wait_micros),
        (
            "upstream_dns_failures",
            "DNS lookups of upstream hosts that failed (waited for, or refreshes in the background).",
            &s.lookup_failures,
        ),
        ("upstream_tls_handshakes", "TLS handshakes with upstream hosts.", &s.tls_handshakes),
        ("upstream_tls_handshake_micros", "Time spent in TLS handshakes with upstream hosts, in microseconds.", &s.tls_handshake_micros),
    ];
    for (name, help, value) in figures {
        write_metric(out, name, "counter", help, value.load(Relaxed));
    }
}

/// The store's size and evictions, for `/metrics`.
fn print_ledger(out: &mut String, ledger: &crate::store::Ledger) {
    use crate::metrics::write_metric;
    use std::sync::atomic::Ordering::Relaxed;
    write_metric(out, "store_bytes", "gauge", "Bytes of segment files on disk.", ledger.on_disk());
    write_metric(out, "store_max_bytes", "gauge", "The store's bound (--max-store-size); 0: none.", ledger.max_bytes().unwrap_or(0));
    write_metric(out, "store_sealed_segments", "gauge", "Sealed segments (the candidates for eviction).", ledger.sealed_segments() as u64);
    write_metric(
        out,
        "segments_evicted",
        "counter",
        "Segments evicted to keep the store under its bound.",
        ledger.evicted_segments.load(Relaxed),
    );
    write_metric(out, "evicted_bytes", "counter", "Bytes of the segment files evicted.", ledger.evicted_bytes.load(Relaxed));
    write_metric(
        out,
        "evicted_blobs",
        "counter",
        "Blobs dropped with their segment (fetched again when asked for).",
        ledger.dropped_blobs.load(Relaxed),
    );
    write_metric(
        out,
        "carried_records",
        "counter",
        "Records copied forward out of evicted segments (served since stored, tombstones, go.sum hashes).",
        ledger.carried_records.load(Relaxed),
    );
    write_metric(
        out,
        "carried_bytes",
        "counter",
        "Payload bytes copied forward out of evicted segments.",
        ledger.carried_bytes.load(Relaxed),
    );
}

/// Connections the open-file limit leaves room for: each segment keeps a
/// descriptor (for sendfile), each core a handful (rings, eventfds, its
/// listener, its active segment), each upstream fetch thread a connection,
/// plus room for the store to grow by a few hundred segments.
fn default_max_connections(cores: usize, segments: usize) -> usize {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    let nofile = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 { lim.rlim_cur } else { 1024 };
    let reserve = 256 + 16 * cores as u64 + segments as u64 + 256;
    (nofile.saturating_sub(reserve) as usize).max(64)
}

/// The online CPUs this process is allowed on. glommio places executors
/// over all online CPUs; restricting the set honours `taskset`, cgroup
/// cpusets and systemd's `CPUAffinity=`, as an operator expects.
fn allowed_cpus() -> Option<glommio::CpuSet> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut mask) };
    let online = glommio::CpuSet::online().ok()?;
    if rc != 0 {
        return Some(online);
    }
    // SAFETY: CPU_ISSET reads the mask we own; cpu ids come from sysfs and are < CPU_SETSIZE.
    let set = online.filter(|l| l.cpu < libc::CPU_SETSIZE as usize && unsafe { libc::CPU_ISSET(l.cpu, &mask) });
    (!set.is_empty()).then_some(set)
}
