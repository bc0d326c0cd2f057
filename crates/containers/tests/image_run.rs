//! A Docker image pulled from a real `docker-registry` (Basic auth) runs in a real
//! container: the image's layers as the overlay root, its entrypoint + cmd, env, user
//! and working directory, with the whiteouts of its upper layers applied.
//!
//! `harness = false`: this binary is also the container shim (`<exe> internal shim …`),
//! as in `tests/runc.rs`.

mod image_support;

use std::sync::Arc;
use std::time::Duration;

use image_support::{busybox, Compression, Entry, Layer, Layout, Registry, PASSWORD, USER};
use ingot_containers::image::{
    Credentials, ImageStore, PullLimits, Reference, RegistryClient, RegistryConfig,
};
use ingot_containers::{run_internal, ContainerManager, ContainerSpec, ManagerConfig};
use serde_json::json;
use tokio::io::AsyncReadExt;

const NAME: &str = "image_app_runs_in_a_container";

/// Shuts the manager down (removing every container, mount and cgroup) even on panic.
struct ManagerGuard(Option<Arc<ContainerManager>>);

impl Drop for ManagerGuard {
    fn drop(&mut self) {
        if let Some(manager) = self.0.take() {
            // We may be inside the test's runtime: shut down on a fresh thread and runtime.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                if let Err(e) = runtime.block_on(manager.shutdown()) {
                    eprintln!("shutdown in drop: {e}");
                }
            })
            .join();
        }
    }
}

async fn image_app_runs_in_a_container() {
    let registry = Registry::start(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut layout = Layout::new(&dir.path().join("layout"));
    let base = Layer::new(
        &[
            Entry::Dir("bin/"),
            Entry::File("bin/busybox", &busybox(), 0o755),
            Entry::Symlink("bin/sh", "busybox"),
            Entry::Dir("etc/"),
            Entry::File(
                "etc/passwd",
                b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/app:/bin/sh\n",
                0o644,
            ),
            Entry::File("etc/group", b"root:x:0:\napp:x:1001:\n", 0o644),
            Entry::File("etc/removed.txt", b"gone\n", 0o644),
            Entry::Dir("data/opaque/"),
            Entry::File("data/opaque/old.txt", b"old\n", 0o644),
        ],
        Compression::Gzip,
    );
    let top = Layer::new(
        &[
            Entry::File("etc/.wh.removed.txt", b"", 0o644),
            Entry::File("data/opaque/.wh..wh..opq", b"", 0o644),
            Entry::File("data/opaque/new.txt", b"new\n", 0o644),
            Entry::Dir("app/"),
        ],
        Compression::Zstd,
    );
    let script = "busybox id -u; busybox id -g; busybox pwd; echo \"$GREETING $EXTRA\"; \
                  busybox ls /etc; busybox ls /data/opaque";
    let manifest = layout.image(
        &[&base, &top],
        json!({
            "Entrypoint": ["/bin/busybox", "sh", "-c"],
            "Cmd": [script],
            "Env": ["PATH=/bin", "GREETING=hello"],
            "User": "app",
            "WorkingDir": "/app",
        }),
        "amd64",
    );
    layout.tag("app", &manifest);
    layout.push("app", &registry.host(), "team/app:1", false, true);

    let store_dir = tempfile::tempdir().expect("tempdir");
    let store =
        ImageStore::open(store_dir.path().join("images"), PullLimits::default()).expect("store");
    let client = RegistryClient::new(RegistryConfig::default()).expect("client");
    let creds = Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    let reference = Reference::parse(&format!("{}/team/app:1", registry.host())).expect("ref");
    let (image, _) = store
        .pull(&client, &reference, Some(&creds))
        .await
        .expect("pull");
    let (stack, layers) = store.container_root(&image).expect("container root");
    let process = image
        .config
        .process_spec(
            &store.layer_dirs(&image),
            &[],
            &[("EXTRA".into(), "world".into())],
        )
        .expect("process spec");

    let mut config = ManagerConfig::new(
        store_dir.path().join("containers"),
        std::env::current_exe().expect("current exe"),
    );
    config.prefix = "ici7".into();
    config.bridge = "ici7br".into();
    config.subnet = "10.251.7.0/24".into();
    let manager = ContainerManager::start(config)
        .await
        .expect("start manager");
    let guard = ManagerGuard(Some(manager.clone()));
    let mut container = manager
        .create(ContainerSpec {
            id: "image-app".into(),
            hostname: "image-app".into(),
            stack,
            layers,
            bind_mounts: vec![],
            process,
            limits: ingot_containers::Limits {
                memory_bytes: 128 << 20,
                pids: 64,
                cpu_shares: 256,
                disk_bytes: None,
            },
            network: false,
            egress: vec![],
        })
        .await
        .expect("create container");
    let mut stdout = String::new();
    let mut stderr = String::new();
    let read = async {
        container
            .stdout
            .read_to_string(&mut stdout)
            .await
            .expect("stdout");
        container
            .stderr
            .read_to_string(&mut stderr)
            .await
            .expect("stderr");
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("container output ends");
    let status = tokio::time::timeout(Duration::from_secs(60), &mut container.exit)
        .await
        .expect("container exits")
        .expect("exit status");
    assert_eq!(status.code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        &lines[..4],
        ["1000", "1001", "/app", "hello world"],
        "user, group, working dir and env from the image: {stdout}\n{stderr}"
    );
    assert!(lines.contains(&"passwd"), "{stdout}");
    assert!(
        !lines.contains(&"removed.txt"),
        "whiteout applied: {stdout}"
    );
    assert!(
        lines.contains(&"new.txt") && !lines.contains(&"old.txt"),
        "opaque dir: {stdout}"
    );
    manager.destroy("image-app").await.expect("destroy");
    drop(guard);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("internal") {
        std::process::exit(run_internal(&args[2..]));
    }
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    let selected = filters.is_empty() || filters.iter().any(|f| NAME.contains(f.as_str()));
    if args.iter().any(|a| a == "--list") {
        if selected {
            println!("{NAME}: test");
        }
        return;
    }
    if !selected {
        println!("running 0 tests\n\ntest result: ok. 0 passed; 0 failed");
        return;
    }
    println!("running 1 test");
    let outcome = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(image_app_runs_in_a_container());
    })
    .join();
    match outcome {
        Ok(()) => println!("test {NAME} ... ok\n\ntest result: ok. 1 passed; 0 failed"),
        Err(_) => {
            println!("test {NAME} ... FAILED\n\ntest result: FAILED. 0 passed; 1 failed");
            std::process::exit(1);
        }
    }
}
