//! Property tests: the loader and the validator never panic on arbitrary input, every position they
//! report lies inside the file, and plain mappings round-trip.

use paddock_gitops::yaml::{Limits, Pos, decode, parse};
use paddock_gitops::{SourceFile, validate_files};
use proptest::prelude::*;

fn inside(text: &str, pos: Pos) -> bool {
    if pos.line == 0 {
        return true;
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let Some(line) = lines.get(pos.line as usize - 1) else {
        return pos.line as usize == lines.len() + 1 && pos.column == 1;
    };
    pos.column >= 1 && pos.column as usize <= line.chars().count() + 1
}

/// YAML-ish fragments, so that random input reaches past the tokenizer into the structure.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("apiVersion: paddock.dev/v1alpha1\n".to_string()),
        Just("kind: Agent\n".to_string()),
        Just("metadata: {name: a}\n".to_string()),
        Just("spec:\n".to_string()),
        Just("  harness: custom\n".to_string()),
        Just("  model: gpt-5\n".to_string()),
        Just("  tools: [shell, ".to_string()),
        Just("]\n".to_string()),
        Just("- &a [x, *a]\n".to_string()),
        Just("<<: *b\n".to_string()),
        Just("---\n".to_string()),
        Just("  rules: [{name: r, use: cel, with: {expression: 'x'}}]\n".to_string()),
        "[ -~]{0,12}\n",
        "\\PC{0,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn loader_never_panics_and_positions_are_inside(text in "\\PC{0,200}") {
        match parse(&text, Limits::default()) {
            Ok(docs) => for d in docs { let _ = d.root.to_json(); },
            Err(e) => prop_assert!(inside(&text, e.pos), "{:?} outside {:?}", e.pos, text),
        }
    }

    #[test]
    fn validator_never_panics_on_structured_noise(parts in proptest::collection::vec(fragment(), 0..24)) {
        let text: String = parts.concat();
        let report = validate_files(&[SourceFile::new("agents/x.yaml", text.clone())]);
        for d in &report.diagnostics {
            prop_assert!(inside(&text, d.pos), "{d} outside {text:?}");
        }
    }

    #[test]
    fn arbitrary_bytes_decode_or_name_the_first_bad_byte(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        match decode(&bytes) {
            Ok(s) => prop_assert_eq!(s.as_bytes(), &bytes[..]),
            Err(e) => prop_assert!(e.pos.line >= 1 && e.pos.column >= 1),
        }
    }

    #[test]
    fn flat_mappings_round_trip(entries in proptest::collection::btree_map("[a-z][a-z0-9]{0,8}", "[a-z][a-z0-9 ]{0,12}[a-z0-9]", 1..8)) {
        let text: String = entries.iter().map(|(k, v)| format!("{k}: {v:?}\n")).collect();
        let docs = parse(&text, Limits::default()).unwrap();
        let json = docs[0].root.to_json();
        for (k, v) in &entries {
            prop_assert_eq!(json[k].as_str(), Some(v.as_str()));
        }
    }
}
