//! Checks across objects and inside fields that a schema cannot express: unique names, references,
//! models known to the catalog, egress entries, quantities, durations, URLs, builtin policy names.

use std::collections::HashMap;

use paddock_api::agent::{AgentSpec, CUSTOM_TOOLS};
use paddock_api::catalog::ModelCatalog;
use paddock_api::crds::Kind;
use paddock_api::policy::{PolicyRule, SelectorOperator};
use paddock_api::{Harness, PolicySpec};

use crate::diagnostics::{Diagnostic, suggestion};
use crate::validate::{LoadedObject, Object, Report};
use crate::yaml::{PathSeg, display_path};

/// A field path from string keys and indices, e.g. `p(&["spec", "egress"]).idx(0)`.
#[derive(Clone)]
struct Path(Vec<PathSeg>);

fn p(keys: &[&str]) -> Path {
    Path(keys.iter().map(|k| PathSeg::Key((*k).to_owned())).collect())
}

impl Path {
    fn idx(mut self, i: usize) -> Path {
        self.0.push(PathSeg::Index(i));
        self
    }
    fn key(mut self, k: &str) -> Path {
        self.0.push(PathSeg::Key(k.to_owned()));
        self
    }
}

struct Ctx<'a> {
    out: Vec<Diagnostic>,
    objects: &'a [LoadedObject],
    /// (kind, namespace, name) of every object, so that reference checks stay linear.
    index: std::collections::HashSet<(Kind, &'a str, &'a str)>,
    default_ns: &'a str,
}

/// Objects without `metadata.namespace` go to the target namespace; `paddock validate` calls it `default`,
/// so that `coder` and `coder` in `namespace: default` are the same object. The GitSource reconciler passes
/// its own namespace instead (see [`crate::validate_files_in`]).
pub const DEFAULT_NAMESPACE: &str = "default";

fn ns<'a>(o: &'a LoadedObject, default_ns: &'a str) -> &'a str {
    o.namespace.as_deref().unwrap_or(default_ns)
}

impl Ctx<'_> {
    fn error(&mut self, obj: &LoadedObject, path: &Path, msg: impl Into<String>) {
        self.out.push(Diagnostic::error(&obj.file, obj.pos(&path.0), Some(display_path(&path.0)), msg));
    }
    fn warning(&mut self, obj: &LoadedObject, path: &Path, msg: impl Into<String>) {
        self.out.push(Diagnostic::warning(&obj.file, obj.pos(&path.0), Some(display_path(&path.0)), msg));
    }
    fn exists(&self, kind: Kind, namespace: &Option<String>, name: &str) -> bool {
        self.index.contains(&(kind, namespace.as_deref().unwrap_or(self.default_ns), name))
    }
    fn names(&self, kind: Kind) -> Vec<&str> {
        self.objects.iter().filter(|o| o.kind == kind).map(|o| o.name.as_str()).collect()
    }
}

pub(crate) fn check(report: &mut Report, default_ns: &str) {
    let index = report.objects.iter().map(|o| (o.kind, ns(o, default_ns), o.name.as_str())).collect();
    let mut ctx = Ctx { out: Vec::new(), objects: &report.objects, index, default_ns };
    let mut first_seen: HashMap<(Kind, &str, &str), &LoadedObject> = HashMap::new();
    for obj in ctx.objects {
        let key = (obj.kind, ns(obj, default_ns), obj.name.as_str());
        if let Some(first) = first_seen.get(&key) {
            let at = first.pos(&p(&["metadata", "name"]).0);
            let msg = format!(
                "duplicate {} `{}`: first defined at {}:{}:{}",
                obj.kind.as_str(),
                obj.name,
                first.file,
                at.line,
                at.column
            );
            ctx.error(obj, &p(&["metadata", "name"]), msg);
        } else {
            first_seen.insert(key, obj);
        }
        match &obj.object {
            Object::Agent(a) => check_agent(&mut ctx, obj, &a.spec),
            Object::Policy(pol) => check_policy(&mut ctx, obj, &pol.spec),
            Object::Session(s) => {
                let s = &s.spec;
                if !ctx.exists(Kind::Agent, &obj.namespace, &s.agent_ref.name) {
                    ctx.warning(
                        obj,
                        &p(&["spec", "agentRef", "name"]),
                        format!(
                            "Agent `{}` is not defined in these files; it must exist in the cluster",
                            s.agent_ref.name
                        ),
                    );
                }
                if s.prompt.trim().is_empty() {
                    ctx.error(obj, &p(&["spec", "prompt"]), "prompt is empty");
                }
                if s.owner.trim().is_empty() {
                    ctx.error(
                        obj,
                        &p(&["spec", "owner"]),
                        "owner is empty; it must name the user who creates the Session",
                    );
                }
                if let Some(m) = &s.model_override {
                    check_model(&mut ctx, obj, &p(&["spec", "modelOverride"]), m, false);
                }
                if let Some(b) = s.budget_usd
                    && (b.is_nan() || b <= 0.0)
                {
                    ctx.error(obj, &p(&["spec", "budgetUsd"]), format!("budget must be more than 0 USD, got {b}"));
                }
                if let Some(w) = &s.workspace {
                    check_workspace(&mut ctx, obj, w, None);
                }
            }
            Object::Approval(a) => {
                if a.spec.request_id.trim().is_empty() {
                    ctx.error(obj, &p(&["spec", "requestId"]), "requestId is empty");
                }
            }
            Object::GitSource(g) => {
                let g = &g.spec;
                if let Err(e) = check_git_url(&g.url) {
                    ctx.error(obj, &p(&["spec", "url"]), e);
                }
                match parse_duration_secs(&g.interval) {
                    Err(e) => ctx.error(obj, &p(&["spec", "interval"]), e),
                    Ok(s) if s < 10.0 => ctx.error(
                        obj,
                        &p(&["spec", "interval"]),
                        format!("interval `{}` is shorter than the minimum of 10s", g.interval),
                    ),
                    Ok(s) if !s.is_finite() || s > 30.0 * 86400.0 => ctx.error(
                        obj,
                        &p(&["spec", "interval"]),
                        format!("interval `{}` is longer than the maximum of 720h", g.interval),
                    ),
                    Ok(_) => {}
                }
                let r = &g.git_ref;
                if [&r.branch, &r.tag, &r.commit].iter().filter(|x| x.is_some()).count() > 1 {
                    ctx.error(obj, &p(&["spec", "ref"]), "set at most one of branch, tag and commit");
                }
                if let Some(c) = &r.commit
                    && !(c.len() >= 7 && c.len() <= 40 && c.chars().all(|ch| ch.is_ascii_hexdigit()))
                {
                    ctx.error(
                        obj,
                        &p(&["spec", "ref", "commit"]),
                        format!("`{c}` is not a commit SHA (7 to 40 hex digits)"),
                    );
                }
                if g.path.split('/').any(|c| c == "..") || g.path.starts_with('/') {
                    ctx.error(
                        obj,
                        &p(&["spec", "path"]),
                        format!("`{}` must be a relative path inside the repository", g.path),
                    );
                }
            }
        }
    }
    let out = ctx.out;
    report.diagnostics.extend(out);
}

fn check_agent(ctx: &mut Ctx, obj: &LoadedObject, spec: &AgentSpec) {
    check_model(ctx, obj, &p(&["spec", "model"]), &spec.model, spec.allow_unlisted_model);
    for (i, name) in spec.policies.iter().enumerate() {
        if !ctx.exists(Kind::Policy, &obj.namespace, name) {
            let hint = suggestion(name, ctx.names(Kind::Policy));
            ctx.error(obj, &p(&["spec", "policies"]).idx(i), format!("Policy `{name}` is not defined{hint}"));
        }
    }
    for (i, name) in spec.sub_agents.iter().enumerate() {
        let path = p(&["spec", "subAgents"]).idx(i);
        if name == &obj.name {
            ctx.error(obj, &path, "an agent cannot be its own sub-agent");
        } else if !ctx.exists(Kind::Agent, &obj.namespace, name) {
            let hint = suggestion(name, ctx.names(Kind::Agent));
            ctx.error(obj, &path, format!("Agent `{name}` is not defined{hint}"));
        }
    }
    if let Some(team) = &spec.team {
        let at = |f: &str| p(&["spec", "team", f]);
        if spec.sub_agents.is_empty() {
            ctx.error(obj, &p(&["spec", "team"]), "a team needs `subAgents` to run");
        }
        if !(1..=64).contains(&team.max_parallel) {
            ctx.error(obj, &at("maxParallel"), format!("must be 1 to 64, got {}", team.max_parallel));
        }
        if !(1..=8).contains(&team.max_depth) {
            ctx.error(obj, &at("maxDepth"), format!("must be 1 to 8, got {}", team.max_depth));
        }
        if let Some(share) = team.budget_share
            && !(share > 0.0 && share <= 1.0)
        {
            ctx.error(obj, &at("budgetShare"), format!("must be above 0 and at most 1, got {share}"));
        }
        if let Some(usd) = team.child_budget_usd
            && !(usd > 0.0 && usd.is_finite())
        {
            ctx.error(obj, &at("childBudgetUsd"), format!("must be a positive amount, got {usd}"));
        }
    }
    if let Some(advisor) = &spec.advisor {
        if spec.harness != Harness::Custom {
            ctx.error(
                obj,
                &p(&["spec", "advisor"]),
                format!(
                    "the `consult_advisor` tool is the custom harness's; this agent's harness is `{}`",
                    spec.harness.as_str()
                ),
            );
        }
        check_model(ctx, obj, &p(&["spec", "advisor", "model"]), &advisor.model, spec.allow_unlisted_model);
        if advisor.max_consultations == 0 {
            ctx.error(obj, &p(&["spec", "advisor", "maxConsultations"]), "must be at least 1");
        }
    }
    match (spec.harness, spec.command.first()) {
        (Harness::Command, None) => ctx.error(
            obj,
            &p(&["spec", "command"]),
            "`harness: command` needs the program to run, e.g. `[node, agent.mjs]`",
        ),
        (Harness::Command, Some(program)) if program.trim().is_empty() => {
            ctx.error(obj, &p(&["spec", "command"]).idx(0), "the program is empty")
        }
        (Harness::Command, _) => {}
        (other, Some(_)) => ctx.error(
            obj,
            &p(&["spec", "command"]),
            format!("only `harness: command` runs a command; this agent's harness is `{}`", other.as_str()),
        ),
        (_, None) => {}
    }
    if spec.harness == Harness::Custom {
        for (i, tool) in spec.tools.iter().enumerate() {
            if !CUSTOM_TOOLS.contains(&tool.as_str()) {
                let hint = suggestion(tool, CUSTOM_TOOLS.iter().copied());
                ctx.error(
                    obj,
                    &p(&["spec", "tools"]).idx(i),
                    format!("`{tool}` is not a builtin tool of the custom harness ({}){hint}", CUSTOM_TOOLS.join(", ")),
                );
            }
        }
    }
    check_rules(ctx, obj, &p(&["spec", "rules"]), &spec.rules);
    let sb = &spec.sandbox;
    for (i, e) in sb.egress.iter().enumerate() {
        if let Err(msg) = paddock_sandbox::parse_egress(e) {
            ctx.error(obj, &p(&["spec", "sandbox", "egress"]).idx(i), msg);
        }
    }
    for (field, paths) in [("writablePaths", &sb.writable_paths), ("readOnlyPaths", &sb.read_only_paths)] {
        for (i, path) in paths.iter().enumerate() {
            let at = p(&["spec", "sandbox", field]).idx(i);
            if !path.starts_with('/') || path.split('/').any(|c| c == ".." || c == ".") {
                ctx.error(obj, &at, format!("`{path}` must be an absolute path without `.` or `..`"));
            } else if field == "writablePaths" && path.trim_end_matches('/').is_empty() {
                ctx.error(obj, &at, "the root filesystem cannot be writable");
            }
        }
    }
    if let Err(e) = paddock_sandbox::cpu_millis(&sb.resources.cpu) {
        ctx.error(obj, &p(&["spec", "sandbox", "resources", "cpu"]), e);
    }
    if let Err(e) = paddock_sandbox::memory_bytes(&sb.resources.memory) {
        ctx.error(obj, &p(&["spec", "sandbox", "resources", "memory"]), e);
    }
    for problem in paddock_sandbox::credentials::credential_problems(&spec.credentials) {
        ctx.error(obj, &p(&["spec", "credentials"]).idx(problem.index).key(problem.field), problem.message);
    }
    if let Some(w) = &spec.workspace {
        check_workspace(ctx, obj, w, Some(spec));
    }
    for (i, field, message) in paddock_sandbox::credentials::mcp_server_problems(&spec.mcp_servers) {
        let at = field.split('.').filter(|k| !k.is_empty()).fold(p(&["spec", "mcpServers"]).idx(i), |at, k| at.key(k));
        ctx.error(obj, &at, message);
    }
    for (i, env) in spec.env.iter().enumerate() {
        let at = p(&["spec", "env"]).idx(i).key("name");
        if !is_env_name(&env.name) {
            ctx.error(obj, &at, format!("`{}` is not a valid environment variable name", env.name));
        } else if let Some(why) = forbidden_env(&env.name) {
            ctx.error(obj, &at, format!("`{}` {why}", env.name));
        } else if looks_like_credential(&env.name) && !env.value.is_empty() {
            ctx.warning(
                obj,
                &at,
                format!(
                    "`{}` looks like a credential in plain text; broker it with spec.credentials (the gateway injects \
                     it, the sandbox never holds it)",
                    env.name
                ),
            );
        }
    }
    for (i, s) in spec.secret_refs.iter().enumerate() {
        ctx.error(obj, &p(&["spec", "secretRefs"]).idx(i), paddock_sandbox::spec::secret_ref_refusal(&s.name));
    }
    if spec.limits.max_turns == 0 {
        ctx.error(obj, &p(&["spec", "limits", "maxTurns"]), "must be at least 1");
    }
    if spec.limits.timeout_seconds == 0 {
        ctx.error(obj, &p(&["spec", "limits", "timeoutSeconds"]), "must be at least 1");
    }
}

/// A workspace (an Agent's, with the Agent to check the clone's host against; or a Session's): a git URL, a
/// remote the clone can reach through the gateway (no SSH), and a host the gateway will let it reach.
fn check_workspace(
    ctx: &mut Ctx,
    obj: &LoadedObject,
    w: &paddock_api::agent::WorkspaceSource,
    agent: Option<&AgentSpec>,
) {
    let at = |field: &str| p(&["spec", "workspace"]).key(field);
    if let Err(e) = check_git_url(&w.git) {
        ctx.error(obj, &at("git"), e);
        return;
    }
    if let Err(problem) = paddock_sandbox::workspace::check_workspace(w) {
        ctx.error(obj, &at(problem.field), problem.message);
        return;
    }
    if let Some(agent) = agent {
        let egress: Vec<_> =
            agent.sandbox.egress.iter().filter_map(|e| paddock_sandbox::parse_egress(e).ok()).collect();
        if let Err(problem) = paddock_sandbox::workspace::check_clone_allowed(w, &agent.credentials, &egress) {
            ctx.error(obj, &at(problem.field), problem.message);
        }
    }
}

/// Why an environment name may not be given to a sandbox, if it may not.
fn forbidden_env(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    if paddock_sandbox::spec::PROVIDER_KEY_VARS.contains(&upper.as_str()) {
        Some("is a provider key: provider keys live in the gateway only and never enter a sandbox")
    } else if upper.starts_with("PADDOCK_") {
        Some("is reserved for Paddock")
    } else {
        None
    }
}

fn looks_like_credential(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "API_KEY", "APIKEY", "PRIVATE_KEY", "CREDENTIAL"].iter().any(|w| n.contains(w))
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_policy(ctx: &mut Ctx, obj: &LoadedObject, spec: &PolicySpec) {
    if spec.rules.is_empty() {
        ctx.warning(obj, &p(&["spec", "rules"]), "the Policy has no rules and decides nothing");
    }
    check_rules(ctx, obj, &p(&["spec", "rules"]), &spec.rules);
    for (i, name) in spec.agents.iter().enumerate() {
        if !ctx.exists(Kind::Agent, &obj.namespace, name) {
            let hint = suggestion(name, ctx.names(Kind::Agent));
            ctx.warning(
                obj,
                &p(&["spec", "agents"]).idx(i),
                format!("Agent `{name}` is not defined in these files{hint}"),
            );
        }
    }
    if let Some(sel) = &spec.selector {
        for (i, req) in sel.match_expressions.iter().enumerate() {
            let at = p(&["spec", "selector", "matchExpressions"]).idx(i).key("values");
            match req.operator {
                SelectorOperator::In | SelectorOperator::NotIn if req.values.is_empty() => {
                    ctx.error(obj, &at, "`In` and `NotIn` need at least one value")
                }
                SelectorOperator::Exists | SelectorOperator::DoesNotExist if !req.values.is_empty() => {
                    ctx.error(obj, &at, "`Exists` and `DoesNotExist` take no values")
                }
                _ => {}
            }
        }
    }
}

fn check_rules(ctx: &mut Ctx, obj: &LoadedObject, at: &Path, rules: &[PolicyRule]) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, rule) in rules.iter().enumerate() {
        let here = at.clone().idx(i);
        if let Some(first) = seen.insert(rule.name.as_str(), i) {
            ctx.error(
                obj,
                &here.clone().key("name"),
                format!("rule name `{}` is already used by rule {first}", rule.name),
            );
        }
        if paddock_policy::is_builtin(&rule.uses) {
            if let Err(errors) = paddock_policy::engine::compile_rule(i, rule) {
                for e in errors {
                    let mut path = here.clone();
                    for seg in &e.path {
                        path = match seg.parse::<usize>() {
                            Ok(n)
                                if !path.0.is_empty()
                                    && e.path.first().map(String::as_str) == Some("with")
                                    && seg != "with"
                                    && is_index(&path, obj) =>
                            {
                                path.idx(n)
                            }
                            _ => path.key(seg),
                        };
                    }
                    let pos = obj.root.locate(&path.0, true);
                    ctx.out.push(Diagnostic::error(
                        &obj.file,
                        pos,
                        Some(display_path(&path.0)),
                        format!("invalid parameters for `{}`: {}", rule.uses, e.message),
                    ));
                }
            }
        } else {
            let hint = suggestion(&rule.uses, paddock_policy::builtin_names());
            let msg = if hint.is_empty() {
                format!("`{}` is not a builtin policy; see docs/policies.md for the list", rule.uses)
            } else {
                format!("`{}` is not a builtin policy{hint}", rule.uses)
            };
            ctx.error(obj, &here.key("use"), msg);
        }
    }
}

/// Whether the value at `path` is a sequence, so that a numeric step indexes it rather than naming a key.
fn is_index(path: &Path, obj: &LoadedObject) -> bool {
    let mut node = &obj.root;
    for seg in &path.0 {
        let next = match (seg, &node.value) {
            (PathSeg::Key(k), crate::yaml::Value::Map(entries)) => {
                entries.iter().find(|e| &e.key == k).map(|e| &e.value)
            }
            (PathSeg::Index(i), crate::yaml::Value::Seq(items)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    matches!(node.value, crate::yaml::Value::Seq(_))
}

fn check_model(ctx: &mut Ctx, obj: &LoadedObject, at: &Path, model: &str, allow_unlisted: bool) {
    let catalog = ModelCatalog::builtin();
    if model.trim().is_empty() {
        ctx.error(obj, at, "model is empty");
    } else if catalog.lookup(model).is_none() && !allow_unlisted {
        let hint = suggestion(model, catalog.ids());
        ctx.error(
            obj,
            at,
            format!("model `{model}` is not in the model catalog{hint} (to use it without a known price, set `allowUnlistedModel: true`)"),
        );
    }
}

/// A Go duration (`90s`, `5m`, `1h30m`, `1.5h`) in seconds.
pub fn parse_duration_secs(s: &str) -> Result<f64, String> {
    let bad = || format!("`{s}` is not a duration; write e.g. `30s`, `5m` or `1h30m`");
    let mut rest = s;
    let mut total = 0.0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * factor;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Accepts `https://`, `http://`, `ssh://`, `file://` URLs and scp-like `git@host:owner/repo.git`.
pub fn check_git_url(url: &str) -> Result<(), String> {
    // A host or path starting with `-` would be read by git or ssh as an option (`-oProxyCommand=…`).
    let dashed = url.split(['/', ':', '@']).any(|part| part.starts_with('-'));
    let ok = !dashed
        && if let Some((scheme, rest)) = url.split_once("://") {
            matches!(scheme, "https" | "http" | "ssh" | "file")
                && !rest.is_empty()
                && !rest.contains(char::is_whitespace)
        } else {
            url.split_once(':').is_some_and(|(user_host, path)| {
                user_host.contains('@') && !path.is_empty() && !url.contains(char::is_whitespace)
            })
        };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{url}` is not a git URL (https://, ssh://, file:// or git@host:owner/repo.git, no part starting with `-`)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("1h30m").unwrap(), 5400.0);
        assert_eq!(parse_duration_secs("1.5s").unwrap(), 1.5);
        assert!(parse_duration_secs("5 minutes").is_err());
        assert!(parse_duration_secs("").is_err());
        assert!(parse_duration_secs("10").is_err());
    }

    #[test]
    fn git_urls() {
        for ok in [
            "https://github.com/acme/agents.git",
            "ssh://git@github.com/acme/a.git",
            "git@github.com:acme/a.git",
            "file:///tmp/repo",
        ] {
            assert!(check_git_url(ok).is_ok(), "{ok}");
        }
        for bad in ["github.com/acme/a", "ftp://x/y", "https://", "git@github.com"] {
            assert!(check_git_url(bad).is_err(), "{bad}");
        }
    }
}
