//! `paddock crdgen` and `paddock schema`: files generated from the API types, with a `--check` mode for CI.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use paddock_api::crds::{Kind, any_manifest_schema, crd_yaml, manifest_schema};

#[derive(clap::Args)]
pub struct CrdgenArgs {
    /// Directory to write into.
    #[arg(long, default_value = "crds")]
    out: PathBuf,
    /// Write nothing; exit 1 if the directory differs from what the types generate.
    #[arg(long)]
    check: bool,
}

#[derive(clap::Args)]
pub struct SchemaArgs {
    /// Directory to write into.
    #[arg(long, default_value = "schemas")]
    out: PathBuf,
    /// Write nothing; exit 1 if the directory differs from what the types generate.
    #[arg(long)]
    check: bool,
}

pub fn crdgen(args: CrdgenArgs) -> anyhow::Result<ExitCode> {
    let files = Kind::ALL.iter().map(|k| (k.crd_file_name(), crd_yaml(*k))).collect();
    sync_dir(&args.out, files, args.check, "paddock crdgen")
}

pub fn schema(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).expect("schemas serialise") + "\n";
    let mut files: Vec<(String, String)> =
        Kind::ALL.iter().map(|k| (k.schema_file_name(), pretty(&manifest_schema(*k)))).collect();
    files.push(("paddock.schema.json".into(), pretty(&any_manifest_schema())));
    sync_dir(&args.out, files, args.check, "paddock schema")
}

/// Writes `files` into `dir`, or with `check` reports which differ. Files in `dir` that are not generated
/// count as differences too, so a renamed kind cannot leave a stale file behind.
fn sync_dir(dir: &Path, files: Vec<(String, String)>, check: bool, command: &str) -> anyhow::Result<ExitCode> {
    let mut stale = Vec::new();
    for (name, content) in &files {
        let path = dir.join(name);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() != Some(content.as_str()) {
            stale.push(path.display().to_string());
            if !check {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
                std::fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !files.iter().any(|(n, _)| *n == name) {
                stale.push(format!("{} (not generated)", entry.path().display()));
            }
        }
    }
    if check {
        if stale.is_empty() {
            println!("{}: up to date ({} files)", dir.display(), files.len());
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("{}: out of date; run `{command} --out {}`:", dir.display(), dir.display());
        for s in &stale {
            eprintln!("  {s}");
        }
        return Ok(ExitCode::FAILURE);
    }
    for s in &stale {
        println!("wrote {s}");
    }
    println!("{}: {} files, {} changed", dir.display(), files.len(), stale.len());
    Ok(ExitCode::SUCCESS)
}
