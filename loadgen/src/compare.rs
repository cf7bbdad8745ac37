//! `loadgen compare`: the same load against several targets, alternated in
//! rounds (round r starts with target r mod N so warm-up and drift do not
//! favour one), then each target's figures and its ratios to the first.

use serde::{Deserialize, Serialize};

use crate::cli::CompareArgs;
use crate::limits::net_counters;
use crate::plan::{prepare, Need};
use crate::report::{print_net_delta, print_run, Report, RunInfo, RunSummary};
use crate::stats::Stats;
use crate::util::{fmt_ms, fmt_rate};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoundFigure {
    pub round: usize,
    pub throughput_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompareTarget {
    pub label: String,
    pub url: String,
    /// All rounds together.
    pub throughput_rps: f64,
    pub throughput_mib_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub error_rate: f64,
    /// This target's figure divided by the baseline's (the first target).
    pub throughput_ratio: f64,
    pub p50_ratio: f64,
    pub p99_ratio: f64,
    /// Relative spread (stdev/mean) of throughput across rounds: how much to trust the ratios.
    pub throughput_cv: f64,
    pub rounds: Vec<RoundFigure>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompareReport {
    pub baseline: String,
    pub rounds: usize,
    pub turn_duration_s: f64,
    pub targets: Vec<CompareTarget>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

pub fn main(args: &CompareArgs) -> Result<i32, String> {
    let plan = prepare(&args.common, Need::Several)?;
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let n = plan.targets.len();
    let mode = if args.rate.is_some() { "open" } else { "closed" };
    eprintln!(
        "loadgen compare: {} | {} rounds × {} targets × {:.1?} | {} | {}",
        plan.targets.iter().map(|t| format!("{}={}", t.label, t.url)).collect::<Vec<_>>().join(", "),
        args.rounds,
        n,
        args.duration,
        match args.rate {
            Some(r) => format!("open loop at {} req/s", fmt_rate(r)),
            None => "closed loop".into(),
        },
        plan.describe()
    );
    let net_before = net_counters();
    let mut report = Report::new("compare", &plan.env, net_before.clone());
    let mut totals: Vec<Stats> = (0..n).map(|_| Stats::identity()).collect();
    let mut windows = vec![0u64; n];
    let mut peaks = vec![0u64; n];
    let mut figures: Vec<Vec<RoundFigure>> = vec![Vec::new(); n];
    for round in 0..args.rounds {
        for k in 0..n {
            if crate::sys::interrupted() {
                break;
            }
            let ti = (round + k) % n;
            let target = &plan.targets[ti];
            let spec = plan.spec(target, args.rate, args.duration, None, args.warmup, false);
            let prefix = format!("r{}/{} {} ", round + 1, args.rounds, target.label);
            let stats = plan.run(&spec, &prefix, &mut |_, _| {})?;
            let label = format!("{} round {}", target.label, round + 1);
            let info = RunInfo { label: &label, target: &target.url, mode, rate: args.rate, connections: plan.connections };
            let s = RunSummary::new(&info, &stats, &plan.env);
            eprintln!(
                "round {}/{} {:<16} {:>10} req/s  p50 {:>9}  p99 {:>9}  errors {}",
                round + 1,
                args.rounds,
                target.label,
                fmt_rate(s.throughput_rps),
                fmt_ms((s.latency_ms.p50 * 1e6) as u64),
                fmt_ms((s.latency_ms.p99 * 1e6) as u64),
                s.errors.total + s.errors.kinds.connect
            );
            figures[ti].push(RoundFigure {
                round: round + 1,
                throughput_rps: s.throughput_rps,
                p50_ms: s.latency_ms.p50,
                p99_ms: s.latency_ms.p99,
                errors: s.errors.total,
            });
            windows[ti] += stats.window_ns();
            peaks[ti] = peaks[ti].max(stats.peak_open);
            totals[ti].merge(&stats);
            report.runs.push(s);
        }
    }
    let net_after = net_counters();

    // Each target's rounds together: windows add up (they did not overlap).
    let mut summaries = Vec::new();
    for (i, t) in plan.targets.iter().enumerate() {
        totals[i].window_start_ns = 0;
        totals[i].window_end_ns = windows[i];
        // Merging adds gauges (right for concurrent workers); rounds ran one
        // after another, so the peak is the highest round's.
        totals[i].peak_open = peaks[i];
        let info = RunInfo { label: &t.label, target: &t.url, mode, rate: args.rate, connections: plan.connections };
        summaries.push(RunSummary::new(&info, &totals[i], &plan.env));
    }
    println!("== compare: {} rounds of {:.1?} per target", args.rounds, args.duration);
    for s in &summaries {
        print_run(s);
    }
    let base = &summaries[0];
    let mut targets = Vec::new();
    for (i, s) in summaries.iter().enumerate() {
        let tp: Vec<f64> = figures[i].iter().map(|f| f.throughput_rps).collect();
        let mean = tp.iter().sum::<f64>() / tp.len().max(1) as f64;
        let var = tp.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / tp.len().max(1) as f64;
        targets.push(CompareTarget {
            label: s.label.clone(),
            url: s.target.clone(),
            throughput_rps: s.throughput_rps,
            throughput_mib_s: s.throughput_mib_s,
            p50_ms: s.latency_ms.p50,
            p90_ms: s.latency_ms.p90,
            p99_ms: s.latency_ms.p99,
            p999_ms: s.latency_ms.p999,
            max_ms: s.latency_ms.max,
            error_rate: s.errors.rate,
            throughput_ratio: ratio(s.throughput_rps, base.throughput_rps),
            p50_ratio: ratio(s.latency_ms.p50, base.latency_ms.p50),
            p99_ratio: ratio(s.latency_ms.p99, base.latency_ms.p99),
            throughput_cv: if mean > 0.0 { var.sqrt() / mean } else { 0.0 },
            rounds: figures[i].clone(),
        });
    }
    print_comparison(&targets);
    print_net_delta(&net_before, &net_after, &plan.env, false);

    let hists: Vec<(String, &crate::hist::Hist)> = plan.targets.iter().zip(&totals).map(|(t, s)| (t.label.clone(), &s.latency)).collect();
    let title = format!(
        "loadgen compare — {} ({})",
        plan.targets.iter().map(|t| t.label.as_str()).collect::<Vec<_>>().join(" vs "),
        match args.rate {
            Some(r) => format!("open loop {} req/s", fmt_rate(r)),
            None => format!("closed loop, {} connections", plan.connections),
        }
    );
    plan.write_files(&title, &hists, None)?;
    // Per-target totals go after the per-round runs in the JSON too.
    report.runs.extend(summaries);
    report.net_after = net_after;
    report.compare = Some(CompareReport {
        baseline: plan.targets[0].label.clone(),
        rounds: args.rounds,
        turn_duration_s: args.duration.as_secs_f64(),
        targets,
    });
    plan.write_json(&report)?;
    let any_empty = totals.iter().any(|s| s.responses == 0);
    Ok(if any_empty { 1 } else { 0 })
}

fn print_comparison(targets: &[CompareTarget]) {
    let base = &targets[0].label;
    println!("== ratios to {base}");
    println!(
        "{:<16} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9}   {:>10} {:>8} {:>8}",
        "target", "req/s", "±rounds", "p50", "p90", "p99", "p99.9", "throughput", "p50", "p99"
    );
    for t in targets {
        let ms = |v: f64| fmt_ms((v * 1e6) as u64);
        println!(
            "{:<16} {:>12} {:>8.1}% {:>9} {:>9} {:>9} {:>9}   {:>9.2}x {:>7.2}x {:>7.2}x",
            t.label,
            fmt_rate(t.throughput_rps),
            t.throughput_cv * 100.0,
            ms(t.p50_ms),
            ms(t.p90_ms),
            ms(t.p99_ms),
            ms(t.p999_ms),
            t.throughput_ratio,
            t.p50_ratio,
            t.p99_ratio
        );
    }
}
