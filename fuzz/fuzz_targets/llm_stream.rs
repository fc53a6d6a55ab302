//! A streamed answer from a hostile or broken provider, in each wire format, cut into chunks where the
//! fuzzer says: framed by the SSE parser and filtered by the wire's gate as `proxy::drive_stream` does,
//! with some calls denied. Read again, what the client got holds no call the first pass did not allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_gateway::wire::{Gate, Sse, SseParser, Step, Wire};

const WIRES: [Wire; 4] = [Wire::Anthropic, Wire::Chat, Wire::Responses, Wire::Gemini];

/// The calls a gate asked about, allowed and denied (name and arguments), and the events it let out.
#[derive(Default)]
struct Pass {
    allowed: Vec<(String, String)>,
    denied: Vec<(String, String)>,
    emitted: Vec<Sse>,
    answers: std::collections::HashMap<(String, (String, String)), bool>,
}

fn run(gate: &mut dyn Gate, events: Vec<Sse>, deny_mask: u8, pass: &mut Pass) {
    let drive = |steps: Vec<Step>, pass: &mut Pass, gate: &mut dyn Gate| {
        let mut queue: std::collections::VecDeque<Step> = steps.into();
        while let Some(step) = queue.pop_front() {
            match step {
                Step::Emit(evs) => pass.emitted.extend(evs),
                Step::Decide(call) => {
                    let n = pass.allowed.len() + pass.denied.len();
                    let key = (call.name.clone(), call.args.to_string());
                    // The gateway answers a call it decided before (same id, tool and arguments) as it did.
                    let seen = (call.id.clone(), key.clone());
                    let deny = *pass.answers.entry(seen).or_insert(deny_mask & (1 << (n % 8)) != 0);
                    if deny {
                        pass.denied.push(key)
                    } else {
                        pass.allowed.push(key)
                    }
                    let note = deny.then(|| "denied by the fuzzer".to_owned());
                    for (i, st) in gate.resolve(&call.id, note).into_iter().enumerate() {
                        queue.insert(i, st);
                    }
                }
                Step::Usage(_) | Step::Model(_) => {}
            }
        }
    };
    for ev in events {
        let steps = gate.push(ev);
        drive(steps, pass, gate);
    }
    let steps = gate.finish();
    drive(steps, pass, gate);
}

fuzz_target!(|data: &[u8]| {
    let mut c = paddock_fuzz::Choices(data);
    let wire = WIRES[c.byte() as usize % WIRES.len()];
    let deny_mask = c.byte();
    let usage = c.byte() & 1 == 1;
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    for chunk in paddock_fuzz::pieces(c.rest(), 64) {
        match parser.push(chunk) {
            Ok(evs) => events.extend(evs),
            Err(_) => return,
        }
    }
    events.extend(parser.finish());
    let mut first = Pass::default();
    run(&mut *wire.gate(usage), events, deny_mask, &mut first);
    if wire == Wire::Responses {
        // A call of a tool the gateway never offers is removed, not decided: none reaches the client, in
        // whatever event carries it.
        for ev in &first.emitted {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&ev.data) else { continue };
            let output = v["response"]["output"].as_array().into_iter().flatten();
            for item in std::iter::once(&v["item"]).chain(output) {
                let kind = item["type"].as_str().unwrap_or_default();
                let decided = matches!(kind, "function_call" | "custom_tool_call" | "local_shell_call");
                assert!(!kind.ends_with("_call") || decided, "responses: the client got a `{kind}` item: {}", ev.data);
            }
        }
    }
    // What the client got, read by a fresh gate that allows everything: every call in it was allowed.
    let mut second = Pass::default();
    run(&mut *wire.gate(usage), std::mem::take(&mut first.emitted), 0, &mut second);
    let mut allowed = first.allowed.clone();
    for call in &second.allowed {
        match allowed.iter().position(|a| a == call) {
            Some(i) => {
                allowed.swap_remove(i);
            }
            None => panic!("{}: the client got a call that was not allowed: {call:?}", wire.as_str()),
        }
    }
});
