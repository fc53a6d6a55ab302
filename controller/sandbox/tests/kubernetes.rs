//! The rendered Kubernetes objects of representative Agents, compared with the committed YAML under
//! `tests/snapshots/` (regenerate with `UPDATE_SNAPSHOTS=1 cargo test -p paddock-sandbox --test kubernetes`),
//! and every rendered runner pod checked against the "restricted" Pod Security Standard.
//!
//! `.ci/run` also validates the snapshot files against the Kubernetes schemas (`kubernetes-validate`) and
//! runs `.ci/pss-restricted.py` on them.

use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use paddock_api::AgentSpec;
use paddock_api::agent::{LocalObjectReference, WorkspaceSource};
use paddock_sandbox::{
    ClusterConfig, SandboxSpec, SessionInfo, agent_manifest, render_agent_configmap, render_network_policy,
    render_runner_pod, render_token_secret,
};

/// A certificate as the gateway serves it (public; what the clone trusts for a brokered remote).
const EGRESS_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBdTCCARugAwIBAgIUPaddockEgressCA\n-----END CERTIFICATE-----\n";

struct Case {
    name: &'static str,
    agent: &'static str,
    sub_agents: &'static [(&'static str, &'static str)],
    /// From an `enforce_sandbox` rule.
    required_runtime_class: Option<&'static str>,
    session: SessionInfo<'static>,
}

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

fn cases() -> Vec<Case> {
    let https = leak(WorkspaceSource {
        git: "https://github.com/acme/webshop.git".into(),
        git_ref: Some("release-1.4".into()),
        secret_ref: Some(LocalObjectReference { name: "webshop-git".into() }),
    });
    let public = leak(WorkspaceSource {
        git: "https://github.com/acme/infra.git".into(),
        git_ref: Some("2f5e3a1c0d9b8e7f6a5b4c3d2e1f0a9b8c7d6e5f".into()),
        secret_ref: None,
    });
    let base = SessionInfo {
        name: "fix-login",
        namespace: "team-a",
        uid: "5f0c2a9e-1d3b-4c8e-9a7f-2b6d4e8c0a1f",
        session_id: "5f0c2a9e-1d3b-4c8e-9a7f-2b6d4e8c0a1f",
        agent_name: "coder",
        prompt: "Fix the login bug described in issue 42.",
        model_override: None,
        workspace: None,
        gateway_address: Some(IpAddr::from([10, 96, 12, 34])),
        egress_ca: None,
        gateway_ca: None,
    };
    vec![
        Case {
            name: "claude-code-defaults",
            agent: "harness: claude-code\nmodel: claude-sonnet-4-5\npolicies: [baseline]\n",
            sub_agents: &[],
            required_runtime_class: None,
            session: base.clone(),
        },
        Case {
            name: "custom-egress-workspace",
            agent: r#"harness: custom
model: claude-sonnet-4-5
tools: [shell, read_file, write_file]
sandbox:
  resources: {cpu: 500m, memory: 1Gi}
  writablePaths: [/var/cache/npm]
  egress: ["registry.npmjs.org:443", "*.npmjs.org:443", "10.20.0.0/16:5432", "api.github.com:443", "github.com:443"]
env:
  - {name: NODE_ENV, value: test}
  - {name: PRICE, value: "$(not-expanded) $5"}
credentials:
  - {host: api.github.com, secretName: github, key: token}
limits: {maxTurns: 20, timeoutSeconds: 900}
"#,
            sub_agents: &[],
            required_runtime_class: None,
            session: SessionInfo {
                name: "npm-upgrade",
                agent_name: "web-dev",
                prompt: "Upgrade $(HOME) dependencies; keep $PATH",
                workspace: Some(https),
                egress_ca: Some(EGRESS_CA),
                ..base.clone()
            },
        },
        Case {
            name: "codex-gvisor-commit",
            agent: "harness: codex\nmodel: gpt-5\nsandbox: {runtimeClassName: runc-hardened, egress: [\"github.com:443\"]}\nsubAgents: [reviewer]\n",
            sub_agents: &[("reviewer", "harness: custom\nmodel: claude-haiku-4-5\ntools: [read_file, grep]\n")],
            required_runtime_class: Some("gvisor"),
            session: SessionInfo {
                name: "terraform-plan-for-the-new-payments-cluster-in-eu-west-and-its-dns-zone",
                agent_name: "infra",
                model_override: Some("gpt-5-mini"),
                prompt: "Plan the payments cluster.",
                workspace: Some(public),
                ..base
            },
        },
    ]
}

fn spec(yaml: &str) -> AgentSpec {
    serde_yaml_ng::from_str(yaml).unwrap()
}

/// The four objects of a case, as YAML documents.
fn render(case: &Case) -> Vec<(&'static str, String, serde_json::Value)> {
    let agent = spec(case.agent);
    let sandbox = SandboxSpec::for_agent(&agent, case.required_runtime_class).unwrap();
    let cluster = ClusterConfig {
        image: "ghcr.io/paddock-dev/runner:0.1.0".into(),
        image_pull_policy: Some("IfNotPresent".into()),
        ..ClusterConfig::default()
    };
    let subs: Vec<(&str, AgentSpec)> = case.sub_agents.iter().map(|(n, y)| (*n, spec(y))).collect();
    let sub_refs: Vec<(&str, &AgentSpec)> = subs.iter().map(|(n, s)| (*n, s)).collect();
    let manifest = agent_manifest(case.session.namespace, case.session.agent_name, &agent, &sub_refs);
    let objects = [
        ("pod", serde_json::to_value(render_runner_pod(&case.session, &agent, &sandbox, &cluster)).unwrap()),
        ("networkpolicy", serde_json::to_value(render_network_policy(&case.session, &sandbox, &cluster)).unwrap()),
        ("configmap", serde_json::to_value(render_agent_configmap(&case.session, &manifest)).unwrap()),
        ("secret", serde_json::to_value(render_token_secret(&case.session, "pdk_0123456789abcdef")).unwrap()),
    ];
    objects.into_iter().map(|(kind, v)| (kind, serde_yaml_ng::to_string(&v).unwrap(), v)).collect()
}

#[test]
fn rendered_objects_match_the_snapshots() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut stale = Vec::new();
    for case in cases() {
        for (kind, yaml, _) in render(&case) {
            let path = dir.join(format!("{}.{kind}.yaml", case.name));
            let text = format!(
                "# Rendered by controller/sandbox/tests/kubernetes.rs; UPDATE_SNAPSHOTS=1 to regenerate.\n{yaml}"
            );
            if update {
                std::fs::write(&path, &text).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(format!("{}\n--- rendered:\n{text}", path.display()));
            }
        }
    }
    assert!(stale.is_empty(), "snapshots differ (UPDATE_SNAPSHOTS=1 to accept):\n{}", stale.join("\n"));
}

/// Each rule of the "restricted" Pod Security Standard (Kubernetes v1.33), on one pod. `.ci/pss-restricted.py`
/// checks the same rules on the YAML files and on the Helm chart's pods.
fn restricted_violations(pod: &Pod) -> Vec<String> {
    let mut bad = Vec::new();
    let spec = pod.spec.as_ref().expect("spec");
    let psc = spec.security_context.clone().unwrap_or_default();
    // Baseline: host namespaces, host ports, hostPath, privileged, capabilities beyond the baseline set,
    // /proc mount, AppArmor and SELinux types, sysctls.
    if spec.host_network == Some(true) || spec.host_pid == Some(true) || spec.host_ipc == Some(true) {
        bad.push("host namespaces".into());
    }
    if psc.sysctls.as_ref().is_some_and(|s| !s.is_empty()) {
        bad.push("sysctls".into());
    }
    for v in spec.volumes.iter().flatten() {
        // Restricted: only these volume types.
        let allowed = v.config_map.is_some()
            || v.csi.is_some()
            || v.downward_api.is_some()
            || v.empty_dir.is_some()
            || v.ephemeral.is_some()
            || v.persistent_volume_claim.is_some()
            || v.projected.is_some()
            || v.secret.is_some();
        if !allowed {
            bad.push(format!("volume {}: type not allowed", v.name));
        }
    }
    let pod_non_root = psc.run_as_non_root == Some(true);
    let pod_seccomp = psc.seccomp_profile.as_ref().map(|s| s.type_.as_str());
    if psc.run_as_user == Some(0) {
        bad.push("pod runAsUser 0".into());
    }
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    for c in containers {
        let sc = c.security_context.clone().unwrap_or_default();
        let at = |m: &str| format!("container {}: {m}", c.name);
        if sc.privileged == Some(true) {
            bad.push(at("privileged"));
        }
        if c.ports.iter().flatten().any(|p| p.host_port.is_some_and(|h| h != 0)) {
            bad.push(at("hostPort"));
        }
        if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
            bad.push(at("procMount"));
        }
        if sc.allow_privilege_escalation != Some(false) {
            bad.push(at("allowPrivilegeEscalation must be false"));
        }
        if !(sc.run_as_non_root == Some(true) || (sc.run_as_non_root.is_none() && pod_non_root)) {
            bad.push(at("runAsNonRoot must be true"));
        }
        if sc.run_as_user == Some(0) {
            bad.push(at("runAsUser 0"));
        }
        let seccomp = sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()).or(pod_seccomp);
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            bad.push(at("seccompProfile must be RuntimeDefault or Localhost"));
        }
        let caps = sc.capabilities.clone().unwrap_or_default();
        if !caps.drop.iter().flatten().any(|d| d == "ALL") {
            bad.push(at("capabilities must drop ALL"));
        }
        if caps.add.iter().flatten().any(|a| a != "NET_BIND_SERVICE") {
            bad.push(at("only NET_BIND_SERVICE may be added"));
        }
        // Paddock's own rules beyond the standard (DESIGN §6).
        if sc.read_only_root_filesystem != Some(true) {
            bad.push(at("readOnlyRootFilesystem must be true"));
        }
        let r = c.resources.clone().unwrap_or_default();
        for key in ["cpu", "memory"] {
            if !r.limits.as_ref().is_some_and(|l| l.contains_key(key))
                || !r.requests.as_ref().is_some_and(|l| l.contains_key(key))
            {
                bad.push(at(&format!("{key} requests and limits must be set")));
            }
        }
    }
    if spec.automount_service_account_token != Some(false) {
        bad.push("automountServiceAccountToken must be false".into());
    }
    bad
}

#[test]
fn every_rendered_runner_pod_meets_the_restricted_pod_security_standard() {
    for case in cases() {
        let (_, _, pod) = render(&case).remove(0);
        let pod: Pod = serde_json::from_value(pod).unwrap();
        assert_eq!(restricted_violations(&pod), Vec::<String>::new(), "{}", case.name);
    }
    // The check itself catches what it should.
    let (_, _, pod) = render(&cases()[0]).remove(0);
    let mut pod: Pod = serde_json::from_value(pod).unwrap();
    let spec = pod.spec.as_mut().unwrap();
    spec.containers[0].security_context.as_mut().unwrap().allow_privilege_escalation = None;
    spec.security_context.as_mut().unwrap().seccomp_profile = None;
    spec.containers[0].security_context.as_mut().unwrap().seccomp_profile = None;
    assert_eq!(
        restricted_violations(&pod),
        [
            "container runner: allowPrivilegeEscalation must be false",
            "container runner: seccompProfile must be RuntimeDefault or Localhost"
        ]
    );
}

#[test]
fn every_case_is_a_session_the_controller_would_start() {
    // The snapshots show what runs: each case's workspace can be cloned through the gateway for its Agent.
    for case in cases() {
        let agent = spec(case.agent);
        let sandbox = SandboxSpec::for_agent(&agent, case.required_runtime_class).unwrap();
        if let Some(ws) = case.session.workspace {
            paddock_sandbox::workspace::check_workspace(ws).unwrap();
            paddock_sandbox::workspace::check_clone_allowed(ws, &agent.credentials, &sandbox.egress)
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        }
    }
}

#[test]
fn the_runner_reads_an_agent_that_validates() {
    // The runner validates its agent.yaml with `paddock validate`'s checks; the rendered manifest must pass.
    for case in cases() {
        let agent = spec(case.agent);
        let subs: Vec<(&str, AgentSpec)> = case.sub_agents.iter().map(|(n, y)| (*n, spec(y))).collect();
        let refs: Vec<(&str, &AgentSpec)> = subs.iter().map(|(n, s)| (*n, s)).collect();
        let yaml = agent_manifest("team-a", case.session.agent_name, &agent, &refs);
        let report =
            paddock_gitops::validate_files(&[paddock_gitops::SourceFile::new("agent.yaml", yaml.into_bytes())]);
        assert!(report.is_ok(), "{}: {}", case.name, report.render());
    }
}

fn cluster() -> ClusterConfig {
    ClusterConfig { image: "ghcr.io/paddock-dev/runner:0.1.0".into(), ..ClusterConfig::default() }
}

fn base_session(workspace: Option<&'static WorkspaceSource>) -> SessionInfo<'static> {
    SessionInfo { workspace, ..cases().remove(0).session }
}

fn workspace(git: &str, secret: Option<&str>) -> &'static WorkspaceSource {
    leak(WorkspaceSource {
        git: git.into(),
        git_ref: None,
        secret_ref: secret.map(|n| LocalObjectReference { name: n.into() }),
    })
}

#[test]
fn no_rendered_network_policy_opens_the_internet() {
    let agents = [
        "harness: custom\nmodel: m\n",
        "harness: custom\nmodel: m\nsandbox: {egress: [\"registry.npmjs.org:443\", \"*.npmjs.org:443\", \"api.github.com:443\"]}\n",
        "harness: custom\nmodel: m\nsandbox: {egress: [\"pypi.org:443\", \"files.pythonhosted.org:443\", \"*.internal:8080\"]}\n",
        "harness: custom\nmodel: m\nsandbox: {egress: [\"[2001:db8::1]:443\", \"[::1]:8080\", \"10.0.0.0/8:5432\", \"192.168.4.2:6379\"]}\n",
        "harness: custom\nmodel: m\ncredentials: [{host: api.github.com, secretName: gh, key: token}, {host: github.com, secretName: gh, key: token, scheme: basic}]\n",
        "harness: claude-code\nmodel: claude-sonnet-4-5\nsandbox: {egress: [\"*.example.com:80\", \"example.com:1\", \"a.b.c.d.example:65535\"]}\n",
    ];
    let workspaces = [
        None,
        Some(workspace("https://github.com/acme/x.git", Some("git"))),
        Some(workspace("https://git.acme.dev:8443/x.git", None)),
        Some(workspace("http://[2001:db8::2]:8080/x.git", None)),
        Some(workspace("ssh://169.254.169.254:80/x", None)),
        Some(workspace("git@github.com:acme/x.git", None)),
        Some(workspace("file:///srv/x.git", None)),
    ];
    let mut rendered = 0;
    for yaml in agents {
        let agent = spec(yaml);
        let sandbox = SandboxSpec::for_agent(&agent, None).unwrap();
        for ws in workspaces {
            let policy =
                serde_json::to_string(&render_network_policy(&base_session(ws), &sandbox, &cluster())).unwrap();
            for wide in ["0.0.0.0/0", "::/0", "\"0.0.0.0", "169.254.", "\"port\":53"] {
                assert!(!policy.contains(wide), "{yaml} {ws:?}: {wide} in {policy}");
            }
            // The gateway, and one ipBlock per address entry: nothing by name.
            let np: serde_json::Value = serde_json::from_str(&policy).unwrap();
            let blocks: Vec<&str> = np["spec"]["egress"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r["to"].as_array().unwrap())
                .filter_map(|to| to["ipBlock"]["cidr"].as_str())
                .collect();
            let want: Vec<String> = sandbox.egress.iter().filter_map(|e| e.cidr()).collect();
            assert_eq!(blocks, want, "{yaml}");
            rendered += 1;
        }
    }
    assert_eq!(rendered, 42);
    // An entry that would open the internet or the metadata endpoint does not validate at all.
    for entry in ["0.0.0.0/0:443", "0.0.0.0/1:443", "169.254.169.254:80"] {
        let agent = spec(&format!("harness: custom\nmodel: m\nsandbox: {{egress: [\"{entry}\"]}}\n"));
        let e = SandboxSpec::for_agent(&agent, None).unwrap_err().to_string();
        assert!(e.starts_with("spec.sandbox.egress[0]:"), "{entry}: {e}");
    }
}

#[test]
fn a_sessions_workspace_does_not_change_its_network_policy() {
    let agent = spec("harness: custom\nmodel: m\nsandbox: {egress: [\"api.github.com:443\", \"10.20.0.0/16:5432\"]}\n");
    let sandbox = SandboxSpec::for_agent(&agent, None).unwrap();
    let without = serde_json::to_value(render_network_policy(&base_session(None), &sandbox, &cluster())).unwrap();
    for url in [
        "ssh://169.254.169.254:80/x",
        "https://host.example:31337/x.git",
        "https://github.com/acme/x.git",
        "http://10.1.2.3:8080/x.git",
    ] {
        for secret in [None, Some("git")] {
            let ws = workspace(url, secret);
            let with =
                serde_json::to_value(render_network_policy(&base_session(Some(ws)), &sandbox, &cluster())).unwrap();
            assert_eq!(with, without, "{url}");
        }
    }
}

#[test]
fn the_pod_holds_no_credential_but_its_session_token() {
    let agent = spec(
        "harness: custom\nmodel: m\ncredentials: [{host: api.github.com, secretName: github-bot, key: token}]\n\
         workspace: {git: \"https://github.com/acme/x.git\", secretRef: {name: webshop-git}}\n",
    );
    let sandbox = SandboxSpec::for_agent(&agent, None).unwrap();
    for ws in [agent.workspace.as_ref().unwrap(), workspace("https://gitlab.com/acme/y.git", Some("gl"))] {
        let session = SessionInfo { egress_ca: Some(EGRESS_CA), ..base_session(Some(leak(ws.clone()))) };
        let pod = serde_json::to_value(render_runner_pod(&session, &agent, &sandbox, &cluster())).unwrap();
        let spec = &pod["spec"];
        let containers =
            spec["containers"].as_array().unwrap().iter().chain(spec["initContainers"].as_array().unwrap());
        for c in containers {
            for e in c["env"].as_array().unwrap() {
                if let Some(r) = e.get("valueFrom") {
                    assert_eq!(e["name"], "PADDOCK_TOKEN", "{e}");
                    assert_eq!(r["secretKeyRef"], serde_json::json!({"name": "fix-login-token", "key": "token"}));
                }
                let text = e.to_string();
                assert!(
                    !text.contains("github-bot") && !text.contains("webshop-git") && !text.contains("\"gl\""),
                    "{e}"
                );
            }
        }
        for v in spec["volumes"].as_array().unwrap() {
            // The one Secret volume is the token Secret's `prompt` key: the token itself is never a file.
            if let Some(secret) = v.get("secret") {
                assert_eq!(secret["items"], serde_json::json!([{"key": "prompt", "path": "prompt"}]), "{v}");
            }
            assert!(v.get("projected").is_none(), "{v}");
        }
        // The clone goes through the proxy with the session token and trusts Paddock's CA for the brokered host.
        let clone = &spec["initContainers"][0];
        let env: Vec<(String, String)> = clone["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().into(), e["value"].as_str().unwrap_or("").into()))
            .collect();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("https_proxy"), Some("http://paddock:$(PADDOCK_TOKEN)@paddock-gateway.paddock-system.svc:6767"));
        assert!(env.iter().position(|(n, _)| n == "PADDOCK_TOKEN") < env.iter().position(|(n, _)| n == "https_proxy"));
        assert_eq!(get("GIT_SSL_CAINFO"), Some("/etc/paddock/agent/egress-ca.pem"));
        assert_eq!(spec["dnsPolicy"], "None", "no cluster resolver in the sandbox");
        assert_eq!(spec["dnsConfig"]["nameservers"], serde_json::json!(["127.0.0.1"]));
        assert_eq!(
            spec["hostAliases"],
            serde_json::json!([{"ip": "10.96.12.34", "hostnames": ["paddock-gateway.paddock-system.svc"]}])
        );
        let cm = serde_json::to_value(render_agent_configmap(&session, "kind: Agent\n")).unwrap();
        assert_eq!(cm["data"]["egress-ca.pem"], EGRESS_CA);
        assert!(!cm.to_string().contains("PRIVATE KEY"));
    }
    // An unbrokered remote is a tunnel: the clone keeps the image's roots.
    let public = SessionInfo { ..base_session(Some(workspace("https://gitlab.com/acme/y.git", None))) };
    let pod = serde_json::to_value(render_runner_pod(&public, &agent, &sandbox, &cluster())).unwrap();
    assert!(!pod["spec"]["initContainers"][0].to_string().contains("GIT_SSL_CAINFO"));
}
