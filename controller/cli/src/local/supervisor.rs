//! The local supervisor: runs each Session as a sandboxed `paddock runner` process (bubblewrap, then
//! Landlock and seccomp inside), reports its end to the gateway, and stops it on request. Sessions, ledger
//! and audit live in the gateway's database.

use std::collections::HashMap;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use paddock_gateway::{Gateway, NewSession};
use paddock_sandbox::SandboxSpec;
use paddock_sandbox::local::{
    AGENT_FILE, GATEWAY_SOCKET, HostEntry, LocalMounts, PADDOCK_BIN, SYSTEM_DIRS, TOKEN_FILE, identity_files,
    render_bwrap,
};
use serde::{Deserialize, Serialize};

/// What `paddock session run` asks for.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartSession {
    pub agent: String,
    pub prompt: String,
    #[serde(default)]
    pub workspace: Option<PathBuf>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub budget_usd: Option<f64>,
    #[serde(default)]
    pub model_override: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Invalid(String),
    #[error("the sandbox cannot be set up: {0}")]
    Sandbox(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub struct Supervisor {
    pub gw: Arc<Gateway>,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub paddock_bin: PathBuf,
    /// Host paths shown read-only in every sandbox (where the harness CLIs are installed), and the
    /// variables that point the harnesses at them.
    pub extra_read_only: Vec<PathBuf>,
    pub harness_env: Vec<(String, String)>,
    running: Mutex<HashMap<String, u32>>,
}

/// Checks once that bubblewrap is installed and can create the namespaces; the message says what is missing.
pub fn check_sandbox() -> Result<(), String> {
    let mut check = std::process::Command::new("bwrap");
    check.args(["--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc"]);
    check.args(["--size", "1048576", "--tmpfs", "/tmp", "--", "/bin/true"]);
    // As root, sessions start bubblewrap as an unprivileged uid of their own: check it as one.
    let _uid = super::run_as::as_session_user(&mut check);
    let out = check.output();
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("bubblewrap (`bwrap`) is not installed; install it (Debian/Ubuntu: `sudo apt install bubblewrap`). \
             Paddock does not run agents without a sandbox."
                .into())
        }
        Err(e) => Err(format!("cannot run bwrap: {e}")),
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("--size") => Err(format!(
            "bubblewrap is too old: Paddock sizes the sandbox's tmpfs with `--size` (bubblewrap 0.7.0 or later; \
             Debian 12+, Ubuntu 24.04+): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(o) if !o.status.success() => Err(format!(
            "bwrap cannot create the sandbox's namespaces here: {} (unprivileged user namespaces may be disabled: \
             check `sysctl kernel.unprivileged_userns_clone` and AppArmor's `kernel.apparmor_restrict_unprivileged_userns`)",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => Ok(()),
    }
}

fn host_system() -> Vec<(String, HostEntry)> {
    SYSTEM_DIRS
        .iter()
        .filter_map(|d| {
            let meta = std::fs::symlink_metadata(d).ok()?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(d).ok()?;
                Some((d.to_string(), HostEntry::Symlink(target.to_string_lossy().into_owned())))
            } else if meta.is_dir() {
                Some((d.to_string(), HostEntry::Dir))
            } else {
                None
            }
        })
        .collect()
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

impl Supervisor {
    pub fn new(gw: Arc<Gateway>, data_dir: PathBuf, socket: PathBuf, paddock_bin: PathBuf) -> Supervisor {
        Supervisor {
            gw,
            data_dir,
            socket,
            paddock_bin,
            extra_read_only: Vec::new(),
            harness_env: Vec::new(),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Sessions the database shows running but that have no process (the previous `paddock up` stopped
    /// while they ran) are failed, with the reason.
    pub async fn recover(&self) -> anyhow::Result<Vec<String>> {
        let mut failed = Vec::new();
        for s in self.gw.sessions() {
            if s.ended().is_none() && !self.running.lock().expect("running").contains_key(&s.id) {
                self.gw.end_session(&s.id, "Failed", "interrupted: paddock up stopped while the session ran").await?;
                failed.push(s.id.clone());
            }
        }
        Ok(failed)
    }

    /// Starts a session: registers it with the gateway, prepares its sandbox and starts the runner.
    pub async fn start(self: &Arc<Self>, req: StartSession) -> Result<String, StartError> {
        let set = self.gw.policies();
        let agent = set.agent("default", &req.agent).ok_or_else(|| {
            let mut known: Vec<&str> = set.agents().map(|a| a.name.as_str()).collect();
            known.sort();
            StartError::Invalid(format!(
                "agent `{}` is not loaded (revision {}); loaded: {}",
                req.agent,
                set.revision,
                if known.is_empty() { "none".into() } else { known.join(", ") }
            ))
        })?;
        let spec = SandboxSpec::for_agent(&agent.spec, None).map_err(|e| StartError::Invalid(e.to_string()))?;
        for (i, p) in spec.read_only_paths.iter().enumerate() {
            if let Some(why) = self.private(Path::new(p)) {
                return Err(StartError::Invalid(format!(
                    "spec.sandbox.readOnlyPaths[{i}]: `{p}` would show {why} inside the sandbox; local mode shows \
                     system directories only"
                )));
            }
        }
        check_sandbox().map_err(StartError::Sandbox)?;
        // The user's directory (if any) is only ever read, to make the agent's copy (see `workspace`).
        let source = match &req.workspace {
            Some(w) => {
                let w = std::fs::canonicalize(w)
                    .ok()
                    .filter(|p| p.is_dir())
                    .ok_or_else(|| StartError::Invalid(format!("workspace `{}` is not a directory", w.display())))?;
                let home = std::env::var_os("HOME").map(PathBuf::from);
                let data = std::fs::canonicalize(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
                let own_data = w.starts_with(&data) && !w.starts_with(data.join("workspaces"));
                if w == Path::new("/") || Some(&w) == home.as_ref() || data.starts_with(&w) || own_data {
                    return Err(StartError::Invalid(format!(
                        "workspace `{}` is too wide: it would give the agent your home directory, the root, or \
                         Paddock's own data; use a project directory",
                        w.display()
                    )));
                }
                Some(w)
            }
            None => None,
        };
        let (session, token) = self
            .gw
            .create_session(NewSession {
                agent: req.agent.clone(),
                owner: req.owner.clone().unwrap_or_else(local_user),
                budget_usd: req.budget_usd,
                model_override: req.model_override.clone(),
                environment: Some("local".into()),
                ..NewSession::default()
            })
            .await
            .map_err(|e| StartError::Invalid(e.to_string()))?;
        let id = session.id.clone();
        let dir = self.data_dir.join("sessions").join(&id);
        std::fs::create_dir_all(&dir).context("cannot create the session directory")?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).context("session directory")?;
        write_private(&dir.join("token"), &token).context("token file")?;
        let workspace = match super::workspace::prepare(&dir, source.as_deref()) {
            Ok(w) => w,
            Err(e) => {
                let reason = format!("{e:#}");
                let _ = self.gw.end_session(&id, "Failed", &reason).await;
                return Err(StartError::Other(e));
            }
        };
        write_private(&dir.join("prompt"), &req.prompt).context("prompt file")?;
        let manifest = serde_json::json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "Agent",
            "metadata": {"name": agent.name, "labels": agent.labels}, "spec": agent.spec,
        });
        write_private(&dir.join("agent.yaml"), &serde_yaml_ng::to_string(&manifest).context("agent manifest")?)
            .context("agent file")?;
        let (passwd, group) = identity_files(&spec);
        std::fs::write(dir.join("passwd"), passwd).context("passwd")?;
        std::fs::write(dir.join("group"), group).context("group")?;
        let mut spec = spec;
        spec.env.extend(self.harness_env.iter().cloned());
        let mounts = LocalMounts {
            workspace_binds: super::workspace::binds_inside(&workspace),
            workspace: workspace.clone(),
            gateway_socket: self.socket.clone(),
            token_file: dir.join("token"),
            agent_file: dir.join("agent.yaml"),
            paddock_bin: self.paddock_bin.clone(),
            passwd: dir.join("passwd"),
            group: dir.join("group"),
            system: host_system(),
            extra_read_only: self.extra_read_only.clone(),
        };
        // The prompt goes in through the workspace-independent session dir, not the command line.
        let prompt_inside = "/run/paddock/prompt";
        let inner: Vec<String> = [
            PADDOCK_BIN,
            "runner",
            "--agent",
            AGENT_FILE,
            "--prompt-file",
            prompt_inside,
            "--workspace",
            paddock_sandbox::WORKSPACE_DIR,
            "--gateway",
            &format!("unix:{GATEWAY_SOCKET}"),
            "--session",
            &id,
            "--token-file",
            TOKEN_FILE,
            "--confine",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(spec.writable_paths.iter().flat_map(|p| ["--writable".to_owned(), p.clone()]))
        .collect();
        let mut sandbox = render_bwrap(&spec, &mounts, &inner);
        let pos = sandbox.argv.iter().position(|a| a == "--chdir").expect("chdir");
        sandbox.argv.splice(
            pos..pos,
            ["--ro-bind".to_owned(), dir.join("prompt").to_string_lossy().into_owned(), prompt_inside.to_owned()],
        );
        let mut log = std::fs::File::create(dir.join("runner.log")).context("runner log")?;
        // Limits, the session's own uid when root, and bubblewrap's options off its command line.
        let launched = super::launch::command(
            &id,
            &mut sandbox,
            &spec,
            &[&dir, &self.socket],
            &self.paddock_bin,
            &self.extra_read_only,
            &mut log,
        );
        let (mut cmd, hold) = match launched {
            Ok(c) => c,
            Err(reason) => {
                let reason = format!("the sandbox did not start: {reason}");
                let _ = self.gw.end_session(&id, "Failed", &reason).await;
                return Err(StartError::Sandbox(reason));
            }
        };
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(false);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let reason = format!("the sandbox did not start: {e}");
                let _ = self.gw.end_session(&id, "Failed", &reason).await;
                return Err(StartError::Sandbox(reason));
            }
        };
        if let Some(pid) = child.id() {
            self.running.lock().expect("running").insert(id.clone(), pid);
        }
        let me = self.clone();
        let sid = id.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            drop(hold);
            me.running.lock().expect("running").remove(&sid);
            let (phase, reason) = match status {
                Ok(s) if s.success() => ("Succeeded", String::new()),
                Ok(s) => ("Failed", me.failure_reason(&sid, s.code())),
                Err(e) => ("Failed", format!("lost the runner: {e}")),
            };
            if let Err(e) = me.gw.end_session(&sid, phase, &reason).await {
                tracing::error!(session = %sid, error = %e, "cannot record the end of the session");
            }
        });
        Ok(id)
    }

    /// Whether the session's sandbox is still running.
    pub fn is_running(&self, id: &str) -> bool {
        self.running.lock().expect("running").contains_key(id)
    }

    /// Whether a host path would expose something private (read-only is still a leak).
    fn private(&self, p: &Path) -> Option<&'static str> {
        let overlaps = |q: &Path| p.starts_with(q) || q.starts_with(p);
        let home = std::env::var_os("HOME").map(PathBuf::from);
        if home.as_deref().is_some_and(overlaps) || overlaps(Path::new("/home")) || overlaps(Path::new("/root")) {
            return Some("home directories");
        }
        if overlaps(&self.data_dir) {
            return Some("Paddock's data (the database and admin token)");
        }
        ["/run", "/proc", "/sys", "/dev", "/tmp", "/var/run", "/etc/ssh"]
            .iter()
            .any(|q| overlaps(Path::new(q)))
            .then_some("host runtime state")
    }

    /// Why a runner failed, from its last words.
    fn failure_reason(&self, id: &str, code: Option<i32>) -> String {
        let log =
            std::fs::read_to_string(self.data_dir.join("sessions").join(id).join("runner.log")).unwrap_or_default();
        let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        let code = code.map_or("killed by a signal".to_owned(), |c| format!("exit code {c}"));
        if last.is_empty() { format!("the runner ended with {code}") } else { format!("{last} ({code})") }
    }

    /// Stops a running session.
    pub async fn stop(&self, id: &str) -> anyhow::Result<bool> {
        let pid = self.running.lock().expect("running").get(id).copied();
        let Some(pid) = pid else { return Ok(false) };
        self.gw.end_session(id, "Failed", "stopped by the user").await?;
        // bwrap --die-with-parent takes the sandbox down with it.
        // SAFETY: plain kill(2) of a child we started.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
        Ok(true)
    }
}

fn local_user() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "local".into())
}
