"""An agent written with the OpenAI Agents SDK, run by Paddock's `command` harness
(examples/agents/sdk-openai-agents.yaml).

Nothing in it is Paddock's: the harness gives the SDK the gateway as OPENAI_BASE_URL and the session token
as OPENAI_API_KEY, so every model request is governed, and the gateway removes a denied tool call from the
model's answer before the SDK runs it. The prompt is on stdin; what happens goes to stdout as JSON lines in
Paddock's transcript format, and a last `result` line carries the final answer and the usage.
"""

import asyncio
import json
import os
import subprocess
import sys

from agents import (
    Agent,
    ItemHelpers,
    ModelSettings,
    Runner,
    function_tool,
    set_default_openai_api,
    set_tracing_disabled,
)

# Traces would go to OpenAI's servers, past the gateway (the harness also sets OPENAI_AGENTS_DISABLE_TRACING).
set_tracing_disabled(True)
# The Chat Completions format; "responses" works as well.
set_default_openai_api(os.environ.get("PADDOCK_OPENAI_API", "chat_completions"))


def emit(event: dict) -> None:
    print(json.dumps(event), flush=True)


@function_tool
def shell(command: str) -> str:
    """Runs a shell command in the workspace and returns what it printed."""
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300)
    return done.stdout + done.stderr


@function_tool
def write_file(path: str, content: str) -> str:
    """Writes a whole file in the workspace."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)
    return f"wrote {len(content)} characters to {path}"


async def main() -> None:
    prompt = sys.stdin.read()
    agent = Agent(
        name="paddock-agent",
        instructions=os.environ.get("PADDOCK_INSTRUCTIONS", "You are a careful coding agent."),
        model=os.environ["PADDOCK_MODEL"],
        tools=[shell, write_file],
        # Streamed Chat answers carry their usage only when asked for it.
        model_settings=ModelSettings(include_usage=True),
    )
    run = Runner.run_streamed(agent, prompt, max_turns=20)
    async for ev in run.stream_events():
        if ev.type != "run_item_stream_event":
            continue
        item = ev.item
        if item.type == "tool_call_item":
            raw = item.raw_item
            emit({"type": "tool_call", "id": raw.call_id, "name": raw.name, "args": json.loads(raw.arguments or "{}")})
        elif item.type == "tool_call_output_item":
            emit({"type": "tool_result", "id": item.raw_item["call_id"], "output": str(item.output), "is_error": False})
        elif item.type == "message_output_item":
            emit({"type": "message", "role": "assistant", "text": ItemHelpers.text_message_output(item)})
    usage = run.context_wrapper.usage
    emit({
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": str(run.final_output),
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
    })


asyncio.run(main())
