//! Running a script file — by a shell (`sh p.sh`, `bash -e p.sh`, `source p.sh`, `. p.sh`), by its own
//! path (`./p.sh`, `/workspace/p.sh`, `scripts/x.sh`) or by a language interpreter (`python3 p.py`,
//! `node x.js`, `perl`, `ruby`, `php`, `bun`, `deno run`…) — judged by what this session wrote into it:
//!
//! - written with its content seen: a shell script's commands are reported as if they were on the line
//!   (so the rules judge them); a script of another language gets the hints inline code gets
//!   ([`crate::opaque::why_code_opaque`]);
//! - changed in a way the gate did not see, or possibly so (files written under names the gate could
//!   not tell, more files than it remembers): opaque;
//! - never written by the session: the repository's own file, not opaque — what it does is out of reach
//!   of parsing and is mediated on the wire by the egress gateway.
//!
//! The writes of the line itself count, wherever they are on it (`echo … > p.sh; sh p.sh`). A relative
//! path is also compared by file name, since the working directory may not be the workspace (`cd` on the
//! line, a harness whose shell keeps its directory between calls): a script is judged by its content
//! only when every written file of that name holds the same seen content.

use crate::opaque::{is_shell, why_code_opaque};
use crate::shell::{MAX_DEPTH, SimpleCommand, parse_commands, program_name};

use super::command_files::{self, CommandFiles, Reading};
use super::record::{code_writes_files, shell_writes};
use super::{FileWrite, Written, WrittenFiles, file_name, how, normalize};

/// Most script files followed for one command line.
const MAX_RUNS: usize = 64;
/// Most commands reported from script files for one command line.
const MAX_SCRIPT_COMMANDS: usize = 10_000;

/// What the scripts a command line runs add to it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expansion {
    /// Commands of written shell scripts the line runs, in the order found; their `wrappers` name the
    /// script (`sh p.sh`) after the running command's own.
    pub commands: Vec<SimpleCommand>,
    /// Why a script the line runs cannot be judged, naming it.
    pub opacity: Option<String>,
    /// The files the line and the scripts it runs write.
    pub writes: Vec<FileWrite>,
}

/// The scripts `cmds` (parsed from `line`) run, judged against what the session wrote before.
pub fn expand(line: &str, cmds: &[SimpleCommand], session: &WrittenFiles) -> Expansion {
    let mut w = Walk { written: session.clone(), out: Expansion::default(), stack: Vec::new(), runs: 0 };
    w.walk(line, cmds, &[], 0);
    w.out
}

struct Walk {
    written: WrittenFiles,
    out: Expansion,
    /// Scripts being expanded, to find cycles.
    stack: Vec<String>,
    runs: usize,
}

/// How a script file is run.
#[derive(Clone, Debug, PartialEq)]
enum Runner {
    /// By a shell, or sourced.
    Shell,
    /// By a language interpreter (its program name).
    Interpreter(String),
    /// By its own path: its `#!` line decides.
    OwnPath,
}

impl Walk {
    fn opaque(&mut self, why: String) {
        self.out.opacity.get_or_insert(why);
    }

    fn walk(&mut self, text: &str, cmds: &[SimpleCommand], outer: &[String], depth: usize) {
        let writes = shell_writes(text, cmds);
        self.written.apply(&writes, false);
        self.out.writes.extend(writes);
        for c in cmds {
            if let Some(files) = command_files::read_by(c) {
                self.command_files(c, &files, outer, depth);
            }
            let Some((runner, path)) = script_run(c) else { continue };
            let shown = shown(c);
            let content = match find(&self.written, &path) {
                Ok(None) => continue,
                Ok(Some(content)) => content,
                Err(why) => {
                    self.opaque(format!("{shown} runs a script file `{path}` {why}"));
                    continue;
                }
            };
            let key = normalize(&path).unwrap_or_else(|| path.clone());
            if self.stack.contains(&key) {
                self.opaque(format!("{shown} runs a script file `{path}` that runs itself again"));
                continue;
            }
            if depth >= MAX_DEPTH / 2 || self.runs >= MAX_RUNS {
                self.opaque(format!("{shown} runs a script file `{path}` past the scripts the gate follows"));
                continue;
            }
            self.runs += 1;
            let language = match runner {
                Runner::Shell => None,
                Runner::Interpreter(prog) => Some(prog),
                Runner::OwnPath => match shebang(&content) {
                    Shebang::Shell => None,
                    Shebang::Program(p) => Some(p),
                },
            };
            match language {
                Some(prog) => self.code(&shown, &prog, &path, &content),
                None => self.shell(c, &shown, &format!("a script file `{path}`"), key, &[content], outer, depth),
            }
        }
    }

    /// Judges code of another language this session wrote, run by `shown`.
    fn code(&mut self, shown: &str, prog: &str, path: &str, content: &str) {
        if let Some(why) = why_code_opaque(prog, content) {
            self.opaque(format!("{shown} runs `{path}`, which this session wrote: {why}"));
        }
        if code_writes_files(content) {
            // Which files, and what it puts in them, is not seen: any of them may be run next.
            let w = FileWrite::Unknown(format!("{shown}, a program this session wrote that writes files"));
            self.written.apply(std::slice::from_ref(&w), false);
            self.out.writes.push(w);
        }
    }

    /// Reports the commands of shell `texts` (each given to a shell on its own) from `what` (a file this
    /// session wrote, under `key`), run by `c`, as if they were on the line, and follows what they run.
    #[allow(clippy::too_many_arguments)]
    fn shell(
        &mut self,
        c: &SimpleCommand,
        shown: &str,
        what: &str,
        key: String,
        texts: &[String],
        outer: &[String],
        depth: usize,
    ) {
        let mut parsed = Vec::new();
        for text in texts {
            match parse_commands(&with_definitions_called(text)) {
                Ok(inner) => parsed.push((text, inner)),
                Err(e) => {
                    self.opaque(format!("{shown} runs {what} that could not be parsed ({e})"));
                    return;
                }
            }
        }
        let count: usize = parsed.iter().map(|(_, inner)| inner.len()).sum();
        if self.out.commands.len() + count > MAX_SCRIPT_COMMANDS {
            self.opaque(format!("{shown} runs {what} with more commands than the gate reads"));
            return;
        }
        let mut wrappers: Vec<String> = outer.to_vec();
        wrappers.extend(c.wrappers.iter().cloned());
        wrappers.push(shown.trim_matches('`').to_owned());
        self.stack.push(key);
        for (text, inner) in parsed {
            self.out.commands.extend(inner.iter().map(|i| {
                let mut w = wrappers.clone();
                w.extend(i.wrappers.iter().cloned());
                SimpleCommand { argv: i.argv.clone(), wrappers: w }
            }));
            self.walk(text, &inner, &wrappers, depth + 1);
        }
        self.stack.pop();
    }

    /// Judges the command files `c` reads by what this session wrote into them (see [`command_files`]).
    fn command_files(&mut self, c: &SimpleCommand, files: &CommandFiles, outer: &[String], depth: usize) {
        let shown = shown(c);
        for path in &files.paths {
            let content = match find(&self.written, path) {
                Ok(None) => continue,
                Ok(Some(content)) => content,
                Err(why) => {
                    self.opaque(format!("{shown} reads commands from a file `{path}` {why}"));
                    continue;
                }
            };
            let key = normalize(path).unwrap_or_else(|| path.clone());
            // Already being judged whole, every command of it (`npm run build` in a script of the same file).
            if self.stack.contains(&key) {
                continue;
            }
            if depth >= MAX_DEPTH / 2 || self.runs >= MAX_RUNS {
                self.opaque(format!("{shown} reads commands from a file `{path}` past the files the gate follows"));
                continue;
            }
            self.runs += 1;
            match command_files::read(files.format, &content) {
                Reading::Opaque(why) => {
                    self.opaque(format!("{shown} reads commands from `{path}`, which this session wrote: {why}"));
                }
                Reading::Code(prog) => self.code(&shown, prog, path, &content),
                Reading::Shell(lines) => {
                    let what = format!("commands of `{path}`, which this session wrote,");
                    self.shell(c, &shown, &what, key, &lines, outer, depth);
                }
            }
        }
    }
}

/// The script with a call of every function and alias it defines appended, so that their bodies are
/// judged too: a sourced script's functions are called by later commands of the line, which the parser
/// of the line does not know (`source lib.sh; deploy`). A body never called is judged all the same.
fn with_definitions_called(content: &str) -> String {
    let mut names: Vec<&str> = Vec::new();
    for line in content.lines() {
        let line = line.trim_start();
        let (keyword, rest) = match line.strip_prefix("function ") {
            Some(r) => (true, r.trim_start()),
            None => (false, line.strip_prefix("alias ").map(str::trim_start).unwrap_or(line)),
        };
        let alias = line.starts_with("alias ");
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.')))
            .unwrap_or(rest.len());
        let (name, after) = rest.split_at(end);
        let defines =
            !name.is_empty() && (keyword || (alias && after.starts_with('=')) || after.trim_start().starts_with("()"));
        if defines && names.len() < 256 && !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return content.to_owned();
    }
    format!("{content}\n{}\n", names.join("\n"))
}

fn shown(c: &SimpleCommand) -> String {
    let s = c.argv.join(" ");
    if s.chars().count() > 80 { format!("`{}…`", s.chars().take(79).collect::<String>()) } else { format!("`{s}`") }
}

/// The content to judge a run of `path` by: `Ok(None)` when the session never wrote it, `Err` (the rest
/// of a sentence) when the session changed it, or may have, in a way the gate did not see.
fn find(w: &WrittenFiles, path: &str) -> Result<Option<String>, String> {
    if w.is_empty() {
        return Ok(None);
    }
    let key = normalize(path);
    let name = match &key {
        Some(k) => file_name(k).to_owned(),
        None if path.contains(['$', '`', '*', '?', '[', '{', '}']) => {
            return Err("whose name the line does not show, and this session wrote files".into());
        }
        None => file_name(path).to_owned(),
    };
    let anchored = key.as_deref().is_some_and(|k| k.starts_with('/'));
    // A relative path may be any written file of that name; an absolute one, any written relative to
    // a directory the gate does not know.
    let candidates: Vec<(&String, &Written)> = w
        .files
        .iter()
        .filter(|(k, _)| Some(*k) == key.as_ref() || (file_name(k) == name && (!anchored || !k.starts_with('/'))))
        .collect();
    let exact = key.as_ref().and_then(|k| w.files.get(k));
    let Some((first_key, first)) = candidates.first() else {
        return match w.may_hide_writes() {
            Some(why) => Err(format!("the gate cannot tell: {why}")),
            None => Ok(None),
        };
    };
    if let Written::Seen(content) = first
        && candidates.iter().all(|(_, c)| *c == *first)
    {
        if exact.is_none()
            && let Some(why) = w.may_hide_writes()
        {
            return Err(format!("the gate cannot tell: {why}"));
        }
        return Ok(Some(content.clone()));
    }
    let (k, file) = match exact {
        Some(e @ Written::Unseen(_)) => (key.as_ref().unwrap_or(first_key), e),
        _ => candidates.iter().find(|(_, c)| matches!(c, Written::Unseen(_))).copied().unwrap_or((first_key, first)),
    };
    let how = how(file);
    if Some(k) == key.as_ref() {
        Err(format!("that this session changed ({how}); its content was not seen"))
    } else {
        Err(format!(
            "that may be `{k}`, which this session changed ({how}); which file runs depends on the working directory"
        ))
    }
}

/// Whether a command runs a script file, how, and which.
fn script_run(c: &SimpleCommand) -> Option<(Runner, String)> {
    let argv0 = c.argv.first()?;
    let prog = program_name(argv0).to_ascii_lowercase();
    let args = &c.argv[1..];
    if is_shell(&prog) {
        return shell_script(args).map(|p| (Runner::Shell, p.clone()));
    }
    if prog == "source" || prog == "." {
        return args.first().map(|p| (Runner::Shell, p.clone()));
    }
    if let Some(p) = interpreter_script(&prog, args) {
        return Some((Runner::Interpreter(prog), p.clone()));
    }
    argv0.contains('/').then(|| (Runner::OwnPath, argv0.clone()))
}

/// The script file a shell runs: its first operand, unless it is given its commands (`-c`), reads them
/// from standard input (`-s`, none) or only checks them (`-n`).
fn shell_script(args: &[String]) -> Option<&String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            return it.next().filter(|f| !f.starts_with("<("));
        }
        if matches!(a.as_str(), "--rcfile" | "--init-file" | "-o" | "+o" | "-O" | "+O") {
            it.next();
            continue;
        }
        if a.starts_with("--") {
            continue;
        }
        if let Some(flags) = a.strip_prefix('-').or_else(|| a.strip_prefix('+')) {
            if flags.contains(['c', 's', 'n']) {
                return None;
            }
            continue;
        }
        return (!a.starts_with("<(")).then_some(a);
    }
    None
}

/// The script file a language interpreter runs, if it is given one (not `-c`/`-e` code, a module, or
/// standard input, which [`crate::opaque`] judges).
fn interpreter_script<'a>(prog: &str, args: &'a [String]) -> Option<&'a String> {
    let python = prog.strip_prefix("python").or_else(|| prog.strip_prefix("pypy"));
    let python = python.is_some_and(|r| r.chars().all(|c| c.is_ascii_digit() || c == '.'));
    let (args, valued, code): (&[String], &[&str], &[&str]) = match prog {
        _ if python => (args, &["-W", "-X", "--check-hash-based-pycs"], &["-c", "-m"]),
        "node" | "nodejs" => (args, &["-r", "--require", "--import", "--loader"], &["-e", "--eval", "-p", "--print"]),
        "bun" => match args.first().map(String::as_str) {
            Some("run") => (&args[1..], &["-r", "--preload"], &["-e", "--eval"]),
            Some(s) if !s.starts_with('-') && !s.contains(['.', '/']) => return None,
            _ => (args, &["-r", "--preload"], &["-e", "--eval"]),
        },
        "deno" => match args.first().map(String::as_str) {
            Some("run") => (&args[1..], &[], &[]),
            _ => return None,
        },
        "perl" => (args, &[], &["-e", "-E"]),
        "ruby" => (args, &["-r", "-I", "-C", "-E", "-F"], &["-e"]),
        "php" => (args, &["-c", "-d", "-z", "-t"], &["-r", "-R", "-B", "-E", "-a"]),
        "lua" | "luajit" => (args, &["-l"], &["-e"]),
        _ => return None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            return it.next();
        }
        if prog == "php" && a == "-f" {
            return it.next();
        }
        if valued.contains(&a.as_str()) {
            it.next();
            continue;
        }
        if a == "-" {
            return None;
        }
        if let Some(flags) = a.strip_prefix('-') {
            let bundle = !flags.starts_with('-');
            let runs_code = code.contains(&a.as_str())
                || (bundle && code.iter().any(|c| c.len() == 2 && flags.contains(&c[1..])))
                || a.starts_with("--eval=");
            if runs_code {
                return None;
            }
            continue;
        }
        return Some(a);
    }
    None
}

enum Shebang {
    Shell,
    Program(String),
}

/// What runs a file executed by its own path: its `#!` program (through `env`), or a shell when it has
/// none (the shell runs a file the kernel will not).
fn shebang(content: &str) -> Shebang {
    let Some(line) = content.lines().next().and_then(|l| l.strip_prefix("#!")) else { return Shebang::Shell };
    let mut words = line.split_whitespace();
    let mut prog = words.next().map(program_name).unwrap_or("").to_ascii_lowercase();
    if prog == "env" {
        prog = words.find(|w| !w.starts_with('-') && !w.contains('=')).map(program_name).unwrap_or("").to_owned();
    }
    if is_shell(&prog) { Shebang::Shell } else { Shebang::Program(prog) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Option<(Runner, String)> {
        let cmds = parse_commands(line).expect("parses");
        cmds.iter().find_map(script_run)
    }

    #[test]
    fn script_runs_in_every_spelling() {
        for (line, path) in [
            ("sh p.sh", "p.sh"),
            ("bash -e ./p.sh arg", "./p.sh"),
            ("bash -o pipefail p.sh", "p.sh"),
            ("source p.sh", "p.sh"),
            (". ./p.sh", "./p.sh"),
            ("sudo -u x bash -- p.sh", "p.sh"),
        ] {
            assert_eq!(run(line), Some((Runner::Shell, path.into())), "{line}");
        }
        for (line, prog, path) in [
            ("python3 p.py", "python3", "p.py"),
            ("python3 -u -W ignore p.py", "python3", "p.py"),
            ("node --require x x.js", "node", "x.js"),
            ("deno run --allow-all x.ts", "deno", "x.ts"),
            ("bun run x.ts", "bun", "x.ts"),
            ("perl -w x.pl", "perl", "x.pl"),
            ("ruby x.rb", "ruby", "x.rb"),
            ("php -f x.php", "php", "x.php"),
        ] {
            assert_eq!(run(line), Some((Runner::Interpreter(prog.into()), path.into())), "{line}");
        }
        for line in ["./p.sh", "/workspace/p.sh", "scripts/x.sh --fast", "./gradlew test"] {
            assert_eq!(run(line).map(|r| r.0), Some(Runner::OwnPath), "{line}");
        }
        for line in ["sh", "bash -n p.sh", "bash -s < p.sh", "python3 -m pytest", "node -e 1", "bun test", "cargo test"]
        {
            assert_eq!(run(line), None, "{line}");
        }
    }

    #[test]
    fn functions_and_aliases_a_script_defines_are_called() {
        let s = with_definitions_called("add() { echo 1; }\nfunction deploy {\n git push -f\n}\nalias p='git push'\n");
        assert!(s.ends_with("\nadd\ndeploy\np\n"), "{s}");
        assert_eq!(with_definitions_called("cargo test\n"), "cargo test\n");
    }

    #[test]
    fn shebangs() {
        assert!(matches!(shebang("cargo test\n"), Shebang::Shell));
        assert!(matches!(shebang("#!/usr/bin/env bash\nx"), Shebang::Shell));
        assert!(matches!(shebang("#!/usr/bin/env -S python3 -u\n"), Shebang::Program(p) if p == "python3"));
        assert!(matches!(shebang("#!/usr/bin/perl -w\n"), Shebang::Program(p) if p == "perl"));
    }
}
