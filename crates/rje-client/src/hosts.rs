//! `rje hosts`: the hosts a server runs jobs on, and checking one.

use clap::{Args, Subcommand};

use crate::api::Api;
use crate::present::{Presenter, print_json};
use crate::{ClientError, Connection, ExitCode};

#[derive(Debug, Clone, Args)]
pub struct HostsArgs {
    #[command(subcommand)]
    pub action: Option<HostsAction>,
    /// Print the server's answer as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum HostsAction {
    /// Connect to a host, authenticate and run `true`; exits 69 when the
    /// host fails the check.
    Check {
        /// The host's name, as `rje hosts` lists it.
        name: String,
    },
}

pub async fn hosts(connection: &Connection, args: HostsArgs) -> Result<ExitCode, ClientError> {
    let api = Api::new(connection.resolve()?);
    let presenter = Presenter::new(args.json);
    match args.action {
        None => {
            let listed = api.hosts().await?;
            if presenter.json {
                print_json(&listed);
            } else {
                println!("{}", presenter.hosts_table(&listed));
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(HostsAction::Check { name }) => {
            if !rje_domain::is_valid_host_name(&name) {
                return Err(ClientError::NotFound(format!("no host named {name:?}")));
            }
            let report = api.check_host(&name).await?;
            let ok = report["ok"].as_bool() == Some(true);
            if presenter.json {
                print_json(&report);
            } else if ok {
                println!(
                    "{name}: ok in {} ms",
                    report["latency_ms"].as_f64().unwrap_or_default()
                );
            } else {
                eprintln!(
                    "{name}: failed at {}: {}",
                    report["stage"].as_str().unwrap_or("?"),
                    report["error"].as_str().unwrap_or("?")
                );
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::UNREACHABLE
            })
        }
    }
}
