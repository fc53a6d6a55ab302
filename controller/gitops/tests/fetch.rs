//! Fetching revisions from real git repositories made in the test (`file://`).

mod support;

use paddock_api::gitsource::GitRef;
use paddock_gitops::fetch::{Credentials, FetchError, FetchRequest, fetch};
use paddock_gitops::source::Content;
use support::Upstream;

fn req<'a>(url: &'a str, git_ref: &'a GitRef, path: &'a str) -> FetchRequest<'a> {
    static NONE: Credentials = Credentials::None;
    FetchRequest { url, git_ref, path, credentials: &NONE }
}

fn branch(b: &str) -> GitRef {
    GitRef { branch: Some(b.into()), ..GitRef::default() }
}

fn paths(f: &paddock_gitops::fetch::Fetched) -> Vec<&str> {
    f.files.iter().map(|f| f.path.as_str()).collect()
}

fn text(f: &paddock_gitops::fetch::Fetched, path: &str) -> String {
    match &f.files.iter().find(|x| x.path == path).unwrap().content {
        Content::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reads_the_manifests_of_the_branch_tip_like_paddock_validate() {
    let up = Upstream::new();
    let tip = up.commit_tree(
        "main",
        &[
            ("agents/coder.yaml", b"kind: Agent\n"),
            ("policies/base.yml", b"kind: Policy\n"),
            ("policies/tests/base.test.yaml", b"cases: []\n"),
            (".github/workflows/ci.yaml", b"on: push\n"),
            ("README.md", b"# agents\n"),
        ],
        false,
    );
    let cache = tempfile::tempdir().unwrap();
    // No ref means the branch `main`, as the CRD documents.
    let got = fetch(cache.path(), &req(&up.url(), &GitRef::default(), "./")).unwrap();
    assert_eq!(got.revision, format!("main@sha1:{tip}"));
    assert_eq!(got.commit, tip.to_string());
    assert_eq!(paths(&got), ["agents/coder.yaml", "policies/base.yml"]);
    assert!(!got.truncated);
}

#[test]
fn follows_new_commits_and_force_pushed_history() {
    let up = Upstream::new();
    up.commit_tree("main", &[("agents/a.yaml", b"v1")], false);
    let cache = tempfile::tempdir().unwrap();
    let b = branch("main");
    assert_eq!(text(&fetch(cache.path(), &req(&up.url(), &b, "")).unwrap(), "agents/a.yaml"), "v1");
    let second = up.commit_tree("main", &[("agents/a.yaml", b"v2")], false);
    let got = fetch(cache.path(), &req(&up.url(), &b, "")).unwrap();
    assert_eq!(got.revision, format!("main@sha1:{second}"));
    assert_eq!(text(&got, "agents/a.yaml"), "v2");
    // History rewritten: the new tip does not descend from what the cache holds.
    let rewritten = up.commit_tree("main", &[("agents/b.yaml", b"v3")], true);
    let got = fetch(cache.path(), &req(&up.url(), &b, "")).unwrap();
    assert_eq!(got.revision, format!("main@sha1:{rewritten}"));
    assert_eq!(paths(&got), ["agents/b.yaml"]);
}

#[test]
fn branches_tags_and_commits() {
    let up = Upstream::new();
    let first = up.commit_tree("main", &[("a.yaml", b"main-1")], false);
    up.tag("v1.0", first);
    up.commit_tree("main", &[("a.yaml", b"main-2")], false);
    let feature = up.commit_tree("feature/x", &[("a.yaml", b"feature")], true);
    let cache = tempfile::tempdir().unwrap();
    let url = up.url();

    let got = fetch(cache.path(), &req(&url, &branch("feature/x"), "")).unwrap();
    assert_eq!(got.revision, format!("feature/x@sha1:{feature}"));
    assert_eq!(text(&got, "a.yaml"), "feature");

    let tag = GitRef { tag: Some("v1.0".into()), ..GitRef::default() };
    let got = fetch(cache.path(), &req(&url, &tag, "")).unwrap();
    assert_eq!(got.revision, format!("v1.0@sha1:{first}"), "an annotated tag peels to its commit");
    assert_eq!(text(&got, "a.yaml"), "main-1");

    let short = first.to_string()[..10].to_owned();
    let pin = GitRef { commit: Some(short), ..GitRef::default() };
    let got = fetch(cache.path(), &req(&url, &pin, "")).unwrap();
    assert_eq!(got.revision, format!("sha1:{first}"));
    assert_eq!(text(&got, "a.yaml"), "main-1");
}

#[test]
fn missing_refs_and_paths_are_errors_not_stale_data() {
    let up = Upstream::new();
    up.commit_tree("main", &[("deploy/agents/a.yaml", b"x")], false);
    up.commit_tree("gone", &[("a.yaml", b"x")], false);
    let cache = tempfile::tempdir().unwrap();
    let url = up.url();
    let got = fetch(cache.path(), &req(&url, &branch("main"), "./deploy/agents/")).unwrap();
    assert_eq!(paths(&got), ["a.yaml"], "paths are relative to spec.path");
    assert!(matches!(fetch(cache.path(), &req(&url, &branch("main"), "nope")), Err(FetchError::PathNotFound(..))));
    assert!(matches!(fetch(cache.path(), &req(&url, &branch("main"), "../etc")), Err(FetchError::InvalidPath(_))));
    assert!(fetch(cache.path(), &req(&url, &branch("gone"), "")).is_ok());
    up.delete_branch("gone");
    let err = fetch(cache.path(), &req(&url, &branch("gone"), "")).unwrap_err();
    assert!(matches!(err, FetchError::RefNotFound(..) | FetchError::Git(_)), "{err}");
    assert!(matches!(
        fetch(cache.path(), &req(&url, &branch("main:refs/heads/x"), "")),
        Err(FetchError::InvalidRef(_))
    ));
    let missing = GitRef { commit: Some("0123456789abcdef".into()), ..GitRef::default() };
    assert!(matches!(fetch(cache.path(), &req(&url, &missing, "")), Err(FetchError::RefNotFound(..))));
}

#[test]
fn symlinks_and_huge_files_are_not_read() {
    let up = Upstream::new();
    let big = vec![b'#'; 2 * 1024 * 1024];
    up.commit_with_links(
        "main",
        &[("agents/big.yaml", &big), ("agents/ok.yaml", b"x")],
        &[("agents/link.yaml", "/etc/passwd")],
    );
    let cache = tempfile::tempdir().unwrap();
    let got = fetch(cache.path(), &req(&up.url(), &branch("main"), "")).unwrap();
    let by_path = |p: &str| &got.files.iter().find(|f| f.path == p).unwrap().content;
    assert_eq!(by_path("agents/big.yaml"), &Content::TooLarge(2 * 1024 * 1024));
    assert_eq!(by_path("agents/link.yaml"), &Content::NotRegular);
    assert_eq!(by_path("agents/ok.yaml"), &Content::Bytes(b"x".to_vec()));
}

#[test]
fn an_unreachable_remote_is_an_error() {
    let cache = tempfile::tempdir().unwrap();
    let err = fetch(cache.path(), &req("file:///nonexistent/repo", &branch("main"), "")).unwrap_err();
    assert!(matches!(err, FetchError::Git(_)), "{err}");
}
