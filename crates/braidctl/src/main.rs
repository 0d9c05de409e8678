//! `braidctl`: the operator CLI for Braid — ingest files, search, inspect and delete
//! documents, and check the health of every service.
//!
//! `cli` declares every command and flag; each command runs in its own module (`search`,
//! `documents`, `admin`, `health`, `status`, `audit`, `recovery`, `bench`, `token`), talking to the
//! gateway through `client`.

#![forbid(unsafe_code)]

mod admin;
mod audit;
mod bench;
mod cli;
mod client;
mod documents;
mod files;
mod filter;
mod health;
mod recovery;
mod search;
mod status;
mod token;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

pub(crate) use crate::cli::Mode;
use crate::cli::{AuthCommand, BreakerCommand, Cli, Command, TokenCommand};
pub(crate) use crate::client::Gateway;
use crate::client::gateway;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("braidctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Data operations: empty tenant = "default" on the server. Admin: empty = every tenant.
    let tenant = cli.tenant.unwrap_or_default();
    let gateway_addr = cli.gateway.last().cloned().unwrap_or_default();
    let gateway_addr = gateway_addr.as_str();
    let token = cli.token.as_deref();
    client::configure_tls(client::TlsOptions {
        ca: cli.tls_ca.clone(),
        cert: cli.tls_cert.clone(),
        key: cli.tls_key.clone(),
        server_name: cli.tls_server_name.clone(),
    });
    // Every command but `bench`, `token` and `health` talks to one gateway.
    let gw = || gateway(gateway_addr, token);
    match cli.command {
        Command::Bench(args) => bench::run(cli.gateway, tenant, *args).await,
        Command::Ingest {
            paths,
            wait,
            wait_timeout_secs,
            metadata,
        } => {
            let wait = wait.then(|| Duration::from_secs(wait_timeout_secs));
            documents::ingest(
                gw().await?,
                &tenant,
                &paths,
                wait,
                metadata.into_iter().collect(),
            )
            .await
        }
        Command::Search(args) => {
            search::run(gw().await?, tenant, *args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Get { id } => documents::get(gw().await?, tenant, id).await,
        Command::Delete { id } => documents::delete(gw().await?, tenant, id).await,
        Command::Jobs { command } => admin::jobs(gw().await?, &tenant, command).await,
        Command::Stats => admin::stats(gw().await?, tenant).await,
        Command::Reembed {
            dry_run,
            wait,
            purge,
        } => admin::reembed(gw().await?, tenant, dry_run, wait, purge).await,
        Command::Audit(args) => audit::run(gw().await?, &tenant, args).await,
        Command::Reindex(args) => recovery::reindex(gw().await?, &tenant, args).await,
        Command::Verify(args) => recovery::verify(gw().await?, &tenant, args).await,
        Command::Status { json } => status::show(gw().await?, json).await,
        Command::Breaker {
            command: BreakerCommand::Reset { leg },
        } => status::reset(gw().await?, leg).await,
        Command::Auth {
            command: AuthCommand::Revoke { sub },
        } => admin::revoke(gw().await?, tenant, sub).await,
        Command::Token {
            command:
                TokenCommand::Mint {
                    sub,
                    role,
                    clearance,
                    groups,
                    ttl,
                    cross_tenant,
                    key,
                },
        } => {
            let key_path = key.unwrap_or_else(token::dev_key_path);
            let key = token::read_key(&key_path)?;
            let grant = token::Grant {
                sub: &sub,
                tenant: (!tenant.is_empty()).then_some(tenant.as_str()),
                role: &role,
                clearance,
                groups: &groups,
                cross_tenant,
                ttl,
            };
            anyhow::ensure!(
                grant.tenant.is_some() || (cross_tenant && role == "admin"),
                "--tenant is required (or --cross-tenant with --role admin)"
            );
            println!("{}", token::mint(&key, &grant)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Health {
            service: Some(service),
            addr: Some(addr),
            quiet,
            ..
        } => Ok(health::one(service, addr, quiet).await),
        Command::Health {
            ingest,
            embedding,
            vector_search,
            text_search,
            quiet,
            ..
        } => {
            let targets = health::Targets {
                ingest,
                embedding,
                vector_search,
                text_search,
            };
            Ok(health::all(gateway_addr, targets, quiet).await)
        }
    }
}
