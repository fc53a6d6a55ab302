//! `GitSource`: an agents repository the controller keeps applied, in the manner of Flux.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::LocalObjectReference;
use crate::status::Condition;

/// Where the repository is and how to follow it.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "paddock.dev",
    version = "v1alpha1",
    kind = "GitSource",
    doc = "A GitSource: a git repository of Agents and Policies kept applied, Flux style.",
    namespaced,
    status = "GitSourceStatus",
    shortname = "gs",
    category = "paddock",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Applied","type":"string","jsonPath":".status.lastAppliedRevision"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Suspended","type":"boolean","priority":1,"jsonPath":".spec.suspend"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GitSourceSpec {
    /// Repository URL: `https://…`, `ssh://…`, `git@host:owner/repo.git`, or `file://…`.
    pub url: String,
    /// What to check out. Defaults to the branch `main`.
    #[serde(default, rename = "ref")]
    pub git_ref: GitRef,
    /// Directory inside the repository that holds `agents/` and `policies/`.
    #[serde(default = "default_path")]
    pub path: String,
    /// How often to fetch and re-apply (which also undoes drift), as a Go duration such as `1m` or `1h30m`.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// Secret with credentials: `token` (HTTPS), or `identity` and `known_hosts` (SSH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Secret whose key `token` is the shared secret of the push webhook `POST /hooks/git/{namespace}/{name}`:
    /// the HMAC key of GitHub's `X-Hub-Signature-256`, or GitLab's `X-Gitlab-Token`. Without it the webhook
    /// is off for this source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret_ref: Option<LocalObjectReference>,
    /// Stop fetching and applying until set back to false.
    #[serde(default)]
    pub suspend: bool,
    /// Delete objects that were applied from this source and have left git. An object opts out with the
    /// annotation `paddock.dev/prune: disabled`.
    #[serde(default = "default_true")]
    pub prune: bool,
}

fn default_path() -> String {
    "./".into()
}
fn default_interval() -> String {
    "5m".into()
}
fn default_true() -> bool {
    true
}

/// The git reference to follow; at most one of `branch`, `tag` and `commit`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GitRef {
    /// Follow this branch (default `main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Pin to this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Pin to this commit SHA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// An object applied from git.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct InventoryEntry {
    /// Kind, e.g. `Agent`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
}

/// A problem found in a revision, with its place in the repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SourceError {
    /// File path relative to `spec.path`.
    pub file: String,
    /// 1-based line, 0 when the error concerns the whole file.
    pub line: u32,
    /// 1-based column, 0 when unknown.
    #[serde(default)]
    pub column: u32,
    /// What is wrong, with the field path.
    pub message: String,
}

/// What the GitSource controller observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSourceStatus {
    /// `Ready` always; `Reconciling` while fetching or applying; `Stalled` while the revision is broken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The revision (`branch@sha1:…`) whose objects are live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The latest revision fetched, applied or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// The objects this source applied and owns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<InventoryEntry>,
    /// The problems of the last attempted revision; empty when it applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SourceError>,
    /// The value of the `paddock.dev/requestedAt` annotation last handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
