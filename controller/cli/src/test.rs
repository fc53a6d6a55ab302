//! `paddock test`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use paddock_gitops::policy_tests::{find_test_files, run_test_file};

#[derive(clap::Args)]
pub struct Args {
    /// Test files (`*.test.yaml`) or directories to search for them.
    #[arg(default_value = ".")]
    paths: Vec<PathBuf>,
    /// Show every step's decision, not only failures.
    #[arg(long, short)]
    verbose: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    for p in &args.paths {
        files.extend(find_test_files(p).with_context(|| format!("cannot read {}", p.display()))?);
    }
    if files.is_empty() {
        bail!(
            "no policy test files (*.test.yaml) found under {}",
            args.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let (mut passed, mut failed, mut broken) = (0, 0, 0);
    for f in &files {
        let report = run_test_file(f);
        println!("{}", report.file);
        for e in &report.errors {
            println!("  {e}");
        }
        if !report.errors.is_empty() {
            broken += 1;
            continue;
        }
        println!(
            "  policies: {}",
            if report.applied.is_empty() { "(none select the agent)".into() } else { report.applied.join(", ") }
        );
        for s in &report.skipped {
            println!("  skipped:  {s}");
        }
        for case in &report.cases {
            if case.passed() {
                passed += 1;
                println!("  ✓ {}", case.name);
            } else {
                failed += 1;
                println!("  ✗ {}", case.name);
                for m in &case.mismatches {
                    println!("      step {}:", m.step);
                    for e in &m.expected {
                        println!("        - expected {e}");
                    }
                    for a in &m.actual {
                        println!("        + actual   {a}");
                    }
                }
            }
            if args.verbose {
                for (i, d) in case.decisions.iter().enumerate() {
                    println!("      step {}: {:?} {}", i + 1, d.verdict, d.reason);
                }
            }
        }
    }
    if broken > 0 {
        println!("{broken} test file{} could not run", if broken == 1 { "" } else { "s" });
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && broken == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
