use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rje::config::ServeArgs;
use rje::server::RunningServer;
use tracing_subscriber::EnvFilter;

/// Remote Job Executor: queue shell commands over HTTP, run them here or
/// over SSH, and stream their output live.
#[derive(Parser)]
#[command(name = "rje", version, about, long_about = None)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, env = "RJE_LOG_FORMAT", default_value = "text", global = true)]
    log_format: LogFormat,

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
    Serve(ServeArgs),
}

fn main() -> ExitCode {
    // A missing .env is normal; a broken one is worth saying.
    if let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        eprintln!("rje: ignoring .env: {err}");
    }
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rje: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = args.into_settings()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = RunningServer::start(settings).await?;
        // Scripts and tests read this line to find a port chosen with :0.
        println!("rje listening on http://{}", server.addr());
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
