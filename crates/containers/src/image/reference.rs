//! Image references (`[registry/]repository[:tag][@digest]`) with Docker's normalisation:
//! no registry means `docker.io`, a one-component repository on Docker Hub gets
//! `library/`, no tag and no digest means `latest`.

use std::fmt;

use super::{digest_hex, ImageError};

/// The registry Docker assumes when a reference names none.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with port if any (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path inside the registry (`library/busybox`, `team/app`).
    pub repository: String,
    /// Tag; `None` only when a digest is given without a tag.
    pub tag: Option<String>,
    /// Manifest digest (`sha256:…`), when pinned.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `input` as Docker does (`busybox` → `docker.io/library/busybox:latest`).
    pub fn parse(input: &str) -> Result<Reference, ImageError> {
        let invalid = |reason: &str| ImageError::InvalidReference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() || input.len() > 4096 {
            return Err(invalid("empty or too long"));
        }
        let (name_tag, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                if digest_hex(digest).is_none() {
                    return Err(invalid(
                        "digest must be sha256: followed by 64 lowercase hex digits",
                    ));
                }
                (rest, Some(digest.to_string()))
            }
            None => (input, None),
        };
        // A tag is a `:` after the last `/` (a `:` before it is a registry port).
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name_tag[..at], Some(name_tag[at + 1..].to_string()))
            }
            None => (name_tag, None),
        };
        if let Some(tag) = &tag {
            if !valid_tag(tag) {
                return Err(invalid(
                    "tag must be 1–128 of [A-Za-z0-9_.-], not starting with . or -",
                ));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                let registry = if first == "index.docker.io" {
                    DOCKER_HUB
                } else {
                    first
                };
                (registry.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if !valid_registry(&registry) {
            return Err(invalid(
                "registry must be a host name or address with an optional port",
            ));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !valid_repository(&repository) {
            return Err(invalid(
                "repository must be lowercase path components of [a-z0-9] separated by '.', '_', '__' or '-'",
            ));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What to ask the registry's manifest endpoint for: the digest if pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The same repository pinned to `digest` (without a tag).
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_registry(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || registry.starts_with('[') => {
            (host, Some(port))
        }
        _ => (registry, None),
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    };
    host_ok && port.is_none_or(|p| p.parse::<u16>().is_ok())
}

/// Docker's path-component grammar: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_repository(repository: &str) -> bool {
    repository.len() <= 255 && repository.split('/').all(valid_component)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parsed(input: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(input).expect(input);
        (r.registry, r.repository, r.tag, r.digest)
    }

    #[test]
    fn normalises_like_docker() {
        let s = |v: &str| Some(v.to_string());
        let table = [
            (
                "busybox",
                ("docker.io", "library/busybox", s("latest"), None),
            ),
            (
                "library/busybox:1.36",
                ("docker.io", "library/busybox", s("1.36"), None),
            ),
            ("team/app", ("docker.io", "team/app", s("latest"), None)),
            (
                "index.docker.io/busybox",
                ("docker.io", "library/busybox", s("latest"), None),
            ),
            (
                "127.0.0.1:5000/team/app:tag",
                ("127.0.0.1:5000", "team/app", s("tag"), None),
            ),
            ("localhost/app", ("localhost", "app", s("latest"), None)),
            (
                "localhost:5000/app:v1.2-rc_3",
                ("localhost:5000", "app", s("v1.2-rc_3"), None),
            ),
            (
                "registry.example.com/a/b/c",
                ("registry.example.com", "a/b/c", s("latest"), None),
            ),
        ];
        for (input, (registry, repository, tag, digest)) in table {
            assert_eq!(
                parsed(input),
                (registry.to_string(), repository.to_string(), tag, digest),
                "{input}"
            );
        }
        assert_eq!(
            parsed(&format!("host.example/app@{D}")),
            (
                "host.example".into(),
                "app".into(),
                None,
                Some(D.to_string())
            )
        );
        assert_eq!(
            parsed(&format!("127.0.0.1:5000/app:v1@{D}")),
            (
                "127.0.0.1:5000".into(),
                "app".into(),
                Some("v1".into()),
                Some(D.to_string())
            )
        );
    }

    #[test]
    fn display_is_the_canonical_form() {
        assert_eq!(
            Reference::parse("busybox").expect("parse").to_string(),
            "docker.io/library/busybox:latest"
        );
        let pinned = Reference::parse(&format!("127.0.0.1:5000/app@{D}")).expect("parse");
        assert_eq!(pinned.to_string(), format!("127.0.0.1:5000/app@{D}"));
        assert_eq!(pinned.manifest_reference(), D);
    }

    #[test]
    fn rejects_malformed_references() {
        for input in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-tag",
            "a//b",
            "app@sha256:abc",
            "app@md5:0123",
            "host:notaport/app",
            "app/",
            "a..b",
            "a_-b",
        ] {
            assert!(
                matches!(
                    Reference::parse(input),
                    Err(ImageError::InvalidReference { .. })
                ),
                "{input:?} should be refused"
            );
        }
    }
}
