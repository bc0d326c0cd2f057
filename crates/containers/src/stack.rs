//! The default stack: a rootfs built from the host's system directories
//! (DESIGN.md, "The default stack").

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{BindMount, ContainerError, Stack};

/// The `vcap` user of Cloud Foundry's stacks.
pub(crate) const VCAP_UID: u32 = 2000;

/// Top-level host directories that are, on a merged-/usr system, links into `/usr`.
const SYSTEM_DIRS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
vcap:x:2000:2000::/home/vcap:/bin/bash\n";

const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nvcap:x:2000:\n";

const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n\
networks: files\nprotocols: files\nservices: files\nethers: files\nrpc: files\n";

fn write(path: &Path, contents: &[u8]) -> Result<(), ContainerError> {
    fs::write(path, contents).map_err(ContainerError::io("write", path))
}

fn mkdir(path: &Path, mode: u32) -> Result<(), ContainerError> {
    fs::create_dir_all(path).map_err(ContainerError::io("create directory", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(ContainerError::io("set permissions of", path))
}

/// Replaces whatever is at `path` with a symlink to `target`.
fn replace_with_symlink(target: &Path, path: &Path) -> Result<(), ContainerError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(path).map_err(ContainerError::io("remove", path))?
        }
        Ok(_) => fs::remove_file(path).map_err(ContainerError::io("remove", path))?,
        Err(_) => {}
    }
    symlink(target, path).map_err(ContainerError::io("create symlink", path))
}

/// The host's resolv.conf when its name servers are reachable from a container (not
/// loopback, which inside the container would be the container itself).
fn resolv_conf(host: &str) -> String {
    let loopback = host.lines().any(|line| {
        let mut words = line.split_whitespace();
        words.next() == Some("nameserver")
            && words.next().is_some_and(|ip| {
                ip.parse::<std::net::IpAddr>()
                    .map(|ip| ip.is_loopback())
                    .unwrap_or(false)
            })
    });
    if loopback {
        "# the host's name servers are on its loopback, which containers cannot reach\n".into()
    } else {
        host.to_string()
    }
}

/// Builds the default stack at `dir` from the host's system directories: `bin`, `lib`,
/// `lib64`, `sbin` mirror the host (links into `usr`, or read-only bind mounts where the
/// host has real directories), an empty `usr` that the stack bind-mounts read-only from
/// host `/usr`, a generated `etc` (passwd with `vcap` uid 2000, group, hosts, hostname,
/// resolv.conf, nsswitch.conf, the CA bundle), `home/vcap` owned by 2000:2000, `tmp` 1777,
/// and empty `proc`, `sys`, `dev`. Nothing of the host's `/etc/shadow`, `/root`, `/home`,
/// `/var` or the platform's home. Safe to call again on the same directory.
pub fn prepare_default_stack(dir: &Path) -> Result<Stack, ContainerError> {
    mkdir(dir, 0o755)?;
    let mut bind_mounts = vec![BindMount {
        source: PathBuf::from("/usr"),
        destination: PathBuf::from("/usr"),
        read_only: true,
    }];
    mkdir(&dir.join("usr"), 0o755)?;
    for name in SYSTEM_DIRS {
        let host = Path::new("/").join(name);
        let ours = dir.join(name);
        match fs::symlink_metadata(&host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target =
                    fs::read_link(&host).map_err(ContainerError::io("read link", &host))?;
                replace_with_symlink(&target, &ours)?;
            }
            Ok(meta) if meta.is_dir() => {
                mkdir(&ours, 0o755)?;
                bind_mounts.push(BindMount {
                    source: host,
                    destination: Path::new("/").join(name),
                    read_only: true,
                });
            }
            _ => {}
        }
    }
    for (name, mode) in [
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("tmp", 0o1777),
    ] {
        mkdir(&dir.join(name), mode)?;
    }

    let home = dir.join("home/vcap");
    mkdir(&dir.join("home"), 0o755)?;
    mkdir(&home, 0o755)?;
    nix::unistd::chown(
        &home,
        Some(nix::unistd::Uid::from_raw(VCAP_UID)),
        Some(nix::unistd::Gid::from_raw(VCAP_UID)),
    )
    .map_err(|e| ContainerError::io("chown", &home)(e.into()))?;

    let etc = dir.join("etc");
    mkdir(&etc, 0o755)?;
    write(&etc.join("passwd"), PASSWD.as_bytes())?;
    write(&etc.join("group"), GROUP.as_bytes())?;
    write(&etc.join("hosts"), HOSTS.as_bytes())?;
    write(&etc.join("hostname"), b"localhost\n")?;
    write(&etc.join("nsswitch.conf"), NSSWITCH.as_bytes())?;
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    write(
        &etc.join("resolv.conf"),
        resolv_conf(&host_resolv).as_bytes(),
    )?;
    let certs = etc.join("ssl/certs");
    mkdir(&etc.join("ssl"), 0o755)?;
    mkdir(&certs, 0o755)?;
    let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if bundle.exists() {
        fs::copy(bundle, certs.join("ca-certificates.crt"))
            .map_err(ContainerError::io("copy", bundle))?;
    }
    Ok(Stack {
        rootfs: dir.to_path_buf(),
        bind_mounts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn builds_the_default_stack() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("stack");
        let stack = prepare_default_stack(&root).expect("stack");
        assert_eq!(stack.rootfs, root);
        assert!(stack
            .bind_mounts
            .iter()
            .any(|m| m.source == Path::new("/usr") && m.read_only));
        let passwd = fs::read_to_string(root.join("etc/passwd")).expect("passwd");
        assert!(passwd.contains("vcap:x:2000:2000::/home/vcap:/bin/bash"));
        assert!(!root.join("etc/shadow").exists());
        assert!(!root.join("root").exists());
        assert!(!root.join("var").exists());
        let home = fs::metadata(root.join("home/vcap")).expect("home");
        assert_eq!((home.uid(), home.gid()), (2000, 2000));
        assert_eq!(
            fs::metadata(root.join("tmp")).expect("tmp").mode() & 0o7777,
            0o1777
        );
        if fs::symlink_metadata("/bin").expect("/bin").is_symlink() {
            assert_eq!(
                fs::read_link(root.join("bin")).expect("bin link"),
                fs::read_link("/bin").expect("/bin link")
            );
        }
        assert_eq!(
            fs::read_dir(root.join("usr")).expect("usr").count(),
            0,
            "usr is only a mount point"
        );
        // Idempotent.
        prepare_default_stack(&root).expect("again");
    }

    #[test]
    fn loopback_name_servers_are_not_copied() {
        assert!(!resolv_conf("nameserver 127.0.0.53\n").contains("nameserver"));
        assert!(!resolv_conf("nameserver ::1\n").contains("nameserver"));
        assert_eq!(
            resolv_conf("nameserver 10.0.0.2\n"),
            "nameserver 10.0.0.2\n"
        );
    }
}
