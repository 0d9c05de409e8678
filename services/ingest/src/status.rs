//! ingest's own part of the status view (`braid.v1.ServiceStatus`): the outbox and the
//! dead-letter queue as housekeeping last measured them (every 5 s), and the indexes as ingest
//! sees them: each tenant's index generation (what cached answers are keyed on), the text index
//! ingest last recorded (a different id on text-search means the text index was replaced
//! and needs `braidctl reindex --leg text`), and any reindex under way with its progress.

use braid_core::metrics::Metrics;
use braid_proto::v1::{IndexStatus, QueueStatus, ServiceStatusReport};

use crate::recovery::store::{RecoveryStore, RunRow};
use crate::store::Store;

/// Tenants listed by name; the rest are counted.
const TENANTS_SHOWN: i64 = 20;

pub async fn part(metrics: Metrics, store: Store, recovery: RecoveryStore) -> ServiceStatusReport {
    let gauge = |name| metrics.value(name, &[]).unwrap_or(0.0);
    let queue = |name: &str, depth: f64, oldest| QueueStatus {
        name: name.into(),
        depth: depth.max(0.0) as u64,
        oldest_age_seconds: oldest,
    };
    let queues = vec![
        queue(
            "outbox",
            gauge("braid_ingest_queue_depth"),
            gauge("braid_ingest_oldest_pending_job_age_seconds"),
        ),
        queue("dead-letter", gauge("braid_ingest_dead_jobs"), 0.0),
    ];
    let (generations, text, runs) = tokio::join!(
        store.index_generations(TENANTS_SHOWN),
        recovery.recorded_text_index(),
        recovery.running_runs()
    );
    let mut indexes = Vec::new();
    match generations {
        Ok((first, count)) => indexes.extend(generation_lines(&first, count)),
        Err(e) => indexes.push(unavailable("generations", &e)),
    }
    match text {
        Ok(id) => indexes.push(IndexStatus {
            name: "text (recorded)".into(),
            generation: id.unwrap_or_default(),
            ..Default::default()
        }),
        Err(e) => indexes.push(unavailable("text (recorded)", &e)),
    }
    match runs {
        Ok(runs) => indexes.extend(runs.iter().map(run_line)),
        Err(e) => indexes.push(unavailable("reindex", &e)),
    }
    ServiceStatusReport {
        queues,
        indexes,
        ..Default::default()
    }
}

fn unavailable(name: &str, e: &sqlx::Error) -> IndexStatus {
    IndexStatus {
        name: name.into(),
        fault: format!("status unavailable: {e}"),
        ..Default::default()
    }
}

/// One line per tenant shown ("generation:<tenant>"), the last saying how many were left out.
fn generation_lines(first: &[(String, i64)], count: i64) -> Vec<IndexStatus> {
    let mut lines: Vec<IndexStatus> = first
        .iter()
        .map(|(tenant, generation)| IndexStatus {
            name: format!("generation:{tenant}"),
            generation: generation.to_string(),
            ..Default::default()
        })
        .collect();
    let left_out = count - first.len() as i64;
    if let Some(last) = lines.last_mut().filter(|_| left_out > 0) {
        last.detail = format!("and {left_out} more tenants");
    }
    lines
}

/// A reindex under way: "reindex:<leg>", its run id, mode, tenant and progress.
fn run_line(run: &RunRow) -> IndexStatus {
    IndexStatus {
        name: format!("reindex:{}", run.leg),
        generation: run.index_id.clone().unwrap_or_else(|| run.id.to_string()),
        fault: String::new(),
        detail: format!(
            "run {}, {}{}, {} of {} documents done, {} jobs queued",
            run.id,
            run.mode,
            run.tenant
                .as_deref()
                .map(|t| format!(" of tenant {t}"))
                .unwrap_or_default(),
            run.done,
            run.total,
            run.enqueued
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_past_the_shown_ones_are_counted_on_the_last_line() {
        let first = vec![("a".to_string(), 3), ("b".to_string(), 7)];
        let lines = generation_lines(&first, 5);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].name, "generation:a");
        assert_eq!(lines[0].generation, "3");
        assert_eq!(lines[0].detail, "");
        assert_eq!(lines[1].detail, "and 3 more tenants");
        assert_eq!(generation_lines(&first, 2)[1].detail, "");
        assert!(generation_lines(&[], 0).is_empty());
    }

    #[test]
    fn a_run_line_names_leg_mode_tenant_and_progress() {
        let run = RunRow {
            id: 9,
            leg: "text".into(),
            tenant: Some("acme".into()),
            mode: "rebuild".into(),
            state: "running".into(),
            total: 100,
            done: 40,
            enqueued: 2,
            error: None,
            index_id: Some("ix-2".into()),
            started_ms: 0,
            finished_ms: None,
        };
        let line = run_line(&run);
        assert_eq!(line.name, "reindex:text");
        assert_eq!(line.generation, "ix-2");
        assert_eq!(
            line.detail,
            "run 9, rebuild of tenant acme, 40 of 100 documents done, 2 jobs queued"
        );
    }
}
