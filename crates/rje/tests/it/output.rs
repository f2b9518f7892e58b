//! Output: complete, in order, capped with an exact marker, through every
//! way of reading it.

use serde_json::{Value, json};

use crate::helpers::*;

const LINES: u32 = 200_000;

#[tokio::test]
async fn many_lines_arrive_complete_and_in_order_everywhere() {
    let app = spawn_app().await;
    let id = app.submit_command(&format!("seq 1 {LINES}")).await;
    // Subscribed while the job may still run; reads until the final close.
    let live = ws_read_all(app.ws_url(&format!("/ws/jobs/{id}/")));
    let job = app.wait_final(&id);
    let (live, job) = tokio::join!(live, job);
    let expected = seq_text(LINES);

    assert_eq!(job["status"], "Success");
    assert!(
        job["stdout"] == expected,
        "GET /jobs/{{id}}/ lost or reordered lines"
    );

    assert!(
        live.output() == expected,
        "the WebSocket lost or reordered lines"
    );
    let seqs = live.seqs();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "seq has gaps");
    assert_eq!(live.statuses().last().map(String::as_str), Some("Success"));

    // The logs route, page by page.
    let mut since = 0;
    let mut paged = String::new();
    loop {
        let page: Value = app
            .get(&format!("/jobs/{id}/logs/?since={since}&limit=100"))
            .await
            .json()
            .await
            .unwrap();
        for chunk in page["chunks"].as_array().unwrap() {
            assert_eq!(chunk["seq"].as_i64().unwrap(), since + 1);
            since = chunk["seq"].as_i64().unwrap();
            paged.push_str(chunk["log"].as_str().unwrap());
        }
        assert_eq!(page["next_since"], since);
        if page["complete"] == true {
            break;
        }
    }
    assert!(paged == expected, "the logs route lost or reordered lines");

    let text = app.text(&format!("/jobs/{id}/logs/")).await;
    assert!(
        text.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        text.text().await.unwrap() == expected,
        "text/plain logs differ"
    );
}

#[tokio::test]
async fn a_running_job_shows_its_output_so_far() {
    let app = spawn_app().await;
    let id = app
        .submit_command("echo first; echo warn >&2; sleep 300")
        .await;
    let running = app
        .wait_for(&id, "printing", |job| {
            job["stdout"] == "first\n" && job["stderr"] == "warn\n"
        })
        .await;
    assert_eq!(running["status"], "Running");
    let logs: Value = app
        .get(&format!("/jobs/{id}/logs/"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(logs["status"], "Running");
    assert_eq!(logs["complete"], false);
    let streams: Vec<_> = logs["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["stream"].as_str().unwrap().to_owned())
        .collect();
    assert!(streams.contains(&"stdout".into()) && streams.contains(&"stderr".into()));
    let only_err = app
        .text(&format!("/jobs/{id}/logs/?stream=stderr"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(only_err, "warn\n");
    app.cancel(&id).await;
}

#[tokio::test]
async fn past_the_cap_head_and_tail_are_kept_with_an_exact_marker() {
    let cap = 4096u64;
    let app = spawn_app_with(|s| s.worker.max_output_bytes = cap).await;
    let id = app.submit_command("seq 1 100000; echo done >&2").await;
    let done = app.wait_final(&id).await;
    assert_eq!(done["status"], "Success");
    let full = seq_text(100_000);
    let stdout = done["stdout"].as_str().unwrap();

    let marker_start = stdout.find("[rje: ").expect("a drop marker");
    let marker_end = marker_start + stdout[marker_start..].find('\n').unwrap() + 1;
    let marker = &stdout[marker_start..marker_end];
    let dropped: usize = marker
        .trim_start_matches("[rje: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(marker.ends_with("bytes of stdout dropped]\n"), "{marker}");
    let head = &stdout[..marker_start];
    let tail = &stdout[marker_end..];
    assert!(
        full.starts_with(head) && !head.is_empty(),
        "the head is the start"
    );
    assert!(
        full.ends_with(tail) && tail.ends_with("99999\n100000\n"),
        "the tail is the end"
    );
    assert_eq!(
        head.len() + dropped + tail.len(),
        full.len(),
        "the count is exact"
    );
    assert!((head.len() + tail.len()) as u64 <= cap, "the cap holds");
    assert_eq!(done["stderr"], "done\n");

    // The stored chunks obey the same cap, and say where the gap is.
    let logs: Value = app
        .get(&format!("/jobs/{id}/logs/"))
        .await
        .json()
        .await
        .unwrap();
    let stored: usize = logs["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["stream"] == "stdout")
        .map(|c| c["log"].as_str().unwrap().len())
        .sum();
    assert_eq!(stored, stdout.len());
    let gap = logs["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c.get("dropped_before").is_some())
        .expect("a chunk states the gap");
    assert_eq!(gap["dropped_before"], dropped);

    // WebSocket replay shows the same.
    let replay = ws_read_all(app.ws_url(&format!("/ws/jobs/{id}/"))).await;
    let mut replayed_stdout = String::new();
    for message in replay.messages.iter().filter(|m| m["stream"] == "stdout") {
        replayed_stdout.push_str(message["log"].as_str().unwrap());
    }
    assert_eq!(replayed_stdout, stdout);
}

#[tokio::test]
async fn partial_lines_are_not_lost() {
    let app = spawn_app().await;
    let job = app
        .submit(json!({"command": "printf 'no newline'; printf 'err tail' >&2"}))
        .await;
    let done = app.wait_final(&id_of(&job)).await;
    assert_eq!(done["stdout"], "no newline");
    assert_eq!(done["stderr"], "err tail");
}

#[tokio::test]
async fn invalid_since_and_limit_are_named() {
    let app = spawn_app().await;
    let id = app.submit_command("true").await;
    for (query, field) in [
        ("since=-1", "since"),
        ("since=x", "since"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("stream=stdin", "stream"),
    ] {
        let response = app.get(&format!("/jobs/{id}/logs/?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["details"][0]["field"], field);
    }
}

#[tokio::test]
async fn lists_carry_the_end_of_the_output_and_a_job_carries_it_all() {
    let app = spawn_app_with(|s| s.api.list_output_bytes = 100).await;
    let id = app.submit_command("seq 1 20000; echo short >&2").await;
    app.wait_final(&id).await;
    let full = seq_text(20_000);

    let list: Value = app.get("/jobs/").await.json().await.unwrap();
    let job = &list["jobs"][0];
    let stdout = job["stdout"].as_str().unwrap();
    assert!(stdout.len() <= 100 && full.ends_with(stdout), "{stdout:?}");
    assert!(stdout.ends_with("19999\n20000\n"));
    assert_eq!(job["stdout_truncated"], true);
    assert_eq!(job["stderr"], "short\n");
    assert_eq!(job["stderr_truncated"], false);

    let bare: Value = app.get("/jobs/?output=none").await.json().await.unwrap();
    assert!(bare["jobs"][0]["stdout"].is_null());
    assert!(bare["jobs"][0]["stderr"].is_null());
    let wrong = app.get("/jobs/?output=everything").await;
    assert_eq!(wrong.status(), 400);

    // One job: the whole output, streamed from the store.
    let response = app.get(&format!("/jobs/{id}/")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["stdout"], full);
    assert_eq!(job["stderr"], "short\n");
    assert_eq!(job["stdout_truncated"], false);
    assert_eq!(job["status"], "Success");

    // The text route streams the same, both streams in order.
    let text = app
        .client
        .get(app.url(&format!("/jobs/{id}/logs/")))
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, format!("{full}short\n"));
}

/// A GET of a running job is one snapshot: polled while a flood runs past
/// the cap, every body shows at most one drop marker, its lines in order,
/// and `stdout_bytes` is the size of the stdout it carries. (Paged from
/// the store, a body once mixed states: 9 MB against a 4 MiB cap, two
/// markers, lines out of order.)
#[tokio::test]
async fn a_running_job_is_read_at_one_instant() {
    let cap = 1024 * 1024u64;
    let app = spawn_app_with(|s| s.worker.max_output_bytes = cap).await;
    let id = app.submit_command("seq 1 40000000").await;
    let mut running_reads = 0;
    for _ in 0..200 {
        let job: Value = app.get(&format!("/jobs/{id}/")).await.json().await.unwrap();
        if job["status"] != "Running" {
            if running_reads > 0 || job["status"] != "Queued" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        }
        let Some(stdout) = job["stdout"].as_str() else {
            continue;
        };
        running_reads += 1;
        assert_eq!(
            job["stdout_bytes"].as_u64(),
            Some(stdout.len() as u64),
            "stdout_bytes is the size of the stdout shown"
        );
        let markers = stdout.matches("[rje: ").count();
        assert!(markers <= 1, "{markers} drop markers in one body");
        assert!(
            stdout.len() as u64 <= cap + 64,
            "{} bytes against a cap of {cap}",
            stdout.len()
        );
        // The head, then (past the cap) the marker and the tail; where the
        // marker is, a line may have been cut on either side of it.
        let (mut head, tail): (Vec<&str>, &str) = match stdout.find("[rje: ") {
            Some(at) => {
                let rest = &stdout[at..];
                let after = rest.find('\n').map_or("", |end| &rest[end + 1..]);
                let mut head: Vec<&str> = stdout[..at].lines().collect();
                head.pop();
                (head, after.split_once('\n').map_or("", |(_, whole)| whole))
            }
            None => (stdout.lines().collect(), ""),
        };
        head.extend(tail.lines());
        let numbers: Vec<u64> = head
            .into_iter()
            .map(|line| line.parse::<u64>().expect("a number"))
            .collect();
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "lines out of order"
        );
    }
    assert!(running_reads > 0, "the job was never seen running");
    app.cancel(&id).await;
}
