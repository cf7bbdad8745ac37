//! `loadgen run`: one closed-loop or open-loop phase against one target.

use std::time::Duration;

use crate::cli::RunArgs;
use crate::hist::write_hgrm;
use crate::limits::net_counters;
use crate::plan::{prepare, Need};
use crate::report::{advised_backlog, hist_path, print_net_delta, print_run, Report, RunInfo, RunSummary};
use crate::util::fmt_rate;

/// Runs the mode; returns the process exit code.
pub fn main(args: &RunArgs) -> Result<i32, String> {
    let plan = prepare(&args.common, Need::One)?;
    let target = &plan.targets[0];
    // Bounded by design: a request budget alone still gets a (generous) time cap,
    // so an unreachable server cannot keep the run going for ever.
    let duration = match (args.duration, args.requests) {
        (Some(d), _) => d,
        (None, Some(_)) => Duration::from_secs(3600),
        (None, None) => Duration::from_secs(10),
    };
    if args.requests == Some(0) {
        return Err("--requests must be at least 1".into());
    }
    let spec = plan.spec(target, args.rate, duration, args.requests, args.warmup, false);
    let mode = if args.rate.is_some() { "open" } else { "closed" };
    let loop_desc = match args.rate {
        Some(r) => format!("open loop at {} req/s", fmt_rate(r)),
        None => "closed loop".to_string(),
    };
    let bound = match (args.duration, args.requests) {
        (_, Some(n)) => format!("{n} requests"),
        _ => format!("{:.1?}", duration),
    };
    eprintln!("loadgen run: {} → {} | {loop_desc} | {} | {bound}", target.label, target.url, plan.describe());
    let net_before = net_counters();
    let stats = plan.run(&spec, "", &mut |_, _| {})?;
    let net_after = net_counters();
    if crate::sys::interrupted() {
        eprintln!("loadgen: interrupted — the report covers the time until Ctrl-C");
    }
    let info = RunInfo { label: &target.label, target: &target.url, mode, rate: args.rate, connections: plan.connections };
    let summary = RunSummary::new(&info, &stats, &plan.env);
    print_run(&summary);
    print_net_delta(&net_before, &net_after, &plan.env, advised_backlog(&summary));

    // --hist FILE is the latency from the intended send time; open loop adds
    // FILE-service for the naive (actual send) view. The plot overlays both.
    if let Some(base) = &plan.output.hist {
        let mut hists = vec![(String::new(), &stats.latency)];
        if args.rate.is_some() {
            hists.push(("service".to_string(), &stats.service));
        }
        for (i, (label, h)) in hists.into_iter().enumerate() {
            let path = hist_path(base, (i > 0).then_some(label.as_str()));
            let mut f = std::fs::File::create(&path).map_err(|e| format!("writing {}: {e}", path.display()))?;
            write_hgrm(h, &mut f).map_err(|e| format!("writing {}: {e}", path.display()))?;
            eprintln!("loadgen: wrote {}", path.display());
        }
    }
    let mut series = vec![(target.label.clone(), &stats.latency)];
    if args.rate.is_some() {
        // The title names the target; the legend says which clock.
        series[0].0 = "latency (from intended send)".to_string();
        series.push(("service time (from actual send)".to_string(), &stats.service));
    }
    plan.write_plot(&format!("loadgen {} — {}", target.label, summary_title(&summary)), &series, None)?;
    let mut report = Report::new("run", &plan.env, net_before);
    report.net_after = net_after;
    report.runs.push(summary);
    plan.write_json(&report)?;
    Ok(if stats.responses == 0 { 1 } else { 0 })
}

fn summary_title(r: &RunSummary) -> String {
    match r.target_rate {
        Some(rate) => format!("open loop {} req/s, {} connections", fmt_rate(rate), r.connections.target),
        None => format!("closed loop, {} connections", r.connections.target),
    }
}
