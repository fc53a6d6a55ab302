//! `github` on the wire: what the gateway sees leave the sandbox. A `git_push` event holds every ref update
//! of a push, with `fast_forward` worked out from the git objects; an `egress` event to a GitHub host holds
//! the request (method, path, JSON body, GraphQL operation) when the gateway terminates it, and nothing but
//! the destination for an end-to-end tunnel. Each is judged by the same parameters as the shell and MCP
//! layers: repositories, branches, tags, deletes, force.
//!
//! Hosts: each of `github_hosts` is a git host; its API is `api.<host>` for `github.com` and `*.ghe.com`,
//! and `<host>/api/v3` (REST) and `<host>/api/graphql` on GitHub Enterprise Server.

use paddock_api::Phase;

use super::{Access, Github};
use crate::builtins::Outcome;
use crate::egress::host_port;
use crate::event::{Event, RefUpdate};
use crate::http_path;
use crate::state::SessionState;

/// What a host is to this rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Site {
    /// `github.com` or an Enterprise host: git smart HTTP (and, on GitHub Enterprise Server, the API under
    /// `/api/`).
    Git { enterprise_api: bool },
    /// `api.github.com`, `api.<name>.ghe.com`.
    Api,
}

/// How a ref changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RefChange {
    Create,
    /// `force`: whether the update may lose commits; `None` when the request does not show it.
    Update {
        force: Option<bool>,
    },
    Delete,
}

/// How long a request path may be in a reason before it is cut.
const SHOWN_PATH: usize = 160;

impl Github {
    /// What `host` (and `port`) is to this rule, if it is one of `github_hosts` or its API.
    pub(super) fn site(&self, host: &str, port: Option<u16>) -> Option<Site> {
        let host = host.trim_end_matches('.');
        self.p.github_hosts.iter().find_map(|entry| {
            let entry = entry.trim().trim_end_matches('.');
            let (name, entry_port) = match entry.rsplit_once(':') {
                Some((n, p)) => (n, p.parse::<u16>().ok()),
                None => (entry, None),
            };
            if entry_port.is_some_and(|p| Some(p) != port) {
                return None;
            }
            let dotcom = name.eq_ignore_ascii_case("github.com") || name.to_ascii_lowercase().ends_with(".ghe.com");
            if host.eq_ignore_ascii_case(name) {
                return Some(Site::Git { enterprise_api: !dotcom });
            }
            // `uploads.` takes release assets under the same `/repos/…` paths.
            let api = ["api.", "uploads."].iter().any(|sub| {
                host.get(..sub.len()).is_some_and(|p| p.eq_ignore_ascii_case(sub))
                    && host[sub.len()..].eq_ignore_ascii_case(name)
            });
            (dotcom && api).then_some(Site::Api)
        })
    }

    /// A `git_push`: every update judged; the first refusal decides, else the first ask.
    pub(super) fn git_push(&self, event: &Event) -> Outcome {
        if let Some(host) = event.host.as_deref()
            && self.site(host, event.port).is_none()
        {
            return Outcome::ask(format!(
                "a push to `{host}`: not a GitHub host this rule knows (add it to `github_hosts` to judge it)"
            ));
        }
        let repo = event.repo.as_deref().map(|r| r.trim_matches('/').trim_end_matches(".git"));
        let shown = repo.unwrap_or("an unknown repository");
        let mut asks = Vec::new();
        for u in &event.updates {
            let what = format!("push of `{}` to `{shown}`", u.git_ref);
            if let Some(o) = self.ref_change(repo, &u.git_ref, change_of(u), &what) {
                if o.verdict == paddock_api::Verdict::Deny {
                    return o;
                }
                asks.push(o);
            }
        }
        asks.into_iter().next().unwrap_or_else(Outcome::allow)
    }

    /// One ref of a repository changed, by a push or an API call.
    pub(super) fn ref_change(
        &self,
        repo: Option<&str>,
        git_ref: &str,
        change: RefChange,
        what: &str,
    ) -> Option<Outcome> {
        let access = if change == RefChange::Delete { Access::Destructive } else { Access::Write };
        let branch = branch_of(git_ref);
        self.ref_rules(git_ref, change, what).or_else(|| self.check_repo(access, repo, branch, what))
    }

    /// What a ref change is refused for, whatever the repository: a delete, a force update, a tag, a branch
    /// outside `write_branches`, a ref that is no branch while only some branches are writable.
    pub(super) fn ref_rules(&self, git_ref: &str, change: RefChange, what: &str) -> Option<Outcome> {
        let tag = starts_with_ignore_case(git_ref, "refs/tags/");
        let branch = branch_of(git_ref);
        if change == RefChange::Delete && !self.p.allow_destructive {
            let kind = if tag {
                "tag"
            } else if branch.is_some() {
                "branch"
            } else {
                "ref"
            };
            return Some(self.deny(format!(
                "{what}: deleting a {kind} is destructive, and destructive GitHub operations are not allowed"
            )));
        }
        match change {
            RefChange::Update { force: Some(true) } if self.p.deny_force_push => {
                return Some(self.deny(format!(
                    "{what}: it is a force update (not a fast-forward), and force pushes are not allowed"
                )));
            }
            RefChange::Update { force: None } if self.p.deny_force_push => {
                return Some(self.opaque(format!("{what}: cannot see whether the update forces")));
            }
            _ => {}
        }
        if tag && self.p.deny_tag_push {
            return Some(self.deny(format!("{what}: pushing tags is not allowed")));
        }
        match branch {
            Some(b) => self.branch_allowed(b, what),
            None if !tag && !self.p.write_branches.is_empty() => Some(self.deny(format!(
                "{what}: `{git_ref}` is neither a branch nor a tag, and only branches {} are writable",
                self.p.write_branches.join(", ")
            ))),
            None => None,
        }
    }

    /// A refusal when `branch` is outside `write_branches`, whatever the repository.
    pub(super) fn branch_allowed(&self, branch: &str, what: &str) -> Option<Outcome> {
        (!self.p.write_branches.is_empty() && !super::any_glob(&self.p.write_branches, branch)).then(|| {
            self.deny(format!(
                "{what}: branch `{branch}` is not writable (allowed: {})",
                self.p.write_branches.join(", ")
            ))
        })
    }

    /// An `egress` event to a GitHub host: a tunnel's destination, or a request the gateway sees.
    pub(super) fn egress(&self, event: &Event, state: &SessionState) -> Outcome {
        let (Some(host), Some(site)) =
            (event.host.as_deref(), event.host.as_deref().and_then(|h| self.site(h, event.port)))
        else {
            return Outcome::allow();
        };
        let Some(method) = event.method.as_deref() else {
            return self.tunnel(host, event.port, state);
        };
        let raw = event.path.as_deref().unwrap_or("/");
        let segs = http_path::segments(raw);
        let what = format!("`{} {}`", method.to_ascii_uppercase(), shown_path(raw));
        let api = match site {
            Site::Api => Some(&segs[..]),
            Site::Git { enterprise_api: true } if segs.first().is_some_and(|s| s.eq_ignore_ascii_case("api")) => {
                match segs.get(1) {
                    Some(v) if v.eq_ignore_ascii_case("v3") => Some(&segs[2..]),
                    Some(g) if g.eq_ignore_ascii_case("graphql") => Some(&segs[1..]),
                    _ => Some(&segs[1..]),
                }
            }
            Site::Git { .. } => None,
        };
        let outcome = match api {
            Some(segs) if segs.len() == 1 && segs[0].eq_ignore_ascii_case("graphql") => {
                if event.operation.is_none() && http_path::query_param(raw, "query").is_some() {
                    // A document in the URL: GitHub takes GraphQL by POST, but the gateway reads only bodies.
                    Some(self.opaque(format!("{what}: a GraphQL document in the URL is not read")))
                } else {
                    self.graphql(method, event.operation.as_ref(), &what)
                }
            }
            Some(segs) => self.rest(method, raw, segs, event.body.as_ref(), &what),
            None => self.smart_http(raw, &segs, &what),
        };
        outcome.unwrap_or_else(Outcome::allow)
    }

    /// A connection whose requests the gateway does not see: fine for a brokered host (the gateway
    /// terminates it and judges each request), opaque otherwise.
    fn tunnel(&self, host: &str, port: Option<u16>, state: &SessionState) -> Outcome {
        let Some(port) = port else { return Outcome::allow() };
        if crate::egress::allows(state.sandbox.brokered.iter().map(String::as_str), host, port) {
            return Outcome::allow();
        }
        self.opaque(format!(
            "`{}` is reached through a tunnel whose requests the gateway cannot see; broker it (the Agent's \
             `spec.credentials`) so that each request is judged",
            host_port(host, port)
        ))
    }

    /// git smart HTTP on a git host: fetches read the repository, `git-receive-pack` writes it (its ref
    /// updates come again as a `git_push` event).
    fn smart_http(&self, raw: &str, segs: &[String], what: &str) -> Option<Outcome> {
        if segs.len() < 2 {
            return None;
        }
        let repo = format!("{}/{}", segs[0], segs[1].strip_suffix(".git").unwrap_or(&segs[1]));
        let rest: Vec<String> = segs[2..].iter().map(|s| s.to_ascii_lowercase()).collect();
        let service = http_path::query_param(raw, "service").map(|s| s.to_ascii_lowercase());
        let receive = match rest.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["git-receive-pack"] => true,
            ["info", "refs"] => service.as_deref() == Some("git-receive-pack"),
            _ => false,
        };
        let access = if receive { Access::Write } else { Access::Read };
        self.check_repo(access, Some(&repo), None, what)
    }
}

/// `main` of `refs/heads/main` (the prefix in any case).
fn branch_of(git_ref: &str) -> Option<&str> {
    const HEADS: &str = "refs/heads/";
    (git_ref.len() > HEADS.len() && starts_with_ignore_case(git_ref, HEADS)).then(|| &git_ref[HEADS.len()..])
}

/// `prefix` (ASCII) begins `s`, in any case; never slices inside a character.
pub(super) fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

fn change_of(u: &RefUpdate) -> RefChange {
    if u.is_delete() {
        RefChange::Delete
    } else if u.is_create() {
        RefChange::Create
    } else {
        RefChange::Update { force: Some(!u.fast_forward) }
    }
}

/// A request path for a reason: cut, control characters replaced.
pub(super) fn shown_path(raw: &str) -> String {
    let mut s: String = raw.chars().take(SHOWN_PATH).map(|c| if c.is_control() { '?' } else { c }).collect();
    if raw.chars().count() > SHOWN_PATH {
        s.push('…');
    }
    s
}

/// Phases of the github rule: tool calls, and the wire.
pub(in crate::builtins) const PHASES: &[Phase] = &[Phase::ToolCall, Phase::LlmResponse, Phase::Egress, Phase::GitPush];

/// The path below the API root of a request to a GitHub API on any host (`api.github.com`,
/// `api.<name>.ghe.com`, or GitHub Enterprise Server's `/api/v3/…` and `/api/graphql`), for rules that do
/// not know the installation's hosts.
pub(crate) fn api_segments(host: &str, raw_path: &str) -> Option<Vec<String>> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let segs = http_path::segments(raw_path);
    if host == "api.github.com" || (host.starts_with("api.") && host.ends_with(".ghe.com")) {
        return Some(segs);
    }
    let api = segs.first().is_some_and(|s| s.eq_ignore_ascii_case("api"));
    match segs.get(1) {
        Some(v) if api && v.eq_ignore_ascii_case("v3") => Some(segs[2..].to_vec()),
        Some(g) if api && g.eq_ignore_ascii_case("graphql") && segs.len() == 2 => Some(segs[1..].to_vec()),
        _ => None,
    }
}
