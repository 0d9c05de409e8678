//! Leg outages: a leg that is not serving (a restart, a rollout, shedding load) is no failure
//! of the documents waiting for it.
//!
//! The retry schedule (`worker.backoff_*`: first retry after up to 40 minutes by default) is
//! meant for a document the leg cannot take; spent on a leg that is away for seconds it would
//! leave documents unsearchable for up to that long, and a few minutes' outage would use up
//! their attempts. So, within `worker.outage_grace_ms` of a leg's first such failure, a job
//! that meets the outage is charged no attempt and is due again when the leg's pause ends;
//! in between, workers claim none of the leg's jobs. The pause starts at one second and
//! doubles with every failed probe up to `worker.outage_retry_max_ms` (each drawn in its
//! upper half, so ingest replicas do not probe in step). One success ends the outage. An
//! outage longer than the grace is charged like any failure, so a leg gone for good still
//! dead-letters its jobs on the retry schedule. State is per process: each ingest replica
//! learns of an outage from its own jobs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::store::Leg;

const FIRST_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Outage {
    since: Instant,
    pause: Duration,
    until: Instant,
}

pub struct LegOutages {
    grace: Duration,
    max_pause: Duration,
    state: Mutex<HashMap<&'static str, Outage>>,
}

impl LegOutages {
    pub fn new(grace: Duration, max_pause: Duration) -> Self {
        Self {
            grace,
            max_pause: max_pause.max(FIRST_PAUSE),
            state: Mutex::new(HashMap::new()),
        }
    }

    /// The legs whose jobs are not to be claimed at `now` (their pause has not ended).
    pub fn paused(&self, now: Instant) -> Vec<&'static str> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .iter()
            .filter(|(_, o)| o.until > now)
            .map(|(leg, _)| *leg)
            .collect()
    }

    /// A job of `leg` met an outage at `now`. `Some(delay)`: within the grace, charge no
    /// attempt and retry after `delay` (when the leg's pause ends). `None`: the outage has
    /// lasted longer than the grace (or the grace is 0): charge it like any failure.
    pub fn failed(&self, leg: Leg, now: Instant) -> Option<Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let outage = state.entry(leg.as_str()).or_insert(Outage {
            since: now,
            pause: Duration::ZERO,
            until: now,
        });
        if now >= outage.until {
            // A probe after the pause failed (or the first failure): pause longer.
            outage.pause = if outage.pause.is_zero() {
                FIRST_PAUSE
            } else {
                (outage.pause * 2).min(self.max_pause)
            };
            let half = outage.pause / 2;
            outage.until = now + half + half.mul_f64(rand::random::<f64>());
        }
        // Jobs claimed before the pause began fail with it and wait for its end.
        let within_grace = now.duration_since(outage.since) < self.grace;
        within_grace.then(|| outage.until.saturating_duration_since(now))
    }

    /// A job of `leg` succeeded: the leg serves again.
    pub fn succeeded(&self, leg: Leg) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.remove(leg.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outages(grace_s: u64, max_pause_s: u64) -> LegOutages {
        LegOutages::new(
            Duration::from_secs(grace_s),
            Duration::from_secs(max_pause_s),
        )
    }

    #[test]
    fn a_failure_pauses_only_its_leg_for_about_a_second_and_charges_nothing() {
        let o = outages(600, 15);
        let t0 = Instant::now();
        let delay = o.failed(Leg::Text, t0).expect("within the grace");
        assert!(
            delay >= Duration::from_millis(500) && delay <= FIRST_PAUSE,
            "{delay:?}"
        );
        assert_eq!(o.paused(t0), vec!["text"]);
        assert!(o.paused(t0 + FIRST_PAUSE).is_empty(), "the pause ends");
        o.succeeded(Leg::Text);
        assert!(o.paused(t0).is_empty());
    }

    #[test]
    fn failed_probes_double_the_pause_up_to_the_cap_and_jobs_already_running_do_not() {
        let o = outages(3600, 8);
        let mut now = Instant::now();
        let mut pauses = Vec::new();
        for _ in 0..6 {
            let delay = o.failed(Leg::Vector, now).unwrap();
            // A job claimed before the pause fails with it: same end, no doubling.
            let other = o
                .failed(Leg::Vector, now + Duration::from_millis(1))
                .unwrap();
            assert_eq!(other + Duration::from_millis(1), delay);
            pauses.push(delay);
            now += delay;
        }
        let ceilings = [1, 2, 4, 8, 8, 8];
        for (delay, ceiling) in pauses.iter().zip(ceilings) {
            let ceiling = Duration::from_secs(ceiling);
            assert!(
                *delay >= ceiling / 2 && *delay <= ceiling,
                "{pauses:?} against the ceilings {ceilings:?}"
            );
        }
    }

    #[test]
    fn an_outage_longer_than_the_grace_is_charged_and_a_success_starts_afresh() {
        let o = outages(10, 4);
        let t0 = Instant::now();
        assert!(o.failed(Leg::Text, t0).is_some());
        assert!(o.failed(Leg::Text, t0 + Duration::from_secs(9)).is_some());
        assert_eq!(o.failed(Leg::Text, t0 + Duration::from_secs(10)), None);
        assert!(o.paused(t0 + Duration::from_secs(10)).contains(&"text"));
        o.succeeded(Leg::Text);
        assert!(o.failed(Leg::Text, t0 + Duration::from_secs(11)).is_some());
    }

    #[test]
    fn a_grace_of_zero_charges_every_failure() {
        let o = outages(0, 15);
        assert_eq!(o.failed(Leg::Text, Instant::now()), None);
    }
}
