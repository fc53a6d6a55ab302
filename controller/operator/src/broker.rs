//! What a session needs from the cluster before its runner can start behind the gateway: the brokered
//! credentials' values (read from Secrets of the Session's namespace and handed to the gateway, never to the
//! pod), the workspace's clone checked against what the gateway will allow, and the gateway's address (runner
//! pods have no DNS).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use paddock_api::AgentSpec;
use paddock_api::agent::{BrokeredCredential, WorkspaceSource};
use paddock_sandbox::credentials::is_header_value;
use paddock_sandbox::workspace::{
    WORKSPACE_TOKEN_KEY, WORKSPACE_USERNAME_KEY, check_clone_allowed, check_workspace, remote, workspace_credential,
};
use paddock_sandbox::{Egress, SandboxSpec};

use crate::Error;
use crate::gateway::SessionCredential;

/// Why a session cannot start (yet): a condition reason, its message, and whether waiting cannot help.
#[derive(Debug)]
pub struct Refused {
    pub reason: &'static str,
    pub message: String,
    pub stalled: bool,
}

fn refused<T>(reason: &'static str, message: String, stalled: bool) -> Result<Result<T, Refused>, Error> {
    Ok(Err(Refused { reason, message, stalled }))
}

/// Where a workspace comes from, for messages: the Session's `spec.workspace` or the Agent's.
#[derive(Clone, Copy)]
pub enum WorkspaceOwner<'a> {
    Session,
    Agent(&'a str),
}

impl WorkspaceOwner<'_> {
    fn field(&self, field: &str) -> String {
        match self {
            WorkspaceOwner::Session => format!("spec.workspace.{field}"),
            WorkspaceOwner::Agent(a) => format!("Agent `{a}`: spec.workspace.{field}"),
        }
    }
}

/// The workspace can be cloned through the gateway: an https (or http, file) remote, and a host the gateway
/// will let the clone reach (see [`check_clone_allowed`]). A Session's workspace never widens the Agent's
/// egress by itself: an unbrokered host the Agent does not list is refused here, and in any case by the gateway.
pub fn check_clone(
    ws: &WorkspaceSource,
    owner: WorkspaceOwner,
    agent: &AgentSpec,
    sandbox: &SandboxSpec,
) -> Result<(), Refused> {
    if let Err(p) = check_workspace(ws) {
        let message = format!("{}: {}", owner.field(p.field), p.message);
        return Err(Refused { reason: "InvalidWorkspace", message, stalled: true });
    }
    check_clone_allowed(ws, &agent.credentials, &sandbox.egress).map_err(|p| Refused {
        reason: if p.field == "git" { "WorkspaceNotAllowed" } else { "InvalidWorkspace" },
        message: format!("{}: {}", owner.field(p.field), p.message),
        stalled: true,
    })
}

/// The values of the Agent's brokered credentials and of the workspace's `secretRef`, as the gateway's broker
/// takes them. A missing Secret or key keeps the session waiting (it may be created next); a value that
/// cannot be a header value stalls it.
pub async fn session_credentials(
    secrets: &Api<Secret>,
    agent: &AgentSpec,
    workspace: Option<(&WorkspaceSource, WorkspaceOwner<'_>)>,
) -> Result<Result<Vec<SessionCredential>, Refused>, Error> {
    let mut out = Vec::new();
    for (i, c) in agent.credentials.iter().enumerate() {
        let at = format!("spec.credentials[{i}]");
        let value = match read_secret(secrets, &c.secret_name, &at).await? {
            Ok(secret) => match value(&secret, &c.secret_name, &c.key, &at) {
                Ok(v) => v,
                Err(r) => return Ok(Err(r)),
            },
            Err(r) => return Ok(Err(r)),
        };
        out.push(session_credential(c, &value));
    }
    for (i, m) in agent.mcp_servers.iter().enumerate() {
        let Some(c) = m.brokered_credential() else { continue };
        let at = format!("spec.mcpServers[{i}].credential");
        let value = match read_secret(secrets, &c.secret_name, &at).await? {
            Ok(secret) => match value(&secret, &c.secret_name, &c.key, &at) {
                Ok(v) => v,
                Err(r) => return Ok(Err(r)),
            },
            Err(r) => return Ok(Err(r)),
        };
        out.push(SessionCredential { mcp_server: Some(m.name.clone()), ..session_credential(&c, &value) });
    }
    if let Some((ws, owner)) = workspace
        && let Some(secret_ref) = &ws.secret_ref
    {
        let at = owner.field("secretRef");
        let (token, username) = match read_secret(secrets, &secret_ref.name, &at).await? {
            Ok(secret) => match value(&secret, &secret_ref.name, WORKSPACE_TOKEN_KEY, &at) {
                Ok(v) => (v, value_of(&secret, WORKSPACE_USERNAME_KEY)),
                Err(r) => return Ok(Err(r)),
            },
            Err(r) => return Ok(Err(r)),
        };
        if let Some(c) = workspace_credential(ws, username.as_deref()) {
            out.push(session_credential(&c, &token));
        }
    }
    Ok(Ok(out))
}

fn session_credential(c: &BrokeredCredential, secret: &str) -> SessionCredential {
    let (host, port) = c.host_port().expect("checked by SandboxSpec::for_agent and check_workspace");
    let (header, value) = c.header(secret);
    SessionCredential { host, port, header, value, mcp_server: None }
}

fn value_of(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok().map(|v| v.trim().to_owned())
}

async fn read_secret(secrets: &Api<Secret>, name: &str, at: &str) -> Result<Result<Secret, Refused>, Error> {
    match secrets.get_opt(name).await? {
        Some(s) => Ok(Ok(s)),
        None => refused(
            "CredentialSecretMissing",
            format!(
                "{at}: Secret `{name}` does not exist in the Session's namespace (the session starts when it appears)"
            ),
            false,
        ),
    }
}

/// One value of a Secret, as a header can carry it. Surrounding whitespace (the trailing newline of
/// `kubectl create secret --from-file`) is trimmed.
fn value(secret: &Secret, name: &str, key: &str, at: &str) -> Result<String, Refused> {
    let present = secret.data.as_ref().is_some_and(|d| d.contains_key(key));
    match value_of(secret, key) {
        Some(v) if is_header_value(&v) => Ok(v),
        _ if !present => Err(Refused {
            reason: "CredentialSecretMissing",
            message: format!("{at}: Secret `{name}` has no key `{key}` (the session starts when it does)"),
            stalled: false,
        }),
        _ => Err(Refused {
            reason: "InvalidCredential",
            message: format!(
                "{at}: the value under `{key}` of Secret `{name}` cannot be sent in a header (empty, not UTF-8, or a \
                 control character)"
            ),
            stalled: true,
        }),
    }
}

/// The gateway's address for a runner pod's `/etc/hosts`: the runner URL's host name resolved here (the
/// controller has DNS; the runner does not). `None` when the URL names an address.
pub async fn gateway_address(url: &str) -> Result<Option<IpAddr>, Refused> {
    let unresolvable = |why: String| Refused {
        reason: "GatewayUnresolvable",
        message: format!(
            "cannot resolve the gateway's host in `{url}` ({why}); runner pods have no DNS and get its address from \
             the controller"
        ),
        stalled: false,
    };
    let Some(r) = remote(url) else { return Err(unresolvable("not an http(s) URL".into())) };
    if r.host.parse::<IpAddr>().is_ok() {
        return Ok(None);
    }
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((r.host.as_str(), r.port))
        .await
        .map_err(|e| unresolvable(e.to_string()))?
        .map(|a| a.ip())
        .collect();
    // IPv4 first: a Service's primary ClusterIP on most clusters.
    let ip = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied();
    ip.map(Some).ok_or_else(|| unresolvable("no address".into()))
}

/// The Agent's egress entries reached directly (address and CIDR entries, past the gateway), for the
/// `Started` Event.
pub fn direct_egress(sandbox: &SandboxSpec) -> Vec<String> {
    sandbox.egress.iter().filter_map(|e: &Egress| e.cidr().map(|c| format!("{c}:{}", e.port))).collect()
}
