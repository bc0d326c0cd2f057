//! The egress firewall against real runc containers and the real kernel (run as root):
//! what a container can connect to by default and under rules, rule changes on a running
//! container, and that destroy, a crash of the platform and shutdown leave no nft state.
//!
//! The container manager runs `<self_exe> internal shim …`; as in `tests/exec.rs`, the shim
//! entry point runs from `.init_array` before libtest's `main`.
//!
//! Each test has its own prefix `icf<n>`, bridge, subnet `10.250.<n>.0/24`, and a network
//! namespace `icfo<n>` behind a veth (`10.249.<n>.2`, "the outside world") whose host end
//! also holds `198.51.100.<n>/32` (another address of the host).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ingot_containers::{
    exec, prepare_default_stack, run_internal, ContainerManager, ContainerSpec, Destination,
    EgressRule, ExecSpec, Limits, ManagerConfig, PortRange, ProcessSpec, Protocol, Stack,
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
        // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        std::process::exit(run_internal(&args[2..]));
    }
}

/// Every container's init: answers `pong` on port 8080 of all its addresses.
const SERVER: &str = "import socket\n\
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('0.0.0.0', 8080)); s.listen(16)\n\
while True:\n    c, _ = s.accept(); c.sendall(b'pong\\n'); c.close()\n";

/// Run inside a container with targets `proto:host:port`; prints `target result` per line,
/// the result being `ok`, `timeout` or the errno name (`EHOSTUNREACH` when rejected).
const PROBE: &str = r#"
import errno, socket, sys
for t in sys.argv[1:]:
    proto, host, port = t.split(':')
    try:
        if proto == 'tcp':
            s = socket.create_connection((host, int(port)), timeout=5)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(5)
            s.connect((host, int(port)))
            s.send(b'ping')
        print(t, 'ok' if s.recv(16) else 'empty', flush=True)
    except socket.timeout:
        print(t, 'timeout', flush=True)
    except OSError as e:
        print(t, errno.errorcode.get(e.errno, e.errno), flush=True)
"#;

/// A manager on its own prefix, bridge and subnet, with the outside namespace; everything is removed on drop, even when the test fails.
struct Env {
    n: u8,
    manager: Option<Arc<ContainerManager>>,
    stack: Stack,
    state_dir: PathBuf,
    outside_ns: Outside,
    _dir: tempfile::TempDir,
}

fn config_for(n: u8, state_dir: &Path) -> ManagerConfig {
    let mut config = ManagerConfig::new(state_dir, std::env::current_exe().expect("exe"));
    config.prefix = format!("icf{n}");
    config.bridge = format!("icf{n}br");
    config.subnet = format!("10.250.{n}.0/24");
    config
}

impl Env {
    async fn new(n: u8) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("containers");
        let stack = prepare_default_stack(&dir.path().join("stack")).expect("default stack");
        let outside = Outside::create(n);
        let manager = ContainerManager::start(config_for(n, &state_dir))
            .await
            .expect("start manager");
        Env {
            n,
            manager: Some(manager),
            stack,
            state_dir,
            outside_ns: outside,
            _dir: dir,
        }
    }

    fn manager(&self) -> &Arc<ContainerManager> {
        self.manager.as_ref().expect("manager")
    }

    fn prefix(&self) -> String {
        format!("icf{}", self.n)
    }

    /// The bridge's address: the host as containers see it.
    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 250, self.n, 1)
    }

    /// Another address of the host, not on the bridge (on the outside veth's host end).
    fn host_other(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, self.n)
    }

    /// The outside namespace's address.
    fn outside(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 249, self.n, 2)
    }

    /// Creates a container serving `pong` on 8080 with `egress`; returns once the host
    /// reaches that port (the router's path into a container).
    async fn server(&self, id: &str, egress: Vec<EgressRule>) -> Ipv4Addr {
        let spec = ContainerSpec {
            id: id.into(),
            hostname: id.into(),
            stack: self.stack.clone(),
            layers: vec![],
            bind_mounts: vec![],
            process: ProcessSpec {
                args: vec!["python3".into(), "-c".into(), SERVER.into()],
                env: vec![],
                cwd: "/".into(),
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
            egress,
        };
        let container = self.manager().create(spec).await.expect("create container");
        let ip = container.ip.expect("container address");
        // Its output is not needed; it must not fill a pipe and block.
        drop(container);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match host_fetch(ip, 8080).await {
                Ok(reply) => {
                    assert_eq!(reply, "pong\n", "host into {id}");
                    return ip;
                }
                Err(e) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "the host never reached {id} at {ip}:8080: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the probe in container `id` for `targets`; returns each target's result.
    async fn probe(&self, id: &str, targets: &[String]) -> Vec<(String, String)> {
        let mut args = vec!["python3".to_string(), "-c".into(), PROBE.into()];
        args.extend(targets.iter().cloned());
        let spec = ExecSpec {
            args,
            env: vec![],
            cwd: "/".into(),
            tty: None,
        };
        let mut process = exec(self.manager(), id, spec).await.expect("exec probe");
        let mut out = String::new();
        let mut err = String::new();
        let mut stdout = process.stdout.take().expect("stdout");
        let mut stderr = process.stderr.take().expect("stderr");
        let (read_out, read_err) = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        read_out.expect("read stdout");
        read_err.expect("read stderr");
        let status = process.wait().await.expect("wait probe");
        assert_eq!(status.code, 0, "probe failed: {out} {err}");
        let results: Vec<(String, String)> = out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(t, r)| (t.to_string(), r.to_string()))
            .collect();
        assert_eq!(results.len(), targets.len(), "probe said {out:?} {err:?}");
        results
    }

    /// Asserts which of `expected` targets container `id` reaches (`ok`) and which it is
    /// refused at once (the errno of the firewall's reject; never a timeout).
    async fn expect_reach(&self, id: &str, expected: &[(&str, String)]) {
        let targets: Vec<String> = expected.iter().map(|(_, t)| t.clone()).collect();
        let results = self.probe(id, &targets).await;
        for ((want, target), (seen_target, result)) in expected.iter().zip(&results) {
            assert_eq!(target, seen_target);
            assert_eq!(result, want, "{id} → {target}: all results {results:?}");
        }
    }

    /// The chain names in the manager's table and its `egress` map's text.
    fn nft_state(&self) -> (Vec<String>, String) {
        let table = nft(&["list", "table", "ip", &self.prefix()]);
        let chains = table
            .lines()
            .filter_map(|l| l.trim().strip_prefix("chain "))
            .map(|l| l.trim_end_matches(" {").to_string())
            .filter(|c| c.starts_with("egress_"))
            .collect();
        let map = nft(&["list", "map", "ip", &self.prefix(), "egress"]);
        (chains, map)
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

fn nft(args: &[&str]) -> String {
    let out = Command::new("nft").args(args).output().expect("run nft");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nft list tables` lines naming `prefix`'s table.
fn tables_of(prefix: &str) -> Vec<String> {
    nft(&["list", "tables"])
        .lines()
        .filter(|l| l.split_whitespace().last() == Some(prefix))
        .map(str::to_string)
        .collect()
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace behind a veth from the host (`10.249.<n>.1` ↔ `.2`).
struct Outside {
    netns: String,
    host_veth: String,
}

impl Outside {
    fn create(n: u8) -> Outside {
        let outside = Outside {
            netns: format!("icfo{n}"),
            host_veth: format!("icfo{n}h"),
        };
        let _ = Command::new("ip")
            .args(["link", "del", &outside.host_veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &outside.netns])
            .output();
        let (ns, host) = (outside.netns.as_str(), outside.host_veth.as_str());
        let peer = format!("icfo{n}p");
        ip(&["netns", "add", ns]);
        ip(&["link", "add", host, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", ns]);
        ip(&["addr", "add", &format!("10.249.{n}.1/30"), "dev", host]);
        // Another address of the host, on an interface that is not the bridge.
        ip(&["addr", "add", &format!("198.51.100.{n}/32"), "dev", host]);
        ip(&["link", "set", host, "up"]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("10.249.{n}.2/30"),
            "dev",
            &peer,
        ]);
        ip(&["-n", ns, "link", "set", &peer, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        outside
    }

    /// Runs `bind` on a thread that joined the namespace, so the socket lives there.
    fn in_netns<T: Send + 'static>(
        &self,
        bind: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> T {
        let path = format!("/run/netns/{}", self.netns);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            bind().expect("bind in netns")
        })
        .join()
        .expect("netns thread")
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

/// Serves `hi` on a TCP listener until the test's runtime ends; returns its port.
fn serve_tcp(listener: std::net::TcpListener) -> u16 {
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("local addr").port();
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(b"hi\n").await;
        }
    });
    port
}

/// Echoes UDP datagrams until the test's runtime ends; returns its port.
fn serve_udp(socket: std::net::UdpSocket) -> u16 {
    socket.set_nonblocking(true).expect("nonblocking");
    let port = socket.local_addr().expect("local addr").port();
    let socket = tokio::net::UdpSocket::from_std(socket).expect("tokio socket");
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], peer).await;
        }
    });
    port
}

fn tcp_listen(ip: Ipv4Addr) -> u16 {
    serve_tcp(std::net::TcpListener::bind((ip, 0)).expect("bind"))
}

async fn host_fetch(ip: Ipv4Addr, port: u16) -> Result<String, String> {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(SocketAddr::from((ip, port))),
    )
    .await
    .map_err(|_| "timeout".to_string())?
    .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    Ok(reply)
}

fn rule(protocol: Protocol, destination: &str, ports: &str) -> EgressRule {
    EgressRule {
        protocol,
        destinations: Destination::parse_list(destination).expect("destination"),
        ports: if ports.is_empty() {
            vec![]
        } else {
            PortRange::parse_list(ports).expect("ports")
        },
        log: false,
    }
}

fn tcp(ip: Ipv4Addr, port: u16) -> String {
    format!("tcp:{ip}:{port}")
}

fn udp(ip: Ipv4Addr, port: u16) -> String {
    format!("udp:{ip}:{port}")
}

const OK: &str = "ok";
/// A denied TCP connection is reset by the firewall.
const REFUSED: &str = "ECONNREFUSED";
/// A denied UDP datagram gets ICMP "administratively prohibited".
const PROHIBITED: &str = "EHOSTUNREACH";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_container_reaches_nothing_but_the_host_reaches_it() {
    let env = Env::new(1).await;
    let gateway_port = tcp_listen(env.gateway());
    let other_port = tcp_listen(env.host_other());
    let outside_tcp = serve_tcp(
        env.outside_ns
            .in_netns(|| std::net::TcpListener::bind((Ipv4Addr::new(10, 249, 1, 2), 0))),
    );
    let outside_udp = serve_udp(
        env.outside_ns
            .in_netns(|| std::net::UdpSocket::bind((Ipv4Addr::new(10, 249, 1, 2), 0))),
    );
    // Both containers answer the host: connections into a container are never blocked.
    let _a = env.server("a", vec![]).await;
    let b = env.server("b", vec![]).await;
    env.expect_reach(
        "a",
        &[
            (REFUSED, tcp(env.gateway(), gateway_port)),
            (REFUSED, tcp(env.gateway(), 9000)),
            (REFUSED, tcp(env.host_other(), other_port)),
            (REFUSED, tcp(b, 8080)),
            (REFUSED, tcp(env.outside(), outside_tcp)),
            (PROHIBITED, udp(env.outside(), outside_udp)),
            (PROHIBITED, udp(env.gateway(), 53)),
        ],
    )
    .await;
    // The listeners are there: the host itself reaches them.
    assert_eq!(
        host_fetch(env.gateway(), gateway_port).await.as_deref(),
        Ok("hi\n")
    );
    assert_eq!(
        host_fetch(env.host_other(), other_port).await.as_deref(),
        Ok("hi\n")
    );
    assert_eq!(
        host_fetch(env.outside(), outside_tcp).await.as_deref(),
        Ok("hi\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_open_what_they_name_and_change_without_restart() {
    let env = Env::new(2).await;
    let gateway_port = tcp_listen(env.gateway());
    let gateway_other_port = tcp_listen(env.gateway());
    let other_port = tcp_listen(env.host_other());
    let outside_tcp = serve_tcp(
        env.outside_ns
            .in_netns(|| std::net::TcpListener::bind((Ipv4Addr::new(10, 249, 2, 2), 0))),
    );
    let outside_udp = serve_udp(
        env.outside_ns
            .in_netns(|| std::net::UdpSocket::bind((Ipv4Addr::new(10, 249, 2, 2), 0))),
    );
    let gateway = env.gateway().to_string();
    // b may reach the gateway's second port; a's changes below must not disturb that.
    let b = env
        .server(
            "b",
            vec![rule(
                Protocol::Tcp,
                &gateway,
                &gateway_other_port.to_string(),
            )],
        )
        .await;
    let a = env
        .server(
            "a",
            vec![rule(Protocol::Tcp, &gateway, &gateway_port.to_string())],
        )
        .await;
    let everything = |a_expects: [&'static str; 6]| {
        [
            tcp(env.gateway(), gateway_port),
            tcp(env.gateway(), gateway_other_port),
            tcp(env.host_other(), other_port),
            tcp(env.outside(), outside_tcp),
            udp(env.outside(), outside_udp),
            tcp(b, 8080),
        ]
        .into_iter()
        .zip(a_expects)
        .map(|(target, want)| (want, target))
        .collect::<Vec<_>>()
    };
    // Only the one address and port of its rule.
    env.expect_reach(
        "a",
        &everything([OK, REFUSED, REFUSED, REFUSED, PROHIBITED, REFUSED]),
    )
    .await;

    // New rules on the running container: a CIDR (another host address), a range (the
    // outside), UDP to one port, another container; the first rule is gone.
    let mut logged = rule(Protocol::Tcp, "10.249.2.1-10.249.2.3", "1-1023,1024-65535");
    logged.log = true;
    env.manager()
        .set_egress(
            "a",
            &[
                rule(Protocol::Tcp, "198.51.100.0/24", &other_port.to_string()),
                logged,
                rule(
                    Protocol::Udp,
                    &env.outside().to_string(),
                    &outside_udp.to_string(),
                ),
                rule(Protocol::Tcp, &format!("{b}"), "8080"),
            ],
        )
        .await
        .expect("set egress");
    env.expect_reach("a", &everything([REFUSED, REFUSED, OK, OK, OK, OK]))
        .await;
    let (chains, _) = env.nft_state();
    assert_eq!(chains, ["egress_b", "egress_a"]);
    let a_chain = nft(&["list", "chain", "ip", &env.prefix(), "egress_a"]);
    assert!(
        a_chain.contains("log prefix \"icf2-egress a \""),
        "{a_chain}"
    );
    // The logged rule's connection is in the kernel log, with the container's address.
    let kernel_log = Command::new("dmesg").output().expect("dmesg");
    let kernel_log = String::from_utf8_lossy(&kernel_log.stdout);
    assert!(
        kernel_log.lines().any(|l| l.contains("icf2-egress a ")
            && l.contains(&format!("SRC={a} DST={}", env.outside()))
            && l.contains(&format!("DPT={outside_tcp}"))),
        "no log line for a's connection to the outside"
    );
    // b's rule still holds, and b still reaches nothing else.
    env.expect_reach(
        "b",
        &[
            (OK, tcp(env.gateway(), gateway_other_port)),
            (REFUSED, tcp(env.gateway(), gateway_port)),
            (REFUSED, tcp(env.outside(), outside_tcp)),
        ],
    )
    .await;

    // "all" to everywhere, then nothing again.
    env.manager()
        .set_egress("a", &[rule(Protocol::All, "0.0.0.0/0", "")])
        .await
        .expect("set egress");
    env.expect_reach("a", &everything([OK, OK, OK, OK, OK, OK]))
        .await;
    env.manager()
        .set_egress("a", &[])
        .await
        .expect("set egress");
    env.expect_reach(
        "a",
        &everything([REFUSED, REFUSED, REFUSED, REFUSED, PROHIBITED, REFUSED]),
    )
    .await;
    assert!(
        env.manager().set_egress("nosuch", &[]).await.is_err(),
        "an unknown container is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_crash_and_shutdown_leave_no_rules_behind() {
    let prefix = "icf3";
    let tables_before = tables_of(prefix);
    let mut env = Env::new(3).await;
    let gateway_port = tcp_listen(env.gateway());
    let allow = vec![rule(
        Protocol::Tcp,
        &env.gateway().to_string(),
        &gateway_port.to_string(),
    )];
    let a = env.server("a", allow.clone()).await;
    let b = env.server("b", allow).await;
    let (chains, map) = env.nft_state();
    assert_eq!(chains, ["egress_a", "egress_b"]);
    assert!(map.contains(&format!("{a} : jump egress_a")), "{map}");
    assert!(map.contains(&format!("{b} : jump egress_b")), "{map}");

    env.manager().destroy("a").await.expect("destroy a");
    let (chains, map) = env.nft_state();
    assert_eq!(chains, ["egress_b"]);
    assert!(!map.contains(&format!("{a} :")), "{map}");
    // The survivor keeps its rules.
    env.expect_reach("b", &[(OK, tcp(env.gateway(), gateway_port))])
        .await;

    // A crash: the manager goes away without shutdown, its container still running; the
    // next start with the same state removes the container and its chain.
    let crashed = env.manager.take().expect("manager");
    drop(crashed);
    env.manager = Some(
        ContainerManager::start(config_for(3, &env.state_dir))
            .await
            .expect("restart manager"),
    );
    let (chains, map) = env.nft_state();
    assert!(chains.is_empty(), "chains left after the crash: {chains:?}");
    assert!(!map.contains(" : jump "), "{map}");

    // A new container after the restart is firewalled as usual.
    env.server("c", vec![]).await;
    env.expect_reach("c", &[(REFUSED, tcp(env.gateway(), gateway_port))])
        .await;
    assert_eq!(env.nft_state().0, ["egress_c"]);

    let manager = env.manager.take().expect("manager");
    manager.shutdown().await.expect("shutdown");
    assert_eq!(tables_of(prefix), tables_before);
}
