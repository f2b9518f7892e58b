//! A real OpenSSH sshd on a loopback port, with keys generated for it.
//! openssh-server is installed with apt-get when it is missing (as root;
//! see [`crate::packages`]); otherwise the test fails saying how to get it.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// Makes sure sshd and ssh-keygen exist, installing openssh-server once.
fn ensure_installed() {
    crate::packages::ensure(
        &[SSHD, "/usr/bin/ssh-keygen"],
        &["openssh-server"],
        "the SSH tests",
    );
}

/// Runs `ssh-keygen` with `args`; panics with its output if it fails.
pub fn keygen(args: &[&str]) {
    let output = Command::new("ssh-keygen")
        .args(args)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        output.status.success(),
        "ssh-keygen {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Generates a key pair at `path` (and `path.pub`).
pub fn new_key(path: &Path, kind: &str, extra: &[&str]) {
    let _ = std::fs::remove_file(path);
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    let _ = std::fs::remove_file(public);
    let mut args = vec!["-q", "-t", kind, "-C", "rje-test", "-f"];
    let path_text = path.to_str().expect("test paths are UTF-8");
    args.push(path_text);
    if !extra.contains(&"-N") {
        args.extend(["-N", ""]);
    }
    args.extend(extra);
    keygen(&args);
}

/// The public key line of a key pair made by [`new_key`].
pub fn public_key(path: &Path) -> String {
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    std::fs::read_to_string(PathBuf::from(public))
        .expect("the public key exists")
        .trim()
        .to_owned()
}

/// The user the tests log in as: whoever runs them.
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".into())
}

pub struct TestSshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    /// A key the server accepts (ed25519, OpenSSH form, no passphrase).
    pub client_key: PathBuf,
    /// known_hosts holding the server's key under `[127.0.0.1]:port`.
    pub known_hosts: PathBuf,
    child: Option<Child>,
    config: PathBuf,
}

impl TestSshd {
    pub fn start() -> Self {
        Self::start_with(10)
    }

    /// An sshd that allows `max_sessions` channels per connection.
    pub fn start_with(max_sessions: usize) -> Self {
        Self::start_configured(max_sessions, &[])
    }

    /// An sshd with `extra` lines in its configuration (`SetEnv PATH=…`,
    /// say, for a host that lacks some programs).
    pub fn start_configured(max_sessions: usize, extra: &[String]) -> Self {
        ensure_installed();
        // sshd refuses to start without its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let host_key = dir.path().join("host_ed25519");
        new_key(&host_key, "ed25519", &[]);
        let client_key = dir.path().join("client_ed25519");
        new_key(&client_key, "ed25519", &[]);
        std::fs::write(
            dir.path().join("authorized_keys"),
            format!("{}\n", public_key(&client_key)),
        )
        .expect("authorized_keys is written");
        let port = crate::free_port();
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {}\n", public_key(&host_key)),
        )
        .expect("known_hosts is written");
        let config = dir.path().join("sshd_config");
        let mut text = String::new();
        for line in [
            format!("Port {port}"),
            "ListenAddress 127.0.0.1".into(),
            format!("HostKey {}", host_key.display()),
            format!("PidFile {}", dir.path().join("sshd.pid").display()),
            format!(
                "AuthorizedKeysFile {}",
                dir.path().join("authorized_keys").display()
            ),
            "PubkeyAuthentication yes".into(),
            "PasswordAuthentication no".into(),
            "KbdInteractiveAuthentication no".into(),
            "PermitRootLogin prohibit-password".into(),
            "StrictModes no".into(),
            "UsePAM no".into(),
            format!("MaxSessions {max_sessions}"),
            "MaxStartups 200".into(),
            "LogLevel ERROR".into(),
        ]
        .iter()
        .chain(extra)
        {
            let _ = writeln!(text, "{line}");
        }
        std::fs::write(&config, text).expect("sshd_config is written");
        let mut sshd = Self {
            dir,
            port,
            user: current_user(),
            client_key,
            known_hosts,
            child: None,
            config,
        };
        sshd.resume();
        sshd
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Lets a further key log in.
    pub fn authorize(&self, key: &Path) {
        let path = self.path("authorized_keys");
        let mut keys = std::fs::read_to_string(&path).expect("authorized_keys exists");
        keys.push_str(&public_key(key));
        keys.push('\n');
        std::fs::write(path, keys).expect("authorized_keys is written");
    }

    /// Starts (again) the server on the same port with the same keys.
    pub fn resume(&mut self) {
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sshd starts");
        self.child = Some(child);
        // sshd writes its pid file once it listens; probing the port with a
        // connection would make it log an aborted key exchange.
        let pid_file = self.path("sshd.pid");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !pid_file.exists() {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("sshd exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "sshd did not listen in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server and every connection it serves: the listener and
    /// each per-connection sshd process. Commands started over it are left
    /// to the test (they are not sshd).
    pub fn halt(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let master = child.id() as i32;
        let sessions = sshd_descendants(master);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(master),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        for pid in sessions {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = std::fs::remove_file(self.path("sshd.pid"));
        // The port is free once nothing listens on it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpListener::bind(self.addr()).is_err() {
            assert!(Instant::now() < deadline, "sshd still listens after halt");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Every process under `root` (transitively) whose name is sshd.
fn sshd_descendants(root: i32) -> Vec<i32> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The name is in parentheses and may hold spaces: split after it.
            let Some(close) = stat.rfind(')') else {
                continue;
            };
            let name = stat[..close].split_once('(').map(|(_, n)| n).unwrap_or("");
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            if let Some(ppid) = fields.get(1).and_then(|p| p.parse::<i32>().ok()) {
                parents.push((pid, ppid, name.to_owned()));
            }
        }
    }
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        for (pid, ppid, _) in &parents {
            if *ppid == parent && !found.contains(pid) {
                found.push(*pid);
            }
        }
        index += 1;
    }
    parents
        .into_iter()
        .filter(|(pid, _, name)| *pid != root && found.contains(pid) && name.starts_with("sshd"))
        .map(|(pid, _, _)| pid)
        .collect()
}
