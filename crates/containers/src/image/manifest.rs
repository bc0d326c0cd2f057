//! Manifest and index documents (Docker schema 2 and OCI), and choosing a platform's
//! image out of a manifest list / index.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ImageError;

/// Media types Ingot understands.
pub mod media_types {
    /// Docker schema 2 image manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Layer media types (all sniffed for gzip / zstd / plain tar when unpacked).
    pub const LAYERS: &[&str] = &[
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    ];
    /// The `Accept` header of manifest requests: every manifest and index type.
    pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.v2+json";
}

/// A content descriptor: what a manifest says about a blob or another manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// The content's media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// For index entries: the platform the manifest is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// An OS / architecture pair (with an optional CPU variant) as in image indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `v8`, … (only compared when the wanted platform names one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// Whether an index entry's platform satisfies this wanted platform.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.os == candidate.os
            && self.architecture == candidate.architecture
            && (self.variant.is_none() || self.variant == candidate.variant)
    }
}

/// A single-platform image manifest (Docker schema 2 or OCI).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A manifest list or OCI index.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Index {
    pub manifests: Vec<Descriptor>,
}

/// A fetched manifest document, by kind.
#[derive(Debug, Clone)]
pub(crate) enum Document {
    Manifest(ImageManifest),
    Index(Index),
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// Parses a manifest or index, trusting the body's `mediaType` over the header's
/// (OCI documents may omit it; then the shape decides).
pub(crate) fn parse_document(
    what: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Document, ImageError> {
    let invalid = |reason: String| ImageError::Invalid {
        what: what.to_string(),
        reason,
    };
    let probe: Probe = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    let header = content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
    let media_type = probe.media_type.or(header).unwrap_or_default();
    let is_index = match media_type.as_str() {
        media_types::DOCKER_MANIFEST_LIST | media_types::OCI_INDEX => true,
        media_types::DOCKER_MANIFEST | media_types::OCI_MANIFEST => false,
        // Generic content types (some registries answer `application/json`).
        "" | "application/json" | "application/octet-stream" => probe.manifests.is_some(),
        other => {
            return Err(ImageError::UnsupportedMediaType {
                media_type: other.to_string(),
                what: what.to_string(),
            })
        }
    };
    if is_index {
        let index: Index = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
        Ok(Document::Index(index))
    } else {
        let manifest: ImageManifest =
            serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
        if manifest.schema_version != 2 {
            return Err(invalid(format!(
                "schemaVersion {} (only 2 is supported)",
                manifest.schema_version
            )));
        }
        for layer in &manifest.layers {
            if !media_types::LAYERS.contains(&layer.media_type.as_str()) {
                return Err(ImageError::UnsupportedMediaType {
                    media_type: layer.media_type.clone(),
                    what: format!("layer {} of {what}", layer.digest),
                });
            }
        }
        Ok(Document::Manifest(manifest))
    }
}

/// The entry of `index` for `platform`, if any (the first matching one, as Docker picks).
pub(crate) fn select_platform<'a>(index: &'a Index, platform: &Platform) -> Option<&'a Descriptor> {
    index.manifests.iter().find(|d| {
        matches!(
            d.media_type.as_str(),
            media_types::DOCKER_MANIFEST | media_types::OCI_MANIFEST | ""
        ) && d.platform.as_ref().is_some_and(|p| platform.matches(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Index {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": [
                {"mediaType": media_types::OCI_MANIFEST, "digest": "sha256:aa", "size": 1,
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": "application/vnd.in-toto+json", "digest": "sha256:bb", "size": 1,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": media_types::OCI_MANIFEST, "digest": "sha256:cc", "size": 1,
                 "platform": {"os": "linux", "architecture": "amd64"}}
            ]
        });
        match parse_document("index", None, body.to_string().as_bytes()).expect("parse") {
            Document::Index(i) => i,
            Document::Manifest(_) => panic!("parsed as a manifest"),
        }
    }

    #[test]
    fn picks_the_wanted_platform_skipping_attestations() {
        let index = index();
        let amd64 = select_platform(&index, &Platform::default()).expect("amd64");
        assert_eq!(amd64.digest, "sha256:cc");
        let arm = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(
            select_platform(&index, &arm).expect("arm64").digest,
            "sha256:aa"
        );
        let s390 = Platform {
            architecture: "s390x".into(),
            ..Platform::default()
        };
        assert!(select_platform(&index, &s390).is_none());
    }

    #[test]
    fn docker_manifest_lists_are_indexes_too() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::DOCKER_MANIFEST_LIST,
            "manifests": [
                {"mediaType": media_types::DOCKER_MANIFEST, "digest": "sha256:dd", "size": 1,
                 "platform": {"os": "linux", "architecture": "amd64"}}
            ]
        });
        // Some registries answer a generic content type; the body decides.
        let Document::Index(index) = parse_document(
            "list",
            Some("application/json"),
            body.to_string().as_bytes(),
        )
        .expect("parse") else {
            panic!("parsed as a manifest");
        };
        let entry = select_platform(&index, &Platform::default()).expect("amd64");
        assert_eq!(entry.digest, "sha256:dd");
    }

    #[test]
    fn refuses_schema1_and_unknown_layer_types() {
        let schema1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(matches!(
            parse_document(
                "m",
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
                schema1
            ),
            Err(ImageError::UnsupportedMediaType { .. })
        ));
        let odd_layer = serde_json::json!({
            "schemaVersion": 2, "mediaType": media_types::OCI_MANIFEST,
            "config": {"mediaType": media_types::OCI_CONFIG, "digest": "sha256:aa", "size": 2},
            "layers": [{"mediaType": "application/x-squashfs", "digest": "sha256:bb", "size": 3}]
        });
        assert!(matches!(
            parse_document("m", None, odd_layer.to_string().as_bytes()),
            Err(ImageError::UnsupportedMediaType { media_type, .. }) if media_type == "application/x-squashfs"
        ));
    }
}
