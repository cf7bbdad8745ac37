//! Small shared helpers: parsing of durations/counts/rates from the command
//! line, number formatting for the tables, and a seedable PRNG (runs must be
//! reproducible: a compare run sends the same request sequence to each target).

use std::time::Duration;

/// Parses `10s`, `500ms`, `250us`, `1.5m`, `2h`, `100ns`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 500ms, 10s or 2m"))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        u => return Err(format!("{s:?}: unknown unit {u:?} (use ns, us, ms, s, m or h)")),
    };
    let secs = n * scale;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a count with an optional k/M/G suffix (`20k`, `1M`, `1.5k`).
pub fn parse_count(s: &str) -> Result<u64, String> {
    let v = parse_scaled(s)?;
    if v.fract() != 0.0 {
        return Err(format!("{s:?} is not a whole number"));
    }
    Ok(v as u64)
}

/// Parses a rate (requests per second), `k`/`M` suffixes allowed.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let v = parse_scaled(s.trim().trim_end_matches("/s"))?;
    if v <= 0.0 {
        return Err(format!("{s:?}: a rate must be above zero"));
    }
    Ok(v)
}

fn parse_scaled(s: &str) -> Result<f64, String> {
    let t = s.trim().replace('_', "");
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        Some('G') => (&t[..t.len() - 1], 1e9),
        _ => (&t[..], 1.0),
    };
    let v: f64 = num.parse().map_err(|_| format!("{s:?} is not a number (k, M, G suffixes allowed)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s:?} is not a valid number"));
    }
    let scaled = v * mult;
    // `0.1k` must be exactly 100, but 0.1 * 1e3 is 100.00000000000001 in
    // binary: snap suffixed values that are within float noise of an integer.
    if mult > 1.0 && (scaled - scaled.round()).abs() < 1e-6 {
        Ok(scaled.round())
    } else {
        Ok(scaled)
    }
}

/// Nanoseconds as milliseconds with a precision that suits the magnitude.
pub fn fmt_ms(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms >= 100.0 {
        format!("{ms:.1}ms")
    } else if ms >= 1.0 {
        format!("{ms:.2}ms")
    } else {
        format!("{ms:.3}ms")
    }
}

/// 1234567 → "1,234,567".
pub fn fmt_int(n: u64) -> String {
    let digits = n.to_string();
    let mut groups: Vec<&str> = digits.as_bytes().rchunks(3).map(|g| std::str::from_utf8(g).expect("ASCII digits")).collect();
    groups.reverse();
    groups.join(",")
}

/// Bytes in binary units.
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// A rate with a sensible number of decimals.
pub fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        fmt_int(r.round() as u64)
    } else {
        format!("{r:.1}")
    }
}

/// SplitMix64: tiny, fast, good enough for workload sampling, and seedable
/// so every run with the same `--seed` sends the same request sequence.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_F42D_4C95_7F2D)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n) (n > 0), by multiply-shift (no modulo bias worth noting).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Derives independent per-worker seeds from one run seed.
pub fn mix_seed(seed: u64, index: u64) -> u64 {
    Rng::new(seed ^ index.wrapping_mul(0xA076_1D64_78BD_642F)).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn counts_and_rates() {
        assert_eq!(parse_count("20k").unwrap(), 20_000);
        assert_eq!(parse_count("1M").unwrap(), 1_000_000);
        assert_eq!(parse_count("1.5k").unwrap(), 1500);
        assert_eq!(parse_count("0.1k").unwrap(), 100);
        assert!(parse_count("1.5").is_err());
        assert_eq!(parse_rate("2.5k/s").unwrap(), 2500.0);
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_int(1234567), "1,234,567");
        assert_eq!(fmt_int(12), "12");
        assert_eq!(fmt_ms(1_234_567), "1.23ms");
        assert_eq!(fmt_ms(45_000), "0.045ms");
        assert_eq!(fmt_bytes(2048), "2.00 KiB");
    }

    #[test]
    fn rng_is_uniformish_and_seeded() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            buckets[a.below(10) as usize] += 1;
        }
        for n in buckets {
            assert!((9_000..11_000).contains(&n), "{buckets:?}");
        }
    }
}
