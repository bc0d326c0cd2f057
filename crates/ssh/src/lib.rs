//! Ingot's SSH proxy (Cloud Foundry's `ssh-proxy` and `diego-sshd` in one): `cf ssh` and plain
//! OpenSSH reach a shell, commands, SFTP/scp and local port forwards inside an app instance.
//!
//! The proxy speaks SSH with an ed25519 host key kept in a file ([`HostKey`]); its fingerprint is
//! what the API publishes in `links.app_ssh.meta.host_key_fingerprint`. Clients log in with
//! password authentication as `cf:<process guid>/<index>` (see [`CfUser`]) with a one-time code
//! or a bearer token as the password. The proxy never judges credentials itself: it asks an
//! [`SshAuthorizer`], which names the instance ([`SshTarget`]). What runs there goes through
//! [`InstanceAccess`]; [`ContainerAccess`] implements it over `ingot_containers::exec`, so that
//! every session process is confined exactly like the app process.
//!
//! Invariant: nothing a session starts outlives its connection. Every process and forward of a
//! connection is tied to it and hung up when it ends (by the client, idleness or [`SshProxy::serve`]
//! shutting down).

mod access;
mod hostkey;
mod metrics;
mod server;

use std::net::SocketAddr;

pub use access::{
    AccessError, ContainerAccess, ExecRequest, InstanceAccess, ProcessControl, PtyRequest,
    RemoteProcess,
};
pub use hostkey::HostKey;
pub use server::{SshProxy, SshProxyConfig};

/// What went wrong starting or running the proxy.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The host key file could not be read, written or parsed.
    #[error("host key {path}: {detail}")]
    HostKey {
        /// The host key file.
        path: std::path::PathBuf,
        /// What failed.
        detail: String,
    },
}

/// The instance a login may reach, as named by the [`SshAuthorizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The instance's container id (what [`InstanceAccess`] runs in).
    pub container_id: String,
    /// The app's guid: the log source id of the session's `SSH` log lines.
    pub app_guid: String,
    /// The process guid from the user name.
    pub process_guid: String,
    /// The instance index from the user name.
    pub instance_index: u32,
    /// The environment every session process gets (the instance's own, so that
    /// `echo $CF_INSTANCE_INDEX` prints the index).
    pub env: Vec<(String, String)>,
}

/// Why a login was refused; the reason is for the audit trail and the proxy's log, the client
/// only learns that authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ssh access refused: {reason}")]
pub struct SshRefusal {
    /// Why, e.g. "invalid one-time code" or "ssh disabled for app".
    pub reason: String,
}

impl SshRefusal {
    /// A refusal for `reason`.
    pub fn new(reason: impl Into<String>) -> SshRefusal {
        SshRefusal {
            reason: reason.into(),
        }
    }
}

/// Decides who may reach which instance; the binary implements it over the API and the token
/// server.
#[async_trait::async_trait]
pub trait SshAuthorizer: Send + Sync {
    /// Checks a password login by `user` (normally `cf:<process guid>/<index>`, see
    /// [`CfUser::parse`]) from `remote`; the password is a one-time code or a bearer token.
    async fn authorize(
        &self,
        user: &str,
        password: &str,
        remote: SocketAddr,
    ) -> Result<SshTarget, SshRefusal>;

    /// A connection that `authorize` let in has ended.
    async fn ended(&self, target: &SshTarget, remote: SocketAddr);
}

/// The user name Cloud Foundry's SSH proxy expects: `cf:<process guid>/<index>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfUser {
    /// The process guid.
    pub process_guid: String,
    /// The instance index.
    pub index: u32,
}

impl CfUser {
    /// Parses `cf:<process guid>/<index>`; `None` for anything else.
    pub fn parse(user: &str) -> Option<CfUser> {
        let rest = user.strip_prefix("cf:")?;
        let (guid, index) = rest.rsplit_once('/')?;
        let valid_guid = !guid.is_empty()
            && guid.len() <= 64
            && guid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_guid || index.is_empty() || !index.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some(CfUser {
            process_guid: guid.to_string(),
            index: index.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cf_users_parse_and_others_do_not() {
        assert_eq!(
            CfUser::parse("cf:0b5e-77/1"),
            Some(CfUser {
                process_guid: "0b5e-77".into(),
                index: 1
            })
        );
        for bad in [
            "root",
            "cf:",
            "cf:/0",
            "cf:abc/",
            "cf:abc/x",
            "cf:abc/-1",
            "cf:a b/0",
            "cf:abc/99999999999",
            "cf:../0",
        ] {
            assert_eq!(CfUser::parse(bad), None, "{bad}");
        }
    }
}
