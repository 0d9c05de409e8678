//! Per-subject caps on concurrent long calls (WaitIndexed, IngestStream, Ingest waiting for
//! READY): a semaphore per subject in a bounded map. Over the cap the call is refused at once
//! instead of queueing, so one caller's held calls never take what another caller needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use braid_core::metrics::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A held long-call slot; the slot frees when this drops.
#[derive(Debug)]
pub struct LongCallPermit {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Drop for LongCallPermit {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

/// Why a long call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongCallRefused {
    /// The subject already holds `per_subject` long calls.
    PerSubject(u32),
    /// `max_tracked_subjects` subjects hold long calls right now.
    TooManySubjects(usize),
}

pub struct LongCalls {
    per_subject: u32,
    max_subjects: usize,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Long calls in flight (all subjects).
    in_flight: Gauge,
}

impl LongCalls {
    pub fn new(per_subject: u32, max_subjects: usize, in_flight: Gauge) -> Self {
        Self {
            per_subject,
            max_subjects,
            slots: Mutex::new(HashMap::new()),
            in_flight,
        }
    }

    pub fn acquire(&self, subject: &str) -> Result<LongCallPermit, LongCallRefused> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if !slots.contains_key(subject) && slots.len() >= self.max_subjects {
            // Subjects holding nothing any more are forgotten.
            let full = self.per_subject as usize;
            slots.retain(|_, s| s.available_permits() < full);
            if slots.len() >= self.max_subjects {
                return Err(LongCallRefused::TooManySubjects(self.max_subjects));
            }
        }
        let semaphore = slots
            .entry(subject.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_subject as usize)))
            .clone();
        drop(slots);
        let permit = semaphore
            .try_acquire_owned()
            .map_err(|_| LongCallRefused::PerSubject(self.per_subject))?;
        self.in_flight.increment(1.0);
        Ok(LongCallPermit {
            _permit: permit,
            gauge: self.in_flight.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(metrics: &braid_core::metrics::Metrics) -> Gauge {
        metrics.gauge("long_calls_test", "test")
    }

    #[test]
    fn each_subject_has_its_own_cap() {
        let metrics = braid_core::metrics::Metrics::new("test");
        let calls = LongCalls::new(2, 100, gauge(&metrics));
        let a1 = calls.acquire("alice").unwrap();
        let _a2 = calls.acquire("alice").unwrap();
        assert_eq!(
            calls.acquire("alice").unwrap_err(),
            LongCallRefused::PerSubject(2)
        );
        // Bob is not affected by Alice's held calls.
        let _b1 = calls.acquire("bob").unwrap();
        drop(a1);
        let _a3 = calls.acquire("alice").unwrap();
        assert_eq!(metrics.value("braid_long_calls_test", &[]), Some(3.0));
    }

    #[test]
    fn tracked_subjects_are_bounded() {
        let metrics = braid_core::metrics::Metrics::new("test");
        let calls = LongCalls::new(1, 2, gauge(&metrics));
        let a = calls.acquire("a").unwrap();
        let _b = calls.acquire("b").unwrap();
        assert_eq!(
            calls.acquire("c").unwrap_err(),
            LongCallRefused::TooManySubjects(2)
        );
        drop(a);
        // a holds nothing now: its entry is evicted to make room.
        assert!(calls.acquire("c").is_ok());
        assert!(calls.slots.lock().unwrap().len() <= 2);
    }
}
