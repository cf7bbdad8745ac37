//! What a run counts: latency histograms (from the intended send time and
//! from the actual send), responses by status class, bytes, errors by kind,
//! connection events and limit hits. One `Stats` per worker per interval and
//! per run; merged across threads and worker processes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hist::{new_hist, Hist, WireHist};
use crate::limits::LimitKind;

/// Failures, each counted once per failed request or connection attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    /// Connection attempts that failed (refused, unreachable, out of ports/fds, timed out).
    pub connect: u64,
    /// Requests without a complete answer within `--timeout`, including those
    /// that waited that long for a free connection in open loop.
    pub timeout: u64,
    /// Connection reset or closed before the response head arrived.
    pub reset: u64,
    /// Fewer body bytes than Content-Length (or chunk sizes) announced.
    pub short_body: u64,
    /// Unparsable or unsolicited response bytes.
    pub protocol: u64,
    /// 5xx, and 4xx other than the expected 404/410 of a deliberate miss.
    pub bad_status: u64,
}

impl Errors {
    /// Failed requests (connect failures are attempts, not requests).
    pub fn request_errors(&self) -> u64 {
        self.timeout + self.reset + self.short_body + self.protocol + self.bad_status
    }

    fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.timeout += o.timeout;
        self.reset += o.reset;
        self.short_body += o.short_body;
        self.protocol += o.protocol;
        self.bad_status += o.bad_status;
    }
}

/// One limit that stopped connections from opening.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitStat {
    /// Attempts it failed.
    pub count: u64,
    /// The errno seen (EMFILE, EADDRNOTAVAIL, …).
    pub errno: String,
    /// Connections this process had open when it first hit the limit.
    pub open_at_first_hit: u64,
}

#[derive(Clone, Debug)]
pub struct Stats {
    /// Nanoseconds from the intended send time to the last response byte:
    /// in open loop the intended time is the schedule's, so time spent
    /// waiting for a stalled server or a free connection is counted
    /// (coordinated-omission correction); in closed loop it is the send time.
    pub latency: Hist,
    /// Nanoseconds from the actual send: what a naive tool would report.
    pub service: Hist,
    /// Nanoseconds from connect() to an established connection: a p99 of a
    /// second or more means SYNs were dropped and retransmitted.
    pub connect_time: Hist,
    pub responses: u64,
    /// Responses by status class: 1xx (unused), 2xx, 3xx, 4xx, 5xx, other.
    pub status: [u64; 6],
    /// 404/410 answers to deliberate misses (counted under 4xx too).
    pub expected_misses: u64,
    pub bytes_in: u64,
    pub body_bytes: u64,
    pub bytes_out: u64,
    pub errors: Errors,
    /// Connect failures by errno name.
    pub connect_errnos: BTreeMap<String, u64>,
    pub connects: u64,
    /// Connections the server closed (idle timeout, Connection: close, limit).
    pub server_closes: u64,
    pub limits: BTreeMap<LimitKind, LimitStat>,
    /// Open-loop requests that had to wait for a free connection.
    pub queued: u64,
    /// Open-loop requests due by the schedule.
    pub scheduled: u64,
    /// Connections open at the end of the interval/run, and the peak.
    pub open: u64,
    pub peak_open: u64,
    /// Nanoseconds from phase start until every connection of the worker was
    /// established (max over workers); None if some never were.
    pub ramp_ns: Option<u64>,
    /// Measurement window (ns since the phase start) for rates.
    pub window_start_ns: u64,
    pub window_end_ns: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency: new_hist(),
            service: new_hist(),
            connect_time: new_hist(),
            responses: 0,
            status: [0; 6],
            expected_misses: 0,
            bytes_in: 0,
            body_bytes: 0,
            bytes_out: 0,
            errors: Errors::default(),
            connect_errnos: BTreeMap::new(),
            connects: 0,
            server_closes: 0,
            limits: BTreeMap::new(),
            queued: 0,
            scheduled: 0,
            open: 0,
            peak_open: 0,
            ramp_ns: None,
            window_start_ns: u64::MAX,
            window_end_ns: 0,
        }
    }
}

impl Stats {
    /// Records a complete response.
    pub fn record_response(&mut self, latency_ns: u64, service_ns: u64, status: u16, expect_miss: bool, wire_bytes: u64, body: u64) {
        self.latency.saturating_record(latency_ns.max(1));
        self.service.saturating_record(service_ns.max(1));
        self.responses += 1;
        let class = match status {
            100..=599 => (status / 100 - 1) as usize,
            _ => 5,
        };
        self.status[class] += 1;
        let missed = expect_miss && (status == 404 || status == 410);
        if missed {
            self.expected_misses += 1;
        } else if status >= 400 || class == 5 {
            self.errors.bad_status += 1;
        }
        self.bytes_in += wire_bytes;
        self.body_bytes += body;
    }

    pub fn note_limit(&mut self, kind: LimitKind, errno: &str, open_now: u64) {
        let e = self.limits.entry(kind).or_insert_with(|| LimitStat { count: 0, errno: errno.to_string(), open_at_first_hit: open_now });
        e.count += 1;
    }

    /// Requests that ended, successfully or not.
    pub fn attempts(&self) -> u64 {
        self.responses + self.errors.request_errors()
    }

    pub fn error_rate(&self) -> f64 {
        let a = self.attempts();
        if a == 0 {
            0.0
        } else {
            self.errors.request_errors() as f64 / a as f64
        }
    }

    pub fn window_ns(&self) -> u64 {
        self.window_end_ns.saturating_sub(self.window_start_ns)
    }

    /// Adds another worker's (or interval's) counts. Gauges (`open`) add,
    /// because workers own disjoint connections; the window spans both.
    pub fn merge(&mut self, o: &Stats) {
        self.latency.add(&o.latency).expect("same histogram bounds");
        self.service.add(&o.service).expect("same histogram bounds");
        self.connect_time.add(&o.connect_time).expect("same histogram bounds");
        self.responses += o.responses;
        for (a, b) in self.status.iter_mut().zip(o.status) {
            *a += b;
        }
        self.expected_misses += o.expected_misses;
        self.bytes_in += o.bytes_in;
        self.body_bytes += o.body_bytes;
        self.bytes_out += o.bytes_out;
        self.errors.add(&o.errors);
        for (k, v) in &o.connect_errnos {
            *self.connect_errnos.entry(k.clone()).or_default() += v;
        }
        self.connects += o.connects;
        self.server_closes += o.server_closes;
        for (k, v) in &o.limits {
            let e = self.limits.entry(*k).or_insert_with(|| LimitStat { count: 0, errno: v.errno.clone(), open_at_first_hit: 0 });
            e.count += v.count;
            e.open_at_first_hit = e.open_at_first_hit.max(v.open_at_first_hit);
        }
        self.queued += o.queued;
        self.scheduled += o.scheduled;
        self.open += o.open;
        self.peak_open += o.peak_open;
        self.ramp_ns = match (self.ramp_ns, o.ramp_ns) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        self.window_start_ns = self.window_start_ns.min(o.window_start_ns);
        self.window_end_ns = self.window_end_ns.max(o.window_end_ns);
    }

    /// A fresh accumulator that merges to the identity (ramp starts "done").
    pub fn identity() -> Stats {
        Stats { ramp_ns: Some(0), ..Stats::default() }
    }
}

/// `Stats` as JSON lines from a worker process (histograms sparse).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireStats {
    latency: WireHist,
    service: WireHist,
    connect_time: WireHist,
    responses: u64,
    status: [u64; 6],
    expected_misses: u64,
    bytes_in: u64,
    body_bytes: u64,
    bytes_out: u64,
    errors: Errors,
    connect_errnos: BTreeMap<String, u64>,
    connects: u64,
    server_closes: u64,
    limits: Vec<(LimitKind, LimitStat)>,
    queued: u64,
    scheduled: u64,
    open: u64,
    peak_open: u64,
    ramp_ns: Option<u64>,
    window_start_ns: u64,
    window_end_ns: u64,
}

impl From<&Stats> for WireStats {
    fn from(s: &Stats) -> WireStats {
        WireStats {
            latency: WireHist::from_hist(&s.latency),
            service: WireHist::from_hist(&s.service),
            connect_time: WireHist::from_hist(&s.connect_time),
            responses: s.responses,
            status: s.status,
            expected_misses: s.expected_misses,
            bytes_in: s.bytes_in,
            body_bytes: s.body_bytes,
            bytes_out: s.bytes_out,
            errors: s.errors,
            connect_errnos: s.connect_errnos.clone(),
            connects: s.connects,
            server_closes: s.server_closes,
            limits: s.limits.iter().map(|(k, v)| (*k, v.clone())).collect(),
            queued: s.queued,
            scheduled: s.scheduled,
            open: s.open,
            peak_open: s.peak_open,
            ramp_ns: s.ramp_ns,
            window_start_ns: s.window_start_ns,
            window_end_ns: s.window_end_ns,
        }
    }
}

impl From<WireStats> for Stats {
    fn from(w: WireStats) -> Stats {
        Stats {
            latency: w.latency.into_hist(),
            service: w.service.into_hist(),
            connect_time: w.connect_time.into_hist(),
            responses: w.responses,
            status: w.status,
            expected_misses: w.expected_misses,
            bytes_in: w.bytes_in,
            body_bytes: w.body_bytes,
            bytes_out: w.bytes_out,
            errors: w.errors,
            connect_errnos: w.connect_errnos,
            connects: w.connects,
            server_closes: w.server_closes,
            limits: w.limits.into_iter().collect(),
            queued: w.queued,
            scheduled: w.scheduled,
            open: w.open,
            peak_open: w.peak_open,
            ramp_ns: w.ramp_ns,
            window_start_ns: w.window_start_ns,
            window_end_ns: w.window_end_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_and_expected_misses() {
        let mut s = Stats::default();
        s.record_response(1000, 900, 200, false, 100, 50);
        s.record_response(1000, 900, 404, true, 80, 10);
        s.record_response(1000, 900, 404, false, 80, 10);
        s.record_response(1000, 900, 503, false, 80, 10);
        s.record_response(1000, 900, 304, false, 60, 0);
        assert_eq!(s.status, [0, 1, 1, 2, 1, 0]);
        assert_eq!(s.expected_misses, 1);
        assert_eq!(s.errors.bad_status, 2);
        assert_eq!(s.responses, 5);
        assert_eq!(s.bytes_in, 400);
        assert_eq!(s.body_bytes, 80);
        assert!((s.error_rate() - 2.0 / 7.0).abs() < 1e-9, "two bad statuses are both responses and errors");
    }

    #[test]
    fn merge_and_wire_round_trip() {
        let mut a = Stats::identity();
        let mut w = Stats::default();
        w.record_response(5_000, 4_000, 200, false, 10, 5);
        w.errors.timeout = 2;
        w.note_limit(LimitKind::ProcessFds, "EMFILE", 100);
        w.note_limit(LimitKind::ProcessFds, "EMFILE", 120);
        w.ramp_ns = Some(7);
        w.window_start_ns = 10;
        w.window_end_ns = 90;
        let wire: WireStats = serde_json::from_str(&serde_json::to_string(&WireStats::from(&w)).unwrap()).unwrap();
        let back = Stats::from(wire);
        a.merge(&back);
        a.merge(&back);
        assert_eq!(a.responses, 2);
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.errors.timeout, 4);
        assert_eq!(a.limits[&LimitKind::ProcessFds].count, 4);
        assert_eq!(a.limits[&LimitKind::ProcessFds].open_at_first_hit, 100);
        assert_eq!(a.ramp_ns, Some(7));
        assert_eq!(a.window_ns(), 80);
    }
}
