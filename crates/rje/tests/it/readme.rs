//! The README's quickstart, run as written against a real server, so that
//! it cannot go stale.
//!
//! The commands are the ```` ```sh ```` blocks between
//! `<!-- quickstart:begin -->` and `<!-- quickstart:end -->` in README.md.
//! They run as one `sh -e` script, in order (a later command may use a
//! variable an earlier one set), with the built `rje` first on `PATH`,
//! `RJE_URL` pointing at the server, and `http://127.0.0.1:8000` in the
//! commands replaced by the server's address. Starting the server is not
//! part of the block: the test starts it. Every command must exit 0.
//!
//! Comment lines right under a command, with no blank line between, are
//! its expected output: each must match a line the command printed
//! (stdout, then stderr), in order, `…` standing for anything. A comment
//! after a blank line is prose, and is not checked.

use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

use crate::helpers::*;

const BEGIN: &str = "<!-- quickstart:begin -->";
const END: &str = "<!-- quickstart:end -->";
/// Where the README's commands find the server.
const README_URL: &str = "http://127.0.0.1:8000";
/// Starts each step's output in the script's stdout and stderr.
const MARK: &str = "@@rje-readme-step";

/// One command of the quickstart and what it must print.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// The lines of the ```sh blocks between the markers.
fn quickstart_lines(readme: &str) -> Vec<String> {
    let begin = readme
        .find(BEGIN)
        .unwrap_or_else(|| panic!("README.md has no {BEGIN}"));
    let end = readme[begin..]
        .find(END)
        .map(|at| begin + at)
        .unwrap_or_else(|| panic!("README.md has no {END} after {BEGIN}"));
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in readme[begin + BEGIN.len()..end].lines() {
        let fence = line.trim_start();
        if in_sh {
            if fence.starts_with("```") {
                in_sh = false;
            } else {
                lines.push(line.to_owned());
            }
        } else if fence == "```sh" {
            in_sh = true;
        }
    }
    assert!(!in_sh, "a ```sh block of the quickstart is not closed");
    lines
}

/// Commands (a line ending in `\` goes on on the next) and the comment
/// lines right under each, as its expected output.
fn steps(lines: &[String]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    // Whether the lines since the last blank one belong to a command.
    let mut under_command = false;
    let mut continued = false;
    for line in lines {
        let trimmed = line.trim();
        if continued {
            let step = steps.last_mut().expect("a command goes on");
            step.command.push('\n');
            step.command.push_str(line);
            continued = trimmed.ends_with('\\');
            continue;
        }
        if trimmed.is_empty() {
            under_command = false;
        } else if let Some(comment) = trimmed.strip_prefix('#') {
            if under_command {
                let expected = comment.strip_prefix(' ').unwrap_or(comment);
                steps
                    .last_mut()
                    .expect("under a command")
                    .expected
                    .push(expected.to_owned());
            }
        } else {
            steps.push(Step {
                command: line.clone(),
                expected: Vec::new(),
            });
            under_command = true;
            continued = trimmed.ends_with('\\');
        }
    }
    steps
}

/// Whether `line` holds the pieces of `expected` between its `…`, in order.
fn matches(expected: &str, line: &str) -> bool {
    let mut rest = line;
    for piece in expected.split('…').map(str::trim).filter(|p| !p.is_empty()) {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Each expected line matched by a line of `printed`, in order; the first
/// one that is not, if any.
fn first_unmatched<'a>(expected: &'a [String], printed: &[&str]) -> Option<&'a str> {
    let mut lines = printed.iter();
    expected
        .iter()
        .find(|wanted| !lines.any(|line| matches(wanted, line)))
        .map(String::as_str)
}

/// The script that runs every step, marking where each one's output
/// starts (on a line of its own, whatever the previous output ended with).
fn script(steps: &[Step], base: &str) -> String {
    let mut script = String::from("set -e\n");
    for (index, step) in steps.iter().enumerate() {
        script.push_str(&format!(
            "printf '\\n{MARK} {index}\\n'; printf '\\n{MARK} {index}\\n' >&2\n"
        ));
        script.push_str(&step.command.replace(README_URL, base));
        script.push('\n');
    }
    script
}

/// What each step printed: the text after its mark, up to the next.
fn per_step(output: &str, steps: usize) -> Vec<Vec<&str>> {
    let mut printed = vec![Vec::new(); steps];
    let mut current: Option<usize> = None;
    for line in output.lines() {
        if let Some(index) = line.strip_prefix(MARK) {
            current = index.trim().parse().ok();
        } else if let Some(step) = current.and_then(|i| printed.get_mut(i))
            && !line.is_empty()
        {
            step.push(line);
        }
    }
    printed
}

/// The index of the last step that started.
fn last_started(output: &str) -> Option<usize> {
    output
        .lines()
        .rev()
        .filter_map(|line| line.strip_prefix(MARK))
        .find_map(|index| index.trim().parse().ok())
}

#[test]
fn expected_output_is_read_from_the_comments_under_a_command() {
    let lines: Vec<String> = [
        "# Prose above a command is not checked.",
        "ID=$(rje submit 'echo a' \\",
        "  --priority high)",
        "rje stream $ID",
        "# a",
        "",
        "# Prose again.",
        "rje view $ID",
        "# status … Success",
    ]
    .iter()
    .map(|line| (*line).to_owned())
    .collect();
    let steps = steps(&lines);
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert_eq!(
        steps[0].command,
        "ID=$(rje submit 'echo a' \\\n  --priority high)"
    );
    assert!(steps[0].expected.is_empty());
    assert_eq!(steps[1].expected, ["a"]);
    assert_eq!(steps[2].expected, ["status … Success"]);
    assert!(matches("status … Success", " status      Success "));
    assert!(!matches("status … Success", " Success      status "));
    assert!(matches("job … is Cancelled", "job 0195 is Cancelled"));
    let expected = ["one".to_owned(), "two".to_owned()];
    assert_eq!(first_unmatched(&expected, &["one", "x", "two"]), None);
    assert_eq!(first_unmatched(&expected, &["two", "one"]), Some("two"));
}

/// The two commands a newcomer sets up with stay in the README, and CI
/// keeps running the test command.
#[test]
fn the_set_up_commands_are_there() {
    let readme = readme();
    for command in ["cargo run --release -- serve", "cargo test --workspace"] {
        assert!(
            readme.contains(&format!("\n{command}\n")),
            "README.md shows `{command}` on a line of its own"
        );
    }
    let ci = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/run"))
        .expect(".ci/run");
    assert!(
        ci.lines()
            .any(|line| line.trim() == "cargo test --workspace"),
        ".ci/run runs the README's test command"
    );
}

#[tokio::test]
async fn the_quickstart_runs_as_written() {
    let readme = readme();
    let steps = steps(&quickstart_lines(&readme));
    assert!(
        steps.len() >= 5,
        "the quickstart has its commands: {steps:?}"
    );
    assert!(
        steps.iter().any(|step| !step.expected.is_empty()),
        "some command says what it prints"
    );
    for step in &steps {
        assert!(
            !step.command.contains("rje serve") && !step.command.contains("cargo "),
            "the quickstart runs against a server already running: {}",
            step.command
        );
    }
    let has_curl = std::process::Command::new("sh")
        .args(["-c", "command -v curl"])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        has_curl,
        "the README's quickstart uses curl: install it (apt-get install curl)"
    );

    let app = spawn_app().await;
    let base = app.url("");
    let binary = Path::new(env!("CARGO_BIN_EXE_rje"));
    let path = match std::env::var_os("PATH") {
        Some(path) => {
            let mut dirs = vec![binary.parent().unwrap().to_owned()];
            dirs.extend(std::env::split_paths(&path));
            std::env::join_paths(dirs).unwrap()
        }
        None => binary.parent().unwrap().as_os_str().to_owned(),
    };
    let work = tempfile::tempdir().unwrap();
    let script = script(&steps, &base);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(&script)
        .current_dir(work.path())
        .env("PATH", path)
        .env("RJE_URL", &base)
        .env("XDG_CONFIG_HOME", work.path().join("config"))
        .env_remove("RJE_TOKEN")
        .env_remove("RJE_CONFIG")
        .env_remove("RJE_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(DEADLINE * 2, command.output())
        .await
        .expect("the quickstart finishes")
        .expect("sh runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);

    if !output.status.success() {
        let failed = last_started(&stdout).and_then(|index| steps.get(index));
        panic!(
            "the quickstart failed ({}) at {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            output.status,
            failed.map(|step| step.command.as_str())
        );
    }
    let (out, err) = (
        per_step(&stdout, steps.len()),
        per_step(&stderr, steps.len()),
    );
    for (index, step) in steps.iter().enumerate() {
        let printed: Vec<&str> = out[index].iter().chain(&err[index]).copied().collect();
        if let Some(missing) = first_unmatched(&step.expected, &printed) {
            panic!(
                "`{}` did not print {missing:?} (in order) as the README says:\n{}",
                step.command,
                printed.join("\n")
            );
        }
    }
}
