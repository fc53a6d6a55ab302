//! A bare mirror of each remote a session pushes to, under the gateway's data directory
//! (`egress-mirrors/<host>/<owner>/<repo>.git`), fetched from the real host with the session's credential
//! right before a push is judged. Its refs are the remote's current values; its objects are the history a
//! pushed pack is checked against. One refresh (and the judgment after it) at a time per mirror.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::git::{Git, GitError};
use super::limits::PushLimits;
use crate::config::EgressConfig;
use crate::egress::limit::{PerSession, Slot};

/// How long a fetch may take (a first fetch copies the whole repository).
const FETCH_LIMIT: Duration = Duration::from_secs(600);
const LOCAL_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("{0}")]
    Git(#[from] GitError),
    #[error("cannot prepare the mirror directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("`{0}` cannot name a mirror")]
    BadName(String),
}

/// A remote repository as the push named it.
#[derive(Clone)]
pub struct Remote {
    /// `https` (`http` for tests against a plain-HTTP server).
    pub scheme: String,
    /// Lowercase host name.
    pub host: String,
    pub port: u16,
    /// The repository's path on the host, e.g. `/acme/app.git` (what precedes `/git-receive-pack`).
    pub path: String,
    /// `owner/name`.
    pub repo: String,
    /// The header the broker sends to this host for the session (name, value).
    pub credential: Option<(String, String)>,
}

/// Never shows the credential.
impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({}://{}:{}{})", self.scheme, self.host, self.port, self.path)
    }
}

impl Remote {
    pub fn url(&self) -> String {
        let default = if self.scheme == "http" { 80 } else { 443 };
        match self.port == default {
            true => format!("{}://{}{}", self.scheme, self.host, self.path),
            false => format!("{}://{}:{}{}", self.scheme, self.host, self.port, self.path),
        }
    }
}

/// The mirrors of one gateway, and its pushes in progress.
pub struct Mirrors {
    root: PathBuf,
    git: Git,
    resolve: BTreeMap<String, IpAddr>,
    ca_bundle: Option<PathBuf>,
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    limits: PushLimits,
    /// Pushes in progress, per session (`limits.per_session` at most).
    in_flight: PerSession,
}

impl std::fmt::Debug for Mirrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirrors").field("root", &self.root).finish()
    }
}

/// A mirror just refreshed, held (no other refresh of it runs) until dropped.
pub struct Mirror {
    pub path: PathBuf,
    /// The remote's refs (`refs/…` → object id), or why they are not known (the fetch failed).
    pub refs: Result<HashMap<String, String>, String>,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl Mirrors {
    /// Mirrors kept under `root` (`<data dir>/egress-mirrors`), reached as `egress` says: names resolved by
    /// `egress.resolve`, servers trusted by the system's roots plus `egress.trust`.
    pub fn new(root: PathBuf, egress: &EgressConfig) -> Result<Mirrors, MirrorError> {
        std::fs::create_dir_all(&root)?;
        let git = Git::new(&root.join(".home"))?;
        let ca_bundle = match egress.trust.is_empty() {
            true => None,
            false => Some(write_ca_bundle(&root, &egress.trust)?),
        };
        Ok(Mirrors {
            root,
            git,
            resolve: egress.resolve.clone(),
            ca_bundle,
            locks: Mutex::new(HashMap::new()),
            limits: PushLimits::default(),
            in_flight: PerSession::new(PushLimits::default().per_session),
        })
    }

    /// The same mirrors with other push limits (the defaults are [`PushLimits::default`]).
    pub fn with_push_limits(mut self, limits: PushLimits) -> Mirrors {
        self.in_flight = PerSession::new(limits.per_session);
        self.limits = limits;
        self
    }

    pub fn push_limits(&self) -> &PushLimits {
        &self.limits
    }

    /// Pushes of `session` in progress.
    pub fn pushes_in_progress(&self, session: &str) -> usize {
        self.in_flight.open(session)
    }

    /// A slot for one more push of `session`, or `None` when `push_limits().per_session` are in progress.
    pub fn begin_push(&self, session: &str) -> Option<Slot> {
        self.in_flight.acquire(session)
    }

    pub fn git(&self) -> &Git {
        &self.git
    }

    /// Where quarantines of pushed packs are made (next to the mirrors, on the same disk).
    pub fn scratch(&self) -> PathBuf {
        self.root.join(".quarantine")
    }

    /// Fetches `remote` into its mirror (created on first use) and reads its refs. A failed fetch is no
    /// error: the mirror's `refs` say why, and nothing can be shown fast-forward against it.
    pub async fn refresh(&self, remote: &Remote) -> Result<Mirror, MirrorError> {
        let path = self.path_of(remote)?;
        let lock = self.locks.lock().expect("mirror locks").entry(path.clone()).or_default().clone();
        let held = lock.lock_owned().await;
        if !path.join("HEAD").exists() {
            std::fs::create_dir_all(&path)?;
            self.git.ok(&path, &["init", "--bare", "--quiet", "."], &[], None, LOCAL_LIMIT).await?;
        }
        let refs = match self.fetch(&path, remote).await {
            Ok(()) => Ok(self.read_refs(&path).await?),
            Err(e) => {
                tracing::warn!(remote = ?remote, error = %e, "mirror fetch failed; no update of this push is fast-forward");
                Err(e.to_string())
            }
        };
        Ok(Mirror { path, refs, _held: held })
    }

    async fn fetch(&self, path: &Path, remote: &Remote) -> Result<(), GitError> {
        let mut config = vec![
            ("protocol.allow".to_owned(), "never".to_owned()),
            (format!("protocol.{}.allow", remote.scheme), "always".to_owned()),
            // A redirect would take the credential to wherever the host points.
            ("http.followRedirects".to_owned(), "false".to_owned()),
        ];
        if let Some((name, value)) = &remote.credential {
            config.push(("http.extraHeader".to_owned(), format!("{name}: {value}")));
        }
        if let Some(ip) = self.resolve.get(&remote.host) {
            let ip = match ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            };
            config.push(("http.curloptResolve".to_owned(), format!("{}:{}:{ip}", remote.host, remote.port)));
        }
        if let Some(bundle) = &self.ca_bundle {
            config.push(("http.sslCAInfo".to_owned(), bundle.display().to_string()));
        }
        let url = remote.url();
        // Every ref but GitHub's read-only pull-request refs; refs gone upstream go here too (`--prune`).
        let args = [
            "fetch",
            "--quiet",
            "--prune",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            url.as_str(),
            "+refs/*:refs/*",
            "^refs/pull/*",
        ];
        self.git.ok(path, &args, &config, None, FETCH_LIMIT).await.map(drop)
    }

    async fn read_refs(&self, path: &Path) -> Result<HashMap<String, String>, GitError> {
        let out =
            self.git.ok(path, &["for-each-ref", "--format=%(objectname) %(refname)"], &[], None, LOCAL_LIMIT).await?;
        Ok(out.lines().filter_map(|l| l.split_once(' ')).map(|(oid, name)| (name.to_owned(), oid.to_owned())).collect())
    }

    /// `<root>/<host>[_<port>]/<owner>/<name>.git`, lowercase (GitHub's names are case-insensitive, so two
    /// spellings share one mirror and one lock).
    fn path_of(&self, remote: &Remote) -> Result<PathBuf, MirrorError> {
        let bad = || MirrorError::BadName(format!("{}/{}", remote.host, remote.repo));
        let (owner, name) = remote.repo.split_once('/').ok_or_else(bad)?;
        let host = match remote.port {
            443 => remote.host.clone(),
            p => format!("{}_{p}", remote.host),
        };
        if !host.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(bad());
        }
        let mut path = self.root.clone();
        for part in [host.as_str(), owner, &format!("{name}.git")] {
            if !is_safe_component(part) {
                return Err(bad());
            }
            path.push(part.to_ascii_lowercase());
        }
        Ok(path)
    }
}

/// A path component made of letters, digits, `.`, `-`, `_`, starting with a letter or digit (GitHub's
/// `.github` repository is `.github.git` here, which starts with a dot but is never `.` or `..`).
fn is_safe_component(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || (b == b'.' && s.len() > 2 && s != ".."))
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The system's roots plus `trust`, as one PEM file git's TLS reads.
fn write_ca_bundle(root: &Path, trust: &[PathBuf]) -> Result<PathBuf, MirrorError> {
    const SYSTEM: &[&str] = &[
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];
    let mut pem = String::new();
    let system =
        std::env::var_os("SSL_CERT_FILE").map(PathBuf::from).into_iter().chain(SYSTEM.iter().map(PathBuf::from));
    if let Some(text) = system.filter_map(|p| std::fs::read_to_string(p).ok()).next() {
        pem.push_str(&text);
        pem.push('\n');
    }
    for t in trust {
        pem.push_str(&std::fs::read_to_string(t)?);
        pem.push('\n');
    }
    let path = root.join("ca-bundle.pem");
    std::fs::write(&path, pem)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_paths_stay_under_the_root() {
        let root = tempfile::tempdir().unwrap();
        let mirrors = Mirrors::new(root.path().to_owned(), &EgressConfig::default()).unwrap();
        let remote = |host: &str, port: u16, repo: &str| Remote {
            scheme: "https".into(),
            host: host.into(),
            port,
            path: format!("/{repo}.git"),
            repo: repo.into(),
            credential: None,
        };
        let path = mirrors.path_of(&remote("github.com", 443, "Acme/App")).unwrap();
        assert_eq!(path, root.path().join("github.com/acme/app.git"));
        let path = mirrors.path_of(&remote("ghe.local", 8443, "acme/.github")).unwrap();
        assert_eq!(path, root.path().join("ghe.local_8443/acme/.github.git"));
        for (host, repo) in
            [("github.com", "../x"), ("github.com", "acme/a/b"), (".home", "acme/app"), ("github.com", "acme")]
        {
            assert!(mirrors.path_of(&remote(host, 443, repo)).is_err(), "{host} {repo}");
        }
    }
}
