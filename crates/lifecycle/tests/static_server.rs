//! The static file server over loopback: index.html, content types, 404,
//! path traversal, redirects for directories, HEAD.

#![allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error

use std::fs;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one raw HTTP/1.1 request (the path exactly as given, so traversal
/// attempts are not normalised away by a client library).
async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: site.apps.localhost\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn start(root: &Path) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let root = root.to_path_buf();
    tokio::spawn(async move { ingot_lifecycle::static_server::serve(listener, root).await });
    addr
}

fn site() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("site");
    fs::create_dir_all(root.join("docs")).unwrap();
    fs::write(root.join("index.html"), "<h1>home page</h1>").unwrap();
    fs::write(root.join("docs/index.html"), "<h1>docs</h1>").unwrap();
    fs::write(root.join("style.css"), "body{}").unwrap();
    fs::write(root.join("data.json"), "{}").unwrap();
    fs::write(root.join("a b.txt"), "spaced").unwrap();
    // Beside the root, not under it: must never be served.
    fs::write(tmp.path().join("secret.txt"), "TOP SECRET").unwrap();
    (tmp, root)
}

#[tokio::test]
async fn serves_index_html_and_content_types() {
    let (_tmp, root) = site();
    let addr = start(&root).await;

    let reply = request(addr, "GET", "/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "<h1>home page</h1>");
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );

    let reply = request(addr, "GET", "/docs/").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "<h1>docs</h1>"));

    let reply = request(addr, "GET", "/docs?x=1").await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), Some("/docs/?x=1"));

    let reply = request(addr, "GET", "/style.css").await;
    assert_eq!(
        reply.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    let reply = request(addr, "GET", "/data.json").await;
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let reply = request(addr, "GET", "/a%20b.txt").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "spaced"));
}

#[tokio::test]
async fn missing_files_are_404_and_traversal_never_escapes() {
    let (_tmp, root) = site();
    let addr = start(&root).await;
    let reply = request(addr, "GET", "/nope.html").await;
    assert_eq!(reply.status, 404);
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/docs/..%2f..%2fsecret.txt",
        "/docs/../../secret.txt",
    ] {
        let reply = request(addr, "GET", path).await;
        assert_ne!(reply.status, 200, "{path}");
        assert!(
            !reply.body.contains("TOP SECRET"),
            "{path} leaked the secret"
        );
    }
}

#[tokio::test]
async fn head_has_headers_without_body_and_other_methods_are_refused() {
    let (_tmp, root) = site();
    let addr = start(&root).await;
    let reply = request(addr, "HEAD", "/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("18"));
    assert_eq!(reply.body, "");
    let reply = request(addr, "POST", "/").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn stops_serving_when_told_to_shut_down() {
    let (_tmp, root) = site();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ingot_lifecycle::static_server::serve_until(
        listener,
        root,
        async {
            let _ = stopped.await;
        },
    ));
    assert_eq!(request(addr, "GET", "/").await.status, 200);
    stop.send(()).unwrap();
    let result = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
    assert!(
        matches!(result, Ok(Ok(Ok(())))),
        "the server did not stop: {result:?}"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}
