//! The SSE framing of an upstream stream, cut into chunks wherever the fuzzer says (a `\r\n` split across
//! chunks among them). The events do not depend on where the chunks were cut, and written out again by the
//! gateway they read back as the same events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_gateway::wire::{Sse, SseParser};

fn parse(chunks: &[&[u8]]) -> Result<Vec<Sse>, String> {
    let mut p = SseParser::default();
    let mut out = Vec::new();
    for c in chunks {
        out.extend(p.push(c)?);
    }
    out.extend(p.finish());
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let chunks = paddock_fuzz::pieces(data, 64);
    let whole: Vec<u8> = chunks.concat();
    let Ok(events) = parse(&chunks) else { return };
    assert_eq!(parse(&[&whole]).as_ref(), Ok(&events), "the events depend on where the chunks were cut");
    let encoded: Vec<u8> = events.iter().flat_map(|e| e.encode().to_vec()).collect();
    assert_eq!(parse(&[&encoded]).as_ref(), Ok(&events), "re-encoded events read back differently");
});
