//! Running git for the gateway: a subprocess with no user or system configuration, no prompts, no proxy
//! from the environment, and a time limit. Settings that carry secrets go through `GIT_CONFIG_*` variables,
//! never the command line (which other users of the machine can read).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git does not start: {0}")]
    Spawn(std::io::Error),
    #[error("`git {0}` did not finish within {1}s")]
    Timeout(String, u64),
    #[error("`git {0}` failed: {1}")]
    Failed(String, String),
    #[error("cannot prepare git's home: {0}")]
    Home(std::io::Error),
}

/// The git the gateway runs, with an empty home of its own.
#[derive(Clone, Debug)]
pub struct Git {
    program: PathBuf,
    home: PathBuf,
}

/// What a finished git printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Git {
    /// `git` from `PATH`, with `home` (created, left empty) as its `HOME`, so no user configuration is read.
    pub fn new(home: &Path) -> Result<Git, GitError> {
        std::fs::create_dir_all(home).map_err(GitError::Home)?;
        Ok(Git { program: PathBuf::from("git"), home: home.to_owned() })
    }

    /// Runs `git args…` in `dir` with extra configuration `config` (passed as `GIT_CONFIG_KEY_n`/`VALUE_n`)
    /// and `stdin` (or nothing), killed after `limit`.
    pub async fn run(
        &self,
        dir: &Path,
        args: &[&str],
        config: &[(String, String)],
        stdin: Option<std::fs::File>,
        limit: Duration,
    ) -> Result<Output, GitError> {
        let mut cmd = Command::new(&self.program);
        // Nothing of the gateway's environment reaches git (a proxy, a credential helper, GIT_DIR…).
        cmd.env_clear()
            .args(["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "gc.auto=0"])
            .args(["-c", "maintenance.auto=false", "-c", "credential.helper=", "-c", "http.proxy="])
            .args(args)
            .current_dir(dir)
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()))
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/false")
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_COUNT", config.len().to_string())
            .stdin(stdin.map(Stdio::from).unwrap_or_else(Stdio::null))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (i, (key, value)) in config.iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), key).env(format!("GIT_CONFIG_VALUE_{i}"), value);
        }
        let what = args.iter().take(2).copied().collect::<Vec<_>>().join(" ");
        let mut child = cmd.spawn().map_err(GitError::Spawn)?;
        let (mut out, mut err) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let finished = tokio::time::timeout(limit, async {
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            let (o, e, status) = tokio::join!(out.read_to_end(&mut stdout), err.read_to_end(&mut stderr), child.wait());
            o.and(e).and(status).map(|s| (s, stdout, stderr))
        })
        .await;
        let (status, stdout, stderr) = match finished {
            Err(_) => return Err(GitError::Timeout(what, limit.as_secs())),
            Ok(Err(e)) => return Err(GitError::Spawn(e)),
            Ok(Ok(r)) => r,
        };
        Ok(Output {
            success: status.success(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// [`Git::run`], an error unless git succeeded.
    pub async fn ok(
        &self,
        dir: &Path,
        args: &[&str],
        config: &[(String, String)],
        stdin: Option<std::fs::File>,
        limit: Duration,
    ) -> Result<String, GitError> {
        let out = self.run(dir, args, config, stdin, limit).await?;
        if !out.success {
            let what = args.iter().take(2).copied().collect::<Vec<_>>().join(" ");
            return Err(GitError::Failed(what, out.stderr.trim().chars().take(2000).collect()));
        }
        Ok(out.stdout)
    }
}
