//! The content-addressed image store.
//!
//! Layout under the root directory:
//! - `layers/<hex>/`: a layer unpacked once (by the sha256 of its blob), shared by every
//!   image using it; it appears by `rename(2)` of a complete temporary directory, so
//!   a layer directory that exists is complete, whoever else unpacks it concurrently.
//! - `blobs/sha256/<hex>`: manifests and configs (layer blobs are deleted once unpacked).
//! - `images/<hex>.json`: an [`ImageRecord`] per image, by manifest digest.
//! - `tmp/`: downloads and unpackings in progress; emptied on open and by gc.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};

use super::config::ImageConfig;
use super::reference::Reference;
use super::registry::{Credentials, RegistryClient};
use super::unpack::unpack_layer_file;
use super::{digest_hex, ImageError, PullLimits};
use crate::Stack;

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image id: the digest of its (platform) manifest, `sha256:…`.
    pub id: String,
    /// References (canonical form) last pulled as this image.
    pub references: Vec<String>,
    /// Layer blob digests, bottom first; each is unpacked in `layers/<hex>`.
    pub layers: Vec<String>,
    /// The config blob's digest.
    pub config_digest: String,
    /// The parsed config.
    pub config: ImageConfig,
}

/// What a pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    /// Layers downloaded and unpacked by this pull.
    pub downloaded_layers: Vec<String>,
    /// Layers already in the store (or unpacked by a concurrent pull).
    pub reused_layers: Vec<String>,
}

/// What [`ImageStore::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Image ids removed.
    pub images: Vec<String>,
    /// Layer digests removed.
    pub layers: Vec<String>,
    /// Blob digests removed.
    pub blobs: Vec<String>,
}

/// The image store. Share it (`Arc`) between pulls: pulls run concurrently with each
/// other, [`ImageStore::gc`] runs alone.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    limits: PullLimits,
    /// Pulls hold it shared, gc exclusively (gc empties `tmp/` and removes layers).
    gc_lock: RwLock<()>,
    /// Serialises updates of image records (references move between images).
    records: Mutex<()>,
    /// One unpacking per layer at a time in this process; others wait for it.
    in_flight: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl ImageStore {
    /// Opens (creating) a store under `root`, removing leftovers of interrupted pulls.
    pub fn open(root: impl Into<PathBuf>, limits: PullLimits) -> Result<ImageStore, ImageError> {
        let root = root.into();
        for dir in ["layers", "blobs/sha256", "images"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(ImageError::io("create directory", &path))?;
        }
        let tmp = root.join("tmp");
        remove_all(&tmp)?;
        fs::create_dir_all(&tmp).map_err(ImageError::io("create directory", &tmp))?;
        Ok(ImageStore {
            root,
            limits,
            gc_lock: RwLock::new(()),
            records: Mutex::new(()),
            in_flight: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory a layer (by blob digest) is unpacked in.
    pub fn layer_dir(&self, digest: &str) -> PathBuf {
        self.root
            .join("layers")
            .join(digest.strip_prefix("sha256:").unwrap_or(digest))
    }

    /// The image's layer directories **topmost first**, as overlayfs `lowerdir` and
    /// [`crate::ContainerSpec::layers`] want them.
    pub fn layer_dirs(&self, image: &ImageRecord) -> Vec<PathBuf> {
        image
            .layers
            .iter()
            .rev()
            .map(|d| self.layer_dir(d))
            .collect()
    }

    /// The image as a container root for [`crate::ContainerSpec`]: its bottom layer as
    /// the [`Stack`]'s rootfs (no bind mounts), the others as `layers`, topmost first.
    /// An image without layers gets an empty directory.
    pub fn container_root(&self, image: &ImageRecord) -> Result<(Stack, Vec<PathBuf>), ImageError> {
        let mut layers = self.layer_dirs(image);
        let rootfs = match layers.pop() {
            Some(bottom) => bottom,
            None => {
                let empty = self.root.join("empty");
                fs::create_dir_all(&empty).map_err(ImageError::io("create directory", &empty))?;
                empty
            }
        };
        for dir in layers.iter().chain([&rootfs]) {
            if !dir.is_dir() {
                return Err(ImageError::NotInStore(format!(
                    "{} (layer {} is missing)",
                    image.id,
                    dir.display()
                )));
            }
        }
        Ok((
            Stack {
                rootfs,
                bind_mounts: Vec::new(),
            },
            layers,
        ))
    }

    /// Pulls `reference` (resolving manifest lists to the client's platform) and records
    /// it; layers already in the store are neither downloaded nor unpacked again.
    pub async fn pull(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        credentials: Option<&Credentials>,
    ) -> Result<(ImageRecord, PullReport), ImageError> {
        let _shared = self.gc_lock.read().await;
        let resolved = client.resolve(reference, credentials).await?;
        let mut report = PullReport::default();
        for (i, layer) in resolved.layers.iter().enumerate() {
            let diff_id = resolved.config.diff_ids.get(i).map(String::as_str);
            let downloaded = self
                .ensure_layer(client, reference, layer, diff_id, credentials)
                .await?;
            if downloaded {
                report.downloaded_layers.push(layer.digest.clone());
            } else {
                report.reused_layers.push(layer.digest.clone());
            }
        }
        self.write_blob(&resolved.digest, &resolved.manifest_bytes)?;
        self.write_blob(&resolved.config_digest, &resolved.config_bytes)?;
        let record = {
            let _records = self.records.lock().await;
            let name = reference.to_string();
            // A tag that moved no longer names the image it named before.
            for mut other in self.list()? {
                if other.id != resolved.digest && other.references.contains(&name) {
                    other.references.retain(|r| r != &name);
                    self.write_record(&other)?;
                }
            }
            let mut references = match self.read_record(&resolved.digest) {
                Ok(existing) => existing.references,
                Err(_) => Vec::new(),
            };
            if !references.contains(&name) {
                references.push(name);
            }
            let record = ImageRecord {
                id: resolved.digest.clone(),
                references,
                layers: resolved.layers.iter().map(|l| l.digest.clone()).collect(),
                config_digest: resolved.config_digest.clone(),
                config: resolved.config.clone(),
            };
            self.write_record(&record)?;
            record
        };
        Ok((record, report))
    }

    /// Makes sure the layer is unpacked; `true` if this call downloaded it.
    async fn ensure_layer(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        layer: &super::Descriptor,
        diff_id: Option<&str>,
        credentials: Option<&Credentials>,
    ) -> Result<bool, ImageError> {
        let hex = digest_hex(&layer.digest).ok_or_else(|| ImageError::Invalid {
            what: format!("layer of {reference}"),
            reason: format!("unsupported digest {:?}", layer.digest),
        })?;
        let dir = self.layer_dir(&layer.digest);
        if dir.is_dir() {
            return Ok(false);
        }
        let gate = {
            let mut map = self.in_flight.lock().map_err(|_| ImageError::Invalid {
                what: "image store".into(),
                reason: "a pull panicked".into(),
            })?;
            map.entry(hex.to_string()).or_default().clone()
        };
        let _unpacking = gate.lock().await;
        if dir.is_dir() {
            return Ok(false);
        }
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{hex}-{}", uuid::Uuid::new_v4()));
        let blob = tmp.with_extension("blob");
        let unpacked = tmp.with_extension("dir");
        let result = async {
            client
                .fetch_blob_to_file(reference, layer, &blob, credentials)
                .await?;
            fs::create_dir(&unpacked).map_err(ImageError::io("create directory", &unpacked))?;
            let (blob_path, unpack_dir, limits) = (blob.clone(), unpacked.clone(), self.limits);
            let name = layer.digest.clone();
            let stats = tokio::task::spawn_blocking(move || {
                unpack_layer_file(&blob_path, &unpack_dir, &name, &limits)
            })
            .await
            .map_err(|e| ImageError::Invalid {
                what: format!("layer {}", layer.digest),
                reason: format!("unpacking task failed: {e}"),
            })??;
            if let Some(expected) = diff_id {
                if stats.diff_id != expected {
                    return Err(ImageError::DigestMismatch {
                        what: format!("uncompressed layer {} of {reference}", layer.digest),
                        expected: expected.to_string(),
                        actual: stats.diff_id,
                    });
                }
            }
            match fs::rename(&unpacked, &dir) {
                Ok(()) => Ok(true),
                // Another process unpacked the same layer first: its copy is complete.
                Err(e) if dir.is_dir() => {
                    tracing::debug!(layer = %layer.digest, error = %e, "layer appeared concurrently");
                    Ok(false)
                }
                Err(e) => Err(ImageError::io("rename into place", &dir)(e)),
            }
        }
        .await;
        let _ = fs::remove_file(&blob);
        let _ = remove_all(&unpacked);
        if let Ok(mut map) = self.in_flight.lock() {
            map.remove(hex);
        }
        result
    }

    /// The image with id `id` (`sha256:…`), or last pulled as `reference` (any form
    /// [`Reference::parse`] accepts).
    pub fn get(&self, id_or_reference: &str) -> Result<ImageRecord, ImageError> {
        if digest_hex(id_or_reference).is_some() {
            return self.read_record(id_or_reference);
        }
        let name = Reference::parse(id_or_reference)?.to_string();
        self.list()?
            .into_iter()
            .find(|r| r.references.contains(&name))
            .ok_or(ImageError::NotInStore(name))
    }

    /// Every image in the store.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(ImageError::io("list", &dir))? {
            let path = entry.map_err(ImageError::io("list", &dir))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let bytes = fs::read(&path).map_err(ImageError::io("read", &path))?;
                let record = serde_json::from_slice(&bytes).map_err(|e| ImageError::Invalid {
                    what: format!("image record {}", path.display()),
                    reason: e.to_string(),
                })?;
                out.push(record);
            }
        }
        out.sort_by(|a: &ImageRecord, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Removes every image not in `in_use` (image ids), then every layer and blob that
    /// no remaining image refers to, and leftovers of interrupted pulls. Waits for
    /// running pulls to finish and holds new ones until done.
    pub async fn gc(&self, in_use: &[String]) -> Result<GcReport, ImageError> {
        let _exclusive = self.gc_lock.write().await;
        let _records = self.records.lock().await;
        let mut report = GcReport::default();
        let mut layers = HashSet::new();
        let mut blobs = HashSet::new();
        for record in self.list()? {
            if in_use.contains(&record.id) {
                layers.extend(
                    record
                        .layers
                        .iter()
                        .filter_map(|d| digest_hex(d))
                        .map(str::to_string),
                );
                blobs.extend(
                    [&record.id, &record.config_digest]
                        .into_iter()
                        .filter_map(|d| digest_hex(d))
                        .map(str::to_string),
                );
            } else {
                let path = self.record_path(&record.id)?;
                fs::remove_file(&path).map_err(ImageError::io("remove", &path))?;
                report.images.push(record.id);
            }
        }
        let tmp = self.root.join("tmp");
        let layers_dir = self.root.join("layers");
        for name in dir_names(&layers_dir)? {
            if !layers.contains(&name) {
                // Renamed away first so that a half-removed layer never looks complete.
                let from = layers_dir.join(&name);
                let doomed = tmp.join(format!("gc-{name}"));
                fs::rename(&from, &doomed).map_err(ImageError::io("move away", &from))?;
                remove_all(&doomed)?;
                report.layers.push(format!("sha256:{name}"));
            }
        }
        let blobs_dir = self.root.join("blobs/sha256");
        for name in dir_names(&blobs_dir)? {
            if !blobs.contains(&name) {
                let path = blobs_dir.join(&name);
                fs::remove_file(&path).map_err(ImageError::io("remove", &path))?;
                report.blobs.push(format!("sha256:{name}"));
            }
        }
        for name in dir_names(&tmp)? {
            remove_all(&tmp.join(name))?;
        }
        Ok(report)
    }

    fn record_path(&self, id: &str) -> Result<PathBuf, ImageError> {
        let hex = digest_hex(id).ok_or_else(|| ImageError::NotInStore(id.to_string()))?;
        Ok(self.root.join("images").join(format!("{hex}.json")))
    }

    fn read_record(&self, id: &str) -> Result<ImageRecord, ImageError> {
        let path = self.record_path(id)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::NotInStore(id.to_string()))
            }
            Err(e) => return Err(ImageError::io("read", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Invalid {
            what: format!("image record {}", path.display()),
            reason: e.to_string(),
        })
    }

    fn write_record(&self, record: &ImageRecord) -> Result<(), ImageError> {
        let path = self.record_path(&record.id)?;
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| ImageError::Invalid {
            what: format!("image record {}", record.id),
            reason: e.to_string(),
        })?;
        self.write_atomically(&path, &bytes)
    }

    fn write_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let hex = digest_hex(digest).ok_or_else(|| ImageError::Invalid {
            what: "blob".into(),
            reason: format!("unsupported digest {digest:?}"),
        })?;
        let path = self.root.join("blobs/sha256").join(hex);
        if path.is_file() {
            return Ok(());
        }
        self.write_atomically(&path, bytes)
    }

    /// Writes a temporary file, fsyncs and renames it over `path`.
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
        use std::io::Write as _;
        let tmp = self.root.join("tmp").join(uuid::Uuid::new_v4().to_string());
        let result = (|| {
            let mut file = fs::File::create(&tmp).map_err(ImageError::io("create", &tmp))?;
            file.write_all(bytes)
                .map_err(ImageError::io("write", &tmp))?;
            file.sync_all().map_err(ImageError::io("sync", &tmp))?;
            fs::rename(&tmp, path).map_err(ImageError::io("rename into place", path))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

fn dir_names(dir: &Path) -> Result<Vec<String>, ImageError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(ImageError::io("list", dir))? {
        let entry = entry.map_err(ImageError::io("list", dir))?;
        out.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

/// Removes a file or directory tree (never following links); absent is fine.
fn remove_all(path: &Path) -> Result<(), ImageError> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::io("remove", path)(e)),
    }
}
