//! The API's edges as a browser, a proxy or a busy client meets them: rate
//! limits, CORS and the headers every answer carries.

use std::process::Stdio;

use reqwest::{Method, StatusCode};
use rje_api::RateLimit;
use serde_json::Value;

use crate::helpers::*;

fn limited(per_second: f64, burst: u32) -> Option<RateLimit> {
    Some(RateLimit { per_second, burst })
}

async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request")
}

/// Sends requests until one is refused, and returns it.
async fn until_limited(app: &TestApp, headers: &[(&str, &str)]) -> reqwest::Response {
    for _ in 0..50 {
        let response = get_with(app, "/jobs/list/", headers).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            return response;
        }
    }
    panic!("never limited");
}

#[tokio::test]
async fn each_token_has_its_own_budget_and_the_probes_none() {
    let app = spawn_app_with(|s| {
        s.api.tokens = vec!["alpha".into(), "beta".into()];
        // One request a minute after the burst: nothing refills mid-test.
        s.api.rate_limit = limited(1.0 / 60.0, 3);
    })
    .await;
    let alpha = [("authorization", "Bearer alpha")];
    for _ in 0..3 {
        assert_eq!(get_with(&app, "/jobs/list/", &alpha).await.status(), 200);
    }
    let refused = get_with(&app, "/jobs/list/", &alpha).await;
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many requests")
    );
    assert_eq!(body["details"], serde_json::json!([]));

    // Another token is another client.
    let beta = [("authorization", "Bearer beta")];
    assert_eq!(get_with(&app, "/jobs/list/", &beta).await.status(), 200);
    // Made-up tokens spend their address's budget, then are refused too.
    let forged = [("authorization", "Bearer forged")];
    assert_eq!(until_limited(&app, &forged).await.status(), 429);

    for _ in 0..20 {
        assert_eq!(get_with(&app, "/health/", &[]).await.status(), 200);
        assert_ne!(get_with(&app, "/ready/", &[]).await.status(), 429);
    }
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let trusting = spawn_app_with(|s| {
        s.api.rate_limit = limited(1.0 / 60.0, 2);
        s.api.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let first = [("x-forwarded-for", "203.0.113.7")];
    until_limited(&trusting, &first).await;
    // The proxy's other client has its own budget.
    let second = [("x-forwarded-for", "203.0.113.8, 127.0.0.1")];
    assert_eq!(
        get_with(&trusting, "/jobs/list/", &second).await.status(),
        200
    );

    let trusting_none = spawn_app_with(|s| s.api.rate_limit = limited(1.0 / 60.0, 2)).await;
    until_limited(&trusting_none, &first).await;
    // The header is the client's word only: the peer's budget is spent.
    assert_eq!(
        get_with(&trusting_none, "/jobs/list/", &second)
            .await
            .status(),
        429
    );
}

#[tokio::test]
async fn browsers_on_listed_origins_may_call_with_a_token() {
    let app = spawn_app_with(|s| {
        s.api.tokens = vec!["secret".into()];
        s.api.cors_origins = vec!["https://ops.example.com".parse().unwrap()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/jobs/"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://ops.example.com").await.unwrap();
    assert_eq!(allowed.status(), 204);
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://ops.example.com"
    );
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );

    let refused = preflight("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );

    // The request itself still needs the token, and answers to the origin.
    let job = app
        .client
        .post(app.url("/jobs/"))
        .header("origin", "https://ops.example.com")
        .bearer_auth("secret")
        .json(&serde_json::json!({"command": "true"}))
        .send()
        .await
        .unwrap();
    assert_eq!(job.status(), 201);
    assert_eq!(
        job.headers()["access-control-allow-origin"],
        "https://ops.example.com"
    );

    // Without RJE_CORS_ORIGINS there is no cross-origin access at all.
    let closed = spawn_app().await;
    let response = closed
        .client
        .request(Method::OPTIONS, closed.url("/jobs/"))
        .header("origin", "https://ops.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let app = spawn_app_with(|s| s.api.tokens = vec!["secret".into()]).await;
    for (path, status) in [("/health/", 200), ("/jobs/list/", 401), ("/nowhere/", 401)] {
        let response = get_with(&app, path, &[]).await;
        assert_eq!(response.status(), status, "{path}");
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
    }
}

#[tokio::test]
async fn the_client_waits_out_a_rate_limit() {
    let app = spawn_app_with(|s| s.api.rate_limit = limited(1.0, 1)).await;
    // Spend the burst, so that the client's first request is refused.
    until_limited(&app, &[]).await;
    let began = std::time::Instant::now();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_rje"))
        .args(["list", "--json"])
        .env("RJE_URL", app.url(""))
        .env("XDG_CONFIG_HOME", app.path("config"))
        .env_remove("RJE_TOKEN")
        .env_remove("RJE_CONFIG")
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(DEADLINE, output)
        .await
        .expect("the client finishes")
        .expect("the client runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Refused first, it waited the second the server asked for.
    assert!(began.elapsed() >= std::time::Duration::from_millis(500));
    let listed: Value = serde_json::from_slice(&output.stdout).expect("a JSON list");
    assert!(listed["jobs"].is_array() || listed.is_array(), "{listed}");
}

async fn metrics_of(app: &TestApp) -> Samples {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    assert!(text.contains("# TYPE rje_jobs_queued gauge"), "{text}");
    scrape(&text)
}

#[tokio::test]
async fn metrics_move_when_jobs_run() {
    let app = spawn_app_with(|s| s.api.tokens = vec!["secret".into()]).await;
    let before = metrics_of(&app).await;
    let id = app
        .submit(serde_json::json!({"command": "echo hi", "priority": "High"}))
        .await;
    app.wait_final(&id_of(&id)).await;
    let blocked = app.submit_command("sleep 300").await;
    app.wait_started(&blocked).await;
    let after = metrics_of(&app).await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(text.contains("# TYPE rje_jobs_finished_total counter"));
    assert!(text.contains("# TYPE rje_job_duration_seconds histogram"));

    let moved =
        |name: &str, labels: &[&str]| total(&after, name, labels) - total(&before, name, labels);
    assert!(moved("rje_jobs_created_total", &["priority=\"High\""]) >= 1.0);
    assert!(
        moved(
            "rje_jobs_finished_total",
            &["status=\"Success\"", "priority=\"High\""]
        ) >= 1.0
    );
    assert!(moved("rje_job_duration_seconds_count", &["status=\"Success\""]) >= 1.0);
    assert!(moved("rje_job_start_delay_seconds_count", &["priority=\"High\""]) >= 1.0);
    assert!(moved("rje_job_output_bytes_total", &["stream=\"stdout\""]) >= 3.0);
    assert!(
        moved(
            "rje_http_requests_total",
            &["route=\"/jobs\"", "status=\"201\""]
        ) >= 2.0
    );
    // Read from this app's own store: exactly its one running job.
    assert_eq!(
        total(&after, "rje_jobs_running", &["priority=\"Medium\""]),
        1.0
    );
    assert_eq!(total(&after, "rje_jobs_queued", &[]), 0.0);
    assert!(
        !after
            .keys()
            .any(|k| k.starts_with("rje_ssh_connections{host=\"local\"")),
        "the local host is not an SSH host"
    );
    assert!(
        after
            .keys()
            .any(|k| k.starts_with("rje_job_duration_seconds_bucket") && k.contains("le=\"0.05\"")),
        "explicit buckets"
    );

    // The token guards /metrics like every route, unless it is public.
    let anonymous = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    app.cancel(&blocked).await;
    let public = spawn_app_with(|s| {
        s.api.tokens = vec!["secret".into()];
        s.api.public_metrics = true;
    })
    .await;
    let open = public
        .client
        .get(public.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
}

/// The WebSocket routes, which the document describes in prose.
const WEBSOCKETS: &[&str] = &["/ws/jobs/{id}/", "/ws/jobs/"];

/// Every other route the API serves, as the router has them (with `{id}`
/// and `{name}` for the path parameters), with its methods.
const ROUTES: &[(&str, &[&str])] = &[
    ("/jobs", &["get", "post"]),
    ("/jobs/list", &["get"]),
    ("/jobs/stats", &["get"]),
    ("/jobs/{id}", &["get", "put", "patch", "delete"]),
    ("/jobs/{id}/cancel", &["post"]),
    ("/jobs/{id}/retry", &["post"]),
    ("/jobs/prune", &["post"]),
    ("/schedules", &["get", "post"]),
    ("/schedules/{id}", &["get", "put", "patch", "delete"]),
    ("/schedules/{id}/pause", &["post"]),
    ("/schedules/{id}/resume", &["post"]),
    ("/runs", &["get", "post"]),
    ("/runs/{id}", &["get"]),
    ("/runs/{id}/cancel", &["post"]),
    ("/runs/{id}/retry", &["post"]),
    ("/jobs/{id}/logs", &["get"]),
    ("/workers", &["get"]),
    ("/hosts", &["get"]),
    ("/hosts/{name}/check", &["post"]),
    ("/metrics", &["get"]),
    ("/whoami", &["get"]),
    ("/tokens", &["get", "post"]),
    ("/tokens/{name}", &["delete"]),
    ("/audit", &["get"]),
    ("/health", &["get"]),
    ("/ready", &["get"]),
];

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = spawn_app_with(|s| s.api.tokens = vec!["secret".into()]).await;
    // Readable without a token: it holds no data.
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().unwrap();
    let described: std::collections::BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|key| matches!(key.as_str(), "get" | "post" | "put" | "patch" | "delete"))
                .map(move |method| (path.clone(), method.clone()))
        })
        .collect();
    let served: std::collections::BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .iter()
                .map(move |m| (path.to_string(), m.to_string()))
        })
        .collect();
    assert_eq!(described, served);

    // Each described operation is served: never the router's own 404 or 405.
    let job = app.submit_command("true").await;
    for (path, method) in &described {
        let url = app.url(&path.replace("{id}", &job).replace("{name}", "local"));
        let method: Method = method.to_uppercase().parse().unwrap();
        let response = app
            .client
            .request(method.clone(), url)
            .bearer_auth("secret")
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(
            status != 405 && !body.contains("no such route"),
            "{method} {path}: {status} {body}"
        );
    }

    // Every error an operation lists has the error body's schema.
    let create = &paths["/jobs"]["post"]["responses"];
    for status in ["400", "401", "403", "408", "413", "415", "429", "503"] {
        let schema = &create[status]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(schema, "#/components/schemas/ErrorBody", "{status}");
    }
    // The description tells of the WebSockets, which answer a request that
    // is not an upgrade with the JSON error.
    let description = document["info"]["description"].as_str().unwrap();
    for path in WEBSOCKETS {
        assert!(description.contains(path), "{path}");
        let response = app
            .client
            .get(app.url(&path.replace("{id}", &job)))
            .bearer_auth("secret")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .contains("WebSocket upgrade")
        );
    }
    // The server's own hosts and limits, and links from a created job.
    // Hosts are named only to a token's holder (finding 14 of #19).
    let submit = &document["components"]["schemas"]["SubmitRequest"]["properties"];
    assert_eq!(submit["host"]["enum"], Value::Null, "public: no host named");
    let own: Value = app.get("/openapi.json").await.json().await.unwrap();
    let own_submit = &own["components"]["schemas"]["SubmitRequest"]["properties"];
    assert_eq!(
        own_submit["host"]["enum"],
        serde_json::json!(["local", null])
    );
    assert_eq!(submit["timeout"]["maximum"], 604800);
    let links = &paths["/jobs"]["post"]["responses"]["201"]["links"];
    assert_eq!(links["GetJob"]["operationId"], "get_job");
}

#[tokio::test]
async fn the_docs_page_loads_its_assets_from_rje() {
    let app = spawn_app_with(|s| s.api.tokens = vec!["secret".into()]).await;
    for path in ["/docs", "/docs/"] {
        let page = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        let policy = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(policy.contains("script-src 'self'"), "{policy}");
        let html = page.text().await.unwrap();
        assert!(html.contains("<base href=\"/docs/\">"));
        // Every script and style the page names comes from rje itself.
        let assets: Vec<&str> = html
            .split(['"', '\''])
            .filter(|part| part.ends_with(".js") || part.ends_with(".css"))
            .collect();
        assert!(assets.len() >= 3, "{html}");
        for asset in assets {
            assert!(!asset.contains("//"), "an outside asset: {asset}");
            let url = app.url(&format!("/docs/{}", asset.trim_start_matches("./")));
            let response = app.client.get(url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{asset}");
            assert!(!response.bytes().await.unwrap().is_empty(), "{asset}");
        }
    }
    let initializer = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/openapi.json"));

    let private = spawn_app_with(|s| {
        s.api.tokens = vec!["secret".into()];
        s.api.public_docs = false;
    })
    .await;
    for path in ["/openapi.json", "/docs"] {
        let response = private.client.get(private.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
    }
}

/// Clients generated from the document must work (finding 17 of #19): no
/// schema refers to itself, directly or through others, as a recursive
/// "any JSON without NUL" did (openapi-python-client dropped `Parameters`
/// over it; openapi-typescript's types failed `tsc --strict`). The NUL rule
/// at depth is in the description, and the server still refuses a NUL.
/// `scripts/generated-clients.sh` runs both generators against a server.
#[tokio::test]
async fn parameters_are_described_in_a_form_generated_clients_take() {
    let app = spawn_app().await;
    let document: Value = app.get("/openapi.json").await.json().await.unwrap();
    let schemas = document["components"]["schemas"].as_object().unwrap();
    assert!(!schemas.contains_key("JsonWithoutNul"));
    let parameters = &schemas["Parameters"];
    assert_eq!(parameters["additionalProperties"], serde_json::json!({}));
    let env = &parameters["properties"]["env"];
    assert_eq!(env["additionalProperties"]["type"], "string");
    assert!(env["propertyNames"]["pattern"].is_string());
    let description = parameters["description"].as_str().unwrap();
    assert!(
        description.contains("NUL") && description.contains("400"),
        "{description}"
    );

    fn refs(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(fields) => {
                for (key, value) in fields {
                    match (key.as_str(), value) {
                        ("$ref", Value::String(target)) => {
                            found.push(target.rsplit('/').next().unwrap().to_owned())
                        }
                        _ => refs(value, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
            _ => {}
        }
    }
    // Depth-first from each schema: reaching it again is a cycle.
    for start in schemas.keys() {
        let mut stack = vec![start.clone()];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(name) = stack.pop() {
            let mut found = Vec::new();
            refs(&schemas[&name], &mut found);
            for target in found {
                assert_ne!(&target, start, "{start} refers to itself through {name}");
                if seen.insert(target.clone()) {
                    stack.push(target);
                }
            }
        }
    }

    let nul = serde_json::json!({
        "command": "true",
        "parameters": {"mine": [{"deep": "a\u{0}b"}]}
    });
    let response = app.post("/jobs/", &nul).await;
    assert_eq!(response.status(), 400);
}
