//! Git pushes judged on the wire, with real git: a bare repository served by `git http-backend` over
//! loopback HTTP stands in for GitHub; real `git push` runs are the clients. The mirror and the ancestry
//! check are tested against it directly; the push handler sits behind a small loopback front (the broker's
//! place) that sends pushes to it and everything else to the stand-in.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use paddock_gateway::config::EgressConfig;
use paddock_gateway::gitwire::ancestry::{self, Pack};
use paddock_gateway::gitwire::limits::PushLimits;
use paddock_gateway::gitwire::mirror::{Mirrors, Remote};
use paddock_gateway::gitwire::receive_pack::{self, Destination};
use paddock_policy::{RefUpdate, ZERO_OID};
use support::*;

const HOST: &str = "git.test";
const TOKEN: &str = "Bearer mirror-secret-123";

/// Runs git (no user or system configuration) in `dir`; its stdout and stderr, panicking on failure.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_run(dir, args);
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn git_run(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        // The machine's CA settings would override the `http.sslCAInfo` a push names.
        .env_remove("GIT_SSL_CAINFO")
        .env_remove("GIT_SSL_CAPATH")
        .env_remove("HTTPS_PROXY")
        .env_remove("HTTP_PROXY")
        .env_remove("https_proxy")
        .env_remove("http_proxy")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git runs")
}

/// Async wrapper: git pushes talk to servers on this runtime.
async fn git_async(dir: &Path, args: &[&str]) -> std::process::Output {
    let (dir, args): (PathBuf, Vec<String>) = (dir.to_owned(), args.iter().map(|a| a.to_string()).collect());
    tokio::task::spawn_blocking(move || git_run(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

/// The stand-in: `git http-backend` over `root`, counting pushes it received and keeping the credential
/// headers and the requests (`METHOD path?query`) it saw.
struct Backend {
    port: u16,
    pushes: Arc<AtomicUsize>,
    authorizations: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct BackendState {
    root: PathBuf,
    pushes: Arc<AtomicUsize>,
    authorizations: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn backend(root: &Path) -> Backend {
    let state = BackendState {
        root: root.to_owned(),
        pushes: Arc::new(AtomicUsize::new(0)),
        authorizations: Arc::new(Mutex::new(Vec::new())),
        requests: Arc::new(Mutex::new(Vec::new())),
    };
    let (pushes, authorizations, requests) =
        (state.pushes.clone(), state.authorizations.clone(), state.requests.clone());
    let app = axum::Router::new().fallback(cgi).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Backend { port, pushes, authorizations, requests, task }
}

async fn cgi(
    axum::extract::State(st): axum::extract::State<BackendState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let (parts, body) = run_cgi(&st, parts, body).await.into_parts();
    axum::response::Response::from_parts(parts, Body::from(body))
}

/// One request answered by `git http-backend` (CGI).
async fn run_cgi(st: &BackendState, parts: axum::http::request::Parts, body: Bytes) -> axum::http::Response<Vec<u8>> {
    if parts.uri.path().ends_with("/git-receive-pack") {
        st.pushes.fetch_add(1, Ordering::SeqCst);
    }
    st.requests.lock().unwrap().push(format!("{} {}", parts.method, parts.uri.path_and_query().unwrap()));
    if let Some(a) = parts.headers.get("authorization") {
        st.authorizations.lock().unwrap().push(a.to_str().unwrap().to_owned());
    }
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", &st.root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &st.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", "tester")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&body).await;
    });
    let out = child.wait_with_output().await.unwrap();
    writer.await.unwrap();
    let split = out.stdout.windows(4).position(|w| w == b"\r\n\r\n").map(|p| (p, 4));
    let split = split.or_else(|| out.stdout.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)));
    let (at, sep) = split.expect("CGI headers");
    let mut resp = axum::http::Response::new(out.stdout[at + sep..].to_vec());
    for line in String::from_utf8_lossy(&out.stdout[..at]).lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        if k.eq_ignore_ascii_case("status") {
            *resp.status_mut() = v.trim()[..3].parse::<u16>().unwrap().try_into().unwrap();
        } else {
            resp.headers_mut()
                .append(axum::http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(), v.trim().parse().unwrap());
        }
    }
    resp
}

/// A remote `acme/app` with `main` at one commit, and a work clone of it with an `origin` pointing at `url`.
struct Repos {
    dir: tempfile::TempDir,
}

impl Repos {
    fn new() -> Repos {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("remote/acme/app.git");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "--bare", "-q", "-b", "main"]);
        git(&bare, &["config", "http.receivepack", "true"]);
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        commit(&work, "one");
        git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
        Repos { dir }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("remote")
    }
    fn bare(&self) -> PathBuf {
        self.root().join("acme/app.git")
    }
    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }
    fn remote_main(&self) -> String {
        git(&self.bare(), &["rev-parse", "refs/heads/main"])
    }
}

fn commit(work: &Path, text: &str) -> String {
    std::fs::write(work.join("file.txt"), text).unwrap();
    git(work, &["add", "file.txt"]);
    git(work, &["commit", "-q", "-m", text]);
    git(work, &["rev-parse", "HEAD"])
}

/// A thin pack of `new` minus `old` (what a push sends), in a file.
fn pack_file(work: &Path, new: &str, old: Option<&str>) -> std::fs::File {
    let revs = match old {
        Some(o) => format!("{new}\n^{o}\n"),
        None => format!("{new}\n"),
    };
    let mut child = std::process::Command::new("git")
        .args(["pack-objects", "--revs", "--thin", "--stdout", "-q"])
        .current_dir(work)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(revs.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&out.stdout).unwrap();
    f
}

fn egress(port_ok: bool) -> EgressConfig {
    let mut e = EgressConfig::default();
    if port_ok {
        e.resolve.insert(HOST.into(), "127.0.0.1".parse().unwrap());
    }
    e
}

fn remote(port: u16) -> Remote {
    Remote {
        scheme: "http".into(),
        host: HOST.into(),
        port,
        path: "/acme/app.git".into(),
        repo: "acme/app".into(),
        credential: Some(("authorization".into(), TOKEN.into())),
    }
}

fn update(git_ref: &str, old: &str, new: &str) -> RefUpdate {
    RefUpdate { git_ref: git_ref.into(), old: old.into(), new: new.into(), fast_forward: false }
}

#[tokio::test]
async fn mirror_fetches_with_the_credential_and_ancestry_tells_fast_forward_from_force() {
    let repos = Repos::new();
    let up = backend(&repos.root()).await;
    let scratch = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(scratch.path().join("egress-mirrors"), &egress(true)).unwrap();
    let base = repos.remote_main();
    let work = repos.work();
    let ahead = commit(&work, "two");
    git(&work, &["checkout", "-q", "-b", "rewritten", &base]);
    git(&work, &["commit", "-q", "--amend", "-m", "one, rewritten"]);
    let rewritten = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["tag", "-a", "-m", "v1", "v1", &ahead]);
    let tag = git(&work, &["rev-parse", "v1"]);

    let mirror = mirrors.refresh(&remote(up.port)).await.unwrap();
    assert_eq!(mirror.refs.as_ref().unwrap().get("refs/heads/main"), Some(&base));
    assert!(mirror.path.ends_with("egress-mirrors/git.test_".to_owned() + &up.port.to_string() + "/acme/app.git"));
    // The credential went as a header, from the environment of git, not its command line.
    assert!(up.authorizations.lock().unwrap().iter().any(|a| a == TOKEN));

    let mut updates = vec![
        update("refs/heads/main", &base, &ahead),
        update("refs/heads/rewrite", &base, &rewritten),
        update("refs/heads/new", ZERO_OID, &ahead),
        update("refs/heads/gone", &base, ZERO_OID),
        update("refs/tags/v1", ZERO_OID, &tag),
        // `old` is not what the remote has: nothing can be shown.
        update("refs/heads/other", &ahead, &ahead),
    ];
    let mut pack = pack_file(&work, &format!("{ahead} {rewritten} {tag}").replace(' ', "\n"), Some(&base));
    use std::io::{Seek, Write};
    pack.seek(std::io::SeekFrom::Start(0)).unwrap();
    let _ = pack.flush();
    ancestry::judge(mirrors.git(), &mirror, Some(Pack { file: pack, offset: 0 }), &mirrors.scratch(), &mut updates)
        .await
        .unwrap();
    let ff: Vec<bool> = updates.iter().map(|u| u.fast_forward).collect();
    assert_eq!(ff, [true, false, true, false, true, false]);
    // The quarantine is gone.
    assert_eq!(std::fs::read_dir(mirrors.scratch()).unwrap().count(), 0);

    // Objects the mirror and the pack do not have prove nothing.
    let mut unknown = vec![update("refs/heads/main", &base, &"ab".repeat(20))];
    ancestry::judge(mirrors.git(), &mirror, None, &mirrors.scratch(), &mut unknown).await.unwrap();
    assert!(!unknown[0].fast_forward);
}

#[tokio::test]
async fn a_failed_fetch_makes_no_update_fast_forward() {
    let repos = Repos::new();
    let up = backend(&repos.root()).await;
    let scratch = tempfile::tempdir().unwrap();
    // No resolver entry: `git.test` does not resolve, the fetch fails.
    let mirrors = Mirrors::new(scratch.path().join("egress-mirrors"), &egress(false)).unwrap();
    let mirror = mirrors.refresh(&remote(up.port)).await.unwrap();
    assert!(mirror.refs.is_err());
    let base = repos.remote_main();
    let ahead = commit(&repos.work(), "two");
    let pack = pack_file(&repos.work(), &ahead, Some(&base));
    let mut updates = vec![update("refs/heads/main", &base, &ahead), update("refs/heads/new", ZERO_OID, &ahead)];
    ancestry::judge(mirrors.git(), &mirror, Some(Pack { file: pack, offset: 0 }), &mirrors.scratch(), &mut updates)
        .await
        .unwrap();
    assert_eq!(updates.iter().map(|u| u.fast_forward).collect::<Vec<_>>(), [false, true]);
}

/// The policy repo: an Agent and GitHub rules for the stand-in host.
fn write_policy_repo(dir: &Path) {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("agent.yaml"),
        "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {name: pusher}\nspec:\n  harness: custom\n  model: claude-sonnet-4-5\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("policy.yaml"),
        format!(
            r#"apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {{name: github-wire}}
spec:
  rules:
    - name: pushes
      use: github
      with:
        github_hosts: ["{HOST}"]
        read_all: true
        write_repos: [acme/app]
        deny_force_push: true
        deny_tag_push: true
        allow_destructive: false
"#
        ),
    )
    .unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN).unwrap();
    std::fs::write(dir.join("script.yaml"), SCRIPT).unwrap();
}

/// The front: pushes go through `receive_pack::handle`, everything else straight to the stand-in.
struct Front {
    url: String,
    task: tokio::task::JoinHandle<()>,
    t: TestGateway,
    /// The session the front pushes for.
    session: String,
    mirrors: Arc<Mirrors>,
    dir: tempfile::TempDir,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct FrontState {
    gw: Arc<paddock_gateway::Gateway>,
    session: Arc<paddock_gateway::gateway::Session>,
    mirrors: Arc<Mirrors>,
    backend: u16,
}

async fn front(backend_port: u16, max_push_bytes: u64) -> Front {
    front_with(backend_port, max_push_bytes, PushLimits::default()).await
}

async fn front_with(backend_port: u16, max_push_bytes: u64, limits: PushLimits) -> Front {
    let dir = tempfile::tempdir().unwrap();
    write_policy_repo(dir.path());
    let mut cfg = config(dir.path());
    cfg.egress = egress(true);
    cfg.egress.max_push_bytes = max_push_bytes;
    let t = TestGateway::with_config(dir.path(), cfg.clone()).await;
    let (id, _token) = t.session("pusher").await;
    let state = FrontState {
        gw: t.gw.clone(),
        session: t.gw.session(&id).unwrap(),
        mirrors: Arc::new(
            Mirrors::new(dir.path().join("data/egress-mirrors"), &cfg.egress).unwrap().with_push_limits(limits),
        ),
        backend: backend_port,
    };
    let mirrors = state.mirrors.clone();
    let app = axum::Router::new().fallback(front_request).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Front { url, task, t, session: id, mirrors, dir }
}

async fn front_request(
    axum::extract::State(st): axum::extract::State<FrontState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let backend = st.backend;
    let route = req.uri().path().to_owned();
    if receive_pack::is_push(req.method(), &route) {
        let to = Destination {
            scheme: "http".into(),
            host: HOST.into(),
            port: backend,
            credential: Some(("authorization".into(), TOKEN.into())),
        };
        let resp = receive_pack::handle(&st.gw, &st.session, &st.mirrors, &to, req, |r| async move {
            let (parts, body) = r.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            relay(backend, parts, body).await
        })
        .await;
        let (parts, body) = resp.into_parts();
        return axum::response::Response::from_parts(parts, Body::new(body));
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let resp = relay(backend, parts, body).await;
    let (parts, body) = resp.into_parts();
    axum::response::Response::from_parts(parts, Body::new(body))
}

/// Sends a request to the stand-in and gives its whole answer.
async fn relay(
    backend: u16,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> axum::http::Response<paddock_gateway::broker::upstream::ProxyBody> {
    let url = format!("http://127.0.0.1:{backend}{}", parts.uri.path_and_query().unwrap());
    let mut r = reqwest::Client::new().request(parts.method.clone(), url).body(body);
    for (k, v) in &parts.headers {
        if !matches!(k.as_str(), "host" | "content-length" | "transfer-encoding") {
            r = r.header(k, v);
        }
    }
    r = r.header("authorization", TOKEN);
    let got = r.send().await.unwrap();
    let mut resp = axum::http::Response::builder().status(got.status().as_u16());
    for (k, v) in got.headers() {
        resp = resp.header(k, v);
    }
    let bytes = got.bytes().await.unwrap();
    resp.body(http_body_util::Full::new(bytes).map_err(|n| match n {}).boxed_unsync()).unwrap()
}

/// What a push printed, and whether it succeeded.
fn shown(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn pushes_through_the_handler_with_real_git() {
    let repos = Repos::new();
    let up = backend(&repos.root()).await;
    let f = front(up.port, 1 << 30).await;
    let work = repos.work();
    let url = format!("{}/acme/app.git", f.url);
    git(&work, &["remote", "add", "origin", &url]);
    let base = repos.remote_main();

    // A fast-forward lands.
    let ahead = commit(&work, "two");
    let out = git_async(&work, &["push", "origin", "main"]).await;
    assert!(out.status.success(), "{}", shown(&out));
    assert_eq!(repos.remote_main(), ahead);
    assert_eq!(up.pushes.load(Ordering::SeqCst), 1);
    assert_ne!(base, ahead);

    // A force push is refused at the wire, with the reason shown to the agent; nothing reaches the remote.
    git(&work, &["reset", "-q", "--hard", &base]);
    commit(&work, "diverged");
    let out = git_async(&work, &["push", "-f", "origin", "main"]).await;
    let text = shown(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("! [remote rejected] main -> main (") && text.contains("force"), "{text}");
    assert!(text.contains("remote: paddock: push refused by policy github-wire"), "{text}");
    assert_eq!(repos.remote_main(), ahead);
    assert_eq!(up.pushes.load(Ordering::SeqCst), 1);

    // A tag push is refused; with it in one push, an allowed branch is not pushed either, and says why.
    git(&work, &["reset", "-q", "--hard", &ahead]);
    let next = commit(&work, "three");
    git(&work, &["tag", "v1"]);
    let out = git_async(&work, &["push", "origin", "main", "v1"]).await;
    let text = shown(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("! [remote rejected] v1 -> v1 ("), "{text}");
    assert!(text.contains("! [remote rejected] main -> main (not pushed: refs/tags/v1 was refused)"), "{text}");
    assert_eq!(repos.remote_main(), ahead);

    // A branch delete is refused.
    git(&repos.bare(), &["branch", "keep", &ahead]);
    let out = git_async(&work, &["push", "origin", "--delete", "keep"]).await;
    let text = shown(&out);
    assert!(!out.status.success() && text.contains("! [remote rejected] keep ("), "{text}");
    assert_eq!(git(&repos.bare(), &["rev-parse", "refs/heads/keep"]), ahead);
    assert_eq!(up.pushes.load(Ordering::SeqCst), 1);

    // A large push (chunked: bigger than http.postBuffer) lands the same way.
    let blob: String = (0..200_000).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
    std::fs::write(work.join("big.txt"), blob).unwrap();
    git(&work, &["add", "big.txt"]);
    git(&work, &["commit", "-q", "-m", "big"]);
    let big = git(&work, &["rev-parse", "HEAD"]);
    let out = git_async(&work, &["-c", "http.postBuffer=65536", "push", "origin", "main"]).await;
    assert!(out.status.success(), "{}", shown(&out));
    assert_eq!(repos.remote_main(), big);
    assert_ne!(next, big);
}

#[tokio::test]
async fn a_push_larger_than_the_limit_is_refused_in_gits_protocol() {
    let repos = Repos::new();
    let up = backend(&repos.root()).await;
    let f = front(up.port, 2048).await;
    let work = repos.work();
    git(&work, &["remote", "add", "origin", &format!("{}/acme/app.git", f.url)]);
    let before = repos.remote_main();
    let noise: String = (0..50_000u32).map(|i| format!("{:x}", i.wrapping_mul(2654435761))).collect();
    std::fs::write(work.join("noise.txt"), noise).unwrap();
    git(&work, &["add", "noise.txt"]);
    git(&work, &["commit", "-q", "-m", "noise"]);
    let out = git_async(&work, &["push", "origin", "main"]).await;
    let text = shown(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("maxPushBytes"), "{text}");
    assert_eq!(repos.remote_main(), before);
    assert_eq!(up.pushes.load(Ordering::SeqCst), 0);
}

/// The stand-in over HTTPS for `HOST`, with a certificate of a fresh test CA written to `ca_file`.
async fn tls_backend(root: &Path, ca_file: &Path) -> Backend {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "git stand-in test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(ca_file, ca_cert.pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![HOST.to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let state = BackendState {
        root: root.to_owned(),
        pushes: Arc::new(AtomicUsize::new(0)),
        authorizations: Arc::new(Mutex::new(Vec::new())),
        requests: Arc::new(Mutex::new(Vec::new())),
    };
    let (pushes, authorizations, requests) =
        (state.pushes.clone(), state.authorizations.clone(), state.requests.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, state) = (acceptor.clone(), state.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let resp =
                            run_cgi(&state, parts, body).await.map(|b| http_body_util::Full::new(Bytes::from(b)));
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Backend { port, pushes, authorizations, requests, task }
}

#[tokio::test]
async fn pushes_through_the_gateways_proxy_are_judged_on_the_wire() {
    let repos = Repos::new();
    let dir = tempfile::tempdir().unwrap();
    let up = tls_backend(&repos.root(), &dir.path().join("stand-in-ca.pem")).await;
    write_policy_repo(dir.path());
    std::fs::write(
        dir.path().join("repo/agent.yaml"),
        format!(
            r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {{name: pusher}}
spec:
  harness: custom
  model: claude-sonnet-4-5
  sandbox: {{egress: ["{HOST}:{port}"]}}
  credentials:
    - {{host: "{HOST}:{port}", secretName: github, key: token}}
"#,
            port = up.port
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("secrets/github")).unwrap();
    std::fs::write(dir.path().join("secrets/github/token"), "ghp_wire0123456789\n").unwrap();
    let mut cfg = config(dir.path());
    cfg.egress.resolve.insert(HOST.into(), "127.0.0.1".parse().unwrap());
    cfg.egress.trust = vec![dir.path().join("stand-in-ca.pem")];
    cfg.egress.secrets_dir = Some(dir.path().join("secrets"));
    let t = TestGateway::with_config(dir.path(), cfg).await;
    let (_id, token) = t.session("pusher").await;
    let ca = t.client.get(format!("{}/v1/egress/ca.pem", t.url)).send().await.unwrap().text().await.unwrap();
    let ca_file = dir.path().join("paddock-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();

    let work = repos.work();
    let proxy = format!("http.proxy=http://paddock:{token}@{}", t.url.trim_start_matches("http://"));
    let trust = format!("http.sslCAInfo={}", ca_file.display());
    let url = format!("https://{HOST}:{}/acme/app.git", up.port);
    git(&work, &["remote", "add", "origin", &url]);
    let push = |extra: &'static [&'static str]| {
        let mut args: Vec<String> =
            ["-c", &proxy, "-c", &trust, "push", "origin"].iter().map(|s| s.to_string()).collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let work = work.clone();
        async move { git_async(&work, &args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let base = repos.remote_main();

    let ahead = commit(&work, "two");
    let out = push(&["main"]).await;
    assert!(out.status.success(), "{}", shown(&out));
    assert_eq!(repos.remote_main(), ahead);
    // The mirror's fetch and the push both reached the host with the brokered credential.
    assert!(up.authorizations.lock().unwrap().iter().filter(|a| a.contains("ghp_wire0123456789")).count() >= 2);

    git(&work, &["reset", "-q", "--hard", &base]);
    commit(&work, "diverged");
    let out = push(&["-f", "main"]).await;
    let text = shown(&out);
    assert!(!out.status.success() && text.contains("! [remote rejected] main -> main ("), "{text}");
    assert!(text.contains("force update (not a fast-forward)"), "{text}");
    assert_eq!(repos.remote_main(), ahead);

    git(&work, &["reset", "-q", "--hard", &ahead]);
    git(&work, &["tag", "v1"]);
    let out = push(&["v1"]).await;
    assert!(!out.status.success() && shown(&out).contains("! [remote rejected] v1 -> v1 ("), "{}", shown(&out));
    git(&repos.bare(), &["branch", "keep", &ahead]);
    let out = push(&["--delete", "keep"]).await;
    assert!(!out.status.success() && shown(&out).contains("! [remote rejected] keep ("), "{}", shown(&out));
    assert_eq!(git(&repos.bare(), &["rev-parse", "refs/heads/keep"]), ahead);
    assert_eq!(up.pushes.load(Ordering::SeqCst), 1);
    assert!(git_run(&repos.bare(), &["rev-parse", "--verify", "-q", "refs/tags/v1"]).stdout.is_empty());
}

/// A push request written by hand: `old new ref` lines, a flush, and the pack.
fn push_body(lines: &[String], pack: Option<std::fs::File>) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(format!("{:04x}", l.len() + 4).as_bytes());
        out.extend_from_slice(l.as_bytes());
    }
    out.extend_from_slice(b"0000");
    if let Some(mut f) = pack {
        use std::io::{Read, Seek};
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut out).unwrap();
    }
    out
}

async fn send_push(front: &str, body: Vec<u8>, gzip: bool) -> (u16, String) {
    let mut r = reqwest::Client::new()
        .post(format!("{front}/acme/app.git/git-receive-pack"))
        .header("content-type", "application/x-git-receive-pack-request");
    let body = if gzip {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&body).unwrap();
        r = r.header("content-encoding", "gzip");
        enc.finish().unwrap()
    } else {
        body
    };
    let resp = r.body(body).send().await.unwrap();
    (resp.status().as_u16(), String::from_utf8_lossy(&resp.bytes().await.unwrap()).into_owned())
}

#[tokio::test]
async fn crafted_pushes_are_judged_by_what_they_carry() {
    let repos = Repos::new();
    let up = backend(&repos.root()).await;
    let f = front(up.port, 1 << 30).await;
    let work = repos.work();
    let base = repos.remote_main();
    let caps = "\0report-status side-band-64k agent=crafted";

    // A gzip body is judged by what it decodes to: a force update inside is refused, nothing goes upstream.
    git(&work, &["checkout", "-q", "-b", "rewritten", &base]);
    git(&work, &["commit", "-q", "--amend", "-m", "rewritten"]);
    let rewritten = git(&work, &["rev-parse", "HEAD"]);
    let force = push_body(
        &[format!("{base} {rewritten} refs/heads/main{caps}\n")],
        Some(pack_file(&work, &rewritten, Some(&base))),
    );
    let (status, answer) = send_push(&f.url, force, true).await;
    assert_eq!(status, 200);
    assert!(answer.contains("ng refs/heads/main") && answer.contains("force update"), "{answer}");
    assert_eq!(up.pushes.load(Ordering::SeqCst), 0);
    assert_eq!(repos.remote_main(), base);

    // A fast-forward in gzip goes upstream as it came (the host decodes it) and lands.
    git(&work, &["checkout", "-q", "main"]);
    let ahead = commit(&work, "two");
    let ff =
        push_body(&[format!("{base} {ahead} refs/heads/main{caps}\n")], Some(pack_file(&work, &ahead, Some(&base))));
    let (status, answer) = send_push(&f.url, ff, true).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("ok refs/heads/main"), "{answer}");
    assert_eq!(repos.remote_main(), ahead);
    assert_eq!(up.pushes.load(Ordering::SeqCst), 1);

    // Claiming to create a branch that exists (old all zeros) passes as a creation, but cannot overwrite it:
    // the host's receive-pack updates a ref only from the value the push names.
    let forged = push_body(
        &[format!("{ZERO_OID} {rewritten} refs/heads/main{caps}\n")],
        Some(pack_file(&work, &rewritten, Some(&ahead))),
    );
    let (_, answer) = send_push(&f.url, forged, false).await;
    assert!(answer.contains("ng refs/heads/main"), "{answer}");
    assert_eq!(repos.remote_main(), ahead);

    // A signed push is refused before anything goes upstream.
    let pushes = up.pushes.load(Ordering::SeqCst);
    let signed = push_body(&[format!("push-cert{caps}\n"), "certificate version 0.1\n".into()], None);
    let (status, answer) = send_push(&f.url, signed, false).await;
    assert_eq!(status, 200);
    assert!(answer.contains("unpack signed pushes"), "{answer}");
    assert_eq!(up.pushes.load(Ordering::SeqCst), pushes);

    // A ref name git would not store, and a second ref line with capabilities, are refused.
    for lines in [
        vec![format!("{ahead} {rewritten} refs/heads/../main{caps}\n")],
        vec![format!("{ahead} {ahead} refs/heads/x{caps}\n"), format!("{ahead} {rewritten} refs/heads/main{caps}\n")],
    ] {
        let (status, answer) =
            send_push(&f.url, push_body(&lines, Some(pack_file(&work, &rewritten, None))), false).await;
        assert_eq!(status, 200);
        assert!(answer.contains("paddock: push refused") && !answer.contains("ok refs/"), "{answer}");
    }
    assert_eq!(up.pushes.load(Ordering::SeqCst), pushes);
    assert_eq!(repos.remote_main(), ahead);
}

#[tokio::test]
async fn data_after_a_gzip_body_is_refused() {
    let repos = Repos::new();
    let up = backend(&repos.root()).await;
    let f = front(up.port, 1 << 30).await;
    let work = repos.work();
    let base = repos.remote_main();
    let ahead = commit(&work, "two");
    let body = push_body(
        &[format!("{base} {ahead} refs/heads/main\0report-status\n")],
        Some(pack_file(&work, &ahead, Some(&base))),
    );
    use std::io::Write;
    let member = |data: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    };
    let mut gz = member(&body);
    gz.extend(member(b"more"));
    let resp = reqwest::Client::new()
        .post(format!("{}/acme/app.git/git-receive-pack", f.url))
        .header("content-type", "application/x-git-receive-pack-request")
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .await
        .unwrap();
    let answer = resp.text().await.unwrap();
    assert!(answer.contains("data after its end"), "{answer}");
    assert_eq!(up.pushes.load(Ordering::SeqCst), 0);
    assert_eq!(repos.remote_main(), base);
}

#[tokio::test]
async fn concurrent_refreshes_of_one_mirror_take_turns() {
    let repos = Repos::new();
    let up = backend(&repos.root()).await;
    let scratch = tempfile::tempdir().unwrap();
    let mirrors = Arc::new(Mirrors::new(scratch.path().join("egress-mirrors"), &egress(true)).unwrap());
    let base = repos.remote_main();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (mirrors, remote) = (mirrors.clone(), remote(up.port));
        tasks.push(tokio::spawn(async move {
            let m = mirrors.refresh(&remote).await.unwrap();
            m.refs.map(|r| r.get("refs/heads/main").cloned())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Ok(Some(base.clone())));
    }
}

/// What reached the stand-in beyond git's ref advertisements (which a push reads first, straight from the
/// host): fetches (`git-upload-pack`) and pushes.
fn fetches_and_pushes(up: &Backend) -> Vec<String> {
    let requests = up.requests.lock().unwrap();
    requests.iter().filter(|r| !r.starts_with("GET ") || r.contains("upload-pack")).cloned().collect()
}

/// The words the record of a push refused on its lenient reading carries.
const LENIENT: &str = "every update that is neither a creation nor a deletion taken as a fast-forward";

#[tokio::test]
async fn a_push_refused_on_its_most_lenient_reading_touches_no_mirror_and_is_recorded_once() {
    let repos = Repos::new();
    let work = repos.work();
    let base = repos.remote_main();
    // A second repository the stand-in serves, with history, outside the policy's `write_repos`.
    let other = repos.root().join("acme/other.git");
    std::fs::create_dir_all(&other).unwrap();
    git(&other, &["init", "--bare", "-q", "-b", "main"]);
    git(&other, &["config", "http.receivepack", "true"]);
    git(&work, &["push", "-q", other.to_str().unwrap(), "main"]);
    let up = backend(&repos.root()).await;
    let f = front(up.port, 1 << 30).await;
    git(&work, &["remote", "add", "origin", &format!("{}/acme/app.git", f.url)]);
    git(&work, &["remote", "add", "other", &format!("{}/acme/other.git", f.url)]);
    let mirror_of = |repo: &str| f.dir.path().join(format!("data/egress-mirrors/{HOST}_{}/{repo}.git", up.port));

    // An update of a repository the agent may not write: refused whatever its ancestry, so the host is not
    // asked for it.
    let ahead = commit(&work, "two");
    let out = git_async(&work, &["push", "other", "main"]).await;
    let text = shown(&out);
    assert!(!out.status.success() && text.contains("! [remote rejected] main -> main ("), "{text}");
    assert!(text.contains("acme/other") && text.contains(LENIENT), "{text}");
    // A tag under `deny_tag_push`, to the writable repository: the same.
    git(&work, &["tag", "v1"]);
    let out = git_async(&work, &["push", "origin", "v1"]).await;
    let text = shown(&out);
    assert!(!out.status.success() && text.contains("! [remote rejected] v1 -> v1 ("), "{text}");
    assert_eq!(fetches_and_pushes(&up), Vec::<String>::new());
    assert!(!mirror_of("acme/other").exists() && !mirror_of("acme/app").exists());
    assert_eq!(git(&other, &["rev-parse", "refs/heads/main"]), base);

    // A fast-forward passes the lenient reading: the mirror is fetched, the push decided and recorded once.
    let out = git_async(&work, &["push", "origin", "main"]).await;
    assert!(out.status.success(), "{}", shown(&out));
    assert_eq!(repos.remote_main(), ahead);
    assert!(mirror_of("acme/app").join("HEAD").exists());
    assert!(up.requests.lock().unwrap().iter().any(|r| r.contains("git-upload-pack")));
    // A force update passes it too, and is refused on what the objects show.
    git(&work, &["reset", "-q", "--hard", &base]);
    commit(&work, "diverged");
    let out = git_async(&work, &["push", "-f", "origin", "main"]).await;
    let text = shown(&out);
    assert!(!out.status.success() && text.contains("force update (not a fast-forward)"), "{text}");
    assert!(!text.contains(LENIENT), "{text}");
    assert_eq!(repos.remote_main(), ahead);

    // One audit row per push. Those refused early say that their updates' fast-forward was assumed.
    let rows = f.t.audit(&f.session).await;
    let pushes: Vec<&serde_json::Value> = rows.iter().filter(|r| r["phase"] == "git_push").collect();
    assert_eq!(pushes.len(), 4, "{pushes:#?}");
    let (early, decided): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) =
        pushes.iter().partition(|r| r["reason"].as_str().unwrap().contains(LENIENT));
    assert!(early.iter().all(|r| r["verdict"] == "deny"), "{early:#?}");
    let mut tools: Vec<&str> = early.iter().map(|r| r["tool"].as_str().unwrap()).collect();
    tools.sort();
    assert_eq!(
        tools,
        ["git push to acme/app: refs/tags/v1 (create)", "git push to acme/other: refs/heads/main (fast-forward)"]
    );
    let mut verdicts: Vec<&str> = decided.iter().map(|r| r["verdict"].as_str().unwrap()).collect();
    verdicts.sort();
    assert_eq!(verdicts, ["allow", "deny"], "{decided:#?}");
}

/// A push written by hand in chunks: the request's head and a first chunk go now; the connection stays open
/// for the caller to go on.
async fn start_chunked_push(front: &str, first: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = front.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /acme/app.git/git-receive-pack HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/x-git-receive-pack-request\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&chunk(first)).await.unwrap();
    tcp
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// What the connection answers, read until it holds `needle` or ends (at most a minute).
async fn read_until(r: &mut (impl tokio::io::AsyncRead + Unpin), needle: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains(needle) {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

/// Waits (at most a minute) until `done` holds.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1200 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen");
}

#[tokio::test]
async fn a_session_has_a_limited_number_of_pushes_in_progress() {
    let repos = Repos::new();
    let up = backend(&repos.root()).await;
    let f = front_with(up.port, 1 << 30, PushLimits { per_session: 1, ..PushLimits::default() }).await;
    let work = repos.work();
    git(&work, &["remote", "add", "origin", &format!("{}/acme/app.git", f.url)]);
    let base = repos.remote_main();
    let ahead = commit(&work, "two");

    // A push that starts and stalls holds the session's only slot.
    let first = push_body(&[format!("{base} {ahead} refs/heads/main\0report-status\n")], None);
    let mut stalled = start_chunked_push(&f.url, &first).await;
    wait_until("the stalled push starting", || f.mirrors.pushes_in_progress(&f.session) == 1).await;
    let out = git_async(&work, &["push", "origin", "main"]).await;
    let text = shown(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("! [remote rejected] main -> main (this session's pushes in progress are at"), "{text}");
    assert!(text.contains("limit (1 at once)"), "{text}");
    assert_eq!(fetches_and_pushes(&up), Vec::<String>::new());
    assert_eq!(repos.remote_main(), base);
    let rows = f.t.audit(&f.session).await;
    assert!(
        rows.iter()
            .any(|r| r["phase"] == "git_push" && r["verdict"] == "deny" && r["policy"] == "paddock/git-push-limit"),
        "{rows:#?}"
    );

    // Once the stalled push ends (refused: it carries no pack), the session may push again.
    use tokio::io::AsyncWriteExt;
    stalled.write_all(b"0\r\n\r\n").await.unwrap();
    let answer = read_until(&mut stalled, "where one is due").await;
    assert!(answer.contains("unpack the push request carries no pack where one is due"), "{answer}");
    wait_until("the stalled push ending", || f.mirrors.pushes_in_progress(&f.session) == 0).await;
    let out = git_async(&work, &["push", "origin", "main"]).await;
    assert!(out.status.success(), "{}", shown(&out));
    assert_eq!(repos.remote_main(), ahead);
}

#[tokio::test]
async fn a_push_that_trickles_in_is_cut_at_its_deadline() {
    let repos = Repos::new();
    let up = backend(&repos.root()).await;
    let limits = PushLimits { per_session: 1, arrival: std::time::Duration::from_secs(2) };
    let f = front_with(up.port, 1 << 30, limits).await;
    let work = repos.work();
    let base = repos.remote_main();
    let ahead = commit(&work, "two");

    // A byte every 100 ms: never idle long, never done.
    let mut first = push_body(&[format!("{base} {ahead} refs/heads/main\0report-status\n")], None);
    first.extend_from_slice(b"PACK");
    let (mut read, mut write) = start_chunked_push(&f.url, &first).await.into_split();
    let trickle = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for _ in 0..600 {
            if write.write_all(&chunk(b"\0")).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    let answer = read_until(&mut read, "within 2 s").await;
    trickle.abort();
    assert!(answer.contains("ng refs/heads/main cannot read the push: the push did not arrive within 2 s"), "{answer}");
    assert_eq!(fetches_and_pushes(&up), Vec::<String>::new());
    // Its slot is free again.
    wait_until("the cut push ending", || f.mirrors.pushes_in_progress(&f.session) == 0).await;
    git(&work, &["remote", "add", "origin", &format!("{}/acme/app.git", f.url)]);
    let out = git_async(&work, &["push", "origin", "main"]).await;
    assert!(out.status.success(), "{}", shown(&out));
    assert_eq!(repos.remote_main(), ahead);
}
