//! The Agents and Policies a gateway decides with, as the controller pushes them (`PUT /v1/policies`) and as
//! replicas sharing a database pick them up from it: compiling a pushed set.

use serde::{Deserialize, Serialize};

/// What the controller pushes: every Agent and Policy of the cluster, as one revision.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyPush {
    pub revision: String,
    #[serde(default)]
    pub agents: Vec<paddock_api::Agent>,
    #[serde(default)]
    pub policies: Vec<paddock_api::Policy>,
}

impl PolicyPush {
    /// Compiles the set; what cannot be compiled is left out and returned.
    pub fn compile(&self) -> (paddock_policy::PolicySet, Vec<paddock_policy::SetError>) {
        build_set(&self.revision, &self.agents, &self.policies)
    }
}

pub(crate) fn namespace_of(ns: &Option<String>) -> String {
    ns.clone().unwrap_or_else(|| paddock_gitops::semantics::DEFAULT_NAMESPACE.to_owned())
}

/// Compiles Agents and Policies (objects without a namespace count as `default`). What cannot be compiled is
/// left out and returned, so that its sessions fail closed while the rest works.
pub fn build_set(
    revision: &str,
    agents: &[paddock_api::Agent],
    policies: &[paddock_api::Policy],
) -> (paddock_policy::PolicySet, Vec<paddock_policy::SetError>) {
    let meta = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        (namespace_of(&m.namespace), m.name.clone().unwrap_or_default(), labels_of(m))
    };
    let a: Vec<_> = agents.iter().map(|x| (meta(&x.metadata), &x.spec)).collect();
    let p: Vec<_> = policies.iter().map(|x| (meta(&x.metadata), &x.spec)).collect();
    let a: Vec<_> = a.iter().map(|((ns, n, l), s)| (ns.as_str(), n.as_str(), l, *s)).collect();
    let p: Vec<_> = p.iter().map(|((ns, n, l), s)| (ns.as_str(), n.as_str(), l, *s)).collect();
    paddock_policy::PolicySet::build(revision, &a, &p)
}

fn labels_of(
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> std::collections::BTreeMap<String, String> {
    m.labels.clone().unwrap_or_default()
}
