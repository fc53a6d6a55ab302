//! The gateway's configuration file (YAML) and its checks. Flags override the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayConfig {
    /// `host:port` to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `sqlite://PATH` (default: `gateway.db` in the data directory) or `postgres://…` for several replicas.
    #[serde(default)]
    pub database: Option<String>,
    /// Sync every group commit to disk before answering, so that it survives a power loss and not only a
    /// crash of the gateway (SQLite: its log is `fdatasync`ed and the database runs `synchronous = FULL`).
    #[serde(default)]
    pub fsync: bool,
    /// Where the gateway keeps its database and generated admin token.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// A directory of Agent and Policy manifests.
    #[serde(default)]
    pub repo: Option<PathBuf>,
    /// The human credential for approvals and session management. Generated into the data directory
    /// (mode 0600) when absent.
    #[serde(default)]
    pub admin_token: Option<SecretSource>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// The egress proxy and credential broker.
    #[serde(default)]
    pub egress: EgressConfig,
    /// TLS on the listener (the egress proxy on the same port included). Absent: plain HTTP, as `paddock up`
    /// serves on loopback and a Unix socket.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The web console, on its own listener (see [`crate::console`]). Absent: no console.
    #[serde(default)]
    pub console: Option<ConsoleConfig>,
    /// OpenTelemetry traces over OTLP/HTTP ([`crate::telemetry`]); off when absent.
    #[serde(default)]
    pub telemetry: Option<crate::telemetry::TelemetryConfig>,
}

/// The web console: where it listens and who may sign in besides the admin credential.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsoleConfig {
    /// `host:port` of the console's own listener (served over TLS when `tls` is set).
    pub listen: String,
    /// People who sign in with a token of their own, each with a role. The admin credential signs in as
    /// `admin`, who may do everything; a session token never signs in.
    #[serde(default)]
    pub users: Vec<ConsoleUser>,
    /// How long a sign-in lasts, in hours.
    #[serde(default = "default_sign_in_hours")]
    pub sign_in_hours: u64,
    /// In Kubernetes: people sign in with their own Kubernetes bearer token, checked with `TokenReview`,
    /// and see and do what `SubjectAccessReview` says their RBAC allows (`get sessions`, `create approvals`
    /// per namespace); their decisions are Approval objects created with their token. The gateway's
    /// ServiceAccount needs `create` on `tokenreviews` and `subjectaccessreviews` (the chart grants it).
    #[serde(default)]
    pub kubernetes: bool,
}

fn default_sign_in_hours() -> u64 {
    12
}

/// One console user.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsoleUser {
    /// The name recorded with what they do (approvals, comments, share links).
    pub name: String,
    /// The token they sign in with.
    pub token: SecretSource,
    /// `viewer` (sees sessions, transcripts, approvals, audit; comments; shares) or `approver` (also decides
    /// asks).
    pub role: ConsoleRole,
}

/// What a console user may do.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleRole {
    Viewer,
    Approver,
    /// The admin credential's own role; not given to a configured user.
    #[serde(skip)]
    Admin,
}

/// The gateway's serving certificate and key, as PEM files (a mounted `kubernetes.io/tls` Secret). They are
/// read again when they change on disk (cert-manager renews them), at most once a second, on a new
/// connection: see [`crate::tls`].
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain: the gateway's certificate first, then any intermediates.
    pub cert_file: PathBuf,
    /// Its private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key_file: PathBuf,
}

/// The egress proxy (every connection out of a sandbox) and the credential broker.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EgressConfig {
    /// For tests only: host names the gateway connects to at a given address instead of resolving them
    /// (`{github.com: 127.0.0.1}`).
    pub resolve: std::collections::BTreeMap<String, std::net::IpAddr>,
    /// Extra root certificates (PEM files) the gateway trusts when it connects to a brokered host (a GitHub
    /// Enterprise behind a private CA), besides the system's.
    pub trust: Vec<PathBuf>,
    /// The CA whose certificates the gateway shows for brokered hosts. Generated once into the data
    /// directory (`egress-ca.pem`, key `egress-ca.key` mode 0600) when absent.
    pub ca: Option<CaFiles>,
    /// Local mode: where brokered credentials come from, laid out as mounted Secrets:
    /// `DIR/<secretName>/<key>`. In Kubernetes the controller reads the Secrets and hands the gateway the
    /// values with the session.
    pub secrets_dir: Option<PathBuf>,
    /// The largest request body of a brokered request the gateway reads to decide on it (a JSON or GraphQL
    /// body); a larger one is refused.
    pub max_inspect_bytes: usize,
    /// The largest git push (its pack) the gateway accepts for a brokered host.
    pub max_push_bytes: u64,
    /// How many connections out one session may hold open at once: tunnels (end-to-end or brokered) and
    /// plain-HTTP requests in flight. One more is refused with `429`, so that one sandbox cannot take the
    /// gateway's file descriptors from every other session.
    pub max_connections_per_session: usize,
    /// An end-to-end tunnel that carries no byte either way for this long is closed; a brokered connection
    /// waiting for its next request closes after this long or 30 s, whichever is less.
    pub tunnel_idle_timeout_seconds: u64,
    /// Whether a tunnel may go to an IP literal on the gateway's own host (loopback, `0.0.0.0`), when an
    /// explicit address entry allows it. `paddock up` sets it (the gateway runs on the user's machine, where a
    /// database on `127.0.0.1` is a real destination); in a cluster the gateway's loopback is the gateway
    /// pod's own, never a sandbox's destination. Link-local addresses (the cloud metadata endpoint) are
    /// refused either way.
    pub allow_loopback: bool,
    /// How many git pushes of one session may be in progress at once through the broker (each spools its
    /// pack to disk and may fetch a mirror); one more is refused in git's protocol.
    pub max_pushes_per_session: usize,
    /// How long a push's body may take to arrive, first byte to last, however steadily it trickles in.
    pub push_arrival_seconds: u64,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            resolve: Default::default(),
            trust: Vec::new(),
            ca: None,
            secrets_dir: None,
            max_inspect_bytes: 1 << 20,
            max_push_bytes: 1 << 30,
            max_connections_per_session: 256,
            tunnel_idle_timeout_seconds: 300,
            allow_loopback: false,
            max_pushes_per_session: 4,
            push_arrival_seconds: 600,
        }
    }
}

/// A CA certificate and its private key, as PEM files (a mounted Secret).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn default_listen() -> String {
    "127.0.0.1:6767".into()
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: default_listen(),
            database: None,
            fsync: false,
            data_dir: None,
            repo: None,
            admin_token: None,
            limits: Limits::default(),
            providers: Vec::new(),
            egress: EgressConfig::default(),
            tls: None,
            console: None,
            telemetry: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long an ask waits for a human before it counts as denied.
    pub ask_timeout_seconds: u64,
    /// How long `POST /decide` waits on an ask before answering `pending` (the ask stays open).
    pub decide_wait_seconds: u64,
    pub upstream_connect_timeout_seconds: u64,
    /// Until the upstream's response headers arrive.
    pub upstream_response_timeout_seconds: u64,
    /// Between two chunks of a streamed response.
    pub upstream_idle_timeout_seconds: u64,
    /// Output tokens reserved for a request that does not set its own limit.
    pub default_max_tokens: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 << 20,
            ask_timeout_seconds: 300,
            decide_wait_seconds: 30,
            upstream_connect_timeout_seconds: 10,
            upstream_response_timeout_seconds: 300,
            upstream_idle_timeout_seconds: 300,
            default_max_tokens: 4096,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Anthropic,
    Openai,
    /// Google's Gemini API (`generativelanguage.googleapis.com`), keyed by `x-goog-api-key`.
    Google,
    /// Replays a script; for demos and tests.
    Scripted,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// e.g. `https://api.anthropic.com`; the wire paths (`/v1/messages`, …) are appended.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub api_key: Option<SecretSource>,
    /// For `scripted`: the script file.
    #[serde(default)]
    pub script: Option<PathBuf>,
    /// Model ids this provider serves, as globs (`claude-*`). The first provider that matches wins.
    pub models: Vec<String>,
}

impl ProviderConfig {
    /// The scripted model (`kind: scripted`, named `scripted`) answering from `script` for the models matching
    /// `models`.
    pub fn scripted(script: PathBuf, models: &[&str]) -> ProviderConfig {
        ProviderConfig {
            name: "scripted".into(),
            kind: ProviderKind::Scripted,
            base_url: None,
            api_key: None,
            script: Some(script),
            models: models.iter().map(|m| (*m).to_owned()).collect(),
        }
    }
}

/// Where a secret comes from: an environment variable or a file (a mounted Secret). Never inline.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSource {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl ConsoleConfig {
    fn check(&self, gateway_listen: &str) -> Result<(), String> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!("console.listen: `{}` is not a host:port address", self.listen));
        }
        // Port 0 (tests: any free port) is a port of its own each time.
        if self.listen == gateway_listen && !self.listen.ends_with(":0") {
            return Err("console.listen: the console needs a port of its own, not the gateway's `listen`".into());
        }
        if self.sign_in_hours == 0 || self.sign_in_hours > 24 * 30 {
            return Err("console.signInHours: must be between 1 and 720".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let ok = !u.name.is_empty()
                && u.name.len() <= 64
                && u.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
            if !ok {
                return Err(format!(
                    "console.users[{i}].name: `{}` is not 1-64 letters, digits, `-`, `_`, `.` or `@`",
                    u.name.escape_debug()
                ));
            }
            if u.name == "admin" || !names.insert(u.name.as_str()) {
                return Err(format!("console.users[{i}].name: `{}` is taken (by `admin` or an earlier user)", u.name));
            }
        }
        Ok(())
    }
}

impl SecretSource {
    pub fn read(&self, what: &str) -> anyhow::Result<String> {
        let v = match (&self.env, &self.file) {
            (Some(var), None) => {
                std::env::var(var).map_err(|_| anyhow::anyhow!("{what}: environment variable `{var}` is not set"))?
            }
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{what}: cannot read `{}`: {e}", path.display()))?,
            _ => anyhow::bail!("{what}: give exactly one of `env` or `file`"),
        };
        let v = v.trim().to_owned();
        if v.is_empty() {
            anyhow::bail!("{what}: the secret is empty");
        }
        Ok(v)
    }
}

impl GatewayConfig {
    pub fn load(path: &Path) -> anyhow::Result<GatewayConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read gateway config `{}`: {e}", path.display()))?;
        let mut cfg = GatewayConfig::parse(&text, &path.display().to_string())?;
        // Relative paths in the file are relative to the file.
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        cfg.repo.as_mut().map(fix);
        cfg.data_dir.as_mut().map(fix);
        for p in &mut cfg.providers {
            p.script.as_mut().map(fix);
            if let Some(f) = p.api_key.as_mut().and_then(|k| k.file.as_mut()) {
                fix(f);
            }
        }
        if let Some(f) = cfg.admin_token.as_mut().and_then(|k| k.file.as_mut()) {
            fix(f);
        }
        for u in cfg.console.iter_mut().flat_map(|c| c.users.iter_mut()) {
            u.token.file.as_mut().map(fix);
        }
        cfg.egress.trust.iter_mut().for_each(fix);
        cfg.egress.secrets_dir.as_mut().map(fix);
        if let Some(ca) = cfg.egress.ca.as_mut() {
            fix(&mut ca.cert);
            fix(&mut ca.key);
        }
        if let Some(tls) = cfg.tls.as_mut() {
            fix(&mut tls.cert_file);
            fix(&mut tls.key_file);
        }
        Ok(cfg)
    }

    pub fn parse(text: &str, file: &str) -> anyhow::Result<GatewayConfig> {
        let cfg: GatewayConfig = serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
            Some(l) => anyhow::anyhow!("{file}:{}:{}: {e}", l.line(), l.column()),
            None => anyhow::anyhow!("{file}: {e}"),
        })?;
        cfg.check().map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        Ok(cfg)
    }

    /// Checks what the types cannot say.
    pub fn check(&self) -> Result<(), String> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!("listen: `{}` is not a host:port address", self.listen));
        }
        let l = &self.limits;
        if l.max_body_bytes < 1024 {
            return Err("limits.maxBodyBytes: must be at least 1024".into());
        }
        for (name, v) in [
            ("askTimeoutSeconds", l.ask_timeout_seconds),
            ("upstreamConnectTimeoutSeconds", l.upstream_connect_timeout_seconds),
            ("upstreamResponseTimeoutSeconds", l.upstream_response_timeout_seconds),
            ("upstreamIdleTimeoutSeconds", l.upstream_idle_timeout_seconds),
            ("defaultMaxTokens", l.default_max_tokens),
        ] {
            if v == 0 {
                return Err(format!("limits.{name}: must be more than 0"));
            }
        }
        let e = &self.egress;
        if e.max_connections_per_session == 0 {
            return Err("egress.maxConnectionsPerSession: must be at least 1".into());
        }
        if e.tunnel_idle_timeout_seconds == 0 {
            return Err("egress.tunnelIdleTimeoutSeconds: must be more than 0".into());
        }
        if e.max_pushes_per_session == 0 {
            return Err("egress.maxPushesPerSession: must be at least 1".into());
        }
        if e.push_arrival_seconds == 0 {
            return Err("egress.pushArrivalSeconds: must be more than 0".into());
        }
        if e.max_inspect_bytes == 0 {
            return Err("egress.maxInspectBytes: must be more than 0".into());
        }
        if let Some(c) = &self.console {
            c.check(&self.listen)?;
        }
        if let Some(tls) = &self.tls {
            for (field, path) in [("tls.certFile", &tls.cert_file), ("tls.keyFile", &tls.key_file)] {
                if path.as_os_str().is_empty() {
                    return Err(format!("{field}: give the path of a PEM file"));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let at = format!("providers[{i}]");
            if p.name.is_empty() || !names.insert(p.name.as_str()) {
                return Err(format!("{at}.name: must be set and unique, got `{}`", p.name));
            }
            if p.models.is_empty() {
                return Err(format!("{at}.models: list the model globs this provider serves"));
            }
            match p.kind {
                ProviderKind::Scripted => {
                    if p.script.is_none() {
                        return Err(format!("{at}.script: a scripted provider needs a script file"));
                    }
                    if p.base_url.is_some() || p.api_key.is_some() {
                        return Err(format!("{at}: a scripted provider has no baseUrl or apiKey"));
                    }
                }
                ProviderKind::Anthropic | ProviderKind::Openai | ProviderKind::Google => {
                    let url = p.base_url.as_deref().unwrap_or("");
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        return Err(format!("{at}.baseUrl: an http(s) URL is required, got `{url}`"));
                    }
                    match url::Url::parse(url) {
                        Err(e) => return Err(format!("{at}.baseUrl: `{url}` is not a URL: {e}")),
                        // Each request sets the path after the base's and the client's query: a query or
                        // fragment of the base would be dropped without a word.
                        Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                            return Err(format!(
                                "{at}.baseUrl: `{url}` has a query or fragment; give the scheme, host and path only"
                            ));
                        }
                        Ok(_) => {}
                    }
                    if p.script.is_some() {
                        return Err(format!("{at}.script: only a scripted provider has a script"));
                    }
                }
            }
            if let Some(k) = &p.api_key
                && k.env.is_some() == k.file.is_some()
            {
                return Err(format!("{at}.apiKey: give exactly one of `env` or `file`"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let e = GatewayConfig::parse("listen: nowhere\n", "g.yaml").unwrap_err().to_string();
        assert!(e.contains("g.yaml: listen:"), "{e}");
        let e = GatewayConfig::parse("providers:\n- {name: a, kind: anthropic, models: ['*']}\n", "g.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("providers[0].baseUrl"), "{e}");
        let e = GatewayConfig::parse("limits: {askTimeoutSecond: 3}\n", "g.yaml").unwrap_err().to_string();
        assert!(e.starts_with("g.yaml:1:") && e.contains("askTimeoutSecond"), "{e}");
        let e = GatewayConfig::parse(
            "providers:\n- {name: a, kind: openai, baseUrl: 'http://x', apiKey: {env: A, file: b}, models: ['*']}\n",
            "g.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("providers[0].apiKey"), "{e}");
        for base in ["https://", "https://h.example/openai?api-version=1", "https://h.example/#x"] {
            let yaml = format!("providers:\n- {{name: a, kind: openai, baseUrl: '{base}', models: ['*']}}\n");
            let e = GatewayConfig::parse(&yaml, "g.yaml").unwrap_err().to_string();
            assert!(e.contains("providers[0].baseUrl") && e.contains(base), "{e}");
        }
        for (yaml, field) in [
            ("egress: {maxConnectionsPerSession: 0}\n", "egress.maxConnectionsPerSession"),
            ("egress: {tunnelIdleTimeoutSeconds: 0}\n", "egress.tunnelIdleTimeoutSeconds"),
            ("egress: {maxPushesPerSession: 0}\n", "egress.maxPushesPerSession"),
            ("egress: {pushArrivalSeconds: 0}\n", "egress.pushArrivalSeconds"),
        ] {
            let e = GatewayConfig::parse(yaml, "g.yaml").unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
        let e = GatewayConfig::parse("tls: {certFile: a.pem}\n", "g.yaml").unwrap_err().to_string();
        assert!(e.starts_with("g.yaml:1:") && e.contains("missing field `keyFile`"), "{e}");
        let e = GatewayConfig::parse("tls: {certFile: '', keyFile: k}\n", "g.yaml").unwrap_err().to_string();
        assert!(e.contains("tls.certFile"), "{e}");
        let cfg =
            GatewayConfig::parse("egress: {maxConnectionsPerSession: 8, tunnelIdleTimeoutSeconds: 5}\n", "g").unwrap();
        assert_eq!((cfg.egress.max_connections_per_session, cfg.egress.tunnel_idle_timeout_seconds), (8, 5));
    }
}
