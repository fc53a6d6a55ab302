//! A synthetic agents repository, shared by the benchmarks.

use paddock_gitops::SourceFile;

/// `n` agent files and the policy they name.
pub fn agents(n: usize) -> Vec<SourceFile> {
    let mut files: Vec<SourceFile> = (0..n)
        .map(|i| {
            SourceFile::new(
                format!("agents/agent-{i}.yaml"),
                format!(
                    "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: agent-{i}\n  labels: {{team: t{}}}\nspec:\n  harness: custom\n  model: claude-sonnet-4-5\n  instructions: Keep the build green.\n  tools: [shell, read_file, write_file]\n  sandbox:\n    resources: {{cpu: 500m, memory: 1Gi}}\n    egress: [registry.npmjs.org:443]\n  policies: [baseline]\n",
                    i % 10
                ),
            )
        })
        .collect();
    files.push(SourceFile::new(
        "policies/baseline.yaml",
        "apiVersion: paddock.dev/v1alpha1\nkind: Policy\nmetadata: {name: baseline}\nspec:\n  rules:\n    - {name: budget, use: cost_budget, with: {max_cost_usd: 10, ask_thresholds_usd: [2, 5]}}\n    - {name: gh, use: github, with: {write_repos: [acme/app]}}\n",
    ));
    files
}
