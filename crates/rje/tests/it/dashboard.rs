//! The dashboard in a real browser against the real app: what an operator
//! sees and does, checked through the page itself.

use std::time::Duration;

use fantoccini::Locator;
use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

use crate::browser::Browser;
use crate::helpers::*;

/// The page's text, for failure messages and simple checks.
const BODY_TEXT: &str = "return document.body.innerText";

/// The badge text of the list's row for `id`, or null.
fn row_status(id: &str) -> String {
    format!(
        "const row = document.querySelector('tr[data-id=\"{id}\"]'); \
         return row ? row.cells[0].innerText : null"
    )
}

#[tokio::test]
async fn the_list_shows_jobs_and_their_status_changes_live() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    let done = app.submit_command("echo quick").await;
    app.wait_final(&done).await;
    browser.goto(&app.url("/")).await;
    assert_eq!(
        browser.current_path().await,
        "/ui/",
        "/ redirects to the dashboard"
    );
    assert_eq!(
        browser.until("the finished job", &row_status(&done)).await,
        "Success"
    );
    // Mark this page: a reload would lose the mark.
    browser
        .js("window.__sameDocument = true; return true")
        .await;
    let id = app
        .submit(json!({"command": "sleep 1.5; echo late", "priority": "High"}))
        .await;
    let id = id_of(&id);
    browser
        .until(
            "the new job in the list",
            &format!(
                "return ['Queued', 'Running'].includes(({})())",
                js_fn(&row_status(&id))
            ),
        )
        .await;
    browser
        .until(
            "the new job to turn Success",
            &format!("return ({})() === 'Success'", js_fn(&row_status(&id))),
        )
        .await;
    assert_eq!(
        browser.js("return window.__sameDocument === true").await,
        true,
        "the row changed without a reload"
    );
    // The counts on top follow too.
    browser
        .until(
            "the Success count to reach 2",
            "return document.querySelector('[data-count=Success]').innerText === '2'",
        )
        .await;
    let row = browser
        .js(&format!(
            "return [...document.querySelector('tr[data-id=\"{id}\"]').cells].map(c => c.innerText)"
        ))
        .await;
    assert_eq!(row[1], "sleep 1.5; echo late");
    assert_eq!(row[2], "local");
    assert_eq!(row[3], "High");
    assert_eq!(row[6], "0", "the exit code");
    // Times are local, with the UTC value on hover.
    let title = browser
        .js("return document.querySelector('tbody time').title")
        .await;
    assert!(title.as_str().unwrap().ends_with(" UTC"), "{title}");
    browser.screenshot("jobs").await;
    browser
        .client
        .set_window_size(390, 844)
        .await
        .expect("phone width");
    browser.goto(&app.url("/ui/")).await;
    browser
        .until("the list at phone width", &row_status(&id))
        .await;
    let overflow = browser
        .js("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        .await;
    assert_eq!(overflow, true, "nothing is wider than a phone");
    browser.screenshot("jobs-phone").await;
    browser.close().await;
}

/// A function expression whose body is `script`.
fn js_fn(script: &str) -> String {
    format!("() => {{ {script} }}")
}

#[tokio::test]
async fn filters_and_paging_ask_the_server() {
    let app = spawn_app_with(|settings| settings.run_worker = false).await;
    // Queued jobs only (no worker runs them): the list is stable.
    for n in 0..30 {
        let priority = if n % 3 == 0 { "High" } else { "Low" };
        let command = if n == 7 {
            "echo Needle-in-a-haystack".to_owned()
        } else {
            format!("echo job-{n}")
        };
        app.submit(json!({"command": command, "priority": priority}))
            .await;
    }
    let browser = Browser::start().await;
    browser.goto(&app.url("/ui/")).await;
    let rows = "return document.querySelectorAll('#jobs tbody tr').length";
    browser
        .until(
            "the first page",
            "return document.querySelectorAll('#jobs tbody tr').length === 25",
        )
        .await;
    assert_eq!(
        browser
            .js("return document.getElementById('range').innerText")
            .await,
        "1–25 of 30"
    );
    browser.click("#next").await;
    browser
        .until(
            "the second page",
            &format!("return ({})() === 5", js_fn(rows)),
        )
        .await;
    // The second page is read by the first page's cursor, not an offset.
    let path = browser.current_path().await;
    assert!(
        path.starts_with("/ui/?cursor=") && path.ends_with("&at=25"),
        "{path}"
    );
    assert_eq!(
        browser
            .js("return document.getElementById('range').innerText")
            .await,
        "26–30 of 30"
    );
    assert_eq!(
        browser
            .js("return document.getElementById('next').disabled")
            .await,
        true
    );
    // Previous goes back to the first page, and so does the back button.
    browser.click("#prev").await;
    browser
        .until(
            "the first page by Previous",
            &format!("return ({})() === 25", js_fn(rows)),
        )
        .await;
    assert_eq!(browser.current_path().await, "/ui/");
    browser.click("#next").await;
    browser
        .until(
            "the second page again",
            &format!("return ({})() === 5", js_fn(rows)),
        )
        .await;
    browser.client.back().await.expect("back");
    browser
        .until(
            "the first page again",
            &format!("return ({})() === 25", js_fn(rows)),
        )
        .await;

    browser.type_into("input[name=search]", "needle").await;
    browser
        .until(
            "one job found",
            &format!("return ({})() === 1", js_fn(rows)),
        )
        .await;
    assert!(
        browser
            .js("return document.querySelector('#jobs tbody').innerText")
            .await
            .as_str()
            .unwrap()
            .contains("echo Needle-in-a-haystack")
    );
    browser.type_into("input[name=search]", "").await;
    browser
        .js(
            "const s = document.querySelector('select[name=priority]'); s.value = 'High'; \
             s.dispatchEvent(new Event('input', {bubbles: true})); return true",
        )
        .await;
    browser
        .until(
            "the High jobs",
            &format!("return ({})() === 10", js_fn(rows)),
        )
        .await;
    let priorities = browser
        .js("return [...document.querySelectorAll('#jobs tbody tr')].map(r => r.cells[3].innerText)")
        .await;
    assert!(
        priorities.as_array().unwrap().iter().all(|p| p == "High"),
        "{priorities}"
    );
    assert!(browser.current_path().await.contains("priority=High"));
    // The status counts are links that filter.
    assert_eq!(
        browser
            .js("return document.querySelector('[data-count=Queued]').innerText")
            .await,
        "30"
    );
    browser.click("#counts a[data-status=Running]").await;
    browser
        .until(
            "no Running jobs",
            "return !document.getElementById('empty').hidden",
        )
        .await;
    browser.close().await;
}

#[tokio::test]
async fn a_job_page_streams_output_as_it_is_printed() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    let id = app
        .submit_command(
            "for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.4; done; echo oops >&2; \
             printf '\\033[31mred\\033[0m plain\\n'; printf 'progress 10%%\\rprogress 100%%\\n'",
        )
        .await;
    browser.goto(&app.url(&format!("/ui/jobs/{id}"))).await;
    // The first line shows while the job still runs.
    let seen_running = browser
        .until(
            "line-1 while the job runs",
            "const text = document.getElementById('output').innerText; \
             return text.includes('line-1') ? document.getElementById('status').innerText : null",
        )
        .await;
    assert_eq!(
        seen_running, "Running",
        "output arrives live, not at the end"
    );
    browser
        .until(
            "the final status",
            "return document.getElementById('status').innerText === 'Success'",
        )
        .await;
    let lines = browser
        .js("return [...document.querySelectorAll('#output .ln')].map(l => [l.className, l.innerText])")
        .await;
    let lines: Vec<(String, String)> = serde_json::from_value(lines).unwrap();
    let texts: Vec<&str> = lines.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        texts,
        [
            "line-1",
            "line-2",
            "line-3",
            "line-4",
            "line-5",
            "line-6",
            "oops",
            "red plain",
            "progress 100%"
        ],
        "every line once, in order, escapes and \\r rendered"
    );
    assert_eq!(lines[6].0, "ln err", "stderr is marked");
    assert_eq!(lines[0].0, "ln out");
    assert_eq!(
        browser
            .js("return document.querySelector('#output .f1').innerText")
            .await,
        "red",
        "the ANSI colour became a class"
    );
    let fields = browser
        .js("return document.getElementById('fields').innerText")
        .await;
    assert!(
        fields.as_str().unwrap().contains("Exit code\n0"),
        "{fields}"
    );
    browser.screenshot("job").await;
    // Hiding stderr hides its lines only.
    browser.click("#show-stderr").await;
    assert_eq!(
        browser
            .js("return [...document.querySelectorAll('#output .ln')].filter(l => l.offsetParent).length")
            .await,
        8
    );
    browser.close().await;
}

#[tokio::test]
async fn cancel_from_the_page_kills_the_process_group() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    let id = app
        .submit_command("sleep 300 & sleep 300 & echo started; wait")
        .await;
    let job = app
        .wait_for(&id, "its process id and output", |job| {
            job["remote_process_id"].is_string()
                && job["stdout"]
                    .as_str()
                    .is_some_and(|s| s.contains("started"))
        })
        .await;
    let pgid = job["remote_process_id"].as_str().unwrap().to_owned();
    assert!(!live_processes_in_group(&pgid).is_empty());
    browser.goto(&app.url(&format!("/ui/jobs/{id}"))).await;
    browser
        .until(
            "the running job",
            "return !document.getElementById('cancel').hidden",
        )
        .await;
    browser.click("#cancel").await;
    browser.accept_confirm().await;
    browser
        .until(
            "Cancelled on the page",
            "return document.getElementById('status').innerText === 'Cancelled'",
        )
        .await;
    wait_group_gone(&pgid).await;
    assert_eq!(app.job(&id).await["status"], "Cancelled");
    // Delete, from the same page, returns to the list.
    browser.click("#delete").await;
    browser.accept_confirm().await;
    browser
        .until("the list", "return location.pathname === '/ui/'")
        .await;
    assert_eq!(app.get(&format!("/jobs/{id}/")).await.status(), 404);
    browser.close().await;
}

#[tokio::test]
async fn the_submit_form_shows_the_servers_errors_and_creates_jobs() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/ui/submit")).await;
    browser
        .until(
            "the host list",
            "return document.querySelector('#host option[value=local]')",
        )
        .await;
    browser
        .type_into("#command", "echo \"from the form: $GREETING\"")
        .await;
    browser.type_into("#timeout", "0").await;
    browser.click("#add-env").await;
    browser.type_into(".env-name", "GREETING").await;
    browser.type_into(".env-value", "hello").await;
    browser.click("button[type=submit]").await;
    let error = browser
        .until(
            "the timeout's error",
            "return document.querySelector('[data-error-for=timeout]').innerText",
        )
        .await;
    assert!(
        error.as_str().unwrap().contains("from 1 to 604800"),
        "{error}"
    );
    assert_eq!(
        browser
            .js("return document.getElementById('timeout').getAttribute('aria-invalid')")
            .await,
        "true"
    );
    assert_eq!(
        browser.current_path().await,
        "/ui/submit",
        "nothing was submitted"
    );
    let jobs = app.get("/jobs/").await.json::<Value>().await.unwrap();
    assert_eq!(jobs["total_count"], 0, "a refused form creates no job");
    browser.screenshot("submit").await;

    browser.type_into("#timeout", "30").await;
    browser.click("button[type=submit]").await;
    let path = browser
        .until(
            "the new job's page",
            "return location.pathname.startsWith('/ui/jobs/') && location.pathname",
        )
        .await;
    let id = path
        .as_str()
        .unwrap()
        .trim_start_matches("/ui/jobs/")
        .to_owned();
    let job = app.wait_final(&id).await;
    assert_eq!(job["timeout"], 30);
    assert_eq!(job["parameters"], json!({"env": {"GREETING": "hello"}}));
    browser
        .until(
            "the job's output",
            "return document.getElementById('output').innerText.includes('from the form: hello')",
        )
        .await;
    // Run again submits the same job anew, once the page shows it ended.
    browser
        .until(
            "Run again on the finished job",
            "return !document.getElementById('rerun').hidden",
        )
        .await;
    browser.click("#rerun").await;
    let again = browser
        .until(
            "the second job's page",
            &format!(
                "return location.pathname.startsWith('/ui/jobs/') && \
                 !location.pathname.endsWith('{id}') && location.pathname"
            ),
        )
        .await;
    let again = again
        .as_str()
        .unwrap()
        .trim_start_matches("/ui/jobs/")
        .to_owned();
    let second = app.wait_final(&again).await;
    for field in ["command", "priority", "timeout", "parameters", "host"] {
        assert_eq!(second[field], job[field], "{field} is the same");
    }
    assert_eq!(
        second["retry_of"], job["id"],
        "the new job names the one it runs again"
    );
    browser.close().await;
}

#[tokio::test]
async fn a_token_is_asked_for_and_a_wrong_one_refused() {
    let app = spawn_app_with(|settings| settings.api.tokens = vec!["right-token".into()]).await;
    let id = app.submit_command("echo behind a token").await;
    app.wait_final(&id).await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/ui/")).await;
    browser
        .until(
            "the sign-in page",
            "return location.pathname === '/ui/login'",
        )
        .await;
    browser.type_into("#token", "wrong-token").await;
    browser.click("button[type=submit]").await;
    let refused = browser
        .until(
            "the refusal",
            "return document.getElementById('login-error').innerText",
        )
        .await;
    assert!(refused.as_str().unwrap().contains("refused"), "{refused}");
    assert_eq!(browser.current_path().await, "/ui/login?next=%2Fui%2F");
    browser.screenshot("login").await;
    browser.type_into("#token", "right-token").await;
    browser.click("button[type=submit]").await;
    assert_eq!(
        browser.until("the list, signed in", &row_status(&id)).await,
        "Success"
    );
    // The live stream takes the token too.
    browser
        .until(
            "the live indicator",
            "const live = document.getElementById('live'); \
             return !live.hidden && !live.classList.contains('off')",
        )
        .await;
    let text = browser.js(BODY_TEXT).await;
    assert!(text.as_str().unwrap().contains("Sign out"));
    browser.close().await;
}

#[tokio::test]
async fn a_huge_output_keeps_the_page_bounded_and_responsive() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    // The page is open before the flood starts: all of it arrives live.
    let id = app.submit_command("sleep 2; seq 1 200000").await;
    browser.goto(&app.url(&format!("/ui/jobs/{id}"))).await;
    browser
        .until(
            "the page",
            "return document.getElementById('status').innerText",
        )
        .await;
    assert!(
        app.job(&id).await["status"] != "Success",
        "the job was still running when the page opened"
    );
    browser
        .until(
            "the last line",
            "const last = document.querySelector('#output .ln:last-child'); \
             return last && last.innerText === '200000' \
                 && document.getElementById('status').innerText === 'Success'",
        )
        .await;
    let lines = browser
        .js("return document.querySelectorAll('#output .ln').length")
        .await;
    assert!(lines.as_u64().unwrap() <= 5000, "{lines} lines in the DOM");
    let note = browser
        .js("return document.getElementById('output-note').innerText")
        .await;
    assert!(
        note.as_str()
            .unwrap()
            .contains("earlier lines are not shown"),
        "{note}"
    );
    // Still answering: a click toggles following, and the page scrolls.
    browser.click("#follow").await;
    assert_eq!(
        browser
            .js("return document.getElementById('follow').checked")
            .await,
        false
    );
    browser
        .js("const o = document.getElementById('output'); o.scrollTop = 0; return o.scrollTop")
        .await;

    // Opened afterwards, the page reads only the end of the output.
    browser.goto(&app.url(&format!("/ui/jobs/{id}"))).await;
    browser
        .until(
            "the end of the output",
            "const last = document.querySelector('#output .ln:last-child'); \
             return last && last.innerText === '200000'",
        )
        .await;
    let shown = browser
        .js("return document.querySelectorAll('#output .ln').length")
        .await;
    assert!(shown.as_u64().unwrap() < 200_000 / 2, "{shown} lines read");
    let note = browser
        .js("return document.getElementById('output-note').innerText")
        .await;
    assert!(
        note.as_str().unwrap().contains("only its end is shown"),
        "{note}"
    );
    browser.screenshot("job-long").await;
    browser.close().await;
}

#[tokio::test]
async fn hosts_and_workers_pages_show_health_and_the_queue() {
    // An SSH host nobody listens for: its check fails at connecting.
    let mut nowhere = rje_ssh::HostConfig::new("nowhere", "127.0.0.1");
    nowhere.port = rje_testkit::free_port();
    nowhere.durable = true;
    let app = spawn_app_with(move |settings| {
        settings.inventory = rje_ssh::Inventory {
            hosts: vec![nowhere],
            default_host: None,
        };
    })
    .await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/ui/hosts")).await;
    browser
        .until(
            "the local host",
            "return document.querySelector('tr[data-host=local]')",
        )
        .await;
    let tags = browser
        .until(
            "the hosts' tags",
            "const n = document.querySelector('tr[data-host=nowhere] th'); \
             const l = document.querySelector('tr[data-host=local] th'); \
             return n && l && [n.innerText, l.innerText]",
        )
        .await;
    assert!(tags[0].as_str().unwrap().contains("durable"), "{tags}");
    assert!(!tags[1].as_str().unwrap().contains("durable"), "{tags}");
    browser.click("tr[data-host=local] button").await;
    let result = browser
        .until(
            "the check's result",
            "const r = document.querySelector('tr[data-host=local] .check-result'); \
             return r.classList.contains('ok') && r.innerText",
        )
        .await;
    assert!(result.as_str().unwrap().starts_with("ok in "), "{result}");
    browser.click("tr[data-host=nowhere] button").await;
    let failure = browser
        .until(
            "the failed check",
            "const r = document.querySelector('tr[data-host=nowhere] .check-result'); \
             return r.classList.contains('bad') && r.innerText",
        )
        .await;
    assert!(
        failure.as_str().unwrap().starts_with("failed at connect: "),
        "{failure}"
    );
    browser.screenshot("hosts").await;

    let id = app.submit_command("sleep 30").await;
    app.wait_started(&id).await;
    browser.goto(&app.url("/ui/workers")).await;
    let running = browser
        .until(
            "the running job under its worker",
            &format!(
                "return document.querySelector('#workers a[href=\"/ui/jobs/{id}\"]') !== null"
            ),
        )
        .await;
    assert_eq!(running, true);
    browser
        .until(
            "the queue by priority",
            "return document.querySelector('#queue tr[data-priority=Medium] .running').innerText === '1'",
        )
        .await;
    browser.screenshot("workers").await;
    app.cancel(&id).await;
    browser.close().await;
}

#[tokio::test]
async fn pages_and_assets_are_small_and_need_no_token() {
    let app = spawn_app_with(|settings| settings.api.tokens = vec!["t".into()]).await;
    let client = reqwest::Client::new();
    let mut weight = 0;
    for path in [
        "/ui/",
        "/ui/assets/app.css",
        "/ui/assets/common.js",
        "/ui/assets/jobs.js",
        "/ui/assets/icon.svg",
    ] {
        let response = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} needs no token");
        weight += response.bytes().await.unwrap().len();
    }
    assert!(weight < 100 * 1024, "the list page weighs {weight} bytes");
    // The API behind them still does.
    assert_eq!(
        client.get(app.url("/jobs/")).send().await.unwrap().status(),
        401
    );
    let page = client.get(app.url("/ui/")).send().await.unwrap();
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let asset = client
        .get(app.url("/ui/assets/jobs.js"))
        .send()
        .await
        .unwrap();
    let etag = asset.headers()["etag"].clone();
    let again = client
        .get(app.url("/ui/assets/jobs.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        304,
        "assets are revalidated, not sent again"
    );
    let missing = client.get(app.url("/ui/nowhere")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(
        missing
            .text()
            .await
            .unwrap()
            .contains("There is no such page")
    );
}

#[tokio::test]
async fn output_dropped_over_the_cap_is_marked_where_it_was() {
    // Small enough that all that is kept fits the page's 5,000 lines.
    let app = spawn_app_with(|settings| settings.worker.max_output_bytes = 16 * 1024).await;
    let id = app.submit_command("seq 1 40000").await;
    app.wait_final(&id).await;
    let browser = Browser::start().await;
    browser.goto(&app.url(&format!("/ui/jobs/{id}"))).await;
    let gap = browser
        .until(
            "the gap marker",
            "const gap = document.querySelector('#output .ln.gap'); return gap && gap.innerText",
        )
        .await;
    assert!(
        gap.as_str()
            .unwrap()
            .contains("bytes of stdout dropped here"),
        "{gap}"
    );
    let around = browser
        .js("const gap = document.querySelector('#output .ln.gap'); \
             return [gap.previousElementSibling.innerText, gap.nextElementSibling.innerText]")
        .await;
    let (before, after): (String, String) = serde_json::from_value(around).unwrap();
    let (before, after): (u32, u32) = (before.parse().unwrap(), after.parse().unwrap());
    assert!(
        after > before + 1,
        "the marker sits where lines are missing: {before} … {after}"
    );
    browser
        .until(
            "the last line",
            "const last = document.querySelector('#output .ln:last-child'); \
             return last && last.innerText === '40000'",
        )
        .await;
    browser.close().await;
}

#[tokio::test]
async fn the_system_dark_setting_and_the_keyboard_are_followed() {
    let app = spawn_app().await;
    let id = app.submit_command("echo dark").await;
    app.wait_final(&id).await;
    let browser = Browser::start_with_args(&["--force-dark-mode"]).await;
    browser.goto(&app.url("/ui/")).await;
    browser.until("the job", &row_status(&id)).await;
    assert_eq!(
        browser
            .js("return matchMedia('(prefers-color-scheme: dark)').matches")
            .await,
        true
    );
    let background = browser
        .js("return getComputedStyle(document.body).backgroundColor")
        .await;
    assert_eq!(background, "rgb(13, 17, 23)", "the dark palette");
    browser.screenshot("jobs-dark").await;
    // The first Tab reaches the skip link; the job's link opens its page.
    browser
        .client
        .active_element()
        .await
        .expect("a focused element")
        .send_keys(&char::from(fantoccini::key::Key::Tab).to_string())
        .await
        .expect("Tab");
    assert_eq!(
        browser.js("return document.activeElement.className").await,
        "skip"
    );
    let link = browser
        .client
        .find(fantoccini::Locator::Css("#jobs tbody a"))
        .await
        .expect("the job's link");
    link.send_keys(&char::from(fantoccini::key::Key::Enter).to_string())
        .await
        .expect("Enter");
    browser
        .until(
            "the job's page",
            &format!("return location.pathname === '/ui/jobs/{id}'"),
        )
        .await;
    browser.close().await;
}

/// The header's "name · role", once the page has asked who the token is.
const WHOAMI: &str = "const w = document.getElementById('whoami'); return !w.hidden && w.innerText";

/// Which of a job page's actions are offered: [Cancel, Run again, Delete].
const ACTIONS: &str =
    "return ['cancel', 'rerun', 'delete'].map(id => !document.getElementById(id).hidden)";

/// How many times this page asked GET /whoami/.
const WHOAMI_ASKED: &str = "return performance.getEntriesByType('resource')\
     .filter(e => new URL(e.name).pathname === '/whoami/').length";

/// A token the app's admin token makes through POST /tokens/: its secret.
async fn make_token(app: &TestApp, name: &str, role: &str) -> String {
    let response = app
        .post("/tokens/", &json!({"name": name, "role": role}))
        .await;
    assert_eq!(response.status(), 201, "the {role} token {name} is made");
    let created: Value = response.json().await.unwrap();
    created["secret"].as_str().expect("its secret").to_owned()
}

/// Signs in with `secret` on the sign-in page, which then opens `next`.
async fn sign_in(browser: &Browser, app: &TestApp, secret: &str, next: &str) {
    browser
        .goto(&app.url(&format!("/ui/login?next={next}")))
        .await;
    browser.type_into("#token", secret).await;
    browser.click("button[type=submit]").await;
    browser
        .until(
            "the page after signing in",
            &format!("return location.pathname === '{next}'"),
        )
        .await;
}

/// Waits until the job page shows its (queued) job.
async fn the_queued_job(browser: &Browser) {
    browser
        .until(
            "the queued job",
            "return document.getElementById('status').innerText === 'Queued'",
        )
        .await;
}

#[tokio::test]
async fn the_header_names_the_token_and_pages_offer_only_what_its_role_may() {
    // No worker: the jobs stay queued, so Cancel stays on offer.
    let app = spawn_app_with(|settings| {
        settings.api.tokens = vec!["the-admin-token".into()];
        settings.run_worker = false;
    })
    .await;
    let viewer = make_token(&app, "viewer", "read").await;
    let runner = make_token(&app, "runner", "run").await;
    // One job of the admin token's, one of the run token's.
    let theirs = app.submit(json!({"command": "echo theirs"})).await;
    let by_admin = theirs["submitted_by"].as_str().expect("submitted_by");
    assert!(by_admin.starts_with("env-"), "{theirs}");
    let theirs = id_of(&theirs);
    let response = app
        .client
        .post(app.url("/jobs/"))
        .bearer_auth(&runner)
        .json(&json!({"command": "echo mine"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201, "a run token submits");
    let mine: Value = response.json().await.unwrap();
    assert_eq!(mine["submitted_by"], "runner");
    let mine = id_of(&mine);

    let browser = Browser::start().await;
    // read: the header names it; no action on any job, no Submit.
    sign_in(&browser, &app, &viewer, &format!("/ui/jobs/{mine}")).await;
    assert_eq!(
        browser.until("the header naming the token", WHOAMI).await,
        "viewer · read"
    );
    the_queued_job(&browser).await;
    assert_eq!(
        browser.js(ACTIONS).await,
        json!([false, false, false]),
        "a read token is offered no Cancel, Run again or Delete"
    );
    assert_eq!(
        browser
            .js("return document.querySelector('.nav a[href=\"/ui/submit\"]').hidden")
            .await,
        true,
        "no Submit link"
    );
    let fields = browser
        .js("return document.getElementById('fields').innerText")
        .await;
    assert!(
        fields.as_str().unwrap().contains("Submitted by\nrunner"),
        "{fields}"
    );
    // Sign-in kept the answer: the page did not ask again.
    assert_eq!(browser.js(WHOAMI_ASKED).await, 0);
    browser.goto(&app.url("/ui/submit")).await;
    let refusal = browser
        .until(
            "the submit page's refusal",
            "const note = document.getElementById('cannot-submit'); \
             return !note.hidden && note.innerText",
        )
        .await;
    assert!(
        refusal.as_str().unwrap().contains("may not submit"),
        "{refusal}"
    );
    assert_eq!(
        browser
            .js("return document.getElementById('submit').hidden")
            .await,
        true,
        "no form to fill in vain"
    );
    // The list names who submitted each job.
    browser.goto(&app.url("/ui/")).await;
    let by = browser
        .until(
            "the run token's job in the list",
            &format!(
                "const row = document.querySelector('tr[data-id=\"{mine}\"]'); \
                 return row && row.cells[7].innerText"
            ),
        )
        .await;
    assert_eq!(by, "runner");

    // run: another token's job offers no Cancel, and the server refuses
    // it anyway, its message shown.
    sign_in(&browser, &app, &runner, &format!("/ui/jobs/{theirs}")).await;
    assert_eq!(
        browser.until("the header naming the token", WHOAMI).await,
        "runner · run"
    );
    the_queued_job(&browser).await;
    assert_eq!(
        browser.js(ACTIONS).await,
        json!([false, false, false]),
        "no Cancel on another token's job, no Run again on a queued one"
    );
    assert_eq!(
        browser
            .js("return document.querySelector('.nav a[href=\"/ui/submit\"]').hidden")
            .await,
        false,
        "a run token may submit"
    );
    browser
        .js(
            "window.confirm = () => true; const c = document.getElementById('cancel'); \
             c.hidden = false; c.click(); return true",
        )
        .await;
    let refused = browser
        .until(
            "the server's refusal",
            "const f = document.getElementById('flash'); \
             return !f.hidden && f.classList.contains('error') && f.innerText",
        )
        .await;
    assert!(
        !refused.as_str().unwrap().starts_with("the server answered"),
        "the server's own message: {refused}"
    );
    assert_eq!(app.job(&theirs).await["status"], "Queued");
    // Its own job: Cancel, which records who cancelled it.
    browser.goto(&app.url(&format!("/ui/jobs/{mine}"))).await;
    assert_eq!(
        browser.until("the header naming the token", WHOAMI).await,
        "runner · run"
    );
    browser
        .until(
            "Cancel on its own job",
            "return !document.getElementById('cancel').hidden",
        )
        .await;
    assert_eq!(browser.js(ACTIONS).await, json!([true, false, false]));
    assert_eq!(
        browser.js(WHOAMI_ASKED).await,
        0,
        "who the token is was kept for the tab"
    );
    browser.click("#cancel").await;
    browser.accept_confirm().await;
    browser
        .until(
            "Cancelled on the page",
            "return document.getElementById('status').innerText === 'Cancelled'",
        )
        .await;
    browser
        .until(
            "who cancelled it",
            "return document.getElementById('fields').innerText.includes('Cancelled by\\nrunner')",
        )
        .await;
    assert_eq!(app.job(&mine).await["cancelled_by"], "runner");
    browser
        .until(
            "Run again on the ended job",
            "return !document.getElementById('rerun').hidden",
        )
        .await;
    assert_eq!(
        browser.js(ACTIONS).await,
        json!([false, true, false]),
        "Run again once the job ended; still no Delete for run"
    );
    browser.close().await;
}

/// The audit page's entries as `[token, request, target, status]`, once it
/// shows some.
const AUDIT_ROWS: &str = "const rows = [...document.querySelectorAll('#audit tbody tr')]; \
     return rows.length > 0 && rows.map(r => [1, 3, 4, 5].map(i => r.cells[i].innerText))";

/// An admin's page told to a lesser token: the note, and nothing else.
const NEEDS_ADMIN: &str = "const note = document.getElementById('needs-admin'); \
     return !note.hidden && document.getElementById('admin-only').hidden && note.innerText";

#[tokio::test]
async fn an_admin_makes_and_revokes_tokens_and_reads_the_audit_trail_in_the_pages() {
    let app = spawn_app_with(|settings| {
        settings.api.tokens = vec!["the-admin-token".into()];
        settings.run_worker = false;
    })
    .await;
    let admin = rje_api::configured_name("the-admin-token");
    let browser = Browser::start().await;
    sign_in(&browser, &app, "the-admin-token", "/ui/tokens").await;
    assert_eq!(
        browser.until("the header naming the token", WHOAMI).await,
        format!("{admin} · admin")
    );
    browser
        .until(
            "the empty list",
            "return !document.getElementById('no-tokens').hidden",
        )
        .await;

    // An admin token limited to a host: the server's error, beside the role.
    browser.type_into("#token-name", "ops").await;
    browser
        .js("document.getElementById('token-role').value = 'admin'; return true")
        .await;
    browser.type_into("#token-hosts", "local").await;
    browser.click("#new-token button[type=submit]").await;
    let error = browser
        .until(
            "the role's error",
            "return document.querySelector('[data-error-for=role]').innerText",
        )
        .await;
    assert!(
        error.as_str().unwrap().contains("covers every host"),
        "{error}"
    );
    let tokens: Value = app.get("/tokens/").await.json().await.unwrap();
    assert_eq!(tokens["tokens"], json!([]), "a refused form makes no token");

    // A run token for CI on every host: its secret is shown once.
    browser.type_into("#token-name", "ci").await;
    browser
        .js("document.getElementById('token-role').value = 'run'; \
             document.getElementById('token-hosts').value = ''; return true")
        .await;
    browser.click("#new-token button[type=submit]").await;
    let secret = browser
        .until(
            "the new token's secret",
            "const box = document.getElementById('secret-box'); \
             return !box.hidden && document.getElementById('secret').innerText",
        )
        .await;
    let secret = secret.as_str().unwrap().to_owned();
    assert!(secret.starts_with("rje_"), "{secret}");
    let warning = browser
        .js("return document.getElementById('secret-box').innerText")
        .await;
    assert!(
        warning
            .as_str()
            .unwrap()
            .contains("it will not be shown again"),
        "{warning}"
    );
    let kept = browser
        .js("return JSON.stringify([{ ...sessionStorage }, { ...localStorage }])")
        .await;
    assert!(
        !kept.as_str().unwrap().contains(&secret),
        "the secret is kept nowhere: {kept}"
    );
    let row = browser
        .until(
            "ci in the list",
            "const row = document.querySelector('#tokens tr[data-token=ci]'); \
             return row && [...row.cells].map(c => c.innerText)",
        )
        .await;
    assert_eq!(row[0], "ci");
    assert_eq!(row[1], "run");
    assert_eq!(row[2], "every host");
    assert_eq!(row[4], "never", "not used yet");
    browser.screenshot("tokens").await;

    // The secret works as any client's token.
    let response = app
        .client
        .post(app.url("/jobs/"))
        .bearer_auth(&secret)
        .json(&json!({"command": "echo from ci"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201, "the new token submits");
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["submitted_by"], "ci");
    let job = id_of(&job);

    // Revoke, after a confirmation: gone from the list, refused at once.
    browser.click("#tokens tr[data-token=ci] button").await;
    browser.accept_confirm().await;
    browser
        .until(
            "ci gone from the list read again",
            "return document.querySelector('#tokens tr[data-token=ci]') === null \
             && !document.getElementById('no-tokens').hidden",
        )
        .await;
    assert_eq!(
        browser
            .js("return document.getElementById('secret').innerText")
            .await,
        "",
        "the revoked token's secret is off the screen"
    );
    let refused = app
        .client
        .get(app.url("/jobs/"))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 401, "a revoked token is refused");

    // The audit trail, newest first, under the tokens' names.
    browser.goto(&app.url("/ui/audit")).await;
    let rows = browser.until("the audit trail", AUDIT_ROWS).await;
    let rows: Vec<Vec<String>> = serde_json::from_value(rows).unwrap();
    let entry = |token: &str, request: &str, target: &str, status: &str| {
        [token, request, target, status].map(str::to_owned).to_vec()
    };
    assert_eq!(
        rows,
        vec![
            entry(&admin, "DELETE /tokens/{name}", "ci", "204"),
            entry("ci", "POST /jobs", &job[..8], "201"),
            entry(&admin, "POST /tokens", "ci", "201"),
            entry(&admin, "POST /tokens", "—", "400"),
        ]
    );
    assert_eq!(
        browser
            .js("return [...document.querySelectorAll('#audit tbody tr')].map(r => r.cells[5].className)")
            .await,
        json!(["st-ok", "st-ok", "st-ok", "st-refused"]),
        "statuses are coloured by class"
    );
    browser.screenshot("audit").await;
    // Only ci's: its job, linked to the job's page.
    browser
        .type_into("#audit-filters input[name=token]", "ci")
        .await;
    browser
        .until(
            "ci's entries only",
            "return location.search === '?token=ci' \
             && document.getElementById('range').innerText === '1–1 of 1'",
        )
        .await;
    let rows = browser.until("ci's entry", AUDIT_ROWS).await;
    assert_eq!(rows, json!([["ci", "POST /jobs", &job[..8], "201"]]));
    assert_eq!(
        browser
            .js("return document.querySelector('#audit tbody td:nth-child(5) a').getAttribute('href')")
            .await,
        format!("/ui/jobs/{job}")
    );

    // A read token: no Check on the hosts, and no admin's pages.
    let viewer = make_token(&app, "viewer", "read").await;
    sign_in(&browser, &app, &viewer, "/ui/hosts").await;
    assert_eq!(
        browser.until("the header naming the token", WHOAMI).await,
        "viewer · read"
    );
    browser
        .until(
            "the local host",
            "return document.querySelector('tr[data-host=local] button')",
        )
        .await;
    assert_eq!(
        browser
            .js("return document.querySelector('tr[data-host=local] button').hidden")
            .await,
        true,
        "a read token is offered no Check"
    );
    assert_eq!(
        browser
            .js("return ['/ui/tokens', '/ui/audit']\
                 .map(p => document.querySelector(`.nav a[href=\"${p}\"]`).hidden)")
            .await,
        json!([true, true]),
        "no links to the admin's pages"
    );
    for page in ["/ui/tokens", "/ui/audit"] {
        browser.goto(&app.url(page)).await;
        let note = browser.until("the admin-only note", NEEDS_ADMIN).await;
        assert!(
            note.as_str().unwrap().contains("needs an admin token"),
            "{page}: {note}"
        );
    }
    browser.close().await;
}

/// The row of the schedule `name` as its cells' text, or null:
/// [name, command, cron and zone, next fire, last job, overlap, state,
/// made by, actions].
fn schedule_row(name: &str) -> String {
    format!(
        "const row = document.querySelector('#schedules tr[data-schedule=\"{name}\"]'); \
         return row && [...row.cells].map(c => c.innerText)"
    )
}

/// A schedule as GET /schedules/{id_or_name}/ answers it.
async fn schedule_of(app: &TestApp, name: &str) -> Value {
    let response = app.get(&format!("/schedules/{name}/")).await;
    assert_eq!(response.status(), 200, "the schedule {name}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_schedule_is_made_paused_resumed_and_deleted_in_the_page() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/ui/schedules")).await;
    browser
        .until(
            "the empty list",
            "return !document.getElementById('no-schedules').hidden",
        )
        .await;
    browser
        .until(
            "the host list",
            "return document.querySelector('#schedule-host option[value=local]')",
        )
        .await;
    assert_eq!(
        browser
            .js("return document.getElementById('schedule-timezone').value")
            .await,
        "UTC",
        "the zone is UTC unless told"
    );

    // A cron of three fields: the server's error, beside the cron.
    browser.type_into("#schedule-name", "nightly").await;
    browser.type_into("#schedule-cron", "0 3 *").await;
    browser
        .type_into("#schedule-timezone", "Europe/Paris")
        .await;
    browser
        .type_into("#schedule-command", "echo from the schedule")
        .await;
    browser.click("#new-schedule button[type=submit]").await;
    let error = browser
        .until(
            "the cron's error",
            "return document.querySelector('#new-schedule [data-error-for=cron]').innerText",
        )
        .await;
    assert!(!error.as_str().unwrap().is_empty());
    assert_eq!(
        browser
            .js("return document.getElementById('schedule-cron').getAttribute('aria-invalid')")
            .await,
        "true"
    );
    let listed: Value = app.get("/schedules/").await.json().await.unwrap();
    assert_eq!(listed["total_count"], 0, "a refused form makes no schedule");

    // Corrected: made, and its next five fire times shown at once, on
    // the schedule's own clock.
    browser.type_into("#schedule-cron", "0 3 * * *").await;
    browser.click("#new-schedule button[type=submit]").await;
    let shown = browser
        .until(
            "the next five fire times",
            "const times = [...document.querySelectorAll('#next-fires time')]; \
             return !document.getElementById('created').hidden && times.length === 5 \
                 && times.map(t => [t.dateTime, t.innerText])",
        )
        .await;
    let shown: Vec<(String, String)> = serde_json::from_value(shown).unwrap();
    let schedule = schedule_of(&app, "nightly").await;
    assert_eq!(schedule["cron"], "0 3 * * *");
    assert_eq!(schedule["timezone"], "Europe/Paris");
    assert_eq!(schedule["overlap"], "allow");
    assert_eq!(schedule["paused"], false);
    let id = schedule["id"].as_str().expect("its id").to_owned();
    let expected: Vec<String> =
        serde_json::from_value(schedule["next_fire_times"].clone()).unwrap();
    assert_eq!(
        shown.iter().map(|(at, _)| at.clone()).collect::<Vec<_>>(),
        expected
    );
    for (_, text) in &shown {
        assert!(text.contains("3:00:00"), "on Paris's clock: {text}");
    }
    assert_eq!(
        browser
            .js("return document.getElementById('schedule-name').value")
            .await,
        "",
        "the form is empty again"
    );

    // Listed with its next fire time, relative and absolute.
    let row = browser
        .until("nightly in the list", &schedule_row("nightly"))
        .await;
    assert_eq!(row[0], "nightly");
    assert_eq!(row[2], "0 3 * * * Europe/Paris");
    assert!(row[3].as_str().unwrap().starts_with("in "), "{row}");
    assert!(row[4].as_str().unwrap().starts_with("none yet"), "{row}");
    assert_eq!(row[6], "active");
    assert_eq!(
        browser
            .js("return document.querySelector('#schedules tr[data-schedule=nightly] td:nth-child(4) time').dateTime")
            .await,
        expected[0].as_str()
    );
    browser.screenshot("schedules").await;

    // A second schedule of the same name: the server's 409, beside the name.
    browser.type_into("#schedule-name", "nightly").await;
    browser.type_into("#schedule-cron", "@daily").await;
    browser.type_into("#schedule-command", "echo twin").await;
    browser.click("#new-schedule button[type=submit]").await;
    browser
        .until(
            "the name's error",
            "return document.querySelector('#new-schedule [data-error-for=name]').innerText",
        )
        .await;
    let listed: Value = app.get("/schedules/").await.json().await.unwrap();
    assert_eq!(listed["total_count"], 1);

    // Pause: no next fire time, and Resume offered.
    browser
        .click("#schedules tr[data-schedule=nightly] button.toggle")
        .await;
    let row = browser
        .until(
            "nightly paused",
            &format!(
                "const cells = ({})(); return cells && cells[6] === 'paused' && cells",
                js_fn(&schedule_row("nightly"))
            ),
        )
        .await;
    assert_eq!(row[3], "—", "a paused schedule has no fire time");
    assert_eq!(
        browser
            .js("return document.querySelector('#schedules tr[data-schedule=nightly] button.toggle').innerText")
            .await,
        "Resume"
    );
    assert_eq!(schedule_of(&app, "nightly").await["paused"], true);

    // Resume.
    browser
        .click("#schedules tr[data-schedule=nightly] button.toggle")
        .await;
    browser
        .until(
            "nightly active again",
            &format!(
                "const cells = ({})(); return cells && cells[6] === 'active'",
                js_fn(&schedule_row("nightly"))
            ),
        )
        .await;
    assert_eq!(schedule_of(&app, "nightly").await["paused"], false);

    // Its jobs: the job list, filtered by the schedule.
    assert_eq!(
        browser
            .js("return document.querySelector('#schedules tr[data-schedule=nightly] a.schedule-jobs').getAttribute('href')")
            .await,
        format!("/ui/?schedule={id}")
    );
    browser
        .click("#schedules tr[data-schedule=nightly] a.schedule-jobs")
        .await;
    let note = browser
        .until(
            "the schedule's note on the job list",
            "const note = document.getElementById('schedule-filter'); \
             return !note.hidden && note.innerText.includes('nightly') && note.innerText",
        )
        .await;
    assert!(note.as_str().unwrap().contains("Show every job"), "{note}");
    browser
        .until(
            "no job of the schedule yet",
            "return !document.getElementById('empty').hidden",
        )
        .await;

    // Delete, after a confirmation.
    browser.goto(&app.url("/ui/schedules")).await;
    browser
        .until("nightly in the list", &schedule_row("nightly"))
        .await;
    browser
        .click("#schedules tr[data-schedule=nightly] button.delete")
        .await;
    browser.accept_confirm().await;
    browser
        .until(
            "nightly gone from the list",
            "return document.querySelector('#schedules tr[data-schedule=nightly]') === null \
             && !document.getElementById('no-schedules').hidden",
        )
        .await;
    assert_eq!(app.get("/schedules/nightly/").await.status(), 404);
    browser.close().await;
}

#[tokio::test]
async fn schedules_offer_only_what_the_role_may() {
    let app = spawn_app_with(|settings| {
        settings.api.tokens = vec!["the-admin-token".into()];
        settings.run_worker = false;
    })
    .await;
    let viewer = make_token(&app, "viewer", "read").await;
    let runner = make_token(&app, "runner", "run").await;
    let made = app
        .post(
            "/schedules/",
            &json!({"name": "admins", "cron": "@yearly", "command": "echo admin's"}),
        )
        .await;
    assert_eq!(made.status(), 201);
    let made = app
        .client
        .post(app.url("/schedules/"))
        .bearer_auth(&runner)
        .json(&json!({"name": "mine", "cron": "@yearly", "command": "echo mine"}))
        .send()
        .await
        .expect("request");
    assert_eq!(made.status(), 201, "a run token makes a schedule");

    let browser = Browser::start().await;
    // read: the list, no form and no action.
    sign_in(&browser, &app, &viewer, "/ui/schedules").await;
    assert_eq!(
        browser.until("the header naming the token", WHOAMI).await,
        "viewer · read"
    );
    browser
        .until("mine in the list", &schedule_row("mine"))
        .await;
    browser
        .until("admins in the list", &schedule_row("admins"))
        .await;
    assert_eq!(
        browser
            .js("return document.getElementById('make-schedule').hidden")
            .await,
        true,
        "no form for a read token"
    );
    assert_eq!(
        browser
            .js("return [...document.querySelectorAll('#schedules button')].every(b => b.hidden)")
            .await,
        true,
        "no Pause, Resume or Delete for a read token"
    );

    // run: the form, and the actions on its own schedule only.
    sign_in(&browser, &app, &runner, "/ui/schedules").await;
    assert_eq!(
        browser.until("the header naming the token", WHOAMI).await,
        "runner · run"
    );
    browser
        .until("mine in the list", &schedule_row("mine"))
        .await;
    let offered = browser
        .js("return ['mine', 'admins'].map(name => \
             [...document.querySelectorAll(`#schedules tr[data-schedule=${name}] button`)] \
             .map(b => !b.hidden))")
        .await;
    assert_eq!(offered, json!([[true, true], [false, false]]));
    assert_eq!(
        browser
            .js("return document.getElementById('make-schedule').hidden")
            .await,
        false
    );
    let row = browser.js(&schedule_row("mine")).await;
    assert_eq!(row[7], "runner", "made by");
    browser.close().await;
}

/// The ids of the jobs whose command is `command`.
async fn jobs_with(app: &TestApp, command: &str) -> Vec<String> {
    let page: Value = app.get("/jobs/?limit=100").await.json().await.unwrap();
    page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|job| job["command"] == command)
        .map(id_of)
        .collect()
}

/// Makes the page's first POST /jobs/ reach the server and its answer
/// fail as a lost connection would; every key sent is kept in
/// sessionStorage (`test.keys`), which outlives the page.
const LOSE_THE_FIRST_ANSWER: &str = "const real = window.fetch; let posts = 0; \
     window.fetch = async (url, init = {}) => { \
       if (init.method === 'POST' && new URL(url, location.href).pathname === '/jobs/') { \
         const keys = JSON.parse(sessionStorage.getItem('test.keys') || '[]'); \
         keys.push(init.headers['Idempotency-Key']); \
         sessionStorage.setItem('test.keys', JSON.stringify(keys)); \
         posts += 1; \
         if (posts === 1) { await real(url, init); throw new TypeError('Failed to fetch'); } \
       } \
       return real(url, init); \
     }; \
     return true";

/// The job page the browser is on, once it is another than `not`'s.
async fn the_new_job(browser: &Browser, not: &str) -> String {
    let path = browser
        .until(
            "the new job's page",
            &format!(
                "return location.pathname.startsWith('/ui/jobs/') && \
                 location.pathname !== '/ui/jobs/{not}' && location.pathname"
            ),
        )
        .await;
    path.as_str()
        .unwrap()
        .trim_start_matches("/ui/jobs/")
        .to_owned()
}

#[tokio::test]
async fn a_double_click_or_a_lost_answer_makes_one_job() {
    let app = spawn_app_with(|settings| settings.run_worker = false).await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/ui/submit")).await;
    browser
        .until(
            "the host list",
            "return document.querySelector('#host option[value=local]')",
        )
        .await;
    browser.type_into("#command", "echo clicked twice").await;
    let button = browser
        .client
        .find(Locator::Css("#submit button[type=submit]"))
        .await
        .expect("the submit button");
    let double_click = MouseActions::new("mouse".to_owned())
        .then(PointerAction::MoveToElement {
            element: button,
            duration: None,
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    browser
        .client
        .perform_actions(double_click)
        .await
        .expect("a double click");
    let id = the_new_job(&browser, "none").await;
    assert_eq!(
        jobs_with(&app, "echo clicked twice").await,
        vec![id],
        "a double click makes one job"
    );

    // The first answer is lost on its way back: the form sent again
    // carries the same key, and the server answers the job it made.
    browser.goto(&app.url("/ui/submit")).await;
    browser
        .until(
            "the host list",
            "return document.querySelector('#host option[value=local]')",
        )
        .await;
    browser.js(LOSE_THE_FIRST_ANSWER).await;
    browser.type_into("#command", "echo answer lost").await;
    browser.click("#submit button[type=submit]").await;
    let said = browser
        .until(
            "the network error",
            "const f = document.getElementById('flash'); return !f.hidden && f.innerText",
        )
        .await;
    assert!(
        said.as_str().unwrap().contains("Submitting again is safe"),
        "{said}"
    );
    assert_eq!(browser.current_path().await, "/ui/submit");
    let made = jobs_with(&app, "echo answer lost").await;
    assert_eq!(made.len(), 1, "the first submit reached the server");
    assert_eq!(
        browser
            .js("return document.querySelector('#submit button[type=submit]').disabled")
            .await,
        false,
        "the button is back once the request failed"
    );
    browser.click("#submit button[type=submit]").await;
    let id = the_new_job(&browser, "none").await;
    assert_eq!(id, made[0], "the page opens the job the first submit made");
    assert_eq!(
        jobs_with(&app, "echo answer lost").await,
        made,
        "and no other"
    );
    let keys = browser
        .js("return JSON.parse(sessionStorage.getItem('test.keys'))")
        .await;
    let keys: Vec<String> = serde_json::from_value(keys).unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], keys[1], "the same key both times");
    assert!(!keys[0].is_empty() && keys[0].len() <= 255, "{keys:?}");

    // The answer is lost again, and the form changed before Submit: the
    // server refuses the key for another request, the page says a job
    // was made, and the next Submit makes the changed one.
    browser.goto(&app.url("/ui/submit")).await;
    browser
        .until(
            "the host list",
            "return document.querySelector('#host option[value=local]')",
        )
        .await;
    browser
        .js("sessionStorage.removeItem('test.keys'); return true")
        .await;
    browser.js(LOSE_THE_FIRST_ANSWER).await;
    browser.type_into("#command", "echo first try").await;
    browser.click("#submit button[type=submit]").await;
    browser
        .until(
            "the network error",
            "const f = document.getElementById('flash'); \
             return !f.hidden && f.innerText.includes('Submitting again is safe')",
        )
        .await;
    browser.type_into("#command", "echo second try").await;
    browser.click("#submit button[type=submit]").await;
    let said = browser
        .until(
            "the key refused",
            "const f = document.getElementById('flash'); \
             return !f.hidden && f.innerText.includes('An earlier submit') && f.innerText",
        )
        .await;
    assert!(said.as_str().unwrap().contains("Submit again"), "{said}");
    assert!(jobs_with(&app, "echo second try").await.is_empty());
    browser.click("#submit button[type=submit]").await;
    let id = the_new_job(&browser, "none").await;
    assert_eq!(jobs_with(&app, "echo second try").await, vec![id]);
    assert_eq!(jobs_with(&app, "echo first try").await.len(), 1);
    browser.close().await;
}

#[tokio::test]
async fn run_again_makes_a_new_job_that_links_back() {
    // No worker: the job waits, queued, until it is cancelled.
    let app = spawn_app_with(|settings| settings.run_worker = false).await;
    let id = app.submit_command("echo once more").await;
    let browser = Browser::start().await;
    browser.goto(&app.url(&format!("/ui/jobs/{id}"))).await;
    browser
        .until(
            "the queued job's Cancel",
            "return !document.getElementById('cancel').hidden",
        )
        .await;
    assert_eq!(
        browser
            .js("return document.getElementById('rerun').hidden")
            .await,
        true,
        "no Run again while the job has not ended"
    );
    assert_eq!(app.cancel(&id).await.status(), 200);
    browser
        .until(
            "Run again on the ended job",
            "return document.getElementById('status').innerText === 'Cancelled' \
             && !document.getElementById('rerun').hidden",
        )
        .await;
    browser.click("#rerun").await;
    let again = the_new_job(&browser, &id).await;
    let link = browser
        .until(
            "the link back",
            "const a = document.getElementById('retry-of'); return a && a.getAttribute('href')",
        )
        .await;
    assert_eq!(link, format!("/ui/jobs/{id}"));
    let fields = browser
        .js("return document.getElementById('fields').innerText")
        .await;
    assert!(
        fields.as_str().unwrap().contains("run again by hand"),
        "{fields}"
    );
    let second = app.job(&again).await;
    assert_eq!(second["retry_of"], id.as_str());
    assert_eq!(second["command"], "echo once more");
    assert_eq!(app.job(&id).await["retries"], json!([again]));
    // The first job's page lists it among its retries.
    browser.click("#retry-of").await;
    browser
        .until(
            "the new job among the retries",
            &format!(
                "return document.querySelector('#retries a[href=\"/ui/jobs/{again}\"]') !== null"
            ),
        )
        .await;
    browser.close().await;
}

#[tokio::test]
async fn a_failed_job_that_runs_again_by_itself_links_its_retry() {
    let app = spawn_app().await;
    let job = app
        .submit(json!({
            "command": "sleep 1; exit 3",
            "retry_on_failure": true,
            "max_retries": 1
        }))
        .await;
    let id = id_of(&job);
    let browser = Browser::start().await;
    // Opened while it runs: the failure and its retry arrive live.
    browser.goto(&app.url(&format!("/ui/jobs/{id}"))).await;
    let link = browser
        .until(
            "Failed: retrying as …",
            "const a = document.getElementById('retrying-link'); \
             return !document.getElementById('retrying').hidden && a && a.getAttribute('href')",
        )
        .await;
    let failed = app.job(&id).await;
    assert_eq!(failed["status"], "Failed");
    let retry = failed["retries"][0].as_str().expect("its retry").to_owned();
    assert_eq!(link, format!("/ui/jobs/{retry}"));
    assert_eq!(
        browser.current_path().await,
        format!("/ui/jobs/{id}"),
        "the page stays on the failed job"
    );
    browser.click("#retrying-link").await;
    browser
        .until(
            "the retry's page",
            &format!("return location.pathname === '/ui/jobs/{retry}'"),
        )
        .await;
    browser
        .until(
            "the link back",
            &format!(
                "const a = document.getElementById('retry-of'); \
                 return a && a.getAttribute('href') === '/ui/jobs/{id}'"
            ),
        )
        .await;
    // The retry fails too, with no retry left: nothing more is announced.
    browser
        .until(
            "the retry failed",
            "return document.getElementById('status').innerText === 'Failed' \
             && document.getElementById('fields').innerText.includes('no retry left')",
        )
        .await;
    let fields = browser
        .js("return document.getElementById('fields').innerText")
        .await;
    assert!(
        fields
            .as_str()
            .unwrap()
            .contains("automatic retry 1 of at most 1"),
        "{fields}"
    );
    assert_eq!(
        browser
            .js("return document.getElementById('retrying').hidden")
            .await,
        true
    );
    browser.close().await;
}

/// Depends on the scheduler firing in test apps within a few seconds of a
/// per-second cron: drop or adapt if the test settings slow it down.
#[tokio::test]
async fn a_fired_job_links_its_schedule() {
    let app = spawn_app_with(|settings| settings.run_worker = false).await;
    let made = app
        .post(
            "/schedules/",
            &json!({"name": "every-second", "cron": "* * * * * *", "command": "echo fired"}),
        )
        .await;
    assert_eq!(made.status(), 201);
    let schedule: Value = made.json().await.unwrap();
    let schedule_id = schedule["id"].as_str().expect("its id").to_owned();
    let deadline = Instant::now() + DEADLINE;
    let fired = loop {
        let now = schedule_of(&app, "every-second").await;
        if let Some(job) = now["last_job"]["id"].as_str() {
            break job.to_owned();
        }
        assert!(Instant::now() < deadline, "the schedule never fired: {now}");
        sleep(Duration::from_millis(100)).await;
    };
    let paused = app
        .send(
            reqwest::Method::POST,
            &format!("/schedules/{schedule_id}/pause/"),
            None,
        )
        .await;
    assert_eq!(paused.status(), 200, "no more jobs");
    let browser = Browser::start().await;
    browser.goto(&app.url(&format!("/ui/jobs/{fired}"))).await;
    let link = browser
        .until(
            "the schedule's name",
            "const a = document.getElementById('schedule-link'); \
             return a && a.innerText === 'every-second' && a.getAttribute('href')",
        )
        .await;
    assert_eq!(link, format!("/ui/schedules#schedule-{schedule_id}"));
    let fields = browser
        .js("return document.getElementById('fields').innerText")
        .await;
    assert!(
        fields.as_str().unwrap().contains("Scheduled for"),
        "{fields}"
    );
    browser.click("#schedule-link").await;
    browser
        .until(
            "the schedule's row marked",
            "return document.querySelector('#schedules tr.target[data-schedule=every-second]') !== null",
        )
        .await;
    // Its jobs: exactly those the API lists for the schedule.
    let of_schedule: Value = app
        .get(&format!("/jobs/?schedule={schedule_id}&limit=100"))
        .await
        .json()
        .await
        .unwrap();
    let count = of_schedule["jobs"].as_array().expect("jobs").len();
    assert!(count >= 1);
    browser
        .click("#schedules tr[data-schedule=every-second] a.schedule-jobs")
        .await;
    browser
        .until(
            "the schedule's jobs",
            &format!("return document.querySelectorAll('#jobs tbody tr').length === {count}"),
        )
        .await;
    browser.close().await;
}

/// The tile of `host` on a run's page as [state, exit], or null.
fn tile(host: &str) -> String {
    format!(
        "const t = document.querySelector('#grid a[data-host=\"{host}\"]'); \
         return t && t.dataset.state ? [t.dataset.state, t.querySelector('.tile-exit').innerText] : null"
    )
}

/// The row of the run `id` on the Runs page as its cells' text, or null:
/// [status, command, hosts, outcomes, created, duration, started by].
fn run_row(id: &str) -> String {
    format!(
        "const row = document.querySelector('#runs tr[data-id=\"{id}\"]'); \
         return row && [...row.cells].map(c => c.innerText)"
    )
}

/// The run page the browser is on, once it is another than `not`'s.
async fn the_new_run(browser: &Browser, not: &str) -> String {
    let path = browser
        .until(
            "the new run's page",
            &format!(
                "return location.pathname.startsWith('/ui/runs/') && \
                 location.pathname !== '/ui/runs/new' && \
                 location.pathname !== '/ui/runs/{not}' && location.pathname"
            ),
        )
        .await;
    path.as_str()
        .unwrap()
        .trim_start_matches("/ui/runs/")
        .to_owned()
}

/// Starts a run through the API; returns it as created.
async fn start_run(app: &TestApp, body: Value) -> Value {
    let response = app.post("/runs/", &body).await;
    assert_eq!(response.status(), 201, "the run {body} starts");
    response.json().await.unwrap()
}

/// A run as GET /runs/{id}/ answers it.
async fn run_of(app: &TestApp, id: &str) -> Value {
    let response = app.get(&format!("/runs/{id}/")).await;
    assert_eq!(response.status(), 200, "the run {id}");
    response.json().await.unwrap()
}

/// An SSH host nobody listens for: its jobs end unreachable at once.
fn unreachable_host(name: &str, labels: &[&str]) -> rje_ssh::HostConfig {
    let mut host = rje_ssh::HostConfig::new(name, "127.0.0.1");
    host.port = rje_testkit::free_port();
    host.labels = labels.iter().map(|label| (*label).to_owned()).collect();
    host
}

#[tokio::test]
async fn a_run_is_started_from_the_form_and_followed_to_its_end() {
    // A labelled host beside `local`, for the form to offer the label.
    let edge = unreachable_host("edge-1", &["edge"]);
    let app = spawn_app_with(move |settings| {
        settings.inventory = rje_ssh::Inventory {
            hosts: vec![edge],
            default_host: None,
        };
    })
    .await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/ui/runs")).await;
    browser
        .until(
            "no run yet",
            "return !document.getElementById('empty').hidden",
        )
        .await;
    browser.click("#start-run").await;
    browser
        .until(
            "the hosts to pick",
            "return document.querySelector('#run-hosts input[value=local]')",
        )
        .await;
    assert_eq!(browser.current_path().await, "/ui/runs/new");
    let label = browser
        .until(
            "the edge label",
            "const l = document.querySelector('#run-labels label[data-value=edge]'); \
             return l && l.innerText",
        )
        .await;
    assert!(label.as_str().unwrap().contains("1 host"), "{label}");

    // No host picked: the server's error, beside the hosts.
    browser.type_into("#run-command", "echo from a run").await;
    browser.click("#new-run button[type=submit]").await;
    let error = browser
        .until(
            "the hosts' error",
            "return document.querySelector('#new-run [data-error-for=hosts]').innerText",
        )
        .await;
    assert!(!error.as_str().unwrap().is_empty());
    assert_eq!(
        browser.current_path().await,
        "/ui/runs/new",
        "nothing was started"
    );
    let runs: Value = app.get("/runs/").await.json().await.unwrap();
    assert_eq!(runs["total_count"], 0, "a refused form starts no run");

    browser.click("#run-hosts input[value=local]").await;
    browser.click("#new-run button[type=submit]").await;
    let id = the_new_run(&browser, "none").await;
    let local = browser
        .until(
            "the local tile to turn Success",
            &format!(
                "const t = ({})(); return t && t[0] === 'Success' && t",
                js_fn(&tile("local"))
            ),
        )
        .await;
    assert_eq!(local[1], "exit 0");
    browser
        .until(
            "the run's status Success",
            "return document.getElementById('status').innerText === 'Success' \
             && document.querySelector('#counts [data-count=Success]').innerText === '1'",
        )
        .await;
    let run = run_of(&app, &id).await;
    assert_eq!(run["status"], "Success");
    assert_eq!(run["hosts"], json!(["local"]));
    assert_eq!(run["command"], "echo from a run");
    let job = id_of(&run["jobs"][0]);
    assert_eq!(run["jobs"][0]["outcome"], "Success");
    assert_eq!(
        browser
            .js("return document.getElementById('retry').hidden && document.getElementById('cancel').hidden")
            .await,
        true,
        "nothing to cancel or retry in a run that succeeded"
    );
    browser.screenshot("run").await;

    // The tile opens the host's job, whose page links back to the run.
    browser.click("#grid a[data-host=local]").await;
    browser
        .until(
            "the job's page",
            &format!("return location.pathname === '/ui/jobs/{job}'"),
        )
        .await;
    let link = browser
        .until(
            "the link to the run",
            "const a = document.getElementById('run-link'); return a && a.getAttribute('href')",
        )
        .await;
    assert_eq!(link, format!("/ui/runs/{id}"));
    assert_eq!(
        browser
            .js("return document.getElementById('outcome').innerText")
            .await,
        "Success"
    );

    // The list shows it.
    browser.goto(&app.url("/ui/runs")).await;
    let row = browser.until("the run in the list", &run_row(&id)).await;
    assert_eq!(row[0], "Success");
    assert_eq!(row[1], "echo from a run");
    assert_eq!(row[2], "1 host");
    assert_eq!(row[3], "1 Success");
    browser.screenshot("runs").await;
    browser.close().await;
}

#[tokio::test]
async fn a_run_shows_its_output_and_is_cancelled_from_its_page() {
    let app = spawn_app().await;
    let run = start_run(
        &app,
        json!({
            "command": "for i in $(seq 1 60); do echo tick-$i; sleep 0.5; done",
            "hosts": ["local"]
        }),
    )
    .await;
    let id = id_of(&run);
    let browser = Browser::start().await;
    browser.goto(&app.url(&format!("/ui/runs/{id}"))).await;
    browser
        .until(
            "the local tile running",
            &format!(
                "const t = ({})(); return t && t[0] === 'Running'",
                js_fn(&tile("local"))
            ),
        )
        .await;
    assert_eq!(
        browser
            .js("return document.getElementById('status').innerText")
            .await,
        "Running"
    );
    // The output, each line after its host's name.
    browser.click("#show-output").await;
    let line = browser
        .until(
            "a line of output",
            "const l = document.querySelector('#output .ln'); \
             return l && [l.querySelector('.ln-host').innerText, l.innerText]",
        )
        .await;
    assert_eq!(line[0], "local");
    assert!(line[1].as_str().unwrap().contains("tick-"), "{line}");

    browser
        .until(
            "Cancel on offer",
            "return !document.getElementById('cancel').hidden",
        )
        .await;
    browser.click("#cancel").await;
    browser.accept_confirm().await;
    browser
        .until(
            "the run Cancelled on the page",
            &format!(
                "const t = ({})(); return document.getElementById('status').innerText === 'Cancelled' \
                 && t && t[0] === 'Cancelled'",
                js_fn(&tile("local"))
            ),
        )
        .await;
    let run = run_of(&app, &id).await;
    assert_eq!(run["status"], "Cancelled");
    assert_eq!(run["jobs"][0]["outcome"], "Cancelled");
    assert_eq!(
        browser
            .until(
                "Retry failed hosts on offer",
                "return !document.getElementById('retry').hidden \
                 && document.getElementById('cancel').hidden",
            )
            .await,
        true,
        "a cancelled host did not succeed: it can be run again"
    );
    let lines = browser
        .js("return document.querySelectorAll('#output .ln').length")
        .await;
    assert!(lines.as_u64().unwrap() <= 2000, "{lines} lines kept");

    // The list shows it.
    browser.goto(&app.url("/ui/runs")).await;
    let row = browser.until("the run in the list", &run_row(&id)).await;
    assert_eq!(row[0], "Cancelled");
    assert_eq!(row[3], "1 Cancelled");
    browser.close().await;
}

#[tokio::test]
async fn a_run_retries_its_failed_hosts_from_its_page() {
    let nowhere = unreachable_host("nowhere", &[]);
    let app = spawn_app_with(move |settings| {
        settings.inventory = rje_ssh::Inventory {
            hosts: vec![nowhere],
            default_host: None,
        };
    })
    .await;
    let run = start_run(
        &app,
        json!({"command": "echo twice", "hosts": ["local", "nowhere"]}),
    )
    .await;
    let id = id_of(&run);
    let browser = Browser::start().await;
    browser.goto(&app.url(&format!("/ui/runs/{id}"))).await;
    browser
        .until(
            "the run Failed",
            "return document.getElementById('status').innerText === 'Failed'",
        )
        .await;
    let run = run_of(&app, &id).await;
    assert_eq!(run["hosts"], json!(["local", "nowhere"]));
    let outcome = run["jobs"][1]["outcome"].as_str().expect("an outcome");
    assert_ne!(outcome, "Success");
    let tiles = browser
        .until(
            "both tiles final",
            &format!(
                "const l = ({})(), n = ({})(); \
                 return l && n && l[0] === 'Success' && n[0] === '{outcome}' && [l, n]",
                js_fn(&tile("local")),
                js_fn(&tile("nowhere"))
            ),
        )
        .await;
    assert_eq!(tiles[0][1], "exit 0");
    assert_eq!(
        browser
            .js("return [...document.querySelectorAll('#grid a')].map(a => a.dataset.host)")
            .await,
        json!(["local", "nowhere"]),
        "the tiles in the run's order"
    );
    assert_eq!(
        browser
            .js(&format!(
                "return document.querySelector('#counts [data-count={outcome}]').innerText"
            ))
            .await,
        "1"
    );
    browser
        .until(
            "Retry failed hosts on offer",
            "return !document.getElementById('retry').hidden",
        )
        .await;
    browser.click("#retry").await;
    let again = the_new_run(&browser, &id).await;
    let link = browser
        .until(
            "the link back",
            "const a = document.getElementById('retry-of'); return a && a.getAttribute('href')",
        )
        .await;
    assert_eq!(link, format!("/ui/runs/{id}"));
    let second = run_of(&app, &again).await;
    assert_eq!(second["retry_of"], id.as_str());
    assert_eq!(second["hosts"], json!(["nowhere"]), "only the failed host");
    browser
        .until(
            "one tile, the failed host's",
            "const tiles = [...document.querySelectorAll('#grid a')]; \
             return tiles.length === 1 && tiles[0].dataset.host === 'nowhere'",
        )
        .await;
    browser.close().await;
}
