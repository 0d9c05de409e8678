//! The text leg on a real OpenSearch (or Elasticsearch) node, for the tests built with the
//! `elasticsearch` feature.
//!
//! - [`engine_url`]: the shared node `make test` starts (`BRAID_TEST_ELASTICSEARCH_URL`);
//!   unset, the tests fail (never skip). Each stack on it gets index names of its own
//!   ([`engine_config`]) and removes them when done ([`remove_indices`]).
//! - [`Node`]: a node of the test's own (for stopping it under load), started from the
//!   distribution the set-up assembled (`BRAID_TEST_OPENSEARCH_HOME`, Java from
//!   `BRAID_TEST_OPENSEARCH_JAVA_HOME`) on free loopback ports, in a temporary directory; as
//!   root it runs as `BRAID_PG_USER` (default `braid-pg`), since OpenSearch refuses root.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use braid_text_search::{ElasticsearchConfig, EsIndex, Layout, SearchConfig};
use tokio::process::{Child, Command};

use crate::{StackOptions, eventually, free_port};

/// The shared engine's URL; panics (the test fails) when the set-up did not provide one.
pub fn engine_url() -> String {
    std::env::var("BRAID_TEST_ELASTICSEARCH_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect(
            "BRAID_TEST_ELASTICSEARCH_URL is unset: these tests need a real OpenSearch or \
             Elasticsearch node (`make test` starts one: deploy/scripts/stack.sh \
             opensearch-start, then BRAID_TEST_ELASTICSEARCH_URL=http://127.0.0.1:19200)",
        )
}

/// The backend's settings for `url` under an index prefix of its own: one node, so no
/// replicas; short request deadlines so a lost node shows within a few seconds. The default
/// layout (`per_tenant`); see [`engine_config_with`].
pub fn engine_config(url: &str) -> ElasticsearchConfig {
    engine_config_with(url, Layout::default())
}

/// [`engine_config`] in `layout`.
pub fn engine_config_with(url: &str, layout: Layout) -> ElasticsearchConfig {
    ElasticsearchConfig {
        urls: vec![url.to_string()],
        index_prefix: format!("braid-e2e-{}", uuid::Uuid::new_v4().simple()),
        layout,
        replicas: 0,
        request_timeout_ms: 5_000,
        retries: 2,
        ..ElasticsearchConfig::default()
    }
}

/// The default stack with its text leg on `engine`.
pub fn stack_options(engine: &ElasticsearchConfig) -> StackOptions {
    StackOptions {
        text_engine: Some(engine.clone()),
        ..StackOptions::default()
    }
}

/// Deletes every index and the template of `engine`'s prefix.
pub async fn remove_indices(engine: &ElasticsearchConfig) -> anyhow::Result<()> {
    let es = EsIndex::new(engine, &SearchConfig::default()).map_err(anyhow::Error::msg)?;
    es.remove_from_cluster().await.map_err(anyhow::Error::msg)
}

/// GET `path` on the engine, as JSON.
pub async fn engine_get(url: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let response = reqwest::get(format!("{url}{path}"))
        .await
        .with_context(|| format!("GET {url}{path}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "GET {path}: {status} {body}");
    Ok(body)
}

/// The concrete index behind `engine`'s alias and how many document entries it and, in the
/// per-tenant layout, its generation's tenant indices (`<index>-*`) hold (after a refresh).
pub async fn engine_documents(engine: &ElasticsearchConfig) -> anyhow::Result<(String, u64)> {
    let (url, alias) = (&engine.urls[0], &engine.index_prefix);
    let aliases = engine_get(url, &format!("/_alias/{alias}")).await?;
    let index = aliases
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .context("the alias names no index")?;
    let client = reqwest::Client::new();
    let alias = format!("{index}*");
    client
        .post(format!("{url}/{alias}/_refresh"))
        .send()
        .await?
        .error_for_status()?;
    let count: serde_json::Value = client
        .post(format!("{url}/{alias}/_count"))
        .json(&serde_json::json!({ "query": { "term": { "kind": "document" } } }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let n = count["count"].as_u64().context("no count")?;
    Ok((index, n))
}

/// OpenSearch refuses to run as root: as root it runs as this user.
fn os_user() -> Option<String> {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    root.then(|| std::env::var("BRAID_PG_USER").unwrap_or_else(|_| "braid-pg".into()))
}

fn env_path(var: &str, fallback: impl FnOnce() -> PathBuf) -> PathBuf {
    std::env::var_os(var).map_or_else(fallback, PathBuf::from)
}

/// The distribution the set-up assembled.
fn distribution() -> PathBuf {
    env_path("BRAID_TEST_OPENSEARCH_HOME", || {
        env_path("BRAID_HOME", || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.braid")
        })
        .join("opensearch/opensearch-2.19.6")
    })
}

/// A single OpenSearch node of the test's own on 127.0.0.1; stopped (killed) when dropped.
pub struct Node {
    pub url: String,
    port: u16,
    transport: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Node {
    /// Starts a node and waits until it reports yellow or green.
    pub async fn start() -> anyhow::Result<Self> {
        let home = distribution();
        anyhow::ensure!(
            home.join("bin/opensearch").is_file(),
            "no OpenSearch distribution at {} (`make test` assembles it: deploy/scripts/\
             stack.sh opensearch-start; or set BRAID_TEST_OPENSEARCH_HOME)",
            home.display()
        );
        let dir = tempfile::Builder::new().prefix("braid-os-").tempdir()?;
        let (port, transport) = (free_port()?, free_port()?);
        let mut node = Self {
            url: format!("http://127.0.0.1:{port}"),
            port,
            transport,
            dir,
            child: None,
        };
        node.configure(&home)?;
        node.resume().await?;
        Ok(node)
    }

    /// The node's own config directory (absolute log and heap-dump paths, a small heap) and
    /// opensearch.yml, handed to the unprivileged user when root.
    fn configure(&self, home: &Path) -> anyhow::Result<()> {
        let root = self.dir.path();
        let conf = root.join("config");
        for sub in ["config", "data", "logs"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        std::fs::copy(
            home.join("config/log4j2.properties"),
            conf.join("log4j2.properties"),
        )?;
        let jvm = std::fs::read_to_string(home.join("config/jvm.options"))?
            .replace(
                "HeapDumpPath=data",
                &format!("HeapDumpPath={}/data", root.display()),
            )
            .replace("logs/", &format!("{}/logs/", root.display()));
        std::fs::write(conf.join("jvm.options"), jvm)?;
        std::fs::write(
            conf.join("opensearch.yml"),
            format!(
                "cluster.name: braid-test-{port}\nnode.name: braid-test-{port}\n\
                 discovery.type: single-node\nnetwork.host: 127.0.0.1\nhttp.port: {port}\n\
                 transport.port: {transport}\npath.data: {root}/data\npath.logs: {root}/logs\n\
                 cluster.routing.allocation.disk.threshold_enabled: false\n",
                port = self.port,
                transport = self.transport,
                root = root.display()
            ),
        )?;
        if let Some(user) = os_user() {
            let out = std::process::Command::new("chown")
                .args(["-R", &user])
                .arg(root)
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "chown -R {user} {}: {}",
                root.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Starts the node (again, on the same ports and data) and waits for yellow or green.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "the node is running");
        let home = distribution();
        let root = self.dir.path();
        let java = env_path("BRAID_TEST_OPENSEARCH_JAVA_HOME", || {
            PathBuf::from("/usr/lib/jvm/java-17-openjdk-amd64")
        });
        let mut cmd = match os_user() {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", &user, "--", "env"]);
                c
            }
            None => Command::new("env"),
        };
        let log = std::fs::File::create(root.join("stdout.log"))?;
        cmd.arg(format!("OPENSEARCH_JAVA_HOME={}", java.display()))
            .arg(format!("OPENSEARCH_PATH_CONF={}/config", root.display()))
            .arg("OPENSEARCH_JAVA_OPTS=-Xms384m -Xmx384m")
            .arg(home.join("bin/opensearch"))
            .arg("-p")
            .arg(root.join("pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let _ = std::fs::remove_file(root.join("pid"));
        self.child = Some(cmd.spawn().context("starting OpenSearch")?);
        let health = format!(
            "{}/_cluster/health?wait_for_status=yellow&timeout=2s",
            self.url
        );
        let started = eventually(
            "the test's OpenSearch node yellow or green",
            Duration::from_secs(180),
            || async {
                let body: serde_json::Value =
                    reqwest::get(&health).await.ok()?.json().await.ok()?;
                matches!(body["status"].as_str(), Some("green" | "yellow")).then_some(())
            },
        )
        .await;
        if let Err(e) = started {
            let log = std::fs::read_to_string(root.join("stdout.log")).unwrap_or_default();
            bail!("{e}: {log}");
        }
        Ok(())
    }

    /// Stops the node (SIGTERM, as an operator's restart) and waits until it is gone.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        self.signal("TERM");
        tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .context("OpenSearch did not stop within 60 s")??;
        Ok(())
    }

    /// Sends SIGsig to the Java process (its pid file; `runuser` in between does not pass
    /// every signal on).
    fn signal(&self, sig: &str) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("pid")) {
            let _ = std::process::Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(pid.trim())
                .status();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("KILL");
        }
    }
}
