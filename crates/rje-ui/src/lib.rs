//! rje's web dashboard, served by `rje serve` at `/ui/`.
//!
//! The pages are rendered here, at compile-time-checked templates (maud),
//! and carry no job data: a little JavaScript of our own (in `assets/`,
//! embedded in the binary) reads everything from the public API with the
//! token the user typed, and follows the existing WebSockets for live
//! updates. So the pages and assets need no token, and the dashboard can
//! do nothing a client of the API could not.

mod assets;
mod pages;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::Markup;
use rje_domain::Limits;

/// What the pages need to know of the server: only settings, never data.
#[derive(Debug, Clone)]
pub struct UiSettings {
    pub limits: Limits,
    pub version: &'static str,
}

/// Pages load their own scripts and styles and talk only to this origin;
/// nothing inline runs, nothing from elsewhere loads.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// The dashboard's routes, for any router state: `/` redirects to `/ui/`.
/// Paths are matched without their trailing slash (the API trims it).
pub fn router<S: Clone + Send + Sync + 'static>(settings: UiSettings) -> Router<S> {
    let pages = Router::new()
        .route("/ui", get(jobs))
        .route("/ui/jobs/{id}", get(job))
        .route("/ui/runs", get(runs))
        .route("/ui/runs/new", get(new_run))
        .route("/ui/runs/{id}", get(run))
        .route("/ui/submit", get(submit))
        .route("/ui/schedules", get(schedules))
        .route("/ui/hosts", get(hosts))
        .route("/ui/workers", get(workers))
        .route("/ui/tokens", get(tokens))
        .route("/ui/audit", get(audit))
        .route("/ui/login", get(login))
        .route("/ui/{*rest}", get(not_found))
        .with_state(settings);
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui/assets/{*file}", get(asset))
        .merge(pages)
}

async fn jobs(State(settings): State<UiSettings>) -> Response {
    page(StatusCode::OK, pages::jobs(&settings))
}

async fn job(State(settings): State<UiSettings>, Path(id): Path<String>) -> Response {
    page(StatusCode::OK, pages::job(&settings, &id))
}

async fn runs(State(settings): State<UiSettings>) -> Response {
    page(StatusCode::OK, pages::runs(&settings))
}

async fn run(State(settings): State<UiSettings>, Path(id): Path<String>) -> Response {
    page(StatusCode::OK, pages::run(&settings, &id))
}

async fn new_run(State(settings): State<UiSettings>) -> Response {
    page(StatusCode::OK, pages::new_run(&settings))
}

async fn submit(State(settings): State<UiSettings>) -> Response {
    page(StatusCode::OK, pages::submit(&settings))
}

async fn schedules(State(settings): State<UiSettings>) -> Response {
    page(StatusCode::OK, pages::schedules(&settings))
}

async fn hosts(State(settings): State<UiSettings>) -> Response {
    page(StatusCode::OK, pages::hosts(&settings))
}

async fn workers(State(settings): State<UiSettings>) -> Response {
    page(StatusCode::OK, pages::workers(&settings))
}

async fn tokens(State(settings): State<UiSettings>) -> Response {
    page(StatusCode::OK, pages::tokens(&settings))
}

async fn audit(State(settings): State<UiSettings>) -> Response {
    page(StatusCode::OK, pages::audit(&settings))
}

async fn login(State(settings): State<UiSettings>) -> Response {
    page(StatusCode::OK, pages::login(&settings))
}

async fn not_found(State(settings): State<UiSettings>) -> Response {
    page(StatusCode::NOT_FOUND, pages::not_found(&settings))
}

fn page(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        )],
        Html(markup.into_string()),
    )
        .into_response()
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    assets::serve(&file, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> UiSettings {
        UiSettings {
            limits: Limits::default(),
            version: "test",
        }
    }

    #[test]
    fn every_page_loads_its_script_and_the_styles() {
        for (name, markup) in [
            ("jobs", pages::jobs(&settings())),
            ("job", pages::job(&settings(), "x")),
            ("runs", pages::runs(&settings())),
            ("run", pages::run(&settings(), "x")),
            ("newrun", pages::new_run(&settings())),
            ("submit", pages::submit(&settings())),
            ("schedules", pages::schedules(&settings())),
            ("hosts", pages::hosts(&settings())),
            ("workers", pages::workers(&settings())),
            ("tokens", pages::tokens(&settings())),
            ("audit", pages::audit(&settings())),
            ("login", pages::login(&settings())),
        ] {
            let html = markup.into_string();
            let script = format!("/ui/assets/{name}.js");
            assert!(html.contains(&script), "{name} loads {script}");
            assert!(
                html.contains("/ui/assets/app.css"),
                "{name} loads the styles"
            );
            assert!(
                assets::exists(&format!("{name}.js")),
                "{name}.js is embedded"
            );
        }
    }

    #[test]
    fn the_header_has_room_for_the_token_and_the_submit_link_names_its_role() {
        let html = pages::jobs(&settings()).into_string();
        assert!(html.contains(r#"id="whoami""#), "{html}");
        assert!(
            html.contains(r#"href="/ui/submit" data-needs="run""#),
            "{html}"
        );
        assert!(html.contains(r#"href="/ui/" aria-current="page" data-needs="read""#));
    }

    #[test]
    fn the_admin_pages_are_linked_for_admins_and_say_so_to_others() {
        let html = pages::jobs(&settings()).into_string();
        for page in ["tokens", "audit"] {
            assert!(
                html.contains(&format!(r#"href="/ui/{page}" data-needs="admin""#)),
                "{html}"
            );
        }
        for html in [pages::tokens(&settings()), pages::audit(&settings())] {
            let html = html.into_string();
            assert!(html.contains(r#"id="needs-admin""#), "{html}");
            assert!(html.contains(r#"id="admin-only""#), "{html}");
        }
    }

    #[test]
    fn the_new_secret_has_a_box_of_its_own_hidden_until_made() {
        let html = pages::tokens(&settings()).into_string();
        assert!(html.contains(r#"id="secret-box""#), "{html}");
        assert!(html.contains("will not be shown again"), "{html}");
    }

    #[test]
    fn the_schedule_form_offers_every_policy_and_is_for_run_tokens() {
        let html = pages::schedules(&settings()).into_string();
        assert!(
            html.contains(r#"href="/ui/schedules" aria-current="page" data-needs="read""#),
            "{html}"
        );
        assert!(
            html.contains(r#"id="make-schedule" data-needs="run""#),
            "{html}"
        );
        for overlap in rje_domain::Overlap::ALL {
            assert!(html.contains(&format!(r#"value="{overlap}""#)), "{overlap}");
        }
        for misfire in rje_domain::Misfire::ALL {
            assert!(html.contains(&format!(r#"value="{misfire}""#)), "{misfire}");
        }
        for field in [
            "name",
            "cron",
            "timezone",
            "command",
            "max_retries",
            "retry_on_failure",
        ] {
            assert!(
                html.contains(&format!(r#"data-error-for="{field}""#)),
                "{field} has a slot for its error"
            );
        }
        assert!(html.contains(r#"id="created""#), "{html}");
    }

    #[test]
    fn runs_are_in_the_nav_and_started_by_run_tokens() {
        let html = pages::runs(&settings()).into_string();
        assert!(
            html.contains(r#"href="/ui/runs" aria-current="page" data-needs="read""#),
            "{html}"
        );
        assert!(
            html.contains(r#"href="/ui/runs/new" data-needs="run""#),
            "{html}"
        );
        let html = pages::jobs(&settings()).into_string();
        assert!(
            html.contains(r#"href="/ui/runs" data-needs="read""#),
            "{html}"
        );
    }

    #[test]
    fn the_run_form_has_a_slot_for_every_fields_error() {
        let html = pages::new_run(&settings()).into_string();
        for field in [
            "command",
            "hosts",
            "labels",
            "max_parallel",
            "max_failures",
            "stop_on_first_failure",
            "priority",
            "timeout",
            "max_retries",
            "",
        ] {
            assert!(
                html.contains(&format!(r#"data-error-for="{field}""#)),
                "{field} has a slot for its error"
            );
        }
        for name in ["hosts", "labels"] {
            assert!(
                html.contains(&format!(r#"value="{name}""#)),
                "{name} target"
            );
        }
    }

    #[test]
    fn the_run_page_counts_every_outcome_and_escapes_its_id() {
        let html = pages::run(&settings(), "x").into_string();
        for outcome in rje_domain::HostOutcome::ALL {
            assert!(
                html.contains(&format!(r#"data-count="{}""#, outcome.as_str())),
                "{outcome:?}"
            );
        }
        for state in ["Queued", "Running"] {
            assert!(
                html.contains(&format!(r#"data-count="{state}""#)),
                "{state}"
            );
        }
        for id in ["grid", "cancel", "retry", "show-output", "output"] {
            assert!(html.contains(&format!(r#"id="{id}""#)), "{id}");
        }
        let html = pages::run(&settings(), "\"><script>x</script>").into_string();
        assert!(!html.contains("<script>x"));
    }

    #[test]
    fn the_run_form_and_a_runs_page_are_routes_of_their_own() {
        // `/ui/runs/new` beside `/ui/runs/{id}`: the router refuses
        // conflicting routes when it is built, so building it is the check.
        let _ = router::<()>(settings());
    }

    #[test]
    fn a_job_id_in_the_path_is_escaped() {
        let html = pages::job(&settings(), "\"><script>x</script>").into_string();
        assert!(!html.contains("<script>x"));
    }

    #[test]
    fn the_timeout_field_carries_the_limits() {
        let limits = Limits::default();
        let html = pages::submit(&settings()).into_string();
        assert!(html.contains(&format!("min=\"{}\"", limits.min_timeout_secs)));
        assert!(html.contains(&format!("max=\"{}\"", limits.max_timeout_secs)));
    }
}
