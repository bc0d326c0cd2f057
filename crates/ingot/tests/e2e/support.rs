//! Things the scenario needs from outside the platform: a server in a
//! network namespace of its own (for egress), a wheel, an expired token, and
//! hostile zips.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::Digest;

/// What the egress server answers.
pub const GREETING: &str = "egress ok";
const NETNS: &str = "egress-e2e";
const HOST_VETH: &str = "egr-e2e0";
const NS_VETH: &str = "egr-e2e1";
const SERVER: &str = "10.251.0.2:8000";

/// An HTTP server in a network namespace the test creates, reached from the
/// host (and from containers, through NAT) over a veth pair.
pub struct EgressServer {
    server: Child,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {} failed", args.join(" "));
}

impl EgressServer {
    pub fn start() -> Self {
        let _ = Command::new("ip")
            .args(["netns", "del", NETNS])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", HOST_VETH])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", NETNS]);
        ip(&[
            "link", "add", HOST_VETH, "type", "veth", "peer", "name", NS_VETH,
        ]);
        ip(&["link", "set", NS_VETH, "netns", NETNS]);
        ip(&["addr", "add", "10.251.0.1/30", "dev", HOST_VETH]);
        ip(&["link", "set", HOST_VETH, "up"]);
        ip(&[
            "netns",
            "exec",
            NETNS,
            "ip",
            "addr",
            "add",
            "10.251.0.2/30",
            "dev",
            NS_VETH,
        ]);
        ip(&["netns", "exec", NETNS, "ip", "link", "set", NS_VETH, "up"]);
        ip(&["netns", "exec", NETNS, "ip", "link", "set", "lo", "up"]);
        let script = format!(
            "import http.server as h\n\
             class H(h.BaseHTTPRequestHandler):\n\
             \x20   def do_GET(self):\n\
             \x20       b = b'{GREETING}'\n\
             \x20       self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\n\
             h.HTTPServer(('10.251.0.2', 8000), H).serve_forever()\n"
        );
        let server = Command::new("ip")
            .args(["netns", "exec", NETNS, "/usr/bin/python3", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the egress server");
        let addr: SocketAddr = SERVER.parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "the egress server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        EgressServer { server }
    }

    pub fn url(&self) -> String {
        format!("http://{SERVER}/")
    }
}

impl Drop for EgressServer {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("ip").args(["netns", "del", NETNS]).status();
        let _ = Command::new("ip")
            .args(["link", "del", HOST_VETH])
            .stderr(Stdio::null())
            .status();
    }
}

/// Builds a pure-Python wheel of the package directory by hand (a wheel is a
/// zip with a `.dist-info`), so the test needs no index and no build tools.
pub fn build_wheel(pkg: &Path, out_dir: &Path) {
    let init = std::fs::read(pkg.join("hellolib").join("__init__.py")).expect("package source");
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("hellolib/__init__.py", init),
        (
            "hellolib-1.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: hellolib\nVersion: 1.0\n".to_vec(),
        ),
        (
            "hellolib-1.0.dist-info/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: ingot-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_vec(),
        ),
    ];
    let mut record = String::new();
    for (name, data) in &files {
        let digest =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(data));
        record.push_str(&format!("{name},sha256={digest},{}\n", data.len()));
    }
    record.push_str("hellolib-1.0.dist-info/RECORD,,\n");
    let file =
        std::fs::File::create(out_dir.join("hellolib-1.0-py3-none-any.whl")).expect("wheel file");
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default();
    for (name, data) in files
        .iter()
        .map(|(n, d)| (*n, d.as_slice()))
        .chain([("hellolib-1.0.dist-info/RECORD", record.as_bytes())])
    {
        zip.start_file(name, options).expect("wheel entry");
        zip.write_all(data).expect("wheel data");
    }
    zip.finish().expect("finish wheel");
}

/// A token signed with the platform's own key whose `exp` has passed.
pub fn expired_token(home: &Path, api_url: &str) -> String {
    let pem = std::fs::read(home.join("keys").join("token-signing.pem")).expect("signing key");
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).expect("RSA key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let claims = serde_json::json!({
        "jti": "expired", "sub": "admin", "user_id": "admin", "user_name": "admin",
        "client_id": "cf", "cid": "cf", "scope": ["cloud_controller.admin"],
        "iat": now - 3600, "exp": now - 1800, "iss": "ingot-e2e", "aud": ["cloud_controller"],
        "grant_type": "password", "origin": "uaa", "zid": "uaa",
    });
    let keys: serde_json::Value = reqwest::blocking::get(format!("{api_url}/uaa/token_keys"))
        .expect("token_keys")
        .json()
        .expect("token_keys JSON");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = keys["keys"][0]["kid"].as_str().map(String::from);
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

/// Zips that must never become a READY package.
pub fn hostile_zips(work: &Path) -> Vec<(&'static str, PathBuf)> {
    let dir = work.join("hostile");
    std::fs::create_dir_all(&dir).expect("hostile dir");
    let write_zip = |name: &str, fill: &dyn Fn(&mut zip::ZipWriter<std::fs::File>)| {
        let path = dir.join(name);
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).expect("zip file"));
        fill(&mut zip);
        zip.finish().expect("finish zip");
        path
    };
    let options = zip::write::SimpleFileOptions::default();
    let corrupt = dir.join("corrupt.zip");
    std::fs::write(&corrupt, b"PK\x03\x04 this is not really a zip archive").expect("corrupt zip");
    vec![
        ("corrupt", corrupt),
        (
            "dot-dot",
            write_zip("dotdot.zip", &|zip| {
                zip.start_file("../escaped.txt", options).expect("entry");
                zip.write_all(b"x").expect("data");
            }),
        ),
        (
            "absolute",
            write_zip("absolute.zip", &|zip| {
                zip.start_file("/tmp/absolute.txt", options).expect("entry");
                zip.write_all(b"x").expect("data");
            }),
        ),
        (
            "symlink-out",
            write_zip("symlink.zip", &|zip| {
                zip.add_symlink("escape", "../../../../etc/passwd", options)
                    .expect("symlink");
            }),
        ),
    ]
}

/// Zips a directory's files (flat fixtures only), as a client uploads bits.
pub fn zip_dir(dir: &Path, out: &Path) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(out).expect("zip file"));
    let options = zip::write::SimpleFileOptions::default();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        if entry.path().is_file() {
            zip.start_file(entry.file_name().to_string_lossy(), options)
                .expect("entry");
            zip.write_all(&std::fs::read(entry.path()).expect("read"))
                .expect("write");
        }
    }
    zip.finish().expect("finish zip");
}

/// Zips a directory tree keeping file modes (a buildpack's `bin/` scripts
/// must stay executable).
pub fn zip_tree(dir: &Path, out: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fn add(zip: &mut zip::ZipWriter<std::fs::File>, root: &Path, dir: &Path) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            let name = path
                .strip_prefix(root)
                .expect("inside root")
                .to_string_lossy()
                .to_string();
            let mode = entry.metadata().expect("metadata").permissions().mode();
            let options = zip::write::SimpleFileOptions::default().unix_permissions(mode);
            if path.is_dir() {
                zip.add_directory(name, options).expect("dir entry");
                add(zip, root, &path);
            } else {
                zip.start_file(name, options).expect("entry");
                zip.write_all(&std::fs::read(&path).expect("read"))
                    .expect("write");
            }
        }
    }
    let mut zip = zip::ZipWriter::new(std::fs::File::create(out).expect("zip file"));
    add(&mut zip, dir, dir);
    zip.finish().expect("finish zip");
}

/// A static file server on loopback for a directory (a buildpack "URL").
pub struct FileServer {
    child: Child,
    pub port: u16,
}

impl FileServer {
    pub fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new("/usr/bin/python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a file server");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "the file server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        FileServer { child, port }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
