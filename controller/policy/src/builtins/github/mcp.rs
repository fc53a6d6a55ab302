//! GitHub MCP tools, whatever their server is called: a tool is GitHub's when its server part is one of
//! the rule's `mcp_tool_prefixes`, or when its name is one of the GitHub MCP server's tools and its
//! arguments have GitHub's shape (`owner`/`repo`). Each tool is judged by what it writes: a merge writes
//! the pull request's base branch, a fork creates a repository in its destination, `update_ref` may force.

use serde_json::Value;

use super::{Access, Github};
use crate::builtins::Outcome;
use crate::tools::{ToolKind, ToolUse};

/// Tool names of the GitHub MCP server (github/github-mcp-server, every release; and the reference server
/// it replaced), plus the git-data tools other GitHub servers offer (`update_ref`, …).
const GITHUB_MCP_TOOLS: &[&str] = &[
    "actions_get",
    "actions_list",
    "actions_run_trigger",
    "add_comment_to_pending_review",
    "add_discussion_comment",
    "add_issue_comment",
    "add_issue_comment_reaction",
    "add_issue_reaction",
    "add_issue_to_project",
    "add_project_item",
    "add_pull_request_review_comment",
    "add_pull_request_review_comment_reaction",
    "add_pull_request_review_comment_to_pending_review",
    "add_reply_to_pull_request_comment",
    "add_repository_collaborator",
    "add_sub_issue",
    "assign_copilot_to_issue",
    "assign_copilot_to_issue_with_intent",
    "auth_login",
    "cancel_workflow_run",
    "check_org_membership",
    "commit_read",
    "compare_commits",
    "compare_file_contents",
    "create_and_submit_pull_request_review",
    "create_branch",
    "create_discussion",
    "create_draft_issue",
    "create_enterprise_repository_ruleset",
    "create_gist",
    "create_issue",
    "create_iteration_field",
    "create_milestone",
    "create_or_update_enterprise_custom_properties",
    "create_or_update_file",
    "create_or_update_organization_custom_properties",
    "create_or_update_repository_custom_properties",
    "create_org_invitation",
    "create_organization_repository_ruleset",
    "create_pending_pull_request_review",
    "create_project",
    "create_project_issue",
    "create_project_status_update",
    "create_pull_request",
    "create_pull_request_review",
    "create_release",
    "create_repository",
    "create_repository_from_template",
    "create_repository_ruleset",
    "create_repository_security_advisory",
    "create_sub_issue",
    "delete_branch",
    "delete_discussion_comment",
    "delete_file",
    "delete_milestone",
    "delete_org_package",
    "delete_org_package_version",
    "delete_pending_pull_request_review",
    "delete_project_item",
    "delete_release",
    "delete_repository",
    "delete_user_package",
    "delete_user_package_version",
    "delete_workflow_run_logs",
    "discussion_comment_write",
    "dismiss_notification",
    "download_workflow_run_artifact",
    "edit_issue_comment",
    "edit_milestone",
    "enable_toolset",
    "execute_graphql_query",
    "file_write",
    "find_duplicate",
    "fork_repository",
    "generate_release_notes",
    "get_code_quality_finding",
    "get_code_scanning_alert",
    "get_commit",
    "get_dependabot_alert",
    "get_discussion",
    "get_discussion_comments",
    "get_enterprise_custom_properties",
    "get_file_blame",
    "get_file_contents",
    "get_gist",
    "get_global_security_advisory",
    "get_issue",
    "get_issue_comments",
    "get_job_logs",
    "get_label",
    "get_latest_issue_comment_user",
    "get_latest_release",
    "get_me",
    "get_milestone",
    "get_my_teams",
    "get_notification_details",
    "get_org_members",
    "get_org_package",
    "get_organization_custom_properties",
    "get_organization_repository_ruleset",
    "get_package_version",
    "get_project",
    "get_project_field",
    "get_project_fields",
    "get_project_item",
    "get_project_items",
    "get_project_status_update",
    "get_pull_request",
    "get_pull_request_ci_failures",
    "get_pull_request_comments",
    "get_pull_request_diff",
    "get_pull_request_files",
    "get_pull_request_metadata_batch",
    "get_pull_request_review_comments",
    "get_pull_request_review_threads_batch",
    "get_pull_request_reviews",
    "get_pull_request_status",
    "get_release_by_tag",
    "get_repository",
    "get_repository_custom_properties",
    "get_repository_rule_suite",
    "get_repository_rules_for_branch",
    "get_repository_ruleset",
    "get_repository_tree",
    "get_secret_scanning_alert",
    "get_tag",
    "get_team_members",
    "get_teams",
    "get_toolset_tools",
    "get_user",
    "get_workflow_run",
    "get_workflow_run_logs",
    "get_workflow_run_usage",
    "issue_dependency_read",
    "issue_dependency_write",
    "issue_graph",
    "issue_label_write",
    "issue_read",
    "issue_write",
    "label_write",
    "list_assignees",
    "list_available_toolsets",
    "list_branches",
    "list_code_scanning_alerts",
    "list_commits",
    "list_dependabot_alerts",
    "list_discussion_categories",
    "list_discussions",
    "list_gists",
    "list_global_security_advisories",
    "list_issue_fields",
    "list_issue_types",
    "list_issues",
    "list_label",
    "list_milestones",
    "list_notifications",
    "list_org_dependabot_alerts",
    "list_org_issue_fields",
    "list_org_packages",
    "list_org_repository_security_advisories",
    "list_organization_repository_rulesets",
    "list_outside_collaborators",
    "list_package_versions",
    "list_project_fields",
    "list_project_items",
    "list_project_status_updates",
    "list_projects",
    "list_pull_requests",
    "list_releases",
    "list_repo_skills",
    "list_repository_collaborators",
    "list_repository_contributors",
    "list_repository_rule_suites",
    "list_repository_rulesets",
    "list_repository_security_advisories",
    "list_secret_scanning_alerts",
    "list_starred_repositories",
    "list_sub_issues",
    "list_tags",
    "list_user_packages",
    "list_workflow_jobs",
    "list_workflow_run_artifacts",
    "list_workflow_runs",
    "list_workflows",
    "manage_notification_subscription",
    "manage_repository_notification_subscription",
    "mark_all_notifications_read",
    "merge_pull_request",
    "milestone_write",
    "organization_repository_ruleset_read",
    "packages_read",
    "packages_write",
    "project_read",
    "project_write",
    "projects_get",
    "projects_list",
    "projects_write",
    "pull_request_comment_write",
    "pull_request_read",
    "pull_request_review_write",
    "push_files",
    "release_read",
    "remove_sub_issue",
    "reply_to_review_comment",
    "report_security_vulnerability",
    "repository_ruleset_read",
    "reprioritize_sub_issue",
    "request_copilot_review",
    "request_cve_for_repository_security_advisory",
    "request_pull_request_reviewers",
    "rerun_failed_jobs",
    "rerun_workflow_run",
    "resolve_review_thread",
    "run_workflow",
    "search_code",
    "search_commits",
    "search_github_docs",
    "search_issues",
    "search_milestones",
    "search_orgs",
    "search_pull_requests",
    "search_repositories",
    "search_users",
    "set_discussion_comment_answer",
    "set_issue_fields",
    "star_repository",
    "sub_issue_write",
    "submit_pending_pull_request_review",
    "tag_read",
    "ui_get",
    "unresolve_review_thread",
    "unstar_repository",
    "update_dependabot_alert",
    "update_discussion_comment",
    "update_gist",
    "update_issue",
    "update_issue_assignees",
    "update_issue_body",
    "update_issue_comment",
    "update_issue_labels",
    "update_issue_milestone",
    "update_issue_state",
    "update_issue_title",
    "update_issue_type",
    "update_project_item",
    "update_project_item_field",
    "update_pull_request",
    "update_pull_request_body",
    "update_pull_request_branch",
    "update_pull_request_draft_state",
    "update_pull_request_review",
    "update_pull_request_state",
    "update_pull_request_title",
    "update_release",
    "update_repository_security_advisory",
    "update_user_profile",
    "write_label",
    // The reference server (@modelcontextprotocol/server-github) and git-data tools of other servers.
    "create_ref",
    "delete_ref",
    "get_ref",
    "github_read_api_call",
    "github_write_api_call",
    "update_ref",
];

/// Tools that only read, beyond the `get_`/`list_`/`search_` names.
const READS: &[&str] = &[
    "check_org_membership",
    "compare_commits",
    "compare_file_contents",
    "download_workflow_run_artifact",
    "enable_toolset",
    "find_duplicate",
    "generate_release_notes",
    "github_read_api_call",
    "issue_graph",
];

/// First words of tools that write.
const WRITE_VERBS: &[&str] = &[
    "add",
    "assign",
    "cancel",
    "close",
    "create",
    "dismiss",
    "edit",
    "fork",
    "lock",
    "manage",
    "mark",
    "merge",
    "push",
    "reopen",
    "reply",
    "report",
    "reprioritize",
    "request",
    "rerun",
    "resolve",
    "run",
    "set",
    "star",
    "submit",
    "unlock",
    "unresolve",
    "unstar",
    "update",
    "write",
];

/// How a GitHub MCP tool accesses its repository; `None` when the tool is unknown.
fn access_of(op: &str, method: &str) -> Option<Access> {
    if op.starts_with("delete_") || op.starts_with("remove_") || method.contains("delete") || method.contains("remove")
    {
        return Some(Access::Destructive);
    }
    let first = op.split('_').next().unwrap_or("");
    if READS.contains(&op)
        || ["get", "list", "search", "read"].contains(&first)
        || ["_read", "_get", "_list"].iter().any(|s| op.ends_with(s))
    {
        return Some(Access::Read);
    }
    if WRITE_VERBS.contains(&first)
        || op.ends_with("_write")
        || op.ends_with("_trigger")
        || op == "github_write_api_call"
    {
        return Some(Access::Write);
    }
    None
}

impl Github {
    /// The tool's name after its server part (lowercase), if this rule judges it as a GitHub tool.
    fn mcp_op(&self, t: &ToolUse) -> Option<String> {
        let lower = t.name.to_ascii_lowercase();
        if let Some(op) = self.p.mcp_tool_prefixes.iter().find_map(|p| lower.strip_prefix(&p.to_ascii_lowercase())) {
            return Some(op.to_owned());
        }
        if t.kind != ToolKind::Mcp {
            return None;
        }
        let op = lower.rsplit("__").next()?;
        let shaped = ["owner", "repo"].iter().any(|k| t.args.get(*k).is_some_and(Value::is_string));
        (shaped && GITHUB_MCP_TOOLS.contains(&op)).then(|| op.to_owned())
    }

    pub(super) fn mcp(&self, t: &ToolUse) -> Option<Outcome> {
        let op = self.mcp_op(t)?;
        let a = &t.args;
        let s = |k: &str| a.get(k).and_then(Value::as_str).filter(|v| !v.trim().is_empty());
        let repo = match (s("owner"), s("repo")) {
            (Some(o), Some(r)) => Some(format!("{o}/{r}")),
            (None, Some(r)) if r.contains('/') => Some(r.to_owned()),
            _ => s("repository").or(s("full_name")).map(str::to_owned),
        };
        let repo = repo.as_deref();
        let what = format!("`{}`", t.name);
        let branch_of = |b: &str| b.trim_start_matches("refs/").trim_start_matches("heads/").to_owned();
        let no_branch = "it names no branch, so it writes the repository's default branch";
        match op.as_str() {
            "execute_graphql_query" => {
                let query = s("query").unwrap_or_default().to_ascii_lowercase();
                if !query.contains("mutation") {
                    return self.check_repo(Access::Read, None, None, &what);
                }
                if query.contains("delete") && !self.p.allow_destructive {
                    return Some(self.deny(format!("{what}: destructive GitHub operations are not allowed")));
                }
                return Some(if self.p.write_repos.is_empty() {
                    self.deny(format!("{what}: a GraphQL mutation may write, and no repository is writable"))
                } else {
                    Outcome::ask(format!("{what}: cannot tell which repository a GraphQL mutation writes"))
                });
            }
            // A fork or a new repository is a write to the repository it creates.
            "fork_repository" => {
                if let Some(o) = self.check_repo(Access::Read, repo, None, &what) {
                    return Some(o);
                }
                let name = repo.and_then(|r| r.rsplit('/').next()).unwrap_or_default();
                return self.created(s("organization").map(|o| format!("{o}/{name}")), &what);
            }
            "create_repository" => {
                let name = s("name").unwrap_or_default();
                return self.created(s("organization").map(|o| format!("{o}/{name}")), &what);
            }
            "create_repository_from_template" => {
                let template = s("template_owner").zip(s("template_repo")).map(|(o, r)| format!("{o}/{r}"));
                if let Some(o) = self.check_repo(Access::Read, template.as_deref(), None, &what) {
                    return Some(o);
                }
                return self.created(s("owner").zip(s("name")).map(|(o, n)| format!("{o}/{n}")), &what);
            }
            _ => {}
        }
        let method = s("method").unwrap_or_default().to_ascii_lowercase();
        let Some(access) = access_of(&op, &method) else {
            return Some(self.deny(format!("{what} is not a known GitHub tool")));
        };
        match op.as_str() {
            // GitHub's server takes no `base` (it merges into the pull request's own base and ignores unknown
            // arguments), so a `base` in the arguments proves nothing.
            "merge_pull_request" => self.check_unnamed_branch(
                access,
                repo,
                &what,
                "the merge writes the pull request's base branch, which the call does not name",
            ),
            "update_pull_request_branch" => self.check_unnamed_branch(
                access,
                repo,
                &what,
                "it writes the pull request's head branch, which the call does not name",
            ),
            "push_files"
            | "create_or_update_file"
            | "delete_file"
            | "file_write"
            | "create_branch"
            | "delete_branch" => match s("branch") {
                Some(b) => self.check_repo(access, repo, Some(&branch_of(b)), &what),
                None => self.check_unnamed_branch(access, repo, &what, no_branch),
            },
            "update_ref" | "create_ref" | "delete_ref" => {
                let force = a.get("force").is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
                if force && self.p.deny_force_push {
                    return Some(self.deny(format!("{what}: force pushes are not allowed")));
                }
                let r = s("ref").or(s("branch"));
                let tag = r.is_some_and(|r| r.trim_start_matches("refs/").starts_with("tags/"));
                if tag && self.p.deny_tag_push {
                    return Some(self.deny(format!("{what}: pushing tags is not allowed")));
                }
                match r {
                    Some(_) if tag => self.check_repo(access, repo, None, &what),
                    Some(r) => self.check_repo(access, repo, Some(&branch_of(r)), &what),
                    None => self.check_unnamed_branch(access, repo, &what, "cannot tell which ref it writes"),
                }
            }
            _ => self.check_repo(access, repo, s("branch").map(branch_of).as_deref(), &what),
        }
    }

    /// A repository the call creates: a write to it; in the token owner's account (no organization) it is
    /// not known which account that is.
    pub(super) fn created(&self, dest: Option<String>, what: &str) -> Option<Outcome> {
        match dest {
            Some(d) => self.check_repo(Access::Write, Some(&d), None, what),
            None if self.p.write_repos.is_empty() => {
                Some(self.deny(format!("{what}: it creates a repository, and no repository is writable")))
            }
            None => Some(Outcome::ask(format!(
                "{what}: it creates a repository in the account of the server's token, which the gate does not know"
            ))),
        }
    }
}
