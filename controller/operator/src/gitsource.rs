//! The GitSource reconciler: fetch the revision, validate all of it, then server-side apply every object,
//! prune what left git, and report it all in status and Events — in the manner of Flux.
//!
//! A revision with any error is refused whole: nothing is applied, `lastAttemptedRevision` moves,
//! `lastAppliedRevision` stays, and the objects of the last good revision stay live.
//!
//! An object is applied over only when it is this GitSource's (its labels, or its inventory): one another
//! GitSource applied or one made outside Paddock is left alone and reported (`OwnershipConflict`) unless the
//! live object carries `paddock.dev/adopt: <this GitSource's name>`. Pruning deletes only what carries this GitSource's labels.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer;
use kube::{Resource, ResourceExt};
use paddock_api::crds::Kind;
use paddock_api::gitsource::{InventoryEntry, SourceError};
use paddock_api::{API_VERSION, Agent, GitSource, GitSourceStatus, Policy};
use paddock_gitops::fetch::{Credentials, FetchRequest, fetch};
use paddock_gitops::plan::{
    ADOPT_ANNOTATION, DesiredObject, Holder, LiveObject, ObjectKey, PRUNE_ANNOTATION, PRUNE_DISABLED, PlanInput,
    REQUESTED_AT_ANNOTATION, REVISION_ANNOTATION, Rendered, SourceRef, plan, render_revision,
};
use paddock_gitops::{Diagnostic, semantics::parse_duration_secs};
use serde_json::json;
use tracing::{info, warn};

use crate::conditions::{Want, merge};
use crate::context::{Context, reconcile_finalized, with_jitter};
use crate::{Error, FIELD_MANAGER, FINALIZER};

/// Errors listed in status before the rest are counted; keeps the object far below etcd's size limit.
pub const MAX_STATUS_ERRORS: usize = 50;

/// Reconciles one GitSource. Adds the finalizer first, so that a deleted GitSource prunes what it applied.
pub async fn reconcile(gs: Arc<GitSource>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = format!("{}/{}", gs.namespace().unwrap_or_default(), gs.name_any());
    reconcile_finalized(&ctx, "gitsource", FINALIZER, &key, gs, |event| async {
        match event {
            finalizer::Event::Apply(gs) => sync(&gs, &ctx).await,
            finalizer::Event::Cleanup(gs) => cleanup(&gs, &ctx).await,
        }
    })
    .await
}

/// Exponential backoff per GitSource; the error itself is already in its status and Events.
pub fn error_policy(gs: Arc<GitSource>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", gs.namespace().unwrap_or_default(), gs.name_any());
    let delay = ctx.backoff.failed(&key);
    warn!(gitsource = %key, error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The sync interval of a GitSource: `spec.interval` within 10 s and 720 h, 5 min if it does not parse.
pub fn interval_of(gs: &GitSource) -> Duration {
    let secs = parse_duration_secs(&gs.spec.interval).unwrap_or(300.0);
    Duration::from_secs_f64(secs.clamp(10.0, 720.0 * 3600.0))
}

async fn sync(gs: &GitSource, ctx: &Context) -> Result<Action, Error> {
    if gs.spec.suspend {
        // Flux semantics: a suspended source is left exactly as it is, status included.
        info!(gitsource = %gs.name_any(), "suspended; not syncing");
        return Ok(Action::await_change());
    }
    let ns = gs.namespace().unwrap_or_default();
    let name = gs.name_any();
    let interval = interval_of(gs);
    let key = format!("{ns}/{name}");
    let fingerprint = fingerprint(gs);
    // The controller also wakes for our own status writes and for re-lists; those need no new sync.
    if let Some(wait) = ctx.syncs.wait(&key, fingerprint, interval) {
        return Ok(Action::requeue(wait));
    }
    if !ctx.local_git_sources && !network_url(&gs.spec.url) {
        refuse_url(gs, ctx).await?;
        // Only an edit of spec.url can fix it; that wakes the controller.
        return Ok(Action::await_change());
    }
    let credentials = match credentials(gs, ctx).await {
        Ok(c) => c,
        Err(e) => {
            fail(gs, ctx, "AuthenticationFailed", &e.to_string(), None, Vec::new(), None).await?;
            return Err(e);
        }
    };
    let cache = ctx.cache_dir.join(&ns).join(&name);
    let spec = gs.spec.clone();
    let fetched = tokio::task::spawn_blocking(move || {
        fetch(
            &cache,
            &FetchRequest { url: &spec.url, git_ref: &spec.git_ref, path: &spec.path, credentials: &credentials },
        )
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?;
    let fetched = match fetched {
        Ok(f) => f,
        Err(e) => {
            let e = Error::from(e);
            fail(gs, ctx, "GitOperationFailed", &e.to_string(), None, Vec::new(), None).await?;
            return Err(e);
        }
    };
    let source = SourceRef { name: &name, namespace: &ns };
    match render_revision(&fetched.files, fetched.truncated, source, &fetched.revision) {
        Rendered::Invalid { errors, .. } => {
            refuse(gs, ctx, &fetched.revision, &errors).await?;
            ctx.syncs.done(&key, fingerprint);
            // Only a new commit can fix it: look again on the interval, without backing off.
            Ok(Action::requeue(with_jitter(interval, 0.1)))
        }
        Rendered::Ok { objects, .. } => {
            apply(gs, ctx, &fetched.revision, &objects).await?;
            ctx.syncs.done(&key, fingerprint);
            Ok(Action::requeue(with_jitter(interval, 0.1)))
        }
    }
}

/// Whether the cluster controller may fetch `url`: a network URL (`https://`, `http://`, `ssh://`,
/// `git://`, `git+ssh://`, scp-like `git@host:org/repo`). `file://` URLs and paths would read the controller's
/// own disk, where the caches of every namespace's GitSources are (fetched with their credentials); local
/// mode (`paddock up`) reads its repositories itself and keeps them.
pub fn network_url(url: &str) -> bool {
    if let Some((scheme, rest)) = url.split_once("://") {
        let host = rest.split(['/', ':']).next().unwrap_or_default();
        return matches!(scheme, "https" | "http" | "ssh" | "git" | "git+ssh" | "ssh+git") && !host.is_empty();
    }
    // scp-like: `user@host:path`, no slash before the colon (else it is a path).
    match url.split_once(':') {
        Some((user_host, path)) => match user_host.split_once('@') {
            Some((user, host)) => !user.is_empty() && !host.is_empty() && !user_host.contains('/') && !path.is_empty(),
            None => false,
        },
        None => false,
    }
}

/// Refuses a GitSource whose URL is not a network URL: nothing is fetched, applied or pruned; what it applied
/// before stays live. Ready=False and Stalled=True name the field; one Event.
async fn refuse_url(gs: &GitSource, ctx: &Context) -> Result<(), Error> {
    let old = gs.status.clone().unwrap_or_default();
    let message = format!(
        "spec.url: `{}` is not a network URL; the cluster controller fetches only https://, http://, ssh://, \
         git:// and git@host:path repositories (file:// URLs and paths would read the controller's own disk; \
         they work in local mode, `paddock up`). {}",
        gs.spec.url,
        match &old.last_applied_revision {
            Some(r) => format!("Revision {r} stays applied."),
            None => "Nothing was applied.".into(),
        }
    );
    let status = GitSourceStatus {
        conditions: merge(
            &old.conditions,
            vec![Want::not_ready("UnsupportedURL", message.clone()), Want::stalled("UnsupportedURL", message.clone())],
            gs.metadata.generation,
        ),
        last_handled_requested_at: requested_at(gs).or(old.last_handled_requested_at.clone()),
        observed_generation: gs.metadata.generation,
        ..old.clone()
    };
    if write_status(gs, ctx, status).await? {
        warn!(gitsource = %gs.name_any(), url = %gs.spec.url, "not a network URL; refused");
        publish(gs, ctx, EventType::Warning, "UnsupportedURL", "Fetch", message).await;
    }
    Ok(())
}

/// Reads the GitSource's Secret: `token` (or `password`) and optional `username` for HTTPS; `identity`,
/// `known_hosts` and optional `password` (the key's passphrase) for SSH — Flux's key names.
async fn credentials(gs: &GitSource, ctx: &Context) -> Result<Credentials, Error> {
    let Some(r) = &gs.spec.secret_ref else { return Ok(Credentials::None) };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &gs.namespace().unwrap_or_default());
    let secret = api.get(&r.name).await.map_err(|e| Error::Credentials(format!("Secret `{}`: {e}", r.name)))?;
    let data = secret.data.unwrap_or_default();
    let get = |k: &str| data.get(k).map(|b| String::from_utf8_lossy(&b.0).into_owned());
    if let Some(identity) = get("identity") {
        let known_hosts = get("known_hosts").ok_or_else(|| {
            Error::Credentials(format!(
                "Secret `{}` has `identity` but no `known_hosts`; the server's host key must be pinned",
                r.name
            ))
        })?;
        return Ok(Credentials::Ssh { identity, passphrase: get("password"), known_hosts });
    }
    match get("token").or_else(|| get("password")) {
        Some(token) => Ok(Credentials::Token { username: get("username"), token: token.trim().to_owned() }),
        None => Err(Error::Credentials(format!(
            "Secret `{}` has neither `token` (HTTPS) nor `identity` and `known_hosts` (SSH)",
            r.name
        ))),
    }
}

fn api_resource(kind: Kind) -> ApiResource {
    match kind {
        Kind::Policy => ApiResource::erase::<Policy>(&()),
        _ => ApiResource::erase::<Agent>(&()),
    }
}

fn dyn_api(ctx: &Context, kind: Kind, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.client.clone(), ns, &api_resource(kind))
}

/// What a sync needs to know of a live Agent or Policy.
#[derive(Clone, Debug)]
struct Live {
    resource_version: Option<String>,
    revision: Option<String>,
    prune_disabled: bool,
    /// Its labels: whose it is (`SourceRef::holder`).
    labels: BTreeMap<String, String>,
    /// The value of its `paddock.dev/adopt`: the GitSource it is handed to.
    adopt: Option<String>,
}

/// Lists (metadata only) the Agents and Policies of the source's namespace: all of them (a sync must see
/// what another GitSource or a person holds before applying over it), or with `only_ours` just those that
/// carry this source's labels.
async fn list_live(ctx: &Context, source: SourceRef<'_>, only_ours: bool) -> Result<BTreeMap<ObjectKey, Live>, Error> {
    let lp = if only_ours { ListParams::default().labels(&source.label_selector()) } else { ListParams::default() };
    let mut out = BTreeMap::new();
    for kind in paddock_gitops::plan::APPLIED_KINDS {
        for item in dyn_api(ctx, kind, source.namespace).list_metadata(&lp).await? {
            let annotations = item.annotations();
            out.insert(
                ObjectKey::new(kind, source.namespace, item.name_any()),
                Live {
                    resource_version: item.resource_version(),
                    revision: annotations.get(REVISION_ANNOTATION).cloned(),
                    prune_disabled: annotations.get(PRUNE_ANNOTATION).is_some_and(|v| v == PRUNE_DISABLED),
                    adopt: annotations.get(ADOPT_ANNOTATION).cloned(),
                    labels: item.labels().clone(),
                },
            );
        }
    }
    Ok(out)
}

/// Deletes only the object as it was listed: between the list and the delete another GitSource may have
/// adopted it (or a person relabelled it), and then it is no longer ours to prune.
fn unchanged_since(live: &BTreeMap<ObjectKey, Live>, key: &ObjectKey) -> DeleteParams {
    DeleteParams {
        preconditions: live
            .get(key)
            .and_then(|l| l.resource_version.clone())
            .map(|rv| kube::api::Preconditions { resource_version: Some(rv), uid: None }),
        ..DeleteParams::background()
    }
}

/// What pruning may consider: only live objects that carry this source's labels, never one that another
/// GitSource or a person holds (whatever our inventory says).
fn prunable(live: &BTreeMap<ObjectKey, Live>, source: SourceRef<'_>) -> BTreeMap<ObjectKey, LiveObject> {
    live.iter()
        .filter(|(_, l)| source.labelled_ours(&l.labels))
        .map(|(k, l)| (k.clone(), LiveObject { prune_disabled: l.prune_disabled }))
        .collect()
}

fn inventory_keys(gs: &GitSource) -> Vec<ObjectKey> {
    gs.status
        .iter()
        .flat_map(|s| &s.inventory)
        .filter_map(|e| {
            Kind::parse(&e.kind)
                .filter(|k| paddock_gitops::plan::APPLIED_KINDS.contains(k))
                .map(|k| ObjectKey::new(k, e.namespace.clone(), e.name.clone()))
        })
        .collect()
}

fn to_inventory(keys: impl IntoIterator<Item = ObjectKey>) -> Vec<InventoryEntry> {
    let set: BTreeSet<ObjectKey> = keys.into_iter().collect();
    set.into_iter()
        .map(|k| InventoryEntry { kind: k.kind.as_str().to_owned(), name: k.name, namespace: k.namespace })
        .collect()
}

/// What a sync did, for Events and metrics.
#[derive(Debug, Default)]
struct Changes {
    created: Vec<ObjectKey>,
    configured: Vec<ObjectKey>,
    drift_corrected: Vec<ObjectKey>,
    unchanged: usize,
    pruned: Vec<ObjectKey>,
    orphaned: Vec<ObjectKey>,
    /// Taken over thanks to `paddock.dev/adopt: <this GitSource>`, with who held them before.
    adopted: Vec<(ObjectKey, Holder)>,
    /// Not applied: held by another GitSource or made outside Paddock, without the adopt annotation.
    conflicts: Vec<Conflict>,
}

/// An object of the revision that exists and is not this GitSource's to apply.
#[derive(Debug)]
struct Conflict {
    key: ObjectKey,
    file: String,
    holder: Holder,
    /// The GitSource that would take it: the value that hands it over.
    to: String,
}

impl Conflict {
    fn error(&self) -> SourceError {
        SourceError {
            file: self.file.clone(),
            line: 0,
            column: 0,
            message: format!(
                "{} was not applied: it exists and is {}; to hand it to this GitSource annotate the live object \
                 `{ADOPT_ANNOTATION}: {}`, or remove it from git",
                self.key,
                held_by(&self.holder),
                self.to
            ),
        }
    }
}

/// `held by GitSource ns/name` or `created outside Paddock`.
fn held_by(holder: &Holder) -> String {
    match holder {
        Holder::OtherSource { .. } => format!("held by {holder}"),
        _ => holder.to_string(),
    }
}

async fn apply(gs: &GitSource, ctx: &Context, revision: &str, objects: &[DesiredObject]) -> Result<(), Error> {
    let ns = gs.namespace().unwrap_or_default();
    let name = gs.name_any();
    let source = SourceRef { name: &name, namespace: &ns };
    let live = list_live(ctx, source, false).await?;
    let inventory = inventory_keys(gs);
    let in_inventory: BTreeSet<&ObjectKey> = inventory.iter().collect();
    let input = PlanInput {
        desired: objects.iter().map(|o| o.key.clone()).collect(),
        inventory: inventory.clone(),
        live: prunable(&live, source),
        prune: gs.spec.prune,
        suspend: false,
    };
    let plan = plan(&input);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let mut changes = Changes::default();
    let mut applied: Vec<ObjectKey> = Vec::new();
    let mut failures: Vec<SourceError> = Vec::new();
    for obj in objects {
        let before = live.get(&obj.key);
        // A forced apply would take the object over silently: first, whose is it?
        let adopted_from =
            match before.map(|b| (source.holder(&b.labels, in_inventory.contains(&obj.key)), b.adopt.as_deref())) {
                None | Some((Holder::This, _)) => None,
                Some((holder, Some(to))) if to == gs.name_any() => Some(holder),
                Some((holder, _)) => {
                    let to = gs.name_any();
                    changes.conflicts.push(Conflict { key: obj.key.clone(), file: obj.file.clone(), holder, to });
                    continue;
                }
            };
        let api = dyn_api(ctx, obj.key.kind, &ns);
        match api.patch(&obj.key.name, &pp, &Patch::Apply(&obj.manifest)).await {
            Ok(after) => {
                match (before, adopted_from) {
                    (_, Some(holder)) => {
                        release_adoption(&api, &obj.key).await;
                        changes.adopted.push((obj.key.clone(), holder));
                    }
                    (None, None) => changes.created.push(obj.key.clone()),
                    (Some(b), None) if b.resource_version == after.resource_version() => changes.unchanged += 1,
                    // Same revision as last time, yet the server changed it: someone edited it and we put it back.
                    (Some(b), None) if b.revision.as_deref() == Some(revision) => {
                        changes.drift_corrected.push(obj.key.clone())
                    }
                    (Some(_), None) => changes.configured.push(obj.key.clone()),
                }
                applied.push(obj.key.clone());
            }
            Err(e) => failures.push(SourceError {
                file: obj.file.clone(),
                line: 0,
                column: 0,
                message: format!("{} `{}` was not applied: {}", obj.key.kind.as_str(), obj.key.name, api_message(&e)),
            }),
        }
    }
    let conflicted: BTreeSet<&ObjectKey> = changes.conflicts.iter().map(|c| &c.key).collect();
    if !conflicted.is_empty() {
        warn!(gitsource = %gs.name_any(), %revision, objects = conflicted.len(), "objects held elsewhere not applied");
        publish(
            gs,
            ctx,
            EventType::Warning,
            "OwnershipConflict",
            "Apply",
            conflict_message(revision, &changes.conflicts),
        )
        .await;
    }
    if !failures.is_empty() {
        // Nothing is pruned after a failed apply; what did apply joins the inventory so it stays managed.
        let inventory =
            to_inventory(inventory.iter().filter(|k| !conflicted.contains(k)).cloned().chain(applied.iter().cloned()));
        let message = format!(
            "revision {revision}: {} of {} objects failed to apply; first: {}",
            failures.len(),
            objects.len(),
            failures[0].message
        );
        failures.extend(changes.conflicts.iter().map(Conflict::error));
        failures.truncate(MAX_STATUS_ERRORS);
        fail(gs, ctx, "ApplyFailed", &message, Some(revision), failures, Some(inventory)).await?;
        return Err(Error::Apply(message));
    }
    let mut kept_in_inventory: Vec<ObjectKey> = Vec::new();
    let mut changed_since: Vec<ObjectKey> = Vec::new();
    let mut prune_failures: Vec<String> = Vec::new();
    for key in &plan.prune {
        match dyn_api(ctx, key.kind, &key.namespace).delete(&key.name, &unchanged_since(&live, key)).await {
            Ok(_) => changes.pruned.push(key.clone()),
            Err(kube::Error::Api(s)) if s.code == 404 => changes.pruned.push(key.clone()),
            // Changed since it was listed (adopted elsewhere, relabelled): kept, and judged again next sync.
            Err(kube::Error::Api(s)) if s.code == 409 => changed_since.push(key.clone()),
            Err(e) => {
                prune_failures.push(format!("{key}: {}", api_message(&e)));
                kept_in_inventory.push(key.clone());
            }
        }
    }
    changes.orphaned = plan.orphan.clone();
    record(ctx, &changes);
    publish_changes(gs, ctx, revision, &changes).await;
    // What another GitSource or a person holds is not ours to list (nor ever to prune).
    let managed: Vec<ObjectKey> =
        plan.inventory.into_iter().filter(|k| !conflicted.contains(k)).chain(changed_since).collect();
    if !prune_failures.is_empty() {
        let message = format!("revision {revision}: could not prune {}", prune_failures.join("; "));
        let inventory = to_inventory(managed.into_iter().chain(kept_in_inventory));
        let errors = changes.conflicts.iter().take(MAX_STATUS_ERRORS).map(Conflict::error).collect();
        fail(gs, ctx, "PruneFailed", &message, Some(revision), errors, Some(inventory)).await?;
        return Err(Error::Apply(message));
    }
    let old = gs.status.clone().unwrap_or_default();
    let status = if changes.conflicts.is_empty() {
        let summary = format!("Applied revision {revision}: {} objects", objects.len());
        GitSourceStatus {
            conditions: merge(
                &old.conditions,
                vec![Want::ready("ReconciliationSucceeded", summary)],
                gs.metadata.generation,
            ),
            last_applied_revision: Some(revision.to_owned()),
            last_attempted_revision: Some(revision.to_owned()),
            inventory: to_inventory(managed),
            errors: Vec::new(),
            last_handled_requested_at: requested_at(gs).or(old.last_handled_requested_at.clone()),
            observed_generation: gs.metadata.generation,
        }
    } else {
        // The rest of the revision is applied, yet not all of it: `lastAppliedRevision` stays. Not an error
        // to retry with backoff: only the holder (the annotation) or git can settle it; the interval, or
        // `paddock.dev/requestedAt`, looks again.
        GitSourceStatus {
            conditions: merge(
                &old.conditions,
                vec![Want::not_ready("OwnershipConflict", conflict_message(revision, &changes.conflicts))],
                gs.metadata.generation,
            ),
            last_attempted_revision: Some(revision.to_owned()),
            inventory: to_inventory(managed),
            errors: changes.conflicts.iter().take(MAX_STATUS_ERRORS).map(Conflict::error).collect(),
            last_handled_requested_at: requested_at(gs).or(old.last_handled_requested_at.clone()),
            observed_generation: gs.metadata.generation,
            ..old.clone()
        }
    };
    write_status(gs, ctx, status).await?;
    Ok(())
}

/// `revision r: 2 objects not applied, held elsewhere: Agent/team-a/coder (held by GitSource team-a/platform),
/// Policy/team-a/base (created outside Paddock); …`.
fn conflict_message(revision: &str, conflicts: &[Conflict]) -> String {
    const SHOWN: usize = 10;
    let mut named: Vec<String> =
        conflicts.iter().take(SHOWN).map(|c| format!("{} ({})", c.key, held_by(&c.holder))).collect();
    if conflicts.len() > SHOWN {
        named.push(format!("and {} more", conflicts.len() - SHOWN));
    }
    format!(
        "revision {revision}: {} object{} not applied, held elsewhere: {}; the rest of the revision is applied. \
         To hand an object to this GitSource annotate it `{ADOPT_ANNOTATION}: {}`, or remove it from git",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" },
        named.join(", "),
        conflicts.first().map_or("", |c| c.to.as_str())
    )
}

/// Removes the adopt annotation from an object just adopted: it is ours now, and left in place it would let
/// another GitSource whose revision holds the object take it back at its next sync, and so on in turns.
/// Best effort: the object is adopted either way.
async fn release_adoption(api: &Api<DynamicObject>, key: &ObjectKey) {
    let body = json!({"metadata": {"annotations": {ADOPT_ANNOTATION: null}}});
    let pp = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
    if let Err(e) = api.patch(&key.name, &pp, &Patch::Merge(&body)).await {
        warn!(object = %key, error = %e, "adopted, but could not remove the adopt annotation");
    }
}

fn record(ctx: &Context, c: &Changes) {
    let m = &ctx.metrics;
    m.objects("created", c.created.len() as u64);
    m.objects("configured", c.configured.len() as u64);
    m.objects("drift_corrected", c.drift_corrected.len() as u64);
    m.objects("unchanged", c.unchanged as u64);
    m.objects("pruned", c.pruned.len() as u64);
    m.objects("adopted", c.adopted.len() as u64);
    m.objects("conflict", c.conflicts.len() as u64);
}

/// One Event per kind of change, listing the objects (Events notes are capped at 1 kB).
async fn publish_changes(gs: &GitSource, ctx: &Context, revision: &str, c: &Changes) {
    let mut applied = Vec::new();
    for (verb, keys) in
        [("created", &c.created), ("configured", &c.configured), ("corrected drift on", &c.drift_corrected)]
    {
        if !keys.is_empty() {
            applied.push(format!("{verb} {}", list(keys)));
        }
    }
    if !applied.is_empty() {
        let note = format!("Applied revision {revision}: {}", applied.join("; "));
        publish(gs, ctx, EventType::Normal, "Applied", "Apply", note).await;
    }
    if !c.adopted.is_empty() {
        let named: Vec<String> = c.adopted.iter().map(|(k, h)| format!("{k} (was {})", held_by(h))).collect();
        let note = format!(
            "Adopted {} from revision {revision}: the live objects carried `{ADOPT_ANNOTATION}: {}`",
            named.join(", "),
            gs.name_any()
        );
        publish(gs, ctx, EventType::Normal, "Adopted", "Apply", note).await;
    }
    if !c.pruned.is_empty() {
        let note = format!("Pruned {} (no longer in revision {revision})", list(&c.pruned));
        publish(gs, ctx, EventType::Normal, "Pruned", "Prune", note).await;
    }
    if !c.orphaned.is_empty() {
        let why = if gs.spec.prune {
            format!("they carry `{PRUNE_ANNOTATION}: {PRUNE_DISABLED}`")
        } else {
            "spec.prune is false".into()
        };
        let note = format!("Left {} in place although it left git: {why}; it is no longer managed", list(&c.orphaned));
        publish(gs, ctx, EventType::Normal, "PruneSkipped", "Prune", note).await;
    }
}

/// `Agent/a, Policy/b and 12 more`.
fn list(keys: &[ObjectKey]) -> String {
    const SHOWN: usize = 10;
    let mut s =
        keys.iter().take(SHOWN).map(|k| format!("{}/{}", k.kind.as_str(), k.name)).collect::<Vec<_>>().join(", ");
    if keys.len() > SHOWN {
        s.push_str(&format!(" and {} more", keys.len() - SHOWN));
    }
    s
}

/// Events are best effort: a failure to record one is logged, never fails the reconcile.
async fn publish(gs: &GitSource, ctx: &Context, type_: EventType, reason: &str, action: &str, note: String) {
    let note = if note.len() > 1000 {
        let mut end = 990;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &note[..end])
    } else {
        note
    };
    let ev = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&ev, &gs.object_ref(&())).await {
        warn!(gitsource = %gs.name_any(), error = %e, "could not record an Event");
    }
}

fn requested_at(gs: &GitSource) -> Option<String> {
    gs.annotations().get(REQUESTED_AT_ANNOTATION).cloned()
}

/// The message of an API error without the `ApiError: … (ErrorResponse {…})` wrapping.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn to_source_error(d: &Diagnostic) -> SourceError {
    let message = match &d.field {
        Some(f) => format!("{f}: {}", d.message),
        None => d.message.clone(),
    };
    SourceError { file: d.file.clone(), line: d.pos.line, column: d.pos.column, message }
}

/// Refuses a revision that did not validate: nothing applied, the last good revision stays live.
async fn refuse(gs: &GitSource, ctx: &Context, revision: &str, errors: &[Diagnostic]) -> Result<(), Error> {
    let old = gs.status.clone().unwrap_or_default();
    let mut listed: Vec<SourceError> = errors.iter().take(MAX_STATUS_ERRORS).map(to_source_error).collect();
    if errors.len() > MAX_STATUS_ERRORS {
        listed.push(SourceError {
            file: ".".into(),
            line: 0,
            column: 0,
            message: format!(
                "{} more errors not listed; run `paddock validate` on the revision",
                errors.len() - MAX_STATUS_ERRORS
            ),
        });
    }
    let first = &errors[0];
    let live = match &old.last_applied_revision {
        Some(r) => format!("revision {r} stays applied"),
        None => "nothing was applied".into(),
    };
    let message = format!(
        "revision {revision} refused with {} error{}; {live}. First: {first}",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    let status = GitSourceStatus {
        conditions: merge(
            &old.conditions,
            vec![
                Want::not_ready("ValidationFailed", message.clone()),
                Want::stalled("ValidationFailed", message.clone()),
            ],
            gs.metadata.generation,
        ),
        last_attempted_revision: Some(revision.to_owned()),
        errors: listed,
        last_handled_requested_at: requested_at(gs).or(old.last_handled_requested_at.clone()),
        observed_generation: gs.metadata.generation,
        ..old.clone()
    };
    if write_status(gs, ctx, status).await? {
        ctx.metrics.refused_revisions.inc();
        warn!(gitsource = %gs.name_any(), %revision, errors = errors.len(), "revision refused");
        publish(gs, ctx, EventType::Warning, "ValidationFailed", "Validate", message).await;
    }
    Ok(())
}

/// Records a failure that a retry may fix (network, credentials, API errors): Ready=False, Reconciling=True.
async fn fail(
    gs: &GitSource,
    ctx: &Context,
    reason: &str,
    message: &str,
    attempted: Option<&str>,
    errors: Vec<SourceError>,
    inventory: Option<Vec<InventoryEntry>>,
) -> Result<(), Error> {
    let old = gs.status.clone().unwrap_or_default();
    let status = GitSourceStatus {
        conditions: merge(
            &old.conditions,
            vec![
                Want::not_ready(reason, message),
                Want::reconciling("ProgressingWithRetry", format!("retrying: {message}")),
            ],
            gs.metadata.generation,
        ),
        last_attempted_revision: attempted.map(str::to_owned).or(old.last_attempted_revision.clone()),
        errors: if attempted.is_some() { errors } else { old.errors.clone() },
        inventory: inventory.unwrap_or_else(|| old.inventory.clone()),
        last_handled_requested_at: requested_at(gs).or(old.last_handled_requested_at.clone()),
        observed_generation: gs.metadata.generation,
        ..old.clone()
    };
    write_status(gs, ctx, status).await?;
    publish(gs, ctx, EventType::Warning, reason, "Reconcile", message.to_owned()).await;
    Ok(())
}

/// Writes status by server-side apply, only when it changed (an unchanged object causes no write, so no
/// watch event and no reconcile loop).
async fn write_status(gs: &GitSource, ctx: &Context, status: GitSourceStatus) -> Result<bool, Error> {
    if gs.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let api: Api<GitSource> = Api::namespaced(ctx.client.clone(), &gs.namespace().unwrap_or_default());
    let body = json!({"apiVersion": API_VERSION, "kind": "GitSource", "status": status});
    api.patch_status(&gs.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(true)
}

/// The GitSource is being deleted: prune what it applied (unless pruning is off or it is suspended) and
/// drop its git cache.
async fn cleanup(gs: &GitSource, ctx: &Context) -> Result<Action, Error> {
    let ns = gs.namespace().unwrap_or_default();
    let name = gs.name_any();
    if gs.spec.prune && !gs.spec.suspend {
        let source = SourceRef { name: &name, namespace: &ns };
        let live = list_live(ctx, source, true).await?;
        let input = PlanInput {
            desired: Vec::new(),
            inventory: inventory_keys(gs),
            live: prunable(&live, source),
            prune: true,
            suspend: false,
        };
        let p = plan(&input);
        let mut pruned = Vec::new();
        for key in &p.prune {
            match dyn_api(ctx, key.kind, &key.namespace).delete(&key.name, &unchanged_since(&live, key)).await {
                Ok(_) => pruned.push(key.clone()),
                Err(kube::Error::Api(s)) if s.code == 404 => pruned.push(key.clone()),
                // Taken by someone else since it was listed: not ours to delete any more.
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        ctx.metrics.objects("pruned", pruned.len() as u64);
        if !pruned.is_empty() {
            let note = format!("Pruned {} as the GitSource was deleted", list(&pruned));
            publish(gs, ctx, EventType::Normal, "Pruned", "Prune", note).await;
        }
    }
    ctx.syncs.forget(&format!("{ns}/{name}"));
    let cache = ctx.cache_dir.join(&ns).join(&name);
    if let Err(e) = tokio::fs::remove_dir_all(&cache).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(path = %cache.display(), error = %e, "could not remove the git cache");
    }
    Ok(Action::await_change())
}

/// What a user changes that calls for a sync before the interval is up: the spec (generation) and the
/// `paddock.dev/requestedAt` annotation. Our own status writes change neither.
pub fn fingerprint(gs: &GitSource) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    gs.metadata.generation.hash(&mut h);
    requested_at(gs).hash(&mut h);
    h.finish()
}
