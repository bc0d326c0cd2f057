//! TCP routes as a client sees them: raw bytes through a routed port to an
//! echo backend, round robin, failover past refusing backends, and the
//! port closing with its last route while open connections carry on.

use std::net::SocketAddr;
use std::time::Duration;

use ingot_router::{Endpoint, TcpRouter, TcpRouterConfig};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A task aborted when the test lets go of it, pass or fail.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A raw TCP backend that greets with `<name>\n`, then echoes.
async fn echo_backend(name: &'static str) -> (SocketAddr, Task) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if stream
                    .write_all(format!("{name}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, Task(task))
}

/// A port nothing listens on right now.
async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

fn endpoint(addr: SocketAddr, instance: &str) -> Endpoint {
    Endpoint {
        addr,
        app_guid: "tcp-app".into(),
        process_guid: "tcp-app-web".into(),
        instance_guid: instance.into(),
        index: 0,
    }
}

fn router() -> (TcpRouter, Registry) {
    let router = TcpRouter::new(TcpRouterConfig {
        listen_ip: [127, 0, 0, 1].into(),
        ..TcpRouterConfig::default()
    });
    let mut registry = Registry::default();
    router.register_metrics(&mut registry);
    (router, registry)
}

fn metric(registry: &Registry, line_prefix: &str) -> Option<f64> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Connects through the router, reads the backend's greeting, and checks
/// that bytes echo; returns the greeting and the open connection.
async fn round_trip(addr: SocketAddr, text: &str) -> (String, TcpStream) {
    let mut stream = TcpStream::connect(addr).await.expect("connect routed port");
    let greeting = read_line(&mut stream).await;
    echo(&mut stream, text).await;
    (greeting, stream)
}

async fn echo(stream: &mut TcpStream, text: &str) {
    stream
        .write_all(format!("{text}\n").as_bytes())
        .await
        .expect("write");
    assert_eq!(read_line(stream).await, text);
}

async fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut byte).await {
                Ok(1) if byte[0] != b'\n' => line.push(byte[0]),
                _ => return,
            }
        }
    })
    .await
    .expect("a line in time");
    String::from_utf8_lossy(&line).into_owned()
}

#[tokio::test]
async fn a_tcp_route_carries_raw_bytes_to_its_backends_round_robin() {
    let (a, _a) = echo_backend("a").await;
    let (b, _b) = echo_backend("b").await;
    let (router, registry) = router();
    let port = free_port().await;
    let addr = router.register(port, endpoint(a, "a0")).expect("listen");
    assert_eq!(addr.port(), port);
    router
        .register(port, endpoint(b, "b0"))
        .expect("same listener");
    let mut seen = Vec::new();
    for i in 0..4 {
        let (greeting, _conn) = round_trip(addr, &format!("hello {i}")).await;
        seen.push(greeting);
    }
    assert_eq!(seen, ["a", "b", "a", "b"]);
    assert_eq!(
        metric(
            &registry,
            &format!("tcp_router_connections_total{{port=\"{port}\"}}")
        ),
        Some(4.0)
    );
    assert_eq!(metric(&registry, "tcp_router_listeners"), Some(1.0));
    router.shutdown();
}

#[tokio::test]
async fn refused_backends_are_passed_over_and_then_skipped() {
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    };
    let (live, _live) = echo_backend("live").await;
    let (router, registry) = router();
    let port = free_port().await;
    let addr = router
        .register(port, endpoint(dead, "dead"))
        .expect("listen");
    router
        .register(port, endpoint(live, "live"))
        .expect("listen");
    for i in 0..3 {
        let (greeting, _conn) = round_trip(addr, &format!("try {i}")).await;
        assert_eq!(greeting, "live");
    }
    // Only the first connection tried the dead backend.
    assert_eq!(
        metric(&registry, "tcp_router_backend_errors_total{kind=\"dial\"}"),
        Some(1.0)
    );
    router.shutdown();
}

#[tokio::test]
async fn a_port_closes_with_its_last_route_but_open_connections_carry_on() {
    let (a, _a) = echo_backend("a").await;
    let (router, registry) = router();
    let port = free_port().await;
    let addr = router.register(port, endpoint(a, "a0")).expect("listen");
    let (_, mut open) = round_trip(addr, "before").await;
    router.unregister(port, "a0");
    assert!(router.routes().is_empty());
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the port stayed open without routes");
    assert_eq!(metric(&registry, "tcp_router_listeners"), Some(0.0));
    echo(&mut open, "after").await;
    // Routing the port again opens it again.
    router
        .register(port, endpoint(a, "a0"))
        .expect("listen again");
    let (greeting, _) = round_trip(addr, "again").await;
    assert_eq!(greeting, "a");
    router.shutdown();
    let mut buf = [0u8; 8];
    let closed = tokio::time::timeout(Duration::from_secs(10), open.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "shutdown left a connection open"
    );
}
