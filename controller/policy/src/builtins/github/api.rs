//! The GitHub API on the wire: a REST request judged by its method, its normalised path and its JSON body;
//! a GraphQL request by its operation's top-level fields. Repositories come from `/repos/{owner}/{repo}/…`;
//! a GraphQL mutation names its repository only by node ID, so a mutation that may write is asked about
//! (denied when no repository is writable) after the checks it can be judged by (deletes, force, tags,
//! branches) have passed.

use serde_json::Value;

use super::request_fields::{Fields, may_be_true};
use super::wire::RefChange;
use super::{Access, Github};
use crate::builtins::Outcome;
use crate::event::{GraphqlOperation, is_zero_oid};

/// Fields of a repository edit (`PATCH /repos/o/r`) that change who can see the repository, whether it
/// can be written at all, or its security features: destructive, whatever their value.
const REPO_SETTINGS: &[&str] = &["private", "visibility", "archived", "security_and_analysis"];

/// Routes below `/repos/o/r/` whose writes change who can reach the repository (deploy keys,
/// collaborators, teams, invitations, self-hosted runners), where its data or secrets go (hooks, Actions
/// secrets, variables and permissions, environments, Pages, OIDC, transfer, import), or what protects it
/// (branch protection, rulesets, tag protection, security features). Every method but a read is
/// destructive here: a deploy key or a collaborator outlasts the session. `branches` covers every write
/// below a branch but `POST …/rename` (judged as a write to both names): only protection lives there.
const ADMIN_ROUTES: &[&[&str]] = &[
    &["keys"],
    &["collaborators"],
    &["invitations"],
    &["teams"],
    &["hooks"],
    &["rulesets"],
    &["environments"],
    &["pages"],
    &["transfer"],
    &["import"],
    &["autolinks"],
    &["properties"],
    &["interaction-limits"],
    &["vulnerability-alerts"],
    &["automated-security-fixes"],
    &["private-vulnerability-reporting"],
    &["code-security-configuration"],
    &["secret-scanning"],
    &["code-scanning", "default-setup"],
    &["branches"],
    &["tags", "protection"],
    &["actions", "secrets"],
    &["actions", "variables"],
    &["actions", "permissions"],
    &["actions", "runners"],
    &["actions", "oidc"],
    &["dependabot", "secrets"],
    &["codespaces", "secrets"],
];

/// A fixed word of a path as a router may match it: any case, without `;parameters` or a `.json` format.
fn word(seg: &str) -> String {
    let s = seg.split(';').next().unwrap_or_default().to_ascii_lowercase();
    s.strip_suffix(".json").map(str::to_owned).unwrap_or(s)
}

fn is(seg: Option<&String>, w: &str) -> bool {
    seg.is_some_and(|s| word(s) == w)
}

/// The admin route `rest` (the path below `/repos/o/r/`) is under, if any.
fn admin_route(rest: &[String]) -> Option<String> {
    ADMIN_ROUTES
        .iter()
        .find(|route| route.len() <= rest.len() && route.iter().zip(rest).all(|(w, s)| word(s) == *w))
        .map(|route| route.join("/"))
}

/// `refs/…` of a ref an API call names without the prefix (`heads/main`); full names pass unchanged.
fn full_ref(r: &str) -> String {
    if super::wire::starts_with_ignore_case(r, "refs/") { r.to_owned() } else { format!("refs/{r}") }
}

impl Github {
    /// A REST request; `segs` is its normalised path below the API root, `raw` the path as sent (for its
    /// query string, whose parameters count as fields: see [`Fields`]).
    pub(super) fn rest(
        &self,
        method: &str,
        raw: &str,
        segs: &[String],
        body: Option<&Value>,
        what: &str,
    ) -> Option<Outcome> {
        let m = method.trim().to_ascii_uppercase();
        let reads = matches!(m.as_str(), "GET" | "HEAD" | "OPTIONS");
        let fields = Fields::new(body, raw);
        if let Some(name) = fields.method_override() {
            return Some(self.opaque(format!("{what}: `{name}` asks the server to take it as another method")));
        }
        if !reads && let Some(name) = fields.conflict(REPO_SETTINGS) {
            return Some(self.opaque(format!(
                "{what}: `{name}` is given twice with different values (query string and body), and which one \
                 the server takes cannot be told"
            )));
        }
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
            return self.created(fields.text("name").map(|n| format!("{}/{n}", segs[1])), what);
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
        if rest.is_empty() && !reads {
            if m == "DELETE" {
                return self.check_repo(Access::Destructive, repo, None, &format!("{what} (deletes the repository)"));
            }
            // The repository edit: GitHub takes POST (and this rule any other method) where PATCH is meant.
            let settings: Vec<&str> = REPO_SETTINGS.iter().copied().filter(|k| fields.has(k)).collect();
            if !settings.is_empty() {
                let what = format!("{what} (changes the repository's `{}`)", settings.join("`, `"));
                return self.check_repo(Access::Destructive, repo, None, &what);
            }
            if !fields.body_seen() || fields.body_unreadable() {
                return Some(self.opaque(format!(
                    "{what}: cannot see the request body's fields, which may change the repository's visibility \
                     or archive it"
                )));
            }
            return self.check_repo(Access::Write, repo, None, what);
        }
        if is(r(0), "git") && is(r(1), "refs") && !reads {
            if rest.len() == 2 {
                // Creates the body's `ref` (POST; any other method is read the same way, and a `force`
                // makes it an update that forces).
                let change = match fields.force() {
                    _ if m == "DELETE" => RefChange::Delete,
                    Some(true) => RefChange::Update { force: Some(true) },
                    _ => RefChange::Create,
                };
                return match fields.text("ref") {
                    Some(name) => self.ref_change(repo, &full_ref(name), change, what),
                    None if m == "DELETE" => self.check_repo(Access::Destructive, repo, None, what),
                    None => Some(self.opaque(format!("{what}: cannot see which ref it creates"))),
                };
            }
            // Updates the ref (PATCH; GitHub takes POST too, and this rule any method but DELETE).
            let name = full_ref(&rest[2..].join("/"));
            let change = match m.as_str() {
                "DELETE" => RefChange::Delete,
                _ => RefChange::Update { force: fields.force() },
            };
            return self.ref_change(repo, &name, change, what);
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
        // POST, and any other method a lenient server may take for it.
        if is(r(0), "merges") && rest.len() == 1 && !reads {
            return match fields.text("base") {
                Some(base) => self.check_repo(Access::Write, repo, Some(base.trim_start_matches("refs/heads/")), what),
                None => {
                    self.check_unnamed_branch(Access::Write, repo, what, "it does not show which branch it merges into")
                }
            };
        }
        if is(r(0), "contents") && rest.len() > 1 && !reads {
            return match fields.text("branch") {
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
            return self.check_repo(Access::Write, repo, Some(&from), what).or_else(|| match fields.text("new_name") {
                Some(to) => self.check_repo(Access::Write, repo, Some(to), what),
                None => self.check_unnamed_branch(Access::Write, repo, what, "cannot see the branch's new name"),
            });
        }
        if is(r(0), "merge-upstream") && rest.len() == 1 && !reads {
            return match fields.text("branch") {
                Some(b) => self.check_repo(Access::Write, repo, Some(b.trim_start_matches("refs/heads/")), what),
                None => self.check_unnamed_branch(Access::Write, repo, what, "cannot see which branch it updates"),
            };
        }
        if is(r(0), "forks") && rest.len() == 1 && m == "POST" {
            if let Some(o) = self.check_repo(Access::Read, repo, None, what) {
                return Some(o);
            }
            let name = fields.text("name").unwrap_or(&segs[2]);
            return self.created(fields.text("organization").map(|o| format!("{o}/{name}")), what);
        }
        if !reads && let Some(route) = admin_route(rest) {
            let what = format!("{what} (administers the repository: `{route}`)");
            return self.check_repo(Access::Destructive, repo, None, &what);
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
                "updateref" if arg("force").is_some_and(may_be_true) && self.p.deny_force_push => {
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
                "updaterepository" if REPO_SETTINGS.iter().any(|k| arg(k).is_some()) => {
                    self.destructive(&format!("{what}: it changes the repository's visibility or archives it"))
                }
                "archiverepository"
                | "unarchiverepository"
                | "createbranchprotectionrule"
                | "updatebranchprotectionrule"
                | "createrepositoryruleset"
                | "updaterepositoryruleset"
                | "updateteamsrepository" => {
                    self.destructive(&format!("{what}: it administers a repository (access, protection, archiving)"))
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
            let force = u.get("force").is_some_and(may_be_true);
            let change = if deletes { RefChange::Delete } else { RefChange::Update { force: Some(force) } };
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
