//! Runs end to end: one command on many hosts, each a real OpenSSH sshd
//! on loopback (or this machine), some healthy, one with a host key rje
//! does not know, one refusing rje's key, one down. What each host's job
//! did is checked from the hosts' side where it matters: the jobs write
//! when they start and end, and `/proc` shows what a cancel left.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rje_ssh::{HostConfig, Inventory};
use rje_testkit::TestSshd;
use rje_testkit::sshd::{new_key, public_key};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with, ws_read_all};
use crate::ssh::host;

const DEADLINE: Duration = Duration::from_secs(60);

/// `name` on `sshd`, labelled `labels`.
fn labelled(sshd: &TestSshd, name: &str, labels: &[&str]) -> HostConfig {
    HostConfig {
        labels: labels.iter().map(|l| l.to_string()).collect(),
        max_concurrent_jobs: 64,
        ..host(sshd, name)
    }
}

/// Hosts of every kind: `ok` and `fails` on two healthy servers, `stranger`
/// on a server whose host key is not the one rje knows, `refused` whose
/// key the server refuses, `down` where nothing listens.
fn fleet(a: &TestSshd, b: &TestSshd) -> Vec<HostConfig> {
    let other_host_key = a.path("other_host_key");
    new_key(&other_host_key, "ed25519", &[]);
    let wrong_known = a.path("wrong_known_hosts");
    std::fs::write(
        &wrong_known,
        format!("[127.0.0.1]:{} {}\n", b.port, public_key(&other_host_key)),
    )
    .unwrap();
    let stranger_key = a.path("stranger_key");
    new_key(&stranger_key, "ed25519", &[]);
    let down_port = rje_testkit::free_port();
    vec![
        labelled(a, "ok", &["web", "eu"]),
        labelled(b, "fails", &["web", "us"]),
        HostConfig {
            known_hosts: wrong_known,
            ..labelled(b, "stranger", &["db"])
        },
        HostConfig {
            key: Some(stranger_key),
            ..labelled(a, "refused", &["db"])
        },
        HostConfig {
            port: down_port,
            ..labelled(a, "down", &["db"])
        },
    ]
}

async fn app_with(hosts: Vec<HostConfig>) -> TestApp {
    spawn_app_with(move |settings| {
        settings.inventory = Inventory {
            hosts,
            default_host: None,
        };
        settings.worker.concurrency = 64;
    })
    .await
}

async fn start_run(app: &TestApp, body: Value) -> Value {
    let response = app.post("/runs/", &body).await;
    let status = response.status().as_u16();
    let run: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{run}");
    run
}

async fn wait_run(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let run: Value = app.get(&format!("/runs/{id}/")).await.json().await.unwrap();
        if run["status"] != "Running" {
            return run;
        }
        assert!(Instant::now() < deadline, "the run did not end: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn by_host(run: &Value) -> BTreeMap<String, Value> {
    run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| (job["host"].as_str().unwrap().to_owned(), job.clone()))
        .collect()
}

fn outcomes(run: &Value) -> BTreeMap<String, String> {
    by_host(run)
        .into_iter()
        .map(|(host, job)| (host, job["outcome"].as_str().unwrap_or("-").to_owned()))
        .collect()
}

fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(host, outcome)| (host.to_string(), outcome.to_string()))
        .collect()
}

/// The command as each host reads it: `fails` exits 3 after a line on
/// stderr, this machine sleeps past the timeout, the rest succeed.
fn per_host_command(b: &TestSshd) -> String {
    format!(
        "case \"${{SSH_CONNECTION:-local}}\" in \
           *' {}') echo 'no disk' >&2; exit 3;; \
           local) sleep 30;; \
         esac; echo fine",
        b.port
    )
}

#[tokio::test]
async fn a_run_over_every_kind_of_host_tells_each_outcome_apart() {
    let (a, b) = (TestSshd::start(), TestSshd::start());
    let app = app_with(fleet(&a, &b)).await;
    let run = start_run(
        &app,
        json!({
            "command": per_host_command(&b),
            "hosts": ["ok", "fails", "stranger", "refused", "down", "local"],
            "timeout": 2,
        }),
    )
    .await;
    assert_eq!(run["status"], "Running");
    assert_eq!(
        run["hosts"],
        json!(["ok", "fails", "stranger", "refused", "down", "local"])
    );
    assert_eq!(run["max_parallel"], 10);
    assert_eq!(run["jobs"].as_array().unwrap().len(), 6);
    for job in run["jobs"].as_array().unwrap() {
        assert_eq!(job["run"], run["id"], "every job records its run");
        assert_eq!(job["outcome"], Value::Null, "no outcome before the end");
        // Each is an ordinary job.
        let own = app.job(job["id"].as_str().unwrap()).await;
        assert_eq!(own["run"], run["id"]);
    }
    let id = run["id"].as_str().unwrap();
    let done = wait_run(&app, id).await;
    assert_eq!(
        outcomes(&done),
        expected(&[
            ("ok", "Success"),
            ("fails", "Failed"),
            ("stranger", "Unreachable"),
            ("refused", "AuthFailed"),
            ("down", "Unreachable"),
            ("local", "TimedOut"),
        ]),
        "{done}"
    );
    let jobs = by_host(&done);
    assert_eq!(jobs["fails"]["exit_code"], 3);
    assert_eq!(jobs["ok"]["exit_code"], 0);
    assert!(
        jobs["stranger"]["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("host key"),
        "{}",
        jobs["stranger"]
    );
    assert!(
        jobs["refused"]["error"]
            .as_str()
            .unwrap()
            .contains("authentication"),
        "{}",
        jobs["refused"]
    );
    assert!(
        jobs["down"]["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{}",
        jobs["down"]
    );
    assert_eq!(done["status"], "Failed");
    assert_eq!(
        done["counts"],
        json!({"Success": 1, "Failed": 1, "TimedOut": 1, "Unreachable": 2, "AuthFailed": 1,
               "Cancelled": 0, "Skipped": 0, "Queued": 0, "Running": 0})
    );
    assert!(done["completed_at"].is_string());
    assert!(
        done["duration"].as_f64().unwrap() >= 2.0,
        "the timeout took 2 s"
    );

    // The list shows it, without its jobs; the job list filters by nothing new.
    let listed: Value = app.get("/runs/").await.json().await.unwrap();
    assert_eq!(listed["total_count"], 1);
    assert_eq!(listed["runs"][0]["id"], done["id"]);
    assert_eq!(listed["runs"][0]["counts"], done["counts"]);
    assert_eq!(listed["runs"][0]["jobs"], json!([]));

    // Run again: exactly the hosts that did not succeed, linked.
    let retry = app.post(&format!("/runs/{id}/retry/"), &json!({})).await;
    assert_eq!(retry.status(), 201);
    let again: Value = retry.json().await.unwrap();
    assert_eq!(again["retry_of"], done["id"]);
    let twice = app.post(&format!("/runs/{id}/retry/"), &json!({})).await;
    assert_eq!(twice.status(), 409, "one retry per run: retry the retry");
    assert_eq!(
        again["hosts"],
        json!(["fails", "stranger", "refused", "down", "local"])
    );
    for job in again["jobs"].as_array().unwrap() {
        let host = job["host"].as_str().unwrap();
        assert_eq!(
            job["retry_of"], jobs[host]["id"],
            "each job runs its host's job again"
        );
    }
    let again_done = wait_run(&app, again["id"].as_str().unwrap()).await;
    assert_eq!(again_done["counts"]["Success"], 0);
    assert_eq!(again_done["counts"]["Unreachable"], 2);
    // A run still going, or one where every host succeeded, is refused.
    let only_ok = start_run(&app, json!({"command": "true", "hosts": ["ok"]})).await;
    let only_ok = only_ok["id"].as_str().unwrap();
    wait_run(&app, only_ok).await;
    let refused = app
        .post(&format!("/runs/{only_ok}/retry/"), &json!({}))
        .await;
    assert_eq!(refused.status(), 409);
}

#[tokio::test]
async fn a_bad_target_is_refused_naming_it_and_nothing_is_queued() {
    let (a, b) = (TestSshd::start(), TestSshd::start());
    let app = app_with(fleet(&a, &b)).await;
    for (body, field, says) in [
        (
            json!({"command": "true", "hosts": ["ok", "nowhere"]}),
            "hosts",
            "nowhere",
        ),
        (
            json!({"command": "true", "labels": ["gpu"]}),
            "labels",
            "gpu",
        ),
        (
            json!({"command": "true", "labels": ["web", "db"]}),
            "labels",
            "every one",
        ),
        (
            json!({"command": "true", "hosts": []}),
            "hosts",
            "at least one",
        ),
        (json!({"command": "true"}), "hosts", "required"),
        (
            json!({"command": "true", "hosts": ["ok"], "max_failures": "150%"}),
            "max_failures",
            "percentage",
        ),
        (
            json!({"command": "true", "hosts": ["ok"], "max_parallel": 0}),
            "max_parallel",
            "from 1",
        ),
        (
            json!({"command": "true", "hosts": ["ok"], "host": "ok"}),
            "host",
            "not taken",
        ),
    ] {
        let response = app.post("/runs/", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        let detail = error["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["field"] == field)
            .unwrap_or_else(|| panic!("{body}: {error}"));
        assert!(
            detail["message"].as_str().unwrap().contains(says),
            "{body}: {error}"
        );
    }
    let jobs: Value = app.get("/jobs/list/").await.json().await.unwrap();
    assert_eq!(jobs["total_count"], 0);
    let runs: Value = app.get("/runs/").await.json().await.unwrap();
    assert_eq!(runs["total_count"], 0);
    // Labels resolve to every host carrying all of them, in name order.
    let run = start_run(&app, json!({"command": "true", "labels": ["web"]})).await;
    assert_eq!(run["hosts"], json!(["fails", "ok"]));
    assert_eq!(run["labels"], json!(["web"]));
    assert_eq!(app.get("/runs/nope/").await.status(), 404);
}

/// Start and end times of each job, as the hosts wrote them.
fn spans(log: &std::path::Path) -> Vec<(u128, u128)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut starts: HashMap<String, u128> = HashMap::new();
    let mut spans = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [what, who, at] = parts[..] else {
            panic!("a torn line: {line:?}");
        };
        let at: u128 = at.parse().unwrap();
        match what {
            "start" => {
                starts.insert(who.to_owned(), at);
            }
            "end" => spans.push((starts.remove(who).expect("a start before its end"), at)),
            other => panic!("{other}"),
        }
    }
    assert!(
        starts.is_empty(),
        "every job that started ended: {starts:?}"
    );
    spans
}

fn most_at_once(spans: &[(u128, u128)]) -> usize {
    let mut edges: Vec<(u128, i32)> = spans
        .iter()
        .flat_map(|(start, end)| [(*start, 1), (*end, -1)])
        .collect();
    // An end at the same instant as a start comes first.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test]
async fn max_parallel_is_kept_from_the_hosts_side_and_max_failures_skips_the_rest() {
    let (a, b) = (TestSshd::start(), TestSshd::start());
    let hosts: Vec<HostConfig> = (0..8)
        .map(|n| labelled(if n % 2 == 0 { &a } else { &b }, &format!("h{n}"), &["all"]))
        .collect();
    let app = app_with(hosts).await;
    let log = app.path("spans.log");
    let record = format!(
        "echo \"start $$ $(date +%s%N)\" >> {log}; sleep 0.3; echo \"end $$ $(date +%s%N)\" >> {log}",
        log = log.display()
    );
    let run = start_run(
        &app,
        json!({"command": record, "labels": ["all"], "max_parallel": 3}),
    )
    .await;
    let done = wait_run(&app, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "Success", "{done}");
    let spans = spans(&log);
    assert_eq!(spans.len(), 8, "every host ran once");
    let most = most_at_once(&spans);
    assert!(
        most <= 3,
        "max_parallel 3, yet {most} ran at once: {spans:?}"
    );
    assert!(most >= 2, "the hosts ran side by side: {spans:?}");

    // One at a time, one failure tolerated: the second failure skips the
    // hosts not started, which never run.
    let failures = app.path("failures.log");
    let fail = format!("echo \"ran $$\" >> {}; exit 1", failures.display());
    let run = start_run(
        &app,
        json!({"command": fail, "labels": ["all"], "max_parallel": 1, "max_failures": 1}),
    )
    .await;
    let done = wait_run(&app, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "Failed");
    assert_eq!(done["counts"]["Failed"], 2);
    assert_eq!(done["counts"]["Skipped"], 6);
    let ran = std::fs::read_to_string(&failures).unwrap();
    assert_eq!(ran.lines().count(), 2, "skipped hosts never ran: {ran}");
    for job in done["jobs"].as_array().unwrap().iter().skip(2) {
        assert_eq!(job["outcome"], "Skipped");
        assert_eq!(job["status"], "Cancelled");
        assert_eq!(job["started_at"], Value::Null);
        assert!(
            job["error"].as_str().unwrap().starts_with("skipped"),
            "{job}"
        );
    }
    // stop_on_first_failure: the first failure is one too many.
    let run = start_run(
        &app,
        json!({"command": "exit 1", "labels": ["all"], "max_parallel": 1, "stop_on_first_failure": true}),
    )
    .await;
    let done = wait_run(&app, run["id"].as_str().unwrap()).await;
    assert_eq!(
        (
            done["counts"]["Failed"].as_u64(),
            done["counts"]["Skipped"].as_u64()
        ),
        (Some(1), Some(7))
    );
}

#[tokio::test]
async fn a_cancelled_run_leaves_no_process_on_any_host() {
    let (a, b) = (TestSshd::start(), TestSshd::start());
    let hosts: Vec<HostConfig> = (0..6)
        .map(|n| labelled(if n % 2 == 0 { &a } else { &b }, &format!("h{n}"), &["all"]))
        .collect();
    let app = app_with(hosts).await;
    let marker = format!("61.{}", std::process::id());
    let run = start_run(
        &app,
        json!({"command": format!("sleep {marker} & sleep {marker}; wait"), "labels": ["all"], "max_parallel": 3}),
    )
    .await;
    let id = run["id"].as_str().unwrap();
    let deadline = Instant::now() + DEADLINE;
    while rje_testkit::processes_running(&["sleep", &marker]).len() < 6 {
        assert!(Instant::now() < deadline, "three hosts' jobs did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = app.post(&format!("/runs/{id}/cancel/"), &json!({})).await;
    assert!(
        matches!(response.status().as_u16(), 200 | 202),
        "{}",
        response.status()
    );
    let done = wait_run(&app, id).await;
    assert_eq!(done["status"], "Cancelled", "{done}");
    assert_eq!(done["counts"]["Cancelled"], 6);
    assert!(done["cancel_requested"].as_bool().unwrap());
    let started = done["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|job| !job["started_at"].is_null())
        .count();
    assert_eq!(started, 3, "the queued ones never started");
    assert!(
        rje_testkit::processes_running(&["sleep", &marker]).is_empty(),
        "a cancelled run leaves nothing running"
    );
    let again = app.post(&format!("/runs/{id}/cancel/"), &json!({})).await;
    assert_eq!(
        again.status(),
        409,
        "a run that ended has nothing to cancel"
    );
}

#[tokio::test]
async fn fifty_hosts_each_deliver_their_whole_output_over_the_runs_websocket() {
    let (a, b) = (TestSshd::start_with(64), TestSshd::start_with(64));
    let hosts: Vec<HostConfig> = (0..50)
        .map(|n| {
            labelled(
                if n % 2 == 0 { &a } else { &b },
                &format!("web-{n:02}"),
                &["web"],
            )
        })
        .collect();
    let app = app_with(hosts).await;
    let lines = 2000;
    let run = start_run(
        &app,
        json!({"command": format!("seq 1 {lines}; echo done >&2"), "labels": ["web"], "max_parallel": 50}),
    )
    .await;
    let id = run["id"].as_str().unwrap();
    let session = ws_read_all(app.ws_url(&format!("/ws/runs/{id}/?output=true"))).await;
    assert_eq!(
        session.close,
        Some(1000.into()),
        "a normal close once the run is final"
    );
    let last = session.messages.last().unwrap();
    assert_eq!(last["type"], "run");
    assert_eq!(last["status"], "Success", "{last}");
    assert_eq!(last["counts"]["Success"], 50);

    let mut stdout: HashMap<String, String> = HashMap::new();
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    let mut finals: HashMap<String, usize> = HashMap::new();
    for (place, message) in session.messages.iter().enumerate() {
        match message["type"].as_str().unwrap() {
            "output" => {
                let host = message["host"].as_str().unwrap().to_owned();
                assert!(
                    !finals.contains_key(&host),
                    "output of {host} after its final status"
                );
                let seq = message["seq"].as_i64().unwrap();
                let previous = last_seq.insert(host.clone(), seq).unwrap_or(0);
                assert!(seq > previous, "{host}: seq {seq} after {previous}");
                if message["stream"] == "stdout" {
                    stdout
                        .entry(host)
                        .or_default()
                        .push_str(message["log"].as_str().unwrap());
                }
            }
            "job" if message["status"] == "Success" => {
                finals.insert(message["host"].as_str().unwrap().to_owned(), place);
            }
            _ => {}
        }
    }
    let whole: String = (1..=lines).map(|n| format!("{n}\n")).collect();
    assert_eq!(finals.len(), 50, "every host's final status");
    assert_eq!(stdout.len(), 50, "every host's output");
    for (host, text) in &stdout {
        assert!(
            text == &whole,
            "{host}: {} bytes of {}",
            text.len(),
            whole.len()
        );
    }
}

#[tokio::test]
async fn the_run_command_follows_live_and_recaps_with_the_exit_code_for_failed_hosts() {
    let (a, b) = (TestSshd::start(), TestSshd::start());
    let app = app_with(fleet(&a, &b)).await;
    let rje = env!("CARGO_BIN_EXE_rje");
    let url = app.url("");
    // On a terminal (script(1) gives it one): the live view, then the recap.
    let shell = format!(
        "RJE_URL={url} {rje} run 'echo fine; if [ \"${{SSH_CONNECTION##* }}\" = {port} ]; then echo disk full >&2; exit 3; fi' --hosts ok,fails,down",
        port = b.port
    );
    let out = tokio::process::Command::new("script")
        .args(["-qefc", &shell, "/dev/null"])
        .env("TERM", "dumb")
        .env("COLUMNS", "120")
        .env("XDG_CONFIG_HOME", app.path("config"))
        .env_remove("RJE_TOKEN")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert_eq!(out.status.code(), Some(3), "some hosts failed: {text}");
    assert!(text.contains("RUN RECAP"), "{text}");
    assert!(
        text.contains("Success=1") && text.contains("Failed=1") && text.contains("Unreachable=1"),
        "{text}"
    );
    let recap = &text[text.find("RUN RECAP").unwrap()..];
    assert!(
        recap.contains("fails") && recap.contains("exit 3"),
        "{recap}"
    );
    assert!(
        recap.contains("disk full"),
        "the last lines of its stderr: {recap}"
    );
    assert!(
        recap.contains("down") && recap.contains("cannot connect"),
        "{recap}"
    );

    // Piped: JSON lines, the last the whole run.
    let out = tokio::process::Command::new(rje)
        .args(["run", "echo hi", "--hosts", "ok", "--output"])
        .env("RJE_URL", &url)
        .env("XDG_CONFIG_HOME", app.path("config"))
        .env_remove("RJE_TOKEN")
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|m| m["type"] == "output" && m["log"] == "hi\n" && m["host"] == "ok"),
        "{lines:?}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["status"], "Success");
    assert_eq!(last["counts"]["Success"], 1);
}
