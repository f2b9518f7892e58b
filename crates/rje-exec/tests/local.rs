//! The local executor against real processes.

use std::time::Duration;

use rje_domain::{ExecParameters, ExitReport, Outcome, Stream};
use rje_exec::{ExecEvent, ExecRequest, Executor, GroupState, LocalExecutor, NoGate, group_state};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Run {
    outcome: Outcome,
    pgid: i32,
    stdout: String,
    stderr: String,
}

async fn run_with(
    command: &str,
    timeout: Duration,
    parameters: ExecParameters,
    cancel: CancellationToken,
) -> Run {
    let executor = LocalExecutor::new(Duration::from_secs(1));
    let (sink, mut events) = mpsc::channel(8);
    let request = ExecRequest {
        command: command.to_owned(),
        timeout,
        parameters,
    };
    let collector = tokio::spawn(async move {
        let (mut pgid, mut stdout, mut stderr) = (0, Vec::new(), Vec::new());
        while let Some(event) = events.recv().await {
            match event {
                ExecEvent::Started { process_id } => pgid = process_id.parse().unwrap(),
                ExecEvent::Output {
                    stream: Stream::Stdout,
                    bytes,
                } => stdout.extend(bytes),
                ExecEvent::Output {
                    stream: Stream::Stderr,
                    bytes,
                } => stderr.extend(bytes),
            }
        }
        (pgid, stdout, stderr)
    });
    let outcome = executor
        .run(request, &NoGate, sink, cancel)
        .await
        .expect("started");
    let (pgid, stdout, stderr) = collector.await.unwrap();
    Run {
        outcome,
        pgid,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

async fn run(command: &str) -> Run {
    run_with(
        command,
        Duration::from_secs(30),
        ExecParameters::default(),
        CancellationToken::new(),
    )
    .await
}

#[tokio::test]
async fn captures_streams_and_exit_code() {
    let done = run("echo out; echo err >&2; exit 3").await;
    assert_eq!(done.outcome, Outcome::Exited { code: 3 });
    assert_eq!(done.stdout, "out\n");
    assert_eq!(done.stderr, "err\n");
    assert!(done.pgid > 1);
}

#[tokio::test]
async fn large_output_arrives_whole_and_in_order() {
    let done = run("seq 1 100000").await;
    assert_eq!(done.outcome, Outcome::Exited { code: 0 });
    let expected: String = (1..=100_000).map(|n| format!("{n}\n")).collect();
    assert!(done.stdout == expected, "output differs from seq's");
}

#[tokio::test]
async fn environment_and_directory_come_from_parameters() {
    let parameters = ExecParameters {
        env: vec![("GREETING".into(), "hello there".into())],
        cwd: Some("/tmp".into()),
    };
    let done = run_with(
        "echo \"$GREETING\"; pwd",
        Duration::from_secs(30),
        parameters,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(done.stdout, "hello there\n/tmp\n");
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let done = run_with(
        "sleep 300 & sleep 300 & echo started; wait",
        Duration::from_secs(1),
        ExecParameters::default(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        done.outcome,
        Outcome::TimedOut {
            after_secs: 1,
            kill: ExitReport::Confirmed
        }
    );
    assert_eq!(done.stdout, "started\n");
    assert_eq!(group_state(done.pgid), GroupState::Gone);
}

#[tokio::test]
async fn processes_that_ignore_term_are_killed() {
    let done = run_with(
        "trap '' TERM; echo ready; while :; do sleep 0.1; done",
        Duration::from_secs(1),
        ExecParameters::default(),
        CancellationToken::new(),
    )
    .await;
    assert!(matches!(
        done.outcome,
        Outcome::TimedOut {
            kill: ExitReport::Confirmed,
            ..
        }
    ));
    assert_eq!(group_state(done.pgid), GroupState::Gone);
}

#[tokio::test]
async fn cancel_kills_the_whole_group() {
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });
    let done = run_with(
        "sleep 300 & sleep 300",
        Duration::from_secs(60),
        ExecParameters::default(),
        cancel,
    )
    .await;
    assert_eq!(
        done.outcome,
        Outcome::Cancelled {
            kill: ExitReport::Confirmed
        }
    );
    assert_eq!(group_state(done.pgid), GroupState::Gone);
}

#[tokio::test]
async fn leftover_background_processes_are_killed() {
    let done = run("sleep 300 & echo parent done").await;
    assert_eq!(done.outcome, Outcome::Exited { code: 0 });
    assert_eq!(done.stdout, "parent done\n");
    assert_eq!(group_state(done.pgid), GroupState::Gone);
}

#[tokio::test]
async fn a_signal_ends_the_command() {
    let done = run("kill -KILL $$").await;
    assert_eq!(done.outcome, Outcome::Signaled { signal: 9 });
}

#[tokio::test]
async fn a_missing_directory_is_a_start_error() {
    let executor = LocalExecutor::new(Duration::from_secs(1));
    let (sink, _events) = mpsc::channel(8);
    let request = ExecRequest {
        command: "true".into(),
        timeout: Duration::from_secs(5),
        parameters: ExecParameters {
            env: vec![],
            cwd: Some("/no/such/dir".into()),
        },
    };
    let err = executor
        .run(request, &NoGate, sink, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.message.contains("/no/such/dir"), "{err}");
    assert!(
        !err.retryable,
        "a missing directory will not appear by retrying"
    );
}

struct ClosedGate;

#[async_trait::async_trait]
impl rje_exec::StartGate for ClosedGate {
    async fn open(&self) -> Result<(), rje_exec::StartError> {
        Err(rje_exec::StartError {
            message: "the job moved on".into(),
            retryable: false,
        })
    }
}

#[tokio::test]
async fn a_closed_gate_means_the_command_never_runs() {
    let dir = std::env::temp_dir().join(format!("rje-gate-{}", std::process::id()));
    let executor = LocalExecutor::new(Duration::from_secs(1));
    let (sink, _events) = mpsc::channel(8);
    let request = ExecRequest {
        command: format!("touch {}", dir.display()),
        timeout: Duration::from_secs(5),
        parameters: ExecParameters::default(),
    };
    let err = executor
        .run(request, &ClosedGate, sink, CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.message, "the job moved on");
    assert!(!dir.exists(), "the command ran through a closed gate");
}
