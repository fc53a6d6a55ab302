//! A workspace repository (`spec.workspace` of an Agent or a Session) and how its clone reaches the network:
//! through the gateway's egress proxy like everything else in the sandbox. So only `https://` (and plain
//! `http://`, `file://`) remotes; the clone's credential (`secretRef`) is brokered by the gateway for the
//! clone host, never handed to the clone step.

use paddock_api::agent::{BrokeredCredential, CredentialScheme, WorkspaceSource};

use crate::quantity::Egress;

/// Keys of a workspace's `secretRef` Secret: the token, and optionally the Basic user name (default
/// `x-access-token`, what GitHub expects).
pub const WORKSPACE_TOKEN_KEY: &str = "token";
pub const WORKSPACE_USERNAME_KEY: &str = "username";
pub const DEFAULT_GIT_USERNAME: &str = "x-access-token";

/// Why a workspace cannot be cloned: the field of `spec.workspace` (`git` or `secretRef`) and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct WorkspaceProblem {
    pub field: &'static str,
    pub message: String,
}

/// The remote of a workspace: scheme, lowercase host (IPv6 without brackets) and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    pub scheme: &'static str,
    pub host: String,
    pub port: u16,
}

impl Remote {
    /// `host:port`, with brackets for IPv6: how egress entries and the proxy name it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Whether `url` is an SSH remote (`ssh://…` or scp-like `git@host:owner/repo.git`).
pub fn is_ssh(url: &str) -> bool {
    url.starts_with("ssh://") || (!url.contains("://") && url.contains('@') && url.contains(':'))
}

/// The network remote of an `https://` or `http://` URL; `None` for `file://` and anything else.
pub fn remote(url: &str) -> Option<Remote> {
    let (scheme, rest, default_port) = if let Some(r) = url.strip_prefix("https://") {
        ("https", r, 443)
    } else if let Some(r) = url.strip_prefix("http://") {
        ("http", r, 80)
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (h, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (hostport, default_port),
        }
    };
    (!host.is_empty() && port != 0).then(|| Remote { scheme, host: host.to_ascii_lowercase(), port })
}

/// Whether a workspace can be cloned through the gateway, and its credential brokered.
pub fn check_workspace(ws: &WorkspaceSource) -> Result<(), WorkspaceProblem> {
    let git = |message: String| Err(WorkspaceProblem { field: "git", message });
    if is_ssh(&ws.git) {
        return git(format!(
            "`{}` is an SSH remote; the clone goes through the gateway's egress proxy, which cannot broker an SSH key. \
             Use the https:// URL (with secretRef naming a Secret with `{WORKSPACE_TOKEN_KEY}`)",
            ws.git
        ));
    }
    let remote = remote(&ws.git);
    if ws.git.contains("://") && !ws.git.starts_with("file://") && remote.is_none() {
        return git(format!("`{}` has no host and port the clone could reach", ws.git));
    }
    if let Some(userinfo) = ws.git.split_once("://").and_then(|(_, r)| r.split('/').next()?.rsplit_once('@'))
        && userinfo.0.contains(':')
    {
        return git(format!(
            "`{}` carries a password; a credential in the URL would enter the sandbox (its git config). Put it in a \
             Secret named by secretRef",
            redact(&ws.git)
        ));
    }
    if ws.secret_ref.is_some() {
        let secret = |message: String| Err(WorkspaceProblem { field: "secretRef", message });
        match &remote {
            Some(r) if r.scheme == "https" => {
                if brokered_host(r).host_port().is_none() {
                    return secret(format!(
                        "`{}` cannot carry a brokered credential: its host is not a DNS name",
                        r.host
                    ));
                }
            }
            _ => {
                return secret(format!(
                    "a credential is sent only over https; `{}` is not an https:// URL",
                    redact(&ws.git)
                ));
            }
        }
    }
    Ok(())
}

/// The credential the broker injects for a workspace with `secretRef`: `basic` with the token under
/// [`WORKSPACE_TOKEN_KEY`] and the user from [`WORKSPACE_USERNAME_KEY`] (default `x-access-token`). `None`
/// without `secretRef` or for a remote that [`check_workspace`] refuses.
pub fn workspace_credential(ws: &WorkspaceSource, username: Option<&str>) -> Option<BrokeredCredential> {
    let secret = ws.secret_ref.as_ref()?;
    let r = remote(&ws.git).filter(|r| r.scheme == "https")?;
    Some(BrokeredCredential {
        secret_name: secret.name.clone(),
        key: WORKSPACE_TOKEN_KEY.into(),
        scheme: CredentialScheme::Basic,
        username: Some(username.unwrap_or(DEFAULT_GIT_USERNAME).to_owned()),
        ..brokered_host(&r)
    })
}

fn brokered_host(r: &Remote) -> BrokeredCredential {
    BrokeredCredential {
        host: format!("{}:{}", r.host, r.port),
        secret_name: String::new(),
        key: String::new(),
        scheme: CredentialScheme::Basic,
        username: None,
        header: None,
    }
}

/// Whether the gateway terminates TLS for the clone (its host is brokered: by the workspace's `secretRef`
/// or by one of the Agent's `credentials`), so the clone must trust Paddock's egress CA. Other https remotes
/// are end-to-end tunnels, verified against the image's own roots.
pub fn clone_is_brokered(ws: &WorkspaceSource, credentials: &[BrokeredCredential]) -> bool {
    let Some(r) = remote(&ws.git).filter(|r| r.scheme == "https") else { return false };
    ws.secret_ref.is_some() || credentials.iter().any(|c| c.host_port() == Some((r.host.clone(), r.port)))
}

/// Whether the gateway will let the clone reach its remote: a host the Agent brokers (`credentials`) or
/// lists in its egress. A workspace never widens the Agent's egress by itself, not even with a `secretRef`:
/// the Session's author could otherwise have the gateway send any Secret of the namespace to a host of their
/// choosing. A `secretRef` for a host the Agent brokers already is refused: one credential per host.
pub fn check_clone_allowed(
    ws: &WorkspaceSource,
    credentials: &[BrokeredCredential],
    egress: &[Egress],
) -> Result<(), WorkspaceProblem> {
    let Some(r) = remote(&ws.git) else { return Ok(()) };
    let brokered_by = credentials.iter().position(|c| c.host_port() == Some((r.host.clone(), r.port)));
    match brokered_by {
        Some(i) if ws.secret_ref.is_some() => Err(WorkspaceProblem {
            field: "secretRef",
            message: format!(
                "the Agent already brokers `{}` with spec.credentials[{i}]; the clone uses that credential, drop the \
                 secretRef",
                r.authority()
            ),
        }),
        Some(_) => Ok(()),
        None if allowed_by(egress, &r) => Ok(()),
        None => Err(WorkspaceProblem {
            field: "git",
            message: format!(
                "the clone goes through the gateway, which lets it reach `{0}` only when the Agent allows it: add \
                 `{0}` to the Agent's spec.sandbox.egress or broker it with spec.credentials",
                r.authority()
            ),
        }),
    }
}

/// Whether the Agent's egress entries allow the remote, as the gateway's egress proxy will judge the clone's
/// connection (the same matcher), for an early message.
pub fn allowed_by(egress: &[Egress], r: &Remote) -> bool {
    let entries: Vec<String> = egress.iter().map(Egress::entry).collect();
    paddock_policy::egress::allows(entries.iter().map(String::as_str), &r.host, r.port)
}

/// The URL with any userinfo replaced, for messages.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let sep = if rest.contains('/') { "/" } else { "" };
            format!("{scheme}://***@{host}{sep}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantity::parse_egress;
    use paddock_api::agent::LocalObjectReference;

    fn ws(git: &str, secret: bool) -> WorkspaceSource {
        WorkspaceSource {
            git: git.into(),
            git_ref: None,
            secret_ref: secret.then(|| LocalObjectReference { name: "git".into() }),
        }
    }

    #[test]
    fn remotes() {
        let r = |s, h: &str, p| Some(Remote { scheme: s, host: h.into(), port: p });
        assert_eq!(remote("https://github.com/acme/shop.git"), r("https", "github.com", 443));
        assert_eq!(remote("https://user@Git.Acme.dev:8443/x.git"), r("https", "git.acme.dev", 8443));
        assert_eq!(remote("http://10.1.2.3/x.git"), r("http", "10.1.2.3", 80));
        assert_eq!(remote("https://[2001:db8::1]:444/x"), r("https", "2001:db8::1", 444));
        assert_eq!(remote("https://[2001:db8::1]/x").unwrap().authority(), "[2001:db8::1]:443");
        assert_eq!(remote("file:///srv/x.git"), None);
        assert_eq!(remote("https://host:0/x"), None);
        assert_eq!(remote("https:///x"), None);
    }

    #[test]
    fn ssh_and_passwords_are_refused_with_the_field() {
        for url in ["git@github.com:acme/shop.git", "ssh://git@10.1.2.3:2222/x.git", "ssh://169.254.169.254:80/x"] {
            let e = check_workspace(&ws(url, false)).unwrap_err();
            assert_eq!(e.field, "git");
            assert!(e.message.contains("cannot broker an SSH key") && e.message.contains("https://"), "{e}");
        }
        let e = check_workspace(&ws("https://bot:ghp_secret@github.com/acme/x.git", false)).unwrap_err();
        assert!(e.message.contains("carries a password") && !e.to_string().contains("ghp_secret"), "{e}");
        let e = check_workspace(&ws("http://git.acme.dev/x.git", true)).unwrap_err();
        assert_eq!(e.field, "secretRef");
        assert!(e.message.contains("only over https"), "{e}");
        assert_eq!(check_workspace(&ws("https://[2001:db8::1]/x", true)).unwrap_err().field, "secretRef");
        for ok in
            ["https://github.com/acme/x.git", "http://git.acme.dev/x.git", "file:///srv/x.git", "https://h:8443/x"]
        {
            assert_eq!(check_workspace(&ws(ok, false)), Ok(()), "{ok}");
        }
        assert_eq!(check_workspace(&ws("https://github.com/acme/x.git", true)), Ok(()));
    }

    #[test]
    fn a_workspace_secret_is_brokered_for_its_host() {
        let c = workspace_credential(&ws("https://GitHub.com/acme/x.git", true), None).unwrap();
        assert_eq!(c.host_port(), Some(("github.com".into(), 443)));
        assert_eq!((c.secret_name.as_str(), c.key.as_str()), ("git", "token"));
        let (name, value) = c.header("t0k");
        assert_eq!(name, "authorization");
        assert_eq!(value, "Basic eC1hY2Nlc3MtdG9rZW46dDBr", "x-access-token:t0k");
        let c = workspace_credential(&ws("https://git.acme.dev:8443/x.git", true), Some("ci")).unwrap();
        assert_eq!(c.host_port(), Some(("git.acme.dev".into(), 8443)));
        assert_eq!(c.username.as_deref(), Some("ci"));
        assert!(workspace_credential(&ws("https://github.com/x", false), None).is_none());
        assert!(workspace_credential(&ws("http://github.com/x", true), None).is_none());
    }

    #[test]
    fn the_agents_egress_allows_a_remote() {
        let egress: Vec<Egress> = ["github.com:443", "*.acme.dev:8443", "10.0.0.0/8:80", "[2001:db8::1]:443"]
            .iter()
            .map(|e| parse_egress(e).unwrap())
            .collect();
        let allowed = |url: &str| allowed_by(&egress, &remote(url).unwrap());
        for ok in [
            "https://GitHub.com/x",
            "https://git.acme.dev:8443/x",
            "https://a.b.acme.dev:8443/x",
            "http://10.9.8.7/x",
            "https://[2001:db8::1]/x",
        ] {
            assert!(allowed(ok), "{ok}");
        }
        for no in [
            "https://github.com:8443/x",
            "https://acme.dev:8443/x",
            "https://evilacme.dev:8443/x",
            "http://11.0.0.1/x",
            "https://api.github.com/x",
            "http://github.com/x",
        ] {
            assert!(!allowed(no), "{no}");
        }
    }

    #[test]
    fn a_workspace_never_widens_the_agents_egress() {
        let creds: Vec<BrokeredCredential> =
            serde_json::from_str(r#"[{"host": "github.com", "secretName": "gh", "key": "token", "scheme": "basic"}]"#)
                .unwrap();
        let egress = vec![parse_egress("git.acme.dev:443").unwrap()];
        let check = |url: &str, secret: bool| check_clone_allowed(&ws(url, secret), &creds, &egress);
        assert_eq!(check("https://github.com/acme/x.git", false), Ok(()), "brokered by the Agent");
        assert_eq!(check("https://git.acme.dev/x.git", false), Ok(()), "listed");
        assert_eq!(check("https://git.acme.dev/x.git", true), Ok(()), "listed, with the Session's credential");
        assert_eq!(check("file:///srv/x.git", false), Ok(()));
        let e = check("https://attacker.example/x.git", true).unwrap_err();
        assert_eq!(e.field, "git", "a secretRef does not open a host: {e}");
        assert!(e.message.contains("`attacker.example:443` only when the Agent allows it"), "{e}");
        assert_eq!(check("https://github.com:8443/x.git", false).unwrap_err().field, "git");
        let e = check("https://github.com/acme/x.git", true).unwrap_err();
        assert_eq!(e.field, "secretRef");
        assert!(e.message.contains("already brokers `github.com:443` with spec.credentials[0]"), "{e}");
    }

    #[test]
    fn the_clone_trusts_paddocks_ca_only_when_brokered() {
        let agent_creds: Vec<BrokeredCredential> =
            serde_json::from_str(r#"[{"host": "github.com", "secretName": "gh", "key": "token", "scheme": "basic"}]"#)
                .unwrap();
        assert!(clone_is_brokered(&ws("https://gitlab.com/x.git", true), &[]));
        assert!(clone_is_brokered(&ws("https://github.com/x.git", false), &agent_creds));
        assert!(!clone_is_brokered(&ws("https://github.com:8443/x.git", false), &agent_creds));
        assert!(!clone_is_brokered(&ws("https://gitlab.com/x.git", false), &agent_creds));
        assert!(!clone_is_brokered(&ws("http://github.com/x.git", false), &agent_creds));
    }
}
