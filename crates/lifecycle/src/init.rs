//! A minimal init for app containers.
//!
//! The launcher runs as the container's first process. Linux ignores, for
//! pid 1 of a pid namespace, every signal that has no handler — so an app
//! that does not handle SIGTERM itself would never see a graceful stop, and
//! orphaned grandchildren would never be reaped. Like Garden's init, the
//! launcher therefore stays pid 1: it starts the app as its child, forwards
//! the stop signals to it, reaps every zombie, and exits with the app's
//! status (`128 + N` when a signal `N` killed it, as a shell reports it).

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Runs `command` as the child of this pid 1 and returns its exit code.
pub(crate) fn run(mut command: Command) -> std::io::Result<i32> {
    let mut watched = SigSet::empty();
    for signal in FORWARDED {
        watched.add(signal);
    }
    watched.add(Signal::SIGCHLD);
    // Block before spawning so that no signal slips in between; the child
    // unblocks them again before it execs the app.
    watched.thread_block().map_err(std::io::Error::from)?;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // sigprocmask, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(std::io::Error::from)
        });
    }
    let child = command.spawn()?;
    let child_pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    loop {
        let signal = watched.wait().map_err(std::io::Error::from)?;
        if signal != Signal::SIGCHLD {
            let _ = kill(child_pid, signal);
            continue;
        }
        // Reap every zombie: the app's and any orphan reparented to us.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child_pid => return Ok(code),
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child_pid => {
                    return Ok(128 + signal as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}
