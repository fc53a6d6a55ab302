//! The init steps that clone a session's workspace in Kubernetes. They run in the sandbox, behind the same
//! NetworkPolicy as the runner, and reach the remote through the gateway's egress proxy: the proxy decides the
//! connection (by the Agent's allowlist and brokered hosts) and, for a brokered host, injects the credential
//! itself. The steps hold nothing but the session token, which authenticates them to the proxy.

use paddock_api::AgentSpec;
use paddock_api::agent::WorkspaceSource;
use serde_json::{Value, json};

use crate::pod::{
    AGENT_DIR, ClusterConfig, EGRESS_CA_KEY, HOME_DIR, ObjectNames, TOKEN_KEY, container_security, escape,
};
use crate::spec::{SandboxSpec, WORKSPACE_DIR};
use crate::workspace::{clone_is_brokered, remote};

/// `git clone` (and `git checkout REF` for a commit), through the egress proxy. `gateway_ca`: where the
/// gateway's CA is mounted, for an `https://` gateway (git then speaks TLS to its proxy and trusts that CA
/// for it).
pub(crate) fn clone_steps(
    session: &str,
    ws: &WorkspaceSource,
    agent: &AgentSpec,
    spec: &SandboxSpec,
    c: &ClusterConfig,
    resources: &Value,
    gateway_ca: Option<String>,
) -> Vec<Value> {
    let names = ObjectNames::of(session);
    let mut env = vec![
        json!({"name": "HOME", "value": HOME_DIR}),
        json!({"name": "GIT_TERMINAL_PROMPT", "value": "0"}),
        // Defined before the proxy URL: Kubernetes expands `$(PADDOCK_TOKEN)` from earlier entries only.
        json!({"name": "PADDOCK_TOKEN", "valueFrom": {"secretKeyRef": {"name": names.secret, "key": TOKEN_KEY}}}),
    ];
    if let Some(gw) = remote(&c.gateway_url) {
        // git (libcurl) reads the lowercase names; `http_proxy` covers a plain-http remote.
        let proxy = format!("{}://paddock:$(PADDOCK_TOKEN)@{}", gw.scheme, gw.authority());
        env.push(json!({"name": "https_proxy", "value": proxy}));
        env.push(json!({"name": "http_proxy", "value": proxy}));
    }
    let mut mounts = vec![
        json!({"name": "workspace", "mountPath": WORKSPACE_DIR}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
        json!({"name": "home", "mountPath": HOME_DIR}),
    ];
    let brokered = clone_is_brokered(ws, &agent.credentials);
    if brokered || gateway_ca.is_some() {
        mounts.push(json!({"name": "agent", "mountPath": AGENT_DIR, "readOnly": true}));
    }
    if brokered {
        // The gateway terminates TLS for a brokered host with a certificate of Paddock's egress CA; only that
        // CA is trusted for it. Other remotes are end-to-end tunnels, checked against the image's roots.
        env.push(json!({"name": "GIT_SSL_CAINFO", "value": format!("{AGENT_DIR}/{EGRESS_CA_KEY}")}));
    }
    if let Some(ca) = gateway_ca {
        // The proxy itself is `https://`: libcurl checks the gateway's certificate against this CA alone
        // (git >= 2.29 reads the variable; `http.proxySSLCAInfo`).
        env.push(json!({"name": "GIT_PROXY_SSL_CAINFO", "value": ca}));
    }
    let image = c.clone_image.clone().unwrap_or_else(|| c.image.clone());
    let step = |name: &str, args: Vec<String>| {
        json!({
            "name": name,
            "image": image,
            "imagePullPolicy": c.image_pull_policy,
            "command": ["git"],
            "args": args,
            "env": env,
            "resources": resources,
            "securityContext": container_security(spec.run_as_uid),
            "volumeMounts": mounts,
            "terminationMessagePolicy": "FallbackToLogsOnError"
        })
    };
    let clone = |extra: &[&str]| {
        let mut a = vec!["clone".to_owned()];
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a.extend(["--".to_owned(), escape(&ws.git), WORKSPACE_DIR.to_owned()]);
        a
    };
    match ws.git_ref.as_deref() {
        None => vec![step("clone-workspace", clone(&[]))],
        // A commit: fetch everything, then check the commit out.
        Some(r) if is_commit(r) => vec![
            step("clone-workspace", clone(&["--no-checkout"])),
            step(
                "checkout-workspace",
                ["-C", WORKSPACE_DIR, "checkout", "--detach", r, "--"].map(str::to_owned).to_vec(),
            ),
        ],
        // A branch or tag.
        Some(r) => vec![step("clone-workspace", clone(&["--branch", &escape(r)]))],
    }
}

fn is_commit(r: &str) -> bool {
    (7..=64).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_hexdigit())
}
