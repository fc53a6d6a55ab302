//! The scripted scenarios the harness tests play: per harness, an Agent and the model's turns.

pub const CLAUDE_AGENT: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: claude-coder}
spec:
  harness: claude-code
  model: claude-sonnet-4-5
  instructions: Keep answers short.
  limits: {maxTurns: 10, timeoutSeconds: 180}
"#;

pub fn claude_script(ws: &std::path::Path) -> String {
    format!(
        r#"
scripts:
  - name: scenario
    match: "tidy the repository"
    turns:
      - text: "I will leave a marker and publish the branch."
        tool_calls:
          - {{name: Bash, args: {{command: "echo ran > allowed.txt", description: "Leave a marker"}}}}
          - {{name: Bash, args: {{command: "git push --force origin main", description: "Publish"}}}}
        usage: {{input_tokens: 1200, output_tokens: 60}}
      - text: "Now the notes."
        tool_calls:
          - {{name: Write, args: {{file_path: "{ws}/notes.md", content: "written by claude\n"}}}}
        usage: {{input_tokens: 1500, output_tokens: 40}}
      - text: "Done: marker left, notes written; the force push was blocked by policy."
        usage: {{input_tokens: 1700, output_tokens: 20}}
"#,
        ws = ws.display()
    )
}

pub const CODEX_AGENT: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: codex-coder}
spec:
  harness: codex
  model: gpt-5-codex
  instructions: Keep answers short.
  limits: {maxTurns: 10, timeoutSeconds: 180}
"#;

/// Codex's shell tool is `exec_command {cmd}`; a file write is `apply_patch` run through it, which Codex
/// intercepts and applies itself (reported as a `file_change`).
pub const CODEX_SCRIPT: &str = r#"
scripts:
  - name: scenario
    match: "tidy the repository"
    turns:
      - text: "I will leave a marker and publish the branch."
        tool_calls:
          - {name: exec_command, args: {cmd: "echo ran > allowed.txt"}}
          - {name: exec_command, args: {cmd: "git push --force origin main"}}
        usage: {input_tokens: 1200, output_tokens: 60}
      - text: "Now the notes."
        tool_calls:
          - {name: exec_command, args: {cmd: "apply_patch <<'PATCH'\n*** Begin Patch\n*** Add File: notes.md\n+written by codex\n*** End Patch\nPATCH\n"}}
        usage: {input_tokens: 1500, output_tokens: 40}
      - text: "Done: marker left, notes written; the force push was blocked by policy."
        usage: {input_tokens: 1700, output_tokens: 20}
"#;

/// The scenario's turns in the shape of a harness's two tools: `shell(command)` runs a command, `write`
/// writes `notes.md` (given the workspace) with `notes`.
fn scenario_script(shell: &str, write: impl Fn(&str) -> String, first: &str) -> String {
    format!(
        r#"
scripts:{first}
  - name: scenario
    match: "tidy the repository"
    turns:
      - text: "I will leave a marker and publish the branch."
        tool_calls:
          - {{name: {shell}, args: {{command: "echo ran > allowed.txt"}}}}
          - {{name: {shell}, args: {{command: "git push --force origin main"}}}}
        usage: {{input_tokens: 1200, output_tokens: 60}}
      - text: "Now the notes."
        tool_calls:
          - {write}
        usage: {{input_tokens: 1500, output_tokens: 40}}
      - text: "Done: marker left, notes written; the force push was blocked by policy."
        usage: {{input_tokens: 1700, output_tokens: 20}}
"#,
        write = write("notes.md"),
    )
}

pub const GEMINI_AGENT: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: gemini-coder}
spec:
  harness: gemini-cli
  model: gemini-2.5-pro
  instructions: Keep answers short.
  limits: {maxTurns: 10, timeoutSeconds: 180}
"#;

/// Gemini CLI's tools: `run_shell_command {command}`, `write_file {file_path, content}` (an absolute path).
pub fn gemini_script(ws: &std::path::Path) -> String {
    let ws = ws.display().to_string();
    scenario_script(
        "run_shell_command",
        |f| format!(r#"{{name: write_file, args: {{file_path: "{ws}/{f}", content: "written by gemini\n"}}}}"#),
        "",
    )
}

pub const PI_AGENT: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: pi-coder}
spec:
  harness: pi
  model: gpt-5
  instructions: Keep answers short.
  limits: {maxTurns: 10, timeoutSeconds: 180}
"#;

/// Pi's tools: `bash {command}`, `write {path, content}`; it speaks Chat Completions for an OpenAI model.
pub fn pi_script(_: &std::path::Path) -> String {
    scenario_script("bash", |f| format!(r#"{{name: write, args: {{path: "{f}", content: "written by pi\n"}}}}"#), "")
}

pub const OPENCODE_AGENT: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: opencode-coder}
spec:
  harness: opencode
  model: claude-sonnet-4-5
  instructions: Keep answers short.
  limits: {maxTurns: 10, timeoutSeconds: 180}
"#;

/// OpenCode's tools: `bash {command, description}`, `write {filePath, content}` (an absolute path). It asks
/// the model for a title first, in a request of its own: the first script answers that.
pub fn opencode_script(ws: &std::path::Path) -> String {
    let ws = ws.display().to_string();
    scenario_script(
        "bash",
        |f| format!(r#"{{name: write, args: {{filePath: "{ws}/{f}", content: "written by opencode\n"}}}}"#),
        r#"
  - name: title
    match: "Generate a title for this conversation"
    turns:
      - text: "Tidying the repository"
        usage: {input_tokens: 0, output_tokens: 0}"#,
    )
}

/// A `command` Agent running one of the SDK examples in `examples/programs`, with `env` (`NAME: value`).
pub fn command_agent(name: &str, model: &str, command: &[&str], env: &[(&str, String)]) -> String {
    let command: Vec<String> = command.iter().map(|c| serde_json::to_string(c).unwrap()).collect();
    let env: Vec<String> =
        env.iter().map(|(k, v)| format!("{{name: {k}, value: {}}}", serde_json::to_string(v).unwrap())).collect();
    format!(
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {{name: {name}}}
spec:
  harness: command
  command: [{}]
  model: {model}
  instructions: Keep answers short.
  env: [{}]
  limits: {{maxTurns: 10, timeoutSeconds: 180}}
"#,
        command.join(", "),
        env.join(", ")
    )
}

/// The OpenAI Agents SDK example's tools: `shell {command}`, `write_file {path, content}`.
pub fn openai_agents_script(_: &std::path::Path) -> String {
    scenario_script(
        "shell",
        |f| format!(r#"{{name: write_file, args: {{path: "{f}", content: "written by the openai agent\n"}}}}"#),
        "",
    )
}

use paddock_runner::TranscriptEvent;
use serde_json::Value;

use super::{Coverage, RunnerRun, TestGateway, UpstreamCall, cli, git, git_workspace, run_runner};

/// One harness scenario, run: a git workspace with a `file://` remote, a gateway with the scripted model, and
/// `paddock runner` with the real CLI.
pub struct Scenario {
    pub _dir: tempfile::TempDir,
    pub ws: std::path::PathBuf,
    pub remote: std::path::PathBuf,
    pub remote_main: String,
    pub gw: TestGateway,
    pub session: String,
    pub token: String,
    pub run: RunnerRun,
}

impl Scenario {
    /// `script` gets the workspace (some scripts name paths in it). `cli` is (binary name, variable naming it).
    pub async fn run(
        agent_yaml: &str,
        agent: &str,
        script: impl FnOnce(&std::path::Path) -> String,
        cli_bin: (&str, &str),
    ) -> Scenario {
        let bin = cli(cli_bin.0, cli_bin.1);
        Scenario::run_with(agent_yaml, agent, script, &[(cli_bin.1, bin.as_path())]).await
    }

    /// [`Scenario::run`] with the runner's environment given (`command` harnesses find no CLI).
    pub async fn run_with(
        agent_yaml: &str,
        agent: &str,
        script: impl FnOnce(&std::path::Path) -> String,
        envs: &[(&str, &std::path::Path)],
    ) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let (ws, remote) = git_workspace(dir.path());
        let remote_main = git(&remote, &["rev-parse", "main"]);
        let gw = TestGateway::start(&dir.path().join("gw"), agent_yaml, &script(&ws)).await;
        let (session, token) = gw.session(agent).await;
        let agent_file = dir.path().join("agent.yaml");
        std::fs::write(&agent_file, agent_yaml).unwrap();
        let run = run_runner(&agent_file, "Please tidy the repository.", &ws, &gw.url, &session, &token, envs).await;
        Scenario { _dir: dir, ws, remote, remote_main, gw, session, token, run }
    }

    /// What every harness must show: the allowed command ran and the file was written, the push did not run;
    /// the transcript has the prompt, two successful results, the deny of `denied_tool`, usage and a
    /// successful end, and the gateway holds the same; cost is on the ledger; every model request and tool
    /// call was decided, with exactly one deny. Returns the tool calls, the audit log and the upstream calls
    /// for the harness's own checks.
    pub async fn check_common(
        &self,
        harness: &str,
        notes: &str,
        denied_tool: &str,
    ) -> (Vec<(String, Value)>, Vec<Value>, Vec<UpstreamCall>) {
        self.check_common_with(harness, notes, denied_tool, 0).await
    }

    /// [`Scenario::check_common`] for a harness that makes `extra` model requests of its own beside the
    /// scenario's three (OpenCode asks for a title), each governed like the rest.
    pub async fn check_common_with(
        &self,
        harness: &str,
        notes: &str,
        denied_tool: &str,
        extra: usize,
    ) -> (Vec<(String, Value)>, Vec<Value>, Vec<UpstreamCall>) {
        let ev = &self.run.events;
        assert!(self.run.success, "the session failed: {ev:#?}\n{}", self.run.stderr);
        assert!(!self.run.stderr.contains(&self.token), "the runner's stderr shows the session token");

        // What ran and what did not.
        assert_eq!(std::fs::read_to_string(self.ws.join("allowed.txt")).unwrap(), "ran\n");
        assert_eq!(std::fs::read_to_string(self.ws.join("notes.md")).unwrap(), notes);
        assert_eq!(git(&self.remote, &["rev-parse", "main"]), self.remote_main, "the remote moved: the force push ran");

        // The transcript: prompt, calls, results, the deny, usage, done.
        assert!(matches!(&ev[0], TranscriptEvent::Message { role, text } if role == "user" && text.contains("tidy")));
        let calls: Vec<(String, Value)> = ev
            .iter()
            .filter_map(|e| match e {
                TranscriptEvent::ToolCall { name, args, .. } => Some((name.clone(), args.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(!calls.iter().any(|(_, a)| a.to_string().contains("push")), "the denied call reached {harness}");
        let results: Vec<&TranscriptEvent> =
            ev.iter().filter(|e| matches!(e, TranscriptEvent::ToolResult { .. })).collect();
        assert_eq!(results.len(), 2);
        assert!(
            results.iter().all(|r| matches!(r, TranscriptEvent::ToolResult { is_error: false, .. })),
            "{results:?}"
        );
        assert!(
            ev.iter()
                .any(|e| matches!(e, TranscriptEvent::Verdict { verdict, policy: Some(p), tool: Some(t), reason, .. }
                if verdict == "deny" && p == "github-rules" && t == denied_tool && reason.contains("force"))),
            "no deny verdict in {ev:#?}"
        );
        assert!(ev.iter().any(|e| matches!(e, TranscriptEvent::Usage { output_tokens, .. } if *output_tokens > 0)));
        assert!(
            matches!(ev.last(), Some(TranscriptEvent::Done { phase, message }) if phase == "Succeeded" && message.contains("Done"))
        );

        // The gateway holds what the runner posted (messages, calls, results, usage), stamped as the runner's,
        // and the decisions, written by the gateway itself; for `paddock session logs`.
        let stored = self.gw.transcript(&self.session).await;
        let runner_side =
            |e: &TranscriptEvent| !matches!(e, TranscriptEvent::Verdict { .. } | TranscriptEvent::Done { .. });
        let posted: Vec<&TranscriptEvent> =
            stored.iter().filter(|(source, _)| source == "runner").map(|(_, e)| e).collect();
        assert_eq!(posted, ev.iter().filter(|e| runner_side(e)).collect::<Vec<_>>(), "{stored:#?}");
        assert!(stored.iter().all(|(source, e)| (source == "runner") == runner_side(e)), "{stored:#?}");
        assert!(
            stored.iter().any(|(source, e)| source == "gateway"
                && matches!(e, TranscriptEvent::Verdict { verdict, policy: Some(p), tool: Some(t), .. }
                    if verdict == "deny" && p == "github-rules" && t == denied_tool)),
            "the gateway wrote no deny verdict: {stored:#?}"
        );

        // Cost is on the session's ledger.
        let info = self.gw.session_info(&self.session).await;
        assert!(info["usage"]["costUsd"].as_f64().unwrap() > 0.0, "{info}");
        assert_eq!(info["usage"]["inputTokens"], 1200 + 1500 + 1700, "{info}");

        // Every model request and every tool call was decided.
        let audit = self.gw.audit(&self.session).await;
        let upstream = self.gw.upstream.calls();
        let cov = Coverage::of(&audit, &upstream);
        println!("{}", cov.report(harness));
        assert!(cov.is_full(), "{} — audit: {audit:#?}", cov.report(harness));
        assert_eq!(upstream.len(), 3 + extra, "{upstream:?}");
        // The CLI's own background connections (Codex: update checks, telemetry, experiments) go to the egress
        // proxy like every other connection and are refused there: nothing in this Agent's egress allows them.
        let (egress, decided): (Vec<&Value>, Vec<&Value>) = audit.iter().partition(|r| r["phase"] == "egress");
        assert!(
            egress.iter().all(|r| r["verdict"] == "deny" && r["policy"] == "paddock/egress"),
            "a connection out was allowed: {egress:#?}"
        );
        let denied: Vec<&Value> = decided.into_iter().filter(|r| r["verdict"] == "deny").collect();
        assert_eq!(denied.len(), 1, "{denied:?}");
        assert_eq!(denied[0]["policy"], "github-rules");
        (calls, audit, upstream)
    }
}
