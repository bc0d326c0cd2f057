//! The test PostgreSQL harness (`support/pg.rs`) itself: it serves, and a
//! failing test leaves neither a server process nor a directory behind.

#[path = "support/pg.rs"]
mod pg;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pg::TestPostgres;

#[test]
fn a_failing_test_leaves_no_server_and_no_directory() {
    let seen: Mutex<Option<(PathBuf, u32, u16)>> = Mutex::new(None);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let pg = TestPostgres::start();
        let pid = pg.pid().expect("the server runs");
        *seen.lock().expect("lock") = Some((pg.socket_dir(), pid, pg.port()));
        assert!(
            pg.socket_dir()
                .join(format!(".s.PGSQL.{}", pg.port()))
                .exists(),
            "the Unix socket is in the temporary directory"
        );
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", pg.port())).is_ok(),
            "the server listens on loopback"
        );
        panic!("a test fails while the server runs");
    }));
    assert!(outcome.is_err());
    let (dir, pid, port) = seen
        .lock()
        .expect("lock")
        .clone()
        .expect("the server had started");
    assert!(!dir.exists(), "{} is left behind", dir.display());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "postgres (pid {pid}) is still running"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something still listens on {port}"
    );
}

#[test]
fn the_newest_installed_version_is_found() {
    let bin = pg::bin_dir().expect("PostgreSQL is installed");
    for program in ["initdb", "postgres", "pg_ctl", "pg_isready"] {
        assert!(
            bin.join(program).is_file(),
            "{} lacks {program}",
            bin.display()
        );
    }
    assert!(pg::postgres_user().is_some_and(|(uid, _)| uid != 0));
}
