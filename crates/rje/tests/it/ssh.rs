//! Jobs on an SSH host, end to end: the real app, a real OpenSSH sshd on
//! loopback, and the host checked with `ps` for what a job left behind.

use std::time::Duration;

use rje::Settings;
use rje_ssh::{HostConfig, Inventory};
use rje_testkit::TestSshd;
use rje_testkit::sshd::new_key;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, id_of, live_processes_in_group, scrape, seq_text, spawn_app_with, total,
};

pub fn host(sshd: &TestSshd, name: &str) -> HostConfig {
    HostConfig {
        port: sshd.port,
        user: sshd.user.clone(),
        key: Some(sshd.client_key.clone()),
        passphrase: None,
        agent: None,
        known_hosts: sshd.known_hosts.clone(),
        labels: vec!["test".into()],
        // The plain way: durable_ssh.rs tests the durable one.
        durable: false,
        ..HostConfig::new(name, "127.0.0.1")
    }
}

/// `box` (the default) and `broken`, whose key the server refuses, both on
/// `sshd`.
fn box_and_broken(sshd: &TestSshd) -> Inventory {
    let stranger = sshd.path("stranger");
    new_key(&stranger, "ed25519", &[]);
    let mut broken = host(sshd, "broken");
    broken.key = Some(stranger);
    broken.durable = true;
    Inventory {
        hosts: vec![host(sshd, "box"), broken],
        default_host: Some("box".into()),
    }
}

/// An app whose default host is `box` on `sshd`.
async fn app_on(sshd: &TestSshd, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let inventory = Inventory {
        hosts: vec![host(sshd, "box")],
        default_host: Some("box".into()),
    };
    spawn_app_with(move |settings| {
        settings.inventory = inventory;
        settings.worker.concurrency = 64;
        configure(settings);
    })
    .await
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn jobs_run_on_the_host_they_name_and_local_stays_local() {
    let sshd = TestSshd::start();
    let app = app_on(&sshd, |_| {}).await;

    let remote = app
        .submit(
            json!({ "command": "echo \"$SSH_CONNECTION\" | cut -d' ' -f4; echo oops >&2; exit 4" }),
        )
        .await;
    assert_eq!(remote["host"], "box", "no host means the default host");
    let job = app.wait_final(&id_of(&remote)).await;
    assert_eq!(job["status"], "Failed");
    assert_eq!(job["exit_code"], 4);
    assert_eq!(
        job["stdout"],
        format!("{}\n", sshd.port),
        "ran through sshd"
    );
    assert_eq!(job["stderr"], "oops\n");
    assert!(
        job["remote_process_id"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .is_ok()
    );

    let local = app
        .submit(json!({ "command": "echo \"${SSH_CONNECTION:-none}\"", "host": "local" }))
        .await;
    let job = app.wait_final(&id_of(&local)).await;
    assert_eq!(
        (job["status"].as_str(), job["stdout"].as_str()),
        (Some("Success"), Some("none\n"))
    );

    let big = app
        .submit(json!({ "command": "seq 1 100000", "host": "box" }))
        .await;
    let job = app.wait_final(&id_of(&big)).await;
    assert_eq!(job["status"], "Success");
    assert!(
        job["stdout"].as_str() == Some(seq_text(100_000).as_str()),
        "100,000 lines in order"
    );

    let with_parameters = app
        .submit(json!({
            "command": "pwd; echo \"$WHO\"",
            "host": "box",
            "parameters": { "env": { "WHO": "rje's job" }, "cwd": "/tmp" },
        }))
        .await;
    let job = app.wait_final(&id_of(&with_parameters)).await;
    assert_eq!(job["stdout"], "/tmp\nrje's job\n");
}

#[tokio::test]
async fn an_unknown_host_is_refused_at_submit_and_nothing_is_stored() {
    let sshd = TestSshd::start();
    let app = app_on(&sshd, |_| {}).await;
    let response = app
        .post("/jobs/", &json!({ "command": "true", "host": "nowhere" }))
        .await;
    let (status, body) = json_of(response).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"][0]["field"], "host", "{body}");
    let (_, list) = json_of(app.get("/jobs/list/").await).await;
    assert_eq!(list["total_count"], 0);
}

#[tokio::test]
async fn hosts_are_listed_and_checked() {
    let sshd = TestSshd::start();
    let inventory = box_and_broken(&sshd);
    let app = spawn_app_with(move |settings| {
        settings.inventory = inventory;
        settings.api.tokens = vec!["secret".into()];
    })
    .await;

    let (status, _) = json_of(app.client.get(app.url("/hosts/")).send().await.unwrap()).await;
    assert_eq!(status, 401, "the host list needs a token");

    let (status, body) = json_of(app.get("/hosts/").await).await;
    assert_eq!(status, 200);
    let hosts = body["hosts"].as_array().unwrap();
    let names: Vec<_> = hosts.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["local", "box", "broken"]);
    assert_eq!(hosts[1]["kind"], "ssh");
    assert_eq!(hosts[1]["default"], true);
    assert_eq!(hosts[1]["port"], sshd.port);
    assert_eq!(hosts[1]["labels"], json!(["test"]));
    assert_eq!(hosts[1]["durable"], false, "as its settings say");
    assert_eq!(hosts[1]["health"]["state"], "unknown", "not contacted yet");

    let (status, report) = json_of(app.post("/hosts/box/check/", &json!({})).await).await;
    assert_eq!(status, 200);
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["latency_ms"].as_f64().unwrap() > 0.0);

    let (status, report) = json_of(app.post("/hosts/broken/check/", &json!({})).await).await;
    assert_eq!(status, 200);
    assert_eq!(report["ok"], false);
    assert_eq!(report["stage"], "auth");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("refused every key"),
        "{report}"
    );

    let (status, _) = json_of(app.post("/hosts/nowhere/check/", &json!({})).await).await;
    assert_eq!(status, 404);

    let (_, body) = json_of(app.get("/hosts").await).await;
    let states: Vec<_> = body["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["health"]["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["up", "up", "down"]);
    assert_eq!(body["hosts"][2]["health"]["connect_failures"], 1);

    // The pools as Prometheus sees them: SSH hosts only.
    let text = app.get("/metrics").await.text().await.unwrap();
    let samples = scrape(&text);
    assert_eq!(
        total(
            &samples,
            "rje_ssh_connect_failures_total",
            &["host=\"broken\""]
        ),
        1.0
    );
    assert!(samples.contains_key("rje_ssh_connections{host=\"box\"}"));
    assert!(samples.contains_key("rje_ssh_channels_in_use{host=\"box\"}"));
    assert!(
        !samples
            .keys()
            .any(|k| k.contains("host=\"local\"") && k.starts_with("rje_ssh"))
    );
}

#[tokio::test]
async fn timeout_and_cancel_leave_no_process_on_the_host() {
    let sshd = TestSshd::start();
    let app = app_on(&sshd, |_| {}).await;

    let timed = app
        .submit(json!({ "command": "sleep 300 & sleep 300; wait", "timeout": 1 }))
        .await;
    let job = app.wait_final(&id_of(&timed)).await;
    assert_eq!(job["status"], "Failed");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .starts_with("timed out after 1"),
        "{job}"
    );
    let pgid = job["remote_process_id"].as_str().unwrap().to_owned();
    assert!(live_processes_in_group(&pgid).is_empty());

    let long = app
        .submit(json!({ "command": "sleep 300 & sleep 300; wait" }))
        .await;
    let id = id_of(&long);
    let started = app.wait_started(&id).await;
    let pgid = started["remote_process_id"].as_str().unwrap().to_owned();
    assert!(
        !live_processes_in_group(&pgid).is_empty(),
        "running on the host"
    );
    let response = app.cancel(&id).await;
    assert_eq!(response.status(), 200);
    let job = app.wait_final(&id).await;
    assert_eq!(job["status"], "Cancelled");
    assert!(
        live_processes_in_group(&pgid).is_empty(),
        "the whole group is gone"
    );
}

#[tokio::test]
async fn fifty_concurrent_jobs_run_on_one_host() {
    let sshd = TestSshd::start();
    let app = app_on(&sshd, |_| {}).await;
    let mut ids = Vec::new();
    for n in 0..50 {
        let job = app
            .submit(json!({ "command": format!("sleep 1; echo job-{n}") }))
            .await;
        ids.push(id_of(&job));
    }
    for (n, id) in ids.iter().enumerate() {
        let job = app.wait_final(id).await;
        assert_eq!(job["status"], "Success", "{job}");
        assert_eq!(job["stdout"], format!("job-{n}\n"));
    }
}

#[tokio::test]
async fn a_wrong_key_is_retried_then_fails_with_the_reason() {
    let sshd = TestSshd::start();
    let stranger = sshd.path("stranger");
    new_key(&stranger, "ed25519", &[]);
    let mut wrong = host(&sshd, "box");
    wrong.key = Some(stranger);
    let app = spawn_app_with(move |settings| {
        settings.inventory = Inventory {
            hosts: vec![wrong],
            default_host: Some("box".into()),
        };
    })
    .await;
    let job = app
        .submit(json!({ "command": "echo never", "max_retries": 2 }))
        .await;
    let job = app.wait_final(&id_of(&job)).await;
    assert_eq!(job["status"], "Failed");
    assert_eq!(job["attempts"], 3, "the first try and two retries: {job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("authentication as"), "{error}");
    assert!(error.contains("refused every key"), "{error}");
    assert_eq!(job["stdout"], "");
}

#[tokio::test]
async fn jobs_that_could_not_start_while_sshd_was_down_run_when_it_is_back() {
    let mut sshd = TestSshd::start();
    let app = app_on(&sshd, |settings| {
        settings.worker.retry_base = Duration::from_millis(500);
    })
    .await;
    // A job running when sshd goes: its connection drops, and rje
    // reconnects once sshd is back to kill what the job left.
    let running = app.submit(json!({ "command": "sleep 300" })).await;
    let running = id_of(&running);
    let started = app.wait_started(&running).await;
    let pgid = started["remote_process_id"].as_str().unwrap().to_owned();

    sshd.halt();
    let mut ids = Vec::new();
    for n in 0..5 {
        let job = app
            .submit(json!({ "command": format!("echo back-{n}"), "max_retries": 5 }))
            .await;
        ids.push(id_of(&job));
    }
    // Each new job fails to connect and waits for a retry.
    for id in &ids {
        app.wait_for(id, "waiting to retry", |job| {
            job["status"] == "Queued" && job["attempts"].as_u64() >= Some(1)
        })
        .await;
    }
    sshd.resume();

    for (n, id) in ids.iter().enumerate() {
        let job = app.wait_final(id).await;
        assert_eq!(job["status"], "Success", "{job}");
        assert_eq!(job["stdout"], format!("back-{n}\n"));
        assert!(job["attempts"].as_u64() >= Some(2), "{job}");
    }
    let lost = app.wait_final(&running).await;
    assert_eq!(lost["status"], "Failed");
    let error = lost["error"].as_str().unwrap();
    assert!(error.contains("lost the connection to box"), "{error}");
    assert!(error.contains("its process group was killed"), "{error}");
    assert!(live_processes_in_group(&pgid).is_empty());
}

/// A hosts file for `sshd`, naming it `box` and making it the default.
fn hosts_file(sshd: &TestSshd) -> std::path::PathBuf {
    hosts_file_with(sshd, "")
}

/// The same, with `more` settings for `box`.
pub fn hosts_file_with(sshd: &TestSshd, more: &str) -> std::path::PathBuf {
    let path = sshd.path("hosts.toml");
    std::fs::write(
        &path,
        format!(
            "default = \"box\"\n\
             [defaults]\n\
             user = \"{user}\"\n\
             known_hosts = \"{known}\"\n\
             [hosts.box]\n\
             address = \"127.0.0.1\"\n\
             port = {port}\n\
             key = \"{key}\"\n\
             max_concurrent_jobs = 32\n\
             labels = [\"loopback\"]\n\
             {more}\n",
            user = sshd.user,
            known = sshd.known_hosts.display(),
            port = sshd.port,
            key = sshd.client_key.display(),
        ),
    )
    .unwrap();
    path
}

fn rje_binary(dir: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rje"));
    command
        .env_remove("RJE_API_TOKENS")
        .env_remove("RJE_SSH_HOST")
        .env_remove("EC2_HOST")
        .env_remove("RJE_REDIS_URL")
        .env_remove("RJE_TOKEN")
        .env_remove("RJE_CONFIG")
        .env_remove("SSH_AUTH_SOCK")
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("RJE_STATE_DIR", dir.join("rje-state"))
        .env("RJE_BIND", "127.0.0.1:0")
        .env(
            "RJE_DATABASE_URL",
            format!("sqlite://{}", dir.join("rje.db").display()),
        )
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

async fn answer(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn serve_reads_the_hosts_file_and_refuses_a_bad_one() {
    use tokio::io::AsyncBufReadExt;

    let sshd = TestSshd::start();
    let dir = tempfile::tempdir().unwrap();
    let mut child = rje_binary(dir.path())
        .arg("serve")
        .env("RJE_HOSTS_FILE", hosts_file(&sshd))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let base = line.strip_prefix("rje listening on ").unwrap().to_owned();
    let client = reqwest::Client::new();
    let hosts = answer(client.get(format!("{base}/hosts/"))).await;
    assert_eq!(hosts["hosts"][1]["name"], "box");
    assert_eq!(hosts["hosts"][1]["default"], true);
    assert_eq!(hosts["hosts"][1]["max_concurrent_jobs"], 32);
    let job = answer(
        client
            .post(format!("{base}/jobs/"))
            .json(&json!({ "command": "echo from-the-file" })),
    )
    .await;
    assert_eq!(job["host"], "box");
    let id = id_of(&job);
    let deadline = tokio::time::Instant::now() + crate::helpers::DEADLINE;
    loop {
        let job = answer(client.get(format!("{base}/jobs/{id}/"))).await;
        if job["status"] == "Success" {
            assert_eq!(job["stdout"], "from-the-file\n");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill().await;

    let bad = sshd.path("bad.toml");
    std::fs::write(&bad, "[hosts.box]\nadress = \"127.0.0.1\"\n").unwrap();
    let out = rje_binary(dir.path())
        .arg("serve")
        .env("RJE_HOSTS_FILE", &bad)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("adress"), "{stderr}");
}

#[tokio::test]
async fn bench_runs_on_an_ssh_host_beside_the_raw_channel_rate() {
    let sshd = TestSshd::start();
    let app = app_on(&sshd, |_| {}).await;
    let out = rje_binary(app.dir.path())
        .env("RJE_URL", app.url(""))
        .env("RJE_HOSTS_FILE", hosts_file(&sshd))
        .args(crate::helpers::SMALL_BENCH)
        .args(["--host", "box"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["throughput"]["succeeded"], 20, "{report}");
    assert_eq!(report["log"]["lines_delivered"], 20000);
    assert_eq!(report["log"]["in_order"], true);
    let ssh = &report["baseline"]["ssh"];
    assert!(
        ssh["channels_per_second"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(ssh["exec_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(ssh["seq_bytes"], seq_text(20000).len());
    let (_, list) = json_of(app.get("/jobs/list/?host=box&limit=1").await).await;
    assert_eq!(
        list["total_count"],
        20 + 5 + 3 + 2 + 1,
        "every job ran on box"
    );
}

#[tokio::test]
async fn the_client_lists_and_checks_hosts() {
    let sshd = TestSshd::start();
    let inventory = box_and_broken(&sshd);
    let app = spawn_app_with(move |settings| settings.inventory = inventory).await;
    let client = |args: &[&str]| {
        let mut command = rje_binary(app.dir.path());
        command.env("RJE_URL", app.url("")).args(args);
        command
    };

    let out = client(&["hosts"]).output().await.unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("box *"), "{table}");
    assert!(
        table.contains(&format!("{}@127.0.0.1:{}", sshd.user, sshd.port)),
        "{table}"
    );
    assert!(
        table.contains("local") && table.contains("broken"),
        "{table}"
    );
    let line_of = |name: &str| {
        table
            .lines()
            .find(|line| line.contains(name))
            .unwrap_or_default()
    };
    assert!(table.contains("DURABLE"), "{table}");
    assert!(line_of("broken").contains(" yes "), "{table}");
    assert!(line_of("box *").contains(" no "), "{table}");

    let out = client(&["hosts", "--json"]).output().await.unwrap();
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["hosts"].as_array().unwrap().len(), 3);

    let out = client(&["hosts", "check", "box"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("box: ok in "));

    let out = client(&["hosts", "check", "broken"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(69), "a failed check exits 69");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken: failed at auth: authentication as"),
        "{stderr}"
    );

    let out = client(&["hosts", "check", "nowhere"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(66));
    let out = client(&["hosts", "check", "../jobs"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(66), "not a name: never a path");
}
