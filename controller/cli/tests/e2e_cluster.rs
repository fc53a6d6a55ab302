//! The e2e tier against a real Kubernetes API server (kube-apiserver with kube-controller-manager; no
//! kubelet needed): the chart's objects are installed from `helm template`, a real `paddock controller`
//! runs under the chart's controller ServiceAccount (a TokenRequest token, so RBAC is the chart's), a real
//! `paddock gateway` with a scripted model runs beside it, and users are ServiceAccounts bound to the chart's
//! `session-user` and `approver` ClusterRoles, so its ValidatingAdmissionPolicies judge them.
//!
//! Runs whenever `PADDOCK_E2E_KUBECONFIG` names an admin kubeconfig; says plainly that it skipped otherwise.
//! The Session and Approval suites also need `PADDOCK_E2E_NO_KUBELET=1`: they play the kubelet's part for
//! runner pods (docs/kubernetes-e2e.md says why and how to run the tier).

mod cluster;
mod standins;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::kubelet;
use cluster::{ControllerRun, condition, controller, fresh_namespace, gateway, get_json, ready, stack, user, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use paddock_api::{Agent, Approval, GitSource, Policy, Session};
use serde_json::{Value, json};
use standins::http::{Request, Response, Server};

const SCRIPT: &str = "scripts:\n  - name: e2e\n    turns:\n      - text: \"The workspace is ready; nothing to change.\"\n        usage: {input_tokens: 120, output_tokens: 12}\n";

fn agent(name: &str, tools: &[&str], runtime_class: Option<&str>) -> Value {
    let mut spec = json!({"harness": "custom", "model": "claude-sonnet-4-5", "tools": tools,
                          "limits": {"maxTurns": 5, "timeoutSeconds": 120}});
    if let Some(rc) = runtime_class {
        spec["sandbox"] = json!({"runtimeClassName": rc});
    }
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "Agent", "metadata": {"name": name}, "spec": spec})
}

async fn apply_as_admin<K>(api: &Api<K>, v: &Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = v["metadata"]["name"].as_str().unwrap();
    api.patch(name, &PatchParams::apply("paddock-e2e").force(), &Patch::Apply(v)).await.unwrap();
}

async fn wait_ready<K>(api: &Api<K>, name: &str, what: &str) -> Value
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    wait_for(Duration::from_secs(60), what, || async {
        let o = get_json(api, name).await?;
        (ready(&o)?.0 == "True").then_some(o)
    })
    .await
}

/// The Events recorded about `name` in `ns`, as `reason: note`.
async fn events_about(admin: &Client, ns: &str, name: &str) -> Vec<String> {
    let events: Api<CoreEvent> = Api::namespaced(admin.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| format!("{}: {}", e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// GitSource

/// A smart-HTTP git remote on 127.0.0.1: the real `git http-backend` over a bare repository.
struct Remote {
    server: Option<Server>,
    bare: std::path::PathBuf,
    work: std::path::PathBuf,
}

impl Remote {
    fn start(dir: &std::path::Path) -> Remote {
        let root = dir.join("remote");
        let bare = root.join("agents.git");
        std::fs::create_dir_all(&bare).unwrap();
        standins::github::git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        let work = dir.join("agents-work");
        std::fs::create_dir_all(&work).unwrap();
        standins::github::git(&work, &["init", "-q", "-b", "main"]);
        let repos = root.clone();
        let handler = Arc::new(move |req: &Request| match req.path.starts_with("/agents.git/") {
            true => standins::github::git_http_backend(&repos, req),
            false => Response::new(404, "text/plain", "no such repository\n"),
        });
        Remote { server: Some(Server::start(None, handler)), bare, work }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/agents.git", self.server.as_ref().unwrap().port)
    }

    /// Commits the work tree as it is after `files` (a `None` content removes the file) and pushes; the
    /// commit's id.
    fn commit(&self, files: &[(&str, Option<&str>)], message: &str) -> String {
        for (path, content) in files {
            let p = self.work.join(path);
            match content {
                Some(c) => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, c).unwrap();
                }
                None => std::fs::remove_file(&p).unwrap(),
            }
        }
        standins::github::git(&self.work, &["add", "-A"]);
        standins::github::git(&self.work, &["commit", "-q", "-m", message]);
        standins::github::git(&self.work, &["push", "-q", self.bare.to_str().unwrap(), "main"]);
        standins::github::git(&self.work, &["rev-parse", "HEAD"]).trim().to_owned()
    }
}

impl Drop for Remote {
    /// The server owns a runtime, which may not be dropped inside the test's: it goes on a thread of its own.
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = std::thread::spawn(move || drop(server)).join();
        }
    }
}

const CODER: &str = "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: coder\nspec:\n  harness: claude-code\n  model: claude-sonnet-4-5\n  policies: [baseline]\n";
const OLD: &str =
    "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: old\nspec:\n  harness: codex\n  model: gpt-5\n";
const BROKEN_CODER: &str = "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: coder\nspec:\n  harness: claude-code\n  model: claude-sonet-4-5\n";
const BASELINE: &str = "apiVersion: paddock.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: baseline\nspec:\n  rules:\n    - name: no-wipe\n      use: tool_denylist\n      with: {tools: [wipe_disk]}\n";

/// Asks the controller to sync now, as `paddock sync` does.
async fn request_sync(sources: &Api<GitSource>, name: &str) {
    let at = format!("{:?}", Instant::now());
    let patch = json!({"metadata": {"annotations": {paddock_gitops::plan::REQUESTED_AT_ANNOTATION: at}}});
    sources.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

#[tokio::test]
async fn gitsource_applies_refuses_and_prunes_under_the_controllers_own_account() {
    let Some(path) = cluster::kubeconfig("gitsource") else { return };
    let st = stack(path).await;
    let ns = "paddock-e2e-gitsource";
    fresh_namespace(&st.admin, ns).await;
    let remote = Remote::start(st.dir.path());
    let first = remote.commit(
        &[
            ("agents/coder.yaml", Some(CODER)),
            ("agents/old.yaml", Some(OLD)),
            ("policies/baseline.yaml", Some(BASELINE)),
        ],
        "first",
    );
    let _ctl = controller(ControllerRun {
        objects: &st.objects,
        kubeconfig: &st.controller_kubeconfig,
        dir: st.dir.path(),
        gateway: None,
        watch_ns: ns,
        lease_name: "paddock-e2e-gitsource",
        identity: "controller-gitsource",
    })
    .await;
    let sources: Api<GitSource> = Api::namespaced(st.admin.clone(), ns);
    apply_as_admin(
        &sources,
        &json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "GitSource", "metadata": {"name": "agents"},
                "spec": {"url": remote.url(), "interval": "1m"}}),
    )
    .await;
    let gs = wait_for(Duration::from_secs(60), "the GitSource to apply the first commit", || async {
        let o = get_json(&sources, "agents").await?;
        (o["status"]["lastAppliedRevision"].as_str()?.contains(&first)).then_some(o)
    })
    .await;
    assert_eq!(ready(&gs).unwrap().0, "True", "{gs}");
    println!("e2e gitsource: applied {first} as the controller's ServiceAccount");
    let agents: Api<Agent> = Api::namespaced(st.admin.clone(), ns);
    let policies: Api<Policy> = Api::namespaced(st.admin.clone(), ns);
    assert!(agents.get_opt("coder").await.unwrap().is_some() && agents.get_opt("old").await.unwrap().is_some());
    assert!(policies.get_opt("baseline").await.unwrap().is_some());
    wait_ready(&agents, "coder", "Agent coder Ready (its Policy is there)").await;

    // A broken revision is refused with its file and line; the good one stays.
    let broken = remote.commit(&[("agents/coder.yaml", Some(BROKEN_CODER))], "typo");
    request_sync(&sources, "agents").await;
    let gs = wait_for(Duration::from_secs(60), "the broken revision to be refused", || async {
        let o = get_json(&sources, "agents").await?;
        let (status, _, message) = ready(&o)?;
        (status == "False" && message.contains(&broken[..12])).then_some(o)
    })
    .await;
    let (_, reason, message) = ready(&gs).unwrap();
    println!("e2e gitsource: refused {broken}: {reason}: {message}");
    assert!(message.contains("agents/coder.yaml:"), "the error names the file and line: {message}");
    assert!(gs["status"]["lastAppliedRevision"].as_str().unwrap().contains(&first), "{gs}");
    let coder = agents.get("coder").await.unwrap();
    assert_eq!(coder.spec.model, "claude-sonnet-4-5", "the last good revision stays live");

    // A fixed revision without `old.yaml` prunes what it no longer holds.
    let third = remote.commit(&[("agents/coder.yaml", Some(CODER)), ("agents/old.yaml", None)], "fix, drop old");
    request_sync(&sources, "agents").await;
    wait_for(Duration::from_secs(60), "the third revision applied and `old` pruned", || async {
        let o = get_json(&sources, "agents").await?;
        let applied = o["status"]["lastAppliedRevision"].as_str()?.contains(&third);
        (applied && agents.get_opt("old").await.unwrap().is_none()).then_some(())
    })
    .await;
    println!("e2e gitsource: applied {third}; Agent `old` pruned");
    let notes = events_about(&st.admin, ns, "agents").await;
    assert!(!notes.is_empty(), "the controller records Events about the GitSource");

    // Deleting the GitSource runs its finalizer as the controller's account.
    sources.delete("agents", &DeleteParams::default()).await.unwrap();
    wait_for(Duration::from_secs(60), "the GitSource's finalizer", || async {
        sources.get_opt("agents").await.unwrap().is_none().then_some(())
    })
    .await;
    println!("e2e gitsource: passed");
}

// ---------------------------------------------------------------------------------------------------------
// Sessions

/// Fields drop in order: the processes stop before their directory (and logs) go.
struct SessionStack {
    _ctl: cluster::Controller,
    gw: cluster::Gateway,
    st: cluster::Stack,
}

async fn session_stack(
    path: std::path::PathBuf,
    ns: &str,
    lease: &str,
    agents: &[Value],
    policies: &[Value],
    console: bool,
) -> SessionStack {
    let st = stack(path).await;
    fresh_namespace(&st.admin, ns).await;
    let gw = if console {
        // The console acts as the chart's gateway ServiceAccount: what the chart grants it is all it has.
        let kubeconfig = st.dir.path().join("gateway.kubeconfig");
        let sa =
            cluster::find(&st.objects, "ServiceAccount", "-gateway")["metadata"]["name"].as_str().unwrap().to_owned();
        cluster::service_account_kubeconfig(&st.admin, &st.admin_path, cluster::SYSTEM_NS, &sa, &kubeconfig).await;
        cluster::gateway_with(st.dir.path(), SCRIPT, Some(&kubeconfig)).await
    } else {
        gateway(st.dir.path(), SCRIPT).await
    };
    let ctl = controller(ControllerRun {
        objects: &st.objects,
        kubeconfig: &st.controller_kubeconfig,
        dir: st.dir.path(),
        gateway: Some(&gw),
        watch_ns: ns,
        lease_name: lease,
        identity: &format!("controller-{lease}"),
    })
    .await;
    let pol_api: Api<Policy> = Api::namespaced(st.admin.clone(), ns);
    for p in policies {
        apply_as_admin(&pol_api, p).await;
    }
    let agent_api: Api<Agent> = Api::namespaced(st.admin.clone(), ns);
    for a in agents {
        apply_as_admin(&agent_api, a).await;
    }
    for a in agents {
        let name = a["metadata"]["name"].as_str().unwrap();
        wait_ready(&agent_api, name, &format!("Agent {name} Ready")).await;
    }
    SessionStack { st, gw, _ctl: ctl }
}

fn session_json(name: &str, agent: &str, owner: &str, prompt: &str) -> Session {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "Session", "metadata": {"name": name},
        "spec": {"agentRef": {"name": agent}, "prompt": prompt, "owner": owner}
    }))
    .unwrap()
}

/// Waits for the Session's phase, printing each (phase, Ready) it passes through.
async fn wait_phase(sessions: &Api<Session>, name: &str, phase: &str) -> Value {
    let limit = Duration::from_secs(90);
    let start = Instant::now();
    let mut last = String::new();
    loop {
        if let Some(o) = get_json(sessions, name).await {
            let now = format!("{} {:?}", o["status"]["phase"].as_str().unwrap_or("-"), ready(&o));
            if last != now {
                println!("e2e: session {name}: {now}");
                last = now;
            }
            if o["status"]["phase"] == phase {
                return o;
            }
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for Session {name} to be {phase}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_session_starts_runs_finishes_and_goes_with_its_objects() {
    let Some(path) = cluster::kubeconfig("sessions") else { return };
    if !cluster::plays_kubelet("sessions") {
        return;
    }
    let ns = "paddock-e2e-sessions";
    let s = session_stack(
        path,
        ns,
        "paddock-e2e-sessions",
        &[agent("e2e-coder", &["list_dir"], None), agent("needs-gvisor", &["list_dir"], Some("gvisor"))],
        &[],
        false,
    )
    .await;
    let admin = &s.st.admin;
    let alice = user(admin, &s.st.admin_path, s.st.dir.path(), ns, "alice", &["session-user"]).await;
    let sessions: Api<Session> = Api::namespaced(alice.client.clone(), ns);

    // The chart's admission policy: a Session is owned by the user who creates it.
    let err = sessions
        .create(&PostParams::default(), &session_json("not-mine", "e2e-coder", "mallory@acme.example", "hi"))
        .await
        .expect_err("a Session owned by someone else is refused");
    println!("e2e sessions: someone else's Session refused: {err}");

    let prompt = "Look at the workspace. Mind \"quotes\", $(rm -rf /) and\na second line.";
    sessions.create(&PostParams::default(), &session_json("look", "e2e-coder", &alice.name, prompt)).await.unwrap();
    let started = wait_for(Duration::from_secs(60), "the runner Pod", || async {
        let o = get_json(&sessions, "look").await?;
        o["status"]["podName"].as_str().is_some().then_some(o)
    })
    .await;
    let pod_name = started["status"]["podName"].as_str().unwrap().to_owned();
    // kstatus: not Ready while the pod is pending.
    let (ready_status, reason, _) = ready(&started).unwrap();
    assert_eq!((ready_status.as_str(), reason.as_str()), ("False", "Starting"), "{started}");
    assert_eq!(condition(&started, "Reconciling").map(|c| c.0).as_deref(), Some("True"), "{started}");

    // The runner pod as the controller made it.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    let pod = pods.get(&pod_name).await.unwrap();
    let pod_text = serde_json::to_string(&pod).unwrap();
    assert!(
        !pod_text.contains("rm -rf") && !pod_text.contains("Mind"),
        "the prompt is not in the pod spec: {pod_text}"
    );
    let spec = pod.spec.clone().unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    let c = &spec.containers[0];
    assert!(c.env.iter().flatten().all(|e| !e.name.contains("GITHUB")), "no credential in the runner's environment");
    let names = paddock_sandbox::ObjectNames::of("look");
    let np = Api::<NetworkPolicy>::namespaced(admin.clone(), ns).get(&names.network_policy).await.unwrap();
    let np = serde_json::to_string(&np).unwrap();
    assert!(!np.contains("0.0.0.0/0") && !np.contains("::/0"), "the runner reaches the gateway only: {np}");

    // Kubelet's part: Running; the runner calls the model through the gateway with its token.
    kubelet::set_phase(admin, ns, &pod_name, "Running").await;
    let running = wait_phase(&sessions, "look", "Running").await;
    assert_eq!(ready(&running).unwrap().0, "True", "{running}");
    let token = kubelet::runner_token(admin, ns, &names.secret).await;
    let r = kubelet::model_call(&s.gw.url, &token).await;
    assert_eq!(r.status(), 200, "the runner's model call through the gateway");
    kubelet::set_phase(admin, ns, &pod_name, "Succeeded").await;
    let done = wait_phase(&sessions, "look", "Succeeded").await;
    assert!(done["status"]["usage"]["inputTokens"].as_u64().unwrap_or(0) >= 120, "usage from the gateway: {done}");
    assert!(done["status"]["completionTime"].is_string(), "{done}");
    // Finished: the token is revoked.
    assert_eq!(kubelet::model_call(&s.gw.url, &token).await.status(), 401, "the token is revoked at the end");
    println!("e2e sessions: `look` succeeded with usage {}; its token is revoked", done["status"]["usage"]);

    // A pod the API server refuses (no RuntimeClass `gvisor` here) shows in the Session at once.
    sessions.create(&PostParams::default(), &session_json("gvisor", "needs-gvisor", &alice.name, "hi")).await.unwrap();
    let stalled = wait_for(Duration::from_secs(60), "the refused pod to show in the Session", || async {
        let o = get_json(&sessions, "gvisor").await?;
        (condition(&o, "Stalled")?.0 == "True").then_some(o)
    })
    .await;
    let (_, reason, message) = condition(&stalled, "Stalled").unwrap();
    println!("e2e sessions: `gvisor` stalled: {reason}: {message}");
    assert!(message.contains("gvisor"), "the API server's reason: {message}");
    assert_eq!(ready(&stalled).unwrap().0, "False");
    let notes = events_about(admin, ns, "gvisor").await;
    assert!(notes.iter().any(|n| n.contains("gvisor")), "a Warning Event says why: {notes:?}");

    // The user deletes the Session: its Pod, token Secret and NetworkPolicy go with it.
    for name in ["look", "gvisor"] {
        sessions.delete(name, &DeleteParams::foreground()).await.unwrap();
    }
    wait_for(Duration::from_secs(60), "the Sessions to go", || async {
        let gone =
            sessions.get_opt("look").await.unwrap().is_none() && sessions.get_opt("gvisor").await.unwrap().is_none();
        gone.then_some(())
    })
    .await;
    assert!(pods.get_opt(&pod_name).await.unwrap().is_none_or(|p| p.metadata.deletion_timestamp.is_some()));
    assert!(Api::<Secret>::namespaced(admin.clone(), ns).get_opt(&names.secret).await.unwrap().is_none());
    assert!(
        Api::<NetworkPolicy>::namespaced(admin.clone(), ns).get_opt(&names.network_policy).await.unwrap().is_none()
    );
    println!("e2e sessions: passed");
}

// ---------------------------------------------------------------------------------------------------------
// Approvals

#[tokio::test]
async fn an_ask_waits_for_an_approval_created_by_an_approver() {
    let Some(path) = cluster::kubeconfig("approvals") else { return };
    if !cluster::plays_kubelet("approvals") {
        return;
    }
    let ns = "paddock-e2e-approvals";
    let ask_deploy = json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "Policy", "metadata": {"name": "ask-deploy"},
        "spec": {"rules": [{"name": "deploys-are-asked", "use": "tool_denylist", "action": "ask", "with": {"tools": ["deploy"]}}]}});
    let s = session_stack(
        path,
        ns,
        "paddock-e2e-approvals",
        &[agent("deployer", &["list_dir", "deploy"], None)],
        &[ask_deploy],
        false,
    )
    .await;
    let admin = &s.st.admin;
    let alice = user(admin, &s.st.admin_path, s.st.dir.path(), ns, "alice", &["session-user"]).await;
    let bob = user(admin, &s.st.admin_path, s.st.dir.path(), ns, "bob", &["approver"]).await;
    let sessions: Api<Session> = Api::namespaced(alice.client.clone(), ns);
    sessions
        .create(&PostParams::default(), &session_json("ship", "deployer", &alice.name, "Deploy it."))
        .await
        .unwrap();
    let started = wait_for(Duration::from_secs(60), "the runner Pod", || async {
        let o = get_json(&sessions, "ship").await?;
        o["status"]["podName"].as_str().map(str::to_owned)
    })
    .await;
    kubelet::set_phase(admin, ns, &started, "Running").await;
    wait_phase(&sessions, "ship", "Running").await;
    let session = sessions.get("ship").await.unwrap();
    let id = session.uid().unwrap();
    let token = kubelet::runner_token(admin, ns, &paddock_sandbox::ObjectNames::of("ship").secret).await;

    // The runner's hook asks about `deploy`: the policy asks a human.
    let ruling = kubelet::decide(&s.gw.url, &token, &id, "deploy", json!({"env": "prod"})).await;
    assert_eq!(ruling["verdict"], "ask", "{ruling}");
    let request = ruling["approval_id"].as_str().or(ruling["approvalId"].as_str()).expect("an approval id").to_owned();
    let waiting = wait_phase(&sessions, "ship", "AwaitingApproval").await;
    let pending = waiting["status"]["pendingApprovals"].as_array().cloned().unwrap_or_default();
    assert!(pending.iter().any(|p| p["requestId"] == request.as_str() && p["tool"] == "deploy"), "{waiting}");

    // An Approval that does not name its creator as the decider is refused by the chart's admission policy.
    let approvals: Api<Approval> = Api::namespaced(bob.client.clone(), ns);
    let approval = |decided_by: &str| -> Approval {
        serde_json::from_value(json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "Approval",
            "metadata": {"name": "ship-deploy", "annotations": {"paddock.dev/decided-by": decided_by}},
            "spec": {"sessionRef": {"name": "ship"}, "requestId": request, "decision": "Approve", "reason": "reviewed"}
        }))
        .unwrap()
    };
    let err =
        approvals.create(&PostParams::default(), &approval("someone-else@acme.example")).await.expect_err("refused");
    println!("e2e approvals: an Approval in someone else's name refused: {err}");
    // A session user may not approve at all.
    let as_alice: Api<Approval> = Api::namespaced(alice.client.clone(), ns);
    as_alice.create(&PostParams::default(), &approval(&alice.name)).await.expect_err("a session user cannot approve");
    approvals.create(&PostParams::default(), &approval(&bob.name)).await.unwrap();

    // The runner's wait ends with the human's decision, relayed by the controller.
    let decided = kubelet::approval(&s.gw.url, &token, &id, &request, 30).await;
    println!("e2e approvals: the runner got {decided}");
    assert_eq!(decided["verdict"], "allow", "{decided}");
    let relayed = wait_for(Duration::from_secs(30), "the Approval's status", || async {
        let o = get_json(&Api::<Approval>::namespaced(admin.clone(), ns), "ship-deploy").await?;
        o["status"]["relayedAt"].is_string().then_some(o)
    })
    .await;
    assert_eq!(relayed["status"]["decidedBy"], bob.name.as_str(), "{relayed}");
    let back = wait_phase(&sessions, "ship", "Running").await;
    assert!(back["status"]["pendingApprovals"].as_array().is_none_or(|a| a.is_empty()), "{back}");
    kubelet::set_phase(admin, ns, &started, "Succeeded").await;
    wait_phase(&sessions, "ship", "Succeeded").await;
    sessions.delete("ship", &DeleteParams::foreground()).await.unwrap();
    println!("e2e approvals: passed");
}

// ---------------------------------------------------------------------------------------------------------
// The web console

/// Signs in to the console with `token`: the cookie, the page's CSRF token, or the status refused with.
async fn console_sign_in(console: &str, token: &str) -> Result<(String, String), u16> {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.post(format!("{console}/ui/login")).form(&[("token", token)]).send().await.unwrap();
    if r.status() != 303 {
        return Err(r.status().as_u16());
    }
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = http.get(format!("{console}/ui/sessions")).header("cookie", &cookie).send().await.unwrap();
    let html = page.text().await.unwrap();
    let csrf = html.split("name=\"csrf-token\" content=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    Ok((cookie, csrf))
}

async fn console_page(console: &str, cookie: &str, path: &str) -> (u16, String) {
    let r = reqwest::Client::new().get(format!("{console}{path}")).header("cookie", cookie).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn the_console_shows_what_rbac_allows_and_a_decision_there_is_the_approvers_own_approval() {
    let Some(path) = cluster::kubeconfig("console") else { return };
    if !cluster::plays_kubelet("console") {
        return;
    }
    let ns = "paddock-e2e-console";
    let ask_deploy = json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "Policy", "metadata": {"name": "ask-deploy"},
        "spec": {"rules": [{"name": "deploys-are-asked", "use": "tool_denylist", "action": "ask", "with": {"tools": ["deploy"]}}]}});
    let s =
        session_stack(path, ns, "paddock-e2e-console", &[agent("deployer", &["deploy"], None)], &[ask_deploy], true)
            .await;
    let console = s.gw.console.clone().expect("the console");
    let admin = &s.st.admin;
    let dir = s.st.dir.path();
    let alice = user(admin, &s.st.admin_path, dir, ns, "alice", &["session-user"]).await;
    let bob = user(admin, &s.st.admin_path, dir, ns, "bob", &["approver"]).await;
    let carol = user(admin, &s.st.admin_path, dir, ns, "carol", &[]).await;
    let sessions: Api<Session> = Api::namespaced(alice.client.clone(), ns);
    sessions
        .create(&PostParams::default(), &session_json("ship", "deployer", &alice.name, "Deploy it."))
        .await
        .unwrap();
    let pod = wait_for(Duration::from_secs(60), "the runner Pod", || async {
        get_json(&sessions, "ship").await?["status"]["podName"].as_str().map(str::to_owned)
    })
    .await;
    kubelet::set_phase(admin, ns, &pod, "Running").await;
    wait_phase(&sessions, "ship", "Running").await;
    let id = sessions.get("ship").await.unwrap().uid().unwrap();
    let token = kubelet::runner_token(admin, ns, &paddock_sandbox::ObjectNames::of("ship").secret).await;
    let ruling = kubelet::decide(&s.gw.url, &token, &id, "deploy", json!({"env": "prod"})).await;
    let request = ruling["approval_id"].as_str().or(ruling["approvalId"].as_str()).expect("an approval id").to_owned();

    // The runner's token is a gateway session token: it never signs in.
    assert_eq!(console_sign_in(&console, &token).await, Err(401));
    assert_eq!(console_sign_in(&console, "not-a-token").await, Err(401));
    // carol has no role in the namespace: signed in, she sees nothing of it.
    let (carol_cookie, _) = console_sign_in(&console, &carol.token).await.expect("carol signs in");
    let (_, list) = console_page(&console, &carol_cookie, "/ui/sessions").await;
    assert!(list.contains(&carol.name) && !list.contains(&id), "carol sees no session");
    assert_eq!(console_page(&console, &carol_cookie, &format!("/ui/sessions/{id}")).await.0, 404);
    // alice (session-user) sees the session and its ask, and no approve button; deciding is refused.
    let (alice_cookie, alice_csrf) = console_sign_in(&console, &alice.token).await.expect("alice signs in");
    let (_, list) = console_page(&console, &alice_cookie, "/ui/sessions").await;
    assert!(list.contains(&id), "alice sees her session");
    let (_, asks) = console_page(&console, &alice_cookie, "/ui/approvals").await;
    assert!(
        asks.contains(&request) && !asks.contains("class=\"approve\"") && asks.contains("Only an approver can decide")
    );
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http
        .post(format!("{console}/ui/approvals/{request}/decide"))
        .header("cookie", &alice_cookie)
        .form(&[("csrf", alice_csrf.as_str()), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // bob (approver) approves in the console: an Approval created with his token, naming him, relayed.
    let (bob_cookie, bob_csrf) = console_sign_in(&console, &bob.token).await.expect("bob signs in");
    let (_, asks) = console_page(&console, &bob_cookie, "/ui/approvals").await;
    assert!(asks.contains("class=\"approve\""), "bob may decide");
    let r = http
        .post(format!("{console}/ui/approvals/{request}/decide"))
        .header("cookie", &bob_cookie)
        .form(&[("csrf", bob_csrf.as_str()), ("decision", "approve"), ("reason", "ship it")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let decided = kubelet::approval(&s.gw.url, &token, &id, &request, 30).await;
    println!("e2e console: the runner got {decided}");
    assert_eq!(decided["verdict"], "allow", "{decided}");
    let made = Api::<Approval>::namespaced(admin.clone(), ns).list(&ListParams::default()).await.unwrap();
    let a = made.items.iter().find(|a| a.spec.request_id == request).expect("an Approval");
    assert!(a.name_any().starts_with("console-"), "{}", a.name_any());
    assert_eq!(a.annotations()["paddock.dev/decided-by"], bob.name);
    assert_eq!(a.spec.reason.as_deref(), Some("ship it"));
    let relayed = wait_for(Duration::from_secs(30), "the Approval's status", || async {
        let o = get_json(&Api::<Approval>::namespaced(admin.clone(), ns), &a.name_any()).await?;
        o["status"]["relayedAt"].is_string().then_some(o)
    })
    .await;
    assert_eq!(relayed["status"]["decidedBy"], bob.name.as_str(), "{relayed}");
    kubelet::set_phase(admin, ns, &pod, "Succeeded").await;
    wait_phase(&sessions, "ship", "Succeeded").await;
    sessions.delete("ship", &DeleteParams::foreground()).await.unwrap();
    println!("e2e console: passed");
}

// ---------------------------------------------------------------------------------------------------------
// Leader election

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases.get_opt(name).await.unwrap()?.spec?.holder_identity
}

#[tokio::test]
async fn one_controller_leads_and_the_other_takes_over_within_the_lease() {
    let Some(path) = cluster::kubeconfig("leader election") else { return };
    let st = stack(path).await;
    let ns = "paddock-e2e-leader";
    fresh_namespace(&st.admin, ns).await;
    // A Lease of this run's own, so an earlier run's holder does not count.
    let lease = format!("paddock-e2e-leader-{}", std::process::id());
    let mut controllers = Vec::new();
    for identity in ["controller-a", "controller-b"] {
        controllers.push(
            controller(ControllerRun {
                objects: &st.objects,
                kubeconfig: &st.controller_kubeconfig,
                dir: st.dir.path(),
                gateway: None,
                watch_ns: ns,
                lease_name: &lease,
                identity,
            })
            .await,
        );
    }
    let leases: Api<Lease> = Api::namespaced(st.admin.clone(), cluster::SYSTEM_NS);
    let leader = wait_for(Duration::from_secs(30), "a leader", || async { holder(&leases, &lease).await }).await;
    let (lead, follow) = if leader == "controller-a" { (0, 1) } else { (1, 0) };
    println!("e2e leader: {leader} holds Lease {}/{lease}", cluster::SYSTEM_NS);
    wait_for(Duration::from_secs(10), "the leader's gauge", || async {
        (controllers[lead].metric("paddock_controller_leader", &[]).await == 1.0).then_some(())
    })
    .await;

    let agents: Api<Agent> = Api::namespaced(st.admin.clone(), ns);
    apply_as_admin(&agents, &agent("first", &["list_dir"], None)).await;
    wait_ready(&agents, "first", "Agent first reconciled by the leader").await;
    assert!(controllers[lead].metric("paddock_controller_reconciles", &["agent"]).await >= 1.0);
    // A replica that does not lead writes nothing.
    assert_eq!(controllers[follow].metric("paddock_controller_leader", &[]).await, 0.0);
    assert_eq!(controllers[follow].metric("paddock_controller_reconciles", &[]).await, 0.0, "the follower reconciled");

    // The leader dies without releasing the Lease: the other takes over once it expires.
    let killed = Instant::now();
    controllers[lead].proc.kill();
    let new = wait_for(Duration::from_secs(40), "the other controller to take over", || async {
        holder(&leases, &lease).await.filter(|h| *h == controllers[follow].identity)
    })
    .await;
    let took = killed.elapsed();
    println!("e2e leader: {new} took over {:.1} s after {leader} was killed", took.as_secs_f64());
    // Lease duration 15 s and the holder renews 5 s before it ends: the Lease ends at most 15 s after the
    // kill; the other replica's next try follows within its grace.
    assert!(took <= Duration::from_secs(20), "took over after {took:?}");
    apply_as_admin(&agents, &agent("second", &["list_dir"], None)).await;
    wait_ready(&agents, "second", "Agent second reconciled by the new leader").await;
    assert!(controllers[follow].metric("paddock_controller_reconciles", &["agent"]).await >= 1.0);
    assert_eq!(controllers[follow].metric("paddock_controller_leader", &[]).await, 1.0);
    println!("e2e leader: passed");
}
