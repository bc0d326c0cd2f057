//! A syslog drain: a user-provided service with `syslog_drain_url` bound to
//! an app sends the app's lines, in RFC 5424, to a real receiver started
//! here; a dead receiver does not slow the app, and lines resume when it
//! comes back on the same port.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::platform::Platform;

/// A syslog-over-TCP receiver keeping every byte it is sent.
struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(addr: SocketAddr, received: Arc<Mutex<Vec<u8>>>) -> Receiver {
        let listener = TcpListener::bind(addr).expect("bind the drain receiver");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            let received = Arc::clone(&received);
            let connections = Arc::clone(&connections);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            if let Ok(copy) = stream.try_clone() {
                                connections.lock().expect("lock").push(copy);
                            }
                            let received = Arc::clone(&received);
                            std::thread::spawn(move || {
                                let mut buf = [0u8; 8192];
                                while let Ok(n) = stream.read(&mut buf) {
                                    if n == 0 {
                                        break;
                                    }
                                    received.lock().expect("lock").extend_from_slice(&buf[..n]);
                                }
                            });
                        }
                        // Accepting is polled so that stopping needs no
                        // connection to wake it.
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        Receiver {
            addr,
            received,
            stop,
            connections,
            thread: Some(thread),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().expect("lock")).into_owned()
    }

    /// Closes the listener and every connection, as a dead receiver.
    fn kill(mut self) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for c in self.connections.lock().expect("lock").drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        (self.addr, Arc::clone(&self.received))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.connections.lock().expect("lock").drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Needs app `probe` running.
pub fn a_syslog_drain_gets_the_apps_lines(platform: &Platform) {
    let receiver = Receiver::start("127.0.0.1:0".parse().expect("addr"), Arc::default());
    let url = format!("syslog://{}", receiver.addr);
    platform.cli(&["cups", "probe-drain", "-l", &url]);
    platform.cli(&["bind-service", "probe", "probe-drain"]);
    let guid = platform.app_guid("probe");
    platform.wait_for(
        "the first line at the drain",
        Duration::from_secs(30),
        || {
            platform.get_app("probe.apps.localhost", "/drain-one");
            receiver.text().contains("/drain-one")
        },
    );
    let text = receiver.text();
    let line = text
        .split('\n')
        .find(|l| l.contains("/drain-one"))
        .expect("the line");
    // Octet counting, then RFC 5424: PRI and version, host org.space.app,
    // app name = the app's guid.
    assert!(line.contains("<14>1 "), "{line}");
    assert!(line.contains(" main.dev.probe "), "{line}");
    assert!(line.contains(&format!(" {guid} ")), "{line}");

    // A dead receiver does not slow the app.
    let (addr, received) = receiver.kill();
    let started = Instant::now();
    for _ in 0..20 {
        let (status, _) = platform.get_app("probe.apps.localhost", "/while-dead");
        assert_eq!(status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "20 requests took {:?} with the drain down",
        started.elapsed()
    );
    // Back on the same port, lines flow again.
    let receiver = Receiver::start(addr, received);
    platform.wait_for(
        "lines after the receiver came back",
        Duration::from_secs(60),
        || {
            platform.get_app("probe.apps.localhost", "/drain-two");
            receiver.text().contains("/drain-two")
        },
    );
    platform.cli(&["unbind-service", "probe", "probe-drain"]);
    platform.cli(&["delete-service", "probe-drain", "-f"]);
    drop(receiver);
}

/// `ingot firehose`, the nozzle example, prints the stream as JSON lines.
pub fn the_firehose_cli_prints_the_stream(platform: &Platform) {
    let mut nozzle = std::process::Command::new(env!("CARGO_BIN_EXE_ingot"))
        .args(["firehose", "--types", "log", "--json", "-n", "3"])
        .env("INGOT_CLI_HOME", &platform.cli_home)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ingot firehose");
    let mut done = None;
    platform.wait_for(
        "the nozzle to print 3 envelopes",
        Duration::from_secs(30),
        || {
            platform.get_app("probe.apps.localhost", "/nozzle");
            done = nozzle.try_wait().expect("wait");
            done.is_some()
        },
    );
    let out = nozzle.wait_with_output().expect("output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines.iter().all(|e| e.get("log").is_some()), "{text}");
}
