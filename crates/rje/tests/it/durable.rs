//! `rje supervise`: a command that runs detached from whoever launched it,
//! its output in files, its deadline kept by its supervisor, its end
//! written whole. The real binary, real processes.

use std::path::Path;
use std::time::Duration;

use rje_exec::durable::{ExitRecord, JobDir, Launcher, Spec};
use tokio::time::{Instant, sleep};

use crate::helpers::{DEADLINE, live_processes_in_group, numbered_lines};

fn spec(command: &str, timeout_secs: u64) -> Spec {
    Spec {
        command: command.to_owned(),
        env: [("GREETING".to_owned(), "hi".to_owned())].into(),
        cwd: None,
        timeout_secs,
        kill_grace_ms: 200,
        allow_daemons: false,
        max_output_bytes: 0,
        store: None,
        attempt: None,
    }
}

fn start(dir: &Path, spec: &Spec) -> JobDir {
    let job = JobDir::new(dir.join("job"));
    // The launcher ends with this call; the supervisor it forked lives on.
    Launcher::new(env!("CARGO_BIN_EXE_rje").into())
        .launch(&job, spec)
        .expect("the supervisor starts");
    job
}

async fn ended(job: &JobDir) -> ExitRecord {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(record) = job.read_exit().expect("a readable exit record") {
            return record;
        }
        assert!(Instant::now() < deadline, "the command never ended");
        sleep(Duration::from_millis(20)).await;
    }
}

/// The command's process group, once the supervisor has written it (the
/// pid file's first field; the second is when the group's leader started).
async fn pgid_of(job: &JobDir) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(named) = std::fs::read_to_string(job.pid())
            && let Some(pgid) = named.split_whitespace().next()
        {
            return pgid.to_owned();
        }
        assert!(Instant::now() < deadline, "no pid file");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_output_goes_to_files_and_the_end_is_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let job = start(
        dir.path(),
        &spec(
            "echo \"$GREETING\"; echo oops >&2; printf 'no newline'; exit 3",
            60,
        ),
    );
    let record = ended(&job).await;
    assert_eq!(record.code, Some(3));
    assert_eq!(record.signal, None);
    assert!(!record.timed_out);
    assert_eq!(
        std::fs::read_to_string(job.stdout()).unwrap(),
        "hi\nno newline"
    );
    assert_eq!(std::fs::read_to_string(job.stderr()).unwrap(), "oops\n");
    let leftovers: Vec<_> = std::fs::read_dir(job.root())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let supervisor = job.read_supervisor().unwrap().expect("its record");
    assert_eq!(supervisor.boot_id, rje_exec::durable::boot_id().unwrap());
}

#[tokio::test]
async fn the_supervisor_is_nobodys_child_and_in_a_session_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let job = start(dir.path(), &spec("sleep 30", 60));
    let deadline = Instant::now() + DEADLINE;
    let supervisor = loop {
        if let Some(record) = job.read_supervisor().unwrap() {
            break record;
        }
        assert!(Instant::now() < deadline, "no supervisor record");
        sleep(Duration::from_millis(20)).await;
    };
    let pid = nix::unistd::Pid::from_raw(supervisor.pid);
    assert_eq!(
        nix::unistd::getsid(Some(pid)).unwrap(),
        pid,
        "a session leader"
    );
    assert_ne!(
        nix::unistd::getsid(None).unwrap(),
        pid,
        "not the test's session"
    );
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", supervisor.pid)).unwrap();
    let parent: i32 = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(
        parent,
        std::process::id() as i32,
        "the launcher is not its parent: its end cannot take the job along"
    );
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid_of(&job).await.parse().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let record = ended(&job).await;
    assert_eq!(record.signal, Some(9));
}

#[tokio::test]
async fn the_deadline_is_kept_with_nobody_watching_and_nothing_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let job = start(
        dir.path(),
        // TERM is ignored by all of them: only the KILL after the grace ends them.
        &spec("trap '' TERM; sleep 300 & sleep 300 & wait", 1),
    );
    let record = ended(&job).await;
    assert!(record.timed_out);
    assert!(started.elapsed() >= Duration::from_secs(1));
    let pgid = pgid_of(&job).await;
    assert!(
        live_processes_in_group(&pgid).is_empty(),
        "left behind: {:?}",
        live_processes_in_group(&pgid)
    );
}

#[tokio::test]
async fn what_leaves_the_group_is_ended_with_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let escaped = dir.path().join("escaped");
    let command = format!(
        "setsid sleep 300 & echo $! > {}; echo started",
        escaped.display()
    );
    let job = start(dir.path(), &spec(&command, 60));
    let record = ended(&job).await;
    assert_eq!(record.code, Some(0));
    let pid: i32 = std::fs::read_to_string(&escaped)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The exit record is written only once the leftovers are gone.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
    let alive = stat.is_ok_and(|stat| {
        let state = stat[stat.rfind(')').unwrap() + 2..].chars().next();
        !matches!(state, Some('Z' | 'X'))
    });
    assert!(!alive, "the escaped process {pid} outlived the job");
}

#[tokio::test]
async fn a_link_planted_in_a_job_directory_is_never_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious");
    std::fs::write(&target, "precious\n").unwrap();
    let gate = dir.path().join("gate");
    let made = std::process::Command::new("mkfifo")
        .arg(&gate)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    // The command waits on the gate, so the link is planted while it runs.
    let command = format!("read line < '{}'; echo \"$line\"", gate.display());
    let job = start(dir.path(), &spec(&command, 60));
    let partial = job.root().join("exit.partial");
    let _ = std::fs::remove_file(&partial);
    std::os::unix::fs::symlink(&target, &partial).unwrap();
    // Opening a FIFO to write waits for its reader: the command.
    std::fs::write(&gate, "released\n").unwrap();
    let record = ended(&job).await;
    assert_eq!(record.code, Some(0));
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "precious\n",
        "the supervisor wrote through the planted link"
    );
    assert!(
        std::fs::symlink_metadata(job.exit()).unwrap().is_file(),
        "the end is a file of its own"
    );
    assert_eq!(std::fs::read_to_string(job.stdout()).unwrap(), "released\n");
}

#[tokio::test]
async fn a_follower_stopped_midway_is_continued_by_another_from_its_offsets() {
    use rje_domain::Stream;
    use rje_exec::ExecEvent;

    let dir = tempfile::tempdir().unwrap();
    let job = start(
        dir.path(),
        &spec(
            "for i in $(seq 1 20); do echo out-$i; echo err-$i >&2; sleep 0.1; done",
            60,
        ),
    );
    let mut taken = [Vec::new(), Vec::new()];
    let take = |event: ExecEvent, taken: &mut [Vec<u8>; 2]| {
        if let ExecEvent::Output { stream, bytes } = event {
            taken[usize::from(stream == Stream::Stderr)].extend(bytes);
        }
    };
    // The first follower reads for a while, then goes away, as a killed
    // worker would.
    let (sink, mut events) = tokio::sync::mpsc::channel(8);
    let first = {
        let job = job.clone();
        tokio::spawn(async move { rje_exec::durable::follow(&job, &mut [0, 0], &sink).await })
    };
    let until = Instant::now() + Duration::from_millis(800);
    while Instant::now() < until {
        if let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(50), events.recv()).await
        {
            take(event, &mut taken);
        }
    }
    first.abort();
    while let Ok(event) = events.try_recv() {
        take(event, &mut taken);
    }
    assert!(!taken[0].is_empty(), "the first follower saw output");
    assert!(
        job.read_exit().unwrap().is_none(),
        "and left before the end"
    );

    let mut offsets = [taken[0].len() as u64, taken[1].len() as u64];
    let (sink, mut events) = tokio::sync::mpsc::channel(8);
    let second = {
        let job = job.clone();
        tokio::spawn(async move {
            let record = rje_exec::durable::follow(&job, &mut offsets, &sink).await;
            record.map(|record| (record, offsets))
        })
    };
    while let Some(event) = events.recv().await {
        take(event, &mut taken);
    }
    let (record, end) = second.await.unwrap().expect("followed to the end");
    assert_eq!(record.code, Some(0));
    assert_eq!(
        String::from_utf8_lossy(&taken[0]),
        numbered_lines("out-", 20),
        "every line once, in order"
    );
    assert_eq!(
        String::from_utf8_lossy(&taken[1]),
        numbered_lines("err-", 20)
    );
    assert_eq!(end, [taken[0].len() as u64, taken[1].len() as u64]);
}

mod executor {
    use std::path::Path;
    use std::time::Duration;

    use rje_domain::{ExecParameters, ExitReport, Outcome, Stream};
    use rje_exec::durable::{JobDir, SupervisorRecord};
    use rje_exec::{DurableLocalExecutor, ExecEvent, ExecRequest, Executor, NoGate, ResumeError};
    use tokio::sync::mpsc;
    use tokio::time::{Instant, sleep};
    use tokio_util::sync::CancellationToken;

    use crate::helpers::{DEADLINE, live_processes_in_group, numbered_lines, wait_group_gone};

    fn executor(dir: &Path) -> DurableLocalExecutor {
        DurableLocalExecutor::new(
            dir.to_owned(),
            env!("CARGO_BIN_EXE_rje").into(),
            Duration::from_millis(300),
        )
    }

    fn request(command: &str, timeout_secs: u64) -> ExecRequest {
        ExecRequest {
            command: command.to_owned(),
            timeout: Duration::from_secs(timeout_secs),
            parameters: ExecParameters::default(),
        }
    }

    /// What a consumer of the events has taken: the process id and the
    /// bytes of each stream.
    #[derive(Default)]
    struct Taken {
        process_id: Option<String>,
        streams: [Vec<u8>; 2],
    }

    impl Taken {
        fn take(&mut self, event: ExecEvent) {
            match event {
                ExecEvent::Started { process_id } => self.process_id = Some(process_id),
                ExecEvent::Output { stream, bytes } => {
                    self.streams[usize::from(stream == Stream::Stderr)].extend(bytes)
                }
                ExecEvent::Skipped { .. } => panic!("no cap here: nothing is skipped"),
            }
        }

        fn offsets(&self) -> [u64; 2] {
            [self.streams[0].len() as u64, self.streams[1].len() as u64]
        }

        fn text(&self, stream: usize) -> String {
            String::from_utf8_lossy(&self.streams[stream]).into_owned()
        }
    }

    #[tokio::test]
    async fn a_run_streams_the_output_and_reports_the_exit() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, mut events) = mpsc::channel(8);
        let executor = executor(dir.path());
        let run = executor.run(
            "job-1",
            request("echo a; echo b >&2; exit 3", 60),
            &NoGate,
            sink,
            CancellationToken::new(),
        );
        let mut taken = Taken::default();
        let collect = async {
            while let Some(event) = events.recv().await {
                taken.take(event);
            }
        };
        let (outcome, ()) = tokio::join!(run, collect);
        assert_eq!(
            crate::helpers::ended(outcome.unwrap()),
            Outcome::Exited { code: 3 }
        );
        assert!(taken.process_id.is_some());
        assert_eq!(taken.text(0), "a\n");
        assert_eq!(taken.text(1), "b\n");
        // The same key again would run the command twice: refused.
        let (sink, _events) = mpsc::channel(8);
        let again = executor
            .run(
                "job-1",
                request("echo a", 60),
                &NoGate,
                sink,
                CancellationToken::new(),
            )
            .await;
        assert!(again.is_err_and(|err| !err.retryable));
    }

    async fn run_to_end(
        executor: &DurableLocalExecutor,
        key: &str,
        request: ExecRequest,
    ) -> (Outcome, Taken) {
        let (sink, mut events) = mpsc::channel(8);
        let run = executor.run(key, request, &NoGate, sink, CancellationToken::new());
        let mut taken = Taken::default();
        let collect = async {
            while let Some(event) = events.recv().await {
                taken.take(event);
            }
        };
        let (outcome, ()) = tokio::join!(run, collect);
        (crate::helpers::ended(outcome.unwrap()), taken)
    }

    /// A cancel reaches what is below the job's supervisor only on proof
    /// that the supervisor is the one that started the command: a record
    /// naming another live process (its true start time and all) gets
    /// nothing of that process's killed.
    #[tokio::test]
    async fn a_planted_supervisor_record_gets_nothing_outside_the_job_killed() {
        let dir = tempfile::tempdir().unwrap();
        let executor = executor(dir.path());
        let mut outsider = std::process::Command::new("sh")
            .args(["-c", "sleep 7411; true"])
            .spawn()
            .unwrap();
        let pid = outsider.id() as i32;
        let deadline = Instant::now() + DEADLINE;
        while rje_testkit::processes_running(&["sleep", "7411"]).is_empty() {
            assert!(
                Instant::now() < deadline,
                "the outsider's child never started"
            );
            sleep(Duration::from_millis(20)).await;
        }
        let (sink, mut events) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let run = executor.run(
            "planted",
            request("sleep 7412", 60),
            &NoGate,
            sink,
            cancel.clone(),
        );
        let job = JobDir::new(dir.path().join("jobs").join("planted"));
        let plant = async {
            let mut started = false;
            while let Some(event) = events.recv().await {
                if matches!(event, ExecEvent::Started { .. }) && !started {
                    started = true;
                    let record = SupervisorRecord {
                        pid,
                        boot_id: rje_exec::durable::boot_id().unwrap(),
                        started_at_ms: 0,
                        start_ticks: Some(start_ticks_of(pid)),
                    };
                    std::fs::write(job.supervisor(), serde_json::to_vec(&record).unwrap()).unwrap();
                    cancel.cancel();
                }
            }
        };
        let (outcome, ()) = tokio::join!(run, plant);
        assert!(
            matches!(
                crate::helpers::ended(outcome.unwrap()),
                Outcome::Cancelled { .. }
            ),
            "the job itself is cancelled"
        );
        assert_eq!(
            rje_testkit::processes_running(&["sleep", "7411"]).len(),
            1,
            "the outsider's child lives"
        );
        let _ = outsider.kill();
        let _ = outsider.wait();
        for pid in rje_testkit::processes_running(&["sleep", "7411"]) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// What a command leaves behind is treated as on a plain run: given a
    /// moment to finish writing, then ended; a job that allows daemons
    /// keeps those that left its group, not its group's stragglers.
    #[tokio::test]
    async fn leftovers_get_a_moment_then_go_and_allowed_daemons_stay() {
        let dir = tempfile::tempdir().unwrap();
        let executor = executor(dir.path());
        let (outcome, taken) = run_to_end(
            &executor,
            "linger",
            request("(sleep 0.2; echo late) & echo done", 60),
        )
        .await;
        assert_eq!(outcome, Outcome::Exited { code: 0 });
        assert_eq!(
            taken.text(0),
            "done\nlate\n",
            "a leftover's last words are kept"
        );

        let mut allowed = request(
            "setsid sleep 7401 > /dev/null 2>&1 & sleep 7402 > /dev/null 2>&1 & echo started",
            60,
        );
        allowed.parameters.allow_daemons = true;
        let (outcome, taken) = run_to_end(&executor, "daemons", allowed).await;
        assert_eq!(outcome, Outcome::Exited { code: 0 });
        assert_eq!(taken.text(0), "started\n");
        let deadline = Instant::now() + DEADLINE;
        let daemon = loop {
            let found = rje_testkit::processes_running(&["sleep", "7401"]);
            if !found.is_empty() || Instant::now() > deadline {
                break found;
            }
            sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(daemon.len(), 1, "the daemon that left the group lives on");
        assert_eq!(
            rje_testkit::processes_running(&["sleep", "7402"]),
            Vec::<i32>::new(),
            "the group's straggler is ended"
        );
        for pid in daemon {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    #[tokio::test]
    async fn a_dropped_run_leaves_the_command_running_and_a_resume_finishes_it() {
        let dir = tempfile::tempdir().unwrap();
        let command = "for i in $(seq 1 15); do echo line-$i; sleep 0.1; done";
        let (sink, mut events) = mpsc::channel(8);
        let first = {
            let executor = executor(dir.path());
            tokio::spawn(async move {
                executor
                    .run(
                        "job-2",
                        request(command, 60),
                        &NoGate,
                        sink,
                        CancellationToken::new(),
                    )
                    .await
            })
        };
        let mut taken = Taken::default();
        let until = Instant::now() + Duration::from_millis(600);
        while Instant::now() < until {
            if let Ok(Some(event)) =
                tokio::time::timeout(Duration::from_millis(50), events.recv()).await
            {
                taken.take(event);
            }
        }
        // The worker dies: its run is dropped mid-way.
        first.abort();
        let _ = first.await;
        while let Ok(event) = events.try_recv() {
            taken.take(event);
        }
        let pgid = taken.process_id.clone().expect("started");
        assert!(!live_processes_in_group(&pgid).is_empty(), "still running");

        let (sink, mut events) = mpsc::channel(8);
        let executor = executor(dir.path());
        let resumed = executor.resume(
            "job-2",
            taken.offsets(),
            Duration::from_secs(60),
            sink,
            CancellationToken::new(),
        );
        let collect = async {
            while let Some(event) = events.recv().await {
                taken.take(event);
            }
        };
        let (outcome, ()) = tokio::join!(resumed, collect);
        assert_eq!(
            crate::helpers::ended(outcome.unwrap()),
            Outcome::Exited { code: 0 }
        );
        let expected = numbered_lines("line-", 15);
        assert_eq!(taken.text(0), expected, "every line once, in order");
    }

    #[tokio::test]
    async fn a_cancel_ends_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let (sink, mut events) = mpsc::channel(8);
        let executor = executor(dir.path());
        let run = executor.run(
            "job-3",
            request("trap '' TERM; sleep 300 & sleep 300 & echo up; wait", 60),
            &NoGate,
            sink,
            cancel.clone(),
        );
        let mut taken = Taken::default();
        let drive = async {
            while let Some(event) = events.recv().await {
                taken.take(event);
                if taken.text(0).contains("up") {
                    cancel.cancel();
                }
            }
        };
        let (outcome, ()) = tokio::join!(run, drive);
        assert_eq!(
            crate::helpers::ended(outcome.unwrap()),
            Outcome::Cancelled {
                kill: ExitReport::Confirmed
            }
        );
        wait_group_gone(taken.process_id.as_deref().unwrap()).await;
    }

    #[tokio::test]
    async fn the_timeout_is_kept_by_the_supervisor() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, mut events) = mpsc::channel(8);
        let executor = executor(dir.path());
        let run = executor.run(
            "job-4",
            request("sleep 300", 1),
            &NoGate,
            sink,
            CancellationToken::new(),
        );
        let drain = async { while events.recv().await.is_some() {} };
        let (outcome, ()) = tokio::join!(run, drain);
        assert!(
            matches!(
                crate::helpers::ended(outcome.unwrap()),
                Outcome::TimedOut { after_secs: 1, .. }
            ),
            "timed out"
        );
    }

    #[tokio::test]
    async fn a_jobs_files_are_private_to_its_user_whatever_the_umask() {
        use std::os::unix::fs::MetadataExt;
        // The usual umask, which lets everyone read what it creates: the
        // files must be private anyway. (No test here relies on another.)
        let _ = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        let dir = tempfile::tempdir().unwrap();
        let executor = executor(dir.path());
        let mut request = request("echo \"$SECRET\"; echo err >&2", 60);
        request.parameters.env = vec![("SECRET".into(), "hunter2".into())];
        let (sink, mut events) = mpsc::channel(8);
        let run = executor.run("private", request, &NoGate, sink, CancellationToken::new());
        let drain = async { while events.recv().await.is_some() {} };
        let (outcome, ()) = tokio::join!(run, drain);
        assert_eq!(
            crate::helpers::ended(outcome.unwrap()),
            Outcome::Exited { code: 0 }
        );
        let mode = |path: &Path| std::fs::symlink_metadata(path).unwrap().mode() & 0o7777;
        let job = executor.job_dir("private");
        assert_eq!(mode(&dir.path().join("jobs")), 0o700);
        assert_eq!(mode(job.root()), 0o700);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(job.root()).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            assert_eq!(mode(&entry.path()), 0o600, "{name}");
            names.push(name);
        }
        for file in [
            "spec.json",
            "supervisor.json",
            "pid",
            "stdout",
            "stderr",
            "exit.json",
            "supervisor.log",
        ] {
            assert!(names.iter().any(|name| name == file), "{file} in {names:?}");
        }
    }

    /// A process in a group of its own that echoes a line: proof, at any
    /// moment, that nothing killed it before (a killed one never answers).
    struct Victim {
        child: std::process::Child,
        input: std::process::ChildStdin,
        output: std::io::BufReader<std::process::ChildStdout>,
    }

    impl Victim {
        fn start() -> Self {
            use std::os::unix::process::CommandExt;
            let mut child = std::process::Command::new("cat")
                .process_group(0)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let input = child.stdin.take().unwrap();
            let output = std::io::BufReader::new(child.stdout.take().unwrap());
            Self {
                child,
                input,
                output,
            }
        }

        fn pgid(&self) -> i32 {
            self.child.id() as i32
        }

        fn answers(&mut self) -> bool {
            use std::io::{BufRead, Write};
            if writeln!(self.input, "still here")
                .and_then(|()| self.input.flush())
                .is_err()
            {
                return false;
            }
            let mut line = String::new();
            self.output.read_line(&mut line).is_ok() && line == "still here\n"
        }
    }

    impl Drop for Victim {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// When process `pid` started, in clock ticks since boot (field 22 of
    /// /proc/PID/stat, counted after the command name).
    fn start_ticks_of(pid: i32) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .nth(19)
            .unwrap()
            .parse()
            .unwrap()
    }

    /// A job directory as a supervisor would have left it, its pid file
    /// holding `named`.
    fn plant(job: &JobDir, supervisor: i32, boot_id: &str, named: &str) {
        std::fs::create_dir_all(job.root()).unwrap();
        std::fs::write(
            job.spec(),
            r#"{"command":"sleep 300","timeout_secs":600,"kill_grace_ms":100}"#,
        )
        .unwrap();
        let record = SupervisorRecord {
            pid: supervisor,
            boot_id: boot_id.to_owned(),
            started_at_ms: 0,
            start_ticks: None,
        };
        std::fs::write(job.supervisor(), serde_json::to_vec(&record).unwrap()).unwrap();
        std::fs::write(job.pid(), named).unwrap();
    }

    #[tokio::test]
    async fn a_stale_directory_never_gets_a_group_killed_that_may_not_be_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let executor = executor(dir.path());
        let mut victim = Victim::start();
        assert!(victim.answers(), "the victim runs");
        let pgid = victim.pgid();
        let ticks = start_ticks_of(pgid);
        let boot = rje_exec::durable::boot_id().unwrap();
        let another_boot = "00000000-0000-0000-0000-000000000000";
        // Far above pid_max: a supervisor long gone.
        let gone = i32::MAX - 7;
        let cases = [
            // This boot, but the group's leader is not the process that
            // started then: the number was given out again.
            (
                "01a20000-0000-7000-8000-0000000000a1",
                boot.as_str(),
                format!("{pgid} {}", ticks + 1),
            ),
            // No start time at all (an older rje's pid file): no proof.
            (
                "01a20000-0000-7000-8000-0000000000a2",
                boot.as_str(),
                pgid.to_string(),
            ),
            // Another boot: every number names another process now.
            (
                "01a20000-0000-7000-8000-0000000000a3",
                another_boot,
                format!("{pgid} {ticks}"),
            ),
        ];
        for (key, boot_id, named) in cases {
            plant(&executor.job_dir(key), gone, boot_id, &named);
            // The store says the job is over; then a take-up; then the
            // sweep of files nobody will take up.
            executor.end_abandoned(key);
            let (sink, _events) = mpsc::channel(8);
            let resumed = executor
                .resume(
                    key,
                    [0, 0],
                    Duration::from_secs(60),
                    sink,
                    CancellationToken::new(),
                )
                .await;
            assert!(
                matches!(
                    resumed,
                    Err(ResumeError::SupervisorLost | ResumeError::Rebooted)
                ),
                "{key}: {resumed:?}"
            );
            assert!(
                executor.sweep_if_stale(key, Duration::ZERO).await,
                "{key}: the stale directory goes"
            );
            assert!(victim.answers(), "{key}: group {pgid} was killed");
        }
    }

    #[tokio::test]
    async fn a_job_whose_supervisor_was_killed_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let executor = executor(dir.path());
        let (sink, mut events) = mpsc::channel(8);
        let first = {
            let executor = executor.clone();
            tokio::spawn(async move {
                executor
                    .run(
                        "job-5",
                        request("sleep 300", 60),
                        &NoGate,
                        sink,
                        CancellationToken::new(),
                    )
                    .await
            })
        };
        let mut taken = Taken::default();
        while taken.process_id.is_none() {
            taken.take(events.recv().await.expect("started"));
        }
        first.abort();
        let supervisor = executor
            .job_dir("job-5")
            .read_supervisor()
            .unwrap()
            .expect("its record");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(supervisor.pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let deadline = Instant::now() + DEADLINE;
        while nix::sys::signal::kill(nix::unistd::Pid::from_raw(supervisor.pid), None).is_ok() {
            assert!(Instant::now() < deadline, "the supervisor outlived KILL");
            sleep(Duration::from_millis(20)).await;
        }
        let (sink, _events) = mpsc::channel(8);
        let resumed = executor
            .resume(
                "job-5",
                taken.offsets(),
                Duration::from_secs(60),
                sink,
                CancellationToken::new(),
            )
            .await;
        assert!(
            matches!(resumed, Err(ResumeError::SupervisorLost)),
            "{resumed:?}"
        );
        wait_group_gone(taken.process_id.as_deref().unwrap()).await;
    }
}

#[tokio::test]
async fn a_followed_flood_takes_little_disk() {
    use std::os::unix::fs::MetadataExt;

    use rje_exec::{DurableLocalExecutor, ExecEvent, ExecRequest, Executor, NoGate};
    use tokio_util::sync::CancellationToken;

    let dir = tempfile::tempdir().unwrap();
    let executor = DurableLocalExecutor::new(
        dir.path().to_owned(),
        env!("CARGO_BIN_EXE_rje").into(),
        Duration::from_millis(300),
    );
    let request = ExecRequest {
        command: "head -c 64000000 /dev/zero | tr '\\0' 'x'".into(),
        timeout: Duration::from_secs(60),
        parameters: rje_domain::ExecParameters::default(),
    };
    let (sink, mut events) = tokio::sync::mpsc::channel(8);
    let run = executor.run("flood", request, &NoGate, sink, CancellationToken::new());
    let stdout = executor.job_dir("flood").stdout();
    let watch = async {
        let mut taken = 0u64;
        while let Some(event) = events.recv().await {
            if let ExecEvent::Output { bytes, .. } = event {
                taken += bytes.len() as u64;
            }
        }
        taken
    };
    let (outcome, taken) = tokio::join!(run, watch);
    assert!(outcome.is_ok());
    assert_eq!(taken, 64_000_000, "every byte delivered");
    let meta = std::fs::metadata(&stdout).unwrap();
    assert_eq!(meta.len(), 64_000_000, "offsets stay as they were");
    let on_disk = meta.blocks() * 512;
    assert!(
        on_disk < 16_000_000,
        "{on_disk} bytes on disk for 64 MB read"
    );
}

/// The launch is settled once, by whoever comes first: the launcher, or a
/// worker that proves it gone before it launched (finding 16 of #19).
mod launch_claims {
    use std::time::Duration;

    use rje_domain::{ExecParameters, Outcome};
    use rje_exec::durable::{JobDir, LaunchError, LaunchMark, Launcher, prepare};
    use rje_exec::{DurableLocalExecutor, ExecRequest, Executor, NoGate, Unlaunched};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::{ended, spec};

    fn launcher() -> Launcher {
        Launcher::new(env!("CARGO_BIN_EXE_rje").into())
    }

    fn with_attempt(command: &str, attempt: u32) -> rje_exec::durable::Spec {
        let mut spec = spec(command, 60);
        spec.attempt = Some(attempt);
        spec
    }

    #[tokio::test]
    async fn a_launch_given_up_starts_nothing_and_one_claimed_is_never_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_owned();
        let executor = DurableLocalExecutor::new(
            state.clone(),
            env!("CARGO_BIN_EXE_rje").into(),
            Duration::from_millis(300),
        );
        let ran = dir.path().join("ran");
        let command = format!("echo ran >> {}", ran.display());

        // The worker stalled after the start mark: its launch is given up.
        let stalled = executor.job_dir("stalled");
        let prepared = prepare(&stalled, &with_attempt(&command, 3)).unwrap();
        assert!(matches!(
            executor.abandon_unlaunched("stalled"),
            Unlaunched::Never { attempt: 3 }
        ));
        assert!(
            matches!(
                executor.abandon_unlaunched("stalled"),
                Unlaunched::Never { attempt: 3 }
            ),
            "a second look finds it given up still"
        );
        assert!(matches!(
            launcher().start(&prepared),
            Err(LaunchError::Abandoned)
        ));
        assert!(
            !stalled.root().join("supervisor.log").exists(),
            "no supervisor was asked for"
        );

        // One launched first is the launcher's: it may have started.
        let launched = executor.job_dir("launched");
        let prepared = prepare(&launched, &with_attempt(&command, 1)).unwrap();
        launcher().start(&prepared).expect("the supervisor starts");
        assert!(matches!(
            executor.abandon_unlaunched("launched"),
            Unlaunched::MayHaveStarted
        ));
        assert_eq!(ended(&launched).await.code, Some(0));
        assert_eq!(std::fs::read_to_string(&ran).unwrap(), "ran\n");

        // A directory that names no attempt (an older rje's) proves nothing.
        let old = executor.job_dir("old");
        prepare(&old, &spec(&command, 60)).unwrap();
        assert!(matches!(
            executor.abandon_unlaunched("old"),
            Unlaunched::MayHaveStarted
        ));
        assert!(
            !old.root().join("launch").exists(),
            "left to the lost-worker rules"
        );
    }

    #[tokio::test]
    async fn a_stalled_launcher_never_launches_in_a_directory_made_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let job = JobDir::new(dir.path().join("jobs").join("job"));
        let ran = dir.path().join("ran");
        let command = format!("echo ran >> {}", ran.display());
        // Attempt 1 made its directory, then stalled; attempt 2 made anew.
        let first = prepare(&job, &with_attempt(&command, 1)).unwrap();
        let second = prepare(&job, &with_attempt(&command, 2)).unwrap();
        assert!(matches!(
            launcher().start(&first),
            Err(LaunchError::Replaced)
        ));
        launcher().start(&second).expect("the supervisor starts");
        assert_eq!(ended(&job).await.code, Some(0));
        assert_eq!(std::fs::read_to_string(&ran).unwrap(), "ran\n", "once");
        // Launched now: never made again.
        assert!(matches!(
            prepare(&job, &with_attempt(&command, 3)),
            Err(LaunchError::MayHaveStarted(_))
        ));
        let mark = rje_exec::durable::OpenJobDir::open(&job)
            .unwrap()
            .read_mark()
            .unwrap();
        assert_eq!(mark, Some(LaunchMark::Launched));
    }

    /// A directory is replaced only when it is provably a lost earlier
    /// attempt's: never an older rje's (it names no attempt, and its
    /// launch may have happened unclaimed), never a later attempt's (this
    /// worker is the stalled one).
    #[test]
    fn only_a_lost_earlier_attempts_directory_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let older = JobDir::new(dir.path().join("older"));
        prepare(&older, &spec("true", 60)).unwrap();
        assert!(matches!(
            prepare(&older, &with_attempt("true", 2)),
            Err(LaunchError::MayHaveStarted(_))
        ));
        assert!(older.spec().exists(), "an older rje's directory stays");

        let later = JobDir::new(dir.path().join("later"));
        prepare(&later, &with_attempt("true", 3)).unwrap();
        assert!(matches!(
            prepare(&later, &with_attempt("true", 2)),
            Err(LaunchError::Replaced)
        ));
        let kept: rje_exec::durable::Spec =
            serde_json::from_slice(&std::fs::read(later.spec()).unwrap()).unwrap();
        assert_eq!(kept.attempt, Some(3), "the later attempt's directory stays");
        let open = prepare(&later, &with_attempt("true", 4)).expect("a later attempt replaces it");
        assert_eq!(
            open.read_mark().unwrap(),
            None,
            "a new directory, unclaimed"
        );
    }

    /// A `launch` that is not a claim's file (a planted link, a
    /// directory) is no proof the command never started: the job is
    /// refused at once, naming its directory, and the link's target is
    /// never touched.
    #[test]
    fn a_planted_launch_entry_is_refused_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "untouched").unwrap();
        for (key, plant) in [("linked", true), ("dir", false)] {
            let job = JobDir::new(dir.path().join(key));
            std::fs::create_dir(job.root()).unwrap();
            let launch = job.root().join("launch");
            if plant {
                std::os::unix::fs::symlink(&target, &launch).unwrap();
            } else {
                std::fs::create_dir(&launch).unwrap();
            }
            match prepare(&job, &with_attempt("true", 2)) {
                Err(LaunchError::MayHaveStarted(path)) => assert_eq!(path, job.root(), "{key}"),
                other => panic!("{key}: {other:?}"),
            }
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
    }

    #[tokio::test]
    async fn a_directory_left_before_the_start_mark_or_given_up_is_run_in_anew() {
        let dir = tempfile::tempdir().unwrap();
        let executor = DurableLocalExecutor::new(
            dir.path().to_owned(),
            env!("CARGO_BIN_EXE_rje").into(),
            Duration::from_millis(300),
        );
        let ran = dir.path().join("ran");
        let command = format!("echo ran >> {}; echo hello", ran.display());
        // One lost worker left its directory before its start mark, the
        // next one's launch was given up: neither ran anything.
        prepare(&executor.job_dir("left"), &with_attempt(&command, 1)).unwrap();
        prepare(&executor.job_dir("given-up"), &with_attempt(&command, 1)).unwrap();
        assert!(matches!(
            executor.abandon_unlaunched("given-up"),
            Unlaunched::Never { attempt: 1 }
        ));
        for key in ["left", "given-up"] {
            let (sink, mut events) = mpsc::channel(8);
            let request = ExecRequest {
                command: command.clone(),
                timeout: Duration::from_secs(60),
                parameters: ExecParameters::default(),
            };
            let run = executor.run(key, request, &NoGate, sink, CancellationToken::new());
            let drain = async { while events.recv().await.is_some() {} };
            let (outcome, ()) = tokio::join!(run, drain);
            assert_eq!(
                crate::helpers::ended(outcome.unwrap()),
                Outcome::Exited { code: 0 },
                "{key}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(&ran).unwrap(),
            "ran\nran\n",
            "each once"
        );
    }
}
