//! `status` (the gateway's one status view, as a table or JSON) and `breaker reset`.

use std::fmt::Write as _;
use std::process::ExitCode;

use braid_proto::v1::{ResetBreakerRequest, ServiceStatusReport, StatusRequest, StatusResponse};

use crate::Gateway;

/// Prints the status of every service; the exit code is non-zero unless all of them serve.
pub async fn show(mut gw: Gateway, json: bool) -> anyhow::Result<ExitCode> {
    let r = gw.status(StatusRequest {}).await?.into_inner();
    if json {
        println!("{}", serde_json::to_string_pretty(&to_json(&r))?);
    } else {
        print!("{}", render(&r));
    }
    Ok(if r.services.iter().all(|s| s.serving) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn reset(mut gw: Gateway, leg: String) -> anyhow::Result<ExitCode> {
    let r = gw
        .reset_breaker(ResetBreakerRequest { leg })
        .await?
        .into_inner();
    println!(
        "breaker for {} reset: was {}, now {} (on the gateway replica that answered)",
        r.leg, r.previous_state, r.state
    );
    Ok(ExitCode::SUCCESS)
}

fn health(s: &ServiceStatusReport) -> &'static str {
    match (s.reachable, s.serving) {
        (false, _) => "UNREACHABLE",
        (true, true) => "SERVING",
        (true, false) => "NOT_SERVING",
    }
}

/// `3725` -> `1h02m05s`.
fn uptime(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// The summary table (one line per service), then each service's parts.
fn render(r: &StatusResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:<12} {:<20} {:>10}  WHY",
        "SERVICE", "HEALTH", "VERSION", "UPTIME"
    );
    for s in &r.services {
        let (version, up) = if s.reachable {
            (s.version.as_str(), uptime(s.uptime_seconds))
        } else {
            ("-", "-".to_string())
        };
        let line = format!(
            "{:<14} {:<12} {:<20} {:>10}  {}",
            s.service,
            health(s),
            version,
            up,
            s.reason
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for s in r.services.iter().filter(|s| s.reachable) {
        let mut lines = Vec::new();
        for b in &s.breakers {
            let retry = if b.retry_in_ms > 0 {
                format!(" (half-open in {:.1} s)", b.retry_in_ms as f64 / 1000.0)
            } else {
                String::new()
            };
            lines.push(("breaker", b.leg.clone(), format!("{}{retry}", b.state)));
        }
        for p in &s.pools {
            lines.push((
                "pool",
                p.name.clone(),
                format!("{}/{} in use, {} idle", p.in_use, p.max, p.idle),
            ));
        }
        for c in &s.caches {
            lines.push((
                "cache",
                c.name.clone(),
                format!(
                    "{:.1} % hits ({} hits, {} misses)",
                    c.hit_rate * 100.0,
                    c.hits,
                    c.misses
                ),
            ));
        }
        for q in &s.queues {
            let oldest = if q.oldest_age_seconds > 0.0 {
                format!(" (oldest {:.1} s)", q.oldest_age_seconds)
            } else {
                String::new()
            };
            lines.push(("queue", q.name.clone(), format!("{}{oldest}", q.depth)));
        }
        for i in &s.indexes {
            // "<generation> (<detail>) FAULT: <fault>", each part only when present.
            let detail = (!i.detail.is_empty()).then(|| format!("({})", i.detail));
            let fault = (!i.fault.is_empty()).then(|| format!("FAULT: {}", i.fault));
            let v: Vec<String> = std::iter::once(i.generation.clone())
                .filter(|g| !g.is_empty())
                .chain(detail)
                .chain(fault)
                .collect();
            lines.push(("index", i.name.clone(), v.join(" ")));
        }
        for d in &s.details {
            lines.push(("detail", d.key.clone(), d.value.clone()));
        }
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{}", s.service);
        for (kind, name, value) in lines {
            let _ = writeln!(out, "  {kind:<8} {name:<24} {value}");
        }
    }
    out
}

fn to_json(r: &StatusResponse) -> serde_json::Value {
    let services: Vec<_> = r
        .services
        .iter()
        .map(|s| {
            serde_json::json!({
                "service": s.service,
                "reachable": s.reachable,
                "serving": s.serving,
                "reason": s.reason,
                "version": s.version,
                "uptime_seconds": s.uptime_seconds,
                "breakers": s.breakers.iter().map(|b| serde_json::json!({
                    "leg": b.leg, "state": b.state, "retry_in_ms": b.retry_in_ms,
                })).collect::<Vec<_>>(),
                "pools": s.pools.iter().map(|p| serde_json::json!({
                    "name": p.name, "max": p.max, "idle": p.idle, "in_use": p.in_use,
                })).collect::<Vec<_>>(),
                "caches": s.caches.iter().map(|c| serde_json::json!({
                    "name": c.name, "hits": c.hits, "misses": c.misses, "hit_rate": c.hit_rate,
                })).collect::<Vec<_>>(),
                "queues": s.queues.iter().map(|q| serde_json::json!({
                    "name": q.name, "depth": q.depth, "oldest_age_seconds": q.oldest_age_seconds,
                })).collect::<Vec<_>>(),
                "indexes": s.indexes.iter().map(|i| serde_json::json!({
                    "name": i.name, "generation": i.generation, "fault": i.fault,
                    "detail": i.detail,
                })).collect::<Vec<_>>(),
                "details": s.details.iter().map(|d| (d.key.clone(), d.value.clone().into()))
                    .collect::<serde_json::Map<String, serde_json::Value>>(),
            })
        })
        .collect();
    serde_json::json!({ "services": services })
}

#[cfg(test)]
mod tests {
    use braid_proto::v1::{BreakerStatus, IndexStatus, PoolStatus, QueueStatus};

    use super::*;

    fn example() -> StatusResponse {
        StatusResponse {
            services: vec![
                ServiceStatusReport {
                    service: "gateway".into(),
                    reachable: true,
                    serving: true,
                    version: "0.1.0 (abc123)".into(),
                    uptime_seconds: 3725,
                    breakers: vec![BreakerStatus {
                        leg: "text-search".into(),
                        state: "open".into(),
                        retry_in_ms: 8_200,
                    }],
                    ..Default::default()
                },
                ServiceStatusReport {
                    service: "ingest".into(),
                    reachable: true,
                    serving: false,
                    reason: "database unavailable".into(),
                    version: "0.1.0".into(),
                    uptime_seconds: 61,
                    pools: vec![PoolStatus {
                        name: "database".into(),
                        max: 10,
                        idle: 3,
                        in_use: 2,
                    }],
                    queues: vec![QueueStatus {
                        name: "outbox".into(),
                        depth: 12,
                        oldest_age_seconds: 4.0,
                    }],
                    indexes: vec![
                        IndexStatus {
                            name: "generation:acme".into(),
                            generation: "7".into(),
                            ..Default::default()
                        },
                        IndexStatus {
                            name: "vector".into(),
                            detail: "~5 chunks".into(),
                            ..Default::default()
                        },
                        IndexStatus {
                            name: "text".into(),
                            generation: "idx-1".into(),
                            detail: "rebuilding".into(),
                            fault: "disk full".into(),
                        },
                    ],
                    ..Default::default()
                },
                ServiceStatusReport {
                    service: "text-search".into(),
                    reason: "unreachable: Unavailable: connection refused".into(),
                    indexes: vec![IndexStatus::default()],
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn the_table_has_a_line_per_service_then_each_one_s_parts() {
        let text = render(&example());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("SERVICE"), "{text}");
        assert!(
            lines[1].starts_with("gateway        SERVING      0.1.0 (abc123)")
                && lines[1].contains("1h02m05s"),
            "{text}"
        );
        assert!(
            lines[2].contains("NOT_SERVING") && lines[2].ends_with("database unavailable"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("text-search    UNREACHABLE  -")
                && lines[3].ends_with("unreachable: Unavailable: connection refused"),
            "{text}"
        );
        assert!(
            text.contains("  breaker  text-search              open (half-open in 8.2 s)"),
            "{text}"
        );
        assert!(
            text.contains("  pool     database                 2/10 in use, 3 idle"),
            "{text}"
        );
        assert!(text.contains("  queue    outbox                   12 (oldest 4.0 s)"));
        // Index lines: each part only when present (no blank before a detail without generation).
        assert!(
            text.contains("  index    generation:acme          7\n"),
            "{text}"
        );
        assert!(
            text.contains("  index    vector                   (~5 chunks)\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  index    text                     idx-1 (rebuilding) FAULT: disk full\n"
            ),
            "{text}"
        );
        // An unreachable service has no parts to show.
        assert!(!text.contains("\ntext-search\n"), "{text}");
    }

    #[test]
    fn json_carries_every_part() {
        let v = to_json(&example());
        assert_eq!(v["services"][0]["breakers"][0]["state"], "open");
        assert_eq!(v["services"][1]["pools"][0]["in_use"], 2);
        assert_eq!(v["services"][2]["reachable"], false);
        assert_eq!(uptime(59), "59s");
        assert_eq!(uptime(61), "1m01s");
    }
}
