//! OpenTelemetry traces over OTLP/HTTP (protobuf): a span per LLM request with the GenAI semantic
//! conventions, a span per tool call the response gate decides, and a span per policy decision, each with
//! the session. The parent comes from the request's W3C `traceparent` (the runner sends its session's).
//! Off unless the gateway's config has a `telemetry` section (see `paddock gateway`, which also turns it on
//! for the standard `OTEL_EXPORTER_OTLP_*` variables); when off, nothing here runs.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider};
use serde::Deserialize;

use crate::wire::Wire;

/// The `telemetry` section of the gateway's config. Every field may be left to the standard variables
/// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `…_HEADERS`, `…_TIMEOUT`,
/// `OTEL_SERVICE_NAME`, `OTEL_BSP_*`); what is set here wins.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP traces URL, used as given (e.g. `http://collector:4318/v1/traces`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Headers on every export (e.g. a collector's API key).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `service.name`; `paddock-gateway` unless `OTEL_SERVICE_NAME` says otherwise.
    #[serde(default)]
    pub service_name: Option<String>,
    /// How long spans gather before an export (the batch processor's delay; 5 s by default).
    #[serde(default)]
    pub batch_delay_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot start the OTLP trace exporter: {0}")]
pub struct TelemetryError(String);

/// The tracer, when traces are on.
#[derive(Clone)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Telemetry {
    pub fn start(cfg: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
        // The exporter's HTTP client is reqwest on rustls, which needs a process-wide crypto provider: the
        // gateway's (ring). Installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary);
        if let Some(url) = &cfg.endpoint {
            exporter = exporter.with_endpoint(url.clone());
        }
        if !cfg.headers.is_empty() {
            exporter = exporter.with_headers(cfg.headers.clone().into_iter().collect());
        }
        let exporter = exporter.build().map_err(|e| TelemetryError(e.to_string()))?;
        let mut batch = BatchConfigBuilder::default();
        if let Some(ms) = cfg.batch_delay_ms {
            batch = batch.with_scheduled_delay(Duration::from_millis(ms));
        }
        let mut resource = Resource::builder();
        if cfg.service_name.is_some() || std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(cfg.service_name.clone().unwrap_or_else(|| "paddock-gateway".into()));
        }
        let provider = SdkTracerProvider::builder()
            // Every request is traced: a caller's `traceparent` names the trace, but its sampled flag does not
            // decide (an agent could otherwise switch off the traces of its own requests with `-00`).
            .with_sampler(Sampler::AlwaysOn)
            .with_span_processor(BatchSpanProcessor::builder(exporter).with_batch_config(batch.build()).build())
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("paddock-gateway");
        Ok(Telemetry { provider, tracer })
    }

    /// Exports every finished span now. Blocks (up to the export timeout): call it off the runtime.
    pub fn force_flush(&self) -> Result<(), TelemetryError> {
        self.provider.force_flush().map_err(|e| TelemetryError(e.to_string()))
    }

    /// Exports what is left and stops. Blocks: call it off the runtime.
    pub fn shutdown(&self) -> Result<(), TelemetryError> {
        self.provider.shutdown().map_err(|e| TelemetryError(e.to_string()))
    }

    /// The caller's trace context from its `traceparent` header; an empty context (a new trace) when it
    /// has none or a malformed one.
    pub fn parent(headers: &http::HeaderMap) -> Context {
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers))
    }

    /// A context holding a new span for one LLM request. The span ends when the last clone of the context
    /// is dropped (a streamed answer's, when its stream ends).
    pub fn llm(&self, parent: &Context, wire: Wire, session: &str) -> Context {
        let (operation, provider) = operation_of(wire);
        let span = self
            .tracer
            .span_builder(operation)
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", operation),
                KeyValue::new("gen_ai.provider.name", provider),
                KeyValue::new("gen_ai.conversation.id", session.to_owned()),
                KeyValue::new("paddock.session.id", session.to_owned()),
                KeyValue::new("paddock.wire", wire.as_str()),
            ])
            .start_with_context(&self.tracer, parent);
        parent.with_span(span)
    }

    /// A context holding a new span for one tool call the response gate decides, under the current span.
    pub fn tool_call(&self, session: &str, name: &str, id: &str) -> Context {
        let parent = Context::current();
        let span = self
            .tracer
            .span_builder(format!("execute_tool {}", bounded(name)))
            .with_kind(SpanKind::Internal)
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", "execute_tool"),
                KeyValue::new("gen_ai.tool.name", bounded(name)),
                KeyValue::new("gen_ai.tool.call.id", bounded(id)),
                KeyValue::new("gen_ai.tool.type", "function"),
                KeyValue::new("paddock.session.id", session.to_owned()),
            ])
            .start_with_context(&self.tracer, &parent);
        parent.with_span(span)
    }

    /// One policy decision, under the current span: started at `started`, ended now. `ruling` is `None`
    /// when the decision failed (an error, not a verdict).
    pub fn decision(
        &self,
        session: &str,
        phase: &str,
        tool: Option<&str>,
        ruling: Option<&crate::Ruling>,
        started: SystemTime,
    ) {
        let mut attributes = vec![
            KeyValue::new("paddock.session.id", session.to_owned()),
            KeyValue::new("paddock.phase", phase.to_owned()),
        ];
        if let Some(tool) = tool {
            attributes.push(KeyValue::new("gen_ai.tool.name", bounded(tool)));
        }
        if let Some(r) = ruling {
            attributes.push(KeyValue::new("paddock.policy.verdict", r.verdict.as_str()));
            attributes.push(KeyValue::new("paddock.policy.status", r.status.clone()));
            if let Some(p) = &r.policy {
                attributes.push(KeyValue::new("paddock.policy.name", p.clone()));
            }
            if let Some(rule) = &r.rule {
                attributes.push(KeyValue::new("paddock.policy.rule", rule.clone()));
            }
        }
        let mut span = self
            .tracer
            .span_builder(format!("policy {phase}"))
            .with_start_time(started)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &Context::current());
        if ruling.is_none() {
            span.set_status(Status::error("the decision failed"));
        }
        span.end();
    }
}

/// Strings an agent or a provider chose (a model name, a tool name) go into spans at most this long: a span
/// queue of 2,048 must not hold megabytes of them.
const MAX_ATTRIBUTE_BYTES: usize = 256;

fn bounded(s: &str) -> String {
    if s.len() <= MAX_ATTRIBUTE_BYTES {
        return s.to_owned();
    }
    let mut end = MAX_ATTRIBUTE_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Sets attributes on the current span, if there is one: the LLM request's model, usage, response model.
/// Costs a thread-local read when traces are off.
pub fn annotate(attributes: impl FnOnce() -> Vec<KeyValue>) {
    let cx = Context::current();
    if cx.has_active_span() {
        cx.span().set_attributes(attributes());
    }
}

/// The usage attributes of a model request (GenAI conventions).
pub fn usage(u: &paddock_policy::Usage) {
    annotate(|| {
        vec![
            KeyValue::new("gen_ai.usage.input_tokens", u.input_tokens.min(i64::MAX as u64) as i64),
            KeyValue::new("gen_ai.usage.output_tokens", u.output_tokens.min(i64::MAX as u64) as i64),
            KeyValue::new(
                "gen_ai.usage.cache_read.input_tokens",
                u.cache_read_input_tokens.min(i64::MAX as u64) as i64,
            ),
            KeyValue::new(
                "gen_ai.usage.cache_creation.input_tokens",
                u.cache_creation_input_tokens.min(i64::MAX as u64) as i64,
            ),
        ]
    });
}

/// The GenAI operation and provider names of a wire format.
fn operation_of(wire: Wire) -> (&'static str, &'static str) {
    match wire {
        Wire::Anthropic => ("chat", "anthropic"),
        Wire::Chat | Wire::Responses => ("chat", "openai"),
        Wire::Gemini => ("generate_content", "gcp.gemini"),
    }
}

/// The request's model and output cap, once read: the LLM span is named `{operation} {model}`.
pub fn request(wire: Wire, model: &str, max_tokens: Option<u64>) {
    let cx = Context::current();
    if !cx.has_active_span() {
        return;
    }
    let span = cx.span();
    let (operation, _) = operation_of(wire);
    let model = bounded(model);
    span.update_name(format!("{operation} {model}"));
    span.set_attribute(KeyValue::new("gen_ai.request.model", model));
    if let Some(n) = max_tokens {
        span.set_attribute(KeyValue::new("gen_ai.request.max_tokens", n.min(i64::MAX as u64) as i64));
    }
}

/// The model the provider says answered.
pub fn response_model(model: &str) {
    annotate(|| vec![KeyValue::new("gen_ai.response.model", bounded(model))]);
}

/// How the request ended, for the client: an error status marks the span failed (`error.type`).
pub fn outcome(cx: &Context, status: u16) {
    if status >= 400 {
        let span = cx.span();
        span.set_attribute(KeyValue::new("error.type", status.to_string()));
        span.set_status(Status::error(format!("HTTP {status}")));
    }
}

/// Whether traces are on, and how: the config's `telemetry` section, else the standard variables
/// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` set); `OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none` turn them off either way. `var` reads a variable (the process's, in
/// `paddock gateway`).
pub fn switched(cfg: Option<TelemetryConfig>, var: impl Fn(&str) -> Option<String>) -> Option<TelemetryConfig> {
    let set = |k: &str| var(k).is_some_and(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none")
    {
        return None;
    }
    cfg.or_else(|| {
        (set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT")).then(TelemetryConfig::default)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn strings_an_agent_chose_are_bounded_in_spans() {
        assert_eq!(bounded("claude-sonnet-4-5"), "claude-sonnet-4-5");
        let long = "é".repeat(1000);
        let b = bounded(&long);
        assert!(b.len() <= MAX_ATTRIBUTE_BYTES + "…".len() && b.ends_with('…'), "{}", b.len());
    }

    #[test]
    fn traces_are_on_for_a_config_section_or_an_otlp_endpoint_variable_and_off_when_disabled() {
        let section = Some(TelemetryConfig { endpoint: Some("http://c:4318/v1/traces".into()), ..Default::default() });
        assert!(switched(None, vars(&[])).is_none(), "off by default");
        assert!(switched(None, vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])).is_none());
        assert!(switched(None, vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])).is_some());
        assert!(switched(None, vars(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")])).is_some());
        assert_eq!(switched(section.clone(), vars(&[])).unwrap().endpoint.as_deref(), Some("http://c:4318/v1/traces"));
        assert!(switched(section.clone(), vars(&[("OTEL_SDK_DISABLED", "true")])).is_none());
        assert!(switched(section, vars(&[("OTEL_TRACES_EXPORTER", "none")])).is_none());
        assert!(
            switched(None, vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"), ("OTEL_SDK_DISABLED", "TRUE")]))
                .is_none()
        );
    }
}
