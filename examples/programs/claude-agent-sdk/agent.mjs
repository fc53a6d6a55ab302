// An agent written with the Claude Agent SDK, run by Paddock's `command` harness
// (examples/agents/sdk-claude-agent.yaml). Nothing in it is Paddock's but the hook below, and even that
// is optional: the harness gives the SDK the gateway as ANTHROPIC_BASE_URL and the session token as
// ANTHROPIC_API_KEY, so every model request is governed, and the gateway removes a denied tool call from
// the model's answer before the SDK sees it.
//
// The prompt is on stdin; every SDK message goes to stdout as one JSON line (Claude Code's stream-json),
// which the harness reads as the transcript, its `result` as the final answer.
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { query } from "@anthropic-ai/claude-agent-sdk";

const env = process.env;
const prompt = readFileSync(0, "utf8");

// The Claude Code CLI the SDK drives: $CLAUDE_CODE_EXECUTABLE, else `claude` on PATH.
function claudeExecutable() {
  if (env.CLAUDE_CODE_EXECUTABLE) return env.CLAUDE_CODE_EXECUTABLE;
  for (const dir of (env.PATH ?? "").split(":")) {
    const candidate = join(dir, "claude");
    if (dir && existsSync(candidate)) return candidate;
  }
  return undefined;
}

const gateway = `${env.PADDOCK_GATEWAY_URL}/v1/sessions/${env.PADDOCK_SESSION}`;
const headers = { authorization: `Bearer ${env.PADDOCK_TOKEN}`, "content-type": "application/json" };
const deny = (reason) => ({
  hookSpecificOutput: { hookEventName: "PreToolUse", permissionDecision: "deny", permissionDecisionReason: reason },
});

// A PreToolUse hook that asks the gateway about each call where it runs, tied to the response gate's
// decision of the same call by its id. It fails closed: an error is a deny.
async function paddockGate(input, toolUseId) {
  try {
    const event = { phase: "tool_call", tool: input.tool_name, args: input.tool_input ?? {}, tool_id: toolUseId };
    let r = await fetch(`${gateway}/decide`, { method: "POST", headers, body: JSON.stringify(event) });
    let ruling = await r.json();
    while (r.ok && ruling.status === "pending" && ruling.approval_id) {
      r = await fetch(`${gateway}/approvals/${ruling.approval_id}?wait=30`, { headers });
      ruling = await r.json();
    }
    if (r.ok && ruling.verdict === "allow") return {};
    return deny(`[paddock] The tool call \`${input.tool_name}\` was blocked: ${ruling.reason ?? `HTTP ${r.status}`}`);
  } catch (e) {
    return deny(`[paddock] The tool call \`${input.tool_name}\` was blocked: the gateway could not decide (${e.message}).`);
  }
}

const options = {
  cwd: process.cwd(),
  model: env.PADDOCK_MODEL,
  maxTurns: 20,
  // Paddock's sandbox surrounds the agent; the gateway and the hook decide every call.
  permissionMode: "bypassPermissions",
  allowDangerouslySkipPermissions: true,
  // No settings files from the workspace or the home: only what this program says.
  settingSources: [],
  pathToClaudeCodeExecutable: claudeExecutable(),
  env: { ...env, IS_SANDBOX: "1" },
  hooks: { PreToolUse: [{ hooks: [async (input, toolUseId) => paddockGate(input, toolUseId)] }] },
};
if (env.PADDOCK_INSTRUCTIONS) {
  options.systemPrompt = { type: "preset", preset: "claude_code", append: env.PADDOCK_INSTRUCTIONS };
}

for await (const message of query({ prompt, options })) {
  console.log(JSON.stringify(message));
}
