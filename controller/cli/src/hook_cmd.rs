//! `paddock hook claude`: Claude Code's PreToolUse command hook. Reads the hook's JSON from stdin, asks
//! the gateway's admission API about the tool call and answers the way Claude Code reads it: exit 0 with
//! an `allow` decision on stdout, or exit 2 with the reason on stderr, which blocks the call and shows the
//! reason to the model. It fails closed: a denial, an ask that was not approved, malformed input, a missing
//! setting, an unreachable gateway — any error — is exit 2.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use paddock_api::Phase;
use paddock_policy::Event;
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
}

/// A larger input (a `Write` of a huge file) is refused rather than read without bound.
const MAX_INPUT: u64 = 16 << 20;

/// Longer than the gateway's own wait for a human (it answers `pending` and the client polls on); Claude
/// Code's hook timeout bounds the whole hook anyway.
const DECIDE_LIMIT: Duration = Duration::from_secs(3600);

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let HookHarness::Claude = args.harness;
    // Nothing but the answer goes to stdout and stderr: Claude Code parses the one and shows the other to
    // the model. No logging is set up.
    Ok(match claude() {
        Ok(reason) => {
            let answer = json!({"hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "allow",
                "permissionDecisionReason": format!("Paddock: {reason}"),
            }});
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
fn claude() -> Result<String, String> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut input)
        .map_err(|e| format!("[paddock] The tool call was blocked: cannot read the hook input ({e})."))?;
    if input.len() as u64 > MAX_INPUT {
        return Err(format!("[paddock] The tool call was blocked: the hook input is larger than {MAX_INPUT} bytes."));
    }
    let event = event_of(&input)?;
    let tool = event.tool.clone().unwrap_or_default();
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
        .block_on(async { tokio::time::timeout(DECIDE_LIMIT, client.decide(&event)).await })
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

/// The admission event of a PreToolUse input.
fn event_of(input: &[u8]) -> Result<Event, String> {
    let bad = |why: &str| format!("[paddock] The tool call was blocked: the hook input {why}.");
    let v: Value = serde_json::from_slice(input).map_err(|e| bad(&format!("is not JSON ({e})")))?;
    if let Some(name) = v["hook_event_name"].as_str()
        && name != "PreToolUse"
    {
        return Err(bad(&format!("is a `{name}` event, not PreToolUse")));
    }
    let tool = v["tool_name"].as_str().filter(|t| !t.is_empty()).ok_or_else(|| bad("has no `tool_name`"))?;
    let args = match &v["tool_input"] {
        Value::Null => json!({}),
        a @ Value::Object(_) => a.clone(),
        _ => return Err(bad("has a `tool_input` that is not an object")),
    };
    Ok(Event {
        phase: Phase::ToolCall,
        tool: Some(tool.to_owned()),
        args,
        tool_id: v["tool_use_id"].as_str().filter(|s| !s.is_empty()).map(str::to_owned),
        ..Event::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pre_tool_use_input_is_a_tool_call_event() {
        let e = event_of(
            br#"{"session_id":"x","hook_event_name":"PreToolUse","tool_name":"Bash",
                 "tool_input":{"command":"ls"},"tool_use_id":"toolu_1"}"#,
        )
        .unwrap();
        assert_eq!(e.phase, Phase::ToolCall);
        assert_eq!(e.tool.as_deref(), Some("Bash"));
        assert_eq!(e.args, json!({"command": "ls"}));
        assert_eq!(e.tool_id.as_deref(), Some("toolu_1"));
    }

    #[test]
    fn malformed_inputs_are_refused() {
        for input in [
            &b"not json"[..],
            br#"{"hook_event_name":"PostToolUse","tool_name":"Bash"}"#,
            br#"{"hook_event_name":"PreToolUse"}"#,
            br#"{"tool_name":"Bash","tool_input":"rm -rf /"}"#,
        ] {
            let e = event_of(input).unwrap_err();
            assert!(e.starts_with("[paddock] The tool call was blocked"), "{e}");
        }
    }
}
