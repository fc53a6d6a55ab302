//! The custom harness's builtin tools. Each works inside the workspace only: paths are resolved against it
//! and refused when they lead outside (`..`, absolute paths elsewhere, symlinks out). The sandbox around
//! the runner is the real boundary; this keeps honest mistakes and prompt-injected paths from reaching it.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

/// Tool output kept for the model; the rest is cut with a note.
const MAX_OUTPUT: usize = 64 * 1024;
const SHELL_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_LISTED: usize = 1000;

pub const BUILTIN: [&str; 7] = ["shell", "read_file", "write_file", "edit_file", "list_dir", "glob", "grep"];

/// A tool's result: the text for the model and whether it failed.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolOutput {
    pub text: String,
    pub is_error: bool,
}

impl ToolOutput {
    fn ok(text: impl Into<String>) -> ToolOutput {
        ToolOutput { text: cap(text.into()), is_error: false }
    }
    fn err(text: impl Into<String>) -> ToolOutput {
        ToolOutput { text: cap(text.into()), is_error: true }
    }
}

fn cap(mut s: String) -> String {
    if s.len() > MAX_OUTPUT {
        let mut cut = MAX_OUTPUT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        let dropped = s.len() - cut;
        s.truncate(cut);
        s.push_str(&format!("\n[output cut: {dropped} more bytes]"));
    }
    s
}

/// JSON Schemas of the tools' arguments, for the model.
pub fn schema(name: &str) -> Option<(&'static str, Value)> {
    let s = |props: Value, required: &[&str]| json!({"type": "object", "properties": props, "required": required, "additionalProperties": false});
    Some(match name {
        "shell" => (
            "Run a shell command (sh -c) in the workspace. Returns stdout, stderr and the exit code.",
            s(json!({"command": {"type": "string"}}), &["command"]),
        ),
        "read_file" => ("Read a text file of the workspace.", s(json!({"path": {"type": "string"}}), &["path"])),
        "write_file" => (
            "Create or overwrite a file of the workspace (parent directories are created).",
            s(json!({"path": {"type": "string"}, "content": {"type": "string"}}), &["path", "content"]),
        ),
        "edit_file" => (
            "Replace `old_string` (which must occur exactly once, unless replace_all) with `new_string` in a file.",
            s(
                json!({"path": {"type": "string"}, "old_string": {"type": "string"}, "new_string": {"type": "string"},
                       "replace_all": {"type": "boolean"}}),
                &["path", "old_string", "new_string"],
            ),
        ),
        "list_dir" => ("List a directory of the workspace.", s(json!({"path": {"type": "string"}}), &[])),
        "glob" => (
            "Find workspace files by glob pattern (e.g. `src/**/*.rs`).",
            s(json!({"pattern": {"type": "string"}}), &["pattern"]),
        ),
        "grep" => (
            "Search workspace files for a regular expression; returns path:line: text.",
            s(
                json!({"pattern": {"type": "string"}, "path": {"type": "string"}, "glob": {"type": "string"}}),
                &["pattern"],
            ),
        ),
        _ => return None,
    })
}

/// Resolves `rel` inside `root`, refusing anything that leads out of it.
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    let joined = if p.is_absolute() { p.to_path_buf() } else { root.join(p) };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    if !out.starts_with(root) {
        return Err(format!("`{rel}` is outside the workspace"));
    }
    // No component below the root may be a symlink that leads out — including a dangling one, which a write
    // would follow to create its target.
    let mut at = root.to_path_buf();
    for c in out.strip_prefix(root).map_err(|_| format!("`{rel}` is outside the workspace"))?.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                let real = std::fs::canonicalize(&at)
                    .map_err(|_| format!("`{rel}` leads outside the workspace through a symlink"))?;
                if !real.starts_with(root) {
                    return Err(format!("`{rel}` leads outside the workspace through a symlink"));
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(out)
}

fn arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, String> {
    args.get(key).and_then(Value::as_str).ok_or_else(|| format!("argument `{key}` (a string) is required"))
}

/// Runs a builtin tool. `root` is the canonical workspace; `env` is set for the shell's commands on top of
/// the runner's own environment (the egress proxy and CA bundle).
pub async fn run(root: &Path, env: &BTreeMap<String, String>, name: &str, args: &Value) -> ToolOutput {
    let result = match name {
        "shell" => return shell(root, env, args).await,
        "read_file" => read_file(root, args),
        "write_file" => write_file(root, args),
        "edit_file" => edit_file(root, args),
        "list_dir" => list_dir(root, args),
        "glob" => glob(root, args),
        "grep" => grep(root, args),
        other => Err(format!("unknown tool `{other}`")),
    };
    match result {
        Ok(t) => ToolOutput::ok(t),
        Err(e) => ToolOutput::err(e),
    }
}

async fn shell(root: &Path, env: &BTreeMap<String, String>, args: &Value) -> ToolOutput {
    let command = match arg(args, "command") {
        Ok(c) => c,
        Err(e) => return ToolOutput::err(e),
    };
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env)
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(SHELL_TIMEOUT, child).await {
        Err(_) => ToolOutput::err(format!("the command ran past {}s and was killed", SHELL_TIMEOUT.as_secs())),
        Ok(Err(e)) => ToolOutput::err(format!("cannot run sh: {e}")),
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            let err = String::from_utf8_lossy(&out.stderr);
            if !err.is_empty() {
                text.push_str(if text.is_empty() { "" } else { "\n" });
                text.push_str("[stderr]\n");
                text.push_str(&err);
            }
            let code = out.status.code().map_or("killed by a signal".to_owned(), |c| format!("exit code {c}"));
            text.push_str(&format!("\n[{code}]"));
            ToolOutput { text: cap(text), is_error: !out.status.success() }
        }
    }
}

fn read_file(root: &Path, args: &Value) -> Result<String, String> {
    let rel = arg(args, "path")?;
    let p = resolve(root, rel)?;
    let bytes = std::fs::read(&p).map_err(|e| format!("cannot read `{rel}`: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("`{rel}` is not UTF-8 text"))
}

fn write_file(root: &Path, args: &Value) -> Result<String, String> {
    let rel = arg(args, "path")?;
    let content = arg(args, "content")?;
    let p = resolve(root, rel)?;
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create the directory of `{rel}`: {e}"))?;
    }
    std::fs::write(&p, content).map_err(|e| format!("cannot write `{rel}`: {e}"))?;
    Ok(format!("wrote {} bytes to {rel}", content.len()))
}

fn edit_file(root: &Path, args: &Value) -> Result<String, String> {
    let rel = arg(args, "path")?;
    let old = arg(args, "old_string")?;
    let new = arg(args, "new_string")?;
    let all = args.get("replace_all").and_then(Value::as_bool).unwrap_or(false);
    if old.is_empty() {
        return Err("`old_string` must not be empty".into());
    }
    let p = resolve(root, rel)?;
    let text = std::fs::read_to_string(&p).map_err(|e| format!("cannot read `{rel}`: {e}"))?;
    let count = text.matches(old).count();
    let updated = match (count, all) {
        (0, _) => return Err(format!("`old_string` does not occur in `{rel}`")),
        (1, _) | (_, true) => text.replace(old, new),
        (n, false) => {
            return Err(format!("`old_string` occurs {n} times in `{rel}`; give more context or set replace_all"));
        }
    };
    std::fs::write(&p, updated).map_err(|e| format!("cannot write `{rel}`: {e}"))?;
    Ok(format!("replaced {} occurrence(s) in {rel}", if all { count } else { 1 }))
}

fn list_dir(root: &Path, args: &Value) -> Result<String, String> {
    let rel = args.get("path").and_then(Value::as_str).unwrap_or(".");
    let p = resolve(root, rel)?;
    let mut names: Vec<String> = std::fs::read_dir(&p)
        .map_err(|e| format!("cannot list `{rel}`: {e}"))?
        .filter_map(|e| e.ok())
        .map(|e| {
            let dir = e.file_type().is_ok_and(|t| t.is_dir());
            format!("{}{}", e.file_name().to_string_lossy(), if dir { "/" } else { "" })
        })
        .collect();
    names.sort();
    names.truncate(MAX_LISTED);
    Ok(names.join("\n"))
}

/// Every regular file under the workspace (relative paths), skipping `.git`; symlinks are not followed.
fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let path = e.path();
            if t.is_dir() && e.file_name() != ".git" {
                stack.push(path);
            } else if t.is_file()
                && let Ok(rel) = path.strip_prefix(root)
            {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn glob(root: &Path, args: &Value) -> Result<String, String> {
    let pattern = arg(args, "pattern")?;
    let m = globset::Glob::new(pattern).map_err(|e| format!("bad pattern: {e}"))?.compile_matcher();
    let mut hits: Vec<String> = walk(root).into_iter().filter(|p| m.is_match(p)).collect();
    hits.truncate(MAX_LISTED);
    Ok(if hits.is_empty() { "no files match".into() } else { hits.join("\n") })
}

fn grep(root: &Path, args: &Value) -> Result<String, String> {
    let re = regex::Regex::new(arg(args, "pattern")?).map_err(|e| format!("bad regular expression: {e}"))?;
    let base = args.get("path").and_then(Value::as_str).unwrap_or(".");
    let base = resolve(root, base)?;
    let filter = match args.get("glob").and_then(Value::as_str) {
        Some(g) => Some(globset::Glob::new(g).map_err(|e| format!("bad glob: {e}"))?.compile_matcher()),
        None => None,
    };
    let mut out = Vec::new();
    for rel in walk(root) {
        let full = root.join(&rel);
        if !full.starts_with(&base) || filter.as_ref().is_some_and(|f| !f.is_match(&rel)) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&full) else { continue };
        for (i, line) in text.lines().enumerate() {
            if re.is_match(line) {
                out.push(format!("{rel}:{}: {line}", i + 1));
                if out.len() >= MAX_LISTED {
                    return Ok(out.join("\n"));
                }
            }
        }
    }
    Ok(if out.is_empty() { "no matches".into() } else { out.join("\n") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tools_work_inside_the_workspace_and_refuse_to_leave_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let w =
            run(&root, &BTreeMap::new(), "write_file", &json!({"path": "src/a.txt", "content": "one\ntwo\n"})).await;
        assert!(!w.is_error, "{w:?}");
        assert_eq!(run(&root, &BTreeMap::new(), "read_file", &json!({"path": "src/a.txt"})).await.text, "one\ntwo\n");
        let e = run(
            &root,
            &BTreeMap::new(),
            "edit_file",
            &json!({"path": "src/a.txt", "old_string": "two", "new_string": "2"}),
        )
        .await;
        assert!(!e.is_error, "{e:?}");
        assert_eq!(std::fs::read_to_string(root.join("src/a.txt")).unwrap(), "one\n2\n");
        assert_eq!(run(&root, &BTreeMap::new(), "glob", &json!({"pattern": "**/*.txt"})).await.text, "src/a.txt");
        assert_eq!(run(&root, &BTreeMap::new(), "grep", &json!({"pattern": "^2$"})).await.text, "src/a.txt:2: 2");
        assert_eq!(run(&root, &BTreeMap::new(), "list_dir", &json!({})).await.text, "src/");
        let sh = run(&root, &BTreeMap::new(), "shell", &json!({"command": "echo hi && exit 3"})).await;
        let env = BTreeMap::from([("HTTPS_PROXY".to_owned(), "http://paddock:t@127.0.0.1:1".to_owned())]);
        let proxied = run(&root, &env, "shell", &json!({"command": "echo \"$HTTPS_PROXY\""})).await;
        assert!(
            proxied.text.starts_with("http://paddock:t@127.0.0.1:1\n"),
            "the shell's commands get the proxy: {proxied:?}"
        );
        assert!(sh.is_error && sh.text.contains("hi") && sh.text.contains("exit code 3"), "{sh:?}");
        for bad in ["../x", "/etc/passwd", "src/../../x"] {
            let r = run(&root, &BTreeMap::new(), "read_file", &json!({"path": bad})).await;
            assert!(r.is_error && r.text.contains("outside the workspace"), "{bad}: {r:?}");
        }
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        std::os::unix::fs::symlink(root.join("../escaped-by-dangling-link"), root.join("dangling")).unwrap();
        let w = run(&root, &BTreeMap::new(), "write_file", &json!({"path": "dangling", "content": "x"})).await;
        assert!(w.is_error && w.text.contains("symlink"), "{w:?}");
        assert!(!root.parent().unwrap().join("escaped-by-dangling-link").exists());
        let r = run(&root, &BTreeMap::new(), "read_file", &json!({"path": "out/passwd"})).await;
        assert!(r.is_error && r.text.contains("symlink"), "{r:?}");
        let r = run(
            &root,
            &BTreeMap::new(),
            "edit_file",
            &json!({"path": "src/a.txt", "old_string": "nope", "new_string": "x"}),
        )
        .await;
        assert!(r.is_error && r.text.contains("does not occur"));
        let r = run(&root, &BTreeMap::new(), "write_file", &json!({"path": "x"})).await;
        assert!(r.is_error && r.text.contains("`content`"));
    }
}
