//! Organization and space quotas: what `org-quotas`, `create-org-quota`,
//! `set-org-quota`, `space-quotas`, `create-space-quota`, `set-space-quota`
//! and their siblings send (`/v3/organization_quotas`, `/v3/space_quotas`),
//! and the parsing of cf's limit flags (`1G`, `512M`, `-1` for unlimited).

use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::resources::{GuidRef, ToOne};

/// Which of the two quota kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    /// `/v3/organization_quotas`.
    Org,
    /// `/v3/space_quotas`, owned by an organization.
    Space,
}

impl QuotaKind {
    fn path(self) -> &'static str {
        match self {
            QuotaKind::Org => "/v3/organization_quotas",
            QuotaKind::Space => "/v3/space_quotas",
        }
    }

    /// `org` or `space`, for messages.
    pub fn word(self) -> &'static str {
        match self {
            QuotaKind::Org => "org",
            QuotaKind::Space => "space",
        }
    }
}

/// `{"data":[{"guid":…}]}`, the shape of a to-many relationship.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToMany {
    /// The related resources.
    #[serde(default)]
    pub data: Vec<GuidRef>,
}

impl ToMany {
    /// The related guids.
    pub fn guids(&self) -> Vec<&str> {
        self.data.iter().map(|d| d.guid.as_str()).collect()
    }
}

/// An organization or space quota. A `None` limit is unlimited.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Quota {
    /// Its guid.
    pub guid: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Limits on apps.
    #[serde(default)]
    pub apps: AppLimits,
    /// Limits on services.
    #[serde(default)]
    pub services: ServiceLimits,
    /// Limits on routes.
    #[serde(default)]
    pub routes: RouteLimits,
    /// Where it applies (and, for a space quota, its organization).
    #[serde(default)]
    pub relationships: QuotaRelationships,
}

/// `apps` of a quota.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AppLimits {
    /// Memory of one process or task, MB.
    #[serde(default)]
    pub per_process_memory_in_mb: Option<u64>,
    /// Memory of everything started, MB.
    #[serde(default)]
    pub total_memory_in_mb: Option<u64>,
    /// Instances of everything started.
    #[serde(default)]
    pub total_instances: Option<u64>,
    /// Log bytes per second of everything started.
    #[serde(default)]
    pub log_rate_limit_in_bytes_per_second: Option<u64>,
    /// Running tasks per app.
    #[serde(default)]
    pub per_app_tasks: Option<u64>,
}

/// `services` of a quota.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServiceLimits {
    /// Whether instances of paid plans may be created.
    #[serde(default = "yes")]
    pub paid_services_allowed: bool,
    /// Service instances.
    #[serde(default)]
    pub total_service_instances: Option<u64>,
    /// Service keys.
    #[serde(default)]
    pub total_service_keys: Option<u64>,
}

fn yes() -> bool {
    true
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            paid_services_allowed: true,
            total_service_instances: None,
            total_service_keys: None,
        }
    }
}

/// `routes` of a quota.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RouteLimits {
    /// Routes.
    #[serde(default)]
    pub total_routes: Option<u64>,
    /// Reservable TCP route ports.
    #[serde(default)]
    pub total_reserved_ports: Option<u64>,
}

/// A quota's relationships.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct QuotaRelationships {
    /// Organizations an org quota applies to.
    #[serde(default)]
    pub organizations: ToMany,
    /// Spaces a space quota applies to.
    #[serde(default)]
    pub spaces: ToMany,
    /// The organization owning a space quota.
    #[serde(default)]
    pub organization: ToOne,
}

/// One limit a command sets: a number, or unlimited (`-1` on the command
/// line, `null` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// No limit.
    Unlimited,
    /// At most this many (MB, bytes or a count, as the field says).
    At(u64),
}

impl Limit {
    fn json(self) -> Value {
        match self {
            Limit::Unlimited => Value::Null,
            Limit::At(n) => json!(n),
        }
    }
}

/// The limits a create or update sets; `None` leaves a limit as it is (on
/// create: the platform's default, unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    /// `-m`: memory of everything started, MB.
    pub total_memory_in_mb: Option<Limit>,
    /// `-i`: memory of one process, MB.
    pub per_process_memory_in_mb: Option<Limit>,
    /// `-r`: routes.
    pub total_routes: Option<Limit>,
    /// `-s`: service instances.
    pub total_service_instances: Option<Limit>,
    /// `-a`: app instances.
    pub total_instances: Option<Limit>,
    /// `--reserved-route-ports`.
    pub total_reserved_ports: Option<Limit>,
    /// `-l`: log bytes per second.
    pub log_rate_limit_in_bytes_per_second: Option<Limit>,
    /// `--allow-paid-service-plans` / `--disallow-paid-service-plans`.
    pub paid_services_allowed: Option<bool>,
}

impl QuotaLimits {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == QuotaLimits::default()
    }

    /// The `apps`, `services` and `routes` objects of a request body, with
    /// only the limits set.
    pub fn body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        let mut section = |name: &str, fields: &[(&str, Option<Value>)]| {
            let set: Map<String, Value> = fields
                .iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
                .collect();
            if !set.is_empty() {
                body.insert(name.to_string(), Value::Object(set));
            }
        };
        section(
            "apps",
            &[
                (
                    "total_memory_in_mb",
                    self.total_memory_in_mb.map(Limit::json),
                ),
                (
                    "per_process_memory_in_mb",
                    self.per_process_memory_in_mb.map(Limit::json),
                ),
                ("total_instances", self.total_instances.map(Limit::json)),
                (
                    "log_rate_limit_in_bytes_per_second",
                    self.log_rate_limit_in_bytes_per_second.map(Limit::json),
                ),
            ],
        );
        section(
            "services",
            &[
                (
                    "paid_services_allowed",
                    self.paid_services_allowed.map(Value::Bool),
                ),
                (
                    "total_service_instances",
                    self.total_service_instances.map(Limit::json),
                ),
            ],
        );
        section(
            "routes",
            &[
                ("total_routes", self.total_routes.map(Limit::json)),
                (
                    "total_reserved_ports",
                    self.total_reserved_ports.map(Limit::json),
                ),
            ],
        );
        body
    }
}

fn invalid(flag: &str, input: &str, detail: &str) -> ClientError {
    ClientError::Invalid {
        what: format!("{flag} {input:?}"),
        detail: detail.to_string(),
    }
}

/// A memory limit as cf's `-m`/`-i` take it: `1G`, `512M`, `1024MB`, or
/// `-1` for unlimited. A bare number is megabytes.
pub fn parse_memory_limit(flag: &str, input: &str) -> Result<Limit> {
    if input.trim() == "-1" {
        return Ok(Limit::Unlimited);
    }
    crate::manifest::parse_megabytes(input)
        .map(Limit::At)
        .map_err(|_| {
            invalid(
                flag,
                input,
                "use a size with a unit such as 512M or 1G, or -1 for unlimited",
            )
        })
}

/// A count as cf's `-r`/`-s`/`-a`/`--reserved-route-ports` take it: a
/// whole number, or `-1` for unlimited.
pub fn parse_count_limit(flag: &str, input: &str) -> Result<Limit> {
    let text = input.trim();
    if text == "-1" {
        return Ok(Limit::Unlimited);
    }
    text.parse::<u64>()
        .map(Limit::At)
        .map_err(|_| invalid(flag, input, "use a whole number, or -1 for unlimited"))
}

/// A log volume as cf's `-l` takes it: bytes per second with an optional
/// unit (`512B`, `4K`, `1M`, `1G`), or `-1` for unlimited.
pub fn parse_log_limit(flag: &str, input: &str) -> Result<Limit> {
    let text = input.trim().to_ascii_uppercase();
    if text == "-1" {
        return Ok(Limit::Unlimited);
    }
    let bad = || {
        invalid(
            flag,
            input,
            "use bytes with a unit such as 512B, 4K or 1M, or -1 for unlimited",
        )
    };
    let body = text.strip_suffix('B').unwrap_or(&text);
    let (digits, factor): (&str, u64) = match body.chars().last() {
        Some('K') => (&body[..body.len() - 1], 1 << 10),
        Some('M') => (&body[..body.len() - 1], 1 << 20),
        Some('G') => (&body[..body.len() - 1], 1 << 30),
        Some(c) if c.is_ascii_digit() => (body, 1),
        _ => return Err(bad()),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .map(Limit::At)
        .ok_or_else(bad)
}

impl Client {
    /// Quotas of a kind, by name; a space quota list may be narrowed to an
    /// organization.
    pub async fn quotas(
        &self,
        kind: QuotaKind,
        name: Option<&str>,
        org_guid: Option<&str>,
    ) -> Result<Vec<Quota>> {
        // Quotas sort only by time on the API (`order_by` takes no name).
        let mut params = Vec::new();
        if let Some(n) = name {
            params.push(("names", n));
        }
        if let Some(o) = org_guid {
            params.push(("organization_guids", o));
        }
        let mut found: Vec<Quota> = self.list_all(kind.path(), &params).await?;
        // Sorted here too: not every server orders quotas by name.
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    /// The quota of this name (in this organization, for a space quota).
    pub async fn quota_by_name(
        &self,
        kind: QuotaKind,
        name: &str,
        org_guid: Option<&str>,
    ) -> Result<Option<Quota>> {
        Ok(self
            .quotas(kind, Some(name), org_guid)
            .await?
            .into_iter()
            .find(|q| q.name == name))
    }

    /// One quota.
    pub async fn quota(&self, kind: QuotaKind, guid: &str) -> Result<Quota> {
        self.get_json(&format!("{}/{guid}", kind.path())).await
    }

    /// Creates a quota; a space quota belongs to `org_guid`.
    pub async fn create_quota(
        &self,
        kind: QuotaKind,
        name: &str,
        limits: &QuotaLimits,
        org_guid: Option<&str>,
    ) -> Result<Quota> {
        let mut body = limits.body();
        body.insert("name".into(), json!(name));
        if let (QuotaKind::Space, Some(org)) = (kind, org_guid) {
            body.insert(
                "relationships".into(),
                json!({"organization": {"data": {"guid": org}}}),
            );
        }
        self.send_json(Method::POST, kind.path(), &Value::Object(body))
            .await
    }

    /// Changes a quota's limits and, with `new_name`, its name.
    pub async fn update_quota(
        &self,
        kind: QuotaKind,
        guid: &str,
        new_name: Option<&str>,
        limits: &QuotaLimits,
    ) -> Result<Quota> {
        let mut body = limits.body();
        if let Some(n) = new_name {
            body.insert("name".into(), json!(n));
        }
        self.send_json(
            Method::PATCH,
            &format!("{}/{guid}", kind.path()),
            &Value::Object(body),
        )
        .await
    }

    /// Deletes a quota and waits for the deletion job.
    pub async fn delete_quota(&self, kind: QuotaKind, guid: &str, timeout: Duration) -> Result<()> {
        let resp = self
            .send_empty(Method::DELETE, &format!("{}/{guid}", kind.path()), None)
            .await?;
        self.wait_accepted(resp, timeout).await
    }

    /// Applies an organization quota to an organization.
    pub async fn apply_org_quota(&self, quota_guid: &str, org_guid: &str) -> Result<()> {
        self.send_empty(
            Method::POST,
            &format!("/v3/organization_quotas/{quota_guid}/relationships/organizations"),
            Some(&json!({"data": [{"guid": org_guid}]})),
        )
        .await?;
        Ok(())
    }

    /// Applies a space quota to a space.
    pub async fn apply_space_quota(&self, quota_guid: &str, space_guid: &str) -> Result<()> {
        self.send_empty(
            Method::POST,
            &format!("/v3/space_quotas/{quota_guid}/relationships/spaces"),
            Some(&json!({"data": [{"guid": space_guid}]})),
        )
        .await?;
        Ok(())
    }

    /// Removes a space quota from a space.
    pub async fn remove_space_quota(&self, quota_guid: &str, space_guid: &str) -> Result<()> {
        self.send_empty(
            Method::DELETE,
            &format!("/v3/space_quotas/{quota_guid}/relationships/spaces/{space_guid}"),
            None,
        )
        .await?;
        Ok(())
    }

    /// Waits on the job a `202 Accepted` points to (its `Location`); any
    /// other answer is already done.
    pub async fn wait_accepted(&self, resp: reqwest::Response, timeout: Duration) -> Result<()> {
        if resp.status().as_u16() == 202 {
            if let Some(loc) = resp.headers().get("location").and_then(|v| v.to_str().ok()) {
                let loc = loc.to_string();
                self.wait_job(&loc, timeout).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_read_like_cf() {
        assert_eq!(parse_memory_limit("-m", "1G").ok(), Some(Limit::At(1024)));
        assert_eq!(parse_memory_limit("-m", "512M").ok(), Some(Limit::At(512)));
        assert_eq!(parse_memory_limit("-m", "2gb").ok(), Some(Limit::At(2048)));
        assert_eq!(parse_memory_limit("-m", "-1").ok(), Some(Limit::Unlimited));
        assert_eq!(parse_memory_limit("-m", "256").ok(), Some(Limit::At(256)));
        let err = parse_memory_limit("-m", "lots").expect_err("refused");
        assert!(err.to_string().contains("-m \"lots\""), "{err}");
        assert!(err.to_string().contains("-1 for unlimited"), "{err}");
        assert!(parse_memory_limit("-i", "-2").is_err());
        assert!(parse_memory_limit("-i", "0M").is_err());
    }

    #[test]
    fn counts_and_log_volumes_read_like_cf() {
        assert_eq!(parse_count_limit("-r", "10").ok(), Some(Limit::At(10)));
        assert_eq!(parse_count_limit("-r", "-1").ok(), Some(Limit::Unlimited));
        assert!(parse_count_limit("-r", "ten").is_err());
        assert!(parse_count_limit("-r", "-5").is_err());
        assert_eq!(parse_log_limit("-l", "1M").ok(), Some(Limit::At(1 << 20)));
        assert_eq!(parse_log_limit("-l", "4K").ok(), Some(Limit::At(4096)));
        assert_eq!(parse_log_limit("-l", "512B").ok(), Some(Limit::At(512)));
        assert_eq!(parse_log_limit("-l", "100").ok(), Some(Limit::At(100)));
        assert_eq!(parse_log_limit("-l", "-1").ok(), Some(Limit::Unlimited));
        assert!(parse_log_limit("-l", "fast").is_err());
    }

    #[test]
    fn bodies_carry_only_what_was_set() {
        let limits = QuotaLimits {
            total_memory_in_mb: Some(Limit::At(1024)),
            per_process_memory_in_mb: Some(Limit::Unlimited),
            total_routes: Some(Limit::At(5)),
            paid_services_allowed: Some(false),
            ..QuotaLimits::default()
        };
        assert_eq!(
            Value::Object(limits.body()),
            json!({
                "apps": {"total_memory_in_mb": 1024, "per_process_memory_in_mb": null},
                "services": {"paid_services_allowed": false},
                "routes": {"total_routes": 5},
            })
        );
        assert!(QuotaLimits::default().body().is_empty());
        assert!(QuotaLimits::default().is_empty());
    }

    #[test]
    fn quotas_parse_from_the_docs_shape() {
        let q: Quota = serde_json::from_value(json!({
            "guid": "q1", "name": "small",
            "apps": {"total_memory_in_mb": 2048, "per_process_memory_in_mb": null,
                     "total_instances": 10, "log_rate_limit_in_bytes_per_second": null,
                     "per_app_tasks": 5},
            "services": {"paid_services_allowed": false, "total_service_instances": 3,
                         "total_service_keys": null},
            "routes": {"total_routes": 8, "total_reserved_ports": 0},
            "domains": {"total_domains": null},
            "relationships": {"organizations": {"data": [{"guid": "o1"}]}},
        }))
        .expect("parses");
        assert_eq!(q.apps.total_memory_in_mb, Some(2048));
        assert_eq!(q.apps.per_process_memory_in_mb, None);
        assert!(!q.services.paid_services_allowed);
        assert_eq!(q.relationships.organizations.guids(), vec!["o1"]);
    }
}
