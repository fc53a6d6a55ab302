//! What a harness program prints (its JSON event lines, or a command's transcript lines), read by the
//! runner's parser for that harness into the normalised transcript. The program runs in the sandbox with
//! the agent's hands on it, so every line is hostile.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_runner::harness::{claude, codex, command, gemini, opencode, pi};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let mut c = paddock_fuzz::Choices(data);
    let harness = c.byte() % 6;
    let Ok(text) = std::str::from_utf8(c.rest()) else { return };
    let (mut claude, mut codex, mut gemini, mut pi, mut opencode, mut command) = (
        claude::StreamState::default(),
        codex::StreamState::default(),
        gemini::StreamState::default(),
        pi::StreamState::default(),
        opencode::StreamState::default(),
        command::StreamState::default(),
    );
    for line in text.lines() {
        if harness == 5 {
            let _ = command.line(line);
            continue;
        }
        let Ok(ev) = serde_json::from_str::<Value>(line) else { continue };
        let _ = match harness {
            0 => claude.events(&ev),
            1 => codex.events(&ev),
            2 => gemini.events(&ev),
            3 => pi.events(&ev),
            _ => opencode.events(&ev),
        };
    }
    let _ = gemini.flush();
});
