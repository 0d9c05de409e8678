//! `braidctl audit` against the real stack with auth on: an admin (the dev token braidctl
//! mints from `$BRAID_HOME/secrets/dev-jwt.key`) reads the trail filtered by subject; a reader
//! is refused with PERMISSION_DENIED and a non-zero exit code.

mod common;

use std::time::Duration;

use braid_core::auth::jwt::AuthConfig;
use braid_core::auth::secret::KeySource;
use common::{braidctl, stdout};

use braid_tests::{Stack, StackOptions, eventually};

const KEY: &str = "braidctl-audit-test-key-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_lists_for_admins_and_refuses_readers() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("secrets")).unwrap();
    std::fs::write(home.path().join("secrets/dev-jwt.key"), KEY).unwrap();
    let stack = Stack::start_with(StackOptions::with_jwt(AuthConfig {
        hs256: KeySource::from_value(KEY),
        ..Default::default()
    }))
    .await
    .unwrap();
    let gateway = stack.gateway.endpoint();
    let home = home.path();

    let minted = braidctl(
        home,
        &[
            "token", "mint", "--sub", "rita", "--tenant", "acme", "--role", "reader", "--ttl",
            "10m",
        ],
    )
    .await;
    assert!(minted.status.success(), "{minted:?}");
    let reader = stdout(&minted).trim().to_string();

    let searched = braidctl(
        home,
        &[
            "--gateway",
            &gateway,
            "--token",
            &reader,
            "search",
            "glaciers",
            "--json",
        ],
    )
    .await;
    assert!(searched.status.success(), "{searched:?}");
    let refused = braidctl(
        home,
        &[
            "--gateway",
            &gateway,
            "--token",
            &reader,
            "audit",
            "--since",
            "1h",
        ],
    )
    .await;
    assert!(!refused.status.success(), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("PermissionDenied") || stderr.contains("permission"),
        "{stderr}"
    );

    // No --token: braidctl mints a dev admin token with the key under BRAID_HOME.
    let records = eventually(
        "rita's two calls in the trail",
        Duration::from_secs(60),
        || async {
            let listed = braidctl(
                home,
                &[
                    "--gateway",
                    &gateway,
                    "audit",
                    "--since",
                    "1h",
                    "--subject",
                    "rita",
                    "--json",
                ],
            )
            .await;
            assert!(listed.status.success(), "{listed:?}");
            let records: Vec<serde_json::Value> = stdout(&listed)
                .lines()
                .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
                .collect();
            (records.len() >= 2).then_some(records)
        },
    )
    .await
    .unwrap();
    let seen: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["rpc"].as_str().unwrap(),
                r["code"].as_str().unwrap(),
                r["subject"].as_str().unwrap(),
            )
        })
        .collect();
    // Newest first.
    assert_eq!(
        seen,
        [
            ("ListAudit", "PermissionDenied", "rita"),
            ("Search", "Ok", "rita"),
        ]
    );
    assert_eq!(records[1]["tenant"], "acme");
    assert_eq!(records[1]["role"], "reader");
    stack.shutdown().await.unwrap();
}
