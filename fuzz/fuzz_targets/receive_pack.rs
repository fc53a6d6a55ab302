//! What a sandbox sends git's smart HTTP on a push and the GitHub API on a GraphQL call: the pkt-lines and
//! command list at the head of a `git-receive-pack` request (read as `gitwire::commands` does, then decided
//! as a push), the repository in the request path, and a GraphQL body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_api::Phase;
use paddock_gateway::gitwire::{commands, graphql, pkt, receive_pack};
use paddock_policy::Event;

fuzz_target!(|data: &[u8]| {
    let mut c = paddock_fuzz::Choices(data);
    match c.byte() % 3 {
        0 => {
            let body = c.rest();
            // Every packet, as a reader that is handed the body in one piece would see them.
            let mut at = 0;
            while let Ok(Some((_, taken))) = pkt::read(&body[at..]) {
                at += taken;
            }
            let _ = commands::first_capabilities(body);
            let Ok(parsed) = commands::parse(body, body.len() as u64) else { return };
            assert!(parsed.pack_offset.is_none_or(|at| at <= body.len()), "the pack starts past the body");
            for u in &parsed.updates {
                assert!(commands::is_valid_ref(&u.git_ref), "an invalid ref was accepted: {:?}", u.git_ref);
            }
            paddock_fuzz::decide(&Event {
                phase: Phase::GitPush,
                host: Some("github.com".into()),
                port: Some(443),
                repo: Some("acme/app".into()),
                updates: parsed.updates,
                ..Event::default()
            });
        }
        1 => {
            let Ok(text) = std::str::from_utf8(c.rest()) else { return };
            let (path, query) = match text.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (text, None),
            };
            let _ = receive_pack::repository(path, query);
        }
        _ => {
            let Ok(body) = serde_json::from_slice(c.rest()) else { return };
            let Ok(Some(operation)) = graphql::operation(&body) else { return };
            paddock_fuzz::decide(&Event {
                phase: Phase::Egress,
                host: Some("api.github.com".into()),
                port: Some(443),
                scheme: Some("https".into()),
                method: Some("POST".into()),
                path: Some("/graphql".into()),
                body: Some(body),
                operation: Some(operation),
                ..Event::default()
            });
        }
    }
});
