//! `enforce_sandbox`: a minimum sandbox per environment. The session's sandbox facts come from the
//! rendered runner (Kubernetes) or the local supervisor; a session below the minimum is denied at its
//! first request and at every tool call. On `egress` it also judges the connection itself, so the rule sees
//! the session's real egress (the workspace clone and brokered hosts included), not only what the Agent
//! declares.

use paddock_api::Phase;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Builtin, BuiltinDef, Outcome, RuleCtx, build_with, schema_of};
use crate::egress::host_port;
use crate::event::Event;
use crate::state::SessionState;
use crate::tools::{ToolUse, glob_match};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxParams {
    /// Environments this minimum applies to (the namespace's `paddock.dev/environment` label, or `local`).
    /// Empty means every environment.
    #[serde(default)]
    pub environments: Vec<String>,
    /// The runner must use one of these RuntimeClasses (e.g. `gvisor`, `kata`). Empty means any.
    #[serde(default)]
    pub runtime_class_names: Vec<String>,
    /// Whether the Agent may have egress besides the gateway at all.
    #[serde(default = "super::yes")]
    pub allow_egress: bool,
    /// When egress is allowed: every entry, and every connection the session makes, must match one of these
    /// `host:port` globs (`*.npmjs.org:443`; hosts lowercase, IPv6 in brackets). Empty means any.
    #[serde(default)]
    pub allowed_egress: Vec<String>,
    /// Whether extra writable paths besides the workspace are allowed.
    #[serde(default = "super::yes")]
    pub allow_writable_paths: bool,
}

pub const ENFORCE_SANDBOX: BuiltinDef = BuiltinDef {
    name: "enforce_sandbox",
    summary: "require a minimum sandbox (runtime class, egress, writable paths) per environment",
    phases: &[Phase::Request, Phase::ToolCall, Phase::Egress],
    schema: schema_of::<SandboxParams>,
    build: |v| build_with(v, |p: SandboxParams| Ok(EnforceSandbox { p })),
};

struct EnforceSandbox {
    p: SandboxParams,
}

impl Builtin for EnforceSandbox {
    fn required_runtime_classes(&self, environment: &str) -> Option<&[String]> {
        let applies = self.p.environments.is_empty() || self.p.environments.iter().any(|e| e == environment);
        (applies && !self.p.runtime_class_names.is_empty()).then_some(self.p.runtime_class_names.as_slice())
    }

    fn evaluate(&self, _: &RuleCtx, event: &Event, _: &[ToolUse], state: &SessionState) -> Result<Outcome, String> {
        let env = state.environment.as_deref().unwrap_or("default");
        if !self.p.environments.is_empty() && !self.p.environments.iter().any(|e| e == env) {
            return Ok(Outcome::allow());
        }
        let sb = &state.sandbox;
        let mut missing = Vec::new();
        if !self.p.runtime_class_names.is_empty()
            && !sb.runtime_class_name.as_ref().is_some_and(|r| self.p.runtime_class_names.contains(r))
        {
            missing.push(format!(
                "runtimeClassName must be one of {} (is {})",
                self.p.runtime_class_names.join(", "),
                sb.runtime_class_name.as_deref().unwrap_or("unset")
            ));
        }
        if !self.p.allow_egress && !sb.egress.is_empty() {
            missing.push(format!("no egress besides the gateway is allowed (has {})", sb.egress.join(", ")));
        } else if !self.p.allowed_egress.is_empty() {
            let bad: Vec<&str> = sb
                .egress
                .iter()
                .filter(|e| !self.p.allowed_egress.iter().any(|g| glob_match(g, e)))
                .map(String::as_str)
                .collect();
            if !bad.is_empty() {
                missing.push(format!("egress not allowed: {}", bad.join(", ")));
            }
        }
        if event.phase == Phase::Egress
            && let (Some(host), Some(port)) = (event.host.as_deref(), event.port)
        {
            let dest = host_port(host, port);
            if !self.p.allow_egress {
                missing.push(format!("no egress besides the gateway is allowed (connection to `{dest}`)"));
            } else if !self.p.allowed_egress.is_empty()
                && !self.p.allowed_egress.iter().any(|g| glob_match(&g.to_ascii_lowercase(), &dest))
            {
                missing
                    .push(format!("egress to `{dest}` is not allowed (allowed: {})", self.p.allowed_egress.join(", ")));
            }
        }
        if !self.p.allow_writable_paths && !sb.writable_paths.is_empty() {
            missing.push(format!(
                "no writable paths besides the workspace are allowed (has {})",
                sb.writable_paths.join(", ")
            ));
        }
        if missing.is_empty() {
            Ok(Outcome::allow())
        } else {
            Ok(Outcome::deny(format!(
                "the sandbox is below the minimum for environment `{env}`: {}",
                missing.join("; ")
            )))
        }
    }
}
