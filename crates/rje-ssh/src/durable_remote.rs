//! The shell text of durable SSH jobs. Each job has a directory on the
//! host (`<state dir>/<job id>`) where a supervisor, in the background of
//! the launch (no terminal: the end of the SSH session signals nothing),
//! runs the command with its output in files, keeps the deadline, and
//! writes the exit status by rename. Any
//! worker that reaches the host follows the files by byte offset over an
//! exec channel, so that a worker can die, and another take the job up,
//! while the command runs on.
//!
//! Layout of a job directory:
//! - `attempt`: the job's attempt the directory was made for, written
//!   before the job's start is recorded (see [`launch_script`]).
//! - `launch`: who settled the launch, first (created only where nothing
//!   is: `set -C`, whose `>` opens with `O_EXCL`): `launched` (the command
//!   may have started) or `abandoned` (it never started there, and never
//!   will; see [`abandon_script`]).
//! - `lock`: held (flock, exclusive) by the supervisor for as long as it
//!   lives; a follower waits on it instead of polling for the end.
//! - `pid`: "PGID BOOT_ID", once the command runs (one short write; it is
//!   read only by a take-up, leases after).
//! - `out`, `err`: the command's stdout and stderr.
//! - `timedout`: made when the deadline fired.
//! - `exit`: "CODE" or "CODE timedout", written by rename at the end.
//!
//! The host needs a POSIX `sh`, `setsid` and `flock` (util-linux or
//! BusyBox) and `tail`; at a deadline, `ps` and `awk`, where they work,
//! tell a zombie from a live process (see [`kill_group_fn`]).

use std::time::Duration;

use crate::remote::{kill_group_fn, quote};

const BOOT_ID_READ: &str = "read -r b 2>/dev/null </proc/sys/kernel/random/boot_id";

/// Runs as `sh -c SUPERVISOR rje-supervise DIR TIMEOUT GRACE KEEP COMMAND
/// KILL` in the background, KILL being the text of the remote kill
/// ([`kill_group_fn`], its grace counted in `$g`). Its first line of
/// stdout names the group; then it lets go of stdout, so that the
/// launcher's `$(…)` returns.
///
/// The command and the deadline's timer each run in a session of their
/// own (`setsid` without a fork: a background child is no group leader),
/// so a kill of one group never reaches the supervisor. Neither keeps the
/// lock's descriptor (`3>&-`): the lock is free exactly when the
/// supervisor is gone. At the deadline the timer kills the command's group
/// as a worker's kill does (`rje_kill_group`), GRACE (seconds, three
/// decimals) counted in its steps of 50 ms; the supervisor ends the timer
/// once the command is gone.
const SUPERVISOR: &str = r#"d=$1
exec 3>"$d/lock" && flock -x 3 || exit 1
b=none; read -r b 2>/dev/null </proc/sys/kernel/random/boot_id
setsid sh -c "$5" </dev/null >"$d/out" 2>"$d/err" 3>&- & p=$!
i=0; until kill -s 0 -- -$p 2>/dev/null || [ $i -ge 10000 ]; do i=$((i+1)); done
echo "$p $b" >"$d/pid"
echo "rje-pid $p $b"
exec >/dev/null 2>&1
setsid sh -c "$6"'sleep "$1"; : >"$2/timedout"; g=$((${4%.*} * 20 + (1${4#*.} - 1000) / 50)); [ $g -ge 1 ] || g=1; rje_kill_group "$3"' rje-deadline "$2" "$d" $p "$3" 3>&- & w=$!
wait $p; c=$?
kill -s KILL $w; kill -s KILL -- -$w
if [ -e "$d/timedout" ] || [ "$4" != 1 ]; then kill -s KILL -- -$p; fi
[ -e "$d/timedout" ] && c="$c timedout"
echo "$c" >"$d/exit.tmp" && mv -f "$d/exit.tmp" "$d/exit""#;

/// What a job needs on the host.
pub struct Launch<'a> {
    /// The state directory, relative to the login directory or absolute.
    pub state_dir: &'a str,
    pub key: &'a str,
    pub command: &'a str,
    pub cwd: Option<&'a str>,
    pub env: &'a [(String, String)],
    pub timeout: Duration,
    pub grace: Duration,
    /// Processes the command leaves behind may outlive it.
    pub keep_leftovers: bool,
    /// The job's attempt (see [`rje_exec::StartGate::attempt`]), written
    /// in the directory so that a worker that proves the launch never
    /// happened queues the job again at exactly that one. `None` outside
    /// a job: then nothing is ever proven, and the directory never made
    /// again.
    pub attempt: Option<u32>,
}

/// Creates the file `$1` holding `$2` in the current directory, only where
/// nothing is: `set -C` makes `>` open with `O_EXCL` (dash, bash, zsh and
/// BusyBox alike), so of two claims one fails. Relative to the current
/// directory on purpose: a directory removed meanwhile takes nothing.
const CREATE_NEW: &str =
    "rje_new() { set -C; { echo \"$2\" >\"$1\"; } 2>/dev/null; r=$?; set +C; return $r; }; ";

/// The directory of the job `key`, as a shell word.
fn job_dir(state_dir: &str, key: &str) -> String {
    quote(&format!("{}/{key}", state_dir.trim_end_matches('/')))
}

/// A state directory from the settings: `~/` means the login directory,
/// where every exec starts.
pub fn state_dir_word(configured: &str) -> String {
    configured
        .strip_prefix("~/")
        .unwrap_or(configured)
        .to_owned()
}

/// Makes the job's directory and says `rje-prepared`, then waits for
/// `go` on stdin, which the worker sends once it has recorded the start
/// (the start mark comes after the directory, so a worker lost in between
/// leaves proof that the command never started); then claims the launch,
/// starts the supervisor, says `rje-pid PGID BOOT_ID`, and follows the
/// output from the start (see [`follow_script`]). One exec for all of it.
///
/// Before `go`: `rje-no-tools`, `rje-no-state`, `rje-no-dir` (the working
/// directory is missing), `rje-exists` (a directory whose launch was
/// claimed, or that an older rje made: the command may have run, and it
/// is never started twice) and `rje-replaced` (the new directory was taken
/// from under the script) end it with nothing made or run. A directory
/// whose launch was never claimed, or was abandoned, is claimed as
/// abandoned (so nothing can launch there any more) and made anew.
///
/// Without `go` (stdin ends: the worker is gone, or did not get its start
/// recorded) the script claims the launch as abandoned and ends. After it,
/// a failed claim says `rje-abandoned` (a worker proved this one gone
/// first) or `rje-replaced` (the directory was removed since): nothing ran.
/// The script holds the new directory as its working directory from its
/// making to the claim, so that a launcher that stalled there never claims
/// a directory made after it for a later attempt: a claim in a removed
/// directory fails (`ENOENT`), as through the local launcher's descriptor.
pub fn launch_script(launch: &Launch, removals: &str) -> String {
    let base = quote(launch.state_dir.trim_end_matches('/'));
    let key = quote(launch.key);
    let mut script = format!(
        "{removals}command -v setsid >/dev/null 2>&1 && command -v flock >/dev/null 2>&1 \
         || {{ echo rje-no-tools; exit 0; }}; {CREATE_NEW}"
    );
    if let Some(cwd) = launch.cwd {
        // Checked before anything is made; entered again for the launch.
        script.push_str(&format!(
            "cd {} 2>/dev/null || {{ echo rje-no-dir; exit 0; }}; c=\"$PWD\"; cd; ",
            quote(cwd)
        ));
    }
    script.push_str(&format!(
        "cd {base} 2>/dev/null || {{ mkdir -p {base} && cd {base}; }} 2>/dev/null \
         || {{ echo rje-no-state; exit 0; }}; \
         mkdir {key} 2>/dev/null || {{ [ -e {key}/attempt ] && cd {key} \
           && {{ rje_new launch abandoned || {{ read -r m <launch && [ \"$m\" = abandoned ]; }}; }} \
           && cd .. && rm -rf {key} && mkdir {key}; }} 2>/dev/null \
         || {{ echo rje-exists; exit 0; }}; \
         cd {key} 2>/dev/null || {{ echo rje-replaced; exit 0; }}; d=\"$PWD\"; "
    ));
    if let Some(attempt) = launch.attempt {
        script.push_str(&format!(
            "rje_new attempt {attempt} || {{ echo rje-replaced; exit 0; }}; "
        ));
    }
    script.push_str(
        "echo rje-prepared; read -r go || go=; \
         [ \"$go\" = go ] || { rje_new launch abandoned; exit 0; }; \
         rje_new launch launched || { m=; read -r m 2>/dev/null <launch; \
           if [ \"$m\" = abandoned ]; then echo rje-abandoned; else echo rje-replaced; fi; exit 0; }; ",
    );
    // The command starts in its working directory, or the login one.
    if launch.cwd.is_some() {
        script.push_str("cd \"$c\" 2>/dev/null || { echo rje-no-dir; exit 0; }; ");
    } else {
        script.push_str("cd; ");
    }
    // The job's variables go to the supervisor (and so the command) only,
    // through `env`: exported here, a job's `d` or `PATH` would change
    // what the rest of this script does. Names were checked at submit
    // ([A-Za-z_][A-Za-z0-9_]*).
    let env: String = launch
        .env
        .iter()
        .map(|(name, value)| format!("{name}={} ", quote(value)))
        .collect();
    let env = if env.is_empty() {
        env
    } else {
        format!("env {env}")
    };
    let keep = if launch.keep_leftovers { 1 } else { 0 };
    script.push_str(&format!(
        "h=$({env}sh -c {supervisor} rje-supervise \"$d\" {timeout} {grace} {keep} {command} \
         {kill} </dev/null 2>>\"$d/supervisor.log\" &); \
         [ -n \"$h\" ] || {{ echo rje-no-supervisor; exit 0; }}; echo \"$h\"; \
         cd \"$d\" || exit 0; {follow}",
        supervisor = quote(SUPERVISOR),
        timeout = launch.timeout.as_secs(),
        grace = format_args!("{:.3}", launch.grace.as_secs_f64()),
        command = quote(launch.command),
        kill = quote(&kill_group_fn("$g")),
        follow = follow_body([0, 0]),
    ));
    script
}

/// What [`abandon_script`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchProof {
    /// The launch is claimed as abandoned (now, or before): the command of
    /// `attempt` never started, and never will.
    Abandoned { attempt: u32 },
    /// The launch was claimed: the command may have started.
    Launched,
    /// No directory, or one that names no attempt (an older rje's, or not
    /// a job's): nothing proves the command never started.
    Unproven,
    /// Someone is claiming the launch right now (the file is there, its
    /// word not yet): look again later.
    Unsettled,
}

/// For a job whose worker is gone: claims the launch of its directory as
/// abandoned unless it was claimed before, and says `rje-abandoned
/// ATTEMPT`, `rje-launched`, `rje-unproven` or `rje-unsettled` (see
/// [`LaunchProof`]). Everything is done from inside the directory, so that
/// one removed or replaced meanwhile proves nothing: what the script reads
/// and claims is of one directory.
pub fn abandon_script(state_dir: &str, key: &str) -> String {
    format!(
        "cd {dir} 2>/dev/null && read -r a 2>/dev/null <attempt || {{ echo rje-unproven; exit 0; }}; \
         case $a in ''|*[!0-9]*) echo rje-unproven; exit 0;; esac; \
         set -C; {{ echo abandoned >launch; }} 2>/dev/null && {{ echo \"rje-abandoned $a\"; exit 0; }}; \
         m=; read -r m 2>/dev/null <launch; \
         case $m in abandoned) echo \"rje-abandoned $a\";; launched) echo rje-launched;; \
         *) echo rje-unsettled;; esac; exit 0",
        dir = job_dir(state_dir, key),
    )
}

/// The answer of [`abandon_script`]: its last line that is one (the login
/// shell may print before it).
pub fn parse_launch_proof(output: &str) -> Option<LaunchProof> {
    output.lines().rev().find_map(|line| {
        let line = line.trim_end_matches('\r');
        Some(match line {
            "rje-launched" => LaunchProof::Launched,
            "rje-unproven" => LaunchProof::Unproven,
            "rje-unsettled" => LaunchProof::Unsettled,
            _ => LaunchProof::Abandoned {
                attempt: line.strip_prefix("rje-abandoned ")?.parse().ok()?,
            },
        })
    })
}

/// Follows a started job from `offsets` (bytes of stdout and stderr
/// already delivered) until its supervisor is gone: says `rje-pid PGID
/// BOOT_ID` first, or `rje-gone` (no such job) or `rje-rebooted` (the host
/// booted since it started, and it never ended). What the tails had not
/// sent when the end came is read by [`finish_script`].
pub fn follow_script(state_dir: &str, key: &str, offsets: [u64; 2]) -> String {
    format!(
        "cd {dir} 2>/dev/null && read -r p pb <pid 2>/dev/null || {{ echo rje-gone; exit 0; }}; \
         b=none; {BOOT_ID_READ}; \
         [ -e exit ] || [ \"$pb\" = \"$b\" ] || {{ echo rje-rebooted; exit 0; }}; \
         echo \"rje-pid $p $pb\"; [ -e exit ] && exit 0; {follow}",
        dir = job_dir(state_dir, key),
        follow = follow_body(offsets),
    )
}

/// Two tails from the offsets, until the supervisor lets go of the lock;
/// no polling: tail waits on inotify, flock on the lock.
fn follow_body(offsets: [u64; 2]) -> String {
    format!(
        "tail -c +{out} -f out & t1=$!; tail -c +{err} -f err >&2 & t2=$!; \
         flock -s 4 4<lock; kill $t1 $t2 2>/dev/null; wait; exit 0",
        out = offsets[0] + 1,
        err = offsets[1] + 1,
    )
}

/// Says `rje-exit CODE [timedout]`, or `rje-no-exit` (the supervisor died
/// before the command ended) or `rje-gone`, then the output from
/// `offsets` to its end (no `tail` for an empty file: most jobs write
/// nothing on stderr, and each program started costs a job milliseconds).
pub fn finish_script(state_dir: &str, key: &str, offsets: [u64; 2], removals: &str) -> String {
    format!(
        "{removals}cd {dir} 2>/dev/null || {{ echo rje-gone; exit 0; }}; \
         if read -r e <exit 2>/dev/null; then echo \"rje-exit $e\"; else echo rje-no-exit; fi; \
         [ ! -s out ] || tail -c +{out} out 2>/dev/null; \
         [ ! -s err ] || tail -c +{err} err >&2 2>/dev/null; exit 0",
        dir = job_dir(state_dir, key),
        out = offsets[0] + 1,
        err = offsets[1] + 1,
    )
}

/// Removes the directories of `keys` (jobs whose results are stored); with
/// `sweep`, also of any job whose end was written more than an hour ago (a
/// worker that died before removing it: by then the job was settled, one
/// way or the other). Empty without keys.
pub fn removals(state_dir: &str, keys: &[String], sweep: bool) -> String {
    if keys.is_empty() {
        return String::new();
    }
    let dirs: Vec<String> = keys.iter().map(|key| job_dir(state_dir, key)).collect();
    let mut script = format!("rm -rf {} 2>/dev/null; ", dirs.join(" "));
    if sweep {
        script.push_str(&format!(
            "find {base} -mindepth 2 -maxdepth 2 -name exit -mmin +60 \
             -exec sh -c 'for f; do rm -rf \"${{f%/exit}}\"; done' rje-sweep {{}} + 2>/dev/null; ",
            base = quote(state_dir.trim_end_matches('/')),
        ));
    }
    script
}

/// The first line of a durable job's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurableHeader {
    Started {
        pgid: u32,
        boot_id: String,
    },
    /// The job's directory is made; the script waits for the go.
    Prepared,
    /// The launch was given up by a worker that proved this one gone.
    Abandoned,
    /// The directory made for this launch was removed before the claim.
    Replaced,
    Exit {
        code: i32,
        timed_out: bool,
    },
    NoExit,
    Gone,
    Rebooted,
    Exists,
    NoDirectory,
    NoTools,
    NoState,
    NoSupervisor,
}

pub fn parse_durable_header(line: &[u8]) -> Option<DurableHeader> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    Some(match line {
        "rje-no-exit" => DurableHeader::NoExit,
        "rje-gone" => DurableHeader::Gone,
        "rje-rebooted" => DurableHeader::Rebooted,
        "rje-exists" => DurableHeader::Exists,
        "rje-no-dir" => DurableHeader::NoDirectory,
        "rje-no-tools" => DurableHeader::NoTools,
        "rje-no-state" => DurableHeader::NoState,
        "rje-no-supervisor" => DurableHeader::NoSupervisor,
        "rje-prepared" => DurableHeader::Prepared,
        "rje-abandoned" => DurableHeader::Abandoned,
        "rje-replaced" => DurableHeader::Replaced,
        _ => {
            if let Some(rest) = line.strip_prefix("rje-exit ") {
                let mut words = rest.split(' ');
                let code = words.next()?.parse().ok()?;
                let timed_out = match words.next() {
                    None => false,
                    Some("timedout") => true,
                    Some(_) => return None,
                };
                return Some(DurableHeader::Exit { code, timed_out });
            }
            let rest = line.strip_prefix("rje-pid ")?;
            let (pgid, boot_id) = rest.split_once(' ')?;
            DurableHeader::Started {
                pgid: pgid.parse().ok().filter(|&p| p > 1)?,
                boot_id: boot_id.to_owned(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_parsed_strictly() {
        assert_eq!(
            parse_durable_header(b"rje-pid 42 b-1"),
            Some(DurableHeader::Started {
                pgid: 42,
                boot_id: "b-1".into()
            })
        );
        assert_eq!(
            parse_durable_header(b"rje-exit 3 timedout"),
            Some(DurableHeader::Exit {
                code: 3,
                timed_out: true
            })
        );
        assert_eq!(
            parse_durable_header(b"rje-exit 0\r"),
            Some(DurableHeader::Exit {
                code: 0,
                timed_out: false
            })
        );
        assert_eq!(parse_durable_header(b"rje-exit 0 what"), None);
        assert_eq!(
            parse_durable_header(b"rje-pid 1 b"),
            None,
            "never init's group"
        );
        assert_eq!(parse_durable_header(b"rje-gone"), Some(DurableHeader::Gone));
        assert_eq!(
            parse_durable_header(b"rje-prepared"),
            Some(DurableHeader::Prepared)
        );
        assert_eq!(parse_durable_header(b"Welcome to the host"), None);
    }

    #[test]
    fn scripts_quote_what_they_are_given() {
        let launch = Launch {
            state_dir: ".rje/jobs/",
            key: "k1",
            command: "echo 'hi'",
            cwd: Some("/tmp/a b"),
            env: &[("NAME".into(), "it's".into())],
            timeout: Duration::from_secs(30),
            grace: Duration::from_millis(2500),
            keep_leftovers: false,
            attempt: Some(3),
        };
        let script = launch_script(&launch, "");
        assert!(script.contains("mkdir -p '.rje/jobs'"), "{script}");
        assert!(script.contains("mkdir 'k1'"), "{script}");
        assert!(script.contains("rje_new attempt 3 "), "{script}");
        assert!(script.contains("cd '/tmp/a b'"), "{script}");
        assert!(
            script.contains(r"h=$(env NAME='it'\''s' sh -c "),
            "{script}"
        );
        assert!(
            script.contains(r" 30 2.500 0 'echo '\''hi'\'''"),
            "{script}"
        );
        assert!(follow_script(".rje/jobs", "k1", [5, 0]).contains("tail -c +6 -f out"));
        assert!(finish_script(".rje/jobs", "k1", [0, 7], "").contains("tail -c +8 err"));
        assert_eq!(removals(".rje/jobs", &[], true), "");
        let riding = removals(".rje/jobs", &["a".into(), "b".into()], false);
        assert_eq!(riding, "rm -rf '.rje/jobs/a' '.rje/jobs/b' 2>/dev/null; ");
        assert!(removals(".rje/jobs", &["a".into()], true).contains("-mmin +60"));
        assert_eq!(state_dir_word("~/.rje/jobs"), ".rje/jobs");
        assert!(abandon_script(".rje/jobs", "k1").starts_with("cd '.rje/jobs/k1' "));
    }

    #[test]
    fn the_deadline_kills_with_the_one_kill_function() {
        let launch = Launch {
            state_dir: ".rje/jobs",
            key: "k1",
            command: "sleep 300",
            cwd: None,
            env: &[],
            timeout: Duration::from_secs(30),
            grace: Duration::from_millis(2500),
            keep_leftovers: true,
            attempt: None,
        };
        let script = launch_script(&launch, "");
        // Handed to the supervisor after the command, for its deadline.
        let kill = quote(&kill_group_fn("$g"));
        assert!(
            script.contains(&format!(r" 30 2.500 1 'sleep 300' {kill} ")),
            "{script}"
        );
        assert!(SUPERVISOR.contains(r#"setsid sh -c "$6"'sleep "$1"; "#));
        assert!(SUPERVISOR.contains(r#"rje_kill_group "$3"' rje-deadline "#));
        // No second copy of the steps.
        assert!(!SUPERVISOR.contains("kill -s TERM"), "{SUPERVISOR}");
        let remote = crate::remote::kill_script(7, "b", Duration::from_secs(2));
        assert!(remote.contains(&kill_group_fn("40")), "{remote}");
    }

    #[test]
    fn launch_proofs_are_parsed_from_the_last_line() {
        assert_eq!(
            parse_launch_proof("Welcome\nrje-abandoned 4\n"),
            Some(LaunchProof::Abandoned { attempt: 4 })
        );
        assert_eq!(
            parse_launch_proof("rje-launched\r\n"),
            Some(LaunchProof::Launched)
        );
        assert_eq!(
            parse_launch_proof("rje-unproven"),
            Some(LaunchProof::Unproven)
        );
        assert_eq!(parse_launch_proof("rje-abandoned x"), None);
        assert_eq!(parse_launch_proof("rje-abandoned -1"), None);
        assert_eq!(parse_launch_proof(""), None);
    }
}
