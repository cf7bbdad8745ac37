//! `--plot FILE.svg`: latency by percentile, one line per run or target,
//! drawn like the HdrHistogram plotter and wrk2 charts: the x axis is
//! log-scaled in 1/(1-percentile) so 90 %, 99 %, 99.9 % … get equal room and
//! the tail is visible. Written by hand: an SVG is text, no crate needed.

use std::fmt::Write as _;
use std::path::Path;

use crate::hist::{quantile_curve, Hist};

pub struct Series<'a> {
    pub label: String,
    pub hist: &'a Hist,
}

const W: f64 = 1040.0;
const H: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 310.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 10] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A "nice" axis step (1, 2 or 5 × 10^k) giving about `ticks` ticks up to `max`.
fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// A tick label with as many decimals as the step needs (0.5 → 1, 0.02 → 2).
fn fmt_tick(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
    format!("{v:.decimals$}")
}

/// Legend labels are cut to fit the legend column.
fn short(label: &str) -> String {
    const MAX: usize = 36;
    if label.chars().count() <= MAX {
        label.to_string()
    } else {
        let head: String = label.chars().take(MAX - 1).collect();
        format!("{head}…")
    }
}

/// Label of the x position `nines` (0 → 0%, 1 → 90%, 2 → 99%, 3 → 99.9% …).
fn nines_label(n: u32) -> String {
    match n {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        _ => format!("99.{}%", "9".repeat(n as usize - 2)),
    }
}

/// Renders the plot; `slo_ms` draws the latency objective as a dashed line.
pub fn render_svg(title: &str, series: &[Series], slo_ms: Option<f64>) -> String {
    let curves: Vec<Vec<(f64, f64)>> =
        series.iter().map(|s| quantile_curve(s.hist).into_iter().map(|(q, v)| (q, v as f64 / 1e6)).collect()).collect();
    // As many nines as the largest run can resolve (1000 samples: 99.9 %).
    let most = series.iter().map(|s| s.hist.len()).max().unwrap_or(0).max(100);
    let nines = ((most as f64).log10().floor() as u32).clamp(2, 6);
    let xmax = nines as f64;
    let xpos = |q: f64| if q >= 1.0 { xmax } else { (1.0 / (1.0 - q)).log10().min(xmax) };
    let ymax_data = curves.iter().flatten().map(|p| p.1).fold(slo_ms.unwrap_or(0.0), f64::max).max(0.001);
    let ystep = nice_step(ymax_data, 6.0);
    let ymax = (ymax_data / ystep).ceil() * ystep;
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + x / xmax * pw;
    let sy = |y: f64| TOP + ph - y / ymax * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#, LEFT + pw / 2.0, esc(title));
    // Grid and axes.
    let mut y = 0.0;
    while y <= ymax + ystep * 0.01 {
        let py = sy(y);
        let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e0e0e0"/>"##, LEFT + pw);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#, LEFT - 6.0, py + 4.0, fmt_tick(y, ystep));
        y += ystep;
    }
    for n in 0..=nines {
        let px = sx(n as f64);
        let _ = writeln!(s, r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#e0e0e0"/>"##, TOP + ph);
        let _ = writeln!(s, r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, TOP + ph + 18.0, nines_label(n));
    }
    let _ = writeln!(s, r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##);
    let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">Percentile</text>"#, LEFT + pw / 2.0, H - 14.0);
    let _ = writeln!(
        s,
        r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">Latency (milliseconds)</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    if let Some(slo) = slo_ms {
        let py = sy(slo);
        let _ =
            writeln!(s, r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#000" stroke-dasharray="6 4"/>"##, LEFT + pw);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="start">SLO p99 {slo} ms</text>"#, LEFT + 6.0, py - 5.0);
    }
    // One line per series, and the legend.
    for (i, (serie, curve)) in series.iter().zip(&curves).enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = curve.iter().map(|&(q, v)| format!("{:.1},{:.1}", sx(xpos(q)), sy(v))).collect();
        if !pts.is_empty() {
            let _ = writeln!(s, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, pts.join(" "));
        }
        let ly = TOP + 10.0 + i as f64 * 36.0;
        let lx = LEFT + pw + 16.0;
        let _ = writeln!(s, r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/>"#, lx + 24.0);
        let _ = writeln!(s, r#"<text x="{}" y="{}">{}</text>"#, lx + 30.0, ly + 4.0, esc(&short(&serie.label)));
        let p = |q: f64| if serie.hist.is_empty() { 0.0 } else { serie.hist.value_at_quantile(q) as f64 / 1e6 };
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" fill="#555" font-size="11">p50 {:.3} · p99 {:.3} · max {:.3} ms</text>"##,
            lx + 30.0,
            ly + 19.0,
            p(0.5),
            p(0.99),
            p(1.0)
        );
    }
    s.push_str("</svg>\n");
    s
}

pub fn write_svg(path: &Path, title: &str, series: &[Series], slo_ms: Option<f64>) -> Result<(), String> {
    std::fs::write(path, render_svg(title, series, slo_ms)).map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hist::new_hist;

    #[test]
    fn svg_has_a_line_per_series_and_percentile_axis() {
        let mut a = new_hist();
        let mut b = new_hist();
        for i in 1..=10_000u64 {
            a.record(i * 1000).unwrap();
            b.record(i * 2000).unwrap();
        }
        let svg = render_svg(
            "a <vs> b",
            &[Series { label: "gomodproxy".into(), hist: &a }, Series { label: "nginx & co".into(), hist: &b }],
            Some(5.0),
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &lt;vs&gt; b"));
        assert!(svg.contains("nginx &amp; co"));
        for label in ["0%", "90%", "99%", "99.9%", "99.99%"] {
            assert!(svg.contains(&format!(">{label}</text>")), "{label}");
        }
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(svg.contains("SLO p99 5 ms") && svg.contains("stroke-dasharray"));
    }

    #[test]
    fn labels_and_steps() {
        assert_eq!(nines_label(2), "99%");
        assert_eq!(nines_label(5), "99.999%");
        assert_eq!(nice_step(9.0, 6.0), 2.0);
        assert_eq!(nice_step(0.9, 6.0), 0.2);
        assert_eq!(fmt_tick(5.0, 5.0), "5");
        assert_eq!(fmt_tick(0.4, 0.2), "0.4");
        assert_eq!(fmt_tick(0.05, 0.05), "0.05");
        assert_eq!(short("short"), "short");
        assert_eq!(short(&"x".repeat(50)).chars().count(), 36);
    }

    #[test]
    fn empty_series_still_renders() {
        let h = new_hist();
        let svg = render_svg("empty", &[Series { label: "none".into(), hist: &h }], None);
        assert!(!svg.contains("NaN"));
    }
}
