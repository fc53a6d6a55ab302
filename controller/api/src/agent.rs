//! `Agent`: what runs — the harness, the model, its instructions, tools, sandbox and policies.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::PolicyRule;
use crate::status::Condition;

/// The desired Agent. Usually applied from an agents repository by a GitSource.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "paddock.dev",
    version = "v1alpha1",
    kind = "Agent",
    doc = "An Agent: a harness, a model, its instructions, tools, sandbox and policies. Sessions run Agents.",
    namespaced,
    status = "AgentStatus",
    shortname = "agent",
    shortname = "ag",
    category = "paddock",
    printcolumn = r#"{"name":"Harness","type":"string","jsonPath":".spec.harness"}"#,
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".spec.model"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","priority":1,"jsonPath":".status.sourceRevision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// The program that drives the model: `claude-code` (the Claude Code CLI), `codex` (the Codex CLI),
    /// `gemini-cli` (Google's Gemini CLI), `pi` (the Pi coding agent), `opencode` (OpenCode), `command` (any
    /// program, named in `command`: an agent written with the Claude Agent SDK or the OpenAI Agents SDK, or
    /// one of your own) or `custom` (Paddock's own agent loop with the builtin tools named in `tools`).
    pub harness: Harness,
    /// For `harness: command`: the program and its arguments, run in the workspace with the gateway's base
    /// URLs, the session token as every provider's key and the egress proxy in its environment. The prompt
    /// is on its stdin; its stdout's last line (or `{"type": "result", "result": …}`) is the answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The model id, e.g. `claude-sonnet-4-5` or `gpt-5`. It must be in Paddock's model catalog (which holds
    /// its prices) unless `allowUnlistedModel` is true.
    pub model: String,
    /// Allow a model that is not in the model catalog. Its cost is unknown, so cost policies treat it
    /// explicitly (they ask before its first use) instead of counting it as free.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_unlisted_model: bool,
    /// System instructions given to the model at the start of every session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Tool names the agent may use. For `custom`, the builtin tools to enable (`shell`, `read_file`,
    /// `write_file`, `edit_file`, `list_dir`, `glob`, `grep`); for the CLIs, their tool names
    /// (e.g. `Bash`, `Edit`). Empty means the harness default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Other Agents (by name, same namespace) this agent may start as sub-agents. A sub-agent runs as a
    /// child session under its own policies; its cost counts towards the parent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_agents: Vec<String>,
    /// How this agent's sub-agents run as a team: how many at once, how deep, with what share of the budget.
    /// The gateway enforces it when a sub-agent starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<TeamSpec>,
    /// A second model the agent may consult through a `consult_advisor` tool (`custom` harness): a cheap
    /// worker model with a frontier advisor. Each consultation is a model request of the session, decided
    /// and metered like the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisor: Option<AdvisorSpec>,
    /// Where and how the agent's sessions are isolated.
    #[serde(default)]
    pub sandbox: AgentSandbox,
    /// A git repository cloned into the workspace before the session starts. A Session may override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceSource>,
    /// Names of Policy objects (same namespace) that govern this agent, in addition to Policies that select
    /// it by label or name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Inline policy rules for this agent only, evaluated at the agent level (after session rules, before
    /// namespace Policies). Same shape as `Policy.spec.rules`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<PolicyRule>,
    /// Plain environment variables for the harness. Never put credentials here: use `secretRefs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Refused: a credential in the sandbox's environment reaches whatever the agent runs. Broker it with
    /// `credentials` instead (the gateway injects it on the way out; the sandbox never holds it). Kept in
    /// the schema so that old manifests get that message rather than an unknown-field error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_refs: Vec<SecretRef>,
    /// Credentials the gateway's egress proxy injects into requests to one host (the credential broker).
    /// The sandbox never holds them: not in its environment, files or git config. A brokered host is
    /// allowed as egress by this entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<BrokeredCredential>,
    /// MCP servers the agent may use. A remote server (`url`) is reached through the gateway, which offers
    /// it to the harness at `/mcp/{name}`, decides every `tools/call` and its result, and adds the server's
    /// `credential` to its own requests (the sandbox never holds it). A stdio server (`command`)
    /// runs inside the sandbox; its tool calls are judged by the response gate and the harness's hook, its
    /// network goes through the egress proxy. Tools are named `mcp__{name}__{tool}` in every harness.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<McpServer>,
    /// Limits on a single session of this agent.
    #[serde(default)]
    pub limits: AgentLimits,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The harness that runs an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Harness {
    ClaudeCode,
    Codex,
    GeminiCli,
    Pi,
    Opencode,
    Command,
    Custom,
}

impl Harness {
    pub const ALL: [Harness; 7] = [
        Harness::ClaudeCode,
        Harness::Codex,
        Harness::GeminiCli,
        Harness::Pi,
        Harness::Opencode,
        Harness::Command,
        Harness::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Harness::ClaudeCode => "claude-code",
            Harness::Codex => "codex",
            Harness::GeminiCli => "gemini-cli",
            Harness::Pi => "pi",
            Harness::Opencode => "opencode",
            Harness::Command => "command",
            Harness::Custom => "custom",
        }
    }
}

/// Isolation settings for the runner. Defaults are the hardened ones; these fields only widen or tune them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSandbox {
    /// Kubernetes RuntimeClass for the runner pod (e.g. `gvisor` or `kata`). An `enforce_sandbox` policy may
    /// require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
    /// CPU and memory for the runner. Always set: defaults apply when omitted.
    #[serde(default)]
    pub resources: SandboxResources,
    /// Extra absolute paths the agent may write besides its workspace (e.g. `/tmp/cache`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writable_paths: Vec<String>,
    /// Extra absolute paths the agent may read (read-only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_only_paths: Vec<String>,
    /// Network destinations the runner may reach besides the gateway, as `host:port`
    /// (`api.github.com:443`, `*.npmjs.org:443`, `10.0.0.0/8:5432`, `[2001:db8::1]:443`). Empty means the
    /// gateway only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<String>,
}

/// Compute resources of the runner; requests equal limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxResources {
    /// CPU as a Kubernetes quantity, e.g. `500m` or `2`.
    #[serde(default = "default_cpu")]
    pub cpu: String,
    /// Memory as a Kubernetes quantity, e.g. `512Mi` or `2Gi`.
    #[serde(default = "default_memory")]
    pub memory: String,
}

fn default_cpu() -> String {
    "1".into()
}
fn default_memory() -> String {
    "2Gi".into()
}

impl Default for SandboxResources {
    fn default() -> Self {
        Self { cpu: default_cpu(), memory: default_memory() }
    }
}

/// A git repository to clone into the workspace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSource {
    /// Clone URL: `https://…`, `ssh://…`, `git@host:owner/repo.git`, or `file://…`.
    pub git: String,
    /// Branch, tag or commit to check out. Defaults to the remote's default branch.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// Secret holding the credentials for the clone (`token`, or `identity` + `known_hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
}

/// A reference to an object by name in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the referenced object.
    pub name: String,
}

/// A plain environment variable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EnvVar {
    /// Variable name, e.g. `NODE_ENV`.
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// A credential from a Kubernetes Secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The name the tool knows the credential by, e.g. `GITHUB_TOKEN`.
    pub name: String,
    /// The Secret (same namespace) that holds it.
    pub secret_name: String,
    /// The key inside the Secret.
    pub key: String,
}

/// An MCP server an agent may use: remote (`url`) or stdio (`command`), exactly one of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpServer {
    /// The server's name in tool names (`mcp__{name}__{tool}`): lowercase letters, digits and `-`, 1 to 32
    /// characters, unique within the Agent.
    pub name: String,
    /// A remote server's endpoint (MCP streamable HTTP), `https://` (or `http://` for a server on the
    /// gateway's own network). The gateway connects to it; the harness never does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A remote server's transport: `streamable-http` (the default) or `sse` (the older HTTP+SSE transport:
    /// `url` is its event stream, which names where messages are posted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<McpTransport>,
    /// A remote server's credential: a Secret the gateway adds to its own requests to the server. Not an
    /// egress credential: the sandbox cannot reach the server through the egress proxy with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<McpCredential>,
    /// A stdio server: the program and its arguments, run inside the sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// A stdio server's plain environment. Never credentials: a stdio server reaches the network only
    /// through the egress proxy, whose broker injects them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// A remote MCP server's credential, sent the way a brokered one is (see [`BrokeredCredential`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpCredential {
    /// The Secret (same namespace; locally, `paddock up`'s secrets) that holds it.
    pub secret_name: String,
    /// The key inside the Secret.
    pub key: String,
    /// `bearer` (`Authorization: Bearer …`), `basic` or `header`.
    #[serde(default)]
    pub scheme: CredentialScheme,
    /// For `basic`: the user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// For `header`: the header's name, e.g. `X-Api-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

impl McpCredential {
    /// The same credential as a brokered one for `host` (`host:port`), to check and send it alike.
    pub fn brokered(&self, host: String) -> BrokeredCredential {
        BrokeredCredential {
            host,
            secret_name: self.secret_name.clone(),
            key: self.key.clone(),
            scheme: self.scheme,
            username: self.username.clone(),
            header: self.header.clone(),
        }
    }
}

/// How the gateway talks to a remote MCP server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum McpTransport {
    #[default]
    StreamableHttp,
    Sse,
}

/// The longest MCP server name.
pub const MCP_SERVER_NAME_MAX: usize = 32;

impl McpServer {
    /// Why this entry is invalid: the field (relative to the entry; empty for the entry as a whole) and the
    /// message; `None` when it is valid.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let n = &self.name;
        if n.is_empty() || n.len() > MCP_SERVER_NAME_MAX {
            return Some(("name", format!("`{n}` must be 1 to {MCP_SERVER_NAME_MAX} characters")));
        }
        if !n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Some(("name", format!("`{n}` may hold only lowercase letters, digits and `-`")));
        }
        match (&self.url, self.command.is_empty()) {
            (Some(_), false) => {
                Some(("", "give `url` (a remote server) or `command` (a stdio server), not both".into()))
            }
            (None, true) => Some(("", "give `url` (a remote server) or `command` (a stdio server)".into())),
            (Some(u), true) => {
                if !self.env.is_empty() {
                    return Some(("env", "only a stdio server (`command`) has an environment".into()));
                }
                mcp_url_problem(u).map(|e| ("url", e))
            }
            (None, false) if self.transport.is_some() => {
                Some(("transport", "only a remote server (`url`) has a transport; a stdio server speaks stdio".into()))
            }
            (None, false) if self.credential.is_some() => Some((
                "credential",
                "only a remote server (`url`) has a credential; a stdio server reaches the network through the \
                 egress proxy, whose `credentials` broker it"
                    .into(),
            )),
            (None, false) => self.command[0].trim().is_empty().then(|| ("command", "the program is empty".into())),
        }
    }

    /// Every problem of a list of servers: each entry's, and names given twice (index, field, message).
    pub fn problems(servers: &[McpServer]) -> Vec<(usize, &'static str, String)> {
        let mut out: Vec<_> =
            servers.iter().enumerate().filter_map(|(i, s)| s.problem().map(|(f, m)| (i, f, m))).collect();
        for (i, s) in servers.iter().enumerate() {
            if servers[..i].iter().any(|o| o.name == s.name) {
                out.push((i, "name", format!("`{}` names two servers", s.name)));
            }
        }
        out
    }

    /// The remote server's credential as a brokered one for its host and port.
    pub fn brokered_credential(&self) -> Option<BrokeredCredential> {
        let (host, port) = self.host_port()?;
        Some(self.credential.as_ref()?.brokered(format!("{host}:{port}")))
    }

    /// The remote server's host and port, from `url`.
    pub fn host_port(&self) -> Option<(String, u16)> {
        let u = self.url.as_deref()?;
        let (scheme, rest) = u.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        let default = if scheme == "https" { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, default),
        };
        Some((host.to_ascii_lowercase(), port))
    }
}

fn mcp_url_problem(u: &str) -> Option<String> {
    let Some((scheme, rest)) = u.split_once("://") else {
        return Some(format!("`{u}` is not a URL (https://host/path)"));
    };
    if scheme != "https" && scheme != "http" {
        return Some(format!("`{u}`: only https:// and http:// are MCP endpoints"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Some(format!("`{u}`: needs a host, and no user or password (give a credential as `credential`)"));
    }
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("`{}`: white space or control characters", u.escape_debug()));
    }
    if authority.starts_with('[') {
        return Some(format!("`{u}`: give the server's host name, not an IPv6 address"));
    }
    if let Some((_, port)) = authority.rsplit_once(':')
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Some(format!("`{u}`: `{port}` is not a port"));
    }
    None
}

/// A credential the gateway injects into every request to `host` (e.g. a GitHub token for `github.com` and
/// `api.github.com`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokeredCredential {
    /// `host` or `host:port` (port 443 when omitted); an exact name, no wildcards.
    pub host: String,
    /// The Secret (same namespace; locally, `paddock up`'s secrets) that holds it.
    pub secret_name: String,
    /// The key inside the Secret.
    pub key: String,
    /// How it is sent: `bearer` (`Authorization: Bearer …`), `basic` (`Authorization: Basic` of
    /// `username:secret`, what git over HTTPS uses) or `header` (the secret as the value of `header`).
    #[serde(default)]
    pub scheme: CredentialScheme,
    /// For `basic`: the user name (GitHub: `x-access-token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// For `header`: the header's name, e.g. `X-Api-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

impl BrokeredCredential {
    /// `host` and port (443 when not given). `None` when `host` is no `host` or `host:port`.
    pub fn host_port(&self) -> Option<(String, u16)> {
        let (host, port) = match self.host.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, p.parse::<u16>().ok().filter(|p| *p != 0)?),
            _ => (self.host.as_str(), 443),
        };
        let ok = !host.is_empty()
            && host.len() <= 253
            && host
                .split('.')
                .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        ok.then(|| (host.to_ascii_lowercase(), port))
    }

    /// The header that carries `secret`: its name and value.
    pub fn header(&self, secret: &str) -> (String, String) {
        use base64::Engine as _;
        match self.scheme {
            CredentialScheme::Bearer => ("authorization".into(), format!("Bearer {secret}")),
            CredentialScheme::Basic => {
                let user = self.username.as_deref().unwrap_or("x-access-token");
                let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
                ("authorization".into(), format!("Basic {b64}"))
            }
            CredentialScheme::Header => {
                (self.header.as_deref().unwrap_or("authorization").to_ascii_lowercase(), secret.to_owned())
            }
        }
    }
}

/// How a brokered credential is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CredentialScheme {
    #[default]
    Bearer,
    Basic,
    Header,
}

/// A team of sub-agents (see [`AgentSpec::team`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamSpec {
    /// Most sub-agent sessions of one session alive at once, counted by the gateway across the session's
    /// turns (a sub-agent counts from its start until its session ends). The custom harness starts the
    /// sub-agents one turn asks for in parallel, up to this many.
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
    /// How deep sub-agents may nest below a session of this agent: 1, its sub-agents start none.
    #[serde(default = "default_max_depth")]
    pub max_depth: u32,
    /// Each sub-agent's budget as a share (0 < share ≤ 1) of what its parent has left when it starts. A
    /// parent without a budget or a hard limit has nothing to share; give `childBudgetUsd` then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_share: Option<f64>,
    /// Each sub-agent's budget in US dollars (the smaller one applies when `budgetShare` gives one too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_budget_usd: Option<f64>,
}

fn default_max_parallel() -> u32 {
    4
}
fn default_max_depth() -> u32 {
    2
}

impl Default for TeamSpec {
    fn default() -> Self {
        Self {
            max_parallel: default_max_parallel(),
            max_depth: default_max_depth(),
            budget_share: None,
            child_budget_usd: None,
        }
    }
}

/// The advisor of a worker/advisor pairing (see [`AgentSpec::advisor`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdvisorSpec {
    /// The advisor's model id, from the model catalog (or any with `allowUnlistedModel`).
    pub model: String,
    /// The advisor's system instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Most consultations in one session.
    #[serde(default = "default_max_consultations")]
    pub max_consultations: u32,
}

fn default_max_consultations() -> u32 {
    5
}

/// Per-session limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentLimits {
    /// Most model turns in one session.
    #[serde(default = "default_max_turns")]
    pub max_turns: u32,
    /// Wall-clock limit for one session, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
}

fn default_max_turns() -> u32 {
    50
}
fn default_timeout() -> u32 {
    3600
}

impl Default for AgentLimits {
    fn default() -> Self {
        Self { max_turns: default_max_turns(), timeout_seconds: default_timeout() }
    }
}

/// What the Agent controller observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// `Ready` always; `Reconciling` and `Stalled` while true.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The git revision (`branch@sha1:…`) of the GitSource that applied this Agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_revision: Option<String>,
    /// Names of the Policies that govern this Agent, in evaluation order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Labels as `key: value`.
pub type Labels = BTreeMap<String, String>;

/// The builtin tools of the `custom` harness.
pub const CUSTOM_TOOLS: &[&str] = &["shell", "read_file", "write_file", "edit_file", "list_dir", "glob", "grep"];
