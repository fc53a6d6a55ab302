//! The GitHub API on the wire: a REST request judged by its method, its normalised path and its JSON body;
//! a GraphQL request by its operation's top-level fields. Repositories come from `/repos/{owner}/{repo}/…`;
//! a GraphQL mutation names its repository only by node ID, so a mutation that may write is asked about
//! (denied when no repository is writable) after the checks it can be judged by (deletes, force, tags,
//! branches) have passed.

use serde_json::Value;

use super::wire::RefChange;
use super::{Access, Github};
use crate::builtins::Outcome;
use crate::event::{GraphqlOperation, is_zero_oid};

fn is(seg: Option<&String>, word: &str) -> bool {
    seg.is_some_and(|s| s.eq_ignore_ascii_case(word))
}

/// `true`, `"true"`, `1`, `"1"`: what a lenient server may take for true.
pub(crate) fn truthy(v: Option<&Value>) -> bool {
    v.is_some_and(|v| {
        v.as_bool() == Some(true)
            || v.as_u64() == Some(1)
            || v.as_str().is_some_and(|s| s.trim().eq_ignore_ascii_case("true") || s.trim() == "1")
    })
}

fn text<'a>(body: Option<&'a Value>, key: &str) -> Option<&'a str> {
    body?.get(key)?.as_str().filter(|s| !s.trim().is_empty())
}

/// `refs/…` of a ref an API call names without the prefix (`heads/main`); full names pass unchanged.
fn full_ref(r: &str) -> String {
    if super::wire::starts_with_ignore_case(r, "refs/") { r.to_owned() } else { format!("refs/{r}") }
}

impl Github {
    /// A REST request; `segs` is its normalised path below the API root.
    pub(super) fn rest(&self, method: &str, segs: &[String], body: Option<&Value>, what: &str) -> Option<Outcome> {
        let m = method.to_ascii_uppercase();
        let reads = matches!(m.as_str(), "GET" | "HEAD" | "OPTIONS");
        let default = if m == "DELETE" {
            Access::Destructive
        } else if reads {
            Access::Read
        } else {
            Access::Write
        };
        let at = |i: usize| segs.get(i);
        if is(at(0), "user") && is(at(1), "repos") && segs.len() == 2 && m == "POST" {
            return self.created(None, what);
        }
        if is(at(0), "orgs") && is(at(2), "repos") && segs.len() == 3 && m == "POST" {
            return self.created(text(body, "name").map(|n| format!("{}/{n}", segs[1])), what);
        }
        if !is(at(0), "repos") || segs.len() < 3 {
            // Not about one repository: a write here cannot be tied to a repository the rule allows.
            return self.check_repo(default, None, None, what);
        }
        let repo = format!("{}/{}", segs[1], segs[2]);
        let repo = Some(repo.as_str());
        let rest = &segs[3..];
        let r = |i: usize| rest.get(i);
        let no_base = "the merge writes the pull request's base branch, which the request does not name";
        match (m.as_str(), rest.len()) {
            ("DELETE", 0) => {
                return self.check_repo(Access::Destructive, repo, None, &format!("{what} (deletes the repository)"));
            }
            ("PATCH", 0) => {
                let Some(body) = body else {
                    return Some(self.opaque(format!(
                        "{what}: cannot see the request body, which may change the repository's visibility"
                    )));
                };
                let visibility = body.get("private").is_some() || body.get("visibility").is_some();
                let access = if visibility { Access::Destructive } else { Access::Write };
                return self.check_repo(access, repo, None, what);
            }
            _ => {}
        }
        if is(r(0), "git") && is(r(1), "refs") {
            if rest.len() == 2 && m == "POST" {
                return match text(body, "ref") {
                    Some(name) => self.ref_change(repo, &full_ref(name), RefChange::Create, what),
                    None => Some(self.opaque(format!("{what}: cannot see which ref it creates"))),
                };
            }
            if rest.len() > 2 && !reads {
                let name = full_ref(&rest[2..].join("/"));
                let change = match m.as_str() {
                    "DELETE" => RefChange::Delete,
                    _ => RefChange::Update { force: body.map(|b| truthy(b.get("force"))) },
                };
                return self.ref_change(repo, &name, change, what);
            }
        }
        if is(r(0), "pulls") && rest.len() == 3 && !reads {
            if is(r(2), "merge") {
                return self.check_unnamed_branch(Access::Write, repo, what, no_base);
            }
            if is(r(2), "update-branch") {
                return self.check_unnamed_branch(
                    Access::Write,
                    repo,
                    what,
                    "it writes the pull request's head branch, which the request does not name",
                );
            }
        }
        if is(r(0), "merges") && rest.len() == 1 && m == "POST" {
            return match text(body, "base") {
                Some(base) => self.check_repo(Access::Write, repo, Some(base.trim_start_matches("refs/heads/")), what),
                None => {
                    self.check_unnamed_branch(Access::Write, repo, what, "it does not show which branch it merges into")
                }
            };
        }
        if is(r(0), "contents") && rest.len() > 1 && !reads {
            return match text(body, "branch") {
                Some(b) => self.check_repo(default, repo, Some(b.trim_start_matches("refs/heads/")), what),
                None => self.check_unnamed_branch(
                    default,
                    repo,
                    what,
                    "it names no branch, so it writes the repository's default branch",
                ),
            };
        }
        if is(r(0), "branches") && is(rest.last(), "rename") && rest.len() > 2 && m == "POST" {
            let from = rest[1..rest.len() - 1].join("/");
            return self.check_repo(Access::Write, repo, Some(&from), what).or_else(|| match text(body, "new_name") {
                Some(to) => self.check_repo(Access::Write, repo, Some(to), what),
                None => self.check_unnamed_branch(Access::Write, repo, what, "cannot see the branch's new name"),
            });
        }
        if is(r(0), "merge-upstream") && rest.len() == 1 && !reads {
            return match text(body, "branch") {
                Some(b) => self.check_repo(Access::Write, repo, Some(b.trim_start_matches("refs/heads/")), what),
                None => self.check_unnamed_branch(Access::Write, repo, what, "cannot see which branch it updates"),
            };
        }
        if is(r(0), "forks") && rest.len() == 1 && m == "POST" {
            if let Some(o) = self.check_repo(Access::Read, repo, None, what) {
                return Some(o);
            }
            let name = text(body, "name").unwrap_or(&segs[2]);
            return self.created(text(body, "organization").map(|o| format!("{o}/{name}")), what);
        }
        if is(r(0), "transfer") && rest.len() == 1 && !reads {
            return self.check_repo(Access::Destructive, repo, None, &format!("{what} (transfers the repository)"));
        }
        self.check_repo(default, repo, None, what)
    }

    /// A GraphQL request. Queries read; each mutation field is judged where its arguments show what it does.
    pub(super) fn graphql(&self, method: &str, op: Option<&GraphqlOperation>, what: &str) -> Option<Outcome> {
        let Some(op) = op else {
            if matches!(method.to_ascii_uppercase().as_str(), "GET" | "HEAD" | "OPTIONS") {
                return self.check_repo(Access::Read, None, None, what);
            }
            return Some(self.opaque(format!("{what}: cannot see the GraphQL operation")));
        };
        match op.kind.as_str() {
            "query" => return self.check_repo(Access::Read, None, None, what),
            "mutation" => {}
            other => return Some(self.opaque(format!("{what}: a GraphQL `{other}`"))),
        }
        let mut writes = Vec::new();
        let mut unknown = Vec::new();
        // Whether some field names its repository only by node ID (nearly all do).
        let mut by_node_id = false;
        for f in &op.fields {
            let name = f.name.to_ascii_lowercase();
            let input = f.args.get("input");
            let arg = |k: &str| input.and_then(|i| i.get(k));
            let what = format!("{what} (GraphQL `{}`)", f.name);
            let destructive = name.starts_with("delete") || name.starts_with("remove");
            let named_branch = (name == "createcommitonbranch").then(|| arg("branch")).flatten();
            let named_repo = named_branch.and_then(|b| b.get("repositoryNameWithOwner")).and_then(Value::as_str);
            by_node_id |= named_repo.is_none();
            let outcome = match name.as_str() {
                // The ref is a node ID: only what the call itself shows can be judged.
                "deleteref" => self.destructive(&format!("{what}: it deletes a ref")),
                "updateref" if truthy(arg("force")) && self.p.deny_force_push => {
                    Some(self.deny(format!("{what}: it is a force update, and force pushes are not allowed")))
                }
                "updateref" => None,
                "updaterefs" => self.graphql_ref_updates(arg("refUpdates"), &what),
                "createref" => match arg("name").and_then(Value::as_str) {
                    Some(n) => self.ref_rules(&full_ref(n), RefChange::Create, &what),
                    None => Some(self.opaque(format!("{what}: cannot see which ref it creates"))),
                },
                "mergebranch" => match arg("base").and_then(Value::as_str) {
                    Some(b) => self.branch_allowed(b.trim_start_matches("refs/heads/"), &what),
                    None => Some(self.opaque(format!("{what}: cannot see which branch it merges into"))),
                },
                "mergepullrequest" => (!self.p.write_branches.is_empty()).then(|| {
                    Outcome::ask(format!(
                        "{what}: the merge writes the pull request's base branch, which the request does not name"
                    ))
                }),
                "updaterepository" if arg("visibility").is_some() || arg("private").is_some() => {
                    self.destructive(&format!("{what}: it changes the repository's visibility"))
                }
                _ if destructive => self.destructive(&what),
                "updaterepository"
                | "addcomment"
                | "createissue"
                | "createpullrequest"
                | "updateissue"
                | "updatepullrequest"
                | "closeissue"
                | "reopenissue"
                | "closepullrequest"
                | "addlabelstolabelable"
                | "addpullrequestreview"
                | "submitpullrequestreview" => None,
                "createcommitonbranch" => {
                    let branch = named_branch
                        .and_then(|b| b.get("branchName"))
                        .and_then(Value::as_str)
                        .map(|b| b.trim_start_matches("refs/heads/"));
                    match (named_repo, branch) {
                        (Some(repo), Some(b)) => self.check_repo(Access::Write, Some(repo), Some(b), &what),
                        (Some(repo), None) => self.check_unnamed_branch(
                            Access::Write,
                            Some(repo),
                            &what,
                            "cannot see which branch it commits to",
                        ),
                        (None, b) => b.and_then(|b| self.branch_allowed(b, &what)),
                    }
                }
                _ => {
                    unknown.push(f.name.clone());
                    None
                }
            };
            match outcome {
                Some(o) if o.verdict == paddock_api::Verdict::Deny => return Some(o),
                Some(o) => writes.push(o),
                None => {}
            }
        }
        if !by_node_id && unknown.is_empty() {
            return writes.into_iter().next();
        }
        if self.p.write_repos.is_empty() {
            return Some(self.deny(format!("{what}: a GraphQL mutation may write, and no repository is writable")));
        }
        if !unknown.is_empty() {
            return Some(self.opaque(format!(
                "{what}: cannot tell what the GraphQL mutation `{}` does or which repository it writes",
                unknown.join("`, `")
            )));
        }
        Some(writes.into_iter().next().unwrap_or_else(|| {
            Outcome::ask(format!(
                "{what}: cannot tell which repository a GraphQL mutation writes (it names it by node ID)"
            ))
        }))
    }

    /// `updateRefs(input: {refUpdates: [{name, afterOid, force}]})`.
    fn graphql_ref_updates(&self, updates: Option<&Value>, what: &str) -> Option<Outcome> {
        let Some(list) = updates.and_then(Value::as_array) else {
            return Some(self.opaque(format!("{what}: cannot see which refs it updates")));
        };
        let mut asks = None;
        for u in list {
            let Some(name) = u.get("name").and_then(Value::as_str) else {
                return Some(self.opaque(format!("{what}: cannot see which ref it updates")));
            };
            let deletes = u.get("afterOid").and_then(Value::as_str).is_some_and(is_zero_oid);
            let change =
                if deletes { RefChange::Delete } else { RefChange::Update { force: Some(truthy(u.get("force"))) } };
            match self.ref_rules(&full_ref(name), change, &format!("{what} on `{name}`")) {
                Some(o) if o.verdict == paddock_api::Verdict::Deny => return Some(o),
                Some(o) => asks = asks.or(Some(o)),
                None => {}
            }
        }
        asks
    }

    fn destructive(&self, what: &str) -> Option<Outcome> {
        (!self.p.allow_destructive).then(|| self.deny(format!("{what}: destructive GitHub operations are not allowed")))
    }
}
