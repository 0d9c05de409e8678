//! The shared `main` of every service binary: parse `--config FILE`, load the typed config from
//! that file and the process environment, start telemetry, bind the listeners, run until
//! SIGINT/SIGTERM, flush telemetry. With `--check-config` it stops after loading the config:
//! exit 0 when the service would accept it, 2 with every problem listed when not (used by
//! deployment checks on the environment a Helm chart or compose file gives each service).
//! `--print-default-config` prints the service's defaults as a TOML file to start from (keys
//! whose default is unset are left out; `docs/configuration.md` lists every key).

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
    let args = parse_args(std::env::args().skip(1))?;
    if args.print_default_config {
        print!("{}", toml::to_string_pretty(&C::default())?);
        return Ok(());
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let config: C = match crate::config::load(section, args.config.as_deref(), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(2);
        }
    };
    if args.check_config {
        println!("{name}: configuration ok");
        return Ok(());
    }
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

/// The command line of a service binary.
#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    config: Option<PathBuf>,
    /// Load and validate the configuration, then exit.
    check_config: bool,
    /// Print the default configuration as TOML, then exit.
    print_default_config: bool,
}

const USAGE: &str = "usage: [--config FILE] [--check-config] | --print-default-config";

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut parsed = Args::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => match args.next() {
                Some(path) if parsed.config.is_none() => parsed.config = Some(PathBuf::from(path)),
                Some(_) => anyhow::bail!("--config given twice ({USAGE})"),
                None => anyhow::bail!("--config needs a file path ({USAGE})"),
            },
            "--check-config" => parsed.check_config = true,
            "--print-default-config" => parsed.print_default_config = true,
            other => anyhow::bail!("unknown argument `{other}` ({USAGE})"),
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Args> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn config_file_and_check_flag_in_any_order() {
        assert_eq!(parse(&[]).unwrap(), Args::default());
        let both = Args {
            config: Some(PathBuf::from("/etc/braid/gateway.toml")),
            check_config: true,
            print_default_config: false,
        };
        assert_eq!(
            parse(&["--config", "/etc/braid/gateway.toml", "--check-config"]).unwrap(),
            both
        );
        assert_eq!(
            parse(&["--check-config", "--config", "/etc/braid/gateway.toml"]).unwrap(),
            both
        );
        assert!(
            parse(&["--print-default-config"])
                .unwrap()
                .print_default_config
        );
    }

    #[test]
    fn bad_command_lines_are_refused() {
        for bad in [
            &["--config"][..],
            &["--config", "a", "--config", "b"],
            &["--check"],
            &["serve"],
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(USAGE), "{bad:?}: {err}");
        }
    }
}
