//! Starting the real `ingot` binary in a temporary home, driving its CLI,
//! and reading what a user would see. On failure every helper prints the
//! command, its output and the platform's log.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The prefix of every host object the test platform creates.
pub const PREFIX: &str = "ie2e";
/// The test platform's container subnet.
pub const SUBNET: &str = "10.250.0.0/24";

pub struct Platform {
    pub home: PathBuf,
    pub cli_home: PathBuf,
    pub api_url: String,
    pub router: SocketAddr,
    pub router_tls: SocketAddr,
    pub ssh: SocketAddr,
    api_listen: SocketAddr,
    extra_args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr")
}

impl Platform {
    /// Boots `ingot up` on `home` with more flags and waits until its API
    /// answers.
    pub fn start_with(home: &Path, extra_args: &[&str]) -> Self {
        let api_listen = free_port();
        let router = free_port();
        let router_tls = free_port();
        let ssh = free_port();
        let mut platform = Platform {
            home: home.to_path_buf(),
            cli_home: home.join("cli"),
            api_url: format!("http://{api_listen}"),
            router,
            router_tls,
            ssh,
            api_listen,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            child: None,
            log: home.join("platform.log"),
        };
        platform.boot();
        platform
    }

    fn boot(&mut self) {
        std::fs::create_dir_all(&self.cli_home).expect("cli home");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("platform log");
        let child = Command::new(env!("CARGO_BIN_EXE_ingot"))
            .args(["up", "--home"])
            .arg(&self.home)
            .args(["--api-listen", &self.api_listen.to_string()])
            .args(["--router-listen", &self.router.to_string()])
            .args(["--router-tls-listen", &self.router_tls.to_string()])
            .args(["--ssh-listen", &self.ssh.to_string()])
            .args(["--host-prefix", PREFIX, "--container-subnet", SUBNET])
            .args(["--stop-grace-secs", "5"])
            .args(&self.extra_args)
            .env("INGOT_CLI_HOME", &self.cli_home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start ingot up");
        self.child = Some(child);
        let started = Instant::now();
        self.wait_for(
            "the platform to say it is up and logged the CLI in",
            Duration::from_secs(120),
            || self.log_text().contains("Push an app:"),
        );
        eprintln!("platform up in {:?}", started.elapsed());
    }

    /// Stops the platform with SIGTERM and waits for it to exit cleanly.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "ingot up exited with {status}\n{}",
                    self.log_text()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "ingot up did not stop within 90 s of SIGTERM\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops and boots again on the same home.
    pub fn restart(&mut self) {
        self.stop();
        self.boot();
    }

    /// Kills the platform with SIGKILL (no cleanup at all), then boots it
    /// again on the same home.
    pub fn kill_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL ingot up");
            child.wait().expect("reap ingot up");
        }
        self.boot();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `condition` every 200 ms until it holds, or fails the test.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !condition() {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\n--- platform log ---\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs the CLI; returns its output whatever the exit status.
    pub fn cli_output(&self, args: &[&str]) -> Output {
        self.cli_output_in(&self.cli_home, args)
    }

    /// Runs the CLI with its login kept in `cli_home` (another user's).
    pub fn cli_output_in(&self, cli_home: &Path, args: &[&str]) -> Output {
        std::fs::create_dir_all(cli_home).expect("cli home");
        Command::new(env!("CARGO_BIN_EXE_ingot"))
            .args(args)
            .env("INGOT_CLI_HOME", cli_home)
            .stdin(Stdio::null())
            .output()
            .expect("run the ingot CLI")
    }

    /// Runs the CLI and fails the test (with everything printed) unless it succeeds.
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_in(&self.cli_home, args)
    }

    /// [`Platform::cli`] with the login kept in `cli_home`.
    pub fn cli_in(&self, cli_home: &Path, args: &[&str]) -> String {
        let out = self.cli_output_in(cli_home, args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "`ingot {}` failed with {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}\n--- platform log ---\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        stdout
    }

    /// Runs the CLI and expects it to fail; returns stderr.
    pub fn cli_fails(&self, args: &[&str]) -> String {
        self.cli_fails_in(&self.cli_home, args)
    }

    /// [`Platform::cli_fails`] with the login kept in `cli_home`.
    pub fn cli_fails_in(&self, cli_home: &Path, args: &[&str]) -> String {
        let out = self.cli_output_in(cli_home, args);
        assert!(
            !out.status.success(),
            "`ingot {}` should have failed\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// A GET through the router with a `Host` header: (status, body).
    pub fn get_app(&self, host: &str, path: &str) -> (u16, String) {
        http_get(self.router, host, path).unwrap_or((0, String::new()))
    }

    /// Polls the router until `host` answers 200 and returns the body.
    pub fn wait_for_app(&self, host: &str, path: &str) -> String {
        let mut body = String::new();
        self.wait_for(
            &format!("{host}{path} to answer 200 through the router"),
            Duration::from_secs(120),
            || {
                let (status, text) = self.get_app(host, path);
                body = text;
                status == 200
            },
        );
        body
    }

    /// A fresh admin access token from the token endpoint (password grant
    /// for the `cf` client, as the CF CLI asks for it).
    pub fn token(&self) -> String {
        let credentials: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.home.join("admin-credentials.json"))
                .expect("admin credentials"),
        )
        .expect("admin credentials are JSON");
        self.token_for(
            credentials["username"].as_str().expect("username"),
            credentials["password"].as_str().expect("password"),
        )
    }

    /// A fresh access token for a user.
    pub fn token_for(&self, username: &str, password: &str) -> String {
        let response: serde_json::Value = reqwest::blocking::Client::new()
            .post(format!("{}/uaa/oauth/token", self.api_url))
            .basic_auth("cf", Some(""))
            .form(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ])
            .send()
            .expect("token request")
            .json()
            .expect("token JSON");
        response["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token for {username}: {response}"))
            .to_string()
    }

    /// An authenticated API call: (status, JSON body).
    pub fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let client = reqwest::blocking::Client::new();
        let mut request = client
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.api_url),
            )
            .bearer_auth(self.token());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().expect("API request");
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    pub fn app_guid(&self, name: &str) -> String {
        let (_, apps) = self.api("GET", &format!("/v3/apps?names={name}"), None);
        apps["resources"][0]["guid"]
            .as_str()
            .unwrap_or_else(|| panic!("no app {name}: {apps}"))
            .to_string()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A failed test still cleans up: SIGTERM stops every container.
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A minimal HTTP/1.1 GET (Python, OpenSSH and Go do not resolve
/// `*.localhost`, so like them we connect to the router and send `Host`).
pub fn http_get(addr: SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The host objects (mounts, network namespaces, veths, cgroups) whose name
/// carries the test platform's prefix or home.
pub fn leftovers(home: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let home = home.to_string_lossy().to_string();
    for line in std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
    {
        if line.contains(&home) {
            found.push(format!("mount: {line}"));
        }
    }
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    for line in String::from_utf8_lossy(&netns).lines() {
        if line.starts_with(PREFIX) {
            found.push(format!("netns: {line}"));
        }
    }
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    for line in String::from_utf8_lossy(&links).lines() {
        let name = line.split(':').nth(1).unwrap_or("").trim();
        if name.starts_with(PREFIX) {
            found.push(format!("link: {name}"));
        }
    }
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    for line in String::from_utf8_lossy(&tables).lines() {
        if line
            .split_whitespace()
            .last()
            .is_some_and(|name| name.starts_with(PREFIX))
        {
            found.push(format!("nft table: {line}"));
        }
    }
    // Shims and app processes carry the home in their command line.
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&home) && !cmdline.contains("ingot up") {
            found.push(format!(
                "process {}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    for controller in ["memory", "pids", "cpu", "devices", "freezer", "unified", ""] {
        let dir = Path::new("/sys/fs/cgroup").join(controller).join(PREFIX);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.path().is_dir() {
                    found.push(format!("cgroup: {}", entry.path().display()));
                }
            }
        }
    }
    found
}
