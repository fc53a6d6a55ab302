//! The Kubernetes rendering of a [`SandboxSpec`]: the runner Pod, its NetworkPolicy, the Agent as a
//! ConfigMap and the session token as a Secret. Pure functions from inputs to k8s-openapi objects; the
//! controller applies them (server-side apply, owned by the Session).
//!
//! Mediation: the pod reaches the gateway and nothing else (plus the Agent's explicit CIDR entries). It has no
//! DNS: the gateway's address is in `/etc/hosts` (`hostAliases`). Every other connection, the workspace clone
//! included, goes through the gateway's egress proxy, which decides it by name and injects brokered
//! credentials; no credential but the session token is in the pod.
//!
//! Hardening (DESIGN §6, and the "restricted" Pod Security Standard): non-root with a fixed UID, read-only
//! root filesystem, every capability dropped, no privilege escalation, `RuntimeDefault` seccomp, no
//! service-account token, no service links, resources always set (requests = limits), a wall-clock
//! deadline, writable `emptyDir`s only where the runner must write (`/workspace`, `/tmp`, `$HOME`, the
//! Agent's `writablePaths`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use paddock_api::AgentSpec;
use paddock_api::agent::WorkspaceSource;
use serde_json::{Value, json};

use crate::spec::{SandboxSpec, WORKSPACE_DIR};
use crate::workspace::remote;

/// Where the Agent manifest is mounted in the runner.
pub const AGENT_DIR: &str = "/etc/paddock/agent";
/// The runner's `$HOME` (an `emptyDir`: harnesses keep their settings there).
pub const HOME_DIR: &str = "/home/runner";
/// Key of the token in the token Secret.
pub const TOKEN_KEY: &str = "token";
/// Key of the prompt in the token Secret: the prompt reaches the runner as a file, not on its command line
/// (which anyone who may `get pods` reads, and which is bounded by the kernel's argument size).
pub const PROMPT_KEY: &str = "prompt";
/// Where the runner container (and it alone) mounts the prompt, read with `--prompt-file`.
pub const PROMPT_DIR: &str = "/etc/paddock/prompt";
/// The largest prompt a session may have, in bytes: it travels base64-encoded in the token Secret, and
/// Kubernetes keeps a Secret under 1 MiB. 512 KiB leaves room for the encoding and the token.
pub const MAX_PROMPT_BYTES: usize = 512 * 1024;
/// Extra seconds past the Agent's `timeoutSeconds` before Kubernetes stops the pod (cloning, start-up).
pub const DEADLINE_SLACK_SECONDS: i64 = 300;
/// Label on every object of a session: the Session's name (hashed when longer than a label value may be).
pub const SESSION_LABEL: &str = "paddock.dev/session";
pub const AGENT_LABEL: &str = "paddock.dev/agent";
/// Key of Paddock's egress CA certificate in the agent ConfigMap (mounted at [`AGENT_DIR`]): what a clone
/// through the broker trusts.
pub const EGRESS_CA_KEY: &str = "egress-ca.pem";
/// Key of the gateway's CA certificate in the agent ConfigMap: what the runner and the clone step trust for an
/// `https://` gateway (the CA that signed the gateway's serving certificate; never a key).
pub const GATEWAY_CA_KEY: &str = "gateway-ca.pem";

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
    /// The gateway's address (its Service's ClusterIP, resolved by the controller), written to the pod's
    /// `/etc/hosts` for the gateway's host name: the pod has no DNS. `None` when the gateway URL is an address.
    pub gateway_address: Option<IpAddr>,
    /// Paddock's egress CA certificate (PEM, public), put into the agent ConfigMap as [`EGRESS_CA_KEY`] for a
    /// clone through the broker.
    pub egress_ca: Option<&'a str>,
    /// The CA that signed the gateway's serving certificate (PEM, public), for an `https://` gateway URL: put
    /// into the agent ConfigMap as [`GATEWAY_CA_KEY`], trusted by the runner (`--gateway-ca`) and the clone
    /// step for the gateway. `None`: the image's roots.
    pub gateway_ca: Option<&'a str>,
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
    /// The gateway as runners reach it, e.g. `https://paddock-gateway.paddock-system.svc:6767`. Over
    /// `https://` the runner speaks TLS to it and offers the harness plain HTTP on the pod's own loopback.
    pub gateway_url: String,
    /// Where the gateway pods are and how to select them, for the NetworkPolicy (the pods' port, which the
    /// Service forwards to).
    pub gateway_namespace: String,
    pub gateway_pod_labels: BTreeMap<String, String>,
    pub gateway_port: u16,
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
pub(crate) fn container_security(uid: u32) -> Value {
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
        "--prompt-file".into(),
        format!("{PROMPT_DIR}/{PROMPT_KEY}"),
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
    if let Some(ca) = gateway_ca_file(s, c) {
        args.extend(["--gateway-ca".to_owned(), ca]);
    }
    let mut env = vec![
        json!({"name": "PADDOCK_TOKEN", "valueFrom": {"secretKeyRef": {"name": names.secret, "key": TOKEN_KEY}}}),
        json!({"name": "HOME", "value": HOME_DIR}),
        json!({"name": "TMPDIR", "value": "/tmp"}),
    ];
    env.extend(spec.env.iter().map(|(k, v)| json!({"name": k, "value": escape(v)})));
    let mut mounts = vec![
        json!({"name": "workspace", "mountPath": WORKSPACE_DIR}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
        json!({"name": "home", "mountPath": HOME_DIR}),
        json!({"name": "agent", "mountPath": AGENT_DIR, "readOnly": true}),
        json!({"name": "prompt", "mountPath": PROMPT_DIR, "readOnly": true}),
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
        // The prompt only (the token stays in the environment): root's file, readable by the pod's fsGroup,
        // which is the runner's group.
        json!({"name": "prompt", "secret": {
            "secretName": names.secret,
            "items": [{"key": PROMPT_KEY, "path": PROMPT_KEY}],
            "defaultMode": 0o440
        }}),
    ];
    volumes.extend(writable_volumes(spec).into_iter().map(|(n, _)| json!({"name": n, "emptyDir": {}})));
    let mut init = Vec::new();
    if let Some(ws) = s.workspace {
        init = crate::clone::clone_steps(s.name, ws, agent, spec, c, &resources, gateway_ca_file(s, c));
    }
    let mut pod_spec = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        // No cluster resolver in the pod's resolv.conf: names are the gateway's business (its proxy resolves
        // them), and a resolver the sandbox can query is a way out even where no CNI enforces the
        // NetworkPolicy. Lookups fail at once against a loopback address nothing listens on; the gateway's own
        // name is in /etc/hosts (`hostAliases`).
        "dnsPolicy": "None",
        "dnsConfig": {
            "nameservers": ["127.0.0.1"],
            "options": [{"name": "attempts", "value": "1"}, {"name": "timeout", "value": "1"}]
        },
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
    if let Some(aliases) = gateway_host_aliases(s, c) {
        pod_spec["hostAliases"] = aliases;
    }
    let mut meta = metadata(s, &names.pod);
    meta["annotations"] = json!({"paddock.dev/session-id": s.session_id});
    strip_nulls(json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}))
}

/// Where a pod's containers find the gateway's CA: in the agent ConfigMap, when the gateway is reached over
/// `https://` and the controller has its CA.
pub(crate) fn gateway_ca_file(s: &SessionInfo, c: &ClusterConfig) -> Option<String> {
    let https = remote(&c.gateway_url).is_some_and(|r| r.scheme == "https");
    (https && s.gateway_ca.is_some()).then(|| format!("{AGENT_DIR}/{GATEWAY_CA_KEY}"))
}

/// Kubernetes expands `$(VAR)` in `command`, `args` and `env` values; `$$` is a literal `$`. User text must
/// reach the runner as written.
pub fn escape(s: &str) -> String {
    s.replace('$', "$$")
}

/// The gateway's host name mapped to its address in the pod's `/etc/hosts`: runner pods have no DNS (a DNS
/// server reachable from the sandbox is a way out). `None` when the URL names an address already.
fn gateway_host_aliases(s: &SessionInfo, c: &ClusterConfig) -> Option<Value> {
    let host = remote(&c.gateway_url)?.host;
    if host.parse::<IpAddr>().is_ok() {
        return None;
    }
    let ip = s.gateway_address?;
    Some(json!([{"ip": ip.to_string(), "hostnames": [host]}]))
}

/// The runner Pod of a session.
pub fn render_runner_pod(s: &SessionInfo, agent: &AgentSpec, spec: &SandboxSpec, c: &ClusterConfig) -> Pod {
    typed(runner_json(s, agent, spec, c))
}

fn network_policy_json(s: &SessionInfo, spec: &SandboxSpec, c: &ClusterConfig) -> Value {
    let names = ObjectNames::of(s.name);
    let ns_selector = |ns: &str| json!({"matchLabels": {"kubernetes.io/metadata.name": ns}});
    let mut egress = vec![json!({
        "to": [{"namespaceSelector": ns_selector(&c.gateway_namespace), "podSelector": {"matchLabels": c.gateway_pod_labels}}],
        "ports": [{"protocol": "TCP", "port": c.gateway_port}]
    })];
    // Only what an address names exactly; a name is reached through the gateway, which decides it.
    egress.extend(spec.egress.iter().filter_map(|e| {
        let cidr = e.cidr()?;
        Some(json!({"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"protocol": "TCP", "port": e.port}]}))
    }));
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(s, &names.network_policy),
        "spec": {
            "podSelector": {"matchLabels": {SESSION_LABEL: names.label}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": egress
        }
    })
}

/// The NetworkPolicy of a session's runner: no ingress; egress to the gateway's pods on the gateway's port,
/// and to the Agent's address and CIDR entries (`10.0.0.0/8:5432`) exactly. Nothing else: no DNS, no entry
/// by name (the gateway's egress proxy enforces those), nothing from the workspace (its clone goes through
/// the proxy too).
pub fn render_network_policy(s: &SessionInfo, spec: &SandboxSpec, c: &ClusterConfig) -> NetworkPolicy {
    typed(network_policy_json(s, spec, c))
}

fn config_map_json(s: &SessionInfo, agent_yaml: &str) -> Value {
    let names = ObjectNames::of(s.name);
    let mut data = json!({"agent.yaml": agent_yaml});
    if let Some(ca) = s.egress_ca {
        data[EGRESS_CA_KEY] = json!(ca);
    }
    if let Some(ca) = s.gateway_ca {
        data[GATEWAY_CA_KEY] = json!(ca);
    }
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": metadata(s, &names.config_map),
        "immutable": true,
        "data": data
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

/// The Agent as a ConfigMap, mounted read-only into the runner at [`AGENT_DIR`] (with Paddock's egress CA
/// certificate when the session has one, and the gateway's CA certificate when the controller has it).
/// `agent_yaml` comes from [`agent_manifest`].
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
        "data": {TOKEN_KEY: b64(token.as_bytes()), PROMPT_KEY: b64(s.prompt.as_bytes())}
    })
}

/// The session token (issued by the gateway) as a Secret, read by the runner as `PADDOCK_TOKEN`, and the
/// prompt, mounted into the runner container at [`PROMPT_DIR`]. The controller refuses a prompt over
/// [`MAX_PROMPT_BYTES`] before rendering this.
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
            gateway_address: Some(IpAddr::from([10, 96, 0, 17])),
            egress_ca: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
            gateway_ca: None,
        }
    }

    #[test]
    fn nothing_is_lost_in_the_typed_round_trip() {
        // k8s-openapi types ignore unknown fields: a misspelt field would vanish silently. It must not.
        let ws = WorkspaceSource {
            git: "https://github.com/acme/shop.git".into(),
            git_ref: Some("main".into()),
            secret_ref: Some(paddock_api::agent::LocalObjectReference { name: "git".into() }),
        };
        let a = agent(
            r#"{"harness": "custom", "model": "m", "sandbox": {"runtimeClassName": "gvisor", "egress": ["api.github.com:443", "10.0.0.0/8:5432"], "writablePaths": ["/var/cache"]},
               "env": [{"name": "CI", "value": "1"}], "credentials": [{"host": "api.github.com", "secretName": "gh", "key": "token"}]}"#,
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
    fn the_prompt_is_in_the_secret_and_a_file_of_the_runner_never_in_the_pod_spec() {
        let prompt = "Fix \"the\" login; don't run $(rm -rf /) or `id`,\nthen say 'done' — ünïcode ${HOME}";
        let ws = WorkspaceSource { git: "https://github.com/acme/shop.git".into(), git_ref: None, secret_ref: None };
        let a = agent(r#"{"harness": "custom", "model": "m"}"#);
        let spec = SandboxSpec::for_agent(&a, None).unwrap();
        let s = SessionInfo { prompt, ..session(Some(&ws)) };
        let pod = serde_json::to_value(render_runner_pod(&s, &a, &spec, &ClusterConfig::default())).unwrap();
        let text = pod.to_string();
        // Not the prompt, not a piece of it, not its JSON or `$$` escaped form.
        for needle in ["Fix", "login", "rm -rf", "ünïcode", "$$(rm", "\\\"the\\\"", "then say"] {
            assert!(!text.contains(needle), "`{needle}` in the pod: {text}");
        }
        let runner = &pod["spec"]["containers"][0];
        let args: Vec<&str> = runner["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert!(args.windows(2).any(|w| w == ["--prompt-file", "/etc/paddock/prompt/prompt"]), "{args:?}");
        assert!(!args.contains(&"--prompt"), "{args:?}");
        // The runner mounts the Secret's `prompt` key alone, read-only; the token stays out of the file system.
        assert!(
            runner["volumeMounts"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "prompt", "mountPath": PROMPT_DIR, "readOnly": true})),
            "{runner}"
        );
        let volume = pod["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "prompt").unwrap();
        assert_eq!(
            volume["secret"],
            json!({"secretName": "fix-bug-token", "items": [{"key": "prompt", "path": "prompt"}], "defaultMode": 0o440})
        );
        // The clone step does not see it.
        let clone = pod["spec"]["initContainers"].as_array().unwrap();
        assert!(!clone.is_empty());
        assert!(clone.iter().all(|c| !c["volumeMounts"].to_string().contains("\"prompt\"")), "{clone:?}");
        // The Secret carries it exactly, beside the token.
        let secret = serde_json::to_value(render_token_secret(&s, "pdk_t")).unwrap();
        assert_eq!(secret["data"]["prompt"], base64_encode(prompt.as_bytes()));
        assert_eq!(secret["data"]["token"], base64_encode(b"pdk_t"));
        assert_eq!(secret["immutable"], true);
        // The largest prompt allowed still fits a Secret (1 MiB, base64 and all).
        let big = "x".repeat(MAX_PROMPT_BYTES);
        let secret = serde_json::to_string(&render_token_secret(&SessionInfo { prompt: &big, ..s }, "pdk_t")).unwrap();
        assert!(secret.len() < 1024 * 1024, "{}", secret.len());
    }

    #[test]
    fn over_https_the_runner_and_the_clone_trust_the_gateway_ca_from_the_configmap() {
        const CA: &str = "-----BEGIN CERTIFICATE-----\nR0FURVdBWQ==\n-----END CERTIFICATE-----\n";
        let ws = WorkspaceSource { git: "https://github.com/acme/shop.git".into(), git_ref: None, secret_ref: None };
        let a = agent(r#"{"harness": "custom", "model": "m"}"#);
        let spec = SandboxSpec::for_agent(&a, None).unwrap();
        let s = SessionInfo { gateway_ca: Some(CA), ..session(Some(&ws)) };
        let c = ClusterConfig {
            gateway_url: "https://paddock-gateway.paddock-system.svc:6767".into(),
            ..Default::default()
        };
        let pod = runner_json(&s, &a, &spec, &c);
        let ca_file = format!("{AGENT_DIR}/{GATEWAY_CA_KEY}");

        // The runner: the https URL and the CA file, which the agent ConfigMap holds, mounted where it says.
        let runner = &pod["spec"]["containers"][0];
        let args: Vec<&str> = runner["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let after = |flag: &str| args.iter().position(|a| *a == flag).map(|i| args[i + 1]);
        assert_eq!(after("--gateway"), Some("https://paddock-gateway.paddock-system.svc:6767"));
        assert_eq!(after("--gateway-ca"), Some(ca_file.as_str()));
        let mounted = |c: &Value| {
            c["volumeMounts"].as_array().unwrap().iter().any(|m| m["name"] == "agent" && m["mountPath"] == AGENT_DIR)
        };
        assert!(mounted(runner));
        assert_eq!(config_map_json(&s, "x")["data"][GATEWAY_CA_KEY], CA);
        // The name in the URL is the one the certificate holds; the pod resolves it from /etc/hosts.
        assert_eq!(pod["spec"]["hostAliases"][0]["hostnames"][0], "paddock-gateway.paddock-system.svc");

        // The clone: git speaks TLS to its https:// proxy and trusts the same CA for it (not for the remote).
        let clone = &pod["spec"]["initContainers"][0];
        let env = |name: &str| {
            clone["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].as_str().unwrap().to_owned())
        };
        assert_eq!(
            env("https_proxy").as_deref(),
            Some("https://paddock:$(PADDOCK_TOKEN)@paddock-gateway.paddock-system.svc:6767")
        );
        assert_eq!(env("GIT_PROXY_SSL_CAINFO"), Some(ca_file.clone()));
        assert_eq!(env("GIT_SSL_CAINFO"), None, "the remote (not brokered) is checked against the image's roots");
        assert!(mounted(clone));

        // Plain http: no CA flag, whatever the controller holds.
        let plain = runner_json(&s, &a, &spec, &ClusterConfig::default());
        let args = plain["spec"]["containers"][0]["args"].as_array().unwrap();
        assert!(!args.iter().any(|a| a == "--gateway-ca"), "{args:?}");
        assert!(
            !plain["spec"]["initContainers"][0]["env"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == "GIT_PROXY_SSL_CAINFO")
        );
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
