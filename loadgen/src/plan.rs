//! From command-line flags to a runnable plan: validated targets, the request
//! source, how connections are spread (threads, worker processes, source
//! addresses), and the shared plumbing every mode uses to run a phase with
//! progress lines and to write its files.

use std::net::IpAddr;
use std::time::Duration;

use crate::cli::{Common, ConnArgs, OutputArgs};
use crate::engine::PhaseSpec;
use crate::limits::Env;
use crate::plot::{write_svg, Series};
use crate::procs::run_phase;
use crate::report::{hold_progress_line, progress_line, write_hists};
use crate::stats::Stats;
use crate::target::{auto_source_ips, parse_source_ips, parse_target, parse_url, Target};
use crate::util::fmt_int;
use crate::workload::{discover_tree, parse_module_list, shuffle, Source, SourceSpec, WorkloadSpec};

/// Which target/source combinations a mode accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// One target and a request source (run, search).
    One,
    /// Two or more --target and a request source (compare).
    Several,
    /// One target; a request source only for the trickle (hold).
    Hold { requests: bool },
}

pub struct Plan {
    pub targets: Vec<Target>,
    pub source_spec: SourceSpec,
    pub source: Source,
    pub env: Env,
    pub connections: usize,
    pub threads: usize,
    pub processes: usize,
    pub source_ips: Vec<IpAddr>,
    pub conn: ConnArgs,
    pub output: OutputArgs,
    pub seed: u64,
}

pub fn prepare(common: &Common, need: Need) -> Result<Plan, String> {
    let t = &common.target;
    let w = &common.workload;
    let mut targets = Vec::new();
    let mut paths = Vec::new();
    if !t.urls.is_empty() {
        if !t.targets.is_empty() || !t.paths.is_empty() {
            return Err("give either --url, or --target with --path/--modules/--tree".into());
        }
        for url in &t.urls {
            let (target, path) = parse_url(url, t.allow_remote)?;
            if let Some(first) = targets.first() {
                let first: &Target = first;
                if first.addr != target.addr || first.host != target.host {
                    return Err(format!("all --url values must share one host:port ({} vs {})", first.host, target.host));
                }
            } else {
                targets.push(target);
            }
            paths.push(if path.is_empty() { "/".to_string() } else { path });
        }
    } else {
        for spec in &t.targets {
            targets.push(parse_target(spec, t.allow_remote)?);
        }
        for p in &t.paths {
            if !p.starts_with('/') {
                return Err(format!("--path {p:?} must start with '/'"));
            }
            paths.push(p.clone());
        }
    }
    match need {
        Need::Several if targets.len() < 2 => return Err("compare needs two or more --target".into()),
        Need::Several if !t.urls.is_empty() => return Err("compare takes --target and --path, not --url".into()),
        Need::One | Need::Hold { .. } if targets.len() != 1 => {
            return Err(format!("give one target (--target or --url); got {}", targets.len()))
        }
        _ => {}
    }
    let mut labels: Vec<&str> = targets.iter().map(|t| t.label.as_str()).collect();
    labels.sort_unstable();
    if labels.windows(2).any(|p| p[0] == p[1]) {
        return Err("targets need distinct labels: use NAME=URL".into());
    }

    let workload_given = w.modules.is_some() || w.tree.is_some();
    if workload_given && !paths.is_empty() {
        return Err("give either fixed URLs/paths or a workload (--modules/--tree), not both".into());
    }
    if !(w.zipf >= 0.0 && w.zipf.is_finite()) {
        return Err("--zipf must be ≥ 0".into());
    }
    if !(0.0..1.0).contains(&w.miss_ratio) {
        return Err("--miss-ratio must be within [0, 1)".into());
    }
    let source_spec = if let Some(file) = &w.modules {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let modules = parse_module_list(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        SourceSpec::Workload(WorkloadSpec { modules, zipf: w.zipf, mix: w.mix, miss_ratio: w.miss_ratio })
    } else if let Some(dir) = &w.tree {
        let mut modules = discover_tree(dir)?;
        shuffle(&mut modules, w.seed);
        SourceSpec::Workload(WorkloadSpec { modules, zipf: w.zipf, mix: w.mix, miss_ratio: w.miss_ratio })
    } else if !paths.is_empty() {
        SourceSpec::Paths(paths)
    } else {
        match need {
            Need::Hold { requests: false } => SourceSpec::None,
            _ => return Err("say what to request: --url, --path, --modules or --tree".into()),
        }
    };

    let env = Env::read();
    let c = &common.conn;
    if c.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let connections = usize::try_from(c.connections).map_err(|_| "too many connections")?;
    let processes = if c.processes.eq_ignore_ascii_case("auto") {
        connections.div_ceil(env.conns_per_process()).max(1)
    } else {
        c.processes.parse::<usize>().ok().filter(|&n| n > 0).ok_or("--processes takes a number ≥ 1 or auto")?
    }
    .min(connections);
    let threads = c.threads.unwrap_or(env.cpus).clamp(1, connections).max(processes);
    let dst = targets[0].addr.ip();
    // Use half of each source address's ports: the rest stays free for
    // TIME_WAIT left by earlier runs and for other traffic, because connect()
    // slows to a crawl searching a nearly full port range.
    let per_source = env.ports_per_source() / 2;
    let source_ips = match parse_source_ips(&c.source_ips, t.allow_remote)? {
        Some(ips) => ips,
        None => auto_source_ips(dst, connections, per_source),
    };
    if source_ips.iter().any(|ip| ip.is_ipv4() != dst.is_ipv4()) {
        return Err(format!("--source-ips must be of the target's address family ({dst})"));
    }
    if c.connect_concurrency == 0 {
        return Err("--connect-concurrency must be at least 1".into());
    }
    let source = Source::prepare(&source_spec);
    Ok(Plan {
        targets,
        source_spec,
        source,
        env,
        connections,
        threads,
        processes,
        source_ips,
        conn: c.clone(),
        output: common.output.clone(),
        seed: w.seed,
    })
}

impl Plan {
    pub fn spec(
        &self,
        target: &Target,
        rate: Option<f64>,
        duration: Duration,
        max_requests: Option<u64>,
        warmup: Duration,
        hold: bool,
    ) -> PhaseSpec {
        PhaseSpec {
            target: target.clone(),
            connections: self.connections,
            conn_offset: 0,
            threads: self.threads,
            rate,
            pace_offset_ns: 0.0,
            duration_ns: duration.as_nanos().min(u64::MAX as u128) as u64,
            max_requests,
            warmup_ns: warmup.as_nanos() as u64,
            timeout_ns: self.conn.timeout.as_nanos() as u64,
            connect_timeout_ns: self.conn.connect_timeout.as_nanos() as u64,
            connect_concurrency: self.conn.connect_concurrency,
            source_ips: self.source_ips.clone(),
            seed: self.seed,
            interval_ns: self.output.interval.as_nanos().max(1_000_000) as u64,
            hold,
        }
    }

    /// "64 connections, 2 threads, 1 process, source 127.0.0.1–127.0.0.4"
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} connections, {} thread{}, {} process{}",
            fmt_int(self.connections as u64),
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.processes,
            if self.processes == 1 { "" } else { "es" }
        );
        match self.source_ips.as_slice() {
            [] => {}
            [one] => s.push_str(&format!(", source {one}")),
            [first, .., last] => s.push_str(&format!(", {} source addresses {first}–{last}", self.source_ips.len())),
        }
        if self.processes > 1 {
            s.push_str(&format!(" (RLIMIT_NOFILE {} per process)", fmt_int(self.env.nofile_soft)));
        }
        s
    }

    /// Runs one phase, printing a progress line per interval (prefixed) and
    /// handing each interval to `also`.
    pub fn run(&self, spec: &PhaseSpec, prefix: &str, also: &mut dyn FnMut(u32, &Stats)) -> Result<Stats, String> {
        let interval_s = spec.interval_ns as f64 / 1e9;
        let quiet = self.output.quiet;
        let mut on_interval = |index: u32, s: &Stats| {
            if !quiet {
                let elapsed = (index + 1) as f64 * interval_s;
                if spec.hold {
                    eprintln!("{}", hold_progress_line(prefix, elapsed, s));
                } else {
                    eprintln!("{}", progress_line(prefix, elapsed, interval_s, s));
                }
            }
            also(index, s);
        };
        run_phase(spec, &self.source_spec, &self.source, self.processes, &mut on_interval)
    }

    /// Writes `--hist` and `--plot` for these labelled histograms.
    pub fn write_files(&self, title: &str, hists: &[(String, &crate::hist::Hist)], slo_ms: Option<f64>) -> Result<(), String> {
        if let Some(base) = &self.output.hist {
            for p in write_hists(base, hists)? {
                eprintln!("loadgen: wrote {}", p.display());
            }
        }
        self.write_plot(title, hists, slo_ms)
    }

    pub fn write_plot(&self, title: &str, hists: &[(String, &crate::hist::Hist)], slo_ms: Option<f64>) -> Result<(), String> {
        if let Some(path) = &self.output.plot {
            let series: Vec<Series> = hists.iter().map(|(l, h)| Series { label: l.clone(), hist: h }).collect();
            write_svg(path, title, &series, slo_ms)?;
            eprintln!("loadgen: wrote {}", path.display());
        }
        Ok(())
    }

    pub fn write_json(&self, report: &crate::report::Report) -> Result<(), String> {
        if let Some(path) = &self.output.json {
            crate::report::write_json(path, report)?;
            eprintln!("loadgen: wrote {}", path.display());
        }
        Ok(())
    }
}
