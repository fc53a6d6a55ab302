//! Which Policies govern which Agent, and in what order — compiled once per revision so that each decision
//! only looks up a list. Used by the gateway (to decide) and by the controller (to report, in an Agent's
//! status, the Policies that apply to it).

use std::collections::{BTreeMap, HashMap};

use paddock_api::{AgentSpec, PolicySpec};

use crate::engine::{CompiledPolicy, Level, RuleError, compile_agent_rules, compile_policy, selects};

/// An Agent with everything needed to decide for its sessions.
#[derive(Clone, Debug)]
pub struct GovernedAgent {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub spec: AgentSpec,
    /// In evaluation order: the Agent's inline rules, the Policies it names (in its order), then the other
    /// Policies of its namespace that select it (by name).
    pub policies: Vec<CompiledPolicy>,
}

impl GovernedAgent {
    /// Names of the Policy objects that apply, in order (inline rules excluded).
    pub fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().filter(|p| !p.name.starts_with("agent/")).map(|p| p.name.as_str())
    }
}

/// A problem that keeps one object out of the set; the rest still works.
#[derive(Clone, Debug, PartialEq)]
pub struct SetError {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub message: String,
}

/// Every Agent of a revision with its compiled policies.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    pub revision: String,
    agents: HashMap<(String, String), GovernedAgent>,
}

/// Input object: namespace, name, labels, spec.
pub type Named<'a, S> = (&'a str, &'a str, &'a BTreeMap<String, String>, &'a S);

impl PolicySet {
    /// Compiles every Agent's policy list. A Policy with invalid rules, or an Agent that names a Policy that
    /// does not exist, is an error for that Agent: it is left out, so that sessions of it fail closed rather
    /// than run with fewer rules than its authors wrote.
    pub fn build(
        revision: &str,
        agents: &[Named<'_, AgentSpec>],
        policies: &[Named<'_, PolicySpec>],
    ) -> (PolicySet, Vec<SetError>) {
        let mut errors = Vec::new();
        let mut compiled: BTreeMap<(&str, &str), Result<CompiledPolicy, Vec<RuleError>>> = BTreeMap::new();
        for (ns, name, _, spec) in policies {
            let c = compile_policy(name, Level::Namespace, spec);
            if let Err(errs) = &c {
                errors.push(SetError {
                    kind: "Policy",
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    message: rule_errors(errs),
                });
            }
            compiled.insert((ns, name), c);
        }
        let mut set = PolicySet { revision: revision.to_owned(), agents: HashMap::new() };
        'agents: for (ns, name, labels, spec) in agents {
            let fail = |message: String| SetError {
                kind: "Agent",
                namespace: ns.to_string(),
                name: name.to_string(),
                message,
            };
            let mut list = Vec::new();
            match compile_agent_rules(name, &spec.rules) {
                Ok(p) if p.rules.is_empty() => {}
                Ok(p) => list.push(p),
                Err(errs) => {
                    errors.push(fail(rule_errors(&errs)));
                    continue;
                }
            }
            for wanted in &spec.policies {
                match compiled.get(&(*ns, wanted.as_str())) {
                    Some(Ok(p)) => {
                        let mut p = p.clone();
                        p.level = Level::Agent;
                        list.push(p);
                    }
                    Some(Err(_)) => {
                        errors.push(fail(format!("Policy `{wanted}` it names has invalid rules")));
                        continue 'agents;
                    }
                    None => {
                        errors.push(fail(format!("Policy `{wanted}` it names does not exist in namespace `{ns}`")));
                        continue 'agents;
                    }
                }
            }
            for (pns, pname, _, pspec) in policies {
                if pns != ns || spec.policies.iter().any(|w| w == pname) || !selects(pspec, name, labels) {
                    continue;
                }
                match compiled.get(&(*pns, *pname)) {
                    Some(Ok(p)) => list.push(p.clone()),
                    _ => {
                        errors.push(fail(format!("Policy `{pname}` that selects it has invalid rules")));
                        continue 'agents;
                    }
                }
            }
            let agent = GovernedAgent {
                namespace: ns.to_string(),
                name: name.to_string(),
                labels: (*labels).clone(),
                spec: (*spec).clone(),
                policies: list,
            };
            set.agents.insert((ns.to_string(), name.to_string()), agent);
        }
        (set, errors)
    }

    pub fn agent(&self, namespace: &str, name: &str) -> Option<&GovernedAgent> {
        self.agents.get(&(namespace.to_owned(), name.to_owned()))
    }

    pub fn agents(&self) -> impl Iterator<Item = &GovernedAgent> {
        self.agents.values()
    }
}

fn rule_errors(errs: &[RuleError]) -> String {
    errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(yaml: &str) -> AgentSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }
    fn policy(yaml: &str) -> PolicySpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn orders_inline_named_then_selecting_and_refuses_missing_or_broken() {
        let no = BTreeMap::new();
        let team: BTreeMap<String, String> = [("team".to_string(), "web".to_string())].into();
        let a = agent(
            "harness: custom\nmodel: scripted\npolicies: [zz-named]\nrules:\n- {name: r, use: max_tool_calls, with: {limit: 3}}\n",
        );
        let missing = agent("harness: custom\nmodel: scripted\npolicies: [nope]\n");
        let broken_ref = agent("harness: custom\nmodel: scripted\npolicies: [broken]\n");
        let named = policy("agents: [none]\nrules:\n- {name: n, use: detect_loop}\n");
        let sel = policy("selector: {matchLabels: {team: web}}\nrules:\n- {name: s, use: blast_radius}\n");
        let other = policy("selector: {matchLabels: {team: data}}\nrules:\n- {name: o, use: blast_radius}\n");
        let broken = policy("agents: [x]\nrules:\n- {name: b, use: max_tool_calls, with: {limit: -1}}\n");
        let (set, errors) = PolicySet::build(
            "rev1",
            &[("t", "a", &team, &a), ("t", "m", &no, &missing), ("t", "br", &no, &broken_ref)],
            &[
                ("t", "zz-named", &no, &named),
                ("t", "a-sel", &no, &sel),
                ("t", "other", &no, &other),
                ("t", "broken", &no, &broken),
                ("elsewhere", "a-sel2", &no, &sel),
            ],
        );
        let g = set.agent("t", "a").expect("agent a governed");
        let names: Vec<&str> = g.policies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["agent/a", "zz-named", "a-sel"], "inline, named, then selecting; other namespaces never");
        assert_eq!(g.policy_names().collect::<Vec<_>>(), ["zz-named", "a-sel"]);
        assert!(set.agent("t", "m").is_none() && set.agent("t", "br").is_none(), "fail closed: left out");
        let msgs: Vec<String> = errors.iter().map(|e| format!("{} {}: {}", e.kind, e.name, e.message)).collect();
        assert!(msgs.iter().any(|m| m.starts_with("Policy broken:") && m.contains("limit")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("Agent m: Policy `nope` it names does not exist")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("Agent br: Policy `broken` it names has invalid rules")), "{msgs:?}");
    }
}
