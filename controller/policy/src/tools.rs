//! Tool names normalised across harnesses, so one rule covers Claude Code's `Bash`, Codex's
//! `exec_command` and our own `shell` alike. The original name is kept for messages and exact matches.
//! What a call executes is read from its tool's known argument shape ([`shapes`]).

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::shell::{SimpleCommand, parse_commands};
use crate::written::{FileWrite, WrittenFiles, record, scripts};

pub mod shapes;

use shapes::Reading;

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
            "Bash" | "bash" | "shell" | "exec_command" | "shell_command" | "local_shell" | "container.exec"
            | "Shell" | "terminal" | "write_stdin" | "unified_exec" | "sys_os_shell" | "execute_command"
            | "run_command" | "Monitor" | "run_shell_command" => ToolKind::Shell,
            "Read" | "read" | "read_file" | "view" | "view_image" | "sys_os_read" | "NotebookRead" => {
                ToolKind::ReadFile
            }
            "Write" | "write" | "write_file" | "create_file" | "sys_os_write" => ToolKind::WriteFile,
            "Edit" | "MultiEdit" | "NotebookEdit" | "edit_file" | "apply_patch" | "str_replace" | "sys_os_edit"
            | "replace" | "edit" => ToolKind::EditFile,
            "LS" | "list_dir" | "list_directory" => ToolKind::ListDir,
            "Glob" | "glob" | "find_files" => ToolKind::Glob,
            "Grep" | "grep" | "grep_files" | "search_files" | "grep_search" => ToolKind::Grep,
            "WebFetch" | "web_fetch" | "fetch" => ToolKind::WebFetch,
            "WebSearch" | "web_search" | "google_web_search" => ToolKind::WebSearch,
            "Task" | "Agent" | "agent" => ToolKind::Agent,
            _ => ToolKind::Other,
        }
    }
}

/// The fields in which file tools name their file, across harnesses. A call that carries two of them with
/// different values is ambiguous ([`shapes`]).
pub const FILE_PATH_FIELDS: [&str; 5] = ["file_path", "path", "filePath", "absolute_path", "notebook_path"];

/// A tool use with its kind worked out.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolUse {
    pub name: String,
    pub kind: ToolKind,
    pub args: Value,
    pub id: Option<String>,
    /// What the harness will execute, read from its tool's known argument shape.
    reading: Reading,
    /// The files the session wrote before this call (see [`crate::written`]), attached by the engine.
    written: Option<Arc<WrittenFiles>>,
    /// The shell command line parsed once, with the scripts it runs, shared by every rule that reads it.
    reach: OnceLock<Reach>,
}

/// What a command line runs: its commands and those of the written scripts it runs.
#[derive(Clone, Debug, Default, PartialEq)]
struct Reach {
    commands: Option<Result<Vec<SimpleCommand>, String>>,
    /// Why a script file it runs cannot be judged.
    script_opacity: Option<String>,
    /// The files the line (and the scripts it runs) write.
    writes: Vec<FileWrite>,
}

impl ToolUse {
    pub fn new(name: &str, args: Value, id: Option<String>) -> ToolUse {
        let kind = ToolKind::of(name);
        let reading = shapes::read(name, kind, &args);
        ToolUse { name: name.to_owned(), kind, args, id, reading, written: None, reach: OnceLock::new() }
    }

    /// This call as made after the session wrote `written`: a script file it runs is judged by what was
    /// written into it (see [`crate::written::scripts`]).
    pub fn with_written(self, written: Arc<WrittenFiles>) -> ToolUse {
        ToolUse { written: Some(written), reach: OnceLock::new(), ..self }
    }

    /// Why the arguments do not say one thing the harness will do (see [`shapes`]): fields the harness
    /// ignores but a parser might read, a wrong type, a shell tool of unknown shape. The engine denies such
    /// a call before any rule.
    pub fn ambiguity(&self) -> Option<&str> {
        match &self.reading {
            Reading::Ambiguous(why) => Some(why),
            _ => None,
        }
    }

    /// Every simple command the command line in the arguments would run (see [`crate::shell`]), parsed
    /// on first use. `None` when the tool has no command line and is not a shell; `Err` when the line
    /// cannot be tokenized, when the arguments are ambiguous, or when a shell tool's command cannot be
    /// found at all (so rules ask rather than pass a command they cannot see). Callers decide which tools
    /// they treat as shells. The commands of shell scripts the session wrote (content seen) and the line
    /// runs follow the line's own, their `wrappers` naming the script (`sh p.sh`).
    pub fn shell_commands(&self) -> Option<&Result<Vec<SimpleCommand>, String>> {
        self.reach().commands.as_ref()
    }

    /// Why a script file this command line runs cannot be judged: the session changed it in a way the
    /// gate did not see, or a script of another language it wrote holds hints of running programs (see
    /// [`crate::written::scripts`]). Rules that judge what commands do answer it like [`crate::opaque`].
    pub fn script_opacity(&self) -> Option<&str> {
        self.reach().script_opacity.as_deref()
    }

    /// The files this call writes: a file tool's (seen when it writes a whole file), a shell line's
    /// redirections and writing commands, and those of the written scripts it runs.
    pub fn writes(&self) -> Vec<FileWrite> {
        match self.kind {
            ToolKind::Shell => self.reach().writes.clone(),
            _ => record::file_tool_writes(self),
        }
    }

    fn reach(&self) -> &Reach {
        self.reach.get_or_init(|| {
            let line = match self.command_arg() {
                Ok(Some(line)) => line,
                Ok(None) if self.kind == ToolKind::Shell => {
                    let why =
                        format!("no command line found in the arguments of `{}`, so it cannot be checked", self.name);
                    return Reach { commands: Some(Err(why)), ..Reach::default() };
                }
                Ok(None) => return Reach::default(),
                Err(e) => return Reach { commands: Some(Err(e)), ..Reach::default() },
            };
            let mut cmds = match parse_commands(&line) {
                Ok(c) => c,
                Err(e) => {
                    let why = format!("the command could not be parsed ({e}), so it cannot be checked");
                    return Reach { commands: Some(Err(why)), ..Reach::default() };
                }
            };
            let none = WrittenFiles::default();
            let expansion = scripts::expand(&line, &cmds, self.written.as_deref().unwrap_or(&none));
            cmds.extend(expansion.commands);
            Reach { commands: Some(Ok(cmds)), script_opacity: expansion.opacity, writes: expansion.writes }
        })
    }

    /// The shell command line a shell tool runs: exactly the field its harness executes (`command` of
    /// Claude Code's `Bash` and of ours, `cmd` of Codex `exec_command`, the argv `command` of Codex
    /// `shell` with `["bash", "-lc", script]` unwrapped to the script). `None` for other tools and for
    /// ambiguous arguments.
    pub fn command(&self) -> Option<String> {
        match &self.reading {
            Reading::Command(line) => Some(line.clone()),
            _ => None,
        }
    }

    /// The command line for a rule that treats this tool as a shell: a shell tool's executed field; for
    /// another tool a rule names as a shell (an MCP tool), its one command-like field. `Err` when the
    /// arguments are ambiguous.
    fn command_arg(&self) -> Result<Option<String>, String> {
        match &self.reading {
            Reading::Command(line) => Ok(Some(line.clone())),
            Reading::Ambiguous(why) => Err(why.clone()),
            Reading::NoCommand => shapes::generic_command(&self.name, &self.args),
        }
    }

    /// The file paths a file tool touches: `file_path` (Claude Code, Gemini CLI), `path` (ours, Pi's),
    /// `filePath` (OpenCode), `absolute_path` (Gemini CLI), `notebook_path`, and the files named in an
    /// `apply_patch` patch (Codex).
    pub fn paths(&self) -> Vec<String> {
        let mut out: Vec<String> = FILE_PATH_FIELDS
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
        let mcp = self.kind == ToolKind::Mcp;
        pattern == self.name
            || (self.kind != ToolKind::Other && pattern == self.kind.as_str())
            || (pattern.contains('*') && glob_match(pattern, &self.name))
            // Claude Code's `mcp__github__push_files`, Codex's `github__push_files`: one tool, either spelling
            // in a rule.
            || (mcp && ToolKind::of(pattern) == ToolKind::Mcp && {
                let (p, n) = (mcp_canonical(pattern), mcp_canonical(&self.name));
                p == n || (pattern.contains('*') && glob_match(&p, &n))
            })
            || (mcp && ToolKind::of(pattern) == ToolKind::Other && self.name.ends_with(&format!("__{pattern}")))
    }
}

/// The name of `tool` of the MCP server `server` in every harness, rule, decision and audit row.
pub fn mcp_tool_name(server: &str, tool: &str) -> String {
    format!("mcp__{server}__{tool}")
}

/// The server and tool of a name made by [`mcp_tool_name`]; `None` for any other name.
pub fn split_mcp_tool_name(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix("mcp__")?.split_once("__")
}

/// An MCP tool's name in the form of every rule and audit row, `mcp__server__tool`: Codex's `server__tool`
/// gets the prefix; anything else is returned as it is.
pub fn mcp_canonical(name: &str) -> std::borrow::Cow<'_, str> {
    if name.starts_with("mcp__") || ToolKind::of(name) != ToolKind::Mcp {
        name.into()
    } else {
        format!("mcp__{name}").into()
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
        // Codex's spelling of the same tool, against rules in either spelling.
        let codex = ToolUse::new("github__create_issue", json!({}), None);
        for rule in ["mcp__github__create_issue", "github__create_issue", "mcp__github__*", "github__*", "create_issue"]
        {
            assert!(codex.matches(rule), "{rule}");
            assert!(t.matches(rule), "{rule}");
        }
        assert!(!codex.matches("mcp__gitlab__create_issue") && !codex.matches("mcp__github__delete_*"));
        assert_eq!(split_mcp_tool_name(&mcp_tool_name("github", "create_issue")), Some(("github", "create_issue")));
        assert_eq!(split_mcp_tool_name("github__create_issue"), None);
        assert!(t.matches("create_issue"));
        assert!(!t.matches("issue"));
        let b = ToolUse::new("Bash", json!({}), None);
        assert!(b.matches("shell") && b.matches("Bash") && !b.matches("bash"));
        assert!(glob_match("a*c?e", "abbbcde"));
        assert!(!glob_match("a*c", "abd"));
    }
}
