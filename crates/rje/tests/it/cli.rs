//! The `rje` client as a real process against a real server.

use std::process::{Output, Stdio};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::watch;

use crate::helpers::*;

/// The client binary, pointed at `app`, with no config file of the user's.
pub(crate) fn rje(app: &TestApp) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rje"));
    command
        .env("RJE_URL", app.url(""))
        .env("XDG_CONFIG_HOME", app.path("config"))
        .env_remove("RJE_TOKEN")
        .env_remove("RJE_CONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(token) = &app.token {
        command.env("RJE_TOKEN", token);
    }
    command
}

async fn run(app: &TestApp, args: &[&str]) -> Output {
    tokio::time::timeout(DEADLINE, rje(app).args(args).output())
        .await
        .expect("the client finishes")
        .expect("the client runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

#[tokio::test]
async fn submit_prints_the_id_and_json_that_parses() {
    let app = spawn_app().await;
    let plain = run(&app, &["submit", "echo piped", "--priority", "high"]).await;
    assert_eq!(code(&plain), 0, "{}", stderr(&plain));
    let id = stdout(&plain).trim().to_owned();
    let job = app.wait_final(&id).await;
    assert_eq!(job["priority"], "High");
    assert_eq!(job["stdout"], "piped\n");

    let json_out = run(&app, &["submit", "true", "--json", "--timeout", "9"]).await;
    assert_eq!(code(&json_out), 0);
    let job: Value = serde_json::from_str(&stdout(&json_out)).expect("JSON");
    assert_eq!(job["timeout"], 9);
    assert_eq!(job["status"], "Queued");
}

#[tokio::test]
async fn submit_wait_and_stream_exit_with_the_jobs_code() {
    let app = spawn_app().await;
    let waited = run(
        &app,
        &["submit", "echo out; echo err >&2; exit 3", "--wait"],
    )
    .await;
    assert_eq!(code(&waited), 3);
    assert_eq!(stdout(&waited), "out\n");
    assert_eq!(stderr(&waited), "err\n");

    let streamed = run(
        &app,
        &[
            "submit",
            "for i in 1 2 3; do echo o$i; echo e$i >&2; done",
            "--stream",
        ],
    )
    .await;
    assert_eq!(code(&streamed), 0);
    assert_eq!(stdout(&streamed), "o1\no2\no3\n");
    assert_eq!(stderr(&streamed), "e1\ne2\ne3\n");

    let timed_out = run(&app, &["submit", "sleep 30", "--timeout", "1", "--wait"]).await;
    assert_eq!(code(&timed_out), 124);

    let json_wait = run(&app, &["submit", "echo j", "--wait", "--json"]).await;
    assert_eq!(code(&json_wait), 0);
    let job: Value = serde_json::from_str(&stdout(&json_wait)).unwrap();
    assert_eq!(job["status"], "Success");
    assert_eq!(job["stdout"], "j\n");
}

/// `rje submit --stream` of a job that prints `started` and sleeps, once
/// it has printed; the rest of its stdout comes with it.
async fn streaming_sleeper(
    app: &TestApp,
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let mut child = rje(app)
        .args(["submit", "echo started; sleep 60", "--stream"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("started"));
    (child, lines)
}

#[tokio::test]
async fn a_cancelled_job_exits_130() {
    let app = spawn_app().await;
    let (mut child, _lines) = streaming_sleeper(&app).await;
    let list: Value = app
        .get("/jobs/list/?status=Running")
        .await
        .json()
        .await
        .unwrap();
    let id = id_of(&list["jobs"][0]);
    assert_eq!(app.cancel(&id).await.status(), 200);
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130));
}

#[tokio::test]
async fn ctrl_c_off_a_terminal_detaches_and_leaves_the_job_running() {
    let app = spawn_app().await;
    let (mut child, _lines) = streaming_sleeper(&app).await;
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130));
    let list: Value = app
        .get("/jobs/list/?status=Running")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total_count"], 1, "the job goes on");
    app.cancel(&id_of(&list["jobs"][0])).await;
}

#[tokio::test]
async fn view_shows_a_table_or_json_and_follows() {
    let app = spawn_app().await;
    let id = app.submit_command("echo viewed").await;
    app.wait_final(&id).await;

    let table = run(&app, &["view", &id]).await;
    assert_eq!(code(&table), 0);
    let text = stdout(&table);
    assert!(text.contains(&id) && text.contains("Success") && text.contains("echo viewed"));
    assert!(!text.contains('\u{1b}'), "no colour when piped");
    assert!(!text.contains('│'), "no borders when piped");

    let json_out = run(&app, &["view", &id, "--format", "json"]).await;
    let job: Value = serde_json::from_str(&stdout(&json_out)).unwrap();
    assert_eq!(job["stdout"], "viewed\n");

    let slow = app.submit_command("sleep 0.5; echo done").await;
    let followed = run(&app, &["view", &slow, "--follow"]).await;
    assert_eq!(code(&followed), 0);
    let text = stdout(&followed);
    let success = text.find("Success").expect("the final status is shown");
    assert!(
        text[..success].contains("Running"),
        "status changes are shown: {text}"
    );
}

#[tokio::test]
async fn stream_prints_output_and_since_skips_what_was_seen() {
    let app = spawn_app().await;
    let id = app
        .submit_command("echo a; sleep 0.2; echo b; sleep 0.2; echo c >&2")
        .await;
    let streamed = run(&app, &["stream", &id]).await;
    assert_eq!(code(&streamed), 0);
    assert_eq!(stdout(&streamed), "a\nb\n");
    assert_eq!(stderr(&streamed), "c\n");

    let logs: Value = app
        .get(&format!("/jobs/{id}/logs/"))
        .await
        .json()
        .await
        .unwrap();
    let first = logs["chunks"][0]["seq"].as_i64().unwrap().to_string();
    let resumed = run(&app, &["stream", &id, "--since", &first]).await;
    assert_eq!(stdout(&resumed), "b\n");
    assert_eq!(stderr(&resumed), "c\n");

    let failed = app.submit_command("exit 9").await;
    assert_eq!(code(&run(&app, &["stream", &failed]).await), 9);
}

#[tokio::test]
async fn cancel_list_and_delete() {
    let app = spawn_app().await;
    let running = app.submit_command("sleep 60").await;
    app.wait_started(&running).await;

    let listed = run(&app, &["list", "--status", "Running", "--json"]).await;
    let page: Value = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(page["total_count"], 1);
    assert_eq!(id_of(&page["jobs"][0]), running);
    let table = run(&app, &["list"]).await;
    assert!(stdout(&table).contains("STATUS") && stdout(&table).contains(&running));

    assert_eq!(
        code(&run(&app, &["delete", &running]).await),
        67,
        "running: conflict"
    );
    // Not a terminal: no question asked.
    let cancelled = run(&app, &["cancel", &running]).await;
    assert_eq!(code(&cancelled), 0, "{}", stderr(&cancelled));
    assert!(stdout(&cancelled).contains("Cancelled"));
    assert_eq!(app.job(&running).await["status"], "Cancelled");
    assert_eq!(code(&run(&app, &["cancel", &running, "--force"]).await), 67);

    let deleted = run(&app, &["delete", &running, "--json"]).await;
    assert_eq!(code(&deleted), 0);
    let body: Value = serde_json::from_str(&stdout(&deleted)).unwrap();
    assert_eq!(body["deleted"], running.as_str());
    assert_eq!(code(&run(&app, &["delete", &running]).await), 66);
    assert_eq!(code(&run(&app, &["view", &running]).await), 66);
}

/// `rje list --all` walks every page by cursor; `--cursor` starts where
/// a page's `next` said; `--offset` beside a cursor is a usage error.
#[tokio::test]
async fn list_walks_pages_by_cursor() {
    let app = spawn_app_with(|s| s.run_worker = false).await;
    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(app.submit_command(&format!("echo {n}")).await);
    }
    let all = run(
        &app,
        &[
            "list",
            "--all",
            "--limit",
            "3",
            "--ordering",
            "created_at",
            "--json",
        ],
    )
    .await;
    assert_eq!(code(&all), 0, "{}", stderr(&all));
    let walked: Vec<String> = stdout(&all)
        .lines()
        .map(|line| id_of(&serde_json::from_str::<Value>(line).unwrap()))
        .collect();
    assert_eq!(walked, ids, "every job once, in order, one per line");

    let first = run(&app, &["list", "--limit", "3", "--json"]).await;
    let first: Value = serde_json::from_str(&stdout(&first)).unwrap();
    let cursor = first["next"].as_str().unwrap();
    let second = run(
        &app,
        &["list", "--limit", "3", "--cursor", cursor, "--json"],
    )
    .await;
    let second: Value = serde_json::from_str(&stdout(&second)).unwrap();
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    let ids_of = |page: &Value| -> Vec<String> {
        page["jobs"].as_array().unwrap().iter().map(id_of).collect()
    };
    assert_eq!(ids_of(&second), newest_first[3..6]);

    let both = run(&app, &["list", "--cursor", cursor, "--offset", "3"]).await;
    assert_eq!(code(&both), 2, "{}", stderr(&both));
    let wrong = run(
        &app,
        &["list", "--cursor", cursor, "--ordering", "priority"],
    )
    .await;
    assert_eq!(code(&wrong), 65, "{}", stderr(&wrong));
    assert!(stderr(&wrong).contains("cursor"), "{}", stderr(&wrong));
}

#[tokio::test]
async fn client_errors_have_distinct_exit_codes() {
    let app = spawn_app().await;
    let bad_input = run(&app, &["submit", "true", "--timeout", "0"]).await;
    assert_eq!(code(&bad_input), 65);
    assert!(stderr(&bad_input).contains("timeout"));

    assert_eq!(
        code(&run(&app, &["view", "0195f5a4-1a2b-7c3d-8e4f-0123456789ab"]).await),
        66
    );
    assert_eq!(code(&run(&app, &["view", "../etc"]).await), 66);

    let unreachable = rje(&app)
        .env("RJE_URL", "http://127.0.0.1:1")
        .args(["list"])
        .output()
        .await
        .unwrap();
    assert_eq!(code(&unreachable), 69);
    assert!(stderr(&unreachable).contains("cannot reach"));

    let secured = spawn_app_with(|s| s.api.tokens = vec!["right".into()]).await;
    let refused = rje(&secured)
        .env("RJE_TOKEN", "wrong")
        .args(["list"])
        .output()
        .await
        .unwrap();
    assert_eq!(code(&refused), 77);
    let allowed = rje(&secured)
        .env("RJE_TOKEN", "right")
        .args(["list"])
        .output()
        .await
        .unwrap();
    assert_eq!(code(&allowed), 0);

    for args in [
        vec!["submit"],
        vec!["list", "--limit", "0"],
        vec!["submit", "x", "--priority", "urgent"],
        vec!["nonsense"],
    ] {
        let usage = run(&app, &args).await;
        assert_eq!(code(&usage), 2, "{args:?}");
        assert!(
            stderr(&usage).contains("error"),
            "{args:?}: {}",
            stderr(&usage)
        );
    }
}

#[tokio::test]
async fn url_and_token_come_from_flags_then_environment_then_config_file() {
    let app = spawn_app_with(|s| s.api.tokens = vec!["from-file".into()]).await;
    let config = app.path("rje.toml");
    std::fs::write(
        &config,
        format!("url = \"{}\"\ntoken = \"from-file\"\n", app.url("")),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let mut from_file = rje(&app);
    from_file.env_remove("RJE_URL").env_remove("RJE_TOKEN");
    let out = from_file
        .args(["--config", config, "list"])
        .output()
        .await
        .unwrap();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));

    let mut env_wins = rje(&app);
    env_wins.env("RJE_TOKEN", "from-env");
    let out = env_wins
        .args(["--config", config, "list"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        code(&out),
        77,
        "the environment's token wins over the file's"
    );

    let mut flag_wins = rje(&app);
    flag_wins.env("RJE_TOKEN", "from-env");
    let out = flag_wins
        .args(["--config", config, "--token", "from-file", "list"])
        .output()
        .await
        .unwrap();
    assert_eq!(code(&out), 0, "the flag wins over the environment");

    let missing = run(&app, &["--config", "/no/such/rje.toml", "list"]).await;
    assert_eq!(code(&missing), 65);
    assert!(stderr(&missing).contains("/no/such/rje.toml"));
}

#[tokio::test]
async fn completions_are_printed() {
    let app = spawn_app().await;
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&app, &["completions", shell]).await;
        assert_eq!(code(&out), 0);
        assert!(stdout(&out).contains("submit"), "{shell}");
    }
}

/// A TCP proxy that can cut every connection through it, to drop a
/// WebSocket on demand: the one fault the real server cannot produce.
struct CuttingProxy {
    addr: std::net::SocketAddr,
    cut: watch::Sender<u32>,
}

impl CuttingProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cuts) = watch::channel(0u32);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                // Only cuts after this connection was made apply to it.
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut client_read, &mut server_write) => {}
                        _ = tokio::io::copy(&mut server_read, &mut client_write) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }

    fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

#[tokio::test]
async fn a_dropped_websocket_resumes_without_losing_or_repeating_lines() {
    let app = spawn_app().await;
    let proxy = CuttingProxy::start(app.addr).await;
    let id = app
        .submit_command("for i in $(seq 1 40); do echo line-$i; sleep 0.05; done")
        .await;
    let mut child = rje(&app)
        .env("RJE_URL", format!("http://{}", proxy.addr))
        .args(["stream", &id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    // Cut the connection twice while lines are still coming.
    for cut_after in ["line-10\n", "line-25\n"] {
        while !seen.contains(cut_after) {
            let n = tokio::time::timeout(DEADLINE, out.read(&mut buffer))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "the stream ended early: {seen}");
            seen.push_str(std::str::from_utf8(&buffer[..n]).unwrap());
        }
        proxy.cut_all();
    }
    out.read_to_string(&mut seen).await.unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(0));
    let expected = numbered_lines("line-", 40);
    assert_eq!(seen, expected, "every line exactly once, in order");
}

#[tokio::test]
async fn bench_counts_are_right() {
    let app = spawn_app().await;
    let out = run(&app, SMALL_BENCH).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("the report is JSON");
    assert_eq!(report["throughput"]["jobs"], 20);
    assert_eq!(report["throughput"]["finished"], 20);
    assert_eq!(report["throughput"]["succeeded"], 20);
    assert_eq!(report["submit_to_start"]["count"], 5);
    assert_eq!(report["submit_to_finish"]["count"], 5);
    assert_eq!(report["first_output"]["count"], 3);
    assert_eq!(report["cancel_to_dead"]["count"], 2);
    assert_eq!(report["log"]["lines_expected"], 20000);
    assert_eq!(report["log"]["lines_delivered"], 20000);
    assert_eq!(report["log"]["in_order"], true);
    assert!(report["baseline"]["spawns_per_second"].as_f64().unwrap() > 0.0);
    assert!(report["baseline"]["spawn_ms"].as_f64().unwrap() > 0.0);
    let all: Value = app.get("/jobs/list/?limit=1").await.json().await.unwrap();
    assert_eq!(
        all["total_count"],
        json!(20 + 5 + 3 + 2 + 1),
        "every job it made"
    );
    assert!(
        stderr(&out).contains("the 31 jobs it submits stay in the server's store"),
        "it says what it leaves behind, --json or not: {}",
        stderr(&out)
    );
}

/// The scale runs and the list queries of `rje bench`, small: their
/// counts only (speed is for docs/BENCHMARKS.md, never asserted).
#[tokio::test]
async fn bench_scale_runs_count_right() {
    let app = spawn_app_with(|s| s.worker.concurrency = 4).await;
    let out = run(
        &app,
        &[
            "bench",
            "--sleepers",
            "4",
            "--sleep-seconds",
            "2",
            "--subscribers",
            "3",
            "--subscriber-lines",
            "500",
            "--priority-backlog",
            "8",
            "--priority-samples",
            "2",
            "--json",
        ],
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("the report is JSON");
    assert_eq!(report["sleepers"]["jobs"], 4);
    assert_eq!(report["sleepers"]["started"], 4, "{report}");
    assert_eq!(report["sleepers"]["create_to_start"]["count"], 4);
    assert_eq!(report["subscribers"]["complete"], 3, "{report}");
    assert_eq!(report["subscribers"]["lines"], 500);
    let priority = &report["priority"];
    assert_eq!(
        priority["samples"].as_u64().unwrap() + priority["left_out"].as_u64().unwrap(),
        2,
        "{report}"
    );

    let out = run(&app, &["bench", "--list-queries", "--json"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let timings: Value = serde_json::from_str(&stdout(&out)).expect("the timings are JSON");
    let queries: Vec<_> = timings
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["query"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        queries.contains(&"ordering=-completed_at".to_owned()),
        "{queries:?}"
    );
    assert!(queries.contains(&"offset=500000".to_owned()), "{queries:?}");
}

/// A client whose reader went (`rje list | head -0`) ends quietly with
/// the status a shell gives a command killed by SIGPIPE, as other
/// command-line tools do: no panic, no backtrace.
#[tokio::test]
async fn a_client_whose_output_is_closed_ends_quietly() {
    let app = spawn_app().await;
    run(&app, &["submit", "echo one", "--wait"]).await;
    // A job that prints for two minutes: a client that streams it stops
    // when its reader goes, not when the job ends.
    let long = run(
        &app,
        &[
            "submit",
            "for i in $(seq 1 1200); do echo line-$i; sleep 0.1; done",
        ],
    )
    .await;
    let long = stdout(&long).trim().to_owned();
    for args in [vec!["list", "--json"], vec!["stream", long.as_str()]] {
        // A pipe whose read end is closed before the client writes a byte.
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        drop(read_end);
        // Spawned, not `output()`, which would capture stdout in a pipe of
        // its own.
        let client = rje(&app)
            .args(&args)
            .stdout(Stdio::from(write_end))
            .stderr(Stdio::piped())
            .spawn()
            .expect("the client starts");
        let output = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            client.wait_with_output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{args:?} went on after its reader went"))
        .expect("the client is waited for");
        assert_eq!(stderr(&output), "", "{args:?}: quietly");
        assert_eq!(code(&output), 141, "{args:?}");
    }
    run(&app, &["cancel", "--force", &long]).await;
}

/// `rje ARGS…` presenting `token` instead of the app's.
async fn run_as(app: &TestApp, token: &str, args: &[&str]) -> Output {
    let mut command = rje(app);
    command.env("RJE_TOKEN", token).args(args);
    tokio::time::timeout(DEADLINE, command.output())
        .await
        .expect("the client finishes")
        .expect("the client runs")
}

fn json_of(output: &Output) -> Value {
    assert_eq!(code(output), 0, "{}", stderr(output));
    serde_json::from_str(&stdout(output)).expect("JSON")
}

/// The audit trail's entries (as an admin sees them) once one matches
/// `wanted`: an entry may be written just after its answer.
async fn audit_entry(app: &TestApp, args: &[&str], wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let page = json_of(&run(app, &[&["audit", "--json"][..], args].concat()).await);
        if let Some(entry) = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| wanted(e))
        {
            return entry.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no such audit entry: {page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn whoami_on_a_server_without_tokens_names_nobody() {
    let app = spawn_app().await;
    let who = run(&app, &["whoami"]).await;
    assert_eq!(code(&who), 0, "{}", stderr(&who));
    assert_eq!(
        stdout(&who),
        "name: (none: the server runs without tokens)\nrole: admin\nhosts: every host\n"
    );
    let who = json_of(&run(&app, &["whoami", "--json"]).await);
    assert_eq!(who["name"], Value::Null);
    assert_eq!(who["auth"], false);
}

#[tokio::test]
async fn a_token_an_admin_made_submits_under_its_name_until_it_is_revoked() {
    let app = spawn_app_with(|s| s.api.tokens = vec!["root-secret".into()]).await;
    let admin = rje_api::configured_name("root-secret");
    let by_admin = run(&app, &["submit", "true"]).await;
    assert_eq!(code(&by_admin), 0, "{}", stderr(&by_admin));

    let created = run(&app, &["tokens", "create", "ci", "--role", "run"]).await;
    assert_eq!(code(&created), 0, "{}", stderr(&created));
    let secret = stdout(&created).trim_end().to_owned();
    assert!(secret.starts_with("rje_"), "{secret:?}");
    assert_eq!(stdout(&created), format!("{secret}\n"), "the secret alone");
    assert!(
        stderr(&created).contains("only this once"),
        "{}",
        stderr(&created)
    );

    let who = run_as(&app, &secret, &["whoami"]).await;
    assert_eq!(code(&who), 0, "{}", stderr(&who));
    assert_eq!(stdout(&who), "name: ci\nrole: run\nhosts: every host\n");
    let who = json_of(&run_as(&app, &secret, &["whoami", "--json"]).await);
    assert_eq!(who["name"], "ci");
    assert_eq!(who["role"], "run");
    assert_eq!(who["auth"], true);
    let mine = json_of(&run(&app, &["whoami", "--json"]).await);
    assert_eq!(mine["name"], admin.as_str());
    assert_eq!(mine["role"], "admin");

    let submitted = run_as(&app, &secret, &["submit", "echo by-ci", "--wait"]).await;
    assert_eq!(code(&submitted), 0, "{}", stderr(&submitted));
    assert_eq!(stdout(&submitted), "by-ci\n");
    let page = json_of(&run(&app, &["list", "--submitted-by", "ci", "--json"]).await);
    assert_eq!(page["total_count"], 1, "{page}");
    assert_eq!(page["jobs"][0]["submitted_by"], "ci");
    assert_eq!(page["jobs"][0]["command"], "echo by-ci");
    let page = json_of(&run(&app, &["list", "--submitted-by", &admin, "--json"]).await);
    assert_eq!(page["total_count"], 1, "{page}");
    assert_eq!(page["jobs"][0]["command"], "true");

    // A run token may not manage tokens: a 403, which exits 65.
    let refused = run_as(&app, &secret, &["tokens", "list"]).await;
    assert_eq!(code(&refused), 65, "{}", stderr(&refused));
    assert!(stderr(&refused).contains("admin"), "{}", stderr(&refused));

    let listed = json_of(&run(&app, &["tokens", "list", "--json"]).await);
    let ci = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .expect("ci is listed")
        .clone();
    assert_eq!(ci["role"], "run");
    assert!(ci.get("secret").is_none(), "{ci}");
    let table = run(&app, &["tokens", "list"]).await;
    assert_eq!(code(&table), 0, "{}", stderr(&table));
    let text = stdout(&table);
    assert!(text.contains("LAST USED") && text.contains("ci"), "{text}");
    assert!(text.contains("every host"), "{text}");
    assert!(!text.contains(&secret), "{text}");

    // The trail names the token made, by whom, and what it did.
    let made = audit_entry(&app, &[], |e| {
        e["method"] == "POST" && e["target"] == "ci" && e["status"] == 201
    })
    .await;
    assert_eq!(made["token"], admin.as_str());
    let route = made["route"].as_str().unwrap().to_owned();
    let by_route = json_of(&run(&app, &["audit", "--route", &route, "--json"]).await);
    assert!(
        by_route["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["route"] == route.as_str()),
        "{by_route}"
    );
    audit_entry(&app, &["--token-name", "ci"], |e| e["method"] == "POST").await;
    let by_ci = json_of(&run(&app, &["audit", "--token-name", "ci", "--json"]).await);
    assert!(
        by_ci["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["token"] == "ci"),
        "{by_ci}"
    );
    let table = run(&app, &["audit"]).await;
    assert_eq!(code(&table), 0, "{}", stderr(&table));
    assert!(
        stdout(&table).contains("ROUTE") && stdout(&table).contains(&route),
        "{}",
        stdout(&table)
    );

    let revoked = run(&app, &["tokens", "revoke", "ci"]).await;
    assert_eq!(code(&revoked), 0, "{}", stderr(&revoked));
    assert_eq!(stdout(&revoked), "revoked ci\n");
    let refused = run_as(&app, &secret, &["list"]).await;
    assert_eq!(code(&refused), 77, "revoked at once: {}", stderr(&refused));
    assert_eq!(code(&run(&app, &["tokens", "revoke", "ci"]).await), 66);
    let listed = json_of(&run(&app, &["tokens", "list", "--json"]).await);
    assert!(
        listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["name"] != "ci"),
        "{listed}"
    );
}

/// `rje tokens create --local`, with nothing of the caller's settings.
async fn create_local(dir: &std::path::Path, args: &[&str]) -> Output {
    let url = format!("sqlite://{}", dir.join("rje.db").display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_rje"));
    command
        .args(["tokens", "create"])
        .args(args)
        .args(["--local", "--database-url", &url])
        // No .env of the repository's, no settings of the caller's.
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env_remove("RJE_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("RJE_HOSTS_FILE")
        .env_remove("RJE_SSH_HOST")
        .env_remove("EC2_HOST")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(DEADLINE, command.output())
        .await
        .expect("the client finishes")
        .expect("the client runs")
}

#[tokio::test]
async fn a_local_token_is_the_first_admin_of_a_fresh_database() {
    let dir = tempfile::tempdir().unwrap();
    let created = create_local(dir.path(), &["first", "--role", "admin"]).await;
    assert_eq!(code(&created), 0, "{}", stderr(&created));
    let secret = stdout(&created).trim_end().to_owned();
    assert_eq!(stdout(&created), format!("{secret}\n"), "the secret alone");

    // Refused as the API refuses them: a name taken, a reserved name, a
    // scoped admin.
    let taken = create_local(dir.path(), &["first", "--role", "read"]).await;
    assert_eq!(code(&taken), 67, "{}", stderr(&taken));
    let reserved = create_local(dir.path(), &["env-12345678", "--role", "read"]).await;
    assert_eq!(code(&reserved), 65, "{}", stderr(&reserved));
    let scoped = create_local(dir.path(), &["boss", "--role", "admin", "--host", "local"]).await;
    assert_eq!(code(&scoped), 65, "{}", stderr(&scoped));

    {
        use rje_store::Access;
        let url = format!("sqlite://{}", dir.path().join("rje.db").display());
        let store = rje_store::SqliteStore::open(&url).await.unwrap();
        let tokens = store.tokens().await.unwrap();
        assert_eq!(tokens.len(), 1, "{tokens:?}");
        assert_eq!(tokens[0].name, "first");
        assert_eq!(tokens[0].role, rje_domain::Role::Admin);
    }

    // A server on that database asks for a token from the first request,
    // and takes this one.
    let mut app = spawn_app_in(dir, |_| {}).await;
    let refused = run(&app, &["list"]).await;
    assert_eq!(code(&refused), 77, "{}", stderr(&refused));
    app.token = Some(secret);
    let who = run(&app, &["whoami"]).await;
    assert_eq!(code(&who), 0, "{}", stderr(&who));
    assert_eq!(
        stdout(&who),
        "name: first\nrole: admin\nhosts: every host\n"
    );
    let submitted = run(&app, &["submit", "echo ok", "--wait"]).await;
    assert_eq!(code(&submitted), 0, "{}", stderr(&submitted));
    let made = run(&app, &["tokens", "create", "viewer", "--role", "read"]).await;
    assert_eq!(code(&made), 0, "{}", stderr(&made));
}

/// The client's faces of issue 22: a failure that runs again followed to
/// its last attempt, a schedule made and listed, a run again, a prune.
#[tokio::test]
async fn the_client_follows_retries_makes_schedules_runs_again_and_prunes() {
    let app = spawn_app().await;
    let counter = app.path("attempts");
    let command = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; echo attempt $n; [ $n -ge 2 ] && exit 4; exit 3",
        c = counter.display()
    );
    let streamed = run(
        &app,
        &[
            "submit",
            &command,
            "--retry-on-failure",
            "--max-retries",
            "2",
            "--stream",
        ],
    )
    .await;
    assert_eq!(
        code(&streamed),
        4,
        "the last attempt's code: {}",
        stderr(&streamed)
    );
    let out = stdout(&streamed);
    assert!(
        out.contains("attempt 1") && out.contains("attempt 2") && out.contains("attempt 3"),
        "every attempt's output: {out}"
    );

    let made = run(
        &app,
        &[
            "schedules",
            "create",
            "nightly",
            "echo nightly",
            "--cron",
            "0 3 * * *",
            "--tz",
            "Europe/Paris",
            "--json",
        ],
    )
    .await;
    assert_eq!(code(&made), 0, "{}", stderr(&made));
    let schedule: Value = serde_json::from_str(&stdout(&made)).expect("JSON");
    assert_eq!(
        schedule["next_fire_times"].as_array().map(Vec::len),
        Some(5)
    );
    let listed = run(&app, &["schedules", "list"]).await;
    assert!(stdout(&listed).contains("nightly"), "{}", stdout(&listed));
    let bad = run(
        &app,
        &[
            "schedules",
            "create",
            "broken",
            "true",
            "--cron",
            "every day",
        ],
    )
    .await;
    assert_ne!(code(&bad), 0);
    assert!(stderr(&bad).contains("cron"), "{}", stderr(&bad));

    let first = app.submit_command("echo again").await;
    app.wait_final(&first).await;
    let again = run(&app, &["retry", &first, "--stream"]).await;
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(stdout(&again), "again\n");
    assert_eq!(
        app.job(&first).await["retries"].as_array().map(Vec::len),
        Some(1)
    );

    let pruned = run(
        &app,
        &[
            "prune",
            "--before",
            "2099-01-01T00:00:00Z",
            "--force",
            "--json",
        ],
    )
    .await;
    assert_eq!(code(&pruned), 0, "{}", stderr(&pruned));
    let pruned: Value = serde_json::from_str(&stdout(&pruned)).expect("JSON");
    assert!(pruned["deleted"].as_u64().unwrap() >= 5, "{pruned}");
}
