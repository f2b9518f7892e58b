//! Bearer tokens on every route and on the WebSocket; protected mode.

use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::*;

#[tokio::test]
async fn tokens_are_enforced_everywhere() {
    let app = spawn_app_with(|s| s.api.tokens = vec!["first".into(), "second".into()]).await;
    let id = app.submit_command("echo secret").await;
    app.wait_final(&id).await;
    let routes = [
        (Method::POST, "/jobs/".to_owned()),
        (Method::GET, "/jobs/".to_owned()),
        (Method::GET, "/jobs/list/".to_owned()),
        (Method::GET, format!("/jobs/{id}/")),
        (Method::PUT, format!("/jobs/{id}/")),
        (Method::PATCH, format!("/jobs/{id}/")),
        (Method::DELETE, format!("/jobs/{id}/")),
        (Method::POST, format!("/jobs/{id}/cancel/")),
        (Method::GET, format!("/jobs/{id}/logs/")),
        (Method::GET, format!("/ws/jobs/{id}/")),
        (Method::GET, "/no/such/route".to_owned()),
    ];
    for (method, path) in &routes {
        for token in [None, Some("wrong"), Some("firs"), Some("firstx")] {
            let mut request = app
                .client
                .request(method.clone(), app.url(path))
                .json(&json!({"command": "true"}));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with {token:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: serde_json::Value = response.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains("token"));
        }
    }
    // Nothing was changed by the refused requests.
    assert_eq!(app.job(&id).await["stdout"], "secret\n");

    let with_second = app
        .client
        .get(app.url(&format!("/jobs/{id}/")))
        .bearer_auth("second")
        .send()
        .await
        .unwrap();
    assert_eq!(with_second.status(), 200);

    // A query token is for the WebSocket only.
    let query_token = app
        .client
        .get(app.url(&format!("/jobs/{id}/?token=first")))
        .send()
        .await
        .unwrap();
    assert_eq!(query_token.status(), 401);

    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the liveness probe needs no token");
}

#[tokio::test]
async fn the_websocket_takes_the_token_by_header_or_query() {
    let app = spawn_app_with(|s| s.api.tokens = vec!["sesame".into()]).await;
    let id = app.submit_command("echo hi").await;
    app.wait_final(&id).await;

    let by_query = ws_read_all(app.ws_url(&format!("/ws/jobs/{id}/?token=sesame"))).await;
    assert_eq!(by_query.output(), "hi\n");

    let mut request = app
        .ws_url(&format!("/ws/jobs/{id}/"))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", "Bearer sesame".parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    drop(socket);

    for url in [
        app.ws_url(&format!("/ws/jobs/{id}/")),
        app.ws_url(&format!("/ws/jobs/{id}/?token=wrong")),
    ] {
        let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
    }
}

#[tokio::test]
async fn the_auth_scheme_is_case_insensitive_and_one_header_counts() {
    let app = spawn_app_with(|s| s.api.tokens = vec!["sesame".into()]).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = app
            .client
            .get(app.url("/jobs/"))
            .header("authorization", format!("{scheme} sesame"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
    let basic = app
        .client
        .get(app.url("/jobs/"))
        .header("authorization", "Basic c2VzYW1l")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);

    // Two Authorization headers: which one counts would be a guess.
    for (first, second) in [
        ("Bearer sesame", "Bearer wrong"),
        ("Bearer wrong", "Bearer sesame"),
    ] {
        let response = app
            .client
            .post(app.url("/jobs/"))
            .header("authorization", first)
            .header("authorization", second)
            .json(&json!({"command": "true"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{first} + {second}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("Authorization"),
            "{body}"
        );
    }
    let list: serde_json::Value = app
        .client
        .get(app.url("/jobs/"))
        .bearer_auth("sesame")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["total_count"], 0,
        "the refused submissions stored nothing"
    );
}

#[tokio::test]
async fn a_key_given_twice_is_refused_and_named() {
    let app = spawn_app().await;
    for (body, field) in [
        (
            r#"{"command": "true", "priority": "Low", "priority": "High"}"#,
            "priority",
        ),
        (
            r#"{"command": "true", "parameters": {"env": {"A": "1", "A": "2"}}}"#,
            "parameters.env.A",
        ),
    ] {
        let response = app
            .client
            .post(app.url("/jobs/"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["details"][0]["field"], field, "{answer}");
    }
    let list: serde_json::Value = app.get("/jobs/").await.json().await.unwrap();
    assert_eq!(list["total_count"], 0, "nothing was stored");
}
