//! The credential broker end to end over loopback: a client in a "sandbox" opens `CONNECT` through the
//! gateway to a brokered host, trusts only Paddock's CA (fetched from `/v1/egress/ca.pem`), and talks HTTP/1.1
//! inside TLS; a real HTTPS stand-in for the GitHub API (its own test CA, listed in `egress.trust`; the name
//! mapped to 127.0.0.1 by `egress.resolve`) echoes what it got.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use paddock_gateway::config::GatewayConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "api.github.test";
const TOKEN: &str = "ghp_brokered0123456789";
/// Resolves to the stand-in too, whose certificate is not for this name.
const IMPOSTOR: &str = "impostor.github.test";

/// The HTTPS stand-in: what it received, one JSON object per request.
struct StandIn {
    port: u16,
    seen: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StandIn {
    fn seen(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Starts the stand-in for `name` with a certificate of a fresh test CA, whose PEM goes to `ca_file`.
async fn stand_in(name: &str, ca_file: &Path) -> StandIn {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "stand-in test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(ca_file, ca_cert.pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let mut headers = serde_json::Map::new();
                        for (k, v) in &parts.headers {
                            let entry = headers.entry(k.as_str()).or_insert_with(|| json!([]));
                            entry.as_array_mut().unwrap().push(json!(String::from_utf8_lossy(v.as_bytes())));
                        }
                        let got = json!({
                            "method": parts.method.as_str(),
                            "path": parts.uri.to_string(),
                            "headers": headers,
                            "body": String::from_utf8_lossy(&body),
                        });
                        log.lock().unwrap().push(got.clone());
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(got.to_string()))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    StandIn { port, seen, task }
}

/// The repo: an Agent with a GitHub token brokered for the stand-in, one whose secret is missing, and rules
/// on what the broker sees (method, JSON body, GraphQL operation).
fn write_broker_repo(dir: &Path, port: u16) {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("agents.yaml"),
        format!(
            r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {{name: brokered}}
spec:
  harness: custom
  model: claude-sonnet-4-5
  sandbox: {{egress: ["{HOST}:{port}", "{IMPOSTOR}:{port}"]}}
  credentials:
    - {{host: "{HOST}:{port}", secretName: github, key: token}}
    - {{host: "{IMPOSTOR}:{port}", secretName: github, key: token}}
---
apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {{name: unresolved}}
spec:
  harness: custom
  model: claude-sonnet-4-5
  credentials:
    - {{host: "{HOST}", secretName: github, key: absent}}
"#
        ),
    )
    .unwrap();
    std::fs::write(
        repo.join("policy.yaml"),
        r#"apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: api-writes}
spec:
  rules:
    - name: no-deletes
      use: cel
      on: [egress]
      with: {expression: 'has(event.method) && event.method == "DELETE"', reason: no deletes through the API}
    - name: no-force
      use: cel
      on: [egress]
      with: {expression: 'has(event.method) && event.body != null && has(event.body.force) && event.body.force == true', reason: no force updates}
    - name: no-mutations
      use: cel
      on: [egress]
      with: {expression: 'has(event.operation) && event.operation["type"] == "mutation"', reason: no GraphQL mutations}
"#,
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("secrets/github")).unwrap();
    std::fs::write(dir.join("secrets/github/token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN).unwrap();
    std::fs::write(dir.join("script.yaml"), SCRIPT).unwrap();
}

fn broker_config(dir: &Path) -> GatewayConfig {
    let mut cfg = config(dir);
    cfg.egress.resolve.insert(HOST.into(), "127.0.0.1".parse().unwrap());
    cfg.egress.resolve.insert(IMPOSTOR.into(), "127.0.0.1".parse().unwrap());
    cfg.egress.trust = vec![dir.join("stand-in-ca.pem")];
    cfg.egress.secrets_dir = Some(dir.join("secrets"));
    cfg.egress.max_inspect_bytes = 4096;
    cfg
}

/// A gateway, the stand-in, and a session of `brokered` with its token.
struct Setup {
    t: TestGateway,
    up: StandIn,
    id: String,
    token: String,
    ca: String,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let up = stand_in(HOST, &dir.path().join("stand-in-ca.pem")).await;
    write_broker_repo(dir.path(), up.port);
    let t = TestGateway::with_config(dir.path(), broker_config(dir.path())).await;
    let (id, token) = t.session("brokered").await;
    let ca = paddock_ca(&t).await;
    Setup { t, up, id, token, ca, _dir: dir }
}

/// The CA a sandbox trusts, as it fetches it: `GET /v1/egress/ca.pem`, no credential.
async fn paddock_ca(t: &TestGateway) -> String {
    let r = t.client.get(format!("{}/v1/egress/ca.pem", t.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let pem = r.text().await.unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----") && !pem.contains("PRIVATE"), "{pem}");
    pem
}

/// `CONNECT host:port` through the gateway with the session token; the proxy's answer head on refusal.
async fn tunnel(t: &TestGateway, token: &str, authority: &str) -> Result<TcpStream, String> {
    let mut tcp = TcpStream::connect(t.url.trim_start_matches("http://")).await.unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("paddock:{token}"));
    let head =
        format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nProxy-Authorization: Basic {auth}\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        got.push(byte[0]);
    }
    let got = String::from_utf8_lossy(&got).into_owned();
    if got.starts_with("HTTP/1.1 200") { Ok(tcp) } else { Err(got) }
}

/// TLS inside the tunnel, trusting only `ca_pem`, asking for `sni`.
async fn tls(tcp: TcpStream, ca_pem: &str, sni: &str) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await
}

/// Sends raw bytes through a brokered tunnel and reads until the gateway closes it.
async fn raw(s: &Setup, bytes: &[u8]) -> String {
    let tcp = tunnel(&s.t, &s.token, &format!("{HOST}:{}", s.up.port)).await.unwrap();
    let mut tls = tls(tcp, &s.ca, HOST).await.expect("the leaf verifies for the host against Paddock's CA");
    tls.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut out)).await.expect("answer in time");
    String::from_utf8_lossy(&out).into_owned()
}

/// The JSON body of the last response in `answer` (the stand-in's echo).
fn echo(answer: &str) -> Value {
    let body = answer.rsplit("\r\n\r\n").next().unwrap();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

fn statuses(answer: &str) -> Vec<&str> {
    answer.match_indices("HTTP/1.1 ").map(|(i, _)| &answer[i + 9..i + 12]).collect()
}

#[tokio::test]
async fn the_upstream_sees_the_session_credential_never_the_clients() {
    let s = setup().await;
    let port = s.up.port;
    let answer = raw(
        &s,
        b"GET /repos/acme/app?per_page=1 HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer agent-own\r\n\
          Cookie: user_session=stolen\r\nProxy-Authorization: Basic eDp5\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&answer), ["200"], "{answer}");
    let got = echo(&answer);
    assert_eq!(got["path"], "/repos/acme/app?per_page=1");
    assert_eq!(got["headers"]["authorization"], json!([format!("Bearer {TOKEN}")]), "{got}");
    assert_eq!(got["headers"]["host"], json!([format!("{HOST}:{port}")]), "the upstream is the CONNECT host");
    assert!(got["headers"].get("cookie").is_none() && got["headers"].get("proxy-authorization").is_none(), "{got}");
    assert!(!answer.contains("agent-own") && !answer.contains("stolen"), "the client's own never left: {answer}");

    // The decision saw the request: method and path in the audit log's egress rows.
    let audit = s.t.audit(&s.id).await;
    assert!(audit.iter().filter(|a| a["phase"] == "egress").count() >= 2, "CONNECT and the request: {audit:?}");
}

#[tokio::test]
async fn a_tls_client_asking_for_another_name_is_cut() {
    let s = setup().await;
    let tcp = tunnel(&s.t, &s.token, &format!("{HOST}:{}", s.up.port)).await.unwrap();
    let err = tls(tcp, &s.ca, "other.test").await.expect_err("SNI other than the CONNECT host");
    assert!(!err.to_string().is_empty());
    // A client that does not trust Paddock's CA cannot be fooled into thinking it talks to the host: the leaf
    // is Paddock's, not the stand-in's.
    let tcp = tunnel(&s.t, &s.token, &format!("{HOST}:{}", s.up.port)).await.unwrap();
    let other_ca = std::fs::read_to_string(s._dir.path().join("stand-in-ca.pem")).unwrap();
    assert!(tls(tcp, &other_ca, HOST).await.is_err());
    assert!(s.up.seen().is_empty());
}

#[tokio::test]
async fn refused_requests_get_403_and_never_reach_the_upstream() {
    let s = setup().await;
    let delete =
        raw(&s, b"DELETE /repos/acme/app/git/refs/heads/main HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(statuses(&delete), ["403"], "{delete}");
    assert!(delete.contains("api-writes") && delete.contains("no deletes"), "{delete}");

    let body = r#"{"sha":"0123456789012345678901234567890123456789","force":true}"#;
    // Labelled as plain text, the host would still read it as JSON: so does the decision.
    let patch = format!(
        "PATCH /repos/acme/app/git/refs/heads/main HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(&s, patch.as_bytes()).await;
    assert_eq!(statuses(&answer), ["403"], "{answer}");
    assert!(answer.contains("no force updates"), "{answer}");

    let gql = json!({"query": "mutation { deleteRef(input: {refId: \"x\"}) { clientMutationId } }"}).to_string();
    let post = format!(
        "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{gql}",
        gql.len()
    );
    let answer = raw(&s, post.as_bytes()).await;
    assert_eq!(statuses(&answer), ["403"], "{answer}");
    assert!(answer.contains("no GraphQL mutations"), "{answer}");
    assert!(s.up.seen().is_empty(), "nothing refused reached the upstream: {:?}", s.up.seen());

    // A query passes, and the upstream gets the body unchanged.
    let q = json!({"query": "{ viewer { login } }"}).to_string();
    let post = format!(
        "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{q}",
        q.len()
    );
    let answer = raw(&s, post.as_bytes()).await;
    assert_eq!(statuses(&answer), ["200"], "{answer}");
    assert_eq!(echo(&answer)["body"], q);
}

#[tokio::test]
async fn pipelined_requests_are_each_decided_and_smuggling_does_not_pass() {
    let s = setup().await;
    let answer = raw(
        &s,
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nDELETE /two HTTP/1.1\r\nHost: x\r\n\r\nGET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&answer), ["200", "403", "200"], "{answer}");
    let paths: Vec<Value> = s.up.seen().iter().map(|r| r["path"].clone()).collect();
    assert_eq!(paths, [json!("/one"), json!("/three")]);

    // Content-Length and chunked together, a DELETE hidden where one parser sees a body and another a
    // request: it never reaches the upstream undecided.
    let smuggle =
        b"POST /repos/acme/app/issues HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
0\r\n\r\nDELETE /repos/acme/app HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = raw(&s, smuggle).await;
    // Transfer-Encoding wins (RFC 9112): the POST has an empty body, and the connection closes after it (a
    // message framed two ways is not trusted with a next one): the DELETE is never read.
    assert_eq!(statuses(&answer), ["200"], "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    let seen = s.up.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!((&seen[2]["method"], &seen[2]["body"]), (&json!("POST"), &json!("")));
    for r in seen {
        assert_ne!(r["method"], "DELETE", "{r}");
        let h = &r["headers"];
        assert!(!(h.get("content-length").is_some() && h.get("transfer-encoding").is_some()), "{r}");
    }
}

#[tokio::test]
async fn bodies_the_gateway_cannot_read_are_refused() {
    let s = setup().await;
    let big = format!("{{\"title\":\"{}\"}}", "a".repeat(5000));
    let post = format!(
        "POST /repos/acme/app/issues HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{big}",
        big.len()
    );
    let answer = raw(&s, post.as_bytes()).await;
    assert_eq!(statuses(&answer), ["413"], "{answer}");
    assert!(answer.contains("maxInspectBytes"), "{answer}");

    let gz = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03";
    let mut post = format!(
        "PATCH /repos/acme/app/git/refs/heads/main HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        gz.len()
    )
    .into_bytes();
    post.extend_from_slice(gz);
    let answer = raw(&s, &post).await;
    assert_eq!(statuses(&answer), ["415"], "{answer}");

    let bad = "{\"force\": tru";
    let post = format!(
        "PATCH /x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{bad}",
        bad.len()
    );
    let answer = raw(&s, post.as_bytes()).await;
    assert_eq!(statuses(&answer), ["400"], "{answer}");

    // Other spellings of the same GraphQL call: a lowercase method, a query string.
    let gql = json!({"query": "mutation { deleteRef(input: {refId: \"x\"}) { clientMutationId } }"}).to_string();
    let post =
        format!("post /graphql HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{gql}", gql.len());
    assert_eq!(statuses(&raw(&s, post.as_bytes()).await), ["400"]);
    let get = "GET /graphql?query=mutation%7BdeleteRef%7D HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(statuses(&raw(&s, get.as_bytes()).await), ["405"]);
    assert!(s.up.seen().is_empty(), "{:?}", s.up.seen());
}

#[tokio::test]
async fn paths_go_upstream_unnormalised_and_http_1_0_works() {
    let s = setup().await;
    let answer = raw(&s, b"GET /repos/acme/../app/%2e%2e/%2Fx?q=a%20b HTTP/1.0\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(echo(&answer)["path"], "/repos/acme/../app/%2e%2e/%2Fx?q=a%20b");
    // A request naming another host in its target is refused; the upstream is the CONNECT host only.
    let answer =
        raw(&s, b"GET https://evil.example/x HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n").await;
    assert_eq!(statuses(&answer), ["400"], "{answer}");
    assert_eq!(s.up.seen().len(), 1);
}

#[tokio::test]
async fn an_upstream_whose_certificate_is_not_for_the_host_gets_nothing() {
    let s = setup().await;
    let tcp = tunnel(&s.t, &s.token, &format!("{IMPOSTOR}:{}", s.up.port)).await.unwrap();
    let mut tls = tls(tcp, &s.ca, IMPOSTOR).await.unwrap();
    tls.write_all(b"GET /user HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(20), tls.read_to_string(&mut out)).await.unwrap().unwrap();
    assert_eq!(statuses(&out), ["502"], "{out}");
    assert!(out.contains("certificate"), "{out}");
    assert!(s.up.seen().is_empty(), "the credential never went to a host that could not prove its name");
}

#[tokio::test]
async fn credentials_survive_a_restart_sealed_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let up = stand_in(HOST, &dir.path().join("stand-in-ca.pem")).await;
    write_broker_repo(dir.path(), up.port);
    let (id, ca) = {
        let t = TestGateway::with_config(dir.path(), broker_config(dir.path())).await;
        let (id, _) = t.session("brokered").await;
        let s = t.gw.session(&id).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains(TOKEN) && shown.contains(HOST), "{shown}");
        (id, paddock_ca(&t).await)
    };
    // The CA key is the owner's only; the CA is the same after the restart.
    use std::os::unix::fs::PermissionsExt;
    let key = dir.path().join("data/egress-ca.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    // Nothing the gateway wrote holds the token in the clear (database, its log).
    for entry in walk(&dir.path().join("data")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()), "{} holds the token", entry.display());
    }

    // Remove the secret: after the restart the credential comes from the database, not the file.
    std::fs::remove_file(dir.path().join("secrets/github/token")).unwrap();
    let t = TestGateway::with_config(dir.path(), broker_config(dir.path())).await;
    assert_eq!(paddock_ca(&t).await, ca);
    let s = t.gw.session(&id).unwrap();
    let c = t.gw.broker.credential(&s, HOST, up.port).expect("the credential survived the restart");
    assert_eq!(c.value, format!("Bearer {TOKEN}"));
    assert!(!format!("{c:?}").contains(TOKEN));
    assert_eq!(s.state().await.sandbox.brokered, [format!("{HOST}:{}", up.port), format!("{IMPOSTOR}:{}", up.port)]);

    // An ended session's credential is gone from the broker and the database.
    t.gw.end_session(&id, "Succeeded", "done").await.unwrap();
    assert!(t.gw.broker.credential(&s, HOST, up.port).is_none());
    drop(t);
    let t = TestGateway::with_config(dir.path(), broker_config(dir.path())).await;
    let s = t.gw.session(&id).unwrap();
    assert!(format!("{s:?}").contains("credentials: []"), "{s:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[tokio::test]
async fn a_missing_secret_fails_the_session_naming_the_field_and_path() {
    let s = setup().await;
    let r =
        s.t.client
            .post(format!("{}/v1/sessions", s.t.url))
            .bearer_auth(ADMIN)
            .json(&json!({"agent": "unresolved", "owner": "alice"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 422);
    let text = r.text().await.unwrap();
    assert!(text.contains("spec.credentials[0]") && text.contains("secrets/github/absent"), "{text}");
}

#[tokio::test]
async fn an_open_tunnel_sends_nothing_once_its_session_ends() {
    let s = setup().await;
    let tcp = tunnel(&s.t, &s.token, &format!("{HOST}:{}", s.up.port)).await.unwrap();
    let tls = tls(tcp, &s.ca, HOST).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let get = |path: &str| {
        hyper::Request::get(path).header("host", HOST).body(http_body_util::Empty::<Bytes>::new()).unwrap()
    };
    let r = sender.send_request(get("/first")).await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.into_body().collect().await.unwrap();

    s.t.gw.end_session(&s.id, "Succeeded", "done").await.unwrap();
    // The same connection, still open from the client's side: refused, or closed by the gateway.
    if sender.ready().await.is_ok()
        && let Ok(r) = sender.send_request(get("/second")).await
    {
        assert_eq!(r.status(), 403);
    }
    let paths: Vec<Value> = s.up.seen().iter().map(|r| r["path"].clone()).collect();
    assert_eq!(paths, [json!("/first")]);
}

/// In Kubernetes the gateway reads no Secrets (no `secretsDir`): the controller hands a session its
/// credentials, and a sub-agent started by its parent borrows the parent's credential for each host its own
/// Agent brokers — nothing for a host the parent does not hold.
#[tokio::test]
async fn a_sub_agent_borrows_its_parents_credential_for_the_hosts_its_agent_brokers() {
    let dir = tempfile::tempdir().unwrap();
    let up = stand_in(HOST, &dir.path().join("stand-in-ca.pem")).await;
    write_broker_repo(dir.path(), up.port);
    let port = up.port;
    std::fs::write(
        dir.path().join("repo/children.yaml"),
        format!(
            r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {{name: lead}}
spec:
  harness: custom
  model: claude-sonnet-4-5
  subAgents: [helper, greedy, plain]
  credentials:
    - {{host: "{HOST}:{port}", secretName: github, key: token}}
---
apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {{name: helper}}
spec:
  harness: custom
  model: claude-sonnet-4-5
  credentials:
    - {{host: "{HOST}:{port}", secretName: other, key: token}}
---
apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {{name: greedy}}
spec:
  harness: custom
  model: claude-sonnet-4-5
  credentials:
    - {{host: "{IMPOSTOR}:{port}", secretName: github, key: token}}
---
apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {{name: plain}}
spec:
  harness: custom
  model: claude-sonnet-4-5
"#
        ),
    )
    .unwrap();
    let mut cfg = broker_config(dir.path());
    cfg.egress.secrets_dir = None;
    let t = TestGateway::with_config(dir.path(), cfg).await;
    let value = format!("Bearer {TOKEN}");
    let r = t
        .client
        .post(format!("{}/v1/sessions", t.url))
        .bearer_auth(ADMIN)
        .json(&json!({"agent": "lead", "owner": "alice",
            "credentials": [{"host": HOST, "port": port, "header": "authorization", "value": value}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let parent: Value = r.json().await.unwrap();
    let (parent_id, parent_token) = (parent["id"].as_str().unwrap(), parent["token"].as_str().unwrap());
    let child = |agent: &'static str| {
        t.client
            .post(format!("{}/v1/sessions/{parent_id}/children", t.url))
            .bearer_auth(parent_token)
            .json(&json!({"agent": agent}))
            .send()
    };

    let r = child("helper").await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let helper: Value = r.json().await.unwrap();
    let helper = t.gw.session(helper["id"].as_str().unwrap()).unwrap();
    let held = t.gw.broker.credential(&helper, HOST, port).expect("the helper borrows the parent's credential");
    assert_eq!(held.value, value);
    assert!(t.gw.broker.credential(&helper, IMPOSTOR, port).is_none());

    let r = child("greedy").await.unwrap();
    assert_eq!(r.status(), 422);
    let text = r.text().await.unwrap();
    assert!(text.contains("spec.credentials[0]") && text.contains("is not brokered for session"), "{text}");

    let r = child("plain").await.unwrap();
    assert_eq!(r.status(), 201);
    let plain: Value = r.json().await.unwrap();
    let plain = t.gw.session(plain["id"].as_str().unwrap()).unwrap();
    assert!(t.gw.broker.credential(&plain, HOST, port).is_none(), "an Agent that brokers nothing gets nothing");
}

#[tokio::test]
async fn method_overrides_are_refused_before_the_decision() {
    let s = setup().await;
    // Each would let a POST the rules allow become a DELETE or PATCH at a host that honours overrides.
    for (query, header) in [
        ("", "X-HTTP-Method-Override: DELETE\r\n"),
        ("", "X-HTTP-Method: DELETE\r\n"),
        ("", "x-method-override: PATCH\r\n"),
        ("?_method=DELETE", ""),
        ("?per_page=1&%5fmethod=DELETE", ""),
        ("?_Method=DELETE", ""),
    ] {
        let req = format!(
            "POST /repos/acme/app/issues{query} HTTP/1.1\r\nHost: x\r\n{header}Content-Type: application/json\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        let answer = raw(&s, req.as_bytes()).await;
        assert_eq!(statuses(&answer), ["400"], "{query} {header}: {answer}");
        assert!(answer.contains("method"), "{answer}");
    }
    assert!(s.up.seen().is_empty(), "{:?}", s.up.seen());
    let audit = s.t.audit(&s.id).await;
    assert!(audit.iter().any(|a| a["policy"] == "paddock/egress-method-override"), "{audit:?}");
}

#[tokio::test]
async fn a_graphql_request_with_a_query_string_is_refused() {
    let s = setup().await;
    // The body holds a query the rules allow; the query string may hold the operation the host runs.
    let q = json!({"query": "{ viewer { login } }"}).to_string();
    for path in ["/graphql?query=mutation%7BdeleteRef%7D", "/graphql?", "/api/graphql?x=1"] {
        let post = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{q}",
            q.len()
        );
        let answer = raw(&s, post.as_bytes()).await;
        assert_eq!(statuses(&answer), ["400"], "{path}: {answer}");
        assert!(answer.contains("query string"), "{answer}");
    }
    assert!(s.up.seen().is_empty(), "{:?}", s.up.seen());
}

#[tokio::test]
async fn brokered_tunnels_count_against_the_sessions_connection_limit() {
    let dir = tempfile::tempdir().unwrap();
    let up = stand_in(HOST, &dir.path().join("stand-in-ca.pem")).await;
    write_broker_repo(dir.path(), up.port);
    let mut cfg = broker_config(dir.path());
    cfg.egress.max_connections_per_session = 1;
    let t = TestGateway::with_config(dir.path(), cfg).await;
    let (id, token) = t.session("brokered").await;
    let ca = paddock_ca(&t).await;
    let tcp = tunnel(&t, &token, &format!("{HOST}:{}", up.port)).await.unwrap();
    let open = tls(tcp, &ca, HOST).await.unwrap();
    let refused = tunnel(&t, &token, &format!("{HOST}:{}", up.port)).await.expect_err("a second connection");
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("x-paddock-policy: paddock/egress-limit"), "{refused}");
    let audit = t.audit(&id).await;
    let row = audit.iter().find(|a| a["policy"] == "paddock/egress-limit").unwrap_or_else(|| panic!("{audit:?}"));
    assert!(row["reason"].as_str().unwrap().contains("maxConnectionsPerSession"), "{row}");
    drop(open);
}

#[tokio::test]
async fn an_idle_brokered_connection_closes_after_tunnel_idle_timeout_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let up = stand_in(HOST, &dir.path().join("stand-in-ca.pem")).await;
    write_broker_repo(dir.path(), up.port);
    let mut cfg = broker_config(dir.path());
    cfg.egress.tunnel_idle_timeout_seconds = 1;
    let t = TestGateway::with_config(dir.path(), cfg).await;
    let (_, token) = t.session("brokered").await;
    let ca = paddock_ca(&t).await;
    let tcp = tunnel(&t, &token, &format!("{HOST}:{}", up.port)).await.unwrap();
    let mut tls = tls(tcp, &ca, HOST).await.unwrap();
    tls.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // Keep-alive: the gateway answers and then, with nothing more asked, closes the connection (well before
    // the 30 s it would otherwise wait for a next request).
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the idle brokered connection stayed open");
    let out = String::from_utf8_lossy(&out);
    assert_eq!(statuses(&out), ["200"], "{out}");
}

#[tokio::test]
async fn bodies_a_host_could_read_otherwise_than_the_decision_are_refused() {
    let s = setup().await;
    let send = |ct: &str, body: &str| {
        format!(
            "PATCH /repos/acme/app/git/refs/heads/main HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    // The decision would see `force: false` (the last); a host taking the first forces.
    let twice = r#"{"sha":"0123456789012345678901234567890123456789","force":true,"force":false}"#;
    let answer = raw(&s, send("application/json", twice).as_bytes()).await;
    assert_eq!(statuses(&answer), ["400"], "{answer}");
    assert!(answer.contains("appears twice"), "{answer}");
    // JSON to the decision, `force=true` to a form parser.
    let form = r#"{"sha":"0123456789012345678901234567890123456789","x":"&force=true"}"#;
    let answer = raw(&s, send("application/x-www-form-urlencoded", form).as_bytes()).await;
    assert_eq!(statuses(&answer), ["415"], "{answer}");
    assert!(s.up.seen().is_empty(), "{:?}", s.up.seen());
    let audit = s.t.audit(&s.id).await;
    assert_eq!(audit.iter().filter(|a| a["policy"] == "paddock/egress-inspect").count(), 2, "{audit:?}");
}
