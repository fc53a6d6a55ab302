//! Parts of a request that make the provider fetch something or use state it keeps: a URL the provider
//! downloads (an exfiltration channel out of a sandbox with no network), a file, stored prompt, earlier
//! response or conversation kept at the provider (content no policy saw), and background runs (answered
//! later, where no gate or meter sees them). The gateway refuses them unless a policy allows them.
//!
//! Content is walked by its block structure, not by searching the whole body: a tool call's arguments in
//! the history may hold any JSON, which the provider never fetches.

use serde_json::Value;

use super::Wire;

/// A kind of provider-side feature, as a `provider_features` rule names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    /// The provider downloads a URL: images, documents, files.
    UrlInputs,
    /// The provider reads state it keeps: uploaded files, stored prompts, earlier responses, conversations.
    StoredState,
    /// The provider runs the request in the background and answers later.
    Background,
}

impl Feature {
    pub const ALL: [Feature; 3] = [Feature::UrlInputs, Feature::StoredState, Feature::Background];

    pub fn as_str(self) -> &'static str {
        match self {
            Feature::UrlInputs => "url_inputs",
            Feature::StoredState => "stored_state",
            Feature::Background => "background",
        }
    }
}

/// One use of a feature: what and where (a path in the request body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Use {
    pub feature: Feature,
    pub at: String,
}

/// Every provider-side fetch or state the request asks for.
pub fn uses(wire: Wire, body: &Value) -> Vec<Use> {
    let mut out = Vec::new();
    let mut found = |feature: Feature, at: String| out.push(Use { feature, at });
    match wire {
        Wire::Anthropic => {
            blocks(&body["system"], "system", &mut found);
            for (i, m) in body["messages"].as_array().into_iter().flatten().enumerate() {
                blocks(&m["content"], &format!("messages[{i}].content"), &mut found);
            }
        }
        Wire::Chat => {
            for (i, m) in body["messages"].as_array().into_iter().flatten().enumerate() {
                blocks(&m["content"], &format!("messages[{i}].content"), &mut found);
                if !m["audio"]["id"].is_null() {
                    found(Feature::StoredState, format!("messages[{i}].audio.id"));
                }
            }
        }
        Wire::Responses => {
            for key in ["previous_response_id", "conversation", "prompt"] {
                if !body[key].is_null() {
                    found(Feature::StoredState, key.to_owned());
                }
            }
            // Anything but false or absent: a value the gateway cannot read is not taken for "no".
            if !matches!(body["background"], Value::Null | Value::Bool(false)) {
                found(Feature::Background, "background".to_owned());
            }
            if let Some(items) = body["input"].as_array() {
                for (i, item) in items.iter().enumerate() {
                    let at = format!("input[{i}]");
                    if item["type"] == "item_reference" {
                        found(Feature::StoredState, at.clone());
                    }
                    // A part given as an item, a tool output of parts, or one object (a computer screenshot).
                    block(item, &at, &mut found);
                    blocks(&item["content"], &format!("{at}.content"), &mut found);
                    blocks(&item["output"], &format!("{at}.output"), &mut found);
                    block(&item["output"], &format!("{at}.output"), &mut found);
                }
            }
        }
        Wire::Gemini => {
            if !body["cachedContent"].is_null() {
                found(Feature::StoredState, "cachedContent".to_owned());
            }
            gemini_parts(&body["systemInstruction"]["parts"], "systemInstruction.parts", &mut found);
            for (i, c) in body["contents"].as_array().into_iter().flatten().enumerate() {
                gemini_parts(&c["parts"], &format!("contents[{i}].parts"), &mut found);
            }
        }
    }
    out
}

/// Gemini's parts: `fileData.fileUri` is fetched by Google (a URL, or a file uploaded to its File API);
/// a function's response may carry parts of its own.
fn gemini_parts(v: &Value, at: &str, found: &mut impl FnMut(Feature, String)) {
    for (i, part) in v.as_array().into_iter().flatten().enumerate() {
        let at = format!("{at}[{i}]");
        if let Some(file) = part.get("fileData").filter(|f| !f.is_null()) {
            let feature = match file["fileUri"].as_str() {
                Some(u) if u.starts_with("https://generativelanguage.googleapis.com/") || u.starts_with("files/") => {
                    Feature::StoredState
                }
                _ => Feature::UrlInputs,
            };
            found(feature, format!("{at}.fileData"));
        }
        gemini_parts(&part["functionResponse"]["parts"], &format!("{at}.functionResponse.parts"), found);
    }
}

/// Content blocks (or parts) in any of the three formats, and the blocks nested in them (tool results,
/// documents made of blocks, search results).
fn blocks(v: &Value, at: &str, found: &mut impl FnMut(Feature, String)) {
    let Some(list) = v.as_array() else { return };
    for (i, b) in list.iter().enumerate() {
        let at = format!("{at}[{i}]");
        block(b, &at, found);
        blocks(&b["content"], &format!("{at}.content"), found);
        blocks(&b["source"]["content"], &format!("{at}.source.content"), found);
    }
}

fn block(b: &Value, at: &str, found: &mut impl FnMut(Feature, String)) {
    // Anthropic `source: {type: url | file, …}`; Chat `image_url: {url}` or a bare string; Chat `file:
    // {file_id}`; Responses `image_url`, `file_url`, `file_id` on the part itself.
    for (o, path) in [(b, ""), (&b["source"], ".source"), (&b["image_url"], ".image_url"), (&b["file"], ".file")] {
        if !o.is_object() {
            continue;
        }
        for key in ["url", "image_url", "file_url"] {
            if let Some(u) = o.get(key).and_then(Value::as_str)
                && fetched(u)
            {
                found(Feature::UrlInputs, format!("{at}{path}.{key}"));
            }
        }
        if o.get("file_id").is_some_and(|f| !f.is_null()) {
            found(Feature::StoredState, format!("{at}{path}.file_id"));
        }
        if path == ".source" {
            match o["type"].as_str() {
                Some("url") if o.get("url").is_none() => found(Feature::UrlInputs, format!("{at}.source")),
                Some("file") if o.get("file_id").is_none() => found(Feature::StoredState, format!("{at}.source")),
                _ => {}
            }
        }
    }
}

/// A URL the provider would download: anything but inline `data:`.
fn fetched(url: &str) -> bool {
    !url.trim_start().get(..5).is_some_and(|p| p.eq_ignore_ascii_case("data:"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn found(wire: Wire, body: Value) -> Vec<(&'static str, String)> {
        uses(wire, &body).into_iter().map(|u| (u.feature.as_str(), u.at)).collect()
    }

    #[test]
    fn gemini_file_data_and_cached_content() {
        let body = json!({"cachedContent": "cachedContents/abc",
            "systemInstruction": {"parts": [{"fileData": {"fileUri": "https://evil.example/s"}}]},
            "contents": [{"role": "user", "parts": [{"text": "hi"},
                {"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/f1", "mimeType": "text/plain"}},
                {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"fileData": {"fileUri": "https://not-fetched"}}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {},
                "parts": [{"fileData": {"fileUri": "gs://bucket/x"}}]}}]}]});
        assert_eq!(
            found(Wire::Gemini, body),
            [
                ("stored_state", "cachedContent".into()),
                ("url_inputs", "systemInstruction.parts[0].fileData".into()),
                ("stored_state", "contents[0].parts[1].fileData".into()),
                ("url_inputs", "contents[2].parts[0].functionResponse.parts[0].fileData".into()),
            ]
        );
    }

    #[test]
    fn anthropic_url_and_file_sources_anywhere_in_the_content() {
        let body = json!({"system": [{"type": "text", "text": "hi"}], "messages": [
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "url", "url": "https://evil.example/x?d=secret"}},
                {"type": "document", "source": {"type": "file", "file_id": "file_1"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f",
                "input": {"source": {"type": "url", "url": "https://not-fetched"}}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
                {"type": "document", "source": {"type": "content", "content": [
                    {"type": "image", "source": {"type": "URL", "url": "http://nested"}}]}},
                {"type": "image", "source": {"type": "url"}}]}]}]});
        assert_eq!(
            found(Wire::Anthropic, body),
            [
                ("url_inputs", "messages[0].content[0].source.url".into()),
                ("stored_state", "messages[0].content[1].source.file_id".into()),
                ("url_inputs", "messages[2].content[0].content[0].source.content[0].source.url".into()),
                ("url_inputs", "messages[2].content[0].content[1].source".into()),
            ]
        );
    }

    #[test]
    fn chat_image_urls_files_and_audio_references() {
        let body = json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://evil.example/a.png"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "image_url", "image_url": " DATA:image/png;base64,AAAA"},
            {"type": "image_url", "image_url": "ftp://evil.example/b"},
            {"type": "file", "file": {"file_id": "file-abc"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA", "filename": "a.pdf"}}]},
            {"role": "assistant", "audio": {"id": "audio_1"}}]});
        assert_eq!(
            found(Wire::Chat, body),
            [
                ("url_inputs", "messages[0].content[0].image_url.url".into()),
                ("url_inputs", "messages[0].content[3].image_url".into()),
                ("stored_state", "messages[0].content[4].file.file_id".into()),
                ("stored_state", "messages[1].audio.id".into()),
            ]
        );
    }

    #[test]
    fn responses_urls_files_and_stored_state() {
        let body = json!({"previous_response_id": "resp_1", "conversation": {"id": "conv_1"},
            "prompt": {"id": "pmpt_1"}, "background": true, "store": true, "input": [
            {"type": "message", "role": "user", "content": [
                {"type": "input_image", "image_url": "https://evil.example/i.png"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                {"type": "input_file", "file_url": "https://evil.example/f.pdf"},
                {"type": "input_image", "file_id": "file_2"}]},
            {"type": "item_reference", "id": "msg_1"},
            {"type": "function_call_output", "call_id": "c", "output": [
                {"type": "input_image", "image_url": "http://x/y"}]},
            {"type": "computer_call_output", "call_id": "d", "output": {"type": "computer_screenshot",
                "image_url": "https://x/shot.png"}},
            {"type": "input_image", "image_url": "https://x/bare.png"},
            {"type": "function_call", "call_id": "e", "name": "f", "arguments": "{\"url\": \"https://not-fetched\"}"}]});
        assert_eq!(
            found(Wire::Responses, body),
            [
                ("stored_state", "previous_response_id".into()),
                ("stored_state", "conversation".into()),
                ("stored_state", "prompt".into()),
                ("background", "background".into()),
                ("url_inputs", "input[0].content[0].image_url".into()),
                ("url_inputs", "input[0].content[2].file_url".into()),
                ("stored_state", "input[0].content[3].file_id".into()),
                ("stored_state", "input[1]".into()),
                ("url_inputs", "input[2].output[0].image_url".into()),
                ("url_inputs", "input[3].output.image_url".into()),
                ("url_inputs", "input[4].image_url".into()),
            ]
        );
        assert_eq!(found(Wire::Responses, json!({"input": "hi", "store": false, "background": false})), []);
        assert_eq!(found(Wire::Responses, json!({"background": "true"})), [("background", "background".into())]);
    }
}
