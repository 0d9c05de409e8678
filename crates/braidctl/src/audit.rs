//! `braidctl audit`: the gateway's audit trail, newest first (`ListAudit`, admin only).

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use braid_proto::v1::{AuditRecord, ListAuditRequest};

#[derive(clap::Args)]
pub struct AuditArgs {
    /// Only records from this far back: a number with s, m, h or d (e.g. 90m, 1h, 7d).
    #[arg(long, default_value = "1h", value_parser = parse_age)]
    since: Duration,
    /// Only this caller.
    #[arg(long)]
    subject: Option<String>,
    /// Only this RPC (e.g. Search, Ingest, DeleteDocument).
    #[arg(long)]
    rpc: Option<String>,
    /// At most this many records.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// One JSON object per record.
    #[arg(long)]
    json: bool,
}

fn parse_age(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}`: expected a number and a unit, e.g. 1h"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: the unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

/// A stored field as the table shows it: control and bidirectional formatting characters as
/// `\u{..}`, so a recorded value can neither move the cursor, recolour the terminal nor make
/// a line read differently from what it holds. (JSON output escapes control characters by
/// itself.)
fn escaped(value: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_control() || braid_core::validate::is_bidi_control(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

fn json(r: &AuditRecord) -> serde_json::Value {
    serde_json::json!({
        "at": r.at.as_ref().map(|t| t.to_string()),
        "subject": r.subject,
        "tenant": r.tenant,
        "role": r.role,
        "client_addr": r.client_addr,
        "rpc": r.rpc,
        "code": r.code,
        "latency_ms": r.latency_ms,
        "result_count": r.result_count,
        "document_ids": r.document_ids,
        "trace_id": r.trace_id,
        "query": r.query,
        "calls": r.calls,
    })
}

pub async fn run(
    mut client: crate::Gateway,
    tenant: &str,
    args: AuditArgs,
) -> anyhow::Result<ExitCode> {
    let since = SystemTime::now()
        .checked_sub(args.since)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut page_token = String::new();
    let mut shown = 0;
    if !args.json {
        println!(
            "{:<30}  {:<16}  {:<12}  {:<14}  {:<17}  {:>9}  {:>7}  {:>6}  client",
            "at", "subject", "tenant", "rpc", "code", "ms", "results", "calls"
        );
    }
    while shown < args.limit {
        let page = client
            .list_audit(ListAuditRequest {
                since: Some(braid_proto::timestamp_from_millis(since.as_millis() as i64)),
                subject: args.subject.clone().unwrap_or_default(),
                tenant: tenant.to_string(),
                rpc: args.rpc.clone().unwrap_or_default(),
                page_size: (args.limit - shown).clamp(1, 500) as u32,
                page_token,
            })
            .await?
            .into_inner();
        for r in &page.records {
            if args.json {
                println!("{}", json(r));
            } else {
                println!(
                    "{:<30}  {:<16}  {:<12}  {:<14}  {:<17}  {:>9.1}  {:>7}  {:>6}  {}",
                    r.at.as_ref().map_or("-".to_string(), |t| t.to_string()),
                    escaped(&r.subject),
                    escaped(&r.tenant),
                    escaped(&r.rpc),
                    escaped(&r.code),
                    r.latency_ms,
                    r.result_count,
                    r.calls.max(1),
                    escaped(&r.client_addr)
                );
            }
            shown += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if !args.json {
        println!("{shown} records");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_fields_show_control_characters_escaped() {
        assert_eq!(escaped("alice"), "alice");
        assert_eq!(escaped("ü-group"), "ü-group");
        assert_eq!(escaped("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(escaped("x\ny\u{0}\u{202e}"), "x\\u{a}y\\u{0}\\u{202e}");
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_age("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_age("1w").is_err());
        assert!(parse_age("h").is_err());
    }
}
