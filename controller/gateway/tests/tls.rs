//! The gateway served over TLS on loopback (as in a cluster, where runners and the controller reach it over
//! the pod network): a client that trusts the gateway's CA completes a session; one that does not, or that
//! calls it by a name the certificate does not hold, is refused; plain HTTP to the TLS port is answered with
//! a sentence and never served; the egress proxy works inside TLS; a renewed certificate is served without a
//! restart; and the certificate the Helm chart generates is one the gateway serves for the Service's names.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use paddock_gateway::config::{GatewayConfig, TlsConfig};
use paddock_gateway::server;
use paddock_gateway::tls::{GeneratedCertificates, PLAIN_HTTP_REFUSAL, generate};
use serde_json::{Value, json};
use support::{ADMIN, echo_server, new_session, request, write_repo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Env {
    url: String,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    ca_pem: String,
    tls: TlsConfig,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn write_pair(dir: &Path, c: &GeneratedCertificates) -> TlsConfig {
    std::fs::write(dir.join("tls.crt"), &c.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &c.key_pem).unwrap();
    TlsConfig { cert_file: dir.join("tls.crt"), key_file: dir.join("tls.key") }
}

/// A gateway over TLS with a certificate for 127.0.0.1 and `localhost`; `adjust` changes its configuration.
async fn start_with(adjust: impl FnOnce(&Path, &mut GatewayConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let certs = generate(&["127.0.0.1", "localhost"]).unwrap();
    let tls = write_pair(dir.path(), &certs);
    let mut cfg = support::config(dir.path());
    cfg.tls = Some(tls.clone());
    adjust(dir.path(), &mut cfg);
    let (_, url, server) = server::serve_loopback(&cfg).await.expect("gateway serves TLS");
    let addr = url.strip_prefix("https://").expect("an https URL").parse().unwrap();
    Env { url, addr, dir, ca_pem: certs.ca_pem, tls, server }
}

async fn start() -> Env {
    start_with(|_, _| {}).await
}

/// A client that trusts `ca_pem` alone.
fn trusting(ca_pem: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
}

/// An error with its causes: reqwest's own message leaves out the TLS reason.
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut c = e.source();
    while let Some(e) = c {
        out = format!("{out}: {e}");
        c = e.source();
    }
    out
}

#[tokio::test]
async fn a_client_that_trusts_the_gateway_ca_completes_a_session() {
    let env = start().await;
    let client = trusting(&env.ca_pem).build().unwrap();
    let (id, token) = new_session(&client, &env.url, "coder").await;
    let (path, body) = request("anthropic", "claude-sonnet-4-5", &[("user", "hello")], false);
    let r = client.post(format!("{}{path}", env.url)).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "Hello from the scripted model.", "{v}");
    let r = client.get(format!("{}/v1/sessions/{id}", env.url)).bearer_auth(ADMIN).send().await.unwrap();
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["usage"]["inputTokens"], 100, "the request was metered: {info}");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_or_uses_another_name_is_refused() {
    let env = start().await;
    // The system's roots only.
    let e = reqwest::Client::new().get(format!("{}/healthz", env.url)).send().await.unwrap_err();
    assert!(causes(&e).contains("UnknownIssuer"), "{}", causes(&e));
    // Another installation's CA: named as this one is (as two installations' generated CAs are), so the
    // client finds it and the signature does not verify.
    let other = generate(&["127.0.0.1"]).unwrap();
    let e = trusting(&other.ca_pem).build().unwrap().get(format!("{}/healthz", env.url)).send().await.unwrap_err();
    assert!(causes(&e).contains("BadSignature"), "{}", causes(&e));
    // The right CA, a name the certificate does not hold.
    let client = trusting(&env.ca_pem).resolve("paddock-gateway.elsewhere.svc", env.addr).build().unwrap();
    let url = format!("https://paddock-gateway.elsewhere.svc:{}/healthz", env.addr.port());
    let e = client.get(url).send().await.unwrap_err();
    assert!(causes(&e).contains("certificate not valid for name \"paddock-gateway.elsewhere.svc\""), "{}", causes(&e));
    // And by a name it holds, it works.
    let r = trusting(&env.ca_pem).build().unwrap();
    let ok = r.get(format!("https://localhost:{}/healthz", env.addr.port())).send().await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_answered_with_why_and_never_served() {
    let env = start().await;
    let plain = format!("http://{}", env.addr);
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{plain}/v1/sessions"))
        .bearer_auth(ADMIN)
        .json(&json!({"agent": "coder", "owner": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), PLAIN_HTTP_REFUSAL);
    // A proxy request in clear (a sandbox configured with `http://`) gets the same answer.
    let mut tcp = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    tcp.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 ") && answer.ends_with(PLAIN_HTTP_REFUSAL), "{answer}");
    // Nothing was served: no session was made.
    let r = trusting(&env.ca_pem)
        .build()
        .unwrap()
        .get(format!("{}/v1/sessions", env.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
}

/// Answers every request with its method and URI as received.
async fn http_server() -> u16 {
    let app = axum::Router::new()
        .fallback(|req: axum::extract::Request| async move { format!("{} {}", req.method(), req.uri()) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test]
async fn the_egress_proxy_works_inside_tls() {
    let echo = echo_server().await;
    let web = http_server().await;
    let env = start_with(|dir, cfg| {
        let agent = format!(
            "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {{name: tunneler}}\nspec:\n  harness: custom\n  \
             model: claude-sonnet-4-5\n  sandbox:\n    egress: [\"127.0.0.1/32:{echo}\", \"plain.test:{web}\"]\n"
        );
        std::fs::write(dir.join("repo/agents/tunneler.yaml"), agent).unwrap();
        cfg.egress.resolve.insert("plain.test".into(), "127.0.0.1".parse().unwrap());
        cfg.egress.allow_loopback = true;
    })
    .await;
    let client = trusting(&env.ca_pem).build().unwrap();
    let (_, token) = new_session(&client, &env.url, "tunneler").await;

    // CONNECT inside the TLS connection, then bytes through the tunnel.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::pem::PemObject::from_pem_slice(env.ca_pem.as_bytes()).unwrap()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("paddock:{token}"));
    let target = format!("127.0.0.1:{echo}");
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(tls.read(&mut b).await.unwrap(), 1, "closed before the answer: {head:?}");
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tls.write_all(b"ping through two layers\n").await.unwrap();
    let mut back = vec![0u8; 24];
    tls.read_exact(&mut back).await.unwrap();
    assert_eq!(back, b"ping through two layers\n");

    // An https:// proxy URL, as git and curl use one (`https_proxy=https://paddock:TOKEN@gateway`).
    let proxy = reqwest::Proxy::all(format!("https://paddock:{token}@localhost:{}", env.addr.port())).unwrap();
    let via = trusting(&env.ca_pem).proxy(proxy).build().unwrap();
    let r = via.get(format!("http://plain.test:{web}/hello")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "GET /hello", "forwarded by the gateway in origin form");
}

/// As a Secret volume updates a file: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let env = start().await;
    let healthz = format!("{}/healthz", env.url);
    let renewed = generate(&["127.0.0.1"]).unwrap();
    replace(&env.tls.cert_file, &renewed.cert_pem);
    replace(&env.tls.key_file, &renewed.key_pem);
    // The files are looked at again at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = trusting(&renewed.ca_pem).build().unwrap().get(&healthz).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
    let e = trusting(&env.ca_pem).build().unwrap().get(&healthz).send().await.unwrap_err();
    assert!(causes(&e).contains("BadSignature"), "the old CA no longer verifies: {}", causes(&e));
    let _ = &env.dir;
}

fn helm() -> PathBuf {
    for var in ["PADDOCK_HELM", "PADDOCK_E2E_HELM"] {
        if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
    }
    let ci = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/npm-helm/bin/helm");
    if ci.is_file() { ci } else { PathBuf::from("helm") }
}

#[tokio::test]
async fn the_certificate_the_chart_generates_is_served_for_the_service_names() {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/paddock");
    let out = std::process::Command::new(helm())
        .args(["template", "paddock"])
        .arg(&chart)
        .args([
            "-n",
            "paddock-system",
            "--show-only",
            "templates/gateway-tls.yaml",
            "--show-only",
            "templates/gateway.yaml",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run helm ({e}): install helm, set PADDOCK_HELM, or run .ci/run once"));
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = text
        .split("\n---\n")
        .filter_map(|d| serde_yaml_ng::from_str::<Value>(d).ok())
        .filter(|v| !v.is_null())
        .collect();
    let doc = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name}"))
    };
    let secret = doc("Secret", "paddock-gateway-tls");
    let data = |k: &str| {
        let b64 = secret["data"][k].as_str().unwrap();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
    };
    // The chart's own gateway configuration, read as the gateway reads it, with the files where it says.
    let rendered = doc("ConfigMap", "paddock-gateway")["data"]["gateway.yaml"].as_str().unwrap();
    let chart_cfg = GatewayConfig::parse(rendered, "gateway.yaml").unwrap();
    let tls = chart_cfg.tls.expect("the chart configures TLS");
    assert_eq!(
        (tls.cert_file.to_str(), tls.key_file.to_str()),
        (Some("/var/run/paddock/tls/tls.crt"), Some("/var/run/paddock/tls/tls.key"))
    );

    let ca = data("ca.crt");
    let env = start_with(|dir, cfg| {
        std::fs::write(dir.join("tls.crt"), data("tls.crt")).unwrap();
        std::fs::write(dir.join("tls.key"), data("tls.key")).unwrap();
        cfg.tls = Some(TlsConfig { cert_file: dir.join("tls.crt"), key_file: dir.join("tls.key") });
    })
    .await;
    for name in [
        "paddock-gateway",
        "paddock-gateway.paddock-system",
        "paddock-gateway.paddock-system.svc",
        "paddock-gateway.paddock-system.svc.cluster.local",
    ] {
        let client = trusting(&ca).resolve(name, env.addr).build().unwrap();
        let r = client.get(format!("https://{name}:{}/healthz", env.addr.port())).send().await;
        let r = r.unwrap_or_else(|e| panic!("{name}: {}", causes(&e)));
        assert_eq!(r.text().await.unwrap(), "ok", "{name}");
    }
}
