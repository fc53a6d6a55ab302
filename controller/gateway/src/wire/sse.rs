//! Server-sent events: an incremental parser for upstream bytes and the encoder for the client.

use bytes::{Bytes, BytesMut};

/// One event. `data` is the joined `data:` lines.
#[derive(Clone, Debug, PartialEq)]
pub struct Sse {
    pub event: Option<String>,
    pub data: String,
}

impl Sse {
    pub fn new(event: Option<&str>, data: impl Into<String>) -> Sse {
        Sse { event: event.map(str::to_owned), data: data.into() }
    }

    pub fn json(event: Option<&str>, data: &serde_json::Value) -> Sse {
        Sse::new(event, data.to_string())
    }

    pub fn encode(&self) -> Bytes {
        let mut out = String::with_capacity(self.data.len() + 32);
        if let Some(e) = &self.event {
            out.push_str("event: ");
            out.push_str(e);
            out.push('\n');
        }
        for line in self.data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        Bytes::from(out)
    }
}

/// Splits a byte stream into events. Lines may end in `\n`, `\r\n` or `\r`; comments and unknown fields are
/// ignored, as the SSE specification says.
#[derive(Default)]
pub struct SseParser {
    buf: BytesMut,
    event: Option<String>,
    data: Option<String>,
}

/// An upstream that sends one event larger than this is broken or hostile.
pub const MAX_EVENT_BYTES: usize = 16 << 20;

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Sse>, String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n' || *b == b'\r') {
            // A lone `\r` at the end of the buffer may be the first half of `\r\n`.
            if self.buf[end] == b'\r' && end + 1 == self.buf.len() {
                break;
            }
            let skip = if self.buf[end] == b'\r' && self.buf.get(end + 1) == Some(&b'\n') { 2 } else { 1 };
            let line = self.buf.split_to(end);
            let _ = self.buf.split_to(skip);
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    out.push(Sse { event: self.event.take(), data });
                }
                self.event = None;
                continue;
            }
            let (field, value) = match line.find(':') {
                Some(0) => continue,
                Some(i) => (&line[..i], line[i + 1..].strip_prefix(' ').unwrap_or(&line[i + 1..])),
                None => (&line[..], ""),
            };
            match field {
                "event" => self.event = Some(value.to_owned()),
                "data" => match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
        if self.buf.len() + self.data.as_ref().map_or(0, String::len) > MAX_EVENT_BYTES {
            return Err(format!("upstream sent an event over {MAX_EVENT_BYTES} bytes"));
        }
        Ok(out)
    }

    /// The event still open when the stream ended without its blank line.
    pub fn finish(&mut self) -> Option<Sse> {
        if !self.buf.is_empty() {
            let _ = self.push(b"\n");
        }
        self.data.take().map(|data| Sse { event: self.event.take(), data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_across_chunk_boundaries_and_line_endings() {
        let mut p = SseParser::default();
        let mut got = p.push(b"event: a\r\ndata: {\"x\"").unwrap();
        got.extend(p.push(b":1}\r").unwrap());
        got.extend(p.push(b"\n\r\n: comment\ndata: one\ndata: two\n\ndata: [DONE]").unwrap());
        got.extend(p.finish());
        assert_eq!(got, vec![Sse::new(Some("a"), "{\"x\":1}"), Sse::new(None, "one\ntwo"), Sse::new(None, "[DONE]")]);
        assert_eq!(&Sse::new(None, "one\ntwo").encode()[..], b"data: one\ndata: two\n\n");
    }
}
