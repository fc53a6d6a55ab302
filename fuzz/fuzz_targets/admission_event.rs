//! The body of `POST /v1/sessions/{id}/decide`, read as the admission API reads it (JSON, then the
//! `Event` with its unknown-field check), and decided under the template's policies: a tool call, an
//! egress request to the GitHub API, a push, a tool result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_gateway::proxy::parse_json;
use paddock_policy::Event;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = parse_json(data) else { return };
    let Ok(event) = serde_json::from_value::<Event>(v) else { return };
    paddock_fuzz::decide(&event);
});
