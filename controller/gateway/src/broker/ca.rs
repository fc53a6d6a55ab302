//! The installation's CA and the leaf certificates it signs for brokered hosts. The sandbox trusts the CA's
//! certificate (never its key), so the gateway can terminate TLS for the hosts whose requests it must see and
//! change (inject a credential).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::BrokerError;

/// How long a leaf certificate is valid, and when the cache makes a new one: short, so that a leaf that
/// leaks from the gateway's memory is of little use.
const LEAF_VALIDITY: Duration = Duration::from_secs(24 * 3600);
const LEAF_RENEW_AFTER: Duration = Duration::from_secs(12 * 3600);
/// Clocks in sandboxes may run a little behind the gateway's.
const LEAF_BACKDATE: time::Duration = time::Duration::hours(1);
const LEAF_CACHE_MAX: usize = 4096;

pub const CA_CERT_FILE: &str = "egress-ca.pem";
pub const CA_KEY_FILE: &str = "egress-ca.key";

/// The CA: its certificate (served, trusted by sandboxes) and the issuer that signs leaves (its key; never
/// logged, never served).
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    leaves: Mutex<HashMap<String, (Arc<CertifiedKey>, Instant)>>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateAuthority(key: ***)")
    }
}

impl CertificateAuthority {
    /// Loads the CA from its PEM files.
    pub fn load(cert: &Path, key: &Path) -> Result<CertificateAuthority, BrokerError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| BrokerError::Ca(format!("cannot read `{}`: {e}", p.display())))
        };
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        Self::from_pem(&cert_pem, &key_pem)
            .map_err(|e| BrokerError::Ca(format!("`{}` and `{}`: {e}", cert.display(), key.display())))
    }

    /// The CA kept in `dir` (`egress-ca.pem`, `egress-ca.key`), generated there the first time. The key file is
    /// created with mode 0600.
    pub fn in_dir(dir: &Path) -> Result<CertificateAuthority, BrokerError> {
        let (cert, key) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        if cert.exists() || key.exists() {
            return Self::load(&cert, &key);
        }
        let (cert_pem, key_pem) = generate()?;
        // The key first: a certificate without its key would make the next start fail.
        write_new(&key, &key_pem, 0o600)?;
        write_new(&cert, &cert_pem, 0o644)?;
        tracing::info!(path = %cert.display(), "generated the egress CA");
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// A CA that lives in memory only (tests and gateways built without a data directory).
    pub fn ephemeral() -> Result<CertificateAuthority, BrokerError> {
        let (cert_pem, key_pem) = generate()?;
        Self::from_pem(&cert_pem, &key_pem)
    }

    fn from_pem(cert_pem: &str, key_pem: &str) -> Result<CertificateAuthority, BrokerError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| BrokerError::Ca(format!("the key does not parse: {e}")))?;
        let cert_der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| BrokerError::Ca(format!("the certificate does not parse: {e}")))?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| BrokerError::Ca(format!("the certificate does not parse: {e}")))?;
        Ok(CertificateAuthority { cert_pem: cert_pem.to_owned(), cert_der, issuer, leaves: Mutex::new(HashMap::new()) })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The key that seals session credentials at rest, derived from the CA's key: every replica that shares
    /// the CA (a mounted Secret) can open what another sealed, and nothing else in the database opens it.
    pub fn sealing_key(&self) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(b"paddock session credentials v1\0");
        h.update(self.issuer.key().serialize_der());
        h.finalize().into()
    }

    /// The certificate (with the CA's in the chain) and key to show for `host`: from the cache while fresh,
    /// else signed now.
    pub fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, BrokerError> {
        if let Some((leaf, made)) = self.leaves.lock().expect("leaves").get(host)
            && made.elapsed() < LEAF_RENEW_AFTER
        {
            return Ok(leaf.clone());
        }
        let leaf = Arc::new(self.sign_leaf(host)?);
        let mut leaves = self.leaves.lock().expect("leaves");
        if leaves.len() >= LEAF_CACHE_MAX {
            leaves.retain(|_, (_, made)| made.elapsed() < LEAF_RENEW_AFTER);
            if leaves.len() >= LEAF_CACHE_MAX {
                leaves.clear();
            }
        }
        leaves.insert(host.to_owned(), (leaf.clone(), Instant::now()));
        Ok(leaf)
    }

    fn sign_leaf(&self, host: &str) -> Result<CertifiedKey, BrokerError> {
        let bad = |e: rcgen::Error| BrokerError::Ca(format!("cannot sign a certificate for `{host}`: {e}"));
        let mut params = CertificateParams::new(vec![host.to_owned()]).map_err(bad)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - LEAF_BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(bad)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(bad)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
            .map_err(|e| BrokerError::Ca(format!("cannot use the key for `{host}`: {e}")))?;
        Ok(CertifiedKey::new(vec![cert.der().clone(), self.cert_der.clone()], signing))
    }
}

/// A new CA: its certificate and key, PEM.
fn generate() -> Result<(String, String), BrokerError> {
    let bad = |e: rcgen::Error| BrokerError::Ca(format!("cannot generate the CA: {e}"));
    let key = KeyPair::generate().map_err(bad)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Paddock");
    dn.push(DnType::CommonName, format!("Paddock egress CA {}", crate::gateway::random_hex(4)));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - LEAF_BACKDATE;
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key).map_err(bad)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Creates `path` (it must not exist) with `mode` and writes `text`.
fn write_new(path: &PathBuf, text: &str, mode: u32) -> Result<(), BrokerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| BrokerError::Ca(format!("cannot create `{}`: {e}", path.display())))?;
    f.write_all(text.as_bytes()).map_err(|e| BrokerError::Ca(format!("cannot write `{}`: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier as _;

    /// Whether `leaf` verifies for `host` against `ca` alone, as a sandbox's TLS client checks it.
    fn verifies(ca: &CertificateAuthority, host: &str) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
        let leaf = ca.leaf(host).unwrap();
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
        let now = rustls::pki_types::UnixTime::now();
        verifier.verify_server_cert(&leaf.cert[0], &leaf.cert[1..], &name, &[], now).map(|_| ())
    }

    #[test]
    fn leaves_verify_for_their_host_only_and_the_ca_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::in_dir(dir.path()).unwrap();
        verifies(&ca, "api.github.com").unwrap();
        let leaf = ca.leaf("api.github.com").unwrap();
        assert!(Arc::ptr_eq(&leaf, &ca.leaf("api.github.com").unwrap()), "cached");
        // A leaf for one host is no good for another.
        let other = ca.leaf("github.com").unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let name = rustls::pki_types::ServerName::try_from("api.github.com").unwrap();
        assert!(
            verifier
                .verify_server_cert(&other.cert[0], &other.cert[1..], &name, &[], rustls::pki_types::UnixTime::now())
                .is_err()
        );
        let again = CertificateAuthority::in_dir(dir.path()).unwrap();
        assert_eq!(again.cert_pem(), ca.cert_pem());
        assert_eq!(again.sealing_key(), ca.sealing_key());
    }

    #[test]
    fn a_configured_ed25519_ca_signs_leaves() {
        // The Helm chart generates an Ed25519 CA.
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("tls.key"), key.serialize_pem()).unwrap();
        let ca = CertificateAuthority::load(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).unwrap();
        verifies(&ca, "github.com").unwrap();
        let e = CertificateAuthority::load(&dir.path().join("tls.crt"), &dir.path().join("absent")).unwrap_err();
        assert!(e.to_string().contains("absent"), "{e}");
    }
}
