//! The JSON a harness's pre-tool hook reads on stdin (Claude Code's PreToolUse, Gemini CLI's BeforeTool):
//! written by a program inside the sandbox, then classified and decided as `paddock hook` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_policy::ToolKind;
use paddock_runner::hook_input::event_of;

fuzz_target!(|data: &[u8]| {
    let mut c = paddock_fuzz::Choices(data);
    let expected = if c.byte() & 1 == 0 { "PreToolUse" } else { "BeforeTool" };
    let Ok(event) = event_of(c.rest(), expected) else { return };
    if let Some(tool) = &event.tool {
        let _ = ToolKind::of(tool);
    }
    paddock_fuzz::decide(&event);
});
