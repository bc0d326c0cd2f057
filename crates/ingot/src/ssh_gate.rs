//! Who may open an SSH session into which instance: the proxy's
//! [`ingot_ssh::SshAuthorizer`] over the token server (one-time codes,
//! tokens), the scheduler (which instance runs where) and the API (roles,
//! the ssh switches, audit events).

use std::net::SocketAddr;

use async_trait::async_trait;
use ingot_api::{Principal, TokenValidator as _};
use ingot_ssh::{CfUser, SshRefusal, SshTarget};

use crate::runtime::Tokens;

/// The SSH proxy's gatekeeper.
pub struct SshGate {
    pub api: ingot_api::Api,
    pub auth: ingot_auth::AuthServer,
    pub tokens: std::sync::Arc<Tokens>,
    pub scheduler: ingot_scheduler::Scheduler,
}

impl SshGate {
    /// The user a password stands for: a one-time code from
    /// `/oauth/authorize` (used up here), or an access token.
    async fn principal(&self, password: &str) -> Option<Principal> {
        if let Ok(Some(grant)) = self
            .auth
            .redeem_code(password, ingot_auth::SSH_PROXY_CLIENT)
            .await
        {
            return Some(Principal {
                user_guid: grant.user_id,
                user_name: grant.user_name,
                scopes: grant.scopes,
            });
        }
        let bearer = format!("bearer {}", password.trim_start_matches("bearer "));
        self.tokens.validate(Some(&bearer)).ok()
    }
}

#[async_trait]
impl ingot_ssh::SshAuthorizer for SshGate {
    async fn authorize(
        &self,
        user: &str,
        password: &str,
        remote: SocketAddr,
    ) -> Result<SshTarget, SshRefusal> {
        let cf = CfUser::parse(user).ok_or_else(|| {
            SshRefusal::new("the user must be cf:<process guid>/<instance index>")
        })?;
        let principal = self.principal(password).await;
        let running = self.scheduler.running_instance(&cf.process_guid, cf.index);
        let decision = self
            .api
            .authorize_ssh(
                principal.as_ref(),
                &cf.process_guid,
                cf.index,
                running.is_some(),
                &remote.to_string(),
            )
            .await
            .map_err(|e| SshRefusal::new(format!("cannot check access: {e}")))?;
        decision.map_err(SshRefusal::new)?;
        let instance = running.ok_or_else(|| SshRefusal::new("the instance is not running"))?;
        Ok(SshTarget {
            container_id: instance.container_id,
            app_guid: instance.app_guid,
            process_guid: cf.process_guid,
            instance_index: cf.index,
            env: instance.env,
        })
    }

    async fn ended(&self, _target: &SshTarget, _remote: SocketAddr) {}
}
