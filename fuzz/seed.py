#!/usr/bin/env python3
"""Seeds the fuzz corpus (fuzz/corpus/<target>/seed-*) from the project's test inputs: the agents
repository template, the examples and the hostile YAML corpus, the policy suites' commands, and the
request, response, stream, hook, push and MCP shapes the tests send. Run from the repository root; the
fuzzer adds what it finds beside the seeds (`cargo fuzz cmin` keeps the corpus small)."""
import glob, hashlib, json, os, re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def j(v):
    return json.dumps(v, separators=(",", ":"))


def files(*patterns):
    for p in patterns:
        for f in sorted(glob.glob(os.path.join(ROOT, p), recursive=True)):
            with open(f, "rb") as fh:
                yield f, fh.read()


# agents_repo: each YAML file alone, and an agent with the policies it names (files cut at 0xff).
yamls = list(files("agents-repo-template/**/*.yaml", "examples/**/*.yaml", "tests/corpus/bad/*", "tests/policy-suites/**/*.yaml"))
for _, b in yamls:
    if len(b) <= 64 * 1024:
        put("agents_repo", b)
tpl = dict(files("agents-repo-template/agents/*.yaml", "agents-repo-template/policies/*.yaml"))
agents = [b for f, b in tpl.items() if "/agents/" in f]
policies = [b for f, b in tpl.items() if "/policies/" in f]
put("agents_repo", agents[0] + b"\xff" + policies[0] + b"\xff" + agents[-1] + b"\xff" + policies[-1])

# shell: every command line in the policy suites and the template's tests.
for _, b in files("tests/policy-suites/**/*.yaml", "agents-repo-template/policies/tests/*.yaml"):
    for m in re.finditer(rb'command:\s*(.+)', b):
        line = m.group(1).strip()
        if line[:1] in (b'"', b"'"):
            try:
                line = json.loads(line.decode()).encode() if line[:1] == b'"' else line[1:-1]
            except Exception:
                line = line[1:-1]
        put("shell", line)
for line in ["git push --force origin main", "cd repo && git -C ../x push", "bash -c 'gh pr merge 1 --admin'",
             "cat <<EOF > run.sh\ngit push -f\nEOF\nsh run.sh", "e\\cho $(printf '%s' push) | sh",
             "env GIT_DIR=/tmp/x git push origin HEAD:refs/heads/main", "*** Begin Patch\n*** Add File: a.sh\n+git push\n*** End Patch"]:
    put("shell", line)

# llm_request: a choice byte for the wire (0 anthropic, 1 chat, 2 responses, 3 gemini), one for the cap.
msgs = [{"role": "user", "content": "Help me tidy the export script."}]
reqs = {
    0: [{"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": True, "messages": msgs,
         "tools": [{"name": "Bash", "input_schema": {"type": "object"}}, {"type": "web_search_20250305", "name": "web_search"}],
         "system": [{"type": "text", "text": "You are a coder."}], "thinking": {"type": "enabled", "budget_tokens": 2048}}],
    1: [{"model": "gpt-5", "max_tokens": 1024, "stream": True, "stream_options": {"include_usage": True}, "messages": msgs,
         "tools": [{"type": "function", "function": {"name": "shell", "parameters": {}}}]},
        {"model": "gpt-5", "max_completion_tokens": 50, "n": 1, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}],
    2: [{"model": "gpt-5", "max_output_tokens": 1024, "stream": True, "input": [{"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "hi"}]}], "tools": [{"type": "web_search"}, {"type": "function", "name": "shell"}],
         "previous_response_id": "resp_1"}, {"model": "gpt-5", "input": "hi", "reasoning": {"effort": "low"}}],
    3: [{"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 1024,
         "thinkingConfig": {"thinkingBudget": -1}}, "tools": [{"functionDeclarations": [{"name": "run_shell_command"}]}, {"googleSearch": {}}],
         "systemInstruction": {"parts": [{"text": "be brief"}]}},
        {"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": "https://x/y", "mimeType": "text/plain"}}]}], "cachedContent": "c/1"}],
}
for w, bodies in reqs.items():
    for b in bodies:
        put("llm_request", bytes([w, 10]) + j(b).encode())
put("llm_request", bytes([3, 5]) + b"gemini-2.5-flash:generateContent\xff" + j(reqs[3][0]).encode())
put("llm_request", bytes([3, 5]) + b"models/../x:countTokens\xff{}")

# llm_response: whole answers with a tool call and usage, a choice byte for the wire and one for denials.
resps = {
    0: {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "stop_reason": "tool_use",
        "content": [{"type": "text", "text": "Running it."}, {"type": "tool_use", "id": "toolu_1", "name": "Bash",
                     "input": {"command": "git push --force origin main"}}],
        "usage": {"input_tokens": 12, "output_tokens": 30, "cache_read_input_tokens": 4}},
    1: {"id": "c1", "object": "chat.completion", "model": "gpt-5", "choices": [{"index": 0, "finish_reason": "tool_calls",
        "message": {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "shell", "arguments": "{\"command\":[\"git\",\"push\"]}"}}]}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 30, "prompt_tokens_details": {"cached_tokens": 2}}},
    2: {"id": "resp_1", "object": "response", "model": "gpt-5", "status": "completed", "output": [
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell", "arguments": "{\"command\":\"ls\"}"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]}],
        "usage": {"input_tokens": 12, "output_tokens": 30, "input_tokens_details": {"cached_tokens": 1}}},
    3: {"candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
        {"text": "ok"}, {"functionCall": {"name": "run_shell_command", "args": {"command": "git push -f"}}},
        {"function_call": {"name": "write_file", "args": {"file_path": "/etc/x"}}}]}}], "modelVersion": "gemini-2.5-pro",
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 30, "thoughtsTokenCount": 5, "cachedContentTokenCount": 1}},
}
for w, b in resps.items():
    for mask in (0, 1, 255):
        put("llm_response", bytes([w, mask]) + j(b).encode())


# llm_stream: the same answers streamed, as each provider frames them (chunks cut at 0xff).
def sse(events):
    out = b""
    for name, data in events:
        if name:
            out += b"event: " + name.encode() + b"\n"
        out += b"data: " + (data if isinstance(data, bytes) else j(data).encode()) + b"\n\n"
    return out


streams = {
    0: [("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Running."}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"command\":\"git pu"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "sh -f\"}"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}}),
        ("message_stop", {"type": "message_stop"})],
    1: [(None, {"id": "c1", "model": "gpt-5", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Run"}}]}),
        (None, {"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "shell", "arguments": "{\"comm"}}]}}]}),
        (None, {"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "and\":\"ls\"}"}}]}}]}),
        (None, {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 12, "completion_tokens": 30}}),
        (None, b"[DONE]")],
    2: [("response.created", {"type": "response.created", "response": {"id": "resp_1", "model": "gpt-5"}}),
        ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell", "arguments": ""}}),
        ("response.function_call_arguments.delta", {"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": "fc_1", "delta": "{\"command\":\"ls\"}"}),
        ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell", "arguments": "{\"command\":\"ls\"}"}}),
        ("response.completed", {"type": "response.completed", "response": {"id": "resp_1", "model": "gpt-5", "usage": {"input_tokens": 12, "output_tokens": 30}}})],
    3: [(None, {"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}}], "responseId": "r1"}),
        (None, {"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "run_shell_command", "args": {"command": "git push"}}}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 30}, "modelVersion": "gemini-2.5-pro"})],
}
for w, evs in streams.items():
    body = sse(evs)
    for mask in (0, 1, 255):
        put("llm_stream", bytes([w, mask, 1]) + body)
    # The same bytes cut between events and inside one (a `\r\n` split too).
    cut = body.replace(b"\n\n", b"\n\xff\n", 2).replace(b"data: ", b"da\xffta: ", 1)
    put("llm_stream", bytes([w, 2, 0]) + cut)
    put("sse", cut.replace(b"\n", b"\r\n"))
    put("sse", body)
put("sse", b"event: a\r\ndata: {\"x\"\xff:1}\r\xff\n\r\n: comment\ndata: one\ndata: two\n\ndata: [DONE]")
put("sse", b"retry: 10\nid: 7\ndata:no-space\n\ndata\n\n\xff")

# admission_event: the events runners and hooks send (the policy suites' steps among them).
events = [
    {"phase": "tool_call", "tool": "Bash", "args": {"command": "git push --force origin main"}, "tool_id": "t1"},
    {"phase": "tool_call", "tool": "Write", "args": {"file_path": ".git/config", "content": "[core]\n\tsshCommand = sh"}},
    {"phase": "tool_result", "tool": "Bash", "output": "jane.roe@example.com 078-05-1120", "is_error": False},
    {"phase": "egress", "host": "api.github.com", "port": 443, "scheme": "https", "method": "PUT", "path": "/repos/acme/app/pulls/1/merge", "body": {"merge_method": "squash"}},
    {"phase": "egress", "host": "api.github.com", "port": 443, "scheme": "https", "method": "DELETE", "path": "/repos/acme/app/git/refs/heads/main"},
    {"phase": "git_push", "host": "github.com", "port": 443, "repo": "acme/app", "updates": [{"ref": "refs/heads/main", "old": "a" * 40, "new": "b" * 40, "fast_forward": False}]},
    {"phase": "llm_request", "model": "claude-sonnet-4-5", "max_tokens": 1000, "body": {"messages": [{"role": "user", "content": "hi"}]}},
    {"phase": "llm_response", "model": "gpt-5", "text": "ok", "tool_calls": [{"id": "c1", "name": "shell", "args": {"command": "ls"}}], "usage": {"input_tokens": 3, "output_tokens": 4}},
    {"phase": "tool_call", "tool": "mcp__files__write_file", "args": {"path": "/etc/passwd"}, "git_remotes": {"origin": ["https://github.com/acme/app"]}},
]
for e in events:
    put("admission_event", j(e))

# hook_input: Claude Code's PreToolUse and Gemini CLI's BeforeTool inputs (a choice byte for which).
put("hook_input", b"\x00" + j({"session_id": "x", "hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": "git push -f"}, "tool_use_id": "toolu_1", "cwd": "/w"}).encode())
put("hook_input", b"\x01" + j({"session_id": "x", "hook_event_name": "BeforeTool", "tool_name": "run_shell_command", "tool_input": {"command": "ls", "dir_path": "sub"}, "cwd": "/w"}).encode())
put("hook_input", b"\x00" + j({"hook_event_name": "PreToolUse", "tool_name": "Write", "tool_input": {"file_path": "a.txt", "content": "x"}}).encode())


# receive_pack: a push's command list (choice 0), a repository path (1), a GraphQL body (2).
def pkt(s):
    return b"%04x" % (len(s) + 4) + s


A, B, Z = b"a" * 40, b"b" * 40, b"0" * 40
push = pkt(A + b" " + B + b" refs/heads/main\x00report-status side-band-64k atomic push-options agent=git/2.47\n") \
    + pkt(Z + b" " + B + b" refs/tags/v1\n") + b"0000" + pkt(b"ci.skip\n") + b"0000" + b"PACK\x00\x00\x00\x02\x00\x00\x00\x00"
put("receive_pack", b"\x00" + push)
put("receive_pack", b"\x00" + pkt(b"shallow " + A + b"\n") + pkt(B + b" " + Z + b" refs/heads/old\x00report-status\n") + b"0000")
put("receive_pack", b"\x01/git/github.com/acme/app.git/git-receive-pack?service=git-receive-pack")
put("receive_pack", b"\x02" + j({"query": "mutation M($id: ID!) { mergePullRequest(input: {pullRequestId: $id}) { clientMutationId } }", "variables": {"id": "PR_1"}, "operationName": "M"}).encode())
put("receive_pack", b"\x02" + j({"query": "query { ...F } fragment F on Query { viewer { login } }"}).encode())

# mcp_message: a harness's tools/call (choice 0) and a server's tool result (1).
put("mcp_message", b"\x00" + j({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "write_file", "arguments": {"path": "/w/a.txt", "content": "x"}}}).encode())
put("mcp_message", b"\x00" + j({"jsonrpc": "2.0", "id": "a", "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}}).encode())
put("mcp_message", b"\x01" + j({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "jane.roe@example.com"}], "isError": False}}).encode())

# harness_output: each harness's JSON lines (a choice byte for which; 5 is a command's transcript).
claude = [{"type": "system", "subtype": "init", "session_id": "s", "model": "claude-sonnet-4-5", "tools": ["Bash"]},
          {"type": "assistant", "message": {"id": "m1", "content": [{"type": "text", "text": "hi"}, {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}], "usage": {"input_tokens": 3, "output_tokens": 4}}},
          {"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt", "is_error": False}]}},
          {"type": "result", "subtype": "success", "result": "done", "num_turns": 2, "total_cost_usd": 0.01, "usage": {"input_tokens": 3, "output_tokens": 4}}]
codex = [{"type": "thread.started", "thread_id": "t"}, {"type": "turn.started"},
         {"type": "item.completed", "item": {"id": "i0", "type": "command_execution", "command": "bash -lc ls", "aggregated_output": "a.txt", "exit_code": 0, "status": "completed"}},
         {"type": "item.completed", "item": {"id": "i1", "type": "agent_message", "text": "done"}},
         {"type": "turn.completed", "usage": {"input_tokens": 3, "cached_input_tokens": 0, "output_tokens": 4}}]
gemini = [{"type": "init", "session_id": "s", "model": "gemini-2.5-pro"}, {"type": "message", "role": "assistant", "content": "hi", "delta": True},
          {"type": "tool_use", "tool_name": "run_shell_command", "tool_id": "t1", "parameters": {"command": "ls"}},
          {"type": "tool_result", "tool_id": "t1", "status": "success", "output": "a.txt"},
          {"type": "result", "status": "success", "stats": {"total_tokens": 7, "input_tokens": 3, "output_tokens": 4}}]
pi = [{"type": "agent_start"}, {"type": "message_end", "message": {"role": "assistant", "content": [{"type": "text", "text": "hi"}, {"type": "toolCall", "id": "c1", "name": "bash", "arguments": {"command": "ls"}}], "usage": {"input": 3, "output": 4}}},
      {"type": "tool_execution_end", "toolCallId": "c1", "toolName": "bash", "result": {"content": [{"type": "text", "text": "a.txt"}]}, "isError": False}, {"type": "agent_end"}]
opencode = [{"type": "step_start", "part": {"type": "step-start"}}, {"type": "text", "part": {"type": "text", "text": "hi"}},
            {"type": "tool_use", "part": {"type": "tool", "tool": "bash", "callID": "c1", "state": {"status": "completed", "input": {"command": "ls"}, "output": "a.txt"}}},
            {"type": "step_finish", "part": {"type": "step-finish", "tokens": {"input": 3, "output": 4}, "cost": 0.0}}]
for i, lines in enumerate([claude, codex, gemini, pi, opencode]):
    put("harness_output", bytes([i]) + "\n".join(j(x) for x in lines).encode())
put("harness_output", b"\x05" + "\n".join([j({"type": "assistant_text", "text": "hi"}), "plain text", j(claude[1])]).encode())

# egress_request: a CONNECT authority (0), a ClientHello (1), a request body (2), a gateway config (3).
for a in [b"api.github.com:443", b"[::1]:8443", b"127.0.0.1", b"xn--e1afmkfd.xn--p1ai:443", b"a..b:99999"]:
    put("egress_request", b"\x00" + a)
name = b"api.github.com"
sni_ext = b"\x00\x00" + (len(name) + 5).to_bytes(2, "big") + (len(name) + 3).to_bytes(2, "big") + b"\x00" + len(name).to_bytes(2, "big") + name
exts = sni_ext
body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + len(exts).to_bytes(2, "big") + exts
hs = b"\x01" + len(body).to_bytes(3, "big") + body
put("egress_request", b"\x01" + b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs)
put("egress_request", b"\x02\x00" + j({"merge_method": "squash", "sha": "abc"}).encode())
put("egress_request", b"\x02\x01" + b"title=x&force=true")
put("egress_request", b"\x02\x04" + b"\xef\xbb\xbf{\"a\":1,\"a\":2}")
for _, b in files("charts/paddock/files/*.yaml", "controller/cli/demo/*.yaml"):
    put("egress_request", b"\x03" + b)
put("egress_request", b"\x03listen: 127.0.0.1:8080\ndatabase: sqlite::memory:\nlimits:\n  askTimeoutSeconds: 5\n")

# journal: a record's contents (choice 0) and segments of records (1; records cut at 0xfe, segments at 0xff).
def record(seq, stmts):
    out = seq.to_bytes(8, "little") + len(stmts).to_bytes(4, "little")
    for sql, params in stmts:
        out += len(sql).to_bytes(4, "little") + sql + len(params).to_bytes(4, "little")
        for p in params:
            if p is None:
                out += b"\x00"
            elif isinstance(p, bytes):
                out += b"\x01" + len(p).to_bytes(4, "little") + p
            elif isinstance(p, int):
                out += b"\x02" + (p % 2**64).to_bytes(8, "little")
            else:
                out += b"\x03"
    return out


r1 = record(1, [(b"INSERT INTO audit (id, session, verdict) VALUES (?, ?, ?)", [b"a-1", b"s-1", b"deny"])])
r2 = record(2, [(b"UPDATE sessions SET cost = ? WHERE id = ?", [12, b"s-1"]), (b"DELETE FROM tokens WHERE id = ?", [None])])
put("journal", b"\x00\x00" + r1)
put("journal", b"\x01\x00" + r1 + b"\xfe" + r2)
put("journal", b"\x03\x05" + r1 + b"\xfe" + r2 + b"\xff" + record(3, []))
put("journal", b"\x05\x21" + r1 + b"\xff" + r2)
print("seeded", sum(len(os.listdir(os.path.join(OUT, t))) for t in os.listdir(OUT)), "inputs in", OUT)
