//! What the gateway reads of a request it decides, the same for plain HTTP (`forward`) and brokered HTTPS
//! (`broker::tunnel`): the body, bounded, and its JSON whatever its `Content-Type` says (a host may read JSON
//! whatever the label); and the ways a request can name another method than its own. What cannot be read
//! exactly is refused: what cannot be seen is not allowed.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::HeaderMap;
use hyper::StatusCode;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE};

/// How long a body the decision must see may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request's body cannot be judged.
#[derive(Debug, thiserror::Error)]
pub enum Uninspectable {
    #[error("the request body is larger than egress.maxInspectBytes ({0} bytes), the most the gateway reads to decide")]
    TooLarge(usize),
    #[error("the gateway does not decode compressed request bodies (Content-Encoding); send it uncompressed")]
    Compressed,
    #[error("the request body did not arrive within {} s", BODY_TIMEOUT.as_secs())]
    Slow,
    #[error("cannot read the request body: {0}")]
    Unreadable(String),
    #[error(
        "the request body is not JSON the gateway can read ({0}); send valid JSON, or label a binary upload \
         (e.g. application/octet-stream)"
    )]
    NotJson(String),
    #[error("the request is a form ({0}), which the host reads in a way the decision does not see; send JSON")]
    Form(String),
    #[error("the request has {0} Content-Type headers; the host and the gateway could read different ones")]
    TwoContentTypes(usize),
}

impl Uninspectable {
    /// The answer's status.
    pub fn status(&self) -> StatusCode {
        match self {
            Uninspectable::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Uninspectable::Compressed | Uninspectable::Form(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Uninspectable::TwoContentTypes(_) => StatusCode::BAD_REQUEST,
            Uninspectable::Slow => StatusCode::REQUEST_TIMEOUT,
            Uninspectable::Unreadable(_) | Uninspectable::NotJson(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads a request body for the decision (at most `max` bytes, within [`BODY_TIMEOUT`]) and its JSON: the
/// bytes to send on, and the JSON for the event's `body` (`None` for an empty body or a binary upload that
/// does not parse).
pub async fn inspect<B>(
    headers: &HeaderMap,
    body: B,
    max: usize,
) -> Result<(Bytes, Option<serde_json::Value>), Uninspectable>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = read(headers, body, max).await?;
    let json = json_of(headers, &bytes)?;
    Ok((bytes, json))
}

async fn read<B>(headers: &HeaderMap, body: B, max: usize) -> Result<Bytes, Uninspectable>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, max).collect()).await {
        Err(_) => return Err(Uninspectable::Slow),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(Uninspectable::TooLarge(max)),
        Ok(Err(e)) => return Err(Uninspectable::Unreadable(e.to_string())),
        Ok(Ok(c)) => c.to_bytes(),
    };
    // The decision would see compressed bytes, not the JSON the host decodes.
    let encoded = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .any(|v| !v.to_str().is_ok_and(|v| v.trim().eq_ignore_ascii_case("identity")));
    if encoded && !bytes.is_empty() {
        return Err(Uninspectable::Compressed);
    }
    Ok(bytes)
}

/// The JSON of a body, for the decision: any body that parses, whatever its label (a leading UTF-8
/// byte-order mark skipped); `None` for an empty body or a binary upload that does not parse; an error for
/// any other body, which the host might read in a way the decision cannot: not JSON, a form (a JSON string
/// may hold `&force=true` for a form parser), JSON with a key twice in one object (hosts differ on which one
/// counts), or a body under two `Content-Type` headers.
pub fn json_of(headers: &HeaderMap, bytes: &[u8]) -> Result<Option<serde_json::Value>, Uninspectable> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let content_types = headers.get_all(CONTENT_TYPE).iter().count();
    if content_types > 1 {
        return Err(Uninspectable::TwoContentTypes(content_types));
    }
    let media = media_type(headers);
    if media == "application/x-www-form-urlencoded" || media == "multipart/form-data" {
        return Err(Uninspectable::Form(media));
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(bytes);
    let parsed = serde_json::from_slice::<UniqueKeys>(text).and_then(|_| serde_json::from_slice(text));
    match parsed {
        Ok(v) => Ok(Some(v)),
        Err(_) if is_binary(&media) => Ok(None),
        Err(e) => Err(Uninspectable::NotJson(e.to_string())),
    }
}

/// The `Content-Type`'s media type, lower case, without parameters; empty when there is none.
fn media_type(headers: &HeaderMap) -> String {
    let ct = headers.get(CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default();
    ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Any JSON document in which no object holds a key twice (escapes decoded: `"a"` and `"\u0061"` are one key).
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("the key `{key}` appears twice in one object")));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }
}

/// Media types whose bodies are uploads, not API arguments (a release asset, a package).
fn is_binary(ct: &str) -> bool {
    ct == "application/octet-stream"
        || ct == "application/zip"
        || ct == "application/gzip"
        || ["image/", "audio/", "video/"].iter().any(|p| ct.starts_with(p))
}

/// Headers by which frameworks let a request name another method than its own (`POST` treated as `DELETE`).
const METHOD_OVERRIDE_HEADERS: &[&str] = &["x-http-method-override", "x-http-method", "x-method-override"];

/// Why a request names a method other than its own, if it does: a method-override header (in any case, and
/// with `_` for `-`, which CGI-style servers read as the same header), or a `_method` query parameter (any
/// case, percent-encoded or not). Rules judge the request's method; a host that honoured an override would
/// do something else.
pub fn method_override(headers: &HeaderMap, path_and_query: &str) -> Option<String> {
    for name in headers.keys() {
        let spelled = name.as_str().replace('_', "-");
        if METHOD_OVERRIDE_HEADERS.contains(&spelled.as_str()) {
            return Some(format!("the request carries `{name}`, which would change its method at the host"));
        }
    }
    // Read as leniently as any server might, as the github rule reads a query (one reading of a query).
    if paddock_policy::http_path::query_pairs(path_and_query).iter().any(|(name, _)| name == "_method") {
        return Some(
            "the request carries a `_method` query parameter, which would change its method at the host".into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn bodies_that_claim_or_look_like_json_must_parse() {
        let mut h = HeaderMap::new();
        assert_eq!(json_of(&h, b"{\"force\":true}").unwrap().unwrap()["force"], true);
        // A BOM does not hide the JSON from the decision.
        assert!(json_of(&h, b"\xEF\xBB\xBF{\"a\":1}").unwrap().is_some());
        assert!(json_of(&h, b"{\"force\":tru").is_err());
        assert!(json_of(&h, b"").unwrap().is_none());
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(json_of(&h, b"{\"force\":true}").unwrap().is_some());
        assert!(matches!(json_of(&h, b"force=true"), Err(Uninspectable::NotJson(_))));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        assert!(json_of(&h, b"\x00\x01").unwrap().is_none());
        // Labelled binary, but JSON all the same: the decision sees it.
        assert!(json_of(&h, b"{\"force\":true}").unwrap().is_some());
        // A key twice, in any spelling, at any depth: hosts differ on which one counts.
        h.remove(CONTENT_TYPE);
        for twice in [&br#"{"force":false,"force":true}"#[..], br#"{"a":[{"f":1,"\u0066":2}]}"#] {
            assert!(matches!(json_of(&h, twice), Err(Uninspectable::NotJson(why)) if why.contains("twice")));
        }
        assert!(json_of(&h, br#"{"a":{"f":1},"b":{"f":2}}"#).unwrap().is_some());
        // A form: a JSON string may hold what a form parser reads as parameters.
        for form in ["application/x-www-form-urlencoded", "Multipart/Form-Data; boundary=x"] {
            h.insert(CONTENT_TYPE, HeaderValue::from_str(form).unwrap());
            let body = br#"{"x":"&_method=DELETE&force=true"}"#;
            assert!(matches!(json_of(&h, body), Err(Uninspectable::Form(_))), "{form}");
        }
        // Two labels: the host may read the other one.
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        h.append(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        assert!(matches!(json_of(&h, b"a=1"), Err(Uninspectable::TwoContentTypes(2))));
    }

    #[tokio::test]
    async fn large_or_compressed_bodies_are_uninspectable() {
        let body = |b: &'static [u8]| http_body_util::Full::new(Bytes::from_static(b));
        let h = HeaderMap::new();
        assert!(matches!(inspect(&h, body(b"{\"a\":12345}"), 4).await, Err(Uninspectable::TooLarge(4))));
        let (bytes, json) = inspect(&h, body(b"{\"a\":1}"), 64).await.unwrap();
        assert_eq!((&bytes[..], json.unwrap()["a"].as_i64()), (&b"{\"a\":1}"[..], Some(1)));
        let mut gz = HeaderMap::new();
        gz.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(matches!(inspect(&gz, body(b"\x1f\x8b"), 64).await, Err(Uninspectable::Compressed)));
        gz.insert(CONTENT_ENCODING, HeaderValue::from_static(" Identity"));
        assert!(inspect(&gz, body(b"{}"), 64).await.is_ok());
    }

    #[test]
    fn method_overrides_in_any_spelling() {
        let with = |name: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(hyper::header::HeaderName::from_static(name), HeaderValue::from_static("DELETE"));
            h
        };
        for name in ["x-http-method-override", "x-http-method", "x-method-override", "x_http_method_override"] {
            assert!(method_override(&with(name), "/x").is_some(), "{name}");
        }
        assert!(method_override(&with("x-http-methods"), "/x").is_none());
        let none = HeaderMap::new();
        for q in [
            "/x?_method=DELETE",
            "/x?a=1&_METHOD=put",
            "/x?%5Fmethod=DELETE",
            "/x?a;_method",
            "/x?+_method=x",
            "/x?%255Fmethod=x",
            "/x?_method[]=x",
        ] {
            assert!(method_override(&none, q).is_some(), "{q}");
        }
        for q in ["/x", "/x?method=DELETE", "/x?http_method=x", "/x?a=_method", "/_method"] {
            assert!(method_override(&none, q).is_none(), "{q}");
        }
    }
}
