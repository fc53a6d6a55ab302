//! The agents repository as a Git source delivers it: up to four files of any bytes (cut at 0xff), loaded,
//! parsed and validated together, so cross-file checks (duplicates, references) run too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_gitops::yaml::{Limits, parse};
use paddock_gitops::{SourceFile, validate_files};

const NAMES: [&str; 4] = ["agents/a.yaml", "policies/p.yaml", "agents/b.yml", "policies/tests/t.test.yaml"];

fuzz_target!(|data: &[u8]| {
    let files: Vec<SourceFile> =
        paddock_fuzz::pieces(data, NAMES.len()).into_iter().zip(NAMES).map(|(b, n)| SourceFile::new(n, b)).collect();
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(docs) = parse(text, Limits::default())
    {
        for d in docs {
            let _ = d.root.to_json();
        }
    }
    let report = validate_files(&files);
    let _ = report.is_ok();
});
