//! The Kubernetes rendering of a [`SandboxSpec`]: the runner Pod, its NetworkPolicy, the Agent as a
//! ConfigMap and the session token as a Secret. Pure functions from inputs to k8s-openapi objects; the
//! controller applies them (server-side apply, owned by the Session).
//!
//! Hardening (DESIGN §6, and the "restricted" Pod Security Standard): non-root with a fixed UID, read-only
//! root filesystem, every capability dropped, no privilege escalation, `RuntimeDefault` seccomp, no
//! service-account token, no service links, resources always set (requests = limits), a wall-clock
//! deadline, writable `emptyDir`s only where the runner must write (`/workspace`, `/tmp`, `$HOME`, the
//! Agent's `writablePaths`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use paddock_api::AgentSpec;
use paddock_api::agent::{SecretRef, WorkspaceSource};
use serde_json::{Value, json};

use crate::quantity::Egress;
use crate::spec::{SandboxSpec, WORKSPACE_DIR};

/// Where the Agent manifest is mounted in the runner.
pub const AGENT_DIR: &str = "/etc/paddock/agent";
/// The runner's `$HOME` (an `emptyDir`: harnesses keep their settings there).
pub const HOME_DIR: &str = "/home/runner";
/// Key of the token in the token Secret.
pub const TOKEN_KEY: &str = "token";
/// Extra seconds past the Agent's `timeoutSeconds` before Kubernetes stops the pod (cloning, start-up).
pub const DEADLINE_SLACK_SECONDS: i64 = 300;
/// Label on every object of a session: the Session's name (hashed when longer than a label value may be).
pub const SESSION_LABEL: &str = "paddock.dev/session";
pub const AGENT_LABEL: &str = "paddock.dev/agent";
/// Annotation on the NetworkPolicy listing the egress entries given by name, which a NetworkPolicy cannot
/// express exactly (see [`render_network_policy`]).
pub const EGRESS_HOSTS_ANNOTATION: &str = "paddock.dev/egress-hosts";
/// Ranges a by-name egress entry never opens: private, shared, loopback and link-local (the cloud metadata
/// endpoint) addresses.
pub const NON_PUBLIC_V4: &[&str] =
    &["10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"];
pub const NON_PUBLIC_V6: &[&str] = &["fc00::/7", "fe80::/10", "::1/128"];

/// One Session, as the renderers need it.
#[derive(Clone, Debug)]
pub struct SessionInfo<'a> {
    /// The Session's name and namespace; every object is named after it and lives beside it.
    pub name: &'a str,
    pub namespace: &'a str,
    /// The Session's UID, for the owner reference (deleting the Session deletes the objects).
    pub uid: &'a str,
    /// The session's id at the gateway.
    pub session_id: &'a str,
    pub agent_name: &'a str,
    pub prompt: &'a str,
    pub model_override: Option<&'a str>,
    /// The Session's workspace, else the Agent's.
    pub workspace: Option<&'a WorkspaceSource>,
}

/// What the cluster installation decides (the Helm values the controller runs with).
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    /// The runner image (it has `paddock` and the harnesses on `PATH`).
    pub image: String,
    /// `IfNotPresent`, `Always` or `Never`; the cluster default when `None`.
    pub image_pull_policy: Option<String>,
    /// The image of the init step that clones the workspace (needs `git`); the runner image when `None`.
    pub clone_image: Option<String>,
    /// The gateway as runners reach it, e.g. `http://paddock-gateway.paddock-system.svc:6767`.
    pub gateway_url: String,
    /// Where the gateway pods are and how to select them, for the NetworkPolicy.
    pub gateway_namespace: String,
    pub gateway_pod_labels: BTreeMap<String, String>,
    pub gateway_port: u16,
    /// The cluster DNS pods, for the NetworkPolicy.
    pub dns_namespace: String,
    pub dns_pod_labels: BTreeMap<String, String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            image: "ghcr.io/paddock-dev/runner:latest".into(),
            image_pull_policy: None,
            clone_image: None,
            gateway_url: "http://paddock-gateway.paddock-system.svc:6767".into(),
            gateway_namespace: "paddock-system".into(),
            gateway_pod_labels: BTreeMap::from([("app.kubernetes.io/component".into(), "gateway".into())]),
            gateway_port: 6767,
            dns_namespace: "kube-system".into(),
            dns_pod_labels: BTreeMap::from([("k8s-app".into(), "kube-dns".into())]),
        }
    }
}

/// The names of a session's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectNames {
    pub pod: String,
    pub config_map: String,
    pub secret: String,
    pub network_policy: String,
    /// The value of [`SESSION_LABEL`].
    pub label: String,
}

impl ObjectNames {
    pub fn of(session: &str) -> ObjectNames {
        ObjectNames {
            pod: short_name(session, "runner"),
            config_map: short_name(session, "agent"),
            secret: short_name(session, "token"),
            network_policy: short_name(session, "runner"),
            label: label_value(session),
        }
    }
}

/// `name-suffix` when that fits a DNS label (63), else a prefix, a hash of the whole name and the suffix, so
/// two long names never collide.
pub fn short_name(name: &str, suffix: &str) -> String {
    if name.len() + suffix.len() < 63 {
        return format!("{name}-{suffix}");
    }
    let keep = 63 - suffix.len() - 10;
    let prefix = name[..keep].trim_end_matches(['-', '.']);
    format!("{prefix}-{:08x}-{suffix}", fnv32(name))
}

/// A label value (≤ 63 characters) naming `name`: itself when short enough, else a prefix and a hash.
pub fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_owned();
    }
    let prefix = name[..54].trim_end_matches(['-', '.']);
    format!("{prefix}-{:08x}", fnv32(name))
}

fn fnv32(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

fn labels(s: &SessionInfo) -> Value {
    json!({
        "app.kubernetes.io/name": "paddock-runner",
        "app.kubernetes.io/managed-by": "paddock",
        "app.kubernetes.io/part-of": "paddock",
        SESSION_LABEL: label_value(s.name),
        AGENT_LABEL: label_value(s.agent_name),
    })
}

fn metadata(s: &SessionInfo, name: &str) -> Value {
    json!({
        "name": name,
        "namespace": s.namespace,
        "labels": labels(s),
        "ownerReferences": [{
            "apiVersion": paddock_api::API_VERSION, "kind": "Session", "name": s.name, "uid": s.uid,
            "controller": true, "blockOwnerDeletion": true
        }]
    })
}

fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("rendered objects match the Kubernetes types")
}

/// The container security context every container of the runner pod gets.
fn container_security(uid: u32) -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "runAsUser": uid,
        "runAsGroup": uid,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}
    })
}

/// Mount path → volume name for the Agent's extra writable paths.
fn writable_volumes(spec: &SandboxSpec) -> Vec<(String, String)> {
    spec.writable_paths.iter().enumerate().map(|(i, p)| (format!("writable-{i}"), p.clone())).collect()
}

fn runner_json(s: &SessionInfo, agent: &AgentSpec, spec: &SandboxSpec, c: &ClusterConfig) -> Value {
    let names = ObjectNames::of(s.name);
    let resources = json!({
        "requests": {"cpu": spec.cpu, "memory": spec.memory},
        "limits": {"cpu": spec.cpu, "memory": spec.memory}
    });
    let mut args = vec![
        "runner".to_owned(),
        "--agent".into(),
        format!("{AGENT_DIR}/agent.yaml"),
        "--prompt".into(),
        escape(s.prompt),
        "--workspace".into(),
        WORKSPACE_DIR.into(),
        "--gateway".into(),
        c.gateway_url.clone(),
        "--session".into(),
        s.session_id.into(),
    ];
    if let Some(m) = s.model_override {
        args.extend(["--model".to_owned(), escape(m)]);
    }
    let mut env = vec![
        json!({"name": "PADDOCK_TOKEN", "valueFrom": {"secretKeyRef": {"name": names.secret, "key": TOKEN_KEY}}}),
        json!({"name": "HOME", "value": HOME_DIR}),
        json!({"name": "TMPDIR", "value": "/tmp"}),
    ];
    env.extend(spec.env.iter().map(|(k, v)| json!({"name": k, "value": escape(v)})));
    env.extend(agent.secret_refs.iter().map(secret_env));
    let mut mounts = vec![
        json!({"name": "workspace", "mountPath": WORKSPACE_DIR}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
        json!({"name": "home", "mountPath": HOME_DIR}),
        json!({"name": "agent", "mountPath": AGENT_DIR, "readOnly": true}),
    ];
    mounts.extend(writable_volumes(spec).into_iter().map(|(n, p)| json!({"name": n, "mountPath": p})));
    let runner = json!({
        "name": "runner",
        "image": c.image,
        "imagePullPolicy": c.image_pull_policy,
        "command": ["paddock"],
        "args": args,
        "workingDir": WORKSPACE_DIR,
        "env": env,
        "resources": resources,
        "securityContext": container_security(spec.run_as_uid),
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError"
    });
    let mut volumes = vec![
        json!({"name": "workspace", "emptyDir": {}}),
        json!({"name": "tmp", "emptyDir": {}}),
        json!({"name": "home", "emptyDir": {}}),
        json!({"name": "agent", "configMap": {"name": names.config_map, "defaultMode": 0o444}}),
    ];
    volumes.extend(writable_volumes(spec).into_iter().map(|(n, _)| json!({"name": n, "emptyDir": {}})));
    let mut init = Vec::new();
    if let Some(ws) = s.workspace {
        let (containers, extra_volumes) = clone_steps(ws, spec, c, &resources);
        init = containers;
        volumes.extend(extra_volumes);
    }
    let mut pod_spec = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "activeDeadlineSeconds": i64::from(agent.limits.timeout_seconds) + DEADLINE_SLACK_SECONDS,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": spec.run_as_uid,
            "runAsGroup": spec.run_as_uid,
            "fsGroup": spec.run_as_uid,
            "seccompProfile": {"type": "RuntimeDefault"}
        },
        "containers": [runner],
        "volumes": volumes
    });
    if !init.is_empty() {
        pod_spec["initContainers"] = Value::Array(init);
    }
    if let Some(rc) = &spec.runtime_class_name {
        pod_spec["runtimeClassName"] = json!(rc);
    }
    let mut meta = metadata(s, &names.pod);
    meta["annotations"] = json!({"paddock.dev/session-id": s.session_id});
    strip_nulls(json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}))
}

fn secret_env(r: &SecretRef) -> Value {
    json!({"name": r.name, "valueFrom": {"secretKeyRef": {"name": r.secret_name, "key": r.key}}})
}

/// The init steps that clone the workspace: `git clone` (and `git checkout REF` when a ref is given), with the
/// credentials of `secretRef` mounted into these steps only.
fn clone_steps(
    ws: &WorkspaceSource,
    spec: &SandboxSpec,
    c: &ClusterConfig,
    resources: &Value,
) -> (Vec<Value>, Vec<Value>) {
    let mut env =
        vec![json!({"name": "HOME", "value": HOME_DIR}), json!({"name": "GIT_TERMINAL_PROMPT", "value": "0"})];
    let mut mounts = vec![
        json!({"name": "workspace", "mountPath": WORKSPACE_DIR}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
        json!({"name": "home", "mountPath": HOME_DIR}),
    ];
    let mut volumes = Vec::new();
    if let Some(secret) = &ws.secret_ref {
        if is_ssh(&ws.git) {
            mounts.push(json!({"name": "git-credentials", "mountPath": "/etc/paddock/git", "readOnly": true}));
            volumes
                .push(json!({"name": "git-credentials", "secret": {"secretName": secret.name, "defaultMode": 0o400}}));
            env.push(json!({"name": "GIT_SSH_COMMAND", "value": "ssh -i /etc/paddock/git/identity -o IdentitiesOnly=yes -o UserKnownHostsFile=/etc/paddock/git/known_hosts -o StrictHostKeyChecking=yes"}));
        } else {
            env.extend([
                json!({"name": "GIT_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret.name, "key": "token"}}}),
                json!({"name": "GIT_CONFIG_COUNT", "value": "1"}),
                json!({"name": "GIT_CONFIG_KEY_0", "value": "http.extraHeader"}),
                json!({"name": "GIT_CONFIG_VALUE_0", "value": "Authorization: Bearer $(GIT_TOKEN)"}),
            ]);
        }
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
    let steps = match ws.git_ref.as_deref() {
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
    };
    (steps, volumes)
}

fn is_commit(r: &str) -> bool {
    (7..=64).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Kubernetes expands `$(VAR)` in `command`, `args` and `env` values; `$$` is a literal `$`. User text must
/// reach the runner as written.
pub fn escape(s: &str) -> String {
    s.replace('$', "$$")
}

fn is_ssh(url: &str) -> bool {
    url.starts_with("ssh://") || (!url.contains("://") && url.contains('@') && url.contains(':'))
}

/// The git host a workspace is cloned from, as an egress entry (the clone runs inside the sandbox, behind
/// the same NetworkPolicy); `None` for `file://`.
pub fn workspace_egress(ws: &WorkspaceSource) -> Option<Egress> {
    let url = ws.git.as_str();
    let (rest, default_port) = if let Some(r) = url.strip_prefix("https://") {
        (r, 443)
    } else if let Some(r) = url.strip_prefix("http://") {
        (r, 80)
    } else if let Some(r) = url.strip_prefix("ssh://") {
        (r, 22)
    } else if let Some(r) = url.strip_prefix("git://") {
        (r, 9418)
    } else if !url.contains("://") && url.contains('@') {
        // scp-like `git@host:owner/repo.git`
        let host = url.split_once('@')?.1.split_once(':')?.0;
        return Some(Egress { host: host.to_owned(), port: 22 });
    } else {
        return None;
    };
    let authority = rest.split('/').next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (h, p.parse().ok()?),
        _ => (hostport, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| Egress { host: host.to_owned(), port })
}

/// The runner Pod of a session.
pub fn render_runner_pod(s: &SessionInfo, agent: &AgentSpec, spec: &SandboxSpec, c: &ClusterConfig) -> Pod {
    typed(runner_json(s, agent, spec, c))
}

fn network_policy_json(s: &SessionInfo, spec: &SandboxSpec, c: &ClusterConfig) -> Value {
    let names = ObjectNames::of(s.name);
    let ns_selector = |ns: &str| json!({"matchLabels": {"kubernetes.io/metadata.name": ns}});
    let mut egress = vec![
        json!({
            "to": [{"namespaceSelector": ns_selector(&c.gateway_namespace), "podSelector": {"matchLabels": c.gateway_pod_labels}}],
            "ports": [{"protocol": "TCP", "port": c.gateway_port}]
        }),
        json!({
            "to": [{"namespaceSelector": ns_selector(&c.dns_namespace), "podSelector": {"matchLabels": c.dns_pod_labels}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
        }),
    ];
    let mut entries: Vec<Egress> = spec.egress.clone();
    if let Some(e) = s.workspace.and_then(workspace_egress)
        && !entries.contains(&e)
    {
        entries.push(e);
    }
    let mut by_name: Vec<&Egress> = Vec::new();
    for e in &entries {
        match e.cidr() {
            Some(cidr) => egress
                .push(json!({"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"protocol": "TCP", "port": e.port}]})),
            None => by_name.push(e),
        }
    }
    let mut meta = metadata(s, &names.network_policy);
    if !by_name.is_empty() {
        // A NetworkPolicy selects addresses, not names: a name opens its port to public addresses (never the
        // cluster's private ranges or the metadata endpoint). The names are kept in an annotation for an
        // FQDN-aware policy (Cilium, Calico Enterprise) or an egress proxy to narrow it.
        let mut ports: Vec<u16> = by_name.iter().map(|e| e.port).collect();
        ports.sort_unstable();
        ports.dedup();
        egress.push(json!({
            "to": [
                {"ipBlock": {"cidr": "0.0.0.0/0", "except": NON_PUBLIC_V4}},
                {"ipBlock": {"cidr": "::/0", "except": NON_PUBLIC_V6}}
            ],
            "ports": ports.iter().map(|p| json!({"protocol": "TCP", "port": p})).collect::<Vec<_>>()
        }));
        let hosts: Vec<String> = by_name.iter().map(|e| format!("{}:{}", e.host, e.port)).collect();
        meta["annotations"] = json!({EGRESS_HOSTS_ANNOTATION: hosts.join(",")});
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta,
        "spec": {
            "podSelector": {"matchLabels": {SESSION_LABEL: names.label}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": egress
        }
    })
}

/// The NetworkPolicy of a session's runner: no ingress; egress only to the gateway, the cluster DNS, the
/// Agent's allowlist and the workspace's git host. Entries given as addresses or CIDRs are exact; entries given
/// by name open their port to public addresses only, and are listed in the [`EGRESS_HOSTS_ANNOTATION`].
pub fn render_network_policy(s: &SessionInfo, spec: &SandboxSpec, c: &ClusterConfig) -> NetworkPolicy {
    typed(network_policy_json(s, spec, c))
}

fn config_map_json(s: &SessionInfo, agent_yaml: &str) -> Value {
    let names = ObjectNames::of(s.name);
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": metadata(s, &names.config_map),
        "immutable": true,
        "data": {"agent.yaml": agent_yaml}
    })
}

/// The Agent manifest the runner reads: the Agent's spec (and its sub-agents', which it may start), without
/// `policies` and `rules` — the gateway enforces those; a runner needs neither. Sub-agents missing from
/// `sub_agents` are dropped from the Agent's `subAgents`.
pub fn agent_manifest(namespace: &str, name: &str, agent: &AgentSpec, sub_agents: &[(&str, &AgentSpec)]) -> String {
    let doc = |name: &str, spec: &AgentSpec, subs: Vec<String>| {
        let mut spec = spec.clone();
        spec.policies.clear();
        spec.rules.clear();
        spec.sub_agents = subs;
        let v = json!({
            "apiVersion": paddock_api::API_VERSION, "kind": "Agent",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec
        });
        serde_yaml_ng::to_string(&v).expect("yaml")
    };
    let known: Vec<String> =
        agent.sub_agents.iter().filter(|n| sub_agents.iter().any(|(s, _)| s == n)).cloned().collect();
    let mut out = doc(name, agent, known);
    for (n, spec) in sub_agents {
        out.push_str("---\n");
        out.push_str(&doc(n, spec, Vec::new()));
    }
    out
}

/// The Agent as a ConfigMap, mounted read-only into the runner at [`AGENT_DIR`]. `agent_yaml` comes from
/// [`agent_manifest`].
pub fn render_agent_configmap(s: &SessionInfo, agent_yaml: &str) -> ConfigMap {
    typed(config_map_json(s, agent_yaml))
}

fn secret_json(s: &SessionInfo, token: &str) -> Value {
    use base64_encode as b64;
    let names = ObjectNames::of(s.name);
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": metadata(s, &names.secret),
        "type": "Opaque",
        "immutable": true,
        "data": {TOKEN_KEY: b64(token.as_bytes())}
    })
}

/// The session token (issued by the gateway) as a Secret, read by the runner as `PADDOCK_TOKEN`.
pub fn render_token_secret(s: &SessionInfo, token: &str) -> Secret {
    typed(secret_json(s, token))
}

fn base64_encode(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Drops `null` members (unset optional fields) so the rendered JSON equals its typed round trip.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(json: &str) -> AgentSpec {
        serde_json::from_str(json).unwrap()
    }

    fn session<'a>(ws: Option<&'a WorkspaceSource>) -> SessionInfo<'a> {
        SessionInfo {
            name: "fix-bug",
            namespace: "team-a",
            uid: "uid-1",
            session_id: "uid-1",
            agent_name: "coder",
            prompt: "fix it",
            model_override: None,
            workspace: ws,
        }
    }

    #[test]
    fn nothing_is_lost_in_the_typed_round_trip() {
        // k8s-openapi types ignore unknown fields: a misspelt field would vanish silently. It must not.
        let ws = WorkspaceSource {
            git: "git@github.com:acme/shop.git".into(),
            git_ref: Some("main".into()),
            secret_ref: Some(paddock_api::agent::LocalObjectReference { name: "git".into() }),
        };
        let a = agent(
            r#"{"harness": "custom", "model": "m", "sandbox": {"runtimeClassName": "gvisor", "egress": ["api.github.com:443", "10.0.0.0/8:5432"], "writablePaths": ["/var/cache"]},
               "env": [{"name": "CI", "value": "1"}], "secretRefs": [{"name": "GH_TOKEN", "secretName": "gh", "key": "token"}]}"#,
        );
        let spec = SandboxSpec::for_agent(&a, None).unwrap();
        let s = session(Some(&ws));
        let c = ClusterConfig::default();
        for (json, typed) in [
            (runner_json(&s, &a, &spec, &c), serde_json::to_value(render_runner_pod(&s, &a, &spec, &c)).unwrap()),
            (network_policy_json(&s, &spec, &c), serde_json::to_value(render_network_policy(&s, &spec, &c)).unwrap()),
            (config_map_json(&s, "x"), serde_json::to_value(render_agent_configmap(&s, "x")).unwrap()),
            (secret_json(&s, "t"), serde_json::to_value(render_token_secret(&s, "t")).unwrap()),
        ] {
            assert_eq!(json, typed);
        }
    }

    #[test]
    fn names_fit_kubernetes_limits() {
        assert_eq!(short_name("fix-bug", "runner"), "fix-bug-runner");
        let long = "a".repeat(200);
        let n = short_name(&long, "runner");
        assert!(n.len() <= 63 && n.ends_with("-runner"), "{n}");
        assert_ne!(n, short_name(&format!("{long}b"), "runner"));
        assert!(label_value(&long).len() <= 63);
        assert_eq!(label_value("short"), "short");
    }

    #[test]
    fn workspace_hosts() {
        let ws = |u: &str| WorkspaceSource { git: u.into(), git_ref: None, secret_ref: None };
        let e = |h: &str, p| Some(Egress { host: h.into(), port: p });
        assert_eq!(workspace_egress(&ws("https://github.com/acme/shop.git")), e("github.com", 443));
        assert_eq!(workspace_egress(&ws("https://user@git.acme.dev:8443/x.git")), e("git.acme.dev", 8443));
        assert_eq!(workspace_egress(&ws("git@github.com:acme/shop.git")), e("github.com", 22));
        assert_eq!(workspace_egress(&ws("ssh://git@10.1.2.3:2222/x.git")), e("10.1.2.3", 2222));
        assert_eq!(workspace_egress(&ws("file:///srv/x.git")), None);
    }

    #[test]
    fn base64() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn the_agent_manifest_drops_governance_and_unknown_sub_agents() {
        let a = agent(
            r#"{"harness": "custom", "model": "m", "policies": ["p"], "subAgents": ["helper", "gone"], "rules": [{"name": "r", "use": "cost_budget"}]}"#,
        );
        let h = agent(r#"{"harness": "custom", "model": "m2", "subAgents": ["x"]}"#);
        let y = agent_manifest("team-a", "coder", &a, &[("helper", &h)]);
        assert!(!y.contains("policies") && !y.contains("rules"), "{y}");
        assert!(y.contains("subAgents:\n  - helper\n") && !y.contains("gone") && !y.contains("- x"), "{y}");
        assert_eq!(y.matches("kind: Agent").count(), 2);
    }
}
