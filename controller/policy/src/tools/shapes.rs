//! Tool argument shapes: what each harness's tools will execute, read from exactly the field the harness
//! runs. Codex's argument structs ignore keys they do not know, so `exec_command {"command": "echo hi",
//! "cmd": "git push -f"}` runs `cmd`; a gate that read "the first command-like field" would judge the
//! harmless one. Here every shell tool has a known shape: one executed field of one type, plus the other
//! keys its harness accepts that no one runs. A call that carries anything else, or whose executed field has
//! the wrong type, or that names a shell tool whose shape Paddock does not know, is ambiguous; the engine
//! denies it before any rule runs (see [`crate::engine::evaluate`]).
//!
//! Shapes, from the harnesses Paddock drives (Codex as pinned in `.ci/install-clis.sh`, Claude Code's
//! `sdk-tools.d.ts`, the custom harness's `runner/src/harness/custom/tools.rs`):
//! - Codex `exec_command`: runs `cmd` (a string) with `shell` (default: the user's shell);
//!   `write_stdin`: writes `chars` to a running command; `shell`, `container.exec`: run the argv `command`;
//!   `shell_command`: runs the string `command`; `local_shell` (a `local_shell_call` item): runs the argv
//!   `command` of its action (the arguments, or `{action: …}`), with `env`.
//! - Claude Code `Bash`: runs `command`; `Monitor`: runs `command` when it has one. Anthropic's `bash` tool:
//!   runs `command`.
//! - Paddock's custom harness `shell`: runs the string `command` (the same field as Codex's `shell`, so the
//!   union of the two shapes is unambiguous: the type says which harness it is).

use serde_json::{Map, Value};

use super::ToolKind;
use crate::shell::program_name;

/// What a tool use's arguments make its harness do, as far as a gate must know.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    /// A shell tool of a known shape, and the command line it runs (empty when it runs nothing, such as a
    /// `write_stdin` that only polls).
    Command(String),
    /// Not a shell tool, and nothing in its arguments is ambiguous.
    NoCommand,
    /// The arguments do not say one thing; the reason names the tool and the fields.
    Ambiguous(String),
}

/// How a shape's executed field is read.
#[derive(Clone, Copy)]
enum Executed {
    /// A string run by a POSIX shell; `required` when the harness refuses a call without it.
    Script { field: &'static str, required: bool },
    /// A string or an argv array (Codex's `shell` takes argv, ours a string).
    ScriptOrArgv(&'static str),
    /// An argv array.
    Argv(&'static str),
    /// Codex `exec_command`: `cmd` run by the shell named in `shell`.
    CodexExec,
    /// Codex `local_shell`: `{type: "exec", command: argv, env}`.
    LocalShellAction,
}

struct Shape {
    names: &'static [&'static str],
    executed: Executed,
    /// The other keys the harness accepts; none of them is run.
    other: &'static [&'static str],
}

const CODEX_SHELL_OTHER: &[&str] = &[
    "workdir",
    "timeout_ms",
    "timeout",
    "sandbox_permissions",
    "prefix_rule",
    "additional_permissions",
    "justification",
    "with_escalated_permissions",
];

const SHAPES: &[Shape] = &[
    Shape {
        names: &["exec_command"],
        executed: Executed::CodexExec,
        other: &[
            "workdir",
            "shell",
            "login",
            "tty",
            "yield_time_ms",
            "max_output_tokens",
            "timeout_ms",
            "sandbox_permissions",
            "additional_permissions",
            "justification",
            "prefix_rule",
            "environment_id",
        ],
    },
    Shape {
        names: &["write_stdin"],
        executed: Executed::Script { field: "chars", required: false },
        other: &["session_id", "yield_time_ms", "max_output_tokens"],
    },
    // Codex's argv `shell` and the custom harness's string `shell`.
    Shape { names: &["shell"], executed: Executed::ScriptOrArgv("command"), other: CODEX_SHELL_OTHER },
    Shape { names: &["container.exec"], executed: Executed::Argv("command"), other: CODEX_SHELL_OTHER },
    Shape {
        names: &["shell_command"],
        executed: Executed::Script { field: "command", required: true },
        other: &[
            "workdir",
            "login",
            "timeout_ms",
            "timeout",
            "sandbox_permissions",
            "prefix_rule",
            "additional_permissions",
            "justification",
        ],
    },
    Shape {
        names: &["local_shell"],
        executed: Executed::LocalShellAction,
        other: &["type", "timeout_ms", "working_directory", "env", "user"],
    },
    Shape {
        names: &["Bash"],
        executed: Executed::Script { field: "command", required: true },
        other: &["timeout", "description", "run_in_background", "dangerouslyDisableSandbox"],
    },
    Shape {
        names: &["Monitor"],
        executed: Executed::Script { field: "command", required: false },
        other: &["description", "timeout_ms", "ws"],
    },
    // Anthropic's `bash` tool (`{command}`, or `{restart: true}`), Pi's (`{command, timeout}`) and
    // OpenCode's (`{command, timeout, workdir, description}`).
    Shape {
        names: &["bash"],
        executed: Executed::Script { field: "command", required: false },
        other: &["restart", "timeout", "workdir", "description"],
    },
    // Gemini CLI's, which runs `bash -c <command>`.
    Shape {
        names: &["run_shell_command"],
        executed: Executed::Script { field: "command", required: true },
        other: &["description", "dir_path", "is_background", "delay_ms"],
    },
];

/// Keys that some parser reads as a command line; in a call of unknown shape more than one of them is
/// ambiguous.
const COMMAND_LIKE: &[&str] = &["command", "cmd", "chars", "input", "script", "argv", "args", "code"];

/// What `name` (of kind `kind`) will execute with `args`.
pub fn read(name: &str, kind: ToolKind, args: &Value) -> Reading {
    match kind {
        ToolKind::Shell => read_shell(name, args),
        _ => file_paths_agree(name, args).map_or(Reading::NoCommand, Reading::Ambiguous),
    }
}

fn read_shell(name: &str, args: &Value) -> Reading {
    let Some(shape) = SHAPES.iter().find(|s| s.names.contains(&name)) else {
        return Reading::Ambiguous(format!(
            "`{name}` is a shell tool whose argument shape Paddock does not know, so what it would run cannot \
             be decided"
        ));
    };
    let Some(mut obj) = args.as_object() else {
        return Reading::Ambiguous(format!("the arguments of `{name}` are not a JSON object"));
    };
    // A `local_shell_call`'s action, given as the arguments themselves (the gateway) or wrapped in `action`.
    if let Executed::LocalShellAction = shape.executed
        && obj.len() == 1
        && let Some(action) = obj.get("action")
    {
        let Some(inner) = action.as_object() else {
            return Reading::Ambiguous(format!("the `action` of `{name}` is not a JSON object"));
        };
        obj = inner;
    }
    let executed_field = match shape.executed {
        Executed::Script { field, .. } | Executed::ScriptOrArgv(field) | Executed::Argv(field) => field,
        Executed::CodexExec => "cmd",
        Executed::LocalShellAction => "command",
    };
    let unknown: Vec<&str> =
        obj.keys().map(String::as_str).filter(|k| *k != executed_field && !shape.other.contains(k)).collect();
    if !unknown.is_empty() {
        let looks_run = unknown.iter().any(|k| COMMAND_LIKE.contains(k));
        return Reading::Ambiguous(format!(
            "`{name}` runs `{executed_field}`, but its arguments also carry {}, which it {}; the call is \
             ambiguous",
            unknown.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
            if looks_run {
                "would ignore while a parser might read it as the command"
            } else {
                "does not take (a shape Paddock does not know)"
            }
        ));
    }
    let wrong_type = |what: &str| {
        Reading::Ambiguous(format!("`{name}` runs `{executed_field}`, which must be {what}; the call is ambiguous"))
    };
    match shape.executed {
        Executed::Script { field, required } => match obj.get(field) {
            Some(Value::String(s)) => Reading::Command(s.clone()),
            None | Some(Value::Null) if !required => Reading::Command(String::new()),
            None => Reading::Ambiguous(format!("`{name}` without `{field}`: what it would run cannot be decided")),
            Some(_) => wrong_type("a string"),
        },
        Executed::ScriptOrArgv(field) => match obj.get(field) {
            Some(Value::String(s)) => Reading::Command(s.clone()),
            Some(Value::Array(a)) => argv_of(a).map_or_else(
                || wrong_type("a string or an array of strings"),
                |argv| Reading::Command(argv_line(&argv)),
            ),
            _ => wrong_type("a string or an array of strings"),
        },
        Executed::Argv(field) => match obj.get(field) {
            Some(Value::Array(a)) => {
                argv_of(a).map_or_else(|| wrong_type("an array of strings"), |argv| Reading::Command(argv_line(&argv)))
            }
            _ => wrong_type("an array of strings"),
        },
        Executed::CodexExec => codex_exec(name, obj),
        Executed::LocalShellAction => local_shell(name, obj),
    }
}

/// Codex `exec_command`: `cmd` runs under `shell -lc`/`-c`; a POSIX shell at a system path runs it as the
/// line itself, another known shell (PowerShell, cmd) as that shell's `-c` so rules see which program
/// interprets it; any other program is ambiguous.
fn codex_exec(name: &str, obj: &Map<String, Value>) -> Reading {
    let cmd = match obj.get("cmd") {
        Some(Value::String(s)) => s.clone(),
        None => return Reading::Ambiguous(format!("`{name}` without `cmd`: what it would run cannot be decided")),
        Some(_) => {
            return Reading::Ambiguous(format!("`{name}` runs `cmd`, which must be a string; the call is ambiguous"));
        }
    };
    match obj.get("shell") {
        None | Some(Value::Null) => Reading::Command(cmd),
        Some(Value::String(sh)) if is_posix_shell(sh) => Reading::Command(cmd),
        Some(Value::String(sh)) if is_other_shell(sh) => {
            Reading::Command(format!("{} -c {}", shell_quote(sh), shell_quote(&cmd)))
        }
        Some(Value::String(sh)) => Reading::Ambiguous(format!(
            "`{name}` would run `cmd` with the program `{sh}` named in `shell`, which Paddock does not know as a \
             shell; the call is ambiguous"
        )),
        Some(_) => Reading::Ambiguous(format!("`{name}`: `shell` must be a string; the call is ambiguous")),
    }
}

/// Codex `local_shell`: `{type: "exec", command: [argv], env: {...}}`. The environment is shown as `export`s
/// in front of the command, so that rules see variables such as `GIT_DIR` that change what it does.
fn local_shell(name: &str, obj: &Map<String, Value>) -> Reading {
    if obj.get("type").is_some_and(|t| t != "exec") {
        return Reading::Ambiguous(format!("`{name}`: an action of type {} is not one Paddock knows", obj["type"]));
    }
    let Some(argv) = obj.get("command").and_then(Value::as_array).and_then(|a| argv_of(a)) else {
        return Reading::Ambiguous(format!("`{name}` runs `command`, which must be an array of strings"));
    };
    let mut line = String::new();
    match obj.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(env)) => {
            for (k, v) in env {
                let Some(v) = v.as_str() else {
                    return Reading::Ambiguous(format!("`{name}`: the value of `env.{k}` is not a string"));
                };
                line.push_str(&format!("export {}; ", shell_quote(&format!("{k}={v}"))));
            }
        }
        Some(_) => return Reading::Ambiguous(format!("`{name}`: `env` must be an object of strings")),
    }
    line.push_str(&argv_line(&argv));
    Reading::Command(line)
}

fn argv_of(a: &[Value]) -> Option<Vec<String>> {
    let argv: Option<Vec<String>> = a.iter().map(|w| w.as_str().map(str::to_owned)).collect();
    argv.filter(|v| !v.is_empty())
}

/// The command line an argv runs. `[bash, -lc, script]` (a POSIX shell at a system path, options that only
/// set login/interactive/errexit/xtrace modes, exactly one `-c`, then exactly the script) is the script
/// itself; anything else (`[bash, -c, script, extra]`, `[bash, script.sh]`, `[pwsh, -c, …]`) is the argv
/// quoted and joined, so the shell parser sees the program that runs it.
pub fn argv_line(argv: &[String]) -> String {
    if let [sh, flags @ .., script] = argv
        && is_posix_shell(sh)
        && runs_script_flags(flags)
    {
        return script.clone();
    }
    argv.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ")
}

/// `-c`, `-lc`, `-ic`, `-cl`, `--login -c`, …: options without values, with exactly one `c`.
fn runs_script_flags(flags: &[String]) -> bool {
    let mut cs = 0;
    for f in flags {
        match f.as_str() {
            "--login" | "--noprofile" | "--norc" => {}
            f if f.len() > 1 && f.starts_with('-') && !f.starts_with("--") => {
                for c in f[1..].chars() {
                    match c {
                        'c' => cs += 1,
                        'l' | 'i' | 'e' | 'x' | 'u' => {}
                        _ => return false,
                    }
                }
            }
            _ => return false,
        }
    }
    cs == 1
}

/// A POSIX shell Codex or a harness may name: a bare name (found on the harness's own `PATH`) or one in
/// `/bin` or `/usr/bin`, `.exe` allowed. A shell anywhere else may be a file the agent wrote.
pub fn is_posix_shell(s: &str) -> bool {
    let dir_ok = match s.rsplit_once('/') {
        None => true,
        Some((dir, _)) => matches!(dir, "/bin" | "/usr/bin"),
    };
    dir_ok && matches!(program_name(s), "bash" | "sh" | "zsh" | "dash")
}

/// Shells whose scripts the POSIX parser cannot read; shown as `<shell> -c <script>` so that rules see an
/// interpreter they cannot see through.
fn is_other_shell(s: &str) -> bool {
    !s.contains('/') && matches!(program_name(s).to_ascii_lowercase().as_str(), "pwsh" | "powershell" | "cmd")
}

pub fn shell_quote(w: &str) -> String {
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c)) {
        w.to_owned()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// A file tool whose path fields disagree (`file_path` and `path` both present with different values), or
/// an `apply_patch` with both `input` and `patch`: the harness reads one, a rule might read the other.
fn file_paths_agree(name: &str, args: &Value) -> Option<String> {
    let conflict = |keys: &[&str]| {
        let present: Vec<(&str, &Value)> = keys.iter().filter_map(|k| args.get(*k).map(|v| (*k, v))).collect();
        let differ = present.windows(2).any(|w| w[0].1 != w[1].1);
        differ.then(|| {
            format!(
                "`{name}` carries {} with different values; which one the harness uses cannot be decided, so the \
                 call is ambiguous",
                present.iter().map(|(k, _)| format!("`{k}`")).collect::<Vec<_>>().join(" and ")
            )
        })
    };
    conflict(&super::FILE_PATH_FIELDS)
        .or_else(|| if name == "apply_patch" { conflict(&["input", "patch"]) } else { None })
}

/// The command line of a tool a rule names as a shell (an MCP tool in `shell_tools`) whose shape Paddock
/// does not know: the one command-like field it carries. Two of them are ambiguous.
pub fn generic_command(name: &str, args: &Value) -> Result<Option<String>, String> {
    let present: Vec<(&str, &Value)> =
        COMMAND_LIKE.iter().filter_map(|k| args.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v))).collect();
    match present.as_slice() {
        [] => Ok(None),
        [(_, Value::String(s))] => Ok(Some(s.clone())),
        [(field, Value::Array(a))] => {
            argv_of(a).map(|argv| Some(argv_line(&argv))).ok_or_else(|| format!("`{name}`: `{field}` is not an argv"))
        }
        [(field, _)] => Err(format!("`{name}`: `{field}` is neither a command line nor an argv")),
        many => Err(format!(
            "`{name}` carries {}; which one runs cannot be decided, so the call is ambiguous",
            many.iter().map(|(k, _)| format!("`{k}`")).collect::<Vec<_>>().join(" and ")
        )),
    }
}
