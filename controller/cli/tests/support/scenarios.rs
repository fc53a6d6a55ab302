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
