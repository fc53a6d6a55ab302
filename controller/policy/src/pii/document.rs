//! Text documents sent inline as base64, decoded so that their text is scanned like any other.
//!
//! A request can carry a file's text where no text scan would see it: an Anthropic `document` block
//! (`source: {type: base64, media_type: text/plain, data}`), an OpenAI `input_file` / `file` part
//! (`file_data: "data:text/plain;base64,…"`), a Gemini `inline_data` / `inlineData` part. Every such payload
//! that is not an image, audio or video is decoded (standard or URL-safe alphabet, padding optional,
//! line breaks ignored) and, if it is UTF-8, handed on as text. A payload that does not decode stays what it
//! was: a JSON string, scanned as it is. Decoded text over [`MAX_DOCUMENT_BYTES`] is not read; callers are told,
//! so that they can fail closed.

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use serde_json::Value;

/// The most decoded text read from one document (the gateway's default body limit: a default request cannot
/// reach it).
pub const MAX_DOCUMENT_BYTES: usize = 8 << 20;

/// What an inline document holds.
#[derive(Debug, PartialEq, Eq)]
pub enum DocumentText {
    /// Its decoded text.
    Text(String),
    /// More than [`MAX_DOCUMENT_BYTES`] once decoded: not read.
    TooLarge,
}

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

/// Where one inline payload sits, and how to put a rewritten one back.
enum Slot {
    /// `{type: base64, media_type, data}` and Gemini's `{mime_type | mimeType, data}`: `data` is bare base64.
    Data { media_type: String },
    /// `file_data`: a `data:` URL, or bare base64.
    FileData { prefix: String, media_type: String },
}

/// The payload slots of this object and the key holding each one's base64: every one there is, so that a key
/// a consumer might read is never left unscanned because another sits next to it.
fn slots(o: &serde_json::Map<String, Value>) -> Vec<(Slot, &'static str)> {
    let mut out = Vec::new();
    if let Some(Value::String(fd)) = o.get("file_data") {
        match fd.strip_prefix("data:").and_then(|r| r.split_once(',')) {
            Some((meta, _)) if meta.ends_with(";base64") => out.push((
                Slot::FileData {
                    prefix: format!("data:{meta},"),
                    media_type: meta.trim_end_matches(";base64").to_ascii_lowercase(),
                },
                "file_data",
            )),
            Some(_) => {} // a data URL that is not base64 is plain text: scanned already
            None => out.push((Slot::FileData { prefix: String::new(), media_type: String::new() }, "file_data")),
        }
    }
    // MCP's resource contents: `{uri, mimeType, blob}`, the blob bare base64 (a tool's embedded resource).
    if let Some(Value::String(_)) = o.get("blob") {
        let media = ["mimeType", "mime_type"].iter().find_map(|k| o.get(*k).and_then(Value::as_str)).unwrap_or("");
        out.push((Slot::Data { media_type: media.to_ascii_lowercase() }, "blob"));
    }
    if let Some(Value::String(_)) = o.get("data")
        && let Some(media) =
            ["media_type", "mime_type", "mimeType"].iter().find_map(|k| o.get(*k).and_then(Value::as_str))
        && (o.get("type").and_then(Value::as_str) == Some("base64") || !o.contains_key("media_type"))
    {
        out.push((Slot::Data { media_type: media.to_ascii_lowercase() }, "data"));
    }
    out
}

fn media_type(s: &Slot) -> &str {
    match s {
        Slot::Data { media_type } | Slot::FileData { media_type, .. } => media_type,
    }
}

/// Images, audio and video are not text; anything else (text/*, JSON, an unknown or missing type, a type
/// that claims to be binary) is decoded and read if it turns out to be UTF-8.
fn may_be_text(media_type: &str) -> bool {
    !["image/", "audio/", "video/"].iter().any(|p| media_type.starts_with(p))
}

/// The decoded text of `b64` (after its `data:` prefix), or `None` if it is not base64 of UTF-8 text.
fn decode(b64: &str) -> Option<DocumentText> {
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.len() / 4 * 3 > MAX_DOCUMENT_BYTES {
        return Some(DocumentText::TooLarge);
    }
    let bytes = STANDARD.decode(&compact).or_else(|_| URL_SAFE.decode(&compact)).ok()?;
    String::from_utf8(bytes).ok().map(DocumentText::Text)
}

/// Calls `f` with what every inline, possibly-text document in `v` holds.
pub fn for_each_document(v: &Value, f: &mut dyn FnMut(DocumentText)) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| for_each_document(x, f)),
        Value::Object(o) => {
            for (s, key) in slots(o) {
                if let (true, Some(Value::String(data))) = (may_be_text(media_type(&s)), o.get(key)) {
                    let b64 = match &s {
                        Slot::FileData { prefix, .. } => &data[prefix.len()..],
                        Slot::Data { .. } => data,
                    };
                    if let Some(text) = decode(b64) {
                        f(text);
                    }
                }
            }
            o.values().for_each(|x| for_each_document(x, f));
        }
        _ => {}
    }
}

/// Rewrites every inline text document in `v` whose text `f` changes, encoded again as it came.
pub fn map_documents(v: &mut Value, f: &mut dyn FnMut(&str) -> Option<String>) {
    match v {
        Value::Array(a) => a.iter_mut().for_each(|x| map_documents(x, f)),
        Value::Object(o) => {
            for (s, key) in slots(o) {
                if let (true, Some(Value::String(data))) = (may_be_text(media_type(&s)), o.get_mut(key)) {
                    let prefix = match &s {
                        Slot::FileData { prefix, .. } => prefix.as_str(),
                        Slot::Data { .. } => "",
                    };
                    if let Some(DocumentText::Text(text)) = decode(&data[prefix.len()..])
                        && let Some(new) = f(&text)
                    {
                        *data = format!("{prefix}{}", general_purpose::STANDARD.encode(new));
                    }
                }
            }
            o.values_mut().for_each(|x| map_documents(x, f));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn texts(v: &Value) -> Vec<DocumentText> {
        let mut out = Vec::new();
        for_each_document(v, &mut |t| out.push(t));
        out
    }

    fn b64(s: &str) -> String {
        general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn every_wire_format_is_decoded() {
        let t = "mail alice@example.com";
        let v = json!([
            {"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": b64(t)}},
            {"type": "input_file", "filename": "a.txt", "file_data": format!("data:text/plain;base64,{}", b64(t))},
            {"type": "file", "file": {"filename": "a.txt", "file_data": b64(t)}},
            {"inline_data": {"mime_type": "text/csv", "data": b64(t)}},
            {"inlineData": {"mimeType": "application/octet-stream", "data": b64(t).trim_end_matches('=')}},
            // An MCP tool's embedded resource, with and without its type.
            {"type": "resource", "resource": {"uri": "file:///a.txt", "mimeType": "text/plain", "blob": b64(t)}},
            {"type": "resource", "resource": {"uri": "file:///a", "blob": b64(t)}},
            // A blob beside a data payload: both are read, whichever a consumer takes.
            {"inlineData": {"mimeType": "text/plain", "data": b64(t), "blob": b64(t)}},
        ]);
        assert_eq!(texts(&v), (0..9).map(|_| DocumentText::Text(t.into())).collect::<Vec<_>>());
    }

    #[test]
    fn images_binary_and_undecodable_are_left_alone() {
        let v = json!([
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64("alice@example.com")}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjcK4uPP0w=="}},
            {"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": "not base64 at all!"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain"}},
        ]);
        assert_eq!(texts(&v), vec![]);
    }

    #[test]
    fn rewriting_re_encodes_in_place() {
        let mut v = json!({"file_data": format!("data:text/plain;base64,{}", b64("hello alice"))});
        map_documents(&mut v, &mut |s| Some(s.replace("alice", "[x]")));
        assert_eq!(v["file_data"], format!("data:text/plain;base64,{}", b64("hello [x]")));
    }
}
