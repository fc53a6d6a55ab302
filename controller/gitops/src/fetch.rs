//! Fetching a revision of an agents repository with libgit2 into a bare cache repository, and reading its
//! manifests straight from the git tree (no checkout: nothing in the repository touches the filesystem).

use std::path::Path;

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, FetchOptions, ObjectType, Oid, RemoteCallbacks,
    Repository, TreeWalkMode, TreeWalkResult,
};
use paddock_api::gitsource::GitRef;

use crate::source::{Content, MAX_FILE_BYTES, SourceFile, is_manifest_path};
use crate::validate::MAX_REPO_BYTES;

/// Credentials for the remote, from the GitSource's Secret.
#[derive(Clone, Default)]
pub enum Credentials {
    /// Public repository or `file://`.
    #[default]
    None,
    /// HTTPS with a token as the password (GitHub, GitLab, Gitea); the user name defaults to `git`.
    Token { username: Option<String>, token: String },
    /// SSH with a private key (PEM or OpenSSH format) and the `known_hosts` lines the server must match.
    Ssh { identity: String, passphrase: Option<String>, known_hosts: String },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        f.write_str(match self {
            Credentials::None => "None",
            Credentials::Token { .. } => "Token(..)",
            Credentials::Ssh { .. } => "Ssh(..)",
        })
    }
}

/// What to fetch.
#[derive(Clone, Debug)]
pub struct FetchRequest<'a> {
    pub url: &'a str,
    pub git_ref: &'a GitRef,
    /// Directory inside the repository (`./`, `deploy/agents`).
    pub path: &'a str,
    pub credentials: &'a Credentials,
}

/// A fetched revision and its manifest files.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// `main@sha1:<sha>` for a branch, `v1.2@sha1:<sha>` for a tag, `sha1:<sha>` for a commit, as Flux writes it.
    pub revision: String,
    /// The full commit SHA.
    pub commit: String,
    /// Manifest files under `path`, paths relative to it, sorted.
    pub files: Vec<SourceFile>,
    /// The manifests together exceeded [`MAX_REPO_BYTES`], so reading stopped; the revision must be refused.
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid ref: {0}")]
    InvalidRef(String),
    #[error("invalid path `{0}`: it must be a relative path inside the repository")]
    InvalidPath(String),
    #[error("{0} not found in {1}")]
    RefNotFound(String, String),
    #[error("path `{0}` is not a directory at revision {1}")]
    PathNotFound(String, String),
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("cache: {0}")]
    Io(#[from] std::io::Error),
}

const TARGET_REF: &str = "refs/paddock/target";

/// Fetches `req` into the bare repository `cache` (created when missing) and reads the manifests of the
/// resolved commit. Blocking: call it from a blocking task.
///
/// The local ref is force-updated, so a force-pushed branch is followed like any other move.
pub fn fetch(cache: &Path, req: &FetchRequest<'_>) -> Result<Fetched, FetchError> {
    let path = normalise_path(req.path)?;
    let repo = match Repository::open_bare(cache) {
        Ok(r) => r,
        Err(_) => {
            std::fs::create_dir_all(cache)?;
            Repository::init_bare(cache)?
        }
    };
    let (refspecs, label, wanted): (Vec<String>, Option<String>, String) = match req.git_ref {
        GitRef { commit: Some(c), .. } => {
            if !(7..=40).contains(&c.len()) || !c.chars().all(|ch| ch.is_ascii_hexdigit()) {
                return Err(FetchError::InvalidRef(format!("`{c}` is not a commit SHA")));
            }
            // A commit can only be asked for by what contains it; fetch every branch and tag.
            (
                vec!["+refs/heads/*:refs/paddock/heads/*".into(), "+refs/tags/*:refs/paddock/tags/*".into()],
                None,
                format!("commit {c}"),
            )
        }
        GitRef { tag: Some(t), .. } => {
            check_ref_name("tag", "refs/tags/", t)?;
            (vec![format!("+refs/tags/{t}:{TARGET_REF}")], Some(t.clone()), format!("tag `{t}`"))
        }
        GitRef { branch, .. } => {
            let b = branch.as_deref().unwrap_or("main");
            check_ref_name("branch", "refs/heads/", b)?;
            (vec![format!("+refs/heads/{b}:{TARGET_REF}")], Some(b.to_owned()), format!("branch `{b}`"))
        }
    };
    // A ref that vanished upstream must not leave its old target behind.
    if let Ok(mut r) = repo.find_reference(TARGET_REF) {
        r.delete()?;
    }
    let mut remote = repo.remote_anonymous(req.url)?;
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(callbacks(req.credentials));
    opts.download_tags(AutotagOption::None);
    let specs: Vec<&str> = refspecs.iter().map(String::as_str).collect();
    remote.fetch(&specs, Some(&mut opts), None)?;
    let commit = match (&req.git_ref.commit, label.is_some()) {
        (Some(c), _) => repo
            .revparse_single(c)
            .and_then(|o| o.peel_to_commit())
            .map_err(|_| FetchError::RefNotFound(wanted.clone(), req.url.to_owned()))?,
        _ => repo
            .find_reference(TARGET_REF)
            .and_then(|r| r.peel_to_commit())
            .map_err(|_| FetchError::RefNotFound(wanted.clone(), req.url.to_owned()))?,
    };
    let sha = commit.id().to_string();
    let revision = match &label {
        Some(l) => format!("{l}@sha1:{sha}"),
        None => format!("sha1:{sha}"),
    };
    let root = commit.tree()?;
    let tree = if path.is_empty() {
        root
    } else {
        let entry = root
            .get_path(Path::new(&path))
            .map_err(|_| FetchError::PathNotFound(req.path.to_owned(), revision.clone()))?;
        if entry.kind() != Some(ObjectType::Tree) {
            return Err(FetchError::PathNotFound(req.path.to_owned(), revision.clone()));
        }
        repo.find_tree(entry.id())?
    };
    let (files, truncated) = read_tree(&repo, &tree)?;
    Ok(Fetched { revision, commit: sha, files, truncated })
}

/// `./`, `.`, `` → ``; `./deploy/agents/` → `deploy/agents`; refuses absolute paths and `..`.
fn normalise_path(p: &str) -> Result<String, FetchError> {
    if p.starts_with('/') || p.split('/').any(|c| c == "..") {
        return Err(FetchError::InvalidPath(p.to_owned()));
    }
    Ok(p.split('/').filter(|c| !c.is_empty() && *c != ".").collect::<Vec<_>>().join("/"))
}

/// A name that would change the refspec (`*`, `:`, `..`, a leading `-`) is refused.
fn check_ref_name(what: &str, prefix: &str, name: &str) -> Result<(), FetchError> {
    if name.is_empty() || name.starts_with('-') || !git2::Reference::is_valid_name(&format!("{prefix}{name}")) {
        return Err(FetchError::InvalidRef(format!("`{name}` is not a valid {what} name")));
    }
    Ok(())
}

fn read_tree(repo: &Repository, tree: &git2::Tree<'_>) -> Result<(Vec<SourceFile>, bool), FetchError> {
    let odb = repo.odb()?;
    let mut entries: Vec<(String, Oid, i32)> = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let Ok(name) = entry.name() else { return TreeWalkResult::Skip };
        match entry.kind() {
            Some(ObjectType::Tree) if name.starts_with('.') => TreeWalkResult::Skip,
            Some(ObjectType::Blob) => {
                let rel = format!("{dir}{name}");
                if is_manifest_path(&rel) {
                    entries.push((rel, entry.id(), entry.filemode()));
                }
                TreeWalkResult::Ok
            }
            _ => TreeWalkResult::Ok,
        }
    })?;
    let mut files = Vec::with_capacity(entries.len());
    let mut total: u64 = 0;
    for (rel, id, mode) in entries {
        if mode == i32::from(git2::FileMode::Link) {
            // A symlink in git is a path; `paddock validate` refuses them too.
            files.push(SourceFile { path: rel, content: Content::NotRegular });
            continue;
        }
        let (size, _) = odb.read_header(id)?;
        let size = size as u64;
        if size > MAX_FILE_BYTES {
            files.push(SourceFile { path: rel, content: Content::TooLarge(size) });
            continue;
        }
        total += size;
        if total > MAX_REPO_BYTES {
            return Ok((files, true));
        }
        let blob = repo.find_blob(id)?;
        files.push(SourceFile::new(rel, blob.content()));
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((files, false))
}

fn callbacks(creds: &Credentials) -> RemoteCallbacks<'_> {
    let mut cb = RemoteCallbacks::new();
    let mut tried = false;
    cb.credentials(move |_url, user_from_url, allowed| {
        // libgit2 asks again after a refusal; answering twice would loop against the server.
        if tried {
            return Err(git2::Error::from_str("authentication failed with the credentials of the GitSource's Secret"));
        }
        tried = true;
        match creds {
            Credentials::Token { username, token } if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                Cred::userpass_plaintext(username.as_deref().unwrap_or("git"), token)
            }
            Credentials::Ssh { identity, passphrase, .. } if allowed.contains(CredentialType::SSH_KEY) => {
                Cred::ssh_key_from_memory(user_from_url.unwrap_or("git"), None, identity, passphrase.as_deref())
            }
            Credentials::None => Err(git2::Error::from_str(
                "the remote asks for credentials; set spec.secretRef to a Secret with `token` (HTTPS) or `identity` and `known_hosts` (SSH)",
            )),
            _ => Err(git2::Error::from_str("the remote asks for a kind of credentials the GitSource's Secret does not hold")),
        }
    });
    cb.certificate_check(move |cert, host| {
        let Some(hostkey) = cert.as_hostkey() else {
            // TLS: libgit2's own verification against the system roots decides.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let known = match creds {
            Credentials::Ssh { known_hosts, .. } => known_hosts.as_str(),
            _ => "",
        };
        match hostkey.hostkey() {
            Some(key) if known_hosts_match(known, host, key) => Ok(CertificateCheckStatus::CertificateOk),
            _ => Err(git2::Error::from_str(&format!(
                "the SSH host key of `{host}` is not in the Secret's `known_hosts`; add the line `ssh-keyscan {host}` prints"
            ))),
        }
    });
    cb
}

/// Whether `known_hosts` (OpenSSH format, unhashed host names) lists `key` for `host`.
pub fn known_hosts_match(known_hosts: &str, host: &str, key: &[u8]) -> bool {
    use base64::Engine;
    known_hosts.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).any(|line| {
        let mut parts = line.split_whitespace();
        let (Some(hosts), Some(_kind), Some(b64)) = (parts.next(), parts.next(), parts.next()) else { return false };
        let host_ok = hosts.split(',').any(|h| {
            h == host || h.strip_prefix('[').and_then(|r| r.split_once("]:")).is_some_and(|(name, _)| name == host)
        });
        host_ok && base64::engine::general_purpose::STANDARD.decode(b64).is_ok_and(|k| k == key)
    })
}

/// The branch checked out in a local repository (what `paddock up --repo` follows), or `None` when HEAD is
/// detached or the directory is not a git repository.
pub fn local_branch(path: &Path) -> Option<String> {
    let repo = Repository::open(path).ok()?;
    let head = repo.head().ok()?;
    if head.is_branch() { head.shorthand().ok().map(str::to_owned) } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_confined() {
        assert_eq!(normalise_path("./").unwrap(), "");
        assert_eq!(normalise_path("").unwrap(), "");
        assert_eq!(normalise_path("./deploy//agents/").unwrap(), "deploy/agents");
        assert!(normalise_path("../x").is_err());
        assert!(normalise_path("/etc").is_err());
    }

    #[test]
    fn ref_names_cannot_reshape_the_refspec() {
        assert!(check_ref_name("branch", "refs/heads/", "feature/x").is_ok());
        for bad in ["a:refs/heads/b", "*", "a..b", "-x", "", "a b"] {
            assert!(check_ref_name("branch", "refs/heads/", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn known_hosts_lines() {
        use base64::Engine;
        let key = b"\x00\x00\x00\x0bssh-ed25519 key bytes";
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let kh =
            format!("# comment\ngithub.com,140.82.121.4 ssh-ed25519 {b64}\n[git.example.com]:2222 ssh-ed25519 {b64}\n");
        assert!(known_hosts_match(&kh, "github.com", key));
        assert!(known_hosts_match(&kh, "git.example.com", key));
        assert!(!known_hosts_match(&kh, "gitlab.com", key));
        assert!(!known_hosts_match(&kh, "github.com", b"another key"));
        assert!(!known_hosts_match("", "github.com", key));
    }
}
