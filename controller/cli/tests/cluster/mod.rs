//! The stack of the e2e tier on a real API server (tests/e2e_cluster.rs): the chart's objects applied from
//! `helm template`, a real `paddock gateway` and `paddock controller` on this machine, the controller
//! authenticated as the chart's own ServiceAccount (a TokenRequest token, not the admin's credentials), and
//! users bound to the chart's ClusterRoles. Everything a suite starts stops when its [`Stack`] is dropped.

#![allow(dead_code)]

pub mod kubelet;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use kube::runtime::{conditions, wait::await_condition};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// The chart's release namespace and name in the tier.
pub const SYSTEM_NS: &str = "paddock-e2e-system";
pub const RELEASE: &str = "paddock";
const MANAGER: &str = "paddock-e2e";

/// The admin kubeconfig of the tier, or `None` (and a line saying the suite skipped).
pub fn kubeconfig(suite: &str) -> Option<PathBuf> {
    match std::env::var_os("PADDOCK_E2E_KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            println!("e2e {suite}: skipped: PADDOCK_E2E_KUBECONFIG is not set (docs/kubernetes-e2e.md)");
            None
        }
    }
}

/// With `PADDOCK_E2E_NO_KUBELET=1` the suites play the kubelet's part for runner pods: they patch a pod's
/// status to Running and Succeeded and make the runner's calls to the gateway themselves. Without it, the
/// suites that need a runner pod skip: a real kubelet would start the pod, and the runner could not reach a
/// gateway that runs on this machine.
pub fn plays_kubelet(suite: &str) -> bool {
    let on = std::env::var("PADDOCK_E2E_NO_KUBELET").is_ok_and(|v| v == "1");
    if !on {
        println!(
            "e2e {suite}: skipped: runner pods need PADDOCK_E2E_NO_KUBELET=1 (the suite plays the kubelet; \
             docs/kubernetes-e2e.md)"
        );
    } else {
        println!("e2e {suite}: no kubelet: this suite patches runner pod status and makes the runner's calls itself");
    }
    on
}

pub async fn client_from(path: &Path) -> Client {
    let kc = Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("kubeconfig {}: {e}", path.display()));
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("kubeconfig");
    Client::try_from(cfg).expect("client")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Real helm as every chart test finds it: `$PADDOCK_HELM`, `$PADDOCK_E2E_HELM`, else the one `.ci/run`
/// installs, else `helm` on PATH.
fn helm() -> PathBuf {
    for var in ["PADDOCK_HELM", "PADDOCK_E2E_HELM"] {
        if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
    }
    let ci = repo_root().join(".ci/npm-helm/bin/helm");
    if ci.is_file() {
        return ci;
    }
    PathBuf::from("helm")
}

/// The chart rendered as the tier installs it.
pub fn render_chart() -> Vec<Value> {
    let out = Command::new(helm())
        .args(["template", RELEASE])
        .arg(repo_root().join("charts/paddock"))
        .args(["--namespace", SYSTEM_NS, "--include-crds"])
        .args(["--set", "runner.image=paddock-runner:e2e", "--set", "image.tag=e2e"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run helm ({e}); set PADDOCK_E2E_HELM or run .ci/run once"));
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|d| {
            let v: Value = serde::Deserialize::deserialize(d).expect("helm renders YAML");
            (!v.is_null()).then_some(v)
        })
        .collect()
}

/// Applies the chart's objects (CRDs first, established before the rest); kinds this API server does not
/// serve (a ServiceMonitor without the Prometheus operator) are named and left out.
pub async fn install_chart(client: &Client) -> Vec<Value> {
    let objects = render_chart();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ssa = PatchParams::apply(MANAGER).force();
    namespaces
        .patch(
            SYSTEM_NS,
            &ssa,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NS}})),
        )
        .await
        .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in objects.iter().filter(|o| o["kind"] == "CustomResourceDefinition") {
        let name = crd["metadata"]["name"].as_str().unwrap();
        crds.patch(name, &ssa, &Patch::Apply(crd)).await.unwrap_or_else(|e| panic!("CRD {name}: {e}"));
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(crds.clone(), name, conditions::is_crd_established()),
        )
        .await
        .expect("CRD established in time")
        .unwrap();
    }
    for o in objects.iter().filter(|o| o["kind"] != "CustomResourceDefinition") {
        apply_object(client, o).await;
    }
    objects
}

/// Server-side applies one object of any kind the API server serves.
pub async fn apply_object(client: &Client, o: &Value) {
    let (group, version) = match o["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), o["apiVersion"].as_str().unwrap().to_owned()),
    };
    let kind = o["kind"].as_str().unwrap();
    let name = o["metadata"]["name"].as_str().unwrap();
    let gvk = GroupVersionKind::gvk(&group, &version, kind);
    let Ok((ar, caps)) = pinned_kind(client, &gvk).await else {
        println!("e2e: chart object {kind}/{name} left out: this API server does not serve {}", o["apiVersion"]);
        return;
    };
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), &ar),
        Scope::Namespaced => {
            Api::namespaced_with(client.clone(), o["metadata"]["namespace"].as_str().unwrap_or(SYSTEM_NS), &ar)
        }
    };
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(o))
        .await
        .unwrap_or_else(|e| panic!("applying the chart's {kind}/{name}: {e}"));
}

/// The rendered object of `kind` whose name ends with `suffix`.
pub fn find<'a>(objects: &'a [Value], kind: &str, suffix: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"].as_str().is_some_and(|n| n.ends_with(suffix)))
        .unwrap_or_else(|| panic!("the chart renders no {kind} named *{suffix}"))
}

/// A namespace for one suite, made fresh (an old one of the same name is deleted first).
pub async fn fresh_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(name).await.unwrap().is_some() {
        let _ = namespaces.delete(name, &Default::default()).await;
        // An earlier run's controller is gone: its finalizers would hold the namespace forever.
        let unfinalize = json!({"metadata": {"finalizers": null}});
        let sessions: Api<paddock_api::Session> = Api::namespaced(client.clone(), name);
        for s in sessions.list(&Default::default()).await.unwrap() {
            let _ = sessions.patch(&s.name_any(), &PatchParams::default(), &Patch::Merge(&unfinalize)).await;
        }
        let sources: Api<paddock_api::GitSource> = Api::namespaced(client.clone(), name);
        for s in sources.list(&Default::default()).await.unwrap() {
            let _ = sources.patch(&s.name_any(), &PatchParams::default(), &Patch::Merge(&unfinalize)).await;
        }
        wait_for(Duration::from_secs(120), &format!("namespace {name} to go"), || async {
            namespaces.get_opt(name).await.unwrap().is_none().then_some(())
        })
        .await;
    }
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap())
        .await
        .unwrap();
    // The namespace's `default` ServiceAccount is made by kube-controller-manager; runner pods need it.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    wait_for(Duration::from_secs(60), "the namespace's default ServiceAccount", || async {
        sas.get_opt("default").await.unwrap().map(|_| ())
    })
    .await;
}

/// Polls `check` every 250 ms until it yields a value; panics naming `what` after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A kubeconfig that authenticates with a ServiceAccount token from the TokenRequest API, for the same
/// API server as the admin's.
/// Writes a kubeconfig for ServiceAccount `ns/sa` (a TokenRequest token) to `out`; returns the token.
pub async fn service_account_kubeconfig(admin: &Client, admin_path: &Path, ns: &str, sa: &str, out: &Path) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    let req: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
    let token = sas
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {ns}/{sa}: {e}"))
        .status
        .expect("a token")
        .token;
    let kc = Kubeconfig::read_from(admin_path).unwrap();
    let ctx_name = kc.current_context.clone().unwrap_or_default();
    let cluster_name = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .unwrap_or_else(|| kc.clusters[0].name.clone());
    let cluster = kc.clusters.iter().find(|c| c.name == cluster_name).and_then(|c| c.cluster.clone()).unwrap();
    let mut cluster_yaml = format!("    server: {}\n", cluster.server.clone().unwrap());
    if let Some(ca) = &cluster.certificate_authority_data {
        cluster_yaml.push_str(&format!("    certificate-authority-data: {ca}\n"));
    }
    if let Some(ca) = &cluster.certificate_authority {
        cluster_yaml.push_str(&format!("    certificate-authority: {ca}\n"));
    }
    if cluster.insecure_skip_tls_verify == Some(true) {
        cluster_yaml.push_str("    insecure-skip-tls-verify: true\n");
    }
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n{cluster_yaml}users:\n- name: {sa}\n  user:\n    \
         token: {token}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: {sa}, namespace: {ns}}}\n\
         current-context: e2e\n"
    );
    // A credential: readable by this user only.
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(out).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    token
}

/// A user of the chart's roles: a ServiceAccount of `ns` bound there to `<release>-<role>` (`session-user`,
/// `approver`), with a client that authenticates as it. Its name is what the API server calls it.
pub struct User {
    pub name: String,
    pub client: Client,
    /// Its bearer token (what a person pastes into the web console).
    pub token: String,
}

pub async fn user(admin: &Client, admin_path: &Path, dir: &Path, ns: &str, sa: &str, roles: &[&str]) -> User {
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    let ssa = PatchParams::apply(MANAGER).force();
    sas.patch(sa, &ssa, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}})))
        .await
        .unwrap();
    for role in roles {
        apply_object(
            admin,
            &json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": format!("{sa}-{role}"), "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("{RELEASE}-{role}")},
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]
            }),
        )
        .await;
    }
    let path = dir.join(format!("{sa}.kubeconfig"));
    let token = service_account_kubeconfig(admin, admin_path, ns, sa, &path).await;
    User { name: format!("system:serviceaccount:{ns}:{sa}"), client: client_from(&path).await, token }
}

/// A child process killed when dropped; its output goes to `log`.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub name: String,
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines of its log, for a failure message.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // Kept for the post-mortem: the suite's directory goes with it.
            let kept = std::env::temp_dir().join("paddock-e2e-logs");
            let _ = std::fs::create_dir_all(&kept);
            let copy = kept.join(self.log.file_name().unwrap());
            let _ = std::fs::copy(&self.log, &copy);
            eprintln!("--- last lines of {} (whole log: {}) ---\n{}", self.name, copy.display(), self.tail());
        }
    }
}

fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
    let out = std::fs::File::create(&log).unwrap();
    let err = out.try_clone().unwrap();
    let child = cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err)).stdin(Stdio::null()).spawn().unwrap();
    Proc { child, log, name: name.to_owned() }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A real `paddock gateway` on 127.0.0.1 with a scripted model.
pub struct Gateway {
    pub proc: Proc,
    pub url: String,
    pub admin_token: String,
    pub admin_token_file: PathBuf,
    pub console: Option<String>,
}

pub async fn gateway(dir: &Path, script: &str) -> Gateway {
    gateway_with(dir, script, None).await
}

/// [`gateway`] with its web console on another port, signing people in by Kubernetes token: the gateway acts
/// as the chart's `paddock-gateway` ServiceAccount (its `kubeconfig`), whose only rights are the chart's
/// console role. Returns the console's URL in [`Gateway::console`].
pub async fn gateway_with(dir: &Path, script: &str, console_kubeconfig: Option<&Path>) -> Gateway {
    let port = free_port();
    let admin_token = format!("pdk_admin_e2e{}", std::process::id());
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, &admin_token).unwrap();
    std::fs::write(dir.join("script.yaml"), script).unwrap();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\ndataDir: {d}/gateway-data\nadminToken: {{file: {d}/admin-token}}\nproviders:\n  \
             - {{name: scripted, kind: scripted, models: [\"claude-*\"], script: {d}/script.yaml}}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let console_port = free_port();
    if console_kubeconfig.is_some() {
        let mut f = std::fs::OpenOptions::new().append(true).open(&config).unwrap();
        writeln!(f, "console: {{listen: 127.0.0.1:{console_port}, kubernetes: true}}").unwrap();
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paddock"));
    cmd.args(["gateway", "--config"]).arg(&config);
    if let Some(kc) = console_kubeconfig {
        cmd.env("KUBECONFIG", kc);
    }
    let proc = spawn("paddock gateway", cmd, dir.join("gateway.log"));
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for(Duration::from_secs(30), "the gateway's /healthz", || async {
        http.get(format!("{url}/healthz")).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
    let console = console_kubeconfig.map(|_| format!("http://127.0.0.1:{console_port}"));
    Gateway { proc, url, admin_token, admin_token_file: token_file, console }
}

/// `paddock controller` as the chart's Deployment runs it (its rendered arguments), authenticated as the
/// chart's controller ServiceAccount; what only makes sense in a pod is pointed at this machine: listen
/// address, cache directory, the gateway's URL and admin token file. It watches `watch_ns` only.
pub struct Controller {
    pub proc: Proc,
    pub identity: String,
    pub metrics_url: String,
}

pub struct ControllerRun<'a> {
    pub objects: &'a [Value],
    pub kubeconfig: &'a Path,
    pub dir: &'a Path,
    pub gateway: Option<&'a Gateway>,
    pub watch_ns: &'a str,
    pub lease_name: &'a str,
    pub identity: &'a str,
}

pub async fn controller(run: ControllerRun<'_>) -> Controller {
    let deployment = find(run.objects, "Deployment", "-controller");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let port = free_port();
    let cache = run.dir.join(format!("cache-{}", run.identity));
    let mut set: BTreeMap<&str, String> = BTreeMap::new();
    set.insert("--listen", format!("127.0.0.1:{port}"));
    set.insert("--cache-dir", cache.display().to_string());
    set.insert("--namespace", run.watch_ns.to_owned());
    set.insert("--lease-name", run.lease_name.to_owned());
    set.insert("--identity", run.identity.to_owned());
    // Poll the gateway every second, so the suites do not wait on the chart's default.
    set.insert("--session-poll-seconds", "1".into());
    if let Some(gw) = run.gateway {
        set.insert("--gateway-url", gw.url.clone());
        set.insert("--gateway-token-file", gw.admin_token_file.display().to_string());
    }
    let mut args: Vec<String> = Vec::new();
    for a in container["args"].as_array().expect("the controller's args") {
        let a = a.as_str().unwrap();
        let flag = a.split_once('=').map_or(a, |(f, _)| f);
        // The gateway flags stay only with a gateway here; its CA is for the in-cluster Service.
        if flag.starts_with("--gateway") && (run.gateway.is_none() || flag.starts_with("--gateway-ca")) {
            continue;
        }
        if !set.contains_key(flag) {
            args.push(a.to_owned());
        }
    }
    args.extend(
        set.iter()
            .filter(|(f, _)| run.gateway.is_some() || !f.starts_with("--gateway"))
            .map(|(f, v)| format!("{f}={v}")),
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paddock"));
    cmd.args(&args)
        .env("KUBECONFIG", run.kubeconfig)
        .env("POD_NAME", run.identity)
        .env("POD_NAMESPACE", SYSTEM_NS)
        .env("RUST_LOG", "info,paddock_operator=debug");
    let proc =
        spawn(&format!("paddock controller {}", run.identity), cmd, run.dir.join(format!("{}.log", run.identity)));
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let http = reqwest::Client::new();
    wait_for(Duration::from_secs(30), "the controller's /healthz", || async {
        http.get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    Controller { proc, identity: run.identity.to_owned(), metrics_url }
}

impl Controller {
    /// The sum of a metric's samples whose line contains every one of `labels`.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let text = reqwest::get(&self.metrics_url).await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Everything one suite started: dropped at the end, which stops the processes.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub admin: Client,
    pub admin_path: PathBuf,
    pub objects: Vec<Value>,
    pub controller_kubeconfig: PathBuf,
}

/// Installs the chart's objects and writes the controller ServiceAccount's kubeconfig.
pub async fn stack(admin_path: PathBuf) -> Stack {
    let admin = client_from(&admin_path).await;
    let objects = install_chart(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let sa = find(&objects, "ServiceAccount", "-controller")["metadata"]["name"].as_str().unwrap().to_owned();
    let controller_kubeconfig = dir.path().join("controller.kubeconfig");
    service_account_kubeconfig(&admin, &admin_path, SYSTEM_NS, &sa, &controller_kubeconfig).await;
    Stack { dir, admin, admin_path, objects, controller_kubeconfig }
}

/// The Ready condition of an object with `status.conditions`, as `(status, reason, message)`.
pub fn ready(o: &Value) -> Option<(String, String, String)> {
    condition(o, "Ready")
}

pub fn condition(o: &Value, type_: &str) -> Option<(String, String, String)> {
    o["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_).map(|c| {
        (
            c["status"].as_str().unwrap_or_default().to_owned(),
            c["reason"].as_str().unwrap_or_default().to_owned(),
            c["message"].as_str().unwrap_or_default().to_owned(),
        )
    })
}

/// Any Paddock object as JSON.
pub async fn get_json<K>(api: &Api<K>, name: &str) -> Option<Value>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.get_opt(name).await.unwrap().map(|o| serde_json::to_value(o).unwrap())
}

pub fn name_of(o: &Value) -> String {
    o["metadata"]["name"].as_str().unwrap_or_default().to_owned()
}

pub fn uid_of<K: ResourceExt>(o: &K) -> String {
    o.uid().unwrap_or_default()
}
