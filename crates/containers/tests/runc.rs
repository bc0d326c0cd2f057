//! End-to-end tests of the container manager over the real runc and kernel (run as root).
//!
//! `harness = false`: this binary is also the shim. When invoked as
//! `<test exe> internal shim …` it dispatches to `run_internal`, as the `ingot` binary does;
//! otherwise it runs the tests below, in parallel, each with its own prefix, bridge and
//! subnet, each shutting its manager down even when it fails.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ingot_containers::{
    prepare_default_stack, run_internal, BindMount, Container, ContainerError, ContainerManager,
    ContainerSpec, Destination, EgressRule, ExitStatus, Limits, ManagerConfig, PortRange,
    ProcessSpec, Protocol, Stack,
};
use tokio::io::AsyncReadExt;

type TestResult = Result<(), String>;

/// A manager on its own prefix/bridge/subnet in a temporary state directory; shut down on drop.
struct Env {
    manager: Option<Arc<ContainerManager>>,
    stack: Stack,
    prefix: String,
    state_dir: PathBuf,
    _dir: tempfile::TempDir,
}

fn config_for(n: u8, state_dir: &Path) -> ManagerConfig {
    let mut config = ManagerConfig::new(state_dir, std::env::current_exe().expect("current exe"));
    config.prefix = format!("ict{n}");
    config.bridge = format!("ict{n}br");
    config.subnet = format!("10.253.{n}.0/24");
    config
}

impl Env {
    async fn new(n: u8) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("containers");
        let stack = prepare_default_stack(&dir.path().join("stack")).expect("default stack");
        let manager = ContainerManager::start(config_for(n, &state_dir))
            .await
            .expect("start manager");
        Env {
            manager: Some(manager),
            stack,
            prefix: format!("ict{n}"),
            state_dir,
            _dir: dir,
        }
    }

    fn manager(&self) -> &Arc<ContainerManager> {
        self.manager.as_ref().expect("manager")
    }

    fn spec(&self, id: &str, script: &str) -> ContainerSpec {
        ContainerSpec {
            id: id.to_string(),
            hostname: format!("host-{id}"),
            stack: self.stack.clone(),
            layers: vec![],
            bind_mounts: vec![],
            process: ProcessSpec {
                args: vec!["sh".into(), "-c".into(), script.into()],
                env: vec![("GREETING".into(), "hello".into())],
                cwd: "/home/vcap".into(),
                uid: 2000,
                gid: 2000,
            },
            limits: Limits {
                memory_bytes: 256 << 20,
                pids: 256,
                cpu_shares: 512,
                disk_bytes: None,
            },
            network: true,
            egress: vec![],
        }
    }

    /// Shuts down explicitly (the drop guard then has nothing left to do).
    async fn shutdown(&mut self) -> Result<(), ContainerError> {
        match self.manager.take() {
            Some(manager) => manager.shutdown().await,
            None => Ok(()),
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(manager) = self.manager.take() {
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

/// Everything on the machine that carries `prefix` or lives under `state_dir`.
fn artefacts(prefix: &str, state_dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut hierarchies = Vec::new();
    for line in mountinfo.lines() {
        let point = line.split(' ').nth(4).unwrap_or("");
        if Path::new(point).starts_with(state_dir) {
            found.insert(format!("mount:{point}"));
        }
        if let Some((_, right)) = line.split_once(" - ") {
            if right.starts_with("cgroup ") || right.starts_with("cgroup2 ") {
                hierarchies.push(PathBuf::from(point));
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{prefix}-")) {
                found.insert(format!("netns:{name}"));
            }
        }
    }
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        let name = line.split(": ").nth(1).unwrap_or("");
        let name = name.split('@').next().unwrap_or(name);
        if name.starts_with(prefix) {
            found.insert(format!("link:{name}"));
        }
    }
    fn walk(dir: &Path, found: &mut BTreeSet<String>) {
        found.insert(format!("cgroup:{}", dir.display()));
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(&entry.path(), found);
                }
            }
        }
    }
    for hierarchy in hierarchies {
        let dir = hierarchy.join(prefix);
        if dir.is_dir() {
            walk(&dir, &mut found);
        }
    }
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    if String::from_utf8_lossy(&tables.stdout)
        .lines()
        .any(|l| l.trim() == format!("table ip {prefix}"))
    {
        found.insert(format!("nft:{prefix}"));
    }
    let runc_root = state_dir.join("runc");
    if runc_root.is_dir() {
        let listed = Command::new("runc")
            .args(["--root"])
            .arg(&runc_root)
            .args(["list", "-q"])
            .output()
            .expect("runc list");
        for id in String::from_utf8_lossy(&listed.stdout).lines() {
            found.insert(format!("runc:{id}"));
        }
    }
    let containers = state_dir.join("containers");
    if let Ok(entries) = std::fs::read_dir(&containers) {
        for entry in entries.flatten() {
            found.insert(format!("dir:{}", entry.path().display()));
        }
    }
    found
}

/// What a running manager legitimately keeps: its bridge, its nft table, its cgroup parents.
fn manager_artefacts(found: &BTreeSet<String>, prefix: &str) -> BTreeSet<String> {
    found
        .iter()
        .filter(|a| {
            !(a.as_str() == format!("link:{prefix}br")
                || a.as_str() == format!("nft:{prefix}")
                || (a.starts_with("cgroup:") && a.ends_with(&format!("/{prefix}"))))
        })
        .cloned()
        .collect()
}

async fn read_all(container: &mut Container) -> (String, String) {
    let mut out = String::new();
    let mut err = String::new();
    let (a, b) = tokio::join!(
        container.stdout.read_to_string(&mut out),
        container.stderr.read_to_string(&mut err)
    );
    a.expect("read stdout");
    b.expect("read stderr");
    (out, err)
}

async fn exit_of(container: Container) -> ExitStatus {
    tokio::time::timeout(Duration::from_secs(60), container.exit)
        .await
        .expect("container exits within a minute")
        .expect("exit status")
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

async fn echo_and_exit_code() -> TestResult {
    let env = Env::new(1).await;
    let mut c = env
        .manager()
        .create(env.spec("echo", "echo $GREETING world; echo oops >&2; exit 3"))
        .await
        .map_err(|e| e.to_string())?;
    ensure!(c.host_pid > 1, "host pid {}", c.host_pid);
    let (out, err) = read_all(&mut c).await;
    let status = exit_of(c).await;
    ensure!(out == "hello world\n", "stdout {out:?}");
    ensure!(err == "oops\n", "stderr {err:?}");
    ensure!(
        status
            == ExitStatus {
                code: 3,
                signal: None,
                oom_killed: false
            },
        "status {status:?}"
    );
    Ok(())
}

async fn sandbox_identity_and_filesystem() -> TestResult {
    let env = Env::new(2).await;
    let script = r#"
        echo "uid=$(id -u) gid=$(id -g) user=$(id -un) home=$HOME"
        echo "hostname=$(hostname)"
        if touch /usr/ingot-probe 2>/dev/null; then echo usr=writable; else echo usr=readonly; fi
        test -e /etc/shadow && echo shadow=present || echo shadow=absent
        test -e /root && echo root=present || echo root=absent
        test -e /var && echo var=present || echo var=absent
        echo x > /tmp/probe && echo tmp=writable
        echo x > /home/vcap/probe && echo home=writable
        test -c /dev/null && test -c /dev/urandom && echo dev=ok
        cat /proc/kcore >/dev/null 2>&1 && echo kcore=readable || echo kcore=masked
        echo "pid1=$(cat /proc/1/comm)"
        echo "procs=$(ls /proc | grep -c '^[0-9][0-9]*$')"
    "#;
    let mut spec = env.spec("ident", script);
    spec.process.env.push(("HOME".into(), "/home/vcap".into()));
    let mut c = env
        .manager()
        .create(spec)
        .await
        .map_err(|e| e.to_string())?;
    let (out, err) = read_all(&mut c).await;
    let status = exit_of(c).await;
    ensure!(status.code == 0, "status {status:?}, stderr {err}");
    let expected = [
        "uid=2000 gid=2000 user=vcap home=/home/vcap",
        "hostname=host-ident",
        "usr=readonly",
        "shadow=absent",
        "root=absent",
        "var=absent",
        "tmp=writable",
        "home=writable",
        "dev=ok",
        "kcore=masked",
        "pid1=sh",
    ];
    for line in expected {
        ensure!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}\nstderr: {err}"
        );
    }
    // sh, ls, grep and the $(…) subshell: nothing of the host's processes.
    let procs: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no procs line in {out}"))?;
    ensure!(
        (1..=5).contains(&procs),
        "{procs} processes visible:\n{out}"
    );
    // The host's /usr is untouched.
    ensure!(
        !Path::new("/usr/ingot-probe").exists(),
        "probe reached host /usr"
    );
    Ok(())
}

async fn sigkill_from_host_is_137() -> TestResult {
    let env = Env::new(3).await;
    let c = env
        .manager()
        .create(env.spec("victim", "exec sleep 1000"))
        .await
        .map_err(|e| e.to_string())?;
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", c.host_pid))
        .map_err(|e| e.to_string())?;
    ensure!(
        cgroup.contains("/ict3/victim"),
        "process not in its cgroup:\n{cgroup}"
    );
    let usage = env
        .manager()
        .usage("victim")
        .ok_or("no usage while running")?;
    ensure!(usage.memory_bytes > 0, "usage {usage:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.host_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| e.to_string())?;
    let status = exit_of(c).await;
    ensure!(
        status
            == ExitStatus {
                code: 137,
                signal: Some(9),
                oom_killed: false
            },
        "status {status:?}"
    );
    Ok(())
}

async fn memory_hog_is_oom_killed() -> TestResult {
    let env = Env::new(4).await;
    let mut spec = env.spec("hog", "");
    spec.process.args = vec![
        "python3".into(),
        "-c".into(),
        "a = bytearray(200 * 1024 * 1024)\nprint('survived')".into(),
    ];
    spec.limits.memory_bytes = 32 << 20;
    let mut c = env
        .manager()
        .create(spec)
        .await
        .map_err(|e| e.to_string())?;
    let (out, _) = read_all(&mut c).await;
    let status = exit_of(c).await;
    ensure!(!out.contains("survived"), "hog survived");
    ensure!(
        status
            == ExitStatus {
                code: 137,
                signal: Some(9),
                oom_killed: true
            },
        "status {status:?}"
    );
    Ok(())
}

/// An egress rule allowing TCP to `destination` on `ports` (Cloud Foundry syntax).
fn tcp_rule(destination: &str, ports: &str) -> EgressRule {
    EgressRule {
        protocol: Protocol::Tcp,
        destinations: vec![Destination::parse(destination).expect("destination")],
        ports: PortRange::parse_list(ports).expect("ports"),
        log: false,
    }
}

/// A network namespace with a veth from the host, standing for "the outside world".
struct OutsideNetns {
    name: String,
    host_veth: String,
}

impl OutsideNetns {
    fn create(name: &str, host_veth: &str, host_ip: &str, peer_ip: &str) -> Result<Self, String> {
        let guard = OutsideNetns {
            name: name.into(),
            host_veth: host_veth.into(),
        };
        let peer = format!("{host_veth}p");
        for args in [
            vec!["netns", "add", name],
            vec![
                "link", "add", host_veth, "type", "veth", "peer", "name", &peer,
            ],
            vec!["link", "set", &peer, "netns", name],
            vec!["addr", "add", host_ip, "dev", host_veth],
            vec!["link", "set", host_veth, "up"],
            vec!["-n", name, "addr", "add", peer_ip, "dev", &peer],
            vec!["-n", name, "link", "set", &peer, "up"],
            vec!["-n", name, "link", "set", "lo", "up"],
        ] {
            let out = Command::new("ip")
                .args(&args)
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "ip {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(guard)
    }

    /// Binds a TCP listener inside the namespace (from a thread that joined it).
    fn listen(&self, addr: &str) -> Result<TcpListener, String> {
        let path = format!("/run/netns/{}", self.name);
        let addr = addr.to_string();
        std::thread::spawn(move || -> Result<TcpListener, String> {
            let ns = std::fs::File::open(&path).map_err(|e| e.to_string())?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| e.to_string())?;
            TcpListener::bind(&addr).map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "listener thread panicked".to_string())?
    }
}

impl Drop for OutsideNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

async fn egress_reaches_an_outside_server() -> TestResult {
    let env = Env::new(5).await;
    let outside =
        OutsideNetns::create("ict5-outside", "ict5out", "10.252.5.1/30", "10.252.5.2/30")?;
    let listener = outside.listen("10.252.5.2:8080")?;
    let server = std::thread::spawn(move || -> Result<String, String> {
        // Poll, so that a container that never connects fails the test instead of hanging it.
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut stream, peer) = loop {
            match listener.accept() {
                Ok(accepted) => break accepted,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut request = [0u8; 64];
        let n = stream.read(&mut request).map_err(|e| e.to_string())?;
        stream
            .write_all(b"HTTP/1.0 200 OK\r\n\r\nhello from outside\n")
            .map_err(|e| e.to_string())?;
        Ok(format!("{peer} {}", String::from_utf8_lossy(&request[..n])))
    });
    let script =
        r#"exec 3<>/dev/tcp/10.252.5.2/8080; printf 'GET / HTTP/1.0\r\n\r\n' >&3; cat <&3"#;
    let mut spec = env.spec("client", "");
    spec.process.args = vec!["bash".into(), "-c".into(), script.into()];
    spec.egress = vec![tcp_rule("10.252.5.2", "8080")];
    let mut c = env
        .manager()
        .create(spec)
        .await
        .map_err(|e| e.to_string())?;
    let ip = c.ip.ok_or("no container address")?;
    ensure!(
        ip.octets()[..3] == [10, 253, 5] && ip != Ipv4Addr::new(10, 253, 5, 1),
        "address {ip}"
    );
    let (out, err) = read_all(&mut c).await;
    let status = exit_of(c).await;
    ensure!(
        out.contains("hello from outside"),
        "stdout {out:?} stderr {err:?} status {status:?}"
    );
    let seen = server.join().map_err(|_| "server panicked")??;
    // Masqueraded: the server sees the host's address on its link, not the container's.
    ensure!(seen.starts_with("10.252.5.1:"), "server saw {seen}");
    ensure!(seen.contains("GET / HTTP/1.0"), "server saw {seen}");
    Ok(())
}

async fn destroy_and_shutdown_leave_nothing() -> TestResult {
    let mut env = Env::new(6).await;
    let prefix = env.prefix.clone();
    let c = env
        .manager()
        .create(env.spec("leaky", "exec sleep 1000"))
        .await
        .map_err(|e| e.to_string())?;
    let mut quiet = env.spec("quiet", "exec sleep 1000");
    quiet.network = false;
    let q = env
        .manager()
        .create(quiet)
        .await
        .map_err(|e| e.to_string())?;
    ensure!(q.ip.is_none(), "container without network got {:?}", q.ip);
    let during = artefacts(&prefix, &env.state_dir);
    for expected in [
        format!("netns:{prefix}-leaky"),
        format!("link:{prefix}v2"),
        format!("link:{prefix}br"),
        format!("nft:{prefix}"),
        format!("cgroup:/sys/fs/cgroup/memory/{prefix}/leaky"),
        format!("cgroup:/sys/fs/cgroup/pids/{prefix}/leaky"),
        "runc:leaky".to_string(),
        "runc:quiet".to_string(),
        format!(
            "mount:{}",
            env.state_dir
                .join("containers/leaky/bundle/rootfs")
                .display()
        ),
    ] {
        let v2 = expected.replace("/memory/", "/").replace("/pids/", "/");
        ensure!(
            during.contains(&expected) || during.contains(&v2),
            "{expected} missing while running: {during:#?}"
        );
    }
    let host_pid = c.host_pid;
    env.manager()
        .destroy("leaky")
        .await
        .map_err(|e| e.to_string())?;
    env.manager()
        .destroy("quiet")
        .await
        .map_err(|e| e.to_string())?;
    env.manager()
        .destroy("quiet")
        .await
        .map_err(|e| format!("second destroy: {e}"))?;
    ensure!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(host_pid as i32), None).is_err(),
        "container process {host_pid} survived destroy"
    );
    let after = manager_artefacts(&artefacts(&prefix, &env.state_dir), &prefix);
    ensure!(after.is_empty(), "left after destroy: {after:#?}");
    ensure!(
        env.manager().usage("leaky").is_none(),
        "usage of a destroyed container"
    );
    ensure!(
        env.manager().list().is_empty(),
        "still listed: {:?}",
        env.manager().list()
    );
    ensure!(
        exit_of(c).await.code == 137 && exit_of(q).await.code == 137,
        "destroyed containers report SIGKILL"
    );
    env.shutdown().await.map_err(|e| e.to_string())?;
    let after = artefacts(&prefix, &env.state_dir);
    ensure!(after.is_empty(), "left after shutdown: {after:#?}");
    Ok(())
}

async fn restart_after_crash_removes_leftovers() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let state_dir = dir.path().join("containers");
    let stack = prepare_default_stack(&dir.path().join("stack")).map_err(|e| e.to_string())?;
    let prefix = "ict7";
    let first = ContainerManager::start(config_for(7, &state_dir))
        .await
        .map_err(|e| e.to_string())?;
    // From here on a fresh manager on the same prefix must clean up, even if we fail.
    struct Final(PathBuf);
    impl Drop for Final {
        fn drop(&mut self) {
            let state_dir = self.0.clone();
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Runtime::new().expect("runtime");
                runtime.block_on(async {
                    if let Ok(m) = ContainerManager::start(config_for(7, &state_dir)).await {
                        let _ = m.shutdown().await;
                    }
                });
            })
            .join();
        }
    }
    let _final = Final(state_dir.clone());
    let spec = |id: &str| ContainerSpec {
        id: id.into(),
        hostname: id.into(),
        stack: stack.clone(),
        layers: vec![],
        bind_mounts: vec![],
        process: ProcessSpec {
            args: vec!["sleep".into(), "1000".into()],
            env: vec![],
            cwd: "/".into(),
            uid: 2000,
            gid: 2000,
        },
        limits: Limits::default(),
        network: true,
        egress: vec![],
    };
    let a = first.create(spec("a")).await.map_err(|e| e.to_string())?;
    let b = first.create(spec("b")).await.map_err(|e| e.to_string())?;
    // Kill a's shim outright: its container lives on, orphaned.
    let stat =
        std::fs::read_to_string(format!("/proc/{}/stat", a.host_pid)).map_err(|e| e.to_string())?;
    let shim_pid: i32 = stat
        .rsplit(") ")
        .next()
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no ppid in {stat}"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| e.to_string())?;
    let pids = [a.host_pid, b.host_pid];
    drop(first); // no shutdown: as if the platform crashed
    let before = artefacts(prefix, &state_dir);
    ensure!(
        before.contains("netns:ict7-a") && before.contains("runc:b"),
        "setup: {before:#?}"
    );

    let second = ContainerManager::start(config_for(7, &state_dir))
        .await
        .map_err(|e| e.to_string())?;
    for pid in pids {
        // Killed processes may take a moment to be reaped by whoever inherited them.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
        {
            ensure!(
                Instant::now() < deadline,
                "container process {pid} survived restart"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let after = manager_artefacts(&artefacts(prefix, &state_dir), prefix);
    ensure!(after.is_empty(), "left after restart: {after:#?}");
    // The restarted manager works, and reuses the first address.
    let c = second.create(spec("c")).await.map_err(|e| e.to_string())?;
    ensure!(
        c.ip == Some(Ipv4Addr::new(10, 253, 7, 2)),
        "address {:?}",
        c.ip
    );
    second.shutdown().await.map_err(|e| e.to_string())?;
    let after = artefacts(prefix, &state_dir);
    ensure!(after.is_empty(), "left after shutdown: {after:#?}");
    Ok(())
}

async fn stop_terminates_then_kills() -> TestResult {
    let env = Env::new(8).await;
    let polite = env
        .manager()
        .create(env.spec(
            "polite",
            "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
        ))
        .await
        .map_err(|e| e.to_string())?;
    let stubborn = env
        .manager()
        .create(env.spec("stubborn", "exec sleep 1000"))
        .await
        .map_err(|e| e.to_string())?;
    let mut polite = polite;
    // Wait for the trap to be installed before stopping.
    let mut first = [0u8; 6];
    polite
        .stdout
        .read_exact(&mut first)
        .await
        .map_err(|e| e.to_string())?;
    ensure!(&first == b"ready\n", "got {first:?}");
    env.manager()
        .stop("polite", Duration::from_secs(20))
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    env.manager()
        .stop("stubborn", Duration::from_millis(300))
        .await
        .map_err(|e| e.to_string())?;
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        started.elapsed()
    );
    let (out, _) = read_all(&mut polite).await;
    ensure!(out == "bye\n", "polite said {out:?}");
    let status = exit_of(polite).await;
    ensure!(status.code == 0, "polite status {status:?}");
    let status = exit_of(stubborn).await;
    ensure!(
        status.code == 137 && !status.oom_killed,
        "stubborn status {status:?}"
    );
    Ok(())
}

async fn failed_create_is_reported_and_cleaned() -> TestResult {
    let env = Env::new(9).await;
    let mut spec = env.spec("broken", "");
    spec.process.args = vec!["/no/such/program".into()];
    let error = env
        .manager()
        .create(spec)
        .await
        .err()
        .ok_or("creating a container of a missing program succeeded")?;
    ensure!(
        matches!(error, ContainerError::StartFailed { ref id, .. } if id == "broken"),
        "error {error:?}"
    );
    ensure!(error.to_string().contains("broken"), "message {error}");
    let after = manager_artefacts(&artefacts(&env.prefix, &env.state_dir), &env.prefix);
    ensure!(after.is_empty(), "left after failed create: {after:#?}");
    // Layers and bind mounts: an extra layer above the stack, and a read-only host file.
    let layer = env.state_dir.parent().ok_or("no parent")?.join("layer");
    std::fs::create_dir_all(layer.join("app")).map_err(|e| e.to_string())?;
    std::fs::write(layer.join("app/hello.txt"), "from the layer\n").map_err(|e| e.to_string())?;
    let shared = env
        .state_dir
        .parent()
        .ok_or("no parent")?
        .join("shared.txt");
    std::fs::write(&shared, "from the host\n").map_err(|e| e.to_string())?;
    let mut spec = env.spec(
        "layered",
        "cat /app/hello.txt /srv/shared.txt; echo x > /srv/shared.txt || echo ro",
    );
    spec.layers = vec![layer];
    spec.bind_mounts = vec![BindMount {
        source: shared,
        destination: "/srv/shared.txt".into(),
        read_only: true,
    }];
    let mut c = env
        .manager()
        .create(spec)
        .await
        .map_err(|e| e.to_string())?;
    let (out, _) = read_all(&mut c).await;
    exit_of(c).await;
    ensure!(
        out == "from the layer\nfrom the host\nro\n",
        "stdout {out:?}"
    );
    // Duplicate ids and bad ids are refused.
    let again = env.manager().create(env.spec("layered", "true")).await;
    ensure!(
        matches!(again, Err(ContainerError::AlreadyExists { .. })),
        "duplicate id: {again:?}"
    );
    let bad = env.manager().create(env.spec("../x", "true")).await;
    ensure!(
        matches!(bad, Err(ContainerError::InvalidId { .. })),
        "bad id: {bad:?}"
    );
    Ok(())
}

async fn limits_reach_the_cgroup_and_stop_fork_bombs() -> TestResult {
    let env = Env::new(11).await;
    let mut spec = env.spec(
        "bomb",
        "i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done; echo survived",
    );
    spec.limits = Limits {
        memory_bytes: 48 << 20,
        pids: 10,
        cpu_shares: 256,
        disk_bytes: None,
    };
    let mut c = env
        .manager()
        .create(spec)
        .await
        .map_err(|e| e.to_string())?;
    let (pids_max, memory_max) = match env.manager().cgroup_version() {
        ingot_containers::CgroupVersion::V1 => (
            "/sys/fs/cgroup/pids/ict11/bomb/pids.max",
            "/sys/fs/cgroup/memory/ict11/bomb/memory.limit_in_bytes",
        ),
        ingot_containers::CgroupVersion::V2 => (
            "/sys/fs/cgroup/ict11/bomb/pids.max",
            "/sys/fs/cgroup/ict11/bomb/memory.max",
        ),
    };
    // The shell may already be gone; then the cgroup is too, and only behaviour tells.
    if let (Ok(pids), Ok(memory)) = (
        std::fs::read_to_string(pids_max),
        std::fs::read_to_string(memory_max),
    ) {
        ensure!(pids.trim() == "10", "pids.max {pids}");
        ensure!(
            memory.trim() == (48u64 << 20).to_string(),
            "memory limit {memory}"
        );
    }
    let (out, err) = read_all(&mut c).await;
    let status = exit_of(c).await;
    ensure!(
        !out.contains("survived"),
        "40 processes under a limit of 10: {out}"
    );
    ensure!(err.to_lowercase().contains("fork"), "stderr {err:?}");
    ensure!(status.code != 0 && !status.oom_killed, "status {status:?}");
    Ok(())
}

async fn parallel_creates_get_distinct_addresses_and_talk() -> TestResult {
    let env = Env::new(12).await;
    // A server container, then clients started concurrently that each fetch from it.
    let mut server_spec = env.spec("server", "");
    server_spec.process.args = vec![
        "python3".into(),
        "-c".into(),
        "import socket\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('0.0.0.0', 8080)); s.listen(16); print('listening', flush=True)\n\
         while True:\n    c, _ = s.accept(); c.sendall(b'pong\\n'); c.close()\n"
            .into(),
    ];
    let mut server = env
        .manager()
        .create(server_spec)
        .await
        .map_err(|e| e.to_string())?;
    let server_ip = server.ip.ok_or("server has no address")?;
    let mut first = [0u8; 10];
    server
        .stdout
        .read_exact(&mut first)
        .await
        .map_err(|e| e.to_string())?;
    ensure!(&first == b"listening\n", "server said {first:?}");
    let mut tasks = Vec::new();
    for n in 0..4 {
        let manager = Arc::clone(env.manager());
        let mut spec = env.spec(&format!("client{n}"), "");
        spec.process.args = vec![
            "bash".into(),
            "-c".into(),
            format!("exec 3<>/dev/tcp/{server_ip}/8080; cat <&3"),
        ];
        // Containers reach each other only where a rule allows it.
        spec.egress = vec![tcp_rule(&server_ip.to_string(), "8080")];
        tasks.push(tokio::spawn(async move {
            let mut c = manager.create(spec).await.map_err(|e| e.to_string())?;
            let ip = c.ip;
            let (out, err) = read_all(&mut c).await;
            let status = exit_of(c).await;
            Ok::<_, String>((ip, out, err, status))
        }));
    }
    let mut addresses = BTreeSet::from([server_ip]);
    for task in tasks {
        let (ip, out, err, status) = task.await.map_err(|e| e.to_string())??;
        ensure!(out == "pong\n", "client got {out:?} {err:?} {status:?}");
        addresses.insert(ip.ok_or("client without address")?);
    }
    ensure!(addresses.len() == 5, "addresses {addresses:?}");
    // The host (router, health checks) reaches the container's port directly.
    let mut stream = tokio::net::TcpStream::connect((server_ip, 8080))
        .await
        .map_err(|e| format!("host to {server_ip}:8080: {e}"))?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    ensure!(reply == "pong\n", "host got {reply:?}");
    env.manager()
        .stop("server", Duration::from_millis(100))
        .await
        .map_err(|e| e.to_string())?;
    ensure!(exit_of(server).await.code == 137, "server not killed");
    Ok(())
}

async fn missing_runc_is_named() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = config_for(10, dir.path());
    config.runc = PathBuf::from("/nonexistent/runc");
    match ContainerManager::start(config).await {
        Err(ContainerError::MissingProgram { name, .. }) if name == "runc" => Ok(()),
        other => Err(format!("expected a missing-runc error, got {other:?}")),
    }
}

/// The script each sandbox probe runs: namespace creation must fail, process creation not.
const NAMESPACE_PROBE: &str = r#"
unshare -U true 2>/dev/null && echo unshare-U=made || echo unshare-U=refused
unshare -n true 2>/dev/null && echo unshare-n=made || echo unshare-n=refused
unshare -Un true 2>/dev/null && echo unshare-Un=made || echo unshare-Un=refused
sh -c 'echo ok' | sed 's/^/sh=/'
python3 - <<'EOF'
import ctypes, os, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
sys_clone = {"x86_64": 56, "aarch64": 220}[os.uname().machine]
# CLONE_NEWNS, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWCGROUP, and NEWUSER|NEWNET.
for flag in [0x20000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000, 0x2000000, 0x50000000]:
    # clone(flags | SIGCHLD) without a new stack works like fork.
    pid = libc.syscall(sys_clone, flag | 17, 0, 0, 0, 0)
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
        print(f"clone-{flag:#x}=made")
    else:
        print(f"clone-{flag:#x}=refused-{ctypes.get_errno()}")
out = subprocess.run(["sh", "-c", "echo ok"], capture_output=True, text=True).stdout.strip()
print(f"subprocess={out}")
seen = []
t = threading.Thread(target=lambda: seen.append("ok"))
t.start()
t.join()
print(f"thread={seen[0]}")
pid = os.fork()
if pid == 0:
    os._exit(7)
print(f"fork={os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}")
EOF
"#;

async fn namespaces_cannot_be_made_inside() -> TestResult {
    let env = Env::new(13).await;
    let mut expected: Vec<String> = ["unshare-U", "unshare-n", "unshare-Un"]
        .iter()
        .map(|probe| format!("{probe}=refused"))
        .collect();
    for flag in [
        0x20000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000, 0x2000000, 0x50000000,
    ] {
        // EPERM from the filter (without it, CLONE_NEWUSER would succeed for anyone).
        expected.push(format!("clone-{flag:#x}=refused-1"));
    }
    for line in ["sh=ok", "subprocess=ok", "thread=ok", "fork=7"] {
        expected.push(line.to_string());
    }
    // As vcap, and as root with the default capabilities.
    for (id, uid) in [("vcap", 2000), ("root", 0)] {
        let mut spec = env.spec(id, NAMESPACE_PROBE);
        spec.process.uid = uid;
        spec.process.gid = uid;
        let mut c = env
            .manager()
            .create(spec)
            .await
            .map_err(|e| e.to_string())?;
        let (out, err) = read_all(&mut c).await;
        let status = exit_of(c).await;
        ensure!(status.code == 0, "{id}: status {status:?}, stderr {err}");
        for line in &expected {
            ensure!(
                out.lines().any(|l| l == line),
                "{id}: missing {line:?} in:\n{out}\nstderr: {err}"
            );
        }
    }
    Ok(())
}

/// Mounts `dir` read-only over itself until dropped.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(dir: &Path) -> Result<ReadOnly, String> {
        use nix::mount::{mount, MsFlags};
        mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| format!("bind {}: {e}", dir.display()))?;
        let guard = ReadOnly(dir.to_path_buf());
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| format!("remount {} read-only: {e}", dir.display()))?;
        Ok(guard)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

async fn failed_destroy_step_still_frees_everything_else() -> TestResult {
    let mut env = Env::new(14).await;
    let prefix = env.prefix.clone();
    let mut c = env
        .manager()
        .create(env.spec("first", "echo hi"))
        .await
        .map_err(|e| e.to_string())?;
    let ip = c.ip.ok_or("no container address")?;
    read_all(&mut c).await;
    exit_of(c).await;
    let netns = PathBuf::from(format!("/run/netns/{prefix}-first"));
    ensure!(netns.exists(), "{} missing before destroy", netns.display());
    {
        // The container's directory cannot be removed: the rootfs step fails.
        let _read_only = ReadOnly::mount(&env.state_dir.join("containers"))?;
        match env.manager().destroy("first").await {
            Err(ContainerError::Io {
                action: "remove", ..
            }) => {}
            other => return Err(format!("expected the removal to fail, got {other:?}")),
        }
        // The steps after it ran, and the record and address are released.
        ensure!(!netns.exists(), "network not torn down after a failed step");
        ensure!(
            env.manager().list().is_empty(),
            "still listed: {:?}",
            env.manager().list()
        );
    }
    let mut again = env
        .manager()
        .create(env.spec("first", "echo again"))
        .await
        .map_err(|e| format!("re-create after failed destroy: {e}"))?;
    ensure!(
        again.ip == Some(ip),
        "address {ip} not reused: {:?}",
        again.ip
    );
    let (out, _) = read_all(&mut again).await;
    ensure!(out == "again\n", "stdout {out:?}");
    exit_of(again).await;
    env.manager()
        .destroy("first")
        .await
        .map_err(|e| e.to_string())?;
    env.shutdown().await.map_err(|e| e.to_string())?;
    let after = artefacts(&prefix, &env.state_dir);
    ensure!(after.is_empty(), "left after shutdown: {after:#?}");
    Ok(())
}

async fn state_dir_visible_to_containers_is_refused() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let link = dir.path().join("link");
    std::os::unix::fs::symlink("/usr/share", &link).map_err(|e| e.to_string())?;
    for state_dir in [
        PathBuf::from("/usr/lib/ingot-test-state"),
        PathBuf::from("/lib/ingot-test-state"),
        // A link into /usr does not hide it.
        link.join("ingot-test-state"),
    ] {
        match ContainerManager::start(config_for(15, &state_dir)).await {
            Err(ContainerError::StateDirExposed { mounted, .. }) => {
                ensure!(mounted == Path::new("/usr"), "{mounted:?}")
            }
            Ok(manager) => {
                let _ = manager.shutdown().await;
                return Err(format!("{} accepted", state_dir.display()));
            }
            Err(other) => return Err(format!("{}: wrong error {other:?}", state_dir.display())),
        }
        ensure!(
            !Path::new("/usr/lib/ingot-test-state").exists()
                && !Path::new("/usr/share/ingot-test-state").exists(),
            "refused state directory was created"
        );
    }
    Ok(())
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
        echo_and_exit_code,
        sandbox_identity_and_filesystem,
        sigkill_from_host_is_137,
        memory_hog_is_oom_killed,
        egress_reaches_an_outside_server,
        destroy_and_shutdown_leave_nothing,
        restart_after_crash_removes_leftovers,
        stop_terminates_then_kills,
        failed_create_is_reported_and_cleaned,
        limits_reach_the_cgroup_and_stop_fork_bombs,
        parallel_creates_get_distinct_addresses_and_talk,
        missing_runc_is_named,
        namespaces_cannot_be_made_inside,
        failed_destroy_step_still_frees_everything_else,
        state_dir_visible_to_containers_is_refused,
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
