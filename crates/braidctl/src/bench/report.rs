//! What a benchmark measured: a latency histogram (HdrHistogram, microseconds, 3 significant
//! digits), errors by gRPC status code and degraded answers; and the final table / JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies past an hour are clamped to an hour.
const MAX_MICROS: u64 = 3_600_000_000;

/// Counts of one run (or one progress interval).
pub struct Recorder {
    latency: Histogram<u64>,
    ok: u64,
    degraded: u64,
    errors: BTreeMap<&'static str, u64>,
    failovers: u64,
    /// Outcomes by the second of the measured window the request was sent in.
    timeline: Vec<Second>,
}

/// What the requests sent within one second of the measured window came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Second {
    pub answered: u64,
    pub degraded: u64,
    pub errors: u64,
}

/// Seconds of timeline kept at most (a longer run folds its tail into the last one).
const MAX_TIMELINE_SECONDS: usize = 24 * 3600;

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            // Bounds and precision are constants that hdrhistogram accepts.
            latency: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"),
            ok: 0,
            degraded: 0,
            errors: BTreeMap::new(),
            failovers: 0,
            timeline: Vec::new(),
        }
    }

    /// The timeline's entry for a request sent `sent` into the measured window.
    fn second(&mut self, sent: Duration) -> &mut Second {
        let i = (sent.as_secs() as usize).min(MAX_TIMELINE_SECONDS - 1);
        if self.timeline.len() <= i {
            self.timeline.resize(i + 1, Second::default());
        }
        &mut self.timeline[i]
    }

    fn record_latency(&mut self, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        // In bounds by the clamp above.
        let _ = self.latency.record(micros);
    }

    /// An answer to a request sent `sent` into the measured window; `degraded` when the
    /// gateway answered without one of the legs.
    pub fn ok(&mut self, sent: Duration, latency: Duration, degraded: bool) {
        self.record_latency(latency);
        self.ok += 1;
        let second = self.second(sent);
        second.answered += 1;
        if degraded {
            second.degraded += 1;
            self.degraded += 1;
        }
    }

    /// A failed request sent `sent` into the measured window (its latency counts too: a
    /// client waited for it).
    pub fn error(&mut self, sent: Duration, latency: Duration, code: &'static str) {
        self.record_latency(latency);
        *self.errors.entry(code).or_default() += 1;
        self.second(sent).errors += 1;
    }

    /// A request moved to another gateway after its target refused or was shutting down.
    pub fn failover(&mut self) {
        self.failovers += 1;
    }

    pub fn requests(&self) -> u64 {
        self.ok + self.errors.values().sum::<u64>()
    }

    fn ms_at(&self, quantile: f64) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The summary over `elapsed` of measured time, with the whole run's answers and length.
    pub fn report(&self, setup: Setup, elapsed: Duration, whole_run: WholeRun) -> Report {
        let requests = self.requests();
        let secs = elapsed.as_secs_f64();
        let errors = self.errors.values().sum::<u64>();
        Report {
            setup,
            seconds: round(secs),
            requests,
            answered: self.ok,
            qps: if secs > 0.0 {
                round(requests as f64 / secs)
            } else {
                0.0
            },
            latency_ms: Latency {
                p50: self.ms_at(0.50),
                p90: self.ms_at(0.90),
                p95: self.ms_at(0.95),
                p99: self.ms_at(0.99),
                p99_9: self.ms_at(0.999),
                max: self.latency.max() as f64 / 1000.0,
                mean: round(self.latency.mean() / 1000.0),
            },
            errors,
            errors_by_code: self
                .errors
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            error_rate: if requests > 0 {
                errors as f64 / requests as f64
            } else {
                0.0
            },
            degraded: self.degraded,
            failovers: self.failovers,
            error_window: window(&self.timeline, |s| s.errors),
            degraded_window: window(&self.timeline, |s| s.degraded),
            timeline: self.timeline.clone(),
            answered_whole_run: whole_run.answered,
            whole_run_seconds: (whole_run.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        }
    }

    /// One line for the live progress display.
    pub fn progress_line(
        &self,
        at: Duration,
        interval_requests: u64,
        interval: Duration,
    ) -> String {
        let qps = interval_requests as f64 / interval.as_secs_f64().max(1e-9);
        format!(
            "[{:>5.1}s] {} req  {:.0} req/s  p50 {:.1} ms  p99 {:.1} ms  errors {}  degraded {}",
            at.as_secs_f64(),
            self.requests(),
            qps,
            self.ms_at(0.50),
            self.ms_at(0.99),
            self.errors.values().sum::<u64>(),
            self.degraded,
        )
    }
}

/// The first and last second (of the measured window) with a non-zero `count`, if any.
fn window(timeline: &[Second], count: impl Fn(&Second) -> u64) -> Option<[usize; 2]> {
    let first = timeline.iter().position(|s| count(s) > 0)?;
    let last = timeline.iter().rposition(|s| count(s) > 0)?;
    Some([first, last])
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The whole run: warm-up, measured window and the requests that finished after it.
#[derive(Clone, Copy, Debug, Default)]
pub struct WholeRun {
    pub answered: u64,
    pub elapsed: Duration,
}

/// How the load was generated (echoed in the report).
#[derive(Clone, Debug, Serialize)]
pub struct Setup {
    pub loop_kind: &'static str,
    pub mode: &'static str,
    pub clients: usize,
    pub connections: usize,
    pub target_rate: Option<f64>,
    pub targets: usize,
    /// Caller identities (tokens) the requests rotate over (0: no token).
    pub callers: usize,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub setup: Setup,
    pub seconds: f64,
    pub requests: u64,
    pub answered: u64,
    pub qps: f64,
    pub latency_ms: Latency,
    pub errors: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    pub error_rate: f64,
    pub degraded: u64,
    pub failovers: u64,
    /// First and last second of the measured window in which a request that failed was sent.
    pub error_window: Option<[usize; 2]>,
    /// The same for degraded answers.
    pub degraded_window: Option<[usize; 2]>,
    /// Per second of the measured window (by send time): answered, degraded, failed.
    pub timeline: Vec<Second>,
    /// Answers over the whole run: warm-up, measured window and the requests that finished
    /// after it (CPU used over the whole run divided by this is CPU per answer).
    pub answered_whole_run: u64,
    /// Seconds from the first request sent to the last answer.
    pub whole_run_seconds: f64,
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let s = &self.setup;
        let mut out = String::new();
        let load = match s.target_rate {
            Some(rate) => format!(
                "open loop at {rate} req/s over {} connections",
                s.connections
            ),
            None => format!(
                "closed loop, {} clients over {} connections",
                s.clients, s.connections
            ),
        };
        let _ = writeln!(
            out,
            "{} search, {load}, {} gateway target(s), {} caller(s), {:.1} s measured",
            s.mode, s.targets, s.callers, self.seconds
        );
        let l = &self.latency_ms;
        let rows: [(&str, String); 13] = [
            ("requests", self.requests.to_string()),
            ("answered", self.answered.to_string()),
            ("QPS", format!("{:.1}", self.qps)),
            ("p50", format!("{:.1} ms", l.p50)),
            ("p90", format!("{:.1} ms", l.p90)),
            ("p95", format!("{:.1} ms", l.p95)),
            ("p99", format!("{:.1} ms", l.p99)),
            ("p99.9", format!("{:.1} ms", l.p99_9)),
            ("max", format!("{:.1} ms", l.max)),
            (
                "errors",
                format!("{} ({:.3}%)", self.errors, self.error_rate * 100.0),
            ),
            ("degraded answers", self.degraded.to_string()),
            ("failovers", self.failovers.to_string()),
            (
                "answered, run",
                format!(
                    "{} in {:.1} s (warm-up and tail included)",
                    self.answered_whole_run, self.whole_run_seconds
                ),
            ),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "  {name:<17} {value}");
        }
        for (code, n) in &self.errors_by_code {
            let _ = writeln!(out, "    {code:<15} {n}");
        }
        for (name, window) in [
            ("errors sent", self.error_window),
            ("degraded sent", self.degraded_window),
        ] {
            if let Some([first, last]) = window {
                let _ = writeln!(out, "  {name:<17} from {first} s to {} s", last + 1);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        Setup {
            loop_kind: "closed",
            mode: "hybrid",
            clients: 4,
            connections: 2,
            target_rate: None,
            targets: 1,
            callers: 1,
        }
    }

    #[test]
    fn percentiles_errors_and_degraded_answers() {
        let mut r = Recorder::new();
        // 1..=1000 ms once each, plus three 5 ms errors: the 50th percentile is the 502nd
        // value (499 ms), the 99th the 993rd (990 ms), max 1 s.
        // Sent over 10 s, 100 per second; the errors in seconds 3 and 4.
        for ms in 1..=1000u64 {
            let sent = Duration::from_millis((ms - 1) * 10);
            r.ok(sent, Duration::from_millis(ms), ms % 100 == 0);
        }
        let (third, fourth) = (Duration::from_millis(3_200), Duration::from_millis(4_900));
        r.error(third, Duration::from_millis(5), "RESOURCE_EXHAUSTED");
        r.error(fourth, Duration::from_millis(5), "RESOURCE_EXHAUSTED");
        r.error(third, Duration::from_millis(5), "UNAVAILABLE");
        r.failover();
        let report = r.report(setup(), Duration::from_secs(10), WholeRun::default());
        assert_eq!(report.requests, 1003);
        assert_eq!(report.answered, 1000);
        assert_eq!(report.qps, 100.3);
        assert_eq!(report.errors, 3);
        assert_eq!(report.errors_by_code["RESOURCE_EXHAUSTED"], 2);
        assert_eq!(report.errors_by_code["UNAVAILABLE"], 1);
        assert_eq!(report.degraded, 10);
        assert_eq!(report.failovers, 1);
        assert_eq!(report.timeline.len(), 10);
        assert_eq!(
            report.timeline[3],
            Second {
                answered: 100,
                degraded: 1,
                errors: 2
            }
        );
        assert_eq!(report.timeline[4].errors, 1);
        assert_eq!(report.timeline[5].errors, 0);
        assert_eq!(report.error_window, Some([3, 4]));
        assert_eq!(report.degraded_window, Some([0, 9]));
        let l = &report.latency_ms;
        // 3 significant digits: within 0.1% of the exact value.
        assert!((l.p50 - 499.0).abs() < 1.0, "p50 {}", l.p50);
        assert!((l.p99 - 990.0).abs() < 1.5, "p99 {}", l.p99);
        assert!((l.max - 1000.0).abs() < 1.0, "max {}", l.max);
        assert!(l.p99_9 >= l.p99 && l.p99 >= l.p95 && l.p95 >= l.p90 && l.p90 >= l.p50);
        let table = report.table();
        assert!(table.contains("RESOURCE_EXHAUSTED"), "{table}");
        assert!(table.contains("degraded answers  10"), "{table}");
        assert!(
            table.contains("errors sent       from 3 s to 5 s"),
            "{table}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["errors_by_code"]["UNAVAILABLE"], 1);
        assert_eq!(json["latency_ms"]["p99_9"], l.p99_9);
    }

    #[test]
    fn an_empty_run_reports_zeros() {
        let report = Recorder::new().report(setup(), Duration::ZERO, WholeRun::default());
        assert_eq!(report.requests, 0);
        assert_eq!(report.qps, 0.0);
        assert_eq!(report.latency_ms.p99, 0.0);
        assert_eq!(report.error_window, None);
        assert!(report.timeline.is_empty());
    }
}
