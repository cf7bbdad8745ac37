//! `loadgen hold`: open N idle keep-alive connections and keep them for the
//! duration (optionally with a trickle of requests). Reports how many were
//! reached, how fast, what limit stopped the rest, and — with --watch-pid —
//! the server's resident memory per idle connection.

use serde::{Deserialize, Serialize};

use crate::cli::HoldArgs;
use crate::limits::{listen_queue, net_counters, page_size, rss_bytes};
use crate::plan::{prepare, Need};
use crate::report::{advised_backlog, print_net_delta, print_run, Report, RunInfo, RunSummary};
use crate::target::is_loopback;
use crate::util::{fmt_bytes, fmt_int, fmt_rate};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HoldReport {
    pub target_connections: usize,
    pub peak_open: u64,
    pub reached_all: bool,
    pub all_open_after_s: Option<f64>,
    pub processes: usize,
    pub source_addresses: usize,
    pub watch_pids: Vec<u32>,
    pub server_rss_before: Option<u64>,
    /// Sampled when the most connections were open.
    pub server_rss_at_peak: Option<u64>,
    pub server_bytes_per_connection: Option<f64>,
    /// Handshakes completed by the kernel but not accepted by the server, at
    /// the peak (the target's listen queue; its size is at most net.core.somaxconn).
    pub accept_queue_at_peak: Option<u64>,
    /// peak_open less the accept queue: connections the server really holds.
    pub server_accepted_at_peak: Option<u64>,
    /// Kernel TCP buffer memory (all sockets on the machine, from /proc/net/sockstat).
    pub kernel_tcp_mem_before: u64,
    pub kernel_tcp_mem_at_peak: u64,
    /// Kernel slab memory (sockets, files; machine-wide, /proc/meminfo).
    pub kernel_slab_before: u64,
    pub kernel_slab_at_peak: u64,
}

pub fn main(args: &HoldArgs) -> Result<i32, String> {
    let plan = prepare(&args.common, Need::Hold { requests: args.trickle.is_some() })?;
    let target = &plan.targets[0];
    for &pid in &args.watch_pid {
        if rss_bytes(pid).is_none() {
            return Err(format!("--watch-pid {pid}: no such process (or its /proc status is unreadable)"));
        }
    }
    // Resident memory of all watched processes together (None if none is watched).
    let rss = || -> Option<u64> { (!args.watch_pid.is_empty()).then(|| args.watch_pid.iter().filter_map(|&p| rss_bytes(p)).sum()) };
    eprintln!(
        "loadgen hold: {} → {} | {} | {:.1?}{}",
        target.label,
        target.url,
        plan.describe(),
        args.duration,
        args.trickle.map(|r| format!(" | trickle {} req/s", fmt_rate(r))).unwrap_or_default()
    );
    let page = page_size();
    let net_before = net_counters();
    let mut hold = HoldReport {
        target_connections: plan.connections,
        processes: plan.processes,
        source_addresses: plan.source_ips.len().max(1),
        watch_pids: args.watch_pid.clone(),
        server_rss_before: rss(),
        kernel_tcp_mem_before: net_before.tcp_mem_pages * page,
        kernel_slab_before: net_before.slab_bytes,
        ..HoldReport::default()
    };
    let spec = plan.spec(target, args.trickle, args.duration, None, std::time::Duration::ZERO, true);
    let mut peak = 0u64;
    let stats = plan.run(&spec, "", &mut |_, s| {
        // Sample memory whenever the open count is at its highest so far
        // (the later sample of a plateau, once the server has settled).
        if s.open >= peak && s.open > 0 {
            peak = s.open;
            if let Some(bytes) = rss() {
                hold.server_rss_at_peak = Some(bytes);
            }
            let net = net_counters();
            hold.kernel_tcp_mem_at_peak = net.tcp_mem_pages * page;
            hold.kernel_slab_at_peak = net.slab_bytes;
            if is_loopback(target.addr.ip()) {
                hold.accept_queue_at_peak = listen_queue(target.addr.port());
            }
        }
    })?;
    let net_after = net_counters();
    if crate::sys::interrupted() {
        eprintln!("loadgen: interrupted — the report covers the time until Ctrl-C");
    }
    let info = RunInfo { label: &target.label, target: &target.url, mode: "hold", rate: args.trickle, connections: plan.connections };
    let summary = RunSummary::new(&info, &stats, &plan.env);
    hold.peak_open = stats.peak_open.max(peak);
    hold.reached_all = hold.peak_open as usize >= plan.connections;
    hold.all_open_after_s = summary.connections.all_open_after_s;
    hold.server_accepted_at_peak = hold.accept_queue_at_peak.map(|q| peak.saturating_sub(q));
    let held = hold.server_accepted_at_peak.unwrap_or(peak);
    if let (Some(before), Some(at_peak)) = (hold.server_rss_before, hold.server_rss_at_peak) {
        if held > 0 {
            hold.server_bytes_per_connection = Some((at_peak as f64 - before as f64) / held as f64);
        }
    }
    print_run(&summary);
    print_hold(&hold, plan.env.somaxconn);
    let per_source = hold.peak_open as usize / hold.source_addresses.max(1);
    if per_source > plan.env.ports_per_source() / 2 {
        println!(
            "   note: {} connections per source address is over half of its {} ephemeral ports: connect() slows down \
             searching for a free port; more --source-ips keep it fast",
            fmt_int(per_source as u64),
            fmt_int(plan.env.ports_per_source() as u64)
        );
    }
    print_net_delta(&net_before, &net_after, &plan.env, advised_backlog(&summary));
    if args.trickle.is_some() {
        plan.write_files(
            &format!("loadgen hold — {} idle connections, trickle", fmt_int(hold.peak_open)),
            &[(target.label.clone(), &stats.latency)],
            None,
        )?;
    }
    let mut report = Report::new("hold", &plan.env, net_before);
    report.net_after = net_after;
    report.runs.push(summary);
    report.hold = Some(hold);
    plan.write_json(&report)?;
    Ok(0)
}

fn print_hold(h: &HoldReport, somaxconn: Option<u64>) {
    let ramp = match h.all_open_after_s {
        Some(s) => format!("all open after {s:.2} s"),
        None => "not all open at once".into(),
    };
    println!(
        "== hold: peak {} of {} connections open ({ramp}) over {} process{} and {} source address{}",
        fmt_int(h.peak_open),
        fmt_int(h.target_connections as u64),
        h.processes,
        if h.processes == 1 { "" } else { "es" },
        h.source_addresses,
        if h.source_addresses == 1 { "" } else { "es" }
    );
    if let (Some(queued), Some(accepted)) = (h.accept_queue_at_peak, h.server_accepted_at_peak) {
        let cap = somaxconn.unwrap_or(u64::MAX);
        println!(
            "   server accepted {} of them; {} waited in its accept queue (backlog ≤ net.core.somaxconn = {}){}",
            fmt_int(accepted),
            fmt_int(queued),
            somaxconn.map_or("?".into(), fmt_int),
            if queued > 0 && queued + 1 >= cap {
                " — queue full: the server stopped accepting (at its connection cap?) and further SYNs were dropped"
            } else {
                ""
            }
        );
    }
    if let (Some(before), Some(peak)) = (h.server_rss_before, h.server_rss_at_peak) {
        let pids: Vec<String> = h.watch_pids.iter().map(u32::to_string).collect();
        println!(
            "   pid {} RSS {} → {} at peak: {} per accepted connection",
            pids.join("+"),
            fmt_bytes(before),
            fmt_bytes(peak),
            h.server_bytes_per_connection.map(|b| format!("{b:.0} bytes")).unwrap_or_else(|| "n/a".into())
        );
    }
    if h.peak_open > 0 {
        // Machine-wide figures: on loopback they hold both ends of every
        // connection (and whatever else runs on the machine).
        let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / h.peak_open as f64;
        println!(
            "   kernel (machine-wide, both ends): slab {} → {} ({:.0} bytes per connection), TCP buffers {} → {} ({:.0} bytes per connection)",
            fmt_bytes(h.kernel_slab_before),
            fmt_bytes(h.kernel_slab_at_peak),
            per(h.kernel_slab_before, h.kernel_slab_at_peak),
            fmt_bytes(h.kernel_tcp_mem_before),
            fmt_bytes(h.kernel_tcp_mem_at_peak),
            per(h.kernel_tcp_mem_before, h.kernel_tcp_mem_at_peak)
        );
    }
}
