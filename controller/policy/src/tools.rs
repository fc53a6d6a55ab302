//! Tool names normalised across harnesses, so one rule covers Claude Code's `Bash`, Codex's
//! `exec_command` and our own `shell` alike. The original name is kept for messages and exact matches.

use std::sync::OnceLock;

use serde_json::Value;

use crate::shell::{SimpleCommand, parse_commands};

/// What a tool does, whatever a harness calls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ToolKind {
    Shell,
    ReadFile,
    WriteFile,
    EditFile,
    ListDir,
    Glob,
    Grep,
    WebFetch,
    WebSearch,
    /// A sub-agent (Claude Code `Task`).
    Agent,
    /// A tool of an MCP server (`mcp__server__tool`).
    Mcp,
    Other,
}

impl ToolKind {
    /// The canonical name, which is also the custom harness's tool name where one exists.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolKind::Shell => "shell",
            ToolKind::ReadFile => "read_file",
            ToolKind::WriteFile => "write_file",
            ToolKind::EditFile => "edit_file",
            ToolKind::ListDir => "list_dir",
            ToolKind::Glob => "glob",
            ToolKind::Grep => "grep",
            ToolKind::WebFetch => "web_fetch",
            ToolKind::WebSearch => "web_search",
            ToolKind::Agent => "agent",
            ToolKind::Mcp => "mcp",
            ToolKind::Other => "other",
        }
    }

    /// Kind of a harness tool name: Claude Code, Codex, Paddock's custom harness, and common others.
    pub fn of(name: &str) -> ToolKind {
        // Claude Code names MCP tools `mcp__server__tool`; Codex names them `server__tool`.
        if name.starts_with("mcp__")
            || name.split_once("__").is_some_and(|(server, tool)| !server.is_empty() && !tool.is_empty())
        {
            return ToolKind::Mcp;
        }
        match name {
            "Bash" | "bash" | "shell" | "exec_command" | "local_shell" | "container.exec" | "Shell" | "terminal"
            | "write_stdin" | "unified_exec" | "sys_os_shell" | "execute_command" | "run_command" => ToolKind::Shell,
            "Read" | "read_file" | "view" | "view_image" | "sys_os_read" | "NotebookRead" => ToolKind::ReadFile,
            "Write" | "write_file" | "create_file" | "sys_os_write" => ToolKind::WriteFile,
            "Edit" | "MultiEdit" | "NotebookEdit" | "edit_file" | "apply_patch" | "str_replace" | "sys_os_edit" => {
                ToolKind::EditFile
            }
            "LS" | "list_dir" | "list_directory" => ToolKind::ListDir,
            "Glob" | "glob" | "find_files" => ToolKind::Glob,
            "Grep" | "grep" | "grep_files" | "search_files" => ToolKind::Grep,
            "WebFetch" | "web_fetch" | "fetch" => ToolKind::WebFetch,
            "WebSearch" | "web_search" => ToolKind::WebSearch,
            "Task" | "Agent" | "agent" => ToolKind::Agent,
            _ => ToolKind::Other,
        }
    }
}

/// A tool use with its kind worked out.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolUse {
    pub name: String,
    pub kind: ToolKind,
    pub args: Value,
    pub id: Option<String>,
    /// The shell command line parsed once, shared by every rule that reads it.
    commands: OnceLock<Option<Result<Vec<SimpleCommand>, String>>>,
}

impl ToolUse {
    pub fn new(name: &str, args: Value, id: Option<String>) -> ToolUse {
        ToolUse { name: name.to_owned(), kind: ToolKind::of(name), args, id, commands: OnceLock::new() }
    }

    /// Every simple command the command line in the arguments would run (see [`crate::shell`]), parsed
    /// on first use. `None` when the tool has no command line and is not a shell; `Err` when the line
    /// cannot be tokenized, or when a shell tool's command cannot be found at all (so rules ask rather
    /// than pass a command they cannot see). Callers decide which tools they treat as shells.
    pub fn shell_commands(&self) -> Option<&Result<Vec<SimpleCommand>, String>> {
        self.commands
            .get_or_init(|| match self.command_arg() {
                Some(line) => Some(
                    parse_commands(&line)
                        .map_err(|e| format!("the command could not be parsed ({e}), so it cannot be checked")),
                ),
                None if self.kind == ToolKind::Shell => Some(Err(format!(
                    "no command line found in the arguments of `{}`, so it cannot be checked",
                    self.name
                ))),
                None => None,
            })
            .as_ref()
    }

    /// The shell command line of a shell tool, in any harness's argument shape: `{"command": "..."}`
    /// (Claude Code, ours), `{"cmd": "..."}` (Codex `exec_command`), `{"command": ["bash", "-lc", "..."]}`
    /// (Codex `shell`).
    pub fn command(&self) -> Option<String> {
        if self.kind != ToolKind::Shell {
            return None;
        }
        self.command_arg()
    }

    /// The command line in the arguments, whatever the tool's kind (for tools a rule names as shells):
    /// the first of `command`, `cmd`, `chars` (Codex `write_stdin`), `input`, `action.command`
    /// (`local_shell`) that holds a string or an argv array.
    fn command_arg(&self) -> Option<String> {
        let a = &self.args;
        let v = [
            a.get("command"),
            a.get("cmd"),
            a.get("chars"),
            a.get("input"),
            a.get("action").and_then(|x| x.get("command")),
        ]
        .into_iter()
        .flatten()
        .find(|v| v.is_string() || v.is_array())?;
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Array(argv) => {
                let words: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
                match words.as_slice() {
                    [sh, flag, script] if is_shell(sh) && flag.starts_with('-') && flag.contains('c') => {
                        Some((*script).to_owned())
                    }
                    _ => Some(words.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ")),
                }
            }
            _ => None,
        }
    }

    /// The file paths a file tool touches: `file_path` (Claude Code), `path` (ours), `notebook_path`, and
    /// the files named in an `apply_patch` patch (Codex).
    pub fn paths(&self) -> Vec<String> {
        let mut out: Vec<String> = ["file_path", "path", "notebook_path"]
            .iter()
            .filter_map(|k| self.args.get(*k).and_then(Value::as_str).map(str::to_owned))
            .collect();
        if self.name == "apply_patch" {
            let patch =
                self.args.get("input").or_else(|| self.args.get("patch")).and_then(Value::as_str).unwrap_or_default();
            for line in patch.lines() {
                for prefix in ["*** Update File: ", "*** Add File: ", "*** Delete File: ", "*** Move to: "] {
                    if let Some(p) = line.strip_prefix(prefix) {
                        out.push(p.trim().to_owned());
                    }
                }
            }
        }
        out
    }

    /// Whether a rule's tool pattern names this tool: the exact name, the canonical kind (`shell` covers
    /// `Bash` and `exec_command`), a `*` glob over the name (`mcp__github__*`), or an MCP-agnostic suffix
    /// (`create_issue` matches `mcp__github__create_issue`).
    pub fn matches(&self, pattern: &str) -> bool {
        pattern == self.name
            || (self.kind != ToolKind::Other && pattern == self.kind.as_str())
            || (pattern.contains('*') && glob_match(pattern, &self.name))
            || (self.kind == ToolKind::Mcp
                && ToolKind::of(pattern) == ToolKind::Other
                && self.name.ends_with(&format!("__{pattern}")))
    }
}

fn is_shell(s: &str) -> bool {
    matches!(s.rsplit('/').next().unwrap_or(s), "bash" | "sh" | "zsh" | "dash")
}

fn shell_quote(w: &str) -> String {
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c)) {
        w.to_owned()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// `*` matches any run of characters, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_kind_across_harnesses() {
        for name in ["Bash", "exec_command", "shell"] {
            assert_eq!(ToolKind::of(name), ToolKind::Shell, "{name}");
        }
        for name in ["Edit", "apply_patch", "edit_file"] {
            assert_eq!(ToolKind::of(name), ToolKind::EditFile, "{name}");
        }
        assert_eq!(ToolKind::of("Write"), ToolKind::WriteFile);
        assert_eq!(ToolKind::of("mcp__github__create_issue"), ToolKind::Mcp);
        assert_eq!(ToolKind::of("frobnicate"), ToolKind::Other);
    }

    #[test]
    fn commands_in_every_argument_shape() {
        let claude = ToolUse::new("Bash", json!({"command": "git push -f"}), None);
        let codex = ToolUse::new("exec_command", json!({"cmd": "git push -f"}), None);
        let codex_shell = ToolUse::new("shell", json!({"command": ["bash", "-lc", "git push -f"]}), None);
        let argv = ToolUse::new("shell", json!({"command": ["git", "commit", "-m", "it's done"]}), None);
        for t in [&claude, &codex, &codex_shell] {
            assert_eq!(t.command().as_deref(), Some("git push -f"), "{}", t.name);
        }
        assert_eq!(argv.command().as_deref(), Some(r"git commit -m 'it'\''s done'"));
        assert_eq!(ToolUse::new("Read", json!({"command": "x"}), None).command(), None);
    }

    #[test]
    fn paths_including_codex_patches() {
        let patch = "*** Begin Patch\n*** Update File: src/a.rs\n@@\n-x\n+y\n*** Add File: b.txt\n+hi\n*** End Patch";
        assert_eq!(ToolUse::new("apply_patch", json!({"input": patch}), None).paths(), vec!["src/a.rs", "b.txt"]);
        assert_eq!(ToolUse::new("Write", json!({"file_path": "/w/x"}), None).paths(), vec!["/w/x"]);
    }

    #[test]
    fn patterns() {
        let t = ToolUse::new("mcp__github__create_issue", json!({}), None);
        assert!(t.matches("mcp__github__*"));
        assert!(t.matches("create_issue"));
        assert!(!t.matches("issue"));
        let b = ToolUse::new("Bash", json!({}), None);
        assert!(b.matches("shell") && b.matches("Bash") && !b.matches("bash"));
        assert!(glob_match("a*c?e", "abbbcde"));
        assert!(!glob_match("a*c", "abd"));
    }
}
