//! Decisions on what leaves the sandbox: the `paddock/egress` pre-check, and the `github` rule on `git_push`
//! events and on `egress` events to the GitHub API, in every spelling of a path.

mod support;

use paddock_api::{Phase, Verdict};
use paddock_policy::engine::evaluate;
use paddock_policy::{Event, GraphqlField, GraphqlOperation, RefUpdate, SessionState};
use serde_json::{Value, json};
use support::{check, policies};

const A: &str = "1111111111111111111111111111111111111111";
const B: &str = "2222222222222222222222222222222222222222";
const Z: &str = "0000000000000000000000000000000000000000";

fn state() -> SessionState {
    let mut s = SessionState::default();
    s.sandbox.egress = vec!["registry.npmjs.org:443".into(), "*.pythonhosted.org:443".into(), "10.0.0.0/8:5432".into()];
    s.sandbox.brokered = vec!["github.com:443".into(), "api.github.com:443".into()];
    s
}

fn egress(host: &str, port: u16) -> Event {
    Event {
        phase: Phase::Egress,
        host: Some(host.into()),
        port: Some(port),
        scheme: Some("https".into()),
        ..Default::default()
    }
}

fn request(method: &str, path: &str, body: Option<Value>) -> Event {
    Event { method: Some(method.into()), path: Some(path.into()), body, ..egress("api.github.com", 443) }
}

fn push(repo: &str, updates: &[(&str, &str, &str, bool)]) -> Event {
    Event {
        phase: Phase::GitPush,
        host: Some("github.com".into()),
        repo: Some(repo.into()),
        updates: updates
            .iter()
            .map(|(r, old, new, ff)| RefUpdate {
                git_ref: r.to_string(),
                old: old.to_string(),
                new: new.to_string(),
                fast_forward: *ff,
            })
            .collect(),
        ..Default::default()
    }
}

fn graphql(fields: &[(&str, Value)]) -> Event {
    let operation = GraphqlOperation {
        kind: "mutation".into(),
        name: None,
        fields: fields.iter().map(|(n, a)| GraphqlField { name: n.to_string(), args: a.clone() }).collect(),
    };
    Event { operation: Some(operation), ..request("POST", "/graphql", None) }
}

const GITHUB: &str = "rules: [{name: gh, use: github, with: {write_repos: [acme/app], write_branches: ['agent/*']}}]";

fn verdict(policy_yaml: &str, e: &Event) -> (Verdict, String) {
    let d = evaluate(e, &state(), &policies(&[("p", policy_yaml)]));
    (d.verdict, d.reason)
}

fn github(e: &Event) -> (Verdict, String) {
    verdict(GITHUB, e)
}

#[test]
fn egress_outside_the_allowlist_is_denied_whatever_the_policies() {
    for ps in [vec![], policies(&[("audit", "mode: Audit\nrules: [{name: c, use: cel, with: {expression: 'false'}}]")])]
    {
        let d = evaluate(&egress("evil.example", 443), &state(), &ps);
        assert_eq!((d.verdict, d.policy.as_deref(), d.rule.as_deref()), (Verdict::Deny, Some("paddock/egress"), None));
        assert!(d.reason.contains("`evil.example:443`") && d.reason.contains("spec.sandbox.egress"), "{}", d.reason);
    }
    let allowed = |host: &str, port: u16| evaluate(&egress(host, port), &state(), &[]).verdict == Verdict::Allow;
    assert!(allowed("registry.npmjs.org", 443));
    assert!(allowed("REGISTRY.npmjs.org.", 443));
    assert!(allowed("files.pythonhosted.org", 443));
    assert!(allowed("10.3.2.1", 5432));
    assert!(allowed("api.github.com", 443), "a brokered host is reachable");
    assert!(!allowed("pythonhosted.org", 443), "a wildcard is not its domain");
    assert!(!allowed("registry.npmjs.org", 80));
    assert!(!allowed("registry.npmjs.org.evil.io", 443));
    assert!(!allowed("167772161", 5432), "10.0.0.1 written as a number");
    assert!(!allowed("10.1", 5432));
    let d = evaluate(&egress("0x7f.1", 80), &state(), &[]);
    assert!(d.reason.contains("IP address written as a name"), "{}", d.reason);
    let d = evaluate(&egress("a\nb", 80), &state(), &[]);
    assert!(d.verdict == Verdict::Deny && d.reason.contains(r#""a\nb""#) && !d.reason.contains('\n'), "{}", d.reason);
}

#[test]
fn egress_without_a_destination_is_denied() {
    for e in [
        Event { phase: Phase::Egress, host: Some("registry.npmjs.org".into()), ..Default::default() },
        Event { phase: Phase::Egress, port: Some(443), ..Default::default() },
    ] {
        let d = evaluate(&e, &state(), &[]);
        assert_eq!((d.verdict, d.policy.as_deref()), (Verdict::Deny, Some("paddock/egress")), "{e:?}");
    }
}

#[test]
fn pushes_are_judged_by_each_update() {
    let allow = |e: &Event| github(e).0 == Verdict::Allow;
    assert!(allow(&push("acme/app", &[("refs/heads/agent/x", A, B, true)])), "a fast-forward of an allowed branch");
    assert!(allow(&push("acme/app", &[("refs/heads/agent/new", Z, B, false)])), "a creation is no force");
    assert!(
        allow(&push("ACME/App.git", &[("refs/heads/agent/x", A, B, true)])),
        "repository names ignore case and .git"
    );
    let (v, why) = github(&push("acme/app", &[("refs/heads/agent/x", A, B, false)]));
    assert_eq!(v, Verdict::Deny);
    assert!(why.contains("force update") && why.contains("refs/heads/agent/x"), "{why}");
    let (v, why) = github(&push("acme/app", &[("refs/heads/agent/x", A, Z, false)]));
    assert!(v == Verdict::Deny && why.contains("deleting a branch"), "{why}");
    let (v, why) = github(&push("acme/app", &[("refs/tags/v1", Z, B, true)]));
    assert!(v == Verdict::Deny && why.contains("pushing tags"), "{why}");
    let (v, why) = github(&push("acme/app", &[("refs/heads/main", A, B, true)]));
    assert!(v == Verdict::Deny && why.contains("branch `main`"), "{why}");
    let (v, why) = github(&push("acme/other", &[("refs/heads/agent/x", A, B, true)]));
    assert!(v == Verdict::Deny && why.contains("writing to `acme/other`"), "{why}");
    let (v, why) = github(&push("acme/app", &[("refs/notes/commits", A, B, true)]));
    assert!(v == Verdict::Deny && why.contains("neither a branch nor a tag"), "{why}");
    // One bad update among good ones refuses the push.
    let (v, _) = github(&push("acme/app", &[("refs/heads/agent/x", A, B, true), ("refs/heads/agent/y", A, B, false)]));
    assert_eq!(v, Verdict::Deny);
    let mut unknown = push("", &[("refs/heads/agent/x", A, B, true)]);
    unknown.repo = None;
    assert_eq!(github(&unknown).0, Verdict::Deny, "no repository, no write");
    let mut elsewhere = push("acme/app", &[("refs/heads/agent/x", A, B, true)]);
    elsewhere.host = Some("gitlab.com".into());
    assert_eq!(github(&elsewhere).0, Verdict::Ask, "a host the rule does not know is asked about");
    // The parameters keep their meaning: allowed when switched off.
    let lenient = "rules: [{name: gh, use: github, with: {write_repos: [acme/app], allow_destructive: true, deny_tag_push: false, deny_force_push: false}}]";
    for e in [
        push("acme/app", &[("refs/heads/main", A, B, false)]),
        push("acme/app", &[("refs/heads/main", A, Z, false)]),
        push("acme/app", &[("refs/tags/v1", Z, B, true)]),
    ] {
        assert_eq!(verdict(lenient, &e).0, Verdict::Allow, "{e:?}");
    }
}

#[test]
fn refs_and_paths_in_any_characters_never_break_the_rule() {
    // Multi-byte characters where the rule looks for `refs/tags/`, `refs/heads/` or `refs/`.
    for r in [
        "refs/tagsé/x",
        "refs/headsé/x",
        "refsé/heads/x",
        "refs/tagé/x",
        "réfs/heads/x",
        "é",
        "refs/heads/é",
        "",
        "refs/heads/",
    ] {
        let (v, _) = github(&push("acme/app", &[(r, A, B, true)]));
        assert_ne!(v, Verdict::Allow, "{r:?} is no agent/* branch");
        let (v, _) = github(&request("DELETE", &format!("/repos/acme/app/git/refs/{r}"), None));
        assert_eq!(v, Verdict::Deny, "{r:?}");
        let (v, _) = github(&request("POST", "/repos/acme/app/git/refs", Some(json!({"ref": r, "sha": B}))));
        assert_ne!(v, Verdict::Allow, "{r:?}");
    }
    for path in ["/é", "/repos/é/é/é", "https://é/x", "http://é", "%", "%e9%", "/repos/a/b/git/refs/%ff%fe"] {
        let _ = github(&request("DELETE", path, None));
        let _ = github(&request("GET", path, None));
    }
}

#[test]
fn sha256_zero_ids_are_creations_and_deletions() {
    let z64 = "0".repeat(64);
    let b64 = "b".repeat(64);
    assert_eq!(github(&push("acme/app", &[("refs/heads/agent/x", &z64, &b64, false)])).0, Verdict::Allow);
    let (v, why) = github(&push("acme/app", &[("refs/heads/agent/x", &b64, &z64, false)]));
    assert!(v == Verdict::Deny && why.contains("deleting"), "{why}");
}

#[test]
fn ref_api_calls_are_judged_in_every_spelling() {
    let deletes = [
        "/repos/acme/app/git/refs/heads/agent/x",
        "/repos/acme/app/git/refs/heads%2Fagent%2Fx",
        "/Repos/ACME/app/Git/Refs/heads/agent/x",
        "//repos/acme//app/git/refs/heads/agent/x/",
        "/repos/acme/app/git/refs/heads/agent/x?ref=1",
        "/repos/acme/app/pulls/../git/refs/heads/agent/x",
        "/repos/acme/app/git/refs/heads%252Fagent%252Fx",
        "https://api.github.com/repos/acme/app/git/refs/heads/agent/x",
    ];
    for path in deletes {
        for method in ["DELETE", "delete"] {
            let (v, why) = github(&request(method, path, None));
            assert!(v == Verdict::Deny && why.contains("deleting a branch"), "{method} {path}: {v:?} {why}");
        }
        let (v, why) = github(&request("PATCH", path, Some(json!({"sha": B, "force": true}))));
        assert!(v == Verdict::Deny && why.contains("force"), "{path}: {why}");
        let (v, _) = github(&request("PATCH", path, Some(json!({"sha": B, "force": "true"}))));
        assert_eq!(v, Verdict::Deny, "{path}");
        assert_eq!(github(&request("PATCH", path, Some(json!({"sha": B})))).0, Verdict::Allow, "{path}");
        assert_eq!(github(&request("PATCH", path, Some(json!({"sha": B, "force": false})))).0, Verdict::Allow);
        assert_eq!(github(&request("PATCH", path, None)).0, Verdict::Ask, "force cannot be seen: {path}");
    }
    let (v, why) = github(&request("PATCH", "/repos/acme/app/git/refs/heads/main", Some(json!({"sha": B}))));
    assert!(v == Verdict::Deny && why.contains("branch `main`"), "{why}");
    let (v, why) = github(&request("POST", "/repos/acme/app/git/refs", Some(json!({"ref": "refs/tags/v1", "sha": B}))));
    assert!(v == Verdict::Deny && why.contains("pushing tags"), "{why}");
    let (v, _) =
        github(&request("POST", "/repos/acme/app/git/refs/", Some(json!({"ref": "refs/heads/agent/y", "sha": B}))));
    assert_eq!(v, Verdict::Allow);
    let (v, _) = github(&request("DELETE", "/repos/acme/app/git/refs/tags/v1", None));
    assert_eq!(v, Verdict::Deny);
    assert_eq!(github(&request("GET", "/repos/acme/app/git/refs/heads/main", None)).0, Verdict::Allow);
}

#[test]
fn repository_calls() {
    let (v, why) = github(&request("DELETE", "/repos/acme/app", None));
    assert!(v == Verdict::Deny && why.contains("deletes the repository"), "{why}");
    let (v, _) = github(&request("DELETE", "/repos/acme/app/", None));
    assert_eq!(v, Verdict::Deny);
    for body in [json!({"private": false}), json!({"visibility": "public"})] {
        let (v, why) = github(&request("PATCH", "/repos/acme/app", Some(body)));
        assert!(v == Verdict::Deny && why.contains("destructive"), "{why}");
    }
    assert_eq!(github(&request("PATCH", "/repos/acme/app", Some(json!({"description": "x"})))).0, Verdict::Allow);
    assert_eq!(github(&request("PATCH", "/repos/acme/app", None)).0, Verdict::Ask, "the body is not seen");
    let (v, why) = github(&request("POST", "/repos/acme/other/issues", Some(json!({"title": "x"}))));
    assert!(v == Verdict::Deny && why.contains("writing to `acme/other`"), "{why}");
    assert_eq!(github(&request("POST", "/repos/acme/app/issues", Some(json!({"title": "x"})))).0, Verdict::Allow);
    assert_eq!(github(&request("GET", "/repos/anyone/anything/contents/README.md", None)).0, Verdict::Allow);
    let only = "rules: [{name: gh, use: github, with: {read_all: false, read_repos: [acme/*]}}]";
    assert_eq!(verdict(only, &request("GET", "/repos/other/x/contents/a", None)).0, Verdict::Deny);
    assert_eq!(verdict(only, &request("GET", "/repos/acme/x/contents/a", None)).0, Verdict::Allow);
    let (v, why) = github(&request("POST", "/gists", Some(json!({"files": {}}))));
    assert!(v == Verdict::Deny && why.contains("repository is unknown"), "{why}");
}

#[test]
fn merges_into_protected_branches_are_asked_or_judged() {
    let (v, why) = github(&request("PUT", "/repos/acme/app/pulls/7/merge", Some(json!({"merge_method": "squash"}))));
    assert!(v == Verdict::Ask && why.contains("base branch"), "{why}");
    let (v, why) = github(&request("POST", "/repos/acme/app/merges", Some(json!({"base": "main", "head": "agent/x"}))));
    assert!(v == Verdict::Deny && why.contains("branch `main`"), "{why}");
    assert_eq!(
        github(&request("POST", "/repos/acme/app/merges", Some(json!({"base": "agent/x", "head": "dev"})))).0,
        Verdict::Allow
    );
    let any_branch = "rules: [{name: gh, use: github, with: {write_repos: [acme/app]}}]";
    assert_eq!(verdict(any_branch, &request("PUT", "/repos/acme/app/pulls/7/merge", None)).0, Verdict::Allow);
    let (v, why) =
        github(&request("PUT", "/repos/acme/app/contents/src/a.rs", Some(json!({"content": "", "message": "m"}))));
    assert!(v == Verdict::Ask && why.contains("default branch"), "{why}");
    let (v, _) = github(&request("PUT", "/repos/acme/app/contents/src/a.rs", Some(json!({"branch": "main"}))));
    assert_eq!(v, Verdict::Deny);
}

#[test]
fn graphql_mutations_are_judged_by_their_fields() {
    let (v, why) = github(&graphql(&[("deleteRef", json!({"input": {"refId": "R"}}))]));
    assert!(v == Verdict::Deny && why.contains("deleteRef"), "{why}");
    let (v, why) = github(&graphql(&[("updateRef", json!({"input": {"refId": "R", "oid": B, "force": true}}))]));
    assert!(v == Verdict::Deny && why.contains("force"), "{why}");
    let (v, _) = github(&graphql(&[(
        "updateRefs",
        json!({"input": {"repositoryId": "X", "refUpdates": [{"name": "refs/heads/agent/x", "afterOid": B, "force": true}]}}),
    )]));
    assert_eq!(v, Verdict::Deny);
    let (v, _) = github(&graphql(&[(
        "updateRefs",
        json!({"input": {"refUpdates": [{"name": "refs/heads/agent/x", "afterOid": Z}]}}),
    )]));
    assert_eq!(v, Verdict::Deny, "an update to zeros deletes");
    let (v, _) = github(&graphql(&[("deleteRepository", json!({"input": {"repositoryId": "X"}}))]));
    assert_eq!(v, Verdict::Deny);
    let (v, _) =
        github(&graphql(&[("updateRepository", json!({"input": {"repositoryId": "X", "visibility": "PUBLIC"}}))]));
    assert_eq!(v, Verdict::Deny);
    let (v, why) =
        github(&graphql(&[("createRef", json!({"input": {"repositoryId": "X", "name": "refs/tags/v1", "oid": B}}))]));
    assert!(v == Verdict::Deny && why.contains("tags"), "{why}");
    let (v, _) = github(&graphql(&[(
        "mergeBranch",
        json!({"input": {"repositoryId": "X", "base": "main", "head": "agent/x"}}),
    )]));
    assert_eq!(v, Verdict::Deny);
    let (v, why) = github(&graphql(&[("mergePullRequest", json!({"input": {"pullRequestId": "P"}}))]));
    assert!(v == Verdict::Ask && why.contains("base branch"), "{why}");
    let (v, why) = github(&graphql(&[("addComment", json!({"input": {"subjectId": "I", "body": "hi"}}))]));
    assert!(v == Verdict::Ask && why.contains("node ID"), "{why}");
    let (v, why) = github(&graphql(&[("frobnicate", json!({}))]));
    assert!(v == Verdict::Ask && why.contains("frobnicate"), "an unknown mutation is opaque: {why}");
    // A deny anywhere in the operation refuses it.
    let (v, _) = github(&graphql(&[("addComment", json!({})), ("deleteRef", json!({"input": {"refId": "R"}}))]));
    assert_eq!(v, Verdict::Deny);
    let mut query = graphql(&[("repository", json!({"owner": "a", "name": "b"}))]);
    query.operation.as_mut().unwrap().kind = "query".into();
    assert_eq!(github(&query).0, Verdict::Allow);
    let mut unseen = graphql(&[]);
    unseen.operation = None;
    assert_eq!(github(&unseen).0, Verdict::Ask, "an operation the gateway could not read");
    let mut in_url = request("GET", "/graphql?query=mutation%7BdeleteRef(input:%7BrefId:%22R%22%7D)%7D", None);
    in_url.operation = None;
    assert_eq!(github(&in_url).0, Verdict::Ask, "a document in the URL is not read");
    let none_writable = "rules: [{name: gh, use: github, with: {}}]";
    assert_eq!(verdict(none_writable, &graphql(&[("addComment", json!({}))])).0, Verdict::Deny);
}

#[test]
fn github_enterprise_hosts() {
    let ghe = "rules: [{name: gh, use: github, with: {write_repos: [acme/app], github_hosts: [github.acme.corp, acme.ghe.com]}}]";
    let on = |host: &str, method: &str, path: &str| {
        let e = Event { host: Some(host.into()), ..request(method, path, None) };
        let mut s = state();
        s.sandbox.egress.push(format!("{host}:443"));
        evaluate(&e, &s, &policies(&[("p", ghe)])).verdict
    };
    assert_eq!(on("github.acme.corp", "DELETE", "/api/v3/repos/acme/app/git/refs/heads/x"), Verdict::Deny);
    assert_eq!(on("github.acme.corp", "DELETE", "/API/v3//repos/acme/app/git/refs/heads/x"), Verdict::Deny);
    assert_eq!(on("api.acme.ghe.com", "DELETE", "/repos/acme/app/git/refs/heads/x"), Verdict::Deny);
    assert_eq!(
        on("api.github.com", "DELETE", "/repos/acme/app/git/refs/heads/x"),
        Verdict::Allow,
        "not a host this rule knows"
    );
    let mut e = graphql(&[("deleteRef", json!({"input": {"refId": "R"}}))]);
    e.host = Some("github.acme.corp".into());
    e.path = Some("/api/graphql".into());
    let mut s = state();
    s.sandbox.egress.push("github.acme.corp:443".into());
    assert_eq!(evaluate(&e, &s, &policies(&[("p", ghe)])).verdict, Verdict::Deny);
}

#[test]
fn git_smart_http_checks_the_repository() {
    let git = |method: &str, path: &str| Event { host: Some("github.com".into()), ..request(method, path, None) };
    assert_eq!(github(&git("GET", "/acme/app.git/info/refs?service=git-receive-pack")).0, Verdict::Allow);
    let (v, why) = github(&git("GET", "/acme/other.git/info/refs?service=git-receive-pack"));
    assert!(v == Verdict::Deny && why.contains("acme/other"), "{why}");
    assert_eq!(github(&git("POST", "/acme/other/git-receive-pack")).0, Verdict::Deny);
    assert_eq!(github(&git("POST", "/acme/other.git/git-upload-pack")).0, Verdict::Allow, "reads are open");
}

#[test]
fn a_tunnel_to_an_unbrokered_github_host_is_opaque() {
    let mut s = state();
    s.sandbox.egress.push("github.com:443".into());
    s.sandbox.brokered.clear();
    s.sandbox.egress.push("api.github.com:443".into());
    let ps = policies(&[("p", GITHUB)]);
    let d = evaluate(&egress("github.com", 443), &s, &ps);
    assert!(d.verdict == Verdict::Ask && d.reason.contains("broker"), "{}", d.reason);
    assert_eq!(evaluate(&egress("github.com", 443), &state(), &ps).verdict, Verdict::Allow, "brokered");
    assert_eq!(evaluate(&egress("registry.npmjs.org", 443), &s, &ps).verdict, Verdict::Allow, "not GitHub");
}

#[test]
fn test_files_express_wire_events() {
    let suite = r#"
state: {sandbox: {egress: ["registry.npmjs.org:443"], brokered: ["github.com:443"]}}
cases:
  - name: wire
    steps:
      - event: {phase: egress, host: registry.npmjs.org, port: 443, scheme: https}
        expect: allow
      - event: {phase: egress, host: evil.example, port: 443}
        expect: deny
        policy: paddock/egress
      - event: {phase: git_push, repo: acme/app, updates: [{ref: refs/heads/agent/x, old: 1111111111111111111111111111111111111111, new: 2222222222222222222222222222222222222222, fast_forward: false}]}
        expect: deny
        rule: gh
"#;
    check(suite, &policies(&[("p", GITHUB)]));
}

fn one(rule: &str) -> Vec<paddock_policy::CompiledPolicy> {
    policies(&[("p", &format!("rules: [{rule}]"))])
}

#[test]
fn blast_radius_counts_wire_effects_like_their_shell_spellings() {
    let ps = one("{name: b, use: blast_radius}");
    let d = |e: &Event| evaluate(e, &state(), &ps);
    let forced = d(&push("acme/app", &[("refs/heads/agent/x", A, B, false)]));
    assert!(forced.verdict == Verdict::Deny && forced.reason.contains("force push"), "{}", forced.reason);
    assert_eq!(d(&push("acme/app", &[("refs/heads/agent/x", A, Z, false)])).verdict, Verdict::Deny);
    assert_eq!(
        d(&push("acme/app", &[("refs/heads/agent/x", A, B, true)])).verdict,
        Verdict::Allow,
        "asked at the tool call"
    );
    assert_eq!(d(&push("acme/app", &[("refs/heads/agent/x", Z, B, false)])).verdict, Verdict::Allow, "a creation");
    assert_eq!(d(&request("DELETE", "/repos/acme/app/git/refs/heads%2Fmain", None)).verdict, Verdict::Deny);
    assert_eq!(d(&request("DELETE", "/Repos/acme/app/", None)).verdict, Verdict::Deny);
    assert_eq!(
        d(&request("PATCH", "/repos/acme/app/git/refs/heads/main", Some(json!({"force": true})))).verdict,
        Verdict::Deny
    );
    assert_eq!(
        d(&request("PATCH", "/repos/acme/app/git/refs/heads/main", Some(json!({"force": false})))).verdict,
        Verdict::Allow
    );
    // Every spelling the github rule counts as a force update counts here too: any write method, the flag in
    // the query string, any value a lenient server takes for true.
    for (method, path, body) in [
        ("POST", "/repos/acme/app/git/refs/heads/main", Some(json!({"force": true}))),
        ("PATCH", "/repos/acme/app/git/refs/heads/main?force=true", Some(json!({"sha": A}))),
        ("POST", "/repos/acme/app/git/refs/heads/main?force=1", None),
        ("PATCH", "/repos/acme/app/git/refs/heads/main", Some(json!({"force": "yes"}))),
    ] {
        let v = d(&request(method, path, body.clone())).verdict;
        assert_eq!(v, Verdict::Deny, "{method} {path} {body:?}");
    }
    assert_eq!(d(&request("PUT", "/repos/acme/app/pulls/3/merge", None)).verdict, Verdict::Ask);
    assert_eq!(
        d(&graphql(&[("updateRef", json!({"input": {"refId": "R", "oid": A, "force": "1"}}))])).verdict,
        Verdict::Deny
    );
    assert_eq!(d(&graphql(&[("deleteRef", json!({"input": {"refId": "R"}}))])).verdict, Verdict::Deny);
    assert_eq!(d(&request("DELETE", "/repos/acme/app/issues/comments/1", None)).verdict, Verdict::Allow);
    let mut npm = egress("registry.npmjs.org", 443);
    npm.method = Some("DELETE".into());
    npm.path = Some("/repos/a/b".into());
    assert_eq!(d(&npm).verdict, Verdict::Allow, "not a GitHub API");
}

#[test]
fn enforce_sandbox_judges_the_real_connection() {
    let ps = one(
        "{name: s, use: enforce_sandbox, with: {allowed_egress: ['*.npmjs.org:443', 'api.github.com:443', '*.pythonhosted.org:443', '10.*:5432', 'github.com:443']}}",
    );
    let d = |e: &Event, s: &SessionState| evaluate(e, s, &ps);
    assert_eq!(d(&egress("registry.npmjs.org", 443), &state()).verdict, Verdict::Allow);
    let mut s = state();
    s.sandbox.egress.push("git.example.com:443".into());
    s.sandbox.egress.clear();
    s.sandbox.brokered.push("git.example.com:443".into());
    let out = d(&egress("git.example.com", 443), &s);
    assert!(
        out.verdict == Verdict::Deny && out.reason.contains("egress to `git.example.com:443` is not allowed"),
        "{}",
        out.reason
    );
    let none = one("{name: s, use: enforce_sandbox, with: {allow_egress: false}}");
    let out = evaluate(
        &egress("api.github.com", 443),
        &SessionState { sandbox: s.sandbox.clone(), ..Default::default() },
        &none,
    );
    assert!(out.verdict == Verdict::Deny && out.reason.contains("no egress besides the gateway"), "{}", out.reason);
}

#[test]
fn risk_score_guards_egress_once_the_threshold_is_reached() {
    let ps = one("{name: r, use: risk_score, with: {threshold: 10, guarded_egress: ['*:443']}}");
    let mut s = state();
    assert_eq!(evaluate(&egress("registry.npmjs.org", 443), &s, &ps).verdict, Verdict::Allow);
    s.risk_score = 10;
    let d = evaluate(&egress("registry.npmjs.org", 443), &s, &ps);
    assert!(d.verdict == Verdict::Ask && d.reason.contains("registry.npmjs.org:443"), "{}", d.reason);
    assert_eq!(evaluate(&egress("10.0.0.1", 5432), &s, &ps).verdict, Verdict::Allow, "not guarded");
}

#[test]
fn sequence_steps_on_egress_and_pushes() {
    let ps = one(
        r#"{name: seq, use: sequence, with: {after: {egress_matches: '^CONNECT registry\.npmjs\.org:443'}, before: {push_matches: ' refs/heads/'}}}"#,
    );
    let suite = r#"
state: {sandbox: {egress: ["registry.npmjs.org:443"], brokered: ["github.com:443"]}}
cases:
  - name: a push after a new package is asked about
    steps:
      - event: {phase: git_push, repo: acme/app, updates: [{ref: refs/heads/x, old: 1111111111111111111111111111111111111111, new: 2222222222222222222222222222222222222222, fast_forward: true}]}
        expect: allow
      - event: {phase: egress, host: registry.npmjs.org, port: 443}
        expect: allow
      - event: {phase: git_push, repo: acme/app, updates: [{ref: refs/tags/v1, old: 0000000000000000000000000000000000000000, new: 2222222222222222222222222222222222222222, fast_forward: true}]}
        expect: allow
      - event: {phase: git_push, repo: acme/app, updates: [{ref: refs/heads/x, old: 1111111111111111111111111111111111111111, new: 2222222222222222222222222222222222222222, fast_forward: true}]}
        expect: ask
        reason_contains: "`acme/app refs/heads/x` follows `CONNECT registry.npmjs.org:443`"
"#;
    check(suite, &ps);
    let mixed = support::compile_errors(
        "rules: [{name: s, use: sequence, with: {after: {tool: Bash, egress_matches: x}, before: {tool: Bash}}}]",
    );
    assert!(mixed.contains("matches one kind of event"), "{mixed}");
}

#[test]
fn cel_sees_wire_fields() {
    let ps = one(
        r#"{name: c, use: cel, with: {expression: 'event.phase == "egress" && event.method == "POST" && event.body.size() > 0 && session.sandbox.brokered.exists(b, b == "api.github.com:443")'}}"#,
    );
    assert_eq!(evaluate(&request("POST", "/x", Some(json!({"a": 1}))), &state(), &ps).verdict, Verdict::Deny);
    assert_eq!(evaluate(&request("GET", "/x", None), &state(), &ps).verdict, Verdict::Allow);
    let ps = one(r#"{name: c, use: cel, with: {expression: 'event.updates.exists(u, !u.fast_forward)'}}"#);
    assert_eq!(evaluate(&push("acme/app", &[("refs/heads/x", A, B, false)]), &state(), &ps).verdict, Verdict::Deny);
    assert_eq!(evaluate(&push("acme/app", &[("refs/heads/x", A, B, true)]), &state(), &ps).verdict, Verdict::Allow);
    // The example of docs/policies.md.
    let ps = one(
        r#"{name: c, use: cel, on: [git_push], with: {expression: 'event.updates.exists(u, u.ref.startsWith("refs/heads/release/"))'}}"#,
    );
    assert_eq!(
        evaluate(&push("acme/app", &[("refs/heads/release/1", A, B, true)]), &state(), &ps).verdict,
        Verdict::Deny
    );
    assert_eq!(evaluate(&push("acme/app", &[("refs/heads/x", A, B, true)]), &state(), &ps).verdict, Verdict::Allow);
    // A rule that cannot be evaluated fails closed where the effect happens.
    let broken = one(r#"{name: c, use: cel, with: {expression: '"not a bool"'}}"#);
    assert_eq!(evaluate(&push("acme/app", &[("refs/heads/x", A, B, true)]), &state(), &broken).verdict, Verdict::Deny);
    assert_eq!(evaluate(&egress("registry.npmjs.org", 443), &state(), &broken).verdict, Verdict::Deny);
}

#[test]
fn lenient_spellings_of_true_and_other_branch_writers() {
    for force in [json!(1), json!("1"), json!("TRUE"), json!(" true ")] {
        let e = request("PATCH", "/repos/acme/app/git/refs/heads/agent/x", Some(json!({"sha": B, "force": force})));
        assert_eq!(github(&e).0, Verdict::Deny, "{e:?}");
    }
    let (v, why) = github(&request("POST", "/repos/acme/app/merge-upstream", Some(json!({"branch": "main"}))));
    assert!(v == Verdict::Deny && why.contains("branch `main`"), "{why}");
    assert_eq!(github(&request("POST", "/repos/acme/app/merge-upstream", None)).0, Verdict::Ask);
    let commit = |repo: &str, branch: &str| {
        graphql(&[(
            "createCommitOnBranch",
            json!({"input": {"branch": {"repositoryNameWithOwner": repo, "branchName": branch}, "message": {"headline": "m"}}}),
        )])
    };
    assert_eq!(github(&commit("acme/app", "agent/x")).0, Verdict::Allow, "the repository is named: judged in full");
    assert_eq!(github(&commit("acme/app", "main")).0, Verdict::Deny);
    assert_eq!(github(&commit("acme/other", "agent/x")).0, Verdict::Deny);
    let by_id = graphql(&[("createCommitOnBranch", json!({"input": {"branch": {"id": "B"}}}))]);
    assert_eq!(github(&by_id).0, Verdict::Ask);
    let mut upload = request("DELETE", "/repos/acme/app/releases/assets/1", None);
    upload.host = Some("uploads.github.com".into());
    let mut s = state();
    s.sandbox.egress.push("uploads.github.com:443".into());
    assert_eq!(evaluate(&upload, &s, &policies(&[("p", GITHUB)])).verdict, Verdict::Deny);
}

/// A `github` rule that allows every write to `acme/app` but destructive ones.
const ANY_BRANCH: &str = "rules: [{name: gh, use: github, with: {write_repos: [acme/app]}}]";

fn any_branch(e: &Event) -> (Verdict, String) {
    verdict(ANY_BRANCH, e)
}

/// Spellings of one path below `/repos/acme/app` (`tail` without its leading `/`, or empty for the
/// repository itself).
fn spellings(tail: &str) -> Vec<String> {
    let sep = if tail.is_empty() { "" } else { "/" };
    let encoded = tail.replace('/', "%2F");
    vec![
        format!("/repos/acme/app{sep}{tail}"),
        format!("/Repos/acme/app{sep}{tail}/"),
        format!("//repos/acme//app{sep}{tail}/."),
        format!("/repos/acme/app/pulls/..{sep}{tail}"),
        format!("/repos/acme/app{sep}{encoded}"),
        format!("/repos%2Facme%252Fapp{sep}{tail}"),
        format!("https://api.github.com/repos/acme/app{sep}{tail}"),
    ]
}

#[test]
fn repository_edits_by_any_method_that_change_visibility_or_archive_it_are_destructive() {
    let bodies = [
        json!({"private": false}),
        json!({"visibility": "public"}),
        json!({"archived": true}),
        json!({"archived": false}),
        json!({"Private": false}),
        json!({"description": "x", "visibility": "internal"}),
        json!({"security_and_analysis": {"secret_scanning": {"status": "disabled"}}}),
    ];
    for method in ["PATCH", "POST", "post", "Post", "PUT", "patch"] {
        for path in spellings("") {
            for body in &bodies {
                let (v, why) = any_branch(&request(method, &path, Some(body.clone())));
                assert!(v == Verdict::Deny && why.contains("destructive"), "{method} {path} {body}: {v:?} {why}");
            }
            let (v, why) = any_branch(&request(method, &path, Some(json!({"description": "x"}))));
            assert_eq!(v, Verdict::Allow, "{method} {path}: an ordinary edit is a write: {why}");
            let (v, why) = any_branch(&request(method, &path, None));
            assert!(v == Verdict::Ask && why.contains("visibility"), "{method} {path}: the body is not seen: {why}");
            assert_eq!(any_branch(&request(method, &path, Some(json!(["private"])))).0, Verdict::Ask, "{path}");
        }
        // Fields in the query string count like the body's.
        for query in ["?private=false", "?visibility=public", "?archived=true", "?ARCHIVED=1", "?x=1;%70rivate=0"] {
            let e = request(method, &format!("/repos/acme/app{query}"), Some(json!({"description": "x"})));
            let (v, why) = any_branch(&e);
            assert!(v == Verdict::Deny && why.contains("destructive"), "{method} {query}: {why}");
            let e = request(method, &format!("/repos/acme/app{query}"), None);
            assert_eq!(any_branch(&e).0, Verdict::Deny, "{method} {query} without a body");
        }
    }
    // The same on GitHub Enterprise Server's `/api/v3`.
    let ghe = "rules: [{name: gh, use: github, with: {write_repos: [acme/app], github_hosts: [git.acme.corp]}}]";
    let mut e = request("POST", "/api/v3/repos/acme/app", Some(json!({"private": false})));
    e.host = Some("git.acme.corp".into());
    let mut s = state();
    s.sandbox.egress.push("git.acme.corp:443".into());
    assert_eq!(evaluate(&e, &s, &policies(&[("p", ghe)])).verdict, Verdict::Deny);
    // Allowed where destructive operations are, and only on a writable repository.
    let lenient = "rules: [{name: gh, use: github, with: {write_repos: [acme/app], allow_destructive: true}}]";
    assert_eq!(
        verdict(lenient, &request("POST", "/repos/acme/app", Some(json!({"archived": true})))).0,
        Verdict::Allow
    );
    let (v, why) = verdict(lenient, &request("POST", "/repos/acme/other", Some(json!({"private": false}))));
    assert!(v == Verdict::Deny && why.contains("writing to `acme/other`"), "{why}");
}

#[test]
fn admin_routes_of_a_repository_are_destructive() {
    let attacks = [
        ("POST", "keys", json!({"key": "ssh-ed25519 AAAA", "read_only": false})),
        ("PUT", "collaborators/evil", json!({"permission": "admin"})),
        ("PATCH", "invitations/1", json!({"permissions": "admin"})),
        ("POST", "hooks", json!({"config": {"url": "https://evil.example/"}, "events": ["push"]})),
        ("PATCH", "hooks/1/config", json!({"url": "https://evil.example/"})),
        ("PUT", "branches/main/protection", json!({"enforce_admins": false})),
        ("POST", "branches/agent/x/protection/enforce_admins", json!({})),
        ("PATCH", "branches/main/protection/required_pull_request_reviews", json!({})),
        ("PUT", "actions/secrets/X", json!({"encrypted_value": "e", "key_id": "k"})),
        ("POST", "actions/variables", json!({"name": "V", "value": "v"})),
        ("PUT", "actions/permissions", json!({"enabled": true, "allowed_actions": "all"})),
        ("PUT", "actions/permissions/workflow", json!({"default_workflow_permissions": "write"})),
        ("POST", "actions/runners/registration-token", json!({})),
        ("PUT", "actions/oidc/customization/sub", json!({"use_default": false})),
        ("PUT", "rulesets/7", json!({"enforcement": "disabled"})),
        ("POST", "rulesets", json!({"name": "r"})),
        ("PUT", "environments/prod", json!({"deployment_branch_policy": null})),
        ("PUT", "environments/prod/secrets/X", json!({"encrypted_value": "e"})),
        ("POST", "pages", json!({"source": {"branch": "agent/x"}})),
        ("POST", "transfer", json!({"new_owner": "evil"})),
        ("PUT", "dependabot/secrets/X", json!({"encrypted_value": "e"})),
        ("PUT", "codespaces/secrets/X", json!({"encrypted_value": "e"})),
        ("POST", "tags/protection", json!({"pattern": "*"})),
        ("PUT", "vulnerability-alerts", json!({})),
        ("POST", "secret-scanning/push-protection-bypasses", json!({"reason": "false_positive"})),
        ("PATCH", "code-scanning/default-setup", json!({"state": "not-configured"})),
        ("PUT", "import", json!({"vcs_url": "https://evil.example/x.git"})),
        ("POST", "autolinks", json!({"key_prefix": "X-"})),
        ("PATCH", "properties/values", json!({})),
    ];
    for (method, tail, body) in &attacks {
        let mut paths = spellings(tail);
        // Spellings a router may take for the same route.
        let (first, after) = tail.split_once('/').unwrap_or((tail, ""));
        let after = if after.is_empty() { String::new() } else { format!("/{after}") };
        paths.push(format!("/repos/acme/app/{}{after}", first.to_uppercase()));
        paths.push(format!("/repos/acme/app/{first}.json{after}"));
        paths.push(format!("/repos/acme/app/{first};x=1{after}"));
        for path in paths {
            for m in [method.to_string(), method.to_lowercase(), "POST".into(), "PUT".into()] {
                let (v, why) = any_branch(&request(&m, &path, Some(body.clone())));
                assert!(v == Verdict::Deny && why.contains("destructive"), "{m} {path}: {v:?} {why}");
                assert!(why.contains("administers"), "{m} {path}: {why}");
            }
        }
        // Reading them is a read; allowed writes are destructive ones.
        let path = format!("/repos/acme/app/{tail}");
        assert_eq!(any_branch(&request("GET", &path, None)).0, Verdict::Allow, "GET {path}");
        let lenient = "rules: [{name: gh, use: github, with: {write_repos: [acme/app], allow_destructive: true}}]";
        assert_eq!(verdict(lenient, &request(method, &path, Some(body.clone()))).0, Verdict::Allow, "{path}");
        let other = format!("/repos/acme/other/{tail}");
        assert_eq!(verdict(lenient, &request(method, &other, Some(body.clone()))).0, Verdict::Deny, "{other}");
    }
    // A branch rename is still a write to both branches, not administration.
    let rename = |from: &str, to: &str| {
        github(&request("POST", &format!("/repos/acme/app/branches/{from}/rename"), Some(json!({"new_name": to}))))
    };
    assert_eq!(rename("agent/x", "agent/y").0, Verdict::Allow);
    assert_eq!(rename("agent/x", "main").0, Verdict::Deny);
    // Ordinary writes stay writes.
    assert_eq!(any_branch(&request("POST", "/repos/acme/app/issues", Some(json!({"title": "t"})))).0, Verdict::Allow);
    assert_eq!(any_branch(&request("POST", "/repos/acme/app/pulls", Some(json!({"head": "x"})))).0, Verdict::Allow);
}

#[test]
fn force_in_the_query_string_is_a_force_update() {
    let forced = [
        "?force=true",
        "?force=1",
        "?force=True",
        "?force=TRUE",
        "?FORCE=true",
        "?Force=yes",
        "?force=on",
        "?force",
        "?force=",
        "?%66orce=true",
        "?%2566orce=true",
        "?force=%74rue",
        "?force[]=true",
        "?force=+true+",
        "?a=1&force=true",
        "?a=1;force=true",
        "?force=false&force=true",
        "#?force=true",
    ];
    for query in forced {
        for path in spellings("git/refs/heads/agent/x") {
            let path = format!("{path}{query}");
            for method in ["PATCH", "patch", "POST", "post", "PUT"] {
                let (v, why) = github(&request(method, &path, Some(json!({"sha": B}))));
                assert!(v == Verdict::Deny && why.contains("force"), "{method} {path}: {v:?} {why}");
                let (v, why) = github(&request(method, &path, Some(json!({"sha": B, "force": false}))));
                assert_ne!(v, Verdict::Allow, "{method} {path} with `force: false` in the body: {why}");
                let (v, why) = github(&request(method, &path, None));
                assert!(v == Verdict::Deny && why.contains("force"), "{method} {path} without a body: {why}");
            }
        }
    }
    for query in ["?force=false", "?force=0", "?force=%66alse", "?forced=true", "?note=1"] {
        let path = format!("/repos/acme/app/git/refs/heads/agent/x{query}");
        assert_eq!(github(&request("PATCH", &path, Some(json!({"sha": B})))).0, Verdict::Allow, "{path}");
        assert_eq!(github(&request("POST", &path, Some(json!({"sha": B})))).0, Verdict::Allow, "{path}");
    }
    // A body's `force` counts unless it is plainly false, under any case of its name.
    for force in [json!("yes"), json!("on"), json!(2), json!([true]), json!({"x": 1})] {
        let e = request("POST", "/repos/acme/app/git/refs/heads/agent/x", Some(json!({"sha": B, "force": force})));
        assert_eq!(github(&e).0, Verdict::Deny, "{force}");
    }
    let e = request("PATCH", "/repos/acme/app/git/refs/heads/agent/x", Some(json!({"sha": B, "Force": true})));
    assert_eq!(github(&e).0, Verdict::Deny);
    for force in [json!(false), json!(0), json!("false"), json!(null)] {
        let e = request("POST", "/repos/acme/app/git/refs/heads/agent/x", Some(json!({"sha": B, "force": force})));
        assert_eq!(github(&e).0, Verdict::Allow, "{force}");
    }
    // A force on the creation route makes it an update that forces.
    let e =
        request("POST", "/repos/acme/app/git/refs?force=true", Some(json!({"ref": "refs/heads/agent/x", "sha": B})));
    assert_eq!(github(&e).0, Verdict::Deny);
    // GraphQL: a force that may be taken for true.
    let (v, _) = github(&graphql(&[("updateRef", json!({"input": {"refId": "R", "oid": B, "force": "yes"}}))]));
    assert_eq!(v, Verdict::Deny);
}

#[test]
fn query_parameters_count_as_the_fields_they_name() {
    // Alone, a query parameter is read like the body's field.
    let (v, why) = github(&request("PUT", "/repos/acme/app/contents/a.rs?branch=main", Some(json!({"message": "m"}))));
    assert!(v == Verdict::Deny && why.contains("branch `main`"), "{why}");
    for method in ["POST", "post", "PUT", "PATCH"] {
        let (v, why) = github(&request(method, "/repos/acme/app/merges?base=main", Some(json!({"head": "agent/x"}))));
        assert!(v == Verdict::Deny && why.contains("branch `main`"), "{method}: {why}");
        let (v, why) = github(&request(method, "/repos/acme/app/merges", Some(json!({"base": "main"}))));
        assert!(v == Verdict::Deny && why.contains("branch `main`"), "{method}: {why}");
    }
    let (v, why) = github(&request("POST", "/repos/acme/app/git/refs?ref=refs/tags/v1", Some(json!({"sha": B}))));
    assert!(v == Verdict::Deny && why.contains("tags"), "{why}");
    // Given twice, differently: which one the server takes cannot be told.
    for (path, body) in [
        ("/repos/acme/app/contents/a.rs?branch=main", json!({"branch": "agent/x", "message": "m"})),
        ("/repos/acme/app/contents/a.rs?branch=agent/x&branch=main", json!({"message": "m"})),
        ("/repos/acme/app/merges?BASE=main", json!({"base": "agent/x", "head": "h"})),
        ("/repos/acme/app/git/refs?ref=refs/heads/main", json!({"ref": "refs/heads/agent/x", "sha": B})),
    ] {
        let (v, why) = github(&request("PUT", path, Some(body.clone())));
        assert!(v == Verdict::Ask && why.contains("different values"), "{path}: {v:?} {why}");
    }
    let same = request("PUT", "/repos/acme/app/contents/a.rs?branch=agent/x", Some(json!({"branch": "agent/x"})));
    assert_eq!(github(&same).0, Verdict::Allow, "the same value twice is one value");
    assert_eq!(github(&request("GET", "/repos/acme/app/contents/a.rs?ref=main&ref=x", None)).0, Verdict::Allow);
}

#[test]
fn a_method_override_is_opaque() {
    for (method, path, body) in [
        ("GET", "/repos/acme/app?_method=DELETE", None),
        ("POST", "/repos/acme/app/issues?_METHOD=delete", Some(json!({"title": "t"}))),
        ("POST", "/repos/acme/app/issues?%5Fmethod=DELETE", Some(json!({"title": "t"}))),
        ("POST", "/repos/acme/app/issues", Some(json!({"title": "t", "_method": "DELETE"}))),
        ("POST", "/repos/acme/app/issues?x-http-method-override=DELETE", Some(json!({}))),
    ] {
        let (v, why) = github(&request(method, path, body));
        assert!(v == Verdict::Ask && why.contains("another method"), "{method} {path}: {v:?} {why}");
    }
}

#[test]
fn graphql_mutations_that_administer_a_repository_are_destructive() {
    for name in [
        "archiveRepository",
        "unarchiveRepository",
        "createBranchProtectionRule",
        "updateBranchProtectionRule",
        "createRepositoryRuleset",
        "updateRepositoryRuleset",
        "updateTeamsRepository",
    ] {
        let (v, why) = github(&graphql(&[(name, json!({"input": {"repositoryId": "X"}}))]));
        assert!(v == Verdict::Deny && why.contains("destructive"), "{name}: {v:?} {why}");
    }
    let (v, _) = github(&graphql(&[("updateRepository", json!({"input": {"repositoryId": "X", "archived": true}}))]));
    assert_eq!(v, Verdict::Deny);
}

#[test]
fn the_wire_examples_of_docs_policies_md_hold() {
    let doc = include_str!("../../../docs/policies.md");
    let start = doc.find("# paddock test: a forced ref update through the REST API").expect("the example");
    let steps = &doc[start..start + doc[start..].find("```").expect("its end")];
    let steps: String = steps.lines().map(|l| format!("      {l}\n")).collect();
    let suite = format!(
        "state: {{sandbox: {{brokered: [\"api.github.com:443\"]}}}}\ncases:\n  - name: docs\n    steps:\n{steps}"
    );
    check(&suite, &policies(&[("p", ANY_BRANCH)]));
}
