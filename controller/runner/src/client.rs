//! The runner's only connection: the gateway, with the session's token.

use std::time::Duration;

use paddock_policy::Event;
use serde::Deserialize;
use serde_json::Value;

use crate::transcript::TranscriptEvent;

#[derive(Clone)]
pub struct GatewayClient {
    /// e.g. `http://127.0.0.1:6767`.
    pub base_url: String,
    pub session: String,
    pub token: String,
    /// The W3C trace context this session's requests carry (`traceparent`), so that the gateway's spans
    /// join the caller's trace; from the `TRACEPARENT` variable (OpenTelemetry's environment carrier).
    traceparent: Option<String>,
    http: reqwest::Client,
}

/// The gateway's answer to an event.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Ruling {
    pub verdict: String,
    pub reason: String,
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub approval_id: Option<String>,
    #[serde(default)]
    pub status: String,
    /// The event as the policies rewrote it (a redaction), when the gateway returns it: what goes on instead
    /// of what was asked about. Kept as JSON so that a field this runner does not know cannot fail a ruling.
    #[serde(default)]
    pub event: Option<Value>,
}

impl Ruling {
    pub fn allowed(&self) -> bool {
        self.verdict == "allow"
    }

    /// The rewritten event's `text` (a `request`'s prompt, a `response`'s answer), when a rule rewrote it.
    pub fn rewritten_text(&self) -> Option<&str> {
        self.event.as_ref()?.get("text")?.as_str()
    }

    /// Who refused, for a message: `policy `p` (rule `r`)`, or `the gateway` when no policy is named.
    pub fn by(&self) -> String {
        match (&self.policy, &self.rule) {
            (Some(p), Some(r)) => format!("policy `{p}` (rule `{r}`)"),
            (Some(p), None) => format!("policy `{p}`"),
            _ => "the gateway".into(),
        }
    }
}

/// A sub-agent's session.
pub struct Child {
    pub id: String,
    pub token: String,
    /// The sub-agent's definition, from the revision the gateway enforces.
    pub spec: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("gateway unreachable at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{body} (the gateway answered {status})")]
    Status { status: u16, body: String },
}

impl GatewayClient {
    pub fn new(base_url: &str, session: &str, token: &str) -> GatewayClient {
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build().expect("http client");
        GatewayClient {
            base_url: base_url.trim_end_matches('/').to_owned(),
            session: session.to_owned(),
            token: token.to_owned(),
            traceparent: std::env::var("TRACEPARENT").ok().filter(|t| is_traceparent(t)),
            http,
        }
    }

    /// This client's requests in the trace `traceparent` names (a malformed one is ignored).
    pub fn with_traceparent(mut self, traceparent: &str) -> GatewayClient {
        self.traceparent = Some(traceparent.to_owned()).filter(|t| is_traceparent(t));
        self
    }

    /// The trace context the requests carry, for the programs the runner starts (`TRACEPARENT`).
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    fn traced(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.traceparent {
            Some(t) => r.header("traceparent", t),
            None => r,
        }
    }

    /// A client for a child session (a sub-agent).
    pub fn child(&self, session: &str, token: &str) -> GatewayClient {
        GatewayClient { session: session.into(), token: token.into(), ..self.clone() }
    }

    async fn post(&self, path: &str, body: &impl serde::Serialize) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base_url);
        let r = self
            .traced(self.http.post(&url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable { url: url.clone(), message: e.to_string() })?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| ClientError::Unreachable { url, message: e.to_string() })?;
        if !(200..300).contains(&status) {
            // Both wire formats and the gateway's API put the message at `error.message`.
            let body = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(ClientError::Status { status, body });
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Asks the admission API; waits (bounded by the gateway) for a human when a rule asks, polling on.
    pub async fn decide(&self, event: &Event) -> Result<Ruling, ClientError> {
        self.decide_at(&format!("/v1/sessions/{}/decide", self.session), event).await
    }

    /// A deny-only second look at a tool call the response gate already decided (`check=deny-only`): a
    /// hook whose input names no call id asks this, so the call is neither counted nor asked about twice.
    /// A rule that asks there is decided in full: this then waits for the human, as [`GatewayClient::decide`].
    pub async fn check(&self, event: &Event) -> Result<Ruling, ClientError> {
        self.decide_at(&format!("/v1/sessions/{}/decide?check=deny-only", self.session), event).await
    }

    /// Posts `event` to `path` and waits out a pending ask.
    async fn decide_at(&self, path: &str, event: &Event) -> Result<Ruling, ClientError> {
        let v = self.post(path, event).await?;
        let mut ruling: Ruling = serde_json::from_value(v.clone())
            .map_err(|e| ClientError::Status { status: 200, body: format!("{e}: {v}") })?;
        while ruling.status == "pending" {
            let Some(id) = ruling.approval_id.clone() else { break };
            let url = format!("{}/v1/sessions/{}/approvals/{id}?wait=30", self.base_url, self.session);
            let r = self
                .traced(self.http.get(&url))
                .bearer_auth(&self.token)
                .send()
                .await
                .map_err(|e| ClientError::Unreachable { url: url.clone(), message: e.to_string() })?;
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            if status != 200 {
                return Err(ClientError::Status { status, body: text });
            }
            ruling = serde_json::from_str(&text)
                .map_err(|e| ClientError::Status { status, body: format!("{e}: {text}") })?;
        }
        Ok(ruling)
    }

    pub async fn post_events(&self, events: &[TranscriptEvent]) -> Result<(), ClientError> {
        self.post(&format!("/v1/sessions/{}/events", self.session), &events).await.map(|_| ())
    }

    /// Ends this client's session (a sub-agent's, with its own token) as `Succeeded` or `Failed`.
    pub async fn end(&self, phase: &str, reason: &str) -> Result<(), ClientError> {
        self.post(&format!("/v1/sessions/{}/end", self.session), &serde_json::json!({"phase": phase, "reason": reason}))
            .await
            .map(|_| ())
    }

    /// Starts a child session of `agent` (one of this Agent's sub-agents).
    pub async fn start_child(&self, agent: &str) -> Result<Child, ClientError> {
        let v =
            self.post(&format!("/v1/sessions/{}/children", self.session), &serde_json::json!({"agent": agent})).await?;
        Ok(Child {
            id: v["id"].as_str().unwrap_or_default().to_owned(),
            token: v["token"].as_str().unwrap_or_default().to_owned(),
            spec: v["agentSpec"].clone(),
        })
    }

    /// A raw model call through the gateway (`/llm/anthropic/v1/messages`, …), not streamed.
    pub async fn llm(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.post(path, body).await
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// A W3C `traceparent`: `00-{32 hex trace id}-{16 hex span id}-{2 hex flags}`, ids not all zeros.
fn is_traceparent(t: &str) -> bool {
    let parts: Vec<&str> = t.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0')
}

/// A new trace for one session: a random trace id and span id, sampled (`-01`).
pub fn new_traceparent() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_err() {
        // No randomness to be had: ids from the clock and the process, still unique enough to tell runs apart.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        bytes[..16].copy_from_slice(&nanos.to_le_bytes());
        bytes[16..20].copy_from_slice(&std::process::id().to_le_bytes());
        bytes[20] = 1;
    }
    bytes[23] |= 1;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("00-{}-{}-01", &hex[..32], &hex[32..])
}
