//! The local sandbox: a bubblewrap command line rendered from a [`SandboxSpec`]. All namespaces are new
//! (user, pid, network, ipc, uts, cgroup); the network namespace has only loopback, so the one way out is
//! the gateway's Unix socket bound in; the root is built from read-only pieces of the host's system
//! directories; the workspace is the one writable host directory; the environment is cleared.
//!
//! Why bubblewrap rather than namespaces set up in-process: it is a small, audited setuid-free tool that
//! Flatpak relies on, it is one `apt install` away, and it composes the mount namespace correctly (pivot,
//! `/proc` of the new pid namespace, no `/dev` nodes) — code we would otherwise write and get wrong. Landlock
//! and seccomp, applied by the runner itself inside, are the second layer.

use std::path::{Path, PathBuf};

use crate::spec::{SandboxSpec, WORKSPACE_DIR};

/// Where the gateway's socket appears inside.
pub const GATEWAY_SOCKET: &str = "/run/paddock/gateway.sock";
/// Where the session token file appears inside.
pub const TOKEN_FILE: &str = "/run/paddock/token";
/// Where the `paddock` executable appears inside.
pub const PADDOCK_BIN: &str = "/opt/paddock/paddock";
/// Where the Agent manifest appears inside.
pub const AGENT_FILE: &str = "/run/paddock/agent.yaml";
/// The runner's home inside (a private tmpfs).
pub const HOME: &str = "/home/runner";

/// How an entry of the host's root looks, for building the sandbox's root from it.
#[derive(Clone, Debug, PartialEq)]
pub enum HostEntry {
    Dir,
    /// A symlink and its target (merged-/usr systems link `/bin` to `usr/bin`).
    Symlink(String),
}

/// The host-side facts the renderer needs (gathered by the caller, so rendering stays pure).
#[derive(Clone, Debug)]
pub struct LocalMounts {
    /// The session's workspace on the host.
    pub workspace: PathBuf,
    /// Paths inside the workspace bound over themselves, in order (git's metadata: see [`WorkspaceBind`]).
    pub workspace_binds: Vec<WorkspaceBind>,
    pub gateway_socket: PathBuf,
    pub token_file: PathBuf,
    pub agent_file: PathBuf,
    pub paddock_bin: PathBuf,
    /// `/etc/passwd` and `/etc/group` naming the sandbox user.
    pub passwd: PathBuf,
    pub group: PathBuf,
    /// Top-level system entries present on the host among [`SYSTEM_DIRS`].
    pub system: Vec<(String, HostEntry)>,
    /// More host paths to show read-only at the same place (e.g. where the harness CLIs are installed).
    pub extra_read_only: Vec<PathBuf>,
}

/// A path relative to the workspace bound over itself inside: read-only (git's config and hooks, so that what
/// git reads and runs there is not the agent's to change), or writable but pinned (`.git` itself: a mount
/// point cannot be renamed, removed or replaced by a symlink, so the read-only parts cannot be side-stepped
/// by moving the directory away).
#[derive(Clone, Debug, PartialEq)]
pub struct WorkspaceBind {
    pub path: String,
    pub read_only: bool,
}

/// System directories a runner may read.
pub const SYSTEM_DIRS: [&str; 8] = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/opt/node"];

/// Files of `/etc` a runner may read (no host identities, no secrets, no resolver).
pub const ETC_FILES: [&str; 8] = [
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
];

/// Resource limits the supervisor sets on the sandbox's process before it starts (inherited inside).
#[derive(Clone, Debug, PartialEq)]
pub struct Rlimits {
    /// Writable data (RLIMIT_DATA), from the memory quantity.
    pub data_bytes: u64,
    /// Processes of the sandbox's user (RLIMIT_NPROC).
    pub processes: u64,
    /// Largest file it may write (RLIMIT_FSIZE).
    pub file_bytes: u64,
    /// Open files (RLIMIT_NOFILE).
    pub open_files: u64,
}

/// A rendered local sandbox.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalSandbox {
    /// `bwrap` and its arguments, then the command inside.
    pub argv: Vec<String>,
    pub rlimits: Rlimits,
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Renders the bubblewrap command that runs `inner` in the sandbox.
pub fn render_bwrap(spec: &SandboxSpec, m: &LocalMounts, inner: &[String]) -> LocalSandbox {
    let mut a: Vec<String> = Vec::new();
    let mut arg = |xs: &[&str]| a.extend(xs.iter().map(|x| x.to_string()));
    arg(&["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session"]);
    arg(&["--cap-drop", "ALL"]);
    let uid = spec.run_as_uid.to_string();
    arg(&["--uid", &uid, "--gid", &uid, "--hostname", "paddock-sandbox"]);
    for (path, entry) in &m.system {
        match entry {
            HostEntry::Dir => arg(&["--ro-bind", path, path]),
            HostEntry::Symlink(target) => arg(&["--symlink", target, path]),
        }
    }
    for f in ETC_FILES {
        arg(&["--ro-bind-try", f, f]);
    }
    arg(&["--ro-bind", &s(&m.passwd), "/etc/passwd", "--ro-bind", &s(&m.group), "/etc/group"]);
    // Every tmpfs is sized (memory written there counts), and `/dev` itself is read-only: only the
    // sized `/dev/shm` and the device nodes can be written.
    let scratch = spec.scratch();
    arg(&["--proc", "/proc", "--dev", "/dev"]);
    for t in &scratch {
        let size = t.bytes.to_string();
        arg(&["--size", &size, "--tmpfs", &t.path]);
        if t.path == "/dev/shm" {
            arg(&["--remount-ro", "/dev"]);
        } else if t.path == "/home" {
            arg(&["--dir", HOME]);
        }
    }
    for p in &spec.read_only_paths {
        arg(&["--ro-bind-try", p, p]);
    }
    for p in &m.extra_read_only {
        let p = s(p);
        arg(&["--ro-bind", &p, &p]);
    }
    arg(&["--bind", &s(&m.workspace), WORKSPACE_DIR]);
    for b in &m.workspace_binds {
        let how = if b.read_only { "--ro-bind" } else { "--bind" };
        arg(&[how, &s(&m.workspace.join(&b.path)), &format!("{WORKSPACE_DIR}/{}", b.path)]);
    }
    arg(&["--ro-bind", &s(&m.gateway_socket), GATEWAY_SOCKET]);
    arg(&["--ro-bind", &s(&m.token_file), TOKEN_FILE]);
    arg(&["--ro-bind", &s(&m.agent_file), AGENT_FILE]);
    arg(&["--ro-bind", &s(&m.paddock_bin), PADDOCK_BIN]);
    arg(&["--chdir", WORKSPACE_DIR, "--clearenv"]);
    let path = "/usr/local/bin:/usr/bin:/bin:/opt/paddock";
    arg(&["--setenv", "PATH", path, "--setenv", "HOME", HOME, "--setenv", "LANG", "C.UTF-8"]);
    arg(&["--setenv", "USER", "runner", "--setenv", "TMPDIR", "/tmp"]);
    for (k, v) in &spec.env {
        arg(&["--setenv", k, v]);
    }
    arg(&["--"]);
    a.extend(inner.iter().cloned());
    LocalSandbox {
        argv: a,
        rlimits: Rlimits {
            data_bytes: spec.memory_bytes,
            processes: spec.pids.into(),
            file_bytes: 1 << 30,
            open_files: 4096,
        },
    }
}

impl LocalSandbox {
    /// The bubblewrap options (NUL-separated, for `bwrap --args FD`) and the rest of the command line
    /// (`--` and the command inside). Options given through a file descriptor are not on bwrap's command
    /// line, which is what the sandbox sees as `/proc/1/cmdline`: the host paths stay out of its view.
    pub fn options_and_command(&self) -> (Vec<u8>, Vec<String>) {
        let dashes = self.argv.iter().position(|a| a == "--").unwrap_or(self.argv.len());
        let mut options = Vec::new();
        for a in &self.argv[1..dashes] {
            options.extend_from_slice(a.as_bytes());
            options.push(0);
        }
        (options, self.argv[dashes..].to_vec())
    }
}

/// `/etc/passwd` and `/etc/group` lines for the sandbox user.
pub fn identity_files(spec: &SandboxSpec) -> (String, String) {
    let u = spec.run_as_uid;
    (
        format!("root:x:0:0:root:/root:/usr/sbin/nologin\nrunner:x:{u}:{u}:Paddock runner:{HOME}:/bin/sh\n"),
        format!("root:x:0:\nrunner:x:{u}:\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SandboxSpec {
        let agent: paddock_api::AgentSpec = serde_json::from_str(
            r#"{"harness": "custom", "model": "m", "sandbox": {"writablePaths": ["/var/cache/app"], "resources": {"memory": "1Gi"}},
                "env": [{"name": "CI", "value": "true"}]}"#,
        )
        .unwrap();
        SandboxSpec::for_agent(&agent, None).unwrap()
    }

    fn mounts() -> LocalMounts {
        LocalMounts {
            workspace: "/home/u/ws".into(),
            workspace_binds: vec![
                WorkspaceBind { path: ".git".into(), read_only: false },
                WorkspaceBind { path: ".git/config".into(), read_only: true },
                WorkspaceBind { path: ".git/hooks".into(), read_only: true },
            ],
            gateway_socket: "/d/gateway.sock".into(),
            token_file: "/d/s1/token".into(),
            agent_file: "/d/s1/agent.yaml".into(),
            paddock_bin: "/usr/local/bin/paddock".into(),
            passwd: "/d/s1/passwd".into(),
            group: "/d/s1/group".into(),
            system: vec![("/usr".into(), HostEntry::Dir), ("/bin".into(), HostEntry::Symlink("usr/bin".into()))],
            extra_read_only: vec![],
        }
    }

    #[test]
    fn renders_a_closed_sandbox() {
        let sb = render_bwrap(&spec(), &mounts(), &["/opt/paddock/paddock".into(), "runner".into()]);
        let cmd = sb.argv.join(" ");
        assert!(cmd.starts_with(
            "bwrap --unshare-all --unshare-user --disable-userns --die-with-parent --new-session --cap-drop ALL"
        ));
        assert!(!cmd.contains("--share-net"), "no network but loopback");
        assert!(cmd.contains("--ro-bind /usr /usr") && cmd.contains("--symlink usr/bin /bin"));
        assert!(cmd.contains("--bind /home/u/ws /workspace"), "the workspace is the one writable host path");
        assert!(
            cmd.contains("--bind /home/u/ws /workspace --bind /home/u/ws/.git /workspace/.git \
             --ro-bind /home/u/ws/.git/config /workspace/.git/config --ro-bind /home/u/ws/.git/hooks /workspace/.git/hooks"),
            "git's config and hooks are read-only inside, bound after the workspace: {cmd}"
        );
        assert_eq!(sb.argv.iter().filter(|a| *a == "--bind").count(), 2, "the workspace and its pinned .git");
        assert!(cmd.contains("--ro-bind /d/gateway.sock /run/paddock/gateway.sock"));
        for dir in ["/tmp", "/run", "/home", "/dev/shm", "/var/cache/app"] {
            let i = sb.argv.iter().position(|a| a == dir).unwrap();
            assert_eq!(sb.argv[i - 1], "--tmpfs", "{dir}");
            assert_eq!(sb.argv[i - 3], "--size", "{dir} is sized");
        }
        let sizes: u64 = sb.argv.windows(2).filter(|w| w[0] == "--size").map(|w| w[1].parse::<u64>().unwrap()).sum();
        assert!(sizes <= 1 << 30, "the tmpfs together fit in the Agent's 1Gi: {sizes}");
        assert!(cmd.contains("--size 4096") || cmd.contains("--tmpfs /dev/shm --remount-ro /dev"));
        let (options, command) = sb.options_and_command();
        assert_eq!(command, ["--", "/opt/paddock/paddock", "runner"]);
        let options = String::from_utf8(options).unwrap();
        assert!(options.starts_with("--unshare-all\0") && options.ends_with("--setenv\0CI\0true\0"), "{options}");
        assert!(options.contains("\0/home/u/ws\0/workspace\0"));
        assert!(cmd.contains("--clearenv") && cmd.contains("--setenv CI true"));
        assert!(!cmd.contains("/etc/passwd /etc/passwd"), "the host's identities are not shown");
        assert!(cmd.ends_with("-- /opt/paddock/paddock runner"));
        assert_eq!(sb.rlimits.data_bytes, 1 << 30);
        let (passwd, _) = identity_files(&spec());
        assert!(passwd.contains("runner:x:65532:65532"));
    }
}
