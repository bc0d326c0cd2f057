//! A Docker image app end to end: the test builds an image from busybox
//! (`umoci`), pushes it to a real `docker-registry` with Basic auth on a
//! loopback port (`skopeo`), and pushes it as an app with
//! `ingot push --docker-image … --docker-username …` and
//! `CF_DOCKER_PASSWORD`. Through the router it serves a file of the image,
//! and shows that it runs as the image's user, in its working directory,
//! with the image's `ENV` and `PORT` set to the image's exposed port.
//! Wrong credentials make the instance crash with the registry's reason;
//! restart and delete work; the registry is killed even if the test fails.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::platform::Platform;

const USER: &str = "e2e-pusher";
const PASSWORD: &str = "e2e-registry-pass";
const GREETING: &str = "hello from an image";

/// A `docker-registry` with htpasswd Basic auth on 127.0.0.1; killed on drop.
struct Registry {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        std::fs::create_dir_all(dir).expect("registry dir");
        let out = Command::new("htpasswd")
            .args(["-Bbn", USER, PASSWORD])
            .output()
            .expect("run htpasswd (apt-get install -y apache2-utils)");
        assert!(out.status.success(), "htpasswd: {out:?}");
        std::fs::write(dir.join("htpasswd"), &out.stdout).expect("htpasswd file");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {data}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: ingot-e2e-secret\n\
             auth:\n  htpasswd:\n    realm: e2e-realm\n    path: {htpasswd}\n",
            data = dir.join("data").display(),
            htpasswd = dir.join("htpasswd").display(),
        );
        std::fs::write(dir.join("config.yml"), config).expect("registry config");
        let log = std::fs::File::create(dir.join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry (apt-get install -y docker-registry)");
        let mut registry = Registry {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited ({status}): {}", registry.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen: {}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the image `web` in an OCI layout under `work` and pushes it to
/// `registry` as `e2e/web:1`: busybox httpd as user `web` (1000) serving
/// `/www`, with `ENV GREETING`, `EXPOSE 8000/tcp` and `WORKDIR /www`. At
/// start it writes what it sees (`env.txt`) next to the files it serves.
fn build_and_push_image(work: &Path, registry: &Registry) -> String {
    let layout = work.join("oci");
    let bundle = work.join("bundle");
    let image = format!("{}:web", layout.display());
    run("umoci", &["init", "--layout", &layout.to_string_lossy()]);
    run("umoci", &["new", "--image", &image]);
    run(
        "umoci",
        &["unpack", "--image", &image, &bundle.to_string_lossy()],
    );
    let rootfs = bundle.join("rootfs");
    for dir in ["bin", "etc", "www", "tmp"] {
        std::fs::create_dir_all(rootfs.join(dir)).expect("image dir");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("copy /bin/busybox (apt-get install -y busybox-static)");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).expect("sh link");
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000:web:/www:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nweb:x:1000:\n").expect("group");
    std::fs::write(
        rootfs.join("www/index.html"),
        "<h1>served from a docker image</h1>\n",
    )
    .expect("index.html");
    // The user `web` writes env.txt into its working directory.
    nix::unistd::chown(
        &rootfs.join("www"),
        Some(nix::unistd::Uid::from_raw(1000)),
        Some(nix::unistd::Gid::from_raw(1000)),
    )
    .expect("chown www");
    std::fs::set_permissions(
        rootfs.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .expect("chmod tmp");
    run(
        "umoci",
        &["repack", "--image", &image, &bundle.to_string_lossy()],
    );
    let script = "echo \"GREETING=$GREETING PORT=$PORT UID=$(/bin/busybox id -u) \
                  PWD=$(/bin/busybox pwd) APP=$(echo \"$VCAP_APPLICATION\" | /bin/busybox grep -o dockerapp | /bin/busybox head -n1)\" \
                  > env.txt && exec /bin/busybox httpd -f -p 8000 -h /www";
    run(
        "umoci",
        &[
            "config",
            "--image",
            &image,
            "--config.entrypoint=/bin/sh",
            "--config.entrypoint=-c",
            &format!("--config.cmd={script}"),
            &format!("--config.env=GREETING={GREETING}"),
            "--config.env=PATH=/bin",
            "--config.exposedports=8000/tcp",
            "--config.workingdir=/www",
            "--config.user=web",
        ],
    );
    let reference = format!("{}/e2e/web:1", registry.host());
    run(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            &format!("--dest-creds={USER}:{PASSWORD}"),
            &format!("oci:{image}"),
            &format!("docker://{reference}"),
        ],
    );
    reference
}

/// How many layers the cell's image store holds.
fn layer_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

/// Runs `ingot ARGS` with `CF_DOCKER_PASSWORD=password`.
fn cli_with_password(platform: &Platform, password: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ingot"))
        .args(args)
        .env("INGOT_CLI_HOME", &platform.cli_home)
        .env("CF_DOCKER_PASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .expect("run the ingot CLI")
}

pub fn push_a_docker_image(platform: &Platform, work: &Path) {
    let work = work.join("docker");
    std::fs::create_dir_all(&work).expect("docker work dir");
    let registry = Registry::start(&work.join("registry"));
    let reference = build_and_push_image(&work, &registry);

    // As in CF, an admin turns docker support on first.
    let refused = cli_with_password(
        platform,
        PASSWORD,
        &["push", "dockerapp", "--docker-image", &reference],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("Feature Disabled: diego_docker"),
        "a docker push before diego_docker is enabled: {stderr}"
    );
    let (status, flag) = platform.api(
        "PATCH",
        "/v3/feature_flags/diego_docker",
        Some(serde_json::json!({"enabled": true})),
    );
    assert_eq!(status, 200, "{flag}");

    let pushed = cli_with_password(
        platform,
        PASSWORD,
        &[
            "push",
            "dockerapp",
            "--docker-image",
            &reference,
            "--docker-username",
            USER,
        ],
    );
    let stdout = String::from_utf8_lossy(&pushed.stdout);
    assert!(
        pushed.status.success(),
        "docker push failed\n--- stdout ---\n{stdout}\n--- stderr ---\n{}\n--- registry log ---\n{}\n--- platform log ---\n{}",
        String::from_utf8_lossy(&pushed.stderr),
        registry.log(),
        platform.log_text()
    );
    assert!(
        stdout.contains("docker image:") && stdout.contains(&reference),
        "the summary shows the image: {stdout}"
    );
    assert!(!stdout.contains(PASSWORD), "{stdout}");

    let index = platform.wait_for_app("dockerapp.apps.localhost", "/");
    assert!(index.contains("served from a docker image"), "{index}");
    let env = platform.wait_for_app("dockerapp.apps.localhost", "/env.txt");
    assert!(
        env.contains(&format!("GREETING={GREETING}")),
        "the image's ENV: {env}"
    );
    assert!(env.contains("PORT=8000"), "PORT is the exposed port: {env}");
    assert!(env.contains("UID=1000"), "the image's user: {env}");
    assert!(env.contains("PWD=/www"), "the image's working dir: {env}");
    assert!(env.contains("APP=dockerapp"), "VCAP_APPLICATION: {env}");

    let app = platform.cli(&["app", "dockerapp"]);
    assert!(
        app.contains(&reference),
        "`ingot app` shows the image: {app}"
    );
    let (_, packages) = platform.api(
        "GET",
        &format!("/v3/apps/{}/packages", platform.app_guid("dockerapp")),
        None,
    );
    assert_eq!(packages["resources"][0]["data"]["password"], "***");
    assert!(!packages.to_string().contains(PASSWORD), "{packages}");
    assert!(
        !platform.log_text().contains(PASSWORD),
        "the registry password is not in the platform's log"
    );

    // Restart: a new instance from the same (already stored) image.
    platform.cli(&["restart", "dockerapp"]);
    let index = platform.wait_for_app("dockerapp.apps.localhost", "/");
    assert!(index.contains("served from a docker image"), "{index}");

    // Wrong credentials: the instance crashes and says why.
    let bad = cli_with_password(
        platform,
        "not-the-password",
        &[
            "push",
            "badcreds",
            "--docker-image",
            &reference,
            "--docker-username",
            USER,
        ],
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && stderr.contains("unauthorized"),
        "a push with a wrong registry password fails with the registry's reason: {stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    platform.cli(&["delete", "badcreds", "-f"]);

    // The image's layers are stored once, on the cell.
    let layers = platform.home.join("cell/images/layers");
    assert!(
        layer_count(&layers) >= 1,
        "the image is unpacked in {}",
        layers.display()
    );

    // Delete: the route stops answering and, with nothing running from the
    // image any more, its layers are garbage-collected.
    platform.cli(&["delete", "dockerapp", "-f"]);
    platform.wait_for(
        "dockerapp to stop answering after delete",
        Duration::from_secs(60),
        || platform.get_app("dockerapp.apps.localhost", "/").0 == 404,
    );
    platform.wait_for(
        "the unused image layers to be removed",
        Duration::from_secs(60),
        || layer_count(&layers) == 0,
    );
    drop(registry);
}
