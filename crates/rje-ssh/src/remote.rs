//! The shell text rje sends to a host. sshd starts each session's command
//! as a session and process-group leader, so the wrapper's `$$` names the
//! group the command runs in; it prints that id and the host's boot id on
//! the first line of stdout, then becomes the command with `exec`.

use std::time::Duration;

use rje_domain::ExecParameters;

/// How the wrapper's first line begins.
const PID_TAG: &str = "rje-pid ";
/// The wrapper could not enter the job's working directory.
const NO_DIR_TAG: &str = "rje-no-dir";

/// Quotes `text` as one word for a POSIX shell.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";
const BOOT_ID: &str = "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo none)";

/// The text a session runs for `command`.
pub fn wrapper(command: &str, parameters: &ExecParameters) -> String {
    let mut script = String::new();
    if let Some(cwd) = &parameters.cwd {
        script.push_str(&format!(
            "cd {} 2>/dev/null || {{ echo {NO_DIR_TAG}; exit 125; }}; ",
            quote(cwd)
        ));
    }
    // `read` is a builtin: no process is forked before the command.
    script.push_str(&format!(
        "b=none; read -r b 2>/dev/null <{BOOT_ID_FILE}; echo \"{PID_TAG}$$ $b\"; "
    ));
    for (name, value) in &parameters.env {
        // Names were checked at submit ([A-Za-z_][A-Za-z0-9_]*).
        script.push_str(&format!("export {name}={}; ", quote(value)));
    }
    script.push_str(&format!("exec sh -c {} </dev/null", quote(command)));
    script
}

/// What the wrapper's first line said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    Started { pgid: u32, boot_id: String },
    NoDirectory,
}

/// Parses the wrapper's first line (without its newline).
pub fn parse_header(line: &[u8]) -> Option<Header> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    if line == NO_DIR_TAG {
        return Some(Header::NoDirectory);
    }
    let rest = line.strip_prefix(PID_TAG)?;
    let (pgid, boot_id) = rest.split_once(' ')?;
    Some(Header::Started {
        pgid: pgid.parse().ok().filter(|&p| p > 1)?,
        boot_id: boot_id.to_owned(),
    })
}

/// What the kill script reports on its last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillResult {
    /// No process of the group is left.
    Gone,
    /// Some process survived TERM, KILL and the wait after.
    Alive,
    /// The host rebooted since the command started: its group is gone.
    Rebooted,
}

/// A script that sends TERM to the group, KILL after `grace`, and then
/// says whether any process of the group is left (see
/// [`kill_group_fn`]). It checks the boot id first, so that a group id
/// from before a reboot is never signalled.
pub fn kill_script(pgid: u32, boot_id: &str, grace: Duration) -> String {
    format!(
        "p={pgid}; \
         if [ \"{BOOT_ID}\" != {boot} ]; then echo rebooted; exit 0; fi; \
         {kill}if rje_kill_group $p; then echo gone; else echo alive; fi",
        boot = quote(boot_id),
        kill = kill_group_fn(&grace_steps(grace).to_string()),
    )
}

/// How often the kill of a remote group looks at it.
const KILL_STEP: Duration = Duration::from_millis(50);

/// Steps of [`KILL_STEP`] in `grace`, at least one.
fn grace_steps(grace: Duration) -> u128 {
    (grace.as_millis() / KILL_STEP.as_millis()).max(1)
}

/// The kill of a remote process group, as shell text written once for
/// [`kill_script`] and for the deadline a durable job's supervisor keeps
/// ([`crate::durable_remote`]). It defines two functions:
///
/// - `rje_alive PGID`: whether a process of the group is left. One counts
///   only if it is not a zombie: a killed child that has been handed to a
///   PID 1 which does not reap stays a zombie in the group, and `kill -0`
///   alone would call it alive. `ps` and `awk` tell zombies apart;
///   without a working `ps`, or `awk` (any status but 1, "none left"),
///   the kernel's answer is taken as it is.
/// - `rje_kill_group PGID`: TERM to the group, up to `grace_steps` steps
///   of 50 ms for it to go (over as soon as it has), then KILL, and up to
///   100 steps more for it to be gone. Its status is 0 once the group is
///   gone (or was before the TERM), 1 if a process of it is left. During
///   the grace only the kernel is asked (`kill -0`, a builtin), so that the
///   grace lasts what it says however many processes the host runs; a
///   group of zombies alone then waits out the grace before its KILL.
///
/// `grace_steps` is a shell word: a number, or a variable set before the
/// call (`$g`). The functions set `s` and `i`.
pub(crate) fn kill_group_fn(grace_steps: &str) -> String {
    // `kill -s SIG -- -PGID` is the form dash, bash and busybox all accept.
    format!(
        "rje_alive() {{ kill -s 0 -- -$1 2>/dev/null || return 1; \
           s=$(ps -e -o pgid= -o stat= 2>/dev/null) || return 0; [ -n \"$s\" ] || return 0; \
           echo \"$s\" | awk -v p=$1 '$1 == p && $2 !~ /^Z/ {{ f = 1 }} END {{ exit !f }}'; \
           [ $? -ne 1 ]; }}; \
         rje_kill_group() {{ kill -s TERM -- -$1 2>/dev/null || return 0; \
           i=0; while kill -s 0 -- -$1 2>/dev/null; do \
             if [ $i -ge {grace_steps} ]; then kill -s KILL -- -$1 2>/dev/null; break; fi; \
             sleep 0.05; i=$((i+1)); done; \
           i=0; while rje_alive $1 && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; \
           ! rje_alive $1; }}; "
    )
}

pub fn parse_kill_result(output: &str) -> Option<KillResult> {
    match output.lines().last()?.trim() {
        "gone" => Some(KillResult::Gone),
        "alive" => Some(KillResult::Alive),
        "rebooted" => Some(KillResult::Rebooted),
        _ => None,
    }
}

/// The number of a signal named in an SSH `exit-signal` message.
pub fn signal_number(name: &russh::Sig) -> Option<i32> {
    use russh::Sig;
    Some(match name {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::Custom(name) => {
            let signal: nix::sys::signal::Signal = format!("SIG{name}").parse().ok()?;
            signal as i32
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_any_text() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        let script = wrapper(
            "echo \"$HOME\" 'x'",
            &ExecParameters {
                env: vec![("GREETING".into(), "it's $fine".into())],
                cwd: Some("/tmp/a b".into()),
                ..ExecParameters::default()
            },
        );
        assert!(script.starts_with("cd '/tmp/a b' 2>/dev/null"), "{script}");
        assert!(
            script.contains(r"export GREETING='it'\''s $fine';"),
            "{script}"
        );
        assert!(
            script.ends_with(r#"exec sh -c 'echo "$HOME" '\''x'\''' </dev/null"#),
            "{script}"
        );
    }

    #[test]
    fn headers_are_parsed_strictly() {
        assert_eq!(
            parse_header(b"rje-pid 4242 0b6e-11"),
            Some(Header::Started {
                pgid: 4242,
                boot_id: "0b6e-11".into()
            })
        );
        assert_eq!(parse_header(b"rje-no-dir"), Some(Header::NoDirectory));
        assert_eq!(parse_header(b"rje-pid 1 x"), None, "never the init group");
        assert_eq!(parse_header(b"rje-pid x y"), None);
        assert_eq!(parse_header(b"hello"), None);
    }

    #[test]
    fn kill_results_and_signals() {
        assert_eq!(parse_kill_result("x\ngone\n"), Some(KillResult::Gone));
        assert_eq!(parse_kill_result("alive"), Some(KillResult::Alive));
        assert_eq!(parse_kill_result(""), None);
        assert_eq!(signal_number(&russh::Sig::TERM), Some(15));
        assert_eq!(signal_number(&russh::Sig::Custom("WINCH".into())), Some(28));
        assert!(kill_script(7, "b", Duration::from_secs(2)).contains("-ge 40"));
    }

    #[test]
    fn the_kill_script_is_the_one_kill_function() {
        let script = kill_script(7, "b", Duration::from_secs(2));
        assert!(script.contains(&kill_group_fn("40")), "{script}");
        assert!(script.ends_with("if rje_kill_group $p; then echo gone; else echo alive; fi"));
        // No second copy of the steps.
        assert_eq!(script.matches("kill -s TERM").count(), 1, "{script}");
        assert_eq!(grace_steps(Duration::from_millis(2560)), 51);
        assert_eq!(grace_steps(Duration::ZERO), 1, "at least one step");
    }
}
