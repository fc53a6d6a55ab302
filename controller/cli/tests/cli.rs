//! The `paddock` binary as a user runs it: exit codes, compiler-style output, generated files in sync.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn paddock(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paddock")).args(args).current_dir(repo()).output().expect("paddock runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn temp_repo(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("paddock-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    dir
}

#[test]
fn validate_template_and_examples_exit_zero() {
    for dir in ["agents-repo-template", "examples"] {
        let o = paddock(&["validate", dir]);
        assert!(o.status.success(), "{dir}: {}", text(&o));
        assert!(text(&o).contains("0 errors"), "{}", text(&o));
    }
}

#[test]
fn validate_reports_file_line_column_field_and_fails() {
    let dir = temp_repo(
        "bad",
        &[
            (
                "agents/coder.yaml",
                "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: coder\nspec:\n  harness: custom\n  model: gpt-5\n  sandbox:\n    egress: [example.com]\n",
            ),
            (
                "policies/p.yaml",
                "apiVersion: paddock.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec:\n  rules: [{name: r, use: githb}]\n",
            ),
            (".github/workflows/ci.yaml", "not: [a manifest"),
            ("policies/tests/p.test.yaml", "cases: []"),
        ],
    );
    let o = paddock(&["validate", dir.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("agents/coder.yaml:9:14: error: spec.sandbox.egress[0]: `example.com` is not a valid egress entry (missing port)"), "{out}");
    assert!(
        out.contains(
            "policies/p.yaml:5:26: error: spec.rules[0].use: `githb` is not a builtin policy; did you mean `github`?"
        ),
        "{out}"
    );
    assert!(out.contains("9 |     egress: [example.com]"), "source line shown: {out}");
    assert!(
        out.trim_end().ends_with("checked 2 files, 2 objects: 2 errors, 0 warnings"),
        "summary last, hidden dirs and tests skipped: {out}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn validate_names_the_mcp_server_entry_that_is_wrong() {
    let agent = "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {name: mcp}\nspec:\n  harness: claude-code\n  model: claude-sonnet-4-5\n  mcpServers:\n    - {name: GitHub, url: \"https://api.githubcopilot.com/mcp/\"}\n    - {name: mail, url: \"ftp://mail.example\"}\n    - {name: both, url: \"https://x.example/mcp\", command: [srv]}\n    - {name: mail, command: [mcp-mail]}\n    - {name: secret, url: \"https://user:pw@x.example/mcp\"}\n    - {name: local, command: [srv], transport: sse}\n    - {name: keyed, url: \"https://k.example/mcp\", credential: {secretName: Bad_Name, key: token}}\n";
    let dir = temp_repo("mcp", &[("agents/mcp.yaml", agent)]);
    let o = paddock(&["validate", dir.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    for want in [
        "agents/mcp.yaml:8:14: error: spec.mcpServers[0].name: `GitHub` may hold only lowercase letters, digits and `-`",
        "agents/mcp.yaml:9:25: error: spec.mcpServers[1].url: `ftp://mail.example`: only https:// and http:// are MCP endpoints",
        "error: spec.mcpServers[2]: give `url` (a remote server) or `command` (a stdio server), not both",
        "error: spec.mcpServers[3].name: `mail` names two servers",
        "error: spec.mcpServers[4].url: `https://user:pw@x.example/mcp`: needs a host, and no user or password (give a credential as `credential`)",
        "error: spec.mcpServers[5].transport: only a remote server (`url`) has a transport; a stdio server speaks stdio",
        "error: spec.mcpServers[6].credential.secretName: `Bad_Name` is not a Secret name (lowercase DNS name)",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn validate_json_output_is_machine_readable() {
    let dir = temp_repo(
        "json",
        &[(
            "agents/a.yaml",
            "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec: {harness: codex, model: gpt-5-codx}\n",
        )],
    );
    let o = paddock(&["validate", "-o", "json", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let d = &v["diagnostics"][0];
    assert_eq!(
        (d["file"].as_str(), d["line"].as_u64(), d["column"].as_u64()),
        (Some("agents/a.yaml"), Some(4), Some(31))
    );
    assert_eq!(d["field"], "spec.model");
    assert!(d["message"].as_str().unwrap().contains("did you mean `gpt-5-codex`?"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn validate_refuses_a_path_with_no_manifests_or_missing() {
    let empty = temp_repo("empty", &[("README.md", "hi")]);
    let o = paddock(&["validate", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no manifests found"), "{}", text(&o));
    let o = paddock(&["validate", "/nonexistent/agents"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("cannot read /nonexistent/agents"), "{}", text(&o));
    std::fs::remove_dir_all(empty).unwrap();
}

#[test]
fn generated_files_are_in_sync() {
    let o = paddock(&["crdgen", "--out", "crds", "--check"]);
    assert!(o.status.success(), "crds/ drifted from the types: {}", text(&o));
    let o = paddock(&["schema", "--out", "agents-repo-template/schemas", "--check"]);
    assert!(o.status.success(), "template schemas drifted: {}", text(&o));
}

#[test]
fn check_mode_detects_drift_and_stray_files() {
    let dir = temp_repo("drift", &[("stray.yaml", "x: 1")]);
    let out = dir.to_str().unwrap();
    assert_eq!(paddock(&["crdgen", "--out", out, "--check"]).status.code(), Some(1));
    assert!(paddock(&["crdgen", "--out", out]).status.success());
    let o = paddock(&["crdgen", "--out", out, "--check"]);
    assert_eq!(o.status.code(), Some(1), "the stray file still differs");
    assert!(text(&o).contains("stray.yaml (not generated)"));
    std::fs::remove_file(Path::new(out).join("stray.yaml")).unwrap();
    assert!(paddock(&["crdgen", "--out", out, "--check"]).status.success());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn template_files_carry_the_schema_modeline() {
    for sub in ["agents", "policies"] {
        for entry in std::fs::read_dir(repo().join("agents-repo-template").join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                continue;
            }
            let first = std::fs::read_to_string(&path).unwrap().lines().next().unwrap_or_default().to_owned();
            assert!(first.starts_with("# yaml-language-server: $schema=../schemas/"), "{}: {first}", path.display());
            let target = first.split('=').nth(1).unwrap();
            assert!(path.parent().unwrap().join(target).exists(), "{} points at a missing schema", path.display());
        }
    }
}

#[test]
fn help_teaches_the_commands() {
    let o = paddock(&["--help"]);
    let out = text(&o);
    for word in ["validate", "crdgen", "schema", "paddock validate agents-repo-template"] {
        assert!(out.contains(word), "{out}");
    }
    assert!(text(&paddock(&["validate", "--help"])).contains("file:line:column"));
}

#[test]
fn policy_tests_of_the_template_pass() {
    let o = paddock(&["test", "agents-repo-template/policies/tests"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("policies: baseline, github-rules"), "{out}");
    assert!(out.trim_end().ends_with("16 passed, 0 failed"), "{out}");
}

#[test]
fn a_wrong_expectation_fails_with_a_diff() {
    let template = repo().join("agents-repo-template/policies");
    let suite = format!(
        "policies: [{p}/baseline.yaml, {p}/github.yaml]\nagent: {{name: coder, labels: {{team: platform}}}}\nstate: {{workspace_repo: your-org/your-repo}}\ncases:\n  - name: wrong on purpose\n    steps:\n      - event: {{phase: tool_call, tool: Bash, args: {{command: git push --force}}}}\n        expect: allow\n  - name: right\n    steps:\n      - event: {{phase: tool_call, tool: Bash, args: {{command: ls}}}}\n        expect: allow\n",
        p = template.display()
    );
    let dir = temp_repo("ptest", &[("wrong.test.yaml", &suite)]);
    let o = paddock(&["test", dir.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("✗ wrong on purpose") && out.contains("✓ right"), "{out}");
    assert!(out.contains("- expected verdict: allow") && out.contains("+ actual   verdict: deny"), "{out}");
    assert!(out.contains("force pushes are not allowed"), "the actual reason is shown: {out}");
    assert!(out.trim_end().ends_with("1 passed, 1 failed"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_broken_test_file_names_the_place() {
    let dir = temp_repo(
        "pbroken",
        &[(
            "t.test.yaml",
            "policies: [missing.yaml]\ncases:\n  - name: x\n    steps:\n      - event: {phase: tool_call, tool: Bash}\n        expct: deny\n",
        )],
    );
    let o = paddock(&["test", dir.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("t.test.yaml:6:9: error: cases[0].steps[0].expct: unknown field `expct`"), "{out}");
    assert!(out.contains("1 test file could not run") && out.trim_end().ends_with("0 passed, 0 failed"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_controller_refuses_a_gateway_ca_with_a_plain_http_gateway_url() {
    let o = paddock(&[
        "controller",
        "--listen=127.0.0.1:0",
        "--gateway-url=http://paddock-gateway.paddock-system.svc:6767",
        "--gateway-ca-file=/var/run/paddock/gateway-ca/ca.crt",
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("is not https:// but --gateway-ca-file"), "{t}");
}
