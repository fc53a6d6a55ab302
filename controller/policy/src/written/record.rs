//! Which files a tool use writes, and whether the gate sees what it writes into them.

use serde_json::Value;

use super::{FileWrite, Written};
use crate::builtins::github::git_dir::redirect_targets;
use crate::shell::{SimpleCommand, program_name};
use crate::tools::{ToolKind, ToolUse};

/// The writes of a file tool: a whole file with its content (`Write`, `write_file`, an `apply_patch`
/// `*** Add File:`) is `Seen`; an edit, a patch's update, move or delete is `Unseen`.
pub fn file_tool_writes(t: &ToolUse) -> Vec<FileWrite> {
    let unseen = |path: &str, how: String| FileWrite::File { path: path.to_owned(), file: Written::Unseen(how) };
    match t.kind {
        ToolKind::WriteFile => {
            let content = t.args.get("content").and_then(Value::as_str);
            t.paths()
                .iter()
                .map(|p| match content {
                    Some(c) => FileWrite::File { path: p.clone(), file: Written::Seen(c.to_owned()) },
                    None => unseen(p, format!("`{}` wrote it with content the gate could not read", t.name)),
                })
                .collect()
        }
        ToolKind::EditFile if t.name == "apply_patch" => {
            let patch = t.args.get("input").or_else(|| t.args.get("patch")).and_then(Value::as_str).unwrap_or("");
            patch_writes(patch)
        }
        ToolKind::EditFile => {
            t.paths().iter().map(|p| unseen(p, format!("`{}` edited it; the result was not seen", t.name))).collect()
        }
        // Another harness's or an MCP server's file tool (`mcp__fs__write_file`): what it writes is not seen.
        ToolKind::Mcp | ToolKind::Other if names_a_write(&t.name) => {
            let mut paths = t.paths();
            for k in ["destination", "dest", "target", "to", "output", "filename"] {
                paths.extend(t.args.get(k).and_then(Value::as_str).map(str::to_owned));
            }
            paths.iter().map(|p| unseen(p, format!("`{}` may have written it", t.name))).collect()
        }
        _ => Vec::new(),
    }
}

/// A tool name that says it writes files.
fn names_a_write(name: &str) -> bool {
    const WORDS: &[&str] =
        &["write", "edit", "create", "move", "copy", "rename", "patch", "save", "put", "upload", "replace", "append"];
    let lower = name.to_ascii_lowercase();
    WORDS.iter().any(|w| lower.contains(w))
}

/// Codex's patch format: `*** Add File: p` followed by its `+` lines is a whole file the gate sees;
/// `Update File`, `Move to` and `Delete File` change files in ways it does not.
pub fn patch_writes(patch: &str) -> Vec<FileWrite> {
    let mut out = Vec::new();
    let mut adding: Option<(String, String)> = None;
    let flush = |adding: &mut Option<(String, String)>, out: &mut Vec<FileWrite>| {
        if let Some((path, content)) = adding.take() {
            out.push(FileWrite::File { path, file: Written::Seen(content) });
        }
    };
    for line in patch.lines() {
        if line.starts_with("*** ") {
            flush(&mut adding, &mut out);
            if let Some(p) = line.strip_prefix("*** Add File: ") {
                adding = Some((p.trim().to_owned(), String::new()));
            }
            for (prefix, how) in [
                ("*** Update File: ", "updated by `apply_patch`"),
                ("*** Move to: ", "moved there by `apply_patch`"),
                ("*** Delete File: ", "deleted by `apply_patch`"),
            ] {
                if let Some(p) = line.strip_prefix(prefix) {
                    out.push(FileWrite::File { path: p.trim().to_owned(), file: Written::Unseen(how.into()) });
                }
            }
            continue;
        }
        if let Some((path, content)) = &mut adding {
            match line.strip_prefix('+') {
                Some(l) => {
                    content.push_str(l);
                    content.push('\n');
                }
                // Not the format the gate knows: it cannot tell what the file holds.
                None => {
                    out.push(FileWrite::File {
                        path: path.clone(),
                        file: Written::Unseen("added by `apply_patch` in a form the gate does not read".into()),
                    });
                    adding = None;
                }
            }
        }
    }
    flush(&mut adding, &mut out);
    out
}

/// The writes of a shell command line: its output redirections (read from the raw text, see
/// [`redirect_targets`]) and the files its commands write. None of their content is seen.
pub fn shell_writes(text: &str, cmds: &[SimpleCommand]) -> Vec<FileWrite> {
    let mut out = Vec::new();
    for target in redirect_targets(text) {
        unseen(&mut out, &target, format!("`> {target}` on a command line"));
    }
    for c in cmds {
        command_writes(c, &mut out);
    }
    out
}

fn unseen(out: &mut Vec<FileWrite>, path: &str, how: String) {
    // Devices are not files a script can be read from later.
    if path.starts_with("/dev/") || path == "-" || path.is_empty() {
        return;
    }
    out.push(FileWrite::File { path: path.to_owned(), file: Written::Unseen(how) });
}

/// The files one command writes: `tee`, `cp`/`mv`/`install`/`ln`/`rsync` destinations, `sed -i`/`perl -i`,
/// `curl -o`/`wget -O`, `dd of=`; archives and patches write files it does not name.
fn command_writes(c: &SimpleCommand, out: &mut Vec<FileWrite>) {
    let Some(argv0) = c.argv.first() else { return };
    let prog = program_name(argv0).to_ascii_lowercase();
    let args = &c.argv[1..];
    let shown = {
        let s = c.argv.join(" ");
        if s.chars().count() > 80 { s.chars().take(79).collect::<String>() + "…" } else { s }
    };
    let how = format!("`{shown}`");
    let operands = || args.iter().filter(|a| !a.starts_with('-') || a.as_str() == "-");
    let has = |f: &str| args.iter().any(|a| a == f);
    match prog.as_str() {
        "tee" => operands().for_each(|p| unseen(out, p, how.clone())),
        "cp" | "mv" | "install" | "ln" | "rsync" | "link" | "ditto" | "scp" => {
            let mut target = None;
            let mut ops: Vec<&String> = Vec::new();
            let mut it = args.iter();
            while let Some(a) = it.next() {
                if a == "-t" || a == "--target-directory" {
                    target = it.next().cloned();
                } else if let Some(t) = a.strip_prefix("--target-directory=") {
                    target = Some(t.to_owned());
                } else if prog == "install"
                    && matches!(a.as_str(), "-m" | "--mode" | "-o" | "--owner" | "-g" | "--group" | "-S" | "--suffix")
                {
                    it.next();
                } else if !a.starts_with('-') {
                    ops.push(a);
                }
            }
            let (sources, dest): (Vec<&String>, Option<String>) = match target {
                Some(t) => (ops, Some(t)),
                None if ops.len() >= 2 => (ops[..ops.len() - 1].to_vec(), ops.last().map(|s| s.to_string())),
                None => (Vec::new(), None),
            };
            if let Some(dest) = dest {
                // The destination is a file, or a directory that receives the sources by their names.
                unseen(out, &dest, how.clone());
                for s in sources {
                    let into = format!("{}/{}", dest.trim_end_matches('/'), super::file_name(s));
                    unseen(out, &into, how.clone());
                }
            }
        }
        "sed" | "gsed" if args.iter().any(|a| a.starts_with("-i") || a.starts_with("--in-place")) => {
            operands().for_each(|p| unseen(out, p, how.clone()))
        }
        "perl" if args.iter().any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('i')) => {
            operands().for_each(|p| unseen(out, p, how.clone()))
        }
        "curl" => {
            let mut it = args.iter();
            while let Some(a) = it.next() {
                if a == "-o" || a == "--output" {
                    if let Some(p) = it.next() {
                        unseen(out, p, how.clone());
                    }
                } else if let Some(p) = a.strip_prefix("--output=") {
                    unseen(out, p, how.clone());
                } else if a == "--remote-name" || a == "--remote-name-all" {
                    out.push(FileWrite::Unknown(how.clone()));
                } else if let Some(flags) = a.strip_prefix('-').filter(|f| !f.starts_with('-')) {
                    // A bundle of short options (`-sSLo FILE`, `-oFILE`, `-sLO`).
                    if let Some(k) = flags.find('o') {
                        match &flags[k + 1..] {
                            "" => it.next().into_iter().for_each(|p| unseen(out, p, how.clone())),
                            p => unseen(out, p, how.clone()),
                        }
                    } else if flags.contains(['O', 'J']) {
                        out.push(FileWrite::Unknown(how.clone()));
                    }
                }
            }
        }
        "wget" => {
            let named = args.iter().enumerate().find_map(|(k, a)| {
                if a == "-O" || a == "--output-document" {
                    args.get(k + 1).cloned()
                } else {
                    a.strip_prefix("--output-document=").or_else(|| a.strip_prefix("-O")).map(str::to_owned)
                }
            });
            match named {
                Some(p) => unseen(out, &p, how.clone()),
                None => out.push(FileWrite::Unknown(how.clone())),
            }
        }
        "dd" => args.iter().filter_map(|a| a.strip_prefix("of=")).for_each(|p| unseen(out, p, how.clone())),
        "tar" | "bsdtar" | "gtar"
            if has("-x")
                || has("--extract")
                || has("--get")
                || args.first().is_some_and(|a| !a.starts_with("--") && a.trim_start_matches('-').contains('x')) =>
        {
            out.push(FileWrite::Unknown(how))
        }
        "unzip" | "cpio" | "7z" | "7za" | "unrar" | "patch" | "apply_patch" | "gunzip" | "bunzip2" | "unxz" => {
            out.push(FileWrite::Unknown(how))
        }
        "git" if args.iter().any(|a| a == "apply" || a == "am") => out.push(FileWrite::Unknown(how)),
        _ if is_code_runner(&prog) && inline_code(args).any(code_writes_files) => out.push(FileWrite::Unknown(how)),
        _ => {}
    }
}

/// Interpreters whose inline code (`-c`, `-e`) may write files under names the gate does not read.
fn is_code_runner(prog: &str) -> bool {
    prog.starts_with("python")
        || prog.starts_with("pypy")
        || matches!(
            prog,
            "node" | "nodejs" | "bun" | "deno" | "perl" | "ruby" | "php" | "lua" | "luajit" | "rscript" | "julia"
        )
}

/// The inline code among an interpreter's arguments: each argument after an option that ends in `c`, `e`,
/// `E` or `r` (`-c`, `-e`, `-pe`, `--eval`, `php -r`), and what follows `deno eval`.
fn inline_code(args: &[String]) -> impl Iterator<Item = &str> {
    args.windows(2)
        .filter(|w| {
            let o = w[0].as_str();
            o == "eval"
                || o == "--eval"
                || (o.starts_with('-') && !o.starts_with("--") && o.ends_with(['c', 'e', 'E', 'r']))
        })
        .map(|w| w[1].as_str())
}

/// A cheap hint that code writes files (`open(`, `writeFileSync`, `write_text`, `File.write`,
/// `file_put_contents`, `shutil`…): a hint, not a parser, like [`crate::opaque`]'s hints for inline code.
pub(super) fn code_writes_files(code: &str) -> bool {
    const HINTS: &[&str] = &[
        "open(",
        "open ",
        "writefile",
        "write_text",
        "write_bytes",
        "fs.write",
        "createwritestream",
        "shutil",
        "os.rename",
        "os.replace",
        "symlink",
        "file_put_contents",
        "fopen",
        "copyfile",
        "file.write",
        "file.open",
        "deno.write",
        "bun.write",
        "tofile",
    ];
    let lower = code.to_ascii_lowercase();
    HINTS.iter().any(|h| lower.contains(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::parse_commands;

    fn paths(line: &str) -> Vec<String> {
        let cmds = parse_commands(line).expect("parses");
        shell_writes(line, &cmds)
            .into_iter()
            .map(|w| match w {
                FileWrite::File { path, .. } => path,
                FileWrite::Unknown(_) => "?".into(),
            })
            .collect()
    }

    #[test]
    fn shell_lines_write_these_files() {
        assert_eq!(paths("echo 'git push -f' > p.sh"), ["p.sh"]);
        assert_eq!(paths("echo x >> p.sh 2>/dev/null"), ["p.sh"]);
        assert_eq!(paths("echo x | tee -a a.sh b.sh"), ["a.sh", "b.sh"]);
        assert_eq!(paths("cp /tmp/x.sh p.sh"), ["p.sh", "p.sh/x.sh"]);
        assert_eq!(paths("mv -t bin x.sh"), ["bin", "bin/x.sh"]);
        assert_eq!(paths("sed -i s/a/b/ p.sh"), ["s/a/b/", "p.sh"]);
        assert_eq!(paths("curl -sSL -o p.sh https://x"), ["p.sh"]);
        assert_eq!(paths("curl -sSLo p.sh https://x"), ["p.sh"]);
        assert_eq!(paths("curl -op.sh https://x"), ["p.sh"]);
        assert_eq!(paths("curl -sLO https://x/p.sh"), ["?"]);
        assert_eq!(paths("wget -O p.sh https://x"), ["p.sh"]);
        assert_eq!(paths("dd if=/tmp/a of=p.sh"), ["p.sh"]);
        for line in ["tar xzf a.tgz", "tar -xf a.tar", "unzip a.zip", "git apply x.diff", "wget https://x/p.sh"] {
            assert_eq!(paths(line), ["?"], "{line}");
        }
        assert!(paths("cargo test && ls -la 2>&1").is_empty());
        assert_eq!(paths("python3 -c \"open('p.sh', 'w').write('x')\""), ["?"]);
        assert_eq!(paths("node -e \"require('fs').writeFileSync('p.sh', 'x')\""), ["?"]);
        assert!(paths("python3 -c 'print(1)' && python3 gen.py openapi.json").is_empty());
    }

    #[test]
    fn other_file_tools_write_unseen() {
        let t = ToolUse::new("mcp__fs__write_file", serde_json::json!({"path": "p.sh", "content": "x"}), None);
        assert!(
            matches!(&file_tool_writes(&t)[..], [FileWrite::File { path, file: Written::Unseen(_) }] if path == "p.sh")
        );
        let t = ToolUse::new("mcp__fs__move_file", serde_json::json!({"source": "a", "destination": "b.sh"}), None);
        assert_eq!(file_tool_writes(&t).len(), 1);
        let t = ToolUse::new("mcp__fs__read_file", serde_json::json!({"path": "p.sh"}), None);
        assert!(file_tool_writes(&t).is_empty());
    }

    #[test]
    fn patches_show_added_files() {
        let patch = "*** Begin Patch\n*** Add File: x.sh\n+cargo test\n+echo ok\n*** Update File: y.sh\n@@\n-a\n+b\n*** End Patch";
        assert_eq!(
            patch_writes(patch),
            vec![
                FileWrite::File { path: "x.sh".into(), file: Written::Seen("cargo test\necho ok\n".into()) },
                FileWrite::File { path: "y.sh".into(), file: Written::Unseen("updated by `apply_patch`".into()) },
            ]
        );
    }
}
