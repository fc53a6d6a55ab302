//! The `custom` harness: Paddock's own agent loop over the gateway. It speaks Anthropic Messages or OpenAI
//! Chat Completions, by the model's provider, offers the Agent's enabled builtin tools, its sub-agents and
//! its advisor, and asks the admission API before every tool runs (`tool_call`) and before every result goes
//! back to the model (`tool_result`). Anything but an allow — including an unreachable gateway — stops the
//! tool: it fails closed.
//!
//! Sub-agents the model asks for in one turn run in parallel, up to the Agent's `team.maxParallel` at once;
//! the gateway counts live sub-agents across turns and refuses one past the limit. Each sub-agent's session
//! is ended when it finishes, so that it stops counting.

mod mcp;
pub mod tools;

use paddock_api::AgentSpec;
use paddock_api::Phase;
use paddock_api::catalog::{ModelCatalog, Provider};
use paddock_policy::Event;
use serde_json::{Value, json};

use crate::client::GatewayClient;
use crate::transcript::{Transcript, TranscriptEvent};
use crate::{RunContext, RunOutcome};

/// Output tokens asked for per turn.
const MAX_TOKENS: u64 = 8192;
/// Prefix of the tools that hand work to a sub-agent.
const AGENT_TOOL: &str = "agent__";
/// The tool that asks the Agent's advisor model.
const ADVISOR_TOOL: &str = "consult_advisor";
/// Sub-agents within sub-agents, at most, in one runner (the gateway enforces the teams' `maxDepth`, at most 8).
const MAX_DEPTH: usize = 9;

pub async fn run(ctx: &RunContext, transcript: &Transcript) -> anyhow::Result<RunOutcome> {
    run_loop(ctx, transcript, 0).await
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Wire {
    Anthropic,
    Chat,
}

fn wire_for(model: &str) -> anyhow::Result<Wire> {
    match ModelCatalog::builtin().lookup(model).map(|m| m.provider) {
        Some(Provider::Anthropic | Provider::Scripted) => Ok(Wire::Anthropic),
        Some(Provider::Openai) => Ok(Wire::Chat),
        Some(other) => anyhow::bail!(
            "the custom harness speaks the Anthropic and OpenAI wire formats; `{model}` is a {other:?} model"
        ),
        None if model.starts_with("claude") => Ok(Wire::Anthropic),
        None => Ok(Wire::Chat),
    }
}

/// The tools this Agent offers the model: its enabled builtins and one per sub-agent.
fn tool_specs(agent: &AgentSpec) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for name in agent.tools.iter().filter(|t| tools::BUILTIN.contains(&t.as_str())) {
        if let Some((desc, schema)) = tools::schema(name) {
            out.push((name.clone(), desc.to_owned(), schema));
        }
    }
    if agent.advisor.is_some() {
        out.push((
            ADVISOR_TOOL.to_owned(),
            "Ask the advisor, a stronger model, for advice on a hard question. Give it all the context it needs: \
             it sees only the question."
                .to_owned(),
            json!({"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"],
                   "additionalProperties": false}),
        ));
    }
    for sub in &agent.sub_agents {
        out.push((
            format!("{AGENT_TOOL}{sub}"),
            format!("Hand a task to the `{sub}` agent and get its final answer."),
            json!({"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"],
                   "additionalProperties": false}),
        ));
    }
    out
}

struct Call {
    id: String,
    name: String,
    args: Value,
}

/// The conversation in one wire format.
struct Conversation {
    wire: Wire,
    model: String,
    system: Option<String>,
    messages: Vec<Value>,
    tools: Vec<(String, String, Value)>,
}

impl Conversation {
    fn path(&self) -> &'static str {
        match self.wire {
            Wire::Anthropic => "/llm/anthropic/v1/messages",
            Wire::Chat => "/llm/openai/v1/chat/completions",
        }
    }

    fn request(&self) -> Value {
        match self.wire {
            Wire::Anthropic => {
                let mut b = json!({"model": self.model, "max_tokens": MAX_TOKENS, "messages": self.messages});
                if let Some(s) = &self.system {
                    b["system"] = json!(s);
                }
                if !self.tools.is_empty() {
                    b["tools"] = self
                        .tools
                        .iter()
                        .map(|(n, d, s)| json!({"name": n, "description": d, "input_schema": s}))
                        .collect();
                }
                b
            }
            Wire::Chat => {
                let mut messages = Vec::new();
                if let Some(s) = &self.system {
                    messages.push(json!({"role": "system", "content": s}));
                }
                messages.extend(self.messages.iter().cloned());
                let mut b = json!({"model": self.model, "max_completion_tokens": MAX_TOKENS, "messages": messages});
                if !self.tools.is_empty() {
                    b["tools"] = self
                        .tools
                        .iter()
                        .map(|(n, d, s)| json!({"type": "function", "function": {"name": n, "description": d, "parameters": s}}))
                        .collect();
                }
                b
            }
        }
    }

    /// Reads a response: its text, its tool calls and its usage; and records it in the history.
    fn take(&mut self, resp: &Value) -> (String, Vec<Call>, (u64, u64)) {
        match self.wire {
            Wire::Anthropic => {
                let content = resp["content"].as_array().cloned().unwrap_or_default();
                let text = content.iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("\n");
                let calls = content
                    .iter()
                    .filter(|b| b["type"] == "tool_use")
                    .map(|b| Call {
                        id: b["id"].as_str().unwrap_or_default().into(),
                        name: b["name"].as_str().unwrap_or_default().into(),
                        args: b["input"].clone(),
                    })
                    .collect();
                self.messages.push(json!({"role": "assistant", "content": content}));
                let u = &resp["usage"];
                (text, calls, (u["input_tokens"].as_u64().unwrap_or(0), u["output_tokens"].as_u64().unwrap_or(0)))
            }
            Wire::Chat => {
                let msg = resp["choices"][0]["message"].clone();
                let text = msg["content"].as_str().unwrap_or_default().to_owned();
                let calls = msg["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| Call {
                        id: c["id"].as_str().unwrap_or_default().into(),
                        name: c["function"]["name"].as_str().unwrap_or_default().into(),
                        args: serde_json::from_str(c["function"]["arguments"].as_str().unwrap_or("{}"))
                            .unwrap_or_else(|_| json!({})),
                    })
                    .collect();
                self.messages.push(msg);
                let u = &resp["usage"];
                (text, calls, (u["prompt_tokens"].as_u64().unwrap_or(0), u["completion_tokens"].as_u64().unwrap_or(0)))
            }
        }
    }

    fn push_results(&mut self, results: Vec<(String, String, bool)>) {
        match self.wire {
            Wire::Anthropic => {
                let blocks: Vec<Value> = results
                    .into_iter()
                    .map(|(id, text, is_error)| json!({"type": "tool_result", "tool_use_id": id, "content": text, "is_error": is_error}))
                    .collect();
                self.messages.push(json!({"role": "user", "content": blocks}));
            }
            Wire::Chat => {
                for (id, text, _) in results {
                    self.messages.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
                }
            }
        }
    }
}

async fn run_loop(ctx: &RunContext, transcript: &Transcript, depth: usize) -> anyhow::Result<RunOutcome> {
    let wire = wire_for(&ctx.model)?;
    let mcp = mcp::McpServers::connect(ctx).await?;
    let mut tools = tool_specs(&ctx.agent);
    tools.extend(mcp.tools.iter().cloned());
    let mut convo = Conversation {
        wire,
        model: ctx.model.clone(),
        system: ctx.agent.instructions.clone(),
        messages: vec![json!({"role": "user", "content": ctx.prompt})],
        tools,
    };
    let team = ctx.agent.team.clone().unwrap_or_default();
    let slots = tokio::sync::Semaphore::new(team.max_parallel.max(1) as usize);
    let advice = std::sync::atomic::AtomicU32::new(0);
    for _ in 0..ctx.max_turns {
        let resp = ctx.gateway.llm(convo.path(), &convo.request()).await?;
        let (text, calls, (input, output)) = convo.take(&resp);
        transcript.emit(TranscriptEvent::Usage { input_tokens: input, output_tokens: output }).await;
        if !text.is_empty() {
            transcript.emit(TranscriptEvent::Message { role: "assistant".into(), text: text.clone() }).await;
        }
        if calls.is_empty() {
            return Ok(RunOutcome::succeeded(text));
        }
        let mut results = Vec::new();
        // In order, but the sub-agents the turn asks for one after another run together.
        let mut rest = calls.as_slice();
        while let Some(first) = rest.first() {
            let n = match first.name.starts_with(AGENT_TOOL) {
                true => rest.iter().take_while(|c| c.name.starts_with(AGENT_TOOL)).count(),
                false => 1,
            };
            let (batch, after) = rest.split_at(n);
            rest = after;
            for call in batch {
                let (id, name, args) = (call.id.clone(), call.name.clone(), call.args.clone());
                transcript.emit(TranscriptEvent::ToolCall { id, name, args }).await;
            }
            let run = batch.iter().map(|call| async {
                let _slot = slots.acquire().await.expect("never closed");
                tool_turn(ctx, transcript, call, depth, &convo.tools, &mcp, &advice).await
            });
            for (call, (text, is_error)) in batch.iter().zip(futures::future::join_all(run).await) {
                transcript
                    .emit(TranscriptEvent::ToolResult { id: call.id.clone(), output: text.clone(), is_error })
                    .await;
                results.push((call.id.clone(), text, is_error));
            }
        }
        convo.push_results(results);
    }
    Ok(RunOutcome::failed(format!("the agent used all {} turns its limits allow without finishing", ctx.max_turns)))
}

/// One tool call: admitted, run, and its result admitted. Returns the text for the model.
async fn tool_turn(
    ctx: &RunContext,
    transcript: &Transcript,
    call: &Call,
    depth: usize,
    offered: &[(String, String, Value)],
    mcp: &mcp::McpServers,
    advice: &std::sync::atomic::AtomicU32,
) -> (String, bool) {
    if !offered.iter().any(|(n, _, _)| *n == call.name) {
        return (format!("`{}` is not a tool of this agent", call.name), true);
    }
    if mcp.is_remote(&call.name) {
        // The gateway decides the call and its result at its MCP endpoint; deciding here too would count the
        // call twice. Its refusal comes back as the tool's error.
        let out = mcp.call(&call.name, &call.args).await;
        return (out.text, out.is_error);
    }
    let ask = Event {
        phase: Phase::ToolCall,
        tool: Some(call.name.clone()),
        args: call.args.clone(),
        tool_id: Some(call.id.clone()),
        ..Event::default()
    };
    match ctx.gateway.decide(&ask).await {
        Ok(r) if r.allowed() => {}
        Ok(r) => {
            super::verdict(transcript, Phase::ToolCall, Some(&call.name), &r).await;
            return (format!("[paddock] denied by policy {}: {}", r.policy.unwrap_or_default(), r.reason), true);
        }
        Err(e) => {
            return (format!("[paddock] the gateway could not decide this tool call, so it did not run: {e}"), true);
        }
    }
    let out = match call.name.strip_prefix(AGENT_TOOL) {
        Some(sub) => sub_agent(ctx, sub, &call.args, depth).await,
        None if call.name == ADVISOR_TOOL => consult_advisor(ctx, transcript, &call.args, advice).await,
        None if paddock_policy::tools::split_mcp_tool_name(&call.name).is_some() => {
            mcp.call(&call.name, &call.args).await
        }
        None => tools::run(&ctx.workspace, &ctx.egress_env(), &call.name, &call.args).await,
    };
    let check = Event {
        phase: Phase::ToolResult,
        tool: Some(call.name.clone()),
        args: call.args.clone(),
        tool_id: Some(call.id.clone()),
        output: Some(Value::String(out.text.clone())),
        is_error: out.is_error,
        ..Event::default()
    };
    match ctx.gateway.decide(&check).await {
        Ok(r) if r.allowed() => (out.text, out.is_error),
        Ok(r) => {
            super::verdict(transcript, Phase::ToolResult, Some(&call.name), &r).await;
            (
                format!("[paddock] the result was withheld by policy {}: {}", r.policy.unwrap_or_default(), r.reason),
                true,
            )
        }
        Err(e) => (format!("[paddock] the gateway could not check this result, so it is withheld: {e}"), true),
    }
}

/// Asks the Agent's advisor model one question, through the gateway like every model request of the
/// session (decided at `llm_request`, metered on this session), at most `maxConsultations` times.
async fn consult_advisor(
    ctx: &RunContext,
    transcript: &Transcript,
    args: &Value,
    advice: &std::sync::atomic::AtomicU32,
) -> tools::ToolOutput {
    let fail = |text: String| tools::ToolOutput { text, is_error: true };
    let Some(advisor) = &ctx.agent.advisor else { return fail("this agent has no advisor".into()) };
    let Some(question) = args.get("question").and_then(Value::as_str) else {
        return fail("argument `question` (a string) is required".into());
    };
    let asked = advice.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if asked >= advisor.max_consultations {
        return fail(format!("the advisor was consulted {} times already, its limit", advisor.max_consultations));
    }
    let wire = match wire_for(&advisor.model) {
        Ok(w) => w,
        Err(e) => return fail(format!("{e:#}")),
    };
    let mut convo = Conversation {
        wire,
        model: advisor.model.clone(),
        system: advisor.instructions.clone(),
        messages: vec![json!({"role": "user", "content": question})],
        tools: Vec::new(),
    };
    match ctx.gateway.llm(convo.path(), &convo.request()).await {
        Ok(resp) => {
            let (text, _, (input, output)) = convo.take(&resp);
            transcript.emit(TranscriptEvent::Usage { input_tokens: input, output_tokens: output }).await;
            tools::ToolOutput { text, is_error: false }
        }
        Err(e) => fail(format!("the advisor could not be consulted: {e}")),
    }
}

/// Runs a sub-agent as a child session: its own token, its own Agent's policies, its cost rolled up into
/// this session's by the gateway. Its transcript goes to the child session; its session is ended when it
/// finishes (its own token ends it), so that the team's live sub-agents are counted right.
async fn sub_agent(ctx: &RunContext, agent: &str, args: &Value, depth: usize) -> tools::ToolOutput {
    let fail = |text: String| tools::ToolOutput { text, is_error: true };
    // The gateway refuses a start past the team's depth; this only keeps a runaway loop bounded here.
    if depth + 1 >= MAX_DEPTH {
        return fail(format!("sub-agents may nest at most {MAX_DEPTH} deep"));
    }
    let Some(prompt) = args.get("prompt").and_then(Value::as_str) else {
        return fail("argument `prompt` (a string) is required".into());
    };
    let child = match ctx.gateway.start_child(agent).await {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start sub-agent `{agent}`: {e}")),
    };
    let gateway: GatewayClient = ctx.gateway.child(&child.id, &child.token);
    // A child that cannot run here is ended at once: alive, it would count against the team's places.
    let not_run = |why: String| async {
        if let Err(e) = gateway.end("Failed", &why).await {
            tracing::warn!(session = %child.id, error = %e, "could not end the sub-agent's session");
        }
        fail(why)
    };
    let spec: AgentSpec = match serde_json::from_value(child.spec.clone()) {
        Ok(s) => s,
        Err(e) => return not_run(format!("sub-agent `{agent}`: the gateway sent no usable definition: {e}")).await,
    };
    if spec.harness != paddock_api::Harness::Custom {
        return not_run(format!("sub-agent `{agent}` uses another harness; only custom sub-agents run in-process"))
            .await;
    }
    let child_ctx = RunContext {
        agent_name: agent.into(),
        model: spec.model.clone(),
        max_turns: spec.limits.max_turns,
        agent: spec,
        prompt: prompt.into(),
        workspace: ctx.workspace.clone(),
        gateway: gateway.clone(),
        timeout: ctx.timeout,
        paddock_bin: ctx.paddock_bin.clone(),
        // Its commands go out with its own token (its own session's policies), trusting the same CA.
        ca_bundle: ctx.ca_bundle.clone(),
    };
    let child_transcript = Transcript::new(Some(gateway.clone()), false);
    // A sub-agent's session has its own prompt and final answer, decided by its own Agent's policies like
    // any session's: a refusal is the tool's error.
    let transcript = &child_transcript;
    let governed =
        super::governed(&child_ctx, transcript, |c| async move { Box::pin(run_loop(&c, transcript, depth + 1)).await });
    let outcome = match Box::pin(governed).await {
        Ok(o) => o,
        Err(e) => RunOutcome::failed(format!("{e:#}")),
    };
    child_transcript
        .emit(TranscriptEvent::Done { phase: outcome.phase.clone(), message: outcome.message.clone() })
        .await;
    if let Err(e) = gateway.end(&outcome.phase, &outcome.message).await {
        tracing::warn!(session = %child.id, error = %e, "could not end the sub-agent's session");
    }
    tools::ToolOutput { text: outcome.message, is_error: outcome.phase != "Succeeded" }
}
