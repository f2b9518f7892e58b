//! Process groups on this machine: whether one still has a live member.

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Whether any process of a group is still alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// At least one member is alive (not a zombie).
    Alive,
    /// No live member is left.
    Gone,
}

/// Asks the kernel, then /proc, whether group `pgid` has a live member.
/// Zombies don't count: they have ended, and whether one is reaped depends
/// on its parent, which may not be rje.
pub fn group_state(pgid: i32) -> GroupState {
    match killpg(Pid::from_raw(pgid), None) {
        Err(Errno::ESRCH) => GroupState::Gone,
        _ if live_members_in_proc(pgid) == Some(0) => GroupState::Gone,
        _ => GroupState::Alive,
    }
}

/// Sends `signal` to group `pgid`; a group already gone is no error.
pub(crate) fn signal_group(pgid: i32, signal: Signal) -> nix::Result<()> {
    match killpg(Pid::from_raw(pgid), signal) {
        Err(Errno::ESRCH) => Ok(()),
        other => other,
    }
}

/// Whether process `pid` exists and is not a zombie: a zombie has ended,
/// whenever its parent gets round to reaping it.
pub(crate) fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_stat(&stat))
        .is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// When process `pid` started, in clock ticks since the machine booted
/// (`starttime`, field 22 of /proc/PID/stat); `None` once it is gone (a
/// zombie still has it). With the boot id, it tells a process from a later
/// one that was given the same pid.
pub(crate) fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

/// The parent of process `pid`; `None` once it is gone.
pub(crate) fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_parent(&stat)
}

/// Field 4 of /proc/PID/stat, counted as [`parse_stat`] does.
fn parse_parent(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(4 - 3)?.parse().ok()
}

/// Counts live members of a group by reading /proc; `None` if /proc cannot
/// be read (then the kernel's answer stands).
fn live_members_in_proc(pgid: i32) -> Option<usize> {
    live_members(pgid).map(|members| members.len())
}

/// The /proc/PID/stat lines of the live (not zombie) members of group
/// `pgid`; `None` if /proc cannot be read.
fn live_members(pgid: i32) -> Option<Vec<String>> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // The process may have exited since read_dir: skip it.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((state, pgrp)) = parse_stat(&stat)
            && pgrp == pgid
            && state != 'Z'
            && state != 'X'
        {
            members.push(stat);
        }
    }
    Some(members)
}

/// State and process group from /proc/PID/stat. The command name may hold
/// spaces and parentheses, so fields are counted after the last ')'.
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Whether the live members of group `pgid` (some, at least) are all of
/// session `session` and started at `since` or later, as read from /proc:
/// the proof that a group whose leader is gone is still the one a
/// supervisor (the session's leader) started then. A group that got the
/// number later would need its session leader to have the supervisor's
/// pid too. `false` when /proc cannot tell.
pub(crate) fn members_all_of(pgid: i32, session: i32, since: u64) -> bool {
    live_members(pgid).is_some_and(|members| {
        !members.is_empty()
            && members.iter().all(|stat| {
                parse_session(stat) == Some(session)
                    && parse_start_ticks(stat).is_some_and(|ticks| ticks >= since)
            })
    })
}

/// Field 6 of /proc/PID/stat, the session id.
fn parse_session(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(6 - 3)?.parse().ok()
}

/// Field 22 of /proc/PID/stat, counted after the command name as
/// [`parse_stat`] does (field 3, the state, comes first there).
fn parse_start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_odd_command_names() {
        let stat = "4242 (my (odd) cmd) S 1 4240 4240 0 -1 4194560 100";
        assert_eq!(parse_stat(stat), Some(('S', 4240)));
        assert_eq!(parse_session(stat), Some(4240));
        assert_eq!(parse_parent(stat), Some(1));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn the_start_time_is_field_22() {
        let stat = "4242 (my (odd) cmd) S 1 4240 4240 0 -1 4194560 100 0 0 0 \
                    1 2 0 0 20 0 1 0 987654 12345 67";
        assert_eq!(parse_start_ticks(stat), Some(987654));
        assert_eq!(parse_start_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn this_process_has_a_start_time_and_keeps_it() {
        let me = std::process::id() as i32;
        let first = start_ticks(me).expect("this process's start time");
        assert_eq!(start_ticks(me), Some(first));
        assert_eq!(start_ticks(i32::MAX - 7), None);
    }

    #[test]
    fn a_group_that_never_existed_is_gone() {
        // Group ids are process ids; this one is far above pid_max.
        assert_eq!(group_state(i32::MAX - 7), GroupState::Gone);
    }
}
