//! `paddock hook claude` and `paddock hook gemini`: Claude Code's PreToolUse and Gemini CLI's BeforeTool
//! command hooks. Reads the hook's JSON from stdin, asks the gateway's admission API about the tool call
//! and answers the way the CLI reads it: exit 0 with an `allow` decision on stdout, or exit 2 with the
//! reason on stderr, which blocks the call and shows the reason to the model. It fails closed: a denial,
//! an ask that was not approved, malformed input, a missing setting, an unreachable gateway — any error —
//! is exit 2.
//!
//! Claude Code names the call (`tool_use_id`), so its hook decides it, tied to the response gate's
//! decision of the same call. Gemini CLI's hook input names no call; its hook asks a deny-only check
//! (`check=deny-only`), which can refuse the call where it runs but never counts or asks about it again.
//!
//! The hook runs inside the workspace, so for a shell tool it reads the remotes of the repository the
//! command runs in (see [`git_remotes`]) and sends them with the event: the `github` rule then judges a
//! push to `origin` by where `origin` really points, not by the session's `workspace_repo`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use paddock_policy::ToolKind;
use paddock_runner::GatewayClient;
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    harness: HookHarness,
}

#[derive(clap::Subcommand)]
enum HookHarness {
    /// Claude Code's PreToolUse hook (command type). Reads the hook input on stdin; needs
    /// PADDOCK_GATEWAY_URL, PADDOCK_SESSION and PADDOCK_TOKEN. Exit 0 allows the call, exit 2 blocks it.
    Claude,
    /// Gemini CLI's BeforeTool hook (command type), a deny-only check; the same settings and exits.
    Gemini,
}

impl HookHarness {
    /// The hook event the CLI names in its input.
    fn event_name(&self) -> &'static str {
        match self {
            HookHarness::Claude => "PreToolUse",
            HookHarness::Gemini => "BeforeTool",
        }
    }
}

/// A larger input (a `Write` of a huge file) is refused rather than read without bound.
const MAX_INPUT: u64 = 16 << 20;

/// Longer than the gateway's own wait for a human (it answers `pending` and the client polls on); Claude
/// Code's hook timeout bounds the whole hook anyway.
const DECIDE_LIMIT: Duration = Duration::from_secs(3600);

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let harness = args.harness;
    // Nothing but the answer goes to stdout and stderr: the CLI parses the one and shows the other to the
    // model. No logging is set up.
    Ok(match decide(&harness) {
        Ok(reason) => {
            let answer = match harness {
                HookHarness::Claude => json!({"hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "permissionDecision": "allow",
                    "permissionDecisionReason": format!("Paddock: {reason}"),
                }}),
                HookHarness::Gemini => json!({"decision": "allow", "reason": format!("Paddock: {reason}")}),
            };
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("{reason}");
            ExitCode::from(2)
        }
    })
}

/// `Ok(reason)` to allow, `Err(reason)` to block.
fn decide(harness: &HookHarness) -> Result<String, String> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut input)
        .map_err(|e| format!("[paddock] The tool call was blocked: cannot read the hook input ({e})."))?;
    if input.len() as u64 > MAX_INPUT {
        return Err(format!("[paddock] The tool call was blocked: the hook input is larger than {MAX_INPUT} bytes."));
    }
    let mut event = paddock_runner::hook_input::event_of(&input, harness.event_name())?;
    let tool = event.tool.clone().unwrap_or_default();
    if ToolKind::of(&tool) == ToolKind::Shell {
        let dir = cwd_of(&input);
        event.git_remotes = git_remotes(&dir).map_err(|e| {
            format!(
                "[paddock] The tool call `{tool}` was blocked: cannot read the git remotes of `{}` ({e}).",
                dir.display()
            )
        })?;
    }
    let setting = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("[paddock] The tool call `{tool}` was blocked: {name} is not set for the hook."))
    };
    let (url, session, token) =
        (setting("PADDOCK_GATEWAY_URL")?, setting("PADDOCK_SESSION")?, setting("PADDOCK_TOKEN")?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("[paddock] The tool call `{tool}` was blocked: cannot start the hook ({e})."))?;
    let client = GatewayClient::new(&url, &session, &token);
    // The client's errors name the URL and the gateway's answer, never the token.
    let ruling = rt
        .block_on(async {
            match harness {
                HookHarness::Claude => tokio::time::timeout(DECIDE_LIMIT, client.decide(&event)).await,
                HookHarness::Gemini => tokio::time::timeout(DECIDE_LIMIT, client.check(&event)).await,
            }
        })
        .map_err(|_| format!("[paddock] The tool call `{tool}` was blocked: the gateway did not decide in time."))?
        .map_err(|e| format!("[paddock] The tool call `{tool}` was blocked: the gateway could not decide it ({e})."))?;
    if ruling.allowed() {
        return Ok(ruling.reason);
    }
    let policy = match (&ruling.policy, &ruling.rule) {
        (Some(p), Some(r)) => format!("policy `{p}` (rule `{r}`)"),
        (Some(p), None) => format!("policy `{p}`"),
        _ => "policy".to_owned(),
    };
    Err(format!(
        "[paddock] The tool call `{tool}` was blocked by {policy}: {} Do not retry it; tell the user.",
        ruling.reason.trim_end_matches('.').to_owned() + "."
    ))
}

/// Longest a `git` run of the hook may take; a repository git cannot read in time blocks the call.
const GIT_LIMIT: Duration = Duration::from_secs(10);

/// The directory the tool runs in: the input's `cwd`, else the hook's own.
fn cwd_of(input: &[u8]) -> PathBuf {
    serde_json::from_slice::<Value>(input)
        .ok()
        .and_then(|v| v["cwd"].as_str().filter(|c| !c.is_empty()).map(PathBuf::from))
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default()
}

/// The remotes of the repository `dir` is in, as the push would use them: each remote's push URLs
/// (`git remote get-url --push --all`, which applies `pushurl`, `insteadOf` and `pushInsteadOf`).
/// `Some(empty)` when `dir` is in no repository or git is not installed (a push to a named remote is then
/// asked about); `None` when `dir` does not exist (the tool cannot run there either). Reading runs nothing
/// the repository configures: no hooks, no fsmonitor, no pager.
fn git_remotes(dir: &Path) -> Result<Option<BTreeMap<String, Vec<String>>>, String> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let Some(names) = git(dir, &["remote"])? else { return Ok(Some(BTreeMap::new())) };
    let mut remotes = BTreeMap::new();
    for name in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
        let urls = git(dir, &["remote", "get-url", "--push", "--all", "--", name])?
            .ok_or_else(|| format!("`git remote get-url --push {name}` failed"))?;
        remotes.insert(name.to_owned(), urls.lines().map(str::to_owned).collect());
    }
    Ok(Some(remotes))
}

/// Runs git in `dir` with settings that keep it from running anything the repository configures; its
/// output, or `None` when git is missing or `dir` is in no repository.
fn git(dir: &Path, args: &[&str]) -> Result<Option<String>, String> {
    let spawned = Command::new("git")
        // `safe.directory`: a workspace owned by another user is read all the same (reading runs nothing).
        .args(["--no-pager", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "core.pager=cat"])
        .args(["-c", "safe.directory=*"])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("git does not start: {e}")),
    };
    let started = Instant::now();
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if started.elapsed() > GIT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("git did not answer within {}s", GIT_LIMIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("not a git repository") {
            return Ok(None);
        }
        return Err(format!("`git {}` failed: {}", args.join(" "), stderr.trim()));
    }
    String::from_utf8(out.stdout).map(Some).map_err(|_| "git printed something that is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_are_read_where_the_tool_runs() {
        let dir = std::env::temp_dir().join(format!("paddock-hook-remotes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(git_remotes(&dir.join("missing")), Ok(None));
        let run = |args: &[&str]| assert!(Command::new("git").args(args).current_dir(&dir).status().unwrap().success());
        run(&["init", "-q"]);
        assert_eq!(git_remotes(&dir), Ok(Some(BTreeMap::new())));
        run(&["remote", "add", "origin", "https://github.com/acme/app"]);
        run(&["config", "--add", "remote.origin.pushurl", "https://github.com/evil/x"]);
        run(&["config", "--add", "remote.origin.pushurl", "https://github.com/evil/y"]);
        let remotes = git_remotes(&dir).unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(remotes["origin"], ["https://github.com/evil/x", "https://github.com/evil/y"]);
    }
}
