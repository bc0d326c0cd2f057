//! Disk quotas end to end, over the real runc and kernel (run as root): a container with
//! `Limits::disk_bytes` gets `ENOSPC` past its limit, the host file system holds no more
//! than the limit, and its file system and loop device go with `destroy` and with the
//! sweep after a crash of the platform.
//!
//! `harness = false`: this binary is also the shim (`<test exe> internal shim …`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ingot_containers::{
    prepare_default_stack, run_internal, BindMount, Container, ContainerManager, ContainerSpec,
    Limits, ManagerConfig, ProcessSpec, Stack,
};
use tokio::io::{AsyncBufReadExt, BufReader};

type TestResult = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn config_for(n: u8, state_dir: &Path) -> ManagerConfig {
    let mut config = ManagerConfig::new(state_dir, std::env::current_exe().expect("current exe"));
    config.prefix = format!("icq{n}");
    config.bridge = format!("icq{n}br");
    config.subnet = format!("10.248.{n}.0/24");
    config
}

/// A manager in a temporary state directory; shut down on drop, and whatever is left
/// under the state directory (mounts, loop devices) is removed even then.
struct Env {
    manager: Option<Arc<ContainerManager>>,
    stack: Stack,
    n: u8,
    state_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn new(n: u8) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("state");
        let stack = prepare_default_stack(&dir.path().join("stack")).expect("default stack");
        let manager = ContainerManager::start(config_for(n, &state_dir))
            .await
            .expect("start manager");
        Env {
            manager: Some(manager),
            stack,
            n,
            state_dir,
            _dir: dir,
        }
    }

    fn manager(&self) -> &Arc<ContainerManager> {
        self.manager.as_ref().expect("manager")
    }

    fn spec(&self, id: &str, script: &str, disk_bytes: Option<u64>) -> ContainerSpec {
        ContainerSpec {
            id: id.to_string(),
            hostname: id.to_string(),
            stack: self.stack.clone(),
            layers: vec![],
            bind_mounts: vec![],
            process: ProcessSpec {
                args: vec!["sh".into(), "-c".into(), script.into()],
                env: vec![],
                cwd: "/home/vcap".into(),
                uid: 2000,
                gid: 2000,
            },
            limits: Limits {
                memory_bytes: 256 << 20,
                disk_bytes,
                ..Limits::default()
            },
            network: false,
            egress: vec![],
        }
    }

    async fn shutdown(&mut self) -> Result<(), String> {
        match self.manager.take() {
            Some(manager) => manager.shutdown().await.map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let manager = self.manager.take();
        // Without a manager (a test failed between a simulated crash and the restart) a
        // new one on the same state directory removes what the old one left.
        let config = (manager.is_none() && self.state_dir.join("runc").exists())
            .then(|| config_for(self.n, &self.state_dir));
        // We may be inside the test's runtime: shut down on a fresh thread and runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let manager = match (manager, config) {
                    (Some(manager), _) => manager,
                    (None, Some(config)) => match ContainerManager::start(config).await {
                        Ok(manager) => manager,
                        Err(e) => return eprintln!("restart in drop: {e}"),
                    },
                    (None, None) => return,
                };
                if let Err(e) = manager.shutdown().await {
                    eprintln!("shutdown in drop: {e}");
                }
            })
        })
        .join();
    }
}

/// Mount points at or below `dir`.
fn mounts_below(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .map(str::to_string)
        .collect()
}

/// Loop devices whose backing file lies at or below `dir`, as the kernel reports them.
fn loops_below(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(backing) = std::fs::read_to_string(entry.path().join("loop/backing_file")) {
            let backing = backing.trim_end();
            let backing = backing.strip_suffix(" (deleted)").unwrap_or(backing);
            if Path::new(backing).starts_with(dir) {
                found.insert(format!("/dev/{name}"));
            }
        }
    }
    found
}

/// Polls until `dir` has no mounts and no loop devices (detaching is asynchronous once
/// a killed container's last reference goes), or reports what is left.
async fn nothing_left(dir: &Path) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mounts = mounts_below(dir);
        let loops = loops_below(dir);
        if mounts.is_empty() && loops.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("left behind: mounts {mounts:?}, loops {loops:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the container's output until a line starting with `marker`, returning all lines.
async fn read_until(container: &mut Container, marker: &str) -> Result<Vec<String>, String> {
    let mut lines = BufReader::new(&mut container.stdout).lines();
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
            let done = line.starts_with(marker);
            seen.push(line);
            if done {
                return Ok(());
            }
        }
        Err("output ended".to_string())
    };
    match tokio::time::timeout(Duration::from_secs(60), read).await {
        Ok(Ok(())) => Ok(seen),
        Ok(Err(e)) => Err(format!("{e} before {marker:?}; got {seen:?}")),
        Err(_) => Err(format!("no {marker:?} within 60 s; got {seen:?}")),
    }
}

const LIMIT: u64 = 32 << 20;

/// Writes 64 MiB, reports how `dd` ended, and waits.
const FILL: &str = "dd if=/dev/zero of=/home/vcap/big bs=1M count=64 2>&1; \
    echo \"dd-exit $?\"; exec sleep 1000";

async fn writes_beyond_the_limit_fail_with_enospc() -> TestResult {
    let mut env = Env::new(1).await;
    let result = fill_and_destroy(&env).await;
    let shutdown = env.shutdown().await;
    result?;
    shutdown?;
    nothing_left(&env.state_dir).await
}

async fn fill_and_destroy(env: &Env) -> TestResult {
    let started = Instant::now();
    let mut quota = env
        .manager()
        .create(env.spec("quota", FILL, Some(LIMIT)))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "    container with a disk quota created in {:?}",
        started.elapsed()
    );
    let lines = read_until(&mut quota, "dd-exit").await?;
    let output = lines.join("\n");
    ensure!(
        output.contains("No space left on device"),
        "dd did not hit ENOSPC: {output}"
    );
    ensure!(!output.contains("dd-exit 0"), "dd succeeded: {output}");
    let containers = env.state_dir.join("containers");
    ensure!(
        loops_below(&containers.join("quota")).len() == 1,
        "expected one loop device, found {:?}",
        loops_below(&containers)
    );
    // The platform still sees what was written …
    let used = env.manager().disk_usage("quota").unwrap_or(0);
    ensure!(
        (LIMIT / 2..=LIMIT).contains(&used),
        "disk_usage {used} is not close to the limit {LIMIT}"
    );
    // … and the host holds no more than the limit for it.
    let image = containers.join("quota/disk.img");
    let host_bytes = std::os::unix::fs::MetadataExt::blocks(
        &std::fs::metadata(&image).map_err(|e| format!("{}: {e}", image.display()))?,
    ) * 512;
    ensure!(
        host_bytes <= LIMIT,
        "the image takes {host_bytes} bytes on the host, over the limit {LIMIT}"
    );

    // Without a limit, as before: no loop device, and the same write succeeds.
    let started = Instant::now();
    let mut free = env
        .manager()
        .create(env.spec("free", FILL, None))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "    container without a quota created in {:?}",
        started.elapsed()
    );
    let output = read_until(&mut free, "dd-exit").await?.join("\n");
    ensure!(
        output.contains("dd-exit 0"),
        "unlimited dd failed: {output}"
    );
    ensure!(
        loops_below(&containers.join("free")).is_empty(),
        "a container without a limit got a loop device"
    );
    ensure!(
        env.manager().disk_usage("free").unwrap_or(0) >= 64 << 20,
        "disk_usage of the unlimited container is below what it wrote"
    );

    env.manager()
        .destroy("quota")
        .await
        .map_err(|e| e.to_string())?;
    nothing_left(&containers.join("quota")).await?;
    ensure!(!image.exists(), "the image survived destroy");
    ensure!(
        !containers.join("quota").exists(),
        "the container directory survived destroy"
    );
    env.manager()
        .destroy("free")
        .await
        .map_err(|e| e.to_string())
}

async fn restart_after_crash_removes_disk_mounts_and_loops() -> TestResult {
    let mut env = Env::new(2).await;
    let result = crash_and_restart(&mut env).await;
    let shutdown = env.shutdown().await;
    result?;
    shutdown?;
    nothing_left(&env.state_dir).await
}

async fn crash_and_restart(env: &mut Env) -> TestResult {
    // Created in parallel: each gets a loop device of its own.
    let ids = ["left1", "left2", "left3"];
    let created = futures::future::join_all(ids.iter().map(|id| {
        env.manager()
            .create(env.spec(id, "echo up; exec sleep 1000", Some(LIMIT)))
    }))
    .await;
    let mut running = Vec::new();
    for container in created {
        running.push(container.map_err(|e| e.to_string())?);
    }
    for container in &mut running {
        read_until(container, "up").await?;
    }
    let containers = env.state_dir.join("containers");
    ensure!(
        loops_below(&containers).len() == ids.len(),
        "expected {} loop devices before the crash, found {:?}",
        ids.len(),
        loops_below(&containers)
    );
    let volume = env
        .manager()
        .create_volume("vol", LIMIT)
        .await
        .map_err(|e| e.to_string())?;
    ensure!(volume.is_dir(), "no volume directory");
    // The platform dies without shutting down: its containers and mounts stay.
    drop(running);
    drop(env.manager.take());
    ensure!(
        !mounts_below(&containers).is_empty(),
        "mounts went away without a shutdown"
    );
    let restarted = ContainerManager::start(config_for(env.n, &env.state_dir))
        .await
        .map_err(|e| e.to_string())?;
    env.manager = Some(restarted);
    nothing_left(&containers).await?;
    for id in ids {
        ensure!(
            !containers.join(id).exists(),
            "the crashed container {id}'s directory is still there"
        );
    }
    nothing_left(&env.state_dir.join("volumes")).await?;
    ensure!(!volume.exists(), "the crashed run's volume is still there");
    Ok(())
}

async fn volumes_hold_writable_bind_mounts_to_their_limit() -> TestResult {
    let mut env = Env::new(4).await;
    let result = fill_volume(&env).await;
    let shutdown = env.shutdown().await;
    result?;
    shutdown?;
    nothing_left(&env.state_dir).await
}

async fn fill_volume(env: &Env) -> TestResult {
    let volume = env
        .manager()
        .create_volume("stg", LIMIT)
        .await
        .map_err(|e| e.to_string())?;
    // As the scheduler does for staging: a directory the container's user owns.
    let out = volume.join("out");
    std::fs::create_dir(&out).map_err(|e| e.to_string())?;
    std::os::unix::fs::chown(&out, Some(2000), Some(2000)).map_err(|e| e.to_string())?;
    let mut spec = env.spec(
        "writer",
        "dd if=/dev/zero of=/tmp/output/big bs=1M count=64 2>&1; echo \"dd-exit $?\"",
        None,
    );
    spec.bind_mounts.push(BindMount {
        source: out.clone(),
        destination: "/tmp/output".into(),
        read_only: false,
    });
    let mut container = env
        .manager()
        .create(spec)
        .await
        .map_err(|e| e.to_string())?;
    let output = read_until(&mut container, "dd-exit").await?.join("\n");
    ensure!(
        output.contains("No space left on device") && !output.contains("dd-exit 0"),
        "dd into the volume did not hit ENOSPC: {output}"
    );
    // The platform reads what the container left there.
    let written = std::fs::metadata(out.join("big"))
        .map_err(|e| e.to_string())?
        .len();
    ensure!(
        (LIMIT / 2..=LIMIT).contains(&written),
        "{written} bytes written into a {LIMIT}-byte volume"
    );
    env.manager()
        .destroy("writer")
        .await
        .map_err(|e| e.to_string())?;
    env.manager()
        .remove_volume("stg")
        .await
        .map_err(|e| e.to_string())?;
    nothing_left(&env.state_dir.join("volumes")).await?;
    ensure!(!volume.exists(), "the volume survived its removal");
    Ok(())
}

async fn too_small_disk_limit_is_refused_and_leaves_nothing() -> TestResult {
    let mut env = Env::new(3).await;
    let result = refuse_small(&env).await;
    let shutdown = env.shutdown().await;
    result?;
    shutdown?;
    nothing_left(&env.state_dir).await
}

async fn refuse_small(env: &Env) -> TestResult {
    match env
        .manager()
        .create(env.spec("small", "true", Some(1 << 20)))
        .await
    {
        Ok(_) => return Err("a 1 MiB disk limit was accepted".into()),
        Err(e) => ensure!(e.to_string().contains("minimum"), "unclear error: {e}"),
    }
    ensure!(
        env.manager().list().is_empty(),
        "still listed: {:?}",
        env.manager().list()
    );
    let containers = env.state_dir.join("containers");
    nothing_left(&containers).await?;
    ensure!(
        !containers.join("small").exists(),
        "the refused container's directory is still there"
    );
    Ok(())
}

async fn writing_through_the_image_stays_within_a_small_memory_limit() -> TestResult {
    let mut env = Env::new(5).await;
    let result = write_with_little_memory(&env).await;
    let shutdown = env.shutdown().await;
    result?;
    shutdown?;
    nothing_left(&env.state_dir).await
}

/// The image's page cache is charged to the container too (the loop device writes on its
/// behalf): writing far more than its memory must still not get it OOM-killed.
async fn write_with_little_memory(env: &Env) -> TestResult {
    let mut spec = env.spec(
        "small-memory",
        "dd if=/dev/zero of=/home/vcap/big bs=1M count=384 2>&1 && sync; echo \"dd-exit $?\"",
        Some(512 << 20),
    );
    spec.limits.memory_bytes = 64 << 20;
    let started = Instant::now();
    let mut container = env
        .manager()
        .create(spec)
        .await
        .map_err(|e| e.to_string())?;
    let output = read_until(&mut container, "dd-exit").await?.join("\n");
    ensure!(output.contains("dd-exit 0"), "dd failed: {output}");
    let status = tokio::time::timeout(Duration::from_secs(30), container.exit)
        .await
        .map_err(|_| "the container did not exit".to_string())?
        .map_err(|e| e.to_string())?;
    println!(
        "    384 MiB written with 64 MiB of memory in {:?}",
        started.elapsed()
    );
    ensure!(
        status.code == 0 && !status.oom_killed,
        "ended with {status:?}: {output}"
    );
    env.manager()
        .destroy("small-memory")
        .await
        .map_err(|e| e.to_string())
}

type TestFn = fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = TestResult> + Send>>;

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), (|| Box::pin($name()) as _) as TestFn)),*]
    };
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("internal") {
        std::process::exit(run_internal(&args[2..]));
    }
    // Test names to run; libtest's own flags (and the values of those that take one) are ignored.
    let mut filters: Vec<&String> = Vec::new();
    let mut skip_value = false;
    for arg in &args[1..] {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        if arg.starts_with('-') {
            skip_value = [
                "--test-threads",
                "--skip",
                "--format",
                "--color",
                "-Z",
                "--logfile",
            ]
            .contains(&arg.as_str());
        } else {
            filters.push(arg);
        }
    }
    let tests: Vec<(&str, TestFn)> = tests![
        writes_beyond_the_limit_fail_with_enospc,
        restart_after_crash_removes_disk_mounts_and_loops,
        too_small_disk_limit_is_refused_and_leaves_nothing,
        volumes_hold_writable_bind_mounts_to_their_limit,
        writing_through_the_image_stays_within_a_small_memory_limit,
    ];
    let selected: Vec<_> = tests
        .into_iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return;
    }
    println!("running {} tests", selected.len());
    let handles: Vec<_> = selected
        .into_iter()
        .map(|(name, test)| {
            let handle = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(test())
            });
            (name, handle)
        })
        .collect();
    let mut failed = Vec::new();
    for (name, handle) in handles {
        match handle.join() {
            Ok(Ok(())) => println!("test {name} ... ok"),
            Ok(Err(message)) => {
                println!("test {name} ... FAILED\n    {message}");
                failed.push(name);
            }
            Err(_) => {
                println!("test {name} ... FAILED (panicked)");
                failed.push(name);
            }
        }
    }
    if failed.is_empty() {
        println!("\ntest result: ok");
    } else {
        println!("\ntest result: FAILED: {failed:?}");
        std::process::exit(1);
    }
}
