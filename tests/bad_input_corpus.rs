//! Every file in `tests/corpus/bad/` must fail validation with the location, field path and message its
//! first line names; hostile inputs (alias bomb, deep nesting, non-UTF-8, a 50 MB file) fail fast.

use std::time::Instant;

use paddock_gitops::source::MAX_FILE_BYTES;
use paddock_gitops::{Severity, SourceFile, validate_files};
use paddock_tests::{parse_expectation, repo_root};

#[test]
fn every_corpus_file_fails_where_it_says() {
    let dir = repo_root().join("tests/corpus/bad");
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    assert!(entries.len() >= 25, "the corpus must hold at least 25 broken files, has {}", entries.len());
    let mut failures = Vec::new();
    for path in &entries {
        let bytes = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let first = String::from_utf8_lossy(bytes.split(|b| *b == b'\n').next().unwrap()).into_owned();
        let want = parse_expectation(&first)
            .unwrap_or_else(|| panic!("{name}: first line must be `# expect: L:C FIELD | MESSAGE`"));
        let report = validate_files(&[SourceFile::new(name.clone(), bytes)]);
        let hit = report.diagnostics.iter().any(|d| {
            d.severity == Severity::Error
                && d.file == name
                && (d.pos.line, d.pos.column) == (want.line, want.column)
                && d.field == want.field
                && d.message.contains(&want.message)
        });
        if !hit {
            failures.push(format!(
                "{name}: wanted {want:?}\n  got: {:#?}",
                report.diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "{} corpus files did not fail as expected:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_50_mb_file_is_refused_without_reading_it() {
    let dir = std::env::temp_dir().join(format!("paddock-big-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("agents")).unwrap();
    let file = std::fs::File::create(dir.join("agents/huge.yaml")).unwrap();
    file.set_len(50 * 1024 * 1024).unwrap();
    let start = Instant::now();
    let files = paddock_gitops::load_dir(&dir).unwrap();
    let report = validate_files(&files);
    let took = start.elapsed();
    std::fs::remove_dir_all(&dir).unwrap();
    let d = &report.diagnostics[0];
    assert_eq!(d.file, "agents/huge.yaml");
    assert_eq!(d.pos.line, 0, "whole-file error");
    assert!(d.message.contains("50.0 MiB") && d.message.contains("limited to 1 MiB"), "{}", d.message);
    // Not a timing assertion on speed, a check that nothing was read: a refused file has no source text.
    assert!(report.sources.is_empty(), "the file must not be read ({took:?})");
}

#[test]
fn a_file_just_over_the_limit_in_memory_is_refused_too() {
    let report = validate_files(&[SourceFile::new("agents/big.yaml", vec![b'#'; MAX_FILE_BYTES as usize + 1])]);
    assert!(report.diagnostics[0].message.contains("limited to 1 MiB"));
}

#[test]
fn a_large_valid_looking_file_within_limits_still_parses() {
    // 900 KiB of one long instructions string: under the cap, so it must validate.
    let body = format!(
        "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {{name: long}}\nspec:\n  harness: custom\n  model: gpt-5\n  instructions: \"{}\"\n",
        "x".repeat(900 * 1024)
    );
    let report = validate_files(&[SourceFile::new("agents/long.yaml", body)]);
    assert!(report.is_ok(), "{}", report.render());
    assert_eq!(report.objects.len(), 1);
}

#[test]
fn expectation_lines_parse() {
    let e = parse_expectation("# expect: 9:3 spec.modle | unknown field `modle`").unwrap();
    assert_eq!(
        (e.line, e.column, e.field.as_deref(), e.message.as_str()),
        (9, 3, Some("spec.modle"), "unknown field `modle`")
    );
    assert_eq!(parse_expectation("# expect: 0:0 - | too big").unwrap().field, None);
    assert!(parse_expectation("# nothing").is_none());
}

#[test]
fn thousands_of_wrong_values_are_listed_up_to_a_cap() {
    let labels: String = (0..5000).map(|i| format!("    k{i}: {i}\n")).collect();
    let text = format!(
        "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: a\n  labels:\n{labels}spec: {{harness: custom, model: gpt-5}}\n"
    );
    let report = validate_files(&[SourceFile::new("agents/a.yaml", text)]);
    assert_eq!(report.errors(), 51, "50 listed and one line counting the rest");
    let listed: Vec<u32> = report.diagnostics.iter().filter(|d| d.field.is_some()).map(|d| d.pos.line).collect();
    assert_eq!(listed.len(), 50);
    assert!(
        listed.windows(2).all(|w| w[0] < w[1]) && listed.iter().all(|l| (6..5006).contains(l)),
        "label lines, in file order: {listed:?}"
    );
    assert!(report.diagnostics.iter().any(|d| d.message == "4950 more schema errors in this document not shown"));
}

#[test]
fn duplicate_keys_are_found_in_a_mapping_with_many_keys() {
    let mut labels: String = (0..20000).map(|i| format!("    k{i}: v\n")).collect();
    labels.push_str("    k7: again\n");
    let text = format!(
        "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: a\n  labels:\n{labels}spec: {{harness: custom, model: gpt-5}}\n"
    );
    let report = validate_files(&[SourceFile::new("agents/a.yaml", text)]);
    let d = &report.diagnostics[0];
    assert_eq!((d.pos.line, d.pos.column), (20006, 5));
    assert_eq!(d.message, "duplicate key `k7` (first at line 13)");
}

#[test]
fn symlinks_are_not_followed_out_of_the_repository() {
    let dir = std::env::temp_dir().join(format!("paddock-link-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("agents")).unwrap();
    let secret = dir.join("outside-secret.txt");
    std::fs::write(&secret, "TOKEN=hunter2-do-not-print").unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("agents/x.yaml")).unwrap();
    let files = paddock_gitops::load_dir(&dir.join("agents")).unwrap();
    let report = validate_files(&files);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(report.errors(), 1);
    assert!(report.diagnostics[0].message.contains("symlink"), "{}", report.diagnostics[0]);
    assert!(!report.render().contains("hunter2"), "the target's content must never be read or shown");
}

#[test]
fn a_revision_larger_than_the_total_cap_is_refused_whole() {
    let chunk = vec![b'#'; 1024 * 1024 - 1];
    let files: Vec<SourceFile> = (0..65).map(|i| SourceFile::new(format!("agents/{i}.yaml"), chunk.clone())).collect();
    let report = validate_files(&files);
    assert_eq!(report.errors(), 1);
    assert!(report.diagnostics[0].message.contains("limited to 64 MiB"), "{}", report.diagnostics[0]);
}
