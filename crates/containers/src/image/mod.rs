//! Docker/OCI images from a registry, as root filesystem layers for containers.
//!
//! - [`Reference`]: an image name as users write it (`busybox`,
//!   `127.0.0.1:5000/team/app:1.0`, `host/app@sha256:…`), normalised as Docker does.
//! - [`RegistryClient`]: the OCI distribution / Docker Registry HTTP API v2 (manifests,
//!   manifest lists, blobs verified by digest while streaming to disk; anonymous, Basic
//!   and Bearer-token auth).
//! - [`ImageStore`]: a content-addressed store under one directory. Each layer is
//!   unpacked once into `layers/<blob digest hex>/`, an overlayfs lower directory with
//!   OCI whiteouts turned into overlayfs ones, and shared by every image using it.
//!   [`ImageStore::gc`] removes what no image in use refers to.
//! - [`ImageConfig`]: what the image says about running it (entrypoint, cmd, env, user,
//!   working directory, exposed port).
//!
//! Layers are untrusted input: unpacking never follows a link, never writes outside
//! the layer directory and is bounded in size (see [`unpack`]).

mod config;
mod manifest;
mod reference;
mod registry;
mod store;
pub mod unpack;

use std::path::PathBuf;

pub use config::{resolve_user, ImageConfig};
pub use manifest::{media_types, Descriptor, Platform};
pub use reference::Reference;
pub use registry::{parse_challenge, Challenge, Credentials, RegistryClient, RegistryConfig};
pub use store::{GcReport, ImageRecord, ImageStore, PullReport};

/// PullLimits on what a pull may download and unpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullLimits {
    /// Largest manifest, index or config document, in bytes.
    pub max_document_bytes: u64,
    /// Largest compressed layer blob, in bytes.
    pub max_blob_bytes: u64,
    /// Largest unpacked layer (sum of its files' sizes), in bytes.
    pub max_layer_bytes: u64,
    /// Most entries in one layer.
    pub max_layer_entries: u64,
    /// Most layers in one image.
    pub max_layers: usize,
}

impl Default for PullLimits {
    fn default() -> Self {
        PullLimits {
            max_document_bytes: 4 * 1024 * 1024,
            max_blob_bytes: 4 * 1024 * 1024 * 1024,
            max_layer_bytes: 8 * 1024 * 1024 * 1024,
            max_layer_entries: 1_000_000,
            max_layers: 128,
        }
    }
}

/// Why an image could not be referenced, pulled, unpacked or stored.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image reference does not parse.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry does not know this repository, tag or digest.
    #[error("manifest unknown: {reference}")]
    ManifestUnknown {
        /// The reference asked for.
        reference: String,
    },
    /// The registry does not have a blob the manifest names.
    #[error("blob unknown: {digest} in {repository}")]
    BlobUnknown {
        /// The repository asked.
        repository: String,
        /// The blob's digest.
        digest: String,
    },
    /// The registry refused the credentials (or wants some and none were given).
    #[error("unauthorized: {registry} refused access to {repository}: {reason}")]
    Unauthorized {
        /// Registry host.
        registry: String,
        /// Repository asked for.
        repository: String,
        /// What the registry said.
        reason: String,
    },
    /// Content does not match the digest it was asked for by.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was downloaded (a URL or a layer).
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A document, blob or layer is larger than allowed.
    #[error("{what} is too large (limit {limit} bytes)")]
    TooLarge {
        /// What was too large.
        what: String,
        /// The limit that was reached.
        limit: u64,
    },
    /// A manifest, index or layer of a kind Ingot cannot use.
    #[error("unsupported media type {media_type:?} for {what}")]
    UnsupportedMediaType {
        /// The media type received.
        media_type: String,
        /// Where it was found.
        what: String,
    },
    /// A manifest list or index has no image for the wanted platform.
    #[error("{reference} has no image for platform {platform}")]
    NoMatchingPlatform {
        /// The reference asked for.
        reference: String,
        /// The wanted platform.
        platform: String,
    },
    /// A manifest, index or config that does not parse or is inconsistent.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid (with its digest or URL).
        what: String,
        /// Why.
        reason: String,
    },
    /// A layer tarball that tries to escape its directory or is otherwise unusable.
    #[error("unsafe layer {layer}: entry {entry:?}: {reason}")]
    UnsafeLayer {
        /// The layer (blob digest or path).
        layer: String,
        /// The tar entry.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// Plain http was refused because the registry is not named insecure.
    #[error("registry {registry} is not allowed over plain http")]
    InsecureRegistry {
        /// Registry host.
        registry: String,
    },
    /// The registry answered with an unexpected status.
    #[error("registry error from {url}: HTTP {status}: {message}")]
    Registry {
        /// The request's URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error message or body excerpt.
        message: String,
    },
    /// The HTTP request failed (connection, TLS, timeout, body).
    #[error("request to {url} failed: {source}")]
    Http {
        /// The request's URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No image with this id or reference is in the store.
    #[error("image {0} is not in the store")]
    NotInStore(String),
}

impl ImageError {
    /// A closure making an [`ImageError::Io`] for `map_err`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io {
            action,
            path,
            source,
        }
    }
}

/// `sha256:<hex>` of `data`.
pub(crate) fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// The hex part of a `sha256:<64 hex>` digest, or `None` if it is not one.
pub(crate) fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}
