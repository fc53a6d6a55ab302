//! The CustomResourceDefinitions generated from the types, and the stricter JSON Schemas that
//! `paddock validate` and editors use for manifest files.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

use crate::{Agent, Approval, GitSource, Policy, Session};

/// Schema for free-form parameters (`with:`): any object, kept as written.
pub fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The five Paddock kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Agent,
    Policy,
    Session,
    Approval,
    GitSource,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Agent, Kind::Policy, Kind::Session, Kind::Approval, Kind::GitSource];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Agent => "Agent",
            Kind::Policy => "Policy",
            Kind::Session => "Session",
            Kind::Approval => "Approval",
            Kind::GitSource => "GitSource",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The generated CRD, its integer formats made ones Kubernetes knows ([`kubernetes_formats`]).
    pub fn crd(self) -> CustomResourceDefinition {
        let mut crd = match self {
            Kind::Agent => Agent::crd(),
            Kind::Policy => Policy::crd(),
            Kind::Session => Session::crd(),
            Kind::Approval => Approval::crd(),
            Kind::GitSource => GitSource::crd(),
        };
        for version in &mut crd.spec.versions {
            if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
                let mut value = serde_json::to_value(&*schema).expect("a schema always serialises");
                kubernetes_formats(&mut value);
                *schema = serde_json::from_value(value).expect("only formats and bounds changed");
            }
        }
        crd
    }

    /// The file `crdgen` writes, e.g. `agents.paddock.dev.yaml`.
    pub fn crd_file_name(self) -> String {
        format!("{}.yaml", self.crd().metadata.name.unwrap_or_default())
    }

    /// The file `paddock schema` writes, e.g. `agent.schema.json`.
    pub fn schema_file_name(self) -> String {
        format!("{}.schema.json", self.as_str().to_ascii_lowercase())
    }
}

/// The `format`s of OpenAPI v3 that the API server knows (k8s.io/apiextensions-apiserver's supported formats,
/// plus the number formats); any other makes it warn `unrecognized format` on every apply of the CRD.
pub const KUBERNETES_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "binary",
    "date",
    "date-time",
    "datetime",
    "duration",
    "password",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "bsonobjectid",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
];

/// Rewrites the integer formats schemars derives from Rust's widths (`uint64` for `u64`, `uint32`, `uint16`,
/// `uint8`, `int16`, `int8`, `uint`) into the two Kubernetes knows, `int64` and `int32`, with the bounds of
/// the Rust type as `minimum` and `maximum`, so that the API server refuses what the controller could not
/// read instead of warning about the format. `u32` needs `int64` (its top half is beyond `int32`).
pub fn kubernetes_formats(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else { return };
    let bounds: Option<(&str, i64, Option<i64>)> = match obj.get("format").and_then(Value::as_str) {
        Some("uint64" | "uint") => Some(("int64", 0, None)),
        Some("uint32") => Some(("int64", 0, Some(u32::MAX.into()))),
        Some("uint16") => Some(("int32", 0, Some(u16::MAX.into()))),
        Some("uint8") => Some(("int32", 0, Some(u8::MAX.into()))),
        Some("int16") => Some(("int32", i16::MIN.into(), Some(i16::MAX.into()))),
        Some("int8") => Some(("int32", i8::MIN.into(), Some(i8::MAX.into()))),
        _ => None,
    };
    if let Some((format, min, max)) = bounds {
        obj.insert("format".into(), json!(format));
        // A bound the type already states tighter (a schemars attribute) stays.
        if obj.get("minimum").and_then(Value::as_f64).is_none_or(|m| m < min as f64) {
            obj.insert("minimum".into(), json!(min));
        }
        if let Some(max) = max
            && obj.get("maximum").and_then(Value::as_f64).is_none_or(|m| m > max as f64)
        {
            obj.insert("maximum".into(), json!(max));
        }
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        props.values_mut().for_each(kubernetes_formats);
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = obj.get_mut(key) {
            kubernetes_formats(child);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(items)) = obj.get_mut(key) {
            items.iter_mut().for_each(kubernetes_formats);
        }
    }
}

/// The CRD as the YAML document `crdgen` writes.
pub fn crd_yaml(kind: Kind) -> String {
    let body = serde_yaml_ng::to_string(&kind.crd()).expect("a CRD always serialises");
    format!("# Generated by `paddock crdgen` from controller/api. Do not edit.\n{body}")
}

/// The openAPIV3Schema of the served version, as JSON.
pub fn crd_schema(kind: Kind) -> Value {
    let crd = kind.crd();
    let version = &crd.spec.versions[0];
    let schema =
        version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).expect("generated CRDs carry a schema");
    serde_json::to_value(schema).expect("a schema always serialises")
}

/// Where the name rules of Kubernetes object names are spelled out.
const DNS1123_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const DNS1123_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A JSON Schema (draft 7) for a manifest of `kind` as written in a repository: the CRD schema made strict
/// the way the API server's strict field validation is — unknown fields are errors — with `metadata`
/// spelled out and `status` left out (controllers write it).
pub fn manifest_schema(kind: Kind) -> Value {
    let mut schema = crd_schema(kind);
    strictify(&mut schema);
    let props = schema.get_mut("properties").and_then(Value::as_object_mut).expect("a CRD schema has properties");
    props.remove("status");
    props.insert(
        "apiVersion".into(),
        json!({"const": crate::API_VERSION, "description": "Always `paddock.dev/v1alpha1`."}),
    );
    props.insert("kind".into(), json!({"const": kind.as_str(), "description": format!("Always `{}`.", kind.as_str())}));
    props.insert("metadata".into(), metadata_schema());
    let obj = schema.as_object_mut().expect("object schema");
    obj.insert("required".into(), json!(["apiVersion", "kind", "metadata", "spec"]));
    obj.insert("additionalProperties".into(), Value::Bool(false));
    obj.insert("title".into(), json!(format!("Paddock {}", kind.as_str())));
    obj.insert("$schema".into(), json!("http://json-schema.org/draft-07/schema#"));
    schema
}

/// One schema for any Paddock manifest, choosing by `kind`; for files that mix kinds.
pub fn any_manifest_schema() -> Value {
    let branches: Vec<Value> = Kind::ALL
        .iter()
        .map(|k| {
            let mut s = manifest_schema(*k);
            s.as_object_mut().expect("object").remove("$schema");
            json!({"if": {"properties": {"kind": {"const": k.as_str()}}, "required": ["kind"]}, "then": s})
        })
        .collect();
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Paddock manifest",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {"kind": {"enum": kinds}, "apiVersion": {"const": crate::API_VERSION}},
        "allOf": branches
    })
}

/// A qualified name: an optional DNS-subdomain prefix and `/`, then 1–63 alphanumerics, `-`, `_`, `.`.
const QUALIFIED_NAME: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
const LABEL_VALUE: &str = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$";

fn metadata_schema() -> Value {
    let labels = json!({"type": "object", "propertyNames": {"pattern": QUALIFIED_NAME, "maxLength": 316},
                        "additionalProperties": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE}});
    let annotations = json!({"type": "object", "propertyNames": {"pattern": QUALIFIED_NAME, "maxLength": 316},
                             "additionalProperties": {"type": "string"}});
    json!({
        "type": "object",
        "description": "Standard object metadata. `name` is required; `namespace` defaults to the target namespace.",
        "required": ["name"],
        "additionalProperties": false,
        "properties": {
            "name": {"type": "string", "maxLength": 253, "pattern": DNS1123_SUBDOMAIN,
                     "description": "Object name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit."},
            "namespace": {"type": "string", "maxLength": 63, "pattern": DNS1123_LABEL,
                          "description": "Namespace; omit it to use the GitSource's or the current namespace."},
            "labels": labels,
            "annotations": annotations
        }
    })
}

/// Makes objects closed (`additionalProperties: false`) unless they preserve unknown fields or are maps,
/// and turns OpenAPI's `nullable` into JSON Schema's null type.
fn strictify(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else { return };
    if obj.remove("nullable") == Some(Value::Bool(true))
        && let Some(Value::String(t)) = obj.get("type").cloned()
    {
        obj.insert("type".into(), json!([t, "null"]));
    }
    // The API server stores these fields as Go integers of that width; bound them as it would. (Unsigned
    // widths already carry their bounds: `kubernetes_formats`.)
    if obj.get("format").and_then(Value::as_str) == Some("int32") {
        obj.entry("maximum").or_insert(json!(i32::MAX));
        obj.entry("minimum").or_insert(json!(i32::MIN));
    }
    // The CRD types hold bounds as floats (`4294967295.0`); an integer's reads better in an error message.
    let integer = match obj.get("type") {
        Some(Value::String(t)) => t == "integer",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
        _ => false,
    };
    if integer {
        for key in ["minimum", "maximum"] {
            if let Some(f) = obj.get(key).and_then(Value::as_f64)
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                obj.insert(key.into(), json!(f as i64));
            }
        }
    }
    let preserves = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if obj.contains_key("properties") && !preserves && !obj.contains_key("additionalProperties") {
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        props.values_mut().for_each(strictify);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = obj.get_mut(key) {
            strictify(child);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(items)) = obj.get_mut(key) {
            items.iter_mut().for_each(strictify);
        }
    }
}

/// Checks that a CRD schema is structural in the sense of apiextensions.k8s.io/v1: every node says its
/// type (or preserves unknown fields / is int-or-string), no `$ref`, junctors carry no type-level fields,
/// and `properties` and `additionalProperties` never meet. Returns one message per violation.
pub fn structural_violations(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_structural(schema, "openAPIV3Schema", false, &mut out);
    out
}

fn walk_structural(schema: &Value, path: &str, in_junctor: bool, out: &mut Vec<String>) {
    let Some(obj) = schema.as_object() else {
        out.push(format!("{path}: schema must be an object"));
        return;
    };
    for forbidden in ["$ref", "definitions", "$defs"] {
        if obj.contains_key(forbidden) {
            out.push(format!("{path}: `{forbidden}` is not allowed"));
        }
    }
    if in_junctor {
        for key in [
            "type",
            "default",
            "additionalProperties",
            "description",
            "nullable",
            "x-kubernetes-preserve-unknown-fields",
        ] {
            if obj.contains_key(key) {
                out.push(format!("{path}: `{key}` is not allowed inside allOf/anyOf/oneOf/not"));
            }
        }
    } else {
        let typed = obj.get("type").and_then(Value::as_str).is_some_and(|t| !t.is_empty());
        let exempt = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
            || obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        if !typed && !exempt {
            out.push(format!("{path}: `type` must be set"));
        }
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        out.push(format!("{path}: `properties` and `additionalProperties` are mutually exclusive"));
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (name, child) in props {
            walk_structural(child, &format!("{path}.properties.{name}"), in_junctor, out);
        }
    }
    if let Some(items) = obj.get("items") {
        walk_structural(items, &format!("{path}.items"), in_junctor, out);
    }
    if let Some(ap @ Value::Object(_)) = obj.get("additionalProperties") {
        walk_structural(ap, &format!("{path}.additionalProperties"), in_junctor, out);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(items)) = obj.get(key) {
            for (i, child) in items.iter().enumerate() {
                walk_structural(child, &format!("{path}.{key}[{i}]"), true, out);
            }
        }
    }
    if let Some(not) = obj.get("not") {
        walk_structural(not, &format!("{path}.not"), true, out);
    }
}
