//! TCP routes: an app serving a raw TCP echo on `$PORT`, reached through a
//! TCP route on the router's address, as `cf create-route DOMAIN --port N`
//! and `cf map-route APP DOMAIN --port N` set it up.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::platform::Platform;

const DOMAIN: &str = "tcp.apps.localhost";

/// A python3 echo server on `$PORT`: every byte read is written back.
const ECHO: &str = r#"import os, socketserver

class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)

socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer(("0.0.0.0", int(os.environ["PORT"])), Echo).serve_forever()
"#;

/// Sends `payload` to `addr` and reads as many bytes back; `Err` when the
/// connection fails or the answer differs.
fn echo(addr: SocketAddr, payload: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(payload)?;
    let mut back = vec![0; payload.len()];
    stream.read_exact(&mut back)?;
    Ok(back)
}

/// Whether connecting to `addr` is refused (nothing listens there).
fn refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

/// A port of the default reservable range (1024–1033) that nothing on the
/// router's address listens on now.
fn free_route_port(platform: &Platform) -> u16 {
    (1024..=1033)
        .find(|p| TcpListener::bind(SocketAddr::new(platform.router.ip(), *p)).is_ok())
        .expect("a free port in 1024-1033 on the router's address")
}

pub fn a_tcp_route_carries_raw_bytes(platform: &Platform, work: &Path) {
    let dir = work.join("tcpecho");
    std::fs::create_dir_all(&dir).expect("app dir");
    std::fs::write(dir.join("echo.py"), ECHO).expect("echo.py");
    std::fs::write(dir.join("Procfile"), "web: python3 echo.py\n").expect("Procfile");
    platform.cli(&[
        "push",
        "tcpecho",
        "-p",
        dir.to_str().expect("utf-8"),
        "-b",
        "binary_buildpack",
        "-m",
        "64M",
        "--no-route",
        "-u",
        "port",
    ]);

    let domains = platform.cli(&["domains"]);
    assert!(
        domains
            .lines()
            .any(|l| l.contains(DOMAIN) && l.contains("tcp")),
        "{domains}"
    );

    let port = free_route_port(platform);
    let port_text = port.to_string();
    let url = format!("{DOMAIN}:{port}");
    let created = platform.cli(&["create-route", DOMAIN, "--port", &port_text]);
    assert!(created.contains(&url), "{created}");
    // A port is reserved once.
    let again = platform.cli(&["create-route", DOMAIN, "--port", &port_text]);
    assert!(again.contains("already exists"), "{again}");
    // An HTTP domain takes no port.
    let http_port = platform.cli_fails(&["create-route", "apps.localhost", "--port", "1024"]);
    assert!(http_port.contains("do not support ports"), "{http_port}");

    platform.cli(&["map-route", "tcpecho", DOMAIN, "--port", &port_text]);
    let routes = platform.cli(&["routes"]);
    assert!(
        routes
            .lines()
            .any(|l| l.contains(&url) && l.contains("tcp") && l.contains("tcpecho")),
        "{routes}"
    );

    // Raw bytes, not text: every byte value, through the router's port.
    let addr = SocketAddr::new(platform.router.ip(), port);
    let payload: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    platform.wait_for(
        "the TCP route to echo through the router",
        Duration::from_secs(90),
        || echo(addr, &payload).is_ok_and(|back| back == payload),
    );
    // A second connection on the same route works as well.
    assert_eq!(
        echo(addr, b"\x00ingot\xff").expect("echo"),
        b"\x00ingot\xff"
    );

    // Unmapped: the router's port closes.
    platform.cli(&["unmap-route", "tcpecho", DOMAIN, "--port", &port_text]);
    platform.wait_for(
        "the TCP route's port to refuse connections",
        Duration::from_secs(30),
        || refused(addr),
    );

    platform.cli(&["delete-route", DOMAIN, "--port", &port_text, "-f"]);
    let routes = platform.cli(&["routes"]);
    assert!(!routes.contains(&url), "{routes}");
    platform.cli(&["delete", "tcpecho", "-f"]);
}
