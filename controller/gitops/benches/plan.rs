//! What the GitSource reconciler does with a revision before it talks to the API server: validate every
//! file, render the manifests to apply, and plan apply/prune against an inventory.
//!
//! cargo bench -p paddock-gitops --bench plan

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use paddock_gitops::SourceFile;
use paddock_gitops::plan::{LiveObject, ObjectKey, PlanInput, Rendered, SourceRef, plan, render_revision};

#[path = "common/mod.rs"]
mod common;
use common::agents as repo;

const SOURCE: SourceRef<'static> = SourceRef { name: "agents", namespace: "team-a" };

/// Validate + render + plan, as one sync does: the previous revision had agents 100..1100, so 100 are new,
/// 100 are pruned and 900 are re-applied.
fn sync(files: &[SourceFile], inventory: &[ObjectKey], live: &BTreeMap<ObjectKey, LiveObject>) -> usize {
    let Rendered::Ok { objects, .. } = render_revision(files, false, SOURCE, "main@sha1:0123456789abcdef") else {
        panic!("the bench repository is valid")
    };
    let input = PlanInput {
        desired: objects.iter().map(|o| o.key.clone()).collect(),
        inventory: inventory.to_vec(),
        live: live.clone(),
        prune: true,
        suspend: false,
    };
    let p = plan(&input);
    p.apply.len() + p.prune.len()
}

fn main() {
    let files = repo(1000);
    let key = |i: usize| ObjectKey::new(paddock_api::crds::Kind::Agent, "team-a", format!("agent-{i}"));
    let inventory: Vec<ObjectKey> = (100..1100).map(key).collect();
    let live: BTreeMap<ObjectKey, LiveObject> = inventory.iter().map(|k| (k.clone(), LiveObject::default())).collect();
    assert_eq!(sync(&files, &inventory, &live), 1001 + 100);
    let input = PlanInput {
        desired: (0..1000).map(key).collect(),
        inventory: inventory.clone(),
        live: live.clone(),
        prune: true,
        suspend: false,
    };
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    let mut g = c.benchmark_group("gitsource");
    g.throughput(Throughput::Elements(files.len() as u64));
    g.bench_function("validate + render + plan, 1,000 agent files", |b| {
        b.iter(|| sync(black_box(&files), black_box(&inventory), black_box(&live)))
    });
    g.bench_function("plan only, 1,000 desired vs 1,000 inventory", |b| b.iter(|| plan(black_box(&input))));
    g.finish();
    c.final_summary();
}
