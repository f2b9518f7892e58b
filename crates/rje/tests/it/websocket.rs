//! The WebSocket contract: replay, then live; `since`; a message for every
//! status change; a normal close after the final status.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::*;

#[tokio::test]
async fn live_output_then_final_status_then_a_normal_close() {
    let app = spawn_app_with(|s| s.worker.concurrency = 1).await;
    let blocker = app.submit_command("sleep 300").await;
    app.wait_started(&blocker).await;
    // Connect while the job is still queued, to see every status change.
    let id = app
        .submit_command("for i in 1 2 3; do echo line $i; sleep 0.1; done; echo bye >&2")
        .await;
    let session = tokio::spawn(ws_read_all(app.ws_url(&format!("/ws/jobs/{id}/"))));
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.cancel(&blocker).await;
    let session = session.await.unwrap();

    assert_eq!(session.statuses(), ["Queued", "Running", "Success"]);
    assert_eq!(session.output(), "line 1\nline 2\nline 3\nbye\n");
    assert_eq!(session.close, Some(CloseCode::Normal));
    let first = &session.messages[0];
    for field in ["log", "status", "timestamp"] {
        assert!(
            first.get(field).is_some(),
            "the original's {field} is there"
        );
    }
    let last = session.messages.last().unwrap();
    assert_eq!(last["type"], "status");
    assert_eq!(last["exit_code"], 0);
    // Output comes before the final status.
    let final_index = session
        .messages
        .iter()
        .position(|m| m["status"] == "Success")
        .unwrap();
    assert_eq!(final_index, session.messages.len() - 1);
}

#[tokio::test]
async fn a_late_subscriber_gets_the_whole_replay() {
    let app = spawn_app().await;
    let id = app
        .submit_command("seq 1 5000; echo problem >&2; exit 4")
        .await;
    let done = app.wait_final(&id).await;
    assert_eq!(done["status"], "Failed");
    let session = ws_read_all(app.ws_url(&format!("/ws/jobs/{id}/"))).await;
    let stdout: String = session
        .messages
        .iter()
        .filter(|m| m["stream"] == "stdout")
        .map(|m| m["log"].as_str().unwrap())
        .collect();
    assert_eq!(stdout, seq_text(5000));
    assert_eq!(session.statuses(), ["Failed"]);
    assert_eq!(session.messages.last().unwrap()["exit_code"], 4);
    assert_eq!(session.close, Some(CloseCode::Normal));
}

#[tokio::test]
async fn since_resumes_after_the_given_seq() {
    let app = spawn_app().await;
    let id = app
        .submit_command("echo a; sleep 0.2; echo b; sleep 0.2; echo c")
        .await;
    app.wait_final(&id).await;
    let all = ws_read_all(app.ws_url(&format!("/ws/jobs/{id}/"))).await;
    let seqs = all.seqs();
    assert!(seqs.len() >= 2, "several chunks: {seqs:?}");
    let resume_after = seqs[0];
    let resumed = ws_read_all(app.ws_url(&format!("/ws/jobs/{id}/?since={resume_after}"))).await;
    assert_eq!(resumed.seqs(), seqs[1..]);
    let first_text = all.messages.iter().find(|m| m["type"] == "output").unwrap()["log"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(first_text + &resumed.output(), all.output());
}

#[tokio::test]
async fn a_slow_client_never_stalls_the_job() {
    let app = spawn_app().await;
    let id = app.submit_command("seq 1 300000").await;
    // Connect and read nothing while the job floods its output.
    let (mut socket, _) = tokio_tungstenite::connect_async(app.ws_url(&format!("/ws/jobs/{id}/")))
        .await
        .unwrap();
    let done = app.wait_final(&id).await;
    assert_eq!(done["status"], "Success");
    // Then read: the client catches up from the store, complete and in order.
    let mut output = String::new();
    let read = async {
        while let Some(message) = socket.next().await {
            match message.unwrap() {
                tokio_tungstenite::tungstenite::Message::Text(text) => {
                    let message: serde_json::Value = serde_json::from_str(&text).unwrap();
                    if message["type"] == "output" {
                        output.push_str(message["log"].as_str().unwrap());
                    }
                }
                tokio_tungstenite::tungstenite::Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(DEADLINE, read).await.unwrap();
    assert!(output == seq_text(300_000), "the slow client lost lines");
}

#[tokio::test]
async fn unknown_jobs_and_bad_since_are_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let unknown = app.ws_url("/ws/jobs/0195f5a4-1a2b-7c3d-8e4f-0123456789ab/");
    let err = tokio_tungstenite::connect_async(unknown).await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    let malformed = app.ws_url("/ws/jobs/not-a-job/");
    assert!(tokio_tungstenite::connect_async(malformed).await.is_err());
    let id = app.submit_command("true").await;
    let bad_since = app.ws_url(&format!("/ws/jobs/{id}/?since=-3"));
    let err = tokio_tungstenite::connect_async(bad_since)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
}
