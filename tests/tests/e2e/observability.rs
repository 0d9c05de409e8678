//! The operator-facing observability files against the real services: every metric that the
//! alert rules (deploy/prometheus/rules.yml) and the Grafana dashboard (deploy/grafana/braid.json)
//! query must be exported by a live `/metrics` scrape of the five services, after an ingest, a
//! search, a degraded search and a call through the OpenAI-compatible provider (so labelled
//! series exist). Also: `/livez` answers 200 on every admin port.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use braid_embedding::ProviderKind;
use braid_tests::v1::embedding_service_client::EmbeddingServiceClient;
use braid_tests::v1::{EmbedRequest, InputType, SearchMode, SearchRequest};
use braid_tests::{Ingest, Service, Stack, http_get, start_embedding, titled};

/// Metric names (`braid_…` tokens) in a rules or dashboard file; YAML comments are skipped.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find("braid_") {
            // A token starts at a non-identifier character.
            let preceded = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            let token: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if !preceded {
                names.insert(token.clone());
            }
            rest = &rest[at + token.len()..];
        }
    }
    names
}

/// Sample names in a Prometheus text exposition (histograms appear as `_bucket`, `_sum`,
/// `_count`, exactly as PromQL must name them).
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// `# TYPE name kind` lines.
fn families(exposition: &str) -> HashMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect()
}

async fn scrape(service: &Service) -> String {
    let (status, body) = http_get(service.admin, "/metrics")
        .await
        .unwrap_or_else(|e| panic!("scraping {}: {e}", service.name));
    assert!(status.contains("200"), "{}: {status}", service.name);
    body
}

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_and_dashboard_use_only_exported_metrics() {
    // The stack's embedding service serves `/v1/embeddings` (with a key) for the provider
    // instance started below.
    let mut options = braid_tests::StackOptions::default();
    options.embedding.openai_server.api_key =
        braid_core::auth::secret::KeySource::from_value("observability-key");
    let mut stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    Ingest::new(vec![
        titled(
            "lava",
            "Magma rises through cracks and erupts as lava and ash.",
        ),
        titled(
            "bread",
            "Sourdough starter, flour and water make a crusty loaf.",
        ),
    ])
    .ready(&mut gw)
    .await;
    let search = |mode: SearchMode| SearchRequest {
        query: "volcanic eruption".into(),
        top_k: 5,
        mode: mode as i32,
        ..Default::default()
    };
    let r = gw
        .search(search(SearchMode::Hybrid))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.hits.first().map(|h| h.external_id.as_str()), Some("lava"));

    // An embedding instance in provider mode, calling the stack's OpenAI-compatible endpoint,
    // exports the provider metrics the rules page on.
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("provider.key");
    std::fs::write(&key_file, "observability-key\n").unwrap();
    let base_url = format!("http://{}/v1", stack.embedding.admin);
    let mut provider = start_embedding(|c| {
        c.provider.kind = ProviderKind::Openai;
        c.provider.openai.base_url = base_url;
        c.provider.openai.model = "all-MiniLM-L6-v2".into();
        c.provider.openai.api_key_env = String::new();
        c.provider.openai.api_key_file = Some(key_file.clone());
    })
    .await
    .unwrap();
    EmbeddingServiceClient::new(braid_tests::service_channel(&provider))
        .embed(EmbedRequest {
            texts: vec!["a query through the provider".into()],
            input_type: InputType::Query as i32,
        })
        .await
        .unwrap();

    let mut scrapes = Vec::new();
    for service in stack.services().into_iter().chain([&provider]) {
        let (status, body) = http_get(service.admin, "/livez").await.unwrap();
        assert!(status.contains("200"), "{} /livez: {status}", service.name);
        assert_eq!(body, "ok");
        scrapes.push(scrape(service).await);
    }

    // A search without the text leg: the degradation counter gets its series.
    stack.text.stop().await.unwrap();
    let r = gw
        .search(SearchRequest {
            // Not the answer cached a moment ago: this one must reach the legs.
            bypass_cache: true,
            ..search(SearchMode::Hybrid)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.degraded, "{r:?}");
    scrapes.push(scrape(&stack.gateway).await);

    let exported: BTreeSet<String> = scrapes.iter().flat_map(|s| sample_names(s)).collect();
    let kinds: HashMap<String, String> = scrapes.iter().flat_map(|s| families(s)).collect();
    for file in ["deploy/prometheus/rules.yml", "deploy/grafana/braid.json"] {
        let used = metric_names(&read(file));
        assert!(
            used.len() >= 10,
            "{file}: only {used:?} found; is the extraction broken?"
        );
        let missing: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "{file} queries metrics no service exports: {missing:?}"
        );
        for name in &used {
            // A histogram is queried through its suffixed series, never by its family name.
            if let Some(base) = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| kinds.contains_key(*b))
            {
                assert_eq!(kinds[base], "histogram", "{file}: {name}");
            }
        }
    }

    provider.stop().await.unwrap();
    stack.shutdown().await.unwrap();
}

#[test]
fn metric_name_extraction() {
    let names = metric_names(
        "# braid_in_comment\nexpr: sum(rate(braid_a_total{x=\"braid-y\"}[5m])) / braid_b_bucket\n\
         \"expr\": \"max(xbraid_not) + braid_c:rate5m\"",
    );
    let expected: BTreeSet<String> = ["braid_a_total", "braid_b_bucket", "braid_c:rate5m"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, expected);
}
