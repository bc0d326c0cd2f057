//! The CLI as a person sees it: typed into a real terminal (tmux), read
//! back from the screen. A push shows its upload bar and the staging output
//! while staging is still running; `help push` shows examples; a typo gets
//! the command that was meant.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::platform::Platform;

/// A tmux server of the test's own (its own socket), killed on drop.
struct Terminal {
    socket: String,
}

impl Terminal {
    fn start(platform: &Platform, path: &str) -> Self {
        let socket = format!("ingot-e2e-{}", std::process::id());
        let terminal = Terminal { socket };
        let status = terminal
            .tmux()
            .args(["new-session", "-d", "-s", "person", "-x", "160", "-y", "50"])
            .args(["env", "-i", "TERM=xterm-256color", "HOME=/root", "PS1=$ "])
            .arg(format!("PATH={path}"))
            .arg(format!("INGOT_CLI_HOME={}", platform.cli_home.display()))
            .args(["bash", "--norc", "--noprofile"])
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        terminal
    }

    fn tmux(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]);
        command
    }

    /// Types a line and presses Enter.
    fn type_line(&self, line: &str) {
        let status = self
            .tmux()
            .args(["send-keys", "-t", "person", "-l", line])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
        let status = self
            .tmux()
            .args(["send-keys", "-t", "person", "Enter"])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// What the screen and its scrollback show now.
    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-J", "-S", "-", "-t", "person"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Types a command after a marker line, so that [`Terminal::since`]
    /// can cut the screen down to what this command printed.
    fn run(&self, step: &str, line: &str) {
        self.type_line(&format!("printf '=%s=\\n' {step}; {line}"));
    }

    /// The part of the screen after the marker of `step`.
    fn since(screen: &str, step: &str) -> String {
        let marker = format!("={step}=");
        match screen.rfind(&marker) {
            Some(at) => screen[at + marker.len()..].to_string(),
            None => String::new(),
        }
    }

    /// Polls the screen until `done` holds; on timeout fails with the screen.
    fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}

/// A buildpack whose supply step announces itself and then takes a few
/// seconds, so the test can see its line on screen while the push waits.
fn slow_buildpack(work: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = work.join("slow-buildpack");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("buildpack dir");
    let scripts = [
        ("detect", "#!/bin/sh\necho slow\n"),
        (
            "supply",
            "#!/bin/sh\necho '-----> slow buildpack: supplying, this takes a moment'\nsleep 4\necho '-----> slow buildpack: supplied'\n",
        ),
        ("finalize", "#!/bin/sh\necho '-----> slow buildpack: finalize'\n"),
        (
            "release",
            "#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n  web: python3 -m http.server $PORT\\n'\n",
        ),
    ];
    for (name, text) in scripts {
        let path = bin.join(name);
        std::fs::write(&path, text).expect("write buildpack script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

/// An app with 4 MiB of incompressible bytes, so the upload bar has
/// something to show.
fn big_app(work: &Path) -> PathBuf {
    use rand::RngCore;
    let dir = work.join("big-app");
    std::fs::create_dir_all(&dir).expect("app dir");
    let mut bytes = vec![0u8; 4 * 1024 * 1024];
    rand::thread_rng().fill_bytes(&mut bytes);
    std::fs::write(dir.join("blob.bin"), bytes).expect("write blob");
    std::fs::write(dir.join("index.html"), "big app\n").expect("write index");
    dir
}

pub fn a_person_at_a_terminal(platform: &Platform, work: &Path) {
    let ingot = Path::new(env!("CARGO_BIN_EXE_ingot"));
    let path = format!(
        "{}:{}",
        ingot.parent().expect("binary dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let terminal = Terminal::start(platform, &path);
    let app = big_app(work);
    let buildpack = slow_buildpack(work);

    terminal.run(
        "push",
        &format!(
            "ingot push bigapp -p {} -b {}; echo \"push exited $?\"",
            app.display(),
            buildpack.display()
        ),
    );
    // The staging line is on screen while the push is still running.
    let screen = terminal.wait_until("the live staging output", Duration::from_secs(120), |s| {
        let s = Terminal::since(s, "push");
        s.contains("slow buildpack: supplying") || s.contains("push exited")
    });
    let screen = Terminal::since(&screen, "push");
    assert!(
        !screen.contains("push exited"),
        "the staging output appeared only after the push ended:\n{screen}\n--- platform log ---\n{}",
        platform.log_text()
    );
    let screen = terminal.wait_until("the push to end", Duration::from_secs(180), |s| {
        Terminal::since(s, "push").contains("push exited")
    });
    let screen = Terminal::since(&screen, "push");
    assert!(
        screen.contains("push exited 0"),
        "{screen}\n--- platform log ---\n{}",
        platform.log_text()
    );
    // The upload bar stays on screen at 100 %: 4 MiB of 4 MiB.
    assert!(
        screen.contains("█") && screen.contains("MiB/4.00 MiB"),
        "no upload bar on screen:\n{screen}"
    );

    terminal.run("help", "ingot help push");
    let screen = terminal.wait_until("help push", Duration::from_secs(10), |s| {
        Terminal::since(s, "help").contains("Examples:")
    });
    let screen = Terminal::since(&screen, "help");
    assert!(screen.contains("ingot push"), "{screen}");

    terminal.run("typo", "ingot pusj; echo \"typo exited $?\"");
    let screen = terminal.wait_until("the typo's answer", Duration::from_secs(10), |s| {
        Terminal::since(s, "typo").contains("typo exited")
    });
    let screen = Terminal::since(&screen, "typo");
    assert!(screen.contains("did you mean `ingot push`"), "{screen}");
    assert!(!screen.contains("typo exited 0"), "{screen}");

    platform.cli(&["delete", "bigapp", "-f"]);
}
