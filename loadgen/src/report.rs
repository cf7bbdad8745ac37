//! Turning `Stats` into what people read: the per-second progress line, the
//! final tables, the JSON report (`--json`) and the `.hgrm` files (`--hist`).
//! The JSON field names are a stable interface (CI and capacity notes parse it).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hist::{percentiles, write_hgrm, Hist, Percentiles};
use crate::limits::{Env, LimitKind, NetCounters};
use crate::stats::{Errors, Stats};
use crate::util::{fmt_bytes, fmt_int, fmt_ms, fmt_rate};

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
    pub mean: f64,
}

impl From<Percentiles> for LatencyMs {
    fn from(p: Percentiles) -> LatencyMs {
        let ms = |ns: u64| ns as f64 / 1e6;
        LatencyMs {
            p50: ms(p.p50),
            p90: ms(p.p90),
            p99: ms(p.p99),
            p999: ms(p.p999),
            p9999: ms(p.p9999),
            max: ms(p.max),
            mean: p.mean / 1e6,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StatusCounts {
    #[serde(rename = "1xx")]
    pub s1xx: u64,
    #[serde(rename = "2xx")]
    pub s2xx: u64,
    #[serde(rename = "3xx")]
    pub s3xx: u64,
    #[serde(rename = "4xx")]
    pub s4xx: u64,
    #[serde(rename = "5xx")]
    pub s5xx: u64,
    pub other: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ErrorReport {
    #[serde(flatten)]
    pub kinds: Errors,
    /// Failed requests (every kind but connect).
    pub total: u64,
    /// total / (responses + total).
    pub rate: f64,
    /// Failed connection attempts by errno.
    pub connect_errnos: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LimitReport {
    pub kind: LimitKind,
    pub name: String,
    pub errno: String,
    /// Connection attempts it failed.
    pub count: u64,
    /// Connections the process had open when it first hit the limit.
    pub connections_reached: u64,
    /// Which setting lifts it.
    pub advice: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ConnReport {
    /// Connections asked for.
    pub target: usize,
    /// Successful handshakes (reconnects included).
    pub opened: u64,
    pub peak_open: u64,
    pub open_at_end: u64,
    /// Seconds until every connection was open (absent: never all at once).
    pub all_open_after_s: Option<f64>,
    pub closed_by_server: u64,
    /// Handshake times (connect() to established), milliseconds.
    pub connect_ms: LatencyMs,
}

/// One phase against one target: the unit of every report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    pub label: String,
    pub target: String,
    /// "closed", "open" or "hold".
    pub mode: String,
    /// Scheduled requests per second (open loop and hold trickle).
    pub target_rate: Option<f64>,
    /// Seconds of the measurement window (after warm-up).
    pub duration_s: f64,
    /// Complete responses (any status).
    pub requests: u64,
    pub throughput_rps: f64,
    /// Response bytes (heads and bodies) per second, MiB.
    pub throughput_mib_s: f64,
    pub bytes_in: u64,
    pub body_bytes: u64,
    pub bytes_out: u64,
    /// From the intended send time (= actual send in closed loop).
    pub latency_ms: LatencyMs,
    /// From the actual send: differs from latency_ms when requests waited.
    pub service_latency_ms: LatencyMs,
    pub status: StatusCounts,
    pub expected_misses: u64,
    pub errors: ErrorReport,
    /// Open loop: requests due by the schedule, and how many waited for a connection.
    pub scheduled: u64,
    pub queued: u64,
    pub connections: ConnReport,
    pub limits: Vec<LimitReport>,
}

/// Facts about a phase that `Stats` does not carry.
pub struct RunInfo<'a> {
    pub label: &'a str,
    pub target: &'a str,
    pub mode: &'a str,
    pub rate: Option<f64>,
    pub connections: usize,
}

impl RunSummary {
    pub fn new(info: &RunInfo, s: &Stats, env: &Env) -> RunSummary {
        let secs = s.window_ns() as f64 / 1e9;
        let per_s = |v: f64| if secs > 0.0 { v / secs } else { 0.0 };
        RunSummary {
            label: info.label.to_string(),
            target: info.target.to_string(),
            mode: info.mode.to_string(),
            target_rate: info.rate,
            duration_s: secs,
            requests: s.responses,
            throughput_rps: per_s(s.responses as f64),
            throughput_mib_s: per_s(s.bytes_in as f64) / (1024.0 * 1024.0),
            bytes_in: s.bytes_in,
            body_bytes: s.body_bytes,
            bytes_out: s.bytes_out,
            latency_ms: percentiles(&s.latency).into(),
            service_latency_ms: percentiles(&s.service).into(),
            status: StatusCounts {
                s1xx: s.status[0],
                s2xx: s.status[1],
                s3xx: s.status[2],
                s4xx: s.status[3],
                s5xx: s.status[4],
                other: s.status[5],
            },
            expected_misses: s.expected_misses,
            errors: ErrorReport {
                kinds: s.errors,
                total: s.errors.request_errors(),
                rate: s.error_rate(),
                connect_errnos: s.connect_errnos.clone(),
            },
            scheduled: s.scheduled,
            queued: s.queued,
            connections: ConnReport {
                target: info.connections,
                opened: s.connects,
                peak_open: s.peak_open,
                open_at_end: s.open,
                all_open_after_s: s.ramp_ns.map(|ns| ns as f64 / 1e9),
                closed_by_server: s.server_closes,
                connect_ms: percentiles(&s.connect_time).into(),
            },
            limits: s
                .limits
                .iter()
                .map(|(k, v)| LimitReport {
                    kind: *k,
                    name: k.name().to_string(),
                    errno: v.errno.clone(),
                    count: v.count,
                    connections_reached: v.open_at_first_hit,
                    advice: env.advice(*k),
                })
                .collect(),
        }
    }
}

/// The whole `--json` document.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    /// "run", "search", "compare" or "hold".
    pub mode: String,
    pub environment: Env,
    /// Kernel counters before and after (ListenOverflows reveals dropped SYNs).
    pub net_before: NetCounters,
    pub net_after: NetCounters,
    pub runs: Vec<RunSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<crate::search::SearchReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare: Option<crate::compare::CompareReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<crate::hold::HoldReport>,
}

impl Report {
    pub fn new(mode: &str, env: &Env, net_before: NetCounters) -> Report {
        Report {
            tool: "loadgen".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            mode: mode.into(),
            environment: env.clone(),
            net_before,
            net_after: NetCounters::default(),
            runs: Vec::new(),
            search: None,
            compare: None,
            hold: None,
        }
    }
}

pub fn write_json(path: &Path, report: &Report) -> Result<(), String> {
    let text = serde_json::to_string_pretty(report).expect("serializable");
    std::fs::write(path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))
}

/// `--hist out.hgrm` with several runs writes `out-<label>.hgrm` for each.
pub fn hist_path(base: &Path, label: Option<&str>) -> PathBuf {
    let Some(label) = label else { return base.to_path_buf() };
    let clean: String = label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
    let stem = base.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "latency".into());
    let ext = base.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    base.with_file_name(format!("{stem}-{clean}{ext}"))
}

/// Writes one `.hgrm` per histogram; returns the paths written.
pub fn write_hists(base: &Path, hists: &[(String, &Hist)]) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    for (label, h) in hists {
        let path = hist_path(base, (hists.len() > 1).then_some(label.as_str()));
        let mut f = std::fs::File::create(&path).map_err(|e| format!("writing {}: {e}", path.display()))?;
        write_hgrm(h, &mut f).and_then(|_| f.flush()).map_err(|e| format!("writing {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The progress line of a hold run: connections first.
pub fn hold_progress_line(prefix: &str, elapsed_s: f64, s: &Stats) -> String {
    let mut line = format!(
        "{prefix}[{elapsed_s:>5.0}s] open {:>9}  (+{} connected, {} closed by server)  connect errors {}",
        fmt_int(s.open),
        fmt_int(s.connects),
        fmt_int(s.server_closes),
        fmt_int(s.errors.connect)
    );
    if s.responses + s.errors.request_errors() > 0 {
        let p = percentiles(&s.latency);
        line.push_str(&format!("  trickle p50 {} p99 {} errors {}", fmt_ms(p.p50), fmt_ms(p.p99), s.errors.request_errors()));
    }
    line
}

/// The one-line-per-second progress update (to stderr).
pub fn progress_line(prefix: &str, elapsed_s: f64, interval_s: f64, s: &Stats) -> String {
    let p = percentiles(&s.latency);
    let rate = s.responses as f64 / interval_s;
    let mut line = format!(
        "{prefix}[{elapsed_s:>5.0}s] {:>9} req/s  p50 {:>9}  p99 {:>9}  errors {:<5} open {}",
        fmt_rate(rate),
        fmt_ms(p.p50),
        fmt_ms(p.p99),
        s.errors.request_errors() + s.errors.connect,
        fmt_int(s.open),
    );
    if s.queued > 0 {
        line.push_str(&format!("  queued {}", fmt_int(s.queued)));
    }
    line
}

fn latency_row(l: &LatencyMs) -> String {
    let f = |ms: f64| fmt_ms((ms * 1e6) as u64);
    format!("p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}", f(l.p50), f(l.p90), f(l.p99), f(l.p999), f(l.p9999), f(l.max))
}

/// Whether a run's limits already include the accept-queue advice.
pub fn advised_backlog(r: &RunSummary) -> bool {
    r.limits.iter().any(|l| l.kind == LimitKind::ConnectTimeout)
}

/// The final table of one run.
pub fn print_run(r: &RunSummary) {
    let mut out = String::new();
    let mode = match (r.mode.as_str(), r.target_rate) {
        ("open", Some(rate)) => format!("open loop at {} req/s", fmt_rate(rate)),
        ("hold", Some(rate)) => format!("hold, trickle {} req/s", fmt_rate(rate)),
        ("hold", None) => "hold".to_string(),
        _ => "closed loop".to_string(),
    };
    out.push_str(&format!("== {} ({}) — {}, {} connections\n", r.label, r.target, mode, fmt_int(r.connections.target as u64)));
    out.push_str(&format!(
        "  throughput   {} req/s, {:.2} MiB/s over {:.2} s ({} responses)\n",
        fmt_rate(r.throughput_rps),
        r.throughput_mib_s,
        r.duration_s,
        fmt_int(r.requests)
    ));
    out.push_str(&format!(
        "  bytes        in {} (bodies {}), out {}\n",
        fmt_bytes(r.bytes_in),
        fmt_bytes(r.body_bytes),
        fmt_bytes(r.bytes_out)
    ));
    if r.requests > 0 {
        let basis = if r.mode == "closed" { "" } else { "  (from intended send time)" };
        out.push_str(&format!("  latency      {}{basis}\n", latency_row(&r.latency_ms)));
        if r.mode != "closed" {
            out.push_str(&format!("  service      {}  (from actual send)\n", latency_row(&r.service_latency_ms)));
        }
    }
    let st = &r.status;
    let mut status = format!("2xx {}  3xx {}  4xx {}  5xx {}", fmt_int(st.s2xx), fmt_int(st.s3xx), fmt_int(st.s4xx), fmt_int(st.s5xx));
    if r.expected_misses > 0 {
        status.push_str(&format!("  ({} of the 4xx are deliberate misses)", fmt_int(r.expected_misses)));
    }
    if st.s1xx + st.other > 0 {
        status.push_str(&format!("  other {}", fmt_int(st.s1xx + st.other)));
    }
    out.push_str(&format!("  responses    {status}\n"));
    let e = &r.errors.kinds;
    out.push_str(&format!(
        "  errors       connect {}  timeout {}  reset {}  short body {}  protocol {}  bad status {}  ({:.3}% of requests)\n",
        fmt_int(e.connect),
        fmt_int(e.timeout),
        fmt_int(e.reset),
        fmt_int(e.short_body),
        fmt_int(e.protocol),
        fmt_int(e.bad_status),
        r.errors.rate * 100.0
    ));
    if !r.errors.connect_errnos.is_empty() {
        let list: Vec<String> = r.errors.connect_errnos.iter().map(|(k, v)| format!("{k} {}", fmt_int(*v))).collect();
        out.push_str(&format!("  connect errs {}\n", list.join(", ")));
    }
    if r.mode == "open" && r.scheduled > 0 {
        out.push_str(&format!(
            "  schedule     {} due, {} waited for a free connection{}\n",
            fmt_int(r.scheduled),
            fmt_int(r.queued),
            if r.queued * 100 > r.scheduled { " (add --connections if the server is not the bottleneck)" } else { "" }
        ));
    }
    let c = &r.connections;
    let ramp = match c.all_open_after_s {
        Some(s) => format!("all open after {s:.2} s"),
        None => "never all open at once".to_string(),
    };
    out.push_str(&format!(
        "  connections  {} opened, peak {} open, {}, {} closed by the server\n",
        fmt_int(c.opened),
        fmt_int(c.peak_open),
        ramp,
        fmt_int(c.closed_by_server)
    ));
    if c.opened > 0 {
        let f = |ms: f64| fmt_ms((ms * 1e6) as u64);
        out.push_str(&format!(
            "  handshakes   p50 {}  p99 {}  max {}{}\n",
            f(c.connect_ms.p50),
            f(c.connect_ms.p99),
            f(c.connect_ms.max),
            if c.connect_ms.p99 >= 900.0 {
                "  (≥1 s: handshakes stalled — SYNs dropped by a full accept queue, or connect() searching a nearly exhausted port range)"
            } else {
                ""
            }
        ));
    }
    for l in &r.limits {
        out.push_str(&format!(
            "  LIMIT        {} ({}): {} attempts failed; {} connections were open in that process when it was first hit\n               → {}\n",
            l.name,
            l.errno,
            fmt_int(l.count),
            fmt_int(l.connections_reached),
            l.advice
        ));
    }
    print!("{out}");
}

/// Prints what the kernel's counters say went wrong during the run (they are
/// machine-wide: another program's traffic shows up too).
/// `advised`: the accept-queue advice was already printed with a LIMIT line.
pub fn print_net_delta(before: &NetCounters, after: &NetCounters, env: &Env, advised: bool) {
    let overflows = after.listen_overflows.saturating_sub(before.listen_overflows);
    let drops = after.listen_drops.saturating_sub(before.listen_drops);
    if overflows + drops > 0 {
        println!(
            "  kernel       ListenOverflows +{} ListenDrops +{} (machine-wide): an accept queue overflowed and SYNs were dropped\n               → {}",
            fmt_int(overflows),
            fmt_int(drops),
            if advised { "see the connect-timeout LIMIT above".to_string() } else { env.advice(LimitKind::ConnectTimeout) }
        );
    }
    let softnet = after.softnet_dropped.saturating_sub(before.softnet_dropped);
    if softnet > 0 {
        println!(
            "  kernel       {} packets dropped at a full CPU input backlog (/proc/net/softnet_stat, machine-wide; loopback \
             traffic passes it too)\n               → raise net.core.netdev_max_backlog (tuning/sysctl.d/90-gomodproxy.conf)",
            fmt_int(softnet)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hist_paths_get_labels() {
        assert_eq!(hist_path(Path::new("/tmp/out.hgrm"), None), PathBuf::from("/tmp/out.hgrm"));
        assert_eq!(hist_path(Path::new("/tmp/out.hgrm"), Some("nginx")), PathBuf::from("/tmp/out-nginx.hgrm"));
        assert_eq!(hist_path(Path::new("out"), Some("127.0.0.1:80/x")), PathBuf::from("out-127.0.0.1_80_x"));
    }

    #[test]
    fn summary_rates_use_the_window() {
        let mut s = Stats::default();
        for _ in 0..100 {
            s.record_response(2_000_000, 1_000_000, 200, false, 1024 * 1024, 1000);
        }
        s.window_start_ns = 0;
        s.window_end_ns = 2_000_000_000;
        let info = RunInfo { label: "x", target: "http://127.0.0.1:1", mode: "closed", rate: None, connections: 4 };
        let r = RunSummary::new(&info, &s, &Env::default());
        assert_eq!(r.requests, 100);
        assert!((r.throughput_rps - 50.0).abs() < 1e-9);
        assert!((r.throughput_mib_s - 50.0).abs() < 1e-9);
        assert!((r.latency_ms.p50 - 2.0).abs() < 0.01);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["status"]["2xx"], 100);
        assert_eq!(json["errors"]["timeout"], 0);
        assert_eq!(json["errors"]["total"], 0);
    }
}
