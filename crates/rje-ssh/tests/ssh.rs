//! The SSH executor, pool, keys and host-key checks against a real OpenSSH
//! sshd on a loopback port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rje_domain::{CheckStage, ExecParameters, ExitReport, HealthState, Outcome, Stream};
use rje_exec::{ExecEvent, ExecRequest, Executor, GroupState, NoGate, Ran, group_state};
use rje_ssh::{
    HostConfig, HostKeyError, HostKeyPolicy, HostPool, Passphrase, Secret, SshError, SshExecutor,
    SshHosts, connect,
};
use rje_testkit::TestSshd;
use rje_testkit::sshd::{new_key, public_key};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn host(sshd: &TestSshd) -> HostConfig {
    HostConfig {
        port: sshd.port,
        user: sshd.user.clone(),
        key: Some(sshd.client_key.clone()),
        passphrase: None,
        agent: None,
        known_hosts: sshd.known_hosts.clone(),
        ..HostConfig::new("box", "127.0.0.1")
    }
}

fn executor(host: HostConfig) -> (SshExecutor, Arc<HostPool>) {
    let pool = Arc::new(HostPool::new(Arc::new(host)));
    (
        SshExecutor::new(pool.clone(), Duration::from_millis(500)),
        pool,
    )
}

#[derive(Debug, Default)]
struct Run {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    process_id: Option<String>,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    fn pgid(&self) -> i32 {
        self.process_id
            .as_deref()
            .expect("the run reported its process group")
            .parse()
            .expect("a numeric process group")
    }
}

fn request(command: &str, timeout: Duration, parameters: ExecParameters) -> ExecRequest {
    ExecRequest {
        command: command.into(),
        timeout,
        parameters,
    }
}

/// Runs `request`, collecting what it printed; `on_start` sees the process
/// id as soon as it is reported.
async fn run_with(
    executor: &SshExecutor,
    request: ExecRequest,
    cancel: CancellationToken,
    on_start: impl FnOnce(&str) + Send + 'static,
) -> (Result<Outcome, rje_exec::StartError>, Run) {
    let (sink, mut events) = mpsc::channel(64);
    let collect = tokio::spawn(async move {
        let mut run = Run::default();
        let mut on_start = Some(on_start);
        while let Some(event) = events.recv().await {
            match event {
                ExecEvent::Started { process_id } => {
                    if let Some(f) = on_start.take() {
                        f(&process_id);
                    }
                    run.process_id = Some(process_id);
                }
                ExecEvent::Output {
                    stream: Stream::Stdout,
                    bytes,
                } => run.stdout.extend(bytes),
                ExecEvent::Output {
                    stream: Stream::Stderr,
                    bytes,
                } => run.stderr.extend(bytes),
                ExecEvent::Skipped { .. } => panic!("a plain run never skips output"),
            }
        }
        run
    });
    let outcome = executor
        .run("job", request, &NoGate, sink, cancel)
        .await
        .map(|ran| match ran {
            Ran::Ended(outcome) => outcome,
            Ran::LetGo => panic!("a plain run is never let go"),
        });
    (outcome, collect.await.expect("the collector ends"))
}

async fn run_ok(executor: &SshExecutor, command: &str) -> (Outcome, Run) {
    let (outcome, run) = run_with(
        executor,
        request(command, Duration::from_secs(60), ExecParameters::default()),
        CancellationToken::new(),
        |_| {},
    )
    .await;
    (outcome.expect("the command starts"), run)
}

/// Polls until the group has no live process, or the deadline passes.
async fn group_is_gone(pgid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if group_state(pgid) == GroupState::Gone {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_command_runs_with_its_streams_and_exit_code() {
    let sshd = TestSshd::start();
    let (executor, _) = executor(host(&sshd));
    let (outcome, run) = run_ok(&executor, "echo out; echo err >&2; echo more; exit 3").await;
    assert_eq!(outcome, Outcome::Exited { code: 3 });
    assert_eq!(run.stdout(), "out\nmore\n");
    assert_eq!(run.stderr(), "err\n");
    assert!(
        run.pgid() > 1,
        "the group id is recorded: {:?}",
        run.process_id
    );

    let (outcome, run) = run_ok(&executor, "printf 'no newline'").await;
    assert_eq!(outcome, Outcome::Exited { code: 0 });
    assert_eq!(run.stdout(), "no newline");
}

#[tokio::test]
async fn a_signal_that_ends_the_command_is_recorded() {
    let sshd = TestSshd::start();
    let (executor, _) = executor(host(&sshd));
    let (outcome, _) = run_ok(&executor, "kill -s USR1 $$").await;
    assert_eq!(outcome, Outcome::Signaled { signal: 10 });
}

#[tokio::test]
async fn a_hundred_thousand_lines_arrive_in_order_on_each_stream() {
    let sshd = TestSshd::start();
    let (executor, _) = executor(host(&sshd));
    let (outcome, run) = run_ok(&executor, "seq 1 100000; seq 1 50000 >&2").await;
    assert_eq!(outcome, Outcome::Exited { code: 0 });
    let expected = |n: u32| (1..=n).map(|i| format!("{i}\n")).collect::<String>();
    assert!(
        run.stdout() == expected(100_000),
        "stdout is complete and in order"
    );
    assert!(
        run.stderr() == expected(50_000),
        "stderr is complete and in order"
    );
}

#[tokio::test]
async fn environment_and_working_directory_come_from_parameters() {
    let sshd = TestSshd::start();
    let (executor, _) = executor(host(&sshd));
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("a dir with 'quotes'");
    std::fs::create_dir(&cwd).unwrap();
    let parameters = ExecParameters {
        env: vec![
            ("GREETING".into(), "it's $HOME; `no`".into()),
            ("OTHER".into(), "2".into()),
        ],
        cwd: Some(cwd.to_str().unwrap().into()),
        ..ExecParameters::default()
    };
    let (outcome, run) = run_with(
        &executor,
        request(
            "pwd; echo \"$GREETING\" \"$OTHER\"",
            Duration::from_secs(30),
            parameters,
        ),
        CancellationToken::new(),
        |_| {},
    )
    .await;
    assert_eq!(outcome.unwrap(), Outcome::Exited { code: 0 });
    assert_eq!(
        run.stdout(),
        format!("{}\nit's $HOME; `no` 2\n", cwd.display())
    );

    let missing = ExecParameters {
        env: Vec::new(),
        cwd: Some("/nonexistent/rje".into()),
        ..ExecParameters::default()
    };
    let (outcome, run) = run_with(
        &executor,
        request("echo never", Duration::from_secs(30), missing),
        CancellationToken::new(),
        |_| {},
    )
    .await;
    match outcome.unwrap() {
        Outcome::Error { message } => {
            assert!(message.contains("/nonexistent/rje"), "{message}");
            assert!(message.contains("no such directory"), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(run.stdout(), "", "the command never ran");
}

#[tokio::test]
async fn a_timeout_kills_the_whole_group_on_the_host() {
    let sshd = TestSshd::start();
    let (executor, _) = executor(host(&sshd));
    // A child that ignores TERM makes the KILL after the grace necessary.
    let command = "sh -c 'trap \"\" TERM; sleep 300' & sleep 300 & echo started; wait";
    let began = Instant::now();
    let (outcome, run) = run_with(
        &executor,
        request(command, Duration::from_secs(1), ExecParameters::default()),
        CancellationToken::new(),
        |_| {},
    )
    .await;
    assert_eq!(
        outcome.unwrap(),
        Outcome::TimedOut {
            after_secs: 1,
            kill: ExitReport::Confirmed
        }
    );
    assert!(began.elapsed() < Duration::from_secs(20));
    assert_eq!(run.stdout(), "started\n");
    assert!(
        group_is_gone(run.pgid()).await,
        "no process of the group is left"
    );
}

#[tokio::test]
async fn processes_left_behind_holding_the_output_are_killed() {
    let sshd = TestSshd::start();
    let (executor, _) = executor(host(&sshd));
    let began = Instant::now();
    let (outcome, run) = run_ok(&executor, "sleep 300 & echo started; exit 5").await;
    assert_eq!(
        outcome,
        Outcome::Exited { code: 5 },
        "the command's own exit"
    );
    assert_eq!(run.stdout(), "started\n");
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "no hang on the pipe"
    );
    assert!(
        group_is_gone(run.pgid()).await,
        "the background sleep is gone"
    );
}

#[tokio::test]
async fn a_cancel_kills_the_whole_group_on_the_host() {
    let sshd = TestSshd::start();
    let (executor, _) = executor(host(&sshd));
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let (outcome, run) = run_with(
        &executor,
        request(
            "sleep 300 & sleep 300 & wait",
            Duration::from_secs(600),
            ExecParameters::default(),
        ),
        cancel,
        move |_| trigger.cancel(),
    )
    .await;
    assert_eq!(
        outcome.unwrap(),
        Outcome::Cancelled {
            kill: ExitReport::Confirmed
        }
    );
    assert!(group_is_gone(run.pgid()).await);
}

#[tokio::test]
async fn fifty_concurrent_jobs_share_a_few_connections() {
    let sshd = TestSshd::start();
    let (executor, pool) = executor(host(&sshd));
    let executor = Arc::new(executor);
    let mut runs = Vec::new();
    for n in 0..50 {
        let executor = executor.clone();
        runs.push(tokio::spawn(async move {
            run_ok(&executor, &format!("sleep 1; echo job-{n}")).await
        }));
    }
    for (n, handle) in runs.into_iter().enumerate() {
        let (outcome, run) = handle.await.unwrap();
        assert_eq!(outcome, Outcome::Exited { code: 0 }, "job {n}");
        assert_eq!(run.stdout(), format!("job-{n}\n"));
    }
    let opened = pool.connections_opened();
    assert!(
        (5..=10).contains(&opened),
        "50 channels at 10 per connection need 5 connections, opened {opened}"
    );
    assert_eq!(
        pool.health().channels_in_use,
        0,
        "every channel was released"
    );
}

#[tokio::test]
async fn idle_connections_are_closed_and_reopened_when_needed() {
    let sshd = TestSshd::start();
    let mut config = host(&sshd);
    config.idle_timeout = Duration::from_millis(300);
    let (executor, pool) = executor(config);
    assert_eq!(
        run_ok(&executor, "true").await.0,
        Outcome::Exited { code: 0 }
    );
    assert_eq!(pool.health().connections, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.health().connections > 0 {
        assert!(
            Instant::now() < deadline,
            "the idle connection was not closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (outcome, run) = run_ok(&executor, "echo again").await;
    assert_eq!(outcome, Outcome::Exited { code: 0 });
    assert_eq!(run.stdout(), "again\n");
    assert_eq!(pool.connections_opened(), 2);
}

#[tokio::test]
async fn a_server_with_fewer_sessions_than_configured_still_runs_everything() {
    // The server allows 2 channels per connection; the host says 10.
    let sshd = TestSshd::start_with(2);
    let (executor, pool) = executor(host(&sshd));
    let executor = Arc::new(executor);
    let mut runs = Vec::new();
    for n in 0..12 {
        let executor = executor.clone();
        runs.push(tokio::spawn(async move {
            run_ok(&executor, &format!("sleep 0.5; echo {n}")).await
        }));
    }
    for (n, handle) in runs.into_iter().enumerate() {
        let (outcome, run) = handle.await.unwrap();
        assert_eq!(outcome, Outcome::Exited { code: 0 });
        assert_eq!(run.stdout(), format!("{n}\n"));
    }
    assert!(
        pool.connections_opened() >= 6,
        "refused channels moved to new connections"
    );
}

#[tokio::test]
async fn the_concurrency_limit_of_a_host_is_kept() {
    let sshd = TestSshd::start();
    let mut config = host(&sshd);
    config.max_concurrent_jobs = 2;
    let (executor, _) = executor(config);
    let executor = Arc::new(executor);
    let marker = sshd.path("running");
    std::fs::create_dir(&marker).unwrap();
    // Each job records itself while it runs; the most seen at once is kept.
    let command = format!(
        "d={m}; touch $d/$$; ls $d | wc -l >> {m}.max; sleep 0.3; rm $d/$$",
        m = marker.display()
    );
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let executor = executor.clone();
            let command = command.clone();
            tokio::spawn(async move { run_ok(&executor, &command).await.0 })
        })
        .collect();
    for handle in runs {
        assert_eq!(handle.await.unwrap(), Outcome::Exited { code: 0 });
    }
    let seen = std::fs::read_to_string(format!("{}.max", marker.display())).unwrap();
    let most = seen.lines().map(|l| l.trim().parse::<u32>().unwrap()).max();
    assert_eq!(seen.lines().count(), 6);
    assert!(most <= Some(2), "at most 2 at once, saw {seen:?}");
}

#[tokio::test]
async fn zero_limits_in_code_are_raised_to_one_instead_of_hanging() {
    let sshd = TestSshd::start();
    let mut config = host(&sshd);
    config.max_concurrent_jobs = 0;
    config.max_sessions = 0;
    let (executor, pool) = executor(config);
    assert_eq!(pool.host().max_concurrent_jobs, 1);
    let (outcome, run) = run_ok(&executor, "echo fine").await;
    assert_eq!(outcome, Outcome::Exited { code: 0 });
    assert_eq!(run.stdout(), "fine\n");
}

#[tokio::test]
async fn every_supported_key_form_authenticates() {
    let sshd = TestSshd::start();
    let passphrase_file = sshd.path("passphrase");
    std::fs::write(&passphrase_file, "correct horse\n").unwrap();
    let forms: [(&str, &str, &[&str], bool); 7] = [
        ("ed25519-openssh", "ed25519", &[], false),
        ("ecdsa-openssh", "ecdsa", &[], false),
        ("ecdsa-pem", "ecdsa", &["-m", "PEM"], false),
        ("rsa-openssh", "rsa", &["-b", "2048"], false),
        ("rsa-pem", "rsa", &["-b", "2048", "-m", "PEM"], false),
        (
            "ed25519-passphrase",
            "ed25519",
            &["-N", "correct horse"],
            true,
        ),
        (
            "ecdsa-pkcs8-passphrase",
            "ecdsa",
            &["-m", "PKCS8", "-N", "correct horse"],
            true,
        ),
    ];
    for (name, kind, extra, encrypted) in forms {
        let key = sshd.path(name);
        new_key(&key, kind, extra);
        sshd.authorize(&key);
        let mut config = host(&sshd);
        config.key = Some(key.clone());
        if encrypted {
            // One from a file, the other as a variable gave it.
            config.passphrase = Some(if kind == "ed25519" {
                Passphrase::File(passphrase_file.clone())
            } else {
                Passphrase::Value(Secret::new("correct horse"))
            });
            let mut without = config.clone();
            without.passphrase = None;
            let err = connect(&Arc::new(without))
                .await
                .err()
                .expect("needs its passphrase");
            assert!(matches!(err, SshError::Key { .. }), "{name}: {err}");
            assert!(err.to_string().contains("passphrase"), "{name}: {err}");
        }
        let handle = connect(&Arc::new(config))
            .await
            .unwrap_or_else(|err| panic!("{name} ({}) fails: {err}", public_key(&key)));
        let _ = handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// An ssh-agent of the test's own, holding one key.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(dir: &Path, key: &Path) -> Self {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("ssh-agent starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let added = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &socket)
            .output()
            .expect("ssh-add runs");
        assert!(added.status.success(), "{added:?}");
        Self { child, socket }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn ssh_agent_keys_authenticate() {
    let sshd = TestSshd::start();
    let agent = Agent::start(sshd.dir.path(), &sshd.client_key);
    let mut config = host(&sshd);
    config.key = None;
    config.agent = Some(agent.socket.clone());
    let (executor, _) = executor(config.clone());
    let (outcome, run) = run_ok(&executor, "echo via-agent").await;
    assert_eq!(outcome, Outcome::Exited { code: 0 });
    assert_eq!(run.stdout(), "via-agent\n");

    // With a key file that the server refuses, the agent's key still works.
    let stranger = sshd.path("stranger");
    new_key(&stranger, "ed25519", &[]);
    config.key = Some(stranger);
    assert!(connect(&Arc::new(config)).await.is_ok());
}

#[tokio::test]
async fn a_wrong_key_or_user_is_a_clear_retryable_error() {
    let sshd = TestSshd::start();
    let stranger = sshd.path("stranger");
    new_key(&stranger, "ed25519", &[]);
    let mut wrong_key = host(&sshd);
    wrong_key.key = Some(stranger.clone());
    let err = connect(&Arc::new(wrong_key.clone())).await.err().unwrap();
    let message = err.to_string();
    assert!(matches!(err, SshError::Auth { .. }), "{message}");
    assert!(
        message.contains(&format!("as {} on box", sshd.user)),
        "{message}"
    );
    assert!(
        message.contains(&stranger.display().to_string()),
        "{message}"
    );

    let mut wrong_user = host(&sshd);
    wrong_user.user = "rje-no-such-user".into();
    let err = connect(&Arc::new(wrong_user)).await.err().unwrap();
    assert!(
        err.to_string().contains("as rje-no-such-user on box"),
        "{err}"
    );

    // Through the executor: a start error the retry rule covers, and
    // nothing ran.
    let (executor, _) = executor(wrong_key);
    let (outcome, run) = run_with(
        &executor,
        request(
            "echo never",
            Duration::from_secs(5),
            ExecParameters::default(),
        ),
        CancellationToken::new(),
        |_| {},
    )
    .await;
    let err = outcome.unwrap_err();
    assert!(err.retryable);
    assert!(err.message.contains("authentication as"), "{}", err.message);
    assert!(run.process_id.is_none() && run.stdout.is_empty());
}

#[tokio::test]
async fn unknown_and_changed_host_keys_are_refused_with_the_fingerprint() {
    let sshd = TestSshd::start();
    let host_key = sshd.path("host_ed25519");
    let fingerprint = {
        let out = Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(&host_key)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_whitespace().nth(1).unwrap().to_owned()
    };

    let mut unknown = host(&sshd);
    unknown.known_hosts = sshd.path("empty_known_hosts");
    let err = connect(&Arc::new(unknown.clone())).await.err().unwrap();
    let message = err.to_string();
    assert!(
        matches!(err, SshError::HostKey(HostKeyError::Unknown { .. })),
        "{message}"
    );
    assert!(message.contains("box"), "{message}");
    assert!(
        message.contains(&fingerprint),
        "{message} lacks {fingerprint}"
    );
    assert!(
        !unknown.known_hosts.exists(),
        "strict never writes known_hosts"
    );

    let impostor = sshd.path("impostor");
    new_key(&impostor, "ed25519", &[]);
    let mut changed = host(&sshd);
    changed.known_hosts = sshd.path("changed_known_hosts");
    std::fs::write(
        &changed.known_hosts,
        format!("[127.0.0.1]:{} {}\n", sshd.port, public_key(&impostor)),
    )
    .unwrap();
    let err = connect(&Arc::new(changed)).await.err().unwrap();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            SshError::HostKey(HostKeyError::Changed { line: 1, .. })
        ),
        "{message}"
    );
    assert!(message.contains("HOST KEY CHANGED for box"), "{message}");
    assert!(message.contains(&fingerprint), "{message}");

    // accept-new trusts the first key it sees and records it.
    let mut first_use = unknown;
    first_use.host_key_policy = HostKeyPolicy::AcceptNew;
    assert!(connect(&Arc::new(first_use.clone())).await.is_ok());
    let recorded = std::fs::read_to_string(&first_use.known_hosts).unwrap();
    assert_eq!(
        recorded.trim(),
        format!(
            "[127.0.0.1]:{} {}",
            sshd.port,
            public_key(&host_key)
                .rsplit_once(' ')
                .map(|(k, _)| k)
                .unwrap()
        )
    );
    assert!(connect(&Arc::new(first_use)).await.is_ok());
}

#[tokio::test]
async fn a_dropped_connection_is_reopened_to_kill_the_group() {
    let mut sshd = TestSshd::start();
    let (executor, pool) = executor(host(&sshd));
    let executor = Arc::new(executor);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let running = {
        let executor = executor.clone();
        tokio::spawn(async move {
            run_with(
                &executor,
                request(
                    "sleep 300",
                    Duration::from_secs(600),
                    ExecParameters::default(),
                ),
                CancellationToken::new(),
                move |pid| {
                    let _ = started_tx.send(pid.to_owned());
                },
            )
            .await
        })
    };
    let pgid: i32 = started_rx.await.unwrap().parse().unwrap();
    assert_eq!(group_state(pgid), GroupState::Alive);

    // Every sshd process goes: the connection drops, the command stays.
    sshd.halt();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(group_state(pgid), GroupState::Alive, "sleep outlives sshd");
    sshd.resume();

    let (outcome, _) = running.await.unwrap();
    match outcome.unwrap() {
        Outcome::Error { message } => {
            assert!(message.contains("lost the connection to box"), "{message}");
            assert!(
                message.contains("its process group was killed"),
                "{message}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(group_is_gone(pgid).await, "the reconnect killed the group");

    // The pool left the dead connection and runs the next job on a new one.
    let (outcome, run) = run_ok(&executor, "echo again").await;
    assert_eq!(outcome, Outcome::Exited { code: 0 });
    assert_eq!(run.stdout(), "again\n");
    assert!(pool.connections_opened() >= 2);
}

#[tokio::test]
async fn the_check_reports_latency_or_the_exact_error() {
    let sshd = TestSshd::start();
    let stranger = sshd.path("stranger");
    new_key(&stranger, "ed25519", &[]);
    let mut broken = host(&sshd);
    broken.name = "broken".into();
    broken.key = Some(stranger);
    let hosts = SshHosts::new(vec![host(&sshd), broken], Duration::from_secs(1));

    let report = hosts.check("box").await.unwrap();
    assert!(report.ok, "{report:?}");
    assert!(report.latency_ms > 0.0 && report.connect_ms.unwrap() <= report.latency_ms);
    assert_eq!((report.stage, report.error.as_deref()), (None, None));

    let report = hosts.check("broken").await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.stage, Some(CheckStage::Auth));
    assert!(report.error.unwrap().contains("authentication as"));

    // `local` is the host registry's (crates/rje), not the SSH hosts'.
    assert!(hosts.check("local").await.is_none());
    assert!(hosts.check("nowhere").await.is_none());

    let listed = hosts.list("box");
    let names: Vec<_> = listed
        .iter()
        .map(|h| (h.name.as_str(), h.health.state))
        .collect();
    assert_eq!(
        names,
        [("box", HealthState::Up), ("broken", HealthState::Down)]
    );
    assert!(listed[0].default && !listed[1].default);
}

/// The launch of a durable job is settled once on the host, by whoever
/// comes first: the launch script once its worker recorded the start, or
/// a worker that proves the launcher gone (finding 16 of #19).
mod launch_claims {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use rje_domain::{ExecParameters, Outcome};
    use rje_exec::{ExecEvent, Executor, Ran, StartError, StartGate, Unlaunched};
    use rje_ssh::{DurableSshExecutor, HostPool};
    use rje_testkit::TestSshd;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::{host, request};

    /// A job's gate at `attempt`; `refuse` makes it fail, as a store that
    /// fenced the start does.
    struct JobGate {
        attempt: u32,
        refuse: bool,
    }

    #[async_trait]
    impl StartGate for JobGate {
        async fn open(&self) -> Result<(), StartError> {
            if self.refuse {
                return Err(StartError {
                    message: "the job moved on".into(),
                    retryable: false,
                    cause: rje_domain::StartCause::Other,
                });
            }
            Ok(())
        }

        fn attempt(&self) -> Option<u32> {
            Some(self.attempt)
        }
    }

    /// A worker that stalls after its start mark for so long that another
    /// one proves it gone and gives its launch up.
    struct StalledGate<'a> {
        executor: &'a DurableSshExecutor,
        key: &'a str,
        attempt: u32,
    }

    #[async_trait]
    impl StartGate for StalledGate<'_> {
        async fn open(&self) -> Result<(), StartError> {
            let proof = self.executor.prove_unlaunched(self.key).await;
            assert!(
                matches!(proof, Unlaunched::Never { attempt } if attempt == self.attempt),
                "{proof:?}"
            );
            Ok(())
        }

        fn attempt(&self) -> Option<u32> {
            Some(self.attempt)
        }
    }

    async fn run_to_end(
        executor: &DurableSshExecutor,
        key: &str,
        command: &str,
        gate: &dyn StartGate,
    ) -> Result<Outcome, StartError> {
        let (sink, mut events) = mpsc::channel::<ExecEvent>(64);
        let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
        let request = request(command, Duration::from_secs(60), ExecParameters::default());
        let outcome = executor
            .run(key, request, gate, sink, CancellationToken::new())
            .await
            .map(|ran| match ran {
                Ran::Ended(outcome) => outcome,
                Ran::LetGo => panic!("nothing here lets a run go"),
            });
        drain.await.unwrap();
        outcome
    }

    /// An sshd, a state directory on it, a durable executor for it, and a
    /// command that says each time it runs in the file `ran`.
    struct Fixture {
        _sshd: TestSshd,
        state: tempfile::TempDir,
        state_dir: std::path::PathBuf,
        ran: std::path::PathBuf,
        command: String,
        executor: DurableSshExecutor,
    }

    impl Fixture {
        fn new() -> Self {
            let _sshd = TestSshd::start();
            let state = tempfile::tempdir().unwrap();
            let state_dir = state.path().join("jobs");
            let ran = state.path().join("ran");
            let command = format!("echo ran >> {}", ran.display());
            let pool = Arc::new(HostPool::new(Arc::new(host(&_sshd))));
            let executor = DurableSshExecutor::new(
                pool,
                &state_dir.display().to_string(),
                Duration::from_millis(500),
            );
            Self {
                _sshd,
                state,
                state_dir,
                ran,
                command,
                executor,
            }
        }
    }

    fn launch_mark(state_dir: &Path, key: &str) -> Option<String> {
        std::fs::read_to_string(state_dir.join(key).join("launch")).ok()
    }

    #[tokio::test]
    async fn a_launch_given_up_starts_nothing_and_one_claimed_is_never_given_up() {
        let Fixture {
            _sshd,
            state: _state,
            state_dir,
            ran,
            command,
            executor,
        } = Fixture::new();

        // The worker stalled after its start mark and another gave its
        // launch up meanwhile: nothing ran, and trying again is safe.
        let stalled = StalledGate {
            executor: &executor,
            key: "stalled",
            attempt: 3,
        };
        let err = run_to_end(&executor, "stalled", &command, &stalled)
            .await
            .expect_err("nothing starts");
        assert!(err.retryable, "{err}");
        assert!(err.message.contains("given up"), "{err}");
        assert!(!ran.exists(), "the command never ran");
        assert_eq!(
            launch_mark(&state_dir, "stalled").as_deref(),
            Some("abandoned\n")
        );
        assert!(
            matches!(
                executor.prove_unlaunched("stalled").await,
                Unlaunched::Never { attempt: 3 }
            ),
            "a second look finds it given up still"
        );

        // The next attempt makes the directory anew, and runs once.
        let next = JobGate {
            attempt: 4,
            refuse: false,
        };
        let outcome = run_to_end(&executor, "stalled", &command, &next).await;
        assert_eq!(outcome.unwrap(), Outcome::Exited { code: 0 });
        assert_eq!(std::fs::read_to_string(&ran).unwrap(), "ran\n");
        assert_eq!(
            launch_mark(&state_dir, "stalled").as_deref(),
            Some("launched\n")
        );

        // Launched: never given up, never started again.
        assert!(matches!(
            executor.prove_unlaunched("stalled").await,
            Unlaunched::MayHaveStarted
        ));
        let again = JobGate {
            attempt: 5,
            refuse: false,
        };
        let err = run_to_end(&executor, "stalled", &command, &again)
            .await
            .expect_err("a launched directory is never started again");
        assert!(!err.retryable, "{err}");
        assert_eq!(std::fs::read_to_string(&ran).unwrap(), "ran\n", "once");

        // No directory proves nothing: the job is left to the take-up.
        assert!(matches!(
            executor.prove_unlaunched("nothing-here").await,
            Unlaunched::MayHaveStarted
        ));
    }

    #[tokio::test]
    async fn a_launch_whose_start_was_not_recorded_is_given_up_by_the_host() {
        let Fixture {
            _sshd,
            state: _state,
            state_dir,
            ran,
            command,
            executor,
        } = Fixture::new();
        let refused = JobGate {
            attempt: 2,
            refuse: true,
        };
        let err = run_to_end(&executor, "refused", &command, &refused)
            .await
            .expect_err("the gate's error");
        assert_eq!(err.message, "the job moved on");
        // The script found its input ended without the go, and gave the
        // launch up itself.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while launch_mark(&state_dir, "refused").as_deref() != Some("abandoned\n") {
            assert!(
                std::time::Instant::now() < deadline,
                "the launch is given up: {:?}",
                launch_mark(&state_dir, "refused")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(matches!(
            executor.prove_unlaunched("refused").await,
            Unlaunched::Never { attempt: 2 }
        ));
        assert!(!ran.exists(), "the command never ran");
    }
}
