//! MCP's older HTTP+SSE transport (protocol 2024-11-05), for remote servers that have not moved to streamable
//! HTTP. rmcp dropped its client, so this is the one piece of the protocol written here: `GET url` opens the
//! event stream, whose first `endpoint` event names where messages are POSTed; every server message then
//! arrives as a `message` event. rmcp's client runs on top of it as on any transport.
//!
//! The endpoint must be on the stream's own origin: a server cannot send the gateway's POSTs, and the
//! credential they carry, to another host.

use futures_util::StreamExt;
use reqwest_mcp::Url;
use reqwest_mcp::header::HeaderMap;
use rmcp::RoleClient;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::mpsc;

/// The largest event the stream may send.
const MAX_EVENT_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LegacySseError {
    #[error("{0}")]
    Connect(String),
    #[error("posting a message: {0}")]
    Post(String),
}

pub struct LegacySse {
    http: reqwest_mcp::Client,
    endpoint: Url,
    headers: HeaderMap,
    rx: mpsc::Receiver<RxJsonRpcMessage<RoleClient>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for LegacySse {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl LegacySse {
    /// Opens the event stream at `url` and waits for its `endpoint` event.
    pub async fn connect(
        http: reqwest_mcp::Client,
        url: &str,
        headers: HeaderMap,
    ) -> Result<LegacySse, LegacySseError> {
        let fail = |e: String| LegacySseError::Connect(e);
        let base = Url::parse(url).map_err(|e| fail(format!("`{url}`: {e}")))?;
        let resp = http
            .get(base.clone())
            .headers(headers.clone())
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("GET {url} answered {}", resp.status())));
        }
        // The parser buffers an event until it ends: a stream whose event never ends is cut at the limit.
        let bounded = resp.bytes_stream().scan(0usize, |open, chunk| {
            if let Ok(c) = &chunk {
                *open = match c.windows(2).rposition(|w| w == b"\n\n") {
                    Some(i) => c.len() - i - 2,
                    None => *open + c.len(),
                };
            }
            std::future::ready((*open <= MAX_EVENT_BYTES).then_some(chunk))
        });
        let mut events = sse_stream::SseStream::from_bytes_stream(Box::pin(bounded));
        let endpoint = loop {
            match events.next().await {
                Some(Ok(ev)) if ev.event.as_deref() == Some("endpoint") => {
                    let data = ev.data.unwrap_or_default();
                    let e = base.join(data.trim()).map_err(|e| fail(format!("endpoint `{data}`: {e}")))?;
                    if e.origin() != base.origin() {
                        return Err(fail(format!("the endpoint `{e}` is not on the stream's origin")));
                    }
                    break e;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(fail(e.to_string())),
                None => return Err(fail("the event stream ended before naming its endpoint".into())),
            }
        };
        let (tx, rx) = mpsc::channel(64);
        let reader = tokio::spawn(async move {
            while let Some(Ok(ev)) = events.next().await {
                if !matches!(ev.event.as_deref(), None | Some("message")) {
                    continue;
                }
                let Some(data) = ev.data.filter(|d| d.len() <= MAX_EVENT_BYTES) else { continue };
                match serde_json::from_str::<RxJsonRpcMessage<RoleClient>>(&data) {
                    Ok(m) => {
                        if tx.send(m).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "an MCP server sent a message that is not JSON-RPC; ignored"),
                }
            }
        });
        Ok(LegacySse { http, endpoint, headers, rx, reader })
    }
}

impl Transport<RoleClient> for LegacySse {
    type Error = LegacySseError;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let req = self.http.post(self.endpoint.clone()).headers(self.headers.clone());
        async move {
            let body = serde_json::to_vec(&item).map_err(|e| LegacySseError::Post(e.to_string()))?;
            let resp = req
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| LegacySseError::Post(e.to_string()))?;
            match resp.status().is_success() {
                true => Ok(()),
                false => Err(LegacySseError::Post(format!("answered {}", resp.status()))),
            }
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> {
        self.rx.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.reader.abort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that names `endpoint` and then ends.
    async fn stream_naming(endpoint: &'static str) -> String {
        let app = axum::Router::new().route(
            "/sse",
            axum::routing::get(move || async move {
                ([("content-type", "text/event-stream")], format!("event: endpoint\ndata: {endpoint}\n\n"))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}/sse", listener.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn http() -> reqwest_mcp::Client {
        let tls =
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
        reqwest_mcp::Client::builder().tls_backend_preconfigured(tls).build().unwrap()
    }

    #[tokio::test]
    async fn an_event_that_never_ends_is_cut_at_the_limit() {
        let app = axum::Router::new().route(
            "/sse",
            axum::routing::get(|| async {
                // `data: xxxx…` forever, the event never ended.
                let first =
                    futures_util::stream::once(async { Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"data: ")) });
                let endless =
                    first.chain(futures_util::stream::repeat_with(|| Ok(bytes::Bytes::from(vec![b'x'; 64 << 10]))));
                ([("content-type", "text/event-stream")], axum::body::Body::from_stream(endless))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}/sse", listener.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let connect = LegacySse::connect(http(), &url, HeaderMap::new());
        let e = tokio::time::timeout(std::time::Duration::from_secs(60), connect)
            .await
            .expect("the endless event was cut, not buffered forever")
            .err()
            .expect("refused");
        assert!(e.to_string().contains("ended before naming its endpoint"), "{e}");
    }

    #[tokio::test]
    async fn the_endpoint_must_be_on_the_streams_origin() {
        let url = stream_naming("http://evil.example/message?session=1").await;
        let e = LegacySse::connect(http(), &url, HeaderMap::new()).await.err().expect("refused");
        assert!(e.to_string().contains("not on the stream's origin"), "{e}");
        // A relative endpoint resolves against the stream's URL.
        let url = stream_naming("/message?sessionId=abc").await;
        let t = LegacySse::connect(http(), &url, HeaderMap::new()).await.unwrap();
        assert_eq!(t.endpoint.path(), "/message");
        assert_eq!(t.endpoint.query(), Some("sessionId=abc"));
    }
}
