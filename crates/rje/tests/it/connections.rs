//! Connection limits: idle, half-sent and surplus connections cannot hold
//! the server, and it keeps answering meanwhile.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Reads until the server closes the connection (or the deadline passes,
/// which fails the test); returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server never closed the connection");
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed_while_the_server_answers() {
    let app = spawn_app_with(|s| {
        s.connections.header_timeout = Duration::from_secs(1);
        s.api.body_timeout = Duration::from_secs(1);
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(app.addr).await.unwrap());
    }
    let mut half_headers = Vec::new();
    for _ in 0..10 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        half_headers.push(stream);
    }
    let mut half_bodies = Vec::new();
    for _ in 0..10 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream
            .write_all(
                b"POST /jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                  Content-Length: 100\r\n\r\n{\"command\": ",
            )
            .await
            .unwrap();
        half_bodies.push(stream);
    }
    // Kept alive after one request, then silent.
    let mut kept_alive = TcpStream::connect(app.addr).await.unwrap();
    kept_alive
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();

    // Meanwhile the server answers.
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let id = app.submit_command("echo still here").await;
    assert_eq!(app.wait_final(&id).await["stdout"], "still here\n");

    for stream in idle.iter_mut().chain(&mut half_headers) {
        read_until_closed(stream).await;
    }
    for stream in &mut half_bodies {
        let answer = read_until_closed(stream).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"error\""), "{answer}");
    }
    let answer = read_until_closed(&mut kept_alive).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let list: serde_json::Value = app.get("/jobs/").await.json().await.unwrap();
    assert_eq!(list["total_count"], 1, "no half-sent job was stored");
}

#[tokio::test]
async fn connections_past_the_limit_are_refused_at_once() {
    let app = spawn_app_with(|s| s.connections.max_connections = 8).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(app.addr).await.unwrap());
    }
    // Let the server accept them all.
    let mut probe = TcpStream::connect(app.addr).await.unwrap();
    let answer = read_until_closed(&mut probe).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many connections")
    );

    // Once they go, the server takes connections again.
    drop(held);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match app.client.get(app.url("/health")).send().await {
            Ok(response) if response.status() == 200 => break,
            _ => assert!(tokio::time::Instant::now() < deadline, "never recovered"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
