//! The default stack: a rootfs built from the host's system directories
//! (DESIGN.md, "The default stack").

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

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

/// Where the host's resolver configuration is looked for.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's list of the real upstream name servers, for when /etc/resolv.conf
/// names only its stub on 127.0.0.53.
const RESOLVED_UPSTREAM_CONF: &str = "/run/systemd/resolve/resolv.conf";

fn is_loopback_nameserver(line: &str) -> Option<bool> {
    let mut words = line.split_whitespace();
    if words.next() != Some("nameserver") {
        return None;
    }
    // An address that does not parse is not ours to judge; keep it as glibc would try it.
    Some(words.next().is_some_and(|ip| {
        ip.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
    }))
}

/// `contents` without its loopback name servers (inside a container loopback is the
/// container itself), and whether any name server is left.
fn without_loopback(contents: &str) -> (String, bool) {
    let mut kept = String::new();
    let mut any_nameserver = false;
    for line in contents.lines() {
        match is_loopback_nameserver(line) {
            Some(true) => continue,
            Some(false) => any_nameserver = true,
            None => {}
        }
        kept.push_str(line);
        kept.push('\n');
    }
    (kept, any_nameserver)
}

/// The resolv.conf a container gets, and where its name servers came from.
#[derive(Debug, PartialEq, Eq)]
struct ResolvConf {
    contents: String,
    /// `None`: no source had a name server a container can reach; DNS will not work.
    source: Option<PathBuf>,
}

/// Picks the first of `sources` that names a non-loopback name server, its loopback ones
/// dropped; with none, the first readable source without its name servers (search domains
/// and options kept) under a comment saying why.
fn choose_resolv_conf(sources: &[&Path]) -> ResolvConf {
    let mut first = None;
    for source in sources {
        let Ok(contents) = fs::read_to_string(source) else {
            continue;
        };
        let (kept, any_nameserver) = without_loopback(&contents);
        if any_nameserver {
            return ResolvConf {
                contents: kept,
                source: Some(source.to_path_buf()),
            };
        }
        first.get_or_insert(kept);
    }
    let mut contents = String::from(
        "# the host names no name server a container can reach (only loopback ones, or none)\n",
    );
    contents.push_str(&first.unwrap_or_default());
    ResolvConf {
        contents,
        source: None,
    }
}

/// The host directories every container on the default stack sees (host `/usr`, and real
/// top-level system directories of a host without merged `/usr`), as host paths.
pub(crate) fn host_bind_sources() -> Vec<PathBuf> {
    let mut sources = vec![PathBuf::from("/usr")];
    for name in SYSTEM_DIRS {
        let host = Path::new("/").join(name);
        match fs::symlink_metadata(&host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                // Seen through the link: where it points is what containers see.
                if let Ok(target) = fs::canonicalize(&host) {
                    sources.push(target);
                }
            }
            Ok(meta) if meta.is_dir() => sources.push(host),
            _ => {}
        }
    }
    sources.sort();
    sources.dedup();
    sources
}

/// The host directory of `mounted` that contains `state_dir`, if any. `state_dir` need not
/// exist: its deepest existing ancestor is resolved, so links and `..` cannot hide it.
pub(crate) fn exposing_mount(state_dir: &Path, mounted: &[PathBuf]) -> Option<PathBuf> {
    let absolute = if state_dir.is_absolute() {
        state_dir.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(state_dir)
    };
    // Resolve one component at a time, as the kernel would: links in the existing part are
    // followed before a later `..` applies; the part that does not exist yet is taken as is.
    let mut resolved = PathBuf::from("/");
    for part in absolute.components() {
        match part {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                resolved.pop();
            }
            Component::Normal(name) => {
                resolved.push(name);
                if let Ok(real) = fs::canonicalize(&resolved) {
                    resolved = real;
                }
            }
        }
    }
    mounted
        .iter()
        .map(|m| fs::canonicalize(m).unwrap_or_else(|_| m.clone()))
        .find(|m| resolved.starts_with(m))
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
    // Host /usr, and the real system directories of a host without merged /usr; keep in
    // step with host_bind_sources.
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
    let resolv = choose_resolv_conf(&[
        Path::new(HOST_RESOLV_CONF),
        Path::new(RESOLVED_UPSTREAM_CONF),
    ]);
    if resolv.source.is_none() {
        tracing::warn!(
            checked = ?[HOST_RESOLV_CONF, RESOLVED_UPSTREAM_CONF],
            "DNS will not work in containers: the host's resolver configuration names only \
             loopback name servers (a local stub such as systemd-resolved's 127.0.0.53, which \
             inside a container is the container itself) or none at all"
        );
    }
    write(&etc.join("resolv.conf"), resolv.contents.as_bytes())?;
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
        assert_eq!(
            without_loopback("search x\nnameserver 127.0.0.53\nnameserver ::1\n"),
            ("search x\n".to_string(), false)
        );
        assert_eq!(
            without_loopback("nameserver 127.0.0.1\nnameserver 10.0.0.2\n"),
            ("nameserver 10.0.0.2\n".to_string(), true)
        );
    }

    #[test]
    fn resolv_conf_prefers_the_host_then_resolved_upstream() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = dir.path().join("resolv.conf");
        let upstream = dir.path().join("upstream.conf");
        let missing = dir.path().join("missing.conf");

        // Reachable host name servers: used as they are.
        fs::write(&host, "nameserver 10.0.0.2\n").expect("write");
        fs::write(&upstream, "nameserver 10.9.9.9\n").expect("write");
        let chosen = choose_resolv_conf(&[&host, &upstream]);
        assert_eq!(chosen.source.as_deref(), Some(host.as_path()));
        assert_eq!(chosen.contents, "nameserver 10.0.0.2\n");

        // systemd-resolved's stub only: the upstream list is used.
        fs::write(&host, "nameserver 127.0.0.53\noptions edns0\nsearch lan\n").expect("write");
        let chosen = choose_resolv_conf(&[&host, &upstream]);
        assert_eq!(chosen.source.as_deref(), Some(upstream.as_path()));
        assert_eq!(chosen.contents, "nameserver 10.9.9.9\n");

        // Upstream list absent, or itself only loopback: no name server, search domain kept.
        for fallback in [&missing, &upstream] {
            fs::write(&upstream, "nameserver ::1\n").expect("write");
            let chosen = choose_resolv_conf(&[&host, fallback]);
            assert_eq!(chosen.source, None);
            assert!(
                !chosen.contents.contains("nameserver"),
                "{}",
                chosen.contents
            );
            assert!(
                chosen.contents.contains("search lan"),
                "{}",
                chosen.contents
            );
        }

        // Nothing readable at all.
        let chosen = choose_resolv_conf(&[&missing]);
        assert_eq!(chosen.source, None);
        assert!(!chosen.contents.contains("nameserver"));
    }

    #[test]
    fn state_dirs_inside_bind_mounted_directories_are_found() {
        let mounted = host_bind_sources();
        assert!(mounted.contains(&PathBuf::from("/usr")));
        for exposed in [
            "/usr/lib/ingot",
            "/usr",
            "/usr/local/share/../ingot/state",
            "/lib/ingot",
            "/bin/ingot/deeper/still",
        ] {
            assert!(
                exposing_mount(Path::new(exposed), &mounted).is_some(),
                "{exposed} not recognised as visible in containers"
            );
        }
        for private in ["/var/lib/ingot", "/tmp/x/usr", "/usrx/ingot"] {
            assert_eq!(
                exposing_mount(Path::new(private), &mounted),
                None,
                "{private}"
            );
        }
        // A link into /usr does not hide it.
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("link");
        symlink("/usr/share", &link).expect("symlink");
        assert_eq!(
            exposing_mount(&link.join("ingot"), &mounted),
            Some(PathBuf::from("/usr"))
        );
    }
}
