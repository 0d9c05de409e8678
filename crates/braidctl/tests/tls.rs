//! braidctl over TLS (`--tls-ca`, `--tls-cert`, `--tls-key`) against a stack serving TLS
//! everywhere, with mutual TLS between the services (certificates made by the test).

mod common;

use common::stdout;

use braid_tests::v1::DocumentInput;
use braid_tests::{Stack, StackOptions, StackTls, ingest_ready};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn braidctl_searches_and_checks_health_over_tls() {
    let tls = StackTls::new(true).unwrap();
    let pki = tls.pki.clone();
    let stack = Stack::start_with(StackOptions {
        tls: Some(tls),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let document = DocumentInput {
        external_id: "tides".into(),
        title: "Tides".into(),
        content: "Tides are caused by the gravitational pull of the moon on the oceans.".into(),
        mime_type: "text/plain".into(),
        ..Default::default()
    };
    ingest_ready(&mut gw, "default", vec![document]).await;

    let home = tempfile::tempdir().unwrap();
    let gateway = stack.gateway.endpoint();
    let ca = pki.ca_file().display().to_string();
    let out = common::braidctl(
        home.path(),
        &["--gateway", &gateway, "--tls-ca", &ca, "search", "moon"],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("[tides]"), "{}", stdout(&out));

    // Without the CA the gateway's certificate is not trusted.
    let out = common::braidctl(home.path(), &["--gateway", &gateway, "search", "moon"]).await;
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");

    // Every service, the internal ones with a client certificate (they require one).
    let (cert, key) = (
        pki.dir().join("services.pem").display().to_string(),
        pki.dir().join("services.key").display().to_string(),
    );
    let mut health = vec![
        "--gateway",
        &gateway,
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "health",
    ];
    let addresses = [
        ("--ingest", stack.ingest.endpoint()),
        ("--embedding", stack.embedding.endpoint()),
        ("--vector-search", stack.vector.endpoint()),
        ("--text-search", stack.text.endpoint()),
    ];
    for (flag, address) in &addresses {
        health.extend([*flag, address.as_str()]);
    }
    let out = common::braidctl(home.path(), &health).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out).matches("SERVING").count(),
        5,
        "{}",
        stdout(&out)
    );

    // Without the client certificate the internal services refuse the check.
    let without_cert: Vec<&str> = health
        .iter()
        .copied()
        .filter(|a| ![cert.as_str(), key.as_str(), "--tls-cert", "--tls-key"].contains(a))
        .collect();
    let out = common::braidctl(home.path(), &without_cert).await;
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out).matches(" SERVING").count(),
        1,
        "{}",
        stdout(&out)
    );

    stack.shutdown().await.unwrap();
}
