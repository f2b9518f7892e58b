//! Access control: who the token is (`rje whoami`), the server's tokens
//! (`rje tokens`), and the audit trail of changes (`rje audit`).

use clap::{Args, Subcommand, ValueEnum};
use rje_domain::{Role, is_valid_host_name};
use rje_proto::{TokenCreated, TokenRequest};
use serde_json::json;

use crate::api::Api;
use crate::commands::query_string;
use crate::present::{Presenter, print_json, scope_text};
use crate::{ClientError, Connection, ExitCode};

/// Creates a token straight in a database, without a server (`rje tokens
/// create --local`): the first admin token of a deployment. The client
/// has no store; the `rje` binary brings one.
pub trait LocalTokens {
    /// `database_url` as `--database-url` gave it (or its variables);
    /// `None`: the server's default.
    fn create(
        &self,
        database_url: Option<String>,
        request: TokenRequest,
    ) -> impl Future<Output = Result<TokenCreated, ClientError>>;
}

/// For builds without a store: `--local` says so.
pub struct NoLocalTokens;

impl LocalTokens for NoLocalTokens {
    async fn create(
        &self,
        _database_url: Option<String>,
        _request: TokenRequest,
    ) -> Result<TokenCreated, ClientError> {
        Err(ClientError::Config(
            "this build cannot open a database: create the token through a server (without \
             --local)"
                .into(),
        ))
    }
}

#[derive(Debug, Clone, Args)]
pub struct WhoamiArgs {
    /// Print the server's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    pub action: TokensAction,
    /// Print the server's answer as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokensAction {
    /// Create a token and print its secret, which is shown only this once.
    Create(CreateTokenArgs),
    /// The server's tokens (never their secrets).
    List,
    /// Revoke a token: it is refused from the next request on.
    Revoke {
        /// The token's name, as `rje tokens list` lists it.
        name: String,
    },
}

/// A role on the command line, in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// See jobs, their output and the hosts.
    Read,
    /// Read, and submit, edit and cancel its own jobs.
    Run,
    /// Everything: any job, deleting, tokens, the audit trail.
    Admin,
}

impl From<RoleArg> for Role {
    fn from(arg: RoleArg) -> Self {
        match arg {
            RoleArg::Read => Role::Read,
            RoleArg::Run => Role::Run,
            RoleArg::Admin => Role::Admin,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct CreateTokenArgs {
    /// 1 to 64 letters, digits, `-`, `_` or `.`; `env-…` is reserved.
    pub name: String,
    /// read, run or admin (any case).
    #[arg(long, value_enum, ignore_case = true)]
    pub role: RoleArg,
    /// A host the token may run jobs on and see the jobs of; repeat for
    /// more. Without --host and --label: every host. Not for admin tokens.
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// The hosts carrying this label are in the token's scope too; repeat
    /// for more.
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
    /// Create it straight in the database, without a server: the first
    /// admin token. Run it where the server runs, with its settings (the
    /// hosts come from RJE_HOSTS_FILE / RJE_SSH_*).
    #[arg(long)]
    pub local: bool,
    /// With --local: sqlite://PATH or postgres://… (also DATABASE_URL)
    /// [default: sqlite://rje.db]
    #[arg(long, env = "RJE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Only the entries of the token of this name. (`--token` is the
    /// token this client presents.)
    #[arg(long, value_name = "NAME")]
    pub token_name: Option<String>,
    /// Only the entries of this route, as the trail writes it (e.g.
    /// `/jobs/{id}/cancel`; a trailing slash is ignored).
    #[arg(long)]
    pub route: Option<String>,
    /// Entries per page (1 to 1000), newest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Print the server's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn whoami(connection: &Connection, args: WhoamiArgs) -> Result<ExitCode, ClientError> {
    let api = Api::new(connection.resolve()?);
    let who = api.whoami().await?;
    if args.json {
        print_json(&who);
        return Ok(ExitCode::SUCCESS);
    }
    let name = who
        .name
        .as_deref()
        .unwrap_or("(none: the server runs without tokens)");
    println!("name: {name}");
    println!("role: {}", who.role);
    let hosts = if who.hosts.is_empty() && who.labels.is_empty() {
        "every host".to_owned()
    } else if who.hosts.is_empty() {
        "-".to_owned()
    } else {
        who.hosts.join(", ")
    };
    println!("hosts: {hosts}");
    if !who.labels.is_empty() {
        println!("labels: {}", who.labels.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn tokens(
    connection: &Connection,
    args: TokensArgs,
    local: &impl LocalTokens,
) -> Result<ExitCode, ClientError> {
    let presenter = Presenter::new(args.json);
    match args.action {
        TokensAction::Create(create) => create_token(connection, create, presenter, local).await,
        TokensAction::List => {
            let api = Api::new(connection.resolve()?);
            let listed = api.tokens().await?;
            if presenter.json {
                print_json(&listed);
            } else if listed.tokens.is_empty() {
                println!("no tokens");
            } else {
                println!("{}", presenter.tokens_table(&listed.tokens));
            }
            Ok(ExitCode::SUCCESS)
        }
        TokensAction::Revoke { name } => {
            if !is_valid_host_name(&name) {
                return Err(ClientError::NotFound(format!("no token named {name:?}")));
            }
            let api = Api::new(connection.resolve()?);
            api.revoke_token(&name).await?;
            if presenter.json {
                print_json(&json!({ "revoked": name }));
            } else {
                println!("revoked {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints the secret alone on stdout, for `TOKEN=$(rje tokens create …)`;
/// the rest goes to stderr.
async fn create_token(
    connection: &Connection,
    args: CreateTokenArgs,
    presenter: Presenter,
    local: &impl LocalTokens,
) -> Result<ExitCode, ClientError> {
    let request = TokenRequest {
        name: args.name,
        role: args.role.into(),
        hosts: args.hosts,
        labels: args.labels,
    };
    let created = if args.local {
        local.create(args.database_url, request).await?
    } else {
        Api::new(connection.resolve()?)
            .create_token(&request)
            .await?
    };
    if presenter.json {
        print_json(&created);
    } else {
        println!("{}", created.secret);
        eprintln!(
            "rje: created {} token {} ({}); its secret is shown only this once",
            created.token.role,
            created.token.name,
            scope_text(&created.token.scope)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(connection: &Connection, args: AuditArgs) -> Result<ExitCode, ClientError> {
    let api = Api::new(connection.resolve()?);
    let presenter = Presenter::new(args.json);
    let mut query = vec![
        ("limit", args.limit.to_string()),
        ("offset", args.offset.to_string()),
    ];
    if let Some(name) = &args.token_name {
        query.push(("token", name.clone()));
    }
    if let Some(route) = &args.route {
        query.push(("route", route.clone()));
    }
    let page = api.audit(&query_string(&query)).await?;
    if presenter.json {
        print_json(&page);
        return Ok(ExitCode::SUCCESS);
    }
    if page.entries.is_empty() {
        println!("no entries (of {} matching)", page.total_count);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", presenter.audit_table(&page.entries));
    if presenter.stdout_tty {
        let first = args.offset + 1;
        let last = args.offset + page.entries.len() as u64;
        println!("{first}–{last} of {} entries", page.total_count);
    }
    Ok(ExitCode::SUCCESS)
}
