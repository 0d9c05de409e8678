//! Running the real `braidctl` binary in the CLI tests: a private home, none of the caller's
//! `BRAID_*` settings.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `braidctl args…` with `home` as `BRAID_HOME` and no token, tenant or gateway from
/// the environment.
pub async fn braidctl(home: &Path, args: &[&str]) -> Output {
    let home = home.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_braidctl"))
            .args(&args)
            .env("BRAID_HOME", &home)
            .env_remove("BRAID_TOKEN")
            .env_remove("BRAID_TENANT")
            .env_remove("BRAID_GATEWAY")
            .env_remove("BRAID_TLS_CA")
            .env_remove("BRAID_TLS_CERT")
            .env_remove("BRAID_TLS_KEY")
            .env_remove("BRAID_TLS_SERVER_NAME")
            .output()
            .expect("braidctl runs")
    })
    .await
    .expect("join")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
