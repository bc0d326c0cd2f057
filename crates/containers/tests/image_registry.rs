//! Pulling images from a real `docker-registry` on loopback: images built here by hand
//! (tar + gzip/zstd + OCI JSON), pushed with `skopeo`, pulled with Ingot's client into
//! its store, and looked at through a real overlayfs mount of the unpacked layers.

mod image_support;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use image_support::{
    busybox, Compression, Entry, Layer, Layout, Overlay, Registry, PASSWORD, USER,
};
use ingot_containers::image::{
    Credentials, ImageError, ImageStore, Platform, PullLimits, Reference, RegistryClient,
    RegistryConfig,
};
use serde_json::{json, Value};

fn creds() -> Credentials {
    Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    }
}

fn client() -> RegistryClient {
    RegistryClient::new(RegistryConfig::default()).expect("client")
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).expect("reference")
}

/// The base layer every test image shares: a static busybox, users, a few files.
fn base_layer(busybox: &[u8]) -> Layer {
    Layer::new(
        &[
            Entry::Dir("bin/"),
            Entry::File("bin/busybox", busybox, 0o755),
            Entry::Symlink("bin/sh", "busybox"),
            Entry::Dir("etc/"),
            Entry::File(
                "etc/passwd",
                b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/app:/bin/sh\n",
                0o644,
            ),
            Entry::File("etc/group", b"root:x:0:\napp:x:1000:\n", 0o644),
            Entry::File("etc/hello.txt", b"hello from the base layer\n", 0o644),
            Entry::File("etc/removed.txt", b"whited out above\n", 0o644),
            Entry::Dir("data/"),
            Entry::Dir("data/opaque/"),
            Entry::File("data/opaque/old.txt", b"hidden by the opaque dir\n", 0o644),
        ],
        Compression::Gzip,
    )
}

fn run_config() -> Value {
    json!({
        "Entrypoint": ["/bin/busybox"],
        "Cmd": ["httpd", "-f", "-p", "8080", "-h", "/app"],
        "Env": ["PATH=/bin", "GREETING=hi"],
        "User": "app",
        "WorkingDir": "/app",
        "ExposedPorts": {"8080/tcp": {}}
    })
}

/// The app image: base + a gzip layer with whiteouts + a zstd layer.
struct AppImage {
    layout: Layout,
    base: Layer,
    whiteouts: Layer,
    zstd: Layer,
    manifest: Value,
    _dir: tempfile::TempDir,
}

fn app_image() -> AppImage {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut layout = Layout::new(&dir.path().join("layout"));
    let base = base_layer(&busybox());
    let whiteouts = Layer::new(
        &[
            Entry::Dir("etc/"),
            Entry::File("etc/.wh.removed.txt", b"", 0o644),
            Entry::Dir("data/opaque/"),
            Entry::File("data/opaque/.wh..wh..opq", b"", 0o644),
            Entry::File("data/opaque/new.txt", b"only this one\n", 0o644),
            Entry::Dir("app/"),
            Entry::File("app/index.html", b"<h1>ingot</h1>\n", 0o644),
        ],
        Compression::Gzip,
    );
    let zstd = Layer::new(
        &[
            Entry::Dir("app/"),
            Entry::File("app/zstd.txt", b"from a zstd layer\n", 0o644),
        ],
        Compression::Zstd,
    );
    let manifest = layout.image(&[&base, &whiteouts, &zstd], run_config(), "amd64");
    layout.tag("app", &manifest);
    AppImage {
        layout,
        base,
        whiteouts,
        zstd,
        manifest,
        _dir: dir,
    }
}

fn digest_of(descriptor: &Value) -> String {
    descriptor["digest"].as_str().expect("digest").to_string()
}

#[tokio::test]
async fn pulls_by_tag_and_digest_with_basic_auth_and_applies_whiteouts() {
    let registry = Registry::start(true);
    let image = app_image();
    image
        .layout
        .push("app", &registry.host(), "team/app:1.0", false, true);

    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path(), PullLimits::default()).expect("store");
    let client = client();
    let by_tag = reference(&format!("{}/team/app:1.0", registry.host()));
    let (record, report) = store
        .pull(&client, &by_tag, Some(&creds()))
        .await
        .unwrap_or_else(|e| panic!("pull by tag: {e}\n{}", registry.log()));

    assert_eq!(record.id, digest_of(&image.manifest));
    assert_eq!(
        record.layers,
        [
            image.base.digest(),
            image.whiteouts.digest(),
            image.zstd.digest()
        ]
    );
    assert_eq!(report.downloaded_layers.len(), 3);
    let config = &record.config;
    assert_eq!(
        config.command(),
        ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/app"]
    );
    assert_eq!(
        (config.port, config.cwd(), config.user.as_str()),
        (Some(8080), "/app", "app")
    );
    assert!(config.env.contains(&("GREETING".into(), "hi".into())));
    let layers = store.layer_dirs(&record);
    assert_eq!(
        ingot_containers::image::resolve_user(&config.user, &layers).expect("user"),
        (1000, 1000)
    );

    // The layers as a container would see them: a real overlay of the lower dirs.
    let mnt = tempfile::tempdir().expect("tempdir");
    {
        let overlay = Overlay::mount(&layers, &mnt.path().join("root"));
        let root = &overlay.target;
        let read = |p: &str| std::fs::read_to_string(root.join(p)).ok();
        assert_eq!(
            read("etc/hello.txt").as_deref(),
            Some("hello from the base layer\n")
        );
        assert!(
            !root.join("etc/removed.txt").exists(),
            "the whiteout hides the file"
        );
        assert!(
            !root.join("data/opaque/old.txt").exists(),
            "the opaque dir hides lower entries"
        );
        assert_eq!(
            read("data/opaque/new.txt").as_deref(),
            Some("only this one\n")
        );
        assert_eq!(read("app/zstd.txt").as_deref(), Some("from a zstd layer\n"));
        // The image's busybox runs from the image's root.
        let out = std::process::Command::new("chroot")
            .arg(root)
            .args([
                "/bin/sh",
                "-c",
                "busybox cat /app/index.html && busybox ls /etc",
            ])
            .output()
            .expect("chroot");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "chroot: {out:?}");
        assert!(
            stdout.contains("<h1>ingot</h1>"),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!stdout.contains("removed.txt"), "{stdout}");
    }

    // By digest: the same image, nothing downloaded again.
    let by_digest = reference(&format!("{}/team/app@{}", registry.host(), record.id));
    let downloads = client.blob_downloads();
    let (again, report) = store
        .pull(&client, &by_digest, Some(&creds()))
        .await
        .expect("pull by digest");
    assert_eq!(again.id, record.id);
    assert!(report.downloaded_layers.is_empty());
    assert_eq!(report.reused_layers.len(), 3);
    assert_eq!(
        client.blob_downloads() - downloads,
        1,
        "only the config is fetched"
    );
    let found = store
        .get(&format!("{}/team/app:1.0", registry.host()))
        .expect("get by tag");
    assert_eq!(found.id, record.id);
    assert_eq!(found.references.len(), 2);
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_unauthorized() {
    let registry = Registry::start(true);
    let image = app_image();
    image
        .layout
        .push("app", &registry.host(), "team/app:1.0", false, true);
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path(), PullLimits::default()).expect("store");
    let r = reference(&format!("{}/team/app:1.0", registry.host()));
    let wrong = Credentials {
        username: USER.into(),
        password: "not-the-password".into(),
    };
    let err = store
        .pull(&client(), &r, Some(&wrong))
        .await
        .expect_err("wrong password");
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    let err = store
        .pull(&client(), &r, None)
        .await
        .expect_err("no credentials");
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    assert!(store.list().expect("list").is_empty());
    client()
        .ping(&registry.host(), Some(&creds()))
        .await
        .expect("ping with the right password");
}

#[tokio::test]
async fn unknown_tags_and_repositories_are_manifest_unknown() {
    let registry = Registry::start(false);
    let image = app_image();
    image
        .layout
        .push("app", &registry.host(), "team/app:1.0", false, false);
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path(), PullLimits::default()).expect("store");
    for missing in ["team/app:2.0", "team/nope:1.0"] {
        let r = reference(&format!("{}/{missing}", registry.host()));
        let err = store.pull(&client(), &r, None).await.expect_err(missing);
        assert!(
            matches!(err, ImageError::ManifestUnknown { .. }),
            "{missing}: {err}"
        );
        assert!(err.to_string().contains("manifest unknown"), "{err}");
    }
    // An anonymous registry needs no credentials.
    let r = reference(&format!("{}/team/app:1.0", registry.host()));
    store
        .pull(&client(), &r, None)
        .await
        .expect("anonymous pull");
}

#[tokio::test]
async fn a_manifest_list_resolves_to_the_configured_platform() {
    let registry = Registry::start(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut layout = Layout::new(&dir.path().join("layout"));
    let base = base_layer(&busybox());
    let amd64_only = Layer::new(&[Entry::File("arch", b"amd64\n", 0o644)], Compression::Gzip);
    let arm64_only = Layer::new(&[Entry::File("arch", b"arm64\n", 0o644)], Compression::Gzip);
    let amd64 = layout.image(&[&base, &amd64_only], run_config(), "amd64");
    let arm64 = layout.image(&[&base, &arm64_only], run_config(), "arm64");
    let index = layout.index(&[arm64.clone(), amd64.clone()]);
    layout.tag("multi", &index);
    layout.push("multi", &registry.host(), "team/multi:latest", true, true);

    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path(), PullLimits::default()).expect("store");
    let r = reference(&format!("{}/team/multi", registry.host()));
    let (record, _) = store
        .pull(&client(), &r, Some(&creds()))
        .await
        .expect("pull index");
    assert_eq!(record.id, digest_of(&amd64));
    let top = &store.layer_dirs(&record)[0];
    assert_eq!(
        std::fs::read_to_string(top.join("arch")).expect("arch"),
        "amd64\n"
    );

    let arm_client = RegistryClient::new(RegistryConfig {
        platform: Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: None,
        },
        ..RegistryConfig::default()
    })
    .expect("client");
    let (arm, report) = store
        .pull(&arm_client, &r, Some(&creds()))
        .await
        .expect("pull arm64");
    assert_eq!(arm.id, digest_of(&arm64));
    assert_eq!(
        report.reused_layers,
        [base.digest()],
        "the shared base is reused"
    );

    let s390x = RegistryClient::new(RegistryConfig {
        platform: Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        },
        ..RegistryConfig::default()
    })
    .expect("client");
    let err = store
        .pull(&s390x, &r, Some(&creds()))
        .await
        .expect_err("no s390x");
    assert!(
        matches!(err, ImageError::NoMatchingPlatform { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn images_share_layers_and_gc_removes_what_is_unused() {
    let registry = Registry::start(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut layout = Layout::new(&dir.path().join("layout"));
    let base = base_layer(&busybox());
    let one = Layer::new(&[Entry::File("which", b"one\n", 0o644)], Compression::Gzip);
    let two = Layer::new(&[Entry::File("which", b"two\n", 0o644)], Compression::Zstd);
    let first = layout.image(&[&base, &one], run_config(), "amd64");
    let second = layout.image(&[&base, &two], run_config(), "amd64");
    layout.tag("first", &first);
    layout.tag("second", &second);
    // The first as a Docker schema 2 manifest (skopeo converts it), the second as OCI.
    layout.push_as(
        "first",
        &registry.host(),
        "team/first:1",
        false,
        true,
        Some("v2s2"),
    );
    layout.push("second", &registry.host(), "team/second:1", false, true);

    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path(), PullLimits::default()).expect("store");
    let client = client();
    let (a, _) = store
        .pull(
            &client,
            &reference(&format!("{}/team/first:1", registry.host())),
            Some(&creds()),
        )
        .await
        .expect("pull first");
    let manifest = std::fs::read_to_string(
        store_dir
            .path()
            .join("blobs/sha256")
            .join(a.id.trim_start_matches("sha256:")),
    )
    .expect("stored manifest");
    assert!(
        manifest.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{manifest}"
    );
    assert_eq!(a.layers, [base.digest(), one.digest()]);
    let base_dir = store.layer_dir(&base.digest());
    let base_inode = std::fs::metadata(&base_dir).expect("base layer").ino();
    let downloads = client.blob_downloads();
    let (b, report) = store
        .pull(
            &client,
            &reference(&format!("{}/team/second:1", registry.host())),
            Some(&creds()),
        )
        .await
        .expect("pull second");
    assert_eq!(report.reused_layers, [base.digest()]);
    assert_eq!(report.downloaded_layers, [two.digest()]);
    assert_eq!(
        client.blob_downloads() - downloads,
        2,
        "config and the one new layer"
    );
    assert_eq!(
        std::fs::metadata(&base_dir).expect("base layer").ino(),
        base_inode
    );
    let layer_count = || {
        std::fs::read_dir(store_dir.path().join("layers"))
            .expect("layers")
            .count()
    };
    assert_eq!(layer_count(), 3, "base stored once");

    // Only the first image in use: the second's own layer goes, the base stays.
    let removed = store.gc(std::slice::from_ref(&a.id)).await.expect("gc");
    assert_eq!(removed.images, std::slice::from_ref(&b.id));
    assert_eq!(removed.layers, [two.digest()]);
    assert_eq!(layer_count(), 2);
    assert!(store.get(&b.id).is_err());
    let dirs: Vec<PathBuf> = store.layer_dirs(&store.get(&a.id).expect("first kept"));
    assert!(dirs.iter().all(|d| d.is_dir()));

    // Nothing in use: everything goes.
    store.gc(&[]).await.expect("gc all");
    assert_eq!(layer_count(), 0);
    assert!(store.list().expect("list").is_empty());
    assert_eq!(
        std::fs::read_dir(store_dir.path().join("blobs/sha256"))
            .expect("blobs")
            .count(),
        0
    );

    // Concurrent pulls of the same image: one unpacked copy, both succeed.
    let r = reference(&format!("{}/team/first:1", registry.host()));
    let c = creds();
    let (x, y) = tokio::join!(
        store.pull(&client, &r, Some(&c)),
        store.pull(&client, &r, Some(&c))
    );
    let (x, y) = (x.expect("pull x").0, y.expect("pull y").0);
    assert_eq!(x.id, y.id);
    assert_eq!(layer_count(), 2);
    assert_eq!(
        std::fs::read_dir(store_dir.path().join("tmp"))
            .expect("tmp")
            .count(),
        0,
        "no temporary leftovers"
    );
}

#[tokio::test]
async fn corrupt_mislabelled_or_oversized_content_is_refused() {
    // The registry stores blobs by digest on disk; overwrite one to simulate corruption.
    let registry = Registry::start(false);
    let image = app_image();
    image
        .layout
        .push("app", &registry.host(), "team/app:1.0", false, false);
    let hex = image
        .zstd
        .digest()
        .trim_start_matches("sha256:")
        .to_string();
    let data = registry
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .join("data");
    let mut bytes = std::fs::read(&data).expect("stored blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, bytes).expect("corrupt blob");

    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path(), PullLimits::default()).expect("store");
    let r = reference(&format!("{}/team/app:1.0", registry.host()));
    let err = store.pull(&client(), &r, None).await.expect_err("corrupt");
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(!store.layer_dir(&image.zstd.digest()).exists());
    assert!(store.list().expect("list").is_empty());

    // A config whose diff_id does not match the layer's uncompressed content.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut layout = Layout::new(&dir.path().join("layout"));
    let mut lying = Layer::new(&[Entry::File("f", b"x", 0o644)], Compression::Gzip);
    lying.diff_id = image_support::sha256(b"something else");
    let manifest = layout.image(&[&lying], run_config(), "amd64");
    layout.tag("lying", &manifest);
    layout.push("lying", &registry.host(), "team/lying:1", false, false);
    let r = reference(&format!("{}/team/lying:1", registry.host()));
    let err = store
        .pull(&client(), &r, None)
        .await
        .expect_err("diff_id mismatch");
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(!store.layer_dir(&lying.digest()).exists());

    // A layer (here the busybox base) larger than the configured cap is not downloaded.
    let small = RegistryClient::new(RegistryConfig {
        limits: PullLimits {
            max_blob_bytes: 1024,
            ..PullLimits::default()
        },
        ..RegistryConfig::default()
    })
    .expect("client");
    let fresh_dir = tempfile::tempdir().expect("tempdir");
    let fresh = ImageStore::open(fresh_dir.path(), PullLimits::default()).expect("store");
    let r = reference(&format!("{}/team/app:1.0", registry.host()));
    let err = fresh.pull(&small, &r, None).await.expect_err("too large");
    assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("too large"), "{err}");
}
