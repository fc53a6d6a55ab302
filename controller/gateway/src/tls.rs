//! TLS on the gateway's port, for a gateway that runners and the controller reach over a pod network.
//!
//! - **Certificates from files** (`tls: {certFile, keyFile}`, PEM): a mounted `kubernetes.io/tls` Secret that
//!   the Helm chart generates, cert-manager renews, or the user brings. The files are checked again on a new
//!   connection at most once a second (a `stat` of each), and read again when they changed: cert-manager's
//!   renewals and `kubectl` edits reach a running gateway without a restart. A pair that does not load
//!   (a key that does not match its certificate, half of a non-atomic rewrite) is logged once and the
//!   previous pair is served until a good pair appears.
//! - **One port**: the routes and the egress proxy (`CONNECT`, absolute-form requests) are served inside
//!   the TLS connection, exactly as on a plain listener.
//! - **Plain HTTP to the TLS port** is answered `400` with a sentence saying to use `https://`, never served:
//!   a client configured with `http://` learns why at once instead of seeing a reset.
//! - **Handshakes off the accept loop**: each runs in a task of its own with a deadline, so that a client
//!   that connects and sends nothing cannot hold up the next one.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;

/// How often, at most, the certificate files are checked for a change.
const RECHECK: Duration = Duration::from_secs(1);
/// How long a client has to finish its handshake (or, on plain HTTP, to send its request head).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// What a plain-HTTP request to the TLS port gets.
pub const PLAIN_HTTP_REFUSAL: &str = "this gateway port serves TLS: use https:// (the certificate is signed by the \
                                      installation's gateway CA, see docs/gateway.md#tls)\n";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.certFile: cannot read `{path}`: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("tls.keyFile: cannot read `{path}`: {message}")]
    Key { path: PathBuf, message: String },
    #[error("tls.keyFile: `{key}` is not the key of the certificate in tls.certFile `{cert}`: {message}")]
    Mismatch { cert: PathBuf, key: PathBuf, message: String },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a certificate chain and its key from PEM files and checks that they belong together.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let bad_cert = |message: String| TlsError::Cert { path: cert.to_owned(), message };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad_cert(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad_cert(e.to_string()))?;
    if chain.is_empty() {
        return Err(bad_cert("no PEM certificate in it".into()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        message: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PEM private key in it".into(),
            e => e.to_string(),
        },
    })?;
    CertifiedKey::from_der(chain, der, &provider()).map_err(|e| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        message: e.to_string(),
    })
}

/// What identifies a file's content without reading it: the file a path resolves to (a Secret volume swaps
/// a symlink), its size and modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp { dev: m.dev(), ino: m.ino(), len: m.len(), modified: m.modified().ok() })
}

/// The serving certificate, read again when its files change.
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<ReloadState>,
}

struct ReloadState {
    current: Arc<CertifiedKey>,
    /// The files' stamps when `current` was read.
    loaded: (Option<Stamp>, Option<Stamp>),
    /// The stamps of a pair that did not load (warned about once).
    failed: Option<(Option<Stamp>, Option<Stamp>)>,
    checked: Instant,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReloadingCert({}, key: ***)", self.cert.display())
    }
}

impl ReloadingCert {
    /// Loads the pair now: a gateway whose certificate does not load does not start.
    pub fn load(tls: &TlsConfig) -> Result<ReloadingCert, TlsError> {
        let stamps = (stamp(&tls.cert_file), stamp(&tls.key_file));
        let current = Arc::new(load_pair(&tls.cert_file, &tls.key_file)?);
        Ok(ReloadingCert {
            cert: tls.cert_file.clone(),
            key: tls.key_file.clone(),
            state: Mutex::new(ReloadState { current, loaded: stamps, failed: None, checked: Instant::now() }),
        })
    }

    /// The pair to show: the files are checked when the last check is more than [`RECHECK`] ago.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.checked.elapsed() >= RECHECK {
            st.checked = Instant::now();
            let stamps = (stamp(&self.cert), stamp(&self.key));
            if stamps != st.loaded && st.failed != Some(stamps) {
                match load_pair(&self.cert, &self.key) {
                    Ok(pair) => {
                        st.current = Arc::new(pair);
                        st.loaded = stamps;
                        st.failed = None;
                        tracing::info!(cert = %self.cert.display(), "reloaded the serving certificate");
                    }
                    Err(e) => {
                        st.failed = Some(stamps);
                        tracing::warn!(error = %e, "the changed serving certificate does not load; still serving the previous one");
                    }
                }
            }
        }
        st.current.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The server side of the gateway's TLS: HTTP/1.1 only (what the gateway serves), the certificate from
/// [`ReloadingCert`].
pub fn server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let resolver = Arc::new(ReloadingCert::load(tls)?);
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A listener whose connections are TLS: axum serves it like a `TcpListener`. Connections are accepted and
/// their handshakes run on tasks of their own; only finished handshakes reach `accept`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    // Served no more (shutdown): stop accepting.
                    _ = tx.closed() => return,
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            // Out of file descriptors and the like: wait rather than spin.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                // Small SSE writes must not wait on Nagle's algorithm (see `server::serve_on`).
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(acceptor, tcp)).await {
                        Ok(Ok(Some(tls))) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

/// The handshake, or `None` when the client spoke plain HTTP (answered with [`PLAIN_HTTP_REFUSAL`]) or
/// went away first.
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    mut tcp: TcpStream,
) -> io::Result<Option<TlsStream<TcpStream>>> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 {
        return Ok(None);
    }
    if first[0] != TLS_HANDSHAKE {
        refuse_plain(&mut tcp).await;
        return Ok(None);
    }
    acceptor.accept(tcp).await.map(Some)
}

/// Reads the request head (so that closing does not reset the connection before the client reads the
/// answer), then answers `400` and closes.
async fn refuse_plain(tcp: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: \
         {}\r\n\r\n{PLAIN_HTTP_REFUSAL}",
        PLAIN_HTTP_REFUSAL.len()
    );
    let _ = tcp.write_all(answer.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task ended (it only does when this listener is gone): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A CA and a serving certificate it signed, as PEM: what the chart or cert-manager make for a cluster.
pub struct GeneratedCertificates {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Generates a CA and a certificate for `names` (host names, or IP addresses) signed by it: for tests and
/// benchmarks of a gateway served over TLS.
pub fn generate(names: &[&str]) -> Result<GeneratedCertificates, rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "Paddock gateway CA (test)");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    leaf.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("paddock-gateway"));
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok(GeneratedCertificates { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, c: &GeneratedCertificates) -> TlsConfig {
        std::fs::write(dir.join("tls.crt"), &c.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &c.key_pem).unwrap();
        TlsConfig { cert_file: dir.join("tls.crt"), key_file: dir.join("tls.key") }
    }

    /// As a Secret volume updates a file: a new file renamed over the old one.
    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate(&["a.test"]).unwrap();
        let tls = write(dir.path(), &a);
        assert!(ReloadingCert::load(&tls).is_ok());

        let missing = TlsConfig { cert_file: dir.path().join("nope.crt"), ..tls.clone() };
        let e = ReloadingCert::load(&missing).unwrap_err().to_string();
        assert!(e.starts_with("tls.certFile: cannot read `") && e.contains("nope.crt"), "{e}");

        std::fs::write(dir.path().join("empty.key"), "").unwrap();
        let no_key = TlsConfig { key_file: dir.path().join("empty.key"), ..tls.clone() };
        let e = ReloadingCert::load(&no_key).unwrap_err().to_string();
        assert!(e.starts_with("tls.keyFile:") && e.contains("no PEM private key"), "{e}");

        let b = generate(&["b.test"]).unwrap();
        std::fs::write(dir.path().join("other.key"), &b.key_pem).unwrap();
        let mismatch = TlsConfig { key_file: dir.path().join("other.key"), ..tls };
        let e = ReloadingCert::load(&mismatch).unwrap_err().to_string();
        assert!(e.contains("is not the key of the certificate in tls.certFile"), "{e}");
    }

    #[test]
    fn a_changed_pair_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate(&["a.test"]).unwrap();
        let tls = write(dir.path(), &a);
        let cert = ReloadingCert::load(&tls).unwrap();
        let first = cert.current().cert[0].clone();

        // Half a rotation: the new certificate with the old key does not load; the old pair stays.
        let b = generate(&["b.test"]).unwrap();
        replace(&tls.cert_file, &b.cert_pem);
        cert.state.lock().unwrap().checked -= RECHECK;
        assert_eq!(cert.current().cert[0], first);

        // The rotation completes: the new pair is served.
        replace(&tls.key_file, &b.key_pem);
        cert.state.lock().unwrap().checked -= RECHECK;
        let second = cert.current().cert[0].clone();
        assert_ne!(second, first);
        assert_eq!(second.as_ref(), CertificateDer::from_pem_slice(b.cert_pem.as_bytes()).unwrap().as_ref());
    }
}
