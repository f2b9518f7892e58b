//! Debian packages the tests need, installed once per test process when
//! missing (as root, with apt-get, from Debian's own archive), so that the
//! README's one test command passes on a fresh machine. Without root or
//! apt-get, the test fails saying what to install.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The packages already tried in this process: one attempt each.
static TRIED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

/// Makes sure every file in `files` exists, installing `packages` once if
/// one is missing. Panics, naming the packages, if they still are.
pub fn ensure(files: &[&str], packages: &[&'static str], needed_for: &str) {
    let missing = || files.iter().any(|file| !Path::new(file).exists());
    let mut tried = TRIED.lock().unwrap_or_else(|p| p.into_inner());
    if !missing() {
        return;
    }
    let fresh: Vec<&'static str> = packages
        .iter()
        .copied()
        .filter(|package| tried.insert(package))
        .collect();
    if !fresh.is_empty() && nix::unistd::geteuid().is_root() && on_path("apt-get") {
        eprintln!("{needed_for}: installing {} with apt-get", fresh.join(" "));
        if !apt_install(&fresh) {
            // The package lists of a fresh machine may be missing or old.
            let _ = apt(&["update"]);
            apt_install(&fresh);
        }
    }
    assert!(
        !missing(),
        "{needed_for} need{} {}: install {} with `apt-get install -y {}` (as root), then run \
         the tests again",
        if needed_for.ends_with('s') { "" } else { "s" },
        files.join(" and "),
        if packages.len() == 1 { "it" } else { "them" },
        packages.join(" "),
    );
}

fn apt_install(packages: &[&str]) -> bool {
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(packages);
    apt(&args)
}

fn apt(args: &[&str]) -> bool {
    Command::new("apt-get")
        // Another test process may be installing something at the same
        // time: wait for dpkg's lock rather than fail at once.
        .args(["-o", "DPkg::Lock::Timeout=600"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether `program` is on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}
