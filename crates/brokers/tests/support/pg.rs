//! A throwaway PostgreSQL server for tests: `initdb` in a temporary
//! directory, `postgres` listening on a free port of 127.0.0.1 (and any other
//! addresses asked for) with its Unix socket in that directory, stopped and
//! removed when the [`TestPostgres`] is dropped — also when a test panics.
//!
//! Self-contained (std and `tempfile` only) so any crate's tests can include
//! it with `#[path = "…/support/pg.rs"] mod pg;`. Needs root (the server runs
//! as the `postgres` OS user, which must exist) and the Debian packages'
//! binaries in `/usr/lib/postgresql/<version>/bin`.
//!
//! Authentication: the superuser `postgres` is trusted over the socket and
//! loopback (no password); every other role needs its password
//! (SCRAM-SHA-256), from any address, so a test of revoked or wrong
//! credentials means something.

#![allow(dead_code)]

use std::fs;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// uid and gid of the `postgres` OS user, from `/etc/passwd`.
pub fn postgres_user() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&"postgres") && fields.len() > 3 {
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// A running PostgreSQL server owned by the test.
pub struct TestPostgres {
    /// Holds data, socket and log; removed on drop after the server stops.
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    bin: PathBuf,
    port: u16,
    /// Listen addresses (127.0.0.1 first).
    addresses: Vec<IpAddr>,
    uid: u32,
    gid: u32,
}

impl TestPostgres {
    /// A server listening on 127.0.0.1 only.
    pub fn start() -> TestPostgres {
        TestPostgres::start_on(&[])
    }

    /// A server listening on 127.0.0.1 and on `extra` addresses (e.g. a
    /// bridge address containers can reach). Panics, with the server's log,
    /// when it cannot be started.
    pub fn start_on(extra: &[IpAddr]) -> TestPostgres {
        let bin =
            bin_dir().expect("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb)");
        let (uid, gid) = postgres_user().expect("there is no `postgres` OS user");
        let dir = tempfile::Builder::new()
            .prefix("ingot-pg-")
            .tempdir()
            .expect("create a temporary directory");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
            .expect("chmod the temporary directory");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .expect("give the temporary directory to postgres");
        let mut pg = TestPostgres {
            dir: Some(dir),
            child: None,
            bin,
            port: 0,
            addresses: Vec::new(),
            uid,
            gid,
        };
        pg.init();
        pg.addresses = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
        pg.addresses
            .extend(extra.iter().filter(|a| !a.is_loopback()));
        // A free port can be taken by someone else before the server binds
        // it; try a few.
        for attempt in 1..=5 {
            pg.port = free_port();
            match pg.launch() {
                Ok(()) => return pg,
                Err(log) if attempt < 5 && log.contains("could not bind") => continue,
                Err(log) => panic!("PostgreSQL did not start:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(tempfile::TempDir::path)
            .expect("the directory lives as long as the server")
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// The directory holding the Unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir().to_path_buf()
    }

    /// The TCP port (on every listen address).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's URL over loopback TCP (no password needed there).
    pub fn admin_url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A URL for `user` with `password` to `database` over loopback TCP.
    pub fn url(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgresql://{user}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// The postmaster's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("postgres.log")).unwrap_or_default()
    }

    /// Runs a binary of the server's version as the `postgres` user.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command
            .uid(self.uid)
            .gid(self.gid)
            .current_dir(self.dir())
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .env_remove("PGHOST")
            .env_remove("PGPORT");
        command
    }

    fn init(&self) {
        let output = self
            .command("initdb")
            .args(["-D"])
            .arg(self.data_dir())
            .args([
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .output()
            .expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let hba = self.data_dir().join("pg_hba.conf");
        fs::write(
            &hba,
            "local all all trust\n\
             host all postgres 127.0.0.1/32 trust\n\
             host all postgres ::1/128 trust\n\
             host all all 0.0.0.0/0 scram-sha-256\n\
             host all all ::/0 scram-sha-256\n",
        )
        .expect("write pg_hba.conf");
        std::os::unix::fs::chown(&hba, Some(self.uid), Some(self.gid)).expect("chown pg_hba.conf");
    }

    /// Starts `postgres` in the foreground as our child and waits until it
    /// accepts connections; on failure stops it and returns its log.
    fn launch(&mut self) -> Result<(), String> {
        let log_path = self.dir().join("postgres.log");
        let log = fs::File::create(&log_path).map_err(|e| format!("create the log: {e}"))?;
        std::os::unix::fs::chown(&log_path, Some(self.uid), Some(self.gid))
            .map_err(|e| format!("chown the log: {e}"))?;
        let err_log = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let listen: Vec<String> = self.addresses.iter().map(IpAddr::to_string).collect();
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.socket_dir())
            .args(["-c", &format!("listen_addresses={}", listen.join(","))])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "shared_buffers=16MB"])
            .args(["-c", "max_connections=60", "-c", "logging_collector=off"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .map_err(|e| format!("spawn postgres: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("postgres exited with {status}:\n{}", self.log()));
                }
            }
            let ready = self
                .command("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", "postgres", "-d", "postgres", "-t", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "postgres did not accept connections within {READY_TIMEOUT:?}:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server and starts it again on the same port and data (every
    /// client connection is cut, as when a database server restarts).
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.launch() {
            panic!("PostgreSQL did not restart:\n{log}");
        }
    }

    /// Stops the server (fast shutdown: sessions are ended, shared memory
    /// released); kills it if that fails. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let stopped = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["stop", "-m", "fast", "-w", "-t", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                eprintln!("could not remove {}: {e}", path.display());
            }
        }
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}
