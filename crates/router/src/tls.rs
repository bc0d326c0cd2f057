//! TLS termination: certificates chosen by SNI and the rustls server
//! configuration the router's TLS listener uses.
//!
//! A [`CertStore`] holds one default certificate (served when the client
//! names no host, or a host no user certificate covers) and user
//! certificates per domain, exact (`shop.example.com`) or wildcard
//! (`*.apps.localhost`, one label deep as in RFC 6125). Certificates can be
//! added and removed while the router serves: each handshake looks them up
//! anew. Cryptography is rustls with the `ring` provider.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate or the TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate PEM held no certificate or could not be read.
    #[error("certificate PEM for {domain:?} is unreadable: {reason}")]
    CertificatePem {
        /// The domain the certificate was meant for.
        domain: String,
        /// What was wrong.
        reason: String,
    },
    /// The key PEM held no private key or could not be read.
    #[error("private key PEM for {domain:?} is unreadable: {reason}")]
    KeyPem {
        /// The domain the key was meant for.
        domain: String,
        /// What was wrong.
        reason: String,
    },
    /// The key is of a kind rustls cannot sign with, or does not belong to
    /// the certificate.
    #[error("private key for {domain:?} is unusable: {source}")]
    Key {
        /// The domain the key was meant for.
        domain: String,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// Generating a self-signed certificate failed.
    #[error("cannot generate a self-signed certificate for {names:?}: {source}")]
    Generate {
        /// The names the certificate was to cover.
        names: Vec<String>,
        /// rcgen's reason.
        source: rcgen::Error,
    },
    /// A domain name that is empty or a wildcard not of the form `*.suffix`.
    #[error("invalid certificate domain {0:?}: expected a host name or *.suffix")]
    Domain(String),
    /// rustls refused the server configuration.
    #[error("TLS server configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// A certificate chain (leaf first) with its private key, ready to serve.
#[derive(Clone)]
pub struct Certificate {
    key: Arc<CertifiedKey>,
    chain_pem: String,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("chain_len", &self.key.cert.len())
            .finish_non_exhaustive()
    }
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

impl Certificate {
    /// Reads a PEM certificate chain (leaf first) and its PEM private key
    /// (PKCS#8, PKCS#1 or SEC1). `domain` only names the certificate in
    /// errors.
    pub fn from_pem(domain: &str, chain_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| TlsError::CertificatePem {
                domain: domain.to_owned(),
                reason: err.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::CertificatePem {
                domain: domain.to_owned(),
                reason: "no CERTIFICATE section".to_owned(),
            });
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|err| TlsError::KeyPem {
                domain: domain.to_owned(),
                reason: err.to_string(),
            })?;
        Self::from_der(domain, chain, key, chain_pem.to_owned())
    }

    fn from_der(
        domain: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        chain_pem: String,
    ) -> Result<Self, TlsError> {
        let key =
            CertifiedKey::from_der(chain, key, &provider()).map_err(|source| TlsError::Key {
                domain: domain.to_owned(),
                source,
            })?;
        Ok(Self {
            key: Arc::new(key),
            chain_pem,
        })
    }

    /// Generates a self-signed certificate (ECDSA P-256) whose subject
    /// alternative names are `names`, e.g. `["apps.localhost",
    /// "*.apps.localhost"]`.
    pub fn self_signed(names: &[String]) -> Result<Self, TlsError> {
        let generated = rcgen::generate_simple_self_signed(names.to_vec()).map_err(|source| {
            TlsError::Generate {
                names: names.to_vec(),
                source,
            }
        })?;
        let chain = vec![generated.cert.der().clone()];
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.key_pair.serialize_der()));
        let label = names.first().map_or("self-signed", String::as_str);
        Self::from_der(label, chain, key, generated.cert.pem())
    }

    /// The certificate chain as PEM, for clients that must trust it.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The certificate chain as DER, leaf first.
    pub fn chain_der(&self) -> &[CertificateDer<'static>] {
        &self.key.cert
    }
}

/// Certificates by domain, and the default one. Shared (`Arc`) between the
/// TLS listener and whoever manages certificates; changes apply to the next
/// handshake.
#[derive(Debug)]
pub struct CertStore {
    default: RwLock<Certificate>,
    exact: ByDomain,
    /// Keyed by the suffix after `*.`.
    wildcard: ByDomain,
}

/// Certificates keyed by domain (or wildcard suffix).
type ByDomain = RwLock<HashMap<String, Certificate>>;

/// A domain as certificates are keyed: lower case, no trailing dot.
fn normalise_domain(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

impl CertStore {
    /// A store serving `default` to every client until user certificates
    /// are added.
    pub fn new(default: Certificate) -> Self {
        Self {
            default: RwLock::new(default),
            exact: RwLock::new(HashMap::new()),
            wildcard: RwLock::new(HashMap::new()),
        }
    }

    /// A store whose default certificate is freshly generated and
    /// self-signed for `domains`; for each domain `d` it covers both `d` and
    /// `*.d`, so `CertStore::self_signed(&["apps.localhost"])` serves
    /// `apps.localhost` and every app route under it.
    pub fn self_signed<S: AsRef<str>>(domains: &[S]) -> Result<Self, TlsError> {
        let mut names = Vec::new();
        for domain in domains {
            let given = domain.as_ref();
            let domain = normalise_domain(given);
            if domain.is_empty() || domain.trim_start_matches("*.").contains('*') {
                return Err(TlsError::Domain(given.to_owned()));
            }
            if let Some(suffix) = domain.strip_prefix("*.") {
                names.push(suffix.to_owned());
                names.push(domain.clone());
            } else {
                names.push(domain.clone());
                names.push(format!("*.{domain}"));
            }
        }
        if names.is_empty() {
            names.push("localhost".to_owned());
        }
        names.dedup();
        Ok(Self::new(Certificate::self_signed(&names)?))
    }

    /// The default certificate (served when SNI matches no user
    /// certificate).
    pub fn default_certificate(&self) -> Certificate {
        match self.default.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the default certificate.
    pub fn set_default(&self, certificate: Certificate) {
        match self.default.write() {
            Ok(mut guard) => *guard = certificate,
            Err(poisoned) => *poisoned.into_inner() = certificate,
        }
    }

    fn map_for(&self, domain: &str) -> Result<(&ByDomain, String), TlsError> {
        let normal = normalise_domain(domain);
        let invalid = || TlsError::Domain(domain.to_owned());
        if let Some(suffix) = normal.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(invalid());
            }
            return Ok((&self.wildcard, suffix.to_owned()));
        }
        if normal.is_empty() || normal.contains('*') {
            return Err(invalid());
        }
        Ok((&self.exact, normal))
    }

    /// Serves `certificate` for `domain`: a host name (exact match) or
    /// `*.suffix` (any host one label under `suffix`). An exact certificate
    /// wins over a wildcard one. Replaces an earlier certificate for the
    /// same domain.
    pub fn insert(&self, domain: &str, certificate: Certificate) -> Result<(), TlsError> {
        let (map, key) = self.map_for(domain)?;
        match map.write() {
            Ok(mut guard) => guard.insert(key, certificate),
            Err(poisoned) => poisoned.into_inner().insert(key, certificate),
        };
        Ok(())
    }

    /// Stops serving the user certificate for `domain`; says whether there
    /// was one.
    pub fn remove(&self, domain: &str) -> bool {
        let Ok((map, key)) = self.map_for(domain) else {
            return false;
        };
        match map.write() {
            Ok(mut guard) => guard.remove(&key).is_some(),
            Err(poisoned) => poisoned.into_inner().remove(&key).is_some(),
        }
    }

    fn lookup(map: &ByDomain, key: &str) -> Option<Certificate> {
        match map.read() {
            Ok(guard) => guard.get(key).cloned(),
            Err(poisoned) => poisoned.into_inner().get(key).cloned(),
        }
    }

    /// The certificate a client naming `server_name` (SNI) gets: exact,
    /// then wildcard, then the default.
    pub fn resolve_name(&self, server_name: Option<&str>) -> Certificate {
        if let Some(name) = server_name.map(normalise_domain) {
            if let Some(found) = Self::lookup(&self.exact, &name) {
                return found;
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(found) = Self::lookup(&self.wildcard, parent) {
                    return found;
                }
            }
        }
        self.default_certificate()
    }
}

/// rustls's view of a [`CertStore`].
#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.resolve_name(client_hello.server_name()).key.clone())
    }
}

/// The rustls server configuration for `certs`: TLS 1.2 and 1.3, no client
/// certificates, ALPN `h2` then `http/1.1`.
pub(crate) fn server_config(certs: Arc<CertStore>) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(certs)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> Certificate {
        Certificate::self_signed(&[name.to_owned()]).expect("generates")
    }

    fn same(a: &Certificate, b: &Certificate) -> bool {
        a.chain_der() == b.chain_der()
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let store = CertStore::self_signed(&["apps.localhost"]).expect("store");
        let default = store.default_certificate();
        let wild = cert("*.apps.localhost");
        let exact = cert("shop.apps.localhost");
        store
            .insert("*.Apps.Localhost", wild.clone())
            .expect("wild");
        store
            .insert("shop.apps.localhost.", exact.clone())
            .expect("exact");
        assert!(same(
            &store.resolve_name(Some("SHOP.apps.localhost")),
            &exact
        ));
        assert!(same(
            &store.resolve_name(Some("blog.apps.localhost")),
            &wild
        ));
        // A wildcard covers one label only.
        assert!(same(
            &store.resolve_name(Some("a.b.apps.localhost")),
            &default
        ));
        assert!(same(&store.resolve_name(Some("other.test")), &default));
        assert!(same(&store.resolve_name(None), &default));
        assert!(store.remove("shop.apps.localhost"));
        assert!(same(
            &store.resolve_name(Some("shop.apps.localhost")),
            &wild
        ));
        assert!(!store.remove("shop.apps.localhost"));
    }

    #[test]
    fn bad_domains_and_pem_are_errors_naming_the_input() {
        let store = CertStore::self_signed(&["x.test"]).expect("store");
        let err = store.insert("*.", cert("a")).expect_err("rejected");
        assert!(err.to_string().contains("\"*.\""), "{err}");
        assert!(store.insert("a.*.test", cert("a")).is_err());
        let err = Certificate::from_pem("bad.test", "nonsense", "nonsense").expect_err("bad");
        assert!(err.to_string().contains("bad.test"), "{err}");
    }

    #[test]
    fn pem_round_trips_and_mismatched_key_is_refused() {
        let generated =
            rcgen::generate_simple_self_signed(vec!["pem.test".to_owned()]).expect("generates");
        let other = rcgen::KeyPair::generate().expect("key");
        let cert_pem = generated.cert.pem();
        let loaded =
            Certificate::from_pem("pem.test", &cert_pem, &generated.key_pair.serialize_pem())
                .expect("loads");
        assert_eq!(loaded.chain_der()[0], *generated.cert.der());
        assert_eq!(loaded.chain_pem(), cert_pem);
        let err = Certificate::from_pem("pem.test", &cert_pem, &other.serialize_pem())
            .expect_err("key does not match");
        assert!(matches!(err, TlsError::Key { .. }), "{err}");
    }
}
