//! A small typed client of the gateway's admin API: sessions (create, end, read, transcript) and approvals.
//! The admin token comes from a mounted Secret file and is re-read when it changes (rotation). Over
//! `https://`, the gateway's CA (a mounted file, `ca_file`) is the only root trusted, and it too is read
//! again when the file changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How the controller reaches the gateway.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// e.g. `http://paddock-gateway.paddock-system.svc:6767`.
    pub url: String,
    /// The file holding the admin token (a mounted Secret).
    pub admin_token_file: PathBuf,
    /// The CA that signed the gateway's serving certificate (PEM, public), for an `https://` URL: the only
    /// root trusted for the gateway, and what runner pods get to trust it. `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The gateway answered with an error status; the message is its own.
    #[error("the gateway answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("cannot reach the gateway at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("admin token: {0}")]
    Token(String),
    /// The gateway's CA file (`--gateway-ca-file`) cannot be used.
    #[error("gateway CA: {0}")]
    Trust(String),
    #[error("unexpected answer from the gateway: {0}")]
    Decode(String),
}

impl GatewayError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GatewayError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The body of `POST /v1/sessions`.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSession {
    pub id: String,
    pub namespace: String,
    pub agent: String,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_override: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_repo: Option<String>,
    /// The RuntimeClass the runner pod gets (the Agent's, or one an `enforce_sandbox` rule requires).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
    /// The session's brokered credentials with their values, read from the Session's namespace: the gateway
    /// injects them; the sandbox never sees them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<SessionCredential>,
    /// The credentials of the Agent's remote MCP servers (`spec.mcpServers[].credential`), apart from the
    /// brokered ones: a gateway that does not know them refuses the session rather than broker them.
    #[serde(rename = "mcpCredentials", skip_serializing_if = "Vec::is_empty")]
    pub mcp_credentials: Vec<SessionCredential>,
    /// The Session's own rules (`spec.policy`): the gateway evaluates them before the Agent's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<paddock_api::SessionPolicy>,
    /// The token's lifetime: the runner pod's deadline and slack for it to be scheduled. The backstop when
    /// the token cannot be revoked (the Session deleted while the gateway was down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<u64>,
}

/// A credential the gateway's broker injects into every request of the session to one host: the header
/// that carries it (`paddock_gateway::SessionCredential` on the wire).
#[derive(Clone, PartialEq, Serialize)]
pub struct SessionCredential {
    /// Lowercase host name.
    pub host: String,
    pub port: u16,
    /// Lowercase header name, e.g. `authorization`.
    pub header: String,
    pub value: String,
    /// A remote MCP server's credential (`spec.mcpServers[].credential`): the gateway's MCP client sends it to
    /// that server only; its egress proxy never brokers it.
    #[serde(rename = "mcpServer", skip_serializing_if = "Option::is_none")]
    pub mcp_server: Option<String>,
}

/// Never shows the value.
impl std::fmt::Debug for SessionCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionCredential({}:{}, {}: ***)", self.host, self.port, self.header)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cost_usd: f64,
}

/// A pending ask, as `GET /v1/sessions/{id}` lists it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct PendingAsk {
    pub id: String,
    pub phase: String,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub created_at: String,
}

/// `GET /v1/sessions/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: String,
    /// `Running`, or how it ended (`Succeeded`, `Failed`).
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub usage: SessionUsage,
    #[serde(default)]
    pub risk_score: i64,
    #[serde(default)]
    pub pending_approvals: Vec<PendingAsk>,
}

/// The gateway's admin API.
#[derive(Clone)]
pub struct Gateway {
    cfg: GatewayConfig,
    http: Arc<Mutex<Http>>,
}

/// The HTTP client, and the CA file (its identity on disk) it was built to trust.
struct Http {
    client: reqwest::Client,
    ca: Option<FileStamp>,
}

/// What identifies a file's content without reading it: the file a path resolves to (a Secret volume swaps a
/// symlink), its size and modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

fn file_stamp(path: &Path) -> std::io::Result<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(FileStamp { dev: m.dev(), ino: m.ino(), len: m.len(), modified: m.modified().ok() })
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).timeout(Duration::from_secs(15))
}

/// The certificates of a CA file, refused when it holds anything but certificates: its text goes into every
/// runner pod's ConfigMap.
fn read_ca(path: &Path) -> Result<(String, Vec<reqwest::Certificate>), GatewayError> {
    let bad = |m: String| GatewayError::Trust(format!("`{}`: {m}", path.display()));
    let pem = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    if pem.contains("PRIVATE KEY") {
        return Err(bad("it holds a private key; give the CA's certificate only (`ca.crt`)".into()));
    }
    let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() || !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok((pem, certs))
}

impl Gateway {
    pub fn new(cfg: GatewayConfig) -> Gateway {
        // With a CA file the client is built on first use, so that a missing file is a reconcile error that
        // names it (and heals when the Secret is mounted), not a crash.
        let http = Http { client: client_builder().build().expect("HTTP client"), ca: None };
        Gateway { cfg, http: Arc::new(Mutex::new(http)) }
    }

    pub fn url(&self) -> &str {
        &self.cfg.url
    }

    /// The client to call the gateway with: trusting the CA file alone when there is one, rebuilt when the file
    /// changed since.
    fn client(&self) -> Result<reqwest::Client, GatewayError> {
        let Some(path) = &self.cfg.ca_file else {
            return Ok(self.http.lock().unwrap_or_else(|p| p.into_inner()).client.clone());
        };
        let stamp = file_stamp(path).map_err(|e| GatewayError::Trust(format!("`{}`: {e}", path.display())))?;
        let mut http = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if http.ca != Some(stamp) {
            let (_, certs) = read_ca(path)?;
            let builder = certs
                .into_iter()
                .fold(client_builder().tls_built_in_root_certs(false), |b, c| b.add_root_certificate(c));
            http.client = builder.build().map_err(|e| GatewayError::Trust(format!("`{}`: {e}", path.display())))?;
            http.ca = Some(stamp);
            tracing::info!(path = %path.display(), "trusting the gateway CA");
        }
        Ok(http.client.clone())
    }

    /// The gateway's CA certificate (PEM) for runner pods to trust, read now (so a rotated CA reaches new
    /// sessions); `None` without a CA file.
    pub fn ca_pem(&self) -> Result<Option<String>, GatewayError> {
        match &self.cfg.ca_file {
            None => Ok(None),
            Some(path) => read_ca(path).map(|(pem, _)| Some(pem)),
        }
    }

    fn token(&self) -> Result<String, GatewayError> {
        let path = &self.cfg.admin_token_file;
        let t = std::fs::read_to_string(path).map_err(|e| GatewayError::Token(format!("{}: {e}", path.display())))?;
        let t = t.trim();
        if t.is_empty() {
            return Err(GatewayError::Token(format!("{} is empty", path.display())));
        }
        Ok(t.to_owned())
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, GatewayError> {
        let url = format!("{}{path}", self.cfg.url.trim_end_matches('/'));
        let mut req = self.client()?.request(method, &url).bearer_auth(self.token()?);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let unreachable =
            |e: reqwest::Error| GatewayError::Unreachable { url: self.cfg.url.clone(), message: with_causes(&e) };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            let message = v["error"]["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
            return Err(GatewayError::Status { status, message });
        }
        Ok(v)
    }

    /// Registers a session and returns its token (the gateway shows it once). 409 when the id exists.
    pub async fn create_session(&self, s: &NewSession) -> Result<String, GatewayError> {
        let body = serde_json::to_value(s).expect("json");
        let v = self.call(reqwest::Method::POST, "/v1/sessions", Some(body)).await?;
        v["token"].as_str().map(str::to_owned).ok_or_else(|| GatewayError::Decode("no `token` in the answer".into()))
    }

    /// Paddock's egress CA certificate (PEM), which the gateway shows for brokered hosts: public, for a clone
    /// through the broker to trust. Refused when the answer holds anything but certificates.
    pub async fn egress_ca(&self) -> Result<String, GatewayError> {
        let url = format!("{}/v1/egress/ca.pem", self.cfg.url.trim_end_matches('/'));
        let unreachable =
            |e: reqwest::Error| GatewayError::Unreachable { url: self.cfg.url.clone(), message: with_causes(&e) };
        let resp = self.client()?.get(&url).bearer_auth(self.token()?).send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(unreachable)?;
        if !(200..300).contains(&status) {
            let message = text.chars().take(300).collect();
            return Err(GatewayError::Status { status, message });
        }
        if !text.trim_start().starts_with("-----BEGIN CERTIFICATE-----") || text.contains("PRIVATE KEY") {
            return Err(GatewayError::Decode("the egress CA is not a PEM certificate".into()));
        }
        Ok(text)
    }

    /// Replaces the Agents and Policies the gateway decides with (`PUT /v1/policies`); returns its answer
    /// (`agents` governed, `leftOut` with why).
    pub async fn put_policies(&self, body: &Value) -> Result<Value, GatewayError> {
        self.call(reqwest::Method::PUT, "/v1/policies", Some(body.clone())).await
    }

    /// How often each Policy decided (`GET /v1/policies/decisions`), keyed `<namespace>/<name>`: counted
    /// from the gateway's ledger, so the same on every replica and across restarts.
    pub async fn policy_decisions(
        &self,
    ) -> Result<std::collections::BTreeMap<String, paddock_api::policy::DecisionCounts>, GatewayError> {
        let v = self.call(reqwest::Method::GET, "/v1/policies/decisions", None).await?;
        serde_json::from_value(v).map_err(|e| GatewayError::Decode(format!("decision counts: {e}")))
    }

    /// Which replicas enforce the revision last pushed (`GET /v1/replicas`).
    pub async fn enforcement(&self) -> Result<paddock_api::policy::PolicyEnforcement, GatewayError> {
        let v = self.call(reqwest::Method::GET, "/v1/replicas", None).await?;
        let pushed =
            v["pushed"].as_str().ok_or_else(|| GatewayError::Decode("replicas: no `pushed` revision".into()))?;
        let rows =
            v["replicas"].as_array().ok_or_else(|| GatewayError::Decode("replicas: no `replicas` list".into()))?;
        Ok(paddock_api::policy::PolicyEnforcement {
            revision: pushed.to_owned(),
            replicas: rows.len() as u32,
            enforcing: rows.iter().filter(|r| r["revision"].as_str() == Some(pushed)).count() as u32,
        })
    }

    /// Ends a session and revokes its token. Ending an ended session is not an error; ending one the gateway
    /// does not know is (`404`): its token may be alive where this answer could not see it, so it is never
    /// taken for revoked.
    pub async fn end_session(&self, id: &str, phase: &str, reason: &str) -> Result<(), GatewayError> {
        let body = json!({"phase": phase, "reason": reason});
        match self.call(reqwest::Method::POST, &format!("/v1/sessions/{}/end", seg(id)), Some(body)).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(410) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The session's phase, usage, risk and pending asks; `None` when the gateway does not know it.
    pub async fn session(&self, id: &str) -> Result<Option<SessionInfo>, GatewayError> {
        match self.call(reqwest::Method::GET, &format!("/v1/sessions/{}", seg(id)), None).await {
            Ok(v) => serde_json::from_value(v).map(Some).map_err(|e| GatewayError::Decode(e.to_string())),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Transcript events from sequence number `offset` on: `(seq, event)`.
    pub async fn events(&self, id: &str, offset: i64) -> Result<Vec<(i64, Value)>, GatewayError> {
        let v =
            self.call(reqwest::Method::GET, &format!("/v1/sessions/{}/events?offset={offset}", seg(id)), None).await?;
        let rows = v.as_array().ok_or_else(|| GatewayError::Decode("events are not a list".into()))?;
        Ok(rows.iter().filter_map(|r| Some((r["seq"].as_i64()?, r["event"].clone()))).collect())
    }

    /// Approves or denies a pending ask; returns the approval row.
    pub async fn decide(&self, request_id: &str, approve: bool, by: &str, reason: &str) -> Result<Value, GatewayError> {
        let verb = if approve { "approve" } else { "deny" };
        let body = json!({"by": by, "reason": reason});
        self.call(reqwest::Method::POST, &format!("/v1/approvals/{}/{verb}", seg(request_id)), Some(body)).await
    }

    /// Every approval the gateway knows of (`all`), for reading how one was decided.
    pub async fn approvals(&self, status: &str) -> Result<Vec<Value>, GatewayError> {
        let v = self.call(reqwest::Method::GET, &format!("/v1/approvals?status={status}"), None).await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }
}

/// An error and its causes: reqwest's own message (`error sending request`) leaves out why, and the why is
/// what a user needs (`invalid peer certificate: UnknownIssuer`).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// A path segment: ids are DNS-label-like, but never trust that for a URL.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The agent's latest message among transcript events: the last assistant `message`, else the `done` event's
/// message.
pub fn last_message(events: &[(i64, Value)]) -> Option<String> {
    events.iter().rev().find_map(|(_, e)| match e["type"].as_str() {
        Some("message") if e["role"] == "assistant" => e["text"].as_str().map(str::to_owned),
        Some("done") => e["message"].as_str().filter(|m| !m.is_empty()).map(str::to_owned),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_assistant_message_wins() {
        let ev = vec![
            (0, json!({"type": "message", "role": "user", "text": "hi"})),
            (1, json!({"type": "message", "role": "assistant", "text": "first"})),
            (2, json!({"type": "tool_call", "id": "1", "name": "shell", "args": {}})),
            (3, json!({"type": "message", "role": "assistant", "text": "second"})),
        ];
        assert_eq!(last_message(&ev).as_deref(), Some("second"));
        assert_eq!(last_message(&ev[..1]), None);
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
    }

    /// A gateway served over TLS on loopback with a certificate for `localhost`: its https URL, the admin token
    /// file and the CA (PEM).
    async fn tls_gateway(dir: &Path) -> (String, PathBuf, String) {
        use paddock_gateway::config::{SecretSource, TlsConfig};
        let certs = paddock_gateway::tls::generate(&["localhost"]).unwrap();
        std::fs::write(dir.join("tls.crt"), &certs.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &certs.key_pem).unwrap();
        std::fs::write(dir.join("admin"), "admin-token").unwrap();
        let cfg = paddock_gateway::GatewayConfig {
            data_dir: Some(dir.join("data")),
            admin_token: Some(SecretSource { env: None, file: Some(dir.join("admin")) }),
            tls: Some(TlsConfig { cert_file: dir.join("tls.crt"), key_file: dir.join("tls.key") }),
            ..Default::default()
        };
        let (_, url, _) = paddock_gateway::server::serve_loopback(&cfg).await.unwrap();
        let port = url.rsplit(':').next().unwrap();
        (format!("https://localhost:{port}"), dir.join("admin"), certs.ca_pem)
    }

    /// As a Secret volume updates a file: a new file renamed over the old one.
    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[tokio::test]
    async fn the_controller_trusts_the_gateway_ca_alone_and_reads_it_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (url, admin_token_file, ca) = tls_gateway(dir.path()).await;
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, &ca).unwrap();
        let gw = Gateway::new(GatewayConfig {
            url: url.clone(),
            admin_token_file: admin_token_file.clone(),
            ca_file: Some(ca_file.clone()),
        });
        assert!(gw.egress_ca().await.unwrap().contains("BEGIN CERTIFICATE"));
        assert_eq!(gw.ca_pem().unwrap().as_deref(), Some(ca.as_str()), "what runner pods get to trust");

        // Without the CA: the system's roots, which do not hold it; the message says why.
        let system = Gateway::new(GatewayConfig { url, admin_token_file, ca_file: None });
        let e = system.egress_ca().await.unwrap_err().to_string();
        assert!(e.starts_with("cannot reach the gateway at https://localhost:") && e.contains("UnknownIssuer"), "{e}");
        assert_eq!(system.ca_pem().unwrap(), None);

        // The file changes (another CA): the next call trusts the new one, which does not sign the gateway.
        let other = paddock_gateway::tls::generate(&["localhost"]).unwrap();
        replace(&ca_file, &other.ca_pem);
        let e = gw.egress_ca().await.unwrap_err().to_string();
        assert!(e.contains("BadSignature"), "{e}");
        replace(&ca_file, &ca);
        assert!(gw.egress_ca().await.is_ok(), "and back");

        // A file with a key in it is refused before anything is sent, and never handed to a pod.
        replace(&ca_file, &format!("{ca}{}", other.key_pem));
        let e = gw.egress_ca().await.unwrap_err().to_string();
        assert!(e.starts_with("gateway CA: `") && e.contains("holds a private key"), "{e}");
        assert!(gw.ca_pem().is_err());
        std::fs::remove_file(&ca_file).unwrap();
        let e = gw.egress_ca().await.unwrap_err().to_string();
        assert!(e.starts_with("gateway CA: `") && e.contains("ca.crt"), "{e}");
    }

    #[test]
    fn a_credential_never_shows_its_value() {
        let c = SessionCredential {
            host: "api.github.com".into(),
            port: 443,
            header: "authorization".into(),
            value: "Bearer ghp_s3cret".into(),
            mcp_server: None,
        };
        let s = NewSession { credentials: vec![c], ..Default::default() };
        let shown = format!("{s:?}");
        assert!(shown.contains("api.github.com:443") && !shown.contains("s3cret"), "{shown}");
    }
}
