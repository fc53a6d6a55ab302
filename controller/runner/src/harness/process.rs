//! Running a vendor CLI (Claude Code, Codex, Gemini CLI, Pi, OpenCode, a `command`) as a child process: found on PATH or through an env override,
//! started in the workspace with a cleared environment, its JSON-lines stdout read line by line, its
//! stderr kept (last few KiB, secrets redacted) for error messages, and its whole process group killed when
//! the run ends or is dropped (the session's timeout drops the harness future).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::RunContext;

/// The CLI versions Paddock is tested with (`.ci/install-clis.sh` and `charts/runner/Dockerfile` pin the
/// same; a unit test keeps them in step).
pub const CLAUDE_CODE_VERSION: &str = "2.1.331";
pub const CODEX_VERSION: &str = "0.169.0";
pub const GEMINI_CLI_VERSION: &str = "0.61.0";
pub const PI_VERSION: &str = "0.73.1";
pub const OPENCODE_VERSION: &str = "1.18.33";

/// How much of a CLI's stderr is kept for the error message.
const STDERR_KEPT: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "the {harness} harness needs the `{program}` CLI ({package}@{version} from npm) and cannot find it: \
         {detail}. Install it (`npm install -g {package}@{version}`) or set {env_var} to its path"
    )]
    CliNotFound {
        harness: &'static str,
        program: &'static str,
        package: &'static str,
        version: &'static str,
        env_var: &'static str,
        detail: String,
    },
    #[error("cannot start `{program}`: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("cannot prepare the private configuration directory: {0}")]
    Config(std::io::Error),
    #[error("reading the output of `{program}`: {source}")]
    Read { program: String, source: std::io::Error },
}

/// Which CLI, and how it is found.
pub struct CliSpec {
    pub harness: &'static str,
    pub program: &'static str,
    pub package: &'static str,
    pub version: &'static str,
    /// An env var naming the executable, ahead of PATH.
    pub env_var: &'static str,
}

impl CliSpec {
    /// The executable: `$env_var` when set (it must exist), else `program` on PATH.
    pub fn locate(&self) -> Result<PathBuf, HarnessError> {
        let missing = |detail: String| HarnessError::CliNotFound {
            harness: self.harness,
            program: self.program,
            package: self.package,
            version: self.version,
            env_var: self.env_var,
            detail,
        };
        if let Some(p) = std::env::var_os(self.env_var).filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(missing(format!("{} is set to `{}`, which is not a file", self.env_var, p.display())))
            };
        }
        on_path(self.program).ok_or_else(|| missing(format!("it is not on PATH and {} is not set", self.env_var)))
    }
}

/// The variable that carries the session token to a harness's program and its hook.
pub const TOKEN_VAR: &str = "PADDOCK_TOKEN";

/// `name` as the runner's PATH finds it.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// What `paddock hook …` needs to reach the gateway for the session: its address, the session and its
/// token. Every harness whose program runs a hook (or is one's) puts these in its environment.
pub fn hook_env(ctx: &RunContext) -> [(&'static str, String); 3] {
    let gw = &ctx.gateway;
    [
        ("PADDOCK_GATEWAY_URL", gw.base_url.clone()),
        ("PADDOCK_SESSION", gw.session.clone()),
        (TOKEN_VAR, gw.token.clone()),
    ]
}

/// The environment every CLI starts from: nothing of the runner's own environment but PATH (to find
/// `bash`, `git`, `node` …), a private HOME so no user configuration or credential is read, the Agent's
/// plain `env`, and the gateway's egress proxy and CA bundle ([`RunContext::egress_env`], which wins over
/// the Agent's `env`). Wiring variables the harness sets afterwards win over both.
pub fn base_env(ctx: &RunContext, home: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for v in &ctx.agent.env {
        env.insert(v.name.clone(), v.value.clone());
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    env.insert("PATH".into(), path);
    env.insert("HOME".into(), home.display().to_string());
    env.insert("TMPDIR".into(), home.join("tmp").display().to_string());
    env.insert("LANG".into(), "C.UTF-8".into());
    // OpenTelemetry's environment carrier: the hooks the CLI starts ask the gateway in the session's trace.
    if let Some(t) = ctx.gateway.traceparent() {
        env.insert("TRACEPARENT".into(), t.to_owned());
    }
    env.insert("TERM".into(), "dumb".into());
    env.insert("NO_COLOR".into(), "1".into());
    env.extend(ctx.egress_env());
    env
}

/// A private, temporary configuration directory (the CLI's HOME), removed when dropped.
pub fn private_home(prefix: &str) -> Result<tempfile::TempDir, HarnessError> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().map_err(HarnessError::Config)?;
    std::fs::create_dir_all(dir.path().join("tmp")).map_err(HarnessError::Config)?;
    Ok(dir)
}

/// A running CLI.
pub struct CliProcess {
    program: String,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
    stderr_task: tokio::task::JoinHandle<()>,
    exited: Option<ExitStatus>,
    /// The group's id (the child's pid), kept because the pid is gone once the child is reaped.
    pgid: Option<i32>,
    secrets: Vec<String>,
}

impl CliProcess {
    /// Starts `program args` in `cwd` with exactly `env`. `stdin` is written and closed (the prompt goes
    /// there rather than on the command line, where every process could read it). `secrets` are redacted
    /// from the stderr this keeps.
    pub fn spawn(
        program: &Path,
        args: &[String],
        env: &BTreeMap<String, String>,
        cwd: &Path,
        stdin: Option<String>,
        secrets: Vec<String>,
    ) -> Result<CliProcess, HarnessError> {
        let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(env)
            .current_dir(cwd)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that the commands it starts are killed with it.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn { program: name.clone(), source })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            tokio::spawn(async move {
                let _ = pipe.write_all(text.as_bytes()).await;
                let _ = pipe.shutdown().await;
            });
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let kept = stderr.clone();
        let stderr_task = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut s = kept.lock().expect("stderr");
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                if s.len() > 2 * STDERR_KEPT {
                    let mut cut = s.len() - STDERR_KEPT;
                    while !s.is_char_boundary(cut) {
                        cut += 1;
                    }
                    s.drain(..cut);
                }
            }
        });
        let pgid = child.id().and_then(|p| i32::try_from(p).ok());
        Ok(CliProcess {
            program: name,
            child,
            lines: BufReader::new(stdout).lines(),
            stderr,
            stderr_task,
            exited: None,
            pgid,
            secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
        })
    }

    /// Starts a harness's program for `ctx`'s session: in its workspace, the prompt on stdin, the session
    /// token redacted from what is kept of its stderr.
    pub fn for_session(
        program: &Path,
        args: &[String],
        env: &BTreeMap<String, String>,
        ctx: &RunContext,
    ) -> Result<CliProcess, HarnessError> {
        CliProcess::spawn(program, args, env, &ctx.workspace, Some(ctx.prompt.clone()), vec![ctx.gateway.token.clone()])
    }

    /// The next JSON object on stdout; `None` at the end. Lines that are not JSON are logged and skipped.
    /// When the CLI exits, the rest of its group is killed, so a background command that inherited stdout
    /// cannot keep the stream open.
    pub async fn next_json(&mut self) -> Result<Option<Value>, HarnessError> {
        while let Some(line) = self.next_line().await? {
            match serde_json::from_str::<Value>(&line) {
                Ok(v) if v.is_object() => return Ok(Some(v)),
                _ => tracing::debug!(program = %self.program, line = %self.redact(&line), "non-JSON output"),
            }
        }
        Ok(None)
    }

    /// The next line on stdout that is not blank, trimmed; `None` at the end. See [`CliProcess::next_json`].
    pub async fn next_line(&mut self) -> Result<Option<String>, HarnessError> {
        loop {
            let line = if self.exited.is_some() {
                self.lines.next_line().await
            } else {
                tokio::select! {
                    line = self.lines.next_line() => line,
                    status = self.child.wait() => {
                        let status = status.map_err(|source| HarnessError::Read { program: self.program.clone(), source })?;
                        self.exited = Some(status);
                        self.kill_group();
                        continue;
                    }
                }
            };
            let line = line.map_err(|source| HarnessError::Read { program: self.program.clone(), source })?;
            let Some(line) = line else { return Ok(None) };
            let line = line.trim();
            if !line.is_empty() {
                return Ok(Some(line.to_owned()));
            }
        }
    }

    /// Waits for the exit; the process group is killed either way (background commands die with it).
    /// Reads the CLI's JSON lines to the end, reporting what `translate` makes of each, then waits for it.
    pub async fn stream_into(
        &mut self,
        transcript: &crate::transcript::Transcript,
        mut translate: impl FnMut(&Value) -> Vec<crate::transcript::TranscriptEvent>,
    ) -> Result<ExitStatus, HarnessError> {
        while let Some(ev) = self.next_json().await? {
            for t in translate(&ev) {
                transcript.emit(t).await;
            }
        }
        self.wait().await
    }

    pub async fn wait(&mut self) -> Result<ExitStatus, HarnessError> {
        let status = match self.exited {
            Some(s) => s,
            None => self
                .child
                .wait()
                .await
                .map_err(|source| HarnessError::Read { program: self.program.clone(), source })?,
        };
        self.exited = Some(status);
        self.kill_group();
        // stderr closes when the group is gone; a bounded wait keeps a stuck pipe from hanging the run.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.stderr_task).await;
        Ok(status)
    }

    /// The end of its stderr, secrets redacted.
    pub fn stderr_tail(&self) -> String {
        let s = self.stderr.lock().expect("stderr").clone();
        let s = self.redact(&s);
        let s = s.trim();
        match s.char_indices().rev().nth(STDERR_KEPT) {
            Some((i, _)) => s[i..].to_owned(),
            None => s.to_owned(),
        }
    }

    fn redact(&self, s: &str) -> String {
        self.secrets.iter().fold(s.to_owned(), |acc, secret| acc.replace(secret.as_str(), "[redacted]"))
    }

    fn kill_group(&self) {
        if let Some(pid) = self.pgid {
            // SAFETY: kill(2) with a negative pid signals the process group we created for the child; it
            // touches no memory of ours.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }

    /// Why it failed, for the outcome: its exit status and the end of its stderr.
    pub fn failure(&self, status: Option<ExitStatus>) -> String {
        let tail = self.stderr_tail();
        let status = status.map(|s| s.to_string()).unwrap_or_else(|| "an unknown status".into());
        if tail.is_empty() {
            format!("`{}` exited with {status} before finishing", self.program)
        } else {
            format!("`{}` exited with {status} before finishing: {tail}", self.program)
        }
    }
}

impl Drop for CliProcess {
    fn drop(&mut self) {
        // On timeout or cancellation the CLI and everything it started go.
        self.kill_group();
        self.stderr_task.abort();
    }
}

/// The provider API a CLI speaks for `model`: the model catalog's provider, else the id's family. The
/// scripted model speaks every format; the CLIs are given Anthropic's for it.
pub fn provider_of(model: &str) -> paddock_api::catalog::Provider {
    use paddock_api::catalog::{ModelCatalog, Provider};
    match ModelCatalog::builtin().lookup(model).map(|m| m.provider) {
        Some(Provider::Scripted) => Provider::Anthropic,
        Some(p) => p,
        None if model.starts_with("claude") => Provider::Anthropic,
        None if model.starts_with("gemini") => Provider::Google,
        None => Provider::Openai,
    }
}

/// The gateway's model endpoints as SDKs take their base URLs: Anthropic's (`…/llm/anthropic`, the SDK adds
/// `/v1/messages`), OpenAI's (`…/llm/openai/v1`) and Google's (`…/llm/google`, the SDK adds `/v1beta`).
pub fn llm_base_urls(ctx: &RunContext) -> [(paddock_api::catalog::Provider, String); 3] {
    use paddock_api::catalog::Provider;
    let base = &ctx.gateway.base_url;
    [
        (Provider::Anthropic, format!("{base}/llm/anthropic")),
        (Provider::Openai, format!("{base}/llm/openai/v1")),
        (Provider::Google, format!("{base}/llm/google")),
    ]
}

/// An assistant's text as transcript events: the gateway's notes about removed tool calls (and a hook's
/// reasons) become deny verdicts, the rest a message. Returns the rest (empty when it was only notes).
pub fn assistant_text(text: &str, out: &mut Vec<crate::transcript::TranscriptEvent>) -> String {
    use crate::transcript::TranscriptEvent;
    let notes = paddock_notes(text);
    let rest: Vec<&str> = text.lines().filter(|l| !l.contains("[paddock]")).collect();
    let rest = rest.join("\n").trim().to_owned();
    if !rest.is_empty() {
        out.push(TranscriptEvent::Message { role: "assistant".into(), text: rest.clone() });
    }
    for (tool, policy, reason) in notes {
        out.push(TranscriptEvent::Verdict {
            phase: "llm_response".into(),
            verdict: "deny".into(),
            reason,
            policy,
            tool,
        });
    }
    rest
}

/// A JavaScript module of the hook that a harness whose hooks are code (Pi's extensions, OpenCode's
/// plugins) loads: before each tool call it runs `paddock hook claude` with a PreToolUse input built from the
/// call (its id ties it to the response gate's decision of the same call) and blocks the call unless the
/// hook exits 0 — any failure, the hook missing included, blocks. `export` is the harness's hook shape
/// around `gate(tool, input, id)`, which returns `null` to allow or the reason to block. For a model the
/// gateway speaks Gemini's API to, a client's own call ids are not the gateway's (Google sends none, and an
/// SDK may not keep the ones the gateway adds), so the hook is the deny-only check (`paddock hook gemini`),
/// which does not count a call again.
pub fn js_gate(ctx: &RunContext, export: &str) -> String {
    let bin = serde_json::to_string(&ctx.paddock_bin.display().to_string()).expect("string");
    let (hook, event) = match provider_of(&ctx.model) {
        paddock_api::catalog::Provider::Google => ("gemini", "BeforeTool"),
        _ => ("claude", "PreToolUse"),
    };
    format!(
        r#"// Written by the Paddock runner for one session: every tool call is asked of the gateway before it runs.
import {{ spawnSync }} from "node:child_process";
const PADDOCK = {bin};
function gate(tool, input, id) {{
  const hook = JSON.stringify({{ hook_event_name: "{event}", tool_name: tool, tool_input: input ?? {{}}, tool_use_id: id, cwd: process.cwd() }});
  const r = spawnSync(PADDOCK, ["hook", "{hook}"], {{ input: hook, encoding: "utf8", timeout: 600000 }});
  if (r.status === 0) return null;
  const why = (r.stderr || "").trim();
  return why || `[paddock] The tool call \`${{tool}}\` was blocked: the hook could not decide it (${{r.error ? r.error.message : "exit " + r.status}}).`;
}}
{export}
"#
    )
}

/// Lines of a `[paddock]` note (the gateway's text for a removed tool call, or the hook's reason), as
/// (tool, policy, reason) for a transcript verdict.
pub fn paddock_notes(text: &str) -> Vec<(Option<String>, Option<String>, String)> {
    text.lines()
        .filter_map(|l| {
            let at = l.find("[paddock]")?;
            let note = l[at..].trim().to_owned();
            let tool = between(&note, "tool call `", "`");
            let policy = between(&note, "by policy `", "`");
            Some((tool, policy, note))
        })
        .collect()
}

fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(s[from..from + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_name_the_tool_and_policy() {
        let text = "Sure.\n[paddock] The tool call `Bash` was blocked by policy `github-rules` (rule `no-force-push`): \
                    force pushes are not allowed. Do not retry it; tell the user.";
        let notes = paddock_notes(text);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].0.as_deref(), Some("Bash"));
        assert_eq!(notes[0].1.as_deref(), Some("github-rules"));
        assert!(notes[0].2.starts_with("[paddock] The tool call"));
        assert!(paddock_notes("nothing to see").is_empty());
    }

    #[test]
    fn pinned_versions_match_the_install_script_and_the_image() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for file in [".ci/install-clis.sh", "charts/runner/Dockerfile"] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            assert!(
                text.contains(&format!("@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}"))
                    || text.contains(&format!("CLAUDE_CODE_VERSION={CLAUDE_CODE_VERSION}")),
                "{file} does not pin Claude Code {CLAUDE_CODE_VERSION}"
            );
            assert!(
                text.contains(&format!("@openai/codex@{CODEX_VERSION}"))
                    || text.contains(&format!("CODEX_VERSION={CODEX_VERSION}")),
                "{file} does not pin Codex {CODEX_VERSION}"
            );
            for (package, version) in [
                ("@google/gemini-cli", GEMINI_CLI_VERSION),
                ("@mariozechner/pi-coding-agent", PI_VERSION),
                ("opencode-ai", OPENCODE_VERSION),
            ] {
                let var = match package {
                    "@google/gemini-cli" => "GEMINI_CLI_VERSION",
                    "opencode-ai" => "OPENCODE_VERSION",
                    _ => "PI_VERSION",
                };
                assert!(
                    text.contains(&format!("{package}@{version}")) || text.contains(&format!("{var}={version}")),
                    "{file} does not pin {package} {version}"
                );
            }
        }
    }

    #[tokio::test]
    async fn stderr_is_kept_without_secrets_and_the_group_is_killed() {
        let env = BTreeMap::from([("PATH".to_owned(), std::env::var("PATH").unwrap())]);
        let dir = tempfile::tempdir().unwrap();
        let script = "echo '{\"a\":1}'; echo 'not json'; echo 'key sk-secret-123 rejected' >&2; \
                      (sleep 1; touch late) & exit 3";
        let mut p = CliProcess::spawn(
            Path::new("/bin/sh"),
            &["-c".into(), script.into()],
            &env,
            dir.path(),
            None,
            vec!["sk-secret-123".into()],
        )
        .unwrap();
        assert_eq!(p.next_json().await.unwrap(), Some(serde_json::json!({"a": 1})));
        assert_eq!(p.next_json().await.unwrap(), None);
        let status = p.wait().await.unwrap();
        assert_eq!(status.code(), Some(3));
        let why = p.failure(Some(status));
        assert!(why.contains("[redacted] rejected") && !why.contains("sk-secret"), "{why}");
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert!(!dir.path().join("late").exists());
    }

    #[tokio::test]
    async fn dropping_the_process_kills_everything_it_started() {
        // What a session timeout does: the harness future is dropped mid-run.
        let env = BTreeMap::from([("PATH".to_owned(), std::env::var("PATH").unwrap())]);
        let dir = tempfile::tempdir().unwrap();
        let p = CliProcess::spawn(
            Path::new("/bin/sh"),
            &["-c".into(), "(sleep 1; touch late) & sleep 30".into()],
            &env,
            dir.path(),
            None,
            vec![],
        )
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        drop(p);
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert!(!dir.path().join("late").exists());
    }
}
