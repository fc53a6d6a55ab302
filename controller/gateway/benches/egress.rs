//! The egress proxy's cost over loopback: HTTPS requests to one TLS server straight, through a `CONNECT`
//! tunnel (decided once per connection, relayed as bytes), and through the credential broker (TLS terminated
//! by the gateway, every request decided and sent on with the credential); connection set-up (CONNECT + TLS
//! handshake + first request against TCP + TLS handshake + first request); and bulk transfer.
//!
//! `cargo bench -p paddock-gateway --bench egress` (add `-- --quick` for a short run; pin with
//! `taskset -c 0` or `taskset -c 0,1`). The TLS server, the gateway and the load generator each run on their
//! own threads (the first two on their own async runtimes), as three processes would, and share the
//! machine's cores: the figures include their contention.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use paddock_gateway::config::{EgressConfig, GatewayConfig, SecretSource};
use paddock_gateway::{NewSession, server};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Brokered: the gateway terminates TLS and decides each request.
const BROKERED: &str = "api.bench.test";
/// Tunnelled end to end.
const TUNNELLED: &str = "registry.bench.test";
const BULK_BYTES: usize = 16 << 20;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS server's certificate, signed by a CA of its own (the gateway trusts it through `egress.trust`).
struct Upstream {
    port: u16,
    ca: CertificateDer<'static>,
}

/// Serves `/small` (a short body) and `/bulk` (16 MiB) over TLS for both names.
async fn upstream(ca_file: &std::path::Path) -> Upstream {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "egress bench CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(ca_file, ca_cert.pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let names = vec![BROKERED.to_owned(), TUNNELLED.to_owned()];
    let leaf = rcgen::CertificateParams::new(names).unwrap().signed_by(&key, &issuer).unwrap();
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], private)
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bulk = Bytes::from(vec![b'x'; BULK_BYTES]);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let _ = tcp.set_nodelay(true);
            let (acceptor, bulk) = (acceptor.clone(), bulk.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let body = match req.uri().path() {
                        "/bulk" => bulk.clone(),
                        _ => Bytes::from_static(b"{\"ok\":true,\"name\":\"small response\"}"),
                    };
                    async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body))) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    Upstream { port, ca: ca_cert.der().clone() }
}

fn tls_client(root: &CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// How a client reaches the TLS server.
#[derive(Clone)]
enum Route {
    Direct,
    Tunnel { gateway: String, auth: String },
    Brokered { gateway: String, auth: String },
}

#[derive(Clone)]
struct Bench {
    port: u16,
    upstream_ca: CertificateDer<'static>,
    paddock_ca: CertificateDer<'static>,
}

impl Bench {
    /// A kept-alive HTTP/1.1 connection over TLS along `route`.
    async fn open(&self, route: &Route) -> SendRequest<Empty<Bytes>> {
        let (host, root, tcp) = match route {
            Route::Direct => {
                let tcp = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
                (TUNNELLED, &self.upstream_ca, tcp)
            }
            Route::Tunnel { gateway, auth } => {
                (TUNNELLED, &self.upstream_ca, connect(gateway, auth, TUNNELLED, self.port).await)
            }
            Route::Brokered { gateway, auth } => {
                (BROKERED, &self.paddock_ca, connect(gateway, auth, BROKERED, self.port).await)
            }
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls_client(root).connect(ServerName::try_from(host).unwrap(), tcp).await.unwrap();
        h1(tls).await
    }
}

async fn connect(gateway: &str, auth: &str, host: &str, port: u16) -> TcpStream {
    let mut tcp = TcpStream::connect(gateway).await.unwrap();
    let req = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\nProxy-Authorization: {auth}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    tcp
}

async fn h1<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: IO) -> SendRequest<Empty<Bytes>> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn);
    sender
}

async fn get(sender: &mut SendRequest<Empty<Bytes>>, host: &str, path: &str) -> usize {
    sender.ready().await.unwrap();
    let req = hyper::Request::get(path).header("host", host).body(Empty::new()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let mut body = resp.into_body();
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.unwrap().into_data() {
            n += d.len();
        }
    }
    n
}

fn host_of(route: &Route) -> &'static str {
    match route {
        Route::Brokered { .. } => BROKERED,
        _ => TUNNELLED,
    }
}

/// `conc` connections, each sending `n / conc` requests one after another: the latency of each request and
/// the run's requests per second.
async fn requests(bench: &Bench, route: &Route, conc: usize, n: usize) -> (Vec<Duration>, f64) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (bench, route) = (bench.clone(), route.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = bench.open(&route).await;
            let mut v = Vec::with_capacity(n / conc);
            for _ in 0..n / conc {
                let t = Instant::now();
                get(&mut sender, host_of(&route), "/small").await;
                v.push(t.elapsed());
            }
            v
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort();
    (all, rate)
}

/// New connections one after another: set-up (CONNECT, TLS handshake) and the first request.
async fn setups(bench: &Bench, route: &Route, n: usize) -> Vec<Duration> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let mut sender = bench.open(route).await;
        get(&mut sender, host_of(route), "/small").await;
        v.push(t.elapsed());
    }
    v.sort();
    v
}

/// MiB/s of 16 MiB responses over one connection.
async fn bulk(bench: &Bench, route: &Route, n: usize) -> f64 {
    let mut sender = bench.open(route).await;
    let t = Instant::now();
    for _ in 0..n {
        assert_eq!(get(&mut sender, host_of(route), "/bulk").await, BULK_BYTES);
    }
    (n * BULK_BYTES) as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = |name: &str, workers: usize| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap()
    };
    // The gateway gets as many workers as it may use cores, as `paddock gateway` does.
    let gateway = runtime("gateway", std::thread::available_parallelism().map_or(2, |n| n.get()));
    let upstream = runtime("upstream", 1);
    let load = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    load.block_on(run(quick, gateway.handle(), upstream.handle()));
}

async fn run(quick: bool, gateway: &tokio::runtime::Handle, upstream_rt: &tokio::runtime::Handle) {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("upstream-ca.pem");
    let up = {
        let ca_file = ca_file.clone();
        upstream_rt.spawn(async move { upstream(&ca_file).await }).await.unwrap()
    };
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("bench.yaml"),
        format!(
            "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {{name: bench}}\nspec:\n  harness: custom\n  \
             model: claude-sonnet-4-5\n  sandbox: {{egress: ['{TUNNELLED}:{port}']}}\n  credentials:\n    - {{host: \
             '{BROKERED}:{port}', secretName: github, key: token}}\n",
            port = up.port
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("secrets/github")).unwrap();
    std::fs::write(dir.path().join("secrets/github/token"), "ghp_bench").unwrap();
    std::fs::write(dir.path().join("admin"), "bench-admin").unwrap();
    let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let cfg = GatewayConfig {
        data_dir: Some(dir.path().join("data")),
        repo: Some(repo),
        admin_token: Some(SecretSource { env: None, file: Some(dir.path().join("admin")) }),
        egress: EgressConfig {
            resolve: [(BROKERED.to_owned(), loopback), (TUNNELLED.to_owned(), loopback)].into_iter().collect(),
            trust: vec![ca_file],
            secrets_dir: Some(dir.path().join("secrets")),
            ..EgressConfig::default()
        },
        ..GatewayConfig::default()
    };
    let (gw, url, _) = gateway.spawn(async move { server::serve_loopback(&cfg).await.unwrap() }).await.unwrap();
    let (_, token) = gw
        .create_session(NewSession { agent: "bench".into(), owner: "bench".into(), ..NewSession::default() })
        .await
        .unwrap();
    let paddock_ca = {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(gw.broker.ca_pem().as_bytes()).unwrap()
    };
    let bench = Bench { port: up.port, upstream_ca: up.ca, paddock_ca };
    let gateway_addr = url.trim_start_matches("http://").to_owned();
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("paddock:{token}")));
    let routes = [
        ("direct", Route::Direct),
        ("CONNECT tunnel", Route::Tunnel { gateway: gateway_addr.clone(), auth: auth.clone() }),
        ("brokered", Route::Brokered { gateway: gateway_addr, auth }),
    ];

    let n = if quick { 400 } else { 4000 };
    for (_, route) in &routes {
        requests(&bench, route, 4, 200).await; // warm up
    }
    println!("## Requests on kept-alive connections (HTTPS GET, ~40-byte response, {n} requests per row)\n");
    println!("| route | concurrency | p50 ms | p99 ms | requests/s |");
    println!("|---|---|---|---|---|");
    for conc in [1, 16] {
        for (name, route) in &routes {
            let (lat, rate) = requests(&bench, route, conc, n).await;
            let (p50, p99) = (ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99)));
            println!("| {name} | {conc} | {p50} | {p99} | {rate:.0} |");
        }
    }
    let m = if quick { 100 } else { 500 };
    println!("\n## New connection: set-up and first request ({m} sequential)\n");
    println!("| route | p50 ms | p99 ms |\n|---|---|---|");
    for (name, route) in &routes {
        let v = setups(&bench, route, m).await;
        println!("| {name} | {} | {} |", ms(percentile(&v, 0.5)), ms(percentile(&v, 0.99)));
    }
    let b = if quick { 4 } else { 16 };
    println!("\n## Bulk download ({b} × 16 MiB over one connection)\n");
    println!("| route | MiB/s |\n|---|---|");
    for (name, route) in &routes {
        println!("| {name} | {:.0} |", bulk(&bench, route, b).await);
    }
}
