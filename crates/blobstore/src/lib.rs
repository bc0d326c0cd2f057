//! Blob storage for packages, droplets, buildpacks and the resource cache.
//!
//! Blobs are addressed by a key such as `packages/<guid>.zip`. The embedded
//! default keeps them in a local directory; an S3-compatible store will
//! implement the same [`Blobstore`] trait. A blob is visible only once it is
//! completely written: every write goes to a temporary file in the same
//! directory, is flushed to disk, and is renamed into place.
//!
//! The resource cache (CF's "resource matching") stores single app files by
//! their SHA1 under `resources/<sha1>` so that an unchanged file is uploaded
//! once and copied server-side on later pushes.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

/// What went wrong with a blob operation.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The key is empty, absolute, or climbs out of the store with `..`.
    #[error("invalid blob key {0:?}")]
    InvalidKey(String),
    /// No blob is stored under the key.
    #[error("blob {0:?} not found")]
    NotFound(String),
    /// The file system failed while reading or writing the blob.
    #[error("blob {key:?}: {source}")]
    Io {
        /// The key being read or written.
        key: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A store of immutable blobs addressed by key.
#[async_trait]
pub trait Blobstore: Send + Sync {
    /// Stores a copy of the file at `src` under `key`, replacing any blob there.
    async fn put_file(&self, key: &str, src: &Path) -> Result<(), BlobError>;
    /// Stores `bytes` under `key`, replacing any blob there.
    async fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError>;
    /// Copies the blob under `key` to the file `dest` (created or truncated).
    async fn get_to_file(&self, key: &str, dest: &Path) -> Result<(), BlobError>;
    /// Reads the whole blob into memory (meant for small blobs).
    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, BlobError>;
    /// Whether a blob is stored under `key`.
    async fn exists(&self, key: &str) -> Result<bool, BlobError>;
    /// Removes the blob; removing a missing blob is not an error.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
    /// The blob's path on the local disk, when the store is local (lets
    /// callers stream or bind-mount without a copy).
    fn local_path(&self, key: &str) -> Option<PathBuf>;
}

/// The key of a file in the resource cache, given its hex SHA1.
pub fn resource_key(sha1_hex: &str) -> Result<String, BlobError> {
    let valid = sha1_hex.len() == 40 && sha1_hex.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(BlobError::InvalidKey(format!("resources/{sha1_hex}")));
    }
    Ok(format!("resources/{}", sha1_hex.to_ascii_lowercase()))
}

/// Hex SHA1 of a byte slice, as CF's resource matching uses it.
pub fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(bytes))
}

/// Blobs as files under a root directory.
#[derive(Debug, Clone)]
pub struct LocalBlobstore {
    root: PathBuf,
}

impl LocalBlobstore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|source| BlobError::Io {
            key: String::new(),
            source,
        })?;
        Ok(Self { root })
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, BlobError> {
        let safe = !key.is_empty()
            && !key.starts_with('/')
            && key
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !safe {
            return Err(BlobError::InvalidKey(key.to_string()));
        }
        Ok(self.root.join(key))
    }

    /// Writes through a temporary file in the destination directory, then
    /// renames: readers never see a half-written blob, even after a crash.
    fn write_atomically(
        &self,
        key: &str,
        fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    ) -> Result<(), BlobError> {
        let path = self.path_of(key)?;
        let io = |source| BlobError::Io {
            key: key.to_string(),
            source,
        };
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        fill(tmp.as_file_mut()).map_err(io)?;
        tmp.as_file_mut().flush().map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&path).map_err(|err| io(err.error))?;
        Ok(())
    }
}

#[async_trait]
impl Blobstore for LocalBlobstore {
    async fn put_file(&self, key: &str, src: &Path) -> Result<(), BlobError> {
        let store = self.clone();
        let key = key.to_string();
        let src = src.to_path_buf();
        blocking(move || {
            store.write_atomically(&key, |file| {
                let mut input = std::fs::File::open(&src)?;
                std::io::copy(&mut input, file).map(|_| ())
            })
        })
        .await
    }

    async fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let store = self.clone();
        let key = key.to_string();
        let bytes = bytes.to_vec();
        blocking(move || store.write_atomically(&key, |file| file.write_all(&bytes))).await
    }

    async fn get_to_file(&self, key: &str, dest: &Path) -> Result<(), BlobError> {
        let path = self.path_of(key)?;
        match tokio::fs::copy(&path, dest).await {
            Ok(_) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !path.exists() => {
                Err(BlobError::NotFound(key.to_string()))
            }
            Err(source) => Err(BlobError::Io {
                key: key.to_string(),
                source,
            }),
        }
    }

    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path_of(key)?;
        tokio::fs::read(&path).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                BlobError::NotFound(key.to_string())
            } else {
                BlobError::Io {
                    key: key.to_string(),
                    source,
                }
            }
        })
    }

    async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        let path = self.path_of(key)?;
        tokio::fs::try_exists(&path)
            .await
            .map_err(|source| BlobError::Io {
                key: key.to_string(),
                source,
            })
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(BlobError::Io {
                key: key.to_string(),
                source,
            }),
        }
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path_of(key).ok()
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| BlobError::Io {
            key: String::new(),
            source: std::io::Error::other(join.to_string()),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobstore::open(dir.path()).expect("open");
        store
            .put_bytes("packages/a.zip", b"zip")
            .await
            .expect("put");
        assert!(store.exists("packages/a.zip").await.expect("exists"));
        assert_eq!(
            store.get_bytes("packages/a.zip").await.expect("get"),
            b"zip"
        );
        let out = dir.path().join("out");
        store
            .get_to_file("packages/a.zip", &out)
            .await
            .expect("get file");
        assert_eq!(std::fs::read(&out).expect("read"), b"zip");
        store.delete("packages/a.zip").await.expect("delete");
        store.delete("packages/a.zip").await.expect("delete twice");
        assert!(!store.exists("packages/a.zip").await.expect("exists"));
        assert!(matches!(
            store.get_bytes("packages/a.zip").await,
            Err(BlobError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn rejects_keys_that_leave_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobstore::open(dir.path().join("blobs")).expect("open");
        for key in ["../x", "/etc/passwd", "a/../../x", "", "a//b"] {
            assert!(
                matches!(
                    store.put_bytes(key, b"x").await,
                    Err(BlobError::InvalidKey(_))
                ),
                "{key}"
            );
        }
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn resource_keys_are_sha1_only() {
        let sha = sha1_hex(b"hello");
        assert_eq!(sha, "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
        assert_eq!(resource_key(&sha).expect("key"), format!("resources/{sha}"));
        assert!(resource_key("../../etc").is_err());
    }
}
