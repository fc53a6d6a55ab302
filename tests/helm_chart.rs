//! The Helm chart rendered by real helm (`helm template`): TLS between runners, the controller and the
//! gateway. The gateway mounts its serving certificate and is configured to serve it; the controller mounts
//! the CA (only the CA) and calls the gateway at an `https://` URL whose host the certificate names; the
//! three sources of the certificate (generated, cert-manager, an existing Secret) and TLS turned off.
//!
//! helm: `$PADDOCK_HELM`, else `$PADDOCK_E2E_HELM`, else the one `.ci/run` installs (`.ci/npm-helm`), else
//! `helm` on PATH.

use std::process::Command;

use serde_json::Value;

const NS: &str = "paddock-system";
const SERVING: &str = "paddock-gateway-tls";

/// `helm template` with `--set` values: the objects, or helm's error.
fn try_render(set: &[&str]) -> Result<Vec<Value>, String> {
    let mut cmd = Command::new(paddock_tests::helm());
    cmd.args(["template", "paddock"]).arg(paddock_tests::repo_root().join("charts/paddock")).args(["-n", NS]);
    for s in set {
        cmd.args(["--set", s]);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run helm ({e}): install helm, set PADDOCK_HELM, or run .ci/run once"));
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    // helm separates documents with `---` lines.
    Ok(text
        .split("\n---\n")
        .map(|doc| serde_yaml_ng::from_str::<Value>(doc).unwrap_or_else(|e| panic!("helm renders YAML: {e}\n{doc}")))
        .filter(|v| !v.is_null())
        .collect())
}

fn render(set: &[&str]) -> Vec<Value> {
    try_render(set).unwrap_or_else(|e| panic!("helm template {set:?}: {e}"))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn get<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    find(objects, kind, name).unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn args(deployment: &Value) -> Vec<String> {
    container(deployment)["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()
}

fn flag(deployment: &Value, name: &str) -> Option<String> {
    args(deployment).iter().find_map(|a| a.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

/// The pod volume named `name`.
fn volume<'a>(deployment: &'a Value, name: &str) -> Option<&'a Value> {
    deployment["spec"]["template"]["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == name)
}

/// Where the container mounts the volume `name`.
fn mount_path(deployment: &Value, name: &str) -> Option<String> {
    container(deployment)["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .map(|m| m["mountPath"].as_str().unwrap().to_owned())
}

/// The keys a Secret volume projects: `(key, path)`.
fn items(volume: &Value) -> Vec<(String, String)> {
    volume["secret"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["key"].as_str().unwrap().to_owned(), i["path"].as_str().unwrap().to_owned()))
        .collect()
}

/// The gateway's configuration file as the chart renders it.
fn gateway_config(objects: &[Value]) -> Value {
    let text = get(objects, "ConfigMap", "paddock-gateway")["data"]["gateway.yaml"].as_str().unwrap();
    serde_yaml_ng::from_str(text).unwrap()
}

fn secret_volumes_of(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .flat_map(|d| d["spec"]["template"]["spec"]["volumes"].as_array().unwrap().clone())
        .filter_map(|v| v["secret"]["secretName"].as_str().map(str::to_owned))
        .collect()
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").unwrap().1;
    rest.split([':', '/']).next().unwrap()
}

/// The checks every TLS mode shares: where the serving certificate and the CA are mounted, the gateway's
/// configuration, the probes, and the controller's https URL and CA file.
fn assert_tls_wiring(objects: &[Value], secret: &str) {
    let gateway = get(objects, "Deployment", "paddock-gateway");
    let tls = volume(gateway, "tls").expect("the gateway mounts its serving certificate");
    assert_eq!(tls["secret"]["secretName"], secret);
    assert_eq!(items(tls), [("tls.crt".into(), "tls.crt".into()), ("tls.key".into(), "tls.key".into())]);
    let dir = mount_path(gateway, "tls").unwrap();
    let cfg = gateway_config(objects);
    assert_eq!(cfg["tls"]["certFile"], format!("{dir}/tls.crt"), "{cfg}");
    assert_eq!(cfg["tls"]["keyFile"], format!("{dir}/tls.key"), "{cfg}");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container(gateway)[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }

    let controller = get(objects, "Deployment", "paddock-controller");
    let url = flag(controller, "--gateway-url").unwrap();
    assert!(url.starts_with("https://"), "the controller (and the runners it starts) call {url}");
    assert!(flag(controller, "--runner-gateway-url").is_none_or(|u| u.starts_with("https://")));
    let ca = volume(controller, "gateway-ca").expect("the controller mounts the gateway CA");
    assert_eq!(ca["secret"]["secretName"], secret);
    assert_eq!(items(ca), [("ca.crt".into(), "ca.crt".into())], "the CA only, never the serving key");
    let ca_file = flag(controller, "--gateway-ca-file").unwrap();
    assert_eq!(ca_file, format!("{}/ca.crt", mount_path(controller, "gateway-ca").unwrap()));

    let service = get(objects, "Service", "paddock-gateway");
    assert_eq!(service["spec"]["ports"][0]["appProtocol"], "https");
    assert_eq!(host_of(&url), format!("paddock-gateway.{NS}.svc"));
}

const NAMES: [&str; 4] = [
    "paddock-gateway",
    "paddock-gateway.paddock-system",
    "paddock-gateway.paddock-system.svc",
    "paddock-gateway.paddock-system.svc.cluster.local",
];

#[test]
fn by_default_the_chart_generates_the_gateway_certificate_and_wires_tls_everywhere() {
    let objects = render(&[]);
    assert_tls_wiring(&objects, SERVING);

    let serving = get(&objects, "Secret", SERVING);
    assert_eq!(serving["type"], "kubernetes.io/tls");
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        assert!(serving["data"][key].as_str().is_some_and(|v| !v.is_empty()), "{key}");
    }
    // The names the certificate is for: every name of the Service, the controller's URL's host among them.
    let names = serving["metadata"]["annotations"]["paddock.dev/tls-names"].as_str().unwrap();
    assert_eq!(names.split(',').collect::<Vec<_>>(), NAMES);
    let ca = get(&objects, "Secret", "paddock-gateway-tls-ca");
    assert_eq!(ca["data"]["tls.crt"], serving["data"]["ca.crt"], "ca.crt is the CA that signed tls.crt");
    assert!(
        !secret_volumes_of(&objects).contains(&"paddock-gateway-tls-ca".to_owned()),
        "the CA's key is mounted nowhere"
    );
    assert!(objects.iter().all(|o| !o["apiVersion"].as_str().unwrap().starts_with("cert-manager.io")));
}

#[test]
fn cert_manager_issues_the_certificate_into_the_same_secret() {
    let objects = render(&["gateway.tls.certManager.enabled=true"]);
    assert_tls_wiring(&objects, SERVING);
    assert!(find(&objects, "Secret", SERVING).is_none(), "cert-manager writes the Secret, not helm");
    let cert = get(&objects, "Certificate", "paddock-gateway");
    assert_eq!(cert["spec"]["secretName"], SERVING);
    assert_eq!(cert["spec"]["dnsNames"], serde_json::json!(NAMES));
    assert_eq!(cert["spec"]["issuerRef"]["name"], "paddock-gateway-ca");
    // The CA issuer (which fills ca.crt) signs with the chart's own CA, made by a self-signed issuer.
    assert_eq!(get(&objects, "Issuer", "paddock-gateway-ca")["spec"]["ca"]["secretName"], "paddock-gateway-tls-ca");
    assert_eq!(get(&objects, "Certificate", "paddock-gateway-ca")["spec"]["isCA"], true);
    assert!(find(&objects, "Issuer", "paddock-gateway-selfsigned").is_some());

    let own = render(&[
        "gateway.tls.certManager.enabled=true",
        "gateway.tls.certManager.issuerRef.name=corp-ca",
        "gateway.tls.certManager.issuerRef.kind=ClusterIssuer",
    ]);
    let cert = get(&own, "Certificate", "paddock-gateway");
    assert_eq!(
        cert["spec"]["issuerRef"],
        serde_json::json!({"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
    assert!(own.iter().all(|o| o["kind"] != "Issuer"), "the user's issuer, none of ours");
}

#[test]
fn an_existing_secret_is_mounted_and_nothing_is_generated() {
    let objects = render(&["gateway.tls.existingSecret=corp-gateway-tls"]);
    assert_tls_wiring(&objects, "corp-gateway-tls");
    assert!(
        find(&objects, "Secret", SERVING).is_none() && find(&objects, "Secret", "paddock-gateway-tls-ca").is_none()
    );

    let e = try_render(&["gateway.tls.existingSecret=x", "gateway.tls.certManager.enabled=true"]).unwrap_err();
    assert!(e.contains("gateway.tls: set existingSecret or certManager.enabled, not both"), "{e}");
    let e = try_render(&["gateway.tls.certManager.enabled=true", "gateway.tls.certManager.issuerRef.kind=Issuer"])
        .unwrap_err();
    assert!(e.contains("gateway.tls.certManager.issuerRef.name"), "{e}");
}

#[test]
fn with_tls_off_everything_is_plain_http_again() {
    let objects = render(&["gateway.tls.enabled=false"]);
    let gateway = get(&objects, "Deployment", "paddock-gateway");
    assert!(volume(gateway, "tls").is_none());
    assert!(gateway_config(&objects).get("tls").is_none());
    assert_eq!(container(gateway)["livenessProbe"]["httpGet"]["scheme"], "HTTP");
    let controller = get(&objects, "Deployment", "paddock-controller");
    assert!(flag(controller, "--gateway-url").unwrap().starts_with("http://"));
    assert!(flag(controller, "--gateway-ca-file").is_none() && volume(controller, "gateway-ca").is_none());
    assert!(find(&objects, "Secret", SERVING).is_none());
}

#[test]
fn traces_are_off_by_default_and_the_telemetry_value_reaches_the_gateways_config() {
    assert!(gateway_config(&render(&[])).get("telemetry").is_none(), "off by default");
    let objects = render(&["gateway.telemetry.endpoint=http://otel-collector.observability:4318/v1/traces"]);
    assert_eq!(gateway_config(&objects)["telemetry"]["endpoint"], "http://otel-collector.observability:4318/v1/traces");
    let e = try_render(&["gateway.telemetry.endpoint=otel-collector:4318"]).unwrap_err();
    assert!(e.contains("/gateway/telemetry/endpoint"), "a URL is required: {e}");
}

#[test]
fn the_gateway_service_monitor_scrapes_over_tls_with_the_ca() {
    let objects = render(&["metrics.serviceMonitor.enabled=true"]);
    let sm = get(&objects, "ServiceMonitor", "paddock-gateway");
    let ep = &sm["spec"]["endpoints"][0];
    assert_eq!((ep["port"].as_str(), ep["scheme"].as_str()), (Some("https"), Some("https")));
    assert_eq!(ep["tlsConfig"]["ca"]["secret"], serde_json::json!({"name": SERVING, "key": "ca.crt"}));
    assert_eq!(ep["tlsConfig"]["serverName"], format!("paddock-gateway.{NS}.svc"));
    let controller = get(&objects, "ServiceMonitor", "paddock-controller");
    assert_eq!(controller["spec"]["endpoints"][0]["port"], "http");
}

/// Whether `role` grants `verb` on `resource` of `group`.
fn grants(role: &Value, group: &str, resource: &str, verb: &str) -> bool {
    role["rules"].as_array().unwrap().iter().any(|r| {
        let has = |k: &str, v: &str| r[k].as_array().unwrap().iter().any(|x| x == v || x == "*");
        has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
    })
}

#[test]
fn the_console_is_served_on_its_own_port_and_asks_the_api_server_only_who_and_what() {
    let objects = render(&[]);
    let cfg = gateway_config(&objects);
    assert_eq!(cfg["console"]["listen"], "0.0.0.0:6768");
    assert_eq!(cfg["console"]["kubernetes"], true);
    let service = get(&objects, "Service", "paddock-gateway");
    let ports: Vec<_> =
        service["spec"]["ports"].as_array().unwrap().iter().map(|p| (p["name"].clone(), p["port"].clone())).collect();
    assert!(ports.contains(&(Value::from("console"), Value::from(6768))), "{ports:?}");
    let deployment = get(&objects, "Deployment", "paddock-gateway");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["automountServiceAccountToken"], true,
        "TokenReview needs the token"
    );
    // The gateway's ServiceAccount may create TokenReviews and SubjectAccessReviews: nothing else.
    let role = get(&objects, "ClusterRole", "paddock-gateway-console");
    assert!(grants(role, "authentication.k8s.io", "tokenreviews", "create"));
    assert!(grants(role, "authorization.k8s.io", "subjectaccessreviews", "create"));
    assert_eq!(role["rules"].as_array().unwrap().len(), 2);
    for r in role["rules"].as_array().unwrap() {
        assert_eq!(r["verbs"], serde_json::json!(["create"]));
    }
    let binding = get(&objects, "ClusterRoleBinding", "paddock-gateway-console");
    assert_eq!(binding["subjects"][0]["name"], "paddock-gateway");
    // Without named peers the console's port is not opened by the NetworkPolicy (port-forward still works).
    let np = get(&objects, "NetworkPolicy", "paddock-gateway");
    assert_eq!(np["spec"]["ingress"].as_array().unwrap().len(), 1);
    assert!(find(&objects, "Ingress", "paddock-gateway-console").is_none());
    // An Ingress, with the ingress controller's pods let in to the console's port only.
    let objects = render(&[
        "gateway.console.ingress.enabled=true",
        "gateway.console.ingress.host=paddock.example.com",
        "networkPolicy.consoleIngress[0].namespaceSelector.matchLabels.name=ingress-nginx",
    ]);
    let ingress = get(&objects, "Ingress", "paddock-gateway-console");
    assert_eq!(ingress["spec"]["rules"][0]["host"], "paddock.example.com");
    // The console's port speaks TLS (the gateway's default): the ingress controller is told so.
    assert_eq!(ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"], "HTTPS");
    let plain = render(&[
        "gateway.console.ingress.enabled=true",
        "gateway.console.ingress.host=paddock.example.com",
        "gateway.tls.enabled=false",
    ]);
    let plain = get(&plain, "Ingress", "paddock-gateway-console");
    assert!(plain["metadata"]["annotations"].is_null(), "{plain}");
    assert_eq!(ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["name"], "console");
    let np = get(&objects, "NetworkPolicy", "paddock-gateway");
    let console_rule = &np["spec"]["ingress"][1];
    assert_eq!(console_rule["ports"][0]["port"], 6768);
    assert_eq!(console_rule["from"][0]["namespaceSelector"]["matchLabels"]["name"], "ingress-nginx");
    let err = try_render(&["gateway.console.ingress.enabled=true"]).unwrap_err();
    assert!(err.contains("gateway.console.ingress.host"), "{err}");
    // Turned off: no port, no role, and no ServiceAccount token in the gateway's pod.
    let objects = render(&["gateway.console.enabled=false"]);
    assert!(gateway_config(&objects)["console"].is_null());
    assert!(find(&objects, "ClusterRole", "paddock-gateway-console").is_none());
    let deployment = get(&objects, "Deployment", "paddock-gateway");
    assert_eq!(deployment["spec"]["template"]["spec"]["automountServiceAccountToken"], false);
    let service = get(&objects, "Service", "paddock-gateway");
    assert_eq!(service["spec"]["ports"].as_array().unwrap().len(), 1);
}
