//! Where `paddock up` reads Agents and Policies from: a directory (its files as they are) or a local git
//! repository (the committed HEAD of its branch, like the GitSource controller reads a remote). A revision
//! that does not validate is refused whole; the last good one stays live.

use std::path::{Path, PathBuf};

use anyhow::Context;
use paddock_api::gitsource::GitRef;
use paddock_gitops::fetch::{Credentials, FetchRequest, fetch, local_branch};
use paddock_gitops::{load_dir, validate_files};
use paddock_policy::PolicySet;
use sha2::{Digest, Sha256};

pub struct RepoSource {
    pub path: PathBuf,
    /// The branch followed, when the path is a git repository.
    pub branch: Option<String>,
    cache: PathBuf,
}

/// A loaded revision.
pub struct Revision {
    pub id: String,
    pub set: PolicySet,
    pub agents: Vec<String>,
}

impl RepoSource {
    pub fn new(path: &Path, data_dir: &Path) -> anyhow::Result<RepoSource> {
        let path =
            std::fs::canonicalize(path).with_context(|| format!("repository `{}` does not exist", path.display()))?;
        let branch = local_branch(&path);
        Ok(RepoSource { path, branch, cache: data_dir.join("repo-cache") })
    }

    /// Something cheap that changes when the revision may have: the branch's commit, or the files' sizes
    /// and times.
    pub fn fingerprint(&self) -> String {
        if self.branch.is_some() {
            let head = std::fs::read_to_string(self.path.join(".git/HEAD")).unwrap_or_default();
            let reference = head.trim().strip_prefix("ref: ").unwrap_or("").to_owned();
            let commit = std::fs::read_to_string(self.path.join(".git").join(&reference)).unwrap_or_default();
            let packed = std::fs::metadata(self.path.join(".git/packed-refs")).and_then(|m| m.modified()).ok();
            return format!("{head}{commit}{packed:?}");
        }
        let mut h = Sha256::new();
        let mut stack = vec![self.path.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else { continue };
            let mut entries: Vec<_> = rd.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let Ok(m) = e.metadata() else { continue };
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    h.update(e.path().to_string_lossy().as_bytes());
                    h.update(m.len().to_le_bytes());
                    h.update(format!("{:?}", m.modified().ok()).as_bytes());
                }
            }
        }
        paddock_gateway::gateway::hex_of(&h.finalize())
    }

    /// Loads and validates the current revision. The error is the validator's report.
    pub fn load(&self) -> anyhow::Result<Revision> {
        let (id, files) = match &self.branch {
            Some(branch) => {
                let url = format!("file://{}", self.path.display());
                let git_ref = GitRef { branch: Some(branch.clone()), ..GitRef::default() };
                let req = FetchRequest { url: &url, git_ref: &git_ref, path: ".", credentials: &Credentials::None };
                let f = fetch(&self.cache, &req).with_context(|| format!("cannot read `{}`", self.path.display()))?;
                if f.truncated {
                    anyhow::bail!("the revision {} is larger than Paddock reads; refused", f.revision);
                }
                (f.revision, f.files)
            }
            None => {
                let files = load_dir(&self.path).with_context(|| format!("cannot read `{}`", self.path.display()))?;
                let mut h = Sha256::new();
                for f in &files {
                    h.update(f.path.as_bytes());
                    if let paddock_gitops::source::Content::Bytes(b) = &f.content {
                        h.update(b);
                    }
                }
                (format!("dir:sha256:{}", &paddock_gateway::gateway::hex_of(&h.finalize())[..12]), files)
            }
        };
        let report = validate_files(&files);
        if !report.is_ok() {
            anyhow::bail!("revision {id} does not validate:\n{}", report.render());
        }
        let set = paddock_gateway::server::policy_set(&id, &report.objects)?;
        let mut agents: Vec<String> = set.agents().map(|a| a.name.clone()).collect();
        agents.sort();
        Ok(Revision { id, set, agents })
    }
}
