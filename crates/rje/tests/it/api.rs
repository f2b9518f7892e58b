//! Every route of the contract, and every error status it can answer.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn create_returns_the_job_with_the_original_fields() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/jobs/",
            &json!({"command": "echo hi", "priority": "High", "timeout": 30}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let job: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/jobs/{}/", id_of(&job)));
    for field in [
        "id",
        "command",
        "timeout",
        "priority",
        "status",
        "parameters",
        "stdout",
        "stderr",
        "created_at",
        "modified_at",
        "started_at",
        "completed_at",
        "task_id",
        "remote_process_id",
        "exit_code",
        "error",
        "host",
        "attempts",
        "max_retries",
    ] {
        assert!(job.get(field).is_some(), "missing field {field}: {job}");
    }
    assert_eq!(job["command"], "echo hi");
    assert_eq!(job["priority"], "High");
    assert_eq!(job["timeout"], 30);
    assert_eq!(job["status"], "Queued");
    assert_eq!(job["host"], "local");
    assert_eq!(job["max_retries"], 3);
    assert!(
        job["created_at"].as_str().unwrap().ends_with('Z'),
        "RFC 3339 UTC"
    );

    let done = app.wait_final(&id_of(&job)).await;
    assert_eq!(done["status"], "Success");
    assert_eq!(done["exit_code"], 0);
    assert_eq!(done["stdout"], "hi\n");
    assert_eq!(done["stderr"], "");
    assert!(done["started_at"].is_string() && done["completed_at"].is_string());
}

#[tokio::test]
async fn defaults_follow_the_original_api() {
    let app = spawn_app().await;
    let job = app
        .submit(json!({"command": "true", "streaming": true}))
        .await;
    assert_eq!(job["priority"], "Medium");
    assert_eq!(job["timeout"], 60);
    assert_eq!(job["streaming"], true);
}

#[tokio::test]
async fn every_route_answers_with_and_without_its_trailing_slash() {
    let app = spawn_app().await;
    let id = app.submit_command("echo slash").await;
    app.wait_final(&id).await;
    for path in [
        "/jobs".to_owned(),
        "/jobs/".to_owned(),
        "/jobs/list".to_owned(),
        "/jobs/list/".to_owned(),
        "/jobs/stats".to_owned(),
        "/jobs/stats/".to_owned(),
        format!("/jobs/{id}"),
        format!("/jobs/{id}/"),
        format!("/jobs/{id}/logs"),
        format!("/jobs/{id}/logs/"),
        "/health".to_owned(),
        "/health/".to_owned(),
    ] {
        assert_eq!(app.get(&path).await.status(), 200, "GET {path}");
    }
    let created = app.post("/jobs", &json!({"command": "true"})).await;
    assert_eq!(created.status(), 201);
    let other = id_of(&created.json().await.unwrap());
    app.wait_final(&other).await;
    assert_eq!(
        app.cancel(&other).await.status(),
        409,
        "POST /jobs/{{id}}/cancel/ reaches the handler"
    );
    let response = app
        .send(Method::POST, &format!("/jobs/{other}/cancel"), None)
        .await;
    assert_eq!(response.status(), 409);
    let response = app
        .send(Method::DELETE, &format!("/jobs/{other}"), None)
        .await;
    assert_eq!(response.status(), 204);
}

#[tokio::test]
async fn list_pages_filters_orders_and_counts() {
    let app = spawn_app_with(|s| s.worker.concurrency = 1).await;
    let blocker = app.submit_command("sleep 300").await;
    app.wait_started(&blocker).await;
    let mut queued = Vec::new();
    for priority in ["Low", "High", "Medium", "High"] {
        queued.push(id_of(
            &app.submit(json!({"command": "true", "priority": priority}))
                .await,
        ));
    }
    let list: Value = app.get("/jobs/list/").await.json().await.unwrap();
    assert_eq!(list["total_count"], 5);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 5);
    assert_eq!(
        id_of(&list["jobs"][0]),
        queued[3],
        "newest first by default"
    );

    let page: Value = app
        .get("/jobs/?limit=2&offset=1&ordering=created_at")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total_count"], 5);
    let ids: Vec<_> = page["jobs"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(ids, [queued[0].clone(), queued[1].clone()]);

    // The same walk by cursor: each page's `next` starts the one after,
    // on either list path, and the last page says there is none.
    let first: Value = app
        .get("/jobs/?limit=2&ordering=created_at")
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["next"].as_str().expect("a next page").to_owned();
    let second: Value = app
        .get(&format!("/jobs/list/?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<_> = second["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(ids, [queued[1].clone(), queued[2].clone()]);
    assert_eq!(second["total_count"], 5);
    let cursor = second["next"].as_str().expect("a third page").to_owned();
    let last: Value = app
        .get(&format!(
            "/jobs/?limit=2&cursor={cursor}&ordering=created_at"
        ))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<_> = last["jobs"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(ids, [queued[3].clone()]);
    assert!(last["next"].is_null(), "{last}");
    // A cursor is for its own ordering, and not beside an offset.
    for query in [
        format!("cursor={cursor}&ordering=-created_at"),
        format!("cursor={cursor}&offset=2"),
        "cursor=bm90LWEtY3Vyc29y".to_owned(),
    ] {
        let response = app.get(&format!("/jobs/?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["details"][0]["field"], "cursor", "{query}: {body}");
    }

    let high: Value = app
        .get("/jobs/list/?priority=High")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(high["total_count"], 2);
    let running: Value = app
        .get("/jobs/list/?status=Running")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(running["total_count"], 1);
    assert_eq!(id_of(&running["jobs"][0]), blocker);
    let on_local: Value = app
        .get("/jobs/list/?host=local")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(on_local["total_count"], 5);
    // An unknown host is a mistake to name, not an empty answer.
    let elsewhere = app.get("/jobs/list/?host=elsewhere").await;
    assert_eq!(elsewhere.status(), 400);
    let elsewhere: Value = elsewhere.json().await.unwrap();
    assert_eq!(elsewhere["details"][0]["field"], "host");
    assert!(
        elsewhere["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("elsewhere"),
        "{elsewhere}"
    );

    let by_priority: Value = app
        .get("/jobs/list/?ordering=-priority&status=Queued")
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<_> = by_priority["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(
        ids,
        [
            queued[1].clone(),
            queued[3].clone(),
            queued[2].clone(),
            queued[0].clone()
        ]
    );
    for ordering in [
        "started_at",
        "-started_at",
        "completed_at",
        "-completed_at",
        "priority",
    ] {
        let response = app.get(&format!("/jobs/list/?ordering={ordering}")).await;
        assert_eq!(response.status(), 200, "ordering={ordering}");
    }
    app.cancel(&blocker).await;
}

#[tokio::test]
async fn bad_list_parameters_are_named() {
    let app = spawn_app().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("offset=-1", "offset"),
        ("status=Done", "status"),
        ("priority=urgent", "priority"),
        ("ordering=command", "ordering"),
    ] {
        let response = app.get(&format!("/jobs/list/?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["details"][0]["field"], field, "{query}: {body}");
        assert!(body["error"].is_string());
    }
}

#[tokio::test]
async fn queued_jobs_can_be_edited_and_running_ones_cannot() {
    let app = spawn_app_with(|s| s.worker.concurrency = 1).await;
    let blocker = app.submit_command("sleep 300").await;
    app.wait_started(&blocker).await;
    let id = app.submit_command("echo old").await;

    let response = app
        .send(
            Method::PUT,
            &format!("/jobs/{id}/"),
            Some(&json!({"command": "echo new", "priority": "High"})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let edited: Value = response.json().await.unwrap();
    assert_eq!(edited["command"], "echo new");
    assert_eq!(edited["priority"], "High");
    assert_eq!(edited["timeout"], 60, "absent fields stay as they were");

    let response = app
        .send(
            Method::PATCH,
            &format!("/jobs/{id}"),
            Some(&json!({"timeout": 7, "parameters": {"ticket": "A-1"}})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let edited: Value = response.json().await.unwrap();
    assert_eq!(edited["timeout"], 7);
    assert_eq!(edited["parameters"]["ticket"], "A-1");

    for (body, field) in [
        (json!({"status": "Success"}), "status"),
        (json!({"stdout": "forged"}), "stdout"),
        (json!({"timeout": 0}), "timeout"),
        (json!({"command": ""}), "command"),
        (json!({"priority": "Urgent"}), "priority"),
    ] {
        let response = app
            .send(Method::PATCH, &format!("/jobs/{id}/"), Some(&body))
            .await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["details"][0]["field"], field);
    }
    assert_eq!(
        app.job(&id).await["command"],
        "echo new",
        "refused edits change nothing"
    );

    let response = app
        .send(
            Method::PUT,
            &format!("/jobs/{blocker}/"),
            Some(&json!({"command": "x"})),
        )
        .await;
    assert_eq!(response.status(), 409);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["details"][0]["field"], "status");
    assert_eq!(app.job(&blocker).await["command"], "sleep 300");

    app.cancel(&blocker).await;
    let done = app.wait_final(&id).await;
    assert_eq!(done["stdout"], "new\n");
}

#[tokio::test]
async fn a_job_read_changed_and_put_back_whole_is_an_edit() {
    let app = spawn_app_with(|s| {
        s.worker.concurrency = 1;
        // A second host to move the job to; it stays queued, never reached.
        s.inventory = rje_ssh::Inventory {
            hosts: vec![rje_ssh::HostConfig::new("spare", "127.0.0.1")],
            default_host: None,
        };
    })
    .await;
    let blocker = app.submit_command("sleep 300").await;
    app.wait_started(&blocker).await;
    let id = app.submit_command("echo hi").await;

    let mut job = app.job(&id).await;
    let created_at = job["created_at"].as_str().unwrap().to_owned();
    assert_eq!(
        created_at.rsplit_once('.').unwrap().1.len(),
        "123456Z".len(),
        "times carry microseconds: {created_at}"
    );
    job["priority"] = json!("High");
    job["host"] = json!("spare");
    let response = app
        .send(Method::PUT, &format!("/jobs/{id}/"), Some(&job))
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let edited = app.job(&id).await;
    assert_eq!(
        (&edited["priority"], &edited["host"]),
        (&json!("High"), &json!("spare"))
    );
    assert_eq!(edited["created_at"], created_at);

    for (field, forged) in [
        ("status", json!("Success")),
        ("attempts", json!(9)),
        ("created_at", json!("2020-01-01T00:00:00.000000Z")),
        ("host", json!("nowhere")),
    ] {
        let mut body = edited.clone();
        body[field] = forged;
        let response = app
            .send(Method::PUT, &format!("/jobs/{id}/"), Some(&body))
            .await;
        assert_eq!(response.status(), 400, "{field}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["details"][0]["field"], field, "{error}");
    }
    let after = app.job(&id).await;
    assert_eq!(
        after["modified_at"], edited["modified_at"],
        "refused edits change nothing"
    );
    app.cancel(&blocker).await;
}

#[tokio::test]
async fn delete_removes_a_job_and_its_logs_but_not_a_running_one() {
    let app = spawn_app().await;
    let id = app.submit_command("echo bye").await;
    app.wait_final(&id).await;
    let response = app
        .send(Method::DELETE, &format!("/jobs/{id}/"), None)
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(app.get(&format!("/jobs/{id}/")).await.status(), 404);
    assert_eq!(app.get(&format!("/jobs/{id}/logs/")).await.status(), 404);
    assert_eq!(
        app.send(Method::DELETE, &format!("/jobs/{id}/"), None)
            .await
            .status(),
        404
    );

    let running = app.submit_command("sleep 300").await;
    app.wait_started(&running).await;
    let response = app
        .send(Method::DELETE, &format!("/jobs/{running}/"), None)
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(app.job(&running).await["status"], "Running");
    app.cancel(&running).await;
}

#[tokio::test]
async fn cancel_of_a_finished_job_is_a_conflict() {
    let app = spawn_app().await;
    let id = app.submit_command("true").await;
    app.wait_final(&id).await;
    let response = app.cancel(&id).await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["details"][0]["message"], "is Success");
    assert_eq!(app.job(&id).await["status"], "Success");
}

#[tokio::test]
async fn bad_input_is_a_clear_400_and_stores_nothing() {
    let app = spawn_app_with(|s| s.api.limits.max_command_bytes = 100).await;
    for (body, field) in [
        (json!({}), "command"),
        (json!({"command": ""}), "command"),
        (json!({"command": 42}), "command"),
        (json!({"command": "x".repeat(101)}), "command"),
        (json!({"command": "x", "timeout": 0}), "timeout"),
        (json!({"command": "x", "timeout": 999_999_999}), "timeout"),
        (json!({"command": "x", "priority": "Urgent"}), "priority"),
        (json!({"command": "x", "host": "nowhere"}), "host"),
        (json!({"command": "x", "parameters": "flat"}), "parameters"),
        (json!({"command": "x", "max_retries": -1}), "max_retries"),
        (json!({"command": "x", "status": "Success"}), "status"),
        (json!({"command": "x", "colour": "red"}), "colour"),
    ] {
        let response = app.post("/jobs/", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["details"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["field"] == field),
            "{body} should name {field}: {error}"
        );
    }
    let several = app
        .post("/jobs/", &json!({"command": "", "timeout": -5}))
        .await;
    let error: Value = several.json().await.unwrap();
    assert_eq!(
        error["details"].as_array().unwrap().len(),
        2,
        "one detail per field"
    );

    let not_json = app
        .client
        .post(app.url("/jobs/"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let array = app.post("/jobs/", &json!(["echo"])).await;
    assert_eq!(array.status(), 400);

    let list: Value = app.get("/jobs/list/").await.json().await.unwrap();
    assert_eq!(list["total_count"], 0, "nothing was stored");
}

#[tokio::test]
async fn unsupported_media_type_and_oversized_bodies_are_refused() {
    let app = spawn_app_with(|s| s.api.max_body_bytes = 2048).await;
    let plain = app
        .client
        .post(app.url("/jobs/"))
        .header("content-type", "text/plain")
        .body(r#"{"command": "true"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 415);
    let body: Value = plain.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("application/json"));

    let missing = app
        .client
        .post(app.url("/jobs/"))
        .body(r#"{"command": "true"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 415);

    let huge = app
        .post(
            "/jobs/",
            &json!({"command": "true", "parameters": {"blob": "x".repeat(4096)}}),
        )
        .await;
    assert_eq!(huge.status(), 413);
    let body: Value = huge.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("2048"));

    let list: Value = app.get("/jobs/list/").await.json().await.unwrap();
    assert_eq!(list["total_count"], 0);
}

#[tokio::test]
async fn unknown_jobs_routes_and_methods_get_json_errors() {
    let app = spawn_app().await;
    let unknown = "0195f5a4-1a2b-7c3d-8e4f-0123456789ab";
    for path in [
        format!("/jobs/{unknown}/"),
        "/jobs/not-a-uuid/".to_owned(),
        format!("/jobs/{unknown}/logs/"),
        "/no/such/route".to_owned(),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string() && body["details"].is_array());
    }
    assert_eq!(app.cancel(unknown).await.status(), 404);
    assert_eq!(app.cancel("nonsense").await.status(), 404);
    assert_eq!(
        app.send(
            Method::PUT,
            &format!("/jobs/{unknown}/"),
            Some(&json!({"timeout": 5}))
        )
        .await
        .status(),
        404
    );

    for (method, path) in [
        (Method::PUT, "/jobs/list/"),
        (Method::DELETE, "/jobs/"),
        (
            Method::GET,
            "/jobs/00000000-0000-0000-0000-000000000000/cancel/",
        ),
        (Method::POST, "/health"),
    ] {
        let response = app.send(method.clone(), path, None).await;
        assert_eq!(response.status(), 405, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "method not allowed");
    }
}

#[tokio::test]
async fn health_answers() {
    let app = spawn_app().await;
    let response = app.get("/health").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert!(response_has_request_id(&app).await);
}

async fn response_has_request_id(app: &TestApp) -> bool {
    app.get("/health")
        .await
        .headers()
        .contains_key("x-request-id")
}

#[tokio::test]
async fn ready_and_workers_report_the_live_workers() {
    let app = spawn_app().await;
    let id = app.submit_command("sleep 60").await;
    app.wait_started(&id).await;
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["store"], "ok");
    assert_eq!(body["bus"], "ok");
    assert_eq!(body["workers"], 1);

    let workers: Value = app.get("/workers/").await.json().await.unwrap();
    let workers = workers["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0]["concurrency"], 16);
    assert_eq!(workers[0]["jobs"], json!([id]));
    app.cancel(&id).await;

    let api_only = spawn_app_with(|s| s.run_worker = false).await;
    let ready = api_only.get("/ready").await;
    assert_eq!(ready.status(), 503, "no worker, not ready");
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["workers"], 0);
    assert_eq!(body["store"], "ok");
}

#[tokio::test]
async fn the_dashboards_reads_search_count_and_cut_the_output() {
    let app = spawn_app().await;
    let long = app
        .submit_command("seq 1 3000; echo Needle-found >&2")
        .await;
    let short = app.submit_command("echo haystack").await;
    app.wait_final(&long).await;
    app.wait_final(&short).await;

    let found: Value = app.get("/jobs/?search=2999").await.json().await.unwrap();
    assert_eq!(
        found["total_count"], 0,
        "a search reads commands, not output"
    );
    let found: Value = app.get("/jobs/?search=SEQ%201").await.json().await.unwrap();
    assert_eq!(found["total_count"], 1);
    assert_eq!(found["jobs"][0]["id"], long);
    let refused = app.get(&format!("/jobs/?search={}", "x".repeat(201))).await;
    assert_eq!(refused.status(), 400);

    let stats: Value = app.get("/jobs/stats/").await.json().await.unwrap();
    assert_eq!(stats["by_status"]["Success"], 2);
    assert_eq!(stats["by_status"]["Queued"], 0);
    assert_eq!(stats["total"], 2);
    assert_eq!(
        stats["queued_by_priority"],
        json!({"High": 0, "Medium": 0, "Low": 0})
    );

    let bare: Value = app
        .get(&format!("/jobs/{long}/?output=none"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bare["stdout"], Value::Null);
    assert_eq!(bare["stdout_bytes"], seq_text(3000).len());
    assert_eq!(bare["status"], "Success");
    let whole: Value = app
        .get(&format!("/jobs/{long}/"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        whole["stdout"],
        seq_text(3000),
        "without ?output the whole, as before"
    );
    assert_eq!(
        app.get(&format!("/jobs/{long}/?output=all")).await.status(),
        400
    );

    let end: Value = app
        .get(&format!("/jobs/{long}/logs/?last=1"))
        .await
        .json()
        .await
        .unwrap();
    let chunks = end["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0]["log"], "Needle-found\n", "the very last chunk");
    assert_eq!(end["next_since"], chunks[0]["seq"]);
    assert_eq!(end["complete"], true);
    let stdout_end: Value = app
        .get(&format!("/jobs/{long}/logs/?last=1&stream=stdout"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        stdout_end["chunks"][0]["log"]
            .as_str()
            .unwrap()
            .ends_with("2999\n3000\n")
    );
    assert_eq!(
        app.get(&format!("/jobs/{long}/logs/?last=0"))
            .await
            .status(),
        400
    );
}
