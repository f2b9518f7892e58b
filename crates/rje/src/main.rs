//! The `rje` command: `serve`, `worker`, `migrate` and the client's
//! commands, with logging set up for each.

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use rje::config::ServeArgs;
use rje::server::RunningServer;
use rje_client::{ClientCommand, Connection};
use tracing_subscriber::EnvFilter;

/// Remote Job Executor: queue shell commands over HTTP, run them here or
/// over SSH, and stream their output live.
#[derive(Parser)]
#[command(name = "rje", version, about, long_about = None)]
struct Cli {
    /// Log format: text or json.
    #[arg(
        long,
        env = "RJE_LOG_FORMAT",
        default_value = "text",
        global = true,
        ignore_case = true
    )]
    log_format: LogFormat,

    #[command(flatten)]
    connection: Connection,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: the API and a worker in one process.
    #[command(after_help = rje::config::ENVIRONMENT_HELP)]
    Serve(ServeArgs),
    /// Run a worker only (distributed deployment: needs PostgreSQL).
    #[command(after_help = rje::config::ENVIRONMENT_HELP)]
    Worker(ServeArgs),
    /// Apply database migrations, then exit.
    Migrate {
        /// sqlite://PATH or postgres://… (also DATABASE_URL).
        #[arg(long, env = "RJE_DATABASE_URL")]
        database_url: Option<String>,
    },
    #[command(flatten)]
    Client(ClientCommand),
    /// Print shell completions.
    Completions {
        #[arg(value_enum, ignore_case = true)]
        shell: clap_complete::Shell,
    },
    /// Starts the supervisors of durable jobs as the worker asks, reading
    /// their directories from stdin (internal).
    #[command(hide = true)]
    Supervise,
}

fn main() -> ExitCode {
    // Jobs run as rje's user: without this, any job could read rje's
    // tokens and URLs in /proc/PID/environ (or its memory) of the server
    // or of a supervisor. Only root (or CAP_SYS_PTRACE) can then.
    if let Err(err) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("rje: cannot keep this process's memory from its jobs: {err}");
    }
    // Descriptors this process was given by whoever started it (a shell's,
    // a service manager's) are not its jobs' business: none passes on.
    close_inherited_descriptors_on_exec();
    // A supervisor needs nothing of .env, and holds none of its secrets.
    let supervising = std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "supervise");
    // A missing .env is normal; a broken one is worth saying.
    if !supervising
        && let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        eprintln!("rje: ignoring .env: {err}");
    }
    let cli = Cli::parse();
    let server = matches!(
        cli.command,
        Command::Serve(_) | Command::Worker(_) | Command::Migrate { .. }
    );
    init_tracing(cli.log_format, server);
    if matches!(
        cli.command,
        Command::Client(_) | Command::Completions { .. }
    ) {
        quiet_when_the_reader_goes();
    }
    let result = match cli.command {
        Command::Serve(args) => serve(args, true),
        Command::Worker(args) => serve(args, false),
        Command::Migrate { database_url } => migrate(database_url),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "rje", &mut std::io::stdout());
            Ok(())
        }
        Command::Client(command) => return client(cli.connection, command),
        // It forks: nothing above has started a thread.
        Command::Supervise => {
            let code = rje_exec::durable::serve_launches();
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rje: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn migrate(database_url: Option<String>) -> anyhow::Result<()> {
    let url = rje::config::database_url(database_url)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime
        .block_on(rje::server::migrate(&url))
        .map_err(|err| store_error(&url, &err))?;
    println!("migrations applied to {}", rje::config::redact(&url));
    Ok(())
}

/// An error opening the store, said once (the caller prints it), and with
/// what to do when the PostgreSQL database is not there yet: neither
/// `rje migrate` nor a server creates it.
fn store_error(url: &str, err: &impl std::fmt::Display) -> anyhow::Error {
    let message = err.to_string();
    match missing_database(&message) {
        Some(name) if rje::server::is_postgres(url) => anyhow::anyhow!(
            "the PostgreSQL database {name:?} does not exist ({}): create it first, e.g. \
             `createdb {name}` (with -h HOST -U USER for another server or role) or \
             `CREATE DATABASE \"{name}\";` in psql, then run this again",
            rje::config::redact(url)
        ),
        _ => anyhow::anyhow!("{message}"),
    }
}

/// The name in PostgreSQL's `database "NAME" does not exist`.
fn missing_database(message: &str) -> Option<&str> {
    const OPEN: &str = "database \"";
    let start = message.find(OPEN)? + OPEN.len();
    let rest = &message[start..];
    let end = rest.find("\" does not exist")?;
    Some(&rest[..end])
}

fn init_tracing(format: LogFormat, server: bool) {
    // The client's stderr belongs to the job's output: quiet by default.
    // PostgreSQL's notices (a migration table that exists already, at
    // every start) are not news for an operator.
    let default = if server {
        "info,sqlx::postgres::notice=warn"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn client(connection: Connection, command: ClientCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rje: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(command.run(
        &connection,
        &rje::bench_ssh::InventoryBaseline,
        &rje::local_tokens::StoreTokens,
    ));
    let code = match result {
        Ok(code) => code,
        // Nobody reads any more: nothing to say.
        Err(rje_client::ClientError::OutputClosed) => rje_client::ExitCode::OUTPUT_CLOSED,
        Err(err) => {
            eprintln!("rje: {err}");
            err.exit_code()
        }
    };
    ExitCode::from(u8::try_from(code.0).unwrap_or(1))
}

/// `rje serve` (`api`), or `rje worker`.
fn serve(args: ServeArgs, api: bool) -> anyhow::Result<()> {
    let mut settings = args.into_settings()?;
    let database_url = settings.database_url.clone();
    if !api {
        settings.run_api = false;
        settings.run_worker = true;
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = RunningServer::start(settings)
            .await
            .map_err(|err| store_error(&database_url, &err))?;
        // Scripts and tests read the first line to find a port chosen with
        // :0. Both lines go out in one write: a reader that stops after the
        // first never makes the second fail on a closed pipe.
        match server.api_addr() {
            Some(addr) => {
                let banner =
                    format!("rje listening on http://{addr}\ndashboard at http://{addr}/ui/\n");
                print!("{banner}");
            }
            None => println!("rje worker running"),
        }
        shutdown_signal().await;
        tracing::info!("shutting down: no new jobs; running jobs get their grace period");
        server.stop().await?;
        Ok(())
    })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM; stop with Ctrl-C");
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

/// A client piped into `head` or `true` ends quietly when its reader goes,
/// with the status a shell gives a command killed by SIGPIPE (141), as
/// other command-line tools do, instead of panicking on the broken pipe.
/// SIGPIPE itself stays ignored: a write to a socket whose server went
/// away must stay an error the client reports with its own exit code.
fn quiet_when_the_reader_goes() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // How the standard library's print macros fail on a closed stdout.
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(rje_client::ExitCode::OUTPUT_CLOSED.0);
        }
        report(info);
    }));
}

/// Marks every descriptor past stderr close-on-exec: those rje opens are
/// already, those it inherited would otherwise reach every job (and the
/// supervisors) it starts. Before any thread starts, so that no spawn
/// races it.
fn close_inherited_descriptors_on_exec() {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: the descriptor is only looked at and flagged, never
        // closed or owned here; one that was the directory listing's own
        // and is gone by now just fails.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFD) {
            let flags = FdFlag::from_bits_truncate(flags) | FdFlag::FD_CLOEXEC;
            let _ = fcntl(fd, FcntlArg::F_SETFD(flags));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variable rje reads for its settings, as the sources spell
    /// them: the server's flags' and the SSH hosts'.
    fn variables_read() -> Vec<String> {
        let sources = [
            include_str!("config.rs"),
            include_str!("../../rje-ssh/src/config.rs"),
        ];
        // Every piece between two quotes: each quoted name is one, whatever
        // escaped quotes elsewhere do to the pairing.
        let mut names: Vec<String> = sources
            .iter()
            .flat_map(|source| source.split('"'))
            .filter(|piece| {
                (piece.starts_with("RJE_") || piece.starts_with("EC2_"))
                    && piece.len() > 4
                    && piece
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .map(str::to_owned)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn serve_and_worker_help_name_every_variable() {
        let names = variables_read();
        for needed in ["RJE_BIND", "RJE_SSH_HOST", "RJE_HOSTS_FILE", "EC2_HOST"] {
            assert!(names.iter().any(|n| n == needed), "{needed} in {names:?}");
        }
        for subcommand in ["serve", "worker"] {
            let mut cli = Cli::command();
            let help = cli
                .find_subcommand_mut(subcommand)
                .expect("the subcommand")
                .render_long_help()
                .to_string();
            for name in &names {
                assert!(
                    help.contains(name.as_str()),
                    "rje {subcommand} --help: {name}"
                );
            }
            assert!(help.contains("SSH_AUTH_SOCK"), "rje {subcommand} --help");
        }
    }

    #[test]
    fn a_missing_database_is_named_with_the_fix() {
        let message = "cannot open the job store: store failure: error returned from \
                       database: database \"rje\" does not exist";
        assert_eq!(missing_database(message), Some("rje"));
        let said = store_error("postgres://rje:secret@db:5432/rje", &message).to_string();
        assert!(said.contains("createdb rje"), "{said}");
        assert!(!said.contains("secret"), "{said}");
        assert_eq!(said.matches("does not exist").count(), 1, "{said}");
        // Anything else is said as it was.
        let other = "cannot open the job store: store unavailable: connection refused";
        assert_eq!(missing_database(other), None);
        assert_eq!(store_error("postgres://db/rje", &other).to_string(), other);
        // A relation that does not exist is not a missing database.
        assert_eq!(missing_database("relation \"jobs\" does not exist"), None);
    }
}
