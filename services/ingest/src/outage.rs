//! Leg outages: a leg that is not serving (a restart, a rollout, shedding load) is no failure
//! of the documents waiting for it.
//!
//! The retry schedule (`worker.backoff_*`: first retry after up to 40 minutes by default) is
//! meant for a document the leg cannot take; spent on a leg that is away for seconds it would
//! leave documents unsearchable for up to that long, and a few minutes' outage would use up
//! their attempts. So a job that meets an outage is due again when the leg's pause ends, not
//! on the retry schedule, and workers claim none of the leg's jobs during a pause. The pause
//! starts at one second and doubles with every failed try up to `worker.outage_retry_max_ms`
//! (each drawn in its upper half, so ingest replicas do not try in step). A success ends the
//! outage (for the vector leg only an upsert's, which proves the embedding service too), and
//! so does a quiet spell longer than the longest pause.
//!
//! Who pays: the job whose failure began the outage is charged its attempt and retried after
//! the pause the first time, on the retry schedule after that; every later failure of the same
//! outage is not charged. So a leg that fails now and then (shedding load) spends a job's
//! attempts on the retry schedule as before, and a restart costs one job per ingest replica
//! one attempt. What this cannot tell apart: a document that crashes the leg's process and
//! is retried first after the restart fails inside the outage it caused, uncharged, for up to
//! the grace; a panic inside text-search is INTERNAL, not UNAVAILABLE, so it is charged. An
//! outage longer than `worker.outage_grace_ms` is charged like any failure, so a leg gone for
//! good still dead-letters its jobs on the retry schedule. A grace of 0 turns all of this off.
//! State is per process: each ingest replica learns of an outage from its own jobs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::store::Leg;

const FIRST_PAUSE: Duration = Duration::from_secs(1);

/// What a failure that met an outage costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It began the outage: charged its attempt, due again after the pause.
    Began(Duration),
    /// The leg was already in the outage: no attempt charged, due again after the pause.
    During(Duration),
    /// The outage has lasted longer than the grace: charged like any failure.
    Overdue,
}

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
        if self.grace.is_zero() {
            return Vec::new();
        }
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .iter()
            .filter(|(_, o)| o.until > now)
            .map(|(leg, _)| *leg)
            .collect()
    }

    /// A job of `leg` met an outage at `now`: what it costs, and when it is due again.
    pub fn failed(&self, leg: Leg, now: Instant) -> Verdict {
        if self.grace.is_zero() {
            return Verdict::Overdue;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // No outage yet, or no failure for longer than the longest pause since the last one
        // (the leg served in between, through another replica's jobs or ones with nothing to
        // push): this failure begins a new outage.
        let began = state
            .get(leg.as_str())
            .is_none_or(|old| now > old.until + self.max_pause);
        let fresh = Outage {
            since: now,
            pause: Duration::ZERO,
            until: now,
        };
        let outage = state
            .entry(leg.as_str())
            .and_modify(|o| {
                if began {
                    *o = fresh;
                }
            })
            .or_insert(fresh);
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
        let delay = outage.until.saturating_duration_since(now);
        if now.duration_since(outage.since) >= self.grace {
            Verdict::Overdue
        } else if began {
            Verdict::Began(delay)
        } else {
            Verdict::During(delay)
        }
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

    fn delay_of(v: Verdict) -> Duration {
        match v {
            Verdict::Began(d) | Verdict::During(d) => d,
            Verdict::Overdue => panic!("overdue"),
        }
    }

    #[test]
    fn the_first_failure_pauses_only_its_leg_for_about_a_second_and_only_it_is_charged() {
        let o = outages(600, 15);
        let t0 = Instant::now();
        let first = o.failed(Leg::Text, t0);
        let Verdict::Began(pause) = first else {
            panic!("{first:?}")
        };
        assert!(
            pause >= Duration::from_millis(500) && pause <= FIRST_PAUSE,
            "{pause:?}"
        );
        assert_eq!(o.paused(t0), vec!["text"]);
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(o.failed(Leg::Text, t1), Verdict::During(pause - (t1 - t0)));
        assert!(o.paused(t0 + FIRST_PAUSE).is_empty(), "the pause ends");
        assert!(matches!(
            o.failed(Leg::Text, t0 + FIRST_PAUSE),
            Verdict::During(_)
        ));
        o.succeeded(Leg::Text);
        assert!(o.paused(t0).is_empty());
        // A success ends the outage: the next failure begins another one, and is charged.
        assert!(matches!(
            o.failed(Leg::Text, t0 + FIRST_PAUSE * 2),
            Verdict::Began(_)
        ));
        assert!(matches!(o.failed(Leg::Vector, t0), Verdict::Began(_)));
    }

    #[test]
    fn failed_probes_double_the_pause_up_to_the_cap_and_jobs_already_running_do_not() {
        let o = outages(3600, 8);
        let mut now = Instant::now();
        let mut pauses = Vec::new();
        for _ in 0..6 {
            let delay = delay_of(o.failed(Leg::Vector, now));
            // A job claimed before the pause fails with it: same end, no doubling.
            let other = delay_of(o.failed(Leg::Vector, now + Duration::from_millis(1)));
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
        let mut now = t0;
        assert!(matches!(o.failed(Leg::Text, now), Verdict::Began(_)));
        // Tries at every pause's end: inside the grace they are not charged.
        loop {
            now += o.state.lock().unwrap()["text"].until - now;
            if now.duration_since(t0) >= Duration::from_secs(10) {
                break;
            }
            assert!(matches!(o.failed(Leg::Text, now), Verdict::During(_)));
        }
        assert_eq!(o.failed(Leg::Text, now), Verdict::Overdue);
        assert!(o.paused(now).contains(&"text"), "still paused");
        o.succeeded(Leg::Text);
        assert!(matches!(o.failed(Leg::Text, now), Verdict::Began(_)));
    }

    #[test]
    fn a_grace_of_zero_charges_every_failure_and_pauses_nothing() {
        let o = outages(0, 15);
        let now = Instant::now();
        assert_eq!(o.failed(Leg::Text, now), Verdict::Overdue);
        assert!(o.paused(now).is_empty());
    }

    #[test]
    fn a_failure_after_a_quiet_spell_begins_a_new_outage() {
        let o = outages(600, 4);
        let t0 = Instant::now();
        assert!(matches!(o.failed(Leg::Text, t0), Verdict::Began(_)));
        // No success seen here (another replica's jobs), but nothing failed for longer than
        // the longest pause: the leg served in between.
        let later = t0 + Duration::from_secs(30);
        assert!(matches!(o.failed(Leg::Text, later), Verdict::Began(_)));
        let much_later = t0 + Duration::from_secs(3600);
        assert!(matches!(o.failed(Leg::Text, much_later), Verdict::Began(_)));
    }
}
