//! Where searches read: the streaming replica (`database.read_url`) while it is up, in
//! recovery and at most `database.max_replica_lag_ms` behind the primary; otherwise the
//! primary, with the reason in `braid_vector_search_read_route{target, reason}` and the log.
//!
//! A background task checks every `database.replica_check_interval_ms` (never per query).
//! Lag is measured on WAL positions, not replay timestamps (which grow on an idle primary):
//! each check records the primary's current LSN with the time it was read, and the lag is the
//! age of the oldest recorded primary position the replica has not replayed yet — how long a
//! write acknowledged on the primary has been invisible on the replica, to within one
//! interval.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use braid_core::db::Db;
use braid_core::metrics::{Family, Gauge};
use tokio::time::Instant;

/// Why the primary serves searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No `read_url` configured.
    NoReplica,
    /// Before the first check.
    Starting,
    /// The replica did not answer (down, refusing connections, timing out).
    ReplicaDown,
    /// The replica is further behind than `max_replica_lag_ms`.
    ReplicaLagging,
    /// The replica is not in recovery (promoted, or not a standby at all).
    NotInRecovery,
}

impl Reason {
    const ALL: [Reason; 5] = [
        Reason::NoReplica,
        Reason::Starting,
        Reason::ReplicaDown,
        Reason::ReplicaLagging,
        Reason::NotInRecovery,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoReplica => "no_replica",
            Reason::Starting => "starting",
            Reason::ReplicaDown => "replica_down",
            Reason::ReplicaLagging => "replica_lagging",
            Reason::NotInRecovery => "replica_not_in_recovery",
        }
    }
}

/// The label values of the route gauge (closed sets; not every pair occurs).
const TARGETS: &[&str] = &["replica", "primary"];
const REASONS: &[&str] = &[
    "ok",
    "no_replica",
    "starting",
    "replica_down",
    "replica_lagging",
    "replica_not_in_recovery",
];

/// The pool searches read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Replica,
    Primary(Reason),
}

impl Route {
    fn encode(self) -> u8 {
        match self {
            Route::Replica => 0,
            Route::Primary(r) => 1 + Reason::ALL.iter().position(|x| *x == r).unwrap_or(0) as u8,
        }
    }

    fn decode(v: u8) -> Route {
        match v {
            0 => Route::Replica,
            n => Route::Primary(
                Reason::ALL
                    .get(usize::from(n) - 1)
                    .copied()
                    .unwrap_or(Reason::Starting),
            ),
        }
    }

    fn labels(self) -> [&'static str; 2] {
        match self {
            Route::Replica => ["replica", "ok"],
            Route::Primary(r) => ["primary", r.as_str()],
        }
    }
}

/// The current route, shared by the searches and the checker, mirrored in the metrics.
pub struct ReadRoute {
    current: AtomicU8,
    gauge: Family<Gauge>,
    lag: Gauge,
    /// The last check's detail ("12 ms behind", why the replica is not used), for the status view.
    detail: Mutex<String>,
}

impl ReadRoute {
    pub fn new(
        initial: Route,
        metrics: &braid_core::metrics::Metrics,
    ) -> anyhow::Result<Arc<Self>> {
        let gauge = metrics.gauge_family(
            "vector_search_read_route",
            "1 for where searches read (target replica|primary) and why (reason)",
            &[("target", TARGETS), ("reason", REASONS)],
        );
        let lag = metrics.gauge(
            "vector_search_replica_lag_seconds",
            "replica lag at the last check (age of the oldest primary write not yet replayed)",
        );
        let route = Arc::new(Self {
            current: AtomicU8::new(initial.encode()),
            gauge,
            lag,
            detail: Mutex::new(String::new()),
        });
        route.publish(initial);
        Ok(route)
    }

    pub fn get(&self) -> Route {
        Route::decode(self.current.load(Ordering::Relaxed))
    }

    /// Switches to `route`; logs a change with the operator-facing reason.
    pub fn set(&self, route: Route, detail: &str) {
        detail.clone_into(&mut self.detail.lock().unwrap_or_else(PoisonError::into_inner));
        let before = Route::decode(self.current.swap(route.encode(), Ordering::Relaxed));
        if before == route {
            return;
        }
        self.publish(route);
        match route {
            Route::Replica => tracing::info!(detail, "searches read from the replica again"),
            Route::Primary(reason) => tracing::warn!(
                reason = reason.as_str(),
                detail,
                "searches read from the primary"
            ),
        }
    }

    /// Where searches read now and why, for the status view: "replica (12 ms behind)",
    /// "primary: replica_lagging (900 ms behind, more than max_replica_lag_ms 500)".
    pub fn describe(&self) -> String {
        let detail = self
            .detail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let route = match self.get() {
            Route::Replica => "replica".to_string(),
            Route::Primary(reason) => format!("primary: {}", reason.as_str()),
        };
        if detail.is_empty() {
            route
        } else {
            format!("{route} ({detail})")
        }
    }

    fn publish(&self, route: Route) {
        for r in std::iter::once(Route::Replica).chain(Reason::ALL.map(Route::Primary)) {
            self.gauge
                .get(&r.labels())
                .set(f64::from(u8::from(r == route)));
        }
    }
}

/// Primary WAL positions with the time they were read; see the module docs.
#[derive(Debug, Default)]
pub struct LagTracker {
    samples: VecDeque<(Instant, u64)>,
}

/// Enough for over an hour at the default 1 s interval; beyond it new samples are skipped.
const MAX_SAMPLES: usize = 4096;

impl LagTracker {
    /// The primary was at `lsn` at `at`.
    pub fn record_primary(&mut self, at: Instant, lsn: u64) {
        if self.samples.back().is_some_and(|(_, last)| *last >= lsn) {
            return;
        }
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push_back((at, lsn));
        }
    }

    /// Lag of a replica that has replayed up to `replayed`; forgets what it has.
    pub fn lag(&mut self, now: Instant, replayed: u64) -> Duration {
        while self
            .samples
            .front()
            .is_some_and(|(_, lsn)| *lsn <= replayed)
        {
            self.samples.pop_front();
        }
        self.samples
            .front()
            .map_or(Duration::ZERO, |(at, _)| now.saturating_duration_since(*at))
    }
}

/// Checks the replica forever (the caller aborts the task at shutdown).
pub async fn watch(
    primary: Db,
    replica: Db,
    route: Arc<ReadRoute>,
    interval: Duration,
    max_lag: Duration,
    timeout: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tracker = LagTracker::default();
    loop {
        tick.tick().await;
        let primary_lsn = tokio::time::timeout(timeout, wal_position(&primary)).await;
        match primary_lsn {
            Ok(Ok(lsn)) => tracker.record_primary(Instant::now(), lsn),
            // The primary is down: nothing new to replay, so the replica is as fresh as it can be.
            Ok(Err(e)) => tracing::debug!(error = %e, "replica check: primary position unknown"),
            Err(_) => tracing::debug!("replica check: primary did not answer in time"),
        }
        let (next, detail) = match tokio::time::timeout(timeout, replay_position(&replica)).await {
            Err(_) => (
                Route::Primary(Reason::ReplicaDown),
                "no answer in time".to_string(),
            ),
            Ok(Err(e)) => (Route::Primary(Reason::ReplicaDown), e.to_string()),
            Ok(Ok(None)) => (
                Route::Primary(Reason::NotInRecovery),
                "pg_is_in_recovery() is false".to_string(),
            ),
            Ok(Ok(Some(replayed))) => {
                let lag = tracker.lag(Instant::now(), replayed);
                route.lag.set(lag.as_secs_f64());
                if lag > max_lag {
                    (
                        Route::Primary(Reason::ReplicaLagging),
                        format!(
                            "{} ms behind, more than max_replica_lag_ms {}",
                            lag.as_millis(),
                            max_lag.as_millis()
                        ),
                    )
                } else {
                    (Route::Replica, format!("{} ms behind", lag.as_millis()))
                }
            }
        };
        route.set(next, &detail);
    }
}

async fn wal_position(primary: &Db) -> Result<u64, sqlx::Error> {
    let lsn: i64 = sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0')::int8")
        .fetch_one(primary)
        .await?;
    Ok(lsn.max(0) as u64)
}

/// The replay position, or None when the server is not a standby.
async fn replay_position(replica: &Db) -> Result<Option<u64>, sqlx::Error> {
    let (in_recovery, lsn): (bool, Option<i64>) =
        sqlx::query_as("SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0')::int8")
            .fetch_one(replica)
            .await?;
    Ok(in_recovery.then(|| lsn.unwrap_or(0).max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_age_of_the_oldest_unreplayed_primary_position() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = LagTracker::default();
        // An idle primary: no new positions, no lag however old the last write is.
        t.record_primary(t0, 100);
        assert_eq!(t.lag(t0 + 60 * s, 100), Duration::ZERO);
        t.record_primary(t0 + 61 * s, 100);
        assert_eq!(t.lag(t0 + 62 * s, 100), Duration::ZERO);
        // Writes the replica has not replayed age from when the primary had them.
        t.record_primary(t0 + 63 * s, 200);
        t.record_primary(t0 + 64 * s, 300);
        assert_eq!(t.lag(t0 + 66 * s, 150), 3 * s);
        assert_eq!(t.lag(t0 + 67 * s, 200), 3 * s);
        assert_eq!(t.lag(t0 + 68 * s, 300), Duration::ZERO);
    }

    #[test]
    fn routes_round_trip_and_label_from_closed_sets() {
        for r in std::iter::once(Route::Replica).chain(Reason::ALL.map(Route::Primary)) {
            assert_eq!(Route::decode(r.encode()), r);
        }
        assert_eq!(Route::Replica.labels(), ["replica", "ok"]);
        assert_eq!(
            Route::Primary(Reason::ReplicaLagging).labels(),
            ["primary", "replica_lagging"]
        );
    }

    #[test]
    fn the_gauge_marks_exactly_the_current_route() {
        let metrics = braid_core::metrics::Metrics::new("vector_search");
        let route = ReadRoute::new(Route::Primary(Reason::Starting), &metrics).unwrap();
        route.set(Route::Replica, "test");
        route.set(Route::Primary(Reason::ReplicaDown), "test");
        let text = metrics.render();
        let ones: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("braid_vector_search_read_route{") && l.ends_with(" 1"))
            .collect();
        assert_eq!(ones.len(), 1, "{text}");
        assert!(
            ones[0].contains("reason=\"replica_down\"") && ones[0].contains("target=\"primary\"")
        );
        assert_eq!(route.get(), Route::Primary(Reason::ReplicaDown));
    }

    #[test]
    fn the_status_line_says_where_searches_read_with_the_last_check() {
        let metrics = braid_core::metrics::Metrics::new("vector_search");
        let route = ReadRoute::new(Route::Primary(Reason::NoReplica), &metrics).unwrap();
        assert_eq!(route.describe(), "primary: no_replica");
        route.set(Route::Replica, "12 ms behind");
        assert_eq!(route.describe(), "replica (12 ms behind)");
        // Same route, a newer check: the detail follows the check, not the last switch.
        route.set(Route::Replica, "3 ms behind");
        assert_eq!(route.describe(), "replica (3 ms behind)");
        route.set(Route::Primary(Reason::ReplicaDown), "connection refused");
        assert_eq!(
            route.describe(),
            "primary: replica_down (connection refused)"
        );
    }
}
