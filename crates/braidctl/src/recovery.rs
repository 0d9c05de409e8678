//! `braidctl reindex` and `braidctl verify`: rebuild a search leg from PostgreSQL, and check
//! both legs against it (admin only).

use std::process::ExitCode;
use std::time::Duration;

use braid_proto::v1::{
    ReindexLeg, ReindexRequest, ReindexRun, ReindexStatusRequest, VerifyRequest, VerifyResponse,
};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LegArg {
    Text,
    Vector,
}

#[derive(clap::Args)]
pub struct ReindexArgs {
    /// Which leg: `text` rebuilds the text index (every tenant: a new index, switched when
    /// complete; with --tenant: that tenant's documents re-written in place); `vector`
    /// re-embeds documents whose vectors are missing or stale.
    #[arg(long, value_enum)]
    leg: LegArg,
    /// Follow the run with a progress line until it ends; the exit code says how it ended.
    #[arg(long)]
    wait: bool,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Enqueue an index job for every drifted document and leg.
    #[arg(long)]
    repair: bool,
    /// Print the response as one JSON object.
    #[arg(long)]
    json: bool,
}

fn line(run: &ReindexRun) -> String {
    let pct = if run.total > 0 {
        format!(" ({:.0}%)", run.done as f64 * 100.0 / run.total as f64)
    } else {
        String::new()
    };
    let mut s = format!(
        "run {} {} {} [{}]: {}, {}/{} documents{pct}",
        run.run_id,
        run.leg,
        if run.tenant.is_empty() {
            "all tenants"
        } else {
            &run.tenant
        },
        run.mode,
        run.state,
        run.done,
        run.total
    );
    if run.enqueued > 0 {
        s.push_str(&format!(", {} jobs enqueued", run.enqueued));
    }
    if !run.index_id.is_empty() {
        s.push_str(&format!(", serving index {}", run.index_id));
    }
    if !run.error.is_empty() {
        s.push_str(&format!(": {}", run.error));
    }
    s
}

pub async fn reindex(
    mut client: crate::Gateway,
    tenant: &str,
    args: ReindexArgs,
) -> anyhow::Result<ExitCode> {
    let leg = match args.leg {
        LegArg::Text => ReindexLeg::Text,
        LegArg::Vector => ReindexLeg::Vector,
    };
    let mut run = client
        .reindex(ReindexRequest {
            leg: leg as i32,
            tenant: tenant.to_string(),
            wait: false,
            wait_timeout_ms: 0,
        })
        .await?
        .into_inner()
        .run
        .unwrap_or_default();
    eprintln!("{}", line(&run));
    while args.wait && run.state == "running" {
        tokio::time::sleep(Duration::from_secs(1)).await;
        run = client
            .reindex_status(ReindexStatusRequest { run_id: run.run_id })
            .await?
            .into_inner()
            .run
            .unwrap_or_default();
        eprintln!("{}", line(&run));
    }
    Ok(if run.state == "failed" {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn verify(
    mut client: crate::Gateway,
    tenant: &str,
    args: VerifyArgs,
) -> anyhow::Result<ExitCode> {
    let r = client
        .verify(VerifyRequest {
            tenant: tenant.to_string(),
            repair: args.repair,
        })
        .await?
        .into_inner();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&r))?);
    } else {
        print_table(&r);
    }
    Ok(if r.drift.is_empty() {
        ExitCode::SUCCESS
    } else {
        // Drift found: non-zero so scripts notice (after --repair too: run verify again).
        ExitCode::from(2)
    })
}

fn to_json(r: &VerifyResponse) -> serde_json::Value {
    serde_json::json!({
        "documents_checked": r.documents_checked,
        "chunks_checked": r.chunks_checked,
        "documents_in_flight": r.documents_in_flight,
        "repaired": r.repaired,
        "truncated": r.truncated,
        "drift": r.drift.iter().map(|d| serde_json::json!({
            "tenant": d.tenant,
            "document_id": d.document_id,
            "external_id": d.external_id,
            "leg": d.leg,
            "kind": d.kind,
            "chunk_ids": d.chunk_ids,
        })).collect::<Vec<_>>(),
    })
}

fn print_table(r: &VerifyResponse) {
    println!(
        "{} documents ({} chunks) checked, {} in flight (skipped), {} drifted entries{}",
        r.documents_checked,
        r.chunks_checked,
        r.documents_in_flight,
        r.drift.len(),
        if r.truncated { " (list truncated)" } else { "" }
    );
    if !r.drift.is_empty() {
        println!(
            "{:<12} {:<36} {:<24} {:<7} {:<14} CHUNKS",
            "TENANT", "DOCUMENT", "EXTERNAL ID", "LEG", "DRIFT"
        );
        for d in &r.drift {
            println!(
                "{:<12} {:<36} {:<24} {:<7} {:<14} {}",
                d.tenant,
                d.document_id,
                d.external_id,
                d.leg,
                d.kind,
                d.chunk_ids.len()
            );
        }
    }
    if r.repaired > 0 {
        println!(
            "{} index jobs enqueued; run verify again once they are done",
            r.repaired
        );
    }
}
