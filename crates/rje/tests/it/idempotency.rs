//! Submissions that are safe to retry: `Idempotency-Key` on `POST /jobs/`.

use serde_json::{Value, json};

use crate::helpers::*;

const KEY: &str = "Idempotency-Key";

async fn submit_keyed(
    app: &TestApp,
    token: Option<&str>,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/jobs/"))
        .header(KEY, key)
        .json(body);
    if let Some(token) = token.or(app.token.as_deref()) {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request")
}

async fn total_jobs(app: &TestApp) -> u64 {
    let page: Value = app.get("/jobs/?output=none").await.json().await.unwrap();
    page["total_count"].as_u64().unwrap()
}

#[tokio::test]
async fn many_submits_with_one_key_make_one_job() {
    let app = spawn_app_with(|s| s.run_worker = false).await;
    let body = json!({"command": "echo once", "priority": "High"});
    let answers = futures_util::future::join_all(
        (0..50).map(|_| submit_keyed(&app, None, "deploy-42", &body)),
    )
    .await;
    let mut made = std::collections::HashSet::new();
    let mut new = 0;
    for answer in answers {
        let status = answer.status();
        let replayed = answer.headers().get("idempotent-replayed").cloned();
        let job: Value = answer.json().await.unwrap();
        made.insert(id_of(&job));
        match status.as_u16() {
            201 => {
                new += 1;
                assert!(replayed.is_none());
            }
            200 => assert_eq!(replayed.unwrap(), "true"),
            other => panic!("{other}: {job}"),
        }
    }
    assert_eq!((made.len(), new), (1, 1), "one job, made once");
    assert_eq!(total_jobs(&app).await, 1);

    // The same key for another request is refused, and makes nothing.
    let other = submit_keyed(&app, None, "deploy-42", &json!({"command": "echo twice"})).await;
    assert_eq!(other.status(), 409);
    let error: Value = other.json().await.unwrap();
    assert_eq!(error["details"][0]["field"], KEY, "{error}");
    assert_eq!(total_jobs(&app).await, 1);
    // The body's key order is not part of the request.
    let reordered = submit_keyed(
        &app,
        None,
        "deploy-42",
        &serde_json::from_str::<Value>(r#"{"priority": "High", "command": "echo once"}"#).unwrap(),
    )
    .await;
    assert_eq!(reordered.status(), 200);
}

#[tokio::test]
async fn keys_are_checked_and_belong_to_their_token() {
    let app = spawn_app_with(|s| {
        s.run_worker = false;
        s.api.tokens = vec!["first-secret".into(), "second-secret".into()];
    })
    .await;
    let body = json!({"command": "true"});
    for bad in ["x".repeat(256), "tab\there".to_owned()] {
        let response = submit_keyed(&app, None, &bad, &body).await;
        assert_eq!(response.status(), 400, "{bad:?}");
    }
    let twice = app
        .client
        .post(app.url("/jobs/"))
        .bearer_auth("first-secret")
        .header(KEY, "a")
        .header(KEY, "b")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 400);
    assert_eq!(total_jobs(&app).await, 0, "a refused submit makes nothing");

    let first = submit_keyed(&app, Some("first-secret"), "nightly", &body).await;
    let second = submit_keyed(&app, Some("second-secret"), "nightly", &body).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (201, 201),
        "keys are per token"
    );
    assert_eq!(total_jobs(&app).await, 2);
    let again = submit_keyed(&app, Some("second-secret"), "nightly", &body).await;
    assert_eq!(again.status(), 200);
    let replayed: Value = again.json().await.unwrap();
    let made: Value = second.json().await.unwrap();
    assert_eq!(replayed["id"], made["id"]);
}

/// A proxy to `target` that loses the answer of the first connection: the
/// request reaches the server, the client sees its connection drop. A
/// fault the real server cannot produce on demand.
async fn losing_first_answer(target: std::net::SocketAddr) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut inbound, _)) = listener.accept().await {
            let lose = std::mem::replace(&mut first, false);
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                if !lose {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
                // Pass the request on; once the server answers, hang up
                // on the client without a byte of the answer.
                let mut request = vec![0u8; 64 * 1024];
                let mut answer = [0u8; 1];
                loop {
                    tokio::select! {
                        read = inbound.read(&mut request) => match read {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if outbound.write_all(&request[..n]).await.is_err() {
                                    return;
                                }
                            }
                        },
                        _ = outbound.read(&mut answer) => return,
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_client_submits_again_under_its_key_when_the_answer_is_lost() {
    let app = spawn_app_with(|s| s.run_worker = false).await;
    let proxy = losing_first_answer(app.addr).await;
    let output = tokio::time::timeout(
        DEADLINE,
        crate::cli::rje(&app)
            .env("RJE_URL", format!("http://{proxy}"))
            .args(["submit", "echo once"])
            .output(),
    )
    .await
    .expect("the client finishes")
    .expect("the client runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(total_jobs(&app).await, 1, "made once, though sent twice");
    assert_eq!(app.job(&id).await["command"], "echo once");
}

#[tokio::test]
async fn a_replay_answers_the_job_as_it_is_now() {
    let app = spawn_app().await;
    // Finished: the replay carries its output, as GET /jobs/{id}/ does.
    let body = json!({"command": "echo hello"});
    let made: Value = submit_keyed(&app, None, "greet", &body)
        .await
        .json()
        .await
        .unwrap();
    app.wait_final(&id_of(&made)).await;
    let replayed = submit_keyed(&app, None, "greet", &body).await;
    assert_eq!(replayed.status(), 200);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(
        replayed.headers()["location"].to_str().unwrap(),
        format!("/jobs/{}/", id_of(&made))
    );
    let job: Value = replayed.json().await.unwrap();
    assert_eq!(job["status"], "Success");
    assert_eq!(job["stdout"], "hello\n");
}

#[tokio::test]
async fn a_replay_is_refused_once_the_job_left_the_tokens_scope() {
    let web = rje_ssh::HostConfig::new("web-1", "127.0.0.1");
    let db = rje_ssh::HostConfig::new("db-1", "127.0.0.1");
    let app = spawn_app_with(move |s| {
        s.run_worker = false;
        s.api.tokens = vec!["admin-secret".into()];
        s.inventory = rje_ssh::Inventory {
            hosts: vec![web, db],
            default_host: None,
        };
    })
    .await;
    let created = app
        .post(
            "/tokens/",
            &json!({"name": "web", "role": "run", "hosts": ["web-1"]}),
        )
        .await;
    let secret = created.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"command": "true", "host": "web-1"});
    let made = submit_keyed(&app, Some(&secret), "mine", &body).await;
    assert_eq!(made.status(), 201);
    let id = id_of(&made.json().await.unwrap());
    // An admin moves the queued job to a host the token may not see.
    let moved = app
        .send(
            reqwest::Method::PATCH,
            &format!("/jobs/{id}/"),
            Some(&json!({"host": "db-1"})),
        )
        .await;
    assert_eq!(moved.status(), 200);
    let refused = submit_keyed(&app, Some(&secret), "mine", &body).await;
    assert_eq!(refused.status(), 403);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["details"][0]["field"], "host", "{error}");
}
