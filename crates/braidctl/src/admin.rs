//! Operations commands: `jobs` (the dead-letter queue), `stats`, `reembed` and
//! `auth revoke`.

use std::process::ExitCode;

use braid_proto::v1::{
    DiscardJobsRequest, JobState, ListJobsRequest, ReembedRequest, RetryJobsRequest,
    RevokeTokensRequest, StatsRequest,
};

use crate::Gateway;
use crate::cli::JobsCommand;
use crate::documents::ts;

pub async fn stats(mut gw: Gateway, tenant: String) -> anyhow::Result<ExitCode> {
    let s = gw.stats(StatsRequest { tenant }).await?.into_inner();
    println!("documents:            {}", s.documents_total);
    let mut by: Vec<_> = s.documents_by_status.iter().collect();
    by.sort();
    for (status, n) in by {
        println!("  {status:<19} {n}");
    }
    println!("chunks:               {}", s.chunks_total);
    println!("queue depth:          {}", s.queue_depth);
    println!(
        "oldest pending job:   {:.1} s",
        s.oldest_pending_age_seconds
    );
    println!("dead-letter queue:    {}", s.dead_jobs);
    println!("last sync:            {}", ts(&s.last_sync_at));
    Ok(ExitCode::SUCCESS)
}

pub async fn revoke(mut gw: Gateway, tenant: String, subject: String) -> anyhow::Result<ExitCode> {
    let r = gw
        .revoke_tokens(RevokeTokensRequest {
            subject: subject.clone(),
            tenant,
        })
        .await?
        .into_inner();
    let scope = if r.tenant.is_empty() {
        "in every tenant".to_string()
    } else {
        format!("in tenant {}", r.tenant)
    };
    println!(
        "tokens of {subject} {scope} issued before {} are refused",
        ts(&r.cut_off)
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn reembed(
    mut gw: Gateway,
    tenant: String,
    dry_run: bool,
    wait: bool,
    purge: bool,
) -> anyhow::Result<ExitCode> {
    let r = gw
        .reembed(ReembedRequest {
            tenant: tenant.clone(),
            dry_run,
            purge_other_models: purge,
        })
        .await?
        .into_inner();
    if purge {
        println!(
            "kept {}; deleted {} vectors of other models",
            r.model, r.purged
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "target model {}: {} jobs enqueued, {} documents on another model",
        r.model, r.enqueued, r.remaining
    );
    let mut remaining = r.remaining;
    while wait && remaining > 0 {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        remaining = gw
            .reembed(ReembedRequest {
                tenant: tenant.clone(),
                dry_run: true,
                purge_other_models: false,
            })
            .await?
            .into_inner()
            .remaining;
        eprintln!("{remaining} documents left");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn jobs(
    mut client: Gateway,
    tenant: &str,
    command: JobsCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        JobsCommand::List { states, leg, limit } => {
            let mut page_token = String::new();
            let mut shown = 0;
            println!(
                "{:>8}  {:<9}  {:<6}  {:<6}  {:>3}  {:<24}  {:<20}  last error",
                "job", "state", "leg", "op", "try", "updated", "document"
            );
            loop {
                let page = client
                    .list_jobs(ListJobsRequest {
                        tenant: tenant.to_string(),
                        states: states.iter().map(|s| JobState::from(*s) as i32).collect(),
                        leg: leg.clone().unwrap_or_default(),
                        page_size: limit.clamp(1, 500),
                        page_token,
                    })
                    .await?
                    .into_inner();
                for j in &page.jobs {
                    let state = JobState::try_from(j.state)
                        .unwrap_or_default()
                        .as_str_name();
                    let doc = if j.external_id.is_empty() {
                        &j.document_id
                    } else {
                        &j.external_id
                    };
                    println!(
                        "{:>8}  {:<9}  {:<6}  {:<6}  {:>3}  {:<24}  {:<20}  {}",
                        j.job_id,
                        state.trim_start_matches("JOB_STATE_"),
                        j.leg,
                        j.op,
                        j.attempts,
                        ts(&j.updated_at),
                        doc,
                        j.last_error
                    );
                    shown += 1;
                }
                if page.next_page_token.is_empty() || shown >= limit {
                    break;
                }
                page_token = page.next_page_token;
            }
            println!("{shown} jobs");
        }
        JobsCommand::Retry { ids, all } => {
            let r = client
                .retry_jobs(RetryJobsRequest {
                    job_ids: ids,
                    all_dead: all,
                    tenant: tenant.to_string(),
                })
                .await?
                .into_inner();
            println!("{} jobs queued again", r.retried);
        }
        JobsCommand::Discard { ids, all } => {
            let r = client
                .discard_jobs(DiscardJobsRequest {
                    job_ids: ids,
                    all_dead: all,
                    tenant: tenant.to_string(),
                })
                .await?
                .into_inner();
            println!("{} jobs discarded", r.discarded);
        }
    }
    Ok(ExitCode::SUCCESS)
}
