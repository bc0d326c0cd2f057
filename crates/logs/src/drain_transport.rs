//! How a syslog drain's messages travel: `syslog://` (TCP, octet-counted
//! frames), `syslog-tls://` (the same over TLS, rustls) and `https://` (one
//! HTTP POST per message), and the parsed drain URL they start from.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::rfc5424::octet_counted;

/// A syslog drain URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrainError {
    /// Not a URL, or one without a host or port.
    #[error("invalid syslog drain URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, without credentials or query.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A scheme other than `syslog`, `syslog-tls` and `https`.
    #[error(
        "unsupported syslog drain scheme {scheme:?} in {url:?}: use syslog, syslog-tls or https"
    )]
    UnsupportedScheme {
        /// The URL, without credentials or query.
        url: String,
        /// The scheme it had.
        scheme: String,
    },
    /// Trust roots in PEM that could not be read.
    #[error("invalid PEM trust roots: {reason}")]
    InvalidRoots {
        /// Why they were refused.
        reason: String,
    },
    /// The TLS client configuration could not be built.
    #[error("TLS configuration for syslog drains failed: {reason}")]
    Tls {
        /// rustls's error.
        reason: String,
    },
    /// [`crate::DrainManager::new`] was called outside a tokio runtime.
    #[error("the syslog drain manager needs a tokio runtime")]
    NoRuntime,
}

/// The transport a drain URL's scheme names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainScheme {
    /// `syslog://host:port`: TCP, RFC 6587 octet counting.
    Syslog,
    /// `syslog-tls://host:port`: the same over TLS.
    SyslogTls,
    /// `https://…`: an HTTP POST per message.
    Https,
}

/// What a drain forwards, from the URL's `drain-type` parameter as CF
/// reads it: `logs` (the default), `metrics` or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainType {
    /// Log lines only.
    Logs,
    /// Counters and gauges only.
    Metrics,
    /// Everything.
    All,
}

/// A parsed drain URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainUrl {
    /// The URL as bound (credentials included; never logged).
    pub raw: String,
    /// The URL without credentials or query, for metrics and messages.
    pub anonymized: String,
    /// Its transport.
    pub scheme: DrainScheme,
    /// Host name or address.
    pub host: String,
    /// Port (the scheme's default when the URL has none: 514, 6514, 443).
    pub port: u16,
    /// What it forwards.
    pub drain_type: DrainType,
}

impl DrainUrl {
    /// Parses a `syslog_drain_url`.
    pub fn parse(raw: &str) -> Result<Self, DrainError> {
        let parsed = url::Url::parse(raw.trim()).map_err(|err| DrainError::InvalidUrl {
            url: raw.to_owned(),
            reason: err.to_string(),
        })?;
        let mut anon = parsed.clone();
        // Only fails for URLs that cannot have credentials, which then have none.
        let _ = anon.set_username("");
        let _ = anon.set_password(None);
        anon.set_query(None);
        let anonymized = anon.to_string();
        let (scheme, default_port) = match parsed.scheme() {
            "syslog" => (DrainScheme::Syslog, 514),
            "syslog-tls" => (DrainScheme::SyslogTls, 6514),
            "https" => (DrainScheme::Https, 443),
            other => {
                return Err(DrainError::UnsupportedScheme {
                    url: anonymized,
                    scheme: other.to_owned(),
                })
            }
        };
        let host = match parsed.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => {
                return Err(DrainError::InvalidUrl {
                    url: anonymized,
                    reason: "no host".to_owned(),
                })
            }
        };
        let drain_type = match parsed
            .query_pairs()
            .find(|(k, _)| k == "drain-type")
            .map(|(_, v)| v.into_owned())
            .as_deref()
        {
            None | Some("logs") => DrainType::Logs,
            Some("metrics") => DrainType::Metrics,
            Some("all") => DrainType::All,
            Some(other) => {
                return Err(DrainError::InvalidUrl {
                    url: anonymized,
                    reason: format!("drain-type must be logs, metrics or all, got {other:?}"),
                })
            }
        };
        Ok(Self {
            raw: raw.trim().to_owned(),
            anonymized,
            scheme,
            port: parsed.port().unwrap_or(default_port),
            host,
            drain_type,
        })
    }
}

/// Which drain certificates are trusted.
#[derive(Debug, Clone)]
pub struct DrainTls {
    /// Trust the Mozilla roots of `webpki-roots` (the default).
    pub use_webpki_roots: bool,
    /// Further trusted roots (an operator's CA, a test's self-signed cert).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Accept any drain certificate (CF's `skip_cert_verify`); signatures
    /// are still checked, the chain and name are not.
    pub skip_cert_verify: bool,
}

impl Default for DrainTls {
    fn default() -> Self {
        Self {
            use_webpki_roots: true,
            extra_roots: Vec::new(),
            skip_cert_verify: false,
        }
    }
}

impl DrainTls {
    /// Adds every certificate of a PEM bundle to the trusted roots;
    /// returns how many.
    pub fn add_pem_roots(&mut self, pem: &[u8]) -> Result<usize, DrainError> {
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|err| DrainError::InvalidRoots {
                reason: err.to_string(),
            })?;
            self.extra_roots.push(cert);
            n += 1;
        }
        if n == 0 {
            return Err(DrainError::InvalidRoots {
                reason: "no certificate in the PEM data".to_owned(),
            });
        }
        Ok(n)
    }

    /// The rustls client configuration drains connect with.
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, DrainError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|err| DrainError::Tls {
                reason: err.to_string(),
            })?;
        let config = if self.skip_cert_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SkipVerify(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            if self.use_webpki_roots {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            for cert in &self.extra_roots {
                roots.add(cert.clone()).map_err(|err| DrainError::Tls {
                    reason: err.to_string(),
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        Ok(Arc::new(config))
    }
}

/// Accepts any certificate; only for drains the operator said to trust
/// blindly (CF's `skip_cert_verify`).
#[derive(Debug)]
struct SkipVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why sending to a drain failed, as the `reason` label of
/// `syslog_drain_failures`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Connecting, or the TLS handshake, failed or timed out.
    Connect,
    /// Writing failed, timed out, or the connection was found closed.
    Write,
    /// The HTTPS drain answered outside 2xx.
    Status,
}

impl Failure {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Write => "write",
            Self::Status => "http_status",
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// An open stream to a TCP or TLS drain. Syslog receivers never send
/// anything, so a task reads the other half and marks the connection dead
/// at EOF: a closed drain is noticed before the next write instead of
/// after a message has vanished into a dead socket.
struct StreamConn {
    writer: tokio::io::WriteHalf<Box<dyn Stream>>,
    dead: Arc<AtomicBool>,
    reader: JoinHandle<()>,
}

impl Drop for StreamConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Sends framed messages to one drain, connecting on demand.
pub(crate) struct Transport {
    url: DrainUrl,
    tls: Arc<ClientConfig>,
    http: Option<reqwest::Client>,
    connect_timeout: Duration,
    write_timeout: Duration,
    conn: Option<StreamConn>,
    /// Cleared by the reader task when the drain closes the connection.
    connected: Arc<AtomicBool>,
}

impl Transport {
    pub(crate) fn new(
        url: DrainUrl,
        tls: Arc<ClientConfig>,
        connect_timeout: Duration,
        write_timeout: Duration,
        connected: Arc<AtomicBool>,
    ) -> Self {
        let http = (url.scheme == DrainScheme::Https).then(|| {
            // reqwest only fails to build on a broken TLS backend; fall back
            // to its default client rather than losing the drain.
            reqwest::Client::builder()
                .use_preconfigured_tls((*tls).clone())
                .connect_timeout(connect_timeout)
                .timeout(write_timeout)
                .build()
                .unwrap_or_default()
        });
        Self {
            url,
            tls,
            http,
            connect_timeout,
            write_timeout,
            conn: None,
            connected,
        }
    }

    /// Whether a stream connection is open (HTTPS: whether the last post
    /// succeeded is tracked by the caller).
    pub(crate) fn is_connected(&self) -> bool {
        self.conn
            .as_ref()
            .is_some_and(|c| !c.dead.load(Ordering::Acquire))
    }

    /// Drops the connection (after a failure).
    pub(crate) fn disconnect(&mut self) {
        self.conn = None;
    }

    async fn connect(&mut self) -> Result<(), Failure> {
        let addr = (self.url.host.as_str(), self.url.port);
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Failure::Connect)?
            .map_err(|_| Failure::Connect)?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match self.url.scheme {
            DrainScheme::SyslogTls => {
                let name =
                    ServerName::try_from(self.url.host.clone()).map_err(|_| Failure::Connect)?;
                let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
                let tls = tokio::time::timeout(self.connect_timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| Failure::Connect)?
                    .map_err(|err| {
                        tracing::debug!(drain = %self.url.anonymized, %err, "TLS handshake failed");
                        Failure::Connect
                    })?;
                Box::new(tls)
            }
            _ => Box::new(tcp),
        };
        let (mut read, writer) = tokio::io::split(stream);
        let dead = Arc::new(AtomicBool::new(false));
        let reader = {
            let dead = dead.clone();
            let connected = self.connected.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                // Anything a receiver sends is ignored; EOF or an error ends it.
                while let Ok(n) = read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                dead.store(true, Ordering::Release);
                connected.store(false, Ordering::Release);
            })
        };
        self.conn = Some(StreamConn {
            writer,
            dead,
            reader,
        });
        Ok(())
    }

    /// Sends `messages` (RFC 5424, unframed) to the drain; on error the
    /// caller retries all of them after a back-off.
    pub(crate) async fn send(&mut self, messages: &[Vec<u8>]) -> Result<(), Failure> {
        if let Some(client) = &self.http {
            for msg in messages {
                let resp = client
                    .post(&self.url.raw)
                    .header(reqwest::header::CONTENT_TYPE, "text/plain")
                    .body(msg.clone())
                    .send()
                    .await
                    .map_err(|err| {
                        if err.is_connect() {
                            Failure::Connect
                        } else {
                            Failure::Write
                        }
                    })?;
                if !resp.status().is_success() {
                    return Err(Failure::Status);
                }
            }
            return Ok(());
        }
        if !self.is_connected() {
            self.conn = None;
            self.connect().await?;
        }
        let mut framed = Vec::new();
        for msg in messages {
            framed.extend_from_slice(&octet_counted(msg));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(Failure::Connect);
        };
        let write = async {
            conn.writer.write_all(&framed).await?;
            conn.writer.flush().await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            _ => {
                self.conn = None;
                Err(Failure::Write)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_urls_parse_with_default_ports_and_hide_credentials() {
        let u = DrainUrl::parse("syslog://logs.example.com:1234");
        assert_eq!(
            u.as_ref()
                .map(|u| (u.scheme, u.host.as_str(), u.port, u.drain_type)),
            Ok((
                DrainScheme::Syslog,
                "logs.example.com",
                1234,
                DrainType::Logs
            ))
        );
        let u = DrainUrl::parse("syslog-tls://10.0.0.1");
        assert_eq!(u.as_ref().map(|u| u.port), Ok(6514));
        let u = DrainUrl::parse("https://user:secret@h.example.com/path?token=x&drain-type=all");
        assert_eq!(
            u.as_ref()
                .map(|u| (u.anonymized.as_str(), u.port, u.drain_type)),
            Ok(("https://h.example.com/path", 443, DrainType::All))
        );
    }

    #[test]
    fn bad_drain_urls_are_refused_with_the_reason() {
        assert!(matches!(
            DrainUrl::parse("http://h.example.com"),
            Err(DrainError::UnsupportedScheme { scheme, .. }) if scheme == "http"
        ));
        assert!(matches!(
            DrainUrl::parse("not a url"),
            Err(DrainError::InvalidUrl { .. })
        ));
        assert!(matches!(
            DrainUrl::parse("syslog://h:1?drain-type=traces"),
            Err(DrainError::InvalidUrl { reason, .. }) if reason.contains("drain-type")
        ));
    }

    #[test]
    fn pem_roots_are_read_and_garbage_refused() {
        let mut tls = DrainTls::default();
        assert!(tls.add_pem_roots(b"nothing here").is_err());
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]);
        let pem = cert.map(|c| c.cert.pem()).unwrap_or_default();
        assert_eq!(tls.add_pem_roots(pem.as_bytes()), Ok(1));
        assert!(tls.client_config().is_ok());
    }
}
