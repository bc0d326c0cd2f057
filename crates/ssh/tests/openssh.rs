//! The proxy against the real OpenSSH client (`ssh`, `scp`, `sftp`, with `sshpass` for the
//! password) and a real runc container reached through [`ContainerAccess`] (run as root).
//!
//! `harness = false`: one container and one proxy serve every test, and `main` removes both
//! (and checks that no session process is left) whatever the tests did. When invoked as
//! `<test exe> internal shim …` this binary is the container shim, as `ingot` is.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ingot_containers::{
    prepare_default_stack, run_internal, ContainerManager, ContainerSpec, Limits, ManagerConfig,
    ProcessSpec,
};
use ingot_logs::{Envelope, LogSink, Message};
use ingot_ssh::{
    CfUser, ContainerAccess, SshAuthorizer, SshProxy, SshProxyConfig, SshRefusal, SshTarget,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult = Result<(), String>;

const CONTAINER: &str = "sshtest1";
const PROCESS_GUID: &str = "6f0e8c1a-proc";
const APP_GUID: &str = "a9b8c7d6-app";
const PASSWORD: &str = "one-time-code";

/// The container's init: the app directory with a file, and a server on its loopback only.
const INIT: &str = "mkdir -p /home/vcap/app && echo app-file-content > /home/vcap/app/file && \
exec python3 -c '
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((\"127.0.0.1\", 8123))
s.listen(8)
while True:
    c, _ = s.accept()
    c.sendall(b\"inside\\n\")
    c.close()
'";

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Accepts `cf:<PROCESS_GUID>/0` with `PASSWORD`; records every end.
#[derive(Default)]
struct TestAuthorizer {
    ended: Mutex<Vec<SocketAddr>>,
}

#[async_trait::async_trait]
impl SshAuthorizer for TestAuthorizer {
    async fn authorize(
        &self,
        user: &str,
        password: &str,
        _remote: SocketAddr,
    ) -> Result<SshTarget, SshRefusal> {
        let Some(user) = CfUser::parse(user) else {
            return Err(SshRefusal::new("not a cf user"));
        };
        if user.process_guid != PROCESS_GUID || user.index != 0 {
            return Err(SshRefusal::new("no such instance"));
        }
        if password != PASSWORD {
            return Err(SshRefusal::new("invalid code"));
        }
        Ok(SshTarget {
            container_id: CONTAINER.into(),
            app_guid: APP_GUID.into(),
            process_guid: user.process_guid,
            instance_index: user.index,
            env: vec![
                ("CF_INSTANCE_INDEX".into(), "0".into()),
                ("VCAP_APPLICATION".into(), "{\"name\":\"app\"}".into()),
            ],
        })
    }

    async fn ended(&self, _target: &SshTarget, remote: SocketAddr) {
        if let Ok(mut ended) = self.ended.lock() {
            ended.push(remote);
        }
    }
}

/// Keeps every envelope.
#[derive(Default)]
struct Collect(Mutex<Vec<Envelope>>);

impl LogSink for Collect {
    fn emit(&self, envelope: Envelope) {
        if let Ok(mut all) = self.0.lock() {
            all.push(envelope);
        }
    }
}

impl Collect {
    fn ssh_lines(&self) -> Vec<String> {
        let all = self.0.lock().map(|a| a.clone()).unwrap_or_default();
        all.iter()
            .filter(|e| e.source_type() == Some("SSH") && e.source_id == APP_GUID)
            .filter_map(|e| match &e.message {
                Message::Log { payload, .. } => Some(String::from_utf8_lossy(payload).into_owned()),
                _ => None,
            })
            .collect()
    }
}

/// What every test gets.
struct Ctx {
    port: u16,
    logs: Arc<Collect>,
    authorizer: Arc<TestAuthorizer>,
    registry: Arc<Mutex<prometheus_client::registry::Registry>>,
    scratch: PathBuf,
    state_dir: PathBuf,
    access: Arc<ContainerAccess>,
}

impl Ctx {
    /// `sshpass -p PASSWORD ssh … extra…` with a clean configuration.
    fn ssh(&self, password: &str, user: &str, extra: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("sshpass");
        command
            .args(["-p", password, "ssh", "-F", "/dev/null"])
            .args(["-p", &self.port.to_string()])
            .args(common_options(user))
            .args(extra)
            .kill_on_drop(true);
        command
    }
}

fn common_options(user: &str) -> Vec<String> {
    [
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-o",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("User={user}")])
    .collect()
}

fn good_user() -> String {
    format!("cf:{PROCESS_GUID}/0")
}

async fn output(mut command: tokio::process::Command) -> Result<(i32, String, String), String> {
    command.stdin(Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .map_err(|_| "ssh did not finish within a minute".to_string())?
        .map_err(|e| format!("run ssh: {e}"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

async fn echo_prints_the_instance_index(ctx: Arc<Ctx>) -> TestResult {
    let mut command = ctx.ssh(PASSWORD, &good_user(), &["127.0.0.1"]);
    command.arg("echo index=$CF_INSTANCE_INDEX; pwd; id -u");
    let (code, out, err) = output(command).await?;
    ensure!(code == 0, "status {code}, stderr {err}");
    ensure!(
        out == "index=0\n/home/vcap/app\n2000\n",
        "stdout {out:?} stderr {err:?}"
    );
    Ok(())
}

async fn exit_status_reaches_the_client(ctx: Arc<Ctx>) -> TestResult {
    let mut command = ctx.ssh(PASSWORD, &good_user(), &["127.0.0.1"]);
    command.arg("echo out; echo err >&2; exit 3");
    let (code, out, err) = output(command).await?;
    ensure!(code == 3, "status {code}, stdout {out:?} stderr {err:?}");
    ensure!(out == "out\n", "stdout {out:?}");
    ensure!(err.contains("err\n"), "stderr {err:?}");
    Ok(())
}

async fn a_wrong_password_is_refused(ctx: Arc<Ctx>) -> TestResult {
    let before = metric(&ctx, "ssh_sessions_refused_total");
    let mut command = ctx.ssh("wrong", &good_user(), &["127.0.0.1"]);
    command.arg("echo should-not-run");
    let (code, out, _) = output(command).await?;
    // OpenSSH's own status for a failed login (sshpass passes it through).
    ensure!(code == 255, "status {code}");
    ensure!(!out.contains("should-not-run"), "{out}");
    // Another instance with the right password is refused too.
    let mut command = ctx.ssh(PASSWORD, &format!("cf:{PROCESS_GUID}/99"), &["127.0.0.1"]);
    command.arg("echo should-not-run");
    let (code, out, _) = output(command).await?;
    ensure!(code == 255, "status {code}");
    ensure!(!out.contains("should-not-run"), "{out}");
    let after = metric(&ctx, "ssh_sessions_refused_total");
    ensure!(after >= before + 2, "refused {before} → {after}");
    Ok(())
}

async fn shell_on_a_pty(ctx: Arc<Ctx>) -> TestResult {
    let mut command = ctx.ssh(PASSWORD, &good_user(), &["-tt", "127.0.0.1"]);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| format!("spawn: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    let mut stdout = child.stdout.take().ok_or("stdout")?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // sshpass owns the password prompt; the shell then reads our lines.
    stdin
        .write_all(b"tty; echo idx=$CF_INSTANCE_INDEX; exit 5\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let read_all = async {
        loop {
            match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_all)
        .await
        .map_err(|_| "shell did not end")?;
    let status = child.wait().await.map_err(|e| format!("wait: {e}"))?;
    let text = String::from_utf8_lossy(&seen).into_owned();
    ensure!(status.code() == Some(5), "status {status:?}: {text}");
    ensure!(text.contains("/dev/pts/"), "no terminal: {text}");
    ensure!(text.contains("idx=0"), "{text}");
    Ok(())
}

async fn local_forward_reaches_the_containers_loopback(ctx: Arc<Ctx>) -> TestResult {
    let local = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let local_port = local.local_addr().map_err(|e| e.to_string())?.port();
    drop(local);
    // Not reachable from the host directly.
    ensure!(
        tokio::net::TcpStream::connect(("127.0.0.1", 8123))
            .await
            .is_err(),
        "port 8123 answers on the host"
    );
    let forward = format!("{local_port}:127.0.0.1:8123");
    let mut command = ctx.ssh(
        PASSWORD,
        &good_user(),
        &[
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-L",
            &forward,
            "127.0.0.1",
        ],
    );
    command.stdin(Stdio::null()).stdout(Stdio::null());
    let mut child = command.spawn().map_err(|e| format!("spawn: {e}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let line = loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", local_port)).await {
            let mut line = String::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut line))
                .await;
            if !line.is_empty() {
                break line;
            }
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill().await;
            return Err("the forward never answered".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill().await;
    ensure!(line == "inside\n", "{line:?}");
    Ok(())
}

async fn scp_copies_a_file_out(ctx: Arc<Ctx>) -> TestResult {
    let dest = ctx.scratch.join("copied");
    let mut command = tokio::process::Command::new("sshpass");
    command
        .args(["-p", PASSWORD, "scp", "-F", "/dev/null"])
        .args(["-P", &ctx.port.to_string()])
        .args(common_options(&good_user()))
        .arg("127.0.0.1:/home/vcap/app/file")
        .arg(&dest)
        .kill_on_drop(true);
    let (code, _, err) = output(command).await?;
    ensure!(code == 0, "scp status {code}: {err}");
    let copied = std::fs::read_to_string(&dest).map_err(|e| format!("read copy: {e}"))?;
    ensure!(copied == "app-file-content\n", "{copied:?}");
    Ok(())
}

async fn sftp_lists_and_fetches(ctx: Arc<Ctx>) -> TestResult {
    let dest = ctx.scratch.join("via-sftp");
    // Commands on stdin rather than `-b`, which forbids password authentication.
    let commands = format!("pwd\nls\nget /home/vcap/app/file {}\nbye\n", dest.display());
    let mut command = tokio::process::Command::new("sshpass");
    command
        .args(["-p", PASSWORD, "sftp", "-F", "/dev/null"])
        .args(["-P", &ctx.port.to_string()])
        .args(common_options(&good_user()))
        .arg("127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| format!("spawn sftp: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    stdin
        .write_all(commands.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .map_err(|_| "sftp did not finish")?
        .map_err(|e| format!("sftp: {e}"))?;
    let code = out.status.code().unwrap_or(-1);
    let (out, err) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    ensure!(code == 0, "sftp status {code}: {out} {err}");
    ensure!(out.contains("/home/vcap/app"), "{out}");
    let copied = std::fs::read_to_string(&dest).map_err(|e| format!("read copy: {e}"))?;
    ensure!(copied == "app-file-content\n", "{copied:?}");
    Ok(())
}

async fn remote_forwarding_is_refused(ctx: Arc<Ctx>) -> TestResult {
    let mut command = ctx.ssh(
        PASSWORD,
        &good_user(),
        &[
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            "9999:127.0.0.1:22",
            "127.0.0.1",
        ],
    );
    command.arg("echo should-not-run");
    let (code, out, _) = output(command).await?;
    ensure!(code == 255, "status {code}");
    ensure!(!out.contains("should-not-run"), "{out}");
    Ok(())
}

/// Sessions with and without a terminal at the same time each end with their own status.
async fn concurrent_sessions_each_end(ctx: Arc<Ctx>) -> TestResult {
    let run = |tty: bool, code: u8| {
        let mut extra = vec![];
        if tty {
            extra.push("-tt");
        }
        extra.push("127.0.0.1");
        let mut command = ctx.ssh(PASSWORD, &good_user(), &extra);
        command.arg(format!("sleep 0.3; echo session-{code}; exit {code}"));
        output(command)
    };
    let (a, b, c, d) = tokio::join!(run(true, 11), run(false, 12), run(true, 13), run(false, 14));
    for (result, code) in [(a, 11), (b, 12), (c, 13), (d, 14)] {
        let (status, out, err) = result?;
        ensure!(
            status == code,
            "session {code}: status {status}, {out:?} {err:?}"
        );
        ensure!(
            out.contains(&format!("session-{code}")),
            "session {code}: {out:?}"
        );
    }
    Ok(())
}

/// A client that goes away takes its process with it, and the logs say so.
async fn disconnect_hangs_up_and_logs(ctx: Arc<Ctx>) -> TestResult {
    let mut command = ctx.ssh(PASSWORD, &good_user(), &["127.0.0.1"]);
    command
        .arg("echo started; exec sleep 1000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = command.spawn().map_err(|e| format!("spawn: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("stdout")?;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(60), stdout.read(&mut buf))
        .await
        .map_err(|_| "no output")?
        .map_err(|e| e.to_string())?;
    ensure!(buf[..n].starts_with(b"started"), "{:?}", &buf[..n]);
    ensure!(
        !exec_processes(&ctx.state_dir).is_empty(),
        "no runc exec seen"
    );
    let ended_before = ctx.authorizer.ended.lock().map(|e| e.len()).unwrap_or(0);
    child.kill().await.map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ended = ctx.authorizer.ended.lock().map(|e| e.len()).unwrap_or(0);
        if exec_processes(&ctx.state_dir).is_empty() && ended > ended_before {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "still running: {:?}, ended {ended}",
                exec_processes(&ctx.state_dir)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = ctx.ssh_lines_now();
    ensure!(
        lines
            .iter()
            .any(|l| l.starts_with("Successful remote access by 127.0.0.1:")),
        "{lines:?}"
    );
    ensure!(
        lines
            .iter()
            .any(|l| l.starts_with("Remote access ended for 127.0.0.1:")),
        "{lines:?}"
    );
    Ok(())
}

/// A second proxy with short limits: silent, garbage-sending and idle clients are cut off,
/// and none of them stops it from serving.
async fn silent_garbage_and_idle_clients_are_dropped(ctx: Arc<Ctx>) -> TestResult {
    let mut config = SshProxyConfig::new(ctx.scratch.join("keys/host_key"));
    config.auth_timeout = Duration::from_secs(3);
    config.idle_timeout = Duration::from_secs(2);
    let proxy = SshProxy::new(
        config,
        ctx.authorizer.clone(),
        ctx.access.clone(),
        ctx.logs.clone(),
    )
    .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        proxy
            .serve(listener, async {
                let _ = stop_rx.await;
            })
            .await
    });
    let result = short_limits(addr).await;
    let _ = stop_tx.send(());
    let stopped = tokio::time::timeout(Duration::from_secs(30), server).await;
    result?;
    ensure!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "second proxy: {stopped:?}"
    );
    Ok(())
}

async fn short_limits(addr: SocketAddr) -> TestResult {
    let mut garbage = b"SSH-2.0-hostile\r\n".to_vec();
    garbage.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let no_banner = vec![b'A'; 300_000];
    for (what, input) in [
        ("silent", Vec::new()),
        ("garbage", garbage),
        ("no banner", no_banner),
    ] {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{what}: connect: {e}"))?;
        if !input.is_empty() {
            // The proxy may hang up before taking it all.
            let _ = stream.write_all(&input).await;
        }
        let mut seen = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(15), async {
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        ensure!(ended.is_ok(), "{what} client was not disconnected");
        ensure!(
            seen.starts_with(b"SSH-2.0-"),
            "{what}: {:?}",
            String::from_utf8_lossy(&seen)
        );
    }
    // Logged in but idle (no channel traffic): closed after the idle limit.
    let mut command = tokio::process::Command::new("sshpass");
    command
        .args(["-p", PASSWORD, "ssh", "-F", "/dev/null", "-N"])
        .args(["-p", &addr.port().to_string()])
        .args(common_options(&good_user()))
        .arg("127.0.0.1")
        .kill_on_drop(true);
    let started = tokio::time::Instant::now();
    let (code, _, err) = output(command).await?;
    ensure!(code == 255, "idle ssh status {code}: {err}");
    ensure!(
        started.elapsed() >= Duration::from_secs(2),
        "closed before the idle limit: {err}"
    );
    // The proxy still serves.
    let mut command = tokio::process::Command::new("sshpass");
    command
        .args(["-p", PASSWORD, "ssh", "-F", "/dev/null"])
        .args(["-p", &addr.port().to_string()])
        .args(common_options(&good_user()))
        .args(["127.0.0.1", "echo still-serving"])
        .kill_on_drop(true);
    let (code, out, err) = output(command).await?;
    ensure!(
        code == 0 && out == "still-serving\n",
        "{code} {out:?} {err}"
    );
    Ok(())
}

impl Ctx {
    fn ssh_lines_now(&self) -> Vec<String> {
        self.logs.ssh_lines()
    }
}

fn metric(ctx: &Ctx, name: &str) -> u64 {
    let mut text = String::new();
    if let Ok(registry) = ctx.registry.lock() {
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    }
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Host processes whose command line mentions `state_dir` and `exec` (our `runc exec`s).
fn exec_processes(state_dir: &Path) -> Vec<String> {
    let needle = state_dir.display().to_string();
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let line = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if line.contains(&needle) && line.contains(" exec ") {
                found.push(line);
            }
        }
    }
    found
}

type TestFn =
    fn(Arc<Ctx>) -> std::pin::Pin<Box<dyn std::future::Future<Output = TestResult> + Send>>;

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), (|ctx| Box::pin($name(ctx))) as TestFn)),*]
    };
}

async fn run(tests: Vec<(&'static str, TestFn)>) -> Vec<(&'static str, TestResult)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("containers");
    let stack = prepare_default_stack(&dir.path().join("stack")).expect("default stack");
    let mut config = ManagerConfig::new(&state_dir, std::env::current_exe().expect("exe"));
    config.prefix = "iss1".into();
    config.bridge = "iss1br".into();
    config.subnet = "10.251.1.0/24".into();
    let manager = ContainerManager::start(config).await.expect("manager");
    let results = with_container(&manager, stack, dir.path(), &state_dir, tests).await;
    if let Err(e) = manager.shutdown().await {
        eprintln!("manager shutdown: {e}");
    }
    results
}

async fn with_container(
    manager: &Arc<ContainerManager>,
    stack: ingot_containers::Stack,
    dir: &Path,
    state_dir: &Path,
    tests: Vec<(&'static str, TestFn)>,
) -> Vec<(&'static str, TestResult)> {
    let spec = ContainerSpec {
        id: CONTAINER.into(),
        hostname: "ssh-test".into(),
        stack,
        layers: vec![],
        bind_mounts: vec![],
        process: ProcessSpec {
            args: vec!["sh".into(), "-c".into(), INIT.into()],
            env: vec![],
            cwd: "/home/vcap".into(),
            uid: 2000,
            gid: 2000,
        },
        limits: Limits {
            memory_bytes: 512 << 20,
            pids: 256,
            cpu_shares: 512,
            disk_bytes: None,
        },
        network: true,
        egress: vec![],
    };
    let container = match manager.create(spec).await {
        Ok(c) => c,
        Err(e) => {
            return tests
                .iter()
                .map(|(n, _)| (*n, Err(format!("create: {e}"))))
                .collect()
        }
    };
    drop(container);
    // The init's listener must be up before the forwarding test.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ingot_containers::connect_in_netns(manager, CONTAINER, 8123)
        .await
        .is_err()
    {
        if tokio::time::Instant::now() > deadline {
            return tests
                .iter()
                .map(|(n, _)| (*n, Err("init never listened".into())))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let logs = Arc::new(Collect::default());
    let access = Arc::new(ContainerAccess::new(manager.clone()));
    let authorizer = Arc::new(TestAuthorizer::default());
    let mut proxy_config = SshProxyConfig::new(dir.join("keys/host_key"));
    proxy_config.auth_timeout = Duration::from_secs(20);
    let proxy = SshProxy::new(
        proxy_config,
        authorizer.clone(),
        access.clone(),
        logs.clone(),
    )
    .expect("proxy");
    let mut registry = prometheus_client::registry::Registry::default();
    proxy.register_metrics(&mut registry);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        proxy
            .serve(listener, async {
                let _ = stop_rx.await;
            })
            .await
    });
    let ctx = Arc::new(Ctx {
        port,
        logs,
        authorizer,
        registry: Arc::new(Mutex::new(registry)),
        scratch: dir.to_path_buf(),
        state_dir: state_dir.to_path_buf(),
        access,
    });
    let mut results = Vec::new();
    for (name, test) in tests {
        // A panic in a test is its failure, not the end of the run (and of the cleanup).
        let outcome = tokio::spawn(test(ctx.clone())).await;
        let result = outcome.unwrap_or_else(|e| Err(format!("panicked: {e}")));
        println!(
            "test {name} ... {}",
            if result.is_ok() { "ok" } else { "FAILED" }
        );
        results.push((name, result));
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(30), server).await {
        Ok(Ok(Ok(()))) => {}
        other => results.push(("proxy_shuts_down", Err(format!("{other:?}")))),
    }
    // Everything a session started is gone once the proxy has stopped.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = exec_processes(state_dir);
        if left.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            results.push(("no_session_process_left", Err(format!("{left:?}"))));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    results
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("internal") {
        std::process::exit(run_internal(&args[2..]));
    }
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
    let tests: Vec<(&'static str, TestFn)> = tests![
        echo_prints_the_instance_index,
        exit_status_reaches_the_client,
        a_wrong_password_is_refused,
        shell_on_a_pty,
        local_forward_reaches_the_containers_loopback,
        scp_copies_a_file_out,
        sftp_lists_and_fetches,
        remote_forwarding_is_refused,
        concurrent_sessions_each_end,
        disconnect_hangs_up_and_logs,
        silent_garbage_and_idle_clients_are_dropped,
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
    if selected.is_empty() {
        println!("running 0 tests");
        return;
    }
    println!("running {} tests", selected.len());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let results = runtime.block_on(run(selected));
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    for (name, result) in &failed {
        if let Err(message) = result {
            println!("\n---- {name} ----\n{message}");
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        results.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
