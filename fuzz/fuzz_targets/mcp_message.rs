//! MCP messages through the gateway's MCP proxy: a harness's JSON-RPC message, read by rmcp as the proxy
//! reads it, its `tools/call` decided under the template's policies (by the name every rule uses); and an
//! MCP server's answer, its tool result decided as the tool's output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_api::Phase;
use paddock_policy::Event;
use paddock_policy::tools::{mcp_canonical, mcp_tool_name, split_mcp_tool_name};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage, ServerJsonRpcMessage, ServerResult};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let mut c = paddock_fuzz::Choices(data);
    if c.byte() & 1 == 0 {
        let Ok(message) = serde_json::from_slice::<ClientJsonRpcMessage>(c.rest()) else { return };
        let JsonRpcMessage::Request(request) = message else { return };
        let ClientRequest::CallToolRequest(call) = request.request else { return };
        let name = mcp_tool_name("files", &call.params.name);
        assert_eq!(split_mcp_tool_name(&name).map(|(s, _)| s), Some("files"));
        let _ = mcp_canonical(&call.params.name);
        paddock_fuzz::decide(&Event {
            phase: Phase::ToolCall,
            tool: Some(name),
            args: call.params.arguments.map(Value::Object).unwrap_or_default(),
            ..Event::default()
        });
    } else {
        let Ok(message) = serde_json::from_slice::<ServerJsonRpcMessage>(c.rest()) else { return };
        let JsonRpcMessage::Response(response) = message else { return };
        let ServerResult::CallToolResult(result) = response.result else { return };
        let Ok(output) = serde_json::to_value(&result) else { return };
        paddock_fuzz::decide(&Event {
            phase: Phase::ToolResult,
            tool: Some(mcp_tool_name("files", "read_file")),
            output: Some(output),
            is_error: result.is_error.unwrap_or(false),
            ..Event::default()
        });
    }
});
