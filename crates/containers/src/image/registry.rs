//! A client of the OCI distribution API (Docker Registry HTTP API v2): manifests and
//! indexes, blobs streamed to disk and verified by digest, and the registry's auth
//! (none, Basic, or a Bearer token from the realm of its `WWW-Authenticate` challenge).
//! See <https://github.com/opencontainers/distribution-spec/blob/main/spec.md> and
//! <https://distribution.github.io/distribution/spec/auth/token/>.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt as _;
use reqwest::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::config::ImageConfig;
use super::manifest::{self, media_types, Descriptor, Document, ImageManifest, Platform};
use super::reference::{Reference, DOCKER_HUB};
use super::{digest_hex, sha256_digest, ImageError, PullLimits};

/// A user name and password for a registry (Basic auth, or to obtain a Bearer token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password (error messages and traces may include this).
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How the client reaches registries.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`, as in references) that may be spoken to over plain http.
    pub insecure_registries: Vec<String>,
    /// Loopback registries (`localhost`, `127.0.0.0/8`, `[::1]`) use plain http.
    pub allow_loopback_http: bool,
    /// The platform picked out of manifest lists and indexes.
    pub platform: Platform,
    /// Size limits.
    pub limits: PullLimits,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response (a stalled registry fails the pull).
    pub read_timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure_registries: Vec::new(),
            allow_loopback_http: true,
            platform: Platform::default(),
            limits: PullLimits::default(),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="…"`.
    Basic,
    /// `Bearer realm="…",service="…",scope="…"`: fetch a token from `realm`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter to pass on.
        service: Option<String>,
        /// `scope` parameter to pass on.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value (one challenge; parameters may be quoted).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    let params = parse_params(rest);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    } else {
        None
    }
}

/// `k=v, k="quoted, \"v\""` → pairs.
fn parse_params(input: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
    out
}

#[derive(Debug, Clone)]
enum Auth {
    Basic,
    Bearer(String),
}

/// A manifest resolved for the configured platform, with its config.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// Digest of the platform's image manifest (the image id).
    pub digest: String,
    /// The manifest's layers, bottom first.
    pub layers: Vec<Descriptor>,
    /// The config blob's digest.
    pub config_digest: String,
    /// The raw config document.
    pub config_bytes: Vec<u8>,
    /// The parsed config.
    pub config: ImageConfig,
    /// The raw manifest document.
    pub manifest_bytes: Vec<u8>,
}

/// A registry client. Cheap to share (`Arc`); caches auth per registry and repository.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    config: RegistryConfig,
    /// Auth that worked, by (registry, repository, credentials fingerprint): a token
    /// obtained with one tenant's credentials must never serve another's pull.
    auth: Mutex<HashMap<(String, String, String), Auth>>,
    blob_downloads: AtomicU64,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl RegistryClient {
    /// A client with `config`.
    pub fn new(config: RegistryConfig) -> Result<RegistryClient, ImageError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .user_agent(concat!("ingot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ImageError::Http {
                url: String::new(),
                source,
            })?;
        Ok(RegistryClient {
            http,
            config,
            auth: Mutex::new(HashMap::new()),
            blob_downloads: AtomicU64::new(0),
        })
    }

    /// The client's configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// How many blob downloads this client has started (layers and configs).
    pub fn blob_downloads(&self) -> u64 {
        self.blob_downloads.load(Ordering::Relaxed)
    }

    /// `scheme://host` for `registry`: plain http only for insecure or loopback registries.
    pub fn base_url(&self, registry: &str) -> String {
        let host = if registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            registry
        };
        let insecure = self
            .config
            .insecure_registries
            .iter()
            .any(|r| r == registry)
            || (self.config.allow_loopback_http && is_loopback(registry));
        let scheme = if insecure { "http" } else { "https" };
        format!("{scheme}://{host}")
    }

    /// `GET /v2/`: checks the registry speaks the API and accepts `credentials`.
    pub async fn ping(
        &self,
        registry: &str,
        credentials: Option<&Credentials>,
    ) -> Result<(), ImageError> {
        let url = format!("{}/v2/", self.base_url(registry));
        let response = self.get(registry, "", &url, None, credentials).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(registry_error(&url, response).await)
        }
    }

    /// Resolves `reference` to the configured platform's image manifest and its config.
    pub(crate) async fn resolve(
        &self,
        reference: &Reference,
        credentials: Option<&Credentials>,
    ) -> Result<Resolved, ImageError> {
        let (digest, bytes, document) = self
            .fetch_manifest(reference, reference.manifest_reference(), credentials)
            .await?;
        let (digest, bytes, manifest) = match document {
            Document::Manifest(m) => (digest, bytes, m),
            Document::Index(index) => {
                let entry = manifest::select_platform(&index, &self.config.platform)
                    .ok_or_else(|| ImageError::NoMatchingPlatform {
                        reference: reference.to_string(),
                        platform: self.config.platform.to_string(),
                    })?
                    .clone();
                let (digest, bytes, document) = self
                    .fetch_manifest(reference, &entry.digest, credentials)
                    .await?;
                match document {
                    Document::Manifest(m) => (digest, bytes, m),
                    Document::Index(_) => {
                        return Err(ImageError::Invalid {
                            what: format!("manifest {} of {reference}", entry.digest),
                            reason: "an index inside an index".into(),
                        })
                    }
                }
            }
        };
        self.check_manifest(reference, &digest, &manifest)?;
        let config_bytes = self
            .fetch_small_blob(reference, &manifest.config, credentials)
            .await?;
        let config = ImageConfig::parse(
            &format!("config {} of {reference}", manifest.config.digest),
            &config_bytes,
        )?;
        if !config.diff_ids.is_empty() && config.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::Invalid {
                what: format!("image {reference}"),
                reason: format!(
                    "{} layers but {} diff_ids",
                    manifest.layers.len(),
                    config.diff_ids.len()
                ),
            });
        }
        Ok(Resolved {
            digest,
            layers: manifest.layers,
            config_digest: manifest.config.digest,
            config_bytes,
            config,
            manifest_bytes: bytes,
        })
    }

    fn check_manifest(
        &self,
        reference: &Reference,
        digest: &str,
        manifest: &ImageManifest,
    ) -> Result<(), ImageError> {
        if manifest.layers.len() > self.config.limits.max_layers {
            return Err(ImageError::TooLarge {
                what: format!("layer count of {reference}"),
                limit: self.config.limits.max_layers as u64,
            });
        }
        for d in manifest.layers.iter().chain([&manifest.config]) {
            if digest_hex(&d.digest).is_none() {
                return Err(ImageError::Invalid {
                    what: format!("manifest {digest} of {reference}"),
                    reason: format!("unsupported digest {:?}", d.digest),
                });
            }
        }
        Ok(())
    }

    /// Fetches one manifest document by tag or digest; verifies a digest reference.
    async fn fetch_manifest(
        &self,
        reference: &Reference,
        tag_or_digest: &str,
        credentials: Option<&Credentials>,
    ) -> Result<(String, Vec<u8>, Document), ImageError> {
        let url = format!(
            "{}/v2/{}/manifests/{}",
            self.base_url(&reference.registry),
            reference.repository,
            tag_or_digest
        );
        let response = self
            .get(
                &reference.registry,
                &reference.repository,
                &url,
                Some(media_types::MANIFEST_ACCEPT),
                credentials,
            )
            .await?;
        let status = response.status();
        if !status.is_success() {
            let err = registry_error(&url, response).await;
            return Err(match err {
                ImageError::Registry { status: 404, .. } => ImageError::ManifestUnknown {
                    reference: format!(
                        "{}/{}:{tag_or_digest}",
                        reference.registry, reference.repository
                    ),
                },
                ImageError::Registry { ref message, .. }
                    if message.starts_with("MANIFEST_UNKNOWN")
                        || message.starts_with("NAME_UNKNOWN") =>
                {
                    ImageError::ManifestUnknown {
                        reference: format!(
                            "{}/{}:{tag_or_digest}",
                            reference.registry, reference.repository
                        ),
                    }
                }
                other => other,
            });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let limit = self.config.limits.max_document_bytes;
        let body = read_capped(&url, response, limit).await?;
        let digest = sha256_digest(&body);
        if tag_or_digest.starts_with("sha256:") && digest != tag_or_digest {
            return Err(ImageError::DigestMismatch {
                what: url,
                expected: tag_or_digest.to_string(),
                actual: digest,
            });
        }
        let what = format!("manifest {digest} of {reference}");
        let document = manifest::parse_document(&what, content_type.as_deref(), &body)?;
        Ok((digest, body, document))
    }

    /// Fetches a small blob (a config) into memory, bounded and verified.
    async fn fetch_small_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        credentials: Option<&Credentials>,
    ) -> Result<Vec<u8>, ImageError> {
        let limit = self.config.limits.max_document_bytes;
        if descriptor.size > limit {
            return Err(ImageError::TooLarge {
                what: format!("config {} of {reference}", descriptor.digest),
                limit,
            });
        }
        let response = self
            .blob_response(reference, &descriptor.digest, credentials)
            .await?;
        let url = response.url().to_string();
        let body = read_capped(&url, response, limit).await?;
        let digest = sha256_digest(&body);
        if digest != descriptor.digest {
            return Err(ImageError::DigestMismatch {
                what: format!("config of {reference}"),
                expected: descriptor.digest.clone(),
                actual: digest,
            });
        }
        Ok(body)
    }

    async fn blob_response(
        &self,
        reference: &Reference,
        digest: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Response, ImageError> {
        self.blob_downloads.fetch_add(1, Ordering::Relaxed);
        let url = format!(
            "{}/v2/{}/blobs/{digest}",
            self.base_url(&reference.registry),
            reference.repository
        );
        let response = self
            .get(
                &reference.registry,
                &reference.repository,
                &url,
                None,
                credentials,
            )
            .await?;
        if response.status().is_success() {
            return Ok(response);
        }
        match registry_error(&url, response).await {
            ImageError::Registry { status: 404, .. } => Err(ImageError::BlobUnknown {
                repository: format!("{}/{}", reference.registry, reference.repository),
                digest: digest.to_string(),
            }),
            other => Err(other),
        }
    }

    /// Streams the blob `descriptor` of `reference` into a new file at `dest`, verifying
    /// its size and sha256 on the way; `dest` is removed again on any failure. Returns
    /// the number of bytes written.
    pub async fn fetch_blob_to_file(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        dest: &Path,
        credentials: Option<&Credentials>,
    ) -> Result<u64, ImageError> {
        let result = self
            .fetch_blob_inner(reference, descriptor, dest, credentials)
            .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(dest).await;
        }
        result
    }

    async fn fetch_blob_inner(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        dest: &Path,
        credentials: Option<&Credentials>,
    ) -> Result<u64, ImageError> {
        let limit = self.config.limits.max_blob_bytes;
        if descriptor.size > limit {
            return Err(ImageError::TooLarge {
                what: format!("layer {} of {reference}", descriptor.digest),
                limit,
            });
        }
        let response = self
            .blob_response(reference, &descriptor.digest, credentials)
            .await?;
        let url = response.url().to_string();
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(ImageError::io("create", dest))?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| ImageError::Http {
                url: url.clone(),
                source,
            })?;
            written += chunk.len() as u64;
            // The descriptor's size is part of what the manifest's digest pins.
            if written > descriptor.size {
                return Err(ImageError::TooLarge {
                    what: format!("blob {} (more than its declared size)", descriptor.digest),
                    limit: descriptor.size,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(ImageError::io("write", dest))?;
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != descriptor.digest {
            return Err(ImageError::DigestMismatch {
                what: format!("blob of {reference}"),
                expected: descriptor.digest.clone(),
                actual,
            });
        }
        file.sync_all()
            .await
            .map_err(ImageError::io("sync", dest))?;
        Ok(written)
    }

    /// GET with the cached auth for (registry, repository); on 401 answers the challenge
    /// once (Basic, or a fresh Bearer token) and retries.
    async fn get(
        &self,
        registry: &str,
        repository: &str,
        url: &str,
        accept: Option<&str>,
        credentials: Option<&Credentials>,
    ) -> Result<Response, ImageError> {
        let fingerprint = credentials.map_or_else(String::new, |c| {
            sha256_digest(format!("{}\0{}", c.username, c.password).as_bytes())
        });
        let key = (registry.to_string(), repository.to_string(), fingerprint);
        let cached = self.cached_auth(&key);
        let response = self.send(url, accept, cached.as_ref(), credentials).await?;
        let unauthorized = |reason: String| ImageError::Unauthorized {
            registry: registry.to_string(),
            repository: repository.to_string(),
            reason,
        };
        if response.status() == StatusCode::FORBIDDEN {
            // `DENIED`: the credentials are known but may not read this repository.
            return Err(unauthorized(error_message(response).await));
        }
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .max_by_key(|c| matches!(c, Challenge::Bearer { .. }));
        let auth = match challenge {
            None => {
                return Err(unauthorized(
                    "401 without a usable WWW-Authenticate challenge".into(),
                ))
            }
            Some(Challenge::Basic) => {
                if credentials.is_none() {
                    return Err(unauthorized("the registry requires credentials".into()));
                }
                Auth::Basic
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope = scope.or_else(|| {
                    (!repository.is_empty()).then(|| format!("repository:{repository}:pull"))
                });
                Auth::Bearer(
                    self.fetch_token(registry, repository, &realm, service, scope, credentials)
                        .await?,
                )
            }
        };
        let response = self.send(url, accept, Some(&auth), credentials).await?;
        if response.status() == StatusCode::UNAUTHORIZED
            || response.status() == StatusCode::FORBIDDEN
        {
            let message = error_message(response).await;
            return Err(unauthorized(message));
        }
        if let Ok(mut cache) = self.auth.lock() {
            cache.insert(key, auth);
        }
        Ok(response)
    }

    fn cached_auth(&self, key: &(String, String, String)) -> Option<Auth> {
        self.auth.lock().ok().and_then(|c| c.get(key).cloned())
    }

    async fn send(
        &self,
        url: &str,
        accept: Option<&str>,
        auth: Option<&Auth>,
        credentials: Option<&Credentials>,
    ) -> Result<Response, ImageError> {
        let mut request: RequestBuilder = self.http.get(url);
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        request = match (auth, credentials) {
            (Some(Auth::Bearer(token)), _) => request.bearer_auth(token),
            (Some(Auth::Basic), Some(c)) => request.basic_auth(&c.username, Some(&c.password)),
            _ => request,
        };
        request.send().await.map_err(|source| ImageError::Http {
            url: url.to_string(),
            source,
        })
    }

    async fn fetch_token(
        &self,
        registry: &str,
        repository: &str,
        realm: &str,
        service: Option<String>,
        scope: Option<String>,
        credentials: Option<&Credentials>,
    ) -> Result<String, ImageError> {
        let mut url = reqwest::Url::parse(realm).map_err(|e| ImageError::Invalid {
            what: format!("token realm of {registry}"),
            reason: format!("{realm:?}: {e}"),
        })?;
        // The realm gets the credentials: refuse to send them in clear to a remote host.
        if url.scheme() != "https"
            && !url.host_str().is_some_and(is_loopback)
            && !self
                .config
                .insecure_registries
                .iter()
                .any(|r| url.host_str() == Some(r.as_str()))
        {
            return Err(ImageError::InsecureRegistry {
                registry: realm.to_string(),
            });
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &service {
                query.append_pair("service", service);
            }
            if let Some(scope) = &scope {
                query.append_pair("scope", scope);
            }
        }
        let mut request = self.http.get(url.clone());
        if let Some(c) = credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request.send().await.map_err(|source| ImageError::Http {
            url: url.to_string(),
            source,
        })?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let message = error_message(response).await;
            return Err(ImageError::Unauthorized {
                registry: registry.to_string(),
                repository: repository.to_string(),
                reason: format!("token realm refused: {message}"),
            });
        }
        if !status.is_success() {
            return Err(registry_error(url.as_str(), response).await);
        }
        let body = read_capped(url.as_str(), response, 1024 * 1024).await?;
        let token: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| ImageError::Invalid {
                what: format!("token response of {realm}"),
                reason: e.to_string(),
            })?;
        token
            .token
            .or(token.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ImageError::Invalid {
                what: format!("token response of {realm}"),
                reason: "no token".into(),
            })
    }
}

/// Whether `host[:port]` names this machine's loopback.
fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.split(':').next().unwrap_or(registry)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Reads a response body, failing once it exceeds `limit` bytes.
async fn read_capped(url: &str, response: Response, limit: u64) -> Result<Vec<u8>, ImageError> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| ImageError::Http {
            url: url.to_string(),
            source,
        })?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(ImageError::TooLarge {
                what: url.to_string(),
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The registry's `errors[0]` as `CODE: message`, or a body excerpt.
async fn error_message(response: Response) -> String {
    let status = response.status();
    let body = read_capped("", response, 64 * 1024)
        .await
        .unwrap_or_default();
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) if !e.errors.is_empty() => e
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        _ => {
            let text = String::from_utf8_lossy(&body);
            let text = text.trim();
            if text.is_empty() {
                status.to_string()
            } else {
                text.chars().take(200).collect()
            }
        }
    }
}

async fn registry_error(url: &str, response: Response) -> ImageError {
    let status = response.status().as_u16();
    let message = error_message(response).await;
    ImageError::Registry {
        url: url.to_string(),
        status,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(
                r#"bearer realm="http://127.0.0.1:1/t", scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: None,
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge("Bearer service=x"),
            None,
            "a Bearer challenge needs a realm"
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn plain_http_only_for_loopback_and_named_insecure_registries() {
        let client = RegistryClient::new(RegistryConfig {
            insecure_registries: vec!["registry.lan:5000".into()],
            ..RegistryConfig::default()
        })
        .expect("client");
        assert_eq!(client.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(client.base_url("localhost"), "http://localhost");
        assert_eq!(client.base_url("[::1]:5000"), "http://[::1]:5000");
        assert_eq!(
            client.base_url("registry.lan:5000"),
            "http://registry.lan:5000"
        );
        assert_eq!(client.base_url("registry.lan"), "https://registry.lan");
        assert_eq!(client.base_url("docker.io"), "https://registry-1.docker.io");
        let strict = RegistryClient::new(RegistryConfig {
            allow_loopback_http: false,
            ..RegistryConfig::default()
        })
        .expect("client");
        assert_eq!(strict.base_url("127.0.0.1:5000"), "https://127.0.0.1:5000");
    }

    #[test]
    fn credentials_never_print_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
