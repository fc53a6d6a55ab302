//! What a GitSource does with a revision, as pure functions: which objects of the revision it applies
//! ([`render_revision`]) and what to apply, prune or leave alone given its inventory and the live objects
//! ([`plan`]). The operator crate carries the plan out against the API server.

use std::collections::{BTreeMap, BTreeSet};

use paddock_api::crds::Kind;
use serde_json::{Map, Value as Json};

use crate::diagnostics::{Diagnostic, Severity};
use crate::source::SourceFile;
use crate::validate::{Report, validate_files_in};
use crate::yaml::PathSeg;

/// Label on every object a GitSource applied: `app.kubernetes.io/managed-by: paddock`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "paddock";
/// Label naming the GitSource that applied an object.
pub const SOURCE_NAME_LABEL: &str = "paddock.dev/gitsource-name";
/// Label naming the namespace of the GitSource that applied an object.
pub const SOURCE_NAMESPACE_LABEL: &str = "paddock.dev/gitsource-namespace";
/// Annotation with the revision (`main@sha1:…`) an object was last applied from; Agent and Policy status
/// report it as `sourceRevision`.
pub const REVISION_ANNOTATION: &str = "paddock.dev/revision";
/// Annotation with the file, relative to the GitSource's `path`, that an object came from.
pub const SOURCE_PATH_ANNOTATION: &str = "paddock.dev/source-path";
/// Annotation that keeps an object when it leaves git: `paddock.dev/prune: disabled`.
pub const PRUNE_ANNOTATION: &str = "paddock.dev/prune";
/// The value of [`PRUNE_ANNOTATION`] that opts out of pruning.
pub const PRUNE_DISABLED: &str = "disabled";
/// Annotation on a live object that hands it to one GitSource of its namespace, named as the value:
/// `paddock.dev/adopt: platform`. Without it a GitSource refuses to take over an object another GitSource
/// applied or one made outside Paddock; naming the GitSource means that of two whose revisions hold the
/// object, only the one meant takes it. It is consent given on the cluster, so the copy written in git is not
/// applied, and the adopting GitSource removes it once the object is its own.
pub const ADOPT_ANNOTATION: &str = "paddock.dev/adopt";
/// Annotation on a GitSource that asks for a sync now (any new value), as Flux's `reconcile.fluxcd.io/requestedAt`.
pub const REQUESTED_AT_ANNOTATION: &str = "paddock.dev/requestedAt";

/// The kinds a GitSource applies. Sessions and Approvals are made by users and GitSources by the platform
/// team; a revision that holds one is refused rather than half-applied.
pub const APPLIED_KINDS: [Kind; 2] = [Kind::Agent, Kind::Policy];

/// An object by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey { kind, namespace: namespace.into(), name: name.into() }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// The GitSource a revision belongs to.
#[derive(Clone, Copy, Debug)]
pub struct SourceRef<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
}

impl SourceRef<'_> {
    /// The labels that mark an object as applied by this source; also the selector that lists them.
    pub fn labels(&self) -> [(&'static str, String); 3] {
        [
            (MANAGED_BY_LABEL, MANAGED_BY.to_owned()),
            (SOURCE_NAME_LABEL, self.name.to_owned()),
            (SOURCE_NAMESPACE_LABEL, self.namespace.to_owned()),
        ]
    }

    /// `app.kubernetes.io/managed-by=paddock,paddock.dev/gitsource-name=…,paddock.dev/gitsource-namespace=…`.
    pub fn label_selector(&self) -> String {
        self.labels().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }

    /// Whether `labels` are this source's (all three of [`SourceRef::labels`]): what pruning requires.
    pub fn labelled_ours(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels().iter().all(|(k, v)| labels.get(*k) == Some(v))
    }

    /// Who holds a live object that this source's revision wants to apply, from its labels and whether it
    /// is in this source's inventory. An inventory object whose labels were removed by hand is still ours
    /// (we applied it and nobody else claims it; the apply puts the labels back); one labelled by another
    /// GitSource is not, even if our inventory lists it (it was adopted away).
    pub fn holder(&self, labels: &BTreeMap<String, String>, in_inventory: bool) -> Holder {
        if self.labelled_ours(labels) {
            return Holder::This;
        }
        let name = labels.get(SOURCE_NAME_LABEL);
        let namespace = labels.get(SOURCE_NAMESPACE_LABEL);
        if name.is_none() && namespace.is_none() {
            return if in_inventory { Holder::This } else { Holder::Outside };
        }
        let unknown = || "?".to_owned();
        Holder::OtherSource {
            namespace: namespace.cloned().unwrap_or_else(unknown),
            name: name.cloned().unwrap_or_else(unknown),
        }
    }
}

/// Who holds a live object, as a GitSource sees it before applying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// The GitSource itself: applied as usual.
    This,
    /// Another GitSource, by the object's `paddock.dev/gitsource-*` labels.
    OtherSource { namespace: String, name: String },
    /// No GitSource: made with kubectl, Helm or another tool.
    Outside,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::This => f.write_str("this GitSource"),
            Holder::OtherSource { namespace, name } => write!(f, "GitSource {namespace}/{name}"),
            Holder::Outside => f.write_str("created outside Paddock"),
        }
    }
}

/// An object of the revision, ready to server-side apply.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObject {
    pub key: ObjectKey,
    /// The file it came from.
    pub file: String,
    /// The manifest as written, with its namespace resolved and the source's labels and annotations added.
    pub manifest: Json,
}

/// A whole revision, checked: either every object to apply, or every error (and nothing is applied).
#[derive(Debug)]
pub enum Rendered {
    Ok { objects: Vec<DesiredObject>, warnings: Vec<Diagnostic> },
    Invalid { errors: Vec<Diagnostic>, warnings: Vec<Diagnostic> },
}

/// Validates every file of a revision as `paddock validate` does, with objects that name no namespace
/// placed in the source's namespace, then checks what only a GitSource cares about: each object is an
/// Agent or a Policy and lands in the source's own namespace. On success, renders the manifests to apply.
///
/// `truncated` says the revision held more manifest bytes than [`crate::validate::MAX_REPO_BYTES`], so
/// the fetch stopped reading; that alone refuses the revision.
pub fn render_revision(files: &[SourceFile], truncated: bool, source: SourceRef<'_>, revision: &str) -> Rendered {
    let report = if truncated {
        let mut r = Report::default();
        r.diagnostics.push(Diagnostic::error(
            ".",
            Default::default(),
            None,
            format!(
                "the manifests under this path exceed {} MiB; a revision is limited to that",
                crate::validate::MAX_REPO_BYTES / 1048576
            ),
        ));
        r
    } else {
        validate_files_in(files, source.namespace)
    };
    let mut errors: Vec<Diagnostic> = Vec::new();
    let mut warnings: Vec<Diagnostic> = Vec::new();
    for d in report.diagnostics {
        match d.severity {
            Severity::Error => errors.push(d),
            Severity::Warning => warnings.push(d),
        }
    }
    let key = |k: &str| PathSeg::Key(k.to_owned());
    let mut objects = Vec::with_capacity(report.objects.len());
    for obj in &report.objects {
        if !APPLIED_KINDS.contains(&obj.kind) {
            errors.push(Diagnostic::error(
                &obj.file,
                obj.pos(&[key("kind")]),
                Some("kind".into()),
                format!(
                    "a GitSource applies Agents and Policies only; `{}` objects are not applied from git (move the file out of the GitSource's path)",
                    obj.kind.as_str()
                ),
            ));
            continue;
        }
        if let Some(ns) = obj.namespace.as_deref()
            && ns != source.namespace
        {
            errors.push(Diagnostic::error(
                &obj.file,
                obj.pos(&[key("metadata"), key("namespace")]),
                Some("metadata.namespace".into()),
                format!(
                    "`{ns}` is not the GitSource's namespace `{}`; a GitSource applies objects into its own namespace only (omit `namespace`)",
                    source.namespace
                ),
            ));
            continue;
        }
        if !errors.is_empty() {
            // Nothing will be applied; keep looking for errors only.
            continue;
        }
        let mut manifest = obj.root.to_json();
        stamp(&mut manifest, source, revision, &obj.file);
        objects.push(DesiredObject {
            key: ObjectKey::new(obj.kind, source.namespace, obj.name.clone()),
            file: obj.file.clone(),
            manifest,
        });
    }
    if errors.is_empty() {
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Rendered::Ok { objects, warnings }
    } else {
        errors.sort_by(|a, b| (&a.file, a.pos).cmp(&(&b.file, b.pos)));
        Rendered::Invalid { errors, warnings }
    }
}

/// Sets the namespace and adds the ownership labels and the revision annotations; the source's keys win
/// over the same keys written in git.
fn stamp(manifest: &mut Json, source: SourceRef<'_>, revision: &str, file: &str) {
    let Some(meta) = manifest.get_mut("metadata").and_then(Json::as_object_mut) else { return };
    meta.insert("namespace".into(), Json::String(source.namespace.to_owned()));
    let labels = entry_object(meta, "labels");
    for (k, v) in source.labels() {
        labels.insert(k.to_owned(), Json::String(v));
    }
    let annotations = entry_object(meta, "annotations");
    // Adoption is consent given on the live object; written in git it would outlive the adoption.
    annotations.remove(ADOPT_ANNOTATION);
    annotations.insert(REVISION_ANNOTATION.to_owned(), Json::String(revision.to_owned()));
    annotations.insert(SOURCE_PATH_ANNOTATION.to_owned(), Json::String(file.to_owned()));
}

fn entry_object<'m>(meta: &'m mut Map<String, Json>, key: &str) -> &'m mut Map<String, Json> {
    let slot = meta.entry(key.to_owned()).or_insert_with(|| Json::Object(Map::new()));
    if !slot.is_object() {
        *slot = Json::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

/// What is known of a live object that carries this source's labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveObject {
    /// It has `paddock.dev/prune: disabled`.
    pub prune_disabled: bool,
}

/// Everything the plan depends on.
#[derive(Clone, Debug, Default)]
pub struct PlanInput {
    /// The objects of the revision.
    pub desired: Vec<ObjectKey>,
    /// The GitSource's `status.inventory`.
    pub inventory: Vec<ObjectKey>,
    /// Live objects labelled as applied by this source.
    pub live: BTreeMap<ObjectKey, LiveObject>,
    /// `spec.prune`.
    pub prune: bool,
    /// `spec.suspend`.
    pub suspend: bool,
}

/// What to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Server-side apply each of these (every desired object, each time, which also undoes drift).
    pub apply: Vec<ObjectKey>,
    /// Delete these: they left git and are still live.
    pub prune: Vec<ObjectKey>,
    /// These left git but stay, because pruning is off or they opted out; they are no longer managed.
    pub orphan: Vec<ObjectKey>,
    /// The inventory once the plan is carried out.
    pub inventory: Vec<ObjectKey>,
}

/// The plan for one sync. Pure.
///
/// - suspended: nothing is applied or pruned and the inventory stays as it is;
/// - every desired object is applied;
/// - an object that left git (in the inventory, or live with this source's labels when the inventory was
///   lost) is pruned when it is live, `spec.prune` is on and it did not opt out; an inventory object that
///   stays instead is reported as an orphan; one that is no longer live is just dropped;
/// - the new inventory is exactly the desired objects.
pub fn plan(input: &PlanInput) -> Plan {
    if input.suspend {
        let mut inventory = input.inventory.clone();
        inventory.sort();
        inventory.dedup();
        return Plan { inventory, ..Plan::default() };
    }
    let desired: BTreeSet<&ObjectKey> = input.desired.iter().collect();
    let inventory: BTreeSet<&ObjectKey> = input.inventory.iter().collect();
    let mut prune = Vec::new();
    let mut orphan = Vec::new();
    let stale_candidates: BTreeSet<&ObjectKey> =
        inventory.iter().copied().chain(input.live.keys()).filter(|k| !desired.contains(k)).collect();
    for key in stale_candidates {
        let Some(live) = input.live.get(key) else { continue };
        if input.prune && !live.prune_disabled {
            prune.push(key.clone());
        } else if inventory.contains(key) {
            orphan.push(key.clone());
        }
    }
    let apply: Vec<ObjectKey> = desired.into_iter().cloned().collect();
    Plan { inventory: apply.clone(), apply, prune, orphan }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<SourceFile> {
        list.iter().map(|(p, c)| SourceFile::new(*p, c.as_bytes())).collect()
    }

    const SRC: SourceRef<'static> = SourceRef { name: "agents", namespace: "team-a" };

    const AGENT: &str = "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: coder\n  labels: {team: a}\nspec:\n  harness: claude-code\n  model: claude-sonnet-4-5\n  policies: [baseline]\n";
    const POLICY: &str = "apiVersion: paddock.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: baseline\n  namespace: team-a\nspec:\n  rules:\n    - {name: budget, use: cost_budget, with: {max_cost_usd: 10}}\n";

    #[test]
    fn renders_in_the_source_namespace_with_ownership_labels() {
        let Rendered::Ok { objects, .. } = render_revision(
            &files(&[("agents/coder.yaml", AGENT), ("policies/b.yaml", POLICY)]),
            false,
            SRC,
            "main@sha1:abc",
        ) else {
            panic!("valid revision refused")
        };
        assert_eq!(objects.len(), 2);
        let agent = &objects[0];
        assert_eq!(agent.key, ObjectKey::new(Kind::Agent, "team-a", "coder"));
        let meta = &agent.manifest["metadata"];
        assert_eq!(meta["namespace"], "team-a");
        assert_eq!(meta["labels"]["team"], "a");
        assert_eq!(meta["labels"][SOURCE_NAME_LABEL], "agents");
        assert_eq!(meta["labels"][SOURCE_NAMESPACE_LABEL], "team-a");
        assert_eq!(meta["labels"][MANAGED_BY_LABEL], "paddock");
        assert_eq!(meta["annotations"][REVISION_ANNOTATION], "main@sha1:abc");
        assert_eq!(meta["annotations"][SOURCE_PATH_ANNOTATION], "agents/coder.yaml");
        // The manifest as written: no defaults filled in, so the field manager owns only what git says.
        assert!(agent.manifest["spec"].get("sandbox").is_none());
    }

    #[test]
    fn policy_references_resolve_in_the_source_namespace() {
        // The Agent names no namespace and the Policy says `team-a`: with the source in team-a they meet.
        assert!(matches!(
            render_revision(&files(&[("a.yaml", AGENT), ("p.yaml", POLICY)]), false, SRC, "r"),
            Rendered::Ok { .. }
        ));
    }

    #[test]
    fn refuses_other_kinds_and_namespaces_with_positions() {
        let session = "apiVersion: paddock.dev/v1alpha1\nkind: Session\nmetadata: {name: s}\nspec: {agentRef: {name: coder}, prompt: hi, owner: me}\n";
        let other_ns = POLICY.replace("namespace: team-a", "namespace: team-b");
        let Rendered::Invalid { errors, .. } = render_revision(
            &files(&[("agents/coder.yaml", AGENT), ("p.yaml", &other_ns), ("s.yaml", session)]),
            false,
            SRC,
            "r",
        ) else {
            panic!("accepted")
        };
        let shown: Vec<String> = errors.iter().map(|d| d.to_string()).collect();
        assert!(
            shown
                .iter()
                .any(|e| e.starts_with("s.yaml:2:7: error: kind: a GitSource applies Agents and Policies only")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|e| e
                    .starts_with("p.yaml:5:14: error: metadata.namespace: `team-b` is not the GitSource's namespace")),
            "{shown:?}"
        );
        // The Agent's Policy is now in another namespace, so its reference fails too.
        assert!(shown.iter().any(|e| e.contains("Policy `baseline` is not defined")), "{shown:?}");
    }

    #[test]
    fn a_truncated_revision_is_refused() {
        let Rendered::Invalid { errors, .. } = render_revision(&files(&[("a.yaml", AGENT)]), true, SRC, "r") else {
            panic!("accepted")
        };
        assert!(errors[0].message.contains("limited"), "{errors:?}");
    }

    #[test]
    fn an_adopt_annotation_written_in_git_is_not_applied() {
        let agent =
            AGENT.replace("  labels: {team: a}\n", "  annotations: {paddock.dev/adopt: \"true\", note: kept}\n");
        let Rendered::Ok { objects, .. } =
            render_revision(&files(&[("a.yaml", &agent), ("p.yaml", POLICY)]), false, SRC, "r")
        else {
            panic!("valid revision refused")
        };
        let annotations = &objects[0].manifest["metadata"]["annotations"];
        assert!(annotations.get(ADOPT_ANNOTATION).is_none(), "{annotations}");
        assert_eq!(annotations["note"], "kept");
    }

    #[test]
    fn the_holder_of_a_live_object_comes_from_its_labels_then_the_inventory() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let ours = labels(&[
            (MANAGED_BY_LABEL, MANAGED_BY),
            (SOURCE_NAME_LABEL, "agents"),
            (SOURCE_NAMESPACE_LABEL, "team-a"),
        ]);
        assert_eq!(SRC.holder(&ours, false), Holder::This);
        assert!(SRC.labelled_ours(&ours));
        let other = labels(&[
            (MANAGED_BY_LABEL, MANAGED_BY),
            (SOURCE_NAME_LABEL, "platform"),
            (SOURCE_NAMESPACE_LABEL, "team-a"),
        ]);
        let held = Holder::OtherSource { namespace: "team-a".into(), name: "platform".into() };
        assert_eq!(SRC.holder(&other, false), held);
        assert_eq!(SRC.holder(&other, true), held, "adopted away: our inventory does not make it ours");
        assert_eq!(held.to_string(), "GitSource team-a/platform");
        // Same name, another namespace's source.
        let elsewhere = labels(&[
            (MANAGED_BY_LABEL, MANAGED_BY),
            (SOURCE_NAME_LABEL, "agents"),
            (SOURCE_NAMESPACE_LABEL, "team-b"),
        ]);
        assert!(matches!(SRC.holder(&elsewhere, true), Holder::OtherSource { .. }));
        assert!(!SRC.labelled_ours(&elsewhere));
        let by_hand = labels(&[("team", "a")]);
        assert_eq!(SRC.holder(&by_hand, false), Holder::Outside);
        assert_eq!(Holder::Outside.to_string(), "created outside Paddock");
        assert_eq!(SRC.holder(&by_hand, true), Holder::This, "ours, with its labels removed by hand");
        assert!(!SRC.labelled_ours(&by_hand), "but never pruned without them");
    }

    fn k(name: &str) -> ObjectKey {
        ObjectKey::new(Kind::Agent, "ns", name)
    }

    #[test]
    fn prunes_what_left_git_and_keeps_opted_out() {
        let live = [("a", false), ("old", false), ("kept", true)]
            .into_iter()
            .map(|(n, d)| (k(n), LiveObject { prune_disabled: d }))
            .collect();
        let input = PlanInput {
            desired: vec![k("a"), k("b")],
            inventory: vec![k("a"), k("old"), k("kept"), k("gone")],
            live,
            prune: true,
            suspend: false,
        };
        let p = plan(&input);
        assert_eq!(p.apply, vec![k("a"), k("b")]);
        assert_eq!(p.prune, vec![k("old")]);
        assert_eq!(p.orphan, vec![k("kept")]);
        assert_eq!(p.inventory, vec![k("a"), k("b")]);
    }
}
