//! The egress proxy over real loopback connections: a gateway whose `egress.resolve` maps test names to
//! 127.0.0.1, a TLS server with a self-made certificate for `registry.test` and `other.test`, a plain-HTTP
//! server that echoes what it got, and a TCP echo server. Clients are raw sockets (to say exactly what goes
//! on the wire), rustls, and reqwest through the proxy.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use paddock_gateway::config::{EgressConfig, GatewayConfig, SecretSource};
use paddock_gateway::{Gateway, NewSession, server};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "egress-test-admin";

/// The loopback servers standing in for the internet.
struct Upstreams {
    tls_port: u16,
    http_port: u16,
    echo_port: u16,
    cert: CertificateDer<'static>,
    cert_pem: String,
    /// TLS handshakes the TLS server completed.
    handshakes: Arc<AtomicUsize>,
    /// Requests the plain-HTTP server got.
    http_requests: Arc<AtomicUsize>,
}

struct Env {
    gw: Arc<Gateway>,
    /// `127.0.0.1:PORT` of the gateway.
    addr: String,
    url: String,
    token: String,
    up: Upstreams,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn tls_server() -> (u16, CertificateDer<'static>, String, Arc<AtomicUsize>) {
    let key = rcgen::generate_simple_self_signed(vec!["registry.test".into(), "other.test".into()]).unwrap();
    let cert = key.cert.der().clone();
    let cert_pem = key.cert.pem();
    let private = PrivateKeyDer::try_from(key.signing_key.serialize_der()).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], private)
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let count = handshakes.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_owned();
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let body = format!("hello from {sni} at {}", req.uri().path());
                    async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(body)) }
                });
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (port, cert, cert_pem, handshakes)
}

/// Answers every request with what it received: method, URI and headers, as JSON.
async fn http_server() -> (u16, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let count = count.clone();
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            let headers: BTreeMap<String, String> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
                .collect();
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            axum::Json(serde_json::json!({
                "method": parts.method.as_str(),
                "uri": parts.uri.to_string(),
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, requests)
}

/// A gateway whose Agent `coder` may reach the TLS server as `registry.test` and `other.test`, the plain-HTTP
/// server as `plain.test` and as `localhost` (which the SSRF guard must still refuse), and the echo server
/// at the IP address 127.0.0.1. `evil.test` resolves to loopback too but is in no entry.
async fn start() -> Env {
    start_with(|_| {}).await
}

/// [`start`], with the egress configuration adjusted.
async fn start_with(adjust: impl FnOnce(&mut EgressConfig)) -> Env {
    let (tls_port, cert, cert_pem, handshakes) = tls_server().await;
    let (http_port, http_requests) = http_server().await;
    let echo_port = support::echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let agent = format!(
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {{name: coder}}
spec:
  harness: custom
  model: claude-sonnet-4-5
  sandbox:
    egress:
      - registry.test:{tls_port}
      - other.test:{tls_port}
      - plain.test:{http_port}
      - localhost:{http_port}
      - 127.0.0.1/32:{echo_port}
---
apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {{name: no-forbidden-paths}}
spec:
  rules:
    - name: forbidden
      use: cel
      with:
        expression: 'event.phase == "egress" && "path" in event && event.path.startsWith("/forbidden")'
        reason: "nothing under /forbidden"
    - name: no-leaks
      use: cel
      with:
        expression: 'event.phase == "egress" && has(event.body) && event.body != null && has(event.body.leak)'
        reason: "no leaks in request bodies"
"#
    );
    std::fs::write(repo.join("agent.yaml"), agent).unwrap();
    std::fs::write(dir.path().join("admin-token"), ADMIN).unwrap();
    let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let resolve = ["registry.test", "other.test", "plain.test", "evil.test"].map(|n| (n.to_owned(), loopback));
    // As in local mode, where a loopback address entry (a database on the user's machine) is a destination.
    let mut egress =
        EgressConfig { resolve: resolve.into_iter().collect(), allow_loopback: true, ..EgressConfig::default() };
    adjust(&mut egress);
    let cfg = GatewayConfig {
        repo: Some(repo),
        data_dir: Some(dir.path().to_owned()),
        // `PADDOCK_TEST_POSTGRES`: on PostgreSQL, as the CI runs the gateway's tests.
        database: support::database(dir.path()),
        admin_token: Some(SecretSource { env: None, file: Some(dir.path().join("admin-token")) }),
        egress,
        ..GatewayConfig::default()
    };
    let (gw, url, server) = server::serve_loopback(&cfg).await.unwrap();
    let (_, token) = gw
        .create_session(NewSession { agent: "coder".into(), owner: "tester".into(), ..NewSession::default() })
        .await
        .unwrap();
    let addr = url.trim_start_matches("http://").to_owned();
    let up = Upstreams { tls_port, http_port, echo_port, cert, cert_pem, handshakes, http_requests };
    Env { gw, addr, url, token, up, _dir: dir, server }
}

fn basic(token: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("paddock:{token}")))
}

/// An HTTP/1.1 response read off a raw socket: its status, head and body (by `Content-Length`).
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

async fn read_answer(tcp: &mut TcpStream) -> Answer {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(tcp.read(&mut b).await.unwrap(), 1, "the gateway closed before its answer: {head:?}");
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut answer = Answer { status, head, body: String::new() };
    let len: usize = answer.header("content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0u8; len];
    tcp.read_exact(&mut body).await.unwrap();
    answer.body = String::from_utf8(body).unwrap();
    answer
}

/// Sends `CONNECT target` with the given `Proxy-Authorization` (if any) on a new connection.
async fn connect(env: &Env, target: &str, auth: Option<&str>) -> (Answer, TcpStream) {
    let mut tcp = TcpStream::connect(&env.addr).await.unwrap();
    let auth = auth.map(|a| format!("Proxy-Authorization: {a}\r\n")).unwrap_or_default();
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    (read_answer(&mut tcp).await, tcp)
}

/// A raw request on a new connection to the gateway.
async fn raw(env: &Env, request: &str) -> Answer {
    let mut tcp = TcpStream::connect(&env.addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    read_answer(&mut tcp).await
}

fn tls_client(cert: &CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// reqwest with the gateway as its proxy for every scheme, trusting the test certificate.
fn proxied_client(env: &Env, token: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(&env.url).unwrap().basic_auth("paddock", token))
        .add_root_certificate(reqwest::Certificate::from_der(&env.up.cert).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn audit(env: &Env) -> Vec<Value> {
    let rows: Value = reqwest::Client::new()
        .get(format!("{}/v1/audit", env.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    rows.as_array().unwrap().clone()
}

async fn metrics(env: &Env) -> String {
    reqwest::get(format!("{}/metrics", env.url)).await.unwrap().text().await.unwrap()
}

/// The value of a metric line that starts with `prefix` (labels included), 0 when absent.
fn metric(text: &str, prefix: &str) -> u64 {
    text.lines().find(|l| l.starts_with(prefix)).map_or(0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

#[tokio::test]
async fn without_a_session_token_the_proxy_answers_407() {
    let env = start().await;
    let target = format!("registry.test:{}", env.up.tls_port);
    for auth in [None, Some(basic("pdk_wrong")), Some(basic(ADMIN)), Some(format!("Bearer {ADMIN}")), Some(basic(""))] {
        let (a, _) = connect(&env, &target, auth.as_deref()).await;
        assert_eq!(a.status, 407, "{auth:?}: {}", a.head);
        assert_eq!(a.header("proxy-authenticate"), Some("Basic realm=\"paddock\""));
        let get = format!("GET http://plain.test:{}/x HTTP/1.1\r\nHost: plain.test\r\n\r\n", env.up.http_port);
        assert_eq!(raw(&env, &get).await.status, 407);
    }
    assert_eq!(env.up.handshakes.load(Ordering::SeqCst), 0);
    assert_eq!(env.up.http_requests.load(Ordering::SeqCst), 0);
    // The token in any spelling a client uses works: Basic with any user name, or Bearer.
    let (a, _) = connect(&env, &target, Some(&format!("Bearer {}", env.token))).await;
    assert_eq!(a.status, 200);
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("someone:{}", env.token));
    let (a, _) = connect(&env, &target, Some(&format!("basic {b64}"))).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn an_ended_sessions_token_gets_403_saying_so() {
    let env = start().await;
    let s = env.gw.session_for_token(&env.token).await.unwrap();
    env.gw.end_session(&s.id, "Succeeded", "finished").await.unwrap();
    let (a, _) = connect(&env, &format!("registry.test:{}", env.up.tls_port), Some(&basic(&env.token))).await;
    assert_eq!(a.status, 403, "{}", a.head);
    assert!(a.body.contains("ended"), "{}", a.body);
}

#[tokio::test]
async fn a_tunnel_to_an_allowed_host_relays_real_tls_and_is_audited_and_counted() {
    let env = start().await;
    let client = proxied_client(&env, &env.token);
    let url = format!("https://registry.test:{}/hello", env.up.tls_port);
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello from registry.test at /hello");
    // The same with a raw CONNECT and rustls, the name in another case and with a trailing dot.
    let (a, tcp) = connect(&env, &format!("Registry.Test.:{}", env.up.tls_port), Some(&basic(&env.token))).await;
    assert_eq!(a.status, 200, "{}", a.head);
    let name = ServerName::try_from("registry.test").unwrap();
    let mut tls = tls_client(&env.up.cert).connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /raw HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tls.read_to_string(&mut out).await.unwrap();
    assert!(out.ends_with("hello from registry.test at /raw"), "{out}");

    let rows = audit(&env).await;
    let tunnel = rows
        .iter()
        .find(|r| r["phase"] == "egress" && r["verdict"] == "allow")
        .unwrap_or_else(|| panic!("no egress decision in the audit log: {rows:#?}"));
    assert_eq!(tunnel["tool"], format!("connection to registry.test:{}", env.up.tls_port), "{tunnel}");
    let m = metrics(&env).await;
    assert_eq!(metric(&m, r#"paddock_gateway_egress_total{phase="egress",scheme="https",verdict="allow"}"#), 2, "{m}");
    assert!(metric(&m, r#"paddock_gateway_egress_bytes_total{direction="up"}"#) > 200, "{m}");
    assert!(metric(&m, r#"paddock_gateway_egress_bytes_total{direction="down"}"#) > 500, "{m}");
}

#[tokio::test]
async fn a_tunnel_whose_sni_is_another_host_is_cut_before_the_upstream_sees_tls() {
    let env = start().await;
    // `other.test` is allowed too, and the upstream's certificate is good for it: only the rule stops this.
    let (a, tcp) = connect(&env, &format!("registry.test:{}", env.up.tls_port), Some(&basic(&env.token))).await;
    assert_eq!(a.status, 200);
    let name = ServerName::try_from("other.test").unwrap();
    let handshake = tls_client(&env.up.cert).connect(name, tcp).await;
    assert!(handshake.is_err(), "the handshake went through");
    // No ClientHello reached the upstream: it completed no handshake.
    assert_eq!(env.up.handshakes.load(Ordering::SeqCst), 0);
    let rows = audit(&env).await;
    let cut = rows.iter().find(|r| r["policy"] == "paddock/egress-sni").unwrap_or_else(|| panic!("{rows:#?}"));
    assert_eq!(cut["verdict"], "deny");
    let reason = cut["reason"].as_str().unwrap();
    assert!(reason.contains("`other.test`") && reason.contains("registry.test"), "{reason}");
    let m = metrics(&env).await;
    assert_eq!(metric(&m, r#"paddock_gateway_egress_total{phase="egress",scheme="https",verdict="refused"}"#), 1);
}

#[tokio::test]
async fn a_tunnel_to_a_name_must_carry_tls_and_one_to_an_ip_address_may_carry_anything() {
    let env = start().await;
    for first in [&b"GET / HTTP/1.1\r\nHost: registry.test\r\n\r\n"[..], &b"SSH-2.0-OpenSSH_9.6\r\n"[..]] {
        let (a, mut tcp) = connect(&env, &format!("registry.test:{}", env.up.tls_port), Some(&basic(&env.token))).await;
        assert_eq!(a.status, 200);
        tcp.write_all(first).await.unwrap();
        let mut out = Vec::new();
        let _ = tcp.read_to_end(&mut out).await;
        assert!(out.is_empty(), "the tunnel answered: {:?}", String::from_utf8_lossy(&out));
    }
    let rows = audit(&env).await;
    let cuts: Vec<_> = rows.iter().filter(|r| r["policy"] == "paddock/egress-sni").collect();
    assert_eq!(cuts.len(), 2, "{rows:#?}");
    assert!(cuts[0]["reason"].as_str().unwrap().contains("does not carry TLS"), "{}", cuts[0]);

    // A database-like protocol to an address allowed by a CIDR entry is relayed as it is.
    let (a, mut tcp) = connect(&env, &format!("127.0.0.1:{}", env.up.echo_port), Some(&basic(&env.token))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    tcp.write_all(b"\x00\x00\x00\x08\x04\xd2\x16\x2f").await.unwrap();
    let mut back = [0u8; 8];
    tcp.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"\x00\x00\x00\x08\x04\xd2\x16\x2f");
}

#[tokio::test]
async fn a_host_outside_the_allowlist_gets_403_naming_the_policy() {
    let env = start().await;
    // `evil.test` resolves (to loopback) and its port is open: only the allowlist refuses it.
    for target in [
        format!("evil.test:{}", env.up.tls_port),
        format!("registry.test:{}", env.up.http_port),
        format!("127.0.0.1:{}", env.up.tls_port),
        format!("[::ffff:127.0.0.1]:{}", env.up.tls_port),
    ] {
        let (a, _) = connect(&env, &target, Some(&basic(&env.token))).await;
        assert_eq!(a.status, 403, "{target}: {}", a.head);
        assert_eq!(a.header("x-paddock-policy"), Some("paddock/egress"), "{target}");
        assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
        assert!(a.body.contains("paddock/egress") && a.body.contains("spec.sandbox.egress"), "{}", a.body);
    }
    let r =
        proxied_client(&env, &env.token).get(format!("http://evil.test:{}/x", env.up.http_port)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(env.up.handshakes.load(Ordering::SeqCst), 0);
    assert_eq!(env.up.http_requests.load(Ordering::SeqCst), 0);
    let rows = audit(&env).await;
    let denied = rows.iter().filter(|r| r["policy"] == "paddock/egress" && r["verdict"] == "deny").count();
    assert_eq!(denied, 5, "{rows:#?}");
    let m = metrics(&env).await;
    assert_eq!(metric(&m, r#"paddock_gateway_egress_total{phase="egress",scheme="https",verdict="deny"}"#), 4);
    assert_eq!(metric(&m, r#"paddock_gateway_egress_total{phase="egress",scheme="http",verdict="deny"}"#), 1);
}

#[tokio::test]
async fn bad_connect_targets_get_400() {
    let env = start().await;
    for target in ["127.1:443", "2130706433:443", "registry.test", "registry.test:0", "registry..test:443"] {
        let (a, _) = connect(&env, target, Some(&basic(&env.token))).await;
        assert_eq!(a.status, 400, "{target}: {} {}", a.head, a.body);
    }
}

#[tokio::test]
async fn plain_http_is_forwarded_without_proxy_or_hop_by_hop_headers_and_decided_by_its_path() {
    let env = start().await;
    let target = format!("plain.test:{}", env.up.http_port);
    let request = format!(
        "POST http://{target}/api/things?q=1 HTTP/1.1\r\nHost: wrong.example\r\nProxy-Authorization: {}\r\n\
         Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nAuthorization: Bearer the-clients-own\r\n\
         Content-Type: application/json\r\nContent-Length: 11\r\n\r\n{{\"a\": true}}",
        basic(&env.token)
    );
    let a = raw(&env, &request).await;
    assert_eq!(a.status, 200, "{} {}", a.head, a.body);
    let seen: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["uri"], "/api/things?q=1");
    assert_eq!(seen["body"], "{\"a\": true}");
    let headers = seen["headers"].as_object().unwrap();
    assert_eq!(headers["host"], target.as_str());
    assert_eq!(headers["authorization"], "Bearer the-clients-own", "the client's own header passes as it is");
    for gone in ["proxy-authorization", "x-hop", "connection"] {
        assert!(!headers.contains_key(gone), "{gone} reached the upstream: {headers:?}");
    }
    let rows = audit(&env).await;
    let row = rows.iter().find(|r| r["phase"] == "egress").unwrap();
    assert_eq!(row["tool"], format!("POST http://{target}/api/things?q=1"), "{row}");

    // A Policy sees the path: this one refuses anything under /forbidden.
    let client = proxied_client(&env, &env.token);
    let r = client.get(format!("http://{target}/forbidden/x")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-paddock-policy"], "no-forbidden-paths");
    assert!(r.text().await.unwrap().contains("nothing under /forbidden"));
    assert_eq!(env.up.http_requests.load(Ordering::SeqCst), 1);
    // A JSON body the gateway cannot read is refused, not passed unread.
    let r = client
        .post(format!("http://{target}/api"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-paddock-policy"], "paddock/egress-inspect");
    assert_eq!(env.up.http_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn absolute_form_requests_never_reach_the_gateways_own_routes() {
    let env = start().await;
    // With the admin credential and a session token: a proxy request to a host, never the audit route.
    for host in ["x".to_owned(), env.addr.clone()] {
        let request = format!(
            "GET http://{host}/v1/audit HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN}\r\n\
             Proxy-Authorization: {}\r\n\r\n",
            env.addr,
            basic(&env.token)
        );
        let a = raw(&env, &request).await;
        assert_eq!(a.status, 403, "{host}: {} {}", a.head, a.body);
        assert_eq!(a.header("x-paddock-policy"), Some("paddock/egress"));
        // Without a proxy credential: 407, still not the route.
        let request = format!("GET http://{host}/v1/audit HTTP/1.1\r\nAuthorization: Bearer {ADMIN}\r\n\r\n");
        assert_eq!(raw(&env, &request).await.status, 407);
    }
    // The route itself still works in origin form.
    let ok = format!("GET /v1/audit HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN}\r\n\r\n", env.addr);
    assert_eq!(raw(&env, &ok).await.status, 200);
}

#[tokio::test]
async fn a_name_that_dns_resolves_to_loopback_is_refused_even_when_allowed() {
    let env = start().await;
    // `localhost:PORT` is in the allowlist, but DNS (not the test override) points it at 127.0.0.1.
    let (a, _) = connect(&env, &format!("localhost:{}", env.up.http_port), Some(&basic(&env.token))).await;
    assert_eq!(a.status, 403, "{} {}", a.head, a.body);
    assert_eq!(a.header("x-paddock-policy"), Some("paddock/egress-ssrf"));
    assert!(a.body.contains("not a public address"), "{}", a.body);
    let r =
        proxied_client(&env, &env.token).get(format!("http://localhost:{}/x", env.up.http_port)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(env.up.http_requests.load(Ordering::SeqCst), 0);
    let rows = audit(&env).await;
    assert_eq!(rows.iter().filter(|r| r["policy"] == "paddock/egress-ssrf").count(), 2, "{rows:#?}");
}

#[tokio::test]
async fn an_unreachable_host_gets_502() {
    let env = start().await;
    // Allowed, resolved by the override, but nothing listens: take a port and free it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let policy = format!(
        "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {{name: coder}}\nspec:\n  harness: custom\n  \
         model: claude-sonnet-4-5\n  sandbox: {{egress: ['registry.test:{port}']}}\n"
    );
    let dir = PathBuf::from(env._dir.path()).join("repo2");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("agent.yaml"), policy).unwrap();
    env.gw.set_policies(server::load_policy_set(&dir).unwrap());
    let (_, token) = env
        .gw
        .create_session(NewSession { agent: "coder".into(), owner: "tester".into(), ..NewSession::default() })
        .await
        .unwrap();
    let (a, _) = connect(&env, &format!("registry.test:{port}"), Some(&basic(&token))).await;
    assert_eq!(a.status, 502, "{} {}", a.head, a.body);
    assert!(a.body.contains("cannot connect to registry.test"), "{}", a.body);
}

#[tokio::test]
async fn an_open_tunnel_closes_when_its_session_ends() {
    let env = start().await;
    let (a, mut tcp) = connect(&env, &format!("127.0.0.1:{}", env.up.echo_port), Some(&basic(&env.token))).await;
    assert_eq!(a.status, 200);
    tcp.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tcp.read_exact(&mut back).await.unwrap();
    let s = env.gw.session_for_token(&env.token).await.unwrap();
    env.gw.end_session(&s.id, "Succeeded", "finished").await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    assert!(read.is_ok_and(|r| r.is_ok()), "the tunnel outlived its session");
    assert!(rest.is_empty());
}

#[tokio::test]
async fn the_unix_socket_serves_the_proxy_too() {
    let env = start().await;
    let path = env._dir.path().join("gateway.sock");
    let app = server::router(env.gw.clone());
    let serving = tokio::spawn({
        let path = path.clone();
        async move { server::serve_unix(&path, app, std::future::pending()).await }
    });
    for _ in 0..100 {
        if path.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut unix = tokio::net::UnixStream::connect(&path).await.unwrap();
    let target = format!("registry.test:{}", env.up.tls_port);
    let req =
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {}\r\n\r\n", basic(&env.token));
    unix.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(unix.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    let name = ServerName::try_from("registry.test").unwrap();
    let mut tls = tls_client(&env.up.cert).connect(name, unix).await.unwrap();
    tls.write_all(b"GET /unix HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tls.read_to_string(&mut out).await.unwrap();
    assert!(out.ends_with("hello from registry.test at /unix"), "{out}");
    serving.abort();
}

#[tokio::test]
async fn https_urls_in_absolute_form_are_refused_with_400() {
    let env = start().await;
    let request = format!(
        "GET https://registry.test:{}/ HTTP/1.1\r\nProxy-Authorization: {}\r\n\r\n",
        env.up.tls_port,
        basic(&env.token)
    );
    let a = raw(&env, &request).await;
    assert_eq!(a.status, 400, "{}", a.head);
    assert!(a.body.contains("CONNECT"), "{}", a.body);
}

#[tokio::test]
async fn curl_goes_through_and_sees_why_it_is_refused() {
    let env = start().await;
    let ca = env._dir.path().join("upstream.pem");
    std::fs::write(&ca, &env.up.cert_pem).unwrap();
    let proxy = format!("http://paddock:{}@{}", env.token, env.addr);
    let curl = |url: String| {
        let (ca, proxy) = (ca.clone(), proxy.clone());
        tokio::process::Command::new("curl")
            .args(["-sv", "--max-time", "20", "--noproxy", "", "--cacert"])
            .arg(ca)
            .args(["-x", &proxy, &url])
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .output()
    };
    let ok = curl(format!("https://registry.test:{}/curl", env.up.tls_port)).await.expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "hello from registry.test at /curl");
    let refused = curl(format!("https://evil.test:{}/", env.up.tls_port)).await.unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("< HTTP/1.1 403"), "{err}");
    assert!(err.contains("< x-paddock-policy: paddock/egress"), "{err}");
    assert!(err.contains("< x-paddock-reason: egress to `evil.test:"), "{err}");
    assert_eq!(env.up.handshakes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bytes_sent_with_the_connect_request_are_checked_like_the_rest() {
    let env = start().await;
    // A client that does not wait for the 200: its first bytes arrive with the CONNECT, in one write.
    let pipelined = |target: String, first: &'static [u8]| {
        let mut req = format!("CONNECT {target} HTTP/1.1\r\nProxy-Authorization: {}\r\n\r\n", basic(&env.token));
        req.push_str(std::str::from_utf8(first).unwrap());
        req
    };
    let mut tcp = TcpStream::connect(&env.addr).await.unwrap();
    let req = pipelined(format!("registry.test:{}", env.up.tls_port), b"GET / HTTP/1.1\r\nHost: registry.test\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut tcp).await.status, 200);
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    assert!(out.is_empty(), "the tunnel answered: {:?}", String::from_utf8_lossy(&out));
    let rows = audit(&env).await;
    assert!(rows.iter().any(|r| r["policy"] == "paddock/egress-sni"), "{rows:#?}");
    // To an address allowed for any protocol, the same bytes go through, none lost.
    let mut tcp = TcpStream::connect(&env.addr).await.unwrap();
    let req = pipelined(format!("127.0.0.1:{}", env.up.echo_port), b"early bytes");
    tcp.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut tcp).await.status, 200);
    let mut back = [0u8; 11];
    tcp.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"early bytes");
}

/// A real ClientHello (rustls, for `name`) with one more extension, `kind` carrying `data`, after the others.
fn client_hello_with(name: &str, kind: u16, data: &[u8]) -> Vec<u8> {
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut wire = Vec::new();
    conn.write_tls(&mut wire).unwrap();
    // One record holding the ClientHello alone.
    assert_eq!((wire[0], wire[5], usize::from(u16::from_be_bytes([wire[3], wire[4]]))), (22, 1, wire.len() - 5));
    let mut body = wire[9..].to_vec();
    let mut at = 2 + 32;
    at += 1 + usize::from(body[at]);
    at += 2 + usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
    at += 1 + usize::from(body[at]);
    let extensions = usize::from(u16::from_be_bytes([body[at], body[at + 1]])) + 4 + data.len();
    body[at..at + 2].copy_from_slice(&(extensions as u16).to_be_bytes());
    body.extend(kind.to_be_bytes());
    body.extend((data.len() as u16).to_be_bytes());
    body.extend(data);
    let mut out = vec![22, 3, 1];
    out.extend(((body.len() + 4) as u16).to_be_bytes());
    out.push(1);
    out.extend(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend(body);
    out
}

/// An `encrypted_client_hello` extension's body as a client sends it: an outer hello for config 0x42, with a
/// 32-byte key share and a sealed inner hello (here random bytes).
fn ech_outer() -> Vec<u8> {
    let mut d = vec![0, 0, 1, 0, 1, 0x42, 0, 32];
    d.extend([7u8; 32]);
    d.extend(200u16.to_be_bytes());
    d.extend([9u8; 200]);
    d
}

#[tokio::test]
async fn a_client_hello_offering_encrypted_client_hello_is_cut() {
    let env = start().await;
    // The outer SNI is the allowed name; the encrypted inner hello could ask the same address for any site.
    for kind in [0xfe0d, 0xffce] {
        let (a, mut tcp) = connect(&env, &format!("registry.test:{}", env.up.tls_port), Some(&basic(&env.token))).await;
        assert_eq!(a.status, 200);
        tcp.write_all(&client_hello_with("registry.test", kind, &ech_outer())).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(20), tcp.read_to_end(&mut out)).await.unwrap();
        assert!(out.is_empty(), "{kind:#x}: the upstream answered: {out:?}");
    }
    assert_eq!(env.up.handshakes.load(Ordering::SeqCst), 0);
    let rows = audit(&env).await;
    let cuts: Vec<_> = rows.iter().filter(|r| r["policy"] == "paddock/egress-sni").collect();
    assert_eq!(cuts.len(), 2, "{rows:#?}");
    for cut in cuts {
        assert!(cut["reason"].as_str().unwrap().contains("Encrypted Client Hello"), "{cut}");
    }
    // The same hello without the extension goes through: only the extension cut it.
    let (a, tcp) = connect(&env, &format!("registry.test:{}", env.up.tls_port), Some(&basic(&env.token))).await;
    assert_eq!(a.status, 200);
    let name = ServerName::try_from("registry.test").unwrap();
    tls_client(&env.up.cert).connect(name, tcp).await.expect("a plain ClientHello passes");
}

#[tokio::test]
async fn plain_http_bodies_are_read_whatever_their_content_type_says() {
    let env = start().await;
    let client = proxied_client(&env, &env.token);
    let url = format!("http://plain.test:{}/api", env.up.http_port);
    let post = |ct: &'static str, body: &'static [u8]| client.post(&url).header("content-type", ct).body(body).send();
    // JSON labelled as text: the host may read it as JSON, so the decision does.
    for ct in ["text/plain", "application/octet-stream", "text/html; charset=utf-8"] {
        let r = post(ct, b"{\"leak\": \"the key\"}").await.unwrap();
        assert_eq!(r.status(), 403, "{ct}");
        assert!(r.text().await.unwrap().contains("(rule no-leaks): no leaks in request bodies"), "{ct}");
    }
    // A form's body is read by the host as a form, never as the JSON the decision would see.
    let r = post("application/x-www-form-urlencoded", b"{\"x\": \"&leak=1\"}").await.unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(r.headers()["x-paddock-policy"], "paddock/egress-inspect");
    // A body that is not JSON and not labelled as binary cannot be judged: refused.
    let r = post("text/plain", b"leak=the key").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-paddock-policy"], "paddock/egress-inspect");
    assert!(r.text().await.unwrap().contains("not JSON"));
    assert_eq!(env.up.http_requests.load(Ordering::SeqCst), 0);
    // A binary upload and a JSON body without a leak pass.
    assert_eq!(post("application/octet-stream", b"\x00\x01\x02").await.unwrap().status(), 200);
    assert_eq!(post("text/plain", b"{\"fine\": true}").await.unwrap().status(), 200);
    assert_eq!(env.up.http_requests.load(Ordering::SeqCst), 2);
    let rows = audit(&env).await;
    assert!(rows.iter().any(|r| r["policy"] == "paddock/egress-inspect"), "{rows:#?}");
}

#[tokio::test]
async fn plain_http_method_overrides_are_refused() {
    let env = start().await;
    let target = format!("plain.test:{}", env.up.http_port);
    let auth = basic(&env.token);
    for (query, header) in [
        ("", "X-HTTP-Method-Override: DELETE\r\n"),
        ("", "x-http-method: DELETE\r\n"),
        ("", "X-Method-Override: DELETE\r\n"),
        ("?_method=DELETE", ""),
        ("?a=1&%5Fmethod=DELETE", ""),
        ("?_METHOD=delete", ""),
    ] {
        let req = format!(
            "POST http://{target}/api{query} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {auth}\r\n{header}\
             Content-Length: 0\r\n\r\n"
        );
        let a = raw(&env, &req).await;
        assert_eq!(a.status, 400, "{query} {header}: {} {}", a.head, a.body);
        assert!(a.body.contains("method"), "{}", a.body);
    }
    assert_eq!(env.up.http_requests.load(Ordering::SeqCst), 0);
    // A parameter that only ends in `_method` is another parameter.
    let req = format!(
        "GET http://{target}/api?http_method=x HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {auth}\r\n\r\n"
    );
    assert_eq!(raw(&env, &req).await.status, 200);
}

#[tokio::test]
async fn a_session_holds_at_most_max_connections_per_session() {
    let env = start_with(|e| e.max_connections_per_session = 2).await;
    let echo = format!("127.0.0.1:{}", env.up.echo_port);
    let (a, first) = connect(&env, &echo, Some(&basic(&env.token))).await;
    assert_eq!(a.status, 200);
    let (a, mut second) = connect(&env, &echo, Some(&basic(&env.token))).await;
    assert_eq!(a.status, 200);
    second.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    second.read_exact(&mut back).await.unwrap();
    // A third tunnel, and a plain-HTTP request, are refused while two are open; the upstream sees nothing.
    let (a, _) = connect(&env, &format!("registry.test:{}", env.up.tls_port), Some(&basic(&env.token))).await;
    assert_eq!(a.status, 429, "{} {}", a.head, a.body);
    assert_eq!(a.header("x-paddock-policy"), Some("paddock/egress-limit"));
    assert!(a.body.contains("egress.maxConnectionsPerSession") && a.body.contains('2'), "{}", a.body);
    let get = format!(
        "GET http://plain.test:{}/x HTTP/1.1\r\nHost: plain.test\r\nProxy-Authorization: {}\r\n\r\n",
        env.up.http_port,
        basic(&env.token)
    );
    assert_eq!(raw(&env, &get).await.status, 429);
    assert_eq!(env.up.handshakes.load(Ordering::SeqCst), 0);
    assert_eq!(env.up.http_requests.load(Ordering::SeqCst), 0);
    // Another session has its own allowance.
    let (_, other) = env
        .gw
        .create_session(NewSession { agent: "coder".into(), owner: "tester".into(), ..NewSession::default() })
        .await
        .unwrap();
    let (a, _other_tunnel) = connect(&env, &echo, Some(&basic(&other))).await;
    assert_eq!(a.status, 200);
    // A closed tunnel gives its place back.
    drop(first);
    let mut reopened = false;
    for _ in 0..200 {
        let (a, _) = connect(&env, &echo, Some(&basic(&env.token))).await;
        if a.status == 200 {
            reopened = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reopened, "the closed tunnel's place was never given back");
    let rows = audit(&env).await;
    let limited = rows.iter().filter(|r| r["policy"] == "paddock/egress-limit").count();
    assert!(limited >= 2, "{rows:#?}");
    let m = metrics(&env).await;
    assert!(metric(&m, r#"paddock_gateway_egress_total{phase="egress",scheme="https",verdict="refused"}"#) >= 1);
    assert_eq!(metric(&m, r#"paddock_gateway_egress_total{phase="egress",scheme="http",verdict="refused"}"#), 1);
}

#[tokio::test]
async fn an_idle_tunnel_closes_after_tunnel_idle_timeout_seconds() {
    let env = start_with(|e| e.tunnel_idle_timeout_seconds = 1).await;
    let (a, mut tcp) = connect(&env, &format!("127.0.0.1:{}", env.up.echo_port), Some(&basic(&env.token))).await;
    assert_eq!(a.status, 200);
    tcp.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tcp.read_exact(&mut back).await.unwrap();
    // Nothing more is sent: the gateway closes the tunnel (the session is still live).
    let mut rest = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(60), tcp.read_to_end(&mut rest)).await;
    assert!(read.is_ok_and(|r| r.is_ok()), "the idle tunnel stayed open");
    assert!(rest.is_empty());
    assert!(env.gw.session_for_token(&env.token).await.is_some());
}

/// In a cluster the gateway's loopback is the gateway pod's own: an address entry for `127.0.0.1` (natural to
/// copy from local mode) must not open it. Only `egress.allowLoopback` (what `paddock up` sets) does.
#[tokio::test]
async fn a_loopback_address_is_no_destination_unless_the_gateway_runs_locally() {
    let env = start_with(|e| e.allow_loopback = false).await;
    let (a, _) = connect(&env, &format!("127.0.0.1:{}", env.up.echo_port), Some(&basic(&env.token))).await;
    assert_eq!(a.status, 403, "{}", a.head);
    assert_eq!(a.header("x-paddock-policy"), Some("paddock/egress-ssrf"));
    assert!(a.body.contains("the gateway's own host"), "{}", a.body);
    let rows = audit(&env).await;
    assert!(rows.iter().any(|r| r["policy"] == "paddock/egress-ssrf"), "{rows:#?}");
}
