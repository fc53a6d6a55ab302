//! Shell command lines as the shell would run them, for policies that must see every program a shell
//! tool call starts — `git push --force` stays a force push in every spelling the parser sees through,
//! and what it cannot see through stays visible as such (see [`crate::opaque`]), so that rules ask.
//!
//! [`parse_commands`] tokenizes a POSIX/bash-style line (quotes, `$'…'`, escapes, continuations,
//! comments, heredocs, brace expansion), walks its grammar (lists, pipelines, subshells, groups,
//! `if`/`while`/`for`/`case`, functions, `[[ ]]`, `(( ))`) and returns every simple command in order.
//! It recurses into everything that runs a command line — `$( )`, backticks, `<( )`, `bash -c`,
//! `eval`, `watch`, `su -c`, `ssh host cmd`, `trap`, aliases and function calls, a script fed to a
//! shell (`bash <<EOF`, `echo … | sh`, `source <(echo …)`), git aliases, hooks and `--exec` given on
//! the line — and peels wrappers (`sudo`, `env`, `timeout`, `xargs`, `find -exec`, …) so that
//! `argv[0]` is the program that really runs.
//!
//! It fails closed: input it cannot tokenize (an unterminated quote, `$(` without `)`, a stray `fi`),
//! nesting deeper than [`MAX_DEPTH`], input over [`MAX_INPUT`] or runaway expansion is an error, which
//! callers treat as suspicious. Where the real meaning is ambiguous it reports too much (an extra
//! command) rather than too little.
//!
//! Variables are not expanded in general (`git $SUB` reports the subcommand `$SUB`), but a word that
//! is exactly a variable assigned earlier on the line (`c="git push -f"; $c`, also `printf -v c '…'`,
//! `c+=…`, a `for` over literal words), a positional parameter of a `bash -c` script, a function or
//! `set -- …`, a `${x:-default}` or an `$(echo …)` also yields the command with those values, as extra
//! commands; unquoted values are split by blanks and by every `IFS` assigned on the line. A program that is itself an expansion is
//! reported with its values when the line shows all of them; otherwise (`$(which git) push`,
//! `$SUDO git push`, a variable also set by `read`) it is reported as is, the expansion as `argv[0]`,
//! and its arguments as a command of their own.
//!
//! A shell whose script the line does not show (`bash x.sh`, `curl … | sh`, `bash < file`) is
//! reported itself, as `bash`; one whose script it shows (`-c`, a heredoc, `echo … | sh`,
//! `<(echo …)`) is reported as the commands it runs. An interpreter reading its program from a heredoc
//! or here-string (`python3 <<'EOF'`) is reported with it as `-c`/`-e` code (`python3 -c CODE`). Assignments alone (`PATH=/x:$PATH`) are reported
//! as a command with an empty `argv` and the assignments as its `wrappers`. [`crate::opaque`] reads
//! these to tell which lines hide what runs: scripts in files or from programs, other interpreters
//! (`python -c`), commands inside containers are out of reach of this parser by nature.
//!
//! Pure: no IO, no environment, no processes. Recursion is bounded by [`MAX_DEPTH`], work by the
//! size of the input.

use std::collections::HashMap;
use std::mem;
use std::rc::Rc;

/// Longest command line accepted, in bytes; longer input is refused rather than parsed.
pub const MAX_INPUT: usize = 256 * 1024;
/// Deepest nesting accepted (subshells, groups, compound commands, substitutions, nested shells…).
pub const MAX_DEPTH: usize = 16;
/// Most words one brace expansion (`{a,b}`, `{1..9}`) may produce.
const MAX_BRACE_WORDS: usize = 1024;
/// Most characters all brace expansions of one word may produce, so hostile input stays cheap.
const MAX_BRACE_CHARS: usize = 1 << 20;
/// Most wrapper layers peeled off one command (`sudo env nice …`).
const MAX_PEELS: usize = 64;
/// Most variants of one command tried with the values of its variables (`$c push`, `c` assigned
/// several times); also the most values remembered per variable.
const MAX_VARIANTS: usize = 8;
/// Most variables, functions and aliases remembered, each.
const MAX_NAMES: usize = 256;
/// Most commands one line may produce (function calls and variants multiply them); more is an error.
const MAX_COMMANDS: usize = 50_000;
/// Most bytes of argv all commands of one line may hold together; more is an error.
const MAX_OUTPUT: usize = 16 << 20;
/// Longest variable value remembered for substitution (longer values are data, not commands).
const MAX_VALUE_LEN: usize = 4096;

/// One simple command as it would run: argv after quote removal, with leading wrapper commands and
/// `VAR=value` assignments peeled off. A statement of assignments alone has an empty `argv`. `wrappers` records what was peeled (e.g. `["sudo", "timeout"]`),
/// outermost first, including the shells, `eval`, `xargs` or `find` a nested command line ran under,
/// and assignments as `NAME=value` entries (`GH_REPO=o/r gh …` → `["GH_REPO=o/r"]`), since some
/// change what the program does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimpleCommand {
    pub argv: Vec<String>,
    pub wrappers: Vec<String>,
}

/// Why a command line could not be parsed. Callers should treat the line as suspicious.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    #[error("unterminated {0}")]
    UnbalancedQuote(&'static str),
    #[error("unbalanced {0}")]
    Unbalanced(&'static str),
    #[error("unexpected {0}")]
    Unexpected(String),
    #[error("`{0}` is not followed by a word")]
    MissingWord(&'static str),
    #[error("nesting is deeper than {} levels", MAX_DEPTH)]
    TooDeep,
    #[error("the command line is longer than {} bytes", MAX_INPUT)]
    TooLong,
    #[error("brace expansion produces more than {} words", MAX_BRACE_WORDS)]
    TooManyWords,
    #[error("the command line expands to more than {} commands or {} bytes", MAX_COMMANDS, MAX_OUTPUT)]
    TooManyCommands,
}

type Res<T> = Result<T, ShellError>;

/// Every simple command a command line would run, in order, recursing into nested shells.
pub fn parse_commands(line: &str) -> Result<Vec<SimpleCommand>, ShellError> {
    let mut out = Out::default();
    parse_into(line, 0, &[], false, Env::default(), &mut out)?;
    Ok(out.cmds)
}

/// The program's file name: `/usr/bin/git` → `git`. A trailing `.exe` is dropped too, since
/// `git.exe` runs the same program.
pub fn program_name(argv0: &str) -> &str {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    match base.len().checked_sub(4) {
        Some(n) if n > 0 && base.is_char_boundary(n) && base[n..].eq_ignore_ascii_case(".exe") => &base[..n],
        _ => base,
    }
}

/// Parses `src` as a complete command line, appending its commands to `out`, each prefixed with `ctx`
/// (the wrappers of the command that runs this line). `posix`: the line may run under a POSIX `sh`
/// such as dash, where `((…))` is two nested subshells rather than arithmetic. `env`: the shell state
/// it starts with.
fn parse_into(src: &str, depth: usize, ctx: &[String], posix: bool, env: Env, out: &mut Out) -> Res<()> {
    if src.len() > MAX_INPUT {
        return Err(ShellError::TooLong);
    }
    if depth > MAX_DEPTH {
        return Err(ShellError::TooDeep);
    }
    out.check()?;
    let mut p = Parser::new(src, depth, ctx.to_vec(), posix, env, out);
    p.parse_list()?;
    match p.next()? {
        Tok::Eof => Ok(()),
        t => Err(t.unexpected()),
    }
}

// ---------------------------------------------------------------------------------------------
// Words and tokens
// ---------------------------------------------------------------------------------------------

/// A word after quote removal. `quoted[i]` tells whether the i-th char was quoted (or came from an
/// expansion), which decides reserved words, assignments and brace expansion.
#[derive(Clone, Debug, Default)]
struct Word {
    text: String,
    quoted: Vec<bool>,
    /// Any quoting at all, so that `''` is an (empty) word and `"if"` is not a keyword.
    had_quotes: bool,
    /// A `${…}` expansion outside double quotes (its value would be split into words).
    bare_expansion: bool,
    /// The elements of an array assignment `name=(a b c)`.
    array: Option<Vec<String>>,
    /// For a word that is one command or process substitution of `echo`/`printf` (`$(echo git)`).
    printed: Option<Printed>,
}

#[derive(Clone, Debug)]
struct Printed {
    /// The substitution's source text (the word must be exactly this).
    raw: String,
    /// What it prints.
    text: String,
    /// Unquoted: its output is split into words.
    split: bool,
    /// A process substitution `<(…)`: a file holding the text.
    file: bool,
}

impl Word {
    fn push(&mut self, c: char, quoted: bool) {
        self.text.push(c);
        self.quoted.push(quoted);
        self.had_quotes |= quoted;
    }

    /// Text of an expansion (`$(…)`, `${…}`, backticks) kept literally; marked quoted so it never
    /// forms syntax of its own.
    fn push_expansion(&mut self, raw: &[char]) {
        for &c in raw {
            self.push(c, true);
        }
    }

    fn chars(&self) -> Vec<(char, bool)> {
        self.text.chars().zip(self.quoted.iter().copied()).collect()
    }
}

#[derive(Debug)]
enum Tok {
    Word(Word),
    /// `;` `&` `&&` `||` `|` `|&` `;;` `;&` `;;&` `(` `)` and `"\n"`.
    Op(&'static str),
    Redir(Redir),
    /// An arithmetic command `(( … ))`, already scanned.
    Arith,
    Eof,
}

#[derive(Debug)]
enum Redir {
    /// A heredoc (`<<`, `<<-`) by index; its body is read at the next newline.
    Heredoc(usize),
    Op(&'static str),
}

impl Tok {
    fn unexpected(&self) -> ShellError {
        match self {
            Tok::Eof => ShellError::Unexpected("end of input".into()),
            Tok::Op("\n") => ShellError::Unexpected("newline".into()),
            Tok::Op(")") => ShellError::Unbalanced("`)`"),
            Tok::Op(o) => ShellError::Unexpected(format!("`{o}`")),
            Tok::Word(w) => ShellError::Unexpected(format!("`{}`", w.text)),
            Tok::Redir(_) => ShellError::Unexpected("redirection".into()),
            Tok::Arith => ShellError::Unexpected("`((`".into()),
        }
    }
}

const RESERVED: &[&str] = &[
    "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for", "select", "in",
    "function", "{", "}", "[[", "]]", "!", "time", "coproc",
];

/// The reserved word `w` is, if it is one (only unquoted words are).
fn reserved(w: &Word) -> Option<&'static str> {
    if w.had_quotes {
        return None;
    }
    RESERVED.iter().find(|r| **r == w.text).copied()
}

/// Characters that end an unquoted word.
fn is_meta(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>')
}

struct Heredoc {
    delim: String,
    strip_tabs: bool,
    quoted: bool,
    body: Option<String>,
}

/// Where a simple command's standard input comes from, as far as the line shows.
#[derive(Clone, Debug)]
enum Stdin {
    /// The terminal or a pipe.
    Inherited,
    Heredoc(usize),
    Text(String),
    File,
}

/// Text a command writes to stdout that a shell downstream in a pipeline would run.
enum Feed {
    Text(String),
    Heredoc(usize),
}

/// What a finished command means for its neighbours in a pipeline.
#[derive(Default)]
struct Fin {
    /// Known output (`echo …`, `cat <<EOF`).
    stdout: Option<Feed>,
    /// The command is a shell reading its script from stdin; the wrappers its commands run under.
    stdin_shell: Option<Vec<String>>,
    /// Where that shell was reported in the output: it is taken back out when its script turns out to
    /// be known (fed by `echo … |`), as then the commands it runs are reported instead.
    stdin_shell_at: Option<usize>,
}

enum Step {
    /// A wrapper: continue with the wrapped command.
    Peel(Vec<String>),
    Done(Fin),
}

// ---------------------------------------------------------------------------------------------
// Parser (a lexer and recursive-descent parser sharing one cursor, as `$(` needs the grammar)
// ---------------------------------------------------------------------------------------------

struct Parser<'o> {
    src: Vec<char>,
    pos: usize,
    depth: usize,
    /// Wrappers every command of this source runs under.
    ctx: Vec<String>,
    /// The source may run under a POSIX `sh` (see [`parse_into`]).
    posix: bool,
    out: &'o mut Out,
    peeked: Option<Tok>,
    /// Source span of the peeked token.
    peeked_span: (usize, usize),
    /// Where the token last lexed starts.
    tok_start: usize,
    /// Where the token last consumed ends.
    last_end: usize,
    heredocs: Vec<Heredoc>,
    /// Heredocs whose bodies start after the next newline.
    pending: Vec<usize>,
    /// Heredocs to parse as scripts once their bodies are read (`bash <<EOF | cat`), with the
    /// wrappers and dialect of the shell reading them.
    deferred: Vec<(usize, Vec<String>, bool)>,
    env: Env,
    /// The program of the command being run is an expansion whose every value is known, and the
    /// command is reported with those values: the expansion itself need not be (see [`Self::dynamic`]).
    program_seen: bool,
    /// Interpreters whose program is a heredoc not read yet: the heredoc, where the command is in
    /// the output, and the option that gives code on the command line.
    deferred_code: Vec<(usize, usize, &'static str)>,
}

/// The commands found so far, shared by every nested parse, and the bytes they hold.
#[derive(Default)]
struct Out {
    cmds: Vec<SimpleCommand>,
    bytes: usize,
    /// Programs reported with their values (the variable and the command as written), for loops
    /// (see [`Parser::loop_end`]); shared, as a loop may run `eval` or a function.
    resolved: Vec<(String, SimpleCommand)>,
}

impl Out {
    fn push(&mut self, cmd: SimpleCommand) {
        self.bytes += cmd.argv.iter().chain(&cmd.wrappers).map(|s| s.len() + 1).sum::<usize>();
        self.cmds.push(cmd);
    }

    /// Fails once the line has produced too much: hostile input must stay cheap.
    fn check(&self) -> Res<()> {
        if self.cmds.len() > MAX_COMMANDS || self.bytes > MAX_OUTPUT {
            return Err(ShellError::TooManyCommands);
        }
        Ok(())
    }
}

/// Shell state a command line builds up, which lines run by the same shell (`eval`, `$( )`, a
/// function body) inherit: variables, functions, aliases and positional parameters.
#[derive(Clone, Default)]
struct Env {
    /// The latest values assigned to each variable (which one is live is unknown).
    /// Shared, copied on write: every substitution gets a copy of the environment.
    vars: Rc<HashMap<String, Vec<Value>>>,
    /// Function bodies by name.
    functions: Rc<HashMap<String, String>>,
    aliases: Rc<HashMap<String, String>>,
    /// `$0`, `$1`, … when known (`bash -c '…' zero one`, a function call).
    positional: Option<Rc<Vec<String>>>,
    /// Functions being expanded, so that recursion stops.
    calling: Vec<String>,
}

#[derive(Clone, PartialEq, Eq)]
enum Value {
    Scalar(String),
    Array(Vec<String>),
    /// Set by something whose value the line does not show (`read c`, `mapfile`, `printf -v c "$f"`,
    /// a nameref): a program named by this variable cannot be known.
    Unknown,
}

impl<'o> Parser<'o> {
    fn new(src: &str, depth: usize, ctx: Vec<String>, posix: bool, env: Env, out: &'o mut Out) -> Self {
        Parser {
            src: src.chars().collect(),
            pos: 0,
            depth,
            ctx,
            posix,
            out,
            peeked: None,
            peeked_span: (0, 0),
            tok_start: 0,
            last_end: 0,
            heredocs: Vec::new(),
            pending: Vec::new(),
            deferred: Vec::new(),
            env,
            program_seen: false,
            deferred_code: Vec::new(),
        }
    }

    /// What a loop must compare at its end (see [`Self::loop_end`]).
    fn loop_start(&self) -> (usize, Rc<HashMap<String, Vec<Value>>>) {
        (self.out.resolved.len(), self.env.vars.clone())
    }

    /// A loop runs its body again with the values assigned later in it (`c=echo; while :; do $c x;
    /// c=git; done`): a program reported with its values inside the loop, whose variable the loop
    /// changes, is reported as written after all, since the values it was reported with are not all.
    fn loop_end(&mut self, (mark, before): (usize, Rc<HashMap<String, Vec<Value>>>)) {
        let changed: Vec<SimpleCommand> = self.out.resolved[mark.min(self.out.resolved.len())..]
            .iter()
            .filter(|(name, _)| before.get(name) != self.env.vars.get(name))
            .map(|(_, cmd)| cmd.clone())
            .collect();
        for cmd in changed {
            self.out.push(cmd);
        }
    }

    // --- cursor -------------------------------------------------------------------------------

    fn cur(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }

    fn at(&self, k: usize) -> Option<char> {
        self.src.get(self.pos + k).copied()
    }

    fn looking_at(&self, s: &str) -> bool {
        s.chars().enumerate().all(|(k, c)| self.at(k) == Some(c))
    }

    /// Consumes the first of `ops` the input starts with (the last one is a single char known to match).
    fn take_op(&mut self, ops: &[&'static str]) -> &'static str {
        let op = ops.iter().copied().find(|op| self.looking_at(op)).unwrap_or(ops[ops.len() - 1]);
        self.pos += op.chars().count();
        op
    }

    fn raw(&self, start: usize) -> &[char] {
        &self.src[start.min(self.pos)..self.pos]
    }

    fn enter(&mut self) -> Res<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH { Err(ShellError::TooDeep) } else { Ok(()) }
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    // --- tokens -------------------------------------------------------------------------------

    fn peek(&mut self) -> Res<&Tok> {
        if self.peeked.is_none() {
            let t = self.lex()?;
            self.peeked = Some(t);
            self.peeked_span = (self.tok_start, self.pos);
        }
        Ok(self.peeked.as_ref().expect("filled above"))
    }

    fn next(&mut self) -> Res<Tok> {
        let t = match self.peeked.take() {
            Some(t) => {
                self.last_end = self.peeked_span.1;
                t
            }
            None => {
                let t = self.lex()?;
                self.last_end = self.pos;
                t
            }
        };
        Ok(t)
    }

    /// Parses a function body (the next command) and remembers it under `name`.
    fn function_body(&mut self, name: String) -> Res<()> {
        self.skip_newlines()?;
        self.peek()?;
        let start = self.peeked_span.0;
        self.enter()?;
        self.parse_command(&[])?;
        self.leave();
        let body: String = self.src[start.min(self.last_end)..self.last_end].iter().collect();
        if self.env.functions.len() < MAX_NAMES || self.env.functions.contains_key(&name) {
            Rc::make_mut(&mut self.env.functions).insert(name, body);
        }
        Ok(())
    }

    fn peek_op(&mut self, ops: &[&str]) -> Res<bool> {
        Ok(matches!(self.peek()?, Tok::Op(o) if ops.contains(o)))
    }

    fn peek_reserved(&mut self) -> Res<Option<&'static str>> {
        Ok(match self.peek()? {
            Tok::Word(w) => reserved(w),
            _ => None,
        })
    }

    fn skip_newlines(&mut self) -> Res<()> {
        while self.peek_op(&["\n"])? {
            self.next()?;
        }
        Ok(())
    }

    fn expect_reserved(&mut self, kw: &str, what: &'static str) -> Res<()> {
        if self.peek_reserved()? == Some(kw) {
            self.next()?;
            return Ok(());
        }
        match self.next()? {
            Tok::Eof => Err(ShellError::Unbalanced(what)),
            t => Err(t.unexpected()),
        }
    }

    fn expect_close(&mut self, what: &'static str) -> Res<()> {
        match self.next()? {
            Tok::Op(")") => Ok(()),
            Tok::Eof => Err(ShellError::Unbalanced(what)),
            t => Err(t.unexpected()),
        }
    }

    /// Whether the next token ends the current list: end of input, `)`, `;;` or a closing keyword.
    fn at_end(&mut self) -> Res<bool> {
        Ok(match self.peek()? {
            Tok::Eof => true,
            Tok::Op(o) => matches!(*o, ")" | ";;" | ";&" | ";;&"),
            Tok::Word(w) => {
                matches!(reserved(w), Some("}" | "then" | "else" | "elif" | "fi" | "do" | "done" | "esac"))
            }
            _ => false,
        })
    }

    // --- grammar ------------------------------------------------------------------------------

    /// A list of and-or lists up to (not including) whatever ends it; the caller checks the ending.
    fn parse_list(&mut self) -> Res<()> {
        loop {
            self.skip_newlines()?;
            if self.at_end()? {
                return Ok(());
            }
            self.parse_and_or()?;
            if self.peek_op(&[";", "&", "\n"])? {
                self.next()?;
            } else if !self.at_end()? {
                return Err(self.next()?.unexpected());
            }
        }
    }

    fn parse_and_or(&mut self) -> Res<()> {
        self.parse_pipeline()?;
        while self.peek_op(&["&&", "||"])? {
            self.next()?;
            self.skip_newlines()?;
            self.parse_pipeline()?;
        }
        Ok(())
    }

    fn parse_pipeline(&mut self) -> Res<()> {
        // `!` and `time [-p]` prefix a whole pipeline; looping (not recursing) keeps `! ! !…` flat.
        let mut pre = Vec::new();
        loop {
            match self.peek_reserved()? {
                Some("!") => {
                    self.next()?;
                }
                Some("time") => {
                    self.next()?;
                    pre.push("time".to_string());
                    if matches!(self.peek()?, Tok::Word(w) if w.text == "-p" || w.text == "--") {
                        self.next()?;
                    }
                }
                _ => break,
            }
        }
        if !pre.is_empty() && (self.at_end()? || self.peek_op(&[";", "&", "\n", "&&", "||", "|", "|&"])?) {
            return Ok(()); // a bare `time`
        }
        let mut prev = self.parse_command(&pre)?;
        while self.peek_op(&["|", "|&"])? {
            self.next()?;
            self.skip_newlines()?;
            let cur = self.parse_command(&pre)?;
            // `echo 'git push -f' | bash`: the downstream shell runs what upstream prints.
            if let (Some(feed), Some(wrappers)) = (prev.stdout.take(), cur.stdin_shell.clone()) {
                // Its script is known after all: report what it runs instead of the shell.
                if let Some(at) = cur.stdin_shell_at.filter(|&at| at < self.out.cmds.len()) {
                    self.out.cmds.remove(at);
                }
                self.feed(feed, wrappers)?;
            }
            prev = cur;
        }
        Ok(())
    }

    fn parse_command(&mut self, pre: &[String]) -> Res<Fin> {
        let kw = match self.peek()? {
            Tok::Op("(") => {
                self.next()?;
                self.enter()?;
                self.parse_list()?;
                self.expect_close("`(`")?;
                self.leave();
                self.trailing_redirects()?;
                return Ok(Fin::default());
            }
            Tok::Arith => {
                self.next()?;
                self.trailing_redirects()?;
                return Ok(Fin::default());
            }
            Tok::Word(w) => reserved(w),
            Tok::Redir(_) => None,
            _ => return Err(self.next()?.unexpected()),
        };
        let Some(kw) = kw else { return self.parse_simple(pre, Vec::new()) };
        self.enter()?;
        match kw {
            "{" => {
                self.next()?;
                self.parse_list()?;
                self.expect_reserved("}", "`{` (missing `}`)")?;
            }
            "if" => self.parse_if()?,
            "while" | "until" => {
                let start = self.loop_start();
                self.next()?;
                self.parse_list()?;
                self.expect_reserved("do", "`while` (missing `do`)")?;
                self.parse_list()?;
                self.expect_reserved("done", "`do` (missing `done`)")?;
                self.loop_end(start);
            }
            "for" | "select" => self.parse_for()?,
            "case" => self.parse_case()?,
            "function" => {
                self.next()?;
                let name = match self.next()? {
                    Tok::Word(w) => w.text,
                    t => return Err(t.unexpected()),
                };
                if self.peek_op(&["("])? {
                    self.next()?;
                    self.expect_close("`(`")?;
                }
                self.function_body(name)?;
            }
            "[[" => {
                self.next()?;
                // Operators inside `[[ ]]` are part of the test; only words can hide substitutions,
                // and the lexer has already handled those.
                loop {
                    match self.next()? {
                        Tok::Word(w) if !w.had_quotes && w.text == "]]" => break,
                        Tok::Eof => return Err(ShellError::Unbalanced("`[[` (missing `]]`)")),
                        _ => {}
                    }
                }
            }
            "coproc" => {
                self.next()?;
                let compound = |p: &mut Self| -> Res<bool> {
                    Ok(matches!(p.peek()?, Tok::Op("(") | Tok::Arith)
                        || matches!(
                            p.peek_reserved()?,
                            Some("{" | "if" | "while" | "until" | "for" | "select" | "case" | "[[")
                        ))
                };
                if compound(self)? {
                    self.parse_command(pre)?;
                } else {
                    // `coproc NAME { …; }` or `coproc cmd args`.
                    let first = match self.next()? {
                        Tok::Word(w) => w,
                        t => return Err(t.unexpected()),
                    };
                    if compound(self)? {
                        self.parse_command(pre)?;
                    } else {
                        self.parse_simple(pre, vec![first])?;
                    }
                }
            }
            "!" | "time" => {
                self.next()?;
                self.parse_command(pre)?;
            }
            _ => return Err(self.next()?.unexpected()),
        }
        self.leave();
        self.trailing_redirects()?;
        Ok(Fin::default())
    }

    fn parse_if(&mut self) -> Res<()> {
        self.next()?;
        self.parse_list()?;
        self.expect_reserved("then", "`if` (missing `then`)")?;
        self.parse_list()?;
        loop {
            match self.peek_reserved()? {
                Some("elif") => {
                    self.next()?;
                    self.parse_list()?;
                    self.expect_reserved("then", "`elif` (missing `then`)")?;
                    self.parse_list()?;
                }
                Some("else") => {
                    self.next()?;
                    self.parse_list()?;
                    return self.expect_reserved("fi", "`if` (missing `fi`)");
                }
                _ => return self.expect_reserved("fi", "`if` (missing `fi`)"),
            }
        }
    }

    fn parse_for(&mut self) -> Res<()> {
        self.next()?;
        let name = match self.next()? {
            Tok::Word(w) => Some(w.text),
            Tok::Arith => None,
            t => return Err(t.unexpected()),
        };
        self.skip_newlines()?;
        // The loop variable takes each word in turn (`for c in git ls`); without `in`, the
        // positional parameters, which are not tracked here.
        let mut values = None;
        if self.peek_reserved()? == Some("in") {
            self.next()?;
            let mut words = Vec::new();
            while matches!(self.peek()?, Tok::Word(_)) {
                // The words' substitutions were parsed when they were lexed.
                if let Tok::Word(w) = self.next()? {
                    words.extend(brace_expand(&w)?);
                }
            }
            values = Some(words);
        }
        if let Some(name) = name.filter(|n| is_assignment_str(&format!("{n}="))) {
            match values {
                // A word that expands (`$(cat f)`, `*.sh`) gives values the line does not show.
                Some(words)
                    if words.len() <= MAX_VARIANTS && !words.iter().any(|w| w.contains(['$', '`', '*', '?', '['])) =>
                {
                    for word in words {
                        self.set_var(&name, Value::Scalar(word));
                    }
                }
                _ => self.set_var(&name, Value::Unknown),
            }
        }
        let start = self.loop_start();
        if self.peek_op(&[";"])? {
            self.next()?;
        }
        self.skip_newlines()?;
        if self.peek_reserved()? == Some("{") {
            self.next()?;
            self.parse_list()?;
            self.expect_reserved("}", "`{` (missing `}`)")?;
            self.loop_end(start);
            return Ok(());
        }
        self.expect_reserved("do", "`for` (missing `do`)")?;
        self.parse_list()?;
        self.expect_reserved("done", "`do` (missing `done`)")?;
        self.loop_end(start);
        Ok(())
    }

    fn parse_case(&mut self) -> Res<()> {
        self.next()?;
        match self.next()? {
            Tok::Word(_) => {}
            Tok::Eof => return Err(ShellError::MissingWord("case")),
            t => return Err(t.unexpected()),
        }
        self.skip_newlines()?;
        self.expect_reserved("in", "`case` (missing `in`)")?;
        loop {
            self.skip_newlines()?;
            if self.peek_reserved()? == Some("esac") {
                self.next()?;
                return Ok(());
            }
            if self.peek_op(&["("])? {
                self.next()?;
            }
            loop {
                match self.next()? {
                    Tok::Word(_) => {}
                    Tok::Eof => return Err(ShellError::Unbalanced("`case` (missing `esac`)")),
                    t => return Err(t.unexpected()),
                }
                match self.next()? {
                    Tok::Op("|") => {}
                    Tok::Op(")") => break,
                    Tok::Eof => return Err(ShellError::Unbalanced("`case` (missing `esac`)")),
                    t => return Err(t.unexpected()),
                }
            }
            self.parse_list()?;
            match self.next()? {
                Tok::Op(";;" | ";&" | ";;&") => {}
                Tok::Word(w) if reserved(&w) == Some("esac") => return Ok(()),
                Tok::Eof => return Err(ShellError::Unbalanced("`case` (missing `esac`)")),
                t => return Err(t.unexpected()),
            }
        }
    }

    /// Redirections after a compound command (`done < file`, `} > out`).
    fn trailing_redirects(&mut self) -> Res<()> {
        let mut stdin = Stdin::Inherited;
        while matches!(self.peek()?, Tok::Redir(_)) {
            self.redirect(&mut stdin)?;
        }
        Ok(())
    }

    fn redirect(&mut self, stdin: &mut Stdin) -> Res<()> {
        match self.next()? {
            Tok::Redir(Redir::Heredoc(id)) => *stdin = Stdin::Heredoc(id),
            Tok::Redir(Redir::Op(op)) => match self.next()? {
                Tok::Word(w) => match op {
                    "<<<" => *stdin = Stdin::Text(w.text),
                    "<" | "<>" => *stdin = Stdin::File,
                    _ => {}
                },
                Tok::Eof => return Err(ShellError::MissingWord(op)),
                t => return Err(t.unexpected()),
            },
            t => return Err(t.unexpected()),
        }
        Ok(())
    }

    fn parse_simple(&mut self, pre: &[String], mut words: Vec<Word>) -> Res<Fin> {
        let mut stdin = Stdin::Inherited;
        loop {
            match self.peek()? {
                Tok::Word(_) => {
                    if let Tok::Word(w) = self.next()? {
                        words.push(w);
                    }
                }
                Tok::Redir(_) => self.redirect(&mut stdin)?,
                Tok::Op("(") if words.len() == 1 && is_function_name(&words[0]) => {
                    // `name () compound-command`
                    self.next()?;
                    self.expect_close("`(`")?;
                    let name = words.remove(0).text;
                    self.function_body(name)?;
                    return Ok(Fin::default());
                }
                Tok::Op("(") => return Err(ShellError::Unexpected("`(`".into())),
                _ => break,
            }
        }
        self.finish(words, &stdin, pre)
    }

    // --- lexer --------------------------------------------------------------------------------

    fn lex(&mut self) -> Res<Tok> {
        // Blanks, line continuations and comments between tokens.
        loop {
            match self.cur() {
                Some(' ' | '\t') => self.pos += 1,
                Some('\\') if self.at(1) == Some('\n') => self.pos += 2,
                Some('#') => {
                    while self.cur().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
        let start = self.pos;
        // Nested lexing (`$(…)` in a word) moves `tok_start`; restore this token's.
        let tok = self.lex_token();
        self.tok_start = start;
        tok
    }

    fn lex_token(&mut self) -> Res<Tok> {
        let Some(c) = self.cur() else {
            self.close_heredocs()?;
            return Ok(Tok::Eof);
        };
        match c {
            '\n' => {
                self.pos += 1;
                self.read_heredoc_bodies()?;
                Ok(Tok::Op("\n"))
            }
            ';' => Ok(Tok::Op(self.take_op(&[";;&", ";;", ";&", ";"]))),
            '|' => Ok(Tok::Op(self.take_op(&["||", "|&", "|"]))),
            '&' if self.at(1) == Some('>') => self.lex_redirect(),
            '&' => Ok(Tok::Op(self.take_op(&["&&", "&"]))),
            '(' => {
                if self.at(1) == Some('(') && self.arith_command()? {
                    return Ok(Tok::Arith);
                }
                self.pos += 1;
                Ok(Tok::Op("("))
            }
            ')' => {
                self.pos += 1;
                Ok(Tok::Op(")"))
            }
            '<' | '>' if self.at(1) != Some('(') => self.lex_redirect(),
            _ => self.lex_word_token(),
        }
    }

    fn lex_word_token(&mut self) -> Res<Tok> {
        let start = self.pos;
        let w = self.lex_word()?;
        if self.pos == start {
            // Cannot happen for the characters `lex` hands over; consume one so we always progress.
            let c = self.cur().unwrap_or(' ');
            self.pos += 1;
            return Err(ShellError::Unexpected(format!("`{c}`")));
        }
        // `2>&1`, `{fd}>file`: a number (or `{name}`) right before a redirection operator.
        let braced_name = w.text.strip_prefix('{').and_then(|t| t.strip_suffix('}')).is_some_and(|n| {
            n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        let io_number =
            !w.had_quotes && !w.text.is_empty() && (w.text.chars().all(|c| c.is_ascii_digit()) || braced_name);
        if io_number && matches!(self.cur(), Some('<' | '>')) && self.at(1) != Some('(') {
            return self.lex_redirect();
        }
        Ok(Tok::Word(w))
    }

    fn lex_redirect(&mut self) -> Res<Tok> {
        let op = self.take_op(&["<<<", "<<-", "<<", "<&", "<>", "&>>", "&>", ">>", ">&", ">|", "<", ">"]);
        if op != "<<" && op != "<<-" {
            return Ok(Tok::Redir(Redir::Op(op)));
        }
        while matches!(self.cur(), Some(' ' | '\t')) {
            self.pos += 1;
        }
        if self.cur().is_none_or(is_meta) {
            return Err(ShellError::MissingWord("<<"));
        }
        let w = self.lex_word()?;
        let id = self.heredocs.len();
        self.heredocs.push(Heredoc { delim: w.text, strip_tabs: op == "<<-", quoted: w.had_quotes, body: None });
        self.pending.push(id);
        Ok(Tok::Redir(Redir::Heredoc(id)))
    }

    /// Reads the bodies of the heredocs started on the line just ended.
    fn read_heredoc_bodies(&mut self) -> Res<()> {
        for id in mem::take(&mut self.pending) {
            let mut body = String::new();
            while self.pos < self.src.len() {
                let end = self.src[self.pos..].iter().position(|&c| c == '\n').map_or(self.src.len(), |n| self.pos + n);
                let line: String = self.src[self.pos..end].iter().collect();
                self.pos = (end + 1).min(self.src.len());
                let h = &self.heredocs[id];
                let line = if h.strip_tabs { line.trim_start_matches('\t') } else { line.as_str() };
                if line == h.delim {
                    break;
                }
                body.push_str(line);
                body.push('\n');
            }
            if !self.heredocs[id].quoted {
                // An unquoted heredoc expands `$(…)` and backticks in its body.
                self.scan_text(&body)?;
            }
            self.heredocs[id].body = Some(body);
        }
        self.run_deferred()
    }

    /// At end of input, heredocs that never got a body have an empty one.
    fn close_heredocs(&mut self) -> Res<()> {
        for id in mem::take(&mut self.pending) {
            self.heredocs[id].body.get_or_insert_with(String::new);
        }
        self.run_deferred()
    }

    fn run_deferred(&mut self) -> Res<()> {
        // Interpreters reading their program from a heredoc get it as `-c`/`-e` once it is read.
        let (ready, waiting): (Vec<_>, Vec<_>) =
            mem::take(&mut self.deferred_code).into_iter().partition(|(id, ..)| self.heredocs[*id].body.is_some());
        self.deferred_code = waiting;
        for (id, at, flag) in ready {
            let code = self.heredocs[id].body.clone().unwrap_or_default();
            if let Some(cmd) = self.out.cmds.get_mut(at)
                && stdin_code_flag(
                    &program_name(cmd.argv.first().map_or("", String::as_str)).to_ascii_lowercase(),
                    &cmd.argv,
                ) == Some(flag)
            {
                cmd.argv = with_code(&cmd.argv, flag, &code);
            }
        }
        let (ready, waiting): (Vec<_>, Vec<_>) =
            mem::take(&mut self.deferred).into_iter().partition(|(id, ..)| self.heredocs[*id].body.is_some());
        self.deferred = waiting;
        for (id, wrappers, posix) in ready {
            let body = self.heredocs[id].body.clone().unwrap_or_default();
            parse_into(&body, self.depth + 1, &wrappers, posix, Env::default(), self.out)?;
        }
        Ok(())
    }

    /// Parses the substitutions in `text` as a double-quoted string would (an unquoted heredoc body).
    fn scan_text(&mut self, text: &str) -> Res<()> {
        if self.depth + 1 > MAX_DEPTH {
            return Err(ShellError::TooDeep);
        }
        let mut p = Parser::new(text, self.depth + 1, self.ctx.clone(), self.posix, self.env.clone(), self.out);
        p.lex_dquoted(&mut Word::default(), false)
    }

    fn lex_word(&mut self) -> Res<Word> {
        let mut w = Word::default();
        while let Some(c) = self.cur() {
            match c {
                '<' | '>' if self.at(1) == Some('(') => self.process_substitution(&mut w)?,
                '(' if is_assignment_prefix(&w.chars()) => self.array_value(&mut w)?,
                // extglob `@(…)` and zsh qualifiers `*(.)` are patterns, but a lone `!(…)` is
                // `! ( … )`: a negated subshell, as bash runs it.
                '(' if w.text != "!"
                    && w.quoted.last() == Some(&false)
                    && matches!(w.text.chars().last(), Some('@' | '!' | '+' | '*' | '?')) =>
                {
                    self.extglob(&mut w)?
                }
                c if is_meta(c) => break,
                '\\' => match self.at(1) {
                    Some('\n') => self.pos += 2,
                    Some(n) => {
                        w.push(n, true);
                        self.pos += 2;
                    }
                    None => {
                        w.push('\\', true);
                        self.pos += 1;
                    }
                },
                '\'' => self.single_quoted(&mut w)?,
                '"' => {
                    self.pos += 1;
                    self.lex_dquoted(&mut w, true)?;
                }
                '`' => self.backticks(&mut w, false)?,
                '$' => self.dollar(&mut w, false)?,
                _ => {
                    w.push(c, false);
                    self.pos += 1;
                }
            }
        }
        Ok(w)
    }

    fn single_quoted(&mut self, w: &mut Word) -> Res<()> {
        self.pos += 1;
        w.had_quotes = true;
        loop {
            match self.cur() {
                None => return Err(ShellError::UnbalancedQuote("single quote")),
                Some('\'') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(c) => {
                    w.push(c, true);
                    self.pos += 1;
                }
            }
        }
    }

    /// The inside of `"…"` (after the opening quote) or, with `closing` false, a heredoc body.
    fn lex_dquoted(&mut self, w: &mut Word, closing: bool) -> Res<()> {
        w.had_quotes = true;
        loop {
            match self.cur() {
                None if closing => return Err(ShellError::UnbalancedQuote("double quote")),
                None => return Ok(()),
                Some('"') if closing => {
                    self.pos += 1;
                    return Ok(());
                }
                Some('\\') => match self.at(1) {
                    Some('\n') => self.pos += 2,
                    Some(c @ ('$' | '`' | '\\')) => {
                        w.push(c, true);
                        self.pos += 2;
                    }
                    Some('"') if closing => {
                        w.push('"', true);
                        self.pos += 2;
                    }
                    _ => {
                        w.push('\\', true);
                        self.pos += 1;
                    }
                },
                Some('$') => self.dollar(w, true)?,
                Some('`') => self.backticks(w, true)?,
                Some(c) => {
                    w.push(c, true);
                    self.pos += 1;
                }
            }
        }
    }

    /// `$…` at the cursor: substitutions are parsed, anything else is kept literally.
    fn dollar(&mut self, w: &mut Word, in_dq: bool) -> Res<()> {
        match self.at(1) {
            Some('(') => {
                if self.at(2) == Some('(') && self.arith(w)? {
                    return Ok(());
                }
                self.command_substitution(w, in_dq)
            }
            Some('{') => self.braced(w, in_dq, '{', '}', "`${`"),
            Some('[') => self.braced(w, in_dq, '[', ']', "`$[`"),
            Some('\'') if !in_dq => self.ansi_c(w),
            Some('"') if !in_dq => {
                self.pos += 2;
                self.lex_dquoted(w, true)
            }
            _ => {
                w.push('$', in_dq);
                self.pos += 1;
                Ok(())
            }
        }
    }

    fn command_substitution(&mut self, w: &mut Word, in_dq: bool) -> Res<()> {
        let (start, before) = (self.pos, self.out.cmds.len());
        self.pos += 2;
        self.nested_list("`$(`")?;
        self.note_printed(w, before, !in_dq, false, start);
        w.push_expansion(self.raw(start));
        Ok(())
    }

    /// Records what a substitution starting the word prints when it is a plain `echo`/`printf`,
    /// the commands it ran being `self.out[before..]`.
    fn note_printed(&self, w: &mut Word, before: usize, split: bool, file: bool, start: usize) {
        if let [c] = &self.out.cmds[before..]
            && w.text.is_empty()
            && c.wrappers == self.ctx
            && let Some(text) = printed_text(&c.argv)
        {
            let raw = self.raw(start).iter().collect();
            w.printed = Some(Printed { raw, text, split, file });
        }
    }

    fn process_substitution(&mut self, w: &mut Word) -> Res<()> {
        let (start, before) = (self.pos, self.out.cmds.len());
        self.pos += 2;
        self.nested_list("`<(` / `>(`")?;
        self.note_printed(w, before, false, true, start);
        w.push_expansion(self.raw(start));
        Ok(())
    }

    /// A command list on this cursor up to its closing `)`, which is consumed.
    fn nested_list(&mut self, what: &'static str) -> Res<()> {
        self.enter()?;
        // Words are lexed only when nothing is peeked, so the outer lookahead is empty here.
        let outer = self.peeked.take();
        self.parse_list()?;
        self.expect_close(what)?;
        self.peeked = outer;
        self.leave();
        Ok(())
    }

    /// `${…}` or `$[…]`: kept literally, but substitutions inside (`${x:-$(cmd)}`) run.
    fn braced(&mut self, w: &mut Word, in_dq: bool, open: char, close: char, what: &'static str) -> Res<()> {
        let start = self.pos;
        self.pos += 2;
        w.bare_expansion |= !in_dq;
        self.enter()?;
        let mut scratch = Word::default();
        let mut nest = 0usize;
        loop {
            match self.cur() {
                None => return Err(ShellError::Unbalanced(what)),
                Some(c) if c == close && nest == 0 => {
                    self.pos += 1;
                    break;
                }
                Some(c) if c == close => {
                    nest -= 1;
                    self.pos += 1;
                }
                Some(c) if c == open && open == '[' => {
                    nest += 1;
                    self.pos += 1;
                }
                Some('\\') => self.pos = (self.pos + 2).min(self.src.len()),
                Some('\'') if !in_dq && open == '{' => self.single_quoted(&mut scratch)?,
                Some('"') => {
                    self.pos += 1;
                    self.lex_dquoted(&mut scratch, true)?;
                }
                Some('`') => self.backticks(&mut scratch, in_dq)?,
                Some('$') => self.dollar(&mut scratch, in_dq)?,
                Some(_) => self.pos += 1,
            }
        }
        self.leave();
        w.push_expansion(self.raw(start));
        Ok(())
    }

    /// `$((…))` at the cursor. Returns false (cursor and output restored) when it is really
    /// `$( (…) … )`, a command substitution starting with a subshell.
    fn arith(&mut self, w: &mut Word) -> Res<bool> {
        let start = self.pos;
        self.pos += 1;
        if !self.scan_arith()? {
            self.pos = start;
            return Ok(false);
        }
        w.push_expansion(self.raw(start));
        Ok(true)
    }

    /// `((…))` as a command. Bash, zsh and ksh evaluate it as arithmetic; but where a POSIX `sh`
    /// may run the line, dash would run it as two nested subshells, so there its text is also
    /// parsed as commands, best effort (errors ignored).
    fn arith_command(&mut self) -> Res<bool> {
        let start = self.pos;
        if !self.scan_arith()? {
            return Ok(false);
        }
        let inner: String = self.src[start + 2..self.pos - 2].iter().collect();
        if self.posix && self.depth < MAX_DEPTH {
            let mut extra = Out { bytes: self.out.bytes, ..Out::default() };
            if parse_into(&inner, self.depth + 1, &self.ctx, true, self.env.clone(), &mut extra).is_ok() {
                self.out.bytes = extra.bytes;
                self.out.cmds.extend(extra.cmds);
                self.out.resolved.extend(extra.resolved);
            }
        }
        Ok(true)
    }

    /// Scans `((…))` from the cursor. On success the cursor is after `))`; otherwise everything
    /// (cursor, depth, output, heredocs) is restored and false returned.
    fn scan_arith(&mut self) -> Res<bool> {
        // The attempt may cross a newline, which reads (and takes) the heredocs pending before it and runs
        // the deferred ones: the lists are restored as they were, not cut to their old lengths (found by
        // fuzzing: a heredoc started in the attempt then took the place of one read in it, and its id
        // pointed past the heredocs kept).
        let saved = (self.pos, self.depth, self.out.cmds.len(), self.heredocs.len());
        let (pending, deferred, deferred_code) =
            (self.pending.clone(), self.deferred.clone(), self.deferred_code.clone());
        let result = self.scan_arith_inner();
        if !matches!(result, Ok(true)) {
            self.pos = saved.0;
            self.depth = saved.1;
            self.out.cmds.truncate(saved.2);
            self.heredocs.truncate(saved.3);
            for &id in &pending {
                self.heredocs[id].body = None;
            }
            self.pending = pending;
            self.deferred = deferred;
            self.deferred_code = deferred_code;
        }
        // A malformed arithmetic expression is re-read as a command substitution or subshell,
        // which reports the real problem.
        Ok(result.unwrap_or(false))
    }

    fn scan_arith_inner(&mut self) -> Res<bool> {
        self.pos += 2;
        self.enter()?;
        let mut scratch = Word::default();
        let mut nest = 0usize;
        loop {
            match self.cur() {
                None => return Ok(false),
                Some('(') => {
                    nest += 1;
                    self.pos += 1;
                }
                Some(')') if nest == 0 => {
                    if self.at(1) != Some(')') {
                        return Ok(false);
                    }
                    self.pos += 2;
                    self.leave();
                    return Ok(true);
                }
                Some(')') => {
                    nest -= 1;
                    self.pos += 1;
                }
                Some('\\') => self.pos = (self.pos + 2).min(self.src.len()),
                Some('\'') => self.single_quoted(&mut scratch)?,
                Some('"') => {
                    self.pos += 1;
                    self.lex_dquoted(&mut scratch, true)?;
                }
                Some('`') => self.backticks(&mut scratch, false)?,
                Some('$') => self.dollar(&mut scratch, false)?,
                Some(_) => self.pos += 1,
            }
        }
    }

    /// `` `…` ``: the text between backticks, with `\`` `\\` `\$` (and `\"` inside double quotes)
    /// unescaped, is a command line of its own.
    fn backticks(&mut self, w: &mut Word, in_dq: bool) -> Res<()> {
        let start = self.pos;
        self.pos += 1;
        let mut inner = String::new();
        loop {
            match self.cur() {
                None => return Err(ShellError::Unbalanced("backtick")),
                Some('`') => {
                    self.pos += 1;
                    break;
                }
                Some('\\') => {
                    match self.at(1) {
                        Some(c @ ('`' | '\\' | '$')) => inner.push(c),
                        Some('"') if in_dq => inner.push('"'),
                        Some(c) => {
                            inner.push('\\');
                            inner.push(c);
                        }
                        None => inner.push('\\'),
                    }
                    self.pos = (self.pos + 2).min(self.src.len());
                }
                Some(c) => {
                    inner.push(c);
                    self.pos += 1;
                }
            }
        }
        let before = self.out.cmds.len();
        parse_into(&inner, self.depth + 1, &self.ctx, self.posix, self.env.clone(), self.out)?;
        self.note_printed(w, before, !in_dq, false, start);
        w.push_expansion(self.raw(start));
        Ok(())
    }

    /// `$'…'`: ANSI-C quoting.
    fn ansi_c(&mut self, w: &mut Word) -> Res<()> {
        self.pos += 2;
        w.had_quotes = true;
        loop {
            match self.cur() {
                None => return Err(ShellError::UnbalancedQuote("`$'` quote")),
                Some('\'') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some('\\') => {
                    let mut i = self.pos + 1;
                    for c in decode_escape(&self.src, &mut i).chars() {
                        w.push(c, true);
                    }
                    self.pos = i;
                }
                Some(c) => {
                    w.push(c, true);
                    self.pos += 1;
                }
            }
        }
    }

    /// `name=(a b $(cmd))`: an array assignment; its elements are words (substitutions run).
    fn array_value(&mut self, w: &mut Word) -> Res<()> {
        let start = self.pos;
        self.pos += 1;
        self.enter()?;
        loop {
            match self.cur() {
                None => return Err(ShellError::Unbalanced("`(` of an array assignment")),
                Some(')') => {
                    self.pos += 1;
                    break;
                }
                Some(' ' | '\t' | '\n') => self.pos += 1,
                Some('#') => {
                    while self.cur().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                Some(c) if is_meta(c) && !(matches!(c, '<' | '>') && self.at(1) == Some('(')) => {
                    return Err(ShellError::Unexpected(format!("`{c}` in an array assignment")));
                }
                Some(_) => {
                    let e = self.lex_word()?;
                    w.array.get_or_insert_with(Vec::new).push(e.text);
                }
            }
        }
        self.leave();
        w.array.get_or_insert_with(Vec::new);
        w.push_expansion(self.raw(start));
        Ok(())
    }

    /// An extglob group `@(a|b)` (or zsh glob qualifier): part of the word, never commands.
    fn extglob(&mut self, w: &mut Word) -> Res<()> {
        let mut nest = 0usize;
        loop {
            match self.cur() {
                None => return Err(ShellError::Unbalanced("`(` of a pattern")),
                Some('(') => nest += 1,
                Some(')') => {
                    nest -= 1;
                    if nest == 0 {
                        w.push(')', false);
                        self.pos += 1;
                        return Ok(());
                    }
                }
                Some('\'') => {
                    self.single_quoted(w)?;
                    continue;
                }
                Some('"') => {
                    self.pos += 1;
                    self.lex_dquoted(w, true)?;
                    continue;
                }
                Some('$') => {
                    self.dollar(w, false)?;
                    continue;
                }
                Some('`') => {
                    self.backticks(w, false)?;
                    continue;
                }
                Some('\\') => {
                    if let Some(n) = self.at(1) {
                        w.push(n, true);
                    }
                    self.pos = (self.pos + 2).min(self.src.len());
                    continue;
                }
                Some(_) => {}
            }
            if let Some(c) = self.cur() {
                w.push(c, false);
            }
            self.pos += 1;
        }
    }

    // --- commands -----------------------------------------------------------------------------

    /// A simple command's words are complete: drop assignments, expand braces, then run it.
    fn finish(&mut self, words: Vec<Word>, stdin: &Stdin, pre: &[String]) -> Res<Fin> {
        let first = words.iter().position(|w| !is_assignment(&w.chars())).unwrap_or(words.len());
        let (assignments, words) = words.split_at(first);
        if words.is_empty() {
            // Only assignments: they set shell variables (with a command, only its environment). They
            // are reported as a command with no words, as some change what later commands run
            // (`PATH=/tmp/x:$PATH`, `IFS=,`, `GIT_DIR=…` once exported).
            self.record(assignments);
            if !assignments.is_empty() {
                let set: Vec<String> = pre.iter().cloned().chain(assignments.iter().map(|w| w.text.clone())).collect();
                self.emit(&[], &set);
            }
        }
        // With a command they are peeled like wrappers, and recorded as `NAME=value`.
        let pre: Vec<String> = pre.iter().cloned().chain(assignments.iter().map(|w| w.text.clone())).collect();
        let pre = pre.as_slice();
        let mut argv: Vec<String> = Vec::new();
        // The command again with the values of variables assigned earlier on the line
        // (`c="git push -f"; $c`): `None` until a word refers to one; then each variant (one per
        // combination of values, at most MAX_VARIANTS) with its length in bytes.
        let mut variants: Option<Vec<(Vec<String>, usize)>> = None;
        let mut resolving = true;
        for (k, w) in words.iter().enumerate() {
            let mut w = w.clone();
            // zsh `=git` expands to git's path.
            if k == 0 && w.text.len() > 1 && w.text.starts_with('=') && w.quoted.first() == Some(&false) {
                w.text.remove(0);
                w.quoted.remove(0);
            }
            let start = argv.len();
            argv.extend(brace_expand(&w)?);
            if !resolving {
                continue;
            }
            match self.var_values(&w) {
                Some(values) => {
                    let base = variants
                        .take()
                        .unwrap_or_else(|| vec![(argv[..start].to_vec(), argv[..start].iter().map(String::len).sum())]);
                    let mut next = Vec::new();
                    for value in &values {
                        let len: usize = value.iter().map(String::len).sum();
                        for (v, base_len) in base.iter().take(MAX_VARIANTS - next.len().min(MAX_VARIANTS)) {
                            next.push((v.iter().chain(value).cloned().collect(), base_len + len));
                        }
                    }
                    variants = Some(next);
                }
                None => {
                    if let Some(vs) = &mut variants {
                        let len: usize = argv[start..].iter().map(String::len).sum();
                        for (v, total) in vs.iter_mut() {
                            v.extend(argv[start..].iter().cloned());
                            *total += len;
                        }
                    }
                }
            }
            // Give up on variants that grow beyond what a real command line could hold.
            if variants.as_ref().is_some_and(|vs| vs.iter().any(|&(_, len)| len > MAX_INPUT)) {
                variants = None;
                resolving = false;
            }
        }
        if argv.is_empty() {
            return Ok(Fin::default());
        }
        if matches!(argv[0].as_str(), "export" | "declare" | "typeset" | "local" | "readonly") {
            self.record(&words[1..]);
        }
        self.set_by_builtin(&argv);
        let prog = program_name(&argv[0]).to_ascii_lowercase();
        // `source <(echo …)`, `bash <(echo …)`: the process substitution is the script, parsed below;
        // the command itself then hides nothing.
        let script_file = |w: &Word| w.printed.as_ref().filter(|p| p.file && p.raw == w.text).map(|p| p.text.clone());
        let sourced = if matches!(prog.as_str(), "source" | ".") || SHELLS.contains(&prog.as_str()) {
            words.get(1).and_then(script_file)
        } else {
            None
        };
        self.program_seen = self.program_known(&words[0]);
        if self.program_seen
            && let Some(r) = var_ref(&words[0])
        {
            let mut wrappers = self.ctx.clone();
            wrappers.extend_from_slice(pre);
            self.out.resolved.push((r.name.to_string(), SimpleCommand { argv: argv.clone(), wrappers }));
        }
        let fin = if sourced.is_some() { Fin::default() } else { self.run(argv.clone(), pre.to_vec(), stdin)? };
        self.program_seen = false;
        for (v, _) in variants.into_iter().flatten().filter(|(v, _)| !v.is_empty()) {
            self.run(v, pre.to_vec(), &Stdin::Inherited)?;
        }
        self.calls(&argv, &words[0], pre)?;
        if matches!(prog.as_str(), "source" | ".") || SHELLS.contains(&prog.as_str()) {
            for text in words[1..].iter().filter_map(script_file) {
                let (env, posix) = if SHELLS.contains(&prog.as_str()) {
                    (Env::default(), runs_posix(&prog, self.posix))
                } else {
                    (self.env.clone(), self.posix)
                };
                self.script_in(&text, pre, program_name(&argv[0]), env, posix)?;
                if !SHELLS.contains(&prog.as_str()) {
                    self.taint_assigned(&text);
                }
            }
        }
        Ok(fin)
    }

    /// A call of a function or alias defined earlier on the line runs its body with these arguments.
    fn calls(&mut self, argv: &[String], first: &Word, pre: &[String]) -> Res<()> {
        let name = &argv[0];
        if first.had_quotes || self.env.calling.contains(name) {
            return Ok(());
        }
        let mut env = self.env.clone();
        env.calling.push(name.clone());
        if let Some(body) = self.env.functions.get(name).cloned() {
            let mut env = env.clone();
            env.positional = Some(Rc::new(argv.to_vec()));
            self.script_in(&body, pre, name, env, self.posix)?;
            self.taint_assigned(&body);
        }
        if let Some(value) = self.env.aliases.get(name).cloned() {
            let args: Vec<String> = argv[1..].iter().map(|a| shell_quote(a)).collect();
            self.script_in(&format!("{value} {}", args.join(" ")), pre, name, env, self.posix)?;
            self.taint_assigned(&value);
        }
        Ok(())
    }

    /// Remembers the values of assignment words.
    fn record(&mut self, words: &[Word]) {
        for w in words {
            let chars = w.chars();
            let Some(n) = assignment_len(&chars) else { continue };
            let name: String =
                chars.iter().map(|&(c, _)| c).take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let value = match &w.array {
                Some(elements) => Value::Array(elements.clone()),
                None => Value::Scalar(chars[n..].iter().map(|&(c, _)| c).collect()),
            };
            let indexed = chars[..n].iter().any(|&(c, _)| c == '[');
            let append = n >= 2 && chars[n - 2].0 == '+';
            let values = if indexed {
                // `c[1]=push`: one element of an array whose other elements are not tracked.
                vec![Value::Unknown]
            } else if append {
                // `c+=" -f"`, `c+=(-f)`: each known value extended; unknown when it had none here
                // (it may come from the environment).
                let old = self.env.vars.get(&name).cloned().unwrap_or_default();
                let extended: Vec<Value> = old
                    .iter()
                    .map(|o| match (o, &value) {
                        (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(format!("{a}{b}")),
                        (Value::Array(a), Value::Array(b)) => Value::Array(a.iter().chain(b).cloned().collect()),
                        _ => Value::Unknown,
                    })
                    .collect();
                if extended.is_empty() { vec![Value::Unknown] } else { extended }
            } else {
                vec![value]
            };
            for value in values {
                let len = match &value {
                    Value::Scalar(s) => s.len(),
                    Value::Array(e) => e.iter().map(String::len).sum(),
                    Value::Unknown => 0,
                };
                // A value too long to remember is still a value: the variable is then unknown.
                self.set_var(&name, if len > MAX_VALUE_LEN { Value::Unknown } else { value });
            }
        }
    }

    /// The words each value `w` may have when it is exactly a reference to a variable assigned
    /// earlier (`$c`, `${c}`, `"$c"`, `"${c[@]}"`), a default (`${c:-WORD}`, `${c:+WORD}`, …: also
    /// WORD), or an `echo`/`printf` substitution (`$(echo git)`). Unquoted values are split by the
    /// default `IFS` and by every `IFS` assigned on the line.
    fn var_values(&self, w: &Word) -> Option<Vec<Vec<String>>> {
        if let Some(p) = &w.printed
            && p.raw == w.text
            && !p.file
        {
            return Some(if p.split { self.split_fields(&p.text) } else { vec![vec![p.text.clone()]] });
        }
        let r = var_ref(w)?;
        let scalar = |s: &str| if r.split { self.split_fields(s) } else { vec![vec![s.to_string()]] };
        let positional = self.positional(r.name);
        let mut values: Vec<Vec<String>> = self
            .env
            .vars
            .get(r.name)
            .into_iter()
            .flatten()
            .flat_map(|v| match v {
                Value::Array(elements) => vec![elements.clone()],
                Value::Scalar(s) => scalar(s),
                Value::Unknown => Vec::new(),
            })
            .chain(positional)
            .collect();
        if let Some(d) = &r.default {
            values.extend(scalar(d));
        }
        (!values.is_empty()).then_some(values)
    }

    /// `$1`, `$@`, `$*` when the positional parameters are known (`bash -c '…' a b`, a function call,
    /// `set -- …`).
    fn positional(&self, name: &str) -> Option<Vec<String>> {
        self.env.positional.as_deref().and_then(|p| match name {
            "@" | "*" => Some(p.get(1..).unwrap_or_default().to_vec()),
            _ => name.parse::<usize>().ok().and_then(|n| p.get(n)).map(|s| vec![s.clone()]),
        })
    }

    /// Whether `w`, as a program, has only values the line shows: an `echo`/`printf` substitution,
    /// or variables and positional parameters set on the line by assignments alone. A variable not
    /// assigned here may come from the environment; one also set by `read`, `mapfile`, … is unknown.
    fn program_known(&self, w: &Word) -> bool {
        if let Some(p) = &w.printed
            && p.raw == w.text
            && !p.file
        {
            return !p.split || self.ifs_known();
        }
        let Some(r) = var_ref(w) else { return false };
        let known = if matches!(r.name, "@" | "*") || r.name.bytes().all(|b| b.is_ascii_digit()) {
            self.env.positional.is_some()
        } else {
            self.env.vars.get(r.name).is_some_and(|vs| !vs.is_empty() && !vs.contains(&Value::Unknown))
        };
        known && (!r.split || self.ifs_known())
    }

    /// Every `IFS` assigned on the line is literal.
    fn ifs_known(&self) -> bool {
        self.env
            .vars
            .get("IFS")
            .is_none_or(|vs| vs.iter().all(|v| matches!(v, Value::Scalar(s) if !s.contains(['$', '`']))))
    }

    /// Field splitting of an unquoted expansion: by blanks, and by each `IFS` assigned on the line
    /// (which one is in force is unknown, so each gives a variant).
    fn split_fields(&self, s: &str) -> Vec<Vec<String>> {
        let mut out = vec![s.split_whitespace().map(str::to_string).collect::<Vec<_>>()];
        for v in self.env.vars.get("IFS").into_iter().flatten() {
            let Value::Scalar(ifs) = v else { continue };
            let fields: Vec<String> = if ifs.is_empty() {
                vec![s.to_string()]
            } else {
                s.split(|c| ifs.contains(c)).filter(|f| !f.is_empty()).map(str::to_string).collect()
            };
            if !out.contains(&fields) {
                out.push(fields);
            }
        }
        out
    }

    /// Variables and positional parameters set by builtins rather than assignments: `printf -v`
    /// with a literal format is computed, `set -- …` sets the positional parameters, and the targets
    /// of `read`, `mapfile`/`readarray`, `getopts` and namerefs (`declare -n`) become unknown.
    fn set_by_builtin(&mut self, argv: &[String]) {
        let name = program_name(&argv[0]);
        let args = &argv[1..];
        let is_name = |a: &String| !a.is_empty() && is_assignment_str(&format!("{a}=")) && !a.contains('+');
        let unknown: Vec<String> = match name {
            "read" => {
                // Options with a value: -a NAME (also a target), -d -i -n -N -p -t -u.
                let mut targets = Vec::new();
                let mut i = 0;
                while let Some(a) = args.get(i) {
                    if a == "--" {
                        i += 1;
                        break;
                    }
                    let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty()) else { break };
                    i += 1;
                    if let Some(k) = flags.find(|c| "adinNptu".contains(c)) {
                        let value =
                            if k + 1 < flags.len() { Some(flags[k + 1..].to_string()) } else { args.get(i).cloned() };
                        if k + 1 >= flags.len() {
                            i += 1;
                        }
                        if flags.as_bytes()[k] == b'a' {
                            targets.extend(value);
                        }
                    }
                }
                targets.extend(args[i.min(args.len())..].iter().cloned());
                if targets.is_empty() {
                    targets.push("REPLY".into());
                }
                targets
            }
            "mapfile" | "readarray" => {
                let mut v: Vec<String> = args.iter().filter(|a| is_name(a)).cloned().collect();
                v.push("MAPFILE".into());
                v
            }
            "getopts" => args.get(1).cloned().into_iter().collect(),
            "declare" | "typeset" | "local" if args.iter().any(|a| a.starts_with('-') && a.contains('n')) => args
                .iter()
                .filter(|a| !a.starts_with('-'))
                .map(|a| a.split('=').next().unwrap_or_default().to_string())
                .collect(),
            "printf" if args.first().is_some_and(|a| a == "-v") => {
                let Some(target) = args.get(1) else { return };
                let start = if args.get(2).is_some_and(|a| a == "--") { 3 } else { 2 };
                match args.get(start).and_then(|f| printf_format(f, &args[start + 1..])) {
                    Some(value) if value.len() <= MAX_VALUE_LEN => {
                        self.set_var(target, Value::Scalar(value));
                        return;
                    }
                    _ => vec![target.clone()],
                }
            }
            "set" => {
                // `set -- a b`, `set a b`: new positional parameters (options first; `-o NAME` takes one).
                let mut i = 0;
                while let Some(a) = args.get(i) {
                    if a == "--" {
                        i += 1;
                        break;
                    }
                    if !(a.starts_with('-') || a.starts_with('+')) || a.len() < 2 {
                        break;
                    }
                    i += if a.ends_with('o') { 2 } else { 1 };
                }
                if i < args.len() || args.get(i.wrapping_sub(1)).is_some_and(|a| a == "--") {
                    let zero =
                        self.env.positional.as_ref().and_then(|p| p.first().cloned()).unwrap_or_else(|| "$0".into());
                    let params: Vec<String> =
                        std::iter::once(zero).chain(args[i.min(args.len())..].iter().cloned()).collect();
                    self.env.positional = Some(Rc::new(params));
                }
                return;
            }
            _ => return,
        };
        for n in unknown.iter().filter(|n| is_name(n)) {
            self.set_var(n, Value::Unknown);
        }
    }

    /// Adds a possible value of a variable (bounded like [`Self::record`]).
    fn set_var(&mut self, name: &str, value: Value) {
        if self.env.vars.len() >= MAX_NAMES && !self.env.vars.contains_key(name) {
            return;
        }
        let values = Rc::make_mut(&mut self.env.vars).entry(name.to_string()).or_default();
        values.retain(|v| *v != value);
        values.push(value);
        if values.len() > MAX_VARIANTS {
            values.remove(0);
        }
    }

    fn emit(&mut self, argv: &[String], wrappers: &[String]) {
        let mut all = self.ctx.clone();
        all.extend_from_slice(wrappers);
        self.out.push(SimpleCommand { argv: argv.to_vec(), wrappers: all });
    }

    /// The wrappers for commands that `name` (running under `wrappers`) runs.
    fn inner(&self, wrappers: &[String], name: &str) -> Vec<String> {
        let mut all = self.ctx.clone();
        all.extend_from_slice(wrappers);
        all.push(name.to_string());
        all
    }

    /// Parses `script`, a command line that `name` runs: in this shell for `eval`, `trap` and aliases
    /// (which see its variables and functions), else in a new process.
    fn script(&mut self, script: &str, wrappers: &[String], name: &str) -> Res<()> {
        let same_shell = matches!(name, "eval" | "trap" | "alias");
        let env = if same_shell { self.env.clone() } else { Env::default() };
        self.script_in(script, wrappers, name, env, runs_posix(name, self.posix))?;
        if same_shell {
            self.taint_assigned(script);
        }
        Ok(())
    }

    /// A command line run in this shell (`eval`, a function, an alias, `source <(…)`) is parsed with a
    /// copy of the state, so what it assigns is not seen afterwards: the variables it may assign no
    /// longer have only known values (`c=echo; eval 'c=git'; $c push`).
    fn taint_assigned(&mut self, text: &str) {
        let b = text.as_bytes();
        let reads =
            ["read", "mapfile", "readarray", "getopts", "printf", "declare", "typeset", "local", "export", "let"]
                .iter()
                .any(|w| text.contains(w));
        let mut i = 0;
        while i < b.len() {
            if !(b[i].is_ascii_alphabetic() || b[i] == b'_') {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let name = &text[start..i];
            let word_start = start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
            let assigns = text[i..].starts_with('=') || text[i..].starts_with("+=") || text[i..].starts_with('[');
            if word_start && (assigns || (reads && self.env.vars.contains_key(name))) {
                self.set_var(name, Value::Unknown);
            }
        }
    }

    /// Parses `script` run by `name` with the given starting state and dialect.
    fn script_in(&mut self, script: &str, wrappers: &[String], name: &str, env: Env, posix: bool) -> Res<()> {
        let ctx = self.inner(wrappers, name);
        parse_into(script, self.depth + 1, &ctx, posix, env, self.out)
    }

    /// Parses what a shell reads on stdin; `wrappers` ends with that shell.
    fn feed(&mut self, feed: Feed, wrappers: Vec<String>) -> Res<()> {
        let posix = runs_posix(wrappers.last().map_or("sh", String::as_str), self.posix);
        match feed {
            Feed::Text(text) => parse_into(&text, self.depth + 1, &wrappers, posix, Env::default(), self.out),
            Feed::Heredoc(id) => match self.heredocs[id].body.clone() {
                Some(body) => parse_into(&body, self.depth + 1, &wrappers, posix, Env::default(), self.out),
                None => {
                    self.deferred.push((id, wrappers, posix));
                    Ok(())
                }
            },
        }
    }

    fn emit_done(&mut self, argv: &[String], wrappers: &[String]) -> Res<Step> {
        self.emit(argv, wrappers);
        Ok(Step::Done(Fin::default()))
    }

    /// A shell reading its script from stdin: the script it is given on this line (heredoc,
    /// here-string, `echo … |`) is parsed; when the line does not show it (a file, a pipe from another
    /// program, the terminal), the shell itself is reported, as its script is unknown.
    fn stdin_shell(&mut self, argv: &[String], wrappers: &[String], stdin: &Stdin) -> Res<Step> {
        let inner = self.inner(wrappers, program_name(&argv[0]));
        let mut at = None;
        match stdin {
            Stdin::Heredoc(id) => self.feed(Feed::Heredoc(*id), inner.clone())?,
            Stdin::Text(t) => self.feed(Feed::Text(t.clone()), inner.clone())?,
            Stdin::Inherited | Stdin::File => {
                at = Some(self.out.cmds.len());
                self.emit(argv, wrappers);
            }
        }
        Ok(Step::Done(Fin { stdout: None, stdin_shell: Some(inner), stdin_shell_at: at }))
    }

    /// Runs one command: peels wrappers until the real program, recursing into command lines.
    fn run(&mut self, mut argv: Vec<String>, mut wrappers: Vec<String>, stdin: &Stdin) -> Res<Fin> {
        self.out.check()?;
        // `program_seen` speaks of the first program only, not of those peeled out of its arguments.
        let mut seen = mem::take(&mut self.program_seen);
        for _ in 0..MAX_PEELS {
            let Some(first) = argv.first() else { return Ok(Fin::default()) };
            let shown = program_name(first).to_string();
            let name = shown.to_ascii_lowercase();
            // `./sudo git …`, `/tmp/x/bash -c '…'`: a program given by a path may not be the one its name
            // says, so the command is also reported as written, for the opaque check to judge its path.
            if !is_system_path(first) && sees_through(&name) {
                self.emit(&argv, &wrappers);
            }
            self.program_seen = mem::take(&mut seen);
            let step = self.step(&name, &argv, &wrappers, stdin);
            self.program_seen = false;
            match step? {
                Step::Peel(rest) => {
                    wrappers.push(shown);
                    argv = rest;
                    // `env A=1 cmd`, `sudo A=1 cmd`: the assignments are peeled too, and recorded.
                    if matches!(name.as_str(), "env" | "sudo") {
                        let n = argv.iter().take_while(|a| is_assignment_str(a)).count();
                        wrappers.extend(argv.drain(..n));
                    }
                }
                Step::Done(fin) => return Ok(fin),
            }
        }
        Err(ShellError::TooDeep)
    }

    /// A command found inside another's arguments (`find -exec`), one level deeper.
    fn run_nested(&mut self, argv: Vec<String>, wrappers: Vec<String>) -> Res<()> {
        self.enter()?;
        self.run(argv, wrappers, &Stdin::Inherited)?;
        self.leave();
        Ok(())
    }

    fn step(&mut self, name: &str, argv: &[String], wrappers: &[String], stdin: &Stdin) -> Res<Step> {
        let peel_from = |i: usize| Step::Peel(argv[i..].to_vec());
        if let Some(w) = WRAPPERS.iter().find(|w| w.names.contains(&name)) {
            let (opts, i) = parse_opts(argv, 1, &w.opts);
            let i = (i + w.operands).min(argv.len());
            // Assignments before the command stay in argv here; `run` moves them to the wrappers.
            let assignments =
                if w.assignments { argv[i..].iter().take_while(|a| is_assignment_str(a)).count() } else { 0 };
            if i + assignments < argv.len() {
                return Ok(peel_from(i));
            }
            // `sudo -s` / `sudo -i` without a command start a shell reading stdin.
            if name == "sudo" && opts.iter().any(|o| matches!(o.name.as_str(), "s" | "i" | "shell" | "login")) {
                return self.stdin_shell(argv, wrappers, stdin);
            }
            return self.emit_done(argv, wrappers);
        }
        if SHELLS.contains(&name) {
            return match shell_run(name == "fish", &argv[1..]) {
                ShellRun::Script(s, params) => {
                    let env = Env { positional: Some(Rc::new(params)), ..Env::default() };
                    self.script_in(&s, wrappers, program_name(&argv[0]), env, runs_posix(name, self.posix))?;
                    Ok(Step::Done(Fin::default()))
                }
                ShellRun::Stdin => self.stdin_shell(argv, wrappers, stdin),
                ShellRun::File => self.emit_done(argv, wrappers),
            };
        }
        match name {
            "env" => return self.env(argv, wrappers),
            "command" => {
                let (opts, i) = parse_opts(argv, 1, &NO_ARGS);
                // `command -v git` only prints where git is.
                if i < argv.len() && !opts.iter().any(|o| o.name == "v" || o.name == "V") {
                    return Ok(peel_from(i));
                }
                return self.emit_done(argv, wrappers);
            }
            "eval" => {
                let start = if argv.get(1).is_some_and(|a| a == "--") { 2 } else { 1 };
                self.script(&argv[start..].join(" "), wrappers, "eval")?;
                return Ok(Step::Done(Fin::default()));
            }
            "watch" => {
                let (opts, i) = parse_opts(argv, 1, &WATCH);
                if i >= argv.len() {
                    return self.emit_done(argv, wrappers);
                }
                // Without `-x`, watch runs its arguments joined as an `sh -c` line.
                if opts.iter().any(|o| o.name == "x" || o.name == "exec") {
                    return Ok(peel_from(i));
                }
                self.script(&argv[i..].join(" "), wrappers, "watch")?;
                return Ok(Step::Done(Fin::default()));
            }
            "find" | "fd" | "fdfind" => {
                self.emit(argv, wrappers);
                let mut inner = wrappers.to_vec();
                inner.push(program_name(&argv[0]).to_string());
                for cmd in exec_segments(name, argv) {
                    self.run_nested(cmd, inner.clone())?;
                }
                return Ok(Step::Done(Fin::default()));
            }
            "su" | "runuser" => return self.su(name, argv, wrappers, stdin),
            "sg" => {
                let mut i = 1;
                if argv.get(i).is_some_and(|a| a == "-") {
                    i += 1;
                }
                i += 1; // the group
                if argv.get(i).is_some_and(|a| a == "-c") {
                    i += 1;
                }
                if i < argv.len() {
                    self.script(&argv[i..].join(" "), wrappers, "sg")?;
                    return Ok(Step::Done(Fin::default()));
                }
                return self.stdin_shell(argv, wrappers, stdin);
            }
            "script" => {
                let scripts = collect_opt_values(argv, &SCRIPT, &["c", "command"]);
                if scripts.is_empty() {
                    return self.emit_done(argv, wrappers);
                }
                for s in scripts {
                    self.script(&s, wrappers, "script")?;
                }
                return Ok(Step::Done(Fin::default()));
            }
            "flock" => {
                let (_, i) = parse_opts(argv, 1, &FLOCK);
                return match argv.get(i + 1).map(String::as_str) {
                    Some("-c" | "--command") => {
                        if let Some(s) = argv.get(i + 2) {
                            self.script(s, wrappers, "flock")?;
                        }
                        Ok(Step::Done(Fin::default()))
                    }
                    Some(_) => Ok(peel_from(i + 1)),
                    None => self.emit_done(argv, wrappers),
                };
            }
            "nix-shell" => {
                let scripts: Vec<String> =
                    argv.windows(2).filter(|w| w[0] == "--run" || w[0] == "--command").map(|w| w[1].clone()).collect();
                self.emit(argv, wrappers);
                for s in scripts {
                    self.script(&s, wrappers, "nix-shell")?;
                }
                return Ok(Step::Done(Fin::default()));
            }
            "nix" if matches!(argv.get(1).map(String::as_str), Some("develop" | "shell")) => {
                if let Some(k) = argv.iter().position(|a| a == "-c" || a == "--command")
                    && k + 1 < argv.len()
                {
                    return Ok(peel_from(k + 1));
                }
            }
            "direnv" if argv.get(1).is_some_and(|a| a == "exec") && argv.len() > 3 => return Ok(peel_from(3)),
            "poetry" | "pipenv" if argv.get(1).is_some_and(|a| a == "run") && argv.len() > 2 => {
                return Ok(peel_from(2));
            }
            "bundle" | "bundler" if argv.get(1).is_some_and(|a| a == "exec") && argv.len() > 2 => {
                return Ok(peel_from(2));
            }
            "uv" if argv.get(1).is_some_and(|a| a == "run") => {
                let (_, i) = parse_opts(argv, 2, &UV_RUN);
                if i < argv.len() {
                    return Ok(peel_from(i));
                }
            }
            "mise" | "rtx" if matches!(argv.get(1).map(String::as_str), Some("exec" | "x")) => {
                if let Some(k) = argv.iter().position(|a| a == "--")
                    && k + 1 < argv.len()
                {
                    return Ok(peel_from(k + 1));
                }
                if let Some(k) = argv.iter().position(|a| a == "-c" || a == "--command")
                    && let Some(s) = argv.get(k + 1)
                {
                    self.script(s, wrappers, name)?;
                    return Ok(Step::Done(Fin::default()));
                }
            }
            "ssh" => {
                // `ssh host cmd…` runs the joined words with the remote user's shell.
                let (_, i) = parse_opts(argv, 1, &SSH);
                self.emit(argv, wrappers);
                if i + 1 < argv.len() {
                    self.script(&argv[i + 1..].join(" "), wrappers, "ssh")?;
                }
                return Ok(Step::Done(Fin::default()));
            }
            "trap" => {
                // `trap 'cmd' EXIT` runs cmd later.
                self.emit(argv, wrappers);
                let start = if argv.get(1).is_some_and(|a| a == "--") { 2 } else { 1 };
                if let Some(action) = argv.get(start)
                    && argv.len() > start + 1
                    && !action.starts_with('-')
                {
                    self.script(action, wrappers, "trap")?;
                }
                return Ok(Step::Done(Fin::default()));
            }
            "alias" => {
                // An alias runs its value wherever it is used later; report it now.
                self.emit(argv, wrappers);
                for (name, value) in argv[1..].iter().filter_map(|a| a.split_once('=')) {
                    if self.env.aliases.len() < MAX_NAMES || self.env.aliases.contains_key(name) {
                        Rc::make_mut(&mut self.env.aliases).insert(name.to_string(), value.to_string());
                    }
                    self.script(value, wrappers, "alias")?;
                }
                return Ok(Step::Done(Fin::default()));
            }
            "git" => {
                // Shell aliases (`-c alias.x='!…'`), hook-like config and `rebase --exec` run command lines.
                self.emit(argv, wrappers);
                let env: Vec<String> = self.ctx.iter().chain(wrappers).cloned().collect();
                for s in crate::git::shell_snippets(argv, &env) {
                    self.script(&s, wrappers, "git")?;
                }
                return Ok(Step::Done(Fin::default()));
            }
            _ => {}
        }
        if argv[0].starts_with('$') || argv[0].starts_with('`') {
            return self.dynamic(argv, wrappers);
        }
        match (stdin_code_flag(name, argv), stdin) {
            (Some(flag), Stdin::Text(code)) => self.emit(&with_code(argv, flag, code), wrappers),
            (Some(flag), Stdin::Heredoc(id)) => match self.heredocs[*id].body.clone() {
                Some(code) => self.emit(&with_code(argv, flag, &code), wrappers),
                None => {
                    self.deferred_code.push((*id, self.out.cmds.len(), flag));
                    self.emit(argv, wrappers);
                }
            },
            _ => self.emit(argv, wrappers),
        }
        let stdout = match name {
            "echo" | "printf" => printed_text(argv).map(Feed::Text),
            "cat" if argv[1..].iter().all(|a| a == "-") => match stdin {
                Stdin::Heredoc(id) => Some(Feed::Heredoc(*id)),
                Stdin::Text(t) => Some(Feed::Text(t.clone())),
                Stdin::Inherited | Stdin::File => None,
            },
            _ => None,
        };
        Ok(Step::Done(Fin { stdout, ..Fin::default() }))
    }

    /// A program named by an expansion (`$SUDO git push`, `"$SHELL" -c '…'`) whose values the line
    /// does not show is reported as is (the mark of a program that cannot be known), and its arguments
    /// are also taken as a command (it may be a wrapper) or, with `-c`, as a script (it may be a shell).
    fn dynamic(&mut self, argv: &[String], wrappers: &[String]) -> Res<Step> {
        // Reported only when its value is not known: a known one is reported with its values.
        if !mem::take(&mut self.program_seen) {
            self.emit(argv, wrappers);
        }
        if let ShellRun::Script(s, _) = shell_run(false, &argv[1..]) {
            self.script(&s, wrappers, program_name(&argv[0]))?;
        }
        let dynamic_wrappers = wrappers.iter().filter(|w| w.starts_with('$') || w.starts_with('`')).count();
        if argv.len() > 1 && !argv[1].starts_with('-') && dynamic_wrappers < MAX_VARIANTS {
            return Ok(Step::Peel(argv[1..].to_vec()));
        }
        Ok(Step::Done(Fin::default()))
    }

    fn env(&mut self, argv: &[String], wrappers: &[String]) -> Res<Step> {
        let mut words: Vec<String> = argv[1..].to_vec();
        let mut i = 0;
        let mut splices = 0;
        while let Some(a) = words.get(i).cloned() {
            if a == "--" {
                i += 1;
                break;
            }
            if a == "-" {
                i += 1; // same as -i
                continue;
            }
            // The option's argument and the index after it, for `-S` (which is split into words
            // that replace it, and may hold more options) and options that take a value.
            let mut split: Option<(Option<String>, usize)> = None;
            if let Some(long) = a.strip_prefix("--") {
                let (n, v) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (long, None),
                };
                let has_value = v.is_some();
                if !n.is_empty() && "split-string".starts_with(n) {
                    split = Some(if has_value { (v, i + 1) } else { (words.get(i + 1).cloned(), i + 2) });
                } else if !has_value && !n.is_empty() && ["unset", "chdir", "argv0"].iter().any(|o| o.starts_with(n)) {
                    i += 2;
                    continue;
                } else {
                    i += 1;
                    continue;
                }
            } else if a.len() > 1 && a.starts_with('-') {
                let mut next = i + 1;
                for (k, c) in a.char_indices().skip(1) {
                    if matches!(c, 'u' | 'C' | 'a' | 'P' | 'S') {
                        let rest = &a[k + c.len_utf8()..];
                        let value = if rest.is_empty() {
                            next = i + 2;
                            words.get(i + 1).cloned()
                        } else {
                            Some(rest.to_string())
                        };
                        if c == 'S' {
                            split = Some((value, next));
                        }
                        break;
                    }
                }
                if split.is_none() {
                    i = next;
                    continue;
                }
            } else {
                break;
            }
            let Some((value, next)) = split else { break };
            splices += 1;
            if splices > MAX_PEELS {
                return Err(ShellError::TooDeep);
            }
            let parts = env_split(&value.unwrap_or_default())?;
            let end = next.min(words.len());
            words.splice(i..end, parts);
        }
        // An option whose value is missing (`env -u` last) moves past the end (found by fuzzing).
        let i = i.min(words.len());
        let assignments = words[i..].iter().take_while(|a| is_assignment_str(a)).count();
        if i + assignments < words.len() {
            return Ok(Step::Peel(words[i..].to_vec()));
        }
        self.emit_done(argv, wrappers)
    }

    fn su(&mut self, name: &str, argv: &[String], wrappers: &[String], stdin: &Stdin) -> Res<Step> {
        let mut scripts = Vec::new();
        let mut i = 1;
        while i < argv.len() {
            let (opts, j) = parse_opts(argv, i, &SU);
            for o in opts {
                match o.name.as_str() {
                    "c" | "command" | "session-command" => scripts.extend(o.value),
                    // `runuser -u user cmd args…` runs a command directly.
                    "u" | "user" if name == "runuser" => {
                        return Ok(if j < argv.len() {
                            Step::Peel(argv[j..].to_vec())
                        } else {
                            self.emit_done(argv, wrappers)?
                        });
                    }
                    _ => {}
                }
            }
            i = j + 1; // util-linux permutes: options may follow the user name
        }
        if scripts.is_empty() {
            return self.stdin_shell(argv, wrappers, stdin);
        }
        for s in scripts {
            self.script(&s, wrappers, name)?;
        }
        Ok(Step::Done(Fin::default()))
    }
}

// ---------------------------------------------------------------------------------------------
// Wrappers and their options
// ---------------------------------------------------------------------------------------------

/// Options of a wrapper: which take an argument. Others are flags; unknown long options that are a
/// prefix of one taking an argument are taken as it (getopt accepts unambiguous abbreviations).
struct Opts {
    short_arg: &'static str,
    long_arg: &'static [&'static str],
}

impl Opts {
    fn long_takes_arg(&self, name: &str) -> bool {
        !name.is_empty() && self.long_arg.iter().any(|o| o.starts_with(name))
    }
}

const NO_ARGS: Opts = Opts { short_arg: "", long_arg: &[] };
const WATCH: Opts = Opts { short_arg: "nqs", long_arg: &["interval", "equexit", "shotsdir"] };
const SU: Opts = Opts {
    short_arg: "cgGsuw",
    long_arg: &["command", "session-command", "group", "supp-group", "shell", "user", "whitelist-environment"],
};
const SCRIPT: Opts = Opts {
    short_arg: "cEIOBTm",
    long_arg: &["command", "echo", "log-in", "log-out", "log-io", "log-timing", "logging-format", "output-limit"],
};
const SSH: Opts = Opts { short_arg: "BbcDEeFIiJLlmOopQRSWw", long_arg: &[] };
const FLOCK: Opts = Opts { short_arg: "wE", long_arg: &["timeout", "wait", "conflict-exit-code"] };
const UV_RUN: Opts = Opts {
    short_arg: "pPw",
    long_arg: &[
        "with",
        "with-editable",
        "with-requirements",
        "python",
        "directory",
        "project",
        "package",
        "extra",
        "group",
        "only-group",
        "no-group",
        "env-file",
        "index",
        "default-index",
        "index-url",
        "extra-index-url",
        "find-links",
        "cache-dir",
        "config-file",
        "upgrade-package",
        "reinstall-package",
        "refresh-package",
        "resolution",
        "prerelease",
        "exclude-newer",
        "link-mode",
        "python-platform",
        "color",
    ],
};

/// A wrapper that runs the command after its options and `operands` fixed operands.
struct Wrapper {
    names: &'static [&'static str],
    opts: Opts,
    operands: usize,
    /// Accepts `NAME=value` words before the command.
    assignments: bool,
}

const fn wrapper(
    names: &'static [&'static str],
    short_arg: &'static str,
    long_arg: &'static [&'static str],
    operands: usize,
) -> Wrapper {
    Wrapper { names, opts: Opts { short_arg, long_arg }, operands, assignments: false }
}

const WRAPPERS: &[Wrapper] = &[
    // `-h` is taken to have an argument (host): if it is really `--help`, nothing runs anyway.
    Wrapper {
        names: &["sudo"],
        opts: Opts {
            short_arg: "aCcDghpRrTtUu",
            long_arg: &[
                "auth-type",
                "close-from",
                "login-class",
                "chdir",
                "group",
                "host",
                "prompt",
                "chroot",
                "role",
                "type",
                "command-timeout",
                "other-user",
                "user",
            ],
        },
        operands: 0,
        assignments: true,
    },
    wrapper(&["doas"], "uCa", &[], 0),
    wrapper(&["timeout"], "sk", &["signal", "kill-after"], 1),
    wrapper(&["nohup", "builtin", "chronic", "unbuffer", "setsid", "nocorrect", "noglob", "-", "busybox"], "", &[], 0),
    wrapper(&["nice"], "n", &["adjustment"], 0),
    wrapper(&["ionice"], "cnpPu", &["class", "classdata", "pid", "pgid", "uid"], 0),
    wrapper(&["stdbuf"], "ioe", &["input", "output", "error"], 0),
    wrapper(&["exec"], "a", &[], 0),
    wrapper(&["time"], "fo", &["format", "output"], 0),
    wrapper(&["caffeinate"], "tw", &[], 0),
    wrapper(&["pkexec"], "", &["user"], 0),
    wrapper(&["taskset"], "", &[], 1),
    wrapper(&["chrt"], "TPD", &["sched-runtime", "sched-period", "sched-deadline"], 1),
    wrapper(&["chroot"], "", &["userspec", "groups"], 1),
    wrapper(
        &["unshare"],
        "SGRw",
        &[
            "setuid",
            "setgid",
            "root",
            "wd",
            "propagation",
            "setgroups",
            "monotonic",
            "boottime",
            "map-user",
            "map-group",
            "map-users",
            "map-groups",
        ],
        0,
    ),
    wrapper(&["nsenter"], "tSG", &["target", "setuid", "setgid"], 0),
    wrapper(&["prlimit"], "p", &["pid"], 0),
    // Tracers and sandboxing launchers run the command after their options.
    wrapper(
        &["strace"],
        "abeEIoOpPsSuUX",
        &[
            "trace",
            "trace-fds",
            "signal",
            "status",
            "output",
            "attach",
            "trace-path",
            "string-limit",
            "summary-sort",
            "summary-columns",
            "user",
            "env",
            "inject",
            "fault",
            "const-print-style",
        ],
        0,
    ),
    wrapper(&["ltrace"], "aADeFlnopsuwx", &["align", "config", "output", "library"], 0),
    wrapper(&["valgrind", "catchsegv", "firejail", "torsocks"], "", &[], 0),
    wrapper(&["proxychains", "proxychains4"], "f", &[], 0),
    wrapper(
        &["xvfb-run"],
        "efnpsw",
        &["error-file", "auth-file", "server-num", "xauth-protocol", "server-args", "wait"],
        0,
    ),
    wrapper(&["fakeroot"], "lsib", &["lib", "faked"], 0),
    wrapper(&["faketime"], "fm", &[], 1),
    wrapper(
        &["xargs"],
        "aEIdLnPs",
        &["arg-file", "delimiter", "max-args", "max-procs", "max-chars", "process-slot-var"],
        0,
    ),
];

/// Whether a command line that `name` runs may run under a POSIX `sh` (dash), given whether the
/// current line may. Known bash-like shells do not; `sh` and unknown shells (`$SHELL`, su's login
/// shell, watch's and git's `sh -c`) may.
fn runs_posix(name: &str, current: bool) -> bool {
    match name.to_ascii_lowercase().as_str() {
        "bash" | "rbash" | "zsh" | "ksh" | "ksh93" | "mksh" | "lksh" | "pdksh" | "oksh" | "fish" | "nix-shell" => false,
        "eval" | "trap" | "alias" => current,
        _ => true,
    }
}

/// Directories of installed programs: a program there is what its name says.
pub(crate) fn is_system_path(argv0: &str) -> bool {
    !argv0.contains('/')
        || [
            "/usr/bin/",
            "/bin/",
            "/usr/local/bin/",
            "/usr/sbin/",
            "/sbin/",
            "/opt/homebrew/bin/",
            "/home/linuxbrew/.linuxbrew/bin/",
            "/snap/bin/",
            "/usr/libexec/git-core/",
            "/usr/lib/git-core/",
        ]
        .iter()
        .any(|d| argv0.starts_with(d) && !argv0[d.len()..].contains('/'))
}

/// Whether the parser reads what `name` runs instead of reporting `name` itself (a shell given its script,
/// a wrapper such as `sudo` or `timeout`, `xargs`, `find -exec`, `watch`, `su`, `ssh`).
pub(crate) fn sees_through(name: &str) -> bool {
    SHELLS.contains(&name)
        || WRAPPERS.iter().any(|w| w.names.contains(&name))
        || matches!(
            name,
            "env"
                | "command"
                | "xargs"
                | "parallel"
                | "find"
                | "fd"
                | "fdfind"
                | "watch"
                | "su"
                | "runuser"
                | "sg"
                | "script"
                | "flock"
                | "nix-shell"
                | "nix"
                | "mise"
                | "rtx"
                | "ssh"
                | "busybox"
        )
}

const SHELLS: &[&str] = &[
    "sh", "bash", "rbash", "zsh", "dash", "ksh", "ksh93", "mksh", "lksh", "pdksh", "oksh", "ash", "yash", "posh",
    "fish",
];

struct Opt {
    name: String,
    value: Option<String>,
}

/// Options of `argv` from `start` in getopt style, stopping at the first operand or after `--`.
/// Returns the options and the index of the first operand.
fn parse_opts(argv: &[String], start: usize, spec: &Opts) -> (Vec<Opt>, usize) {
    let mut opts = Vec::new();
    let mut i = start;
    while let Some(a) = argv.get(i) {
        if a == "--" {
            i += 1;
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            i += 1;
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None if spec.long_takes_arg(long) => {
                    i += 1;
                    (long, argv.get(i - 1).cloned())
                }
                None => (long, None),
            };
            opts.push(Opt { name: name.to_string(), value });
            continue;
        }
        let Some(bundle) = a.strip_prefix('-').filter(|b| !b.is_empty()) else { break };
        i += 1;
        for (k, c) in bundle.char_indices() {
            if spec.short_arg.contains(c) {
                let rest = &bundle[k + c.len_utf8()..];
                let value = if rest.is_empty() {
                    i += 1;
                    argv.get(i - 1).cloned()
                } else {
                    Some(rest.to_string())
                };
                opts.push(Opt { name: c.to_string(), value });
                break;
            }
            opts.push(Opt { name: c.to_string(), value: None });
        }
    }
    (opts, i.min(argv.len()))
}

/// Values of the options `names` anywhere in `argv` (GNU getopt permutes options and operands).
fn collect_opt_values(argv: &[String], spec: &Opts, names: &[&str]) -> Vec<String> {
    let mut values = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let (opts, j) = parse_opts(argv, i, spec);
        values.extend(opts.into_iter().filter(|o| names.contains(&o.name.as_str())).filter_map(|o| o.value));
        i = j + 1;
    }
    values
}

enum ShellRun {
    /// `-c SCRIPT`, and the arguments after it (`$0`, `$1`, …).
    Script(String, Vec<String>),
    /// A script file: its content is unknown.
    File,
    /// No script operand: commands come from stdin.
    Stdin,
}

/// What a shell invocation with arguments `args` runs.
fn shell_run(fish: bool, args: &[String]) -> ShellRun {
    let mut i = 0;
    let mut command = false;
    let mut stdin = false;
    while let Some(a) = args.get(i) {
        i += 1;
        if a == "--" || a == "-" {
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, value) = long.split_once('=').map_or((long, None), |(n, v)| (n, Some(v)));
            match name {
                "rcfile" | "init-file" | "emulate" if value.is_none() => i += 1,
                "command" | "init-command" if fish => {
                    let script = value.map(str::to_string).or_else(|| args.get(i).cloned());
                    return ShellRun::Script(script.unwrap_or_default(), Vec::new());
                }
                _ => {}
            }
            continue;
        }
        if a.len() < 2 || !(a.starts_with('-') || a.starts_with('+')) {
            i -= 1;
            break;
        }
        for (k, c) in a.char_indices().skip(1) {
            match c {
                // fish's `-c`/`-C` take their argument directly, possibly attached.
                'c' | 'C' if fish => {
                    let rest = &a[k + 1..];
                    let script = if rest.is_empty() { args.get(i).cloned() } else { Some(rest.to_string()) };
                    return ShellRun::Script(script.unwrap_or_default(), Vec::new());
                }
                'c' => command = true,
                's' => stdin = true,
                'o' | 'O' => i += 1,
                _ => {}
            }
        }
    }
    if command {
        // `bash -c` without a script is an error: nothing runs.
        let params = args.get(i + 1..).unwrap_or_default().to_vec();
        return args.get(i).map_or(ShellRun::File, |s| ShellRun::Script(s.clone(), params));
    }
    if stdin || i >= args.len() { ShellRun::Stdin } else { ShellRun::File }
}

/// The commands `find … -exec CMD … ;` (also `-execdir`, `-ok`, `-okdir`) or `fd -x CMD …` runs.
fn exec_segments(name: &str, argv: &[String]) -> Vec<Vec<String>> {
    let is_exec = |a: &str| {
        if name == "find" {
            matches!(a, "-exec" | "-execdir" | "-ok" | "-okdir")
        } else {
            matches!(a, "-x" | "--exec" | "-X" | "--exec-batch")
        }
    };
    let mut segments = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        if !is_exec(&argv[i]) {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut j = start;
        while j < argv.len() && !(argv[j] == ";" || (argv[j] == "+" && j > start && argv[j - 1] == "{}")) {
            j += 1;
        }
        if j > start {
            segments.push(argv[start..j].to_vec());
        }
        i = j + 1;
    }
    segments
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A word that is exactly one variable or positional parameter reference.
struct VarRef<'w> {
    name: &'w str,
    /// The WORD of `${x:-WORD}` and the like, which the expansion may also give.
    default: Option<String>,
    /// Unquoted: the value is split into fields.
    split: bool,
}

/// `$c`, `${c}`, `"$c"`, `"${c[@]}"`, `${c:-WORD}`, `$1`, `"$@"`; `None` for anything else.
fn var_ref(w: &Word) -> Option<VarRef<'_>> {
    let t = w.text.as_str();
    let (inner, braced) = match t.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        Some(inner) => (inner, true),
        None => (t.strip_prefix('$')?, false),
    };
    let name_len = match inner.chars().next() {
        Some('@' | '*') => 1,
        _ => inner.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(inner.len()),
    };
    let (name, rest) = inner.split_at(name_len);
    let default = match rest {
        "" | "[@]" | "[*]" => None,
        _ if !braced => return None,
        _ => {
            let op = [":-", ":=", ":+", "-", "=", "+"].into_iter().find(|op| rest.starts_with(op))?;
            Some(unquote(&rest[op.len()..]))
        }
    };
    if name.is_empty() {
        return None;
    }
    let split = if braced { w.bare_expansion } else { w.quoted.first() == Some(&false) };
    Some(VarRef { name, default, split })
}

/// What `printf FORMAT ARGS…` prints, for formats of `%s`, `%b`, `%%` and escapes only (the
/// format is reused while arguments remain, as printf does); `None` for anything else.
fn printf_format(format: &str, args: &[String]) -> Option<String> {
    let format = decode_escapes(format);
    let mut out = String::new();
    let mut next = 0;
    loop {
        let mut used = false;
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next()? {
                '%' => out.push('%'),
                's' => {
                    out.push_str(args.get(next).map_or("", String::as_str));
                    next += 1;
                    used = true;
                }
                'b' => {
                    out.push_str(&decode_escapes(args.get(next).map_or("", String::as_str)));
                    next += 1;
                    used = true;
                }
                _ => return None,
            }
            if out.len() > MAX_VALUE_LEN {
                return None;
            }
        }
        if !used || next >= args.len() {
            return Some(out);
        }
    }
}

/// `'text'` or `"text"` without its quotes (a `${x:-WORD}` default).
fn unquote(s: &str) -> String {
    for q in ['\'', '"'] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

/// The option that gives an interpreter its program on the command line (`python3 -c`), when it
/// reads its program from stdin here: no script operand but `-`, no code already given.
fn stdin_code_flag(name: &str, argv: &[String]) -> Option<&'static str> {
    let python = name.strip_prefix("python").is_some_and(|r| r.chars().all(|c| c.is_ascii_digit() || c == '.'));
    let flag = match name {
        _ if python => "-c",
        "perl" | "ruby" | "node" | "nodejs" => "-e",
        _ => return None,
    };
    let mut operands = argv[1..].iter().filter(|a| *a == "-" || !a.starts_with('-'));
    let given = argv[1..]
        .iter()
        .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains(if python { 'c' } else { 'e' }));
    let module = python && argv[1..].iter().any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('m'));
    (operands.all(|a| a == "-") && !given && !module).then_some(flag)
}

/// The command with its program given on the command line instead of on stdin: the same program,
/// shown so that rules can read it (`python3 <<EOF` → `python3 -c CODE`).
fn with_code(argv: &[String], flag: &str, code: &str) -> Vec<String> {
    let mut out = vec![argv[0].clone(), flag.to_string(), code.to_string()];
    out.extend(argv[1..].iter().filter(|a| *a != "-").cloned());
    out
}

/// What `echo …` or `printf FORMAT …` prints, when the line shows it (`printf` formats of `%s`, `%b`
/// and escapes only; `printf -v` prints nothing).
fn printed_text(argv: &[String]) -> Option<String> {
    match program_name(argv.first()?) {
        "echo" => Some(decode_escapes(&echo_args(&argv[1..]).join(" "))),
        "printf" => {
            let start = if argv.get(1).is_some_and(|a| a == "--") { 2 } else { 1 };
            let format = argv.get(start)?;
            if format == "-v" {
                return None;
            }
            printf_format(format, &argv[start + 1..])
        }
        _ => None,
    }
}

/// `echo`'s arguments without its leading options.
fn echo_args(args: &[String]) -> &[String] {
    let opts = args
        .iter()
        .take_while(|a| a.len() > 1 && a.starts_with('-') && a[1..].chars().all(|c| matches!(c, 'n' | 'e' | 'E')))
        .count();
    &args[opts..]
}

/// Splits an `env -S` string into words: quotes, backslash escapes (`\_` is a space), `#` comments
/// and `\c` (end) as GNU env does. `${VAR}` is kept literally.
fn env_split(s: &str) -> Res<Vec<String>> {
    let src: Vec<char> = s.chars().collect();
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut i = 0;
    while let Some(&c) = src.get(i) {
        i += 1;
        match c {
            ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' => {
                if in_word {
                    words.push(mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match src.get(i) {
                        None => return Err(ShellError::UnbalancedQuote("single quote in `env -S`")),
                        Some('\'') => break,
                        Some(&c) => cur.push(c),
                    }
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                in_word = true;
                loop {
                    match src.get(i) {
                        None => return Err(ShellError::UnbalancedQuote("double quote in `env -S`")),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            match src.get(i) {
                                Some('_') => cur.push(' '),
                                Some('c') => return Ok(finish_split(words, cur, true)),
                                Some(_) => cur.push_str(&decode_escape(&src, &mut i)),
                                None => cur.push('\\'),
                            }
                            continue;
                        }
                        Some(&c) => cur.push(c),
                    }
                    i += 1;
                }
                i += 1;
            }
            '\\' => match src.get(i) {
                Some('_') => {
                    i += 1;
                    if in_word {
                        words.push(mem::take(&mut cur));
                        in_word = false;
                    }
                }
                Some('c') => return Ok(finish_split(words, cur, in_word)),
                Some(_) => {
                    in_word = true;
                    cur.push_str(&decode_escape(&src, &mut i));
                }
                None => {
                    in_word = true;
                    cur.push('\\');
                }
            },
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    Ok(finish_split(words, cur, in_word))
}

fn finish_split(mut words: Vec<String>, cur: String, in_word: bool) -> Vec<String> {
    if in_word {
        words.push(cur);
    }
    words
}

/// Decodes the escape whose letter is at `src[*i]` (the backslash already consumed), advancing `i`.
/// Unknown escapes keep their backslash.
fn decode_escape(src: &[char], i: &mut usize) -> String {
    let Some(&c) = src.get(*i) else { return "\\".into() };
    *i += 1;
    let hex = |i: &mut usize, max: usize| {
        let mut v = 0u32;
        let mut n = 0;
        while n < max
            && let Some(d) = src.get(*i).and_then(|c| c.to_digit(16))
        {
            v = v * 16 + d;
            *i += 1;
            n += 1;
        }
        (n > 0).then_some(v)
    };
    let decoded = match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'a' => '\x07',
        'b' => '\x08',
        'e' | 'E' => '\x1b',
        'f' => '\x0c',
        'v' => '\x0b',
        '\\' | '\'' | '"' | '?' => c,
        '0'..='7' => {
            let mut v = c.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                match src.get(*i).and_then(|c| c.to_digit(8)) {
                    Some(d) => {
                        v = v * 8 + d;
                        *i += 1;
                    }
                    None => break,
                }
            }
            char::from_u32(v).unwrap_or('\u{fffd}')
        }
        'x' | 'u' | 'U' => {
            let max = match c {
                'x' => 2,
                'u' => 4,
                _ => 8,
            };
            match hex(i, max) {
                Some(v) => char::from_u32(v).unwrap_or('\u{fffd}'),
                None => return format!("\\{c}"),
            }
        }
        'c' => match src.get(*i) {
            Some(&n) => {
                *i += 1;
                char::from_u32(u32::from(n) & 0x1f).unwrap_or('\u{fffd}')
            }
            None => return "\\c".into(),
        },
        _ => return format!("\\{c}"),
    };
    decoded.to_string()
}

/// Backslash escapes decoded everywhere in `s` (what `echo -e` or `printf` print); used only to
/// read a script piped into a shell, so interpreting them when the real echo would not is harmless.
fn decode_escapes(s: &str) -> String {
    let src: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&c) = src.get(i) {
        i += 1;
        if c == '\\' {
            out.push_str(&decode_escape(&src, &mut i));
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Word helpers
// ---------------------------------------------------------------------------------------------

/// `NAME=`, `NAME+=` or `NAME[sub]=` unquoted at the start of `chars`; the length up to and
/// including `=`.
fn assignment_len(chars: &[(char, bool)]) -> Option<usize> {
    let first = chars.first()?;
    if first.1 || !(first.0.is_ascii_alphabetic() || first.0 == '_') {
        return None;
    }
    let mut i = 1;
    while chars.get(i).is_some_and(|&(c, q)| !q && (c.is_ascii_alphanumeric() || c == '_')) {
        i += 1;
    }
    if chars.get(i) == Some(&('[', false)) {
        i += chars[i..].iter().position(|&(c, q)| c == ']' && !q)? + 1;
    }
    if chars.get(i) == Some(&('+', false)) {
        i += 1;
    }
    (chars.get(i) == Some(&('=', false))).then_some(i + 1)
}

fn is_assignment(chars: &[(char, bool)]) -> bool {
    assignment_len(chars).is_some()
}

/// The whole word is `NAME=` (so a following `(` starts an array value).
fn is_assignment_prefix(chars: &[(char, bool)]) -> bool {
    assignment_len(chars) == Some(chars.len())
}

fn is_assignment_str(s: &str) -> bool {
    let chars: Vec<(char, bool)> = s.chars().map(|c| (c, false)).collect();
    is_assignment(&chars)
}

fn is_function_name(w: &Word) -> bool {
    !w.had_quotes
        && reserved(w).is_none()
        && !w.text.is_empty()
        && !w.text.chars().any(|c| matches!(c, '$' | '`' | '=' | '"' | '\'' | '\\'))
}

/// Bash brace expansion of one word (`pre{a,b}post`, `{1..3}`, `{a..e..2}`), over unquoted braces
/// only. Empty results of an unquoted word are dropped, as bash does.
fn brace_expand(w: &Word) -> Res<Vec<String>> {
    if !w.text.contains('{') {
        return Ok(vec![w.text.clone()]);
    }
    let mut stack = vec![w.chars()];
    let mut done = Vec::new();
    let mut chars_made = 0usize;
    while let Some(item) = stack.pop() {
        match find_brace(&item)? {
            None => done.push(item.iter().map(|&(c, _)| c).collect::<String>()),
            Some((open, close, alternatives)) => {
                for alt in alternatives.into_iter().rev() {
                    let mut n = item[..open].to_vec();
                    n.extend(alt);
                    n.extend_from_slice(&item[close + 1..]);
                    chars_made += n.len();
                    stack.push(n);
                }
            }
        }
        if done.len() + stack.len() > MAX_BRACE_WORDS || chars_made > MAX_BRACE_CHARS {
            return Err(ShellError::TooManyWords);
        }
    }
    if !w.had_quotes {
        done.retain(|s| !s.is_empty());
    }
    Ok(done)
}

type Alternatives = Vec<Vec<(char, bool)>>;

/// The leftmost expandable brace group: its `{` and `}` indices and alternatives.
fn find_brace(item: &[(char, bool)]) -> Res<Option<(usize, usize, Alternatives)>> {
    // One pass pairs the braces (unmatched ones are literal) and notes each pair's top-level commas.
    let mut open: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut best: Option<(usize, usize, Vec<usize>)> = None;
    for (i, &(c, q)) in item.iter().enumerate() {
        if q {
            continue;
        }
        match c {
            '{' if !(i > 0 && item[i - 1] == ('$', false)) => open.push((i, Vec::new())),
            ',' => {
                if let Some(top) = open.last_mut() {
                    top.1.push(i);
                }
            }
            '}' => {
                if let Some((o, commas)) = open.pop()
                    && best.as_ref().is_none_or(|b| o < b.0)
                    && (!commas.is_empty() || sequence(&item[o + 1..i])?.is_some())
                {
                    best = Some((o, i, commas));
                }
            }
            _ => {}
        }
    }
    let Some((o, c, commas)) = best else { return Ok(None) };
    let alternatives = if commas.is_empty() {
        sequence(&item[o + 1..c])?.unwrap_or_default()
    } else {
        let mut bounds = vec![o];
        bounds.extend(commas);
        bounds.push(c);
        bounds.windows(2).map(|b| item[b[0] + 1..b[1]].to_vec()).collect()
    };
    Ok(Some((o, c, alternatives)))
}

/// A sequence expression `x..y[..step]` of integers or single letters.
fn sequence(inner: &[(char, bool)]) -> Res<Option<Alternatives>> {
    if inner.iter().any(|&(_, q)| q) {
        return Ok(None);
    }
    let text: String = inner.iter().map(|&(c, _)| c).collect();
    let parts: Vec<&str> = text.split("..").collect();
    if !(2..=3).contains(&parts.len()) {
        return Ok(None);
    }
    let step: i128 = match parts.get(2) {
        Some(s) => match s.parse::<i64>() {
            Ok(n) => i128::from(n).abs().max(1),
            Err(_) => return Ok(None),
        },
        None => 1,
    };
    let unquoted = |s: String| s.chars().map(|c| (c, false)).collect::<Vec<_>>();
    let numbers = (parts[0].parse::<i64>(), parts[1].parse::<i64>());
    if let (Ok(a), Ok(b)) = numbers {
        let (a, b) = (i128::from(a), i128::from(b));
        if (a - b).abs() / step + 1 > MAX_BRACE_WORDS as i128 {
            return Err(ShellError::TooManyWords);
        }
        let padded = |s: &str| s.trim_start_matches('-').len() > 1 && s.trim_start_matches('-').starts_with('0');
        let width = if padded(parts[0]) || padded(parts[1]) { parts[0].len().max(parts[1].len()) } else { 0 };
        let dir = if b >= a { step } else { -step };
        let mut v = a;
        let mut out = Vec::new();
        while (dir > 0 && v <= b) || (dir < 0 && v >= b) {
            let s = if v < 0 { format!("-{:0w$}", -v, w = width.saturating_sub(1)) } else { format!("{v:0width$}") };
            out.push(unquoted(s));
            v += dir;
        }
        return Ok(Some(out));
    }
    let (mut x, mut y) = (parts[0].chars(), parts[1].chars());
    match (x.next(), x.next(), y.next(), y.next()) {
        (Some(a), None, Some(b), None) if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            let (a, b) = (i128::from(u32::from(a)), i128::from(u32::from(b)));
            let dir = if b >= a { step } else { -step };
            let mut v = a;
            let mut out = Vec::new();
            while (dir > 0 && v <= b) || (dir < 0 && v >= b) {
                let c = u32::try_from(v).ok().and_then(char::from_u32).unwrap_or('?');
                out.push(vec![(c, false)]);
                v += dir;
            }
            Ok(Some(out))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn argvs(line: &str) -> Vec<Vec<String>> {
        parse_commands(line).unwrap_or_else(|e| panic!("{line:?}: {e}")).into_iter().map(|c| c.argv).collect()
    }

    fn one(line: &str) -> Vec<String> {
        let mut all = argvs(line);
        assert_eq!(all.len(), 1, "{line:?} gave {all:?}");
        all.remove(0)
    }

    fn v(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    fn has(line: &str, want: &[&str]) -> bool {
        argvs(line).contains(&v(want))
    }

    #[test]
    fn quoting() {
        assert_eq!(one(r#"gi"t" pu'sh' -f"#), v(&["git", "push", "-f"]));
        assert_eq!(one(r#"echo "a \"b\" \$c \\ \x" 'it''s' a\ b"#), v(&["echo", r#"a "b" $c \ \x"#, "its", "a b"]));
        assert_eq!(one(r"echo $'a\nb\t\'\\\x41'"), v(&["echo", "a\nb\t'\\A"]));
        assert_eq!(one("echo a\\\nb \\\n c"), v(&["echo", "ab", "c"]));
        assert_eq!(one("echo '' \"\" x"), v(&["echo", "", "", "x"]));
        assert_eq!(one("echo a # comment; git push -f"), v(&["echo", "a"]));
        assert_eq!(one("echo a#b"), v(&["echo", "a#b"]));
        assert_eq!(one("echo $\"hi\""), v(&["echo", "hi"]));
    }

    #[test]
    fn separators_and_redirections() {
        assert_eq!(
            argvs("a 1; b 2 && c || d | e |& f & g\nh"),
            vec![v(&["a", "1"]), v(&["b", "2"]), v(&["c"]), v(&["d"]), v(&["e"]), v(&["f"]), v(&["g"]), v(&["h"])]
        );
        assert_eq!(one("git push >out 2>&1 <in &>all >>app <<<'here' 3<>f >|g {fd}>x"), v(&["git", "push"]));
        assert_eq!(one("echo {a,b}>x"), v(&["echo", "a", "b"]));
        assert_eq!(one(">out git push"), v(&["git", "push"]));
        assert_eq!(argvs("cat <<EOF\ngit push -f\nEOF\necho done"), vec![v(&["cat"]), v(&["echo", "done"])]);
        assert_eq!(argvs("cat <<-'E O'\n\tgit push -f\n\tE O\nls"), vec![v(&["cat"]), v(&["ls"])]);
        assert_eq!(argvs("cat <<A <<B\na\nA\nb\nB\nls"), vec![v(&["cat"]), v(&["ls"])]);
    }

    #[test]
    fn an_env_option_whose_value_is_missing_is_not_a_panic() {
        // Found by the `shell` fuzz target: `env -a` with nothing after it moved the reader past the words.
        for line in ["env - -G\0,pytho^^^^^^^^^^owa ", "env -u", "env -S", "env -i -C"] {
            let _ = parse_commands(line);
        }
        let cmds = parse_commands("env -u").unwrap();
        assert_eq!(cmds[0].argv[0], "env");
    }

    #[test]
    fn an_arithmetic_attempt_across_a_heredoc_leaves_the_heredocs_as_they_were() {
        // Found by the `shell` fuzz target: `$((` read across a newline took the pending heredoc's body,
        // failed, and left a later heredoc's id pending; the next body read indexed past the heredocs.
        let line = "cat <<EOFnhfs(($$(($$(((((((k\u{0000}\u{0000}\u{0000}teask[\\n$$=$$$$$$$(prmcin &&alias g\u{0000}\u{0000}Z\u{0000} 5\u{0000}tf '%s' puAsh -f\nEOF\nsh\u{0006}\u{0006}\u{0006}\u{0006}<<EOF$> r\"\"\"\"\".sh";
        let _ = parse_commands(line);
    }

    #[test]
    fn heredoc_substitutions_and_shells() {
        // An unquoted heredoc runs its substitutions; a quoted one does not.
        assert!(has("cat <<EOF\n$(git push -f)\nEOF", &["git", "push", "-f"]));
        assert!(!has("cat <<'EOF'\n$(git push -f)\nEOF", &["git", "push", "-f"]));
        // A heredoc or here-string fed to a shell is a script.
        assert!(has("bash <<'EOF'\ngit push -f\nEOF", &["git", "push", "-f"]));
        assert!(has("sh -s <<EOF | cat\ngit push -f\nEOF", &["git", "push", "-f"]));
        assert!(has("bash <<< 'git push -f'", &["git", "push", "-f"]));
        assert!(has("echo 'git push -f' | sh", &["git", "push", "-f"]));
        assert!(has("printf 'ls\\ngit push -f\\n' | sudo bash", &["git", "push", "-f"]));
        assert!(has("cat <<EOF | bash\ngit push -f\nEOF", &["git", "push", "-f"]));
        // …and the shell itself is reported, as what it reads may be unknown.
        assert!(has("curl -s x | bash", &["bash"]));
    }

    #[test]
    fn nesting() {
        for line in [
            "(cd x; git push -f)",
            "true && { git push -f; }",
            "echo $(git push -f)",
            "echo \"$(git push -f)\"",
            "echo `git push -f`",
            "echo \"`git push -f`\"",
            "diff <(git push -f) >(cat)",
            "if true; then git push -f; fi",
            "if false; then :; elif git push -f; then :; else :; fi",
            "while true; do git push -f; done",
            "until git push -f; do :; done",
            "for x in a b; do git push -f; done",
            "for x in $(git push -f); do :; done",
            "for ((i=0;i<3;i++)); do git push -f; done",
            "case $x in a|b) echo;; *) git push -f;; esac",
            "echo $(case x in x) git push -f;; esac)",
            "f() { git push -f; }; f",
            "function f { git push -f; }",
            "function f() ( git push -f )",
            "[[ $(git push -f) == x ]]",
            "echo ${x:-$(git push -f)}",
            "echo $(( $(git push -f) + 1 ))",
            "a=(1 $(git push -f) 3)",
            "X=$(git push -f) true",
            "! git push -f",
            "!(git push -f)",
            "time git push -f",
            "coproc git push -f",
            "coproc NAME { git push -f; }",
            "echo $( (git push -f) )",
            "((x = $(git push -f)))",
            "sh -c '((git push -f))'",
            "x=`echo \\`git push -f\\``",
        ] {
            assert!(has(line, &["git", "push", "-f"]), "{line:?}: {:?}", argvs(line));
        }
        assert_eq!(argvs("echo $((1 + 2))"), vec![v(&["echo", "$((1 + 2))"])]);
        // Bash evaluates `((…))`; dash (`sh`) runs it as subshells, so there it is also read as commands.
        assert!(argvs("((i++))").is_empty());
        assert_eq!(argvs("sh -c '((i++))'"), vec![v(&["i++"])]);
        assert!(argvs("bash -c '((i++))'").is_empty());
        // `<<` inside `(( ))` is a shift, not a heredoc that would swallow the next line.
        assert!(has("(( x<<2 ))\ngit push", &["git", "push"]));
    }

    #[test]
    fn wrappers_are_peeled() {
        let cases: &[(&str, &[&str])] = &[
            ("sudo -u x -E git push", &["sudo"]),
            ("sudo -Eu root --preserve-env=A -- git push", &["sudo"]),
            ("sudo --user=x -H A=1 git push", &["sudo", "A=1"]),
            ("env -i -u B A=1 git push", &["env", "A=1"]),
            ("env -C /tmp -- git push", &["env"]),
            ("timeout -s KILL 30 nohup git push", &["timeout", "nohup"]),
            ("timeout --foreground 5m git push", &["timeout"]),
            ("nice -n 5 ionice -c3 git push", &["nice", "ionice"]),
            ("nice -10 git push", &["nice"]),
            ("stdbuf -oL -e 0 git push", &["stdbuf"]),
            ("exec -a name git push", &["exec"]),
            ("command -p git push", &["command"]),
            ("builtin git push", &["builtin"]),
            ("time -p git push", &["time"]),
            ("/usr/bin/time -f %e -o f git push", &["time"]),
            ("doas -u x git push", &["doas"]),
            ("chronic unbuffer -p setsid -w caffeinate -i git push", &["chronic", "unbuffer", "setsid", "caffeinate"]),
            ("watch -n 5 -x git push", &["watch"]),
            ("xargs -0 -n1 -I{} git push", &["xargs"]),
            ("A=1 B=2 git push", &["A=1", "B=2"]),
            ("A=1 sudo B=2 env C=3 git push", &["A=1", "sudo", "B=2", "env", "C=3"]),
            ("flock /tmp/l git push", &["flock"]),
            ("runuser -u x -- git push", &["runuser"]),
            ("chroot / git push", &["chroot"]),
            ("taskset -c 1 git push", &["taskset"]),
            ("poetry run git push", &["poetry"]),
            ("busybox env git push", &["busybox", "env"]),
            ("$SUDO git push", &["$SUDO"]),
        ];
        for (line, wrappers) in cases {
            let cmds = parse_commands(line).unwrap();
            let c = cmds.iter().find(|c| c.argv[0] == "git").unwrap_or_else(|| panic!("{line}: {cmds:?}"));
            assert_eq!(c.argv, v(&["git", "push"]), "{line}");
            assert_eq!(c.wrappers, v(wrappers), "{line}");
        }
        assert_eq!(one("command -v git"), v(&["command", "-v", "git"]));
        assert_eq!(one("sudo -v"), v(&["sudo", "-v"]));
        assert_eq!(one("env"), v(&["env"]));
        assert_eq!(one("env A=1"), v(&["env", "A=1"]));
        assert_eq!(one("sudo A=1"), v(&["sudo", "A=1"]));
        // Assignments alone are a command with no words.
        assert_eq!(parse_commands("A=1").unwrap(), vec![SimpleCommand { argv: vec![], wrappers: v(&["A=1"]) }]);
    }

    #[test]
    fn nested_command_lines() {
        let cases: &[(&str, &[&str])] = &[
            ("bash -c \"git push --force\"", &["bash"]),
            ("sh -c 'cd /tmp && git push --force'", &["sh"]),
            ("/bin/bash -lc 'git push --force'", &["bash"]),
            ("bash -o pipefail -ec 'git push --force'", &["bash"]),
            ("zsh -c 'git push --force' zsh arg", &["zsh"]),
            ("fish -c 'git push --force'", &["fish"]),
            ("sudo bash -c 'git push --force'", &["sudo", "bash"]),
            ("eval 'git push --force'", &["eval"]),
            ("eval git push '--force'", &["eval"]),
            ("watch 'git push --force'", &["watch"]),
            ("xargs sh -c 'git push --force'", &["xargs", "sh"]),
            ("env -S 'git push --force'", &["env"]),
            ("env -S'A=1 git push --force'", &["env", "A=1"]),
            ("env --split-string='-i git push --force'", &["env"]),
            ("su -c 'git push --force' root", &["su"]),
            ("su - root -c 'git push --force'", &["su"]),
            ("sg wheel 'git push --force'", &["sg"]),
            ("script -qc 'git push --force' /dev/null", &["script"]),
            ("flock /tmp/l -c 'git push --force'", &["flock"]),
            ("nix-shell -p git --run 'git push --force'", &["nix-shell"]),
            ("trap 'git push --force' EXIT", &["trap"]),
            ("ssh -p 22 -i key host git push --force", &["ssh"]),
            ("alias p='git push --force'", &["alias"]),
            ("\"$SHELL\" -c 'git push --force'", &["$SHELL"]),
            ("bash -c 'bash -c \"git push --force\"'", &["bash", "bash"]),
        ];
        for (line, wrappers) in cases {
            let cmds = parse_commands(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            let c = cmds
                .iter()
                .find(|c| c.argv == v(&["git", "push", "--force"]))
                .unwrap_or_else(|| panic!("{line}: {cmds:?}"));
            assert_eq!(c.wrappers, v(wrappers), "{line}");
        }
        // find and fd run their -exec commands; find itself is reported too.
        let cmds = argvs("find . -name x -exec git push -f \\; -print");
        assert_eq!(
            cmds,
            vec![
                v(&["find", ".", "-name", "x", "-exec", "git", "push", "-f", ";", "-print"]),
                v(&["git", "push", "-f"])
            ]
        );
        assert!(has("find . -execdir sh -c 'git push -f' {} +", &["git", "push", "-f"]));
        assert!(has("fd -x git push -f", &["git", "push", "-f"]));
        // A shell running a file is reported as is.
        assert_eq!(one("bash script.sh"), v(&["bash", "script.sh"]));
        // Quoted text given to a command that does not run it is not a command.
        assert_eq!(one("echo \"git push -f\""), v(&["echo", "git push -f"]));
        assert_eq!(one("git commit -m 'git push -f'"), v(&["git", "commit", "-m", "git push -f"]));
    }

    #[test]
    fn variables_assigned_on_the_line() {
        for line in [
            "c=\"git push -f\"; $c",
            "c='git push -f'\n${c}",
            "cmd=(git push -f); \"${cmd[@]}\"",
            "g=git; $g push -f",
            "g=ls; if x; then g=git; fi; $g push -f",
            "o=\"push -f\"; git $o",
            "x=-f; git push \"$x\"",
            "export c=\"git push -f\"; $c",
            "c=\"git push -f\"; bash -c \"$c\"",
            "$(echo git) push -f",
            "`printf git` push -f",
            "git push $(echo -f)",
            "$(echo git push -f)",
            "git push ${F:-\"--force\"} origin",
            "git push ${F:+-f}",
            "bash -c 'git push \"$@\"' _ -f",
            "sh -c 'git \"$1\" -f' sh push",
            "f() { git \"$@\"; }; f push -f",
            "function f { git push \"$1\"; }\nf -f",
            "alias g=git; g push -f",
            "alias p='git push'\np -f",
            "source <(echo git push -f)",
            ". <(printf 'git push -f')",
            "bash <(echo 'git push -f')",
        ] {
            let forced = argvs(line)
                .iter()
                .any(|a| a.starts_with(&v(&["git", "push"])) && a.iter().any(|w| w == "-f" || w == "--force"));
            assert!(forced, "{line:?}: {:?}", argvs(line));
        }
        // A program whose values are all known is reported with them (its arguments also as a command
        // of their own, as it may be unset); quoted values are not split.
        assert_eq!(argvs("c=x; $c a"), vec![v(&[]), v(&["a"]), v(&["x", "a"])]);
        assert_eq!(argvs("o='a b'; echo \"$o\""), vec![v(&[]), v(&["echo", "$o"]), v(&["echo", "a b"])]);
        assert_eq!(argvs("A=1 true; $A"), vec![v(&["true"]), v(&["$A"])]);
        // Recursive functions and aliases stop.
        assert!(parse_commands("f() { f; }; f").is_ok());
        assert!(parse_commands("alias ls='ls -a'; ls").is_ok());
    }

    #[test]
    fn values_set_by_builtins_and_split_by_ifs() {
        let forced =
            |line: &str| argvs(line).iter().any(|a| a.starts_with(&v(&["git", "push"])) && a.iter().any(|w| w == "-f"));
        for line in [
            "printf -v c 'git push -f'; $c",
            "printf -v c '%s %s -f' git push; $c",
            "printf -v c '%b' 'git push\\x20-f'; $c",
            "IFS=,; c='git,push,-f'; $c",
            "IFS=:; c=git:push:-f; $c",
            "set -- -f; git push \"$@\"",
            "set -e -- push -f; git \"$@\"",
            "strace -f -o /dev/null git push -f",
            "ltrace -o x git push -f",
            "valgrind --tool=none git push -f",
        ] {
            assert!(forced(line), "{line:?}: {:?}", argvs(line));
        }
        // printf's format is applied: what it prints is known only for `%s`, `%b` and escapes.
        assert!(forced("eval $(printf 'g%st push -f' i)"));
        assert!(forced("printf 'g%st push %s' i -f | sh"));
        assert!(has("$(printf '%c' g) push", &["$(printf '%c' g)", "push"]));
        assert!(has("printf '%x' 1 | sh", &["sh"]));
        // A program whose every value is known is reported with them only; one that is also set by
        // `read`, or never assigned on the line, is reported as written.
        assert!(!has("c=git; $c status", &["$c", "status"]));
        assert!(has("c=git; read c; $c status", &["$c", "status"]));
        assert!(has("read c; $c status", &["$c", "status"]));
        assert!(has("$(which git) push", &["$(which git)", "push"]));
        assert!(has("printf -v c '%d' 1; $c", &["$c"]));
        assert!(has("IFS=$x; c=a,b; $c", &["$c"]));
        assert!(has("declare -n r=c; $r", &["$r"]));
        // Appends extend the known values; an element assignment makes the array unknown.
        assert!(forced("c=git; c+=\" push -f\"; $c"));
        assert!(forced("c=(git push); c+=(-f); \"${c[@]}\""));
        assert!(has("c+=x; $c", &["$c"]));
        // A loop runs its body again with values assigned later in it.
        assert!(has("c=echo; while true; do $c hi; c='git push -f'; done", &["$c", "hi"]));
        assert!(has("c=echo; for i in 1 2; do $c hi; c=git; done", &["$c", "hi"]));
        assert!(!has("c=echo; for i in 1 2; do $c hi; done", &["$c", "hi"]));
        // A `for` variable takes each of its words.
        assert!(forced("for c in git; do $c push -f; done"));
        assert!(forced("for c in ls git; do $c push -f; done"));
        for line in [
            "for c in \"$@\"; do $c push -f; done",
            "for c; do $c push; done",
            "for c in $(cat f); do $c push; done",
            "for c in ./*; do $c push; done",
        ] {
            assert!(argvs(line).iter().any(|a| a.first().is_some_and(|p| p == "$c")), "{line:?}: {:?}", argvs(line));
        }
        assert!(has("c=echo; for i in 1 2; do eval \"$c hi\"; c=git; done", &["$c", "hi"]));
        // What `eval`, a function, an alias or `source <(…)` assigns is not seen: the variable is unknown.
        assert!(has("c=echo; eval 'c=git'; $c push", &["$c", "push"]));
        assert!(has("c=echo; f() { c=git; }; f; $c push", &["$c", "push"]));
        assert!(has("c=echo; f() { read c; }; f; $c push", &["$c", "push"]));
        assert!(has("c=echo; source <(echo c=git); $c push", &["$c", "push"]));
        assert!(!has("c=echo; eval 'ls'; $c push", &["$c", "push"]));
        assert!(has("c=(git x); c[1]=push; \"${c[@]}\" -f", &["${c[@]}", "-f"]));
    }

    #[test]
    fn interpreters_reading_a_heredoc_are_shown_with_their_program() {
        assert_eq!(one("python3 <<'EOF'\nimport json\nEOF"), v(&["python3", "-c", "import json\n"]));
        assert_eq!(one("python3 - <<< 'print(1)'"), v(&["python3", "-c", "print(1)"]));
        assert_eq!(one("perl <<EOF\nprint 1\nEOF"), v(&["perl", "-e", "print 1\n"]));
        assert_eq!(argvs("cat <<A | python3 <<B\na\nA\nb\nB")[1], v(&["python3", "-c", "b\n"]));
        // A script operand or code given already: stdin is data.
        assert_eq!(one("python3 x.py <<< 'data'"), v(&["python3", "x.py"]));
        assert_eq!(one("python3 -c 'import sys' <<< 'data'"), v(&["python3", "-c", "import sys"]));
        assert_eq!(one("python3 -m json.tool <<< '{}'"), v(&["python3", "-m", "json.tool"]));
        // Unknown stdin stays as it is.
        assert_eq!(one("python3 < x.py"), v(&["python3"]));
    }

    #[test]
    fn shells_are_reported_only_when_their_script_is_unseen() {
        for line in
            ["echo 'git status' | sh", "bash <<< 'git status'", "bash <<'E'\ngit status\nE", "bash <(echo git status)"]
        {
            assert_eq!(
                argvs(line).iter().filter(|a| a.first().is_some_and(|p| p == "sh" || p == "bash")).count(),
                0,
                "{line:?}: {:?}",
                argvs(line)
            );
            assert!(has(line, &["git", "status"]), "{line:?}");
        }
        for (line, shell) in [
            ("curl -s x | sh", v(&["sh"])),
            ("base64 -d f | bash -s", v(&["bash", "-s"])),
            ("bash < x.sh", v(&["bash"])),
            ("bash x.sh", v(&["bash", "x.sh"])),
            ("sudo -s < x", v(&["sudo", "-s"])),
        ] {
            assert!(argvs(line).contains(&shell), "{line:?}: {:?}", argvs(line));
        }
        // Assignments alone are reported, with the wrappers they run under.
        let cmds = parse_commands("PATH=/tmp/x:$PATH; bash -c 'IFS=,'").unwrap();
        assert_eq!(cmds[0], SimpleCommand { argv: vec![], wrappers: v(&["PATH=/tmp/x:$PATH"]) });
        assert_eq!(cmds[1], SimpleCommand { argv: vec![], wrappers: v(&["bash", "IFS=,"]) });
    }

    #[test]
    fn brace_expansion() {
        assert_eq!(one("git push origin {+main,}"), v(&["git", "push", "origin", "+main"]));
        assert_eq!(
            one("echo a{b,c{d,e}}f {1..3} {a..c} {05..1..2} '{x,y}' {z} ${v} {}"),
            v(&[
                "echo", "abf", "acdf", "acef", "1", "2", "3", "a", "b", "c", "05", "03", "01", "{x,y}", "{z}", "${v}",
                "{}"
            ])
        );
        assert!(has("find . -exec x {} +", &["find", ".", "-exec", "x", "{}", "+"]));
        assert_eq!(parse_commands("echo {1..100000}"), Err(ShellError::TooManyWords));
        assert_eq!(parse_commands(&format!("echo {}", "{a,b}".repeat(12))), Err(ShellError::TooManyWords));
    }

    #[test]
    fn program_names() {
        assert_eq!(program_name("/usr/bin/git"), "git");
        assert_eq!(program_name("git"), "git");
        assert_eq!(program_name("C/git.exe"), "git");
        assert_eq!(program_name(".exe"), ".exe");
        assert_eq!(one("/usr/bin/git push")[0], "/usr/bin/git");
        assert_eq!(one("=git push")[0], "git");
    }

    #[test]
    fn errors() {
        for (line, want) in [
            ("echo 'abc", ShellError::UnbalancedQuote("single quote")),
            ("echo \"abc", ShellError::UnbalancedQuote("double quote")),
            ("echo $'abc", ShellError::UnbalancedQuote("`$'` quote")),
            ("echo $(git push", ShellError::Unbalanced("`$(`")),
            ("echo `git push", ShellError::Unbalanced("backtick")),
            ("echo ${x", ShellError::Unbalanced("`${`")),
            ("(git push", ShellError::Unbalanced("`(`")),
            ("git push)", ShellError::Unbalanced("`)`")),
            ("{ git push", ShellError::Unbalanced("`{` (missing `}`)")),
            ("if true; then git push", ShellError::Unbalanced("`if` (missing `fi`)")),
            ("git push; fi", ShellError::Unexpected("`fi`".into())),
            ("cat <<", ShellError::MissingWord("<<")),
            ("echo >", ShellError::MissingWord(">")),
            ("; git push", ShellError::Unexpected("`;`".into())),
            ("env -S \"'git push\"", ShellError::UnbalancedQuote("single quote in `env -S`")),
            ("bash -c 'echo \"x'", ShellError::UnbalancedQuote("double quote")),
        ] {
            assert_eq!(parse_commands(line), Err(want), "{line:?}");
        }
        assert_eq!(parse_commands(&"x".repeat(MAX_INPUT + 1)), Err(ShellError::TooLong));
        let deep = |open: &str, close: &str, n: usize| format!("{}git push{}", open.repeat(n), close.repeat(n));
        assert_eq!(parse_commands(&deep("( ", " )", 17)), Err(ShellError::TooDeep));
        assert!(parse_commands(&deep("( ", " )", 15)).is_ok());
        // `((((…))))` is arithmetic to bash but nested subshells to dash.
        assert!(argvs(&deep("(", ")", 17)).is_empty());
        assert!(has(&format!("sh -c '{}'", deep("(", ")", 17)), &["git", "push"]));
        assert_eq!(parse_commands(&deep("echo $(", ")", 20)), Err(ShellError::TooDeep));
        assert_eq!(parse_commands(&format!("{}git push -f", "eval ".repeat(20))), Err(ShellError::TooDeep));
        assert_eq!(parse_commands(&format!("{}git push -f", "sudo ".repeat(100))), Err(ShellError::TooDeep));
        // Nested `bash -c`, each level double-quoting the next: 15 levels parse, one more level of
        // nesting is too deep, and 20 levels are also too long (the quoting doubles each level).
        let nest = |n: usize, inner: &str| {
            (0..n).fold(inner.to_string(), |s, _| {
                let q = s.replace('\\', r"\\").replace('"', "\\\"").replace('$', "\\$").replace('`', "\\`");
                format!("bash -c \"{q}\"")
            })
        };
        let cmds = parse_commands(&nest(15, "git push -f")).unwrap();
        assert_eq!(cmds, vec![SimpleCommand { argv: v(&["git", "push", "-f"]), wrappers: vec!["bash".into(); 15] }]);
        assert_eq!(parse_commands(&nest(16, "(git push -f)")), Err(ShellError::TooDeep));
        assert_eq!(parse_commands(&nest(20, "git push -f")), Err(ShellError::TooLong));
        // Hostile input stays fast and bounded.
        let fan_out: String =
            (0..6).map(|k| format!("f{k}() {{ {}; }}; ", vec![format!("f{}", k + 1); 10].join("; "))).collect();
        assert_eq!(parse_commands(&format!("{fan_out}f0")), Err(ShellError::TooManyCommands));
        let refs = "a=1; $a; a=2; $a; ".repeat(4000);
        assert!(parse_commands(&refs).is_ok());
        let big = format!("a={}; {}", "x".repeat(4000), "$a ".repeat(60_000));
        assert!(parse_commands(&big).is_ok());
        let wide = format!("c=(\"$(echo {})\"); {}", "y".repeat(1000), "echo $c; ".repeat(20_000));
        assert_eq!(parse_commands(&wide), Err(ShellError::TooManyCommands));
        let backticks =
            format!("{}{}", (0..256).map(|k| format!("v{k}=1; ")).collect::<String>(), "`a=1`".repeat(40_000));
        assert!(parse_commands(&backticks).is_ok());
        assert!(parse_commands(&"((".repeat(50_000)).is_err());
        assert!(parse_commands(&"{".repeat(100_000)).is_ok());
        assert!(parse_commands(&"$(".repeat(50_000)).is_err());
    }

    fn shell_quote(w: &str) -> String {
        format!("'{}'", w.replace('\'', r"'\''"))
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_commands(&s);
        }

        #[test]
        fn never_panics_on_shell_soup(s in proptest::collection::vec(prop_oneof![
            Just("'"), Just("\""), Just("$("), Just(")"), Just("("), Just("`"), Just("${"), Just("}"), Just("{"),
            Just("\\"), Just("\n"), Just("<<"), Just("EOF"), Just(" "), Just("|"), Just("&"), Just(";"),
            Just("$'"), Just("(("), Just("))"), Just("if"), Just("then"), Just("fi"), Just("case"), Just("esac"),
            Just("bash -c "), Just("git push -f"), Just("env -S"), Just("a"), Just(","), Just(".."), Just("#"),
        ], 0..40)) {
            let _ = parse_commands(&s.concat());
        }

        #[test]
        fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let s: String = bytes.iter().map(|&b| char::from(b)).collect();
            let _ = parse_commands(&s);
        }

        #[test]
        fn plain_words_round_trip(words in proptest::collection::vec("[a-z0-9_./-]{1,8}", 1..10)) {
            // Reserved words and wrappers change the meaning; only plain commands round-trip.
            let first = program_name(&words[0]).to_ascii_lowercase();
            prop_assume!(!RESERVED.contains(&words[0].as_str()) && !is_special(&first));
            let cmds = parse_commands(&words.join(" ")).unwrap();
            prop_assert_eq!(cmds.len(), 1);
            prop_assert_eq!(&cmds[0].argv, &words);
        }

        #[test]
        fn single_quoted_round_trip(words in proptest::collection::vec("[ -~]{0,8}", 1..8)) {
            let line = words.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ");
            let cmds = parse_commands(&format!("printf {line}")).unwrap();
            prop_assert_eq!(cmds.len(), 1);
            prop_assert_eq!(&cmds[0].argv[1..], &words[..]);
        }
    }

    fn is_special(name: &str) -> bool {
        WRAPPERS.iter().any(|w| w.names.contains(&name))
            || SHELLS.contains(&name)
            || matches!(
                name,
                "env"
                    | "command"
                    | "eval"
                    | "watch"
                    | "find"
                    | "fd"
                    | "fdfind"
                    | "su"
                    | "runuser"
                    | "sg"
                    | "script"
                    | "flock"
                    | "nix-shell"
                    | "nix"
                    | "direnv"
                    | "poetry"
                    | "pipenv"
                    | "bundle"
                    | "bundler"
                    | "uv"
                    | "mise"
                    | "rtx"
                    | "trap"
                    | "alias"
                    | "git"
            )
    }
}
