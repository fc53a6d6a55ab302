//! A whole (not streamed) answer from a hostile or broken provider, in each wire format: read as
//! `proxy::complete` does, its calls decided (a choice byte denies some), and rewritten. A denied call
//! never survives the rewrite.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_api::Phase;
use paddock_gateway::wire::{Wire, gemini};
use paddock_policy::Event;
use serde_json::Value;

const WIRES: [Wire; 4] = [Wire::Anthropic, Wire::Chat, Wire::Responses, Wire::Gemini];

fuzz_target!(|data: &[u8]| {
    let mut c = paddock_fuzz::Choices(data);
    let wire = WIRES[c.byte() as usize % WIRES.len()];
    let deny_mask = c.byte();
    let Ok(mut body) = serde_json::from_slice::<Value>(c.rest()) else { return };
    if !body.is_object() {
        return;
    }
    if wire == Wire::Gemini {
        gemini::name_calls(&mut body, "fuzz", 0);
    }
    let parsed = wire.parse_response(&body);
    let mut denied = Vec::new();
    for (i, call) in parsed.calls.iter().enumerate() {
        paddock_fuzz::decide(&Event {
            phase: Phase::ToolCall,
            tool: Some(call.name.clone()),
            args: call.args.clone(),
            tool_id: Some(call.id.clone()),
            ..Event::default()
        });
        if deny_mask & (1 << (i % 8)) != 0 && !call.id.is_empty() {
            denied.push(call.id.clone());
        }
    }
    // Calls of tools the gateway never offers are removed as the gateway does, without a decision.
    denied.extend(parsed.refused.iter().map(|(id, _)| id.clone()));
    wire.rewrite_response(&mut body, &denied, "denied by the fuzzer");
    let after = wire.parse_response(&body);
    for call in &after.calls {
        assert!(!denied.contains(&call.id), "{}: denied call {} is still in the answer", wire.as_str(), call.id);
    }
    assert!(
        after.refused.is_empty(),
        "{}: a call never offered is still in the answer: {:?}",
        wire.as_str(),
        after.refused
    );
});
