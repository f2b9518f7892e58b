//! Access control end to end: each role against every route, scopes over
//! REST and both WebSockets, the audit trail, secrets kept out of sight,
//! and servers without tokens as before.

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

const ADMIN: &str = "root-secret";

/// Each route's least role, as the rules give it. A route the
/// server serves that is missing here fails the test, and so does one
/// that answers a role otherwise.
const RULES: &[(&str, &str, &str)] = &[
    ("GET", "/jobs", "read"),
    ("POST", "/jobs", "run"),
    ("GET", "/jobs/list", "read"),
    ("GET", "/jobs/stats", "read"),
    ("GET", "/jobs/{id}", "read"),
    ("PUT", "/jobs/{id}", "run"),
    ("PATCH", "/jobs/{id}", "run"),
    ("DELETE", "/jobs/{id}", "admin"),
    ("POST", "/jobs/{id}/cancel", "run"),
    ("POST", "/jobs/{id}/retry", "run"),
    ("POST", "/jobs/prune", "admin"),
    ("GET", "/schedules", "read"),
    ("POST", "/schedules", "run"),
    ("GET", "/schedules/{id}", "read"),
    ("PUT", "/schedules/{id}", "run"),
    ("PATCH", "/schedules/{id}", "run"),
    ("DELETE", "/schedules/{id}", "run"),
    ("POST", "/schedules/{id}/pause", "run"),
    ("POST", "/schedules/{id}/resume", "run"),
    ("GET", "/runs", "read"),
    ("POST", "/runs", "run"),
    ("GET", "/runs/{id}", "read"),
    ("POST", "/runs/{id}/cancel", "run"),
    ("POST", "/runs/{id}/retry", "run"),
    ("GET", "/jobs/{id}/logs", "read"),
    ("GET", "/workers", "read"),
    ("GET", "/hosts", "read"),
    ("POST", "/hosts/{name}/check", "run"),
    ("GET", "/metrics", "read"),
    ("GET", "/whoami", "read"),
    ("GET", "/tokens", "admin"),
    ("POST", "/tokens", "admin"),
    ("DELETE", "/tokens/{name}", "admin"),
    ("GET", "/audit", "admin"),
    ("GET", "/ws/jobs", "read"),
    ("GET", "/ws/jobs/{id}", "read"),
    ("GET", "/ws/runs/{id}", "read"),
    ("GET", "/openapi.json", "read"),
    ("GET", "/docs", "read"),
    ("GET", "/docs/{*file}", "read"),
];

/// Routes no token is asked for.
const OPEN: &[&str] = &["/health", "/ready"];

fn rank(role: &str) -> u8 {
    match role {
        "read" => 0,
        "run" => 1,
        "admin" => 2,
        other => panic!("no role {other}"),
    }
}

async fn app_with_admin(configure: impl FnOnce(&mut rje::Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.api.tokens = vec![ADMIN.into()];
        configure(s);
    })
    .await
}

/// Makes a token as the admin; its secret.
async fn make_token(app: &TestApp, body: Value) -> String {
    let response = app.post("/tokens/", &body).await;
    assert_eq!(response.status(), 201, "{body}");
    let created: Value = response.json().await.unwrap();
    created["secret"].as_str().expect("a secret").to_owned()
}

async fn call(
    app: &TestApp,
    secret: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, app.url(path))
        .bearer_auth(secret);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

async fn submit_as(app: &TestApp, secret: &str, body: Value) -> Value {
    let response = call(app, secret, Method::POST, "/jobs/", Some(body.clone())).await;
    assert_eq!(response.status(), 201, "{body}");
    response.json().await.unwrap()
}

/// A 403 whose first detail names `missing`.
async fn assert_denied(response: reqwest::Response, missing: &str, what: &str) {
    assert_eq!(response.status(), 403, "{what}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["details"][0]["field"], missing, "{what}: {body}");
    assert!(body["error"].is_string(), "{what}: {body}");
}

#[tokio::test]
async fn each_role_is_held_to_each_routes_rule() {
    let app = app_with_admin(|s| {
        s.run_worker = false;
        s.api.public_docs = false;
        s.api.public_metrics = false;
    })
    .await;
    // Every route the server describes, and those it cannot, has a rule.
    let document: Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut served: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| !OPEN.contains(&path.as_str()))
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|key| matches!(key.as_str(), "get" | "post" | "put" | "patch" | "delete"))
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    for path in [
        "/ws/jobs",
        "/ws/jobs/{id}",
        "/ws/runs/{id}",
        "/openapi.json",
        "/docs",
        "/docs/{*file}",
    ] {
        served.insert(("GET".into(), path.into()));
    }
    let ruled: BTreeSet<(String, String)> = RULES
        .iter()
        .map(|(method, path, _)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(served, ruled, "every route has a rule here, and only those");

    let reader = make_token(&app, json!({"name": "reader", "role": "read"})).await;
    let runner = make_token(&app, json!({"name": "runner", "role": "run"})).await;
    for (role, secret) in [
        ("read", reader.as_str()),
        ("run", &runner),
        ("admin", ADMIN),
    ] {
        for (method, route, least) in RULES {
            // A job of the token's own, so that only the role decides.
            let owner = if role == "read" { ADMIN } else { secret };
            let job = submit_as(&app, owner, json!({"command": "true"})).await;
            let path = route
                .replace("{id}", &id_of(&job))
                .replace("{*file}", "index.css")
                .replace(
                    "{name}",
                    if route.starts_with("/tokens") {
                        "nobody"
                    } else {
                        "local"
                    },
                );
            let body = matches!(*method, "POST" | "PUT" | "PATCH").then(|| json!({}));
            let response = call(&app, secret, method.parse().unwrap(), &path, body).await;
            let what = format!("{role} {method} {path}");
            if rank(role) >= rank(least) {
                let status = response.status();
                assert!(
                    status != 401 && status != 403 && !status.is_server_error(),
                    "{what}: {status} {}",
                    response.text().await.unwrap()
                );
            } else {
                assert_denied(response, "role", &what).await;
            }
        }
    }
    // Refusals and recorded changes are counted.
    let text = app.get("/metrics").await.text().await.unwrap();
    let samples = scrape(&text);
    assert!(
        total(&samples, "rje_api_denied_total", &["reason=\"role\""]) >= 13.0,
        "{text}"
    );
    assert!(
        total(&samples, "rje_audit_entries_total", &[]) >= 1.0,
        "{text}"
    );
}

/// A server with `local`, `web-1` (labelled `web`) and `db-1`; jobs stay
/// queued (no worker), and the SSH hosts are never reached.
async fn three_host_app() -> TestApp {
    let mut web = rje_ssh::HostConfig::new("web-1", "127.0.0.1");
    web.labels = vec!["web".into()];
    let db = rje_ssh::HostConfig::new("db-1", "127.0.0.1");
    app_with_admin(move |s| {
        s.run_worker = false;
        s.inventory = rje_ssh::Inventory {
            hosts: vec![web, db],
            default_host: None,
        };
    })
    .await
}

#[tokio::test]
async fn a_scoped_token_runs_on_sees_and_changes_only_its_hosts_jobs() {
    let app = three_host_app().await;
    let team = make_token(
        &app,
        json!({"name": "team", "role": "run", "labels": ["web"]}),
    )
    .await;
    let admin_web =
        id_of(&submit_as(&app, ADMIN, json!({"command": "true", "host": "web-1"})).await);
    let admin_db = id_of(&submit_as(&app, ADMIN, json!({"command": "true", "host": "db-1"})).await);
    let admin_local = id_of(&submit_as(&app, ADMIN, json!({"command": "true"})).await);

    // Runs only on its hosts, local included only when named.
    for host in ["db-1", "local"] {
        let response = call(
            &app,
            &team,
            Method::POST,
            "/jobs/",
            Some(json!({"command": "true", "host": host})),
        )
        .await;
        assert_denied(response, "host", host).await;
    }
    let own = submit_as(&app, &team, json!({"command": "true", "host": "web-1"})).await;
    assert_eq!(own["submitted_by"], "team");
    let own = id_of(&own);

    // Sees only its hosts' jobs: lists, single jobs, logs.
    let page: Value = call(&app, &team, Method::GET, "/jobs/?output=none", None)
        .await
        .json()
        .await
        .unwrap();
    let listed: BTreeSet<String> = page["jobs"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(listed, BTreeSet::from([admin_web.clone(), own.clone()]));
    assert_eq!(page["total_count"], 2);
    let response = call(&app, &team, Method::GET, "/jobs/?host=db-1", None).await;
    assert_denied(response, "host", "a list of another host").await;
    for hidden in [&admin_db, &admin_local] {
        for path in [format!("/jobs/{hidden}/"), format!("/jobs/{hidden}/logs/")] {
            let response = call(&app, &team, Method::GET, &path, None).await;
            assert_denied(response, "host", &path).await;
        }
    }
    assert_eq!(
        call(
            &app,
            &team,
            Method::GET,
            &format!("/jobs/{admin_web}/"),
            None
        )
        .await
        .status(),
        200
    );
    let hosts: Value = call(&app, &team, Method::GET, "/hosts/", None)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|host| host["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-1"]);
    let stats: Value = call(&app, &team, Method::GET, "/jobs/stats/", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["total"], 2, "its hosts' jobs only: {stats}");
    assert_eq!(stats["queued_by_priority"]["Medium"], 2, "{stats}");
    let all: Value = app.get("/jobs/stats/").await.json().await.unwrap();
    assert_eq!(all["total"], 4, "{all}");

    // A read token with the same scope sees the same.
    let viewer = make_token(
        &app,
        json!({"name": "viewer", "role": "read", "hosts": ["web-1"]}),
    )
    .await;
    let page: Value = call(&app, &viewer, Method::GET, "/jobs/list/", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total_count"], 2, "{page}");

    // Changes only its own jobs, on its hosts: outside them, the host is
    // what is missing, whoever's the job.
    let response = call(
        &app,
        &team,
        Method::POST,
        &format!("/jobs/{admin_web}/cancel/"),
        None,
    )
    .await;
    assert_denied(response, "submitted_by", "another's job").await;
    let response = call(
        &app,
        &team,
        Method::POST,
        &format!("/jobs/{admin_db}/cancel/"),
        None,
    )
    .await;
    assert_denied(response, "host", "a job of another host").await;
    let response = call(&app, &team, Method::POST, "/hosts/db-1/check/", None).await;
    assert_denied(response, "host", "a check of another host").await;
    let response = call(
        &app,
        &team,
        Method::PATCH,
        &format!("/jobs/{own}/"),
        Some(json!({"host": "db-1"})),
    )
    .await;
    assert_denied(response, "host", "moving its job out of scope").await;
    let response = call(
        &app,
        &team,
        Method::POST,
        &format!("/jobs/{own}/cancel/"),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "Cancelled");
    assert_eq!(cancelled["cancelled_by"], "team");

    // Over WebSocket: a job of another host is refused before the upgrade.
    let refused =
        tokio_tungstenite::connect_async(app.ws_url(&format!("/ws/jobs/{admin_db}/?token={team}")))
            .await
            .unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");

    // The all-jobs stream tells the token only of its hosts' jobs.
    let (mut events, _) =
        tokio_tungstenite::connect_async(app.ws_url(&format!("/ws/jobs/?token={team}")))
            .await
            .expect("the event stream");
    assert_eq!(next(&mut events).await["type"], "ready");
    // The admin cancels a job the token may not see, then one it may: the
    // first event it hears of is the second.
    assert_eq!(app.cancel(&admin_db).await.status(), 200);
    assert_eq!(app.cancel(&admin_web).await.status(), 200);
    let event = next(&mut events).await;
    assert_eq!(event["job_id"], admin_web.as_str(), "{event}");
    assert_eq!(event["status"], "Cancelled");
}

#[tokio::test]
async fn every_change_is_in_the_audit_trail_under_its_tokens_name() {
    let app = app_with_admin(|s| s.run_worker = false).await;
    let admin = rje_api::configured_name(ADMIN);
    let runner = make_token(&app, json!({"name": "runner", "role": "run"})).await;
    let reader = make_token(&app, json!({"name": "reader", "role": "read"})).await;
    let job = id_of(&submit_as(&app, &runner, json!({"command": "true"})).await);
    let patched = call(
        &app,
        &runner,
        Method::PATCH,
        &format!("/jobs/{job}/"),
        Some(json!({"priority": "High"})),
    )
    .await;
    assert_eq!(patched.status(), 200);
    let refused = call(
        &app,
        &reader,
        Method::POST,
        &format!("/jobs/{job}/cancel/"),
        None,
    )
    .await;
    assert_eq!(refused.status(), 403);
    let cancelled = call(
        &app,
        &runner,
        Method::POST,
        &format!("/jobs/{job}/cancel/"),
        None,
    )
    .await;
    assert_eq!(cancelled.status(), 200);
    assert_eq!(
        app.send(Method::DELETE, &format!("/jobs/{job}/"), None)
            .await
            .status(),
        204
    );
    assert_eq!(
        app.send(Method::DELETE, "/tokens/reader/", None)
            .await
            .status(),
        204
    );
    let check = app.send(Method::POST, "/hosts/local/check/", None).await;
    assert_eq!(check.status(), 200);
    // Reads are not changes.
    assert_eq!(app.get("/jobs/").await.status(), 200);

    let trail: Value = app.get("/audit/?limit=100").await.json().await.unwrap();
    let entries: Vec<(String, String, String, String, u64)> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|entry| {
            (
                entry["token"].as_str().unwrap_or("").to_owned(),
                entry["method"].as_str().unwrap().to_owned(),
                entry["route"].as_str().unwrap().to_owned(),
                entry["target"].as_str().unwrap_or("").to_owned(),
                entry["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let row = |token: &str, method: &str, route: &str, target: &str, status: u64| {
        (
            token.to_owned(),
            method.to_owned(),
            route.to_owned(),
            target.to_owned(),
            status,
        )
    };
    assert_eq!(
        entries,
        vec![
            row(&admin, "POST", "/tokens", "runner", 201),
            row(&admin, "POST", "/tokens", "reader", 201),
            row("runner", "POST", "/jobs", &job, 201),
            row("runner", "PATCH", "/jobs/{id}", &job, 200),
            row("reader", "POST", "/jobs/{id}/cancel", &job, 403),
            row("runner", "POST", "/jobs/{id}/cancel", &job, 200),
            row(&admin, "DELETE", "/jobs/{id}", &job, 204),
            row(&admin, "DELETE", "/tokens/{name}", "reader", 204),
            row(&admin, "POST", "/hosts/{name}/check", "local", 200),
        ]
    );
    assert_eq!(trail["total_count"], 9);
    let first = &trail["entries"][8];
    assert_eq!(first["client"], "127.0.0.1");
    assert!(first["at"].as_str().unwrap().ends_with('Z'));

    let mine: Value = app.get("/audit/?token=runner").await.json().await.unwrap();
    assert_eq!(mine["total_count"], 3);
    let cancels: Value = app
        .get("/audit/?route=/jobs/{id}/cancel&limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cancels["total_count"], 2);
    assert_eq!(cancels["entries"].as_array().unwrap().len(), 1);
    assert_eq!(cancels["entries"][0]["token"], "runner", "newest first");
    // The trail is an admin's to read, and nobody's to change.
    let response = call(&app, &runner, Method::GET, "/audit/", None).await;
    assert_denied(response, "role", "a run token reads the trail").await;
    assert_eq!(
        app.send(Method::DELETE, "/audit/", None).await.status(),
        405
    );
    assert_eq!(app.get("/audit/?limit=0").await.status(), 400);
}

#[tokio::test]
async fn tokens_are_checked_and_an_admin_covers_every_host() {
    let app = app_with_admin(|_| {}).await;
    for (body, field) in [
        (
            json!({"name": "ops", "role": "admin", "hosts": ["local"]}),
            "role",
        ),
        (json!({"name": "env-12345678", "role": "read"}), "name"),
        (
            json!({"name": "x", "role": "run", "hosts": ["nowhere"]}),
            "hosts",
        ),
        (json!({"name": "bad name", "role": "read"}), "name"),
        (json!({"name": "x", "role": "root"}), "role"),
    ] {
        let response = app.post("/tokens/", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["details"][0]["field"], field, "{body}: {error}");
    }
    make_token(
        &app,
        json!({"name": "ci", "role": "run", "hosts": ["local"]}),
    )
    .await;
    let again = app
        .post("/tokens/", &json!({"name": "ci", "role": "read"}))
        .await;
    assert_eq!(again.status(), 409);
    let listed: Value = app.get("/tokens/").await.json().await.unwrap();
    assert_eq!(
        listed["tokens"].as_array().unwrap().len(),
        1,
        "nothing half-made"
    );
    assert_eq!(
        app.send(Method::DELETE, "/tokens/nobody/", None)
            .await
            .status(),
        404
    );
    assert_eq!(
        app.send(Method::DELETE, "/tokens/ci/", None).await.status(),
        204
    );
    assert_eq!(
        app.send(Method::DELETE, "/tokens/ci/", None).await.status(),
        404
    );
}

#[tokio::test]
async fn a_server_without_tokens_is_open_until_one_is_made() {
    let app = spawn_app_with(|s| s.run_worker = false).await;
    let who: Value = app.get("/whoami/").await.json().await.unwrap();
    assert_eq!(
        who,
        json!({"name": null, "role": "admin", "hosts": [], "labels": [], "auth": false})
    );
    // As before tokens had names: a token it does not know is not refused.
    let response = call(&app, "anything", Method::GET, "/jobs/", None).await;
    assert_eq!(response.status(), 200);
    let job = app.submit(json!({"command": "true"})).await;
    assert_eq!(job["submitted_by"], Value::Null);

    let secret = make_token(&app, json!({"name": "first", "role": "admin"})).await;
    assert_eq!(
        app.get("/jobs/").await.status(),
        401,
        "tokens are now asked for"
    );
    assert_eq!(
        call(&app, "anything", Method::GET, "/jobs/", None)
            .await
            .status(),
        401
    );
    let who: Value = call(&app, &secret, Method::GET, "/whoami/", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(who["name"], "first");
    assert_eq!(who["auth"], true);
}

#[tokio::test]
async fn secrets_appear_in_no_log_no_listing_and_not_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("rje.db");
    let log = dir.path().join("rje.log");
    let mut command = crate::restart::rje(&database);
    command
        .env("RJE_API_TOKENS", ADMIN)
        .env("RUST_LOG", "debug")
        .stderr(std::fs::File::create(&log).unwrap());
    let server = crate::restart::Process::start_with(command).await;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{base}/tokens/"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "ci", "role": "run"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    // Used over REST and, as browsers do, in a WebSocket's query.
    let job: Value = client
        .post(format!("{base}/jobs/"))
        .bearer_auth(&secret)
        .json(&json!({"command": "echo hello"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ws = base.replace("http://", "ws://");
    let session = ws_read_all(format!("{ws}/ws/jobs/{}/?token={secret}", id_of(&job))).await;
    assert_eq!(session.output(), "hello\n");
    let listed = client
        .get(format!("{base}/tokens/"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains("\"ci\"") && !listed.contains(&secret),
        "{listed}"
    );
    let wrong = client
        .get(format!("{base}/jobs/"))
        .bearer_auth(format!("{secret}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    server.kill_hard().await;

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("request"), "debug logs were written");
    for secret in [secret.as_str(), ADMIN] {
        assert!(!logged.contains(secret), "a secret in the log");
        for file in ["rje.db", "rje.db-wal"] {
            let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
            assert!(
                !bytes
                    .windows(secret.len())
                    .any(|window| window == secret.as_bytes()),
                "a secret in {file}"
            );
        }
    }
    let hash = rje_store::hash_secret(&secret);
    let stored = [
        std::fs::read(&database).unwrap(),
        std::fs::read(dir.path().join("rje.db-wal")).unwrap_or_default(),
    ]
    .concat();
    assert!(
        stored
            .windows(hash.len())
            .any(|window| window == hash.as_bytes()),
        "the hash is what the store keeps"
    );
}

#[tokio::test]
async fn a_token_the_store_holds_when_a_server_starts_is_asked_for_at_once() {
    let app = spawn_app_with(|s| s.run_worker = false).await;
    let secret = make_token(&app, json!({"name": "first", "role": "read"})).await;
    let dir = app.stop().await;
    let app = spawn_app_in(dir, |s| s.run_worker = false).await;
    assert_eq!(app.get("/jobs/").await.status(), 401);
    assert_eq!(
        call(&app, &secret, Method::GET, "/jobs/", None)
            .await
            .status(),
        200
    );
    // The token's role holds after a restart.
    let response = call(
        &app,
        &secret,
        Method::POST,
        "/jobs/",
        Some(json!({"command": "true"})),
    )
    .await;
    assert_denied(response, "role", "a read token submits").await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON message of a WebSocket.
async fn next(events: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(DEADLINE, events.next())
            .await
            .expect("an event in time")
            .expect("the stream is open")
            .expect("a message");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test]
async fn a_revoked_token_loses_its_open_websockets() {
    let app = app_with_admin(|s| s.run_worker = false).await;
    let viewer = make_token(&app, json!({"name": "viewer", "role": "read"})).await;
    let job = app.submit_command("true").await;
    let (mut events, _) =
        tokio_tungstenite::connect_async(app.ws_url(&format!("/ws/jobs/?token={viewer}")))
            .await
            .expect("the event stream");
    assert_eq!(next(&mut events).await["type"], "ready");
    let (mut stream, _) =
        tokio_tungstenite::connect_async(app.ws_url(&format!("/ws/jobs/{job}/?token={viewer}")))
            .await
            .expect("the job's stream");
    assert_eq!(next(&mut stream).await["type"], "status");
    assert_eq!(
        app.send(Method::DELETE, "/tokens/viewer/", None)
            .await
            .status(),
        204
    );
    for socket in [&mut events, &mut stream] {
        assert_eq!(closed(socket).await, "the token was revoked");
    }
}

/// Reads until the server closes; the close's reason, its code checked to
/// be a policy violation's.
async fn closed(socket: &mut Socket) -> String {
    loop {
        let message = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .expect("closed in time")
            .expect("a close frame before the end")
            .expect("a message");
        if let Message::Close(frame) = message {
            let frame = frame.expect("a close frame with a reason");
            assert_eq!(
                frame.code,
                tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Policy
            );
            return frame.reason.to_string();
        }
    }
}

#[tokio::test]
async fn a_token_made_while_sessions_run_is_not_taken_for_revoked() {
    let app = app_with_admin(|s| s.run_worker = false).await;
    let first = make_token(&app, json!({"name": "first", "role": "read"})).await;
    let (mut early, _) =
        tokio_tungstenite::connect_async(app.ws_url(&format!("/ws/jobs/?token={first}")))
            .await
            .expect("the first token's stream");
    // Its session has read the live tokens now: the next is not among them.
    assert_eq!(next(&mut early).await["type"], "ready");
    let second = make_token(&app, json!({"name": "second", "role": "read"})).await;
    let (mut late, _) =
        tokio_tungstenite::connect_async(app.ws_url(&format!("/ws/jobs/?token={second}")))
            .await
            .expect("the second token's stream");
    assert_eq!(next(&mut late).await["type"], "ready");
    let job = app.submit_command("true").await;
    assert_eq!(app.cancel(&job).await.status(), 200);
    for socket in [&mut early, &mut late] {
        let event = next(socket).await;
        assert_eq!(event["job_id"], job.as_str(), "still open: {event}");
    }
}

#[tokio::test]
async fn a_stopping_server_writes_the_entries_of_changes_a_stalled_store_held_back() {
    let schema = rje_testkit::TestSchema::create("rje_audit").await;
    rje::server::migrate(&schema.url).await.expect("migrations");
    let url = schema.url.clone();
    let app = app_with_admin(move |s| {
        s.database_url = url;
        s.run_worker = false;
    })
    .await;
    // The trail cannot be written: each change is made, then waits for its
    // entry, and so does its answer, which its client gives up on.
    let lock = schema.lock_table("audit_log").await;
    let submits: Vec<_> = (0..5)
        .map(|i| {
            let request = app
                .client
                .post(app.url("/jobs/"))
                .bearer_auth(ADMIN)
                .timeout(std::time::Duration::from_millis(300))
                .json(&json!({ "command": format!("echo {i}") }));
            tokio::spawn(request.send())
        })
        .collect();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let page: Value = app.get("/jobs/?output=none").await.json().await.unwrap();
        if page["total_count"] == 5 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for submit in submits {
        let gave_up = submit
            .await
            .unwrap()
            .expect_err("no answer while the trail is held");
        assert!(gave_up.is_timeout(), "{gave_up}");
    }
    // Stopping with no client left: the server still waits for their
    // entries, written once the store moves again.
    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Released before any assertion: a test that fails holding the lock
    // would wait for ever on dropping its schema.
    let stopped_early = stopping.is_finished();
    lock.release().await;
    assert!(
        !stopped_early,
        "the server stopped with entries still to write"
    );
    stopping.await.expect("a clean stop");
    let store = rje_store::PostgresStore::open(&schema.url, false)
        .await
        .expect("the store");
    use rje_store::Access;
    let trail = store
        .audit(&rje_domain::AuditQuery::default())
        .await
        .unwrap();
    assert_eq!(trail.total_count, 5, "an entry for every change: {trail:?}");
    assert!(trail.entries.iter().all(|entry| entry.status == 201));
}

#[tokio::test]
async fn schedules_and_runs_again_keep_to_the_tokens_scope_and_owner() {
    let app = three_host_app().await;
    let team = make_token(
        &app,
        json!({"name": "team", "role": "run", "labels": ["web"]}),
    )
    .await;
    let other = make_token(
        &app,
        json!({"name": "other", "role": "run", "labels": ["web"]}),
    )
    .await;
    let schedule = |name: &str, host: &str| json!({"name": name, "cron": "@daily", "command": "true", "host": host});
    let outside = call(
        &app,
        &team,
        Method::POST,
        "/schedules/",
        Some(schedule("db-nightly", "db-1")),
    )
    .await;
    assert_denied(outside, "host", "a schedule on db-1").await;
    let made = call(
        &app,
        &team,
        Method::POST,
        "/schedules/",
        Some(schedule("web-nightly", "web-1")),
    )
    .await;
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    assert_eq!(made["created_by"], "team");
    let admins = call(
        &app,
        ADMIN,
        Method::POST,
        "/schedules/",
        Some(schedule("db-nightly", "db-1")),
    )
    .await;
    assert_eq!(admins.status(), 201);

    // Seen only on its hosts.
    let listed: Value = call(&app, &team, Method::GET, "/schedules/", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["total_count"], 1, "{listed}");
    assert_eq!(listed["schedules"][0]["name"], "web-nightly");
    let hidden = call(&app, &team, Method::GET, "/schedules/db-nightly/", None).await;
    assert_denied(hidden, "host", "another host's schedule").await;
    // Moved outside the scope: refused, unchanged.
    let moved = call(
        &app,
        &team,
        Method::PATCH,
        "/schedules/web-nightly/",
        Some(json!({"host": "db-1"})),
    )
    .await;
    assert_denied(moved, "host", "a move to db-1").await;
    // Another run token's schedule: not its to change.
    for (method, path) in [
        (Method::POST, "/schedules/web-nightly/pause/"),
        (Method::PATCH, "/schedules/web-nightly/"),
        (Method::DELETE, "/schedules/web-nightly/"),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"command": "id"}));
        let refused = call(&app, &other, method.clone(), path, body).await;
        assert_denied(
            refused,
            "created_by",
            &format!("{method} {path} by another token"),
        )
        .await;
    }
    let paused = call(
        &app,
        &team,
        Method::POST,
        "/schedules/web-nightly/pause/",
        None,
    )
    .await;
    assert_eq!(paused.status(), 200);
    call(
        &app,
        &team,
        Method::POST,
        "/schedules/web-nightly/resume/",
        None,
    )
    .await;

    // Running again is submitting: only on the scope's hosts.
    let theirs = id_of(&submit_as(&app, ADMIN, json!({"command": "true", "host": "db-1"})).await);
    app.cancel(&theirs).await;
    let again = call(
        &app,
        &team,
        Method::POST,
        &format!("/jobs/{theirs}/retry/"),
        None,
    )
    .await;
    assert_denied(again, "host", "a run again on db-1").await;

    // A revoked token's schedules stop with it.
    let revoked = call(&app, ADMIN, Method::DELETE, "/tokens/team/", None).await;
    assert_eq!(revoked.status(), 204);
    let after: Value = call(&app, ADMIN, Method::GET, "/schedules/web-nightly/", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["paused"], true, "{after}");
}

#[tokio::test]
async fn runs_keep_to_the_tokens_scope_and_owner() {
    let app = three_host_app().await;
    let team = make_token(
        &app,
        json!({"name": "team", "role": "run", "labels": ["web"]}),
    )
    .await;
    let other = make_token(
        &app,
        json!({"name": "other", "role": "run", "labels": ["web"]}),
    )
    .await;
    let reader = make_token(&app, json!({"name": "reader", "role": "read"})).await;

    let outside = call(
        &app,
        &team,
        Method::POST,
        "/runs/",
        Some(json!({"command": "true", "hosts": ["web-1", "db-1"]})),
    )
    .await;
    assert_denied(outside, "host", "a run reaching db-1").await;
    let read_only = call(
        &app,
        &reader,
        Method::POST,
        "/runs/",
        Some(json!({"command": "true", "hosts": ["web-1"]})),
    )
    .await;
    assert_denied(read_only, "role", "a read token starting a run").await;
    let runs: Value = call(&app, ADMIN, Method::GET, "/runs/", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(runs["total_count"], 0, "a refused run makes nothing");

    let mine = call(
        &app,
        &team,
        Method::POST,
        "/runs/",
        Some(json!({"command": "true", "labels": ["web"]})),
    )
    .await;
    assert_eq!(mine.status(), 201);
    let mine: Value = mine.json().await.unwrap();
    assert_eq!(mine["submitted_by"], "team");
    assert_eq!(mine["jobs"][0]["submitted_by"], "team");
    let wide = call(
        &app,
        ADMIN,
        Method::POST,
        "/runs/",
        Some(json!({"command": "true", "hosts": ["web-1", "db-1"]})),
    )
    .await;
    assert_eq!(wide.status(), 201);
    let wide: Value = wide.json().await.unwrap();

    // A scoped token sees the runs all of whose hosts it covers.
    let listed: Value = call(&app, &team, Method::GET, "/runs/", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["total_count"], 1);
    assert_eq!(listed["runs"][0]["id"], mine["id"]);
    let wide_path = format!("/runs/{}/", wide["id"].as_str().unwrap());
    assert_denied(
        call(&app, &team, Method::GET, &wide_path, None).await,
        "host",
        "reading a run reaching db-1",
    )
    .await;
    let wide_ws = format!("/ws/runs/{}/", wide["id"].as_str().unwrap());
    assert_denied(
        call(&app, &team, Method::GET, &wide_ws, None).await,
        "host",
        "following a run reaching db-1",
    )
    .await;
    assert_denied(
        call(
            &app,
            &team,
            Method::POST,
            &format!("{wide_path}cancel/"),
            None,
        )
        .await,
        "host",
        "cancelling it",
    )
    .await;

    // Only its maker (or an admin) cancels a run.
    let mine_path = format!("/runs/{}/", mine["id"].as_str().unwrap());
    let theirs = call(
        &app,
        &other,
        Method::POST,
        &format!("{mine_path}cancel/"),
        None,
    )
    .await;
    assert_denied(theirs, "submitted_by", "another run token cancelling it").await;
    let cancelled = call(
        &app,
        &team,
        Method::POST,
        &format!("{mine_path}cancel/"),
        None,
    )
    .await;
    assert_eq!(
        cancelled.status(),
        200,
        "no worker runs here: its jobs end at once"
    );
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["status"], "Cancelled");
    assert_eq!(cancelled["cancelled_by"], "team");
}
