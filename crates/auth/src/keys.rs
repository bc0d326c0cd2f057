//! The RSA signing key: generated on first boot, kept as PKCS#8 PEM with mode
//! 0600, and published as a JWK at `/token_keys`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::AuthError;

/// File name of the signing key inside the key directory.
pub const SIGNING_KEY_FILE: &str = "token-signing.pem";

const KEY_BITS: usize = 2048;

/// The private signing key and everything derived from its public half.
pub(crate) struct SigningKey {
    pub(crate) encoding: EncodingKey,
    pub(crate) public: PublicKey,
}

/// The public half: enough to verify tokens and to publish the key.
#[derive(Clone)]
pub(crate) struct PublicKey {
    pub(crate) kid: String,
    pub(crate) jwk: Jwk,
    pub(crate) decoding: DecodingKey,
}

/// A key as `/token_keys` shows it (JWK plus UAA's PEM `value`).
#[derive(Clone, Debug, Serialize)]
pub struct Jwk {
    /// Always "RSA".
    pub kty: &'static str,
    /// Always "RS256".
    pub alg: &'static str,
    /// Always "sig".
    #[serde(rename = "use")]
    pub use_: &'static str,
    /// Key id, also in every token's header.
    pub kid: String,
    /// Modulus, base64url without padding.
    pub n: String,
    /// Public exponent, base64url without padding.
    pub e: String,
    /// The public key as SPKI PEM.
    pub value: String,
}

impl SigningKey {
    /// Loads `key_dir/token-signing.pem`, or generates and stores a new key
    /// when the file does not exist yet.
    pub(crate) async fn load_or_generate(key_dir: &Path) -> Result<Self, AuthError> {
        let path = key_dir.join(SIGNING_KEY_FILE);
        let key = match tokio::fs::read_to_string(&path).await {
            Ok(pem) => {
                // A key someone else can read can forge any token: tighten it.
                restrict(&path)?;
                RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| AuthError::BadFile {
                    path: path.clone(),
                    reason: format!(
                        "not a PKCS#8 RSA private key ({e}); remove it to generate a new one"
                    ),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = tokio::task::spawn_blocking(|| {
                    RsaPrivateKey::new(&mut rand::rngs::OsRng, KEY_BITS)
                })
                .await
                .map_err(|e| AuthError::KeyGeneration(e.to_string()))?
                .map_err(|e| AuthError::KeyGeneration(e.to_string()))?;
                let pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| AuthError::KeyGeneration(e.to_string()))?;
                tokio::fs::create_dir_all(key_dir)
                    .await
                    .map_err(|source| AuthError::File {
                        path: key_dir.to_owned(),
                        action: "create key directory",
                        source,
                    })?;
                write_private(&path, pem.as_bytes())?;
                tracing::info!(path = %path.display(), "generated token signing key");
                key
            }
            Err(source) => {
                return Err(AuthError::File {
                    path,
                    action: "read signing key",
                    source,
                })
            }
        };
        Self::from_rsa(&key, &path)
    }

    fn from_rsa(key: &RsaPrivateKey, path: &Path) -> Result<Self, AuthError> {
        let bad = |reason: String| AuthError::BadFile {
            path: path.to_owned(),
            reason,
        };
        let der = key.to_pkcs1_der().map_err(|e| bad(e.to_string()))?;
        let encoding = EncodingKey::from_rsa_der(der.as_bytes());
        let public = key.to_public_key();
        let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
        let value = public
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| bad(e.to_string()))?;
        let kid = thumbprint(&n, &e);
        let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|e| bad(e.to_string()))?;
        let jwk = Jwk {
            kty: "RSA",
            alg: "RS256",
            use_: "sig",
            kid: kid.clone(),
            n,
            e,
            value,
        };
        Ok(SigningKey {
            encoding,
            public: PublicKey { kid, jwk, decoding },
        })
    }
}

impl PublicKey {
    /// Builds the public key from an SPKI PEM (as in `/token_key`'s `value`).
    pub(crate) fn from_pem(pem: &str) -> Result<Self, String> {
        use rsa::pkcs8::DecodePublicKey;
        let public = rsa::RsaPublicKey::from_public_key_pem(pem).map_err(|e| e.to_string())?;
        let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
        let kid = thumbprint(&n, &e);
        let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|e| e.to_string())?;
        let jwk = Jwk {
            kty: "RSA",
            alg: "RS256",
            use_: "sig",
            kid: kid.clone(),
            n,
            e,
            value: pem.to_owned(),
        };
        Ok(PublicKey { kid, jwk, decoding })
    }
}

/// RFC 7638 JWK thumbprint: the kid is a function of the key alone, so it is
/// stable across restarts and changes exactly when the key does.
fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn restrict(path: &Path) -> Result<(), AuthError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        AuthError::File {
            path: path.to_owned(),
            action: "restrict permissions to 0600",
            source,
        }
    })
}

/// Writes a secret file readable only by its owner. It is written beside its
/// final name, synced and renamed, so that a crash never leaves a torn file.
pub(crate) fn write_private(path: &Path, content: &[u8]) -> Result<(), AuthError> {
    let tmp: PathBuf = {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        path.with_file_name(name)
    };
    let io = |action: &'static str| {
        let path = path.to_owned();
        move |source| AuthError::File {
            path,
            action,
            source,
        }
    };
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create"))?;
        file.write_all(content).map_err(io("write"))?;
        file.sync_all().map_err(io("sync"))?;
        std::fs::rename(&tmp, path).map_err(io("rename into place"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // The example key of RFC 7638 section 3.1 and its published thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn write_private_creates_owner_only_file_and_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        write_private(&path, b"one").expect("write");
        write_private(&path, b"two").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")]);
    }
}
