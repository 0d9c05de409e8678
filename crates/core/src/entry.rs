//! The shared `main` of every service binary: parse `--config FILE`, load the typed config from
//! that file and the process environment, start telemetry, bind the listeners, run until
//! SIGINT/SIGTERM, flush telemetry.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{ServerConfig, TelemetryConfig, Validate};
use crate::server::Listeners;

/// What `main` needs to know about any service's configuration.
pub trait ServiceConfig: DeserializeOwned + Serialize + Default + Validate {
    fn server(&self) -> &ServerConfig;
    fn telemetry(&self) -> &TelemetryConfig;
}

/// The shutdown future handed to a service's `run`.
pub type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Runs a service binary. `section` is the config/env name (`vector-search` reads
/// `BRAID_VECTOR_SEARCH__*`), `name` the telemetry service name.
pub fn main<C, F, Fut>(section: &'static str, name: &'static str, run: F) -> anyhow::Result<()>
where
    C: ServiceConfig,
    F: FnOnce(C, Listeners, ShutdownSignal) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let file = config_file_arg(std::env::args().skip(1))?;
    let env: HashMap<String, String> = std::env::vars().collect();
    let config: C = match crate::config::load(section, file.as_deref(), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let telemetry = crate::telemetry::init(name, config.telemetry())?;
        let listeners = Listeners::bind(config.server()).await?;
        tracing::info!(
            service = name,
            grpc = %listeners.grpc_addr()?,
            admin = %listeners.admin_addr()?,
            "listening"
        );
        let result = run(config, listeners, Box::pin(crate::shutdown::signal())).await;
        if let Err(e) = &result {
            tracing::error!(service = name, error = format!("{e:#}"), "service failed");
        }
        telemetry.shutdown();
        result
    })
}

fn config_file_arg(mut args: impl Iterator<Item = String>) -> anyhow::Result<Option<PathBuf>> {
    match args.next().as_deref() {
        None => Ok(None),
        Some("--config") => match args.next() {
            Some(path) => Ok(Some(PathBuf::from(path))),
            None => anyhow::bail!("--config needs a file path"),
        },
        Some(other) => anyhow::bail!("unknown argument `{other}` (usage: [--config FILE])"),
    }
}
