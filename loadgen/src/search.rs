//! `loadgen search`: capacity search. Open-loop steps at rising rates until a
//! step breaks the SLO (p99, error rate, or the rate could not be sent at
//! all); the answer is the highest rate that held, with every step's figures.

use serde::{Deserialize, Serialize};

use crate::cli::SearchArgs;
use crate::hist::Hist;
use crate::limits::net_counters;
use crate::plan::{prepare, Need};
use crate::report::{print_net_delta, Report, RunInfo, RunSummary};
use crate::util::{fmt_ms, fmt_rate};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepReport {
    pub step: usize,
    /// Scheduled rate (req/s).
    pub rate: f64,
    pub achieved_rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub error_rate: f64,
    /// Requests that waited for a free connection.
    pub queued: u64,
    /// CPU cores loadgen itself used during the step: near its thread count
    /// means the client, not the server, was the bottleneck.
    pub client_cpu_cores: f64,
    pub passed: bool,
    /// Why the step failed ("" when it passed).
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchReport {
    pub slo_p99_ms: f64,
    pub max_error_rate: f64,
    pub step_duration_s: f64,
    pub steps: Vec<StepReport>,
    /// Highest rate that held (None: not even the first step).
    pub best_rate: Option<f64>,
    pub best_step: Option<usize>,
    pub stopped_because: String,
}

/// CPU seconds used by this process and its reaped worker processes.
fn cpu_seconds() -> f64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: zeroed rusage is valid; getrusage fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid out-pointer.
        unsafe { libc::getrusage(who, &mut ru) };
        for tv in [ru.ru_utime, ru.ru_stime] {
            total += tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        }
    }
    total
}

/// Judges a step against the SLO; "" when it held.
pub fn verdict(s: &RunSummary, rate: f64, slo_p99_ms: f64, max_error_rate: f64) -> String {
    if s.requests == 0 {
        "no responses".into()
    } else if s.errors.rate > max_error_rate {
        format!("error rate {:.3}% > {:.3}%", s.errors.rate * 100.0, max_error_rate * 100.0)
    } else if s.latency_ms.p99 > slo_p99_ms {
        format!("p99 {} > SLO {}", fmt_ms((s.latency_ms.p99 * 1e6) as u64), fmt_ms((slo_p99_ms * 1e6) as u64))
    } else if s.throughput_rps < 0.9 * rate {
        format!("only {} req/s of {} sent and answered", fmt_rate(s.throughput_rps), fmt_rate(rate))
    } else {
        String::new()
    }
}

pub fn main(args: &SearchArgs) -> Result<i32, String> {
    let plan = prepare(&args.common, Need::One)?;
    let target = &plan.targets[0];
    let factor = args.factor.unwrap_or(1.5);
    if args.increment.is_none() && factor <= 1.0 {
        return Err("--factor must be above 1".into());
    }
    if args.max_steps == 0 {
        return Err("--max-steps must be at least 1".into());
    }
    let slo_ms = args.slo_p99.as_secs_f64() * 1e3;
    let grow = |r: f64| match args.increment {
        Some(inc) => r + inc,
        None => r * factor,
    };
    eprintln!(
        "loadgen search: {} → {} | SLO p99 ≤ {}, errors ≤ {:.3}% | from {} req/s {} | {:.1?} steps | {}",
        target.label,
        target.url,
        fmt_ms(args.slo_p99.as_nanos() as u64),
        args.max_error_rate * 100.0,
        fmt_rate(args.start),
        match args.increment {
            Some(i) => format!("+{}", fmt_rate(i)),
            None => format!("×{factor}"),
        },
        args.step_duration,
        plan.describe()
    );
    let net_before = net_counters();
    let mut report = Report::new("search", &plan.env, net_before.clone());
    let mut steps: Vec<StepReport> = Vec::new();
    let mut hists: Vec<(String, Hist)> = Vec::new();
    let mut run_step = |rate: f64, steps: &mut Vec<StepReport>, report: &mut Report| -> Result<bool, String> {
        let n = steps.len() + 1;
        let spec = plan.spec(target, Some(rate), args.step_duration, None, args.warmup, false);
        let (cpu0, t0) = (cpu_seconds(), std::time::Instant::now());
        let stats = plan.run(&spec, &format!("step {n} @ {} ", fmt_rate(rate)), &mut |_, _| {})?;
        let cores = (cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64().max(1e-9);
        let info = RunInfo {
            label: &format!("step {n} ({} req/s)", fmt_rate(rate)),
            target: &target.url,
            mode: "open",
            rate: Some(rate),
            connections: plan.connections,
        };
        let s = RunSummary::new(&info, &stats, &plan.env);
        let reason = verdict(&s, rate, slo_ms, args.max_error_rate);
        let step = StepReport {
            step: n,
            rate,
            achieved_rps: s.throughput_rps,
            p50_ms: s.latency_ms.p50,
            p90_ms: s.latency_ms.p90,
            p99_ms: s.latency_ms.p99,
            p999_ms: s.latency_ms.p999,
            max_ms: s.latency_ms.max,
            error_rate: s.errors.rate,
            queued: s.queued,
            client_cpu_cores: cores,
            passed: reason.is_empty(),
            reason,
        };
        eprintln!("{}", step_line(&step));
        for l in &s.limits {
            eprintln!("   limit: {} ({}) → {}", l.name, l.errno, l.advice);
        }
        hists.push((format!("{} req/s", fmt_rate(rate)), stats.latency));
        report.runs.push(s);
        let passed = step.passed;
        steps.push(step);
        Ok(passed)
    };

    let mut rate = args.start;
    let mut last_good: Option<f64> = None;
    let mut first_bad: Option<f64> = None;
    let mut stopped = format!("reached --max-steps ({})", args.max_steps);
    for _ in 0..args.max_steps {
        if crate::sys::interrupted() {
            stopped = "interrupted".into();
            break;
        }
        if args.max_rate.is_some_and(|m| rate > m * (1.0 + 1e-9)) {
            stopped = "reached --max-rate".into();
            break;
        }
        if run_step(rate, &mut steps, &mut report)? {
            last_good = Some(rate);
            rate = grow(rate);
        } else {
            first_bad = Some(rate);
            stopped = format!("step at {} req/s failed: {}", fmt_rate(rate), steps.last().map(|s| s.reason.as_str()).unwrap_or(""));
            break;
        }
    }
    for _ in 0..args.refine {
        let (Some(good), Some(bad)) = (last_good, first_bad) else { break };
        if crate::sys::interrupted() {
            break;
        }
        if (bad - good) / good < 0.02 {
            break;
        }
        let mid = (good + bad) / 2.0;
        if run_step(mid, &mut steps, &mut report)? {
            last_good = Some(mid);
        } else {
            first_bad = Some(mid);
        }
    }
    let net_after = net_counters();

    let best_step = steps.iter().filter(|s| s.passed).max_by(|a, b| a.rate.total_cmp(&b.rate)).map(|s| s.step);
    let best_rate = best_step.map(|i| steps[i - 1].rate);
    println!("== capacity search: {} ({})", target.label, target.url);
    println!("{}", step_header());
    for s in &steps {
        println!("{}", step_line(s));
    }
    match best_step {
        Some(i) => {
            let s = &steps[i - 1];
            println!(
                "highest rate that held: {} req/s (step {}: achieved {} req/s, p99 {}, errors {:.3}%) — stopped: {}",
                fmt_rate(s.rate),
                s.step,
                fmt_rate(s.achieved_rps),
                fmt_ms((s.p99_ms * 1e6) as u64),
                s.error_rate * 100.0,
                stopped
            );
        }
        None => println!("no rate held: not even {} req/s met the SLO — stopped: {stopped}", fmt_rate(args.start)),
    }
    if steps.iter().any(|s| !s.passed && s.client_cpu_cores >= 0.9 * plan.threads.min(plan.env.cpus) as f64) {
        println!("note: loadgen used about all its CPU in a failing step; the client may be the bottleneck (give loadgen more CPUs and --threads, or another host)");
    }
    print_net_delta(&net_before, &net_after, &plan.env, false);

    let labelled: Vec<(String, &Hist)> = hists.iter().map(|(l, h)| (l.clone(), h)).collect();
    plan.write_files(
        &format!("loadgen search — {} (SLO p99 {})", target.label, fmt_ms(args.slo_p99.as_nanos() as u64)),
        &labelled,
        Some(slo_ms),
    )?;
    report.net_after = net_after;
    report.search = Some(SearchReport {
        slo_p99_ms: slo_ms,
        max_error_rate: args.max_error_rate,
        step_duration_s: args.step_duration.as_secs_f64(),
        steps,
        best_rate,
        best_step,
        stopped_because: stopped,
    });
    plan.write_json(&report)?;
    Ok(0)
}

fn step_header() -> String {
    format!(
        "{:>4} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>5}  verdict",
        "step", "rate/s", "achieved/s", "p50", "p90", "p99", "p99.9", "max", "errors", "queued", "cpu"
    )
}

fn step_line(s: &StepReport) -> String {
    let ms = |v: f64| fmt_ms((v * 1e6) as u64);
    format!(
        "{:>4} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7.3}% {:>8} {:>5.2}  {}",
        s.step,
        fmt_rate(s.rate),
        fmt_rate(s.achieved_rps),
        ms(s.p50_ms),
        ms(s.p90_ms),
        ms(s.p99_ms),
        ms(s.p999_ms),
        ms(s.max_ms),
        s.error_rate * 100.0,
        s.queued,
        s.client_cpu_cores,
        if s.passed { "ok".to_string() } else { format!("FAIL: {}", s.reason) }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Env;
    use crate::stats::Stats;

    fn summary(p99_ns: u64, errors: u64, responses: u64, secs: u64) -> RunSummary {
        let mut s = Stats::default();
        for _ in 0..responses {
            s.record_response(p99_ns, p99_ns, 200, false, 100, 10);
        }
        s.errors.timeout = errors;
        s.window_start_ns = 0;
        s.window_end_ns = secs * 1_000_000_000;
        RunSummary::new(&RunInfo { label: "s", target: "t", mode: "open", rate: Some(100.0), connections: 1 }, &s, &Env::default())
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(&summary(1_000_000, 0, 1000, 10), 100.0, 5.0, 0.01), "");
        assert!(verdict(&summary(9_000_000, 0, 1000, 10), 100.0, 5.0, 0.01).starts_with("p99"));
        assert!(verdict(&summary(1_000_000, 100, 1000, 10), 100.0, 5.0, 0.01).starts_with("error rate"));
        assert!(verdict(&summary(1_000_000, 0, 500, 10), 100.0, 5.0, 0.01).starts_with("only"));
        assert_eq!(verdict(&summary(1_000_000, 0, 0, 10), 100.0, 5.0, 0.01), "no responses");
    }
}
