//! [`SandboxSpec`]: what a runner's sandbox allows, decided once from the Agent (and the policies that
//! require a minimum), whatever renders it.

use paddock_api::AgentSpec;
use serde::Serialize;

use crate::credentials::credential_problems;
use crate::quantity::{Egress, cpu_millis, memory_bytes, parse_egress};
use crate::workspace::{WorkspaceProblem, check_workspace};

/// Where the workspace is, inside every sandbox.
pub const WORKSPACE_DIR: &str = "/workspace";
/// The unprivileged user the runner runs as (the "nonroot" user of distroless images).
pub const RUNNER_UID: u32 = 65532;
/// Processes and threads a runner may have at once.
pub const DEFAULT_PIDS: u32 = 1024;
/// `/run` holds only Paddock's mount points; it needs little room.
const RUN_TMPFS_BYTES: u64 = 4 << 20;

/// Environment names that hold model-provider credentials. They never enter a sandbox: the gateway holds
/// the keys.
pub const PROVIDER_KEY_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "OPENAI_API_KEY",
    "OPENAI_ORG_ID",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SandboxError {
    #[error("spec.sandbox.resources.{field}: {message}")]
    Quantity { field: &'static str, message: String },
    #[error("spec.sandbox.egress[{index}]: {message}")]
    Egress { index: usize, message: String },
    #[error("spec.sandbox.{field}[{index}]: `{path}` must be an absolute path without `.` or `..`, not `/`")]
    Path { field: &'static str, index: usize, path: String },
    #[error(
        "spec.{field}[{index}]: `{name}` is a model-provider credential; the gateway holds provider keys, sandboxes never do"
    )]
    ProviderKey { field: &'static str, index: usize, name: String },
    #[error("spec.{field}[{index}]: `{name}` is reserved for Paddock")]
    Reserved { field: &'static str, index: usize, name: String },
    #[error("spec.secretRefs[{index}]: {}", secret_ref_refusal(name))]
    SecretRef { index: usize, name: String },
    #[error("spec.credentials[{index}].{field}: {message}")]
    Credential { index: usize, field: &'static str, message: String },
    #[error("spec.workspace.{0}")]
    Workspace(#[from] WorkspaceProblem),
    #[error("spec.mcpServers[{index}]{}{field}: {message}", if field.is_empty() { "" } else { "." })]
    McpServer { index: usize, field: String, message: String },
}

/// Why a `secretRefs` entry is refused, and what to write instead.
pub fn secret_ref_refusal(name: &str) -> String {
    format!(
        "credentials never enter the sandbox; broker `{name}` with spec.credentials (host, secretName, key): the \
         gateway injects it into requests to that host"
    )
}

/// Everything a sandbox allows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SandboxSpec {
    /// Kubernetes RuntimeClass (gVisor, Kata); `None` for the cluster default.
    pub runtime_class_name: Option<String>,
    /// The quantities as written (for manifests) and as numbers (for local limits).
    pub cpu: String,
    pub memory: String,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pids: u32,
    /// Writable besides the workspace and a private `/tmp`.
    pub writable_paths: Vec<String>,
    /// Host paths made visible read-only (local mode) or read-only mounts (Kubernetes).
    pub read_only_paths: Vec<String>,
    /// The Agent's egress entries. The gateway's egress proxy allows them by name; in Kubernetes the address
    /// and CIDR entries are also reachable directly (NetworkPolicy `ipBlock`s), for what cannot use a proxy.
    pub egress: Vec<Egress>,
    /// The Agent's plain environment variables.
    pub env: Vec<(String, String)>,
    pub run_as_uid: u32,
}

/// A memory-backed scratch directory of a local sandbox and the most it may hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Scratch {
    pub path: String,
    pub bytes: u64,
}

/// The same rule `paddock validate` applies: absolute, no `.` or `..`, not the root.
fn absolute_clean(p: &str) -> bool {
    p.starts_with('/') && !p.split('/').any(|s| s == ".." || s == ".") && !p.trim_end_matches('/').is_empty()
}

impl SandboxSpec {
    /// The sandbox of an Agent. `required_runtime_class` comes from an `enforce_sandbox` rule and wins.
    pub fn for_agent(agent: &AgentSpec, required_runtime_class: Option<&str>) -> Result<SandboxSpec, SandboxError> {
        let s = &agent.sandbox;
        let cpu_millis =
            cpu_millis(&s.resources.cpu).map_err(|message| SandboxError::Quantity { field: "cpu", message })?;
        let memory_bytes =
            memory_bytes(&s.resources.memory).map_err(|message| SandboxError::Quantity { field: "memory", message })?;
        if let Some((index, field, message)) =
            crate::credentials::mcp_server_problems(&agent.mcp_servers).into_iter().next()
        {
            return Err(SandboxError::McpServer { index, field, message });
        }
        let egress = s
            .egress
            .iter()
            .enumerate()
            .map(|(index, e)| parse_egress(e).map_err(|message| SandboxError::Egress { index, message }))
            .collect::<Result<Vec<_>, _>>()?;
        for (field, list) in [("writablePaths", &s.writable_paths), ("readOnlyPaths", &s.read_only_paths)] {
            if let Some((index, path)) = list.iter().enumerate().find(|(_, p)| !absolute_clean(p)) {
                return Err(SandboxError::Path { field, index, path: path.clone() });
            }
        }
        for (index, name) in agent.env.iter().map(|e| &e.name).enumerate() {
            let upper = name.to_ascii_uppercase();
            if PROVIDER_KEY_VARS.contains(&upper.as_str()) {
                return Err(SandboxError::ProviderKey { field: "env", index, name: name.clone() });
            }
            if upper.starts_with("PADDOCK_") {
                return Err(SandboxError::Reserved { field: "env", index, name: name.clone() });
            }
        }
        if let Some((index, r)) = agent.secret_refs.iter().enumerate().next() {
            return Err(SandboxError::SecretRef { index, name: r.name.clone() });
        }
        if let Some(p) = credential_problems(&agent.credentials).into_iter().next() {
            return Err(SandboxError::Credential { index: p.index, field: p.field, message: p.message });
        }
        if let Some(ws) = &agent.workspace {
            check_workspace(ws)?;
        }
        Ok(SandboxSpec {
            runtime_class_name: required_runtime_class.map(str::to_owned).or_else(|| s.runtime_class_name.clone()),
            cpu: s.resources.cpu.clone(),
            memory: s.resources.memory.clone(),
            cpu_millis,
            memory_bytes,
            pids: DEFAULT_PIDS,
            writable_paths: s.writable_paths.clone(),
            read_only_paths: s.read_only_paths.clone(),
            egress,
            env: agent.env.iter().map(|e| (e.name.clone(), e.value.clone())).collect(),
            run_as_uid: RUNNER_UID,
        })
    }
}

impl SandboxSpec {
    /// The memory-backed (tmpfs) directories of a local sandbox and their sizes. What is written there is
    /// memory, so together they never exceed the Agent's memory: `/run` gets a few MiB, and of the rest
    /// `/tmp` gets four shares, `/home` two, `/dev/shm` and each writable path one. (In Kubernetes these
    /// are disk-backed `emptyDir`s, bounded by the node's ephemeral storage, and the memory limit is the
    /// cgroup's.)
    pub fn scratch(&self) -> Vec<Scratch> {
        let run = RUN_TMPFS_BYTES.min(self.memory_bytes / 16);
        let rest = self.memory_bytes - run;
        let mut shares: Vec<(String, u64)> = vec![("/tmp".into(), 4), ("/home".into(), 2), ("/dev/shm".into(), 1)];
        shares.extend(self.writable_paths.iter().map(|p| (p.clone(), 1)));
        let total: u64 = shares.iter().map(|(_, n)| n).sum();
        // Page granularity: tmpfs rounds sizes up to whole pages, so round down here to stay within.
        let page = |b: u64| (b / 4096 * 4096).max(4096);
        let mut out = vec![Scratch { path: "/run".into(), bytes: page(run) }];
        out.extend(shares.into_iter().map(|(path, n)| Scratch { path, bytes: page(rest / total * n) }));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(json: &str) -> AgentSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn from_an_agent_with_defaults_and_refusals() {
        let a = agent(
            r#"{"harness": "custom", "model": "m", "sandbox": {"egress": ["api.github.com:443"], "writablePaths": ["/tmp/cache"]}, "env": [{"name": "CI", "value": "1"}]}"#,
        );
        let s = SandboxSpec::for_agent(&a, None).unwrap();
        assert_eq!((s.cpu_millis, s.memory_bytes), (1000, 2 << 30), "defaults: 1 CPU, 2Gi");
        assert_eq!(s.egress, vec![Egress { host: "api.github.com".into(), port: 443 }]);
        assert_eq!(s.env, vec![("CI".to_owned(), "1".to_owned())]);
        assert_eq!(s.run_as_uid, RUNNER_UID);
        assert_eq!(SandboxSpec::for_agent(&a, Some("gvisor")).unwrap().runtime_class_name.as_deref(), Some("gvisor"));
        let key = agent(r#"{"harness": "custom", "model": "m", "env": [{"name": "OPENAI_API_KEY", "value": "sk"}]}"#);
        assert!(matches!(SandboxSpec::for_agent(&key, None), Err(SandboxError::ProviderKey { index: 0, .. })));
        let sref = agent(
            r#"{"harness": "custom", "model": "m", "secretRefs": [{"name": "GITHUB_TOKEN", "secretName": "s", "key": "k"}]}"#,
        );
        let e = SandboxSpec::for_agent(&sref, None).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "spec.secretRefs[0]: credentials never enter the sandbox; broker `GITHUB_TOKEN` with spec.credentials"
            ),
            "{e}"
        );
        let reserved =
            agent(r#"{"harness": "custom", "model": "m", "env": [{"name": "PADDOCK_TOKEN", "value": "x"}]}"#);
        let e = SandboxSpec::for_agent(&reserved, None).unwrap_err().to_string();
        assert!(e.starts_with("spec.env[0]: `PADDOCK_TOKEN` is reserved"), "{e}");
        let cred = agent(
            r#"{"harness": "custom", "model": "m", "credentials": [{"host": "*.github.com", "secretName": "s", "key": "k"}]}"#,
        );
        let e = SandboxSpec::for_agent(&cred, None).unwrap_err().to_string();
        assert!(e.starts_with("spec.credentials[0].host: `*.github.com` is not"), "{e}");
        let ssh = agent(r#"{"harness": "custom", "model": "m", "workspace": {"git": "git@github.com:acme/x.git"}}"#);
        let e = SandboxSpec::for_agent(&ssh, None).unwrap_err().to_string();
        assert!(e.starts_with("spec.workspace.git: `git@github.com:acme/x.git` is an SSH remote"), "{e}");
        let up = agent(r#"{"harness": "custom", "model": "m", "sandbox": {"writablePaths": ["/etc/../root"]}}"#);
        let e = SandboxSpec::for_agent(&up, None).unwrap_err().to_string();
        assert!(e.starts_with("spec.sandbox.writablePaths[0]:"), "{e}");
        let cpu = agent(r#"{"harness": "custom", "model": "m", "sandbox": {"resources": {"cpu": "lots"}}}"#);
        assert!(SandboxSpec::for_agent(&cpu, None).unwrap_err().to_string().starts_with("spec.sandbox.resources.cpu:"));
    }

    #[test]
    fn scratch_directories_together_fit_in_the_agents_memory() {
        for (memory, writable) in [
            ("128Mi", vec![]),
            ("128Mi", vec!["/var/cache/a", "/var/cache/b", "/srv/x"]),
            ("2Gi", vec!["/var/cache/app"]),
            ("64Ki", vec!["/a", "/b", "/c", "/d", "/e", "/f", "/g", "/h"]),
            ("1M", vec![]),
        ] {
            let json = serde_json::json!({"harness": "custom", "model": "m",
                "sandbox": {"resources": {"memory": memory}, "writablePaths": writable}});
            let s = SandboxSpec::for_agent(&serde_json::from_value(json).unwrap(), None).unwrap();
            let scratch = s.scratch();
            let paths: Vec<&str> = scratch.iter().map(|t| t.path.as_str()).collect();
            for p in ["/tmp", "/run", "/home", "/dev/shm"].iter().chain(&writable) {
                assert!(paths.contains(p), "{memory}: {p} is sized: {paths:?}");
            }
            let sum: u64 = scratch.iter().map(|t| t.bytes).sum();
            if s.memory_bytes >= 1 << 20 {
                assert!(sum <= s.memory_bytes, "{memory} {writable:?}: {sum} > {}", s.memory_bytes);
            }
            assert!(scratch.iter().all(|t| t.bytes >= 4096 && t.bytes % 4096 == 0), "{scratch:?}");
        }
        let s = SandboxSpec::for_agent(
            &agent(r#"{"harness": "custom", "model": "m", "sandbox": {"resources": {"memory": "128Mi"}}}"#),
            None,
        )
        .unwrap();
        let tmp = s.scratch().into_iter().find(|t| t.path == "/tmp").unwrap().bytes;
        assert!(tmp < 128 << 20 && tmp > 60 << 20, "/tmp gets the largest share: {tmp}");
    }
}
