//! `rje bench`: a load generator against any running server. It waits for
//! jobs through WebSocket events, never by polling, and reports figures
//! beside this machine's own raw rates, because absolute numbers on a
//! shared machine are noise.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt;
use rje_domain::{JobId, Status, Stream};
use rje_proto::EventMessage;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

use crate::api::Api;
use crate::follow::{Event, JobFollower};
use crate::{ClientError, Connection, ExitCode};

mod list;
mod scale;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Jobs for the throughput run.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,
    /// Submissions in flight at once during the throughput run.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// The command of the throughput and latency runs.
    #[arg(long, default_value = "true")]
    pub command: String,
    /// Jobs run one at a time for the latency figures (idle workers).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub latency_jobs: u32,
    /// Jobs for the first-output-byte latency.
    #[arg(long, default_value_t = 50)]
    pub output_samples: u32,
    /// `sleep` jobs cancelled to measure cancel→dead.
    #[arg(long, default_value_t = 20)]
    pub cancel_samples: u32,
    /// Lines printed by the log-throughput job (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    pub log_lines: u64,
    /// Also measure this machine's raw rates (spawning `sh -c true`,
    /// running `seq` into /dev/null) and print each figure beside them.
    #[arg(long)]
    pub baseline: bool,
    /// Run every job on this host (a name from the server's hosts). With
    /// `--baseline` and an SSH host, also measure the raw rate of exec
    /// channels over one connection to it, from this machine, reading the
    /// host from the same settings as the server (`RJE_HOSTS_FILE`,
    /// `RJE_SSH_*`).
    #[arg(long)]
    pub host: Option<String>,
    /// Instead of the runs above: time each filter and ordering of the
    /// list route, and deep pages by offset and by cursor (the median of
    /// 7), on whatever the server's store holds. Submits no job.
    #[arg(long)]
    pub list_queries: bool,
    /// Instead of the runs above: this many `sleep` jobs at once (the
    /// server needs as many slots, `RJE_WORKER_CONCURRENCY`): how soon
    /// they start, and GET and list times while they run.
    #[arg(long)]
    pub sleepers: Option<u32>,
    /// How long each of `--sleepers` sleeps.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(2..=3600))]
    pub sleep_seconds: u32,
    /// Instead of the runs above: this many WebSocket subscribers of one
    /// job printing `--subscriber-lines` lines, each checked for every
    /// line once, in order, and the final status; plus one subscriber
    /// that never reads.
    #[arg(long)]
    pub subscribers: Option<u32>,
    #[arg(long, default_value_t = 100_000)]
    pub subscriber_lines: u64,
    /// Instead of the runs above: this many Low jobs queued behind busy
    /// slots, then High jobs one by one: from the moment a slot frees to
    /// the High job's start (the server's own times).
    #[arg(long)]
    pub priority_backlog: Option<u32>,
    /// High jobs measured by `--priority-backlog`.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub priority_samples: u32,
    /// The server's process id, on this machine: the scale runs report its
    /// resident memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The rare text `--list-queries` searches for.
    #[arg(long, default_value = "rare-needle")]
    pub list_search: String,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// A job's body: `command` on the chosen host.
    fn job(&self, command: &str) -> serde_json::Value {
        let mut body = json!({ "command": command, "timeout": 3600 });
        if let Some(host) = &self.host {
            body["host"] = json!(host);
        }
        body
    }
}

/// p50, p99 and max of a set of durations, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |q: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            let rank = ((samples.len() as f64) * q).ceil() as usize;
            ms(samples[rank.clamp(1, samples.len()) - 1])
        };
        Spread {
            count: samples.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: samples.last().map_or(0.0, |d| ms(*d)),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub jobs: u32,
    pub finished: usize,
    pub succeeded: usize,
    pub seconds: f64,
    pub jobs_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogThroughput {
    pub lines_expected: u64,
    pub lines_delivered: u64,
    pub in_order: bool,
    pub bytes: u64,
    pub seconds: f64,
    pub megabytes_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    /// `sh -c true` spawned and waited for, per second, with the same
    /// concurrency as the throughput run.
    pub spawns_per_second: f64,
    /// Milliseconds to spawn `sh -c true` and wait for it, one at a time
    /// (the median of 50): the floor of any job's submit→finish.
    pub spawn_ms: f64,
    /// Seconds `sh -c 'seq 1 N' > /dev/null` takes here.
    pub seq_seconds: f64,
    /// The raw rates of one SSH connection to the bench's host, when it is
    /// an SSH host.
    pub ssh: Option<SshRates>,
}

/// The raw rates of one SSH connection to the bench's host: what rje's
/// figures for an SSH host are set against.
#[derive(Debug, Clone, Serialize)]
pub struct SshRates {
    /// `true` over exec channels of one connection, per second.
    pub channels_per_second: f64,
    /// Milliseconds for one exec of `true` on the open connection (the
    /// median).
    pub exec_ms: f64,
    /// Seconds to receive the output of `seq 1 N` over one channel.
    pub seq_seconds: f64,
    /// Bytes that run received.
    pub seq_bytes: u64,
}

/// The same work as the bench's runs, done raw over one SSH connection.
#[derive(Debug, Clone)]
pub struct SshWork {
    /// The host's name in the settings of the measuring process.
    pub host: String,
    /// Channels at once, as the throughput run had jobs at once.
    pub concurrency: usize,
    /// Runs of `true` in all, as the throughput run had jobs.
    pub total: usize,
    /// Runs of `true` one at a time, as the latency run had jobs.
    pub singles: usize,
    /// `seq 1 N`, as the log throughput run.
    pub seq_lines: u64,
}

/// Measures an SSH host raw, for `--baseline`. The `rje` binary provides
/// the one that speaks SSH, so that this library carries no SSH stack.
pub trait SshBaseline {
    fn measure(&self, work: SshWork) -> impl Future<Output = Result<SshRates, ClientError>>;
}

/// For builds without SSH: `--baseline` against an SSH host says so.
pub struct NoSshBaseline;

impl SshBaseline for NoSshBaseline {
    async fn measure(&self, work: SshWork) -> Result<SshRates, ClientError> {
        Err(ClientError::Config(format!(
            "this build cannot measure host {:?} raw: it has no SSH client",
            work.host
        )))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub throughput: Throughput,
    pub submit_to_start: Spread,
    pub submit_to_finish: Spread,
    pub first_output: Spread,
    pub cancel_to_dead: Spread,
    pub log: Option<LogThroughput>,
    pub baseline: Option<Baseline>,
}

pub async fn bench(
    connection: &Connection,
    args: BenchArgs,
    ssh: &impl SshBaseline,
) -> Result<ExitCode, ClientError> {
    let api = Api::new(connection.resolve()?);
    if args.list_queries {
        let timings = list::list_queries(&api, args.host.as_deref(), &args.list_search).await?;
        if args.json {
            crate::present::print_json(&timings);
        } else {
            list::print(&timings);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.sleepers.is_some() || args.subscribers.is_some() || args.priority_backlog.is_some() {
        return scale_runs(&api, &args).await;
    }
    // Said even with --json (on stderr): the jobs outlive the bench.
    eprintln!("{}", leftover_warning(&args));
    let began = Instant::now();
    let say = |what: &str| {
        if !args.json {
            eprintln!("bench: [{:>7.2} s] {what}", began.elapsed().as_secs_f64());
        }
    };

    say(&format!(
        "throughput: {} × {:?}, {} at once",
        args.jobs, args.command, args.concurrency
    ));
    let throughput = throughput(&api, &args).await?;
    say(&format!(
        "latency: {} jobs one at a time",
        args.latency_jobs
    ));
    let (submit_to_start, submit_to_finish) = latency(&api, &args).await?;
    say(&format!("first output byte: {} jobs", args.output_samples));
    let first_output = first_output(&api, &args).await?;
    say(&format!("cancel→dead: {} sleep jobs", args.cancel_samples));
    let cancel_to_dead = cancel_to_dead(&api, &args).await?;
    let log = if args.log_lines > 0 {
        say(&format!("log throughput: seq 1 {}", args.log_lines));
        Some(log_throughput(&api, &args).await?)
    } else {
        None
    };
    let baseline = if args.baseline {
        say("baseline: this machine's raw rates");
        let mut measured = baseline(args.concurrency, args.log_lines.max(1)).await?;
        measured.ssh = ssh_baseline(&args, ssh).await?;
        Some(measured)
    } else {
        None
    };
    let report = Report {
        throughput,
        submit_to_start,
        submit_to_finish,
        first_output,
        cancel_to_dead,
        log,
        baseline,
    };
    if args.json {
        crate::present::print_json(&report);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// The scale runs asked for, in turn.
async fn scale_runs(api: &Api, args: &BenchArgs) -> Result<ExitCode, ClientError> {
    let server = scale::ServerProcess(args.server_pid);
    let mut report = serde_json::Map::new();
    let mut add = |name: &str, value: serde_json::Result<serde_json::Value>| {
        if let Ok(value) = value {
            report.insert(name.to_owned(), value);
        }
    };
    if let Some(count) = args.sleepers {
        let run = scale::sleepers(api, count, args.sleep_seconds, args.concurrency, server).await?;
        if !args.json {
            println!(
                "sleepers          {} of {} started; created→started p50 {:.2} ms p99 {:.2} ms \
                 max {:.2} ms; last start {:.1} ms after the last submit",
                run.started,
                run.jobs,
                run.create_to_start.p50_ms,
                run.create_to_start.p99_ms,
                run.create_to_start.max_ms,
                run.last_start_after_last_submit_ms
            );
            println!(
                "  while running   GET p50 {:.2} p99 {:.2} ms; list p50 {:.2} p99 {:.2} ms; \
                 RSS idle {} → running {} (peak {})",
                run.get.p50_ms,
                run.get.p99_ms,
                run.list.p50_ms,
                run.list.p99_ms,
                mib(run.rss_idle_mib),
                mib(run.rss_running_mib),
                mib(run.rss_peak_mib)
            );
        }
        add("sleepers", serde_json::to_value(&run));
    }
    if let Some(count) = args.subscribers {
        let run = scale::subscribers(api, count, args.subscriber_lines, server).await?;
        if !args.json {
            println!(
                "subscribers       {} of {} got all {} lines once, in order, and the final \
                 status, {:.2} s from the first line; RSS idle {} peak {}; a subscriber \
                 that never read: {}",
                run.complete,
                run.subscribers,
                run.lines,
                run.seconds,
                mib(run.rss_idle_mib),
                mib(run.rss_peak_mib),
                run.stalled_subscriber
            );
        }
        add("subscribers", serde_json::to_value(&run));
    }
    if let Some(backlog) = args.priority_backlog {
        let run = scale::priority_under_load(api, backlog, args.priority_samples, args.concurrency)
            .await?;
        if !args.json {
            println!(
                "priority          behind {} Low jobs, a High job started p50 {:.2} ms p99 \
                 {:.2} ms max {:.2} ms after a slot freed (n={}, {} left out: no slot freed \
                 for them); {} Low jobs still queued at the end",
                run.backlog,
                run.slot_to_start.p50_ms,
                run.slot_to_start.p99_ms,
                run.slot_to_start.max_ms,
                run.samples,
                run.left_out,
                run.low_still_queued
            );
        }
        add("priority", serde_json::to_value(&run));
    }
    if args.json {
        crate::present::print_json(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn mib(value: Option<f64>) -> String {
    value.map_or_else(|| "?".to_owned(), |mib| format!("{mib:.1} MiB"))
}

/// How many jobs the bench submits: the throughput run's, the latency
/// run's, the first-output and cancel samples, and the log job.
fn jobs_submitted(args: &BenchArgs) -> u64 {
    u64::from(args.jobs)
        + u64::from(args.latency_jobs)
        + u64::from(args.output_samples)
        + u64::from(args.cancel_samples)
        + u64::from(args.log_lines > 0)
}

/// What the bench leaves behind: its jobs stay in the server's store like
/// any job, and rje has no bulk delete.
fn leftover_warning(args: &BenchArgs) -> String {
    format!(
        "bench: warning: the {} jobs it submits stay in the server's store afterwards, \
         like any job (`rje delete ID` removes one; there is no bulk delete). Bench a \
         server of its own, e.g. `RJE_BIND=127.0.0.1:8001 \
         RJE_DATABASE_URL=sqlite:///tmp/rje-bench.db rje serve` and `rje bench --url \
         http://127.0.0.1:8001`, not one whose job list matters.",
        jobs_submitted(args)
    )
}

/// The raw figures each of rje's is printed beside: the SSH connection's
/// when the bench ran on an SSH host, else this machine's.
struct Raw {
    rate: f64,
    rate_name: &'static str,
    one_ms: f64,
    one_name: &'static str,
    seq_seconds: f64,
    seq_name: &'static str,
}

impl Raw {
    fn of(baseline: &Baseline) -> Self {
        match &baseline.ssh {
            Some(ssh) => Self {
                rate: ssh.channels_per_second,
                rate_name: "of raw exec channels",
                one_ms: ssh.exec_ms,
                one_name: "a raw exec",
                seq_seconds: ssh.seq_seconds,
                seq_name: "of seq over a raw channel",
            },
            None => Self {
                rate: baseline.spawns_per_second,
                rate_name: "of raw",
                one_ms: baseline.spawn_ms,
                one_name: "a raw spawn",
                seq_seconds: baseline.seq_seconds,
                seq_name: "of seq > /dev/null",
            },
        }
    }
}

fn print_report(report: &Report) {
    let raw = report.baseline.as_ref().map(Raw::of);
    let t = &report.throughput;
    let share = raw
        .as_ref()
        .filter(|r| r.rate > 0.0)
        .map(|r| {
            format!(
                "  ({:.0}% {})",
                t.jobs_per_second / r.rate * 100.0,
                r.rate_name
            )
        })
        .unwrap_or_default();
    println!(
        "throughput        {:>10.1} jobs/s{share}   ({} of {} finished, {} succeeded, {:.2} s)",
        t.jobs_per_second, t.finished, t.jobs, t.succeeded, t.seconds
    );
    for (name, spread) in [
        ("submit→start", &report.submit_to_start),
        ("submit→finish", &report.submit_to_finish),
        ("first output", &report.first_output),
        ("cancel→dead", &report.cancel_to_dead),
    ] {
        let beside = raw
            .as_ref()
            .filter(|r| r.one_ms > 0.0)
            .map(|r| format!("  ({:.1}× {})", spread.p50_ms / r.one_ms, r.one_name))
            .unwrap_or_default();
        println!(
            "{name:<17} p50 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms   (n={}){beside}",
            spread.p50_ms, spread.p99_ms, spread.max_ms, spread.count
        );
    }
    if let Some(log) = &report.log {
        let speed = raw
            .as_ref()
            .map(|r| {
                format!(
                    "  ({:.0}% {})",
                    r.seq_seconds / log.seconds * 100.0,
                    r.seq_name
                )
            })
            .unwrap_or_default();
        println!(
            "log throughput    {:>10.1} MB/s{speed}   ({} of {} lines, {}, {:.2} s)",
            log.megabytes_per_second,
            log.lines_delivered,
            log.lines_expected,
            if log.in_order {
                "in order"
            } else {
                "OUT OF ORDER"
            },
            log.seconds
        );
    }
    if let Some(baseline) = &report.baseline {
        println!(
            "raw              {:>10.1} sh -c true/s; one spawn {:.2} ms; seq > /dev/null {:.3} s",
            baseline.spawns_per_second, baseline.spawn_ms, baseline.seq_seconds
        );
        if let Some(ssh) = &baseline.ssh {
            println!(
                "raw ssh          {:>10.1} exec channels/s on one connection; one exec {:.2} ms; \
                 seq over a channel {:.3} s",
                ssh.channels_per_second, ssh.exec_ms, ssh.seq_seconds
            );
        }
    }
}

/// Submits every job with `concurrency` submissions in flight and waits for
/// their final status on the all-jobs event stream.
async fn throughput(api: &Api, args: &BenchArgs) -> Result<Throughput, ClientError> {
    let mut events = EventStream::open(api).await?;
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let ids = Arc::new(Mutex::new(HashSet::new()));
    let submitters = (0..args.concurrency).map(|_| {
        let (api, next, ids, body) = (
            api.clone(),
            next.clone(),
            ids.clone(),
            args.job(&args.command),
        );
        let total = args.jobs;
        tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < total {
                let job = api.create(&body).await?;
                ids.lock().await.insert(job.id);
            }
            Ok::<(), ClientError>(())
        })
    });
    let submitted = futures_util::future::join_all(submitters);
    let (submitted, finals) = tokio::join!(
        submitted,
        events.wait_for_finals(api, args.jobs as usize, ids.clone())
    );
    for result in submitted {
        result.map_err(|err| ClientError::Server(err.to_string()))??;
    }
    let finals = finals?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Throughput {
        jobs: args.jobs,
        finished: finals.len(),
        succeeded: finals.values().filter(|s| **s == Status::Success).count(),
        seconds,
        jobs_per_second: finals.len() as f64 / seconds,
    })
}

/// One job at a time, so that every submission meets an idle worker.
async fn latency(api: &Api, args: &BenchArgs) -> Result<(Spread, Spread), ClientError> {
    let mut events = EventStream::open(api).await?;
    let (mut to_start, mut to_finish) = (Vec::new(), Vec::new());
    for _ in 0..args.latency_jobs {
        let submitted = Instant::now();
        let job = api.create(&args.job(&args.command)).await?;
        let mut started = None;
        loop {
            let (id, status) = events.next().await?;
            if id != job.id {
                continue;
            }
            if status == Status::Running && started.is_none() {
                started = Some(submitted.elapsed());
            }
            if status.is_final() {
                to_finish.push(submitted.elapsed());
                to_start.push(started.unwrap_or_else(|| submitted.elapsed()));
                break;
            }
        }
    }
    Ok((Spread::of(to_start), Spread::of(to_finish)))
}

/// Submit → the first output message on the job's WebSocket.
async fn first_output(api: &Api, args: &BenchArgs) -> Result<Spread, ClientError> {
    let samples = args.output_samples;
    let mut latencies = Vec::new();
    for _ in 0..samples {
        let submitted = Instant::now();
        let job = api.create(&args.job("echo first-byte")).await?;
        let mut follower = JobFollower::new(api.clone(), &job.id.to_string(), 0);
        let mut seen = false;
        while let Some(event) = follower.next().await? {
            if let (false, Event::Output { .. }) = (seen, &event) {
                latencies.push(submitted.elapsed());
                seen = true;
            }
        }
    }
    Ok(Spread::of(latencies))
}

/// Cancel of a running `sleep` → the answer saying it is Cancelled, which
/// the server gives once the kill is confirmed.
async fn cancel_to_dead(api: &Api, args: &BenchArgs) -> Result<Spread, ClientError> {
    let samples = args.cancel_samples;
    let mut events = EventStream::open(api).await?;
    let mut latencies = Vec::new();
    for _ in 0..samples {
        let job = api.create(&args.job("sleep 60")).await?;
        loop {
            let (id, status) = events.next().await?;
            if id == job.id && status == Status::Running {
                break;
            }
        }
        // The Running event comes at claim; give the shell a moment to
        // exist, so that the kill of a live process group is measured.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let asked = Instant::now();
        match api.cancel(&job.id.to_string()).await? {
            crate::api::Cancelled::Done(done) if done.status == Status::Cancelled => {
                latencies.push(asked.elapsed());
            }
            _ => {
                return Err(ClientError::Server(format!(
                    "job {} was not confirmed cancelled",
                    job.id
                )));
            }
        }
    }
    Ok(Spread::of(latencies))
}

/// One job printing `lines` lines, followed over its WebSocket from submit
/// to the final status; checks every line arrives, in order.
async fn log_throughput(api: &Api, args: &BenchArgs) -> Result<LogThroughput, ClientError> {
    let lines = args.log_lines;
    let started = Instant::now();
    let job = api.create(&args.job(&format!("seq 1 {lines}"))).await?;
    let mut follower = JobFollower::new(api.clone(), &job.id.to_string(), 0);
    let (mut delivered, mut bytes, mut in_order) = (0u64, 0u64, true);
    while let Some(event) = follower.next().await? {
        if let Event::Output {
            stream: Stream::Stdout,
            text,
        } = event
        {
            bytes += text.len() as u64;
            for line in text.lines() {
                delivered += 1;
                in_order &= line.parse::<u64>().ok() == Some(delivered);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(LogThroughput {
        lines_expected: lines,
        lines_delivered: delivered,
        in_order: in_order && delivered == lines,
        bytes,
        seconds,
        megabytes_per_second: bytes as f64 / 1e6 / seconds,
    })
}

async fn baseline(concurrency: u32, lines: u64) -> Result<Baseline, ClientError> {
    let spawn_error =
        |err: std::io::Error| ClientError::Config(format!("cannot run sh here: {err}"));
    let total = 500u32.max(concurrency * 10);
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let started = Instant::now();
    let spawners = (0..concurrency).map(|_| {
        let next = next.clone();
        tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < total {
                tokio::process::Command::new("sh")
                    .args(["-c", "true"])
                    .status()
                    .await?;
            }
            Ok::<(), std::io::Error>(())
        })
    });
    for result in futures_util::future::join_all(spawners).await {
        result
            .map_err(|err| ClientError::Config(err.to_string()))?
            .map_err(spawn_error)?;
    }
    let spawns_per_second = f64::from(total) / started.elapsed().as_secs_f64();

    let mut one_at_a_time = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        tokio::process::Command::new("sh")
            .args(["-c", "true"])
            .status()
            .await
            .map_err(spawn_error)?;
        one_at_a_time.push(started.elapsed());
    }
    let spawn_ms = Spread::of(one_at_a_time).p50_ms;

    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        tokio::process::Command::new("sh")
            .args(["-c", &format!("seq 1 {lines} > /dev/null")])
            .status()
            .await
            .map_err(spawn_error)?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(Baseline {
        spawns_per_second,
        spawn_ms,
        seq_seconds: best,
        ssh: None,
    })
}

/// The raw rates of one connection to the bench's host, if it is an SSH
/// host.
async fn ssh_baseline(
    args: &BenchArgs,
    ssh: &impl SshBaseline,
) -> Result<Option<SshRates>, ClientError> {
    let Some(name) = args.host.as_deref().filter(|h| *h != "local") else {
        return Ok(None);
    };
    let work = SshWork {
        host: name.to_owned(),
        concurrency: args.concurrency as usize,
        total: args.jobs as usize,
        singles: args.latency_jobs as usize,
        seq_lines: args.log_lines.max(1),
    };
    ssh.measure(work).await.map(Some)
}

/// The all-jobs status stream, `WS /ws/jobs/`.
struct EventStream {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// Set when the server said events were skipped.
    gap: bool,
}

impl EventStream {
    async fn open(api: &Api) -> Result<Self, ClientError> {
        let request = api.ws_request("/ws/jobs/")?;
        let url = api.ws_url("/ws/jobs/");
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|err| ClientError::Unreachable {
                url: url.clone(),
                reason: err.to_string(),
            })?;
        let mut stream = EventStream { socket, gap: false };
        // Events count only once the server has subscribed.
        loop {
            if let EventMessage::Ready = stream.message().await? {
                return Ok(stream);
            }
        }
    }

    async fn message(&mut self) -> Result<EventMessage, ClientError> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text).map_err(|err| {
                        ClientError::Server(format!("unexpected event message: {err}"))
                    });
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(ClientError::Server("the event stream closed".into()));
                }
                Some(Err(err)) => return Err(ClientError::Server(err.to_string())),
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next status change.
    async fn next(&mut self) -> Result<(JobId, Status), ClientError> {
        loop {
            match self.message().await? {
                EventMessage::Status { job_id, status, .. } => return Ok((job_id, status)),
                EventMessage::Gap { .. } => self.gap = true,
                EventMessage::Ready => {}
            }
        }
    }

    /// Waits until `count` jobs of `ids` are final. After a gap in the
    /// stream, the jobs still pending are read once from the server.
    async fn wait_for_finals(
        &mut self,
        api: &Api,
        count: usize,
        ids: Arc<Mutex<HashSet<JobId>>>,
    ) -> Result<HashMap<JobId, Status>, ClientError> {
        let mut finals = HashMap::new();
        // Events may name jobs before their submitter recorded the id.
        let mut early: HashMap<JobId, Status> = HashMap::new();
        while finals.len() < count {
            let (id, status) = self.next().await?;
            if status.is_final() {
                early.insert(id, status);
            }
            let pending: Vec<JobId> = {
                let known = ids.lock().await;
                early.retain(|id, status| {
                    if known.contains(id) {
                        finals.insert(*id, *status);
                        false
                    } else {
                        true
                    }
                });
                if std::mem::take(&mut self.gap) {
                    known
                        .iter()
                        .filter(|id| !finals.contains_key(*id))
                        .copied()
                        .collect()
                } else {
                    Vec::new()
                }
            };
            for id in pending {
                let job = api.job(&id.to_string()).await?;
                if job.status.is_final() {
                    finals.insert(id, job.status);
                }
            }
        }
        Ok(finals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(log_lines: u64) -> BenchArgs {
        BenchArgs {
            jobs: 20,
            concurrency: 4,
            command: "true".into(),
            latency_jobs: 5,
            output_samples: 3,
            cancel_samples: 2,
            log_lines,
            baseline: false,
            host: None,
            list_queries: false,
            list_search: "rare-needle".into(),
            sleepers: None,
            sleep_seconds: 30,
            subscribers: None,
            subscriber_lines: 100,
            priority_backlog: None,
            priority_samples: 1,
            server_pid: None,
            json: true,
        }
    }

    #[test]
    fn the_warning_counts_every_job_left_behind() {
        assert_eq!(jobs_submitted(&args(100)), 20 + 5 + 3 + 2 + 1);
        assert_eq!(jobs_submitted(&args(0)), 20 + 5 + 3 + 2, "no log job");
        let warning = leftover_warning(&args(100));
        assert!(
            warning.contains("the 31 jobs it submits stay in the server's store"),
            "{warning}"
        );
    }
}
