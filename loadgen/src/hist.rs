//! Latency histograms: the one HdrHistogram configuration every part of
//! loadgen records into (nanoseconds, 3 significant digits, up to an hour),
//! its compact wire form between worker processes, and the classic `.hgrm`
//! percentile-distribution text that HdrHistogram's plotter and wrk2 use.

use std::io::{self, Write};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub type Hist = Histogram<u64>;

/// Highest recordable latency; larger values saturate to it.
pub const MAX_NS: u64 = 3_600 * 1_000_000_000;

pub fn new_hist() -> Hist {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("static histogram bounds are valid")
}

/// Sparse `(value, count)` pairs of the non-empty buckets: a few hundred
/// entries, cheap to send as JSON from a worker process each second.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WireHist(pub Vec<(u64, u64)>);

impl WireHist {
    pub fn from_hist(h: &Hist) -> WireHist {
        WireHist(h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect())
    }

    pub fn into_hist(self) -> Hist {
        let mut h = new_hist();
        for (v, c) in self.0 {
            h.saturating_record_n(v, c);
        }
        h
    }
}

/// The percentiles every table and report shows, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
    pub mean: f64,
}

pub fn percentiles(h: &Hist) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        p9999: h.value_at_quantile(0.9999),
        max: h.max(),
        mean: h.mean(),
    }
}

/// Points of the percentile curve as (quantile, value in ns), the way the
/// classic distribution output iterates: 5 ticks per halving of the
/// distance to 100 %.
pub fn quantile_curve(h: &Hist) -> Vec<(f64, u64)> {
    h.iter_quantiles(5).map(|v| (v.quantile_iterated_to(), v.value_iterated_to())).collect()
}

/// Writes `h` in HdrHistogram's classic percentile-distribution format
/// (`AbstractHistogram.outputPercentileDistribution`, as wrk2 prints it),
/// values in milliseconds. Six decimals instead of the classic
/// sigfig-many: loopback latencies are tens of microseconds, and the
/// plotter and other readers parse any float.
pub fn write_hgrm<W: Write>(h: &Hist, out: &mut W) -> io::Result<()> {
    const SCALE: f64 = 1e6; // ns → ms
    writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")?;
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / SCALE;
        if q < 1.0 {
            writeln!(out, "{value:12.6} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q))?;
        } else {
            writeln!(out, "{value:12.6} {q:2.12} {total:10}")?;
        }
    }
    let (mean, stdev, max) = if h.is_empty() { (0.0, 0.0, 0.0) } else { (h.mean() / SCALE, h.stdev() / SCALE, h.max() as f64 / SCALE) };
    writeln!(out, "#[Mean    = {mean:12.6}, StdDeviation   = {stdev:12.6}]")?;
    writeln!(out, "#[Max     = {max:12.6}, Total count    = {:12}]", h.len())?;
    writeln!(out, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), sub_bucket_count(h))?;
    Ok(())
}

/// The sub-bucket count HdrHistogram derives from the significant digits:
/// the smallest power of two at least 2·10^sigfig.
fn sub_bucket_count(h: &Hist) -> u64 {
    (2 * 10u64.pow(h.sigfig() as u32)).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Hist {
        let mut h = new_hist();
        for i in 1..=10_000u64 {
            h.record(i * 1_000).unwrap(); // 1 µs .. 10 ms
        }
        h
    }

    #[test]
    fn hgrm_has_the_classic_shape() {
        let h = sample();
        let mut out = Vec::new();
        write_hgrm(&h, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "       Value     Percentile TotalCount 1/(1-Percentile)");
        assert_eq!(lines[1], "");
        let rows: Vec<Vec<&str>> = lines[2..].iter().take_while(|l| !l.starts_with('#')).map(|l| l.split_whitespace().collect()).collect();
        assert!(rows.len() > 20);
        let mut last_q = -1.0;
        let mut last_count = 0;
        for (i, r) in rows.iter().enumerate() {
            let q: f64 = r[1].parse().unwrap();
            let count: u64 = r[2].parse().unwrap();
            assert!(q >= last_q && count >= last_count, "row {i} not monotonic");
            assert_eq!(r[1].split('.').nth(1).unwrap().len(), 12, "12 decimals in {r:?}");
            if i + 1 < rows.len() {
                assert_eq!(r.len(), 4, "{r:?}");
                let inv: f64 = r[3].parse().unwrap();
                assert!((inv - 1.0 / (1.0 - q)).abs() / inv < 0.01);
            } else {
                assert_eq!(r.len(), 3, "last row has no 1/(1-p): {r:?}");
                assert_eq!(r[1], "1.000000000000");
                assert_eq!(count, 10_000);
            }
            last_q = q;
            last_count = count;
        }
        // Values are milliseconds: the 50th percentile of 1..10 ms is ~5 ms.
        let median: f64 = rows.iter().find(|r| r[1].starts_with("0.5")).unwrap()[0].parse().unwrap();
        assert!((median - 5.0).abs() < 0.05, "median {median}");
        let footer: Vec<&str> = lines.iter().filter(|l| l.starts_with("#[")).copied().collect();
        assert_eq!(footer.len(), 3);
        assert!(footer[0].starts_with("#[Mean    = ") && footer[0].contains(", StdDeviation   = "));
        assert!(footer[1].starts_with("#[Max     = ") && footer[1].ends_with("Total count    =        10000]"));
        assert!(footer[2].starts_with("#[Buckets = ") && footer[2].ends_with("SubBuckets     =         2048]"));
    }

    #[test]
    fn wire_round_trip_preserves_percentiles() {
        let h = sample();
        let back = WireHist::from_hist(&h).into_hist();
        assert_eq!(back.len(), h.len());
        assert_eq!(percentiles(&back), percentiles(&h));
        let json = serde_json::to_string(&WireHist::from_hist(&h)).unwrap();
        let again: WireHist = serde_json::from_str(&json).unwrap();
        assert_eq!(again.into_hist().value_at_quantile(0.99), h.value_at_quantile(0.99));
    }

    #[test]
    fn empty_histogram_prints_a_valid_file() {
        let mut out = Vec::new();
        write_hgrm(&new_hist(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Total count    =            0]"));
    }
}
