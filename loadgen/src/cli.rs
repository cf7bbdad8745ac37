//! The command line: subcommands `run`, `search`, `compare` and `hold`, their
//! shared flag groups, and the help text with examples for every mode.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::util::{parse_count, parse_duration, parse_rate};
use crate::workload::{Mix, DEFAULT_MIX};

const ABOUT: &str = "HTTP/1.1 load generator for gomodproxy: latency percentiles under closed- or open-loop load, \
capacity search against a p99 SLO, A/B comparison of servers, and idle-connection holding";

const LONG_ABOUT: &str = "\
HTTP/1.1 load generator for gomodproxy (plain TCP, keep-alive, one request in flight per connection).

Modes:
  run      Closed loop (each connection sends its next request as soon as the answer arrives) or,
           with --rate, open loop: requests are scheduled at a fixed rate and latency is measured
           from each request's INTENDED send time, so a stalled server cannot hide its stall
           (the coordinated-omission correction of wrk2).
  search   Capacity search: steps the open-loop rate up until p99 exceeds --slo-p99 or the error
           rate exceeds --max-error-rate, then reports the highest rate that held and every step.
  compare  Several targets in one run, alternated in rounds, with throughput and p99 ratios
           (e.g. gomodproxy against nginx serving the same files).
  hold     Opens N idle keep-alive connections and holds them (optionally with a trickle of
           requests) to measure memory per connection and find the connection limit.

What to request (one of):
  --url URL ...          fixed URLs, round-robin
  --path PATH ...        fixed paths under each --target, round-robin
  --modules FILE         a module@version list, popularity in file order (Zipf-distributed)
  --tree DIR             modules discovered in a GOPROXY file tree (<module>/@v/<version>.info|.mod|.zip)
With --modules/--tree each connection behaves like a Go client running `go mod download`:
list -> .info -> .mod -> .zip (--mix sets how often each step occurs; --miss-ratio asks for
versions that do not exist).

Connections at scale: connections are spread over worker threads and, beyond one process's
open-file limit, over worker processes (--processes), and over many 127.0.0.x source addresses
(--source-ips) so neither the per-process fd limit nor the ephemeral port range caps the count.
When a limit is hit anyway, the report names it (EMFILE, EADDRNOTAVAIL, ...), the number of
connections reached, and the setting that lifts it.

Every run is bounded (--duration or --requests). Targets must be loopback (127.0.0.0/8, ::1,
localhost) unless --allow-remote is given.

Output: a progress line every second on stderr, a final table on stdout, and optionally a JSON
report (--json), HdrHistogram percentile files (--hist, .hgrm), and an SVG latency plot (--plot).";

const EXAMPLES: &str = "\
Examples:
  # 10 s closed loop, 64 connections, one URL
  loadgen run --url http://127.0.0.1:8080/example.com/a/@v/v1.0.0.zip -c 64 -d 10s

  # open loop at 20k req/s over a Go-like workload from a proxy tree, 5 % misses
  loadgen run --target http://127.0.0.1:8080 --tree /srv/goproxy --rate 20k -c 256 -d 30s --miss-ratio 0.05 \\
      --json run.json --hist run.hgrm --plot run.svg

  # highest rate whose p99 stays under 5 ms
  loadgen search --target http://127.0.0.1:8080 --modules mods.txt --slo-p99 5ms --start 5k --factor 1.5

  # gomodproxy vs nginx on the same files, 5 rounds of 10 s each
  loadgen compare --target gomodproxy=http://127.0.0.1:8080 --target nginx=http://127.0.0.1:8081 \\
      --tree /srv/goproxy --rounds 5 -d 10s --plot compare.svg

  # hold 100k idle connections for a minute and measure the server's memory per connection
  loadgen hold --target http://127.0.0.1:8080 -c 100k -d 60s --watch-pid $(pidof gomodproxy)

Run `loadgen <mode> --help` for each mode's flags.";

#[derive(Parser, Debug)]
#[command(name = "loadgen", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Closed-loop or fixed-rate (open-loop) load against one target.
    #[command(
        long_about = "Closed-loop or fixed-rate (open-loop) load against one target.\n\
\n\
Without --rate: closed loop, each of the --connections sends its next request as soon as the\n\
previous answer arrives (measures throughput; latency then includes no queueing).\n\
With --rate: open loop, requests are due at a fixed rate whatever the server does; each one is sent\n\
on the next free connection and its latency counts from when it was DUE, so stalls and queueing show\n\
up in the percentiles (coordinated-omission correction). The table also shows the service time (from\n\
the actual send) for contrast.",
        after_help = "Examples:\n  \
loadgen run --url http://127.0.0.1:8080/example.com/a/@v/list -c 32 -d 10s\n  \
loadgen run --url http://127.0.0.1:8080/example.com/a/@v/v1.0.0.info --url http://127.0.0.1:8080/example.com/a/@v/v1.0.0.zip -n 100000\n  \
loadgen run --target http://127.0.0.1:8080 --modules mods.txt --zipf 1.1 --rate 5000 -c 128 -d 30s --warmup 5s\n  \
loadgen run --target http://127.0.0.1:8080 --tree /srv/goproxy --mix info=1,mod=1,zip=0.2 --miss-ratio 0.1 -d 20s --json out.json"
    )]
    Run(RunArgs),

    /// Capacity search: raise the open-loop rate until p99 or errors break the SLO.
    #[command(
        long_about = "Capacity search: runs open-loop steps at rising rates (--start, then ×--factor or +--increment per\n\
step, each --step-duration long) until a step's p99 exceeds --slo-p99, its error rate exceeds --max-\n\
error-rate, or loadgen could not even send the rate; then reports the highest rate that held and the\n\
table of every step. --refine N bisects between the last good and the first bad rate.",
        after_help = "Examples:\n  \
loadgen search --target http://127.0.0.1:8080 --tree /srv/goproxy --slo-p99 5ms --start 2k --factor 1.5\n  \
loadgen search --url http://127.0.0.1:8080/example.com/a/@v/v1.0.0.mod --slo-p99 1ms --start 10k --increment 10k --step-duration 5s -c 512 --refine 3"
    )]
    Search(SearchArgs),

    /// Alternate several targets in rounds and compare throughput and latency.
    #[command(
        long_about = "Runs the same load against several --target base URLs, alternating them in rounds (round r starts\n\
with target r mod N, so drift and warm-up don't favour one), then prints each target's figures and\n\
its ratios to the first target (throughput ratio, p50/p99 ratios). The request paths are identical\n\
under every base URL. Closed loop by default, open loop with --rate.",
        after_help = "Examples:\n  \
loadgen compare --target gomodproxy=http://127.0.0.1:8080 --target nginx=http://127.0.0.1:8081 --tree /srv/goproxy --rounds 5 -d 10s\n  \
loadgen compare --target a=http://127.0.0.1:8080 --target b=http://127.0.0.1:8081 --path /example.com/a/@v/v1.0.0.zip --rate 10k -c 256 --plot ab.svg"
    )]
    Compare(CompareArgs),

    /// Open N idle keep-alive connections and hold them (memory per connection, limits).
    #[command(
        long_about = "Opens --connections idle keep-alive connections to the target (at most --connect-concurrency\n\
handshakes in flight per worker thread), holds them for --duration, optionally sending a --trickle\n\
of requests spread over them, and reports how many were reached, how long it took, and which limit\n\
stopped it if any. With --watch-pid the server's resident memory is sampled before and at the peak\n\
to give bytes per idle connection. Connections are spread over worker processes (each has its own\n\
open-file limit) and 127.0.0.x source addresses (each has its own ephemeral port range). When a\n\
limit stops it anyway, the report names it (EMFILE, EADDRNOTAVAIL, dropped SYNs, the server's own\n\
cap), the number reached, and the setting under tuning/ that lifts it; `tuning/preflight --role\n\
loadgen --connections N` checks a host beforehand.",
        after_help = "Examples:\n  \
loadgen hold --target http://127.0.0.1:8080 -c 10k -d 30s\n  \
loadgen hold --target http://127.0.0.1:8080 -c 200k -d 60s --watch-pid 1234 --json hold.json\n  \
loadgen hold --target http://127.0.0.1:8081 -c 60k -d 30s --watch-pid $(pgrep -d, -f 'nginx: worker')\n  \
loadgen hold --target http://127.0.0.1:8080 -c 50k -d 60s --trickle 100 --path /example.com/a/@v/list"
    )]
    Hold(HoldArgs),

    /// Internal: a worker process started by --processes (reads its phase on stdin).
    #[command(name = "__worker", hide = true)]
    Worker,
}

/// Where to send requests and which ones.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// Server base URL: [NAME=]http://HOST:PORT[/PREFIX] (repeat for compare).
    #[arg(long = "target", value_name = "[NAME=]URL")]
    pub targets: Vec<String>,

    /// Full URL to request, repeatable (round-robin); sets the target too.
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,

    /// Path to request under the target, repeatable (round-robin).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,

    /// Allow targets outside loopback (127.0.0.0/8, ::1). Never point this at a server you do not run.
    #[arg(long)]
    pub allow_remote: bool,
}

/// The Go-client-like workload.
#[derive(Args, Debug, Clone)]
pub struct WorkloadArgs {
    /// Module list: one module@version per line, most popular first.
    #[arg(long, value_name = "FILE", conflicts_with = "tree")]
    pub modules: Option<PathBuf>,

    /// GOPROXY file tree to discover modules in (<escaped module>/@v/<version>.info|.mod|.zip).
    #[arg(long, value_name = "DIR")]
    pub tree: Option<PathBuf>,

    /// Zipf exponent of module popularity (0 = uniform, 1 = classic, >1 = steeper).
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    pub zipf: f64,

    /// Probability of each step in a client's walk: list (resolving @latest), info, mod, zip.
    #[arg(long, default_value = DEFAULT_MIX, value_parser = Mix::parse, value_name = "STEP=P,...")]
    pub mix: Mix,

    /// Share of requests for versions that do not exist (v0.0.9xxxxxxxx.info; 404 expected).
    #[arg(long, default_value_t = 0.0, value_name = "RATIO")]
    pub miss_ratio: f64,

    /// Seed of the workload's random choices (same seed → same request sequence).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// How connections are made and spread.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Connections (k/M suffixes allowed).
    #[arg(short = 'c', long, default_value = "32", value_parser = parse_count)]
    pub connections: u64,

    /// Worker threads in all (default: one per CPU, at most one per connection).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,

    /// Worker processes: `auto` starts as many as the per-process open-file limit requires.
    #[arg(long, default_value = "auto", value_name = "N|auto")]
    pub processes: String,

    /// Loopback source addresses to bind: `auto` (as many as the ephemeral port range needs),
    /// a count N (127.0.0.1..N), or a list/range like 127.0.0.2-127.0.0.40.
    #[arg(long, default_value = "auto", value_name = "auto|N|LIST")]
    pub source_ips: String,

    /// Handshakes in flight per worker thread (keeps the server's accept queue from overflowing).
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,

    /// Time allowed for a TCP handshake.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Time allowed for a whole response (and, in open loop, for waiting for a free connection).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Reports and files.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write the latency distribution (HdrHistogram .hgrm text) here; with several runs, FILE-<label>.hgrm each.
    #[arg(long, value_name = "FILE")]
    pub hist: Option<PathBuf>,

    /// Write an SVG plot of latency by percentile (runs or targets overlaid).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// No progress lines.
    #[arg(short, long)]
    pub quiet: bool,

    /// Time between progress lines.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,

    /// Open loop at this many requests per second (k/M allowed); without it, closed loop.
    #[arg(short = 'r', long, value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// How long to run (default 10s unless --requests is given).
    #[arg(short = 'd', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many requests (k/M allowed).
    #[arg(short = 'n', long, value_parser = parse_count)]
    pub requests: Option<u64>,

    /// Leading time whose requests are not counted.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct SearchArgs {
    #[command(flatten)]
    pub common: Common,

    /// The p99 latency a step must stay under.
    #[arg(long, value_parser = parse_duration)]
    pub slo_p99: Duration,

    /// Highest share of failed requests a step may have.
    #[arg(long, default_value_t = 0.001)]
    pub max_error_rate: f64,

    /// First rate (req/s).
    #[arg(long, default_value = "1000", value_parser = parse_rate)]
    pub start: f64,

    /// Multiply the rate by this each step (default 1.5 unless --increment is given).
    #[arg(long, conflicts_with = "increment")]
    pub factor: Option<f64>,

    /// Add this rate each step instead of multiplying.
    #[arg(long, value_parser = parse_rate)]
    pub increment: Option<f64>,

    /// Length of each step.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub step_duration: Duration,

    /// Start of each step not counted (connections open and caches warm).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Most steps (the search is bounded).
    #[arg(long, default_value_t = 20)]
    pub max_steps: usize,

    /// Never try a rate above this.
    #[arg(long, value_parser = parse_rate)]
    pub max_rate: Option<f64>,

    /// Extra bisection steps between the last good and the first bad rate.
    #[arg(long, default_value_t = 0)]
    pub refine: usize,
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    #[command(flatten)]
    pub common: Common,

    /// Rounds; each round runs every target once.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,

    /// Open loop at this rate for every target; without it, closed loop.
    #[arg(short = 'r', long, value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Length of each target's turn in each round.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Start of each turn not counted.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct HoldArgs {
    #[command(flatten)]
    pub common: Common,

    /// How long to hold (from the first connection attempt).
    #[arg(short = 'd', long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Requests per second spread over the held connections (needs --url/--path/--modules/--tree).
    #[arg(long, value_parser = parse_rate)]
    pub trickle: Option<f64>,

    /// Sample these processes' resident memory (the server's PIDs; repeat or comma-separate for
    /// multi-process servers) to report bytes per connection.
    #[arg(long, value_name = "PID", value_delimiter = ',')]
    pub watch_pid: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_each_mode() {
        let c = Cli::try_parse_from(["loadgen", "run", "--url", "http://127.0.0.1:1/x", "-c", "2k", "--rate", "1.5k", "-d", "2s"]).unwrap();
        let Command::Run(r) = c.command else { panic!() };
        assert_eq!(r.common.conn.connections, 2000);
        assert_eq!(r.rate, Some(1500.0));
        let c = Cli::try_parse_from(["loadgen", "search", "--target", "http://127.0.0.1:1", "--path", "/x", "--slo-p99", "5ms"]).unwrap();
        let Command::Search(s) = c.command else { panic!() };
        assert_eq!(s.slo_p99, Duration::from_millis(5));
        assert!(Cli::try_parse_from([
            "loadgen",
            "search",
            "--target",
            "http://127.0.0.1:1",
            "--slo-p99",
            "5ms",
            "--factor",
            "2",
            "--increment",
            "5"
        ])
        .is_err());
        let c = Cli::try_parse_from(["loadgen", "hold", "--target", "http://127.0.0.1:1", "-c", "1M", "--watch-pid", "3,4"]).unwrap();
        let Command::Hold(h) = c.command else { panic!() };
        assert_eq!(h.common.conn.connections, 1_000_000);
        assert_eq!(h.watch_pid, [3, 4]);
    }
}
