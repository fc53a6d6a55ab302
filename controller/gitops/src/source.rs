//! Reading the manifest files of a directory, with a size cap so a huge file costs nothing to refuse.

use std::io::Read;
use std::path::Path;

/// Largest manifest file accepted (1 MiB; the API server stores at most ~1.5 MiB per object).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A file of a repository, relative path and contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    pub path: String,
    pub content: Content,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Bytes(Vec<u8>),
    /// Larger than [`MAX_FILE_BYTES`]; not read.
    TooLarge(u64),
    /// A symlink or another non-regular file; not followed.
    NotRegular,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        let bytes = bytes.into();
        let content = if bytes.len() as u64 > MAX_FILE_BYTES {
            Content::TooLarge(bytes.len() as u64)
        } else {
            Content::Bytes(bytes)
        };
        SourceFile { path: path.into(), content }
    }
}

/// Whether a repository-relative path is a manifest `paddock validate` reads: `*.yaml`/`*.yml`, not under
/// a hidden directory (`.github/`), and not a policy test file (`*.test.yaml`, read by `paddock test`).
pub fn is_manifest_path(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
    let test = name.ends_with(".test.yaml") || name.ends_with(".test.yml");
    let hidden = rel.split('/').any(|c| c.starts_with('.') && c != "." && c != "..");
    yaml && !test && !hidden
}

/// Reads every manifest under `root` (recursively, sorted, not following directory symlinks). When `root`
/// is a file, reads just that file.
pub fn load_dir(root: &Path) -> std::io::Result<Vec<SourceFile>> {
    let meta = std::fs::metadata(root)?;
    if meta.is_file() {
        let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(vec![read_capped(root, &name, meta.len())?]);
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let rel = path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            let ty = entry.file_type()?;
            if ty.is_dir() {
                if !rel.rsplit('/').next().unwrap_or("").starts_with('.') {
                    stack.push(path);
                }
            } else if is_manifest_path(&rel) {
                if !ty.is_file() {
                    // A symlink could point outside the repository (a token, /proc/self/environ) and a FIFO
                    // would hang the read: neither is followed.
                    out.push(SourceFile { path: rel, content: Content::NotRegular });
                    continue;
                }
                let len = entry.metadata()?.len();
                out.push(read_capped(&path, &rel, len)?);
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn read_capped(path: &Path, rel: &str, len: u64) -> std::io::Result<SourceFile> {
    if len > MAX_FILE_BYTES {
        return Ok(SourceFile { path: rel.to_owned(), content: Content::TooLarge(len) });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    std::fs::File::open(path)?.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    Ok(SourceFile::new(rel, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths() {
        assert!(is_manifest_path("agents/coder.yaml"));
        assert!(is_manifest_path("policies/budget.yml"));
        assert!(!is_manifest_path(".github/workflows/ci.yaml"));
        assert!(!is_manifest_path("policies/tests/budget.test.yaml"));
        assert!(!is_manifest_path("README.md"));
    }
}
