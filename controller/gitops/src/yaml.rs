//! A YAML loader that keeps the position of every node, so errors can name `file:line:column`.
//!
//! Built on saphyr-parser's event stream rather than a serde deserializer because hostile input must fail
//! fast with a position and bounded memory: nesting depth and the node count after alias expansion are
//! capped while the events stream in, duplicate keys are errors (the API server rejects them too), and
//! scalars resolve with the YAML 1.2 core schema.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

/// A 1-based position in a file. Line 0 means "the whole file".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        Pos { line: span.start.line() as u32, column: span.start.col() as u32 + 1 }
    }
}

/// A loaded YAML value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A value and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// A mapping entry; keys are always strings, as in a Kubernetes object.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// One `---`-separated document.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub root: Node,
}

/// Caps that keep hostile input cheap.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Deepest nesting of sequences and mappings.
    pub max_depth: usize,
    /// Most nodes in one file, counting each alias expansion in full.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_depth: 64, max_nodes: 250_000 }
    }
}

/// A file that is not acceptable YAML, with where the problem is.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

fn err<T>(pos: Pos, message: impl Into<String>) -> Result<T, YamlError> {
    Err(YamlError { pos, message: message.into() })
}

/// Decodes a file as UTF-8, naming the position of the first bad byte.
pub fn decode(bytes: &[u8]) -> Result<&str, YamlError> {
    std::str::from_utf8(bytes).or_else(|e| {
        let good = &bytes[..e.valid_up_to()];
        let good = std::str::from_utf8(good).expect("prefix is valid");
        let line = good.matches('\n').count() as u32 + 1;
        let column = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
        err(
            Pos { line, column },
            format!("file is not valid UTF-8 (byte 0x{:02x}); manifests must be UTF-8 text", bytes[e.valid_up_to()]),
        )
    })
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    /// `seen` indexes the keys so that duplicate checks stay linear on a mapping with many keys.
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<Entry>,
        merges: Vec<Node>,
        key: Option<(String, Pos)>,
        seen: HashMap<String, u32>,
    },
}

struct Builder {
    limits: Limits,
    stack: Vec<Frame>,
    /// Anchored nodes with their size and height, for alias expansion within the limits.
    anchors: HashMap<usize, (Node, usize, usize)>,
    nodes: usize,
    docs: Vec<Document>,
    root: Option<Node>,
}

/// Parses every document of a file. Empty documents (only comments, or `---` alone) are skipped.
pub fn parse(src: &str, limits: Limits) -> Result<Vec<Document>, YamlError> {
    let mut b = Builder { limits, stack: Vec::new(), anchors: HashMap::new(), nodes: 0, docs: Vec::new(), root: None };
    for item in Parser::new_from_str(src) {
        let (event, span) = item.map_err(|e| YamlError {
            pos: Pos { line: e.marker().line() as u32, column: e.marker().col() as u32 + 1 },
            message: format!("YAML syntax error: {}", e.info()),
        })?;
        b.event(event, span)?;
    }
    Ok(b.docs)
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), YamlError> {
        let pos = Pos::from_span(&span);
        match event {
            Event::DocumentStart(_) => {
                self.anchors.clear();
                self.root = None;
            }
            Event::DocumentEnd => {
                if let Some(root) = self.root.take()
                    && root.value != Value::Null
                {
                    self.docs.push(Document { root });
                }
            }
            Event::SequenceStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "!!seq", pos)?;
                self.open(Frame::Seq { pos, anchor, items: Vec::new() }, pos)?;
            }
            Event::MappingStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "!!map", pos)?;
                self.open(
                    Frame::Map {
                        pos,
                        anchor,
                        entries: Vec::new(),
                        merges: Vec::new(),
                        key: None,
                        seen: HashMap::new(),
                    },
                    pos,
                )?;
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq { pos, anchor, items }) => {
                    self.finish(Node { pos, value: Value::Seq(items) }, anchor)?
                }
                _ => return err(pos, "unbalanced sequence end"),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map { pos, anchor, mut entries, merges, mut seen, .. }) => {
                    apply_merges(&mut entries, &mut seen, merges)?;
                    self.finish(Node { pos, value: Value::Map(entries) }, anchor)?
                }
                _ => return err(pos, "unbalanced mapping end"),
            },
            Event::Scalar(text, style, anchor, tag) => {
                if self.expects_key() {
                    // Keys stay as written: Kubernetes objects have string keys only. Only a plain `<<` is a
                    // merge key; a quoted one is an ordinary key.
                    self.count(1, pos)?;
                    let key = if text == "<<" && style != ScalarStyle::Plain {
                        QUOTED_MERGE.to_owned()
                    } else {
                        text.into_owned()
                    };
                    if anchor > 0 {
                        let n = Node { pos, value: Value::Str(key.clone()) };
                        self.anchors.insert(anchor, (n, 1, 0));
                    }
                    self.set_key(key, pos);
                    return Ok(());
                }
                let value = resolve_scalar(&text, style, tag.as_deref(), pos)?;
                self.count(1, pos)?;
                self.finish(Node { pos, value }, anchor)?;
            }
            Event::Alias(id) => {
                let Some((mut node, size, height)) = self.anchors.get(&id).cloned() else {
                    return err(pos, "alias refers to an unknown anchor");
                };
                self.count(size, pos)?;
                if self.stack.len() + height > self.limits.max_depth {
                    return err(
                        pos,
                        format!("nesting is deeper than {} levels once aliases are expanded", self.limits.max_depth),
                    );
                }
                // The copy is reported where the alias stands; its inside keeps the anchor's positions.
                node.pos = pos;
                if self.expects_key() {
                    return match node.value {
                        Value::Str(s) => {
                            self.set_key(s, pos);
                            Ok(())
                        }
                        _ => err(pos, "a mapping key must be a plain string"),
                    };
                }
                self.attach(node)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
        Ok(())
    }

    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn set_key(&mut self, key: String, pos: Pos) {
        if let Some(Frame::Map { key: slot, .. }) = self.stack.last_mut() {
            *slot = Some((key, pos));
        }
    }

    fn count(&mut self, n: usize, pos: Pos) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > self.limits.max_nodes {
            return err(
                pos,
                format!(
                    "file expands to more than {} YAML nodes (an alias bomb?); split it or remove aliases",
                    self.limits.max_nodes
                ),
            );
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, pos: Pos) -> Result<(), YamlError> {
        if self.expects_key() {
            return err(pos, "a mapping key must be a plain string, not a sequence or mapping");
        }
        if self.stack.len() >= self.limits.max_depth {
            return err(pos, format!("nesting is deeper than {} levels", self.limits.max_depth));
        }
        self.count(1, pos)?;
        self.stack.push(frame);
        Ok(())
    }

    /// Records an anchored node and attaches it to its parent.
    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        if anchor > 0 {
            // The stored copy costs memory like any other node: charge it to the budget.
            let n = size(&node);
            self.count(n, node.pos)?;
            self.anchors.insert(anchor, (node.clone(), n, height(&node)));
        }
        self.attach(node)
    }

    fn attach(&mut self, node: Node) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, merges, key, seen, .. }) => {
                let (k, key_pos) = key.take().expect("a value follows its key");
                if k == "<<" {
                    merges.push(node);
                    return Ok(());
                }
                let k = if k == QUOTED_MERGE { "<<".to_owned() } else { k };
                if let Some(first_line) = seen.get(&k) {
                    return err(key_pos, format!("duplicate key `{k}` (first at line {first_line})"));
                }
                seen.insert(k.clone(), key_pos.line);
                entries.push(Entry { key: k, key_pos, value: node });
            }
        }
        Ok(())
    }
}

/// Stands for a quoted `"<<"` key between the key and its value: an ordinary key, not a merge.
const QUOTED_MERGE: &str = "\u{0}<<";

fn height(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(height).max().unwrap_or(0),
        Value::Map(entries) => 1 + entries.iter().map(|e| height(&e.value)).max().unwrap_or(0),
        _ => 0,
    }
}

fn size(node: &Node) -> usize {
    1 + match &node.value {
        Value::Seq(items) => items.iter().map(size).sum(),
        Value::Map(entries) => entries.iter().map(|e| 1 + size(&e.value)).sum(),
        _ => 0,
    }
}

/// `<<: *base` (or a list of them): keys written in the mapping win, then earlier merges win.
fn apply_merges(entries: &mut Vec<Entry>, seen: &mut HashMap<String, u32>, merges: Vec<Node>) -> Result<(), YamlError> {
    let mut sources = Vec::new();
    for m in merges {
        match m.value {
            Value::Map(e) => sources.push(e),
            Value::Seq(items) => {
                for item in items {
                    match item.value {
                        Value::Map(e) => sources.push(e),
                        _ => return err(item.pos, "a merge key (`<<`) takes a mapping or a list of mappings"),
                    }
                }
            }
            _ => return err(m.pos, "a merge key (`<<`) takes a mapping or a list of mappings"),
        }
    }
    for source in sources {
        for e in source {
            if !seen.contains_key(&e.key) {
                seen.insert(e.key.clone(), e.key_pos.line);
                entries.push(e);
            }
        }
    }
    Ok(())
}

fn check_collection_tag(tag: Option<&Tag>, expected: &str, pos: Pos) -> Result<(), YamlError> {
    match tag {
        None => Ok(()),
        Some(t) if t.handle == "tag:yaml.org,2002:" && format!("!!{}", t.suffix) == expected => Ok(()),
        Some(t) => err(pos, format!("unsupported YAML tag `{}`", tag_name(t))),
    }
}

fn tag_name(t: &Tag) -> String {
    match t.handle.as_str() {
        "tag:yaml.org,2002:" => format!("!!{}", t.suffix),
        h => format!("{h}{}", t.suffix),
    }
}

/// YAML 1.2 core schema resolution for plain scalars; quoted and block scalars are strings.
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>, pos: Pos) -> Result<Value, YamlError> {
    if let Some(tag) = tag {
        let name = if tag.handle == "tag:yaml.org,2002:" { tag.suffix.as_str() } else { "" };
        let parsed = match name {
            "str" => Some(Value::Str(text.to_owned())),
            "null" => Some(Value::Null),
            "bool" => parse_bool(text).map(Value::Bool),
            "int" => parse_int(text).map(Value::Int),
            "float" => parse_float(text, pos)?.map(Value::Float),
            _ => return err(pos, format!("unsupported YAML tag `{}`", tag_name(tag))),
        };
        return parsed.map_or_else(|| err(pos, format!("`{text}` is not a valid !!{name}")), Ok);
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::Str(text.to_owned()));
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = parse_bool(text) {
        return Ok(Value::Bool(b));
    }
    if let Some(i) = parse_int(text) {
        return Ok(Value::Int(i));
    }
    if looks_like_int(text) {
        return err(pos, format!("`{text}` is an integer too large to store in a Kubernetes object"));
    }
    if let Some(f) = parse_float(text, pos)? {
        return Ok(Value::Float(f));
    }
    Ok(Value::Str(text.to_owned()))
}

fn parse_bool(t: &str) -> Option<bool> {
    match t {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_int(t: &str) -> Option<i64> {
    let (digits, radix) = if let Some(h) = t.strip_prefix("0x") {
        (h, 16)
    } else if let Some(o) = t.strip_prefix("0o") {
        (o, 8)
    } else {
        (t, 10)
    };
    let body = digits.strip_prefix(['-', '+']).unwrap_or(digits);
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) || (radix != 10 && digits != body) {
        return None;
    }
    i64::from_str_radix(digits.strip_prefix('+').unwrap_or(digits), radix).ok()
}

fn parse_float(t: &str, pos: Pos) -> Result<Option<f64>, YamlError> {
    let lower = t.to_ascii_lowercase();
    if matches!(lower.trim_start_matches(['-', '+']), ".inf" | ".nan") {
        return err(pos, format!("`{t}` is not a finite number and cannot be stored in a Kubernetes object"));
    }
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mantissa_ok = {
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        (!int.is_empty() || !frac.is_empty())
            && int.chars().all(|c| c.is_ascii_digit())
            && frac.chars().all(|c| c.is_ascii_digit())
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    if !(mantissa_ok && exponent_ok) {
        return Ok(None);
    }
    match t.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Some(f)),
        _ => err(pos, format!("`{t}` is a number too large to store in a Kubernetes object")),
    }
}

/// The core schema's integer grammar, whatever the magnitude.
fn looks_like_int(t: &str) -> bool {
    let (digits, radix) = match (t.strip_prefix("0x"), t.strip_prefix("0o")) {
        (Some(h), _) => (h, 16),
        (_, Some(o)) => (o, 8),
        _ => (t.strip_prefix(['-', '+']).unwrap_or(t), 10),
    };
    !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix))
}

impl Node {
    /// The JSON form the API server would store.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            // `1.0` and `1e3` are integers to the schema (as to the API server); emit them as such so that
            // they also decode into integer fields.
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => J::from(*f as i64),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(entries.iter().map(|e| (e.key.clone(), e.value.to_json())).collect()),
        }
    }

    /// The entry `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// The string value of a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Where `path` points: the value's position, or the key's when `at_key` and the last step is a key.
    /// When the path leaves the document (a missing field), the position of the deepest part that exists.
    pub fn locate(&self, path: &[PathSeg], at_key: bool) -> Pos {
        let mut node = self;
        let mut key_pos = None;
        for seg in path {
            let next = match (seg, &node.value) {
                (PathSeg::Key(k), Value::Map(entries)) => {
                    entries.iter().find(|e| &e.key == k).map(|e| (Some(e.key_pos), &e.value))
                }
                (PathSeg::Index(i), Value::Seq(items)) => items.get(*i).map(|n| (None, n)),
                _ => None,
            };
            match next {
                Some((k, n)) => {
                    key_pos = k;
                    node = n;
                }
                None => return key_pos.unwrap_or(node.pos),
            }
        }
        if at_key { key_pos.unwrap_or(node.pos) } else { node.pos }
    }
}

/// One step into a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// The path serde was at when decoding failed, as steps into the document.
pub fn path_of(p: &serde_path_to_error::Path) -> Vec<PathSeg> {
    use serde_path_to_error::Segment;
    p.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(PathSeg::Index(*index)),
            Segment::Map { key } => Some(PathSeg::Key(key.clone())),
            Segment::Enum { variant } => Some(PathSeg::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// A field path as kubectl writes it: `spec.sandbox.egress[0]`, `metadata.labels["app.kubernetes.io/name"]`.
pub fn display_path(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Index(i) => out.push_str(&format!("[{i}]")),
            PathSeg::Key(k)
                if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathSeg::Key(k) => out.push_str(&format!("[{k:?}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Node {
        let mut docs = parse(src, Limits::default()).unwrap();
        assert_eq!(docs.len(), 1);
        docs.remove(0).root
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let root = one("a: 1\nb:\n  c: [x, 'y']\n");
        assert_eq!(root.get("b").unwrap().key_pos, Pos { line: 2, column: 1 });
        let path = [PathSeg::Key("b".into()), PathSeg::Key("c".into()), PathSeg::Index(1)];
        assert_eq!(root.locate(&path, false), Pos { line: 3, column: 10 });
        assert_eq!(root.locate(&path[..2], true), Pos { line: 3, column: 3 });
        let missing = [PathSeg::Key("b".into()), PathSeg::Key("c".into()), PathSeg::Index(7)];
        assert_eq!(root.locate(&missing, false), Pos { line: 3, column: 3 }, "nearest existing part");
    }

    #[test]
    fn core_schema_scalars() {
        let root = one("a: 1\nb: 1.5\nc: true\nd: ~\ne: yes\nf: '1'\ng: 0x1f\nh: 1e3\ni: 12abc\n");
        let j = root.to_json();
        assert_eq!(j["a"], 1);
        assert_eq!(j["b"], 1.5);
        assert_eq!(j["c"], true);
        assert!(j["d"].is_null());
        assert_eq!(j["e"], "yes", "YAML 1.2: yes is a string");
        assert_eq!(j["f"], "1");
        assert_eq!(j["g"], 31);
        assert_eq!(j["h"], 1000.0);
        assert_eq!(j["i"], "12abc");
    }

    #[test]
    fn duplicate_keys_are_errors_at_the_second_key() {
        let e = parse("a: 1\nb: 2\na: 3\n", Limits::default()).unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, column: 1 });
        assert!(e.message.contains("duplicate key `a` (first at line 1)"), "{}", e.message);
    }

    #[test]
    fn merge_keys_and_aliases() {
        let root = one("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n");
        assert_eq!(root.to_json()["m"], serde_json::json!({"y": 3, "x": 1}));
    }

    #[test]
    fn alias_bomb_is_refused_quickly() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            src.push_str(&format!("a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"));
        }
        let e = parse(&src, Limits::default()).unwrap_err();
        assert!(e.message.contains("alias bomb"), "{}", e.message);
        assert!(e.pos.line > 1);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let src = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let e = parse(&src, Limits::default()).unwrap_err();
        assert!(e.message.contains("deeper than 64"), "{}", e.message);
        let block: String = (0..100).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect();
        assert!(parse(&block, Limits::default()).unwrap_err().message.contains("deeper"));
    }

    #[test]
    fn non_utf8_names_the_byte_position() {
        let e = decode(b"a: 1\nb: caf\xe9\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, column: 7 });
        assert!(e.message.contains("0xe9"));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let e = parse("a: [1, 2\nb: 3\n", Limits::default()).unwrap_err();
        assert!(e.message.starts_with("YAML syntax error"), "{}", e.message);
        assert!(e.pos.line >= 1);
    }

    #[test]
    fn empty_documents_are_skipped_and_multi_documents_kept() {
        let docs = parse("# only a comment\n---\na: 1\n---\n---\nb: 2\n", Limits::default()).unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn paths_display_like_kubectl() {
        let p = [PathSeg::Key("spec".into()), PathSeg::Key("egress".into()), PathSeg::Index(0)];
        assert_eq!(display_path(&p), "spec.egress[0]");
        let l = [
            PathSeg::Key("metadata".into()),
            PathSeg::Key("labels".into()),
            PathSeg::Key("app.kubernetes.io/name".into()),
        ];
        assert_eq!(display_path(&l), "metadata.labels[\"app.kubernetes.io/name\"]");
    }

    #[test]
    fn aliases_keys_and_merge_spellings() {
        let root = one("spec: {model: &m gpt-5, tools: *m}\n\"<<\": literal\n");
        let tools = [PathSeg::Key("spec".into()), PathSeg::Key("tools".into())];
        assert_eq!(root.locate(&tools, false), Pos { line: 1, column: 32 }, "an alias is reported where it stands");
        assert!(
            matches!(parse("&k team: a\n*k : b\n", Limits::default()).unwrap_err().message.as_str(), m if m.contains("duplicate key `team`"))
        );
        let j = root.to_json();
        assert_eq!(j["<<"], "literal", "a quoted << is an ordinary key");
    }

    #[test]
    fn whole_floats_are_integers_and_out_of_range_numbers_are_errors() {
        let j = one("a: 1.0\nb: 1e3\nc: 2.5\n").to_json();
        assert!(j["a"].is_i64() && j["b"] == 1000 && j["c"] == 2.5);
        for bad in ["a: 1e400\n", "a: 99999999999999999999\n", "a: 0xFFFFFFFFFFFFFFFFFF\n"] {
            assert!(parse(bad, Limits::default()).unwrap_err().message.contains("too large"), "{bad}");
        }
    }

    #[test]
    fn anchored_copies_count_against_the_budget() {
        let items = vec!["0"; 300].join(", ");
        let src = format!("a: &a1 [&a2 [&a3 [{items}]]]\n");
        let e = parse(&src, Limits { max_depth: 64, max_nodes: 700 }).unwrap_err();
        assert!(e.message.contains("more than 700"), "{}", e.message);
    }
}
