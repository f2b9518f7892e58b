//! The local executor against real processes.

use std::time::Duration;

use rje_domain::{ExecParameters, ExitReport, Outcome, Stream};
use rje_exec::{
    ExecEvent, ExecRequest, Executor, GroupState, LocalExecutor, NoGate, Ran, group_state,
};
use rje_testkit::processes_running;
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
                ExecEvent::Skipped { .. } => panic!("a plain run never skips output"),
            }
        }
        (pgid, stdout, stderr)
    });
    let outcome = match executor
        .run("job", request, &NoGate, sink, cancel)
        .await
        .expect("started")
    {
        Ran::Ended(outcome) => outcome,
        Ran::LetGo => panic!("a plain run is never let go"),
    };
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
        ..ExecParameters::default()
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
    // One that holds no pipe: the output ends at once, the leftover lives
    // on until it is killed.
    let done = run("sleep 301 > /dev/null 2>&1 & echo parent done").await;
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
            cwd: Some("/no/such/dir".into()),
            ..ExecParameters::default()
        },
    };
    let err = executor
        .run("job", request, &NoGate, sink, CancellationToken::new())
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
            cause: rje_domain::StartCause::Other,
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
        .run("job", request, &ClosedGate, sink, CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.message, "the job moved on");
    assert!(!dir.exists(), "the command ran through a closed gate");
}

fn cancel_after(delay: Duration) -> CancellationToken {
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        trigger.cancel();
    });
    cancel
}

// Processes that leave the job's process group (setpgid, setsid) are still
// the job's: the supervisor adopts them, and a kill reaches them.
#[tokio::test]
async fn cancel_kills_processes_that_left_the_group() {
    let done = run_with(
        "perl -e 'setpgrp(0,0); exec \"sleep\",\"7301\"' & setsid sleep 7302 & echo started; wait",
        Duration::from_secs(60),
        ExecParameters::default(),
        cancel_after(Duration::from_millis(500)),
    )
    .await;
    assert_eq!(
        done.outcome,
        Outcome::Cancelled {
            kill: ExitReport::Confirmed
        }
    );
    assert_eq!(done.stdout, "started\n");
    assert_eq!(processes_running(&["sleep", "7301"]), Vec::<i32>::new());
    assert_eq!(processes_running(&["sleep", "7302"]), Vec::<i32>::new());
}

#[tokio::test]
async fn timeout_kills_processes_that_left_the_group() {
    let done = run_with(
        "perl -e 'setpgrp(0,0); $SIG{TERM} = \"IGNORE\"; exec \"sleep\",\"7303\"' & \
         (setsid sh -c 'sleep 7304 & wait') & echo started; wait",
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
    assert_eq!(processes_running(&["sleep", "7303"]), Vec::<i32>::new());
    assert_eq!(processes_running(&["sleep", "7304"]), Vec::<i32>::new());
}

/// A daemon the job may leave that keeps the command's output open (no
/// redirect) does not keep the job running: it ends when its command does,
/// and the daemon lives on.
#[tokio::test]
async fn an_allowed_daemon_holding_the_output_does_not_hold_the_job() {
    let allowed = ExecParameters {
        allow_daemons: true,
        ..ExecParameters::default()
    };
    let done = tokio::time::timeout(
        Duration::from_secs(20),
        run_with(
            "setsid sleep 7311 & echo parent done",
            Duration::from_secs(60),
            allowed,
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the job ends with its command, not with its daemon");
    assert_eq!(done.outcome, Outcome::Exited { code: 0 });
    assert_eq!(done.stdout, "parent done\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let daemons = loop {
        let daemons = processes_running(&["sleep", "7311"]);
        if !daemons.is_empty() || std::time::Instant::now() > deadline {
            break daemons;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(daemons.len(), 1, "the daemon lives on");
    for pid in daemons {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[tokio::test]
async fn daemons_are_killed_at_the_end_unless_the_job_allows_them() {
    let done = run("setsid sleep 7305 & echo parent done").await;
    assert_eq!(done.outcome, Outcome::Exited { code: 0 });
    assert_eq!(processes_running(&["sleep", "7305"]), Vec::<i32>::new());

    let allowed = ExecParameters {
        allow_daemons: true,
        ..ExecParameters::default()
    };
    // The command waits until its daemon has left the group: one still on
    // its way out when the command ends is killed as a leftover.
    let started = tempfile::NamedTempFile::new().unwrap();
    let done = run_with(
        &format!(
            "setsid sh -c 'echo $$ > {0}; exec sleep 7306' > /dev/null 2>&1 & \
             while [ ! -s {0} ]; do sleep 0.01; done; echo parent done",
            started.path().display()
        ),
        Duration::from_secs(30),
        allowed,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(done.outcome, Outcome::Exited { code: 0 });
    // The background shell may not have exec'd the daemon yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let daemons = loop {
        let daemons = processes_running(&["sleep", "7306"]);
        if !daemons.is_empty() || std::time::Instant::now() > deadline {
            break daemons;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(daemons.len(), 1, "the job allowed its daemon to live on");
    for pid in daemons {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
}

#[tokio::test]
async fn the_jobs_path_does_not_choose_the_shell() {
    let env = ExecParameters {
        env: vec![("PATH".into(), "/nonexistent".into())],
        ..ExecParameters::default()
    };
    let done = run_with(
        "echo \"$PATH\"; ls /",
        Duration::from_secs(30),
        env,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(done.stdout, "/nonexistent\n");
    assert_eq!(
        done.outcome,
        Outcome::Exited { code: 127 },
        "the job's PATH applies to what the command runs"
    );
}

#[tokio::test]
async fn a_cancel_at_the_very_start_still_kills_the_command() {
    for allow_daemons in [false, true] {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let done = run_with(
            "sleep 7307",
            Duration::from_secs(60),
            ExecParameters {
                allow_daemons,
                ..ExecParameters::default()
            },
            cancel,
        )
        .await;
        assert_eq!(
            done.outcome,
            Outcome::Cancelled {
                kill: ExitReport::Confirmed
            },
            "allow_daemons: {allow_daemons}"
        );
        assert_eq!(processes_running(&["sleep", "7307"]), Vec::<i32>::new());
    }
}

/// Nobody records the output once the sink closes (the worker's pump
/// ended early): a plain run ends the command, as on a cancel, rather
/// than leave it running unobserved.
#[tokio::test]
async fn a_plain_run_ends_its_command_when_the_sink_closes() {
    let executor = LocalExecutor::new(Duration::from_secs(1));
    let (sink, mut events) = mpsc::channel(4);
    let request = ExecRequest {
        command: "echo up; sleep 30".into(),
        timeout: Duration::from_secs(60),
        parameters: ExecParameters::default(),
    };
    let reader = async move {
        let mut pgid = None;
        while let Some(event) = events.recv().await {
            match event {
                ExecEvent::Started { process_id } => pgid = process_id.parse::<i32>().ok(),
                ExecEvent::Output { .. } => break,
                ExecEvent::Skipped { .. } => {}
            }
        }
        // Dropping the receiver closes the sink.
        pgid
    };
    let run = executor.run("job", request, &NoGate, sink, CancellationToken::new());
    let (ran, pgid) =
        tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(run, reader) })
            .await
            .expect("the run ends soon after its sink closes");
    assert_eq!(
        ran.expect("started"),
        Ran::Ended(Outcome::Cancelled {
            kill: ExitReport::Confirmed
        })
    );
    assert_eq!(group_state(pgid.expect("started")), GroupState::Gone);
}
