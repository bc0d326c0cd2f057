//! Zero-downtime deployments: a rolling push and a rollback of an app under
//! a steady load, for one instance and for two, with no failed request.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::platform::{http_get, Platform};

/// A client sending 50 requests a second to the app until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(u16, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(platform: &Platform, host: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let router = platform.router;
        let host = host.to_string();
        let thread = {
            let stop = Arc::clone(&stop);
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let answer = http_get(router, &host, "/").unwrap_or((0, String::new()));
                    seen.lock().expect("lock").push(answer);
                    // 50 requests a second: this paces the load, it waits
                    // for no condition.
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Load {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Stops the load; returns every answer, in order.
    fn finish(mut self) -> Vec<(u16, String)> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn write_site(dir: &Path, version: &str) {
    std::fs::create_dir_all(dir).expect("site dir");
    std::fs::write(dir.join("Staticfile"), "").expect("Staticfile");
    std::fs::write(dir.join("index.html"), format!("<p>{version}</p>\n")).expect("index");
}

/// Every answer was a 200, and the last ones came from `version`.
fn assert_no_failures(answers: &[(u16, String)], version: &str, what: &str) {
    let failed: Vec<&(u16, String)> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{what}: {} of {} requests failed: {:?}",
        failed.len(),
        answers.len(),
        failed.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        answers.len() > 20,
        "{what}: only {} requests made",
        answers.len()
    );
    let last = &answers[answers.len() - 1].1;
    assert!(
        last.contains(version),
        "{what}: the last answer was {last:?}"
    );
}

pub fn rolling_deploys_drop_nothing(platform: &Platform, work: &Path) {
    let dir = work.join("roller");
    let host = "roller.apps.localhost";
    write_site(&dir, "version one");
    platform.cli(&["push", "roller", "-p", dir.to_str().expect("utf-8")]);
    platform.wait_for_app(host, "/");

    // One instance: the new one serves before the old one goes.
    write_site(&dir, "version two");
    let load = Load::start(platform, host);
    let out = platform.cli(&[
        "push",
        "roller",
        "-p",
        dir.to_str().expect("utf-8"),
        "--strategy",
        "rolling",
    ]);
    assert!(out.contains("deploy"), "{out}");
    platform.wait_for("version two to serve", Duration::from_secs(60), || {
        platform.get_app(host, "/").1.contains("version two")
    });
    let answers = load.finish();
    assert_no_failures(&answers, "version two", "rolling push of one instance");

    // Two instances, rolled back to the first revision.
    platform.cli(&["scale", "roller", "-i", "2"]);
    platform.wait_for("two instances running", Duration::from_secs(60), || {
        let (_, stats) = platform.api(
            "GET",
            &format!(
                "/v3/apps/{}/processes/web/stats",
                platform.app_guid("roller")
            ),
            None,
        );
        stats["resources"]
            .as_array()
            .is_some_and(|r| r.len() == 2 && r.iter().all(|i| i["state"] == "RUNNING"))
    });
    let revisions = platform.cli(&["revisions", "roller"]);
    assert!(
        revisions.contains("Initial revision.") && revisions.contains("New droplet deployed."),
        "{revisions}"
    );
    let load = Load::start(platform, host);
    let out = platform.cli(&["rollback", "roller", "--version", "1", "-f"]);
    assert!(out.contains("OK"), "{out}");
    platform.wait_for(
        "version one to serve again",
        Duration::from_secs(60),
        || platform.get_app(host, "/").1.contains("version one"),
    );
    let answers = load.finish();
    assert_no_failures(&answers, "version one", "rollback of two instances");
    let revisions = platform.cli(&["revisions", "roller"]);
    assert!(
        revisions.contains("Rolled back to revision 1."),
        "{revisions}"
    );
    let (_, stats) = platform.api(
        "GET",
        &format!(
            "/v3/apps/{}/processes/web/stats",
            platform.app_guid("roller")
        ),
        None,
    );
    assert_eq!(
        stats["resources"].as_array().map(Vec::len),
        Some(2),
        "the rollback kept two instances: {stats}"
    );
    platform.cli(&["delete", "roller", "-f"]);
}
