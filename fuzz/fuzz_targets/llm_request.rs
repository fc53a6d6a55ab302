//! A request body a harness sends the LLM proxy, in each of the four wire formats: read, checked, decided,
//! prepared and capped as `proxy::llm_session` does. The output cap the request leaves with is never above
//! the cap the hold reserved.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_api::Phase;
use paddock_gateway::proxy::parse_json;
use paddock_gateway::wire::{Wire, gemini, provider_side};
use paddock_policy::Event;

const WIRES: [Wire; 4] = [Wire::Anthropic, Wire::Chat, Wire::Responses, Wire::Gemini];

fuzz_target!(|data: &[u8]| {
    let mut c = paddock_fuzz::Choices(data);
    let wire = WIRES[c.byte() as usize % WIRES.len()];
    let cap = u64::from(c.byte()) * 97;
    let rest = c.rest();
    // Gemini's model and method come from the path: the first piece, when there is one.
    let (path, body) = match rest.iter().position(|b| *b == 0xff) {
        Some(i) if wire == Wire::Gemini => (std::str::from_utf8(&rest[..i]).unwrap_or(""), &rest[i + 1..]),
        _ => ("gemini-2.5-pro:streamGenerateContent", rest),
    };
    let target = gemini::Target::parse(path);
    let Ok(mut body) = parse_json(body) else { return };
    let info = match (wire, &target) {
        (Wire::Gemini, Ok(t)) => gemini::request_info(&body, t),
        (Wire::Gemini, Err(_)) => return,
        _ => wire.request_info(&body),
    };
    let Ok(info) = info else { return };
    let _ = provider_side::uses(wire, &body);
    paddock_fuzz::decide(&Event {
        phase: Phase::LlmRequest,
        model: Some(info.model.clone()),
        max_tokens: info.max_tokens,
        body: Some(body.clone()),
        ..Event::default()
    });
    if wire == Wire::Gemini && gemini::check_model(&info.model).is_err() {
        return;
    }
    let _ = wire.prepare(&mut body, &info.model, info.stream);
    wire.cap_output(&mut body, cap);
    let again = match (wire, &target) {
        (Wire::Gemini, Ok(t)) => gemini::request_info(&body, t),
        _ => wire.request_info(&body),
    };
    if let Ok(again) = again {
        let forwarded = again.max_tokens.unwrap_or(cap);
        assert!(
            forwarded <= cap.max(1),
            "{}: the request leaves with {forwarded} output tokens over the cap {cap}",
            wire.as_str()
        );
    }
    let _ = serde_json::to_vec(&body);
});
