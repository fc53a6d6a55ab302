//! Real git repositories made in the test, reached through `file://` URLs.

#![allow(dead_code)]

use std::path::PathBuf;

use git2::{Oid, Repository, Signature};

/// A tree entry to write: path components, object, file mode.
type Entry<'a> = (Vec<&'a str>, Oid, i32);

pub struct Upstream {
    pub dir: tempfile::TempDir,
    pub repo: Repository,
}

impl Upstream {
    pub fn new() -> Upstream {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        Upstream { dir, repo }
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Commits exactly `files` (path, contents) as the whole tree on `branch`, on top of its current tip
    /// (or as a root commit when `parentless`, which rewrites history like a force-push).
    pub fn commit_tree(&self, branch: &str, files: &[(&str, &[u8])], parentless: bool) -> Oid {
        let tree = self.tree(files, &[]);
        self.commit(branch, tree, parentless)
    }

    /// Like [`Self::commit_tree`] with symlinks (path, target).
    pub fn commit_with_links(&self, branch: &str, files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Oid {
        let tree = self.tree(files, links);
        self.commit(branch, tree, false)
    }

    fn commit(&self, branch: &str, tree: Oid, parentless: bool) -> Oid {
        let sig = Signature::now("Test", "test@example.com").unwrap();
        let tree = self.repo.find_tree(tree).unwrap();
        let refname = format!("refs/heads/{branch}");
        let parent = if parentless {
            None
        } else {
            self.repo.find_reference(&refname).ok().and_then(|r| r.peel_to_commit().ok())
        };
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let oid = self.repo.commit(None, &sig, &sig, "change", &tree, &parents).unwrap();
        self.repo.reference(&refname, oid, true, "test").unwrap();
        oid
    }

    pub fn tag(&self, name: &str, target: Oid) {
        let obj = self.repo.find_object(target, None).unwrap();
        let sig = Signature::now("Test", "test@example.com").unwrap();
        self.repo.tag(name, &obj, &sig, "release", true).unwrap();
    }

    pub fn delete_branch(&self, branch: &str) {
        self.repo.find_reference(&format!("refs/heads/{branch}")).unwrap().delete().unwrap();
    }

    fn tree(&self, files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Oid {
        // Build nested trees from slash-separated paths.
        let mut entries: Vec<Entry> = Vec::new();
        for (path, content) in files {
            let blob = self.repo.blob(content).unwrap();
            entries.push((path.split('/').collect(), blob, 0o100644));
        }
        for (path, target) in links {
            let blob = self.repo.blob(target.as_bytes()).unwrap();
            entries.push((path.split('/').collect(), blob, 0o120000));
        }
        self.build(&entries)
    }

    fn build(&self, entries: &[Entry]) -> Oid {
        let mut b = self.repo.treebuilder(None).unwrap();
        let mut dirs: std::collections::BTreeMap<&str, Vec<Entry>> = Default::default();
        for (parts, oid, mode) in entries {
            if parts.len() == 1 {
                b.insert(parts[0], *oid, *mode).unwrap();
            } else {
                dirs.entry(parts[0]).or_default().push((parts[1..].to_vec(), *oid, *mode));
            }
        }
        for (name, sub) in dirs {
            let t = self.build(&sub);
            b.insert(name, t, 0o040000).unwrap();
        }
        b.write().unwrap()
    }
}
