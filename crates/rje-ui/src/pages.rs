//! The pages' markup. Each is a frame the page's script fills from the
//! API: what is here is the same for every user and every moment.

use maud::{DOCTYPE, Markup, html};
use rje_domain::{
    DEFAULT_MAX_PARALLEL, DEFAULT_RUN_MAX_RETRIES, HostOutcome, Limits, MAX_RUN_HOSTS, Misfire,
    Overlap, Priority, Status,
};

use crate::UiSettings;

/// The navigation, in order: (path, label, page name, the least role
/// whose token can use the page). The pages' script hides a link the
/// token's role does not reach; the server refuses the calls regardless.
const NAV: &[(&str, &str, &str, &str)] = &[
    ("/ui/", "Jobs", "jobs", "read"),
    ("/ui/runs", "Runs", "runs", "read"),
    ("/ui/submit", "Submit", "submit", "run"),
    ("/ui/schedules", "Schedules", "schedules", "read"),
    ("/ui/hosts", "Hosts", "hosts", "read"),
    ("/ui/workers", "Workers", "workers", "read"),
    ("/ui/tokens", "Tokens", "tokens", "admin"),
    ("/ui/audit", "Audit", "audit", "admin"),
];

/// The routes whose calls the audit trail records (those that change
/// something), offered as the route filter's suggestions: the trail
/// filters on a route's pattern exactly, as its entries show it.
const AUDITED_ROUTES: &[&str] = &[
    "/jobs",
    "/jobs/{id}",
    "/jobs/{id}/cancel",
    "/jobs/{id}/retry",
    "/hosts/{name}/check",
    "/schedules",
    "/schedules/{id}",
    "/schedules/{id}/pause",
    "/schedules/{id}/resume",
    "/tokens",
    "/tokens/{name}",
];

/// Priorities as people pick them: the most urgent first.
const PRIORITIES: [Priority; 3] = [Priority::High, Priority::Medium, Priority::Low];

/// A schedule's overlap as its select offers it: the value, and what it does.
fn overlap_label(overlap: Overlap) -> &'static str {
    match overlap {
        Overlap::Allow => "allow: fire anyway",
        Overlap::Skip => "skip: fire nothing",
        Overlap::Queue => "queue: fire a job that waits for the last one",
    }
}

/// A schedule's misfire as its select offers it.
fn misfire_label(misfire: Misfire) -> &'static str {
    match misfire {
        Misfire::Skip => "skip: wait for the next fire time",
        Misfire::RunOnce => "run_once: run once, late",
    }
}

fn layout(settings: &UiSettings, name: &str, title: &str, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · rje" }
                link rel="icon" href="/ui/assets/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/ui/assets/app.css";
                script type="module" src={ "/ui/assets/" (name) ".js" } {}
            }
            body data-page=(name) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "rje" }
                    nav.nav aria-label="Pages" {
                        @for (path, label, page, needs) in NAV {
                            @if *page == name {
                                a href=(path) aria-current="page" data-needs=(needs) { (label) }
                            } @else {
                                a href=(path) data-needs=(needs) { (label) }
                            }
                        }
                        a href="/docs/" { "API" }
                    }
                    div.session {
                        span #live .live hidden title="Live updates" { "live" }
                        // Who the token is ("name · role"), from GET /whoami/.
                        span #whoami .whoami hidden {}
                        button #signout .link type="button" hidden { "Sign out" }
                    }
                }
                div #flash .flash role="alert" hidden {}
                main #main { (main) }
                footer.foot { "rje " (settings.version) }
            }
        }
    }
}

fn status_badge(status: Status) -> Markup {
    html! { span class={ "badge s-" (status.as_str()) } { (status.as_str()) } }
}

pub(crate) fn jobs(settings: &UiSettings) -> Markup {
    let main = html! {
        h1 { "Jobs" }
        // Filled when the address asks for one schedule's jobs (?schedule=).
        p #schedule-filter .note hidden {}
        nav #counts .counts aria-label="Jobs by status" {
            a href="/ui/" data-status="" { "All " b data-count="total" { "–" } }
            @for status in Status::ALL {
                a href={ "/ui/?status=" (status.as_str()) } data-status=(status.as_str()) {
                    (status_badge(*status)) " " b data-count=(status.as_str()) { "–" }
                }
            }
        }
        form #filters .filters role="search" {
            label.grow { "Command contains "
                input type="search" name="search" maxlength="200" autocomplete="off"
                    placeholder="3 characters or more, e.g. backup";
            }
            label { "Status "
                select name="status" {
                    option value="" { "Any" }
                    @for status in Status::ALL { option { (status.as_str()) } }
                }
            }
            label { "Priority "
                select name="priority" {
                    option value="" { "Any" }
                    @for priority in PRIORITIES { option { (priority.as_str()) } }
                }
            }
            label { "Host "
                select name="host" { option value="" { "Any" } }
            }
            label { "Sort "
                select name="ordering" {
                    option value="-created_at" { "Newest first" }
                    option value="created_at" { "Oldest first" }
                    option value="-started_at" { "Recently started" }
                    option value="-completed_at" { "Recently completed" }
                }
            }
            label { "Per page "
                select name="limit" {
                    option { "25" } option { "50" } option { "100" }
                }
            }
        }
        div.table-wrap {
            table #jobs .jobs {
                thead { tr {
                    th { "Status" } th { "Command" } th.opt { "Host" } th.opt { "Priority" }
                    th { "Created" } th.opt { "Duration" } th.opt { "Exit" }
                    th.opt { "Submitted by" }
                } }
                tbody {}
            }
        }
        p #empty .note hidden { "No jobs match." }
        nav.pager aria-label="Pages of jobs" {
            button #prev type="button" disabled { "← Previous" }
            span #range { "" }
            button #next type="button" disabled { "Next →" }
        }
    };
    layout(settings, "jobs", "Jobs", main)
}

pub(crate) fn job(settings: &UiSettings, id: &str) -> Markup {
    let main = html! {
        div.job-head data-job-id=(id) {
            h1 { "Job " code #short { (id.get(..8).unwrap_or(id)) } }
            span #status .badge {}
            div.actions {
                button #cancel .danger type="button" hidden { "Cancel" }
                button #rerun type="button" hidden { "Run again" }
                button #delete .danger type="button" hidden { "Delete" }
            }
        }
        // "Retrying as …" when a failure ran the job again by itself.
        p #retrying .retrying hidden {}
        pre #command .command {}
        dl #fields .fields {}
        section.output aria-labelledby="output-title" {
            div.output-bar {
                h2 #output-title { "Output" }
                label { input #show-stdout type="checkbox" checked; " stdout" }
                label { input #show-stderr type="checkbox" checked; " stderr" }
                label { input #follow type="checkbox" checked; " Follow" }
                button #dl-stdout type="button" { "Download stdout" }
                button #dl-stderr type="button" { "Download stderr" }
            }
            p #output-note .note hidden {}
            div #output .log tabindex="0" role="log" aria-label="Output" {}
        }
    };
    layout(settings, "job", "Job", main)
}

pub(crate) fn submit(settings: &UiSettings) -> Markup {
    let limits = &settings.limits;
    let main = html! {
        h1 { "Submit a job" }
        // Shown instead of the form to a token whose role is read.
        p #cannot-submit .note hidden {}
        form #submit .stack novalidate {
            div.field {
                label for="command" { "Command" }
                textarea #command name="command" rows="3" required
                    spellcheck="false" placeholder="e.g. ls -la /var/log" {}
                p.hint { "Run by /bin/sh -c on the host; at most "
                    (limits.max_command_bytes) " bytes." }
                p.error data-error-for="command" {}
            }
            div.row {
                div.field {
                    label for="priority" { "Priority" }
                    select #priority name="priority" {
                        @for priority in PRIORITIES {
                            @if priority == Priority::Medium {
                                option selected { (priority.as_str()) }
                            } @else {
                                option { (priority.as_str()) }
                            }
                        }
                    }
                    p.error data-error-for="priority" {}
                }
                div.field {
                    label for="timeout" { "Timeout (seconds)" }
                    input #timeout name="timeout" type="number" inputmode="numeric"
                        min=(limits.min_timeout_secs) max=(limits.max_timeout_secs)
                        value=(rje_domain::Limits::DEFAULT_TIMEOUT_SECS);
                    p.hint { "From " (limits.min_timeout_secs) " to "
                        (limits.max_timeout_secs) "." }
                    p.error data-error-for="timeout" {}
                }
                div.field {
                    label for="host" { "Host" }
                    select #host name="host" {}
                    p.error data-error-for="host" {}
                }
            }
            fieldset.field {
                legend { "Environment" }
                div #env .env {}
                button #add-env type="button" { "Add a variable" }
                p.error data-error-for="parameters" {}
            }
            div.field {
                label for="cwd" { "Working directory" }
                input #cwd name="cwd" type="text" spellcheck="false" placeholder="/absolute/path";
            }
            (retry_on_failure("retry-on-failure",
                html! { (Limits::DEFAULT_MAX_RETRIES) " times" }))
            p.error data-error-for="" {}
            div.actions { button.primary type="submit" { "Submit" } }
        }
        template #env-row {
            div.env-row {
                input.env-name type="text" aria-label="Name" placeholder="NAME" spellcheck="false";
                input.env-value type="text" aria-label="Value" placeholder="value" spellcheck="false";
                button.remove type="button" aria-label="Remove this variable" { "×" }
            }
        }
    };
    layout(settings, "submit", "Submit", main)
}

/// The checkbox that makes a failed job run again by itself; `how_often`
/// ends the hint's sentence ("at most …").
fn retry_on_failure(id: &str, how_often: Markup) -> Markup {
    html! {
        div.field {
            label.check {
                input id=(id) name="retry_on_failure" type="checkbox";
                " Run again when it fails"
            }
            p.hint { "When the command fails or times out, a new job runs it again, at most "
                (how_often) "; each new job links to the one it runs again." }
            p.error data-error-for="retry_on_failure" {}
        }
    }
}

pub(crate) fn schedules(settings: &UiSettings) -> Markup {
    let limits = &settings.limits;
    let main = html! {
        h1 { "Schedules" }
        p.hint { "Jobs submitted at the fire times of a cron expression, read on a time zone's \
            wall clock. Times are shown in yours, with the UTC value on hover." }
        div.table-wrap {
            table #schedules {
                thead { tr {
                    th { "Name" } th.opt { "Command" } th { "Cron" } th { "Next fire" }
                    th { "Last job" } th.opt { "Overlap" } th { "State" } th.opt { "Made by" }
                    th { "Actions" }
                } }
                tbody {}
            }
        }
        p #no-schedules .note hidden { "No schedule yet." }
        p #more-schedules .note hidden {}
        // Only for tokens that may make one (run or admin).
        section #make-schedule data-needs="run" aria-labelledby="make-schedule-title" {
            h2 #make-schedule-title { "Make a schedule" }
            form #new-schedule .stack novalidate autocomplete="off" {
                div.row {
                    div.field {
                        label for="schedule-name" { "Name" }
                        input #schedule-name name="name" type="text" required maxlength="100"
                            spellcheck="false" placeholder="e.g. nightly-backup";
                        p.hint { "Letters, digits, '.', '_' or '-'." }
                        p.error data-error-for="name" {}
                    }
                    div.field {
                        label for="schedule-cron" { "Cron" }
                        input #schedule-cron name="cron" type="text" required maxlength="200"
                            spellcheck="false" placeholder="e.g. 30 2 * * *";
                        p.hint { "minute hour day month weekday (6 fields: seconds first), \
                            or @hourly, @daily, @weekly, @monthly, @yearly." }
                        p.error data-error-for="cron" {}
                    }
                    div.field {
                        label for="schedule-timezone" { "Time zone" }
                        input #schedule-timezone name="timezone" type="text" value="UTC"
                            list="timezones" maxlength="64" spellcheck="false";
                        datalist #timezones {}
                        p.hint { "An IANA name, e.g. Europe/Paris." }
                        p.error data-error-for="timezone" {}
                    }
                }
                div.field {
                    label for="schedule-command" { "Command" }
                    textarea #schedule-command name="command" rows="2" required
                        spellcheck="false" placeholder="e.g. /usr/local/bin/backup" {}
                    p.hint { "Run by /bin/sh -c on the host; at most "
                        (limits.max_command_bytes) " bytes." }
                    p.error data-error-for="command" {}
                }
                div.row {
                    div.field {
                        label for="schedule-priority" { "Priority" }
                        select #schedule-priority name="priority" {
                            @for priority in PRIORITIES {
                                @if priority == Priority::Medium {
                                    option selected { (priority.as_str()) }
                                } @else {
                                    option { (priority.as_str()) }
                                }
                            }
                        }
                        p.error data-error-for="priority" {}
                    }
                    div.field {
                        label for="schedule-timeout" { "Timeout (seconds)" }
                        input #schedule-timeout name="timeout" type="number" inputmode="numeric"
                            min=(limits.min_timeout_secs) max=(limits.max_timeout_secs)
                            value=(Limits::DEFAULT_TIMEOUT_SECS);
                        p.error data-error-for="timeout" {}
                    }
                    div.field {
                        label for="schedule-host" { "Host" }
                        select #schedule-host name="host" {}
                        p.error data-error-for="host" {}
                    }
                }
                div.row {
                    div.field {
                        label for="schedule-overlap" { "While the last job runs" }
                        select #schedule-overlap name="overlap" {
                            @for overlap in Overlap::ALL {
                                option value=(overlap.as_str()) { (overlap_label(*overlap)) }
                            }
                        }
                        p.error data-error-for="overlap" {}
                    }
                    div.field {
                        label for="schedule-misfire" { "A fire time missed while rje was down" }
                        select #schedule-misfire name="misfire" {
                            @for misfire in Misfire::ALL {
                                option value=(misfire.as_str()) { (misfire_label(*misfire)) }
                            }
                        }
                        p.error data-error-for="misfire" {}
                    }
                    div.field {
                        label for="schedule-max-retries" { "Retries" }
                        input #schedule-max-retries name="max_retries" type="number"
                            inputmode="numeric" min="0" max=(limits.max_retries)
                            value=(Limits::DEFAULT_MAX_RETRIES);
                        p.hint { "How often a start that failed is tried again, and a failed \
                            run when asked below; at most " (limits.max_retries) "." }
                        p.error data-error-for="max_retries" {}
                    }
                }
                (retry_on_failure("schedule-retry-on-failure",
                    html! { "as many times as Retries says" }))
                p.error data-error-for="" {}
                div.actions { button.primary type="submit" { "Make the schedule" } }
            }
            // The new schedule's next fire times, so that a wrong cron or
            // zone shows at once.
            section #created .created hidden tabindex="-1" aria-labelledby="created-title" {
                h2 #created-title { "The schedule " span #created-name {} " fires next" }
                ol #next-fires {}
                p.hint { "On the schedule's time zone's clock; hover for UTC." }
                div.actions { button #created-done type="button" { "Done" } }
            }
        }
    };
    layout(settings, "schedules", "Schedules", main)
}

/// The states a run's host can be in, as the run page counts them: those
/// not over yet, then every outcome.
fn host_states() -> impl Iterator<Item = &'static str> {
    ["Queued", "Running"]
        .into_iter()
        .chain(HostOutcome::ALL.iter().map(|outcome| outcome.as_str()))
}

pub(crate) fn runs(settings: &UiSettings) -> Markup {
    let main = html! {
        div.page-head {
            h1 { "Runs" }
            a #start-run .button.primary href="/ui/runs/new" data-needs="run" { "Start a run" }
        }
        p.hint { "One command on many hosts at once: a run makes one job per host, \
            runs so many at a time and stops starting new ones after too many failures." }
        div.table-wrap {
            table #runs {
                thead { tr {
                    th { "Status" } th { "Command" } th { "Hosts" } th { "Outcomes" }
                    th { "Created" } th.opt { "Duration" } th.opt { "Started by" }
                } }
                tbody {}
            }
        }
        p #empty .note hidden { "No run yet." }
        nav.pager aria-label="Pages of runs" {
            button #prev type="button" disabled { "← Previous" }
            span #range { "" }
            button #next type="button" disabled { "Next →" }
        }
    };
    layout(settings, "runs", "Runs", main)
}

pub(crate) fn run(settings: &UiSettings, id: &str) -> Markup {
    let main = html! {
        div.job-head data-run-id=(id) {
            h1 { "Run " code #short { (id.get(..8).unwrap_or(id)) } }
            span #status .badge {}
            div.actions {
                button #cancel .danger type="button" hidden { "Cancel" }
                button #retry type="button" hidden { "Retry failed hosts" }
            }
        }
        pre #command .command {}
        // How many hosts are in each state; the script fills the numbers.
        div #counts .tally role="group" aria-label="Hosts by state" {
            @for state in host_states() {
                span.tally-item data-state=(state) {
                    span class={ "dot o-" (state) } {}
                    (state) " " b data-count=(state) { "–" }
                }
            }
        }
        dl #fields .fields {}
        section.run-hosts aria-labelledby="hosts-title" {
            div.output-bar {
                h2 #hosts-title { "Hosts" }
                label { input #show-output type="checkbox"; " Show the output" }
            }
            // One tile per host, in the run's order: a link to its job.
            ul #grid .grid {}
        }
        section #output-box .output hidden aria-labelledby="output-title" {
            div.output-bar {
                h2 #output-title { "Output" }
                label { input #follow type="checkbox" checked; " Follow" }
            }
            p.hint { "Every host's lines as they are printed while this page follows the run, \
                each after its host's name. A host's job page has all of its output." }
            p #output-note .note hidden {}
            div #output .log tabindex="0" role="log" aria-label="Output of the run's hosts" {}
        }
    };
    layout(settings, "run", "Run", main)
}

pub(crate) fn new_run(settings: &UiSettings) -> Markup {
    let limits = &settings.limits;
    let main = html! {
        h1 { "Start a run" }
        p.hint { "One command on many hosts at once: one job per host. "
            a href="/ui/runs" { "Every run" } "." }
        // Shown instead of the form to a token whose role is read.
        p #cannot-start .note hidden {}
        form #new-run .stack novalidate autocomplete="off" {
            div.field {
                label for="run-command" { "Command" }
                textarea #run-command name="command" rows="3" required
                    spellcheck="false" placeholder="e.g. uptime" {}
                p.hint { "Run by /bin/sh -c on every host; at most "
                    (limits.max_command_bytes) " bytes." }
                p.error data-error-for="command" {}
            }
            fieldset.field {
                legend { "Where" }
                div.choice-bar {
                    label.check { input #target-hosts type="radio" name="target" value="hosts" checked;
                        " These hosts" }
                    label.check { input #target-labels type="radio" name="target" value="labels";
                        " The hosts carrying all of these labels" }
                }
                div #pick-hosts {
                    div.choice-bar {
                        input #hosts-filter type="search" aria-label="Filter the hosts"
                            placeholder="Filter the hosts" spellcheck="false";
                        button #hosts-all type="button" { "All shown" }
                        button #hosts-none type="button" { "None" }
                    }
                    div #run-hosts .choices {}
                    p #hosts-picked .hint aria-live="polite" {}
                }
                div #pick-labels hidden {
                    div #run-labels .choices {}
                    p #labels-match .hint aria-live="polite" {}
                }
                p.hint { "At most " (MAX_RUN_HOSTS) " hosts." }
                p.error data-error-for="hosts" {}
                p.error data-error-for="labels" {}
            }
            div.row {
                div.field {
                    label for="run-max-parallel" { "Hosts at once" }
                    input #run-max-parallel name="max_parallel" type="number" inputmode="numeric"
                        min="1" max=(MAX_RUN_HOSTS) value=(DEFAULT_MAX_PARALLEL);
                    p.hint { "The others wait for their turn, in the order shown." }
                    p.error data-error-for="max_parallel" {}
                }
                div.field {
                    label for="run-max-failures" { "Failures tolerated" }
                    input #run-max-failures name="max_failures" type="text" spellcheck="false"
                        placeholder="no limit; e.g. 2 or 10%";
                    p.hint { "A number of hosts or a share of them. One more failure, and \
                        the hosts not started yet are skipped." }
                    p.error data-error-for="max_failures" {}
                }
            }
            div.field {
                label.check {
                    input #run-stop-on-first-failure name="stop_on_first_failure" type="checkbox";
                    " Stop at the first failure"
                }
                p.hint { "The same as 0 failures tolerated." }
                p.error data-error-for="stop_on_first_failure" {}
            }
            div.row {
                div.field {
                    label for="run-priority" { "Priority" }
                    select #run-priority name="priority" {
                        @for priority in PRIORITIES {
                            @if priority == Priority::Medium {
                                option selected { (priority.as_str()) }
                            } @else {
                                option { (priority.as_str()) }
                            }
                        }
                    }
                    p.error data-error-for="priority" {}
                }
                div.field {
                    label for="run-timeout" { "Timeout (seconds)" }
                    input #run-timeout name="timeout" type="number" inputmode="numeric"
                        min=(limits.min_timeout_secs) max=(limits.max_timeout_secs)
                        value=(Limits::DEFAULT_TIMEOUT_SECS);
                    p.hint { "Each host's; from " (limits.min_timeout_secs) " to "
                        (limits.max_timeout_secs) "." }
                    p.error data-error-for="timeout" {}
                }
                div.field {
                    label for="run-max-retries" { "Retries when unreachable" }
                    input #run-max-retries name="max_retries" type="number" inputmode="numeric"
                        min="0" max=(limits.max_retries) value=(DEFAULT_RUN_MAX_RETRIES);
                    p.hint { "How often a host that could not be reached is tried again; \
                        at most " (limits.max_retries) "." }
                    p.error data-error-for="max_retries" {}
                }
            }
            p.error data-error-for="parameters" {}
            p.error data-error-for="" {}
            div.actions { button.primary type="submit" { "Start the run" } }
        }
    };
    layout(settings, "newrun", "Start a run", main)
}

pub(crate) fn hosts(settings: &UiSettings) -> Markup {
    let main = html! {
        h1 { "Hosts" }
        div.table-wrap {
            table #hosts {
                thead { tr {
                    th { "Host" } th { "Health" } th.opt { "Address" } th.opt { "Jobs" }
                    th.opt { "Last error" } th { "Check" }
                } }
                tbody {}
            }
        }
    };
    layout(settings, "hosts", "Hosts", main)
}

pub(crate) fn workers(settings: &UiSettings) -> Markup {
    let main = html! {
        h1 { "Workers" }
        h2 { "Queue" }
        div.table-wrap {
            table #queue .narrow {
                thead { tr { th { "Priority" } th { "Queued" } th { "Running" } } }
                tbody {
                    @for priority in PRIORITIES {
                        tr data-priority=(priority.as_str()) {
                            th { (priority.as_str()) } td.queued { "–" } td.running { "–" }
                        }
                    }
                }
            }
        }
        h2 { "Live workers" }
        div.table-wrap {
            table #workers {
                thead { tr {
                    th { "Worker" } th.opt { "Machine" } th { "Slots" } th.opt { "Started" }
                    th.opt { "Heartbeat" } th { "Running jobs" }
                } }
                tbody {}
            }
        }
        p #no-workers .note hidden { "No worker is alive: queued jobs wait until one starts." }
    };
    layout(settings, "workers", "Workers", main)
}

/// Shown instead of an admin's page to a lesser token; the script fills
/// in who the token is.
fn needs_admin() -> Markup {
    html! { p #needs-admin .note hidden { "This page needs an admin token." } }
}

pub(crate) fn tokens(settings: &UiSettings) -> Markup {
    let main = html! {
        h1 { "Tokens" }
        (needs_admin())
        div #admin-only {
            // Shown when the server takes no token yet.
            p #open-server .note hidden {
                "This server takes no token yet: the first one made turns tokens on for "
                "every client, this tab included. Make an admin token first and sign in with it."
            }
            div.table-wrap {
                table #tokens {
                    thead { tr {
                        th { "Name" } th { "Role" } th { "Scope" } th.opt { "Created" }
                        th.opt { "Last used" } th { "Revoke" }
                    } }
                    tbody {}
                }
            }
            p #no-tokens .note hidden {
                "The server keeps no token yet. Those of RJE_API_TOKENS are not listed: "
                "they are named env- and the first 8 hex digits of their SHA-256."
            }
            h2 { "Make a token" }
            form #new-token .stack novalidate autocomplete="off" {
                div.row {
                    div.field {
                        label for="token-name" { "Name" }
                        input #token-name name="name" type="text" required maxlength="64"
                            spellcheck="false" autocomplete="off" placeholder="e.g. ci";
                        p.hint { "1 to 64 letters, digits, '-', '_' or '.'. It names the \
                            token in the audit trail and in a job's submitted_by." }
                        p.error data-error-for="name" {}
                    }
                    div.field {
                        label for="token-role" { "Role" }
                        select #token-role name="role" {
                            option value="read" selected { "read: sees jobs, hosts and workers" }
                            option value="run" { "run: also submits, cancels its own jobs" }
                            option value="admin" { "admin: everything, tokens included" }
                        }
                        p.error data-error-for="role" {}
                    }
                }
                div.row {
                    div.field {
                        label for="token-hosts" { "Hosts" }
                        input #token-hosts name="hosts" type="text" spellcheck="false"
                            autocomplete="off" placeholder="e.g. web-1, web-2";
                        p.hint { "Separated by commas. With no hosts and no labels: every host." }
                        p.error data-error-for="hosts" {}
                    }
                    div.field {
                        label for="token-labels" { "Labels" }
                        input #token-labels name="labels" type="text" spellcheck="false"
                            autocomplete="off" placeholder="e.g. prod";
                        p.hint { "The hosts carrying any of them. An admin token takes no \
                            hosts or labels: it covers every host." }
                        p.error data-error-for="labels" {}
                    }
                }
                p.error data-error-for="" {}
                div.actions { button.primary type="submit" { "Make the token" } }
            }
            // The new token's secret, this once: never stored, cleared when
            // the page is left.
            section #secret-box .secret-box hidden tabindex="-1" aria-labelledby="secret-title" {
                h2 #secret-title { "The secret of " span #secret-name {} }
                p { strong { "Copy it now: it will not be shown again." }
                    " The server keeps only its hash. If it is lost, revoke the token and make another." }
                div.secret-row {
                    code #secret .secret-value {}
                    button #copy type="button" { "Copy" }
                }
                p #copied .hint aria-live="polite" {}
                div.actions { button #secret-done type="button" { "Done: hide it" } }
            }
        }
    };
    layout(settings, "tokens", "Tokens", main)
}

pub(crate) fn audit(settings: &UiSettings) -> Markup {
    let main = html! {
        h1 { "Audit trail" }
        (needs_admin())
        div #admin-only {
            p.hint { "Every change asked of the API, newest first: which token asked, from \
                where, and how the server answered, refusals included." }
            form #audit-filters .filters role="search" {
                label { "Token "
                    input type="search" name="token" list="token-names" maxlength="200"
                        autocomplete="off" spellcheck="false" placeholder="a token's name, e.g. ci";
                }
                label.grow { "Route "
                    input type="search" name="route" list="audited-routes" maxlength="200"
                        autocomplete="off" spellcheck="false" placeholder="e.g. /jobs/{id}/cancel";
                }
                datalist #token-names {}
                datalist #audited-routes {
                    @for route in AUDITED_ROUTES { option value=(route) {} }
                }
            }
            div.table-wrap {
                table #audit {
                    thead { tr {
                        th { "When" } th { "Token" } th.opt { "Client" } th { "Request" }
                        th { "Target" } th { "Status" }
                    } }
                    tbody {}
                }
            }
            p #empty .note hidden { "No entry matches." }
            nav.pager aria-label="Pages of the audit trail" {
                button #prev type="button" disabled { "← Previous" }
                span #range { "" }
                button #next type="button" disabled { "Next →" }
            }
        }
    };
    layout(settings, "audit", "Audit", main)
}

pub(crate) fn login(settings: &UiSettings) -> Markup {
    let main = html! {
        h1 { "Sign in" }
        form #login .stack.narrow {
            div.field {
                label for="token" { "API token" }
                input #token name="token" type="password" autocomplete="current-password"
                    required spellcheck="false";
                p.hint { "One of the server's RJE_API_TOKENS, or one made with "
                    code { "rje tokens create" } ". It is kept for this tab only." }
                p.error #login-error {}
            }
            div.actions { button.primary type="submit" { "Sign in" } }
        }
    };
    layout(settings, "login", "Sign in", main)
}

pub(crate) fn not_found(settings: &UiSettings) -> Markup {
    let main = html! {
        h1 { "Not found" }
        p { "There is no such page. " a href="/ui/" { "Back to the jobs" } "." }
    };
    layout(settings, "notfound", "Not found", main)
}
