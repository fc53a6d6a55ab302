//! The rendered Kubernetes objects of representative Agents, compared with the committed YAML under
//! `tests/snapshots/` (regenerate with `UPDATE_SNAPSHOTS=1 cargo test -p paddock-sandbox --test kubernetes`),
//! and every rendered runner pod checked against the "restricted" Pod Security Standard.
//!
//! `.ci/run` also validates the snapshot files against the Kubernetes schemas (`kubernetes-validate`) and
//! runs `.ci/pss-restricted.py` on them.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use paddock_api::AgentSpec;
use paddock_api::agent::{LocalObjectReference, WorkspaceSource};
use paddock_sandbox::{
    ClusterConfig, SandboxSpec, SessionInfo, agent_manifest, render_agent_configmap, render_network_policy,
    render_runner_pod, render_token_secret,
};

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
    let ssh = leak(WorkspaceSource {
        git: "git@github.com:acme/infra.git".into(),
        git_ref: Some("2f5e3a1c0d9b8e7f6a5b4c3d2e1f0a9b8c7d6e5f".into()),
        secret_ref: Some(LocalObjectReference { name: "infra-deploy-key".into() }),
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
  egress: ["registry.npmjs.org:443", "*.npmjs.org:443", "10.20.0.0/16:5432", "api.github.com:443"]
env:
  - {name: NODE_ENV, value: test}
  - {name: PRICE, value: "$(not-expanded) $5"}
secretRefs:
  - {name: GH_TOKEN, secretName: github, key: token}
limits: {maxTurns: 20, timeoutSeconds: 900}
"#,
            sub_agents: &[],
            required_runtime_class: None,
            session: SessionInfo {
                name: "npm-upgrade",
                agent_name: "web-dev",
                prompt: "Upgrade $(HOME) dependencies; keep $PATH",
                workspace: Some(https),
                ..base.clone()
            },
        },
        Case {
            name: "codex-gvisor-commit",
            agent: "harness: codex\nmodel: gpt-5\nsandbox: {runtimeClassName: runc-hardened}\nsubAgents: [reviewer]\n",
            sub_agents: &[("reviewer", "harness: custom\nmodel: claude-haiku-4-5\ntools: [read_file, grep]\n")],
            required_runtime_class: Some("gvisor"),
            session: SessionInfo {
                name: "terraform-plan-for-the-new-payments-cluster-in-eu-west-and-its-dns-zone",
                agent_name: "infra",
                model_override: Some("gpt-5-mini"),
                prompt: "Plan the payments cluster.",
                workspace: Some(ssh),
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
