//! What the token server reports about itself: tokens issued and requests
//! rejected, by grant type (and by OAuth error for rejections); SCIM
//! requests by operation and status; one-time codes issued and redeemed.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GrantLabels {
    pub grant_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RejectLabels {
    pub grant_type: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ScimLabels {
    pub operation: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Counters shared by every clone of the server.
#[derive(Clone, Default)]
pub(crate) struct Metrics {
    issued: Family<GrantLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
    scim: Family<ScimLabels, Counter>,
    codes_issued: Counter,
    codes_redeemed: Family<OutcomeLabels, Counter>,
}

impl Metrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "ingot_auth_tokens_issued",
            "Access tokens issued by the token endpoint, by grant type",
            self.issued.clone(),
        );
        registry.register(
            "ingot_auth_token_requests_rejected",
            "Token requests refused, by grant type and OAuth error",
            self.rejected.clone(),
        );
        registry.register(
            "ingot_auth_scim_requests",
            "Requests to the SCIM user endpoints, by operation and HTTP status",
            self.scim.clone(),
        );
        registry.register(
            "ingot_auth_codes_issued",
            "One-time codes issued by /oauth/authorize",
            self.codes_issued.clone(),
        );
        registry.register(
            "ingot_auth_codes_redeemed",
            "One-time code redemptions, by outcome (ok, unknown, expired, wrong_client, user_gone)",
            self.codes_redeemed.clone(),
        );
    }

    /// `operation` is one of a fixed set of literals and `status` an HTTP
    /// status, so the label set stays small.
    pub(crate) fn scim(&self, operation: &'static str, status: u16) {
        self.scim
            .get_or_create(&ScimLabels { operation, status })
            .inc();
    }

    pub(crate) fn code_issued(&self) {
        self.codes_issued.inc();
    }

    pub(crate) fn code_redeemed(&self, outcome: &'static str) {
        self.codes_redeemed
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub(crate) fn issued(&self, grant_type: &str) {
        self.issued
            .get_or_create(&GrantLabels {
                grant_type: label(grant_type),
            })
            .inc();
    }

    pub(crate) fn rejected(&self, grant_type: &str, error: &str) {
        self.rejected
            .get_or_create(&RejectLabels {
                grant_type: label(grant_type),
                error: error.to_owned(),
            })
            .inc();
    }
}

/// Keeps label cardinality bounded: a client can send any grant_type.
fn label(grant_type: &str) -> String {
    match grant_type {
        "password" | "refresh_token" | "client_credentials" | "authorization_code" | "" => {
            grant_type.to_owned()
        }
        _ => "other".to_owned(),
    }
}
