//! Files that build tools read as commands (issue 14, class 3): `make` runs a `Makefile`'s recipes,
//! `npm test` a `package.json` script, `just` a `justfile`'s recipes, `cargo build` a `build.rs`, `pytest`
//! a `conftest.py`. A session that writes such a file and runs the tool runs what it wrote, so the file
//! is judged like a [script file](super::scripts) the session wrote: the commands it gives a shell are
//! judged as if they were on the line; code by the hints inline code gets; what the gate cannot read is
//! opaque. A file the session never wrote is the repository's own and is not judged here.
//!
//! Which tools read which files (from any directory: a relative name is compared by file name):
//!
//! - `make`, `gmake`, `bmake` (any target or none): `GNUmakefile`, `makefile`, `Makefile`, or the files
//!   named by `-f FILE`, `-fFILE`, `--file=FILE`, `--makefile=FILE`;
//! - `npm`, `pnpm`, `yarn`, `bun` with any subcommand but a read-only one ([`READ_ONLY_PACKAGE`]):
//!   `package.json` (every script is judged, not only the one run and its `pre`/`post` hooks: a script
//!   may run another, and install runs lifecycle scripts);
//! - `just`: `justfile`, `Justfile`, `.justfile`, `JUSTFILE`, or `-f`/`--justfile FILE`;
//! - `cargo` building code ([`CARGO_BUILDS`]): `build.rs` (Rust, which the gate does not read: opaque);
//! - `pytest`, `py.test`, `python -m pytest`: `conftest.py` (Python, judged by the code hints).

use crate::shell::{SimpleCommand, program_name};

/// How a command file gives its commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    Make,
    PackageJson,
    Just,
    RustBuild,
    PythonConftest,
}

/// The command files one command reads, and in which format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CommandFiles {
    pub format: Format,
    pub paths: Vec<String>,
}

/// What a command file runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Reading {
    /// Command lines each given to a shell on its own.
    Shell(Vec<String>),
    /// Code run by this interpreter, judged by the hints inline code gets.
    Code(&'static str),
    /// Why the gate cannot tell what it runs.
    Opaque(String),
}

/// Subcommands of `npm`/`pnpm`/`yarn`/`bun` that run no script of `package.json`.
pub const READ_ONLY_PACKAGE: &[&str] = &[
    "help",
    "--help",
    "-h",
    "--version",
    "-v",
    "version",
    "info",
    "view",
    "show",
    "ls",
    "list",
    "why",
    "outdated",
    "audit",
    "config",
    "whoami",
    "search",
    "root",
    "prefix",
    "bin",
    "cache",
];

/// `cargo` subcommands that compile a package, running its `build.rs`.
pub const CARGO_BUILDS: &[&str] =
    &["build", "b", "test", "t", "run", "r", "check", "c", "bench", "install", "clippy", "doc", "d", "rustc", "fix"];

/// The command files `c` reads.
pub(super) fn read_by(c: &SimpleCommand) -> Option<CommandFiles> {
    let argv0 = c.argv.first()?;
    let prog = program_name(argv0).to_ascii_lowercase();
    let args = &c.argv[1..];
    let files = |format: Format, names: &[&str]| CommandFiles {
        format,
        paths: names.iter().map(|n| (*n).to_owned()).collect(),
    };
    match prog.as_str() {
        "make" | "gmake" | "bmake" => {
            let named = named_files(args, &["-f", "--file", "--makefile"]);
            Some(if named.is_empty() {
                files(Format::Make, &["GNUmakefile", "makefile", "Makefile"])
            } else {
                CommandFiles { format: Format::Make, paths: named }
            })
        }
        "npm" | "pnpm" | "yarn" | "bun" => {
            let sub = args.iter().find(|a| !a.starts_with('-') || READ_ONLY_PACKAGE.contains(&a.as_str()));
            (!sub.is_some_and(|s| READ_ONLY_PACKAGE.contains(&s.as_str())))
                .then(|| files(Format::PackageJson, &["package.json"]))
        }
        "just" => {
            let named = named_files(args, &["-f", "--justfile"]);
            Some(if named.is_empty() {
                files(Format::Just, &["justfile", "Justfile", ".justfile", "JUSTFILE"])
            } else {
                CommandFiles { format: Format::Just, paths: named }
            })
        }
        "cargo" => {
            args.iter().any(|a| CARGO_BUILDS.contains(&a.as_str())).then(|| files(Format::RustBuild, &["build.rs"]))
        }
        "pytest" | "py.test" => Some(files(Format::PythonConftest, &["conftest.py"])),
        p if is_python(p) && runs_pytest_module(args) => Some(files(Format::PythonConftest, &["conftest.py"])),
        _ => None,
    }
}

fn is_python(prog: &str) -> bool {
    let rest = prog.strip_prefix("python").or_else(|| prog.strip_prefix("pypy"));
    rest.is_some_and(|r| r.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

fn runs_pytest_module(args: &[String]) -> bool {
    args.iter().zip(args.iter().skip(1)).any(|(a, b)| a == "-m" && b == "pytest")
        || args.iter().any(|a| a == "-mpytest")
}

/// The files named by one of `options` (`-f FILE`, `-fFILE`, `--file=FILE`, `--file FILE`).
fn named_files(args: &[String], options: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        for o in options {
            if a == o {
                out.extend(it.next().cloned());
                break;
            }
            if o.starts_with("--") {
                if let Some(v) = a.strip_prefix(o).and_then(|r| r.strip_prefix('=')) {
                    out.push(v.to_owned());
                }
            } else if let Some(v) = a.strip_prefix(o).filter(|v| !v.is_empty()) {
                out.push(v.to_owned());
            }
        }
    }
    out
}

/// What a command file the session wrote, with this content, runs.
pub(super) fn read(format: Format, content: &str) -> Reading {
    let lines = match format {
        Format::Make => make_recipes(content),
        Format::PackageJson => package_scripts(content),
        Format::Just => just_recipes(content),
        Format::RustBuild => return Reading::Opaque("it is a Rust build script, which the gate does not read".into()),
        Format::PythonConftest => return Reading::Code("python3"),
    };
    match lines {
        Ok(lines) => Reading::Shell(lines),
        Err(why) => Reading::Opaque(why),
    }
}

/// Logical lines: a line ending in `\` goes on with the next one.
fn logical_lines(content: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut going_on = false;
    for line in content.lines() {
        match out.last_mut() {
            Some(last) if going_on => {
                last.push('\n');
                last.push_str(line);
            }
            _ => out.push(line.to_owned()),
        }
        going_on = line.ends_with('\\');
    }
    out
}

/// A recipe line as make gives it to the shell: its `@` (silent), `-` (ignore errors) and `+` (run even
/// under `-n`) prefixes removed. Make's own `$(VAR)` and `$$` are left: the parser sees a substitution.
fn recipe_line(line: &str) -> String {
    line.trim_start().trim_start_matches(['@', '-', '+', ' ', '\t']).to_owned()
}

/// A Makefile's recipes: lines starting with a tab, and the part after `;` of a rule line (`t: ; cmd`).
/// Opaque: what make itself runs or reads that is not a recipe (`$(shell …)`, `!=`, `$(eval …)`,
/// `include`), and what changes how recipes are read or run (`.RECIPEPREFIX`, `SHELL`).
fn make_recipes(content: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for line in logical_lines(content) {
        for (needle, why) in [
            ("$(shell", "a `$(shell …)` function"),
            ("${shell", "a `${shell …}` function"),
            ("$(eval", "an `$(eval …)` function"),
            ("${eval", "an `${eval …}` function"),
            ("$(file", "a `$(file …)` function"),
            ("${file", "a `${file …}` function"),
            ("$(guile", "a `$(guile …)` function"),
            (".RECIPEPREFIX", "`.RECIPEPREFIX`"),
        ] {
            if line.contains(needle) {
                return Err(format!("it holds {why}, which the gate does not follow"));
            }
        }
        if let Some(recipe) = line.strip_prefix('\t') {
            out.push(recipe_line(recipe));
            continue;
        }
        let words: Vec<&str> =
            line.split_whitespace().skip_while(|w| matches!(*w, "export" | "override" | "private")).collect();
        if let Some(first) = words.first() {
            if matches!(*first, "include" | "-include" | "sinclude") {
                return Err("it includes another makefile, which the gate does not follow".into());
            }
            if first.starts_with("SHELL") || first.starts_with(".SHELLFLAGS") {
                return Err("it sets the shell its recipes run with".into());
            }
        }
        if line.contains("!=") {
            return Err("it assigns a variable the output of a command (`!=`)".into());
        }
        if let Some(colon) = line.find(':')
            && let Some(semi) = line[colon..].find(';')
        {
            out.push(recipe_line(&line[colon + semi + 1..]));
        }
    }
    Ok(out)
}

/// Every script of a `package.json`.
fn package_scripts(content: &str) -> Result<Vec<String>, String> {
    let json: serde_json::Value =
        serde_json::from_str(content).map_err(|e| format!("it is not JSON the gate can read ({e})"))?;
    let Some(scripts) = json.get("scripts") else { return Ok(Vec::new()) };
    let scripts = scripts.as_object().ok_or("its `scripts` is not an object")?;
    scripts
        .iter()
        .map(|(name, s)| s.as_str().map(str::to_owned).ok_or_else(|| format!("its script `{name}` is not a string")))
        .collect()
}

/// A justfile's recipes: its indented lines. Opaque: backticks outside recipes (run when the file is
/// loaded), `{{…}}` interpolations in recipes (their values are not followed), recipes run by another
/// interpreter (`#!` lines) and settings that change the shell (`set shell`, `set script-interpreter`…).
fn just_recipes(content: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for line in logical_lines(content) {
        let trimmed = line.trim_start();
        if trimmed.len() < line.len() && !trimmed.is_empty() {
            if trimmed.starts_with("#!") {
                return Err("a recipe runs with its own `#!` interpreter".into());
            }
            if trimmed.contains("{{") {
                return Err("a recipe holds a `{{…}}` interpolation, whose value the gate does not follow".into());
            }
            out.push(recipe_line(trimmed));
            continue;
        }
        if trimmed.contains('`') {
            return Err("it runs a backtick command when it is loaded".into());
        }
        if trimmed.starts_with("set ") || trimmed.starts_with("import ") || trimmed.starts_with("mod ") {
            return Err(format!(
                "it holds `{}`, which the gate does not follow",
                trimmed.split(':').next().unwrap_or(trimmed).trim()
            ));
        }
        if let Some(colon) = trimmed.find(':')
            && !trimmed[colon..].starts_with(":=")
            && trimmed[colon + 1..].contains("&&")
        {
            return Err("a recipe runs other recipes after it (`&&`)".into());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::parse_commands;

    fn files(line: &str) -> Option<CommandFiles> {
        parse_commands(line).expect("parses").iter().find_map(read_by)
    }

    #[test]
    fn tools_and_the_files_they_read() {
        for (line, format, first) in [
            ("make", Format::Make, "GNUmakefile"),
            ("sudo make test", Format::Make, "GNUmakefile"),
            ("make -f build.mk all", Format::Make, "build.mk"),
            ("make --file=x.mk", Format::Make, "x.mk"),
            ("gmake -fy.mk", Format::Make, "y.mk"),
            ("npm test", Format::PackageJson, "package.json"),
            ("npm install", Format::PackageJson, "package.json"),
            ("yarn", Format::PackageJson, "package.json"),
            ("pnpm run build", Format::PackageJson, "package.json"),
            ("just deploy", Format::Just, "justfile"),
            ("just --justfile j.just", Format::Just, "j.just"),
            ("cargo +nightly test", Format::RustBuild, "build.rs"),
            ("pytest -q", Format::PythonConftest, "conftest.py"),
            ("python3 -m pytest", Format::PythonConftest, "conftest.py"),
        ] {
            let f = files(line).unwrap_or_else(|| panic!("{line}"));
            assert_eq!((f.format, f.paths[0].as_str()), (format, first), "{line}");
        }
        for line in ["npm --version", "npm ls", "yarn why x", "cargo fmt", "python3 -m venv x", "ls Makefile"] {
            assert_eq!(files(line), None, "{line}");
        }
    }

    #[test]
    fn makefile_recipes() {
        let mk = "X := 1\ntest: build ; cargo build\n\t@cargo test \\\n  --all\n\t-rm -f x\n";
        assert_eq!(make_recipes(mk).unwrap(), ["cargo build", "cargo test \\\n  --all", "rm -f x"]);
        for mk in ["X := $(shell git push -f)\n", "include a.mk\n", "SHELL = python3\n", "X != git push\n"] {
            assert!(make_recipes(mk).is_err(), "{mk}");
        }
    }

    #[test]
    fn package_json_scripts() {
        let p = r#"{"name": "x", "scripts": {"test": "jest", "postinstall": "git push -f"}}"#;
        assert_eq!(package_scripts(p).unwrap(), ["git push -f", "jest"]);
        assert_eq!(package_scripts(r#"{"name": "x"}"#).unwrap(), Vec::<String>::new());
        assert!(package_scripts("{not json").is_err());
        assert!(package_scripts(r#"{"scripts": {"t": 1}}"#).is_err());
    }

    #[test]
    fn justfile_recipes() {
        let j = "# build\ntest:\n    @cargo test\n\ndeploy: test\n  git push origin feature/x\n";
        assert_eq!(just_recipes(j).unwrap(), ["cargo test", "git push origin feature/x"]);
        for j in ["x := `git push -f`\n", "set shell := [\"python3\", \"-c\"]\n", "t:\n  #!/usr/bin/env python3\n"] {
            assert!(just_recipes(j).is_err(), "{j}");
        }
    }
}
