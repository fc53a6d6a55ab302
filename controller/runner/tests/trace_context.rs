//! The runner's requests carry its session's W3C trace context, so the gateway's spans join its trace.

use paddock_api::Phase;
use paddock_policy::Event;
use paddock_runner::GatewayClient;
use paddock_runner::client::new_traceparent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A one-request server that answers an allow and returns the request's head.
async fn one_request() -> (String, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = r#"{"verdict":"allow","reason":"ok","status":"decided"}"#;
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(answer.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&buf).to_lowercase()
    });
    (url, task)
}

#[tokio::test]
async fn a_decision_request_carries_the_sessions_traceparent() {
    let trace = new_traceparent();
    assert!(trace.starts_with("00-") && trace.ends_with("-01") && trace.len() == 55, "{trace}");
    assert_ne!(trace, new_traceparent(), "each session gets its own trace");
    let (url, head) = one_request().await;
    let client = GatewayClient::new(&url, "s-1", "tok").with_traceparent(&trace);
    assert_eq!(client.traceparent(), Some(trace.as_str()));
    let event = Event { phase: Phase::ToolCall, tool: Some("Bash".into()), ..Event::default() };
    assert!(client.decide(&event).await.unwrap().allowed());
    let head = head.await.unwrap();
    assert!(head.contains(&format!("traceparent: {trace}")), "{head}");
}

#[tokio::test]
async fn a_malformed_traceparent_is_not_sent() {
    for bad in [
        "",
        "00-abc-def-01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx-evil: 1",
    ] {
        let (url, head) = one_request().await;
        let client = GatewayClient::new(&url, "s-1", "tok").with_traceparent(bad);
        assert_eq!(client.traceparent(), None, "{bad:?}");
        let event = Event { phase: Phase::ToolCall, tool: Some("Bash".into()), ..Event::default() };
        client.decide(&event).await.unwrap();
        assert!(!head.await.unwrap().contains("traceparent"), "{bad:?}");
    }
}
