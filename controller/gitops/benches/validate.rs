//! `paddock validate` on a large repository and on hostile files.
//!
//! cargo bench -p paddock-gitops --bench validate

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use paddock_gitops::{SourceFile, validate_files};

fn agents(n: usize) -> Vec<SourceFile> {
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

fn main() {
    let repo = agents(1000);
    assert!(validate_files(&repo).is_ok());
    let many_keys: String = (0..70_000).map(|i| format!("    k{i}: v\n")).collect();
    let many_keys = SourceFile::new(
        "agents/keys.yaml",
        format!("apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: a\n  labels:\n{many_keys}"),
    );
    let many_errors: String = (0..50_000).map(|i| format!("    k{i}: {i}\n")).collect();
    let many_errors = SourceFile::new(
        "agents/errors.yaml",
        format!(
            "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: a\n  labels:\n{many_errors}spec: {{harness: custom, model: gpt-5}}\n"
        ),
    );
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    let mut g = c.benchmark_group("validate");
    g.throughput(Throughput::Elements(repo.len() as u64));
    g.bench_function("1,000 agent files + 1 policy", |b| b.iter(|| validate_files(black_box(&repo))));
    g.throughput(Throughput::Elements(1));
    g.bench_function("70,000-key mapping (1 MiB)", |b| {
        b.iter(|| validate_files(black_box(std::slice::from_ref(&many_keys))))
    });
    g.bench_function("50,000 wrong values (0.9 MiB)", |b| {
        b.iter(|| validate_files(black_box(std::slice::from_ref(&many_errors))))
    });
    g.finish();
    c.final_summary();
}
