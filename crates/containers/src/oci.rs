//! The OCI runtime `config.json` for a container (runtime-spec 1.0.2, as runc 1.1 reads it).
//!
//! Unprivileged by default: a small capability set without `SYS_ADMIN`/`NET_ADMIN`,
//! `noNewPrivileges`, no inheritable capabilities, a seccomp filter refusing
//! kernel-administration syscalls, io_uring and new namespaces (`unshare`, `setns`,
//! `clone3`, `clone` with namespace flags),
//! deny-all devices plus the usual allow-list, masked and read-only `/proc` paths.

use std::path::Path;

use serde_json::{json, Value};

use crate::{BindMount, ContainerSpec};

/// What the manager decided for this container beyond its spec.
pub(crate) struct Runtime<'a> {
    /// `linux.cgroupsPath`, e.g. `/ingot/<id>`.
    pub cgroups_path: &'a str,
    /// Path of the network namespace to join; `None` gives a fresh one with only loopback.
    pub netns: Option<&'a Path>,
    /// Whether runc may set `memory.swap` (the kernel accounts swap).
    pub limit_swap: bool,
}

const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_AUDIT_WRITE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Syscalls that administer the kernel or escape the sandbox; refused with EPERM.
const DENIED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "vhangup",
];

/// The `clone(2)` flags that make new namespaces; `clone` with any of them is refused, as
/// `unshare` and `setns` are, so a container cannot make a user namespace (and with it
/// capabilities) or leave its network. Each flag is its own rule: rules of one syscall are
/// alternatives, the arguments within a rule must all match.
const NAMESPACE_CLONE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];

/// The seccomp rules: deny-list with EPERM, `clone3` with ENOSYS, `clone` with namespace flags
/// with EPERM; everything else is allowed.
fn seccomp_syscalls() -> Vec<Value> {
    let mut rules = vec![
        json!({ "names": DENIED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM }),
        // clone3's flags live in memory a filter cannot inspect, so refuse it as "not
        // implemented": glibc then falls back to clone(2), whose flags the rules below check.
        json!({ "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS }),
    ];
    rules.extend(NAMESPACE_CLONE_FLAGS.iter().map(|&flag| {
        // The flags are positive bits; widen them as the filter compares 64-bit arguments.
        let flag = u64::from(flag.unsigned_abs());
        json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EPERM,
            // On x86_64 and aarch64 the flags are clone's first argument.
            "args": [{ "index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ" }],
        })
    }));
    rules
}

/// (type, major, minor) of the devices a container may use; runc creates the nodes.
const ALLOWED_DEVICES: &[(&str, i64, Option<i64>)] = &[
    ("c", 1, Some(3)), // null
    ("c", 1, Some(5)), // zero
    ("c", 1, Some(7)), // full
    ("c", 1, Some(8)), // random
    ("c", 1, Some(9)), // urandom
    ("c", 5, Some(0)), // tty
    ("c", 5, Some(2)), // ptmx
    ("c", 136, None),  // pts/*
];

fn seccomp_architectures() -> Vec<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64" => vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        _ => vec![],
    }
}

fn bind(mount: &BindMount) -> Value {
    let mut options = vec!["rbind", "nosuid", "nodev"];
    options.push(if mount.read_only { "ro" } else { "rw" });
    json!({
        "destination": mount.destination,
        "type": "bind",
        "source": mount.source,
        "options": options,
    })
}

/// Builds `config.json` for `spec`; the rootfs is `rootfs` relative to the bundle.
pub(crate) fn config(spec: &ContainerSpec, runtime: &Runtime<'_>) -> Value {
    let mut env: Vec<String> = Vec::new();
    if !spec.process.env.iter().any(|(k, _)| k == "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    env.extend(spec.process.env.iter().map(|(k, v)| format!("{k}={v}")));

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    mounts.extend(spec.stack.bind_mounts.iter().map(bind));
    mounts.extend(spec.bind_mounts.iter().map(bind));

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "uts"}),
        json!({"type": "ipc"}),
        json!({"type": "cgroup"}),
    ];
    namespaces.push(match runtime.netns {
        Some(path) => json!({"type": "network", "path": path}),
        None => json!({"type": "network"}),
    });

    let mut devices = vec![json!({"allow": false, "access": "rwm"})];
    devices.extend(ALLOWED_DEVICES.iter().map(|(kind, major, minor)| {
        let mut rule = json!({"allow": true, "type": kind, "major": major, "access": "rwm"});
        if let Some(minor) = minor {
            rule["minor"] = json!(minor);
        }
        rule
    }));

    let mut resources = json!({ "devices": devices });
    if spec.limits.memory_bytes > 0 {
        let mut memory = json!({ "limit": spec.limits.memory_bytes });
        if runtime.limit_swap {
            // memory+swap equal to memory: no swap, so a hog meets the OOM killer.
            memory["swap"] = json!(spec.limits.memory_bytes);
        }
        resources["memory"] = memory;
    }
    if spec.limits.pids > 0 {
        resources["pids"] = json!({ "limit": spec.limits.pids });
    }
    if spec.limits.cpu_shares > 0 {
        resources["cpu"] = json!({ "shares": spec.limits.cpu_shares });
    }

    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": spec.process.uid, "gid": spec.process.gid },
            "args": spec.process.args,
            "env": env,
            "cwd": spec.process.cwd,
            "capabilities": {
                "bounding": CAPABILITIES,
                "effective": CAPABILITIES,
                "permitted": CAPABILITIES,
                // Empty: no ambient capabilities can be raised and none pass an exec into a
                // program with inheritable file capabilities, so uid 2000 stays without any.
                "inheritable": [],
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 16384, "soft": 16384 }],
            "noNewPrivileges": true,
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": runtime.cgroups_path,
            "resources": resources,
            "namespaces": namespaces,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "seccomp": {
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": seccomp_architectures(),
                "syscalls": seccomp_syscalls(),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, ProcessSpec, Stack};
    use std::path::PathBuf;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            id: "a1".into(),
            hostname: "host-a1".into(),
            stack: Stack {
                rootfs: PathBuf::from("/stack"),
                bind_mounts: vec![BindMount {
                    source: "/usr".into(),
                    destination: "/usr".into(),
                    read_only: true,
                }],
            },
            layers: vec![],
            bind_mounts: vec![BindMount {
                source: "/data".into(),
                destination: "/tmp/data".into(),
                read_only: false,
            }],
            process: ProcessSpec {
                args: vec!["sh".into(), "-c".into(), "true".into()],
                env: vec![("A".into(), "b".into())],
                cwd: "/home/vcap".into(),
                uid: 2000,
                gid: 2000,
            },
            limits: Limits {
                memory_bytes: 64 << 20,
                pids: 100,
                cpu_shares: 512,
                disk_bytes: None,
            },
            network: true,
            egress: vec![],
        }
    }

    #[test]
    fn config_carries_the_spec_and_the_sandbox() {
        let netns = PathBuf::from("/run/netns/ingot-a1");
        let config = config(
            &spec(),
            &Runtime {
                cgroups_path: "/ingot/a1",
                netns: Some(&netns),
                limit_swap: true,
            },
        );
        assert_eq!(config["hostname"], "host-a1");
        assert_eq!(config["process"]["user"]["uid"], 2000);
        assert_eq!(config["process"]["noNewPrivileges"], true);
        assert_eq!(config["process"]["env"][0], format!("PATH={DEFAULT_PATH}"));
        assert_eq!(config["process"]["env"][1], "A=b");
        let caps = config["process"]["capabilities"]["bounding"].to_string();
        assert!(!caps.contains("SYS_ADMIN") && !caps.contains("NET_ADMIN"));
        assert_eq!(config["linux"]["cgroupsPath"], "/ingot/a1");
        let resources = &config["linux"]["resources"];
        assert_eq!(resources["memory"]["limit"], 64 << 20);
        assert_eq!(resources["memory"]["swap"], 64 << 20);
        assert_eq!(resources["pids"]["limit"], 100);
        assert_eq!(resources["cpu"]["shares"], 512);
        assert_eq!(
            resources["devices"][0],
            json!({"allow": false, "access": "rwm"})
        );
        let namespaces = config["linux"]["namespaces"].as_array().expect("array");
        assert!(namespaces.contains(&json!({"type": "network", "path": "/run/netns/ingot-a1"})));
        assert_eq!(namespaces.len(), 6);
        let mounts = config["mounts"].as_array().expect("array");
        let usr = mounts
            .iter()
            .find(|m| m["destination"] == "/usr")
            .expect("/usr mount");
        assert!(usr["options"].to_string().contains("\"ro\""));
        let data = mounts
            .iter()
            .find(|m| m["destination"] == "/tmp/data")
            .expect("data mount");
        assert!(data["options"].to_string().contains("\"rw\""));
        assert!(config["linux"]["maskedPaths"]
            .to_string()
            .contains("/proc/kcore"));
        assert!(config["linux"]["readonlyPaths"]
            .to_string()
            .contains("/proc/sys"));
    }

    #[test]
    fn no_network_means_a_fresh_namespace_and_no_swap_without_accounting() {
        let config = config(
            &spec(),
            &Runtime {
                cgroups_path: "/ingot/a1",
                netns: None,
                limit_swap: false,
            },
        );
        let namespaces = config["linux"]["namespaces"].as_array().expect("array");
        assert!(namespaces.contains(&json!({"type": "network"})));
        assert!(config["linux"]["resources"]["memory"].get("swap").is_none());
    }

    #[test]
    fn seccomp_refuses_new_namespaces_and_io_uring() {
        let config = config(
            &spec(),
            &Runtime {
                cgroups_path: "/ingot/a1",
                netns: None,
                limit_swap: false,
            },
        );
        let rules = config["linux"]["seccomp"]["syscalls"]
            .as_array()
            .expect("array");
        let denied = |name: &str| {
            rules.iter().any(|r| {
                r["names"].as_array().expect("names").contains(&json!(name))
                    && r["action"] == "SCMP_ACT_ERRNO"
                    && r.get("args").is_none()
            })
        };
        for name in [
            "unshare",
            "setns",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "clone3",
        ] {
            assert!(denied(name), "{name} is not denied outright");
        }
        assert!(
            !denied("clone"),
            "plain clone (fork, threads) must stay allowed"
        );
        // CLONE_NEWNS .. CLONE_NEWNET and CLONE_NEWCGROUP, as runc's profile spells them.
        for flag in [
            0x0002_0000u64,
            0x0400_0000,
            0x0800_0000,
            0x1000_0000,
            0x2000_0000,
            0x4000_0000,
            0x0200_0000,
        ] {
            let rule = json!({
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 1,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            });
            assert!(rules.contains(&rule), "no clone rule for flag {flag:#x}");
        }
        assert_eq!(
            config["process"]["capabilities"]["inheritable"],
            json!([]),
            "inheritable capabilities must be empty"
        );
    }
}
