//! Per-document checks: YAML, apiVersion/kind, the CRD schema made strict, then typed decoding. Cross-object
//! checks live in [`crate::semantics`].

use std::collections::BTreeMap;
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use paddock_api::crds::{Kind, manifest_schema};
use paddock_api::{API_VERSION, Agent, Approval, GitSource, Policy, Session};
use serde_json::Value as Json;

use crate::diagnostics::{Diagnostic, Severity, suggestion};
use crate::source::{Content, MAX_FILE_BYTES, SourceFile};
use crate::yaml::{self, Limits, Node, PathSeg, Pos, display_path};

/// A decoded Paddock object.
// One per manifest, made once per load: boxing the larger kinds would buy nothing measurable.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Object {
    Agent(Agent),
    Policy(Policy),
    Session(Session),
    Approval(Approval),
    GitSource(GitSource),
}

/// An object that passed the per-document checks, with where it came from.
#[derive(Clone, Debug)]
pub struct LoadedObject {
    pub file: String,
    pub kind: Kind,
    pub name: String,
    pub namespace: Option<String>,
    /// The document, for positions.
    pub root: Node,
    pub object: Object,
}

impl LoadedObject {
    /// Position of a field, or of its nearest existing parent when the field is absent.
    pub fn pos(&self, path: &[PathSeg]) -> Pos {
        self.root.locate(path, false)
    }
}

/// The outcome of validating a set of files.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub files: usize,
    pub objects: Vec<LoadedObject>,
    pub diagnostics: Vec<Diagnostic>,
    /// Text of every file that decoded, for rendering diagnostics with their source line.
    pub sources: BTreeMap<String, String>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Warning).count()
    }

    pub fn is_ok(&self) -> bool {
        self.errors() == 0
    }

    /// Every diagnostic rendered with its source line, then a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str(&d.render(self.sources.get(&d.file).map(String::as_str)));
            out.push_str("\n\n");
        }
        out.push_str(&self.summary());
        out
    }

    /// `checked 3 files, 5 objects: 2 errors, 1 warning`.
    pub fn summary(&self) -> String {
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        format!(
            "checked {}, {}: {}, {}",
            plural(self.files, "file"),
            plural(self.objects.len(), "object"),
            plural(self.errors(), "error"),
            plural(self.warnings(), "warning")
        )
    }
}

/// The most manifest bytes one revision may hold (every file together), so that a repository that
/// compresses well in git cannot exhaust memory here.
pub const MAX_REPO_BYTES: u64 = 64 * 1024 * 1024;

/// Validates a whole set of files as one repository revision. Pure: no IO. Objects without a namespace
/// are taken to be in [`crate::semantics::DEFAULT_NAMESPACE`].
pub fn validate_files(files: &[SourceFile]) -> Report {
    validate_files_in(files, crate::semantics::DEFAULT_NAMESPACE)
}

/// [`validate_files`] for objects that will land in `default_namespace` when they name none, so that
/// `coder` and `coder` in `namespace: <default_namespace>` are one object and references resolve there.
pub fn validate_files_in(files: &[SourceFile], default_namespace: &str) -> Report {
    let mut report = Report { files: files.len(), ..Report::default() };
    let total: u64 = files
        .iter()
        .map(|f| match &f.content {
            Content::Bytes(b) => b.len() as u64,
            _ => 0,
        })
        .sum();
    if total > MAX_REPO_BYTES {
        report.diagnostics.push(Diagnostic::error(
            ".",
            Pos::default(),
            None,
            format!(
                "the manifests total {:.1} MiB; a revision is limited to {} MiB",
                total as f64 / 1048576.0,
                MAX_REPO_BYTES / 1048576
            ),
        ));
        return report;
    }
    for file in files {
        check_file(file, &mut report);
    }
    crate::semantics::check(&mut report, default_namespace);
    report.diagnostics.sort_by(|a, b| (&a.file, a.pos, a.severity).cmp(&(&b.file, b.pos, b.severity)));
    report.diagnostics.dedup();
    report
}

fn check_file(file: &SourceFile, report: &mut Report) {
    let path = file.path.as_str();
    let bytes = match &file.content {
        Content::Bytes(b) => b,
        Content::NotRegular => {
            report.diagnostics.push(Diagnostic::error(
                path,
                Pos::default(),
                None,
                "is a symlink or not a regular file; manifests must be regular files inside the repository",
            ));
            return;
        }
        Content::TooLarge(n) => {
            report.diagnostics.push(Diagnostic::error(
                path,
                Pos::default(),
                None,
                format!(
                    "file is {:.1} MiB; manifest files are limited to {} MiB",
                    *n as f64 / 1048576.0,
                    MAX_FILE_BYTES / 1048576
                ),
            ));
            return;
        }
    };
    let text = match yaml::decode(bytes) {
        Ok(t) => t,
        Err(e) => {
            report.diagnostics.push(Diagnostic::error(path, e.pos, None, e.message));
            return;
        }
    };
    report.sources.insert(path.to_owned(), text.to_owned());
    let docs = match yaml::parse(text, Limits::default()) {
        Ok(d) => d,
        Err(e) => {
            report.diagnostics.push(Diagnostic::error(path, e.pos, None, e.message));
            return;
        }
    };
    if docs.is_empty() {
        report.diagnostics.push(Diagnostic::warning(path, Pos::default(), None, "file holds no manifests"));
    }
    for doc in docs {
        if let Some(obj) = check_document(path, doc.root, &mut report.diagnostics) {
            report.objects.push(obj);
        }
    }
}

/// Schema errors listed per document before the rest are only counted.
const MAX_SCHEMA_ERRORS: usize = 50;

fn check_document(file: &str, root: Node, out: &mut Vec<Diagnostic>) -> Option<LoadedObject> {
    let err = |pos: Pos, field: Option<&str>, msg: String| Diagnostic::error(file, pos, field.map(str::to_owned), msg);
    if !matches!(root.value, yaml::Value::Map(_)) {
        out.push(err(root.pos, None, "a manifest must be a mapping with apiVersion, kind, metadata and spec".into()));
        return None;
    }
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let api_version = root.get("apiVersion");
    let kind_entry = root.get("kind");
    let mut header_ok = true;
    match api_version.map(|e| (e, e.value.as_str())) {
        None => {
            out.push(err(root.pos, Some("apiVersion"), format!("required field is missing; expected `{API_VERSION}`")));
            header_ok = false;
        }
        Some((_, Some(API_VERSION))) => {}
        Some((e, v)) => {
            let shown = v.map_or_else(|| e.value.to_json().to_string(), str::to_owned);
            let hint = if v.is_some_and(|v| v.starts_with("paddock.dev/")) {
                format!("; this Paddock serves only `{API_VERSION}`")
            } else {
                format!("; Paddock objects use `{API_VERSION}`")
            };
            out.push(err(e.value.pos, Some("apiVersion"), format!("`{shown}` is not a Paddock API version{hint}")));
            header_ok = false;
        }
    }
    let kind = match kind_entry.map(|e| (e, e.value.as_str())) {
        None => {
            out.push(err(
                root.pos,
                Some("kind"),
                format!("required field is missing; expected one of {}", kinds.join(", ")),
            ));
            None
        }
        Some((e, v)) => match v.and_then(Kind::parse) {
            Some(k) => Some(k),
            None => {
                let v = v.unwrap_or("");
                out.push(err(
                    e.value.pos,
                    Some("kind"),
                    format!(
                        "`{v}` is not a Paddock kind; expected one of {}{}",
                        kinds.join(", "),
                        suggestion(v, kinds.iter().copied())
                    ),
                ));
                None
            }
        },
    };
    let kind = kind.filter(|_| header_ok)?;
    let json = root.to_json();
    let before = out.len();
    // Like a compiler, stop listing after a while: a file with thousands of wrong values needs the first
    // few to be understood, and locating each costs a walk of the document.
    let mut errors = compiled(kind).0.iter_errors(&json);
    for e in errors.by_ref().take(MAX_SCHEMA_ERRORS) {
        out.push(schema_diagnostic(file, &root, kind, &e));
    }
    let more = errors.count();
    if more > 0 {
        out.push(err(root.pos, None, format!("{more} more schema errors in this document not shown")));
    }
    if out.len() > before {
        return None;
    }
    let object = match decode(kind, json) {
        Ok(o) => o,
        Err(e) => {
            let path = yaml::path_of(e.path());
            let field = (!path.is_empty()).then(|| display_path(&path));
            out.push(Diagnostic::error(file, root.locate(&path, false), field, e.into_inner().to_string()));
            return None;
        }
    };
    let meta = root.get("metadata").expect("schema requires metadata");
    let name = meta.value.get("name").and_then(|e| e.value.as_str()).unwrap_or_default().to_owned();
    let namespace = meta.value.get("namespace").and_then(|e| e.value.as_str()).map(str::to_owned);
    Some(LoadedObject { file: file.to_owned(), kind, name, namespace, root, object })
}

fn decode(kind: Kind, json: Json) -> Result<Object, serde_path_to_error::Error<serde_json::Error>> {
    use serde_path_to_error::deserialize as de;
    Ok(match kind {
        Kind::Agent => Object::Agent(de(json)?),
        Kind::Policy => Object::Policy(de(json)?),
        Kind::Session => Object::Session(de(json)?),
        Kind::Approval => Object::Approval(de(json)?),
        Kind::GitSource => Object::GitSource(de(json)?),
    })
}

/// The strict manifest schema of a kind and its compiled validator, built once.
fn compiled(kind: Kind) -> &'static (jsonschema::Validator, Json) {
    static COMPILED: OnceLock<Vec<(Kind, (jsonschema::Validator, Json))>> = OnceLock::new();
    let all = COMPILED.get_or_init(|| {
        Kind::ALL
            .iter()
            .map(|k| {
                let schema = manifest_schema(*k);
                let v = jsonschema::validator_for(&schema).expect("generated schemas compile");
                (*k, (v, schema))
            })
            .collect()
    });
    &all.iter().find(|(k, _)| *k == kind).expect("every kind has a schema").1
}

/// The sub-schema that governs the instance at `path`.
fn schema_at<'a>(mut schema: &'a Json, path: &[PathSeg]) -> Option<&'a Json> {
    for seg in path {
        schema = match seg {
            PathSeg::Key(k) => schema
                .get("properties")
                .and_then(|p| p.get(k))
                .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))?,
            PathSeg::Index(_) => schema.get("items")?,
        };
    }
    Some(schema)
}

fn schema_diagnostic(file: &str, root: &Node, kind: Kind, e: &jsonschema::ValidationError<'_>) -> Diagnostic {
    let path: Vec<PathSeg> = e
        .instance_path()
        .iter()
        .map(|s| match s {
            jsonschema::paths::LocationSegment::Property(p) => PathSeg::Key(p.into_owned()),
            jsonschema::paths::LocationSegment::Index(i) => PathSeg::Index(i),
        })
        .collect();
    let at = |p: &[PathSeg], at_key: bool| root.locate(p, at_key);
    let instance = e.instance();
    let here = at(&path, false);
    let diag = |pos: Pos, p: &[PathSeg], msg: String| {
        let field = if p.is_empty() { None } else { Some(display_path(p)) };
        Diagnostic::error(file, pos, field, msg)
    };
    match e.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let key = unexpected.first().cloned().unwrap_or_default();
            let mut full = path.clone();
            full.push(PathSeg::Key(key.clone()));
            if path.is_empty() && key == "status" {
                return diag(
                    at(&full, true),
                    &full,
                    "status is written by Paddock's controllers; remove it from the manifest".into(),
                );
            }
            let known: Vec<&str> = schema_at(&compiled(kind).1, &path)
                .and_then(|s| s.get("properties"))
                .and_then(Json::as_object)
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let hint = suggestion(&key, known.iter().copied());
            let list = if hint.is_empty() && !known.is_empty() {
                format!("; known fields: {}", known.join(", "))
            } else {
                hint
            };
            diag(at(&full, true), &full, format!("unknown field `{key}`{list}"))
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default().to_owned();
            let mut full = path.clone();
            full.push(PathSeg::Key(name.clone()));
            diag(at(&path, true), &full, format!("required field `{name}` is missing"))
        }
        ValidationErrorKind::Enum { options } => {
            let opts: Vec<&str> = options.as_array().into_iter().flatten().filter_map(Json::as_str).collect();
            let got = instance.as_str().map_or_else(|| instance.to_string(), str::to_owned);
            diag(
                here,
                &path,
                format!("`{got}` is not one of {}{}", opts.join(", "), suggestion(&got, opts.iter().copied())),
            )
        }
        ValidationErrorKind::Type { kind: expected } => {
            let want = match expected {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(ts) => {
                    ts.iter().map(|t| t.to_string()).filter(|t| t != "null").collect::<Vec<_>>().join(" or ")
                }
            };
            diag(here, &path, format!("expected {want}, found {} `{}`", json_type(instance), short(instance)))
        }
        ValidationErrorKind::Pattern { .. }
            if path.last() == Some(&PathSeg::Key("name".into()))
                || path.last() == Some(&PathSeg::Key("namespace".into())) =>
        {
            diag(
                here,
                &path,
                format!(
                    "`{}` is not a valid Kubernetes name: use lower-case letters, digits and '-', starting and ending with a letter or digit",
                    short(instance)
                ),
            )
        }
        ValidationErrorKind::Pattern { .. }
        | ValidationErrorKind::MaxLength { .. }
        | ValidationErrorKind::PropertyNames { .. }
            if path.get(1).is_some_and(|s| matches!(s, PathSeg::Key(k) if k == "labels" || k == "annotations"))
                && path.first() == Some(&PathSeg::Key("metadata".into())) =>
        {
            let key_error = matches!(e.kind(), ValidationErrorKind::PropertyNames { .. });
            let what = if key_error { "key" } else { "value" };
            let rule = if what == "key" {
                "an optional DNS-subdomain prefix and `/`, then 1 to 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit"
            } else {
                "at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit"
            };
            let shown = if key_error {
                // The instance is the whole map; name the offending keys.
                let bad: Vec<&str> = instance
                    .as_object()
                    .into_iter()
                    .flat_map(|m| m.keys())
                    .map(String::as_str)
                    .filter(|k| !valid_qualified_name(k))
                    .collect();
                bad.join("`, `")
            } else {
                short(instance)
            };
            diag(here, &path, format!("`{shown}` is not a valid {what}: use {rule}"))
        }
        _ => diag(here, &path, e.to_string()),
    }
}

fn valid_qualified_name(k: &str) -> bool {
    let (prefix, name) = k.rsplit_once('/').unwrap_or(("", k));
    let name_ok = (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_empty()
        || (prefix.len() <= 253
            && prefix
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')));
    name_ok && prefix_ok && !k.starts_with('/')
}

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_f64() => "number",
        Json::Number(_) => "integer",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

fn short(v: &Json) -> String {
    let s = match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 60 { format!("{}…", s.chars().take(60).collect::<String>()) } else { s }
}
