//! The open-loop arrival schedule: request `i` is due at `start + i / rate`, computed from
//! `i` (never by accumulating intervals, so the schedule does not drift), and its latency is
//! measured from that intended time, so a stall that delays sending is counted in full
//! instead of hidden (coordinated omission).

use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    rate: f64,
}

impl Schedule {
    /// `rate` requests per second; must be finite and positive (checked by the caller).
    pub fn new(rate: f64) -> Self {
        Self { rate }
    }

    /// Offset from the start at which request `i` is due.
    pub fn due(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// How many requests are due within `window` from the start.
    pub fn count_within(&self, window: Duration) -> u64 {
        (window.as_secs_f64() * self.rate).ceil() as u64
    }
}

/// Latency of a request that was due at `due` and completed at `done` (both offsets from the
/// start); a request sent late is charged for the wait.
pub fn latency_from_due(due: Duration, done: Duration) -> Duration {
    done.saturating_sub(due)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_evenly_spaced_without_drift() {
        let s = Schedule::new(100.0);
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_millis(10));
        assert_eq!(s.due(250), Duration::from_millis(2_500));
        // One million intervals later the schedule is still exact to the microsecond.
        let far = s.due(1_000_000);
        assert!(far.abs_diff(Duration::from_secs(10_000)) < Duration::from_micros(1));
    }

    #[test]
    fn count_within_a_window() {
        let s = Schedule::new(100.0);
        assert_eq!(s.count_within(Duration::from_secs(60)), 6_000);
        assert_eq!(
            Schedule::new(3.0).count_within(Duration::from_millis(500)),
            2
        );
    }

    #[test]
    fn latency_counts_from_the_intended_send_time() {
        // Due at 1.000 s, sent late at 1.200 s because the client stalled, answered at
        // 1.205 s: the user waited 205 ms, not 5 ms.
        let due = Duration::from_millis(1_000);
        let done = Duration::from_millis(1_205);
        assert_eq!(latency_from_due(due, done), Duration::from_millis(205));
        assert_eq!(latency_from_due(done, due), Duration::ZERO);
    }
}
