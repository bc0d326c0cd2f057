//! `exec` and `connect_in_netns` against real runc containers (run as root).
//!
//! The container manager runs `<self_exe> internal shim …`. This binary uses libtest's own
//! `main`, so the shim entry point runs before it, from `.init_array`: when the process was
//! started as `… internal …` it becomes the shim and exits without reaching libtest.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ingot_containers::{
    connect_in_netns, exec, prepare_default_stack, run_internal, ContainerManager, ContainerSpec,
    ExecSpec, Limits, ManagerConfig, ProcessSpec, WindowSize,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[used]
#[link_section = ".init_array"]
static SHIM_ENTRY: extern "C" fn() = shim_entry;

extern "C" fn shim_entry() {
    let Ok(cmdline) = std::fs::read("/proc/self/cmdline") else {
        return;
    };
    let mut args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // The command line ends with a NUL, which leaves one empty piece.
    args.pop();
    if args.get(1).map(String::as_str) == Some("internal") {
        // As the binary's real main would: writes to a closed pipe fail instead of killing us.
        // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        std::process::exit(run_internal(&args[2..]));
    }
}

/// A manager on its own prefix, bridge and subnet with one running container; everything is
/// removed on drop, even when the test fails.
struct Env {
    manager: Option<Arc<ContainerManager>>,
    _dir: tempfile::TempDir,
}

const ID: &str = "exec1";

/// The container's init: makes the app directory and serves one line on its loopback only.
const INIT: &str = "mkdir -p /home/vcap/app && echo app-file > /home/vcap/app/file && \
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

impl Env {
    async fn new(n: u8) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("containers");
        let stack = prepare_default_stack(&dir.path().join("stack")).expect("default stack");
        let mut config = ManagerConfig::new(&state_dir, std::env::current_exe().expect("exe"));
        config.prefix = format!("ice{n}");
        config.bridge = format!("ice{n}br");
        config.subnet = format!("10.252.{n}.0/24");
        let manager = ContainerManager::start(config).await.expect("manager");
        let env = Env {
            manager: Some(manager),
            _dir: dir,
        };
        let spec = ContainerSpec {
            id: ID.into(),
            hostname: "exec-test".into(),
            stack,
            layers: vec![],
            bind_mounts: vec![],
            process: ProcessSpec {
                args: vec!["sh".into(), "-c".into(), INIT.into()],
                env: vec![("FROM_INIT".into(), "yes".into())],
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
        };
        let container = env.manager().create(spec).await.expect("create container");
        // The container's own output is not needed; it must not fill a pipe and block.
        drop(container);
        env.wait_for_listener().await;
        env
    }

    fn manager(&self) -> &Arc<ContainerManager> {
        self.manager.as_ref().expect("manager")
    }

    /// Polls until the init's listener answers inside the container.
    async fn wait_for_listener(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if connect_in_netns(self.manager(), ID, 8123).await.is_ok() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "listener never came up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(manager) = self.manager.take() {
            // Possibly inside the test's runtime: shut down on a fresh thread and runtime.
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

fn spec(args: &[&str], tty: Option<WindowSize>) -> ExecSpec {
    ExecSpec {
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![("CF_INSTANCE_INDEX".into(), "4".into())],
        cwd: "/home/vcap/app".into(),
        tty,
    }
}

/// Every file in the container's state directory whose name starts with `exec-`.
fn leftover_process_files(env: &Env) -> Vec<PathBuf> {
    let dir = env.manager().config().state_dir.join("containers").join(ID);
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("exec-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_exec_is_confined_like_the_app_and_returns_its_status() {
    let env = Env::new(41).await;
    let script = "read line; echo \"got $line in $(pwd) as $(id -u) idx=$CF_INSTANCE_INDEX init=${FROM_INIT:-none}\"; \
                  grep -E '^(NoNewPrivs|CapEff|Seccomp):' /proc/self/status; cat file; echo oops >&2; exit 7";
    let mut process = exec(env.manager(), ID, spec(&["sh", "-c", script], None))
        .await
        .expect("exec");
    let mut stdin = process.stdin.take().expect("stdin");
    stdin.write_all(b"hello\n").await.expect("write stdin");
    drop(stdin);
    let mut out = String::new();
    let mut err = String::new();
    let mut stdout = process.stdout.take().expect("stdout");
    let mut stderr = process.stderr.take().expect("stderr");
    let (a, b) = tokio::join!(
        stdout.read_to_string(&mut out),
        stderr.read_to_string(&mut err)
    );
    a.expect("stdout");
    b.expect("stderr");
    let status = process.wait().await.expect("wait");
    assert_eq!(status.code, 7, "stdout {out:?} stderr {err:?}");
    assert!(
        out.contains("got hello in /home/vcap/app as 2000 idx=4 init=none"),
        "{out}"
    );
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    // The container's seccomp filter applies (mode 2: filter).
    assert!(out.contains("Seccomp:\t2"), "{out}");
    // uid 2000 after exec keeps no effective capability.
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("app-file"), "{out}");
    assert_eq!(err, "oops\n");
    assert!(leftover_process_files(&env).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_on_a_pty_is_a_terminal_that_resizes() {
    let env = Env::new(42).await;
    // The shell polls its own terminal's size: runc copies ours to it on SIGWINCH.
    let script = "stty size; tty >/dev/null && echo is-a-tty; \
                  while [ \"$(stty size)\" != \"40 120\" ]; do sleep 0.05; done; echo resized; \
                  read line; echo \"line=$line\"; exit 3";
    let mut process = exec(
        env.manager(),
        ID,
        spec(
            &["sh", "-c", script],
            Some(WindowSize {
                cols: 100,
                rows: 30,
            }),
        ),
    )
    .await
    .expect("exec");
    let mut pty = process.pty.take().expect("pty");
    let mut seen = Vec::new();
    read_until(&mut pty, &mut seen, "is-a-tty").await;
    pty.resize(WindowSize {
        cols: 120,
        rows: 40,
    })
    .expect("resize");
    assert_eq!(
        pty.size().expect("size"),
        WindowSize {
            cols: 120,
            rows: 40
        }
    );
    read_until(&mut pty, &mut seen, "resized").await;
    pty.write_all(b"typed\r").await.expect("write pty");
    read_until(&mut pty, &mut seen, "\u{0}").await;
    let text = String::from_utf8_lossy(&seen).into_owned();
    let status = process.wait().await.expect("wait");
    assert_eq!(status.code, 3, "{text}");
    assert!(text.contains("30 100"), "{text}");
    assert!(text.contains("line=typed"), "{text}");
}

/// Reads the terminal into `seen` until it contains `needle`, or to its end for `"\0"`.
async fn read_until(pty: &mut ingot_containers::Pty, seen: &mut Vec<u8>, needle: &str) {
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(seen).contains(needle) {
        let n = tokio::time::timeout(Duration::from_secs(30), pty.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!("no {needle:?} in time: {:?}", String::from_utf8_lossy(seen))
            })
            .expect("read pty");
        if n == 0 {
            assert_eq!(
                needle,
                "\u{0}",
                "ended before {needle:?}: {:?}",
                String::from_utf8_lossy(seen)
            );
            return;
        }
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_in_netns_reaches_the_containers_loopback_only() {
    let env = Env::new(43).await;
    let mut stream = connect_in_netns(env.manager(), ID, 8123)
        .await
        .expect("connect inside");
    let mut line = String::new();
    stream.read_to_string(&mut line).await.expect("read");
    assert_eq!(line, "inside\n");
    // The same port on the host's loopback is not the container's.
    let outside = tokio::net::TcpStream::connect(("127.0.0.1", 8123)).await;
    assert!(outside.is_err(), "port 8123 answered on the host");
    // Nothing listens on another port inside: refused, with the port in the error.
    let err = connect_in_netns(env.manager(), ID, 8124)
        .await
        .expect_err("nothing on 8124");
    assert!(err.to_string().contains("8124"), "{err}");
    // A signal reaches the exec'd process through runc.
    let mut process = exec(env.manager(), ID, spec(&["sleep", "1000"], None))
        .await
        .expect("exec sleep");
    process.signal(nix::sys::signal::Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(30), process.wait())
        .await
        .expect("sleep ends after SIGTERM")
        .expect("wait");
    assert_eq!(status.code, 128 + libc::SIGTERM, "{status:?}");
}

/// Host pids whose command line is exactly `args`.
fn host_processes(args: &[&str]) -> Vec<i32> {
    let wanted: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if std::fs::read(entry.path().join("cmdline")).is_ok_and(|c| c == wanted) {
                found.push(pid);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_process_is_hung_up_and_killed_if_it_ignores_that() {
    let env = Env::new(44).await;
    // One process that dies of SIGHUP, one that ignores it.
    let mut polite = exec(env.manager(), ID, spec(&["sleep", "1231"], None))
        .await
        .expect("exec");
    let mut stubborn = exec(
        env.manager(),
        ID,
        spec(
            &["sh", "-c", "trap '' HUP; echo ready; exec sleep 1232"],
            None,
        ),
    )
    .await
    .expect("exec");
    let mut ready = [0u8; 6];
    let mut stdout = stubborn.stdout.take().expect("stdout");
    stdout.read_exact(&mut ready).await.expect("ready");
    assert_eq!(&ready, b"ready\n");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while host_processes(&["sleep", "1231"]).is_empty()
        || host_processes(&["sleep", "1232"]).is_empty()
    {
        assert!(tokio::time::Instant::now() < deadline, "sleeps never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(polite.stdin.take());
    drop(polite);
    drop(stubborn);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !host_processes(&["sleep", "1231"]).is_empty()
        || !host_processes(&["sleep", "1232"]).is_empty()
        || !leftover_process_files(&env).is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still there: {:?} {:?} {:?}",
            host_processes(&["sleep", "1231"]),
            host_processes(&["sleep", "1232"]),
            leftover_process_files(&env)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A container that does not run cannot be exec'd into, and the error names it.
    let err = exec(env.manager(), "no-such", spec(&["true"], None))
        .await
        .expect_err("no container");
    assert!(err.to_string().contains("no-such"), "{err}");
}
