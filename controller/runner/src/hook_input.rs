//! The input a harness's pre-tool hook gets on stdin (Claude Code's PreToolUse, Gemini CLI's BeforeTool):
//! the program in the sandbox writes it, so it is read as hostile. `paddock hook` turns it into the
//! admission event it asks the gateway about.

use paddock_api::Phase;
use paddock_policy::Event;
use serde_json::{Value, json};

/// The admission event of a PreToolUse input.
pub fn event_of(input: &[u8], expected: &str) -> Result<Event, String> {
    let bad = |why: &str| format!("[paddock] The tool call was blocked: the hook input {why}.");
    let v: Value = serde_json::from_slice(input).map_err(|e| bad(&format!("is not JSON ({e})")))?;
    if let Some(name) = v["hook_event_name"].as_str()
        && name != expected
    {
        return Err(bad(&format!("is a `{name}` event, not {expected}")));
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
            "PreToolUse",
        )
        .unwrap();
        assert_eq!(e.phase, Phase::ToolCall);
        assert_eq!(e.tool.as_deref(), Some("Bash"));
        assert_eq!(e.args, json!({"command": "ls"}));
        assert_eq!(e.tool_id.as_deref(), Some("toolu_1"));
        // Gemini CLI's input is the same but for the event's name and the call's id, which it lacks.
        let e = event_of(
            br#"{"session_id":"x","hook_event_name":"BeforeTool","tool_name":"run_shell_command",
                 "tool_input":{"command":"ls"},"cwd":"/w"}"#,
            "BeforeTool",
        )
        .unwrap();
        assert_eq!((e.tool.as_deref(), e.tool_id), (Some("run_shell_command"), None));
        assert!(event_of(br#"{"hook_event_name":"PreToolUse","tool_name":"Bash"}"#, "BeforeTool").is_err());
    }

    #[test]
    fn malformed_inputs_are_refused() {
        for input in [
            &b"not json"[..],
            br#"{"hook_event_name":"PostToolUse","tool_name":"Bash"}"#,
            br#"{"hook_event_name":"PreToolUse"}"#,
            br#"{"tool_name":"Bash","tool_input":"rm -rf /"}"#,
        ] {
            let e = event_of(input, "PreToolUse").unwrap_err();
            assert!(e.starts_with("[paddock] The tool call was blocked"), "{e}");
        }
    }
}
