//! What a REST request to the GitHub API says beyond its path: the fields of its JSON body and the
//! parameters of its query string, which a lenient server takes as fields too (`?force=true`). Every reading
//! here is the one that makes the request do more: a field counts in any case of its name, in the body or
//! in the query, and a flag counts as set unless it is plainly false.

use serde_json::Value;

use crate::http_path;

/// Names that ask a server to take a request as another method (Rails' `_method`).
const METHOD_OVERRIDES: &[&str] = &["_method", "x-http-method-override", "x-http-method", "x-method-override"];

pub(crate) struct Fields<'a> {
    body: Option<&'a Value>,
    /// Query parameters, names lower-cased (see [`http_path::query_pairs`]).
    query: Vec<(String, String)>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(body: Option<&'a Value>, raw_path: &str) -> Self {
        Self { body, query: http_path::query_pairs(raw_path) }
    }

    /// Whether the gateway saw a body.
    pub(super) fn body_seen(&self) -> bool {
        self.body.is_some()
    }

    /// Whether the body is something other than a JSON object, whose fields cannot be read.
    pub(super) fn body_unreadable(&self) -> bool {
        self.body.is_some_and(|b| !b.is_object())
    }

    /// Every value of the body's fields named `key` in any case.
    fn in_body(&self, key: &str) -> Vec<&'a Value> {
        let object = self.body.and_then(Value::as_object);
        object.into_iter().flatten().filter(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v).collect()
    }

    fn in_query<'s>(&'s self, key: &str) -> impl Iterator<Item = &'s str> + 's {
        let key = key.to_ascii_lowercase();
        self.query.iter().filter(move |(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    /// Whether the body or the query sets `key`.
    pub(super) fn has(&self, key: &str) -> bool {
        !self.in_body(key).is_empty() || self.in_query(key).next().is_some()
    }

    /// A text field: the body's (its exact name first), else the query's; blank counts as absent.
    /// [`Self::conflict`] has refused a request that gives two different values.
    pub(super) fn text(&self, key: &str) -> Option<&str> {
        let exact = self.body.and_then(|b| b.get(key)).and_then(Value::as_str);
        let body = exact.or_else(|| self.in_body(key).into_iter().find_map(Value::as_str));
        body.or_else(|| self.in_query(key).next()).filter(|s| !s.trim().is_empty())
    }

    /// Whether a ref update forces: `Some(true)` when any `force` in the body or the query may be taken for
    /// true; `None` when none does and the body was not seen.
    pub(crate) fn force(&self) -> Option<bool> {
        if self.in_body("force").into_iter().any(may_be_true) || self.in_query("force").any(str_may_be_true) {
            return Some(true);
        }
        self.body_seen().then_some(false)
    }

    /// A field set more than once with different values (in the query and the body, or twice in the query):
    /// which one the server takes cannot be told. Flags ([`Self::force`]) and fields judged by their
    /// presence (`skip`) are read in every place already.
    pub(super) fn conflict(&self, skip: &[&str]) -> Option<&str> {
        self.query.iter().map(|(k, _)| k.as_str()).find(|k| {
            if k.is_empty() || *k == "force" || skip.contains(k) {
                return false;
            }
            let body = self.in_body(k).into_iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
            let mut values: Vec<String> = body.chain(self.in_query(k).map(str::to_owned)).collect();
            values.sort();
            values.dedup();
            values.len() > 1
        })
    }

    /// A name asking the server to take the request as another method, if the body or query carries one.
    pub(super) fn method_override(&self) -> Option<&'static str> {
        METHOD_OVERRIDES.iter().copied().find(|k| self.has(k))
    }
}

/// Whether a flag may be taken for true: anything but absent, `null`, `false`, `0`, `"false"` and `"0"`
/// (lenient servers take most strings for true).
pub(crate) fn may_be_true(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => str_may_be_true(s),
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn str_may_be_true(s: &str) -> bool {
    !matches!(s.trim().to_ascii_lowercase().as_str(), "false" | "0")
}
