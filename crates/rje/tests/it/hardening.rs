//! What a web page, a job and a hostile client can do to rje: each test
//! here is an attack that worked once, and must not again.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, sleep};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::*;
use crate::restart::{Process, rje};

async fn job_count(app: &TestApp) -> usize {
    let list: Value = app.get("/jobs/list/").await.json().await.unwrap();
    list["total_count"].as_u64().expect("a count") as usize
}

async fn post_with_host(app: &TestApp, host: &str) -> reqwest::Response {
    app.client
        .post(app.url("/jobs/"))
        .header("host", host)
        .json(&json!({"command": "id"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dns_rebinding_page_cannot_reach_a_token_less_server() {
    let app = spawn_app().await;
    let port = app.addr.port();
    let refused = post_with_host(&app, &format!("rebind.attacker.example:{port}")).await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("RJE_ALLOWED_HOSTS"),
        "{body}"
    );
    for host in [
        format!("rebind.attacker.example:{port}"),
        format!("localhost.attacker.example:{port}"),
        "10.1.2.3".to_owned(),
    ] {
        assert_eq!(post_with_host(&app, &host).await.status(), 400, "{host}");
        let read = app
            .client
            .get(app.url("/jobs/"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 400, "reads too: {host}");
    }
    assert_eq!(job_count(&app).await, 0, "nothing was submitted");
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(post_with_host(&app, &host).await.status(), 201, "{host}");
    }

    let listed = spawn_app_with(|s| {
        s.api.allowed_hosts = rje_api::AllowedHosts::LoopbackAnd(vec!["rje.internal".into()]);
    })
    .await;
    assert_eq!(
        post_with_host(&listed, "rje.internal:8000").await.status(),
        201
    );
    assert_eq!(
        post_with_host(&listed, "other.internal").await.status(),
        400
    );
}

#[tokio::test]
async fn a_cross_site_websocket_is_refused() {
    let app = spawn_app_with(|s| {
        s.api.cors_origins = vec!["https://ops.example".parse().unwrap()];
    })
    .await;
    let id = app.submit_command("echo secret-output").await;
    app.wait_final(&id).await;
    for path in [format!("/ws/jobs/{id}/"), "/ws/jobs/".to_owned()] {
        let connect = |origin: &str| {
            let mut request = app.ws_url(&path).into_client_request().unwrap();
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
            tokio_tungstenite::connect_async(request)
        };
        match connect("https://evil.example").await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{path}");
                let body =
                    String::from_utf8_lossy(response.body().as_deref().unwrap_or(b"")).into_owned();
                assert!(body.contains("cross-site"), "{body}");
            }
            Ok(_) => panic!("{path}: a cross-site WebSocket was accepted"),
            Err(other) => panic!("{path}: {other}"),
        }
        let own = format!("http://{}", app.addr);
        assert!(
            connect(&own).await.is_ok(),
            "{path}: the dashboard's own origin"
        );
        assert!(
            connect("https://ops.example").await.is_ok(),
            "{path}: an origin in RJE_CORS_ORIGINS"
        );
    }
    // Clients that send no Origin (every non-browser client) are unaffected.
    assert_eq!(
        ws_read_all(app.ws_url(&format!("/ws/jobs/{id}/")))
            .await
            .output(),
        "secret-output\n"
    );
}

#[tokio::test]
async fn a_cross_site_form_cannot_change_anything() {
    let app = spawn_app().await;
    let id = app.submit_command("sleep 300").await;
    app.wait_started(&id).await;
    let cancel = format!("/jobs/{id}/cancel/");
    let attempts: [(&[(&str, &str)], u16); 4] = [
        (
            &[
                ("origin", "https://evil.example"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            403,
        ),
        (&[("origin", "null")], 403),
        (&[("sec-fetch-site", "cross-site")], 403),
        // An old browser that sends neither, with a form's body.
        (
            &[("content-type", "application/x-www-form-urlencoded")],
            415,
        ),
    ];
    for (headers, status) in attempts {
        let mut request = app.client.post(app.url(&cancel)).body("a=b");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{headers:?}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{body}");
    }
    let form_submit = app
        .client
        .post(app.url("/jobs/"))
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain")
        .body(r#"{"command": "touch /tmp/pwned"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(form_submit.status(), 403);
    let delete = app
        .client
        .delete(app.url(&format!("/jobs/{id}/")))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 403);
    assert_eq!(app.job(&id).await["status"], "Running", "nothing changed");
    assert_eq!(job_count(&app).await, 1);

    // The dashboard (its own origin) and curl (no Origin, no body) still can.
    let own = app
        .client
        .post(app.url(&cancel))
        .header("origin", format!("http://{}", app.addr))
        .send()
        .await
        .unwrap();
    assert!(own.status().is_success(), "{}", own.status());
    app.wait_final(&id).await;
    // `curl -X POST … -d ''`: a form's type with nothing in it, no Origin.
    let other = app.submit_command("sleep 300").await;
    app.wait_started(&other).await;
    let curl = app
        .client
        .post(app.url(&format!("/jobs/{other}/cancel/")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert!(curl.status().is_success(), "{}", curl.status());
    app.wait_final(&other).await;
}

/// Everything a job's `env` printed, as names.
fn names_in(env_output: &str) -> Vec<String> {
    env_output
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.to_owned()))
        .collect()
}

/// A descriptor rje was handed by whoever started it (a shell's, a
/// service manager's) does not reach its jobs, plain or durable.
#[tokio::test]
async fn a_job_inherits_no_descriptor_rje_was_given() {
    let dir = tempfile::tempdir().unwrap();
    for state_dir in [
        String::new(),
        dir.path().join("state").display().to_string(),
    ] {
        let db = dir.path().join(format!("fds-{}.db", state_dir.len()));
        let mut command = rje(&db);
        command.env("RJE_STATE_DIR", &state_dir);
        // SAFETY: only dup2, async-signal-safe, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                // Stdout's pipe again, as descriptor 9, without
                // close-on-exec: as a shell hands one on.
                if nix::libc::dup2(1, 9) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let server = Process::start_with(command).await;
        let id = server
            .submit("for fd in /proc/self/fd/*; do echo ${fd##*/}; done")
            .await;
        let job = server.wait_for(&id, is_final).await;
        assert_eq!(job["status"], "Success", "{job}");
        let fds: Vec<&str> = job["stdout"].as_str().unwrap().lines().collect();
        assert!(
            !fds.contains(&"9"),
            "state dir {state_dir:?}: the job holds rje's descriptor 9: {fds:?}"
        );
    }
}

#[tokio::test]
async fn a_job_starts_with_none_of_rjes_settings() {
    let dir = tempfile::tempdir().unwrap();
    for state_dir in [
        String::new(),
        dir.path().join("state").display().to_string(),
    ] {
        let db = dir.path().join(format!("rje-{}.db", state_dir.len()));
        let mut command = rje(&db);
        command
            .env("RJE_STATE_DIR", &state_dir)
            .env("RJE_SSH_KEY_PASSPHRASE", "hunter2-passphrase")
            .env("DATABASE_URL", "sqlite://elsewhere.db")
            .env("UNRELATED_SECRET", "not-for-jobs")
            .env("GREETING", "hello")
            .env("RJE_JOB_ENV_PASS", "GREETING")
            .env("LANG", "C.UTF-8");
        let server = Process::start_with(command).await;
        let id = server.submit("env").await;
        let job = server.wait_for(&id, is_final).await;
        assert_eq!(job["status"], "Success", "{job}");
        let output = job["stdout"].as_str().unwrap();
        for secret in ["hunter2", "elsewhere.db", "not-for-jobs", "RJE_"] {
            assert!(
                !output.contains(secret),
                "state dir {state_dir:?}: {secret} reached the job:\n{output}"
            );
        }
        let names = names_in(output);
        assert!(output.contains("GREETING=hello\n"), "{output}");
        assert!(output.contains("LANG=C.UTF-8\n"), "{output}");
        assert!(names.iter().any(|n| n == "PATH"), "{output}");
        for name in &names {
            assert!(
                [
                    "GREETING", "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE",
                    "TZ", "TMPDIR", "PWD", "SHLVL", "_", "OLDPWD"
                ]
                .contains(&name.as_str())
                    || name.starts_with("LC_"),
                "state dir {state_dir:?}: {name} is not a job's:\n{output}"
            );
        }
    }
    // A setting of rje's cannot be passed even on purpose.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_rje"))
        .arg("serve")
        .env("RJE_JOB_ENV_PASS", "RJE_API_TOKENS")
        .env(
            "RJE_DATABASE_URL",
            format!("sqlite://{}/x.db", dir.path().display()),
        )
        .env("RJE_BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("RJE_JOB_ENV_PASS"), "{stderr}");
}

#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let app = spawn_app().await;
    app.get("/health").await;
    let before = app.get("/metrics").await.text().await.unwrap().len();
    for n in 0..50 {
        let method = Method::from_bytes(format!("JUNK{n}{}", "X".repeat(2000)).as_bytes()).unwrap();
        let response = app
            .client
            .request(method, app.url("/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(!text.contains("JUNK"), "a made-up method became a label");
    assert!(text.contains(r#"method="other""#));
    // Other tests in this process add series of their own meanwhile; the
    // junk alone would have added about 200 KB.
    assert!(
        text.len() < before + 50_000,
        "/metrics grew from {before} to {} bytes",
        text.len()
    );
}

/// A WebSocket handshake on a raw socket that then never reads.
async fn silent_websocket(app: &TestApp, path: &str) -> tokio::net::TcpStream {
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        app.addr
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    socket.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101", "upgraded");
    socket
}

/// A client that keeps no idle connection, which would hold a slot.
fn unpooled() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Whether a new connection is refused for want of a slot: the listener
/// answers such a one with a 503 at once, before it sends anything.
async fn refused_for_slots(app: &TestApp) -> bool {
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        app.addr
    );
    // The refusal may come and the socket close before the request is
    // written: only what is read counts.
    let _ = socket.write_all(request.as_bytes()).await;
    let mut head = [0u8; 12];
    socket.read_exact(&mut head).await.unwrap();
    match &head {
        b"HTTP/1.1 503" => true,
        b"HTTP/1.1 200" => false,
        other => panic!("unexpected answer {:?}", String::from_utf8_lossy(other)),
    }
}

/// The job, read on a connection of its own.
async fn unpooled_job(app: &TestApp, id: &str) -> Value {
    unpooled()
        .get(app.url(&format!("/jobs/{id}/")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A finished job with more output than two sockets' buffers hold.
async fn job_with_big_output(app: &TestApp, bytes: usize) -> String {
    let client = unpooled();
    let created: Value = client
        .post(app.url("/jobs/"))
        .json(&json!({
            "command": format!("head -c {bytes} /dev/zero | tr '\\0' x | fold -w 99"),
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = id_of(&created);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let job = unpooled_job(app, &id).await;
        if is_final(&job) {
            assert_eq!(job["status"], "Success");
            break;
        }
        assert!(Instant::now() < deadline, "the job did not finish");
        sleep(Duration::from_millis(100)).await;
    }
    id
}

/// Polls until a new connection is served again.
async fn until_a_slot_frees(app: &TestApp, what: &str) {
    let deadline = Instant::now() + DEADLINE;
    while refused_for_slots(app).await {
        assert!(Instant::now() < deadline, "{what} kept their slots");
        sleep(Duration::from_millis(100)).await;
    }
}

fn bounded_app(settings: &mut rje::Settings) {
    settings.connections.max_connections = 2;
    settings.connections.send_timeout = Duration::from_secs(1);
    settings.api.ws_send_timeout = Duration::from_secs(1);
    settings.worker.max_output_bytes = 32 << 20;
}

#[tokio::test]
async fn websockets_hold_connection_slots_and_silent_ones_are_dropped() {
    const BYTES: usize = 24_000_000;
    let app = spawn_app_with(bounded_app).await;
    let id = job_with_big_output(&app, BYTES).await;
    // Two clients that upgrade and never read: more output than the
    // sockets' buffers hold, so the server's sends block. They hold both
    // slots until the send timeout drops them.
    let silent = [
        silent_websocket(&app, &format!("/ws/jobs/{id}/")).await,
        silent_websocket(&app, &format!("/ws/jobs/{id}/")).await,
    ];
    assert!(
        refused_for_slots(&app).await,
        "WebSockets count as connections"
    );
    until_a_slot_frees(&app, "WebSockets that never read").await;
    drop(silent);

    // A reading client is not dropped, however long the replay.
    let session = ws_read_all(app.ws_url(&format!("/ws/jobs/{id}/"))).await;
    assert_eq!(session.output().len(), BYTES + BYTES / 99);
}

#[tokio::test]
async fn a_client_that_stops_reading_a_response_is_dropped() {
    const BYTES: usize = 24_000_000;
    let app = spawn_app_with(bounded_app).await;
    let id = job_with_big_output(&app, BYTES).await;
    let mut silent = Vec::new();
    for _ in 0..2 {
        let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let request = format!("GET /jobs/{id}/ HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr);
        socket.write_all(request.as_bytes()).await.unwrap();
        silent.push(socket);
    }
    assert!(refused_for_slots(&app).await, "both slots are taken");
    until_a_slot_frees(&app, "responses nobody read").await;
    drop(silent);
    // A reader that keeps up gets the whole body.
    let job = unpooled_job(&app, &id).await;
    assert_eq!(job["stdout"].as_str().unwrap().len(), BYTES + BYTES / 99);
}

#[tokio::test]
async fn a_trusted_proxy_on_a_dual_stack_listener_still_names_its_clients() {
    let app = spawn_app_with(|s| {
        s.bind = "[::]:0".parse().unwrap();
        s.api.tokens = vec!["t0ken".into()];
        s.api.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        s.api.rate_limit = Some(rje_api::RateLimit {
            per_second: 0.01,
            burst: 2,
        });
    })
    .await;
    let url = format!("http://127.0.0.1:{}/jobs/", app.addr.port());
    let from = |client: &'static str| {
        app.client
            .get(&url)
            .header("x-forwarded-for", client)
            .send()
    };
    // Without a token each request spends its client address's budget.
    assert_eq!(from("203.0.113.1").await.unwrap().status(), 401);
    assert_eq!(from("203.0.113.1").await.unwrap().status(), 401);
    assert_eq!(from("203.0.113.1").await.unwrap().status(), 429);
    assert_eq!(
        from("203.0.113.2").await.unwrap().status(),
        401,
        "another client behind the proxy has a budget of its own"
    );
}

#[tokio::test]
async fn the_public_document_names_no_host() {
    let app = spawn_app_with(|s| {
        s.api.tokens = vec!["t0ken".into()];
        s.inventory = rje_ssh::Inventory {
            hosts: vec![rje_ssh::HostConfig::new("db-primary-secret", "127.0.0.1")],
            default_host: None,
        };
    })
    .await;
    let public = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 200);
    let public = public.text().await.unwrap();
    assert!(
        !public.contains("db-primary-secret"),
        "a host name is public"
    );
    serde_json::from_str::<Value>(&public).expect("still a document");
    let full = app.get("/openapi.json").await.text().await.unwrap();
    assert!(
        full.contains("db-primary-secret"),
        "a token's holder sees hosts"
    );
}

#[tokio::test]
async fn every_refusal_is_json_and_carries_the_browser_headers() {
    let app = spawn_app_with(|s| {
        s.api.cors_origins = vec!["https://ops.example".parse().unwrap()];
    })
    .await;
    for (method, path) in [
        (Method::POST, "/hosts/%FF/check/"),
        (Method::GET, "/ui/jobs/%FF"),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    for origin in ["https://ops.example", "https://evil.example"] {
        let preflight = app
            .client
            .request(Method::OPTIONS, app.url("/jobs/"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        for header in ["x-content-type-options", "x-frame-options"] {
            assert!(
                preflight.headers().contains_key(header),
                "{origin}: a preflight without {header}"
            );
        }
    }
}

#[tokio::test]
async fn an_integer_past_64_bits_is_refused_by_name() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/jobs/"))
        .header("content-type", "application/json")
        .body(r#"{"command": "true", "parameters": {"ticket": 18446744073709551616}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["details"][0]["field"], "parameters.ticket", "{body}");
    assert_eq!(job_count(&app).await, 0);
}

#[tokio::test]
async fn a_bad_state_directory_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rje"))
        .arg("serve")
        .env("RJE_STATE_DIR", &file)
        .env(
            "RJE_DATABASE_URL",
            format!("sqlite://{}/x.db", dir.path().display()),
        )
        .env("RJE_BIND", "127.0.0.1:0")
        .env_remove("RJE_API_TOKENS")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not-a-directory"), "{stderr}");
    assert_eq!(stderr.matches("(os error").count(), 1, "{stderr}");
}
