//! The proxy's ed25519 host key: generated on first start, kept in a file only root can read,
//! and its fingerprint in the form Cloud Foundry publishes.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use rand::RngCore;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey};

use crate::SshError;

/// The proxy's host key.
#[derive(Clone)]
pub struct HostKey {
    key: PrivateKey,
    path: PathBuf,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("HostKey")
            .field("path", &self.path)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl HostKey {
    /// Reads the OpenSSH-format key at `path`, or creates a new ed25519 key there (mode 0600,
    /// written to a temporary file and renamed, so a crash never leaves half a key).
    pub fn load_or_generate(path: &Path) -> Result<HostKey, SshError> {
        let failed = |detail: String| SshError::HostKey {
            path: path.to_path_buf(),
            detail,
        };
        match std::fs::read(path) {
            Ok(text) => {
                let key = PrivateKey::from_openssh(&text)
                    .map_err(|e| failed(format!("not an OpenSSH private key: {e}")))?;
                return Ok(HostKey {
                    key,
                    path: path.to_path_buf(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed(format!("read: {e}"))),
        }
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        let text = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| failed(format!("encode: {e}")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed(format!("create directory: {e}")))?;
        }
        let temporary = path.with_extension("tmp");
        let _ = std::fs::remove_file(&temporary);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|e| failed(format!("create {}: {e}", temporary.display())))?;
        // The umask cannot widen 0600, but a pre-set default ACL could: make sure.
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| failed(format!("write {}: {e}", temporary.display())))?;
        std::fs::rename(&temporary, path).map_err(|e| failed(format!("rename into place: {e}")))?;
        Ok(HostKey {
            key,
            path: path.to_path_buf(),
        })
    }

    /// The SHA-256 fingerprint of the public key, base64 without padding (43 characters): the
    /// form `links.app_ssh.meta.host_key_fingerprint` carries and the cf CLI v8 checks (it
    /// tells the forms apart by length: 43 SHA-256 base64, 59 SHA-1 hex, 47 MD5 hex).
    pub fn fingerprint(&self) -> String {
        let fingerprint = self.key.public_key().fingerprint(HashAlg::Sha256);
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(fingerprint.as_bytes())
    }

    /// The public key in `authorized_keys` / `known_hosts` form (`ssh-ed25519 AAAA…`).
    pub fn public_openssh(&self) -> String {
        self.key.public_key().to_openssh().unwrap_or_default()
    }

    pub(crate) fn private_key(&self) -> &PrivateKey {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_private_and_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/ssh_host_ed25519_key");
        let first = HostKey::load_or_generate(&path).expect("generate");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = HostKey::load_or_generate(&path).expect("load");
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert_eq!(first.fingerprint().len(), 43);
        assert!(first.public_openssh().starts_with("ssh-ed25519 "));
        // The same value ssh-keygen prints after "SHA256:".
        let out = std::process::Command::new("ssh-keygen")
            .arg("-lf")
            .arg(&path)
            .output()
            .expect("ssh-keygen");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("SHA256:{}", first.fingerprint())),
            "{text}"
        );
    }

    #[test]
    fn a_corrupt_key_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "garbage").expect("write");
        let err = HostKey::load_or_generate(&path).expect_err("corrupt");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}
