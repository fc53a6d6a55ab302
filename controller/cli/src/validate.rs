//! `paddock validate`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::ValueEnum;
use paddock_gitops::{Report, load_dir, validate_files};

#[derive(clap::Args)]
pub struct Args {
    /// Directories (or files) to check. All of them are checked together as one repository.
    #[arg(default_value = ".")]
    paths: Vec<PathBuf>,
    /// `text` for people, `json` for scripts.
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    for path in &args.paths {
        let mut found = load_dir(path).with_context(|| format!("cannot read {}", path.display()))?;
        if found.is_empty() {
            bail!(
                "{}: no manifests found (looked for *.yaml and *.yml, skipping hidden directories and *.test.yaml)",
                path.display()
            );
        }
        if args.paths.len() > 1 && path.is_dir() {
            for f in &mut found {
                f.path = path.join(&f.path).display().to_string();
            }
        }
        files.extend(found);
    }
    let report = validate_files(&files);
    match args.output {
        Output::Text => {
            let text = report.render();
            if report.is_ok() {
                println!("{text}");
            } else {
                eprintln!("{text}");
            }
        }
        Output::Json => println!("{}", serde_json::to_string_pretty(&to_json(&report))?),
    }
    Ok(if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn to_json(report: &Report) -> serde_json::Value {
    let diagnostics: Vec<_> = report
        .diagnostics
        .iter()
        .map(|d| {
            serde_json::json!({
                "file": d.file, "line": d.pos.line, "column": d.pos.column,
                "severity": format!("{:?}", d.severity).to_lowercase(),
                "field": d.field, "message": d.message,
            })
        })
        .collect();
    let objects: Vec<_> = report
        .objects
        .iter()
        .map(|o| serde_json::json!({"kind": o.kind.as_str(), "name": o.name, "namespace": o.namespace, "file": o.file}))
        .collect();
    serde_json::json!({
        "ok": report.is_ok(), "files": report.files, "errors": report.errors(), "warnings": report.warnings(),
        "objects": objects, "diagnostics": diagnostics,
    })
}
