//! `paddock validate` on a large repository and on hostile files.
//!
//! cargo bench -p paddock-gitops --bench validate

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use paddock_gitops::{SourceFile, validate_files};

#[path = "common/mod.rs"]
mod common;
use common::agents;

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
