//! Code in other languages given on the command line (`python3 -c`, `perl -e`, `node -e`, awk and sed
//! programs, debugger commands): not parsed, only searched for cheap hints that it runs programs,
//! evaluates strings it builds, decodes data or names git. A script file is out of reach by nature.

use super::{is_expansion, is_git_program};
use crate::shell::program_name;

pub(super) fn is_interpreter(prog: &str) -> bool {
    python_like(prog)
        || matches!(
            prog,
            "perl"
                | "ruby"
                | "node"
                | "nodejs"
                | "deno"
                | "bun"
                | "php"
                | "lua"
                | "luajit"
                | "awk"
                | "gawk"
                | "mawk"
                | "nawk"
                | "tclsh"
                | "wish"
                | "expect"
                | "pwsh"
                | "powershell"
                | "osascript"
                | "rscript"
                | "julia"
        )
}

pub(super) fn python_like(prog: &str) -> bool {
    let rest = prog.strip_prefix("python").or_else(|| prog.strip_prefix("pypy"));
    rest.is_some_and(|r| r.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// Inline code given to another language's interpreter, or a program it reads from standard input.
/// Code is not parsed: it is opaque when it holds a cheap hint of running programs, evaluating strings,
/// decoding data or touching git (see [`suspicious_code`]). A script file is out of reach by nature.
pub(super) fn inline_code(prog: &str, args: &[String]) -> Option<String> {
    if is_interpreter(prog)
        && let Some(s) = streamed(args)
    {
        return Some(format!("`{prog}` reads its program from `{s}`, which the line does not show"));
    }
    let (lang, code): (&str, Option<String>) = if python_like(prog) {
        match python_code(args) {
            Source::Code(c) => ("python", Some(c)),
            Source::Stdin => return Some(stdin_program(prog)),
            Source::File => return None,
        }
    } else {
        match prog {
            "perl" => match perl_code(args) {
                Source::Code(c) => ("perl", Some(c)),
                Source::Stdin => return Some(stdin_program(prog)),
                Source::File => return None,
            },
            "ruby" => match flag_code(args, &["-e"], &["-r", "-I", "-C", "-E", "-x", "-F"]) {
                Source::Code(c) => ("ruby", Some(c)),
                Source::Stdin => return Some(stdin_program(prog)),
                Source::File => return None,
            },
            "node" | "nodejs" | "bun" => {
                match flag_code(args, &["-e", "--eval", "-p", "--print", "-pe"], &["-r", "--require", "--import"]) {
                    Source::Code(c) => ("js", Some(c)),
                    Source::Stdin if prog != "bun" => return Some(stdin_program(prog)),
                    _ => return None,
                }
            }
            "deno" => match args.iter().position(|a| a == "eval") {
                Some(k) => ("js", args.get(k + 1).cloned()),
                None => return None,
            },
            // PHP calls any function named by a string (`array_map('sys'.'tem', …)`): no hint would do.
            "php" => match flag_code(args, &["-r", "-R", "-B", "-E"], &["-c", "-d", "-f", "-t", "-z"]) {
                Source::Code(_) => return Some(format!("`{prog}` runs inline PHP, which is not parsed")),
                Source::Stdin => return Some(stdin_program(prog)),
                Source::File => return None,
            },
            "lua" | "luajit" => match flag_code(args, &["-e"], &["-l"]) {
                Source::Code(c) => ("lua", Some(c)),
                Source::Stdin => return Some(stdin_program(prog)),
                Source::File => return None,
            },
            "rscript" | "julia" => match flag_code(args, &["-e", "--eval"], &[]) {
                Source::Code(c) => ("r", Some(c)),
                _ => return None,
            },
            "awk" | "gawk" | "mawk" | "nawk" => return awk_code(prog, args),
            "sed" | "gsed" => return sed_runs(args).then(|| format!("`{prog}` runs commands (`e`)")),
            "tclsh" | "wish" | "expect" => {
                return Some(format!("`{prog}` runs Tcl, which can run any program and is not parsed"));
            }
            "pwsh" | "powershell" => return Some(format!("`{prog}` runs PowerShell, which is not parsed")),
            "osascript" if args.iter().any(|a| a == "-e") || args.is_empty() => {
                return Some(format!("`{prog}` runs AppleScript, which can run any program and is not parsed"));
            }
            _ => return None,
        }
    };
    let code = code.unwrap_or_default();
    // Python and Lua code does not use `$`: there it is an expansion the parser left as written.
    if matches!(lang, "python" | "lua") && is_expansion(&code) {
        return Some(format!("`{prog}` runs inline code the line does not show (`$…`)"));
    }
    suspicious_code(lang, &code).map(|hint| format!("`{prog}` runs inline code that {hint}, which is not parsed"))
}

/// A script operand that is really a stream the line does not show (`/dev/stdin`, `<(curl …)`).
fn streamed(args: &[String]) -> Option<&String> {
    args.iter().find(|a| is_stream(a))
}

pub(super) fn is_stream(a: &str) -> bool {
    a.starts_with("<(")
        || a == "/dev/stdin"
        || a.starts_with("/dev/fd/")
        || (a.starts_with("/proc/") && a.contains("/fd/"))
        || a == "-"
}

fn stdin_program(prog: &str) -> String {
    format!("`{prog}` reads its program from standard input, which the line does not show")
}

enum Source {
    Code(String),
    Stdin,
    File,
}

/// `python -c CODE` (also `-Ic CODE`, `-cCODE`), `-m module`, a script, or stdin (`-` or nothing).
fn python_code(args: &[String]) -> Source {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        if a == "-" {
            return Source::Stdin;
        }
        if a.starts_with("--") {
            if a == "--check-hash-based-pycs" {
                i += 1;
            }
            continue;
        }
        let Some(flags) = a.strip_prefix('-') else { return Source::File };
        for (k, ch) in flags.char_indices() {
            match ch {
                'c' => {
                    let rest = &flags[k + 1..];
                    return Source::Code(if rest.is_empty() {
                        args.get(i).cloned().unwrap_or_default()
                    } else {
                        rest.into()
                    });
                }
                'm' => return Source::File,
                'W' | 'X' | 'Q' => {
                    if k + 1 == flags.len() {
                        i += 1;
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    Source::Stdin
}

/// `perl -e CODE` in any bundle (`-ne`, `-lpe`, `-E`), stopping at options whose value is attached
/// (`-i.bak`, `-MModule`, `-Idir`).
fn perl_code(args: &[String]) -> Source {
    let mut code = Vec::new();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        if a == "--" {
            break;
        }
        if a == "-" {
            return Source::Stdin;
        }
        let Some(flags) = a.strip_prefix('-') else { break };
        for (k, ch) in flags.char_indices() {
            match ch {
                'e' | 'E' => {
                    let rest = &flags[k + 1..];
                    if rest.is_empty() {
                        code.extend(args.get(i).cloned());
                        i += 1;
                    } else {
                        code.push(rest.to_string());
                    }
                    break;
                }
                'i' | 'M' | 'm' | 'I' | 'x' | 'd' | 'D' | 'l' | '0' | 'C' => break,
                _ => {}
            }
        }
    }
    if !code.is_empty() {
        return Source::Code(code.join("\n"));
    }
    if i <= args.len() && args[i.saturating_sub(1)..].iter().any(|a| !a.starts_with('-')) {
        Source::File
    } else {
        Source::Stdin
    }
}

/// Code after one of `flags` (`-e CODE`, `-eCODE`, `--eval=CODE`), skipping options with a value
/// (`valued`); a file operand otherwise, or stdin when there is none.
fn flag_code(args: &[String], flags: &[&str], valued: &[&str]) -> Source {
    let mut code = Vec::new();
    let mut file = false;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        if flags.contains(&a.as_str()) {
            code.extend(args.get(i).cloned());
            i += 1;
            continue;
        }
        if let Some(c) = flags.iter().find_map(|f| {
            a.strip_prefix(&format!("{f}="))
                .or_else(|| a.strip_prefix(f).filter(|_| f.len() == 2 && !f.starts_with("--")))
        }) && !c.is_empty()
        {
            code.push(c.to_string());
            continue;
        }
        if valued.contains(&a.as_str()) {
            i += 1;
            continue;
        }
        if a == "-" {
            return Source::Stdin;
        }
        if !a.starts_with('-') {
            file = true;
            break;
        }
    }
    if !code.is_empty() {
        Source::Code(code.join("\n"))
    } else if file {
        Source::File
    } else {
        Source::Stdin
    }
}

/// Cheap hints that inline code runs programs, evaluates strings, decodes data or touches git. A
/// hint, not a parser: code that avoids them all is out of reach like a script file.
fn suspicious_code(lang: &str, code: &str) -> Option<&'static str> {
    let lower = code.to_ascii_lowercase();
    let has = |w: &str| lower.contains(w);
    if mentions_word(&lower, "git") || mentions_word(&lower, "gh") {
        return Some("mentions git");
    }
    const RUNS: &[&str] = &[
        "system",
        "exec",
        "spawn",
        "popen",
        "subprocess",
        "child_process",
        "fork",
        "pty",
        "pipe",
        "pager",
        "startfile",
        "getoutput",
        "webbrowser",
        "passthru",
        "proc_open",
        "shell",
        "readpipe",
        "syscall",
        "qx",
        "%x",
        "open3",
        "kernel",
        "process.binding",
        "dlopen",
        "ctypes",
        "cffi",
        "`",
    ];
    const EVALUATES: &[&str] = &[
        "eval",
        "compile",
        "__",
        "getattr",
        "attrgetter",
        "methodcaller",
        "importlib",
        "import(",
        "runpy",
        "pickle",
        "marshal",
        "timeit",
        "doctest",
        "getmembers",
        "vars(",
        "globals",
        "locals(",
        "load_module",
        "exec_module",
        "send(",
        "public_send",
        "const_get",
        "instance_variable",
        "function(",
        "new function",
        "vm.",
        "constructor",
        "_load",
        "mainmodule",
        "deno.",
        "method(",
        "worker",
        "assert(",
        "create_function",
        "call_user_func",
        "$$",
        "dofile",
        "loadstring",
        "uplevel",
        "core::",
        "&{",
        "&$",
    ];
    const DECODES: &[&str] =
        &["base64", "b64", "decode", "fromhex", "unhexlify", "fromcharcode", "atob", "chr(", "\\x", "\\u", "pack("];
    if RUNS.iter().any(|w| has(w)) {
        return Some("can run programs");
    }
    if lang == "perl" && (has("open") || perl_eval_substitution(code)) {
        return Some("can run programs");
    }
    if lang == "ruby" && (has("open") || has("io.")) {
        return Some("can run programs");
    }
    if lang == "lua" && has("load") {
        return Some("evaluates code it builds");
    }
    if lang == "php" && php_variable_call(code) {
        return Some("calls a function by a computed name");
    }
    if requires_unknown_module(&lower) {
        return Some("loads a module by a computed name or one that runs programs");
    }
    if EVALUATES.iter().any(|w| has(w)) {
        return Some("evaluates code it builds");
    }
    if DECODES.iter().any(|w| has(w)) {
        return Some("decodes data");
    }
    None
}

/// Modules whose loading alone gives a way to run programs or code.
const RISKY_MODULES: &[&str] = &[
    "child_process",
    "vm",
    "worker_threads",
    "cluster",
    "module",
    "inspector",
    "repl",
    "process",
    "open3",
    "pty",
    "shell",
    "socket",
    "fiddle",
    "ffi",
];

/// `require(…)` (JavaScript) or `require …` (Ruby) of anything but a literal, harmless module name:
/// `require('./package.json')` and `require 'json'` are fine.
fn requires_unknown_module(code: &str) -> bool {
    code.match_indices("require").any(|(i, _)| {
        let rest = &code[i + "require".len()..];
        // `require_relative`, `required` and the like are other words.
        if rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            return false;
        }
        let rest = rest.trim_start_matches([' ', '(']);
        let Some(q) = rest.chars().next().filter(|c| matches!(c, '\'' | '"')) else { return true };
        let Some(end) = rest[1..].find(q) else { return true };
        let name = rest[1..1 + end].trim_start_matches("node:");
        let after = rest[1 + end + 1..].trim_start();
        RISKY_MODULES.contains(&name) || after.starts_with('+') || name.contains(['$', '`'])
    })
}

/// `word` as a word of its own: `git push`, `"git"`, `/usr/bin/git` — not `digits`.
fn mentions_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Perl's `s/…/…/e`, which evaluates the replacement as code.
fn perl_eval_substitution(code: &str) -> bool {
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts = chars[i] == 's'
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == '$'));
        let delim = chars.get(i + 1).copied();
        i += 1;
        let Some(d) = delim.filter(|d| starts && !d.is_alphanumeric() && !d.is_whitespace() && *d != '_' && *d != '=')
        else {
            continue;
        };
        let close = match d {
            '{' => '}',
            '(' => ')',
            '[' => ']',
            '<' => '>',
            _ => d,
        };
        // Skip the pattern and the replacement (for bracketed ones, `{a}{b}`), then read the flags.
        let mut j = i + 1;
        let mut parts = 0;
        while j < chars.len() && parts < 2 {
            match chars[j] {
                '\\' => j += 1,
                c if c == close => {
                    parts += 1;
                    if close != d && parts == 1 {
                        // `s{a}{b}`: the replacement opens again after optional blanks.
                        j += 1;
                        while chars.get(j).is_some_and(|c| c.is_whitespace()) {
                            j += 1;
                        }
                    }
                }
                _ => {}
            }
            j += 1;
        }
        if parts == 2 {
            let flags: String = chars[j..].iter().take_while(|c| c.is_ascii_alphabetic()).collect();
            if flags.contains('e') {
                return true;
            }
        }
    }
    false
}

/// PHP `$f(…)`: a call through a variable.
fn php_variable_call(code: &str) -> bool {
    let b = code.as_bytes();
    (0..b.len()).any(|i| {
        if b[i] != b'$' {
            return false;
        }
        let mut j = i + 1;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        j > i + 1 && b.get(j) == Some(&b'(')
    })
}

/// awk programs that run commands: `system()`, pipes to or from commands, or loaded extensions.
fn awk_code(prog: &str, args: &[String]) -> Option<String> {
    let mut programs = Vec::new();
    let mut from_file = false;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        match a.as_str() {
            "-f" | "--file" | "-i" | "--include" => {
                from_file = true;
                i += 1;
            }
            "-e" | "--source" => {
                programs.extend(args.get(i).cloned());
                i += 1;
            }
            "-l" | "--load" => return Some(format!("`{prog}` loads an extension library")),
            "-F" | "-v" | "--assign" | "--field-separator" => i += 1,
            "--" => {
                if !from_file && programs.is_empty() {
                    programs.extend(args.get(i).cloned());
                }
                break;
            }
            s if s.starts_with('-') => {}
            s => {
                if !from_file && programs.is_empty() {
                    programs.push(s.to_string());
                }
                break;
            }
        }
    }
    let code = programs.join("\n");
    let runs = code.contains("system")
        || awk_pipes(&code)
        || code.contains("@load")
        || code.contains("extension(")
        || mentions_word(&code.to_ascii_lowercase(), "git");
    runs.then(|| format!("`{prog}` runs a program that can run commands (`system`, pipes), which is not parsed"))
}

/// An awk pipe to or from a command (`print … | cmd`, `cmd | getline`, `|&`): a `|` outside string
/// and regex literals that is not `||`.
fn awk_pipes(code: &str) -> bool {
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    // After an operand a `/` divides; elsewhere it opens a regex.
    let mut after_operand = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                after_operand = true;
            }
            '/' if !after_operand => {
                i += 1;
                while i < chars.len() && chars[i] != '/' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                after_operand = true;
            }
            '|' if chars.get(i + 1) == Some(&'|') => {
                i += 1;
                after_operand = false;
            }
            '|' => return true,
            c if c.is_whitespace() => {}
            c => after_operand = c.is_alphanumeric() || matches!(c, '_' | ')' | ']' | '$'),
        }
        i += 1;
    }
    false
}

/// GNU sed's `e` command or `s///e` flag, which run the pattern space as a command.
fn sed_runs(args: &[String]) -> bool {
    let mut scripts = Vec::new();
    let mut i = 0;
    let mut explicit = false;
    while let Some(a) = args.get(i) {
        i += 1;
        if a == "-e" || a == "--expression" {
            scripts.extend(args.get(i).cloned());
            explicit = true;
            i += 1;
        } else if let Some(s) = a.strip_prefix("--expression=") {
            scripts.push(s.to_string());
            explicit = true;
        } else if a == "-f" || a == "--file" {
            if args.get(i).is_some_and(|f| is_stream(f)) {
                return true;
            }
            explicit = true;
            i += 1;
        } else if !a.starts_with('-') {
            if !explicit {
                scripts.push(a.clone());
            }
            break;
        }
    }
    scripts.iter().any(|s| {
        s.split(['\n', ';']).any(|cmd| {
            let cmd =
                cmd.trim_start_matches(|c: char| c.is_ascii_digit() || matches!(c, ',' | '$' | ' ' | '!' | '{' | '}'));
            let cmd = skip_regex_address(cmd);
            cmd.starts_with('e') && cmd[1..].chars().next().is_none_or(|c| c.is_whitespace())
                || cmd.starts_with('s') && perl_eval_substitution(cmd)
        })
    })
}

/// A sed address `/re/` (possibly `/a/,/b/`) before a command.
fn skip_regex_address(cmd: &str) -> &str {
    let mut rest = cmd;
    while let Some(r) = rest.strip_prefix('/') {
        match r.find('/') {
            Some(k) => rest = r[k + 1..].trim_start_matches([',', ' ', '!']),
            None => return rest,
        }
    }
    rest.trim_start_matches(|c: char| c.is_ascii_digit() || matches!(c, ',' | '$' | ' ' | '!'))
}

/// gdb and lldb commands that can run programs (`shell`, `!`, `python`, `call`, scripts).
pub(super) fn debugger_runs_commands(args: &[String]) -> bool {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-x" | "--command" | "-s" | "--source" | "-ix" | "--init-command" => return true,
            "-ex" | "--eval-command" | "-o" | "--one-line" | "-iex" | "-O" | "--one-line-before-file" => {
                let cmd = it.next().map(|c| c.to_ascii_lowercase()).unwrap_or_default();
                let runs = [
                    "shell", "!", "python", "pipe", "|", "call", "print", "script", "platform", "source", "define",
                    "eval", "exec", "p ",
                ]
                .iter()
                .any(|w| cmd.contains(w));
                if runs {
                    return true;
                }
            }
            "--args" => {
                return it.next().is_some_and(|p| is_git_program(program_name(p)));
            }
            _ => {}
        }
    }
    false
}

/// Options of ordinary programs whose value is a command line they run, and editors or build tools
/// given commands on the line: `tar --to-command=…`, `rsync -e …`, `ssh -o ProxyCommand=…`,
/// `vim -c '!…'`, `emacs --eval`, `make --eval`, `make -f -`, `npx -c`.
pub(super) fn command_option(prog: &str, args: &[String]) -> Option<String> {
    let opt = |names: &[&str]| {
        args.iter().enumerate().find_map(|(i, a)| {
            names.iter().find_map(|n| {
                if a == n {
                    Some(args.get(i + 1).cloned().unwrap_or_default())
                } else if n.starts_with("--") {
                    a.strip_prefix(&format!("{n}=")).map(str::to_string)
                } else {
                    None
                }
            })
        })
    };
    let runs = |what: &str| Some(format!("`{prog}` runs a command line given in `{what}`, which is not parsed"));
    match prog {
        "tar" | "gtar" | "bsdtar" => {
            let opts = [
                "--to-command",
                "--checkpoint-action",
                "--use-compress-program",
                "-I",
                "--info-script",
                "-F",
                "--new-volume-script",
                "--rsh-command",
            ];
            if let Some(o) = opts.iter().find(|o| opt(&[o]).is_some()) {
                return runs(o);
            }
            None
        }
        "rsync" => ["-e", "--rsh", "--rsync-path"].iter().find(|o| opt(&[o]).is_some()).and_then(|o| runs(o)),
        "ssh" | "scp" | "sftp" => {
            let config = args.iter().enumerate().any(|(i, a)| {
                let value = if a == "-o" { args.get(i + 1).map(String::as_str) } else { a.strip_prefix("-o") };
                value.is_some_and(|v| {
                    let k = v.to_ascii_lowercase();
                    k.starts_with("proxycommand") || k.starts_with("localcommand") || k.starts_with("knownhostscommand")
                })
            });
            if config {
                return runs("-o ProxyCommand/LocalCommand");
            }
            (prog != "ssh" && opt(&["-S"]).is_some()).then(|| format!("`{prog} -S` runs another program as ssh"))
        }
        "zip" => opt(&["-TT", "--unzip-command"]).and_then(|_| runs("-TT")),
        "sort" => opt(&["--compress-program"]).and_then(|_| runs("--compress-program")),
        "vi" | "vim" | "nvim" | "ex" | "view" | "gvim" => {
            let given = args.iter().any(|a| {
                matches!(a.as_str(), "-c" | "--cmd" | "-S" | "-s" | "-u")
                    || (a.starts_with('+') && a.len() > 1 && !a[1..].bytes().all(|b| b.is_ascii_digit()))
            });
            given.then(|| format!("`{prog}` is given editor commands, which can run programs"))
        }
        "emacs" | "emacsclient" => {
            let given = args.iter().any(|a| {
                matches!(a.as_str(), "--eval" | "-eval" | "-l" | "--load" | "-f" | "--funcall" | "--script" | "-x")
                    || a.starts_with("--eval=")
            });
            given.then(|| format!("`{prog}` is given Lisp to run, which is not parsed"))
        }
        "make" | "gmake" => {
            if opt(&["--eval", "-E"]).is_some() {
                return runs("--eval");
            }
            opt(&["-f", "--file", "--makefile"])
                .filter(|f| is_stream(f))
                .map(|f| format!("`{prog}` reads its makefile from `{f}`, which the line does not show"))
        }
        // Database shells escape to the system shell: `\!`, `.shell`, `.system`, output to a pipe.
        "psql" | "mysql" | "mariadb" | "sqlite3" | "duckdb" => {
            let escapes = args.iter().any(|a| {
                let l = a.to_ascii_lowercase();
                l.contains("\\!")
                    || l.contains(".shell")
                    || l.contains(".system")
                    || l.contains("system ")
                    || l.contains("program")
                    || l.contains("|")
                    || l.contains("edit(")
            });
            escapes.then(|| format!("`{prog}` is given commands that escape to the system shell"))
        }
        "npx" | "npm" | "pnpm" | "yarn" | "bunx" => {
            let exec = prog == "npx"
                || prog == "bunx"
                || args.first().is_some_and(|a| matches!(a.as_str(), "exec" | "x" | "dlx"));
            (exec && opt(&["-c", "--call"]).is_some())
                .then(|| format!("`{prog}` runs a command line given in `-c`, which is not parsed"))
        }
        _ => None,
    }
}
