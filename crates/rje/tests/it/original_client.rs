//! A client written for the original Django API, unchanged: it knows only
//! the original routes and fields, and reads `log` and `status` from the
//! WebSocket.

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

/// The original client's view of a job: only the fields it documented.
fn original_fields(job: &Value) -> Value {
    let keys = [
        "id",
        "command",
        "priority",
        "status",
        "timeout",
        "stdout",
        "stderr",
        "created_at",
        "started_at",
        "completed_at",
    ];
    json!(
        keys.iter()
            .map(|k| (k.to_string(), job[k].clone()))
            .collect::<serde_json::Map<_, _>>()
    )
}

/// One request as the original client makes it: plain JSON, no token.
async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn the_original_client_works_unchanged() {
    let app = spawn_app().await;
    let base = app.url("");
    use reqwest::Method;

    // JobCreateRequest exactly as documented.
    let (status, created) = call(
        Method::POST,
        format!("{base}/jobs/"),
        Some(json!({"command": "echo hello; echo world", "priority": "High", "timeout": 60, "streaming": true})),
    )
    .await;
    assert_eq!(status, 201);
    let job = original_fields(&created);
    assert_eq!(job["status"], "Queued");
    let id = job["id"].as_str().unwrap().to_owned();

    // The WebSocket: read `log` and `status` until the server closes.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws/jobs/{id}/", app.addr))
            .await
            .unwrap();
    let mut log = String::new();
    let mut last_status = String::new();
    while let Some(message) = socket.next().await {
        match message.unwrap() {
            Message::Text(text) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                log.push_str(message["log"].as_str().unwrap());
                last_status = message["status"].as_str().unwrap().to_owned();
                assert!(message["timestamp"].is_string());
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(log, "hello\nworld\n");
    assert_eq!(last_status, "Success");

    let (_, fetched) = call(Method::GET, format!("{base}/jobs/{id}/"), None).await;
    let fetched = original_fields(&fetched);
    assert_eq!(fetched["status"], "Success");
    assert_eq!(fetched["stdout"], "hello\nworld\n");

    let query = "limit=10&offset=0&status=Success&priority=High&ordering=-created_at";
    let (_, list) = call(Method::GET, format!("{base}/jobs/list/?{query}"), None).await;
    assert_eq!(list["total_count"], 1);
    assert_eq!(list["jobs"][0]["id"], id.as_str());

    let (_, long) = call(
        Method::POST,
        format!("{base}/jobs/"),
        Some(json!({"command": "sleep 300", "priority": "Low", "timeout": 600})),
    )
    .await;
    let long_id = long["id"].as_str().unwrap();
    app.wait_started(long_id).await;
    let (status, cancelled) =
        call(Method::POST, format!("{base}/jobs/{long_id}/cancel/"), None).await;
    assert_eq!(status, 200);
    assert_eq!(cancelled["status"], "Cancelled");
}

#[tokio::test]
async fn many_subscribers_to_one_job_all_get_everything() {
    let app = spawn_app().await;
    let id = app.submit_command("sleep 0.3; seq 1 20000").await;
    let url = app.ws_url(&format!("/ws/jobs/{id}/"));
    let sessions = (0..50).map(|_| ws_read_all(url.clone()));
    let sessions = futures_util::future::join_all(sessions).await;
    let expected = seq_text(20_000);
    for session in sessions {
        assert!(session.output() == expected, "a subscriber lost lines");
        assert_eq!(
            session.statuses().last().map(String::as_str),
            Some("Success")
        );
    }
}
