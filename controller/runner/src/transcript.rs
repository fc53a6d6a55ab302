//! The normalised transcript: what every harness reports, as JSON lines on stdout and to the gateway
//! (`POST /v1/sessions/{id}/events`), which serves it live to `paddock session logs -f`.
//!
//! The gateway's transcript holds what the runner saw (messages, tool calls and results, usage, errors)
//! marked as the runner's, and the decisions and the session's end that the gateway itself writes. A
//! verdict or end the harness noticed is for stdout and the caller's summary only: the gateway refuses
//! them from a runner, which holds a token the agent can read.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::client::GatewayClient;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TranscriptEvent {
    /// Text from the user (the prompt) or the assistant.
    Message {
        role: String,
        text: String,
    },
    ToolCall {
        id: String,
        name: String,
        args: Value,
    },
    ToolResult {
        id: String,
        output: String,
        is_error: bool,
    },
    /// A policy decision the harness met (allow, deny or ask). Local only: the gateway writes its own.
    Verdict {
        phase: String,
        verdict: String,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool: Option<String>,
    },
    Usage {
        input_tokens: u64,
        output_tokens: u64,
    },
    Error {
        message: String,
    },
    /// The session's end: `Succeeded` or `Failed`. Local only: the gateway writes the end it records.
    Done {
        phase: String,
        message: String,
    },
}

impl TranscriptEvent {
    /// Whether the gateway takes this event from a runner (see the module's comment).
    pub fn posted(&self) -> bool {
        !matches!(self, TranscriptEvent::Verdict { .. } | TranscriptEvent::Done { .. })
    }
}

/// Where transcript events go. Cheap to clone.
#[derive(Clone)]
pub struct Transcript {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    gateway: Option<GatewayClient>,
    stdout: bool,
    pending: Vec<TranscriptEvent>,
    /// Everything emitted, for tests and for the caller's summary.
    all: Vec<TranscriptEvent>,
    /// Whether assistant messages are held back ([`Transcript::hold_answers`]).
    hold: bool,
    /// The assistant messages since the last other event: a final answer may come in several (Claude Code
    /// reports one per text block), and none of it is shown before the `response` phase allows it.
    held: Vec<TranscriptEvent>,
}

impl Transcript {
    pub fn new(gateway: Option<GatewayClient>, stdout: bool) -> Transcript {
        Transcript {
            inner: Arc::new(Mutex::new(Inner {
                gateway,
                stdout,
                pending: Vec::new(),
                all: Vec::new(),
                hold: false,
                held: Vec::new(),
            })),
        }
    }

    /// From now on assistant messages are held back until another event the gateway takes (other than
    /// usage) follows them, or until [`Transcript::take_held`]. The last ones a harness reports are its final
    /// answer, which must not be seen (on stdout, by the gateway, as the Session's last message) before the
    /// `response` phase has allowed it.
    pub async fn hold_answers(&self) {
        self.inner.lock().await.hold = true;
    }

    /// Stops holding messages back; returns those held, not yet emitted, in order.
    pub async fn take_held(&self) -> Vec<TranscriptEvent> {
        let mut inner = self.inner.lock().await;
        inner.hold = false;
        std::mem::take(&mut inner.held)
    }

    pub async fn emit(&self, ev: TranscriptEvent) {
        let mut inner = self.inner.lock().await;
        if inner.hold {
            if matches!(&ev, TranscriptEvent::Message { role, .. } if role == "assistant") {
                inner.held.push(ev);
                return;
            }
            // Usage reported after the answer (Claude Code's `result`, Codex's `turn.completed`) and the
            // harness's local verdicts do not show that more is coming.
            if ev.posted() && !matches!(ev, TranscriptEvent::Usage { .. }) {
                for earlier in std::mem::take(&mut inner.held) {
                    Self::write(&mut inner, earlier).await;
                }
            }
        }
        Self::write(&mut inner, ev).await;
    }

    async fn write(inner: &mut Inner, ev: TranscriptEvent) {
        if inner.stdout {
            let mut line = serde_json::to_vec(&ev).expect("json");
            line.push(b'\n');
            let _ = tokio::io::stdout().write_all(&line).await;
        }
        inner.all.push(ev.clone());
        if !ev.posted() {
            return;
        }
        inner.pending.push(ev);
        // Send at once: `logs -f` is live, and events are few next to model calls.
        Self::send(inner).await;
    }

    async fn send(inner: &mut Inner) {
        let Some(gw) = inner.gateway.clone() else {
            inner.pending.clear();
            return;
        };
        if inner.pending.is_empty() {
            return;
        }
        match gw.post_events(&inner.pending).await {
            Ok(()) => inner.pending.clear(),
            // Refused (422: a type the gateway does not take from runners): sending it again cannot help,
            // and keeping it would hold back every later event.
            Err(e @ crate::client::ClientError::Status { status: 422, .. }) => {
                tracing::warn!(error = %e, dropped = inner.pending.len(), "the gateway refused transcript events");
                inner.pending.clear();
            }
            Err(e) => {
                tracing::warn!(error = %e, kept = inner.pending.len(), "could not send transcript events; retrying later")
            }
        }
    }

    pub async fn flush(&self) {
        let mut inner = self.inner.lock().await;
        Self::send(&mut inner).await;
    }

    pub async fn events(&self) -> Vec<TranscriptEvent> {
        self.inner.lock().await.all.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(role: &str, text: &str) -> TranscriptEvent {
        TranscriptEvent::Message { role: role.into(), text: text.into() }
    }

    #[tokio::test]
    async fn an_answer_in_several_messages_is_held_whole_until_something_else_follows() {
        let t = Transcript::new(None, false);
        t.hold_answers().await;
        t.emit(said("assistant", "Looking.")).await;
        t.emit(TranscriptEvent::ToolCall { id: "t1".into(), name: "list_dir".into(), args: serde_json::json!({}) })
            .await;
        // What came before the tool call was not the answer: it is out, before the call.
        assert_eq!(t.events().await.len(), 2);
        t.emit(said("assistant", "Part one of the answer,")).await;
        t.emit(said("assistant", "and part two with ghp_secret.")).await;
        assert_eq!(t.events().await.len(), 2, "neither part of the final answer is shown before `response`");
        let held = t.take_held().await;
        assert_eq!(
            held,
            vec![said("assistant", "Part one of the answer,"), said("assistant", "and part two with ghp_secret.")]
        );
        assert_eq!(t.events().await.len(), 2, "taken, not shown");
    }
}
